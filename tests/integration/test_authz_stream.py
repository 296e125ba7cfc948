#!/usr/bin/env python3
"""Integration: OpenFGA's StreamedListObjects on sanctum-authz's HTTP API,
streamed as the engine decides. A store with a big hierarchy (a root
folder anne can view, folders under it, documents under those, with long
ids so that the answer is megabytes): the first line arrives long before
the last; the lines are the objects the non-streamed ListObjects gives
(which stops at 1,000) and every one of them; a client that goes away
midway stops the query (the daemon says so, and its one query thread is
free at once for the next request); a reader that stops reading holds the
query thread for its allowance only, then gets OpenFGA's error line; and
errors in OpenFGA's shapes: before any line (a missing store, an unknown
type) the HTTP status with the error line as the body, after some (a
condition missing its parameters) a 200 stream ending with the error
line. OpenFGA's JavaScript SDK (@openfga/sdk, unmodified;
tests/js/openfga_stream.mjs) consumes the same streams."""
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from cluster import ROOT, Cluster  # noqa: E402
from harness import run, test  # noqa: E402

JS = os.path.join(ROOT, "tests", "js")
KEY = "sanctum-test-key-0123456789"
FOLDERS = 100
DOCS_PER = 300                          # 30,000 documents anne can view
PAD = "x" * 200                         # long ids: lines of about 240 bytes (7 MB in all)
N = FOLDERS * DOCS_PER

HIERARCHY = {"schema_version": "1.1", "type_definitions": [
    {"type": "user"},
    {"type": "folder",
     "relations": {"parent": {"this": {}},
                   "viewer": {"union": {"child": [
                       {"this": {}},
                       {"tupleToUserset": {"tupleset": {"relation": "parent"},
                                           "computedUserset": {"relation": "viewer"}}}]}}},
     "metadata": {"relations": {"parent": {"directly_related_user_types": [{"type": "folder"}]},
                                "viewer": {"directly_related_user_types": [{"type": "user"}]}}}},
    {"type": "doc",
     "relations": {"parent": {"this": {}},
                   "viewer": {"union": {"child": [
                       {"this": {}},
                       {"tupleToUserset": {"tupleset": {"relation": "parent"},
                                           "computedUserset": {"relation": "viewer"}}}]}}},
     "metadata": {"relations": {"parent": {"directly_related_user_types": [{"type": "folder"}]},
                                "viewer": {"directly_related_user_types": [
                                    {"type": "user"}, {"type": "user", "condition": "big_enough"}]}}}}],
    "conditions": {"big_enough": {"name": "big_enough", "expression": "x > 1",
                                  "parameters": {"x": {"type_name": "TYPE_NAME_INT"}}}}}


def call(c, method, path, body=None, token=KEY):
    req = urllib.request.Request(c.http_base + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=60) as f:
            return f.status, json.loads(f.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def doc(f, d):
    return "doc:%s-%03d-%03d" % (PAD, f, d)


def write(c, sid, tuples):
    for i in range(0, len(tuples), 100):
        keys = [{"user": u, "relation": r, "object": o} for u, r, o in tuples[i:i + 100]]
        st, out = call(c, "POST", "/stores/%s/write" % sid, {"writes": {"tuple_keys": keys}})
        assert st == 200, (st, out)


def new_store(c, name, tuples, conditional=()):
    st, out = call(c, "POST", "/stores", {"name": name})
    assert st == 201, (st, out)
    sid = out["id"]
    st, out = call(c, "POST", "/stores/%s/authorization-models" % sid, HIERARCHY)
    assert st == 201, (st, out)
    write(c, sid, tuples)
    for u, r, o, cond in conditional:
        st, out = call(c, "POST", "/stores/%s/write" % sid, {"writes": {"tuple_keys": [
            {"user": u, "relation": r, "object": o, "condition": {"name": cond}}]}})
        assert st == 200, (st, out)
    return sid


class Stream:
    """A StreamedListObjects request read line by line (http.client undoes
    the chunking), with the times each line came."""

    def __init__(self, c, sid, body, rcvbuf=None):
        host, port = c.http_base.split("//")[1].split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=60)
        self.conn.connect()
        if rcvbuf:
            self.conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.start = time.monotonic()
        self.conn.request("POST", "/stores/%s/streamed-list-objects" % sid, body=json.dumps(body),
                          headers={"Authorization": "Bearer " + KEY, "Content-Type": "application/json"})
        self.resp = self.conn.getresponse()
        self.status = self.resp.status

    def line(self):
        raw = self.resp.readline()
        return json.loads(raw) if raw.strip() else None

    def all(self):
        lines, times = [], []
        while True:
            one = self.line()
            if one is None:
                break
            lines.append(one)
            times.append(time.monotonic() - self.start)
        return lines, times

    def close(self):
        self.conn.close()


def objects_of(lines):
    assert all(set(one) == {"result"} for one in lines), [one for one in lines if "result" not in one][:3]
    return [one["result"]["object"] for one in lines]


def listing(c, sid, body):
    return call(c, "POST", "/stores/%s/list-objects" % sid, body)


ANNE_DOCS = {"type": "doc", "relation": "viewer", "user": "user:anne"}


@test
def first_line_long_before_the_last(c):
    s = Stream(c, c.big, ANNE_DOCS)
    assert s.status == 200 and s.resp.getheader("Transfer-Encoding") == "chunked", s.status
    lines, times = s.all()
    s.close()
    total = times[-1]
    print("# %d lines, first after %.3f s, last after %.3f s" % (len(lines), times[0], total))
    assert len(lines) == N, len(lines)
    assert total > 0.2, total                   # long enough to tell
    assert times[0] < total / 5, (times[0], total)
    # and spread over the listing, not in one burst at the end
    assert times[len(times) // 2] < total * 0.9, (times[len(times) // 2], total)


@test
def the_lines_are_list_objects_answer_without_its_cap(c):
    s = Stream(c, c.big, ANNE_DOCS)
    got = objects_of(s.all()[0])
    s.close()
    assert len(got) == len(set(got)) == N, len(got)        # each once
    assert set(got) == {doc(f, d) for f in range(FOLDERS) for d in range(DOCS_PER)}
    st, out = listing(c, c.big, ANNE_DOCS)                  # capped at 1,000: a part of them
    assert st == 200 and len(out["objects"]) == 1000, (st, len(out.get("objects", [])))
    assert set(out["objects"]) <= set(got)
    # below the cap, the same answer exactly; the folders, bob's (none), contextual tuples
    for body in ({"type": "folder", "relation": "viewer", "user": "user:anne"},
                 {"type": "doc", "relation": "viewer", "user": "user:bob"},
                 {"type": "doc", "relation": "viewer", "user": "user:carl",
                  "contextual_tuples": {"tuple_keys": [
                      {"user": "user:carl", "relation": "viewer", "object": "folder:f007"},
                      {"user": "user:carl", "relation": "viewer", "object": "doc:loose"}]}}):
        st, out = listing(c, c.big, body)
        assert st == 200, (st, out)
        s = Stream(c, c.big, body)
        got = objects_of(s.all()[0])
        s.close()
        assert sorted(got) == sorted(out["objects"]), (body, len(got), len(out["objects"]))
    assert len(got) == DOCS_PER + 1, len(got)


@test
def a_client_that_goes_away_stops_the_query(c):
    s = Stream(c, c.big, ANNE_DOCS, rcvbuf=262144)
    first = s.line()
    assert "result" in first, first
    s.conn.sock.shutdown(socket.SHUT_RDWR)
    s.close()
    t0 = time.monotonic()
    # the one query thread is free again at once: a listing needs it
    st, out = listing(c, c.big, {"type": "folder", "relation": "viewer", "user": "user:anne"})
    took = time.monotonic() - t0
    assert st == 200 and len(out["objects"]) == FOLDERS + 1, (st, out)
    assert took < 2.0, took
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        log = open(c.logs["authz"]).read()
        if "the client went away; the query ended" in log:
            break
        time.sleep(0.05)
    assert "the client went away; the query ended: request stopped: nobody waits for its answer" in log, \
        log[-2000:]
    assert c.alive("authz")
    st, out = call(c, "POST", "/stores/%s/check" % c.big,
                   {"tuple_key": {"user": "user:anne", "relation": "viewer", "object": doc(5, 5)}})
    assert (st, out) == (200, {"allowed": True, "resolution": ""}), (st, out)


@test
def a_reader_that_stops_reading_gets_an_error_line(c):
    """The stream's window, the pipe and the socket buffers fill; the query
    thread waits for the reader 10 s in all (S_STREAM_WAIT_MS), then the
    listing ends with OpenFGA's error line (DEADLINE_EXCEEDED, gRPC 4)."""
    s = Stream(c, c.big, ANNE_DOCS, rcvbuf=262144)
    assert "result" in s.line()
    time.sleep(12)
    lines, _ = s.all()
    s.close()
    assert "error" in lines[-1], lines[-1]
    assert lines[-1]["error"]["code"] == 4 and "too slowly" in lines[-1]["error"]["message"], lines[-1]
    assert len(lines) - 1 < N - 1, len(lines)               # it stopped: not everything came
    assert all("result" in one for one in lines[:-1])


@test
def a_stalled_stream_does_not_hold_up_a_stop(c):
    """SIGTERM while the query thread waits for a reader that stopped
    reading: the wait ends (zsys_interrupted), the daemon stops at once."""
    s = Stream(c, c.big, ANNE_DOCS, rcvbuf=262144)
    assert "result" in s.line()
    time.sleep(1.5)                             # the pipe full, the query thread waiting
    t0 = time.monotonic()
    c.stop("authz")
    took = time.monotonic() - t0
    s.close()
    assert took < 3.0, took
    c.start("authz")
    c.wait_healthy(["authz"])
    st, out = call(c, "POST", "/stores/%s/check" % c.big,
                   {"tuple_key": {"user": "user:anne", "relation": "viewer", "object": doc(5, 5)}})
    assert st == 200 and out["allowed"] is True, (st, out)


@test
def without_query_threads(c):
    """[authz] query_threads = 0: the listing runs on the reactor, which
    can move no line before it ends: a small answer streams whole, one of
    more than the pipe holds (64 KiB) ends with an error line saying why."""
    d = Cluster(services=["authz"])
    try:
        path = os.path.join(d.dir, "fga_keys")
        with open(path, "w") as f:
            f.write("tester %s\n" % KEY)
        with open(d.conf) as f:
            conf = f.read()
        with open(d.conf, "w") as f:
            f.write(conf.replace("[authz]\n", "[authz]\nhttp_keys = %s\nquery_threads = 0\n" % path, 1))
        port = [line for line in conf.split("[authz]")[1].splitlines() if line.startswith("http =")][0]
        d.http_base = "http://127.0.0.1:%s" % port.rsplit(":", 1)[1].strip()
        d.start_all()
        small = new_store(d, "small", [("user:anne", "viewer", "doc:%d" % i) for i in range(10)])
        s = Stream(d, small, ANNE_DOCS)
        lines, _ = s.all()
        s.close()
        assert s.status == 200 and sorted(objects_of(lines)) == sorted("doc:%d" % i for i in range(10)), lines
        many = new_store(d, "many", [("user:anne", "viewer", doc(0, i)) for i in range(400)])
        s = Stream(d, many, ANNE_DOCS)
        lines, _ = s.all()
        s.close()
        assert s.status == 200 and 0 < len(lines) - 1 < 400, (s.status, len(lines))
        assert lines[-1]["error"]["code"] == 14 and "query_threads = 0" in lines[-1]["error"]["message"], \
            lines[-1]
        assert d.alive("authz")
    finally:
        d.close()


@test
def errors_in_openfga_shapes(c):
    # before any line: the status, and the error line as the body
    s = Stream(c, "01ARZ3NDEKTSV4RRFFQ69G5FAV", ANNE_DOCS)
    body = s.resp.read()
    s.close()
    assert s.status == 404, (s.status, body)
    assert body.endswith(b"\n") and body.count(b"\n") == 1, body
    err = json.loads(body)
    assert set(err) == {"error"} and err["error"]["code"] == 5 and "store" in err["error"]["message"], err
    s = Stream(c, c.big, {"type": "nope", "relation": "viewer", "user": "user:anne"})
    err = json.loads(s.resp.read())
    s.close()
    assert s.status == 400 and err["error"]["code"] == 3, (s.status, err)
    assert err["error"]["message"] == "type 'nope' not found", err
    st, out = listing(c, c.big, {"type": "nope", "relation": "viewer", "user": "user:anne"})
    assert (st, out["code"], out["message"]) == (400, "type_not_found", err["error"]["message"]), out
    # after some lines: a 200 stream ending with the error line, as
    # ListObjects (400) fails on the conditional tuple
    s = Stream(c, c.cond, ANNE_DOCS)
    lines, _ = s.all()
    s.close()
    assert s.status == 200, s.status
    assert sorted(objects_of(lines[:-1])) == ["doc:a", "doc:b", "doc:c"], lines
    assert lines[-1]["error"]["code"] == 3, lines[-1]
    assert "context is missing parameters" in lines[-1]["error"]["message"], lines[-1]
    st, out = listing(c, c.cond, ANNE_DOCS)
    assert (st, out["code"]) == (400, "validation_error"), (st, out)
    assert out["message"] == lines[-1]["error"]["message"], (out, lines[-1])
    # with the context it needs, the same store streams to its end
    s = Stream(c, c.cond, dict(ANNE_DOCS, context={"x": 2}))
    lines, _ = s.all()
    s.close()
    assert sorted(objects_of(lines)) == ["doc:a", "doc:b", "doc:c", "doc:z"], lines
    # a bad body is the gateway's own (unary) error
    req = urllib.request.Request(c.http_base + "/stores/%s/streamed-list-objects" % c.big, method="POST",
                                 data=b"{not json")
    req.add_header("Authorization", "Bearer " + KEY)
    try:
        urllib.request.urlopen(req, timeout=10)
        raise AssertionError("a bad body was accepted")
    except urllib.error.HTTPError as e:
        assert e.code == 400 and json.loads(e.read())["code"] == "validation_error"


@test
def openfga_js_sdk_streams(c):
    if not shutil.which("node"):
        print("# skip: node is not installed")
        return
    if not os.path.isdir(os.path.join(JS, "node_modules", "@openfga", "sdk")):
        r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS, capture_output=True, text=True,
                           timeout=180)
        if r.returncode:
            print("# skip: npm could not install @openfga/sdk (registry unreachable?)")
            return
    r = subprocess.run(["node", os.path.join(JS, "openfga_stream.mjs"), c.http_base, KEY, c.big, c.cond,
                        str(N)], capture_output=True, text=True, timeout=180)
    print("".join("# " + line + "\n" for line in r.stdout.splitlines()), end="")
    assert r.returncode == 0 and " 0 failed" in r.stdout, r.stdout + r.stderr
    assert c.alive("authz")


def setup():
    c = Cluster(services=["authz"])
    path = os.path.join(c.dir, "fga_keys")
    with open(path, "w") as f:
        f.write("tester %s\n" % KEY)
    with open(c.conf) as f:
        conf = f.read()
    with open(c.conf, "w") as f:
        f.write(conf.replace("[authz]\n", "[authz]\nhttp_keys = %s\n" % path, 1)
                .replace("map_size_mb = 64", "map_size_mb = 1024"))
    port = [line for line in conf.split("[authz]")[1].splitlines() if line.startswith("http =")][0]
    c.http_base = "http://127.0.0.1:%s" % port.rsplit(":", 1)[1].strip()
    c.start_all()
    tuples = [("user:anne", "viewer", "folder:root")]
    tuples += [("folder:root", "parent", "folder:f%03d" % f) for f in range(FOLDERS)]
    tuples += [("folder:f%03d" % f, "parent", doc(f, d)) for f in range(FOLDERS) for d in range(DOCS_PER)]
    tuples += [("user:bob", "viewer", "folder:nowhere")]
    c.big = new_store(c, "big", tuples)
    c.cond = new_store(c, "cond", [("user:anne", "viewer", "doc:%s" % d) for d in "abc"],
                       [("user:anne", "viewer", "doc:z", "big_enough")])
    return c


def teardown(c):
    if not c.alive("authz"):
        print("# authz died; its log ends:\n" + "".join("# " + line for line in open(c.logs["authz"]).readlines()[-20:]))
    c.close()


if __name__ == "__main__":
    sys.exit(run(setup, teardown))
