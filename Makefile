# batchrep — plain GNU make. Targets:
#   make            build bin/batchrep and the test programs
#   make test       install dependencies, build, run every test (unit + integration on moto)
#   make check      build, then the symbol check (every global carries its module prefix)
#                   and the include check (every include points down DESIGN.md's layers)
#   make check-asan the whole test suite under AddressSanitizer + UndefinedBehaviorSanitizer
#   make bench      hot-path micro-benchmarks (one machine-readable line each)
#   make bench-full also the end-to-end benchmarks: instant endpoint, scale, Ceph RGW + peers
#   make demo       install, build, start moto with sample versioned data, run a job, show the report
#   make deps       install the Debian packages (scripts/install-deps.sh)

BUILD   ?= build
CC      ?= cc
OPT     ?= -O2 -g
SAN     ?=
# -Wformat-truncation stays on (-Wall): a path, key or ID cut short names something else, so
# every snprintf that could cut one checks its result; a message that is cut on purpose says
# so with an explicit precision ("%.*s").
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
           -MMD -MP $(OPT) $(SAN) -I.
LDFLAGS += $(SAN)
LDLIBS  := -lcurl -lmicrohttpd -lcsv -lexpat -ljansson -lcrypto -lz -lzstd -lsqlite3 -lpthread -lm

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

.PHONY: all test check check-asan bench bench-full demo deps clean unit integration
all: $(BUILD)/bin/batchrep $(UNIT_BIN) $(TOOL_BIN) $(BENCH_BIN)

$(BUILD)/%.o: %.c
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

deps:
	bash scripts/install-deps.sh

# Every exported symbol carries its module prefix (STYLE.md "Names say what and whose"), and
# every include points down the layers (DESIGN.md "Layout").
check: all
	bash scripts/check-symbols.sh $(LIB_OBJ) $(CLI_OBJ)
	bash scripts/check-includes.sh

unit: all
	bash tests/run-unit.sh $(BUILD)

integration: all
	bash tests/run-integration.sh $(BUILD)

test: deps
	$(MAKE) check
	$(MAKE) unit
	$(MAKE) integration

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
	rm -rf build build-asan

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
