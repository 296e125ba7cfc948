#!/usr/bin/env python3
"""Integration: retries of requests with effects get their first answer
(PROTOCOL.md 6.2), and what a client can make a service hold stays bounded.

Real daemons (sanctum-authz) on loopback, raw frames from the Python client:
- an acknowledged authz.write, authz killed with SIGKILL and restarted: the
  retry (the same frame) gets the first answer, not conflict (2017);
- a flood of 20,050 requests from another allow-listed key does not push
  out the operator's remembered reply (it is answered from memory);
- the same id with another body is refused conflict, saying why;
- with writer_thread = false, model, tuple and policy writes and decisions
  (committed on the reactor) get their first answer after a SIGKILL too;
- 600 echo requests of ~1 MiB, from a client that reads its replies and
  from one that never does: the service's RSS stays under a stated bound.
"""
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from cluster import ROOT, Cluster  # noqa: E402
from harness import run, test  # noqa: E402

EX = os.path.join(ROOT, "ops", "examples", "procurement")
MIB = 1 << 20
# The bound stated for RSS (see the two memory tests): the service's own
# ~20 MB, its dedupe memory (dedupe_principal_kb 16 MiB per principal),
# the incoming queue of one connection (queue_kb 32 MiB), and, for the
# client that never reads, 256 replies queued to it (the ROUTER's outgoing
# high-water mark at max_frame 1 MiB). Unbounded, the reading flood alone
# held ~630 MB, the non-reading one twice that.
RSS_BOUND_READING = 150 * MIB
RSS_BOUND_NOT_READING = 420 * MIB


def rss(c, name):
    with open("/proc/%d/status" % c.procs[name].pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def counter(client, name):
    reply = client.call("stats", {})
    assert reply and reply["ok"], reply
    return reply["body"]["counters"].get(name, 0)


def write_body(user, obj):
    return {"writes": [{"user": user, "relation": "member", "object": obj}]}


def restart(c, sig):
    c.stop("authz", sig=sig)
    c.start("authz")
    c.wait_healthy(["authz"])


@test
def retried_write_after_sigkill_gets_first_answer(c):
    op = c.client("authz", "operator", "ops:operator", timeout_ms=3000)
    rid, frame = op.frame("authz.write", write_body("user:anne", "cost_center:d1"))
    first = op.call_raw(frame, rid)
    assert first and first["ok"], first
    restart(c, signal.SIGKILL)
    op.close()
    op = c.client("authz", "operator", "ops:operator", timeout_ms=3000)
    again = op.call_raw(frame, rid)
    assert again and again["ok"], again                    # not conflict 2017
    assert again["corr"] == rid and again["body"] == first["body"], (first, again)
    # the same id with another body: conflict, saying so, even now
    _, other = op.frame("authz.write", write_body("user:bob", "cost_center:d1"), request_id=rid)
    refused = op.call_raw(other, rid)
    assert refused and not refused["ok"] and refused["error"]["code"] == "conflict", refused
    assert "different request" in refused["error"]["message"], refused
    assert "fga_code" not in refused["error"], refused
    # a new id for the same tuple is a new write: the tuple exists (2017)
    dup = op.call("authz.write", write_body("user:anne", "cost_center:d1"))
    assert dup and dup["error"]["fga_code"] == 2017, dup
    op.close()


@test
def flood_from_another_key_does_not_push_out_the_operator(c):
    op = c.client("authz", "operator", "ops:operator", timeout_ms=3000)
    rid, frame = op.frame("authz.write", write_body("user:carl", "cost_center:d2"))
    first = op.call_raw(frame, rid)
    assert first and first["ok"], first
    # 20,050 requests with effects from an external key (refused: it may
    # not write; each refusal is remembered for its retries, as its own)
    flood = c.client("authz", "flood", "ext:flooder", timeout_ms=5000)
    sent = got = 0
    t0 = time.monotonic()
    while sent < 20050:
        for _ in range(min(500, 20050 - sent)):
            flood.send_raw(op.frame("authz.write", write_body("user:x", "cost_center:d%d" % sent))[1])
            sent += 1
        while got < sent - 200:
            reply = flood.recv(5000)
            assert reply is not None, "flood reply %d missing" % got
            got += 1
    while got < sent:
        assert flood.recv(5000) is not None
        got += 1
    print("# 20,050 requests from ext:flooder in %.1f s" % (time.monotonic() - t0))
    recorded = counter(op, "requests_duplicate_recorded")
    again = op.call_raw(frame, rid)
    assert again and again["ok"] and again["body"] == first["body"], again
    # answered from memory: the flood evicted its own entries only
    assert counter(op, "requests_duplicate_recorded") == recorded
    assert counter(op, "dedupe_evicted") >= 20050 - 5000
    flood.close()
    op.close()


@test
def writes_on_the_reactor_are_recorded_too(c):
    """writer_thread = false: authz's model, tuple and policy writes and
    decisions commit on the reactor (bus_request_commit / _record)."""
    d = Cluster(services=["authz"], extra_config="[authz]\nwriter_thread = false\n")
    try:
        d.start_all()
        op = d.client("authz", "operator", "ops:operator", timeout_ms=3000)
        with open(os.path.join(EX, "model.fga")) as f:
            model = f.read()
        with open(os.path.join(EX, "policy.json")) as f:
            policy = json.load(f)
        frames = [op.frame("authz.model.write", {"model": model}),
                  op.frame("authz.write", write_body("user:anne", "cost_center:r1")),
                  op.frame("authz.policy.write", {"policy": policy}),
                  op.frame("authz.decide", {"principal": "agent:nobody", "action": "po.write",
                                            "resource": "cost_center:r1", "context": {"amount": 5}})]
        first = [op.call_raw(frame, rid) for rid, frame in frames]
        assert all(r and r["ok"] for r in first), first
        seq = op.call("health", {})["body"]["last_seq"]
        op.close()
        restart(d, signal.SIGKILL)
        op = d.client("authz", "operator", "ops:operator", timeout_ms=3000)
        again = [op.call_raw(frame, rid) for rid, frame in frames]
        for a, b in zip(first, again):
            assert b and b["ok"] and b["body"] == a["body"], (a, b)
        # nothing done twice: only service.started was published since
        assert op.call("health", {})["body"]["last_seq"] == seq + 1
        op.close()
    finally:
        d.close()


def echo_flood(c, client, n, read):
    data = "x" * (MIB - 4096)
    for i in range(n):
        client.send_raw(client.frame("echo", {"data": data})[1])
        if read:
            reply = client.recv(10000)
            assert reply and reply["ok"], reply


def wait_handled(c, watcher, before, n, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if counter(watcher, "requests_ok") + counter(watcher, "requests_error") >= before + n:
            return
        time.sleep(0.5)
    raise AssertionError("the service did not handle %d requests in time" % n)


@test
def echo_flood_memory_is_bounded(c):
    watcher = c.client("authz", "operator", "ops:operator", timeout_ms=5000)
    start = rss(c, "authz")
    reader = c.client("authz", "echoer", "ext:echoer", timeout_ms=10000)
    echo_flood(c, reader, 600, read=True)
    after_reading = rss(c, "authz")
    print("# RSS: %.0f MB at start, %.0f MB after 600 echoes of ~1 MiB (read)"
          % (start / 1e6, after_reading / 1e6))
    assert counter(watcher, "dedupe_bytes") <= (64 << 20)
    assert after_reading < RSS_BOUND_READING, after_reading
    reader.close()

    # a client that never reads its replies
    before = counter(watcher, "requests_ok") + counter(watcher, "requests_error")
    # (its socket takes 1 reply and 64 KiB, so replies back up in the service)
    silent = c.client("authz", "silent", "ext:silent", timeout_ms=10000, rcvhwm=1, rcvbuf=65536)
    echo_flood(c, silent, 600, read=False)
    wait_handled(c, watcher, before + 2, 600)     # +2: the counter calls themselves
    time.sleep(1)
    peak = rss(c, "authz")
    print("# RSS: %.0f MB after 600 more from a client that never reads" % (peak / 1e6))
    assert peak < RSS_BOUND_NOT_READING, peak
    health = watcher.call("health", {})
    assert health and health["ok"], health
    silent.close()
    watcher.close()


def setup():
    c = Cluster(services=["authz"])
    c.start_all()
    c.ctl("--json", "authz", "model", "write", os.path.join(EX, "model.fga"), check=True)
    return c


if __name__ == "__main__":
    sys.exit(run(setup, lambda c: c.close()))
