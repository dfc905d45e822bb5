# qharness -- build, test, benchmark and reproduce.  `make help` lists targets.
#
# Layout (docs/architecture.md): core/ -> build/libqhcore.a (numerics only:
# BLAS/LAPACK/GSL, no I/O formats); experiments/{tokenizer,model,results,
# backends,pipeline}/ -> build/libqhexp.a; analysis/report/ ->
# build/libqhreport.a; experiments/cli/ -> bin/qh.  Includes are path-qualified
# from experiments/ and analysis/ ("model/forward.h", "report/report.h").
# Tests are tests/test_*.c (one program each) and tests/test_*.sh
# (command-line checks), summed by tests/run.sh.

# clang's objects go to their own folder (make test-asan CC=clang): its
# UBSan also checks pointer arithmetic (NULL + 0) and float-to-int overflow,
# which gcc's -fsanitize=undefined does not.
IS_CLANG := $(findstring clang,$(notdir $(firstword $(CC))))
ASAN_BUILD := build-asan$(if $(IS_CLANG),-clang)
SANITIZE ?=
FUZZ ?=
ifeq ($(SANITIZE),1)
BUILD   := $(ASAN_BUILD)
BINDIR  := $(ASAN_BUILD)/bin
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else ifeq ($(FUZZ),1)
# make fuzz: libFuzzer's coverage in every object, ASan + UBSan, clang only.
CC      := clang
BUILD   := build-fuzz
BINDIR  := build-fuzz/bin
SANFLAGS := -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer \
            -fno-sanitize-recover=undefined
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
# Fuzz targets tests/fuzz/fuzz_<target>.c: linked with libFuzzer by `make fuzz`
# (build-fuzz/fuzz_<target>), and with tests/fuzz/replay.c by the suite's
# compiler and flags ($(BUILD)/tests/fuzz/replay_<target>, run by
# tests/test_fuzz_replay.sh on every saved input).
FUZZ_TARGETS := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_REPLAYS := $(FUZZ_TARGETS:%=$(BUILD)/tests/fuzz/replay_%)
FUZZ_SECONDS ?= 60
# The code id (docs/reproducibility.md): the SHA-256 of every source and
# header compiled into bin/qh and of the compiler and the flags that can change
# numerics (CFLAGS less include paths and warnings), written by
# experiments/scripts/code_id.sh to $(BUILD)/gen/qh_code_id.h and recorded as
# code.sources in each cell's protocol record.  Only pipeline/protocol.c
# includes it; it is rewritten only when the id changes.
CODE_ID_FILES := $(CORE_SRC) $(EXP_SRC) $(REPORT_SRC) $(CLI_SRC) experiments/cli/main.c \
                 $(wildcard core/*.h core/methods/*.h analysis/report/*.h \
                            $(foreach r,$(EXP_ROOMS) cli,experiments/$(r)/*.h))
CC_ID    := $(strip $(subst ",,$(shell printf '\043ifdef __clang__\nclang __VERSION__\n\043else\ngcc __VERSION__\n\043endif\n' | \
                $(CC) -E -P -x c - 2>/dev/null)))
CODE_ID_FLAGS := $(CC_ID) $(filter-out -I% -W%,$(CFLAGS))
CODE_ID_H := $(BUILD)/gen/qh_code_id.h
LIBS     := $(BUILD)/libqhcli.a $(BUILD)/libqhreport.a $(BUILD)/libqhexp.a $(BUILD)/libqhcore.a
QH       := $(BINDIR)/qh

.PHONY: FORCE all deps deps-clang test test-asan test-programs bench check-ppl check-large help clean repro-quip-table \
        bounds-check fuzz fuzz-programs
.DEFAULT_GOAL := all

all: $(QH) $(TESTS) $(BENCHES) $(FUZZ_REPLAYS)

help:
	@echo "make deps              install (as root, with apt) or check the Debian packages"
	@echo "make deps-clang        the same for clang and its sanitizer runtimes (fuzz, CC=clang)"
	@echo "make                   build bin/qh and the test programs"
	@echo "make test              deps + build + every test (last line: N passed, N failed, N skipped)"
	@echo "make test-asan         the same under AddressSanitizer + UBSan (build-asan/;"
	@echo "                       CC=clang: build-asan-clang/, with clang's pointer checks)"
	@echo "make fuzz              every fuzz target for FUZZ_SECONDS (60) each with libFuzzer"
	@echo "                       (build-fuzz/); crashes go to tests/fuzz/crashes/<target>/"
	@echo "make check-ppl         full perplexity of every model against reference.json (slow)"
	@echo "make check-large       real-size random models (1.1B, 7B shapes) spilled: memory bounds (slow)"
	@echo "make bench             forward-pass and sgemm benchmarks (GFLOP/s vs measured peak)"
	@echo "make repro-quip-table  QuIP main table on the embedded default model (MODEL=path for yours)"
	@echo "make bounds-check      measured proxy loss against QuIP's bounds on every layer (MODEL=path)"
	@echo "make clean             remove build outputs"

APT_PKGS := build-essential pkg-config libgsl-dev libhdf5-dev hdf5-tools libcjson-dev \
            libopenblas-dev liblapacke-dev gnuplot-nox fonts-dejavu-core python3-numpy
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

# clang, libFuzzer and the sanitizer runtimes: for make fuzz and CC=clang.
CLANG_APT_PKGS := clang libclang-rt-14-dev
deps-clang:
	@if command -v clang >/dev/null && echo 'int LLVMFuzzerTestOneInput(const char *d, long n) { return 0; }' | \
	    clang -fsanitize=fuzzer,address,undefined -x c - -o /dev/null 2>/dev/null; then \
	    echo "deps-clang: clang and libFuzzer present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "deps-clang: installing Debian packages"; \
	    apt-get update -q >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(CLANG_APT_PKGS) >/dev/null; \
	else \
	    echo "deps-clang: missing clang or libFuzzer; install them with:"; \
	    echo "  sudo apt-get install -y --no-install-recommends $(CLANG_APT_PKGS)"; exit 1; \
	fi

# The flags file and the list of files change only when the flags or the list
# do (FORCE runs the check every time): a deleted source renews the id too.
$(BUILD)/gen/code_flags: FORCE
	@mkdir -p $(dir $@)
	@echo '$(CODE_ID_FLAGS)' | cmp -s - $@ || echo '$(CODE_ID_FLAGS)' > $@
$(BUILD)/gen/code_files: FORCE
	@mkdir -p $(dir $@)
	@echo '$(sort $(CODE_ID_FILES))' | cmp -s - $@ || echo '$(sort $(CODE_ID_FILES))' > $@
$(CODE_ID_H): $(CODE_ID_FILES) $(BUILD)/gen/code_flags $(BUILD)/gen/code_files experiments/scripts/code_id.sh
	@experiments/scripts/code_id.sh -o $@ -m $(BUILD)/gen/code_manifest -F $(BUILD)/gen/code_flags \
	    $(CODE_ID_FILES) >/dev/null
$(BUILD)/experiments/pipeline/protocol.o: $(CODE_ID_H)
$(BUILD)/experiments/pipeline/protocol.o: CFLAGS += -I$(BUILD)/gen
FORCE:

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

$(BUILD)/tests/fuzz/replay_%: $(BUILD)/tests/fuzz/fuzz_%.o $(BUILD)/tests/fuzz/replay.o $(LIBS)
	$(CC) $(LDFLAGS) $< $(BUILD)/tests/fuzz/replay.o $(LIBS) $(LDLIBS) -o $@

build-fuzz/fuzz_%: build-fuzz/tests/fuzz/fuzz_%.o $(LIBS)
	$(CC) $(LDFLAGS) -fsanitize=fuzzer $< $(LIBS) $(LDLIBS) -o $@

test-programs: $(QH) $(TESTS) $(FUZZ_REPLAYS)

# Sub-make so that `deps` finishes before pkg-config is asked for flags.
test: deps
	@$(MAKE) --no-print-directory test-programs
	@QH=$(QH) QH_FUZZ_REPLAY=$(BUILD)/tests/fuzz tests/run.sh $(TESTS) $(SHELL_TESTS)

# The sanitizer run checks memory and undefined behaviour, not BLAS threading:
# it runs one program per core (QH_TEST_JOBS) with one OpenBLAS thread each,
# since spinning BLAS threads of concurrent programs would fight over the
# cores (measured on 2 cores: 8.1 min, against 12.0 min with two BLAS threads
# each and about 15.7 min one program at a time).  test_forward and
# test_methods still set two threads where they check the threaded paths.
# At most 8 at once: sanitized programs take several times their usual memory.
ASAN_TEST_JOBS := $(shell n=$$(nproc 2>/dev/null || echo 1); echo $$((n < 8 ? n : 8)))
test-asan: deps $(if $(IS_CLANG),deps-clang)
	@$(MAKE) --no-print-directory SANITIZE=1 test-programs
	@QH_TEST_FAST=1 ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    QH_TEST_JOBS=$${QH_TEST_JOBS:-$(ASAN_TEST_JOBS)} OPENBLAS_NUM_THREADS=$${OPENBLAS_NUM_THREADS:-1} \
	    QH=$(ASAN_BUILD)/bin/qh QH_FUZZ_REPLAY=$(ASAN_BUILD)/tests/fuzz \
	    tests/run.sh $(patsubst build/%,$(ASAN_BUILD)/%,$(TESTS)) $(SHELL_TESTS)

# Each target for FUZZ_SECONDS from its seeds (tests/fuzz/corpus/<target>/);
# what it learns stays in build-fuzz/corpus/<target>/, crash inputs go to
# tests/fuzz/crashes/<target>/ (commit them with the fix: the suite replays
# them).  FUZZ_TARGETS=name picks some; FUZZ_ARGS adds libFuzzer options.
fuzz: deps deps-clang
	@$(MAKE) --no-print-directory FUZZ=1 fuzz-programs
	@failed=""; for t in $(FUZZ_TARGETS); do \
	    mkdir -p build-fuzz/corpus/$$t tests/fuzz/crashes/$$t; \
	    echo "== fuzz $$t ($(FUZZ_SECONDS) s)"; \
	    LSAN_OPTIONS=suppressions=tests/fuzz/lsan.supp:print_suppressions=0 \
	    build-fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -timeout=20 -print_final_stats=1 \
	        -artifact_prefix=tests/fuzz/crashes/$$t/ $(FUZZ_ARGS) \
	        build-fuzz/corpus/$$t tests/fuzz/corpus/$$t > build-fuzz/fuzz_$$t.log 2>&1 || \
	        failed="$$failed $$t"; \
	    grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::average_exec_per_sec)' \
	        build-fuzz/fuzz_$$t.log | sed 's/^/    /'; \
	    echo "    corpus: $$(ls build-fuzz/corpus/$$t | wc -l) inputs (log: build-fuzz/fuzz_$$t.log)"; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: crashes in$$failed: see tests/fuzz/crashes/"; exit 1; fi

fuzz-programs: $(FUZZ_TARGETS:%=build-fuzz/fuzz_%)

bench: deps
	@$(MAKE) --no-print-directory $(QH) $(BENCHES)
	@for b in $(BENCHES); do OPENBLAS_THREAD_TIMEOUT=$${OPENBLAS_THREAD_TIMEOUT:-16} $$b || exit 1; done
	@tests/bench_llamacpp.sh $(QH)

check-ppl: deps
	@$(MAKE) --no-print-directory $(QH)
	@tests/check_ppl.sh $(QH)

# Real-size random models run spilled (tests/check_large.sh): LARGE=1.1b|7b
# picks one part, LARGE_DIR= where the models and scratch go.
check-large: deps
	@$(MAKE) --no-print-directory $(QH)
	@tests/check_large.sh $(QH)

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
	rm -rf build build-asan build-asan-clang build-fuzz bin

-include $(CORE_OBJ:.o=.d) $(EXP_OBJ:.o=.d) $(REPORT_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(BUILD)/experiments/cli/main.d $(TESTS:=.d) \
         $(FUZZ_TARGETS:%=$(BUILD)/tests/fuzz/fuzz_%.d) $(BUILD)/tests/fuzz/replay.d
