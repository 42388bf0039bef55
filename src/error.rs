//! One error type for the whole program: each variant knows its exit code
//! (spec section 7) and its one-line message, in skalibs' format.

use std::fmt;

pub const PROG: &str = "s6-tlsd-io";

pub const USAGE: &str = "s6-tlsd-io [ -v verbosity ] [ -d notif ] [ -S | -s ] [ -J | -j ] \
[ -Y | -y ] [ -K timeout ] [ -k snilevel ] fdr fdw";

#[derive(Debug, Clone)]
pub enum Error {
    /// Missing or non-numeric operands: the usage line, exit 100.
    Usage,
    /// Bad options or environment: exit 100.
    BadUsage(String),
    /// Bad key, certificate or trust anchor configuration: exit 96.
    Config(String),
    /// The TLS engine could not be set up: exit 97.
    Setup(String),
    /// A TLS failure while running: exit 98.
    Tls(String),
    /// `-K` expired before the handshake completed: exit 98, silent at `-v 0`.
    HandshakeTimeout,
    /// A system call failed: exit 111, "unable to WHAT: strerror".
    Sys { what: String, errno: i32 },
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage | Error::BadUsage(_) => 100,
            Error::Config(_) => 96,
            Error::Setup(_) => 97,
            Error::Tls(_) | Error::HandshakeTimeout => 98,
            Error::Sys { .. } => 111,
        }
    }

    /// Whether the message is printed at this verbosity. Upstream silences
    /// only the handshake timeout at `-v 0`.
    pub fn is_reported(&self, verbosity: u32) -> bool {
        verbosity > 0 || !matches!(self, Error::HandshakeTimeout)
    }

    pub fn sys(what: impl Into<String>, err: &std::io::Error) -> Error {
        Error::Sys {
            what: what.into(),
            errno: err.raw_os_error().unwrap_or(libc::EIO),
        }
    }

    pub fn errno(what: impl Into<String>, errno: nix::errno::Errno) -> Error {
        Error::Sys {
            what: what.into(),
            errno: errno as i32,
        }
    }
}

/// strerror(3) text, as skalibs prints it (glibc's wording, not Rust's).
pub fn strerror(errno: i32) -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length; the XSI strerror_r
    // that the libc crate binds writes a NUL-terminated string into it.
    if unsafe { libc::strerror_r(errno, buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return format!("error {errno}");
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

/// The reason part of an I/O error, for messages that embed one.
pub fn io_reason(err: &std::io::Error) -> String {
    match err.raw_os_error() {
        Some(errno) => strerror(errno),
        None => err.to_string(),
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage => write!(f, "{PROG}: usage: {USAGE}"),
            Error::BadUsage(m) | Error::Config(m) | Error::Setup(m) | Error::Tls(m) => {
                write!(f, "{PROG}: fatal: {m}")
            }
            Error::HandshakeTimeout => write!(f, "{PROG}: fatal: handshake timed out"),
            Error::Sys { what, errno } => {
                write!(f, "{PROG}: fatal: unable to {what}: {}", strerror(*errno))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_follow_skalibs() {
        let e = Error::Sys {
            what: "write to local".into(),
            errno: libc::EPIPE,
        };
        assert_eq!(
            e.to_string(),
            "s6-tlsd-io: fatal: unable to write to local: Broken pipe"
        );
        assert_eq!(e.exit_code(), 111);
        assert!(Error::Usage
            .to_string()
            .starts_with("s6-tlsd-io: usage: s6-tlsd-io [ -v"));
        assert!(!Error::HandshakeTimeout.is_reported(0));
        assert_eq!(strerror(libc::EBADF), "Bad file descriptor");
        assert!(Error::Tls("x".into()).is_reported(0));
    }
}
