//! Certificate revocation lists for client certificates: the `XXXXXXXX.rN`
//! files of `CADIR` (where `openssl rehash` links CRLs, beside the CAs'
//! `XXXXXXXX.N`) and the PEM bundle named by `CRLFILE` (usable with `CAFILE`
//! too). Read after the privilege drop, with the trust anchors.
//!
//! Unlike a CA file, a CRL that cannot be read or decoded stops the engine:
//! skipping it would silently let in the certificates it revokes.
//!
//! The policy, given to rustls' verifier in tls.rs: every certificate of the
//! client's chain whose issuer has a CRL is checked against it; a CRL past
//! its nextUpdate refuses the chain (the revocations it would announce are
//! unknown); a certificate whose issuer has no CRL is accepted, so that one
//! CA's CRL does not lock out the clients of the others.

use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::CertificateError;
use webpki::{CertRevocationList, OwnedCertRevocationList};

use crate::env::Env;
use crate::error::{pem_reason, Error};
use crate::source::Source;
use crate::tls::Observer;

pub const FILE_VAR: &str = "CRLFILE";

/// Every CRL the environment names, each decoded and checked.
pub fn read_crls(env: &Env) -> Result<Vec<CertificateRevocationListDer<'static>>, Error> {
    let mut crls = Vec::new();
    for file in files(env)? {
        crls.extend(read_file(&file)?);
    }
    Ok(crls)
}

/// The CRLs of a file (named by CRLFILE, or one of CADIR's), each decoded
/// and checked.
pub fn read_file(file: &Source) -> Result<Vec<CertificateRevocationListDer<'static>>, Error> {
    decode(&file.read()?).map_err(|reason| file.invalid(reason))
}

/// The `XXXXXXXX.rN` files of CADIR, in a fixed order so that the first
/// bad file reported is always the same one, then CRLFILE.
pub fn files(env: &Env) -> Result<Vec<Source>, Error> {
    let mut files = Vec::new();
    if let Some(dir) = env.get("CADIR") {
        let unreadable = |e: std::io::Error| Source::directory("CADIR", dir).unreadable(&e);
        for entry in std::fs::read_dir(dir).map_err(unreadable)? {
            let entry = entry.map_err(unreadable)?;
            if is_hashed_crl_name(entry.file_name().as_encoded_bytes()) {
                files.push(Source::file("CADIR", entry.path()));
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
    }
    if let Some(file) = env.get(FILE_VAR) {
        files.push(Source::file(FILE_VAR, file));
    }
    Ok(files)
}

fn is_hashed_crl_name(name: &[u8]) -> bool {
    name.len() == 11
        && name[..8].iter().all(u8::is_ascii_hexdigit)
        && name[8..10] == *b".r"
        && name[10].is_ascii_digit()
}

/// PEM with one or more `X509 CRL` sections, or one DER CRL; each must be
/// a CRL that the verifier can use. The reason otherwise.
fn decode(bytes: &[u8]) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    let crls = if bytes.first() == Some(&0x30) {
        vec![CertificateRevocationListDer::from(bytes.to_vec())]
    } else {
        CertificateRevocationListDer::pem_slice_iter(bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_reason(&e))?
    };
    if crls.is_empty() {
        return Err("no CRL found (no X509 CRL block, nor a DER CRL)".into());
    }
    for crl in &crls {
        OwnedCertRevocationList::from_der(crl.as_ref()).map_err(|e| unusable(&e))?;
    }
    Ok(crls)
}

/// Why webpki cannot use a CRL, in words (its error names are no help).
fn unusable(e: &webpki::Error) -> String {
    use webpki::Error::*;
    match e {
        UnsupportedCrlVersion => "the CRL is not a version 2 CRL".into(),
        UnsupportedCriticalExtension => {
            "the CRL has a critical extension this engine does not know".into()
        }
        UnsupportedDeltaCrl => "delta CRLs are not supported".into(),
        UnsupportedIndirectCrl => "indirect CRLs are not supported".into(),
        UnsupportedRevocationReason => {
            "the CRL lists a revocation reason this engine does not know".into()
        }
        _ => "not a CRL that can be decoded (a damaged or incomplete file?)".into(),
    }
}

/// What `naming_revoked`'s verifier found, read once the handshake has
/// failed.
#[derive(Clone, Default)]
pub struct Revoked(Arc<OnceLock<String>>);

impl Revoked {
    /// The handshake's error, with the serial of the revoked certificate
    /// when that is why it failed.
    pub fn explain(&self, e: Error) -> Error {
        match (e, self.0.get()) {
            (Error::Tls(m), Some(serial)) => Error::Tls(format!(
                "{m}: the certificate with serial {serial} is revoked"
            )),
            (e, _) => e,
        }
    }
}

/// rustls says that a certificate is revoked, not which one: `inner`
/// wrapped, if there are CRLs, so that it lets rustls decide (and send
/// `certificate_revoked`), then finds the revoked certificate's serial in
/// the CRLs, for the error message; the handle tells which it found.
pub fn naming_revoked(
    inner: Arc<dyn ClientCertVerifier>,
    crls: &[CertificateRevocationListDer<'_>],
) -> (Arc<dyn ClientCertVerifier>, Revoked) {
    let revoked = Revoked::default();
    if crls.is_empty() {
        return (inner, revoked);
    }
    let crls: Vec<CertRevocationList<'static>> = crls
        .iter()
        .filter_map(|c| OwnedCertRevocationList::from_der(c.as_ref()).ok())
        .map(CertRevocationList::from)
        .collect();
    let found = revoked.0.clone();
    let observer: Observer = Box::new(move |end_entity, intermediates, result| {
        if let Err(rustls::Error::InvalidCertificate(CertificateError::Revoked)) = result {
            let chain: Vec<_> = std::iter::once(end_entity).chain(intermediates).collect();
            let serial = revoked_serial(&crls, &chain);
            let _ = found.set(serial.unwrap_or_else(|| "(unknown)".into()));
        }
    });
    (crate::tls::observed(inner, observer), revoked)
}

/// The serial of the first certificate of the chain that a CRL of its
/// issuer lists, in `openssl x509 -serial`'s hex.
fn revoked_serial(
    crls: &[CertRevocationList<'static>],
    chain: &[&CertificateDer<'_>],
) -> Option<String> {
    chain.iter().find_map(|der| {
        let (serial, issuer) = crate::asn1::serial_and_issuer(der.as_ref())?;
        crls.iter().find_map(|crl| {
            (crl.issuer() == issuer)
                .then(|| crl.find_serial(serial).ok().flatten())
                .flatten()
                .map(|_| hex_upper(serial))
        })
    })
}

/// Leading zero bytes (DER's sign padding) dropped, as openssl prints it.
fn hex_upper(bytes: &[u8]) -> String {
    let start = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    bytes[start..].iter().map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_openssl_hashed_crl_names_are_read_from_cadir() {
        assert!(is_hashed_crl_name(b"0123abcd.r0"));
        assert!(is_hashed_crl_name(b"0123ABCD.r9"));
        assert!(!is_hashed_crl_name(b"0123abcd.0"));
        assert!(!is_hashed_crl_name(b"0123abcd.r10"));
        assert!(!is_hashed_crl_name(b"0123abcg.r0"));
        assert!(!is_hashed_crl_name(b"crl.pem"));
    }

    #[test]
    fn serials_as_openssl_prints_them() {
        assert_eq!(hex_upper(&[0x00, 0x9f, 0x01]), "9F01");
        assert_eq!(hex_upper(&[0x10, 0x00]), "1000");
        assert_eq!(hex_upper(&[0x00]), "00");
    }

    #[test]
    fn garbage_and_empty_files_are_refused() {
        for (bytes, why) in [
            (&b""[..], "no CRL found"),
            (b"hello", "no CRL found"),
            (b"\x30\x03\x02\x01\x01", "not a CRL that can be decoded"),
            (
                b"-----BEGIN X509 CRL-----\nMIIB\n",
                "the PEM block X509 CRL has no end line",
            ),
        ] {
            let e = decode(bytes).err().unwrap_or_default();
            assert!(e.starts_with(why), "{e}");
        }
    }
}
