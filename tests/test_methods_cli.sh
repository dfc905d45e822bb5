#!/bin/bash
# tests/test_methods_cli.sh -- `qh methods`: the method table as printed
# (each parameter's reference value included), an unknown name, usage errors;
# and `qh layer --variant`, which starts from those reference values.  Needs
# $QH (the qh binary; h5dump for the results check); run from the repository
# root.  Ends with "N passed, N failed, N skipped".
. "$(dirname "$0")/lib.sh"
expect_line() {
    if grep -Eq -- "$3" <<< "$2"; then ok "$1"; else bad "$1 (no line matching '$3')"; fi
}

out=$("$QH" methods 2>&1); rc=$?
[ "$rc" -eq 0 ] && ok "methods exits 0" || bad "methods exits $rc: $out"
for m in rtn gptq ldlq ldlq_rg greedy; do
    expect_line "row $m" "$out" "^$m \(version [0-9]+\)"
done
expect_line "gptq damp parameter" "$out" '^  damp +double +0\.01 +[^ ]+ +\[0, 1\]'
expect_line "ldlq order enum" "$out" '^  order +enum +reverse +[^ ]+ +reverse\|forward'
expect_line "reference column" "$out" '^  parameter +type +default +reference +range +doc$'
expect_line "billm split_quantiles reference zeroed" "$out" '^  split_quantiles +enum +nonsalient +zeroed +nonsalient\|zeroed'
expect_line "aqlm damp reference 0" "$out" '^  damp +double +0\.01 +0 +\[0, 1\] +H \+= damp.*undamped'
expect_line "ptq161 rank reference absmax" "$out" '^  rank +enum +rms +absmax +rms\|absmax'
expect_line "quipsharp tune_iters reference 10" "$out" '^  tune_iters +int +0 +10 +\[0, 100\]'
expect_line "no deviation prints -" "$out" '^  blocksize +int +128 +- +'
expect_line "needs line" "$out" '^  needs: hessian, grid, rng$'

out=$("$QH" methods gptq 2>&1); rc=$?
[ "$rc" -eq 0 ] && ok "methods gptq exits 0" || bad "methods gptq exits $rc"
expect_line "act_order listed" "$out" '^  act_order +bool +0 +[^ ]+ +0\|1'
n=$(grep -c "(version" <<< "$out")
[ "$n" -eq 1 ] && ok "one method printed" || bad "methods gptq printed $n methods"

out=$("$QH" methods quip_nonexistent 2>&1); rc=$?
[ "$rc" -eq 1 ] && ok "unknown method exits 1" || bad "unknown method exits $rc"
expect_line "unknown method lists valid names" "$out" "unknown method 'quip_nonexistent' \(valid: rtn, gptq, ldlq, ldlq_rg, greedy"

"$QH" methods a b >/dev/null 2>&1; rc=$?
[ "$rc" -eq 2 ] && ok "usage error exits 2" || bad "usage error exits $rc"

# qh layer --variant reference: labels end in -ref, the results record the
# reference values, and an explicit --param still overrides them.
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$QH" layer --synthetic gaussian --rows 16 --cols 64 --method quipsharp --bits 2 \
    --incoherence hadamard --variant reference --out "$tmp" --quiet 2>&1; rc=$?
f="$tmp/gaussian.quipsharp+rht-ref.w2.s0.h5"
[ "$rc" -eq 0 ] && [ -f "$f" ] && ok "layer --variant reference writes a -ref file" \
    || bad "layer --variant reference: rc $rc, files: $(ls "$tmp")"
"$QH" layer --synthetic gaussian --rows 16 --cols 64 --method quipsharp --bits 2 \
    --incoherence hadamard --variant reference --param tune_iters=2 --out "$tmp/p" --quiet 2>&1
if command -v h5dump >/dev/null; then
    [ "$(attr "$f" /run/params tune_iters)" = 10 ] && ok "reference variant recorded tune_iters 10" \
        || bad "tune_iters under --variant reference: $(attr "$f" /run/params tune_iters)"
    [ "$(attr "$tmp/p/gaussian.quipsharp+rht-ref.w2.s0.h5" /run/params tune_iters)" = 2 ] \
        && ok "--param overrides the variant" || bad "--param after --variant"
else
    skip "h5dump not installed (hdf5-tools)"; skip "h5dump not installed (hdf5-tools)"
fi
out=$("$QH" layer --synthetic gaussian --rows 8 --cols 8 --method rtn --bits 2 --variant ref \
      --out "$tmp/x" 2>&1); rc=$?
[ "$rc" -eq 2 ] && grep -q 'unknown variant "ref" (expected one of: default, reference)' <<< "$out" \
    && ok "unknown --variant refused naming the valid ones" || bad "--variant ref: rc $rc: $out"

echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
