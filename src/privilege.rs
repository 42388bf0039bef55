//! Dropping root (spec section 3): TLS_GID then TLS_UID, only when the real
//! uid is 0. Unlike upstream we also reset the supplementary groups, so that
//! nothing of root's is left once the ids have changed.
//!
//! The two are independent, as upstream's: one without the other changes
//! that id alone, and the engine keeps root's uid or group. That is kept,
//! but said in one warning line, since it is rarely what was meant.
//!
//! Both processes of a connection drop, the engine and the key holder
//! (src/holder/), each as soon as it has read what only root may read: the
//! holder its key files, the engine nothing at all. Only the engine says
//! the warning, once the holder has read its files (a key file's error is
//! said first, alone, as before).

use nix::unistd::{getgid, getuid, setgid, setgroups, setuid, Gid, Uid};

use crate::cli::scan_u32;
use crate::env::Env;
use crate::error::Error;
use crate::log::Log;

/// Neither a core file (RLIMIT_CORE 0, soft and hard) nor dumpable (no
/// ptrace, no /proc/PID/mem, by the same uid): what a process of a
/// connection holds stays in it. Before the key holder is forked, so that
/// both have it.
pub fn no_dumps() -> Result<(), Error> {
    use nix::sys::resource::{setrlimit, Resource};
    setrlimit(Resource::RLIMIT_CORE, 0, 0)
        .map_err(|e| no_dumps_failed("setrlimit(RLIMIT_CORE)", e))?;
    undumpable()
}

fn no_dumps_failed(call: &str, errno: nix::errno::Errno) -> Error {
    Error::errno(format!("forbid core dumps: {call}"), errno)
}

/// Not dumpable. The kernel makes a process dumpable again (as
/// fs.suid_dumpable says) whenever its ids change: `drop_ids` says it
/// again after its change.
fn undumpable() -> Result<(), Error> {
    nix::sys::prctl::set_dumpable(false).map_err(|e| no_dumps_failed("prctl(PR_SET_DUMPABLE)", e))
}

/// Drops to TLS_GID and TLS_UID, and says the warning at once.
pub fn drop_privileges(env: &Env, log: &Log) -> Result<(), Error> {
    if let Some(warning) = drop_ids(env)? {
        log.warn_by_default(format_args!("{warning}"));
    }
    Ok(())
}

/// Drops to TLS_GID and TLS_UID; the warning to say, if one of the two was
/// set without the other, for the caller to say when it is time (or not:
/// the key holder).
pub fn drop_ids(env: &Env) -> Result<Option<String>, Error> {
    if !getuid().is_root() {
        return Ok(None);
    }
    let uid = id_from_env(env, "TLS_UID")?;
    let gid = id_from_env(env, "TLS_GID")?;
    if uid == 0 && gid == 0 {
        return Ok(None);
    }
    let warning = match (env.get("TLS_UID").is_some(), env.get("TLS_GID").is_some()) {
        (true, false) => Some(format!(
            "TLS_UID is set but TLS_GID is not: running as uid {uid} with gid {}",
            getgid()
        )),
        (false, true) => Some(format!(
            "TLS_GID is set but TLS_UID is not: running as gid {gid} with uid 0"
        )),
        _ => None,
    };
    let groups: &[Gid] = if gid != 0 { &[Gid::from_raw(gid)] } else { &[] };
    setgroups(groups).map_err(|e| Error::errno("setgroups", e))?;
    if gid != 0 {
        setgid(Gid::from_raw(gid)).map_err(|e| Error::errno("setgid", e))?;
    }
    if uid != 0 {
        setuid(Uid::from_raw(uid)).map_err(|e| Error::errno("setuid", e))?;
    }
    undumpable()?;
    Ok(warning)
}

/// Unset means 0, which means "no change".
fn id_from_env(env: &Env, name: &str) -> Result<u32, Error> {
    match env.get(name) {
        None => Ok(0),
        Some(v) => scan_u32(v).ok_or_else(|| Error::BadUsage(format!("invalid ${name}"))),
    }
}
