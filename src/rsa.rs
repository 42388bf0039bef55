//! RSA signing keys built on aws-lc directly, not through the provider's
//! key loader.
//!
//! Every connection is a process, so whatever a key costs to load is paid
//! by every connection. The provider's loader (`RSA_parse_private_key`)
//! runs aws-lc's `RSA_check_key`, which proves the key consistent with
//! constant-time division: 2.6 M instructions, 0.4 ms here, a fifth of an
//! RSA connection's CPU. Here the same relations are checked with aws-lc's
//! variable-time arithmetic instead (some 40 k instructions). Timing can
//! tell nothing an attacker could use: the inputs are fixed for a key, so
//! every start-up takes the same time, whoever connects.
//!
//! Nothing else is given up. aws-lc still blinds every private operation,
//! and checks every signature with the public exponent before it returns
//! it (`rsa_default_private_transform`), so no faulty signature, which
//! would give the key away (Boneh, DeMillo and Lipton), can ever leave.
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

/// The provider's order of preference (rustls' aws_lc_rs `ALL_RSA_SCHEMES`),
/// so that a client is offered exactly what it was offered before.
const SCHEMES: [SignatureScheme; 6] = [
    SignatureScheme::RSA_PSS_SHA512,
    SignatureScheme::RSA_PSS_SHA384,
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PKCS1_SHA512,
    SignatureScheme::RSA_PKCS1_SHA384,
    SignatureScheme::RSA_PKCS1_SHA256,
];

/// Why a key was not built here.
#[derive(Debug, PartialEq)]
pub enum Refused {
    /// Not a two-prime PKCS#1 key this module reads: the provider decides.
    NotMine,
    /// A two-prime RSA key that is wrong; the reason, for the message.
    Invalid(&'static str),
}

/// An RSA private key, ready to sign, and its SubjectPublicKeyInfo (for
/// rustls' check that it matches the certificate).
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
    /// checks `RSA_check_key` makes.
    pub fn from_pkcs1(der: &[u8]) -> Result<RsaKey, Refused> {
        use crate::subject::elements;
        let outer = elements(der);
        let Some([(0x30, fields)]) = outer.as_deref() else {
            return Err(Refused::NotMine);
        };
        let Some(ints) = elements(fields) else {
            return Err(Refused::NotMine);
        };
        let [(0x02, [0]), rest @ ..] = &ints[..] else {
            return Err(Refused::NotMine);
        };
        // Re-encoded minimally, as a certificate's is: rustls compares the
        // two byte for byte.
        let public = match rest {
            [(0x02, n), (0x02, e), ..] => match (positive(n), positive(e)) {
                (Some(n), Some(e)) => tlv(0x30, &[&integer(n), &integer(e)]),
                _ => return Err(Refused::NotMine),
            },
            _ => return Err(Refused::NotMine),
        };
        let mut numbers = Vec::with_capacity(8);
        for &(tag, int) in rest {
            match (tag, positive(int)) {
                (0x02, Some(magnitude)) => numbers.push(Bn::from_be(magnitude).ok_or(NO_MEMORY)?),
                _ => return Err(Refused::NotMine),
            }
        }
        let Ok([n, e, d, p, q, dp, dq, qinv]) = <[Bn; 8]>::try_from(numbers) else {
            return Err(Refused::NotMine);
        };
        check(&n, &e, &d, &p, &q, &dp, &dq, &qinv).map_err(Refused::Invalid)?;
        let rsa = Rsa::build([n, e, d, p, q, dp, dq, qinv]).ok_or(NO_MEMORY)?;
        Ok(RsaKey {
            rsa: Arc::new(rsa),
            spki: public_key_to_spki(&alg_id::RSA_ENCRYPTION, public),
        })
    }
}

/// A DER TLV of `tag` around the concatenated `parts`.
fn tlv(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = vec![tag];
    match len {
        0..=0x7f => out.push(len as u8),
        _ => {
            let bytes = len.to_be_bytes();
            let skip = bytes.iter().take_while(|&&b| b == 0).count();
            out.push(0x80 | (bytes.len() - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
    }
    parts.iter().for_each(|p| out.extend_from_slice(p));
    out
}

/// A positive INTEGER's DER from its magnitude (no leading zero bytes).
fn integer(magnitude: &[u8]) -> Vec<u8> {
    match magnitude.first() {
        Some(b) if b & 0x80 != 0 => tlv(0x02, &[&[0], magnitude]),
        _ => tlv(0x02, &[magnitude]),
    }
}

const NO_MEMORY: Refused = Refused::Invalid("out of memory");

/// An INTEGER's magnitude if it is positive (DER's sign padding dropped).
fn positive(int: &[u8]) -> Option<&[u8]> {
    match int {
        [] => None,
        [first, ..] if first & 0x80 != 0 => None,
        _ => {
            let zeros = int.iter().take_while(|&&b| b == 0).count();
            (zeros < int.len()).then(|| &int[zeros..])
        }
    }
}

/// The relations `RSA_check_key` proves, and the provider's size limits.
#[allow(clippy::too_many_arguments)]
fn check(
    n: &Bn,
    e: &Bn,
    d: &Bn,
    p: &Bn,
    q: &Bn,
    dp: &Bn,
    dq: &Bn,
    qinv: &Bn,
) -> Result<(), &'static str> {
    const BROKEN: &str = "the RSA key is inconsistent";
    match n.bits() {
        0..=2047 => return Err("the RSA key is too small (2048 to 8192 bits are supported)"),
        8193.. => return Err("the RSA key is too large (2048 to 8192 bits are supported)"),
        _ => {}
    }
    // aws-lc's own bound: a small e keeps its check of each signature cheap.
    if !e.is_odd() || e.bits() < 2 || e.bits() > 33 {
        return Err("the RSA key's public exponent is unsupported (odd, 3 to 2^33)");
    }
    let ctx = Ctx::new().ok_or("out of memory")?;
    let p1 = p.minus_one().ok_or("out of memory")?;
    let q1 = q.minus_one().ok_or("out of memory")?;
    let nq = Bn::product(p, q, &ctx).ok_or("out of memory")?;
    if nq.cmp(n) != 0 || !n.is_odd() {
        return Err(BROKEN);
    }
    // Each private number reduced, as aws-lc stores them.
    if d.cmp(n) >= 0 || dp.cmp(&p1) >= 0 || dq.cmp(&q1) >= 0 || qinv.cmp(p) >= 0 {
        return Err(BROKEN);
    }
    let inverse = |a: &Bn, b: &Bn, m: &Bn| Bn::is_inverse(a, b, m, &ctx);
    let consistent = [
        inverse(e, d, &p1),
        inverse(e, d, &q1),
        inverse(e, dp, &p1),
        inverse(e, dq, &q1),
        inverse(qinv, q, p),
    ];
    match consistent.iter().all(|&ok| ok == Some(true)) {
        true => Ok(()),
        false if consistent.contains(&None) => Err("out of memory"),
        false => Err(BROKEN),
    }
}

impl SigningKey for RsaKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        let scheme = *SCHEMES.iter().find(|s| offered.contains(s))?;
        Some(Box::new(RsaSigner {
            key: self.rsa.clone(),
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
    key: Arc<Rsa>,
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
        self.key
            .sign(
                hash,
                pss,
                digest::digest(hash.algorithm(), message).as_ref(),
            )
            .ok_or_else(|| {
                // aws-lc refused to sign, or its check of the signature failed.
                rustls::Error::General("RSA signing failed".into())
            })
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

    fn cmp(&self, other: &Bn) -> i32 {
        // SAFETY: two valid BIGNUMs.
        unsafe { sys::BN_cmp(self.ptr(), other.ptr()) }
    }

    fn minus_one(&self) -> Option<Bn> {
        // SAFETY: BN_dup returns an owned copy or null; BN_sub_word
        // works on it in place.
        let copy = Bn(NonNull::new(unsafe { sys::BN_dup(self.ptr()) })?);
        (unsafe { sys::BN_sub_word(copy.ptr(), 1) } == 1).then_some(copy)
    }

    fn product(a: &Bn, b: &Bn, ctx: &Ctx) -> Option<Bn> {
        let r = Bn::new()?;
        // SAFETY: valid BIGNUMs and context; r is distinct from a and b.
        (unsafe { sys::BN_mul(r.ptr(), a.ptr(), b.ptr(), ctx.0.as_ptr()) } == 1).then_some(r)
    }

    /// Whether a·b ≡ 1 (mod m); None if aws-lc could not compute it.
    fn is_inverse(a: &Bn, b: &Bn, m: &Bn, ctx: &Ctx) -> Option<bool> {
        let r = Bn::new()?;
        // SAFETY: as in product; m is non-zero (m > 1 for a checked key).
        let ok = unsafe { sys::BN_mod_mul(r.ptr(), a.ptr(), b.ptr(), m.ptr(), ctx.0.as_ptr()) };
        // SAFETY: a valid BIGNUM.
        (ok == 1).then(|| unsafe { sys::BN_is_one(r.ptr()) } == 1)
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
            let info = crate::subject::elements(pkcs8.as_ref()).unwrap();
            let [(0x30, info)] = info[..] else { panic!() };
            let fields = crate::subject::elements(info).unwrap();
            let [_, _, (0x04, pkcs1), ..] = fields[..] else {
                panic!()
            };
            (pkcs1.to_vec(), pair.public_key().as_ref().to_vec())
        })
    }

    /// The key's nine INTEGERs (version first), each changed by `edit`,
    /// encoded again.
    fn edited(edit: impl Fn(usize, &mut Vec<u8>)) -> Vec<u8> {
        let outer = crate::subject::elements(&generated().0).unwrap();
        let [(0x30, fields)] = outer[..] else {
            panic!()
        };
        let mut ints: Vec<Vec<u8>> = crate::subject::elements(fields)
            .unwrap()
            .into_iter()
            .map(|(_, c)| c.to_vec())
            .collect();
        for (i, int) in ints.iter_mut().enumerate() {
            edit(i, int);
        }
        let encoded: Vec<Vec<u8>> = ints.iter().map(|i| tlv(0x02, &[i])).collect();
        let parts: Vec<&[u8]> = encoded.iter().map(|v| &v[..]).collect();
        tlv(0x30, &parts)
    }

    #[test]
    fn every_scheme_signs_and_the_signature_verifies() {
        let (pkcs1, public) = generated();
        let key = RsaKey::from_pkcs1(pkcs1).expect("a good key");
        let message = b"the transcript hash, or what TLS 1.2 signs";
        let verifiers: [(SignatureScheme, &signature::RsaParameters); 6] = [
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
        ];
        for (scheme, verifier) in verifiers {
            let signer = key.choose_scheme(&[scheme]).expect("offered");
            assert_eq!(signer.scheme(), scheme);
            let sig = signer.sign(message).expect("sign");
            UnparsedPublicKey::new(verifier, public)
                .verify(message, &sig)
                .unwrap_or_else(|_| panic!("{scheme:?} does not verify"));
        }
    }

    #[test]
    fn schemes_are_chosen_in_the_providers_order() {
        let key = RsaKey::from_pkcs1(&generated().0).unwrap();
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
        let key = RsaKey::from_pkcs1(&generated().0).unwrap();
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
        let key = RsaKey::from_pkcs1(&padded).unwrap();
        let expected = public_key_to_spki(&alg_id::RSA_ENCRYPTION, &generated().1);
        assert_eq!(key.public_key().unwrap().as_ref(), expected.as_ref());
    }

    #[test]
    fn a_change_to_any_private_number_is_caught() {
        let broken = Err(Refused::Invalid("the RSA key is inconsistent"));
        // 1 n, 3 d, 4 p, 5 q, 6 dp, 7 dq, 8 qinv: the low byte moves by 2,
        // so odd numbers stay odd.
        for which in [1, 3, 4, 5, 6, 7, 8] {
            let der = edited(|i, int| {
                if i == which {
                    *int.last_mut().unwrap() ^= 0x02;
                }
            });
            assert_eq!(
                RsaKey::from_pkcs1(&der).map(|_| ()),
                broken,
                "INTEGER {which}"
            );
        }
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
                RsaKey::from_pkcs1(&der).map(|_| ()),
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
            assert_eq!(RsaKey::from_pkcs1(der).map(|_| ()), Err(Refused::NotMine));
        }
    }
}
