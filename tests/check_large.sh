#!/bin/bash
# tests/check_large.sh QH -- real-size models in bounded memory (`make check-large`).
#
# Generates random-weight models of real shapes (experiments/scripts/make_random_model.py,
# deterministic, no downloads) under $LARGE_DIR (default build/large) and runs them spilled
# (`qh run --scratch`, model.h: the float32 weights in a scratch file, one block resident):
#   1.1b  TinyLlama-shaped (22 x 2048, ffn 5632, GQA 32/4, BF16): GPTQ 4-bit g128 on every
#         block, 4 calibration windows of 256 tokens, 2 evaluation windows of 256; the cell's
#         peak RSS must stay under 3 GB (3e9 bytes), and is printed beside the dry run's
#         estimate.
#   7b    Llama-7B-shaped (32 x 4096, ffn 11008, F16): GPTQ 4-bit g128 on block 0 alone
#         ("calibration": {"max_blocks": 1}: the other blocks stay float and are not visited),
#         4 windows of 128 tokens, one evaluation window; the measured peak must be within
#         20 % of the estimate.
# Each part is skipped when the disk under $LARGE_DIR lacks room for the model and its scratch
# file (4 bytes a parameter) or the machine lacks the memory its estimate asks; LARGE=1.1b or
# LARGE=7b runs one part.  Baselines run before the cells (each task in its own process, so
# /provenance/peak_rss_bytes is that task's); the float reference then comes from the cache.
# Wall time on a 2-core machine with one BLAS thread: about 35 min (1.1b) and 20 min (7b).
QH=${1:-bin/qh}
. "$(dirname "$0")/lib.sh"
set -u
DIR=${LARGE_DIR:-build/large}
ONLY=${LARGE:-}
gib()  { awk -v b="$1" 'BEGIN { printf "%.2f GiB", b / 2^30 }'; }
mkdir -p "$DIR/scratch" || { echo "check-large: cannot create $DIR"; exit 1; }
command -v h5dump >/dev/null || { echo "check-large: h5dump (hdf5-tools) is needed"; exit 1; }
free_bytes() { df -Pk "$DIR" | awk 'NR == 2 { printf "%.0f\n", $4 * 1024 }'; }
mem_bytes()  { awk '/^MemTotal:/ { printf "%.0f\n", $2 * 1024 }' /proc/meminfo; }

# part NAME PRESET DIR_NAME PARAMS STORED_BYTES CONFIG_BODY
# Generates the model if absent, runs its baseline then its cell spilled, and leaves the cell's
# file in $DIR/res-NAME and the dry run's peak estimate (bytes) in $est.
est=0 peak=0
run_part() {
    local name=$1 preset=$2 model=$DIR/$3 params=$4 stored=$5 body=$6
    local need=$((params * 4 + (params * 4) / 10))
    [ -d "$model" ] || need=$((need + stored))
    if [ "$(free_bytes)" -lt "$need" ]; then
        skip "$name: $(gib "$need") of disk needed under $DIR, $(gib "$(free_bytes)") free"; return 1
    fi
    if [ ! -f "$model/config.json" ]; then
        echo "check-large: generating $model ($preset)"
        /usr/bin/env python3 experiments/scripts/make_random_model.py --preset "$preset" "$model" \
            || { bad "$name: make_random_model.py failed"; return 1; }
    fi
    local cfg=$DIR/$name.json out=$DIR/res-$name
    printf '{ "name": "large-%s", "models": ["%s"],\n%s }\n' "${name//./-}" "$model" "$body" > "$cfg"
    local dry
    dry=$(OPENBLAS_NUM_THREADS=1 "$QH" run "$cfg" --out "$out" --dry-run --scratch "$DIR/scratch" 2>&1)
    est=$(sed -n 's/.*peak ~\([0-9.]*\) \([GM]\)iB.*/\1 \2/p' <<<"$dry" | head -1 \
          | awk '{ printf "%.0f\n", $1 * ($2 == "G" ? 2^30 : 2^20) }')
    if [ -z "$est" ] || [ "$est" -le 0 ]; then bad "$name: no estimate in the dry run"; return 1; fi
    if [ "$(mem_bytes)" -lt $((est + est / 5)) ]; then
        skip "$name: the estimate $(gib "$est") (+20 %) exceeds this machine's memory"; return 1
    fi
    rm -rf "$out"
    local t0=$SECONDS
    OPENBLAS_NUM_THREADS=1 "$QH" run "$cfg" --out "$out" --baseline 0 --scratch "$DIR/scratch" \
        || { bad "$name: baseline failed"; return 1; }
    OPENBLAS_NUM_THREADS=1 "$QH" run "$cfg" --out "$out" --cell 0 --scratch "$DIR/scratch" \
        || { bad "$name: cell failed"; return 1; }
    local f
    f=$(ls "$out"/*.w4.s0.h5 2>/dev/null | head -1)
    [ -n "$f" ] && [ "$(attr "$f" /run status)" = 0 ] || { bad "$name: cell file missing or failed"; return 1; }
    peak=$(attr "$f" /provenance peak_rss_bytes | awk '{ printf "%.0f", $1 }')
    echo "check-large: $name: peak RSS $(gib "$peak") measured, $(gib "$est") estimated" \
         "($(awk -v p="$peak" -v e="$est" 'BEGIN { printf "%+.1f %%", 100 * (p - e) / e }')), " \
         "$((SECONDS - t0)) s; ppl $(attr "$f" /run/eval/gutenberg ppl)"
    [ -z "$(ls -A "$DIR/scratch")" ] && ok "$name: nothing left in the scratch folder" \
        || bad "$name: files left in $DIR/scratch"
    return 0
}

if [ -z "$ONLY" ] || [ "$ONLY" = 1.1b ]; then
    if run_part 1.1b tinyllama-1.1b tinyllama-1b1 1100048384 2200096768 '
  "datasets": { "gutenberg": "data/gutenberg_heldout_2M.txt" },
  "calibration": { "data": "data/gutenberg_calib_4M.txt", "nsamples": 4, "seqlen": 256 },
  "eval": { "seqlen": 256, "max_windows": 2 },
  "methods": [ { "method": "gptq", "params": { "group": 128 } } ], "bits": [4], "seeds": [0]'; then
        [ "$peak" -lt 3000000000 ] && ok "1.1b: GPTQ 4-bit end to end in $(gib "$peak") (< 3 GB)" \
            || bad "1.1b: peak RSS $(gib "$peak"), not under 3 GB"
    fi
fi
if [ -z "$ONLY" ] || [ "$ONLY" = 7b ]; then
    if run_part 7b llama-7b llama-7b 6738415616 13476831232 '
  "datasets": { "gutenberg": "data/gutenberg_heldout_2M.txt" },
  "calibration": { "data": "data/gutenberg_calib_4M.txt", "nsamples": 4, "seqlen": 128,
                   "max_blocks": 1 },
  "eval": { "seqlen": 128, "max_windows": 1 },
  "methods": [ { "method": "gptq", "params": { "group": 128 } } ], "bits": [4], "seeds": [0]'; then
        awk -v p="$peak" -v e="$est" 'BEGIN { d = (p - e) / e; exit !(d > -0.2 && d < 0.2) }' \
            && ok "7b: one block, measured peak $(gib "$peak") within 20 % of the estimate $(gib "$est")" \
            || bad "7b: measured peak $(gib "$peak") against the estimate $(gib "$est"): off by more than 20 %"
    fi
fi
summary
