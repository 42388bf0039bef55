#!/usr/bin/python3
"""psk_modes.py PORT MODE: for tests/resume.rs, tlslite-ng connects twice to
127.0.0.1:PORT (SNI localhost, TLS 1.3): first for a ticket, then with it,
offering the PSK key exchange mode MODE only (psk_ke or psk_dhe_ke). Prints
one line a connection:

    full [GROUP]       a full handshake ((EC)DHE over GROUP)
    resumed [GROUP]    resumed from the ticket (with an (EC)DHE exchange
                       over GROUP, or none: "resumed none")

then reads until the server closes. Exit status 2 for a usage error, 1 if the
first connection brought no ticket.
"""

import socket
import sys

from tlslite.api import HandshakeSettings, TLSConnection
from tlslite.constants import GroupName


def connect(port, session, modes):
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    conn = TLSConnection(sock)
    settings = HandshakeSettings()
    settings.minVersion = (3, 4)
    settings.maxVersion = (3, 4)
    settings.psk_modes = modes
    conn.handshakeClientCert(serverName="localhost", session=session, settings=settings)
    group = GroupName.toStr(conn.ecdhCurve) if conn.ecdhCurve else "none"
    print("resumed" if conn.resumed else "full", group, flush=True)
    read_to_close(conn)
    return conn.session


def read_to_close(conn):
    """The tickets come after the handshake: reads until the server closes
    (tests/support/ticket_copies.py too)."""
    while True:
        try:
            if not conn.read():
                break
        except Exception:
            break


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in ("psk_ke", "psk_dhe_ke"):
        sys.stderr.write("usage: psk_modes.py PORT psk_ke|psk_dhe_ke\n")
        sys.exit(2)
    port = int(sys.argv[1])
    session = connect(port, None, ["psk_dhe_ke", "psk_ke"])
    if not session.tickets:
        print("no ticket", flush=True)
        sys.exit(1)
    connect(port, session, [sys.argv[2]])


if __name__ == "__main__":
    main()
