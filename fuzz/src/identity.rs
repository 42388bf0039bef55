//! A fixed test identity: a CA, a server certificate for `localhost` and
//! 127.0.0.1, and a client certificate, all Ed25519 keys derived from
//! constant seeds, all signed deterministically (Ed25519 signatures are).
//! The same bytes in every process: a corpus entry that carries the client
//! certificate still chains to the CA the next day.

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{RootCertStore, ServerConfig};

use s6_tlsd_io::keys::KeyPair;
use s6_tlsd_io::tls;

/// Constants, not secrets: they protect nothing.
const CA_SEED: [u8; 32] = [0xca; 32];
const SERVER_SEED: [u8; 32] = [0x5e; 32];
const CLIENT_SEED: [u8; 32] = [0xc1; 32];
/// The client certificate's serial number (the crl target revokes it).
pub const CLIENT_SERIAL: u8 = 3;

pub const SERVER_NAME: &str = "localhost";

pub struct Identity {
    pub provider: Arc<CryptoProvider>,
    pub ca_der: Vec<u8>,
    pub server_cert_der: Vec<u8>,
    pub server_key_pkcs8: Vec<u8>,
    pub client_cert_der: Vec<u8>,
    pub client_key_pkcs8: Vec<u8>,
    /// By client-certificate mode: none, `-Y` (optional), `-y` (mandatory).
    pub configs: [Arc<ServerConfig>; 3],
}

/// PKCS#8 v1 for an Ed25519 seed (RFC 8410).
pub fn ed25519_pkcs8(seed: &[u8; 32]) -> Vec<u8> {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(seed);
    der
}

pub fn rcgen_key(pkcs8: &[u8]) -> rcgen::KeyPair {
    rcgen::KeyPair::try_from(pkcs8).expect("rcgen reads an Ed25519 PKCS#8 key")
}

fn params(names: &[&str], cn: &str, serial: u8) -> rcgen::CertificateParams {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut p = rcgen::CertificateParams::new(names).expect("certificate parameters");
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.serial_number = Some(rcgen::SerialNumber::from_slice(&[serial]));
    p
}

/// The CA and its key, the same in every call (for CRLs it signs).
pub fn ca() -> (rcgen::Certificate, rcgen::KeyPair) {
    let ca_key = rcgen_key(&ed25519_pkcs8(&CA_SEED));
    let mut ca_params = params(&[], "s6-tlsd-io fuzz CA", 1);
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    (ca, ca_key)
}

pub fn identity() -> &'static Identity {
    static IDENTITY: OnceLock<Identity> = OnceLock::new();
    IDENTITY.get_or_init(build)
}

fn build() -> Identity {
    let provider = tls::provider();

    let (ca, ca_key) = ca();

    let server_key_pkcs8 = ed25519_pkcs8(&SERVER_SEED);
    let server = params(&[SERVER_NAME, "127.0.0.1"], "s6-tlsd-io fuzz server", 2)
        .signed_by(&rcgen_key(&server_key_pkcs8), &ca, &ca_key)
        .expect("server certificate");

    let client_key_pkcs8 = ed25519_pkcs8(&CLIENT_SEED);
    let mut client_params = params(&[], "fuzz client", CLIENT_SERIAL);
    client_params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Example, Inc.");
    client_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params
        .signed_by(&rcgen_key(&client_key_pkcs8), &ca, &ca_key)
        .expect("client certificate");

    // The server pair goes through the project's own loading path.
    let dir = crate::scratch_dir("identity");
    let (cert_path, key_path) = (dir.join("server-cert.pem"), dir.join("server-key.pem"));
    std::fs::write(&cert_path, format!("{}{}", server.pem(), ca.pem())).expect("write cert");
    std::fs::write(&key_path, rcgen_key(&server_key_pkcs8).serialize_pem()).expect("write key");
    let certified = KeyPair::read(
        "CERTFILE".into(),
        cert_path.as_os_str(),
        "KEYFILE".into(),
        key_path.as_os_str(),
    )
    .and_then(KeyPair::load)
    .map(|loaded| loaded.pair)
    .unwrap_or_else(|e| panic!("the fuzz server key pair does not load: {e}"));
    let _ = std::fs::remove_file(&cert_path);
    let _ = std::fs::remove_file(&key_path);
    let _ = std::fs::remove_dir(&dir);

    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.der().to_vec()))
        .expect("CA is a trust anchor");
    let config = |mode: u8| {
        let verifier = match mode {
            0 => None,
            m => Some(
                tls::client_verifier(provider.clone(), roots.clone(), Vec::new(), m == 2)
                    .unwrap_or_else(|e| panic!("client verifier: {e}")),
            ),
        };
        tls::server_config(
            provider.clone(),
            certified.clone(),
            verifier,
            Vec::new(),
            None,
            None,
        )
        .unwrap_or_else(|e| panic!("server config: {e}"))
    };

    Identity {
        configs: [config(0), config(1), config(2)],
        provider,
        ca_der: ca.der().to_vec(),
        server_cert_der: server.der().to_vec(),
        server_key_pkcs8,
        client_cert_der: client.der().to_vec(),
        client_key_pkcs8,
    }
}

impl Identity {
    pub fn client_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.client_key_pkcs8.clone()))
    }

    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.ca_der.clone()))
            .expect("CA is a trust anchor");
        roots
    }
}
