//! Issue 25: no private key in the process that talks to the network.
//!
//! The engine forks a key holder at start-up, a child that alone reads the
//! private keys and the ticket keys, signs and seals for the engine during
//! the handshake, then exits and is reaped. These tests read the memory of
//! both processes through /proc/PID/mem and look for every form of every
//! secret: the engine must hold none, mid-handshake or relaying; the holder,
//! which must hold them, shows that the scan sees what it looks for. Then
//! the holder's state (confined, its ids, not dumpable, gone once the relay
//! runs) and what happens when either process is killed mid-handshake.
//!
//! Everything here reads other processes' memory or changes ids: root only
//! (as here and in CI); elsewhere each test says so and returns.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use common::*;
use s6_tlsd_io::asn1::elements;

/// A uid and a gid that no account uses (`assert_unused_ids` checks), for TLS_UID
/// and TLS_GID and for an engine started as someone else than root: what
/// /proc shows of them can only come from the engine's doing.
const UID: u32 = 64011;
const GID: u32 = 64012;

/// How long a process may take to appear, answer or go, before a test
/// gives up: bounded waits only, never a timing assertion.
const BOUND: Duration = Duration::from_secs(20);

fn is_root() -> bool {
    running_as_root("/proc/PID/mem and the ids are out of reach; not tested")
}

// ------------------------------------------------------------- processes

/// What /proc/PID/stat says of a process.
#[derive(Clone, Copy, Debug)]
struct Stat {
    state: char,
    ppid: u32,
    /// Start time in clock ticks after boot: with the pid, the process's
    /// identity (a pid may be handed to another process once it is gone).
    start: u64,
}

fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command's closing parenthesis: state, ppid, ..., field 22
    // (starttime) being the 20th.
    let fields: Vec<&str> = text[text.rfind(')')? + 2..].split(' ').collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// A process, told apart from any later one given the same pid.
#[derive(Clone, Copy, Debug)]
struct Proc {
    pid: u32,
    start: u64,
}

impl Proc {
    /// Whether it still runs: there, the same process, not a zombie.
    fn running(&self) -> bool {
        stat(self.pid).is_some_and(|s| s.start == self.start && !matches!(s.state, 'Z' | 'X'))
    }

    /// Waits until it no longer runs, at most `BOUND`.
    fn gone(&self) -> bool {
        let start = Instant::now();
        while self.running() {
            if start.elapsed() > BOUND {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }
}

/// Every process whose parent is `pid`, zombies included. /proc is
/// scanned for the parent: /proc/PID/task/TID/children needs a kernel
/// built with CONFIG_PROC_CHILDREN, which this one is not.
fn children(pid: u32) -> Vec<(u32, Stat)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|d| d.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|child| Some((child, stat(child)?)))
        .filter(|(_, s)| s.ppid == pid)
        .collect()
}

/// The children of `pid` as a failure message names them.
fn describe(children: &[(u32, Stat)]) -> String {
    let each: Vec<String> = children
        .iter()
        .map(|(pid, s)| format!("pid {pid} (state {})", s.state))
        .collect();
    each.join(", ")
}

/// A key holder the test found. Whatever the test does, no holder is
/// left behind: one that still runs when the test is done with it (a
/// failure) is killed.
struct Holder(Proc);

impl std::ops::Deref for Holder {
    type Target = Proc;
    fn deref(&self) -> &Proc {
        &self.0
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        if self.running() {
            // SAFETY: a signal to the process this guard names, which
            // `running` has just seen alive.
            unsafe { libc::kill(self.pid as i32, libc::SIGKILL) };
        }
    }
}

/// The engine's key holder: its one live child. Called once the engine's
/// start-up is over (it waits for the ClientHello, or later), when the
/// holder has been forked if it ever is.
fn holder(e: &Engine) -> Holder {
    let engine = e.pid();
    let kids = children(engine);
    let live: Vec<_> = kids.iter().filter(|(_, s)| s.state != 'Z').collect();
    match live[..] {
        [&(pid, s)] => Holder(Proc {
            pid,
            start: s.start,
        }),
        [] => panic!(
            "engine pid {engine} has no key holder: no live child (children: [{}])",
            describe(&kids)
        ),
        _ => panic!(
            "engine pid {engine} has {} live children, not one key holder: {}",
            live.len(),
            describe(&kids)
        ),
    }
}

/// Fails unless the engine has no child at all, not even a zombie.
fn assert_childless(e: &Engine, when: &str) {
    let kids = children(e.pid());
    assert!(
        kids.is_empty(),
        "{when}: engine pid {} still has children: {} (the key holder must have \
         exited and been reaped)",
        e.pid(),
        describe(&kids)
    );
}

/// A field of /proc/PID/status, which must be there.
fn status(pid: u32, field: &str) -> String {
    pid_status(pid, field).unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// Waits until the engine's start-up is over and it waits for the
/// ClientHello: it has confined itself (`Seccomp: 2`) and made fd 0
/// non-blocking (its relay's first step, /proc/PID/fdinfo/0's flags). The
/// engine confines itself while its key holder still reads the key files,
/// and takes the holder's chains after: confined alone is not over.
fn wait_confined(e: &Engine) {
    let start = Instant::now();
    let nonblocking = || {
        let info = std::fs::read_to_string(format!("/proc/{}/fdinfo/0", e.pid()));
        info.ok()
            .and_then(|i| {
                let flags = i.lines().find_map(|l| l.strip_prefix("flags:"))?;
                u32::from_str_radix(flags.trim(), 8).ok()
            })
            .is_some_and(|flags| flags & libc::O_NONBLOCK as u32 != 0)
    };
    while status(e.pid(), "Seccomp") != "2" || !nonblocking() {
        assert!(
            start.elapsed() <= BOUND,
            "engine pid {} not confined and waiting for the ClientHello after {BOUND:?}",
            e.pid()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `signal` to `p`, which must still run.
fn signal(p: &Proc, signal: libc::c_int) {
    assert!(p.running(), "pid {} is gone already", p.pid);
    // SAFETY: a signal to a process this test's engine started, which
    // `running` has just seen alive.
    let r = unsafe { libc::kill(p.pid as i32, signal) };
    assert_eq!(r, 0, "kill pid {} with signal {signal}", p.pid);
}

/// The holder of an engine whose start-up is over, once the holder is
/// ready too: confined (`Seccomp: 2`), which it is only once it has read
/// the keys and serves. (A holder that never confines itself fails
/// the_key_holder_is_confined_...; here it is taken as it is after the
/// bound.)
fn ready_holder(e: &Engine) -> Holder {
    wait_confined(e);
    let h = holder(e);
    let start = Instant::now();
    while status(h.pid, "Seccomp") != "2" && start.elapsed() <= BOUND {
        std::thread::sleep(Duration::from_millis(10));
    }
    h
}

/// An engine started with `args`, its holder once ready, sent `sig`, then
/// a client that has sent its ClientHello.
fn holder_signalled(args: &[&str], sig: libc::c_int) -> (Engine, Holder, ClientConnection) {
    let e = spawn().args(args).start();
    let h = ready_holder(&e);
    signal(&h, sig);
    let client = send_client_hello(&e);
    (e, h, client)
}

// --------------------------------------------------------------- secrets

/// PKCS#8's privateKey OCTET STRING contents.
fn pkcs8_private_key(der: &[u8]) -> &[u8] {
    let fields = elements(elements(der).unwrap()[0].1).unwrap();
    assert_eq!(fields[2].0, 0x04, "PKCS#8 privateKey is an OCTET STRING");
    fields[2].1
}

/// A DER INTEGER's magnitude, big-endian, without leading zeros.
fn magnitude(int: &[u8]) -> Vec<u8> {
    let skip = int.iter().take_while(|&&b| b == 0).count();
    int[skip..].to_vec()
}

/// How a secret can lie in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Form {
    /// As it is written: big-endian for a number, the bytes of a key.
    AsWritten,
    /// A number as aws-lc's bignums hold it on x86_64: 64-bit limbs, least
    /// significant first, each little-endian: the bytes reversed.
    LittleEndianLimbs,
}

impl Form {
    fn name(self) -> &'static str {
        match self {
            Form::AsWritten => "big-endian",
            Form::LittleEndianLimbs => "little-endian limbs",
        }
    }
}

/// A secret the test looks for, and its forms.
struct Secret {
    /// What it is, e.g. "b.test RSA p".
    name: String,
    bytes: Vec<u8>,
    forms: &'static [Form],
}

const NUMBER: &[Form] = &[Form::AsWritten, Form::LittleEndianLimbs];
const BYTES: &[Form] = &[Form::AsWritten];

impl Secret {
    fn number(name: String, big_endian: Vec<u8>) -> Secret {
        Secret {
            name,
            bytes: big_endian,
            forms: NUMBER,
        }
    }

    fn form(&self, form: Form) -> Vec<u8> {
        match form {
            Form::AsWritten => self.bytes.clone(),
            Form::LittleEndianLimbs => self.bytes.iter().rev().copied().collect(),
        }
    }
}

/// The private numbers of a pair's key (its PKCS#8 DER), as `label` names
/// the pair: RSA's d, p, q and the CRT numbers (any one gives the key
/// away); the EC private scalar; the Ed25519 seed (bytes, not a number:
/// aws-lc keeps it as it is).
fn private_numbers(label: &str, alg: Alg, key_der: &[u8]) -> Vec<Secret> {
    let private = pkcs8_private_key(key_der);
    match alg {
        Alg::Rsa2048 | Alg::Rsa4096 => {
            let ints = elements(elements(private).unwrap()[0].1).unwrap();
            assert_eq!(ints.len(), 9, "a two-prime RSAPrivateKey");
            ["d", "p", "q", "dp", "dq", "qinv"]
                .iter()
                .zip(&ints[3..])
                .map(|(n, (_, v))| Secret::number(format!("{label} RSA {n}"), magnitude(v)))
                .collect()
        }
        Alg::EcdsaP256 | Alg::EcdsaP384 => {
            let fields = elements(elements(private).unwrap()[0].1).unwrap();
            assert_eq!(fields[1].0, 0x04, "ECPrivateKey privateKey");
            vec![Secret::number(
                format!("{label} EC private scalar"),
                fields[1].1.to_vec(),
            )]
        }
        Alg::Ed25519 => {
            let (tag, seed) = elements(private).unwrap()[0];
            assert_eq!((tag, seed.len()), (0x04, 32), "an Ed25519 seed");
            vec![Secret {
                name: format!("{label} Ed25519 seed"),
                bytes: seed.to_vec(),
                forms: BYTES,
            }]
        }
    }
}

/// The AES-256-GCM key the ticket code derives from a file key (its
/// `derive`): HKDF-Expand (the file key as PRK) of 40 bytes, the ticket
/// key name first (public: it leads every ticket), the key after it.
/// aws-lc's AES-NI key schedule begins with the key's bytes, so the key is
/// seen wherever a schedule is. Should the derivation change, the resumed
/// connection's check of the holder fails and says so.
fn derived_ticket_key(file_key: &[u8]) -> Vec<u8> {
    use aws_lc_rs::hkdf::{KeyType, Prk, HKDF_SHA256};
    struct Len(usize);
    impl KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    let mut out = [0u8; 40];
    Prk::new_less_safe(HKDF_SHA256, file_key)
        .expand(&[b"s6-tlsd-io ticket key v1"], Len(out.len()))
        .and_then(|okm| okm.fill(&mut out))
        .expect("HKDF");
    out[8..].to_vec()
}

/// A ticket key file of `n` fresh random keys, root's, mode 600.
struct TicketFile {
    path: PathBuf,
    keys: Vec<Vec<u8>>,
}

fn ticket_file(n: usize) -> TicketFile {
    let mut raw = vec![0u8; 32 * n];
    aws_lc_rs::rand::fill(&mut raw).expect("random");
    let path = write_file(&tmpdir("ticket-keys"), "keys", &raw);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    TicketFile {
        path,
        keys: raw.chunks(32).map(<[u8]>::to_vec).collect(),
    }
}

/// The raw keys of the file, and the AES keys derived from them.
fn ticket_secrets(file: &TicketFile) -> (Vec<Secret>, Vec<Secret>) {
    let each = |f: &dyn Fn(&[u8]) -> Vec<u8>, what: &str| -> Vec<Secret> {
        file.keys
            .iter()
            .enumerate()
            .map(|(i, k)| Secret {
                name: format!("ticket key {i} {what}"),
                bytes: f(k),
                forms: BYTES,
            })
            .collect()
    };
    (
        each(&|k| k.to_vec(), "(raw, from the file)"),
        each(&derived_ticket_key, "(derived AES-256-GCM key)"),
    )
}

// --------------------------------------------------------------- the scan

/// Bytes of a secret looked for at a time. A copy is often cut short: a
/// freed block's first 16 bytes hold the allocator's links. So each form
/// is looked for in pieces of 16 bytes, one every 8: any 24 bytes of a
/// copy in place are found. The secrets are random (96 bits a piece for
/// base64 text, 128 otherwise): a chance match of any of a few thousand
/// pieces anywhere in tens of MiB has a probability below 2^-60.
const PIECE: usize = 16;
const STRIDE: usize = 8;

/// Where the pieces of a form `len` bytes long start: every `STRIDE`
/// bytes, and the last piece flush with the end.
fn starts(len: usize) -> Vec<usize> {
    let last = len - PIECE;
    let mut at: Vec<usize> = (0..=last).step_by(STRIDE).collect();
    if at.last() != Some(&last) {
        at.push(last);
    }
    at
}

struct Piece {
    secret: usize,
    form: Form,
    at: usize,
}

/// Every piece of every form of `secrets`, indexed by its first two bytes.
struct Needles<'a> {
    secrets: &'a [&'a Secret],
    pieces: Vec<(Piece, [u8; PIECE])>,
    by_prefix: HashMap<u16, Vec<usize>>,
    prefixes: Vec<bool>,
}

impl<'a> Needles<'a> {
    fn new(secrets: &'a [&'a Secret]) -> Needles<'a> {
        let mut pieces = Vec::new();
        for (i, s) in secrets.iter().enumerate() {
            assert!(s.bytes.len() >= PIECE, "{}: too short to look for", s.name);
            for &form in s.forms {
                let bytes = s.form(form);
                for at in starts(bytes.len()) {
                    let mut piece = [0; PIECE];
                    piece.copy_from_slice(&bytes[at..at + PIECE]);
                    pieces.push((
                        Piece {
                            secret: i,
                            form,
                            at,
                        },
                        piece,
                    ));
                }
            }
        }
        let mut by_prefix: HashMap<u16, Vec<usize>> = HashMap::new();
        let mut prefixes = vec![false; 1 << 16];
        for (n, (_, bytes)) in pieces.iter().enumerate() {
            let prefix = u16::from_le_bytes([bytes[0], bytes[1]]);
            prefixes[prefix as usize] = true;
            by_prefix.entry(prefix).or_default().push(n);
        }
        Needles {
            secrets,
            pieces,
            by_prefix,
            prefixes,
        }
    }
}

/// Where a piece was found.
struct Hit {
    piece: usize,
    mapping: String,
    offset: usize,
}

/// A mapping of /proc/PID/maps: its range and its name as a failure
/// message gives it.
struct Mapping {
    start: u64,
    end: u64,
    name: String,
}

/// Every readable mapping of `pid`: private ones, and shared ones too (a
/// key in memory shared between the engine and its holder would be the
/// engine's as much).
fn mappings(pid: u32) -> Vec<Mapping> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/maps: {e}"));
    maps.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (range, perms) = (f.next()?, f.next()?);
            if !perms.starts_with('r') {
                return None;
            }
            let name = f.nth(3).unwrap_or("anonymous").to_string();
            let (start, end) = range.split_once('-')?;
            Some(Mapping {
                start: u64::from_str_radix(start, 16).ok()?,
                end: u64::from_str_radix(end, 16).ok()?,
                name: format!("{name} ({range} {perms})"),
            })
        })
        .collect()
}

/// What a scan found of each (secret, form): the pieces found and where
/// the first was.
struct Found<'a> {
    needles: &'a Needles<'a>,
    hits: Vec<Hit>,
    /// Bytes read, and mappings that could not be read (e.g. [vvar]).
    read: usize,
    unreadable: Vec<String>,
}

/// Bytes read from /proc/PID/mem at a time: a large mapping costs no more
/// memory here than this, and a part that cannot be read (a file-backed
/// page past the file's end) loses only its chunk.
const CHUNK: u64 = 1 << 20;

/// Reads every readable mapping of `pid` through /proc/PID/mem and looks
/// for every piece of `needles` in it.
fn scan<'a>(pid: u32, needles: &'a Needles<'a>) -> Found<'a> {
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/mem: {e}"));
    let mut found = Found {
        needles,
        hits: Vec::new(),
        read: 0,
        unreadable: Vec::new(),
    };
    let mut buf = Vec::new();
    for m in mappings(pid) {
        for at in (m.start..m.end).step_by(CHUNK as usize) {
            // Each chunk overlaps the next by a piece less one byte, so
            // that a piece across the boundary is found.
            let len = (m.end - at).min(CHUNK + PIECE as u64 - 1);
            buf.resize(len as usize, 0);
            let ok = mem
                .seek(SeekFrom::Start(at))
                .and_then(|_| mem.read_exact(&mut buf));
            if ok.is_err() {
                found.unreadable.push(format!("{} at {at:#x}", m.name));
                continue;
            }
            found.read += buf.len().min(CHUNK as usize);
            for i in 0..buf.len().saturating_sub(PIECE - 1) {
                let prefix = u16::from_le_bytes([buf[i], buf[i + 1]]);
                if !needles.prefixes[prefix as usize] {
                    continue;
                }
                for &n in &needles.by_prefix[&prefix] {
                    if buf[i..i + PIECE] == needles.pieces[n].1 {
                        found.hits.push(Hit {
                            piece: n,
                            mapping: m.name.clone(),
                            offset: (at - m.start) as usize + i,
                        });
                    }
                }
            }
        }
    }
    found
}

impl Found<'_> {
    /// Whether the secret (its index) was found, whatever the form.
    fn holds(&self, secret: usize) -> bool {
        self.hits
            .iter()
            .any(|h| self.needles.pieces[h.piece].0.secret == secret)
    }

    /// One line per (secret, form) found of the secrets `wanted` selects,
    /// for `who`: how many of its pieces, and where the first one is.
    fn report(&self, who: &str, wanted: impl Fn(usize) -> bool) -> String {
        let mut by: BTreeMap<(usize, Form), (Vec<usize>, &Hit)> = BTreeMap::new();
        for h in &self.hits {
            let p = &self.needles.pieces[h.piece].0;
            if !wanted(p.secret) {
                continue;
            }
            let e = by.entry((p.secret, p.form)).or_insert((Vec::new(), h));
            e.0.push(p.at);
        }
        let mut out = String::new();
        for ((secret, form), (mut ats, first)) in by {
            ats.sort_unstable();
            ats.dedup();
            let s = self.needles.secrets[secret];
            let total = starts(s.bytes.len()).len();
            let p = &self.needles.pieces[first.piece].0;
            let form = match s.forms.len() {
                1 => String::new(),
                _ => format!(" ({})", form.name()),
            };
            out.push_str(&format!(
                "  {who} holds {}{form}: {} of its {total} pieces of {PIECE} bytes, \
                 the first (bytes {}..{}) in mapping {} at offset {:#x}\n",
                s.name,
                ats.len(),
                p.at,
                p.at + PIECE,
                first.mapping,
                first.offset,
            ));
        }
        out
    }
}

// -------------------------------------------------- a handshake by hand

/// A client whose handshake stops before its Finished: the ClientHello
/// (and a second after a HelloRetryRequest) sent, the server's flight (its
/// signature among it) read and processed, the client's answer (its
/// Finished; under TLS 1.2 its key exchange first) queued but not sent.
/// The engine then waits for it.
fn to_the_clients_finished(e: &Engine, config: Arc<ClientConfig>, name: &str) -> Tls {
    let mut sock: TcpStream = e.client().try_clone().expect("dup client");
    sock.set_read_timeout(Some(BOUND)).expect("timeout");
    let mut conn = ClientConnection::new(config, ServerName::try_from(name.to_string()).unwrap())
        .expect("client");
    loop {
        // A TLS 1.3 client queues its Finished as its handshake ends, a
        // TLS 1.2 client its flight as soon as it has read the server's;
        // anything it has to send before that is a ClientHello.
        let tls12 = conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_2);
        if conn.wants_write() && (tls12 || !conn.is_handshaking()) {
            return StreamOwned::new(conn, sock);
        }
        while conn.wants_write() {
            conn.write_tls(&mut sock).expect("send ClientHello");
        }
        match conn.read_tls(&mut sock) {
            Ok(0) => panic!("engine pid {}: EOF before its Finished", e.pid()),
            Ok(_) => {}
            Err(err) => panic!("engine pid {}: reading its flight: {err}", e.pid()),
        }
        if let Err(err) = conn.process_new_packets() {
            panic!("engine pid {}: its flight: {err}", e.pid());
        }
    }
}

/// A client that has sent its ClientHello and waits for nothing: what the
/// engine does next is the test's to watch. A write error means the engine
/// is gone already, which the test finds out as it waits for it.
fn send_client_hello(e: &Engine) -> ClientConnection {
    let mut sock: TcpStream = e.client().try_clone().expect("dup client");
    let mut conn =
        ClientConnection::new(tls13(), ServerName::try_from("localhost").unwrap()).expect("client");
    while conn.wants_write() {
        if conn.write_tls(&mut sock).is_err() {
            break;
        }
    }
    conn
}

/// Sends the client's Finished, then a byte each way: the relay runs.
fn finish_and_relay(e: &mut Engine, tls: &mut Tls) {
    while tls.conn.wants_write() {
        tls.conn.write_tls(&mut tls.sock).expect("send Finished");
    }
    tls.write_all(b"x").expect("client write");
    assert_eq!(read_app(e, 1), b"x");
    e.app_tx().write_all(b"y").unwrap();
    let mut buf = [0u8; 1];
    tls.read_exact(&mut buf).expect("client read");
    assert_eq!(&buf, b"y");
}

// ------------------------------------------------------------- 1: memory

/// A server pair for `name`, as the engine's environment names it:
/// `None` for the default pair (CERTFILE, KEYFILE).
struct Pair {
    name: Option<&'static str>,
    alg: Alg,
    keys: Keys,
}

impl Pair {
    fn new(name: Option<&'static str>, alg: Alg, cert_name: &str) -> Pair {
        Pair {
            name,
            alg,
            keys: keys(alg, &[cert_name]),
        }
    }

    fn label(&self) -> String {
        match self.name {
            None => "the default pair's".to_string(),
            Some(n) => format!("{n}'s"),
        }
    }

    fn env(&self) -> [(String, String); 2] {
        let suffix = self.name.map(|n| format!(":{n}")).unwrap_or_default();
        [
            (
                format!("CERTFILE{suffix}"),
                self.keys.cert.display().to_string(),
            ),
            (
                format!("KEYFILE{suffix}"),
                self.keys.key.display().to_string(),
            ),
        ]
    }
}

/// One connection of a memory test: how it is made, and what its scans
/// found: the engine while it waits for the ClientHello (its start-up
/// over), the engine while it waits for the client's Finished, the holder
/// then (if the engine had a live child), the engine once the relay runs.
struct Scans<'a> {
    how: &'static str,
    kind: rustls::HandshakeKind,
    engine: u32,
    before: Found<'a>,
    mid: Found<'a>,
    holder: Option<(u32, Found<'a>)>,
    relaying: Found<'a>,
    /// The engine's children once the relay runs: none, not even a zombie.
    left: Vec<(u32, Stat)>,
}

/// One connection to an engine started with `args` and `env`, as `sni`,
/// with the client `config` (whose session store keeps its tickets from
/// one connection to the next), scanned for `needles`. The handshake must
/// be of `kind`.
fn scanned_connection<'a>(
    (how, config, kind): &(&'static str, Arc<ClientConfig>, rustls::HandshakeKind),
    args: &[&str],
    env: &[(String, String)],
    sni: &str,
    needles: &'a Needles<'a>,
) -> Scans<'a> {
    let mut e = spawn().args(args).env(env.to_vec()).start();
    let engine = e.pid();
    wait_confined(&e);
    let before = scan(engine, needles);
    let mut tls = to_the_clients_finished(&e, config.clone(), sni);
    let mid = scan(engine, needles);
    let holder = children(engine)
        .into_iter()
        .find(|(_, s)| s.state != 'Z')
        .map(|(pid, _)| (pid, scan(pid, needles)));
    finish_and_relay(&mut e, &mut tls);
    assert_eq!(
        tls.conn.handshake_kind(),
        Some(*kind),
        "engine pid {engine}: {how}"
    );
    let relaying = scan(engine, needles);
    let left = children(engine);
    let _ = drop_both_ends(e, tls);
    Scans {
        how,
        kind: *kind,
        engine,
        before,
        mid,
        holder,
        relaying,
        left,
    }
}

/// The key file's text past its first line, as the file has it and as
/// base64 alone (what a PEM decoder gathers): the first line is mostly
/// the encoding's fixed header, common to every key of a type. None for
/// a key whose text is one line (Ed25519): its seed is looked for.
fn key_text(label: &str, pem: &str) -> Vec<Secret> {
    let body: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    if body.len() < 2 {
        return Vec::new();
    }
    let text = |bytes: String, what: &str| Secret {
        name: format!("{label} key file ({what})"),
        bytes: bytes.into_bytes(),
        forms: BYTES,
    };
    vec![
        text(body[1..].join("\n"), "its text"),
        text(body[1..].concat(), "its base64"),
    ]
}

/// The memory test of one case: under `-k 1`, a default pair and two named
/// ones (`pairs`, the last the one the client asks for), and a ticket key
/// file of two keys. Three connections: a full TLS 1.3 handshake (the
/// holder signs, then seals a ticket), one that resumes with that ticket
/// (the holder opens it), a TLS 1.2 handshake (the holder signs the
/// ServerKeyExchange). The engine is scanned while it waits for the
/// ClientHello, while it waits for the client's Finished and once the
/// relay runs; the holder while it lives, mid-handshake.
fn no_key_in_the_engine(pairs: [Pair; 3]) {
    let tickets = ticket_file(2);
    let chosen = &pairs[2];
    let sni = chosen.name.expect("the client asks for a named pair");
    let mut env: Vec<(String, String)> = pairs.iter().flat_map(Pair::env).collect();
    env.push((
        "TLS_TICKET_KEYFILE".into(),
        tickets.path.display().to_string(),
    ));

    // What is looked for: every pair's private numbers and key file text,
    // every ticket key, raw and derived; and, as the control that the
    // engine's scan sees its heap, the chosen pair's certificate, which
    // the engine must hold.
    let keys: Vec<Vec<Secret>> = pairs
        .iter()
        .map(|p| private_numbers(&p.label(), p.alg, &p.keys.key_der))
        .collect();
    let texts: Vec<Secret> = pairs
        .iter()
        .flat_map(|p| key_text(&p.label(), &p.keys.key_pem))
        .collect();
    let (raw, derived) = ticket_secrets(&tickets);
    let certificate = Secret {
        name: format!("{sni}'s certificate (public: the control)"),
        bytes: chosen.keys.cert_der.clone(),
        forms: BYTES,
    };
    let mut all: Vec<&Secret> = keys.iter().flatten().chain(&texts).collect();
    all.extend(raw.iter().chain(&derived));
    all.push(&certificate);
    let index = |s: &Secret| all.iter().position(|&a| std::ptr::eq(a, s)).unwrap();
    let control = index(&certificate);
    let needles = Needles::new(&all);

    use rustls::HandshakeKind::{Full, Resumed};
    // One client for the first two: its session store keeps the ticket.
    let client = tls13();
    let scans: Vec<Scans> = [
        ("TLS 1.3, full handshake", client.clone(), Full),
        ("TLS 1.3, resumed", client, Resumed),
        ("TLS 1.2", tls12(), Full),
    ]
    .iter()
    .map(|c| scanned_connection(c, &["-k", "1"], &env, sni, &needles))
    .collect();

    // The engine: nothing, at any time; its certificate, each time.
    let mut report = String::new();
    for c in &scans {
        for (when, found) in [
            ("before the ClientHello", &c.before),
            ("mid-handshake", &c.mid),
            ("relaying", &c.relaying),
        ] {
            let who = format!("engine pid {} ({}, {when})", c.engine, c.how);
            assert!(
                found.holds(control),
                "the scan of {who} ({} bytes read, unreadable: {:?}) does not even find \
                 the certificate it serves",
                found.read,
                found.unreadable
            );
            report.push_str(&found.report(&who, |i| i != control));
        }
    }
    assert!(
        report.is_empty(),
        "the engine holds secrets (the client asked for {sni}):\n{report}"
    );

    // The holder, which must hold what the engine asks of it: the scan
    // sees what it looks for. Signing, the chosen pair's key, and (TLS 1.3)
    // each ticket key, raw or derived; resuming, the derived key that
    // opened the ticket.
    let mut seen = String::new();
    for c in &scans {
        let Some((pid, found)) = &c.holder else {
            panic!(
                "engine pid {} had no key holder child mid-handshake ({})",
                c.engine, c.how
            );
        };
        let who = format!("holder pid {pid} ({})", c.how);
        let detail = found.report(&who, |i| i != control);
        let tls13 = c.how.starts_with("TLS 1.3");
        let mut missing = Vec::new();
        if c.kind == Full && !keys[2].iter().any(|k| found.holds(index(k))) {
            missing.push(format!("any form of {sni}'s private key"));
        }
        if c.kind == Full && tls13 {
            for (r, d) in raw.iter().zip(&derived) {
                if !found.holds(index(r)) && !found.holds(index(d)) {
                    missing.push(format!("{} or {}", r.name, d.name));
                }
            }
        }
        if c.kind == Resumed && !found.holds(index(&derived[0])) {
            missing.push(format!(
                "{} (either the holder drops its AES keys once used, or this test's \
                 derived_ticket_key is no longer the ticket code's `derive`, and the \
                 scans cannot see a derived key)",
                derived[0].name
            ));
        }
        assert!(
            missing.is_empty(),
            "the scan of {who} ({} bytes read; unreadable: {:?}) finds no {}; \
             it found:\n{detail}",
            found.read,
            found.unreadable,
            missing.join("; no ")
        );
        seen.push_str(&detail);
    }
    eprintln!("found in the holder, as it should be:\n{seen}");
    for c in &scans {
        assert!(
            c.left.is_empty(),
            "engine pid {} ({}) still had children once the relay ran: {}",
            c.engine,
            c.how,
            describe(&c.left)
        );
    }
}

#[test]
fn no_private_or_ticket_key_in_the_engine_rsa() {
    if !is_root() {
        return;
    }
    no_key_in_the_engine([
        Pair::new(None, Alg::Rsa2048, "localhost"),
        Pair::new(Some("a.test"), Alg::Rsa2048, "a.test"),
        Pair::new(Some("b.test"), Alg::Rsa2048, "b.test"),
    ]);
}

/// ECDSA, with an Ed25519 pair among those not chosen.
#[test]
fn no_private_or_ticket_key_in_the_engine_ecdsa() {
    if !is_root() {
        return;
    }
    no_key_in_the_engine([
        Pair::new(None, Alg::EcdsaP256, "localhost"),
        Pair::new(Some("a.test"), Alg::Ed25519, "a.test"),
        Pair::new(Some("b.test"), Alg::EcdsaP256, "b.test"),
    ]);
}

// ------------------------------------------------- 2: the holder's state

/// Panics unless no account in /etc/passwd uses UID and no group in
/// /etc/group GID (read as files: the tests are static executables, and
/// glibc's NSS cannot load its modules into one).
fn assert_unused_ids() {
    for (file, id) in [("/etc/passwd", UID), ("/etc/group", GID)] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let used = text
            .lines()
            .any(|l| l.split(':').nth(2) == Some(&id.to_string()));
        assert!(!used, "{id} is used in {file}: pick another for this test");
    }
}

/// A fresh ECDSA pair for localhost, its files `uid`'s and `gid`'s, mode
/// 600: only they (and root) read them.
fn keys_of(uid: u32, gid: u32) -> Keys {
    let k = keys(Alg::EcdsaP256, &["localhost"]);
    for f in [&k.cert, &k.key] {
        std::os::unix::fs::chown(f, Some(uid), Some(gid)).unwrap();
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    k
}

/// Started by root with TLS_UID and TLS_GID, the holder drops to them as
/// the engine does (one group, TLS_GID), and confines itself: seccomp's
/// filter mode, no new privileges, no descriptor but its socket. Once the
/// relay runs, it is gone and reaped: the engine has no child, not even a
/// zombie.
#[test]
fn the_key_holder_is_confined_runs_as_tls_uid_and_is_gone_once_the_relay_runs() {
    if !is_root() {
        return;
    }
    assert_unused_ids();
    let tickets = ticket_file(1);
    let mut env = key_env(&keys_of(0, 0));
    env.extend([
        ("TLS_UID".into(), UID.to_string()),
        ("TLS_GID".into(), GID.to_string()),
        (
            "TLS_TICKET_KEYFILE".into(),
            tickets.path.display().to_string(),
        ),
    ]);
    let mut e = spawn().env(env).start();
    let mut tls = to_the_clients_finished(&e, tls13(), "localhost");
    let h = holder(&e);
    let of = |field: &str| status(h.pid, field);
    let who = format!("holder pid {} of engine pid {}", h.pid, e.pid());
    assert_eq!(of("Seccomp"), "2", "{who}: Seccomp");
    assert_eq!(of("NoNewPrivs"), "1", "{who}: NoNewPrivs");
    let (uid, gid) = (UID.to_string(), GID.to_string());
    assert_eq!(
        words(&of("Uid")),
        vec![uid.clone(); 4],
        "{who}: real, effective, saved, fs uid"
    );
    assert_eq!(
        words(&of("Gid")),
        vec![gid.clone(); 4],
        "{who}: real, effective, saved, fs gid"
    );
    assert_eq!(
        words(&of("Groups")),
        vec![gid],
        "{who}: supplementary groups"
    );
    // Its one descriptor, the socket to the engine: no file, no stdio.
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", h.pid))
        .unwrap()
        .map(|fd| {
            let fd = fd.unwrap().path();
            let to = std::fs::read_link(&fd).unwrap_or_default();
            format!("{} -> {}", fd.display(), to.display())
        })
        .collect();
    assert!(
        fds.len() == 1 && fds[0].contains(" -> socket:["),
        "{who}: descriptors other than its socket: {fds:?}"
    );
    finish_and_relay(&mut e, &mut tls);
    assert_childless(&e, "once the relay runs");
    assert!(!h.running(), "{who}: still runs once the relay runs");
    finish(e, tls);
}

/// The limits of /proc/PID/limits' line `Max core file size`: soft, hard.
fn core_limit(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max core file size"))
        .unwrap_or_else(|| panic!("no core limit in /proc/{pid}/limits"));
    let w = words(line);
    (w[0].clone(), w[1].clone())
}

/// Neither process can be dumped, nor traced by its own uid: not dumpable
/// (PR_SET_DUMPABLE 0), which /proc shows as its files belonging to root
/// instead of the process's uid; and no core file (a soft RLIMIT_CORE of
/// 0). Started as a uid of its own (not root: a change of ids makes a
/// process undumpable by itself) with core files allowed, the engine
/// would be dumpable if it did nothing about it.
#[test]
fn neither_the_engine_nor_the_key_holder_can_be_dumped() {
    if !is_root() {
        return;
    }
    assert_unused_ids();
    let k = keys_of(UID, GID);
    let e = spawn().keys(&k).run_as(UID, GID).start();
    let _tls = to_the_clients_finished(&e, tls13(), "localhost");
    let check = |who: &str, pid: u32| {
        let owner = std::fs::metadata(format!("/proc/{pid}/status"))
            .unwrap()
            .uid();
        assert_eq!(
            owner, 0,
            "{who} pid {pid} is dumpable: /proc/{pid}/status belongs to uid {owner}, \
             its own, not root"
        );
        let (soft, _) = core_limit(pid);
        assert_eq!(
            soft, "0",
            "{who} pid {pid}: core file size limit {soft}, not 0"
        );
    };
    check("engine", e.pid());
    check("holder", holder(&e).pid);
}

// --------------------------------------------------- 3, 4: killed

/// How the engine must end, within `bound`, once its holder `h` has
/// failed: exit 111, one fatal line that names the connection and the key
/// holder; the holder gone too.
fn assert_holder_failure(mut e: Engine, h: &Holder, bound: Duration) {
    let pid = e.pid();
    let exit = e.wait(bound);
    let raw = &exit.raw_stderr;
    assert_eq!(exit.code, Some(111), "engine pid {pid}: {raw}");
    assert_eq!(raw.lines().count(), 1, "engine pid {pid}: one line: {raw}");
    assert!(
        exit.stderr.starts_with("s6-tlsd-io: fatal: ") && exit.stderr.contains("key holder"),
        "engine pid {pid}: a fatal line naming the key holder: {raw}"
    );
    assert_ne!(
        &exit.stderr, raw,
        "engine pid {pid}: the line names no connection"
    );
    assert!(
        h.gone(),
        "holder pid {} still runs {BOUND:?} after its engine pid {pid} exited",
        h.pid
    );
}

/// The holder killed while the engine waits for the client's Finished:
/// the engine needs it again to seal the ticket (if it has not noticed
/// before), and ends.
#[test]
fn killing_the_key_holder_mid_handshake_ends_the_connection_with_111() {
    if !is_root() {
        return;
    }
    let tickets = ticket_file(1);
    let e = spawn()
        .set("TLS_TICKET_KEYFILE", &tickets.path.display().to_string())
        .start();
    let mut tls = to_the_clients_finished(&e, tls13(), "localhost");
    let h = holder(&e);
    signal(&h, libc::SIGKILL);
    // The client's Finished; the engine may be gone already.
    while tls.conn.wants_write() {
        if tls.conn.write_tls(&mut tls.sock).is_err() {
            break;
        }
    }
    assert_holder_failure(e, &h, BOUND);
}

/// The holder killed once both processes are ready, before the client
/// sends its ClientHello: the engine cannot sign, and ends.
#[test]
fn killing_the_key_holder_before_the_client_hello_ends_the_connection_with_111() {
    if !is_root() {
        return;
    }
    let (e, h, _client) = holder_signalled(&[], libc::SIGKILL);
    assert_holder_failure(e, &h, BOUND);
}

/// The engine killed while it waits for the client's Finished: its holder
/// goes too (PR_SET_PDEATHSIG, or the EOF on its socket).
#[test]
fn killing_the_engine_mid_handshake_ends_the_key_holder_too() {
    if !is_root() {
        return;
    }
    let mut e = spawn().start();
    let _tls = to_the_clients_finished(&e, tls13(), "localhost");
    let h = holder(&e);
    e.child.kill().unwrap();
    e.child.wait().unwrap();
    assert!(
        h.gone(),
        "holder pid {} still runs {BOUND:?} after its engine pid {} was killed",
        h.pid,
        e.pid()
    );
}

/// How long the engine may wait for a holder that does not answer: its
/// own bound (the reference pages say which) and then some. A bound, not
/// a measurement: the test fails only if the engine waits past it.
const HANG_BOUND: Duration = Duration::from_secs(60);

/// The holder stopped (SIGSTOP: it hangs, alive, its socket open) before
/// the ClientHello: the engine's wait for the signature is bounded, and it
/// ends as when its holder dies; the stopped holder does not outlive it.
#[test]
fn a_key_holder_that_hangs_ends_the_connection_with_111() {
    if !is_root() {
        return;
    }
    let (e, h, _client) = holder_signalled(&[], libc::SIGSTOP);
    assert_holder_failure(e, &h, HANG_BOUND);
}

// ------------------------------------------------ 5: the holder's copies

/// The key holder holds the keys, but no copy of a key file's text: every
/// block it frees is wiped (src/alloc.rs), the PEM decoder's base64 text
/// among them, which rustls-pki-types frees as it is. The scan's control
/// is the key itself, which the holder must hold.
#[test]
fn the_key_holder_keeps_no_copy_of_a_key_file_s_text() {
    if !is_root() {
        return;
    }
    for alg in [Alg::EcdsaP256, Alg::Rsa2048] {
        let pair = Pair::new(None, alg, "localhost");
        let numbers = private_numbers(&pair.label(), alg, &pair.keys.key_der);
        let texts = key_text(&pair.label(), &pair.keys.key_pem);
        let all: Vec<&Secret> = numbers.iter().chain(&texts).collect();
        let needles = Needles::new(&all);
        let mut e = spawn().env(pair.env().to_vec()).start();
        let mut tls = to_the_clients_finished(&e, tls13(), "localhost");
        let h = holder(&e);
        let found = scan(h.pid, &needles);
        let who = format!("holder pid {} ({alg:?})", h.pid);
        assert!(
            (0..numbers.len()).any(|i| found.holds(i)),
            "the scan of {who} does not even find its key:\n{}",
            found.report(&who, |_| true)
        );
        let text = found.report(&who, |i| i >= numbers.len());
        assert!(text.is_empty(), "{who} keeps its key file's text:\n{text}");
        finish_and_relay(&mut e, &mut tls);
        finish(e, tls);
    }
}

/// Under `-K`, the wait for a holder that does not answer ends with the
/// handshake's deadline: the handshake timed out (exit 98), as any
/// handshake past `-K`, long before the holder's own bound.
#[test]
fn a_key_holder_that_hangs_under_k_ends_the_handshake_at_its_deadline() {
    if !is_root() {
        return;
    }
    let (mut e, h, _client) = holder_signalled(&["-K", "3000"], libc::SIGSTOP);
    let exit = e.wait(BOUND);
    assert_eq!(
        (exit.code, exit.stderr.as_str()),
        (Some(98), "s6-tlsd-io: fatal: handshake timed out\n"),
        "engine pid {}: {}",
        e.pid(),
        exit.raw_stderr
    );
    assert!(h.gone(), "holder pid {} outlives its engine", h.pid);
}
