# tests/lib.sh -- sourced by the shell tests (tests/test_*.sh): the qh binary
# under test, the counters and the PASS:/FAIL:/SKIP: lines that tests/run.sh
# reads.  Each test ends by printing "N passed, N failed, N skipped".
QH=${QH:-bin/qh}
pass=0 fail=0 skip=0
ok()   { echo "PASS: $1"; pass=$((pass + 1)); }
bad()  { echo "FAIL: $1"; fail=$((fail + 1)); }
skip() { echo "SKIP: $1"; skip=$((skip + 1)); }
