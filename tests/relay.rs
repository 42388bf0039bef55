//! Spec section 6: the relay after the handshake, each end of the tunnel.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;

#[test]
fn echo_over_tls13_and_tls12() {
    for config in [tls13(), tls12()] {
        let mut e = spawn().start();
        let mut tls = connect(&e, config, "localhost");
        tls.write_all(b"hello engine").unwrap();
        assert_eq!(read_app(&mut e, 12), b"hello engine");
        e.app_tx().write_all(b"hello client").unwrap();
        let mut buf = [0u8; 12];
        tls.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello client");
        let block = as_map(&e.notification());
        assert!(block["SSL_PROTOCOL"].is_some());
        tls.conn.send_close_notify();
        tls.conn.complete_io(&mut tls.sock).unwrap();
        e.close_app_tx();
        let exit = e.wait_exit();
        assert_eq!(exit.code, Some(0), "{}", exit.stderr);
    }
}
