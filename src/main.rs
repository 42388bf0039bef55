//! s6-tlsd-io: the TLS server engine of an s6-tlsd pipeline. The network
//! client is on fds 0 and 1, the local application on the two fds named on
//! the command line. The story: read the options, load the keys named by the
//! environment, drop root, answer the handshake, tell the parent what was
//! negotiated, relay until nothing more can move, exit with a code that
//! says how it went. (SIGPIPE is already ignored by the Rust runtime: write
//! errors come back as EPIPE.)

mod anchors;
mod cli;
mod engine;
mod env;
mod error;
mod keys;
mod notify;
mod peer;
mod privilege;
mod sni;
mod tls;

use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use rustls::AlertDescription;

use crate::cli::{ClientCert, Options};
use crate::engine::{Fds, Refusal, Settings};
use crate::env::Env;
use crate::error::Error;
use crate::notify::Notification;
use crate::sni::KeyStore;

fn main() {
    let (verbosity, result) = match cli::parse(std::env::args_os().skip(1)) {
        Ok(opts) => (opts.verbosity, run(&opts)),
        Err(e) => (1, Err(e)),
    };
    let code = match result {
        Ok(()) => 0,
        Err(e) => {
            if e.is_reported(verbosity) {
                // Nothing more can be done if stderr itself is gone.
                let _ = writeln!(std::io::stderr(), "{e}");
            }
            e.exit_code()
        }
    };
    std::process::exit(code)
}

fn run(opts: &Options) -> Result<(), Error> {
    let env = Env::from_process();
    let provider = tls::provider();
    let keys = KeyStore::load(&env, opts.sni_level, &provider)?;
    privilege::drop_privileges(&env)?;
    let verifier = match opts.client_cert {
        ClientCert::None => None,
        mode => Some(tls::client_verifier(
            provider.clone(),
            anchors::read_trust_anchors(&env)?,
            mode == ClientCert::Mandatory,
        )?),
    };
    let fds = take_fds(opts)?;
    let notif = take_notification_fd(opts)?;
    let settings = Settings {
        close_notify: opts.close_notify,
        enforce_close_notify: opts.enforce_close_notify,
        handshake_timeout: match opts.handshake_timeout_ms {
            0 => None,
            ms => Some(Duration::from_millis(ms.into())),
        },
    };
    engine::run(
        fds,
        settings,
        |hello| {
            let refuse = |alert, error| Refusal { alert, error };
            let key = match keys.choose(hello.server_name(), &provider) {
                Some(Ok(key)) => key,
                Some(Err(e)) => return Err(refuse(AlertDescription::InternalError, e)),
                None => {
                    let why = match hello.server_name() {
                        Some(name) => format!("no key pair for the server name {name}"),
                        None => "the client sent no server name, and there is no default key pair"
                            .into(),
                    };
                    let e = Error::Tls(format!(
                        "the TLS engine closed the connection during the handshake: {why}"
                    ));
                    return Err(refuse(AlertDescription::UnrecognisedName, e));
                }
            };
            tls::server_config(provider.clone(), key, verifier)
                .map_err(|e| refuse(AlertDescription::InternalError, e))
        },
        |conn| match notif {
            Some(fd) => Notification::of(conn).send(fd),
            None => Ok(()),
        },
    )
}

/// fds 0 and 1, fdr and fdw, checked open and taken over. When fdr and fdw
/// are one descriptor, fdw gets its own copy so that each direction can be
/// shut down and closed on its own.
fn take_fds(opts: &Options) -> Result<Fds, Error> {
    if opts.fdr < 2 || opts.fdw < 2 {
        return Err(Error::BadUsage("fdr and fdw must not be 0 or 1".into()));
    }
    let net_in = take_fd(0)?;
    let net_out = take_fd(1)?;
    let app_in = take_fd(opts.fdr)?;
    let app_out = if opts.fdw == opts.fdr {
        app_in
            .try_clone()
            .map_err(|e| Error::sys(format!("duplicate fd {}", opts.fdw), &e))?
    } else {
        take_fd(opts.fdw)?
    };
    Ok(Fds {
        net_in,
        net_out,
        app_in,
        app_out,
    })
}

fn take_notification_fd(opts: &Options) -> Result<Option<OwnedFd>, Error> {
    match opts.notif {
        0 => Ok(None),
        n if n == 1 || n == opts.fdr || n == opts.fdw => Err(Error::BadUsage(
            "notification-fd must differ from 1, fdr and fdw".into(),
        )),
        n => take_fd(n).map(Some),
    }
}

fn take_fd(n: u32) -> Result<OwnedFd, Error> {
    use nix::errno::Errno;
    let raw = i32::try_from(n).map_err(|_| Error::errno(format!("use fd {n}"), Errno::EBADF))?;
    // SAFETY: F_GETFD only reads the descriptor's flags, and fails cleanly
    // with EBADF if it is not open.
    if unsafe { libc::fcntl(raw, libc::F_GETFD) } == -1 {
        return Err(Error::errno(format!("use fd {n}"), Errno::last()));
    }
    // SAFETY: the descriptor is open, and the caller hands it to us: no one
    // else in this process refers to it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}
