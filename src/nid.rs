//! aws-lc's table of every object identifier it knows, left out of the
//! engine: the OID-to-NID lookups its linked code makes are answered here.
//!
//! Why: the table (`kObjects`, obj_dat.h) is 40 KB of structs holding
//! pointers. A static PIE relocates every pointer at start-up, so each
//! process gets its own copy of those ten pages: 40 KiB of an idle
//! connection's 195 KiB of anonymous memory, for a table no connection
//! reads. build.rs has the linker send aws-lc's calls of the three
//! functions that reach it (`OBJ_cbs2nid`, `OBJ_sn2nid`, `OBJ_ln2nid`) to
//! the `__wrap_` functions below (the linkers' `--wrap`); nothing is then
//! left that refers to the table, and `--gc-sections` drops it.
//! tests/build_env.rs checks that it is gone.
//!
//! aws-lc's C symbols carry its version (`aws_lc_0_47_0_OBJ_cbs2nid`), so
//! the functions' names do too: build.rs reads the prefix from the
//! aws-lc-sys build (S6_TLSD_IO_AWS_LC_PREFIX). It also fails the build
//! when one of the three is no longer in aws-lc's library, or when a call
//! of another function that reads the table is linked in: then this
//! module and its callers must be read again.
//!
//! What the callers do with the answer, as of aws-lc-sys 0.47's source:
//! - `parse_key_type` (evp_asn1.c), for a key whose algorithm OID matched
//!   no method: NID_rsa and NID_rsaesOaep are RSA; then the ML-DSA and
//!   ML-KEM NIDs; anything else, unknown.
//! - the ML-KEM and ML-DSA key decoders (p_kem_asn1.c, p_pqdsa_asn1.c):
//!   their three parameter sets each; anything else, refused.
//! - `pkey_ec_ctrl_str` (p_ec.c), the only caller of the two name lookups,
//!   runs only from `EVP_PKEY_CTX_ctrl_str`, which the engine does not link.
//!
//! So `KNOWN` holds those eight, and every other OID gets NID_undef: the
//! callers behave exactly as with the full table. The test below checks
//! that against the real table, OID by OID (tests link aws-lc unwrapped).

use std::ffi::{c_char, c_int};

use aws_lc_sys as sys;

/// The OIDs (DER contents) whose NIDs the callers act on.
#[rustfmt::skip]
pub const KNOWN: [(&[u8], c_int); 8] = [
    // 2.5.8.1.1
    (&[0x55, 0x08, 0x01, 0x01], sys::NID_rsa),
    // 1.2.840.113549.1.1.7
    (&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x07], sys::NID_rsaesOaep),
    // 2.16.840.1.101.3.4.4.{1,2,3}
    (&[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x04, 0x01], sys::NID_MLKEM512),
    (&[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x04, 0x02], sys::NID_MLKEM768),
    (&[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x04, 0x03], sys::NID_MLKEM1024),
    // 2.16.840.1.101.3.4.3.{17,18,19}
    (&[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x11], sys::NID_MLDSA44),
    (&[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x12], sys::NID_MLDSA65),
    (&[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x13], sys::NID_MLDSA87),
];

/// The NID of `oid` if the callers act on it, else NID_undef.
pub fn nid_of(oid: &[u8]) -> c_int {
    KNOWN
        .iter()
        .find(|(known, _)| *known == oid)
        .map_or(sys::NID_undef, |&(_, nid)| nid)
}

/// # Safety
/// `cbs` points to a valid CBS, as aws-lc's callers pass.
#[export_name = concat!("__wrap_", env!("S6_TLSD_IO_AWS_LC_PREFIX"), "OBJ_cbs2nid")]
pub unsafe extern "C" fn wrap_cbs2nid(cbs: *const sys::CBS) -> c_int {
    // SAFETY: a valid CBS's data holds len bytes (and may be null when
    // len is 0, which from_raw_parts does not allow).
    let oid = unsafe {
        match (*cbs).len {
            0 => &[][..],
            len => std::slice::from_raw_parts((*cbs).data, len),
        }
    };
    nid_of(oid)
}

/// Unreachable in the engine (see the module's comment).
#[export_name = concat!("__wrap_", env!("S6_TLSD_IO_AWS_LC_PREFIX"), "OBJ_sn2nid")]
pub extern "C" fn wrap_sn2nid(_short_name: *const c_char) -> c_int {
    sys::NID_undef
}

/// Unreachable in the engine (see the module's comment).
#[export_name = concat!("__wrap_", env!("S6_TLSD_IO_AWS_LC_PREFIX"), "OBJ_ln2nid")]
pub extern "C" fn wrap_ln2nid(_long_name: *const c_char) -> c_int {
    sys::NID_undef
}

#[cfg(test)]
mod tests {
    use super::*;

    /// For every NID aws-lc has an OID for, the real lookup and ours agree
    /// wherever a caller could tell them apart.
    #[test]
    fn every_oid_in_aws_lcs_table_gets_the_answer_its_callers_need() {
        let mut seen = 0;
        for nid in 1..4096 {
            // SAFETY: OBJ_nid2obj returns a static object or null; its
            // data holds OBJ_length bytes.
            let oid = unsafe {
                let obj = sys::OBJ_nid2obj(nid);
                if obj.is_null() || sys::OBJ_length(obj) == 0 {
                    continue;
                }
                std::slice::from_raw_parts(sys::OBJ_get0_data(obj), sys::OBJ_length(obj))
            };
            let cbs = sys::CBS {
                data: oid.as_ptr(),
                len: oid.len(),
            };
            // SAFETY: a valid CBS; in tests this is aws-lc's own function.
            let real = unsafe { sys::OBJ_cbs2nid(&cbs) };
            let needed = match KNOWN.iter().any(|&(_, n)| n == real) {
                true => real,
                false => sys::NID_undef,
            };
            assert_eq!(nid_of(oid), needed, "NID {nid}, OID {oid:02x?}");
            // SAFETY: as above.
            assert_eq!(unsafe { wrap_cbs2nid(&cbs) }, needed);
            seen += 1;
        }
        unsafe { sys::ERR_clear_error() };
        assert!(seen >= 800, "only {seen} OIDs in aws-lc's table");
        for (oid, nid) in KNOWN {
            assert_ne!(nid, sys::NID_undef);
            assert_eq!(nid_of(oid), nid);
        }
        let empty = sys::CBS {
            data: std::ptr::null(),
            len: 0,
        };
        // SAFETY: an empty CBS.
        assert_eq!(unsafe { wrap_cbs2nid(&empty) }, sys::NID_undef);
    }
}
