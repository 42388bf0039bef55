//! s6-tlsd-io: the TLS server engine of an s6-tlsd pipeline. The network
//! client is on fds 0 and 1, the local application on the two fds named on
//! the command line. The story: read the options, load the keys named by the
//! environment, drop root, confine the process to relaying (sandbox.rs),
//! answer the handshake, tell the parent what was negotiated, relay until
//! nothing more can move, exit with a code that says how it went. Or,
//! under `-t`, read the same configuration and report on it (check.rs).
//!
//! `main` is the C one: std's start-up (it finds the main thread's stack
//! guard by parsing /proc/self/maps, and installs a stack-overflow handler
//! with its own alternate stack) is work every connection would pay for a
//! message about stack overflows. What of it matters is done here: SIGPIPE
//! ignored, so that write errors come back as EPIPE. std::env still has the
//! arguments (glibc hands them to std's initialiser).

#![no_main]

use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::ClientHello;
use rustls::{AlertDescription, ServerConfig};

use s6_tlsd_io::alpn::{Alpn, Protocols};
use s6_tlsd_io::cli::{self, ClientCert, Options};
use s6_tlsd_io::crl::{self, Revoked};
use s6_tlsd_io::engine::{self, Fds, Refusal, Settings, Veto};
use s6_tlsd_io::env::Env;
use s6_tlsd_io::error::Error;
use s6_tlsd_io::log::Log;
use s6_tlsd_io::notify::Notification;
use s6_tlsd_io::sni::KeyStore;
use s6_tlsd_io::ticket::keys::TicketKeys;
use s6_tlsd_io::ticket::{self, Seal};
use s6_tlsd_io::{anchors, check, privilege, sandbox, tls};

/// Large blocks on page boundaries: the relay's copies then cost the same
/// whatever the heap's layout (src/alloc.rs).
#[global_allocator]
static HEAP: s6_tlsd_io::alloc::PageAligned = s6_tlsd_io::alloc::PageAligned;

#[no_mangle]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    // SAFETY: setting a signal's disposition to SIG_IGN, before any thread.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let (verbosity, result) = match cli::parse(std::env::args_os().skip(1)) {
        // `-t`: a report instead of a connection (check.rs).
        Ok(opts) if opts.check => std::process::exit(check::run(&opts, &Env::from_process())),
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
    let provider = tls::provider();
    let keys = KeyStore::load(&env, opts.sni_level)?;
    let faulty = keys.faulty();
    let alpn = Arc::new(Alpn::from_env(&env)?);
    let ticket_keys = TicketKeys::load(&env)?;
    privilege::drop_privileges(&env, &log)?;
    // What a ticket is bound to besides its server name (ticket/mod.rs).
    let mut tickets = ticket_keys.map(|keys| Tickets {
        seal: Arc::new(keys),
        client_cert_mode: 0,
        anchors: [0; 32],
        recheck: None,
    });
    let (verifier, revoked) = match opts.client_cert {
        ClientCert::None => (None, Revoked::default()),
        mode => {
            let roots = anchors::read_trust_anchors(&env)?;
            if let Some(t) = &mut tickets {
                t.client_cert_mode = if mode == ClientCert::Mandatory { 2 } else { 1 };
                t.anchors = ticket::anchors_digest(
                    roots
                        .roots
                        .iter()
                        .map(|a| (&a.subject[..], &a.subject_public_key_info[..])),
                );
            }
            let crls = crl::read_crls(&env)?;
            let verifier = tls::client_verifier(
                provider.clone(),
                roots,
                crls.clone(),
                mode == ClientCert::Mandatory,
            )?;
            // A resumption checks the session's chain with the same
            // verifier, anchors and CRLs (ticket/recheck.rs); what it finds
            // is not this connection's refusal, so not `revoked`'s. The
            // chain this connection's verifier accepts is the one its
            // ticket records: it is watched.
            let verifier = match &mut tickets {
                Some(t) => {
                    let recheck = ticket::Recheck::new(verifier.clone(), log);
                    let watched = recheck.watching(verifier);
                    t.recheck = Some(recheck);
                    watched
                }
                None => verifier,
            };
            let (verifier, revoked) = crl::naming_revoked(verifier, &crls);
            (Some(verifier), revoked)
        }
    };
    let (fds, notif) = take_fds(opts)?;
    // From here on the engine only relays: no file, no exec, no new socket.
    if env
        .get(sandbox::OPT_OUT)
        .is_none_or(|v| v.is_empty() || v == "0")
    {
        sandbox::confine(&log)?;
    }
    // Nothing reads the environment from here on; its copy need not stay
    // for the connection's life.
    drop(env);
    let settings = Settings {
        close_notify: opts.close_notify,
        enforce_close_notify: opts.enforce_close_notify,
        handshake_timeout: match opts.handshake_timeout_ms {
            0 => None,
            ms => Some(Duration::from_millis(ms.into())),
        },
        log,
    };
    engine::run(
        fds,
        settings,
        |client_hello, hello, veto| {
            // Tickets are for TLS 1.3 only: a TLS 1.2 ticket carries the
            // session's master secret, which a stolen key file would reveal.
            let tickets = tickets.as_ref().filter(|_| hello.offers_tls13);
            configure(keys, &alpn, client_hello, veto, provider, verifier, tickets)
        },
        |conn, server_name| {
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
        faulty
            .explain(revoked.explain(e))
            .in_connection(log.context())
    })
}

/// The ticket keys, the client certificate policy a ticket is bound to,
/// and how a ticket's client certificate is checked again.
struct Tickets {
    seal: Arc<dyn Seal>,
    client_cert_mode: u8,
    anchors: [u8; 32],
    recheck: Option<ticket::Recheck>,
}

/// The configuration for this ClientHello: the key pair its SNI selects and
/// the ALPN protocols of that pair, or the alert that refuses it; a
/// ticketer when `tickets` is given. The ALPN check holds for the hello
/// after a HelloRetryRequest too: rustls asks the configuration's `vet`,
/// which refuses through `veto`.
fn configure(
    keys: KeyStore,
    alpn: &Arc<Alpn>,
    hello: &ClientHello,
    veto: &Veto,
    provider: Arc<CryptoProvider>,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    tickets: Option<&Tickets>,
) -> Result<Arc<ServerConfig>, Refusal> {
    let refuse = |alert, error| Refusal { alert, error };
    let server_name = hello.server_name();
    let protocols = alpn
        .protocols(server_name.and_then(|n| keys.matching_name(n)).as_deref())
        .clone();
    check_alpn(alpn, &protocols, hello)?;
    let vet: tls::Vet = {
        let (alpn, protocols, veto) = (alpn.clone(), protocols.clone(), veto.clone());
        Box::new(move |hello| {
            check_alpn(&alpn, &protocols, hello)
                .map_err(|refusal| veto.refuse(refusal))
                .is_ok()
        })
    };
    let key = match keys.choose(server_name) {
        Some(Ok(key)) => key,
        Some(Err(e)) => return Err(refuse(AlertDescription::InternalError, e)),
        None => {
            let why = match server_name {
                Some(name) => format!("no key pair for the server name {name}"),
                None => "the client sent no server name, and there is no default key pair".into(),
            };
            let e = engine::engine_closed(true, why);
            return Err(refuse(AlertDescription::UnrecognisedName, e));
        }
    };
    let ticketer = tickets.map(|t| {
        let context = ticket::Context {
            server_name,
            client_cert_mode: t.client_cert_mode,
            anchors: t.anchors,
        };
        ticket::ticketer(t.seal.clone(), &context, t.recheck.clone())
    });
    tls::server_config(provider, key, verifier, protocols, ticketer, Some(vet))
        .map_err(|e| refuse(AlertDescription::InternalError, e))
}

/// Whether the hello's ALPN offer may be served with `protocols`.
fn check_alpn(alpn: &Alpn, protocols: &Protocols, hello: &ClientHello) -> Result<(), Refusal> {
    alpn.check(protocols, hello.alpn()).map_err(|why| Refusal {
        alert: AlertDescription::NoApplicationProtocol,
        error: engine::engine_closed(true, why),
    })
}

/// fds 0 and 1, fdr, fdw and the notification fd, all checked before any is
/// taken over: a failure closes nothing, so that the message still reaches
/// stderr even when fd 2 is one of them. When fdr and fdw are one
/// descriptor, fdw gets its own copy, so that each direction can be shut
/// down and closed on its own.
fn take_fds(opts: &Options) -> Result<(Fds, Option<OwnedFd>), Error> {
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
