#!/usr/bin/env python3
"""Start-up cost and resident memory of the engine, beside bench/run.

    bench/memory.py ENGINE CERT KEY [N]

- start-up: the engine's CPU (user+sys, wait4) from exec to waiting for the
  ClientHello (spawned on a socketpair, killed 30 ms later), median of N;
- memory: N idle established connections at once (handshake done, one byte
  through), the means of VmRSS, Pss (what the machine pays: the
  executable's pages are shared), RssAnon and page tables.
Python's ssl is the client; everything runs on socketpairs and pipes.
"""

import os
import socket
import ssl
import subprocess
import sys
import time

import children  # bench/children.py: the engine read back from disk first


def spawn(engine, cert, key, sock):
    r, w = os.pipe()
    r2, w2 = os.pipe()
    p = subprocess.Popen([engine, "--", str(r), str(w2)], stdin=sock, stdout=sock,
                         pass_fds=(r, w2), env={"CERTFILE": cert, "KEYFILE": key})
    os.close(r)
    os.close(w2)
    sock.close()
    return p, w, r2


def field(pid, name, what):
    with open(f"/proc/{pid}/{name}") as f:
        for line in f:
            if line.startswith(what + ":"):
                return int(line.split()[1])
    return 0


def main():
    engine, cert, key = sys.argv[1:4]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 100
    children.from_disk(engine)

    cpu = []
    for _ in range(n):
        a, b = socket.socketpair()
        p, w, r2 = spawn(engine, cert, key, b)
        time.sleep(0.03)
        p.kill()
        _, _, ru = os.wait4(p.pid, 0)
        cpu.append((ru.ru_utime + ru.ru_stime) * 1000)
        for fd in (w, r2):
            os.close(fd)
        a.close()
    cpu.sort()
    print(f"start-up to waiting for the ClientHello, n={n}: CPU median "
          f"{cpu[n // 2]:.2f} ms, p90 {cpu[n * 9 // 10]:.2f} ms")

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    live = []
    for _ in range(n):
        a, b = socket.socketpair()
        p, w, r2 = spawn(engine, cert, key, b)
        tls = ctx.wrap_socket(a, server_hostname="localhost")
        tls.sendall(b"x")
        os.read(r2, 1)
        live.append((p, tls, w, r2))
    time.sleep(0.3)
    pids = [p.pid for p, _, _, _ in live]
    mean = lambda name, what: sum(field(pid, name, what) for pid in pids) / n
    print(f"{n} idle established connections, means: VmRSS {mean('status', 'VmRSS'):.0f} KiB, "
          f"Pss {mean('smaps_rollup', 'Pss'):.0f} KiB, RssAnon {mean('status', 'RssAnon'):.0f} KiB, "
          f"page tables {mean('status', 'VmPTE'):.0f} KiB")
    for p, tls, w, r2 in live:
        p.kill()
        p.wait()
        tls.close()
        os.close(w)
        os.close(r2)


if __name__ == "__main__":
    main()
