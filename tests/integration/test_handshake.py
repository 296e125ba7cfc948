#!/usr/bin/env python3
"""Integration: refused CURVE handshakes and refused requests are logged,
rate-limited, and counted.

A real authz (cluster.py) and Python clients (pyzmq): one with a key that is
not in the allow-list, one that uses another service's public key, one
allowed client that floods requests it may not send. Each finds its lines in
authz's log, few of them, and its count in authz's stats.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "ops", "python"))
import msgpack  # noqa: E402
import zmq  # noqa: E402

import sanctum_client as sc  # noqa: E402
from cluster import Cluster  # noqa: E402
from harness import run, test  # noqa: E402

REFUSED = "CURVE handshake refused"


def log_lines(c):
    """authz's log as parsed JSON lines; every line must be one."""
    lines = []
    with open(c.logs["authz"], errors="replace") as f:
        for text in f:
            try:
                lines.append(json.loads(text))
            except ValueError:
                raise AssertionError("not a JSON line in authz's log: %r" % text)
    return lines


def stats(c):
    rc, out = c.ctl_json("inject", "stats", "{}", "--service", "authz")
    assert rc == 0, out
    return out["body"]["counters"]


def knock(c, public, secret, server_key, times):
    """Connect `times` fresh sockets with this key; each is refused at the
    handshake (libzmq does not retry a refused key on the same socket)."""
    ctx = zmq.Context.instance()
    socks = []
    for _ in range(times):
        s = ctx.socket(zmq.DEALER)
        s.curve_publickey, s.curve_secretkey, s.curve_serverkey = public, secret, server_key
        s.linger = 0
        s.connect(c.endpoints["authz"][0])
        socks.append(s)
        time.sleep(0.01)
    time.sleep(0.5)
    for s in socks:
        s.close()


def wait_for(fn, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.2)
    return fn()


@test
def refused_key_is_logged_once_then_counted(c):
    public, secret = zmq.curve_keypair()  # never added to the allow-list
    key = public.decode()
    before = stats(c).get("handshakes_refused", 0)
    knock(c, public, secret, sc.server_key(c.keys, "authz"), 30)
    mine = wait_for(lambda: [l for l in log_lines(c) if l.get("peer_key") == key and REFUSED in l["msg"]])
    time.sleep(0.5)
    mine = [l for l in log_lines(c) if l.get("peer_key") == key and REFUSED in l["msg"]]
    assert len(mine) == 1, mine                        # 30 refusals, one line
    line = mine[0]
    assert line["level"] == "warn" and line["reason"] == "handshake_refused", line
    assert line["peer_address"] == "127.0.0.1" and key in line["msg"], line
    assert stats(c).get("handshakes_refused", 0) - before >= 30
    # another key has a line of its own
    other, other_secret = zmq.curve_keypair()
    knock(c, other, other_secret, sc.server_key(c.keys, "authz"), 3)
    assert wait_for(lambda: [l for l in log_lines(c) if l.get("peer_key") == other.decode()])
    # once the window (10 s) is over, the count of what was left out
    summary = wait_for(lambda: [l for l in log_lines(c) if l.get("limited") == key], timeout=20)
    assert len(summary) == 1 and summary[0]["suppressed"] == 29, summary
    assert "(29 similar lines suppressed)" in summary[0]["msg"], summary
    # zauth's chatter about allowed handshakes is not in the log
    assert not [l for l in log_lines(c) if "zauth:" in l["msg"]]


@test
def wrong_server_key_is_logged_rate_limited(c):
    public, secret = c.client_key("pywrong", "ext:erp-gateway")
    before = stats(c).get("handshakes_failed", 0)
    # the auditor's key: authz cannot read our hello; libzmq retries the
    # connection every ~100 ms, each a failed handshake
    cl = sc.SanctumClient(c.endpoints["authz"][0], sc.server_key(c.keys, "auditor"), public, secret)
    assert cl.call("health", {}, timeout_ms=2000) is None
    cl.close()
    failed = stats(c).get("handshakes_failed", 0) - before
    assert failed >= 5, failed
    lines = [l for l in log_lines(c) if "CURVE handshake failed on rpc" in l["msg"]]
    assert 1 <= len(lines) <= 5, lines                 # 5 lines per socket and reason per 10 s
    assert "cryptographic" in lines[0]["msg"] and lines[0]["socket"] == "rpc", lines[0]


@test
def refused_requests_are_rate_limited(c):
    cl = c.client("authz", key_name="pyflood")         # ext: may not ask for stats
    for _ in range(300):
        cl.send_raw(msgpack.packb(sc.envelope("stats", {})))
    got = 0
    while got < 300 and cl.recv(2000):
        got += 1
    cl.close()
    assert got == 300, got                             # every request is answered ...
    lines = [l for l in log_lines(c) if l.get("peer") == "ext:erp-gateway" and l.get("code") == "forbidden"
             and "request refused" in l["msg"]]
    assert 1 <= len(lines) <= 10, len(lines)           # ... but not every refusal logged
    summary = wait_for(lambda: [l for l in log_lines(c) if l.get("limited") == "ext:erp-gateway"
                                and l.get("limit_reason") == "forbidden"], timeout=20)
    assert summary and summary[0]["suppressed"] == 300 - len(lines), (summary, len(lines))
    assert stats(c).get("log_lines_suppressed", 0) >= 290


def setup():
    c = Cluster(services=["authz"])
    c.start_all()
    return c


if __name__ == "__main__":
    sys.exit(run(setup, lambda c: c.close()))
