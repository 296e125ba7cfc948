#!/usr/bin/env python3
"""Integration: the orchestrator survives kill -9 at each step, and a step
waits (fail-closed) while the auditor is down.

- killed while a run is PAUSED for approval; both levels approved while it
  is down; restarted: it reconciles (ciba.status / the follower's replay)
  and the run completes with exactly one row;
- killed after ciba.authorize was sent and before the pause was
  checkpointed (the ciba-broker stopped with SIGSTOP holds the request,
  and stores its approval once it goes on): restarted, the step asks
  again under the same idempotency key and pauses for that same approval;
  exactly one approval for the run, approvers asked once, one row;
- killed after the lease, while the step intent waits on a stopped
  auditor: restarted, the step leases again (the approval's lease found and
  renewed) and completes, one row;
- killed with the lease in flight (asked from the approvals follower
  while its transaction commits; the vault stopped with SIGSTOP holds the
  request, and makes the lease once it goes on, its answer lost):
  restarted, the step leases again, finds that lease (approval_used) and
  renews it, completes, one row;
- killed in the middle of the tool call (the sandbox stopped with SIGSTOP
  so the call hangs), after the step intent was stored: restarted, the
  intent is appended again and the call goes again under the same
  idempotency key: exactly one row, and the run's receipt (checked
  independently) holds the step's intent once;
- the auditor down: the run PAUSES with reason audit_unavailable and
  nothing is written; the auditor back: the run resumes and completes;
- the audit log has every run's step intents, each once, and terminal
  event.
"""
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import run, test  # noqa: E402
from orch_cluster import OrchCluster, TERMINAL  # noqa: E402


class Ctx(OrchCluster):
    def __init__(self):
        super().__init__()
        self.runs = {}          # run id -> amount

    def rows_with(self, amount):
        return [r for r in self.rows() if len(r) > 2 and r[2] == amount]

    def wait_node_phase(self, rid, pred, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            v = self.get(rid)
            if pred(v):
                return v
            time.sleep(0.05)
        raise AssertionError("run %s never got there: %s" % (rid, self.get(rid)))

    def sig(self, name, s):
        os.kill(self.c.procs[name].pid, s)

    def approvals_of(self, rid):
        """The ciba-broker's approvals for run rid (ciba.list {run})."""
        client = self.c.client("ciba-broker", key_name="ops-ciba", principal="ops:ciba-test")
        try:
            r = client.call("ciba.list", {"run": rid}, timeout_ms=5000)
            assert r and r["ok"], r
            return r["body"]["approvals"]
        finally:
            client.close()

    def intents_in_receipt(self, rid, node):
        """The step intents for node in run rid's receipt, verified."""
        p = self.checked_receipt(rid)
        out = []
        for e in p["entries"]:
            entry = json.loads(e["entry"])
            if entry["kind"] == "append" and entry["entry"].get("kind") == "step.intent" \
                    and entry["entry"].get("node") == node:
                out.append(e["index"])
        return out, [s for s in p["steps"] if s.get("node") == node]


@test
def killed_while_paused_then_approved_while_down(x):
    rid = x.start_run(510001)
    x.runs[rid] = 510001
    x.wait_state(rid, ("PAUSED",))
    carol = x.pending_for("carol", rid)
    x.kill("orchestrator")
    x.ok("approve", carol, "--as", "carol")
    x.approve("victor", rid)
    time.sleep(0.3)
    x.start_orch()
    v = x.wait_state(rid, TERMINAL, timeout=30)
    assert v["state"] == "COMPLETED", v
    assert len(x.rows_with(510001)) == 1, x.rows()


@test
def killed_after_the_authorize_was_sent(x):
    x.sig("ciba-broker", signal.SIGSTOP)
    try:
        rid = x.start_run(510003)
        x.runs[rid] = 510003
        # decided (authz answers) and ciba.authorize sent: the stopped
        # broker holds it unanswered, so the run is not paused (killed
        # well before the call's deadline, rpc_timeout_ms = 1000 here)
        time.sleep(0.5)
        v = x.get(rid)
        assert v["state"] == "RUNNING" and not v.get("approval"), v
        x.kill("orchestrator")
    finally:
        x.sig("ciba-broker", signal.SIGCONT)
    # the broker goes on and stores the approval the dead orchestrator asked for
    deadline = time.time() + 10
    while not x.approvals_of(rid):
        assert time.time() < deadline, "the first ciba.authorize never reached the broker"
        time.sleep(0.1)
    first = x.approvals_of(rid)
    assert len(first) == 1, first
    x.start_orch()
    v = x.wait_state(rid, ("PAUSED",), timeout=20)
    assert v["approval"]["approval_id"] == first[0]["approval_id"], (v, first)
    x.approve("carol", rid)
    x.approve("victor", rid)
    v = x.wait_state(rid, TERMINAL, timeout=30)
    assert v["state"] == "COMPLETED", v
    after = x.approvals_of(rid)
    assert [a["approval_id"] for a in after] == [first[0]["approval_id"]], after
    assert after[0]["state"] == "approved" and after[0]["node"] == "write_po", after
    assert len(x.rows_with(510003)) == 1, x.rows()


@test
def killed_after_the_lease(x):
    rid = x.start_run(510002)
    x.runs[rid] = 510002
    x.wait_state(rid, ("PAUSED",))
    x.approve("carol", rid)
    x.sig("auditor", signal.SIGSTOP)
    try:
        x.approve("victor", rid)
        # leased: the lease exists while the intent waits on the auditor
        deadline = time.time() + 10
        while True:
            rc, out = x.c.ctl_json("vault", "leases", "--run", rid)
            if rc == 0 and [l for l in out["leases"] if l["node"] == "write_po"]:
                break
            assert time.time() < deadline, "never leased"
            time.sleep(0.05)
        x.kill("orchestrator")
    finally:
        x.sig("auditor", signal.SIGCONT)
    assert len(x.rows_with(510002)) == 0
    x.start_orch()
    v = x.wait_state(rid, TERMINAL, timeout=30)
    assert v["state"] == "COMPLETED", v
    assert len(x.rows_with(510002)) == 1, x.rows()


@test
def killed_with_the_lease_in_flight(x):
    rid = x.start_run(510004)
    x.runs[rid] = 510004
    x.wait_state(rid, ("PAUSED",))
    x.approve("carol", rid)
    x.sig("vault-broker", signal.SIGSTOP)
    try:
        x.approve("victor", rid)
        # approved: the run RUNNING again, its lease asked of the stopped vault
        x.wait_node_phase(rid, lambda v: v["state"] == "RUNNING")
        time.sleep(0.3)
        x.kill("orchestrator")
    finally:
        x.sig("vault-broker", signal.SIGCONT)
    deadline = time.time() + 10
    while True:
        rc, out = x.c.ctl_json("vault", "leases", "--run", rid)
        if rc == 0 and [l for l in out["leases"] if l["node"] == "write_po"]:
            break
        assert time.time() < deadline, "the lease asked before the kill was never made"
        time.sleep(0.05)
    assert len(x.rows_with(510004)) == 0
    x.start_orch()
    v = x.wait_state(rid, TERMINAL, timeout=30)
    assert v["state"] == "COMPLETED", v
    assert len(x.rows_with(510004)) == 1, x.rows()
    rc, out = x.c.ctl_json("vault", "leases", "--run", rid)
    assert rc == 0 and len([l for l in out["leases"] if l["node"] == "write_po"]) == 1, out


@test
def killed_in_the_middle_of_the_call(x):
    rid = x.start_run(4001)
    x.runs[rid] = 4001
    x.sig("sandbox", signal.SIGSTOP)
    try:
        # the intent is stored (audit_index set in memory): wait for the intent in the log
        deadline = time.time() + 10
        while True:
            es = [e for e in x.audit_entries() if e.get("kind") == "append"
                  and e["entry"].get("kind") == "step.intent" and e["entry"]["run"] == rid]
            if es:
                break
            assert time.time() < deadline, "no intent"
            time.sleep(0.05)
        time.sleep(0.2)
        x.kill("orchestrator")
    finally:
        x.sig("sandbox", signal.SIGCONT)
    x.start_orch()
    v = x.wait_state(rid, TERMINAL, timeout=30)
    assert v["state"] == "COMPLETED", v
    assert len(x.rows_with(4001)) == 1, x.rows()
    # the intent appended again named the first: one entry, the index the run recorded
    node = [n for n in v["nodes"] if n["node"] == "write_po"]
    intents, steps = x.intents_in_receipt(rid, "write_po")
    assert len(node) == 1 and intents == [node[0]["audit_index"]], (intents, node)
    assert len(steps) == 1 and steps[0]["intent"]["index"] == intents[0], steps


@test
def auditor_down_pauses_the_step(x):
    x.c.stop("auditor")
    try:
        rid = x.start_run(4002)
        x.runs[rid] = 4002
        v = x.wait_state(rid, ("PAUSED",), timeout=20)
        assert v["reason"] == "audit_unavailable", v
        time.sleep(0.5)
        assert len(x.rows_with(4002)) == 0, "called without an acknowledged intent"
    finally:
        x.c.start("auditor")
        x.c.wait_healthy(["auditor"])
    v = x.wait_state(rid, TERMINAL, timeout=30)
    assert v["state"] == "COMPLETED", v
    assert len(x.rows_with(4002)) == 1, x.rows()


@test
def audit_log_has_every_step(x):
    time.sleep(1.5)             # the auditor's follower catches up with the outboxes
    entries = x.audit_entries()
    for rid in x.runs:
        intents = sorted(e["entry"]["node"] for e in entries if e.get("kind") == "append"
                         and e["entry"].get("kind") == "step.intent" and e["entry"]["run"] == rid)
        assert intents == ["mail_vendor", "write_po"], (rid, intents)
        types = [e["type"] for e in entries if e.get("kind") == "event" and e.get("pub") == "svc:orchestrator"
                 and e["body"].get("run") == rid]
        assert "run.started" in types and "run.completed" in types, (rid, types)
        assert types.count("node.finished") >= 3, (rid, types)


if __name__ == "__main__":
    sys.exit(run(Ctx, Ctx.close))
