//! The ClientHello as the client sent it, before rustls sees it (RFC 8446
//! sections 4.1.2 and 5.1, RFC 5246 section 6.2.1, RFC 7507).
//!
//! rustls decides most refusals itself, but not all the ones the RFCs name
//! for a ClientHello, and it does not expose `supported_versions`. So the
//! engine reassembles the hello from its records first, keeping the raw
//! records to hand to rustls afterwards unchanged, and refuses here what
//! only it can tell: records over 2^14 bytes, other records interleaved
//! with the hello's fragments, clients that offer nothing newer than TLS
//! 1.1 (told apart on the reassembled message, wherever the records cut
//! it), SSL 3.0 in `legacy_version` beside `supported_versions`, TLS 1.3
//! without `key_share`, and `TLS_FALLBACK_SCSV` from a client that could
//! have had TLS 1.3, in OpenSSL's order (`Fields::verdict`). Anything else
//! odd goes to rustls as it came, for it to judge.

use rustls::AlertDescription;

use crate::wire::Reader;

/// What TLS allows in a plaintext record (RFC 8446 section 5.1).
const MAX_PLAINTEXT: usize = 1 << 14;
/// rustls' own limit on a handshake message: beyond it, rustls decides.
const MAX_HELLO: usize = 0xffff;
/// Empty handshake records are not allowed (RFC 8446 section 5.1) and
/// rustls refuses them, but only once it sees them: the version check
/// above must come first. This many are looked past, then rustls judges.
const MAX_EMPTY_RECORDS: usize = 32;

const HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const TLS12: u16 = 0x0303;
const TLS13: u16 = 0x0304;
const FALLBACK_SCSV: u16 = 0x5600;
const SUPPORTED_VERSIONS: u16 = 0x002b;
const KEY_SHARE: u16 = 0x0033;

/// What the client offers, as far as the engine's own decisions go.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// TLS 1.3 is in `supported_versions`: the connection will be TLS 1.3.
    pub offers_tls13: bool,
}

/// Where reading the ClientHello stands.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// More records are needed.
    More,
    /// The records so far (`raw`) go to rustls as they are; `hello` is
    /// what the engine read of them, when it read a whole ClientHello.
    ToRustls(Option<Hello>),
    /// The engine refuses the hello itself, in the clear.
    Refuse(AlertDescription, String),
}

/// Takes the stream's first bytes a record at a time.
#[derive(Default)]
pub struct Assembler {
    /// Every byte taken, to hand over to rustls unchanged.
    pub raw: Vec<u8>,
    /// The handshake message, reassembled from the records' payloads.
    message: Vec<u8>,
    empty_records: usize,
}

impl Assembler {
    /// Takes whole records from the front of `input`; returns how many
    /// bytes it took and where it stands. A partial record is left in
    /// `input` until the rest of it arrives.
    pub fn take(&mut self, input: &[u8]) -> (usize, Step) {
        let mut taken = 0;
        loop {
            let rest = &input[taken..];
            if rest.len() < 5 {
                return (taken, Step::More);
            }
            let (typ, version, len) = (rest[0], [rest[1], rest[2]], {
                usize::from(u16::from_be_bytes([rest[3], rest[4]]))
            });
            let first = self.raw.is_empty();
            if version[0] != 3 || !(20..=24).contains(&typ) || (first && typ != HANDSHAKE) {
                // Not TLS, or not a record rustls would take: its call.
                return (taken, Step::ToRustls(None));
            }
            if typ != HANDSHAKE {
                return (
                    taken,
                    Step::Refuse(
                        AlertDescription::UnexpectedMessage,
                        "the client sent other records between the fragments of its ClientHello"
                            .into(),
                    ),
                );
            }
            if len > MAX_PLAINTEXT {
                return (
                    taken,
                    Step::Refuse(
                        AlertDescription::RecordOverflow,
                        format!(
                            "the client sent a ClientHello record of {len} bytes, \
                             over the {MAX_PLAINTEXT} that TLS allows"
                        ),
                    ),
                );
            }
            if rest.len() < 5 + len {
                return (taken, Step::More);
            }
            self.raw.extend_from_slice(&rest[..5 + len]);
            self.message.extend_from_slice(&rest[5..5 + len]);
            taken += 5 + len;
            if len == 0 {
                self.empty_records += 1;
                if self.empty_records > MAX_EMPTY_RECORDS {
                    return (taken, Step::ToRustls(None));
                }
            }
            if let Some(step) = self.judge() {
                return (taken, step);
            }
        }
    }

    /// The verdict once the message says enough, None while it does not.
    fn judge(&self) -> Option<Step> {
        let m = &self.message;
        if m.len() < 4 {
            return None;
        }
        let len = usize::from(m[1]) << 16 | usize::from(m[2]) << 8 | usize::from(m[3]);
        if m[0] != CLIENT_HELLO || len > MAX_HELLO {
            return Some(Step::ToRustls(None));
        }
        if m.len() < 4 + len {
            return None;
        }
        Some(match Fields::parse(&m[4..4 + len]) {
            Some(fields) => fields.verdict(),
            // Malformed: rustls says how.
            None => Step::ToRustls(None),
        })
    }
}

/// The fields of a ClientHello body that the engine judges.
struct Fields {
    legacy_version: u16,
    /// None without the extension; GREASE and unknown values left out.
    supported_versions: Option<Vec<u16>>,
    fallback_scsv: bool,
    key_share: bool,
}

impl Fields {
    fn parse(body: &[u8]) -> Option<Fields> {
        let mut r = Reader(body);
        let legacy_version = r.u16()?;
        r.take(32)?;
        let session_id = usize::from(r.u8()?);
        r.take(session_id)?;
        let suites = usize::from(r.u16()?);
        let suites = r.take(suites)?;
        let compression = usize::from(r.u8()?);
        r.take(compression)?;
        let mut fields = Fields {
            legacy_version,
            supported_versions: None,
            fallback_scsv: suites
                .chunks_exact(2)
                .any(|s| u16::from_be_bytes([s[0], s[1]]) == FALLBACK_SCSV),
            key_share: false,
        };
        if r.0.is_empty() {
            return Some(fields);
        }
        let len = usize::from(r.u16()?);
        let mut exts = Reader(r.take(len)?);
        while !exts.0.is_empty() {
            let typ = exts.u16()?;
            let len = usize::from(exts.u16()?);
            let data = exts.take(len)?;
            match typ {
                SUPPORTED_VERSIONS => {
                    let mut d = Reader(data);
                    let n = usize::from(d.u8()?);
                    let list = d.take(n)?;
                    fields.supported_versions = Some(
                        list.chunks_exact(2)
                            .map(|v| u16::from_be_bytes([v[0], v[1]]))
                            .filter(|v| (0x0300..=TLS13).contains(v))
                            .collect(),
                    );
                }
                KEY_SHARE => fields.key_share = true,
                _ => {}
            }
        }
        Some(fields)
    }

    /// OpenSSL's order (`tls_early_post_process_client_hello`): the
    /// version first, then the SCSV, then the rest. A client offered no
    /// version at all has not fallen back from one: `protocol_version`
    /// (RFC 7507 section 3 names it beside `inappropriate_fallback`).
    fn verdict(&self) -> Step {
        let refuse = |alert, why: &str| Step::Refuse(alert, why.into());
        // 1. The version (OpenSSL's `ssl_choose_server_version`).
        if self.supported_versions.is_some() && self.legacy_version <= 0x0300 {
            return refuse(
                AlertDescription::ProtocolVersion,
                "the client's ClientHello gives SSL 3.0 or older as its legacy_version",
            );
        }
        // Without supported_versions a client gets TLS 1.2 at most, whatever
        // its legacy_version says (RFC 8446 section 4.2.1).
        let highest = match &self.supported_versions {
            Some(list) => list.iter().copied().max(),
            None => Some(self.legacy_version),
        };
        let Some(highest) = highest else {
            // Only versions nobody knows: rustls refuses them.
            return Step::ToRustls(None);
        };
        if highest < TLS12 {
            return refuse(
                AlertDescription::ProtocolVersion,
                "the client offers only TLS 1.1 or older",
            );
        }
        let offers_tls13 = self
            .supported_versions
            .as_ref()
            .is_some_and(|list| list.contains(&TLS13));
        // 2. The SCSV (`ssl_check_version_downgrade`): the version the
        // client gets is TLS 1.2, below our best. Before the suites are
        // looked at: a fallback hello of suites we do not serve is told
        // that it fell back.
        if self.fallback_scsv && !offers_tls13 {
            return refuse(
                AlertDescription::InappropriateFallback,
                "the client signals a fallback (TLS_FALLBACK_SCSV) below TLS 1.3, \
                 but TLS 1.3 is available",
            );
        }
        // 3. The rest, rustls' choice of a suite included.
        if offers_tls13 && !self.key_share {
            return refuse(
                AlertDescription::MissingExtension,
                "the client offers TLS 1.3 without a key_share extension",
            );
        }
        Step::ToRustls(Some(Hello { offers_tls13 }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello body: legacy_version, suites, extensions.
    fn body(legacy: u16, suites: &[u16], exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut b = legacy.to_be_bytes().to_vec();
        b.extend([0u8; 32]);
        b.push(0);
        b.extend(((suites.len() * 2) as u16).to_be_bytes());
        suites.iter().for_each(|s| b.extend(s.to_be_bytes()));
        b.extend([1, 0]);
        let mut e = Vec::new();
        for (typ, data) in exts {
            e.extend(typ.to_be_bytes());
            e.extend((data.len() as u16).to_be_bytes());
            e.extend(data);
        }
        b.extend((e.len() as u16).to_be_bytes());
        b.extend(e);
        b
    }

    fn versions(list: &[u16]) -> (u16, Vec<u8>) {
        let mut d = vec![(list.len() * 2) as u8];
        list.iter().for_each(|v| d.extend(v.to_be_bytes()));
        (SUPPORTED_VERSIONS, d)
    }

    fn key_share() -> (u16, Vec<u8>) {
        (KEY_SHARE, vec![0, 0])
    }

    fn message(body: &[u8]) -> Vec<u8> {
        let mut m = vec![CLIENT_HELLO, 0, (body.len() >> 8) as u8, body.len() as u8];
        m.extend(body);
        m
    }

    /// `message` in records of `size` bytes, an empty record after the
    /// third when `empty`, fed to an assembler in pieces of `feed` bytes.
    fn assemble(message: &[u8], size: usize, empty: bool, feed: usize) -> Step {
        let mut stream = Vec::new();
        for (i, chunk) in message.chunks(size).enumerate() {
            stream.extend([HANDSHAKE, 3, 1, 0, chunk.len() as u8]);
            stream.extend(chunk);
            if empty && i == 2 {
                stream.extend([HANDSHAKE, 3, 1, 0, 0]);
            }
        }
        let mut a = Assembler::default();
        let mut pending = Vec::new();
        for piece in stream.chunks(feed) {
            pending.extend(piece);
            let (n, step) = a.take(&pending);
            pending.drain(..n);
            if step != Step::More {
                return step;
            }
        }
        Step::More
    }

    fn alert(step: Step) -> Option<AlertDescription> {
        match step {
            Step::Refuse(alert, _) => Some(alert),
            _ => None,
        }
    }

    #[test]
    fn old_clients_are_told_apart_however_the_records_cut_the_hello() {
        let tls13 = message(&body(
            TLS12,
            &[0x1301],
            &[versions(&[TLS13, TLS12]), key_share()],
        ));
        let tls11 = message(&body(0x0302, &[0x002f], &[]));
        for size in [1, 2, 200] {
            for empty in [false, true] {
                for feed in [1, 7, 4096] {
                    let what = format!("records of {size}, empty {empty}, fed {feed}");
                    assert_eq!(
                        assemble(&tls13, size, empty, feed),
                        Step::ToRustls(Some(Hello { offers_tls13: true })),
                        "{what}"
                    );
                    assert_eq!(
                        alert(assemble(&tls11, size, empty, feed)),
                        Some(AlertDescription::ProtocolVersion),
                        "{what}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_engine_refuses_what_rustls_lets_through() {
        let cases = [
            (
                body(0x0300, &[0x1301], &[versions(&[TLS13]), key_share()]),
                AlertDescription::ProtocolVersion,
            ),
            (
                body(TLS12, &[0x1301], &[versions(&[TLS13, TLS12])]),
                AlertDescription::MissingExtension,
            ),
            (
                body(TLS12, &[0xc02b, FALLBACK_SCSV], &[versions(&[TLS12])]),
                AlertDescription::InappropriateFallback,
            ),
            (
                body(TLS12, &[0xc02b, FALLBACK_SCSV], &[]),
                AlertDescription::InappropriateFallback,
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(
                alert(assemble(&message(&body), 100, false, 4096)),
                Some(expected)
            );
        }
        // OpenSSL's order. The version first: TLS 1.1 (in legacy_version
        // or in supported_versions), SSL 3.0 beside supported_versions.
        for body in [
            body(0x0302, &[FALLBACK_SCSV, 0x002f], &[]),
            body(0x0302, &[FALLBACK_SCSV], &[]),
            body(TLS12, &[FALLBACK_SCSV], &[versions(&[0x0302, 0x0301])]),
            body(0x0300, &[FALLBACK_SCSV], &[versions(&[TLS12])]),
        ] {
            assert_eq!(
                alert(assemble(&message(&body), 100, false, 4096)),
                Some(AlertDescription::ProtocolVersion)
            );
        }
        // Then the SCSV, before the suites: suites we do not serve, or
        // none, a legacy_version of 0x0304 (TLS 1.2 at most without
        // supported_versions).
        for body in [
            body(TLS13, &[0x002f, FALLBACK_SCSV, 0x1301], &[]),
            body(TLS12, &[FALLBACK_SCSV], &[]),
            body(TLS12, &[FALLBACK_SCSV], &[versions(&[TLS12, 0x0302])]),
        ] {
            assert_eq!(
                alert(assemble(&message(&body), 100, false, 4096)),
                Some(AlertDescription::InappropriateFallback)
            );
        }
        let tls13_legacy = body(TLS13, &[0x002f, 0x1301], &[]);
        assert_eq!(
            assemble(&message(&tls13_legacy), 100, false, 4096),
            Step::ToRustls(Some(Hello {
                offers_tls13: false
            }))
        );
        // GREASE is no version; a TLS 1.2-only client without SCSV is fine.
        let grease = body(TLS12, &[0x1301], &[versions(&[0x0a0a, TLS13]), key_share()]);
        assert_eq!(
            assemble(&message(&grease), 100, false, 4096),
            Step::ToRustls(Some(Hello { offers_tls13: true }))
        );
        let tls12 = body(TLS12, &[0xc02b], &[]);
        assert_eq!(
            assemble(&message(&tls12), 100, false, 4096),
            Step::ToRustls(Some(Hello {
                offers_tls13: false
            }))
        );
    }

    #[test]
    fn records_are_judged_up_to_the_end_of_the_hello() {
        let mut a = Assembler::default();
        let mut huge = vec![HANDSHAKE, 3, 1, 0x40, 0x01];
        huge.resize(5 + 0x4001, 0);
        assert_eq!(
            alert(a.take(&huge).1),
            Some(AlertDescription::RecordOverflow)
        );

        let m = message(&body(TLS12, &[0x1301], &[versions(&[TLS13]), key_share()]));
        let mut stream = vec![HANDSHAKE, 3, 1, 0, 10];
        stream.extend(&m[..10]);
        stream.extend([23, 3, 3, 0, 1, 0]);
        let mut a = Assembler::default();
        assert_eq!(
            alert(a.take(&stream).1),
            Some(AlertDescription::UnexpectedMessage)
        );

        // Not a handshake record first, or not a ClientHello: rustls judges.
        assert_eq!(
            Assembler::default().take(b"GET / HTTP/1.0\r\n").1,
            Step::ToRustls(None)
        );
        let mut a = Assembler::default();
        assert_eq!(
            a.take(&[HANDSHAKE, 3, 1, 0, 4, 2, 0, 0, 0]).1,
            Step::ToRustls(None)
        );
        assert_eq!(a.raw.len(), 9);
    }

    #[test]
    fn a_whole_hello_leaves_what_follows_it() {
        let m = message(&body(TLS12, &[0x1301], &[versions(&[TLS13]), key_share()]));
        let mut stream = vec![HANDSHAKE, 3, 1, 0, m.len() as u8];
        stream.extend(&m);
        let hello_len = stream.len();
        stream.extend([20, 3, 3, 0, 1, 1]);
        let mut a = Assembler::default();
        let (n, step) = a.take(&stream);
        assert_eq!(n, hello_len);
        assert_eq!(step, Step::ToRustls(Some(Hello { offers_tls13: true })));
        assert_eq!(a.raw, stream[..hello_len]);
    }
}
