#!/bin/bash
# tests/test_code_id.sh -- the code id (code.sources of the protocol record,
# experiments/scripts/code_id.sh, written by the Makefile to
# $(BUILD)/gen/qh_code_id.h): the same sources give the same id wherever the
# checkout lies, whatever the files' timestamps and the order they are named
# in; a Markdown or other file that is not compiled leaves it (and the header
# file) as it was; a changed compiled source, header or compile flag changes it.
# Works on temporary copies of the sources (make builds only the header there,
# compiling nothing).  Run from the repository root.
. "$(dirname "$0")/lib.sh"
new_tmp
trap 'rm -rf "$tmp"' EXIT
gen=experiments/scripts/code_id.sh
[ -x "$gen" ] || { bad "$gen missing or not executable"; summary; }

# Two copies of the compiled tree at different paths (and depths).
mkdir -p "$tmp/a" "$tmp/deeper/b"
for d in "$tmp/a" "$tmp/deeper/b"; do
    cp -r core experiments analysis Makefile "$d"/ || bad "copy to $d"
done
files() { (cd "$1" && find core experiments analysis -name '*.[ch]' | LC_ALL=C sort); }
printf 'gcc 1.0 -O2\n' > "$tmp/flags"
id_of() { (cd "$1" && shift && "$OLDPWD/$gen" -F "$tmp/flags" "$@"); }

ida=$(id_of "$tmp/a" $(files "$tmp/a"))
idb=$(id_of "$tmp/deeper/b" $(files "$tmp/deeper/b"))
[[ "$ida" =~ ^[0-9a-f]{64}$ ]] && ok "the id is 64 hex digits" || bad "id '$ida'"
[ "$ida" = "$idb" ] && ok "two checkouts at different paths give one id" || bad "ids differ: $ida $idb"

find "$tmp/deeper/b" -name '*.c' -exec touch -d '2001-02-03 04:05:06' {} +
idb=$(id_of "$tmp/deeper/b" $(files "$tmp/deeper/b"))
[ "$ida" = "$idb" ] && ok "timestamps do not change the id" || bad "touch changed the id: $idb"
idb=$(id_of "$tmp/deeper/b" $(files "$tmp/deeper/b" | sort -r))
[ "$ida" = "$idb" ] && ok "the order of the file names does not change the id" || bad "order changed the id"

echo "a note" >> "$tmp/deeper/b/analysis/README.md"
idb=$(id_of "$tmp/deeper/b" $(files "$tmp/deeper/b"))
[ "$ida" = "$idb" ] && ok "a Markdown change leaves the id" || bad "Markdown changed the id"

f=$(files "$tmp/deeper/b" | grep '^core/.*\.c$' | head -1)
echo "/* one comment more */" >> "$tmp/deeper/b/$f"
idb=$(id_of "$tmp/deeper/b" $(files "$tmp/deeper/b"))
[ "$ida" != "$idb" ] && ok "a change in a compiled source ($f) changes the id" || bad "$f changed, id the same"
cp "$tmp/a/$f" "$tmp/deeper/b/$f"
h=$(files "$tmp/a" | grep '\.h$' | head -1)
echo "/* */" >> "$tmp/deeper/b/$h"
idb=$(id_of "$tmp/deeper/b" $(files "$tmp/deeper/b"))
[ "$ida" != "$idb" ] && ok "a change in a header ($h) changes the id" || bad "$h changed, id the same"
cp "$tmp/a/$h" "$tmp/deeper/b/$h"
printf 'gcc 1.0 -O3\n' > "$tmp/flags3"
idb=$(cd "$tmp/deeper/b" && "$OLDPWD/$gen" -F "$tmp/flags3" $(files "$tmp/deeper/b"))
[ "$ida" != "$idb" ] && ok "other compile flags change the id" || bad "flags ignored"
out=$("$gen" "$PWD/Makefile" 2>&1); rc=$?
[ "$rc" = 2 ] && grep -q "must be relative" <<< "$out" && ok "an absolute path is refused" || bad "absolute: rc $rc: $out"

# The Makefile's header: the same in both copies, untouched by a Markdown
# change, rewritten by a source change.
if ! command -v make >/dev/null; then
    skip "make not installed: the Makefile's header is not checked"; summary
fi
# The suite may run inside make (make test): its MAKEFLAGS (CC=..., jobserver)
# are not for these makes, nor its CC.
unset MAKEFLAGS MFLAGS MAKELEVEL CC     # `make test-asan CC=clang` exports CC=clang
hdr() { make -s -C "$1" "$2" build/gen/qh_code_id.h >/dev/null 2>&1 && cat "$1/build/gen/qh_code_id.h"; }
cp "$tmp/a/$f" "$tmp/deeper/b/$f"
ha=$(hdr "$tmp/a" OPT=-O2); hb=$(hdr "$tmp/deeper/b" OPT=-O2)
grep -q '^#define QH_CODE_SOURCES "[0-9a-f]\{64\}"$' <<< "$ha" && [ "$ha" = "$hb" ] \
    && ok "make writes one header in two checkouts" || bad "headers: '$ha' / '$hb'"
grep -q "^flags: .*-O2" "$tmp/a/build/gen/code_manifest" && grep -q "^[0-9a-f]\{64\}  core/qh_mat.c$" \
    "$tmp/a/build/gen/code_manifest" && ! grep -q "README\|\.md$\|$tmp" "$tmp/a/build/gen/code_manifest" \
    && ok "the manifest names sources by relative path, and the flags" || bad "manifest: $(head -3 "$tmp/a/build/gen/code_manifest")"
touch -d '2001-02-03 04:05:06' "$tmp/a/build/gen/qh_code_id.h"
echo "more" >> "$tmp/a/analysis/README.md"
touch "$tmp/a/$f"                           # newer than the header, content unchanged
ha2=$(hdr "$tmp/a" OPT=-O2)
[ "$ha2" = "$ha" ] && [ "$(stat -c %Y "$tmp/a/build/gen/qh_code_id.h")" = "$(date -d '2001-02-03 04:05:06' +%s)" ] \
    && ok "unchanged sources: the header is not rewritten (nothing rebuilds)" || bad "header rewritten"
echo "/* x */" >> "$tmp/a/$f"
ha3=$(hdr "$tmp/a" OPT=-O2)
[ -n "$ha3" ] && [ "$ha3" != "$ha" ] && ok "a changed source rewrites the header" || bad "header after a change: $ha3"
ha4=$(hdr "$tmp/a" OPT=-O3)
[ -n "$ha4" ] && [ "$ha4" != "$ha3" ] && ok "OPT=-O3 gives another id" || bad "header with -O3: $ha4"
rm "$tmp/a/$h"                              # a deleted header: nothing is newer, the list changed
ha5=$(hdr "$tmp/a" OPT=-O3)
[ -n "$ha5" ] && [ "$ha5" != "$ha4" ] && ok "a deleted header gives another id" || bad "header after rm: $ha5"
hs=$(make -s -C "$tmp/deeper/b" SANITIZE=1 build-asan/gen/qh_code_id.h >/dev/null 2>&1 \
     && cat "$tmp/deeper/b/build-asan/gen/qh_code_id.h")
[ -n "$hs" ] && [ "$hs" != "$hb" ] && ok "a sanitizer build has its own header in build-asan/gen" \
    || bad "sanitizer header: '$hs'"
summary
