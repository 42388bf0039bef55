#!/usr/bin/env python3
"""What loading an RSA key costs each connection (every connection is a
process, so it loads the key again), for one or more engine binaries:
callgrind's instruction count for one RSA 2048 connection (TLS 1.3), the
part of it spent in the key's load, and the CPU of N connections of each,
interleaved in blocks of 10. Read bench/README.md, "RSA key check".

    bench/rsa_key.py [-n N] [LABEL=]ENGINE...

Repeatable under load: the instruction counts do not depend on it; the CPU
figures do, hence the interleaving.
"""

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hot_symbols  # noqa: E402  one traced connection, as `trace` runs it

BLOCK = 10
# The key pair's load at start-up: files read, PEM decoded, the key built
# and checked (rsa.rs, or the provider's loader), matched with the cert: the
# engine's KeyStore::load before issue 25, the key holder's read and load
# of the default pair since.
LOAD = re.compile(r"sni::KeyStore::load")
READ_AND_LOAD = re.compile(r"keys::KeyPair::(read_default|load)$")
# The key holder's whole life after the fork: its profile (`each`) holds
# the engine's instructions up to the fork as well, which count once.
HOLDER = re.compile(r"holder::serve::run")


def make_key(work):
    cert, key = os.path.join(work, "rsa.cert.pem"), os.path.join(work, "rsa.key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-keyout", key, "-out", cert, "-subj", "/CN=localhost",
                    "-days", "2"], check=True, capture_output=True)
    return cert, key


def instructions(engine, cert, key, work, label):
    """Total Ir of one connection, the engine's and its key holder's, and
    the largest inclusive Ir among the functions that load the key."""
    out = os.path.join(work, f"{label}.callgrind")
    wrapper = hot_symbols.callgrind_wrapper(engine, out, out + ".log")
    hot_symbols.python_connection(wrapper, cert, key, hot_symbols.ssl.TLSVersion.TLSv1_3)
    total = load = 0
    for profile in hot_symbols.each(out):
        text = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100",
                               profile], capture_output=True, text=True, check=True).stdout
        own = holder = store = 0
        parts = {}
        for line in text.splitlines():
            m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)", line)
            if not m:
                continue
            ir = int(m.group(1).replace(",", ""))
            name = m.group(2).split(" [")[0]
            if "PROGRAM TOTALS" in name:
                own = ir
            elif HOLDER.search(name):
                holder = max(holder, ir)
            elif LOAD.search(name):
                store = max(store, ir)
            elif READ_AND_LOAD.search(name):
                parts[name] = max(parts.get(name, 0), ir)
        total += holder or own
        load = max(load, store or sum(parts.values()))
    return total, load


def cpu_ms(engine, cert, key):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    hot_symbols.python_connection(engine, cert, key, hot_symbols.ssl.TLSVersion.TLSv1_3)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) * 1000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=200, help="connections per engine")
    parser.add_argument("engines", nargs="+")
    args = parser.parse_args()
    engines = {}
    for e in args.engines:
        label, _, path = e.rpartition("=")
        engines[label or os.path.basename(path)] = os.path.abspath(path)
    with tempfile.TemporaryDirectory() as work:
        cert, key = make_key(work)
        counts = {label: instructions(e, cert, key, work, label) for label, e in engines.items()}
        cpu = {label: [] for label in engines}
        for done in range(0, args.n, BLOCK):
            for label, e in engines.items():
                for _ in range(min(BLOCK, args.n - done)):
                    cpu[label].append(cpu_ms(e, cert, key))
    print(f"{'engine':<12} {'Ir/conn':>12} {'Ir in load':>12} {'CPU ms median':>14} {'p90':>6}")
    for label in engines:
        total, load = counts[label]
        xs = sorted(cpu[label])
        p90 = xs[min(len(xs) - 1, int(len(xs) * 0.9))]
        print(f"{label:<12} {total:>12,} {load:>12,} {statistics.median(xs):>14.3f} {p90:>6.3f}")


if __name__ == "__main__":
    main()
