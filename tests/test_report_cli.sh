#!/bin/bash
# tests/test_report_cli.sh -- `qh report` and `qh merge` on a directory of
# synthetic cell files (written by build*/tests/test_report --make-cells: the
# fixture of tests/test_report.c: opt-tiny baseline + gptq, ldlq+incoh (kron),
# rtn at 2/3/4 bits, seeds 0 and 1, gptq w2 s1 failed; llama-tiny with an
# all-failed ldlq cell; a corrupt .h5 and a stale .tmp).
# Needs $QH (the qh binary); run from the repository root.  Prints PASS:/FAIL:/
# SKIP: lines and ends with "N passed, N failed, N skipped".
. "$(dirname "$0")/lib.sh"
finish() { echo "$pass passed, $fail failed, $skip skipped"; [ "$fail" -eq 0 ]; exit; }
new_tmp
trap 'rm -rf "$tmp"' EXIT

# expect_line NAME TEXT REGEX: TEXT has a line matching REGEX
expect_line() {
    if grep -Eq -- "$3" <<< "$2"; then ok "$1"; else bad "$1 (no line matching '$3')"; fi
}

# The commands must be wired into bin/qh.
for cmd in report merge; do
    if ! "$QH" "$cmd" --help 2>/dev/null | grep -q "usage: qh $cmd"; then
        skip "'qh $cmd' is not available in $QH"
        finish
    fi
done

# The fixture generator sits beside the test programs of the same build.
gen=""
for g in "$(dirname "$QH")/../tests/test_report" build/tests/test_report; do
    [ -x "$g" ] && { gen=$g; break; }
done
if [ -z "$gen" ]; then
    skip "fixture generator tests/test_report not built"
    finish
fi
mkdir "$tmp/cells" "$tmp/empty"
if ! "$gen" --make-cells "$tmp/cells"; then
    bad "fixture cells written"
    finish
fi

# --- report without figures ---------------------------------------------------------
out=$(QH_GNUPLOT=none "$QH" report "$tmp/cells" 2>"$tmp/err"); rc=$?; err=$(cat "$tmp/err")
[ "$rc" -eq 0 ] && ok "report exits 0" || bad "report exits $rc: $err"
expect_line "prints the table path" "$out" "^wrote $tmp/cells/report/table\.md$"
expect_line "prints the TSV paths" "$out" "^wrote $tmp/cells/report/ppl_vs_bits\.opt-tiny\.wikitext2\.tsv$"
expect_line "warns about the corrupt file" "$err" "warning: skipping .*corrupt\.h5"
expect_line "warns about the temporary file" "$err" "warning: skipping temporary file .*opt-tiny\.rtn\.w3\.s2\.h5\.tmp"
expect_line "notes that figures are off" "$err" "note: figures disabled"
md=$(cat "$tmp/cells/report/table.md" 2>/dev/null)
expect_line "LDLQ+IncP row, 3 bits: 31.80 ± 0.42 (2)" "$md" '^\| LDLQ\+IncP \| .*\| 31\.80 ± 0\.42 \(2\) \|'
expect_line "all-failed cell shown as failed" "$md" '^\| LDLQ \| .*\| failed\[\^1\] \|'
expect_line "failure footnote with message" "$md" '^\[\^2\]: failed cell `opt-tiny\.gptq\.w2\.s1` .*NaN in'
for f in table.tex proxy.md bounds.md proxy_vs_bound.opt-tiny.tsv proxy_per_layer.opt-tiny.w2.tsv; do
    [ -s "$tmp/cells/report/$f" ] && ok "$f written" || bad "$f missing"
done
n_tmp=$(find "$tmp/cells/report" -name '*.tmp*' | wc -l)
[ "$n_tmp" -eq 0 ] && ok "no temporary files left" || bad "$n_tmp temporary files left"
n_png=$(find "$tmp/cells/report" -name '*.png' | wc -l)
[ "$n_png" -eq 0 ] && ok "no figures with QH_GNUPLOT=none" || bad "$n_png figures with QH_GNUPLOT=none"

# --- report with figures ---------------------------------------------------------------
if command -v gnuplot >/dev/null; then
    out=$("$QH" report "$tmp/cells" --out "$tmp/fig" 2>&1); rc=$?
    [ "$rc" -eq 0 ] && ok "report with gnuplot exits 0" || bad "report with gnuplot exits $rc: $out"
    n_png=$(find "$tmp/fig" -name '*.png' -size +1k | wc -l)
    n_svg=$(find "$tmp/fig" -name '*.svg' -size +1k | wc -l)
    [ "$n_png" -eq 10 ] && [ "$n_svg" -eq 10 ] && ok "10 PNG + 10 SVG figures" \
        || bad "figures: $n_png PNG, $n_svg SVG (want 10 each): $out"
    expect_line "prints a figure path" "$out" "^wrote $tmp/fig/proxy_vs_bound\.opt-tiny\.png$"
else
    skip "gnuplot not installed: figures not checked"
fi
out=$("$QH" report "$tmp/cells" --out "$tmp/nogp" --gnuplot /nonexistent/gnuplot 2>&1); rc=$?
[ "$rc" -eq 0 ] && ok "missing gnuplot is not an error" || bad "missing gnuplot exits $rc"
expect_line "missing gnuplot note" "$out" "note: gnuplot not found"

# --- merge ---------------------------------------------------------------------------------
out=$("$QH" merge "$tmp/cells" -o "$tmp/merged.h5" 2>"$tmp/err"); rc=$?; err=$(cat "$tmp/err")
[ "$rc" -eq 1 ] && ok "merge exits 1: it skipped the corrupt file" || bad "merge exits $rc: $err"
expect_line "merge says what it skipped" "$err" "^qh merge: 1 unreadable and 0 uncopyable files skipped"
expect_line "merge counts" "$out" "^merged 21 complete cells into $tmp/merged\.h5 \(2 incomplete, 1 unreadable"
expect_line "merge lists the failed cell" "$err" "incomplete: .*opt-tiny\.gptq\.w2\.s1\.h5 \(status 5"
if command -v h5dump >/dev/null; then
    n=$(h5dump -a /n_runs "$tmp/merged.h5" 2>/dev/null | grep -Eo '\(0\): [0-9]+' | grep -Eo '[0-9]+$')
    [ "$n" = 21 ] && ok "merged file n_runs = 21" || bad "merged file n_runs = '$n'"
else
    skip "h5dump not installed"
fi

# --- errors ----------------------------------------------------------------------------------
"$QH" report "$tmp/empty" >/dev/null 2>&1; rc=$?
[ "$rc" -eq 1 ] && ok "report of an empty directory exits 1" || bad "empty report exits $rc"
"$QH" merge "$tmp/empty" -o "$tmp/m2.h5" >/dev/null 2>&1; rc=$?
[ "$rc" -eq 1 ] && ok "merge of an empty directory exits 1" || bad "empty merge exits $rc"
"$QH" report >/dev/null 2>&1; rc=$?
[ "$rc" -eq 2 ] && ok "report without DIR is a usage error" || bad "report without DIR exits $rc"
"$QH" merge "$tmp/cells" >/dev/null 2>&1; rc=$?
[ "$rc" -eq 2 ] && ok "merge without -o is a usage error" || bad "merge without -o exits $rc"
finish
