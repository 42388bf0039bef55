//! Trust anchors for client certificates (spec section 3): CADIR if set,
//! else CAFILE. Read after the privilege drop, as upstream does.

use std::ffi::OsStr;

use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

use crate::env::Env;
use crate::error::{io_reason, Error};
use crate::keys::decode_chain;

pub fn read_trust_anchors(env: &Env) -> Result<RootCertStore, Error> {
    let (var, kind, source, certs) = if let Some(dir) = env.get("CADIR") {
        ("CADIR", "directory", dir, read_ca_dir(dir)?)
    } else if let Some(file) = env.get("CAFILE") {
        ("CAFILE", "file", file, read_ca_file(file)?)
    } else {
        return Err(Error::BadUsage("CADIR or CAFILE not set".into()));
    };
    let mut roots = RootCertStore::empty();
    let (_, unusable) = roots.add_parsable_certificates(certs);
    if roots.is_empty() {
        let why = match unusable {
            0 => String::new(),
            n => format!(": {n} of its certificates cannot be decoded (damaged or cut?)"),
        };
        return Err(Error::Config(format!(
            "no trust anchor found in {var} {kind} {}{why}",
            source.to_string_lossy()
        )));
    }
    Ok(roots)
}

fn unreadable(var: &str, kind: &str, source: &OsStr, reason: impl std::fmt::Display) -> Error {
    Error::Config(format!(
        "unable to read {var} {kind} {}: {reason}",
        source.to_string_lossy()
    ))
}

/// An OpenSSL hashed directory: only `XXXXXXXX.N` names are read (upstream
/// reads `.0` only); unreadable or unparsable files are skipped.
fn read_ca_dir(dir: &OsStr) -> Result<Vec<CertificateDer<'static>>, Error> {
    let mut certs = Vec::new();
    let entries =
        std::fs::read_dir(dir).map_err(|e| unreadable("CADIR", "directory", dir, io_reason(&e)))?;
    for entry in entries {
        let entry = entry.map_err(|e| unreadable("CADIR", "directory", dir, io_reason(&e)))?;
        if !is_hashed_name(entry.file_name().as_encoded_bytes()) {
            continue;
        }
        if let Ok(bytes) = std::fs::read(entry.path()) {
            certs.extend(decode_chain(&bytes).unwrap_or_default());
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

/// A PEM bundle (or one DER certificate); an empty file has no anchor.
fn read_ca_file(file: &OsStr) -> Result<Vec<CertificateDer<'static>>, Error> {
    let bytes =
        std::fs::read(file).map_err(|e| unreadable("CAFILE", "file", file, io_reason(&e)))?;
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    decode_chain(&bytes).map_err(|reason| {
        let var = "CAFILE";
        Error::Config(format!(
            "invalid {var} file {}: {reason}",
            file.to_string_lossy()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
