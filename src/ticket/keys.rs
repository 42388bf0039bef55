//! The ticket keys' side (the key holder's): the file `TLS_TICKET_KEYFILE`
//! names, the key names and AEAD keys derived from it, and `Seal` over
//! them. Nothing here knows what a ticket holds or whom it resumes: that
//! is the engine's side (ticket/mod.rs), which hands over bytes to seal
//! with the associated data that binds them.
//!
//! The file: 1 to 16 raw 32-byte keys, concatenated, newest first (`head -c
//! 64 /dev/urandom` makes one of two keys). The first key seals new
//! tickets; every key opens them. It must be readable by its owner only.
//!
//! A ticket: key name (8 bytes) || nonce (12) || AES-256-GCM sealed
//! plaintext || tag (16), the associated data being the key name then the
//! caller's. The name and the AEAD key are both derived from the file key
//! with HKDF, so the name reveals nothing of the key, and nothing in the
//! clear identifies the client.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::sync::OnceLock;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hkdf::{Prk, HKDF_SHA256};

use super::Seal;
use crate::env::Env;
use crate::error::Error;
use crate::secret::Secret;
use crate::source::Source;

/// The variable naming the key file.
pub const VAR: &str = "TLS_TICKET_KEYFILE";
/// Bytes per key in the file.
pub const KEY_LEN: usize = 32;
/// Keys a file may hold: enough for any rotation schedule, small enough
/// that deriving them all stays in the microseconds.
pub const MAX_KEYS: usize = 16;

const NAME_LEN: usize = 8;
const TAG_LEN: usize = 16;
const HEADER: usize = NAME_LEN + NONCE_LEN;

/// The keys of the file, newest first: the first seals, every one opens.
/// The raw keys are overwritten when dropped (aws-lc wipes the AEAD keys it
/// holds when it frees them).
pub struct TicketKeys {
    raw: Secret,
    /// Each key's name and AEAD key, derived when first needed: a full
    /// handshake derives the first only, a resumption the one that opens
    /// its ticket too.
    derived: Vec<OnceLock<Option<Key>>>,
}

impl TicketKeys {
    /// The keys of the file `TLS_TICKET_KEYFILE` names; None when it is
    /// unset or empty (tickets off).
    pub fn load(env: &Env) -> Result<Option<TicketKeys>, Error> {
        match env.get(VAR) {
            None => Ok(None),
            Some(path) if path.is_empty() => Ok(None),
            Some(path) => read(path).map(|raw| Some(TicketKeys::new(raw))),
        }
    }

    fn new(raw: Secret) -> TicketKeys {
        TicketKeys {
            derived: (0..raw.0.len() / KEY_LEN)
                .map(|_| OnceLock::new())
                .collect(),
            raw,
        }
    }

    /// Keys given as bytes, for the tests of both sides.
    #[cfg(test)]
    pub(crate) fn from_bytes(raw: &[u8]) -> TicketKeys {
        TicketKeys::new(Secret(raw.to_vec()))
    }

    fn key(&self, i: usize) -> Option<&Key> {
        let raw = self.raw.0.get(i * KEY_LEN..(i + 1) * KEY_LEN)?;
        self.derived.get(i)?.get_or_init(|| derive(raw)).as_ref()
    }
}

impl std::fmt::Debug for TicketKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No key material, not even names.
        write!(f, "TicketKeys({} keys)", self.derived.len())
    }
}

/// The key name, then the caller's associated data.
fn named(name: &[u8], aad: &[u8]) -> Vec<u8> {
    [name, aad].concat()
}

impl Seal for TicketKeys {
    fn seal(&self, aad: &[u8], plain: &[u8]) -> Option<Vec<u8>> {
        let key = self.key(0)?;
        let mut nonce = [0; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(HEADER + plain.len() + TAG_LEN);
        out.extend_from_slice(&key.name);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        // Sealed in place: no copy of the plaintext is left behind.
        let mut body = out.split_off(HEADER);
        key.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(named(&key.name, aad)),
                &mut body,
            )
            .ok()?;
        out.append(&mut body);
        Some(out)
    }

    fn open(&self, aad: &[u8], ticket: &[u8]) -> Option<Vec<u8>> {
        if ticket.len() < HEADER + TAG_LEN {
            return None;
        }
        let (name, rest) = ticket.split_at(NAME_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let key = (0..self.derived.len())
            .filter_map(|i| self.key(i))
            .find(|k| k.name == name)?;
        // The plaintext holds the session's resumption secret: this copy
        // is wiped; the caller owns the one returned.
        let mut body = Secret(sealed.to_vec());
        let plain = key
            .aead
            .open_in_place(nonce, Aad::from(named(name, aad)), &mut body.0)
            .ok()?;
        Some(plain.to_vec())
    }
}

fn read(path: &OsStr) -> Result<Secret, Error> {
    let source = Source::file(VAR, path);
    let unable = |e: &std::io::Error| source.unreadable(e);
    let invalid = |why: &str| source.invalid(why);
    // Not through a symbolic link: whoever may change the link chooses
    // the keys (a directory's links on the way are the system's business).
    // O_NONBLOCK: a FIFO would block the open; it is then refused as not
    // a regular file.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink()) => {
                invalid("a symbolic link (name the file itself)")
            }
            _ => unable(&e),
        })?;
    // The owner and mode of the file actually opened, not of whatever the
    // name points to a moment later.
    let meta = file.metadata().map_err(|e| unable(&e))?;
    if !meta.is_file() {
        return Err(invalid("not a regular file"));
    }
    // A credential (whoever holds the keys mints tickets for any public
    // client chain): root's, or that of the process that reads it.
    let euid = nix::unistd::geteuid().as_raw();
    match meta.uid() {
        0 => {}
        owner if owner == euid => {}
        owner if euid == 0 => return Err(invalid(&format!("owned by uid {owner}, not by root"))),
        owner => {
            return Err(invalid(&format!(
                "owned by uid {owner}, neither root nor uid {euid}, which reads it"
            )))
        }
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
    Ok(raw)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_with_rotation() {
        let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        let (aad, plain) = (&b"context"[..], &b"the state, and the rest"[..]);
        let old = TicketKeys::from_bytes(&a);
        let ticket = old.seal(aad, plain).unwrap();
        assert!(!ticket.windows(4).any(|w| w == b"rest"));
        assert_eq!(old.open(aad, &ticket).as_deref(), Some(plain));
        // One rotation: the old key still opens.
        let rotated = TicketKeys::from_bytes(&[b, a].concat());
        assert_eq!(rotated.open(aad, &ticket).as_deref(), Some(plain));
        let new = rotated.seal(aad, plain).unwrap();
        assert_ne!(new[..NAME_LEN], ticket[..NAME_LEN]);
        // Two rotations, the old key dropped: no more.
        let dropped = TicketKeys::from_bytes(&[c, b].concat());
        assert_eq!(dropped.open(aad, &ticket), None);
        assert_eq!(dropped.open(aad, &new).as_deref(), Some(plain));
    }

    /// Any byte changed, any length cut, other associated data: nothing.
    #[test]
    fn a_changed_ticket_or_context_opens_nothing() {
        let k = TicketKeys::from_bytes(&[7u8; 32]);
        let t = k.seal(b"context", b"state").unwrap();
        assert_eq!(t.len(), HEADER + 5 + TAG_LEN);
        assert!(k.open(b"context", &t).is_some());
        assert!(k.open(b"contexT", &t).is_none());
        assert!(k.open(b"", &t).is_none());
        for i in 0..t.len() {
            let mut bad = t.clone();
            bad[i] ^= 0x80;
            assert!(k.open(b"context", &bad).is_none(), "byte {i}");
        }
        for n in 0..t.len() {
            assert!(k.open(b"context", &t[..n]).is_none());
        }
        // Each ticket its own nonce.
        assert_ne!(k.seal(b"context", b"state").unwrap(), t);
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
        // A credential: no symbolic link, no other owner than root or the
        // process that reads it.
        std::os::unix::fs::symlink(dir.join("ok"), dir.join("link")).unwrap();
        let msg = load("link", None, 0).unwrap().1;
        assert!(
            msg.ends_with("link: a symbolic link (name the file itself)"),
            "{msg}"
        );
        let euid = nix::unistd::geteuid().as_raw();
        let owned = |uid: u32| {
            let path = dir.join(format!("owned-{uid}"));
            std::fs::write(&path, [1; 32]).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
            std::os::unix::fs::chown(&path, Some(uid), None).unwrap();
            load(&format!("owned-{uid}"), None, 0)
        };
        assert_eq!(owned(euid), None);
        if euid == 0 {
            let (code, msg) = owned(65534).unwrap();
            assert_eq!(code, 96);
            assert!(msg.ends_with("owned by uid 65534, not by root"), "{msg}");
        }
        assert!(TicketKeys::load(&Env::from_pairs(&[])).unwrap().is_none());
        assert!(TicketKeys::load(&Env::from_pairs(&[(VAR, "")]))
            .unwrap()
            .is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
