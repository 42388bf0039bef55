#!/usr/bin/env python3
"""Bulk CPU of two or more engines, interleaved, user and system time apart.

    bench/bulk_ab.py ENGINE ENGINE... [--reps N] [--mib M] [--cipher S]

bench/run gives one figure per engine, user+sys; on these 2-core machines
the kernel's share (loopback TCP work charged to whichever process happens
to run it) swings by 2x from run to run and can hide a change in our own
code. This runs M MiB (256) one way per connection over TCP loopback, in
each direction, N times (6) per engine, alternating engines, and prints
the median user and system CPU seconds per GiB of each. The user figure is
the engine's code (TLS records, the cipher, copies). The engines run on
one CPU and this driver on another (see DRIVER_CPU).

An engine named `plain_relay` (examples/plain_relay.rs) gets a plain TCP
client; the others a TLS 1.3 client (Python's ssl, the default suite) and
a generated ECDSA P-256 key (OPENSSL_CONF can force the client's suite, as
bench/run does for AES-128-GCM). With `--cipher S` (the cipher's own cost in
s/GiB, from `openssl speed`) and a plain relay among the engines, it also
checks the performance issue's bound: each engine's total per direction
<= 1.3 x the plain relay's + S. Exit 1 if an engine is over it. Every
wait is bounded; nothing is left running.
"""

import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

TIMEOUT = 60.0
CHUNK = bytes(256 << 10)
suites = set()  # what the TLS connections negotiated, for the report
# The engine on one CPU, this driver (client and application) on another:
# left to the scheduler, the kernel's loopback work landed in either
# process from run to run, and the plain relay's client->app cost swung
# between 0.25 and 0.75 s/GiB. Pinned, every run is the cross-CPU case,
# the usual one for an engine and its application.
_cpus = sorted(os.sched_getaffinity(0))
DRIVER_CPU, ENGINE_CPU = (_cpus[0], _cpus[1]) if len(_cpus) > 1 else (None, None)


def spawn(engine, keys):
    """An engine on a fresh loopback connection: (process, client, app_in,
    app_out), app_in being what the application writes to the engine."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.create_connection(listener.getsockname(), timeout=TIMEOUT)
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    server, _ = listener.accept()
    listener.close()
    engine_r, app_in = os.pipe()
    app_out, engine_w = os.pipe()
    proc = subprocess.Popen([engine, "--", str(engine_r), str(engine_w)],
                            stdin=server, stdout=server, pass_fds=(engine_r, engine_w),
                            env={"CERTFILE": keys[0], "KEYFILE": keys[1]},
                            preexec_fn=lambda: pin(ENGINE_CPU))
    for fd in (engine_r, engine_w):
        os.close(fd)
    server.close()
    if os.path.basename(engine) != "plain_relay":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        client = ctx.wrap_socket(client, server_hostname="localhost")
        suites.add(client.cipher()[0])
    return proc, client, app_in, app_out


def transfer(engine, keys, direction, size):
    """CPU seconds per GiB (user, sys) of one engine moving size bytes."""
    proc, client, app_in, app_out = spawn(engine, keys)
    try:
        if direction == "client->app":
            def send():
                for _ in range(size // len(CHUNK)):
                    client.sendall(CHUNK)
                client.close()
            sink = lambda: [None for _ in iter(lambda: os.read(app_out, 1 << 18), b"")]
        else:
            def send():
                for _ in range(size // len(CHUNK)):
                    os.write(app_in, CHUNK)
            sink = lambda: drain_socket(client, size)
        writer = threading.Thread(target=send, daemon=True)
        writer.start()
        sink()
        writer.join(TIMEOUT)
        os.close(app_in)
        app_in = None
        client.close()
        usage = reap(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            reap(proc)
        for fd in (app_in, app_out):
            if fd is not None:
                os.close(fd)
    gib = size / (1 << 30)
    return usage.ru_utime / gib, usage.ru_stime / gib


def drain_socket(sock, size):
    buf = bytearray(1 << 18)
    got = 0
    while got < size:
        n = sock.recv_into(buf)
        if not n:
            raise RuntimeError(f"EOF after {got} bytes")
        got += n


def reap(proc):
    """wait4(2) for the engine's rusage (Popen.wait() drops it), bounded."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage
        if time.monotonic() > deadline:
            proc.kill()
        time.sleep(0.01)


def pin(cpu):
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def main():
    pin(DRIVER_CPU)
    args, reps, mib, cipher = [], 6, 256, None
    it = iter(sys.argv[1:])
    for a in it:
        if a == "--reps":
            reps = int(next(it))
        elif a == "--mib":
            mib = int(next(it))
        elif a == "--cipher":
            cipher = float(next(it))
        else:
            args.append(os.path.abspath(a))
    if not args:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="s6-tlsd-io-ab.") as tmp:
        keys = (os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem"))
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj",
                        "/CN=localhost", "-keyout", keys[1], "-out", keys[0]],
                       check=True, capture_output=True,
                       # An OPENSSL_CONF that forces the client's suite would
                       # also make openssl req write a v1 certificate.
                       env={k: v for k, v in os.environ.items() if k != "OPENSSL_CONF"})
        print(f"bulk_ab: {mib} MiB one way per connection, {reps} runs per engine, "
              "median CPU s/GiB")
        print(f"{'direction':12} {'user':>6} {'sys':>6} {'total':>6}  engine")
        totals = {}
        for direction in ("app->client", "client->app"):
            runs = {e: [] for e in args}
            for _ in range(reps):
                for engine in args:
                    runs[engine].append(transfer(engine, keys, direction, mib << 20))
            for engine in args:
                user = statistics.median(u for u, _ in runs[engine])
                system = statistics.median(s for _, s in runs[engine])
                total = statistics.median(u + s for u, s in runs[engine])
                totals[direction, engine] = total
                print(f"{direction:12} {user:6.3f} {system:6.3f} {total:6.3f}  {engine}")
    if suites:
        print("suite negotiated: " + ", ".join(sorted(suites)))
    return check_bound(args, totals, cipher)


def check_bound(engines, totals, cipher):
    """The issue's bulk target, from the medians above."""
    plain = [e for e in engines if os.path.basename(e) == "plain_relay"]
    if cipher is None or not plain:
        return 0
    over = 0
    for direction in ("app->client", "client->app"):
        bound = 1.3 * totals[direction, plain[0]] + cipher
        for engine in engines:
            if engine in plain:
                continue
            ours = totals[direction, engine]
            verdict = "met" if ours <= bound else "NOT MET"
            over += ours > bound
            print(f"bound {direction}: {ours:.3f} <= 1.3 x {totals[direction, plain[0]]:.3f} "
                  f"+ {cipher:.3f} = {bound:.3f}: {verdict}  {engine}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
