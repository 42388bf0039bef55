//! The notification block (spec section 5): what s6-tlsd turns into the
//! application's environment once the handshake is done.

use std::borrow::Cow;
use std::os::fd::{AsFd, OwnedFd};

use rustls::{CipherSuite, CommonState, ProtocolVersion};

use crate::error::Error;

/// s6-tlsd reads the block with one read(2) of this many bytes and dies
/// (exit 101, "SSL data too large") when it gets them all, so the block
/// must stay shorter. Everything but the subject is bounded by TLS itself
/// (a server name is at most 253 bytes, the hash 71): only the subject,
/// whose values have no length limit here (BearSSL's buffers hold 64 or 128
/// bytes each, and a longer value makes it `<invalid>`), can outgrow it.
/// It gets what the other strings leave; when that is not enough, it is
/// `<invalid>` as a whole, never cut: a cut subject could read as the whole
/// subject of another certificate, and the client, through the length of
/// the server name it sends, would choose where the cut falls.
pub const MAX_BLOCK: usize = 4096;

/// The facts of one established connection, as the block reports them.
pub struct Notification {
    pub protocol: Cow<'static, str>,
    pub cipher: Cow<'static, str>,
    pub server_name: Option<String>,
    /// The ALPN protocol negotiated, if any (always one of `TLS_ALPN`'s).
    pub alpn: Option<String>,
    /// `SHA256:<hex>` of the client's leaf certificate, and its subject
    /// (None when it has none of the attributes reported).
    pub peer: Option<(String, Option<String>)>,
    /// Resumed from a ticket (for the log only: the block is the same).
    pub resumed: bool,
}

impl Notification {
    /// `server_name`: the client's SNI, as rustls read it.
    pub fn of(conn: &CommonState, server_name: Option<&str>) -> Notification {
        Notification {
            protocol: conn
                .protocol_version()
                .map_or(Cow::Borrowed(""), protocol_name),
            cipher: conn
                .negotiated_cipher_suite()
                .map_or(Cow::Borrowed(""), |s| cipher_name(s.suite())),
            server_name: server_name.map(str::to_owned),
            alpn: conn
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            peer: conn
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| (crate::peer::cert_hash(leaf), crate::peer::subject(leaf))),
            resumed: conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
        }
    }

    /// `NAME=value\0` sets, a bare `NAME\0` unsets; one more `\0` ends it.
    /// Never [`MAX_BLOCK`] bytes or more: a subject that would make it so
    /// is written `<invalid>` (see there).
    pub fn block(&self) -> Vec<u8> {
        let subject = self.peer.as_ref().and_then(|p| p.1.as_deref());
        let out = self.render(subject);
        if out.len() < MAX_BLOCK || subject.is_none() {
            return out;
        }
        self.render(Some(crate::peer::INVALID))
    }

    fn render(&self, subject: Option<&str>) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        let mut put = |name: &str, value: Option<&str>| {
            out.extend_from_slice(name.as_bytes());
            if let Some(v) = value {
                out.push(b'=');
                out.extend_from_slice(v.as_bytes());
            }
            out.push(0);
        };
        put("SSL_PROTOCOL", Some(&self.protocol));
        put("SSL_CIPHER", Some(&self.cipher));
        put("SSL_TLS_SNI_SERVERNAME", self.server_name.as_deref());
        put(
            "SSL_PEER_CERT_HASH",
            self.peer.as_ref().map(|p| p.0.as_str()),
        );
        put("SSL_PEER_CERT_SUBJECT", subject);
        put("SSL_ALPN_PROTOCOL", self.alpn.as_deref());
        out.push(0);
        out
    }

    /// One line for the log: protocol, cipher, SNI, peer subject (in the
    /// log's form, log.rs). Lazy, so that nothing is formatted unless the
    /// line is printed.
    pub fn summary(&self) -> impl std::fmt::Display + '_ {
        Summary(self)
    }

    /// Writes the block to `fd` and closes it.
    pub fn send(&self, fd: OwnedFd) -> Result<(), Error> {
        write_all(fd.as_fd(), &self.block())
            .map_err(|e| Error::errno("write post-handshake data", e))
    }
}

struct Summary<'a>(&'a Notification);

impl std::fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0;
        write!(f, "{} {}", n.protocol, n.cipher)?;
        if let Some(name) = &n.server_name {
            write!(f, " sni={name}")?;
        }
        if let Some(alpn) = &n.alpn {
            write!(f, " alpn={alpn}")?;
        }
        if let Some((_, subject)) = &n.peer {
            let subject = subject.as_deref().unwrap_or("");
            write!(f, " peer=[{}]", crate::log::subject(subject))?;
        }
        if n.resumed {
            write!(f, " resumed")?;
        }
        Ok(())
    }
}

/// The descriptor may be non-blocking: wait for room instead of failing.
fn write_all(fd: std::os::fd::BorrowedFd, mut data: &[u8]) -> Result<(), nix::errno::Errno> {
    use nix::errno::Errno;
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                poll(
                    &mut [PollFd::new(fd, PollFlags::POLLOUT)],
                    PollTimeout::NONE,
                )?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub fn protocol_name(v: ProtocolVersion) -> Cow<'static, str> {
    match v {
        ProtocolVersion::TLSv1_2 => Cow::Borrowed("TLSv1.2"),
        ProtocolVersion::TLSv1_3 => Cow::Borrowed("TLSv1.3"),
        other => Cow::Owned(format!("{other:?}")),
    }
}

/// The OpenSSL names that both upstream backends print.
pub fn cipher_name(s: CipherSuite) -> Cow<'static, str> {
    use CipherSuite::*;
    Cow::Borrowed(match s {
        TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256",
        TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384",
        TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256",
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-ECDSA-CHACHA20-POLY1305",
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "ECDHE-RSA-AES128-GCM-SHA256",
        TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "ECDHE-RSA-AES256-GCM-SHA384",
        TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-RSA-CHACHA20-POLY1305",
        other => return Cow::Owned(format!("{other:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_suite_the_provider_can_negotiate_has_an_openssl_name() {
        for s in rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES {
            let name = cipher_name(s.suite());
            assert!(
                matches!(name, Cow::Borrowed(_)),
                "no OpenSSL name for {:?}",
                s.suite()
            );
        }
    }

    fn with_subject(subject: &str) -> Notification {
        Notification {
            protocol: "TLSv1.3".into(),
            cipher: "TLS_AES_256_GCM_SHA384".into(),
            server_name: Some("a".repeat(253)),
            alpn: Some("p".repeat(255)),
            peer: Some((crate::peer::cert_hash(b""), Some(subject.to_owned()))),
            resumed: false,
        }
    }

    fn subject_of(block: &[u8]) -> &[u8] {
        let at = block
            .windows(22)
            .position(|w| w == b"SSL_PEER_CERT_SUBJECT=")
            .expect("a subject")
            + 22;
        let len = block[at..].iter().position(|&b| b == 0).expect("a NUL");
        &block[at..at + len]
    }

    #[test]
    fn the_block_stays_under_s6_tlsds_read_whatever_the_subject() {
        let others = with_subject("").block().len();
        // The longest subject that fits is written whole...
        let room = MAX_BLOCK - 1 - others;
        let longest = "é".repeat(room / 2) + &"x".repeat(room % 2);
        let n = with_subject(&longest);
        assert_eq!(n.block().len(), MAX_BLOCK - 1);
        assert_eq!(subject_of(&n.block()), longest.as_bytes());
        // ...one byte more, and it is <invalid>, the rest as it was.
        let n = with_subject(&(longest + "x"));
        let block = n.block();
        assert_eq!(subject_of(&block), b"<invalid>");
        assert_eq!(block.len(), others + "<invalid>".len());
        for len in [5000, 65536] {
            assert!(with_subject(&"x".repeat(len)).block().len() < MAX_BLOCK);
        }
    }

    #[test]
    fn block_layout() {
        let n = Notification {
            protocol: "TLSv1.3".into(),
            cipher: "TLS_AES_256_GCM_SHA384".into(),
            server_name: None,
            alpn: None,
            peer: None,
            resumed: false,
        };
        assert_eq!(
            n.block(),
            b"SSL_PROTOCOL=TLSv1.3\0SSL_CIPHER=TLS_AES_256_GCM_SHA384\0SSL_TLS_SNI_SERVERNAME\0\
SSL_PEER_CERT_HASH\0SSL_PEER_CERT_SUBJECT\0SSL_ALPN_PROTOCOL\0\0"
        );
    }
}
