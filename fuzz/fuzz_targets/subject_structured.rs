//! Real certificates (rcgen) whose subject holds arbitrary strings, in
//! every string type a subject may use: `peer::subject` must give exactly
//! what the spec says (src/subject_model.rs): C, ST, L, O, OU, CN in that
//! order, values trimmed of spaces and their specials escaped, a value
//! written `<invalid>` when it holds a NUL or a noncharacter, nothing when
//! none is present; other attributes are ignored, whatever their type.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use rcgen::{DnType, DnValue};
use s6_tlsd_io::peer;
use s6_tlsd_io_fuzz::identity::{ed25519_pkcs8, rcgen_key};
use s6_tlsd_io_fuzz::subject_model::{self, KEYS};

#[derive(Arbitrary, Debug)]
struct Attr {
    /// 0-5: C, ST, L, O, OU, CN; 6: serialNumber; 7: domainComponent.
    kind: u8,
    /// Utf8, Printable, Ia5, Teletex, Bmp, Universal.
    string: u8,
    value: String,
}

fn key() -> &'static rcgen::KeyPair {
    static KEY: OnceLock<rcgen::KeyPair> = OnceLock::new();
    KEY.get_or_init(|| rcgen_key(&ed25519_pkcs8(&[9; 32])))
}

fn dn_type(kind: u8) -> DnType {
    match kind % 8 {
        0 => DnType::CountryName,
        1 => DnType::StateOrProvinceName,
        2 => DnType::LocalityName,
        3 => DnType::OrganizationName,
        4 => DnType::OrganizationalUnitName,
        5 => DnType::CommonName,
        6 => DnType::CustomDnType(vec![2, 5, 4, 5]),
        _ => DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 25]),
    }
}

/// The value as rcgen will encode it, if that string type can hold it.
fn dn_value(string: u8, v: &str) -> Option<DnValue> {
    let s = v.to_string();
    Some(match string % 6 {
        0 => DnValue::Utf8String(s),
        // yasna (rcgen's encoder) panics on '?', which PrintableString allows.
        1 if s.contains('?') => return None,
        1 => DnValue::PrintableString(s.try_into().ok()?),
        // Big-endian U+FFFE reads as a little-endian byte order mark, as in
        // BearSSL: what follows is then another string.
        4 if s.starts_with('\u{fffe}') => return None,
        2 => DnValue::Ia5String(s.try_into().ok()?),
        3 => DnValue::TeletexString(s.try_into().ok()?),
        4 => DnValue::BmpString(s.as_str().try_into().ok()?),
        _ => DnValue::UniversalString(s.as_str().try_into().ok()?),
    })
}

fuzz_target!(|attrs: Vec<Attr>| {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    // The value each of the six ends with (rcgen keeps the last one pushed),
    // as decoded, if it can be.
    let mut model: [Option<Option<String>>; 6] = Default::default();
    for a in attrs.iter().take(16) {
        let Some(value) = dn_value(a.string, &a.value) else {
            continue;
        };
        let kind = usize::from(a.kind % 8);
        if kind < 6 {
            let v = subject_model::decoded(&a.value);
            model[kind] = Some(subject_model::decodable(v).then(|| v.to_string()));
        }
        params.distinguished_name.push(dn_type(a.kind), value);
    }
    let der = params
        .self_signed(key())
        .expect("certificate")
        .der()
        .to_vec();

    let parts: Vec<String> = KEYS
        .iter()
        .zip(&model)
        .filter_map(|(k, v)| {
            v.as_ref().map(|v| match v {
                Some(v) => format!("{k}={}", subject_model::render(v)),
                None => format!("{k}=<invalid>"),
            })
        })
        .collect();
    let expected = (!parts.is_empty()).then(|| parts.join(", "));
    let got = peer::subject(&der);
    assert_eq!(got, expected, "attributes {attrs:?}");
    if let Some(line) = got {
        let pairs = subject_model::parse(&line).unwrap_or_else(|why| panic!("{why}: {line:?}"));
        let want: Vec<(String, Option<String>)> = KEYS
            .iter()
            .zip(&model)
            .filter_map(|(k, v)| {
                v.as_ref().map(|v| {
                    (
                        k.to_string(),
                        v.as_ref().map(|v| v.trim_matches(' ').to_string()),
                    )
                })
            })
            .collect();
        assert_eq!(pairs, want, "{line:?}");
    }
});
