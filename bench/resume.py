#!/usr/bin/env python3
"""Session resumption across engine processes (issue 10), side by side in
one run: per connection, the engine's CPU (user+sys from wait4(2), exec and
start-up included) and the bytes it sends to the client (tcpi_bytes_received
of the client's socket, read once the echo is back), for

    full          no TLS_TICKET_KEYFILE: what every connection cost before
    full+ticket   TLS_TICKET_KEYFILE set, no session yet: a full handshake
                  that also reads the key file and sends a ticket
    resumed       the session of the previous connection (each resumed
                  connection brings the ticket of the next)

ECDSA P-256 and RSA 2048, TLS 1.3 (Python's ssl, i.e. OpenSSL 3, as the
client: X25519). The three cases are interleaved connection by connection,
so that they share the machine's state. Then the key file alone: the engine
exec'd with the key pair, and with or without TLS_TICKET_KEYFILE, on
descriptors that fail the fd check (exit 111 after every file is read):
the difference is the cost of reading the file.

    bench/resume.py [ENGINE]       (default: the release build; N from
                                    BENCH_CONNS, 200)

Prints a table; exits non-zero only if something breaks (a resumed
connection that did not resume, an engine that failed).
"""

import os
import select
import shutil
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import children  # bench/children.py: every child killed on any exit

TIMEOUT = 20.0
PAYLOAD = bytes(range(100))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Failure(Exception):
    pass


def release_binary():
    out = subprocess.run(
        ["cargo", "build", "--release", "--locked", "--message-format=json"],
        cwd=ROOT, check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        timeout=1800).stdout.decode()
    import json
    for line in out.splitlines():
        m = json.loads(line)
        if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "s6-tlsd-io" \
                and m.get("executable"):
            return m["executable"]
    raise Failure("cargo built no s6-tlsd-io")


def reap(pid):
    try:
        code, ru = children.reap(pid, TIMEOUT)
    except children.StillRunning:
        raise Failure("engine still running, killed")
    return code, (ru.ru_utime + ru.ru_stime) * 1000.0, ru.ru_minflt


def wait_readable(fd):
    if not select.select([fd], [], [], TIMEOUT)[0]:
        raise Failure("nothing after %ss" % TIMEOUT)


def read_exact(fd, n):
    out = b""
    while len(out) < n:
        wait_readable(fd)
        chunk = os.read(fd, n - len(out))
        if not chunk:
            raise Failure("EOF from the engine")
        out += chunk
    return out


def bytes_received(sock):
    # struct tcp_info: tcpi_bytes_received is the u64 at offset 128 (4.1+)
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 232)
    return struct.unpack_from("=Q", info, 128)[0]


def connection(engine, listener, env, ctx, session):
    """One connection to a new engine: handshake, 100 bytes echoed, the
    client closes, the app reads to EOF. (CPU ms, bytes sent by the engine,
    resumed?, the session to use next.)"""
    cli = socket.create_connection(listener.getsockname(), timeout=TIMEOUT)
    cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn, _ = listener.accept()
    nr, nw = os.pipe()
    fdr_r, app_w = os.pipe()
    app_r, fdw_w = os.pipe()
    p = subprocess.Popen([engine, "-d", str(nw), "--", str(fdr_r), str(fdw_w)],
                         stdin=conn, stdout=conn, stderr=subprocess.DEVNULL,
                         pass_fds=(nw, fdr_r, fdw_w), env=env)
    p.returncode = 0  # reaped here with wait4
    children.LIVE.add(p.pid)
    for fd in (nw, fdr_r, fdw_w):
        os.close(fd)
    conn.close()
    try:
        tls = ctx.wrap_socket(cli, server_hostname="localhost", session=session)
        tls.sendall(PAYLOAD)
        os.write(app_w, read_exact(app_r, len(PAYLOAD)))
        got = b""
        while len(got) < len(PAYLOAD):
            chunk = tls.recv(len(PAYLOAD) - len(got))
            if not chunk:
                raise Failure("EOF before the echo")
            got += chunk
        sent = bytes_received(tls)
        resumed = tls.session_reused
        session = tls.session
        tls.close()
        os.close(app_w)
        while True:
            wait_readable(app_r)
            if not os.read(app_r, 65536):
                break
    finally:
        for fd in (nr, app_r):
            os.close(fd)
        try:
            os.close(app_w)
        except OSError:
            pass
    code, cpu, faults = reap(p.pid)
    if code != 0:
        raise Failure("engine exited %d" % code)
    return (cpu, faults), sent, resumed, session


def keyfile_cost(engine, key, tickets, n):
    """CPU of an engine that reads every file, then stops at the fd check
    (fdr 7 is not open: exit 111): without, then with the ticket key file,
    interleaved."""
    base = {"PATH": "/usr/bin:/bin", "CERTFILE": key[0], "KEYFILE": key[1]}
    cases = {"without": base, "with": dict(base, TLS_TICKET_KEYFILE=tickets)}
    cpu = {k: [] for k in cases}
    for _ in range(n):
        for name, env in cases.items():
            p = subprocess.Popen([engine, "--", "7", "8"], env=env,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            p.returncode = 0
            children.LIVE.add(p.pid)
            code, ms, _ = reap(p.pid)
            if code != 111:
                raise Failure("key file cost: exit %d, not 111" % code)
            cpu[name].append(ms)
    return cpu


def main():
    engine = sys.argv[1] if len(sys.argv) > 1 else release_binary()
    n = int(os.environ.get("BENCH_CONNS", "200"))
    tmp = tempfile.mkdtemp(prefix="s6-tlsd-io-resume.")
    try:
        run(engine, n, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(engine, n, tmp):
    keys = {}
    for name, newkey in [("ecdsa-p256", ["-newkey", "ec", "-pkeyopt",
                                         "ec_paramgen_curve:P-256"]),
                         ("rsa-2048", ["-newkey", "rsa:2048"])]:
        cert, key = (os.path.join(tmp, name + ext) for ext in (".cert.pem", ".key.pem"))
        subprocess.run(["openssl", "req", "-x509", "-nodes", "-days", "2", "-subj",
                        "/CN=localhost", "-addext",
                        "subjectAltName=DNS:localhost,IP:127.0.0.1", *newkey,
                        "-keyout", key, "-out", cert], check=True,
                       stderr=subprocess.DEVNULL, timeout=120)
        keys[name] = (cert, key)
    tickets = os.path.join(tmp, "tickets")
    fd = os.open(tickets, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, os.urandom(64))
    os.close(fd)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    print("engine %s, %d connections per case, TLS 1.3, client OpenSSL %s"
          % (engine, n, ssl.OPENSSL_VERSION))
    print("%-11s %-12s %9s %9s %9s %11s %7s" % ("key", "case", "CPU med", "CPU p90",
                                                "CPU mean", "bytes sent", "faults"))
    medians = {}
    for kname, (cert, key) in keys.items():
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_verify_locations(cert)
        plain_env = {"PATH": "/usr/bin:/bin", "CERTFILE": cert, "KEYFILE": key}
        ticket_env = dict(plain_env, TLS_TICKET_KEYFILE=tickets)
        rows = {c: ([], [], []) for c in ("full", "full+ticket", "resumed")}
        session = None
        for _ in range(n):
            cpu, sent, resumed, _ = connection(engine, listener, plain_env, ctx, None)
            assert not resumed
            rows["full"][0].append(cpu[0])
            rows["full"][1].append(sent)
            rows["full"][2].append(cpu[1])
            cpu, sent, resumed, fresh = connection(engine, listener, ticket_env, ctx, None)
            assert not resumed
            rows["full+ticket"][0].append(cpu[0])
            rows["full+ticket"][1].append(sent)
            rows["full+ticket"][2].append(cpu[1])
            if session is None:
                session = fresh
            cpu, sent, resumed, session = connection(engine, listener, ticket_env, ctx,
                                                     session)
            if not resumed:
                raise Failure("%s: the session did not resume" % kname)
            rows["resumed"][0].append(cpu[0])
            rows["resumed"][1].append(sent)
            rows["resumed"][2].append(cpu[1])
        for case, (cpus, sent, faults) in rows.items():
            cpus.sort()
            med = statistics.median(cpus)
            medians[(kname, case)] = med
            print("%-11s %-12s %6.3f ms %6.3f ms %6.3f ms %11d %7d" % (
                kname, case, med, cpus[int(len(cpus) * 0.9)], statistics.mean(cpus),
                statistics.median(sent), statistics.median(faults)))
    # the start-up floor of each key: an engine that reads its files and
    # stops; with and without the ticket key file
    print()
    for kname, key in keys.items():
        cost = keyfile_cost(engine, key, tickets, n * 2)
        w, wo = statistics.median(cost["with"]), statistics.median(cost["without"])
        mw, mwo = statistics.mean(cost["with"]), statistics.mean(cost["without"])
        full, res = medians[(kname, "full")], medians[(kname, "resumed")]
        print("%-11s resumed / full: %.2fx (CPU, exec and start-up included); "
              "net of the start-up floor (%.3f ms): %.2fx" % (
                  kname, res / full, wo, (res - wo) / (full - wo)))
        print("%-11s key file read, at start-up (%d runs each): without %.3f ms, "
              "with %.3f ms (median); difference: median %+.4f ms, mean %+.4f ms"
              % (kname, len(cost["with"]), wo, w, w - wo, mw - mwo))
        print("%-11s full+ticket - full: %+.3f ms (median: the file, the ticketer, "
              "one ticket made, sealed and sent)" % (
                  kname, medians[(kname, "full+ticket")] - full))


if __name__ == "__main__":
    try:
        main()
    except Failure as e:
        print("bench/resume.py: %s" % e, file=sys.stderr)
        sys.exit(1)
