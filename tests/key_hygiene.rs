//! Key hygiene: once the provider has parsed the private key, no copy of
//! its encoding is left in the engine's memory.

mod common;

use std::io::{Read, Seek, SeekFrom, Write};

use common::*;

/// Every writable mapping of the process, read through /proc/PID/mem.
fn writable_memory(pid: u32) -> Vec<Vec<u8>> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).expect("open mem");
    let mut regions = Vec::new();
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (range, perms) = (fields.next().unwrap(), fields.next().unwrap());
        if !perms.starts_with("rw") {
            continue;
        }
        let (start, end) = range.split_once('-').unwrap();
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        let mut buf = vec![0; (end - start) as usize];
        let r = mem
            .seek(SeekFrom::Start(start))
            .and_then(|_| mem.read_exact(&mut buf));
        if r.is_ok() {
            regions.push(buf);
        }
    }
    regions
}

fn contains(regions: &[Vec<u8>], needle: &[u8]) -> bool {
    regions
        .iter()
        .any(|r| r.windows(needle.len()).any(|w| w == needle))
}

#[test]
fn no_copy_of_the_private_key_is_left_after_loading() {
    if unsafe { libc::getuid() } != 0 {
        eprintln!("not root: /proc/PID/mem may be unreadable; not tested");
        return;
    }
    for alg in [Alg::EcdsaP256, Alg::Rsa2048, Alg::Ed25519] {
        let keys = keys(alg, &["localhost"]);
        let mut e = spawn().keys(&keys).start();
        let mut tls = connect(&e, tls13(), "localhost");
        tls.write_all(b"x").unwrap();
        assert_eq!(read_app(&mut e, 1), b"x");
        let memory = writable_memory(e.pid());
        // Freed buffers keep their bytes (but for the allocator's
        // bookkeeping at their start): the control is the certificate,
        // which nobody wipes, found past its first 16 bytes.
        assert!(
            contains(&memory, &keys.cert_der[16..]),
            "{alg:?}: the scan does not even find the certificate"
        );
        assert!(
            !contains(&memory, &keys.key_der[16..]),
            "{alg:?}: the key's PKCS#8 encoding is still in memory"
        );
        assert!(
            !contains(&memory, keys.key_pem.lines().nth(1).unwrap().as_bytes()),
            "{alg:?}: the key file's text is still in memory"
        );
    }
}
