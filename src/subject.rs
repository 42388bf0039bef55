//! The six subject attributes of a certificate that the notification block
//! reports (spec section 5), read the way BearSSL reads them: a lenient walk
//! over the DER, Certificate -> TBSCertificate -> subject Name -> RDNs ->
//! AttributeTypeAndValue, that looks only at the attributes it was asked
//! for. An attribute of any other type, in whatever string type (or no
//! string type at all), is stepped over unread; a strict decoder of the
//! whole certificate (x509-cert) refuses it for a UniversalString in the
//! issuer or in a serialNumber.
//!
//! Only the shape of the subject must be right: each RDN a non-empty SET,
//! each attribute a SEQUENCE of an OID and exactly one value. Everything
//! before the subject is skipped by its length, after a look at its tag.
//! rustls has already parsed and verified the certificate by the time it
//! gets here; the walk must still never panic on anything (fuzz/).

use der::Reader;

use crate::asn1::{self, expect, tlv, Malformed, Tag, INTEGER, OID, SEQUENCE, SET};

/// The OIDs of C, ST, L, O, OU, CN (2.5.4.x), in the order they are
/// reported: the last content byte of `06 03 55 04 xx`.
const ATTRIBUTES: [u8; 6] = [6, 8, 7, 10, 11, 3];

/// What a reported attribute holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// The value as UTF-8, untrimmed and unescaped.
    Text(String),
    /// A string type BearSSL does not decode either, a bad encoding, a NUL,
    /// or a code point BearSSL refuses (a surrogate, a noncharacter).
    Undecodable,
}

/// The subject cannot be walked: the certificate, or the subject's
/// structure, is not DER of the right shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unwalkable;

/// C, ST, L, O, OU, CN in that order: the first occurrence of each (a later
/// one is ignored even when the first cannot be decoded, as in BearSSL), or
/// None when the subject has none.
pub fn attributes(cert: &[u8]) -> Result<[Option<Value>; 6], Unwalkable> {
    walk(cert).map_err(|Malformed| Unwalkable)
}

fn walk(cert: &[u8]) -> Result<[Option<Value>; 6], Malformed> {
    let mut r = asn1::tbs_fields(cert)?;
    expect(&mut r, INTEGER)?; // serialNumber
    expect(&mut r, SEQUENCE)?; // signature
    expect(&mut r, SEQUENCE)?; // issuer
    expect(&mut r, SEQUENCE)?; // validity
    let subject = expect(&mut r, SEQUENCE)?;
    // What follows (the key, the extensions) is none of our business.

    let mut found: [Option<Value>; 6] = Default::default();
    let mut rdns = asn1::reader(subject)?;
    while !rdns.is_finished() {
        let set = expect(&mut rdns, SET)?;
        if set.is_empty() {
            return Err(Malformed);
        }
        let mut atvs = asn1::reader(set)?;
        while !atvs.is_finished() {
            let atv = expect(&mut atvs, SEQUENCE)?;
            let mut a = asn1::reader(atv)?;
            let oid = expect(&mut a, OID)?;
            let (tag, value) = tlv(&mut a)?;
            if !a.is_finished() {
                return Err(Malformed);
            }
            let slot = match oid {
                [0x55, 0x04, last] => ATTRIBUTES.iter().position(|a| a == last),
                _ => None,
            };
            if let Some(i) = slot {
                found[i].get_or_insert_with(|| decode(tag, value));
            }
        }
    }
    Ok(found)
}

/// The string types BearSSL decodes, as it decodes them: UTF8String as
/// UTF-8; NumericString, PrintableString, TeletexString and IA5String byte
/// by byte as Latin-1, their character sets unchecked; BMPString as UTF-16,
/// big-endian unless it starts with a little-endian byte order mark.
/// Beyond BearSSL: UniversalString, the one other DirectoryString type of
/// RFC 5280, as UTF-32 big-endian.
fn decode(tag: Tag, bytes: &[u8]) -> Value {
    let chars: Option<Vec<char>> = match tag {
        Tag::Short(0x0c) => std::str::from_utf8(bytes).ok().map(|s| s.chars().collect()),
        Tag::Short(0x12 | 0x13 | 0x14 | 0x16) => {
            Some(bytes.iter().map(|&b| char::from(b)).collect())
        }
        Tag::Short(0x1e) => utf16(bytes),
        Tag::Short(0x1c) => utf32(bytes),
        _ => None,
    };
    let Some(chars) = chars else {
        return Value::Undecodable;
    };
    // Byte order marks in front are dropped, as BearSSL does (however
    // many: it skips U+FEFF for as long as it has written nothing).
    let start = chars.iter().take_while(|&&c| c == '\u{feff}').count();
    let chars = &chars[start..];
    if chars.iter().all(|&c| acceptable(c)) {
        Value::Text(chars.iter().collect())
    } else {
        Value::Undecodable
    }
}

/// What BearSSL lets into a name: no NUL (the value becomes a C string, and
/// the block separates its strings with NUL), no noncharacter.
fn acceptable(c: char) -> bool {
    let c = u32::from(c);
    c != 0 && !(0xfdd0..=0xfdef).contains(&c) && c & 0xfffe != 0xfffe
}

fn utf16(bytes: &[u8]) -> Option<Vec<char>> {
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    let little = bytes.starts_with(&[0xff, 0xfe]);
    let units = bytes.chunks_exact(2).map(|u| {
        if little {
            u16::from_le_bytes([u[0], u[1]])
        } else {
            u16::from_be_bytes([u[0], u[1]])
        }
    });
    // Lone surrogates are refused; the little-endian mark reads as U+FEFF
    // and goes with the big-endian one.
    char::decode_utf16(units).collect::<Result<_, _>>().ok()
}

fn utf32(bytes: &[u8]) -> Option<Vec<char>> {
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    bytes
        .chunks_exact(4)
        .map(|u| char::from_u32(u32::from_be_bytes([u[0], u[1], u[2], u[3]])))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERSION: u8 = 0xa0;

    /// A certificate as far as the walk reads it: the TBS fields before
    /// the subject as empty elements of the right tags, then the subject.
    fn cert(rdns: &[&[(&[u8], &[u8])]]) -> Vec<u8> {
        let mut subject = Vec::new();
        for rdn in rdns {
            let mut set = Vec::new();
            for (oid, value) in *rdn {
                let atv = [wrap(OID, oid), value.to_vec()].concat();
                set.extend(wrap(SEQUENCE, &atv));
            }
            subject.extend(wrap(SET, &set));
        }
        let tbs = [
            wrap(VERSION, &wrap(INTEGER, &[2])),
            wrap(INTEGER, &[1]),
            wrap(SEQUENCE, &[]),
            wrap(SEQUENCE, &[]),
            wrap(SEQUENCE, &[]),
            wrap(SEQUENCE, &subject),
            wrap(SEQUENCE, &[]),
        ]
        .concat();
        wrap(SEQUENCE, &wrap(SEQUENCE, &tbs))
    }

    fn wrap(tag: u8, contents: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match contents.len() {
            n @ 0..=0x7f => out.push(n as u8),
            n @ 0x80..=0xff => out.extend([0x81, n as u8]),
            n => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(contents);
        out
    }

    const CN: &[u8] = &[0x55, 4, 3];
    const O: &[u8] = &[0x55, 4, 10];
    const C: &[u8] = &[0x55, 4, 6];
    const SERIAL: &[u8] = &[0x55, 4, 5];

    fn text(s: &str) -> Option<Value> {
        Some(Value::Text(s.into()))
    }

    #[test]
    fn order_first_occurrence_and_multivalued_rdns() {
        let der = cert(&[
            &[(CN, &wrap(0x0c, b"first"))],
            &[(O, &wrap(0x13, b"Org")), (C, &wrap(0x13, b"FR"))],
            &[(CN, &wrap(0x0c, b"second"))],
        ]);
        assert_eq!(
            attributes(&der),
            Ok([text("FR"), None, None, text("Org"), None, text("first")])
        );
    }

    #[test]
    fn other_attributes_may_use_any_type_even_no_string() {
        let der = cert(&[
            &[(SERIAL, &wrap(0x1c, &[0, 0, 0, b'4']))], // UniversalString
            &[(SERIAL, &wrap(0x19, b"graphic"))],       // GraphicString
            &[(&[0x2b, 6, 1], &wrap(0x30, &wrap(0x02, &[1])))], // a SEQUENCE
            &[(SERIAL, &[0x1f, 0x81, 0x01, 0x00])],     // a high tag number
            &[(CN, &wrap(0x0c, b"client"))],
        ]);
        assert_eq!(
            attributes(&der),
            Ok([None, None, None, None, None, text("client")])
        );
    }

    #[test]
    fn string_types_decode_like_bearssl() {
        let one = |value: Vec<u8>| attributes(&cert(&[&[(CN, &value)]])).unwrap()[5].clone();
        assert_eq!(one(wrap(0x0c, "Île".as_bytes())), text("Île"));
        assert_eq!(one(wrap(0x12, b"0123 45")), text("0123 45"));
        // Latin-1, whatever the declared character set.
        assert_eq!(one(wrap(0x13, b"a@\xe9")), text("a@é"));
        assert_eq!(one(wrap(0x14, b"\xfc")), text("ü"));
        assert_eq!(one(wrap(0x16, b"x\xff")), text("xÿ"));
        assert_eq!(
            one(wrap(0x1e, &[0, b'h', 0xd8, 0x3d, 0xde, 0x00])),
            text("h😀")
        );
        assert_eq!(one(wrap(0x1e, &[0xff, 0xfe, b'l', 0, b'e', 0])), text("le"));
        assert_eq!(one(wrap(0x1e, &[0xfe, 0xff, 0, b'b'])), text("b"));
        assert_eq!(
            one(wrap(0x1c, &[0, 0, 0, b'u', 0, 1, 0xf6, 0])),
            text("u😀")
        );
        assert_eq!(
            one(wrap(0x0c, "\u{feff}\u{feff}b\u{feff}".as_bytes())),
            text("b\u{feff}")
        );
        assert_eq!(one(wrap(0x0c, b"")), text(""));
        for bad in [
            wrap(0x0c, b"a\0b"),
            wrap(0x0c, b"\xc3"),
            wrap(0x0c, b"\xed\xa0\x80"),       // a surrogate
            wrap(0x0c, "\u{fdd0}".as_bytes()), // noncharacters
            wrap(0x0c, "\u{1fffe}".as_bytes()),
            wrap(0x13, b"\0"),
            wrap(0x1e, &[0, b'a', 0]),
            wrap(0x1e, &[0xd8, 0x00]),
            wrap(0x1c, &[0, 0x11, 0, 0]),
            wrap(0x1a, b"visible"),
            wrap(0x19, b"graphic"),
            wrap(0x2c, &wrap(0x0c, b"constructed")),
            wrap(0x04, b"octets"),
        ] {
            assert_eq!(one(bad.clone()), Some(Value::Undecodable), "{bad:02x?}");
        }
    }

    #[test]
    fn an_undecodable_first_occurrence_is_kept() {
        let der = cert(&[&[(CN, &wrap(0x19, b"g"))], &[(CN, &wrap(0x0c, b"second"))]]);
        assert_eq!(attributes(&der).unwrap()[5], Some(Value::Undecodable));
    }

    #[test]
    fn a_subject_of_the_wrong_shape_cannot_be_walked() {
        let good = cert(&[&[(CN, &wrap(0x0c, b"x"))]]);
        assert!(attributes(&good).is_ok());
        for bad in [
            b"nope".to_vec(),
            Vec::new(),
            good[..good.len() - 1].to_vec(),
            cert(&[&[]]),          // an empty RDN
            cert(&[&[(CN, &[])]]), // no value
            cert(&[&[(CN, &[wrap(0x0c, b"x"), wrap(0x0c, b"y")].concat())]]), // two
            cert(&[&[(CN, &[0x0c, 0x81, 0x01, b'x'])]]), // a non-minimal length
        ] {
            assert_eq!(attributes(&bad), Err(Unwalkable), "{bad:02x?}");
        }
        // An RDN that is a SEQUENCE instead of a SET.
        let mut seq = good.clone();
        let at = seq.windows(2).position(|w| w == [SET, 0x0a]).unwrap();
        seq[at] = SEQUENCE;
        assert_eq!(attributes(&seq), Err(Unwalkable));
    }
}
