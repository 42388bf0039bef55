//! Build facts the product's cost depends on. One engine process runs per
//! connection, so what a process pays once, every connection pays.

mod common;

/// Whether the built binary holds these bytes anywhere (a symbol name, a
/// section name, a path).
fn binary_contains(needle: &[u8]) -> bool {
    let binary = std::fs::read(common::BIN).expect("read the built binary");
    binary.windows(needle.len()).any(|w| w == needle)
}

/// aws-lc built with its CPU-jitter entropy source seeds its RNG by timing
/// the CPU for 40-60 ms in every process. `.cargo/config.toml` sets
/// `AWS_LC_SYS_NO_JITTER_ENTROPY=1`, which leaves that code out of the
/// build: its functions (`jent_*`) must not be in the binary.
#[test]
fn aws_lc_is_built_without_cpu_jitter_entropy() {
    assert!(
        !binary_contains(b"jent_entropy_collector_alloc"),
        "the binary contains aws-lc's CPU-jitter entropy code: \
         AWS_LC_SYS_NO_JITTER_ENTROPY did not reach the aws-lc-sys build \
         (each connection would cost 40-60 ms of CPU more)"
    );
}

/// Static glibc (crt-static): about 1 ms and 1.4 MB per connection less.
#[test]
fn binary_is_statically_linked() {
    assert!(
        !binary_contains(b"/lib64/ld-linux-x86-64.so"),
        "the binary asks for the dynamic loader: crt-static is not in effect"
    );
}

/// aws-lc's AVX-512 AES-GCM is 700 KB of code, a good part of which a
/// connection touched on CPUs that run it: 350 KiB resident per connection.
/// `.cargo/config.toml` builds aws-lc without it (its AVX AES-GCM runs at
/// about 6 GB/s on one core).
#[test]
fn aws_lc_is_built_without_avx512_aes_gcm() {
    assert!(
        !binary_contains(b"aes_gcm_encrypt_avx512"),
        "the binary contains aws-lc's AVX-512 AES-GCM: AWS_LC_SYS_CFLAGS \
         (-DMY_ASSEMBLER_IS_TOO_OLD_FOR_512AVX) did not reach the aws-lc-sys build"
    );
}

/// build.rs packs relative relocations (RELR) when the glibc linked in
/// knows them (2.36 and later): the static PIE then relocates itself from
/// 1.4 KB of RELR instead of 150 KB of RELA entries kept resident.
#[test]
fn relative_relocations_are_packed() {
    let glibc = std::process::Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let version: Vec<u32> = glibc
        .split_whitespace()
        .nth(1)
        .unwrap_or("0.0")
        .split('.')
        .map(|n| n.parse().unwrap_or(0))
        .collect();
    if version < vec![2, 36] {
        eprintln!("skipped: {glibc:?} predates RELR");
        return;
    }
    assert!(
        binary_contains(b".relr.dyn"),
        "no .relr.dyn section: build.rs did not pass -z pack-relative-relocs"
    );
}

/// build.rs hands link/hot-symbols.txt to the linker, which puts those
/// functions first in .text: most of them must come before the rest. (The
/// debug build has other Rust symbol names, so this looks at the ones it
/// has; .ci/run checks the release build's names with bench/hot-symbols.)
#[test]
fn the_code_a_connection_runs_is_laid_out_first() {
    let list =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/link/hot-symbols.txt"))
            .expect("read link/hot-symbols.txt");
    let hot: std::collections::HashSet<&str> = list
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let nm = std::process::Command::new("nm")
        .args(["-n", "--defined-only", common::BIN])
        .output()
        .expect("run nm");
    let text = String::from_utf8_lossy(&nm.stdout);
    let code: Vec<&str> = text
        .lines()
        .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            [_, kind, name] if "tTwWi".contains(kind) => Some(name),
            _ => None,
        })
        .collect();
    let listed: Vec<usize> = (0..code.len()).filter(|&i| hot.contains(code[i])).collect();
    assert!(
        listed.len() > 200,
        "only {} listed names in the binary",
        listed.len()
    );
    // Where 90% of the listed functions are in, counted in functions.
    let p90 = listed[listed.len() * 9 / 10];
    assert!(
        p90 < 2 * listed.len(),
        "90% of the {} listed functions reach function {p90} of {}: the \
         symbol ordering file is not in effect",
        listed.len(),
        code.len()
    );
}
