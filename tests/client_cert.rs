//! Spec sections 3, 4 and 5: client certificates (`-Y`, `-y`), their trust
//! anchors (`CADIR`, `CAFILE`), and what the notification block says.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use common::*;
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
use rustls::ClientConfig;

/// The CA that signs client certificates, apart from the server's.
fn client_ca() -> &'static Ca {
    static CA: OnceLock<Ca> = OnceLock::new();
    CA.get_or_init(|| new_ca("client CA", "client-ca"))
}

/// A client certificate and its key, as DER.
struct ClientCert {
    der: Vec<u8>,
    key: Vec<u8>,
    dir: PathBuf,
}

impl ClientCert {
    fn cert_path(&self) -> PathBuf {
        self.dir.join("client.pem")
    }

    fn key_path(&self) -> PathBuf {
        self.dir.join("client.key")
    }
}

fn client_cert(ca: &Ca, edit: impl FnOnce(&mut CertificateParams)) -> ClientCert {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, "client");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    edit(&mut params);
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    let dir = tmpdir("client-cert");
    std::fs::write(dir.join("client.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("client.key"), key.serialize_pem()).unwrap();
    ClientCert {
        der: cert.der().to_vec(),
        key: key.serialize_der(),
        dir,
    }
}

/// A certificate of the client CA whose subject is `dn`, in that order.
fn client_cert_with_subject(dn: &[(DnType, &str)]) -> ClientCert {
    client_cert(client_ca(), |p| {
        p.distinguished_name = rcgen::DistinguishedName::new();
        for (ty, value) in dn {
            p.distinguished_name.push(ty.clone(), *value);
        }
    })
}

fn plain_client_cert() -> ClientCert {
    client_cert(client_ca(), |_| {})
}

fn with_cert(cert: &ClientCert) -> Arc<ClientConfig> {
    client_config_with_cert(&cert.der, &cert.key)
}

fn cafile() -> Spawn {
    spawn().set("CAFILE", client_ca().pem_path.to_str().unwrap())
}

/// Handshake, one byte each way; returns the notification block.
fn exchange(e: Engine, config: Arc<ClientConfig>) -> Vec<(String, Option<String>)> {
    let tls = connect(&e, config, "localhost");
    let (block, exit) = one_byte_and_block(e, tls);
    assert_eq!(exit.code, Some(0), "{}", exit.stderr);
    block
}

/// The client tries; the engine must refuse. Returns the engine's exit.
/// A `-y` engine that got `cert`, a byte each way, and the notification
/// block as it came, bytes and all.
fn raw_block_under_y(cert: &ClientCert) -> (Engine, Tls, Vec<u8>) {
    let mut e = cafile().args(&["-y"]).start();
    let mut tls = connect(&e, with_cert(cert), "localhost");
    tls.write_all(b"x").unwrap();
    assert_eq!(read_app(&mut e, 1), b"x");
    let mut raw = Vec::new();
    std::io::Read::read_to_end(e.notif.as_mut().unwrap(), &mut raw).unwrap();
    (e, tls, raw)
}

fn refused(mut e: Engine, config: Arc<ClientConfig>) -> Exit {
    let mut sock = e.client().try_clone().unwrap();
    let mut conn = rustls::ClientConnection::new(config, "localhost".try_into().unwrap()).unwrap();
    // TLS 1.3 clients finish before the server has judged their
    // certificate: the refusal comes as an alert on the first read.
    while conn.complete_io(&mut sock).is_ok() && (conn.is_handshaking() || conn.wants_read()) {
        if !conn.is_handshaking() {
            let mut b = [0u8; 1];
            if std::io::Read::read(&mut rustls::Stream::new(&mut conn, &mut sock), &mut b).is_err()
            {
                break;
            }
        }
    }
    e.wait_exit()
}

fn hash_hex(der: &[u8]) -> String {
    sha256(der).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn optional_certificate_absent_proceeds_with_bare_fields() {
    let block = as_map(&exchange(cafile().args(&["-Y"]).start(), tls13()));
    assert_eq!(block["SSL_PEER_CERT_HASH"], None);
    assert_eq!(block["SSL_PEER_CERT_SUBJECT"], None);
}

#[test]
fn optional_certificate_present_is_verified_and_reported() {
    // Out of order on purpose: the block has a fixed order.
    let cert = client_cert_with_subject(&[
        (DnType::CommonName, "client"),
        (DnType::OrganizationalUnitName, "Unit"),
        (DnType::OrganizationName, "Example"),
        (DnType::LocalityName, "Paris"),
        (DnType::StateOrProvinceName, "IDF"),
        (DnType::CountryName, "FR"),
    ]);
    let block = exchange(cafile().args(&["-Y"]).start(), with_cert(&cert));
    let block = as_map(&block);
    assert_eq!(
        block["SSL_PEER_CERT_HASH"].as_deref(),
        Some(format!("SHA256:{}", hash_hex(&cert.der)).as_str())
    );
    assert_eq!(
        block["SSL_PEER_CERT_SUBJECT"].as_deref(),
        Some("C=FR, ST=IDF, L=Paris, O=Example, OU=Unit, CN=client")
    );
}

#[test]
fn subject_escapes_special_characters_and_trims_spaces() {
    let cert = client_cert_with_subject(&[
        (DnType::OrganizationName, "  in  side  "),
        (DnType::CommonName, " a,b=c+d<e>f#g\\h\ni "),
    ]);
    let (_e, _tls, raw) = raw_block_under_y(&cert);
    let needle: &[u8] =
        b"\0SSL_PEER_CERT_SUBJECT=O=in  side, CN=a\\,b\\=c\\+d\\<e\\>f\\#g\\\\h\\\ni\0";
    assert!(
        raw.windows(needle.len()).any(|w| w == needle),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
}

#[test]
fn mandatory_certificate_absent_fails_the_handshake_saying_so() {
    let exit = refused(cafile().args(&["-y"]).start(), tls13());
    assert_eq!(exit.code, Some(98));
    assert_eq!(
        exit.stderr,
        "s6-tlsd-io: fatal: the TLS engine closed the connection during the handshake: peer sent no certificates\n"
    );
}

#[test]
fn mandatory_certificate_present_is_accepted() {
    let cert = plain_client_cert();
    let block = as_map(&exchange(cafile().args(&["-y"]).start(), with_cert(&cert)));
    assert_eq!(block["SSL_PEER_CERT_SUBJECT"].as_deref(), Some("CN=client"));
}

#[test]
fn certificate_from_an_unknown_ca_fails_even_when_optional() {
    let stranger = new_ca("stranger CA", "client-ca");
    let cert = client_cert(&stranger, |_| {});
    let exit = refused(cafile().args(&["-Y"]).start(), with_cert(&cert));
    assert_eq!(exit.code, Some(98));
    assert!(exit.stderr.contains("UnknownIssuer"), "{}", exit.stderr);
}

#[test]
fn expired_certificate_fails() {
    let cert = client_cert(client_ca(), |p| {
        p.not_before = rcgen::date_time_ymd(2001, 1, 1);
        p.not_after = rcgen::date_time_ymd(2002, 1, 1);
    });
    let exit = refused(cafile().args(&["-Y"]).start(), with_cert(&cert));
    assert_eq!(exit.code, Some(98));
    assert!(exit.stderr.contains("expired"), "{}", exit.stderr);
}

#[test]
fn certificate_not_for_client_authentication_fails() {
    let cert = client_cert(client_ca(), |p| {
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    });
    let exit = refused(cafile().args(&["-y"]).start(), with_cert(&cert));
    assert_eq!(exit.code, Some(98));
    assert!(
        exit.stderr.contains("invalid peer certificate"),
        "{}",
        exit.stderr
    );
}

fn openssl_hash(pem: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-hash", "-noout", "-in"])
        .arg(pem)
        .output()
        .expect("openssl (Debian package openssl)");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn cadir_reads_hashed_names_and_skips_the_rest() {
    let dir = tmpdir("cadir");
    let other = new_ca("other CA", "client-ca");
    // The client CA under its hashed name; the other CA under a name
    // that is not read; garbage under a hashed name (skipped).
    std::fs::copy(
        &client_ca().pem_path,
        dir.join(format!("{}.0", openssl_hash(&client_ca().pem_path))),
    )
    .unwrap();
    std::fs::copy(&other.pem_path, dir.join("other.pem")).unwrap();
    std::fs::write(dir.join("deadbeef.0"), b"garbage").unwrap();
    std::fs::write(dir.join("README"), b"not a certificate").unwrap();
    let cadir = || spawn().set("CADIR", dir.to_str().unwrap()).args(&["-y"]);

    let block = as_map(&exchange(cadir().start(), with_cert(&plain_client_cert())));
    assert_eq!(block["SSL_PEER_CERT_SUBJECT"].as_deref(), Some("CN=client"));

    let exit = refused(cadir().start(), with_cert(&client_cert(&other, |_| {})));
    assert_eq!(exit.code, Some(98), "{}", exit.stderr);
}

#[test]
fn cadir_wins_over_cafile() {
    let dir = tmpdir("cadir");
    std::fs::copy(&client_ca().pem_path, dir.join("0badc0de.0")).unwrap();
    let e = spawn()
        .set("CADIR", dir.to_str().unwrap())
        .set("CAFILE", "/nonexistent")
        .args(&["-y"])
        .start();
    exchange(e, with_cert(&plain_client_cert()));
}

fn startup_error(s: Spawn) -> Exit {
    let mut e = s.start();
    e.wait_exit()
}

#[test]
fn trust_anchor_errors_are_clear() {
    let exit = startup_error(spawn().args(&["-Y"]));
    assert_eq!(exit.code, Some(100));
    assert_eq!(exit.stderr, "s6-tlsd-io: fatal: CADIR or CAFILE not set\n");

    let empty = tmpdir("empty-cadir");
    let exit = startup_error(spawn().set("CADIR", empty.to_str().unwrap()).args(&["-y"]));
    assert_eq!(exit.code, Some(96));
    assert_eq!(
        exit.stderr,
        format!(
            "s6-tlsd-io: fatal: no trust anchor found in CADIR directory {}\n",
            empty.display()
        )
    );

    let exit = startup_error(spawn().set("CAFILE", "/nonexistent/ca.pem").args(&["-Y"]));
    assert_eq!(exit.code, Some(96));
    assert_eq!(
        exit.stderr,
        "s6-tlsd-io: fatal: unable to read CAFILE file /nonexistent/ca.pem: No such file or directory\n"
    );

    let garbage = write_file(&tmpdir("garbage"), "ca.pem", b"garbage");
    let exit = startup_error(
        spawn()
            .set("CAFILE", garbage.to_str().unwrap())
            .args(&["-Y"]),
    );
    assert_eq!(exit.code, Some(96), "{}", exit.stderr);
    assert!(
        exit.stderr.contains("invalid CAFILE file "),
        "{}",
        exit.stderr
    );

    let exit = startup_error(spawn().set("CADIR", "/nonexistent").args(&["-Y"]));
    assert_eq!(exit.code, Some(96));
    assert_eq!(
        exit.stderr,
        "s6-tlsd-io: fatal: unable to read CADIR directory /nonexistent: No such file or directory\n"
    );

    // A CAFILE whose certificate's base64 body is cut decodes as PEM, but
    // holds nothing that can be a trust anchor.
    let pem = std::fs::read_to_string(&ca().pem_path).unwrap();
    let lines: Vec<&str> = pem.lines().collect();
    let cut = [&lines[..3], &lines[lines.len() - 1..]].concat().join("\n") + "\n";
    let cut = write_file(&tmpdir("cut-ca"), "ca.pem", cut.as_bytes());
    let exit = startup_error(spawn().set("CAFILE", cut.to_str().unwrap()).args(&["-Y"]));
    assert_eq!(exit.code, Some(96));
    assert_eq!(
        exit.stderr,
        format!(
            "s6-tlsd-io: fatal: no trust anchor found in CAFILE file {}: \
1 of its certificates cannot be decoded (damaged or cut?)\n",
            cut.display()
        )
    );
}

#[test]
fn trust_anchors_are_read_after_dropping_privileges() {
    if unsafe { libc::getuid() } != 0 {
        eprintln!("not root: privilege order not tested");
        return;
    }
    // A CAFILE only root can read: once privileges are dropped, it is
    // unreadable, which proves the order (keys before, anchors after).
    let dir = tmpdir("root-only");
    let ca = dir.join("ca.pem");
    std::fs::copy(&client_ca().pem_path, &ca).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o600)).unwrap();
    let exit = startup_error(
        spawn()
            .set("CAFILE", ca.to_str().unwrap())
            .set("TLS_UID", "65534")
            .set("TLS_GID", "65534")
            .args(&["-Y"]),
    );
    assert_eq!(exit.code, Some(96));
    assert!(exit.stderr.contains("Permission denied"), "{}", exit.stderr);
}

#[test]
fn openssl_s_client_with_a_certificate() {
    let cert = plain_client_cert();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut client = Command::new("openssl")
        .args(["s_client", "-quiet", "-verify_return_error", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-CAfile")
        .arg(&ca().pem_path)
        .arg("-cert")
        .arg(cert.cert_path())
        .arg("-key")
        .arg(cert.key_path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl (Debian package openssl)");
    // -S: OpenSSL 3 answers a bare FIN with a decode_error alert.
    let mut e = cafile().args(&["-y", "-S"]).start_accepting(&listener);
    client.stdin.as_mut().unwrap().write_all(b"ping\n").unwrap();
    assert_eq!(read_app(&mut e, 5), b"ping\n");
    let block = as_map(&e.notification());
    assert_eq!(
        block["SSL_PEER_CERT_HASH"].as_deref(),
        Some(format!("SHA256:{}", hash_hex(&cert.der)).as_str())
    );
    e.app_tx().write_all(b"pong\n").unwrap();
    e.close_app_tx();
    let mut out = String::new();
    std::io::Read::read_to_string(client.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(out.contains("pong"), "{out}");
    drop(client.stdin.take());
    let _ = client.kill();
    let _ = client.wait();
    let exit = e.wait_exit();
    assert_eq!(exit.code, Some(0), "{}", exit.stderr);
}

#[test]
fn curl_with_a_certificate() {
    let cert = plain_client_cert();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let client = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(&ca().pem_path)
        .arg("--cert")
        .arg(cert.cert_path())
        .arg("--key")
        .arg(cert.key_path())
        .arg("--resolve")
        .arg(format!("localhost:{port}:127.0.0.1"))
        .arg(format!("https://localhost:{port}/"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("curl (Debian package curl)");
    let mut e = cafile().args(&["-y"]).start_accepting(&listener);
    let mut request = Vec::new();
    while !request.ends_with(b"\r\n\r\n") {
        request.extend(read_app(&mut e, 1));
    }
    let block = as_map(&e.notification());
    let subject = block["SSL_PEER_CERT_SUBJECT"].clone().unwrap();
    let body = format!("hello {subject}\n");
    write!(
        e.app_tx(),
        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    e.close_app_tx();
    let out = client.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello CN=client\n");
    assert_eq!(e.wait_exit().code, Some(0));
}

/// A subject of several KiB (three values of 1,500 bytes), which no one
/// limits here: the block must still stay under the 4096 bytes that
/// s6-tlsd reads at once (4096 or more: exit 101, the application never
/// runs). The subject is then `<invalid>`, the hash intact.
fn several_kib_subject() -> ClientCert {
    let cert = client_cert(client_ca(), |p| {
        p.distinguished_name = rcgen::DistinguishedName::new();
        for (t, c) in [
            (DnType::OrganizationName, "o"),
            (DnType::OrganizationalUnitName, "u"),
            (DnType::CommonName, "c"),
        ] {
            p.distinguished_name.push(t, c.repeat(1500));
        }
    });
    assert!(cert.der.len() > 4500, "{}", cert.der.len());
    cert
}

#[test]
fn a_subject_of_several_kib_keeps_the_block_under_4096_bytes() {
    let cert = several_kib_subject();
    let (e, tls, raw) = raw_block_under_y(&cert);
    assert!(raw.len() < 4096, "{} bytes", raw.len());
    let block = as_map(&parse_notification(&raw));
    assert_eq!(block["SSL_PEER_CERT_SUBJECT"].as_deref(), Some("<invalid>"));
    assert_eq!(
        block["SSL_PEER_CERT_HASH"].as_deref(),
        Some(format!("SHA256:{}", hash_hex(&cert.der)).as_str())
    );
    finish(e, tls);
}

/// The same through tests/support/s6-tlsd-shim, which reads the block as
/// s6-tlsd does: the application runs and sees the variables.
#[test]
fn a_subject_of_several_kib_gets_through_s6_tlsds_read() {
    use std::time::Duration;
    const SHIM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/s6-tlsd-shim");
    let cert = several_kib_subject();
    let dir = tmpdir("long-subject");
    let env_out = dir.join("env");
    let app = write_file(
        &dir,
        "app",
        format!(
            "#!/bin/sh\ntr '\\0' '\\n' </proc/$$/environ >{}\necho ok\n",
            env_out.display()
        )
        .as_bytes(),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o755)).unwrap();

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let config = with_cert(&cert);
    let client = std::thread::spawn(move || {
        let sock = std::net::TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let conn = rustls::ClientConnection::new(config, "localhost".try_into().unwrap()).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, sock);
        let mut got = Vec::new();
        // The engine ends with a bare FIN (no -S): an error after "ok".
        let _ = std::io::Read::read_to_end(&mut tls, &mut got);
        got
    });
    let (sock, _) = listener.accept().unwrap();
    let mut shim = Command::new(SHIM);
    shim.args(["-y", "--"])
        .arg(&app)
        .envs(key_env(default_keys()))
        .env("CAFILE", &client_ca().pem_path)
        .env("S6_TLSD_IO", BIN)
        .stdin(std::os::fd::OwnedFd::from(sock.try_clone().unwrap()))
        .stdout(std::os::fd::OwnedFd::from(sock))
        .stderr(std::process::Stdio::piped());
    let mut child = shim.spawn().expect("tests/support/s6-tlsd-shim (python3)");
    let status = wait_or_kill(&mut child, Duration::from_secs(30), || {
        "the shim never ended".into()
    });
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{status}: {err}");
    assert_eq!(client.join().unwrap(), b"ok\n");
    let env = std::fs::read_to_string(&env_out).unwrap();
    assert!(
        env.lines().any(|l| l == "SSL_PEER_CERT_SUBJECT=<invalid>"),
        "{env}"
    );
    let hash = format!("SSL_PEER_CERT_HASH=SHA256:{}", hash_hex(&cert.der));
    assert!(env.lines().any(|l| l == hash), "{env}");
}

/// Issue 26 item 4: a CA-issued certificate whose subject holds a newline,
/// a CR, an ESC (and in every attribute reported, other control or
/// separator characters) writes no line of its choosing into the log:
/// the `-v 2` handshake line stays one line, each control character
/// escaped, a newline as `\n` (a literal backslash-n would be `\\n`), and
/// the `]` that ends the subject in that line escaped too. The block keeps
/// BearSSL's form, which s6-tlsd and the application read.
#[test]
fn a_subject_with_control_characters_cannot_forge_a_log_line() {
    let cert = client_cert_with_subject(&[
        (DnType::CountryName, "F\u{7}R"),
        (DnType::StateOrProvinceName, "a\tb\u{7f}"),
        (DnType::LocalityName, "l\u{85}\u{2028}\u{202e}x"),
        (DnType::OrganizationName, "o\r\u{1b}[2Kx"),
        (DnType::OrganizationalUnitName, "u] resumed \\n"),
        (
            DnType::CommonName,
            "alice\ns6-tlsd-io: fatal: forged\r\n\u{1b}[1A",
        ),
    ]);
    let e = cafile().args(&["-y", "-v", "2"]).start();
    let tls = connect(&e, with_cert(&cert), "localhost");
    let (block, exit) = one_byte_and_block(e, tls);
    assert_eq!(exit.code, Some(0), "{}", exit.raw_stderr);
    assert_eq!(
        as_map(&block)["SSL_PEER_CERT_SUBJECT"].as_deref(),
        Some(
            "C=F\u{7}R, ST=a\tb\u{7f}, L=l\u{85}\u{2028}\u{202e}x, O=o\r\u{1b}[2Kx, \
OU=u] resumed \\\\n, CN=alice\\\ns6-tlsd-io: fatal: forged\r\\\n\u{1b}[1A"
        )
    );
    let lines: Vec<&str> = exit.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{:?}", exit.raw_stderr);
    assert_unforged(&exit.raw_stderr);
    assert!(
        lines[0].ends_with(
            " peer=[C=F\\x07R, ST=a\\tb\\x7f, L=l\\u{85}\\u{2028}\\u{202e}x, O=o\\r\\x1b[2Kx, \
OU=u\\] resumed \\\\n, CN=alice\\ns6-tlsd-io: fatal: forged\\r\\n\\x1b[1A]"
        ),
        "{:?}",
        lines[0]
    );
}
