# Run inside gdb by bench/hot_symbols.py: which functions of the engine run,
# natively, on this CPU (valgrind hides AVX-512 and picks other variants).
# One breakpoint per function symbol, each disabled at its first hit, so a
# connection costs a few thousand stops, not millions.
# Environment: TRACE_BIN (the engine), TRACE_ARGS (its arguments, with the
# shell redirections that hand it the socket), TRACE_OUT (names, in order).

import os
import sys

import gdb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hot_symbols import text_symbols  # noqa: E402 (after the path)

binary = os.environ["TRACE_BIN"]
symbols = text_symbols(binary)

gdb.execute("set pagination off")
gdb.execute("set confirm off")
# The engine forks its key holder (src/holder/): both are traced, both run.
gdb.execute("set detach-on-fork off")
gdb.execute("set schedule-multiple on")
gdb.execute("starti " + os.environ["TRACE_ARGS"])

# Where the image was loaded: a static PIE moves, a fixed executable does not.
base = 0
for line in gdb.execute("info proc mappings", to_string=True).splitlines():
    if line.rstrip().endswith(binary):
        start = int(line.split()[0], 16)
        base = start if start >= 0x10000000 else 0
        break

hits = []


class FirstHit(gdb.Breakpoint):
    def stop(self):
        hits.append(self.symbol)
        self.enabled = False
        return False


for address, name in symbols:
    FirstHit("*%#x" % (base + address), internal=True).symbol = name

# Until every process has exited: the holder's exit stops gdb too.
while True:
    live = [i for i in gdb.inferiors() if i.pid]
    if not live:
        break
    gdb.execute("inferior %d" % live[0].num, to_string=True)
    gdb.execute("continue")
with open(os.environ["TRACE_OUT"], "w") as out:
    out.writelines(name + "\n" for name in hits)
