#!/bin/bash
# tests/test_runner.sh -- tests/run.sh itself, one program at a time and
# several at once (QH_TEST_JOBS): the totals, the reports in the order given
# although the programs end in another order, a program that dies before its
# summary or exits non-zero with "0 failed" counted as a failure, the exit
# status, and a bad QH_TEST_JOBS refused.
. "$(dirname "$0")/lib.sh"
new_tmp
trap 'rm -rf "$tmp"' EXIT
runner=$(dirname "$0")/run.sh

# prog NAME SECONDS LINES...: a fake test program that sleeps, then prints its lines
prog() {
    local f="$tmp/$1" secs=$2; shift 2
    { echo '#!/bin/bash'; echo "sleep $secs"; printf 'echo "%s"\n' "$@"; } > "$f"
    chmod +x "$f"
}
prog slow 1 "PASS: a" "2 passed, 0 failed, 1 skipped"
prog failing 0 "FAIL: b" "3 passed, 1 failed, 0 skipped"
prog dies 0 "no summary"
prog fast 0 "4 passed, 0 failed"
prog lies 0 "1 passed, 0 failed, 0 skipped"; echo "exit 3" >> "$tmp/lies"

for jobs in 1 3; do
    out=$(QH_TEST_JOBS=$jobs "$runner" "$tmp/slow" "$tmp/failing" "$tmp/dies" "$tmp/fast" "$tmp/lies"); rc=$?
    [ "$(tail -n 1 <<< "$out")" = "10 passed, 3 failed, 1 skipped" ] && [ "$rc" -ne 0 ] \
        && ok "jobs $jobs: totals and a failing status" \
        || bad "jobs $jobs: rc $rc, last line '$(tail -n 1 <<< "$out")'"
    order=$(grep -oE '^  (slow|failing|fast|lies):|exited with status [0-9]+ before' <<< "$out" | tr -d ' :\n')
    [ "$order" = "slowfailingexitedwithstatus0beforefastlies" ] \
        && ok "jobs $jobs: reports in the order given" || bad "jobs $jobs: order '$order'"
    grep -q "FAIL: $tmp/lies exited 3" <<< "$out" && grep -q "^FAIL: b" <<< "$out" \
        && ok "jobs $jobs: a non-zero exit and the programs' FAIL lines shown" \
        || bad "jobs $jobs: $out"
done

# three 1-second programs at once take well under the 3 s they take in turn
prog s1 1 "1 passed, 0 failed"; prog s2 1 "1 passed, 0 failed"; prog s3 1 "1 passed, 0 failed"
start=$(date +%s%N)
out=$(QH_TEST_JOBS=3 "$runner" "$tmp/s1" "$tmp/s2" "$tmp/s3"); rc=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ "$rc" -eq 0 ] && [ "$(tail -n 1 <<< "$out")" = "3 passed, 0 failed, 0 skipped" ] && [ "$ms" -lt 2500 ] \
    && ok "three programs at once: $ms ms" || bad "three programs at once: rc $rc, $ms ms"

out=$(QH_TEST_JOBS=0 "$runner" "$tmp/fast" 2>&1); rc=$?
[ "$rc" -ne 0 ] && grep -q "QH_TEST_JOBS='0'" <<< "$out" && ok "QH_TEST_JOBS=0 refused, naming it" \
    || bad "QH_TEST_JOBS=0: rc $rc, $out"
summary
