#!/usr/bin/env python3
"""The functions a connection runs, then the static data it writes, for the
linker's --symbol-ordering-file (link/hot-symbols.txt, given to the linker by
build.rs where it takes one). Read bench/README.md.

    hot_symbols.py trace ENGINE PQ_CONN DIR   names on stdout, first run first
    hot_symbols.py check ENGINE FILE          how many names of FILE ENGINE has
    hot_symbols.py keep OLD TRACED ENGINE     TRACED, plus OLD's other-CPU names

Why: the kernel maps a file's pages 64 KiB at a time around each page fault
("fault-around"), so a connection that runs 1,100 functions scattered over
3.2 MiB of code had 2.4 MiB of it resident. Laid out together first in .text
they fill a few hundred KiB.

`trace` runs connections through the engine under three tracers and keeps
every function the first two saw, and every .data or .bss symbol the third
saw written (valgrind's lackey, --trace-mem): gdb (gdb_entries.py: the engine natively on this CPU,
AVX-512 paths included) and valgrind's callgrind (valgrind's CPU has no
AVX-512, so it takes the AVX2 paths other machines take). Connections: an
ECDSA and an RSA key, each with a TLS 1.3 and a TLS 1.2 client (Python's
ssl), plus the post-quantum hybrid through examples/pq_conn.rs (PQ_CONN),
then, with TLS_TICKET_KEYFILE (DIR/tickets), a TLS 1.3 connection that
gets a ticket and one that resumes with it.
DIR holds the keys ({ec,rsa}.{cert,key}.pem) and gets the scratch files.

aws-lc's C names carry its version (aws_lc_0_47_0_EVP_...): the file writes
"{aws_lc}_" in their place, and build.rs puts the prefix of the build back,
so an aws-lc-sys release leaves them valid. Rust's symbol names carry a hash
that changes with the compiler and the dependencies' versions, so after such
a change the file no longer names the engine's Rust functions: the engine
still links and works, with more of its code resident per connection.
`check` says how many names still match and warns below 90% (.ci/run runs
it on the release build); it never fails for that: run bench/hot-symbols.
"""

import bisect
import glob
import os
import re
import socket
import ssl
import subprocess
import sys

TIMEOUT = 300  # seconds per traced connection: gdb and valgrind are slow
PAYLOAD = bytes(range(100))
# aws-lc's symbol prefix, with its version, and what the file writes instead
# (build.rs's PREFIX_MARK).
AWS_LC_PREFIX = re.compile(r"aws_lc_[0-9]+_[0-9]+_[0-9]+_")
PREFIX_MARK = "{aws_lc}_"


def unversioned(name):
    """aws_lc_0_47_0_EVP_AEAD_CTX_seal as link/hot-symbols.txt writes it."""
    return AWS_LC_PREFIX.sub(PREFIX_MARK, name)


def text_symbols(binary):
    """(address, name) of every code symbol, sorted by address."""
    out = subprocess.run(["nm", "--defined-only", binary], capture_output=True,
                         text=True, check=True).stdout
    table = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[1] in "tTwWi":
            table.setdefault(int(fields[0], 16), fields[2])
    return sorted(table.items())


def data_symbols(binary):
    """(address, size, name) of every symbol in .data and .bss, by address."""
    sections = subprocess.run(["readelf", "-SW", binary], capture_output=True,
                              text=True, check=True).stdout
    ranges = []
    for line in sections.splitlines():
        fields = line.replace("[ ", "[").split()
        if len(fields) > 5 and fields[1] in (".data", ".bss"):
            start, size = int(fields[3], 16), int(fields[5], 16)
            ranges.append((start, start + size))
    out = subprocess.run(["nm", "-S", "--defined-only", binary], capture_output=True,
                         text=True, check=True).stdout
    table = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 4 and fields[2] in "bBdD":
            address, size = int(fields[0], 16), int(fields[1], 16)
            if any(lo <= address < hi for lo, hi in ranges):
                table.append((address, size, fields[3]))
    return sorted(table)


def entry_point(binary):
    header = subprocess.run(["readelf", "-hW", binary], capture_output=True,
                            text=True, check=True).stdout
    for line in header.splitlines():
        if "Entry point address:" in line:
            return int(line.split()[-1], 16)
    raise RuntimeError(f"{binary}: no entry point")


def written_names(log, symbols, entry):
    """The .data and .bss symbols that a lackey trace (--trace-mem) shows
    written. The first instruction run is the entry point: that gives the
    address valgrind loaded the engine at."""
    starts = [a for a, _, _ in symbols]
    base, written = None, set()
    with open(log) as f:
        for line in f:
            if base is None and line.startswith("I "):
                base = int(line[3:].split(",")[0], 16) - entry
            elif line[:2] in (" S", " M") and base is not None:
                at = int(line[3:].split(",")[0], 16) - base
                i = bisect.bisect_right(starts, at) - 1
                if i >= 0 and at < symbols[i][0] + max(symbols[i][1], 1):
                    written.add(symbols[i][2])
    return written


def lackey_wrapper(engine, out, log):
    # The trace goes to the log, one per process (the engine and its key
    # holder: `each`); seccomp would stop valgrind, as above.
    return write_script(out + ".sh", f"""#!/bin/sh
export S6_TLSD_IO_NO_SANDBOX=1
exec valgrind --tool=lackey --trace-mem=yes --log-file={log}.%p {engine} "$@"
""")


def each(path):
    """The files a traced connection left for `path`, one per process: the
    engine forks its key holder, which valgrind follows (`.%p`)."""
    return sorted(glob.glob(glob.escape(path) + ".[0-9]*"))


def write_script(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)
    return path


def gdb_wrapper(engine, out, log):
    # gdb keeps the terminal-less stdin for itself: the socket moves to fds
    # 50/51 and the inferior gets it back through TRACE_ARGS' redirections.
    here = os.path.dirname(os.path.abspath(__file__))
    return write_script(out + ".sh", f"""#!/bin/bash
exec 50<&0 51>&1
export TRACE_BIN={engine} TRACE_OUT={out} SHELL=/bin/bash
export TRACE_ARGS="$* <&50 >&51 50<&- 51>&-"
exec gdb -nx -batch -x {here}/gdb_entries.py --args {engine} </dev/null >{log} 2>&1
""")


def callgrind_wrapper(engine, out, log):
    # valgrind's own system calls would trip the engine's seccomp filter.
    # One profile per process (`each`): the key holder's own, after the
    # fork, holds the engine's counts up to the fork as well.
    return write_script(out + ".sh", f"""#!/bin/sh
export S6_TLSD_IO_NO_SANDBOX=1
exec valgrind --tool=callgrind --dump-instr=yes --callgrind-out-file={out}.%p \\
  --log-file={log}.%p {engine} "$@"
""")


def read_exact(fd, n):
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            raise RuntimeError("the engine closed the application side early")
        data += chunk
    return data


CONTEXTS = {}


def client_context(version):
    """One client context per version: a session resumes only with the
    context it came from."""
    if version not in CONTEXTS:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ctx.maximum_version = version
        CONTEXTS[version] = ctx
    return CONTEXTS[version]


def python_connection(wrapper, cert, key, version, tickets=None, session=None):
    """One connection as s6-tlsd would set it up: handshake, 100 bytes each
    way, then the client closes and so does the application. With `tickets`
    (a TLS_TICKET_KEYFILE), the session to resume, if any; returns the
    client's session for the next connection."""
    env = {"CERTFILE": cert, "KEYFILE": key}
    if tickets:
        env["TLS_TICKET_KEYFILE"] = tickets
    app_r, engine_w = os.pipe()
    engine_r, app_w = os.pipe()
    client, server = socket.socketpair()
    engine = subprocess.Popen([wrapper, "--", str(engine_r), str(engine_w)],
                              stdin=server, stdout=server,
                              pass_fds=(engine_r, engine_w),
                              env=env)
    for fd in (engine_r, engine_w):
        os.close(fd)
    server.close()
    try:
        ctx = client_context(version)
        client.settimeout(TIMEOUT)
        tls = ctx.wrap_socket(client, server_hostname="localhost", session=session)
        tls.sendall(PAYLOAD)
        read_exact(app_r, len(PAYLOAD))
        os.write(app_w, PAYLOAD)
        got = b""
        while len(got) < len(PAYLOAD):
            got += tls.recv(len(PAYLOAD) - len(got))
        if session is not None and not tls.session_reused:
            raise RuntimeError("the session did not resume")
        session = tls.session
        tls.close()
        # The application's EOF ends the other direction; no waiting for
        # the engine's EOF on app_r: a tracer holds a copy of that pipe.
        os.close(app_w)
        app_w = None
        engine.wait(timeout=TIMEOUT)
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.wait()
        os.close(app_r)
        if app_w is not None:
            os.close(app_w)
    return session


def gdb_names(out):
    with open(out) as f:
        return [line.strip() for line in f if line.strip()]


def callgrind_names(out, symbols, engine):
    """Functions holding an instruction callgrind counted in the engine."""
    starts = [a for a, _ in symbols]
    names, seen = [], set()
    objects = {}  # callgrind's name compression: "ob=(N) path", then "ob=(N)"
    in_engine, position = False, 0
    with open(out) as f:
        for line in f:
            if line.startswith(("ob=", "cob=")):
                key, _, rest = line.rstrip("\n").partition("=")
                ref, _, path = rest.partition(" ")
                if path:
                    objects[ref] = path
                if key == "ob":
                    in_engine = objects.get(ref) == engine
                continue
            if not line[:1] or line[0] not in "0123456789+-*":
                continue
            token = line.split()[0]
            if token != "*":
                step = int(token, 0)
                position = position + step if token[0] in "+-" else step
            if in_engine:
                i = bisect.bisect_right(starts, position) - 1
                if i >= 0 and symbols[i][1] not in seen:
                    seen.add(symbols[i][1])
                    names.append(symbols[i][1])
    return names


# The instruction sets glibc names its string functions' variants after.
CPU_TAGS = {"sse2", "sse4", "ssse3", "avx", "avx2", "avx512", "evex", "evex512", "erms"}


def family(name):
    """What a glibc CPU variant implements: __memcpy for
    __memcpy_avx_unaligned_erms and __memcpy_evex_unaligned_erms; None for
    any other name."""
    if not name.startswith("__"):
        return None
    head, _, rest = name[2:].partition("_")
    return "__" + head if head and rest.split("_")[0] in CPU_TAGS else None


def beside_sibling(order, name):
    """A function only callgrind saw: on a CPU with AVX-512, the AVX2
    variant the other kind of machine runs. It goes right after the first
    variant of its family already listed, where that machine's connections
    need it, not after every function gdb saw; anything else goes last."""
    kin = family(name)
    at = next((i for i, n in enumerate(order) if kin and family(n) == kin), None)
    if at is None:
        order.append(name)
    else:
        order.insert(at + 1, name)


def trace(engine, pq_conn, work):
    symbols = text_symbols(engine)
    data, entry = data_symbols(engine), entry_point(engine)
    order, seen = [], set()
    written = set()
    runs = 0
    for tracer in ("gdb", "callgrind", "lackey"):
        jobs = [(kind, version) for kind in ("ec", "rsa")
                for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2)]
        jobs.append(("pq", None))
        # Session tickets (TLS_TICKET_KEYFILE): a full handshake that sends
        # one, then a connection that resumes with it. Last, so that the
        # common path stays first.
        jobs += [("ec-ticket", ssl.TLSVersion.TLSv1_3), ("ec-resumed", ssl.TLSVersion.TLSv1_3)]
        session = None
        for kind, version in jobs:
            runs += 1
            out = os.path.join(work, f"trace{runs}.{tracer}")
            make = {"gdb": gdb_wrapper, "callgrind": callgrind_wrapper,
                    "lackey": lackey_wrapper}[tracer]
            wrapper = make(engine, out, out + ".log")
            if kind == "pq":
                subprocess.run([pq_conn, wrapper, "1"], check=True, timeout=TIMEOUT,
                               stdout=subprocess.DEVNULL)
            elif kind.startswith("ec-"):
                session = python_connection(wrapper, os.path.join(work, "ec.cert.pem"),
                                            os.path.join(work, "ec.key.pem"), version,
                                            os.path.join(work, "tickets"), session)
            else:
                python_connection(wrapper, os.path.join(work, f"{kind}.cert.pem"),
                                  os.path.join(work, f"{kind}.key.pem"), version)
            label = f"{tracer} {kind} {version and version.name or 'X25519MLKEM768'}"
            if tracer == "lackey":
                found = set()
                for log in each(out + ".log"):
                    found |= written_names(log, data, entry)
                    os.unlink(log)  # tens of MB each
                written |= found
                print(f"hot_symbols: {label}: {len(found)} data symbols written", file=sys.stderr)
                continue
            if tracer == "gdb":
                found = gdb_names(out)
            else:
                found = [n for f in each(out) for n in callgrind_names(f, symbols, engine)]
            print(f"hot_symbols: {label}: {len(found)} functions", file=sys.stderr)
            for name in found:
                if name not in seen:
                    seen.add(name)
                    if tracer == "callgrind":
                        beside_sibling(order, name)
                    else:
                        order.append(name)
    # Last, the static data a connection writes, smallest first: each
    # written page is a page of its own memory, and scattered among what
    # no connection writes they took 6 pages of .bss instead of 2. The
    # largest (glibc's 16 KiB table of thread keys, whose first entries
    # alone are written) goes last, its used start beside the rest.
    sizes = {name: size for _, size, name in data}
    order += sorted(written - seen, key=lambda n: (sizes.get(n, 0), n))
    sys.stdout.writelines(unversioned(name) + "\n" for name in order)


def check(engine, path):
    have = {unversioned(name) for _, name in text_symbols(engine)}
    have |= {unversioned(name) for _, _, name in data_symbols(engine)}
    with open(path) as f:
        wanted = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    rust = [n for n in wanted if n.startswith(("_ZN", "_R"))]
    found = sum(n in have for n in wanted)
    rust_found = sum(n in have for n in rust)
    share = found / len(wanted) if wanted else 0.0
    print(f"hot-symbols: {found} of {len(wanted)} names found in the engine "
          f"({share:.0%}; Rust {rust_found} of {len(rust)})")
    if share < 0.9:
        print("hot-symbols: warning: link/hot-symbols.txt is stale (a new compiler "
              "or new dependency versions rename symbols): the engine works, "
              "with more of its code resident per connection; bench/hot-symbols "
              "regenerates the list", file=sys.stderr)
    return 0


def keep_other_cpus(previous, traced, engine):
    """The traced names, plus the previous list's C names that this CPU did
    not run but the engine has (glibc's and aws-lc's variants for other
    CPUs: AVX-512 and EVEX ones traced on an Intel machine, AVX2 ones on an
    AMD one), each after the name it followed: a list made on one kind of
    machine keeps serving the other."""
    have = {unversioned(name) for _, name in text_symbols(engine)}
    try:
        with open(previous) as f:
            old = [l.strip() for l in f if l.strip() and not l.startswith("#")]
    except FileNotFoundError:
        old = []
    out = [unversioned(name) for name in traced]
    seen = set(out)
    for i, name in enumerate(old):
        if name in seen or name not in have or name.startswith(("_ZN", "_R")):
            continue
        before = next((old[j] for j in range(i - 1, -1, -1) if old[j] in seen), None)
        out.insert(out.index(before) + 1 if before else 0, name)
        seen.add(name)
    return out


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "keep":
        with open(sys.argv[3]) as f:
            traced = [l.strip() for l in f if l.strip()]
        sys.stdout.writelines(n + "\n" for n in keep_other_cpus(sys.argv[2], traced, sys.argv[4]))
        return 0
    if len(sys.argv) == 5 and sys.argv[1] == "trace":
        trace(*sys.argv[2:5])
        return 0
    if len(sys.argv) == 4 and sys.argv[1] == "check":
        return check(*sys.argv[2:4])
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
