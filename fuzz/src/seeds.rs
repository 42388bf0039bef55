//! Seeds: each target's init writes its starting inputs, as `seed-NAME`
//! files, into the first corpus directory on its command line (cargo fuzz
//! run passes fuzz/corpus/TARGET), unless a file of that name is already
//! there. Nothing is written when the target is given files to replay.

use std::path::PathBuf;

use crate::engine::{fixture, HELLOS};
use crate::identity::{ed25519_pkcs8, identity, rcgen_key};

fn corpus_dir() -> Option<PathBuf> {
    std::env::args_os()
        .skip(1)
        .filter(|a| !a.as_encoded_bytes().starts_with(b"-"))
        .map(PathBuf::from)
        .next()
        .filter(|p| p.is_dir())
}

pub fn write(make: impl FnOnce() -> Vec<(String, Vec<u8>)>) {
    let Some(dir) = corpus_dir() else { return };
    for (name, bytes) in make() {
        let path = dir.join(format!("seed-{name}"));
        if !path.exists() {
            let _ = std::fs::write(path, bytes);
        }
    }
}

pub fn cli() -> Vec<(String, Vec<u8>)> {
    let argv = |args: &[&str]| args.join("\0").into_bytes();
    [
        (
            "s6-tlsd",
            &[
                "-v",
                "2",
                "-d",
                "7",
                "-S",
                "-J",
                "-y",
                "-K",
                "3000",
                "--mandatory-sni",
                "--",
                "3",
                "6",
            ][..],
        ),
        ("cluster", &["-SJy", "-sY", "-v2", "-k1", "3", "4"]),
        (
            "long",
            &[
                "--verbosity=3",
                "--handshake-timeout=50",
                "--sni-level=2",
                "--notification-fd=5",
                "--close-notify",
                "--enforce-close-notify",
                "--client-cert",
                "--sni",
                "3",
                "4",
            ],
        ),
        (
            "long-off",
            &[
                "--no-close-notify",
                "--no-enforce-close-notify",
                "--mandatory-client-cert",
                "--",
                "3",
                "4",
            ],
        ),
        ("value-before-dashes", &["-v", "--", "3", "4"]),
        ("errors", &["-x", "--foo=bar", "-K", "12345678901", "3"]),
        ("extra", &["3", "4", "-S", "--foo", "x"]),
    ]
    .into_iter()
    .map(|(n, a)| (n.to_string(), argv(a)))
    .collect()
}

/// Minimal base64, for PEM.
fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn pem(label: &str, der: &[u8]) -> Vec<u8> {
    let b64 = base64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out.into_bytes()
}

/// The contents of a DER SEQUENCE's last OCTET STRING: the inner key of a
/// PKCS#8 structure (PKCS#1 for RSA).
fn pkcs8_inner(der: &[u8]) -> Option<Vec<u8>> {
    fn header(d: &[u8]) -> Option<(u8, usize, usize)> {
        let tag = *d.first()?;
        let first = *d.get(1)?;
        if first < 0x80 {
            return Some((tag, 2, usize::from(first)));
        }
        let n = usize::from(first & 0x7f);
        let mut len = 0usize;
        for i in 0..n {
            len = len << 8 | usize::from(*d.get(2 + i)?);
        }
        Some((tag, 2 + n, len))
    }
    let (_, h, _) = header(der)?;
    let mut rest = &der[h..];
    while !rest.is_empty() {
        let (tag, h, len) = header(rest)?;
        if tag == 0x04 {
            return rest.get(h..h + len).map(<[u8]>::to_vec);
        }
        rest = rest.get(h + len..)?;
    }
    None
}

/// A keys-target input: a two-byte big-endian length, the CERTFILE
/// contents, then the KEYFILE contents.
pub fn key_input(cert: &[u8], key: &[u8]) -> Vec<u8> {
    let mut v = (cert.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(cert);
    v.extend_from_slice(key);
    v
}

fn self_signed(key: &rcgen::KeyPair) -> Vec<u8> {
    rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .self_signed(key)
        .expect("self-signed")
        .der()
        .to_vec()
}

pub fn keys() -> Vec<(String, Vec<u8>)> {
    use aws_lc_rs::encoding::{AsDer, EcPrivateKeyRfc5915Der, Pkcs8V1Der};
    let id = identity();
    let mut out = Vec::new();
    let cert_pem = pem("CERTIFICATE", &id.server_cert_der);
    let chain_pem = [cert_pem.clone(), pem("CERTIFICATE", &id.ca_der)].concat();
    let key = &id.server_key_pkcs8;
    out.push((
        "ed25519-pem".into(),
        key_input(&chain_pem, &pem("PRIVATE KEY", key)),
    ));
    out.push(("ed25519-der".into(), key_input(&id.server_cert_der, key)));
    out.push((
        "ed25519-mismatch".into(),
        key_input(&cert_pem, &pem("PRIVATE KEY", &id.client_key_pkcs8)),
    ));
    out.push((
        "encrypted".into(),
        key_input(&cert_pem, &pem("ENCRYPTED PRIVATE KEY", key)),
    ));

    for (name, alg) in [
        (
            "p256",
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        ),
        (
            "p384",
            &aws_lc_rs::signature::ECDSA_P384_SHA384_ASN1_SIGNING,
        ),
    ] {
        let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
            alg,
            &aws_lc_rs::rand::SystemRandom::new(),
        )
        .expect("EC key")
        .as_ref()
        .to_vec();
        let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(alg, &pkcs8).expect("EC key");
        let sec1: EcPrivateKeyRfc5915Der = pair.private_key().as_der().expect("SEC1");
        let cert = self_signed(&rcgen_key(&pkcs8));
        out.push((
            format!("{name}-pkcs8"),
            key_input(&pem("CERTIFICATE", &cert), &pem("PRIVATE KEY", &pkcs8)),
        ));
        out.push((
            format!("{name}-sec1"),
            key_input(
                &pem("CERTIFICATE", &cert),
                &pem("EC PRIVATE KEY", sec1.as_ref()),
            ),
        ));
        out.push((format!("{name}-sec1-der"), key_input(&cert, sec1.as_ref())));
    }

    let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("RSA key");
    let pkcs8: Pkcs8V1Der = rsa.as_der().expect("RSA PKCS#8");
    let pkcs8 = pkcs8.as_ref().to_vec();
    if let Ok(key) = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &rustls::pki_types::PrivatePkcs8KeyDer::from(pkcs8.clone()),
        &rcgen::PKCS_RSA_SHA256,
    ) {
        let cert = self_signed(&key);
        out.push((
            "rsa-pkcs8".into(),
            key_input(&pem("CERTIFICATE", &cert), &pem("PRIVATE KEY", &pkcs8)),
        ));
        if let Some(pkcs1) = pkcs8_inner(&pkcs8) {
            out.push((
                "rsa-pkcs1".into(),
                key_input(&pem("CERTIFICATE", &cert), &pem("RSA PRIVATE KEY", &pkcs1)),
            ));
            out.push(("rsa-pkcs1-der".into(), key_input(&cert, &pkcs1)));
        }
    }
    out
}

/// Certificates with every kind of subject the formatter meets.
pub fn subject() -> Vec<(String, Vec<u8>)> {
    use rcgen::{DnType, DnValue};
    let id = identity();
    let key = rcgen_key(&ed25519_pkcs8(&[7; 32]));
    let cert = |dn: Vec<(DnType, DnValue)>| {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name = rcgen::DistinguishedName::new();
        for (t, v) in dn {
            p.distinguished_name.push(t, v);
        }
        p.self_signed(&key).expect("certificate").der().to_vec()
    };
    let all = vec![
        (
            DnType::CountryName,
            DnValue::PrintableString("FR".try_into().unwrap()),
        ),
        (
            DnType::StateOrProvinceName,
            DnValue::Utf8String(" Île-de-France ".into()),
        ),
        (
            DnType::LocalityName,
            DnValue::Ia5String("Paris\n#1".try_into().unwrap()),
        ),
        (
            DnType::OrganizationName,
            DnValue::TeletexString("A, B = C + <D>".try_into().unwrap()),
        ),
        (
            DnType::OrganizationalUnitName,
            DnValue::BmpString("Ünit \\ 2".try_into().unwrap()),
        ),
        (DnType::CommonName, DnValue::Utf8String("client".into())),
        (
            DnType::CustomDnType(vec![2, 5, 4, 5]),
            DnValue::Utf8String("serial".into()),
        ),
    ];
    vec![
        ("server".into(), id.server_cert_der.clone()),
        ("client".into(), id.client_cert_der.clone()),
        ("ca".into(), id.ca_der.clone()),
        ("all".into(), cert(all)),
        (
            "universal".into(),
            cert(vec![(
                DnType::CommonName,
                DnValue::UniversalString("x".try_into().unwrap()),
            )]),
        ),
        (
            "nul".into(),
            cert(vec![(
                DnType::CommonName,
                DnValue::Utf8String("a\0b".into()),
            )]),
        ),
        (
            "none".into(),
            cert(vec![(
                DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 25]),
                DnValue::Ia5String("dc".try_into().unwrap()),
            )]),
        ),
    ]
}

/// The client streams recorded with each ClientHello: whole (for the
/// engine target) or after the ClientHello (for engine_hello), with
/// control bytes for each client-certificate mode.
pub fn engine(with_hello: bool) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (i, name) in HELLOS.iter().enumerate() {
        let hello = fixture(&format!("hello-{name}.bin"));
        let flight = fixture(&format!("flight-{name}.bin"));
        for mode in [0u8, 1, 2] {
            let ctl = (i as u8) << 4 | mode;
            let mut with = |tag: &str, rest: &[u8]| {
                let mut v = vec![ctl];
                if !with_hello {
                    v.extend_from_slice(&hello);
                }
                v.extend_from_slice(rest);
                out.push((format!("{name}-{tag}-m{mode}"), v));
            };
            with("flight", &flight);
            with("hello", &[]);
            // Records a client may send next: CCS, a warning and a fatal
            // alert, an encrypted-looking record, a second ClientHello.
            with("ccs", &[0x14, 3, 3, 0, 1, 1]);
            with("warning", &[0x15, 3, 3, 0, 2, 1, 0]);
            with("fatal", &[0x15, 3, 3, 0, 2, 2, 40]);
            with("appdata", &[&[0x17, 3, 3, 0, 40][..], &[0xaa; 40]].concat());
            with("hello-again", &hello);
        }
    }
    if !with_hello {
        // A TLS 1.1 client (the version in the ClientHello body set to 3.2).
        let mut old = fixture("hello-tls12.bin");
        old[9..11].copy_from_slice(&[3, 2]);
        out.push(("tls11".into(), [&[0u8][..], &old].concat()));
        // TLS_FALLBACK_SCSV (RFC 7507) from clients that fell back: to TLS
        // 1.2 (refused, TLS 1.3 is available), to TLS 1.1 (no version in
        // common), each with the SCSV first and last; and from a TLS 1.3
        // client, which has not fallen back.
        for (name, hello, version) in [
            ("tls12", "hello-tls12.bin", None),
            ("tls11", "hello-tls12.bin", Some([3, 2])),
            ("tls11-records", "hello-tls12.bin", Some([3, 2])),
            ("tls13", "hello-tls13.bin", None),
        ] {
            for (at, position) in [("first", 0), ("last", usize::MAX)] {
                let mut hello = with_fallback_scsv(&fixture(hello), position);
                if let Some(v) = version {
                    hello[9..11].copy_from_slice(&v);
                    if name.ends_with("-records") {
                        hello[1..3].copy_from_slice(&v);
                    }
                }
                out.push((
                    format!("fallback-{name}-{at}"),
                    [&[0u8][..], &hello].concat(),
                ));
            }
        }
        out.push((
            "sni-refused".into(),
            [&[0x40u8][..], &fixture("hello-tls13-nosni.bin")].concat(),
        ));
        out.push((
            "http".into(),
            b"\0GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
        ));
    }
    out
}

/// A recorded ClientHello (one record) with TLS_FALLBACK_SCSV inserted in
/// its cipher suites at `position` (0 first, past the end: last), every
/// length in front of it adjusted.
pub fn with_fallback_scsv(hello: &[u8], position: usize) -> Vec<u8> {
    let grow = |bytes: &mut [u8]| {
        let n = u16::from_be_bytes([bytes[0], bytes[1]]) + 2;
        bytes.copy_from_slice(&n.to_be_bytes());
    };
    let mut h = hello.to_vec();
    // Record header (5), handshake header (4), version (2), random (32).
    let session_id = 5 + 4 + 2 + 32;
    let suites = session_id + 1 + usize::from(h[session_id]);
    let n = usize::from(u16::from_be_bytes([h[suites], h[suites + 1]]));
    let at = suites + 2 + position.min(n / 2) * 2;
    h.splice(at..at, [0x56, 0x00]);
    grow(&mut h[3..5]);
    grow(&mut h[7..9]); // a 24-bit length whose top byte stays 0
    grow(&mut h[suites..suites + 2]);
    h
}
