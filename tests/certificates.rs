//! Server certificates as they are found in the wild (issue 27): made the
//! old way, by `openssl x509 -req` without an extensions file (X.509
//! version 1), signed by a version 1 CA or by one that has expired, with a
//! critical extension nobody knows, in PEM blocks of the legacy label.
//! Upstream's BearSSL engine serves them, and so does this one: its own
//! certificate is judged by the client, not by the engine. The key must
//! still match it. Client certificates, which the engine does judge, stay
//! strictly verified.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::client::*;
use common::*;

/// A certificate file and its key file.
struct Pair {
    cert: PathBuf,
    key: PathBuf,
}

impl Pair {
    /// `cert` and `key` (PEM) written to files in a new directory.
    fn written(tag: &str, cert: &str, key: &str) -> Pair {
        let dir = tmpdir(tag);
        let pair = Pair {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&pair.cert, cert).unwrap();
        std::fs::write(&pair.key, key).unwrap();
        pair
    }

    fn env(&self) -> Vec<(String, String)> {
        pair_env(&self.cert, &self.key)
    }
}

const RSA: &[&str] = &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"];
const P256: &[&str] = &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];

/// A new key of `alg` (`openssl genpkey` options) and a certificate for
/// `subject`, made the old way: `openssl req -new`, then `openssl x509
/// -req` without an extensions file, which makes an X.509 version 1
/// certificate, signed by `ca` (or by its own key).
fn v1(dir: &Path, tag: &str, alg: &[&str], subject: &str, ca: Option<&Pair>) -> Pair {
    let path = |ext: &str| dir.join(format!("{tag}.{ext}")).display().to_string();
    let (key, csr, cert) = (path("key"), path("csr"), path("pem"));
    openssl(&[&["genpkey", "-out", &key][..], alg].concat());
    openssl(&["req", "-new", "-key", &key, "-subj", subject, "-out", &csr]);
    let mut args = vec!["x509", "-req", "-in", &csr, "-days", "30", "-out", &cert];
    let (ca_cert, ca_key);
    match ca {
        None => args.extend(["-signkey", &key]),
        Some(ca) => {
            (ca_cert, ca_key) = (ca.cert.display().to_string(), ca.key.display().to_string());
            args.extend(["-CA", &ca_cert, "-CAkey", &ca_key, "-set_serial", "4242"]);
        }
    }
    openssl(&args);
    let text = String::from_utf8(openssl(&["x509", "-noout", "-text", "-in", &cert])).unwrap();
    assert!(text.contains("Version: 1 (0x0)"), "not version 1:\n{text}");
    Pair {
        cert: cert.into(),
        key: key.into(),
    }
}

/// The test CA (tests/common), its key written out for openssl.
fn test_ca(dir: &Path) -> Pair {
    let key = dir.join("test-ca.key");
    std::fs::write(&key, ca().key.serialize_pem()).unwrap();
    Pair {
        cert: ca().pem_path.clone(),
        key,
    }
}

/// An RSA version 1 certificate for CN=localhost (no subjectAltName: the
/// clients match the name on the CN), signed by the test CA: a service's
/// certificate of an internal CA, made the old way. Shared by the tests.
fn v1_leaf() -> &'static Pair {
    static PAIR: OnceLock<Pair> = OnceLock::new();
    PAIR.get_or_init(|| {
        let dir = tmpdir("v1-leaf");
        v1(&dir, "leaf", RSA, "/CN=localhost", Some(&test_ca(&dir)))
    })
}

/// An engine (`-S`) serving `pair` to `openssl s_client` with the
/// arguments `args` makes for the port: the handshake done, a line from the
/// application read, both ends gone well. What s_client printed.
fn served_to_s_client(pair: &Pair, args: impl FnOnce(u16) -> Vec<String>) -> String {
    let (listener, port) = listen();
    let mut client = Client::start("openssl", &args(port));
    let mut e = accept(
        spawn().env(pair.env()).args(&["-S"]),
        &listener,
        &mut client,
    );
    s_client_hello_and_close(&mut client, &mut e);
    client.stdout()
}

// ------------------------------------------------------------ version 1

#[test]
fn a_version_1_certificate_is_served_to_openssl_s_client_which_verifies_it() {
    let out = served_to_s_client(v1_leaf(), |port| {
        let name = ["-servername", "localhost", "-verify_hostname", "localhost"];
        s_client_args(port, &[&name[..], &["-ign_eof"]].concat())
    });
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    assert!(out.contains("Verified peername: localhost"), "{out}");
}

#[test]
fn a_version_1_certificate_is_served_to_curl_which_verifies_it() {
    let (listener, port) = listen();
    let url = format!("https://localhost:{port}/");
    let mut client = Client::start("curl", &curl_args(port, &[&url]));
    let mut e = accept(spawn().env(v1_leaf().env()), &listener, &mut client);
    let mut request = Vec::new();
    while !request.ends_with(b"\r\n\r\n") {
        request.extend(read_app(&mut e, 1));
    }
    e.app_tx()
        .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nhello\n")
        .unwrap();
    e.close_app_tx();
    let status = client.wait_exit();
    assert!(status.success(), "{}", client.transcript());
    assert_eq!(client.stdout(), "hello\n");
    assert_eq!(e.wait_exit().code, Some(0));
}

#[test]
fn a_version_1_certificate_is_served_to_gnutls_cli_which_verifies_it() {
    let (listener, port) = listen();
    let mut client = Client::start("gnutls-cli", &gnutls_cli_args(port, &[]));
    let mut e = accept(spawn().env(v1_leaf().env()), &listener, &mut client);
    client.wait_stdout("- Handshake was completed");
    assert!(
        client
            .stdout()
            .contains("- Status: The certificate is trusted."),
        "{}",
        client.transcript()
    );
    e.close_app_tx();
    client.close_stdin();
    client.wait_exit();
    e.wait_exit();
}

/// rustls (webpki) takes no version 1 certificate, ours or anyone's: a
/// rustls client refuses the server's itself. This pins it, for the
/// reference pages, which say which clients take one.
#[test]
fn rustls_clients_refuse_a_version_1_certificate_themselves() {
    let mut e = spawn().env(v1_leaf().env()).start();
    let refused = try_connect(&e, tls13(), "localhost")
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        refused.as_deref(),
        Some("invalid peer certificate: Other(OtherError(UnsupportedCertVersion))")
    );
    let exit = e.wait_exit();
    assert_eq!(exit.code, Some(98), "{}", exit.stderr);
}

#[test]
fn check_reports_a_version_1_certificate_without_error() {
    let (code, out, err) = check(&[], &v1_leaf().env());
    assert_eq!((code, err.as_str()), (Some(0), ""), "{out}");
    assert!(
        out.contains(
            ": subject CN=localhost; names (none); RSA 2048 bits; 1 certificate; expires "
        ),
        "{out}"
    );
}

/// A version 1 CA (made by `openssl x509 -req -signkey`) and a version 1
/// leaf it signed, both served; openssl verifies the chain against that CA.
#[test]
fn a_chain_with_a_version_1_ca_is_served_and_checked() {
    let dir = tmpdir("v1-ca");
    let ca = v1(&dir, "ca", P256, "/CN=old internal CA", None);
    let leaf = v1(&dir, "leaf", P256, "/CN=localhost", Some(&ca));
    let chain = Pair {
        cert: dir.join("chain.pem"),
        key: leaf.key,
    };
    let pem = [
        std::fs::read(&leaf.cert).unwrap(),
        std::fs::read(&ca.cert).unwrap(),
    ]
    .concat();
    std::fs::write(&chain.cert, pem).unwrap();

    let (code, out, err) = check(&[], &chain.env());
    assert_eq!((code, err.as_str()), (Some(0), ""), "{out}");
    assert!(
        out.contains("; ECDSA P-256; chain of 2 certificates; "),
        "{out}"
    );

    let ca_file = ca.cert.display().to_string();
    let out = served_to_s_client(&chain, |port| {
        let connect = format!("127.0.0.1:{port}");
        ["s_client", "-connect", &connect, "-CAfile", &ca_file]
            .iter()
            .chain(&["-verify_return_error", "-verify_hostname", "localhost"])
            .chain(&["-showcerts", "-ign_eof"])
            .map(|s| s.to_string())
            .collect()
    });
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    assert!(out.contains(" 1 s:CN = old internal CA"), "{out}");
}

/// The key check stays: a version 1 certificate with another key is
/// refused at start-up, and by `-t`, with the mismatch's own words.
#[test]
fn a_key_that_does_not_match_a_version_1_certificate_is_refused_saying_so() {
    let dir = tmpdir("v1-mismatch");
    let other = v1(&dir, "other", RSA, "/CN=other", None);
    let pair = Pair {
        cert: v1_leaf().cert.clone(),
        key: other.key,
    };
    let message = format!(
        "the private key in KEYFILE file {} does not match the certificate in CERTFILE file {}",
        pair.key.display(),
        pair.cert.display()
    );
    assert_eq!(
        startup_failure(&[], pair.env()),
        (Some(96), fatal(&message))
    );
    let (code, _, err) = check(&[], &pair.env());
    assert_eq!(
        (code, err),
        (Some(96), format!("s6-tlsd-io: error: {message}\n"))
    );
}

/// What the engine judges, it judges strictly: a version 1 client
/// certificate, signed by a trusted CA, is refused. (A rustls client does
/// not even present one: openssl does.)
#[test]
fn a_version_1_client_certificate_is_refused() {
    let dir = tmpdir("v1-client");
    let client = v1(&dir, "client", P256, "/CN=client", Some(&test_ca(&dir)));
    let (cert, key) = (
        client.cert.display().to_string(),
        client.key.display().to_string(),
    );
    let (listener, port) = listen();
    let mut client = Client::start(
        "openssl",
        &s_client_args(port, &["-cert", &cert, "-key", &key, "-ign_eof"]),
    );
    let spawn = spawn()
        .set("CAFILE", ca().pem_path.to_str().unwrap())
        .args(&["-y"]);
    let mut e = accept(spawn, &listener, &mut client);
    let exit = e.wait_exit();
    assert_eq!(exit.code, Some(98), "{}", exit.stderr);
    assert_eq!(
        exit.stderr,
        fatal(
            "the TLS engine closed the connection during the handshake: \
             invalid peer certificate: Other(OtherError(UnsupportedCertVersion))"
        )
    );
    client.close_stdin();
    client.wait_exit();
    assert!(
        client.stderr().contains("alert certificate unknown"),
        "{}",
        client.transcript()
    );
}

// ------------------------------------------------------------ the rest

/// A CA certificate of the chain has expired: the chain is served (a
/// client that holds the CA as its trust anchor does not use the chain's
/// copy: rustls verifies), and `-t`, whose business is dates, reports it.
#[test]
fn a_chain_with_an_expired_ca_is_served_and_check_reports_it() {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "expired CA");
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(2010, 1, 1);
    let expired = params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &expired, &ca_key)
        .unwrap();
    let pair = Pair::written(
        "expired-ca",
        &(leaf.pem() + &expired.pem()),
        &key.serialize_pem(),
    );

    let e = spawn().env(pair.env()).start();
    let config = std::sync::Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots_of(expired.der()))
            .with_no_client_auth(),
    );
    let tls = connect(&e, config, "localhost");
    assert_eq!(tls.conn.peer_certificates().map(|c| c.len()), Some(2));
    finish(e, tls);

    let (code, _, err) = check(&[], &pair.env());
    assert_eq!(code, Some(96), "{err}");
    assert!(
        err.contains("; expired on 2010-01-01T00:00:00Z (certificate 2 of the chain) ("),
        "{err}"
    );
}

/// rustls' key check read the leaf with webpki, which refuses a
/// certificate with a critical extension it does not know: the engine
/// refused to start. Upstream serves it, and so does this engine; `-t`
/// reads its names all the same.
#[test]
fn a_certificate_with_an_unknown_critical_extension_is_served() {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let mut unknown = rcgen::CustomExtension::from_oid_content(&[1, 2, 3, 4], vec![5, 0]);
    unknown.set_criticality(true);
    params.custom_extensions.push(unknown);
    let cert = params.signed_by(&key, &ca().cert, &ca().key).unwrap();
    let pair = Pair::written("critical", &cert.pem(), &key.serialize_pem());

    let (code, out, err) = check(&[], &pair.env());
    assert_eq!((code, err.as_str()), (Some(0), ""), "{out}");
    assert!(out.contains("; names localhost; ECDSA P-256; "), "{out}");

    // openssl does not know the extension either, and says so; the
    // handshake is done all the same.
    let out = served_to_s_client(&pair, |port| {
        s_client_args(port, &["-ign_eof"])
            .into_iter()
            .filter(|a| a != "-verify_return_error")
            .collect()
    });
    assert!(
        out.contains("Verify return code: 34 (unhandled critical extension)"),
        "{out}"
    );
}

/// Upstream reads `X509 CERTIFICATE` blocks (RFC 7468's legacy label) as
/// it reads `CERTIFICATE` ones. Such a block was skipped here: a file of
/// them was refused, and one in a chain silently left out of it.
#[test]
fn certificate_blocks_of_the_legacy_label_are_read() {
    let keys = default_keys();
    let legacy = ca()
        .cert
        .pem()
        .replace(
            "-----BEGIN CERTIFICATE-----",
            "-----BEGIN X509 CERTIFICATE-----",
        )
        .replace(
            "-----END CERTIFICATE-----",
            "-----END X509 CERTIFICATE-----",
        );
    let leaf_pem =
        &keys.cert_pem[..keys.cert_pem.find("-----END CERTIFICATE-----\n").unwrap() + 26];
    let dir = tmpdir("legacy-label");
    let pair = Pair {
        cert: dir.join("chain.pem"),
        key: keys.key.clone(),
    };
    std::fs::write(&pair.cert, format!("{leaf_pem}{legacy}")).unwrap();
    let (code, out, err) = check(&[], &pair.env());
    assert_eq!((code, err.as_str()), (Some(0), ""), "{out}");
    assert!(out.contains("; chain of 2 certificates; "), "{out}");
    let e = spawn().env(pair.env()).start();
    let tls = connect(&e, tls13(), "localhost");
    assert_eq!(tls.conn.peer_certificates().map(|c| c.len()), Some(2));
    finish(e, tls);
}

/// Dates that `-t` cannot read (here a notBefore whose tag says
/// GeneralizedTime, of a UTCTime's digits): a connection serves the
/// certificate all the same, so `-t` warns and does not fail.
#[test]
fn dates_check_cannot_read_are_a_warning() {
    let keys = default_keys();
    // Validity: a SEQUENCE of a UTCTime (13 digits) and a GeneralizedTime.
    let at = keys
        .cert_der
        .windows(4)
        .position(|w| w == [0x30, 0x20, 0x17, 0x0d])
        .expect("rcgen's validity");
    let mut odd = keys.cert_der.clone();
    odd[at + 2] = 0x18;
    let dir = tmpdir("odd-dates");
    let pair = Pair {
        cert: dir.join("cert.der"),
        key: keys.key.clone(),
    };
    std::fs::write(&pair.cert, odd).unwrap();
    let (code, out, err) = check(&[], &pair.env());
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(
        err,
        format!(
            "s6-tlsd-io: warning: CERTFILE {} KEYFILE {}: a certificate's validity cannot be \
             decoded: its dates are not checked\n",
            pair.cert.display(),
            pair.key.display()
        )
    );
}
