#!/usr/bin/env python3
"""Integration: the engine paths no test reached (issue 16, "Tests that a
bug would slip past"), as real frames to a real sanctum-authz: "but not"
whose subtracted side errors is error 2000 (never true), on_duplicate
"ignore" re-writing a tuple with another condition context or condition
is still 2017, and the procurement policy's max_levels and a manager cycle
bound the approver walk."""
import copy
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from cluster import ROOT, Cluster  # noqa: E402
from harness import run, test  # noqa: E402

EX = os.path.join(ROOT, "ops", "examples", "procurement")

MODEL = """model
  schema 1.1
type user
type doc
  relations
    define allowed: [user]
    define blocked: [user with over]
    define viewer: allowed but not blocked
    define both: blocked and allowed
    define tagged: [user, user with over, user with under]
condition over(x: int) {
  x > 1
}
condition under(x: int) {
  x < 1
}
"""


def call(cl, type_, body):
    r = cl.call(type_, body)
    assert r is not None, (type_, "no answer")
    return r


def fga(r):
    return r.get("error", {}).get("fga_code")


def write_model(cl, model):
    r = call(cl, "authz.model.write", {"model": model})
    assert "error" not in r, r
    return r["body"]["authorization_model_id"]


def check(cl, model_id, obj, rel, user, context=None):
    body = {"tuple_key": {"object": obj, "relation": rel, "user": user}, "model_id": model_id}
    if context is not None:
        body["context"] = context
    return call(cl, "authz.check", body)


@test
def exclusion_and_intersection_errors(c):
    cl = c.client("authz", key_name="pyops", principal="ops:tester")
    try:
        mid = write_model(cl, MODEL)
        r = call(cl, "authz.write", {"model_id": mid, "writes": [
            {"object": "doc:1", "relation": "allowed", "user": "user:a"},
            {"object": "doc:1", "relation": "blocked", "user": "user:a", "condition": {"name": "over"}}]})
        assert "error" not in r, r
        # the case: without context the subtracted side errors
        r = check(cl, mid, "doc:1", "viewer", "user:a")
        assert r["error"]["code"] == "invalid" and fga(r) == 2000, r
        assert check(cl, mid, "doc:1", "viewer", "user:a", {"x": 0})["body"] == {"allowed": True}
        assert check(cl, mid, "doc:1", "viewer", "user:a", {"x": 2})["body"] == {"allowed": False}
        # intersection: an erroring operand is an error while the others hold
        r = check(cl, mid, "doc:1", "both", "user:a")
        assert fga(r) == 2000, r
        assert check(cl, mid, "doc:1", "both", "user:a", {"x": 2})["body"] == {"allowed": True}
    finally:
        cl.close()


@test
def duplicate_ignore_only_for_the_same_tuple(c):
    cl = c.client("authz", key_name="pyops", principal="ops:tester")
    try:
        mid = write_model(cl, MODEL)

        def write(cond, dup="ignore"):
            t = {"object": "doc:9", "relation": "tagged", "user": "user:a"}
            if cond:
                t["condition"] = cond
            return call(cl, "authz.write", {"model_id": mid, "writes": [t], "on_duplicate": dup})

        assert "error" not in write({"name": "over", "context": {"x": 1}}, "error")
        assert "error" not in write({"name": "over", "context": {"x": 1}})     # a retry: fine
        for other in ({"name": "over", "context": {"x": 2}}, {"name": "under", "context": {"x": 1}},
                      {"name": "over"}, None):
            r = write(other)
            assert r["error"]["code"] == "conflict" and fga(r) == 2017, (other, r)
        # the stored tuple is still the first: over(1) is false
        assert check(cl, mid, "doc:9", "tagged", "user:a")["body"] == {"allowed": False}
    finally:
        cl.close()


def load_procurement(cl, max_levels):
    with open(os.path.join(EX, "model.fga")) as f:
        mid = write_model(cl, f.read())
    with open(os.path.join(EX, "tuples.json")) as f:
        tuples = json.load(f)
    r = call(cl, "authz.write", {"model_id": mid, "writes": tuples, "on_duplicate": "ignore"})
    assert "error" not in r, r
    with open(os.path.join(EX, "policy.json")) as f:
        policy = json.load(f)
    policy = copy.deepcopy(policy)
    policy["actions"]["po.write"]["max_levels"] = max_levels
    r = call(cl, "authz.policy.write", {"policy": policy})
    assert "error" not in r, r


def decide(cl, amount):
    return call(cl, "authz.decide", {"principal": "agent:po-drafter", "action": "po.write",
                                     "resource": "cost_center:engineering", "context": {"amount": amount}})


@test
def policy_max_levels_and_manager_cycle(c):
    cl = c.client("authz", key_name="pyops", principal="ops:tester")
    try:
        # $520,000 needs victor, two levels up from erin: one level is a deny
        load_procurement(cl, 1)
        r = decide(cl, 520000)
        assert r["body"] == {"decision": "deny", "reason": "no approver with authority"}, r
        load_procurement(cl, 2)
        r = decide(cl, 520000)
        assert r["body"]["decision"] == "approval_required", r
        assert [e["user"] for e in r["body"]["chain"]] == ["user:carol", "user:victor"], r
        # carol manages victor, who manages carol: the walk ends at the
        # repeat (a deny when nobody covers), whatever max_levels allows
        load_procurement(cl, 32)
        r = call(cl, "authz.write", {"writes": [{"object": "user:victor", "relation": "manager",
                                                 "user": "user:carol"}]})
        assert "error" not in r, r
        r = decide(cl, 2000000)
        assert r["body"] == {"decision": "deny", "reason": "no approver with authority"}, r
        r = decide(cl, 520000)
        assert [e["user"] for e in r["body"]["chain"]] == ["user:carol", "user:victor"], r
    finally:
        cl.close()


def setup():
    c = Cluster(services=["authz"])
    c.start_all()
    return c


if __name__ == "__main__":
    sys.exit(run(setup, lambda c: c.close()))
