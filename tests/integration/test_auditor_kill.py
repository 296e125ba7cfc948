#!/usr/bin/env python3
"""Integration: the auditor killed (SIGKILL) while 200 workflows run, then
restarted. Every event of every run is in the log exactly once (per
publisher the stored seqs are 1..max with no repeat and no gap entry),
every step's intent was acknowledged before its call (a step due while the
auditor was down waited, PAUSED audit_unavailable, and ran once it was
back: one sandbox row per run), and every run's receipt verifies with an
independent checker (receipt_check.py: Ed25519, RFC 9162 inclusion).
AUDIT_KILL_RUNS sets the number of runs (default 200).
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import run, test  # noqa: E402
from orch_cluster import TERMINAL, OrchCluster  # noqa: E402
from receipt_check import check_receipt  # noqa: E402

N = int(os.environ.get("AUDIT_KILL_RUNS", "200"))


class Ctx(OrchCluster):
    pass


def start_all(x):
    ids = {}
    for i in range(N):
        rid, frame = x.ops.frame("run.start", {"workflow": "procurement",
                                               "input": {"vendor": "K%d" % i, "amount": 1000 + i,
                                                         "cost_center": "engineering"}})
        x.ops.send_raw(frame)
        ids[rid] = i
    runs = {}
    deadline = time.time() + 60
    while len(runs) < N and time.time() < deadline:
        r = x.ops.recv(5000)
        if r is not None and r.get("corr") in ids:
            assert r["ok"], r
            runs[r["body"]["run"]] = ids[r["corr"]]
    assert len(runs) == N, "started %d of %d" % (len(runs), N)
    return runs


@test
def auditor_killed_during_200_runs(x):
    runs = start_all(x)
    # kill it while the runs are in flight: once some have ended, not all
    while True:
        done = len(x.body("run.list", {"state": "COMPLETED"}, timeout_ms=30000)["runs"])
        if done >= N // 10:
            break
        time.sleep(0.02)
    x.kill("auditor")
    assert done < N, "every run ended before the auditor was killed: nothing tested"
    # down until the steps due meanwhile have given up on their calls and
    # wait, visibly (the orchestrator's calls retry for a few seconds first)
    paused = set()
    down_until = time.time() + 30
    while time.time() < down_until and len(paused) < 10:
        paused |= {r["run"] for r in x.body("run.list", {"state": "PAUSED"}, timeout_ms=30000)["runs"]
                   if r.get("reason") == "audit_unavailable"}
        time.sleep(0.2)
    x.c.start("auditor")
    x.c.wait_healthy(["auditor"])
    print("# killed with %d of %d runs completed; %d runs PAUSED audit_unavailable meanwhile"
          % (done, N, len(paused)))
    assert paused, "no step waited for the auditor"

    deadline = time.time() + 300
    while True:
        listed = x.body("run.list", {}, timeout_ms=30000)["runs"]
        mine = [r for r in listed if r["run"] in runs]
        ended = [r for r in mine if r["state"] in TERMINAL]
        if len(ended) == N:
            break
        assert time.time() < deadline, "%d of %d ended" % (len(ended), N)
        time.sleep(0.5)
    assert all(r["state"] == "COMPLETED" for r in ended), [r for r in ended if r["state"] != "COMPLETED"][:3]
    rows = x.rows()
    assert sorted(r[2] for r in rows) == sorted(1000 + i for i in runs.values()), "one row per run"

    # every receipt issued and verified independently
    client = x.c.client("auditor", key_name="ops-audit", principal="ops:auditor-test")
    try:
        jwks = client.call("audit.jwks", {}, timeout_ms=5000)["body"]
        for rid in runs:
            deadline = time.time() + 30
            while True:
                r = client.call("audit.receipt", {"run": rid}, timeout_ms=10000)
                if r and r["ok"]:
                    break
                assert time.time() < deadline, (rid, r)
                time.sleep(0.2)
            p = check_receipt(r["body"]["jws"], jwks)
            assert p["run"] == rid and p["state"] == "COMPLETED", (rid, p.get("state"))
    finally:
        client.close()

    # the follower has caught up once every receipt exists; the log holds
    # every event of every publisher exactly once, with no gap
    entries = x.audit_entries()
    assert not [e for e in entries if e.get("kind") == "gap"], "a gap entry: an event was lost"
    seqs = {}
    for e in entries:
        if e.get("kind") == "event":
            seqs.setdefault(e["pub"], []).append(e["seq"])
    for pub, s in seqs.items():
        assert len(s) == len(set(s)), "%s: an event stored twice" % pub
        assert sorted(s) == list(range(1, max(s) + 1)), "%s: seqs missing" % pub
    per_run = {}
    for e in entries:
        if e.get("kind") == "event" and e.get("pub") == "svc:orchestrator":
            per_run.setdefault(e["body"].get("run"), []).append(e["type"])
        if e.get("kind") == "append" and e["entry"].get("kind") == "step.intent":
            per_run.setdefault(e["entry"]["run"], []).append("intent:" + e["entry"]["node"])
    for rid in runs:
        t = per_run.get(rid, [])
        assert t.count("run.started") == 1 and t.count("run.completed") == 1, (rid, t)
        assert {"intent:write_po", "intent:mail_vendor"} <= set(t), (rid, t)
    print("# %d entries; %s" % (len(entries), json.dumps({p: max(s) for p, s in seqs.items()})))


if __name__ == "__main__":
    sys.exit(run(Ctx, Ctx.close))
