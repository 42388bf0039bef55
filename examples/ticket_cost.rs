//! What the ticket keys cost inside one engine, timed in-process over many
//! rounds (the process-level figures of bench/resume.py are too coarse to
//! resolve microseconds): reading TLS_TICKET_KEYFILE (open, fstat, read,
//! close, checks), deriving the keys a connection uses, sealing one ticket,
//! opening one.
//!
//!     cargo run --release --example ticket_cost [ROUNDS]

use std::hint::black_box;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Instant;

use s6_tlsd_io::env::Env;
use s6_tlsd_io::ticket::keys::{TicketKeys, VAR};
use s6_tlsd_io::ticket::{ticketer, Context, Seal};

fn main() {
    let rounds: u32 = std::env::args()
        .nth(1)
        .map_or(20_000, |s| s.parse().expect("a number"));
    let dir = std::env::temp_dir().join(format!("s6-tlsd-io-ticket-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmpdir");
    let path = dir.join("tickets");
    let mut raw = [0u8; 64];
    aws_lc_rs::rand::fill(&mut raw).expect("random");
    std::fs::write(&path, raw).expect("write the key file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    // SAFETY: single-threaded; nothing else reads the environment meanwhile.
    unsafe { std::env::set_var(VAR, &path) };
    let env = Env::from_process();

    let per = |start: Instant| start.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
    let start = Instant::now();
    for _ in 0..rounds {
        black_box(TicketKeys::load(black_box(&env)).expect("load"));
    }
    let load = per(start);

    let load_keys =
        || -> Arc<dyn Seal> { Arc::new(TicketKeys::load(&env).expect("load").expect("set")) };
    let ctx = Context {
        server_name: Some("www.example.com"),
        client_cert_mode: 0,
        anchors: [0; 32],
    };
    // The shape of rustls' TLS 1.3 session state: SNI, version, cipher
    // suite, a 48-byte secret, no EMS, no client certificate, then the rest
    // (about 120 bytes in all).
    let mut state = b"\x01\x0fwww.example.com\x03\x04\x13\x02\x30".to_vec();
    state.extend_from_slice(&[7; 48]);
    state.extend_from_slice(&[0, 0]);
    state.resize(120, 0);
    let keys = load_keys();
    let ticket = ticketer(keys.clone(), &ctx, None)
        .encrypt(&state)
        .expect("sealed");
    // The keys are derived when first used: each round reads them afresh,
    // as each engine does, then makes its connection's ticketer.
    let start = Instant::now();
    for _ in 0..rounds {
        let t = ticketer(load_keys(), black_box(&ctx), None);
        black_box(t.encrypt(black_box(&state)));
    }
    let full = per(start) - load;
    let start = Instant::now();
    for _ in 0..rounds {
        let t = ticketer(load_keys(), black_box(&ctx), None);
        black_box(t.decrypt(black_box(&ticket)));
        black_box(t.encrypt(black_box(&state)));
    }
    let resumed = per(start) - load;
    let start = Instant::now();
    for _ in 0..rounds {
        black_box(ticketer(keys.clone(), &ctx, None).encrypt(black_box(&state)));
    }
    let seal = per(start);
    let start = Instant::now();
    for _ in 0..rounds {
        // A ticketer per round: one connection opens MAX_OPENS at most.
        black_box(ticketer(keys.clone(), &ctx, None).decrypt(black_box(&ticket)));
    }
    let open = per(start);
    std::fs::remove_dir_all(&dir).expect("clean up");

    println!("ticket key file of 2 keys, {rounds} rounds each (microseconds per call):");
    println!("  read the file (TicketKeys::load)                      {load:7.2}");
    println!("  full handshake: new ticketer, derive key 1, seal      {full:7.2}");
    println!("  resumption: new ticketer, derive, open, seal the next {resumed:7.2}");
    println!(
        "  seal, keys derived ({} bytes of state)               {seal:7.2}",
        state.len()
    );
    println!("  open, keys derived                                    {open:7.2}");
    println!(
        "  added to a full TLS 1.3 handshake: {:.2} us (read + ticketer + seal)",
        load + full
    );
}
