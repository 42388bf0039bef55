//! One error type for the whole program: each variant knows its exit code
//! (spec section 7) and its one-line message, in skalibs' format.

use std::fmt;
use std::sync::{Arc, OnceLock};

pub const PROG: &str = "s6-tlsd-io";

/// Upstream's line, then the check mode's form, which upstream lacks.
pub const USAGE: &str = "s6-tlsd-io [ -v verbosity ] [ -d notif ] [ -S | -s ] [ -J | -j ] \
[ -Y | -y ] [ -K timeout ] [ -k snilevel ] fdr fdw | s6-tlsd-io -t [ -Y | -y ] [ -k snilevel ]";

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
    /// The key holder (src/holder/) failed the engine: gone, silent,
    /// refusing, or making no sense. Exit 111, as a failed system call:
    /// the connection's own configuration is not in question.
    Holder(String),
    /// An error of the connection, its line naming the connection after
    /// the level as every log line does (log.rs): its own exit code.
    Connection {
        context: &'static str,
        error: Box<Error>,
    },
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage | Error::BadUsage(_) => 100,
            Error::Config(_) => 96,
            Error::Setup(_) => 97,
            Error::Tls(_) | Error::HandshakeTimeout => 98,
            Error::Sys { .. } | Error::Holder(_) => 111,
            Error::Connection { error, .. } => error.exit_code(),
        }
    }

    /// Whether the message is printed at this verbosity. Upstream silences
    /// only the handshake timeout at `-v 0`.
    pub fn is_reported(&self, verbosity: u32) -> bool {
        match self {
            Error::Connection { error, .. } => error.is_reported(verbosity),
            e => verbosity > 0 || !matches!(e, Error::HandshakeTimeout),
        }
    }

    /// This error, its line naming the connection (`context`, as log.rs
    /// has it); unchanged when there is no context.
    pub fn in_connection(self, context: &'static str) -> Error {
        match (context, self) {
            ("", e) | (_, e @ Error::Connection { .. }) => e,
            (context, e) => Error::Connection {
                context,
                error: Box::new(e),
            },
        }
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

/// An error found where it cannot be returned, in a callback of rustls'
/// (a signature the key holder did not make, a ticket it did not seal):
/// kept for the caller, who explains the handshake's failure with it once
/// rustls has given up.
#[derive(Clone, Debug, Default)]
pub struct Finding(Arc<OnceLock<Error>>);

impl Finding {
    /// The first one found stands: what came after is its consequence.
    pub fn record(&self, e: Error) {
        let _ = self.0.set(e);
    }

    pub fn found(&self) -> Option<&Error> {
        self.0.get()
    }

    /// `e`, or what was found, which is why `e` happened.
    pub fn explain(&self, e: Error) -> Error {
        self.found().cloned().unwrap_or(e)
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

/// The reason a PEM file cannot be decoded, in words: the decoder's own
/// (`missing section end marker: [67, 69, ...]`) shows bytes in decimal.
pub fn pem_reason(err: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error::*;
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).trim().to_string();
    match err {
        MissingSectionEnd { end_marker } => format!(
            "the PEM block {} has no end line (the file is cut short?)",
            text(end_marker)
        ),
        IllegalSectionStart { line } => format!(
            "a PEM block starts with a malformed line: {}",
            text(line).escape_default()
        ),
        Base64Decode(_) => "a PEM block's base64 text is damaged".into(),
        SectionTooLarge => "a PEM block is larger than 256 MB".into(),
        _ => "the PEM text cannot be decoded".into(),
    }
}

impl Error {
    /// The line at `level` (skalibs': `fatal`), `context` (with its colon)
    /// after the level.
    fn write(&self, f: &mut fmt::Formatter<'_>, level: &str, context: &str) -> fmt::Result {
        match self {
            Error::Usage => write!(f, "{PROG}: usage: {USAGE}"),
            Error::BadUsage(m)
            | Error::Config(m)
            | Error::Setup(m)
            | Error::Tls(m)
            | Error::Holder(m) => {
                write!(f, "{PROG}: {level}: {context}{m}")
            }
            Error::HandshakeTimeout => write!(f, "{PROG}: {level}: {context}handshake timed out"),
            Error::Sys { what, errno } => {
                write!(
                    f,
                    "{PROG}: {level}: {context}unable to {what}: {}",
                    strerror(*errno)
                )
            }
            Error::Connection { context, error } => error.write(f, level, &format!("{context}: ")),
        }
    }

    /// The same message at another level: the check mode reports the
    /// errors a connection would die of as `error:` lines, and goes on.
    pub fn at_level<'a>(&'a self, level: &'a str) -> impl fmt::Display + 'a {
        struct Line<'a>(&'a Error, &'a str);
        impl fmt::Display for Line<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.write(f, self.1, "")
            }
        }
        Line(self, level)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, "fatal", "")
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
        let e = Error::HandshakeTimeout.in_connection("pid 7 ::1_443");
        assert_eq!(
            e.to_string(),
            "s6-tlsd-io: fatal: pid 7 ::1_443: handshake timed out"
        );
        assert_eq!(e.exit_code(), 98);
        assert!(!e.is_reported(0));
        assert_eq!(
            Error::Tls("x".into()).in_connection("").to_string(),
            "s6-tlsd-io: fatal: x"
        );
    }
}
