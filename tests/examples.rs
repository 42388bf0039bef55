//! The README's examples, run for real, so that they cannot rot.
//!
//! Every fenced block of README.md preceded by `<!-- example: NAME -->` is a
//! command (or a file) that a test here runs as written, and every block
//! preceded by `<!-- output: NAME -->` is what the example of the same name
//! must print (a `...` in a line stands for any text). The examples read
//! `$IP`, `$PORT` and `$TLS` from the environment: here 127.0.0.1, a free
//! port and a fresh directory.
//!
//! Real programs wherever Debian packages them: ucspi-tcp's `tcpserver`,
//! execline, s6 (`s6-envdir`, `s6-applyuidgid`, `s6-supervise`), openssl
//! and curl as the clients, haproxy as the load balancer. `s6-tlsd`,
//! `s6-ucspitlsd`, `s6-tcpserver` and `proxy-server` are not packaged: a
//! directory first in `PATH` holds stand-ins for them, `s6-tlsd` being
//! tests/support/s6-tlsd-shim (which does what s6-tlsd 2.8 does:
//! `shim_plays_s6_tlsd` checks that it does), `s6-ucspitlsd`
//! tests/support/s6-ucspitlsd-shim (`shim_plays_s6_ucspitlsd`),
//! `proxy-server` tests/support/proxy-server-shim
//! (`shim_plays_proxy_server`; a real `proxy-server` in `PATH` is used
//! instead), and `s6-tcpserver` an execline script that runs `tcpserver
//! -HRl0` with the same arguments.
//!
//! Every process a test starts carries a tag in its environment. At the end
//! the test waits for the processes of each connection to be gone by
//! themselves, kills the servers and whatever else still has the tag, and
//! checks, by reading /proc/*/environ, that nothing is left (pgrep cannot
//! match on the environment, and the engine's command line says nothing of
//! the test that started it).

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_s6-tlsd-io");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const SHIM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/s6-tlsd-shim");
const UCSPI_SHIM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/s6-ucspitlsd-shim"
);
const PROXY_SHIM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/proxy-server-shim"
);
const TAG: &str = "S6_TLSD_IO_EXAMPLES_TAG";
/// How long a client, or a server's start, may take.
const LIMIT: Duration = Duration::from_secs(20);

// ------------------------------------------------------------ README blocks

fn readme() -> String {
    fs::read_to_string(Path::new(ROOT).join("README.md")).expect("read README.md")
}

/// Every `(kind, name)` marked in README.md, with the block that follows.
fn marked_blocks() -> Vec<(String, String, String)> {
    let text = readme();
    let mut lines = text.lines();
    let mut blocks = Vec::new();
    while let Some(line) = lines.next() {
        let Some(mark) = line
            .trim()
            .strip_prefix("<!-- ")
            .and_then(|l| l.strip_suffix(" -->"))
        else {
            continue;
        };
        let Some((kind, name)) = mark.split_once(": ") else {
            continue;
        };
        if kind != "example" && kind != "output" {
            continue;
        }
        let fence = lines.by_ref().find(|l| !l.trim().is_empty());
        assert!(
            fence.is_some_and(|f| f.starts_with("```")),
            "README.md: `{line}` is not followed by a fenced block"
        );
        let mut body = String::new();
        loop {
            let l = lines
                .next()
                .unwrap_or_else(|| panic!("README.md: the block after `{line}` is not closed"));
            if l.trim_end() == "```" {
                break;
            }
            body.push_str(l);
            body.push('\n');
        }
        blocks.push((kind.to_string(), name.to_string(), body));
    }
    blocks
}

fn block(kind: &str, name: &str) -> String {
    let mut found = marked_blocks()
        .into_iter()
        .filter(|(k, n, _)| k == kind && n == name);
    let (_, _, body) = found
        .next()
        .unwrap_or_else(|| panic!("README.md has no block marked `<!-- {kind}: {name} -->`"));
    assert!(
        found.next().is_none(),
        "README.md: two blocks marked {kind}: {name}"
    );
    body
}

fn example(name: &str) -> String {
    block("example", name)
}

/// One line of an output block against one line of actual output.
fn line_matches(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split("...").collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return pattern == line;
    }
    if line.len() < first.len() + last.len() || !line.starts_with(first) || !line.ends_with(last) {
        return false;
    }
    let mut rest = &line[first.len()..line.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    true
}

fn assert_output(name: &str, out: &Output) {
    let expected = block("output", name);
    let actual = String::from_utf8_lossy(&out.stdout);
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    assert!(
        e.len() == a.len() && e.iter().zip(&a).all(|(p, l)| line_matches(p, l)),
        "example {name}: README.md says\n{expected}but it printed\n{actual}\n(stderr: {})",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ------------------------------------------------------------ processes

/// Runs a command that must end by itself within LIMIT; its output.
fn run(mut cmd: Command) -> Output {
    let what = format!("{cmd:?}");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    wait_output(child, &what)
}

/// Runs a command with the stdin and stdout it was given (stderr piped).
fn run_with_fds(mut cmd: Command) -> Output {
    let what = format!("{cmd:?}");
    let child = cmd
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    wait_output(child, &what)
}

fn wait_output(child: Child, what: &str) -> Output {
    let pid = Pid::from_raw(child.id() as i32);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(LIMIT) {
        Ok(out) => out.expect("wait"),
        Err(_) => {
            let _ = kill(pid, Signal::SIGKILL);
            panic!("{what} did not finish within {LIMIT:?}")
        }
    }
}

fn success(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what}: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn pids() -> impl Iterator<Item = i32> {
    fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
}

/// The processes whose environment holds `TAG=tag`.
fn tagged(tag: &str) -> Vec<i32> {
    let entry = format!("{TAG}={tag}");
    pids()
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|e| e == entry.as_bytes()))
        })
        .collect()
}

fn comm(pid: i32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim_end()
        .to_string()
}

fn ppid(pid: i32) -> i32 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
    after
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

/// A field of /proc/PID/status (`Uid`, `Gid`, `Groups`), whitespace-normalized.
fn status(pid: i32, field: &str) -> String {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")));
    value
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn describe(pids: &[i32]) -> String {
    pids.iter()
        .map(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            format!("  {pid} ({}) {cmdline}\n", comm(*pid))
        })
        .collect()
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// Whether one of the tagged processes listens on 127.0.0.1:port.
fn listening(port: u16, tag: &str) -> bool {
    let local = format!("0100007F:{port:04X}");
    let tcp = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let sockets: Vec<String> = tcp
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() > 9 && f[1] == local && f[3] == "0A")
        .map(|f| format!("socket:[{}]", f[9]))
        .collect();
    !sockets.is_empty()
        && tagged(tag).into_iter().any(|pid| {
            fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                fds.filter_map(|fd| fs::read_link(fd.ok()?.path()).ok())
                    .any(|link| sockets.iter().any(|s| link.as_os_str() == s.as_str()))
            })
        })
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn write_file(path: &Path, text: &str, mode: u32) {
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    set_mode(path, mode);
}

/// A directory removed when the test ends, however it ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("s6-tlsd-io-{name}.{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("mkdir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn is_root() -> bool {
    nix::unistd::getuid().is_root()
}

/// Where `program` is: in `PATH`, or in /usr/sbin (Debian's haproxy),
/// which a user's `PATH` may lack.
fn installed(program: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin"])
        .map(|dir| Path::new(dir).join(program))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0));
    found
}

// ------------------------------------------------------------ the lab

/// One test's world: a working directory (the examples' `.`), `$TLS` with
/// the keys the README's `keys` block makes, the README's `app`, stand-ins
/// first in `PATH`, and the servers it started.
struct Lab {
    dir: PathBuf,
    tls: PathBuf,
    stand_ins: PathBuf,
    tag: String,
    servers: Vec<Child>,
    log: PathBuf,
}

impl Lab {
    fn new(name: &str) -> Lab {
        // Under /tmp, not target/: the service example's application runs as
        // nobody, who must be able to reach it.
        let dir =
            std::env::temp_dir().join(format!("s6-tlsd-io-examples.{}.{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let lab = Lab {
            tls: dir.join("tls"),
            stand_ins: dir.join("stand-ins"),
            log: dir.join("servers.log"),
            tag: format!("{}.{name}", std::process::id()),
            servers: Vec::new(),
            dir,
        };
        for d in [&lab.dir, &lab.tls, &lab.stand_ins] {
            fs::create_dir_all(d).expect("mkdir");
            set_mode(d, 0o755);
        }
        std::os::unix::fs::symlink(SHIM, lab.stand_ins.join("s6-tlsd")).expect("symlink");
        std::os::unix::fs::symlink(UCSPI_SHIM, lab.stand_ins.join("s6-ucspitlsd"))
            .expect("symlink");
        if installed("proxy-server").is_none() {
            std::os::unix::fs::symlink(PROXY_SHIM, lab.stand_ins.join("proxy-server"))
                .expect("symlink");
        }
        // The engine itself, for the examples that run it by name (`-t`).
        std::os::unix::fs::symlink(BIN, lab.stand_ins.join("s6-tlsd-io")).expect("symlink");
        write_file(
            &lab.stand_ins.join("s6-tcpserver"),
            // Not a /bin/sh script: dash drops KEYFILE:name from the environment.
            "#!/usr/bin/execlineb -S0\n\
             # s6-tcpserver is not packaged: ucspi-tcp's tcpserver stands in.\n\
             tcpserver -HRl0 $@\n",
            0o755,
        );
        success(run(lab.sh(&example("keys"), None)), "README example keys");
        write_file(&lab.dir.join("app"), &example("app"), 0o755);
        lab
    }

    /// A command in the lab's directory and environment.
    fn command(&self, program: &str, port: Option<u16>) -> Command {
        let mut cmd = Command::new(program);
        let path = std::env::var("PATH").unwrap_or_default();
        cmd.current_dir(&self.dir)
            .env("PATH", format!("{}:{path}", self.stand_ins.display()))
            .env("IP", "127.0.0.1")
            .env("TLS", &self.tls)
            .env("S6_TLSD_IO", BIN)
            .env("LC_ALL", "C")
            .env(TAG, &self.tag);
        if let Some(port) = port {
            cmd.env("PORT", port.to_string());
        }
        cmd
    }

    fn sh(&self, script: &str, port: Option<u16>) -> Command {
        let mut cmd = self.command("sh", port);
        cmd.arg("-c").arg(script);
        cmd
    }

    /// Starts a server; true once it listens on 127.0.0.1:port, false if it
    /// exited first (the port was taken).
    fn start(&mut self, cmd: Command) -> bool {
        let log = self.log.clone();
        self.start_logging_to(cmd, &log)
    }

    /// `start`, the server's stdout and stderr going to `log`.
    fn start_logging_to(&mut self, mut cmd: Command, log: &Path) -> bool {
        let port: u16 = cmd
            .get_envs()
            .find(|(k, _)| *k == "PORT")
            .and_then(|(_, v)| v?.to_str()?.parse().ok())
            .expect("a server command has a PORT");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open the log");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let deadline = Instant::now() + LIMIT;
        loop {
            if listening(port, &self.tag) {
                self.servers.push(child);
                return true;
            }
            if child.try_wait().expect("try_wait").is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Up to three tries, each on a free port, to start the server that
    /// `server` makes for the port, its output to `log` (None: the lab's
    /// log): the port it listens on.
    fn try_serve(
        &mut self,
        log: Option<&Path>,
        server: impl Fn(&Lab, u16) -> Command,
    ) -> Option<u16> {
        let log = log.map_or_else(|| self.log.clone(), Path::to_path_buf);
        (0..3).find_map(|_| {
            let port = free_port();
            let cmd = server(self, port);
            self.start_logging_to(cmd, &log).then_some(port)
        })
    }

    /// Runs a README server example (a shell command) on a free port.
    fn serve(&mut self, name: &str) -> u16 {
        let script = example(name);
        self.try_serve(None, |lab, port| lab.sh(&script, Some(port)))
            .unwrap_or_else(|| panic!("example {name} does not listen; log:\n{}", self.log_text()))
    }

    /// Runs a README client example against the port and compares what it
    /// prints with the output block of the same name.
    fn check(&self, name: &str, port: u16) -> Output {
        let out = run(self.sh(&example(name), Some(port)));
        assert_output(name, &out);
        out
    }

    /// `s6-svc FLAGS DIR` on a service the lab supervises.
    fn svc(&self, flags: &str, dir: &str) {
        let mut svc = self.command("s6-svc", None);
        svc.args([flags, dir]);
        success(run(svc), &format!("s6-svc {flags} {dir}"));
    }

    /// `New` or `Reused`: what openssl s_client says of the session it
    /// saved (`resume-check`'s `session` file) when it comes back with it.
    fn resume_again(&self, port: u16) -> String {
        let again = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | openssl s_client \
            -connect localhost:$PORT -CAfile $TLS/ca.pem -ign_eof -sess_in session \
            2>/dev/null | grep -E '^(New|Reused),' | cut -d, -f1";
        let out = success(run(self.sh(again, Some(port))), "s_client -sess_in");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log once it holds every one of `texts`, or after LIMIT: an
    /// engine writes its fatal line after the alert that ends its client,
    /// so a client's exit does not mean the line is there yet.
    fn log_once_it_has(&self, texts: &[&str]) -> String {
        let deadline = Instant::now() + LIMIT;
        loop {
            let log = self.log_text();
            if texts.iter().all(|t| log.contains(t)) || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills whatever carries the tag until nothing does: first what the
    /// servers started (so that a shell that runs tcpserver reaps it), then
    /// the servers, then any straggler. What is left after 10 s.
    fn kill_all(&mut self) -> Vec<i32> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let ours: Vec<i32> = self.servers.iter().map(|c| c.id() as i32).collect();
        let mut first_round = true;
        loop {
            let left: Vec<i32> = tagged(&self.tag)
                .into_iter()
                .filter(|pid| !first_round || !ours.contains(pid))
                .collect();
            if left.is_empty() && first_round {
                first_round = false;
                for child in &mut self.servers {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                self.servers.clear();
                continue;
            }
            if left.is_empty() || Instant::now() > deadline {
                return left;
            }
            for &pid in &left {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The end of a test that went well: the processes of every connection
    /// (the stand-in s6-tlsd, the engine, the app) are gone by themselves
    /// once their clients are done; then the servers are killed, and no
    /// process and no file is left.
    fn finish(mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let connections: Vec<i32> = tagged(&self.tag)
                .into_iter()
                .filter(|&pid| {
                    [
                        "s6-tlsd",
                        "s6-ucspitlsd",
                        "s6-tlsd-io",
                        "app",
                        "smtp-app",
                        "proxy-server",
                    ]
                    .contains(&comm(pid).as_str())
                })
                .collect();
            if connections.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "connections still running after their clients are done:\n{}",
                describe(&connections)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let left = self.kill_all();
        assert!(
            left.is_empty(),
            "processes left behind:\n{}",
            describe(&left)
        );
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.dir.exists() {
            return; // finished
        }
        self.kill_all();
        if std::thread::panicking() {
            eprintln!("servers' log:\n{}", self.log_text());
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

// ------------------------------------------------------------ the tests

/// Every marked block is one that a test below runs, and each output block
/// belongs to an example.
#[test]
fn every_marked_readme_block_is_run() {
    let run_here: BTreeSet<&str> = [
        "keys",
        "app",
        "s6-tcpserver",
        "tcpserver",
        "curl",
        "service",
        "run",
        "check",
        "sni",
        "sni-check",
        "mtls",
        "mtls-check",
        "mtls-refused",
        "crl",
        "crl-check",
        "alpn",
        "alpn-check",
        "smtp-app",
        "starttls",
        "starttls-check",
        "rotate",
        "tickets",
        "resume-check",
        "backend",
        "haproxy.cfg",
        "balancer",
        "rotate-everywhere",
        "balancer-check",
        "install",
    ]
    .into();
    let blocks = marked_blocks();
    let examples: BTreeSet<&str> = blocks
        .iter()
        .filter(|b| b.0 == "example")
        .map(|b| b.1.as_str())
        .collect();
    assert_eq!(
        examples, run_here,
        "README examples and tests/examples.rs differ"
    );
    for (kind, name, _) in &blocks {
        if kind == "output" {
            assert!(
                examples.contains(name.as_str()),
                "output {name} has no example"
            );
        }
        block(kind, name); // no duplicates
    }
}

/// The start of both stand-in tests' fake engine: it records its argv, its
/// open fds and what each of 0, 1, fdr, fdw and the notification fd (`-d`,
/// when given) is, into $FAKE_OUT.engine.
const FAKE_ENGINE: &str = r#"#!/usr/bin/python3
import os, stat, sys
args = sys.argv[1:]
fdr, fdw = int(args[-2]), int(args[-1])
notif = int(args[args.index("-d") + 1]) if "-d" in args else None
def kind(fd):
    st = os.fstat(fd)
    if stat.S_ISSOCK(st.st_mode):
        return "socket"
    flags = int(open(f"/proc/self/fdinfo/{fd}").read().split("flags:")[1].split()[0], 8)
    return ("pipe-" if stat.S_ISFIFO(st.st_mode) else "other-") + ("w" if flags & os.O_WRONLY else "r")
def is_open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False
out = os.environ["FAKE_OUT"]
fds = [fd for fd in range(3, 256) if is_open(fd)]
with open(out + ".engine", "w") as f:
    print("argv", *args, file=f)
    print("open", *fds, file=f)
    for fd in (0, 1, fdr, fdw) + ((notif,) if notif is not None else ()):
        print("kind", fd, kind(fd), file=f)
"#;

/// DIR/fake-engine: FAKE_ENGINE's recording part, then `tail`.
fn write_fake_engine(dir: &Path, tail: &str) -> PathBuf {
    let fake = dir.join("fake-engine");
    write_file(&fake, &format!("{FAKE_ENGINE}{tail}"), 0o755);
    fake
}

/// The stand-in does what s6-tlsd 2.8 does, seen from a fake engine: the argv
/// of s6tls_prep_tlsdio, the connection on fds 0 and 1, exactly three more
/// fds (two pipe ends and the notification pipe), the block applied to the
/// application's environment, the engine's variables removed unless -Z, and
/// the engine's exit code when the handshake fails.
#[test]
fn shim_plays_s6_tlsd() {
    let tmp = TempDir::new("shim");
    let dir = &tmp.0;
    let fake = write_fake_engine(
        dir,
        r#"if os.environ.get("FAKE_FAIL"):
    sys.exit(98)
os.write(notif, b"SSL_PROTOCOL=TLSv1.3\0SSL_PEER_CERT_HASH\0\0")
os.close(notif)
os.write(fdw, b"hello app\n")
os.close(fdw)
reply = os.read(fdr, 100)
with open(out + ".reply", "wb") as f:
    f.write(reply)
"#,
    );
    let app = dir.join("app");
    // The environment as the app got it (`env` under dash would not show
    // KEYFILE:name: dash drops such names).
    write_file(
        &app,
        "#!/bin/sh\n\
         read -r line\n\
         { echo \"read: $line\"; tr '\\0' '\\n' </proc/$$/environ; } > \"$FAKE_OUT.app\"\n\
         echo hello engine\n",
        0o755,
    );
    let tag = format!("{}.shim", std::process::id());
    let cases: &[(&[&str], &[&str], bool)] = &[
        (
            &["-S", "-J", "-y", "-K", "3000", "--sni", "-v", "2"],
            &[
                "-v", "2", "-d", "N", "-S", "-J", "-y", "-K", "3000", "--sni",
            ],
            false,
        ),
        (
            &["-Y", "-k", "2"],
            &["-d", "N", "-Y", "--mandatory-sni"],
            false,
        ),
        (
            &["-v1", "-K0", "-sj", "--mandatory-sni", "-k", "1"],
            &["-d", "N", "--sni"],
            false,
        ),
        (&["-SJyY", "-Z"], &["-d", "N", "-S", "-J", "-Y"], true),
    ];
    for (i, (args, expected, keep)) in cases.iter().enumerate() {
        let out = dir.join(format!("case{i}"));
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut cmd = Command::new(SHIM);
        cmd.args(*args)
            .arg("--")
            .arg(&app)
            .env("S6_TLSD_IO", &fake)
            .env("FAKE_OUT", &out)
            .env("CERTFILE", "/c.pem")
            .env("KEYFILE:www.example.com", "/k.pem")
            .env("SSL_PEER_CERT_HASH", "stale")
            .env(TAG, &tag)
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(
                theirs.try_clone().unwrap(),
            )))
            .stdout(Stdio::from(std::os::fd::OwnedFd::from(theirs)));
        let status = success(run_with_fds(cmd), "the shim").status;
        drop(ours);
        assert!(status.success());

        let report =
            fs::read_to_string(format!("{}.engine", out.display())).expect("the fake engine ran");
        let line = |what: &str| -> Vec<String> {
            let l = report.lines().find(|l| l.starts_with(&format!("{what} ")));
            l.unwrap_or(what)
                .split(' ')
                .skip(1)
                .map(str::to_string)
                .collect()
        };
        let argv = line("argv");
        let n = argv.len();
        let notif = argv[argv.iter().position(|a| a == "-d").expect("-d") + 1].clone();
        let (fdr, fdw) = (argv[n - 2].clone(), argv[n - 1].clone());
        let mut want: Vec<String> = expected.iter().map(|a| a.replace('N', &notif)).collect();
        want.extend(["--".to_string(), fdr.clone(), fdw.clone()]);
        assert_eq!(argv, want, "case {args:?}: the engine's argv");
        for (fd, kind) in [
            ("0", "socket"),
            ("1", "socket"),
            (&fdr, "pipe-r"),
            (&fdw, "pipe-w"),
            (&notif, "pipe-w"),
        ] {
            let line = format!("kind {fd} {kind}");
            assert!(
                report.lines().any(|l| l == line),
                "case {args:?}: want {line}:\n{report}"
            );
        }
        let mut open: Vec<u32> = line("open").iter().map(|f| f.parse().unwrap()).collect();
        let mut three: Vec<u32> = [&fdr, &fdw, &notif]
            .iter()
            .map(|f| f.parse().unwrap())
            .collect();
        open.sort();
        three.sort();
        assert_eq!(open, three, "case {args:?}: the engine's fds above 2");

        let app_out = fs::read_to_string(format!("{}.app", out.display())).expect("the app ran");
        let env: BTreeSet<&str> = app_out.lines().collect();
        assert!(env.contains("read: hello app"), "{app_out}");
        assert!(env.contains("SSL_PROTOCOL=TLSv1.3"), "{app_out}");
        assert!(
            !app_out.contains("SSL_PEER_CERT_HASH"),
            "a bare name unsets: {app_out}"
        );
        assert_eq!(env.contains("CERTFILE=/c.pem"), *keep, "{app_out}");
        assert_eq!(
            env.contains("KEYFILE:www.example.com=/k.pem"),
            *keep,
            "{app_out}"
        );
        let reply = format!("{}.reply", out.display());
        let deadline = Instant::now() + LIMIT;
        while fs::read_to_string(&reply).map_or(true, |r| r.is_empty()) {
            assert!(
                Instant::now() < deadline,
                "the engine never got the app's reply"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(fs::read_to_string(&reply).unwrap(), "hello engine\n");
    }

    // A failed handshake: no block, the app never runs, the engine's code.
    let out = dir.join("fail");
    let (_ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut cmd = Command::new(SHIM);
    cmd.args(["-K", "3000", "--"])
        .arg(&app)
        .env("S6_TLSD_IO", &fake)
        .env("FAKE_OUT", &out)
        .env("FAKE_FAIL", "1")
        .env(TAG, &tag)
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(
            theirs.try_clone().unwrap(),
        )))
        .stdout(Stdio::from(std::os::fd::OwnedFd::from(theirs)));
    assert_eq!(run_with_fds(cmd).status.code(), Some(98));
    assert!(!Path::new(&format!("{}.app", out.display())).exists());

    let deadline = Instant::now() + LIMIT;
    while !tagged(&tag).is_empty() {
        assert!(
            Instant::now() < deadline,
            "left:\n{}",
            describe(&tagged(&tag))
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The s6-ucspitlsd stand-in does what s6-ucspitlsd 2.8 does, seen from a
/// fake engine and a fake app: the app runs first, on the connection, with
/// SSLCTLFD, SSLREADFD and SSLWRITEFD and without the engine's variables;
/// `Y` execs the engine with `-d` on the control socket (shut down for
/// reading; the block reaches the app through it), `y` without `-d`; no
/// command means no engine and exit 0; anything else is refused (100).
#[test]
fn shim_plays_s6_ucspitlsd() {
    let tmp = TempDir::new("ucspi-shim");
    let dir = &tmp.0;
    let fake = write_fake_engine(
        dir,
        r#"if notif is not None:
    with open(out + ".engine", "a") as f:
        print("ctl-read", repr(os.read(notif, 1)), file=f)
    os.write(notif, b"SSL_PROTOCOL=TLSv1.3\0SSL_PEER_CERT_HASH\0\0")
    os.close(notif)
os.write(fdw, b"hello app\n")
os.close(fdw)
with open(out + ".reply", "wb") as f:
    f.write(os.read(fdr, 100))
"#,
    );
    let app = dir.join("app");
    write_file(
        &app,
        "#!/bin/sh\n\
         tr '\\0' '\\n' </proc/$$/environ > \"$FAKE_OUT.env\"\n\
         echo cleartext first\n\
         [ -n \"$FAKE_CMD\" ] || exit 0\n\
         printf %s \"$FAKE_CMD\" >&\"$SSLCTLFD\"\n\
         [ \"$FAKE_CMD\" = Y ] && tr '\\0' '\\n' <&\"$SSLCTLFD\" > \"$FAKE_OUT.block\"\n\
         read -r line <&\"$SSLREADFD\" || exit 0  # no engine: nothing to say\n\
         echo \"$line\" > \"$FAKE_OUT.app\"\n\
         echo hello engine >&\"$SSLWRITEFD\"\n",
        0o755,
    );
    let tag = format!("{}.ucspi-shim", std::process::id());
    for (cmd, args, want) in [
        (
            "Y",
            &["-S", "-y", "-K", "3000", "--sni", "-v", "2"][..],
            &["-v", "2", "-d", "N", "-S", "-y", "-K", "3000", "--sni"][..],
        ),
        (
            "y",
            &["-J", "-Y", "-k", "2"][..],
            &["-J", "-Y", "--mandatory-sni"][..],
        ),
        ("", &[][..], &[][..]),
        ("x", &[][..], &[][..]),
    ] {
        let out = dir.join(format!("case-{cmd}"));
        let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut c = Command::new(UCSPI_SHIM);
        c.args(args)
            .arg("--")
            .arg(&app)
            .env("S6_TLSD_IO", &fake)
            .env("FAKE_OUT", &out)
            .env("FAKE_CMD", cmd)
            .env("CERTFILE", "/c.pem")
            .env("KEYFILE:www.example.com", "/k.pem")
            .env(TAG, &tag)
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(
                theirs.try_clone().unwrap(),
            )))
            .stdout(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
            .stderr(Stdio::piped());
        let child = c.spawn().expect("run the s6-ucspitlsd shim");
        let mut first = [0u8; 16];
        ours.set_read_timeout(Some(LIMIT)).unwrap();
        ours.read_exact(&mut first).unwrap();
        assert_eq!(&first, b"cleartext first\n", "the app speaks first");
        let app_out = wait_output(child, "the s6-ucspitlsd shim");
        let deadline = Instant::now() + LIMIT;
        while !tagged(&tag).is_empty() {
            assert!(
                Instant::now() < deadline,
                "left:\n{}",
                describe(&tagged(&tag))
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(ours);
        let env = fs::read_to_string(format!("{}.env", out.display())).unwrap();
        for var in ["SSLCTLFD=", "SSLREADFD=", "SSLWRITEFD="] {
            assert!(env.lines().any(|l| l.starts_with(var)), "{var}\n{env}");
        }
        assert!(
            !env.contains("CERTFILE") && !env.contains("KEYFILE"),
            "{env}"
        );
        let report = fs::read_to_string(format!("{}.engine", out.display()));
        if cmd.is_empty() || cmd == "x" {
            assert!(report.is_err(), "no engine without a command");
            assert!(app_out.status.success(), "{cmd:?}: {app_out:?}");
            continue;
        }
        let report = report.expect("the fake engine ran");
        let argv: Vec<&str> = report.lines().next().unwrap().split(' ').skip(1).collect();
        let n = argv.len();
        let notif = argv.iter().position(|a| *a == "-d").map(|i| argv[i + 1]);
        let (fdr, fdw) = (argv[n - 2], argv[n - 1]);
        let mut expected: Vec<String> = want
            .iter()
            .map(|a| a.replace('N', notif.unwrap_or("")))
            .collect();
        expected.extend(["--".into(), fdr.into(), fdw.into()]);
        assert_eq!(argv, expected, "{cmd}: the engine's argv");
        let mut kinds = vec![
            ("0", "socket"),
            ("1", "socket"),
            (fdr, "pipe-r"),
            (fdw, "pipe-w"),
        ];
        kinds.extend(notif.map(|n| (n, "socket")));
        for (fd, kind) in kinds {
            let line = format!("kind {fd} {kind}");
            assert!(
                report.lines().any(|l| l == line),
                "{cmd}: want {line}:\n{report}"
            );
        }
        let mut open: Vec<&str> = report
            .lines()
            .find_map(|l| l.strip_prefix("open "))
            .unwrap()
            .split(' ')
            .collect();
        open.sort();
        let mut mine: Vec<&str> = [fdr, fdw].into_iter().chain(notif).collect();
        mine.sort();
        assert_eq!(open, mine, "{cmd}: the engine's fds beyond 2");
        let app_got = fs::read_to_string(format!("{}.app", out.display())).unwrap();
        assert_eq!(app_got, "hello app\n");
        let reply = fs::read_to_string(format!("{}.reply", out.display())).unwrap();
        assert_eq!(reply, "hello engine\n");
        if cmd == "Y" {
            assert!(
                report.contains("ctl-read b''"),
                "shut down for reading:\n{report}"
            );
            let block = fs::read_to_string(format!("{}.block", out.display())).unwrap();
            assert_eq!(block, "SSL_PROTOCOL=TLSv1.3\nSSL_PEER_CERT_HASH\n\n");
        }
    }
}

/// The stand-in proxy-server with `args`, `input` on its stdin (a pipe,
/// closed after it), and a program that prints the variables proxy-server
/// sets, sorted, then the rest of its stdin: exit code, stdout, stderr.
fn proxy_server(args: &[&str], input: &[u8]) -> (Option<i32>, String, String) {
    let show = "env | grep -E '^(PROTO|TCP|IPC|SSL_|tlsbak_)' | sort; echo --; cat";
    let mut cmd = Command::new(PROXY_SHIM);
    cmd.args(args)
        .args(["sh", "-c", show])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("TCPREMOTEIP", "192.0.2.99") // the balancer's, overridden
        .env("TCPREMOTEHOST", "balancer.example") // never unset
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run proxy-server-shim");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    drop(stdin);
    let out = wait_output(child, "proxy-server-shim");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // `proxy-server: pid N: ...`, as upstream names itself.
    let stderr = stderr
        .lines()
        .map(|l| match l.strip_prefix("proxy-server: pid ") {
            Some(rest) => format!("proxy-server: pid N{}\n", &rest[rest.find(':').unwrap()..]),
            None => format!("{l}\n"),
        })
        .collect();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

/// A PROXY v2 header: command, family and protocol, the address block.
fn v2(command: u8, family_proto: u8, block: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x20 | command);
    h.push(family_proto);
    h.extend((block.len() as u16).to_be_bytes());
    h.extend(block);
    h
}

/// A TLV of a v2 header.
fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
    let mut t = vec![kind];
    t.extend((value.len() as u16).to_be_bytes());
    t.extend(value);
    t
}

/// The stand-in reads PROXY v1 and v2 headers as proxy-server 2.8.0.1 does
/// (src/conn-tools/proxy-server.c): the same variables in skalibs' forms,
/// nothing read past the header, the same refusals and exit codes.
#[test]
fn shim_plays_proxy_server() {
    let tcp = |remote: &str, local: &str, rport: u16, lport: u16| {
        format!(
            "PROTO=TCP\nTCPLOCALIP={local}\nTCPLOCALPORT={lport}\nTCPREMOTEHOST=balancer.example\n\
TCPREMOTEIP={remote}\nTCPREMOTEPORT={rport}\n"
        )
    };
    let untouched = "TCPREMOTEHOST=balancer.example\nTCPREMOTEIP=192.0.2.99\n";
    let ok = |args: &[&str], input: &[u8], vars: &str| {
        let (code, out, err) = proxy_server(args, input);
        assert_eq!(
            (code, out.as_str(), err.as_str()),
            (Some(0), format!("{vars}--\nrest").as_str(), ""),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    };
    // v1, both protocols; the rest of the stream is left for the program.
    ok(
        &[],
        b"PROXY TCP4 192.0.2.7 198.51.100.1 40404 443\r\nrest",
        &tcp("192.0.2.7", "198.51.100.1", 40404, 443),
    );
    ok(
        &["-1"],
        b"PROXY TCP4 010.000.002.007 198.51.100.1 040404 443\r\nrest",
        &tcp("10.0.2.7", "198.51.100.1", 40404, 443),
    );
    ok(
        &[],
        b"PROXY TCP6 2001:DB8:0:0:1:0:0:9 ::ffff:192.0.2.7 1 65535\r\nrest",
        &tcp("2001:db8::1:0:0:9", "::ffff:c000:207", 1, 65535),
    );
    ok(&[], b"PROXY UNKNOWN\r\nrest", untouched);
    ok(&[], b"PROXY UNKNOWN ffff::1 ::1 1 2\r\nrest", untouched);
    // v2: IPv4, IPv6 with its TLVs, AF_UNIX, LOCAL.
    let mut inet = vec![192, 0, 2, 7, 127, 0, 0, 1];
    inet.extend(40404u16.to_be_bytes());
    inet.extend(443u16.to_be_bytes());
    let header = v2(1, 0x11, &inet);
    ok(
        &[],
        &[&header[..], b"rest"].concat(),
        &tcp("192.0.2.7", "127.0.0.1", 40404, 443),
    );
    ok(
        &["-2"],
        &[&header[..], b"rest"].concat(),
        &tcp("192.0.2.7", "127.0.0.1", 40404, 443),
    );
    let mut inet6 = [0u8; 36];
    inet6[0..2].copy_from_slice(&[0x20, 0x01]);
    inet6[15] = 9;
    inet6[31] = 1;
    inet6[32..34].copy_from_slice(&51000u16.to_be_bytes());
    inet6[34..36].copy_from_slice(&443u16.to_be_bytes());
    let ssl = [
        &[0x01, 0, 0, 0, 0][..],
        &tlv(0x21, b"TLSv1.3"),
        &tlv(0x22, b"alice"),
        &tlv(0x23, b"TLS_AES_256_GCM_SHA384"),
    ]
    .concat();
    let tlvs = [
        &tlv(0x04, b"\0\0")[..], // NOOP: ignored
        &tlv(0x02, b"www.example.com"),
        &tlv(0x20, &ssl),
    ]
    .concat();
    let header = v2(1, 0x21, &[&inet6[..], &tlvs].concat());
    let ssl_vars = |prefix: &str| {
        format!(
            "{prefix}SSL_CIPHER=TLS_AES_256_GCM_SHA384\n{prefix}SSL_PEER_CERT_CN=alice\n\
{prefix}SSL_PROTOCOL=TLSv1.3\n{prefix}SSL_TLS_SNI_SERVERNAME=www.example.com\n"
        )
    };
    let ip6 = tcp("2001::9", "::1", 51000, 443);
    let sorted = |text: String| {
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort();
        lines.iter().map(|l| format!("{l}\n")).collect::<String>()
    };
    ok(
        &[],
        &[&header[..], b"rest"].concat(),
        &sorted(format!("{ip6}{}", ssl_vars(""))),
    );
    ok(
        &["--before-tlsd"],
        &[&header[..], b"rest"].concat(),
        &sorted(format!("{ip6}{}", ssl_vars("tlsbak_"))),
    );
    let mut unix = vec![0u8; 216];
    unix[..5].copy_from_slice(b"/r.so");
    unix[108..113].copy_from_slice(b"/l.so");
    ok(
        &[],
        &[&v2(1, 0x31, &unix)[..], b"rest"].concat(),
        &format!("IPCLOCALPATH=/l.so\nIPCREMOTEPATH=/r.so\nPROTO=IPC\n{untouched}"),
    );
    ok(
        &[],
        &[&v2(0, 0x00, b"skip")[..], b"rest"].concat(),
        untouched,
    );
    // --after-tlsd reads nothing: each backup replaces its variable, a
    // variable without one goes.
    let mut cmd = Command::new(PROXY_SHIM);
    cmd.args([
        "--after-tlsd",
        "sh",
        "-c",
        "env | grep -E '^(SSL_|tlsbak_)' | sort",
    ])
    .env_clear()
    .env("PATH", "/usr/bin:/bin")
    .env("tlsbak_SSL_PROTOCOL", "TLSv1.2")
    .env("SSL_PROTOCOL", "TLSv1.3")
    .env("SSL_CIPHER", "TLS_AES_128_GCM_SHA256");
    let out = success(run(cmd), "proxy-server-shim --after-tlsd");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "SSL_PROTOCOL=TLSv1.2\n"
    );

    // Refusals: upstream's messages and exit codes, the program not run.
    let fails = |args: &[&str], input: &[u8], code: i32, message: &str| {
        let (got, out, err) = proxy_server(args, input);
        assert_eq!(
            (got, out.as_str(), err.as_str()),
            (
                Some(code),
                "",
                format!("proxy-server: pid N: fatal: {message}\n").as_str()
            ),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    };
    fails(&[], b"GET / HTTP/1.1\r\n\r\n", 1, "invalid magic");
    fails(
        &["-2"],
        b"PROXY TCP4 192.0.2.7 198.51.100.1 1 2\r\n",
        1,
        "invalid magic",
    );
    fails(&["-1"], &header, 1, "invalid magic");
    fails(
        &[],
        b"PROXY TCP5 192.0.2.7 198.51.100.1 1 2\r\n",
        1,
        "invalid protocol in PROXY line",
    );
    fails(
        &[],
        b"PROXY TCP4 192.0.2.777 198.51.100.1 1 2\r\n",
        1,
        "invalid remote ip in PROXY line",
    );
    fails(
        &[],
        b"PROXY TCP4 192.0.2.7 198.51.100.1 1 65536\r\n",
        1,
        "invalid PROXY line",
    );
    fails(
        &[],
        b"PROXY TCP4 192.0.2.7 198.51.100.1 1 2\n",
        1,
        "invalid PROXY line",
    );
    fails(
        &[],
        format!("PROXY TCP4 {}\r\n", "1".repeat(100)).as_bytes(),
        1,
        "PROXY line too long",
    );
    fails(
        &[],
        b"PROXY TCP4",
        111,
        "unable to read from stdin: Broken pipe",
    );
    fails(
        &[],
        &v2(1, 0x12, &inet),
        2,
        "unsupported transport protocol: datagram",
    );
    fails(&[], &v2(1, 0x11, &inet[..8]), 1, "invalid address length");
    fails(&[], &v2(2, 0x11, &inet), 1, "invalid command");
    fails(&[], &v2(1, 0x41, &inet), 1, "invalid family");
    fails(
        &[],
        &v2(1, 0x11, &[&inet[..], &tlv(0x21, b"TLSv1.3")].concat()),
        1,
        "invalid main extension type",
    );
    fails(
        &[],
        &v2(1, 0x11, &[&inet[..], &[0x02, 0, 9]].concat()),
        1,
        "invalid TLV encoding in extension",
    );
    // A header that never comes: -t ends the wait.
    let mut cmd = Command::new(PROXY_SHIM);
    cmd.args(["-t", "200", "true"]).stdin(Stdio::piped());
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run proxy-server-shim");
    let stdin = child.stdin.take(); // open, silent
    let out = wait_output(child, "proxy-server-shim -t 200");
    drop(stdin);
    assert_eq!(out.status.code(), Some(111));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .ends_with(": fatal: unable to read from stdin: Connection timed out\n"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // No program: the usage line.
    let out = run(Command::new(PROXY_SHIM));
    assert_eq!(out.status.code(), Some(100));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("proxy-server: usage: "));
}

/// README: ucspi-tcp's tcpserver, the stand-in s6-tlsd, the engine, the app;
/// curl gets what the README shows. Nothing goes to the log on the way.
#[test]
fn tcpserver_pipeline() {
    let mut lab = Lab::new("tcpserver");
    let port = lab.serve("tcpserver");
    lab.check("curl", port);
    lab.check("curl", port); // and the next connection too
    assert_eq!(lab.log_text(), "", "nothing logged");
    lab.finish();
}

/// README: the s6-tcpserver line, with `tcpserver -HRl0` in s6-tcpserver's
/// place (not packaged), so the same pipeline.
#[test]
fn s6_tcpserver_pipeline() {
    let mut lab = Lab::new("s6-tcpserver");
    let port = lab.serve("s6-tcpserver");
    lab.check("curl", port);
    assert_eq!(lab.log_text(), "", "nothing logged");
    lab.finish();
}

/// README: the s6-rc longrun, its execline run script and its envdir, under
/// s6-supervise. While a client holds a connection, the engine and the
/// application of that connection run as 65534:65534 with no other group,
/// and the keys they were started with are root's only (mode 600).
#[test]
fn s6_rc_longrun_service() {
    if !is_root() {
        eprintln!("not root: the service example drops privileges, skipped");
        return;
    }
    let mut lab = Lab::new("service");
    let port = free_port();
    success(
        run(lab.sh(&example("service"), Some(port))),
        "example service",
    );
    write_file(&lab.dir.join("https/run"), &example("run"), 0o755);
    let key = fs::metadata(lab.tls.join("default.key")).unwrap();
    assert_eq!((key.uid(), key.mode() & 0o777), (0, 0o600));

    let mut supervise = lab.command("s6-supervise", Some(port));
    supervise.arg("https");
    assert!(
        lab.start(supervise),
        "the service does not listen; log:\n{}",
        lab.log_text()
    );

    // A client that connects and waits: its connection's processes stay.
    let mut client = lab
        .command("openssl", None)
        .args(["s_client", "-quiet", "-connect"])
        .arg(format!("localhost:{port}"))
        .args(["-servername", "localhost", "-CAfile"])
        .arg(lab.tls.join("ca.pem"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_client");
    let deadline = Instant::now() + LIMIT;
    let (engine, app) = loop {
        let found = tagged(&lab.tag)
            .into_iter()
            .find(|&pid| comm(pid) == "s6-tlsd-io" && comm(ppid(pid)) == "app");
        if let Some(pid) = found {
            break (pid, ppid(pid));
        }
        assert!(
            Instant::now() < deadline,
            "no engine under an app; log:\n{}",
            lab.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    for (who, pid) in [("engine", engine), ("app", app)] {
        assert_eq!(
            status(pid, "Uid"),
            "65534 65534 65534 65534",
            "{who}'s uids"
        );
        assert_eq!(
            status(pid, "Gid"),
            "65534 65534 65534 65534",
            "{who}'s gids"
        );
        assert_eq!(status(pid, "Groups"), "65534", "{who}'s groups");
    }
    let mut stdin = client.stdin.take().unwrap();
    stdin.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let out = wait_output(client, "openssl s_client");
    drop(stdin);
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(answer.contains("SSL_PROTOCOL=TLSv1.3\n"), "{answer}");

    lab.check("curl", port);
    // The configuration checked, then the service restarted on it: it
    // serves again (the new s6-tcpserver takes a moment to listen).
    let out = success(run(lab.sh(&example("check"), Some(port))), "example check");
    assert_output("check", &out);
    let mut tries = 0;
    while !run(lab.sh(&example("curl"), Some(port))).status.success() {
        tries += 1;
        assert!(
            tries < 200,
            "no answer after the restart; log:\n{}",
            lab.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    lab.check("curl", port);
    // Down, as s6-rc would bring it down; s6-supervise then exits (-x).
    lab.svc("-xd", "https");
    let deadline = Instant::now() + LIMIT;
    while lab.servers[0].try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "s6-supervise did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    lab.finish();
}

/// README: SNI with an envdir of named pairs; openssl s_client gets one
/// certificate per name, and the default one for an unknown name.
#[test]
fn sni_several_names() {
    let mut lab = Lab::new("sni");
    let port = lab.serve("sni");
    lab.check("sni-check", port);
    lab.finish();
}

/// README: mutual TLS with a CADIR. curl with alice's certificate gets in,
/// with her subject and the SHA-256 of her certificate; without one, or with
/// one from the servers' CA, it is refused and the app never runs.
#[test]
fn mutual_tls_with_cadir() {
    let mut lab = Lab::new("mtls");
    let port = lab.serve("mtls");
    let out = lab.check("mtls-check", port);
    let hash = success(
        run(lab.sh(
            "openssl x509 -in $TLS/alice.pem -outform DER | sha256sum",
            None,
        )),
        "sha256sum",
    );
    let hash = String::from_utf8_lossy(&hash.stdout);
    let hash = hash.split_whitespace().next().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains(&format!("SSL_PEER_CERT_HASH=SHA256:{hash}\n")),
        "{printed}"
    );
    lab.check("mtls-refused", port);
    // README: the client CA revokes mallory; the same server refuses him
    // from the next connection on, and still serves alice.
    success(run(lab.sh(&example("crl"), None)), "README example crl");
    lab.check("crl-check", port);
    let serial = success(
        run(lab.sh("openssl x509 -in $TLS/mallory.pem -noout -serial", None)),
        "openssl x509 -serial",
    );
    let serial = String::from_utf8_lossy(&serial.stdout);
    let serial = serial.trim().trim_start_matches("serial=");
    let revoked = format!("the certificate with serial {serial} is revoked");
    let log = lab.log_once_it_has(&[
        &revoked,
        "peer sent no certificates",
        "invalid peer certificate: UnknownIssuer",
    ]);
    assert!(
        log.contains(&format!(
            "invalid peer certificate: Revoked: the certificate with serial {serial} is revoked"
        )),
        "{log}"
    );
    assert!(log.contains("peer sent no certificates"), "{log}");
    assert!(
        log.contains("invalid peer certificate: UnknownIssuer"),
        "{log}"
    );
    lab.finish();
}

/// README: TLS_ALPN=http/1.1 in front of the HTTP/1.x app: curl gets
/// http/1.1 and the app sees it; an IMAP client is refused with the alert.
#[test]
fn alpn_one_protocol() {
    let mut lab = Lab::new("alpn");
    let port = lab.serve("alpn");
    lab.check("alpn-check", port);
    let log = lab.log_once_it_has(&["no application protocol in common"]);
    assert!(
        log.contains(
            "no application protocol in common: the client offers \"imap\", the server speaks \
http/1.1"
        ),
        "{log}"
    );
    lab.finish();
}

/// README: the toy SMTP server under the s6-ucspitlsd stand-in; openssl
/// s_client -starttls smtp and curl --ssl-reqd send a message over TLS.
#[test]
fn starttls_under_s6_ucspitlsd() {
    let mut lab = Lab::new("starttls");
    write_file(&lab.dir.join("smtp-app"), &example("smtp-app"), 0o755);
    let port = lab.serve("starttls");
    lab.check("starttls-check", port);
    assert_eq!(lab.log_text(), "", "nothing logged");
    lab.finish();
}

/// README: the ticket key rotation as an s6 longrun under s6-supervise,
/// the server with TLS_TICKET_KEYFILE, and s_client resuming a saved
/// session in a new engine; then two rotations (`s6-svc -r`, which ends the
/// sleep): the session resumes after the first, not after the second.
#[test]
fn ticket_rotation_under_s6_supervise() {
    let mut lab = Lab::new("tickets");
    let keys = lab.tls.join("tickets");
    fs::create_dir_all(lab.dir.join("tickets")).unwrap();
    write_file(&lab.dir.join("tickets/run"), &example("rotate"), 0o755);
    let mut supervise = lab.command("s6-supervise", None);
    supervise
        .arg("tickets")
        .stdin(Stdio::null())
        .process_group(0);
    lab.servers
        .push(supervise.spawn().expect("start s6-supervise"));
    // Each rotation: a new file (a new inode), the new key first, the
    // previous one after it.
    let log = lab.log.clone();
    let rotated = |before: Option<&[u8]>| -> Vec<u8> {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Ok(now) = fs::read(&keys) {
                let done = match before {
                    None => now.len() == 32,
                    Some(old) => now.len() == 64 && now[32..] == old[..32],
                };
                if done {
                    let meta = fs::metadata(&keys).unwrap();
                    assert_eq!(meta.mode() & 0o777, 0o600);
                    return now;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no rotation; log:\n{}",
                fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let first = rotated(None);
    let port = lab.serve("tickets");
    lab.check("resume-check", port);
    lab.svc("-r", "tickets");
    let second = rotated(Some(&first));
    assert_eq!(lab.resume_again(port), "Reused\n");
    lab.svc("-r", "tickets");
    rotated(Some(&second));
    assert_eq!(lab.resume_again(port), "New\n");
    lab.svc("-xd", "tickets");
    lab.finish();
}

/// Waits until `file` holds `want(content)`, at most LIMIT.
fn wait_for_file(file: &Path, what: &str, want: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Ok(now) = fs::read(file) {
            if want(&now) {
                return now;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} not there",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// README: two back ends behind haproxy (TCP mode, `send-proxy-v2`), each
/// `proxy-server s6-tlsd app` under the super-server with its own copy of
/// the keys, and of the ticket key file that the key machine's longrun
/// rotates and copies to both with rsync. The application and the
/// engine's log see the port curl connected from, not haproxy's; a session
/// saved on one back end resumes on the other, and still after a rotation.
#[test]
fn two_back_ends_behind_haproxy() {
    let Some(haproxy) = installed("haproxy") else {
        eprintln!(
            "haproxy is not installed (.ci/test installs it): the load balancer example skipped"
        );
        return;
    };
    if installed("rsync").is_none() {
        eprintln!(
            "rsync is not installed (.ci/test installs it): the load balancer example skipped"
        );
        return;
    }
    let mut lab = Lab::new("balancer");
    // Each back end's /etc/tls: the same certificate and key, copied.
    let backends: Vec<PathBuf> = ["a", "b"].iter().map(|b| lab.dir.join(b)).collect();
    for tls in &backends {
        fs::create_dir_all(tls).unwrap();
        for file in ["default.pem", "default.key"] {
            fs::copy(lab.tls.join(file), tls.join(file)).unwrap();
        }
    }
    // The key machine (the lab's $TLS) makes the ticket keys and copies
    // them to both before the back ends start.
    fs::create_dir_all(lab.dir.join("tickets")).unwrap();
    write_file(
        &lab.dir.join("tickets/run"),
        &example("rotate-everywhere"),
        0o755,
    );
    let list: Vec<String> = backends.iter().map(|b| b.display().to_string()).collect();
    let mut supervise = lab.command("s6-supervise", None);
    supervise
        .arg("tickets")
        .env("BACKENDS", list.join(" "))
        .stdin(Stdio::null())
        .process_group(0);
    lab.servers
        .push(supervise.spawn().expect("start s6-supervise"));
    let keys = wait_for_file(&lab.tls.join("tickets"), "the first key", |k| k.len() == 32);
    for tls in &backends {
        wait_for_file(&tls.join("tickets"), "the first copy", |k| k == keys);
    }
    // The back ends, each logging to its own file.
    let mut ports = Vec::new();
    for tls in &backends {
        let log = tls.with_extension("log");
        let port = lab
            .try_serve(Some(&log), |lab, port| {
                let mut cmd = lab.sh(&example("backend"), Some(port));
                cmd.env("TLS", tls);
                cmd
            })
            .unwrap_or_else(|| panic!("a back end does not listen:\n{}", text(&log)));
        ports.push(port);
    }
    // haproxy in front.
    write_file(&lab.dir.join("haproxy.cfg"), &example("haproxy.cfg"), 0o644);
    let dir = haproxy.parent().unwrap().display().to_string();
    let front = lab
        .try_serve(None, |lab, port| {
            let mut cmd = lab.sh(&example("balancer"), Some(port));
            let path = cmd
                .get_envs()
                .find(|(k, _)| *k == "PATH")
                .and_then(|(_, v)| v);
            let path = format!("{}:{dir}", path.unwrap().to_string_lossy());
            cmd.env("PATH", path)
                .env("A", format!("127.0.0.1:{}", ports[0]))
                .env("B", format!("127.0.0.1:{}", ports[1]));
            cmd
        })
        .unwrap_or_else(|| panic!("haproxy does not listen; log:\n{}", lab.log_text()));

    // The application sees the port curl connected from.
    let out = lab.check("balancer-check", front);
    let printed = String::from_utf8_lossy(&out.stdout);
    let port_of = |prefix: &str| {
        printed
            .lines()
            .find_map(|l| l.split(prefix).nth(1))
            .and_then(|p| p.split_whitespace().next())
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or_else(|| panic!("no {prefix:?} in {printed}"))
    };
    let client = port_of("curl: port ");
    assert_eq!(port_of("TCPREMOTEPORT="), client, "{printed}");
    // A session saved through one back end resumes through the other.
    lab.check("resume-check", front);
    let logs: Vec<String> = backends
        .iter()
        .map(|tls| {
            let log = tls.with_extension("log");
            let deadline = Instant::now() + LIMIT;
            loop {
                let text = text(&log);
                if text.matches("connection ended").count() >= 1 || Instant::now() > deadline {
                    break text;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .collect();
    let all = logs.concat();
    assert!(
        all.contains(&format!("127.0.0.1_{client}: handshake complete")),
        "{all}"
    );
    let handshakes = |log: &str| log.matches("handshake complete").count();
    let resumed = |log: &str| log.matches(" resumed\n").count();
    assert_eq!(
        (handshakes(&all), resumed(&all)),
        (3, 1),
        "three connections, one of them resumed:\n{all}"
    );
    // roundrobin: curl and the resumed one on one back end, the saved
    // session's first connection on the other.
    let (with, without) = match resumed(&logs[0]) {
        1 => (&logs[0], &logs[1]),
        _ => (&logs[1], &logs[0]),
    };
    assert_eq!(
        (handshakes(with), handshakes(without)),
        (2, 1),
        "the session was saved on one back end and resumed on the other:\n{all}"
    );

    // A rotation reaches both back ends; the saved session still resumes.
    lab.svc("-r", "tickets");
    let rotated = wait_for_file(&lab.tls.join("tickets"), "the rotation", |k| {
        k.len() == 64 && k[32..] == keys[..]
    });
    for tls in &backends {
        wait_for_file(&tls.join("tickets"), "the rotated copy", |k| k == rotated);
        let meta = fs::metadata(tls.join("tickets")).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600, "{}", tls.display());
    }
    for _ in 0..2 {
        // Once through each back end.
        assert_eq!(lab.resume_again(front), "Reused\n");
    }
    lab.svc("-xd", "tickets");
    lab.finish();
}

fn text(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// README: `make install DESTDIR=$pkgdir PREFIX=/usr` installs the binary and
/// the man page, nothing else; a second install over a running engine
/// replaces the file (a new inode) and leaves that engine running.
#[test]
fn make_install_into_destdir() {
    let tmp = TempDir::new("install");
    let dir = &tmp.0;
    // A target directory where `make` finds a release build: this one.
    let release = dir.join("target").join("release");
    fs::create_dir_all(&release).unwrap();
    fs::copy(BIN, release.join("s6-tlsd-io")).unwrap();
    let pkgdir = dir.join("pkg");
    let install = || {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(example("install"))
            .current_dir(ROOT)
            .env("pkgdir", &pkgdir)
            .env("CARGO_TARGET_DIR", dir.join("target"))
            .env_remove("MAKEFLAGS")
            .env_remove("MFLAGS")
            .env_remove("MAKELEVEL");
        success(run(cmd), "README example install");
    };
    install();

    let bin = pkgdir.join("usr/bin/s6-tlsd-io");
    let man = pkgdir.join("usr/share/man/man1/s6-tlsd-io.1");
    let mut files = Vec::new();
    let mut todo = vec![pkgdir.clone()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    assert_eq!(files, vec![bin.clone(), man.clone()]);
    assert_eq!(fs::metadata(&bin).unwrap().mode() & 0o7777, 0o755);
    assert_eq!(fs::metadata(&man).unwrap().mode() & 0o7777, 0o644);
    assert!(
        fs::read(&bin).unwrap() == fs::read(BIN).unwrap(),
        "the binary"
    );
    assert_eq!(
        fs::read(&man).unwrap(),
        fs::read(Path::new(ROOT).join("doc/s6-tlsd-io.1")).unwrap()
    );
    let usage = run(Command::new(&bin));
    assert_eq!(usage.status.code(), Some(100));
    assert!(String::from_utf8_lossy(&usage.stderr).starts_with("s6-tlsd-io: usage: "));

    // The installed engine, waiting for a ClientHello that never comes.
    let keys = success(
        run({
            let mut c = Command::new("openssl");
            c.args(["req", "-x509", "-nodes", "-newkey", "ec", "-pkeyopt"])
                .args([
                    "ec_paramgen_curve:P-256",
                    "-subj",
                    "/CN=localhost",
                    "-keyout",
                ])
                .arg(dir.join("key.pem"))
                .arg("-out")
                .arg(dir.join("cert.pem"));
            c
        }),
        "openssl req",
    );
    drop(keys);
    let mut running = Command::new("sh")
        .arg("-c")
        .arg("exec 3</dev/null 4>/dev/null; exec \"$0\" -- 3 4")
        .arg(&bin)
        .env("CERTFILE", dir.join("cert.pem"))
        .env("KEYFILE", dir.join("key.pem"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        running.try_wait().unwrap().is_none(),
        "the installed engine waits"
    );
    let before = fs::metadata(&bin).unwrap().ino();
    install();
    assert_ne!(
        fs::metadata(&bin).unwrap().ino(),
        before,
        "a new file, renamed in place"
    );
    assert!(
        running.try_wait().unwrap().is_none(),
        "the running engine is untouched"
    );
    drop(running.stdin.take()); // EOF before a ClientHello: it exits
    let mut err = String::new();
    running
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = running.wait().unwrap();
    assert_eq!(status.code(), Some(98), "{err}");
}
