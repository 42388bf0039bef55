#!/usr/bin/env python3
"""Every figure of the performance issue, side by side, in one run.

Run by bench/compare (which installs the tools, builds the binaries and the
two C helpers, makes the keys and times the cipher); read bench/README.md.

    compare.py --dir DIR --cipher-s-gib S --floor BIN --client BIN
               --plain BIN --ours [LABEL=]BIN [--ours ...]
               [--stunnel BIN] [--bearssl BIN] [--libtls BIN]
               [--conns N] [--startup N] [--idle N] [--bulk-mib M]
               [--reps R] [--out FILE.jsonl]

Engines, each spawned as s6-tlsd spawns s6-tlsd-io (the accepted socket as
fds 0 and 1, pipes as FDR and FDW, `-- FDR FDW`, CERTFILE and KEYFILE in a
clean environment), except stunnel4 (inetd mode: the socket on stdin and
stdout, connect= a port of this driver, which plays the application).
Figures are the engine process's own CPU (user+sys from wait4) and memory.
"""

import argparse
import json
import os
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time

import children  # bench/children.py: every child killed on any exit

TIMEOUT = 30.0  # every blocking step is bounded by this
CHUNK = 256 << 10
PAYLOAD = bytes(range(100))
CHILD_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


class Failure(Exception):
    pass


CPUS = sorted(os.sched_getaffinity(0))
# pinned: this driver and the C client on the first CPU, the engine on the
# second (bench/bulk_ab.py's arrangement); unpinned: the scheduler's choice
DRIVER_CPU, ENGINE_CPU = (CPUS[0], CPUS[1]) if len(CPUS) > 1 else (None, None)


def reap(pid, what, timeout=TIMEOUT):
    """Bounded wait for pid: (exit code, user s, sys s)."""
    try:
        code, ru = children.reap(pid, timeout)
    except children.StillRunning:
        raise Failure(f"{what}: still running after {timeout:g}s, killed")
    return code, ru.ru_utime, ru.ru_stime


def proc_field(pid, name, what):
    with open(f"/proc/{pid}/{name}") as f:
        for line in f:
            if line.startswith(what + ":"):
                return int(line.split()[1])
    raise Failure(f"no {what} in /proc/{pid}/{name}")


# system calls a process waits for its first input in (x86_64 numbers):
# read, select, poll, recvfrom, recvmsg, epoll_wait, pselect6, ppoll,
# epoll_pwait, epoll_pwait2
WAIT_SYSCALLS = {0, 23, 7, 45, 47, 232, 270, 271, 281, 441}


def waiting_for_input(pid):
    """True once pid sleeps in a call that waits for the ClientHello."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        if state != "S":
            return False
        with open(f"/proc/{pid}/syscall") as f:
            first = f.read().split()[0]
        return first.isdigit() and int(first) in WAIT_SYSCALLS
    except (OSError, IndexError):
        return False


def pin_self(cpu):
    os.sched_setaffinity(0, {cpu} if cpu is not None else set(CPUS))


# ---------------------------------------------------------------- engines

class App:
    """The application side of one running engine: pipes, or for stunnel a
    TCP connection that stunnel makes to this driver."""

    def __init__(self, r=None, w=None, sock=None):
        self.r, self.w, self.sock = r, w, sock

    def recv_into(self, buf):
        if self.sock:
            return self.sock.recv_into(buf)
        return os.readv(self.r, [buf])

    def send(self, data):
        if self.sock:
            self.sock.sendall(data)
            return
        view = memoryview(data)
        while view:
            view = view[os.write(self.w, view):]

    def close_send(self):
        if self.sock:
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        elif self.w is not None:
            os.close(self.w)
            self.w = None

    def drain(self):
        """Read to EOF: the number of bytes read."""
        buf = bytearray(CHUNK)
        got = 0
        while True:
            k = self.recv_into(buf)
            if not k:
                return got
            got += k

    def close(self):
        self.close_send()
        if self.sock:
            self.sock.close()
            self.sock = None
        if self.r is not None:
            os.close(self.r)
            self.r = None


class Engine:
    """kind: ours, plain, floor, bearssl, libtls or stunnel."""

    def __init__(self, kind, label, path):
        self.kind, self.label, self.path = kind, label, path
        self.tls = kind not in ("plain", "floor")
        self.tls13 = kind != "bearssl"  # BearSSL has no TLS 1.3
        # upstream's libtls build (OpenSSL 3 under Debian's libretls 3.7)
        # takes an EOF without close_notify as a fatal error and exits 98:
        # its clients send one (the others get the bare FIN of curl)
        self.notify = kind == "libtls"

    def spawn(self, sock, key, cpu=None):
        """Start the engine on sock (closed here): (pid, app). For stunnel
        the app connection is accepted later: app_for()."""
        env = {"PATH": CHILD_PATH}
        if key:
            env.update(CERTFILE=key["cert"], KEYFILE=key["key"])
        pre = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
        if self.kind == "stunnel":
            argv, passed, app = [self.path, key["stunnel_conf"]], (), None
        else:
            fdr, app_w = os.pipe()
            app_r, fdw = os.pipe()
            argv = [self.path, "--", str(fdr), str(fdw)]
            passed, app = (fdr, fdw), App(r=app_r, w=app_w)
        p = subprocess.Popen(argv, stdin=sock, stdout=sock, stderr=ERRLOG,
                             pass_fds=passed, env=env, preexec_fn=pre)
        p.returncode = 0  # reaped here with wait4
        children.LIVE.add(p.pid)
        for fd in passed:
            os.close(fd)
        sock.close()
        return p.pid, app

    def app_for(self, app):
        """The application side, once the engine has one."""
        if app is not None:
            return app
        APP_LISTENER.settimeout(TIMEOUT)
        s, _ = APP_LISTENER.accept()
        s.settimeout(TIMEOUT)
        return App(sock=s)

    def client_context(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = (ssl.TLSVersion.TLSv1_3 if self.tls13
                               else ssl.TLSVersion.TLSv1_2)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx


ERRLOG = None
LISTENER = None
APP_LISTENER = None


def tcp_pair():
    """A loopback connection: (client side, accepted side)."""
    cli = socket.create_connection(LISTENER.getsockname(), timeout=TIMEOUT)
    cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    srv, _ = LISTENER.accept()
    return cli, srv


def close_notify(tls):
    """Send a close_notify without waiting for the peer's: unwrap() on a
    non-blocking socket sends it, then stops at the want-read."""
    tls.setblocking(False)
    try:
        tls.unwrap()
    except (ssl.SSLWantReadError, ssl.SSLError, OSError):
        pass
    tls.setblocking(True)


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


# ---------------------------------------------------------------- phases

def connection_once(engine, key, ctx):
    """Handshake + 100-byte echo each way + close: CPU ms, VmHWM KiB, and
    the protocol/suite seen."""
    suite = "none"
    cli, srv = tcp_pair()
    pid, app = engine.spawn(srv, key)
    tls = ctx.wrap_socket(cli, server_hostname="localhost") if ctx else cli
    if ctx:
        suite = f"{tls.version()} {tls.cipher()[0]}"
    tls.sendall(PAYLOAD)
    app = engine.app_for(app)
    app.send(recv_exact(app.recv_into, len(PAYLOAD)))
    if recv_exact(tls.recv_into, len(PAYLOAD)) != PAYLOAD:
        raise Failure(f"{engine.label}: echo mismatch")
    hwm = proc_field(pid, "status", "VmHWM")  # before the close
    # the client closes first (FIN, no close_notify), the app reads to
    # EOF and closes: the order bench/README.md explains
    if engine.notify:
        close_notify(tls)
    tls.close()
    app.drain()
    app.close()
    code, u, s = reap(pid, engine.label)
    if code != 0:
        raise Failure(f"{engine.label}: exited {code} after a connection; "
                      f"stderr ends with:\n{stderr_tail()}")
    return (u + s) * 1000, hwm, suite


def interleaved(cases, n):
    """(name, engine, key): n runs of each of `cases` ({name: (engine,
    key)}), in rounds of BLOCK runs per case, so that a burst of load
    elsewhere (these are shared machines) hits every engine rather than
    one, yet each engine's runs follow each other, as a server's do (its
    code warm in the caches, not evicted by stunnel's 20 ms a connection
    just before)."""
    for done in range(0, n, BLOCK):
        for name, (engine, key) in cases.items():
            for _ in range(min(BLOCK, n - done)):
                yield name, engine, key


BLOCK = 10


def per_connection(cases, n):
    """n connections of each case (`interleaved`): per case, the CPU ms and
    VmHWM KiB of each, and the protocol/suite seen."""
    ctxs = {name: e.client_context() if e.tls else None for name, (e, _) in cases.items()}
    out = {name: {"cpu_ms": [], "hwm_kib": [], "suite": "none"} for name in cases}
    for name, engine, key in interleaved(cases, n):
        cpu, hwm, out[name]["suite"] = connection_once(engine, key, ctxs[name])
        out[name]["cpu_ms"].append(cpu)
        out[name]["hwm_kib"].append(hwm)
    return out


def stderr_tail():
    ERRLOG.flush()
    with open(ERRLOG.name, "rb") as f:
        return f.read()[-1500:].decode(errors="replace").strip()


def startup_once(engine, key):
    """CPU from exec to waiting for the ClientHello, teardown included:
    spawned on a socketpair, SIGKILLed once it sleeps in a read or poll."""
    a, b = socket.socketpair()
    pid, app = engine.spawn(b, key if engine.kind != "floor" else None)
    deadline = time.monotonic() + TIMEOUT
    while not waiting_for_input(pid):
        if time.monotonic() > deadline:
            raise Failure(f"{engine.label}: never waited for input")
        time.sleep(0.0005)
    os.kill(pid, signal.SIGKILL)
    _, u, s = reap(pid, engine.label)
    if app:
        app.close()
    a.close()
    return (u + s) * 1000


def startup(cases, n):
    """As per_connection (`interleaved`): per case, the start-up CPU ms."""
    out = {name: {"cpu_ms": []} for name in cases}
    for name, engine, key in interleaved(cases, n):
        out[name]["cpu_ms"].append(startup_once(engine, key))
    return out


def idle_memory(engine, key, n):
    """n established connections at once (handshake done, one byte each
    way... through to the app), then the means of Pss, RssAnon, VmRSS."""
    ctx = engine.client_context() if engine.tls else None
    live = []
    try:
        for _ in range(n):
            a, b = socket.socketpair()
            a.settimeout(TIMEOUT)
            pid, app = engine.spawn(b, key)
            c = ctx.wrap_socket(a, server_hostname="localhost") if ctx else a
            c.sendall(b"x")
            app = engine.app_for(app)
            recv_exact(app.recv_into, 1)
            live.append((pid, c, app))
        time.sleep(0.3)
        pids = [pid for pid, _, _ in live]

        def mean(name, what):
            return sum(proc_field(p, name, what) for p in pids) / len(pids)
        return {"n": n, "pss_kib": mean("smaps_rollup", "Pss"),
                "rss_anon_kib": mean("status", "RssAnon"),
                "vmrss_kib": mean("status", "VmRSS")}
    finally:
        for pid, c, app in live:
            os.kill(pid, signal.SIGKILL)
            reap(pid, engine.label)
            c.close()
            app.close()


def bulk_once(engine, key, client, direction, size, pinned):
    """One connection moving size bytes one way: (user s, sys s) of the
    engine, and the protocol/suite. client: "python" (in this process, as
    bench/bulk_ab.py) or "c" (bench/bulk_client.c, its own process)."""
    ecpu = ENGINE_CPU if pinned else None
    ccpu = DRIVER_CPU if pinned else None
    errors = []
    port = LISTENER.getsockname()[1]
    if client == "c":
        # the C client connects by itself, to the listener's port
        pre = (lambda: os.sched_setaffinity(0, {ccpu})) if ccpu is not None else None
        argv = [ARGS.client] + (["-n"] if engine.notify else []) + (
            [] if engine.tls else ["-p"]) + [
            "127.0.0.1", str(port), "send" if direction == "client->app" else "recv",
            str(size)]
        cproc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=ERRLOG,
                                 env={"PATH": CHILD_PATH}, preexec_fn=pre)
        cproc.returncode = 0  # reaped here with wait4
        children.LIVE.add(cproc.pid)
        srv, _ = LISTENER.accept()
        pid, app = engine.spawn(srv, key, ecpu)
        suite = cproc.stdout.readline().decode().strip() or "?"
        cproc.stdout.close()
        sock = None
    else:
        cproc = None
        cli, srv = tcp_pair()
        pid, app = engine.spawn(srv, key, ecpu)
        ctx = engine.client_context() if engine.tls else None
        sock = ctx.wrap_socket(cli, server_hostname="localhost") if ctx else cli
        suite = f"{sock.version()} {sock.cipher()[0]}" if ctx else "none none"
    app = engine.app_for(app)
    chunk = bytes(CHUNK)

    def feed(write):
        try:
            left = size
            while left:
                k = min(left, CHUNK)
                write(chunk[:k])
                left -= k
        except Exception as exc:  # reported below
            errors.append(exc)

    try:
        if direction == "client->app":
            if sock:
                def send():
                    feed(sock.sendall)
                    if engine.notify:
                        close_notify(sock)
                    sock.shutdown(socket.SHUT_WR)
                th = threading.Thread(target=send, daemon=True)
                th.start()
            got = app.drain()
            if sock:
                th.join(TIMEOUT)
            if got != size:
                raise Failure(f"{engine.label} bulk client->app: {got} of {size} bytes")
        else:
            th = threading.Thread(target=feed, args=(app.send,), daemon=True)
            th.start()
            if sock:
                recv_exact_count(sock, size)
            th.join(TIMEOUT)
            if cproc:
                # the application closes only once the client has it all:
                # upstream dies ("iopause for writing on local") when FDW's
                # reader goes while it still has records to send
                code, _, _ = reap(cproc.pid, "bulk_client", 120)
                if code != 0:
                    raise Failure(f"{engine.label}: bulk_client exited {code}; "
                                  f"stderr ends with:\n{stderr_tail()}")
        app.close()
        if sock:
            sock.close()
        if cproc and cproc.pid in children.LIVE:
            code, _, _ = reap(cproc.pid, "bulk_client", 120)
            if code != 0:
                raise Failure(f"{engine.label}: bulk_client exited {code}; stderr ends with:\n"
                              f"{stderr_tail()}")
        _, u, s = reap(pid, engine.label)
    finally:
        if cproc and cproc.pid in children.LIVE:
            os.kill(cproc.pid, signal.SIGKILL)
            reap(cproc.pid, "bulk_client")
        if pid in children.LIVE:
            os.kill(pid, signal.SIGKILL)
            reap(pid, engine.label)
    if errors:
        raise Failure(f"{engine.label} bulk {direction}: {errors[0]}")
    return u, s, suite


def recv_exact_count(sock, size):
    buf = bytearray(CHUNK)
    got = 0
    while got < size:
        k = sock.recv_into(buf)
        if not k:
            raise Failure(f"EOF after {got} of {size} bytes")
        got += k


# ---------------------------------------------------------------- report

def med(xs):
    return statistics.median(xs) if xs else None


def p90(xs):
    return sorted(xs)[int(0.9 * (len(xs) - 1))] if xs else None


def cell(v, spec, width):
    return (format(v, spec) if v is not None else "-").rjust(width)


def verdict(ok, text):
    print(f"{'PASS' if ok else 'FAIL'}  {text}")
    return ok


def skip(text):
    print(f"SKIP  {text}")


def below_floor(value, bound, plain):
    """A note for a missed bound that the plain relay (no TLS at all, the
    same pipes, the same case) misses too: pinned, no relay of this shape
    can meet it. Unpinned, where the scheduler places each process, the
    plain relay is no floor: an engine may come out below it."""
    if value <= bound or plain is None or plain <= bound:
        return ""
    return f"; the plain relay alone costs {plain:.2f}"


def main():
    global ARGS, ERRLOG, LISTENER, APP_LISTENER
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--cipher-s-gib", type=float, required=True)
    ap.add_argument("--floor", required=True)
    ap.add_argument("--client", required=True)
    ap.add_argument("--plain", required=True)
    ap.add_argument("--ours", action="append", required=True)
    ap.add_argument("--stunnel")
    ap.add_argument("--bearssl")
    ap.add_argument("--libtls")
    ap.add_argument("--conns", type=int, default=200)
    ap.add_argument("--startup", type=int, default=100)
    ap.add_argument("--idle", type=int, default=100)
    ap.add_argument("--bulk-mib", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out")
    ARGS = a = ap.parse_args()

    ours = []
    for i, spec in enumerate(a.ours):
        label, _, path = spec.rpartition("=")
        ours.append(Engine("ours", label or ("ours" if i == 0 else f"ours{i + 1}"), path))
    engines = list(ours)
    if a.bearssl:
        engines.append(Engine("bearssl", "bearssl", a.bearssl))
    if a.libtls:
        engines.append(Engine("libtls", "libtls", a.libtls))
    if a.stunnel:
        engines.append(Engine("stunnel", "stunnel", a.stunnel))
    plain = Engine("plain", "plain", a.plain)
    floor = Engine("floor", "floor", a.floor)
    tls_engines = list(engines)
    engines.append(plain)
    cols = engines + [floor]
    # stunnel has no start-up column: it may connect to the application
    # before the handshake, and the issue asks for the TLS engines only
    startup_cols = [e for e in cols if e.kind != "stunnel"]
    for e in cols:
        children.from_disk(e.path)

    ERRLOG = open(os.path.join(a.dir, "engines.stderr"), "ab")
    LISTENER = socket.create_server(("127.0.0.1", 0), backlog=128)
    LISTENER.settimeout(TIMEOUT)
    keys = {}
    for kname in ("ecdsa-p256", "rsa-2048"):
        keys[kname] = {"cert": os.path.join(a.dir, f"{kname}.cert.pem"),
                       "key": os.path.join(a.dir, f"{kname}.key.pem"),
                       "stunnel_conf": os.path.join(a.dir, f"{kname}.stunnel.conf")}
    if a.stunnel:
        APP_LISTENER = socket.create_server(("127.0.0.1", 0), backlog=128)
        port = APP_LISTENER.getsockname()[1]
        for k in keys.values():
            with open(k["stunnel_conf"], "w") as f:
                f.write(f"pid =\nsyslog = no\ndebug = err\ncert = {k['cert']}\n"
                        f"key = {k['key']}\nconnect = 127.0.0.1:{port}\n"
                        "TIMEOUTclose = 0\n")
    ecdsa = keys["ecdsa-p256"]
    out = open(a.out, "a") if a.out else None

    def record(**kw):
        if out:
            out.write(json.dumps(kw) + "\n")
            out.flush()

    def progress(text):
        print(f"  {text}", file=sys.stderr, flush=True)

    # ---- per connection
    cases = {(kname, e.label): (e, key) for kname, key in keys.items() for e in tls_engines}
    cases["none", "plain"] = (plain, None)
    conn = per_connection(cases, a.conns)
    for (kname, label), r in conn.items():
        record(kind="conn", key=kname, engine=label, **r)
        progress(f"conn {kname} {label}: {med(r['cpu_ms']):.2f} ms")

    # ---- start-up (ECDSA key; the RSA key's start-up for ours too)
    cases = {("ecdsa-p256", e.label): (e, ecdsa) for e in startup_cols}
    cases.update({("rsa-2048", e.label): (e, keys["rsa-2048"]) for e in ours})
    both = startup(cases, a.startup)
    start = {label: r for (kname, label), r in both.items() if kname == "ecdsa-p256"}
    start_rsa = {label: r for (kname, label), r in both.items() if kname == "rsa-2048"}
    for (kname, label), r in both.items():
        record(kind="startup", key=kname, engine=label, **r)
        if kname == "ecdsa-p256":
            progress(f"start-up {label}: {med(r['cpu_ms']):.2f} ms")

    # ---- idle memory
    idle = {}
    for e in engines:
        idle[e.label] = r = idle_memory(e, ecdsa, a.idle)
        record(kind="idle", key="ecdsa-p256", engine=e.label, **r)
        progress(f"idle {e.label}: Pss {r['pss_kib']:.0f} KiB")

    # ---- bulk: repetitions outermost, engines innermost, so that a burst
    # of load elsewhere hits every engine rather than one
    size = a.bulk_mib << 20
    pins = [True, False] if ENGINE_CPU is not None else [False]
    bulk = {}
    suites = {}
    for pinned in pins:
        pin_self(DRIVER_CPU if pinned else None)
        for client in ("python", "c"):
            for direction in ("app->client", "client->app"):
                for _ in range(a.reps):
                    for e in engines:
                        u, s, suite = bulk_once(e, ecdsa, client, direction, size, pinned)
                        gib = size / (1 << 30)
                        bulk.setdefault((pinned, client, direction, e.label), []).append(
                            (u / gib, s / gib))
                        suites[client, e.label] = suite
                progress(f"bulk {'pinned' if pinned else 'unpinned'} {client} "
                         f"{direction} done")
    pin_self(None)
    for (pinned, client, direction, label), runs in bulk.items():
        record(kind="bulk", pinned=pinned, client=client, direction=direction,
               engine=label, mib=a.bulk_mib, user_s_gib=[u for u, _ in runs],
               sys_s_gib=[s for _, s in runs], suite=suites[client, label])

    # ---------------------------------------------------------------- print
    w = 15
    head = "".join(e.label.rjust(w) for e in cols)
    print()
    print(f"per connection: median of {a.conns} (p90), the engine's CPU "
          "(user+sys, wait4), ms")
    print(f"{'':34}{head}")
    for kname, title in (("ecdsa-p256", "ECDSA P-256"), ("rsa-2048", "RSA 2048")):
        row = ""
        for e in cols:
            # the plain relay (no TLS, no key) in the first row only
            r = conn.get(("none" if e.kind == "plain" and kname == "ecdsa-p256"
                          else kname, e.label))
            row += (f"{med(r['cpu_ms']):.2f} ({p90(r['cpu_ms']):.2f})" if r
                    else "-").rjust(w)
        print(f"{title + ' CPU ms':34}{row}")
    row = ""
    for e in cols:
        rs = [conn[k, e.label] for k in ("ecdsa-p256", "rsa-2048", "none")
              if (k, e.label) in conn]
        row += ("/".join(f"{med(r['hwm_kib']):.0f}" for r in rs) if rs else "-").rjust(w)
    print(f"{'peak RSS KiB (VmHWM) ECDSA/RSA':34}{row}")
    print(f"{'start-up to waiting, ms (p90)':34}" + "".join(
        (f"{med(start[e.label]['cpu_ms']):.2f} ({p90(start[e.label]['cpu_ms']):.2f})"
         if e.label in start else "-").rjust(w) for e in cols))
    print(f"{'  the same, RSA key':34}" + "".join(
        (f"{med(start_rsa[e.label]['cpu_ms']):.2f}" if e.label in start_rsa
         else "-").rjust(w) for e in cols))
    print(f"{f'idle, {a.idle} at once: Pss KiB':34}" + "".join(
        cell(idle[e.label]["pss_kib"] if e.label in idle else None, ".0f", w)
        for e in cols))
    print(f"{'  RssAnon KiB':34}" + "".join(
        cell(idle[e.label]["rss_anon_kib"] if e.label in idle else None, ".0f", w)
        for e in cols))
    print(f"{'  VmRSS KiB':34}" + "".join(
        cell(idle[e.label]["vmrss_kib"] if e.label in idle else None, ".0f", w)
        for e in cols))
    print("suites (Python client / C client):")
    for e in engines:
        c1 = conn.get(("ecdsa-p256", e.label), {}).get("suite", "none")
        print(f"  {e.label:10} conn ECDSA: {c1}; bulk: {suites.get(('python', e.label))}"
              f" / {suites.get(('c', e.label))}")

    head = "".join(e.label.rjust(w) for e in engines)
    print()
    print(f"bulk, one connection, {a.bulk_mib} MiB one way, ECDSA key, median of "
          f"{a.reps}: the engine's CPU s/GiB, total (user)")
    print(f"pinned: engine on CPU {ENGINE_CPU}, driver and client on CPU {DRIVER_CPU}; "
          "unpinned: the scheduler's")
    print(f"{'':34}{head}")

    def total(pinned, client, direction, label):
        runs = bulk.get((pinned, client, direction, label))
        return med([u + s for u, s in runs]) if runs else None

    for direction in ("app->client", "client->app"):
        for pinned in pins:
            for client in ("python", "c"):
                title = f"{direction} {'pinned' if pinned else 'unpinned'} {client}"
                row = ""
                for e in engines:
                    runs = bulk[pinned, client, direction, e.label]
                    row += (f"{total(pinned, client, direction, e.label):.2f} "
                            f"({med([u for u, _ in runs]):.2f})").rjust(w)
                print(f"{title:34}{row}")
    print(f"cipher's own cost (openssl speed -evp aes-256-gcm, 16 KiB): "
          f"{a.cipher_s_gib:.3f} s/GiB")

    # ---------------------------------------------------------------- targets
    print()
    print("targets (issue 20), for each of our binaries:")
    ok = True
    plain_conn = med(conn["none", "plain"]["cpu_ms"])

    def against_bearssl(value, theirs, ratio, spec, unit):
        """value <= ratio x BearSSL's figure, or SKIP without --bearssl."""
        if theirs is None:
            skip(f"{L}: {spec} <= {ratio} x BearSSL's (no --bearssl)")
            return True
        return verdict(value <= ratio * theirs,
                       f"{L}: {spec} {value:.2f} {unit} <= {ratio} x BearSSL's "
                       f"{theirs:.2f} = {ratio * theirs:.2f} {unit} ({value / theirs:.2f}x)")

    b_rsa = med(conn["rsa-2048", "bearssl"]["cpu_ms"]) if ("rsa-2048", "bearssl") in conn else None
    b_start = med(start["bearssl"]["cpu_ms"]) if "bearssl" in start else None
    b_idle = idle.get("bearssl", {})
    for e in ours:
        L = e.label
        ec = med(conn["ecdsa-p256", L]["cpu_ms"])
        rsa = med(conn["rsa-2048", L]["cpu_ms"])
        ok &= verdict(ec <= 2.0 * plain_conn,
                      f"{L}: ECDSA P-256 conn {ec:.2f} ms <= 2.0 x plain relay's "
                      f"{plain_conn:.2f} = {2 * plain_conn:.2f} ms ({ec / plain_conn:.2f}x)")
        ok &= against_bearssl(rsa, b_rsa, 0.5, "RSA 2048 conn", "ms")
        ok &= against_bearssl(med(start[L]["cpu_ms"]), b_start, 0.8, "start-up", "ms")
        for field, name in (("pss_kib", "Pss"), ("rss_anon_kib", "RssAnon")):
            ok &= against_bearssl(idle[L][field], b_idle.get(field), 0.9,
                                  f"idle {name}, {a.idle} at once,", "KiB")
        peak = max(med(conn[k, L]["hwm_kib"]) for k in ("ecdsa-p256", "rsa-2048"))
        print(f"INFO  {L}: peak RSS {peak:.0f} KiB (reported, not a target)")
        for pinned in pins:
            for client in ("python", "c"):
                how = f"{'pinned' if pinned else 'unpinned'} {client}"
                for direction in ("client->app", "app->client"):
                    cost = total(pinned, client, direction, L)
                    pl = total(pinned, client, direction, "plain")
                    if a.stunnel:
                        st = total(pinned, client, direction, "stunnel")
                        ok &= verdict(cost <= 0.7 * st,
                                      f"{L}: {direction} {how} {cost:.2f} <= 0.7 x "
                                      f"stunnel's {st:.2f} = {0.7 * st:.2f} s/GiB "
                                      f"({cost / st:.2f}x){below_floor(cost, 0.7 * st, pl)}")
                    else:
                        skip(f"{L}: bulk against stunnel (no stunnel)")
                    bound = pl + 1.5 * a.cipher_s_gib
                    ok &= verdict(cost <= bound,
                                  f"{L}: {direction} {how} {cost:.2f} <= plain "
                                  f"{pl:.2f} + 1.5 x cipher {a.cipher_s_gib:.2f} = "
                                  f"{bound:.2f} s/GiB")
    print(f"targets: {'all met' if ok else 'NOT all met'}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (Failure, OSError, ssl.SSLError) as exc:
        sys.exit(f"bench/compare: {exc}")
