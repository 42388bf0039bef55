//! The relay after a handshake, driven by a small program: the
//! `engine_relay` target. `engine::run` runs in the calling thread, as in
//! the product; a driver thread plays the client (rustls for the
//! handshake, then records.rs, which can send any record) and the
//! application (the other ends of fdr and fdw), one operation at a time.
//!
//! After each operation the driver waits until the engine has done all it
//! can: until its thread sleeps in poll(2) (`/proc/self/task/TID/syscall`
//! names the system call a sleeping thread is in) or has returned. What
//! the engine does after each operation is then a function of the program
//! alone, not of the scheduler, and no run ever waits on a timer: the
//! driver never sleeps, and the engine's timers (`-K`, the linger, the
//! idle release) are never what moves it on.
//!
//! The program (`Program::decode`), byte-coded so that seeds are easy to
//! write (`Program::encode`) and a mutation changes one event:
//!
//!   byte 0   bit 0      TLS 1.2 (else TLS 1.3)
//!            bits 1-2   the suite: AES-128-GCM, AES-256-GCM,
//!                       ChaCha20-Poly1305 (3: AES-128-GCM)
//!            bits 3-4   client certificates: none; `-Y` and the client
//!                       sends one; `-y` and it does; `-Y` and it does not
//!            bit 5      `-S`        bit 6   `-J`
//!            bit 7      the application's side is one socket (else pipes)
//!   byte 1   bit 0      small buffers: socket send buffers and pipes at
//!                       their minimum, so that little data fills them
//!            bit 1      the abrupt end: every descriptor closed at once
//!   then     operations: an opcode byte (modulo 16) and its arguments,
//!            missing bytes read as zeros (`Op`).
//!
//! The handshake happens before the first operation of the client: the
//! application's operations before it happen during the handshake.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::Resumption;
use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, KeyLog, ServerConfig};

use s6_tlsd_io::engine::{self, Settings};
use s6_tlsd_io::error::Error;
use s6_tlsd_io::log::Log;
use s6_tlsd_io::notify::Notification;

use crate::engine::{dup, engine_fds, pipe, socketpair, tolerate_known};
use crate::identity::{identity, SERVER_NAME};
use crate::records::{
    self, Keys, Version, ALERT, APPLICATION_DATA, CHANGE_CIPHER_SPEC, HANDSHAKE, KEY_UPDATE,
};
use std::panic::PanicHookInfo;
use std::thread::JoinHandle;

/// Operations after the setup, at most.
pub const MAX_OPS: usize = 64;
/// Bytes either side may send in one run, at most (the rest is dropped).
pub const MAX_BYTES: usize = 1 << 20;
/// `-K`: far beyond any run, so that it never ends one, but set, so that
/// the handshake runs under a deadline as it does in service.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3600);
/// KeyUpdates in a row that rustls takes without application data
/// between them (its `TooManyKeyUpdateRequests`, after BoringSSL's).
const KEY_UPDATES: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setup {
    pub version: Version,
    /// 0 AES-128-GCM, 1 AES-256-GCM, 2 ChaCha20-Poly1305.
    pub suite: u8,
    /// 0 none, 1 `-Y`, 2 `-y`.
    pub cert_mode: usize,
    pub client_sends_cert: bool,
    pub close_notify: bool,
    pub enforce_close_notify: bool,
    pub app_socket: bool,
    pub small_buffers: bool,
    pub abrupt: bool,
}

impl Setup {
    fn decode(a: u8, b: u8) -> Setup {
        let certs = a >> 3 & 3;
        Setup {
            version: match a & 1 {
                1 => Version::Tls12,
                _ => Version::Tls13,
            },
            suite: (a >> 1 & 3) % 3,
            cert_mode: match certs {
                3 => 1,
                m => usize::from(m),
            },
            client_sends_cert: certs == 1 || certs == 2,
            close_notify: a & 0x20 != 0,
            enforce_close_notify: a & 0x40 != 0,
            app_socket: a & 0x80 != 0,
            small_buffers: b & 1 != 0,
            abrupt: b & 2 != 0,
        }
    }

    fn encode(&self) -> [u8; 2] {
        let certs = match (self.cert_mode, self.client_sends_cert) {
            (0, _) => 0,
            (1, false) => 3,
            (m, _) => m as u8,
        };
        let a = u8::from(self.version == Version::Tls12)
            | self.suite << 1
            | certs << 3
            | u8::from(self.close_notify) << 5
            | u8::from(self.enforce_close_notify) << 6
            | u8::from(self.app_socket) << 7;
        let b = u8::from(self.small_buffers) | u8::from(self.abrupt) << 1;
        [a, b]
    }
}

impl Default for Setup {
    fn default() -> Setup {
        Setup::decode(0, 0)
    }
}

/// One event. The client's records carry the client's pattern of bytes
/// (`pattern`) unless the operation gives its plaintext.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// 0: application data, this many bytes, in records of at most 2^14.
    Data(u16),
    /// 1: one well-formed record of any content type, this plaintext.
    Record(u8, Vec<u8>),
    /// 2: an alert record: level, description.
    Alert(u8, u8),
    /// 3: close_notify.
    CloseNotify,
    /// 4: a KeyUpdate (TLS 1.3; under TLS 1.2, a message out of place),
    /// asking the engine to update its keys too if true.
    KeyUpdate(bool),
    /// 5: a data record of this many bytes (1 to 256) with one byte of
    /// its body or tag changed: at this offset, by this XOR (0 reads as 1).
    Corrupt(u8, u16, u8),
    /// 6: the first bytes of a data record of this many bytes: as many as
    /// the second number says, modulo the record's length.
    Truncated(u8, u16),
    /// 7: bytes as they are.
    Raw(Vec<u8>),
    /// 8: the client reads up to this many bytes (0: all it can).
    ClientRead(u16),
    /// 9: the client's EOF (shutdown(2)), once what it wrote is out.
    ClientShutdown,
    /// 10: the client closes its socket at once: a reset if anything it
    /// was sent is unread.
    ClientAbort,
    /// 11: the application writes this many bytes of its pattern.
    AppWrite(u16),
    /// 12: the application reads up to this many bytes (0: all it can).
    AppRead(u16),
    /// 13: the application's EOF on fdr, once what it wrote is in.
    AppCloseFdr,
    /// 14: the application stops reading: fdw closed (pipes) or shut
    /// down for reading (socket).
    AppCloseFdw,
    /// 15: the application closes everything at once.
    AppAbort,
}

impl Op {
    fn is_client(&self) -> bool {
        !matches!(
            self,
            Op::AppWrite(_) | Op::AppRead(_) | Op::AppCloseFdr | Op::AppCloseFdw | Op::AppAbort
        )
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Program {
    pub setup: Setup,
    pub ops: Vec<Op>,
}

/// Reads bytes, zeros past the end.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    fn vec(&mut self) -> Vec<u8> {
        let n = usize::from(self.u8()).min(self.0.len());
        let (v, rest) = self.0.split_at(n);
        self.0 = rest;
        v.to_vec()
    }
}

impl Program {
    pub fn decode(data: &[u8]) -> Program {
        let mut r = Bytes(data);
        let setup = Setup::decode(r.u8(), r.u8());
        let mut ops = Vec::new();
        while !r.0.is_empty() && ops.len() < MAX_OPS {
            ops.push(match r.u8() % 16 {
                0 => Op::Data(r.u16()),
                1 => Op::Record(r.u8(), r.vec()),
                2 => Op::Alert(r.u8(), r.u8()),
                3 => Op::CloseNotify,
                4 => Op::KeyUpdate(r.u8() & 1 != 0),
                5 => Op::Corrupt(r.u8(), r.u16(), r.u8()),
                6 => Op::Truncated(r.u8(), r.u16()),
                7 => Op::Raw(r.vec()),
                8 => Op::ClientRead(r.u16()),
                9 => Op::ClientShutdown,
                10 => Op::ClientAbort,
                11 => Op::AppWrite(r.u16()),
                12 => Op::AppRead(r.u16()),
                13 => Op::AppCloseFdr,
                14 => Op::AppCloseFdw,
                _ => Op::AppAbort,
            });
        }
        Program { setup, ops }
    }

    /// The bytes that decode to this program (seeds, tests).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.setup.encode().to_vec();
        for op in &self.ops {
            let vec = |out: &mut Vec<u8>, v: &[u8]| {
                out.push(v.len() as u8);
                out.extend_from_slice(&v[..v.len().min(255)]);
            };
            match op {
                Op::Data(n) => out.extend([0, (n >> 8) as u8, *n as u8]),
                Op::Record(t, p) => {
                    out.extend([1, *t]);
                    vec(&mut out, p);
                }
                Op::Alert(l, d) => out.extend([2, *l, *d]),
                Op::CloseNotify => out.push(3),
                Op::KeyUpdate(r) => out.extend([4, u8::from(*r)]),
                Op::Corrupt(n, at, x) => out.extend([5, *n, (at >> 8) as u8, *at as u8, *x]),
                Op::Truncated(n, k) => out.extend([6, *n, (k >> 8) as u8, *k as u8]),
                Op::Raw(v) => {
                    out.push(7);
                    vec(&mut out, v);
                }
                Op::ClientRead(n) => out.extend([8, (n >> 8) as u8, *n as u8]),
                Op::ClientShutdown => out.push(9),
                Op::ClientAbort => out.push(10),
                Op::AppWrite(n) => out.extend([11, (n >> 8) as u8, *n as u8]),
                Op::AppRead(n) => out.extend([12, (n >> 8) as u8, *n as u8]),
                Op::AppCloseFdr => out.push(13),
                Op::AppCloseFdw => out.push(14),
                Op::AppAbort => out.push(15),
            }
        }
        out
    }
}

/// Byte `i` of a side's stream: position-dependent, so that a byte lost,
/// repeated or reordered shows.
pub fn pattern(side: u8, i: usize) -> u8 {
    ((i as u32).wrapping_mul(0x9e37_79b1) >> 24) as u8 ^ side
}

const CLIENT: u8 = 0x00;
const APP: u8 = 0x5a;

/// Where the client's handshake ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handshake {
    NotStarted,
    Done,
    Failed(String),
}

/// What the driver did and saw.
#[derive(Debug, Default)]
pub struct Transcript {
    /// Application data the client sent in well-formed records, in order.
    pub client_sent: Vec<u8>,
    /// What the application read from fdw.
    pub app_got: Vec<u8>,
    /// What the application wrote into fdr.
    pub app_written: Vec<u8>,
    /// Application data the client decrypted.
    pub client_got: Vec<u8>,
    pub handshake: Option<Handshake>,
    /// A record from the engine that did not decrypt, and why.
    pub undecryptable: Option<String>,
    pub server_close_notify: bool,
    /// What the client read after the handshake, record by record: (type,
    /// length of the plaintext), a run of data records as one; for the
    /// messages of failed checks.
    pub from_engine: Vec<(u8, usize)>,
    /// The client saw EOF from the engine.
    pub client_eof: bool,
    /// The application saw EOF on fdw.
    pub app_eof: bool,
    /// The first thing the client did that TLS does not allow or that can
    /// lose data (so that the engine may fail), if any.
    pub client_fault: Option<String>,
    /// The client sent close_notify before the end of the program.
    pub client_closed_early: bool,
    /// The application stopped reading (or closed everything).
    pub app_stopped: bool,
    /// The graceful end: the engine returned before the driver closed
    /// anything.
    pub ended_on_its_own: bool,
}

/// The engine's thread, as the driver sees it.
struct Watch {
    /// `/proc/self/task/TID/syscall` of the engine's thread.
    syscall: File,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// `engine::run` returned.
    done: AtomicBool,
    /// The engine's `on_handshake` ran.
    handshake: AtomicBool,
}

impl Watch {
    fn new(shared: Arc<Shared>) -> Watch {
        // SAFETY: gettid(2) has no preconditions.
        let tid = unsafe { libc::gettid() };
        let path = format!("/proc/self/task/{tid}/syscall");
        let syscall = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        Watch { syscall, shared }
    }

    fn done(&self) -> bool {
        self.shared.done.load(Ordering::Acquire)
    }

    /// The engine's poll(2), if its thread sleeps in one: the address of
    /// its array of pollfd and their number. A thread that is not asleep
    /// reads as `running`.
    fn poll_args(&self) -> Option<(usize, usize)> {
        let mut buf = [0u8; 128];
        let n = self.syscall.read_at(&mut buf, 0).ok()?;
        let line = std::str::from_utf8(&buf[..n]).ok()?;
        let mut fields = line.split_whitespace();
        let nr: libc::c_long = fields.next()?.parse().ok()?;
        #[cfg(target_arch = "x86_64")]
        let is_poll = nr == libc::SYS_poll || nr == libc::SYS_ppoll;
        #[cfg(not(target_arch = "x86_64"))]
        let is_poll = nr == libc::SYS_ppoll;
        if !is_poll {
            return None;
        }
        let mut hex = || usize::from_str_radix(fields.next()?.trim_start_matches("0x"), 16).ok();
        Some((hex()?, hex()?))
    }

    /// Whether the engine has done all it can: its thread sleeps in
    /// poll(2), and none of the descriptors it polls is ready. Asleep is
    /// not enough: a wake-up can reach a thread some microseconds after
    /// the write or close that caused it has returned (the scheduler
    /// queues it for the thread's CPU), and until then the thread still
    /// reads as asleep.
    fn quiescent(&self) -> bool {
        let Some((array, n)) = self.poll_args() else {
            return false;
        };
        if array == 0 || n > 8 {
            return false;
        }
        // The engine's thread sleeps in poll(2) on these `n` pollfd; the
        // kernel writes to them only as poll returns. Read through
        // /proc/self/mem: a load from another thread's frame is what
        // AddressSanitizer reports (a fake frame's, in its builds). Should
        // the thread wake meanwhile and reuse the memory, the copy may be
        // stale, which the second look below catches (a new poll at the
        // same address is as good: the engine is asleep again).
        let mut raw = vec![0u8; n * 8];
        if mem().read_exact_at(&mut raw, array as u64).is_err() {
            return false;
        }
        let mut copy: Vec<libc::pollfd> = raw
            .chunks_exact(8)
            .map(|p| libc::pollfd {
                fd: i32::from_ne_bytes([p[0], p[1], p[2], p[3]]),
                events: i16::from_ne_bytes([p[4], p[5]]),
                revents: 0,
            })
            .collect();
        // SAFETY: a valid array of `n` pollfd; no wait.
        let ready = unsafe { libc::poll(copy.as_mut_ptr(), n as libc::nfds_t, 0) };
        ready == 0 && self.poll_args() == Some((array, n))
    }

    /// Until the engine has done all it can with what it was given.
    fn settle(&self) {
        while !self.done() && !self.quiescent() {
            std::thread::yield_now();
        }
    }
}

/// This process's memory, as a file.
fn mem() -> &'static File {
    static MEM: std::sync::OnceLock<File> = std::sync::OnceLock::new();
    MEM.get_or_init(|| File::open("/proc/self/mem").expect("/proc/self/mem"))
}

/// The application's ends.
enum App {
    Pipes {
        /// The write end of fdr.
        tx: Option<OwnedFd>,
        /// The read end of fdw.
        rx: Option<OwnedFd>,
    },
    Socket {
        sock: Option<OwnedFd>,
        write_open: bool,
        read_open: bool,
    },
}

impl App {
    fn writer(&self) -> Option<BorrowedFd<'_>> {
        match self {
            App::Pipes { tx, .. } => tx.as_ref().map(|f| f.as_fd()),
            App::Socket {
                sock,
                write_open: true,
                ..
            } => sock.as_ref().map(|f| f.as_fd()),
            App::Socket { .. } => None,
        }
    }

    fn reader(&self) -> Option<BorrowedFd<'_>> {
        match self {
            App::Pipes { rx, .. } => rx.as_ref().map(|f| f.as_fd()),
            App::Socket {
                sock,
                read_open: true,
                ..
            } => sock.as_ref().map(|f| f.as_fd()),
            App::Socket { .. } => None,
        }
    }

    /// EOF on fdr.
    fn close_write(&mut self) {
        match self {
            App::Pipes { tx, .. } => *tx = None,
            App::Socket {
                sock, write_open, ..
            } => {
                shutdown(sock.as_ref(), libc::SHUT_WR);
                *write_open = false;
            }
        }
    }

    /// fdw refuses the engine's writes from now on.
    fn close_read(&mut self) {
        match self {
            App::Pipes { rx, .. } => *rx = None,
            App::Socket {
                sock, read_open, ..
            } => {
                shutdown(sock.as_ref(), libc::SHUT_RD);
                *read_open = false;
            }
        }
    }

    fn abort(&mut self) {
        match self {
            App::Pipes { tx, rx } => (*tx, *rx) = (None, None),
            App::Socket {
                sock,
                write_open,
                read_open,
            } => (*sock, *write_open, *read_open) = (None, false, false),
        }
    }
}

/// The client's TLS: rustls until the handshake is done, then its keys.
enum Tls {
    Handshaking(Box<ClientConnection>),
    Keys(Box<Keys>),
    Failed,
}

/// TLS 1.3's traffic secrets, from rustls' key log, for key updates.
#[derive(Debug, Default)]
struct Secrets(Mutex<Vec<(String, Vec<u8>)>>);

impl KeyLog for Secrets {
    fn log(&self, label: &str, _: &[u8], secret: &[u8]) {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.push((label.to_string(), secret.to_vec()));
    }
}

impl Secrets {
    fn get(&self, label: &str) -> Vec<u8> {
        let all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.iter()
            .rev()
            .find(|(l, _)| l == label)
            .map(|(_, s)| s.clone())
            .unwrap_or_default()
    }
}

fn client_config(setup: &Setup, secrets: Arc<Secrets>) -> Arc<ClientConfig> {
    use aws_lc_rs::cipher_suite::*;
    let id = identity();
    let suite = match (setup.version, setup.suite) {
        (Version::Tls13, 1) => TLS13_AES_256_GCM_SHA384,
        (Version::Tls13, 2) => TLS13_CHACHA20_POLY1305_SHA256,
        (Version::Tls13, _) => TLS13_AES_128_GCM_SHA256,
        (Version::Tls12, 1) => TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        (Version::Tls12, 2) => TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        (Version::Tls12, _) => TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    };
    let provider = CryptoProvider {
        cipher_suites: vec![suite],
        kx_groups: vec![aws_lc_rs::kx_group::X25519],
        ..aws_lc_rs::default_provider()
    };
    let version = match setup.version {
        Version::Tls12 => &rustls::version::TLS12,
        Version::Tls13 => &rustls::version::TLS13,
    };
    let builder = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[version])
        .expect("the version")
        .with_root_certificates(id.roots());
    let mut config = match setup.client_sends_cert {
        true => builder
            .with_client_auth_cert(
                vec![CertificateDer::from(id.client_cert_der.clone())],
                id.client_key(),
            )
            .expect("the client certificate"),
        false => builder.with_no_client_auth(),
    };
    config.enable_secret_extraction = true;
    config.key_log = secrets;
    config.resumption = Resumption::disabled();
    Arc::new(config)
}

/// Writes what the descriptor takes now; how much.
fn write_some(fd: BorrowedFd, data: &[u8]) -> usize {
    if data.is_empty() {
        return 0;
    }
    // SAFETY: the buffer is valid for its length; the fd is open.
    let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
    n.max(0) as usize
}

/// What `read_some` got.
enum Read {
    /// This many bytes.
    Data(usize),
    /// EOF, or the descriptor failed (a reset): nothing more comes.
    Closed,
    /// Nothing there yet (EAGAIN, EINTR).
    Nothing,
}

/// Reads what is there, at most `max` bytes, into `out`.
fn read_some(fd: BorrowedFd, out: &mut Vec<u8>, max: usize) -> Read {
    let mut buf = [0u8; 65536];
    let want = buf.len().min(max);
    // SAFETY: the buffer is valid for `want` bytes; the fd is open.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), want) };
    match n {
        0 => Read::Closed,
        n if n > 0 => {
            out.extend_from_slice(&buf[..n as usize]);
            Read::Data(n as usize)
        }
        _ => match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => Read::Nothing,
            _ => Read::Closed,
        },
    }
}

/// Reads from `fd` (none: nothing to read) into `out` until `max` bytes
/// or nothing is there: how many, and whether it reached EOF (or a
/// failure).
fn read_up_to(fd: Option<BorrowedFd>, out: &mut Vec<u8>, max: usize) -> (usize, bool) {
    let mut total = 0;
    if let Some(fd) = fd {
        while total < max {
            match read_some(fd, out, max - total) {
                Read::Data(n) => total += n,
                Read::Closed => return (total, true),
                Read::Nothing => break,
            }
        }
    }
    (total, false)
}

/// shutdown(2) of our own socket, if it is still open.
fn shutdown(fd: Option<&OwnedFd>, how: libc::c_int) {
    if let Some(fd) = fd {
        // SAFETY: shutting down our own socket.
        unsafe { libc::shutdown(fd.as_raw_fd(), how) };
    }
}

fn set_nonblocking(fd: &OwnedFd) {
    // SAFETY: fcntl on our own descriptor.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}

/// The smallest buffers the kernel allows: little data fills them.
fn shrink_socket(fd: &OwnedFd) {
    let size: libc::c_int = 1;
    // SAFETY: a valid option value of its size; the kernel rounds it up
    // to its minimum.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

fn shrink_pipe(fd: &OwnedFd) {
    // SAFETY: fcntl on our own descriptor; one page is the minimum.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
}

struct Driver {
    setup: Setup,
    watch: Watch,
    client: Option<OwnedFd>,
    /// Bytes for the client's socket that it has not taken yet.
    client_out: Vec<u8>,
    /// Bytes from the engine not yet taken as whole records.
    client_in: Vec<u8>,
    /// The client's EOF waits for `client_out` to be written.
    client_shutdown: bool,
    client_write_open: bool,
    tls: Tls,
    secrets: Arc<Secrets>,
    /// The client's close_notify is sent.
    client_closed: bool,
    key_updates: usize,
    app: App,
    app_out: Vec<u8>,
    /// EOF on fdr waits for `app_out` to be written.
    app_close: bool,
    t: Transcript,
}

impl Driver {
    /// The client's bytes, to be written as the socket takes them.
    fn send(&mut self, bytes: Vec<u8>) {
        if self.can_send() {
            self.client_out.extend(bytes);
        }
    }

    fn fault(&mut self, why: impl Into<String>) {
        if self.t.client_fault.is_none() {
            self.t.client_fault = Some(why.into());
        }
    }

    fn can_send(&self) -> bool {
        self.client_write_open && !self.client_shutdown
    }

    /// One record of `typ` carrying `payload`, sent under the client's
    /// keys (nothing without them).
    fn seal_send(&mut self, typ: u8, payload: &[u8]) {
        let record = self.keys().map(|k| k.seal(typ, payload));
        self.send(record.unwrap_or_default());
    }

    /// Writes what each side has pending, as far as it goes: how much.
    fn flush(&mut self) -> usize {
        let mut moved = 0;
        if let Some(fd) = self.client.as_ref().filter(|_| self.client_write_open) {
            let n = write_some(fd.as_fd(), &self.client_out);
            self.client_out.drain(..n);
            moved += n;
            if self.client_shutdown && self.client_out.is_empty() {
                shutdown(Some(fd), libc::SHUT_WR);
                self.client_write_open = false;
                moved += 1;
            }
        }
        if let Some(fd) = self.app.writer() {
            let n = write_some(fd, &self.app_out);
            self.t
                .app_written
                .extend(self.app_out.drain(..n).collect::<Vec<_>>());
            moved += n;
            if self.app_close && self.app_out.is_empty() {
                self.app.close_write();
                moved += 1;
            }
        }
        moved
    }

    /// Everything pending written, as far as the engine takes it, and the
    /// engine done with all of it.
    fn settle(&mut self) {
        loop {
            let moved = self.flush();
            self.watch.settle();
            if moved == 0 {
                return;
            }
        }
    }

    /// The client reads up to `max` bytes; how many.
    fn client_read(&mut self, max: usize) -> usize {
        let fd = self.client.as_ref().map(|f| f.as_fd());
        let (n, eof) = read_up_to(fd, &mut self.client_in, max);
        self.t.client_eof |= eof;
        self.take_records();
        n
    }

    /// The application reads up to `max` bytes; how many.
    fn app_read(&mut self, max: usize) -> usize {
        let (n, eof) = read_up_to(self.app.reader(), &mut self.t.app_got, max);
        self.t.app_eof |= eof;
        n
    }

    /// Whole records from the engine, to rustls during the handshake, to
    /// the client's keys after it.
    fn take_records(&mut self) {
        loop {
            let Some(record) = records::whole_records(&self.client_in)
                .first()
                .map(|r| r.to_vec())
            else {
                return;
            };
            self.client_in.drain(..record.len());
            match &mut self.tls {
                Tls::Handshaking(conn) => {
                    let failed = match conn.read_tls(&mut &record[..]) {
                        Ok(_) => conn.process_new_packets().err().map(|e| e.to_string()),
                        Err(e) => Some(e.to_string()),
                    };
                    if let Some(e) = failed {
                        self.t.handshake = Some(Handshake::Failed(e));
                        self.tls = Tls::Failed;
                        return;
                    }
                    // Records after the handshake's are for the keys.
                    if !conn.is_handshaking() {
                        return;
                    }
                }
                Tls::Keys(keys) => match keys.open(&record) {
                    Ok((typ, plain)) => self.got_from_engine(typ, plain),
                    Err(_) => {
                        self.t.undecryptable.get_or_insert_with(|| {
                            format!("a record of {} bytes, type {}", record.len(), record[0])
                        });
                    }
                },
                Tls::Failed => {}
            }
        }
    }

    fn got_from_engine(&mut self, typ: u8, plain: Vec<u8>) {
        match self.t.from_engine.last_mut() {
            Some((APPLICATION_DATA, n)) if typ == APPLICATION_DATA => *n += plain.len(),
            _ => self.t.from_engine.push((typ, plain.len())),
        }
        match typ {
            APPLICATION_DATA => self.t.client_got.extend(plain),
            ALERT if plain == [1, 0] => self.t.server_close_notify = true,
            // Other alerts: nothing to note, but no stray record either.
            ALERT if plain.len() == 2 => {}
            HANDSHAKE => {
                // TLS 1.3 KeyUpdates: the engine's next records come under
                // its next keys.
                let mut rest = &plain[..];
                while rest.len() >= 4 {
                    let len = 4
                        + (usize::from(rest[1]) << 16
                            | usize::from(rest[2]) << 8
                            | usize::from(rest[3]));
                    if rest.len() < len {
                        break;
                    }
                    if rest[0] == KEY_UPDATE {
                        if let Tls::Keys(keys) = &mut self.tls {
                            keys.update_rx();
                        }
                    }
                    rest = &rest[len..];
                }
            }
            other => {
                self.t.undecryptable.get_or_insert_with(|| {
                    format!("a record of type {other} with {} bytes", plain.len())
                });
            }
        }
    }

    /// The handshake, with rustls' client, before the client's first
    /// operation.
    fn handshake(&mut self) {
        if self.t.handshake.is_some() {
            return;
        }
        self.t.handshake = Some(Handshake::NotStarted);
        for _ in 0..64 {
            let Tls::Handshaking(conn) = &mut self.tls else {
                // rustls refused what the engine sent.
                return;
            };
            let mut out = Vec::new();
            while conn.wants_write() {
                if conn.write_tls(&mut out).is_err() {
                    break;
                }
            }
            if !conn.is_handshaking() {
                return self.keys_from_rustls(out);
            }
            let wrote = !out.is_empty();
            self.send(out);
            self.settle();
            if self.client_read(usize::MAX) == 0 && !wrote {
                break;
            }
        }
        if matches!(self.tls, Tls::Handshaking(_)) {
            self.t.handshake = Some(Handshake::Failed(match self.t.client_eof {
                true => "the engine closed the connection".into(),
                false => "stuck: the engine waits for the client, the client for the engine".into(),
            }));
            self.tls = Tls::Failed;
        }
    }

    /// rustls' client is done: its last flight goes, its keys come here.
    fn keys_from_rustls(&mut self, last_flight: Vec<u8>) {
        self.send(last_flight);
        let Tls::Handshaking(mut conn) = std::mem::replace(&mut self.tls, Tls::Failed) else {
            return;
        };
        // Application data that came with the handshake's last records.
        let mut early = Vec::new();
        let _ = std::io::Read::read_to_end(&mut conn.reader(), &mut early);
        self.t.client_got.extend(early);
        match conn.dangerous_extract_secrets() {
            Ok(secrets) => {
                let keys = Keys::new(
                    self.setup.version,
                    secrets,
                    self.secrets.get("CLIENT_TRAFFIC_SECRET_0"),
                    self.secrets.get("SERVER_TRAFFIC_SECRET_0"),
                );
                self.tls = Tls::Keys(Box::new(keys));
                self.t.handshake = Some(Handshake::Done);
            }
            Err(e) => {
                self.t.handshake = Some(Handshake::Failed(format!("extracting the keys: {e}")));
            }
        }
        self.settle();
        self.take_records();
    }

    fn keys(&mut self) -> Option<&mut Keys> {
        match &mut self.tls {
            Tls::Keys(k) => Some(k),
            _ => None,
        }
    }

    /// A data record's worth of the client's pattern, not counted as sent.
    fn pattern_record(&mut self, len: u8) -> Option<Vec<u8>> {
        let len = usize::from(len.max(1));
        let from = self.t.client_sent.len();
        let plain: Vec<u8> = (from..from + len).map(|i| pattern(CLIENT, i)).collect();
        Some(self.keys()?.seal(APPLICATION_DATA, &plain))
    }

    fn after_close(&mut self) {
        if self.client_closed {
            self.fault("records after the client's close_notify");
        }
    }

    fn op(&mut self, op: &Op) {
        if op.is_client() {
            self.handshake();
        }
        let sending = matches!(
            op,
            Op::Data(_)
                | Op::Record(..)
                | Op::Alert(..)
                | Op::CloseNotify
                | Op::KeyUpdate(_)
                | Op::Corrupt(..)
                | Op::Truncated(..)
        );
        if sending && (!self.can_send() || !matches!(self.tls, Tls::Keys(_))) {
            // The client's side is closed, or it has no keys.
            return self.settle();
        }
        match op {
            Op::Data(n) => {
                let room = MAX_BYTES.saturating_sub(self.t.client_sent.len());
                let n = usize::from(*n).min(room);
                if n > 0 {
                    self.after_close();
                    self.key_updates = 0;
                }
                let from = self.t.client_sent.len();
                let plain: Vec<u8> = (from..from + n).map(|i| pattern(CLIENT, i)).collect();
                for chunk in plain.chunks(1 << 14) {
                    self.seal_send(APPLICATION_DATA, chunk);
                }
                self.t.client_sent.extend(plain);
            }
            Op::Record(typ, payload) => {
                self.after_close();
                let (read_as, content) = records::as_read(self.setup.version, *typ, payload);
                if read_as != Some(APPLICATION_DATA) || content.is_empty() {
                    self.fault(format!("a record of type {typ}, {} bytes", payload.len()));
                } else {
                    self.key_updates = 0;
                }
                self.seal_send(*typ, payload);
                if read_as == Some(APPLICATION_DATA) {
                    self.t.client_sent.extend(content);
                }
            }
            Op::Alert(level, description) => {
                self.after_close();
                self.fault(format!("an alert ({level}, {description})"));
                self.seal_send(ALERT, &[*level, *description]);
            }
            Op::CloseNotify => {
                self.after_close();
                self.seal_send(ALERT, &[1, 0]);
                self.client_closed = true;
                self.t.client_closed_early = true;
            }
            Op::KeyUpdate(request) => {
                self.after_close();
                self.key_updates += 1;
                if self.setup.version == Version::Tls12 {
                    self.fault("a KeyUpdate under TLS 1.2");
                } else if self.key_updates > KEY_UPDATES {
                    self.fault("more KeyUpdates in a row than rustls takes");
                }
                self.seal_send(HANDSHAKE, &[KEY_UPDATE, 0, 0, 1, u8::from(*request)]);
                if self.setup.version == Version::Tls13 {
                    if let Some(keys) = self.keys() {
                        keys.update_tx();
                    }
                }
            }
            Op::Corrupt(len, at, xor) => {
                self.fault("a damaged record");
                if let Some(mut record) = self.pattern_record(*len) {
                    // The body or the tag, never the header: TLS 1.3 says
                    // to ignore the header's version.
                    let i = 5 + usize::from(*at) % (record.len() - 5);
                    record[i] ^= (*xor).max(1);
                    self.send(record);
                }
            }
            Op::Truncated(len, keep) => {
                self.fault("a record cut short");
                if let Some(mut record) = self.pattern_record(*len) {
                    record.truncate(usize::from(*keep) % record.len());
                    self.send(record);
                }
            }
            Op::Raw(bytes) => {
                // Raw bytes need no keys.
                if self.can_send() && !bytes.is_empty() {
                    self.fault("raw bytes");
                    self.send(bytes.clone());
                }
            }
            Op::ClientRead(0) => {
                // Reading makes room for the engine, which may then write more.
                while self.client_read(usize::MAX) > 0 {
                    self.settle();
                }
            }
            Op::ClientRead(max) => {
                self.client_read(usize::from(*max));
            }
            Op::ClientShutdown => {
                if self.client_write_open && !self.client_closed && self.setup.enforce_close_notify
                {
                    self.fault("EOF without close_notify under -J");
                }
                self.client_shutdown = true;
            }
            Op::ClientAbort => {
                self.fault("the client's socket closed at once");
                self.client = None;
                self.client_write_open = false;
                self.client_out.clear();
            }
            Op::AppWrite(n) => {
                if self.app.writer().is_some() && !self.app_close {
                    let queued = self.t.app_written.len() + self.app_out.len();
                    let n = usize::from(*n).min(MAX_BYTES.saturating_sub(queued));
                    self.app_out
                        .extend((queued..queued + n).map(|i| pattern(APP, i)));
                }
            }
            Op::AppRead(0) => {
                while self.app_read(usize::MAX) > 0 {
                    self.settle();
                }
            }
            Op::AppRead(max) => {
                self.app_read(usize::from(*max));
            }
            Op::AppCloseFdr => self.app_close = true,
            Op::AppCloseFdw => {
                self.t.app_stopped = true;
                self.app.close_read();
            }
            Op::AppAbort => {
                self.t.app_stopped = true;
                self.app.abort();
                self.app_out.clear();
            }
        }
        self.settle();
    }

    /// Both sides read what there is and write what they can until
    /// nothing moves, or `until` holds.
    fn pump(&mut self, until: impl Fn(&Driver) -> bool) {
        for _ in 0..100_000 {
            if until(self) {
                return;
            }
            let moved = self.flush() + self.client_read(usize::MAX) + self.app_read(usize::MAX);
            self.watch.settle();
            if moved == 0 {
                return;
            }
        }
    }

    fn end(&mut self) {
        self.handshake();
        if !self.setup.abrupt {
            // The application writes what it still has, then its EOF; the
            // client reads to the engine's end of the outbound direction.
            self.app_close = true;
            self.pump(|d| d.t.client_eof || d.watch.done());
            // Then the client ends its side, and the application reads
            // everything to EOF.
            if self.can_send() && !self.client_closed {
                if let Some(keys) = self.keys() {
                    let record = keys.seal(ALERT, &[1, 0]);
                    self.client_closed = true;
                    self.send(record);
                }
            }
            self.client_shutdown = true;
            self.pump(|d| d.watch.done() && (d.t.app_eof || d.app.reader().is_none()));
            self.t.ended_on_its_own = self.watch.done();
            // What is left in the sockets and pipes.
            self.client_read(usize::MAX);
            self.app_read(usize::MAX);
        }
        self.client = None;
        self.app.abort();
        // Every peer of the engine's descriptors is closed: each is ready
        // (EOF, a reset, EPIPE), and the engine ends without waiting for a
        // timer (one that did would be a hang, which libFuzzer reports).
        while !self.watch.done() {
            std::thread::yield_now();
        }
    }
}

/// What one run did.
#[derive(Debug)]
pub struct Outcome {
    pub program: Program,
    pub result: Result<(), Error>,
    pub handshake_done: bool,
    /// Descriptors the engine left open.
    pub left_open: usize,
    pub t: Transcript,
}

/// `-v`: 1, or `S6_FUZZ_VERBOSITY` (3 shows each state change on stderr,
/// to follow a finding's replay).
fn verbosity() -> u32 {
    static V: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *V.get_or_init(|| {
        std::env::var("S6_FUZZ_VERBOSITY")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1)
    })
}

/// Runs the engine in this thread, the driver in another.
pub fn run(program: &Program) -> Outcome {
    let setup = program.setup;
    let (server, client) = socketpair();
    let (app_in, app_out, app) = if setup.app_socket {
        let (engine_end, app_end) = socketpair();
        if setup.small_buffers {
            shrink_socket(&engine_end);
            shrink_socket(&app_end);
        }
        set_nonblocking(&app_end);
        let app = App::Socket {
            sock: Some(app_end),
            write_open: true,
            read_open: true,
        };
        (dup(&engine_end), engine_end, app)
    } else {
        let (app_in, tx) = pipe();
        let (rx, app_out) = pipe();
        if setup.small_buffers {
            shrink_pipe(&tx);
            shrink_pipe(&app_out);
        }
        set_nonblocking(&tx);
        set_nonblocking(&rx);
        let app = App::Pipes {
            tx: Some(tx),
            rx: Some(rx),
        };
        (app_in, app_out, app)
    };
    if setup.small_buffers {
        shrink_socket(&server);
        shrink_socket(&client);
    }
    set_nonblocking(&client);

    let shared = Arc::new(Shared::default());
    let secrets = Arc::new(Secrets::default());
    let conn = ClientConnection::new(
        client_config(&setup, secrets.clone()),
        ServerName::try_from(SERVER_NAME).expect("a server name"),
    )
    .expect("the client");
    let driver = Driver {
        setup,
        watch: Watch::new(shared.clone()),
        client: Some(client),
        client_out: Vec::new(),
        client_in: Vec::new(),
        client_shutdown: false,
        client_write_open: true,
        tls: Tls::Handshaking(Box::new(conn)),
        secrets,
        client_closed: false,
        key_updates: 0,
        app,
        app_out: Vec::new(),
        app_close: false,
        t: Transcript::default(),
    };

    let (fds, given) = engine_fds(server, app_in, app_out);
    let settings = Settings {
        close_notify: setup.close_notify,
        enforce_close_notify: setup.enforce_close_notify,
        handshake_timeout: Some(HANDSHAKE_TIMEOUT),
        log: Log::new(verbosity()),
        exit_after: false,
    };
    let config: Arc<ServerConfig> = identity().configs[setup.cert_mode].clone();
    let ops = program.ops.clone();
    let driver = std::thread::spawn(move || {
        let mut d = driver;
        for op in &ops {
            d.op(op);
        }
        d.end();
        d.t
    });
    // Whatever happens to the engine, the driver learns that it is done,
    // and is joined before this returns or unwinds.
    let mut finish = Finish {
        shared: shared.clone(),
        driver: Some(driver),
    };
    let on_handshake = shared.clone();
    let result = engine::run(
        fds,
        settings,
        |_, _, _| Ok(config),
        |conn, server_name| {
            let block = Notification::of(conn, server_name).block();
            assert!(block.ends_with(b"\0\0"), "notification block {block:?}");
            on_handshake.handshake.store(true, Ordering::Release);
            Ok(())
        },
    );
    shared.done.store(true, Ordering::Release);
    let left_open = given.close_left_open();
    let t = match finish.driver.take().map(JoinHandle::join) {
        Some(Ok(t)) => t,
        Some(Err(panic)) => std::panic::resume_unwind(panic),
        None => unreachable!("joined once"),
    };
    Outcome {
        program: program.clone(),
        result,
        handshake_done: shared.handshake.load(Ordering::Acquire),
        left_open,
        t,
    }
}

/// Programs to start from: each reaches a state or a transition of the
/// engine's two directions, under the settings that matter to it.
pub fn seed_programs() -> Vec<(String, Program)> {
    use Op::*;
    let tls13 = Setup::default();
    let tls12 = Setup {
        version: Version::Tls12,
        ..tls13
    };
    let small = |s: Setup| Setup {
        small_buffers: true,
        ..s
    };
    let echo = vec![Data(1000), AppRead(0), AppWrite(2000), ClientRead(0)];
    let mut out: Vec<(String, Program)> = Vec::new();
    let mut add = |name: &str, setup: Setup, ops: Vec<Op>| {
        out.push((name.to_string(), Program { setup, ops }));
    };
    // Every version, suite and client-certificate mode.
    for version in [Version::Tls13, Version::Tls12] {
        for suite in 0..3 {
            for (cert_mode, client_sends_cert) in [(0, false), (1, true), (2, true), (1, false)] {
                let setup = Setup {
                    version,
                    suite,
                    cert_mode,
                    client_sends_cert,
                    ..tls13
                };
                let name = format!("echo-{version:?}-{suite}-{cert_mode}{client_sends_cert}");
                add(&name, setup, echo.clone());
            }
        }
    }
    for (tag, setup) in [("tls13", tls13), ("tls12", tls12)] {
        let s = |f: fn(&mut Setup)| {
            let mut s = setup;
            f(&mut s);
            s
        };
        let name = |n: &str| format!("{n}-{tag}");
        add(&name("echo-S"), s(|s| s.close_notify = true), echo.clone());
        add(
            &name("echo-socket"),
            s(|s| s.app_socket = true),
            echo.clone(),
        );
        add(&name("abrupt"), s(|s| s.abrupt = true), echo.clone());
        // Inbound: Open -> Draining (the client's EOF) -> Closed.
        add(
            &name("client-eof"),
            setup,
            vec![
                Data(100),
                AppRead(0),
                ClientShutdown,
                AppWrite(100),
                ClientRead(0),
            ],
        );
        // Open -> Discarding (the application stops reading first), its
        // answer still sent; lingering then ends with the client's end.
        add(
            &name("app-stops"),
            setup,
            vec![
                Data(3000),
                AppCloseFdw,
                Data(3000),
                AppWrite(500),
                AppCloseFdr,
                ClientRead(0),
                Data(100),
            ],
        );
        // Lingering, ended by a fatal alert, or a reset.
        add(
            &name("linger-alert"),
            setup,
            vec![
                AppCloseFdw,
                AppWrite(10),
                AppCloseFdr,
                ClientRead(0),
                Alert(2, 40),
            ],
        );
        add(
            &name("linger-reset"),
            setup,
            vec![
                AppCloseFdw,
                AppWrite(10),
                AppCloseFdr,
                Data(10),
                ClientAbort,
            ],
        );
        // Draining -> Closed: the application stops after the client's end,
        // with data still waiting for it.
        add(
            &name("draining-app-stops"),
            small(setup),
            vec![Data(20000), ClientShutdown, AppRead(100), AppCloseFdw],
        );
        // The client's close_notify mid-stream (TLS 1.2 closes both ways).
        add(
            &name("close-notify"),
            setup,
            vec![Data(100), CloseNotify, AppWrite(100), ClientRead(0)],
        );
        // Full buffers both ways, then drained.
        add(
            &name("backpressure"),
            small(setup),
            vec![
                Data(60000),
                AppWrite(60000),
                ClientRead(1000),
                AppRead(1000),
                ClientRead(0),
                AppRead(0),
            ],
        );
        // Outbound: Open -> Flushing -> Closed with -S while the client
        // does not read, then reads.
        add(
            &name("flushing"),
            small(s(|s| s.close_notify = true)),
            vec![AppWrite(30000), AppCloseFdr, Data(10), ClientRead(0)],
        );
        // The application acts during the handshake.
        add(
            &name("app-early"),
            setup,
            vec![
                AppWrite(100),
                AppCloseFdr,
                AppCloseFdw,
                Data(10),
                ClientRead(0),
            ],
        );
        // The application's socket closed with data unread: a reset on fdr.
        add(
            &name("app-reset"),
            s(|s| s.app_socket = true),
            vec![Data(100), AppWrite(100), AppAbort, ClientRead(0)],
        );
        // Faults: a damaged record, one cut short then EOF, -J and a bare
        // EOF, raw bytes, records of other types, empty data records.
        add(&name("corrupt"), setup, vec![Data(10), Corrupt(20, 30, 1)]);
        add(
            &name("truncated"),
            setup,
            vec![Data(10), Truncated(50, 20), ClientShutdown],
        );
        add(
            &name("eof-J"),
            s(|s| s.enforce_close_notify = true),
            vec![Data(10), ClientShutdown, AppRead(0)],
        );
        add(&name("raw"), setup, vec![Raw(vec![0x17, 3, 3, 0, 2, 0, 0])]);
        add(
            &name("records"),
            setup,
            vec![
                Record(23, b"hello".to_vec()),
                Record(CHANGE_CIPHER_SPEC, vec![1]),
                Record(22, vec![0, 0, 0, 0]),
            ],
        );
        add(
            &name("empty-records"),
            setup,
            vec![Record(23, vec![]), Record(23, vec![]), Data(5)],
        );
        add(
            &name("warning"),
            setup,
            vec![Alert(1, 90), Data(5), AppRead(0)],
        );
        add(
            &name("key-update"),
            setup,
            vec![
                Data(10),
                KeyUpdate(true),
                Data(10),
                AppWrite(10),
                ClientRead(0),
                KeyUpdate(false),
                Data(10),
            ],
        );
    }
    out
}

/// The seed programs, encoded.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    seed_programs()
        .into_iter()
        .map(|(name, p)| (name, p.encode()))
        .collect()
}

/// Sets `done` and joins the driver, also when the engine unwinds.
struct Finish {
    shared: Arc<Shared>,
    driver: Option<JoinHandle<Transcript>>,
}

impl Drop for Finish {
    fn drop(&mut self) {
        self.shared.done.store(true, Ordering::Release);
        if let Some(driver) = self.driver.take() {
            let _ = driver.join();
        }
    }
}

/// rustls' debug assertion on a fatal alert after its close_notify
/// (fuzz/README.md, "Findings"): with debug assertions (the fuzz builds),
/// a record that rustls refuses with a fatal alert after it queued
/// close_notify trips `debug_assert!(!self.sent_fatal_alert)`; without
/// them (the product), the alert is queued behind the close_notify.
/// Recognised by its message and file, not its line.
pub fn is_rustls_alert_after_close_notify(info: &PanicHookInfo) -> bool {
    let message = info
        .payload()
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| info.payload().downcast_ref::<String>().cloned())
        .unwrap_or_default();
    let file = info.location().map(|l| l.file()).unwrap_or_default();
    message.contains("!self.sent_fatal_alert")
        && file.contains("rustls")
        && file.ends_with("common_state.rs")
}

/// With S6_FUZZ_TOLERATE_KNOWN=1, that panic unwinds (the run is
/// dropped, its descriptors closed, the driver joined) instead of reaching
/// libFuzzer's hook, which aborts: `run_tolerating` then returns None.
/// Every other panic still aborts.
pub fn tolerate_rustls_alert_after_close_notify() {
    if !tolerate_known() {
        return;
    }
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !is_rustls_alert_after_close_notify(info) {
            hook(info)
        }
    }));
}

/// `run`, and None if that panic was tolerated.
pub fn run_tolerating(program: &Program) -> Option<Outcome> {
    std::panic::catch_unwind(|| run(program)).ok()
}

/// Whether `a` is a prefix of `b`; if not, where they part.
fn parts_at(a: &[u8], b: &[u8]) -> Option<usize> {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => Some(i),
        None if a.len() > b.len() => Some(b.len()),
        None => None,
    }
}

impl Outcome {
    /// The properties every run must have; panics (a libFuzzer crash) if
    /// not.
    pub fn check(&self) {
        let t = &self.t;
        let s = &self.program.setup;
        let (ops, result) = (&self.program.ops, &self.result);
        let context = || format!("setup {s:?}, ops {ops:?}, result {result:?}");
        assert_eq!(
            self.left_open,
            0,
            "the engine left descriptors open; {}",
            context()
        );
        // Only the application acts before the handshake: whatever it does,
        // the handshake must complete.
        assert_eq!(
            t.handshake,
            Some(Handshake::Done),
            "the client's handshake; {}",
            context()
        );
        assert!(
            self.handshake_done,
            "the engine did not see the handshake complete; {}",
            context()
        );
        if let Some(why) = &t.undecryptable {
            panic!(
                "the engine sent what the client cannot read: {why}; {}",
                context()
            );
        }
        if let Some(at) = parts_at(&t.app_got, &t.client_sent) {
            panic!(
                "the application got bytes the client did not send (from byte {at}: got {}, sent {}); {}",
                t.app_got.len(),
                t.client_sent.len(),
                context()
            );
        }
        if let Some(at) = parts_at(&t.client_got, &t.app_written) {
            panic!(
                "the client got bytes the application did not write (from byte {at}: got {}, written {}); {}",
                t.client_got.len(),
                t.app_written.len(),
                context()
            );
        }
        if let Err(e) = result {
            assert!(
                matches!(e.exit_code(), 98 | 111),
                "after the handshake, exit {}; {}",
                e.exit_code(),
                context()
            );
        }
        if s.abrupt || t.client_fault.is_some() {
            return;
        }
        // The graceful end of a run without faults: nothing lost, each
        // side told, the engine ended on its own with success.
        assert!(
            result.is_ok(),
            "a clean run ended with an error; {}",
            context()
        );
        assert!(
            t.ended_on_its_own,
            "both sides ended, yet the engine did not; {}",
            context()
        );
        assert!(t.client_eof, "the client saw no EOF; {}", context());
        // TLS 1.2 closes both ways: the client's early close_notify ends
        // the outbound direction too, and what the application wrote after
        // it is dropped.
        let outbound_cut = s.version == Version::Tls12 && t.client_closed_early;
        if !outbound_cut {
            assert!(
                t.client_got == t.app_written,
                "the client got {} of the {} bytes the application wrote; {}",
                t.client_got.len(),
                t.app_written.len(),
                context()
            );
        }
        if s.close_notify {
            assert!(
                t.server_close_notify,
                "-S, and the engine sent no close_notify (records {:?}, EOF {}); {}",
                t.from_engine,
                t.client_eof,
                context()
            );
        } else if s.version == Version::Tls13 {
            assert!(
                !t.server_close_notify,
                "no -S, and the engine sent a close_notify; {}",
                context()
            );
        }
        if !t.app_stopped {
            assert!(
                t.app_got == t.client_sent,
                "the application got {} of the {} bytes the client sent; {}",
                t.app_got.len(),
                t.client_sent.len(),
                context()
            );
            assert!(t.app_eof, "the application saw no EOF; {}", context());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(setup: Setup, ops: Vec<Op>) -> Program {
        Program { setup, ops }
    }

    #[test]
    fn programs_read_back() {
        let p = program(
            Setup {
                version: Version::Tls12,
                suite: 2,
                cert_mode: 1,
                client_sends_cert: false,
                close_notify: true,
                enforce_close_notify: false,
                app_socket: true,
                small_buffers: true,
                abrupt: false,
            },
            vec![
                Op::Data(300),
                Op::Record(21, vec![2, 40]),
                Op::Alert(1, 0),
                Op::CloseNotify,
                Op::KeyUpdate(true),
                Op::Corrupt(9, 1000, 0x80),
                Op::Truncated(20, 7),
                Op::Raw(vec![1, 2, 3]),
                Op::ClientRead(0),
                Op::ClientShutdown,
                Op::ClientAbort,
                Op::AppWrite(65535),
                Op::AppRead(1),
                Op::AppCloseFdr,
                Op::AppCloseFdw,
                Op::AppAbort,
            ],
        );
        assert_eq!(Program::decode(&p.encode()), p);
        assert_eq!(Program::decode(&[]), Program::default());
    }

    #[test]
    fn every_seed_passes() {
        crate::ignore_sigpipe();
        for (name, p) in seed_programs() {
            assert_eq!(Program::decode(&p.encode()), p, "{name}");
            eprintln!("seed {name}");
            run(&p).check();
        }
    }

    /// Under `-S` the engine's close_notify waits behind a full socket when
    /// the TLS 1.2 client's own comes: it still leaves (the engine used to
    /// drop what was queued; `check` wants the close_notify).
    pub(crate) fn tls12_close_notify_while_flushing() -> Program {
        let setup = Setup {
            version: Version::Tls12,
            close_notify: true,
            small_buffers: true,
            ..Setup::default()
        };
        program(
            setup,
            vec![
                Op::Data(0),
                Op::AppWrite(3000),
                Op::AppCloseFdr,
                Op::CloseNotify,
            ],
        )
    }

    #[test]
    fn tls12_close_notify_while_flushing_keeps_what_is_queued() {
        crate::ignore_sigpipe();
        let p = tls12_close_notify_while_flushing();
        for _ in 0..10 {
            run(&p).check();
        }
    }

    #[test]
    fn regression_inputs_decode_to_their_programs() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/regressions/engine_relay");
        let read = |name: &str| Program::decode(&std::fs::read(format!("{dir}/{name}")).unwrap());
        assert_eq!(
            read("tls12-close-notify-while-flushing"),
            tls12_close_notify_while_flushing()
        );
    }

    #[test]
    fn echo_both_ways_ends_cleanly() {
        crate::ignore_sigpipe();
        for version in [Version::Tls13, Version::Tls12] {
            for suite in 0..3 {
                let setup = Setup {
                    version,
                    suite,
                    ..Setup::default()
                };
                let o = run(&program(
                    setup,
                    vec![
                        Op::Data(1000),
                        Op::AppRead(0),
                        Op::AppWrite(2000),
                        Op::ClientRead(0),
                    ],
                ));
                o.check();
                assert_eq!(o.t.app_got.len(), 1000);
                assert_eq!(o.t.client_got.len(), 2000);
            }
        }
    }
}
