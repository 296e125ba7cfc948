#!/usr/bin/env python3
"""Integration: sanctum-authz as a real process — the OpenFGA API over the
bus, the procurement decisions and approver chains, bad input, restarts."""
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from cluster import ROOT, Cluster  # noqa: E402
from harness import run, test  # noqa: E402

EX = os.path.join(ROOT, "ops", "examples", "procurement")


def ok(c, *args):
    r = c.ctl("--json", *args)
    assert r.returncode == 0, (args, r.returncode, r.stdout, r.stderr)
    return json.loads(r.stdout) if r.stdout.strip() else None


def inject(c, type_, body):
    r = c.ctl("--json", "inject", type_, json.dumps(body), "--service", "authz")
    return r.returncode, json.loads(r.stdout) if r.stdout.strip() else None


def fga(reply):
    return reply["error"].get("fga_code")


def load_procurement(c):
    ok(c, "authz", "model", "write", os.path.join(EX, "model.fga"))
    ok(c, "authz", "write", "--file", os.path.join(EX, "tuples.json"))
    ok(c, "authz", "policy", "write", os.path.join(EX, "policy.json"))


@test
def no_policy_is_unavailable_not_a_guess(c):
    rc, out = inject(c, "authz.decide", {"principal": "agent:x", "action": "po.write", "resource": "cost_center:engineering"})
    assert rc == 1 and out["error"]["code"] in ("unavailable", "not_found"), out


@test
def procurement_decisions(c):
    load_procurement(c)
    d = ok(c, "authz", "decide", "agent:po-drafter", "po.write", "cost_center:engineering", "--context", '{"amount": 520000}')
    assert d["decision"] == "approval_required", d
    assert [(e["user"], e["limit"]) for e in d["chain"]] == [("user:carol", 50000), ("user:victor", 1000000)], d
    assert all(e["escalate_after"] == 900 for e in d["chain"])
    d = ok(c, "authz", "decide", "agent:po-drafter", "po.write", "cost_center:engineering", "--context", '{"amount": 5000}')
    assert d == {"decision": "allow"}, d
    r = c.ctl("--json", "authz", "decide", "agent:po-drafter", "po.write", "cost_center:engineering", "--context",
              '{"amount": 2000000}')
    assert r.returncode == 3 and json.loads(r.stdout)["reason"] == "no approver with authority", r.stdout
    # $50,000 exactly is within carol's limit: the chain stops at her
    d = ok(c, "authz", "decide", "agent:po-drafter", "po.write", "cost_center:engineering", "--context", '{"amount": 50000}')
    assert [e["user"] for e in d["chain"]] == ["user:carol"], d
    rc, out = inject(c, "authz.approvers", {"principal": "agent:po-drafter", "action": "po.write",
                                            "resource": "cost_center:engineering", "context": {"amount": 520000}})
    assert rc == 0 and [e["user"] for e in out["body"]["chain"]] == ["user:carol", "user:victor"], out


@test
def denials_say_why(c):
    r = c.ctl("--json", "authz", "decide", "agent:rogue", "po.write", "cost_center:engineering", "--context", '{"amount": 5}')
    assert r.returncode == 3 and "not writer" in json.loads(r.stdout)["reason"], r.stdout
    r = c.ctl("--json", "authz", "decide", "agent:po-drafter", "wire.transfer", "cost_center:engineering")
    assert r.returncode == 3 and "no policy" in json.loads(r.stdout)["reason"], r.stdout
    r = c.ctl("--json", "authz", "decide", "agent:po-drafter", "po.write", "cost_center:engineering", "--context",
              '{"amount": "lots"}')
    assert r.returncode == 3 and "amount" in json.loads(r.stdout)["reason"], r.stdout


@test
def decisions_are_events(c):
    rc, out = inject(c, "events.replay", {"from_seq": 1})
    types = [e["type"] for e in out["body"]["events"]]
    assert "authz.model.written" in types and "authz.tuples.written" in types and "authz.decided" in types, types
    decided = [e for e in out["body"]["events"] if e["type"] == "authz.decided"]
    assert decided[0]["body"]["decision"]["decision"] == "approval_required", decided[0]


@test
def openfga_queries_over_the_bus(c):
    rc, out = inject(c, "authz.list_objects", {"user": "agent:po-drafter", "relation": "writer", "type": "cost_center"})
    assert rc == 0 and out["body"]["objects"] == ["cost_center:engineering"], out
    rc, out = inject(c, "authz.list_users", {"object": {"type": "user", "id": "erin"}, "relation": "manager",
                                             "user_filters": [{"type": "user"}]})
    assert rc == 0 and out["body"]["users"] == ["user:carol"], out
    rc, out = inject(c, "authz.expand", {"tuple_key": {"object": "cost_center:engineering", "relation": "writer"}})
    assert rc == 0 and "root" in out["body"]["tree"], out
    rc, out = inject(c, "authz.read", {"tuple_key": {"object": "cost_center:engineering", "relation": "approver"}})
    assert rc == 0 and len(out["body"]["tuples"]) == 2, out
    rc, out = inject(c, "authz.read", {"tuple": {"object": "cost_center:engineering", "relation": "approver"}})
    assert rc == 0 and len(out["body"]["tuples"]) == 2, out  # the filter's first name
    rc, out = inject(c, "authz.read", {"tuple_key": {"object": "cost_center:engineering"},
                                       "tuple": {"object": "user:erin"}})
    assert rc == 2 and out["error"]["code"] == "invalid", out
    rc, out = inject(c, "authz.read_changes", {"page_size": 100})
    assert rc == 0 and len(out["body"]["changes"]) == 7 and out["body"]["continuation_token"], out
    rc, out = inject(c, "authz.batch_check", {"checks": [
        {"tuple_key": {"user": "user:victor", "relation": "approver", "object": "cost_center:engineering"},
         "context": {"amount": 10}, "correlation_id": "a"},
        {"tuple_key": {"user": "user:erin", "relation": "approver", "object": "cost_center:engineering"},
         "context": {"amount": 10}, "correlation_id": "b"}]})
    assert rc == 0 and out["body"]["result"]["a"]["allowed"] is True and out["body"]["result"]["b"]["allowed"] is False, out
    # contextual tuples count for one request only
    rc, out = inject(c, "authz.check", {"tuple_key": {"user": "agent:temp", "relation": "writer", "object": "cost_center:engineering"},
                                        "contextual_tuples": [{"user": "agent:temp", "relation": "writer",
                                                               "object": "cost_center:engineering"}]})
    assert rc == 0 and out["body"]["allowed"] is True, out
    rc = c.ctl("authz", "check", "agent:temp", "writer", "cost_center:engineering").returncode
    assert rc == 3, rc


@test
def external_client_may_check(c):
    cl = c.client("authz")
    r = cl.call("authz.check", {"tuple_key": {"user": "agent:po-drafter", "relation": "writer", "object": "cost_center:engineering"}})
    assert r["ok"] and r["body"]["allowed"] is True, r
    r = cl.call("authz.write", {"writes": [{"user": "agent:evil", "relation": "writer", "object": "cost_center:engineering"}]})
    assert r["error"]["code"] == "forbidden", r  # only operators write tuples
    r = cl.call("authz.decide", {"principal": "agent:po-drafter", "action": "po.write", "resource": "cost_center:engineering"})
    assert r["error"]["code"] == "forbidden", r
    cl.close()


@test
def bad_models_are_refused_with_positions(c):
    bad = os.path.join(c.dir, "bad.fga")
    with open(bad, "w") as f:
        f.write("model\n  schema 1.1\ntype user\n  relations\n    define viewer: [nosuch]\n")
    r = c.ctl("--json", "authz", "model", "write", bad)
    out = json.loads(r.stdout)
    assert r.returncode == 2 and out["error"]["code"] == "invalid" and out["error"]["errors"], out
    assert out["error"]["errors"][0]["line"]["start"] == 4, out
    with open(bad, "w") as f:
        f.write("model\n  schema 1.1\ntype user\n  relations\n    define viewer [user]\n")
    r = c.ctl("--json", "authz", "model", "write", bad)
    assert r.returncode == 2 and "line" in r.stdout, r.stdout
    rc, out = inject(c, "authz.model.write", {"model": {"schema_version": "1.3", "type_definitions": []}})
    assert rc == 2 and out["error"]["code"] == "invalid", out
    rc, out = inject(c, "authz.model.write", {"model": 42})
    assert rc == 2 and out["error"]["code"] == "invalid", out
    # the latest model is still the procurement one
    d = ok(c, "authz", "decide", "agent:po-drafter", "po.write", "cost_center:engineering", "--context", '{"amount": 5000}')
    assert d["decision"] == "allow", d


@test
def bad_tuples_write_nothing(c):
    good = {"user": "agent:new", "relation": "writer", "object": "cost_center:engineering"}
    for bad, code in [({"user": "user:x", "relation": "nosuch", "object": "cost_center:engineering"}, 2000),
                      ({"user": "user:x", "relation": "writer", "object": "cost_center:engineering"}, 2000),  # user not allowed
                      ({"user": "user:x", "relation": "approver", "object": "cost_center:engineering"}, 2000),  # needs condition
                      ({"user": "user:x", "relation": "approver", "object": "cost_center:engineering",
                        "condition": {"name": "nosuch"}}, 2000),
                      ({"user": "user:x", "relation": "manager", "object": "nosuchtype:1"}, 2000)]:
        rc, out = inject(c, "authz.write", {"writes": [good, bad]})
        assert rc == 2 and fga(out) == code, (bad, out)
    rc = c.ctl("authz", "check", "agent:new", "writer", "cost_center:engineering").returncode
    assert rc == 3, "a rejected write left a tuple behind"
    rc, out = inject(c, "authz.write", {"writes": [good, good]})
    assert fga(out) == 2004, out
    rc, out = inject(c, "authz.write", {"writes": [{"user": "user:carol", "relation": "manager",
                                                    "object": "user:erin"}]})
    assert out["error"]["code"] == "conflict" and fga(out) == 2017, out
    rc, out = inject(c, "authz.write", {"writes": [{"user": "user:carol", "relation": "manager",
                                                    "object": "user:erin"}], "on_duplicate": "ignore"})
    assert rc == 0, out
    # the reply says what was done: nothing written, one already there
    assert {k: out["body"].get(k) for k in ("written", "deleted", "existing", "missing")} == \
        {"written": 0, "deleted": 0, "existing": 1, "missing": 0}, out
    r = c.ctl("authz", "write", "user:carol", "manager", "user:erin", "--ignore-existing")
    assert r.returncode == 0 and r.stdout == "written 0 tuples; 1 already there\n", r.stdout + r.stderr
    r = c.ctl("--json", "authz", "write", "user:dora", "manager", "user:erin", "--ignore-existing")
    assert r.returncode == 0 and json.loads(r.stdout) == {"ok": True, "written": 1, "existing": 0}, r.stdout
    r = c.ctl("authz", "delete", "user:dora", "manager", "user:erin", "--ignore-existing")
    assert r.returncode == 0 and r.stdout == "deleted 1 tuple\n", r.stdout + r.stderr
    r = c.ctl("authz", "delete", "user:dora", "manager", "user:erin", "--ignore-existing")
    assert r.returncode == 0 and r.stdout == "deleted 0 tuples; 1 already gone\n", r.stdout + r.stderr
    rc, out = inject(c, "authz.write", {"deletes": [{"user": "user:nobody", "relation": "manager",
                                                     "object": "user:erin"}]})
    assert fga(out) == 2017, out
    many = [{"user": "user:u%d" % i, "relation": "manager", "object": "user:erin"} for i in range(101)]
    rc, out = inject(c, "authz.write", {"writes": many})
    assert rc == 2 and out["error"]["code"] == "invalid", out
    rc, out = inject(c, "authz.write", {})
    assert rc == 2 and out["error"]["code"] == "invalid", out


@test
def bad_queries(c):
    rc, out = inject(c, "authz.check", {"tuple_key": {"user": "user:victor", "relation": "approver",
                                                      "object": "cost_center:engineering"}})
    assert rc == 2 and fga(out) == 2000, out  # the condition needs `amount`
    rc, out = inject(c, "authz.check", {"tuple_key": {"user": "user:victor", "relation": "approver",
                                                      "object": "cost_center:engineering"}, "context": {"amount": "abc"}})
    assert rc == 2 and fga(out) == 2000, out
    rc, out = inject(c, "authz.check", {"tuple_key": {"user": "user:x", "relation": "nosuch", "object": "cost_center:engineering"}})
    assert rc == 2 and fga(out) == 2000, out
    ct = [{"user": "agent:a%d" % i, "relation": "writer", "object": "cost_center:engineering"} for i in range(101)]
    rc, out = inject(c, "authz.check", {"tuple_key": {"user": "agent:a1", "relation": "writer", "object": "cost_center:engineering"},
                                        "contextual_tuples": ct})
    assert rc == 2 and out["error"]["code"] == "invalid", out
    rc, out = inject(c, "authz.check", {"tuple_key": {"user": "agent:a1", "relation": "writer", "object": "cost_center:engineering"},
                                        "contextual_tuples": [{"user": "user:x", "relation": "writer",
                                                               "object": "cost_center:engineering"}]})
    assert rc == 2 and fga(out) == 2027, out
    rc, out = inject(c, "authz.list_objects", {"user": "user:x", "relation": "viewer", "type": "nosuch"})
    assert fga(out) in (2021, 2000) and rc == (1 if fga(out) == 2021 else 2), (rc, out)  # not_found or invalid
    rc, out = inject(c, "authz.policy.write", {"policy": {"actions": {"x": {"permit_relation": 1}}}})
    assert rc == 2 and out["error"]["code"] == "invalid", out
    with open(os.path.join(EX, "policy.json")) as f:
        policy = json.load(f)
    policy["actions"]["po.write"]["note"] = [[[[[[[[[["typo"]]]]]]]]]]
    rc, out = inject(c, "authz.policy.write", {"policy": policy})
    assert rc == 2 and "unknown field 'note'" in out["error"]["message"], out
    rc, out = inject(c, "health", {})
    assert rc == 0


@test
def oversized_request_is_refused_and_service_stays_up(c):
    cl = c.client("authz")
    r = cl.call("authz.check", {"tuple_key": {"user": "u" * (1024 * 1024), "relation": "r", "object": "o:1"}})
    assert r["error"]["code"] == "too_large", r["error"]
    r = cl.call("health")
    assert r["ok"], r
    cl.close()


@test
def state_survives_a_crash(c):
    c.stop("authz", sig=signal.SIGKILL)
    c.start("authz")
    c.wait_healthy(["authz"])
    d = ok(c, "authz", "decide", "agent:po-drafter", "po.write", "cost_center:engineering", "--context", '{"amount": 520000}')
    assert [e["user"] for e in d["chain"]] == ["user:carol", "user:victor"], d


@test
def writes_are_whole_across_a_kill(c):
    # a client writes batches of 10 tuples back to back; authz is killed
    # mid-stream: after the restart every acknowledged batch is there, and
    # no batch is there in part
    import threading
    cl = c.client("authz", key_name="pyops", principal="ops:crash-writer", timeout_ms=1000)
    acked, sent, stop = [], [], threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            sent.append(i)
            r = cl.call("authz.write", {"writes": [{"user": "user:w%d_%d" % (i, j), "relation": "manager",
                                                    "object": "user:crash%d" % i} for j in range(10)]})
            if not (r and r["ok"]):
                break
            acked.append(i)
            i += 1
    t = threading.Thread(target=writer)
    t.start()
    time.sleep(0.6)
    c.stop("authz", sig=signal.SIGKILL)
    stop.set()
    t.join()
    cl.close()
    c.start("authz")
    c.wait_healthy(["authz"])
    assert len(acked) >= 5, "too few writes before the kill: %d" % len(acked)
    print("# %d batches acknowledged, %d sent before the kill" % (len(acked), len(sent)))
    cl = c.client("authz", key_name="pyops", principal="ops:crash-writer")
    for i in sent:
        r = cl.call("authz.read", {"tuple_key": {"object": "user:crash%d" % i}, "page_size": 100})
        assert r and r["ok"], r
        n = len(r["body"]["tuples"])
        assert n in (0, 10), "batch %d half-written: %d of 10 tuples" % (i, n)
        assert n == 10 or i not in acked, "acknowledged batch %d lost" % i
    cl.close()


@test
def long_list_objects_does_not_hold_up_checks(c):
    # a ListObjects that checks 20,000 candidates (all fail) takes tens of
    # ms: on the reactor (query_threads = 0) a Check sent after it waits
    # for it; on a worker thread (the default) the Check is answered first
    model = """model
  schema 1.1
type user
type doc
  relations
    define allowed: [user]
    define viewer: [user:*] and allowed
"""
    rc, out = inject(c, "authz.model.write", {"model": model})
    assert rc == 0, out
    cl = c.client("authz", key_name="pyops", principal="ops:loader", timeout_ms=5000)
    for b in range(200):
        r = cl.call("authz.write", {"writes": [{"user": "user:*", "relation": "viewer", "object": "doc:%d" % (b * 100 + i)}
                                               for i in range(100)]})
        assert r and r["ok"], r
    r = cl.call("authz.write", {"writes": [{"user": "user:anne", "relation": "allowed", "object": "doc:0"}]})
    assert r and r["ok"], r
    lo = {"user": "user:bob", "relation": "viewer", "type": "doc"}
    t0 = time.monotonic()
    r = cl.call("authz.list_objects", lo)
    took = time.monotonic() - t0
    assert r and r["ok"] and r["body"]["objects"] == [], r
    assert took > 0.01, "ListObjects too quick (%.1f ms) to show anything" % (took * 1000)

    def order():
        import msgpack
        import sanctum_client as sc
        slow = sc.envelope("authz.list_objects", lo)
        quick = sc.envelope("authz.check", {"tuple_key": {"user": "user:anne", "relation": "allowed", "object": "doc:0"}})
        for env in (slow, quick):
            cl.send_raw(msgpack.packb(env, use_bin_type=True))
        seen = []
        while len(seen) < 2:
            reply = cl.recv(5000)
            assert reply and reply["ok"], reply
            seen.append("list_objects" if reply["corr"] == slow["id"] else "check")
        return seen

    assert order() == ["check", "list_objects"]
    rc, out = inject(c, "stats", {})
    assert out["body"]["counters"]["requests_offloaded"] >= 2, out
    c.stop("authz")
    c.start("authz", env={"SANCTUM_AUTHZ_QUERY_THREADS": "0"})
    c.wait_healthy(["authz"])
    try:
        assert order() == ["list_objects", "check"]     # the hold-up the threads remove
    finally:
        cl.close()
        c.stop("authz")
        c.start("authz")
        c.wait_healthy(["authz"])
    print("# ListObjects over 20,000 candidates: %.0f ms" % (took * 1000))


def setup():
    c = Cluster(services=["authz"])
    c.start_all()
    return c


if __name__ == "__main__":
    sys.exit(run(setup, lambda c: c.close()))
