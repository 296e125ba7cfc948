#!/usr/bin/env python3
"""Integration: sanctum-vault-broker as a real process.

- Connections: `sanctumctl vault connect` with a canary secret; listed
  without it; the master key file made 0600; master-key rotation keeps old
  records readable and seals new ones under the new key.
- Leases (local mode): a token minted by the vault verifies with the `jose`
  npm package against the JWKS served over HTTP (typ at+jwt, iss, aud, exp,
  cnf.jkt = the RFC 7638 thumbprint of the node's key), with the claims
  checked; refusals: scopes beyond the connection, ttl over its cap, no
  approval where one is needed, an approval for another run or node, an
  approval still pending or denied, an approval used twice.
- Approvals come from a stand-in ciba-broker in this process (a CURVE
  ROUTER with the ciba-broker's key on its endpoint) that speaks the
  ciba.status contract: {approval_id, state, run, node, levels,
  binding_message, expires_at}. The ciba-broker itself is being built in
  parallel; the end-to-end test is the lead's, after the merge.
- renew within the cap and refused past it; revoke one lease, revoke a
  run; `sanctumctl vault leases --json` has the issue's shape; token.used.
- Events carry an HMAC of the token, never the token; the canary secret is
  in no log, event, reply or LMDB page in plain text; no leased token is in
  any LMDB page either (the reply kept for retries holds it sealed), and a
  retry after a restart gets the same token.
- SIGKILL with leases live: restarted, every lease still expires on time
  (token.expired, state expired, within the sweep's interval).
- vault.revoke {run} reads the run's leases by its index: a run with
  nothing to revoke commits nothing (the store's last transaction id,
  mdb_stat, unchanged), another run's leases stay active, a restart keeps
  the index, and a store of before the index (dropped here through
  liblmdb) has it rebuilt at start.
"""
import base64
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from cluster import ROOT, Cluster  # noqa: E402
from harness import run, test  # noqa: E402
import msgpack  # noqa: E402
import zmq  # noqa: E402
import sanctum_client as sc  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402

CANARY = "canary-refresh-token-7f3a9c1e5b"
RUN = "01JDZ0000000000000000RUN01"
RUN2 = "01JDZ0000000000000000RUN02"
RUN3 = "01JDZ0000000000000000RUN03"
RUN4 = "01JDZ0000000000000000RUN04"
RUN5 = "01JDZ0000000000000000RUN05"
NO_RUN = "01JDZ000000000000000NORUN0"
RUN6 = "01JDZ0000000000000000RUN06"
RUN7 = "01JDZ0000000000000000RUN07"
RUN8 = "01JDZ0000000000000000RUN08"
RUN9 = "01JDZ0000000000000000RUN09"      # renew_revoke_and_list's: it ends
JS = os.path.join(ROOT, "tests", "js")
SHEETS_SCOPE = "https://www.googleapis.com/auth/spreadsheets"


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def node_key():
    k = Ed25519PrivateKey.generate()
    pub = k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    priv = k.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64u(pub)}
    return b64u(pub), jwk, dict(jwk, d=b64u(priv))


class FakeCiba:
    """A stand-in ciba-broker: answers ciba.status from APPROVALS."""

    def __init__(self, endpoint, keys_dir):
        public, secret = sc.load_keys(keys_dir, "ciba-broker")
        self.sock = zmq.Context.instance().socket(zmq.ROUTER)
        self.sock.curve_server = True
        self.sock.curve_publickey = public
        self.sock.curve_secretkey = secret
        self.sock.linger = 0
        self.sock.bind(endpoint)
        self.approvals = {}
        self.asked = []
        self.stop = False
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while not self.stop:
            if not self.sock.poll(50):
                continue
            frames = self.sock.recv_multipart()
            env = msgpack.unpackb(frames[-1], raw=False)
            aid = env["body"].get("approval_id")
            self.asked.append(aid)
            a = self.approvals.get(aid)
            if a is not None and "hold" in a:       # answered once the test lets it
                a["held"].set()
                a["hold"].wait(10)
                a = {k: v for k, v in a.items() if k not in ("hold", "held")}
            reply = {"v": 1, "type": env["type"], "id": sc.ulid(), "ts": int(time.time() * 1e6),
                     "corr": env["id"], "traceparent": env.get("traceparent", sc.traceparent())}
            if a is None:
                reply.update(ok=False, error={"code": "not_found", "message": "no approval %s" % aid})
            else:
                reply.update(ok=True, body=dict(a, approval_id=aid, levels=[{"level": 1, "state": a["state"]}],
                                                binding_message="PO 42", expires_at=int(time.time()) + 300))
            self.sock.send_multipart(frames[:-1] + [msgpack.packb(reply, use_bin_type=True)])

    def close(self):
        self.stop = True
        self.thread.join()
        self.sock.close(0)


class Ctx:
    def __init__(self):
        # a slow, small re-seal pass: the rotation test sees the old key first
        self.c = Cluster(services=["vault-broker"], extra_config="[vault]\nreseal_ms = 2500\nreseal_batch = 2\n")
        self.c.start("vault-broker")
        self.c.wait_healthy(["vault-broker"])
        self.ciba = FakeCiba(self.c.endpoints["ciba-broker"][0], self.c.keys)
        self.orch = self.c.client("vault-broker", key_name="orchestrator-test", principal="svc:orchestrator")
        pub, sec = self.c.client_key("tap-test", "ops:tap")
        self.sub = sc.SanctumSubscriber(self.c.endpoints["vault-broker"][1],
                                        sc.server_key(self.c.keys, "vault-broker"), pub, sec)
        self.events = []
        self.http = self.c_http()
        self.secret_file = os.path.join(self.c.dir, "sheets.secret")
        with open(self.secret_file, "w") as f:
            f.write(CANARY + "\n")
        self.replies = []

    def c_http(self):
        with open(self.c.conf) as f:
            text = f.read()
        sec = text[text.index("[vault]"):]
        return [l.split("=", 1)[1].strip() for l in sec.splitlines() if l.startswith("http")][0]

    def call(self, type_, body=None, client=None):
        r = (client or self.orch).call(type_, body or {}, timeout_ms=5000)
        assert r is not None, "no reply to %s" % type_
        self.replies.append(r)
        return r

    def drain(self, wait_ms=300):
        while True:
            e = self.sub.recv(wait_ms)
            if e is None:
                return self.events
            self.events.append(e)


def ok(r):
    assert r["ok"], r.get("error")
    return r["body"]


def err(r, code, reason=None):
    assert not r["ok"], r
    assert r["error"]["code"] == code, r["error"]
    if reason:
        assert r["error"].get("reason") == reason, r["error"]
    return r["error"]


def node_js(req):
    p = subprocess.run(["node", os.path.join(JS, "vault_token.mjs")], input=json.dumps(req),
                       capture_output=True, text=True, timeout=60)
    return json.loads(p.stdout) if p.stdout.strip() else {"ok": False, "error": p.stderr}


def connect(x, name, *extra):
    r = x.c.ctl("--json", "vault", "connect", name, "--kind", "google-sheets", "--scopes",
                SHEETS_SCOPE + ",https://www.googleapis.com/auth/drive.file", "--secret-file", x.secret_file, *extra)
    assert r.returncode == 0, r.stdout + r.stderr
    assert CANARY not in r.stdout + r.stderr
    return json.loads(r.stdout)


def lease(x, connection="sheets", run=RUN, node="write_po", scopes=(SHEETS_SCOPE,), key=None, **kw):
    body = {"run": run, "node": node, "connection": connection, "scopes": list(scopes),
            "node_key": key or x.node_pub}
    body.update(kw)
    return x.call("vault.lease", body)


@test
def connect_and_list(x):
    out = connect(x, "sheets")
    assert out["name"] == "sheets" and out["key_id"] == 1 and "secret" not in out, out
    connect(x, "sheets-approved", "--approval", "--ttl-cap", "300")
    r = x.c.ctl("--json", "vault", "connections")
    assert r.returncode == 0, r.stderr
    conns = {c["name"]: c for c in json.loads(r.stdout)["connections"]}
    assert set(conns) == {"sheets", "sheets-approved"}, conns
    assert conns["sheets"]["audience"] == "https://sheets.googleapis.com/"
    assert conns["sheets-approved"]["approval"] is True and conns["sheets-approved"]["ttl_cap"] == 300
    assert conns["sheets"]["has_secret"] is True and CANARY not in r.stdout
    mk = os.path.join(x.c.dir, "data", "vault-broker", "master.key")
    st = os.stat(mk)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_size == 32, (oct(st.st_mode), st.st_size)
    # what the user typed, refused as invalid by the vault: bad usage (exit 2), saying what is wrong
    r = x.c.ctl("vault", "connect", "bad name", "--kind", "gmail", "--scopes", "x")
    assert r.returncode == 2 and "error invalid" in r.stderr, (r.returncode, r.stderr)
    r = x.c.ctl("vault", "connect", "n", "--kind", "fax", "--scopes", "x")
    assert r.returncode == 2 and "error invalid" in r.stderr, (r.returncode, r.stderr)


@test
def lease_token_verifies_with_jose(x):
    x.node_pub, x.node_jwk, x.node_priv = node_key()
    b = ok(lease(x, ttl=120))
    assert b["token_type"] == "DPoP" and b["scopes"] == [SHEETS_SCOPE], b
    assert 119 <= b["expires_at"] - int(time.time()) <= 121, b
    x.token, x.lease_id = b["token"], b["lease_id"]
    out = node_js({"op": "verify", "jwks_url": "http://%s/.well-known/jwks.json" % x.http, "token": x.token,
                   "issuer": "http://%s" % x.http, "audience": "https://sheets.googleapis.com/",
                   "node_jwk": x.node_jwk})
    assert out["ok"], out
    cl, hd = out["claims"], out["header"]
    assert hd["typ"] == "at+jwt" and hd["alg"] == "EdDSA" and hd["kid"], hd
    assert cl["scope"] == SHEETS_SCOPE and cl["sub"] == "write_po" and cl["client_id"] == "svc:orchestrator", cl
    assert cl["exp"] - cl["iat"] == 120 and cl["jti"], cl
    assert cl["sanctum"] == {"run": RUN, "node": "write_po", "connection": "sheets", "lease": x.lease_id}, cl
    # another node's key: jose says cnf.jkt does not match
    _, other_jwk, _ = node_key()
    out = node_js({"op": "verify", "jwks_url": "http://%s/.well-known/jwks.json" % x.http, "token": x.token,
                   "issuer": "http://%s" % x.http, "audience": "https://sheets.googleapis.com/",
                   "node_jwk": other_jwk})
    assert not out["ok"] and "cnf.jkt" in out["error"], out
    # a changed token does not verify
    bad = x.token[:-3] + ("AAA" if not x.token.endswith("AAA") else "BBB")
    out = node_js({"op": "verify", "jwks_url": "http://%s/.well-known/jwks.json" % x.http, "token": bad,
                   "issuer": "http://%s" % x.http, "audience": "https://sheets.googleapis.com/",
                   "node_jwk": x.node_jwk})
    assert not out["ok"], out


@test
def lease_refusals(x):
    err(lease(x, scopes=(SHEETS_SCOPE, "https://mail.google.com/")), "forbidden", "scope")
    err(lease(x, connection="sheets-approved", ttl=301, approval="appr-x"), "invalid", "ttl")
    err(lease(x, connection="sheets-approved"), "forbidden", "approval_required")
    err(lease(x, connection="nope"), "not_found")
    err(lease(x, key="not-a-key"), "invalid")
    x.ciba.approvals["appr-pending"] = {"state": "pending", "run": RUN, "node": "write_po"}
    err(lease(x, connection="sheets-approved", approval="appr-pending"), "forbidden", "approval_pending")
    x.ciba.approvals["appr-denied"] = {"state": "denied", "run": RUN, "node": "write_po"}
    err(lease(x, connection="sheets-approved", approval="appr-denied"), "forbidden", "approval_denied")
    x.ciba.approvals["appr-other-run"] = {"state": "approved", "run": RUN2, "node": "write_po"}
    err(lease(x, connection="sheets-approved", approval="appr-other-run"), "forbidden", "approval_mismatch")
    x.ciba.approvals["appr-other-node"] = {"state": "approved", "run": RUN, "node": "send_mail"}
    err(lease(x, connection="sheets-approved", approval="appr-other-node"), "forbidden", "approval_mismatch")
    err(lease(x, connection="sheets-approved", approval="appr-unknown"), "forbidden", "approval_unknown")
    x.ciba.approvals["appr-ok"] = {"state": "approved", "run": RUN, "node": "write_po"}
    b = ok(lease(x, connection="sheets-approved", approval="appr-ok", ttl=300))
    assert b["lease_id"]
    err(lease(x, connection="sheets-approved", approval="appr-ok", ttl=300), "conflict", "approval_used")
    assert "appr-ok" in x.ciba.asked and "appr-pending" in x.ciba.asked
    # an approval on a connection that does not need one is still checked
    err(lease(x, approval="appr-pending"), "forbidden", "approval_pending")


@test
def renew_revoke_and_list(x):
    b = ok(lease(x, connection="sheets-approved", ttl=10, approval=None) if False else lease(x, run=RUN9, ttl=10))
    lid = b["lease_id"]
    r = ok(x.call("vault.renew", {"lease_id": lid, "ttl": 60}))
    assert r["expires_at"] >= b["expires_at"] + 49 and r["token"] != b["token"], (r, b)
    # a lease on the 300 s connection cannot be renewed past issued + 300
    x.ciba.approvals["appr-renew"] = {"state": "approved", "run": RUN9, "node": "write_po"}
    c = ok(lease(x, connection="sheets-approved", approval="appr-renew", run=RUN9, ttl=300))
    err(x.call("vault.renew", {"lease_id": c["lease_id"], "ttl": 300}), "conflict", "cap")
    r = x.c.ctl("--json", "vault", "leases", "--run", RUN9)
    assert r.returncode == 0, r.stderr
    leases = json.loads(r.stdout)["leases"]
    assert leases and all(set(l) >= {"lease_id", "run", "node", "connection", "scopes", "ttl", "state",
                                     "issued_at", "expires_at"} for l in leases), leases
    assert all("token" not in json.dumps(l) or "token_hmac" not in l for l in leases)
    r = x.c.ctl("--json", "vault", "revoke", lid)
    assert r.returncode == 0 and json.loads(r.stdout)["revoked"] == [lid], r.stdout + r.stderr
    err(x.call("vault.renew", {"lease_id": lid}), "conflict", "not_active")
    state = {l["lease_id"]: l["state"] for l in ok(x.call("vault.leases", {"run": RUN9}))["leases"]}
    assert state[lid] == "revoked", state
    # revoke a run: every active lease of it, none of another run's
    other = ok(lease(x, run=RUN2, ttl=60))["lease_id"]
    rv = ok(x.call("vault.revoke", {"run": RUN9}))["revoked"]
    assert lid not in rv and c["lease_id"] in rv and other not in rv, rv
    state = {l["lease_id"]: l["state"] for l in ok(x.call("vault.leases"))["leases"]}
    assert all(state[i] == "revoked" for i in rv) and state[other] == "active"
    ok(x.call("vault.token_used", {"lease_id": other, "target": "sheets.values.append"}))
    err(x.call("vault.revoke", {"lease_id": "lease_none"}), "not_found")
    err(x.call("vault.revoke", {}), "invalid")


@test
def events_carry_hmac_never_token(x):
    evs = x.drain()
    types = [e["type"] for e in evs]
    for t in ("token.issued", "token.renewed", "token.revoked", "token.used", "vault.connected"):
        assert t in types, types
    issued = [e for e in evs if e["type"] == "token.issued"]
    for e in issued:
        b = e["body"]
        assert set(b) >= {"lease_id", "run", "node", "connection", "scopes", "issued_at", "expires_at",
                          "token_hmac"}, b
        assert b["token_hmac"].startswith("hmac-sha256:") and len(b["token_hmac"]) == 12 + 64
    blob = json.dumps(evs)
    assert x.token not in blob and x.token.split(".")[2] not in blob
    assert CANARY not in blob


@test
def master_key_rotation(x):
    r = x.c.ctl("--json", "vault", "rotate-key", "master")
    assert r.returncode == 0 and json.loads(r.stdout)["key_id"] == 2, r.stdout + r.stderr
    assert os.stat(os.path.join(x.c.dir, "data", "vault-broker", "master.key")).st_size == 64
    connect(x, "sheets-new")
    conns = {c["name"]: c for c in ok(x.call("vault.connections", client=x.ops()))["connections"]}
    assert conns["sheets"]["key_id"] == 1 and conns["sheets-new"]["key_id"] == 2, conns
    ok(lease(x, connection="sheets", ttl=5))        # an old record still opens
    # signing key rotation: both keys in the JWKS, the old token still verifies
    r = x.c.ctl("--json", "vault", "rotate-key", "signing")
    assert r.returncode == 0, r.stderr
    with urllib.request.urlopen("http://%s/.well-known/jwks.json" % x.http, timeout=5) as f:
        jwks = json.load(f)
    assert len(jwks["keys"]) == 2, jwks
    out = node_js({"op": "verify", "jwks_url": "http://%s/.well-known/jwks.json" % x.http, "token": x.token,
                   "issuer": "http://%s" % x.http, "audience": "https://sheets.googleapis.com/",
                   "node_jwk": x.node_jwk})
    assert out["ok"], out


@test
def reseal_pass_moves_old_records(x):
    """After the rotation, a paced background pass (2 records a step here)
    moves every record sealed under key 1 to key 2, without a write to
    any of them: connections and signing keys; they still open."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        conns = ok(x.call("vault.connections", client=x.ops()))["connections"]
        if all(c["key_id"] == 2 for c in conns):
            break
        time.sleep(0.5)
    assert all(c["key_id"] == 2 for c in conns), conns
    assert len(conns) >= 3, conns
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "re-seal pass done" not in x.c.read_logs():
        time.sleep(0.3)
    logs = x.c.read_logs()
    assert "re-seal pass done" in logs, logs[-2000:]
    if shutil.which("mdb_dump"):
        dump = subprocess.run(["mdb_dump", "-s", "signing", os.path.join(x.c.dir, "data", "vault-broker")],
                              capture_output=True, text=True, check=True).stdout.split("\n")
        vals = [l.strip() for l in dump[dump.index("HEADER=END") + 1:] if l.startswith(" ")][1::2]
        assert vals and all(v[:10] == "0100000002" for v in vals), vals
    ok(lease(x, connection="sheets", ttl=5))
    ok(lease(x, connection="sheets-new", ttl=5))


def _start(x, env=None):
    """Start the vault (stopped), wait for it, and connect to it again."""
    x.c.start("vault-broker", env=env)
    x.c.wait_healthy(["vault-broker"])
    x.reconnect()


def _restart(x, env=None):
    x.c.stop("vault-broker")
    _start(x, env)


def _edit_record(x, db, key, edit):
    """Change the value of key in db behind the vault's back (mdb_dump, edit, mdb_load)."""
    path = os.path.join(x.c.dir, "data", "vault-broker")
    dump = subprocess.run(["mdb_dump", "-s", db, path], capture_output=True, text=True, check=True)
    lines = [line for line in dump.stdout.split("\n") if not line.startswith("db_pagesize=")]
    at = next(i for i, line in enumerate(lines) if line.strip() == key.encode().hex())
    lines[at + 1] = " " + edit(bytes.fromhex(lines[at + 1].strip())).hex()
    subprocess.run(["mdb_load", "-s", db, path], input="\n".join(lines), text=True, check=True)


@test
def tampered_or_truncated_records_are_errors(x):
    """A connection record with one byte changed, one truncated, and one
    moved under another name: each is an `integrity` error, the service
    stays up, and the others still open."""
    if not (shutil.which("mdb_dump") and shutil.which("mdb_load")):
        print("# skip: lmdb-utils (mdb_dump, mdb_load) not installed")
        return
    for n in ("t-flip", "t-cut", "t-moved", "t-good"):
        connect(x, n)
    x.c.stop("vault-broker")
    _edit_record(x, "connections", "connection/t-flip", lambda v: v[:40] + bytes([v[40] ^ 1]) + v[41:])
    _edit_record(x, "connections", "connection/t-cut", lambda v: v[:len(v) // 2])
    path = os.path.join(x.c.dir, "data", "vault-broker")
    dump = subprocess.run(["mdb_dump", "-s", "connections", path], capture_output=True, text=True, check=True)
    lines = dump.stdout.split("\n")
    good = lines[lines.index(" " + "connection/t-good".encode().hex()) + 1]
    _edit_record(x, "connections", "connection/t-moved", lambda v: bytes.fromhex(good.strip()))
    _start(x)
    conns = {c["name"]: c for c in ok(x.call("vault.connections"))["connections"]}
    for n in ("t-flip", "t-cut", "t-moved"):
        assert conns[n].get("error") == "integrity", conns[n]
        e = err(lease(x, connection=n, ttl=5), "internal", "integrity")
        assert CANARY not in json.dumps(e)
    assert "error" not in conns["t-good"] and ok(lease(x, connection="t-good", ttl=5))["token"]


@test
def sigkill_leases_still_expire_on_time(x):
    live = [ok(lease(x, ttl=t)) for t in (2, 3, 4)]
    x.drain(100)
    x.c.procs["vault-broker"].send_signal(signal.SIGKILL)
    x.c.procs["vault-broker"].wait()
    _start(x)
    time.sleep(5.5)
    x.drain(500)
    leases = {l["lease_id"]: l for l in ok(x.call("vault.leases"))["leases"]}
    expired = {e["body"]["lease_id"]: e["body"] for e in x.events if e["type"] == "token.expired"}
    for b in live:
        l = leases[b["lease_id"]]
        assert l["state"] == "expired", l
        assert 0 <= l["expired_at"] - l["expires_at"] <= 1, l
        assert b["lease_id"] in expired, list(expired)


def _last_txn(x):
    """The vault store's last transaction id (mdb_stat -e, read-only)."""
    out = subprocess.run(["mdb_stat", "-e", os.path.join(x.c.dir, "data", "vault-broker")],
                         capture_output=True, text=True, check=True).stdout
    return int(next(line for line in out.splitlines() if "Last transaction ID" in line).split(":")[1])


def _drop_db(path, name):
    """Delete the named database name of the LMDB environment at path
    (the vault stopped), through liblmdb: the store as it was before."""
    import ctypes
    import ctypes.util
    lib = ctypes.CDLL(ctypes.util.find_library("lmdb") or "liblmdb.so.0")
    env, txn, dbi = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_uint()
    assert lib.mdb_env_create(ctypes.byref(env)) == 0
    try:
        assert lib.mdb_env_set_maxdbs(env, 64) == 0
        assert lib.mdb_env_set_mapsize(env, ctypes.c_size_t(1 << 30)) == 0
        assert lib.mdb_env_open(env, path.encode(), 0, 0o600) == 0
        assert lib.mdb_txn_begin(env, None, 0, ctypes.byref(txn)) == 0
        rc = lib.mdb_dbi_open(txn, name.encode(), 0, ctypes.byref(dbi))
        if rc == 0:
            assert lib.mdb_drop(txn, dbi, 1) == 0
        assert lib.mdb_txn_commit(txn) == 0
        return rc == 0
    finally:
        lib.mdb_env_close(env)


def _states(x):
    return {l["lease_id"]: l["state"] for l in ok(x.call("vault.leases"))["leases"]}


@test
def revoke_by_run_reads_its_index(x):
    if not shutil.which("mdb_stat"):
        print("# skip: lmdb-utils (mdb_stat) not installed")
        return
    mine = [ok(lease(x, run=RUN3, ttl=120))["lease_id"] for _ in range(2)]
    other = ok(lease(x, run=RUN4, ttl=120))["lease_id"]
    # nothing to revoke, the run's end recorded by the first: no commit (a
    # sweep may commit meanwhile: some round of five shows none; each
    # revoke committed, every round would)
    for _ in range(5):
        before = _last_txn(x)
        for _ in range(5):
            assert ok(x.call("vault.revoke", {"run": NO_RUN}))["revoked"] == []
        after = _last_txn(x)
        if after == before:
            break
    assert after == before, "vault.revoke of a run with no leases committed (%d -> %d)" % (before, after)
    # a lease already revoked: nothing to do, no commit either
    first = ok(x.call("vault.revoke", {"lease_id": mine[0]}))["revoked"]
    assert first == [mine[0]], first
    for _ in range(5):
        before = _last_txn(x)
        assert ok(x.call("vault.revoke", {"lease_id": mine[0]}))["revoked"] == []
        after = _last_txn(x)
        if after == before:
            break
    assert after == before, "revoking a revoked lease committed (%d -> %d)" % (before, after)
    # one run's leases, not another's
    rv = ok(x.call("vault.revoke", {"run": RUN3}))["revoked"]
    assert rv == [mine[1]], rv
    st = _states(x)
    assert st[mine[0]] == st[mine[1]] == "revoked" and st[other] == "active", st
    # a restart keeps the index
    _restart(x)
    later = ok(lease(x, run=RUN5, ttl=120))["lease_id"]
    assert ok(x.call("vault.revoke", {"run": RUN5}))["revoked"] == [later]
    assert _states(x)[other] == "active"
    # a store of before the index: rebuilt at start from the leases
    x.c.stop("vault-broker")
    assert _drop_db(os.path.join(x.c.dir, "data", "vault-broker"), "lease_run"), "no index database to drop"
    _start(x)
    assert ok(x.call("vault.revoke", {"run": RUN4}))["revoked"] == [other]
    leases = ok(x.call("vault.leases", {"run": RUN3}))["leases"]
    assert sorted(l["lease_id"] for l in leases) == sorted(mine), leases
    assert _states(x)[other] == "revoked"


@test
def no_lease_for_an_ended_run(x):
    """vault.revoke {run} ends the run for the vault: no lease is issued
    for it after, neither a late request nor one already on its way (its
    approval being asked when the revoke came), and a restart keeps it."""
    first = ok(lease(x, run=RUN6, ttl=120))["lease_id"]
    assert ok(x.call("vault.revoke", {"run": RUN6}))["revoked"] == [first]
    err(lease(x, run=RUN6, ttl=120), "conflict", "run_ended")
    assert [l["lease_id"] for l in ok(x.call("vault.leases", {"run": RUN6}))["leases"]] == [first]
    # on its way: the lease waits for its approval while the run ends
    hold, held = threading.Event(), threading.Event()
    x.ciba.approvals["appr-late"] = {"state": "approved", "run": RUN7, "node": "write_po",
                                     "hold": hold, "held": held}
    other = x.c.client("vault-broker", key_name="orchestrator-test", principal="svc:orchestrator")
    late = {}
    t = threading.Thread(target=lambda: late.update(r=other.call("vault.lease", {
        "run": RUN7, "node": "write_po", "connection": "sheets-approved", "scopes": [SHEETS_SCOPE],
        "node_key": x.node_pub, "approval": "appr-late", "ttl": 120}, timeout_ms=15000)))
    t.start()
    try:
        assert held.wait(10), "the vault did not ask for the approval"
        assert ok(x.call("vault.revoke", {"run": RUN7}))["revoked"] == []
    finally:
        hold.set()
        t.join(20)
        other.close()
    err(late["r"], "conflict", "run_ended")
    assert ok(x.call("vault.leases", {"run": RUN7}))["leases"] == []
    # the end is durable; another run leases as before
    _restart(x)
    err(lease(x, run=RUN6, ttl=120), "conflict", "run_ended")
    fresh = ok(lease(x, run=RUN8, ttl=120))["lease_id"]
    assert ok(x.call("vault.revoke", {"lease_id": fresh}))["revoked"] == [fresh]
    # kept run_end_keep_s, then forgotten by the sweep: the run may lease again
    try:
        _restart(x, env={"SANCTUM_VAULT_RUN_END_KEEP_S": "2"})
        assert ok(x.call("vault.revoke", {"run": RUN8}))["revoked"] == []
        err(lease(x, run=RUN8, ttl=120), "conflict", "run_ended")
        end = time.time() + 10
        while not lease(x, run=RUN8, ttl=120)["ok"]:
            assert time.time() < end, "the run's end was never forgotten"
            time.sleep(0.5)
        assert time.time() - (end - 10) >= 1, "forgotten before run_end_keep_s"
    finally:
        _restart(x)


def _data_files(x):
    for root, _, files in os.walk(os.path.join(x.c.dir, "data")):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                yield os.path.join(root, f), fh.read()


@test
def leased_tokens_nowhere_on_disk(x):
    """The recorded reply of a vault.lease (kept for retries) holds its
    token sealed: no LMDB page holds any leased token, or its signature,
    in plain text; a retry after a restart still gets the same token."""
    rid, frame = sc.SanctumClient.frame("vault.lease", {
        "run": RUN, "node": "write_po", "connection": "sheets", "scopes": [SHEETS_SCOPE],
        "node_key": x.node_pub, "ttl": 60})
    first = x.orch.call_raw(frame, rid, timeout_ms=5000)
    tok = ok(first)["token"]
    x.replies.append(first)
    x.c.stop("vault-broker")
    tokens = [r["body"]["token"] for r in x.replies if r.get("ok") and "token" in (r.get("body") or {})]
    assert len(tokens) >= 5, len(tokens)
    for path, data in _data_files(x):
        for t in tokens:
            assert t.encode() not in data and t.split(".")[-1].encode() not in data, (path, t[:20])
    _start(x)
    again = x.orch.call_raw(frame, rid, timeout_ms=5000)
    assert ok(again)["token"] == tok and again["body"]["lease_id"] == first["body"]["lease_id"], again


@test
def people_read_what_disconnect_revoke_and_rotate_did(x):
    """Without --json, disconnect, revoke and rotate-key say what they did in words, not JSON."""
    connect(x, "sheets-gone")
    r = x.c.ctl("vault", "disconnect", "sheets-gone")
    assert r.returncode == 0 and r.stdout.startswith("disconnected sheets-gone") and "{" not in r.stdout, \
        r.stdout + r.stderr
    r = x.c.ctl("vault", "disconnect", "sheets-gone")
    assert r.returncode == 1 and "not_found" in r.stderr and "sanctumctl vault connections" in r.stderr, r.stderr
    lid = ok(lease(x, ttl=30))["lease_id"]
    r = x.c.ctl("vault", "revoke", lid)
    assert r.returncode == 0 and r.stdout == "revoked %s\n" % lid, r.stdout + r.stderr
    r = x.c.ctl("vault", "revoke", lid)
    assert r.returncode == 0 and r.stdout.startswith("nothing to revoke: lease %s" % lid), r.stdout + r.stderr
    r = x.c.ctl("vault", "revoke", "--run", "short")
    assert r.returncode == 2 and "error invalid" in r.stderr and "sanctumctl run list" in r.stderr, \
        (r.returncode, r.stderr)
    r = x.c.ctl("--json", "vault", "rotate-key", "signing")
    old_kid = json.loads(r.stdout)["kid"]
    r = x.c.ctl("vault", "rotate-key", "signing")
    assert r.returncode == 0 and r.stdout.startswith("new signing key ") and ("the old one, %s," % old_kid) in r.stdout \
        and "{" not in r.stdout, r.stdout + r.stderr
    r = x.c.ctl("vault", "rotate-key", "masterkey")
    assert r.returncode == 2 and "master (the default) or signing" in r.stderr, (r.returncode, r.stderr)


@test
def ended_leases_are_forgotten_after_lease_keep_s(x):
    """An ended lease is listed for [vault] lease_keep_s, then the sweep
    forgets it (its record and its run's index entry): vault.leases no
    longer lists it, vault.revoke does not know it. An active lease stays;
    the approval a forgotten lease used stays used."""
    run, other = "01JDZ0000000000000000RUN10", "01JDZ0000000000000000RUN11"
    try:
        _restart(x, env={"SANCTUM_VAULT_LEASE_KEEP_S": "2"})
        x.ciba.approvals["appr-kept"] = {"state": "approved", "run": run, "node": "write_po"}
        gone = ok(lease(x, run=run, connection="sheets-approved", approval="appr-kept", ttl=120))["lease_id"]
        alive = ok(lease(x, run=other, ttl=300))["lease_id"]
        assert ok(x.call("vault.revoke", {"lease_id": gone}))["revoked"] == [gone]
        listed = ok(x.call("vault.leases", {"run": run}))["leases"]
        assert [(l["lease_id"], l["state"]) for l in listed] == [(gone, "revoked")], listed
        start = time.time()
        while ok(x.call("vault.leases", {"run": run}))["leases"]:
            assert time.time() - start < 10, "the ended lease was never forgotten"
            time.sleep(0.2)
        assert time.time() - start >= 1, "forgotten before lease_keep_s"
        everyone = [l["lease_id"] for l in ok(x.call("vault.leases", {}))["leases"]]
        assert gone not in everyone and alive in everyone, everyone
        err(x.call("vault.revoke", {"lease_id": gone}), "not_found")
        assert [l["state"] for l in ok(x.call("vault.leases", {"run": other}))["leases"]] == ["active"]
        err(lease(x, run=run, connection="sheets-approved", approval="appr-kept", ttl=120),
            "conflict", "approval_used")
        ops = x.ops()
        counters = ok(x.call("stats", {}, client=ops))["counters"]
        ops.close()
        assert counters.get("leases_forgotten", 0) >= 1, counters
        ok(x.call("vault.revoke", {"lease_id": alive}))
    finally:
        _restart(x)


@test
def ended_leases_of_a_store_from_before_their_index_are_forgotten(x):
    """A store written before ended leases were indexed by their end (its
    lease_ended database dropped here) holds an ended lease the sweep
    cannot find: at start the vault indexes it by the time it ended, and
    forgets it lease_keep_s after; an active lease stays."""
    run, other = "01JDZ0000000000000000RUN12", "01JDZ0000000000000000RUN13"
    gone = ok(lease(x, run=run, ttl=120))["lease_id"]
    alive = ok(lease(x, run=other, ttl=300))["lease_id"]
    assert ok(x.call("vault.revoke", {"lease_id": gone}))["revoked"] == [gone]
    x.c.stop("vault-broker")
    assert _drop_db(os.path.join(x.c.dir, "data", "vault-broker"), "lease_ended"), "no lease_ended to drop"
    try:
        _start(x, env={"SANCTUM_VAULT_LEASE_KEEP_S": "2"})
        start = time.time()
        while ok(x.call("vault.leases", {"run": run}))["leases"]:
            assert time.time() - start < 10, "the ended lease of the old store was never forgotten"
            time.sleep(0.2)
        assert [(l["lease_id"], l["state"]) for l in ok(x.call("vault.leases", {"run": other}))["leases"]] \
            == [(alive, "active")]
        err(x.call("vault.revoke", {"lease_id": gone}), "not_found")
        ok(x.call("vault.revoke", {"lease_id": alive}))
    finally:
        _restart(x)


@test
def canary_nowhere(x):
    x.c.stop("vault-broker")
    blob = x.c.read_logs()
    assert CANARY not in blob
    assert CANARY not in json.dumps(x.replies) and CANARY not in json.dumps(x.events)
    for root, _, files in os.walk(os.path.join(x.c.dir, "data")):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                data = fh.read()
            assert CANARY.encode() not in data, os.path.join(root, f)
    # the check can fail: the secret file holds it in plain text
    with open(x.secret_file, "rb") as fh:
        assert CANARY.encode() in fh.read()


def setup():
    x = Ctx()

    def reconnect():
        x.orch.close()
        x.orch = x.c.client("vault-broker", key_name="orchestrator-test", principal="svc:orchestrator")
        x.sub.close()
        pub, sec = sc.load_keys(x.c.keys, "tap-test")
        x.sub = sc.SanctumSubscriber(x.c.endpoints["vault-broker"][1],
                                     sc.server_key(x.c.keys, "vault-broker"), pub, sec)
        time.sleep(0.2)

    def ops():
        return x.c.client("vault-broker", key_name="ops-test", principal="ops:test")
    x.reconnect = reconnect
    x.ops = ops
    x.node_pub, x.node_jwk, x.node_priv = node_key()
    time.sleep(0.3)                 # the subscriber's handshake
    return x


def teardown(x):
    x.ciba.close()
    x.orch.close()
    x.sub.close()
    x.c.close()


if __name__ == "__main__":
    if not os.path.isdir(os.path.join(JS, "node_modules", "jose")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS, capture_output=True, timeout=180)
    sys.exit(run(setup, teardown))
