#!/bin/bash
# tests/test_ppl_cli.sh -- `qh ppl`: options, error messages, and one window
# of opt-7m against reference.json.  Needs $QH (the qh binary); run from the
# repository root.  Ends with "N passed, N failed, N skipped".
. "$(dirname "$0")/lib.sh"
new_tmp
trap 'rm -rf "$tmp"' EXIT

# expect NAME WANT_RC GOT_RC OUTPUT REGEX: exit status and a line matching REGEX
expect() {
    if [ "$3" -ne "$2" ]; then bad "$1: exit $3, expected $2: $(head -c 300 <<< "$4")"
    elif ! grep -Eq -- "$5" <<< "$4"; then bad "$1: no line matching '$5' in: $(head -c 300 <<< "$4")"
    else ok "$1"; fi
}

out=$("$QH" ppl --help 2>&1); expect "--help" 0 $? "$out" '--seqlen N'
out=$("$QH" ppl 2>&1); expect "no arguments" 2 $? "$out" 'required'
out=$("$QH" ppl --model models/opt-7m --data data/wikitext2_test.raw 2>&1)
expect "missing --seqlen" 2 $? "$out" '--seqlen .*required'
out=$("$QH" ppl --model models/opt-7m --data data/wikitext2_test.raw --seqlen 1 2>&1)
expect "seqlen 1" 2 $? "$out" '--seqlen expects an integer in \[2,'
out=$("$QH" ppl --model models/opt-7m --data data/wikitext2_test.raw --seqlen 12x 2>&1)
expect "seqlen not a number" 2 $? "$out" "got '12x'"
out=$("$QH" ppl --model models/opt-7m --data data/wikitext2_test.raw --seqlen 2048 2>&1)
expect "seqlen above max positions" 2 $? "$out" 'exceeds the model.s max_position_embeddings 1024'
out=$("$QH" ppl --model models/opt-7m --data data/wikitext2_test.raw --seqlen 64 --bogus 1 2>&1)
expect "unknown option" 2 $? "$out" "unknown option '--bogus'"
out=$("$QH" ppl --model "$tmp/no-model" --data data/wikitext2_test.raw --seqlen 64 2>&1)
expect "missing model" 1 $? "$out" "cannot load model '.*no-model'"
out=$("$QH" ppl --model models/opt-7m --data "$tmp/no-data.txt" --seqlen 64 2>&1)
expect "missing data" 1 $? "$out" "cannot read data '.*no-data.txt'"
printf 'A few words only.' > "$tmp/short.txt"
out=$("$QH" ppl --model models/opt-7m --data "$tmp/short.txt" --seqlen 64 2>&1)
expect "too few tokens" 1 $? "$out" 'tokens, fewer than one window of 64'

# One window of 512 tokens: its mean NLL is reference.json's first window NLL
# (PyTorch float32) for opt-7m, wikitext2, seqlen 512: 5.819674015045166.
out=$("$QH" ppl --model models/opt-7m --data data/wikitext2_test.raw --seqlen 512 --max-windows 1 --json 2>"$tmp/err")
rc=$?
expect "json run" 0 $rc "$out" '^\{.*"ppl":'
for key in ppl windows tokens seconds seqlen model data tokens_per_second; do
    grep -q "\"$key\":" <<< "$out" && ok "json has $key" || bad "json lacks $key: $out"
done
nll=$(sed -n 's/.*"mean_nll":\([-0-9.eE+]*\).*/\1/p' <<< "$out")
awk -v g="$nll" 'BEGIN { w = 5.819674015045166; d = g - w; if (d < 0) d = -d; exit !(g != "" && d <= 1e-5 * w) }' \
    && ok "window 0 NLL $nll matches reference 5.8196740" || bad "window 0 NLL '$nll' vs reference 5.8196740"
grep -q '"windows":1,' <<< "$out" && grep -q '"tokens":512,' <<< "$out" && grep -q '"windows_total":782,' <<< "$out" \
    && ok "json counts: 1 of 782 windows, 512 tokens" || bad "json counts: $out"
[ ! -s "$tmp/err" ] && ok "no progress output when stderr is not a terminal" || bad "stderr not empty: $(head -c 200 "$tmp/err")"

out=$("$QH" ppl --model models/llama-9m --data data/gutenberg_heldout_2M.txt --seqlen 64 --max-windows 2 --threads 1 2>&1)
expect "text output" 0 $? "$out" '^ppl [0-9]+\.[0-9]+ \(mean NLL'
expect "text output counts" 0 0 "$out" '^seqlen 64: 2 of [0-9]+ windows, 128 tokens'

echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
