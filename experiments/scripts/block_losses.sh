#!/bin/bash
# experiments/scripts/block_losses.sh DIR... -- the block stage's MSE to the
# float block output per decoder block, before and after tuning, of every
# block-tuned cell in the results folders given: one TSV line per cell and
# block (cell, block, mse_init, mse_final, relative change), read from each
# cell's /run/layer_table with h5dump (hdf5-tools).  A block's values are those of
# its first tuned linear (a linear skipped by a rule has none); a block with no
# tuned linear has no line.
set -euo pipefail
column() {   # the values of /run/layer_table/$2 in file $1, one per line
    h5dump -d "/run/layer_table/$2" -y -w 0 "$1" 2>/dev/null |
        awk '/DATA \{/ { on = 1; next } on && /\}/ { exit } on' | tr ',' '\n' | tr -d ' ' | grep -v '^$'
}
printf 'cell\tblock\tmse_init\tmse_final\tchange\n'
for dir in "$@"; do
    for f in "$dir"/*.h5; do
        [ -e "$f" ] || continue
        # only block-tuned cells carry the block_mse_* columns
        h5dump -H "$f" 2>/dev/null | grep -c 'DATASET "block_mse_init"' >/dev/null || continue
        paste <(column "$f" layer) <(column "$f" block_mse_init) <(column "$f" block_mse_final) |
            awk -v cell="$(basename "$f" .h5)" 'tolower($2) != "nan" && !seen[$1]++ {
                printf "%s\t%s\t%.6g\t%.6g\t%+.1f%%\n", cell, $1, $2, $3, 100 * ($3 - $2) / $2 }'
    done
done
