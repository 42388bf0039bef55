//! Dropping root (spec section 3): TLS_GID then TLS_UID, only when the real
//! uid is 0. Unlike upstream we also reset the supplementary groups, so that
//! nothing of root's is left once the ids have changed.

use nix::unistd::{getuid, setgid, setgroups, setuid, Gid, Uid};

use crate::cli::scan_u32;
use crate::env::Env;
use crate::error::Error;

pub fn drop_privileges(env: &Env) -> Result<(), Error> {
    if !getuid().is_root() {
        return Ok(());
    }
    let uid = id_from_env(env, "TLS_UID")?;
    let gid = id_from_env(env, "TLS_GID")?;
    if uid == 0 && gid == 0 {
        return Ok(());
    }
    let groups: &[Gid] = if gid != 0 { &[Gid::from_raw(gid)] } else { &[] };
    setgroups(groups).map_err(|e| Error::errno("setgroups", e))?;
    if gid != 0 {
        setgid(Gid::from_raw(gid)).map_err(|e| Error::errno("setgid", e))?;
    }
    if uid != 0 {
        setuid(Uid::from_raw(uid)).map_err(|e| Error::errno("setuid", e))?;
    }
    Ok(())
}

/// Unset means 0, which means "no change".
fn id_from_env(env: &Env, name: &str) -> Result<u32, Error> {
    match env.get(name) {
        None => Ok(0),
        Some(v) => scan_u32(v).ok_or_else(|| Error::BadUsage(format!("invalid ${name}"))),
    }
}
