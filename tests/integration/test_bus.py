#!/usr/bin/env python3
"""Integration: the bus between real processes on loopback.

Every daemon runs as its own process with CURVE on; the external client is
Python (pyzmq + msgpack) with its own key in the allow-list.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "ops", "python"))
import msgpack  # noqa: E402
import zmq  # noqa: E402

import sanctum_client as sc  # noqa: E402
from cluster import BIN, SERVICES, Cluster  # noqa: E402
from harness import run, test  # noqa: E402


def code(reply):
    return reply and not reply.get("ok") and reply["error"]["code"]


@test
def all_services_healthy(c):
    rc, out = c.ctl_json("health")
    assert rc == 0, out
    assert set(out["services"]) == set(SERVICES), out
    for name, h in out["services"].items():
        assert h["state"] == "ok" and h["version"] and h["uptime_s"] >= 0, (name, h)
        assert h["principal"] == "svc:" + name


@test
def python_client_round_trip(c):
    cl = c.client("authz")
    reply = cl.call("echo", {"data": {"po": 42, "items": ["a", "b"]}})
    assert reply and reply["ok"], reply
    assert reply["body"]["data"] == {"po": 42, "items": ["a", "b"]}
    assert reply["body"]["from"] == "ext:erp-gateway"  # from the key, not the message
    assert reply["traceparent"][3:35] != "0" * 32
    cl.close()


@test
def from_field_is_never_trusted(c):
    cl = c.client("authz")
    env = sc.envelope("echo", {}, **{"from": "svc:orchestrator"})
    cl.send_raw(msgpack.packb(env))
    reply = cl.recv()
    assert reply["ok"] and reply["body"]["from"] == "ext:erp-gateway", reply
    cl.close()


@test
def events_reach_a_python_subscriber(c):
    public, secret = c.client_key("pysub", "ext:erp-gateway")
    sub = sc.SanctumSubscriber(c.endpoints["authz"][1], sc.server_key(c.keys, "authz"), public, secret,
                               topics=("echo.",))
    time.sleep(0.3)  # let the subscription propagate
    cl = c.client("authz")
    reply = cl.call("echo", {"data": 1})
    evt = sub.recv()
    assert evt and evt["type"] == "echo.seen" and evt["body"]["request"] == reply["corr"], evt
    assert evt["pub"] == "svc:authz" and evt["seq"] >= 1
    assert evt["traceparent"][3:35] == reply["traceparent"][3:35]  # same trace
    sub.close()
    cl.close()


@test
def unknown_key_is_refused(c):
    public, secret = zmq.curve_keypair()  # never added to the allow-list
    cl = sc.SanctumClient(c.endpoints["authz"][0], sc.server_key(c.keys, "authz"), public, secret)
    assert cl.call("health", {}, timeout_ms=700) is None
    cl.close()


@test
def wrong_server_key_gets_nothing(c):
    public, secret = c.client_key("pyclient", "ext:erp-gateway")
    cl = sc.SanctumClient(c.endpoints["authz"][0], sc.server_key(c.keys, "auditor"), public, secret)
    assert cl.call("health", {}, timeout_ms=700) is None
    cl.close()


@test
def forbidden_for_principal(c):
    cl = c.client("authz")  # ext: may not ask for stats, nor append to the audit log
    assert code(cl.call("stats")) == "forbidden"
    cl.close()
    cl = c.client("auditor")
    assert code(cl.call("audit.append", {"entry": {"k": 1}})) == "forbidden"
    cl.close()
    rc = c.ctl("inject", "audit.append", '{"entry":{"k":1}}').returncode
    assert rc == 3, rc  # ops: is refused too; exit 3 for a denial


@test
def catalogue_errors(c):
    cl = c.client("authz")
    assert code(cl.call("no.such.type")) == "unknown_type"
    assert code(cl.call("echo.seen")) == "unknown_type"  # an event type is not a request
    assert code(cl.call("run.get", {"run": "0" * 26})) == "wrong_service"
    r = cl.call("authz.list_objects", {"user": "user:a", "relation": "viewer"})
    assert code(r) == "invalid" and "type" in r["error"]["message"], r
    r = cl.call("authz.check", {"tuple_key": "not a map"})
    assert code(r) == "invalid", r
    cl.close()


@test
def unknown_body_field_is_counted_and_logged_once(c):
    # a misspelt optional field is ignored (PROTOCOL.md 9) but not silently
    def unknown():
        rc, out = c.ctl_json("inject", "stats", "{}", "--service", "authz")
        assert rc == 0, out
        return out["body"]["counters"].get("requests_unknown_fields", 0)

    before = unknown()
    cl = c.client("authz")
    for _ in range(3):
        r = cl.call("echo", {"data": 1, "dtaa_misspelt": 2})
        assert r["ok"] and r["body"]["data"] == 1, r
    assert cl.call("echo", {"data": 1})["ok"]
    cl.close()
    assert unknown() == before + 3
    with open(c.logs["authz"], errors="replace") as f:
        lines = [json.loads(line) for line in f if "dtaa_misspelt" in line]
    assert len(lines) == 1, lines
    assert lines[0]["level"] == "warn" and lines[0]["type"] == "echo", lines
    assert lines[0]["peer"] == "ext:erp-gateway", lines


@test
def error_replies_are_plain(c):
    # audit.receipt used to answer not_implemented here; now built, an
    # unknown run is a plain not_found with a message
    cl = c.client("auditor", key_name="pysvc", principal="svc:test-harness")
    r = cl.call("audit.receipt", {"run": "0" * 26})
    assert code(r) == "not_found" and r["error"]["message"], r
    cl.close()


@test
def malformed_frames_get_errors_and_services_stay_up(c):
    for service in SERVICES:
        cl = c.client(service)
        good = sc.envelope("health", {})
        packed = msgpack.packb(good)
        cases = [
            (b"\xc1", "malformed"),                                   # reserved byte
            (b"\xdd\xff\xff\xff\xff", "malformed"),                   # array of 4G elements in 5 bytes
            (b"\xdb\xff\xff\xff\xff" + b"x" * 10, "malformed"),        # string longer than the frame
            (packed[: len(packed) // 2], "malformed"),                # truncated
            (packed + b"\x00", "malformed"),                          # trailing bytes
            (msgpack.packb([1, 2, 3]), "malformed"),                  # not a map
            (msgpack.packb(dict(good, v=99)), "unsupported_version"),
            (msgpack.packb(dict(good, id="not-a-ulid")), "malformed"),
            (msgpack.packb(dict(good, body=[1])), "malformed"),
            (msgpack.packb(dict(good, type="UPPER")), "malformed"),
            (b"\x91" * 200 + b"\xc0", "malformed"),                   # nested 200 deep
            (msgpack.packb(dict(good, body={"pad": "x" * (2 * 1024 * 1024)})), None),  # over the hard cap: dropped
            (msgpack.packb(dict(good, body={"pad": "x" * (1024 * 1024)})), "too_large"),
            (b"\xc7\x01\x05\x00", "malformed"),                       # ext type
            (b"", "malformed"),
        ]
        for frame, want in cases:
            cl.send_raw(frame)
            if want is None:
                # libzmq drops the connection: reconnect with a fresh socket
                cl.close()
                cl = c.client(service)
                continue
            reply = cl.recv()
            assert reply and reply["ok"] is False and reply["error"]["code"] == want, (service, frame[:16], reply)
        r = cl.call("health")
        assert r and r["ok"], (service, r)
        cl.close()
    rc, out = c.ctl_json("health")
    assert rc == 0, out


@test
def late_subscriber_recovers_with_replay(c):
    cl = c.client("auditor")
    ids = [cl.call("echo", {"data": i})["corr"] for i in range(5)]
    cl.close()
    # a subscriber that joins now saw none of them: tap --replay asks events.replay
    r = c.ctl("--json", "tap", "--replay", "--service", "auditor", "echo.seen", "--count", "5",
              "--timeout-ms", "5000")
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    got = [e["body"]["request"] for e in events]
    assert got[-5:] == ids or set(ids) <= set(got), (got, ids)
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


@test
def replay_ranges(c):
    cl = c.client("auditor", key_name="pysvc", principal="svc:test-harness")
    for i in range(3):
        cl.call("echo", {"data": i})
    r = cl.call("events.replay", {"from_seq": 1, "limit": 2})
    assert r["ok"] and len(r["body"]["events"]) == 2 and r["body"]["next_seq"] == 3, r
    r = cl.call("events.replay", {"from_seq": 2, "to_seq": 3})
    assert [e["seq"] for e in r["body"]["events"]] == [2, 3], r
    assert code(cl.call("events.replay", {"from_seq": 0})) == "invalid"
    r = cl.call("events.replay", {"from_seq": 1, "limit": None, "to_seq": None})  # nil means absent
    assert r["ok"] and len(r["body"]["events"]) >= 3 and "next_seq" not in r["body"], r
    assert code(cl.call("events.replay", {})) == "invalid"
    cl.close()


@test
def retried_request_runs_once(c):
    cl = c.client("sandbox", key_name="pysvc", principal="svc:test-harness")
    frame = msgpack.packb(sc.envelope("echo", {"data": "once"}))
    cl.send_raw(frame)
    first = cl.recv()
    cl.send_raw(frame)  # the same id again: a retry
    second = cl.recv()
    assert first == second, (first, second)
    r = cl.call("events.replay", {"from_seq": 1})
    seen = [e for e in r["body"]["events"] if e["type"] == "echo.seen" and e["body"]["request"] == first["corr"]]
    assert len(seen) == 1, seen
    cl.close()


@test
def crash_and_restart_keeps_event_sequence(c):
    cl = c.client("telemetry", key_name="pysvc", principal="svc:test-harness")
    for i in range(3):
        cl.call("echo", {"data": i})
    last = cl.call("health")["body"]["last_seq"]
    cl.close()
    c.stop("telemetry", sig=signal.SIGKILL)
    c.start("telemetry")
    c.wait_healthy(["telemetry"])
    cl = c.client("telemetry", key_name="pysvc", principal="svc:test-harness")
    r = cl.call("events.replay", {"from_seq": 1})
    seqs = [e["seq"] for e in r["body"]["events"]]
    assert seqs == list(range(1, len(seqs) + 1)) and seqs[-1] > last, (seqs, last)
    assert r["body"]["events"][last]["type"] == "service.started"  # the restart continued the sequence
    cl.close()


@test
def sigterm_stops_cleanly(c):
    rc = c.stop("sandbox")
    assert rc == 0, rc
    c.start("sandbox")
    c.wait_healthy(["sandbox"])


@test
def stats_count_requests(c):
    rc, out = c.ctl_json("inject", "stats", "{}", "--service", "authz")
    assert rc == 0
    body = out["body"]
    assert body["counters"]["requests_received"] > 0 and "health" in body["latency_us"], body


@test
def no_secret_in_logs_or_events(c):
    logs = c.read_logs()
    # every event every service ever published, as text
    cl = None
    events = ""
    for service in SERVICES:
        cl = c.client(service, key_name="pysvc", principal="svc:test-harness")
        frm = 1
        while frm:
            r = cl.call("events.replay", {"from_seq": frm})
            assert r and r["ok"], r
            events += json.dumps(r["body"]["events"])
            frm = r["body"].get("next_seq")
        cl.close()
    assert "service.started" in events
    secrets = 0
    for name in os.listdir(c.keys):
        if name.endswith(".key_secret"):
            with open(os.path.join(c.keys, name)) as f:
                for line in f:
                    if "secret-key" in line:
                        secret = line.split('"')[1]
                        secrets += 1
                        assert secret not in logs, name
                        assert secret not in events, name
    assert secrets >= len(SERVICES)
    for line in logs.splitlines():
        json.loads(line)  # every log line is one JSON object
    for line in logs.splitlines():
        json.loads(line)  # every log line is one JSON object


@test
def sd_notify_ready(c):
    path = os.path.join(c.dir, "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(10)
    c.stop("sandbox")
    c.start("sandbox", env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    seen = ""
    deadline = time.monotonic() + 10
    while "WATCHDOG=1" not in seen and time.monotonic() < deadline:
        seen += s.recv(4096).decode() + "\n"
    assert "READY=1" in seen and "WATCHDOG=1" in seen, seen
    c.stop("sandbox")
    seen = ""
    s.settimeout(1)
    try:
        while True:
            seen += s.recv(4096).decode()
    except socket.timeout:
        pass
    assert "STOPPING=1" in seen, seen
    s.close()
    c.start("sandbox")
    c.wait_healthy(["sandbox"])


@test
def bounded_outbox_says_what_it_no_longer_keeps(c):
    # sandbox with an outbox of at most 3 events and no auditor to wait for
    c.stop("sandbox")
    c.start("sandbox", env={"SANCTUM_SANCTUM_OUTBOX_MAX": "3", "SANCTUM_SANCTUM_OUTBOX_KEEP": "3"})
    try:
        c.wait_healthy(["sandbox"])
        cl = c.client("sandbox")
        ids = [cl.call("echo", {"data": i})["corr"] for i in range(6)]
        cl.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            rc, out = c.ctl_json("health", "sandbox")
            h = out["services"]["sandbox"]
            if h["last_seq"] - h["first_seq"] + 1 == 3:
                break
            time.sleep(0.1)
        assert h["last_seq"] - h["first_seq"] + 1 == 3, h
        r = c.ctl("--json", "tap", "--replay", "--service", "sandbox", "--timeout-ms", "1000")
        seqs = [json.loads(line)["seq"] for line in r.stdout.splitlines()]
        assert seqs == list(range(h["first_seq"], h["last_seq"] + 1)), (seqs, h)
        assert ("no longer keeps events 1..%d" % (h["first_seq"] - 1)) in r.stderr, r.stderr
        got = [json.loads(line)["body"].get("request") for line in r.stdout.splitlines()]
        assert got == ids[-3:], (got, ids)
        assert "trimmed before svc:auditor stored them" in open(c.logs["sandbox"]).read()
    finally:
        c.stop("sandbox")
        c.start("sandbox")
        c.wait_healthy(["sandbox"])


@test
def bad_config_is_a_clear_error(c):
    bad = os.path.join(c.dir, "bad.conf")
    with open(bad, "w") as f:
        f.write("[sanctum]\nmax_frame = 12\n")
    r = subprocess.run([os.path.join(BIN, "sanctum-authz"), "--config", bad], capture_output=True, text=True)
    assert r.returncode == 1 and "max_frame" in r.stderr, r.stderr


def setup():
    c = Cluster()
    c.start_all()
    return c


if __name__ == "__main__":
    sys.exit(run(setup, lambda c: c.close()))
