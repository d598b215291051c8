# batchrep — plain GNU make. Targets:
#   make            build bin/batchrep and the test programs
#   make test       install dependencies, build, run every test (unit, a brief pass of each
#                   fuzz target, integration on moto)
#   make check      build, then the symbol check (every global carries its module prefix),
#                   the include check (every include points down DESIGN.md's layers) and the
#                   hardening check (PIE, RELRO + now, stack protector, FORTIFY)
#   make check-asan the whole test suite under AddressSanitizer + UndefinedBehaviorSanitizer
#   make fuzz       every libFuzzer target (tests/fuzz/) for FUZZ_SECONDS (default 60) each
#   make bench      hot-path micro-benchmarks (one machine-readable line each)
#   make bench-full also the end-to-end benchmarks: instant endpoint, scale, Ceph RGW + peers
#   make demo       install, build, start moto with sample versioned data, run a job, show the report
#   make deps       install the Debian packages (scripts/install-deps.sh)

BUILD   ?= build
CC      ?= cc
OPT     ?= -O2 -g
SAN     ?=
USER_CFLAGS := $(CFLAGS)
# Hardened by default, as Debian's dpkg-buildflags hardening=+all: _FORTIFY_SOURCE (3 where
# the compiler and C library support it, e.g. Debian 12's gcc 12 and glibc 2.36; else 2), the
# strong stack protector, a position-independent executable, and RELRO with immediate
# binding (the GOT is read-only before main runs). _FORTIFY_SOURCE needs an optimised build
# and is added only to one; an OPT or CFLAGS that sets it itself wins
# (make OPT="-O2 -D_FORTIFY_SOURCE=3"). HARDEN_CFLAGS= HARDEN_LDFLAGS= turn it all off (the
# fuzz build: its sanitizers do the checking). `make check` checks the binaries
# (scripts/check-hardening.sh).
FORTIFY_LEVEL := $(shell echo 'int x;' | $(CC) -x c -include string.h -O2 -D_FORTIFY_SOURCE=3 \
                   -Werror -fsyntax-only - >/dev/null 2>&1 && echo 3 || echo 2)
FORTIFY_FLAG  := $(if $(findstring _FORTIFY_SOURCE,$(OPT) $(USER_CFLAGS)),,$(if \
                   $(filter -O -O1 -O2 -O3 -Os -Og -Ofast,$(OPT)),-D_FORTIFY_SOURCE=$(FORTIFY_LEVEL)))
HARDEN_CFLAGS  ?= $(FORTIFY_FLAG) -fstack-protector-strong -fPIE
HARDEN_LDFLAGS ?= -pie -Wl,-z,relro,-z,now
# libpq (jobs/store_pg.c, the shared catalogue): Debian's libpq-dev puts <libpq-fe.h> in
# /usr/include/postgresql; pkg-config says so, pg_config when there is no libpq.pc.
PQ_CFLAGS := $(shell pkg-config --cflags libpq 2>/dev/null || echo "-I$$(pg_config --includedir 2>/dev/null)")
CFLAGS  += $(PQ_CFLAGS)
# -Wformat-truncation stays on (-Wall): a path, key or ID cut short names something else, so
# every snprintf that could cut one checks its result; a message that is cut on purpose says
# so with an explicit precision ("%.*s").
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
           -MMD -MP $(OPT) $(HARDEN_CFLAGS) $(SAN) -I.
LDFLAGS += $(SAN) $(HARDEN_LDFLAGS)
# Objects depend on the flags they were built with, so a change of OPT, SAN or the hardening
# rebuilds the folder instead of mixing old and new objects (redis's .make-settings).
FLAGS_STAMP := $(BUILD)/.flags
FLAGS_NOW   := $(CC) $(CFLAGS) $(LDFLAGS)
$(shell mkdir -p $(BUILD) && { [ "$$(cat $(FLAGS_STAMP) 2>/dev/null)" = '$(FLAGS_NOW)' ] || \
          echo '$(FLAGS_NOW)' > $(FLAGS_STAMP); })
LDLIBS  := -lcurl -lmicrohttpd -lcsv -lexpat -ljansson -lcrypto -lz -lzstd -lsqlite3 -lpq \
           -lpthread -lm

S3_SRC       := $(wildcard s3/*.c)
MANIFEST_SRC := $(wildcard manifest/*.c)
REPORT_SRC   := $(wildcard report/*.c)
REPL_SRC     := $(wildcard replicate/*.c)
ENGINE_SRC   := $(wildcard engine/*.c)
JOBS_SRC     := $(wildcard jobs/*.c)
RUN_SRC      := $(wildcard run/*.c)
CLI_SRC      := $(wildcard cli/*.c)
LIB_SRC      := $(S3_SRC) $(MANIFEST_SRC) $(REPORT_SRC) $(REPL_SRC) $(ENGINE_SRC) $(JOBS_SRC) \
                $(RUN_SRC)
LIB_OBJ      := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ      := $(CLI_SRC:%.c=$(BUILD)/%.o)
UNIT_SRC     := $(wildcard tests/unit/test_*.c)
UNIT_BIN     := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TOOL_SRC     := $(wildcard tests/tools/*.c)
TOOL_BIN     := $(TOOL_SRC:tests/tools/%.c=$(BUILD)/tests/tools/%)
BENCH_SRC    := $(wildcard bench/bench_*.c)
BENCH_BIN    := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
FUZZ_SRC     := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN     := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)
FUZZ_SECONDS ?= 60
# The libFuzzer targets (tests/fuzz/): clang, the library sources built again in their own
# folder with coverage instrumentation (fuzzer-no-link), ASan and UBSan, without the
# hardening flags (FORTIFY's __*_chk calls would hide accesses from ASan).
FUZZ_MAKE = $(MAKE) BUILD=build-fuzz CC=clang OPT="-O1 -g -fno-omit-frame-pointer" \
            SAN="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all" \
            HARDEN_CFLAGS= HARDEN_LDFLAGS=

.PHONY: all test check check-asan bench bench-full demo deps clean unit integration fuzz \
        fuzz-brief fuzz-bins
all: $(BUILD)/bin/batchrep $(UNIT_BIN) $(TOOL_BIN) $(BENCH_BIN)

$(BUILD)/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libbatchrep.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && $(AR) rcs $@ $^  # afresh: a removed source leaves no stale member

$(BUILD)/bin/batchrep: $(CLI_OBJ) $(BUILD)/libbatchrep.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libbatchrep.a $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(BUILD)/tests/unit/tap.o $(BUILD)/libbatchrep.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(BUILD)/tests/unit/tap.o $(BUILD)/libbatchrep.a $(LDLIBS)

$(BUILD)/tests/tools/%: $(BUILD)/tests/tools/%.o $(BUILD)/libbatchrep.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(BUILD)/libbatchrep.a $(LDLIBS)

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(BUILD)/libbatchrep.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(BUILD)/libbatchrep.a $(LDLIBS)

$(BUILD)/fuzz/%: $(BUILD)/tests/fuzz/%.o $(BUILD)/tests/fuzz/util.o $(BUILD)/libbatchrep.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $< $(BUILD)/tests/fuzz/util.o \
	  $(BUILD)/libbatchrep.a $(LDLIBS)

# Only with FUZZ_MAKE's flags (fuzz, fuzz-brief).
fuzz-bins: $(FUZZ_BIN)

deps:
	bash scripts/install-deps.sh

# Every exported symbol carries its module prefix (STYLE.md "Names say what and whose"), and
# every include points down the layers (DESIGN.md "Layout").
check: all
	bash scripts/check-symbols.sh $(LIB_OBJ) $(CLI_OBJ)
	bash scripts/check-includes.sh
	bash scripts/check-hardening.sh $(BUILD)

unit: all
	bash tests/run-unit.sh $(BUILD)

integration: all
	bash tests/run-integration.sh $(BUILD)

test: deps
	$(MAKE) check
	$(MAKE) unit
	$(MAKE) fuzz-brief
	$(MAKE) integration

# Every fuzz target for FUZZ_SECONDS (default 60) each, two or more at once (tests/fuzz/run.sh);
# fuzz-brief is make test's pass: the corpus once, then 5 s of new inputs each.
fuzz: deps
	$(FUZZ_MAKE) fuzz-bins
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash tests/fuzz/run.sh build-fuzz full

fuzz-brief:
	$(FUZZ_MAKE) fuzz-bins
	bash tests/fuzz/run.sh build-fuzz brief

check-asan: deps
	$(MAKE) BUILD=build-asan OPT="-O1 -g -fno-omit-frame-pointer" \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=all" unit integration

bench: all
	bash bench/run.sh $(BUILD)

bench-full: all
	bash bench/run.sh $(BUILD) full

demo: deps all
	bash scripts/demo.sh $(BUILD)/bin/batchrep

clean:
	rm -rf build build-asan build-fuzz

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
