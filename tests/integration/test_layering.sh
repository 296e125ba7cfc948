#!/bin/sh
# test_layering.sh — the layers include only downwards: proto/ (the wire
# format) includes nothing from bus/ (the runtime above it), nor from the
# services. Two checks: every quoted include of a proto/ file names a file
# of proto/, and no include of any form names a bus_ header; then each
# proto/*.c compiles with proto/ alone on the include path (so an include
# that slips past the text check still fails).
# Prints `ok NAME` / `not ok NAME` lines, then `N passed, N failed`;
# exits 1 when anything failed.

. "$(dirname "$0")/results.sh"

files=$(ls proto/*.c proto/*.h proto/*.def 2>/dev/null)
[ -n "$files" ]; result "proto_files_found" $?

for f in $files; do
    # quoted includes must be proto/ files
    bad=""
    for inc in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f"); do
        [ -f "proto/$inc" ] || bad="$bad $inc"
    done
    [ -z "$bad" ]; result "$f includes only proto/ headers" $? "includes:$bad"
    # no bus_ (or service) header in any form
    ! grep -Eq '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"](bus/)?(bus|authz|orch|ciba|vault|audit|tele|sandbox)_' "$f"
    result "$f includes no bus_ or service header" $? "$(grep -En '#[[:space:]]*include.*(bus|authz)_' "$f" | head -3)"
done

CC=${CC:-cc}
FLAGS=$(pkg-config --cflags jansson msgpack libsodium 2>/dev/null)
if command -v "$CC" >/dev/null 2>&1; then
    for f in proto/*.c; do
        "$CC" -std=gnu11 -D_GNU_SOURCE -fsyntax-only -Iproto $FLAGS "$f" >"$TMP/cc.out" 2>&1
        result "$f compiles with -Iproto alone" $? "$(head -3 "$TMP/cc.out")"
    done
fi

results_done
