//! Informational and debug lines on stderr (`-v 2`, `-v 3`), in skalibs'
//! format. Fatal errors are printed by main, which is about to exit anyway.

use std::fmt;
use std::os::fd::AsFd;

use crate::error::PROG;

#[derive(Clone, Copy)]
pub struct Log {
    verbosity: u32,
}

impl Log {
    pub fn new(verbosity: u32) -> Log {
        Log { verbosity }
    }

    pub fn info(&self, args: fmt::Arguments) {
        if self.verbosity >= 2 {
            emit("info", args);
        }
    }

    /// Something the operator may want to know, but that does not stop the
    /// engine (`-v 2`, like info: upstream has no such case).
    pub fn warn(&self, args: fmt::Arguments) {
        if self.verbosity >= 2 {
            emit("warning", args);
        }
    }

    /// A warning shown at the default verbosity, as skalibs' warnings
    /// are (upstream's own): only `-v 0` silences it.
    pub fn warn_by_default(&self, args: fmt::Arguments) {
        if self.verbosity >= 1 {
            emit("warning", args);
        }
    }

    pub fn debug(&self, args: fmt::Arguments) {
        if self.verbosity >= 3 {
            emit("debug", args);
        }
    }
}

/// One line, one write(2). A reader of stderr that is slow or gone (a full
/// s6-log pipe) must never stall the tunnel: a line that stderr cannot take
/// at once is dropped. Lines are shorter than PIPE_BUF, so a pipe with room
/// takes each one whole.
fn emit(level: &str, args: fmt::Arguments) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let stderr = std::io::stderr();
    let fd = stderr.as_fd();
    let mut ready = [PollFd::new(fd, PollFlags::POLLOUT)];
    if !matches!(poll(&mut ready, PollTimeout::ZERO), Ok(1)) {
        return;
    }
    let mut line = format!("{PROG}: {level}: {args}");
    line.truncate(4000);
    line.push('\n');
    let _ = nix::unistd::write(fd, line.as_bytes());
}
