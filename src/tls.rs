//! The rustls side of the configuration (spec section 4): TLS 1.2 and 1.3
//! only, server preference, one key pair per connection. No session cache
//! (one process per connection: it would die with the connection); TLS 1.3
//! tickets only when `TLS_TICKET_KEYFILE` gives keys that every engine
//! shares (ticket/mod.rs), and never 0-RTT.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{
    ClientHello, NoServerSessionStorage, ProducesTickets, ResolvesServerCert, WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};

use crate::error::Error;

/// How many TLS 1.3 tickets a connection sends, with `TLS_TICKET_KEYFILE`:
/// one, since each resumption brings the next. The key holder seals no
/// more (holder/serve.rs).
pub const TICKETS_SENT: usize = 1;

/// The schemes of an RSA key, in the provider's order of preference
/// (rustls' aws_lc_rs `ALL_RSA_SCHEMES`), so that a client is offered
/// exactly what it was offered before: rsa.rs's keys sign with them, and
/// the engine offers them for an RSA certificate (holder/ask.rs).
pub const RSA_SCHEMES: [SignatureScheme; 6] = [
    SignatureScheme::RSA_PSS_SHA512,
    SignatureScheme::RSA_PSS_SHA384,
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PKCS1_SHA512,
    SignatureScheme::RSA_PKCS1_SHA384,
    SignatureScheme::RSA_PKCS1_SHA256,
];

/// aws-lc-rs with its defaults: X25519MLKEM768 preferred, then the classics.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Client certificates checked against `roots`: `-Y` lets a client without
/// one in, `-y` does not. A certificate that is sent is always verified.
/// With CRLs (crl.rs has the policy): the whole chain is checked where an
/// issuer has a CRL, an expired CRL refuses, an issuer without one does not.
pub fn client_verifier(
    provider: Arc<CryptoProvider>,
    roots: RootCertStore,
    crls: Vec<CertificateRevocationListDer<'static>>,
    mandatory: bool,
) -> Result<Arc<dyn ClientCertVerifier>, Error> {
    let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    if !crls.is_empty() {
        builder = builder
            .with_crls(crls)
            .allow_unknown_revocation_status()
            .enforce_revocation_expiration();
    }
    let builder = if mandatory {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    builder.build().map_err(|e| {
        Error::Setup(format!(
            "unable to set up client certificate verification: {e}"
        ))
    })
}

/// Told of each client chain a verifier judged: the end entity, the
/// intermediates, and the verdict.
pub type Observer = Box<
    dyn Fn(&CertificateDer<'_>, &[CertificateDer<'_>], &Result<ClientCertVerified, rustls::Error>)
        + Send
        + Sync,
>;

/// `inner`, which tells `observer` of every client chain it verifies, and
/// is `inner` in all else: crl.rs names a revoked serial with it, the
/// tickets keep the chain a connection accepted (ticket/recheck.rs).
pub fn observed(
    inner: Arc<dyn ClientCertVerifier>,
    observer: Observer,
) -> Arc<dyn ClientCertVerifier> {
    Arc::new(Observed { inner, observer })
}

struct Observed {
    inner: Arc<dyn ClientCertVerifier>,
    observer: Observer,
}

impl std::fmt::Debug for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observed")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl ClientCertVerifier for Observed {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let result = self
            .inner
            .verify_client_cert(end_entity, intermediates, now);
        (self.observer)(end_entity, intermediates, &result);
        result
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }
}

/// The configuration for a connection whose key pair is already chosen.
/// `alpn`: the protocols to negotiate, the server's first choice first
/// (rustls picks the first of ours that the client offers); empty: none.
/// `ticketer` only for a client that offers TLS 1.3 (see ticket/mod.rs).
/// `vet`, when given, is asked of every ClientHello rustls handles.
pub fn server_config(
    provider: Arc<CryptoProvider>,
    key: Arc<CertifiedKey>,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    alpn: Vec<Vec<u8>>,
    ticketer: Option<Arc<dyn ProducesTickets>>,
    vet: Option<Vet>,
) -> Result<Arc<ServerConfig>, Error> {
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::Setup(format!("unable to set up the TLS engine: {e}")))?;
    let builder = match verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(OneKey { key, vet }));
    config.ignore_client_order = true;
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.alpn_protocols = alpn;
    // 0-RTT data could be replayed to another engine: nothing shared could
    // tell. rustls allows none with stateless tickets anyway.
    config.max_early_data_size = 0;
    if let Some(ticketer) = ticketer {
        config.ticketer = ticketer;
        config.send_tls13_tickets = TICKETS_SENT;
    }
    Ok(Arc::new(config))
}

/// Whether a ClientHello may be answered; false refuses it (rustls then
/// fails the handshake, and the caller, who kept why, tells it). rustls
/// asks it of the first ClientHello and of the second, after a
/// HelloRetryRequest, which the engine's own checks never see: the only
/// hook rustls runs on every hello is the certificate resolver.
pub type Vet = Box<dyn Fn(&ClientHello<'_>) -> bool + Send + Sync>;

/// The pair was chosen from the ClientHello before the connection existed.
struct OneKey {
    key: Arc<CertifiedKey>,
    vet: Option<Vet>,
}

impl ResolvesServerCert for OneKey {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        match &self.vet {
            Some(vet) if !vet(&hello) => None,
            _ => Some(self.key.clone()),
        }
    }
}

impl std::fmt::Debug for OneKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneKey")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}
