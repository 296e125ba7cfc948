#!/bin/sh
# test_receipt_cli.sh — `sanctumctl receipt verify` offline, on receipts
# the auditor's builder made over a temporary log (test_audit_receipt
# --emit: a synthetic run with two device-signed approval levels, a lease,
# a step intent, a gap): a good receipt verifies (exit 0) with the JWKS and
# the HMAC key; each tampering exits 3 and the last line names where — one
# byte of the receipt (the signature), an entry changed in the store before
# the receipt was built (that entry's inclusion), an approval level signed
# over other bytes (that level), a wrong HMAC key, another auditor's JWKS.
# The same receipt verifies with the `jose` npm package (tests/js/verify.mjs,
# an independent JOSE implementation) with its HMAC, and jose refuses the
# changed byte. Bad usage exits 2, a missing file 1.
# Prints `ok NAME` / `not ok NAME` lines, then `N passed, N failed`.

. "$(dirname "$0")/results.sh"
BUILD=${BUILD:-build}
unset SANCTUM_CONFIG
CTL="$BUILD/bin/sanctumctl"
D="$TMP/r"
mkdir -p "$D"

"$BUILD/tests/test_audit_receipt" --emit "$D"
result "emit_receipts" $?

# verify FILE ...: exit code and the output's last line
check () {
    name=$1; want=$2; shift 2
    $CTL receipt verify "$@" >"$TMP/out" 2>"$TMP/err"
    rc=$?
    [ "$rc" -eq "$want" ]
    result "$name (exit $want)" $? "exit $rc: $(tail -n 3 "$TMP/out") $(cat "$TMP/err")"
}

check good 0 "$D/good.jws" --jwks "$D/jwks.json" --hmac-key "$D/hmac.key"
grep -q '^verified$' "$TMP/out" && grep -q '^ok     HMAC-SHA256 tag' "$TMP/out" \
    && [ "$(grep -c '^ok     approval .* Ed25519 signature by device' "$TMP/out")" -eq 2 ] \
    && [ "$(grep -c '^ok     entry [0-9]* (' "$TMP/out")" -eq 17 ]
result "good_checks_listed" $? "$(cat "$TMP/out")"

check good_hex_key 0 "$D/good.jws" --jwks "$D/jwks.json" --hmac-key "$D/hmac.hex"
cat "$D/good.jws" | $CTL receipt verify - --jwks "$D/jwks.json" >/dev/null
result "good_from_stdin" $?
$CTL --json receipt verify "$D/good.jws" --jwks "$D/jwks.json" >"$TMP/json"
/usr/bin/python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
assert r["verified"] is True and r["run"] == "01JDZ0000000000000000RUN01" and r["state"] == "COMPLETED", r
assert all(c["ok"] for c in r["checks"]) and len(r["checks"]) >= 22, r
' "$TMP/json"
result "good_json" $?

# one byte of the payload changed
/usr/bin/python3 - "$D" <<'PY'
import sys, os
d = sys.argv[1]
jws = open(os.path.join(d, "good.jws")).read().strip()
h, p, s = jws.split(".")
i = 200
p = p[:i] + ("A" if p[i] != "A" else "B") + p[i + 1:]
open(os.path.join(d, "byte.jws"), "w").write(".".join([h, p, s]))
PY
check byte 3 "$D/byte.jws" --jwks "$D/jwks.json"
grep -q '^NOT VERIFIED: receipt signature: EdDSA' "$TMP/out"
result "byte_named" $? "$(tail -n 1 "$TMP/out")"

check stored_entry 3 "$D/entry.jws" --jwks "$D/jwks.json" --hmac-key "$D/hmac.key"
grep -q '^NOT VERIFIED: entry 11 (append): its bytes are in the signed tree' "$TMP/out" \
    && [ "$(grep -c '^FAILED' "$TMP/out")" -eq 1 ]
result "stored_entry_named" $? "$(grep FAILED "$TMP/out")"

check approval_signature 3 "$D/approval.jws" --jwks "$D/jwks.json"
grep -q '^NOT VERIFIED: approval 01JDZ000000000000000APPR01 level 1 (user:victor, approved): Ed25519 signature' \
    "$TMP/out" && [ "$(grep -c '^FAILED' "$TMP/out")" -eq 1 ]
result "approval_signature_named" $? "$(grep FAILED "$TMP/out")"

head -c 32 /dev/urandom >"$D/wrong.key"
check wrong_hmac_key 3 "$D/good.jws" --jwks "$D/jwks.json" --hmac-key "$D/wrong.key"
grep -q '^NOT VERIFIED: HMAC-SHA256 tag' "$TMP/out"
result "wrong_hmac_key_named" $? "$(tail -n 1 "$TMP/out")"

check other_jwks 3 "$D/good.jws" --jwks "$D/other_jwks.json"
grep -q 'no such key in the JWKS' "$TMP/out"
result "other_jwks_named" $? "$(tail -n 1 "$TMP/out")"

$CTL receipt verify >/dev/null 2>&1; [ $? -eq 2 ]; result "usage_exit_2" $?
$CTL receipt verify "$D/none.jws" --jwks "$D/jwks.json" >/dev/null 2>&1; [ $? -eq 1 ]; result "missing_file_exit_1" $?
echo "not a receipt" >"$D/junk.jws"
check junk 3 "$D/junk.jws" --jwks "$D/jwks.json"

# jose, an independent implementation
if command -v node >/dev/null 2>&1 && { [ -d tests/js/node_modules/jose ] \
        || (cd tests/js && timeout 180 npm ci --no-audit --no-fund >"$TMP/npm.log" 2>&1); }; then
    node tests/js/verify.mjs <"$D/jose.json" >"$TMP/jose.out"
    result "jose_verifies_receipt_and_hmac" $? "$(cat "$TMP/jose.out")"
    /usr/bin/python3 -c '
import json, sys
out = json.load(open(sys.argv[1]))
p, h = out["payload"], out["header"]
assert p["receipt"] == "sanctum-receipt/1" and p["state"] == "COMPLETED" and len(p["entries"]) == 17, p.keys()
assert h["alg"] == "EdDSA" and h["typ"] == "JWT" and len(h["hmac"]) == 64, h
' "$TMP/jose.out"
    result "jose_payload" $?
    /usr/bin/python3 -c '
import json, sys
req = json.load(open(sys.argv[1]))
req["jws"] = open(sys.argv[2]).read().strip()
json.dump(req, open(sys.argv[3], "w"))
' "$D/jose.json" "$D/byte.jws" "$D/jose_bad.json"
    node tests/js/verify.mjs <"$D/jose_bad.json" >"$TMP/jose.out"
    [ $? -eq 3 ]; result "jose_refuses_changed_byte" $? "$(cat "$TMP/jose.out")"
else
    result "jose_available" 1 "node or tests/js/node_modules/jose missing (ops/deps.sh runs npm ci in tests/js)"
fi

results_done
