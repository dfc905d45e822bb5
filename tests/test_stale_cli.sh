#!/bin/bash
# tests/test_stale_cli.sh -- a cell is what its protocol record says, or it is
# stale: `qh run` keeps a snapshot of the config in OUT/sweep.json and refuses
# another config without --update-snapshot; a changed calibration makes the
# complete cells stale (listed with the keys that differ, recomputed only with
# --rerun-stale); `qh status` lists them as stale; `qh report` refuses to put
# cells of different protocols in one table without --mix-protocols; a file
# without a record (an older file) is stale; an --out that is a file is refused.
# The record names the code by code.sources (the build's hash of the compiled
# sources), not by the git commit: a commit that changes only a Markdown file,
# or a dirty tree, leaves every cell complete, with the commit in /provenance.
# Needs $QH and h5dump (hdf5-tools); run from the repository root.
. "$(dirname "$0")/lib.sh"
new_tmp
trap 'rm -rf "$tmp"' EXIT
need_hdf5_tools h5dump
attr() { h5dump -a "$2/$3" "$1" 2>/dev/null | sed -n 's/^ *(0): //p' | sed 's/^"//; s/"$//'; }

cat > "$tmp/s.json" <<JSON
{ "name": "st", "models": ["models/opt-7m"],
  "datasets": { "wikitext2": "data/wikitext2_test.raw" },
  "calibration": { "nsamples": 1, "seqlen": 32 },
  "eval": { "seqlen": 64, "max_windows": 1 },
  "methods": [ { "method": "rtn" }, { "method": "rtn", "label": "rtn2", "params": { "rounding": "nearest" } } ],
  "bits": [4] }
JSON
sed 's/"nsamples": 1/"nsamples": 2/' "$tmp/s.json" > "$tmp/s2.json"
export OPENBLAS_NUM_THREADS=1     # the record holds the thread count: keep it fixed here

"$QH" run "$tmp/s.json" --out "$tmp/a" --quiet; rc=$?
[ "$rc" = 0 ] && cmp -s "$tmp/s.json" "$tmp/a/sweep.json" && ok "first run snapshots the config to OUT/sweep.json" \
    || bad "run rc $rc, snapshot: $(ls "$tmp/a")"
rec=$(attr "$tmp/a/opt-7m.rtn.w4.s0.h5" /run protocol | sed 's/\\"/"/g')
sha=$(attr "$tmp/a/opt-7m.rtn.w4.s0.h5" /run protocol_sha256)
grep -q '"calibration.nsamples":1,' <<< "$rec" && grep -q '"method.param.rounding":"nearest"' <<< "$rec" \
    && grep -q '"model.file.model.safetensors":"[0-9a-f]\{64\}"' <<< "$rec" \
    && ok "the cell holds its protocol record" || bad "record: $rec"
[ "$(printf '%s' "$rec" | sha256sum | cut -c1-64)" = "$sha" ] && ok "protocol_sha256 is the record's hash" \
    || bad "protocol_sha256 $sha"
[ -n "$(attr "$tmp/a/opt-7m.baseline.h5" /run protocol)" ] && ok "the baseline holds a record too" || bad "baseline record"

out=$("$QH" run "$tmp/s.json" --out "$tmp/a" 2>&1); rc=$?
[ "$rc" = 0 ] && grep -q "2 complete, 0 stale, 0 tasks to run" <<< "$out" && ! grep -q "stale opt" <<< "$out" \
    && ok "same config: every cell complete, none stale" || bad "rerun: rc $rc: $out"

out=$("$QH" run "$tmp/s2.json" --out "$tmp/a" 2>&1); rc=$?
[ "$rc" = 1 ] && grep -q "differs from .*a/sweep.json.*--update-snapshot" <<< "$out" \
    && cmp -s "$tmp/s.json" "$tmp/a/sweep.json" && ok "another config is refused; the snapshot stays" \
    || bad "other config: rc $rc: $out"

out=$("$QH" run "$tmp/s2.json" --out "$tmp/a" --update-snapshot 2>&1); rc=$?
[ "$rc" = 0 ] && grep -q "stale opt-7m.rtn.w4.s0: calibration.nsamples$" <<< "$out" \
    && grep -q "0 complete, 2 stale, 0 tasks to run" <<< "$out" && grep -q -- "--rerun-stale" <<< "$out" \
    && [ "$(attr "$tmp/a/opt-7m.rtn.w4.s0.h5" /run calib_nsamples)" = 1 ] \
    && cmp -s "$tmp/s2.json" "$tmp/a/sweep.json" \
    && ok "--update-snapshot: stale cells named with the key, kept, not recomputed" || bad "update: rc $rc: $out"

out=$("$QH" status "$tmp/a"); rc=$?
[ "$rc" = 1 ] && grep -q "^stale    opt-7m.rtn2.w4.s0: calibration.nsamples" <<< "$out" \
    && grep -q "^done     opt-7m.baseline" <<< "$out" && grep -q "3 expected, 1 done, 2 stale, 0 failed, 0 missing" <<< "$out" \
    && ok "qh status reads the snapshot and lists stale cells" || bad "status: rc $rc: $out"

out=$("$QH" run "$tmp/s2.json" --out "$tmp/a" --rerun-stale --only '*.rtn.*' --quiet 2>&1); rc=$?
[ "$rc" = 0 ] && [ "$(attr "$tmp/a/opt-7m.rtn.w4.s0.h5" /run calib_nsamples)" = 2 ] \
    && [ "$(attr "$tmp/a/opt-7m.rtn2.w4.s0.h5" /run calib_nsamples)" = 1 ] \
    && ok "--rerun-stale recomputes the selected stale cell only" || bad "rerun-stale: rc $rc: $out"

out=$("$QH" report "$tmp/a" --no-plots --out "$tmp/r" 2>&1); rc=$?
[ "$rc" = 1 ] && grep -q "model opt-7m: cells of different protocols in one table: .* differ in calibration.nsamples" <<< "$out" \
    && [ ! -e "$tmp/r/table.md" ] && ok "qh report refuses mixed protocols, naming the key" || bad "report: rc $rc: $out"
out=$("$QH" report "$tmp/a" --no-plots --out "$tmp/r" --mix-protocols 2>&1); rc=$?
[ "$rc" = 0 ] && [ -e "$tmp/r/table.md" ] && ok "--mix-protocols reports them anyway" || bad "mix: rc $rc: $out"

"$QH" run "$tmp/s2.json" --out "$tmp/a" --rerun-stale --quiet 2>/dev/null
out=$("$QH" status "$tmp/a"); rc=$?
[ "$rc" = 0 ] && grep -q "3 done, 0 stale" <<< "$out" && ok "after --rerun-stale every cell is done" || bad "status: $out"
"$QH" report "$tmp/a" --no-plots --out "$tmp/r" >/dev/null 2>&1 && ok "one protocol: qh report writes the table" \
    || bad "report of one protocol"

# An older file (status 0, no record): a `qh layer` file stands in for one.
"$QH" layer --model models/opt-7m --tensor 'model.decoder.layers.0.fc1' --method rtn --bits 4 \
    --nsamples 1 --seqlen 32 --out "$tmp/old" --quiet >/dev/null 2>&1
cp "$tmp/old/opt-7m.rtn.w4.s0.h5" "$tmp/a/opt-7m.rtn.w4.s0.h5" 2>/dev/null
out=$("$QH" run "$tmp/s2.json" --out "$tmp/a" --dry-run 2>&1)
grep -q "stale opt-7m.rtn.w4.s0: no protocol record" <<< "$out" && grep -q "opt-7m.rtn.w4.s0 *stale" <<< "$out" \
    && ok "a file without a record is stale" || bad "old file: $out"

: > "$tmp/file"
out=$("$QH" run "$tmp/s.json" --out "$tmp/file" 2>&1); rc=$?
[ "$rc" = 1 ] && grep -q -- "--out .*file is an existing file" <<< "$out" && ok "--out that is a file refused" \
    || bad "--out file: rc $rc: $out"
sed 's/"seqlen": 64/"seqlen": 4096/' "$tmp/s.json" > "$tmp/long.json"
out=$("$QH" run "$tmp/long.json" --out "$tmp/l" 2>&1); rc=$?
[ "$rc" = 1 ] && grep -q "eval.seqlen: 4096 exceeds the context of models\[0\] (opt-7m" <<< "$out" && [ ! -e "$tmp/l" ] \
    && ok "eval seqlen beyond the model's context refused before any cell" || bad "long eval: rc $rc: $out"

# A commit that changes no compiled source leaves the cells complete: a git
# repository in $tmp/repo (models and data linked in), a run, a commit of a
# Markdown file, a run again.  tests/test_protocol.c checks that a cell of
# other code (code.sources) or of a record of version 1 is stale.
if ! command -v git >/dev/null; then
    skip "git not installed: cells across commits not checked"; summary
fi
QHA=$(realpath "$QH")
mkdir -p "$tmp/repo"
ln -s "$PWD/models" "$tmp/repo/models"; ln -s "$PWD/data" "$tmp/repo/data"
cp "$tmp/s.json" "$tmp/repo/s.json"
echo "# notes" > "$tmp/repo/notes.md"
gitc() { git -C "$tmp/repo" -c user.name=qh -c user.email=qh@localhost -c commit.gpgsign=false "$@"; }
gitc init -q && gitc add -A && gitc commit -q -m one || bad "git repository"
c1=$(gitc rev-parse HEAD)
(cd "$tmp/repo" && "$QHA" run s.json --out c1 --quiet >/dev/null 2>&1)
rec=$(attr "$tmp/repo/c1/opt-7m.rtn.w4.s0.h5" /run protocol | sed 's/\\"/"/g')
grep -q '"code.sources":"[0-9a-f]\{64\}"' <<< "$rec" && grep -q '"record.version":2' <<< "$rec" \
    && ! grep -q '"code.commit"\|"code.dirty"' <<< "$rec" \
    && [ "$(attr "$tmp/repo/c1/opt-7m.rtn.w4.s0.h5" /provenance git_commit)" = "$c1" ] \
    && ok "the record holds code.sources, /provenance the commit" || bad "record: $rec"
echo "a Markdown edit" >> "$tmp/repo/notes.md"
out=$(cd "$tmp/repo" && "$QHA" run s.json --out c1 2>&1); rc=$?
[ "$rc" = 0 ] && grep -q "2 complete, 0 stale, 0 tasks to run" <<< "$out" \
    && ok "a dirty tree (Markdown only): every cell complete" || bad "dirty: rc $rc: $out"
gitc commit -q -am "notes only" || bad "second commit"
c2=$(gitc rev-parse HEAD)
out=$(cd "$tmp/repo" && "$QHA" run s.json --out c1 2>&1); rc=$?
[ "$rc" = 0 ] && [ "$c1" != "$c2" ] && grep -q "2 complete, 0 stale, 0 tasks to run" <<< "$out" \
    && ok "a commit of a Markdown file: every cell complete, none stale" || bad "new commit: rc $rc: $out"
out=$(cd "$tmp/repo" && "$QHA" status c1); rc=$?
[ "$rc" = 0 ] && grep -q "3 done, 0 stale" <<< "$out" && ok "qh status: done under the new commit" \
    || bad "status: rc $rc: $out"
(cd "$tmp/repo" && "$QHA" run s.json --out c2 --quiet >/dev/null 2>&1)
same=1
for f in "$tmp/repo/c1"/*.h5; do
    h5diff -q --exclude-path /provenance "$f" "$tmp/repo/c2/$(basename "$f")" >/dev/null 2>&1 || same=0
done
[ "$same" = 1 ] && [ "$(attr "$tmp/repo/c2/opt-7m.rtn.w4.s0.h5" /provenance git_commit)" = "$c2" ] \
    && ok "runs at the two commits: identical outside /provenance, which names each commit" \
    || bad "runs at two commits differ outside /provenance"
out=$(cd "$tmp/repo" && "$QHA" report c1 --no-plots --out r 2>&1); rc=$?
[ "$rc" = 0 ] && ok "qh report needs no --mix-protocols" || bad "report: rc $rc: $out"
summary
