#!/bin/bash
# tests/test_fuzz_replay.sh -- the regression replay of the fuzz targets:
# every file of tests/fuzz/corpus/<target>/ (the seeds) and of
# tests/fuzz/crashes/<target>/ (inputs that once crashed a target, kept
# with their fix) is fed to the target built without libFuzzer by the
# suite's compiler and flags, so under ASan + UBSan in make test-asan.
# The replay programs are $QH_FUZZ_REPLAY/replay_<target> (the Makefile sets
# it; otherwise the build folder next to $QH's bin/).  Run from the
# repository root.  Ends with "N passed, N failed, N skipped".
. "$(dirname "$0")/lib.sh"

# HDF5's own leaks on corrupt files (tests/fuzz/lsan.supp says which)
export LSAN_OPTIONS="suppressions=tests/fuzz/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"

if [ -z "${QH_FUZZ_REPLAY:-}" ]; then
    qh_dir=$(dirname "$QH")
    if [ "$qh_dir" = bin ]; then QH_FUZZ_REPLAY=build/tests/fuzz
    else QH_FUZZ_REPLAY=$(dirname "$qh_dir")/tests/fuzz; fi
fi

n_targets=0
for src in tests/fuzz/fuzz_*.c; do
    t=$(basename "$src" .c); t=${t#fuzz_}
    n_targets=$((n_targets + 1))
    prog=$QH_FUZZ_REPLAY/replay_$t
    if [ ! -x "$prog" ]; then bad "$t: no replay program $prog (make test-programs builds it)"; continue; fi
    if ! ls tests/fuzz/corpus/"$t"/* >/dev/null 2>&1; then bad "$t: no seed corpus in tests/fuzz/corpus/$t/"; fi
    for kind in corpus crashes; do
        dir=tests/fuzz/$kind/$t
        [ -d "$dir" ] || continue
        n=$(find "$dir" -maxdepth 1 -type f ! -name '.*' | wc -l)
        [ "$n" -gt 0 ] || continue
        out=$("$prog" "$dir" 2>&1); rc=$?
        if [ "$rc" -eq 0 ] && grep -q "^replay: $n inputs ran" <<< "$out"; then
            ok "$t: $n inputs of $dir replay cleanly"
        else
            bad "$t: replaying $dir exited $rc; the last input named below is at fault"
            grep '^replay: ' <<< "$out" | tail -n 1 | sed 's/^/    /'
            grep -E 'ERROR|runtime error|SUMMARY' <<< "$out" | head -n 5 | sed 's/^/    /'
        fi
    done
done
[ "$n_targets" -ge 5 ] && ok "$n_targets fuzz targets found" || bad "only $n_targets fuzz targets in tests/fuzz/"

# a crash folder holds only inputs of known targets
for d in tests/fuzz/crashes/*/; do
    [ -d "$d" ] || continue
    t=$(basename "$d")
    [ -f "tests/fuzz/fuzz_$t.c" ] && ok "crashes/$t belongs to a target" ||
        bad "tests/fuzz/crashes/$t: no target tests/fuzz/fuzz_$t.c replays it"
done
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
