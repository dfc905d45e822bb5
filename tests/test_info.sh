#!/bin/bash
# tests/test_info.sh -- `qh info` on the vendored models and on bad input.
# Needs $QH (the qh binary); run from the repository root.  Prints PASS:/FAIL:
# lines and ends with "N passed, N failed, N skipped".
. "$(dirname "$0")/lib.sh"
new_tmp
trap 'rm -rf "$tmp"' EXIT

# expect_line NAME OUTPUT REGEX: the output has a line matching REGEX
expect_line() {
    if grep -Eq -- "$3" <<< "$2"; then ok "$1"; else bad "$1 (no line matching '$3')"; fi
}

out=$("$QH" info --model models/opt-7m 2>&1); rc=$?
[ "$rc" -eq 0 ] && ok "info opt-7m exits 0" || bad "info opt-7m exits $rc: $out"
expect_line "opt-7m model_type" "$out" '^model_type +opt'
expect_line "opt-7m layers" "$out" '^layers +6$'
expect_line "opt-7m hidden" "$out" '^hidden +256$'
expect_line "opt-7m params 7.10 M" "$out" '^parameters +7098880 \(7\.10 M'
expect_line "opt-7m dtype F16" "$out" 'dtype F16 +100 tensors'
expect_line "opt-7m tied head" "$out" '^lm_head +tied'
expect_line "opt-7m fc1 shape and number" "$out" 'fc1 +#4 +model\.decoder\.layers\.0\.fc1 +1024 x 256 +bias'
expect_line "opt-7m norm" "$out" '^norm +LayerNorm, eps 1e-05, pre-LN$'
expect_line "opt-7m mlp" "$out" '^mlp +ReLU$'
expect_line "opt-7m positions" "$out" '^positions +learned, offset 2$'
expect_line "opt-7m layout" "$out" '^model_type +opt \(family OPT, OPT layout\)$'

out=$("$QH" info --model models/llama-9m 2>&1); rc=$?
[ "$rc" -eq 0 ] && ok "info llama-9m exits 0" || bad "info llama-9m exits $rc: $out"
expect_line "llama-9m model_type" "$out" '^model_type +llama'
expect_line "llama-9m kv heads" "$out" '^heads +4 \(kv heads 2, head_dim 64\)'
expect_line "llama-9m params 8.92 M" "$out" '^parameters +8916224 \(8\.92 M'
expect_line "llama-9m dtype BF16" "$out" 'dtype BF16'
expect_line "llama-9m untied head" "$out" '^lm_head +separate'
expect_line "llama-9m k_proj shape" "$out" 'k_proj +#1 +model\.layers\.0\.self_attn\.k_proj +128 x 256'
expect_line "llama-9m rope_theta" "$out" '^rope_theta +10000$'
expect_line "llama-9m mlp" "$out" '^mlp +gated SiLU$'
expect_line "llama-9m positions" "$out" '^positions +RoPE on 64 of 64 head dims$'
expect_line "llama-9m norm" "$out" '^norm +RMSNorm'
# linears in model order (gate, up, down), each with its stable number in results
order=$(grep -Eo '^  (gate|up|down)_proj +#[0-9]' <<< "$out" | awk '{ printf "%s%s,", $1, $2 }')
[ "$order" = "gate_proj#4,up_proj#6,down_proj#5," ] && ok "llama-9m MLP linears in model order" \
    || bad "llama-9m MLP linears: '$order'"

# the peak-memory estimate of one cell (pipeline/memory.h): its hidden-state term is
# nsamples x seqlen x hidden x 4 bytes exactly (128 x 512 x 256 x 4 = 64 MiB)
out=$("$QH" info --model models/llama-9m --nsamples 128 --seqlen 512 2>&1); rc=$?
[ "$rc" -eq 0 ] && ok "info with --nsamples/--seqlen exits 0" || bad "info --nsamples exits $rc: $out"
expect_line "memory estimate" "$out" \
    '^memory +estimated peak RSS of a gptq cell, 128 windows of 512 tokens: [0-9.]+ (MiB|GiB)$'
expect_line "memory: weights as float32 (8.92 M x 4 bytes)" "$out" 'weights 34 MiB \(float32\)'
expect_line "memory: hidden states 64 MiB" "$out" 'hidden states 64 MiB'
expect_line "memory: largest linear down_proj 256 x 768" "$out" 'linear 256 x 768 '
expect_line "memory: float reference" "$out" 'while the float reference is built'
peak() { grep -Eo 'tokens: [0-9.]+ MiB' <<< "$1" | grep -Eo '[0-9.]+'; }
out2=$("$QH" info --model models/llama-9m --nsamples 256 --seqlen 512 2>&1)
expect_line "memory: 256 windows, 128 MiB of states" "$out2" 'hidden states 128 MiB'
d=$(( $(peak "$out2") - $(peak "$out") ))     # whole MiB as printed: each rounded
[ "$d" -ge 63 ] && [ "$d" -le 65 ] && ok "memory: 128 more windows add 64 MiB (printed +$d)" \
    || bad "memory: peaks $(peak "$out") -> $(peak "$out2")"
# the wall-time estimate (pipeline/timing.h): the calibration's phases scale with the windows
out=$("$QH" info --model models/llama-9m --nsamples 128 --seqlen 512 2>&1)
expect_line "time estimate" "$out" \
    '^time +estimated wall time of its calibration and quantization: [0-9.]+ (s|min|h), \+ [0-9.]+ s per evaluation window$'
expect_line "time: GFLOP per phase" "$out" 'GFLOP: forward [0-9.e+]+, Hessians [0-9.e+]+, method'
fwd() { grep -Eo 'forward [0-9.e+]+' <<< "$1" | grep -Eo '[0-9.e+]+$'; }
out2=$("$QH" info --model models/llama-9m --nsamples 256 --seqlen 512 2>&1)
awk -v a="$(fwd "$out")" -v b="$(fwd "$out2")" 'BEGIN { exit !(b > 1.99 * a && b < 2.01 * a) }' \
    && ok "time: twice the windows, twice the forward" || bad "time: forward $(fwd "$out") -> $(fwd "$out2")"
out=$("$QH" info --model models/llama-9m --method nosuch 2>&1); rc=$?
[ "$rc" -eq 2 ] && grep -q "unknown method 'nosuch'" <<< "$out" && ok "unknown --method refused" \
    || bad "--method nosuch: rc $rc: $out"
out=$("$QH" info --model models/llama-9m --nsamples 0 2>&1); rc=$?
[ "$rc" -eq 2 ] && grep -q "positive integer" <<< "$out" && ok "--nsamples 0 refused" \
    || bad "--nsamples 0: rc $rc: $out"

if [ -d ../shared/models/opt-30m ]; then
    out=$("$QH" info --model ../shared/models/opt-30m 2>&1); rc=$?
    [ "$rc" -eq 0 ] && ok "info opt-30m exits 0" || bad "info opt-30m exits $rc"
    expect_line "opt-30m sharded" "$out" '^on disk +4 file\(s\) \(sharded'
    expect_line "opt-30m params 29.94 M" "$out" '^parameters +29939712 \(29\.94 M'
else
    echo "SKIP: ../shared/models/opt-30m absent"; skip=$((skip + 1))
fi

out=$("$QH" info --model "$tmp/does-not-exist" 2>&1); rc=$?
[ "$rc" -ne 0 ] && ok "nonexistent dir exits non-zero ($rc)" || bad "nonexistent dir exits 0"
expect_line "nonexistent dir message" "$out" "does-not-exist"

mkdir "$tmp/bad" && cp models/opt-7m/config.json "$tmp/bad/"
printf '\x00\x10\x00\x00\x00\x00\x00\x00{}' > "$tmp/bad/model.safetensors"
out=$("$QH" info --model "$tmp/bad" 2>&1); rc=$?
[ "$rc" -ne 0 ] && ok "truncated safetensors exits non-zero ($rc)" || bad "truncated safetensors exits 0"
expect_line "truncated safetensors message names file" "$out" 'model\.safetensors: header length 4096 runs past'

printf '{"model_type": "falcon"}' > "$tmp/bad/config.json"
printf '\x02\x00\x00\x00\x00\x00\x00\x00{}' > "$tmp/bad/model.safetensors"
out=$("$QH" info --model "$tmp/bad" 2>&1); rc=$?
[ "$rc" -ne 0 ] && ok "falcon config exits non-zero ($rc)" || bad "falcon config exits 0"
expect_line "falcon config message" "$out" 'config\.json: unsupported model_type "falcon"'
expect_line "falcon config lists the families" "$out" 'supported: opt, llama, mistral, qwen2'

out=$("$QH" info 2>&1); rc=$?
[ "$rc" -eq 2 ] && ok "missing --model is a usage error (2)" || bad "missing --model exits $rc"
out=$("$QH" info --help 2>&1); rc=$?
[ "$rc" -eq 0 ] && grep -q -- '--model DIR' <<< "$out" && ok "--help" || bad "--help exits $rc"

# the families' features (tests/data/families)
out=$("$QH" info --model tests/data/families/llama3 2>&1)
expect_line "llama3 rope scaling" "$out" '^rope_scaling llama3, factor 4, low/high freq factors 1/4, original context 64$'
out=$("$QH" info --model tests/data/families/mistral 2>&1)
expect_line "mistral window" "$out" '^attention +sliding window of 16 on 2 of 2 layers$'
out=$("$QH" info --model tests/data/families/gemma 2>&1)
expect_line "gemma norm" "$out" '^norm +RMSNorm scaling by 1 \+ w'
expect_line "gemma mlp" "$out" '^mlp +gated GELU \(tanh\)$'
out=$("$QH" info --model tests/data/families/qwen3 2>&1)
expect_line "qwen3 qk norm" "$out" '^qk_norm +RMSNorm per head on q and k$'
out=$("$QH" info --model tests/data/families/phi3 2>&1)
expect_line "phi3 fused" "$out" '^fused +self_attn.qkv_proj and mlp.gate_up_proj split on load'
out=$("$QH" info --model tests/data/families/gemma2 2>&1)
expect_line "gemma2 post norms" "$out" '^post_norms +after attention and MLP'
expect_line "gemma2 soft-capping" "$out" '^softcapping +attention 2, final logits 3'
expect_line "gemma2 alternating window" "$out" '^attention +sliding window of 16 on 1 of 2 layers$'
out=$("$QH" info --model tests/data/families/gpt_neox 2>&1)
expect_line "gpt_neox parallel residual" "$out" '^residual +parallel$'
expect_line "gpt_neox fused" "$out" '^fused +attention.query_key_value split on load into q/k/v \(interleaved per head\)'
expect_line "gpt_neox partial rotary" "$out" '^positions +RoPE on 4 of 16 head dims$'
out=$("$QH" info --model tests/data/families/gpt2 2>&1)
expect_line "gpt2 conv1d" "$out" '^storage +Conv1D weights'
expect_line "gpt2 learned positions" "$out" '^positions +learned, offset 0$'
# unsupported config keys are refused by name
mkdir -p "$tmp/yarn" "$tmp/cap"
sed 's/"llama3"/"yarn"/' tests/data/families/llama3/config.json > "$tmp/yarn/config.json"
cp tests/data/families/llama3/model.safetensors "$tmp/yarn/"
out=$("$QH" info --model "$tmp/yarn" 2>&1); rc=$?
[ "$rc" -ne 0 ] && grep -q 'rope_type "yarn" is not supported' <<< "$out" && ok "yarn refused by name" \
    || bad "yarn: exit $rc: $out"
sed 's/"model_type": "llama"/"model_type": "llama", "final_logit_softcapping": 30.0/' \
    tests/data/families/llama3/config.json > "$tmp/cap/config.json"
cp tests/data/families/llama3/model.safetensors "$tmp/cap/"
out=$("$QH" info --model "$tmp/cap" 2>&1); rc=$?
[ "$rc" -ne 0 ] && grep -q 'key "final_logit_softcapping" is not supported' <<< "$out" \
    && ok "soft-capping refused by name" || bad "soft-capping: exit $rc: $out"

mkdir -p "$tmp/scratch"
out=$("$QH" info --model models/llama-9m --scratch "$tmp/scratch" 2>&1); rc=$?
[ "$rc" -eq 0 ] && grep -q 'converted to float32 in a scratch file (spilled; each decoder block when first used)' <<< "$out" \
    && grep -q 'spilled (qh run --scratch DIR): ' <<< "$out" && [ -z "$(ls -A "$tmp/scratch")" ] \
    && ok "info --scratch: loaded spilled, the spilled estimate printed, nothing left" \
    || bad "info --scratch: exit $rc: $out"

echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
