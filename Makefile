# pyrate — PGXS build of the extension, plus the client library under
# src/client (built and installed by the same make / make install).

EXTENSION = pyrate
MODULE_big = pyrate
DATA = $(wildcard sql/pyrate--*.sql)
PGFILEDESC = "pyrate - sliding-window-log rate limiter"

CORE_OBJS = src/core/rate.o src/core/swlog.o
# Bottom-up: each file uses only the files listed before it (README, Layout;
# test/tools/layering.py checks it).
OBJS = \
	$(CORE_OBJS) \
	src/base.o \
	src/rate_type.o \
	src/tuples.o \
	src/routing.o \
	src/table_pending.o \
	src/engine_table.o \
	src/memory_arena.o \
	src/memory_file.o \
	src/memory_wal.o \
	src/engine_memory.o \
	src/engine.o \
	src/stats.o \
	src/limiter.o \
	src/define.o \
	src/trigger.o \
	src/worker.o \
	src/pyrate.o

PG_CPPFLAGS = -I$(srcdir)/src -I$(srcdir)/src/core

# Regression tests live in sql/ + expected/ (pg_regress's default layout);
# test/suites/10-regress.sh runs them on a preloaded server of its own.
# `make installcheck` runs them on a running server, which must preload
# pyrate too (shared_preload_libraries = 'pyrate': the stats test needs it).
REGRESS = rate define bucket slots stacked packed max_buckets durable limiter trigger stats privileges security readme
REGRESS_OPTS = --inputdir=$(srcdir) --load-extension=pyrate

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS tracks no header dependencies: every object depends on every header.
$(OBJS): $(wildcard src/*.h) src/core/pyrate_core.h

# The conformance replay tool (not installed); its client drivers go
# through libpyrate, built by src/client's own Makefile.
REPLAY = test/conformance/replay
REPLAY_SRCS = test/conformance/replay.c test/conformance/driver_core.c \
	test/conformance/driver_sql.c test/conformance/driver_client.c
LIBPYRATE = src/client/libpyrate.a
$(LIBPYRATE): FORCE
	$(MAKE) -C src/client libpyrate.a PG_CONFIG=$(PG_CONFIG)
$(REPLAY): $(REPLAY_SRCS) test/conformance/replay.h src/core/pyrate_core.h src/client/pyrate.h $(LIBPYRATE)
	$(CC) -O2 -g -Wall -Wextra -Isrc/core -Isrc/client -Itest/conformance -I$(shell $(PG_CONFIG) --includedir) \
		-o $@ $(REPLAY_SRCS) $(LIBPYRATE) -L$(shell $(PG_CONFIG) --libdir) -lpq -lhiredis -lsqlite3 -lpthread -lm
.PHONY: FORCE

all: $(REPLAY)
clean: clean-replay
clean-replay:
	rm -f $(REPLAY)

.PHONY: clean-replay

print-regress:
	@echo $(REGRESS)
.PHONY: print-regress

# Unit tests of the algorithm module, under ASan and UBSan (not installed).
test/unit/test_core: test/unit/test_core.c test/unit/naive.h src/core/rate.c src/core/swlog.c src/core/pyrate_core.h
	$(CC) -O1 -g -Wall -Wextra -fsanitize=address,undefined -fno-sanitize-recover=all \
		-Isrc/core -Itest/unit -o $@ test/unit/test_core.c src/core/rate.c src/core/swlog.c
all: test/unit/test_core
clean: clean-unit
clean-unit:
	rm -f test/unit/test_core
.PHONY: clean-unit

# libFuzzer targets (clang): the rate parser, and the log against the naive
# model.  test/suites/08-fuzz.sh runs them briefly; see README for long runs.
FUZZ_TARGETS = test/fuzz/fuzz_rate test/fuzz/fuzz_log
test/fuzz/fuzz_%: test/fuzz/fuzz_%.c src/core/rate.c src/core/swlog.c src/core/pyrate_core.h test/unit/naive.h
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
		-Isrc/core -Itest/unit -o $@ $< src/core/rate.c src/core/swlog.c
fuzz: $(FUZZ_TARGETS)
clean: clean-fuzz
clean-fuzz:
	rm -f $(FUZZ_TARGETS)
.PHONY: fuzz clean-fuzz

# The client library and the pyrate CLI: built and installed by the same
# make / make install (PREFIX, default /usr/local, and DESTDIR pass through).
all: client
client:
	$(MAKE) -C src/client PG_CONFIG=$(PG_CONFIG)
install: install-client
install-client: client
	$(MAKE) -C src/client install PG_CONFIG=$(PG_CONFIG)
clean: clean-client
clean-client:
	$(MAKE) -C src/client clean
.PHONY: client install-client clean-client

# Benchmarks: every ratio against its baseline, measured in one run, and the
# scaling plots (test/bench/results).  Starts its own servers.
bench: install
	bash test/bench/run-all.sh
bench-short: install
	PYRATE_BENCH_SHORT=1 bash test/bench/run-all.sh
.PHONY: bench bench-short

# PGXN: `make dist` writes pyrate-<version>.zip, HEAD as git archives it, with
# src/packaging/META.json at the root of the distribution, where PGXN reads it
# (the top directory holds only what the build needs).  Its versions must be
# pyrate.control's default_version as a semantic version (1.0 -> 1.0.0).
EXTVERSION := $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" pyrate.control)
DISTVERSION := $(if $(word 3,$(subst ., ,$(EXTVERSION))),$(EXTVERSION),$(EXTVERSION).0)
DIST = pyrate-$(DISTVERSION)
dist:
	@bad=$$(grep -E '^[[:space:]]*"version":' src/packaging/META.json | grep -vc '"$(DISTVERSION)"'); \
	if [ "$$bad" != 0 ]; then \
		echo "src/packaging/META.json: set both \"version\" fields to $(DISTVERSION) (pyrate.control says $(EXTVERSION))" >&2; \
		exit 1; \
	fi
	tmp=$$(mktemp -d) && cp src/packaging/META.json "$$tmp/META.json" && \
	git archive --format=zip --prefix=$(DIST)/ --add-file="$$tmp/META.json" -o $(DIST).zip HEAD; \
	rc=$$?; rm -rf "$$tmp"; exit $$rc
.PHONY: dist
