//! src/rsa.rs's claim, that loading an RSA key branches on no secret and
//! indexes memory by none, checked the way BoringSSL and aws-lc check their
//! own code (their `BORINGSSL_CONSTANT_TIME_VALIDATION` build): under
//! valgrind's memcheck, the key's secret bits marked undefined with
//! memcheck's client requests. memcheck then reports every conditional
//! jump or move, memory address and system call argument that depends on
//! them, in our code and in aws-lc's alike, as the build at hand compiled
//! them: so a bump of aws-lc-sys, or of the compiler, checks the claim
//! again.
//!
//! The window: from the `RSAPrivateKey` bytes as the key file gives them to
//! the `RsaKey` that `RsaKey::from_pkcs1` builds, the engine's own code,
//! whose one declassified value is its verdict (`from_pkcs1_declassifying`:
//! whether n = p·q, public once known, as the key loads or is refused).
//! Secret: the contents of d, p, q, dp, dq and q⁻¹ mod p, but for each
//! one's sign bit (DER's form: a key's numbers are positive) and p's and
//! q's sizes in bits (their leading zero bytes, and the top bits of their
//! first other byte down to its highest set one), which rsa.rs, as aws-lc,
//! takes as public. Public: the DER's tags and lengths, the version, n and
//! e. Each key is loaded, and so is a copy whose p is changed, which is
//! refused. The signatures are aws-lc's, out of the window: aws-lc checks
//! them under its own validation build.
//!
//! The negative controls run two variable-time comparisons on the same
//! marked bytes, which memcheck must report: p != q with `!=`, which stops
//! at the first byte that differs, and n = p·q as src/rsa.rs checked it
//! before c82e834, with aws-lc's `BN_mul` (which trims its product to its
//! length) and `BN_cmp`. A harness that stopped marking would otherwise
//! pass silently; the child also reads its marks back
//! (`VALGRIND_GET_VBITS`).
//!
//! Each test runs this binary again under valgrind, its ignored test
//! `under_memcheck` alone, in the mode its environment names. The keys, a
//! 2048-bit and a 4096-bit one, are made by openssl beforehand (generating
//! them under valgrind would take long). Without valgrind, or off x86_64,
//! the tests say so and pass, unless S6_TLSD_IO_REQUIRE_VALGRIND is set;
//! .ci/run sets it, installs valgrind, and runs this file on the release
//! build too, whose machine code is the one that ships.

mod common;

use std::ops::Range;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{openssl, tmpdir, wait_or_kill};
use s6_tlsd_io::asn1::elements;
use s6_tlsd_io::rsa::{Refused, RsaKey};

/// The child's mode, `check` or `leak`; and where its keys are.
const MODE: &str = "S6_TLSD_IO_CONSTANT_TIME_MODE";
const KEYS: &str = "S6_TLSD_IO_CONSTANT_TIME_KEYS";
/// Set: a run that cannot happen (no valgrind) fails instead of passing.
const REQUIRE: &str = "S6_TLSD_IO_REQUIRE_VALGRIND";
const BITS: [u32; 2] = [2048, 4096];
/// What the child writes to stderr as each window opens: memcheck's
/// reports that follow it are about that window.
const WINDOW: &str = "constant_time: window:";
const BROKEN: &str = "the RSA key is inconsistent";

/// The engine's load of each key, and its refusal of the key with another
/// p: memcheck reports nothing that depends on a secret bit.
#[test]
fn the_rsa_key_check_branches_on_no_secret_under_memcheck() {
    let Some(run) = memcheck_run("check") else {
        return;
    };
    assert!(
        run.code == Some(0),
        "memcheck found a branch or an address that depends on the key's \
         secret numbers, or the run failed ({:?}):\n{}",
        run.code,
        run.windows()
    );
    for bits in BITS {
        let line = format!("{bits}-bit key: loaded; its copy with another p: refused\n");
        assert!(run.stdout.contains(&line), "{}", run.stdout);
    }
}

/// The negative controls: the same marks, two variable-time comparisons,
/// and memcheck reports each, traced to the marks.
#[test]
fn memcheck_reports_variable_time_comparisons_of_the_key() {
    let Some(run) = memcheck_run("leak") else {
        return;
    };
    assert!(run.code == Some(0), "({:?}):\n{}", run.code, run.windows());
    for bits in BITS {
        let line = format!("{bits}-bit key: memcheck reported p != q ");
        assert!(run.stdout.contains(&line), "{}", run.stdout);
    }
    // Traced to the marks (--track-origins), not to some stray byte.
    let windows = run.windows();
    for report in [
        "Conditional jump or move depends on uninitialised value(s)",
        "Uninitialised value was created by a client request",
    ] {
        assert!(windows.contains(report), "{windows}");
    }
}

// ------------------------------------------------------------ the parent

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// memcheck's reports from the first window on: before it, glibc's
    /// start in a static binary gives some of its own (see `memcheck_run`).
    fn windows(&self) -> &str {
        self.stderr
            .find(WINDOW)
            .map_or(&self.stderr[..], |at| &self.stderr[at..])
    }
}

/// This binary's `under_memcheck` under valgrind in `mode`; None, with a
/// note, where that cannot run (a failure instead when REQUIRE is set, as
/// .ci/run sets it).
///
/// The verdict is the child's: the count of errors memcheck reported
/// while a window was open (VALGRIND_COUNT_ERRORS), with reporting on in
/// the child's test thread for the windows alone. memcheck's own exit
/// code (`--error-exitcode`) cannot be: the binary is static
/// (.cargo/config.toml links glibc in), so memcheck cannot put its own
/// malloc in, and it reports glibc's reads of the memory glibc takes with
/// brk(2) (which glibc knows the kernel zeroed, memcheck does not): at its
/// start, before main, and later in the main thread, whose thread-local
/// storage is there. The test thread's storage and allocations are in
/// memory mmap(2) gave, zeroed as memcheck knows.
fn memcheck_run(mode: &str) -> Option<Run> {
    let skip = |why: &str| {
        assert!(
            std::env::var_os(REQUIRE).is_none(),
            "{REQUIRE} is set, but {why}"
        );
        eprintln!("{why}: not tested");
    };
    if !cfg!(target_arch = "x86_64") {
        skip("the client requests are written for x86_64 alone");
        return None;
    }
    let found = Command::new("valgrind")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !found.is_ok_and(|s| s.success()) {
        skip("valgrind is not installed (Debian: apt-get install valgrind)");
        return None;
    }
    let dir = tmpdir("constant-time");
    for bits in BITS {
        std::fs::write(dir.join(format!("{bits}.der")), pkcs1(bits, &dir)).unwrap();
    }
    let (out, err) = (dir.join("stdout"), dir.join("stderr"));
    let mut child = Command::new("valgrind")
        .args([
            "--tool=memcheck",
            // Where each reported value came from: the client request.
            "--track-origins=yes",
            // Exact definedness of additions and comparisons, so that a
            // report is a dependence, not an approximation of one.
            "--expensive-definedness-checks=yes",
            // Past 1000 different errors memcheck stops counting: the
            // count is the verdict.
            "--error-limit=no",
            "--leak-check=no",
            "--num-callers=40",
        ])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "under_memcheck",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(MODE, mode)
        .env(KEYS, &dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("run valgrind");
    let status = wait_or_kill(&mut child, Duration::from_secs(300), || {
        format!(
            "valgrind still running after 300 s:\n{}",
            std::fs::read_to_string(&err).unwrap_or_default()
        )
    });
    let run = Run {
        code: status.code(),
        stdout: std::fs::read_to_string(&out).unwrap(),
        stderr: std::fs::read_to_string(&err).unwrap(),
    };
    std::fs::remove_dir_all(&dir).unwrap();
    Some(run)
}

/// A fresh RSA key's `RSAPrivateKey` (openssl writes it as such in DER, or
/// as PKCS#8 around it: either is taken).
fn pkcs1(bits: u32, dir: &Path) -> Vec<u8> {
    let path = dir.join(format!("{bits}.key"));
    let bits = format!("rsa_keygen_bits:{bits}");
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-outform",
        "DER",
        "-pkeyopt",
        &bits,
        "-out",
        &path.display().to_string(),
    ]);
    let der = std::fs::read(&path).unwrap();
    let [(0x30, fields)] = elements(&der).unwrap()[..] else {
        panic!("openssl genpkey: not a SEQUENCE")
    };
    match elements(fields).unwrap()[..] {
        [_, _, (0x04, pkcs1), ..] => pkcs1.to_vec(),
        _ => der,
    }
}

// ------------------------------------------------------------ the child

#[test]
#[ignore = "run under valgrind by the two tests above"]
fn under_memcheck() {
    let Ok(mode) = std::env::var(MODE) else {
        eprintln!("the tests above run this one under valgrind: nothing to do alone");
        return;
    };
    assert!(memcheck::running(), "not running under valgrind");
    memcheck::report(false);
    let dir = std::path::PathBuf::from(std::env::var_os(KEYS).unwrap());
    for bits in BITS {
        let der = std::fs::read(dir.join(format!("{bits}.der"))).unwrap();
        let secrets = secret_ranges(&der);
        match &mode[..] {
            "check" => {
                let (key, reported) = window(&der, &secrets, "load", load);
                assert!(key.is_ok(), "{bits}: refused");
                assert_eq!(reported, 0, "{bits}: memcheck reported the load");
                // The same key with p's low byte moved by 2: refused, by
                // the same code, just as blind to the numbers.
                let mut other = der.clone();
                other[secrets[1].end - 1] ^= 0x02;
                let (refused, reported) = window(&other, &secrets, "load, another p", load);
                assert_eq!(refused.map(|_| ()), Err(Refused::Invalid(BROKEN)));
                assert_eq!(reported, 0, "{bits}: memcheck reported the refusal");
                println!("{bits}-bit key: loaded; its copy with another p: refused");
            }
            "leak" => {
                let [_, p, q, ..] = secrets.clone().map(|r| &der[r]);
                // Two primes must differ: checked with `!=` on the bytes,
                // which stops at the first that differs.
                let (differ, early) = window(&der, &secrets, "p != q", |_| p != q);
                assert!(differ);
                let what = "n = p·q with BN_mul";
                let (equal, mul) = window(&der, &secrets, what, variable_time_check);
                assert!(equal, "{bits}: n != p·q");
                assert!(early > 0 && mul > 0, "{bits}: memcheck reported nothing");
                println!("{bits}-bit key: memcheck reported p != q {early} times, BN_mul {mul}");
            }
            _ => panic!("{MODE}={mode}: unknown mode"),
        }
    }
}

/// memcheck reports nothing of the main thread, which runs the test
/// harness: its errors (glibc's start, as in `memcheck_run`) would be
/// counted as a window's if they came while one is open. Run before main,
/// in the main thread, in the parent and the child alike (a no-op outside
/// valgrind). The child's test thread starts reporting nothing too, and
/// reports within a window alone.
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array"]
static QUIET_MAIN_THREAD: extern "C" fn() = {
    extern "C" fn quiet() {
        memcheck::report(false);
    }
    quiet
};

/// `f(der)` with the secret bytes marked, and memcheck reporting in this
/// thread alone; how many errors memcheck reported meanwhile.
fn window<T>(
    der: &[u8],
    secrets: &[Range<usize>],
    what: &str,
    f: impl FnOnce(&[u8]) -> T,
) -> (T, usize) {
    eprintln!("{WINDOW} {what}");
    mark(der, secrets);
    let before = memcheck::errors();
    memcheck::report(true);
    let out = f(der);
    memcheck::report(false);
    let reported = memcheck::errors() - before;
    memcheck::defined(der);
    (out, reported)
}

/// The engine's load of an RSA key.
fn load(der: &[u8]) -> Result<RsaKey, Refused> {
    RsaKey::from_pkcs1_declassifying(der, memcheck::declassify)
}

/// The fields of an `RSAPrivateKey`: version, n, e, d, p, q, dp, dq, q⁻¹
/// mod p (more for more primes).
fn rsa_private_key(der: &[u8]) -> Vec<(u8, &[u8])> {
    let [(0x30, fields)] = elements(der).unwrap()[..] else {
        panic!("not a SEQUENCE")
    };
    elements(fields).unwrap()
}

/// Where d, p, q, dp, dq and q⁻¹ mod p lie in `der` (their contents).
fn secret_ranges(der: &[u8]) -> [Range<usize>; 6] {
    let ints = rsa_private_key(der);
    assert_eq!(ints.len(), 9, "not a two-prime RSAPrivateKey");
    let ranges: Vec<_> = ints[3..]
        .iter()
        .map(|(_, int)| {
            let start = int.as_ptr() as usize - der.as_ptr() as usize;
            start..start + int.len()
        })
        .collect();
    ranges.try_into().unwrap()
}

/// Each range secret but its public bits (`secret_bits`); then read back, so
/// that a request memcheck ignored fails here.
fn mark(der: &[u8], secrets: &[Range<usize>]) {
    for (i, range) in secrets.iter().enumerate() {
        let bytes = &der[range.clone()];
        // d, p, q, dp, dq, q⁻¹ mod p: p's and q's sizes are public.
        let expected = secret_bits(bytes, i == 1 || i == 2);
        memcheck::undefined(bytes);
        let public = expected
            .iter()
            .position(|&v| v == 0xff)
            .unwrap_or(bytes.len());
        memcheck::set_vbits(&bytes[..public], &expected[..public]);
        assert_eq!(memcheck::vbits(bytes), expected, "the marks did not hold");
    }
}

/// Which bits of an INTEGER's contents are secret, as memcheck writes it
/// (a set bit for each undefined one). Public: the sign bit (DER's form:
/// a key's numbers are positive); with `size`, the number's length in
/// bits too: its leading zero bytes and, of its first other byte, the
/// highest set bit and the zeros above it.
fn secret_bits(int: &[u8], size: bool) -> Vec<u8> {
    let mut bits = vec![0xff; int.len()];
    bits[0] = 0x7f;
    if size {
        let first = int.iter().position(|&b| b != 0).unwrap_or(int.len());
        bits[..first].fill(0);
        if let Some(&b) = int.get(first) {
            bits[first] = (1u8 << (7 - b.leading_zeros())) - 1;
        }
    }
    bits
}

/// The check src/rsa.rs made before c82e834, in variable time: p·q with
/// aws-lc's `BN_mul`, which trims its product to its length, compared with
/// n by `BN_cmp`. Its verdict is declassified as rsa.rs's is, so that
/// what memcheck reports is the arithmetic.
fn variable_time_check(der: &[u8]) -> bool {
    use aws_lc_sys as sys;
    let ints = rsa_private_key(der);
    // SAFETY: each BN_bin2bn reads the slice it is given and returns an
    // owned BIGNUM, freed below with the context; BN_mul and BN_cmp take
    // valid BIGNUMs and a context; null results stop the test first.
    unsafe {
        let bn = |bytes: &[u8]| sys::BN_bin2bn(bytes.as_ptr(), bytes.len(), std::ptr::null_mut());
        let (n, p, q, r) = (bn(ints[1].1), bn(ints[4].1), bn(ints[5].1), sys::BN_new());
        let ctx = sys::BN_CTX_new();
        assert!(![n, p, q, r].contains(&std::ptr::null_mut()) && !ctx.is_null());
        assert_eq!(sys::BN_mul(r, p, q, ctx), 1);
        let equal = sys::BN_cmp(r, n) == 0;
        memcheck::declassify(&equal);
        let equal = std::ptr::read_volatile(&equal);
        for b in [n, p, q, r] {
            sys::BN_clear_free(b);
        }
        sys::BN_CTX_free(ctx);
        equal
    }
}

/// memcheck's client requests (valgrind.h, memcheck.h): a magic sequence
/// of instructions that does nothing on a CPU, and that valgrind's CPU
/// reads as a request. Written for x86_64 alone; elsewhere they answer as
/// outside valgrind, and the tests above skip before the child runs.
mod memcheck {
    /// memcheck.h's requests: VG_USERREQ_TOOL_BASE('M', 'C') onwards, in
    /// the order of its enum (an ABI: valgrind never reorders it).
    const BASE: usize = (b'M' as usize) << 24 | (b'C' as usize) << 16;
    const MAKE_MEM_UNDEFINED: usize = BASE + 1;
    const MAKE_MEM_DEFINED: usize = BASE + 2;
    const GET_VBITS: usize = BASE + 8;
    const SET_VBITS: usize = BASE + 9;
    /// valgrind.h's core requests.
    const RUNNING_ON_VALGRIND: usize = 0x1001;
    const COUNT_ERRORS: usize = 0x1201;
    const CHANGE_ERR_DISABLEMENT: usize = 0x1801;

    /// valgrind.h's VALGRIND_DO_CLIENT_REQUEST_EXPR with a default of 0:
    /// 0 outside valgrind, the request's answer under it.
    #[cfg(target_arch = "x86_64")]
    fn request(request: usize, args: [usize; 5]) -> usize {
        let block = [request, args[0], args[1], args[2], args[3], args[4]];
        let answer;
        // SAFETY: the four rotations of rdi add up to 128 bits, leaving it
        // as it was, and `xchg rbx, rbx` changes nothing: on a CPU the
        // sequence only clobbers flags. Under valgrind it is the request
        // whose six words rax points to (`block`, alive and read-only to
        // valgrind); the answer is in rdx. The requests made here change
        // only memcheck's view of memory, or write the buffer GET_VBITS
        // is given (the asm may write memory).
        unsafe {
            std::arch::asm!(
                "rol rdi, 3",
                "rol rdi, 13",
                "rol rdi, 61",
                "rol rdi, 51",
                "xchg rbx, rbx",
                inout("rdx") 0usize => answer,
                in("rax") block.as_ptr(),
                options(nostack),
            );
        }
        answer
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn request(_request: usize, _args: [usize; 5]) -> usize {
        0
    }

    pub fn running() -> bool {
        request(RUNNING_ON_VALGRIND, [0; 5]) > 0
    }

    /// VALGRIND_COUNT_ERRORS: how many memcheck reported so far.
    pub fn errors() -> usize {
        request(COUNT_ERRORS, [0; 5])
    }

    /// VALGRIND_ENABLE_ERROR_REPORTING, VALGRIND_DISABLE_ERROR_REPORTING
    /// (for this thread).
    pub fn report(on: bool) {
        let change = if on { usize::MAX } else { 1 };
        request(CHANGE_ERR_DISABLEMENT, [change, 0, 0, 0, 0]);
    }

    /// VALGRIND_MAKE_MEM_UNDEFINED: secret from here on.
    pub fn undefined(bytes: &[u8]) {
        request(
            MAKE_MEM_UNDEFINED,
            [bytes.as_ptr() as usize, bytes.len(), 0, 0, 0],
        );
    }

    /// VALGRIND_MAKE_MEM_DEFINED: public from here on.
    pub fn defined(bytes: &[u8]) {
        request(
            MAKE_MEM_DEFINED,
            [bytes.as_ptr() as usize, bytes.len(), 0, 0, 0],
        );
    }

    /// rsa.rs's `declassify` hook: the verdict is public.
    pub fn declassify(verdict: &bool) {
        request(
            MAKE_MEM_DEFINED,
            [verdict as *const bool as usize, 1, 0, 0, 0],
        );
    }

    /// VALGRIND_SET_VBITS: each bit of `vbits` set makes that bit of
    /// `bytes` undefined, clear makes it defined.
    pub fn set_vbits(bytes: &[u8], vbits: &[u8]) {
        assert_eq!(bytes.len(), vbits.len());
        let args = [
            bytes.as_ptr() as usize,
            vbits.as_ptr() as usize,
            bytes.len(),
            0,
            0,
        ];
        assert_eq!(request(SET_VBITS, args), 1, "VALGRIND_SET_VBITS failed");
    }

    /// VALGRIND_GET_VBITS: memcheck's view of `bytes`, a set bit for each
    /// undefined one.
    pub fn vbits(bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; bytes.len()];
        let args = [
            bytes.as_ptr() as usize,
            out.as_mut_ptr() as usize,
            bytes.len(),
            0,
            0,
        ];
        assert_eq!(request(GET_VBITS, args), 1, "VALGRIND_GET_VBITS failed");
        out
    }
}
