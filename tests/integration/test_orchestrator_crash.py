#!/usr/bin/env python3
"""Integration: the orchestrator survives kill -9 at each step, and a step
waits (fail-closed) while the auditor is down.

- killed while a run is PAUSED for approval; both levels approved while it
  is down; restarted: it reconciles (ciba.status / the follower's replay)
  and the run completes with exactly one row;
- killed after the lease, while the step intent waits on a stopped
  auditor: restarted, the step leases again (the approval's lease found and
  renewed) and completes, one row;
- killed in the middle of the tool call (the sandbox stopped with SIGSTOP
  so the call hangs): restarted, the call goes again under the same
  idempotency key: exactly one row;
- the auditor down: the run PAUSES with reason audit_unavailable and
  nothing is written; the auditor back: the run resumes and completes;
- the audit log has every run's step intents and terminal event.
"""
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
        intents = {e["entry"]["node"] for e in entries if e.get("kind") == "append"
                   and e["entry"].get("kind") == "step.intent" and e["entry"]["run"] == rid}
        assert intents == {"write_po", "mail_vendor"}, (rid, intents)
        types = [e["type"] for e in entries if e.get("kind") == "event" and e.get("pub") == "svc:orchestrator"
                 and e["body"].get("run") == rid]
        assert "run.started" in types and "run.completed" in types, (rid, types)
        assert types.count("node.finished") >= 3, (rid, types)


if __name__ == "__main__":
    sys.exit(run(Ctx, Ctx.close))
