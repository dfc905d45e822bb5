#!/bin/bash
# tests/test_concurrency.sh -- one `qh run` per results folder, and stopping a
# run with a signal, on the vendored opt-7m with a one-cell sweep:
#  - a second runner of a busy folder refuses at once, naming the folder and
#    the first runner's pid (before the lock, both computed every pending cell
#    and one finished cell could go missing);
#  - SIGINT of the runner stops its worker too, exits 130 with "interrupted;
#    rerun to resume", leaves no temporary file and keeps the complete cells;
#  - SIGTERM does the same with exit 143, and a runner waiting with
#    --wait-lock then takes the folder over and resumes the sweep.
# Needs $QH; run from the repository root.
. "$(dirname "$0")/lib.sh"
new_tmp
started=()
trap 'for p in "${started[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$tmp"' EXIT
export OPENBLAS_NUM_THREADS=1

cat > "$tmp/sweep.json" <<JSON
{ "name": "c", "models": ["models/opt-7m"],
  "datasets": { "wikitext2": "data/wikitext2_test.raw" },
  "calibration": { "nsamples": 2, "seqlen": 64 },
  "eval": { "seqlen": 64, "max_windows": 1 },
  "methods": [ { "method": "rtn" } ], "bits": [2], "seeds": [0] }
JSON
out="$tmp/out"
cell="$out/opt-7m.rtn.w2.s0.h5"

# until CMD...: retries CMD every 0.1 s for at most 60 s
until_true() { for _ in $(seq 600); do "$@" && return 0; sleep 0.1; done; return 1; }
workers_of() { pgrep -x qh -P "$1"; }   # its forked workers (not a popen shell)
has_workers() { [ -n "$(workers_of "$1")" ]; }
no_tmp() { [ -z "$(find "$out" -name '*.tmp')" ]; }
complete() { "$QH" status "$out" 2>/dev/null | grep -q "done.*$1"; }

# 1. A second runner refuses a busy folder.
"$QH" run "$tmp/sweep.json" --out "$out" --quiet 2>"$tmp/a.err" & a=$!; started+=("$a")
until_true test -e "$out/opt-7m.baseline.h5" && until_true has_workers "$a" \
    || bad "the first runner did not reach its cell: $(cat "$tmp/a.err")"
workers=$(workers_of "$a")
msg=$("$QH" run "$tmp/sweep.json" --out "$out" --quiet 2>&1); rc=$?
[ "$rc" = 1 ] && grep -qF "results folder $out is in use by another qh run (pid $a" <<< "$msg" \
    && ok "a second runner refuses, naming the folder and pid $a" || bad "second runner: rc $rc: $msg"

# 2. SIGINT stops the runner and its worker.
kill -INT "$a"; wait "$a"; rc=$?
[ "$rc" = 130 ] && grep -q "^qh run: interrupted; rerun to resume$" "$tmp/a.err" \
    && ok "SIGINT: exit 130, 'interrupted; rerun to resume'" || bad "SIGINT: rc $rc: $(cat "$tmp/a.err")"
left=0
for w in $workers; do kill -0 "$w" 2>/dev/null && left=1; done
[ -n "$workers" ] && [ "$left" = 0 ] && ok "SIGINT: no worker left ($workers)" || bad "workers '$workers' left: $left"
no_tmp && ok "SIGINT: no temporary file left" || bad "temporaries: $(ls -a "$out")"
complete opt-7m.baseline && ok "SIGINT: the complete baseline is kept" || bad "baseline lost: $("$QH" status "$out" 2>&1)"

# 3. SIGTERM, and a runner waiting with --wait-lock takes over and resumes.
"$QH" run "$tmp/sweep.json" --out "$out" --quiet 2>"$tmp/a2.err" & a2=$!; started+=("$a2")
until_true has_workers "$a2" || bad "the runner started no worker: $(cat "$tmp/a2.err")"
workers=$(workers_of "$a2")
"$QH" run "$tmp/sweep.json" --out "$out" --wait-lock 2>"$tmp/b.err" & b=$!; started+=("$b")
until_true grep -q "in use by another qh run (pid $a2); waiting" "$tmp/b.err" \
    && ok "--wait-lock waits for the holder" || bad "--wait-lock: $(cat "$tmp/b.err")"
kill -TERM "$a2"; wait "$a2"; rc=$?
[ "$rc" = 143 ] && grep -q "interrupted; rerun to resume" "$tmp/a2.err" \
    && ok "SIGTERM: exit 143" || bad "SIGTERM: rc $rc: $(cat "$tmp/a2.err")"
left=0
for w in $workers; do kill -0 "$w" 2>/dev/null && left=1; done
[ -n "$workers" ] && [ "$left" = 0 ] && ok "SIGTERM: no worker left" || bad "workers '$workers' left"
wait "$b"; rc=$?
[ "$rc" = 0 ] && grep -q "1 cells selected, 0 complete,.* 1 tasks to run" "$tmp/b.err" \
    && ok "the waiting runner resumes: only the missing cell runs" || bad "resume: rc $rc: $(cat "$tmp/b.err")"
complete opt-7m.rtn.w2.s0 && complete opt-7m.baseline && no_tmp \
    && ok "after the resume both files are complete, no temporary left" || bad "after resume: $(ls -a "$out")"
summary
