#!/bin/sh
# test_protocol_doc.sh — proto/PROTOCOL.md documents the whole catalogue:
# every message type of proto/proto_catalog.def appears in it in backticks
# and has its own subsection (#### `type`), every PROTO_ERR_* code of
# proto/proto_msg.h appears in backticks, and every subsection names a type
# that still exists.
# Prints `ok NAME` / `not ok NAME` lines, then `N passed, N failed`;
# exits 1 when anything failed.

. "$(dirname "$0")/results.sh"
DOC=proto/PROTOCOL.md
DEF=proto/proto_catalog.def
HDR=proto/proto_msg.h

# Is `WORD` (in backticks) in the document?
in_doc () {
    grep -qF "\`$1\`" "$DOC"
}

[ -f "$DOC" ]; result "doc_exists" $?

# ---- message types: PROTO_MSG (ident, "type", kind, owner, senders)
sed -n 's/^PROTO_MSG[[:space:]]*([^,]*,[[:space:]]*"\([^"]*\)".*/\1/p' "$DEF" >"$TMP/types"
n=$(wc -l <"$TMP/types"); m=$(grep -c '^PROTO_MSG[[:space:]]*(' "$DEF")
[ "$n" -gt 0 ] && [ "$n" -eq "$m" ]; result "catalogue_parses ($n of $m types)" $?
sed -n 's/^####[[:space:]]*`\([^`]*\)`.*/\1/p' "$DOC" >"$TMP/headings"
while read -r t; do
    in_doc "$t"; result "type $t" $? "not in $DOC"
    grep -qxF "$t" "$TMP/headings"; result "type $t has a subsection" $? "no #### \`$t\` heading"
done <"$TMP/types"

# ---- error codes: #define PROTO_ERR_X "code"
sed -n 's/^#define[[:space:]]*PROTO_ERR_[A-Z_]*[[:space:]]*"\([^"]*\)".*/\1/p' "$HDR" >"$TMP/codes"
n=$(wc -l <"$TMP/codes"); m=$(grep -c '^#define[[:space:]]*PROTO_ERR_' "$HDR")
[ "$n" -gt 0 ] && [ "$n" -eq "$m" ]; result "error_codes_parse ($n of $m codes)" $?
while read -r c; do
    in_doc "$c"; result "code $c" $? "not in $DOC"
done <"$TMP/codes"

# ---- no stale subsections: each #### `type` heading is a catalogue type
while read -r h; do
    grep -qxF "$h" "$TMP/types"; result "heading $h in catalogue" $? "no such type in $DEF"
done <"$TMP/headings"

results_done
