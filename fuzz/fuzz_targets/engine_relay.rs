//! The relay after a completed handshake: the input is a small program of
//! events on both sides (fuzz/src/relay.rs): the client's records of every
//! kind (data, alerts, close_notify, KeyUpdates, records damaged or cut
//! short, raw bytes), its EOF and its reads; the application's writes,
//! reads, EOF on fdr, fdw closed. Nothing may panic; the handshake always
//! completes; every record the engine sends decrypts; what each side gets
//! is a prefix of what the other sent; a run without faults ends on its
//! own, with success, nothing lost, each side told as -S says; no run
//! leaves a descriptor open or waits on a timer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use s6_tlsd_io_fuzz::relay::{self, Program};
use s6_tlsd_io_fuzz::seeds;

fuzz_target!(
    init: {
        s6_tlsd_io_fuzz::ignore_sigpipe();
        s6_tlsd_io_fuzz::identity::identity();
        relay::tolerate_rustls_alert_after_close_notify();
        seeds::write(relay::seeds);
    },
    |data: &[u8]| {
        if let Some(outcome) = relay::run_tolerating(&Program::decode(data)) {
            outcome.check();
        }
    }
);
