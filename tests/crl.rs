//! Revoked client certificates: CRLs in `CADIR` (`XXXXXXXX.rN`, as
//! `openssl rehash` names them) and in `CRLFILE`, made at test time by
//! `openssl ca -revoke` and `openssl ca -gencrl`; the clients are
//! `openssl s_client -cert`, curl `--cert` and the rustls client. A
//! revocation also stops a session saved before it (`s_client -sess_in`).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::client::{accept, listen, s_client_args, s_client_hello_and_close, Client};
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

// ------------------------------------------ revocation across resumption

/// A CA of one test's own, run with `openssl ca`, and its client carol in
/// good standing: `crl.pem` lists nothing yet; `cadir` has the CA and no
/// CRL at all (the CA publishes its first one once carol is revoked).
fn carols_ca(tag: &str) -> PathBuf {
    let dir = tmpdir(tag);
    sh(
        &dir,
        r#"
printf '[ca]\ndefault_ca = c\n[c]\ndatabase = index.txt\ncrlnumber = crlnumber\n' > ca.cnf
printf 'default_md = sha256\ndefault_crl_days = 1\n' >> ca.cnf
: > index.txt
echo 01 > crlnumber
key="-nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -days 3"
openssl req -x509 $key -subj "/CN=Client CA" -keyout ca.key -out ca.pem 2>/dev/null
openssl req -x509 -CA ca.pem -CAkey ca.key $key -subj "/O=Example/CN=carol" \
  -addext basicConstraints=CA:FALSE -addext extendedKeyUsage=clientAuth \
  -keyout carol.key -out carol.pem 2>/dev/null
openssl x509 -in carol.pem -noout -serial > carol.serial
openssl ca -config ca.cnf -cert ca.pem -keyfile ca.key -gencrl -out crl.pem 2>/dev/null
mkdir cadir
cp ca.pem cadir/
openssl rehash cadir
head -c 32 /dev/urandom > tickets
chmod 600 tickets
"#,
    );
    dir
}

/// The CA revokes carol and publishes the CRL, in both places.
fn revoke_carol(dir: &Path) {
    sh(
        dir,
        r#"
ca="openssl ca -config ca.cnf -cert ca.pem -keyfile ca.key"
$ca -revoke carol.pem 2>/dev/null
$ca -gencrl -out crl.pem 2>/dev/null
cp crl.pem cadir/
openssl rehash cadir
"#,
    );
}

/// How one `openssl s_client` connection to a new engine went.
enum Outcome {
    /// In: s_client's "New" or "Reused", and the notification block.
    In(String, Vec<(String, Option<String>)>),
    /// Refused: s_client's stderr, and the engine's exit; the application
    /// got no block and no byte.
    Refused(String, Exit),
}

/// `openssl s_client` with `extra` (carol's certificate, -sess_in/out)
/// against an engine started by `spawn`.
fn s_client_to(spawn: Spawn, extra: &[impl AsRef<str>]) -> Outcome {
    let (listener, port) = listen();
    let mut args = vec!["-servername", "localhost", "-ign_eof"];
    args.extend(extra.iter().map(AsRef::as_ref));
    let mut client = Client::start("openssl", &s_client_args(port, &args));
    let mut e = accept(spawn, &listener, &mut client);
    let mut raw = Vec::new();
    let notif = e.notif.as_mut().expect("engine started with -d");
    std::io::Read::read_to_end(notif, &mut raw).unwrap();
    if raw.is_empty() {
        // stdin stays open: s_client leaves on the alert (under TLS 1.3 it
        // comes after s_client has finished its handshake), not on its EOF.
        client.wait_exit();
        let exit = e.wait_exit();
        let mut got = Vec::new();
        std::io::Read::read_to_end(e.app_rx(), &mut got).unwrap();
        assert!(got.is_empty(), "the application got {got:?}");
        return Outcome::Refused(client.stderr(), exit);
    }
    let how = s_client_hello_and_close(&mut client, &mut e);
    Outcome::In(how, parse_notification(&raw))
}

/// An engine for carol's CA in `dir` (`carols_ca`): its ticket keys,
/// `flag` (`-y` or `-Y`), `-S -v 2`, and the CA as `source` says: CAFILE
/// and CRLFILE for "CRLFILE", else CADIR.
fn carols_engine(dir: &Path, source: &str, flag: &str) -> Spawn {
    let path = |name: &str| dir.join(name).display().to_string();
    let s = spawn()
        .set("TLS_TICKET_KEYFILE", &path("tickets"))
        .args(&[flag, "-S", "-v", "2"]);
    match source {
        "CRLFILE" => s
            .set("CAFILE", &path("ca.pem"))
            .set("CRLFILE", &path("crl.pem")),
        _ => s.set("CADIR", &path("cadir")),
    }
}

/// Issue 19: carol saves her session, resumes it (saving the ticket of the
/// resumed connection), is revoked, then comes back with that ticket: she
/// is refused exactly as a full handshake refuses her (alert
/// `certificate_revoked`, her serial in the message), the application
/// gets nothing; under `CRLFILE` (a CRL that listed nothing) and under
/// `CADIR` (no CRL at all until the revocation), `-y` and `-Y`. Under `-Y`
/// the same session without her certificate is a new, anonymous one.
#[test]
fn a_session_saved_before_its_certificate_was_revoked_does_not_resume() {
    for source in ["CRLFILE", "CADIR"] {
        for flag in ["-y", "-Y"] {
            let case = format!("{source} {flag}");
            let dir = carols_ca("carol");
            let path = |name: &str| dir.join(name).display().to_string();
            let spawn = || carols_engine(&dir, source, flag);
            let (cert, key) = (path("carol.pem"), path("carol.key"));
            let (first, second) = (path("first.sess"), path("second.sess"));
            let carol = ["-cert", &cert, "-key", &key];
            let with = |session: &[&str]| -> Vec<String> {
                carol.iter().chain(session).map(|s| s.to_string()).collect()
            };
            let value = |block: &[(String, Option<String>)], name: &str| {
                as_map(block).get(name).cloned().flatten()
            };
            let subject =
                |block: &[(String, Option<String>)]| value(block, "SSL_PEER_CERT_SUBJECT");
            let carol_subject = Some("O=Example, CN=carol".to_string());
            match s_client_to(spawn(), &with(&["-sess_out", &first])) {
                Outcome::In(how, block) => {
                    assert_eq!(how, "New", "{case}");
                    assert_eq!(subject(&block), carol_subject, "{case}");
                }
                Outcome::Refused(_, exit) => panic!("{case}: {exit:?}"),
            }
            match s_client_to(spawn(), &with(&["-sess_in", &first, "-sess_out", &second])) {
                Outcome::In(how, block) => {
                    assert_eq!(how, "Reused", "{case}");
                    assert_eq!(subject(&block), carol_subject, "{case}");
                }
                Outcome::Refused(_, exit) => panic!("{case}: {exit:?}"),
            }
            revoke_carol(&dir);
            let serial = std::fs::read_to_string(dir.join("carol.serial")).unwrap();
            let serial = serial.trim().trim_start_matches("serial=");
            match s_client_to(spawn(), &with(&["-sess_in", &second])) {
                Outcome::Refused(client, exit) => {
                    assert!(client.contains("certificate revoked"), "{case}: {client}");
                    assert_eq!(exit.code, Some(98), "{case}: {}", exit.stderr);
                    let why = format!(
                        "invalid peer certificate: Revoked: \
                         the certificate with serial {serial} is revoked\n"
                    );
                    assert!(exit.stderr.ends_with(&why), "{case}: {}", exit.stderr);
                    assert!(
                        exit.stderr.contains(
                            "ticket refused, full handshake: \
                             its client certificate no longer verifies"
                        ),
                        "{case}: {}",
                        exit.stderr
                    );
                }
                Outcome::In(how, _) => panic!("{case}: revoked carol got in ({how})"),
            }
            let anonymous = s_client_to(spawn(), &["-sess_in", &second]);
            match (flag, anonymous) {
                ("-Y", Outcome::In(how, block)) => {
                    assert_eq!(how, "New", "{case}");
                    assert_eq!(subject(&block), None, "{case}");
                    assert_eq!(value(&block, "SSL_PEER_CERT_HASH"), None, "{case}");
                }
                ("-y", Outcome::Refused(_, exit)) => {
                    assert_eq!(exit.code, Some(98), "{case}: {}", exit.stderr);
                    assert!(
                        exit.stderr.contains("peer sent no certificates"),
                        "{case}: {}",
                        exit.stderr
                    );
                }
                (_, Outcome::In(how, block)) => panic!("{case}: {how} {block:?}"),
                (_, Outcome::Refused(_, exit)) => panic!("{case}: {exit:?}"),
            }
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}

/// Issue 26: rustls opens every PSK identity of a hello until one resumes,
/// and checks a ticket's client chain (ticket/recheck.rs) before any binder. One
/// captured ticket of carol's, revoked since, offered as often as fits in
/// one 64 KiB ClientHello (tlslite-ng, tests/support/ticket_copies.py; the
/// hello offers another suite, so that no copy can resume and rustls opens
/// each in turn) costs one verification of her chain, not one a copy: each
/// verification that refuses says so at `-v 2`.
#[test]
fn a_ticket_repeated_in_one_hello_costs_one_verification() {
    const SCRIPT: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/ticket_copies.py"
    );
    let dir = carols_ca("copies");
    let path = |name: &str| dir.join(name).display().to_string();
    let spawn = || carols_engine(&dir, "CRLFILE", "-Y");
    let (listener, port) = listen();
    let args = [
        SCRIPT.to_string(),
        port.to_string(),
        path("carol.pem"),
        path("carol.key"),
    ];
    let mut client = Client::start("/usr/bin/python3", &args);
    let mut e = accept(spawn(), &listener, &mut client);
    e.close_app_tx();
    let exit = e.wait_exit();
    assert_eq!(
        exit.code,
        Some(0),
        "{}\n{}",
        exit.stderr,
        client.transcript()
    );
    client.wait_stdout("ticket ");
    revoke_carol(&dir);
    client.send(b"go\n");
    let mut e = accept(spawn(), &listener, &mut client);
    let exit = e.wait_exit();
    assert!(client.wait_exit().success(), "{}", client.transcript());
    let out = client.stdout();
    let copies: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("copies "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(copies >= 20, "{out}");
    assert!(out.contains("\nanswered\n"), "{out}");
    let verifications = exit
        .stderr
        .matches("ticket refused, full handshake: its client certificate no longer verifies")
        .count();
    assert_eq!(verifications, 1, "{copies} copies: {}", exit.stderr);
    std::fs::remove_dir_all(&dir).unwrap();
}
