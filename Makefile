# For packagers:   make && make install DESTDIR=/tmp/pkg PREFIX=/usr
# BINDIR and MANDIR, given on the command line, override the directories
# under $(DESTDIR): BINDIR=/usr/bin puts the engine where an s6-networking
# built with --enable-absolute-paths looks for it (README.md says more).

PREFIX = /usr/local
BINDIR = $(PREFIX)/bin
MANDIR = $(PREFIX)/share/man
CARGO = cargo
# cargo's own variable: where it builds.
CARGO_TARGET_DIR ?= target
# cargo builds for this machine (no target is pinned), hence into release/.
BIN = $(CARGO_TARGET_DIR)/release/s6-tlsd-io

all:
	$(CARGO) build --release --locked

$(BIN):
	$(CARGO) build --release --locked

# The binary is copied next to its destination, then renamed over it: an
# engine that runs keeps its old file, the next connection gets the new one,
# and no connection ever finds the file missing or half written.
install: $(BIN)
	mkdir -p $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1
	install -m 755 $(BIN) $(DESTDIR)$(BINDIR)/.s6-tlsd-io.new
	mv -f $(DESTDIR)$(BINDIR)/.s6-tlsd-io.new $(DESTDIR)$(BINDIR)/s6-tlsd-io
	install -m 644 doc/s6-tlsd-io.1 $(DESTDIR)$(MANDIR)/man1/s6-tlsd-io.1

.PHONY: all install
