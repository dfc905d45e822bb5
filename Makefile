# qharness -- build, test, benchmark and reproduce.  `make help` lists targets.
#
# Layout (docs/architecture.md): core/ -> build/libqhcore.a (numerics only:
# BLAS/LAPACK/GSL, no I/O formats); experiments/{tokenizer,model,results,
# backends,pipeline}/ -> build/libqhexp.a; analysis/report/ ->
# build/libqhreport.a; experiments/cli/ -> bin/qh.  Includes are path-qualified
# from experiments/ and analysis/ ("model/forward.h", "report/report.h").
# Tests are tests/test_*.c (one program each) and tests/test_*.sh
# (command-line checks), summed by tests/run.sh.

SANITIZE ?=
ifeq ($(SANITIZE),1)
BUILD   := build-asan
BINDIR  := build-asan/bin
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
BUILD   := build
BINDIR  := bin
SANFLAGS :=
endif

PKGS    := gsl hdf5-serial libcjson openblas lapacke
CC      ?= cc
OPT     ?= -O2
CFLAGS  := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE $(OPT) -g -Wall -Wextra \
           -Icore -Icore/methods -Iexperiments -Ianalysis $(SANFLAGS) \
           $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
# -lgsl must come before -lopenblas and -lgslcblas must never appear: otherwise
# cblas_* binds to GSL's reference CBLAS (8x slower).
LDLIBS  := $(shell pkg-config --libs hdf5-serial libcjson lapacke 2>/dev/null) -lhdf5_hl \
           -lgsl $(shell pkg-config --libs openblas 2>/dev/null) -lpthread -lm
LDFLAGS := $(SANFLAGS)

CORE_SRC := $(wildcard core/*.c core/methods/*.c)
EXP_ROOMS := tokenizer model results backends pipeline
EXP_SRC  := $(foreach r,$(EXP_ROOMS),$(wildcard experiments/$(r)/*.c))
REPORT_SRC := $(wildcard analysis/report/*.c)
CLI_SRC  := $(filter-out experiments/cli/main.c,$(wildcard experiments/cli/*.c))
TEST_SRC := $(wildcard tests/test_*.c)
BENCH_SRC := $(wildcard tests/bench_*.c)
CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/%.o)
EXP_OBJ  := $(EXP_SRC:%.c=$(BUILD)/%.o)
REPORT_OBJ := $(REPORT_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TESTS    := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCHES  := $(BENCH_SRC:tests/%.c=$(BUILD)/tests/%)
SHELL_TESTS := $(wildcard tests/test_*.sh)
LIBS     := $(BUILD)/libqhcli.a $(BUILD)/libqhreport.a $(BUILD)/libqhexp.a $(BUILD)/libqhcore.a
QH       := $(BINDIR)/qh

.PHONY: all deps test test-asan test-programs bench check-ppl help clean repro-quip-table bounds-check
.DEFAULT_GOAL := all

all: $(QH) $(TESTS) $(BENCHES)

help:
	@echo "make deps              install (as root, with apt) or check the Debian packages"
	@echo "make                   build bin/qh and the test programs"
	@echo "make test              deps + build + every test (last line: N passed, N failed, N skipped)"
	@echo "make test-asan         the same under AddressSanitizer + UBSan (build-asan/)"
	@echo "make check-ppl         full perplexity of every model against reference.json (slow)"
	@echo "make bench             forward-pass and sgemm benchmarks (GFLOP/s vs measured peak)"
	@echo "make repro-quip-table  QuIP main table on the embedded default model (MODEL=path for yours)"
	@echo "make bounds-check      measured proxy loss against QuIP's bounds on every layer (MODEL=path)"
	@echo "make clean             remove build outputs"

APT_PKGS := build-essential pkg-config libgsl-dev libhdf5-dev hdf5-tools libcjson-dev \
            libopenblas-dev liblapacke-dev gnuplot-nox fonts-dejavu-core
deps:
	@if pkg-config --exists $(PKGS) && command -v gnuplot >/dev/null && command -v h5dump >/dev/null; then \
	    echo "deps: all packages present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "deps: installing Debian packages"; \
	    apt-get update -q >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(APT_PKGS) >/dev/null; \
	else \
	    echo "deps: missing packages; install them with:"; \
	    echo "  sudo apt-get install -y --no-install-recommends $(APT_PKGS)"; exit 1; \
	fi

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libqhcore.a: $(CORE_OBJ)
	@rm -f $@; ar rcs $@ $^
$(BUILD)/libqhexp.a: $(EXP_OBJ)
	@rm -f $@; ar rcs $@ $^
$(BUILD)/libqhreport.a: $(REPORT_OBJ)
	@rm -f $@; ar rcs $@ $^
$(BUILD)/libqhcli.a: $(CLI_OBJ)
	@rm -f $@; ar rcs $@ $^

$(QH): $(BUILD)/experiments/cli/main.o $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $< $(LIBS) $(LDLIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(LIBS)
	$(CC) $(LDFLAGS) $< $(LIBS) $(LDLIBS) -o $@

test-programs: $(QH) $(TESTS)

# Sub-make so that `deps` finishes before pkg-config is asked for flags.
test: deps
	@$(MAKE) --no-print-directory test-programs
	@QH=$(QH) tests/run.sh $(TESTS) $(SHELL_TESTS)

test-asan: deps
	@$(MAKE) --no-print-directory SANITIZE=1 test-programs
	@QH_TEST_FAST=1 ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    QH=build-asan/bin/qh tests/run.sh $(patsubst build/%,build-asan/%,$(TESTS)) $(SHELL_TESTS)

bench: deps
	@$(MAKE) --no-print-directory $(QH) $(BENCHES)
	@for b in $(BENCHES); do $$b || exit 1; done

check-ppl: deps
	@$(MAKE) --no-print-directory $(QH)
	@tests/check_ppl.sh $(QH)

# The QuIP paper's main table; MODEL=path (and CALIB=, SEQLEN=, NSAMPLES=,
# WIKI=, GUTENBERG=, SEEDS=, JOBS=) run it on another checkpoint.
repro-quip-table: deps
	@$(MAKE) --no-print-directory $(QH)
	@QH=$(QH) experiments/scripts/repro_quip_table.sh

# Every QuIP-family method at 2/3/4 bits, with and without incoherence, on
# every linear layer of MODEL (Hessians at full precision), measured proxy
# loss against each bound of the theory; table, figure and summary.
BOUNDS_MODEL ?= $(if $(MODEL),$(MODEL),../shared/models/opt-30m)
BOUNDS_OUT   ?= results/bounds-$(notdir $(patsubst %/,%,$(BOUNDS_MODEL)))
bounds-check: deps
	@$(MAKE) --no-print-directory $(QH)
	@test -d $(BOUNDS_MODEL) || { echo "bounds-check: $(BOUNDS_MODEL) not found (set MODEL=path)"; exit 1; }
	$(QH) layer --model $(BOUNDS_MODEL) --method gptq,ldlq,ldlq_rg,greedy --bits 2,3,4 \
	    --incoherence none,kron --nsamples $(or $(NSAMPLES),128) --quiet --out $(BOUNDS_OUT)
	$(QH) report $(BOUNDS_OUT)
	@echo "bounds-check: summary in $(BOUNDS_OUT)/report/bounds.md"

clean:
	rm -rf build build-asan bin

-include $(CORE_OBJ:.o=.d) $(EXP_OBJ:.o=.d) $(REPORT_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(BUILD)/experiments/cli/main.d $(TESTS:=.d)
