//! Issue 10: session resumption across engine processes, with nothing
//! shared but the ticket key file (`TLS_TICKET_KEYFILE`). Every connection
//! here is a new engine process, as under s6-tlsd; the clients are rustls
//! (with a session store), `openssl s_client -sess_out/-sess_in` and
//! `gnutls-cli --resume`.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use common::client::{
    accept, gnutls_cli_args, listen, s_client_args, s_client_hello_and_close, Client,
};
use common::*;
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
use rustls::client::{ClientSessionMemoryCache, ClientSessionStore, Resumption};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, HandshakeKind, NamedGroup};

const VAR: &str = "TLS_TICKET_KEYFILE";

/// A key file of `keys` (32 bytes each, newest first), mode 600.
fn key_file(dir: &Path, keys: &[[u8; 32]]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("tickets");
    std::fs::write(&path, keys.concat()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn tickets() -> PathBuf {
    key_file(&tmpdir("tickets"), &[[1; 32], [2; 32]])
}

/// A rustls client session store that counts the TLS 1.3 tickets it gets.
#[derive(Debug)]
struct Counting {
    inner: ClientSessionMemoryCache,
    tickets: AtomicUsize,
}

impl ClientSessionStore for Counting {
    fn set_kx_hint(&self, n: ServerName<'static>, g: NamedGroup) {
        self.inner.set_kx_hint(n, g)
    }
    fn kx_hint(&self, n: &ServerName<'_>) -> Option<NamedGroup> {
        self.inner.kx_hint(n)
    }
    fn set_tls12_session(
        &self,
        n: ServerName<'static>,
        v: rustls::client::Tls12ClientSessionValue,
    ) {
        self.inner.set_tls12_session(n, v)
    }
    fn tls12_session(&self, n: &ServerName<'_>) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.inner.tls12_session(n)
    }
    fn remove_tls12_session(&self, n: &ServerName<'static>) {
        self.inner.remove_tls12_session(n)
    }
    fn insert_tls13_ticket(
        &self,
        n: ServerName<'static>,
        v: rustls::client::Tls13ClientSessionValue,
    ) {
        self.tickets.fetch_add(1, Ordering::SeqCst);
        self.inner.insert_tls13_ticket(n, v)
    }
    fn take_tls13_ticket(
        &self,
        n: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.inner.take_tls13_ticket(n)
    }
}

fn counting() -> Arc<Counting> {
    Arc::new(Counting {
        inner: ClientSessionMemoryCache::new(16),
        tickets: AtomicUsize::new(0),
    })
}

/// `config` with `store` as its session store.
fn storing(config: Arc<ClientConfig>, store: &Arc<Counting>) -> Arc<ClientConfig> {
    let mut config = (*config).clone();
    config.resumption = Resumption::store(store.clone());
    Arc::new(config)
}

type Block = Vec<(String, Option<String>)>;

/// One connection to a new engine: handshake, a byte each way (so that the
/// client reads the ticket that follows the handshake), both sides close.
/// The kind of handshake the client saw, the block, the engine's stderr.
fn session(
    spawn: Spawn,
    config: Arc<ClientConfig>,
    name: &str,
) -> (Option<HandshakeKind>, Block, String) {
    let mut e = spawn.start();
    let mut tls = connect(&e, config, name);
    echo(&mut e, &mut tls);
    let kind = tls.conn.handshake_kind();
    let block = e.notification();
    let exit = close_both(e, tls);
    assert_eq!(exit.code, Some(0), "{}", exit.stderr);
    (kind, block, exit.stderr)
}

#[test]
fn rustls_client_resumes_in_a_second_process_with_the_same_block() {
    let store = counting();
    let config = storing(tls13(), &store);
    let spawn = || {
        spawn()
            .set(VAR, tickets().to_str().unwrap())
            .args(&["-v", "2"])
    };
    let (kind, full, log) = session(spawn(), config.clone(), "localhost");
    assert_eq!(kind, Some(HandshakeKind::Full));
    assert_eq!(store.tickets.load(Ordering::SeqCst), 1, "one ticket");
    assert!(!log.contains("resumed"), "{log}");
    let (kind, resumed, log) = session(spawn(), config, "localhost");
    assert_eq!(kind, Some(HandshakeKind::Resumed));
    assert_eq!(resumed, full);
    assert_eq!(
        as_map(&resumed)["SSL_TLS_SNI_SERVERNAME"].as_deref(),
        Some("localhost")
    );
    assert!(
        log.contains("handshake complete: TLSv1.3 TLS_AES_256_GCM_SHA384 sni=localhost resumed\n"),
        "{log}"
    );
    // And the resumed connection brought the next ticket.
    assert_eq!(store.tickets.load(Ordering::SeqCst), 2);
}

/// With an RSA key, the full handshake signs, the resumed one does
/// without.
#[test]
fn rsa_sessions_resume_and_full_handshakes_still_sign() {
    let store = counting();
    let config = storing(tls13(), &store);
    let rsa = keys(Alg::Rsa2048, &["localhost"]);
    let tickets = tickets();
    let spawn = || spawn().keys(&rsa).set(VAR, tickets.to_str().unwrap());
    let (kind, full, _) = session(spawn(), config.clone(), "localhost");
    assert_eq!(kind, Some(HandshakeKind::Full));
    let (kind, resumed, _) = session(spawn(), config, "localhost");
    assert_eq!(kind, Some(HandshakeKind::Resumed));
    assert_eq!(resumed, full);
}

#[test]
fn off_when_the_variable_is_unset_or_empty() {
    for value in [None, Some("")] {
        let start = || match value {
            Some(v) => spawn().set(VAR, v),
            None => spawn(),
        };
        let store = counting();
        let config = storing(tls13(), &store);
        let (kind, _, _) = session(start(), config.clone(), "localhost");
        assert_eq!(kind, Some(HandshakeKind::Full));
        assert_eq!(store.tickets.load(Ordering::SeqCst), 0, "no ticket sent");
        let (kind, _, _) = session(start(), config, "localhost");
        assert_eq!(kind, Some(HandshakeKind::Full));
    }
}

#[test]
fn tls12_sessions_never_resume() {
    let store = counting();
    let config = storing(tls12(), &store);
    let spawn = || spawn().set(VAR, tickets().to_str().unwrap());
    let (kind, block, _) = session(spawn(), config.clone(), "localhost");
    assert_eq!(kind, Some(HandshakeKind::Full));
    assert_eq!(as_map(&block)["SSL_PROTOCOL"].as_deref(), Some("TLSv1.2"));
    let (kind, _, _) = session(spawn(), config, "localhost");
    assert_eq!(kind, Some(HandshakeKind::Full));
}

/// `-J` and `-K` act on a resumed connection as on a full one: a FIN
/// without close_notify is fatal under `-J`, and a resumption that
/// completes in time is not cut by `-K`.
#[test]
fn resumed_connections_keep_j_and_k() {
    let store = counting();
    let config = storing(tls13(), &store);
    let tickets = tickets();
    let start = || {
        spawn()
            .set(VAR, tickets.to_str().unwrap())
            .args(&["-J", "-K", "5000"])
    };
    let (kind, _, _) = session(start(), config.clone(), "localhost");
    assert_eq!(kind, Some(HandshakeKind::Full));
    let mut e = start().start();
    let mut tls = connect(&e, config, "localhost");
    echo(&mut e, &mut tls);
    assert_eq!(tls.conn.handshake_kind(), Some(HandshakeKind::Resumed));
    half_close(&tls.sock);
    let mut rest = Vec::new();
    std::io::Read::read_to_end(e.app_rx(), &mut rest).expect("read fdw");
    e.close_app_tx();
    let exit = e.wait_exit();
    assert_eq!(exit.code, Some(98));
    assert_eq!(
        exit.stderr,
        fatal("remote closed connection without a close_notify")
    );
}

// ------------------------------------------------------ client certificates

fn client_ca() -> &'static Ca {
    static CA: OnceLock<Ca> = OnceLock::new();
    CA.get_or_init(|| new_ca("resume client CA", "client-ca"))
}

/// A client certificate from client_ca(): its DER and its key's DER.
fn client_cert() -> (Vec<u8>, Vec<u8>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, "bob");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let ca = client_ca();
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    (cert.der().to_vec(), key.serialize_der())
}

fn with_ca(spawn: Spawn, tickets: &Path) -> Spawn {
    spawn
        .set(VAR, tickets.to_str().unwrap())
        .set("CAFILE", client_ca().pem_path.to_str().unwrap())
}

#[test]
fn resumed_sessions_keep_the_client_certificate() {
    let (der, key) = client_cert();
    let store = counting();
    let config = storing(client_config_with_cert(&der, &key), &store);
    let tickets = tickets();
    for flag in ["-Y", "-y"] {
        let start = || with_ca(spawn().args(&[flag]), &tickets);
        let (kind, full, _) = session(start(), config.clone(), "localhost");
        assert_eq!(kind, Some(HandshakeKind::Full), "{flag}");
        let (kind, resumed, _) = session(start(), config.clone(), "localhost");
        assert_eq!(kind, Some(HandshakeKind::Resumed), "{flag}");
        assert_eq!(resumed, full, "{flag}");
        let map = as_map(&resumed);
        let hash: String = sha256(&der).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            map["SSL_PEER_CERT_HASH"].as_deref(),
            Some(format!("SHA256:{hash}").as_str())
        );
        assert_eq!(map["SSL_PEER_CERT_SUBJECT"].as_deref(), Some("CN=bob"));
    }
}

/// A ticket from a session without a certificate (`-Y`) does not let a
/// client in where one is now required (`-y`); nor does a ticket with a
/// certificate carry it into a configuration that asks for none.
#[test]
fn tickets_do_not_cross_client_certificate_policies() {
    let tickets = tickets();
    let store = counting();
    let config = storing(tls13(), &store);
    let (kind, _, _) = session(
        with_ca(spawn().args(&["-Y"]), &tickets),
        config.clone(),
        "localhost",
    );
    assert_eq!(kind, Some(HandshakeKind::Full));
    assert_eq!(store.tickets.load(Ordering::SeqCst), 1);
    // Under -y the client (no certificate) is refused: no resumption.
    let mut e = with_ca(spawn().args(&["-y"]), &tickets).start();
    let attempt = try_connect(&e, config.clone(), "localhost").and_then(|mut tls| {
        tls.write_all(b"x")?;
        let mut b = [0u8; 1];
        std::io::Read::read(&mut tls, &mut b)
    });
    assert!(attempt.is_err(), "the client got in: {attempt:?}");
    let exit = e.wait_exit();
    assert_eq!(exit.code, Some(98), "{}", exit.stderr);
    assert!(
        exit.stderr.contains("peer sent no certificates"),
        "{}",
        exit.stderr
    );

    let (der, key) = client_cert();
    let config = storing(client_config_with_cert(&der, &key), &counting());
    let (kind, _, _) = session(
        with_ca(spawn().args(&["-Y"]), &tickets),
        config.clone(),
        "localhost",
    );
    assert_eq!(kind, Some(HandshakeKind::Full));
    let (kind, block, _) = session(
        spawn().set(VAR, tickets.to_str().unwrap()),
        config,
        "localhost",
    );
    assert_eq!(kind, Some(HandshakeKind::Full));
    assert_eq!(as_map(&block)["SSL_PEER_CERT_HASH"], None);
}

// ------------------------------------------------------ openssl s_client

/// One `openssl s_client` connection to a new engine with `tickets`, SNI
/// `name`, `session` flags (-sess_out/-sess_in FILE); returns "New" or
/// "Reused" as s_client says, and the block.
fn s_client(tickets: &Path, name: &str, session: &[&str]) -> (String, Block) {
    let (listener, port) = listen();
    let mut extra = vec!["-servername", name, "-ign_eof"];
    extra.extend_from_slice(session);
    let mut client = Client::start("openssl", &s_client_args(port, &extra));
    let spawn = spawn().set(VAR, tickets.to_str().unwrap()).args(&["-S"]);
    let mut e = accept(spawn, &listener, &mut client);
    let block = e.notification();
    (s_client_hello_and_close(&mut client, &mut e), block)
}

#[test]
fn openssl_resumes_across_processes_for_the_same_name_only() {
    let dir = tmpdir("s_client");
    let tickets = key_file(&dir, &[[3; 32]]);
    let sess = dir.join("session.pem");
    let sess = sess.to_str().unwrap();
    let (how, full) = s_client(&tickets, "localhost", &["-sess_out", sess]);
    assert_eq!(how, "New");
    let (how, resumed) = s_client(&tickets, "localhost", &["-sess_in", sess]);
    assert_eq!(how, "Reused");
    assert_eq!(resumed, full);
    // The same ticket for another name: a full handshake.
    let (how, block) = s_client(&tickets, "other.example", &["-sess_in", sess]);
    assert_eq!(how, "New");
    assert_eq!(
        as_map(&block)["SSL_TLS_SNI_SERVERNAME"].as_deref(),
        Some("other.example")
    );
}

/// Rotation: a new key first, the previous one after. A ticket sealed with
/// the previous key resumes after one rotation, not once the key is gone.
#[test]
fn old_key_tickets_resume_after_one_rotation_only() {
    let dir = tmpdir("rotation");
    let (a, b, c) = ([10; 32], [11; 32], [12; 32]);
    let tickets = key_file(&dir, &[a]);
    let sess = dir.join("session.pem");
    let sess = sess.to_str().unwrap();
    assert_eq!(
        s_client(&tickets, "localhost", &["-sess_out", sess]).0,
        "New"
    );
    key_file(&dir, &[b, a]);
    assert_eq!(
        s_client(&tickets, "localhost", &["-sess_in", sess]).0,
        "Reused"
    );
    key_file(&dir, &[c, b]);
    assert_eq!(
        s_client(&tickets, "localhost", &["-sess_in", sess]).0,
        "New"
    );
}

// ------------------------------------------------------ gnutls-cli

/// `gnutls-cli --resume` connects twice, to the same port: each connection
/// is accepted here and gets its own engine, as under a super-server.
#[test]
fn gnutls_cli_resumes_across_processes() {
    let tickets = tickets();
    let (listener, port) = listen();
    let args = gnutls_cli_args(port, &["--resume", "--waitresumption"]);
    let mut client = Client::start("gnutls-cli", &args);
    let spawn = || spawn().set(VAR, tickets.to_str().unwrap()).args(&["-S"]);
    let mut first = accept(spawn(), &listener, &mut client);
    let full = first.notification();
    first.close_app_tx();
    let mut second = accept(spawn(), &listener, &mut client);
    let resumed = second.notification();
    assert_eq!(resumed, full);
    client.wait_stdout("*** This is a resumed session");
    second.app_tx().write_all(b"hello\n").unwrap();
    client.wait_stdout("hello");
    second.close_app_tx();
    client.close_stdin();
    client.wait_exit();
    for mut e in [first, second] {
        let exit = e.wait_exit();
        assert_eq!(exit.code, Some(0), "{}", exit.stderr);
    }
}

// ------------------------------------------------------ start-up errors

/// How an engine with the default keys and the ticket key file `path`
/// fails at start-up: its exit code and stderr.
fn start_with_key_file(path: &Path) -> (Option<i32>, String) {
    let mut env = key_env(default_keys());
    env.push((VAR.into(), path.display().to_string()));
    startup_failure(&[], env)
}

#[test]
fn key_file_errors_are_start_up_failures_naming_the_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tmpdir("ticket-errors");
    let missing = dir.join("missing");
    assert_eq!(
        start_with_key_file(&missing),
        (
            Some(96),
            fatal(&format!(
                "unable to read {VAR} file {}: No such file or directory",
                missing.display()
            ))
        )
    );
    let open = key_file(&dir, &[[1; 32]]);
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(
        start_with_key_file(&open),
        (
            Some(96),
            fatal(&format!(
                "invalid {VAR} file {}: readable or writable by group or others (mode 644; make it 600)",
                open.display()
            ))
        )
    );
    let short = dir.join("short");
    std::fs::write(&short, [0u8; 48]).unwrap();
    std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, msg) = start_with_key_file(&short);
    assert_eq!(code, Some(96));
    assert!(msg.contains("48 bytes, not a multiple of 32"), "{msg}");
}

/// The key file is a credential (issue 25): a symbolic link to a good file
/// is refused (the file is opened without following it), and so is a file
/// owned by another uid than root or the reader's, here read as root.
#[test]
fn a_key_file_that_is_a_symlink_or_owned_by_another_uid_is_refused() {
    let dir = tmpdir("ticket-owner");
    let good = key_file(&dir, &[[1; 32]]);
    let link = dir.join("link");
    std::os::unix::fs::symlink(&good, &link).unwrap();
    assert_eq!(
        start_with_key_file(&link),
        (
            Some(96),
            fatal(&format!(
                "invalid {VAR} file {}: a symbolic link (name the file itself)",
                link.display()
            ))
        )
    );
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not running as root: the owner's refusal is not tested");
        return;
    }
    std::os::unix::fs::chown(&good, Some(65534), None).unwrap();
    assert_eq!(
        start_with_key_file(&good),
        (
            Some(96),
            fatal(&format!(
                "invalid {VAR} file {}: owned by uid 65534, not by root",
                good.display()
            ))
        )
    );
}

// ------------------------------------------------------ key exchange modes

/// A TLS 1.3 resumption runs a fresh (EC)DHE exchange (`psk_dhe_ke`), so
/// the ticket key alone yields no session key; a client that offers
/// `psk_ke` alone (a resumption without one) gets a full handshake.
/// tlslite-ng (tests/support/psk_modes.py) offers the mode it is told.
#[test]
fn resumption_runs_a_fresh_key_exchange_and_psk_ke_alone_gets_a_full_handshake() {
    const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/psk_modes.py");
    let tickets = tickets();
    for (mode, second) in [("psk_dhe_ke", "resumed"), ("psk_ke", "full")] {
        let (listener, port) = listen();
        let args = [SCRIPT.to_string(), port.to_string(), mode.to_string()];
        let mut client = Client::start("/usr/bin/python3", &args);
        for _ in 0..2 {
            let spawn = spawn().set(VAR, tickets.to_str().unwrap()).args(&["-S"]);
            let mut e = accept(spawn, &listener, &mut client);
            assert!(!e.notification().is_empty(), "{mode}");
            e.close_app_tx();
            let exit = e.wait_exit();
            assert_eq!(exit.code, Some(0), "{mode}: {}", exit.stderr);
        }
        let status = client.wait_exit();
        assert!(status.success(), "{mode}: {}", client.transcript());
        let out = client.stdout();
        let lines: Vec<_> = out.lines().map(|l| l.split_once(' ').unwrap()).collect();
        assert_eq!(lines.len(), 2, "{mode}: {}", client.transcript());
        assert_eq!(lines[0].0, "full", "{mode}: {out}");
        assert_eq!(lines[1].0, second, "{mode}: {out}");
        for (_, group) in lines {
            assert_ne!(group, "none", "{mode}: no key exchange: {out}");
        }
    }
}
