//! Session tickets shared by every engine of a service (issue 10). Each
//! connection is its own process, so rustls' own `Ticketer` (keys born and
//! dead with the process) could never resume anything; keys that every
//! engine reads from one file can.
//!
//! Two sides, which meet at `Seal` (issue 25: the keys leave the process
//! that talks to the network):
//!
//! - the file keys' side, `keys` (the key holder's): the file, the keys
//!   derived from it, sealing with the newest and opening with any;
//! - the policy side, here and in `recheck` (the engine's): what a ticket
//!   is bound to (the associated data), its issue time and lifetime, the
//!   client chain's check, and the `ProducesTickets` that rustls calls. It
//!   never sees a key, and does not import `keys`.
//!
//! The associated data binds the ticket to the configuration that issued
//! it (server name, client certificate mode, trust anchors) and to this
//! format's version: a ticket from elsewhere, or of an older format, fails
//! to open and the client gets a full handshake. rustls checks neither the
//! client certificate policy nor the age of a stateless ticket, so both are
//! done here.
//!
//! The sealed plaintext, format 2: the issue time (8 bytes, big-endian),
//! the session's client chain (a 3-byte length, then each certificate with
//! a 3-byte length, end entity first; empty without one), then rustls'
//! session state, which only rustls reads.
//!
//! Resumption checks what a full handshake checks (issue 19). rustls does
//! not call the client certificate verifier on a resumption: the session's
//! chain comes out of the ticket as it went in. So a ticket that records a
//! client chain opens only if the verifier of a full handshake accepts that
//! chain again now, against the trust anchors and CRLs this engine read: a
//! certificate revoked (or expired) since, even under a CRL published
//! after the ticket, opens nothing, and the client gets a full handshake,
//! which refuses its certificate exactly as it refuses any other. The
//! chain recorded is ours, not read out of rustls' encoding (issue 26):
//! the one the connection's own verifier accepted, or, on a connection
//! that opened a ticket, the one that ticket recorded and the recheck
//! passed (see `Ticketer::encrypt_at`). No change of rustls' encoding can
//! make a ticket skip the check.
//!
//! A chain of resumptions ends: the issue time sealed in a ticket is that
//! of the full handshake its session descends from, and the lifetime hint
//! counts down from it, so no ticket resumes more than `LIFETIME` after the
//! client last authenticated (RFC 8446, section 4.6.1).
//!
//! TLS 1.3 only: the caller enables tickets only for clients that offer
//! TLS 1.3, and `encrypt` refuses any state that does not read as TLS
//! 1.3's, so that no TLS 1.2 ticket (which carries the master secret) is
//! ever issued. That is the one reading of rustls' encoding left, and it
//! fails closed: a state it cannot read gets no ticket.

pub mod keys;
mod recheck;

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::pki_types::CertificateDer;
use rustls::server::ProducesTickets;

use crate::secret::Secret;
use crate::wire::Reader;
use recheck::Chain;

pub use recheck::Recheck;

/// The ticket keys' one job, behind the process boundary.
pub trait Seal: Send + Sync {
    /// `plain` sealed with the newest key, bound to `aad`: a whole ticket.
    fn seal(&self, aad: &[u8], plain: &[u8]) -> Option<Vec<u8>>;
    /// What `ticket` holds, if a key of the file sealed it with `aad`.
    fn open(&self, aad: &[u8], ticket: &[u8]) -> Option<Vec<u8>>;
}

/// How many tickets one connection may try to open: rustls tries every
/// PSK identity of a hello until one resumes, and a real client offers one.
/// The rest of a longer list opens nothing (the key holder enforces it
/// too: an engine taken over gets no opening oracle).
pub const MAX_OPENS: usize = 4;
/// How long a ticket resumes, in seconds, counted from the full handshake
/// its session descends from (the hint sent to clients counts down too).
pub const LIFETIME: u32 = 4 * 3600;
/// Clock skew tolerated between the engine that sealed a ticket and the
/// one that opens it (the same machine, normally: none at all). A time
/// ahead of ours by no more than this counts as now.
const SKEW: u64 = 60;

const TIME_LEN: usize = 8;

/// What a ticket is bound to: it resumes only where all of it is the same.
pub struct Context<'a> {
    /// The SNI the configuration was chosen for (rustls checks it too).
    pub server_name: Option<&'a str>,
    /// 0: no client certificate asked for; 1: optional (`-Y`); 2: required
    /// (`-y`). A ticket whose session had no certificate must not resume
    /// under `-y`, nor one with a certificate where none is asked for.
    pub client_cert_mode: u8,
    /// A digest of the trust anchors for client certificates: a ticket's
    /// certificate was verified against these, not against others.
    pub anchors: [u8; 32],
}

impl Context<'_> {
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        // The format's version: a ticket of format 1 (which had no chain
        // of ours) opens nothing.
        out.extend_from_slice(b"s6-tlsd-io ticket v2\0");
        out.push(self.client_cert_mode);
        out.extend_from_slice(&self.anchors);
        if let Some(name) = self.server_name {
            out.push(1);
            out.extend(name.bytes().map(|b| b.to_ascii_lowercase()));
        }
        out
    }
}

/// A digest of trust anchors (subject and key of each), sorted first: the
/// same anchors give the same digest whatever order a directory lists them.
pub fn anchors_digest<'a>(anchors: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> [u8; 32] {
    let mut anchors: Vec<_> = anchors.collect();
    anchors.sort_unstable();
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for (subject, spki) in anchors {
        for part in [subject, spki] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
    }
    let mut out = [0; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The ticketer of one connection: tickets sealed and opened by `seal`,
/// bound to `context` (see `Context`). A ticket that records a client
/// chain opens only if `recheck` accepts it again; without `recheck`,
/// never. With `recheck`, the connection's verifier must be the one
/// `Recheck::watching` returns: the chain it accepts is the one a ticket
/// records.
pub fn ticketer(
    seal: Arc<dyn Seal>,
    context: &Context,
    recheck: Option<Recheck>,
) -> Arc<dyn ProducesTickets> {
    Arc::new(Ticketer::new(seal, context, recheck))
}

struct Ticketer {
    seal: Arc<dyn Seal>,
    /// The context, as associated data.
    aad: Vec<u8>,
    /// Under `-y`: a session without a client chain cannot be ours (the
    /// context says so already); a second guard.
    chain_required: bool,
    /// Checks a session's client certificate chain again (see the top).
    recheck: Option<Recheck>,
    /// How many tickets this connection has tried to open.
    opens: AtomicUsize,
    /// What the tickets this connection opened pass on to the one it
    /// issues.
    opened: Mutex<Option<Opened>>,
    /// The lifetime hint of the ticket last sealed (rustls asks right after
    /// `encrypt`).
    hint: AtomicU32,
}

/// What the tickets a connection opened leave to the next one.
struct Opened {
    /// The earliest issue time among them (none later than when it opened).
    issued: u64,
    /// The client chain one of them recorded (all that record one record
    /// the same: `Recheck` refuses a second).
    chain: Option<Chain>,
}

impl std::fmt::Debug for Ticketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The keys are not ours to show; nothing else is worth it.
        f.write_str("Ticketer")
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The protocol version in rustls' encoding of a server session
/// (`ServerSessionValue`: an optional SNI, then the version). The one
/// field of it read here, for a guard that fails closed; the unit tests
/// read real sessions of the rustls that Cargo.lock pins, so a change of
/// encoding fails them when rustls is updated.
fn rustls_version(state: &[u8]) -> Option<u16> {
    let mut r = Reader(state);
    match r.u8()? {
        0 => {}
        1 => {
            r.short()?;
        }
        _ => return None,
    }
    r.u16()
}

fn u24(n: usize) -> Option<[u8; 3]> {
    let n = u32::try_from(n).ok().filter(|&n| n < 1 << 24)?;
    let [_, a, b, c] = n.to_be_bytes();
    Some([a, b, c])
}

/// Our part of the plaintext: the issue time and the client chain.
fn ours(issued: u64, chain: Option<&[CertificateDer<'_>]>) -> Option<Vec<u8>> {
    let chain = chain.unwrap_or_default();
    let mut list = Vec::new();
    for cert in chain {
        list.extend_from_slice(&u24(cert.len())?);
        list.extend_from_slice(cert);
    }
    let mut out = Vec::with_capacity(TIME_LEN + 3 + list.len());
    out.extend_from_slice(&issued.to_be_bytes());
    out.extend_from_slice(&u24(list.len())?);
    out.append(&mut list);
    Some(out)
}

/// Our part read back: the issue time, the chain (empty without one), and
/// rustls' state after them. None if it is not ours (a certificate of no
/// bytes included: an empty chain is an empty list).
fn read_ours(plain: &[u8]) -> Option<(u64, Vec<CertificateDer<'_>>, &[u8])> {
    let mut r = Reader(plain);
    let mut t = [0; TIME_LEN];
    t.copy_from_slice(r.take(TIME_LEN)?);
    let len = r.u24()?;
    let mut list = Reader(r.take(len)?);
    let mut chain = Vec::new();
    while !list.0.is_empty() {
        let len = list.u24()?;
        if len == 0 {
            return None;
        }
        chain.push(CertificateDer::from(list.take(len)?));
    }
    Some((u64::from_be_bytes(t), chain, r.0))
}

impl Ticketer {
    fn new(seal: Arc<dyn Seal>, context: &Context, recheck: Option<Recheck>) -> Ticketer {
        Ticketer {
            seal,
            aad: context.bytes(),
            chain_required: context.client_cert_mode == 2,
            recheck,
            opens: AtomicUsize::new(0),
            opened: Mutex::new(None),
            hint: AtomicU32::new(LIFETIME),
        }
    }

    /// The ticket for the session rustls encoded as `state`. Which client
    /// chain and which issue time it records, without reading either out
    /// of `state`:
    ///
    /// - a chain this connection's verifier accepted: a full handshake
    ///   with a client certificate, so that chain, and now;
    /// - otherwise, if this connection opened tickets: perhaps a
    ///   resumption of one of them, so the chain one of them recorded and
    ///   the earliest of their times. When rustls resumed none of them (a
    ///   full handshake without a client certificate), that is a ticket
    ///   checked against a chain its session never had, or a shorter life:
    ///   a refusal or a full handshake sooner, never a check skipped;
    /// - otherwise a full handshake without a client certificate: no
    ///   chain, and now.
    fn encrypt_at(&self, state: &[u8], now: u64) -> Option<Vec<u8>> {
        // Second guard after `configure`: a TLS 1.2 session gets no ticket
        // (rustls then sends none).
        if rustls_version(state)? != 0x0304 {
            return None;
        }
        let accepted = self.recheck.as_ref().and_then(Recheck::accepted);
        let opened = self.opened.lock().ok()?;
        let (issued, chain) = match (accepted, &*opened) {
            (Some(chain), _) => (now, Some(chain)),
            (None, Some(o)) => (o.issued, o.chain.clone()),
            (None, None) => (now, None),
        };
        if chain.is_none() && self.chain_required {
            return None;
        }
        let left = u64::from(LIFETIME).saturating_sub(now.saturating_sub(issued));
        if left == 0 {
            // Nothing left to resume: no ticket (rustls sends none).
            return None;
        }
        // The plaintext holds the session's resumption secret: wiped once
        // sealed.
        let mut body = Secret(ours(issued, chain.as_deref())?);
        body.0.reserve_exact(state.len());
        body.0.extend_from_slice(state);
        let ticket = self.seal.seal(&self.aad, &body.0)?;
        // `left` is at most LIFETIME, a u32.
        self.hint.store(left as u32, Ordering::Relaxed);
        Some(ticket)
    }

    fn decrypt_at(&self, ticket: &[u8], now: u64) -> Option<Vec<u8>> {
        if self.opens.fetch_add(1, Ordering::Relaxed) >= MAX_OPENS {
            return None;
        }
        let body = Secret(self.seal.open(&self.aad, ticket)?);
        let (issued, chain, state) = read_ours(&body.0)?;
        if issued > now.saturating_add(SKEW) {
            return None;
        }
        // Ahead of our clock within the skew: now.
        let issued = issued.min(now);
        if now - issued > u64::from(LIFETIME) {
            return None;
        }
        if chain.is_empty() && self.chain_required {
            return None;
        }
        if !chain.is_empty() && !self.recheck.as_ref().is_some_and(|r| r.accepts(&chain)) {
            return None;
        }
        let mut opened = self.opened.lock().ok()?;
        let o = opened.get_or_insert(Opened {
            issued,
            chain: None,
        });
        o.issued = o.issued.min(issued);
        if !chain.is_empty() {
            o.chain = Some(chain.into_iter().map(CertificateDer::into_owned).collect());
        }
        Some(state.to_vec())
    }
}

impl ProducesTickets for Ticketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        self.hint.load(Ordering::Relaxed)
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.encrypt_at(plain, now())
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        self.decrypt_at(ticket, now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Log;
    use rustls::pki_types::UnixTime;
    use rustls::server::danger::ClientCertVerifier;

    /// Keys as the holder would hold them: the tests seal with the file
    /// side, so that what they check is what a real ticket does.
    fn keys(raw: &[u8]) -> Arc<dyn Seal> {
        Arc::new(keys::TicketKeys::from_bytes(raw))
    }

    fn ctx(name: Option<&str>, mode: u8) -> Context<'_> {
        Context {
            server_name: name,
            client_cert_mode: mode,
            anchors: [0; 32],
        }
    }

    /// rustls' encoding of a server session: `sni`, `version`, `suite`, a
    /// secret, no EMS, the client `chain` if not empty, then what the
    /// ticketer does not read.
    fn state(sni: Option<&str>, version: u16, suite: u16, chain: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        match sni {
            Some(name) => {
                out.push(1);
                out.push(name.len() as u8);
                out.extend_from_slice(name.as_bytes());
            }
            None => out.push(0),
        }
        out.extend_from_slice(&version.to_be_bytes());
        out.extend_from_slice(&suite.to_be_bytes());
        out.extend_from_slice(b"\x04abcd\x00");
        if chain.is_empty() {
            out.push(0);
        } else {
            let u24 = |n: usize| [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            let list: Vec<u8> = chain
                .iter()
                .flat_map(|c| [&u24(c.len())[..], c].concat())
                .collect();
            out.push(1);
            out.extend_from_slice(&u24(list.len()));
            out.extend_from_slice(&list);
        }
        out.extend_from_slice(b"\x00rest of the state");
        out
    }

    const AES256: u16 = 0x1302;
    const AES128: u16 = 0x1301;

    /// A TLS 1.3 session with the SNI `a.b`, no client certificate.
    fn state13() -> Vec<u8> {
        state(Some("a.b"), 0x0304, AES256, &[])
    }

    fn sealer(k: &Arc<dyn Seal>, c: &Context) -> Ticketer {
        Ticketer::new(k.clone(), c, None)
    }

    /// A ticket sealed by `t`'s seal, as if at `when`, recording the
    /// client `chain`, for rustls' `state`.
    fn seal_at(t: &Ticketer, when: u64, chain: &[&[u8]], state: &[u8]) -> Vec<u8> {
        let chain: Vec<_> = chain.iter().map(|c| CertificateDer::from(*c)).collect();
        let body = [ours(when, Some(&chain)).unwrap(), state.to_vec()].concat();
        t.seal.seal(&t.aad, &body).unwrap()
    }

    /// The issue time and the client chain sealed in `ticket`.
    fn sealed(t: &Ticketer, ticket: &[u8]) -> (u64, Vec<Vec<u8>>) {
        let plain = t.seal.open(&t.aad, ticket).unwrap();
        let (issued, chain, _) = read_ours(&plain).unwrap();
        (issued, chain.iter().map(|c| c.to_vec()).collect())
    }

    /// The issue time sealed in `ticket`.
    fn sealed_time(t: &Ticketer, ticket: &[u8]) -> u64 {
        sealed(t, ticket).0
    }

    /// A ticket opens only under the context it was sealed for (the
    /// server name's case aside); what the seal does with changed bytes is
    /// keys.rs's test.
    #[test]
    fn context_tampering_and_versions() {
        let k = keys(&[7u8; 32]);
        let t = ticketer(k.clone(), &ctx(Some("a.b"), 1), None)
            .encrypt(&state13())
            .unwrap();
        let opens = |c: &Context| ticketer(k.clone(), c, None).decrypt(&t).is_some();
        assert!(opens(&ctx(Some("a.b"), 1)));
        assert!(opens(&ctx(Some("A.B"), 1)));
        assert!(!opens(&ctx(Some("a.c"), 1)));
        assert!(!opens(&ctx(None, 1)));
        assert!(!opens(&ctx(Some("a.b"), 2)));
        let mut other = ctx(Some("a.b"), 1);
        other.anchors[0] = 1;
        assert!(!opens(&other));
        let mut bad = t.clone();
        *bad.last_mut().unwrap() ^= 1;
        let same = ticketer(k.clone(), &ctx(Some("a.b"), 1), None);
        assert!(same.decrypt(&bad).is_none());
        // TLS 1.2 states, or any whose version cannot be read, are never
        // sealed.
        assert!(same.encrypt(&state(None, 0x0303, AES256, &[])).is_none());
        assert!(same
            .encrypt(&state(Some("a.b"), 0x0303, AES256, &[]))
            .is_none());
        assert!(same.encrypt(b"").is_none());
        assert!(same.encrypt(b"\x02\x03\x04").is_none());
        let full = state(Some("a.b"), 0x0304, AES256, &[]);
        for n in 0..7 {
            assert!(same.encrypt(&full[..n]).is_none(), "{n} bytes");
        }
        assert!(same.encrypt(&full).is_some());
    }

    /// One connection opens at most MAX_OPENS tickets, good or bad: the
    /// next, even a good one, opens nothing.
    #[test]
    fn a_connection_opens_at_most_max_opens_tickets() {
        let k = keys(&[7u8; 32]);
        let t = sealer(&k, &ctx(None, 0));
        let ticket = t.encrypt(&state(None, 0x0304, AES256, &[])).unwrap();
        for _ in 0..MAX_OPENS - 1 {
            assert!(t.decrypt(b"not a ticket").is_none());
        }
        assert!(t.decrypt(&ticket).is_some());
        assert!(t.decrypt(&ticket).is_none());
        assert!(sealer(&k, &ctx(None, 0)).decrypt(&ticket).is_some());
    }

    #[test]
    fn expired_tickets_do_not_open() {
        let k = keys(&[9u8; 32]);
        let plain = state(None, 0x0304, AES256, &[]);
        let now = 1_000_000_000;
        let open = |when| {
            let t = sealer(&k, &ctx(None, 0));
            t.decrypt_at(&seal_at(&t, when, &[], &plain), now).is_some()
        };
        assert!(open(now - 10));
        assert!(open(now - u64::from(LIFETIME)));
        assert!(!open(now - u64::from(LIFETIME) - 1));
        assert!(!open(now + 3600));
        assert!(!open(u64::MAX));
    }

    /// A ticket sealed by an engine whose clock was ahead, within the skew,
    /// opens as if sealed now (it used to underflow `now - issued`: a panic
    /// in debug builds, a wrap in release ones); beyond the skew, it does
    /// not open.
    #[test]
    fn a_ticket_from_a_clock_ahead_within_the_skew_counts_as_sealed_now() {
        let k = keys(&[9u8; 32]);
        let plain = state(None, 0x0304, AES256, &[]);
        let now = 1_000_000_000;
        for ahead in [1, SKEW] {
            let t = sealer(&k, &ctx(None, 0));
            assert!(t
                .decrypt_at(&seal_at(&t, now + ahead, &[], &plain), now)
                .is_some());
            // The next ticket: sealed at now, a whole lifetime.
            let next = t.encrypt_at(&plain, now).unwrap();
            assert_eq!(sealed_time(&t, &next), now);
            assert_eq!(t.lifetime(), LIFETIME);
        }
        let t = sealer(&k, &ctx(None, 0));
        assert!(t
            .decrypt_at(&seal_at(&t, now + SKEW + 1, &[], &plain), now)
            .is_none());
    }

    /// RFC 8446, 4.6.1: a ticket issued on a resumed connection keeps the
    /// time of the full handshake, its lifetime hint counts down from it,
    /// and at the end no ticket is issued. Whether rustls resumed from the
    /// ticket is not read out of its encoding: a ticket that opened passes
    /// its time on even if rustls could not resume from it (another cipher
    /// suite), a shorter life, never a longer one; a client chain verified
    /// on the connection (a full handshake) starts a new lifetime.
    #[test]
    fn a_ticket_issued_on_a_resumed_connection_keeps_the_original_time() {
        let k = keys(&[9u8; 32]);
        let plain = state(Some("a.b"), 0x0304, AES256, &[]);
        let now = 1_000_000_000;
        let first = now - 1000;
        let t = sealer(&k, &ctx(Some("a.b"), 0));
        assert!(t
            .decrypt_at(&seal_at(&t, first, &[], &plain), now)
            .is_some());
        let next = t.encrypt_at(&plain, now).unwrap();
        assert_eq!(sealed_time(&t, &next), first);
        assert_eq!(t.lifetime(), LIFETIME - 1000);
        // The next link, later: still the first time.
        let later = now + 3000;
        let t = sealer(&k, &ctx(Some("a.b"), 0));
        assert!(t.decrypt_at(&next, later).is_some());
        let last = t.encrypt_at(&plain, later).unwrap();
        assert_eq!(sealed_time(&t, &last), first);
        assert_eq!(t.lifetime(), LIFETIME - 4000);
        // At the very end: it opens, but nothing is left to issue.
        let end = first + u64::from(LIFETIME);
        let t = sealer(&k, &ctx(Some("a.b"), 0));
        assert!(t.decrypt_at(&last, end).is_some());
        assert!(t.encrypt_at(&plain, end).is_none());
        assert!(t.decrypt_at(&last, end + 1).is_none());
        // Opened, but the session is another suite's: still the first time.
        let t = sealer(&k, &ctx(Some("a.b"), 0));
        assert!(t.decrypt_at(&last, now).is_some());
        let other = state(Some("a.b"), 0x0304, AES128, &[]);
        let full = t.encrypt_at(&other, now).unwrap();
        assert_eq!(sealed_time(&t, &full), first);
        assert_eq!(t.lifetime(), LIFETIME - 1000);
        // Opened, then a client chain verified: a full handshake, now.
        let y = ctx(Some("a.b"), 1);
        let recheck = Recheck::new(Arc::new(Says(None, Default::default())), Log::new(0));
        let t = Ticketer::new(k.clone(), &y, Some(recheck.clone()));
        assert!(t
            .decrypt_at(&seal_at(&t, first, &[], &plain), now)
            .is_some());
        let cert = CertificateDer::from(&b"end entity"[..]);
        recheck
            .watching(Arc::new(Says(None, Default::default())))
            .verify_client_cert(&cert, &[], UnixTime::now())
            .unwrap();
        let fresh = t.encrypt_at(&other, now).unwrap();
        assert_eq!(sealed(&t, &fresh), (now, vec![cert.to_vec()]));
        assert_eq!(t.lifetime(), LIFETIME);
        // Nothing opened: a full handshake.
        let t = sealer(&k, &ctx(Some("a.b"), 0));
        assert_eq!(sealed_time(&t, &t.encrypt_at(&plain, now).unwrap()), now);
        assert_eq!(t.lifetime(), LIFETIME);
    }

    /// A client certificate verifier that says what it was told to.
    #[derive(Debug)]
    struct Says(
        Option<rustls::CertificateError>,
        std::sync::Mutex<Vec<Vec<u8>>>,
    );

    impl ClientCertVerifier for Says {
        fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
            &[]
        }
        fn verify_client_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            _: UnixTime,
        ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
            let mut seen = self.1.lock().unwrap();
            seen.push(end_entity.to_vec());
            seen.extend(intermediates.iter().map(|c| c.to_vec()));
            match &self.0 {
                None => Ok(rustls::server::danger::ClientCertVerified::assertion()),
                Some(e) => Err(rustls::Error::InvalidCertificate(e.clone())),
            }
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General("unused".into()))
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General("unused".into()))
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            Vec::new()
        }
    }

    /// A session's client chain is verified again when its ticket opens:
    /// refused (revoked, say), the ticket opens nothing; without a
    /// verifier, a ticket with a chain never opens; without a chain,
    /// nothing is asked.
    #[test]
    fn a_ticket_opens_only_if_its_client_chain_still_verifies() {
        let k = keys(&[9u8; 32]);
        let chain: [&[u8]; 2] = [b"end entity", b"intermediate"];
        let y = ctx(Some("a.b"), 1);
        let ticket = seal_at(&sealer(&k, &y), now(), &chain, &state13());
        let without = seal_at(&sealer(&k, &y), now(), &[], &state13());
        for (answer, opens) in [
            (None, true),
            (Some(rustls::CertificateError::Revoked), false),
            (Some(rustls::CertificateError::Expired), false),
        ] {
            let says = Arc::new(Says(answer, Default::default()));
            let recheck = || Some(Recheck::new(says.clone(), Log::new(0)));
            let t = ticketer(k.clone(), &y, recheck());
            assert_eq!(t.decrypt(&ticket).is_some(), opens);
            assert_eq!(*says.1.lock().unwrap(), chain.map(<[u8]>::to_vec));
            let t = ticketer(k.clone(), &y, recheck());
            assert!(t.decrypt(&without).is_some());
            assert_eq!(says.1.lock().unwrap().len(), 2, "no chain, no check");
        }
        let t = ticketer(k.clone(), &y, None);
        assert!(t.decrypt(&ticket).is_none());
        assert!(t.decrypt(&without).is_some());
        // Under -y, a ticket that records no chain never opens.
        let yy = ctx(Some("a.b"), 2);
        let accepts = || {
            Some(Recheck::new(
                Arc::new(Says(None, Default::default())),
                Log::new(0),
            ))
        };
        let t = ticketer(k.clone(), &yy, accepts());
        assert!(t
            .decrypt(&seal_at(&sealer(&k, &yy), now(), &[], &state13()))
            .is_none());
        assert!(t
            .decrypt(&seal_at(&sealer(&k, &yy), now(), &chain, &state13()))
            .is_some());
        // Nor is one sealed there.
        assert!(ticketer(k.clone(), &yy, accepts())
            .encrypt(&state13())
            .is_none());
        // Our part cut short, or holding a certificate of no bytes: nothing.
        let t = sealer(&k, &y);
        let good = [ours(now(), None).unwrap(), state13()].concat();
        assert!(t.decrypt(&t.seal.seal(&t.aad, &good).unwrap()).is_some());
        for bad in [
            &good[..TIME_LEN + 2],
            &[&now().to_be_bytes()[..], b"\x00\x00\x05\x00\x00\x00"].concat(),
            &[&now().to_be_bytes()[..], b"\x00\x00\x03\x00\x00\x00"].concat(),
        ] {
            let t = sealer(&k, &y);
            assert!(t.decrypt(&t.seal.seal(&t.aad, bad).unwrap()).is_none());
        }
    }

    /// One verification per connection: a ticket offered again (rustls
    /// opens every identity of a hello, before any binder is checked) gets
    /// the first verdict, unverified; a ticket with another chain opens
    /// nothing, unverified.
    #[test]
    fn one_connection_verifies_one_client_chain() {
        let k = keys(&[9u8; 32]);
        let (chain, other): ([&[u8]; 1], [&[u8]; 1]) = ([b"carol"], [b"dave"]);
        let y = ctx(Some("a.b"), 1);
        let carol = seal_at(&sealer(&k, &y), now(), &chain, &state13());
        let dave = seal_at(&sealer(&k, &y), now(), &other, &state13());
        for (answer, opens) in [
            (None, true),
            (Some(rustls::CertificateError::Revoked), false),
        ] {
            let says = Arc::new(Says(answer, Default::default()));
            let t = ticketer(k.clone(), &y, Some(Recheck::new(says.clone(), Log::new(0))));
            for _ in 0..MAX_OPENS - 1 {
                assert_eq!(t.decrypt(&carol).is_some(), opens);
            }
            assert!(t.decrypt(&dave).is_none());
            assert_eq!(*says.1.lock().unwrap(), [b"carol".to_vec()]);
        }
    }

    /// Records what `encrypt` was given and answered, for the tests below.
    #[derive(Debug)]
    struct Spy(Arc<dyn ProducesTickets>, std::sync::Mutex<Vec<Sealed>>);

    /// rustls' state given to `encrypt`, and the ticket it made, if any.
    type Sealed = (Vec<u8>, Option<Vec<u8>>);

    impl Spy {
        fn new(t: Arc<dyn ProducesTickets>) -> Arc<Spy> {
            Arc::new(Spy(t, Default::default()))
        }

        fn answers(&self) -> Vec<bool> {
            self.1
                .lock()
                .unwrap()
                .iter()
                .map(|a| a.1.is_some())
                .collect()
        }
    }

    impl ProducesTickets for Spy {
        fn enabled(&self) -> bool {
            true
        }
        fn lifetime(&self) -> u32 {
            self.0.lifetime()
        }
        fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
            let t = self.0.encrypt(plain);
            self.1.lock().unwrap().push((plain.to_vec(), t.clone()));
            t
        }
        fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
            self.0.decrypt(cipher)
        }
    }

    /// Moves every pending record from one side to the other.
    fn pump(
        from: &mut impl std::ops::DerefMut<Target = rustls::ConnectionCommon<impl Sized>>,
        to: &mut impl std::ops::DerefMut<Target = rustls::ConnectionCommon<impl Sized>>,
    ) {
        let mut buf = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            to.read_tls(&mut rd).unwrap();
            to.process_new_packets().unwrap();
        }
    }

    /// A server key pair for `localhost`, and roots that trust it.
    fn server_pair() -> (Arc<rustls::sign::CertifiedKey>, rustls::RootCertStore) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let signer = rustls::crypto::aws_lc_rs::sign::any_supported_type(&der).unwrap();
        let pair = Arc::new(rustls::sign::CertifiedKey::new(
            vec![cert.der().clone()],
            signer,
        ));
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        (pair, roots)
    }

    /// One whole handshake between real rustls ends, in memory: how the
    /// server ended it.
    fn handshake(
        server: Arc<rustls::ServerConfig>,
        client: Arc<rustls::ClientConfig>,
    ) -> Option<rustls::HandshakeKind> {
        let mut s = rustls::ServerConnection::new(server).unwrap();
        let mut c = rustls::ClientConnection::new(client, "localhost".try_into().unwrap()).unwrap();
        for _ in 0..10 {
            pump(&mut c, &mut s);
            pump(&mut s, &mut c);
        }
        assert!(!s.is_handshaking() && !c.is_handshaking());
        s.handshake_kind()
    }

    /// With real rustls sessions: a TLS 1.3 state is sealed and resumes;
    /// a TLS 1.2 state, should a ticketer ever reach a TLS 1.2 handshake,
    /// is refused (so the guard reads rustls' encoding right).
    #[test]
    fn rustls_states_tls13_sealed_tls12_refused() {
        let (pair, roots) = server_pair();
        let keys = keys(&[4u8; 32]);
        for (version, sealed) in [
            (&rustls::version::TLS13, true),
            (&rustls::version::TLS12, false),
        ] {
            let client = Arc::new(
                rustls::ClientConfig::builder_with_protocol_versions(&[version])
                    .with_root_certificates(roots.clone())
                    .with_no_client_auth(),
            );
            let spy = Spy::new(ticketer(keys.clone(), &ctx(Some("localhost"), 0), None));
            let mut kinds = Vec::new();
            for _ in 0..2 {
                let config = crate::tls::server_config(
                    crate::tls::provider(),
                    pair.clone(),
                    None,
                    Vec::new(),
                    Some(spy.clone()),
                    None,
                )
                .unwrap();
                kinds.push(handshake(config, client.clone()));
            }
            let answers = spy.answers();
            use rustls::HandshakeKind::*;
            if sealed {
                assert_eq!(answers, [true, true]);
                assert_eq!(kinds, [Some(Full), Some(Resumed)]);
            } else {
                assert!(
                    answers.iter().all(|&a| !a) && !answers.is_empty(),
                    "{answers:?}"
                );
                assert_eq!(kinds, [Some(Full), Some(Full)]);
            }
        }
    }

    /// With real rustls sessions and a client certificate: the chain a
    /// ticket records is the one the connection's verifier accepted, the
    /// client's, on a full handshake as on a resumption; a resumption checks
    /// it again
    /// and resumes while it passes; once the check refuses it (a
    /// revocation), the same client gets a full handshake, in which the
    /// server's verifier sees its certificate again.
    #[test]
    fn rustls_states_carry_the_client_chain_that_is_checked_again() {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        use rustls::HandshakeKind::*;
        let (pair, roots) = server_pair();
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "client CA");
        let ca = params.self_signed(&ca_key).unwrap();
        let carol_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, "carol");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let carol = params.signed_by(&carol_key, &ca, &ca_key).unwrap();
        let client = Arc::new(
            rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
                .with_root_certificates(roots)
                .with_client_auth_cert(
                    vec![carol.der().clone()],
                    rustls::pki_types::PrivateKeyDer::Pkcs8(carol_key.serialize_der().into()),
                )
                .unwrap(),
        );
        let mut anchors = rustls::RootCertStore::empty();
        anchors.add(ca.der().clone()).unwrap();
        let provider = crate::tls::provider();
        let verifier =
            crate::tls::client_verifier(provider.clone(), anchors, Vec::new(), true).unwrap();
        let keys = keys(&[4u8; 32]);
        let connect = |recheck: Arc<dyn ClientCertVerifier>| {
            let recheck = Recheck::new(recheck, Log::new(0));
            let watched = recheck.watching(verifier.clone());
            let context = ctx(Some("localhost"), 2);
            let spy = Spy::new(ticketer(keys.clone(), &context, Some(recheck)));
            let config = crate::tls::server_config(
                provider.clone(),
                pair.clone(),
                Some(watched),
                Vec::new(),
                Some(spy.clone()),
                None,
            )
            .unwrap();
            let kind = handshake(config, client.clone());
            let (_, ticket) = spy.1.lock().unwrap().pop().unwrap();
            let plain = keys.open(&context.bytes(), &ticket.unwrap()).unwrap();
            let (_, chain, _) = read_ours(&plain).unwrap();
            assert_eq!(chain, [carol.der().clone()]);
            kind
        };
        let says = |answer| Arc::new(Says(answer, Default::default()));
        assert_eq!(connect(says(None)), Some(Full));
        let accepts = says(None);
        assert_eq!(connect(accepts.clone()), Some(Resumed));
        assert_eq!(*accepts.1.lock().unwrap(), [carol.der().to_vec()]);
        let refuses = says(Some(rustls::CertificateError::Revoked));
        assert_eq!(connect(refuses.clone()), Some(Full));
        assert_eq!(*refuses.1.lock().unwrap(), [carol.der().to_vec()]);
    }

    /// `state` as a later rustls might encode it: a field (one zero byte)
    /// added before the client chain, which a reading of the old encoding
    /// takes for "no chain".
    fn state_moved(chain: &[&[u8]]) -> Vec<u8> {
        let mut out = state(Some("a.b"), 0x0304, AES256, chain);
        let secret = out.windows(6).position(|w| w == b"\x04abcd\x00").unwrap();
        out.insert(secret + 6, 0);
        out
    }

    /// Issue 26: the chain a ticket's recheck verifies is the one the
    /// connection's own verifier accepted, never one read out of rustls'
    /// encoding. Here rustls' state is as a later rustls might encode it,
    /// read by the old parser as having no chain: the chain is checked
    /// again all the same, and, revoked since, opens nothing, under `-Y`
    /// as under `-y`.
    #[test]
    fn a_change_of_rustls_encoding_cannot_skip_the_recheck() {
        let k = keys(&[9u8; 32]);
        let chain: [&[u8]; 2] = [b"end entity", b"intermediate"];
        let certs: Vec<_> = chain.iter().map(|c| CertificateDer::from(*c)).collect();
        let moved = state_moved(&chain);
        for mode in [1, 2] {
            let c = ctx(Some("a.b"), mode);
            // The first connection: a full handshake whose verifier
            // accepted the client's chain.
            let first = Recheck::new(Arc::new(Says(None, Default::default())), Log::new(0));
            first
                .watching(Arc::new(Says(None, Default::default())))
                .verify_client_cert(&certs[0], &certs[1..], UnixTime::now())
                .unwrap();
            let ticket = ticketer(k.clone(), &c, Some(first))
                .encrypt(&moved)
                .unwrap();
            // The next: the chain is revoked since.
            let revoked = Arc::new(Says(
                Some(rustls::CertificateError::Revoked),
                Default::default(),
            ));
            let t = ticketer(
                k.clone(),
                &c,
                Some(Recheck::new(revoked.clone(), Log::new(0))),
            );
            assert!(
                t.decrypt(&ticket).is_none(),
                "mode {mode}: opened unchecked"
            );
            assert_eq!(
                *revoked.1.lock().unwrap(),
                chain.map(<[u8]>::to_vec),
                "mode {mode}"
            );
        }
    }
}
