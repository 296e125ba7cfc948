#!/usr/bin/env python3
"""Integration: an approval that ends before the orchestrator has the
answer to its ciba.authorize.

The broker publishes ciba.requested as it answers ciba.authorize; a device
that signs at once (an automated approver, or a person quick on a phone
while the orchestrator is busy with a commit) can end the approval, and
the broker publish approval.completed, before the orchestrator has read
the answer and checkpointed its pause. That event finds no paused run. It
must not be lost: the run goes on as soon as its pause is committed.

The real orchestrator, authz, vault-broker, auditor and sandbox as their
own processes; in the ciba-broker's place a stand-in on its endpoints and
keys (FakePublisher) that, given ciba.authorize, publishes the approval's
end first and answers 300 ms later, so the order is certain:
- approved first: the run completes, its row in the sheet, its lease
  bound to the approval;
- denied first: the run ends REJECTED, nothing in the sheet;
- an approval.completed for a run of no ours, or for a run that is not
  asking: nothing changes;
- the stand-in answers ciba.status as the broker would (the vault asks it
  when it has not seen the event).
"""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import run, test  # noqa: E402
from orch_cluster import OrchCluster, TERMINAL  # noqa: E402
import sanctum_client as sc  # noqa: E402  (on the path cluster.py sets)

REPLY_DELAY_S = 0.3


class Ctx(OrchCluster):
    def __init__(self):
        super().__init__(fake_ciba=True)
        self.approvals = {}             # approval id -> its ciba.status body
        self.outcome = "approved"       # what the next approval ends as
        self.lock = threading.Lock()
        self.fake_ciba.handle("ciba.authorize", self.authorize)
        self.fake_ciba.handle("ciba.status", self.status)

    def authorize(self, body):
        """End the approval, publish that, and only then answer."""
        aid = sc.ulid()
        chain = body.get("chain") or []
        levels = [{"approver": l["approver"], "auth_req_id": sc.ulid(), "state": "waiting"} for l in chain]
        levels[0]["state"] = "pending"
        ended = [dict(l, state=self.outcome if i == len(levels) - 1 else "approved") for i, l in enumerate(levels)]
        status = {"approval_id": aid, "state": self.outcome, "run": body.get("run"), "node": body.get("node"),
                  "levels": ended}
        with self.lock:
            self.approvals[aid] = status
        self.fake_ciba.publish("approval.completed", {"approval_id": aid, "outcome": self.outcome,
                                                      "run": body.get("run"), "node": body.get("node"),
                                                      "levels": ended})
        time.sleep(REPLY_DELAY_S)
        return {"approval_id": aid, "state": "pending", "levels": levels}

    def status(self, body):
        with self.lock:
            st = self.approvals.get(body.get("approval_id"))
        return st if st else ("not_found", "no such approval")


@test
def approved_before_the_authorize_answer_completes_the_run(x):
    x.outcome = "approved"
    before = len(x.rows())
    rid = x.start_run(520000)
    v = x.wait_state(rid, TERMINAL, timeout=15)
    assert v["state"] == "COMPLETED", v
    rows = x.rows()
    assert len(rows) == before + 1 and rows[-1][2] == 520000, rows
    rc, out = x.c.ctl_json("vault", "leases", "--run", rid)
    write = [l for l in out["leases"] if l["node"] == "write_po"]
    assert len(write) == 1 and write[0].get("approval") in x.approvals, out


@test
def denied_before_the_authorize_answer_rejects_the_run(x):
    x.outcome = "denied"
    before = len(x.rows())
    rid = x.start_run(530000)
    v = x.wait_state(rid, TERMINAL, timeout=15)
    assert v["state"] == "REJECTED", v
    assert len(x.rows()) == before, "nothing written for a denied approval"


@test
def an_end_for_no_asking_run_changes_nothing(x):
    x.outcome = "approved"
    # a run of no one's, and a run that is not asking (it completed)
    done = x.start_run(5000)
    assert x.wait_state(done, TERMINAL)["state"] == "COMPLETED"
    for rid in ("01JDZ0000000000000000NOONE", done):
        x.fake_ciba.publish("approval.completed", {"approval_id": sc.ulid(), "outcome": "approved", "run": rid,
                                                   "node": "write_po", "levels": []})
    time.sleep(0.5)
    assert x.get(done)["state"] == "COMPLETED"
    r = x.call("run.get", {"run": "01JDZ0000000000000000NOONE"})
    assert not r["ok"] and r["error"]["code"] == "not_found", r
    # and the orchestrator still takes the next approval as it should
    rid = x.start_run(540000)
    assert x.wait_state(rid, TERMINAL, timeout=15)["state"] == "COMPLETED"


if __name__ == "__main__":
    sys.exit(run(Ctx, Ctx.close))
