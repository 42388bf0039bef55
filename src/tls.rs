//! The rustls side of the configuration (spec section 4): TLS 1.2 and 1.3
//! only, server preference, no resumption (one process per connection, so
//! tickets and caches could never be used), one key pair per connection.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, NoServerSessionStorage, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::error::Error;

/// aws-lc-rs with its defaults: X25519MLKEM768 preferred, then the classics.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The configuration for a connection whose key pair is already chosen.
pub fn server_config(
    provider: Arc<CryptoProvider>,
    key: Arc<CertifiedKey>,
) -> Result<Arc<ServerConfig>, Error> {
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::Setup(format!("unable to set up the TLS engine: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(OneKey(key)));
    config.ignore_client_order = true;
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(NoServerSessionStorage {});
    Ok(Arc::new(config))
}

/// The pair was chosen from the ClientHello before the connection existed.
#[derive(Debug)]
struct OneKey(Arc<CertifiedKey>);

impl ResolvesServerCert for OneKey {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}
