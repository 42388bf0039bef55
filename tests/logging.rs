//! Verbosity (`-v`): what each level prints, and that logging never stalls
//! the tunnel.

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use common::*;

/// One echo each way, then both sides close; returns stderr.
fn session(args: &[&str]) -> String {
    let mut e = spawn().args(args).start();
    let mut tls = connect(&e, tls13(), "localhost");
    tls.write_all(b"ping").unwrap();
    assert_eq!(read_app(&mut e, 4), b"ping");
    e.app_tx().write_all(b"pong!").unwrap();
    let mut buf = [0u8; 5];
    tls.read_exact(&mut buf).unwrap();
    tls.conn.send_close_notify();
    tls.conn.complete_io(&mut tls.sock).unwrap();
    e.close_app_tx();
    let exit = e.wait_exit();
    assert_eq!(exit.code, Some(0), "{}", exit.stderr);
    exit.stderr
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
