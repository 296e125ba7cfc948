# Sanctum — build, test, bench, demo, install.
#
#   make            build every binary into build/bin/
#   make deps       install missing Debian packages (no-op when present)
#   make test       unit tests, fuzz corpora, conformance, integration
#   make bench      benchmarks (ratios against raw libzmq / raw LMDB)
#   make test-deploy  the deployment files run for real (podman-compose,
#                   docker-compose 1.29, systemd; root;
#                   ~8 min, ~10 min when it builds the images)
#   make demo       start the suite and run the demo
#   make up         start the suite (./var) and keep it up; Ctrl-C stops it
#   make fuzz       libFuzzer targets (clang)
#   make install    PREFIX=/usr/local DESTDIR=
#   SANITIZER=address,undefined   build and test under ASan+UBSan
#   CC=clang        build with clang

CC        ?= cc
ifeq ($(origin CC),default)
  CC := cc
endif
PREFIX    ?= /usr/local
BUILD     ?= build
SANITIZER ?=

PKGS      := libczmq libzmq msgpack jansson libsodium lmdb libcurl libmicrohttpd inih yaml-0.1
CFLAGS_PKG := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LIBS_PKG   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter -fno-strict-aliasing \
           -D_GNU_SOURCE -Iproto -Ibus -Iservices/authz -Iservices/auditor -Iservices/ciba-broker -Iservices/vault-broker $(CFLAGS_PKG)
LDLIBS  += $(LIBS_PKG) -lpthread -lm
ifneq ($(SANITIZER),)
  CFLAGS  += -fsanitize=$(SANITIZER) -fno-omit-frame-pointer -fno-sanitize-recover=all
  LDFLAGS += -fsanitize=$(SANITIZER)
  BUILD   := build-san
endif

# The shared runtime: proto/ and bus/; bus_pid.c (getpid cached for libzmq,
# bus_pid.h) goes into the daemons and its test only
DAEMON_OBJ := $(BUILD)/obj/bus/bus_pid.o
CORE_SRC := $(wildcard proto/*.c) $(filter-out bus/bus_pid.c,$(wildcard bus/*.c))
CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/obj/%.o)
CORE_LIB := $(BUILD)/lib/libsanctum.a

# One library per service (all but main.c), one binary per service; the
# services are the names of bus/bus_services.def, the one list of them
SERVICES := ${shell sed -n 's/^BUS_SERVICE *( *"\([a-z0-9-]*\)".*/\1/p' bus/bus_services.def}
ifeq ($(SERVICES),)
  $(error no service read from bus/bus_services.def)
endif
svc_src   = $(filter-out services/$(1)/main.c,$(wildcard services/$(1)/*.c))
svc_lib   = $(BUILD)/lib/lib$(1).a
SVC_LIBS := $(foreach s,$(SERVICES),$(call svc_lib,$(s)))
SVC_BINS := $(foreach s,$(SERVICES),$(BUILD)/bin/sanctum-$(s))

CTL_SRC  := $(wildcard ops/sanctumctl/*.c)
CTL_OBJ  := $(CTL_SRC:%.c=$(BUILD)/obj/%.o)
CTL_BIN  := $(BUILD)/bin/sanctumctl

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_REPLAY := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/tests/replay_%)
BENCH_SRC := $(wildcard tests/bench/bench_*.c)
BENCH_BIN := $(BENCH_SRC:tests/bench/%.c=$(BUILD)/bench/%)

ALL_LIBS := $(SVC_LIBS) $(CORE_LIB)

# The build inside `make test`, `demo` and `up` runs one job per core unless
# the caller chose (-j or MAKEFLAGS): a newcomer's plain `make demo` should
# not build on one core.
PARALLEL = $$(case "$$MAKEFLAGS" in *j*) ;; *) echo -j$$(nproc) ;; esac)

# Helpers shared by unit tests, fuzz replayers and benches (not daemons)
SUPPORT_SRC := $(wildcard tests/support/*.c)
SUPPORT_LIB := $(BUILD)/lib/libtestsupport.a

.PHONY: all deps test unit-test bench demo up fuzz install clean dashboard test-deploy
all: $(CORE_LIB) $(SVC_BINS) $(CTL_BIN) dashboard

# The dashboard's files (telemetry serves them from share/sanctum/dashboard
# beside bin/), the text ones precompressed once here: FILE.gz beside FILE.
DASH_SRC := $(shell find services/telemetry/static -type f 2>/dev/null)
DASH_OUT := $(DASH_SRC:services/telemetry/static/%=$(BUILD)/share/sanctum/dashboard/%)
dashboard: $(DASH_OUT)
$(BUILD)/share/sanctum/dashboard/%: services/telemetry/static/%
	@mkdir -p $(dir $@)
	cp $< $@
	@case $@ in *.html|*.css|*.js|*.mjs|*.svg|*.json|*.txt) gzip -9 -n -k -f $@ ;; esac

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(CORE_LIB): $(CORE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@; ar rcs $@ $^

define SVC_RULES
$(call svc_lib,$(1)): $(patsubst %.c,$(BUILD)/obj/%.o,$(call svc_src,$(1)))
	@mkdir -p $$(dir $$@)
	rm -f $$@; ar rcs $$@ $$^
$(BUILD)/bin/sanctum-$(1): $(BUILD)/obj/services/$(1)/main.o $(DAEMON_OBJ) $(call svc_lib,$(1)) $(CORE_LIB)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS)
endef
$(foreach s,$(SERVICES),$(eval $(call SVC_RULES,$(s))))

# sanctumctl links the authz engine for `authz test` (an embedded engine on a
# temporary store, as `fga model test` does) and the auditor's verifiers for
# `audit` (proofs and signatures checked locally); the rest uses the bus.
$(CTL_BIN): $(CTL_OBJ) $(call svc_lib,authz) $(call svc_lib,auditor) $(call svc_lib,ciba-broker) $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(CTL_OBJ) $(call svc_lib,authz) $(call svc_lib,auditor) $(call svc_lib,ciba-broker) $(CORE_LIB) $(LDLIBS)

$(SUPPORT_LIB): $(SUPPORT_SRC:%.c=$(BUILD)/obj/%.o)
	@mkdir -p $(dir $@)
	rm -f $@; ar rcs $@ $^

$(BUILD)/tests/test_%: $(BUILD)/obj/tests/unit/test_%.o $(SUPPORT_LIB) $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(SUPPORT_LIB) $(ALL_LIBS) $(LDLIBS) -lcmocka
$(BUILD)/tests/test_pid: $(DAEMON_OBJ)

# Fuzz targets: replayed over their corpus under plain gcc (and sanitizers)
$(BUILD)/tests/replay_%: $(BUILD)/obj/tests/fuzz/%.o $(BUILD)/obj/tests/fuzz/replay_main.o $(SUPPORT_LIB) $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(BUILD)/obj/tests/fuzz/replay_main.o $(SUPPORT_LIB) $(ALL_LIBS) $(LDLIBS)

$(BUILD)/bench/bench_%: $(BUILD)/obj/tests/bench/bench_%.o $(SUPPORT_LIB) $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(SUPPORT_LIB) $(ALL_LIBS) $(LDLIBS)

deps:
	@sh ops/deps.sh

test: deps
	@$(MAKE) --no-print-directory $(PARALLEL) all $(UNIT_BIN) $(FUZZ_REPLAY) $(BENCH_BIN)
	@BUILD=$(BUILD) sh tests/run.sh

# docker-compose.yml under podman-compose and the systemd units under systemd
# as PID 1 in a container (tests/deploy/, root; .ci/run calls it after test)
test-deploy:
	@sh ops/deps.sh --deploy
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) SUITES=deploy sh tests/run.sh

# unit tests and fuzz corpora only (CI runs this under SANITIZER=address,undefined)
unit-test: deps
	@$(MAKE) --no-print-directory all $(UNIT_BIN) $(FUZZ_REPLAY)
	@BUILD=$(BUILD) SUITES="unit fuzz" sh tests/run.sh

bench: deps
	@$(MAKE) --no-print-directory all $(BENCH_BIN)
	@BUILD=$(BUILD) sh tests/bench/run.sh

demo:
	@sh ops/deps.sh --demo
	@$(MAKE) --no-print-directory $(PARALLEL) all
	@BUILD=$(BUILD) sh ops/demo.sh

# the suite under `sanctumctl up` (config, keys and the procurement example
# under ./var on first start), kept up for a person to explore
up:
	@sh ops/deps.sh --demo
	@$(MAKE) --no-print-directory $(PARALLEL) all
	@$(BUILD)/bin/sanctumctl up

# libFuzzer targets: the runtime library instrumented for coverage and
# sanitizers, each target linked against it alone.
fuzz:
	@rm -rf build-fuzz        # objects do not record their flags: build afresh
	@$(MAKE) --no-print-directory CC=clang BUILD=build-fuzz SANITIZER=fuzzer-no-link,address,undefined build-fuzz/lib/libsanctum.a build-fuzz/lib/libauthz.a build-fuzz/lib/libauditor.a build-fuzz/lib/liborchestrator.a
	@mkdir -p build-fuzz/fuzz
	@for f in $(FUZZ_SRC); do n=$$(basename $$f .c); \
	  clang $(filter-out -O2,$(CFLAGS)) -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -o build-fuzz/fuzz/$$n $$f build-fuzz/lib/liborchestrator.a build-fuzz/lib/libauthz.a build-fuzz/lib/libauditor.a build-fuzz/lib/libsanctum.a $(LDLIBS) || exit 1; \
	  echo "built build-fuzz/fuzz/$$n (run: build-fuzz/fuzz/$$n tests/fuzz/corpus/$${n#fuzz_})"; done

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/systemd/system $(DESTDIR)$(PREFIX)/share/sanctum
	install -m 0755 $(SVC_BINS) $(CTL_BIN) $(DESTDIR)$(PREFIX)/bin/
	for u in ops/systemd/*.service ops/systemd/*.target; do \
	  sed 's|/usr/local/|$(PREFIX)/|g' $$u > $(DESTDIR)$(PREFIX)/lib/systemd/system/$$(basename $$u) || exit 1; \
	  chmod 0644 $(DESTDIR)$(PREFIX)/lib/systemd/system/$$(basename $$u); done
	cp -r ops/examples $(DESTDIR)$(PREFIX)/share/sanctum/
	rm -rf $(DESTDIR)$(PREFIX)/share/sanctum/examples/inject/node_modules
	install -m 0644 ops/demo_story.py $(DESTDIR)$(PREFIX)/share/sanctum/
	rm -rf $(DESTDIR)$(PREFIX)/share/sanctum/dashboard
	cp -r $(BUILD)/share/sanctum/dashboard $(DESTDIR)$(PREFIX)/share/sanctum/dashboard

clean:
	rm -rf build build-clang build-san build-fuzz

# keep objects of test and bench programs between runs
.SECONDARY:

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
