//! Key pairs from files (spec section 3): reading, decoding and loading
//! them into the crypto provider. Every failure names the variable, the
//! file and the reason, and exits 96. The key holder's (src/holder/), and
//! `-t`'s: the engine never reads a key file (it gets the chains from the
//! holder, sni.rs).
//!
//! Two steps, so that a server with many SNI names stays cheap: `read`
//! (files read, PEM or DER decoded) is done for every pair at start-up;
//! `load` (key parsed by the provider and matched against the certificate)
//! costs 30-150 us a pair and is done only for the pair a client gets.
//!
//! Key hygiene: the bytes of a key file and the key's decoded DER live in a
//! `Secret`, overwritten when dropped, loaded or not; the provider gets a
//! borrowed view and keeps its own copy (which aws-lc wipes on free).
//! Beyond our reach: rustls-pki-types' PEM decoder keeps a transient copy
//! of the base64 text while it decodes; the processes that read keys wipe
//! every block they free (src/alloc.rs, `wipe_on_free`), which takes it.

use std::ffi::OsStr;
use std::sync::Arc;

use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};

use rustls::crypto::aws_lc_rs::sign;
use rustls::sign::{CertifiedKey, SigningKey};
use rustls::SignatureScheme;

use crate::env::Env;
use crate::error::{pem_reason, Error};
use crate::rsa::{Refused, RsaKey, FAULTY};
use crate::secret::Secret;
use crate::source::Source;

/// A chain and its key, decoded but not yet loaded.
pub struct KeyPair {
    chain: Vec<CertificateDer<'static>>,
    key: Key,
    cert_source: Source,
    key_source: Source,
}

/// A private key's DER, and which encoding it is.
struct Key {
    der: Secret,
    encoding: Encoding,
}

#[derive(Clone, Copy)]
enum Encoding {
    Pkcs8,
    Pkcs1,
    Sec1,
}

impl Key {
    fn view(&self) -> PrivateKeyDer<'_> {
        let der = &self.der.0[..];
        match self.encoding {
            Encoding::Pkcs8 => PrivatePkcs8KeyDer::from(der).into(),
            Encoding::Pkcs1 => PrivatePkcs1KeyDer::from(der).into(),
            Encoding::Sec1 => PrivateSec1KeyDer::from(der).into(),
        }
    }
}

/// The whole file, which must not be empty.
fn read_nonempty(source: &Source) -> Result<Vec<u8>, Error> {
    match source.read()? {
        bytes if bytes.is_empty() => Err(source.invalid("the file is empty")),
        bytes => Ok(bytes),
    }
}

impl KeyPair {
    /// Reads and decodes the files named by `cert_var` and `key_var`.
    pub fn read(
        cert_var: String,
        cert_path: &OsStr,
        key_var: String,
        key_path: &OsStr,
    ) -> Result<KeyPair, Error> {
        let cert_source = Source::file(cert_var, cert_path);
        let key_source = Source::file(key_var, key_path);
        let chain =
            decode_chain(&read_nonempty(&cert_source)?).map_err(|r| cert_source.invalid(r))?;
        let key =
            decode_key(Secret(read_nonempty(&key_source)?)).map_err(|r| key_source.invalid(r))?;
        Ok(KeyPair {
            chain,
            key,
            cert_source,
            key_source,
        })
    }

    /// The default pair from CERTFILE and KEYFILE (CERTFILE is checked first).
    pub fn read_default(env: &Env) -> Result<KeyPair, Error> {
        let cert = env
            .get("CERTFILE")
            .ok_or_else(|| Error::BadUsage("CERTFILE not set".into()))?;
        let key = env
            .get("KEYFILE")
            .ok_or_else(|| Error::BadUsage("KEYFILE not set".into()))?;
        KeyPair::read("CERTFILE".into(), cert, "KEYFILE".into(), key)
    }

    /// The certificate chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// Parses the key and checks it matches the leaf. A two-prime RSA key
    /// is built by rsa.rs (7% to a fifth of an RSA connection's CPU
    /// saved), which checks the rest of it as it signs: should a signature
    /// fail, `Loaded::sign` answers with the key file's error. Any other
    /// key is built by the provider.
    pub fn load(self) -> Result<Loaded, Error> {
        let built = rsa_pkcs1(&self.key).map(RsaKey::from_pkcs1);
        let by_provider = |signer: Result<Arc<dyn SigningKey>, rustls::Error>| {
            signer.map_err(|_| self.key_source.invalid(UNSUPPORTED_KEY))
        };
        let (signer, unsigned): (Arc<dyn SigningKey>, _) = match built {
            Some(Ok(key)) => (Arc::new(key), FAULTY),
            Some(Err(Refused::Invalid(reason))) => return Err(self.key_source.invalid(reason)),
            Some(Err(Refused::NotMine)) => (
                by_provider(sign::any_supported_type(&self.key.view()))?,
                SIGNATURE_FAILED,
            ),
            None => (by_provider(not_rsa(&self.key.view()))?, SIGNATURE_FAILED),
        };
        let unsigned = self.key_source.invalid(unsigned);
        let KeyPair {
            chain,
            cert_source,
            key_source,
            ..
        } = self;
        let pair = CertifiedKey::new(chain, signer);
        match keys_match(&pair) {
            // Unknown: the provider cannot tell for this key type, and
            // rustls accepts it too.
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
                Ok(Loaded {
                    pair: Arc::new(pair),
                    unsigned,
                })
            }
            Err(rustls::Error::InconsistentKeys(_)) => Err(Error::Config(format!(
                "the private key in {} does not match the certificate in {}",
                key_source.named(),
                cert_source.named()
            ))),
            // The leaf's key cannot be read from it: rustls calls that an
            // "invalid peer certificate", which this is not.
            Err(_) => Err(cert_source.invalid(
                "the first certificate cannot be decoded (a damaged or incomplete file?)",
            )),
        }
    }
}

/// A pair whose key is parsed and matches its certificate: ready to sign.
pub struct Loaded {
    pub pair: Arc<CertifiedKey>,
    /// The key file's error, should a signature fail.
    unsigned: Error,
}

impl Loaded {
    /// Whether the key signs with `scheme`.
    pub fn signs_with(&self, scheme: SignatureScheme) -> bool {
        self.pair.key.choose_scheme(&[scheme]).is_some()
    }

    /// `message` signed with `scheme`; the key file's error if the key
    /// cannot make that signature (an RSA key whose CRT numbers are wrong:
    /// rsa.rs).
    pub fn sign(&self, scheme: SignatureScheme, message: &[u8]) -> Result<Vec<u8>, Error> {
        self.pair
            .key
            .choose_scheme(&[scheme])
            .and_then(|signer| signer.sign(message).ok())
            .ok_or_else(|| self.unsigned.clone())
    }
}

/// Every `KEYFILE:x` with its `CERTFILE:x` (a bare `KEYFILE:` is ignored),
/// in the environment's order: its `x` as spelled, and its pair read, or
/// why not. The check mode (check.rs) goes through them all.
pub fn named_pairs(env: &Env) -> impl Iterator<Item = (String, Result<KeyPair, Error>)> + '_ {
    env.iter().filter_map(|(var, key_path)| {
        let var = var.to_string_lossy();
        let name = pair_name(&var)?;
        let cert_var = format!("CERTFILE:{name}");
        let pair = match env.get(&cert_var) {
            Some(cert_path) => KeyPair::read(cert_var, cert_path, var.to_string(), key_path),
            None => Err(Error::Config(format!(
                "environment variable KEYFILE:{name} not paired with the corresponding CERTFILE"
            ))),
        };
        Some((name.to_string(), pair))
    })
}

/// The `x` of a variable `KEYFILE:x` (not of a bare `KEYFILE:`): the
/// variables that name a pair under `-k`.
pub fn pair_name(var: &str) -> Option<&str> {
    var.strip_prefix("KEYFILE:").filter(|n| !n.is_empty())
}

/// A provider's key that would not sign: the key file's error.
const SIGNATURE_FAILED: &str = "a signature made with the key failed";

/// Why the provider refused a key: it says only that it could not parse it.
const UNSUPPORTED_KEY: &str = "the private key cannot be decoded (a damaged or incomplete file?), \
or is of an unsupported type (RSA of 2048 to 8192 bits, ECDSA P-256, P-384 or P-521, Ed25519)";

/// rsaEncryption, 1.2.840.113549.1.1.1.
const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// An RSA key's PKCS#1 `RSAPrivateKey`, as such or inside PKCS#8's
/// PrivateKeyInfo; None for any other key, or one that does not decode.
fn rsa_pkcs1(key: &Key) -> Option<&[u8]> {
    use crate::asn1::{elements, INTEGER, OCTET_STRING, OID, SEQUENCE};
    match key.encoding {
        Encoding::Pkcs1 => Some(&key.der.0[..]),
        Encoding::Pkcs8 => {
            let [(SEQUENCE, info)] = elements(&key.der.0)?[..] else {
                return None;
            };
            let [(INTEGER, _), (SEQUENCE, algorithm), (OCTET_STRING, pkcs1), ..] =
                elements(info)?[..]
            else {
                return None;
            };
            match elements(algorithm)?.first() {
                Some(&(OID, oid)) if oid == RSA_ENCRYPTION => Some(pkcs1),
                _ => None,
            }
        }
        Encoding::Sec1 => None,
    }
}

/// The provider's signing key for a key that is not RSA. rustls'
/// `any_supported_type` tries RSA first, and aws-lc parses a whole PKCS#8
/// key, checking its public point (a scalar multiplication), before it
/// says the key is not RSA: for an EC key that was a second parse, a
/// fifth of the key holder's instructions (callgrind). So ECDSA first,
/// then rustls' own order for the rest (Ed25519) and for the error.
fn not_rsa(der: &PrivateKeyDer) -> Result<Arc<dyn SigningKey>, rustls::Error> {
    sign::any_ecdsa_type(der).or_else(|_| sign::any_supported_type(der))
}

/// rustls' `CertifiedKey::keys_match`, its answers and all, but for how
/// it reads the leaf: webpki refuses a version 1 certificate (of `openssl
/// x509 -req` without extensions), and a critical extension it does not
/// know, which upstream serves. Only the leaf's SubjectPublicKeyInfo is
/// read here (asn1.rs); the client judges the rest.
fn keys_match(pair: &CertifiedKey) -> Result<(), rustls::Error> {
    let leaf = pair
        .cert
        .first()
        .and_then(|c| crate::asn1::subject_public_key_info(c))
        .ok_or(rustls::Error::InvalidCertificate(
            rustls::CertificateError::BadEncoding,
        ))?;
    let key = pair
        .key
        .public_key()
        .ok_or(rustls::InconsistentKeys::Unknown)?;
    match crate::asn1::elements(&key).as_deref() {
        Some([(crate::asn1::SEQUENCE, ours)]) if *ours == leaf => Ok(()),
        _ => Err(rustls::InconsistentKeys::KeyMismatch.into()),
    }
}

fn is_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

/// A PEM file with one or more certificates, leaf first, or one DER
/// certificate. Also used for trust anchors.
pub fn decode_chain(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    if !is_pem(bytes) {
        return match bytes.first() {
            // A DER certificate is a SEQUENCE; the leaf is checked in full
            // when it is matched against the key.
            Some(0x30) => Ok(vec![CertificateDer::from(bytes.to_vec())]),
            _ => Err("neither PEM nor DER: no certificate found".into()),
        };
    }
    let chain = CertificateDer::pem_slice_iter(&legacy_labels_renamed(bytes))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_reason(&e))?;
    if chain.is_empty() {
        return Err("no CERTIFICATE block found".into());
    }
    Ok(chain)
}

/// `X509 CERTIFICATE` blocks renamed `CERTIFICATE`: upstream reads both
/// labels (the first is RFC 7468's legacy one); pki-types skips a block it
/// does not know, which would drop a link of a chain without a word.
fn legacy_labels_renamed(pem: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pem.len());
    let mut rest = pem;
    // No space in base64: " X509 " is in a BEGIN or END line, or in text.
    while let Some(at) = rest.windows(6).position(|w| w == b" X509 ") {
        let (before, after) = rest.split_at(at);
        let label = (before.ends_with(b"-----BEGIN") || before.ends_with(b"-----END"))
            && after.starts_with(b" X509 CERTIFICATE-----");
        out.extend_from_slice(before);
        out.extend_from_slice(if label { b" " } else { b" X509 " });
        rest = &after[6..];
    }
    out.extend_from_slice(rest);
    out
}

/// PEM (`PRIVATE KEY`, `RSA PRIVATE KEY`, `EC PRIVATE KEY`) or raw DER.
fn decode_key(file: Secret) -> Result<Key, String> {
    if !is_pem(&file.0) {
        let encoding = match PrivateKeyDer::try_from(&file.0[..]) {
            Ok(PrivateKeyDer::Pkcs8(_)) => Encoding::Pkcs8,
            Ok(PrivateKeyDer::Pkcs1(_)) => Encoding::Pkcs1,
            Ok(PrivateKeyDer::Sec1(_)) => Encoding::Sec1,
            Ok(_) => return Err("unknown DER private key encoding".into()),
            Err(_) => return Err("neither PEM nor a DER private key".into()),
        };
        return Ok(Key {
            der: file,
            encoding,
        });
    }
    if file.0.windows(9).any(|w| w == b"ENCRYPTED") {
        return Err("encrypted private keys are not supported".into());
    }
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(&file.0) {
        let (kind, der) = section.map_err(|e| pem_reason(&e))?;
        let der = Secret(der);
        let encoding = match kind {
            SectionKind::PrivateKey => Encoding::Pkcs8,
            SectionKind::RsaPrivateKey => Encoding::Pkcs1,
            SectionKind::EcPrivateKey => Encoding::Sec1,
            _ => continue,
        };
        return Ok(Key { der, encoding });
    }
    Err("no PRIVATE KEY block found".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_variables_are_usage_errors_certfile_first() {
        let e = KeyPair::read_default(&Env::from_pairs(&[]))
            .err()
            .map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("s6-tlsd-io: fatal: CERTFILE not set"));
        let e = KeyPair::read_default(&Env::from_pairs(&[("CERTFILE", "/x")]))
            .err()
            .map(|e| (e.exit_code(), e.to_string()));
        assert_eq!(e, Some((100, "s6-tlsd-io: fatal: KEYFILE not set".into())));
    }

    #[test]
    fn legacy_certificate_labels_are_read() {
        let block = |label: &str| format!("-----BEGIN {label}-----\nMAA=\n-----END {label}-----\n");
        let file = [
            block("CERTIFICATE"),
            "text about X509 CERTIFICATE-----\n".into(),
            block("X509 CERTIFICATE"),
            block("X509 CRL"),
        ]
        .concat();
        assert_eq!(
            String::from_utf8(legacy_labels_renamed(file.as_bytes())).unwrap(),
            [
                block("CERTIFICATE"),
                "text about X509 CERTIFICATE-----\n".into(),
                block("CERTIFICATE"),
                block("X509 CRL"),
            ]
            .concat()
        );
        assert_eq!(decode_chain(file.as_bytes()).unwrap().len(), 2);
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        assert!(decode_chain(b"hello").is_err());
        assert!(decode_key(Secret(b"hello".to_vec())).is_err());
        let key_block = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(decode_chain(key_block)
            .unwrap_err()
            .contains("no CERTIFICATE"));
        let encrypted =
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let encrypted = decode_key(Secret(encrypted.to_vec()));
        assert!(encrypted.err().unwrap().contains("encrypted"));
    }
}
