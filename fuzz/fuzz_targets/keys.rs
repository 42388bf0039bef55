//! Arbitrary bytes as a CERTFILE and a KEYFILE (a two-byte big-endian
//! length, the certificate file, then the key file), read and loaded as at
//! start-up: never a panic, and every refusal is a configuration error
//! (exit 96) that names the variable and the file. The chain decoder is
//! also fed the whole input directly.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use s6_tlsd_io::keys::{decode_chain, KeyPair};
use s6_tlsd_io_fuzz::seeds;

struct Files {
    cert: PathBuf,
    key: PathBuf,
}

extern "C" fn cleanup() {
    if let Some(f) = FILES.get() {
        let _ = std::fs::remove_file(&f.cert);
        let _ = std::fs::remove_file(&f.key);
        if let Some(dir) = f.cert.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

static FILES: OnceLock<Files> = OnceLock::new();

fn files() -> &'static Files {
    FILES.get_or_init(|| {
        let dir = s6_tlsd_io_fuzz::scratch_dir("keys");
        // SAFETY: registering a plain function to run at exit.
        unsafe { libc::atexit(cleanup) };
        Files {
            cert: dir.join("cert"),
            key: dir.join("key"),
        }
    })
}

fuzz_target!(
    init: {
        files();
        seeds::write(seeds::keys);
    },
    |data: &[u8]| {
        let _ = decode_chain(data);
        let (cert, key) = match data {
            [a, b, rest @ ..] => {
                let n = usize::from(u16::from_be_bytes([*a, *b])).min(rest.len());
                rest.split_at(n)
            }
            _ => (data, &[][..]),
        };
        let f = files();
        std::fs::write(&f.cert, cert).expect("write CERTFILE");
        std::fs::write(&f.key, key).expect("write KEYFILE");
        let result = KeyPair::read(
            "CERTFILE".into(),
            f.cert.as_os_str(),
            "KEYFILE".into(),
            f.key.as_os_str(),
        )
        .and_then(KeyPair::load);
        if let Err(e) = result {
            let msg = e.to_string();
            assert_eq!(e.exit_code(), 96, "{msg}");
            assert!(
                msg.contains("CERTFILE file ") || msg.contains("KEYFILE file "),
                "the message names neither variable: {msg}"
            );
            assert!(msg.contains(&*f.cert.to_string_lossy()) || msg.contains(&*f.key.to_string_lossy()),
                "the message names no file: {msg}");
            assert!(!msg.contains('\n'), "a multi-line message: {msg:?}");
        }
    }
);
