//! The whole engine, in-process, after a valid ClientHello: bits 4-5 of
//! the control byte pick one of the recorded ClientHellos in
//! fuzz/fixtures/ (TLS 1.3, TLS 1.2, TLS 1.3 without SNI, TLS 1.3 that
//! gets a HelloRetryRequest), the rest of the input is what the client
//! sends after it. Same properties as the engine target.
#![no_main]

use libfuzzer_sys::fuzz_target;
use s6_tlsd_io_fuzz::{engine, seeds};

fuzz_target!(
    init: {
        s6_tlsd_io_fuzz::ignore_sigpipe();
        s6_tlsd_io_fuzz::identity::identity();
        engine::hello(0);
        seeds::write(|| seeds::engine(true));
    },
    |data: &[u8]| {
        let (ctl, rest) = engine::split(data);
        engine::run(ctl, engine::hello(ctl.0), rest).check();
    }
);
