//! Key pairs by server name (spec sections 3 and 4): which pairs the
//! environment names, and which one serves a given SNI.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;

use crate::config::{read_default_pair, read_key_files, Env, KeyFiles};
use crate::error::Error;

/// Every key pair the engine may serve, parsed and checked at start-up.
pub struct KeyStore {
    default: Option<Arc<CertifiedKey>>,
    /// Keyed by lowercase server name, `*.rest` for wildcards.
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

impl KeyStore {
    /// Reads and parses the pairs that `sni_level` selects.
    pub fn load(env: &Env, sni_level: u32, provider: &CryptoProvider) -> Result<KeyStore, Error> {
        let default = match sni_level {
            0 | 1 => Some(read_default_pair(env)?.parse(provider)?),
            _ => None,
        };
        let mut by_name = HashMap::new();
        if sni_level >= 1 {
            for (name, files) in read_named_pairs(env)? {
                by_name.insert(name, files.parse(provider)?);
            }
        }
        if default.is_none() && by_name.is_empty() {
            return Err(Error::Config(
                "no suitable keypairs found in the environment".into(),
            ));
        }
        Ok(KeyStore { default, by_name })
    }

    /// The exact name, then `*.` + the name without its first label when the
    /// name has at least three labels, then the default pair.
    pub fn choose(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let named = server_name.and_then(|name| {
            let name = name.to_ascii_lowercase();
            self.by_name.get(&name).or_else(|| {
                let (_, parent) = name.split_once('.')?;
                if !parent.contains('.') {
                    return None;
                }
                self.by_name.get(&format!("*.{parent}"))
            })
        });
        named.or(self.default.as_ref()).cloned()
    }
}

/// Every `KEYFILE:x` with its `CERTFILE:x`; a bare `KEYFILE:` is ignored.
fn read_named_pairs(env: &Env) -> Result<Vec<(String, KeyFiles)>, Error> {
    let mut pairs = Vec::new();
    for (var, key_path) in env.iter() {
        let var = var.to_string_lossy();
        let Some(name) = var.strip_prefix("KEYFILE:") else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        let cert_var = format!("CERTFILE:{name}");
        let cert_path = env.get(&cert_var).ok_or_else(|| {
            Error::Config(format!(
                "environment variable KEYFILE:{name} not paired with the corresponding CERTFILE"
            ))
        })?;
        let files = read_key_files(cert_var, cert_path, var.to_string(), key_path)?;
        pairs.push((name.to_ascii_lowercase(), files));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(names: &[&str], with_default: bool) -> KeyStore {
        // Distinct dummy pairs, told apart by pointer identity.
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let make = || {
            let der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
            Arc::new(CertifiedKey::new(
                vec![cert.der().clone()],
                provider.key_provider.load_private_key(der).unwrap(),
            ))
        };
        KeyStore {
            default: with_default.then(make),
            by_name: names.iter().map(|n| (n.to_string(), make())).collect(),
        }
    }

    fn pick<'a>(s: &'a KeyStore, name: Option<&str>) -> Option<&'a str> {
        let chosen = s.choose(name)?;
        if s.default.as_ref().is_some_and(|d| Arc::ptr_eq(d, &chosen)) {
            return Some("default");
        }
        s.by_name
            .iter()
            .find(|(_, v)| Arc::ptr_eq(v, &chosen))
            .map(|(k, _)| k.as_str())
    }

    #[test]
    fn exact_then_one_label_wildcard_then_default() {
        let s = store(
            &[
                "a.example.com",
                "*.example.com",
                "*.com",
                "*.wild.example.com",
            ],
            true,
        );
        assert_eq!(pick(&s, Some("A.Example.COM")), Some("a.example.com"));
        assert_eq!(pick(&s, Some("foo.example.com")), Some("*.example.com"));
        assert_eq!(pick(&s, Some("foo.com")), Some("default"));
        assert_eq!(
            pick(&s, Some("foo.wild.example.com")),
            Some("*.wild.example.com")
        );
        assert_eq!(pick(&s, Some("bar.foo.wild.example.com")), Some("default"));
        assert_eq!(pick(&s, Some("wild.example.com")), Some("*.example.com"));
        assert_eq!(pick(&s, None), Some("default"));
    }

    #[test]
    fn without_default_unknown_names_are_refused() {
        let s = store(&["a.example.com"], false);
        assert_eq!(pick(&s, Some("b.example.com")), None);
        assert_eq!(pick(&s, None), None);
    }
}
