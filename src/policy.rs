//! What a connection serves a ClientHello with (spec section 4): the key
//! pair its SNI selects, whose key stays in the key holder, the ALPN
//! protocols of that pair, the client certificate policy and the ticketer
//! bound to it; or the alert that refuses the hello. main.rs builds the
//! parts at start-up; the engine calls `configure` once it has read the
//! hello.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::ClientHello;
use rustls::{AlertDescription, ServerConfig};

use crate::alpn::{Alpn, Protocols};
use crate::cli::{ClientCert, Options};
use crate::crl::{self, Revoked};
use crate::engine::{self, Refusal, Veto};
use crate::env::Env;
use crate::error::Error;
use crate::holder::Holder;
use crate::log::Log;
use crate::sni::KeyStore;
use crate::ticket::{self, Seal};
use crate::{anchors, tls};

/// Client certificates (`-Y`, `-y`): the verifier, what names a revoked
/// certificate in the handshake's error, and what a ticket is bound to and
/// checked with again.
pub struct ClientAuth {
    pub verifier: Option<Arc<dyn ClientCertVerifier>>,
    pub revoked: Revoked,
    /// ticket::Context's.
    pub mode: u8,
    pub anchors: [u8; 32],
    pub recheck: Option<ticket::Recheck>,
}

/// What `-Y` and `-y` ask for: the trust anchors and CRLs read (as the
/// connection's ids: main calls it after the drop), the verifier built.
pub fn client_auth(
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
pub struct Tickets {
    pub seal: Arc<dyn Seal>,
    pub client_cert_mode: u8,
    pub anchors: [u8; 32],
    pub recheck: Option<ticket::Recheck>,
}

/// The pairs' chains by name, and the holder that keeps their keys.
pub struct Pairs<'a> {
    pub keys: KeyStore,
    pub holder: &'a Holder,
}

/// The configuration for this ClientHello: the key pair its SNI selects and
/// the ALPN protocols of that pair, or the alert that refuses it; a
/// ticketer when `tickets` is given. The ALPN check holds for the hello
/// after a HelloRetryRequest too: rustls asks the configuration's `vet`,
/// which refuses through `veto`.
pub fn configure(
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
