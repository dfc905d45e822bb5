#!/bin/bash
# tests/run.sh PROGRAM... -- runs test programs, adds up their summary lines.
# Each program ends with "N passed, N failed, N skipped"; one that dies before
# its summary counts as one failure.  The last line is the suite's total.
# QH_TEST_JOBS=N runs up to N programs at once (default 1); their reports
# still come in the order given, each after its program ends.
pass=0 fail=0 skip=0
jobs=${QH_TEST_JOBS:-1}
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || { echo "tests/run.sh: QH_TEST_JOBS='$jobs', want a positive integer" >&2; exit 2; }
outdir=$(mktemp -d "${TMPDIR:-/tmp}/qh-run.XXXXXX") || exit 2
trap 'rm -rf "$outdir"' EXIT

# start I PROGRAM: runs it in the background, its output and "status seconds" kept under $outdir
start() {
    local i=$1 t=$2
    ( s=$(date +%s); "$t" > "$outdir/$i.out" 2>&1; rc=$?
      echo "$rc $(( $(date +%s) - s ))" > "$outdir/$i.rc" ) &
    pids[$i]=$!
}

# report I PROGRAM: waits for it and adds its summary line to the totals
report() {
    local i=$1 t=$2 out rc secs counts p f s
    wait "${pids[$i]}" 2>/dev/null   # may be reaped already by wait -n; the status is in the file
    read -r rc secs < "$outdir/$i.rc"
    out=$(cat "$outdir/$i.out")
    grep -E '^(FAIL|SKIP)' <<< "$out"
    counts=$(tail -n 1 <<< "$out" |
             awk '/^[0-9]+ passed, [0-9]+ failed/ { print $1, $3, ($5 == "" ? 0 : $5) }')
    if [ -z "$counts" ]; then
        echo "FAIL: $t exited with status $rc before its summary"
        tail -n 5 <<< "$out" | sed 's/^/    /'
        fail=$((fail + 1)); return
    fi
    read -r p f s <<< "$counts"
    echo "  $(basename "$t"): $p passed, $f failed, $s skipped ($secs s)"
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then echo "FAIL: $t exited $rc"; fail=$((fail + 1)); fi
}

progs=("$@")
done_upto=0
# flush: reports the programs that have ended, in order, up to the first still running
flush() {
    while [ "$done_upto" -lt "${#pids[@]}" ] && [ -f "$outdir/$done_upto.rc" ]; do
        report "$done_upto" "${progs[$done_upto]}"; done_upto=$((done_upto + 1))
    done
}
for i in "${!progs[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
    flush
    start "$i" "${progs[$i]}"
done
for ((; done_upto < ${#progs[@]}; done_upto++)); do report "$done_upto" "${progs[$done_upto]}"; done
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
