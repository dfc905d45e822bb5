#!/bin/bash
# tests/check_ppl.sh QH [MODEL_DIR...] -- full perplexity of every model against reference.json
# (PyTorch float32): both evaluation files, seqlen 1024 and 512, all windows.
# Prints a table of ours vs reference and fails if any relative difference
# exceeds 1e-4.  Models: the MODEL_DIRs given, or models/opt-7m,
# models/llama-9m and (skipped when absent) ../shared/models/opt-30m.  Slow
# (minutes): run by `make check-ppl`, not by `make test`.  Run from the
# repository root.
QH=${1:-bin/qh}
TOL=1e-4
shift
models=${*:-models/opt-7m models/llama-9m ../shared/models/opt-30m}
files="wikitext2_test.raw gutenberg_heldout_2M.txt"
seqlens="1024 512"
n_ok=0 n_bad=0 n_skip=0

# ref_ppl REFERENCE_JSON FILE SEQLEN: files.FILE.ppl.SEQLEN.ppl, read with awk
# from the pretty-printed reference (no JSON tool needed).
ref_ppl() {
    awk -v want_file="$2" -v want_seq="$3" '
        match($0, /"[^"]+": *\{/) {
            key = substr($0, RSTART + 1, RLENGTH - 1); sub(/".*/, "", key)
            if (key ~ /\.(raw|txt)$/) file = key
            else if (key ~ /^[0-9]+$/) seq = key
            next
        }
        /"ppl": *[-0-9.eE+]+/ && file == want_file && seq == want_seq {
            v = $0; sub(/.*"ppl": */, "", v); sub(/[^-0-9.eE+].*/, "", v); print v; exit
        }' "$1"
}

printf '%-10s %-26s %6s %8s %14s %14s %10s %8s  %s\n' model data seqlen windows ours reference rel_diff seconds check
for dir in $models; do
    name=$(basename "$dir")
    if [ ! -f "$dir/config.json" ] || [ ! -f "$dir/reference.json" ]; then
        echo "SKIP: $dir absent"; n_skip=$((n_skip + 1)); continue
    fi
    for f in $files; do
        for s in $seqlens; do
            want=$(ref_ppl "$dir/reference.json" "$f" "$s")
            out=$("$QH" ppl --model "$dir" --data "data/$f" --seqlen "$s" --json 2>&1)
            rc=$?
            got=$(sed -n 's/.*"ppl":\([-0-9.eE+]*\).*/\1/p' <<< "$out")
            win=$(sed -n 's/.*"windows":\([0-9]*\).*/\1/p' <<< "$out")
            sec=$(sed -n 's/.*"seconds":\([-0-9.eE+]*\).*/\1/p' <<< "$out")
            if [ "$rc" -ne 0 ] || [ -z "$got" ] || [ -z "$want" ]; then
                printf '%-10s %-26s %6s  FAIL: qh exit %s, reference "%s": %s\n' "$name" "$f" "$s" "$rc" "$want" \
                    "$(head -c 200 <<< "$out")"
                n_bad=$((n_bad + 1)); continue
            fi
            line=$(awk -v g="$got" -v w="$want" -v tol="$TOL" 'BEGIN {
                d = (g - w) / w; a = d < 0 ? -d : d
                printf "%14.6f %14.6f %10.2e", g, w, d; exit !(a <= tol) }')
            if [ $? -eq 0 ]; then check=ok; n_ok=$((n_ok + 1)); else check=FAIL; n_bad=$((n_bad + 1)); fi
            printf '%-10s %-26s %6s %8s %s %8.1f  %s\n' "$name" "$f" "$s" "$win" "$line" "$sec" "$check"
        done
    done
done
echo "$n_ok within $TOL relative, $n_bad failed, $n_skip models skipped"
[ "$n_bad" -eq 0 ]
