//! Session tickets shared by every engine of a service (issue 10): the key
//! file named by `TLS_TICKET_KEYFILE`, and the `ProducesTickets` that seals
//! and opens tickets with it. Each connection is its own process, so
//! rustls' own `Ticketer` (keys born and dead with the process) could never
//! resume anything; a file that every engine reads can.
//!
//! The file: 1 to 16 raw 32-byte keys, concatenated, newest first (`head -c
//! 64 /dev/urandom` makes one of two keys). The first key seals new
//! tickets; every key opens them. It must be readable by its owner only.
//!
//! A ticket: key name (8 bytes) || nonce (12) || AES-256-GCM sealed (issue
//! time, 8 bytes big-endian || rustls' session state) || tag (16). The name
//! and the AEAD key are both derived from the file key with HKDF, so the
//! name reveals nothing of the key, and nothing in the clear identifies the
//! client. The associated data binds the ticket to the configuration that
//! issued it (server name, client certificate mode, trust anchors): a
//! ticket from elsewhere fails to open and the client gets a full
//! handshake. rustls checks neither the client certificate policy nor the
//! age of a stateless ticket, so both are done here.
//!
//! Resumption checks what a full handshake checks (issue 19). rustls does
//! not call the client certificate verifier on a resumption: the session's
//! chain comes out of the ticket as it went in. So a ticket whose session
//! has a client certificate opens only if the verifier of a full handshake
//! accepts that chain again now, against the trust anchors and CRLs this
//! engine read: a certificate revoked (or expired) since, even under a CRL
//! published after the ticket, opens nothing, and the client gets a full
//! handshake, which refuses its certificate exactly as it refuses any other.
//!
//! A chain of resumptions ends: the issue time sealed in a ticket is that
//! of the full handshake its session descends from, and the lifetime hint
//! counts down from it, so no ticket resumes more than `LIFETIME` after the
//! client last authenticated (RFC 8446, section 4.6.1).
//!
//! TLS 1.3 only: the caller enables tickets only for clients that offer
//! TLS 1.3, and `encrypt` refuses any state that is not TLS 1.3's, so that
//! no TLS 1.2 ticket (which carries the master secret) is ever issued.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hkdf::{Prk, HKDF_SHA256};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::ProducesTickets;

use crate::env::Env;
use crate::error::Error;
use crate::keys::Secret;
use crate::log::Log;
use crate::source::Source;
use crate::wire::Reader;

/// The variable naming the key file.
pub const VAR: &str = "TLS_TICKET_KEYFILE";
/// Bytes per key in the file.
pub const KEY_LEN: usize = 32;
/// Keys a file may hold: enough for any rotation schedule, small enough
/// that deriving them all stays in the microseconds.
pub const MAX_KEYS: usize = 16;
/// How long a ticket resumes, in seconds, counted from the full handshake
/// its session descends from (the hint sent to clients counts down too).
pub const LIFETIME: u32 = 4 * 3600;
/// Clock skew tolerated between the engine that sealed a ticket and the
/// one that opens it (the same machine, normally: none at all). A time
/// ahead of ours by no more than this counts as now.
const SKEW: u64 = 60;

const NAME_LEN: usize = 8;
const TAG_LEN: usize = 16;
const TIME_LEN: usize = 8;
const HEADER: usize = NAME_LEN + NONCE_LEN;

/// The raw keys of the file, overwritten when dropped.
pub struct TicketKeys {
    raw: Secret,
}

impl TicketKeys {
    /// The keys of the file `TLS_TICKET_KEYFILE` names; None when it is
    /// unset or empty (tickets off).
    pub fn load(env: &Env) -> Result<Option<TicketKeys>, Error> {
        match env.get(VAR) {
            None => Ok(None),
            Some(path) if path.is_empty() => Ok(None),
            Some(path) => read(path).map(Some),
        }
    }

    /// A ticketer for one connection, bound to `context` (see `Context`).
    /// Keys are derived when first needed: a full handshake derives the
    /// first only, a resumption the one that opens its ticket too. A ticket
    /// whose session has a client certificate opens only if `recheck`
    /// accepts it again; without `recheck`, never.
    pub fn ticketer(
        &self,
        context: &Context,
        recheck: Option<Recheck>,
    ) -> Arc<dyn ProducesTickets> {
        Arc::new(self.sealer(context, recheck))
    }

    fn sealer(&self, context: &Context, recheck: Option<Recheck>) -> Ticketer {
        Ticketer {
            derived: (0..self.raw.0.len() / KEY_LEN)
                .map(|_| OnceLock::new())
                .collect(),
            raw: Secret(self.raw.0.clone()),
            aad: context.bytes(),
            chain_required: context.client_cert_mode == 2,
            recheck,
            opened: Mutex::new(None),
            hint: AtomicU32::new(LIFETIME),
        }
    }
}

/// How the client certificate chain of a session is checked again when its
/// ticket comes back: the verifier of a full handshake, and where to say
/// why a chain no longer passes (`-v 2`).
#[derive(Clone)]
pub struct Recheck {
    pub verifier: Arc<dyn ClientCertVerifier>,
    pub log: Log,
}

impl Recheck {
    /// Whether a full handshake would accept `chain` (end entity first) now.
    fn accepts(&self, chain: &[CertificateDer<'_>]) -> bool {
        let Some((end_entity, intermediates)) = chain.split_first() else {
            return false;
        };
        match self
            .verifier
            .verify_client_cert(end_entity, intermediates, UnixTime::now())
        {
            Ok(_) => true,
            Err(e) => {
                self.log.info(format_args!(
                    "ticket refused, full handshake: its client certificate no longer verifies: {e}"
                ));
                false
            }
        }
    }
}

fn read(path: &OsStr) -> Result<TicketKeys, Error> {
    let source = Source::file(VAR, path);
    let unable = |e: &std::io::Error| source.unreadable(e);
    let invalid = |why: &str| source.invalid(why);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        // O_NONBLOCK: a FIFO would block the open; it is then refused as
        // not a regular file.
        .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| unable(&e))?;
    // The mode of the file actually opened, not of whatever the name points
    // to a moment later.
    let meta = file.metadata().map_err(|e| unable(&e))?;
    if !meta.is_file() {
        return Err(invalid("not a regular file"));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(invalid(&format!(
            "readable or writable by group or others (mode {:o}; make it 600)",
            meta.mode() & 0o777
        )));
    }
    // Sized from the open file, so that it is read in one read(2).
    let size = meta.len();
    let max = (KEY_LEN * MAX_KEYS) as u64;
    if size == 0 {
        return Err(invalid("the file is empty"));
    }
    if size > max {
        return Err(invalid(&format!(
            "more than {MAX_KEYS} keys of {KEY_LEN} bytes"
        )));
    }
    if size % KEY_LEN as u64 != 0 {
        return Err(invalid(&format!(
            "{size} bytes, not a multiple of {KEY_LEN} (the file holds raw {KEY_LEN}-byte keys)"
        )));
    }
    let mut raw = Secret(Vec::with_capacity(size as usize));
    (&mut file)
        .take(size)
        .read_to_end(&mut raw.0)
        .map_err(|e| unable(&e))?;
    if raw.0.len() as u64 != size {
        return Err(invalid("the file changed while it was read"));
    }
    Ok(TicketKeys { raw })
}

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
        out.extend_from_slice(b"s6-tlsd-io ticket v1\0");
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

struct Key {
    name: [u8; NAME_LEN],
    aead: LessSafeKey,
}

/// The name and the AEAD key of one file key: one HKDF-Expand of 40
/// bytes, the name first. No Extract step: the file's keys are uniformly
/// random already (RFC 5869, section 3.3). None cannot happen (40 bytes is
/// far below HKDF-SHA256's limit, 32 is AES-256's key size); it would only
/// mean no ticket.
fn derive(file_key: &[u8]) -> Option<Key> {
    let prk = Prk::new_less_safe(HKDF_SHA256, file_key);
    let mut out = Secret(vec![0; NAME_LEN + KEY_LEN]);
    prk.expand(&[b"s6-tlsd-io ticket key v1"], Len(out.0.len()))
        .and_then(|okm| okm.fill(&mut out.0))
        .ok()?;
    let mut name = [0; NAME_LEN];
    name.copy_from_slice(&out.0[..NAME_LEN]);
    let aead = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &out.0[NAME_LEN..]).ok()?);
    Some(Key { name, aead })
}

struct Len(usize);

impl aws_lc_rs::hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

struct Ticketer {
    /// The file's keys, newest first: the first seals.
    raw: Secret,
    /// Each key's name and AEAD key, derived on first use.
    derived: Vec<OnceLock<Option<Key>>>,
    /// The context, after the key name in the associated data.
    aad: Vec<u8>,
    /// Under `-y`: a session without a client chain cannot be ours (the
    /// context says so already); a second guard on the state's reading.
    chain_required: bool,
    /// Checks a session's client certificate chain again (see the top).
    recheck: Option<Recheck>,
    /// The last ticket this connection opened: the ticket issued on the
    /// connection it resumes inherits its time.
    opened: Mutex<Option<Opened>>,
    /// The lifetime hint of the ticket last sealed (rustls asks right after
    /// `encrypt`).
    hint: AtomicU32,
}

/// What a ticket that opened leaves to the next one.
struct Opened {
    /// Its issue time (not later than when it opened).
    issued: u64,
    /// Its session's `State::resumes`: rustls resumes from a ticket only
    /// when these match the connection's, so a ticket issued with others
    /// comes from a full handshake.
    resumes: Vec<u8>,
}

impl std::fmt::Debug for Ticketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No key material, not even names.
        write!(f, "Ticketer({} keys)", self.derived.len())
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Ticketer {
    fn key(&self, i: usize) -> Option<&Key> {
        let raw = self.raw.0.get(i * KEY_LEN..(i + 1) * KEY_LEN)?;
        self.derived.get(i)?.get_or_init(|| derive(raw)).as_ref()
    }

    fn aad(&self, name: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(NAME_LEN + self.aad.len());
        aad.extend_from_slice(name);
        aad.extend_from_slice(&self.aad);
        aad
    }
}

/// What the ticketer reads of rustls' encoding of a server session
/// (`ServerSessionValue`: an optional SNI, the version, the cipher suite,
/// the secret, the extended-master-secret flag, the optional client chain,
/// then what is of no concern here). The unit tests below read real
/// sessions of the rustls that Cargo.lock pins, so a change of encoding
/// fails them when rustls is updated.
struct State<'a> {
    /// The SNI, version and cipher suite: what rustls requires to be the
    /// same for a ticket to resume (besides the EMS flag, always off in
    /// TLS 1.3).
    resumes: &'a [u8],
    version: u16,
    /// The client certificate chain, end entity first; empty without one.
    chain: Vec<CertificateDer<'a>>,
}

fn parse_state(plain: &[u8]) -> Option<State<'_>> {
    let mut r = Reader(plain);
    match r.u8()? {
        0 => {}
        1 => {
            r.short()?;
        }
        _ => return None,
    }
    let v = r.take(2)?;
    let version = u16::from_be_bytes([v[0], v[1]]);
    r.take(2)?;
    let resumes = &plain[..plain.len() - r.0.len()];
    r.short()?;
    r.u8()?;
    let mut chain = Vec::new();
    match r.u8()? {
        0 => {}
        1 => {
            let len = r.u24()?;
            let mut list = Reader(r.take(len)?);
            while !list.0.is_empty() {
                let len = list.u24()?;
                chain.push(CertificateDer::from(list.take(len)?));
            }
            if chain.is_empty() {
                return None;
            }
        }
        _ => return None,
    }
    Some(State {
        resumes,
        version,
        chain,
    })
}

impl Ticketer {
    fn encrypt_at(&self, plain: &[u8], now: u64) -> Option<Vec<u8>> {
        // Second guard after `configure`: a TLS 1.2 session gets no ticket
        // (rustls then sends an empty one, which carries nothing).
        let state = parse_state(plain).filter(|s| s.version == 0x0304)?;
        // The time of the full handshake this session descends from: that
        // of the ticket it resumed from, if it resumed; now otherwise.
        let issued = match &*self.opened.lock().ok()? {
            Some(o) if o.resumes == state.resumes => o.issued,
            _ => now,
        };
        let left = u64::from(LIFETIME).saturating_sub(now.saturating_sub(issued));
        if left == 0 {
            // Nothing left to resume: no ticket (rustls sends none).
            return None;
        }
        let key = self.key(0)?;
        let mut nonce = [0; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(HEADER + TIME_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&key.name);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&issued.to_be_bytes());
        out.extend_from_slice(plain);
        let mut body = out.split_off(HEADER);
        key.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.aad(&key.name)),
                &mut body,
            )
            .ok()?;
        out.append(&mut body);
        // `left` is at most LIFETIME, a u32.
        self.hint.store(left as u32, Ordering::Relaxed);
        Some(out)
    }

    fn decrypt_at(&self, ticket: &[u8], now: u64) -> Option<Vec<u8>> {
        if ticket.len() < HEADER + TIME_LEN + TAG_LEN {
            return None;
        }
        let (name, rest) = ticket.split_at(NAME_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let key = (0..self.derived.len())
            .filter_map(|i| self.key(i))
            .find(|k| k.name == name)?;
        // The opened state holds the session's resumption secret: this copy
        // is wiped; rustls owns the one returned.
        let mut body = Secret(sealed.to_vec());
        let plain = key
            .aead
            .open_in_place(nonce, Aad::from(self.aad(name)), &mut body.0)
            .ok()?;
        let (issued, state) = plain.split_at(TIME_LEN);
        let mut t = [0; TIME_LEN];
        t.copy_from_slice(issued);
        let issued = u64::from_be_bytes(t);
        if issued > now.saturating_add(SKEW) {
            return None;
        }
        // Ahead of our clock within the skew: now.
        let issued = issued.min(now);
        if now - issued > u64::from(LIFETIME) {
            return None;
        }
        let parsed = parse_state(state)?;
        if parsed.chain.is_empty() && self.chain_required {
            return None;
        }
        if !parsed.chain.is_empty()
            && !self
                .recheck
                .as_ref()
                .is_some_and(|r| r.accepts(&parsed.chain))
        {
            return None;
        }
        *self.opened.lock().ok()? = Some(Opened {
            issued,
            resumes: parsed.resumes.to_vec(),
        });
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

    fn keys(raw: &[u8]) -> TicketKeys {
        TicketKeys {
            raw: Secret(raw.to_vec()),
        }
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

    fn ticketer(k: &TicketKeys, c: &Context) -> Ticketer {
        k.sealer(c, None)
    }

    /// A ticket sealed by `t`'s first key, as if at `when`, for `plain`.
    fn seal_at(t: &Ticketer, when: u64, plain: &[u8]) -> Vec<u8> {
        let key = t.key(0).unwrap();
        let nonce = [5u8; NONCE_LEN];
        let mut body = [&when.to_be_bytes()[..], plain].concat();
        key.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(t.aad(&key.name)),
                &mut body,
            )
            .unwrap();
        [&key.name[..], &nonce, &body].concat()
    }

    /// The issue time sealed in `ticket`.
    fn sealed_time(t: &Ticketer, ticket: &[u8]) -> u64 {
        let key = t.key(0).unwrap();
        let nonce = Nonce::try_assume_unique_for_key(&ticket[NAME_LEN..HEADER]).unwrap();
        let mut body = ticket[HEADER..].to_vec();
        let plain = key
            .aead
            .open_in_place(nonce, Aad::from(t.aad(&key.name)), &mut body)
            .unwrap();
        u64::from_be_bytes(plain[..TIME_LEN].try_into().unwrap())
    }

    #[test]
    fn seals_and_opens_with_rotation() {
        let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        let state13 = &state13()[..];
        let old = keys(&a).ticketer(&ctx(Some("a.b"), 0), None);
        let ticket = old.encrypt(state13).unwrap();
        assert!(!ticket.windows(4).any(|w| w == b"rest"));
        assert_eq!(old.decrypt(&ticket).as_deref(), Some(state13));
        // One rotation: the old key still opens.
        let rotated = keys(&[b, a].concat()).ticketer(&ctx(Some("a.b"), 0), None);
        assert_eq!(rotated.decrypt(&ticket).as_deref(), Some(state13));
        let new = rotated.encrypt(state13).unwrap();
        assert_ne!(new[..NAME_LEN], ticket[..NAME_LEN]);
        // Two rotations, the old key dropped: no more.
        let dropped = keys(&[c, b].concat()).ticketer(&ctx(Some("a.b"), 0), None);
        assert_eq!(dropped.decrypt(&ticket), None);
        assert_eq!(dropped.decrypt(&new).as_deref(), Some(state13));
    }

    #[test]
    fn context_tampering_and_versions() {
        let k = keys(&[7u8; 32]);
        let t = k
            .ticketer(&ctx(Some("a.b"), 1), None)
            .encrypt(&state13())
            .unwrap();
        assert!(k.ticketer(&ctx(Some("A.B"), 1), None).decrypt(&t).is_some());
        assert!(k.ticketer(&ctx(Some("a.c"), 1), None).decrypt(&t).is_none());
        assert!(k.ticketer(&ctx(None, 1), None).decrypt(&t).is_none());
        assert!(k.ticketer(&ctx(Some("a.b"), 2), None).decrypt(&t).is_none());
        let mut other = ctx(Some("a.b"), 1);
        other.anchors[0] = 1;
        assert!(k.ticketer(&other, None).decrypt(&t).is_none());
        let same = k.ticketer(&ctx(Some("a.b"), 1), None);
        for i in 0..t.len() {
            let mut bad = t.clone();
            bad[i] ^= 0x80;
            assert!(same.decrypt(&bad).is_none(), "byte {i}");
        }
        for n in 0..t.len() {
            assert!(same.decrypt(&t[..n]).is_none());
        }
        // TLS 1.2 states, or anything unparsable, are never sealed.
        assert!(same.encrypt(&state(None, 0x0303, AES256, &[])).is_none());
        assert!(same
            .encrypt(&state(Some("a.b"), 0x0303, AES256, &[]))
            .is_none());
        assert!(same.encrypt(b"").is_none());
        assert!(same.encrypt(b"\x00\x03\x04").is_none());
        let full = state(None, 0x0304, AES256, &[]);
        for n in 0..7 {
            assert!(same.encrypt(&full[..n]).is_none(), "{n} bytes");
        }
        assert!(same.encrypt(&full).is_some());
    }

    #[test]
    fn expired_tickets_do_not_open() {
        let k = keys(&[9u8; 32]);
        let t = ticketer(&k, &ctx(None, 0));
        let plain = state(None, 0x0304, AES256, &[]);
        let now = 1_000_000_000;
        let open = |when| t.decrypt_at(&seal_at(&t, when, &plain), now).is_some();
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
            let t = ticketer(&k, &ctx(None, 0));
            assert!(t
                .decrypt_at(&seal_at(&t, now + ahead, &plain), now)
                .is_some());
            // The next ticket: sealed at now, a whole lifetime.
            let next = t.encrypt_at(&plain, now).unwrap();
            assert_eq!(sealed_time(&t, &next), now);
            assert_eq!(t.lifetime(), LIFETIME);
        }
        let t = ticketer(&k, &ctx(None, 0));
        assert!(t
            .decrypt_at(&seal_at(&t, now + SKEW + 1, &plain), now)
            .is_none());
    }

    /// RFC 8446, 4.6.1: a ticket issued on a resumed connection keeps the
    /// time of the full handshake, its lifetime hint counts down from it,
    /// and at the end no ticket is issued; a full handshake (a ticket that
    /// opened but that rustls could not resume from: another cipher suite
    /// or server name) starts a new lifetime.
    #[test]
    fn a_ticket_issued_on_a_resumed_connection_keeps_the_original_time() {
        let k = keys(&[9u8; 32]);
        let plain = state(Some("a.b"), 0x0304, AES256, &[]);
        let now = 1_000_000_000;
        let first = now - 1000;
        let t = ticketer(&k, &ctx(Some("a.b"), 0));
        assert!(t.decrypt_at(&seal_at(&t, first, &plain), now).is_some());
        let next = t.encrypt_at(&plain, now).unwrap();
        assert_eq!(sealed_time(&t, &next), first);
        assert_eq!(t.lifetime(), LIFETIME - 1000);
        // The next link, later: still the first time.
        let later = now + 3000;
        let t = ticketer(&k, &ctx(Some("a.b"), 0));
        assert!(t.decrypt_at(&next, later).is_some());
        let last = t.encrypt_at(&plain, later).unwrap();
        assert_eq!(sealed_time(&t, &last), first);
        assert_eq!(t.lifetime(), LIFETIME - 4000);
        // At the very end: it opens, but nothing is left to issue.
        let end = first + u64::from(LIFETIME);
        let t = ticketer(&k, &ctx(Some("a.b"), 0));
        assert!(t.decrypt_at(&last, end).is_some());
        assert!(t.encrypt_at(&plain, end).is_none());
        assert!(t.decrypt_at(&last, end + 1).is_none());
        // Opened, but the session is another suite's: a full handshake.
        let t = ticketer(&k, &ctx(Some("a.b"), 0));
        assert!(t.decrypt_at(&last, now).is_some());
        let other = state(Some("a.b"), 0x0304, AES128, &[]);
        let fresh = t.encrypt_at(&other, now).unwrap();
        assert_eq!(sealed_time(&t, &fresh), now);
        assert_eq!(t.lifetime(), LIFETIME);
        // Nothing opened: a full handshake.
        let t = ticketer(&k, &ctx(Some("a.b"), 0));
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
        let with_chain = state(Some("a.b"), 0x0304, AES256, &chain);
        let ticket = seal_at(&ticketer(&k, &ctx(Some("a.b"), 1)), now(), &with_chain);
        let without = seal_at(&ticketer(&k, &ctx(Some("a.b"), 1)), now(), &state13());
        for (answer, opens) in [
            (None, true),
            (Some(rustls::CertificateError::Revoked), false),
            (Some(rustls::CertificateError::Expired), false),
        ] {
            let says = Arc::new(Says(answer, Default::default()));
            let recheck = Recheck {
                verifier: says.clone(),
                log: Log::new(0),
            };
            let t = k.ticketer(&ctx(Some("a.b"), 1), Some(recheck.clone()));
            assert_eq!(t.decrypt(&ticket).is_some(), opens);
            assert_eq!(*says.1.lock().unwrap(), chain.map(<[u8]>::to_vec));
            let t = k.ticketer(&ctx(Some("a.b"), 1), Some(recheck));
            assert!(t.decrypt(&without).is_some());
            assert_eq!(says.1.lock().unwrap().len(), 2, "no chain, no check");
        }
        let t = k.ticketer(&ctx(Some("a.b"), 1), None);
        assert!(t.decrypt(&ticket).is_none());
        assert!(t.decrypt(&without).is_some());
        // Under -y, a state read as having no chain never opens.
        let y = ctx(Some("a.b"), 2);
        let accepts = Recheck {
            verifier: Arc::new(Says(None, Default::default())),
            log: Log::new(0),
        };
        let t = k.ticketer(&y, Some(accepts));
        assert!(t
            .decrypt(&seal_at(&ticketer(&k, &y), now(), &state13()))
            .is_none());
        assert!(t
            .decrypt(&seal_at(&ticketer(&k, &y), now(), &with_chain))
            .is_some());
        // A chain whose encoding is cut short or empty does not open.
        let mut bad = state(Some("a.b"), 0x0304, AES256, &chain);
        let at = bad.len() - b"\x00rest of the state".len() - 2;
        bad[at] = 0xff;
        let t = k.ticketer(&ctx(Some("a.b"), 1), None);
        assert!(t
            .decrypt(&seal_at(&ticketer(&k, &ctx(Some("a.b"), 1)), now(), &bad))
            .is_none());
        let mut empty = state(Some("a.b"), 0x0304, AES256, &[]);
        let flag = empty.len() - b"\x00rest of the state".len() - 1;
        empty.splice(flag..=flag, [1, 0, 0, 0]);
        assert!(t
            .decrypt(&seal_at(&ticketer(&k, &ctx(Some("a.b"), 1)), now(), &empty))
            .is_none());
    }

    /// Records what `encrypt` was given and answered, for the tests below.
    #[derive(Debug)]
    struct Spy(
        Arc<dyn ProducesTickets>,
        std::sync::Mutex<Vec<(Vec<u8>, bool)>>,
    );

    impl Spy {
        fn new(t: Arc<dyn ProducesTickets>) -> Arc<Spy> {
            Arc::new(Spy(t, Default::default()))
        }

        fn answers(&self) -> Vec<bool> {
            self.1.lock().unwrap().iter().map(|a| a.1).collect()
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
            self.1.lock().unwrap().push((plain.to_vec(), t.is_some()));
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
            let spy = Spy::new(keys.ticketer(&ctx(Some("localhost"), 0), None));
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

    /// With real rustls sessions and a client certificate: the chain read
    /// out of rustls' state is the client's; a resumption checks it again
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
            let recheck = Recheck {
                verifier: recheck,
                log: Log::new(0),
            };
            let spy = Spy::new(keys.ticketer(&ctx(Some("localhost"), 2), Some(recheck)));
            let config = crate::tls::server_config(
                provider.clone(),
                pair.clone(),
                Some(verifier.clone()),
                Vec::new(),
                Some(spy.clone()),
                None,
            )
            .unwrap();
            let kind = handshake(config, client.clone());
            let (plain, sealed) = spy.1.lock().unwrap().pop().unwrap();
            assert!(sealed);
            let state = parse_state(&plain).unwrap();
            assert_eq!(state.chain, [carol.der().clone()]);
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

    #[test]
    fn file_errors() {
        let dir =
            std::env::temp_dir().join(format!("s6-tlsd-io-ticket-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let load = |name: &str, data: Option<&[u8]>, mode: u32| {
            let path = dir.join(name);
            if let Some(data) = data {
                std::fs::write(&path, data).unwrap();
                std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))
                    .unwrap();
            }
            let env = Env::from_pairs(&[(VAR, path.to_str().unwrap())]);
            TicketKeys::load(&env)
                .err()
                .map(|e| (e.exit_code(), e.to_string()))
        };
        assert_eq!(load("ok", Some(&[1; 64]), 0o600), None);
        let (code, msg) = load("missing", None, 0).unwrap();
        assert_eq!(code, 96);
        assert!(
            msg.starts_with("s6-tlsd-io: fatal: unable to read TLS_TICKET_KEYFILE file /"),
            "{msg}"
        );
        assert!(msg.ends_with("missing: No such file or directory"), "{msg}");
        let msg = load("empty", Some(b""), 0o600).unwrap().1;
        assert!(msg.ends_with("empty: the file is empty"), "{msg}");
        let msg = load("short", Some(&[1; 33]), 0o600).unwrap().1;
        assert!(msg.contains("33 bytes, not a multiple of 32"), "{msg}");
        let msg = load("big", Some(&[1; 32 * 17]), 0o600).unwrap().1;
        assert!(msg.contains("more than 16 keys"), "{msg}");
        let msg = load("open", Some(&[1; 32]), 0o640).unwrap().1;
        assert!(msg.contains("mode 640; make it 600"), "{msg}");
        assert_eq!(load("max", Some(&[1; 32 * 16]), 0o400), None);
        assert!(TicketKeys::load(&Env::from_pairs(&[])).unwrap().is_none());
        assert!(TicketKeys::load(&Env::from_pairs(&[(VAR, "")]))
            .unwrap()
            .is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
