//! The one DER reader: a walk over tag-length-value elements, used for the
//! certificate's subject (subject.rs), its serial number and issuer
//! (crl.rs), its public key and the private keys (keys.rs, rsa.rs), and its
//! validity dates and DNS names and a CRL's next update (check.rs). Not
//! named `der`: that is the crate it reads with.
//!
//! Lenient where it must be: the tag is read by hand, not by der's
//! `Header`, which refuses the universal tags it has no type for
//! (UniversalString, GraphicString...), and those are exactly what the
//! subject walk must step over; high tag numbers (a first octet ending in
//! 11111) are stepped over, never matched. An INTEGER's contents are left
//! as they are (rsa.rs takes a key's needless leading zeros). Strict where
//! DER is: der reads the length (definite, minimal) and every element must
//! lie within its parent. Never panics on anything (fuzz/).

use der::asn1::{AnyRef, GeneralizedTime, UtcTime};
use der::{DateTime, Decode, Length, Reader, SliceReader};

pub const INTEGER: u8 = 0x02;
pub const OCTET_STRING: u8 = 0x04;
pub const OID: u8 = 0x06;
pub const SEQUENCE: u8 = 0x30;
pub const SET: u8 = 0x31;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
/// A certificate's version, `[0] EXPLICIT` (constructed).
const VERSION: u8 = 0xa0;
/// A certificate's extensions, `[3] EXPLICIT`.
const EXTENSIONS: u8 = 0xa3;
const BOOLEAN: u8 = 0x01;
/// subjectAltName, 2.5.29.17.
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
/// A GeneralName's dNSName, `[2] IMPLICIT IA5String`.
const DNS_NAME: u8 = 0x82;

/// The bytes are not DER of the shape asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

impl From<der::Error> for Malformed {
    fn from(_: der::Error) -> Malformed {
        Malformed
    }
}

/// An identifier octet as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    Short(u8),
    /// A high tag number: stepped over, never matched.
    Long,
}

/// A reader over `der`.
pub fn reader(der: &[u8]) -> Result<SliceReader<'_>, Malformed> {
    Ok(SliceReader::new(der)?)
}

/// One element: its tag and its contents.
pub fn tlv<'a>(r: &mut SliceReader<'a>) -> Result<(Tag, &'a [u8]), Malformed> {
    let first = r.read_byte()?;
    let tag = if first & 0x1f == 0x1f {
        // Subsequent octets: 7 bits each, the last one with bit 8 clear.
        // Four of them already make a tag number no real schema uses.
        let mut n = 0;
        while r.read_byte()? & 0x80 != 0 {
            n += 1;
            if n == 4 {
                return Err(Malformed);
            }
        }
        Tag::Long
    } else {
        Tag::Short(first)
    };
    let len = Length::decode(r)?;
    Ok((tag, r.read_slice(len)?))
}

/// The next element's contents, if its tag is `want`.
pub fn expect<'a>(r: &mut SliceReader<'a>, want: u8) -> Result<&'a [u8], Malformed> {
    match tlv(r)? {
        (tag, contents) if tag == Tag::Short(want) => Ok(contents),
        _ => Err(Malformed),
    }
}

/// DER elements one after the other (a SEQUENCE's contents, say), each as
/// its tag (the first identifier octet) and contents; None if `der` is not
/// just that.
pub fn elements(der: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    fn go(der: &[u8]) -> Result<Vec<(u8, &[u8])>, Malformed> {
        let mut r = reader(der)?;
        let mut out = Vec::new();
        while !r.is_finished() {
            match tlv(&mut r)? {
                (Tag::Short(t), c) => out.push((t, c)),
                (Tag::Long, _) => return Err(Malformed),
            }
        }
        Ok(out)
    }
    go(der).ok()
}

/// A reader at the first field of the signed part of a certificate or a
/// CRL (its TBSCertificate, its TBSCertList).
fn signed_part(der: &[u8]) -> Result<SliceReader<'_>, Malformed> {
    let mut r = reader(der)?;
    let whole = expect(&mut r, SEQUENCE)?;
    let mut r = reader(whole)?;
    let tbs = expect(&mut r, SEQUENCE)?;
    reader(tbs)
}

/// A reader at the TBSCertificate's first field after the version: the
/// serial number, then signature, issuer, validity, subject...
pub fn tbs_fields(cert: &[u8]) -> Result<SliceReader<'_>, Malformed> {
    let mut r = signed_part(cert)?;
    if r.peek_byte() == Some(VERSION) {
        tlv(&mut r)?;
    }
    Ok(r)
}

/// A Time (RFC 5280, 4.1.2.5): UTCTime or GeneralizedTime.
fn time(r: &mut SliceReader<'_>) -> Result<DateTime, Malformed> {
    Ok(match tlv(r)? {
        (Tag::Short(UTC_TIME), t) => AnyRef::new(der::Tag::UtcTime, t)?
            .decode_as::<UtcTime>()?
            .into(),
        (Tag::Short(GENERALIZED_TIME), t) => AnyRef::new(der::Tag::GeneralizedTime, t)?
            .decode_as::<GeneralizedTime>()?
            .into(),
        _ => return Err(Malformed),
    })
}

/// A certificate's notBefore and notAfter.
pub fn validity(cert: &[u8]) -> Option<(DateTime, DateTime)> {
    fn go(cert: &[u8]) -> Result<(DateTime, DateTime), Malformed> {
        let mut r = tbs_fields(cert)?;
        expect(&mut r, INTEGER)?; // serial number
        expect(&mut r, SEQUENCE)?; // signature
        expect(&mut r, SEQUENCE)?; // issuer
        let mut v = reader(expect(&mut r, SEQUENCE)?)?;
        let times = (time(&mut v)?, time(&mut v)?);
        match v.is_finished() {
            true => Ok(times),
            false => Err(Malformed),
        }
    }
    go(cert).ok()
}

/// A CRL's nextUpdate (absent, or not a Time: None).
pub fn next_update(crl: &[u8]) -> Option<DateTime> {
    fn go(crl: &[u8]) -> Result<DateTime, Malformed> {
        let mut r = signed_part(crl)?;
        if r.peek_byte() == Some(INTEGER) {
            tlv(&mut r)?; // version
        }
        expect(&mut r, SEQUENCE)?; // signature
        expect(&mut r, SEQUENCE)?; // issuer
        time(&mut r)?; // thisUpdate
        time(&mut r)
    }
    go(crl).ok()
}

/// A reader at a certificate's SubjectPublicKeyInfo. Of what precedes it
/// only the tags and lengths are read, so any version will do (a version 1
/// certificate, of `openssl x509 -req` without extensions, which webpki
/// refuses), and any serial number, name or date: it is our own
/// certificate, and only the client judges it.
fn at_public_key(cert: &[u8]) -> Result<SliceReader<'_>, Malformed> {
    let mut r = tbs_fields(cert)?;
    expect(&mut r, INTEGER)?; // serial number
    expect(&mut r, SEQUENCE)?; // signature
    expect(&mut r, SEQUENCE)?; // issuer
    expect(&mut r, SEQUENCE)?; // validity
    expect(&mut r, SEQUENCE)?; // subject
    Ok(r)
}

/// The contents of a certificate's SubjectPublicKeyInfo: what keys.rs
/// matches the private key against.
pub fn subject_public_key_info(cert: &[u8]) -> Option<&[u8]> {
    at_public_key(cert)
        .and_then(|mut r| expect(&mut r, SEQUENCE))
        .ok()
}

/// The DNS names of a certificate's subjectAltName, as they are written
/// (check.rs reports them). None of the certificate is judged: a version
/// 1 certificate has none, a critical extension nobody knows is stepped
/// over. None if the walk to them fails.
pub fn dns_names(cert: &[u8]) -> Option<Vec<&[u8]>> {
    fn go(cert: &[u8]) -> Result<Vec<&[u8]>, Malformed> {
        let mut r = at_public_key(cert)?;
        expect(&mut r, SEQUENCE)?; // subjectPublicKeyInfo
        let mut names = Vec::new();
        while !r.is_finished() {
            // issuerUniqueID [1] and subjectUniqueID [2] stepped over.
            let (Tag::Short(EXTENSIONS), extensions) = tlv(&mut r)? else {
                continue;
            };
            let mut list = reader(expect(&mut reader(extensions)?, SEQUENCE)?)?;
            while !list.is_finished() {
                let mut extension = reader(expect(&mut list, SEQUENCE)?)?;
                if expect(&mut extension, OID)? != SUBJECT_ALT_NAME {
                    continue;
                }
                if extension.peek_byte() == Some(BOOLEAN) {
                    tlv(&mut extension)?; // critical
                }
                let value = expect(&mut extension, OCTET_STRING)?;
                let mut general = reader(expect(&mut reader(value)?, SEQUENCE)?)?;
                while !general.is_finished() {
                    if let (Tag::Short(DNS_NAME), name) = tlv(&mut general)? {
                        names.push(name);
                    }
                }
            }
        }
        Ok(names)
    }
    go(cert).ok()
}

/// The serial number (the INTEGER's contents) and the issuer Name's
/// contents: what a CRL lists a revoked certificate by (crl.rs).
pub fn serial_and_issuer(cert: &[u8]) -> Option<(&[u8], &[u8])> {
    fn go(cert: &[u8]) -> Result<(&[u8], &[u8]), Malformed> {
        let mut r = tbs_fields(cert)?;
        let serial = expect(&mut r, INTEGER)?;
        expect(&mut r, SEQUENCE)?; // signature
        let issuer = expect(&mut r, SEQUENCE)?;
        Ok((serial, issuer))
    }
    go(cert).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_are_read_in_order_and_nothing_else_is_taken() {
        let der = [0x02, 0x01, 0x05, 0x30, 0x02, 0x04, 0x00, 0x1c, 0x00];
        assert_eq!(
            elements(&der),
            Some(vec![(0x02, &[5][..]), (0x30, &[4, 0][..]), (0x1c, &[][..])])
        );
        for bad in [
            &[0x02, 0x02, 0x05][..],         // contents cut short
            &[0x02, 0x81, 0x01, 0x05],       // a non-minimal length
            &[0x02, 0x80, 0x05, 0x00, 0x00], // an indefinite length
            &[0x1f, 0x81, 0x01, 0x00],       // a high tag number
            &[0x1f, 0x81, 0x81, 0x81, 0x81, 0x01, 0x00],
        ] {
            assert_eq!(elements(bad), None, "{bad:02x?}");
        }
        assert_eq!(elements(&[]), Some(vec![]));
    }

    #[test]
    fn a_high_tag_number_is_stepped_over() {
        let mut r = reader(&[0x1f, 0x81, 0x01, 0x01, 0xaa, 0x02, 0x00]).unwrap();
        assert_eq!(tlv(&mut r), Ok((Tag::Long, &[0xaa][..])));
        assert_eq!(expect(&mut r, INTEGER), Ok(&[][..]));
        assert!(r.is_finished());
    }

    #[test]
    fn key_and_names_of_a_certificate_webpki_refuses() {
        let key = rcgen::KeyPair::generate().unwrap();
        let names = vec!["a.example".to_string(), "*.b.example".to_string()];
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
        // A critical extension nobody knows: webpki refuses the certificate.
        let mut unknown = rcgen::CustomExtension::from_oid_content(&[1, 2, 3, 4], vec![5, 0]);
        unknown.set_criticality(true);
        params.custom_extensions.push(unknown);
        let cert = params.self_signed(&key).unwrap();
        assert!(webpki::EndEntityCert::try_from(cert.der()).is_err());
        let spki = key.public_key_der();
        assert_eq!(
            elements(&spki).as_deref(),
            Some(&[(SEQUENCE, subject_public_key_info(cert.der()).unwrap())][..])
        );
        assert_eq!(
            dns_names(cert.der()),
            Some(vec![&b"a.example"[..], b"*.b.example"])
        );
        assert_eq!(subject_public_key_info(b"\x30\x00"), None);
        assert_eq!(dns_names(b"garbage"), None);
        // Never a panic: cut anywhere, any byte changed.
        let der = cert.der();
        for n in 0..der.len() {
            let _ = (subject_public_key_info(&der[..n]), dns_names(&der[..n]));
            let mut changed = der.to_vec();
            changed[n] ^= 0xff;
            let _ = (subject_public_key_info(&changed), dns_names(&changed));
        }
    }

    #[test]
    fn validity_of_a_generated_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["x".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 2);
        params.not_after = rcgen::date_time_ymd(2051, 3, 4);
        let cert = params.self_signed(&key).unwrap();
        let (from, to) = validity(cert.der()).unwrap();
        assert_eq!(from.to_string(), "2020-01-02T00:00:00Z");
        assert_eq!(to.to_string(), "2051-03-04T00:00:00Z");
        assert_eq!(validity(b"\x30\x00"), None);
        assert_eq!(next_update(b"garbage"), None);
    }
}
