#!/bin/bash
# tests/test_layout.sh -- the rooms of docs/architecture.md keep their floors:
# every #include "..." of a source file names a header its room may use.
#   core/                       core only (headers named without a room)
#   experiments/tokenizer|model|results|backends/   core and their own room
#   experiments/pipeline/       core, tokenizer, model, results, pipeline; and
#                               no method header (it knows methods only
#                               through the method table, qh_method.h)
#   analysis/report/            core, results, report
#   experiments/cli/            anything (the composition root)
# Run from the repository root.  Ends with "N passed, N failed, N skipped".
. "$(dirname "$0")/lib.sh"

# allowed ROOM: the rooms a file of ROOM may include from ("core" = no prefix).
allowed() {
    case "$1" in
        core) echo "core" ;;
        tokenizer|model|results|backends) echo "core $1" ;;
        pipeline) echo "core tokenizer model results pipeline" ;;
        report) echo "core results report" ;;
        cli) echo "core tokenizer model results backends pipeline report cli" ;;
    esac
}

room_of() {                          # source path -> room
    case "$1" in
        core/*) echo core ;;
        experiments/*/*) echo "$1" | cut -d/ -f2 ;;
        analysis/report/*) echo report ;;
    esac
}

check_file() {
    local f=$1 room inc target ok_rooms violations=""
    room=$(room_of "$f")
    ok_rooms=" $(allowed "$room") "
    while read -r inc; do
        case "$inc" in
            */*) target=${inc%%/*} ;;
            *) target=core
               [ -f "core/$inc" ] || [ -f "core/methods/$inc" ] || [ -f "$(dirname "$f")/$inc" ] ||
                   violations="$violations $inc(no such core header)" ;;
        esac
        [ "$target" = methods ] && target=core
        [[ "$ok_rooms" == *" $target "* ]] || violations="$violations $inc"
        if [ "$room" = pipeline ] && [ -z "${inc##*.h}" ] && [ "$inc" != qh_method.h ] &&
           [ -f "core/methods/$inc" ]; then
            violations="$violations $inc(method header)"
        fi
    done < <(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f")
    if [ -z "$violations" ]; then ok "$f includes within its floor"
    else bad "$f ($room) includes:$violations"; fi
}

n=0
while read -r f; do
    check_file "$f"; n=$((n + 1))
done < <(find core experiments analysis -name '*.[ch]' | sort)
[ "$n" -gt 50 ] && ok "$n sources checked" || bad "only $n sources found (run from the repository root)"

# A room that is not in the table fails loudly rather than passing unchecked.
for d in experiments/*/; do
    r=$(basename "$d")
    [ "$r" = scripts ] && continue
    [ -n "$(allowed "$r")" ] && ok "room $r has floor rules" || bad "room $r has no floor rules in this test"
done
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
