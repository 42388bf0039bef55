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
//! TLS 1.3 only: the caller enables tickets only for clients that offer
//! TLS 1.3, and `encrypt` refuses any state that is not TLS 1.3's, so that
//! no TLS 1.2 ticket (which carries the master secret) is ever issued.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hkdf::{Prk, HKDF_SHA256};
use rustls::server::ProducesTickets;

use crate::env::Env;
use crate::error::{io_reason, Error};
use crate::keys::Secret;

/// The variable naming the key file.
pub const VAR: &str = "TLS_TICKET_KEYFILE";
/// Bytes per key in the file.
pub const KEY_LEN: usize = 32;
/// Keys a file may hold: enough for any rotation schedule, small enough
/// that deriving them all stays in the microseconds.
pub const MAX_KEYS: usize = 16;
/// How long a ticket resumes, in seconds (also the hint sent to clients).
pub const LIFETIME: u32 = 4 * 3600;
/// Clock skew tolerated between the engine that sealed a ticket and the
/// one that opens it (the same machine, normally: none at all).
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
    /// first only, a resumption the one that opens its ticket too.
    pub fn ticketer(&self, context: &Context) -> Arc<dyn ProducesTickets> {
        Arc::new(Ticketer {
            derived: (0..self.raw.0.len() / KEY_LEN)
                .map(|_| OnceLock::new())
                .collect(),
            raw: Secret(self.raw.0.clone()),
            aad: context.bytes(),
        })
    }
}

fn read(path: &OsStr) -> Result<TicketKeys, Error> {
    let shown = path.to_string_lossy();
    let unable = |e: &std::io::Error| {
        Error::Config(format!(
            "unable to read {VAR} file {shown}: {}",
            io_reason(e)
        ))
    };
    let invalid = |why: &str| Error::Config(format!("invalid {VAR} file {shown}: {why}"));
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
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

/// The protocol version in rustls' encoding of a server session: after
/// the optional SNI (a presence byte, then a length-prefixed name).
fn state_version(plain: &[u8]) -> Option<u16> {
    let at = match *plain.first()? {
        0 => 1,
        1 => 2 + usize::from(*plain.get(1)?),
        _ => return None,
    };
    let v = plain.get(at..at + 2)?;
    Some(u16::from_be_bytes([v[0], v[1]]))
}

impl ProducesTickets for Ticketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        LIFETIME
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        // Second guard after `configure`: a TLS 1.2 session gets no ticket
        // (rustls then sends an empty one, which carries nothing).
        if state_version(plain) != Some(0x0304) {
            return None;
        }
        let key = self.key(0)?;
        let mut nonce = [0; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(HEADER + TIME_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&key.name);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&now().to_be_bytes());
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
        Some(out)
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
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
        let now = now();
        if issued > now + SKEW || now - issued > u64::from(LIFETIME) {
            return None;
        }
        Some(state.to_vec())
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

    /// rustls' encoding of a TLS 1.3 session with the SNI `a.b`.
    const STATE13: &[u8] = b"\x01\x03a.b\x03\x04rest of the state";

    #[test]
    fn seals_and_opens_with_rotation() {
        let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        let old = keys(&a).ticketer(&ctx(Some("a.b"), 0));
        let ticket = old.encrypt(STATE13).unwrap();
        assert!(!ticket.windows(4).any(|w| w == b"rest"));
        assert_eq!(old.decrypt(&ticket).as_deref(), Some(STATE13));
        // One rotation: the old key still opens.
        let rotated = keys(&[b, a].concat()).ticketer(&ctx(Some("a.b"), 0));
        assert_eq!(rotated.decrypt(&ticket).as_deref(), Some(STATE13));
        let new = rotated.encrypt(STATE13).unwrap();
        assert_ne!(new[..NAME_LEN], ticket[..NAME_LEN]);
        // Two rotations, the old key dropped: no more.
        let dropped = keys(&[c, b].concat()).ticketer(&ctx(Some("a.b"), 0));
        assert_eq!(dropped.decrypt(&ticket), None);
        assert_eq!(dropped.decrypt(&new).as_deref(), Some(STATE13));
    }

    #[test]
    fn context_tampering_and_versions() {
        let k = keys(&[7u8; 32]);
        let t = k.ticketer(&ctx(Some("a.b"), 1)).encrypt(STATE13).unwrap();
        assert!(k.ticketer(&ctx(Some("A.B"), 1)).decrypt(&t).is_some());
        assert!(k.ticketer(&ctx(Some("a.c"), 1)).decrypt(&t).is_none());
        assert!(k.ticketer(&ctx(None, 1)).decrypt(&t).is_none());
        assert!(k.ticketer(&ctx(Some("a.b"), 2)).decrypt(&t).is_none());
        let mut other = ctx(Some("a.b"), 1);
        other.anchors[0] = 1;
        assert!(k.ticketer(&other).decrypt(&t).is_none());
        let same = k.ticketer(&ctx(Some("a.b"), 1));
        for i in 0..t.len() {
            let mut bad = t.clone();
            bad[i] ^= 0x80;
            assert!(same.decrypt(&bad).is_none(), "byte {i}");
        }
        for n in 0..t.len() {
            assert!(same.decrypt(&t[..n]).is_none());
        }
        // TLS 1.2 states, or anything unparsable, are never sealed.
        assert!(same.encrypt(b"\x00\x03\x03tls12").is_none());
        assert!(same.encrypt(b"\x01\x03a.b\x03\x03tls12").is_none());
        assert!(same.encrypt(b"").is_none());
        assert!(same.encrypt(b"\x00\x03\x04").is_some());
    }

    #[test]
    fn expired_tickets_do_not_open() {
        let k = keys(&[9u8; 32]);
        let t = k.ticketer(&ctx(None, 0));
        let key = &derive(&[9u8; 32]).unwrap();
        let seal_at = |when: u64| {
            let nonce = [5u8; NONCE_LEN];
            let mut body = [&when.to_be_bytes()[..], b"\x00\x03\x04"].concat();
            key.aead
                .seal_in_place_append_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(t_aad(&key.name)),
                    &mut body,
                )
                .unwrap();
            [&key.name[..], &nonce, &body].concat()
        };
        fn t_aad(name: &[u8]) -> Vec<u8> {
            [name, &ctx(None, 0).bytes()].concat()
        }
        let now = now();
        assert!(t.decrypt(&seal_at(now - 10)).is_some());
        assert!(t.decrypt(&seal_at(now - u64::from(LIFETIME) + 5)).is_some());
        assert!(t.decrypt(&seal_at(now - u64::from(LIFETIME) - 5)).is_none());
        assert!(t.decrypt(&seal_at(now + 3600)).is_none());
    }

    /// Records what `encrypt` answered, for the tests below.
    #[derive(Debug)]
    struct Spy(Arc<dyn ProducesTickets>, std::sync::Mutex<Vec<bool>>);

    impl ProducesTickets for Spy {
        fn enabled(&self) -> bool {
            true
        }
        fn lifetime(&self) -> u32 {
            self.0.lifetime()
        }
        fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
            let t = self.0.encrypt(plain);
            self.1.lock().unwrap().push(t.is_some());
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

    /// With real rustls sessions: a TLS 1.3 state is sealed and resumes;
    /// a TLS 1.2 state, should a ticketer ever reach a TLS 1.2 handshake,
    /// is refused (so the guard reads rustls' encoding right).
    #[test]
    fn rustls_states_tls13_sealed_tls12_refused() {
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
            let spy = Arc::new(Spy(
                keys.ticketer(&ctx(Some("localhost"), 0)),
                std::sync::Mutex::new(Vec::new()),
            ));
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
                let mut s = rustls::ServerConnection::new(config).unwrap();
                let mut c =
                    rustls::ClientConnection::new(client.clone(), "localhost".try_into().unwrap())
                        .unwrap();
                for _ in 0..10 {
                    pump(&mut c, &mut s);
                    pump(&mut s, &mut c);
                }
                assert!(!s.is_handshaking() && !c.is_handshaking());
                kinds.push(s.handshake_kind());
            }
            let answers = spy.1.lock().unwrap().clone();
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
