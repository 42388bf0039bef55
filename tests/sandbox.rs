//! Confinement (src/sandbox.rs): the engine runs under a seccomp filter
//! once the handshake starts, still relays everything, and a confined
//! process can do nothing but relay. Some tests need a process of their own
//! to confine or to put in an outer sandbox: they re-run this test binary
//! with CHILD set, and the child runs only the function named there.

mod common;

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use s6_tlsd_io::log::Log;
use s6_tlsd_io::sandbox;

const CHILD: &str = "S6_TLSD_IO_SANDBOX_TEST_CHILD";

fn seccomp_fields(e: &Engine) -> (String, String) {
    let field = |name| e.proc_status(name).expect("field in /proc/PID/status");
    (field("Seccomp"), field("NoNewPrivs"))
}

/// Echo both ways, then close_notify and fdr's EOF: exit 0, nothing said.
fn echo_and_close(mut e: Engine, mut tls: Tls) {
    tls.write_all(b"ping").unwrap();
    assert_eq!(read_app(&mut e, 4), b"ping");
    e.app_tx().write_all(b"pong").unwrap();
    let mut buf = [0u8; 4];
    tls.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pong");
    tls.conn.send_close_notify();
    tls.conn.complete_io(&mut tls.sock).unwrap();
    e.close_app_tx();
    let exit = e.wait_exit();
    assert_eq!(exit.code, Some(0), "stderr: {}", exit.stderr);
    assert_eq!(exit.stderr, "");
}

#[test]
fn the_engine_relays_under_a_seccomp_filter() {
    for config in [tls13(), tls12()] {
        let e = spawn().start();
        let tls = connect(&e, config, "localhost");
        let (seccomp, nnp) = seccomp_fields(&e);
        assert_eq!(seccomp, "2", "mode 2 is a filter");
        assert_eq!(nnp, "1");
        assert_eq!(e.proc_status("Seccomp_filters").as_deref(), Some("1"));
        assert_eq!(e.proc_status("Threads").as_deref(), Some("1"));
        echo_and_close(e, tls);
    }
}

#[test]
fn a_confined_engine_survives_being_stopped_and_continued() {
    // Job control or strace -p interrupts the poll(2) the engine sleeps in;
    // the kernel resumes it through restart_syscall, which must be allowed.
    let e = spawn().start();
    let tls = connect(&e, tls13(), "localhost");
    let pid = e.pid() as libc::pid_t;
    std::thread::sleep(Duration::from_millis(100));
    for signal in [libc::SIGSTOP, libc::SIGCONT] {
        // SAFETY: signals our own child.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
        std::thread::sleep(Duration::from_millis(100));
    }
    echo_and_close(e, tls);
}

#[test]
fn the_opt_out_variable_leaves_the_engine_unconfined() {
    let e = spawn().set(sandbox::OPT_OUT, "1").start();
    let tls = connect(&e, tls13(), "localhost");
    assert_eq!(seccomp_fields(&e), ("0".into(), "0".into()));
    echo_and_close(e, tls);
    // Empty or 0 mean "not set".
    for value in ["", "0"] {
        let e = spawn().set(sandbox::OPT_OUT, value).start();
        let tls = connect(&e, tls13(), "localhost");
        assert_eq!(seccomp_fields(&e).0, "2", "{}={value:?}", sandbox::OPT_OUT);
        echo_and_close(e, tls);
    }
}

#[test]
fn megabytes_each_way_and_every_log_line_get_through_confined() {
    const SIZE: usize = 4 << 20;
    let mut e = spawn().args(&["-v", "3"]).start();
    let mut tls = connect(&e, tls13(), "localhost");
    assert_eq!(seccomp_fields(&e).0, "2");
    let up = pattern(SIZE, 7);
    let down = pattern(SIZE, 8);

    let client = std::thread::spawn(move || {
        tls.write_all(&up).unwrap();
        tls.flush().unwrap();
        tls
    });
    let got_up = read_app(&mut e, SIZE);
    let mut tls = client.join().unwrap();
    assert_eq!(sha256(&got_up), sha256(&pattern(SIZE, 7)), "client -> app");

    let mut app_tx = e.app_tx.take().unwrap();
    let app = std::thread::spawn(move || app_tx.write_all(&down).unwrap());
    let mut got_down = vec![0; SIZE];
    tls.read_exact(&mut got_down).unwrap();
    app.join().unwrap();
    assert_eq!(
        sha256(&got_down),
        sha256(&pattern(SIZE, 8)),
        "app -> client"
    );

    // fdr is closed (the app thread dropped it): `-s` half-closes. The
    // client's FIN then ends the other direction.
    let (rest, end) = read_to_end_tls(&mut tls);
    assert!(rest.is_empty());
    assert!(end.is_err(), "bare FIN expected, got close_notify");
    half_close(&tls.sock);
    let exit = e.wait_exit();
    assert_eq!(exit.code, Some(0), "stderr: {}", exit.stderr);
    assert!(exit.stderr.contains("s6-tlsd-io: info: handshake complete"));
    assert!(exit.stderr.contains("s6-tlsd-io: debug: inbound: closed"));
    assert!(exit
        .stderr
        .contains("s6-tlsd-io: info: connection ended after"));
    assert!(!exit.stderr.contains("warning"), "{}", exit.stderr);
}

#[test]
fn fatal_errors_are_still_reported_confined() {
    // -J and a bare FIN: exit 98 with its message, written after confinement.
    let mut e = spawn().args(&["-J"]).start();
    let tls = connect(&e, tls13(), "localhost");
    assert_eq!(seccomp_fields(&e).0, "2");
    half_close(&tls.sock);
    let exit = e.wait_exit();
    assert_eq!(exit.code, Some(98));
    assert_eq!(
        exit.stderr,
        "s6-tlsd-io: fatal: remote closed connection without a close_notify\n"
    );
}

// ------------------------------------------------------ child processes

/// Runs `which` in a fresh process (this test binary again), returns how it
/// ended and what it printed. Fails the calling test after 30 s.
fn in_child(which: &str) -> Output {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD, which)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("child {which} still running after 30 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// Not a test of its own: the entry point of the child processes above.
#[test]
fn child_entry() {
    match std::env::var(CHILD).as_deref() {
        Ok("probe") => probe(),
        Ok("segv") => segv(),
        Ok(which @ "seccomp-refused") => no_seccomp(which, libc::EPERM, libc::EPERM),
        Ok(which @ "seccomp-missing") => no_seccomp(which, libc::ENOSYS, libc::EINVAL),
        _ => {}
    }
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

#[test]
fn a_confined_process_can_only_relay_and_aborts_cleanly() {
    let out = in_child("probe");
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "status {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        text(&out.stderr)
    );
    assert!(stdout.contains("probe: all refused\n"), "{stdout}");
}

#[test]
fn a_crash_while_confined_kills_the_process_instead_of_looping() {
    let out = in_child("segv");
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGSEGV),
        "status {:?}\nstderr:\n{}",
        out.status,
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("segv: confined\n"));
}

/// Confinement fails closed: an outer sandbox that refuses filters, or a
/// kernel without them, stops the engine at start-up (exit 111, the call
/// and the reason), before it reads a byte of the client's; the opt-out
/// still runs it, unconfined.
#[test]
fn a_filter_that_cannot_be_installed_is_a_start_up_error_unless_opted_out() {
    for which in ["seccomp-refused", "seccomp-missing"] {
        let out = in_child(which);
        assert!(
            out.status.success(),
            "{which}: status {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(text(&out.stdout).contains(&format!("{which}: done\n")));
    }
}

/// One line on stdout with a single write(2): no lock, no buffer.
fn say(line: &str) {
    let line = format!("{line}\n");
    // SAFETY: writing a valid buffer to fd 1.
    unsafe { libc::write(1, line.as_ptr().cast(), line.len()) };
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A system call's result and errno, read at once.
fn outcome(r: impl Into<i64>) -> (i64, i32) {
    (r.into(), errno())
}

/// What must fail with EPERM once confined, and what must still work.
fn probe() {
    sandbox::confine(&Log::new(2), None).expect("confine");
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let rwx = rw | libc::PROT_EXEC;
    let anon = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
    let argv = [c"/bin/true".as_ptr(), std::ptr::null()];
    // SAFETY: each call fails (the point), or else has harmless effects on
    // valid arguments: a forked child exits at once, signal 0 is a probe.
    let refused = unsafe {
        let exec_page = libc::mmap(std::ptr::null_mut(), 4096, rwx, anon, -1, 0);
        let exec_page = outcome(if exec_page == libc::MAP_FAILED { -1 } else { 0 });
        let page = libc::mmap(std::ptr::null_mut(), 4096, rw, anon, -1, 0);
        [
            ("open", outcome(libc::open(c"/etc/hostname".as_ptr(), 0))),
            (
                "openat",
                outcome(libc::openat(libc::AT_FDCWD, c".".as_ptr(), 0)),
            ),
            (
                "socket",
                outcome(libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0)),
            ),
            (
                "socket unix",
                outcome(libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0)),
            ),
            ("execv", outcome(libc::execv(argv[0], argv.as_ptr()))),
            (
                "ptrace",
                outcome(libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0)),
            ),
            ("kill", outcome(libc::kill(1, 0))),
            ("fcntl F_DUPFD", outcome(libc::fcntl(1, libc::F_DUPFD, 10))),
            ("dup", outcome(libc::dup(1))),
            ("pipe", outcome(libc::pipe([0; 2].as_mut_ptr()))),
            (
                "fork",
                match libc::fork() {
                    0 => libc::_exit(0),
                    pid => outcome(pid),
                },
            ),
            ("setuid", outcome(libc::syscall(libc::SYS_setuid, 0))),
            ("chdir", outcome(libc::chdir(c"/".as_ptr()))),
            ("mmap PROT_EXEC", exec_page),
            ("mprotect", outcome(libc::mprotect(page, 4096, rwx))),
            (
                "tgkill SIGKILL",
                outcome(libc::syscall(
                    libc::SYS_tgkill,
                    libc::getpid(),
                    libc::gettid(),
                    libc::SIGKILL,
                )),
            ),
        ]
    };
    let mut wrong: Vec<String> = refused
        .iter()
        .filter(|(_, result)| *result != (-1, libc::EPERM))
        .map(|(what, (r, e))| format!("{what} returned {r}, errno {e}"))
        .collect();
    // What the relay and the crypto need still works.
    // SAFETY: valid buffers and descriptors.
    unsafe {
        if libc::fcntl(1, libc::F_GETFL) < 0 {
            wrong.push(format!("fcntl F_GETFL: errno {}", errno()));
        }
        let mut buf = [0u8; 32];
        if libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) != 32 {
            wrong.push(format!("getrandom: errno {}", errno()));
        }
        let mut ts: libc::timespec = std::mem::zeroed();
        let ts_ptr: *mut libc::timespec = &mut ts;
        if libc::syscall(libc::SYS_clock_gettime, libc::CLOCK_MONOTONIC, ts_ptr) != 0 {
            wrong.push(format!("clock_gettime: errno {}", errno()));
        }
    }
    let _ = Instant::now();
    let _ = aws_lc_rs::rand::fill(&mut [0u8; 64]);
    let big = vec![1u8; 8 << 20]; // past malloc's mmap threshold
    std::hint::black_box(&big);
    drop(big);
    if wrong.is_empty() {
        say("probe: all refused");
    }
    for w in wrong {
        say(&format!("probe: WRONG {w}"));
    }
    // panic=abort in release: abort() must still end in SIGABRT.
    std::process::abort();
}

/// A wild write once confined: std's SIGSEGV handler must be able to give
/// the signal back to the kernel (sigaction), or it would fault for ever.
fn segv() {
    sandbox::confine(&Log::new(2), None).expect("confine");
    say("segv: confined");
    // SAFETY: not safe at all: the point is to crash.
    unsafe { std::ptr::write_volatile(16 as *mut u8, 1) };
    say("segv: still alive");
}

/// An outer filter answers seccomp(2) with `seccomp` and
/// prctl(PR_SET_SECCOMP) with `prctl`: EPERM for both, as a container's
/// sandbox that forbids filters; ENOSYS and EINVAL, as a kernel built
/// without them. Then the real engine runs in it. `which`: the child's
/// name, said at the end.
fn no_seccomp(which: &str, seccomp: i32, prctl: i32) {
    outer_sandbox(seccomp, prctl);
    let (call, errno) = match seccomp {
        libc::ENOSYS => ("prctl(PR_SET_SECCOMP)", prctl),
        _ => ("seccomp", seccomp),
    };
    let reason = std::io::Error::from_raw_os_error(errno).to_string();
    let reason = reason.split(" (os error").next().unwrap();
    for verbosity in ["0", "1", "2"] {
        let (code, stderr) = startup_failure(&["-v", verbosity], key_env(default_keys()));
        assert_eq!(
            (code, stderr),
            (
                Some(111),
                fatal(&format!("unable to confine the process: {call}: {reason}"))
            ),
            "-v {verbosity}"
        );
    }
    // The opt-out: it relays, unconfined but for the outer filter, and
    // says nothing of it.
    let e = spawn().set(sandbox::OPT_OUT, "1").start();
    let tls = connect(&e, tls13(), "localhost");
    assert_eq!(e.proc_status("Seccomp_filters").as_deref(), Some("1"));
    echo_and_close(e, tls);
    say(&format!("{which}: done"));
}

fn outer_sandbox(seccomp: i32, prctl: i32) {
    let ins = |code: u32, k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let ld = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let jeq = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    let ret = libc::BPF_RET | libc::BPF_K;
    let errno = |e: i32| libc::SECCOMP_RET_ERRNO | e as u32;
    let filter = [
        ins(ld, 0, 0, 0),
        ins(jeq, libc::SYS_seccomp as u32, 0, 1),
        ins(ret, errno(seccomp), 0, 0),
        ins(jeq, libc::SYS_prctl as u32, 0, 3),
        ins(ld, 16, 0, 0),
        ins(jeq, libc::PR_SET_SECCOMP as u32, 0, 1),
        ins(ret, errno(prctl), 0, 0),
        ins(ret, libc::SECCOMP_RET_ALLOW, 0, 0),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: prctl with a valid program that outlives the call.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog),
            0
        );
    }
}
