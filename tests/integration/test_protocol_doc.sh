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

# ---- safe requests: PROTO_SAFE (ident) names a type whose retries are
# answered afresh; 6.2 lists exactly those (from "Safe requests:" to the
# first full stop)
sed -n '/Safe requests:/,/\.$/p' "$DOC" | tr -s ' \n' '  ' | grep -o '`[^`]*`' | tr -d '`' | sort >"$TMP/safe_doc"
for id in $(sed -n 's/^PROTO_SAFE[[:space:]]*([[:space:]]*\([a-z_]*\)[[:space:]]*).*/\1/p' "$DEF"); do
    sed -n "s/^PROTO_MSG[[:space:]]*($id,[[:space:]]*\"\([^\"]*\)\".*/\1/p" "$DEF"
done | sort >"$TMP/safe_def"
[ -s "$TMP/safe_def" ] && cmp -s "$TMP/safe_def" "$TMP/safe_doc"
result "safe_types_listed ($(wc -l <"$TMP/safe_def") in the catalogue)" $? \
    "6.2 lists: $(tr '\n' ' ' <"$TMP/safe_doc"); the catalogue: $(tr '\n' ' ' <"$TMP/safe_def")"

# ---- sensitive fields: PROTO_SENSITIVE (ident, field) names a field a
# PROTO_FIELD declares; 6.5 lists them as `type.field` after "Sensitive
# fields:" ("none." when the catalogue marks none)
sed -n 's/^PROTO_SENSITIVE[[:space:]]*([[:space:]]*\([a-z_]*\),[[:space:]]*\([a-z_]*\)[[:space:]]*).*/\1 \2/p' "$DEF" >"$TMP/sens_pairs"
: >"$TMP/sens_def"
while read -r id field; do
    grep -q "^PROTO_FIELD[[:space:]]*($id,[[:space:]]*$field," "$DEF"
    result "sensitive $id.$field declared" $? "PROTO_SENSITIVE ($id, $field) without its PROTO_FIELD"
    t=$(sed -n "s/^PROTO_MSG[[:space:]]*($id,[[:space:]]*\"\([^\"]*\)\".*/\1/p" "$DEF")
    echo "$t.$field" >>"$TMP/sens_def"
done <"$TMP/sens_pairs"
sort -o "$TMP/sens_def" "$TMP/sens_def"
awk '/^Sensitive fields:/ { on = 1 } on { print; if (/\.$/) exit }' "$DOC" | tr -s ' \n' '  ' | grep -o '`[^`]*`' | tr -d '`' | sort >"$TMP/sens_doc"
grep -q '^Sensitive fields:' "$DOC" && cmp -s "$TMP/sens_def" "$TMP/sens_doc"
result "sensitive_fields_listed ($(wc -l <"$TMP/sens_def") in the catalogue)" $? \
    "6.5 lists: $(tr '\n' ' ' <"$TMP/sens_doc"); the catalogue: $(tr '\n' ' ' <"$TMP/sens_def")"

results_done
