//! Informational and debug lines on stderr (`-v 2`, `-v 3`), in skalibs'
//! format. Fatal errors are printed by main, which is about to exit anyway.
//!
//! Every line names its connection after the level (`s6-tlsd-io: info:
//! pid 1234 127.0.0.1_40404: handshake complete: ...`): each connection is
//! an engine of its own, and lines of engines running at once interleave
//! in one log. main computes that context from the environment.

use std::fmt;
use std::os::fd::AsFd;

use crate::error::PROG;

#[derive(Clone, Copy)]
pub struct Log {
    verbosity: u32,
    /// What each line starts with, after the level; empty: nothing.
    context: &'static str,
}

impl Log {
    pub fn new(verbosity: u32) -> Log {
        Log {
            verbosity,
            context: "",
        }
    }

    /// The same log, each line naming its connection with `context`.
    pub fn naming(self, context: &'static str) -> Log {
        Log { context, ..self }
    }

    /// The connection's name, for a fatal error's line (error.rs).
    pub fn context(&self) -> &'static str {
        self.context
    }

    pub fn info(&self, args: fmt::Arguments) {
        if self.verbosity >= 2 {
            emit("info", self.context, args);
        }
    }

    /// Something the operator may want to know, but that does not stop the
    /// engine (`-v 2`, like info: upstream has no such case).
    pub fn warn(&self, args: fmt::Arguments) {
        if self.verbosity >= 2 {
            emit("warning", self.context, args);
        }
    }

    /// A warning shown at the default verbosity, as skalibs' warnings
    /// are (upstream's own): only `-v 0` silences it.
    pub fn warn_by_default(&self, args: fmt::Arguments) {
        if self.verbosity >= 1 {
            emit("warning", self.context, args);
        }
    }

    pub fn debug(&self, args: fmt::Arguments) {
        if self.verbosity >= 3 {
            emit("debug", self.context, args);
        }
    }
}

/// One line, one write(2). A reader of stderr that is slow or gone (a full
/// s6-log pipe) must never stall the tunnel: a line that stderr cannot take
/// at once is dropped. Lines are shorter than PIPE_BUF, so a pipe with room
/// takes each one whole.
fn emit(level: &str, context: &str, args: fmt::Arguments) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let stderr = std::io::stderr();
    let fd = stderr.as_fd();
    let mut ready = [PollFd::new(fd, PollFlags::POLLOUT)];
    if !matches!(poll(&mut ready, PollTimeout::ZERO), Ok(1)) {
        return;
    }
    let sep = if context.is_empty() { "" } else { ": " };
    let mut line = format!("{PROG}: {level}: {context}{sep}{args}");
    // On a character's boundary: truncate panics elsewhere.
    let mut end = line.len().min(4000);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line.truncate(end);
    line.push('\n');
    let _ = nix::unistd::write(fd, line.as_bytes());
}
