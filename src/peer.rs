//! What the notification block says of a client certificate (spec section
//! 5): the SHA-256 of the leaf's DER, and its subject in BearSSL's format.

use x509_cert::der::asn1::{
    BmpString, Ia5StringRef, PrintableStringRef, TeletexStringRef, Utf8StringRef,
};
use x509_cert::der::{Decode, Tag, Tagged};
use x509_cert::Certificate;

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

/// The attributes BearSSL reports, in the order it reports them.
const ATTRIBUTES: [(&str, &str); 6] = [
    ("C", "2.5.4.6"),
    ("ST", "2.5.4.8"),
    ("L", "2.5.4.7"),
    ("O", "2.5.4.10"),
    ("OU", "2.5.4.11"),
    ("CN", "2.5.4.3"),
];

/// `C=FR, O=Example, CN=client`: those of C, ST, L, O, OU, CN present (the
/// first of each), in that order. None when the subject has none of them
/// (upstream then leaves the name bare); `<invalid>` when the certificate
/// or one of those values cannot be decoded.
pub fn subject(der: &[u8]) -> Option<String> {
    let Ok(cert) = Certificate::from_der(der) else {
        return Some("<invalid>".into());
    };
    let name = cert.tbs_certificate().subject();
    let mut parts = Vec::new();
    for (key, oid) in ATTRIBUTES {
        let Some(atv) = name.iter().find(|atv| atv.oid.to_string() == oid) else {
            continue;
        };
        match decode_string(&atv.value) {
            Some(value) => parts.push(format!("{key}={}", escape(&value))),
            None => return Some("<invalid>".into()),
        }
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The directory string types BearSSL decodes, as UTF-8; NUL is refused.
fn decode_string(value: &x509_cert::der::Any) -> Option<String> {
    let s = match value.tag() {
        Tag::Utf8String => value.decode_as::<Utf8StringRef>().ok()?.as_str().to_owned(),
        Tag::PrintableString => value
            .decode_as::<PrintableStringRef>()
            .ok()?
            .as_str()
            .to_owned(),
        Tag::Ia5String => value.decode_as::<Ia5StringRef>().ok()?.as_str().to_owned(),
        // Teletex is read as Latin-1, each byte one code point.
        Tag::TeletexString => value
            .decode_as::<TeletexStringRef>()
            .ok()?
            .as_bytes()
            .iter()
            .map(|&b| char::from(b))
            .collect(),
        Tag::BmpString => value.decode_as::<BmpString>().ok()?.to_string(),
        _ => return None,
    };
    (!s.contains('\0')).then_some(s)
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
