//! Arbitrary bytes as a client's leaf certificate: `peer::subject` must
//! never panic and must give `<invalid>`, nothing, or a line that reads
//! back under the spec's rules (attributes C, ST, L, O, OU, CN in order,
//! specials escaped, values trimmed, no NUL: the line travels in a
//! NUL-separated block); `peer::cert_hash` is `SHA256:` and 64 lowercase
//! hex digits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use s6_tlsd_io::peer;
use s6_tlsd_io_fuzz::{seeds, subject_model};

fuzz_target!(
    init: {
        seeds::write(seeds::subject);
    },
    |data: &[u8]| {
        let hash = peer::cert_hash(data);
        let hex = hash.strip_prefix("SHA256:").expect("SHA256: prefix");
        assert!(hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')), "{hash}");
        if let Some(line) = peer::subject(data) {
            assert!(!line.contains('\0'), "NUL in {line:?}");
            if line != "<invalid>" {
                if let Err(why) = subject_model::parse(&line) {
                    panic!("{why}: {line:?}");
                }
            }
        }
    }
);
