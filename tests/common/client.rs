//! External TLS client programs (`openssl s_client`, `gnutls-cli`, `curl`)
//! against the engine: a guard that runs one and collects what it says, and
//! the listener it connects to. Shared by tests/clients.rs and tests/sni.rs.
//!
//! Every client runs on 127.0.0.1, for a bounded time: it is killed when a
//! test gives up, and on every exit path (its guard kills and reaps it).
//! A missing client program fails the test and names the Debian package to
//! install; it never passes silently.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{ca, Engine, Spawn};

/// How long any one step with an external program may take before the test
/// gives up.
pub const STEP: Duration = Duration::from_secs(20);

/// The Debian package that provides each client program (CI installs them).
fn debian_package(program: &str) -> &'static str {
    let name = std::path::Path::new(program)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(program);
    match name {
        "openssl" => "openssl",
        "gnutls-cli" => "gnutls-bin",
        "curl" => "curl",
        other => panic!("no Debian package known for {other}"),
    }
}

/// Fails the test for a client program that is not installed.
pub fn missing(program: &str) -> ! {
    let package = debian_package(program);
    panic!(
        "`{program}` is not installed: this test needs it; \
         install the Debian package `{package}` (apt-get install {package})"
    )
}

/// An external client program. Its output is collected by two threads; the
/// process is killed and reaped when the guard is dropped, whatever the test
/// did.
pub struct Client {
    pub program: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

/// Copies `from` into `into` until EOF, on a thread of its own, so that a
/// client never blocks on a full pipe.
fn collect(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => into.lock().unwrap().extend_from_slice(&buf[..n]),
            }
        }
    })
}

impl Client {
    /// Starts `program args...` with its three standard streams piped.
    pub fn start(program: &'static str, args: &[String]) -> Client {
        let mut child = match Command::new(program)
            .args(args)
            .env("LC_ALL", "C")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) if e.kind() == ErrorKind::NotFound => missing(program),
            Err(e) => panic!("cannot run {program}: {e}"),
        };
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), stdout.clone()),
            collect(child.stderr.take().unwrap(), stderr.clone()),
        ];
        Client {
            program,
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
            readers,
        }
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Everything the client said so far, for failure messages.
    pub fn transcript(&self) -> String {
        format!(
            "--- {} stdout:\n{}\n--- {} stderr:\n{}",
            self.program,
            self.stdout(),
            self.program,
            self.stderr()
        )
    }

    pub fn send(&mut self, data: &[u8]) {
        let stdin = self.stdin.as_mut().expect("client stdin still open");
        if let Err(e) = stdin.write_all(data).and_then(|()| stdin.flush()) {
            panic!(
                "cannot write to {}: {e}\n{}",
                self.program,
                self.transcript()
            );
        }
    }

    /// Writes `data` to the client's stdin from a thread of its own, then
    /// closes it. The client may end before it has read everything (a
    /// server that answers early): a broken pipe is no error here.
    pub fn feed(&mut self, data: Vec<u8>) {
        if let Some(mut stdin) = self.stdin.take() {
            self.readers.push(std::thread::spawn(move || {
                let _ = stdin.write_all(&data);
            }));
        }
    }

    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait client")
    }

    /// Waits until the client's stdout contains `needle`; panics (and the
    /// guard kills the client) after STEP.
    pub fn wait_stdout(&mut self, needle: &str) {
        let start = Instant::now();
        loop {
            if self.stdout().contains(needle) {
                return;
            }
            if start.elapsed() > STEP {
                panic!(
                    "{} never printed {needle:?} within {STEP:?}\n{}",
                    self.program,
                    self.transcript()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for the client to exit on its own, at most STEP (else kills it
    /// and panics), then waits for its output to be complete.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                return status;
            }
            if start.elapsed() > STEP {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{} still running after {STEP:?}; killed\n{}",
                    self.program,
                    self.transcript()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // Never leave a process behind; a reaped child is not signalled.
        let _ = self.child.kill();
        let _ = self.child.wait();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

/// Waits until `fd` is readable (or at EOF), at most `timeout`.
pub fn readable(fd: BorrowedFd<'_>, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one valid pollfd, its count, a bounded timeout.
    let r = unsafe { libc::poll(&mut pfd, 1, ms) };
    r > 0
}

/// A listener on 127.0.0.1, on a port of the kernel's choosing, for a client
/// program to connect to.
pub fn listen() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let port = listener.local_addr().expect("local addr").port();
    (listener, port)
}

/// Waits for `client` to connect, then starts the engine on the accepted
/// socket. Fails with the client's output if it exits first or never
/// connects.
pub fn accept(spawn: Spawn, listener: &TcpListener, client: &mut Client) -> Engine {
    let start = Instant::now();
    while !readable(listener.as_fd(), Duration::from_millis(20)) {
        if let Some(status) = client.exited() {
            client.wait_exit();
            panic!(
                "{} exited ({status}) without connecting\n{}",
                client.program,
                client.transcript()
            );
        }
        if start.elapsed() > STEP {
            panic!(
                "{} did not connect within {STEP:?}\n{}",
                client.program,
                client.transcript()
            );
        }
    }
    spawn.start_accepting(listener)
}

/// `gnutls-cli` arguments to reach the engine on 127.0.0.1:`port` with SNI
/// `localhost`, trusting only the test CA and checking the name.
pub fn gnutls_cli_args(port: u16, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--x509cafile",
        &ca().pem_path.display().to_string(),
        "--port",
        &port.to_string(),
        "--sni-hostname",
        "localhost",
        "--verify-hostname",
        "localhost",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push("127.0.0.1".to_string());
    args
}

/// `curl` arguments to reach the engine on 127.0.0.1:`port` as `localhost`
/// (no curlrc, no proxy, 20 s at most), trusting only the test CA, then
/// `extra` (the URL among them).
pub fn curl_args(port: u16, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "-q",
        "--silent",
        "--show-error",
        "--noproxy",
        "*",
        "--max-time",
        "20",
        "--cacert",
        &ca().pem_path.display().to_string(),
        "--resolve",
        &format!("localhost:{port}:127.0.0.1"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// `openssl s_client` arguments to reach the engine on `port`, trusting only
/// the test CA and failing on any verification error, then `extra`.
pub fn s_client_args(port: u16, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "s_client",
        "-connect",
        &format!("127.0.0.1:{port}"),
        "-CAfile",
        &ca().pem_path.display().to_string(),
        "-verify_return_error",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// The end of an `openssl s_client -ign_eof` session with the engine `e`,
/// handshake done: the application writes "hello" and closes, s_client's
/// stdin closes; both must end well, s_client having printed the hello.
/// Returns what s_client called the TLS 1.3 session: "New" or "Reused".
pub fn s_client_hello_and_close(client: &mut Client, e: &mut Engine) -> String {
    e.app_tx().write_all(b"hello\n").unwrap();
    e.close_app_tx();
    client.close_stdin();
    let status = client.wait_exit();
    let exit = e.wait_exit();
    assert!(status.success(), "{}", client.transcript());
    assert_eq!(exit.code, Some(0), "{}", exit.stderr);
    let out = client.stdout();
    assert!(out.contains("hello\n"), "{}", client.transcript());
    out.lines()
        .find_map(|l| l.strip_suffix(", TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384"))
        .unwrap_or_else(|| panic!("no TLS 1.3 line\n{}", client.transcript()))
        .to_string()
}
