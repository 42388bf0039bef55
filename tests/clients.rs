//! Interoperability: real TLS clients that no one here wrote (OpenSSL's
//! `s_client`, GnuTLS's `gnutls-cli`, `curl`) against the engine, each with a
//! handshake and data both ways through the tunnel, and the notification
//! block checked against what the client itself says it negotiated.
//!
//! Every client runs on 127.0.0.1, for a bounded time: it is killed when a
//! test gives up, and on every exit path (its guard kills and reaps it).
//! A missing client program fails the test and names the Debian package
//! to install; it never passes silently.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::time::Instant;

use common::client::*;
use common::*;

/// What the engine's block looks like, as (name, value) pairs.
type Block = Vec<(String, Option<String>)>;

// ---------------------------------------------------------------- the app

/// The notification block, once the engine has written it (at most STEP).
fn block(e: &mut Engine) -> Block {
    let ready = readable(
        e.notif.as_ref().expect("engine started with -d").as_fd(),
        STEP,
    );
    assert!(ready, "no notification block within {STEP:?}");
    e.notification()
}

/// Reads what the client sent through the engine until `needle` has been
/// seen, at most STEP; returns all of it.
fn app_read_until(e: &mut Engine, needle: &[u8], client: &Client) -> Vec<u8> {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(needle.len()).any(|w| w == needle) {
        let left = STEP.saturating_sub(start.elapsed());
        if left.is_zero() || !readable(e.app_rx().as_fd(), left) {
            panic!(
                "the app never received {:?} within {STEP:?}; got {:?}\n{}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(&got),
                client.transcript()
            );
        }
        match e.app_rx().read(&mut buf) {
            Ok(0) => panic!(
                "fdw closed before {:?}; got {:?}\n{}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(&got),
                client.transcript()
            ),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(err) => panic!("read fdw: {err}"),
        }
    }
    got
}

/// Reads what is left on fdw until its EOF, at most STEP.
fn app_read_to_eof(e: &mut Engine) -> Vec<u8> {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = STEP.saturating_sub(start.elapsed());
        assert!(
            !left.is_zero() && readable(e.app_rx().as_fd(), left),
            "fdw not closed within {STEP:?}; got {:?}",
            String::from_utf8_lossy(&got)
        );
        match e.app_rx().read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(err) => panic!("read fdw: {err}"),
        }
    }
}

// ---------------------------------------------------------------- checks

/// The block an anonymous client gets: the protocol, an OpenSSL cipher name
/// of that protocol, the server name it sent (bare when none), and bare peer
/// certificate fields. Returns the cipher name.
fn check_block(block: &Block, protocol: &str, sni: Option<&str>) -> String {
    let names: Vec<&str> = block.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "SSL_PROTOCOL",
            "SSL_CIPHER",
            "SSL_TLS_SNI_SERVERNAME",
            "SSL_PEER_CERT_HASH",
            "SSL_PEER_CERT_SUBJECT",
            "SSL_ALPN_PROTOCOL"
        ],
        "block: {block:?}"
    );
    assert_eq!(block[0].1.as_deref(), Some(protocol), "block: {block:?}");
    let cipher = block[1].1.clone().expect("SSL_CIPHER has a value");
    match protocol {
        "TLSv1.3" => assert!(
            [
                "TLS_AES_128_GCM_SHA256",
                "TLS_AES_256_GCM_SHA384",
                "TLS_CHACHA20_POLY1305_SHA256"
            ]
            .contains(&cipher.as_str()),
            "not an OpenSSL TLS 1.3 cipher name: {cipher}"
        ),
        _ => assert!(
            cipher.starts_with("ECDHE-ECDSA-"),
            "not an OpenSSL TLS 1.2 ECDSA cipher name: {cipher}"
        ),
    }
    assert_eq!(block[2].1.as_deref(), sni, "block: {block:?}");
    assert_eq!(block[3].1, None, "no client certificate: {block:?}");
    assert_eq!(block[4].1, None, "no client certificate: {block:?}");
    assert_eq!(block[5].1, None, "no TLS_ALPN: {block:?}");
    cipher
}

/// After a failed handshake: the notification fd was closed with nothing
/// written to it.
fn assert_no_block(e: &mut Engine) {
    let mut raw = Vec::new();
    e.notif
        .take()
        .expect("engine started with -d")
        .read_to_end(&mut raw)
        .expect("read notification pipe");
    assert!(raw.is_empty(), "a block after a failed handshake: {raw:?}");
}

fn assert_engine_exit(e: &mut Engine, code: i32, client: &Client) -> String {
    let exit = e.wait(STEP);
    assert_eq!(
        exit.code,
        Some(code),
        "engine stderr: {}\n{}",
        exit.stderr,
        client.transcript()
    );
    exit.stderr
}

// ---------------------------------------------------------------- openssl

/// What `s_client` says it negotiated, from its `New, PROTOCOL, Cipher is
/// CIPHER` line.
fn s_client_negotiated(client: &mut Client) -> (String, String) {
    client.wait_stdout(", Cipher is ");
    let out = client.stdout();
    let line = out
        .lines()
        .find(|l| l.contains(", Cipher is "))
        .expect("a Cipher is line");
    let (proto, cipher) = line
        .strip_prefix("New, ")
        .and_then(|rest| rest.split_once(", Cipher is "))
        .unwrap_or_else(|| panic!("unexpected s_client line: {line:?}"));
    (proto.to_string(), cipher.trim().to_string())
}

/// One line from the client to the app through the engine, and the app's
/// answer back to the client, which must print it.
fn echo(e: &mut Engine, client: &mut Client, line: &str) {
    client.send(format!("{line}\n").as_bytes());
    let got = app_read_until(e, b"\n", client);
    assert_eq!(String::from_utf8_lossy(&got), format!("{line}\n"));
    let answer = format!("the app got: {line}");
    e.app_tx()
        .write_all(format!("{answer}\n").as_bytes())
        .expect("write fdr");
    client.wait_stdout(&answer);
}

#[test]
fn openssl_s_client_tls13_with_sni_verifies_the_server_and_echoes() {
    let (listener, port) = listen();
    let mut client = Client::start(
        "openssl",
        &s_client_args(
            port,
            &[
                "-tls1_3",
                "-servername",
                "localhost",
                "-verify_hostname",
                "localhost",
                "-ign_eof",
            ],
        ),
    );
    let mut e = accept(spawn().args(&["-S"]), &listener, &mut client);
    let cipher = check_block(&block(&mut e), "TLSv1.3", Some("localhost"));
    assert_eq!(
        s_client_negotiated(&mut client),
        ("TLSv1.3".to_string(), cipher)
    );
    echo(&mut e, &mut client, "hello from s_client over TLS 1.3");
    // The app ends: close_notify then FIN; s_client ends cleanly, and so
    // does the engine.
    e.close_app_tx();
    let status = client.wait_exit();
    assert!(status.success(), "{status}\n{}", client.transcript());
    assert!(client.stdout().contains("Verify return code: 0 (ok)"));
    assert_eq!(app_read_to_eof(&mut e), b"");
    assert_eq!(assert_engine_exit(&mut e, 0, &client), "");
}

#[test]
fn openssl_s_client_tls12_without_sni_verifies_the_server_and_echoes() {
    let (listener, port) = listen();
    // Connecting to an IP address with no -servername: s_client sends no
    // SNI. The certificate is checked against the address instead.
    let mut client = Client::start(
        "openssl",
        &s_client_args(port, &["-tls1_2", "-verify_ip", "127.0.0.1"]),
    );
    let mut e = accept(spawn(), &listener, &mut client);
    let cipher = check_block(&block(&mut e), "TLSv1.2", None);
    assert_eq!(
        s_client_negotiated(&mut client),
        ("TLSv1.2".to_string(), cipher)
    );
    echo(&mut e, &mut client, "hello from s_client over TLS 1.2");
    // The client ends: on its stdin's EOF it sends close_notify; under
    // TLS 1.2 the engine closes fdw, answers and exits without waiting for
    // the app.
    client.close_stdin();
    assert_eq!(app_read_to_eof(&mut e), b"");
    assert_eq!(assert_engine_exit(&mut e, 0, &client), "");
    let status = client.wait_exit();
    assert!(status.success(), "{status}\n{}", client.transcript());
    assert!(client.stdout().contains("Verify return code: 0 (ok)"));
}

#[test]
fn openssl_s_client_tls11_is_refused_and_the_engine_exits_98() {
    let (listener, port) = listen();
    // SECLEVEL=0 so that OpenSSL itself is willing to offer TLS 1.1.
    let mut client = Client::start(
        "openssl",
        &s_client_args(port, &["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"]),
    );
    let mut e = accept(spawn(), &listener, &mut client);
    let stderr = assert_engine_exit(&mut e, 98, &client);
    assert_no_block(&mut e);
    assert_eq!(
        stderr,
        "s6-tlsd-io: fatal: the TLS engine closed the connection during the handshake: \
         the client offers only TLS 1.1 or older\n"
    );
    let status = client.wait_exit();
    assert!(
        !status.success(),
        "TLS 1.1 accepted?\n{}",
        client.transcript()
    );
    let said = client.transcript();
    assert!(said.contains("Cipher is (NONE)"), "no session: {said}");
    // The engine tells the client why before closing: protocol_version.
    assert!(said.contains("alert protocol version"), "no alert: {said}");
}

#[test]
fn openssl_s_client_tls12_with_only_ciphers_the_server_lacks_gets_a_handshake_failure_alert() {
    // Plain RSA key exchange (no groups offered at all), then an ECDHE
    // suite in CBC mode, which the server does not have either.
    for suite in ["AES128-SHA", "ECDHE-ECDSA-AES128-SHA"] {
        let (listener, port) = listen();
        let mut client = Client::start(
            "openssl",
            &s_client_args(port, &["-tls1_2", "-cipher", suite]),
        );
        let mut e = accept(spawn(), &listener, &mut client);
        let stderr = assert_engine_exit(&mut e, 98, &client);
        assert_no_block(&mut e);
        assert!(
            stderr.starts_with(
                "s6-tlsd-io: fatal: the TLS engine closed the connection during the handshake: "
            ),
            "{suite}: engine stderr: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        let status = client.wait_exit();
        assert!(!status.success(), "{suite}: {}", client.transcript());
        let said = client.transcript();
        assert!(
            said.contains("alert handshake failure"),
            "{suite}: no alert: {said}"
        );
        assert!(said.contains("Cipher is (NONE)"), "{suite}: {said}");
        eprintln!("{suite}: {stderr}");
    }
}

/// Internet Explorer 11 on Windows 7, as testssl.sh's client simulation
/// data has it (etc/client-simulation.txt): TLS 1.2 at most, these suites
/// in this order, P-256 and P-384. With an RSA key it offers ECDHE only
/// with CBC, then DHE and static RSA, none of which the engine serves: the
/// reference page's "Clients" says so; with an ECDSA key it gets
/// ECDHE-ECDSA-AES256-GCM-SHA384.
const IE11_WIN7: &str = "ECDHE-RSA-AES256-SHA384:ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES256-SHA:\
ECDHE-RSA-AES128-SHA:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-AES128-GCM-SHA256:AES256-GCM-SHA384:\
AES128-GCM-SHA256:AES256-SHA256:AES128-SHA256:AES256-SHA:AES128-SHA:ECDHE-ECDSA-AES256-GCM-SHA384:\
ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-SHA384:ECDHE-ECDSA-AES128-SHA256:\
ECDHE-ECDSA-AES256-SHA:ECDHE-ECDSA-AES128-SHA:DHE-DSS-AES256-SHA256:DHE-DSS-AES128-SHA256:\
DHE-DSS-AES256-SHA:DHE-DSS-AES128-SHA:DES-CBC3-SHA:EDH-DSS-DES-CBC3-SHA";

#[test]
fn ie11_on_windows_7_is_served_with_an_ecdsa_certificate_not_with_an_rsa_one() {
    let ie11 = |port| {
        let cipher = format!("{IE11_WIN7}:@SECLEVEL=0");
        let args = [
            "-tls1_2",
            "-cipher",
            &cipher,
            "-curves",
            "prime256v1:secp384r1",
        ];
        Client::start("openssl", &s_client_args(port, &args))
    };
    // RSA: nothing in common, a handshake_failure alert.
    let rsa = keys(Alg::Rsa2048, &["localhost", "127.0.0.1"]);
    let (listener, port) = listen();
    let mut client = ie11(port);
    let mut e = accept(spawn().keys(&rsa), &listener, &mut client);
    assert_engine_exit(&mut e, 98, &client);
    assert_no_block(&mut e);
    let status = client.wait_exit();
    assert!(
        !status.success(),
        "served with RSA?\n{}",
        client.transcript()
    );
    assert!(
        client.transcript().contains("alert handshake failure"),
        "{}",
        client.transcript()
    );
    // ECDSA (the default test pair, P-256): served, with AES-GCM.
    let (listener, port) = listen();
    let mut client = ie11(port);
    let mut e = accept(spawn(), &listener, &mut client);
    let cipher = check_block(&block(&mut e), "TLSv1.2", None);
    assert_eq!(cipher, "ECDHE-ECDSA-AES256-GCM-SHA384");
    assert_eq!(
        s_client_negotiated(&mut client),
        ("TLSv1.2".to_string(), cipher)
    );
    echo(&mut e, &mut client, "hello with IE 11's suites");
    client.close_stdin();
    assert_eq!(app_read_to_eof(&mut e), b"");
    assert_eq!(assert_engine_exit(&mut e, 0, &client), "");
}

// ---------------------------------------------------------------- gnutls

/// What `gnutls-cli` says it negotiated, from its `- Description:
/// (TLS1.3-X.509)-(ECDHE-SECP256R1)-(ECDSA-SECP256R1-SHA256)-(AES-256-GCM)`
/// line: the protocol as OpenSSL names it, and the GnuTLS cipher name.
fn gnutls_negotiated(client: &mut Client) -> (String, String) {
    client.wait_stdout("- Handshake was completed");
    let out = client.stdout();
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("- Description: ("))
        .unwrap_or_else(|| panic!("no Description line\n{}", client.transcript()));
    let proto = line.split('-').next().unwrap_or_default();
    let cipher = line.rsplit('(').next().unwrap_or_default();
    (
        proto.replace("TLS", "TLSv"),
        cipher.trim_end_matches(')').to_string(),
    )
}

/// Whether a GnuTLS cipher name (`AES-256-GCM`) is the bulk cipher of an
/// OpenSSL suite name (`TLS_AES_256_GCM_SHA384`,
/// `ECDHE-ECDSA-AES256-GCM-SHA384`).
fn same_cipher(gnutls: &str, openssl: &str) -> bool {
    let bare = |s: &str| s.replace(['-', '_'], "");
    !gnutls.is_empty() && bare(openssl).contains(&bare(gnutls))
}

fn gnutls_cli_echo(priority: Option<&str>, protocol: &str) {
    let (listener, port) = listen();
    let extra: Vec<String> = priority.iter().map(|p| format!("--priority={p}")).collect();
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let mut client = Client::start("gnutls-cli", &gnutls_cli_args(port, &extra));
    let mut e = accept(spawn(), &listener, &mut client);
    let cipher = check_block(&block(&mut e), protocol, Some("localhost"));
    let (proto, gnutls_cipher) = gnutls_negotiated(&mut client);
    assert_eq!(proto, protocol, "{}", client.transcript());
    assert!(
        same_cipher(&gnutls_cipher, &cipher),
        "gnutls-cli negotiated {gnutls_cipher}, the engine says {cipher}"
    );
    assert!(client
        .stdout()
        .contains("- Status: The certificate is trusted."));
    echo(
        &mut e,
        &mut client,
        &format!("hello from gnutls-cli over {protocol}"),
    );
    // The client ends: on its stdin's EOF gnutls-cli sends close_notify and
    // waits for the server to close.
    client.close_stdin();
    assert_eq!(app_read_to_eof(&mut e), b"");
    if protocol == "TLSv1.2" {
        // The engine answers close_notify and exits without the app.
        assert_eq!(assert_engine_exit(&mut e, 0, &client), "");
        e.close_app_tx();
    } else {
        // The app->client direction is still open; the app ends it.
        e.close_app_tx();
        assert_eq!(assert_engine_exit(&mut e, 0, &client), "");
    }
    let status = client.wait_exit();
    assert!(status.success(), "{status}\n{}", client.transcript());
}

#[test]
fn gnutls_cli_default_priority_negotiates_tls13_verifies_the_server_and_echoes() {
    gnutls_cli_echo(None, "TLSv1.3");
}

#[test]
fn gnutls_cli_forced_to_tls12_verifies_the_server_and_echoes() {
    gnutls_cli_echo(Some("NORMAL:-VERS-TLS-ALL:+VERS-TLS1.2"), "TLSv1.2");
}

// ---------------------------------------------------------------- curl

/// Reads an HTTP request from fdw up to its blank line.
fn app_read_request(e: &mut Engine, client: &Client) -> String {
    let request = app_read_until(e, b"\r\n\r\n", client);
    String::from_utf8(request).expect("a text request")
}

#[test]
fn curl_gets_a_page_from_an_app_that_reports_the_negotiated_protocol_and_cipher() {
    let (listener, port) = listen();
    let url = format!("https://localhost:{port}/hello");
    let args = curl_args(port, &["--verbose", &url]);
    let mut client = Client::start("curl", &args);
    let mut e = accept(spawn(), &listener, &mut client);
    let block = block(&mut e);
    // curl is not forced to a version: it says which one it got below.
    let protocol = block[0].1.clone().unwrap_or_default();
    assert!(
        protocol == "TLSv1.3" || protocol == "TLSv1.2",
        "block: {block:?}"
    );
    let cipher = check_block(&block, &protocol, Some("localhost"));
    // The app is a tiny HTTP/1.0 server that answers with what s6-tlsd
    // would have put in its environment.
    let request = app_read_request(&mut e, &client);
    assert!(
        request.starts_with("GET /hello HTTP/1.1\r\n"),
        "request: {request:?}"
    );
    assert!(
        request.contains(&format!("\r\nHost: localhost:{port}\r\n")),
        "request: {request:?}"
    );
    let body = format!("SSL_PROTOCOL={protocol} SSL_CIPHER={cipher}\n");
    let response = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    e.app_tx()
        .write_all(response.as_bytes())
        .expect("write fdr");
    e.close_app_tx();
    let status = client.wait_exit();
    assert!(status.success(), "{status}\n{}", client.transcript());
    assert_eq!(client.stdout(), body, "{}", client.transcript());
    // curl's own view of the session matches the block.
    let said = client.stderr();
    assert!(
        said.contains(&format!("SSL connection using {protocol} / {cipher}")),
        "{said}"
    );
    assert!(said.contains("SSL certificate verify ok"), "{said}");
    assert!(said.contains("HTTP/1.0 200 OK"), "{said}");
    assert_eq!(app_read_to_eof(&mut e), b"");
    assert_eq!(assert_engine_exit(&mut e, 0, &client), "");
}

// ---------------------------------------------------------------- post-quantum

/// Whether the local OpenSSL knows the X25519MLKEM768 hybrid group
/// (OpenSSL 3.5 and later; Debian 12's 3.0 does not).
fn openssl_has_x25519mlkem768() -> bool {
    let out = match Command::new("openssl")
        .args(["list", "-kem-algorithms"])
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == ErrorKind::NotFound => missing("openssl"),
        Err(e) => panic!("cannot run openssl: {e}"),
    };
    assert!(out.status.success(), "openssl list -kem-algorithms failed");
    String::from_utf8_lossy(&out.stdout)
        .to_ascii_uppercase()
        .contains("X25519MLKEM768")
}

#[test]
fn openssl_s_client_offering_only_x25519mlkem768_gets_a_session_when_openssl_has_it() {
    if !openssl_has_x25519mlkem768() {
        // Straight to fd 2, past the test harness's capture, so that the
        // skip shows.
        let _ = writeln!(
            std::io::stderr(),
            "note: post-quantum test skipped: this openssl ({}) has no \
             X25519MLKEM768 group (it needs OpenSSL 3.5 or later)",
            openssl_version()
        );
        return;
    }
    let (listener, port) = listen();
    // Offering that group alone, a completed handshake used it.
    let mut client = Client::start(
        "openssl",
        &s_client_args(
            port,
            &[
                "-tls1_3",
                "-groups",
                "X25519MLKEM768",
                "-servername",
                "localhost",
                "-verify_hostname",
                "localhost",
                "-ign_eof",
            ],
        ),
    );
    let mut e = accept(spawn().args(&["-S"]), &listener, &mut client);
    let cipher = check_block(&block(&mut e), "TLSv1.3", Some("localhost"));
    assert_eq!(
        s_client_negotiated(&mut client),
        ("TLSv1.3".to_string(), cipher)
    );
    // OpenSSL 3.5 also names the group it negotiated.
    let out = client.stdout();
    if let Some(group) = out.lines().find(|l| l.contains("Negotiated TLS1.3 group:")) {
        assert!(group.contains("X25519MLKEM768"), "{group}");
    }
    echo(&mut e, &mut client, "hello from a post-quantum s_client");
    e.close_app_tx();
    let status = client.wait_exit();
    assert!(status.success(), "{status}\n{}", client.transcript());
    assert!(client.stdout().contains("Verify return code: 0 (ok)"));
    assert_eq!(app_read_to_eof(&mut e), b"");
    assert_eq!(assert_engine_exit(&mut e, 0, &client), "");
}

fn openssl_version() -> String {
    Command::new("openssl")
        .arg("version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

// ---------------------------------------------------------------- the harness

#[test]
#[should_panic(expected = "install the Debian package `gnutls-bin`")]
fn a_missing_client_program_fails_and_names_its_debian_package() {
    Client::start("/nonexistent/gnutls-cli", &[]);
}
