//! The whole engine in-process: `engine::run` gets one end of a socketpair
//! as fds 0 and 1 (as s6-tcpserver gives it a TCP socket) and two pipes as
//! fdr and fdw; the fuzz input is what the client sends.
//!
//! The first input byte is a control byte (the settings), the rest is the
//! client's byte stream:
//!
//!   bits 0-1  client certificates: 0 or 3 none, 1 `-Y`, 2 `-y`
//!   bit 2     `-S`
//!   bit 3     `-J`
//!   bits 4-5  which recorded ClientHello comes first (engine_hello only)
//!   bit 6     only `localhost` is served, as with `-k 2` and one
//!             `KEYFILE:localhost`: no SNI or another name is refused
//!   ctl & 0xc3 == 0x83: "open" run: the client never closes its side, so
//!             the engine can only stop on an error or on `-K` (1 run in 16)
//!
//! Otherwise the client closes its write side right after the input, and
//! the engine must stop without waiting for `-K`.

use std::cell::Cell;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rustls::server::ClientHello;
use rustls::{AlertDescription, ServerConfig};

use s6_tlsd_io::engine::{self, Fds, Refusal, Settings};
use s6_tlsd_io::error::Error;
use s6_tlsd_io::log::Log;
use s6_tlsd_io::notify::Notification;

use crate::identity::{identity, SERVER_NAME};

/// `-K` when the client closes: never reached unless the engine waits for
/// nothing; large enough that a loaded machine does not make it flaky.
pub const CLOSED_TIMEOUT: Duration = Duration::from_millis(1000);
/// `-K` in open runs: each of those costs this much.
pub const OPEN_TIMEOUT: Duration = Duration::from_millis(25);
/// How late after `-K` the engine may return.
pub const SLACK: Duration = Duration::from_millis(500);
/// What the client may send at most (the rest of a longer input is dropped):
/// it is written before the engine starts, so it must fit the socket buffer.
pub const MAX_CLIENT_BYTES: usize = 64 * 1024;

/// The recorded ClientHellos (fuzz/fixtures/hello-NAME.bin), by bits 4-5.
pub const HELLOS: [&str; 4] = ["tls13", "tls12", "tls13-nosni", "tls13-hrr"];

pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{path}: {e} (regenerate with: cargo test --manifest-path fuzz/Cargo.toml \
             --release -- --ignored regenerate_fixtures)"
        )
    })
}

/// The ClientHello that engine_hello puts before its input.
pub fn hello(ctl: u8) -> &'static [u8] {
    static HELLO: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    let all = HELLO.get_or_init(|| {
        HELLOS
            .iter()
            .map(|n| fixture(&format!("hello-{n}.bin")))
            .collect()
    });
    &all[usize::from(ctl >> 4 & 3)]
}

#[derive(Clone, Copy, Debug)]
pub struct Control(pub u8);

impl Control {
    pub fn cert_mode(self) -> usize {
        match self.0 & 3 {
            3 => 0,
            m => usize::from(m),
        }
    }
    pub fn close_notify(self) -> bool {
        self.0 & 4 != 0
    }
    pub fn enforce_close_notify(self) -> bool {
        self.0 & 8 != 0
    }
    pub fn localhost_only(self) -> bool {
        self.0 & 0x40 != 0
    }
    pub fn open(self) -> bool {
        self.0 & 0xc3 == 0x83
    }
    pub fn timeout(self) -> Duration {
        if self.open() {
            OPEN_TIMEOUT
        } else {
            CLOSED_TIMEOUT
        }
    }
}

/// What one run did.
#[derive(Debug)]
pub struct Outcome {
    pub ctl: Control,
    /// What the client sent.
    pub client_bytes: Vec<u8>,
    pub result: Result<(), Error>,
    pub elapsed: Duration,
    /// Everything the engine wrote to the client.
    pub to_client: Vec<u8>,
    pub to_app: Vec<u8>,
    /// The client saw EOF once the engine returned and the harness closed
    /// what it left open.
    pub client_saw_eof: bool,
    /// How many of its four descriptors the engine left open.
    pub left_open: usize,
    pub handshake_done: bool,
}

/// Splits a fuzz input into its control byte and the client's bytes.
pub fn split(data: &[u8]) -> (Control, &[u8]) {
    match data.split_first() {
        Some((&ctl, rest)) => (Control(ctl), rest),
        None => (Control(0), &[]),
    }
}

pub(crate) fn socketpair() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors socketpair(2) returns.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(r, 0, "socketpair: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just created and are ours.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// (read end, write end)
pub(crate) fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2(2) returns.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just created and are ours.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn write_all(fd: &OwnedFd, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: the buffer is valid for its length; the fd is open.
        let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "write: {e}");
            continue;
        }
        data = &data[n as usize..];
    }
}

/// Everything readable on `fd` until EOF; false if EOF does not come within
/// a second (someone still holds the other end).
fn drain(fd: &OwnedFd, out: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 16384];
    loop {
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, 1000) };
        if r == 0 {
            return false;
        }
        if r < 0 {
            continue;
        }
        // SAFETY: the buffer is valid for its length; the fd is open.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        match n {
            0 => return true,
            n if n > 0 => out.extend_from_slice(&buf[..n as usize]),
            // ECONNRESET and the like: the engine is gone, which is EOF enough.
            _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
            _ => return true,
        }
    }
}

/// (device, inode) of an open descriptor.
fn identity_of(fd: i32) -> Option<(u64, u64)> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat(2) fills the buffer or fails; we read it only on success.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: fstat succeeded.
    let st = unsafe { st.assume_init() };
    Some((st.st_dev, st.st_ino))
}

pub(crate) fn dup(fd: &OwnedFd) -> OwnedFd {
    fd.try_clone().expect("dup")
}

/// Which descriptors the engine was given, by number and identity.
pub(crate) struct Given(Vec<(i32, (u64, u64))>);

impl Given {
    /// Whatever the engine left open when it returned (it should leave
    /// none), closed as the process's exit would: how many.
    pub(crate) fn close_left_open(self) -> usize {
        let mut left_open = 0;
        for (fd, id) in self.0 {
            if identity_of(fd) == Some(id) {
                left_open += 1;
                // SAFETY: the engine returned, and the descriptor, still
                // the one it was given, is not closed by anything else.
                drop(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        left_open
    }
}

/// The engine's four descriptors: `server` as fds 0 and 1 (a duplicate
/// for 0, as s6-tcpserver gives one socket twice), and the application's.
pub(crate) fn engine_fds(server: OwnedFd, app_in: OwnedFd, app_out: OwnedFd) -> (Fds, Given) {
    let net_in = dup(&server);
    let given = [&net_in, &server, &app_in, &app_out]
        .iter()
        .map(|fd| (fd.as_raw_fd(), identity_of(fd.as_raw_fd()).expect("fstat")))
        .collect();
    let fds = Fds {
        net_in,
        net_out: server,
        app_in,
        app_out,
    };
    (fds, Given(given))
}

/// Runs the engine with `prefix` then `data` as the client's bytes.
pub fn run(ctl: Control, prefix: &[u8], data: &[u8]) -> Outcome {
    let id = identity();
    let (server, client) = socketpair();
    let (app_in, app_tx) = pipe();
    let (app_rx, app_out) = pipe();

    let room = MAX_CLIENT_BYTES.saturating_sub(prefix.len());
    let client_bytes = [prefix, &data[..data.len().min(room)]].concat();
    write_all(&client, &client_bytes);
    if !ctl.open() {
        // SAFETY: shutting down our own socket.
        unsafe { libc::shutdown(client.as_raw_fd(), libc::SHUT_WR) };
    }
    // The application has nothing to say; the handshake must go on anyway.
    drop(app_tx);

    let (fds, given) = engine_fds(server, app_in, app_out);
    let settings = Settings {
        close_notify: ctl.close_notify(),
        enforce_close_notify: ctl.enforce_close_notify(),
        handshake_timeout: Some(ctl.timeout()),
        log: Log::new(1),
        exit_after: false,
    };
    let config: Arc<ServerConfig> = id.configs[ctl.cert_mode()].clone();
    let handshake_done = Cell::new(false);
    let started = Instant::now();
    let result = engine::run(
        fds,
        settings,
        |hello: &ClientHello, _: &engine::Hello, _: &engine::Veto| {
            let name = hello.server_name();
            if ctl.localhost_only() && !name.is_some_and(|n| n.eq_ignore_ascii_case(SERVER_NAME)) {
                let error = Error::Tls(format!(
                    "the TLS engine closed the connection during the handshake: \
                     no key pair for the server name {}",
                    name.unwrap_or("(none)")
                ));
                return Err(Refusal {
                    alert: AlertDescription::UnrecognisedName,
                    error,
                });
            }
            Ok(config)
        },
        |conn, server_name| {
            let block = Notification::of(conn, server_name).block();
            assert!(block.ends_with(b"\0\0"), "notification block {block:?}");
            handshake_done.set(true);
            Ok(())
        },
    );
    let elapsed = started.elapsed();
    let left_open = given.close_left_open();

    let mut to_client = Vec::new();
    let client_saw_eof = drain(&client, &mut to_client);
    let mut to_app = Vec::new();
    drain(&app_rx, &mut to_app);
    Outcome {
        ctl,
        client_bytes,
        result,
        elapsed,
        to_client,
        to_app,
        client_saw_eof,
        left_open,
        handshake_done: handshake_done.get(),
    }
}

/// (content type, length) of each whole record at the front of `stream`.
pub fn records(stream: &[u8]) -> Vec<(u8, usize)> {
    crate::records::whole_records(stream)
        .iter()
        .map(|r| (r[0], r.len() - 5))
        .collect()
}

/// Whether the last record is an alert: a plaintext one (type 21, two
/// bytes), or a TLS 1.3 encrypted one (type 23: two bytes, the inner
/// content type and a 16-byte tag; no handshake record is that short).
pub fn ends_with_alert(stream: &[u8]) -> bool {
    matches!(records(stream).last(), Some((0x15, 2)) | Some((0x17, 19)))
}

/// With S6_FUZZ_TOLERATE_KNOWN=1 in the environment, findings already
/// reported and not fixed yet pass (fuzz/README.md, "Findings"), so that a
/// long run can look for something new; without it (fuzz/smoke, the
/// regression replays) they fail.
pub fn tolerate_known() -> bool {
    static TOLERATE: OnceLock<bool> = OnceLock::new();
    *TOLERATE.get_or_init(|| std::env::var_os("S6_FUZZ_TOLERATE_KNOWN").is_some_and(|v| v == "1"))
}

/// Whether TLS lets the server tell the client why: not when the client
/// has just closed, nor after it sent a fatal alert itself, nor on `-K`.
pub fn alert_expected(e: &Error) -> bool {
    match e {
        Error::Tls(m) => {
            !(m.ends_with("the client closed the connection")
                || m.ends_with("closed the connection inside a record")
                || m.contains("received fatal alert"))
        }
        _ => false,
    }
}

/// Whether rustls on its own, fed the same client bytes in memory through
/// the engine's steps (Acceptor, the same configuration, the connection),
/// ends up sending an alert.
pub fn rustls_alone_alerts(ctl: Control, mut stream: &[u8]) -> bool {
    use rustls::server::Acceptor;
    let mut out = Vec::new();
    let mut acceptor = Acceptor::default();
    let accepted = loop {
        match acceptor.read_tls(&mut stream) {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
        match acceptor.accept() {
            Ok(None) => {}
            Ok(Some(accepted)) => break accepted,
            Err((_, mut alert)) => {
                let _ = alert.write_all(&mut out);
                return ends_with_alert(&out);
            }
        }
    };
    let config = identity().configs[ctl.cert_mode()].clone();
    let mut conn = match accepted.into_connection(config) {
        Ok(conn) => conn,
        Err((_, mut alert)) => {
            let _ = alert.write_all(&mut out);
            return ends_with_alert(&out);
        }
    };
    loop {
        let failed = conn.process_new_packets().is_err();
        while conn.wants_write() {
            if conn.write_tls(&mut out).is_err() {
                break;
            }
        }
        if failed {
            return ends_with_alert(&out);
        }
        match conn.read_tls(&mut stream) {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
    }
}

impl Outcome {
    /// The properties every run must have; panics (a libFuzzer crash) if not.
    pub fn check(&self) {
        let ctl = self.ctl;
        assert!(
            self.client_saw_eof,
            "the client never saw EOF: a network descriptor is still open somewhere"
        );
        assert!(
            self.left_open == 0 || self.result.is_err(),
            "the engine ended cleanly but left {} descriptors open",
            self.left_open
        );
        match &self.result {
            Ok(()) => assert!(
                self.handshake_done,
                "the engine returned Ok without a completed handshake"
            ),
            Err(e) if !self.handshake_done => {
                assert_eq!(
                    e.exit_code(),
                    98,
                    "handshake failure exits {}: {e}",
                    e.exit_code()
                )
            }
            Err(e) => assert!(
                matches!(e.exit_code(), 98 | 111),
                "after the handshake, exit {}: {e}",
                e.exit_code()
            ),
        }
        if ctl.open() {
            assert!(
                self.elapsed <= ctl.timeout() + SLACK,
                "the engine took {:?} with -K {:?}",
                self.elapsed,
                ctl.timeout()
            );
        } else {
            assert!(
                !matches!(self.result, Err(Error::HandshakeTimeout)),
                "the client had closed, yet the engine waited for -K ({:?})",
                self.elapsed
            );
        }
        if let Err(e) = &self.result {
            if !self.handshake_done && alert_expected(e) && !ends_with_alert(&self.to_client) {
                let records = records(&self.to_client);
                // Tell "rustls queued an alert that was lost" (always a
                // bug) from "rustls queued none" (a known finding: the
                // engine sends no alert of its own).
                assert!(
                    !rustls_alone_alerts(ctl, &self.client_bytes),
                    "rustls queued an alert that never reached the client: {e}; \
                     records sent: {records:?}"
                );
                assert!(
                    tolerate_known(),
                    "no alert sent for: {e} (rustls queued none, and the engine \
                     sent none of its own); records sent: {records:?}"
                );
            }
        }
        assert!(
            self.handshake_done || self.to_app.is_empty(),
            "cleartext reached the application before the handshake completed"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_records_are_recognised() {
        assert!(ends_with_alert(&[0x15, 3, 3, 0, 2, 2, 50]));
        assert!(ends_with_alert(
            &[&[0x16, 3, 3, 0, 1, 9][..], &[0x17, 3, 3, 0, 19], &[0; 19]].concat()
        ));
        assert!(!ends_with_alert(&[0x16, 3, 3, 0, 2, 2, 50]));
        assert!(!ends_with_alert(&[0x15, 3, 3, 0, 2, 2]));
        assert!(!ends_with_alert(&[]));
    }

    #[test]
    fn garbage_fails_with_98_and_an_alert() {
        crate::ignore_sigpipe();
        let o = run(Control(0), &[], b"GET / HTTP/1.0\r\n\r\n");
        o.check();
        assert!(ends_with_alert(&o.to_client), "{:?}", o.to_client);
    }

    #[test]
    fn silence_then_close_is_98_without_alert() {
        let o = run(Control(0), &[], &[]);
        o.check();
        assert!(o.to_client.is_empty());
    }

    #[test]
    fn open_runs_stop_at_the_timeout() {
        let o = run(Control(0x83), &[], &[0x16, 3, 1]);
        o.check();
        assert!(matches!(o.result, Err(Error::HandshakeTimeout)), "{o:?}");
    }

    /// The fallback seeds reach hello.rs's SCSV check: a TLS 1.2 fallback
    /// gets inappropriate_fallback, a TLS 1.3 client's SCSV is no fallback,
    /// a TLS 1.1 one is refused (which alert comes first is hello.rs's
    /// `verdict` to say).
    #[test]
    fn fallback_seeds_reach_the_scsv_check() {
        crate::ignore_sigpipe();
        let seeds = crate::seeds::engine(false);
        let run_seed = |name: &str| {
            let (ctl, rest) = split(&seeds.iter().find(|(n, _)| n == name).unwrap().1);
            run(ctl, &[], rest)
        };
        for name in ["fallback-tls12-first", "fallback-tls12-last"] {
            let o = run_seed(name);
            o.check();
            assert!(
                o.to_client.ends_with(&[0x15, 3, 3, 0, 2, 2, 86]),
                "{name}: {o:?}"
            );
            assert!(
                format!("{:?}", o.result).contains("TLS_FALLBACK_SCSV"),
                "{name}: {o:?}"
            );
        }
        for name in ["fallback-tls13-first", "fallback-tls13-last"] {
            let o = run_seed(name);
            assert_eq!(
                records(&o.to_client).first().map(|r| r.0),
                Some(0x16),
                "{name}: {o:?}"
            );
        }
        for name in ["fallback-tls11-first", "fallback-tls11-records-last"] {
            let o = run_seed(name);
            o.check();
            assert!(ends_with_alert(&o.to_client), "{name}: {o:?}");
        }
    }

    #[test]
    fn every_recorded_hello_gets_a_server_flight() {
        for (i, name) in HELLOS.iter().enumerate() {
            let ctl = Control((i as u8) << 4);
            let o = run(ctl, hello(ctl.0), &[]);
            o.check();
            assert!(
                !records(&o.to_client).is_empty(),
                "{name}: {:?}",
                records(&o.to_client)
            );
        }
    }
}
