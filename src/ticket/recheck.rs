//! The client certificate chain of a session, checked again when its
//! ticket comes back (issue 19): rustls does not call the verifier on a
//! resumption, so the engine does, with the verifier of a full handshake.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;

use crate::log::Log;

/// How the client certificate chain of a session is checked again when its
/// ticket comes back: the verifier of a full handshake, and where to say
/// why a chain no longer passes (`-v 2`).
#[derive(Clone)]
pub struct Recheck {
    verifier: Arc<dyn ClientCertVerifier>,
    log: Log,
}

impl Recheck {
    /// `verifier`: a full handshake's, with the same trust anchors and
    /// CRLs (not one that reports its refusals as this connection's).
    pub fn new(verifier: Arc<dyn ClientCertVerifier>, log: Log) -> Recheck {
        Recheck { verifier, log }
    }

    /// Whether a full handshake would accept `chain` (end entity first) now.
    pub(super) fn accepts(&self, chain: &[CertificateDer<'_>]) -> bool {
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
