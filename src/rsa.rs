//! RSA signing keys built on aws-lc directly, not through the provider's
//! key loader.
//!
//! Every connection is a process, so whatever a key costs to load is paid
//! by every connection. The provider's loader (`RSA_parse_private_key`)
//! runs aws-lc's `RSA_check_key`, which proves the key consistent with
//! constant-time division: 2.5 M instructions, 0.13-0.4 ms, 7% to a
//! fifth of an RSA connection's CPU (bench/README.md, "RSA key check").
//!
//! Here one relation alone is checked as the key loads, n = p·q, beside
//! the size and the exponent. Each signature proves the rest: aws-lc
//! checks every one with the public exponent before it returns it
//! (`rsa_default_private_transform`), so no faulty signature, which would
//! give the key away (Boneh, DeMillo and Lipton), can ever leave. A key
//! whose CRT exponents or coefficient are wrong fails its first signature,
//! at its first handshake; the key holder then answers with the key file's
//! error (keys.rs, `Loaded::sign`), and the engine exits with it (96),
//! naming KEYFILE. d is
//! used only when p and q differ in size by a 64-bit word or more: aws-lc's
//! CRT code wants primes of one width, and signs otherwise with d modulo n
//! (`rsa_default_private_transform`). A wrong d then fails the first
//! signature as a wrong CRT number does; with primes of one width (any
//! usual generator's: half of n's bits each), it is never used, nor
//! noticed.
//!
//! n = p·q is checked at all because aws-lc's CRT code asserts that its
//! result is below n before it checks the signature (`mod_exp`): with
//! p·q > n it aborts the process (SIGABRT), release builds too. The check
//! runs in constant time, as everything else here that touches the key:
//! no branch, memory address or allocation size depends on a secret
//! number, only on what the DER shows (each number's length in bytes, and
//! its sign bit, which DER's form fixes) and on the sizes of p and q in
//! bits, which aws-lc takes as public too (see `positive`). The one value
//! computed from the secret numbers, whether n = p·q, is public once known
//! (the key loads or is refused), and passes through `declassify` first.
//! None of aws-lc's variable-time functions is called (its plain product
//! trims the result to its length, its modular one divides in variable
//! time; the names are listed in tests/build_env.rs): the key is loaded
//! again by every connection, and a local user who connects as often as
//! they like, watching shared caches or SMT ports, would get as many
//! identical traces to average. aws-lc still blinds every private
//! operation.
//!
//! tests/constant_time.rs checks the claim on every run, in our code and
//! in aws-lc's as the build at hand has it: under valgrind's memcheck, the
//! key's secret bits marked undefined, memcheck must report no branch or
//! address that depends on them (`the_rsa_key_check_branches_on_no_secret_under_memcheck`),
//! and must report two variable-time comparisons run the same way
//! (`memcheck_reports_variable_time_comparisons_of_the_key`).
//!
//! What this module takes: a PKCS#1 `RSAPrivateKey` of two primes whose
//! modulus is 2048 to 8192 bits, the provider's own range. Anything else
//! (other shapes, multi-prime keys) is left to the provider, which gives
//! its own verdict.

use std::ptr::{null, null_mut, NonNull};
use std::sync::Arc;

use aws_lc_rs::digest;
use aws_lc_sys as sys;
use rustls::pki_types::{alg_id, SubjectPublicKeyInfoDer};
use rustls::sign::{public_key_to_spki, Signer, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};

use crate::asn1::{elements, INTEGER, SEQUENCE};
use crate::secret::Secret;

/// The provider's order of preference, so that a client is offered
/// exactly what it was offered before.
use crate::tls::RSA_SCHEMES as SCHEMES;

/// Why a key was not built here.
#[derive(Debug, PartialEq)]
pub enum Refused {
    /// Not a two-prime PKCS#1 key this module reads: the provider decides.
    NotMine,
    /// A two-prime RSA key that is wrong; the reason, for the message.
    Invalid(&'static str),
}

/// Why a key that signed nothing is wrong, for the key file's error.
pub const FAULTY: &str = "the RSA key is inconsistent (a signature made with it did not verify)";

/// An RSA private key, ready to sign, and its SubjectPublicKeyInfo (for
/// the check that it matches the certificate).
pub struct RsaKey {
    rsa: Arc<Rsa>,
    spki: SubjectPublicKeyInfoDer<'static>,
}

impl std::fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RsaKey")
    }
}

impl RsaKey {
    /// Builds the key from an `RSAPrivateKey` (RFC 8017, A.1.2), after the
    /// checks above.
    pub fn from_pkcs1(der: &[u8]) -> Result<RsaKey, Refused> {
        RsaKey::from_pkcs1_declassifying(der, |_| {})
    }

    /// [`from_pkcs1`](RsaKey::from_pkcs1), which calls `declassify` with the
    /// one value it computes from the key's secret numbers, whether
    /// n = p·q, before anything depends on it: from there it is public (the
    /// key loads or is refused). Only tests/constant_time.rs passes a
    /// function that does something (it tells valgrind's memcheck that the
    /// value is no longer secret, as aws-lc's `constant_time_declassify_int`
    /// does); it can look at the value, not change it.
    pub fn from_pkcs1_declassifying(der: &[u8], declassify: fn(&bool)) -> Result<RsaKey, Refused> {
        let outer = elements(der);
        let Some([(SEQUENCE, fields)]) = outer.as_deref() else {
            return Err(Refused::NotMine);
        };
        let Some(ints) = elements(fields) else {
            return Err(Refused::NotMine);
        };
        let [(INTEGER, [0]), rest @ ..] = &ints[..] else {
            return Err(Refused::NotMine);
        };
        let Ok(ints) = <&[(u8, &[u8]); 8]>::try_from(rest) else {
            return Err(Refused::NotMine);
        };
        let [n, e, d, p, q, dp, dq, qinv] = ints.map(|(tag, int)| (tag == INTEGER).then_some(int));
        // n and e are public, p's and q's sizes too; the others are read
        // as they are (see `non_negative`).
        let [Some(n), Some(e), Some(p), Some(q)] = [n, e, p, q].map(|int| int.and_then(positive))
        else {
            return Err(Refused::NotMine);
        };
        let secrets = [d, dp, dq, qinv].map(|int| int.filter(|int| non_negative(int)));
        let [Some(d), Some(dp), Some(dq), Some(qinv)] = secrets else {
            return Err(Refused::NotMine);
        };
        let words = product_words(n, p, q, qinv);
        // Re-encoded minimally, as a certificate's is: rustls compares the
        // two byte for byte.
        let public = rsa_public_key(n, e).ok_or(NO_MEMORY)?;
        let mut numbers = Vec::with_capacity(8);
        for int in [n, e, d, p, q, dp, dq, qinv] {
            numbers.push(Bn::from_be(int).ok_or(NO_MEMORY)?);
        }
        let Ok(numbers) = <[Bn; 8]>::try_from(numbers) else {
            return Err(NO_MEMORY);
        };
        check(&numbers[0], &numbers[1], [p, q], words, declassify).map_err(Refused::Invalid)?;
        let rsa = Rsa::build(numbers).ok_or(NO_MEMORY)?;
        Ok(RsaKey {
            rsa: Arc::new(rsa),
            spki: public_key_to_spki(&alg_id::RSA_ENCRYPTION, public),
        })
    }
}

/// `RSAPublicKey` (RFC 8017, A.1.1) from the magnitudes of n and e.
fn rsa_public_key(n: &[u8], e: &[u8]) -> Option<Vec<u8>> {
    use der::asn1::UintRef;
    use der::{Encode, SliceWriter, Tag};
    let (n, e) = (UintRef::new(n).ok()?, UintRef::new(e).ok()?);
    let inner = (n.encoded_len().ok()? + e.encoded_len().ok()?).ok()?;
    let mut out = vec![0; usize::try_from(inner.for_tlv(Tag::Sequence).ok()?).ok()?];
    let mut w = SliceWriter::new(&mut out);
    w.sequence(inner, |w| {
        n.encode(w)?;
        e.encode(w)
    })
    .ok()?;
    let len = w.finish().ok()?.len();
    out.truncate(len);
    Some(out)
}

const NO_MEMORY: Refused = Refused::Invalid("out of memory");
const BROKEN: &str = "the RSA key is inconsistent";

/// An INTEGER's magnitude if it is positive (DER's sign byte, and any
/// needless zeros, dropped): for n and e, which are public, and p and q,
/// whose sizes are. Dropping the zeros branches on each byte up to the
/// first that is not zero, which tells p's length in bytes: less than its
/// length in bits, which is public as aws-lc has it (it gives its
/// Montgomery contexts for p and q their minimal width, "their sizes are
/// public"); for a key of any usual generator, half of n's.
fn positive(int: &[u8]) -> Option<&[u8]> {
    if !non_negative(int) {
        return None;
    }
    let zeros = int.iter().take_while(|&&b| b == 0).count();
    (zeros < int.len()).then(|| &int[zeros..])
}

/// Whether an INTEGER is not negative, from its sign bit alone. For d,
/// dp, dq and q⁻¹ mod p, whose sizes are secret, that is the one bit of
/// their contents read here: public as DER's form (a key's numbers are
/// positive: every key that loads has it clear). They go to aws-lc as
/// they are, sign byte and all, a zero byte more for the same number
/// (aws-lc sets them to the width of p, q or n itself, in constant time);
/// skipping leading zeros would branch on their top bytes. A zero is not
/// refused: it fails the first signature, as any wrong value does.
fn non_negative(int: &[u8]) -> bool {
    int.first().is_some_and(|first| first & 0x80 == 0)
}

/// What the lengths alone (public: the DER shows them) say, as the number
/// of 64-bit words of p and q together, or None when the key cannot be
/// one of two primes.
///
/// n, p and q are magnitudes. p·q is below 2^(8·(len p + len q)) and at
/// least 2^(8·(len p + len q - 2)), so p·q = n needs len p + len q <=
/// len n + 1: which also bounds the cost of multiplying them. q⁻¹ mod p,
/// below p, has no more bytes than p, and a sign byte: a longer one is
/// refused now rather than at the first signature.
fn product_words(n: &[u8], p: &[u8], q: &[u8], qinv: &[u8]) -> Option<usize> {
    (p.len() + q.len() <= n.len() + 1 && qinv.len() <= p.len() + 1)
        .then(|| p.len().div_ceil(8) + q.len().div_ceil(8))
}

/// The provider's size limits, aws-lc's bound on e, then n = p·q, once
/// the lengths allow it.
fn check(
    n: &Bn,
    e: &Bn,
    [p, q]: [&[u8]; 2],
    words: Option<usize>,
    declassify: fn(&bool),
) -> Result<(), &'static str> {
    match n.bits() {
        0..=2047 => return Err("the RSA key is too small (2048 to 8192 bits are supported)"),
        8193.. => return Err("the RSA key is too large (2048 to 8192 bits are supported)"),
        _ => {}
    }
    // aws-lc's own bound: a small e keeps its check of each signature cheap.
    if !e.is_odd() || e.bits() < 2 || e.bits() > 33 {
        return Err("the RSA key's public exponent is unsupported (odd, 3 to 2^33)");
    }
    // An even n has no Montgomery form, nor is it a product of odd primes.
    let Some(words) = words.filter(|_| n.is_odd()) else {
        return Err(BROKEN);
    };
    match Bn::is_product(n, p, q, words, declassify) {
        Some(true) => Ok(()),
        Some(false) => Err(BROKEN),
        None => Err("out of memory"),
    }
}

impl SigningKey for RsaKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        let scheme = *SCHEMES.iter().find(|s| offered.contains(s))?;
        Some(Box::new(RsaSigner {
            rsa: self.rsa.clone(),
            scheme,
        }))
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        Some(self.spki.clone())
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::RSA
    }
}

struct RsaSigner {
    rsa: Arc<Rsa>,
    scheme: SignatureScheme,
}

impl std::fmt::Debug for RsaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RsaSigner({:?})", self.scheme)
    }
}

impl Signer for RsaSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        use SignatureScheme::*;
        let (hash, pss) = match self.scheme {
            RSA_PSS_SHA512 => (Hash::Sha512, true),
            RSA_PSS_SHA384 => (Hash::Sha384, true),
            RSA_PSS_SHA256 => (Hash::Sha256, true),
            RSA_PKCS1_SHA512 => (Hash::Sha512, false),
            RSA_PKCS1_SHA384 => (Hash::Sha384, false),
            _ => (Hash::Sha256, false),
        };
        let digest = digest::digest(hash.algorithm(), message);
        // None: aws-lc's check of the signature failed (or, short of
        // memory, it could not sign, which a process this small never is).
        self.rsa
            .sign(hash, pss, digest.as_ref())
            .ok_or_else(|| rustls::Error::General("RSA signing failed".into()))
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}

#[derive(Clone, Copy)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn algorithm(self) -> &'static digest::Algorithm {
        match self {
            Hash::Sha256 => &digest::SHA256,
            Hash::Sha384 => &digest::SHA384,
            Hash::Sha512 => &digest::SHA512,
        }
    }

    fn md(self) -> *const sys::EVP_MD {
        // SAFETY: these return pointers to aws-lc's static tables.
        unsafe {
            match self {
                Hash::Sha256 => sys::EVP_sha256(),
                Hash::Sha384 => sys::EVP_sha384(),
                Hash::Sha512 => sys::EVP_sha512(),
            }
        }
    }

    fn nid(self) -> i32 {
        match self {
            Hash::Sha256 => sys::NID_sha256,
            Hash::Sha384 => sys::NID_sha384,
            Hash::Sha512 => sys::NID_sha512,
        }
    }
}

/// An aws-lc `RSA`, owned. aws-lc locks what a private operation
/// computes on first use, so a shared `RSA` may sign from any thread.
struct Rsa(NonNull<sys::RSA>);

// SAFETY: see above; the pointer is ours alone and freed once.
unsafe impl Send for Rsa {}
unsafe impl Sync for Rsa {}

impl Rsa {
    /// Hands the numbers to a new `RSA`, which owns them from then on.
    fn build([n, e, d, p, q, dp, dq, qinv]: [Bn; 8]) -> Option<Rsa> {
        // SAFETY: RSA_new returns an owned object or null.
        let rsa = Rsa(NonNull::new(unsafe { sys::RSA_new() })?);
        let r = rsa.0.as_ptr();
        // SAFETY: every pointer is non-null and owned, so each set0 call
        // takes them (it refuses only a null n or e on an empty RSA).
        let taken = unsafe {
            sys::RSA_set0_key(r, n.into_raw(), e.into_raw(), d.into_raw()) == 1
                && sys::RSA_set0_factors(r, p.into_raw(), q.into_raw()) == 1
                && sys::RSA_set0_crt_params(r, dp.into_raw(), dq.into_raw(), qinv.into_raw()) == 1
        };
        taken.then_some(rsa)
    }

    fn sign(&self, hash: Hash, pss: bool, digest: &[u8]) -> Option<Vec<u8>> {
        let r = self.0.as_ptr();
        // SAFETY: r is a valid RSA; the output buffer is RSA_size bytes,
        // the most either call writes, and its length is passed.
        unsafe {
            let mut out = vec![0u8; sys::RSA_size(r) as usize];
            let len = if pss {
                let mut len = 0usize;
                // Salt as long as the hash (-1), as TLS requires.
                let ok = sys::RSA_sign_pss_mgf1(
                    r,
                    &mut len,
                    out.as_mut_ptr(),
                    out.len(),
                    digest.as_ptr(),
                    digest.len(),
                    hash.md(),
                    null(),
                    -1,
                );
                (ok == 1).then_some(len)
            } else {
                let mut len = 0u32;
                let ok = sys::RSA_sign(
                    hash.nid(),
                    digest.as_ptr(),
                    digest.len(),
                    out.as_mut_ptr(),
                    &mut len,
                    r,
                );
                (ok == 1).then_some(len as usize)
            };
            let Some(len) = len else {
                sys::ERR_clear_error();
                return None;
            };
            out.truncate(len);
            Some(out)
        }
    }
}

impl Drop for Rsa {
    fn drop(&mut self) {
        // SAFETY: ours, freed once; aws-lc wipes the numbers as it frees.
        unsafe { sys::RSA_free(self.0.as_ptr()) }
    }
}

/// An aws-lc `BIGNUM`, owned; cleared when freed.
struct Bn(NonNull<sys::BIGNUM>);

impl Bn {
    fn new() -> Option<Bn> {
        // SAFETY: returns an owned BIGNUM or null.
        NonNull::new(unsafe { sys::BN_new() }).map(Bn)
    }

    /// The number `bytes` (big-endian, at most 8·`words` of them),
    /// `words` 64-bit words wide. The copy they are widened in is wiped.
    fn wide(bytes: &[u8], words: usize) -> Option<Bn> {
        let mut buf = Secret(Vec::with_capacity(8 * words));
        buf.0.resize((8 * words).checked_sub(bytes.len())?, 0);
        buf.0.extend_from_slice(bytes);
        Bn::from_be(&buf.0)
    }

    fn from_be(bytes: &[u8]) -> Option<Bn> {
        // SAFETY: reads bytes.len() bytes; returns an owned BIGNUM or null.
        NonNull::new(unsafe { sys::BN_bin2bn(bytes.as_ptr(), bytes.len(), null_mut()) }).map(Bn)
    }

    fn ptr(&self) -> *mut sys::BIGNUM {
        self.0.as_ptr()
    }

    fn into_raw(self) -> *mut sys::BIGNUM {
        let p = self.ptr();
        std::mem::forget(self);
        p
    }

    fn bits(&self) -> u32 {
        // SAFETY: a valid BIGNUM.
        unsafe { sys::BN_num_bits(self.ptr()) }
    }

    fn is_odd(&self) -> bool {
        // SAFETY: a valid BIGNUM.
        unsafe { sys::BN_is_odd(self.ptr()) == 1 }
    }

    /// Whether n = p·q (p and q big-endian, `words` 64-bit words
    /// together), in constant time. aws-lc exports no constant-time
    /// multiplication as such, but a Montgomery one: modulo
    /// M = 2^(64·w) - 1, w = `words`, Montgomery's R = 2^(64·w) is 1, so
    /// it computes p·q·R⁻¹ = p·q (mod M); and p·q < M, so the result is
    /// p·q itself. p and q are below M, as the function requires; M is
    /// public. p and q are given to it w words wide each, so that aws-lc
    /// multiplies in assembly (`bn_mul_mont`, or s2n-bignum's): given
    /// other widths it would in C, whose assertions (compiled in, release
    /// builds too) branch on carries of the product, `declassify_assert`:
    /// always the same, so nothing is told, but memcheck cannot tell them
    /// from a leak (tests/constant_time.rs).
    fn is_product(n: &Bn, p: &[u8], q: &[u8], words: usize, declassify: fn(&bool)) -> Option<bool> {
        let modulus = Bn::from_be(&vec![0xff; 8 * words])?;
        let (p, q) = (Bn::wide(p, words)?, Bn::wide(q, words)?);
        let ctx = Ctx::new()?;
        let mont = Mont::new(&modulus, &ctx)?;
        let r = Bn::new()?;
        // SAFETY: valid BIGNUMs, context and Montgomery context; r is
        // distinct from p and q.
        let ok = unsafe {
            sys::BN_mod_mul_montgomery(r.ptr(), p.ptr(), q.ptr(), mont.0.as_ptr(), ctx.0.as_ptr())
        };
        if ok != 1 {
            return None;
        }
        // SAFETY: two valid BIGNUMs.
        let equal = unsafe { sys::BN_equal_consttime(r.ptr(), n.ptr()) } == 1;
        declassify(&equal);
        // Read from memory again: that is where `declassify` marked it
        // public; a copy kept in a register would still be secret to
        // memcheck.
        // SAFETY: a local bool, valid and aligned.
        Some(unsafe { std::ptr::read_volatile(&equal) })
    }
}

impl Drop for Bn {
    fn drop(&mut self) {
        // SAFETY: ours, freed once.
        unsafe { sys::BN_clear_free(self.ptr()) }
    }
}

/// aws-lc's scratch space for arithmetic.
struct Ctx(NonNull<sys::BN_CTX>);

impl Ctx {
    fn new() -> Option<Ctx> {
        // SAFETY: returns an owned BN_CTX or null.
        NonNull::new(unsafe { sys::BN_CTX_new() }).map(Ctx)
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        // SAFETY: ours, freed once.
        unsafe { sys::BN_CTX_free(self.0.as_ptr()) }
    }
}

/// aws-lc's Montgomery context for a public modulus.
struct Mont(NonNull<sys::BN_MONT_CTX>);

impl Mont {
    fn new(modulus: &Bn, ctx: &Ctx) -> Option<Mont> {
        // SAFETY: a valid, odd BIGNUM and context; returns an owned
        // BN_MONT_CTX or null.
        NonNull::new(unsafe { sys::BN_MONT_CTX_new_for_modulus(modulus.ptr(), ctx.0.as_ptr()) })
            .map(Mont)
    }
}

impl Drop for Mont {
    fn drop(&mut self) {
        // SAFETY: ours, freed once.
        unsafe { sys::BN_MONT_CTX_free(self.0.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{self, KeyPair as _, UnparsedPublicKey};
    use std::sync::OnceLock;

    /// A fresh 2048-bit key's RSAPrivateKey and its RSAPublicKey.
    fn generated() -> &'static (Vec<u8>, Vec<u8>) {
        static KEY: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
        KEY.get_or_init(|| {
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .expect("generate");
            let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).expect("der");
            let info = elements(pkcs8.as_ref()).unwrap();
            let [(0x30, info)] = info[..] else { panic!() };
            let fields = elements(info).unwrap();
            let [_, _, (0x04, pkcs1), ..] = fields[..] else {
                panic!()
            };
            (pkcs1.to_vec(), pair.public_key().as_ref().to_vec())
        })
    }

    /// A DER TLV written as given: these tests need non-minimal INTEGERs,
    /// which no encoder writes.
    fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
        let len = contents.len();
        let mut out = vec![tag];
        match len {
            0..=0x7f => out.push(len as u8),
            0x80..=0xff => out.extend([0x81, len as u8]),
            _ => out.extend([0x82, (len >> 8) as u8, len as u8]),
        }
        out.extend_from_slice(contents);
        out
    }

    /// The key's nine INTEGERs (version first), each changed by `edit`,
    /// encoded again.
    fn edited(edit: impl Fn(usize, &mut Vec<u8>)) -> Vec<u8> {
        let outer = elements(&generated().0).unwrap();
        let [(0x30, fields)] = outer[..] else {
            panic!()
        };
        let mut ints: Vec<Vec<u8>> = elements(fields)
            .unwrap()
            .into_iter()
            .map(|(_, c)| c.to_vec())
            .collect();
        for (i, int) in ints.iter_mut().enumerate() {
            edit(i, int);
        }
        let encoded: Vec<u8> = ints.iter().flat_map(|i| tlv(0x02, i)).collect();
        tlv(0x30, &encoded)
    }

    fn load(der: &[u8]) -> Result<RsaKey, Refused> {
        RsaKey::from_pkcs1(der)
    }

    fn verifiers() -> [(SignatureScheme, &'static signature::RsaParameters); 6] {
        [
            (
                SignatureScheme::RSA_PSS_SHA512,
                &signature::RSA_PSS_2048_8192_SHA512,
            ),
            (
                SignatureScheme::RSA_PSS_SHA384,
                &signature::RSA_PSS_2048_8192_SHA384,
            ),
            (
                SignatureScheme::RSA_PSS_SHA256,
                &signature::RSA_PSS_2048_8192_SHA256,
            ),
            (
                SignatureScheme::RSA_PKCS1_SHA512,
                &signature::RSA_PKCS1_2048_8192_SHA512,
            ),
            (
                SignatureScheme::RSA_PKCS1_SHA384,
                &signature::RSA_PKCS1_2048_8192_SHA384,
            ),
            (
                SignatureScheme::RSA_PKCS1_SHA256,
                &signature::RSA_PKCS1_2048_8192_SHA256,
            ),
        ]
    }

    const MESSAGE: &[u8] = b"the transcript hash, or what TLS 1.2 signs";

    #[test]
    fn every_scheme_signs_and_the_signature_verifies() {
        let (pkcs1, public) = generated();
        let key = load(pkcs1).expect("a good key");
        for (scheme, verifier) in verifiers() {
            let signer = key.choose_scheme(&[scheme]).expect("offered");
            assert_eq!(signer.scheme(), scheme);
            let sig = signer.sign(MESSAGE).expect("sign");
            UnparsedPublicKey::new(verifier, public)
                .verify(MESSAGE, &sig)
                .unwrap_or_else(|_| panic!("{scheme:?} does not verify"));
        }
    }

    #[test]
    fn schemes_are_chosen_in_the_providers_order() {
        let key = load(&generated().0).unwrap();
        let offered = [
            SignatureScheme::RSA_PKCS1_SHA256,
            SignatureScheme::RSA_PSS_SHA256,
            SignatureScheme::ECDSA_NISTP256_SHA256,
        ];
        let chosen = key.choose_scheme(&offered).unwrap().scheme();
        assert_eq!(chosen, SignatureScheme::RSA_PSS_SHA256);
        assert!(key.choose_scheme(&[SignatureScheme::ED25519]).is_none());
    }

    #[test]
    fn the_public_key_is_the_certificates_spki() {
        let key = load(&generated().0).unwrap();
        let spki = key.public_key().unwrap();
        let expected = public_key_to_spki(&alg_id::RSA_ENCRYPTION, &generated().1);
        assert_eq!(spki.as_ref(), expected.as_ref());
    }

    #[test]
    fn a_modulus_with_needless_leading_zeros_gives_the_same_spki() {
        let padded = edited(|i, int| {
            if i == 1 {
                int.insert(0, 0);
            }
        });
        let key = load(&padded).unwrap();
        let expected = public_key_to_spki(&alg_id::RSA_ENCRYPTION, &generated().1);
        assert_eq!(key.public_key().unwrap().as_ref(), expected.as_ref());
    }

    /// d and the CRT numbers go to aws-lc as the DER has them, leading
    /// zeros and all (stripping them would branch on their top bytes); p's
    /// and q's are dropped. A needless zero more on each (not DER) changes
    /// nothing; q⁻¹ mod p keeps its length, the longest it may have.
    #[test]
    fn a_needless_leading_zero_on_the_secret_numbers_changes_nothing() {
        let (pkcs1, public) = generated();
        let der = edited(|i, int| {
            if (3..8).contains(&i) {
                int.insert(0, 0);
            }
        });
        assert_ne!(&der, pkcs1);
        let key = load(&der).expect("loads");
        for (scheme, verifier) in verifiers() {
            let sig = key
                .choose_scheme(&[scheme])
                .unwrap()
                .sign(MESSAGE)
                .expect("signs");
            UnparsedPublicKey::new(verifier, public)
                .verify(MESSAGE, &sig)
                .unwrap_or_else(|_| panic!("{scheme:?} does not verify"));
        }
    }

    /// n, p or q changed: n = p·q no longer holds, and the key is refused
    /// as it loads. Among them, p·q > n, which would make aws-lc abort
    /// the process as it signs (its CRT result above n).
    #[test]
    fn a_change_to_n_p_or_q_is_refused_at_once() {
        type Edit = fn(&mut Vec<u8>);
        let edits: [(usize, Edit); 6] = [
            // The low byte moves by 2, so odd numbers stay odd.
            (1, |int| *int.last_mut().unwrap() ^= 0x02),
            (4, |int| *int.last_mut().unwrap() ^= 0x02),
            (5, |int| *int.last_mut().unwrap() ^= 0x02),
            // p·q > n, well above: p or q at the largest value of its
            // length (which no prime of 1024 bits or so is: setting one
            // byte alone left the key as it was once in 128 runs).
            (4, |int| int[1..].fill(0xff)),
            (5, |int| int[1..].fill(0xff)),
            // p one byte longer.
            (4, |int| int.insert(1, 1)),
        ];
        for (which, edit) in edits {
            let der = edited(|i, int| {
                if i == which {
                    edit(int)
                }
            });
            assert_eq!(
                load(&der).map(|_| ()),
                Err(Refused::Invalid(BROKEN)),
                "INTEGER {which}"
            );
        }
    }

    /// Lengths that no key of two primes has: p and q longer than n
    /// together, q⁻¹ mod p longer than p.
    #[test]
    fn numbers_too_long_for_the_modulus_are_refused_at_once() {
        let (pkcs1, _) = generated();
        let ints = elements(elements(pkcs1).unwrap()[0].1).unwrap();
        let n = ints[1].1.to_vec();
        // p = n, q = 1: n = p·q, and the lengths allow it.
        let trivial = edited(|i, int| match i {
            4 => *int = n.clone(),
            5 | 8 => *int = vec![1],
            _ => {}
        });
        // Longer than p's DER: 0x01, then p.
        let p = ints[4].1.to_vec();
        let long_qinv = edited(|i, int| {
            if i == 8 {
                *int = [&[1][..], &p].concat()
            }
        });
        let long_primes = edited(|i, int| {
            if i == 4 || i == 5 {
                *int = n.clone()
            }
        });
        for der in [long_qinv, long_primes] {
            assert_eq!(load(&der).map(|_| ()), Err(Refused::Invalid(BROKEN)));
        }
        // Not refused, but it never signs, nor does aws-lc abort.
        let key = load(&trivial).expect("n = n·1");
        let signer = key
            .choose_scheme(&[SignatureScheme::RSA_PSS_SHA256])
            .unwrap();
        assert!(signer.sign(MESSAGE).is_err());
    }

    /// dp, dq or q⁻¹ mod p changed: the key loads, its first signature
    /// fails aws-lc's check (the key holder answers with the key file's
    /// error: keys.rs). Never a signature that does not verify, nor an
    /// abort.
    #[test]
    fn a_change_to_a_crt_number_fails_the_first_signature_and_says_so() {
        let p_len = elements(elements(&generated().0).unwrap()[0].1).unwrap()[4]
            .1
            .len();
        for which in [6, 7, 8] {
            for edit in 0..4 {
                let der = edited(|i, int| {
                    if i == which {
                        match edit {
                            0 => *int.last_mut().unwrap() ^= 0x02,
                            1 => int[2] ^= 0x40,
                            // As long as p, and above it.
                            2 => int.iter_mut().skip(1).for_each(|b| *b = 0xff),
                            // As long as p's DER, without a sign byte,
                            // which the lengths allow: 17 words, where p
                            // (128 bytes) has 16.
                            _ => *int = [&[0x7f][..], &vec![0xff; p_len - 1]].concat(),
                        }
                    }
                });
                let key = load(&der).expect("loads");
                for (scheme, _) in verifiers() {
                    let signer = key.choose_scheme(&[scheme]).unwrap();
                    assert!(signer.sign(MESSAGE).is_err(), "INTEGER {which}, {scheme:?}");
                }
            }
        }
    }

    /// d changed, in a key whose primes have one width (1024 bits each):
    /// aws-lc signs with p, q and the CRT numbers, never with d, so the
    /// signature is right.
    #[test]
    fn a_wrong_d_goes_unused_when_the_primes_have_one_width() {
        let der = edited(|i, int| {
            if i == 3 {
                *int.last_mut().unwrap() ^= 0x02;
            }
        });
        let key = load(&der).expect("loads");
        let signer = key
            .choose_scheme(&[SignatureScheme::RSA_PSS_SHA256])
            .unwrap();
        let sig = signer.sign(MESSAGE).expect("signs");
        UnparsedPublicKey::new(&signature::RSA_PSS_2048_8192_SHA256, &generated().1)
            .verify(MESSAGE, &sig)
            .expect("verifies");
    }

    #[test]
    fn bad_public_exponents_are_refused() {
        for e in [
            &[0x01, 0x00, 0x00][..],
            &[0x01],
            &[0x02, 0x00, 0x00, 0x00, 0x01],
        ] {
            let der = edited(|i, int| {
                if i == 2 {
                    *int = e.to_vec();
                }
            });
            assert_eq!(
                load(&der).map(|_| ()),
                Err(Refused::Invalid(
                    "the RSA key's public exponent is unsupported (odd, 3 to 2^33)"
                )),
                "e = {e:02x?}"
            );
        }
    }

    #[test]
    fn other_shapes_are_left_to_the_provider() {
        let multi_prime = edited(|i, int| {
            if i == 0 {
                *int = vec![1];
            }
        });
        let negative = edited(|i, int| {
            if i == 3 {
                int[0] |= 0x80;
            }
        });
        let (pkcs1, _) = generated();
        for der in [
            &multi_prime[..],
            &negative,
            &pkcs1[..pkcs1.len() - 1],
            b"",
            b"\x30\x00",
        ] {
            assert_eq!(load(der).map(|_| ()), Err(Refused::NotMine));
        }
    }
}
