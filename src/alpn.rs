//! ALPN (RFC 7301): which application protocols the service speaks, and
//! whether a ClientHello's offer is acceptable.
//!
//! `TLS_ALPN` lists them in the server's order of preference (`h2,http/1.1`);
//! `TLS_ALPN:name` replaces that list for a server name that has its own key
//! pair (the same `name` as `KEYFILE:name`, wildcards included). Unset or
//! empty: no ALPN at all, the extension is ignored as before.
//!
//! A client whose offer has nothing in common with the list is refused
//! (RFC 7301 section 3.2): a service that only speaks `imap` must not be
//! talked into by a browser that asked for `http/1.1` (the ALPACA
//! cross-protocol attacks, RFC 9325 section 3.8). A client that offers no
//! ALPN at all is served, because most SMTP, IMAP and POP3 clients never
//! send it; `TLS_ALPN_STRICT=1` refuses those too, for services whose
//! clients all send it (HTTP/2, gRPC).

use std::collections::HashMap;
use std::ffi::OsStr;

use crate::env::Env;
use crate::error::Error;

pub const VAR: &str = "TLS_ALPN";
pub const STRICT_VAR: &str = "TLS_ALPN_STRICT";

/// At most this many offered names are quoted in a refusal: the list comes
/// from the client, and the message is one line.
const QUOTED: usize = 8;

/// Protocol names, most preferred first.
pub type Protocols = Vec<Vec<u8>>;

pub struct Alpn {
    default: Protocols,
    /// Keyed like the key store's named pairs: lowercase, `*.rest`.
    by_name: HashMap<String, Protocols>,
    strict: bool,
}

impl Alpn {
    pub fn from_env(env: &Env) -> Result<Alpn, Error> {
        let mut default = Vec::new();
        let mut by_name = HashMap::new();
        for (name, list) in lists(env) {
            match name {
                None => default = list?,
                Some(name) => {
                    by_name.insert(name.to_ascii_lowercase(), list?);
                }
            }
        }
        let strict = env
            .get(STRICT_VAR)
            .is_some_and(|v| !v.is_empty() && v != "0");
        Ok(Alpn {
            default,
            by_name,
            strict,
        })
    }

    /// The list for the named pair the key store chose (its key in the
    /// store, e.g. `*.example.org`), else `TLS_ALPN`'s.
    pub fn protocols(&self, pair_name: Option<&str>) -> &Protocols {
        pair_name
            .and_then(|name| self.by_name.get(name))
            .unwrap_or(&self.default)
    }

    /// Whether a client offering `offered` (None: no ALPN extension) may be
    /// served with `ours`; the reason for the refusal otherwise.
    pub fn check<'a>(
        &self,
        ours: &Protocols,
        offered: Option<impl Iterator<Item = &'a [u8]>>,
    ) -> Result<(), String> {
        if ours.is_empty() {
            return Ok(());
        }
        let Some(offered) = offered else {
            return match self.strict {
                true => Err(format!(
                    "the client offers no application protocol (ALPN), and {STRICT_VAR} is set"
                )),
                false => Ok(()),
            };
        };
        let offered: Vec<&[u8]> = offered.collect();
        if offered.iter().any(|p| ours.iter().any(|o| o == p)) {
            return Ok(());
        }
        Err(format!(
            "no application protocol in common: the client offers {}, the server speaks {}",
            quote(&offered),
            ours.iter()
                .map(|p| String::from_utf8_lossy(p))
                .collect::<Vec<_>>()
                .join(",")
        ))
    }
}

/// `TLS_ALPN` (None) and each `TLS_ALPN:name` (a bare `TLS_ALPN:` is
/// ignored), in the environment's order, each list parsed or why not. The
/// check mode (check.rs) goes through them all.
pub fn lists(env: &Env) -> impl Iterator<Item = (Option<String>, Result<Protocols, Error>)> + '_ {
    env.iter().filter_map(|(var, value)| {
        let var = var.to_string_lossy();
        let name = match var.strip_prefix("TLS_ALPN:") {
            None if var == VAR => None,
            Some(name) if !name.is_empty() => Some(name.to_string()),
            _ => return None,
        };
        Some((name, parse(&var, value)))
    })
}

/// `h2,http/1.1`: comma-separated, each name 1 to 255 bytes (RFC 7301).
/// An empty value means no ALPN, as if unset. A name with blanks around
/// it (`h2, http/1.1`) is refused: no client would ever offer it, and the
/// refusals it would cause could not show why.
fn parse(var: &str, value: &OsStr) -> Result<Protocols, Error> {
    let bytes = value.as_encoded_bytes();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut out: Protocols = Vec::new();
    for name in bytes.split(|&b| b == b',') {
        if name.is_empty() || name.len() > 255 {
            return Err(Error::BadUsage(format!(
                "invalid ${var}: protocol names are 1 to 255 bytes, separated by commas"
            )));
        }
        let blank = |b: Option<&u8>| b.is_some_and(u8::is_ascii_whitespace);
        if blank(name.first()) || blank(name.last()) {
            return Err(Error::BadUsage(format!(
                "invalid ${var}: the protocol name {} has blanks around it",
                quote(&[name])
            )));
        }
        if !out.iter().any(|p| p == name) {
            out.push(name.to_vec());
        }
    }
    Ok(out)
}

/// What the client offered, printable whatever it sent (log.rs's
/// escaping of a peer's bytes): `"h2", "x\x01"`.
fn quote(offered: &[&[u8]]) -> String {
    if offered.is_empty() {
        return "an empty list".into();
    }
    let mut out = String::new();
    for (i, name) in offered.iter().take(QUOTED).enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&format!("\"{}\"", crate::log::bytes(name)));
    }
    if offered.len() > QUOTED {
        out.push_str(&format!(" and {} more", offered.len() - QUOTED));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alpn(pairs: &[(&str, &str)]) -> Result<Alpn, String> {
        Alpn::from_env(&Env::from_pairs(pairs)).map_err(|e| e.to_string())
    }

    fn offer<'a>(names: &'a [&'a str]) -> Option<impl Iterator<Item = &'a [u8]>> {
        Some(names.iter().map(|n| n.as_bytes()))
    }

    const NONE: Option<std::iter::Empty<&[u8]>> = None;

    #[test]
    fn unset_or_empty_means_no_alpn() {
        for env in [&[][..], &[("TLS_ALPN", "")][..]] {
            let a = alpn(env).unwrap();
            assert!(a.protocols(None).is_empty());
            assert_eq!(a.check(a.protocols(None), offer(&["x"])), Ok(()));
        }
    }

    #[test]
    fn lists_keep_the_servers_order_without_duplicates() {
        let a = alpn(&[("TLS_ALPN", "h2,http/1.1,h2")]).unwrap();
        assert_eq!(
            a.protocols(None),
            &vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn bad_lists_are_usage_errors() {
        for bad in ["h2,", ",h2", "h2,,http/1.1", &"x".repeat(256)] {
            assert_eq!(
                alpn(&[("TLS_ALPN", bad)]).err().as_deref(),
                Some(
                    "s6-tlsd-io: fatal: invalid $TLS_ALPN: protocol names are 1 to 255 bytes, \
separated by commas"
                ),
                "{bad}"
            );
        }
        assert!(alpn(&[("TLS_ALPN:a.example", ",")])
            .err()
            .is_some_and(|e| e.contains("invalid $TLS_ALPN:a.example:")));
    }

    #[test]
    fn names_with_blanks_around_them_are_usage_errors() {
        let e = Alpn::from_env(&Env::from_pairs(&[("TLS_ALPN", "h2, http/1.1")]));
        let e = e.err().map(|e| (e.exit_code(), e.to_string()));
        assert_eq!(
            e,
            Some((
                100,
                "s6-tlsd-io: fatal: invalid $TLS_ALPN: the protocol name \" http/1.1\" \
has blanks around it"
                    .into()
            ))
        );
        for bad in ["h2 ", "\th2", "imap,pop3\n"] {
            let e = alpn(&[("TLS_ALPN:a.example", bad)])
                .err()
                .unwrap_or_default();
            assert!(
                e.contains("invalid $TLS_ALPN:a.example: the protocol name"),
                "{e}"
            );
        }
        assert!(alpn(&[("TLS_ALPN", "a b")]).is_ok());
    }

    #[test]
    fn a_named_pair_may_have_its_own_list() {
        let a = alpn(&[
            ("TLS_ALPN", "h2"),
            ("TLS_ALPN:Mail.Example", "imap"),
            ("TLS_ALPN:", "ignored"),
        ])
        .unwrap();
        assert_eq!(a.protocols(Some("mail.example")), &vec![b"imap".to_vec()]);
        assert_eq!(a.protocols(Some("www.example")), &vec![b"h2".to_vec()]);
        assert_eq!(a.protocols(None), &vec![b"h2".to_vec()]);
    }

    #[test]
    fn no_overlap_is_refused_with_what_the_client_offered() {
        let a = alpn(&[("TLS_ALPN", "imap")]).unwrap();
        let ours = a.protocols(None);
        assert_eq!(a.check(ours, offer(&["h2", "imap"])), Ok(()));
        assert_eq!(
            a.check(ours, offer(&["h2", "http/1.1"])),
            Err(
                "no application protocol in common: the client offers \"h2\", \"http/1.1\", \
the server speaks imap"
                    .into()
            )
        );
        let many: Vec<String> = (0..10).map(|i| format!("p{i}\n")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let why = a.check(ours, offer(&many)).unwrap_err();
        assert!(why.contains("\"p7\\n\" and 2 more,"), "{why}");
        assert!(!why.contains('\n'));
    }

    #[test]
    fn no_alpn_at_all_is_served_unless_strict() {
        let a = alpn(&[("TLS_ALPN", "h2")]).unwrap();
        assert_eq!(a.check(a.protocols(None), NONE), Ok(()));
        for on in ["1", "yes"] {
            let a = alpn(&[("TLS_ALPN", "h2"), ("TLS_ALPN_STRICT", on)]).unwrap();
            assert!(a.check(a.protocols(None), NONE).is_err());
        }
        let a = alpn(&[("TLS_ALPN", "h2"), ("TLS_ALPN_STRICT", "0")]).unwrap();
        assert_eq!(a.check(a.protocols(None), NONE), Ok(()));
        // strictness without a list changes nothing
        let a = alpn(&[("TLS_ALPN_STRICT", "1")]).unwrap();
        assert_eq!(a.check(a.protocols(None), NONE), Ok(()));
    }
}
