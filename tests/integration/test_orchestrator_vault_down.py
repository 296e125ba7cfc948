#!/usr/bin/env python3
"""Integration: the vault-broker stopped when an approved step asks its
lease. A durable run waits for a stopped peer: it stays PAUSED
(`vault_unavailable`) past the old limit of retry_max attempts (here 2,
with rpc_timeout_ms 1000: a run used to FAIL "timeout" some 6 s after the
approval), asked again with capped backoff, and goes on once the vault is
back; it fails only when the approval itself can no longer be used
(its expires_at passed: `approval_expired`).

- vault stopped, approved, PAUSED vault_unavailable for 10 s (never
  FAILED), the vault started: the run completes, one row, one lease, and
  its receipt holds the step's intent;
- vault stopped past the approval's window (approval_expiry_s 30): the run
  FAILS approval_expired, no row, and no lease of it is left active: the
  vault.lease asks queued while the vault was down reach it when it is
  back, and so does the run's vault.revoke {run} sent at its end (the run
  asked for a lease), which ends any of them and refuses any later one.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import run, test  # noqa: E402
from orch_cluster import OrchCluster, TERMINAL  # noqa: E402

WINDOW = 30         # approval_expiry_s


class Ctx(OrchCluster):
    def __init__(self):
        super().__init__(orch_lines="retry_max = 2\nretry_cap_ms = 400\napproval_expiry_s = %d\n" % WINDOW)

    def rows_with(self, amount):
        return [r for r in self.rows() if len(r) > 2 and r[2] == amount]

    def restart(self, name):
        self.c.start(name)
        self.c.wait_healthy([name])

    def approved_with_the_vault_down(self, amount):
        self.kill("vault-broker")
        rid = self.start_run(amount)
        started = time.time()
        self.wait_state(rid, ("PAUSED",))
        self.approve("carol", rid)
        self.approve("victor", rid)
        return rid, started

    def paused_for_the_vault(self, rid, seconds):
        """The run is PAUSED vault_unavailable (or RUNNING between two
        asks) for seconds, never terminal; seen paused for the vault."""
        end = time.time() + seconds
        seen = False
        while time.time() < end:
            v = self.get(rid)
            assert v["state"] not in TERMINAL, v
            seen |= v["state"] == "PAUSED" and v.get("reason") == "vault_unavailable"
            time.sleep(0.1)
        assert seen, "never paused vault_unavailable: %s" % self.get(rid)

    def leases(self, rid):
        """The run's write_po leases. A vault just restarted may not answer
        the first ask in time on a loaded machine: asked for up to 10 s."""
        end = time.time() + 10
        while True:
            r = self.c.ctl("--json", "vault", "leases", "--run", rid)
            if r.returncode == 0 or time.time() > end:
                break
            time.sleep(0.2)
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
        return [l for l in json.loads(r.stdout)["leases"] if l["node"] == "write_po"]


@test
def waits_for_the_vault_then_completes(x):
    rid, started = x.approved_with_the_vault_down(510201)
    x.paused_for_the_vault(rid, 10)
    assert time.time() - started < WINDOW - 8, "too slow to test within the window"
    x.restart("vault-broker")
    v = x.wait_state(rid, TERMINAL, timeout=30)
    assert v["state"] == "COMPLETED", v
    assert len(x.rows_with(510201)) == 1, x.rows()
    assert len(x.leases(rid)) == 1, x.leases(rid)
    p = x.checked_receipt(rid)
    steps = [s for s in p["steps"] if s.get("node") == "write_po"]
    assert steps, p["steps"]


@test
def fails_when_the_approval_expires_first(x):
    rid, started = x.approved_with_the_vault_down(510202)
    x.paused_for_the_vault(rid, 5)
    v = x.wait_state(rid, TERMINAL, timeout=WINDOW + 20)
    assert v["state"] == "FAILED", v
    assert time.time() - started >= WINDOW - 1, "failed before the approval's window ended: %s" % v
    errors = [n.get("error", {}).get("code") for n in v["nodes"] if n["node"] == "write_po"]
    assert errors == ["approval_expired"], v
    x.restart("vault-broker")
    time.sleep(1)
    assert x.rows_with(510202) == [], x.rows()
    end = time.time() + 15
    while [l for l in x.leases(rid) if l["state"] == "active"] and time.time() < end:
        time.sleep(0.5)
    assert not [l for l in x.leases(rid) if l["state"] == "active"], x.leases(rid)


if __name__ == "__main__":
    sys.exit(run(Ctx, Ctx.close))
