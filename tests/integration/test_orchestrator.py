#!/usr/bin/env python3
"""Integration: the orchestrator end to end with real processes — authz,
auditor, vault-broker, ciba-broker, sandbox and orchestrator, the
procurement example, approvals signed by enrolled devices.

- $5,000: allowed by policy, runs straight through: one ERP row, one mail,
  a step intent in the audit log before each call, leases revoked;
- $520,000: pauses for carol (the manager), then victor (the VP), each
  signing with their device; run.get and run.wait tell the
  levels as they are decided (carol approved, victor asked), also after
  an orchestrator restart, after carol approved while it was down, and
  when carol's level is escalated for want of an answer;
  then writes exactly one row with a token that lives at most ten minutes;
- $2,000,000: rejected (no approver's limit covers it), nothing in the
  sandbox;
- a denied approval ends the run REJECTED; run.cancel cancels a paused run
  and its approval; run.list filters by state; bad workflows are refused
  with the file, node and field named; sanctumctl run start/get/wait/list.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import run, test  # noqa: E402
from orch_cluster import EX, OrchCluster, TERMINAL  # noqa: E402


class Ctx(OrchCluster):
    pass


def node(view, name):
    return [n for n in view["nodes"] if n["node"] == name]


def levels(view):
    return [l["state"] for l in view["approval"]["levels"]]


def wait_levels(x, rid, want, timeout=5):
    """run.get once its approval levels are want (they follow an event)."""
    deadline = time.time() + timeout
    while True:
        v = x.get(rid)
        if "approval" in v and levels(v) == want:
            return v
        if time.time() > deadline:
            raise AssertionError("levels of %s never %s: %s" % (rid, want, v.get("approval")))
        time.sleep(0.05)


@test
def allowed_amount_runs_straight_through(x):
    before = len(x.rows())
    rid = x.start_run(5000)
    v = x.wait_state(rid, TERMINAL)
    assert v["state"] == "COMPLETED", v
    assert v["workflow"] == "procurement" and v["workflow_hash"].startswith("sha256:"), v
    w = node(v, "write_po")[0]
    assert w["outcome"] == "ok" and w["decision"]["result"] == "allow" and w["lease"] and w["status"] == 200, w
    assert node(v, "mail_vendor")[0]["outcome"] == "ok", v
    # run.get carries the workflow's shape (run.wait does not)
    g = x.get(rid)["graph"]
    with open(os.path.join(EX, "workflows", "procurement.json")) as f:
        wf = json.load(f)
    assert g["start"] == wf["start"] and g["nodes"] == [{"node": n["id"], "kind": n["kind"]} for n in wf["nodes"]] \
        and g["edges"] == [{"from": e["from"], "to": e["to"]} for e in wf["edges"]], g
    assert "graph" not in v, v
    rows = x.rows()
    assert len(rows) == before + 1 and rows[-1][1:] == ["Acme", 5000, "engineering"], rows
    # the leases of the run are revoked
    rc, out = x.c.ctl_json("vault", "leases", "--run", rid)
    assert rc == 0 and out["leases"] and all(l["state"] == "revoked" for l in out["leases"]), out
    # the step intents are in the audit log, before the calls
    intents = [e for e in x.audit_entries()
               if e.get("kind") == "append" and e["entry"].get("kind") == "step.intent" and e["entry"]["run"] == rid]
    assert sorted(i["entry"]["node"] for i in intents) == ["mail_vendor", "write_po"], intents
    assert intents[0]["entry"]["lease"] and intents[0]["entry"]["args_digest"].startswith("sha256:"), intents


@test
def large_amount_pauses_for_manager_then_vp(x):
    before = len(x.rows())
    rid = x.start_run(520000)
    v = x.wait_state(rid, ("PAUSED",))
    assert v["reason"] == "approval" and v["approval"]["node"] == "write_po", v
    assert [l["approver"] for l in v["approval"]["levels"]] == ["user:carol", "user:victor"], v["approval"]
    assert node(v, "write_po")[0]["decision"]["chain"] == ["user:carol", "user:victor"], v
    assert levels(v) == ["pending", "waiting"], v["approval"]
    x.approve("carol", rid)
    # the orchestrator follows the broker's level events: run.get and
    # run.wait tell the manager approved and the VP asked now
    v = wait_levels(x, rid, ["approved", "pending"])
    assert v["state"] == "PAUSED", "the manager alone is not the chain"
    assert levels(x.wait_state(rid, ("PAUSED",))) == ["approved", "pending"]
    assert len(x.rows()) == before, "nothing written before the whole chain approved"
    # restarted while paused at the VP's level: the levels are the checkpoint's
    x.kill("orchestrator")
    x.start_orch()
    v = x.get(rid)
    assert v["state"] == "PAUSED" and levels(v) == ["approved", "pending"], v
    x.approve("victor", rid)
    v = x.wait_state(rid, TERMINAL)
    assert v["state"] == "COMPLETED", v
    rows = x.rows()
    assert len(rows) == before + 1 and rows[-1][2] == 520000, rows
    rc, out = x.c.ctl_json("vault", "leases", "--run", rid)
    write = [l for l in out["leases"] if l["node"] == "write_po"]
    assert len(write) == 1 and 0 < write[0]["ttl"] <= 600 and write[0].get("approval"), out


@test
def manager_approves_while_the_orchestrator_is_down(x):
    """The level events it missed come by the follower's replay."""
    rid = x.start_run(530000)
    v = x.wait_state(rid, ("PAUSED",))
    assert levels(v) == ["pending", "waiting"], v["approval"]
    x.kill("orchestrator")
    x.approve("carol", rid)
    x.start_orch()
    v = wait_levels(x, rid, ["approved", "pending"])
    assert v["state"] == "PAUSED", v
    x.approve("victor", rid, verb="deny")
    v = x.wait_state(rid, TERMINAL)
    assert v["state"] == "REJECTED", v


@test
def a_manager_who_does_not_answer_is_escalated(x):
    """ciba.escalated (escalate_after_s passed): the manager's level
    escalated, the VP's pending."""
    path = os.path.join(EX, "procurement", "policy.json")
    with open(path) as f:
        policy = json.load(f)
    policy["actions"]["po.write"]["escalate_after_s"] = 1
    quick = os.path.join(x.c.dir, "policy-escalate.json")
    with open(quick, "w") as f:
        json.dump(policy, f)
    x.ok("authz", "policy", "write", quick)
    try:
        rid = x.start_run(540000)
        v = x.wait_state(rid, ("PAUSED",))
        assert levels(v) == ["pending", "waiting"], v["approval"]
        v = wait_levels(x, rid, ["escalated", "pending"], timeout=10)
        assert v["state"] == "PAUSED", v
        x.approve("victor", rid)
        assert x.wait_state(rid, TERMINAL)["state"] == "COMPLETED"
    finally:
        x.ok("authz", "policy", "write", path)


@test
def huge_amount_is_rejected_and_nothing_written(x):
    before = len(x.rows())
    rid = x.start_run(2000000)
    v = x.wait_state(rid, TERMINAL)
    assert v["state"] == "REJECTED" and v["reason"], v
    w = node(v, "write_po")[0]
    assert w["outcome"] == "rejected" and w["decision"]["result"] == "deny", w
    assert len(x.rows()) == before, x.rows()


@test
def denied_approval_rejects_the_run(x):
    rid = x.start_run(60000)
    x.wait_state(rid, ("PAUSED",))
    x.approve("carol", rid, verb="deny")
    v = x.wait_state(rid, TERMINAL)
    assert v["state"] == "REJECTED" and "denied" in v["reason"], v


@test
def cancel_a_paused_run(x):
    rid = x.start_run(70000)
    x.wait_state(rid, ("PAUSED",))
    r = x.call("run.cancel", {"run": rid})
    assert r["ok"] and r["body"]["state"] == "CANCELLED", r
    r = x.call("run.cancel", {"run": rid})
    assert not r["ok"] and r["error"]["code"] == "conflict", r
    runs = x.body("run.list", {"state": "CANCELLED"})["runs"]
    assert rid in [r["run"] for r in runs], runs
    r = x.call("run.list", {"state": "NOPE"})
    assert not r["ok"] and r["error"]["code"] == "invalid", r


@test
def unknown_workflow_and_run(x):
    r = x.call("run.start", {"workflow": "nope", "input": {}})
    assert not r["ok"] and r["error"]["code"] == "not_found", r
    r = x.call("run.get", {"run": "01JDZ00000000000000000NONE"})
    assert not r["ok"] and r["error"]["code"] == "not_found", r


@test
def bad_workflow_named_by_file_node_field(x):
    bad = {"workflow": "broken", "nodes": [{"id": "w", "kind": "tool", "connector": "fax.send", "connection": "c",
                                            "scopes": ["s"], "args": {}, "policy": {"action": "a", "resource": "r"}}]}
    with open(os.path.join(x.wf_dir, "broken.json"), "w") as f:
        json.dump(bad, f)
    r = x.body("orch.workflow_load", {})
    assert any("broken.json" in e and "node w" in e and "field connector" in e for e in r["errors"]), r
    assert "procurement" in [w["workflow"] for w in r["workflows"]], r
    os.unlink(os.path.join(x.wf_dir, "broken.json"))
    names = [w["workflow"] for w in x.body("orch.workflows", {})["workflows"]]
    assert names == ["procurement"], names


@test
def sanctumctl_run(x):
    r = x.c.ctl("--json", "run", "start", "procurement", "--input", "vendor=Acme", "--input", "amount=4000",
                "--input", "cost_center=engineering")
    assert r.returncode == 0, r.stdout + r.stderr
    rid = json.loads(r.stdout)["run"]
    r = x.c.ctl("--json", "run", "wait", rid)
    out = json.loads(r.stdout)
    assert r.returncode == 0 and out["state"] == "COMPLETED", (r.returncode, out)
    r = x.c.ctl("--json", "run", "get", rid)
    assert r.returncode == 0 and json.loads(r.stdout)["input"]["amount"] == 4000, r.stdout
    r = x.c.ctl("--json", "run", "list", "--state", "COMPLETED")
    assert rid in [v["run"] for v in json.loads(r.stdout)["runs"]], r.stdout
    r = x.c.ctl("--json", "run", "start", "procurement", "--input", "vendor=Acme", "--input", "amount=3000000",
                "--input", "cost_center=engineering")
    rid = json.loads(r.stdout)["run"]
    r = x.c.ctl("--json", "run", "wait", rid)
    assert r.returncode == 3 and json.loads(r.stdout)["state"] == "REJECTED", (r.returncode, r.stdout)
    r = x.c.ctl("run", "get", rid)
    assert r.returncode == 3 and "REJECTED" in r.stdout, (r.returncode, r.stdout)
    r = x.c.ctl("run", "start", "procurement", "--input", "novalue")
    assert r.returncode == 2, (r.returncode, r.stderr)
    # the workflow declares its inputs: a run that lacks one, or has one of
    # the wrong type or an unknown one, is refused at run.start (invalid,
    # exit 2), before any run exists
    before = len(json.loads(x.c.ctl("--json", "run", "list").stdout)["runs"])
    r = x.c.ctl("run", "start", "procurement", "--input", "vendor=Acme", "--input", "cost_center=engineering")
    assert r.returncode == 2 and "input amount: missing" in r.stderr, (r.returncode, r.stderr)
    r = x.c.ctl("run", "start", "procurement", "--input", "vendor=Acme", "--input", "amount=lots",
                "--input", "cost_center=engineering")
    assert r.returncode == 2 and "input amount: a number, not \"lots\"" in r.stderr, (r.returncode, r.stderr)
    r = x.c.ctl("run", "start", "procurement", "--input", "vendor=Acme", "--input", "amount=5",
                "--input", "cost_center=engineering", "--input", "amout=5")
    assert r.returncode == 2 and "input amout: procurement takes no such input" in r.stderr, (r.returncode, r.stderr)
    assert len(json.loads(x.c.ctl("--json", "run", "list").stdout)["runs"]) == before


if __name__ == "__main__":
    sys.exit(run(Ctx, Ctx.close))
