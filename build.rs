//! Lays out the functions a connection runs together at the start of .text.
//! The kernel maps an executable's pages 64 KiB at a time around each page
//! fault, so with those functions scattered over 3 MiB of code a connection
//! kept 2.4 MiB of it resident; packed, about 0.7 MiB (bench/README.md, "Code
//! layout"). The list is link/hot-symbols.txt, made by bench/hot-symbols.
//!
//! With it, relative relocations are packed (RELR, `-z pack-relative-relocs`):
//! the static PIE relocates itself at start-up, and reading 150 KB of RELA
//! entries to do it kept them resident too. glibc learnt RELR in 2.36;
//! older ones would not relocate such a binary, so it is only asked for when
//! the glibc linked in is 2.36 or later.
//!
//! Only rust-lld knows --symbol-ordering-file. It is the default linker for
//! x86_64-unknown-linux-gnu from Rust 1.90; elsewhere both are left out
//! and the binary works the same, only with more of it resident. That is
//! the one place the build names an architecture: an optimisation, skipped
//! on the others (README.md, "Build and install").
//!
//! It also says so when the static-linking flag of .cargo/config.toml did
//! not arrive: a RUSTFLAGS variable replaces it, and the engine then works
//! but costs each connection the dynamic loader.

use std::env;
use std::process::Command;

fn main() {
    let list = format!("{}/link/hot-symbols.txt", env!("CARGO_MANIFEST_DIR"));
    println!("cargo::rerun-if-changed={list}");
    println!("cargo::rerun-if-changed=build.rs");
    warn_unless_static();
    leave_out_aws_lcs_object_table();
    if env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu") || !rustc_links_with_lld() {
        return;
    }
    println!("cargo::rustc-link-arg-bins=-Wl,--symbol-ordering-file={list}");
    // Names the build does not have (other CPUs' variants, code the
    // optimiser folded away) are expected: do not warn about each one.
    println!("cargo::rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    if glibc_has_relr() {
        println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// aws-lc's calls of the three functions that read its table of every
/// OID go to src/nid.rs instead, and the table, 40 KiB of every
/// connection's memory once relocated, is no longer linked.
fn leave_out_aws_lcs_object_table() {
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    for f in ["OBJ_cbs2nid", "OBJ_sn2nid", "OBJ_ln2nid"] {
        println!("cargo::rustc-link-arg-bins=-Wl,--wrap=aws_lc_0_47_0_{f}");
    }
}

/// A Linux glibc or musl build without crt-static (the flag from
/// .cargo/config.toml) links dynamically. Sanitizer builds (fuzz/) are
/// dynamic on purpose.
fn warn_unless_static() {
    let cfg = |name: &str| env::var(format!("CARGO_CFG_{name}")).unwrap_or_default();
    let libc = cfg("TARGET_ENV");
    if cfg("TARGET_OS") != "linux" || !(libc == "gnu" || libc == "musl") {
        return;
    }
    if cfg("TARGET_FEATURE").split(',').any(|f| f == "crt-static") || !cfg("SANITIZE").is_empty() {
        return;
    }
    println!(
        "cargo::warning=s6-tlsd-io is linked dynamically: the crt-static flag of \
         .cargo/config.toml did not reach this build (RUSTFLAGS replaces it); \
         add -C target-feature=+crt-static to yours"
    );
}

/// The glibc of this machine, which a native static build links in.
fn glibc_has_relr() -> bool {
    if env::var("HOST") != env::var("TARGET") {
        return false;
    }
    let Ok(out) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return false;
    };
    // "glibc 2.36"
    let text = String::from_utf8_lossy(&out.stdout);
    version_at_least(text.split_whitespace().nth(1), (2, 36))
}

/// rustc 1.90 and later link x86_64-unknown-linux-gnu with rust-lld.
fn rustc_links_with_lld() -> bool {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("--version").output() else {
        return false;
    };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let text = String::from_utf8_lossy(&out.stdout);
    version_at_least(text.split_whitespace().nth(1), (1, 90))
}

/// Whether "MAJOR.MINOR[.…]" is at least `want`; unreadable is "no".
fn version_at_least(version: Option<&str>, want: (u32, u32)) -> bool {
    let mut numbers = version
        .unwrap_or("")
        .split('.')
        .map(|n| n.parse::<u32>().ok());
    match (numbers.next().flatten(), numbers.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= want,
        _ => false,
    }
}
