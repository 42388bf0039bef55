//! Key pairs from files (spec section 3): reading, decoding and loading
//! them into the crypto provider. Every failure names the variable, the
//! file and the reason, and exits 96.
//!
//! Two steps, so that a server with many SNI names stays cheap: `read`
//! (files read, PEM or DER decoded) is done for every pair at start-up;
//! `load` (key parsed by the provider and matched against the certificate)
//! costs 30-150 us a pair and is done only for the pair a client gets.

use std::ffi::OsStr;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::env::Env;
use crate::error::{io_reason, Error};

/// A chain and its key, decoded but not yet loaded.
pub struct KeyPair {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_source: Source,
    key_source: Source,
}

/// Which variable named which file, for messages.
struct Source {
    var: String,
    path: String,
}

impl Source {
    fn new(var: String, path: &OsStr) -> Source {
        Source {
            var,
            path: path.to_string_lossy().into_owned(),
        }
    }

    fn invalid(&self, reason: impl std::fmt::Display) -> Error {
        Error::Config(format!("invalid {} file {}: {reason}", self.var, self.path))
    }

    fn read(&self) -> Result<Vec<u8>, Error> {
        match std::fs::read(&self.path) {
            Ok(bytes) if bytes.is_empty() => Err(self.invalid("the file is empty")),
            Ok(bytes) => Ok(bytes),
            Err(e) => Err(Error::Config(format!(
                "unable to read {} file {}: {}",
                self.var,
                self.path,
                io_reason(&e)
            ))),
        }
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
        let cert_source = Source::new(cert_var, cert_path);
        let key_source = Source::new(key_var, key_path);
        let chain = decode_chain(&cert_source.read()?).map_err(|r| cert_source.invalid(r))?;
        let key = decode_key(&key_source.read()?).map_err(|r| key_source.invalid(r))?;
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

    /// Parses the key with the provider and checks it matches the leaf.
    pub fn load(self, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, Error> {
        let KeyPair {
            chain,
            key,
            cert_source,
            key_source,
        } = self;
        let signer = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| key_source.invalid(e))?;
        let pair = CertifiedKey::new(chain, signer);
        match pair.keys_match() {
            // Unknown: the provider cannot tell for this key type, and
            // rustls accepts it too.
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
                Ok(Arc::new(pair))
            }
            Err(rustls::Error::InconsistentKeys(_)) => Err(Error::Config(format!(
                "the private key in {} file {} does not match the certificate in {} file {}",
                key_source.var, key_source.path, cert_source.var, cert_source.path
            ))),
            Err(e) => Err(cert_source.invalid(e)),
        }
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
    let chain = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad PEM: {e}"))?;
    if chain.is_empty() {
        return Err("no CERTIFICATE block found".into());
    }
    Ok(chain)
}

/// PEM (`PRIVATE KEY`, `RSA PRIVATE KEY`, `EC PRIVATE KEY`) or raw DER.
fn decode_key(bytes: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    if !is_pem(bytes) {
        return PrivateKeyDer::try_from(bytes.to_vec())
            .map_err(|e| format!("neither PEM nor a DER private key: {e}"));
    }
    if bytes.windows(9).any(|w| w == b"ENCRYPTED") {
        return Err("encrypted private keys are not supported".into());
    }
    PrivateKeyDer::from_pem_slice(bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => "no PRIVATE KEY block found".into(),
        e => format!("bad PEM: {e}"),
    })
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
    fn garbage_is_refused_with_a_reason() {
        assert!(decode_chain(b"hello").is_err());
        assert!(decode_key(b"hello").is_err());
        let key_block = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(decode_chain(key_block)
            .unwrap_err()
            .contains("no CERTIFICATE"));
        let encrypted =
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert!(decode_key(encrypted).unwrap_err().contains("encrypted"));
    }
}
