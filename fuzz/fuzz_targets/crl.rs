//! A CRLFILE as the engine reads it (crl.rs: PEM or DER), the DER readers
//! of asn1.rs (serial and issuer, next update, validity), and the client
//! verifier built of what was read (fuzz/src/revocation.rs): never a
//! panic; a refusal is exit 96 naming the variable and the file; what is
//! read the verifier takes, with a next update check.rs can report, and
//! goes stale at that second for the verifier too; a revoked client
//! certificate is named by its serial.
#![no_main]

use libfuzzer_sys::fuzz_target;
use s6_tlsd_io_fuzz::{revocation, seeds};

fuzz_target!(
    init: {
        revocation::scratch_file();
        seeds::write(revocation::seeds);
    },
    |data: &[u8]| {
        revocation::check(data, revocation::scratch_file());
    }
);
