#!/bin/sh
# test_audit_jose.sh — a JWS the auditor's signer makes (audit_jws_sign,
# through `test_audit_sign --emit`) verifies with the `jose` npm package, an
# independent JOSE implementation, against the JWKS the auditor serves
# (audit_keys_jwks), and its HMAC-SHA256 tag matches the payload's bytes;
# a JWS with one byte changed, or checked against another key, does not.
# tests/js/node_modules is installed by ops/deps.sh (`make deps`); when it
# is missing this test installs it (npm ci), and only when npm cannot reach
# its registry does it skip, saying so.
# Prints `ok NAME` / `not ok NAME` lines, then `N passed, N failed`.

. "$(dirname "$0")/results.sh"
BUILD=${BUILD:-build}
JS=tests/js

if ! command -v node >/dev/null 2>&1; then
    result "node_installed" 1 "node is not installed (apt-get install nodejs npm; ops/deps.sh does)"
    results_done; exit 1
fi
if [ ! -d "$JS/node_modules/jose" ]; then
    if ! (cd "$JS" && timeout 180 npm ci --no-audit --no-fund >"$TMP/npm.log" 2>&1); then
        result "jose_installed" 1 "npm could not install jose (registry unreachable?): $(tail -n 2 "$TMP/npm.log" | tr '\n' ' ')"
        results_done; exit 1
    fi
fi

"$BUILD/tests/test_audit_sign" --emit "$TMP/req.json"
result "emit_jws" $?

node "$JS/verify.mjs" <"$TMP/req.json" >"$TMP/out.json"
result "jose_verifies_jws_and_hmac" $? "$(cat "$TMP/out.json")"

# the payload jose read is the one signed, and the header names alg and kid
/usr/bin/python3 - "$TMP/req.json" "$TMP/out.json" <<'PY'
import json, sys
req, out = (json.load(open(p)) for p in sys.argv[1:3])
assert out["payload"] == req["payload"], (out["payload"], req["payload"])
assert out["header"] == {"alg": "EdDSA", "kid": req["jwks"]["keys"][0]["kid"], "typ": "JWT"}, out["header"]
PY
result "jose_payload_and_header" $?

# tampering: one character of the payload, of the signature; another key;
# a wrong HMAC tag
/usr/bin/python3 - "$TMP" <<'PY'
import json, sys, os
d = sys.argv[1]
req = json.load(open(os.path.join(d, "req.json")))
h, p, s = req["jws"].split(".")
flip = lambda t, i: t[:i] + ("A" if t[i] != "A" else "B") + t[i + 1:]
cases = {
    "payload": dict(req, jws=".".join([h, flip(p, 10), s])),
    "signature": dict(req, jws=".".join([h, p, flip(s, 3)])),
    "key": dict(req, jwks={"keys": [dict(req["jwks"]["keys"][0], x="11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")]}),
    "hmac": dict(req, hmac=("0" if req["hmac"][0] != "0" else "1") + req["hmac"][1:]),
}
for name, case in cases.items():
    json.dump(case, open(os.path.join(d, "bad_%s.json" % name), "w"))
PY
for bad in payload signature key hmac; do
    node "$JS/verify.mjs" <"$TMP/bad_$bad.json" >"$TMP/bad.out"
    [ $? -eq 3 ] && grep -q '"ok":false' "$TMP/bad.out"
    result "jose_refuses_changed_$bad" $? "$(cat "$TMP/bad.out")"
done

results_done
