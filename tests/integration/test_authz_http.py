#!/usr/bin/env python3
"""Integration: sanctum-authz's OpenFGA HTTP API (v1). OpenFGA's own
JavaScript SDK (@openfga/sdk, unmodified; tests/js/openfga.mjs) drives the
procurement example through it; the same request over HTTP and over the bus
gets the same answer; pre-shared keys; errors in OpenFGA's shape; many
stores (tenants), over both."""
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from cluster import ROOT, Cluster  # noqa: E402
from harness import run, test  # noqa: E402

EX = os.path.join(ROOT, "ops", "examples", "procurement")
JS = os.path.join(ROOT, "tests", "js")
KEY = "sanctum-test-key-0123456789"


def http(c, method, path, body=None, token=KEY):
    req = urllib.request.Request(c.http_base + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=10) as f:
            return f.status, json.loads(f.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def inject(c, type_, body):
    r = c.ctl("--json", "inject", type_, json.dumps(body), "--service", "authz")
    reply = json.loads(r.stdout) if r.stdout.strip() else {}
    return r.returncode, reply.get("body") if reply.get("ok") else reply


def store(c):
    st, out = http(c, "GET", "/stores")
    assert st == 200, (st, out)
    return out["stores"][0]["id"]


@test
def no_key_no_access(c):
    for token in (None, "wrong-key-wrong-key-wrong", KEY + "x", KEY[:-1]):
        st, out = http(c, "GET", "/stores", token=token)
        assert st == 401, (token, st, out)
        assert set(out) == {"code", "message"}, out
    st, out = http(c, "GET", "/stores", token=KEY)
    assert st == 200 and len(out["stores"]) == 1, out


@test
def the_store_keeps_its_id_across_restarts(c):
    before = store(c)
    c.stop("authz")
    c.start("authz")
    c.wait_healthy(["authz"])
    assert store(c) == before
    st, out = http(c, "GET", "/stores/" + before)
    assert st == 200 and out["id"] == before and out["name"] == "default", out
    st, out = http(c, "POST", "/stores/01ARZ3NDEKTSV4RRFFQ69G5FAV/check",
                   {"tuple_key": {"user": "user:a", "relation": "r", "object": "t:1"}})
    assert (st, out["code"]) == (404, "store_id_not_found"), (st, out)


@test
def a_bad_key_file_refuses_to_start(c):
    path = os.path.join(c.dir, "fga_keys")
    good = open(path).read()
    try:
        for bad, why in (("short\n", "a key is one word of at least 16 bytes"),
                         ("bad:name %s\n" % KEY, "a name is 1..60 of")):
            c.stop("authz")
            with open(path, "w") as f:
                f.write(bad)
            p = c.start("authz")
            assert p.wait(10) == 1, bad
            assert why in open(c.logs["authz"]).read(), bad
    finally:
        with open(path, "w") as f:
            f.write(good)
        c.start("authz")
        c.wait_healthy(["authz"])
    assert http(c, "GET", "/stores")[0] == 200


@test
def openfga_js_sdk(c):
    if not shutil.which("node"):
        print("# skip: node is not installed")
        return
    if not os.path.isdir(os.path.join(JS, "node_modules", "@openfga", "sdk")):
        r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS, capture_output=True, text=True,
                           timeout=180)
        if r.returncode:
            print("# skip: npm could not install @openfga/sdk (registry unreachable?)")
            return
    # the procurement model as OpenFGA's API JSON: the DSL compiled by authz
    # (over the bus), read back over HTTP
    r = c.ctl("--json", "authz", "model", "write", os.path.join(EX, "model.fga"))
    assert r.returncode == 0, r.stderr
    mid = json.loads(r.stdout)["authorization_model_id"]
    st, out = http(c, "GET", "/stores/%s/authorization-models/%s" % (store(c), mid))
    assert st == 200 and out["authorization_model"]["id"] == mid, (st, out)
    model = out["authorization_model"]
    del model["id"]
    path = os.path.join(c.dir, "model.json")
    with open(path, "w") as f:
        json.dump(model, f)
    r = subprocess.run(["node", os.path.join(JS, "openfga.mjs"), c.http_base, KEY, path,
                        os.path.join(EX, "tuples.json")], capture_output=True, text=True, timeout=120)
    print("".join("# " + line + "\n" for line in r.stdout.splitlines()), end="")
    assert r.returncode == 0 and " 0 failed" in r.stdout, r.stdout + r.stderr


@test
def same_answer_over_http_and_bus(c):
    sid = store(c)
    rc, out = inject(c, "authz.model.read", {})
    if rc != 0:   # the SDK test did not run: load the example over the bus
        assert c.ctl("authz", "model", "write", os.path.join(EX, "model.fga")).returncode == 0
        assert c.ctl("authz", "write", "--file", os.path.join(EX, "tuples.json")).returncode == 0
    cases = [
        ("check", "authz.check", {"tuple_key": {"user": "user:victor", "relation": "approver",
                                                "object": "cost_center:engineering"}, "context": {"amount": 7}}),
        ("check", "authz.check", {"tuple_key": {"user": "user:carol", "relation": "approver",
                                                "object": "cost_center:engineering"}, "context": {"amount": 70000}}),
        ("list-objects", "authz.list_objects", {"user": "agent:po-drafter", "relation": "writer",
                                                "type": "cost_center"}),
        ("expand", "authz.expand", {"tuple_key": {"relation": "approver", "object": "cost_center:engineering"}}),
        ("read", "authz.read", {"tuple_key": {"object": "cost_center:engineering", "relation": "member"}}),
        ("batch-check", "authz.batch_check", {"checks": [
            {"tuple_key": {"user": "user:erin", "relation": "member", "object": "cost_center:engineering"},
             "correlation_id": "1"}]}),
    ]
    for op, type_, body in cases:
        st, h = http(c, "POST", "/stores/%s/%s" % (sid, op), body)
        rc, b = inject(c, type_, body)
        assert st == 200 and rc == 0, (op, st, h, rc, b)
        if op == "check":
            h.pop("resolution")
        assert h == b, (op, h, b)
    # an error: the same engine error, OpenFGA's name over HTTP
    bad = {"tuple_key": {"user": "user:erin", "relation": "no_such", "object": "cost_center:engineering"}}
    st, h = http(c, "POST", "/stores/%s/check" % sid, bad)
    rc, b = inject(c, "authz.check", bad)
    assert st == 400 and rc != 0, (st, h, rc, b)
    assert h["message"] == b["error"]["message"], (h, b)
    assert h["code"] == b["error"]["fga_name"], (h, b)
    # the store: named over the bus too, another store is not found
    key = {"tuple_key": {"user": "user:erin", "relation": "member", "object": "cost_center:engineering"}}
    rc, b = inject(c, "authz.check", dict(key, store_id=sid))
    assert rc == 0 and b == {"allowed": True}, b
    rc, b = inject(c, "authz.check", dict(key, store_id="01ARZ3NDEKTSV4RRFFQ69G5FAV"))
    assert rc != 0 and b["error"]["code"] == "not_found" and b["error"]["fga_code"] == 5002, b
    st, h = http(c, "POST", "/stores/01ARZ3NDEKTSV4RRFFQ69G5FAV/check", key)
    assert st == 404 and h["code"] == "store_id_not_found" and h["message"] == b["error"]["message"], (st, h)
    st, h = http(c, "POST", "/stores/short/check", key)
    assert st == 400 and h["code"] == "validation_error", (st, h)
    # the catalogue's limits apply to both: a tuple_key with one member
    st, h = http(c, "POST", "/stores/%s/check" % sid, {"tuple_key": {"user": "user:erin"}})
    rc, b = inject(c, "authz.check", {"tuple_key": {"user": "user:erin"}})
    assert st == 400 and h["code"] == "validation_error" and h["message"] == b["error"]["message"], (h, b)


@test
def bad_requests(c):
    sid = store(c)
    req = urllib.request.Request(c.http_base + "/stores/%s/check" % sid, method="POST", data=b"{not json")
    req.add_header("Authorization", "Bearer " + KEY)
    try:
        urllib.request.urlopen(req, timeout=10)
        assert False, "a body that is not JSON was taken"
    except urllib.error.HTTPError as e:
        out = json.loads(e.read())
        assert e.code == 400 and out["code"] == "validation_error", (e.code, out)
    st, out = http(c, "POST", "/stores/%s/no-such-thing" % sid, {})
    assert st == 404 and out["code"] == "undefined_endpoint", (st, out)
    st, out = http(c, "GET", "/stores/%s/check" % sid)
    assert st == 405, (st, out)
    st, out = http(c, "GET", "/stores/%s/changes?page_size=abc" % sid)
    assert st == 400 and out["code"] == "validation_error", (st, out)


@test
def many_stores_over_the_bus_and_http(c):
    """Stores made over the bus and over HTTP are the same kind of thing;
    each keeps its own model and tuples; a request names its store, one
    that names none is the default's; the policy names the store it
    decides on; a deleted store is gone both ways at once."""
    default = store(c)
    rc, x = inject(c, "authz.store.create", {"name": "tenant-x"})
    assert rc == 0 and x["name"] == "tenant-x" and len(x["id"]) == 26, x
    st, y = http(c, "POST", "/stores", {"name": "tenant-y"})
    assert st == 201 and y["name"] == "tenant-y", (st, y)
    xid, yid = x["id"], y["id"]
    # the same store over both
    st, h = http(c, "GET", "/stores/" + xid)
    rc, b = inject(c, "authz.store.get", {"store_id": xid})
    assert st == 200 and rc == 0 and h == b == x, (h, b, x)
    # listed the same way both ways, a page at a time
    st, h = http(c, "GET", "/stores?page_size=2")
    rc, b = inject(c, "authz.store.list", {"page_size": 2})
    assert st == 200 and rc == 0 and h == b, (h, b)
    assert h["stores"][0]["id"] == default and h["continuation_token"], h
    rest = inject(c, "authz.store.list", {"continuation_token": h["continuation_token"]})[1]
    assert [s["id"] for s in rest["stores"]][-2:] == [xid, yid] and rest["continuation_token"] == "", rest
    # x gets the procurement model over the bus, y over HTTP; tuples differ
    with open(os.path.join(EX, "model.fga")) as f:
        dsl = f.read()
    rc, b = inject(c, "authz.model.write", {"store_id": xid, "model": dsl})
    assert rc == 0, b
    mid = b["authorization_model_id"]
    st, h = http(c, "GET", "/stores/%s/authorization-models/%s" % (xid, mid))
    assert st == 200, h
    model = h["authorization_model"]
    del model["id"]
    st, h = http(c, "POST", "/stores/%s/authorization-models" % yid, model)
    assert st == 201, h
    st, h = http(c, "GET", "/stores/%s/authorization-models/%s" % (yid, mid))
    assert st == 400 and h["code"] == "authorization_model_not_found", (st, h)  # x's model is not y's
    with open(os.path.join(EX, "tuples.json")) as f:
        tuples = json.load(f)
    rc, b = inject(c, "authz.write", {"store_id": xid, "writes": tuples})
    assert rc == 0, b
    st, h = http(c, "POST", "/stores/%s/write" % yid,
                 {"writes": {"tuple_keys": [{"user": "user:mallory", "relation": "member",
                                             "object": "cost_center:engineering"}]}})
    assert st == 200, h
    key = lambda u: {"tuple_key": {"user": u, "relation": "member", "object": "cost_center:engineering"}}
    for sid, who, want in ((xid, "user:erin", True), (xid, "user:mallory", False),
                           (yid, "user:erin", False), (yid, "user:mallory", True)):
        st, h = http(c, "POST", "/stores/%s/check" % sid, key(who))
        rc, b = inject(c, "authz.check", dict(key(who), store_id=sid))
        assert st == 200 and rc == 0 and h["allowed"] == b["allowed"] == want, (sid, who, h, b)
    # the changelog with start_time: the same page both ways
    st, h = http(c, "GET", "/stores/%s/changes?start_time=2000-01-01T00:00:00Z" % yid)
    rc, b = inject(c, "authz.read_changes", {"store_id": yid, "start_time": "2000-01-01T00:00:00Z"})
    assert st == 200 and rc == 0 and h == b and len(h["changes"]) == 1, (h, b)
    rc, b = inject(c, "authz.read_changes", {"store_id": yid, "start_time": "2999-01-01T00:00:00+02:00"})
    assert rc == 0 and b["changes"] == [], b
    rc, b = inject(c, "authz.read_changes", {"store_id": yid, "start_time": "now"})
    assert rc != 0 and b["error"]["fga_code"] == 2000, b
    # the policy names its store: decide without store_id decides there
    with open(os.path.join(EX, "policy.json")) as f:
        policy = json.load(f)
    rc, b = inject(c, "authz.policy.write", {"policy": dict(policy, store_id="01ARZ3NDEKTSV4RRFFQ69G5FAV")})
    assert rc != 0 and b["error"]["code"] == "invalid" and "names no store" in b["error"]["message"], b
    rc, b = inject(c, "authz.policy.write", {"policy": dict(policy, store_id=xid)})
    assert rc == 0, b
    ask = {"principal": "agent:po-drafter", "action": "po.write", "resource": "cost_center:engineering",
           "context": {"amount": 500}}
    rc, b = inject(c, "authz.decide", ask)
    assert rc == 0 and b == {"decision": "allow"}, b
    rc, b = inject(c, "authz.decide", dict(ask, store_id=yid))
    assert rc == 0 and b["decision"] == "deny", b           # y has no writer tuple
    rc, ev = inject(c, "events.replay", {"from_seq": 1})
    decided = [e["body"] for e in ev["events"] if e["type"] == "authz.decided"]
    assert [d["store_id"] for d in decided[-2:]] == [xid, yid], decided[-2:]
    # the default store cannot be deleted; y can, and is gone both ways
    rc, b = inject(c, "authz.store.delete", {"store_id": default})
    assert rc != 0 and b["error"]["code"] == "invalid", b
    st, h = http(c, "DELETE", "/stores/" + yid)
    assert st == 204, (st, h)
    rc, b = inject(c, "authz.check", dict(key("user:mallory"), store_id=yid))
    assert rc != 0 and b["error"]["fga_code"] == 5002, b
    st, h = http(c, "POST", "/stores/%s/check" % yid, key("user:mallory"))
    assert st == 404 and h["code"] == "store_id_not_found", (st, h)
    rc, b = inject(c, "authz.store.delete", {"store_id": yid})
    assert rc != 0 and b["error"]["code"] == "not_found", b
    assert yid not in [s["id"] for s in inject(c, "authz.store.list", {})[1]["stores"]]
    # x and the default are untouched, and stay so across a restart
    c.stop("authz")
    c.start("authz")
    c.wait_healthy(["authz"])
    rc, b = inject(c, "authz.check", dict(key("user:erin"), store_id=xid))
    assert rc == 0 and b["allowed"] is True, b
    rc, b = inject(c, "authz.check", dict(key("user:mallory"), store_id=yid))
    assert rc != 0 and b["error"]["fga_code"] == 5002, b
    rc, b = inject(c, "authz.decide", ask)                 # still the policy's store
    assert rc == 0 and b == {"decision": "allow"}, b
    assert store(c) == default


@test
def modular_model_in_its_own_store_with_sanctumctl(c):
    """sanctumctl: a store made, a modular model (fga.mod) written to it,
    tuples and a check there (--store), the model read back over HTTP with
    its modules; then the store deleted."""
    r = c.ctl("--json", "authz", "store", "create", "modular")
    assert r.returncode == 0, r.stderr
    sid = json.loads(r.stdout)["id"]
    mod = os.path.join(c.dir, "modular")
    os.makedirs(os.path.join(mod, "team"), exist_ok=True)
    with open(os.path.join(mod, "fga.mod"), "w") as f:
        f.write("schema: '1.2'\ncontents:\n  - core.fga\n  - team/docs.fga\n")
    with open(os.path.join(mod, "core.fga"), "w") as f:
        f.write("module core\n\ntype user\n\ntype doc\n  relations\n    define owner: [user]\n")
    with open(os.path.join(mod, "team", "docs.fga"), "w") as f:
        f.write("module docs\n\nextend type doc\n  relations\n    define viewer: [user] or owner\n")
    r = c.ctl("--json", "authz", "--store", sid, "model", "write", os.path.join(mod, "fga.mod"))
    assert r.returncode == 0, r.stderr
    mid = json.loads(r.stdout)["authorization_model_id"]
    st, h = http(c, "GET", "/stores/%s/authorization-models/%s" % (sid, mid))
    assert st == 200 and h["authorization_model"]["schema_version"] == "1.2", (st, h)
    doc = [t for t in h["authorization_model"]["type_definitions"] if t["type"] == "doc"][0]
    assert doc["metadata"]["module"] == "core", doc
    assert doc["metadata"]["relations"]["viewer"]["source_info"]["file"] == "team/docs.fga", doc
    assert c.ctl("authz", "--store", sid, "write", "user:anne", "owner", "doc:1").returncode == 0
    r = c.ctl("--json", "authz", "--store", sid, "check", "user:anne", "viewer", "doc:1")
    assert r.returncode == 0 and json.loads(r.stdout)["allowed"] is True, (r.stdout, r.stderr)
    # the default store has no such tuple
    rc, b = inject(c, "authz.read", {"tuple_key": {"object": "doc:1"}})
    assert rc != 0 or b["tuples"] == [], b
    # a module redefining its type's relation: refused before anything is sent
    with open(os.path.join(mod, "team", "docs.fga"), "w") as f:
        f.write("module docs\n\nextend type doc\n  relations\n    define owner: [user]\n")
    r = c.ctl("authz", "--store", sid, "model", "write", os.path.join(mod, "fga.mod"))
    assert r.returncode != 0 and "team/docs.fga:5:12: relation owner already exists on type doc" in r.stderr, \
        r.stderr
    assert c.ctl("authz", "--store", sid, "store", "delete").returncode == 0
    r = c.ctl("--json", "authz", "--store", sid, "check", "user:anne", "viewer", "doc:1")
    assert r.returncode != 0, r.stdout


def setup():
    c = Cluster(services=["authz"])
    path = os.path.join(c.dir, "fga_keys")
    with open(path, "w") as f:
        f.write("# pre-shared keys\ntester %s\n" % KEY)
    with open(c.conf) as f:
        conf = f.read()
    with open(c.conf, "w") as f:
        f.write(conf.replace("[authz]\n", "[authz]\nhttp_keys = %s\n" % path, 1))
    port = [line for line in conf.split("[authz]")[1].splitlines() if line.startswith("http =")][0]
    c.http_base = "http://127.0.0.1:%s" % port.rsplit(":", 1)[1].strip()
    c.start_all()
    return c


if __name__ == "__main__":
    sys.exit(run(setup, lambda c: c.close()))
