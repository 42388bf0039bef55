//! Spec section 5: the notification block on `-d`.

mod common;

use std::io::Write;
use std::sync::Arc;

use common::*;
use rustls::crypto::aws_lc_rs as provider;
use rustls::ClientConfig;

fn only_suite(suite: rustls::SupportedCipherSuite) -> Arc<ClientConfig> {
    let mut p = provider::default_provider();
    p.cipher_suites = vec![suite];
    Arc::new(provider_config(p, &[suite.version()]))
}

/// Connects, exchanges a byte, returns the block, ends the connection.
fn block_for(keys: &Keys, config: Arc<ClientConfig>, name: &str) -> Vec<(String, Option<String>)> {
    let e = spawn().keys(keys).start();
    let tls = connect(&e, config, name);
    let (block, exit) = one_byte_and_block(e, tls);
    assert_eq!(exit.code, Some(0));
    block
}

fn pairs(items: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
        .collect()
}

#[test]
fn block_has_every_name_in_order_with_sni_and_bare_peer_fields() {
    let suite = provider::cipher_suite::TLS13_AES_256_GCM_SHA384;
    assert_eq!(
        block_for(default_keys(), only_suite(suite), "localhost"),
        pairs(&[
            ("SSL_PROTOCOL", Some("TLSv1.3")),
            ("SSL_CIPHER", Some("TLS_AES_256_GCM_SHA384")),
            ("SSL_TLS_SNI_SERVERNAME", Some("localhost")),
            ("SSL_PEER_CERT_HASH", None),
            ("SSL_PEER_CERT_SUBJECT", None),
            ("SSL_ALPN_PROTOCOL", None),
        ])
    );
}

#[test]
fn no_sni_gives_a_bare_server_name() {
    // A client that connects to an IP address sends no SNI.
    let block = block_for(default_keys(), tls13(), "127.0.0.1");
    assert_eq!(block[2], ("SSL_TLS_SNI_SERVERNAME".to_string(), None));
}

#[test]
fn every_tls13_and_ecdsa_suite_has_its_openssl_name() {
    use provider::cipher_suite::*;
    for (suite, name, proto) in [
        (
            TLS13_AES_128_GCM_SHA256,
            "TLS_AES_128_GCM_SHA256",
            "TLSv1.3",
        ),
        (
            TLS13_AES_256_GCM_SHA384,
            "TLS_AES_256_GCM_SHA384",
            "TLSv1.3",
        ),
        (
            TLS13_CHACHA20_POLY1305_SHA256,
            "TLS_CHACHA20_POLY1305_SHA256",
            "TLSv1.3",
        ),
        (
            TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            "ECDHE-ECDSA-AES128-GCM-SHA256",
            "TLSv1.2",
        ),
        (
            TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            "ECDHE-ECDSA-AES256-GCM-SHA384",
            "TLSv1.2",
        ),
        (
            TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            "ECDHE-ECDSA-CHACHA20-POLY1305",
            "TLSv1.2",
        ),
    ] {
        let block = block_for(default_keys(), only_suite(suite), "localhost");
        assert_eq!(block[0].1.as_deref(), Some(proto));
        assert_eq!(block[1].1.as_deref(), Some(name));
    }
}

#[test]
fn every_rsa_suite_has_its_openssl_name() {
    use provider::cipher_suite::*;
    let rsa = keys(Alg::Rsa2048, &["localhost"]);
    for (suite, name) in [
        (
            TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            "ECDHE-RSA-AES128-GCM-SHA256",
        ),
        (
            TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            "ECDHE-RSA-AES256-GCM-SHA384",
        ),
        (
            TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            "ECDHE-RSA-CHACHA20-POLY1305",
        ),
    ] {
        let block = block_for(&rsa, only_suite(suite), "localhost");
        assert_eq!(block[1].1.as_deref(), Some(name));
    }
}

#[test]
fn notification_fd_0_means_no_notification() {
    let mut e = spawn().no_notify().args(&["-d", "0"]).start();
    let mut tls = connect(&e, tls13(), "localhost");
    tls.write_all(b"x").unwrap();
    assert_eq!(read_app(&mut e, 1), b"x");
    drop(tls);
    e.client.take();
    e.close_app_tx();
    assert_eq!(e.wait_exit().code, Some(0));
}

#[test]
fn failing_to_write_the_block_exits_111() {
    let mut e = spawn().start();
    // The parent went away: nobody reads the notification pipe.
    e.notif.take();
    let sock = e.client().try_clone().unwrap();
    let mut conn = rustls::ClientConnection::new(tls13(), "localhost".try_into().unwrap()).unwrap();
    let mut s = sock;
    while conn.is_handshaking() && conn.complete_io(&mut s).is_ok() {}
    let exit = e.wait_exit();
    assert_eq!(exit.code, Some(111));
    assert_eq!(
        exit.stderr,
        "s6-tlsd-io: fatal: unable to write post-handshake data: Broken pipe\n"
    );
}
