"""orch_cluster — a whole Sanctum for the orchestrator's tests: every daemon
but telemetry as its own process, the procurement example loaded (model,
tuples, policy, the workflow), approver devices for user:carol and
user:victor enrolled, sandbox connections in the vault.
"""
import json
import os
import shutil
import signal
import time

from cluster import ROOT, Cluster
from fake_publisher import FakePublisher

EX = os.path.join(ROOT, "ops", "examples")
SERVICES = ["authz", "auditor", "vault-broker", "ciba-broker", "sandbox", "orchestrator"]
SHEETS = "https://www.googleapis.com/auth/spreadsheets"
GMAIL = "https://www.googleapis.com/auth/gmail.send"
TERMINAL = ("COMPLETED", "REJECTED", "FAILED", "CANCELLED")


class OrchCluster:
    """fake_ciba: no ciba-broker process; a FakePublisher binds its
    endpoints instead (self.fake_ciba), for a test to answer its requests
    and publish its events (no approver devices then)."""

    def __init__(self, orch_lines="", workflows=None, fake_ciba=False):
        self.c = Cluster(services=SERVICES)
        self.fake_ciba = None
        self.wf_dir = os.path.join(self.c.dir, "workflows")
        os.makedirs(self.wf_dir)
        shutil.copy(os.path.join(EX, "workflows", "procurement.json"), self.wf_dir)
        for name, text in (workflows or {}).items():
            with open(os.path.join(self.wf_dir, name), "w") as f:
                f.write(text)
        with open(self.c.conf) as f:
            text = f.read()
        text = text.replace("[ciba]\n", "[ciba]\nescalation_scan_ms = 50\n", 1)
        text = text.replace("[orchestrator]\n", "[orchestrator]\nworkflows = %s\nretry_base_ms = 50\n"
                            "audit_retry_ms = 200\n%s" % (self.wf_dir, orch_lines), 1)
        with open(self.c.conf, "w") as f:
            f.write(text)
        peers = [s for s in SERVICES[:-1] if not (fake_ciba and s == "ciba-broker")]
        if fake_ciba:
            self.fake_ciba = FakePublisher(self.c, service="ciba-broker")
        for s in peers:
            self.c.start(s)
        self.c.wait_healthy(peers)
        self.ok("authz", "model", "write", os.path.join(EX, "procurement", "model.fga"))
        self.ok("authz", "write", "--file", os.path.join(EX, "procurement", "tuples.json"))
        self.ok("authz", "policy", "write", os.path.join(EX, "procurement", "policy.json"))
        for name, kind, scope in (("sheets", "google-sheets", SHEETS), ("gmail", "gmail", GMAIL)):
            self.ok("vault", "connect", name, "--kind", kind, "--scopes", scope)
        for user in ("carol", "victor") if not fake_ciba else ():
            self.ok("device", "enroll", user)
        self.start_orch()
        self.ops = self.c.client("orchestrator", key_name="ops-test", principal="ops:tester")

    def ok(self, *args):
        r = self.c.ctl(*args)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r

    def start_orch(self):
        self.c.start("orchestrator")
        self.c.wait_healthy(["orchestrator"])

    def kill(self, name):
        self.c.stop(name, sig=signal.SIGKILL)

    def call(self, type_, body, timeout_ms=10000):
        r = self.ops.call(type_, body, timeout_ms=timeout_ms)
        assert r is not None, "no reply to %s" % type_
        return r

    def body(self, type_, body, timeout_ms=10000):
        r = self.call(type_, body, timeout_ms)
        assert r["ok"], (type_, r.get("error"))
        return r["body"]

    def start_run(self, amount, vendor="Acme", cost_center="engineering", workflow="procurement"):
        return self.body("run.start", {"workflow": workflow, "input": {"vendor": vendor, "amount": amount,
                                                                       "cost_center": cost_center}})["run"]

    def get(self, run):
        return self.body("run.get", {"run": run})

    def wait_state(self, run, states, timeout=20):
        deadline = time.time() + timeout
        while True:
            r = self.call("run.wait", {"run": run, "timeout_ms": 2000}, timeout_ms=6000)
            if r["ok"] and r["body"]["state"] in states:
                return r["body"]
            if time.time() > deadline:
                raise AssertionError("run %s never reached %s: %s" % (run, states, r))
            time.sleep(0.05)

    def pending_for(self, user, run, timeout=10):
        """The auth_req_id asked of user for run, once it is decidable."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            rc, out = self.c.ctl_json("approvals", "--as", user)
            for a in (out or {}).get("approvals", []):
                if a.get("run") == run:
                    return a["auth_req_id"]
            time.sleep(0.1)
        raise AssertionError("nothing asked of %s for run %s" % (user, run))

    def approve(self, user, run, verb="approve"):
        self.ok(verb, self.pending_for(user, run), "--as", user)

    def rows(self, sheet="erp"):
        rc, out = self.c.ctl_json("sandbox", "rows", sheet)
        return (out or {}).get("rows", []) if rc == 0 else []

    def audit_entries(self):
        """Every entry of the audit log, parsed."""
        client = self.c.client("auditor", key_name="ops-audit", principal="ops:auditor-test")
        try:
            head = client.call("audit.head", {}, timeout_ms=5000)
            size = head["body"]["size"]
            out = []
            for i in range(size):
                r = client.call("audit.entry", {"index": i}, timeout_ms=5000)
                e = r["body"].get("entry")
                out.append(json.loads(e) if isinstance(e, str) else e)
            return out
        finally:
            client.close()

    def checked_receipt(self, run, timeout=30):
        """Run run's receipt once the auditor has it, checked (receipt_check)."""
        from receipt_check import check_receipt, wait_receipt
        client = self.c.client("auditor", key_name="ops-audit", principal="ops:auditor-test")
        try:
            jwks = client.call("audit.jwks", {}, timeout_ms=5000)["body"]
            return check_receipt(wait_receipt(client, run, timeout=timeout)["jws"], jwks)
        finally:
            client.close()

    def close(self):
        self.ops.close()
        self.c.close()
        if self.fake_ciba:
            self.fake_ciba.close()
