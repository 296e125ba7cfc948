#!/usr/bin/env python3
"""Integration: the auditor follows every other service into its log (real
daemons). Every event of every publisher (lifecycle events, authz's tuple
writes and decisions, bursts of echo.seen) is in the log exactly once,
keyed by (pub, seq), and every seq 1..last_seq of every publisher is
accounted for: across the auditor killed (SIGKILL) in the middle of a burst
and restarted, and across a publisher killed and restarted. The publishers
keep only 1 event beyond what the auditor acknowledged (outbox_keep = 1),
so an acknowledgement before the event was stored would show as a gap: the
outbox trim contract is checked by the absence of gaps. A publisher with a
tiny outbox_max while the auditor is down loses events: a gap entry names
the exact range. The Merkle root of the whole log is recomputed here with
hashlib (RFC 6962) from the entries' bytes and compared with the signed
head."""
import hashlib
import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from cluster import ROOT, SERVICES, Cluster  # noqa: E402
from harness import run, test  # noqa: E402
import msgpack  # noqa: E402
import sanctum_client as sc  # noqa: E402

EX = os.path.join(ROOT, "ops", "examples", "procurement")
PUBLISHERS = [n for n in SERVICES if n != "auditor"]


# ---- RFC 6962, written from the RFC -----------------------------------
def sha(b):
    return hashlib.sha256(b).digest()


def mth(leaves):
    n = len(leaves)
    if n == 0:
        return sha(b"")
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return sha(b"\x01" + mth(leaves[:k]) + mth(leaves[k:]))


def canonical(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# ---- the log as read over the bus -------------------------------------
class Log:
    """The entries read so far (their bytes and parsed form), with the
    (pub, seq) index computed here."""

    def __init__(self, c):
        self.c = c
        self.cl = c.client("auditor", key_name="ops-reader", principal="ops:reader")
        self.raw = []

    def reconnect(self):
        self.cl.close()
        self.cl = self.c.client("auditor", key_name="ops-reader", principal="ops:reader")

    def size(self):
        r = self.cl.call("audit.head", {}, timeout_ms=5000)
        assert r and r["ok"], r
        return r["body"]["size"], bytes.fromhex(r["body"]["root"])

    def sync(self):
        """Read every entry not read yet (64 requests in flight)."""
        size, _ = self.size()
        want = list(range(len(self.raw), size))
        got, pending = {}, {}
        while want or pending:
            while want and len(pending) < 64:
                i = want.pop(0)
                env = sc.envelope("audit.entry", {"index": i})
                self.cl.send_raw(msgpack.packb(env, use_bin_type=True))
                pending[env["id"]] = i
            reply = self.cl.recv(5000)
            assert reply is not None, "no reply to audit.entry"
            i = pending.pop(reply.get("corr"), None)
            if i is None:
                continue
            assert reply["ok"], reply
            entry = reply["body"]["entry"].encode()
            assert reply["body"]["leaf_hash"] == sha(b"\x00" + entry).hex(), i
            got[i] = entry
        self.raw.extend(got[i] for i in sorted(got))
        return size

    def entries(self):
        return [json.loads(b) for b in self.raw]

    def coverage(self):
        """pub -> {seq: [indexes]} over events and gaps; and the gaps."""
        cov, gaps = {}, []
        for i, e in enumerate(self.entries()):
            if e["kind"] == "event":
                cov.setdefault(e["pub"], {}).setdefault(e["seq"], []).append(i)
            elif e["kind"] == "gap":
                gaps.append(e)
                for s in range(e["from_seq"], e["to_seq"] + 1):
                    cov.setdefault(e["pub"], {}).setdefault(s, []).append(i)
        return cov, gaps

    def verify_root(self):
        size, root = self.size()
        self.sync()
        assert len(self.raw) == size
        assert mth([sha(b"\x00" + b) for b in self.raw]) == root, "the signed head's root is not the log's"
        return size


def last_seqs(c, names):
    """Each publisher's last_seq from its health."""
    out = {}
    for n in names:
        rc, h = c.ctl_json("health", n)
        assert rc == 0 and h["services"][n]["state"] == "ok", h
        out["svc:" + n] = h["services"][n]["last_seq"]
    return out


def caught_up(log, c, names, timeout=60):
    """Wait until every seq 1..last_seq of every publisher in names is in
    the log; then check each is there exactly once."""
    deadline = time.monotonic() + timeout
    while True:
        want = last_seqs(c, names)
        log.sync()
        cov, gaps = log.coverage()
        missing = {p: [s for s in range(1, last + 1) if s not in cov.get(p, {})][:5] for p, last in want.items()}
        missing = {p: m for p, m in missing.items() if m}
        if not missing:
            break
        assert time.monotonic() < deadline, "the log lacks %s (gaps: %s)" % (missing, gaps)
        time.sleep(0.2)
    twice = [(p, s, ix) for p, seqs in cov.items() for s, ix in seqs.items() if len(ix) > 1]
    assert not twice, "stored more than once: %s" % twice[:5]
    beyond = [(p, max(seqs)) for p, seqs in cov.items() if p in want and max(seqs) > want[p]]
    assert not beyond, beyond
    return cov, gaps


def echo_burst(c, service, n, key, window=50):
    """n echo requests to service (each publishes echo.seen), window in
    flight; returns the number answered ok (a killed service answers
    fewer)."""
    cl = c.client(service, key_name=key, principal="ops:" + key)
    ok = sent = 0
    pending = set()
    try:
        while sent < n or pending:
            while sent < n and len(pending) < window:
                env = sc.envelope("echo", {"data": {"n": sent}})
                cl.send_raw(msgpack.packb(env, use_bin_type=True))
                pending.add(env["id"])
                sent += 1
            reply = cl.recv(3000)
            if reply is None:
                break
            if reply.get("corr") in pending:
                pending.discard(reply["corr"])
                ok += reply["ok"]
    finally:
        cl.close()
    return ok


def ok(c, *args):
    r = c.ctl("--json", *args)
    assert r.returncode == 0, (args, r.returncode, r.stdout, r.stderr)
    return json.loads(r.stdout) if r.stdout.strip() else None


class Ctx:
    def __init__(self):
        # publishers keep 1 event past what the auditor acknowledged
        self.c = Cluster(extra_config="\n[sanctum]\noutbox_keep = 1\n")
        self.c.start_all()
        self.log = Log(self.c)


# ---- tests ------------------------------------------------------------
@test
def lifecycle_and_authz_events_stored_once(x):
    ok(x.c, "authz", "model", "write", os.path.join(EX, "model.fga"))
    ok(x.c, "authz", "write", "--file", os.path.join(EX, "tuples.json"))
    ok(x.c, "authz", "policy", "write", os.path.join(EX, "policy.json"))
    d = ok(x.c, "authz", "decide", "agent:po-drafter", "po.write", "cost_center:engineering",
           "--context", '{"amount": 5000}')
    assert d == {"decision": "allow"}, d
    cov, gaps = caught_up(x.log, x.c, PUBLISHERS)
    assert not gaps, gaps
    entries = x.log.entries()
    by_pub_type = {}
    for e in entries:
        if e["kind"] == "event":
            by_pub_type.setdefault((e["pub"], e["type"]), []).append(e)
    for n in PUBLISHERS:
        started = by_pub_type.get(("svc:" + n, "service.started"))
        assert started and started[0]["seq"] == 1, "no service.started of %s" % n
    for t in ("authz.model.written", "authz.tuples.written", "authz.policy.written", "authz.decided"):
        assert by_pub_type.get(("svc:authz", t)), "no %s in the log" % t
    decided = by_pub_type[("svc:authz", "authz.decided")][0]
    assert decided["body"]["decision"]["decision"] == "allow", decided
    assert not any(e.get("pub") == "svc:auditor" for e in entries), "the auditor follows itself"
    # the stored bytes are the canonical form of the envelope the follower got
    for b in x.log.raw:
        assert canonical(json.loads(b)) == b
    x.log.verify_root()


@test
def auditor_killed_mid_burst_loses_nothing_stores_nothing_twice(x):
    result = {}
    t = threading.Thread(target=lambda: result.update(
        authz=echo_burst(x.c, "authz", 3000, "burst-a")))
    t2 = threading.Thread(target=lambda: result.update(
        ciba=echo_burst(x.c, "ciba-broker", 1500, "burst-c")))
    t.start()
    t2.start()
    time.sleep(0.4)
    x.c.stop("auditor", sig=signal.SIGKILL)
    time.sleep(0.5)
    still_bursting = t.is_alive() or t2.is_alive()
    x.c.start("auditor")
    x.c.wait_healthy(["auditor"])
    x.log.reconnect()
    t.join()
    t2.join()
    assert result == {"authz": 3000, "ciba": 1500}, result
    assert still_bursting, "the burst was over before the auditor restarted (make it longer)"
    cov, gaps = caught_up(x.log, x.c, PUBLISHERS)
    assert not gaps, "events trimmed before the auditor stored them: %s" % gaps
    echoes = sum(1 for e in x.log.entries() if e["kind"] == "event" and e["type"] == "echo.seen")
    assert echoes >= 4500, echoes
    x.log.verify_root()


@test
def the_publishers_trimmed_only_what_the_auditor_stored(x):
    public, secret = x.c.client_key("ops-stats", "ops:stats")
    for n in ("authz", "ciba-broker"):
        cl = sc.SanctumClient(x.c.endpoints[n][0], sc.server_key(x.c.keys, n), public, secret)
        deadline = time.monotonic() + 15
        while True:                     # the auditor acknowledges on its replay timer
            r = cl.call("stats", {}, timeout_ms=5000)
            counters = r["body"]["counters"]
            if counters.get("events_trimmed", 0) > 1000 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        cl.close()
        assert counters.get("events_trimmed", 0) > 1000, (n, counters.get("events_trimmed"))
        assert counters.get("events_trimmed_unacknowledged", 0) == 0, counters


@test
def publisher_killed_and_restarted_loses_nothing(x):
    result = {}
    t = threading.Thread(target=lambda: result.update(n=echo_burst(x.c, "authz", 3000, "burst-r")))
    t.start()
    time.sleep(0.3)
    x.c.stop("authz", sig=signal.SIGKILL)
    t.join()
    x.c.start("authz")
    x.c.wait_healthy(["authz"])
    assert echo_burst(x.c, "authz", 200, "burst-r2") == 200
    cov, gaps = caught_up(x.log, x.c, PUBLISHERS)
    assert not gaps, gaps
    started = [e for e in x.log.entries() if e["kind"] == "event" and e["pub"] == "svc:authz"
               and e["type"] == "service.started"]
    assert len(started) == 2 and started[0]["seq"] < started[1]["seq"], started
    # a clean stop: its service.stopping is in the log too, once
    assert x.c.stop("telemetry") == 0
    x.c.start("telemetry")
    x.c.wait_healthy(["telemetry"])
    cov, gaps = caught_up(x.log, x.c, PUBLISHERS)
    assert not gaps, gaps
    life = [(e["type"], e["seq"]) for e in x.log.entries() if e["kind"] == "event" and e["pub"] == "svc:telemetry"]
    assert [t for t, _ in life] == ["service.started", "service.stopping", "service.started"], life
    x.log.verify_root()


@test
def events_trimmed_while_the_auditor_was_down_are_a_gap_entry(x):
    c = Cluster(services=["authz", "auditor"])
    try:
        c.start("auditor")
        c.start("authz", env={"SANCTUM_SANCTUM_OUTBOX_MAX": "50"})
        c.wait_healthy(["authz", "auditor"])
        log = Log(c)
        caught_up(log, c, ["authz"])
        c.stop("auditor")
        assert echo_burst(c, "authz", 400, "burst-g") == 400
        deadline = time.monotonic() + 10
        while True:                     # the trim runs once a second
            rc, h = c.ctl_json("health", "authz")
            first, last = h["services"]["authz"]["first_seq"], h["services"]["authz"]["last_seq"]
            if first > 300:
                break
            assert time.monotonic() < deadline, h
            time.sleep(0.2)
        mark = max(s for s in log.coverage()[0]["svc:authz"])
        c.start("auditor")
        c.wait_healthy(["auditor"])
        log.reconnect()
        cov, gaps = caught_up(log, c, ["authz"])
        assert len(gaps) == 1, gaps
        g = gaps[0]
        assert g["pub"] == "svc:authz" and g["from_seq"] == mark + 1, (g, mark)
        assert g["to_seq"] >= first - 1, (g, first)
        events = [s for s, ix in cov["svc:authz"].items()
                  if json.loads(log.raw[ix[0]])["kind"] == "event" and s > mark]
        assert min(events) == g["to_seq"] + 1, (min(events), g)
        # the gap is found by its first seq in the log's (pub, seq) index too
        log.verify_root()
        # restarted again: the gap is not recorded twice
        c.stop("auditor")
        c.start("auditor")
        c.wait_healthy(["auditor"])
        log.reconnect()
        cov, gaps = caught_up(log, c, ["authz"])
        assert len(gaps) == 1, gaps
    finally:
        c.close()


def setup():
    return Ctx()


def teardown(x):
    x.log.cl.close()
    x.c.close()


if __name__ == "__main__":
    sys.exit(run(setup, teardown))
