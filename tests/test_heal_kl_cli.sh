#!/bin/bash
# tests/test_heal_kl_cli.sh -- end-to-end healing (mpo heal_kl_steps,
# pipeline/model_stage.h) through `qh run` on the vendored opt-7m: with
# heal_kl_steps 0 a cell's perplexity and layer table are those of the same
# entry without the parameter and no heal_kl attributes are written; with 3
# steps the calibration KL recorded in /run falls and the perplexity changes,
# and a rerun of that cell is byte-identical outside /provenance.
# Needs $QH, h5dump and h5diff (hdf5-tools); run from the repository root.
. "$(dirname "$0")/lib.sh"
new_tmp
trap 'rm -rf "$tmp"' EXIT
need_hdf5_tools h5dump h5diff

cat > "$tmp/s.json" <<JSON
{ "name": "hk", "models": ["models/opt-7m"],
  "datasets": { "wikitext2": "data/wikitext2_test.raw" },
  "calibration": { "nsamples": 2, "seqlen": 64 },
  "eval": { "seqlen": 128, "max_windows": 2 },
  "methods": [ { "method": "mpo", "label": "plain", "params": { "chi": 8 } },
               { "method": "mpo", "label": "kl0", "params": { "chi": 8, "heal_kl_steps": 0 } },
               { "method": "mpo", "label": "kl3",
                 "params": { "chi": 8, "heal_kl_steps": 3, "heal_kl_lr": 0.01, "heal_kl_batch": 2 } } ],
  "bits": [16], "seeds": [0] }
JSON
"$QH" run "$tmp/s.json" --out "$tmp/a" --quiet; rc=$?
[ "$rc" -eq 0 ] && ok "sweep exits 0" || bad "sweep exits $rc"
f() { ls "$tmp/a/"*".$1."*.h5 2>/dev/null | head -1; }
plain=$(f plain); kl0=$(f kl0); kl3=$(f kl3)
for x in "$plain" "$kl0" "$kl3"; do
    [ -n "$x" ] && [ "$(attr "$x" /run status)" = 0 ] && ok "$(basename "$x") complete" || bad "cell $x"
done
p0=$(attr "$plain" /run/eval/wikitext2 ppl); p1=$(attr "$kl0" /run/eval/wikitext2 ppl)
p3=$(attr "$kl3" /run/eval/wikitext2 ppl)
[ -n "$p0" ] && [ "$p0" = "$p1" ] && ok "heal_kl_steps 0: ppl $p1 as without it" || bad "ppl $p0 vs $p1"
h5diff -q "$plain" "$kl0" /run/layer_table /run/layer_table >/dev/null \
    && ok "heal_kl_steps 0: the same layer table" || bad "layer tables differ"
[ -z "$(attr "$kl0" /run heal_kl_init)" ] && [ -z "$(attr "$plain" /run heal_kl_init)" ] \
    && ok "no heal_kl attributes without the stage" || bad "heal_kl_init written without the stage"
i=$(attr "$kl3" /run heal_kl_init); j=$(attr "$kl3" /run heal_kl_final)
n=$(attr "$kl3" /run heal_kl_steps_run)
[ -n "$i" ] && [ -n "$j" ] && [ "$n" = 3 ] && awk -v i="$i" -v j="$j" 'BEGIN { exit !(j < i) }' \
    && ok "3 KL steps: calibration KL $i -> $j" || bad "heal_kl: $i -> $j, $n steps"
[ -n "$p3" ] && [ "$p3" != "$p0" ] && ok "ppl $p0 -> $p3 after end-to-end healing" || bad "ppl $p3"
[ -n "$(attr "$kl3" /provenance heal_kl_seconds)" ] && ok "the stage's wall time is under /provenance" \
    || bad "no /provenance/heal_kl_seconds"
"$QH" run "$tmp/s.json" --out "$tmp/b" --only '*.kl3.*' --quiet
again=$(ls "$tmp/b/"*.kl3.*.h5 2>/dev/null | head -1)
[ -n "$again" ] && h5diff -q --exclude-path /provenance "$kl3" "$again" >/dev/null \
    && ok "a rerun of the healed cell is identical outside /provenance" \
    || bad "rerun differs: $(h5diff --exclude-path /provenance "$kl3" "$again" 2>&1 | head -3)"
summary
