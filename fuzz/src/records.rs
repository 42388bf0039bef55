//! The client's record layer after the handshake, written for the relay
//! target: rustls' client does the handshake, then hands over its keys
//! (`dangerous_extract_secrets`) and this takes over, because rustls'
//! client can send nothing but application data and close_notify, and
//! the target must send any record: alerts of every kind, handshake
//! messages, records cut short or damaged. It also reads the engine's
//! records, which must always decrypt.
//!
//! TLS 1.3 (RFC 8446 section 5.2): the inner content type after the
//! plaintext, nonce = iv XOR sequence number, the header as additional
//! data; a KeyUpdate moves to the next traffic secret (section 7.2), which
//! rustls' key log gives. TLS 1.2 (RFC 5288, RFC 7905): AES-GCM sends the
//! nonce's last 8 bytes in the record, ChaCha20-Poly1305 sends none; the
//! additional data is the sequence number, type, version and length.

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::hkdf;
use rustls::{ConnectionTrafficSecrets, ExtractedSecrets};

pub const CHANGE_CIPHER_SPEC: u8 = 20;
pub const ALERT: u8 = 21;
pub const HANDSHAKE: u8 = 22;
pub const APPLICATION_DATA: u8 = 23;
/// A handshake message's type (RFC 8446 section 4).
pub const KEY_UPDATE: u8 = 24;
const TAG: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Tls12,
    Tls13,
}

/// One direction's keys.
pub struct Direction {
    key: LessSafeKey,
    iv: [u8; 12],
    seq: u64,
    /// TLS 1.3: the traffic secret the key and iv came from.
    secret: Vec<u8>,
}

pub struct Keys {
    version: Version,
    /// TLS 1.2 AES-GCM: the record carries the nonce's last 8 bytes.
    explicit_nonce: bool,
    aead: &'static aead::Algorithm,
    hkdf: hkdf::Algorithm,
    pub tx: Direction,
    pub rx: Direction,
}

/// A record the engine sent that does not decrypt.
#[derive(Debug)]
pub struct Undecryptable;

impl Keys {
    /// From what rustls' client gave up, and (TLS 1.3) the traffic secrets
    /// its key log saw, for key updates.
    pub fn new(
        version: Version,
        secrets: ExtractedSecrets,
        tx_secret: Vec<u8>,
        rx_secret: Vec<u8>,
    ) -> Keys {
        let (aead, explicit_nonce, hkdf) = match &secrets.tx.1 {
            ConnectionTrafficSecrets::Aes128Gcm { .. } => {
                (&aead::AES_128_GCM, true, hkdf::HKDF_SHA256)
            }
            ConnectionTrafficSecrets::Aes256Gcm { .. } => {
                (&aead::AES_256_GCM, true, hkdf::HKDF_SHA384)
            }
            ConnectionTrafficSecrets::Chacha20Poly1305 { .. } => {
                (&aead::CHACHA20_POLY1305, false, hkdf::HKDF_SHA256)
            }
            _ => panic!("a suite the harness does not know"),
        };
        let direction = |(seq, s): (u64, ConnectionTrafficSecrets), secret| {
            let (key, iv) = match s {
                ConnectionTrafficSecrets::Aes128Gcm { key, iv }
                | ConnectionTrafficSecrets::Aes256Gcm { key, iv }
                | ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => (key, iv),
                _ => panic!("a suite the harness does not know"),
            };
            Direction {
                key: less_safe(aead, key.as_ref()),
                iv: iv.as_ref().try_into().expect("a 12-byte iv"),
                seq,
                secret,
            }
        };
        Keys {
            version,
            explicit_nonce: explicit_nonce && version == Version::Tls12,
            aead,
            hkdf,
            tx: direction(secrets.tx, tx_secret),
            rx: direction(secrets.rx, rx_secret),
        }
    }

    /// One record of `content_type` carrying `payload` (at most 2^14 bytes
    /// for a record the engine takes; more makes a record it refuses).
    pub fn seal(&mut self, content_type: u8, payload: &[u8]) -> Vec<u8> {
        let d = &mut self.tx;
        let nonce = nonce(&d.iv, d.seq);
        let mut body = payload.to_vec();
        let record = match self.version {
            Version::Tls13 => {
                body.push(content_type);
                let header = header(APPLICATION_DATA, body.len() + TAG);
                seal(&d.key, nonce, &header, &mut body);
                [&header[..], &body].concat()
            }
            Version::Tls12 => {
                let aad = tls12_aad(d.seq, content_type, payload.len());
                let explicit = match self.explicit_nonce {
                    true => &nonce[4..],
                    false => &[][..],
                };
                let header = header(content_type, explicit.len() + body.len() + TAG);
                seal(&d.key, nonce, &aad, &mut body);
                [&header[..], explicit, &body].concat()
            }
        };
        d.seq += 1;
        record
    }

    /// A whole record from the engine: its content type and plaintext.
    pub fn open(&mut self, record: &[u8]) -> Result<(u8, Vec<u8>), Undecryptable> {
        let d = &mut self.rx;
        let (outer, body) = (record[0], &record[5..]);
        let opened = match self.version {
            Version::Tls13 => {
                if outer != APPLICATION_DATA {
                    return Err(Undecryptable);
                }
                let mut body = body.to_vec();
                let n = open(&d.key, nonce(&d.iv, d.seq), &record[..5], &mut body)?;
                let (content_type, plain) = inner_type(&body[..n]).ok_or(Undecryptable)?;
                (content_type, plain.to_vec())
            }
            Version::Tls12 => {
                let (nonce, body) = match self.explicit_nonce {
                    true if body.len() >= 8 => {
                        let mut n = d.iv;
                        n[4..].copy_from_slice(&body[..8]);
                        (n, &body[8..])
                    }
                    true => return Err(Undecryptable),
                    false => (nonce(&d.iv, d.seq), body),
                };
                let len = body.len().checked_sub(TAG).ok_or(Undecryptable)?;
                let mut body = body.to_vec();
                let n = open(&d.key, nonce, &tls12_aad(d.seq, outer, len), &mut body)?;
                body.truncate(n);
                (outer, body)
            }
        };
        d.seq += 1;
        Ok(opened)
    }

    /// TLS 1.3: the next traffic secret for our sending side (after we sent
    /// a KeyUpdate) or the engine's (after it sent one).
    pub fn update_tx(&mut self) {
        update(self.aead, self.hkdf, &mut self.tx);
    }

    pub fn update_rx(&mut self) {
        update(self.aead, self.hkdf, &mut self.rx);
    }
}

/// The content type and content a record of `content_type` carrying
/// `payload` is read as: as it is under TLS 1.2; under TLS 1.3 the last
/// byte that is not zero of the payload and type together is the type
/// (RFC 8446 section 5.4: zeros after it are padding), None if there is
/// none.
pub fn as_read(version: Version, content_type: u8, payload: &[u8]) -> (Option<u8>, &[u8]) {
    match version {
        Version::Tls12 => (Some(content_type), payload),
        Version::Tls13 if content_type != 0 => (Some(content_type), payload),
        Version::Tls13 => match inner_type(payload) {
            Some((content_type, content)) => (Some(content_type), content),
            None => (None, &[]),
        },
    }
}

/// TLS 1.3's inner content type (RFC 8446 section 5.4): the last byte of
/// `plain` that is not zero, and the content before it; None if there is
/// none.
fn inner_type(plain: &[u8]) -> Option<(u8, &[u8])> {
    let i = plain.iter().rposition(|&b| b != 0)?;
    Some((plain[i], &plain[..i]))
}

fn less_safe(aead: &'static aead::Algorithm, key: &[u8]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(aead, key).expect("a key of the suite's length"))
}

fn header(content_type: u8, len: usize) -> [u8; 5] {
    let [hi, lo] = (len as u16).to_be_bytes();
    [content_type, 3, 3, hi, lo]
}

fn nonce(iv: &[u8; 12], seq: u64) -> [u8; 12] {
    let mut n = *iv;
    for (b, s) in n[4..].iter_mut().zip(seq.to_be_bytes()) {
        *b ^= s;
    }
    n
}

fn tls12_aad(seq: u64, content_type: u8, len: usize) -> [u8; 13] {
    let mut aad = [0; 13];
    aad[..8].copy_from_slice(&seq.to_be_bytes());
    aad[8..11].copy_from_slice(&[content_type, 3, 3]);
    aad[11..].copy_from_slice(&(len as u16).to_be_bytes());
    aad
}

fn seal(key: &LessSafeKey, nonce: [u8; 12], aad: &[u8], body: &mut Vec<u8>) {
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), body)
        .expect("sealing cannot fail");
}

fn open(
    key: &LessSafeKey,
    nonce: [u8; 12],
    aad: &[u8],
    body: &mut [u8],
) -> Result<usize, Undecryptable> {
    key.open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), body)
        .map(|plain| plain.len())
        .map_err(|_| Undecryptable)
}

/// HKDF-Expand-Label (RFC 8446 section 7.1) with an empty context.
fn expand_label(alg: hkdf::Algorithm, secret: &[u8], label: &str, len: usize) -> Vec<u8> {
    struct Len(usize);
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    let full = [b"tls13 ", label.as_bytes()].concat();
    let mut info = (len as u16).to_be_bytes().to_vec();
    info.push(full.len() as u8);
    info.extend_from_slice(&full);
    info.push(0);
    let mut out = vec![0; len];
    hkdf::Prk::new_less_safe(alg, secret)
        .expand(&[&info], Len(len))
        .and_then(|okm| okm.fill(&mut out))
        .expect("HKDF-Expand of a valid length");
    out
}

fn update(aead: &'static aead::Algorithm, alg: hkdf::Algorithm, d: &mut Direction) {
    let hash_len = hkdf::KeyType::len(&alg);
    d.secret = expand_label(alg, &d.secret, "traffic upd", hash_len);
    d.key = less_safe(aead, &expand_label(alg, &d.secret, "key", aead.key_len()));
    d.iv = expand_label(alg, &d.secret, "iv", 12)
        .try_into()
        .expect("12 bytes");
    d.seq = 0;
}

/// The whole records at the front of `stream`.
pub fn whole_records(stream: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = stream;
    while rest.len() >= 5 {
        let len = 5 + usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if rest.len() < len {
            break;
        }
        out.push(&rest[..len]);
        rest = &rest[len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls13_padding_hides_the_type_given() {
        let v = Version::Tls13;
        assert_eq!(as_read(v, 23, b"ab"), (Some(23), &b"ab"[..]));
        assert_eq!(as_read(v, 0, &[7, 9, 23, 0]), (Some(23), &[7, 9][..]));
        assert_eq!(as_read(v, 0, &[0, 0]), (None, &[][..]));
        assert_eq!(
            as_read(Version::Tls12, 0, &[1, 23]),
            (Some(0), &[1, 23][..])
        );
    }

    /// RFC 8448 section 3 ("Simple 1-RTT Handshake"): the server's
    /// application traffic secret, and the key and iv it gives.
    #[test]
    fn expand_label_matches_rfc_8448() {
        let hex = |s: &str| -> Vec<u8> {
            let s: String = s.split_whitespace().collect();
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let secret = hex(
            "a1 1a f9 f0 55 31 f8 56 ad 47 11 6b 45 a9 50 32 82 04 b4 f4 4b fb 6b 3a
                          4b 4f 1f 3f cb 63 16 43",
        );
        assert_eq!(
            expand_label(hkdf::HKDF_SHA256, &secret, "key", 16),
            hex("9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56")
        );
        assert_eq!(
            expand_label(hkdf::HKDF_SHA256, &secret, "iv", 12),
            hex("cf 78 2b 88 dd 83 54 9a ad f1 e9 84")
        );
    }
}
