//! Per-connection cost with the post-quantum hybrid key exchange, which the
//! Python client of bench/driver.py (Debian's OpenSSL 3.0) cannot offer:
//! a rustls client (X25519MLKEM768 first, as rustls sends it) against one
//! engine process per connection, handshake plus a 100-byte echo each way.
//! Prints the median and p90 of the engine's own CPU (user+sys, wait4) and
//! its peak RSS. Run by bench/run:
//!
//!     cargo run --release --example pq_conn -- ENGINE [CONNECTIONS]

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

fn main() {
    let mut args = std::env::args().skip(1);
    let engine = args.next().expect("usage: pq_conn ENGINE [CONNECTIONS]");
    let n: usize = args.next().map_or(200, |s| s.parse().expect("a number"));

    let dir = std::env::temp_dir().join(format!("s6-tlsd-io-pq-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmpdir");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    std::fs::write(dir.join("cert.pem"), cert.pem()).expect("write");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write");
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(cert.der().to_vec()))
        .expect("root");
    let config = Arc::new(
        ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );

    let mut cpu = Vec::with_capacity(n);
    let mut rss = Vec::with_capacity(n);
    let mut group = String::new();
    for _ in 0..n {
        let (client, server) = UnixStream::pair().expect("socketpair");
        let (mut app_rx, fdw) = std::io::pipe().expect("pipe");
        let (fdr, mut app_tx) = std::io::pipe().expect("pipe");
        let (fdr, fdw) = (OwnedFd::from(fdr), OwnedFd::from(fdw));
        let (r, w) = (fdr.as_raw_fd(), fdw.as_raw_fd());
        let mut cmd = Command::new(&engine);
        cmd.args(["--", "3", "4"])
            .env_clear()
            .env("CERTFILE", dir.join("cert.pem"))
            .env("KEYFILE", dir.join("key.pem"))
            .stdin(Stdio::from(OwnedFd::from(server.try_clone().expect("dup"))))
            .stdout(Stdio::from(OwnedFd::from(server)));
        // SAFETY: only dup2 between fork and exec; 3 and 4 are free in the
        // child once stdio is set (r and w are above them or equal).
        unsafe {
            cmd.pre_exec(move || {
                let (hr, hw) = (libc::dup(r), libc::dup(w));
                if hr < 0 || hw < 0 || libc::dup2(hr, 3) < 0 || libc::dup2(hw, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        // Reaped below by wait4(2), which also gives its rusage.
        #[allow(clippy::zombie_processes)]
        let child = cmd.spawn().expect("spawn engine");
        drop(cmd);
        drop((fdr, fdw));

        let conn = ClientConnection::new(
            config.clone(),
            ServerName::try_from("localhost").expect("name"),
        )
        .expect("client");
        let mut tls = StreamOwned::new(conn, client);
        tls.write_all(&[7; 100]).expect("client write");
        let mut buf = [0u8; 100];
        app_rx.read_exact(&mut buf).expect("app read");
        app_tx.write_all(&buf).expect("app write");
        tls.read_exact(&mut buf).expect("client read");
        group = format!(
            "{:?}",
            tls.conn.negotiated_key_exchange_group().map(|g| g.name())
        );
        tls.conn.send_close_notify();
        let _ = tls.flush();
        drop(app_tx);
        drop(tls);
        drop(app_rx);

        let mut status = 0;
        // SAFETY: an all-zero rusage is valid; wait4 fills it.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: waits for our own child, with valid out-pointers.
        let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
        assert_eq!(pid, child.id() as i32, "wait4");
        let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
        cpu.push(ms(usage.ru_utime) + ms(usage.ru_stime));
        rss.push(usage.ru_maxrss);
    }
    let _ = std::fs::remove_dir_all(&dir);
    cpu.sort_by(f64::total_cmp);
    rss.sort();
    println!(
        "post-quantum ({group}), ecdsa-p256, rustls client, n={n}: CPU median {:.2} ms, p90 {:.2} ms; peak RSS median {} KiB",
        cpu[n / 2],
        cpu[n * 9 / 10],
        rss[n / 2]
    );
}
