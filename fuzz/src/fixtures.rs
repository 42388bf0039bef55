//! How fuzz/fixtures/ was made (run it again only to change the recorded
//! clients; every engine corpus then starts over):
//!
//!     cargo test --manifest-path fuzz/Cargo.toml --release -- --ignored regenerate_fixtures
//!
//! For each client kind, a rustls client's ClientHello (`hello-NAME.bin`)
//! and everything it sent after it in a full handshake with the fuzz
//! server, plus some application data and a close_notify
//! (`flight-NAME.bin`). ClientHellos are public bytes; so are the flights
//! (the client certificate included).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, ServerConnection, SupportedProtocolVersion};

use crate::engine::HELLOS;
use crate::identity::{identity, SERVER_NAME};

struct Kind {
    versions: Vec<&'static SupportedProtocolVersion>,
    sni: bool,
    kx: Vec<&'static dyn rustls::crypto::SupportedKxGroup>,
    /// Server's client-certificate mode (0 none, 1 optional, 2 mandatory).
    mode: usize,
}

fn kind(name: &str) -> Kind {
    use aws_lc_rs::kx_group::*;
    use rustls::version::{TLS12, TLS13};
    let defaults = aws_lc_rs::DEFAULT_KX_GROUPS.to_vec();
    match name {
        "tls13" => Kind {
            versions: vec![&TLS13, &TLS12],
            sni: true,
            kx: defaults,
            mode: 1,
        },
        "tls12" => Kind {
            versions: vec![&TLS12],
            sni: true,
            kx: defaults,
            mode: 2,
        },
        "tls13-nosni" => Kind {
            versions: vec![&TLS13],
            sni: false,
            kx: vec![X25519],
            mode: 0,
        },
        // A share only for a group the server does not offer: HelloRetryRequest.
        "tls13-hrr" => Kind {
            versions: vec![&TLS13],
            sni: true,
            kx: vec![MLKEM768, SECP256R1],
            mode: 0,
        },
        other => panic!("unknown client kind {other}"),
    }
}

fn client(k: &Kind) -> ClientConnection {
    let id = identity();
    let provider = CryptoProvider {
        kx_groups: k.kx.clone(),
        ..aws_lc_rs::default_provider()
    };
    let config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&k.versions)
        .expect("versions")
        .with_root_certificates(id.roots())
        .with_client_auth_cert(
            vec![CertificateDer::from(id.client_cert_der.clone())],
            id.client_key(),
        )
        .expect("client auth");
    let name = if k.sni {
        ServerName::try_from(SERVER_NAME).expect("name")
    } else {
        ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into())
    };
    ClientConnection::new(Arc::new(config), name).expect("client")
}

fn out(conn: &mut impl FnMut(&mut Vec<u8>)) -> Vec<u8> {
    let mut v = Vec::new();
    conn(&mut v);
    v
}

/// (ClientHello, the rest of what the client sent).
pub fn record(name: &str) -> (Vec<u8>, Vec<u8>) {
    let k = kind(name);
    let mut c = client(&k);
    let mut s = ServerConnection::new(identity().configs[k.mode].clone()).expect("server");
    let write_c = |c: &mut ClientConnection| {
        out(&mut |v| {
            while c.wants_write() {
                c.write_tls(v).expect("client write");
            }
        })
    };
    let hello = write_c(&mut c);
    let mut rest = Vec::new();
    let mut pending = hello.clone();
    let mut sent_data = false;
    for _ in 0..20 {
        s.read_tls(&mut &pending[..]).expect("server read");
        s.process_new_packets()
            .expect("server accepts the recorded client");
        let mut to_c = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut to_c).expect("server write");
        }
        let mut r = &to_c[..];
        while !r.is_empty() {
            c.read_tls(&mut r).expect("client read");
            c.process_new_packets().expect("client accepts the server");
        }
        if !c.is_handshaking() && !sent_data {
            c.writer().write_all(b"hello, server\n").unwrap();
            c.send_close_notify();
            sent_data = true;
        }
        pending = write_c(&mut c);
        rest.extend_from_slice(&pending);
        if pending.is_empty() && !s.is_handshaking() {
            break;
        }
    }
    assert!(
        !s.is_handshaking(),
        "{name}: the handshake did not complete"
    );
    let mut got = Vec::new();
    let _ = s.reader().read_to_end(&mut got);
    assert_eq!(got, b"hello, server\n", "{name}");
    (hello, rest)
}

#[test]
#[ignore = "rewrites fuzz/fixtures/"]
fn regenerate_fixtures() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");
    std::fs::create_dir_all(dir).unwrap();
    for name in HELLOS {
        let (hello, rest) = record(name);
        std::fs::write(format!("{dir}/hello-{name}.bin"), hello).unwrap();
        std::fs::write(format!("{dir}/flight-{name}.bin"), rest).unwrap();
    }
}

#[test]
fn every_client_kind_completes_a_handshake_with_the_fuzz_server() {
    for name in HELLOS {
        record(name);
    }
}
