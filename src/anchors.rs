//! Trust anchors for client certificates (spec section 3): CADIR if set,
//! else CAFILE. Read after the privilege drop, as upstream does.

use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

use crate::env::Env;
use crate::error::Error;
use crate::keys::decode_chain;
use crate::source::Source;

pub fn read_trust_anchors(env: &Env) -> Result<RootCertStore, Error> {
    let (source, certs) = if let Some(dir) = env.get("CADIR") {
        let source = Source::directory("CADIR", dir);
        let certs = read_ca_dir(&source)?;
        (source, certs)
    } else if let Some(file) = env.get("CAFILE") {
        let source = Source::file("CAFILE", file);
        let certs = read_ca_file(&source)?;
        (source, certs)
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
            "no trust anchor found in {}{why}",
            source.named()
        )));
    }
    Ok(roots)
}

/// An OpenSSL hashed directory: only `XXXXXXXX.N` names are read (upstream
/// reads `.0` only); unreadable or unparsable files are skipped.
fn read_ca_dir(dir: &Source) -> Result<Vec<CertificateDer<'static>>, Error> {
    let mut certs = Vec::new();
    let entries = std::fs::read_dir(&dir.path).map_err(|e| dir.unreadable(&e))?;
    for entry in entries {
        let entry = entry.map_err(|e| dir.unreadable(&e))?;
        if !is_hashed_name(entry.file_name().as_encoded_bytes()) {
            continue;
        }
        // Bounded and never blocked on, as every file a variable names.
        if let Ok(bytes) = Source::file(&*dir.var, entry.path()).read() {
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
fn read_ca_file(file: &Source) -> Result<Vec<CertificateDer<'static>>, Error> {
    let bytes = file.read()?;
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    decode_chain(&bytes).map_err(|reason| file.invalid(reason))
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
