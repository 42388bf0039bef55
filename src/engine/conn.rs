//! One rustls connection over buffers the engine owns (rustls' unbuffered
//! API): records are read from fd 0 straight into `incoming` and decrypted
//! there, records to send are written to fd 1 straight from `outgoing`.
//! rustls' buffered connection copied every byte from the client three
//! times (our staging buffer to its deframer, its deframer to a fresh
//! `Vec`, that `Vec` to the cleartext for fdw); here the deframer is ours,
//! and one copy is left beside the cleartext's: the one rustls makes of each
//! decrypted record into a `Vec`, which src/alloc.rs puts at a fixed offset
//! past a page and `incoming` places at a distance that copies at full
//! speed.
//!
//! The engine drives it as it drove `ServerConnection`: read, `process`,
//! write, and `encrypt` what fdr gives, with the same `wants_*` questions.

use std::os::fd::BorrowedFd;
use std::sync::Arc;

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use rustls::{CommonState, ServerConfig};

use super::io::{Cleartext, Incoming, Pages, CHUNK, PAGE};

/// The largest record rustls may ask us to send or may hand us whole: 2^14
/// bytes of plaintext and the most any cipher adds (RFC 8446 section 5.2).
const MAX_RECORD: usize = 5 + (1 << 14) + 256;

pub struct Conn {
    tls: UnbufferedServerConnection,
    incoming: Incoming,
    pub cleartext: Cleartext,
    outgoing: Outgoing,
    /// Where a record's cleartext starts, past its header (and explicit
    /// nonce): `incoming` places records so that it falls where rustls'
    /// `Vec`s start (src/alloc.rs).
    payload_offset: usize,
    /// The client's close_notify has been processed.
    peer_closed: bool,
    /// `process` stopped for want of room, with records maybe pending.
    stalled: bool,
}

impl Conn {
    /// `hello` is every byte rustls' Acceptor was given, `rest` what the
    /// client sent after it: rustls reads both again, in its own deframer.
    pub fn new(config: Arc<ServerConfig>, hello: &[u8], rest: &[u8]) -> Result<Conn, ConnError> {
        let incoming = Incoming::new(hello, rest).map_err(ConnError::Map)?;
        // Room for every record `incoming` can hold beyond the usual limit:
        // encrypting makes rustls decrypt what is pending first.
        let cleartext = Cleartext::new(incoming.capacity()).map_err(ConnError::Map)?;
        Ok(Conn {
            tls: UnbufferedServerConnection::new(config).map_err(ConnError::Tls)?,
            incoming,
            cleartext,
            outgoing: Outgoing::new().map_err(ConnError::Map)?,
            payload_offset: 5,
            peer_closed: false,
            stalled: false,
        })
    }

    pub fn common(&self) -> &CommonState {
        &self.tls
    }

    pub fn is_handshaking(&self) -> bool {
        self.tls.is_handshaking()
    }

    /// The buffers that are empty now go back to the kernel (an idle
    /// connection then holds none of their pages).
    pub fn release_idle_buffers(&mut self) {
        if self.incoming.pending().is_empty() {
            self.incoming.release();
        }
        if self.outgoing.is_empty() {
            self.outgoing.buf.release();
        }
        self.cleartext.release();
    }

    /// Once the handshake is done: where the cleartext of a record starts
    /// depends on the suite (`record_prefix`).
    pub fn learn_suite(&mut self) {
        self.payload_offset = record_prefix(&self.tls);
    }

    /// Where cleartext for `encrypt` should sit, modulo a page, so that
    /// rustls' copy of it into the `Vec` it seals runs at full speed: at
    /// the record's prefix past the `Vec`'s own offset.
    pub fn seal_offset(&self) -> usize {
        crate::alloc::BLOCK_OFFSET + self.payload_offset
    }

    /// Whether more records should be read from the client: not after its
    /// close_notify, and not while what was decrypted waits for fdw.
    pub fn wants_read(&self) -> bool {
        !self.peer_closed && self.cleartext.has_room() && self.incoming.has_room()
    }

    pub fn wants_write(&self) -> bool {
        !self.outgoing.is_empty()
    }

    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Records may wait in `incoming` that `process` left for want of room:
    /// to be processed once there is room, as no poll(2) will tell.
    pub fn stalled(&self) -> bool {
        self.stalled
    }

    /// What is pending is whole records (left for want of room, if any):
    /// an EOF here is clean.
    pub fn at_record_boundary(&self) -> bool {
        let mut rest = self.incoming.pending();
        while let [_, _, _, hi, lo, ..] = rest {
            let len = 5 + usize::from(u16::from_be_bytes([*hi, *lo]));
            match rest.get(len..) {
                Some(after) => rest = after,
                None => return false,
            }
        }
        rest.is_empty()
    }

    /// One read(2) from fd 0 behind what is pending.
    pub fn read_from(&mut self, fd: BorrowedFd) -> nix::Result<usize> {
        self.incoming.fill_aligned(fd, self.payload_offset)
    }

    /// Records to fd 1, as many as one write(2) takes.
    pub fn write_to(&mut self, fd: BorrowedFd) -> nix::Result<usize> {
        self.outgoing.write_to(fd)
    }

    /// Hands what is pending to rustls: decrypted records go to
    /// `cleartext`, records to send to `outgoing`, as far as each has room.
    pub fn process(&mut self) -> Result<(), rustls::Error> {
        self.drive(None, None).map(|_| ())
    }

    /// The same, for the first `n` bytes only (the ClientHello's records):
    /// an error there is a refusal of the hello, whatever follows it.
    pub fn process_first(&mut self, n: usize) -> Result<(), rustls::Error> {
        self.drive(None, Some(n)).map(|_| ())
    }

    /// Encrypts application data; rustls must be past the handshake, and
    /// `outgoing` empty (the engine reads fdr only then). rustls first
    /// decrypts the client's pending records: an error is its verdict on
    /// one of them, unless it is one of ours here (`General`).
    pub fn encrypt(&mut self, data: &[u8]) -> Result<(), rustls::Error> {
        self.write(Write::Data(data))
    }

    /// Queues a close_notify behind what is pending.
    pub fn send_close_notify(&mut self) -> Result<(), rustls::Error> {
        self.write(Write::CloseNotify)
    }

    fn write(&mut self, what: Write) -> Result<(), rustls::Error> {
        match self.drive(Some(what), None)? {
            true => Ok(()),
            false => Err(rustls::Error::General(
                "no room to encrypt, or the handshake is not done".into(),
            )),
        }
    }

    /// After an error: what rustls queued for the client (its alert, and
    /// before it whatever it had queued already), into `outgoing`. Only
    /// what is queued: turning the state machine on would process the bad
    /// record again, and rustls would queue a second alert.
    pub fn queue_last_words(&mut self) {
        while self.tls.wants_write() && self.outgoing.has_room() {
            let status = self.tls.process_tls_records(self.incoming.pending_mut());
            match status.state {
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    match encode.encode(self.outgoing.room()) {
                        Ok(n) => self.outgoing.commit(n),
                        Err(_) => return,
                    }
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => transmit.done(),
                _ => return,
            }
        }
    }

    /// After an error decided before the server's hello, when what rustls
    /// queued for it is an alert in the clear: `words` go to the client in
    /// its place, behind what was queued before the error. (`outgoing`
    /// holds little then, a HelloRetryRequest at most: room for all.)
    pub fn queue_instead(&mut self, words: &[u8]) {
        let kept = self.outgoing.end;
        self.queue_last_words();
        self.outgoing.end = kept;
        if let Some(slot) = self.outgoing.room().get_mut(..words.len()) {
            slot.copy_from_slice(words);
            self.outgoing.commit(words.len());
        }
    }

    /// Every byte rustls queued, taken out: a refused first flight goes
    /// nowhere, so that the engine can send its own alert instead.
    pub fn take_queued(&mut self) -> Vec<u8> {
        self.queue_last_words();
        self.outgoing.take_all()
    }

    /// The unbuffered state machine, turned until it needs what we lack
    /// (records, or room) or, with `write`, until that is written. Returns
    /// whether `write` was done. `limit`: rustls sees only that many of the
    /// bytes `incoming` ever held.
    fn drive(
        &mut self,
        mut write: Option<Write>,
        limit: Option<usize>,
    ) -> Result<bool, rustls::Error> {
        self.stalled = false;
        loop {
            // Reading stops while either has no room; writing goes on
            // (`cleartext` can take every record `incoming` holds: rustls
            // decrypts what is pending before it lets anything be sent).
            if !self.outgoing.has_room() || (write.is_none() && !self.cleartext.has_room()) {
                self.stalled = true;
                return Ok(false);
            }
            let input = self.incoming.pending_limited(limit);
            let UnbufferedStatus { mut discard, state } = self.tls.process_tls_records(input);
            let state = match state {
                Ok(state) => state,
                Err(e) => {
                    self.incoming.consume(discard);
                    return Err(e);
                }
            };
            let mut more = true;
            match state {
                ConnectionState::ReadTraffic(mut traffic) => {
                    // One record a turn, so that `cleartext` always has room.
                    if let Some(record) = traffic.next_record() {
                        let record = record?;
                        discard += record.discard;
                        self.cleartext.push(record.payload);
                    }
                }
                ConnectionState::ReadEarlyData(mut early) => {
                    // Never accepted (no 0-RTT): rustls skips it itself.
                    while let Some(record) = early.next_record() {
                        discard += record?.discard;
                    }
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    let room = self.outgoing.room();
                    match encode.encode(room) {
                        Ok(n) => self.outgoing.commit(n),
                        Err(EncodeError::InsufficientSize(e)) => {
                            return Err(too_large(e.required_size))
                        }
                        Err(EncodeError::AlreadyEncoded) => {}
                    }
                }
                // What was encoded waits in `outgoing` for fd 1.
                ConnectionState::TransmitTlsData(transmit) => transmit.done(),
                ConnectionState::PeerClosed => self.peer_closed = true,
                // What rustls took on its way here (a KeyUpdate, say, that
                // changes no state) is `discard`, consumed below like any:
                // those bytes are decrypted in place, and given again they
                // would not decrypt (found by fuzz/'s engine_relay).
                ConnectionState::WriteTraffic(mut traffic) => {
                    more = false;
                    match write.take() {
                        Some(Write::Data(data)) => {
                            for fragment in data.chunks(1 << 14) {
                                let room = self.outgoing.room();
                                let n = traffic.encrypt(fragment, room).map_err(encrypt_failed)?;
                                self.outgoing.commit(n);
                            }
                        }
                        Some(Write::CloseNotify) => {
                            let room = self.outgoing.room();
                            let n = traffic.queue_close_notify(room).map_err(encrypt_failed)?;
                            self.outgoing.commit(n);
                        }
                        None => {}
                    }
                }
                ConnectionState::BlockedHandshake | ConnectionState::Closed => more = false,
                _ => more = false,
            }
            self.incoming.consume(discard);
            if !more {
                return Ok(write.is_none());
            }
        }
    }
}

enum Write<'a> {
    Data(&'a [u8]),
    CloseNotify,
}

fn too_large(required: usize) -> rustls::Error {
    rustls::Error::General(format!(
        "a record of {required} bytes to send is over {MAX_RECORD}"
    ))
}

fn encrypt_failed(e: EncryptError) -> rustls::Error {
    rustls::Error::General(format!("unable to encrypt: {e}"))
}

/// Why a connection could not be made.
pub enum ConnError {
    Tls(rustls::Error),
    Map(nix::errno::Errno),
}

/// Records for fd 1, one after the other, as the client will read them:
/// they leave with one write(2). Kept contiguous from a page boundary on
/// purpose: the kernel copies them into its socket buffers at the same
/// offsets modulo a page (records placed each on its own page made that
/// copy the slow kind for two records in four: +0.6 s/GiB of system time).
struct Outgoing {
    buf: Pages,
    /// Sent up to here.
    start: usize,
    end: usize,
}

/// Records of application data at once: what one read from fdr gives.
const RECORDS: usize = CHUNK.get() >> 14;

impl Outgoing {
    fn new() -> nix::Result<Outgoing> {
        let size = std::num::NonZeroUsize::new((RECORDS + 2) * MAX_RECORD.next_multiple_of(PAGE))
            .unwrap_or(CHUNK);
        Ok(Outgoing {
            buf: Pages::new(size)?,
            start: 0,
            end: 0,
        })
    }

    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Room for one more record of any kind, and for what one read from
    /// fdr makes once nothing is waiting.
    fn has_room(&self) -> bool {
        self.buf.len() - self.end >= MAX_RECORD.next_multiple_of(PAGE) + PAGE
    }

    /// Room right behind what is queued.
    fn room(&mut self) -> &mut [u8] {
        let end = self.end;
        &mut self.buf[end..]
    }

    fn commit(&mut self, n: usize) {
        self.end += n;
    }

    fn write_to(&mut self, fd: BorrowedFd) -> nix::Result<usize> {
        let n = nix::unistd::write(fd, &self.buf[self.start..self.end])?;
        self.start += n;
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
        Ok(n)
    }

    fn take_all(&mut self) -> Vec<u8> {
        let all = self.buf[self.start..self.end].to_vec();
        (self.start, self.end) = (0, 0);
        all
    }
}

/// Where a record's cleartext starts, in the record and in the `Vec` rustls
/// seals it in place in: after the 5-byte record header, and under TLS 1.2
/// AES-GCM after the 8-byte explicit nonce too (RFC 5288).
fn record_prefix(conn: &CommonState) -> usize {
    use rustls::CipherSuite as S;
    let explicit_nonce = match conn.negotiated_cipher_suite().map(|s| s.suite()) {
        Some(
            S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
            | S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        ) => 8,
        _ => 0,
    };
    5 + explicit_nonce
}
