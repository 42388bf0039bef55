//! The floor for bench/: the engine's relay without TLS. Same calling
//! convention (`plain_relay [options] -- FDR FDW`, network on fds 0 and 1,
//! application on FDR/FDW, argv read by the engine's own `cli::parse`), same
//! 64 KiB reads, same poll(2) loop shape (one poll over the four fds, a side
//! read only while its destination has taken everything, 32 network reads
//! per wake-up, one application read), EOF passed on as shutdown(2) + close.
//! What the engine spends beyond this program is TLS. A calibration tool,
//! not a product: run by bench/run.
//!
//! The ends are the engine's own `End` (src/engine/io.rs: shutdown of their
//! direction, then close); no TLS means no record staging and a single
//! buffer per write, so write(2) stands in for writev(2).

use std::os::fd::{AsFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use s6_tlsd_io::cli;
use s6_tlsd_io::engine::End;
use s6_tlsd_io::error::strerror;

/// The engine's read sizes: `NET_STAGING` and `APP_CHUNK`.
const CHUNK: usize = 64 * 1024;
/// The engine's `NET_READS_PER_TURN`; the application side gets one read.
const NET_READS_PER_TURN: usize = 32;

/// A fatal system call failure, exit 111 as the engine's.
struct Fatal(String, Errno);

/// Like the engine's inbound and outbound machines: Open -> Flushing (the
/// source hit EOF, bytes still owed to the destination) -> Closed. Dropping
/// an `End` with the state that owned it is what closes it.
enum State {
    Open { from: End, to: End },
    Flushing { to: End },
    Closed,
}

struct Direction {
    state: State,
    buf: Box<[u8]>,
    /// buf[start..end] is read but not yet written.
    start: usize,
    end: usize,
    reads_per_turn: usize,
    from_name: &'static str,
    to_name: &'static str,
}

impl Direction {
    fn new(from: End, to: End, reads_per_turn: usize, names: [&'static str; 2]) -> Direction {
        Direction {
            state: State::Open { from, to },
            buf: vec![0; CHUNK].into_boxed_slice(),
            start: 0,
            end: 0,
            reads_per_turn,
            from_name: names[0],
            to_name: names[1],
        }
    }

    fn pending(&self) -> bool {
        self.start < self.end
    }

    /// The two poll entries (source, destination). The source is read only
    /// when the buffer is empty, so at most CHUNK is ever held. An idle
    /// destination is still watched (no events) to notice its reader going
    /// away (POLLERR/POLLHUP), as the engine does for fdw.
    fn poll_entries(&self) -> [libc::pollfd; 2] {
        let entry = |end: &End, events| libc::pollfd {
            fd: end.raw(),
            events,
            revents: 0,
        };
        let none = libc::pollfd {
            fd: -1,
            events: 0,
            revents: 0,
        };
        match &self.state {
            State::Open { from, to } if !self.pending() => {
                [entry(from, libc::POLLIN), entry(to, 0)]
            }
            State::Open { to, .. } | State::Flushing { to } => [none, entry(to, libc::POLLOUT)],
            State::Closed => [none, none],
        }
    }

    /// Reads from the source and passes it on at once, most of the time
    /// without a trip through poll(2), as the engine's fill_from_* do.
    fn fill(&mut self) -> Result<(), Fatal> {
        for _ in 0..self.reads_per_turn {
            let State::Open { from, .. } = &self.state else {
                return Ok(());
            };
            if self.pending() {
                return Ok(());
            }
            match nix::unistd::read(from.as_fd(), &mut self.buf) {
                Ok(0) => {
                    // EOF: stop reading (shutdown SHUT_RD), finish the writes.
                    if let State::Open { to, .. } =
                        std::mem::replace(&mut self.state, State::Closed)
                    {
                        self.state = State::Flushing { to };
                    }
                }
                Ok(n) => (self.start, self.end) = (0, n),
                Err(Errno::EAGAIN) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(Fatal(format!("read from {}", self.from_name), e)),
            }
            self.flush(0)?;
        }
        Ok(())
    }

    /// Writes what is pending, as much as goes without blocking; then moves
    /// on once the destination owes nothing more.
    fn flush(&mut self, revents: libc::c_short) -> Result<(), Fatal> {
        let to = match &self.state {
            State::Open { to, .. } | State::Flushing { to } => to.as_fd(),
            State::Closed => return Ok(()),
        };
        while self.pending() {
            match nix::unistd::write(to, &self.buf[self.start..self.end]) {
                Ok(n) => self.start += n,
                Err(Errno::EAGAIN) => return Ok(()),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(Fatal(format!("write to {}", self.to_name), e)),
            }
        }
        match self.state {
            // Source done and everything written: shutdown(SHUT_WR), close.
            State::Flushing { .. } => self.state = State::Closed,
            // The reader of the destination went away with nothing owed to
            // it: stop reading the source quietly; the other way goes on.
            State::Open { .. } if revents & (libc::POLLERR | libc::POLLHUP) != 0 => {
                self.state = State::Closed
            }
            _ => {}
        }
        Ok(())
    }
}

fn main() {
    // The engine's usage rules, exit 100; 0 and 1 are the network.
    let opts = match cli::parse(std::env::args_os().skip(1)) {
        Ok(opts) if opts.fdr >= 2 && opts.fdw >= 2 => opts,
        _ => {
            eprintln!("plain_relay: usage: plain_relay [options] -- FDR FDW (both >= 2)");
            std::process::exit(100);
        }
    };
    if let Err(Fatal(what, e)) = relay(opts.fdr, opts.fdw) {
        eprintln!(
            "plain_relay: fatal: unable to {what}: {}",
            strerror(e as i32)
        );
        std::process::exit(111);
    }
}

fn relay(fdr: u32, fdw: u32) -> Result<(), Fatal> {
    let [net_in, net_out, app_in, app_out] = take_fds(fdr, fdw)?;
    // Slots as in the engine: network in, app out, app in, network out.
    let mut inbound = Direction::new(
        End::reading(net_in),
        End::writing(app_out),
        NET_READS_PER_TURN,
        ["remote", "local"],
    );
    let mut outbound = Direction::new(
        End::reading(app_in),
        End::writing(net_out),
        1,
        ["local", "remote"],
    );
    loop {
        if matches!(
            (&inbound.state, &outbound.state),
            (State::Closed, State::Closed)
        ) {
            return Ok(());
        }
        let [a, b] = inbound.poll_entries();
        let [c, d] = outbound.poll_entries();
        let mut set = [a, b, c, d];
        // SAFETY: `set` is a valid array of pollfd for its whole length, and
        // every descriptor in it is owned by `inbound` or `outbound`, open.
        let r = unsafe { libc::poll(set.as_mut_ptr(), set.len() as libc::nfds_t, -1) };
        if r < 0 {
            match Errno::last() {
                Errno::EINTR => continue,
                e => return Err(Fatal("poll".into(), e)),
            }
        }
        // Writes first, as the engine: room made downstream lets reads go on.
        if set[1].revents != 0 {
            inbound.flush(set[1].revents)?;
        }
        if set[3].revents != 0 {
            outbound.flush(set[3].revents)?;
        }
        if set[2].revents != 0 {
            outbound.fill()?;
        }
        if set[0].revents != 0 {
            inbound.fill()?;
        }
    }
}

/// fds 0, 1, FDR and FDW, non-blocking, each owned once: when FDR and FDW
/// are one descriptor, FDW gets its own copy, as in the engine's main.
fn take_fds(fdr: u32, fdw: u32) -> Result<[OwnedFd; 4], Fatal> {
    // An fd number past i32::MAX becomes negative: EBADF just below.
    let mut raw = [0, 1, fdr as i32, fdw as i32];
    for fd in raw {
        // SAFETY: F_GETFD only reads the flags; EBADF if fd is not open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(Fatal(format!("use fd {fd}"), Errno::last()));
        }
    }
    if fdr == fdw {
        // SAFETY: duplicating an open descriptor; the copy is ours.
        raw[3] = unsafe { libc::fcntl(raw[2], libc::F_DUPFD_CLOEXEC, 3) };
        if raw[3] < 0 {
            return Err(Fatal(format!("duplicate fd {fdw}"), Errno::last()));
        }
    }
    // SAFETY: the four are open and distinct, handed to us by the caller;
    // nothing else in this process refers to them.
    let fds = raw.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
    for fd in &fds {
        let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(|e| Fatal("get fd flags".into(), e))?;
        let flags = OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK;
        fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(|e| Fatal("set fds non-blocking".into(), e))?;
    }
    Ok(fds)
}
