#!/usr/bin/env python3
"""Integration: many concurrent runs in one orchestrator — ORCH_MANY runs
(default 1,000) of the procurement workflow at $5,000, all started at once
(pipelined run.start), every one driven to COMPLETED on the one reactor
thread: each wrote exactly one ERP row (its own PO number) and mailed once.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import run, test  # noqa: E402
from orch_cluster import OrchCluster  # noqa: E402

N = int(os.environ.get("ORCH_MANY", "1000"))


class Ctx(OrchCluster):
    pass


@test
def many_concurrent_runs_complete(x):
    ids = {}
    for i in range(N):
        rid, frame = x.ops.frame("run.start", {"workflow": "procurement",
                                               "input": {"vendor": "V%d" % i, "amount": 5000 + i,
                                                         "cost_center": "engineering"}})
        x.ops.send_raw(frame)
        ids[rid] = i
    runs = []
    deadline = time.time() + 120
    while len(runs) < N and time.time() < deadline:
        r = x.ops.recv(5000)
        if r is not None and r.get("corr") in ids:
            assert r["ok"], r
            runs.append(r["body"]["run"])
    assert len(runs) == N, "started %d of %d" % (len(runs), N)
    t0 = time.time()
    deadline = time.time() + 600
    while True:
        done = x.body("run.list", {"state": "COMPLETED"}, timeout_ms=30000)["runs"]
        if len(done) >= N:
            break
        other = [r for r in x.body("run.list", {}, timeout_ms=30000)["runs"]
                 if r["state"] not in ("RUNNING", "PAUSED", "COMPLETED")]
        assert not other, other[:3]
        assert time.time() < deadline, "%d of %d completed" % (len(done), N)
        time.sleep(1)
    print("# %d runs completed in %.1f s after the last start" % (N, time.time() - t0))
    rows = x.rows()
    assert len(rows) == N, len(rows)
    assert len({r[0] for r in rows}) == N, "each run its own PO number"
    assert sorted(r[2] for r in rows) == [5000 + i for i in range(N)]


if __name__ == "__main__":
    sys.exit(run(Ctx, Ctx.close))
