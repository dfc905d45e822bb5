#!/bin/bash
# tests/test_slurm.sh -- the Slurm backend of `qh run` and `qh status`.
#
# Part 1 (no Slurm needed): `--backend slurm --dry-run` prints an array script
# with the array range, throttle, CPUs, OPENBLAS_NUM_THREADS pinned to the
# task's CPUs, absolute paths, the site's extra #SBATCH lines, an index map
# from array tasks to (non-contiguous) cells, and a merge script with an
# afterany dependency; it writes nothing.
# Part 2 (root with apt-get): installs slurm-wlm and munge when missing, starts
# a single-node cluster (tests/slurm/slurm-local.sh), runs a small sweep as a
# job array, and checks every cell file against the local backend's file
# outside /provenance (both at one OpenBLAS thread), the merge job's outputs,
# `qh status` on a sweep whose second model is missing, and that a
# resubmission covers only the failed cells.  Without root, apt-get or
# working daemons it reports SKIP.  Needs $QH and hdf5-tools; run from the
# repository root.
. "$(dirname "$0")/lib.sh"

if [ "${QH_TEST_FAST:-0}" != 0 ]; then
    skip "Slurm backend under QH_TEST_FAST (the normal suite runs it)"; summary
fi
need_hdf5_tools h5dump h5diff
new_tmp
export SLURM_DIR=$tmp/slurm SLURM_CONF=$tmp/slurm/slurm.conf
started=0 jobs_submitted=""
cleanup() {
    [ -n "$jobs_submitted" ] && scancel $jobs_submitted 2>/dev/null
    [ "$started" = 1 ] && tests/slurm/slurm-local.sh down
    rm -rf "$tmp"
}
trap cleanup EXIT

# attr FILE PATH NAME: prints a scalar attribute's value

cat > "$tmp/sweep.json" <<JSON
{ "name": "slurmtest", "models": ["models/opt-7m"],
  "datasets": { "wikitext2": "data/wikitext2_test.raw" },
  "calibration": { "nsamples": 2, "seqlen": 128 },
  "eval": { "seqlen": 256, "max_windows": 1 },
  "methods": [ { "method": "rtn" }, { "method": "gptq" } ],
  "bits": [4], "seeds": [0] }
JSON

# ---- Part 1: script generation
out=$("$QH" run "$tmp/sweep.json" --backend slurm --dry-run --out "$tmp/dry" --only '*.gptq.*' \
      --cpus-per-task 2 --array-max 3 --partition short --time 0:10:00 --mem 2G \
      --sbatch-arg=--account=proj --sbatch-arg --qos=low 2>&1); rc=$?
[ "$rc" = 0 ] && ok "dry run exits 0" || bad "dry run exits $rc: $out"
[ ! -e "$tmp/dry" ] && ok "dry run writes nothing" || bad "dry run created $tmp/dry"
has() { grep -qF -- "$2" <<< "$out" && ok "$1" || bad "$1: no '$2' in the dry run"; }
has "array range: baseline + 1 selected cell, at most 3 at once" "#SBATCH --array=0-1%3"
has "CPUs per task" "#SBATCH --cpus-per-task=2"
has "partition" "#SBATCH --partition=short"
has "time limit" "#SBATCH --time=0:10:00"
has "memory" "#SBATCH --mem=2G"
has "site sbatch option (--sbatch-arg=ARG)" "#SBATCH --account=proj"
has "site sbatch option (--sbatch-arg ARG)" "#SBATCH --qos=low"
has "OpenBLAS threads pinned to the task's CPUs" 'export OPENBLAS_NUM_THREADS=${SLURM_CPUS_PER_TASK'
has "merge waits for the array with afterany" "#SBATCH --dependency=afterany:"
has "merge job merges into OUT/merged.h5" '"$QH" merge "$OUT" -o "$OUT/merged.h5"'
has "merge job records qh status" '"$QH" status "$OUT" --config "$CONFIG" > "$OUT/status.txt"'
has "index map: task 0 is the baseline" "baseline 0 opt-7m.baseline"
has "index map: task 1 is cell 1 (non-contiguous)" "cell 1 opt-7m.gptq.w4.s0"
grep -q "opt-7m.rtn.w4.s0$" <<< "$(sed -n '/tasks.map/,/array.sbatch/p' <<< "$out")" \
    && bad "index map holds a cell outside --only" || ok "index map holds only the selected cells"
has "tasks read the submission's copy of the config" "CONFIG='$(realpath "$tmp")/dry/slurm/1/config.json'"
has "absolute qh path" "QH='$(realpath "$QH")'"
has "map beside the scripts, under OUT/slurm/1" "MAP='$tmp/dry/slurm/1/tasks.map'"
has "task runs one cell into its own log" '--"$kind" "$index" --out "$OUT" >> "$log" 2>&1'
out=$("$QH" run "$tmp/sweep.json" --backend pbs --dry-run 2>&1); rc=$?
[ "$rc" = 2 ] && grep -q "local or slurm" <<< "$out" && ok "unknown backend is a usage error" || bad "backend pbs: rc $rc $out"
out=$("$QH" run "$tmp/sweep.json" --backend slurm --cell 0 --dry-run 2>&1); rc=$?
[ "$rc" = 2 ] && ok "--cell with --backend slurm is a usage error" || bad "--cell with slurm: rc $rc"
out=$("$QH" status "$tmp/nothing" --config "$tmp/sweep.json"); rc=$?
[ "$rc" = 1 ] && grep -q "3 expected, 0 done, 0 stale, 0 failed, 3 missing" <<< "$out" \
    && ok "status of an empty sweep: 3 missing, exit 1" || bad "status empty: rc $rc $out"

# ---- Part 2: a real single-node Slurm
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    skip "Slurm end to end: needs root and apt-get (single-node cluster)"; summary
fi
if ! command -v sbatch >/dev/null || ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
   || ! command -v munged >/dev/null; then
    echo "test_slurm: installing slurm-wlm and munge (about a minute)"
    if ! { apt-get update -q >/dev/null 2>&1 &&
           DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
               slurm-wlm munge >/dev/null 2>&1; }; then
        skip "Slurm end to end: apt-get install slurm-wlm munge failed"; summary
    fi
fi
started=1
if ! tests/slurm/slurm-local.sh up >"$tmp/up.log" 2>&1; then
    skip "Slurm end to end: the single-node daemons did not start: $(tail -n 2 "$tmp/up.log" | tr '\n' ' ')"
    summary
fi
ok "single-node Slurm is up"

# submit CONFIG OUT: submits with one CPU per task; sets $sub to qh's output
# and adds the job ids to $jobs_submitted (for wait_jobs and the cleanup)
submit() {
    local n
    sub=$("$QH" run "$1" --backend slurm --out "$2" --cpus-per-task 1 --quiet 2>&1)
    n=$(ls "$2/slurm" 2>/dev/null | grep -E '^[0-9]+$' | sort -n | tail -n 1)
    [ -n "$n" ] && [ -f "$2/slurm/$n/jobs" ] &&
        jobs_submitted="$jobs_submitted $(awk '{print $2}' "$2/slurm/$n/jobs" | tr '\n' ' ')"
}
# wait_jobs: until no submitted job is pending or running (at most 180 s)
wait_jobs() {
    local ids; ids=$(echo $jobs_submitted | tr ' ' ',')
    [ -n "$ids" ] || return 1
    for _ in $(seq 900); do
        squeue -h -j "$ids" 2>/dev/null | grep -q . || return 0
        sleep 0.2
    done
    return 1
}

submit "$tmp/sweep.json" "$tmp/s"
grep -q "submitted array job [0-9]* (3 tasks) and merge job [0-9]*" <<< "$sub" \
    && ok "sweep submitted: 3 array tasks + merge" || bad "submission: $sub"
# The local backend at the same thread count, while the array runs.
OPENBLAS_NUM_THREADS=1 "$QH" run "$tmp/sweep.json" --out "$tmp/local" --quiet \
    && ok "local backend run" || bad "local backend run failed"
cmp -s "$tmp/sweep.json" "$tmp/s/slurm/1/config.json" && cmp -s "$tmp/sweep.json" "$tmp/s/sweep.json" \
    && ok "the submission keeps its own copy of the config, and OUT/sweep.json its snapshot" \
    || bad "config copies: $(ls "$tmp/s" "$tmp/s/slurm/1")"
grep -qF "CONFIG='$tmp/s/slurm/1/config.json'" "$tmp/s/slurm/1/array.sbatch" \
    && grep -qF "CONFIG='$tmp/s/slurm/1/config.json'" "$tmp/s/slurm/1/merge.sbatch" \
    && ok "array tasks and merge job read the submission's copy" || bad "scripts do not read the copy"
wait_jobs && ok "array and merge job finished" || bad "jobs still queued after 180 s: $(squeue -h)"
ids="opt-7m.baseline opt-7m.rtn.w4.s0 opt-7m.gptq.w4.s0"
for id in $ids; do
    [ "$(attr "$tmp/s/$id.h5" /run status)" = 0 ] && ok "$id complete under Slurm" || bad "$id status under Slurm"
    h5diff -q --exclude-path /provenance "$tmp/s/$id.h5" "$tmp/local/$id.h5" >/dev/null \
        && ok "$id identical to the local backend outside /provenance" || bad "$id differs from the local backend"
    grep -q "OPENBLAS_NUM_THREADS=1" "$tmp/s/logs/$id.log" 2>/dev/null \
        && ok "$id logged to logs/$id.log with one BLAS thread" || bad "no log $tmp/s/logs/$id.log"
done
grep -q "3 expected, 3 done, 0 stale, 0 failed, 0 missing" "$tmp/s/status.txt" 2>/dev/null \
    && ok "merge job recorded qh status" || bad "status.txt: $(cat "$tmp/s/status.txt" 2>&1)"
if "$QH" merge --help >/dev/null 2>&1; then
    runs=$(h5ls "$tmp/s/merged.h5/runs" 2>/dev/null | awk '{print $1}' | sort | tr '\n' ' ')
    [ "$runs" = "opt-7m.baseline opt-7m.gptq.w4.s0 opt-7m.rtn.w4.s0 " ] \
        && ok "merged.h5 lists every cell" || bad "merged.h5 runs: '$runs'"
else
    skip "qh merge is not a command of this build: merged.h5 not checked"
fi
out=$("$QH" status "$tmp/s"); rc=$?
[ "$rc" = 0 ] && ok "qh status (recorded config): all done, exit 0" || bad "qh status: rc $rc $out"
out=$("$QH" run "$tmp/sweep.json" --backend slurm --out "$tmp/s" 2>&1)
grep -q "nothing to submit" <<< "$out" && [ ! -e "$tmp/s/slurm/2" ] \
    && ok "resubmitting a complete sweep submits nothing" || bad "resubmit complete: $out"

# A second model that does not exist: its tasks fail; the first model's cells,
# copied from the run above, are complete and must not be resubmitted.
sed 's|"models": \["models/opt-7m"\]|"models": ["models/opt-7m", "'"$tmp"'/m2"]|' \
    "$tmp/sweep.json" > "$tmp/fail.json"
mkdir -p "$tmp/f" && cp "$tmp"/s/opt-7m.*.h5 "$tmp/f/"
submit "$tmp/fail.json" "$tmp/f"
grep -q "(3 tasks)" <<< "$sub" && ok "failing sweep: 3 tasks, the second model's baseline and cells" \
    || bad "failing sweep submission: $sub"
wait_jobs || bad "failing sweep still queued after 180 s"
out=$("$QH" status "$tmp/f"); rc=$?
grep -q "^failed   m2.rtn.w4.s0: status .*m2" <<< "$out" && [ "$rc" = 1 ] \
    && ok "qh status reports the missing model's cell as failed with its message, exit 1" \
    || bad "qh status after failure: rc $rc $out"
grep -q "6 expected, 3 done, 0 stale, 3 failed, 0 missing" <<< "$out" \
    && ok "qh status counts 3 done, 3 failed" || bad "status counts: $out"
grep -q "^failed   m2.baseline" "$tmp/f/status.txt" 2>/dev/null \
    && ok "merge job recorded the failures in status.txt" || bad "status.txt after failure"

# Repair the model and resubmit: only the three failed tasks run.
ln -sfn "$PWD/models/opt-7m" "$tmp/m2"
submit "$tmp/fail.json" "$tmp/f"
map=$(cat "$tmp/f/slurm/2/tasks.map" 2>/dev/null)
[ "$map" = "$(printf 'baseline 1 m2.baseline\ncell 2 m2.rtn.w4.s0\ncell 3 m2.gptq.w4.s0')" ] \
    && ok "resubmission covers only the failed cells" || bad "resubmission map: '$map' ($sub)"
wait_jobs || bad "resubmission still queued after 180 s"
out=$("$QH" status "$tmp/f" --config "$tmp/fail.json"); rc=$?
[ "$rc" = 0 ] && grep -q "6 expected, 6 done" <<< "$out" \
    && ok "after resubmission every cell is done" || bad "status after resubmission: rc $rc $out"
summary
