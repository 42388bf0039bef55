//! A file (or directory) that a variable names: CERTFILE, KEYFILE:x,
//! CAFILE, CADIR and its CRLs, CRLFILE, TLS_TICKET_KEYFILE. Its start-up
//! messages begin in one of two ways, from one place so that every file's
//! read alike: `unable to read VAR file PATH: REASON` (the system's reason)
//! and `invalid VAR file PATH: REASON` (ours).
//!
//! Every such file is read through `Source::read`, by a connection and by
//! `-t` alike: opened without waiting (a FIFO nobody writes to reads as
//! empty, as upstream's `open_readb` has it, instead of blocking the
//! open), and read up to a bound, so that a variable naming /dev/zero or a
//! runaway file stops with a message instead of filling memory.

use std::borrow::Cow;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg, OFlag};

use crate::error::{io_reason, Error};

/// The largest file read: 64 MiB. Far above any key, chain or CA bundle
/// (a bundle of every public CA is about 200 KiB); the largest CRLs
/// published (CAs with millions of revoked certificates) stay under it.
pub const MAX_FILE: u64 = 64 << 20;

pub struct Source {
    pub var: String,
    /// `file` or `directory`.
    kind: &'static str,
    pub path: PathBuf,
}

impl Source {
    pub fn file(var: impl Into<String>, path: impl Into<PathBuf>) -> Source {
        Source {
            var: var.into(),
            kind: "file",
            path: path.into(),
        }
    }

    pub fn directory(var: impl Into<String>, path: impl Into<PathBuf>) -> Source {
        Source {
            kind: "directory",
            ..Source::file(var, path)
        }
    }

    /// The path as messages show it.
    pub fn shown(&self) -> Cow<'_, str> {
        self.path.to_string_lossy()
    }

    /// `VAR file PATH`, as messages name it.
    pub fn named(&self) -> String {
        format!("{} {} {}", self.var, self.kind, self.shown())
    }

    /// Read, but not what we expect.
    pub fn invalid(&self, reason: impl std::fmt::Display) -> Error {
        Error::Config(format!("invalid {}: {reason}", self.named()))
    }

    /// The system refused it.
    pub fn unreadable(&self, e: &std::io::Error) -> Error {
        Error::Config(format!("unable to read {}: {}", self.named(), io_reason(e)))
    }

    /// The whole file, at most `MAX_FILE` bytes.
    pub fn read(&self) -> Result<Vec<u8>, Error> {
        let mut file = open(&self.path).map_err(|e| self.unreadable(&e))?;
        // Sized from the open file, so that a regular file is read into
        // one allocation: a key's bytes are not left behind in a block
        // that a growing buffer gave up.
        let size = file.metadata().map_or(0, |m| m.len()).min(MAX_FILE);
        let mut bytes = Vec::with_capacity(size as usize);
        (&mut file)
            .take(MAX_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| self.unreadable(&e))?;
        if bytes.len() as u64 > MAX_FILE {
            return Err(self.invalid(format_args!(
                "larger than {} MiB: not a key, certificate or CRL file",
                MAX_FILE >> 20
            )));
        }
        Ok(bytes)
    }
}

/// Opened for reading without waiting for a FIFO's writer, then read as a
/// blocking descriptor (skalibs' `open_readb`, which upstream reads
/// certificates with): a FIFO with no writer reads as empty, one with a
/// writer (a shell's `<(...)`) is read to its end.
fn open(path: &Path) -> std::io::Result<File> {
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let flags = fcntl(&file, FcntlArg::F_GETFL)?;
    let blocking = OFlag::from_bits_truncate(flags) - OFlag::O_NONBLOCK;
    fcntl(&file, FcntlArg::F_SETFL(blocking))?;
    Ok(file)
}
