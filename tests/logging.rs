//! Verbosity (`-v`): what each level prints, and that logging never stalls
//! the tunnel.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use common::*;

/// One echo each way, then both sides close; returns stderr.
fn session(args: &[&str]) -> String {
    let (pid, stderr) = session_as(spawn().args(args));
    without_context(&stderr, pid)
}

/// The same with `s`: the engine's pid and its stderr as written.
fn session_as(s: Spawn) -> (u32, String) {
    let mut e = s.start();
    let mut tls = connect(&e, tls13(), "localhost");
    tls.write_all(b"ping").unwrap();
    assert_eq!(read_app(&mut e, 4), b"ping");
    e.app_tx().write_all(b"pong!").unwrap();
    let mut buf = [0u8; 5];
    tls.read_exact(&mut buf).unwrap();
    tls.conn.send_close_notify();
    tls.conn.complete_io(&mut tls.sock).unwrap();
    e.close_app_tx();
    let pid = e.pid();
    let exit = e.wait_exit();
    assert_eq!(exit.code, Some(0), "{}", exit.stderr);
    (pid, exit.raw_stderr)
}

/// Each line's text after the level must start with `context`.
fn assert_named(stderr: &str, context: &str, levels: &[&str]) {
    assert!(!stderr.is_empty());
    for line in stderr.lines() {
        let named = levels
            .iter()
            .any(|l| line.starts_with(&format!("s6-tlsd-io: {l}: {context}: ")));
        assert!(named, "{line:?} does not start with {context:?}");
    }
}

#[test]
fn every_line_names_the_engine_and_the_client() {
    let s = spawn()
        .args(&["-v", "3"])
        .set("TCPREMOTEIP", "127.0.0.1")
        .set("TCPREMOTEPORT", "40404");
    let (pid, stderr) = session_as(s);
    let parent = std::process::id();
    assert_named(
        &stderr,
        &format!("pid {parent} engine {pid} 127.0.0.1_40404"),
        &["info", "debug"],
    );
    assert!(stderr.contains(" 127.0.0.1_40404: handshake complete: TLSv1.3 "));
    assert!(stderr.contains(" 127.0.0.1_40404: connection ended after "));
}

/// The context of a `-v 2` session whose super-server exported `ip` and
/// `port`, after the pids (the test's, which started the engine, then the
/// engine's).
fn context_for(ip: Option<&str>, port: &str) -> String {
    let mut s = spawn().args(&["-v", "2"]);
    if let Some(ip) = ip {
        s = s.set("TCPREMOTEIP", ip).set("TCPREMOTEPORT", port);
    }
    let (pid, stderr) = session_as(s);
    let first = stderr.lines().next().unwrap_or_default();
    let rest = first
        .strip_prefix(&format!(
            "s6-tlsd-io: info: pid {} engine {pid}",
            std::process::id()
        ))
        .unwrap_or_else(|| panic!("{first:?}"));
    let client = rest[..rest.find(": ").unwrap()].to_string();
    let parent = std::process::id();
    assert_named(
        &stderr,
        &format!("pid {parent} engine {pid}{client}"),
        &["info"],
    );
    client
}

#[test]
fn ipv6_clients_need_no_brackets_and_odd_values_are_left_out() {
    assert_eq!(
        context_for(Some("::ffff:10.0.0.1"), "443"),
        " ::ffff:10.0.0.1_443"
    );
    // no super-server: the pid alone
    assert_eq!(context_for(None, ""), "");
    // what is not an address or a port cannot be the client's
    assert_eq!(context_for(Some("1.2.3.4\nfatal"), "x"), "");
    assert_eq!(context_for(Some("10.1.2.3"), "123456"), " 10.1.2.3");
}

#[test]
fn a_connections_fatal_line_names_it_a_start_up_one_does_not() {
    let mut e = spawn()
        .set("TCPREMOTEIP", "192.0.2.7")
        .set("TCPREMOTEPORT", "5")
        .start();
    e.client().write_all(&[0x16, 0x03, 0x01]).unwrap();
    e.client().shutdown(std::net::Shutdown::Write).unwrap();
    let pid = e.pid();
    let exit = e.wait_exit();
    assert_eq!(exit.code, Some(98));
    assert_eq!(
        exit.raw_stderr,
        format!(
            "s6-tlsd-io: fatal: pid {} engine {pid} 192.0.2.7_5: the TLS engine closed the \
connection during the handshake: the client closed the connection\n",
            std::process::id()
        )
    );
    // A start-up error is the configuration's, the same for every client.
    let mut e = spawn()
        .no_notify()
        .env(vec![("TCPREMOTEIP".into(), "192.0.2.7".into())])
        .start();
    let exit = e.wait_exit();
    assert_eq!(exit.code, Some(100));
    assert_eq!(exit.raw_stderr, "s6-tlsd-io: fatal: CERTFILE not set\n");
}

#[test]
fn default_verbosity_prints_nothing_on_success() {
    assert_eq!(session(&[]), "");
    assert_eq!(session(&["-v", "0"]), "");
}

#[test]
fn verbosity_2_reports_the_handshake_and_the_end() {
    let stderr = session(&["-v", "2"]);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].starts_with("s6-tlsd-io: info: handshake complete: TLSv1.3 TLS_"),
        "{stderr}"
    );
    assert!(lines[0].ends_with(" sni=localhost"), "{stderr}");
    assert!(
        lines[1].starts_with("s6-tlsd-io: info: connection ended after "),
        "{stderr}"
    );
    assert!(
        lines[1].contains("client to app 4 bytes (close_notify), app to client 5 bytes (EOF)"),
        "{stderr}"
    );
}

#[test]
fn verbosity_3_adds_state_changes() {
    let stderr = session(&["-v3"]);
    assert!(
        stderr.contains("s6-tlsd-io: debug: inbound: closed (close_notify)\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("s6-tlsd-io: debug: outbound: open -> flushing (EOF)\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("s6-tlsd-io: debug: outbound: flushing -> closed\n"),
        "{stderr}"
    );
    for line in stderr.lines() {
        assert!(
            line.starts_with("s6-tlsd-io: info: ") || line.starts_with("s6-tlsd-io: debug: "),
            "{line}"
        );
    }
}

#[test]
fn a_full_stderr_pipe_never_stalls_the_tunnel() {
    // stderr is a pipe that nobody reads, already full.
    let (reader, mut writer) = std::io::pipe().unwrap();
    let fd = writer.as_raw_fd();
    // SAFETY: fcntl on a pipe we own.
    unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) };
    let chunk = [b'x'; 4096];
    while writer.write(&chunk).is_ok() {}
    // SAFETY: as above; back to blocking, as a real s6-log pipe would be.
    unsafe { libc::fcntl(fd, libc::F_SETFL, 0) };

    let mut s = spawn().args(&["-v", "3"]);
    s.stderr = Some(OwnedFd::from(writer));
    let mut e = s.start();
    let mut tls = connect(&e, tls13(), "localhost");
    let data = pattern(1 << 20, 9);
    let mut app_rx = e.app_rx.take().unwrap();
    let reader_thread = std::thread::spawn(move || {
        let mut got = vec![0; 1 << 20];
        app_rx.read_exact(&mut got).unwrap();
        got
    });
    tls.write_all(&data).unwrap();
    assert_eq!(reader_thread.join().unwrap(), data);
    tls.conn.send_close_notify();
    tls.conn.complete_io(&mut tls.sock).unwrap();
    e.close_app_tx();
    let exit = e.wait_exit();
    assert_eq!(exit.code, Some(0));
    drop(reader);
}

// ------------------------------------------- one grep finds a connection

const SUPPORT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support");

/// A super-server the test started, in a process group of its own with
/// every process of its connections, its stderr (and theirs) in `log`.
struct SuperServer {
    child: std::process::Child,
    log: std::path::PathBuf,
    /// What it printed when ready (`-1`): its port, for a TCP one.
    port: u16,
}

impl SuperServer {
    /// `argv`, then the stand-in s6-tlsd (or s6-ucspitlsd) and `app`, with
    /// the keys in the environment. The server must print a line on stdout
    /// once it listens (`-1`).
    fn start(argv: &[&str], tlsd: &[&str], app: &str) -> SuperServer {
        use std::os::unix::process::CommandExt;
        let dir = tmpdir("one-grep");
        let log = dir.join("log");
        let app = write_file(&dir, "app", app.as_bytes());
        std::fs::set_permissions(&app, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut child = std::process::Command::new(argv[0])
            .args(&argv[1..])
            .args(tlsd)
            .arg(&app)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("S6_TLSD_IO", BIN)
            .envs(key_env(default_keys()))
            .current_dir(&dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(file)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", argv[0]));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
            let _ = tx.send(line);
        });
        let mut server = SuperServer {
            child,
            log,
            port: 0,
        };
        let ready = rx.recv_timeout(std::time::Duration::from_secs(20));
        let ready = ready.unwrap_or_else(|_| panic!("{} never got ready", argv[0]));
        server.port = ready.trim().parse().unwrap_or(0);
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log once `done` holds for it, at most 20 s.
    fn log_once(&self, done: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let log = self.log();
            if done(&log) {
                return log;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the log never got there:\n{log}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// What one grep of the log prints: grep's own output, line by line.
    fn grep(&self, args: &[&str]) -> Vec<String> {
        let out = std::process::Command::new("grep")
            .args(args)
            .arg(&self.log)
            .output()
            .expect("grep");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for SuperServer {
    /// The server and whatever is left of its connections, killed; then
    /// nothing of the group may remain.
    fn drop(&mut self) {
        use nix::sys::signal::{killpg, Signal};
        use nix::unistd::Pid;
        let group = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while killpg(group, None).is_ok() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        if std::thread::panicking() {
            eprintln!("the super-server's log:\n{}", self.log());
        }
    }
}

/// Reads one line and answers `pong`: behind s6-tlsd, stdin and stdout
/// are the engine's pipes.
const APP: &str = "#!/bin/sh\nread -r line\necho pong\n";

/// The same behind s6-ucspitlsd: TLS at once (`y` on the control socket),
/// then the line and the answer through the engine's pipes.
const UCSPI_APP: &str = "#!/bin/sh\nprintf y >&$SSLCTLFD\n\
read -r line <&$SSLREADFD\necho pong >&$SSLWRITEFD\n";

/// One client: TLS 1.3 to `port`, `ping`, the answer to its end (the
/// engine's close_notify), our close_notify. Returns its local port.
fn ping(port: u16) -> u16 {
    let mut tls = open(port);
    finish_ping(&mut tls);
    tls.sock.local_addr().unwrap().port()
}

fn open(port: u16) -> Tls {
    let sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    open_on(sock)
}

/// TLS 1.3 on `sock`, and `ping` sent.
fn open_on<S: Read + Write>(sock: S) -> rustls::StreamOwned<rustls::ClientConnection, S> {
    let conn = rustls::ClientConnection::new(tls13(), "localhost".try_into().unwrap()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(b"ping\n").unwrap();
    tls
}

fn finish_ping<S: Read + Write>(tls: &mut rustls::StreamOwned<rustls::ClientConnection, S>) {
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).unwrap();
    assert_eq!(answer, b"pong\n");
    tls.conn.send_close_notify();
    tls.conn.complete_io(&mut tls.sock).unwrap();
}

/// A client that speaks HTTP to the TLS port: refused during the
/// handshake. Returns its local port.
fn refused_client(port: u16) -> u16 {
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    sock.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let _ = sock.read_to_end(&mut Vec::new());
    sock.local_addr().unwrap().port()
}

/// The engine's lines of the connection `pid` names, in `lines`: each one
/// names it `pid <pid> engine <n> <client>`, with the same engine.
fn engine_lines<'a>(lines: &'a [String], pid: &str, client: Option<&str>) -> Vec<&'a str> {
    let ours: Vec<&str> = lines
        .iter()
        .map(String::as_str)
        .filter(|l| l.starts_with("s6-tlsd-io: "))
        .collect();
    let mut engines = BTreeSet::new();
    for line in &ours {
        let (_, rest) = line
            .split_once(&format!(": pid {pid} engine "))
            .expect(line);
        let (engine, rest) = rest.split_once([' ', ':']).expect(line);
        assert_ne!(engine, pid, "{line}");
        engines.insert(engine.to_string());
        if let Some(client) = client {
            assert!(rest.starts_with(&format!("{client}: ")), "{line}");
        }
    }
    assert_eq!(engines.len(), 1, "one engine: {ours:?}");
    ours
}

/// The pid s6-tcpserverd's accept line gives the connection from
/// 127.0.0.1 port `client_port`.
fn accepted_pid(log: &str, client_port: u16) -> String {
    let needle = format!(": accept 127.0.0.1_{client_port} pid ");
    let line = log
        .lines()
        .find(|l| l.contains(&needle))
        .unwrap_or_else(|| panic!("no accept line for port {client_port}:\n{log}"));
    let rest = &line[line.find(&needle).unwrap() + needle.len()..];
    rest.split(' ').next().unwrap().to_string()
}

/// Waits until the log holds `end` (the super-server's end line) and the
/// last line of the engine of the connection `pid` names.
fn until_ended(server: &SuperServer, pid: &str, end: &str) {
    let named = format!(": pid {pid} engine ");
    server.log_once(|log| {
        log.contains(end)
            && log
                .lines()
                .any(|l| l.contains(&named) && l.contains(": connection ended after "))
    });
}

/// Everything one connection wrote, found by `grep -wF 'pid N'` with N the
/// pid of s6-tcpserverd's accept line, once it has ended: the accept line
/// first, the end line, and the engine's lines in between or after (the
/// application, which the super-server waits for, may exit before its
/// engine has written its last line).
fn one_connection(server: &SuperServer, client_port: u16) -> (String, Vec<String>) {
    let log =
        server.log_once(|log| log.contains(&format!(": accept 127.0.0.1_{client_port} pid ")));
    let pid = accepted_pid(&log, client_port);
    let end = format!("s6-tcpserverd: info: end pid {pid} exitcode ");
    until_ended(server, &pid, &end);
    let lines = server.grep(&["-wF", &format!("pid {pid}")]);
    assert!(
        lines[0].starts_with(&format!(
            "s6-tcpserverd: info: accept 127.0.0.1_{client_port} pid {pid} count "
        )),
        "{lines:#?}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.starts_with(&end)).count(),
        1,
        "{lines:#?}"
    );
    (pid, lines)
}

/// The stand-in s6-tcpserver, verbose, on a free port of 127.0.0.1, with
/// `tlsd` and `app` behind it.
fn under_s6_tcpserver(tlsd: &[&str], app: &str) -> SuperServer {
    let shim = format!("{SUPPORT}/s6-tcpserver-shim");
    SuperServer::start(&[&shim, "-v", "-1", "127.0.0.1", "0"], tlsd, app)
}

fn s6_tlsd() -> String {
    format!("{SUPPORT}/s6-tlsd-shim")
}

/// Issue 27 item 3: under s6-tcpserver and s6-tlsd (stand-ins that do what
/// s6-networking 2.8's do: tests/support), `grep -wF 'pid N'`, N the pid of
/// s6-tcpserverd's accept line, finds every line of that connection, the
/// super-server's accept and end lines included, and none of another's:
/// two clients at once, and one refused during the handshake, whose end
/// line says so.
#[test]
fn one_grep_finds_a_connection_under_s6_tcpserver_and_s6_tlsd() {
    let server = under_s6_tcpserver(&[&s6_tlsd(), "-v", "2", "-S", "-K", "5000", "--"], APP);
    let mut held = open(server.port);
    let first = held.sock.local_addr().unwrap().port();
    let second = ping(server.port);
    finish_ping(&mut held);
    let refused = refused_client(server.port);

    for port in [first, second] {
        let (pid, lines) = one_connection(&server, port);
        assert_eq!(lines.len(), 4, "{lines:#?}");
        let client = format!("127.0.0.1_{port}");
        let engine = engine_lines(&lines, &pid, Some(&client));
        assert!(
            engine[0].contains(": handshake complete: TLSv1.3 "),
            "{engine:#?}"
        );
        // The application may exit before the client's close_notify.
        assert!(
            engine[1].contains(": connection ended after ")
                && engine[1].contains(": client to app 5 bytes (")
                && engine[1].ends_with("app to client 5 bytes (EOF, close_notify sent)"),
            "{engine:#?}"
        );
        assert!(
            lines[1..].iter().any(|l| l.contains(" exitcode 0 ")),
            "{lines:#?}"
        );
    }
    let (pid, lines) = one_connection(&server, refused);
    assert_eq!(lines.len(), 4, "{lines:#?}");
    let engine = engine_lines(&lines, &pid, Some(&format!("127.0.0.1_{refused}")));
    assert!(
        engine[0].starts_with("s6-tlsd-io: info: ")
            && engine[0].ends_with(" ms: the handshake failed"),
        "{engine:#?}"
    );
    assert!(engine[1].starts_with("s6-tlsd-io: fatal: "), "{engine:#?}");
    assert!(
        lines[1..].iter().any(|l| l.contains(" exitcode 98 ")),
        "{lines:#?}"
    );
}

/// The same under s6-ucspitlsd (its stand-in), where the application
/// starts TLS: its `pid N accepted opportunistic TLS` line too.
#[test]
fn one_grep_finds_a_connection_under_s6_ucspitlsd() {
    let server = under_s6_tcpserver(
        &[
            &format!("{SUPPORT}/s6-ucspitlsd-shim"),
            "-v",
            "2",
            "-S",
            "--",
        ],
        UCSPI_APP,
    );
    let port = ping(server.port);
    let (pid, lines) = one_connection(&server, port);
    assert_eq!(lines.len(), 5, "{lines:#?}");
    assert!(
        lines.contains(&format!(
            "s6-ucspitlsd: info: pid {pid} accepted opportunistic TLS"
        )),
        "{lines:#?}"
    );
    let engine = engine_lines(&lines, &pid, Some(&format!("127.0.0.1_{port}")));
    assert_eq!(engine.len(), 2, "{lines:#?}");
    assert!(engine[0].contains(": handshake complete: "), "{engine:#?}");
}

/// Behind a load balancer, proxy-server (which sets TCPREMOTEIP and
/// TCPREMOTEPORT to the client's, from the PROXY header, then execs
/// s6-tlsd: the same process) makes the engine's address differ from the
/// super-server's: the pid still finds both. `env` plays proxy-server's
/// part that matters here: the variables, then exec.
#[test]
fn one_grep_finds_a_connection_whose_address_proxy_server_restored() {
    let server = under_s6_tcpserver(
        &[
            "env",
            "TCPREMOTEIP=2001:db8::9",
            "TCPREMOTEPORT=51000",
            &s6_tlsd(),
            "-v",
            "2",
            "-S",
            "--",
        ],
        APP,
    );
    let port = ping(server.port);
    let (pid, lines) = one_connection(&server, port);
    assert_eq!(lines.len(), 4, "{lines:#?}");
    let engine = engine_lines(&lines, &pid, Some("2001:db8::9_51000"));
    assert_eq!(engine.len(), 2, "{lines:#?}");
}

/// Under ucspi-tcp's tcpserver (the real one, a Debian package), whose
/// lines name the child `pid N from`, `ok N`, `end N`: `grep -wF N`.
#[test]
fn one_grep_finds_a_connection_under_tcpserver() {
    let server = SuperServer::start(
        &["tcpserver", "-v", "-1", "-HRl0", "127.0.0.1", "0"],
        &[&s6_tlsd(), "-v", "2", "-S", "--"],
        APP,
    );
    let port = ping(server.port);
    let needle = format!(":127.0.0.1::{port}");
    let log = server.log_once(|log| log.contains(&needle));
    let ok = log.lines().find(|l| l.ends_with(&needle)).unwrap();
    let pid = ok.split(' ').nth(2).unwrap().to_string();
    until_ended(&server, &pid, &format!("tcpserver: end {pid} status "));
    let lines = server.grep(&["-wF", &pid]);
    assert_eq!(lines.len(), 5, "{lines:#?}");
    assert_eq!(lines[0], format!("tcpserver: pid {pid} from 127.0.0.1"));
    assert!(lines.contains(&ok.to_string()), "{lines:#?}");
    assert!(
        lines.contains(&format!("tcpserver: end {pid} status 0")),
        "{lines:#?}"
    );
    assert_eq!(
        engine_lines(&lines, &pid, Some(&format!("127.0.0.1_{port}"))).len(),
        2
    );
}

/// Under s6's own s6-ipcserver (the real one, a Debian package), on a Unix
/// socket: its lines name the child as s6-tcpserverd's do (`allow ... pid
/// N`, `end pid N ...`), and it exports no address, so the engine's name is
/// the two pids alone.
#[test]
fn one_grep_finds_a_connection_under_s6_ipcserver() {
    let path = tmpdir("ipc").join("socket");
    let path = path.to_str().unwrap();
    let server = SuperServer::start(
        &["s6-ipcserver", "-v", "-1", path],
        &[&s6_tlsd(), "-v", "2", "-S", "--"],
        APP,
    );
    let sock = std::os::unix::net::UnixStream::connect(path).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    finish_ping(&mut open_on(sock));

    let log = server.log_once(|log| log.contains("s6-ipcserverd: info: allow "));
    let allowed = log.lines().find(|l| l.contains(": allow ")).unwrap();
    let pid = allowed
        .split(" pid ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    until_ended(
        &server,
        pid,
        &format!("s6-ipcserverd: info: end pid {pid} "),
    );
    let lines = server.grep(&["-wF", &format!("pid {pid}")]);
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert_eq!(lines[0], allowed);
    assert_eq!(engine_lines(&lines, pid, None).len(), 2, "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("s6-ipcserverd: info: end pid {pid} "))),
        "{lines:#?}"
    );
}

// ------------------------------------------- no line a peer can forge

/// Issue 26 item 4: an ALPN offer is the client's bytes, control bytes
/// and bytes that are not UTF-8 included; the refusal that quotes it stays
/// one line, every byte escaped (`\n`, `\x1b`, `\xff`), none lost. So does
/// the server name, which rustls refuses (illegal_parameter) when it is
/// not a DNS name: the engine never writes it.
#[test]
fn an_alpn_offer_or_a_server_name_with_control_bytes_stays_on_one_line() {
    let mut config = (*tls13()).clone();
    config.alpn_protocols = vec![
        b"h3\ns6-tlsd-io: info: forged\r\x1b[1A".to_vec(),
        b"\xff\xfe\x85".to_vec(),
    ];
    let mut e = spawn().args(&["-v", "2"]).set("TLS_ALPN", "h2").start();
    let _ = try_connect(&e, Arc::new(config), "localhost");
    let exit = e.wait_exit();
    assert_eq!(exit.code, Some(98), "{}", exit.raw_stderr);
    assert_unforged(&exit.raw_stderr);
    let lines: Vec<&str> = exit.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{:?}", exit.raw_stderr);
    assert!(lines[0].ends_with(" ms: the handshake failed"), "{lines:?}");
    assert_eq!(
        lines[1],
        "s6-tlsd-io: fatal: the TLS engine closed the connection during the handshake: no \
application protocol in common: the client offers \"h3\\ns6-tlsd-io: info: forged\\r\\x1b[1A\", \
\"\\xff\\xfe\\x85\", the server speaks h2"
    );

    // A ClientHello whose server name holds a newline and an ESC: a real
    // hello, its name swapped for one of the same length.
    let conn = rustls::ClientConnection::new(tls13(), "localhost".try_into().unwrap());
    let mut hello = Vec::new();
    conn.unwrap().write_tls(&mut hello).unwrap();
    let at = hello.windows(9).position(|w| w == b"localhost").unwrap();
    hello[at..at + 9].copy_from_slice(b"lo\ncal\x1b[t");
    let mut e = spawn().args(&["-v", "3"]).start();
    e.client().write_all(&hello).unwrap();
    let exit = e.wait_exit();
    assert_eq!(exit.code, Some(98), "{}", exit.raw_stderr);
    assert_unforged(&exit.raw_stderr);
    assert_eq!(exit.stderr.lines().count(), 2, "{:?}", exit.raw_stderr);
}
