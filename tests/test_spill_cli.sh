#!/bin/bash
# tests/test_spill_cli.sh -- `qh run --scratch DIR` (spilled weights, model.h)
# on the vendored models: opt-7m (F32, mapped in place otherwise) and llama-9m
# (BF16, converted otherwise) give results byte-identical outside /provenance
# to a run without it, including a block-tuned row; nothing is left in DIR;
# the dry run's peak estimate is smaller with it; --save-model writes the same file; a Slurm array script passes
# it on; a missing folder fails the cell with a message naming it.  Every cell
# file records the process's peak RSS under /provenance.
# Needs $QH, h5dump and h5diff (hdf5-tools); run from the repository root.
. "$(dirname "$0")/lib.sh"
new_tmp
trap 'rm -rf "$tmp"' EXIT
need_hdf5_tools h5dump h5diff

cat > "$tmp/s.json" <<JSON
{ "name": "spill", "models": ["models/opt-7m", "models/llama-9m"],
  "datasets": { "wikitext2": "data/wikitext2_test.raw" },
  "calibration": { "nsamples": 2, "seqlen": 64 },
  "eval": { "seqlen": 128, "max_windows": 2 },
  "methods": [ { "method": "gptq", "params": { "group": 32 } },
               { "method": "signround", "params": { "group": 32, "iters": 3 } } ],
  "bits": [3], "seeds": [0] }
JSON
mkdir -p "$tmp/scratch"
"$QH" run "$tmp/s.json" --out "$tmp/held" --quiet; rc1=$?
"$QH" run "$tmp/s.json" --out "$tmp/spilled" --scratch "$tmp/scratch" --quiet; rc2=$?
[ "$rc1" -eq 0 ] && [ "$rc2" -eq 0 ] && ok "both sweeps exit 0" || bad "sweeps exit $rc1, $rc2"
n=0
for a in "$tmp/held/"*.h5; do
    b="$tmp/spilled/$(basename "$a")"
    n=$((n + 1))
    [ -f "$b" ] && [ "$(attr "$b" /run status)" = 0 ] \
        && h5diff -q --exclude-path /provenance "$a" "$b" >/dev/null \
        && ok "$(basename "$a"): identical outside /provenance when spilled" \
        || bad "$(basename "$a") differs: $(h5diff --exclude-path /provenance "$a" "$b" 2>&1 | head -3)"
done
[ "$n" -eq 6 ] && ok "4 cells and 2 baselines compared" || bad "$n files compared, want 6"
[ -z "$(ls -A "$tmp/scratch")" ] && ok "nothing left in the scratch folder" \
    || bad "left in scratch: $(ls "$tmp/scratch")"
rss=$(attr "$tmp/spilled/llama-9m.gptq.w3.s0.h5" /provenance peak_rss_bytes)
awk -v r="$rss" 'BEGIN { exit !(r > 1e6 && r < 1e10) }' \
    && ok "peak RSS recorded under /provenance ($rss bytes)" || bad "peak_rss_bytes '$rss'"

# --save-model streams the file a tensor at a time and drops each spilled block once written:
# the same bytes as a held model's save
for how in held spilled; do
    extra=(); [ "$how" = spilled ] && extra=(--scratch "$tmp/scratch")
    "$QH" run "$tmp/s.json" --out "$tmp/save-$how" --only 'llama-9m.gptq.*' --quiet \
        --save-model "$tmp/model-$how" "${extra[@]}" >/dev/null 2>&1
done
a="$tmp/model-held/llama-9m.gptq.w3.s0/model.safetensors"
b="$tmp/model-spilled/llama-9m.gptq.w3.s0/model.safetensors"
[ -s "$a" ] && cmp -s "$a" "$b" && ok "--save-model of a spilled model: the same file as held" \
    || bad "--save-model files differ or are missing: $(ls -l "$a" "$b" 2>&1 | tr '\n' ' ')"

peak() { "$QH" run "$tmp/s.json" --out "$tmp/dry" --dry-run --only 'llama-9m.gptq.*' "$@" 2>&1 \
         | sed -n 's/.*peak ~\([0-9.]*\) MiB.*/\1/p' | head -1; }
p1=$(peak); p2=$(peak --scratch "$tmp/scratch")
awk -v a="$p1" -v b="$p2" 'BEGIN { exit !(a > 0 && b > 0 && b < a) }' \
    && ok "dry-run peak $p1 MiB held, $p2 MiB spilled" || bad "dry-run peaks '$p1' '$p2'"

script=$("$QH" run "$tmp/s.json" --out "$tmp/slurm" --backend slurm --dry-run --scratch "$tmp/scratch" 2>&1)
grep -q -- "--scratch '$tmp/scratch'" <<<"$script" && ok "the Slurm array script passes --scratch" \
    || bad "no --scratch in the array script"

"$QH" run "$tmp/s.json" --out "$tmp/bad" --only 'opt-7m.gptq.*' --scratch "$tmp/no-such" --quiet \
    > "$tmp/bad.log" 2>&1; rc=$?
f="$tmp/bad/opt-7m.gptq.w3.s0.h5"
[ "$rc" -ne 0 ] && [ -f "$f" ] && [ "$(attr "$f" /run status)" != 0 ] \
    && attr "$f" /run message | grep -q "no-such" \
    && ok "a missing scratch folder fails the cell, naming it" \
    || bad "missing scratch folder: rc $rc, $(attr "$f" /run message)"
summary
