//! What the notification block says of a client certificate (spec section
//! 5): the SHA-256 of the leaf's DER, and its subject in BearSSL's format.

use crate::subject::{attributes, Value};

/// `SHA256:` and 64 lowercase hex digits.
pub fn cert_hash(der: &[u8]) -> String {
    use std::fmt::Write;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("SHA256:");
    for b in digest.as_ref() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The names BearSSL gives C, ST, L, O, OU, CN, in that order.
const KEYS: [&str; 6] = ["C", "ST", "L", "O", "OU", "CN"];

/// What stands for the whole subject when it cannot be walked, and for one
/// value that cannot be decoded. A real value never reads so: its `<` and
/// `>` are escaped.
pub const INVALID: &str = "<invalid>";

/// `C=FR, O=Example, CN=client`: those of C, ST, L, O, OU, CN present (the
/// first of each), in that order. None when the subject has none of them
/// (upstream then leaves the name bare); `<invalid>` when the subject
/// cannot be walked; `KEY=<invalid>` for a value that cannot be decoded
/// (BearSSL makes the whole subject `<invalid>` then: here the other
/// attributes are still reported).
pub fn subject(der: &[u8]) -> Option<String> {
    let Ok(found) = attributes(der) else {
        return Some(INVALID.into());
    };
    let parts: Vec<String> = KEYS
        .iter()
        .zip(found)
        .filter_map(|(key, value)| match value? {
            Value::Text(v) => Some(format!("{key}={}", escape(&v))),
            Value::Undecodable => Some(format!("{key}={INVALID}")),
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// Leading and trailing spaces dropped; `,` `=` `+` `<` `>` `#` `\` and
/// newline preceded by a backslash.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.trim_matches(' ').chars() {
        if matches!(c, ',' | '=' | '+' | '<' | '>' | '#' | '\\' | '\n') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_follows_bearssl() {
        assert_eq!(escape("  a b  "), "a b");
        assert_eq!(
            escape("a,b=c+d<e>f#g\\h\ni"),
            "a\\,b\\=c\\+d\\<e\\>f\\#g\\\\h\\\ni"
        );
        assert_eq!(escape("   "), "");
        assert_eq!(escape("\ttab "), "\ttab");
    }

    #[test]
    fn an_undecodable_value_is_marked_and_the_others_kept() {
        // O=Org (PrintableString), CN as a GraphicString.
        let rdn = |oid: u8, tag: u8, v: &[u8]| {
            let atv = [&[6, 3, 0x55, 4, oid, tag, v.len() as u8][..], v].concat();
            [
                &[0x31, atv.len() as u8 + 2, 0x30, atv.len() as u8][..],
                &atv,
            ]
            .concat()
        };
        let subject = [rdn(10, 0x13, b"Org"), rdn(3, 0x19, b"g")].concat();
        let tbs = [
            &[
                2,
                1,
                1,
                0x30,
                0,
                0x30,
                0,
                0x30,
                0,
                0x30,
                subject.len() as u8,
            ][..],
            &subject,
        ]
        .concat();
        let der = [
            &[0x30, tbs.len() as u8 + 2, 0x30, tbs.len() as u8][..],
            &tbs,
        ]
        .concat();
        assert_eq!(subject_line(&der), "O=Org, CN=<invalid>");
    }

    fn subject_line(der: &[u8]) -> String {
        subject(der).unwrap_or_default()
    }

    #[test]
    fn garbage_is_invalid() {
        assert_eq!(subject(b"nope").as_deref(), Some("<invalid>"));
    }

    #[test]
    fn hash_is_lowercase_hex_sha256() {
        assert_eq!(
            cert_hash(b""),
            "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
