#!/bin/bash
# tests/test_random_model.sh -- experiments/scripts/make_random_model.py: the tiny presets load in
# `qh info` and `qh ppl`, the bytes are a function of the seed, sharded and single-file models
# give the same perplexity, F16/BF16 load, and the big presets' shapes (dry run: nothing written).
# Needs $QH and a python3 with numpy (skipped otherwise); run from the repository root.
. "$(dirname "$0")/lib.sh"
new_tmp
trap 'rm -rf "$tmp"' EXIT
gen=experiments/scripts/make_random_model.py

need_numpy_python make_random_model.py

expect_line() {
    if grep -Eq -- "$3" <<< "$2"; then ok "$1"; else bad "$1 (no line matching '$3')"; fi
}
ppl_of() { "$QH" ppl --model "$1" --data data/wikitext2_test.raw --seqlen 64 --max-windows 2 2>&1 |
           awk '/^ppl /{ print $2 }'; }

"$py" -B "$gen" --preset tiny --seed 3 "$tmp/a" > /dev/null 2>&1 && ok "tiny preset written" \
    || bad "tiny preset: $("$py" -B "$gen" --preset tiny --seed 3 "$tmp/a" 2>&1 | tail -1)"
out=$("$QH" info --model "$tmp/a" 2>&1); rc=$?
[ "$rc" -eq 0 ] && ok "qh info loads the tiny random llama" || bad "qh info exits $rc: $out"
expect_line "tiny: 2 layers" "$out" '^layers +2$'
expect_line "tiny: GQA 4/2" "$out" '^heads +4 \(kv heads 2, head_dim 16\)'
expect_line "tiny: untied head" "$out" '^lm_head +separate'
expect_line "tiny: F32 on disk" "$out" 'dtype F32 +21 tensors, 1122624 values'
expect_line "tiny: F32 mapped in place" "$out" '^in memory +1122624 mapped in place'
p1=$(ppl_of "$tmp/a")
# random init (std 0.02): near-uniform predictions over the 8192-entry vocabulary
awk -v p="$p1" 'BEGIN { exit !(p > 7000 && p < 10000) }' && ok "tiny: ppl $p1 near the vocab size" \
    || bad "tiny: ppl '$p1' not near 8192"

"$py" -B "$gen" --preset tiny --seed 3 "$tmp/b" > /dev/null 2>&1
"$py" -B "$gen" --preset tiny --seed 4 "$tmp/c" > /dev/null 2>&1
ha=$(sha256sum < "$tmp/a/model.safetensors"); hb=$(sha256sum < "$tmp/b/model.safetensors")
hc=$(sha256sum < "$tmp/c/model.safetensors")
[ "$ha" = "$hb" ] && ok "same seed, same bytes" || bad "same seed, different bytes"
[ "$ha" != "$hc" ] && ok "another seed, other bytes" || bad "seeds 3 and 4 gave the same bytes"

"$py" -B "$gen" --preset tiny --seed 3 --shard-size 1MB "$tmp/s" > /dev/null 2>&1
[ -f "$tmp/s/model.safetensors.index.json" ] && [ ! -f "$tmp/s/model.safetensors" ] \
    && ok "small shard size: index and shards" || bad "small shard size: no index ($(ls "$tmp/s"))"
out=$("$QH" info --model "$tmp/s" 2>&1)
expect_line "sharded: qh info sees the shards" "$out" '^on disk +[0-9]+ file\(s\) \(sharded, index\)'
p2=$(ppl_of "$tmp/s")
[ -n "$p1" ] && [ "$p1" = "$p2" ] && ok "sharded and single-file models give the same ppl ($p2)" \
    || bad "sharded ppl '$p2' vs single-file '$p1'"

for dt in f16 bf16; do
    "$py" -B "$gen" --preset tiny --seed 3 --dtype "$dt" "$tmp/$dt" > /dev/null 2>&1
    out=$("$QH" info --model "$tmp/$dt" 2>&1)
    up=$(tr a-z A-Z <<< "$dt")
    expect_line "$dt: stored as $up" "$out" "dtype $up +21 tensors"
    expect_line "$dt: converted, not mapped" "$out" "^in memory +0 mapped in place.*1122624 converted"
    p=$(ppl_of "$tmp/$dt")
    awk -v p="$p" -v q="$p1" 'BEGIN { exit !(p > 0 && (p - q) / q < 1e-3 && (q - p) / q < 1e-3) }' \
        && ok "$dt: ppl $p within 0.1 % of F32's" || bad "$dt: ppl '$p' vs F32 '$p1'"
done

"$py" -B "$gen" --preset tiny-opt "$tmp/opt" > /dev/null 2>&1
out=$("$QH" info --model "$tmp/opt" 2>&1); rc=$?
[ "$rc" -eq 0 ] && ok "qh info loads the tiny random OPT" || bad "tiny OPT: $out"
expect_line "tiny OPT: tied head" "$out" '^lm_head +tied'
p=$(ppl_of "$tmp/opt")
[ -n "$p" ] && ok "tiny OPT: ppl $p" || bad "tiny OPT: no ppl"

# the big presets: shapes and counts only (parameters as their namesakes have)
for spec in "llama-170m 170943488 F32 683.8" "tinyllama-1.1b 1100048384 BF16 2200.1" \
            "llama-7b 6738415616 F16 13476.8"; do
    read -r name n dt mb <<< "$spec"
    out=$("$py" -B "$gen" --preset "$name" --dry-run "$tmp/none" 2>&1 | head -n 1)
    expect_line "$name: $n parameters, $dt, $mb MB" "$out" " $n parameters .*, $dt, $mb MB"
done
[ ! -e "$tmp/none" ] && ok "dry run writes nothing" || bad "dry run wrote $tmp/none"

out=$("$py" -B "$gen" --hidden 60 --heads 7 --layers 1 --ffn 8 --vocab 16 "$tmp/bad" 2>&1); rc=$?
[ "$rc" -ne 0 ] && grep -q "multiple of heads" <<< "$out" && ok "bad shapes refused" \
    || bad "bad shapes: rc $rc, $out"

echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
