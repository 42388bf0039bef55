//! The `crl` target: a CRL file as the engine reads it (crl.rs: PEM with
//! `X509 CRL` blocks, or one DER CRL), the DER readers of asn1.rs that
//! crl.rs and check.rs use (serial and issuer, next update, validity), and
//! the client verifier built of what was read. Properties:
//!
//! - nothing panics, whatever the bytes;
//! - a refused file is a configuration error (exit 96) that names the
//!   variable and the file, on one line;
//! - a file that is read gives CRLs that the verifier takes (otherwise
//!   `-t` and the start-up would pass a file that every connection then
//!   fails on), each with a next update that `-t` can report (webpki
//!   requires it);
//! - a CRL of the test CA that the verifier uses agrees with check.rs's
//!   next update: at one second before it the CRL is in force, at it the
//!   CRL is stale and the chain refused (check.rs says "stale" from that
//!   second too);
//! - when the test client's certificate is revoked, the error names its
//!   serial (`03`).

use std::path::Path;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::CertificateError;

use s6_tlsd_io::error::Error;
use s6_tlsd_io::source::Source;
use s6_tlsd_io::{asn1, crl, tls};

use crate::identity::{identity, CLIENT_SERIAL};

/// What a check of the test client's certificate at `secs` gives.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Accepted,
    Revoked,
    Stale,
    /// Anything else (a signature that does not verify, say).
    Other(String),
}

fn verdict(verifier: &dyn ClientCertVerifier, secs: u64) -> Verdict {
    let client = CertificateDer::from(identity().client_cert_der.clone());
    let now = UnixTime::since_unix_epoch(Duration::from_secs(secs));
    match verifier.verify_client_cert(&client, &[], now) {
        Ok(_) => Verdict::Accepted,
        Err(rustls::Error::InvalidCertificate(CertificateError::Revoked)) => Verdict::Revoked,
        Err(rustls::Error::InvalidCertificate(
            CertificateError::ExpiredRevocationList
            | CertificateError::ExpiredRevocationListContext { .. },
        )) => Verdict::Stale,
        Err(e) => Verdict::Other(e.to_string()),
    }
}

/// Every property, for one input written to `path`.
pub fn check(data: &[u8], path: &Path) {
    // The readers alone, on the input as DER.
    let _ = asn1::validity(data);
    let _ = asn1::next_update(data);
    let _ = asn1::serial_and_issuer(data);

    std::fs::write(path, data).expect("write the CRL file");
    let file = Source::file(crl::FILE_VAR, path);
    let crls = match crl::read_file(&file) {
        Ok(crls) => crls,
        Err(e) => return refused(&e, path),
    };
    assert!(!crls.is_empty(), "a file read gives no CRL");
    for one in &crls {
        assert!(
            asn1::next_update(one).is_some(),
            "webpki takes a CRL whose next update check.rs cannot read"
        );
    }
    let id = identity();
    let verifier = tls::client_verifier(id.provider.clone(), id.roots(), crls.clone(), true)
        .unwrap_or_else(|e| panic!("CRLs read without error, refused by the verifier: {e}"));
    let (verifier, revoked) = crl::naming_revoked(verifier, &crls);

    // One CRL of the test CA: the verifier and check.rs agree on when it
    // goes stale.
    let [one] = &crls[..] else { return };
    // It covers the test client if its issuer is the CA and it has no
    // issuing distribution point (which the client's certificate, with no
    // distribution point of its own, would have to match).
    let ca_subject = asn1::serial_and_issuer(&id.ca_der).map(|(_, issuer)| issuer);
    let covers = webpki::OwnedCertRevocationList::from_der(one.as_ref())
        .map(webpki::CertRevocationList::from)
        .is_ok_and(|c| Some(c.issuer()) == ca_subject && c.issuing_distribution_point().is_none());
    if !covers {
        return;
    }
    let Some(next) = asn1::next_update(one) else {
        return;
    };
    let next = next.unix_duration().as_secs();
    let Some(before) = next.checked_sub(1) else {
        return;
    };
    let in_force = verdict(&*verifier, before);
    if matches!(in_force, Verdict::Accepted | Verdict::Revoked) {
        assert_eq!(
            verdict(&*verifier, next),
            Verdict::Stale,
            "the CRL is in force at {before}, one second before its next update (check.rs), \
             but the verifier does not find it stale at {next}"
        );
    }
    if in_force == Verdict::Revoked {
        let e = revoked.explain(Error::Tls("refused".into()));
        let want = format!("refused: the certificate with serial {CLIENT_SERIAL:02X} is revoked");
        assert_eq!(e.to_string().split("fatal: ").last(), Some(&*want));
    }
}

fn refused(e: &Error, path: &Path) {
    let msg = e.to_string();
    assert_eq!(e.exit_code(), 96, "{msg}");
    let named = format!("invalid CRLFILE file {}: ", path.display());
    assert!(
        msg.contains(&named),
        "the message names neither variable nor file: {msg}"
    );
    assert!(!msg.contains('\n'), "a multi-line message: {msg:?}");
}

/// CRLs and certificates to start from, generated (the CA's key is a
/// constant of identity.rs, and Ed25519 signs deterministically).
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    use rcgen::{
        date_time_ymd, CertificateRevocationListParams, CrlDistributionPoint,
        CrlIssuingDistributionPoint, CrlScope, KeyIdMethod, RevocationReason, RevokedCertParams,
        SerialNumber,
    };
    let (ca, ca_key) = crate::identity::ca();
    let params = |next: (i32, u8, u8), number: u8, revoked_certs: Vec<RevokedCertParams>| {
        CertificateRevocationListParams {
            this_update: date_time_ymd(2000, 1, 1),
            next_update: date_time_ymd(next.0, next.1, next.2),
            crl_number: SerialNumber::from_slice(&[number]),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        }
    };
    let revoked = |serial: u8, reason_code, invalidity_date| RevokedCertParams {
        serial_number: SerialNumber::from_slice(&[serial]),
        revocation_time: date_time_ymd(2001, 2, 3),
        reason_code,
        invalidity_date,
    };
    let crl = |next, certs: &[(u8, Option<RevocationReason>)]| {
        let certs = certs.iter().map(|&(s, r)| revoked(s, r, None)).collect();
        params(next, 1, certs)
            .signed_by(&ca, &ca_key)
            .expect("a CRL")
    };
    let pem = |c: &rcgen::CertificateRevocationList| c.pem().expect("PEM").into_bytes();
    let client = [(CLIENT_SERIAL, Some(RevocationReason::KeyCompromise))];
    let others = [(7, None), (0x80, Some(RevocationReason::Superseded))];
    // UTCTime up to 2049, GeneralizedTime from 2050 (RFC 5280 4.1.2.5).
    let revoking = crl((2040, 6, 7), &client);
    let generalized = crl((2100, 1, 1), &client);
    let stale = crl((2010, 1, 1), &client);
    let other = crl((2049, 12, 31), &others);
    let empty = crl((2050, 1, 1), &[]);
    // With an issuing distribution point: it covers only certificates that
    // name that point, which the test client's does not.
    let removed = revoked(
        CLIENT_SERIAL,
        Some(RevocationReason::RemoveFromCrl),
        Some(date_time_ymd(2001, 1, 1)),
    );
    let idp = CertificateRevocationListParams {
        issuing_distribution_point: Some(CrlIssuingDistributionPoint {
            distribution_point: CrlDistributionPoint {
                uris: vec!["http://crl.example/ca.crl".into()],
            },
            scope: Some(CrlScope::UserCertsOnly),
        }),
        ..params((2030, 1, 1), 2, vec![removed])
    }
    .signed_by(&ca, &ca_key)
    .expect("a CRL");
    let mut out = vec![
        ("revoking.der".to_string(), revoking.der().to_vec()),
        ("revoking.pem".into(), pem(&revoking)),
        ("generalized.der".into(), generalized.der().to_vec()),
        ("stale.pem".into(), pem(&stale)),
        ("others.der".into(), other.der().to_vec()),
        ("empty.pem".into(), pem(&empty)),
        ("idp.der".into(), idp.der().to_vec()),
        (
            "bundle.pem".into(),
            [pem(&other), b"comment\n".to_vec(), pem(&revoking)].concat(),
        ),
        ("ca.der".into(), identity().ca_der.clone()),
        ("client.der".into(), identity().client_cert_der.clone()),
    ];
    // The CRL in a PEM block of another label, and cut short.
    let mut mislabelled = pem(&revoking);
    let text = String::from_utf8_lossy(&mislabelled).replace("X509 CRL", "CERTIFICATE");
    mislabelled = text.into_bytes();
    out.push(("mislabelled.pem".into(), mislabelled));
    let der = revoking.der().to_vec();
    out.push(("truncated.der".into(), der[..der.len() / 2].to_vec()));
    out
}

/// A scratch file for the CRL, per process.
pub fn scratch_file() -> &'static Path {
    static FILE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let dir = crate::scratch_dir("crl");
        extern "C" fn cleanup() {
            if let Some(f) = FILE.get() {
                let _ = std::fs::remove_file(f);
                if let Some(dir) = f.parent() {
                    let _ = std::fs::remove_dir(dir);
                }
            }
        }
        // SAFETY: registering a plain function to run at exit.
        unsafe { libc::atexit(cleanup) };
        dir.join("crl")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_passes() {
        let path = scratch_file();
        for (name, bytes) in seeds() {
            eprintln!("seed {name}");
            check(&bytes, path);
        }
    }

    #[test]
    fn the_revoking_seed_is_in_force_then_stale() {
        let id = identity();
        let (name, der) = seeds().remove(0);
        assert_eq!(name, "revoking.der");
        let next = asn1::next_update(&der).unwrap().unix_duration().as_secs();
        let crls = vec![rustls::pki_types::CertificateRevocationListDer::from(der)];
        let verifier = tls::client_verifier(id.provider.clone(), id.roots(), crls, true).unwrap();
        assert_eq!(verdict(&*verifier, next - 1), Verdict::Revoked);
        assert_eq!(verdict(&*verifier, next), Verdict::Stale);
    }
}
