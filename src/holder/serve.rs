//! The key holder's side of the boundary (OpenSSH's monitor.c): it hardens
//! itself, reads the key pairs and the ticket keys, says READY (or the
//! start-up error), drops its ids, confines itself, then answers until the
//! engine closes the socket; then it wipes what it holds and exits.
//!
//! Every question is checked before it is answered, and counted (after
//! OpenSSH's `mm_answer_sign`), so that an engine taken over by an attacker
//! gets no more than its own handshake needed:
//!
//! - SIGN: once per connection, only a message shaped like what a server
//!   signs in a handshake (a TLS 1.3 CertificateVerify's input, or a TLS
//!   1.2 ServerKeyExchange's signed parameters: two randoms, then named
//!   curve ECDHE parameters whose point fits the curve), with a scheme the
//!   pair's key signs with;
//! - SEAL: no more tickets than the engine sends (tls.rs), and only once
//!   the handshake has authenticated (a signature made, or a ticket that
//!   opened);
//! - OPEN: at most `ticket::MAX_OPENS`.
//!
//! A question out of shape or over its count is refused, and the holder
//! exits: the engine, told why, ends the handshake (exit 111).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use rustls::SignatureScheme;

use super::wire::{self, DONE, FAILED, MAX_QUESTION, NOTHING, OPEN, READY, SEAL, SIGN};
use super::{Stage, Staged};
use crate::env::Env;
use crate::error::Error;
use crate::keys::{self, KeyPair, Loaded};
use crate::ticket::keys::TicketKeys;
use crate::ticket::{Seal, MAX_OPENS};
use crate::wire::Reader;
use crate::{privilege, sandbox, tls};

/// The holder's whole life; it never returns.
pub(super) fn run(socket: OwnedFd, env: &Env, sni_level: u32, engine: libc::pid_t) -> ! {
    // Every copy of a key file or a key made from here on is wiped when
    // freed, ours and rustls-pki-types' alike (src/alloc.rs).
    crate::alloc::wipe_on_free();
    let fd = socket.as_fd();
    match start(fd, env, sni_level, engine) {
        Ok(mut held) => {
            if send(fd, &held.ready()) {
                held.serve(fd);
            }
            // Wiped as it goes: the files' bytes, the keys (aws-lc clears
            // its own as it frees them), the ticket keys.
            drop(held);
        }
        Err(Staged { stage, error }) => {
            send(fd, &wire::frame(FAILED, &[&wire::failed(stage, &error)]));
        }
    }
    // SAFETY: ends the process at once; nothing is left to flush or run.
    unsafe { libc::_exit(0) }
}

/// The start-up, up to READY: on the first error, where it falls.
fn start(fd: BorrowedFd, env: &Env, sni_level: u32, engine: libc::pid_t) -> Result<Held, Staged> {
    let sys = |call| super::unable_to_start(call, nix::errno::Errno::last());
    harden(fd.as_raw_fd(), engine).map_err(|what| Stage::Keys.of(sys(what)))?;
    let pairs = pairs(env, sni_level).map_err(|e| Stage::Keys.of(e))?;
    let tickets = TicketKeys::load(env).map_err(|e| Stage::Tickets.of(e))?;
    privilege::drop_ids(env).map_err(|e| Stage::Later.of(e))?;
    // Changing ids undoes both (the kernel's commit_creds): again.
    harden_again(engine).map_err(|what| Stage::Later.of(sys(what)))?;
    if !sandbox::opted_out(env.get(sandbox::OPT_OUT)) {
        sandbox::confine_holder(fd.as_raw_fd()).map_err(|e| Stage::Later.of(e))?;
    }
    Ok(Held {
        pairs,
        tickets,
        asked_to_sign: false,
        sealed: 0,
        opens: 0,
        authenticated: false,
    })
}

/// Before any key is read: not dumpable (no core, no ptrace by the same
/// uid: RLIMIT_CORE is 0 already, main.rs), dead with the engine, and no
/// descriptor but the socket (not the client's, not the application's).
/// On failure, the call that failed.
fn harden(keep: RawFd, engine: libc::pid_t) -> Result<(), &'static str> {
    harden_again(engine)?;
    close_all_but(keep)
}

/// Not dumpable, and killed when the engine dies (PDEATHSIG; the socket's
/// EOF says it too, but a holder stopped in a signature would not read
/// it). If the engine died before the signal was asked for, nothing will
/// send it: checked after, by the parent's pid.
fn harden_again(engine: libc::pid_t) -> Result<(), &'static str> {
    use nix::sys::prctl::{set_dumpable, set_pdeathsig};
    set_dumpable(false).map_err(|_| "prctl(PR_SET_DUMPABLE)")?;
    set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(|_| "prctl(PR_SET_PDEATHSIG)")?;
    if nix::unistd::getppid().as_raw() != engine {
        // SAFETY: ends the process at once; it holds nothing yet.
        unsafe { libc::_exit(0) }
    }
    Ok(())
}

/// Closes every descriptor but `keep`: close_range(2) (Linux 5.9), else
/// each one /proc/self/fd lists.
fn close_all_but(keep: RawFd) -> Result<(), &'static str> {
    let keep = keep as libc::c_uint;
    let range = |first: libc::c_uint, last: libc::c_uint| {
        // SAFETY: closes descriptors of this process only; none of them is
        // referred to again (the holder owns nothing but `keep`).
        first > last || unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) } == 0
    };
    if keep.checked_sub(1).is_none_or(|below| range(0, below)) && range(keep + 1, libc::c_uint::MAX)
    {
        return Ok(());
    }
    let listed: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map_err(|_| "open /proc/self/fd")?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in listed.into_iter().filter(|&fd| fd != keep as RawFd) {
        // SAFETY: as above; the directory's own descriptor is closed by
        // now (EBADF, harmless).
        unsafe { libc::close(fd) };
    }
    Ok(())
}

/// A pair as the holder keeps it: its name (None: the default pair) and
/// its key.
struct Pair {
    name: Option<String>,
    key: Key,
}

/// Read at start-up, loaded (parsed and matched with its certificate) when
/// it first signs, as keys.rs's reading of named pairs has it; the default
/// pair is loaded at start-up.
enum Key {
    Read(KeyPair),
    Loaded(Loaded),
    /// Its load failed.
    Spent,
}

/// The pairs `sni_level` selects, in the engine's old order (CERTFILE
/// before KEYFILE, the default pair before the named ones, those in the
/// environment's order): the first error is the one the engine said.
fn pairs(env: &Env, sni_level: u32) -> Result<Vec<Pair>, Error> {
    let mut pairs = Vec::new();
    if sni_level <= 1 {
        let key = Key::Loaded(KeyPair::read_default(env)?.load()?);
        pairs.push(Pair { name: None, key });
    }
    if sni_level >= 1 {
        for (name, pair) in keys::named_pairs(env) {
            let key = Key::Read(pair?);
            pairs.push(Pair {
                name: Some(name),
                key,
            });
        }
    }
    if pairs.is_empty() {
        return Err(Error::Config(
            "no suitable keypairs found in the environment".into(),
        ));
    }
    Ok(pairs)
}

struct Held {
    pairs: Vec<Pair>,
    tickets: Option<TicketKeys>,
    /// What has been asked so far.
    asked_to_sign: bool,
    sealed: usize,
    opens: usize,
    /// The handshake has authenticated, and may have a ticket sealed: a
    /// signature made, or a ticket opened (a resumption).
    authenticated: bool,
}

/// An answer, and whether the holder ends after it.
struct Answer {
    frame: Vec<u8>,
    last: bool,
}

impl Answer {
    fn done(bytes: &[u8]) -> Answer {
        Answer {
            frame: wire::frame(DONE, &[bytes]),
            last: false,
        }
    }

    fn nothing() -> Answer {
        Answer {
            frame: wire::frame(NOTHING, &[]),
            last: false,
        }
    }

    /// An error the engine ends the handshake with (the holder's stage
    /// plays no part past start-up).
    fn failed(e: &Error) -> Answer {
        Answer {
            frame: wire::frame(FAILED, &[&wire::failed(Stage::Later, e)]),
            last: false,
        }
    }

    /// A question refused: said, then the holder exits.
    fn refused(what: &str) -> Answer {
        Answer {
            last: true,
            ..Answer::failed(&Error::Holder(format!("the key holder refused {what}")))
        }
    }
}

impl Held {
    /// READY: whether tickets are on, then each pair's name and chain.
    fn ready(&self) -> Vec<u8> {
        let mut body = vec![u8::from(self.tickets.is_some())];
        for pair in &self.pairs {
            let chain = match &pair.key {
                Key::Read(read) => read.chain(),
                Key::Loaded(loaded) => &loaded.pair.cert[..],
                Key::Spent => &[],
            };
            wire::put(&mut body, pair.name.as_deref().unwrap_or("").as_bytes());
            body.extend_from_slice(&(chain.len() as u32).to_be_bytes());
            for cert in chain {
                wire::put(&mut body, cert);
            }
        }
        wire::frame(READY, &[&body])
    }

    /// Questions, until the engine closes the socket (or a refusal).
    fn serve(&mut self, fd: BorrowedFd) {
        while let Some(question) = receive(fd) {
            let answer = match question.split_first() {
                Some((&SIGN, body)) => self.sign(body),
                Some((&SEAL, body)) => self.seal(body),
                Some((&OPEN, body)) => self.open(body),
                _ => Answer::refused("a question it does not know"),
            };
            if !send(fd, &answer.frame) || answer.last {
                return;
            }
        }
    }

    fn sign(&mut self, body: &[u8]) -> Answer {
        if std::mem::replace(&mut self.asked_to_sign, true) {
            return Answer::refused("a second signature");
        }
        let mut r = Reader(body);
        let (Some(pair), Some(scheme)) = (r.u32(), r.u16()) else {
            return Answer::refused("a signature asked for in no known form");
        };
        let message = r.0;
        if !handshake_shaped(message) {
            return Answer::refused("to sign a message that no handshake signs");
        }
        let Some(pair) = usize::try_from(pair)
            .ok()
            .and_then(|i| self.pairs.get_mut(i))
        else {
            return Answer::refused("a signature with a key pair it does not have");
        };
        let loaded = match load(&mut pair.key) {
            Ok(Some(loaded)) => loaded,
            Ok(None) => return Answer::refused("a signature with a key that failed to load"),
            // The key file's error: the engine exits with it (96).
            Err(e) => return Answer::failed(&e),
        };
        let scheme = SignatureScheme::from(scheme);
        if !loaded.signs_with(scheme) {
            return Answer::refused("a signature scheme the key does not sign with");
        }
        match loaded.sign(scheme, message) {
            Ok(signature) => {
                self.authenticated = true;
                Answer::done(&signature)
            }
            Err(e) => Answer::failed(&e),
        }
    }

    fn seal(&mut self, body: &[u8]) -> Answer {
        self.sealed += 1;
        if self.sealed > tls::TICKETS_SENT {
            return Answer::refused("to seal more tickets than a connection sends");
        }
        if !self.authenticated {
            return Answer::refused("to seal a ticket before the handshake authenticated");
        }
        let (Some(keys), Some((aad, plain))) = (&self.tickets, aad_and_rest(body)) else {
            return Answer::refused("a ticket to seal in no known form, or without keys");
        };
        keys.seal(aad, plain)
            .map_or_else(Answer::nothing, |ticket| Answer::done(&ticket))
    }

    fn open(&mut self, body: &[u8]) -> Answer {
        self.opens += 1;
        if self.opens > MAX_OPENS {
            return Answer::refused("to open more tickets than a connection tries");
        }
        let (Some(keys), Some((aad, ticket))) = (&self.tickets, aad_and_rest(body)) else {
            return Answer::refused("a ticket to open in no known form, or without keys");
        };
        match keys.open(aad, ticket) {
            Some(plain) => {
                self.authenticated = true;
                // The opened state holds the session's secret: the engine
                // gets it (its rustls resumes with it), this copy is wiped
                // as it is freed.
                Answer::done(&plain)
            }
            None => Answer::nothing(),
        }
    }
}

/// `key`, loaded now if it was not yet (a named pair's first signature):
/// parsed and matched with its certificate, or the key file's error; None
/// if it failed to load before.
fn load(key: &mut Key) -> Result<Option<&Loaded>, Error> {
    if let Key::Read(_) = key {
        if let Key::Read(read) = std::mem::replace(key, Key::Spent) {
            *key = Key::Loaded(read.load()?);
        }
    }
    Ok(match key {
        Key::Loaded(loaded) => Some(loaded),
        _ => None,
    })
}

/// SEAL's and OPEN's body: the associated data, then the rest.
fn aad_and_rest(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut r = Reader(body);
    let aad = wire::bytes(&mut r)?;
    Some((aad, r.0))
}

/// The context of a TLS 1.3 server's CertificateVerify (RFC 8446, 4.4.3).
const TLS13_SERVER: &[u8] = b"TLS 1.3, server CertificateVerify";

/// Whether `message` is what a server signs in a handshake: a TLS 1.3
/// CertificateVerify's input (64 spaces, the server's context string, a
/// zero, the transcript hash of SHA-256 or SHA-384), or a TLS 1.2
/// ServerKeyExchange's signed parameters (the client's and the server's
/// randoms, then ECParameters of a named curve and a public point of the
/// size that curve's points have: RFC 8422, 5.4; RFC 7748 for X25519 and
/// X448). rustls offers no other exchange in TLS 1.2 (no FFDHE).
fn handshake_shaped(message: &[u8]) -> bool {
    let tls13 = message.len() > 64 + TLS13_SERVER.len() + 1
        && message[..64].iter().all(|&b| b == b' ')
        && &message[64..64 + TLS13_SERVER.len()] == TLS13_SERVER
        && message[64 + TLS13_SERVER.len()] == 0
        && matches!(message.len() - 65 - TLS13_SERVER.len(), 32 | 48);
    tls13 || tls12_shaped(message)
}

fn tls12_shaped(message: &[u8]) -> bool {
    const NAMED_CURVE: u8 = 3;
    let mut r = Reader(message);
    let (Some(_randoms), Some(NAMED_CURVE), Some(group), Some(point)) =
        (r.take(64), r.u8(), r.u16(), r.short())
    else {
        return false;
    };
    let uncompressed = |len: usize| point.len() == len && point[0] == 4;
    r.0.is_empty()
        && match group {
            0x0017 => uncompressed(65),  // secp256r1
            0x0018 => uncompressed(97),  // secp384r1
            0x0019 => uncompressed(133), // secp521r1
            0x001d => point.len() == 32, // x25519
            0x001e => point.len() == 56, // x448
            _ => false,
        }
}

/// A whole frame from the engine, past its length (its kind first); None
/// at EOF, on an error, or for a frame longer than any question.
fn receive(fd: BorrowedFd) -> Option<Vec<u8>> {
    let mut header = [0; 4];
    read_exact(fd, &mut header)?;
    let len = wire::length(&header);
    if len == 0 || len > MAX_QUESTION {
        return None;
    }
    let mut frame = vec![0; len];
    read_exact(fd, &mut frame)?;
    Some(frame)
}

fn read_exact(fd: BorrowedFd, mut buf: &mut [u8]) -> Option<()> {
    while !buf.is_empty() {
        match nix::unistd::read(fd, buf) {
            Ok(0) => return None,
            Ok(n) => buf = &mut buf[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return None,
        }
    }
    Some(())
}

/// Writes `frame` whole; false if the engine is gone.
fn send(fd: BorrowedFd, mut frame: &[u8]) -> bool {
    while !frame.is_empty() {
        match nix::unistd::write(fd, frame) {
            Ok(n) => frame = &frame[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticket::keys::TicketKeys;

    /// A holder's state with one ECDSA P-256 pair, loaded, and a ticket key.
    fn held() -> Held {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let dir = std::env::temp_dir().join(format!(
            "s6-tlsd-io-serve-unit-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let (c, k) = (dir.join("c.pem"), dir.join("k.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        let pair = KeyPair::read("C".into(), c.as_os_str(), "K".into(), k.as_os_str());
        let loaded = pair.and_then(KeyPair::load).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        Held {
            pairs: vec![Pair {
                name: None,
                key: Key::Loaded(loaded),
            }],
            tickets: Some(TicketKeys::from_bytes(&[7; 32])),
            asked_to_sign: false,
            sealed: 0,
            opens: 0,
            authenticated: false,
        }
    }

    /// The answer's kind, and whether the holder ends after it.
    fn kind(a: &Answer) -> (u8, bool) {
        (a.frame[4], a.last)
    }

    fn sign_body(pair: u32, scheme: SignatureScheme, message: &[u8]) -> Vec<u8> {
        [
            &pair.to_be_bytes()[..],
            &u16::from(scheme).to_be_bytes(),
            message,
        ]
        .concat()
    }

    fn ticket_body(aad: &[u8], rest: &[u8]) -> Vec<u8> {
        [&(aad.len() as u32).to_be_bytes()[..], aad, rest].concat()
    }

    const P256: SignatureScheme = SignatureScheme::ECDSA_NISTP256_SHA256;

    /// An engine taken over gets one signature, over a handshake's
    /// message, with the key's own scheme and a pair the holder has: any
    /// other question is refused, and the holder ends.
    #[test]
    fn one_signature_per_connection_and_a_refusal_ends_the_holder() {
        let mut h = held();
        let good = sign_body(0, P256, &tls13(32));
        assert_eq!(kind(&h.sign(&good)), (DONE, false));
        assert_eq!(kind(&h.sign(&good)), (FAILED, true), "a second one");
        let refused = [
            sign_body(0, P256, b"anything at all, say a client's message"),
            sign_body(0, SignatureScheme::RSA_PSS_SHA256, &tls13(32)),
            sign_body(1, P256, &tls13(32)),
            vec![0, 0],
        ];
        for body in refused {
            assert_eq!(kind(&held().sign(&body)), (FAILED, true), "{body:02x?}");
        }
        assert_eq!(
            kind(&held().sign(&sign_body(0, P256, &tls12(0x17, &point(65))))),
            (DONE, false)
        );
    }

    /// Tickets: sealed only once the handshake has authenticated, and no
    /// more than a connection sends; opened no more than MAX_OPENS times.
    #[test]
    fn tickets_are_sealed_once_authenticated_and_opened_a_few_times() {
        let aad = b"context";
        let plain = b"a session";
        let mut h = held();
        assert_eq!(
            kind(&h.seal(&ticket_body(aad, plain))),
            (FAILED, true),
            "before"
        );
        let mut h = held();
        h.sign(&sign_body(0, P256, &tls13(48)));
        let sealed = h.seal(&ticket_body(aad, plain));
        assert_eq!(kind(&sealed), (DONE, false));
        assert_eq!(
            kind(&h.seal(&ticket_body(aad, plain))),
            (FAILED, true),
            "a second"
        );
        // Resumed: a ticket that opens authenticates.
        let ticket = &sealed.frame[5..];
        let mut h = held();
        for _ in 1..MAX_OPENS {
            assert_eq!(
                kind(&h.open(&ticket_body(aad, b"not a ticket"))),
                (NOTHING, false)
            );
        }
        let opened = h.open(&ticket_body(aad, ticket));
        assert_eq!(
            (kind(&opened), &opened.frame[5..]),
            ((DONE, false), &plain[..])
        );
        assert_eq!(kind(&h.seal(&ticket_body(aad, plain))), (DONE, false));
        assert_eq!(
            kind(&h.open(&ticket_body(aad, ticket))),
            (FAILED, true),
            "one too many"
        );
    }

    fn tls13(hash: usize) -> Vec<u8> {
        [&[b' '; 64][..], TLS13_SERVER, &[0], &vec![7; hash]].concat()
    }

    fn tls12(group: u16, point: &[u8]) -> Vec<u8> {
        let mut m = vec![1; 64];
        m.push(3);
        m.extend_from_slice(&group.to_be_bytes());
        m.push(point.len() as u8);
        m.extend_from_slice(point);
        m
    }

    fn point(len: usize) -> Vec<u8> {
        let mut p = vec![9; len];
        p[0] = 4;
        p
    }

    #[test]
    fn only_what_a_handshake_signs_is_shaped_like_it() {
        assert!(handshake_shaped(&tls13(32)));
        assert!(handshake_shaped(&tls13(48)));
        for bad in [tls13(31), tls13(33), tls13(64), tls13(0)] {
            assert!(!handshake_shaped(&bad), "{} bytes", bad.len());
        }
        let mut client = tls13(32);
        client[64..64 + 9].copy_from_slice(b"TLS 1.3, ");
        client[73..79].copy_from_slice(b"client");
        assert!(!handshake_shaped(&client), "a client's context");
        let mut spaces = tls13(32);
        spaces[3] = b'x';
        assert!(!handshake_shaped(&spaces));
        for (group, len) in [(0x17, 65), (0x18, 97), (0x19, 133), (0x1d, 32), (0x1e, 56)] {
            assert!(handshake_shaped(&tls12(group, &point(len))), "{group:#x}");
            assert!(
                !handshake_shaped(&tls12(group, &point(len - 1))),
                "{group:#x} short"
            );
            let mut longer = tls12(group, &point(len));
            longer.push(0);
            assert!(!handshake_shaped(&longer), "{group:#x} with more after");
        }
        let mut compressed = point(65);
        compressed[0] = 2;
        assert!(!handshake_shaped(&tls12(0x17, &compressed)));
        assert!(!handshake_shaped(&tls12(0x100, &point(256 - 1))), "FFDHE");
        let mut explicit = tls12(0x17, &point(65));
        explicit[64] = 1;
        assert!(!handshake_shaped(&explicit), "explicit curve parameters");
        assert!(!handshake_shaped(b""));
        assert!(!handshake_shaped(&[b' '; 200]));
    }
}
