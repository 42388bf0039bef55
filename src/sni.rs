//! Key pairs by server name (spec sections 3 and 4): which pairs the
//! environment names, and which one serves a given SNI.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::sign::CertifiedKey;

use crate::env::Env;
use crate::error::Error;
use crate::keys::KeyPair;
use crate::rsa::Faulty;

/// Every key pair the engine may serve. The default pair is loaded and
/// checked at start-up; named pairs are read and decoded at start-up and
/// loaded only when chosen (see keys.rs).
pub struct KeyStore {
    default: Option<Arc<CertifiedKey>>,
    /// Keyed by lowercase server name, `*.rest` for wildcards.
    by_name: HashMap<String, KeyPair>,
    /// Where an RSA key that fails to sign leaves its error (rsa.rs).
    faulty: Faulty,
}

impl KeyStore {
    /// Reads the pairs that `sni_level` selects.
    pub fn load(env: &Env, sni_level: u32) -> Result<KeyStore, Error> {
        let faulty = Faulty::default();
        let default = match sni_level {
            0 | 1 => Some(KeyPair::read_default(env)?.load(&faulty)?),
            _ => None,
        };
        let by_name = match sni_level {
            0 => HashMap::new(),
            _ => read_named_pairs(env)?,
        };
        if default.is_none() && by_name.is_empty() {
            return Err(Error::Config(
                "no suitable keypairs found in the environment".into(),
            ));
        }
        Ok(KeyStore {
            default,
            by_name,
            faulty,
        })
    }

    /// Where a key that fails to sign leaves its key file's error, for
    /// the handshake's error (rsa.rs).
    pub fn faulty(&self) -> Faulty {
        self.faulty.clone()
    }

    /// The pair for `server_name`, loaded; None if there is none to serve.
    pub fn choose(mut self, server_name: Option<&str>) -> Option<Result<Arc<CertifiedKey>, Error>> {
        let named = server_name
            .and_then(|name| self.matching_name(name))
            .and_then(|key| self.by_name.remove(&key));
        match named {
            Some(pair) => Some(pair.load(&self.faulty)),
            None => self.default.map(Ok),
        }
    }

    /// The exact name, then `*.` + the name without its first label when the
    /// name has at least three labels. Case-insensitive. The result is the
    /// pair's name as the environment spells it after `KEYFILE:`, lowercase:
    /// what other per-name settings (`TLS_ALPN:name`) are keyed by.
    pub fn matching_name(&self, name: &str) -> Option<String> {
        let name = name.to_ascii_lowercase();
        if self.by_name.contains_key(&name) {
            return Some(name);
        }
        let (_, parent) = name.split_once('.')?;
        if !parent.contains('.') {
            return None;
        }
        let wildcard = format!("*.{parent}");
        self.by_name.contains_key(&wildcard).then_some(wildcard)
    }
}

/// Every `KEYFILE:x` with its `CERTFILE:x`; a bare `KEYFILE:` is ignored.
fn read_named_pairs(env: &Env) -> Result<HashMap<String, KeyPair>, Error> {
    let mut pairs = HashMap::new();
    for (name, pair) in named_pairs(env) {
        pairs.insert(name.to_ascii_lowercase(), pair?);
    }
    Ok(pairs)
}

/// Each `KEYFILE:x` (a bare `KEYFILE:` is ignored), in the environment's
/// order: its `x` as spelled, and its pair read with `CERTFILE:x`, or why
/// not. The check mode (check.rs) goes through them all.
pub fn named_pairs(env: &Env) -> impl Iterator<Item = (String, Result<KeyPair, Error>)> + '_ {
    env.iter().filter_map(|(var, key_path)| {
        let var = var.to_string_lossy();
        let name = var.strip_prefix("KEYFILE:").filter(|n| !n.is_empty())?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn store(names: &[&str]) -> KeyStore {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("s6-tlsd-io-sni-unit-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = (dir.join("c.pem"), dir.join("k.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        let by_name = names
            .iter()
            .map(|n| {
                let pair = KeyPair::read("C".into(), c.as_os_str(), "K".into(), k.as_os_str());
                (n.to_string(), pair.unwrap())
            })
            .collect();
        KeyStore {
            default: None,
            by_name,
            faulty: Faulty::default(),
        }
    }

    #[test]
    fn exact_then_one_label_wildcard() {
        let s = store(&[
            "a.example.com",
            "*.example.com",
            "*.com",
            "*.wild.example.com",
        ]);
        let m = |n: &str| s.matching_name(n);
        assert_eq!(m("A.Example.COM").as_deref(), Some("a.example.com"));
        assert_eq!(m("foo.example.com").as_deref(), Some("*.example.com"));
        assert_eq!(m("foo.com"), None);
        assert_eq!(
            m("foo.wild.example.com").as_deref(),
            Some("*.wild.example.com")
        );
        assert_eq!(m("bar.foo.wild.example.com"), None);
        assert_eq!(m("wild.example.com").as_deref(), Some("*.example.com"));
    }

    #[test]
    fn without_default_unknown_names_are_refused() {
        assert!(store(&["a.example.com"])
            .choose(Some("b.example.com"))
            .is_none());
        assert!(store(&["a.example.com"]).choose(None).is_none());
        let chosen = store(&["a.example.com"]).choose(Some("A.example.com"));
        assert!(matches!(chosen, Some(Ok(_))));
    }
}
