#!/bin/bash
# survey_figure.sh -- the binary survey's report (issue 18): links the cells of
# the 1-bit and 2-bit sweep folders into one folder, runs `qh report` on it
# and draws perplexity against total bits (ppl_vs_total_bits.gp) per model
# and dataset from the report's table.
# Usage: analysis/plots/survey_figure.sh OUT DIR1 DIR2 ...   (run from the repository root)
#   e.g. analysis/plots/survey_figure.sh results/survey-all results/survey results/survey-w2
# QH_REPORT_FLAGS adds flags to `qh report` (e.g. --mix-protocols for cells of several builds).
set -euo pipefail
out=$1; shift
QH=${QH:-bin/qh}
rm -rf "$out"; mkdir -p "$out"
for d in "$@"; do
  for f in "$d"/*.h5; do [ -e "$f" ] && ln -sf "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")" "$out/"; done
done
"$QH" report "$out" --out "$out/report" --no-plots ${QH_REPORT_FLAGS:-}
t=$out/report/table.md
for m in $(awk '/^## /{print substr($0, 4)}' "$t" | sort -u); do
  for ds in wikitext2 gutenberg; do
    tsv=$out/report/survey.$m.$ds.tsv
    awk -v model="$m" -v dataset="$ds" -f analysis/plots/table_to_scatter.awk "$t" > "$tsv"
    [ -s "$tsv" ] || continue
    fp=$(awk -v m="$m" -v ds="$ds" 'BEGIN { FS = "|" } /^## / { cur = substr($0, 4) }
         cur == m && /^\| Method/ { for (i = 2; i < NF; i++) { h = $i; gsub(/^ +| +$/, "", h);
           split(h, w, " "); if (w[2] == ds) c = i } }
         cur == m && /^\| FP32/ { split($c, v, " "); print v[1]; exit }' "$t")
    gnuplot -e "datafile='$tsv'; outfile='$out/report/ppl_vs_total_bits.$m.$ds'; fp32=${fp:-NaN}; plotdir='analysis/plots/'" \
        analysis/plots/ppl_vs_total_bits.gp
  done
done
