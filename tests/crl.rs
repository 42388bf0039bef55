//! Revoked client certificates: CRLs in `CADIR` (`XXXXXXXX.rN`, as
//! `openssl rehash` names them) and in `CRLFILE`, made at test time by
//! `openssl ca -revoke` and `openssl ca -gencrl`; the clients are
//! `openssl s_client -cert`, curl `--cert` and the rustls client.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::client::{accept, listen, s_client_args, Client};
use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{AlertDescription, ClientConfig};

/// A client CA run with `openssl ca`: alice is in good standing, bob is
/// revoked; `crl.pem` is current, `expired.pem` lists the same revocation
/// but its nextUpdate is in 2020; `dir` is a CADIR with the CA and the
/// current CRL, rehashed.
struct Pki {
    dir: PathBuf,
    cadir: PathBuf,
}

impl Pki {
    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

fn sh(dir: &Path, script: &str) {
    let out = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = tmpdir("crl");
        sh(
            &dir,
            r#"
cat > ca.cnf <<EOF
[ ca ]
default_ca = crl_ca
[ crl_ca ]
database = index.txt
crlnumber = crlnumber
default_md = sha256
default_crl_days = 1
EOF
: > index.txt
echo 01 > crlnumber
key="-nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -days 3"
for ca in ca other-ca; do
  openssl req -x509 $key -subj "/CN=Client $ca" -keyout $ca.key -out $ca.pem 2>/dev/null
done
for who in alice:ca bob:ca carol:other-ca; do
  name=${who%%:*} ca=${who#*:}
  openssl req -x509 -CA $ca.pem -CAkey $ca.key $key -subj "/CN=$name" \
    -addext basicConstraints=CA:FALSE -addext extendedKeyUsage=clientAuth \
    -keyout $name.key -out $name.pem 2>/dev/null
done
ca="openssl ca -config ca.cnf -cert ca.pem -keyfile ca.key"
$ca -revoke bob.pem 2>/dev/null
$ca -gencrl -out crl.pem 2>/dev/null
$ca -gencrl -crl_lastupdate 20200101000000Z -crl_nextupdate 20200102000000Z \
  -out expired.pem 2>/dev/null
openssl x509 -in bob.pem -noout -serial > bob.serial
cat ca.pem other-ca.pem > both-cas.pem
mkdir cadir
cp ca.pem crl.pem cadir/
openssl rehash cadir
"#,
        );
        Pki {
            cadir: dir.join("cadir"),
            dir,
        }
    })
}

fn bob_serial() -> String {
    let s = std::fs::read_to_string(pki().dir.join("bob.serial")).unwrap();
    s.trim().trim_start_matches("serial=").to_string()
}

fn with_crlfile(crl: &str) -> Spawn {
    spawn()
        .set("CAFILE", &pki().path("both-cas.pem"))
        .set("CRLFILE", &pki().path(crl))
        .args(&["-y", "-S"])
}

fn with_cadir() -> Spawn {
    spawn()
        .set("CADIR", pki().cadir.to_str().unwrap())
        .args(&["-y", "-S"])
}

fn client(name: &str) -> Arc<ClientConfig> {
    let cert = CertificateDer::from_pem_file(pki().dir.join(format!("{name}.pem"))).unwrap();
    let key = PrivateKeyDer::from_pem_file(pki().dir.join(format!("{name}.key"))).unwrap();
    client_config_with_cert(cert.as_ref(), key.secret_der())
}

/// The rustls client's handshake and first read: the alert it received, if
/// any (under TLS 1.3 the refusal comes after the client has finished).
fn alert_received(e: &Engine, config: Arc<ClientConfig>) -> Option<String> {
    let mut sock = e.client().try_clone().unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut conn = rustls::ClientConnection::new(config, "localhost".try_into().unwrap()).unwrap();
    let mut stream = rustls::Stream::new(&mut conn, &mut sock);
    let mut b = [0u8; 1];
    match std::io::Read::read(&mut stream, &mut b) {
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    }
}

fn revoked_message() -> String {
    fatal(&format!(
        "the TLS engine closed the connection during the handshake: invalid peer certificate: \
Revoked: the certificate with serial {} is revoked",
        bob_serial()
    ))
}

#[test]
fn a_revoked_certificate_gets_certificate_revoked_and_its_serial_in_the_message() {
    for spawn in [with_crlfile("crl.pem"), with_cadir()] {
        let mut e = spawn.start();
        let got = alert_received(&e, client("bob"));
        let want = rustls::Error::AlertReceived(AlertDescription::CertificateRevoked);
        assert_eq!(got, Some(want.to_string()));
        let exit = e.wait_exit();
        assert_eq!(exit.code, Some(98));
        assert_eq!(exit.stderr, revoked_message());
    }
}

#[test]
fn a_certificate_in_good_standing_and_one_from_a_ca_without_crl_get_in() {
    for (spawn, who) in [
        (with_crlfile("crl.pem"), "alice"),
        (with_crlfile("crl.pem"), "carol"),
        (with_cadir(), "alice"),
        // carol's CA has no CRL: the expired one is none of her business
        (with_crlfile("expired.pem"), "carol"),
    ] {
        let mut e = spawn.start();
        let tls = connect(&e, client(who), "localhost");
        let block = as_map(&e.notification());
        assert_eq!(
            block["SSL_PEER_CERT_SUBJECT"].as_deref(),
            Some(format!("CN={who}").as_str())
        );
        finish(e, tls);
    }
}

#[test]
fn an_expired_crl_refuses_the_certificates_of_its_ca() {
    for who in ["alice", "bob"] {
        let mut e = with_crlfile("expired.pem").start();
        let got = alert_received(&e, client(who));
        let want = rustls::Error::AlertReceived(AlertDescription::UnknownCA);
        assert_eq!(got, Some(want.to_string()), "{who}");
        let exit = e.wait_exit();
        assert_eq!(exit.code, Some(98));
        assert!(
            exit.stderr
                .contains("invalid peer certificate: certificate revocation list expired"),
            "{}",
            exit.stderr
        );
    }
}

#[test]
fn a_bad_crl_is_a_start_up_error_naming_the_file() {
    let dir = tmpdir("bad-crl");
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a CRL\n").unwrap();
    let (code, stderr) = startup_failure(&["-y"], {
        let mut env = key_env(default_keys());
        env.push(("CAFILE".into(), pki().path("ca.pem")));
        env.push(("CRLFILE".into(), garbage.display().to_string()));
        env
    });
    assert_eq!(code, Some(96));
    assert_eq!(
        stderr,
        fatal(&format!(
            "invalid CRLFILE file {}: no CRL found (no X509 CRL block, nor a DER CRL)",
            garbage.display()
        ))
    );

    // a certificate where a CRL should be, in a CADIR
    let cadir = dir.join("cadir");
    std::fs::create_dir(&cadir).unwrap();
    std::fs::copy(pki().dir.join("ca.pem"), cadir.join("01234567.0")).unwrap();
    let bad = cadir.join("01234567.r0");
    let der = CertificateDer::from_pem_file(pki().dir.join("ca.pem")).unwrap();
    std::fs::File::create(&bad)
        .unwrap()
        .write_all(der.as_ref())
        .unwrap();
    let (code, stderr) = startup_failure(&["-Y"], {
        let mut env = key_env(default_keys());
        env.push(("CADIR".into(), cadir.display().to_string()));
        env
    });
    assert_eq!(code, Some(96));
    assert!(
        stderr.starts_with(
            fatal(&format!(
                "invalid CADIR file {}: not a CRL that can be decoded",
                bad.display()
            ))
            .trim_end()
        ),
        "{stderr}"
    );

    let (code, stderr) = startup_failure(&["-Y"], {
        let mut env = key_env(default_keys());
        env.push(("CAFILE".into(), pki().path("ca.pem")));
        env.push(("CRLFILE".into(), dir.join("missing").display().to_string()));
        env
    });
    assert_eq!(code, Some(96));
    assert_eq!(
        stderr,
        fatal(&format!(
            "unable to read CRLFILE file {}: No such file or directory",
            dir.join("missing").display()
        ))
    );
}

#[test]
fn crls_are_only_read_when_client_certificates_are_asked_for() {
    let mut e = spawn().set("CRLFILE", "/nonexistent").start();
    let tls = connect(&e, tls13(), "localhost");
    assert!(!e.notification().is_empty());
    finish(e, tls);
}

// ------------------------------------------------------------ real clients

#[test]
fn openssl_s_client_with_a_revoked_certificate_is_refused() {
    let (listener, port) = listen();
    let args = s_client_args(
        port,
        &[
            "-cert",
            &pki().path("bob.pem"),
            "-key",
            &pki().path("bob.key"),
        ],
    );
    let mut client = Client::start("openssl", &args);
    let mut e = accept(with_cadir(), &listener, &mut client);
    // stdin stays open: s_client leaves on the alert, not on its EOF (under
    // TLS 1.3 the alert comes after s_client has finished its handshake).
    client.send(b"ping\n");
    client.wait_exit();
    assert!(
        client.stderr().contains("certificate revoked"),
        "{}",
        client.transcript()
    );
    let exit = e.wait_exit();
    assert_eq!(exit.code, Some(98));
    assert_eq!(exit.stderr, revoked_message());
}

#[test]
fn curl_with_a_revoked_certificate_is_refused_and_with_a_good_one_served() {
    let curl = |who: &str, port: u16| {
        let args: Vec<String> = [
            "-sS",
            "--max-time",
            "20",
            "--cacert",
            &ca().pem_path.display().to_string(),
            "--cert",
            &pki().path(&format!("{who}.pem")),
            "--key",
            &pki().path(&format!("{who}.key")),
            "--resolve",
            &format!("localhost:{port}:127.0.0.1"),
            &format!("https://localhost:{port}/"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Client::start("curl", &args)
    };

    let (listener, port) = listen();
    let mut client = curl("bob", port);
    let mut e = accept(with_crlfile("crl.pem"), &listener, &mut client);
    let status = client.wait_exit();
    assert!(!status.success());
    assert!(
        client.stderr().contains("certificate revoked"),
        "{}",
        client.transcript()
    );
    assert_eq!(e.wait_exit().code, Some(98));

    let (listener, port) = listen();
    let mut client = curl("alice", port);
    let mut e = accept(with_crlfile("crl.pem"), &listener, &mut client);
    let mut request = Vec::new();
    while !request.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        std::io::Read::read_exact(e.app_rx(), &mut b).unwrap();
        request.extend(b);
    }
    e.app_tx()
        .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nhello\n")
        .unwrap();
    e.close_app_tx();
    assert!(client.wait_exit().success(), "{}", client.transcript());
    assert_eq!(client.stdout(), "hello\n");
    e.close_app_rx();
    assert_eq!(e.wait_exit().code, Some(0));
}

#[test]
fn crls_are_read_after_dropping_privileges() {
    if unsafe { libc::getuid() } != 0 {
        eprintln!("not root: privilege order not tested");
        return;
    }
    // A CRLFILE only root can read: once privileges are dropped, it is
    // unreadable, which proves the order. The CA file is world-readable.
    use std::os::unix::fs::PermissionsExt;
    let dir = tmpdir("root-only-crl");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (ca, crl) = (dir.join("ca.pem"), dir.join("crl.pem"));
    std::fs::copy(pki().dir.join("ca.pem"), &ca).unwrap();
    std::fs::copy(pki().dir.join("crl.pem"), &crl).unwrap();
    std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&crl, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, stderr) = startup_failure(&["-Y"], {
        let mut env = key_env(default_keys());
        env.push(("CAFILE".into(), ca.display().to_string()));
        env.push(("CRLFILE".into(), crl.display().to_string()));
        env.push(("TLS_UID".into(), "65534".into()));
        env.push(("TLS_GID".into(), "65534".into()));
        env
    });
    assert_eq!(code, Some(96));
    assert_eq!(
        stderr,
        fatal(&format!(
            "unable to read CRLFILE file {}: Permission denied",
            crl.display()
        ))
    );
}
