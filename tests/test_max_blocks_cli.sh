#!/bin/bash
# tests/test_max_blocks_cli.sh -- "calibration": {"max_blocks": K} through
# `qh run` on the vendored opt-7m: the cell quantizes blocks 0..K-1 only (its
# layer table has K x 6 rows, the record says max_blocks), the model's other
# blocks stay float (a lower perplexity than the same entry on every block, a
# higher one than the float model), the dry run's time falls with K, and
# end-to-end healing refuses it.
# Needs $QH and h5dump (hdf5-tools); run from the repository root.
. "$(dirname "$0")/lib.sh"
new_tmp
trap 'rm -rf "$tmp"' EXIT
need_hdf5_tools h5dump
write() {   # write FILE MAX_BLOCKS_JSON METHOD_JSON
    cat > "$1" <<JSON
{ "name": "mb", "models": ["models/opt-7m"],
  "datasets": { "wikitext2": "data/wikitext2_test.raw" },
  "calibration": { "nsamples": 2, "seqlen": 64 $2 },
  "eval": { "seqlen": 128, "max_windows": 2 },
  "methods": [ $3 ], "bits": [2], "seeds": [0] }
JSON
}
write "$tmp/all.json" "" '{ "method": "rtn" }'
write "$tmp/two.json" ', "max_blocks": 2' '{ "method": "rtn" }'
"$QH" run "$tmp/all.json" --out "$tmp/all" --quiet && "$QH" run "$tmp/two.json" --out "$tmp/two" --quiet
rc=$?
[ "$rc" -eq 0 ] && ok "both sweeps exit 0" || bad "sweeps exit $rc"
a="$tmp/all/opt-7m.rtn.w2.s0.h5"; t="$tmp/two/opt-7m.rtn.w2.s0.h5"; f="$tmp/two/opt-7m.baseline.h5"
rows=$(h5dump -H -d /run/layer_table/layer "$t" 2>/dev/null | sed -n 's/.*DATASPACE *SIMPLE { ( \([0-9]*\) ).*/\1/p')
[ "$rows" = 12 ] && ok "max_blocks 2: 12 linears in the layer table" || bad "layer table rows '$rows'"
last=$(h5dump -d /run/layer_table/layer -y -w 0 "$t" 2>/dev/null | awk '/DATA \{/ { on = 1; next } on && /\}/ { exit } on' \
       | tr ',' '\n' | tr -d ' ' | grep -v '^$' | sort -n | tail -1)
[ "$last" = 1 ] && ok "the last block quantized is block 1" || bad "last block '$last'"
h5dump -a /run/protocol "$t" 2>/dev/null | grep -q 'max_blocks' \
    && ok "the protocol record names calibration.max_blocks" || bad "no max_blocks in the record"
h5dump -a /run/protocol "$a" 2>/dev/null | grep -q 'max_blocks' \
    && bad "the record of a cell without the key names it" || ok "without the key the record is as before"
pa=$(attr "$a" /run/eval/wikitext2 ppl); pt=$(attr "$t" /run/eval/wikitext2 ppl); pf=$(attr "$f" /run/eval/wikitext2 ppl)
awk -v a="$pa" -v t="$pt" -v f="$pf" 'BEGIN { exit !(f < t && t < a) }' \
    && ok "ppl: float $pf < two blocks at 2 bits $pt < every block $pa" || bad "ppl float $pf, two $pt, all $pa"
est() { "$QH" run "$1" --out "$tmp/dry" --dry-run 2>&1 | sed -n 's/.*time ~\([0-9.]*\) s.*/\1/p' | head -1; }
ea=$(est "$tmp/all.json"); et=$(est "$tmp/two.json")
[ -n "$ea" ] && [ -n "$et" ] && awk -v a="$ea" -v t="$et" 'BEGIN { exit !(t <= a) }' \
    && ok "dry-run time: ${et} s with max_blocks 2, ${ea} s without" || bad "dry-run times '$et' '$ea'"
write "$tmp/heal.json" ', "max_blocks": 2' '{ "method": "mpo", "params": { "chi": 8, "heal_kl_steps": 2 } }'
out=$("$QH" run "$tmp/heal.json" --out "$tmp/heal" --quiet 2>&1); rc=$?
[ "$rc" -ne 0 ] && grep -q "leaves blocks unvisited" <<<"$out" \
    && ok "end-to-end healing refuses max_blocks" || bad "heal with max_blocks: rc $rc: $out"
summary
