//! The engine's side of the key holder's boundary (OpenSSH's
//! monitor_wrap.c): the handle main keeps, the holder's ready message, and
//! the two adapters rustls calls without knowing: a `SigningKey` whose
//! signer asks SIGN, and a `ticket::Seal` that asks SEAL and OPEN.
//!
//! Every question waits a bounded time for its answer (`PATIENCE`, and
//! never past `-K`'s deadline). Any failure of the holder's (gone, silent,
//! refusing, making no sense, or answering with a key file's error) is
//! kept as the connection's `Finding` and closes the socket: rustls is
//! told only that the signature or the ticket failed, main ends the
//! handshake with the finding (`Holder::explain`). Once the handshake is
//! done, `finish` closes the socket and reaps the holder.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use rustls::pki_types::CertificateDer;
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};

use super::wire::{self, DONE, FAILED, NOTHING, OPEN, READY, SEAL, SIGN};
use super::{Stage, Staged, PATIENCE};
use crate::asn1::{elements, OID, SEQUENCE};
use crate::error::{Error, Finding};
use crate::secret::Secret;
use crate::sni::{Chosen, KeyStore};
use crate::ticket::Seal;
use crate::wire::Reader;

/// The engine's handle on its key holder; clones share it.
#[derive(Clone)]
pub struct Holder(Arc<Inner>);

struct Inner {
    pid: u32,
    state: Mutex<State>,
    /// The holder's first failure: the connection's end.
    failure: Finding,
}

struct State {
    /// None once closed: after the handshake, or after a failure.
    socket: Option<OwnedFd>,
    /// `-K`'s: no wait outlives it.
    deadline: Option<Instant>,
}

/// What the holder said first: READY, or where and why it failed.
pub struct Verdict(Result<Ready, Staged>);

/// The holder's ready message.
pub struct Ready {
    /// Every pair's chain, by name.
    pub keys: KeyStore,
    /// A ticket key file was given, and read: tickets are on.
    pub tickets: bool,
}

fn gone() -> Error {
    Error::Holder("the key holder is gone (it exited, or was killed)".into())
}

fn malformed() -> Error {
    Error::Holder("the key holder's answer is malformed".into())
}

impl Holder {
    pub(super) fn new(pid: u32, socket: OwnedFd) -> Result<Holder, Error> {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        // Non-blocking: a write that the holder does not take must not
        // block past the wait's bound either.
        fcntl(&socket, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
            .map_err(|e| super::unable_to_start("fcntl", e))?;
        Ok(Holder(Arc::new(Inner {
            pid,
            state: Mutex::new(State {
                socket: Some(socket),
                deadline: None,
            }),
            failure: Finding::default(),
        })))
    }

    /// The holder's pid: the one process the engine may reap (sandbox.rs).
    pub fn pid(&self) -> u32 {
        self.0.pid
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // One thread ever takes it; a panic aborts the process.
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for the holder's first word, as long as its reading of the
    /// files takes (as the engine's own reading did): its chains, or its
    /// start-up error and where it falls.
    pub fn ready(&self) -> Verdict {
        let state = self.state();
        let first = state
            .socket
            .as_ref()
            .ok_or_else(gone)
            .and_then(|socket| receive(socket.as_fd(), None, usize::MAX));
        Verdict(match first {
            Ok(frame) => match frame.split_first() {
                Some((&READY, body)) => read_ready(body).ok_or_else(|| Stage::Keys.of(malformed())),
                Some((&FAILED, body)) => Err(wire::read_failed(body).map_or_else(
                    || Stage::Keys.of(malformed()),
                    |(stage, error)| stage.of(error),
                )),
                _ => Err(Stage::Keys.of(malformed())),
            },
            // The holder died before it said anything: said before
            // anything the engine found.
            Err(e) => Err(Stage::Keys.of(e)),
        })
    }

    /// `-K`'s deadline: from now on no wait for the holder outlives it.
    pub fn set_deadline(&self, deadline: Option<Instant>) {
        self.state().deadline = deadline;
    }

    /// The chosen pair, its key behind the holder: what rustls serves.
    pub fn key(&self, chosen: Chosen) -> Arc<CertifiedKey> {
        let kind = chosen
            .chain
            .first()
            .map_or(Kind::UNKNOWN, |leaf| Kind::of(leaf));
        let key = HeldKey {
            holder: self.clone(),
            pair: chosen.pair,
            kind,
        };
        Arc::new(CertifiedKey::new(chosen.chain, Arc::new(key)))
    }

    /// The handshake is done, and the tickets it sends sealed: the socket
    /// closes, the holder wipes what it holds and exits, and is reaped (its
    /// CPU then counts in the engine's), so that nothing but the engine is
    /// left while it relays. A failure the holder had is the connection's
    /// end, even if rustls went on without it (a ticket not sealed).
    pub fn finish(&self) -> Result<(), Error> {
        let socket = self.state().socket.take();
        if let Some(e) = self.0.failure.found() {
            return Err(e.clone());
        }
        if let Some(socket) = socket.filter(|s| holder_left(s.as_fd())) {
            drop(socket);
            // glibc's waitpid is wait4(2), the one call for it that the
            // engine's filter allows (for this pid only).
            let pid = Pid::from_raw(self.0.pid as libc::pid_t);
            while let Err(Errno::EINTR) = waitpid(pid, None) {}
        }
        Ok(())
    }

    /// The handshake's error, or the holder's failure that caused it.
    pub fn explain(&self, e: Error) -> Error {
        self.0.failure.explain(e)
    }

    /// Asks `question` (a whole frame): the answer's bytes (DONE), None
    /// (NOTHING), or the failure, which ends the holder's part.
    fn ask(&self, question: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        if let Some(e) = self.0.failure.found() {
            return Err(e.clone());
        }
        let mut state = self.state();
        let until = Until::from(state.deadline);
        let answer = state.socket.as_ref().ok_or_else(gone).and_then(|socket| {
            send(socket.as_fd(), question, until)?;
            receive(socket.as_fd(), Some(until), ANSWER_MAX)
        });
        let answer = answer.and_then(|mut frame| match frame.first() {
            Some(&DONE) => {
                // The same block, past the kind: an opened ticket's
                // plaintext is not copied.
                frame.remove(0);
                Ok(Some(frame))
            }
            Some(&NOTHING) if frame.len() == 1 => Ok(None),
            Some(&FAILED) => Err(wire::read_failed(&frame[1..]).map_or_else(malformed, |(_, e)| e)),
            _ => Err(malformed()),
        });
        answer.inspect_err(|e| {
            self.0.failure.record(e.clone());
            state.socket = None;
        })
    }

    /// Asks SEAL or OPEN: `aad`, then `rest`.
    fn ask_ticket(&self, kind: u8, aad: &[u8], rest: &[u8]) -> Option<Vec<u8>> {
        // It holds a session's resumption secret (a SEAL's plaintext).
        let question = Secret(wire::frame(
            kind,
            &[&(aad.len() as u32).to_be_bytes(), aad, rest],
        ));
        self.ask(&question.0).ok().flatten()
    }
}

/// The longest answer: a ticket, at most a question sealed.
const ANSWER_MAX: usize = wire::MAX_QUESTION + 64;

impl Seal for Holder {
    fn seal(&self, aad: &[u8], plain: &[u8]) -> Option<Vec<u8>> {
        self.ask_ticket(SEAL, aad, plain)
    }

    fn open(&self, aad: &[u8], ticket: &[u8]) -> Option<Vec<u8>> {
        self.ask_ticket(OPEN, aad, ticket)
    }
}

impl Verdict {
    /// Whether the holder got past `stage` (its error, if any, comes after).
    pub fn passed(&self, stage: Stage) -> bool {
        self.0.as_ref().err().is_none_or(|e| e.stage > stage)
    }

    pub(super) fn into_result(self) -> Result<Ready, Staged> {
        self.0
    }

    #[cfg(test)]
    pub(super) fn failed(staged: Staged) -> Verdict {
        Verdict(Err(staged))
    }

    #[cfg(test)]
    pub(super) fn ready_for_tests() -> Verdict {
        Verdict(Ok(Ready {
            keys: KeyStore::new([]),
            tickets: false,
        }))
    }
}

/// READY's body (wire.rs).
fn read_ready(body: &[u8]) -> Option<Ready> {
    let mut r = Reader(body);
    let tickets = match r.u8()? {
        0 => false,
        1 => true,
        _ => return None,
    };
    let mut pairs = Vec::new();
    while !r.0.is_empty() {
        let name = match wire::bytes(&mut r)? {
            [] => None,
            name => Some(String::from_utf8(name.to_vec()).ok()?),
        };
        let chain = (0..r.u32()?)
            .map(|_| wire::bytes(&mut r).map(|der| CertificateDer::from(der.to_vec())))
            .collect::<Option<Vec<_>>>()?;
        pairs.push((name, chain));
    }
    Some(Ready {
        keys: KeyStore::new(pairs),
        tickets,
    })
}

/// A key the holder keeps: rustls chooses its scheme here, and its signer
/// asks the holder.
struct HeldKey {
    holder: Holder,
    pair: u32,
    kind: Kind,
}

impl std::fmt::Debug for HeldKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HeldKey(pair {}, {:?})", self.pair, self.kind.algorithm)
    }
}

impl SigningKey for HeldKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        let scheme = match self.kind.schemes {
            // Its certificate does not say: the first the client offers,
            // and the holder, loading the key, says why it cannot serve.
            [] => offered.first(),
            ours => ours.iter().find(|s| offered.contains(s)),
        };
        Some(Box::new(HeldSigner {
            holder: self.holder.clone(),
            pair: self.pair,
            scheme: *scheme?,
        }))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        self.kind.algorithm
    }
}

struct HeldSigner {
    holder: Holder,
    pair: u32,
    scheme: SignatureScheme,
}

impl std::fmt::Debug for HeldSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HeldSigner(pair {}, {:?})", self.pair, self.scheme)
    }
}

impl Signer for HeldSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let head = [
            &self.pair.to_be_bytes()[..],
            &u16::from(self.scheme).to_be_bytes(),
        ]
        .concat();
        match self.holder.ask(&wire::frame(SIGN, &[&head, message])) {
            Ok(Some(signature)) => Ok(signature),
            // Why is the connection's finding (main says it); rustls gets
            // only this, and ends the handshake.
            _ => Err(rustls::Error::General("the key holder did not sign".into())),
        }
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}

/// What a pair's key is, read from its certificate's public key (public,
/// unlike the key): the algorithm rustls matches TLS 1.2 suites with, and
/// the schemes that key signs with, in the provider's order of preference
/// (rustls' aws-lc-rs keys, and rsa.rs's, offer exactly these).
#[derive(Clone, Copy)]
struct Kind {
    algorithm: SignatureAlgorithm,
    schemes: &'static [SignatureScheme],
}

/// rsaEncryption, 1.2.840.113549.1.1.1.
const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// id-ecPublicKey, 1.2.840.10045.2.1, and its named curves: prime256v1
/// (1.2.840.10045.3.1.7), secp384r1 (1.3.132.0.34), secp521r1 (1.3.132.0.35).
const EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];
/// id-Ed25519, 1.3.101.112.
const ID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

impl Kind {
    const UNKNOWN: Kind = Kind {
        algorithm: SignatureAlgorithm::Unknown(0),
        schemes: &[],
    };

    fn of(leaf: &[u8]) -> Kind {
        Kind::from_spki(leaf).unwrap_or(Kind::UNKNOWN)
    }

    fn from_spki(leaf: &[u8]) -> Option<Kind> {
        use SignatureScheme::*;
        let spki = crate::asn1::subject_public_key_info(leaf)?;
        let [(SEQUENCE, algorithm), ..] = elements(spki)?[..] else {
            return None;
        };
        let (algorithm, schemes): (_, &'static [SignatureScheme]) = match elements(algorithm)?[..] {
            [(OID, RSA), ..] => (SignatureAlgorithm::RSA, &crate::tls::RSA_SCHEMES),
            [(OID, EC), (OID, curve)] => (
                SignatureAlgorithm::ECDSA,
                match curve {
                    P256 => &[ECDSA_NISTP256_SHA256],
                    P384 => &[ECDSA_NISTP384_SHA384],
                    P521 => &[ECDSA_NISTP521_SHA512],
                    _ => return None,
                },
            ),
            [(OID, ID_ED25519)] => (SignatureAlgorithm::ED25519, &[ED25519]),
            _ => return None,
        };
        Some(Kind { algorithm, schemes })
    }
}

/// How long a wait for the holder may last: `PATIENCE` from now, or until
/// the handshake's deadline if that comes first.
#[derive(Clone, Copy)]
struct Until {
    at: Instant,
    /// It is `-K`'s deadline: its passing is the handshake's timeout.
    handshake: bool,
}

impl Until {
    fn from(deadline: Option<Instant>) -> Until {
        let patience = Instant::now() + PATIENCE;
        match deadline {
            Some(at) if at < patience => Until {
                at,
                handshake: true,
            },
            _ => Until {
                at: patience,
                handshake: false,
            },
        }
    }
}

/// Waits until `fd` is ready for `events`; without `until`, for as long
/// as it takes.
fn wait(fd: BorrowedFd, events: PollFlags, until: Option<Until>) -> Result<(), Error> {
    loop {
        let timeout = until.map_or(PollTimeout::NONE, |u| crate::engine::millis_until(u.at));
        match poll(&mut [PollFd::new(fd, events)], timeout) {
            Ok(n) if n > 0 => return Ok(()),
            Ok(_) => {
                return Err(match until {
                    Some(Until {
                        handshake: true, ..
                    }) => Error::HandshakeTimeout,
                    _ => Error::Holder(format!(
                        "the key holder did not answer within {} s",
                        PATIENCE.as_secs()
                    )),
                })
            }
            Err(Errno::EINTR) => {}
            Err(e) => return Err(Error::errno("poll", e)),
        }
    }
}

/// Writes `bytes` whole.
fn send(fd: BorrowedFd, mut bytes: &[u8], until: Until) -> Result<(), Error> {
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EAGAIN) => wait(fd, PollFlags::POLLOUT, Some(until))?,
            Err(Errno::EINTR) => {}
            Err(Errno::EPIPE | Errno::ECONNRESET) => return Err(gone()),
            Err(e) => return Err(Error::errno("write to the key holder", e)),
        }
    }
    Ok(())
}

/// One whole frame, past its length: its kind, then its body. At most
/// `limit` bytes: a longer one is malformed.
fn receive(fd: BorrowedFd, until: Option<Until>, limit: usize) -> Result<Vec<u8>, Error> {
    let mut header = [0; 4];
    fill(fd, &mut header, until)?;
    let len = wire::length(&header);
    if len == 0 || len > limit {
        return Err(malformed());
    }
    let mut frame = vec![0; len];
    fill(fd, &mut frame, until)?;
    Ok(frame)
}

fn fill(fd: BorrowedFd, mut buf: &mut [u8], until: Option<Until>) -> Result<(), Error> {
    while !buf.is_empty() {
        match nix::unistd::read(fd, buf) {
            Ok(0) => return Err(gone()),
            Ok(n) => buf = &mut buf[n..],
            Err(Errno::EAGAIN) => wait(fd, PollFlags::POLLIN, until)?,
            Err(Errno::EINTR) => {}
            Err(Errno::ECONNRESET) => return Err(gone()),
            Err(e) => return Err(Error::errno("read from the key holder", e)),
        }
    }
    Ok(())
}

/// After the handshake: our end shut for writing, the holder reads its
/// EOF and exits, which closes its end; whether that came within
/// `PATIENCE` (a holder stopped by a signal would not: it is then left to
/// die with the engine, PDEATHSIG, and not reaped).
fn holder_left(fd: BorrowedFd) -> bool {
    let _ = nix::sys::socket::shutdown(fd.as_raw_fd(), nix::sys::socket::Shutdown::Write);
    let until = Until::from(None);
    let mut scrap = [0; 64];
    loop {
        match nix::unistd::read(fd, &mut scrap) {
            Ok(0) => return true,
            // Nothing is expected; whatever it is, its end is awaited.
            Ok(_) | Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                if wait(fd, PollFlags::POLLIN, Some(until)).is_err() {
                    return false;
                }
            }
            Err(_) => return true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(alg: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let params = rcgen::CertificateParams::new(vec!["x".into()]).unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_certificate_says_what_its_key_signs_with() {
        use SignatureScheme::*;
        let kind = |alg| Kind::of(&leaf(alg));
        let p256 = kind(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert_eq!(p256.algorithm, SignatureAlgorithm::ECDSA);
        assert_eq!(p256.schemes, [ECDSA_NISTP256_SHA256]);
        assert_eq!(
            kind(&rcgen::PKCS_ECDSA_P384_SHA384).schemes,
            [ECDSA_NISTP384_SHA384]
        );
        let ed = kind(&rcgen::PKCS_ED25519);
        assert_eq!(
            (ed.algorithm, ed.schemes),
            (SignatureAlgorithm::ED25519, &[ED25519][..])
        );
        let unknown = Kind::of(b"\x30\x00");
        assert_eq!(unknown.algorithm, SignatureAlgorithm::Unknown(0));
        assert!(unknown.schemes.is_empty());
    }

    #[test]
    fn a_key_of_unknown_kind_lets_the_holder_decide() {
        let (engine, _holder) = std::os::unix::net::UnixStream::pair().unwrap();
        let holder = Holder::new(1, engine.into()).unwrap();
        let key = HeldKey {
            holder,
            pair: 0,
            kind: Kind::UNKNOWN,
        };
        let offered = [SignatureScheme::RSA_PSS_SHA256, SignatureScheme::ED25519];
        let chosen = key.choose_scheme(&offered).map(|s| s.scheme());
        assert_eq!(chosen, Some(SignatureScheme::RSA_PSS_SHA256));
        assert!(key.choose_scheme(&[]).is_none());
    }
}
