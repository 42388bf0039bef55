//! The relay (spec sections 4 and 6): one poll(2) loop over fd 0 (network
//! in), fd 1 (network out), fdr (application in) and fdw (application out),
//! driving one rustls connection over buffers of ours (conn.rs), once the
//! ClientHello step (hello.rs, then rustls' Acceptor) has chosen its
//! configuration.
//!
//! Each direction is a small state machine that owns its descriptors, so
//! closing a descriptor and changing state are the same act:
//!
//!   inbound  (network -> fdw):  Open -> Draining (client EOF) -> Closed
//!                               Open -> Discarding (the app stopped
//!                                       reading)                  -> Closed
//!   outbound (fdr -> network):  Open -> Flushing (fdr EOF)    -> Closed
//!
//! Every turn derives its poll set from those two states and from what
//! rustls says it wants, so a side is read only while its destination has
//! room: memory stays bounded and an idle tunnel sleeps in poll(2).
//! The engine knows nothing of argv or the environment.
//!
//! An application that answers and goes without reading everything (an
//! HTTP/1.0 responder, a 413 before the body) loses nothing: its going ends
//! the inbound direction only. Its answer is read from fdr to EOF and sent;
//! what the client still sends is read, decrypted and dropped, so that the
//! socket is not closed on unread data, which the kernel would answer with
//! a reset that can destroy the answer before the client reads it (why HTTP
//! servers linger on close). Once the answer is out, that lingering is
//! bounded (`LINGER`, `LINGER_BYTES`).

mod conn;
mod hello;
mod io;

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use rustls::server::{Accepted, AcceptedAlert, Acceptor, ClientHello};
use rustls::{AlertDescription, CommonState, ProtocolVersion, ServerConfig};

use crate::error::{io_reason, Error};
use crate::log::Log;
use conn::{Conn, ConnError};
pub use hello::Hello;
use hello::{Assembler, Step};
/// Also the plain relay's (examples/plain_relay.rs, bench/'s floor).
pub use io::End;
use io::{plaintext_alert, send_last_words, NetInput, Pages, CHUNK, PAGE};

/// How many network reads one wake-up may do before the other sides get a
/// turn.
const NET_READS_PER_TURN: usize = 32;

/// Once the application has stopped reading and its answer is out, how
/// long the engine waits for the client's end (EOF or close_notify), and
/// how much of what the client sends meanwhile it reads and drops, before
/// it closes anyway. Time enough for a 1 MiB request body still in flight
/// on a slow link, bytes enough for what full socket buffers hold (some
/// MiB each way on Linux), little for a process that no longer serves
/// anyone: a client that sends on past it may get a reset, once the answer
/// has had that long to reach it.
const LINGER: Duration = Duration::from_secs(5);
const LINGER_BYTES: u64 = 16 << 20;

pub struct Fds {
    pub net_in: OwnedFd,
    pub net_out: OwnedFd,
    pub app_in: OwnedFd,
    pub app_out: OwnedFd,
}

pub struct Settings {
    /// `-S`: close_notify on local EOF.
    pub close_notify: bool,
    /// `-J`: client EOF without close_notify after the handshake is fatal.
    pub enforce_close_notify: bool,
    /// `-K`: the whole handshake must be done by then.
    pub handshake_timeout: Option<Duration>,
    pub log: Log,
    /// The process exits once `run` returns: what the connection mapped
    /// (its buffers, 64 KiB and more each) goes with the process instead of
    /// being unmapped piece by piece just before (four munmap(2) calls, 25
    /// to 30 us a connection). False where `run` is called again (the fuzz
    /// targets).
    pub exit_after: bool,
}

/// Why a ClientHello is refused: the alert the client gets, and our error.
pub struct Refusal {
    pub alert: AlertDescription,
    pub error: Error,
}

/// Where the configuration's own callbacks leave a refusal they decide
/// while rustls handles a ClientHello: the second one, after a
/// HelloRetryRequest, reaches no code of the engine's but the certificate
/// resolver. rustls can only fail the handshake then, with an alert of its
/// own; the engine sends the refusal's instead, in the clear (no ServerHello
/// has gone yet), and ends with its error. A mutex because rustls wants
/// its resolver `Send + Sync`; one thread ever takes it.
#[derive(Clone, Default)]
pub struct Veto(Arc<Mutex<Option<Refusal>>>);

impl Veto {
    /// The first refusal stands.
    pub fn refuse(&self, refusal: Refusal) {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        slot.get_or_insert(refusal);
    }

    fn take(&self) -> Option<Refusal> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

enum Inbound {
    Open {
        net: End,
        app: End,
    },
    /// The client sent EOF; what is decrypted still goes to the application.
    Draining {
        app: End,
    },
    /// The application stopped reading (fdw closed, EPIPE): what the client
    /// sends is still read and decrypted, then dropped, until its end.
    Discarding {
        net: End,
    },
    Closed,
}

enum Outbound {
    Open {
        app: End,
        net: End,
    },
    /// fdr hit EOF; pending records (and close_notify under `-S`) still leave.
    Flushing {
        net: End,
    },
    Closed,
}

/// When the application stopped reading, for the closing report.
#[derive(Clone, Copy)]
enum Stopped {
    /// While the client was still sending.
    First,
    /// After the client's end, with decrypted data still waiting for it.
    AfterClient,
}

struct Engine<H> {
    conn: Conn,
    inbound: Inbound,
    outbound: Outbound,
    settings: Settings,
    deadline: Option<Instant>,
    /// Called once, when the handshake completes: the notification.
    on_handshake: Option<H>,
    /// A refusal of the configuration's, for a later ClientHello.
    veto: Veto,
    /// Cleartext read from fdr: up to four full TLS records at once, which
    /// leave together in one write(2). Read at the connection's
    /// `seal_offset`.
    buf: Pages,
    /// The client's SNI, for `on_handshake`.
    server_name: Option<String>,
    /// For the closing report (`-v 2`).
    started: Instant,
    client_to_app: u64,
    app_to_client: u64,
    /// How the client ended its side (close_notify, EOF...), once it did.
    inbound_end: Option<&'static str>,
    /// Whether, and when, the application stopped reading.
    stopped: Option<Stopped>,
    /// Cleartext from the client dropped since then.
    discarded: u64,
    /// Why the outbound direction is closing, and whether a close_notify
    /// was queued behind its records: the report says "sent" only once
    /// they have all been written.
    outbound_end: Option<(&'static str, bool)>,
    /// Once the application is gone and its answer out: when to stop
    /// waiting for the client's end, and `discarded` when waiting began.
    linger: Option<(Instant, u64)>,
    /// Whether data moved since the buffers' pages were last given back
    /// (`QUIET_MS`).
    busy: bool,
}

/// After this long without a byte either way, a connection gives its
/// buffers' pages back (`Engine::release_idle`): an idle connection holds
/// only what it must. Costs a few madvise(2) calls and page faults per
/// quiet spell, some 10 us: 0.01% of a CPU for a connection that talks
/// every 0.1 s, nothing for bulk, which never pauses that long.
const QUIET_MS: u8 = 100;

/// Runs one connection to its end. `choose` picks the configuration from
/// the ClientHello (SNI) or refuses it; the configuration's callbacks may
/// refuse a later ClientHello through the `Veto`. `on_handshake` runs once
/// the handshake is complete, before any cleartext is relayed.
pub fn run<C, H>(fds: Fds, settings: Settings, choose: C, on_handshake: H) -> Result<(), Error>
where
    C: FnOnce(&ClientHello, &Hello, &Veto) -> Result<Arc<ServerConfig>, Refusal>,
    H: FnOnce(&CommonState, Option<&str>) -> Result<(), Error>,
{
    for fd in [&fds.net_in, &fds.net_out, &fds.app_in, &fds.app_out] {
        set_nonblocking(fd)?;
    }
    let started = Instant::now();
    let deadline = settings.handshake_timeout.map(|t| started + t);
    let veto = Veto::default();
    let (conn, server_name) = match accept(&fds, deadline, choose, &veto) {
        Ok(accepted) => accepted,
        Err(e) => {
            handshake_failed(&settings.log, started);
            return Err(e);
        }
    };
    let mut engine = Engine {
        conn,
        inbound: Inbound::Open {
            net: End::reading(fds.net_in),
            app: End::writing(fds.app_out),
        },
        outbound: Outbound::Open {
            app: End::reading(fds.app_in),
            net: End::writing(fds.net_out),
        },
        settings,
        deadline,
        on_handshake: Some(on_handshake),
        veto,
        buf: Pages::new(CHUNK.saturating_add(PAGE)).map_err(mapping_failed)?,
        server_name,
        started,
        client_to_app: 0,
        app_to_client: 0,
        inbound_end: None,
        stopped: None,
        discarded: 0,
        outbound_end: None,
        linger: None,
        busy: false,
    };
    let result = engine.relay();
    if result.is_err() {
        engine.send_pending_alert();
    }
    // After the last words, so that it says what left.
    engine.report();
    if result.is_err() {
        engine.abandon();
    }
    if engine.settings.exit_after {
        // The descriptors are closed already (each direction's end did it,
        // or `abandon`): only memory is left, and the exit frees it all.
        std::mem::forget(engine);
    }
    result
}

/// The ClientHello read, its key pair chosen and answered: the connection,
/// and the server name the client asked for. Its own frame, popped before
/// the relay starts: what only the hello needed (its frame was 9.4 KiB
/// inlined into `run`) is not kept resident for the connection's life.
#[inline(never)]
fn accept<C>(
    fds: &Fds,
    deadline: Option<Instant>,
    choose: C,
    veto: &Veto,
) -> Result<(Conn, Option<String>), Error>
where
    C: FnOnce(&ClientHello, &Hello, &Veto) -> Result<Arc<ServerConfig>, Refusal>,
{
    let mut net_input = NetInput::new().map_err(mapping_failed)?;
    let (accepted, hello, raw) = read_client_hello(fds, deadline, &mut net_input)?;
    let client_hello = accepted.client_hello();
    let server_name = client_hello.server_name().map(str::to_owned);
    let config = match choose(&client_hello, &hello, veto) {
        Ok(config) => config,
        Err(refusal) => return Err(refuse(fds, refusal)),
    };
    let mut conn = match Conn::new(config, &raw, net_input.pending()) {
        Ok(conn) => conn,
        Err(ConnError::Tls(e)) => {
            return Err(Error::Setup(format!(
                "unable to set up the TLS engine: {e}"
            )))
        }
        Err(ConnError::Map(e)) => return Err(mapping_failed(e)),
    };
    drop(net_input);
    // rustls answers the hello now. Until something is sent, a refusal
    // is ours to word: nothing rustls queued (a ServerHello, perhaps) goes.
    if let Err(e) = conn.process_first(raw.len()) {
        let queued = conn.take_queued();
        return Err(match veto.take() {
            Some(refusal) => refuse(fds, refusal),
            None => refuse_queued(fds, e, &queued),
        });
    }
    Ok((conn, server_name))
}

fn set_nonblocking(fd: &OwnedFd) -> Result<(), Error> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags =
        fcntl(fd, FcntlArg::F_GETFL).map_err(|e| Error::errno("set fds non-blocking", e))?;
    let flags = OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(|e| Error::errno("set fds non-blocking", e))?;
    Ok(())
}

/// Reads until a whole ClientHello is in, so that the key pair can be chosen
/// by its SNI before the connection exists. The engine reads the records
/// first (hello.rs) and refuses what it alone can tell; then rustls gets
/// them as they came.
fn read_client_hello(
    fds: &Fds,
    deadline: Option<Instant>,
    input: &mut NetInput,
) -> Result<(Accepted, Hello, Vec<u8>), Error> {
    let mut assembler = Assembler::default();
    let hello = loop {
        let (taken, step) = assembler.take(input.pending());
        input.consume(taken);
        match step {
            Step::More => {
                wait_readable(fds.net_in.as_fd(), deadline)?;
                match input.fill(fds.net_in.as_fd()) {
                    Ok(0) => return Err(engine_closed(true, "the client closed the connection")),
                    Ok(_) | Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
                    Err(e) => return Err(engine_closed(true, unreadable(&e.into()))),
                }
            }
            Step::ToRustls(hello) => break hello,
            Step::Refuse(alert, why) => {
                let error = engine_closed(true, why);
                return Err(refuse(fds, Refusal { alert, error }));
            }
        }
    };
    let mut acceptor = Acceptor::default();
    // Every byte the Acceptor takes, for the connection to take again.
    let mut raw = std::mem::take(&mut assembler.raw);
    let mut given = 0;
    loop {
        let read = if given == raw.len() {
            if !input.staged() {
                wait_readable(fds.net_in.as_fd(), deadline)?;
            }
            let mut tee = Tee {
                from: input.reader(fds.net_in.as_fd()),
                to: &mut raw,
            };
            acceptor.read_tls(&mut tee)
        } else {
            acceptor.read_tls(&mut &raw[given..])
        };
        if let Ok(n) = read {
            given += n;
        }
        match read {
            Ok(0) => return Err(engine_closed(true, "the client closed the connection")),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                continue
            }
            Err(e) => return Err(engine_closed(true, unreadable(&e))),
        }
        match acceptor.accept() {
            Ok(None) => {}
            // A hello the engine could not read, but rustls could: nothing
            // is assumed of it.
            Ok(Some(accepted)) => return Ok((accepted, hello.unwrap_or_default(), raw)),
            Err((e, alert)) => return Err(refuse_hello(fds, e, alert)),
        }
    }
}

/// A ClientHello rustls refused, before anything was sent. Its alert goes
/// out when rustls queued it in the clear; when it queued none (some
/// malformed or out-of-order messages), or queued a ServerHello before it
/// found out (no signature scheme fits our key: the alert behind it is
/// encrypted), one of ours goes in the clear instead, so that the client
/// always learns why.
fn refuse_hello(fds: &Fds, e: rustls::Error, mut queued: AcceptedAlert) -> Error {
    let mut bytes = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = queued.write_all(&mut bytes);
    refuse_queued(fds, e, &bytes)
}

/// The same, from what rustls queued (`bytes`) when it refused.
fn refuse_queued(fds: &Fds, e: rustls::Error, bytes: &[u8]) -> Error {
    let alert = alert_in_clear(bytes).unwrap_or(match &e {
        rustls::Error::InvalidMessage(_) => AlertDescription::DecodeError,
        rustls::Error::InappropriateMessage { .. }
        | rustls::Error::InappropriateHandshakeMessage { .. } => {
            AlertDescription::UnexpectedMessage
        }
        rustls::Error::PeerMisbehaved(_) => AlertDescription::IllegalParameter,
        _ => AlertDescription::HandshakeFailure,
    });
    let error = engine_closed(true, e);
    refuse(fds, Refusal { alert, error })
}

/// A reader that keeps a copy of what it reads.
struct Tee<'a, R> {
    from: R,
    to: &'a mut Vec<u8>,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.from.read(out)?;
        self.to.extend_from_slice(&out[..n]);
        Ok(n)
    }
}

/// The description of the alert that `bytes` open with, if they open with
/// a plaintext alert record.
fn alert_in_clear(bytes: &[u8]) -> Option<AlertDescription> {
    match bytes {
        [0x15, 3, _, 0, 2, _, description, ..] => Some(AlertDescription::from(*description)),
        _ => None,
    }
}

/// Sends the refusal's alert in the clear (no keys exist yet) and returns
/// its error.
fn refuse(fds: &Fds, refusal: Refusal) -> Error {
    let alert = plaintext_alert(refusal.alert);
    let mut left: &[u8] = &alert;
    send_last_words(fds.net_out.as_fd(), |w| {
        let n = w.write(left)?;
        left = &left[n..];
        Ok(n)
    });
    refusal.error
}

fn wait_readable(fd: std::os::fd::BorrowedFd, deadline: Option<Instant>) -> Result<(), Error> {
    use nix::poll::{poll, PollFd, PollFlags};
    let timeout = poll_timeout(deadline)?;
    match poll(&mut [PollFd::new(fd, PollFlags::POLLIN)], timeout) {
        Ok(_) | Err(Errno::EINTR) => Ok(()),
        Err(e) => Err(Error::errno("poll", e)),
    }
}

/// Milliseconds left before the handshake deadline, rounded up, or an error
/// once it has passed.
fn poll_timeout(deadline: Option<Instant>) -> Result<nix::poll::PollTimeout, Error> {
    use nix::poll::PollTimeout;
    let Some(deadline) = deadline else {
        return Ok(PollTimeout::NONE);
    };
    if deadline <= Instant::now() {
        return Err(Error::HandshakeTimeout);
    }
    Ok(millis_until(deadline))
}

/// Milliseconds left before `t`, rounded up; zero once it has passed.
pub fn millis_until(t: Instant) -> nix::poll::PollTimeout {
    use nix::poll::PollTimeout;
    let ms = t
        .saturating_duration_since(Instant::now())
        .as_micros()
        .div_ceil(1000);
    PollTimeout::try_from(ms.min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX)
}

/// The relay's buffers could not be had: exit 111 like any failed call.
fn mapping_failed(e: Errno) -> Error {
    Error::errno("map the relay's buffers", e)
}

/// A fatal TLS error, in upstream's words, with what caused it.
pub fn engine_closed(during: bool, why: impl std::fmt::Display) -> Error {
    Error::Tls(format!(
        "the TLS engine closed the connection {} the handshake: {why}",
        if during { "during" } else { "after" }
    ))
}

/// The closing line at `-v 2` of a connection whose handshake never
/// completed (the fatal line that follows says why).
fn handshake_failed(log: &Log, started: Instant) {
    log.info(format_args!(
        "connection ended after {} ms: the handshake failed",
        started.elapsed().as_millis()
    ));
}

fn unreadable(e: &std::io::Error) -> String {
    format!("unable to read from remote: {}", io_reason(e))
}

/// Which descriptors poll(2) found ready, by slot.
const NET_IN: usize = 0;
const APP_OUT: usize = 1;
const APP_IN: usize = 2;
const NET_OUT: usize = 3;

impl<H> Engine<H>
where
    H: FnOnce(&CommonState, Option<&str>) -> Result<(), Error>,
{
    fn relay(&mut self) -> Result<(), Error> {
        // The ClientHello may have come with more records behind it.
        self.process()?;
        self.flush_net()?;
        loop {
            if matches!(self.inbound, Inbound::Discarding { .. }) {
                // Drops what is decrypted, and decrypts what is left.
                self.flush_app(0)?;
            } else if self.conn.cleartext.has_room() {
                self.catch_up()?;
            }
            self.settle()?;
            if matches!(
                (&self.inbound, &self.outbound),
                (Inbound::Closed, Outbound::Closed)
            ) {
                return Ok(());
            }
            let ready = self.wait()?;
            if ready == [0; 4] && self.busy && !self.conn.is_handshaking() {
                self.release_idle();
                continue;
            }
            if ready[APP_OUT] != 0 {
                self.flush_app(ready[APP_OUT])?;
            }
            if ready[NET_OUT] != 0 {
                self.flush_net()?;
            }
            if ready[APP_IN] != 0 {
                self.fill_from_app()?;
            }
            if ready[NET_IN] != 0 {
                self.fill_from_net()?;
            }
            // After the handshake's own release (in `process`), if this
            // turn ended it.
            self.busy |= ready != [0; 4];
        }
    }

    fn has_cleartext_for_app(&self) -> bool {
        !self.conn.cleartext.pending().is_empty()
    }

    /// One poll(2) over the descriptors that can make progress now.
    fn wait(&mut self) -> Result<[libc::c_short; 4], Error> {
        let idle = libc::pollfd {
            fd: -1,
            events: 0,
            revents: 0,
        };
        let mut set = [idle; 4];
        let handshaking = self.conn.is_handshaking();
        let app_has_data = self.has_cleartext_for_app();
        let entry = |fd: &End, events: libc::c_short| libc::pollfd {
            fd: fd.raw(),
            events,
            revents: 0,
        };
        let app_out = match &self.inbound {
            Inbound::Open { net, app } => {
                if self.conn.wants_read() {
                    set[NET_IN] = entry(net, libc::POLLIN);
                }
                Some(app)
            }
            Inbound::Draining { app } => Some(app),
            Inbound::Discarding { net } => {
                if self.conn.wants_read() {
                    set[NET_IN] = entry(net, libc::POLLIN);
                }
                None
            }
            Inbound::Closed => None,
        };
        if let Some(app) = app_out.filter(|_| !handshaking) {
            // Watched even with nothing to write, to notice the application
            // closing its end (POLLERR/POLLHUP); not before the handshake
            // is done, which must go on whatever the application does.
            set[APP_OUT] = entry(app, if app_has_data { libc::POLLOUT } else { 0 });
        }
        let net_out = match &self.outbound {
            Outbound::Open { app, net } => {
                if !handshaking && !self.conn.wants_write() {
                    set[APP_IN] = entry(app, libc::POLLIN);
                }
                Some(net)
            }
            Outbound::Flushing { net } => Some(net),
            Outbound::Closed => None,
        };
        if let Some(net) = net_out {
            if self.conn.wants_write() {
                set[NET_OUT] = entry(net, libc::POLLOUT);
            }
        }
        if set.iter().all(|p| p.fd < 0) {
            // Cannot happen while the states above are consistent; a hang in
            // poll(2) would be the worst way to find out.
            return Err(Error::Setup(
                "internal error: nothing left to wait for".into(),
            ));
        }
        let mut timeout = match (handshaking, self.busy) {
            (true, _) => poll_timeout(self.deadline)?,
            (false, true) => nix::poll::PollTimeout::from(QUIET_MS),
            (false, false) => nix::poll::PollTimeout::NONE,
        };
        if let Some((until, _)) = self.linger {
            // Woken when lingering is over, if nothing comes first: the
            // next turn's `settle` ends it.
            let left = millis_until(until);
            if timeout.is_none() || left.as_millis() < timeout.as_millis() {
                timeout = left;
            }
        }
        // SAFETY: `set` is a valid array of pollfd for its whole length, and
        // every descriptor in it is owned by `self` and open.
        let r = unsafe { libc::poll(set.as_mut_ptr(), set.len() as libc::nfds_t, timeout.into()) };
        if r < 0 {
            let e = Errno::last();
            if e == Errno::EINTR {
                return Ok([0; 4]);
            }
            return Err(Error::errno("poll", e));
        }
        if r == 0 && handshaking && self.deadline.is_some() {
            poll_timeout(self.deadline)?;
        }
        Ok(set.map(|p| p.revents))
    }

    /// Decrypted data to fdw, as much as it takes without blocking; once
    /// the application has stopped reading, dropped instead.
    fn flush_app(&mut self, revents: libc::c_short) -> Result<(), Error> {
        if revents & (libc::POLLERR | libc::POLLHUP) != 0 {
            // The application closed fdw (a write would get EPIPE).
            self.app_stopped();
        }
        loop {
            if self.conn.cleartext.pending().is_empty() {
                // Records left undecrypted while it was full, if any.
                self.catch_up()?;
                if self.conn.cleartext.pending().is_empty() {
                    break;
                }
            }
            let pending = self.conn.cleartext.pending();
            let app = match &self.inbound {
                Inbound::Open { app, .. } | Inbound::Draining { app } => app.as_fd(),
                Inbound::Discarding { .. } => {
                    let n = pending.len();
                    self.conn.cleartext.consume(n);
                    self.discarded += n as u64;
                    continue;
                }
                Inbound::Closed => return Ok(()),
            };
            match nix::unistd::write(app, pending) {
                Ok(n) => {
                    self.conn.cleartext.consume(n);
                    self.client_to_app += n as u64;
                }
                Err(Errno::EAGAIN) => return Ok(()),
                Err(Errno::EINTR) => {}
                // The application went without reading everything: its
                // answer, if any, still goes to the client.
                Err(Errno::EPIPE) | Err(Errno::ECONNRESET) => self.app_stopped(),
                Err(e) => return Err(Error::errno("write to local", e)),
            }
        }
        Ok(())
    }

    /// The application stopped reading: the inbound direction ends, the
    /// outbound one goes on. While the client still sends, its records
    /// are read and dropped (`Discarding`); after its end, what waited for
    /// the application is dropped.
    fn app_stopped(&mut self) {
        let (to, stopped) = match std::mem::replace(&mut self.inbound, Inbound::Closed) {
            Inbound::Open { net, .. } => (Inbound::Discarding { net }, Stopped::First),
            Inbound::Draining { .. } => (Inbound::Closed, Stopped::AfterClient),
            other => {
                self.inbound = other;
                return;
            }
        };
        self.inbound = to;
        self.stopped = Some(stopped);
        let pending = self.conn.cleartext.pending().len();
        self.conn.cleartext.consume(pending);
        self.discarded += pending as u64;
        let now = match self.inbound {
            Inbound::Discarding { .. } => "open -> discarding",
            _ => "draining -> closed",
        };
        self.settings.log.debug(format_args!(
            "inbound: {now} (the application stopped reading)"
        ));
    }

    /// What `process` left for want of room, now that there may be some.
    fn catch_up(&mut self) -> Result<(), Error> {
        if self.conn.stalled() {
            self.process()?;
            self.flush_net()?;
        }
        Ok(())
    }

    /// Pending records to fd 1, as much as it takes without blocking.
    fn flush_net(&mut self) -> Result<(), Error> {
        let net = match &self.outbound {
            Outbound::Open { net, .. } | Outbound::Flushing { net } => net.as_fd(),
            Outbound::Closed => return Ok(()),
        };
        while self.conn.wants_write() {
            match self.conn.write_to(net) {
                Ok(_) => {}
                Err(Errno::EAGAIN) => return Ok(()),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(Error::errno("write to remote", e)),
            }
        }
        Ok(())
    }

    /// Cleartext from fdr, encrypted at once; only read while rustls' output
    /// is empty, so at most CHUNK is ever held.
    fn fill_from_app(&mut self) -> Result<(), Error> {
        let Outbound::Open { app, .. } = &self.outbound else {
            return Ok(());
        };
        let at = self.conn.seal_offset();
        let n = match nix::unistd::read(app.as_fd(), &mut self.buf[at..at + CHUNK.get()]) {
            Ok(n) => n,
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => return Ok(()),
            // A socket the application closed with data of ours unread in
            // it: the kernel says so only once everything it wrote has
            // been read, so this is its EOF too.
            Err(Errno::ECONNRESET) => {
                self.local_eof("reset by the application", self.settings.close_notify)?;
                return self.flush_net();
            }
            Err(e) => return Err(Error::errno("read from local", e)),
        };
        if n == 0 {
            self.local_eof("EOF", self.settings.close_notify)?;
        } else {
            self.app_to_client += n as u64;
            self.conn
                .encrypt(&self.buf[at..at + n])
                .map_err(|e| match e {
                    // conn.rs's own: no room, or a record it cannot encode.
                    rustls::Error::General(_) => {
                        Error::Setup(format!("TLS engine refused data: {e}"))
                    }
                    // rustls decrypts the client's pending records before it
                    // encrypts: one of them was bad, a TLS failure (exit 98).
                    e => engine_closed(false, e),
                })?;
        }
        // Most of the time the socket has room: skip a trip through poll(2).
        self.flush_net()
    }

    /// fdr is done (its EOF, or the client's close_notify under TLS 1.2):
    /// the pending records leave, behind them a close_notify when
    /// `close_notify` (`-S`; always in answer to TLS 1.2's).
    fn local_eof(&mut self, why: &'static str, close_notify: bool) -> Result<(), Error> {
        match std::mem::replace(&mut self.outbound, Outbound::Closed) {
            Outbound::Open { net, .. } => {
                self.outbound = Outbound::Flushing { net };
                self.outbound_end = Some((why, close_notify));
                let queued = match close_notify {
                    true => ", close_notify queued",
                    false => "",
                };
                self.settings
                    .log
                    .debug(format_args!("outbound: open -> flushing ({why}{queued})"));
            }
            // Already flushing (a TLS 1.2 client's close_notify after fdr's
            // EOF): what is queued still leaves, and a close_notify is all
            // this can add, the answer TLS 1.2 wants where `-S` queued none.
            // (This arm used to leave the direction Closed, dropping what
            // was queued, close_notify included: found by engine_relay.)
            Outbound::Flushing { net } => {
                self.outbound = Outbound::Flushing { net };
                match self.outbound_end {
                    Some((first, false)) if close_notify => {
                        self.outbound_end = Some((first, true));
                        self.settings.log.debug(format_args!(
                            "outbound: flushing, close_notify queued ({why})"
                        ));
                    }
                    _ => return Ok(()),
                }
            }
            // fd 1 is shut down: nothing more can leave.
            Outbound::Closed => return Ok(()),
        }
        if close_notify {
            // rustls refuses it only without room, which the engine never
            // lacks here (fdr is read only while nothing waits for fd 1),
            // or for a bad record from the client that it decrypts first.
            // Either way a bare FIN would break the promise: an error.
            self.conn.send_close_notify().map_err(|e| {
                engine_closed(false, format_args!("unable to queue a close_notify: {e}"))
            })?;
        }
        Ok(())
    }

    /// Records from fd 0, decrypted and passed on while fdw takes them.
    fn fill_from_net(&mut self) -> Result<(), Error> {
        let read = self.read_records();
        // What the turn decrypted leaves in one write; a read error is the
        // one to report, but what came before it is delivered first.
        let written = self.flush_app(0);
        read.and(written)
    }

    fn read_records(&mut self) -> Result<(), Error> {
        for _ in 0..NET_READS_PER_TURN {
            let (Inbound::Open { net, .. } | Inbound::Discarding { net }) = &self.inbound else {
                return Ok(());
            };
            if !self.conn.wants_read() {
                return Ok(());
            }
            match self.conn.read_from(net.as_fd()) {
                Ok(0) => return self.remote_eof(),
                Ok(_) => {}
                Err(Errno::EAGAIN) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(e) if self.conn.is_handshaking() => {
                    return Err(engine_closed(true, unreadable(&e.into())))
                }
                // Nothing goes to the application any more: a reset ends
                // only this direction. If the answer had more to go, its
                // next write says what was lost.
                Err(e) if matches!(self.inbound, Inbound::Discarding { .. }) => {
                    self.close_inbound(match e {
                        Errno::ECONNRESET => "reset",
                        _ => "read error",
                    });
                    return Ok(());
                }
                Err(e) => return Err(Error::errno("read from remote", e)),
            }
            self.process()?;
            self.flush_net()?;
        }
        Ok(())
    }

    fn remote_eof(&mut self) -> Result<(), Error> {
        if let Inbound::Discarding { .. } = self.inbound {
            // Nothing goes to the application any more: no truncation to
            // guard it against, whatever the EOF (`-J`, inside a record).
            self.close_inbound("EOF");
            return Ok(());
        }
        if self.conn.is_handshaking() {
            return Err(engine_closed(true, "the client closed the connection"));
        }
        if !self.conn.at_record_boundary() {
            return Err(engine_closed(
                false,
                "the client closed the connection inside a record",
            ));
        }
        if self.settings.enforce_close_notify {
            return Err(Error::Tls(
                "remote closed connection without a close_notify".into(),
            ));
        }
        if let Inbound::Open { app, .. } = std::mem::replace(&mut self.inbound, Inbound::Closed) {
            self.inbound = Inbound::Draining { app };
            self.inbound_end = Some("EOF");
            self.settings
                .log
                .debug(format_args!("inbound: open -> draining (client EOF)"));
        }
        Ok(())
    }

    /// Hands new records to rustls; reports the handshake's end once.
    fn process(&mut self) -> Result<(), Error> {
        match self.conn.process() {
            Ok(()) => {}
            // Lingering, the application gone and its answer all sent: a
            // fatal alert is the client's end, as a reset is (OpenSSL
            // answers a bare FIN, `-s`, with decode_error), not a failure.
            Err(rustls::Error::AlertReceived(alert)) if self.lingering() => {
                self.settings
                    .log
                    .debug(format_args!("inbound: the client's alert: {alert:?}"));
                self.close_inbound("a fatal alert");
                return Ok(());
            }
            Err(e) => {
                // A ClientHello after a retry refused by our own policy
                // (tls.rs's Vet): its alert in the clear, not rustls' own.
                if let Some(refusal) = self.veto.take() {
                    self.conn.queue_instead(&plaintext_alert(refusal.alert));
                    return Err(refusal.error);
                }
                return Err(engine_closed(self.on_handshake.is_some(), e));
            }
        }
        if !self.conn.is_handshaking() {
            if let Some(on_handshake) = self.on_handshake.take() {
                self.deadline = None;
                self.conn.learn_suite();
                on_handshake(self.conn.common(), self.server_name.as_deref())?;
                // What the handshake used goes back to the kernel once the
                // connection is quiet (`QUIET_MS`), with the relay's own
                // buffers, not now: a short connection ends before that and
                // never pays for it (the madvise(2) calls and the faults of
                // the pages used again: 10 to 25 us).
                self.busy = true;
            }
        }
        Ok(())
    }

    /// What the handshake or the last burst of data used and no longer
    /// needs goes back to the kernel: the empty buffers' pages, the stack
    /// below this frame, the heap's free pages.
    fn release_idle(&mut self) {
        self.conn.release_idle_buffers();
        self.buf.release();
        io::release_idle_memory();
        self.busy = false;
    }

    /// The application is gone and its answer out: only the client's end
    /// is waited for.
    fn lingering(&self) -> bool {
        matches!(
            (&self.inbound, &self.outbound),
            (Inbound::Discarding { .. }, Outbound::Closed)
        )
    }

    /// State changes that follow from what has been delivered or flushed.
    fn settle(&mut self) -> Result<(), Error> {
        if !matches!(self.inbound, Inbound::Closed) && self.conn.cleartext.pending().is_empty() {
            if self.conn.peer_closed() {
                // close_notify received and everything before it delivered.
                self.close_inbound("close_notify");
                if self.conn.common().protocol_version() == Some(ProtocolVersion::TLSv1_2) {
                    // TLS 1.2 closes both ways: answer it and stop reading fdr.
                    self.local_eof("closed after the client's close_notify (TLS 1.2)", true)?;
                }
            } else if matches!(self.inbound, Inbound::Draining { .. }) && !self.conn.stalled() {
                // EOF without close_notify, everything before it delivered.
                self.close_inbound("EOF");
            }
        }
        if let Outbound::Flushing { .. } = self.outbound {
            if !self.conn.wants_write() {
                self.outbound = Outbound::Closed;
                self.settings
                    .log
                    .debug(format_args!("outbound: flushing -> closed"));
            }
        }
        if self.lingering() {
            // The client's end is waited for, a while.
            let now = Instant::now();
            let (until, from) = *self.linger.get_or_insert((now + LINGER, self.discarded));
            if now >= until || self.discarded - from >= LINGER_BYTES {
                self.close_inbound("the linger limit");
            }
        }
        Ok(())
    }

    fn close_inbound(&mut self, why: &'static str) {
        self.inbound = Inbound::Closed;
        self.inbound_end = Some(why);
        self.settings
            .log
            .debug(format_args!("inbound: closed ({why})"));
    }

    /// The closing line at `-v 2`: what went each way, and how each
    /// direction ended, as far as it did.
    fn report(&self) {
        if self.on_handshake.is_some() {
            // Nothing went either way, and neither direction was open.
            return handshake_failed(&self.settings.log, self.started);
        }
        let stopped = format!(
            "the application stopped reading, {} bytes discarded",
            self.discarded
        );
        let inbound = match (self.stopped, self.inbound_end) {
            (None, end) => end.unwrap_or("open").to_string(),
            (Some(Stopped::First), None) => stopped,
            (Some(Stopped::First), Some(end)) => format!("{stopped}, then {end}"),
            (Some(Stopped::AfterClient), end) => {
                format!("{}, then {stopped}", end.unwrap_or("open"))
            }
        };
        let outbound = match (&self.outbound, self.outbound_end) {
            (Outbound::Open { .. }, _) | (_, None) => "open".to_string(),
            // Closed, or flushing when an error came: everything queued
            // has left only if nothing waits for fd 1 any more.
            (_, Some((why, close_notify))) => match (close_notify, !self.conn.wants_write()) {
                (false, true) => why.to_string(),
                (false, false) => format!("{why}, not all sent"),
                (true, true) => format!("{why}, close_notify sent"),
                (true, false) => format!("{why}, close_notify not sent"),
            },
        };
        self.settings.log.info(format_args!(
            "connection ended after {} ms: client to app {} bytes ({inbound}), app to client {} bytes ({outbound})",
            self.started.elapsed().as_millis(),
            self.client_to_app,
            self.app_to_client,
        ));
    }

    /// A fatal error must not pass for a clean end: the descriptors are
    /// closed without shutdown(2), as upstream's go with its process (the
    /// client gets an RST if data of its was left unread, never a FIN).
    fn abandon(&mut self) {
        let inbound = std::mem::replace(&mut self.inbound, Inbound::Closed);
        let outbound = std::mem::replace(&mut self.outbound, Outbound::Closed);
        let ends = match inbound {
            Inbound::Open { net, app } => [Some(net), Some(app)],
            Inbound::Draining { app } => [Some(app), None],
            Inbound::Discarding { net } => [Some(net), None],
            Inbound::Closed => [None, None],
        };
        let more = match outbound {
            Outbound::Open { app, net } => [Some(app), Some(net)],
            Outbound::Flushing { net } => [Some(net), None],
            Outbound::Closed => [None, None],
        };
        ends.into_iter()
            .chain(more)
            .flatten()
            .for_each(End::abandon);
    }

    /// On a fatal error, rustls may have queued an alert: let it out.
    fn send_pending_alert(&mut self) {
        let net = match &self.outbound {
            Outbound::Open { net, .. } | Outbound::Flushing { net } => net.as_fd(),
            Outbound::Closed => return,
        };
        let conn = &mut self.conn;
        conn.queue_last_words();
        send_last_words(net, |_| {
            if conn.wants_write() {
                Ok(conn.write_to(net)?)
            } else {
                Ok(0)
            }
        });
    }
}
