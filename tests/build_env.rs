//! Build facts the product's cost depends on. One engine process runs per
//! connection, so what a process pays once, every connection pays.

mod common;

/// aws-lc built with its CPU-jitter entropy source seeds its RNG by timing
/// the CPU for 40-60 ms in every process. `.cargo/config.toml` sets
/// `AWS_LC_SYS_NO_JITTER_ENTROPY=1`, which leaves that code out of the
/// build: its functions (`jent_*`) must not be in the binary.
#[test]
fn aws_lc_is_built_without_cpu_jitter_entropy() {
    let binary = std::fs::read(common::BIN).expect("read the built binary");
    let needle = b"jent_entropy_collector_alloc";
    assert!(
        !binary.windows(needle.len()).any(|w| w == needle),
        "the binary contains aws-lc's CPU-jitter entropy code: \
         AWS_LC_SYS_NO_JITTER_ENTROPY did not reach the aws-lc-sys build \
         (each connection would cost 40-60 ms of CPU more)"
    );
}

/// Static glibc (crt-static): about 1 ms and 1.4 MB per connection less.
#[test]
fn binary_is_statically_linked() {
    let binary = std::fs::read(common::BIN).expect("read the built binary");
    let interp = b"/lib64/ld-linux-x86-64.so";
    assert!(
        !binary.windows(interp.len()).any(|w| w == interp),
        "the binary asks for the dynamic loader: crt-static is not in effect"
    );
}
