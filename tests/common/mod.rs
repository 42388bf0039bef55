//! The test harness: runs the real binary the way s6-tlsd does (the accepted
//! TCP socket as fds 0 and 1, pipes as fdr and fdw, a notification pipe) and
//! hands the test the other ends: the client socket, the application's two
//! pipes, the notification pipe and the engine process itself.
//!
//! Certificates are generated at test time; nothing secret is committed.
#![allow(dead_code)]

pub mod client;

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{PipeReader, PipeWriter, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

pub const BIN: &str = env!("CARGO_BIN_EXE_s6-tlsd-io");

/// Where the engine reads and writes the application's data, and the
/// notification fd, as s6-tlsd would number them.
pub const FDR: i32 = 3;
pub const FDW: i32 = 4;
pub const NOTIF: i32 = 5;

// ---------------------------------------------------------------- keys

#[derive(Clone, Copy, Debug)]
pub enum Alg {
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    Rsa2048,
    Rsa4096,
}

impl Alg {
    fn rcgen(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            Alg::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Alg::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            Alg::Ed25519 => &rcgen::PKCS_ED25519,
            Alg::Rsa2048 | Alg::Rsa4096 => &rcgen::PKCS_RSA_SHA256,
        }
    }

    /// rcgen cannot generate RSA keys with aws-lc; openssl can.
    fn generate(self) -> rcgen::KeyPair {
        let bits = match self {
            Alg::Rsa2048 => 2048,
            Alg::Rsa4096 => 4096,
            _ => return rcgen::KeyPair::generate_for(self.rcgen()).expect("keygen"),
        };
        let out = Command::new("openssl")
            .args(["genpkey", "-algorithm", "RSA", "-pkeyopt"])
            .arg(format!("rsa_keygen_bits:{bits}"))
            .output()
            .expect("run openssl genpkey");
        assert!(out.status.success(), "openssl genpkey failed");
        let pem = String::from_utf8(out.stdout).expect("PEM is text");
        rcgen::KeyPair::from_pem_and_sign_algo(&pem, self.rcgen()).expect("parse RSA key")
    }
}

/// A test CA that signs every leaf, so that clients verify for real.
pub struct Ca {
    pub cert: rcgen::Certificate,
    pub key: rcgen::KeyPair,
    pub pem_path: PathBuf,
}

pub fn ca() -> &'static Ca {
    static CA: OnceLock<Ca> = OnceLock::new();
    CA.get_or_init(|| new_ca("s6-tlsd-io test CA", "ca"))
}

/// A fresh self-signed CA named `cn`, its PEM written to `ca.pem` in a new
/// directory tagged `tag`: the server's test CA, and the CAs that tests
/// trust for client certificates (CAFILE, CADIR).
pub fn new_ca(cn: &str, tag: &str) -> Ca {
    let key = rcgen::KeyPair::generate().expect("CA key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let cert = params.self_signed(&key).expect("CA cert");
    let pem_path = tmpdir(tag).join("ca.pem");
    std::fs::write(&pem_path, cert.pem()).expect("write CA");
    Ca {
        cert,
        key,
        pem_path,
    }
}

/// A server key pair signed by the test CA, written to files.
pub struct Keys {
    pub dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cert_der: Vec<u8>,
    pub key_der: Vec<u8>,
    pub key_pem: String,
    pub cert_pem: String,
}

pub fn keys(alg: Alg, names: &[&str]) -> Keys {
    let key = alg.generate();
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "s6-tlsd-io test server");
    let ca = ca();
    let cert = params.signed_by(&key, &ca.cert, &ca.key).expect("sign");
    let dir = tmpdir("keys");
    let chain_pem = format!("{}{}", cert.pem(), ca.cert.pem());
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, &chain_pem).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    Keys {
        dir,
        cert: cert_path,
        key: key_path,
        cert_der: cert.der().to_vec(),
        key_der: key.serialize_der(),
        key_pem: key.serialize_pem(),
        cert_pem: chain_pem,
    }
}

/// One ECDSA P-256 pair for 127.0.0.1 and localhost, shared by the tests
/// that do not care about the key itself.
pub fn default_keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| keys(Alg::EcdsaP256, &["localhost", "127.0.0.1"]))
}

/// A fresh directory under the system's temporary directory.
pub fn tmpdir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "s6-tlsd-io-test-{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create tmpdir");
    dir
}

pub fn key_env(keys: &Keys) -> Vec<(String, String)> {
    pair_env(&keys.cert, &keys.key)
}

/// CERTFILE and KEYFILE naming `cert` and `key`.
pub fn pair_env(cert: &Path, key: &Path) -> Vec<(String, String)> {
    vec![
        ("CERTFILE".into(), cert.display().to_string()),
        ("KEYFILE".into(), key.display().to_string()),
    ]
}

/// Whether the test runs as root (its real uid); if not, says so on
/// stderr, `untested` saying what goes untested.
pub fn running_as_root(untested: &str) -> bool {
    if nix::unistd::getuid().is_root() {
        return true;
    }
    eprintln!("not running as root: {untested}");
    false
}

// ---------------------------------------------------------------- engine

/// The running engine and the test's ends of its descriptors.
pub struct Engine {
    pub child: Child,
    /// The network client's socket (ciphertext); None when an external
    /// client program holds it.
    pub client: Option<TcpStream>,
    /// What the engine writes to fdw, as the application reads it.
    pub app_rx: Option<PipeReader>,
    /// What the application writes, as the engine reads it on fdr.
    pub app_tx: Option<PipeWriter>,
    /// The read end of the notification pipe (`-d 5`).
    pub notif: Option<PipeReader>,
    /// The application's socket when started with `app_socket`.
    pub app_sock: Option<std::os::unix::net::UnixStream>,
    stderr: Option<std::process::ChildStderr>,
}

/// How to start the engine: options before `--`, the environment.
pub struct Spawn {
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
    /// Pass `-d 5` and keep the notification pipe.
    pub notify: bool,
    /// Replace the whole argv after the program name (for cli tests).
    pub raw_argv: Option<Vec<OsString>>,
    /// Start from an empty environment (the default), not the test's.
    pub clear_env: bool,
    /// The engine's stderr; by default a pipe the harness reads at exit.
    pub stderr: Option<OwnedFd>,
    /// One socketpair to the application, passed as both fdr and fdw
    /// (`-- 3 3`); the test's end is `Engine::app_sock`.
    pub app_socket: bool,
    /// Start the engine as this uid and gid (no supplementary group)
    /// instead of the test's, its core file size limit raised to the hard
    /// limit: what a process looks like when it does nothing itself against
    /// being dumped (see `run_as`).
    pub user: Option<(u32, u32)>,
}

impl Default for Spawn {
    fn default() -> Self {
        Spawn {
            args: Vec::new(),
            env: key_env(default_keys()),
            notify: true,
            raw_argv: None,
            clear_env: true,
            stderr: None,
            app_socket: false,
            user: None,
        }
    }
}

impl Spawn {
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args = args.iter().map(OsString::from).collect();
        self
    }

    pub fn env(mut self, env: Vec<(String, String)>) -> Self {
        self.env = env;
        self
    }

    pub fn keys(self, keys: &Keys) -> Self {
        self.env(key_env(keys))
    }

    pub fn set(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Starts the engine as `uid` and `gid` (the test must be root). The
    /// exec that follows the change leaves it dumpable (its ids are all
    /// equal), and its core limit is the hard one: whatever keeps it from
    /// being dumped is the engine's own doing.
    pub fn run_as(mut self, uid: u32, gid: u32) -> Self {
        self.user = Some((uid, gid));
        self
    }

    pub fn no_notify(mut self) -> Self {
        self.notify = false;
        self
    }

    pub fn argv(&self) -> Vec<OsString> {
        if let Some(raw) = &self.raw_argv {
            return raw.clone();
        }
        let mut argv = self.args.clone();
        if self.notify {
            argv.extend(["-d".into(), NOTIF.to_string().into()]);
        }
        let fdw = if self.app_socket { FDR } else { FDW };
        argv.extend(["--".into(), FDR.to_string().into(), fdw.to_string().into()]);
        argv
    }

    pub fn start(self) -> Engine {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        self.start_on(Some(client), server)
    }

    /// Accepts one connection (from an external client program) and starts
    /// the engine on it.
    pub fn start_accepting(self, listener: &TcpListener) -> Engine {
        let (server, _) = listener.accept().expect("accept");
        self.start_on(None, server)
    }

    /// Starts the engine on an accepted socket.
    pub fn start_on(self, client: Option<TcpStream>, server: TcpStream) -> Engine {
        let (app_rx, fdw) = std::io::pipe().expect("pipe");
        let (fdr, app_tx) = std::io::pipe().expect("pipe");
        let (app_sock, engine_sock) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        let (notif_rx, notif_w) = std::io::pipe().expect("pipe");
        let server_out = server.try_clone().expect("dup socket");
        let mut cmd = Command::new(BIN);
        cmd.args(self.argv());
        if self.clear_env {
            cmd.env_clear();
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(Stdio::from(OwnedFd::from(server)))
            .stdout(Stdio::from(OwnedFd::from(server_out)))
            .stderr(match self.stderr {
                Some(fd) => Stdio::from(fd),
                None => Stdio::piped(),
            });
        let app_fds: Vec<(OwnedFd, i32)> = match self.app_socket {
            true => vec![(OwnedFd::from(engine_sock), FDR)],
            false => vec![(OwnedFd::from(fdr), FDR), (OwnedFd::from(fdw), FDW)],
        };
        let moves: Vec<(OwnedFd, i32)> = app_fds
            .into_iter()
            .chain([(OwnedFd::from(notif_w), NOTIF)])
            .collect();
        let raw: Vec<(i32, i32)> = moves.iter().map(|(fd, to)| (fd.as_raw_fd(), *to)).collect();
        let user = self.user;
        // SAFETY: only async-signal-safe calls (fcntl, dup2, getrlimit,
        // setrlimit, setgroups, setgid, setuid) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // First out of the way of the targets, then into place.
                // No allocation here: another thread may hold malloc's lock.
                let mut high = [(0, 0); 4];
                for (slot, &(fd, to)) in high.iter_mut().zip(&raw) {
                    let h = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 64);
                    if h < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    *slot = (h, to);
                }
                for &(h, to) in &high[..raw.len()] {
                    if libc::dup2(h, to) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if let Some((uid, gid)) = user {
                    let mut core = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    if libc::getrlimit(libc::RLIMIT_CORE, &mut core) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    core.rlim_cur = core.rlim_max;
                    if libc::setrlimit(libc::RLIMIT_CORE, &core) != 0
                        || libc::setgroups(0, std::ptr::null()) != 0
                        || libc::setgid(gid) != 0
                        || libc::setuid(uid) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("spawn s6-tlsd-io");
        drop(cmd);
        drop(moves);
        let stderr = child.stderr.take();
        Engine {
            child,
            client,
            app_rx: (!self.app_socket).then_some(app_rx),
            app_tx: (!self.app_socket).then_some(app_tx),
            app_sock: self.app_socket.then_some(app_sock),
            notif: self.notify.then_some(notif_rx),
            stderr,
        }
    }
}

pub fn spawn() -> Spawn {
    Spawn::default()
}

/// How the engine ended.
#[derive(Debug)]
pub struct Exit {
    pub code: Option<i32>,
    pub status: ExitStatus,
    /// The engine's lines without the connection's name (see
    /// `without_context`).
    pub stderr: String,
    /// The engine's lines as written.
    pub raw_stderr: String,
}

/// The lines of the engine `pid` without the name of its connection
/// (`pid 1234 engine 1235 127.0.0.1_40404: ` after the level), which
/// tests/logging.rs checks: every other test is about the rest of the line.
pub fn without_context(stderr: &str, pid: u32) -> String {
    let engine = format!(" engine {pid} ");
    stderr
        .split_inclusive('\n')
        .map(|line| {
            // `s6-tlsd-io: level: `, then the name up to the next `: `.
            let Some(at) = line.match_indices(": ").nth(1).map(|(i, _)| i + 2) else {
                return line.to_string();
            };
            match line[at..].find(": ") {
                Some(end) if format!(" {} ", &line[at..at + end]).contains(&engine) => {
                    format!("{}{}", &line[..at], &line[at + end + 2..])
                }
                _ => line.to_string(),
            }
        })
        .collect()
}

/// Every line of `stderr` as written: one line each, the engine's, with no
/// control character, line separator or bidirectional control in it (a
/// peer's, escaped: src/log.rs).
pub fn assert_unforged(stderr: &str) {
    assert!(stderr.ends_with('\n'), "{stderr:?}");
    for line in stderr.lines() {
        assert!(line.starts_with("s6-tlsd-io: "), "a forged line: {line:?}");
        let bad = line
            .chars()
            .find(|&c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202e}'));
        assert_eq!(bad, None, "a raw control character in {line:?}");
    }
}

impl Engine {
    pub fn client(&self) -> &TcpStream {
        self.client.as_ref().expect("in-process client")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the engine to exit, at most `timeout`; kills it and
    /// panics if it does not.
    pub fn wait(&mut self, timeout: Duration) -> Exit {
        let status = wait_or_kill(&mut self.child, timeout, || {
            format!("engine still running after {timeout:?}")
        });
        let mut stderr = String::new();
        if let Some(mut e) = self.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        Exit {
            code: status.code(),
            status,
            stderr: without_context(&stderr, self.child.id()),
            raw_stderr: stderr,
        }
    }

    pub fn wait_exit(&mut self) -> Exit {
        self.wait(Duration::from_secs(20))
    }

    /// Whether the engine is still running after `d`.
    pub fn still_running_after(&mut self, d: Duration) -> bool {
        std::thread::sleep(d);
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// The notification block as (name, value) pairs, value None when bare.
    pub fn notification(&mut self) -> Vec<(String, Option<String>)> {
        let mut raw = Vec::new();
        self.notif
            .take()
            .expect("engine started with -d")
            .read_to_end(&mut raw)
            .expect("read notification");
        parse_notification(&raw)
    }

    pub fn close_app_tx(&mut self) {
        self.app_tx.take();
    }

    pub fn close_app_rx(&mut self) {
        self.app_rx.take();
    }

    pub fn app_tx(&mut self) -> &mut PipeWriter {
        self.app_tx.as_mut().expect("fdr still open")
    }

    pub fn app_rx(&mut self) -> &mut PipeReader {
        self.app_rx.as_mut().expect("fdw still open")
    }

    /// A value from /proc/PID/status, e.g. "Uid" or "VmHWM".
    pub fn proc_status(&self, field: &str) -> Option<String> {
        pid_status(self.pid(), field)
    }

    /// CPU ticks (utime + stime) the engine has used.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("stat");
        let after = &stat[stat.rfind(')').expect("comm") + 2..];
        let f: Vec<&str> = after.split(' ').collect();
        f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Never leave a process behind, whatever the test did.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A value from /proc/`pid`/status, e.g. "Uid" or "Seccomp", trimmed.
pub fn pid_status(pid: u32, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix(&format!("{field}:"))
            .map(|v| v.trim().to_string())
    })
}

/// The one line the engine writes before it exits on a fatal error.
pub fn fatal(msg: &str) -> String {
    format!("s6-tlsd-io: fatal: {msg}\n")
}

/// Waits for the engine to exit; it must be with `code` and exactly
/// `stderr`.
pub fn assert_exit(e: &mut Engine, code: i32, stderr: &str) {
    let exit = e.wait_exit();
    assert_eq!(exit.code, Some(code), "stderr: {}", exit.stderr);
    assert_eq!(exit.stderr, stderr);
}

/// Starts an engine with `env` (and `args`) that must give up at start-up:
/// it exits on its own although the client never sends a byte, and it
/// never writes a byte to the client. Returns its exit code and stderr.
pub fn startup_failure(args: &[&str], env: Vec<(String, String)>) -> (Option<i32>, String) {
    let mut e = spawn().no_notify().args(args).env(env).start();
    // A panic here means that the engine went on to wait for a ClientHello.
    let exit = e.wait(Duration::from_secs(10));
    let mut sock = e.client.take().unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    sock.read_to_end(&mut got)
        .expect("EOF on the client socket");
    assert!(got.is_empty(), "the engine wrote to the network: {got:?}");
    (exit.code, exit.stderr)
}

pub fn parse_notification(raw: &[u8]) -> Vec<(String, Option<String>)> {
    assert!(
        raw.ends_with(&[0, 0]),
        "block must end with an empty string: {raw:?}"
    );
    raw[..raw.len() - 2]
        .split(|&b| b == 0)
        .map(|s| {
            let s = String::from_utf8(s.to_vec()).expect("UTF-8 block");
            match s.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (s, None),
            }
        })
        .collect()
}

pub fn as_map(block: &[(String, Option<String>)]) -> HashMap<String, Option<String>> {
    block.iter().cloned().collect()
}

// ---------------------------------------------------------------- direct runs

/// Waits for `child` to exit, at most `timeout`; past it, kills and reaps
/// it (no test leaves a process behind) and panics with `late()`.
pub fn wait_or_kill(
    child: &mut Child,
    timeout: Duration,
    late: impl FnOnce() -> String,
) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{}", late());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `openssl args...`, which must succeed, at most 60 s: its stdout.
pub fn openssl(args: &[&str]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => client::missing("openssl"),
            _ => panic!("run openssl: {e:?}"),
        });
    let mut stdout = child.stdout.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    let status = wait_or_kill(&mut child, Duration::from_secs(60), || {
        format!("openssl {args:?} still running after 60 s")
    });
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    assert!(status.success(), "openssl {args:?}: {err}");
    out.join().unwrap()
}

/// The binary with `argv` and only `env`, off the harness's descriptors:
/// stdin and stdout on /dev/null, stderr piped, and fds 3 to 9 closed, so
/// that it finds no fdr or fdw whatever the test runner passed down. A test
/// may add its own `pre_exec` steps; they run after the closing.
pub fn direct(argv: &[&str], env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(argv)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: only fcntl and close between fork and exec. Descriptors
    // that are close-on-exec (the standard library's own) are left alone;
    // anything else inherited in 3..=9 is closed.
    unsafe {
        cmd.pre_exec(|| {
            for fd in 3..=9 {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                    libc::close(fd);
                }
            }
            Ok(())
        });
    }
    cmd
}

/// Runs a `direct` command to its end, at most 20 s (past that it is
/// killed, and the test panics with `late()`): its exit code and stderr.
pub fn code_and_stderr(mut cmd: Command, late: impl FnOnce() -> String) -> (Option<i32>, String) {
    let mut child = cmd.spawn().expect("spawn s6-tlsd-io");
    let status = wait_or_kill(&mut child, Duration::from_secs(20), late);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .expect("read stderr");
    (status.code(), stderr)
}

/// `s6-tlsd-io -t ARGS` with only `env`, as a `direct` run: exit code,
/// stdout, stderr.
pub fn check(args: &[&str], env: &[(String, String)]) -> (Option<i32>, String, String) {
    let mut cmd = direct(&[&["-t"], args].concat(), env);
    cmd.stdout(Stdio::piped());
    let mut child = cmd.spawn().expect("run s6-tlsd-io -t");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap());
    let err = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap());
    let status = wait_or_kill(&mut child, Duration::from_secs(30), || {
        "s6-tlsd-io -t still running after 30 s".into()
    });
    (status.code(), out.join().unwrap(), err.join().unwrap())
}

// ---------------------------------------------------------------- clients

/// A root store that trusts `der` alone.
pub fn roots_of(der: &[u8]) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(der.to_vec()))
        .expect("add CA");
    roots
}

/// The root store of every client here: the test CA that signs the
/// server's certificates, and nothing else.
pub fn ca_roots() -> RootCertStore {
    roots_of(ca().cert.der())
}

pub fn client_config(versions: &[&'static rustls::SupportedProtocolVersion]) -> Arc<ClientConfig> {
    Arc::new(
        ClientConfig::builder_with_protocol_versions(versions)
            .with_root_certificates(ca_roots())
            .with_no_client_auth(),
    )
}

/// A client with its own crypto `provider` (cut down to some suites or
/// groups) for `versions`, trusting the test CA; not yet in an Arc, so that
/// a test can change it further.
pub fn provider_config(
    provider: rustls::crypto::CryptoProvider,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> ClientConfig {
    ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(ca_roots())
        .with_no_client_auth()
}

/// A client that trusts the test CA and sends the certificate `cert_der`
/// (with its key, PKCS#8 DER) when the server asks for one.
pub fn client_config_with_cert(cert_der: &[u8], key_der: &[u8]) -> Arc<ClientConfig> {
    Arc::new(
        ClientConfig::builder()
            .with_root_certificates(ca_roots())
            .with_client_auth_cert(
                vec![CertificateDer::from(cert_der.to_vec())],
                PrivateKeyDer::try_from(key_der.to_vec()).expect("client key"),
            )
            .expect("client certificate"),
    )
}

pub fn tls13() -> Arc<ClientConfig> {
    client_config(&[&rustls::version::TLS13])
}

pub fn tls12() -> Arc<ClientConfig> {
    client_config(&[&rustls::version::TLS12])
}

pub type Tls = StreamOwned<ClientConnection, TcpStream>;

/// An in-process rustls client over the engine's client socket, with the
/// handshake completed.
pub fn connect(engine: &Engine, config: Arc<ClientConfig>, name: &str) -> Tls {
    try_connect(engine, config, name).expect("client handshake")
}

/// Like `connect`, but returns the client's handshake error instead of
/// panicking, for the tests in which the engine must refuse the client.
pub fn try_connect(engine: &Engine, config: Arc<ClientConfig>, name: &str) -> std::io::Result<Tls> {
    let sock = engine.client().try_clone().expect("dup client");
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let conn = ClientConnection::new(
        config,
        ServerName::try_from(name.to_string()).expect("name"),
    )
    .expect("client");
    let mut tls = StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// The client sends close_notify (and nothing else).
pub fn client_close_notify(tls: &mut Tls) {
    tls.conn.send_close_notify();
    while tls.conn.wants_write() {
        tls.conn
            .write_tls(&mut tls.sock)
            .expect("send close_notify");
    }
}

/// Client -> app and app -> client, a few bytes each way.
pub fn echo(e: &mut Engine, tls: &mut Tls) {
    tls.write_all(b"ping").unwrap();
    assert_eq!(read_app(e, 4), b"ping");
    e.app_tx().write_all(b"pong").unwrap();
    let mut buf = [0u8; 4];
    tls.read_exact(&mut buf).expect("client read");
    assert_eq!(&buf, b"pong");
}

/// Ends a healthy connection from both sides and expects exit 0, silently.
pub fn finish(e: Engine, tls: Tls) {
    let exit = close_both(e, tls);
    assert_eq!((exit.code, exit.stderr.as_str()), (Some(0), ""));
}

/// Ends a connection from both sides (the client's close_notify, the
/// application's EOF) and waits for the engine.
pub fn close_both(mut e: Engine, mut tls: Tls) -> Exit {
    client_close_notify(&mut tls);
    e.close_app_tx();
    let _ = read_to_end_tls(&mut tls);
    drop(tls);
    e.client.take();
    e.wait_exit()
}

/// The client goes away without a close_notify (its socket closed), then
/// the app closes fdr: how the engine ended, for the test to judge.
pub fn drop_both_ends(mut e: Engine, tls: Tls) -> Exit {
    drop(tls);
    e.client.take();
    e.close_app_tx();
    e.wait_exit()
}

/// One byte from the client to the app, then the notification block (it is
/// complete before the first byte reaches fdw), then both ends go away as
/// in `drop_both_ends`: the block and how the engine ended.
pub fn one_byte_and_block(mut e: Engine, mut tls: Tls) -> (Vec<(String, Option<String>)>, Exit) {
    tls.write_all(b"x").expect("client write");
    assert_eq!(read_app(&mut e, 1), b"x");
    let block = e.notification();
    (block, drop_both_ends(e, tls))
}

/// Reads everything until EOF or error; returns the bytes and how it ended.
pub fn read_to_end_tls(tls: &mut Tls) -> (Vec<u8>, Result<(), std::io::Error>) {
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => return (out, Ok(())),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return (out, Err(e)),
        }
    }
}

/// Reads exactly `n` bytes from the application side (fdw).
pub fn read_app(engine: &mut Engine, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    engine.app_rx().read_exact(&mut buf).expect("read fdw");
    buf
}

pub fn half_close(sock: &TcpStream) {
    sock.shutdown(Shutdown::Write).expect("shutdown");
}

/// Makes the next close of `sock` send an RST instead of a FIN (SO_LINGER
/// with a zero timeout): a peer that resets.
pub fn reset(sock: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a plain setsockopt on a socket we own, with a correctly sized value.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "SO_LINGER");
}

/// Pseudo-random bytes from a seed, to tell data apart.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn sha256(data: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

pub fn write_file(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    let mut f = File::create(&p).expect("create");
    f.write_all(data).expect("write");
    p
}
