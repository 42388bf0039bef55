//! Spec sections 3 and 7: the key files named by the environment. Every
//! accepted format and algorithm must complete a handshake and an echo with
//! the in-process rustls client; every bad input must fail at start-up
//! (exit 96, or 100 for an unset variable) with one line naming the
//! variable, the file and the reason, without ever touching the network.
//!
//! Keys are generated at test time (rcgen, and the openssl CLI for format
//! conversions); nothing secret is committed.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::*;
use rustls::ClientConfig;

// ---------------------------------------------------------------- helpers

fn p(path: &Path) -> String {
    path.display().to_string()
}

fn env_of(pairs: &[(&str, &Path)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), p(v))).collect()
}

/// One key pair per algorithm, shared by the tests of this file (RSA 4096
/// takes a while to generate).
fn keys_for(alg: Alg) -> &'static Keys {
    static CACHE: [OnceLock<Keys>; 5] = [const { OnceLock::new() }; 5];
    let i = match alg {
        Alg::EcdsaP256 => 0,
        Alg::EcdsaP384 => 1,
        Alg::Ed25519 => 2,
        Alg::Rsa2048 => 3,
        Alg::Rsa4096 => 4,
    };
    CACHE[i].get_or_init(|| keys(alg, &["localhost"]))
}

/// `openssl pkey` on `keys`' PKCS#8 key with `extra` options, into a new
/// file `name` next to it.
fn convert_key(keys: &Keys, name: &str, extra: &[&str]) -> PathBuf {
    let out = keys.dir.join(name);
    let (key, outp) = (p(&keys.key), p(&out));
    let mut args = vec!["pkey", "-in", &key, "-out", &outp];
    args.extend_from_slice(extra);
    openssl(&args);
    out
}

fn file_starts_with(path: &Path, prefix: &str) -> bool {
    std::fs::read(path)
        .expect("read converted key")
        .starts_with(prefix.as_bytes())
}

/// An engine with `env` completes a handshake with `config` for
/// "localhost" and an echo, then ends cleanly; returns the chain the
/// client was sent.
fn serve_with(env: Vec<(String, String)>, config: Arc<ClientConfig>) -> Vec<Vec<u8>> {
    let mut e = spawn().no_notify().env(env).start();
    let mut tls = connect(&e, config, "localhost");
    let chain = tls
        .conn
        .peer_certificates()
        .expect("server chain")
        .iter()
        .map(|c| c.to_vec())
        .collect();
    echo(&mut e, &mut tls);
    finish(e, tls);
    chain
}

/// Serves under both TLS 1.3 and TLS 1.2.
fn assert_serves(cert: &Path, key: &Path) {
    for config in [tls13(), tls12()] {
        serve_with(env_of(&[("CERTFILE", cert), ("KEYFILE", key)]), config);
    }
}

/// The default pair's certificate with `key`, or `cert` with its key.
fn with_cert(cert: &Path) -> Vec<(String, String)> {
    env_of(&[
        ("CERTFILE", cert),
        ("KEYFILE", &keys_for(Alg::EcdsaP256).key),
    ])
}

fn with_key(key: &Path) -> Vec<(String, String)> {
    env_of(&[
        ("CERTFILE", &keys_for(Alg::EcdsaP256).cert),
        ("KEYFILE", key),
    ])
}

/// The one-line message for a file that was read but not understood:
/// it names the variable, the file, then gives a reason.
fn assert_invalid(got: (Option<i32>, String), var: &str, file: &Path) -> String {
    let (code, stderr) = got;
    assert_eq!(code, Some(96), "{stderr}");
    let prefix = format!("s6-tlsd-io: fatal: invalid {var} file {}: ", p(file));
    assert!(stderr.starts_with(&prefix), "{stderr:?} !~ {prefix:?}");
    let reason = stderr[prefix.len()..].to_string();
    assert!(
        reason.ends_with('\n') && reason.lines().count() == 1,
        "{stderr:?}"
    );
    assert!(reason.trim().len() > 3, "no reason: {stderr:?}");
    reason.trim_end().to_string()
}

fn garbage_dir() -> PathBuf {
    tmpdir("config-bad")
}

// --------------------------------------------- algorithms, PEM PKCS#8

#[test]
fn rsa_2048_pkcs8_pem_serves() {
    let k = keys_for(Alg::Rsa2048);
    assert!(k.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert_serves(&k.cert, &k.key);
}

#[test]
fn rsa_4096_pkcs8_pem_serves() {
    let k = keys_for(Alg::Rsa4096);
    assert_serves(&k.cert, &k.key);
}

#[test]
fn ecdsa_p256_pkcs8_pem_serves() {
    let k = keys_for(Alg::EcdsaP256);
    assert!(k.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert_serves(&k.cert, &k.key);
}

#[test]
fn ecdsa_p384_pkcs8_pem_serves() {
    let k = keys_for(Alg::EcdsaP384);
    assert_serves(&k.cert, &k.key);
}

#[test]
fn ed25519_pkcs8_pem_serves() {
    let k = keys_for(Alg::Ed25519);
    assert!(k.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert_serves(&k.cert, &k.key);
}

// ------------------------------------------ PKCS#1 and SEC1 (traditional)

#[test]
fn rsa_pkcs1_pem_key_serves() {
    for alg in [Alg::Rsa2048, Alg::Rsa4096] {
        let k = keys_for(alg);
        let key = convert_key(k, "pkcs1.pem", &["-traditional"]);
        assert!(file_starts_with(&key, "-----BEGIN RSA PRIVATE KEY-----"));
        assert_serves(&k.cert, &key);
    }
}

#[test]
fn rsa_pkcs1_der_key_serves() {
    let k = keys_for(Alg::Rsa2048);
    let key = convert_key(k, "pkcs1.der", &["-traditional", "-outform", "DER"]);
    assert_serves(&k.cert, &key);
}

/// RSA keys are built by src/rsa.rs, which checks their size, exponent
/// and n = p·q itself, in constant time, instead of through aws-lc's
/// RSA_check_key: a key that is too small, or whose primes do not make
/// its modulus, is still refused at start-up with its reason.
#[test]
fn rsa_key_of_1024_bits_fails_at_startup_as_too_small() {
    let k = keys_for(Alg::Rsa2048);
    let small = k.dir.join("rsa1024.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:1024",
        "-out",
        &p(&small),
    ]);
    let env = env_of(&[("CERTFILE", &k.cert), ("KEYFILE", &small)]);
    let reason = assert_invalid(startup_failure(&[], env), "KEYFILE", &small);
    assert_eq!(
        reason,
        "the RSA key is too small (2048 to 8192 bits are supported)"
    );
}

/// `keys_for(Rsa2048)`'s key as PKCS#1 DER in a new file `name`, with
/// `edit` applied to the contents of its INTEGER number `which` (0 the
/// version, 1 n, ... 4 p, 5 q, ... 8 q^-1 mod p).
fn rsa_key_edited(name: &str, which: usize, edit: impl Fn(&mut [u8])) -> PathBuf {
    let k = keys_for(Alg::Rsa2048);
    let der = convert_key(k, name, &["-traditional", "-outform", "DER"]);
    let mut bytes = std::fs::read(&der).unwrap();
    let at = {
        use s6_tlsd_io::asn1::elements;
        let outer = elements(&bytes).unwrap();
        let int = elements(outer[0].1).unwrap()[which].1;
        let start = int.as_ptr() as usize - bytes.as_ptr() as usize;
        start..start + int.len()
    };
    edit(&mut bytes[at]);
    std::fs::write(&der, bytes).unwrap();
    der
}

#[test]
fn rsa_key_whose_primes_do_not_make_its_modulus_fails_at_startup() {
    let k = keys_for(Alg::Rsa2048);
    // p's low byte moved by 4 (p stays odd): n = p·q no longer holds.
    let key = rsa_key_edited("pkcs1-bad-p.der", 4, |p| *p.last_mut().unwrap() ^= 0x04);
    let env = env_of(&[("CERTFILE", &k.cert), ("KEYFILE", &key)]);
    let reason = assert_invalid(startup_failure(&[], env), "KEYFILE", &key);
    assert_eq!(reason, "the RSA key is inconsistent");
}

/// A two-prime RSA key whose primes differ in size by more than a 64-bit
/// word (1160 and 900 bits: 19 and 15 words), which no usual generator
/// makes, as PKCS#1 DER, with d changed when `wrong_d`; written with a
/// self-signed certificate for it into `dir`. Made with aws-lc's
/// arithmetic, variable time and all: it is a test's key.
fn rsa_key_of_unequal_primes(dir: &Path, wrong_d: bool) -> (PathBuf, PathBuf) {
    use aws_lc_sys as sys;
    use std::ptr::{null, null_mut};
    // SAFETY: every BIGNUM, the context and the RSA are fresh and checked
    // non-null; the RSA takes the eight numbers (set0), the rest are
    // freed once at the end, and so is the DER aws-lc allocated, after
    // its `len` bytes are copied.
    let der = unsafe {
        let ctx = sys::BN_CTX_new();
        let bns: Vec<*mut sys::BIGNUM> = (0..11).map(|_| sys::BN_new()).collect();
        let rsa = sys::RSA_new();
        assert!(!ctx.is_null() && !bns.contains(&null_mut()) && !rsa.is_null());
        let [n, e, d, p, q, dp, dq, qinv, p1, q1, phi] = bns[..] else {
            unreachable!()
        };
        assert_eq!(sys::BN_set_word(e, 65537), 1);
        // Primes until e is invertible modulo (p-1)(q-1).
        loop {
            assert_eq!(
                sys::BN_generate_prime_ex(p, 1160, 0, null(), null(), null_mut()),
                1
            );
            assert_eq!(
                sys::BN_generate_prime_ex(q, 900, 0, null(), null(), null_mut()),
                1
            );
            assert!(!sys::BN_copy(p1, p).is_null() && !sys::BN_copy(q1, q).is_null());
            assert_eq!(sys::BN_sub_word(p1, 1) & sys::BN_sub_word(q1, 1), 1);
            assert_eq!(sys::BN_mul(phi, p1, q1, ctx), 1);
            if !sys::BN_mod_inverse(d, e, phi, ctx).is_null() {
                break;
            }
            sys::ERR_clear_error();
        }
        assert_eq!(sys::BN_mul(n, p, q, ctx), 1);
        assert_eq!(sys::BN_nnmod(dp, d, p1, ctx), 1);
        assert_eq!(sys::BN_nnmod(dq, d, q1, ctx), 1);
        assert!(!sys::BN_mod_inverse(qinv, q, p, ctx).is_null());
        if wrong_d {
            assert_eq!(sys::BN_add_word(d, 2), 1);
        }
        assert_eq!(sys::RSA_set0_key(rsa, n, e, d), 1);
        assert_eq!(sys::RSA_set0_factors(rsa, p, q), 1);
        assert_eq!(sys::RSA_set0_crt_params(rsa, dp, dq, qinv), 1);
        let (mut out, mut len) = (null_mut(), 0);
        assert_eq!(sys::RSA_private_key_to_bytes(&mut out, &mut len, rsa), 1);
        let der = std::slice::from_raw_parts(out, len).to_vec();
        sys::OPENSSL_free(out.cast());
        sys::RSA_free(rsa);
        for b in [p1, q1, phi] {
            sys::BN_free(b);
        }
        sys::BN_CTX_free(ctx);
        der
    };
    let name = if wrong_d { "wrong-d" } else { "right-d" };
    let (key, cert) = (
        dir.join(format!("{name}.der")),
        dir.join(format!("{name}.pem")),
    );
    std::fs::write(&key, der).unwrap();
    openssl(&[
        "req",
        "-x509",
        "-keyform",
        "DER",
        "-key",
        &p(&key),
        "-subj",
        "/CN=localhost",
        "-days",
        "2",
        "-out",
        &p(&cert),
    ]);
    (key, cert)
}

/// aws-lc signs with d, not the CRT numbers, when p and q differ in size by
/// a 64-bit word or more. Such a key serves (`-t` signs once, as the first
/// handshake does); with d changed, its first signature fails aws-lc's
/// check with e, and the engine exits 96 naming KEYFILE, as with a wrong
/// CRT number (with primes of one size, a wrong d is never used: src/rsa.rs,
/// `a_wrong_d_goes_unused_when_the_primes_have_one_width`).
#[test]
fn rsa_key_whose_unequal_primes_have_a_wrong_d_fails_its_first_signature() {
    let dir = tmpdir("unequal-primes");
    for wrong_d in [false, true] {
        let (key, cert) = rsa_key_of_unequal_primes(&dir, wrong_d);
        let env = env_of(&[("CERTFILE", &cert), ("KEYFILE", &key)]);
        let (code, stderr) = code_and_stderr(direct(&["-t"], &env), || "-t hangs".into());
        if wrong_d {
            assert_eq!(code, Some(96), "{stderr}");
            assert!(
                stderr.contains("error: invalid KEYFILE file") && stderr.contains("did not verify"),
                "{stderr:?}"
            );
        } else {
            assert_eq!(code, Some(0), "{stderr}");
        }
    }
}

/// The rest of an RSA key (its CRT numbers) is checked by each signature,
/// as aws-lc checks every one with the public exponent: a key whose
/// q^-1 mod p is wrong starts, fails its first handshake, TLS 1.3 or 1.2,
/// and the engine exits 96 with one line naming KEYFILE and the file.
#[test]
fn inconsistent_rsa_key_fails_at_its_first_handshake() {
    let k = keys_for(Alg::Rsa2048);
    let key = rsa_key_edited("pkcs1-bad-qinv.der", 8, |qinv| {
        *qinv.last_mut().unwrap() ^= 0x04
    });
    for config in [tls13(), tls12()] {
        let env = env_of(&[("CERTFILE", &k.cert), ("KEYFILE", &key)]);
        let mut e = spawn().no_notify().env(env).start();
        assert!(try_connect(&e, config, "localhost").is_err());
        let exit = e.wait_exit();
        assert_eq!(exit.code, Some(96), "{}", exit.stderr);
        let line = format!(
            "invalid KEYFILE file {}: the RSA key is inconsistent \
             (a signature made with it did not verify)",
            p(&key)
        );
        assert!(exit.stderr.contains(&line), "{:?}", exit.stderr);
        assert_eq!(exit.stderr.lines().count(), 1, "{:?}", exit.stderr);
    }
    // -t signs once, as that first handshake does, and so finds it first.
    let env = env_of(&[("CERTFILE", &k.cert), ("KEYFILE", &key)]);
    let (code, stderr) = code_and_stderr(direct(&["-t"], &env), || "-t hangs".into());
    assert_eq!(code, Some(96), "{stderr}");
    assert!(
        stderr.contains("error: invalid KEYFILE file") && stderr.contains("did not verify"),
        "{stderr:?}"
    );
}

#[test]
fn ecdsa_sec1_pem_key_serves() {
    for alg in [Alg::EcdsaP256, Alg::EcdsaP384] {
        let k = keys_for(alg);
        let key = convert_key(k, "sec1.pem", &["-traditional"]);
        assert!(file_starts_with(&key, "-----BEGIN EC PRIVATE KEY-----"));
        assert_serves(&k.cert, &key);
    }
}

#[test]
fn ecdsa_sec1_der_key_serves() {
    let k = keys_for(Alg::EcdsaP384);
    let key = convert_key(k, "sec1.der", &["-traditional", "-outform", "DER"]);
    assert_serves(&k.cert, &key);
}

// --------------------------------------------------------------- DER

#[test]
fn der_pkcs8_key_and_single_der_certificate_serve_for_every_algorithm() {
    for alg in [
        Alg::Rsa2048,
        Alg::Rsa4096,
        Alg::EcdsaP256,
        Alg::EcdsaP384,
        Alg::Ed25519,
    ] {
        let k = keys_for(alg);
        let cert = write_file(&k.dir, "cert.der", &k.cert_der);
        let key = write_file(&k.dir, "key.der", &k.key_der);
        assert_serves(&cert, &key);
        // The chain sent is that one certificate.
        let chain = serve_with(env_of(&[("CERTFILE", &cert), ("KEYFILE", &key)]), tls13());
        assert_eq!(chain, vec![k.cert_der.clone()], "{alg:?}");
    }
}

#[test]
fn der_certificate_with_pem_key_and_pem_certificate_with_der_key_serve() {
    let k = keys_for(Alg::EcdsaP256);
    let cert_der = write_file(&k.dir, "mixed-cert.der", &k.cert_der);
    let key_der = write_file(&k.dir, "mixed-key.der", &k.key_der);
    assert_serves(&cert_der, &k.key);
    assert_serves(&k.cert, &key_der);
}

// ------------------------------------------------------------- chains

struct Chain {
    root_der: Vec<u8>,
    intermediate_der: Vec<u8>,
    leaf_der: Vec<u8>,
    dir: PathBuf,
    leaf_pem: String,
    intermediate_pem: String,
    key: PathBuf,
}

/// root CA -> intermediate CA -> leaf for localhost, all fresh.
fn chain() -> Chain {
    let ca_params = |cn: &str| {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params
    };
    let root_key = rcgen::KeyPair::generate().unwrap();
    let root = ca_params("chain test root").self_signed(&root_key).unwrap();
    let int_key = rcgen::KeyPair::generate().unwrap();
    let int = ca_params("chain test intermediate")
        .signed_by(&int_key, &root, &root_key)
        .unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &int, &int_key)
        .unwrap();
    let dir = tmpdir("chain");
    let key = write_file(&dir, "leaf-key.pem", leaf_key.serialize_pem().as_bytes());
    Chain {
        root_der: root.der().to_vec(),
        intermediate_der: int.der().to_vec(),
        leaf_der: leaf.der().to_vec(),
        dir,
        leaf_pem: leaf.pem(),
        intermediate_pem: int.pem(),
        key,
    }
}

fn trusting_only(
    root_der: &[u8],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    Arc::new(
        ClientConfig::builder_with_protocol_versions(versions)
            .with_root_certificates(roots_of(root_der))
            .with_no_client_auth(),
    )
}

#[test]
fn chain_with_intermediate_leaf_first_verifies_against_the_root_alone() {
    let c = chain();
    let cert = write_file(
        &c.dir,
        "chain.pem",
        format!("{}{}", c.leaf_pem, c.intermediate_pem).as_bytes(),
    );
    let env = env_of(&[("CERTFILE", &cert), ("KEYFILE", &c.key)]);
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let sent = serve_with(env.clone(), trusting_only(&c.root_der, &[version]));
        assert_eq!(sent, vec![c.leaf_der.clone(), c.intermediate_der.clone()]);
    }
}

/// The control for the test above: without the intermediate in the file,
/// the same client cannot verify the leaf.
#[test]
fn chain_without_its_intermediate_does_not_verify() {
    let c = chain();
    let cert = write_file(&c.dir, "leaf-only.pem", c.leaf_pem.as_bytes());
    let mut e = spawn()
        .no_notify()
        .env(env_of(&[("CERTFILE", &cert), ("KEYFILE", &c.key)]))
        .start();
    let sock = e.client().try_clone().unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let conn = rustls::ClientConnection::new(
        trusting_only(&c.root_der, &[&rustls::version::TLS13]),
        "localhost".try_into().unwrap(),
    )
    .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let mut result = Ok((0, 0));
    while tls.conn.is_handshaking() && result.is_ok() {
        result = tls.conn.complete_io(&mut tls.sock);
    }
    let err = result.expect_err("the client must refuse the leaf alone");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    drop(tls);
    e.client.take();
    e.close_app_tx();
    assert_eq!(e.wait_exit().code, Some(98));
}

// ------------------------------------------------------- unset variables

#[test]
fn certfile_unset_is_checked_first() {
    assert_eq!(
        startup_failure(&[], vec![]),
        (Some(100), fatal("CERTFILE not set"))
    );
    let k = keys_for(Alg::EcdsaP256);
    assert_eq!(
        startup_failure(&[], env_of(&[("KEYFILE", &k.key)])),
        (Some(100), fatal("CERTFILE not set"))
    );
}

#[test]
fn keyfile_unset_fails_at_startup() {
    let k = keys_for(Alg::EcdsaP256);
    assert_eq!(
        startup_failure(&[], env_of(&[("CERTFILE", &k.cert)])),
        (Some(100), fatal("KEYFILE not set"))
    );
}

// --------------------------------------------------- unreadable files

#[test]
fn missing_certfile_fails_at_startup_naming_certfile() {
    let missing = garbage_dir().join("nonexistent.pem");
    assert_eq!(
        startup_failure(&[], with_cert(&missing)),
        (
            Some(96),
            fatal(&format!(
                "unable to read CERTFILE file {}: No such file or directory",
                p(&missing)
            ))
        )
    );
}

#[test]
fn missing_keyfile_fails_at_startup_naming_keyfile() {
    let missing = garbage_dir().join("nonexistent.pem");
    assert_eq!(
        startup_failure(&[], with_key(&missing)),
        (
            Some(96),
            fatal(&format!(
                "unable to read KEYFILE file {}: No such file or directory",
                p(&missing)
            ))
        )
    );
}

#[test]
fn directory_as_certfile_or_keyfile_fails_at_startup() {
    let dir = garbage_dir();
    assert_eq!(
        startup_failure(&[], with_cert(&dir)),
        (
            Some(96),
            fatal(&format!(
                "unable to read CERTFILE file {}: Is a directory",
                p(&dir)
            ))
        )
    );
    assert_eq!(
        startup_failure(&[], with_key(&dir)),
        (
            Some(96),
            fatal(&format!(
                "unable to read KEYFILE file {}: Is a directory",
                p(&dir)
            ))
        )
    );
}

#[test]
fn empty_certfile_fails_at_startup_naming_certfile() {
    let empty = write_file(&garbage_dir(), "empty.pem", b"");
    assert_eq!(
        startup_failure(&[], with_cert(&empty)),
        (
            Some(96),
            fatal(&format!(
                "invalid CERTFILE file {}: the file is empty",
                p(&empty)
            ))
        )
    );
}

#[test]
fn empty_keyfile_fails_at_startup_naming_keyfile() {
    let empty = write_file(&garbage_dir(), "empty.pem", b"");
    assert_eq!(
        startup_failure(&[], with_key(&empty)),
        (
            Some(96),
            fatal(&format!(
                "invalid KEYFILE file {}: the file is empty",
                p(&empty)
            ))
        )
    );
}

// ------------------------------------------------------------- garbage

#[test]
fn garbage_certfile_fails_at_startup_naming_certfile() {
    let dir = garbage_dir();
    let text = write_file(&dir, "text.pem", b"this is not a certificate\n");
    assert_invalid(startup_failure(&[], with_cert(&text)), "CERTFILE", &text);
    // Looks like DER (a SEQUENCE) but is not a certificate.
    let der = write_file(&dir, "junk.der", &[0x30, 0x82, 0x01, 0x00, 1, 2, 3, 4]);
    assert_invalid(startup_failure(&[], with_cert(&der)), "CERTFILE", &der);
    // PEM armour around junk.
    let armour = write_file(
        &dir,
        "armour.pem",
        b"-----BEGIN CERTIFICATE-----\n!!!! not base64 !!!!\n-----END CERTIFICATE-----\n",
    );
    assert_invalid(
        startup_failure(&[], with_cert(&armour)),
        "CERTFILE",
        &armour,
    );
    // Well-formed base64 that is not a certificate.
    let b64 = write_file(
        &dir,
        "b64.pem",
        b"-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
    );
    assert_invalid(startup_failure(&[], with_cert(&b64)), "CERTFILE", &b64);
}

#[test]
fn garbage_keyfile_fails_at_startup_naming_keyfile() {
    let dir = garbage_dir();
    let text = write_file(&dir, "text.pem", b"this is not a key\n");
    assert_invalid(startup_failure(&[], with_key(&text)), "KEYFILE", &text);
    let der = write_file(&dir, "junk.der", &[0x30, 0x82, 0x01, 0x00, 1, 2, 3, 4]);
    assert_invalid(startup_failure(&[], with_key(&der)), "KEYFILE", &der);
    let b64 = write_file(
        &dir,
        "b64.pem",
        b"-----BEGIN PRIVATE KEY-----\naGVsbG8gd29ybGQ=\n-----END PRIVATE KEY-----\n",
    );
    assert_invalid(startup_failure(&[], with_key(&b64)), "KEYFILE", &b64);
}

/// What no start-up reason may read like: a library's error names, Debug
/// output, bytes in decimal, a "peer" where the file is our own.
fn assert_in_words(reason: &str) {
    for bad in [
        "peer",
        "[",
        "{",
        "Bad",
        "unexpected error",
        "rustls",
        "webpki",
        "Error",
    ] {
        assert!(!reason.contains(bad), "{reason:?} contains {bad:?}");
    }
}

#[test]
fn damaged_key_files_are_explained_in_words() {
    let dir = garbage_dir();
    let k = keys_for(Alg::EcdsaP256);
    let cut_at = |pem: &str, len: usize| pem[..len].to_string();
    // Cut in the middle of the file: no end line.
    let cert = write_file(&dir, "cut.pem", cut_at(&k.cert_pem, 200).as_bytes());
    let reason = assert_invalid(startup_failure(&[], with_cert(&cert)), "CERTFILE", &cert);
    assert_eq!(
        reason,
        "the PEM block CERTIFICATE has no end line (the file is cut short?)"
    );
    let key = write_file(&dir, "cut-key.pem", cut_at(&k.key_pem, 60).as_bytes());
    let reason = assert_invalid(startup_failure(&[], with_key(&key)), "KEYFILE", &key);
    assert_eq!(
        reason,
        "the PEM block PRIVATE KEY has no end line (the file is cut short?)"
    );
    // The base64 body cut, the end line kept.
    let body_cut = |pem: &str| {
        let lines: Vec<&str> = pem.lines().collect();
        [&lines[..2], &lines[lines.len() - 1..]].concat().join("\n") + "\n"
    };
    let cert = write_file(&dir, "body-cut.pem", body_cut(&k.cert_pem).as_bytes());
    let reason = assert_invalid(startup_failure(&[], with_cert(&cert)), "CERTFILE", &cert);
    assert_eq!(
        reason,
        "the first certificate cannot be decoded (a damaged or incomplete file?)"
    );
    let key = write_file(&dir, "body-cut-key.pem", body_cut(&k.key_pem).as_bytes());
    let reason = assert_invalid(startup_failure(&[], with_key(&key)), "KEYFILE", &key);
    assert!(
        reason.starts_with("the private key cannot be decoded (a damaged or incomplete file?)"),
        "{reason}"
    );
    // Every other broken input of this file, in words too.
    let armour = write_file(
        &dir,
        "armour2.pem",
        b"-----BEGIN CERTIFICATE-----\n!!!! not base64 !!!!\n-----END CERTIFICATE-----\n",
    );
    let junk = write_file(&dir, "junk2.der", &[0x30, 0x82, 0x01, 0x00, 1, 2, 3, 4]);
    for (var, file) in [
        ("CERTFILE", &armour),
        ("CERTFILE", &junk),
        ("KEYFILE", &junk),
    ] {
        let env = match var {
            "CERTFILE" => with_cert(file),
            _ => with_key(file),
        };
        assert_in_words(&assert_invalid(startup_failure(&[], env), var, file));
    }
    assert_in_words(&assert_invalid(
        startup_failure(&[], with_key(&cert)),
        "KEYFILE",
        &cert,
    ));
}

#[test]
fn key_file_given_as_certfile_fails_at_startup_naming_certfile() {
    let k = keys_for(Alg::EcdsaP256);
    let reason = assert_invalid(
        startup_failure(&[], env_of(&[("CERTFILE", &k.key), ("KEYFILE", &k.key)])),
        "CERTFILE",
        &k.key,
    );
    assert_eq!(reason, "no CERTIFICATE block found");
    // The DER key, too.
    let key_der = write_file(&garbage_dir(), "key.der", &k.key_der);
    assert_invalid(
        startup_failure(&[], env_of(&[("CERTFILE", &key_der), ("KEYFILE", &k.key)])),
        "CERTFILE",
        &key_der,
    );
}

#[test]
fn certificate_file_given_as_keyfile_fails_at_startup_naming_keyfile() {
    let k = keys_for(Alg::EcdsaP256);
    let reason = assert_invalid(
        startup_failure(&[], env_of(&[("CERTFILE", &k.cert), ("KEYFILE", &k.cert)])),
        "KEYFILE",
        &k.cert,
    );
    assert_eq!(reason, "no PRIVATE KEY block found");
}

#[test]
fn encrypted_key_fails_at_startup_naming_keyfile() {
    let k = keys_for(Alg::EcdsaP256);
    let enc = k.dir.join("encrypted.pem");
    openssl(&[
        "pkcs8",
        "-topk8",
        "-v2",
        "aes-256-cbc",
        "-passout",
        "pass:x",
        "-in",
        &p(&k.key),
        "-out",
        &p(&enc),
    ]);
    assert!(file_starts_with(
        &enc,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----"
    ));
    let reason = assert_invalid(startup_failure(&[], with_key(&enc)), "KEYFILE", &enc);
    assert_eq!(reason, "encrypted private keys are not supported");
}

#[test]
fn encrypted_traditional_rsa_key_fails_at_startup_naming_keyfile() {
    let k = keys_for(Alg::Rsa2048);
    let enc = k.dir.join("encrypted-pkcs1.pem");
    openssl(&[
        "rsa",
        "-traditional",
        "-aes256",
        "-passout",
        "pass:x",
        "-in",
        &p(&k.key),
        "-out",
        &p(&enc),
    ]);
    assert!(file_starts_with(&enc, "-----BEGIN RSA PRIVATE KEY-----"));
    let env = env_of(&[("CERTFILE", &k.cert), ("KEYFILE", &enc)]);
    let reason = assert_invalid(startup_failure(&[], env), "KEYFILE", &enc);
    assert_eq!(reason, "encrypted private keys are not supported");
}

#[test]
fn encrypted_der_key_fails_at_startup_naming_keyfile() {
    let k = keys_for(Alg::EcdsaP256);
    let enc = k.dir.join("encrypted.der");
    openssl(&[
        "pkcs8",
        "-topk8",
        "-v2",
        "aes-256-cbc",
        "-passout",
        "pass:x",
        "-outform",
        "DER",
        "-in",
        &p(&k.key),
        "-out",
        &p(&enc),
    ]);
    assert_invalid(startup_failure(&[], with_key(&enc)), "KEYFILE", &enc);
}

#[test]
fn unsupported_key_type_fails_at_startup_naming_keyfile() {
    // secp256k1 parses as SEC1 but no TLS signature scheme uses it.
    let dir = garbage_dir();
    let (key, cert) = (dir.join("k1-key.pem"), dir.join("k1-cert.pem"));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:secp256k1",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-days",
        "1",
        "-keyout",
        &p(&key),
        "-out",
        &p(&cert),
    ]);
    let env = env_of(&[("CERTFILE", &cert), ("KEYFILE", &key)]);
    assert_invalid(startup_failure(&[], env), "KEYFILE", &key);
}

// ------------------------------------------------------------ mismatch

fn assert_mismatch(cert: &Path, key: &Path) {
    assert_eq!(
        startup_failure(&[], env_of(&[("CERTFILE", cert), ("KEYFILE", key)])),
        (
            Some(96),
            fatal(&format!(
                "the private key in KEYFILE file {} does not match the certificate in CERTFILE file {}",
                p(key),
                p(cert)
            ))
        )
    );
}

#[test]
fn key_not_matching_the_certificate_fails_at_startup() {
    let a = keys_for(Alg::EcdsaP256);
    let b = keys(Alg::EcdsaP256, &["localhost"]);
    assert_mismatch(&a.cert, &b.key);
}

#[test]
fn key_of_another_algorithm_fails_at_startup() {
    assert_mismatch(&keys_for(Alg::EcdsaP256).cert, &keys_for(Alg::Rsa2048).key);
    assert_mismatch(&keys_for(Alg::Rsa2048).cert, &keys_for(Alg::EcdsaP384).key);
}

#[test]
fn rsa_key_not_matching_the_certificate_fails_at_startup() {
    let other = keys(Alg::Rsa2048, &["localhost"]);
    assert_mismatch(&keys_for(Alg::Rsa2048).cert, &other.key);
}

#[test]
fn ed25519_key_not_matching_the_certificate_fails_at_startup() {
    let other = keys(Alg::Ed25519, &["localhost"]);
    assert_mismatch(&keys_for(Alg::Ed25519).cert, &other.key);
}

/// With TLS_TICKET_KEYFILE too, an RSA key that does not match its
/// certificate is refused at start-up, and one that does, PKCS#8 or
/// PKCS#1, serves TLS 1.3 and 1.2.
#[test]
fn with_tickets_rsa_keys_are_still_checked_at_startup_and_serve() {
    use std::os::unix::fs::PermissionsExt;
    let tickets = tmpdir("ticket-key").join("tickets");
    std::fs::write(&tickets, [7u8; 32]).unwrap();
    std::fs::set_permissions(&tickets, std::fs::Permissions::from_mode(0o600)).unwrap();
    let with_tickets = |cert: &Path, key: &Path| {
        env_of(&[
            ("CERTFILE", cert),
            ("KEYFILE", key),
            ("TLS_TICKET_KEYFILE", &tickets),
        ])
    };
    let k = keys_for(Alg::Rsa2048);
    let other = keys(Alg::Rsa2048, &["localhost"]);
    let (code, message) = startup_failure(&[], with_tickets(&k.cert, &other.key));
    assert_eq!(code, Some(96), "{message}");
    assert!(
        message.contains("does not match the certificate"),
        "{message}"
    );
    let pkcs1 = convert_key(k, "pkcs1-tickets.pem", &["-traditional"]);
    for key in [&k.key, &pkcs1] {
        for config in [tls13(), tls12()] {
            serve_with(with_tickets(&k.cert, key), config);
        }
    }
}

// ------------------------------------------------------ named pairs

#[test]
fn named_pair_errors_name_their_variable() {
    let dir = garbage_dir();
    let text = write_file(&dir, "text.pem", b"not a key\n");
    let k = keys_for(Alg::EcdsaP256);
    let env = env_of(&[
        ("CERTFILE:localhost", &k.cert),
        ("KEYFILE:localhost", &text),
    ]);
    assert_invalid(
        startup_failure(&["-k", "2"], env),
        "KEYFILE:localhost",
        &text,
    );
    let env = env_of(&[("CERTFILE:localhost", &text), ("KEYFILE:localhost", &k.key)]);
    assert_invalid(
        startup_failure(&["-k", "2"], env),
        "CERTFILE:localhost",
        &text,
    );
    let missing = dir.join("nonexistent.pem");
    let env = env_of(&[
        ("CERTFILE:localhost", &missing),
        ("KEYFILE:localhost", &k.key),
    ]);
    assert_eq!(
        startup_failure(&["-k", "1"], {
            let mut env = env;
            env.extend(key_env(k));
            env
        }),
        (
            Some(96),
            fatal(&format!(
                "unable to read CERTFILE:localhost file {}: No such file or directory",
                p(&missing)
            ))
        )
    );
}

#[test]
fn keyfile_for_a_name_without_its_certfile_fails_at_startup() {
    let k = keys_for(Alg::EcdsaP256);
    let env = env_of(&[("KEYFILE:a.example.com", &k.key)]);
    assert_eq!(
        startup_failure(&["-k", "2"], env),
        (
            Some(96),
            fatal(
                "environment variable KEYFILE:a.example.com not paired with the corresponding CERTFILE"
            )
        )
    );
}

#[test]
fn mandatory_sni_without_any_named_pair_fails_at_startup() {
    let k = keys_for(Alg::EcdsaP256);
    assert_eq!(
        startup_failure(&["-k", "2"], key_env(k)),
        (
            Some(96),
            fatal("no suitable keypairs found in the environment")
        )
    );
}

#[test]
fn bare_keyfile_colon_is_ignored() {
    let k = keys_for(Alg::EcdsaP256);
    let mut env = key_env(k);
    env.push(("KEYFILE:".into(), "/nonexistent".into()));
    let mut e = spawn().no_notify().args(&["-k", "1"]).env(env).start();
    let mut tls = connect(&e, tls13(), "localhost");
    echo(&mut e, &mut tls);
    finish(e, tls);
}
