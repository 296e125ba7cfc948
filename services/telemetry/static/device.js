// This browser as an approver's device: a non-extractable Ed25519 key in
// WebCrypto, kept in IndexedDB, signing the decision bytes of PROTOCOL.md
// 10.4. The private key never leaves the browser; the server holds nothing.

const DB = "sanctum-device", STORE = "keys", ID = "device";

function idb(mode, fn) {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open(DB, 1);
    open.onupgradeneeded = () => open.result.createObjectStore(STORE);
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const tx = open.result.transaction(STORE, mode);
      const req = fn(tx.objectStore(STORE));
      tx.oncomplete = () => { open.result.close(); resolve(req && req.result); };
      tx.onerror = () => { open.result.close(); reject(tx.error); };
    };
  });
}

export function b64url(bytes) {
  let s = "";
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

async function create() {
  const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
  const pub = b64url(await crypto.subtle.exportKey("raw", pair.publicKey));
  const rec = { privateKey: pair.privateKey, publicKey: pub, created: Date.now() };
  await idb("readwrite", (s) => s.put(rec, ID));
  return rec;
}

// The device key, made on first use. Returns {privateKey, publicKey}.
export async function deviceKey(renew = false) {
  if (!renew) {
    const rec = await idb("readonly", (s) => s.get(ID));
    if (rec && rec.privateKey) return rec;
  }
  return create();
}

// The signature (base64url) over
// "sanctum-ciba-decision/1\n<auth_req_id>\n<decision>\n<binding_message>\n<details_sha256>".
export async function signDecision(key, authReqId, decision, bindingMessage, detailsSha256) {
  const text = ["sanctum-ciba-decision/1", authReqId, decision, bindingMessage, detailsSha256].join("\n");
  const sig = await crypto.subtle.sign({ name: "Ed25519" }, key.privateKey, new TextEncoder().encode(text));
  return b64url(sig);
}
