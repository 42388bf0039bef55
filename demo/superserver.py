#!/usr/bin/env python3
"""A toy super-server that plays s6-tcpserver + s6-tlsd for the demo.

    superserver.py BIN CERTFILE KEYFILE APP PORTFILE [PORT]

Listens on 127.0.0.1:PORT (0 = any free port, written to PORTFILE), and for
each connection does what s6-tlsd does: spawn the engine with the socket as
fd 0/1 and two pipes to the application, read the notification block once
the handshake is done, then start the application with those variables set.
"""

import os
import signal
import socket
import subprocess
import sys
import threading

BIN, CERT, KEY, APP, PORTFILE = sys.argv[1:6]
PORT = int(sys.argv[6]) if len(sys.argv) > 6 else 0
CHILDREN = set()  # killed when we are stopped


def log(msg):
    print(f"superserver: {msg}", file=sys.stderr, flush=True)


def serve(conn, peer):
    notif_r, notif_w = os.pipe()  # engine -> us: the notification block
    fdr, app_out = os.pipe()  # application stdout -> engine (its FDR)
    app_in, fdw = os.pipe()  # engine (its FDW) -> application stdin
    # s6-tlsd's argv: a 10 s handshake timeout, -d for the notification
    argv = [BIN, "-K", "10000", "-d", str(notif_w), "--", str(fdr), str(fdw)]
    env = dict(os.environ, CERTFILE=CERT, KEYFILE=KEY)
    engine = subprocess.Popen(argv, stdin=conn, stdout=conn, env=env,
                              pass_fds=(notif_w, fdr, fdw))
    CHILDREN.add(engine)
    conn.close()  # the engine has it now, as fd 0 and fd 1
    for fd in (notif_w, fdr, fdw):
        os.close(fd)
    log(f"{peer[0]}:{peer[1]}: {' '.join(argv)}")

    # The block arrives when the handshake is done, then the engine closes
    # the fd; nothing at all means the handshake failed.
    block = b""
    while chunk := os.read(notif_r, 4096):
        block += chunk
    os.close(notif_r)
    app = None
    if block:
        # "NAME=value" sets a variable, a bare "NAME" unsets it (s6-tlsd rules)
        app_env = dict(os.environ, PROTO="TCP", TCPREMOTEIP=peer[0],
                       TCPREMOTEPORT=str(peer[1]))
        for item in block.split(b"\0"):
            name, eq, value = item.decode().partition("=")
            if eq:
                app_env[name] = value
            elif name:
                app_env.pop(name, None)
        app = subprocess.Popen([APP], stdin=app_in, stdout=app_out, env=app_env)
        CHILDREN.add(app)
    os.close(app_in)
    os.close(app_out)
    status = f"engine exit {engine.wait()}"
    if app:
        status += f", app exit {app.wait()}"
    log(f"{peer[0]}:{peer[1]}: {status}")
    CHILDREN.difference_update({engine, app})


def stop(*_):
    for child in list(CHILDREN):
        child.kill()
    sys.exit(0)


def main():
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server = socket.create_server(("127.0.0.1", PORT))
    with open(PORTFILE + ".tmp", "w") as f:
        f.write(f"{server.getsockname()[1]}\n")
    os.rename(PORTFILE + ".tmp", PORTFILE)  # the port file appears whole
    while True:
        conn, peer = server.accept()
        threading.Thread(target=serve, args=(conn, peer), daemon=True).start()


if __name__ == "__main__":
    main()
