//! Spec section 6: the relay after the handshake, and what happens at each
//! end of the tunnel. "Client" is the in-process rustls client on the TCP
//! socket; "app" is the test playing the application on fdr/fdw.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::Duration;

use common::*;

const SHORT: Duration = Duration::from_millis(300);

/// Everything the app receives until fdw's EOF.
fn app_read_to_end(e: &mut Engine) -> Vec<u8> {
    let mut out = Vec::new();
    e.app_rx().read_to_end(&mut out).expect("read fdw");
    out
}

fn client_read_exact(tls: &mut Tls, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    tls.read_exact(&mut buf).expect("client read");
    buf
}

/// A TCP FIN from the client, without close_notify.
fn client_fin(tls: &Tls) {
    half_close(&tls.sock);
}

/// What the client sees at the end of the server's data: Ok(()) for
/// close_notify, UnexpectedEof for a bare FIN.
fn client_end(tls: &mut Tls) -> Result<(), ErrorKind> {
    let (rest, end) = read_to_end_tls(tls);
    assert!(rest.is_empty(), "unexpected data: {rest:?}");
    end.map_err(|e| e.kind())
}

fn raw_eof(sock: &TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!((&*sock).read(&mut b), Ok(0))
}

#[test]
fn echo_over_tls13_and_tls12() {
    for config in [tls13(), tls12()] {
        let mut e = spawn().start();
        let mut tls = connect(&e, config, "localhost");
        tls.write_all(b"hello engine").unwrap();
        assert_eq!(read_app(&mut e, 12), b"hello engine");
        e.app_tx().write_all(b"hello client").unwrap();
        assert_eq!(client_read_exact(&mut tls, 12), b"hello client");
        client_close_notify(&mut tls);
        e.close_app_tx();
        assert_exit(&mut e, 0, "");
    }
}

#[test]
fn local_eof_without_close_notify_half_closes_and_client_can_still_send() {
    for config in [tls13(), tls12()] {
        let mut e = spawn().args(&["-s"]).start();
        let mut tls = connect(&e, config, "localhost");
        e.app_tx().write_all(b"bye").unwrap();
        e.close_app_tx();
        assert_eq!(client_read_exact(&mut tls, 3), b"bye");
        assert_eq!(client_end(&mut tls), Err(ErrorKind::UnexpectedEof));
        // The client can still send, and the app still receives.
        tls.write_all(b"more").unwrap();
        assert_eq!(read_app(&mut e, 4), b"more");
        assert!(e.still_running_after(SHORT));
        client_fin(&tls);
        assert_eq!(app_read_to_end(&mut e), b"");
        assert_exit(&mut e, 0, "");
    }
}

#[test]
fn local_eof_with_close_notify_sends_alert_then_fin_and_keeps_delivering() {
    let mut e = spawn().args(&["-S"]).start();
    let mut tls = connect(&e, tls13(), "localhost");
    e.app_tx().write_all(b"bye").unwrap();
    e.close_app_tx();
    assert_eq!(client_read_exact(&mut tls, 3), b"bye");
    assert_eq!(client_end(&mut tls), Ok(()));
    assert!(raw_eof(&tls.sock), "FIN follows close_notify");
    // TLS 1.3: close_notify closes one direction only.
    tls.write_all(b"late").unwrap();
    assert_eq!(read_app(&mut e, 4), b"late");
    client_fin(&tls);
    assert_eq!(app_read_to_end(&mut e), b"");
    assert_exit(&mut e, 0, "");
}

#[test]
fn client_close_notify_under_tls12_closes_both_ways_at_once() {
    let mut e = spawn().start();
    let mut tls = connect(&e, tls12(), "localhost");
    tls.write_all(b"last words").unwrap();
    client_close_notify(&mut tls);
    assert_eq!(app_read_to_end(&mut e), b"last words");
    // The engine answers close_notify and FIN, and exits without waiting
    // for the app to close fdr.
    assert_eq!(client_end(&mut tls), Ok(()));
    assert!(raw_eof(&tls.sock));
    assert_exit(&mut e, 0, "");
    let late = e.app_tx().write_all(b"too late");
    assert_eq!(late.map_err(|e| e.kind()), Err(ErrorKind::BrokenPipe));
}

#[test]
fn client_close_notify_under_tls13_leaves_app_to_client_open() {
    let mut e = spawn().start();
    let mut tls = connect(&e, tls13(), "localhost");
    tls.write_all(b"last words").unwrap();
    client_close_notify(&mut tls);
    assert_eq!(app_read_to_end(&mut e), b"last words");
    assert!(e.still_running_after(SHORT));
    e.app_tx().write_all(b"reply").unwrap();
    assert_eq!(client_read_exact(&mut tls, 5), b"reply");
    e.close_app_tx();
    assert_eq!(client_end(&mut tls), Err(ErrorKind::UnexpectedEof));
    assert_exit(&mut e, 0, "");
}

#[test]
fn client_close_notify_under_tls13_then_app_eof_with_close_notify_option_sends_it() {
    let mut e = spawn().args(&["-S"]).start();
    let mut tls = connect(&e, tls13(), "localhost");
    client_close_notify(&mut tls);
    assert_eq!(app_read_to_end(&mut e), b"");
    e.app_tx().write_all(b"reply").unwrap();
    e.close_app_tx();
    assert_eq!(client_read_exact(&mut tls, 5), b"reply");
    assert_eq!(client_end(&mut tls), Ok(()));
    assert_exit(&mut e, 0, "");
}

#[test]
fn client_fin_without_close_notify_is_a_normal_end_by_default() {
    for config in [tls13(), tls12()] {
        let mut e = spawn().args(&["-j"]).start();
        let mut tls = connect(&e, config, "localhost");
        tls.write_all(b"data").unwrap();
        tls.flush().unwrap();
        client_fin(&tls);
        assert_eq!(app_read_to_end(&mut e), b"data");
        // The app -> client direction keeps working.
        e.app_tx().write_all(b"reply").unwrap();
        assert_eq!(client_read_exact(&mut tls, 5), b"reply");
        assert!(e.still_running_after(SHORT));
        e.close_app_tx();
        assert_eq!(client_end(&mut tls), Err(ErrorKind::UnexpectedEof));
        assert_exit(&mut e, 0, "");
    }
}

#[test]
fn client_fin_without_close_notify_is_fatal_under_enforce_close_notify() {
    let mut e = spawn().args(&["-J"]).start();
    let mut tls = connect(&e, tls13(), "localhost");
    tls.write_all(b"data").unwrap();
    client_fin(&tls);
    assert_exit(
        &mut e,
        98,
        "s6-tlsd-io: fatal: remote closed connection without a close_notify\n",
    );
}

#[test]
fn client_close_notify_satisfies_enforce_close_notify() {
    let mut e = spawn().args(&["-J"]).start();
    let mut tls = connect(&e, tls12(), "localhost");
    tls.write_all(b"data").unwrap();
    client_close_notify(&mut tls);
    client_fin(&tls);
    assert_eq!(app_read_to_end(&mut e), b"data");
    assert_exit(&mut e, 0, "");
}

#[test]
fn client_fin_inside_a_record_exits_98() {
    let mut e = spawn().start();
    let tls = connect(&e, tls13(), "localhost");
    // Half a record header, then FIN.
    (&tls.sock).write_all(&[0x17, 0x03, 0x03]).unwrap();
    client_fin(&tls);
    let exit = e.wait_exit();
    assert_eq!(exit.code, Some(98), "{}", exit.stderr);
    assert!(
        exit.stderr.starts_with(
            "s6-tlsd-io: fatal: the TLS engine closed the connection after the handshake: "
        ),
        "{}",
        exit.stderr
    );
}

#[test]
fn client_reset_after_handshake_exits_111() {
    let mut e = spawn().start();
    let tls = connect(&e, tls13(), "localhost");
    let sock = tls.sock.try_clone().unwrap();
    reset(&sock);
    drop(tls);
    drop(sock);
    e.client.take();
    assert_exit(
        &mut e,
        111,
        "s6-tlsd-io: fatal: unable to read from remote: Connection reset by peer\n",
    );
}

#[test]
fn app_closing_fdw_with_nothing_pending_ends_only_the_client_to_app_direction() {
    let mut e = spawn().start();
    let mut tls = connect(&e, tls13(), "localhost");
    e.close_app_rx();
    if !e.still_running_after(SHORT) {
        panic!("engine exited: {:?}", e.wait_exit());
    }
    // What the client still sends is read and dropped, without a word.
    tls.write_all(b"nobody reads this").unwrap();
    e.app_tx().write_all(b"still here").unwrap();
    assert_eq!(client_read_exact(&mut tls, 10), b"still here");
    e.close_app_tx();
    assert_eq!(client_end(&mut tls), Err(ErrorKind::UnexpectedEof));
    // The engine waits for the client's end (its FIN here), then exits 0.
    client_fin(&tls);
    assert_exit(&mut e, 0, "");
}

#[test]
fn app_closing_fdw_during_the_handshake_does_not_stop_it() {
    let mut e = spawn().start();
    e.close_app_rx();
    let mut tls = connect(&e, tls13(), "localhost");
    e.app_tx().write_all(b"hello").unwrap();
    assert_eq!(client_read_exact(&mut tls, 5), b"hello");
    e.close_app_tx();
    assert_eq!(client_end(&mut tls), Err(ErrorKind::UnexpectedEof));
    client_fin(&tls);
    assert_exit(&mut e, 0, "");
}

#[test]
fn app_closing_fdw_with_data_pending_still_answers_and_exits_0() {
    for (config, flag, end) in [
        (tls13(), "-s", Err(ErrorKind::UnexpectedEof)),
        (tls13(), "-S", Ok(())),
        (tls12(), "-S", Ok(())),
    ] {
        let mut e = spawn().args(&[flag, "-v", "2"]).start();
        let mut tls = connect(&e, config, "localhost");
        // More than the pipe holds, so that some stays pending in the
        // engine when the application goes.
        tls.write_all(b"request\n").unwrap();
        assert_eq!(read_app(&mut e, 8), b"request\n");
        let data = pattern(1 << 20, 1);
        let sock = tls.sock.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            tls.write_all(&data)
                .expect("the client's upload, never reset");
            tls
        });
        std::thread::sleep(SHORT);
        // The application answers, then goes without reading the rest.
        e.app_tx().write_all(b"413 too large").unwrap();
        e.close_app_rx();
        e.close_app_tx();
        let mut tls = writer.join().unwrap();
        assert_eq!(client_read_exact(&mut tls, 13), b"413 too large");
        assert_eq!(client_end(&mut tls), end, "{flag}");
        client_close_notify(&mut tls);
        drop(sock);
        let exit = e.wait_exit();
        assert_eq!(exit.code, Some(0), "{}", exit.stderr);
        let closed = match flag {
            "-S" => "app to client 13 bytes (EOF, close_notify sent)",
            _ => "app to client 13 bytes (EOF)",
        };
        assert!(exit.stderr.contains(closed), "{}", exit.stderr);
        assert!(
            exit.stderr.contains("client to app ")
                && exit
                    .stderr
                    .contains(" bytes (the application stopped reading, ")
                && exit.stderr.contains(" bytes discarded, then close_notify)"),
            "{}",
            exit.stderr
        );
    }
}

#[test]
fn bulk_both_directions_at_once_arrive_intact() {
    const SIZE: usize = 8 << 20;
    let mut e = spawn().start();
    let tls = connect(&e, tls13(), "localhost");
    let up = pattern(SIZE, 2);
    let down = pattern(SIZE, 3);
    let (up_hash, down_hash) = (sha256(&up), sha256(&down));

    let mut app_tx = e.app_tx.take().unwrap();
    let mut app_rx = e.app_rx.take().unwrap();
    let app_writer = std::thread::spawn(move || app_tx.write_all(&down).unwrap());
    let app_reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        app_rx.read_to_end(&mut got).unwrap();
        got
    });
    // The client writes and reads at once, through two handles on one
    // rustls connection guarded by a mutex, pumping by hand.
    let got_down = client_pump(tls, &up, SIZE);
    app_writer.join().unwrap();
    let got_up = app_reader.join().unwrap();
    assert_eq!(sha256(&got_up), up_hash, "client -> app");
    assert_eq!(sha256(&got_down), down_hash, "app -> client");
    assert_exit(&mut e, 0, "");
}

/// Sends `up` and receives `want` bytes on one nonblocking client
/// connection, then closes with close_notify; returns what was received.
fn client_pump(mut tls: Tls, up: &[u8], want: usize) -> Vec<u8> {
    tls.sock.set_nonblocking(true).unwrap();
    let mut sent = 0;
    let mut got = Vec::with_capacity(want);
    let mut buf = vec![0; 65536];
    let mut closed = false;
    let mut eof = false;
    let start = std::time::Instant::now();
    while (got.len() < want && !eof) || tls.conn.wants_write() || !closed {
        assert!(start.elapsed() < Duration::from_secs(60), "pump stuck");
        let mut moved = false;
        if sent < up.len() && !tls.conn.wants_write() {
            let n = tls
                .conn
                .writer()
                .write(&up[sent..(sent + 65536).min(up.len())])
                .unwrap();
            sent += n;
            moved |= n > 0;
        }
        if sent == up.len() && !closed {
            tls.conn.send_close_notify();
            closed = true;
        }
        match tls.conn.write_tls(&mut tls.sock) {
            Ok(n) => moved |= n > 0,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("client write: {e}"),
        }
        // After the server's EOF, keep sending what is left.
        if !eof {
            match tls.conn.read_tls(&mut tls.sock) {
                Ok(0) => eof = true,
                Ok(_) => {
                    tls.conn.process_new_packets().unwrap();
                    moved = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("client read: {e}"),
            }
        }
        loop {
            match tls.conn.reader().read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(_) => break,
            }
        }
        if !moved {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    got
}

#[test]
fn slow_application_keeps_engine_memory_bounded() {
    // The client pushes 64 MiB; the app reads slowly. Back-pressure must
    // keep the engine's peak RSS small: bound stated in the README.
    const SIZE: usize = 64 << 20;
    const BOUND_KB: u64 = 8 * 1024;
    let mut e = spawn().start();
    let mut tls = connect(&e, tls13(), "localhost");
    let writer = std::thread::spawn(move || {
        let chunk = pattern(1 << 20, 4);
        for _ in 0..SIZE / chunk.len() {
            tls.write_all(&chunk).unwrap();
        }
        client_close_notify(&mut tls);
        tls
    });
    let mut total = 0;
    let mut buf = vec![0; 256 * 1024];
    while total < SIZE {
        let n = e.app_rx().read(&mut buf).unwrap();
        assert!(n > 0, "early EOF at {total}");
        total += n;
        if total % (4 << 20) < n {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let hwm = e.proc_status("VmHWM").unwrap();
    let kb: u64 = hwm.trim_end_matches(" kB").parse().unwrap();
    eprintln!("engine VmHWM after 64 MiB through a slow app: {kb} kB");
    assert!(kb < BOUND_KB, "VmHWM {kb} kB");
    drop(writer.join());
    e.close_app_tx();
    assert_exit(&mut e, 0, "");
}

#[test]
fn idle_connection_costs_no_cpu() {
    let mut e = spawn().start();
    let mut tls = connect(&e, tls13(), "localhost");
    tls.write_all(b"x").unwrap();
    assert_eq!(read_app(&mut e, 1), b"x");
    let before = e.cpu_ticks();
    std::thread::sleep(Duration::from_secs(2));
    let after = e.cpu_ticks();
    assert!(after - before <= 1, "{} ticks while idle", after - before);
}

/// A connection quiet for 0.1 s gives its buffers' pages back (engine
/// QUIET_MS): after 1 MiB each way, its anonymous memory falls back to what
/// it was once the handshake was done.
#[test]
fn quiet_connection_gives_its_buffer_pages_back() {
    let mut e = spawn().start();
    let mut tls = connect(&e, tls13(), "localhost");
    let anon = |e: &Engine| -> u64 {
        let v = e.proc_status("RssAnon").unwrap();
        v.trim_end_matches(" kB").trim().parse().unwrap()
    };
    tls.write_all(b"x").unwrap();
    assert_eq!(read_app(&mut e, 1), b"x");
    std::thread::sleep(Duration::from_millis(500));
    let idle = anon(&e);
    let chunk = pattern(64 * 1024, 9);
    for _ in 0..16 {
        tls.write_all(&chunk).unwrap();
        assert_eq!(read_app(&mut e, chunk.len()), chunk);
        e.app_tx().write_all(&chunk).unwrap();
        let mut got = vec![0; chunk.len()];
        tls.read_exact(&mut got).unwrap();
        assert_eq!(got, chunk);
    }
    // Bounded: the release comes 0.1 s after the last byte.
    let mut after = anon(&e);
    for _ in 0..40 {
        if after <= idle + 16 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        after = anon(&e);
    }
    assert!(
        after <= idle + 16,
        "RssAnon {after} kB after a quiet spell, {idle} kB before the traffic"
    );
    e.close_app_tx();
}

#[test]
fn notification_is_closed_before_the_first_byte_reaches_the_app() {
    let mut e = spawn().start();
    let mut tls = connect(&e, tls13(), "localhost");
    tls.write_all(b"x").unwrap();
    assert_eq!(read_app(&mut e, 1), b"x");
    // By now the whole block must be there, and the pipe closed: a
    // nonblocking read can only find data and then EOF.
    let mut notif = e.notif.take().unwrap();
    // SAFETY: fcntl on a pipe we own.
    unsafe {
        let fd = notif.as_raw_fd();
        libc::fcntl(
            fd,
            libc::F_SETFL,
            libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK,
        );
    }
    let mut raw = Vec::new();
    notif
        .read_to_end(&mut raw)
        .expect("block complete and closed");
    parse_notification(&raw);
}

#[test]
fn one_socket_as_fdr_and_fdw_closes_each_direction_on_its_own() {
    use std::net::Shutdown;
    let mut s = spawn();
    s.app_socket = true;
    let mut e = s.start();
    let mut app = e.app_sock.take().unwrap();
    let mut tls = connect(&e, tls13(), "localhost");
    tls.write_all(b"up").unwrap();
    let mut buf = [0u8; 2];
    app.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"up");
    // The app's EOF ends app -> client only: the client sees it, and can
    // still send.
    app.write_all(b"down").unwrap();
    app.shutdown(Shutdown::Write).unwrap();
    assert_eq!(client_read_exact(&mut tls, 4), b"down");
    assert_eq!(client_end(&mut tls), Err(ErrorKind::UnexpectedEof));
    tls.write_all(b"more").unwrap();
    let mut buf = [0u8; 4];
    app.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"more");
    // The client's EOF reaches the app as EOF on the same socket.
    client_fin(&tls);
    let mut rest = Vec::new();
    app.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    assert_exit(&mut e, 0, "");
}

#[test]
fn everything_the_client_sent_arrives_while_it_waits_without_closing() {
    // A client that sends and then only waits must not leave records
    // staged in the engine: the app gets every byte with nothing after it.
    for size in [16 << 10, 48 << 10, 1 << 20, 8 << 20] {
        let mut e = spawn().start();
        let mut tls = connect(&e, tls13(), "localhost");
        let data = pattern(size, size as u64);
        let mut app_rx = e.app_rx.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = vec![0; size];
            app_rx.read_exact(&mut got).map(|_| got)
        });
        tls.write_all(&data).unwrap();
        tls.flush().unwrap();
        let got = reader
            .join()
            .unwrap()
            .expect("every byte, the client still open");
        assert_eq!(sha256(&got), sha256(&data), "{size} bytes");
        drop(tls);
        e.client.take();
        e.close_app_tx();
        assert_eq!(e.wait_exit().code, Some(0));
    }
}
