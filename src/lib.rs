//! The pieces of s6-tlsd-io, one concern each. src/main.rs tells the story;
//! this library exists so that the fuzz targets can reach each piece.

pub mod alloc;
pub mod alpn;
pub mod anchors;
pub mod asn1;
pub mod check;
pub mod cli;
pub mod crl;
pub mod engine;
pub mod env;
pub mod error;
pub mod holder;
pub mod keys;
pub mod log;
pub mod nid;
pub mod notify;
pub mod peer;
pub mod privilege;
pub mod rsa;
pub mod sandbox;
mod secret;
pub mod sni;
pub mod source;
pub mod subject;
pub mod ticket;
pub mod tls;
mod wire;
