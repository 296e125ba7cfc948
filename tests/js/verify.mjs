// verify.mjs — check Sanctum's signatures with an implementation that is
// not Sanctum's: the `jose` package (and Node's own crypto).
//
//   node tests/js/verify.mjs < request.json
//
// request: {"jwks": {...}, "jws": "a.b.c", "hmac_key": HEX?, "hmac": HEX?}
//          a compact JWS (alg EdDSA) checked against the JWKS with jose's
//          compactVerify; with hmac_key, the HMAC-SHA256 of the payload
//          bytes must equal hmac.
//      or: {"jwks": {...}, "kid": KID?, "signed": TEXT, "signature": B64URL}
//          an Ed25519 signature over TEXT (a tree head), the key imported
//          from the JWKS by jose.
// Prints {"ok": true, "payload": ...} and exits 0, or {"ok": false,
// "error": "..."} and exits 3.
import { compactVerify, createLocalJWKSet, importJWK } from "jose";
import { createHmac, timingSafeEqual, verify } from "node:crypto";

function done(ok, extra) {
  process.stdout.write(JSON.stringify({ ok, ...extra }) + "\n");
  process.exit(ok ? 0 : 3);
}

let input = "";
process.stdin.setEncoding("utf8");
for await (const chunk of process.stdin) input += chunk;
let req;
try {
  req = JSON.parse(input);
} catch (e) {
  done(false, { error: "request is not JSON: " + e.message });
}

try {
  if (req.jws) {
    const { payload, protectedHeader } = await compactVerify(req.jws, createLocalJWKSet(req.jwks),
                                                             { algorithms: ["EdDSA"] });
    if (req.hmac_key) {
      const tag = createHmac("sha256", Buffer.from(req.hmac_key, "hex")).update(payload).digest();
      const want = Buffer.from(req.hmac || "", "hex");
      if (want.length !== tag.length || !timingSafeEqual(tag, want))
        done(false, { error: "hmac does not match the payload" });
    }
    const text = Buffer.from(payload).toString("utf8");
    let parsed = text;
    try { parsed = JSON.parse(text); } catch { /* a payload need not be JSON */ }
    done(true, { header: protectedHeader, payload: parsed });
  } else if (req.signed !== undefined) {
    const jwk = req.jwks.keys.find((k) => !req.kid || k.kid === req.kid);
    if (!jwk) done(false, { error: "no key " + req.kid + " in the JWKS" });
    const key = await importJWK(jwk, "EdDSA");
    const ok = verify(null, Buffer.from(req.signed, "utf8"), key, Buffer.from(req.signature, "base64url"));
    done(ok, ok ? {} : { error: "signature does not verify" });
  } else {
    done(false, { error: "nothing to verify: give jws, or signed and signature" });
  }
} catch (e) {
  done(false, { error: e.code ? e.code + ": " + e.message : String(e) });
}
