# banger build.  `make` builds build/bin/{banger,bangerd}; `make test` runs
# the unit tests under ASan+UBSan (in build/san) and the pytest suites
# against the normal build; `make deps` installs what both need (apt-get).

CC       ?= cc
OPT      ?= -O2 -g
BUILD    ?= build
SANITIZE ?=
PYTHON   ?= /usr/bin/python3
PYTEST_ARGS ?=

PKGS := yaml-0.1 lmdb libmicrohttpd jansson libcurl libarchive libnl-3.0 libnl-route-3.0 libnftables libcrypto \
        libssh2 libgit2
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
        -Wvla -Wwrite-strings -Wformat=2 -fno-common
ifeq ($(DEVELOPER),1)
WARN += -Werror
endif
CFLAGS ?= $(OPT)
ALL_CFLAGS := -std=gnu11 $(CFLAGS) $(WARN) -D_GNU_SOURCE -Icommon -Ireconciler \
              $(PKG_CFLAGS) -MMD -MP
LDLIBS := $(PKG_LIBS) -lhttp_parser -lpthread
# Each binary loads only the libraries its own objects use (banger needs no
# netlink, nftables, LMDB or HTTP server): the CLI starts in half the time.
LDFLAGS += -Wl,--as-needed
ifneq ($(SANITIZE),)
ALL_CFLAGS += -fsanitize=$(SANITIZE) -fno-sanitize-recover=all -fno-omit-frame-pointer
LDFLAGS += -fsanitize=$(SANITIZE)
endif

COMMON_SRC := $(wildcard common/*.c)
RECON_SRC  := $(filter-out reconciler/main.c,$(wildcard reconciler/*.c))
# cli/lean.c and cli/full.c tell the two builds of the CLI apart (cli.h).
CLI_SRC    := $(filter-out cli/main.c cli/lean.c cli/full.c,$(wildcard cli/*.c))
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
BENCH_SRC  := $(wildcard bench/*.c)
TOOL_SRC   := $(wildcard tests/tools/*.c)
# The guest agent: static, libc only, never sanitized (it runs in guests).
AGENT_SRC  := $(wildcard agent/*.c) common/agent_proto.c

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

COMMON_LIB := $(BUILD)/lib/libbanger-common.a
RECON_LIB  := $(BUILD)/lib/libbanger-reconciler.a
CLI_LIB    := $(BUILD)/lib/libbanger-cli.a
BANGER     := $(BUILD)/bin/banger
BANGER_FULL := $(BUILD)/bin/banger-full
BANGERD    := $(BUILD)/bin/bangerd
AGENT      := $(BUILD)/bin/banger-agent
UNIT_BINS  := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
BENCH_BINS := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))
TOOL_BINS  := $(patsubst tests/tools/%.c,$(BUILD)/tests/tools/%,$(TOOL_SRC))

.PHONY: all deps test unit integration bench analyze clean demo
all: $(BANGER) $(BANGER_FULL) $(BANGERD) $(AGENT) $(TOOL_BINS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/obj/agent-static/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 $(OPT) $(WARN) -D_GNU_SOURCE -Icommon -MMD -MP -c -o $@ $<

$(AGENT): $(patsubst %.c,$(BUILD)/obj/agent-static/%.o,$(AGENT_SRC))
	@mkdir -p $(dir $@)
	$(CC) -static -s -o $@ $^

$(COMMON_LIB): $(call obj,$(COMMON_SRC))
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

$(RECON_LIB): $(call obj,$(RECON_SRC))
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

$(BANGERD): $(call obj,reconciler/main.c) $(RECON_LIB) $(COMMON_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(CLI_LIB): $(call obj,$(CLI_SRC))
	@mkdir -p $(dir $@)
	rm -f $@
	$(AR) rcs $@ $^

# From archives, each build takes only the objects its own parts call:
# the lean one no image, kernel or workspace code, hence no libgit2 and
# no libarchive (--as-needed).
$(BANGER): $(call obj,cli/main.c cli/lean.c) $(CLI_LIB) $(COMMON_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BANGER_FULL): $(call obj,cli/main.c cli/full.c) $(CLI_LIB) $(COMMON_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(call obj,tests/unit/%.c) $(RECON_LIB) $(COMMON_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

$(BUILD)/tests/tools/%: $(call obj,tests/tools/%.c) $(RECON_LIB) $(COMMON_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bench/%: $(call obj,bench/%.c) $(RECON_LIB) $(COMMON_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Every build and test dependency, from Debian's mirror; apt-get skips what
# is already installed, so running it twice changes nothing.
DEB_PKGS := build-essential pkg-config libyaml-dev liblmdb-dev libmicrohttpd-dev \
            libjansson-dev libcurl4-openssl-dev libarchive-dev libcmocka-dev python3 python3-pytest \
            python3-jsonschema python3-yaml curl \
            qemu-system-x86 qemu-utils e2fsprogs busybox-static dropbear-bin debootstrap \
            openssh-client iproute2 xz-utils zstd \
            libnl-3-dev libnl-route-3-dev libnftables-dev nftables libssl-dev \
            libssh2-1-dev libgit2-dev libhttp-parser-dev git
deps:
	@missing=$$(for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1 || $$SUDO apt-get update -qq; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	else echo "deps: all installed"; fi

SAN := BUILD=build/san SANITIZE=address,undefined OPT="-O1 -g"

unit:
	$(MAKE) $(SAN) unit-run

.PHONY: unit-run
unit-run: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; ASAN_OPTIONS=detect_leaks=1 $$t; done

integration: all
	BANGER_BUILD=$(CURDIR)/$(BUILD) $(PYTHON) -m pytest -q $(PYTEST_ARGS) tests/integration tests/e2e

# The integration suite runs the sanitized daemon and CLI too: a memory
# error or leak in bangerd fails the test that caused it.
test: deps
	$(MAKE) all
	$(MAKE) unit
	$(MAKE) $(SAN) integration

bench: $(BENCH_BINS) all
	@for b in $(BENCH_BINS); do echo "== $$b"; $$b; done
	BANGER_BUILD=$(CURDIR)/$(BUILD) $(PYTHON) bench/rss_bench.py
	BANGER_BUILD=$(CURDIR)/$(BUILD) $(PYTHON) bench/boot_bench.py
	BANGER_BUILD=$(CURDIR)/$(BUILD) $(PYTHON) bench/vmrun_bench.py
	BANGER_BUILD=$(CURDIR)/$(BUILD) $(PYTHON) bench/agent_bench.py

demo: all
	./scripts/demo.sh

analyze:
	$(MAKE) BUILD=build/analyze CFLAGS="-O1 -fanalyzer" all

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
