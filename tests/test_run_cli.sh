#!/bin/bash
# tests/test_run_cli.sh -- `qh run` end to end on the vendored opt-7m with a
# tiny sweep: results files, resumability, byte-identical reruns outside
# /provenance, a failed cell recorded while the sweep goes on, a killed run
# leaving no corrupt file, `qh layer` agreeing with `qh run` on the same cell,
# and bad configurations rejected with the key path.
# The float32 baseline's first three windows must reproduce reference.json.
# Needs $QH, h5dump and h5diff (hdf5-tools); run from the repository root.
. "$(dirname "$0")/lib.sh"
new_tmp
trap 'rm -rf "$tmp"' EXIT
need_hdf5_tools h5dump h5diff

# attr FILE PATH NAME: prints a scalar attribute's value

cat > "$tmp/sweep.json" <<JSON
{ "name": "t", "models": ["models/opt-7m"],
  "datasets": { "wikitext2": "data/wikitext2_test.raw" },
  "calibration": { "nsamples": 2, "seqlen": 128 },
  "eval": { "seqlen": 1024, "max_windows": 3 },
  "methods": [ { "method": "rtn" }, { "method": "gptq" }, { "method": "ldlq", "incoherence": "kron" } ],
  "bits": [4], "seeds": [0] }
JSON

out=$("$QH" run "$tmp/sweep.json" --dry-run --out "$tmp/a" 2>&1)
grep -q "opt-7m.ldlq+incoh.w4.s0 .*pending" <<< "$out" && grep -q "3 cells selected" <<< "$out" \
    && ok "dry run lists 3 pending cells" || bad "dry run: $out"
grep -Eq "opt-7m.gptq.w4.s0 +pending +peak ~[0-9]+ MiB" <<< "$out" \
    && grep -Eq "^largest estimated peak RSS of a cell: [0-9]+ MiB" <<< "$out" \
    && ok "dry run prints each cell's estimated peak memory" || bad "dry run peaks: $out"
# the wall-time estimate (pipeline/timing.h): a column beside the peak, the largest and the total
grep -Eq "opt-7m.gptq.w4.s0 +pending +peak ~[0-9]+ MiB +time ~[0-9.]+ (s|min|h)$" <<< "$out" \
    && grep -Eq "^largest estimated time of a cell: [0-9.]+ (s|min|h); all to run: [0-9.]+ (s|min|h) over 1 job" <<< "$out" \
    && grep -Eq "probe of [0-9.]+ GFLOP/s float32" <<< "$out" \
    && ok "dry run prints each cell's estimated time, the largest and the total" \
    || bad "dry run times: $out"
sed 's/"method": "rtn" }/"method": "aqlm" }/' "$tmp/sweep.json" > "$tmp/lower.json"
out=$("$QH" run "$tmp/lower.json" --dry-run --out "$tmp/a" 2>&1)
grep -Eq "opt-7m.aqlm.w4.s0 +pending +peak ~[0-9]+ MiB +time ~>=[0-9.]+ (s|min|h)$" <<< "$out" \
    && grep -q "lower bound: not counted are the method's searches" <<< "$out" \
    && ok "dry run marks a method it cannot model as a lower bound" || bad "dry run lower bound: $out"
[ ! -e "$tmp/a" ] && ok "dry run writes nothing" || bad "dry run created $tmp/a"

"$QH" run "$tmp/sweep.json" --out "$tmp/a" --jobs 2 --quiet; rc=$?
[ "$rc" -eq 0 ] && ok "sweep exits 0" || bad "sweep exits $rc"
for id in opt-7m.rtn.w4.s0 opt-7m.gptq.w4.s0 opt-7m.ldlq+incoh.w4.s0 opt-7m.baseline; do
    [ "$(attr "$tmp/a/$id.h5" /run status)" = 0 ] && ok "$id complete" || bad "$id status"
done
[ -z "$(ls "$tmp/a" | grep -v '\.h5$' | grep -vx sweep.json | grep -vx float-cache)" ] && ok "no temporary files left" || bad "leftovers: $(ls "$tmp/a")"
[ -n "$(ls "$tmp/a/float-cache" | grep '\.bin$')" ] && [ -z "$(ls "$tmp/a/float-cache" | grep -v '\.bin$')" ] \
    && ok "float reference cache written, no temporaries" || bad "float-cache: $(ls "$tmp/a/float-cache")"
[ -n "$(h5dump -a /run/eval/wikitext2/kl_mean "$tmp/a/opt-7m.gptq.w4.s0.h5" 2>/dev/null | grep '(0)')" ] \
    && ok "cell records its KL to the float model" || bad "no kl_mean in opt-7m.gptq.w4.s0.h5"
cmp -s "$tmp/sweep.json" "$tmp/a/sweep.json" && ok "the config is snapshotted to OUT/sweep.json" || bad "no snapshot"

# The baseline's 3 windows at 1024 against reference.json's window_nll_first3
# (mean of the three, then exp): 1e-4 relative, as for qh ppl.
ref=$(tr -d ' \n' < models/opt-7m/reference.json | sed 's/"gutenberg_heldout_2M.txt".*//' |
      sed -n 's/.*"1024":{"windows":[0-9]*,"ppl":[^,]*,"window_nll_first3":\[\([^]]*\)\].*/\1/p')
ppl=$(attr "$tmp/a/opt-7m.baseline.h5" /run/eval/wikitext2 ppl)
if [ -n "$ref" ] && [ -n "$ppl" ]; then
    awk -v r="$ref" -v p="$ppl" 'BEGIN { n = split(r, a, ","); s = 0; for (i = 1; i <= n; i++) s += a[i];
         want = exp(s / n); d = (p - want) / want; exit !(d < 1e-4 && d > -1e-4) }' \
        && ok "baseline ppl over 3 windows $ppl matches reference" || bad "baseline ppl $ppl vs reference windows $ref"
else
    bad "could not read reference ($ref) or baseline ppl ($ppl)"
fi
q=$(attr "$tmp/a/opt-7m.gptq.w4.s0.h5" /run/eval/wikitext2 ppl)
awk -v q="$q" -v p="$ppl" 'BEGIN { exit !(q > p && q < 1.5 * p) }' \
    && ok "4-bit GPTQ ppl $q is above float32 $ppl and within 50 %" || bad "4-bit GPTQ ppl $q vs float32 $ppl"
[ "$(attr "$tmp/a/opt-7m.ldlq+incoh.w4.s0.h5" /run/params grid)" = rms ] \
    && ok "incoherence cells default to the rms grid" || bad "grid under incoherence"

# --save-model: the written folder evaluates to the perplexity the cell recorded.
"$QH" run "$tmp/sweep.json" --out "$tmp/s" --only opt-7m.gptq.w4.s0 --save-model "$tmp/m" --quiet
saved=$("$QH" ppl --model "$tmp/m/opt-7m.gptq.w4.s0" --data data/wikitext2_test.raw --seqlen 1024 \
        --max-windows 3 --json 2>/dev/null | sed -n 's/.*"ppl":\([0-9.e+-]*\).*/\1/p')
cellppl=$(attr "$tmp/s/opt-7m.gptq.w4.s0.h5" /run/eval/wikitext2 ppl)
# opt-7m is stored in F16 and stays so: the saved weights are the cell's rounded to F16
awk -v a="$saved" -v b="$cellppl" 'BEGIN { d = (a - b) / b; exit !(a != "" && d < 1e-3 && d > -1e-3) }' \
    && ok "saved model's ppl $saved equals the cell's $cellppl up to F16 rounding" \
    || bad "saved model ppl '$saved' vs cell $cellppl"
out=$("$QH" info --model "$tmp/m/opt-7m.gptq.w4.s0" 2>&1)
grep -q '^  dtype F16 ' <<< "$out" && ! grep -q '^  dtype F32 ' <<< "$out" \
    && ok "saved model keeps the F16 dtype" || bad "saved dtypes: $out"
meta="$tmp/m/opt-7m.gptq.w4.s0/qh_quantization.json"
hash=$(attr "$tmp/s/opt-7m.gptq.w4.s0.h5" /run protocol_sha256)
[ -n "$hash" ] && grep -q "\"protocol_sha256\":[[:space:]]*\"$hash\"" "$meta" \
    && grep -q '"method":[[:space:]]*"gptq"' "$meta" && grep -q '"bits":[[:space:]]*4' "$meta" \
    && grep -q '"group":' "$meta" && grep -q '"bits_per_weight_total":' "$meta" \
    && ok "qh_quantization.json: method, bits, group, bits per weight, the cell's protocol hash" \
    || bad "metadata: $(cat "$meta" 2>&1 | head -20)"
cmp -s models/opt-7m/tokenizer.json "$tmp/m/opt-7m.gptq.w4.s0/tokenizer.json" \
    && ok "tokenizer.json copied" || bad "tokenizer.json not copied"

out=$("$QH" run "$tmp/sweep.json" --out "$tmp/a" 2>&1); rc=$?
grep -q "0 tasks to run" <<< "$out" && [ "$rc" -eq 0 ] && ok "rerun skips complete cells" || bad "rerun: $out"

fast=${QH_TEST_FAST:-0}   # the sanitizer run skips the slow repeats below
if [ "$fast" != 0 ]; then echo "SKIP: identical-rerun and kill -9 checks under QH_TEST_FAST"; skip=$((skip + 2)); fi
[ "$fast" = 0 ] && "$QH" run "$tmp/sweep.json" --out "$tmp/b" --jobs 2 --quiet
[ "$fast" = 0 ] && {
same=1
for f in "$tmp"/a/*.h5; do h5diff -q --exclude-path /provenance "$f" "$tmp/b/$(basename "$f")" >/dev/null || same=0; done
[ "$same" = 1 ] && ok "two runs identical outside /provenance" || bad "runs differ outside /provenance"
}

# A cell that fails is recorded and the others still run.
sed 's|"models": \["models/opt-7m"\]|"models": ["models/opt-7m", "'"$tmp"'/no-such-model"]|; s|"max_windows": 3|"max_windows": 1|' \
    "$tmp/sweep.json" > "$tmp/fail.json"
out=$("$QH" run "$tmp/fail.json" --out "$tmp/c" --only 'no-such-model.rtn*' --quiet 2>&1); rc=$?
st=$(attr "$tmp/c/no-such-model.rtn.w4.s0.h5" /run status)
[ "$rc" = 1 ] && [ -n "$st" ] && [ "$st" != 0 ] && ok "failed cell recorded with status $st, exit 1" \
    || bad "failed cell: rc $rc status '$st' $out"
attr "$tmp/c/no-such-model.rtn.w4.s0.h5" /run message | grep -q "no-such-model" \
    && ok "failure message names the model folder" || bad "failure message"

# kill -9 in the middle: every finished file is complete, and a rerun finishes.
[ "$fast" = 0 ] && {
"$QH" run "$tmp/sweep.json" --out "$tmp/d" --quiet & pid=$!
sleep 4; kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
pkill -9 -f "qh run $tmp/sweep.json --out $tmp/d" 2>/dev/null; sleep 0.5
corrupt=0
for f in "$tmp"/d/*.h5; do [ -e "$f" ] || continue; [ "$(attr "$f" /run status)" = 0 ] || corrupt=1; done
[ "$corrupt" = 0 ] && ok "killed run left no incomplete file under a final name" || bad "corrupt file after kill"
"$QH" run "$tmp/sweep.json" --out "$tmp/d" --quiet && [ "$(ls "$tmp"/d/*.h5 | wc -l)" = 4 ] \
    && ok "rerun after kill -9 completes the sweep" || bad "rerun after kill"
}

# PTQ1.61's block objective: the cell records the block loss before and after
# tuning, lower after on every block; the layer objective has no such columns;
# two runs are identical outside /provenance.
sed 's/"methods": \[.*\]/"methods": [ { "method": "ptq161", "params": { "steps": 20, "epochs": 3 } }, { "method": "ptq161", "label": "ptq161-layer", "params": { "steps": 20, "objective": "layer" } } ]/; s/"bits": \[4\]/"bits": [1]/' \
    "$tmp/sweep.json" > "$tmp/ptq.json"
"$QH" run "$tmp/ptq.json" --out "$tmp/p1" --quiet
col() { h5dump -d "/run/layer_table/$2" -y -w 0 -m %.17g "$1" 2>/dev/null | sed -n '/DATA {/,/}/p' | sed '1d;$d' |
        tr ',' '\n' | tr -d ' ' | grep -v '^$'; }
init=$(col "$tmp/p1/opt-7m.ptq161.w1.s0.h5" block_loss_init); final=$(col "$tmp/p1/opt-7m.ptq161.w1.s0.h5" block_loss_final)
lower=$(paste <(echo "$init") <(echo "$final") | awk '$2 < $1 { n++ } END { print n + 0 }')
[ "$(echo "$init" | wc -l)" = 36 ] && [ "$lower" = 36 ] \
    && ok "block objective: block loss lower after tuning in all 6 blocks (36 rows)" || bad "block loss init '$init' final '$final'"
[ -z "$(col "$tmp/p1/opt-7m.ptq161-layer.w1.s0.h5" block_loss_init)" ] \
    && ok "layer objective has no block-loss columns" || bad "layer objective wrote block-loss columns"
if [ "$fast" = 0 ]; then
    "$QH" run "$tmp/ptq.json" --out "$tmp/p2" --quiet --only 'opt-7m.ptq161.*'
    h5diff -q --exclude-path /provenance "$tmp/p1/opt-7m.ptq161.w1.s0.h5" "$tmp/p2/opt-7m.ptq161.w1.s0.h5" >/dev/null \
        && ok "block objective: two runs identical outside /provenance" || bad "block objective runs differ"
else echo "SKIP: block-objective rerun under QH_TEST_FAST"; skip=$((skip + 1)); fi

# `qh layer` and `qh run` draw the same random streams for a linear (key of
# layer and kind): with the same calibration, block 0 (whose Hessians come
# from the float model in both) gets the same Ŵ, so the same proxies, under
# kron rotations that differ per linear.  At the BLAS thread count the run's
# workers had: the Hessians' dsyrk may round differently at another.
threads=$(attr "$tmp/a/opt-7m.ldlq+incoh.w4.s0.h5" /provenance openblas_threads)
OPENBLAS_NUM_THREADS=${threads:-1} "$QH" layer --model models/opt-7m --tensor 'model.decoder.layers.0.*' --method ldlq --bits 4 \
    --incoherence kron,hadamard --nsamples 2 --seqlen 128 --out "$tmp/l" --quiet; rc=$?
[ "$rc" = 0 ] && [ -e "$tmp/l/opt-7m.ldlq+incoh.w4.s0.h5" ] && [ -e "$tmp/l/opt-7m.ldlq+rht.w4.s0.h5" ] \
    && ok "qh layer names kron and hadamard files +incoh and +rht" || bad "qh layer: rc $rc, $(ls "$tmp/l" 2>&1)"
for c in proxy proxy_proc mu_What; do
    lay=$(col "$tmp/l/opt-7m.ldlq+incoh.w4.s0.h5" $c); run=$(col "$tmp/a/opt-7m.ldlq+incoh.w4.s0.h5" $c | head -6)
    [ "$(echo "$lay" | wc -l)" = 6 ] && [ "$lay" = "$run" ] && [ "$(echo "$lay" | sort -u | wc -l)" = 6 ] \
        && ok "block 0 $c: qh layer equals qh run on all 6 linears" || bad "block 0 $c: layer '$lay' run '$run'"
done
out=$("$QH" layer --model models/opt-7m --method ldlq --bits 4 --incoherence fft --out "$tmp/l" 2>&1); rc=$?
[ "$rc" = 2 ] && grep -qF 'unknown incoherence "fft" (expected one of: none, kron, hadamard)' <<< "$out" \
    && ok "qh layer: unknown incoherence lists the valid names" || bad "qh layer --incoherence fft: rc $rc: $out"

# Bad configurations name the key path.
bad_config() {   # NAME JSON-SED EXPECTED-MESSAGE
    sed "$2" "$tmp/sweep.json" > "$tmp/bad.json"
    out=$("$QH" run "$tmp/bad.json" --out "$tmp/e" --dry-run 2>&1); rc=$?
    [ "$rc" = 1 ] && grep -qF -- "$3" <<< "$out" && ok "$1" || bad "$1: rc $rc: $out"
}
bad_config "unknown key" 's/"seeds"/"sedes"/' 'unknown key "sedes"'
bad_config "unknown method" 's/"gptq"/"gptqq"/' 'methods[1].method: unknown method "gptqq"'
bad_config "bad parameter" 's/{ "method": "rtn" }/{ "method": "rtn", "params": { "rounding": "up" } }/' 'methods[0].params.rounding'
bad_config "unknown incoherence" 's/"kron"/"fft"/' \
    'methods[2].incoherence: unknown incoherence "fft" (expected one of: none, kron, hadamard)'
bad_config "bits out of range" 's/"bits": \[4\]/"bits": [12]/' 'bits[0]'
bad_config "block objective under incoherence" \
    's/{ "method": "ldlq", "incoherence": "kron" }/{ "method": "ptq161", "incoherence": "kron" }/' \
    'methods[2]: ptq161 with objective "block" takes incoherence "none"'
bad_config "aqlm fine-tuning under incoherence" \
    's/{ "method": "ldlq", "incoherence": "kron" }/{ "method": "aqlm", "incoherence": "kron", "params": { "finetune": 2 } }/' \
    'methods[2]: aqlm with finetune > 0 takes incoherence "none"'
out=$("$QH" run "$tmp/none.json" 2>&1); rc=$?
[ "$rc" = 1 ] && grep -q "none.json" <<< "$out" && ok "missing config named" || bad "missing config: $out"
summary
