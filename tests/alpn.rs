//! ALPN (RFC 7301): `TLS_ALPN`, `TLS_ALPN:name`, `TLS_ALPN_STRICT`, and
//! `SSL_ALPN_PROTOCOL` in the notification block. The rustls client for the
//! details, then curl and `openssl s_client`; curl's runs go through the
//! s6-tlsd stand-in (tests/support/s6-tlsd-shim), so that the application
//! finds the protocol in its environment as it would under s6-tlsd.

mod common;

use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::client::{accept, listen, s_client_args, Client};
use common::*;
use rustls::{AlertDescription, ClientConfig};

fn offering(protocols: &[&str]) -> Arc<ClientConfig> {
    let mut config = (*tls13()).clone();
    config.alpn_protocols = protocols.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(config)
}

fn alpn(spawn: Spawn, list: &str) -> Spawn {
    spawn.set("TLS_ALPN", list)
}

/// The handshake as the rustls client sees it: the protocol it got, or the
/// alert it received.
fn handshake(e: &Engine, config: Arc<ClientConfig>, name: &str) -> Result<Option<String>, String> {
    let mut sock = e.client().try_clone().unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut conn =
        rustls::ClientConnection::new(config, name.to_owned().try_into().unwrap()).unwrap();
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut sock) {
            return Err(e.to_string());
        }
    }
    Ok(conn
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned()))
}

/// The application closes both its ends, the client (if in-process)
/// closes once it has seen the engine's: the engine then exits.
fn end(mut e: Engine) {
    e.close_app_tx();
    e.close_app_rx();
    if let Some(mut sock) = e.client.take() {
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        std::io::copy(&mut sock, &mut std::io::sink()).expect("the engine's FIN");
    }
    let exit = e.wait(Duration::from_secs(10));
    assert_eq!(exit.code, Some(0), "{}", exit.stderr);
}

fn negotiated(mut e: Engine, config: Arc<ClientConfig>) -> (Option<String>, Option<String>) {
    let got = handshake(&e, config, "localhost").expect("handshake");
    let block = as_map(&e.notification());
    end(e);
    (got, block["SSL_ALPN_PROTOCOL"].clone())
}

fn refused_with(mut e: Engine, config: Arc<ClientConfig>, name: &str) -> (String, Exit) {
    let why = handshake(&e, config, name).expect_err("the engine must refuse");
    (why, e.wait_exit())
}

fn alert(a: AlertDescription) -> String {
    rustls::Error::AlertReceived(a).to_string()
}

#[test]
fn servers_order_wins_and_the_block_names_the_protocol() {
    let e = alpn(spawn(), "h2,http/1.1").start();
    let (got, block) = negotiated(e, offering(&["http/1.1", "h2"]));
    assert_eq!(got.as_deref(), Some("h2"));
    assert_eq!(block.as_deref(), Some("h2"));
}

#[test]
fn without_tls_alpn_nothing_is_negotiated_and_the_name_is_bare() {
    let (got, block) = negotiated(spawn().start(), offering(&["h2"]));
    assert_eq!((got, block), (None, None));
}

#[test]
fn a_client_without_alpn_is_served_unless_strict() {
    let (got, block) = negotiated(alpn(spawn(), "h2").start(), tls13());
    assert_eq!((got, block), (None, None));

    let e = alpn(spawn(), "h2").set("TLS_ALPN_STRICT", "1").start();
    let (why, exit) = refused_with(e, tls13(), "localhost");
    assert_eq!(why, alert(AlertDescription::NoApplicationProtocol));
    assert_eq!(exit.code, Some(98));
    assert_eq!(
        exit.stderr,
        fatal(
            "the TLS engine closed the connection during the handshake: the client offers no \
application protocol (ALPN), and TLS_ALPN_STRICT is set"
        )
    );
}

#[test]
fn no_protocol_in_common_is_refused_with_no_application_protocol() {
    for config in [offering(&["imap", "pop3"]), {
        let mut c = (*tls12()).clone();
        c.alpn_protocols = vec![b"imap".to_vec(), b"pop3".to_vec()];
        Arc::new(c)
    }] {
        let e = alpn(spawn(), "h2,http/1.1").start();
        let (why, exit) = refused_with(e, config, "localhost");
        assert_eq!(why, alert(AlertDescription::NoApplicationProtocol));
        assert_eq!(exit.code, Some(98));
        assert_eq!(
            exit.stderr,
            fatal(
                "the TLS engine closed the connection during the handshake: no application \
protocol in common: the client offers \"imap\", \"pop3\", the server speaks h2,http/1.1"
            )
        );
    }
}

#[test]
fn a_named_pair_has_its_own_list() {
    let mail = keys(Alg::EcdsaP256, &["mail.example"]);
    let e = || {
        alpn(spawn(), "h2")
            .set("CERTFILE:mail.example", mail.cert.to_str().unwrap())
            .set("KEYFILE:mail.example", mail.key.to_str().unwrap())
            .set("TLS_ALPN:mail.example", "imap")
            .args(&["--sni"])
            .start()
    };
    let s = e();
    let got = handshake(&s, offering(&["h2", "imap"]), "mail.example");
    assert_eq!(got, Ok(Some("imap".into())));
    end(s);
    let (why, exit) = refused_with(e(), offering(&["h2"]), "mail.example");
    assert_eq!(why, alert(AlertDescription::NoApplicationProtocol));
    assert!(
        exit.stderr.contains("the server speaks imap"),
        "{}",
        exit.stderr
    );
    // the default pair keeps TLS_ALPN
    let s = e();
    assert_eq!(
        handshake(&s, offering(&["imap", "h2"]), "localhost"),
        Ok(Some("h2".into()))
    );
    end(s);
}

#[test]
fn a_bad_list_is_a_usage_error_at_start_up() {
    let (code, stderr) = startup_failure(&[], {
        let mut env = key_env(default_keys());
        env.push(("TLS_ALPN".into(), "h2,,http/1.1".into()));
        env
    });
    assert_eq!(code, Some(100));
    assert_eq!(
        stderr,
        fatal("invalid $TLS_ALPN: protocol names are 1 to 255 bytes, separated by commas")
    );
}

#[test]
fn a_name_with_blanks_around_it_is_a_usage_error_naming_it() {
    let (code, stderr) = startup_failure(&[], {
        let mut env = key_env(default_keys());
        env.push(("TLS_ALPN".into(), "h2, http/1.1".into()));
        env
    });
    assert_eq!(code, Some(100));
    assert_eq!(
        stderr,
        fatal("invalid $TLS_ALPN: the protocol name \" http/1.1\" has blanks around it")
    );
}

// ------------------------------------------------------- openssl s_client

#[test]
fn openssl_s_client_gets_the_servers_choice() {
    let (listener, port) = listen();
    let args = s_client_args(
        port,
        &["-alpn", "foo,http/1.1,h2", "-servername", "localhost"],
    );
    let mut client = Client::start("openssl", &args);
    let mut e = accept(
        alpn(spawn(), "h2,http/1.1").args(&["-S"]),
        &listener,
        &mut client,
    );
    client.wait_stdout("ALPN protocol: h2");
    assert_eq!(
        as_map(&e.notification())["SSL_ALPN_PROTOCOL"].as_deref(),
        Some("h2")
    );
    e.close_app_tx();
    client.close_stdin();
    client.wait_exit();
    end(e);
}

#[test]
fn openssl_s_client_with_no_protocol_in_common_gets_the_alert() {
    let (listener, port) = listen();
    let args = s_client_args(port, &["-alpn", "imap"]);
    let mut client = Client::start("openssl", &args);
    let mut e = accept(alpn(spawn(), "h2,http/1.1"), &listener, &mut client);
    client.close_stdin();
    client.wait_exit();
    // OpenSSL's name for alert 120
    assert!(
        client.stderr().contains("no application protocol"),
        "{}",
        client.transcript()
    );
    let exit = e.wait_exit();
    assert_eq!(exit.code, Some(98));
    assert!(
        exit.stderr.contains("the client offers \"imap\""),
        "{}",
        exit.stderr
    );
}

// ------------------------------------------------------- curl, via s6-tlsd

const SHIM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/s6-tlsd-shim");

/// Answers one request, HTTP/2 (with its preface) or HTTP/1.x, with the
/// value of SSL_ALPN_PROTOCOL as the body.
const APP: &str = r#"import os, sys
body = ("SSL_ALPN_PROTOCOL=%s\n" % os.environ.get("SSL_ALPN_PROTOCOL", "(unset)")).encode()
inp, out = sys.stdin.buffer, sys.stdout.buffer
def read(n):
    b = b""
    while len(b) < n:
        c = inp.read(n - len(b))
        if not c:
            sys.exit(1)
        b += c
    return b
def frame(kind, flags, payload):
    out.write(len(payload).to_bytes(3, "big") + bytes([kind, flags]) + (1 if kind in (0, 1) else 0).to_bytes(4, "big") + payload)
if os.environ.get("SSL_ALPN_PROTOCOL") == "h2":
    read(24)  # the client's preface
    frame(4, 0, b"")  # our SETTINGS
    while True:
        h = read(9)
        kind, flags, stream = h[3], h[4], int.from_bytes(h[5:9], "big")
        read(int.from_bytes(h[:3], "big"))
        if kind == 4 and not flags & 1:
            frame(4, 1, b"")  # SETTINGS ack
        if kind == 1 and stream == 1 and flags & 1:
            break  # the request, END_STREAM
    frame(1, 4, b"\x88")  # HEADERS, END_HEADERS: :status 200 (HPACK index 8)
    frame(0, 1, body)  # DATA, END_STREAM
    out.flush()
    inp.read()
else:
    while inp.readline() not in (b"\r\n", b"\n", b""):
        pass
    out.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + body)
    out.flush()
"#;

fn app_script() -> PathBuf {
    let path = tmpdir("alpn-app").join("app.py");
    std::fs::write(&path, APP).unwrap();
    path
}

/// The shim on one accepted connection, as a super-server would run it.
fn shim(sock: TcpStream, app: &Path, env: &[(&str, &str)]) -> std::process::Child {
    let out = sock.try_clone().unwrap();
    let mut cmd = Command::new(SHIM);
    cmd.args(["-S", "-K", "10000", "--", "python3"])
        .arg(app)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("S6_TLSD_IO", BIN)
        .envs(key_env(default_keys()))
        .envs(env.iter().copied())
        .stdin(Stdio::from(OwnedFd::from(sock)))
        .stdout(Stdio::from(OwnedFd::from(out)))
        .stderr(Stdio::piped());
    cmd.spawn()
        .expect("run tests/support/s6-tlsd-shim (python3)")
}

fn curl(version: &str, env: &[(&str, &str)]) -> (String, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = app_script();
    let args: Vec<String> = [
        "-sS",
        "-v",
        "--max-time",
        "20",
        version,
        "--cacert",
        &ca().pem_path.display().to_string(),
        "--resolve",
        &format!("localhost:{port}:127.0.0.1"),
        &format!("https://localhost:{port}/"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut client = Client::start("curl", &args);
    let (sock, _) = listener.accept().unwrap();
    let mut server = shim(sock, &app, env);
    let status = client.wait_exit();
    let _ = wait_or_kill_child(&mut server);
    assert!(status.success(), "{}", client.transcript());
    (client.stdout(), client.stderr())
}

fn wait_or_kill_child(child: &mut std::process::Child) -> Option<std::process::ExitStatus> {
    for _ in 0..200 {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let _ = child.kill();
    child.wait().ok()
}

#[test]
fn curl_http2_and_http11_reach_an_app_that_sees_the_protocol() {
    let env = [("TLS_ALPN", "h2,http/1.1")];
    let (body, verbose) = curl("--http2", &env);
    assert_eq!(body, "SSL_ALPN_PROTOCOL=h2\n");
    assert!(verbose.contains("ALPN: server accepted h2"), "{verbose}");
    let (body, _) = curl("--http1.1", &env);
    assert_eq!(body, "SSL_ALPN_PROTOCOL=http/1.1\n");
}

#[test]
fn curl_without_alpn_finds_the_variable_unset() {
    let (body, _) = curl("--no-alpn", &[("TLS_ALPN", "h2,http/1.1")]);
    assert_eq!(body, "SSL_ALPN_PROTOCOL=(unset)\n");
}
