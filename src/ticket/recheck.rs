//! The client certificate chain of a session: kept from what the
//! connection's own verification accepted, and checked again when its
//! ticket comes back (issue 19): rustls does not call the verifier on a
//! resumption, so the engine does, with the verifier of a full handshake.
//!
//! The chain a ticket records is never read out of rustls' session
//! encoding (issue 26): the connection's verifier, wrapped by `watching`,
//! keeps the chain it accepted, and a resumed session's chain is the one
//! its ticket recorded and the recheck passed.
//!
//! At most one verification per connection: rustls opens every PSK
//! identity of a hello until one resumes, before it checks any binder, so
//! one captured ticket offered a hundred times would otherwise cost a
//! hundred verifications. The first chain checked keeps its verdict for the
//! connection; a ticket with another chain opens nothing.

use std::sync::{Arc, Mutex};

use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;

use crate::log::Log;

/// A client chain, end entity first.
pub(super) type Chain = Vec<CertificateDer<'static>>;

/// How the client certificate chain of a session is checked again when its
/// ticket comes back, and what this connection's own verification
/// accepted. One per connection: clones share what they saw.
#[derive(Clone)]
pub struct Recheck {
    verifier: Arc<dyn ClientCertVerifier>,
    log: Log,
    seen: Arc<Seen>,
}

#[derive(Default)]
struct Seen {
    /// The chain the connection's verifier accepted (a full handshake).
    accepted: Mutex<Option<Chain>>,
    /// The one chain checked again, and the verdict.
    checked: Mutex<Option<(Chain, bool)>>,
}

impl Recheck {
    /// `verifier`: a full handshake's, with the same trust anchors and
    /// CRLs (not one that reports its refusals as this connection's).
    pub fn new(verifier: Arc<dyn ClientCertVerifier>, log: Log) -> Recheck {
        Recheck {
            verifier,
            log,
            seen: Arc::default(),
        }
    }

    /// The connection's own verifier, `verifier`, wrapped: the chain it
    /// accepts is the one the connection's ticket records.
    pub fn watching(&self, verifier: Arc<dyn ClientCertVerifier>) -> Arc<dyn ClientCertVerifier> {
        let seen = self.seen.clone();
        crate::tls::observed(
            verifier,
            Box::new(move |end_entity, intermediates, result| {
                if result.is_ok() {
                    let chain = std::iter::once(end_entity)
                        .chain(intermediates)
                        .map(|c| c.clone().into_owned())
                        .collect();
                    if let Ok(mut accepted) = seen.accepted.lock() {
                        *accepted = Some(chain);
                    }
                }
            }),
        )
    }

    /// The chain this connection's verifier accepted, if it did (a full
    /// handshake with a client certificate).
    pub(super) fn accepted(&self) -> Option<Chain> {
        self.seen.accepted.lock().ok()?.clone()
    }

    /// Whether a full handshake would accept `chain` (end entity first)
    /// now. Verified once: the same chain again gets the same verdict,
    /// another chain is refused unverified.
    pub(super) fn accepts(&self, chain: &[CertificateDer<'_>]) -> bool {
        let Ok(mut checked) = self.seen.checked.lock() else {
            return false;
        };
        if let Some((seen, verdict)) = &*checked {
            return *verdict && seen.as_slice() == chain;
        }
        let verdict = self.verify(chain);
        let chain = chain.iter().map(|c| c.clone().into_owned()).collect();
        *checked = Some((chain, verdict));
        verdict
    }

    fn verify(&self, chain: &[CertificateDer<'_>]) -> bool {
        let Some((end_entity, intermediates)) = chain.split_first() else {
            return false;
        };
        match self
            .verifier
            .verify_client_cert(end_entity, intermediates, UnixTime::now())
        {
            Ok(_) => true,
            Err(e) => {
                self.log.info(format_args!(
                    "ticket refused, full handshake: its client certificate no longer verifies: {e}"
                ));
                false
            }
        }
    }
}
