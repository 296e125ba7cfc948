#!/usr/bin/env python3
"""Integration: kill -9 of each service the orchestrator calls, at the step
that needs it, then a restart: every run finishes, one row each.

- authz down before the decision: the step waits (PAUSED authz_unavailable,
  retried with backoff), authz back: the run completes;
- ciba-broker killed while a run is paused for approval: back, the chain
  is approved, the follower delivers approval.completed: the run completes;
- vault-broker down when the approval lands: the lease is retried (PAUSED
  vault_unavailable), the vault back: the run completes;
- sandbox killed before the call: the call is retried under the same
  idempotency key: exactly one row.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import run, test  # noqa: E402
from orch_cluster import OrchCluster, TERMINAL  # noqa: E402


class Ctx(OrchCluster):
    def __init__(self):
        super().__init__(orch_lines="retry_max = 40\nretry_cap_ms = 500\n")

    def rows_with(self, amount):
        return [r for r in self.rows() if len(r) > 2 and r[2] == amount]

    def restart(self, name):
        self.c.start(name)
        self.c.wait_healthy([name])


def saw_retry(x, rid, reason="upstream_retry", timeout=15):
    """The run paused for a retry (reason) at some point (run.get's reason)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = x.get(rid)
        if v["state"] == "PAUSED" and v.get("reason") == reason:
            return v
        time.sleep(0.05)
    raise AssertionError("never paused %s: %s" % (reason, x.get(rid)))


@test
def authz_down_before_the_decision(x):
    x.kill("authz")
    rid = x.start_run(4101)
    saw_retry(x, rid, "authz_unavailable")
    x.restart("authz")
    v = x.wait_state(rid, TERMINAL, timeout=40)
    assert v["state"] == "COMPLETED", v
    assert len(x.rows_with(4101)) == 1, x.rows()


@test
def ciba_killed_while_paused(x):
    rid = x.start_run(510101)
    x.wait_state(rid, ("PAUSED",))
    x.kill("ciba-broker")
    time.sleep(0.3)
    x.restart("ciba-broker")
    x.approve("carol", rid)
    x.approve("victor", rid)
    v = x.wait_state(rid, TERMINAL, timeout=40)
    assert v["state"] == "COMPLETED", v
    assert len(x.rows_with(510101)) == 1, x.rows()


@test
def vault_down_when_the_approval_lands(x):
    rid = x.start_run(510102)
    x.wait_state(rid, ("PAUSED",))
    x.approve("carol", rid)
    x.kill("vault-broker")
    x.approve("victor", rid)
    saw_retry(x, rid, "vault_unavailable")
    x.restart("vault-broker")
    v = x.wait_state(rid, TERMINAL, timeout=40)
    assert v["state"] == "COMPLETED", v
    assert len(x.rows_with(510102)) == 1, x.rows()


@test
def sandbox_killed_before_the_call(x):
    x.kill("sandbox")
    rid = x.start_run(4102)
    saw_retry(x, rid)
    x.restart("sandbox")
    v = x.wait_state(rid, TERMINAL, timeout=40)
    assert v["state"] == "COMPLETED", v
    assert len(x.rows_with(4102)) == 1, x.rows()


if __name__ == "__main__":
    sys.exit(run(Ctx, Ctx.close))
