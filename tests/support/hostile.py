#!/usr/bin/python3
"""hostile.py CASE [HOST PORT]: a TLS client no one here wrote, for
tests/hostile.rs.

Plays one malformed or unusual handshake (CASE, see CASES below) against a
TLS server: on the socket that is its stdin (fd 0) when no HOST and PORT are
given, as tests/hostile.rs runs it, else on a TCP connection to HOST PORT.
The messages are tlslite-ng's (ClientHello, extensions, Finished, KeyUpdate,
the TLS 1.3 key schedule and AEAD); the records around them are framed here,
byte by byte, so that a case can cut, interleave or oversize them.

Prints what happened, one event a line, until the server closes the
connection (or, where the server should have refused the hello, until its
flight is complete and it waits for the client's):

    serverhello                   a ServerHello (in the clear)
    serverhellodone               a TLS 1.2 ServerHelloDone (in the clear)
    server finished               the server's TLS 1.3 Finished, verified
    handshake done                our Finished sent
    alert: LEVEL DESCRIPTION      an alert in the clear
    encrypted alert: LEVEL DESC   an alert under the server's keys
    undecryptable record          a record we hold no key for
    bad server finished           a Finished that does not verify
    closed                        the server closed the connection (FIN or
                                  RST: an engine that fails abandons it)
    timeout                       nothing for 3 s (the server hangs)

Exit status 0 whatever the server did; 2 for a usage error.
"""

import hashlib
import os
import socket
import sys

from tlslite.constants import (
    TLS_1_3_HRR,
    AlertDescription,
    AlertLevel,
    CipherSuite,
    ContentType,
    ExtensionType,
    GroupName,
    HandshakeType,
    SignatureScheme,
)
from tlslite.extensions import (
    ALPNExtension,
    ClientKeyShareExtension,
    ECPointFormatsExtension,
    KeyShareEntry,
    PaddingExtension,
    RenegotiationInfoExtension,
    SignatureAlgorithmsExtension,
    SNIExtension,
    SupportedGroupsExtension,
    SupportedVersionsExtension,
    TLSExtension,
)
from tlslite.messages import ClientHello, Finished, KeyUpdate, ServerHello
from tlslite.utils.cipherfactory import createAESGCM
from tlslite.utils.codec import Parser
from tlslite.utils.cryptomath import HKDF_expand_label, secureHMAC
from tlslite.utils.x25519 import X25519_G, x25519

TLS13 = (3, 4)
TLS12 = (3, 3)
TLS11 = (3, 2)
HASH = "sha256"
FALLBACK_SCSV = 0x5600
READ_TIMEOUT = 3.0


# ------------------------------------------------------------------ records


def record(ctype, payload, version=b"\x03\x01"):
    """One TLS record, framed by hand: any length, any type."""
    payload = bytes(payload)
    return bytes([ctype]) + version + len(payload).to_bytes(2, "big") + payload


def fragments(ctype, data, size):
    """`data` cut into records of `size` bytes."""
    return [record(ctype, data[i:i + size]) for i in range(0, len(data), size)]


class Keys:
    """One direction's TLS 1.3 traffic keys (AES-128-GCM) and sequence."""

    def __init__(self, secret):
        self.secret = secret
        key = HKDF_expand_label(secret, bytearray(b"key"), bytearray(), 16, HASH)
        self.iv = HKDF_expand_label(secret, bytearray(b"iv"), bytearray(), 12, HASH)
        self.aead = createAESGCM(key)
        self.seq = 0

    def nonce(self):
        seq = self.seq.to_bytes(12, "big")
        self.seq += 1
        return bytearray(a ^ b for a, b in zip(self.iv, seq))

    def seal(self, ctype, content, padding=0, inner=None):
        """An encrypted record; `inner` replaces the TLSInnerPlaintext."""
        if inner is None:
            inner = bytes(content) + bytes([ctype]) + bytes(padding)
        length = len(inner) + 16
        header = bytes([ContentType.application_data, 3, 3]) + length.to_bytes(2, "big")
        sealed = self.aead.seal(self.nonce(), bytearray(inner), bytearray(header))
        return header + bytes(sealed)

    def open(self, header, body):
        """(inner type, content) of a record, or None when it does not open."""
        plain = self.aead.open(self.nonce(), bytearray(body), bytearray(header))
        if plain is None:
            return None
        plain = bytes(plain).rstrip(b"\x00")
        if not plain:
            return (0, b"")
        return (plain[-1], plain[:-1])


# ------------------------------------------------------------------ hellos


def x25519_share():
    private = bytearray(os.urandom(32))
    public = x25519(private, X25519_G)
    return private, KeyShareEntry().create(GroupName.x25519, public)


SIGALGS = [
    SignatureScheme.ecdsa_secp256r1_sha256,
    SignatureScheme.ecdsa_secp384r1_sha384,
    SignatureScheme.ed25519,
    SignatureScheme.rsa_pss_rsae_sha256,
    SignatureScheme.rsa_pss_rsae_sha384,
    SignatureScheme.rsa_pkcs1_sha256,
]


def hello13(
    share=None,
    key_share=True,
    legacy_version=TLS12,
    versions=(TLS13,),
    suites=(CipherSuite.TLS_AES_128_GCM_SHA256,),
    sigalgs=SIGALGS,
    extra=(),
    groups=(GroupName.x25519,),
):
    """A TLS 1.3 ClientHello offering x25519 only (unless `groups` says
    otherwise), so that no HelloRetryRequest comes; its serialised
    handshake message."""
    exts = [
        SNIExtension().create(bytearray(b"localhost")),
        SupportedGroupsExtension().create(list(groups)),
        SignatureAlgorithmsExtension().create(list(sigalgs)),
    ]
    if versions is not None:
        exts.insert(1, SupportedVersionsExtension().create(list(versions)))
    if key_share:
        exts.append(ClientKeyShareExtension().create([share]))
    exts.extend(extra)
    ch = ClientHello().create(
        legacy_version, bytearray(os.urandom(32)), bytearray(0), list(suites), extensions=exts
    )
    return bytes(ch.write())


def hello_old(version, suites=None):
    """A ClientHello as a client that knows nothing newer than `version`
    sends it (as `openssl s_client -tls1_1` does): no supported_versions, no
    signature_algorithms (TLS 1.1 has none), CBC suites."""
    if suites is None:
        suites = [
            CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
            CipherSuite.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
            CipherSuite.TLS_RSA_WITH_AES_128_CBC_SHA,
        ]
    exts = [
        SNIExtension().create(bytearray(b"localhost")),
        SupportedGroupsExtension().create([GroupName.x25519, GroupName.secp256r1]),
        ECPointFormatsExtension().create([0]),
        RenegotiationInfoExtension().create(bytearray(0)),
    ]
    if version >= TLS12:
        exts.append(SignatureAlgorithmsExtension().create(list(SIGALGS)))
    ch = ClientHello().create(
        version, bytearray(os.urandom(32)), bytearray(0), suites, extensions=exts
    )
    return bytes(ch.write())


def padded_to(total, **kw):
    """A TLS 1.3 ClientHello of exactly `total` bytes, padding extension
    included (RFC 7685), and its key share's private key."""
    private, share = x25519_share()
    bare = hello13(share=share, **kw)
    pad = total - len(bare) - 4
    assert pad >= 0, "hello already longer than asked"
    ext = PaddingExtension().create(pad)
    return private, hello13(share=share, extra=[ext], **kw)


def split_with_empty(msg, size, empty_after=None):
    """`msg` in handshake records of `size` bytes; an empty handshake record
    once `empty_after` bytes of it are sent (after the version field)."""
    out = []
    for i in range(0, len(msg), size):
        if empty_after is not None and i == empty_after:
            out.append(record(ContentType.handshake, b""))
        out.append(record(ContentType.handshake, msg[i:i + size]))
    return out


# ------------------------------------------------------------------ the client


class Client:
    def __init__(self, sock):
        self.sock = sock
        self.sock.settimeout(READ_TIMEOUT)
        self.buf = b""
        self.transcript = b""
        self.private = None
        self.server_keys = None
        self.client_hs = None
        self.client_ap = None
        self.hs_buf = b""
        self.flight_in = False
        self.hrr = None

    def send(self, *records):
        try:
            self.sock.sendall(b"".join(records))
        except OSError:
            pass  # the server has gone: what it sent still gets read

    def say(self, event):
        print(event, flush=True)

    # ---- reading

    def read_record(self):
        """(header, body) of the server's next record; 'closed' or 'timeout'."""
        while len(self.buf) < 5 or len(self.buf) < 5 + int.from_bytes(self.buf[3:5], "big"):
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return "timeout"
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return "closed"
            self.buf += chunk
        n = 5 + int.from_bytes(self.buf[3:5], "big")
        rec, self.buf = self.buf[:n], self.buf[n:]
        return rec[:5], rec[5:]

    def pump(self, flight=False):
        """Reads and reports the server's records until it closes (True) or,
        with `flight`, until its flight is complete and it waits for ours
        (False): its TLS 1.3 Finished, its TLS 1.2 ServerHelloDone."""
        self.flight_in = False
        while True:
            rec = self.read_record()
            if isinstance(rec, str):
                self.say(rec)
                return True
            self.on_record(*rec)
            if flight and self.flight_in:
                return False

    def on_record(self, header, body):
        ctype = header[0]
        if ctype == ContentType.alert:
            self.say("alert: " + describe_alert(body))
        elif ctype == ContentType.change_cipher_spec:
            pass
        elif ctype == ContentType.handshake:
            self.on_handshake_bytes(body, encrypted=False)
        elif ctype == ContentType.application_data and self.server_keys is not None:
            opened = self.server_keys.open(header, body)
            if opened is None:
                self.say("undecryptable record")
                return
            inner, content = opened
            if inner == ContentType.alert:
                self.say("encrypted alert: " + describe_alert(content))
            elif inner == ContentType.handshake:
                self.on_handshake_bytes(content, encrypted=True)
            else:
                self.say("encrypted record of type %d" % inner)
        else:
            self.say("record of type %d" % ctype)

    def on_handshake_bytes(self, data, encrypted):
        self.hs_buf += data
        while len(self.hs_buf) >= 4:
            n = 4 + int.from_bytes(self.hs_buf[1:4], "big")
            if len(self.hs_buf) < n:
                return
            msg, self.hs_buf = self.hs_buf[:n], self.hs_buf[n:]
            self.on_handshake(msg, encrypted)

    def on_handshake(self, msg, encrypted):
        kind = msg[0]
        if kind == HandshakeType.server_hello and not encrypted:
            sh = ServerHello().parse(Parser(bytearray(msg[1:])))
            if sh.random == TLS_1_3_HRR:
                # A HelloRetryRequest: the case sends its second hello.
                self.say("helloretryrequest")
                self.hrr = msg
                self.flight_in = True
                return
            self.say("serverhello")
            self.transcript += msg
            share = sh.getExtension(ExtensionType.key_share)
            if self.private is not None and share is not None and share.server_share:
                shared = x25519(self.private, share.server_share.key_exchange)
                self.handshake_keys(bytearray(shared))
        elif kind == HandshakeType.finished and encrypted and self.client_hs is not None:
            expected = finished_mac(self.server_keys.secret, self.transcript)
            if msg[4:] != expected:
                self.say("bad server finished")
                return
            self.transcript += msg
            self.application_secrets()
            self.server_keys = Keys(self.s_ap)
            self.flight_in = True
            self.say("server finished")
        elif encrypted:
            if self.client_hs is not None and self.client_ap is None:
                self.transcript += msg
            # After the handshake: NewSessionTicket, KeyUpdate; ignored.
        elif kind == HandshakeType.server_hello_done:
            self.say("serverhellodone")
            self.flight_in = True
        else:
            self.transcript += msg

    # ---- the key schedule (RFC 8446 section 7.1)

    def hash(self):
        return bytearray(hashlib.sha256(self.transcript).digest())

    def handshake_keys(self, shared):
        zero = bytearray(32)
        early = secureHMAC(zero, zero, HASH)
        empty = bytearray(hashlib.sha256(b"").digest())
        derived = HKDF_expand_label(early, bytearray(b"derived"), empty, 32, HASH)
        hs = secureHMAC(derived, shared, HASH)
        h = self.hash()
        c_hs = HKDF_expand_label(hs, bytearray(b"c hs traffic"), h, 32, HASH)
        s_hs = HKDF_expand_label(hs, bytearray(b"s hs traffic"), h, 32, HASH)
        derived = HKDF_expand_label(hs, bytearray(b"derived"), empty, 32, HASH)
        self.master = secureHMAC(derived, zero, HASH)
        self.client_hs = Keys(c_hs)
        self.server_keys = Keys(s_hs)

    def application_secrets(self):
        h = self.hash()
        self.c_ap = HKDF_expand_label(self.master, bytearray(b"c ap traffic"), h, 32, HASH)
        self.s_ap = HKDF_expand_label(self.master, bytearray(b"s ap traffic"), h, 32, HASH)

    # ---- whole handshakes

    def start(self, hello_records, hello, private):
        self.transcript = hello
        self.private = private
        self.send(*hello_records)

    def finished(self, verify_data=None):
        """Our Finished message (the right one unless `verify_data`)."""
        if verify_data is None:
            verify_data = finished_mac(self.client_hs.secret, self.transcript)
        return bytes(Finished(TLS13, 32).create(bytearray(verify_data)).write())

    def handshake(self, hello=None, private=None):
        """A whole TLS 1.3 handshake; False (and the server's answer
        reported) when the server ended it instead."""
        if hello is None:
            private, share = x25519_share()
            hello = hello13(share=share)
        if self.to_server_flight([record(ContentType.handshake, hello)], hello, private):
            return False
        self.send(self.client_hs.seal(ContentType.handshake, self.finished()))
        self.client_ap = Keys(self.c_ap)
        self.say("handshake done")
        return True

    def to_server_flight(self, hello_records, hello, private):
        """Sends the hello, reads the server's flight up to its Finished;
        True when the server closed the connection instead."""
        self.start(hello_records, hello, private)
        return self.pump(flight=True)


def finished_mac(secret, transcript):
    key = HKDF_expand_label(secret, bytearray(b"finished"), bytearray(), 32, HASH)
    return bytes(secureHMAC(key, bytearray(hashlib.sha256(transcript).digest()), HASH))


def describe_alert(body):
    if len(body) != 2:
        return "malformed (%d bytes)" % len(body)
    level = AlertLevel.toStr(body[0]) or str(body[0])
    desc = AlertDescription.toStr(body[1]) or str(body[1])
    return "%s %s" % (level, desc)


# ------------------------------------------------------------------ the cases


def refused_hello(c, hello_records, hello, private=None):
    """Sends a ClientHello the server must refuse; reports its answer up to
    its close, or up to the end of its flight when it answers instead."""
    c.start(hello_records, hello, private)
    c.pump(flight=True)


def one_record(hello):
    return [record(ContentType.handshake, hello)]


def close(c):
    """The end of a good connection: our close_notify, then the server's
    answer up to its close."""
    c.send(c.client_ap.seal(ContentType.alert, bytes([AlertLevel.warning, 0])))
    c.pump()


def case_old_client(c, which, size, empty):
    # The empty record comes once type, length and version (6 bytes) are
    # in. Without one, the TLS 1.3 hello carries a supported_versions list
    # of odd length (3 bytes), which no parser takes: a decode error.
    after = 6 if empty else None
    if which == "tls11":
        hello = hello_old(TLS11)
    elif empty:
        hello = hello13(share=x25519_share()[1])
    else:
        bad = TLSExtension(extType=ExtensionType.supported_versions).create(
            bytearray(b"\x03\x03\x04\x03")
        )
        hello = hello13(share=x25519_share()[1], versions=None, extra=[bad])
    refused_hello(c, split_with_empty(hello, size, after), hello)


def case_huge_hello_record(c):
    # One record of 2^14 + 1 bytes holding the whole ClientHello.
    private, hello = padded_to(2**14 + 1)
    refused_hello(c, one_record(hello), hello, private)


def case_huge_hello_record_second(c):
    # The hello's first 100 bytes in a normal record, the rest (2^14 + 1
    # bytes, padding mostly) in an oversized one.
    private, hello = padded_to(2**14 + 101)
    recs = [record(ContentType.handshake, hello[:100]), record(ContentType.handshake, hello[100:])]
    refused_hello(c, recs, hello, private)


def case_max_hello_record(c):
    # 2^14 bytes exactly: legal, the handshake goes on.
    private, hello = padded_to(2**14)
    if c.handshake(hello, private):
        close(c)


def case_ssl3_legacy_version(c):
    private, share = x25519_share()
    hello = hello13(share=share, legacy_version=(3, 0), versions=(TLS13, TLS12))
    refused_hello(c, one_record(hello), hello, private)


def case_no_key_share(c):
    hello = hello13(key_share=False)
    refused_hello(c, one_record(hello), hello)


def case_no_fitting_sigalg(c):
    # Our key is ECDSA P-256; the client takes RSA signatures only.
    private, share = x25519_share()
    rsa = [SignatureScheme.rsa_pss_rsae_sha256, SignatureScheme.rsa_pkcs1_sha256]
    hello = hello13(share=share, sigalgs=rsa)
    refused_hello(c, one_record(hello), hello, private)


def case_interleaved(c, ctype, body):
    private, share = x25519_share()
    hello = hello13(share=share)
    half = len(hello) // 2
    recs = [
        record(ContentType.handshake, hello[:half]),
        record(ctype, body),
        record(ContentType.handshake, hello[half:]),
    ]
    refused_hello(c, recs, hello, private)


def case_fallback_scsv(c):
    suites = [
        CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        CipherSuite.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        FALLBACK_SCSV,
    ]
    hello = hello_old(TLS12, suites=suites)
    refused_hello(c, one_record(hello), hello)


def tlsfuzzer_hello(version, fallback_at=None):
    """The ClientHello of tlsfuzzer's test-fallback-scsv.py: no extensions,
    the renegotiation SCSV, a suite we do not serve (RSA key exchange, CBC)
    and a TLS 1.3 suite, which a hello without supported_versions cannot
    use; TLS_FALLBACK_SCSV at `fallback_at` when given (0 first, 1 and 2
    in the middle, 3 last), or as the only suite when "alone"."""
    suites = [
        CipherSuite.TLS_EMPTY_RENEGOTIATION_INFO_SCSV,
        CipherSuite.TLS_RSA_WITH_AES_128_CBC_SHA,
        CipherSuite.TLS_AES_128_GCM_SHA256,
    ]
    if fallback_at == "alone":
        suites = [FALLBACK_SCSV]
    elif fallback_at is not None:
        suites.insert(fallback_at, FALLBACK_SCSV)
    ch = ClientHello().create(version, bytearray(os.urandom(32)), bytearray(0), suites)
    return bytes(ch.write())


def case_fallback_unserved(c, version, place, record_version=b"\x03\x01"):
    # tlsfuzzer's "FALLBACK - hello ..." probes (and, with `record_version`
    # the hello's own, its "FALLBACK - record ... hello ..." ones): a
    # version we serve, then the SCSV, then the suites.
    hello = tlsfuzzer_hello(version, place)
    refused_hello(c, [record(ContentType.handshake, hello, record_version)], hello)


def case_unserved_without_fallback(c, version):
    # The same hellos without the SCSV: nothing we serve.
    hello = tlsfuzzer_hello(version)
    refused_hello(c, one_record(hello), hello)


def alpn(names):
    return ALPNExtension().create([bytearray(n) for n in names])


def case_alpn_after_retry(c, second):
    # The first hello offers ALPN h2, the groups x25519 then secp256r1, and
    # a share for secp256r1 only (never used, so any bytes do): the server
    # takes the client's first group it knows, x25519, and asks for it in
    # a HelloRetryRequest. The second hello brings that share, and the ALPN
    # names `second` (None: no ALPN extension at all).
    groups = (GroupName.x25519, GroupName.secp256r1)
    p256 = KeyShareEntry().create(GroupName.secp256r1, bytearray(b"\x04" + os.urandom(64)))
    first = hello13(share=p256, groups=groups, extra=[alpn([b"h2"])])
    c.start(one_record(first), first, None)
    if c.pump(flight=True) or c.hrr is None:
        return
    private, share = x25519_share()
    extra = [] if second is None else [alpn(second)]
    hello = hello13(share=share, groups=groups, extra=extra)
    # RFC 8446 section 4.4.1: the first hello enters the transcript as its
    # hash, in a message_hash message.
    digest = hashlib.sha256(first).digest()
    c.transcript = bytes([HandshakeType.message_hash, 0, 0, len(digest)]) + digest + c.hrr + hello
    c.private = private
    c.send(record(ContentType.change_cipher_spec, b"\x01"), record(ContentType.handshake, hello))
    if c.pump(flight=True):
        return
    c.send(c.client_hs.seal(ContentType.handshake, c.finished()))
    c.client_ap = Keys(c.c_ap)
    c.say("handshake done")
    close(c)


def case_fallback_scsv_at_our_best(c):
    # The SCSV from a client whose highest version is ours: no fallback, the
    # handshake goes on (RFC 7507 section 3).
    private, share = x25519_share()
    suites = [CipherSuite.TLS_AES_128_GCM_SHA256, FALLBACK_SCSV]
    if c.handshake(hello13(share=share, suites=suites), private):
        close(c)


# ---- after the ServerHello: rustls decides


def case_oversized_ciphertext(c):
    # RFC 8446 section 5.2: at most 2^14 + 256 bytes of ciphertext.
    if c.handshake():
        body = os.urandom(2**14 + 256 + 1)
        c.send(record(ContentType.application_data, body, b"\x03\x03"))
        c.pump()


def case_short_finished(c):
    private, share = x25519_share()
    hello = hello13(share=share)
    if not c.to_server_flight(one_record(hello), hello, private):
        good = finished_mac(c.client_hs.secret, c.transcript)
        c.send(c.client_hs.seal(ContentType.handshake, c.finished(good[:31])))
        c.pump()


def case_empty_alert(c):
    if c.handshake():
        c.send(c.client_ap.seal(ContentType.alert, b""))
        c.pump()


def case_zero_inner_type(c):
    if c.handshake():
        c.send(c.client_ap.seal(0, b"", inner=bytes(16)))
        c.pump()


def case_fragmented_keyupdate(c):
    if c.handshake():
        ku = bytes(KeyUpdate().create(0).write())
        c.send(
            c.client_ap.seal(ContentType.handshake, ku[:2]),
            c.client_ap.seal(ContentType.application_data, b"x"),
            c.client_ap.seal(ContentType.handshake, ku[2:]),
        )
        c.pump()


def case_plaintext_finished(c):
    private, share = x25519_share()
    hello = hello13(share=share)
    if not c.to_server_flight(one_record(hello), hello, private):
        c.send(record(ContentType.handshake, c.finished(), b"\x03\x03"))
        c.pump()


def case_huge_client_hello_message(c):
    # A ClientHello message of 64 KiB + 1 byte (padding mostly), in records
    # of 2^14 bytes (each legal), all of it sent.
    private, hello = padded_to(2**16 + 1)
    refused_hello(c, fragments(ContentType.handshake, hello, 2**14), hello, private)


def case_huge_handshake_message(c):
    # After the server's flight, a Finished that says it is 64 KiB + 1
    # bytes long: its first 2^14 - 1 bytes (one full record).
    private, share = x25519_share()
    hello = hello13(share=share)
    if not c.to_server_flight(one_record(hello), hello, private):
        n = 2**16 + 1
        head = bytes([HandshakeType.finished]) + n.to_bytes(3, "big")
        chunk = head + bytes(2**14 - 1 - len(head))
        c.send(c.client_hs.seal(ContentType.handshake, chunk))
        c.pump()


def case_early_data(c, total, size=2**14):
    # early_data offered (no PSK: the server must reject it), then `total`
    # bytes of 0-RTT application data (which no one can decrypt) in records
    # of at most `size` bytes, then the handshake as usual.
    private, share = x25519_share()
    ask = TLSExtension(extType=ExtensionType.early_data).create(bytearray())
    hello = hello13(share=share, extra=[ask])
    early = []
    left = total
    while left > 0:
        n = min(size, left)
        early.append(record(ContentType.application_data, os.urandom(n), b"\x03\x03"))
        left -= n
    if c.to_server_flight(one_record(hello) + early, hello, private):
        return
    c.send(c.client_hs.seal(ContentType.handshake, c.finished()))
    c.client_ap = Keys(c.c_ap)
    c.say("handshake done")
    close(c)


CASES = {
    # Section 1: the old-client check.
    "tls13-whole": lambda c: case_old_client(c, "tls13", 2**14, False),
    "tls13-1byte": lambda c: case_old_client(c, "tls13", 1, False),
    "tls13-2byte": lambda c: case_old_client(c, "tls13", 2, False),
    "tls13-1byte-empty": lambda c: case_old_client(c, "tls13", 1, True),
    "tls13-2byte-empty": lambda c: case_old_client(c, "tls13", 2, True),
    "tls11-whole": lambda c: case_old_client(c, "tls11", 2**14, False),
    "tls11-1byte": lambda c: case_old_client(c, "tls11", 1, False),
    "tls11-2byte": lambda c: case_old_client(c, "tls11", 2, False),
    "tls11-1byte-empty": lambda c: case_old_client(c, "tls11", 1, True),
    "tls11-2byte-empty": lambda c: case_old_client(c, "tls11", 2, True),
    # Section 2: before the ServerHello, the engine decides.
    "huge-hello-record": case_huge_hello_record,
    "huge-hello-record-second": case_huge_hello_record_second,
    "max-hello-record": case_max_hello_record,
    "ssl3-legacy-version": case_ssl3_legacy_version,
    "no-key-share": case_no_key_share,
    "no-fitting-sigalg": case_no_fitting_sigalg,
    "interleaved-ccs": lambda c: case_interleaved(c, ContentType.change_cipher_spec, b"\x01"),
    "interleaved-alert": lambda c: case_interleaved(
        c, ContentType.alert, bytes([AlertLevel.warning, AlertDescription.user_canceled])
    ),
    "interleaved-appdata": lambda c: case_interleaved(c, ContentType.application_data, b"x"),
    "fallback-scsv": case_fallback_scsv,
    "fallback-scsv-tls13": case_fallback_scsv_at_our_best,
    "alpn-after-retry-kept": lambda c: case_alpn_after_retry(c, [b"h2"]),
    "alpn-after-retry-dropped": lambda c: case_alpn_after_retry(c, None),
    "alpn-after-retry-changed": lambda c: case_alpn_after_retry(c, [b"imap"]),
    "unserved-tls12": lambda c: case_unserved_without_fallback(c, TLS12),
    "unserved-ssl34": lambda c: case_unserved_without_fallback(c, TLS13),
    # tlsfuzzer's test-fallback-scsv.py: the SCSV at each place, or alone.
    **{
        "fallback-unserved-%s-%s" % (name, place): (
            lambda c, v=version, p=place: case_fallback_unserved(c, v, p)
        )
        for name, version in (("tls11", TLS11), ("tls12", TLS12), ("ssl34", TLS13))
        for place in (0, 1, 2, 3, "alone")
    },
    **{
        "fallback-record-tls11-%s" % place: (
            lambda c, p=place: case_fallback_unserved(c, TLS11, p, b"\x03\x02")
        )
        for place in (0, 1, 2, 3, "alone")
    },
    # Section 3: after the ServerHello, rustls decides.
    "oversized-ciphertext": case_oversized_ciphertext,
    "short-finished": case_short_finished,
    "empty-alert": case_empty_alert,
    "zero-inner-type": case_zero_inner_type,
    "fragmented-keyupdate": case_fragmented_keyupdate,
    "plaintext-finished": case_plaintext_finished,
    "huge-client-hello": case_huge_client_hello_message,
    "huge-handshake-message": case_huge_handshake_message,
    "early-data-8192": lambda c: case_early_data(c, 8192),
    "early-data-8193": lambda c: case_early_data(c, 8193),
}


def main(argv):
    if len(argv) not in (2, 4) or argv[1] not in CASES:
        sys.stderr.write(
            "usage: hostile.py CASE [HOST PORT]\ncases: %s\n" % " ".join(sorted(CASES))
        )
        return 2
    if len(argv) == 4:
        sock = socket.create_connection((argv[2], int(argv[3])), timeout=READ_TIMEOUT)
    else:
        sock = socket.socket(fileno=os.dup(0))
    CASES[argv[1]](Client(sock))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
