# pairbeat — build, test, install.
#
#   make            build release binaries
#   make test       install missing test prerequisites, run make lint, then every test
#   make lint       cargo fmt --check, clippy with warnings as errors, shellcheck on every
#                   shell script (scripts/lint), no cycle between modules (scripts/module-graph)
#   make demo       a two-node lab on this machine: start, crash the active node, fail over
#   make bench      the failover benchmark, pairbeat beside Heartbeat, keepalived and
#                   Pacemaker (scripts/bench-anchors), the step-by-step breakdown and the
#                   100-cycle no-lost-commit campaign (BENCHMARKS.md)
#   make install    binaries (pairbeatd, pairbeat, pairbeat-replicad) to /usr/sbin, agents to /usr/lib/ocf/resource.d/pairbeat
#                   and /etc/ha.d/resource.d (replicadisk),
#                   sample config to /etc/pairbeat, systemd unit, SysV init script
#                   (DESTDIR and PREFIX respected)

PREFIX   ?= /usr
SBINDIR  ?= $(PREFIX)/sbin
OCFDIR   ?= $(PREFIX)/lib/ocf/resource.d/pairbeat
HARESDIR ?= /etc/ha.d/resource.d
CONFDIR  ?= /etc/pairbeat
UNITDIR  ?= /lib/systemd/system
INITDIR  ?= /etc/init.d
CARGO    ?= cargo

.PHONY: all build test lint setup install uninstall clean demo lab-down bench

all: build

build:
	$(CARGO) build --release --locked

setup:
	./scripts/setup

# Formatting, clippy and ShellCheck: any finding fails.
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	./scripts/lint
	./scripts/module-graph --quiet

test: setup lint
	$(CARGO) test --locked --all-targets
	$(CARGO) test --locked --doc

# The README's first command: pairbeat failing over in a two-node lab on this machine.
demo: setup build
	./scripts/demo

lab-down:
	./scripts/lab down

# Failover, switchover, idle cost and false-failover figures (long: see BENCHMARKS.md).
bench: build
	./scripts/setup --bench
	./scripts/bench
	./scripts/bench-anchors
	./scripts/bench-breakdown
	./scripts/bench-postgres
	./scripts/bench-idle

install: build
	install -D -m 0755 target/release/pairbeatd $(DESTDIR)$(SBINDIR)/pairbeatd
	install -D -m 0755 target/release/pairbeat $(DESTDIR)$(SBINDIR)/pairbeat
	install -D -m 0755 target/release/pairbeat-replicad $(DESTDIR)$(SBINDIR)/pairbeat-replicad
	install -d -m 0755 $(DESTDIR)$(OCFDIR)
	for a in agents/*; do \
		case "$$a" in *.md) continue;; esac; \
		[ -f "$$a" ] && install -m 0755 "$$a" $(DESTDIR)$(OCFDIR)/; \
	done; true
	# Heartbeat v1 resource scripts (heartbeat:NAME, haresources' NAME::ARG).
	install -D -m 0755 agents/heartbeat/replicadisk $(DESTDIR)$(HARESDIR)/replicadisk
	install -d -m 0755 $(DESTDIR)$(CONFDIR)
	install -m 0644 etc/pairbeat.toml $(DESTDIR)$(CONFDIR)/pairbeat.toml.sample
	# Never overwrite a configuration an operator already has.
	[ -e $(DESTDIR)$(CONFDIR)/pairbeat.toml ] || install -m 0600 etc/pairbeat.toml $(DESTDIR)$(CONFDIR)/pairbeat.toml
	[ -e $(DESTDIR)$(CONFDIR)/authkeys ] || install -m 0600 etc/authkeys $(DESTDIR)$(CONFDIR)/authkeys
	install -D -m 0644 etc/pairbeatd.service $(DESTDIR)$(UNITDIR)/pairbeatd.service
	install -D -m 0644 etc/pairbeat-replicad@.service $(DESTDIR)$(UNITDIR)/pairbeat-replicad@.service
	install -D -m 0755 etc/init.d/pairbeat $(DESTDIR)$(INITDIR)/pairbeat

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/pairbeatd $(DESTDIR)$(SBINDIR)/pairbeat $(DESTDIR)$(SBINDIR)/pairbeat-replicad $(DESTDIR)$(CONFDIR)/pairbeat.toml.sample
	rm -f $(DESTDIR)$(UNITDIR)/pairbeatd.service $(DESTDIR)$(UNITDIR)/pairbeat-replicad@.service $(DESTDIR)$(INITDIR)/pairbeat
	for a in agents/*; do rm -f $(DESTDIR)$(OCFDIR)/$$(basename "$$a"); done
	rm -f $(DESTDIR)$(HARESDIR)/replicadisk

clean:
	$(CARGO) clean
