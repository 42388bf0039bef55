//! The environment to key material (spec section 3): which variables name
//! which files, reading them, and turning them into rustls key pairs.
//! Every failure names the variable, the file and the reason, and exits 96.

use std::ffi::{OsStr, OsString};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::error::{io_reason, Error};

/// A snapshot of the environment, so that lookups are cheap and testable.
pub struct Env(Vec<(OsString, OsString)>);

impl Env {
    pub fn from_process() -> Env {
        Env(std::env::vars_os().collect())
    }

    #[cfg(test)]
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Env {
        Env(pairs.iter().map(|(k, v)| (k.into(), v.into())).collect())
    }

    pub fn get(&self, name: &str) -> Option<&OsStr> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_os_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&OsStr, &OsStr)> {
        self.0.iter().map(|(k, v)| (k.as_os_str(), v.as_os_str()))
    }
}

/// The two files of one key pair, read into memory but not parsed yet.
pub struct KeyFiles {
    pub cert_var: String,
    pub cert_path: OsString,
    pub cert: Vec<u8>,
    pub key_var: String,
    pub key_path: OsString,
    pub key: Vec<u8>,
}

/// Reads both files of a pair named by the variables `cert_var`/`key_var`.
pub fn read_key_files(
    cert_var: String,
    cert_path: &OsStr,
    key_var: String,
    key_path: &OsStr,
) -> Result<KeyFiles, Error> {
    let cert = read_file(&cert_var, cert_path)?;
    let key = read_file(&key_var, key_path)?;
    Ok(KeyFiles {
        cert_var,
        cert_path: cert_path.to_owned(),
        cert,
        key_var,
        key_path: key_path.to_owned(),
        key,
    })
}

fn read_file(var: &str, path: &OsStr) -> Result<Vec<u8>, Error> {
    match std::fs::read(path) {
        Ok(bytes) if bytes.is_empty() => Err(bad_file(var, path, "the file is empty")),
        Ok(bytes) => Ok(bytes),
        Err(e) => Err(Error::Config(format!(
            "unable to read {var} file {}: {}",
            path.to_string_lossy(),
            io_reason(&e)
        ))),
    }
}

fn bad_file(var: &str, path: &OsStr, reason: impl std::fmt::Display) -> Error {
    Error::Config(format!(
        "invalid {var} file {}: {reason}",
        path.to_string_lossy()
    ))
}

impl KeyFiles {
    /// Parses the chain and the key, and checks that they belong together.
    pub fn parse(&self, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, Error> {
        let chain = parse_chain(&self.cert)
            .map_err(|reason| bad_file(&self.cert_var, &self.cert_path, reason))?;
        let key = parse_key(&self.key)
            .map_err(|reason| bad_file(&self.key_var, &self.key_path, reason))?;
        let signer = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| bad_file(&self.key_var, &self.key_path, e))?;
        let pair = CertifiedKey::new(chain, signer);
        match pair.keys_match() {
            Ok(()) => Ok(Arc::new(pair)),
            // The provider cannot tell for this key type: rustls accepts it too.
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
                Ok(Arc::new(pair))
            }
            Err(rustls::Error::InconsistentKeys(_)) => Err(Error::Config(format!(
                "the private key in {} file {} does not match the certificate in {} file {}",
                self.key_var,
                self.key_path.to_string_lossy(),
                self.cert_var,
                self.cert_path.to_string_lossy()
            ))),
            Err(e) => Err(bad_file(&self.cert_var, &self.cert_path, e)),
        }
    }
}

fn is_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

/// A PEM file with one or more certificates, leaf first, or one DER certificate.
fn parse_chain(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
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
fn parse_key(bytes: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
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

/// The default pair from CERTFILE and KEYFILE (CERTFILE is checked first).
pub fn read_default_pair(env: &Env) -> Result<KeyFiles, Error> {
    let cert = env
        .get("CERTFILE")
        .ok_or_else(|| Error::BadUsage("CERTFILE not set".into()))?;
    let key = env
        .get("KEYFILE")
        .ok_or_else(|| Error::BadUsage("KEYFILE not set".into()))?;
    read_key_files("CERTFILE".into(), cert, "KEYFILE".into(), key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_variables_are_usage_errors_certfile_first() {
        let e = read_default_pair(&Env::from_pairs(&[]))
            .err()
            .map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("s6-tlsd-io: fatal: CERTFILE not set"));
        let e = read_default_pair(&Env::from_pairs(&[("CERTFILE", "/x")]))
            .err()
            .map(|e| (e.exit_code(), e.to_string()));
        assert_eq!(e, Some((100, "s6-tlsd-io: fatal: KEYFILE not set".into())));
    }

    #[test]
    fn only_openssl_hashed_names_are_read_from_cadir() {
        assert!(is_hashed_name(b"0123abcd.0"));
        assert!(is_hashed_name(b"0123ABCD.9"));
        assert!(!is_hashed_name(b"0123abcd.10"));
        assert!(!is_hashed_name(b"0123abcg.0"));
        assert!(!is_hashed_name(b"ca.pem"));
        assert!(!is_hashed_name(b"0123abcd.pem"));
    }

    #[test]
    fn no_trust_anchor_variables_is_a_usage_error() {
        let e = read_trust_anchors(&Env::from_pairs(&[]))
            .err()
            .map(|e| (e.exit_code(), e.to_string()));
        assert_eq!(
            e,
            Some((100, "s6-tlsd-io: fatal: CADIR or CAFILE not set".into()))
        );
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        assert!(parse_chain(b"hello").is_err());
        assert!(parse_key(b"hello").is_err());
        assert!(
            parse_chain(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .unwrap_err()
                .contains("no CERTIFICATE")
        );
        assert!(parse_key(
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
        )
        .unwrap_err()
        .contains("encrypted"));
    }
}

/// Trust anchors for client certificates (spec section 3): CADIR if set,
/// else CAFILE. Read after the privilege drop, as upstream does.
pub fn read_trust_anchors(env: &Env) -> Result<rustls::RootCertStore, Error> {
    let (source, certs) = if let Some(dir) = env.get("CADIR") {
        (dir, read_ca_dir(dir)?)
    } else if let Some(file) = env.get("CAFILE") {
        (file, read_ca_file(file)?)
    } else {
        return Err(Error::BadUsage("CADIR or CAFILE not set".into()));
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(certs);
    if roots.is_empty() {
        return Err(Error::Config(format!(
            "no trust anchor found in {}",
            source.to_string_lossy()
        )));
    }
    Ok(roots)
}

/// An OpenSSL hashed directory: only `XXXXXXXX.N` names are read (upstream
/// reads `.0` only); unreadable or unparsable files are skipped.
fn read_ca_dir(dir: &OsStr) -> Result<Vec<CertificateDer<'static>>, Error> {
    let unreadable = |e: std::io::Error| {
        Error::Config(format!(
            "unable to read trust anchors in {}: {}",
            dir.to_string_lossy(),
            io_reason(&e)
        ))
    };
    let mut certs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        if !is_hashed_name(entry.file_name().as_encoded_bytes()) {
            continue;
        }
        if let Ok(bytes) = std::fs::read(entry.path()) {
            certs.extend(parse_chain(&bytes).unwrap_or_default());
        }
    }
    Ok(certs)
}

fn is_hashed_name(name: &[u8]) -> bool {
    name.len() == 10
        && name[..8].iter().all(u8::is_ascii_hexdigit)
        && name[8] == b'.'
        && name[9].is_ascii_digit()
}

fn read_ca_file(file: &OsStr) -> Result<Vec<CertificateDer<'static>>, Error> {
    let fail = |reason: String| {
        Error::Config(format!(
            "unable to read trust anchors in {}: {reason}",
            file.to_string_lossy()
        ))
    };
    let bytes = std::fs::read(file).map_err(|e| fail(io_reason(&e)))?;
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    parse_chain(&bytes).map_err(fail)
}
