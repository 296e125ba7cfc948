// vault_token.mjs — check a vault-broker access token with `jose`, an
// independent JOSE implementation, and make DPoP proofs with it.
//
//   node tests/js/vault_token.mjs < request.json
//
// request {"op": "verify", "jwks_url", "token", "issuer", "audience", "node_jwk"}:
//   the token's signature against the JWKS fetched over HTTP
//   (createRemoteJWKSet), typ at+jwt, iss, aud, exp; cnf.jkt must be the
//   RFC 7638 thumbprint of node_jwk. Prints {"ok": true, "header", "claims"}.
// request {"op": "dpop", "private_jwk", "htm", "htu", "token", "iat"?, "jti"?}:
//   an RFC 9449 proof (typ dpop+jwt, the public JWK in the header, ath the
//   SHA-256 of the token). Prints {"ok": true, "proof"}.
// Failures print {"ok": false, "error"} and exit 3.
import { SignJWT, calculateJwkThumbprint, createRemoteJWKSet, importJWK, jwtVerify } from "jose";
import { createHash, randomUUID } from "node:crypto";

function done(ok, extra) {
  process.stdout.write(JSON.stringify({ ok, ...extra }) + "\n");
  process.exit(ok ? 0 : 3);
}

let input = "";
process.stdin.setEncoding("utf8");
for await (const chunk of process.stdin) input += chunk;
const req = JSON.parse(input);

try {
  if (req.op === "verify") {
    const jwks = createRemoteJWKSet(new URL(req.jwks_url));
    const { payload, protectedHeader } = await jwtVerify(req.token, jwks, {
      issuer: req.issuer, audience: req.audience, typ: "at+jwt", algorithms: ["EdDSA"],
    });
    const jkt = await calculateJwkThumbprint(req.node_jwk, "sha256");
    if (!payload.cnf || payload.cnf.jkt !== jkt)
      done(false, { error: "cnf.jkt " + JSON.stringify(payload.cnf) + " is not the node key's " + jkt });
    done(true, { header: protectedHeader, claims: payload });
  } else if (req.op === "dpop") {
    const key = await importJWK(req.private_jwk, "EdDSA");
    const { d, ...pub } = req.private_jwk;
    const claims = { htm: req.htm, htu: req.htu, jti: req.jti || randomUUID() };
    if (req.token) claims.ath = createHash("sha256").update(req.token).digest("base64url");
    const proof = await new SignJWT(claims)
      .setProtectedHeader({ alg: "EdDSA", typ: "dpop+jwt", jwk: pub })
      .setIssuedAt(req.iat || Math.floor(Date.now() / 1000))
      .sign(key);
    done(true, { proof });
  } else {
    done(false, { error: "unknown op" });
  }
} catch (e) {
  done(false, { error: e.code ? e.code + ": " + e.message : String(e) });
}
