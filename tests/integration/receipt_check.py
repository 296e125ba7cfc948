"""receipt_check — check run receipts in tests, independently of the C code
that builds and verifies them: the JWS signature and the tree head's
signature with `cryptography`'s Ed25519, the HMAC with hmac/hashlib, every
entry's inclusion proof with a verifier written here from RFC 9162
(hashlib alone), and that each (publisher, seq) event is in a receipt once.
Also the calls a test (the 200-workflow kill test too) needs: a receipt
fetched when it is ready, `sanctumctl receipt verify` run on it.

    jws = wait_receipt(client, run)["jws"]
    p = check_receipt(jws, jwks, hmac_key)      # raises AssertionError saying where
    rc, out = ctl_verify(cluster, jws, jwks_path)
"""
import base64
import hashlib
import hmac
import json
import os
import tempfile
import time


def b64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def payload_of(jws):
    return json.loads(b64url(jws.split(".")[1]))


def _key(jwks, kid):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    for k in jwks["keys"]:
        if k.get("kid") == kid and k.get("kty") == "OKP" and k.get("crv") == "Ed25519":
            return Ed25519PublicKey.from_public_bytes(b64url(k["x"]))
    raise AssertionError("no key %s in the JWKS" % kid)


def _leaf(data):
    return hashlib.sha256(b"\x00" + data).digest()


def _node(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_inclusion(index, size, leaf, path, root):
    """RFC 9162 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _node(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def check_receipt(jws, jwks, hmac_key=None):
    """Check a receipt; return its payload. AssertionError names what failed."""
    h64, p64, s64 = jws.split(".")
    header = json.loads(b64url(h64))
    assert header["alg"] == "EdDSA", header
    key = _key(jwks, header["kid"])
    try:
        key.verify(b64url(s64), (h64 + "." + p64).encode())
    except Exception:
        raise AssertionError("receipt signature does not verify")
    payload_bytes = b64url(p64)
    if hmac_key is not None:
        tag = hmac.new(hmac_key, payload_bytes, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(tag, header["hmac"]), "HMAC tag does not match"
    p = json.loads(payload_bytes)
    assert p["receipt"] == "sanctum-receipt/1" and p["sub"] == p["run"], p.get("receipt")
    head = p["head"]
    signed = "%s\n%d\n%s\ntime %d\n" % (head["origin"], head["size"],
                                         base64.b64encode(bytes.fromhex(head["root"])).decode(), head["time"])
    try:
        _key(jwks, head["kid"]).verify(b64url(head["signature"]), signed.encode())
    except Exception:
        raise AssertionError("tree head signature does not verify")
    root = bytes.fromhex(head["root"])
    seen = set()
    for e in p["entries"]:
        path = [bytes.fromhex(x) for x in e["path"]]
        assert verify_inclusion(e["index"], head["size"], _leaf(e["entry"].encode()), path, root), \
            "entry %d is not in the signed tree" % e["index"]
        entry = json.loads(e["entry"])
        if entry["kind"] == "event":
            k = (entry["pub"], entry["seq"])
            assert k not in seen, "event %s is in the receipt twice" % (k,)
            seen.add(k)
    return p


def wait_receipt(client, run, timeout=20):
    """The audit.receipt reply body once the run's receipt exists."""
    deadline = time.time() + timeout
    while True:
        r = client.call("audit.receipt", {"run": run}, timeout_ms=5000)
        if r and r["ok"]:
            return r["body"]
        if time.time() >= deadline:
            raise AssertionError("no receipt for %s: %s" % (run, r))
        time.sleep(0.1)


def ctl_verify(cluster, jws, jwks_path, hmac_key_path=None):
    """(exit code, stdout) of `sanctumctl receipt verify` on jws."""
    fd, path = tempfile.mkstemp(prefix="receipt-", suffix=".jws", dir=cluster.dir)
    with os.fdopen(fd, "w") as f:
        f.write(jws)
    args = ["receipt", "verify", path, "--jwks", jwks_path]
    if hmac_key_path:
        args += ["--hmac-key", hmac_key_path]
    r = cluster.ctl(*args)
    return r.returncode, r.stdout
