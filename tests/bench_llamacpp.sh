#!/bin/bash
# tests/bench_llamacpp.sh QH -- `qh ppl` against llama.cpp's `llama-perplexity` on the same weights
# in float32 (`make bench`; timings, never a pass/fail test).
#
# Needs a llama.cpp build and a Llama model folder; skipped (with a line saying why) otherwise:
#   LLAMA_PERPLEXITY  the llama-perplexity binary (default: the one on PATH)
#   QH_BENCH_MODEL    a Llama folder in Hugging Face layout, e.g. the random 170M model of
#                     `experiments/scripts/make_random_model.py --preset llama-170m DIR`
# The model is converted once to GGUF F32 (experiments/scripts/hf_to_gguf.py; numpy needed)
# under build/bench/.  Both programs then score QH_BENCH_WINDOWS windows (default 4) of WikiText-2
# at context 512 and 1024 on QH_BENCH_THREADS threads (default 2), each window one batch, the
# KV cache in float32 (-ctk f32 -ctv f32; LLAMA_ARGS adds options), QH_BENCH_REPEATS times
# (default 3) alternately; the best tokens/s of each is printed with the ratio.  Both rates
# count the forward and the scoring, after the load and the tokenisation: qh ppl's own
# "tokens_per_second", and for llama.cpp its "prompt eval" rate where it prints one, else the
# windows' tokens over the time between its log lines "calculating perplexity" and "Final
# estimate".  The two perplexities differ by protocol: llama-perplexity scores the second half of
# each window only.  OpenBLAS's kernel (OPENBLAS_CORETYPE) sets qh's speed: see docs/cluster.md.
QH=${1:-bin/qh}
set -u
DATA=${QH_BENCH_DATA:-../shared/data/wikitext2_test.raw}
WINDOWS=${QH_BENCH_WINDOWS:-4}
THREADS=${QH_BENCH_THREADS:-2}
REPEATS=${QH_BENCH_REPEATS:-3}
PY=${PYTHON:-/usr/bin/python3}
LP=${LLAMA_PERPLEXITY:-$(command -v llama-perplexity || true)}
say() { echo "bench_llamacpp: $*"; }
larger() { awk -v a="$1" -v b="$2" 'BEGIN { print (b > a ? b : a) }'; }

[ -n "$LP" ] && [ -x "$LP" ] || { say "skipped: no llama-perplexity (set LLAMA_PERPLEXITY=path)"; exit 0; }
[ -n "${QH_BENCH_MODEL:-}" ] || { say "skipped: set QH_BENCH_MODEL=DIR (a Llama folder)"; exit 0; }
[ -f "$DATA" ] || { say "skipped: $DATA not found (set QH_BENCH_DATA)"; exit 0; }
"$PY" -c 'import numpy' 2>/dev/null || { say "skipped: $PY has no numpy (set PYTHON)"; exit 0; }

mkdir -p build/bench
GGUF=build/bench/$(basename "$(cd "$QH_BENCH_MODEL" && pwd)").gguf
if [ ! -f "$GGUF" ] || [ -n "$(find "$QH_BENCH_MODEL" -newer "$GGUF" -name '*.safetensors')" ]; then
    say "converting $QH_BENCH_MODEL to $GGUF (float32)"
    "$PY" "$(dirname "$0")/../experiments/scripts/hf_to_gguf.py" "$QH_BENCH_MODEL" "$GGUF" || exit 1
fi

qh_rate() {  # T -> "tokens/s ppl"
    "$QH" ppl --model "$QH_BENCH_MODEL" --data "$DATA" --seqlen "$1" --max-windows "$WINDOWS" \
        --threads "$THREADS" --json 2>/dev/null |
        "$PY" -c 'import json,sys; j=json.load(sys.stdin); print(j["tokens_per_second"], j["ppl"])'
}
llama_rate() {  # T -> "tokens/s ppl"
    # shellcheck disable=SC2086
    "$LP" -m "$GGUF" -f "$DATA" -c "$1" -b "$1" -ub "$1" --chunks "$WINDOWS" -t "$THREADS" \
        -ctk f32 -ctv f32 ${LLAMA_ARGS:-} 2>&1 |
        awk -v tokens="$(($1 * WINDOWS))" '
             # log lines start with the time since start, M.SS.mmm.uuu
             function stamp(s,  f) { split(s, f, "."); return f[1] * 60 + f[2] + f[3] / 1e3 + f[4] / 1e6 }
             /prompt eval time/ { for (i = 1; i <= NF; i++) if ($i == "tokens" && $(i+1) == "per") r = $(i-1) }
             /calculating perplexity over/ { t0 = stamp($1) }
             /Final estimate: PPL/ { t1 = stamp($1); for (i = 1; i <= NF; i++) if ($i == "=") p = $(i+1) }
             END { if (r == "" && t1 > t0 && t0 > 0) r = tokens / (t1 - t0)
                   if (r == "") exit 1; print r, (p == "" ? "nan" : p) }'
}

say "$("$LP" --version 2>&1 | grep -m1 -i version); $THREADS threads, $WINDOWS windows, model $QH_BENCH_MODEL"
printf "%-6s %16s %20s %8s   %s\n" "T" "qh ppl tok/s" "llama.cpp tok/s" "ratio" "perplexity (qh / llama.cpp)"
for T in 512 1024; do
    best_q=0 best_l=0 ppl_q=nan ppl_l=nan
    for _ in $(seq "$REPEATS"); do
        read -r r p < <(qh_rate "$T") || { say "qh ppl failed at T=$T"; exit 1; }
        best_q=$(larger "$best_q" "$r"); ppl_q=$p
        if ! read -r r p < <(llama_rate "$T"); then say "llama-perplexity failed at T=$T"; exit 1; fi
        best_l=$(larger "$best_l" "$r"); ppl_l=$p
    done
    awk -v T="$T" -v q="$best_q" -v l="$best_l" -v pq="$ppl_q" -v pl="$ppl_l" \
        'BEGIN { printf "%-6s %16.1f %20.1f %7.2fx   %.1f / %s\n", T, q, l, q / l, pq, pl }'
done
