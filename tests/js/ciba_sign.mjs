// ciba_sign.mjs — an approver's device outside C: WebCrypto Ed25519 (what
// the dashboard uses in the browser), Node's globalThis.crypto.subtle only.
//
//   node tests/js/ciba_sign.mjs keygen           -> {"public_key": B64URL, "jwk": {...}}
//   node tests/js/ciba_sign.mjs sign < req.json   req: {"jwk": {...}, "auth_req_id", "decision",
//                                                  "binding_message", "authorization_details_sha256"}
//                                                -> {"signature": B64URL}
// The signed bytes are those of PROTOCOL.md 10.4 ("Signed decisions"),
// built here from the text of the spec, not from Sanctum's code.
const subtle = globalThis.crypto.subtle;
const b64url = (buf) => Buffer.from(buf).toString("base64url");

async function main() {
  const cmd = process.argv[2];
  if (cmd === "keygen") {
    const pair = await subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
    const raw = await subtle.exportKey("raw", pair.publicKey);
    const jwk = await subtle.exportKey("jwk", pair.privateKey);
    process.stdout.write(JSON.stringify({ public_key: b64url(raw), jwk }) + "\n");
    return;
  }
  if (cmd === "sign") {
    let input = "";
    process.stdin.setEncoding("utf8");
    for await (const chunk of process.stdin) input += chunk;
    const req = JSON.parse(input);
    const key = await subtle.importKey("jwk", req.jwk, { name: "Ed25519" }, false, ["sign"]);
    const text = ["sanctum-ciba-decision/1", req.auth_req_id, req.decision, req.binding_message,
                  req.authorization_details_sha256].join("\n");
    const sig = await subtle.sign({ name: "Ed25519" }, key, new TextEncoder().encode(text));
    process.stdout.write(JSON.stringify({ signature: b64url(sig) }) + "\n");
    return;
  }
  process.stderr.write("usage: ciba_sign.mjs keygen | sign < request.json\n");
  process.exit(2);
}
main().catch((e) => { process.stderr.write(String(e) + "\n"); process.exit(1); });
