# tests/lib.sh -- sourced by the shell tests (tests/test_*.sh): the qh binary
# under test, the counters and the PASS:/FAIL:/SKIP: lines that tests/run.sh
# reads.  Each test ends by printing "N passed, N failed, N skipped".
QH=${QH:-bin/qh}
pass=0 fail=0 skip=0
ok()   { echo "PASS: $1"; pass=$((pass + 1)); }
bad()  { echo "FAIL: $1"; fail=$((fail + 1)); }
skip() { echo "SKIP: $1"; skip=$((skip + 1)); }
# The closing line tests/run.sh reads, and the exit status.
summary() { echo "$pass passed, $fail failed, $skip skipped"; [ "$fail" -eq 0 ]; exit $?; }
# new_tmp: a fresh folder in $tmp (the test's trap removes it); no folder ends the test.
new_tmp() { tmp=$(mktemp -d) || { echo "FAIL: mktemp"; echo "0 passed, 1 failed, 0 skipped"; exit 1; }; }
# attr FILE OBJECT NAME: an HDF5 attribute's value as h5dump prints it, quotes dropped.
attr() { h5dump -a "$2/$3" "$1" 2>/dev/null | sed -n 's/^ *(0): //p' | tr -d '"'; }
# need_numpy_python WHAT: $py is the first python3 with numpy ($PYTHON, then every python3 on
# PATH); without one the test is skipped (and ends), saying WHAT goes untested.
need_numpy_python() {
    py=
    for c in "${PYTHON:-}" $(type -ap python3); do
        [ -n "$c" ] && "$c" -c 'import numpy' 2>/dev/null && { py=$c; return; }
    done
    skip "no python3 with numpy: $1 not tested"
    summary
}
# need_hdf5_tools TOOL...: the test is skipped (and ends) unless every tool (h5dump, h5diff) is installed.
need_hdf5_tools() {
    for t in "$@"; do
        command -v "$t" >/dev/null || { skip "$t not installed (hdf5-tools)"; summary; }
    done
}
