//! Spec section 4: the handshake. Versions, preferences, key exchange,
//! resumption, the -K timeout, and failures with their alerts.

mod common;

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rustls::client::Resumption;
use rustls::crypto::aws_lc_rs as provider;
use rustls::{ClientConfig, HandshakeKind, NamedGroup, RootCertStore};

/// The client goes away and the app closes: the engine must end.
fn hang_up(e: Engine, tls: Tls) {
    let exit = drop_both_ends(e, tls);
    assert!(exit.code.is_some(), "{exit:?}");
}

fn config_with(provider: rustls::crypto::CryptoProvider) -> ClientConfig {
    provider_config(provider, rustls::DEFAULT_VERSIONS)
}

#[test]
fn post_quantum_hybrid_key_exchange_is_preferred() {
    let e = spawn().start();
    let tls = connect(&e, tls13(), "localhost");
    let group = tls.conn.negotiated_key_exchange_group().unwrap().name();
    assert_eq!(group, NamedGroup::X25519MLKEM768);
    hang_up(e, tls);
}

#[test]
fn classic_key_exchange_still_works() {
    let mut p = provider::default_provider();
    p.kx_groups = vec![provider::kx_group::SECP256R1];
    let e = spawn().start();
    let tls = connect(&e, Arc::new(config_with(p)), "localhost");
    let group = tls.conn.negotiated_key_exchange_group().unwrap().name();
    assert_eq!(group, NamedGroup::secp256r1);
    hang_up(e, tls);
}

#[test]
fn server_preference_wins_over_client_order() {
    let server_first = provider::default_provider()
        .cipher_suites
        .into_iter()
        .find(|s| s.version() == &rustls::version::TLS13)
        .unwrap();
    let mut p = provider::default_provider();
    // The client lists the server's favourite last.
    p.cipher_suites
        .sort_by_key(|s| s.suite() == server_first.suite());
    let e = spawn().start();
    let tls = connect(&e, Arc::new(config_with(p)), "localhost");
    assert_eq!(
        tls.conn.negotiated_cipher_suite().unwrap().suite(),
        server_first.suite()
    );
    hang_up(e, tls);
}

#[test]
fn no_session_is_ever_resumed() {
    // One process per connection: tickets and caches could never be used,
    // so none are offered.
    for versions in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let mut config = (*client_config(&[versions])).clone();
        config.resumption = Resumption::in_memory_sessions(16);
        let config = Arc::new(config);
        for _ in 0..2 {
            let mut e = spawn().start();
            let mut tls = connect(&e, config.clone(), "localhost");
            tls.write_all(b"x").unwrap();
            assert_eq!(read_app(&mut e, 1), b"x");
            assert_eq!(tls.conn.handshake_kind(), Some(HandshakeKind::Full));
            e.close_app_tx();
            let _ = read_to_end_tls(&mut tls);
            drop(tls);
            e.client.take();
            e.wait_exit();
        }
    }
}

#[test]
fn handshake_timeout_exits_98_with_a_message() {
    let start = Instant::now();
    let mut e = spawn().args(&["-K", "300"]).start();
    let exit = e.wait_exit();
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(exit.code, Some(98));
    assert_eq!(exit.stderr, "s6-tlsd-io: fatal: handshake timed out\n");
}

#[test]
fn handshake_timeout_is_silent_at_verbosity_0() {
    let mut e = spawn().args(&["-v0", "-K", "100"]).start();
    let exit = e.wait_exit();
    assert_eq!(exit.code, Some(98));
    assert_eq!(exit.stderr, "");
}

#[test]
fn handshake_timeout_covers_a_client_that_dribbles() {
    let mut e = spawn().args(&["-K", "500"]).start();
    let sock = e.client().try_clone().unwrap();
    // A record header promising more than ever comes, one byte at a time.
    let dribble = std::thread::spawn(move || {
        for b in [0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01] {
            if (&sock).write_all(&[b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    });
    let exit = e.wait_exit();
    assert_eq!(exit.code, Some(98));
    assert_eq!(exit.stderr, "s6-tlsd-io: fatal: handshake timed out\n");
    dribble.join().unwrap();
}

#[test]
fn without_a_timeout_the_engine_waits_for_the_client() {
    let mut e = spawn().start();
    assert!(e.still_running_after(Duration::from_millis(500)));
    let tls = connect(&e, tls13(), "localhost");
    hang_up(e, tls);
}

#[test]
fn timeout_does_not_apply_after_the_handshake() {
    let mut e = spawn().args(&["-K", "200"]).start();
    let mut tls = connect(&e, tls13(), "localhost");
    std::thread::sleep(Duration::from_millis(400));
    tls.write_all(b"late").unwrap();
    assert_eq!(read_app(&mut e, 4), b"late");
    e.close_app_tx();
    client_fin_and_wait(&mut e, tls);
}

fn client_fin_and_wait(e: &mut Engine, tls: Tls) {
    half_close(&tls.sock);
    let exit = e.wait_exit();
    assert_eq!(exit.code, Some(0), "{}", exit.stderr);
}

#[test]
fn client_fin_during_the_handshake_exits_98() {
    let mut e = spawn().start();
    e.client().write_all(&[0x16, 0x03, 0x01]).unwrap();
    half_close(e.client());
    let exit = e.wait_exit();
    assert_eq!(exit.code, Some(98));
    assert_eq!(
        exit.stderr,
        "s6-tlsd-io: fatal: the TLS engine closed the connection during the handshake: the client closed the connection\n"
    );
}

#[test]
fn garbage_instead_of_a_client_hello_gets_an_alert_and_98() {
    let mut e = spawn().start();
    e.client().write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let exit = e.wait_exit();
    assert_eq!(exit.code, Some(98));
    assert!(
        exit.stderr.starts_with(
            "s6-tlsd-io: fatal: the TLS engine closed the connection during the handshake: "
        ),
        "{}",
        exit.stderr
    );
    // What the client got is a TLS alert record.
    let mut got = Vec::new();
    let _ = e.client().read_to_end(&mut got);
    assert_eq!(got.first(), Some(&0x15), "alert record: {got:?}");
}

#[test]
fn a_client_that_distrusts_the_certificate_fails_the_handshake_with_98() {
    let mut config = ClientConfig::builder()
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    let mut e = spawn().start();
    let sock = e.client().try_clone().unwrap();
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let mut sock2 = sock;
    while conn.is_handshaking() {
        if conn.complete_io(&mut sock2).is_err() {
            break;
        }
    }
    let exit = e.wait_exit();
    assert_eq!(exit.code, Some(98));
    assert!(
        exit.stderr
            .contains("during the handshake: received fatal alert"),
        "{}",
        exit.stderr
    );
}

#[test]
fn records_rustls_refuses_without_an_alert_still_get_one_in_the_clear() {
    // Found by fuzzing: for these, rustls queues no alert of its own.
    for (what, bytes) in [
        (
            "application data first",
            &[0x17, 0x03, 0x06, 0x00, 0x00][..],
        ),
        (
            "a handshake message over 64 KiB",
            &[
                0x16, 0x03, 0x00, 0x00, 0x0d, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff,
                0xff, 0xff, 0xd3, 0x00,
            ][..],
        ),
    ] {
        let mut e = spawn().start();
        e.client().write_all(bytes).unwrap();
        let exit = e.wait_exit();
        assert_eq!(exit.code, Some(98), "{what}: {}", exit.stderr);
        let mut got = Vec::new();
        let _ = e.client().read_to_end(&mut got);
        assert_eq!(got.first(), Some(&0x15), "{what}: an alert record: {got:?}");
    }
}
