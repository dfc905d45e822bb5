#!/bin/bash
# tests/test_methods_cli.sh -- `qh methods`: the method table as printed, an
# unknown name, and usage errors.  Needs $QH (the qh binary); run from the
# repository root.  Ends with "N passed, N failed, N skipped".
. "$(dirname "$0")/lib.sh"
expect_line() {
    if grep -Eq -- "$3" <<< "$2"; then ok "$1"; else bad "$1 (no line matching '$3')"; fi
}

out=$("$QH" methods 2>&1); rc=$?
[ "$rc" -eq 0 ] && ok "methods exits 0" || bad "methods exits $rc: $out"
for m in rtn gptq ldlq ldlq_rg greedy; do
    expect_line "row $m" "$out" "^$m \(version [0-9]+\)"
done
expect_line "gptq damp parameter" "$out" '^  damp +double +0\.01 +\[0, 1\]'
expect_line "ldlq order enum" "$out" '^  order +enum +reverse +reverse\|forward'
expect_line "needs line" "$out" '^  needs: hessian, grid, rng$'

out=$("$QH" methods gptq 2>&1); rc=$?
[ "$rc" -eq 0 ] && ok "methods gptq exits 0" || bad "methods gptq exits $rc"
expect_line "act_order listed" "$out" '^  act_order +bool +0 +0\|1'
n=$(grep -c "(version" <<< "$out")
[ "$n" -eq 1 ] && ok "one method printed" || bad "methods gptq printed $n methods"

out=$("$QH" methods quip_nonexistent 2>&1); rc=$?
[ "$rc" -eq 1 ] && ok "unknown method exits 1" || bad "unknown method exits $rc"
expect_line "unknown method lists valid names" "$out" "unknown method 'quip_nonexistent' \(valid: rtn, gptq, ldlq, ldlq_rg, greedy"

"$QH" methods a b >/dev/null 2>&1; rc=$?
[ "$rc" -eq 2 ] && ok "usage error exits 2" || bad "usage error exits $rc"

echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
