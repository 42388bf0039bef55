//! argv (the input split at NUL bytes) into `cli::parse`: it must never
//! panic, every error must be a usage error (exit 100) in skalibs' format,
//! and the result must be the one the spec's rules give (src/cli_model.rs).
#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use libfuzzer_sys::fuzz_target;
use s6_tlsd_io_fuzz::{cli_model, seeds};

fuzz_target!(
    init: {
        seeds::write(seeds::cli);
    },
    |data: &[u8]| {
        let args = cli_model::argv(data);
        let real = s6_tlsd_io::cli::parse(args.iter().cloned().map(OsString::from_vec));
        let real = match real {
            Ok(o) => Ok(o),
            Err(e) => {
                assert_eq!(e.exit_code(), 100, "{e}");
                let msg = e.to_string();
                assert!(msg.starts_with("s6-tlsd-io: "), "{msg}");
                Err(msg)
            }
        };
        let model = cli_model::parse(&args);
        assert_eq!(real, model, "argv {args:?}");
    }
);
