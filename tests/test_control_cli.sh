#!/bin/bash
# tests/test_control_cli.sh -- the researcher's controls on the vendored
# opt-7m: `qh quantize` against the equivalent one-cell `qh run` (identical
# results outside /provenance, model folder written), per-layer rules (skip,
# bits, params; glob and regex) recorded per linear with the total bits per
# weight accounting for them, bad rules refused naming the JSON path, and
# `qh run --only` repeated.  Needs $QH, h5dump and h5diff (hdf5-tools).
. "$(dirname "$0")/lib.sh"
new_tmp
trap 'rm -rf "$tmp"' EXIT
need_hdf5_tools h5dump h5diff
# column FILE NAME: the values of /run/layer_table/NAME, one per line
column() { h5dump -d "/run/layer_table/$2" -y -w 100000 "$1" 2>/dev/null | sed -n '/DATA {/,/}/p' |
           sed '1d;$d' | sed 's/""/"-"/g' | tr ',' '\n' | tr -d ' "' | sed '/^$/d'; }
small=(--nsamples 2 --seqlen 128 --eval-seqlen 512 --max-windows 2 --data wikitext2=data/wikitext2_test.raw --quiet)

# ---- qh quantize = the one-cell config
"$QH" quantize --model models/opt-7m --method gptq --bits 3 --param act_order=true "${small[@]}" \
    --out "$tmp/q" > "$tmp/q.out"; rc=$?
id=opt-7m.gptq.w3.s0
[ "$rc" -eq 0 ] && [ "$(attr "$tmp/q/$id.h5" /run status)" = 0 ] && ok "qh quantize writes a complete cell" \
    || bad "qh quantize rc $rc: $(cat "$tmp/q.out")"
[ -f "$tmp/q/$id/config.json" ] && ls "$tmp/q/$id"/*.safetensors >/dev/null 2>&1 \
    && ok "qh quantize writes the model folder" || bad "no model folder in $tmp/q: $(ls "$tmp/q")"
[ "$(attr "$tmp/q/$id.h5" /run/params act_order)" = 1 ] && ok "--param reaches the method" || bad "act_order not set"
"$QH" run "$tmp/q/quantize.json" --out "$tmp/r" --quiet
h5diff -q --exclude-path /provenance "$tmp/q/$id.h5" "$tmp/r/$id.h5" >/dev/null \
    && ok "qh quantize equals qh run of its one-cell config outside /provenance" \
    || bad "qh quantize and qh run differ: $(h5diff --exclude-path /provenance "$tmp/q/$id.h5" "$tmp/r/$id.h5" | head -5)"
saved=$("$QH" ppl --model "$tmp/q/$id" --data data/wikitext2_test.raw --seqlen 512 --max-windows 2 --json 2>/dev/null |
        sed -n 's/.*"ppl":\([0-9.e+-]*\).*/\1/p')
cellppl=$(attr "$tmp/q/$id.h5" /run/eval/wikitext2 ppl)
# the saved folder keeps the checkpoint's F16: its ppl equals the cell's up to that rounding
awk -v a="$saved" -v b="$cellppl" 'BEGIN { d = (a - b) / b; exit !(a != "" && d < 1e-3 && d > -1e-3) }' \
    && ok "the saved model's ppl $saved equals the cell's up to F16 rounding" \
    || bad "saved ppl '$saved' vs cell $cellppl"
out=$("$QH" quantize --model models/opt-7m --method gptq --bits 9 --out "$tmp/x" 2>&1)
[ $? -ne 0 ] && grep -q "bits" <<< "$out" && ok "qh quantize refuses 9 bits" || bad "9 bits: $out"

# ---- per-layer rules: skip (glob), bits (regex), params; later rules win
cat > "$tmp/rules.json" <<'JSON'
[ { "match": "*.layers.0.*", "skip": true },
  { "match": "re:fc2$", "bits": 4 },
  { "match": "*.layers.1.self_attn.q_proj", "params": { "act_order": true } } ]
JSON
"$QH" quantize --model models/opt-7m --method gptq --bits 2 "${small[@]}" --no-save \
    --layers "$tmp/rules.json" --out "$tmp/m" >/dev/null
f="$tmp/m/opt-7m.gptq.w2.s0.h5"
[ "$(attr "$f" /run status)" = 0 ] && ok "a cell with rules completes" || bad "rules cell: $(attr "$f" /run message)"
paste <(column "$f" name) <(column "$f" skipped) <(column "$f" bits_set) <(column "$f" overrides) \
      <(column "$f" rows) <(column "$f" cols) <(column "$f" bits_total) > "$tmp/table"
awk '$1 ~ /layers\.0\.self_attn/ && $2 == 1 && $3 == 16 { n++ } END { exit n != 4 }' "$tmp/table" \
    && ok "layer 0 attention kept in float at the stored width (F16: 16 bits)" || bad "skip: $(head -6 "$tmp/table")"
awk '$1 ~ /fc2$/ && $2 == 0 && $3 == 4 { n++ } END { exit n != 6 }' "$tmp/table" \
    && ok "regex rule: every fc2 at 4 bits, layer 0's too (a later rule wins)" || bad "fc2 bits: $(grep fc2 "$tmp/table")"
awk '$1 ~ /layers\.1\.self_attn\.q_proj/ && $4 == "act_order=true" && $3 == 2 { n++ } END { exit n != 1 }' "$tmp/table" \
    && ok "params rule recorded in overrides" || bad "overrides: $(grep q_proj "$tmp/table")"
want=$(awk '{ w = $5 * $6; s += w * $7; t += w } END { printf "%.10g", s / t }' "$tmp/table")
got=$(attr "$f" /run bits_per_weight_total)
awk -v a="$want" -v b="$got" 'BEGIN { d = a - b; exit !(d < 1e-3 && d > -1e-3 && b > 4) }' \
    && ok "bits per weight $got is the size-weighted mean over all linears, skipped at 16" \
    || bad "bits per weight $got, expected $want"
h5dump -a /run/protocol "$f" | grep -q 'layers.*re:fc2' && ok "the protocol record holds the rules" \
    || bad "rules missing from /run/protocol"
h5dump -a /run/protocol "$tmp/q/$id.h5" | grep -q '"layers"' && bad "a cell without rules records layers" \
    || ok "a cell without rules keeps its protocol record"
column "$tmp/q/$id.h5" skipped | grep -q . && bad "a cell without rules has rule columns" \
    || ok "a cell without rules keeps its layer table columns"

# ---- bad rules
echo '[ { "match": "*.layers.0.self_atn.*", "bits": 4 } ]' > "$tmp/typo.json"
out=$("$QH" quantize --model models/opt-7m --method gptq --bits 2 "${small[@]}" --no-save --layers "$tmp/typo.json" --out "$tmp/t" 2>&1)
[ $? -ne 0 ] && [ "$(attr "$tmp/t/opt-7m.gptq.w2.s0.h5" /run message | grep -c 'self_atn.*matches no decoder linear')" = 1 ] \
    && ok "a rule matching nothing fails the cell naming the pattern" || bad "typo: $out $(attr "$tmp/t/opt-7m.gptq.w2.s0.h5" /run message)"
echo '[ { "match": "*fc1", "bits": 9 } ]' > "$tmp/nine.json"
out=$("$QH" quantize --model models/opt-7m --method gptq --bits 2 --layers "$tmp/nine.json" --out "$tmp/t2" 2>&1)
[ $? -ne 0 ] && grep -q "layers\[0\].bits" <<< "$out" && ok "rule bits outside the method's range refused" || bad "9: $out"
echo '[ { "match": "*fc1", "params": { "chi": 4 } } ]' > "$tmp/bp.json"
out=$("$QH" quantize --model models/opt-7m --method mpo --bits 16 --param heal_steps=1 --layers "$tmp/bp.json" --out "$tmp/t3" 2>&1)
[ $? -ne 0 ] && grep -q "block-tuned method takes per-layer \"bits\" and \"skip\" only" <<< "$out" \
    && ok "params rules with a block-tuned method refused" || bad "mpo heal params rule: $out"

# ---- skip with a block-tuned row: the skipped linear stays float and untuned, the rest tuned
echo '[ { "match": "*.layers.0.fc1", "skip": true }, { "match": "*.layers.1.*", "skip": true } ]' > "$tmp/skip.json"
"$QH" quantize --model models/opt-7m --method mpo --bits 16 --param chi=8 --param heal_steps=2 --param heal_batch=1 \
    --param heal_kl_steps=1 --param heal_kl_batch=1 "${small[@]}" --no-save --layers "$tmp/skip.json" --out "$tmp/t5" >/dev/null 2>&1
f="$tmp/t5/opt-7m.mpo.w16.s0.h5"
[ "$(attr "$f" /run status)" = 0 ] && [ -n "$(attr "$f" /run heal_kl_final)" ] \
    && ok "a block- and model-tuned cell with skip rules completes" || bad "mpo skip: $(attr "$f" /run message)"
paste <(column "$f" name) <(column "$f" skipped) <(column "$f" block_loss_init) <(column "$f" proxy) > "$tmp/bt"
awk '$1 ~ /layers\.0\.fc1$/ && $2 == 1 && $3 == "nan" && $4 == 0 { n++ } END { exit n != 1 }' "$tmp/bt" \
    && ok "the skipped linear of a tuned block stays float and untuned" || bad "layer 0 fc1: $(grep 'layers.0.fc1' "$tmp/bt")"
awk '$1 ~ /layers\.0\./ && $1 !~ /fc1$/ && $2 == 0 && $3 != "nan" && $4 > 0 { n++ } END { exit n != 5 }' "$tmp/bt" \
    && ok "the other linears of that block are tuned" || bad "layer 0: $(grep 'layers.0' "$tmp/bt")"
awk '$1 ~ /layers\.1\./ && $2 == 1 && $3 == "nan" { n++ } END { exit n != 6 }' "$tmp/bt" \
    && ok "a wholly skipped block is not tuned" || bad "layer 1: $(grep 'layers.1' "$tmp/bt")"
echo '[ { "match": "*fc1", "params": { "nope": 1 } } ]' > "$tmp/p.json"
out=$("$QH" quantize --model models/opt-7m --method gptq --bits 2 --layers "$tmp/p.json" --out "$tmp/t4" 2>&1)
[ $? -ne 0 ] && grep -q "layers\[0\]" <<< "$out" && grep -q nope <<< "$out" \
    && ok "an unknown rule parameter refused naming the rule" || bad "nope: $out"

# ---- --only repeated adds patterns
cat > "$tmp/sweep.json" <<JSON
{ "name": "t", "models": ["models/opt-7m"], "methods": [ { "method": "rtn" }, { "method": "gptq", "bits": [2, 3] } ],
  "bits": [4] }
JSON
out=$("$QH" run "$tmp/sweep.json" --dry-run --out "$tmp/o" --only '*.rtn.*' --only '*.w2.*' 2>&1)
grep -q "2 cells selected" <<< "$out" && grep -q "opt-7m.rtn.w4.s0" <<< "$out" && grep -q "opt-7m.gptq.w2.s0" <<< "$out" \
    && ok "--only repeated selects the union; per-method bits expand" || bad "--only: $out"

# ---- qh sensitivity: one row per linear, an allocation within its budget
cat > "$tmp/sens.json" <<JSON
{ "name": "s", "models": ["models/opt-7m"], "datasets": { "wikitext2": "data/wikitext2_test.raw" },
  "calibration": { "nsamples": 2, "seqlen": 128 }, "eval": { "seqlen": 512, "max_windows": 1 },
  "methods": [ { "method": "rtn" } ], "bits": [2] }
JSON
"$QH" sensitivity "$tmp/sens.json" --out "$tmp/s.tsv" --allocate 2.5 --high 4 --rules "$tmp/alloc.json" --quiet >/dev/null
[ "$(tail -n +2 "$tmp/s.tsv" | wc -l)" = 36 ] && ok "sensitivity: 36 linears measured" || bad "sensitivity table: $(head -3 "$tmp/s.tsv")"
n=$(grep -c '"bits": 4' "$tmp/alloc.json")
avg=$(tail -n +2 "$tmp/s.tsv" | awk -v up="$(grep -o '"match": "[^"]*"' "$tmp/alloc.json" | cut -d'"' -f4 | tr '\n' ' ')" '
      BEGIN { split(up, u, " "); for (k in u) is[u[k]] = 1 }
      { t += $4; b += $4 * (($1 in is) ? 4 : 2) } END { printf "%.6f", b / t }')
awk -v a="$avg" -v n="$n" 'BEGIN { exit !(n > 0 && a <= 2.5 + 1e-9 && a > 2.2) }' \
    && ok "allocation: $n linears at 4 bits, $avg bits per weight within 2.5" || bad "allocation: $n, $avg"
"$QH" sensitivity --from "$tmp/s.tsv" --allocate 2.5 --high 4 --rules "$tmp/alloc2.json" >/dev/null
cmp -s "$tmp/alloc.json" "$tmp/alloc2.json" && ok "--from TSV allocates the same rules" || bad "--from differs"
"$QH" quantize --model models/opt-7m --method rtn --bits 2 --layers "$tmp/alloc.json" "${small[@]}" --no-save \
    --out "$tmp/al" >/dev/null
got=$(attr "$tmp/al/opt-7m.rtn.w2.s0.h5" /run bits_per_weight_nominal)
awk -v a="$avg" -v b="$got" 'BEGIN { d = a - b; exit !(d < 1e-3 && d > -1e-3) }' \
    && ok "the allocated rules run: nominal bits per weight $got" || bad "allocated rules: $got vs $avg"

# ---- layer selection for a factorisation row: the cheapest units per entry saved, to a budget
sed 's/{ "method": "rtn" } ], "bits": \[2\]/{ "method": "mpo", "params": { "chi": 8 } } ], "bits": [16]/' \
    "$tmp/sens.json" > "$tmp/sel.json"
"$QH" sensitivity "$tmp/sel.json" --out "$tmp/sel.tsv" --select 0.5 --rules "$tmp/sel-r.json" --quiet > "$tmp/sel.out"
# the same selection written here: sort by dppl / (weights - weights bits_total / bits), take a prefix to the budget
tail -n +2 "$tmp/sel.tsv" | awk -F'\t' '{ save = $4 - $4 * $10 / $5; if (save > 0) printf "%.17g\t%d\t%s\t%s\n", $9 / save, NR, $1, save }' |
    sort -t$'\t' -k1,1g -k2,2n > "$tmp/sel.order"
tot=$(tail -n +2 "$tmp/sel.tsv" | awk -F'\t' '{ t += $4 } END { print t }')
awk -F'\t' -v tot="$tot" 'BEGIN { kept = tot } kept > 0.5 * tot { kept -= $4; print $3 }' "$tmp/sel.order" | sort > "$tmp/sel.want"
tail -n +2 "$tmp/sel.tsv" | cut -f1 | sort > "$tmp/sel.all"
grep -o '"match": "[^"]*"' "$tmp/sel-r.json" | cut -d'"' -f4 | sort > "$tmp/sel.skipped"
comm -23 "$tmp/sel.all" "$tmp/sel.skipped" > "$tmp/sel.got"
[ -s "$tmp/sel.want" ] && cmp -s "$tmp/sel.want" "$tmp/sel.got" \
    && ok "selection: the $(wc -l < "$tmp/sel.got") units compressed are the cheapest prefix by dppl per entry saved" \
    || bad "selection differs: $(diff "$tmp/sel.want" "$tmp/sel.got" | head -5)"
kept=$(sed -n 's/.* \([0-9.]*\) of the entries kept.*/\1/p' "$tmp/sel.out")
"$QH" quantize --model models/opt-7m --method mpo --bits 16 --param chi=8 --layers "$tmp/sel-r.json" "${small[@]}" \
    --no-save --out "$tmp/sl" >/dev/null
f="$tmp/sl/opt-7m.mpo.w16.s0.h5"
bt=$(attr "$f" /run bits_per_weight_total)
# opt-7m stores F16: a float linear counts 16 bits, so entries kept / dense = bits per weight / 16
awk -v k="$kept" -v b="$bt" 'BEGIN { d = k - b / 16; exit !(k != "" && k <= 0.5 && d < 1e-3 && d > -1e-3) }' \
    && ok "the selected rules run: $bt bits per weight = $kept of the entries kept (budget 0.5)" \
    || bad "selection kept '$kept', cell bits per weight $bt"
[ "$(column "$f" skipped | grep -c 1)" = "$(wc -l < "$tmp/sel.skipped")" ] \
    && ok "the cell keeps the unselected linears in float" || bad "skipped count"
"$QH" sensitivity --from "$tmp/sel.tsv" --select 0.5 --rules "$tmp/sel-r2.json" >/dev/null
cmp -s "$tmp/sel-r.json" "$tmp/sel-r2.json" && ok "--from TSV selects the same units" || bad "--from select differs"
"$QH" sensitivity --from "$tmp/sel.tsv" --select 0.01 --rules "$tmp/sel-r3.json" | grep -q "not reached" \
    && [ "$(cat "$tmp/sel-r3.json")" = "[]" ] && ok "an unreachable budget compresses every unit and says so" \
    || bad "budget 0.01: $(cat "$tmp/sel-r3.json")"
cut -f1-9 "$tmp/sel.tsv" > "$tmp/old.tsv"
out=$("$QH" sensitivity --from "$tmp/old.tsv" --select 0.5 --rules "$tmp/sel-r4.json" 2>&1)
[ $? -ne 0 ] && grep -q "no bits_total" <<< "$out" && ok "a table without bits_total cannot select" || bad "old table: $out"
cp "$tmp/sel.json" "$tmp/pasted.json"
if python3 experiments/scripts/paste_rules.py "$tmp/pasted.json" mpo "$tmp/sel-r.json" &&
   "$QH" run "$tmp/pasted.json" --dry-run --out "$tmp/pd" > /dev/null &&
   python3 -c 'import json, sys; c = json.load(open(sys.argv[1])); r = json.load(open(sys.argv[2]));
sys.exit(c["methods"][0]["layers"] != r)' "$tmp/pasted.json" "$tmp/sel-r.json"; then
    ok "paste_rules.py puts the rules into the entry's layers (a valid configuration)"
else bad "paste_rules.py"; fi
python3 experiments/scripts/paste_rules.py "$tmp/pasted.json" nope "$tmp/sel-r.json" 2>/dev/null \
    && bad "paste_rules.py accepted an unknown label" || ok "paste_rules.py refuses an unknown label"
out=$("$QH" sensitivity --from "$tmp/sel.tsv" --select 0.5 --allocate 2.5 --high 4 --rules "$tmp/x.json" 2>&1)
[ $? -eq 2 ] && grep -q "exclude each other" <<< "$out" && ok "--select with --allocate refused" || bad "both: $out"
summary
