//! Verbosity (`-v`): what each level prints, and that logging never stalls
//! the tunnel.

mod common;

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
