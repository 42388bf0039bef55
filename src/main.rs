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

use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
use s6_tlsd_io::holder::{self, Holder, Stage, Staged};
use s6_tlsd_io::log::Log;
use s6_tlsd_io::notify::Notification;
use s6_tlsd_io::sni::KeyStore;
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
    let fds = take_fds(opts);
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
            configure(
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
    let client = client_auth(opts, env, provider, *log).map_err(later)?;
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

/// Client certificates (`-Y`, `-y`): the verifier, what names a revoked
/// certificate in the handshake's error, and what a ticket is bound to and
/// checked with again.
struct ClientAuth {
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    revoked: Revoked,
    /// ticket::Context's.
    mode: u8,
    anchors: [u8; 32],
    recheck: Option<ticket::Recheck>,
}

fn client_auth(
    opts: &Options,
    env: &Env,
    provider: &Arc<CryptoProvider>,
    log: Log,
) -> Result<ClientAuth, Error> {
    let mode = match opts.client_cert {
        ClientCert::None => {
            return Ok(ClientAuth {
                verifier: None,
                revoked: Revoked::default(),
                mode: 0,
                anchors: [0; 32],
                recheck: None,
            })
        }
        ClientCert::Optional => 1,
        ClientCert::Mandatory => 2,
    };
    let roots = anchors::read_trust_anchors(env)?;
    let anchors = ticket::anchors_digest(
        roots
            .roots
            .iter()
            .map(|a| (&a.subject[..], &a.subject_public_key_info[..])),
    );
    let crls = crl::read_crls(env)?;
    let verifier = tls::client_verifier(provider.clone(), roots, crls.clone(), mode == 2)?;
    // A resumption checks the session's chain with the same verifier,
    // anchors and CRLs (ticket/recheck.rs); what it finds is not this
    // connection's refusal, so not `revoked`'s. The chain this connection's
    // verifier accepts is the one its ticket records: it is watched
    // (whether tickets are on, the holder says later).
    let recheck = ticket::Recheck::new(verifier.clone(), log);
    let verifier = recheck.watching(verifier);
    let (verifier, revoked) = crl::naming_revoked(verifier, &crls);
    Ok(ClientAuth {
        verifier: Some(verifier),
        revoked,
        mode,
        anchors,
        recheck: Some(recheck),
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

/// The pairs' chains by name, and the holder that keeps their keys.
struct Pairs<'a> {
    keys: KeyStore,
    holder: &'a Holder,
}

/// The configuration for this ClientHello: the key pair its SNI selects and
/// the ALPN protocols of that pair, or the alert that refuses it; a
/// ticketer when `tickets` is given. The ALPN check holds for the hello
/// after a HelloRetryRequest too: rustls asks the configuration's `vet`,
/// which refuses through `veto`.
fn configure(
    Pairs { keys, holder }: Pairs,
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
        Some(chosen) => holder.key(chosen),
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
