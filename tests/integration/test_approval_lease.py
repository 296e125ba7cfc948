#!/usr/bin/env python3
"""Integration: an approval from the real ciba-broker backs a lease from the
real vault-broker — the two services end to end, each its own process.

- a two-level chain (manager, then VP) asked with ciba.authorize for one
  run and node; both approvers' devices enrolled with `sanctumctl device
  enroll`, and each level approved with `sanctumctl approve --as USER`
  (signed by the device, as an approver would);
- while the chain is pending (one level approved), the vault refuses the
  lease (`approval_pending`); once both approved, it grants one lease for
  exactly that run and node, and refuses a second lease on the same
  approval (`approval_used`) and a lease for another node
  (`approval_mismatch`);
- an approval the vault has seen published approved (the ciba-broker's
  approval.completed, which it follows) backs a lease without a
  ciba.status (its stats: approvals_seen, not approvals_asked); one
  approved for another node is asked about all the same, and refused;
- a chain denied at its first level: the vault refuses (`approval_denied`);
  an approval the broker does not know, or not of an approval id's form:
  `approval_unknown`.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from cluster import Cluster  # noqa: E402
import sanctum_client  # noqa: E402
from harness import run, test  # noqa: E402

RUN = "01JDZ0000000000000000RUN07"
NODE = "write_po"
SCOPE = "https://www.googleapis.com/auth/spreadsheets"


def node_key():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives import serialization
    import base64
    pub = Ed25519PrivateKey.generate().public_key().public_bytes(serialization.Encoding.Raw,
                                                                   serialization.PublicFormat.Raw)
    return base64.urlsafe_b64encode(pub).rstrip(b"=").decode()


def body(r):
    assert r is not None, "no reply"
    assert r["ok"], r.get("error")
    return r["body"]


def refused(r, code, reason):
    assert r is not None, "no reply"
    assert not r["ok"], r
    assert r["error"]["code"] == code and r["error"].get("reason") == reason, r["error"]


class Ctx:
    def __init__(self):
        self.c = Cluster(services=["ciba-broker", "vault-broker"])
        with open(self.c.conf) as f:
            text = f.read()
        with open(self.c.conf, "w") as f:
            f.write(text.replace("[ciba]\n", "[ciba]\nescalation_scan_ms = 50\n", 1))
        self.c.start_all()
        self.c.wait_healthy(["ciba-broker", "vault-broker"])
        self.ciba = self.c.client("ciba-broker", key_name="orch", principal="svc:orchestrator")
        self.vault = self.c.client("vault-broker", key_name="orch", principal="svc:orchestrator")
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
        public, secret = self.c.client_key("ops-stats", "ops:stats")
        self.ops = sanctum_client.SanctumClient(self.c.endpoints["vault-broker"][0],
                                                sanctum_client.server_key(self.c.keys, "vault-broker"),
                                                public, secret)

    def counters(self):
        return body(self.ops.call("stats", {}, timeout_ms=5000))["counters"]

    def authorize(self, node=NODE):
        chain = [{"approver": "user:carol", "escalate_after": 0},
                 {"approver": "user:victor", "escalate_after": 0}]
        return body(self.ciba.call("ciba.authorize", {"chain": chain, "binding_message": "PO-7 USD 520,000",
                                                      "run": RUN, "node": node}, timeout_ms=5000))

    def level_id(self, approval_id, i, timeout=5):
        """The auth_req_id of level i once it is being asked."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            st = body(self.ciba.call("ciba.status", {"approval_id": approval_id}, timeout_ms=5000))
            lvl = st["levels"][i]
            if lvl.get("auth_req_id") and lvl["state"] == "pending" and not lvl.get("queued"):
                return lvl["auth_req_id"]
            time.sleep(0.05)
        raise AssertionError("level %d never asked: %s" % (i, st))

    def ctl_decide(self, verb, auth_req_id, user):
        r = self.c.ctl(verb, auth_req_id, "--as", user)
        assert r.returncode == 0, r.stdout + r.stderr

    def lease(self, approval_id, node=NODE):
        return self.vault.call("vault.lease", {"run": RUN, "node": node, "connection": "sheets",
                                               "scopes": [SCOPE], "ttl": 300, "approval": approval_id,
                                               "node_key": self.node_key}, timeout_ms=5000)

    def close(self):
        self.ciba.close()
        self.vault.close()
        self.ops.close()
        self.c.close()


@test
def approved_chain_backs_exactly_one_lease(x):
    a = x.authorize()
    aid = a["approval_id"]
    refused(x.lease(aid), "forbidden", "approval_pending")
    x.ctl_decide("approve", x.level_id(aid, 0), "carol")
    # the manager alone is not the chain: still pending for the vault
    refused(x.lease(aid), "forbidden", "approval_pending")
    x.ctl_decide("approve", x.level_id(aid, 1), "victor")
    deadline = time.time() + 5
    while body(x.ciba.call("ciba.status", {"approval_id": aid}, timeout_ms=5000))["state"] != "approved":
        assert time.time() < deadline, "the chain never completed"
        time.sleep(0.05)
    granted = body(x.lease(aid))
    assert granted["lease_id"] and granted["token"] and granted["scopes"] == [SCOPE], granted
    refused(x.lease(aid), "conflict", "approval_used")
    r = x.c.ctl("--json", "vault", "leases", "--run", RUN)
    assert r.returncode == 0, r.stderr
    leases = json.loads(r.stdout)["leases"]
    assert [l["lease_id"] for l in leases] == [granted["lease_id"]], leases
    assert leases[0]["node"] == NODE and leases[0]["state"] == "active", leases


@test
def an_approval_seen_published_needs_no_status(x):
    aid = x.authorize(node="append_row")["approval_id"]
    x.ctl_decide("approve", x.level_id(aid, 0), "carol")
    x.ctl_decide("approve", x.level_id(aid, 1), "victor")
    time.sleep(0.5)                     # approval.completed reaches the vault
    before = x.counters()
    granted = body(x.lease(aid, node="append_row"))
    assert granted["lease_id"] and granted["token"], granted
    after = x.counters()
    assert after.get("approvals_seen", 0) == before.get("approvals_seen", 0) + 1, (before, after)
    assert after.get("approvals_asked", 0) == before.get("approvals_asked", 0), (before, after)
    refused(x.lease(aid, node="append_row"), "conflict", "approval_used")


@test
def approval_for_another_node_is_refused(x):
    aid = x.authorize(node="send_mail")["approval_id"]
    x.ctl_decide("approve", x.level_id(aid, 0), "carol")
    x.ctl_decide("approve", x.level_id(aid, 1), "victor")
    time.sleep(0.2)
    before = x.counters()
    refused(x.lease(aid, node=NODE), "forbidden", "approval_mismatch")
    after = x.counters()                # seen for send_mail: asked all the same
    assert after.get("approvals_asked", 0) == before.get("approvals_asked", 0) + 1, (before, after)


@test
def denied_chain_is_refused(x):
    aid = x.authorize()["approval_id"]
    x.ctl_decide("deny", x.level_id(aid, 0), "carol")
    time.sleep(0.2)
    refused(x.lease(aid), "forbidden", "approval_denied")


@test
def unknown_or_malformed_approval_is_refused(x):
    refused(x.lease("01JDZ00000000000000000NONE"), "forbidden", "approval_unknown")
    refused(x.lease("not-an-approval-id"), "forbidden", "approval_unknown")


if __name__ == "__main__":
    sys.exit(run(Ctx, Ctx.close))
