//! Key pairs by server name (spec sections 3 and 4), the engine's side:
//! which certificate chain serves a given SNI. The key holder (src/holder/)
//! read the files the environment names (keys.rs) and handed the engine
//! their chains; the keys stay with it, known here by a pair's number.

use std::collections::HashMap;

use rustls::pki_types::CertificateDer;

/// A certificate chain, leaf first.
pub type Chain = Vec<CertificateDer<'static>>;

/// Every pair the engine may serve: the default one (KEYFILE/CERTFILE,
/// unless `-k 2` and up) and the named ones (`-k 1` and up), each with the
/// number the key holder knows its key by.
pub struct KeyStore {
    default: Option<(u32, Chain)>,
    /// Keyed by lowercase server name, `*.rest` for wildcards.
    by_name: HashMap<String, (u32, Chain)>,
}

/// The pair that serves a connection: its key's number and its chain.
pub struct Chosen {
    pub pair: u32,
    pub chain: Chain,
}

impl KeyStore {
    /// From the pairs in the holder's order (the pair's number is its
    /// place): the default one has no name. A name given twice (in two
    /// cases, say) is served the later pair, as the environment's last word.
    pub fn new(pairs: impl IntoIterator<Item = (Option<String>, Chain)>) -> KeyStore {
        let mut store = KeyStore {
            default: None,
            by_name: HashMap::new(),
        };
        for (n, (name, chain)) in (0u32..).zip(pairs) {
            match name {
                Some(name) => store.by_name.insert(name.to_ascii_lowercase(), (n, chain)),
                None => store.default.replace((n, chain)),
            };
        }
        store
    }

    /// The pair for `server_name`; None if there is none to serve.
    pub fn choose(mut self, server_name: Option<&str>) -> Option<Chosen> {
        let named = server_name
            .and_then(|name| self.matching_name(name))
            .and_then(|key| self.by_name.remove(&key));
        named
            .or(self.default)
            .map(|(pair, chain)| Chosen { pair, chain })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn store(names: &[&str]) -> KeyStore {
        let chain = |n: &str| vec![CertificateDer::from(n.as_bytes().to_vec())];
        KeyStore::new(names.iter().map(|n| (Some(n.to_string()), chain(n))))
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
        let chosen = store(&["x", "a.example.com"]).choose(Some("A.example.com"));
        assert_eq!(
            chosen.map(|c| (c.pair, c.chain)),
            Some((
                1,
                vec![CertificateDer::from(&b"a.example.com"[..]).into_owned()]
            ))
        );
    }

    #[test]
    fn the_default_pair_serves_the_rest_with_its_own_number() {
        let chain = vec![CertificateDer::from(b"default".to_vec())];
        let s = KeyStore::new([(None, chain), (Some("A.b.c".into()), Vec::new())]);
        assert_eq!(s.matching_name("a.B.c").as_deref(), Some("a.b.c"));
        assert_eq!(s.choose(Some("x.y.z")).map(|c| c.pair), Some(0));
    }
}
