"""The benches' child processes (engines, peers, clients): each one not yet
reaped is in LIVE and is killed when the script exits, however it exits
(an error, ^C, timeout(1)'s TERM); a bounded wait for one; and an
engine's binary read back from disk before it is measured.

    import children
    children.from_disk(path)
    children.LIVE.add(proc.pid)
    code, rusage = children.reap(proc.pid, timeout)
"""

import atexit
import os
import select
import signal
import sys

LIVE = set()  # pids not reaped yet


class StillRunning(Exception):
    """reap gave up: the child was killed (and reaped) after `timeout`."""


def kill_live():
    # a second signal (timeout(1) passing on bench/run's TERM after a ^C)
    # must not cut the clean-up short
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for pid in list(LIVE):
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except OSError:
            pass
        LIVE.discard(pid)


atexit.register(kill_live)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
signal.signal(signal.SIGINT, lambda *_: sys.exit(130))


def reap(pid, timeout):
    """Waits at most `timeout` seconds for `pid`: (exit code, rusage).
    Past that, kills and reaps it, then raises StillRunning."""
    fd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    if not ready:
        os.kill(pid, signal.SIGKILL)
    _, status, ru = os.wait4(pid, 0)
    LIVE.discard(pid)
    if not ready:
        raise StillRunning(pid)
    return os.waitstatus_to_exitcode(status), ru


def from_disk(path):
    """Drops path's pages from the page cache, so that an engine runs as it
    would after a boot, its code read back from disk. A binary just
    written (by cargo, cp or dpkg) sits in the cache in larger folios, and
    a page fault maps a whole folio: the same binary's peak RSS was 1452
    KiB just copied and 1324 KiB read back (ext4, Linux 6.18). Needs no
    privilege; shared libraries are left as they are."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # dirty pages cannot be dropped
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
