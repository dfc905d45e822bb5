#!/bin/bash
# tests/run.sh PROGRAM... -- runs test programs, adds up their summary lines.
# Each program ends with "N passed, N failed, N skipped"; one that dies before
# its summary counts as one failure.  The last line is the suite's total.
pass=0 fail=0 skip=0
for t in "$@"; do
    start=$(date +%s)
    out=$("$t" 2>&1); rc=$?
    grep -E '^(FAIL|SKIP)' <<< "$out"
    counts=$(tail -n 1 <<< "$out" |
             awk '/^[0-9]+ passed, [0-9]+ failed/ { print $1, $3, ($5 == "" ? 0 : $5) }')
    if [ -z "$counts" ]; then
        echo "FAIL: $t exited with status $rc before its summary"
        tail -n 5 <<< "$out" | sed 's/^/    /'
        fail=$((fail + 1)); continue
    fi
    read -r p f s <<< "$counts"
    echo "  $(basename "$t"): $p passed, $f failed, $s skipped ($(( $(date +%s) - start )) s)"
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then echo "FAIL: $t exited $rc"; fail=$((fail + 1)); fi
done
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
