//! Spec sections 2, 3 and 4 on SNI: `-k`, `--sni`, `--mandatory-sni`, the
//! `KEYFILE:x`/`CERTFILE:x` pairs, and which certificate serves which server
//! name. Every pair has its own certificate (its own CN and SAN), and each
//! test proves which one was served by comparing the DER the client received
//! with the file.

mod common;

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::client::*;
use common::*;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{AlertDescription, ClientConfig, DigitallySignedStruct, SignatureScheme};

type Env = Vec<(String, String)>;
type Block = Vec<(String, Option<String>)>;

// ---------------------------------------------------------------- key pairs

/// A pair for `names` with the given key, signed by the test CA, CN = the
/// first name, written to `dir` as `<stem>.cert.pem` (leaf then CA) and
/// `<stem>.key.pem`.
fn pair_with_key(key: &rcgen::KeyPair, names: &[&str], dir: &Path, stem: &str) -> Keys {
    let sans: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(sans).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0]);
    let ca = ca();
    let cert = params.signed_by(key, &ca.cert, &ca.key).expect("sign");
    let cert_pem = format!("{}{}", cert.pem(), ca.cert.pem());
    let key_pem = key.serialize_pem();
    Keys {
        dir: dir.to_path_buf(),
        cert: write_file(dir, &format!("{stem}.cert.pem"), cert_pem.as_bytes()),
        key: write_file(dir, &format!("{stem}.key.pem"), key_pem.as_bytes()),
        cert_der: cert.der().to_vec(),
        key_der: key.serialize_der(),
        key_pem,
        cert_pem,
    }
}

/// A fresh ECDSA P-256 pair whose certificate names exactly `name`.
fn pair(name: &str) -> Keys {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("keygen");
    pair_with_key(&key, &[name], &tmpdir("sni"), &name.replace('*', "star"))
}

/// The pairs most tests share: a default one and one per kind of name.
struct Fixture {
    default: Keys,
    exact: Keys,
    star: Keys,
    wild: Keys,
    com: Keys,
}

fn fx() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| Fixture {
        default: pair("default.test"),
        exact: pair("a.example.com"),
        star: pair("*.example.com"),
        wild: pair("*.wild.example.com"),
        com: pair("*.com"),
    })
}

/// Which fixture pair a served leaf certificate belongs to.
fn which(der: &[u8]) -> &'static str {
    let f = fx();
    [
        ("default", &f.default),
        ("a.example.com", &f.exact),
        ("*.example.com", &f.star),
        ("*.wild.example.com", &f.wild),
        ("*.com", &f.com),
    ]
    .into_iter()
    .find(|(_, k)| k.cert_der == der)
    .map_or("a certificate from no fixture pair", |(label, _)| label)
}

/// `KEYFILE:name` and `CERTFILE:name` for a pair.
fn named(name: &str, keys: &Keys) -> Env {
    vec![
        (format!("KEYFILE:{name}"), keys.key.display().to_string()),
        (format!("CERTFILE:{name}"), keys.cert.display().to_string()),
    ]
}

/// The default pair (if any) and named pairs, as an environment.
fn env_of(default: Option<&Keys>, pairs: &[(&str, &Keys)]) -> Env {
    let mut env = default.map(key_env).unwrap_or_default();
    for (name, keys) in pairs {
        env.extend(named(name, keys));
    }
    env
}

/// The default pair, `a.example.com`, `*.example.com` and `*.com`.
fn level1_env() -> Env {
    let f = fx();
    env_of(
        Some(&f.default),
        &[
            ("a.example.com", &f.exact),
            ("*.example.com", &f.star),
            ("*.com", &f.com),
        ],
    )
}

// ---------------------------------------------------------------- clients

/// Accepts whatever certificate the server presents, so that the test can
/// see which one it was, but still checks the handshake signature: the
/// server proved it holds the key of the certificate it sent.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS 1.2/1.3 client that accepts any server certificate; it sends SNI
/// only if `sni`.
fn any_cert_client(sni: bool) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    config.enable_sni = sni;
    Arc::new(config)
}

/// The name a client without SNI still needs for its own bookkeeping.
const NO_SNI: &str = "no-sni.invalid";

/// Runs the client side of the handshake; the TLS error if it fails.
fn handshake(e: &Engine, config: Arc<ClientConfig>, name: &str) -> Result<Tls, rustls::Error> {
    try_connect(e, config, name).map_err(|err| {
        match err
            .get_ref()
            .and_then(|i| i.downcast_ref::<rustls::Error>())
        {
            Some(tls_error) => tls_error.clone(),
            None => panic!("client handshake: I/O error: {err}"),
        }
    })
}

/// Ends a session the usual way: one byte through the tunnel, then the
/// client goes away and the app closes fdr; the engine must exit 0.
fn finish(mut e: Engine, mut tls: Tls) {
    tls.write_all(b"x").expect("client write");
    assert_eq!(read_app(&mut e, 1), b"x");
    e.app_tx().write_all(b"y").expect("app write");
    let mut y = [0u8; 1];
    tls.read_exact(&mut y).expect("client read");
    assert_eq!(&y, b"y");
    let exit = drop_both_ends(e, tls);
    assert_eq!(exit.code, Some(0), "stderr: {}", exit.stderr);
    assert_eq!(exit.stderr, "");
}

/// One connection asking for `sni` (None: no SNI) to an engine started with
/// `args` and `env`, with a client that accepts any certificate. Returns the
/// leaf certificate served and the notification block.
fn session(args: &[&str], env: Env, sni: Option<&str>) -> (Vec<u8>, Block) {
    let mut e = spawn().args(args).env(env).start();
    let tls = match handshake(&e, any_cert_client(sni.is_some()), sni.unwrap_or(NO_SNI)) {
        Ok(tls) => tls,
        Err(err) => {
            let exit = e.wait_exit();
            panic!("handshake {args:?} for {sni:?} failed: {err}; engine: {exit:?}")
        }
    };
    let leaf = tls.conn.peer_certificates().expect("a server certificate")[0].to_vec();
    let (block, exit) = one_byte_and_block(e, tls);
    assert_eq!(exit.code, Some(0), "stderr: {}", exit.stderr);
    (leaf, block)
}

/// The fixture pair served to a client asking for `sni`.
fn served(args: &[&str], env: Env, sni: Option<&str>) -> &'static str {
    which(&session(args, env, sni).0)
}

/// A connection asking for `sni` that the engine must refuse: the client's
/// error and how the engine ended.
fn refused(args: &[&str], env: Env, sni: Option<&str>) -> (rustls::Error, Exit) {
    let mut e = spawn().args(args).env(env).start();
    let err = match handshake(&e, any_cert_client(sni.is_some()), sni.unwrap_or(NO_SNI)) {
        Ok(tls) => panic!(
            "{args:?}: {sni:?} was served {}",
            which(&tls.conn.peer_certificates().unwrap()[0])
        ),
        Err(err) => err,
    };
    (err, e.wait_exit())
}

fn sni_value(block: &Block) -> Option<&str> {
    block
        .iter()
        .find(|(k, _)| k == "SSL_TLS_SNI_SERVERNAME")
        .unwrap_or_else(|| panic!("no SSL_TLS_SNI_SERVERNAME in {block:?}"))
        .1
        .as_deref()
}

/// Starts an engine that must exit on its own, before any client speaks,
/// with a one-line skarnet message on stderr; returns how it ended.
fn startup_failure(args: &[&str], env: Env) -> Exit {
    let vars: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut e = spawn().args(args).env(env).start();
    let start = Instant::now();
    while e.child.try_wait().expect("try_wait").is_none() {
        // Start-up takes milliseconds; an engine still there is waiting
        // for a ClientHello that never comes (the guard kills it).
        assert!(
            start.elapsed() < STEP,
            "{args:?} {vars:?}: the engine did not fail at start-up; \
             it is still waiting for a client after {STEP:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let exit = e.wait_exit();
    assert!(
        exit.stderr.starts_with("s6-tlsd-io: fatal: ")
            && exit.stderr.ends_with('\n')
            && exit.stderr.lines().count() == 1,
        "not one skarnet fatal line: {:?}",
        exit.stderr
    );
    // Nothing was ever sent to the client.
    let mut buf = [0u8; 64];
    let n = e.client().read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the engine wrote to the client: {:?}", &buf[..n]);
    exit
}

// ---------------------------------------------------------------- level 1

#[test]
fn sni_level_1_serves_the_pair_of_the_exact_name() {
    for args in [&["--sni"][..], &["-k", "1"], &["-k1"], &["--sni-level=1"]] {
        assert_eq!(
            served(args, level1_env(), Some("a.example.com")),
            "a.example.com",
            "{args:?}"
        );
    }
}

#[test]
fn named_pairs_verify_for_their_names_with_a_strict_client() {
    // The harness client checks the chain against the test CA and the name.
    for (sni, expected) in [
        ("a.example.com", &fx().exact),
        ("foo.example.com", &fx().star),
    ] {
        let e = spawn().args(&["--sni"]).env(level1_env()).start();
        let tls = connect(&e, tls13(), sni);
        assert_eq!(
            tls.conn.peer_certificates().unwrap()[0].as_ref(),
            expected.cert_der
        );
        finish(e, tls);
    }
}

#[test]
fn server_names_are_matched_case_insensitively() {
    // The rustls client sends the name with the case it is given.
    for sni in ["A.Example.COM", "A.EXAMPLE.COM"] {
        assert_eq!(
            served(&["--sni"], level1_env(), Some(sni)),
            "a.example.com",
            "{sni}"
        );
    }
    assert_eq!(
        served(&["--sni"], level1_env(), Some("Foo.EXAMPLE.com")),
        "*.example.com"
    );
    // And the other way round: the variable in capitals, the name in lowercase.
    let f = fx();
    let env = env_of(Some(&f.default), &[("A.EXAMPLE.COM", &f.exact)]);
    assert_eq!(
        served(&["--sni"], env, Some("a.example.com")),
        "a.example.com"
    );
    let env = env_of(Some(&f.default), &[("*.Example.Com", &f.star)]);
    assert_eq!(
        served(&["--sni"], env, Some("foo.example.com")),
        "*.example.com"
    );
}

#[test]
fn sni_level_1_one_label_wildcard_serves_a_name_below_it() {
    for sni in ["foo.example.com", "b.example.com", "x-1.example.com"] {
        assert_eq!(
            served(&["--sni"], level1_env(), Some(sni)),
            "*.example.com",
            "{sni}"
        );
    }
    // The exact name wins over the wildcard.
    assert_eq!(
        served(&["--sni"], level1_env(), Some("a.example.com")),
        "a.example.com"
    );
}

#[test]
fn wildcard_covers_exactly_one_label_and_the_rest_falls_back_to_the_default_pair() {
    let f = fx();
    let env = || env_of(Some(&f.default), &[("*.wild.example.com", &f.wild)]);
    assert_eq!(
        served(&["--sni"], env(), Some("foo.wild.example.com")),
        "*.wild.example.com"
    );
    assert_eq!(
        served(&["--sni"], env(), Some("bar.foo.wild.example.com")),
        "default"
    );
    assert_eq!(
        served(&["--sni"], env(), Some("wild.example.com")),
        "default"
    );
}

#[test]
fn a_two_label_name_never_uses_star_dot_com() {
    for sni in ["foo.com", "example.com"] {
        assert_eq!(
            served(&["--sni"], level1_env(), Some(sni)),
            "default",
            "{sni}"
        );
    }
    // *.com is an ordinary one-label wildcard for nothing else: a
    // three-label name under example.com uses *.example.com.
    assert_eq!(
        served(&["--sni"], level1_env(), Some("foo.example.com")),
        "*.example.com"
    );
}

#[test]
fn sni_level_1_falls_back_to_the_default_pair_for_unknown_names_and_no_sni() {
    for sni in [Some("unknown.example.org"), Some("localhost"), None] {
        assert_eq!(served(&["--sni"], level1_env(), sni), "default", "{sni:?}");
    }
}

#[test]
fn sni_level_1_still_needs_the_default_pair() {
    let f = fx();
    let exit = startup_failure(&["--sni"], env_of(None, &[("a.example.com", &f.exact)]));
    assert_eq!(exit.code, Some(100));
    assert_eq!(exit.stderr, "s6-tlsd-io: fatal: CERTFILE not set\n");
}

#[test]
fn k_overrides_sni_flags_whatever_the_order() {
    let f = fx();
    // Level 1 wins over --mandatory-sni: unknown names get the default pair.
    for args in [
        &["--mandatory-sni", "-k", "1"][..],
        &["-k", "1", "--mandatory-sni"],
    ] {
        assert_eq!(
            served(args, level1_env(), Some("unknown.example.org")),
            "default",
            "{args:?}"
        );
    }
    // Level 0 wins over --sni: the named pair is not used.
    for args in [&["--sni", "-k", "0"][..], &["-k0", "--sni"]] {
        assert_eq!(
            served(args, level1_env(), Some("a.example.com")),
            "default",
            "{args:?}"
        );
    }
    // Level 2 wins over --sni: no default pair needed.
    let env = env_of(None, &[("a.example.com", &f.exact)]);
    assert_eq!(
        served(&["--sni", "-k", "2"], env, Some("a.example.com")),
        "a.example.com"
    );
}

// ---------------------------------------------------------------- level 0

#[test]
fn sni_level_0_ignores_named_pairs() {
    for args in [&[][..], &["-k", "0"], &["--sni-level=0"]] {
        for sni in [Some("a.example.com"), Some("foo.example.com"), None] {
            assert_eq!(
                served(args, level1_env(), sni),
                "default",
                "{args:?} {sni:?}"
            );
        }
    }
}

#[test]
fn sni_level_0_never_reads_named_pairs_even_broken_or_unpaired() {
    let f = fx();
    let dir = tmpdir("broken");
    let garbage = write_file(&dir, "garbage.pem", b"this is not a key\n");
    let mut env = key_env(&f.default);
    env.extend([
        // Garbage in both files.
        (
            "KEYFILE:a.example.com".into(),
            garbage.display().to_string(),
        ),
        (
            "CERTFILE:a.example.com".into(),
            garbage.display().to_string(),
        ),
        // Missing files.
        (
            "KEYFILE:b.example.com".into(),
            "/nonexistent/key.pem".into(),
        ),
        (
            "CERTFILE:b.example.com".into(),
            "/nonexistent/cert.pem".into(),
        ),
        // A key that does not match the certificate.
        (
            "KEYFILE:c.example.com".into(),
            f.exact.key.display().to_string(),
        ),
        (
            "CERTFILE:c.example.com".into(),
            f.star.cert.display().to_string(),
        ),
        // Not paired.
        (
            "KEYFILE:d.example.com".into(),
            f.exact.key.display().to_string(),
        ),
    ]);
    for args in [&[][..], &["-k", "0"]] {
        for sni in [
            "a.example.com",
            "b.example.com",
            "c.example.com",
            "d.example.com",
        ] {
            assert_eq!(served(args, env.clone(), Some(sni)), "default", "{sni}");
        }
    }
}

// ---------------------------------------------------------------- level >= 2

const MANDATORY: [&[&str]; 4] = [
    &["--mandatory-sni"],
    &["-k", "2"],
    &["-k", "7"],
    &["--sni-level=2"],
];

#[test]
fn mandatory_sni_serves_named_pairs_without_keyfile_or_certfile() {
    let f = fx();
    let env = || {
        env_of(
            None,
            &[("a.example.com", &f.exact), ("*.example.com", &f.star)],
        )
    };
    for args in MANDATORY {
        assert_eq!(
            served(args, env(), Some("a.example.com")),
            "a.example.com",
            "{args:?}"
        );
        assert_eq!(
            served(args, env(), Some("foo.example.com")),
            "*.example.com",
            "{args:?}"
        );
    }
}

#[test]
fn mandatory_sni_never_reads_keyfile_or_certfile_even_broken() {
    let f = fx();
    let dir = tmpdir("broken");
    let garbage = write_file(&dir, "garbage.pem", b"garbage\n");
    let envs: Vec<Env> = vec![
        // Missing files.
        vec![
            ("CERTFILE".into(), "/nonexistent/cert.pem".into()),
            ("KEYFILE".into(), "/nonexistent/key.pem".into()),
        ],
        // Garbage.
        vec![
            ("CERTFILE".into(), garbage.display().to_string()),
            ("KEYFILE".into(), garbage.display().to_string()),
        ],
        // Only one of the two.
        vec![("KEYFILE".into(), garbage.display().to_string())],
        // A valid pair: it is still not used for an unknown name (below).
        key_env(&f.default),
    ];
    for args in MANDATORY {
        for base in &envs {
            let mut env = base.clone();
            env.extend(named("a.example.com", &f.exact));
            assert_eq!(
                served(args, env, Some("a.example.com")),
                "a.example.com",
                "{args:?} {base:?}"
            );
        }
    }
}

fn assert_unrecognized_name(err: &rustls::Error, context: &str) {
    assert_eq!(
        *err,
        rustls::Error::AlertReceived(AlertDescription::UnrecognisedName),
        "{context}"
    );
}

#[test]
fn mandatory_sni_refuses_an_unknown_name_with_unrecognized_name() {
    let f = fx();
    let env = || {
        let mut env = env_of(
            Some(&f.default),
            &[("a.example.com", &f.exact), ("*.wild.example.com", &f.wild)],
        );
        env.push((
            "CERTFILE:b.example.com".into(),
            f.star.cert.display().to_string(),
        ));
        env
    };
    for args in MANDATORY {
        for sni in [
            "unknown.example.com",
            // Covered by no pattern: the wildcard is one label only.
            "wild.example.com",
            "bar.foo.wild.example.com",
            // A CERTFILE:x alone is no pair.
            "b.example.com",
        ] {
            let (err, exit) = refused(args, env(), Some(sni));
            assert_unrecognized_name(&err, &format!("{args:?} {sni}"));
            assert_eq!(exit.code, Some(98), "{args:?} {sni}: {}", exit.stderr);
            assert!(
                exit.stderr.starts_with("s6-tlsd-io: fatal: ")
                    && exit.stderr.lines().count() == 1
                    && exit.stderr.contains(sni),
                "{args:?}: the message must name {sni}: {:?}",
                exit.stderr
            );
        }
    }
}

#[test]
fn mandatory_sni_refuses_a_client_without_sni_with_unrecognized_name() {
    let f = fx();
    for args in MANDATORY {
        let env = env_of(Some(&f.default), &[("a.example.com", &f.exact)]);
        let (err, exit) = refused(args, env, None);
        assert_unrecognized_name(&err, &format!("{args:?}"));
        assert_eq!(exit.code, Some(98), "{args:?}: {}", exit.stderr);
        assert!(
            exit.stderr.starts_with("s6-tlsd-io: fatal: ")
                && exit.stderr.lines().count() == 1
                && exit.stderr.contains("no server name"),
            "{args:?}: the message must say no server name was sent: {:?}",
            exit.stderr
        );
    }
}

#[test]
fn mandatory_sni_refusal_is_seen_by_openssl_s_client() {
    let f = fx();
    for (sni_args, needle) in [
        (
            vec!["-servername", "unknown.example.com"],
            "unknown.example.com",
        ),
        (vec!["-noservername"], "no server name"),
    ] {
        let (listener, port) = listen();
        let args = s_client_args(port, &sni_args);
        let mut client = Client::start("openssl", &args);
        let env = env_of(None, &[("a.example.com", &f.exact)]);
        let mut e = accept(spawn().args(&["-k", "2"]).env(env), &listener, &mut client);
        let exit = e.wait(STEP);
        client.wait_exit();
        let out = client.transcript();
        assert_eq!(exit.code, Some(98), "{}\n{out}", exit.stderr);
        assert!(exit.stderr.contains(needle), "{:?}", exit.stderr);
        assert!(
            out.to_lowercase().contains("unrecognized name"),
            "s_client does not report the alert:\n{out}"
        );
    }
}

// ---------------------------------------------------------------- errors

#[test]
fn keyfile_x_without_certfile_x_exits_96() {
    let f = fx();
    for args in [&["--sni"][..], &["-k", "2"]] {
        let mut env = env_of(Some(&f.default), &[("a.example.com", &f.exact)]);
        env.push((
            "KEYFILE:b.example.com".into(),
            f.star.key.display().to_string(),
        ));
        let exit = startup_failure(args, env);
        assert_eq!(exit.code, Some(96), "{args:?}");
        assert_eq!(
            exit.stderr,
            "s6-tlsd-io: fatal: environment variable KEYFILE:b.example.com not paired with the corresponding CERTFILE\n"
        );
    }
}

#[test]
fn a_bare_keyfile_colon_is_ignored() {
    let f = fx();
    let dir = tmpdir("bare");
    let garbage = write_file(&dir, "garbage.pem", b"garbage\n");
    for args in [&["--sni"][..], &["-k", "2"]] {
        let mut env = env_of(Some(&f.default), &[("a.example.com", &f.exact)]);
        // Unpaired, then paired with garbage: neither is read.
        env.push(("KEYFILE:".into(), garbage.display().to_string()));
        assert_eq!(
            served(args, env.clone(), Some("a.example.com")),
            "a.example.com",
            "{args:?}"
        );
        env.push(("CERTFILE:".into(), garbage.display().to_string()));
        assert_eq!(
            served(args, env, Some("a.example.com")),
            "a.example.com",
            "{args:?}"
        );
    }
}

#[test]
fn mandatory_sni_without_any_named_pair_exits_96() {
    let f = fx();
    let bare = vec![
        ("KEYFILE:".to_string(), f.exact.key.display().to_string()),
        ("CERTFILE:".to_string(), f.exact.cert.display().to_string()),
    ];
    for args in MANDATORY {
        for env in [
            Vec::new(),
            key_env(&f.default),
            bare.clone(),
            // CERTFILE:x alone is no pair either.
            vec![(
                "CERTFILE:a.example.com".to_string(),
                f.exact.cert.display().to_string(),
            )],
        ] {
            let exit = startup_failure(args, env.clone());
            assert_eq!(exit.code, Some(96), "{args:?} {env:?}");
            assert_eq!(
                exit.stderr,
                "s6-tlsd-io: fatal: no suitable keypairs found in the environment\n"
            );
        }
    }
}

#[test]
fn a_bad_file_in_any_pair_fails_at_startup_even_if_no_client_asks_for_it() {
    let f = fx();
    let dir = tmpdir("bad");
    let garbage = write_file(&dir, "garbage.pem", b"this is not PEM at all\n");
    let empty = write_file(&dir, "empty.pem", b"");
    let missing = dir.join("missing.pem");
    let show = |p: &Path| p.display().to_string();
    // (what is wrong, the variable named, its file, KEYFILE:b, CERTFILE:b, a reason)
    let cases: Vec<BadPair<'_>> = vec![
        (
            "garbage key",
            "KEYFILE:b.example.com",
            show(&garbage),
            show(&garbage),
            show(&f.star.cert),
            None,
        ),
        (
            "garbage certificate",
            "CERTFILE:b.example.com",
            show(&garbage),
            show(&f.star.key),
            show(&garbage),
            None,
        ),
        (
            "empty key",
            "KEYFILE:b.example.com",
            show(&empty),
            show(&empty),
            show(&f.star.cert),
            None,
        ),
        (
            "missing key",
            "KEYFILE:b.example.com",
            show(&missing),
            show(&missing),
            show(&f.star.cert),
            Some("No such file or directory"),
        ),
        (
            "missing certificate",
            "CERTFILE:b.example.com",
            show(&missing),
            show(&f.star.key),
            show(&missing),
            Some("No such file or directory"),
        ),
        (
            "a certificate given as the key",
            "KEYFILE:b.example.com",
            show(&f.star.cert),
            show(&f.star.cert),
            show(&f.star.cert),
            None,
        ),
    ];
    assert_bad_pairs_fail_at_startup(cases);
    // A broken default pair fails at level 1 too.
    let mut env = named("a.example.com", &f.exact);
    env.push(("CERTFILE".into(), show(&f.default.cert)));
    env.push(("KEYFILE".into(), show(&garbage)));
    let exit = startup_failure(&["--sni"], env);
    assert_eq!(exit.code, Some(96), "{}", exit.stderr);
    assert!(exit.stderr.contains("KEYFILE") && exit.stderr.contains(&show(&garbage)));
}

/// (what is wrong, the variable named, its file, KEYFILE:b, CERTFILE:b, a reason)
type BadPair<'a> = (&'a str, &'a str, String, String, String, Option<&'a str>);

/// Each bad `b.example.com` pair, next to a good `a.example.com` pair and a
/// good default pair, makes the engine exit 96 before any client speaks, at
/// levels 1 and 2, with a message naming the variable and the file.
fn assert_bad_pairs_fail_at_startup(cases: Vec<BadPair<'_>>) {
    let f = fx();
    for (what, var, file, key, cert, reason) in cases {
        for args in [&["--sni"][..], &["-k", "2"]] {
            let mut env = env_of(Some(&f.default), &[("a.example.com", &f.exact)]);
            env.push(("KEYFILE:b.example.com".into(), key.clone()));
            env.push(("CERTFILE:b.example.com".into(), cert.clone()));
            let exit = startup_failure(args, env);
            assert_eq!(exit.code, Some(96), "{what} {args:?}: {}", exit.stderr);
            assert!(
                exit.stderr.contains(var) && exit.stderr.contains(&file),
                "{what} {args:?}: the message must name {var} and {file}: {:?}",
                exit.stderr
            );
            if let Some(reason) = reason {
                assert!(exit.stderr.contains(reason), "{what}: {:?}", exit.stderr);
            }
        }
    }
}

// A named pair whose files decode but whose key does not match (or does not
// parse) is reported when a client asks for that name, not at start-up: the
// price of a start-up that stays cheap with 1,000 names (see src/keys.rs).
#[test]
fn a_named_pair_whose_key_does_not_match_is_never_served() {
    // Whenever the mismatch is found, the client never gets that pair.
    let f = fx();
    for args in [&["--sni"][..], &["-k", "2"]] {
        let mut env = env_of(Some(&f.default), &[("a.example.com", &f.exact)]);
        env.push((
            "KEYFILE:b.example.com".into(),
            f.exact.key.display().to_string(),
        ));
        env.push((
            "CERTFILE:b.example.com".into(),
            f.star.cert.display().to_string(),
        ));
        let mut e = spawn().args(args).env(env).start();
        match handshake(&e, any_cert_client(true), "b.example.com") {
            Ok(tls) => panic!(
                "{args:?}: b.example.com was served {}",
                which(&tls.conn.peer_certificates().unwrap()[0])
            ),
            Err(err) => eprintln!("{args:?}: the client got {err:?}"),
        }
        let exit = e.wait_exit();
        assert_eq!(exit.code, Some(96), "{args:?}: {}", exit.stderr);
        assert!(
            exit.stderr.contains("KEYFILE:b.example.com")
                && exit.stderr.contains(&f.exact.key.display().to_string()),
            "{:?}",
            exit.stderr
        );
    }
}

// ---------------------------------------------------------------- key types

#[test]
fn rsa_and_ecdsa_pairs_are_each_served_for_their_name() {
    let rsa = keys(Alg::Rsa2048, &["rsa.example.com"]);
    let ec = pair("ec.example.com");
    let env = || env_of(None, &[("rsa.example.com", &rsa), ("ec.example.com", &ec)]);
    for config in [tls13(), tls12()] {
        for (sni, expected) in [("rsa.example.com", &rsa), ("ec.example.com", &ec)] {
            let e = spawn().args(&["--mandatory-sni"]).env(env()).start();
            // The harness client verifies the chain and the name for real.
            let tls = connect(&e, config.clone(), sni);
            assert_eq!(
                tls.conn.peer_certificates().unwrap()[0].as_ref(),
                expected.cert_der,
                "{sni}"
            );
            finish(e, tls);
        }
    }
}

// ---------------------------------------------------------------- notification

#[test]
fn notification_reports_the_server_name_the_client_sent_at_every_level() {
    let f = fx();
    let cases: [(&[&str], Env); 4] = [
        (&[], level1_env()),
        (&["-k", "0"], level1_env()),
        (&["--sni"], level1_env()),
        (
            &["--mandatory-sni"],
            env_of(
                None,
                &[("a.example.com", &f.exact), ("*.example.com", &f.star)],
            ),
        ),
    ];
    for (args, env) in cases {
        for sni in ["a.example.com", "foo.example.com"] {
            let (_, block) = session(args, env.clone(), Some(sni));
            assert_eq!(sni_value(&block), Some(sni), "{args:?}: {block:?}");
        }
        // An unknown name that the default pair serves is reported too.
        if !args.contains(&"--mandatory-sni") {
            let (leaf, block) = session(args, env.clone(), Some("unknown.example.org"));
            assert_eq!(which(&leaf), "default");
            assert_eq!(sni_value(&block), Some("unknown.example.org"));
            let (_, block) = session(args, env.clone(), None);
            assert_eq!(sni_value(&block), None, "{args:?}: {block:?}");
        }
    }
}

// ---------------------------------------------------------------- 1,000 names

#[test]
fn a_thousand_named_pairs_serve_the_right_one() {
    let dir = tmpdir("thousand");
    // One key for every certificate keeps generation quick; each certificate
    // has its own name.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("keygen");
    let generated = Instant::now();
    let pairs: Vec<Keys> = (0..1000)
        .map(|i| {
            let name = format!("n{i}.example.com");
            pair_with_key(&key, &[&name], &dir, &format!("n{i}"))
        })
        .collect();
    eprintln!("1,000 pairs generated in {:?}", generated.elapsed());
    let mut env = Env::new();
    for (i, keys) in pairs.iter().enumerate() {
        env.extend(named(&format!("n{i}.example.com"), keys));
    }
    // For comparison: the same connection with only that one pair.
    let start = Instant::now();
    let e = spawn()
        .args(&["-k", "2"])
        .env(named("n777.example.com", &pairs[777]))
        .start();
    let tls = connect(&e, tls13(), "n777.example.com");
    eprintln!(
        "1 pair: spawn to completed handshake for n777.example.com: {:?}",
        start.elapsed()
    );
    finish(e, tls);
    for i in [777, 0, 999] {
        let sni = format!("n{i}.example.com");
        let start = Instant::now();
        let e = spawn().args(&["-k", "2"]).env(env.clone()).start();
        let tls = connect(&e, tls13(), &sni);
        eprintln!(
            "1,000 pairs: spawn to completed handshake for {sni}: {:?}",
            start.elapsed()
        );
        let leaf = tls.conn.peer_certificates().unwrap()[0].to_vec();
        assert!(
            leaf == pairs[i].cert_der,
            "{sni} was served the certificate of n{:?}",
            pairs.iter().position(|k| k.cert_der == leaf)
        );
        finish(e, tls);
    }
    let (err, exit) = refused(&["-k", "2"], env, Some("n1000.example.com"));
    assert_unrecognized_name(&err, "n1000.example.com");
    assert_eq!(exit.code, Some(98));
    // 2,000 files: do not leave them behind.
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------- real clients

/// The leaf certificate of a chain file, as PEM.
fn leaf_pem(keys: &Keys) -> String {
    let end = "-----END CERTIFICATE-----";
    let at = keys.cert_pem.find(end).expect("a PEM certificate") + end.len();
    keys.cert_pem[..at].to_string()
}

/// Echo through the engine (started with -S) and the external client, then
/// the engine ends with 0: client -> app, app -> client, app closes, client
/// finishes.
fn echo_and_finish(e: &mut Engine, client: &mut Client, tag: &str) {
    let ping = format!("ping {tag}\n");
    client.send(ping.as_bytes());
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    while !got.ends_with(ping.as_bytes()) {
        let left = STEP.saturating_sub(start.elapsed());
        assert!(
            !left.is_zero() && readable(e.app_rx().as_fd(), left),
            "the app never received {ping:?}; got {:?}\n{}",
            String::from_utf8_lossy(&got),
            client.transcript()
        );
        match e.app_rx().read(&mut buf) {
            Ok(0) => panic!("fdw closed early\n{}", client.transcript()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(err) => panic!("read fdw: {err}"),
        }
    }
    assert_eq!(got, ping.as_bytes());
    let pong = format!("pong {tag}\n");
    e.app_tx().write_all(pong.as_bytes()).expect("app write");
    client.wait_stdout(&pong);
    // The app ends first (the engine sends close_notify under -S), then the
    // client: a client that ended first would wait for the server's
    // close_notify (gnutls-cli: 2 s), since under TLS 1.3 the app's direction
    // stays open until the app closes it.
    e.close_app_tx();
    client.close_stdin();
    let status = client.wait_exit();
    assert!(
        status.success(),
        "{} {status}\n{}",
        client.program,
        client.transcript()
    );
    let exit = e.wait(STEP);
    assert_eq!(
        exit.code,
        Some(0),
        "engine stderr: {}\n{}",
        exit.stderr,
        client.transcript()
    );
}

fn notification_within_step(e: &mut Engine, client: &Client) -> Block {
    let ready = readable(e.notif.as_ref().expect("-d").as_fd(), STEP);
    assert!(
        ready,
        "no handshake within {STEP:?}\n{}",
        client.transcript()
    );
    e.notification()
}

/// Whitespace-insensitive containment, for PEM printed by other programs.
fn contains_pem(haystack: &str, pem: &str) -> bool {
    let squash = |s: &str| s.split_whitespace().collect::<String>();
    squash(haystack).contains(&squash(pem))
}

/// What a real client asks for, the pair it must get and that pair's CN.
struct RealCase {
    sni: &'static str,
    expected: &'static Keys,
    cn: &'static str,
}

/// The environment the real-client tests use, and the cases for a level:
/// at level 2 the default pair is not loaded, so no case expects it.
fn real_client_cases(level2: bool) -> (Env, Vec<RealCase>) {
    let f = fx();
    let env = env_of(
        Some(&f.default),
        &[("a.example.com", &f.exact), ("*.example.com", &f.star)],
    );
    let case = |sni, expected, cn| RealCase { sni, expected, cn };
    let mut cases = vec![
        case("a.example.com", &f.exact, "a.example.com"),
        case("A.Example.COM", &f.exact, "a.example.com"),
        case("foo.example.com", &f.star, "*.example.com"),
    ];
    if !level2 {
        // The default certificate names default.test: it verifies for it.
        cases.push(case("default.test", &f.default, "default.test"));
    }
    (env, cases)
}

#[test]
fn openssl_s_client_gets_the_pair_of_its_server_name() {
    for args in [&["--sni"][..], &["-k", "2"]] {
        let (env, cases) = real_client_cases(args == ["-k", "2"]);
        for RealCase { sni, expected, cn } in cases {
            let (listener, port) = listen();
            let argv = s_client_args(
                port,
                &["-servername", sni, "-verify_hostname", sni, "-showcerts"],
            );
            let mut client = Client::start("openssl", &argv);
            let engine = spawn().args(&[args, &["-S"]].concat()).env(env.clone());
            let mut e = accept(engine, &listener, &mut client);
            let block = notification_within_step(&mut e, &client);
            assert_eq!(
                sni_value(&block).map(str::to_ascii_lowercase),
                Some(sni.to_ascii_lowercase())
            );
            client.wait_stdout("Verify return code");
            echo_and_finish(&mut e, &mut client, sni);
            let out = client.stdout();
            assert!(
                out.contains("Verify return code: 0 (ok)"),
                "{args:?} {sni}\n{}",
                client.transcript()
            );
            assert!(
                contains_pem(&out, &leaf_pem(expected)),
                "{args:?} {sni}: s_client did not get the certificate for {}\n{}",
                sni,
                client.transcript()
            );
            let subject = format!("CN = {cn}");
            assert!(out.contains(&subject), "{subject}\n{}", client.transcript());
        }
    }
}

#[test]
fn gnutls_cli_gets_the_pair_of_its_server_name() {
    for args in [&["--sni"][..], &["-k", "2"]] {
        let (env, cases) = real_client_cases(args == ["-k", "2"]);
        for RealCase { sni, expected, cn } in cases {
            let (listener, port) = listen();
            let argv: Vec<String> = [
                "--port",
                &port.to_string(),
                "--sni-hostname",
                sni,
                "--verify-hostname",
                sni,
                "--x509cafile",
                &ca().pem_path.display().to_string(),
                "--print-cert",
                "127.0.0.1",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let mut client = Client::start("gnutls-cli", &argv);
            let engine = spawn().args(&[args, &["-S"]].concat()).env(env.clone());
            let mut e = accept(engine, &listener, &mut client);
            let block = notification_within_step(&mut e, &client);
            assert_eq!(
                sni_value(&block).map(str::to_ascii_lowercase),
                Some(sni.to_ascii_lowercase())
            );
            client.wait_stdout("Handshake was completed");
            echo_and_finish(&mut e, &mut client, sni);
            let out = client.stdout();
            assert!(
                out.contains("The certificate is trusted"),
                "{args:?} {sni}\n{}",
                client.transcript()
            );
            assert!(
                contains_pem(&out, &leaf_pem(expected)),
                "{args:?} {sni}: gnutls-cli did not get the certificate for {sni}\n{}",
                client.transcript()
            );
            let subject = format!("CN={cn}");
            assert!(out.contains(&subject), "{subject}\n{}", client.transcript());
        }
    }
}
