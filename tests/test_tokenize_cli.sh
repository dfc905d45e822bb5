#!/bin/bash
# tests/test_tokenize_cli.sh -- `qh tokenize` against every reference.json
# (token count, SHA-256 of the ids as int32 little-endian, first ids) and its
# handling of bad input.  Plain shell tools only.  Needs $QH (the qh binary);
# run from the repository root.  Prints PASS:/FAIL:/SKIP: lines and a summary.
. "$(dirname "$0")/lib.sh"
skp()  { echo "SKIP: $1"; skip=$((skip + 1)); }
check() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1: got '$2', want '$3'"; fi; }

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

# One line per evaluation file of a reference.json: NAME N_TOKENS SHA FIRST_IDS
# (reference.json is flattened first, so its line layout does not matter).
reference_entries() {
    tr -d ' \n\t\r' < "$1" |
        grep -o '"[^"]*":{"n_tokens":[0-9]*,"ids_sha256_int32le":"[0-9a-f]*","first_ids":\[[0-9,]*\]' |
        sed 's/^"\([^"]*\)":{"n_tokens":\([0-9]*\),"ids_sha256_int32le":"\([0-9a-f]*\)","first_ids":\[\([0-9,]*\)\]$/\1 \2 \3 \4/'
}
json_field() { sed -n "s/.*\"$2\":\"\{0,1\}\([^\",]*\).*/\1/p" <<< "$1"; }
json_ids()   { sed -n 's/.*"first_ids":\[\([0-9,]*\)\].*/\1/p' <<< "$1"; }

if [ ! -x "$QH" ]; then bad "$QH is not an executable"; echo "$pass passed, $fail failed, $skip skipped"; exit 1; fi

for model in models/opt-7m models/llama-9m ../shared/models/opt-30m; do
    if [ ! -f "$model/reference.json" ] || [ ! -f "$model/tokenizer.json" ]; then
        skp "$model absent"; continue
    fi
    entries=$(reference_entries "$model/reference.json")
    if [ -z "$entries" ]; then bad "$model/reference.json: no file entries parsed"; continue; fi
    while read -r name n_tokens sha first; do
        data="data/$name"
        if [ ! -f "$data" ]; then skp "$model: $data absent"; continue; fi
        if ! out=$("$QH" tokenize --model "$model" --data "$data" --json 2>"$tmp/err"); then
            bad "$model $name: qh tokenize failed: $(cat "$tmp/err")"; continue
        fi
        check "$model $name n_tokens" "$(json_field "$out" n_tokens)" "$n_tokens"
        check "$model $name ids sha256" "$(json_field "$out" ids_sha256_int32le)" "$sha"
        check "$model $name first ids" "$(json_ids "$out")" "$first"
    done <<< "$entries"
done

# Text output: two lines, on a small file through the SentencePiece-style fixture
# (tokenizer.json path given directly): "<s> hello world" = 1 19 23 14.
printf 'hello world' > "$tmp/small.txt"
out=$("$QH" tokenize --model tests/data/tok_sp_tokenizer.json --data "$tmp/small.txt")
check "text output n_tokens" "$(sed -n 's/^n_tokens //p' <<< "$out")" "4"
check "text output sha256 line" "$(grep -c '^ids_sha256_int32le [0-9a-f]\{64\}$' <<< "$out")" "1"

# Bad input: exit status and a message naming the problem.
expect_fail() {   # NAME WANT_STATUS NEEDLE ARGS...
    local name=$1 want=$2 needle=$3; shift 3
    "$QH" tokenize "$@" > "$tmp/out" 2> "$tmp/err"; local rc=$?
    if [ "$rc" -ne "$want" ]; then bad "$name: exit $rc, want $want"; return; fi
    if ! grep -qF -- "$needle" "$tmp/err"; then bad "$name: stderr lacks '$needle': $(cat "$tmp/err")"; return; fi
    ok "$name"
}
expect_fail "missing data file" 1 "no_such_file.txt" --model models/opt-7m --data "$tmp/no_such_file.txt"
expect_fail "missing model folder" 1 "no_such_model" --model "$tmp/no_such_model" --data "$tmp/small.txt"
mkdir -p "$tmp/badjson" && printf '{"model": {"type": "BPE",' > "$tmp/badjson/tokenizer.json"
expect_fail "tokenizer.json not JSON" 1 "not valid JSON" --model "$tmp/badjson" --data "$tmp/small.txt"
mkdir -p "$tmp/wordpiece" && printf '{"model": {"type": "WordPiece", "vocab": {"a": 0}}}' > "$tmp/wordpiece/tokenizer.json"
expect_fail "unsupported model type" 1 "WordPiece" --model "$tmp/wordpiece" --data "$tmp/small.txt"
printf 'ok \303\050 no' > "$tmp/bad_utf8.txt"
expect_fail "invalid UTF-8 data" 1 "not valid UTF-8" --model models/opt-7m --data "$tmp/bad_utf8.txt"
expect_fail "no arguments" 2 "--model and --data are required"
expect_fail "unknown option" 2 "--frobnicate" --frobnicate
if "$QH" tokenize --help | grep -q "usage: qh tokenize"; then ok "--help"; else bad "--help"; fi

echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
