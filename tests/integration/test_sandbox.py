#!/usr/bin/env python3
"""Integration: sanctum-sandbox (the mock ERP) with a real vault-broker.

Tokens come from vault.lease (local mode); DPoP proofs are made by the
`jose` npm package (tests/js/vault_token.mjs), an independent JOSE
implementation; the sandbox fetches the vault's JWKS over HTTP.

- Sheets values.append and values.get, Gmail messages.send, Dropbox
  files/upload accept a valid token with a valid proof, store what they
  receive, and answer in the real APIs' shapes; `sanctumctl sandbox rows`
  shows the rows.
- Refused, with the APIs' error JSON and WWW-Authenticate: DPoP: no token,
  no proof, another node's proof, a proof for another URL, a replayed
  proof, a token for another audience, a token without the API's scope, an
  expired token, a revoked lease's token.
- An Idempotency-Key makes an append happen once.
"""
import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from cluster import ROOT, Cluster  # noqa: E402
from harness import run, test  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402

JS = os.path.join(ROOT, "tests", "js")
RUN = "01JDZ0000000000000000RUN01"
SHEETS = "https://www.googleapis.com/auth/spreadsheets"
GMAIL = "https://www.googleapis.com/auth/gmail.send"
DROPBOX = "files.content.write"


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def node_key():
    k = Ed25519PrivateKey.generate()
    pub = k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    priv = k.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return b64u(pub), {"kty": "OKP", "crv": "Ed25519", "x": b64u(pub), "d": b64u(priv)}


def proof(priv, htm, htu, token, **kw):
    req = {"op": "dpop", "private_jwk": priv, "htm": htm, "htu": htu, "token": token}
    req.update(kw)
    p = subprocess.run(["node", os.path.join(JS, "vault_token.mjs")], input=json.dumps(req),
                       capture_output=True, text=True, timeout=60)
    out = json.loads(p.stdout)
    assert out["ok"], out
    return out["proof"]


class Ctx:
    def __init__(self):
        self.c = Cluster(services=["vault-broker", "sandbox"])
        self.c.start("vault-broker")
        self.c.wait_healthy(["vault-broker"])
        self.c.start("sandbox")
        self.c.wait_healthy(["sandbox"])
        self.orch = self.c.client("vault-broker", key_name="orch-test", principal="svc:orchestrator")
        with open(self.c.conf) as f:
            text = f.read()
        sec = text[text.index("[sandbox]"):]
        self.base = "http://" + [l.split("=", 1)[1].strip() for l in sec.splitlines() if l.startswith("http")][0]
        for name, kind, scopes in (("sheets", "google-sheets", SHEETS + ",https://www.googleapis.com/auth/drive.file"),
                                   ("gmail", "gmail", GMAIL), ("dropbox", "dropbox", DROPBOX)):
            r = self.c.ctl("vault", "connect", name, "--kind", kind, "--scopes", scopes)
            assert r.returncode == 0, r.stdout + r.stderr
        self.pub, self.priv = node_key()

    def lease(self, connection, scopes, ttl=120, key=None):
        r = self.orch.call("vault.lease", {"run": RUN, "node": "n1", "connection": connection, "scopes": scopes,
                                           "ttl": ttl, "node_key": key or self.pub}, timeout_ms=5000)
        assert r and r["ok"], r
        return r["body"]

    def http(self, method, path, token=None, prf=None, body=None, headers=None, raw=None):
        h = dict(headers or {})
        if token:
            h["Authorization"] = "DPoP " + token
        if prf:
            h["DPoP"] = prf
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if body is not None:
            h["Content-Type"] = "application/json"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=10) as f:
                return f.status, json.loads(f.read() or b"{}"), dict(f.headers)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}"), dict(e.headers)

    def call(self, method, path, token, body=None, priv=None, htu=None, **kw):
        prf = proof(priv or self.priv, method, htu or self.base + path, token)
        return self.http(method, path, token, prf, body, **kw)


APPEND = "/v4/spreadsheets/po-sheet/values/Orders!A1:append"


def refused(r, status, oauth_error, words):
    code, body, headers = r
    assert code == status, (code, body)
    assert body["error"]["code"] == status and body["error"]["status"] in ("UNAUTHENTICATED", "PERMISSION_DENIED"), body
    assert words in body["error"]["message"], body
    assert 'error="%s"' % oauth_error in headers.get("WWW-Authenticate", ""), headers


@test
def append_and_read(x):
    x.sheets = x.lease("sheets", [SHEETS])["token"]
    code, body, _ = x.call("POST", APPEND, x.sheets, {"values": [["PO-1", "widgets", 12], ["PO-2", "bolts", 400]]})
    assert code == 200, body
    assert body["spreadsheetId"] == "po-sheet" and body["updates"]["updatedRows"] == 2, body
    assert body["updates"]["updatedRange"] == "Orders!A1:C2", body
    code, body, _ = x.call("GET", "/v4/spreadsheets/po-sheet/values/Orders!A1:C10", x.sheets)
    assert code == 200 and body["values"] == [["PO-1", "widgets", 12], ["PO-2", "bolts", 400]], body
    r = x.c.ctl("--json", "sandbox", "rows", "po-sheet")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["rows"] == [["PO-1", "widgets", 12], ["PO-2", "bolts", 400]], r.stdout


@test
def gmail_and_dropbox(x):
    t = x.lease("gmail", [GMAIL])["token"]
    raw = b64u(b"To: buyer@example.com\r\nSubject: PO-1\r\n\r\nPlease ship.")
    code, body, _ = x.call("POST", "/gmail/v1/users/me/messages/send", t, {"raw": raw})
    assert code == 200 and body["labelIds"] == ["SENT"] and body["id"], body
    t = x.lease("dropbox", [DROPBOX])["token"]
    code, body, _ = x.call("POST", "/2/files/upload", t, raw=b"%PDF-1.4 po",
                           headers={"Dropbox-API-Arg": json.dumps({"path": "/pos/PO-1.pdf", "mode": "add"}),
                                    "Content-Type": "application/octet-stream"})
    assert code == 200 and body["path_display"] == "/pos/PO-1.pdf" and body["size"] == 11, body
    code, body, _ = x.http("POST", "/2/files/upload", t, None, raw=b"x")
    assert code == 401 and body["error"][".tag"] == "invalid_access_token", body


@test
def refusals(x):
    refused(x.http("POST", APPEND, body={"values": [["x"]]}), 401, "invalid_token", "DPoP-bound")
    refused(x.http("POST", APPEND, x.sheets, None, {"values": [["x"]]}), 401, "invalid_dpop_proof", "required")
    _, other = node_key()
    refused(x.call("POST", APPEND, x.sheets, {"values": [["x"]]}, priv=other), 401, "invalid_dpop_proof",
            "not the one the token is bound to")
    refused(x.call("POST", APPEND, x.sheets, {"values": [["x"]]}, htu=x.base + "/v4/spreadsheets/other/values/A:append"),
            401, "invalid_dpop_proof", "another request")
    prf = proof(x.priv, "POST", x.base + APPEND, x.sheets)
    code, _, _ = x.http("POST", APPEND, x.sheets, prf, {"values": [["once"]]})
    assert code == 200
    refused(x.http("POST", APPEND, x.sheets, prf, {"values": [["twice"]]}), 401, "invalid_dpop_proof", "replayed")
    # a write's proof is recorded in the write's own commit: a request
    # refused after its proof was checked (a bad body) has used it too
    bad = proof(x.priv, "POST", x.base + APPEND, x.sheets)
    code, _, _ = x.http("POST", APPEND, x.sheets, bad, {"values": "not rows"})
    assert code == 400, code
    refused(x.http("POST", APPEND, x.sheets, bad, {"values": [["after-bad"]]}), 401, "invalid_dpop_proof",
            "replayed")
    gm = x.lease("gmail", [GMAIL])["token"]
    refused(x.call("POST", APPEND, gm, {"values": [["x"]]}), 401, "invalid_token", "another audience")
    drive = x.lease("sheets", ["https://www.googleapis.com/auth/drive.file"])["token"]
    refused(x.call("POST", APPEND, drive, {"values": [["x"]]}), 403, "insufficient_scope", "lacks scope")
    short = x.lease("sheets", [SHEETS], ttl=1)["token"]
    time.sleep(2.2)
    refused(x.call("POST", APPEND, short, {"values": [["x"]]}), 401, "invalid_token", "expired")
    rows = json.loads(x.c.ctl("--json", "sandbox", "rows", "po-sheet").stdout)["rows"]
    assert ["x"] not in rows and ["twice"] not in rows and ["after-bad"] not in rows and ["once"] in rows, rows


@test
def revoked_lease(x):
    b = x.lease("sheets", [SHEETS])
    code, _, _ = x.call("POST", APPEND, b["token"], {"values": [["before-revoke"]]})
    assert code == 200
    r = x.orch.call("vault.revoke", {"lease_id": b["lease_id"]}, timeout_ms=5000)
    assert r["ok"], r
    deadline = time.monotonic() + 5
    while True:
        r = x.call("POST", APPEND, b["token"], {"values": [["after-revoke"]]})
        if r[0] == 401 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    refused(r, 401, "invalid_token", "revoked")


@test
def idempotency_key(x):
    h = {"Idempotency-Key": "po-7-append"}
    a = x.call("POST", "/v4/spreadsheets/idem/values/S!A1:append", x.sheets, {"values": [["PO-7"]]}, headers=h)
    b = x.call("POST", "/v4/spreadsheets/idem/values/S!A1:append", x.sheets, {"values": [["PO-7"]]}, headers=h)
    assert a[0] == b[0] == 200 and a[1] == b[1], (a, b)
    assert b[2].get("Idempotent-Replayed") == "true", b[2]
    # a replayed answer uses its proof as a write does
    path = "/v4/spreadsheets/idem/values/S!A1:append"
    prf = proof(x.priv, "POST", x.base + path, x.sheets)
    c = x.http("POST", path, x.sheets, prf, {"values": [["PO-7"]]}, headers=h)
    assert c[0] == 200 and c[2].get("Idempotent-Replayed") == "true", c
    refused(x.http("POST", path, x.sheets, prf, {"values": [["PO-7"]]}, headers=h), 401, "invalid_dpop_proof",
            "replayed")
    rows = json.loads(x.c.ctl("--json", "sandbox", "rows", "idem").stdout)["rows"]
    assert rows == [["PO-7"]], rows


def setup():
    return Ctx()


def teardown(x):
    x.orch.close()
    x.c.close()


if __name__ == "__main__":
    if not os.path.isdir(os.path.join(JS, "node_modules", "jose")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS, capture_output=True, timeout=180)
    sys.exit(run(setup, teardown))
