#!/usr/bin/python3
"""ticket_copies.py PORT CERT KEY: for tests/crl.rs, one captured ticket
offered many times in one ClientHello (issue 26).

First, tlslite-ng connects to 127.0.0.1:PORT (SNI localhost, TLS 1.3) with
the client certificate CERT and its key KEY (PEM), and keeps the ticket the
server sends; it prints "ticket SUITE", then waits for a line on its stdin
(the test revokes the certificate meanwhile).

Then it connects again with a ClientHello of its own that offers that one
ticket as many times as fit in 60 KiB, each copy a PSK identity of its own,
and only a cipher suite other than the ticket's: rustls resumes from no copy
(another suite), so it opens every one in turn, as it would a hundred
captured copies. Prints "copies N", then "answered" once the server's first
record comes (or "closed" if none does within 5 s), and closes.

Exit status 2 for a usage error, 1 if the first connection brought no ticket.
"""

import socket
import sys

from tlslite.api import HandshakeSettings, TLSConnection, X509CertChain, parsePEMKey
from tlslite.constants import CipherSuite, ContentType, PskKeyExchangeMode, SignatureScheme
from tlslite.extensions import PreSharedKeyExtension, PskIdentity, PskKeyExchangeModesExtension

from hostile import fragments, hello13, x25519_share
from psk_modes import read_to_close

SUITES = [
    CipherSuite.TLS_AES_128_GCM_SHA256,
    CipherSuite.TLS_AES_256_GCM_SHA384,
    CipherSuite.TLS_CHACHA20_POLY1305_SHA256,
]


def first(port, cert, key):
    """A full handshake with the client certificate: the ticket and its
    suite."""
    with open(cert) as f:
        chain = X509CertChain()
        chain.parsePemList(f.read())
    with open(key) as f:
        private = parsePEMKey(f.read(), private=True)
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    conn = TLSConnection(sock)
    settings = HandshakeSettings()
    settings.minVersion = (3, 4)
    settings.maxVersion = (3, 4)
    # tlslite-ng 0.8 sends its certificate compressed though rustls asked
    # for no compression (rustls then refuses it): plain, as others send it.
    settings.certificate_compression_send = []
    conn.handshakeClientCert(chain, private, serverName="localhost", settings=settings)
    read_to_close(conn)
    session = conn.session
    if not session.tickets:
        return None, None
    return session.tickets[0].ticket, session.cipherSuite


def copies_hello(ticket, suite):
    """A TLS 1.3 ClientHello offering `ticket` as often as fits in 60 KiB,
    and `suite` alone; its serialised handshake message."""
    # Each copy: its identity (2 + ticket + 4 bytes) and a binder (1 + 32).
    n = (60000 - 400) // (len(ticket) + 39)
    identities = [PskIdentity().create(bytearray(ticket), 0) for _ in range(n)]
    # Never checked: rustls checks a binder only for a ticket it resumes.
    binders = [bytearray(32) for _ in range(n)]
    hello = hello13(
        share=x25519_share()[1],
        suites=[suite],
        sigalgs=[SignatureScheme.ecdsa_secp256r1_sha256, SignatureScheme.rsa_pss_rsae_sha256],
        extra=[
            PskKeyExchangeModesExtension().create([PskKeyExchangeMode.psk_dhe_ke]),
            PreSharedKeyExtension().create(identities, binders),
        ],
    )
    return n, hello


def second(port, ticket, suite):
    n, hello = copies_hello(ticket, suite)
    print("copies", n, flush=True)
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    for rec in fragments(ContentType.handshake, hello, 16384):
        sock.sendall(rec)
    sock.settimeout(5)
    try:
        print("answered" if sock.recv(5) else "closed", flush=True)
    except OSError:
        print("closed", flush=True)
    sock.close()


def main():
    if len(sys.argv) != 4:
        sys.stderr.write("usage: ticket_copies.py PORT CERT KEY\n")
        sys.exit(2)
    port = int(sys.argv[1])
    ticket, suite = first(port, sys.argv[2], sys.argv[3])
    if ticket is None:
        print("no ticket", flush=True)
        sys.exit(1)
    print("ticket", CipherSuite.ietfNames.get(suite, suite), flush=True)
    sys.stdin.readline()
    second(port, ticket, next(s for s in SUITES if s != suite))


main()
