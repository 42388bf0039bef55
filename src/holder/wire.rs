//! The key holder's protocol, both sides: frames on a stream socket, one
//! question from the engine, one answer from the holder. Nothing generic:
//! three questions, four answers.
//!
//! A frame: its length (4 bytes, big-endian, counting what follows), its
//! kind (1 byte), its body. Lengths inside a body are 4 bytes too.
//!
//! The engine asks:
//!
//! - `SIGN`: the pair's number (4), the scheme (2), then the message;
//! - `SEAL`: the associated data (length, bytes), then the plaintext;
//! - `OPEN`: the associated data (length, bytes), then the ticket.
//!
//! The holder answers:
//!
//! - `READY`, once, first: whether tickets are on (1), then each pair in
//!   its number's order, its name (length, bytes; empty for the default
//!   pair) and its chain (a count, then each certificate: length, DER);
//! - `FAILED`: where in the start-up's order (1: a `Stage`), then the error
//!   (its variant (1), errno (4), its text): a start-up error in place of
//!   `READY`, a key file's error in place of a signature, or a refusal
//!   (after which the holder exits);
//! - `DONE`: the signature, the ticket, or the opened plaintext;
//! - `NOTHING`: a ticket that no key of the file opens, a seal that failed.

use super::Stage;
use crate::error::Error;
use crate::wire::Reader;

pub const SIGN: u8 = 1;
pub const SEAL: u8 = 2;
pub const OPEN: u8 = 3;

pub const READY: u8 = 16;
pub const FAILED: u8 = 17;
pub const DONE: u8 = 18;
pub const NOTHING: u8 = 19;

/// The longest question the holder reads: a ticket's plaintext is rustls'
/// session, whose client chain is at most a handshake message (64 KiB,
/// engine/hello.rs), with room to spare; a ticket, at most that sealed.
pub const MAX_QUESTION: usize = 256 << 10;

/// A frame of `kind` whose body is `parts`, one after the other.
pub fn frame(kind: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = 1 + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut out = Vec::with_capacity(4 + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.push(kind);
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

/// How long the frame whose header is `header` is, past its length field.
pub fn length(header: &[u8; 4]) -> usize {
    u32::from_be_bytes(*header) as usize
}

/// `bytes`, after their length.
pub fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// What `put` wrote.
pub fn bytes<'a>(r: &mut Reader<'a>) -> Option<&'a [u8]> {
    let n = r.u32()?;
    r.take(usize::try_from(n).ok()?)
}

/// A `FAILED` frame's body.
pub fn failed(stage: Stage, e: &Error) -> Vec<u8> {
    let (variant, errno, text): (u8, i32, &str) = match e {
        Error::Usage => (0, 0, ""),
        Error::BadUsage(m) => (1, 0, m),
        Error::Config(m) => (2, 0, m),
        Error::Setup(m) => (3, 0, m),
        Error::Tls(m) => (4, 0, m),
        Error::HandshakeTimeout => (5, 0, ""),
        Error::Sys { what, errno } => (6, *errno, what),
        Error::Holder(m) => (7, 0, m),
        // The holder names no connection: its lines are the engine's.
        Error::Connection { error, .. } => return failed(stage, error),
    };
    let mut body = vec![stage as u8, variant];
    body.extend_from_slice(&errno.to_be_bytes());
    body.extend_from_slice(text.as_bytes());
    body
}

/// What `failed` wrote.
pub fn read_failed(body: &[u8]) -> Option<(Stage, Error)> {
    let mut r = Reader(body);
    let stage = match r.u8()? {
        0 => Stage::Keys,
        1 => Stage::Alpn,
        2 => Stage::Tickets,
        3 => Stage::Later,
        _ => return None,
    };
    let variant = r.u8()?;
    let errno = r.u32()? as i32;
    let text = String::from_utf8(r.0.to_vec()).ok()?;
    let error = match variant {
        0 => Error::Usage,
        1 => Error::BadUsage(text),
        2 => Error::Config(text),
        3 => Error::Setup(text),
        4 => Error::Tls(text),
        5 => Error::HandshakeTimeout,
        6 => Error::Sys { what: text, errno },
        7 => Error::Holder(text),
        _ => return None,
    };
    Some((stage, error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_cross_as_they_were() {
        for e in [
            Error::Usage,
            Error::BadUsage("invalid $TLS_UID".into()),
            Error::Config("invalid KEYFILE file /k: the file is empty".into()),
            Error::Setup("x".into()),
            Error::Tls("y".into()),
            Error::HandshakeTimeout,
            Error::errno("setuid", nix::errno::Errno::EAGAIN),
            Error::Holder("the key holder refused it".into()),
        ] {
            for stage in [Stage::Keys, Stage::Tickets, Stage::Later] {
                let (s, back) = read_failed(&failed(stage, &e)).unwrap();
                assert_eq!((s, back.to_string()), (stage, e.to_string()));
                assert_eq!(back.exit_code(), e.exit_code());
            }
        }
        let named = Error::Tls("z".into()).in_connection("pid 1");
        let (_, back) = read_failed(&failed(Stage::Keys, &named)).unwrap();
        assert_eq!(back.to_string(), "s6-tlsd-io: fatal: z");
        assert!(read_failed(&[9, 2, 0, 0, 0, 0]).is_none());
        assert!(read_failed(&[0, 2, 0, 0]).is_none());
    }

    #[test]
    fn frames_say_their_length() {
        let f = frame(SIGN, &[&[1, 2], b"abc"]);
        assert_eq!(f, [0, 0, 0, 6, SIGN, 1, 2, b'a', b'b', b'c']);
        assert_eq!(length(&[0, 0, 0, 6]), 6);
        let mut out = Vec::new();
        put(&mut out, b"xyz");
        out.push(7);
        let mut r = Reader(&out);
        assert_eq!(bytes(&mut r), Some(&b"xyz"[..]));
        assert_eq!(r.0, [7]);
        assert_eq!(bytes(&mut Reader(&[0, 0, 0, 9, 1])), None);
    }
}
