//! The descriptors s6-tlsd hands the engine (spec section 2): the network
//! client on fds 0 and 1, the application's fdr and fdw, the notification
//! fd of `-d`; checked, then owned.

use std::os::fd::{FromRawFd, OwnedFd};

use nix::errno::Errno;

use crate::cli::Options;
use crate::engine::Fds;
use crate::error::Error;

/// fds 0 and 1, fdr, fdw and the notification fd, all checked before any is
/// taken over: a failure closes nothing, so that the message still reaches
/// stderr even when fd 2 is one of them. When fdr and fdw are one
/// descriptor, fdw gets its own copy, so that each direction can be shut
/// down and closed on its own.
pub fn take(opts: &Options) -> Result<(Fds, Option<OwnedFd>), Error> {
    if opts.fdr < 2 || opts.fdw < 2 {
        return Err(Error::BadUsage("fdr and fdw must not be 0 or 1".into()));
    }
    if opts.notif != 0 && [1, opts.fdr, opts.fdw].contains(&opts.notif) {
        return Err(Error::BadUsage(
            "notification-fd must differ from 1, fdr and fdw".into(),
        ));
    }
    let notif = (opts.notif != 0).then_some(opts.notif);
    let mut raw = [0; 5];
    for (slot, n) in raw
        .iter_mut()
        .zip([0, 1, opts.fdr, opts.fdw].into_iter().chain(notif))
    {
        *slot = open_fd(n)?;
    }
    if opts.fdw == opts.fdr {
        // SAFETY: duplicating an open descriptor; the copy is ours.
        raw[3] = unsafe { libc::fcntl(raw[2], libc::F_DUPFD_CLOEXEC, 3) };
        if raw[3] < 0 {
            return Err(Error::errno(
                format!("duplicate fd {}", opts.fdw),
                Errno::last(),
            ));
        }
    }
    // SAFETY: every descriptor is open and distinct, and the caller handed
    // them to us: nothing else in this process refers to them.
    let take = |fd: i32| unsafe { OwnedFd::from_raw_fd(fd) };
    let fds = Fds {
        net_in: take(raw[0]),
        net_out: take(raw[1]),
        app_in: take(raw[2]),
        app_out: take(raw[3]),
    };
    Ok((fds, notif.map(|_| take(raw[4]))))
}

/// The descriptor number, if it is open.
fn open_fd(n: u32) -> Result<i32, Error> {
    let raw = i32::try_from(n).map_err(|_| Error::errno(format!("use fd {n}"), Errno::EBADF))?;
    // SAFETY: F_GETFD only reads the descriptor's flags, and fails cleanly
    // with EBADF if it is not open.
    if unsafe { libc::fcntl(raw, libc::F_GETFD) } == -1 {
        return Err(Error::errno(format!("use fd {n}"), Errno::last()));
    }
    Ok(raw)
}
