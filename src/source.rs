//! A file (or directory) that a variable names: CERTFILE, KEYFILE:x,
//! CAFILE, CADIR and its CRLs, CRLFILE, TLS_TICKET_KEYFILE. Its start-up
//! messages begin in one of two ways, from one place so that every file's
//! read alike: `unable to read VAR file PATH: REASON` (the system's reason)
//! and `invalid VAR file PATH: REASON` (ours).

use std::borrow::Cow;
use std::path::PathBuf;

use crate::error::{io_reason, Error};

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

    /// The whole file.
    pub fn read(&self) -> Result<Vec<u8>, Error> {
        std::fs::read(&self.path).map_err(|e| self.unreadable(&e))
    }
}
