#!/usr/bin/env python3
"""Integration: run receipts from the real auditor, with the real
ciba-broker and vault-broker, and a stand-in orchestrator (fake_publisher:
the orchestrator's own keys and endpoints, its events as the contract names
them) until the orchestrator lands.

- a run with a two-level approval chain decided by enrolled devices
  (`sanctumctl approve`), a step intent appended, a lease issued, used and
  revoked: its receipt is issued (receipt.issued) once the lease is revoked,
  `sanctumctl receipt get` prints it, `receipt verify` checks it offline
  against the JWKS `receipt jwks` wrote and the auditor's HMAC key (both
  device signatures, every inclusion, the summary), the `jose` package
  verifies it, the token appears nowhere in it; `audit.gantt` orders the
  lease's life (requested < approved < issued <= used <= revoked);
- a run ended with a lease open: `audit.receipt` builds it on demand, it
  stays the same afterwards and across the auditor's SIGKILL (one
  receipt.issued);
- an entry changed in the auditor's store (mdb_dump / mdb_load) before the
  run ends: `receipt verify` exits 3 naming that entry;
- events the publisher trimmed before the auditor stored them: the receipt
  lists the gap;
- errors: unknown run `not_found`, a run not ended `conflict`.
"""
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from cluster import ROOT, Cluster  # noqa: E402
from fake_publisher import FakePublisher, synthetic_run  # noqa: E402
from harness import run, test  # noqa: E402
from receipt_check import check_receipt  # noqa: E402
import sanctum_client as sc  # noqa: E402

SCOPE = "https://www.googleapis.com/auth/spreadsheets"


def body(r):
    assert r is not None, "no reply"
    assert r["ok"], r.get("error")
    return r["body"]


def payload_of(jws):
    p = jws.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))


def node_key():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives import serialization
    pub = Ed25519PrivateKey.generate().public_key().public_bytes(serialization.Encoding.Raw,
                                                                   serialization.PublicFormat.Raw)
    return base64.urlsafe_b64encode(pub).rstrip(b"=").decode()


class Ctx:
    def __init__(self):
        self.c = Cluster(services=["auditor", "ciba-broker", "vault-broker"])
        with open(self.c.conf) as f:
            text = f.read()
        text = text.replace("[auditor]\n", "[auditor]\nreplay_interval_ms = 200\nreceipt_wait_ms = 20000\n", 1)
        text = text.replace("[ciba]\n", "[ciba]\nescalation_scan_ms = 50\n", 1)
        with open(self.c.conf, "w") as f:
            f.write(text)
        self.orch = FakePublisher(self.c)
        self.c.start_all()
        self.ciba = self.c.client("ciba-broker", key_name="orch", principal="svc:orchestrator")
        self.vault = self.c.client("vault-broker", key_name="orch", principal="svc:orchestrator")
        self.audit = self.c.client("auditor", key_name="orch", principal="svc:orchestrator")
        secret = os.path.join(self.c.dir, "sheets.secret")
        with open(secret, "w") as f:
            f.write("refresh-token-for-the-test\n")
        r = self.c.ctl("--json", "vault", "connect", "sheets", "--kind", "google-sheets",
                       "--scopes", SCOPE, "--secret-file", secret, "--approval")
        assert r.returncode == 0, r.stdout + r.stderr
        for user in ("carol", "victor"):
            r = self.c.ctl("--json", "device", "enroll", user)
            assert r.returncode == 0, r.stdout + r.stderr
        self.node_key = node_key()
        self.jwks = os.path.join(self.c.dir, "jwks.json")
        r = self.c.ctl("receipt", "jwks", "--out", self.jwks)
        assert r.returncode == 0, r.stdout + r.stderr
        self.hmac_key = os.path.join(self.c.dir, "data", "auditor", "keys", "hmac.key")

    def reconnect(self):
        self.audit.close()
        self.audit = self.c.client("auditor", key_name="orch", principal="svc:orchestrator")

    def approve_chain(self, run_id, node):
        chain = [{"approver": "user:carol", "escalate_after": 0}, {"approver": "user:victor", "escalate_after": 0}]
        aid = body(self.ciba.call("ciba.authorize", {"chain": chain, "binding_message": "PO-7 USD 520,000",
                                                     "run": run_id, "node": node}, timeout_ms=5000))["approval_id"]
        for i, user in enumerate(("carol", "victor")):
            deadline = time.time() + 5
            while True:
                lvl = body(self.ciba.call("ciba.status", {"approval_id": aid}, timeout_ms=5000))["levels"][i]
                if lvl.get("auth_req_id") and lvl["state"] == "pending" and not lvl.get("queued"):
                    break
                assert time.time() < deadline, "level %d never asked" % i
                time.sleep(0.05)
            r = self.c.ctl("approve", lvl["auth_req_id"], "--as", user)
            assert r.returncode == 0, r.stdout + r.stderr
        deadline = time.time() + 5
        while body(self.ciba.call("ciba.status", {"approval_id": aid}, timeout_ms=5000))["state"] != "approved":
            assert time.time() < deadline, "the chain never completed"
            time.sleep(0.05)
        return aid

    def lease(self, run_id, node, aid):
        return body(self.vault.call("vault.lease", {"run": run_id, "node": node, "connection": "sheets",
                                                    "scopes": [SCOPE], "ttl": 300, "approval": aid,
                                                    "node_key": self.node_key}, timeout_ms=5000))

    def wait_receipt(self, run_id, timeout=10):
        deadline = time.time() + timeout
        while True:
            r = self.audit.call("audit.receipt", {"run": run_id}, timeout_ms=5000)
            if r and r["ok"]:
                return r["body"]
            assert time.time() < deadline, "no receipt for %s: %s" % (run_id, r)
            time.sleep(0.1)

    def receipt_file(self, run_id, name):
        r = self.c.ctl("receipt", "get", run_id)
        assert r.returncode == 0, r.stdout + r.stderr
        path = os.path.join(self.c.dir, name)
        with open(path, "w") as f:
            f.write(r.stdout)
        return path

    def verify(self, path, *extra):
        return self.c.ctl("receipt", "verify", path, "--jwks", self.jwks, *extra)

    def auditor_events(self, type_):
        out, frm = [], 1
        while True:
            b = body(self.audit.call("events.replay", {"from_seq": frm}, timeout_ms=5000))
            out += [e for e in b["events"] if e["type"] == type_]
            if "next_seq" not in b:
                return out
            frm = b["next_seq"]

    def close(self):
        for cl in (self.ciba, self.vault, self.audit):
            cl.close()
        self.orch.close()
        self.c.close()


@test
def approved_run_receipt_verifies_everywhere(x):
    run_id = sc.ulid()
    node = "write_po"
    o = x.orch
    o.publish("run.started", {"run": run_id, "workflow": "procurement", "workflow_hash": "sha256:" + "1" * 64,
                              "input_digest": "sha256:" + "2" * 64, "principal": "ext:erp-gateway",
                              "started_at": int(time.time() * 1e6)})
    o.publish("node.started", {"run": run_id, "node": "draft", "kind": "agent", "attempt": 1})
    o.publish("node.finished", {"run": run_id, "node": "draft", "kind": "agent", "attempt": 1, "outcome": "ok"})
    o.publish("node.started", {"run": run_id, "node": node, "kind": "tool", "attempt": 1})
    aid = x.approve_chain(run_id, node)
    granted = x.lease(run_id, node, aid)
    token = granted["token"]
    intent = body(x.audit.call("audit.append", {"entry": {
        "kind": "step.intent", "run": run_id, "node": node, "attempt": 1, "connector": "sheets.append",
        "connection": "sheets", "action": "purchase_order.create", "resource": "purchase_order:PO-7",
        "approval": aid, "lease": granted["lease_id"], "args_digest": "sha256:" + "3" * 64}}, timeout_ms=5000))
    body(x.vault.call("vault.token_used", {"lease_id": granted["lease_id"], "target": "sheets"}, timeout_ms=5000))
    o.publish("node.finished", {"run": run_id, "node": node, "kind": "tool", "attempt": 1, "outcome": "ok",
                                "decision": {"result": "approval_required", "chain": ["user:carol", "user:victor"]},
                                "approval": aid, "lease": granted["lease_id"], "status": 200,
                                "audit_index": intent["index"]})
    o.publish("run.completed", {"run": run_id, "finished_at": int(time.time() * 1e6)})
    time.sleep(0.5)
    # the lease is still open: the receipt waits for its revocation (up to
    # receipt_wait_ms, 20 s here: a slow machine must not build it first)
    body(x.vault.call("vault.revoke", {"run": run_id}, timeout_ms=5000))
    stored = x.wait_receipt(run_id)
    assert stored["state"] == "COMPLETED" and stored["run"] == run_id, stored
    p = payload_of(stored["jws"])
    assert p["workflow"] == "procurement" and p["input_digest"] == "sha256:" + "2" * 64, p
    assert [s["node"] for s in p["steps"]] == ["draft", node], p["steps"]
    wp = p["steps"][1]
    assert wp["decision"]["result"] == "approval_required" and wp["approval"] == aid, wp
    assert wp["intent"]["index"] == intent["index"] and wp["intent"]["connector"] == "sheets.append", wp
    assert len(p["approvals"]) == 1 and p["approvals"][0]["outcome"] == "approved", p["approvals"]
    levels = p["approvals"][0]["levels"]
    assert [lv["approver"] for lv in levels] == ["user:carol", "user:victor"], levels
    assert all(lv["signature"] and lv["device_key"] for lv in levels), levels
    lease = p["leases"][0]
    assert lease["lease_id"] == granted["lease_id"] and lease["connection"] == "sheets", lease
    assert lease["scopes"] == [SCOPE] and lease["revoked_at"] and len(lease["used_at"]) == 1, lease
    assert lease["issued_at"] <= lease["used_at"][0] <= lease["revoked_at"], lease
    assert p["gaps"] == [], p["gaps"]
    # the token is nowhere: not in the receipt, not in the log's entries, not in the logs
    assert token not in stored["jws"] and token not in json.dumps(p), "the token is in the receipt"
    assert token not in x.c.read_logs()
    # checked here too, sharing no code with the auditor (receipt_check.py)
    with open(x.jwks) as f, open(x.hmac_key, "rb") as k:
        assert check_receipt(stored["jws"], json.load(f), k.read()) == p
    # sanctumctl: get, verify offline with the JWKS and the HMAC key
    path = x.receipt_file(run_id, "good.jws")
    r = x.verify(path, "--hmac-key", x.hmac_key)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("Ed25519 signature by device") == 2 and "HMAC-SHA256 tag" in r.stdout, r.stdout
    assert r.stdout.strip().endswith("verified"), r.stdout
    # receipt.issued, once
    issued = [e for e in x.auditor_events("receipt.issued") if e["body"]["run"] == run_id]
    assert len(issued) == 1 and issued[0]["body"]["hmac"] == stored["hmac"], issued
    # jose
    if shutil.which("node") and os.path.isdir(os.path.join(ROOT, "tests", "js", "node_modules", "jose")):
        with open(x.jwks) as f:
            req = {"jwks": json.load(f), "jws": stored["jws"], "hmac": stored["hmac"]}
        with open(x.hmac_key, "rb") as f:
            req["hmac_key"] = f.read().hex()
        r = subprocess.run(["node", os.path.join(ROOT, "tests", "js", "verify.mjs")], input=json.dumps(req),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert json.loads(r.stdout)["payload"]["run"] == run_id
    else:
        print("# skip jose: node or tests/js/node_modules missing")
    # the gantt: one time axis
    r = x.c.ctl("--json", "receipt", "gantt", run_id)
    assert r.returncode == 0, r.stdout + r.stderr
    g = json.loads(r.stdout)
    gl = g["leases"][0]
    assert gl["end"] == "revoked", gl
    assert gl["requested"] < gl["approved"] < gl["issued"] <= gl["used"][0] <= gl["ended"], gl
    assert g["t0"] <= gl["requested"] and g["t1"] >= gl["ended"], g
    assert [s["node"] for s in g["steps"]] == ["draft", node] and g["state"] == "COMPLETED", g


@test
def open_lease_receipt_on_demand_stays_across_a_kill(x):
    run_id = sc.ulid()
    node = "send_mail"
    x.orch.publish("run.started", {"run": run_id, "workflow": "mail"})
    x.orch.publish("node.started", {"run": run_id, "node": node, "kind": "tool", "attempt": 1})
    aid = x.approve_chain(run_id, node)
    granted = x.lease(run_id, node, aid)
    x.orch.publish("run.failed", {"run": run_id, "reason": "upstream said no", "node": node})
    deadline = time.time() + 5
    while True:                      # the terminal event stored: asked now, built now
        r = x.audit.call("audit.receipt", {"run": run_id}, timeout_ms=5000)
        if r["ok"]:
            break
        assert r["error"]["code"] == "conflict" and time.time() < deadline, r
        time.sleep(0.05)
    first = r["body"]
    p = payload_of(first["jws"])
    assert p["state"] == "FAILED" and p["reason"] == "upstream said no", p
    assert p["leases"][0]["lease_id"] == granted["lease_id"] and "revoked_at" not in p["leases"][0], p["leases"]
    time.sleep(1.0)                  # the timer must not build another
    assert body(x.audit.call("audit.receipt", {"run": run_id}, timeout_ms=5000))["jws"] == first["jws"]
    x.c.stop("auditor", sig=signal.SIGKILL)
    x.c.start("auditor")
    x.c.wait_healthy(["auditor"])
    x.reconnect()
    assert x.wait_receipt(run_id)["jws"] == first["jws"]
    issued = [e for e in x.auditor_events("receipt.issued") if e["body"]["run"] == run_id]
    assert len(issued) == 1, issued
    path = os.path.join(x.c.dir, "failed.json")
    with open(path, "w") as f:
        json.dump(first, f)          # the audit.receipt reply as JSON is read too
    r = x.verify(path)
    assert r.returncode == 0, r.stdout + r.stderr


@test
def entry_changed_in_the_store_fails_verification(x):
    if not (shutil.which("mdb_dump") and shutil.which("mdb_load")):
        print("# skip: lmdb-utils (mdb_dump, mdb_load) not installed")
        return
    run_id = sc.ulid()
    synthetic_run(x.orch, run_id, terminal=None, nodes=(("draft", "agent"), ("post", "tool")))
    deadline = time.time() + 5
    while True:
        g = x.audit.call("audit.gantt", {"run": run_id}, timeout_ms=5000)
        if g["ok"] and len(g["body"]["steps"]) == 2 and g["body"]["steps"][1]["end"]:
            break
        assert time.time() < deadline, g
        time.sleep(0.1)
    x.c.stop("auditor")
    db = os.path.join(x.c.dir, "data", "auditor")
    dump = subprocess.run(["mdb_dump", "-s", "audit_entries", db], capture_output=True, text=True, check=True)
    lines = [line for line in dump.stdout.split("\n") if not line.startswith("db_pagesize=")]
    victim = None
    for i, line in enumerate(lines):
        if line.startswith(" ") and i > 0 and lines[i - 1].startswith(" "):
            value = bytes.fromhex(line.strip())
            if run_id.encode() in value and b'"node":"post"' in value and b"node.finished" in value:
                victim = int(lines[i - 1].strip(), 16)
                lines[i] = " " + value.replace(b'"outcome":"ok"', b'"outcome":"OK"').hex()
                break
    assert victim is not None, "the entry to change was not found"
    subprocess.run(["mdb_load", "-s", "audit_entries", db], input="\n".join(lines), text=True, check=True)
    x.c.start("auditor")
    x.c.wait_healthy(["auditor"])
    x.reconnect()
    x.orch.publish("run.completed", {"run": run_id})
    x.wait_receipt(run_id)
    path = x.receipt_file(run_id, "changed.jws")
    with open(x.jwks) as f, open(path) as r:
        try:
            check_receipt(r.read().strip(), json.load(f))
            raise RuntimeError("the changed entry passed")
        except AssertionError as e:
            assert str(e) == "entry %d is not in the signed tree" % victim, e
    r = x.verify(path)
    assert r.returncode == 3, r.stdout + r.stderr
    last = r.stdout.strip().split("\n")[-1]
    assert last.startswith("NOT VERIFIED: entry %d (node.finished): its bytes are in the signed tree" % victim), last
    assert r.stdout.count("FAILED") == 1, r.stdout


@test
def trimmed_events_show_as_a_gap(x):
    run_id = sc.ulid()
    x.orch.publish("run.started", {"run": run_id, "workflow": "lossy"})
    deadline = time.time() + 5
    while not x.audit.call("audit.gantt", {"run": run_id}, timeout_ms=5000)["ok"]:
        assert time.time() < deadline
        time.sleep(0.1)
    x.c.stop("auditor")
    lost_from = x.orch.last_seq() + 1
    x.orch.publish("node.started", {"run": run_id, "node": "a", "kind": "tool", "attempt": 1})
    x.orch.publish("node.finished", {"run": run_id, "node": "a", "kind": "tool", "attempt": 1, "outcome": "ok"})
    lost_to = x.orch.last_seq()
    x.orch.trim(lost_to)
    x.orch.publish("run.completed", {"run": run_id})
    x.c.start("auditor")
    x.c.wait_healthy(["auditor"])
    x.reconnect()
    stored = x.wait_receipt(run_id)
    p = payload_of(stored["jws"])
    gaps = [g for g in p["gaps"] if g["pub"] == "svc:orchestrator"]
    assert [(g["from_seq"], g["to_seq"]) for g in gaps] == [(lost_from, lost_to)], p["gaps"]
    assert p["steps"] == [] and p["state"] == "COMPLETED", p
    with open(x.jwks) as f:
        check_receipt(stored["jws"], json.load(f))
    r = x.verify(x.receipt_file(run_id, "gap.jws"))
    assert r.returncode == 0, r.stdout + r.stderr


@test
def unknown_and_unended_runs(x):
    r = x.audit.call("audit.receipt", {"run": sc.ulid()}, timeout_ms=5000)
    assert not r["ok"] and r["error"]["code"] == "not_found", r
    run_id = sc.ulid()
    x.orch.publish("run.started", {"run": run_id, "workflow": "pending"})
    deadline = time.time() + 5
    while True:
        r = x.audit.call("audit.receipt", {"run": run_id}, timeout_ms=5000)
        if r["error"]["code"] == "conflict":
            break
        assert r["error"]["code"] == "not_found" and time.time() < deadline, r
        time.sleep(0.1)
    g = body(x.audit.call("audit.gantt", {"run": run_id}, timeout_ms=5000))
    assert g["state"] is None and g["steps"] == [], g
    r = x.c.ctl("receipt", "get", run_id)
    assert r.returncode == 1 and "conflict" in r.stderr, (r.stdout, r.stderr)
    r = x.audit.call("audit.gantt", {"run": "short"}, timeout_ms=5000)
    assert not r["ok"] and r["error"]["code"] == "invalid", r


if __name__ == "__main__":
    sys.exit(run(Ctx, Ctx.close))
