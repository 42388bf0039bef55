//! s6-tlsd-io: the TLS server engine of an s6-tlsd pipeline. The network
//! client is on fds 0 and 1, the local application on the two fds named on
//! the command line. The story: read the options; split in two, the key
//! holder (holder/), a child that alone reads the private keys and the
//! ticket keys and signs and seals for the handshake, and the engine, which
//! meanwhile drops root, prepares the rest and confines itself to relaying
//! (sandbox.rs); answer the handshake, asking the holder for its signature
//! and tickets; let the holder go; tell the parent what was negotiated;
//! relay until nothing more can move; exit with a code that says how it
//! went. Or, under `-t`, read the same configuration and report on it
//! (check.rs).
//!
//! `main` is the C one: std's start-up (it finds the main thread's stack
//! guard by parsing /proc/self/maps, and installs a stack-overflow handler
//! with its own alternate stack) is work every connection would pay for a
//! message about stack overflows. What of it matters is done here: SIGPIPE
//! ignored, so that write errors come back as EPIPE. std::env still has the
//! arguments (glibc hands them to std's initialiser).

#![no_main]

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;

use s6_tlsd_io::alpn::Alpn;
use s6_tlsd_io::cli::{self, Options};
use s6_tlsd_io::engine::{self, Fds, Settings};
use s6_tlsd_io::env::Env;
use s6_tlsd_io::error::Error;
use s6_tlsd_io::holder::{self, Holder, Stage, Staged};
use s6_tlsd_io::log::Log;
use s6_tlsd_io::notify::Notification;
use s6_tlsd_io::policy::{self, ClientAuth, Pairs, Tickets};
use s6_tlsd_io::{check, fds, privilege, sandbox, tls};

/// Large blocks on page boundaries: the relay's copies then cost the same
/// whatever the heap's layout (src/alloc.rs).
#[global_allocator]
static HEAP: s6_tlsd_io::alloc::PageAligned = s6_tlsd_io::alloc::PageAligned;

#[no_mangle]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    // SAFETY: setting a signal's disposition to SIG_IGN, before any thread.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let (verbosity, result) = match cli::parse(std::env::args_os().skip(1)) {
        // `-t`: a report instead of a connection (check.rs). It reads the
        // keys itself: every block it frees is wiped (alloc.rs).
        Ok(opts) if opts.check => {
            s6_tlsd_io::alloc::wipe_on_free();
            std::process::exit(check::run(&opts, &Env::from_process()))
        }
        Ok(opts) => (opts.verbosity, run(&opts)),
        Err(e) => (1, Err(e)),
    };
    let code = match result {
        Ok(()) => 0,
        Err(e) => {
            if e.is_reported(verbosity) {
                s6_tlsd_io::log::fatal(&e);
            }
            e.exit_code()
        }
    };
    std::process::exit(code)
}

fn run(opts: &Options) -> Result<(), Error> {
    let env = Env::from_process();
    let log = Log::connection(opts.verbosity, &env);
    // Checked before the holder's socket can take a number that was to be
    // one of them (a closed fd 3, say).
    let fds = fds::take(opts);
    // No core file, no ptrace by the same uid, for either process.
    privilege::no_dumps()?;
    // The process splits here, first thing: the fork copies little yet.
    let holder = holder::start(&env, opts.sni_level)?;
    let provider = tls::provider();
    // The two sides check their parts at once; the error said is the one
    // that comes first in the order of the checks (holder/mod.rs, Stage).
    let mut warning = None;
    let prepared = prepare(opts, &env, &log, &provider, fds, &holder, &mut warning);
    let verdict = holder.ready();
    // Said where it was before the split: once the key files passed.
    if let Some(warning) = warning.filter(|_| verdict.passed(Stage::Tickets)) {
        log.warn_by_default(format_args!("{warning}"));
    }
    let (ready, prepared) = holder::first(verdict, prepared)?;
    // Nothing reads the environment from here on; its copy need not stay
    // for the connection's life.
    drop(env);
    let Prepared {
        alpn,
        client,
        fds,
        notif,
    } = prepared;
    let tickets = ready.tickets.then(|| Tickets {
        seal: Arc::new(holder.clone()),
        client_cert_mode: client.mode,
        anchors: client.anchors,
        recheck: client.recheck.clone(),
    });
    let handshake_timeout = match opts.handshake_timeout_ms {
        0 => None,
        ms => Some(Duration::from_millis(ms.into())),
    };
    holder.set_deadline(handshake_timeout.map(|t| Instant::now() + t));
    let settings = Settings {
        close_notify: opts.close_notify,
        enforce_close_notify: opts.enforce_close_notify,
        handshake_timeout,
        log,
        exit_after: true,
    };
    let (keys, verifier, revoked) = (ready.keys, client.verifier, client.revoked);
    engine::run(
        fds,
        settings,
        |client_hello, hello, veto| {
            // Tickets are for TLS 1.3 only: a TLS 1.2 ticket carries the
            // session's master secret, which a stolen key file would reveal.
            let tickets = tickets.as_ref().filter(|_| hello.offers_tls13);
            let pairs = Pairs {
                keys,
                holder: &holder,
            };
            policy::configure(
                pairs,
                &alpn,
                client_hello,
                veto,
                provider,
                verifier,
                tickets,
            )
        },
        |conn, server_name| {
            // The signature made and the tickets sealed: the holder goes,
            // before a byte is relayed.
            holder.finish()?;
            let notification = Notification::of(conn, server_name);
            log.info(format_args!(
                "handshake complete: {}",
                notification.summary()
            ));
            match notif {
                Some(fd) => notification.send(fd),
                None => Ok(()),
            }
        },
    )
    .map_err(|e| {
        holder
            .explain(revoked.explain(e))
            .in_connection(log.context())
    })
}

/// What the engine prepares while the holder reads the keys.
struct Prepared {
    alpn: Arc<Alpn>,
    client: ClientAuth,
    fds: Fds,
    notif: Option<OwnedFd>,
}

/// The engine's part of the start-up, in the order it was checked before
/// the split: TLS_ALPN, the privilege drop (its warning left in `warning`,
/// for `run` to say), client certificate verification, the descriptors
/// (`fds`, checked already), then the confinement. The first error, and
/// where it falls.
fn prepare(
    opts: &Options,
    env: &Env,
    log: &Log,
    provider: &Arc<CryptoProvider>,
    fds: Result<(Fds, Option<OwnedFd>), Error>,
    holder: &Holder,
    warning: &mut Option<String>,
) -> Result<Prepared, Staged> {
    let alpn = Arc::new(Alpn::from_env(env).map_err(|e| Stage::Alpn.of(e))?);
    let later = |e| Stage::Later.of(e);
    // The engine reads nothing as root: the holder read the key pairs.
    *warning = privilege::drop_ids(env).map_err(later)?;
    let client = policy::client_auth(opts, env, provider, *log).map_err(later)?;
    let (fds, notif) = fds.map_err(later)?;
    // From here on the engine only relays, and asks the holder: no file,
    // no exec, no new socket.
    if !sandbox::opted_out(env.get(sandbox::OPT_OUT)) {
        sandbox::confine(log, Some(holder.pid())).map_err(later)?;
    }
    Ok(Prepared {
        alpn,
        client,
        fds,
        notif,
    })
}
