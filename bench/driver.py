#!/usr/bin/env python3
"""Benchmark driver for s6-tlsd-io, run by bench/run (read bench/README.md).

It plays every role but the engine: the super-server (listens on 127.0.0.1,
accepts, spawns the engine with the socket as fd 0/1), the TLS client (Python's
ssl module, in-process) and the application (echo, or a bulk source/sink).
The engine's own CPU time and peak RSS come from wait4(2) on it. The plain
relay (examples/plain_relay.rs: the engine's calling convention and poll
loop, no TLS) runs through the same harness with a plain TCP client: the
floor that the engine's TLS work is measured against.

    driver.py conn   OUT.jsonl   per-connection figures and idle CPU
    driver.py bulk   OUT.jsonl   bulk throughput (the client's OpenSSL decides
                                 the suite: bench/run sets OPENSSL_CONF to force
                                 TLS_AES_128_GCM_SHA256 on a second run)
    driver.py report OUT.jsonl   table, ratios and the jitter-entropy guard

Configuration comes from the environment (bench/run sets it): BENCH_BIN,
BENCH_DIR (keys and configs), BENCH_CONNS, BENCH_BULK_MIB, BENCH_IDLE_S,
BENCH_SUITE (a label for the bulk run), BENCH_STUNNEL (empty: skip stunnel),
BENCH_PLAIN (the plain relay; empty: skip it). bench/run also appends the
cipher's own cost (`openssl speed`) to OUT.jsonl as "cipher" rows.
"""

import json
import os
import re
import select
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time

import children  # bench/children.py: every child killed on any exit

TIMEOUT = 20.0  # seconds: every blocking step is bounded by this
GUARD_MS = 20.0  # median engine CPU per connection above this = regression
PAYLOAD = bytes(range(100))

def env(name, default):
    return os.environ.get(name, default)


BIN = env("BENCH_BIN", "")
DIR = env("BENCH_DIR", "")
STUNNEL = env("BENCH_STUNNEL", "")
PLAIN = env("BENCH_PLAIN", "")
CHILD_PATH = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}  # no OPENSSL_CONF etc.


class Failure(Exception):
    pass


def reap(pid, what):
    """Wait (bounded) for pid; return (exit code, CPU ms user+sys)."""
    try:
        code, ru = children.reap(pid, TIMEOUT)
    except children.StillRunning:
        raise Failure(f"{what}: still running after {TIMEOUT}s, killed")
    return code, (ru.ru_utime + ru.ru_stime) * 1000.0


def vmhwm(pid):
    """Peak RSS of the engine's own image (KiB). ru_maxrss is useless here:
    Linux carries the pre-exec high-water mark across exec, so a child
    forked from this Python process reports Python's RSS."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise Failure(f"no VmHWM for {pid}")


def proc_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)


def wait_readable(fd, what):
    if not select.select([fd], [], [], TIMEOUT)[0]:
        raise Failure(f"{what}: nothing after {TIMEOUT}s")


# ---------------------------------------------------------------- engines
# An "app" object is the application side of one spawned engine: recv/send
# cleartext, close_send (EOF towards the engine), drain (read to EOF), reap.


class OursApp:
    """s6-tlsd-io run as s6-tlsd runs it: -d NOTIF -- FDR FDW, pipes."""

    def __init__(self, conn, key):
        nr, nw = os.pipe()  # notification block
        fdr_r, self.w = os.pipe()  # app -> engine (the engine's FDR)
        self.r, fdw_w = os.pipe()  # engine -> app (the engine's FDW)
        self.err = open(os.path.join(DIR, "ours.stderr"), "ab")
        e = dict(CHILD_PATH, CERTFILE=key["cert"], KEYFILE=key["key"])
        argv = [BIN, "-d", str(nw), "--", str(fdr_r), str(fdw_w)]
        p = subprocess.Popen(argv, stdin=conn, stdout=conn, stderr=self.err,
                             pass_fds=(nw, fdr_r, fdw_w), env=e)
        p.returncode = 0  # we reap it ourselves with wait4
        self.pid = p.pid
        children.LIVE.add(self.pid)
        for fd in (nw, fdr_r, fdw_w):
            os.close(fd)
        self.notif_fd = nr
        self.notif = b""

    def ready(self):
        # the block ends with an empty string, then the engine closes the fd
        while True:
            wait_readable(self.notif_fd, "notification block")
            chunk = os.read(self.notif_fd, 4096)
            if not chunk:
                break
            self.notif += chunk
        os.close(self.notif_fd)
        if not self.notif.endswith(b"\0\0"):
            raise Failure(f"bad notification block {self.notif!r}")

    def recv_into(self, buf):
        wait_readable(self.r, "engine -> app")
        return os.readv(self.r, [buf])

    def send(self, data):
        view = memoryview(data)
        while view:
            view = view[os.write(self.w, view):]

    def close_send(self):
        if self.w >= 0:
            os.close(self.w)
            self.w = -1

    def drain(self):
        buf = bytearray(65536)
        while self.recv_into(buf):
            pass
        os.close(self.r)

    def reap(self):
        self.close_send()
        r = reap(self.pid, "s6-tlsd-io")
        self.err.close()
        return r


class PlainApp:
    """The plain relay, started as s6-tlsd starts the engine (-- FDR FDW,
    pipes) but without the notification fd: there is no handshake to report.
    Its client is a plain TCP socket (connect() with ctx None)."""

    def __init__(self, conn, key):
        fdr_r, self.w = os.pipe()  # app -> relay
        self.r, fdw_w = os.pipe()  # relay -> app
        self.err = open(os.path.join(DIR, "plain.stderr"), "ab")
        argv = [PLAIN, "--", str(fdr_r), str(fdw_w)]
        p = subprocess.Popen(argv, stdin=conn, stdout=conn, stderr=self.err,
                             pass_fds=(fdr_r, fdw_w), env=CHILD_PATH)
        p.returncode = 0  # we reap it ourselves with wait4
        self.pid = p.pid
        children.LIVE.add(self.pid)
        for fd in (fdr_r, fdw_w):
            os.close(fd)

    def ready(self):
        pass

    recv_into = OursApp.recv_into
    send = OursApp.send
    close_send = OursApp.close_send
    drain = OursApp.drain

    def reap(self):
        self.close_send()
        r = reap(self.pid, "plain relay")
        self.err.close()
        return r


class StunnelApp:
    """stunnel4 in inetd mode: socket on stdin/stdout, connect= our app port."""

    def __init__(self, conn, key):
        self.err = open(os.path.join(DIR, "stunnel.stderr"), "ab")
        p = subprocess.Popen([STUNNEL, key["stunnel_conf"]], stdin=conn,
                             stdout=conn, stderr=self.err, env=CHILD_PATH)
        p.returncode = 0
        self.pid = p.pid
        children.LIVE.add(self.pid)
        self.sock = None

    def ready(self):
        APP_LISTENER.settimeout(TIMEOUT)
        self.sock, _ = APP_LISTENER.accept()
        self.sock.settimeout(TIMEOUT)

    def recv_into(self, buf):
        return self.sock.recv_into(buf)

    def send(self, data):
        self.sock.sendall(data)

    def close_send(self):
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def drain(self):
        buf = bytearray(65536)
        while self.sock.recv_into(buf):
            pass
        self.sock.close()

    def reap(self):
        r = reap(self.pid, "stunnel4")
        self.err.close()
        return r


ENGINES = [("s6-tlsd-io", OursApp)]
if STUNNEL:
    ENGINES.append(("stunnel4", StunnelApp))
PLAIN_ENGINE = ("plain", PlainApp)  # no key, no TLS: run apart from ENGINES

KEYS = {
    name: {
        "cert": os.path.join(DIR, f"{name}.cert.pem"),
        "key": os.path.join(DIR, f"{name}.key.pem"),
        "stunnel_conf": os.path.join(DIR, f"{name}.stunnel.conf"),
    }
    for name in ("ecdsa-p256", "rsa-2048")
}

LISTENER = None
APP_LISTENER = None  # stunnel's connect= target (port written in its conf)


def client_context(cafile):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(cafile)
    return ctx


def recv_exact(recv_into, n):
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = recv_into(view[got:])
        if not k:
            raise Failure(f"EOF after {got} of {n} bytes")
        got += k
    return bytes(buf)


def connect(make_app, key, ctx):
    """Accept one connection, spawn the engine on it, do the handshake
    (none when ctx is None: the plain relay's client is the bare socket)."""
    cli = socket.create_connection(LISTENER.getsockname(), timeout=TIMEOUT)
    # as curl and browsers do: else the first write after the handshake can
    # wait ~40 ms for a delayed ACK (Nagle), s6-tlsd-io sending no tickets
    cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn, _ = LISTENER.accept()
    try:
        app = make_app(conn, key)
    finally:
        conn.close()  # the engine has its own copy as fd 0/1
    tls = ctx.wrap_socket(cli, server_hostname="localhost") if ctx else cli
    app.ready()
    return tls, app


def cipher_of(sock):
    return sock.cipher()[0] if isinstance(sock, ssl.SSLSocket) else "none"


def finish(tls, app):
    """Orderly end, the same for both engines: the client closes (FIN, no
    close_notify), the app reads to EOF and closes its side; then reap.
    (Not the app first: after a bare FIN from s6-tlsd-io, the default -s,
    an OpenSSL 3 client that reads to EOF answers with a decode_error alert,
    and the engine then exits 98. See bench/README.md.)"""
    rss = vmhwm(app.pid)  # the peak so far: handshake and data, not the close
    tls.close()
    app.drain()
    app.close_send()
    code, cpu = app.reap()
    if code != 0:
        with open(app.err.name, "rb") as f:
            tail = f.read()[-2000:].decode(errors="replace").strip()
        raise Failure(f"engine exited {code}; its stderr ends with:\n{tail}")
    return cpu, rss


def echo(tls, app):
    tls.sendall(PAYLOAD)
    app.send(recv_exact(app.recv_into, len(PAYLOAD)))
    if recv_exact(tls.recv_into, len(PAYLOAD)) != PAYLOAD:
        raise Failure("echo mismatch")


def run_conn(out):
    n = int(env("BENCH_CONNS", "200"))
    idle_s = float(env("BENCH_IDLE_S", "2"))
    hz = os.sysconf("SC_CLK_TCK")
    # exec floor: the engine exec'd and refused at once (no CERTFILE, exit 100)
    cpus = []
    for _ in range(n):
        p = subprocess.Popen([BIN, "-v", "0", "--", "0", "1"], env=CHILD_PATH,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        p.returncode = 0
        children.LIVE.add(p.pid)
        code, cpu = reap(p.pid, "exec floor")
        if code != 100:
            raise Failure(f"exec floor: expected exit 100, got {code}")
        cpus.append(cpu)
    out.write(json.dumps({"kind": "floor", "engine": "s6-tlsd-io", "n": n,
                          "cpu_ms": cpus}) + "\n")
    # plain relay: the same connection and echo without TLS (no key); key
    # "none" in the results
    cases = [("none", None, PLAIN_ENGINE)] if PLAIN else []
    for kname, key in KEYS.items():
        cases += [(kname, key, e) for e in ENGINES]
    for kname, key, (ename, make_app) in cases:
        ctx = client_context(key["cert"]) if key else None
        cpus, rsss = [], []
        cipher = None
        t0 = time.monotonic()
        for _ in range(n):
            tls, app = connect(make_app, key, ctx)
            cipher = cipher_of(tls)
            echo(tls, app)
            cpu, rss = finish(tls, app)
            cpus.append(cpu)
            rsss.append(rss)
        wall = time.monotonic() - t0
        out.write(json.dumps({"kind": "conn", "key": kname, "engine": ename,
                              "n": n, "cipher": cipher, "wall_s": wall,
                              "cpu_ms": cpus, "rss_kib": rsss}) + "\n")
        out.flush()
        print(f"  conn  {kname:10} {ename:10} median "
              f"{statistics.median(cpus):6.2f} ms CPU", file=sys.stderr)
    # idle: an established connection, nothing moving, ticks over idle_s
    key = KEYS["ecdsa-p256"]
    ctx = client_context(key["cert"])
    for ename, make_app in ENGINES:
        tls, app = connect(make_app, key, ctx)
        echo(tls, app)
        before = proc_ticks(app.pid)
        time.sleep(idle_s)
        ticks = proc_ticks(app.pid) - before
        finish(tls, app)
        out.write(json.dumps({"kind": "idle", "engine": ename, "seconds": idle_s,
                              "ticks": ticks, "hz": hz}) + "\n")


def bulk_once(make_app, key, ctx, direction, size):
    """One connection moving size bytes one way: (cipher, wall s, CPU ms, RSS)."""
    tls, app = connect(make_app, key, ctx)
    if direction == "app->client":
        write, recv_into = app.send, tls.recv_into
    else:
        write, recv_into = tls.sendall, app.recv_into
    chunk = bytes(256 << 10)
    errors = []

    def writer():
        try:
            left = size
            while left:
                k = min(left, len(chunk))
                write(chunk[:k])
                left -= k
        except Exception as exc:  # reported by the main thread
            errors.append(exc)

    t0 = time.monotonic()
    th = threading.Thread(target=writer, daemon=True)
    th.start()
    buf = bytearray(256 << 10)
    got = 0
    while got < size:
        k = recv_into(buf)
        if not k:
            raise Failure(f"bulk {direction}: EOF after {got} bytes")
        got += k
    wall = time.monotonic() - t0
    th.join(TIMEOUT)
    if errors:
        raise Failure(f"bulk {direction}: writer: {errors[0]}")
    cipher = cipher_of(tls)
    cpu, rss = finish(tls, app)
    return cipher, wall, cpu, rss


def run_bulk(out):
    size = int(env("BENCH_BULK_MIB", "256")) << 20
    reps = int(env("BENCH_BULK_REPS", "3"))
    suite = env("BENCH_SUITE", "default")
    key = KEYS["ecdsa-p256"]
    ctx = client_context(key["cert"])
    rows = {}
    # the plain relay is measured in each bulk run, next to the engines, so
    # that each suite's rows have their own floor from the same minutes
    engines = [(e, ctx) for e in ENGINES]
    if PLAIN:
        engines.insert(0, (PLAIN_ENGINE, None))
    # repetitions outermost, so that a burst of load elsewhere on the machine
    # hits every engine rather than one
    for _ in range(reps):
        for (ename, make_app), ectx in engines:
            for direction in ("app->client", "client->app"):
                cipher, wall, cpu, rss = bulk_once(make_app, key, ectx, direction, size)
                r = rows.setdefault((ename, direction), {
                    "kind": "bulk", "engine": ename, "suite": suite,
                    "cipher": cipher, "direction": direction, "bytes": size,
                    "wall_s": [], "cpu_ms": [], "rss_kib": []})
                r["wall_s"].append(wall)
                r["cpu_ms"].append(cpu)
                r["rss_kib"].append(rss)
                print(f"  bulk  {suite:8} {ename:10} {direction:11} "
                      f"{size / wall / 2**20:7.1f} MiB/s", file=sys.stderr)
    for r in rows.values():
        out.write(json.dumps(r) + "\n")


# ---------------------------------------------------------------- report

def ratio(a, b):
    return f"{a / b:5.2f}" if a is not None and b else "    -"


def fmt(v, spec):
    return format(v, spec) if v is not None else "-".rjust(len(format(0, spec)))


def speed(r):
    return r["bytes"] / statistics.median(r["wall_s"]) / 2**20 if r else None


def per_gib(r):
    return statistics.median(r["cpu_ms"]) / 1000 / (r["bytes"] / 2**30) if r else None


def max_rss(r):
    return max(r["rss_kib"]) if r else None


def evp_name(cipher):
    """TLS_AES_256_GCM_SHA384 -> AES-256-GCM, the name `openssl speed` uses."""
    m = re.search(r"AES_(\d+)_GCM", cipher or "")
    return f"AES-{m.group(1)}-GCM" if m else None


def report(path):
    rows = [json.loads(line) for line in open(path)]
    med = statistics.median
    ok = True
    print()
    print("== s6-tlsd-io benchmark (loopback, TLS 1.3, Python ssl client) ==")
    for r in rows:
        if r["kind"] == "floor" and r["cpu_ms"]:
            print(f"exec floor (engine exec'd, exits 100 at once, n={r['n']}): "
                  f"CPU {med(r['cpu_ms']):.2f} ms")
    # the cipher's own cost: bench/run's `openssl speed -evp NAME -bytes 16384`
    # (CPU time, one core), as seconds of CPU per GiB
    cipher_cost = {r["name"].upper(): 2**30 / r["bytes_per_s"]
                   for r in rows if r["kind"] == "cipher" and r["bytes_per_s"] > 0}
    if cipher_cost:
        print("cipher's own cost (openssl speed -evp, 16 KiB blocks): " + ", ".join(
            f"{name} {v:.3f} s/GiB" for name, v in sorted(cipher_cost.items())))
    print()
    print("per connection: handshake + 100-byte echo, median (p90) "
          "of the engine's CPU (user+sys, wait4) and VmHWM")
    print(f"{'key':11} {'engine':10} {'n':>4} {'CPU ms':>7} {'(p90)':>7} "
          f"{'RSS KiB':>8} {'conn/s':>7}  cipher")
    conn = {(r["key"], r["engine"]): r for r in rows if r["kind"] == "conn"}
    ratios = []
    worst = 0.0
    plain = conn.get(("none", "plain"))
    for kname in ["none"] + list(KEYS):
        for ename, _ in ENGINES if kname != "none" else [PLAIN_ENGINE]:
            r = conn.get((kname, ename))
            if not r:
                continue
            c = r["cpu_ms"]
            p90 = sorted(c)[int(0.9 * (len(c) - 1))]
            print(f"{kname:11} {ename:10} {r['n']:4d} {med(c):7.2f} {p90:7.2f} "
                  f"{med(r['rss_kib']):8.0f} {r['n'] / r['wall_s']:7.0f}  {r['cipher']}")
            if ename == "s6-tlsd-io":
                worst = max(worst, med(c))
        if kname == "none":
            continue
        a, b = conn.get((kname, "s6-tlsd-io")), conn.get((kname, "stunnel4"))
        if a and b:
            ratios.append(f"{kname:11} {'ours/stun':10} {'':4} "
                          f"{ratio(med(a['cpu_ms']), med(b['cpu_ms'])):>7} {'':7} "
                          f"{ratio(med(a['rss_kib']), med(b['rss_kib'])):>8}")
        if a and plain:
            # what TLS adds per connection over relaying the same bytes
            ratios.append(f"{kname:11} {'ours-plain':10} {'':4} "
                          f"{med(a['cpu_ms']) - med(plain['cpu_ms']):+7.2f} {'':7} "
                          f"{med(a['rss_kib']) - med(plain['rss_kib']):+8.0f}")
    for line in ratios:
        print(line)

    bulk = {(r["suite"], r["direction"], r["engine"]): r
            for r in rows if r["kind"] == "bulk"}
    if bulk:
        print()
        n = len(next(iter(bulk.values()))["wall_s"])
        size = next(iter(bulk.values()))["bytes"] >> 20
        print(f"bulk: {size} MiB one way per connection, ECDSA key, median of {n}; "
              "MiB/s end to end (the Python")
        print("peers share the cores), CPU = the engine's own per GiB, "
              "RSS = highest VmHWM in KiB")
        print(f"{'suite':8} {'direction':11} {'ours MiB/s':>10} {'stun MiB/s':>10} "
              f"{'ratio':>5} {'ours s/GiB':>10} {'stun s/GiB':>10} {'ratio':>5} "
              f"{'ours RSS':>8} {'stun RSS':>8}  cipher")
        seen = []
        for (suite, direction, _) in bulk:
            if (suite, direction) not in seen:
                seen.append((suite, direction))
        for suite, direction in seen:
            a = bulk.get((suite, direction, "s6-tlsd-io"))
            b = bulk.get((suite, direction, "stunnel4"))
            if not (a or b):
                continue
            cipher = (a or b)["cipher"]
            if a and b and a["cipher"] != b["cipher"]:
                cipher += f" / {b['cipher']}"
            print(f"{suite:8} {direction:11} {fmt(speed(a), '10.0f')} "
                  f"{fmt(speed(b), '10.0f')} {ratio(speed(a), speed(b))} "
                  f"{fmt(per_gib(a), '10.2f')} {fmt(per_gib(b), '10.2f')} "
                  f"{ratio(per_gib(a), per_gib(b))} {fmt(max_rss(a), '8d')} "
                  f"{fmt(max_rss(b), '8d')}  {cipher}")

        # The issue's bulk target: ours <= 1.3 x plain + the cipher's cost,
        # per direction, with the plain relay measured in the same bulk run.
        if any(e == "plain" for (_, _, e) in bulk):
            print()
            print("bulk against the plain relay (examples/plain_relay.rs: same loop, "
                  "no TLS, same harness); target:")
            print("ours s/GiB <= bound = 1.3 x plain + cipher (openssl speed, above); "
                  "excess = ours - plain;")
            print("single medians of runs far apart, for reading only: the verdict "
                  "comes from bench/bulk_ab.py below")
            print(f"{'suite':8} {'direction':11} {'plain MiB/s':>11} {'plain s/GiB':>11} "
                  f"{'ours s/GiB':>10} {'excess':>7} {'cipher':>7} {'bound':>7} "
                  f"{'ours/bound':>10} {'plain RSS':>9}")
            for suite, direction in seen:
                p = bulk.get((suite, direction, "plain"))
                a = bulk.get((suite, direction, "s6-tlsd-io"))
                if not p:
                    continue
                c = cipher_cost.get(evp_name(a["cipher"]) if a else None)
                excess = per_gib(a) - per_gib(p) if a else None
                bound = 1.3 * per_gib(p) + c if c is not None else None
                print(f"{suite:8} {direction:11} {fmt(speed(p), '11.0f')} "
                      f"{fmt(per_gib(p), '11.3f')} {fmt(per_gib(a), '10.3f')} "
                      f"{fmt(excess, '+7.3f')} {fmt(c, '7.3f')} {fmt(bound, '7.3f')} "
                      f"{ratio(per_gib(a), bound):>10} {fmt(max_rss(p), '9d')}")

    idle = [r for r in rows if r["kind"] == "idle"]
    if idle:
        print()
        print("idle established connection: " + ", ".join(
            f"{r['engine']} {r['ticks']} ticks in {r['seconds']:g} s "
            f"(1 tick = {1000 / r['hz']:.0f} ms)" for r in idle))
        for r in idle:
            if r["engine"] == "s6-tlsd-io" and r["ticks"] > 1:
                print(f"WARNING: s6-tlsd-io used {r['ticks']} ticks while idle: "
                      "is the relay loop busy-waiting? (upstream: 0)")

    print()
    if not conn:
        print("REGRESSION: no per-connection figures were recorded")
        ok = False
    elif worst > GUARD_MS:
        print("!" * 78)
        print(f"REGRESSION: median CPU per connection of s6-tlsd-io is {worst:.1f} ms "
              f"(limit {GUARD_MS:g} ms).")
        print("REGRESSION: aws-lc's CPU-jitter RNG seeding is probably back: it costs "
              "40-60 ms per process.")
        print("REGRESSION: check AWS_LC_SYS_NO_JITTER_ENTROPY=1 in .cargo/config.toml "
              "([env]) and that aws-lc-sys was rebuilt with it (cargo clean -p aws-lc-sys).")
        print("!" * 78)
        ok = False
    else:
        print(f"guard: median CPU per connection {worst:.2f} ms <= {GUARD_MS:g} ms: "
              "no jitter-entropy regression")
    return ok


def main():
    global LISTENER, APP_LISTENER
    if len(sys.argv) != 3 or sys.argv[1] not in ("conn", "bulk", "report"):
        sys.exit(__doc__)
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "report":
        sys.exit(0 if report(path) else 1)
    for binary in (BIN, PLAIN, STUNNEL):
        if binary:
            children.from_disk(binary)
    LISTENER = socket.create_server(("127.0.0.1", 0))
    LISTENER.settimeout(TIMEOUT)
    if STUNNEL:
        # stunnel's "remote" is our echo app on a port of our own; inetd mode:
        # global options only, no service section, no accept=
        APP_LISTENER = socket.create_server(("127.0.0.1", 0))
        port = APP_LISTENER.getsockname()[1]
        for key in KEYS.values():
            with open(key["stunnel_conf"], "w") as f:
                f.write(f"pid =\nsyslog = no\ndebug = err\n"
                        f"cert = {key['cert']}\nkey = {key['key']}\n"
                        f"connect = 127.0.0.1:{port}\nTIMEOUTclose = 0\n")
    with open(path, "a") as out:
        try:
            (run_conn if mode == "conn" else run_bulk)(out)
        except (Failure, OSError, ssl.SSLError) as exc:
            sys.exit(f"bench: {mode}: {exc}")


if __name__ == "__main__":
    main()
