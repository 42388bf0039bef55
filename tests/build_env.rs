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

/// Static libc (crt-static, from `.cargo/config.toml`): about 1 ms and
/// 1.4 MB per connection less than with glibc's dynamic loader. Read from
/// the ELF program headers, whatever the architecture: a statically linked
/// executable names no interpreter (PT_INTERP) and needs no shared library
/// (DT_NEEDED); `file` calls it "statically linked" or "static-pie linked".
#[test]
fn binary_is_statically_linked() {
    let binary = std::fs::read(common::BIN).expect("read the built binary");
    let elf = Elf::new(&binary).expect("the binary is an ELF executable");
    let mut dynamic = None;
    for ph in 0..elf.u(0x38, 0x2c, 2) {
        let at = elf.u(0x20, 0x1c, elf.word()) + ph * elf.u(0x36, 0x2a, 2);
        match elf.read(at, 4) {
            PT_INTERP => panic!(
                "the binary asks for a dynamic loader: crt-static is not in \
                 effect (a RUSTFLAGS variable replaces .cargo/config.toml's)"
            ),
            PT_DYNAMIC => {
                let (offset, size) = if elf.wide {
                    (elf.read(at + 8, 8), elf.read(at + 32, 8))
                } else {
                    (elf.read(at + 4, 4), elf.read(at + 16, 4))
                };
                dynamic = Some((offset, size));
            }
            _ => {}
        }
    }
    // A static PIE keeps a dynamic section for its own relocation; it must
    // not ask for libraries.
    if let Some((offset, size)) = dynamic {
        let entry = 2 * elf.word();
        for at in (offset..offset + size).step_by(entry as usize) {
            match elf.read(at, elf.word()) {
                DT_NULL => break,
                DT_NEEDED => panic!("the binary needs a shared library: it is not static"),
                _ => {}
            }
        }
    }
}

const PT_DYNAMIC: u64 = 2;
const PT_INTERP: u64 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;

/// Just enough of an ELF file to walk its program headers, 32 or 64 bits,
/// either byte order (the build may be for another architecture than
/// x86_64).
struct Elf<'a> {
    bytes: &'a [u8],
    wide: bool,
    big: bool,
}

impl<'a> Elf<'a> {
    fn new(bytes: &'a [u8]) -> Option<Self> {
        if bytes.len() < 0x40 || &bytes[..4] != b"\x7fELF" {
            return None;
        }
        Some(Elf {
            bytes,
            wide: bytes[4] == 2,
            big: bytes[5] == 2,
        })
    }

    /// The size of an address: 8 or 4 bytes.
    fn word(&self) -> u64 {
        if self.wide {
            8
        } else {
            4
        }
    }

    /// The field at `wide` (64-bit layout) or `narrow` (32-bit), `len` bytes.
    fn u(&self, wide: u64, narrow: u64, len: u64) -> u64 {
        self.read(if self.wide { wide } else { narrow }, len)
    }

    fn read(&self, at: u64, len: u64) -> u64 {
        let at = at as usize;
        let field = self
            .bytes
            .get(at..at + len as usize)
            .expect("an ELF field inside the file");
        let fold = |n: u64, b: &u8| n << 8 | u64::from(*b);
        if self.big {
            field.iter().fold(0, fold)
        } else {
            field.iter().rev().fold(0, fold)
        }
    }
}

/// No architecture is pinned: `cargo build` and `cargo install --path .`
/// build for the machine they run on, into `target/release/`. A name such
/// as `x86_64` belongs only in a `[target.…]` section, where it applies to
/// that target alone (README.md, "Build and install"); a `[build] target`
/// would send every build on other machines to cross-compile for it.
#[test]
fn cargo_config_pins_no_architecture() {
    const ARCHES: [&str; 18] = [
        "x86_64",
        "x86",
        "i386",
        "i586",
        "i686",
        "aarch64",
        "arm",
        "armv5te",
        "armv6",
        "armv7",
        "thumbv7neon",
        "riscv64gc",
        "powerpc64",
        "powerpc64le",
        "s390x",
        "mips",
        "loongarch64",
        "amd64",
    ];
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/.cargo/config.toml");
    let config = std::fs::read_to_string(path).expect("read .cargo/config.toml");
    let mut section = String::new();
    for (n, line) in config.lines().enumerate() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line.to_string();
        }
        if section.starts_with("[target.") {
            continue;
        }
        let key = line.split('=').next().unwrap_or("").trim();
        assert!(
            !(section == "[build]" && key == "target"),
            ".cargo/config.toml:{}: a [build] target pins one architecture",
            n + 1
        );
        for word in line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-')) {
            let first = word.split('-').next().unwrap_or("");
            assert!(
                !ARCHES.contains(&first) && !word.contains("target_arch"),
                ".cargo/config.toml:{}: {word:?} names an architecture outside a \
                 [target.…] section: {line}",
                n + 1
            );
        }
    }
}

/// aws-lc's AVX-512 AES-GCM (VAES and VPCLMULQDQ on 512-bit registers) is
/// built in: on the CPUs that run it (Intel since Ice Lake, AMD since Zen 4)
/// it is aws-lc's fastest AES-GCM. Its code pages are shared between
/// connections; an earlier build left it out (AWS_LC_SYS_CFLAGS=
/// -DMY_ASSEMBLER_IS_TOO_OLD_FOR_512AVX) to lower each one's peak RSS, and
/// paid for it in CPU per byte (bench/README.md, "AVX-512 AES-GCM").
#[test]
#[cfg(target_arch = "x86_64")]
fn aws_lc_is_built_with_avx512_aes_gcm() {
    for function in [
        b"aes_gcm_encrypt_avx512".as_slice(),
        b"aes_gcm_decrypt_avx512",
    ] {
        assert!(
            binary_contains(function),
            "the binary lacks aws-lc's {}: AWS_LC_SYS_CFLAGS or an old assembler \
             left the AVX-512 AES-GCM out of the aws-lc-sys build",
            String::from_utf8_lossy(function)
        );
    }
}

/// build.rs packs relative relocations (RELR) when the glibc linked in
/// knows them (2.36 and later) and the linker takes `-z pack-relative-relocs`
/// (it links an empty program to find out): the static PIE then relocates
/// itself from 1.4 KB of RELR instead of 150 KB of RELA entries kept
/// resident. rust-lld and mold take it, and so does GNU ld since 2.38.
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
    if env!("S6_TLSD_IO_RELR") != "true" {
        assert!(
            !["lld", "mold"].contains(&LINKER),
            "build.rs found that {LINKER} takes no -z pack-relative-relocs, which it does"
        );
        eprintln!("skipped: the linker ({LINKER}) takes no -z pack-relative-relocs");
        return;
    }
    assert!(
        binary_contains(b".relr.dyn"),
        "no .relr.dyn section: build.rs did not pass -z pack-relative-relocs"
    );
}

/// The linker build.rs found rustc using, by what it wrote in the binary:
/// "lld", "mold" or "GNU ld or another".
const LINKER: &str = env!("S6_TLSD_IO_LINKER");

/// Whether build.rs gave the linker link/hot-symbols.txt. Where it did not
/// (GNU ld, mold 1.x: no --symbol-ordering-file), the layout tests have
/// nothing to check; rust-lld takes the file, so with it they must.
fn symbol_ordering_in_effect() -> bool {
    if env!("S6_TLSD_IO_SYMBOL_ORDERING") == "true" {
        return true;
    }
    assert!(
        LINKER != "lld",
        "build.rs found that lld takes no --symbol-ordering-file, which it does"
    );
    eprintln!("skipped: the linker ({LINKER}) takes no --symbol-ordering-file");
    false
}

/// link/hot-symbols.txt as build.rs gave it to the linker: with the aws-lc
/// prefix of this build in place of "{aws_lc}_".
fn hot_symbols() -> String {
    std::fs::read_to_string(concat!(env!("OUT_DIR"), "/hot-symbols.txt"))
        .expect("read build.rs's hot-symbols.txt")
}

/// build.rs hands link/hot-symbols.txt to the linker, which puts those
/// functions first in .text: most of them must come before the rest. (The
/// debug build has other Rust symbol names, so this looks at the ones it
/// has; .ci/run reports how many of the release build's names it still
/// has with bench/hot-symbols --check.)
#[test]
fn the_code_a_connection_runs_is_laid_out_first() {
    if !symbol_ordering_in_effect() {
        return;
    }
    let list = hot_symbols();
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

/// aws-lc's table of every OID it knows (`kObjects`) is 40 KB of pointers,
/// which the static PIE relocates at start-up into 40 KiB of each process'
/// own memory. build.rs has the linker send the three lookups that read it
/// to src/nid.rs, so the table is not linked at all. The two name lookups
/// answer nothing there, which is right only while no caller of
/// `EVP_PKEY_CTX_ctrl_str` (their one user's one way in) is linked.
#[test]
fn aws_lcs_object_table_is_left_out() {
    let nm = std::process::Command::new("nm")
        .args(["--defined-only", common::BIN])
        .output()
        .expect("run nm");
    let symbols = String::from_utf8_lossy(&nm.stdout);
    let has = |name: &str| symbols.lines().any(|l| l.ends_with(&format!(" {name}")));
    // aws-lc's symbol prefix, with its version, as build.rs read it from
    // the aws-lc-sys build.
    let prefix = env!("S6_TLSD_IO_AWS_LC_PREFIX");
    assert!(
        has(&format!("__wrap_{prefix}OBJ_cbs2nid")),
        "src/nid.rs's lookup is not linked"
    );
    for gone in [
        "kObjects".to_string(),
        format!("{prefix}OBJ_obj2nid"),
        format!("{prefix}EVP_PKEY_CTX_ctrl_str"),
    ] {
        assert!(
            !has(&gone),
            "{gone} is in the binary: aws-lc's table is back; check the callers \
             of the wrapped functions again (src/nid.rs says which)"
        );
    }
}

/// One aws-lc in the dependency graph: src/rsa.rs and src/nid.rs use
/// aws-lc-sys directly, rustls reaches it through aws-lc-rs, and two
/// versions would link two copies of aws-lc (build.rs also refuses them).
#[test]
fn one_aws_lc_in_the_dependency_graph() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "tree",
            "--duplicates",
            "--locked",
            "--edges",
            "normal,build",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree -d --locked failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        !tree.lines().any(|l| l.starts_with("aws-lc-sys ")),
        "two aws-lc-sys versions in the graph (cargo tree -d):\n{tree}"
    );
}

/// The same list ends with the static data a connection writes, which the
/// linker then puts together at the start of .data and .bss: scattered,
/// the written bytes of .bss took 6 pages of each connection's memory;
/// together, 2. The C names (glibc's, aws-lc's) are the same in the debug
/// build: their addresses, less the last and largest (glibc's 16 KiB table
/// of thread keys), must fit in a few pages.
#[test]
fn the_data_a_connection_writes_is_laid_out_together() {
    if !symbol_ordering_in_effect() {
        return;
    }
    let list = hot_symbols();
    let listed: std::collections::HashSet<&str> = list.lines().collect();
    let nm = std::process::Command::new("nm")
        .args(["-S", "--defined-only", common::BIN])
        .output()
        .expect("run nm");
    let text = String::from_utf8_lossy(&nm.stdout);
    let mut bss: Vec<(u64, u64, &str)> = text
        .lines()
        .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            [at, size, "b" | "B", name] if listed.contains(name) && !name.starts_with("_R") => {
                Some((
                    u64::from_str_radix(at, 16).ok()?,
                    u64::from_str_radix(size, 16).ok()?,
                    name,
                ))
            }
            _ => None,
        })
        .collect();
    bss.sort();
    assert!(
        bss.len() > 50,
        "only {} listed .bss names in the binary",
        bss.len()
    );
    let (first, last) = (bss[0], bss[bss.len() - 2]);
    let span = last.0 + last.1 - first.0;
    assert!(
        span <= 12 * 1024,
        "the written .bss spans {span} bytes, {} to {}: the symbol ordering file \
         is not in effect for data",
        first.2,
        last.2
    );
}

/// Every connection is a process that loads its key again, so whatever
/// arithmetic loading does on the key, a local user can have it done as
/// often as they like and average its traces (shared code pages, SMT
/// ports). None of aws-lc's variable-time bignum functions is called from
/// src/ (rsa.rs checks n = p·q with a Montgomery multiplication instead):
/// BN_mul trims its product to its length, BN_mod_mul and the others
/// divide with BN_div, which says of itself that it is not constant-time.
/// aws-lc's BN_cmp is constant-time for non-negative numbers, but it is
/// listed too: the one reason to call it rather than BN_ucmp is a sign,
/// which no key has, and one list is easier to trust than a judgement of
/// each call. Comments are not read, only code.
#[test]
fn rsa_code_has_no_variable_time_bignum_calls() {
    const VARIABLE_TIME: [&str; 26] = [
        "BN_mod_mul",
        "BN_mul",
        "BN_mul_word",
        "BN_div",
        "BN_div_word",
        "BN_mod_word",
        "BN_nnmod",
        "BN_mod",
        "BN_mod_add",
        "BN_mod_sub",
        "BN_mod_lshift",
        "BN_mod_lshift1",
        "BN_mod_sqr",
        "BN_mod_sqrt",
        "BN_mod_inverse",
        "BN_mod_inverse_odd",
        "BN_gcd",
        "BN_exp",
        "BN_mod_exp",
        "BN_mod_exp_mont",
        "BN_mod_exp_mont_word",
        "BN_mod_exp2_mont",
        "BN_sqr",
        "BN_cmp",
        "BN_cmp_word",
        "BN_is_prime_ex",
    ];
    let mut dirs = vec![std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src"
    ))];
    let mut read = 0;
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src/") {
            let path = entry.expect("read src/").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let source = std::fs::read_to_string(&path).expect("read a source file");
            read += 1;
            for (n, line) in source.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for word in code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                    assert!(
                        !VARIABLE_TIME.contains(&word),
                        "{}:{}: calls aws-lc's variable-time {word}: {line}",
                        path.display(),
                        n + 1
                    );
                }
            }
        }
    }
    // The walk found the sources, rsa.rs among them.
    assert!(read > 20, "only {read} source files read");
}

/// The README names a minimum Rust, Cargo.toml's `rust-version`; every
/// crate of Cargo.lock that this machine's build uses (dev-dependencies
/// too: `cargo test` must build with it as well) must build with it, as
/// its own `rust-version` says. Only one toolchain can be had here, so the
/// claim is checked from the crates' word; clippy's `incompatible_msrv`
/// (on by default, `-D warnings` in .ci/run) catches our own use of a
/// newer std API. `resolver = "3"` makes `cargo update` keep to it.
#[test]
fn every_locked_crate_builds_with_our_minimum_rust() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let rustc = std::process::Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("run rustc -vV");
    let rustc = String::from_utf8_lossy(&rustc.stdout).into_owned();
    let host = rustc
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV names its host");
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--locked", "--format-version", "1"])
        .args(["--filter-platform", host])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata --locked failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // No JSON parser among the dependencies: python3 (the tests' stand-ins
    // are written in it) reads the metadata.
    let mut python = std::process::Command::new("python3")
        .arg("-c")
        .arg(concat!(
            "import json, sys\n",
            "for p in json.load(sys.stdin)['packages']:\n",
            "    print(p['name'], p['version'], p['rust_version'] or '-')\n",
        ))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run python3");
    let mut stdin = python.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, &out.stdout).unwrap();
    drop(stdin);
    let listed = python.wait_with_output().expect("python3");
    assert!(
        listed.status.success(),
        "python3 could not read the metadata"
    );
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    let version = |v: &str| -> Vec<u32> { v.split('.').map(|n| n.parse().unwrap_or(0)).collect() };
    let ours = listed
        .lines()
        .find_map(|l| l.strip_prefix(concat!(env!("CARGO_PKG_NAME"), " ")))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .expect("this crate in cargo metadata");
    assert_eq!(ours, env!("CARGO_PKG_RUST_VERSION"));
    let newer: Vec<&str> = listed
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(2)
                .is_some_and(|v| v != "-" && version(v) > version(ours))
        })
        .collect();
    assert!(
        listed.lines().count() > 20 && newer.is_empty(),
        "crates of Cargo.lock that need a newer Rust than {ours} (`cargo update -p NAME` \
with resolver 3 picks an older release, or rust-version goes up, README too):\n{}",
        newer.join("\n")
    );
}
