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
//! Not every linker takes both (rust-lld does; GNU ld and mold 1.x take no
//! ordering file), and which one rustc will run depends on the target, the
//! rustc, RUSTFLAGS, `-C linker=` and the linker-features: so build.rs does
//! not guess. It links an empty program with the same rustc, target and
//! flags, once with each option, and passes on what that linker took.
//! Without them the binary works the same, with more of it resident
//! (README.md, "Build and install").
//!
//! A release build's executable is linked without its symbol table (see
//! `strip_what_no_user_needs`).
//!
//! It also has aws-lc's OID lookups answered by src/nid.rs (see
//! `leave_out_aws_lcs_object_table`), and says so when the static-linking
//! flag of .cargo/config.toml did not arrive: a RUSTFLAGS variable replaces
//! it, and the engine then works but costs each connection the dynamic
//! loader.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What link/hot-symbols.txt writes in place of aws-lc's symbol prefix,
/// which carries its version (`aws_lc_0_47_0_`): the names then survive an
/// aws-lc-sys release, and build.rs puts the prefix of the build at hand
/// back (bench/hot_symbols.py writes the same marker).
const PREFIX_MARK: &str = "{aws_lc}_";

fn main() {
    let list = format!("{}/link/hot-symbols.txt", env!("CARGO_MANIFEST_DIR"));
    println!("cargo::rerun-if-changed={list}");
    println!("cargo::rerun-if-changed=build.rs");
    let target = env::var("TARGET").unwrap_or_default();
    let linker_var = format!(
        "CARGO_TARGET_{}_LINKER",
        target.to_uppercase().replace(['-', '.'], "_")
    );
    for var in [&linker_var[..], "RUSTC_WRAPPER", "RUSTC_WORKSPACE_WRAPPER"] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    warn_unless_static();
    let prefix = aws_lc_prefix();
    println!("cargo::rustc-env=S6_TLSD_IO_AWS_LC_PREFIX={prefix}");
    leave_out_aws_lcs_object_table(&prefix);
    lay_out_what_a_connection_touches(&list, &prefix);
    strip_what_no_user_needs();
}

/// Set to anything but 0 or the empty string, the release build keeps its
/// symbol table (bench/hot-symbols, which traces and checks the engine by
/// its symbols; a distribution that strips into a debug package itself).
const KEEP_SYMBOLS: &str = "S6_TLSD_IO_KEEP_SYMBOLS";

/// The symbol table of a release build is 0.4 MB of the 4.9 MB file that
/// no user runs (it is not loaded; the order of the functions, which
/// link/hot-symbols.txt names, is the linker's business, done before it
/// strips): the linker leaves it out (`--strip-all`). Not Cargo's `strip`:
/// a profile's settings are part of every crate's `-C metadata`, which
/// Rust's symbol names carry a hash of, so a stripped profile and the
/// unstripped one that bench/hot-symbols traces would name the engine's
/// Rust functions differently, and the list would order none of them.
/// This variable only relinks the engine; its names stay the same.
fn strip_what_no_user_needs() {
    println!("cargo::rerun-if-env-changed={KEEP_SYMBOLS}");
    let keep = env::var(KEEP_SYMBOLS).is_ok_and(|v| !v.is_empty() && v != "0");
    // PROFILE is "release" for the release profile and those inheriting
    // from it; tests and debugging want the debug build's symbols.
    if keep || env::var("PROFILE").as_deref() != Ok("release") {
        return;
    }
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let strip = "-Wl,--strip-all";
    if probe_link(&out, &[strip]).is_some() {
        println!("cargo::rustc-link-arg-bins={strip}");
    }
}

/// aws-lc-sys names every C symbol `<links>_NAME`, its `links` key being
/// `aws_lc_0_47_0`; its build script exports the library's name,
/// `<links>_crypto`, which reaches this one as DEP_<LINKS>_LIBCRYPTO. The
/// prefix, `aws_lc_0_47_0_`; empty when aws-lc was built unprefixed.
///
/// aws-lc-rs passes on the same metadata of the aws-lc it links
/// (DEP_AWS_LC_RS_<version>_SYS_LIBCRYPTO): if that is another aws-lc
/// than the one src/rsa.rs and src/nid.rs use, two would be linked in,
/// and the build stops here.
fn aws_lc_prefix() -> String {
    let ours = aws_lc_metadata("LIBCRYPTO", false);
    let [name] = &ours[..] else {
        panic!(
            "build.rs: expected one DEP_AWS_LC_*_LIBCRYPTO from the aws-lc-sys build, \
             found {ours:?}: aws-lc-sys no longer says its symbol prefix that way"
        );
    };
    let theirs = aws_lc_metadata("LIBCRYPTO", true);
    assert!(
        theirs.iter().all(|t| t == name),
        "build.rs: two aws-lc builds in the graph: aws-lc-rs links {theirs:?}, this \
         crate's aws-lc-sys {name}; `cargo update -p aws-lc-sys` (or the version \
         aws-lc-rs requires, with --precise) brings them together (cargo tree -d)"
    );
    match name.strip_suffix("crypto") {
        Some(prefix) => prefix.to_string(),
        None => panic!("build.rs: aws-lc-sys' libcrypto is {name:?}, not <prefix>_crypto"),
    }
}

/// The values of DEP_AWS_LC_<version>_<KEY> (aws-lc-sys'), or with
/// `via_aws_lc_rs`, of aws-lc-rs' DEP_AWS_LC_RS_<version>_SYS_<KEY>.
fn aws_lc_metadata(key: &str, via_aws_lc_rs: bool) -> Vec<String> {
    let (start, end) = match via_aws_lc_rs {
        true => ("DEP_AWS_LC_RS_", format!("_SYS_{key}")),
        false => ("DEP_AWS_LC_", format!("_{key}")),
    };
    env::vars()
        .filter(|(name, _)| {
            name.strip_prefix(start).is_some_and(|rest| {
                rest.starts_with(|c: char| c.is_ascii_digit()) && rest.ends_with(&end)
            })
        })
        .map(|(_, value)| value)
        .collect()
}

/// aws-lc's calls of the three functions that read its table of every
/// OID go to src/nid.rs instead (`--wrap`, which GNU ld, lld and mold all
/// take), and the table, 40 KiB of every connection's memory once
/// relocated, is no longer linked.
///
/// Loud when an aws-lc release breaks that: the three must still be in
/// aws-lc's library, or the wrap would silently match nothing. And the
/// functions of obj.c that read the table some other way are wrapped to
/// nothing at all: if a new aws-lc links a call of one of them into the
/// engine, the link fails with "undefined symbol: __wrap_<prefix>OBJ_…".
/// Then the table would be back: read src/nid.rs again, and the callers.
fn leave_out_aws_lcs_object_table(prefix: &str) {
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    let symbol = |f: &str| format!("{prefix}{f}");
    const ANSWERED: [&str; 3] = ["OBJ_cbs2nid", "OBJ_sn2nid", "OBJ_ln2nid"];
    const REFUSED: [&str; 8] = [
        "OBJ_obj2nid",
        "OBJ_txt2nid",
        "OBJ_nid2cbb",
        "OBJ_nid2obj",
        "OBJ_nid2sn",
        "OBJ_nid2ln",
        "OBJ_txt2obj",
        "OBJ_obj2txt",
    ];
    if let Some(defined) = library_symbols() {
        let missing: Vec<String> = ANSWERED
            .iter()
            .map(|f| symbol(f))
            .filter(|s| !defined.contains(s))
            .collect();
        assert!(
            missing.is_empty(),
            "build.rs: aws-lc's library no longer defines {missing:?}: src/nid.rs \
             answers for functions this aws-lc does not have, and its OID table \
             would come back; read src/nid.rs and its callers again"
        );
    }
    for f in ANSWERED.iter().chain(&REFUSED) {
        println!("cargo::rustc-link-arg-bins=-Wl,--wrap={}", symbol(f));
    }
}

/// The global symbols aws-lc's static library defines, from its archive's
/// symbol index; None when aws-lc-sys did not say where the library is (a
/// system aws-lc) or it is not a System V / GNU archive.
fn library_symbols() -> Option<std::collections::HashSet<String>> {
    let path = aws_lc_metadata("LIBCRYPTO_PATH", false).pop()?;
    let archive = fs::read(path).ok()?;
    // "!<arch>\n", then the first member's 60-byte header: name "/" for the
    // index, its size at 48..58; the index is a big-endian count, that many
    // 4-byte offsets, then the names, each NUL-terminated.
    let header = archive.get(8..68)?;
    if !archive.starts_with(b"!<arch>\n") || !header.starts_with(b"/ ") {
        return None;
    }
    let size: usize = std::str::from_utf8(&header[48..58])
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let index = archive.get(68..68 + size)?;
    let count = u32::from_be_bytes(index.get(..4)?.try_into().ok()?) as usize;
    let names = index.get(4 + 4 * count..)?;
    Some(
        names
            .split(|&b| b == 0)
            .take(count)
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect(),
    )
}

/// The symbol ordering file and packed relocations, each where the linker
/// in use takes it.
fn lay_out_what_a_connection_touches(list: &str, prefix: &str) {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let ordered = out.join("hot-symbols.txt");
    let text = fs::read_to_string(list).unwrap_or_else(|e| panic!("build.rs: {list}: {e}"));
    fs::write(&ordered, text.replace(PREFIX_MARK, prefix)).expect("write OUT_DIR/hot-symbols.txt");
    let ordering = format!("-Wl,--symbol-ordering-file={}", ordered.display());
    // Names the build does not have (other CPUs' variants, code the
    // optimiser folded away) are expected: lld is told not to warn about
    // each one; a linker without that option may take the file alone.
    let quiet = [ordering.as_str(), "-Wl,--no-warn-symbol-ordering"];
    // Nothing to ask if even an empty program does not link (a cross
    // target whose linker is not installed, for cargo check).
    let linker = probe_link(&out, &[]).map(|binary| linker_name(&binary));
    let order = linker.and_then(|_| {
        [&quiet[..], &quiet[..1]]
            .into_iter()
            .find(|args| probe_link(&out, args).is_some())
    });
    let relr = linker.is_some()
        && glibc_has_relr()
        && probe_link(&out, &["-Wl,-z,pack-relative-relocs"])
            // GNU ld only warns about a -z it does not know.
            .is_some_and(|binary| contains(&binary, b".relr.dyn"));
    let linker = linker.unwrap_or("none");
    for arg in order.unwrap_or(&[]) {
        println!("cargo::rustc-link-arg-bins={arg}");
    }
    if relr {
        println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    // For tests/build_env.rs, which checks the layout only where the
    // linker took it, and that the ones known to take it did.
    println!("cargo::rustc-env=S6_TLSD_IO_LINKER={linker}");
    println!(
        "cargo::rustc-env=S6_TLSD_IO_SYMBOL_ORDERING={}",
        order.is_some()
    );
    println!("cargo::rustc-env=S6_TLSD_IO_RELR={relr}");
    let linux = env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    if order.is_none() && linker != "none" && linux {
        println!(
            "cargo::warning=the linker ({linker}) takes no --symbol-ordering-file: \
             each connection keeps more of the engine's code resident (README.md, \
             \"Build and install\")"
        );
    }
}

/// Links an empty program as rustc will link the engine (the same rustc,
/// target, flags and linker) with `link_args` added; the executable, if
/// the link succeeded.
fn probe_link(out: &Path, link_args: &[&str]) -> Option<Vec<u8>> {
    let dir = out.join("probe");
    fs::create_dir_all(&dir).ok()?;
    let source = dir.join("probe.rs");
    let binary = dir.join("probe");
    fs::write(&source, "fn main() {}\n").ok()?;
    let _ = fs::remove_file(&binary);
    // rustc as cargo runs it for this crate: through its wrappers, if any.
    let mut chain: Vec<std::ffi::OsString> = ["RUSTC_WRAPPER", "RUSTC_WORKSPACE_WRAPPER"]
        .into_iter()
        .filter_map(env::var_os)
        .filter(|w| !w.is_empty())
        .collect();
    chain.push(env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()));
    let mut rustc = Command::new(&chain[0]);
    rustc.args(&chain[1..]);
    rustc.arg("--target").arg(env::var("TARGET").ok()?);
    rustc.arg("--crate-type=bin").arg("-o").arg(&binary);
    // target.<triple>.linker, which cargo passes to rustc as -C linker=.
    if let Some(linker) = env::var_os("RUSTC_LINKER") {
        rustc.arg("-C").arg({
            let mut arg = std::ffi::OsString::from("linker=");
            arg.push(linker);
            arg
        });
    }
    // RUSTFLAGS, or the rustflags of .cargo/config.toml (crt-static,
    // -C linker-features, -C link-arg=-fuse-ld=…), as rustc gets them.
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    rustc.args(flags.split('\x1f').filter(|f| !f.is_empty()));
    for arg in link_args {
        rustc.arg(format!("-Clink-arg={arg}"));
    }
    rustc
        .arg(&source)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match rustc.status() {
        Ok(status) if status.success() => fs::read(&binary).ok(),
        _ => None,
    }
}

/// Which linker made `binary`, from what it wrote in .comment (GNU ld
/// writes nothing there).
fn linker_name(binary: &[u8]) -> &'static str {
    if contains(binary, b"Linker: LLD") {
        "lld"
    } else if contains(binary, b"mold ") {
        "mold"
    } else {
        "GNU ld or another"
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
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
    let mut numbers = text
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split('.')
        .map(|n| n.parse::<u32>().ok());
    match (numbers.next().flatten(), numbers.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= (2, 36),
        _ => false,
    }
}
