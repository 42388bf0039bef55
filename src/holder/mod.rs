//! The key holder (issue 25): the one process of a connection that holds
//! private keys. The engine forks it first thing (no exec: no new program,
//! variable or service; the engine keeps the pid that s6-tlsd and the
//! application know). The holder reads every key pair the environment
//! names and the ticket key file, as root, exactly as the engine did
//! (keys.rs, ticket/keys.rs: same messages, same order, same exit codes),
//! hands the engine the certificate chains, drops to TLS_UID/TLS_GID,
//! confines itself tighter than the engine (sandbox.rs), and answers three
//! questions on its socket: sign, seal a ticket, open a ticket. When the
//! handshake is done the engine closes the socket; the holder wipes what
//! it holds, exits, and the engine reaps it before it relays a byte.
//!
//! So the process that parses what the network sends (the ClientHello, a
//! client's certificate chain, the tickets offered) never holds a private
//! key nor a ticket key: a memory disclosure there gives away no long-term
//! key (Heartbleed's lesson), and code run there gets one signature over
//! its own handshake, not the key. After OpenSSH's monitor, the holder
//! checks every question (serve.rs): a signature only over what a TLS 1.3
//! CertificateVerify or a TLS 1.2 ServerKeyExchange signs, once per
//! connection; no more tickets sealed than the engine sends, only once the
//! handshake has authenticated; a few opened. Anything else ends it.
//!
//! One file per side of the boundary, as OpenSSH's monitor.c and
//! monitor_wrap.c: serve.rs is the holder's, ask.rs the engine's, wire.rs
//! the frames between them.

mod ask;
mod serve;
mod wire;

use std::time::Duration;

use nix::errno::Errno;

pub use ask::{Holder, Ready, Verdict};

use crate::env::Env;
use crate::error::Error;

/// How long the engine waits for any one answer of the holder's, and for
/// its end after the handshake: a signature takes milliseconds (RSA 8192:
/// tens), so only a holder stopped or stuck waits this long. `-K` shortens
/// it: no wait outlives the handshake's deadline.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Where a start-up error falls in the order in which the engine checked
/// its configuration before the split (tests/config.rs and tests/sni.rs
/// pin much of it): the key pairs (the holder's), `TLS_ALPN` (the
/// engine's), the ticket key file (the holder's), then the rest (each
/// process's own privilege drop and confinement, and the engine's trust
/// anchors, CRLs and descriptors). The two processes check at once; the
/// earliest error is said, alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Keys,
    Alpn,
    Tickets,
    Later,
}

/// A start-up error, and where it falls.
#[derive(Debug)]
pub struct Staged {
    pub stage: Stage,
    pub error: Error,
}

impl Stage {
    /// `error`, found at this stage.
    pub fn of(self, error: Error) -> Staged {
        Staged { stage: self, error }
    }
}

/// Splits the process: the engine goes on with the holder's handle; the
/// holder never returns from here. `sni_level`: which pairs it reads.
pub fn start(env: &Env, sni_level: u32) -> Result<Holder, Error> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let (engine_end, holder_end) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| unable_to_start("socketpair", e))?;
    let engine = nix::unistd::getpid().as_raw();
    // SAFETY: the process has one thread (the engine never starts
    // another), so the child inherits no lock held by a thread that does
    // not exist in it, and may go on running Rust code and malloc.
    match unsafe { libc::fork() } {
        -1 => Err(unable_to_start("fork", Errno::last())),
        0 => {
            drop(engine_end);
            serve::run(holder_end, env, sni_level, engine)
        }
        pid => {
            drop(holder_end);
            Holder::new(pid as u32, engine_end)
        }
    }
}

/// The holder could not be started, or start: `call` failed.
fn unable_to_start(call: &str, errno: Errno) -> Error {
    Error::errno(format!("start the key holder: {call}"), errno)
}

/// The engine's configuration, once both processes have checked theirs:
/// the holder's ready message and what the engine prepared meanwhile, or
/// the error that comes first in the start-up's order (the engine's when
/// both fall at the same stage: its own is what it would have met).
pub fn first<T>(holder: Verdict, engine: Result<T, Staged>) -> Result<(Ready, T), Error> {
    match (holder.into_result(), engine) {
        (Ok(ready), Ok(mine)) => Ok((ready, mine)),
        (Err(h), Err(e)) if h.stage < e.stage => Err(h.error),
        (_, Err(e)) => Err(e.error),
        (Err(h), Ok(_)) => Err(h.error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earlier_stage_is_said_the_engine_s_on_a_tie() {
        let holder = |stage: Option<Stage>| match stage {
            Some(stage) => Verdict::failed(stage.of(Error::Config(format!("holder {stage:?}")))),
            None => Verdict::ready_for_tests(),
        };
        let engine = |stage: Option<Stage>| match stage {
            Some(stage) => Err(stage.of(Error::BadUsage(format!("engine {stage:?}")))),
            None => Ok(()),
        };
        use Stage::*;
        let said = |h, e| first(holder(h), engine(e)).err().map(|e| e.to_string());
        let line = |who: &str, s: Stage| Some(format!("s6-tlsd-io: fatal: {who} {s:?}"));
        assert_eq!(said(Some(Keys), Some(Alpn)), line("holder", Keys));
        assert_eq!(said(Some(Tickets), Some(Alpn)), line("engine", Alpn));
        assert_eq!(said(Some(Tickets), Some(Later)), line("holder", Tickets));
        assert_eq!(said(Some(Later), Some(Later)), line("engine", Later));
        assert_eq!(said(Some(Later), None), line("holder", Later));
        assert_eq!(said(None, Some(Alpn)), line("engine", Alpn));
        assert_eq!(said(None, None), None);
    }
}
