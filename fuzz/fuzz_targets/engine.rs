//! The whole engine, in-process, fed arbitrary bytes from the network side
//! from the very first byte (the first input byte is the control byte of
//! src/engine.rs: client-certificate mode, -S, -J, SNI policy, open run).
//! It must return (never hang past -K), never panic, exit 98 on every
//! handshake failure with an alert to the client where TLS allows, close
//! every descriptor, and never hand cleartext to the application before a
//! handshake.
#![no_main]

use libfuzzer_sys::fuzz_target;
use s6_tlsd_io_fuzz::{engine, seeds};

fuzz_target!(
    init: {
        s6_tlsd_io_fuzz::ignore_sigpipe();
        s6_tlsd_io_fuzz::identity::identity();
        seeds::write(|| seeds::engine(false));
    },
    |data: &[u8]| {
        let (ctl, rest) = engine::split(data);
        engine::run(ctl, &[], rest).check();
    }
);
