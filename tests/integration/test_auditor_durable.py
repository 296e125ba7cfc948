#!/usr/bin/env python3
"""Integration: audit.append answers only once its entry is stored for good.
The auditor, as a real process, is SIGKILLed while 8 clients keep 16
appends each in flight; after a restart every acknowledged index holds
exactly the entry acknowledged there (its stored bytes hash to the
acknowledged leaf hash), the log has no hole, the head covers them all and
proves them (RFC 9162, checked here with hashlib), and a retry of an
acknowledged request gets its first index again — from the log's own
request index, since no outcome is recorded for appends — while the same
request id with another entry is refused (`conflict`). Heads read while the
appends run are still the log's after the kill.

A SIGKILL keeps what the kernel already holds, so this checks that no
reply leaves before its commit (a reply sent before it loses its entry
here); that the commit reaches the disk before the reply is LMDB's fsync,
which no process kill can show."""
import hashlib
import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from cluster import Cluster  # noqa: E402
from harness import run, test  # noqa: E402
import msgpack  # noqa: E402
from receipt_check import verify_inclusion  # noqa: E402
import sanctum_client as sc  # noqa: E402

PRINCIPAL = "svc:orchestrator"
CLIENTS, IN_FLIGHT = 8, 16
KILL_AFTER_S = 1.5


def leaf_hash(entry_bytes):
    return hashlib.sha256(b"\x00" + entry_bytes).digest()


def canonical(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def call(cl, type_, body=None, env=None):
    env = env or sc.envelope(type_, body or {})
    reply = cl.call_raw(msgpack.packb(env, use_bin_type=True), env["id"], 10000)
    assert reply is not None, "no reply to %s" % env["type"]
    return reply


def ok(reply):
    assert reply["ok"], reply
    return reply["body"]


class Ctx:
    def __init__(self):
        self.c = Cluster(services=["auditor"])
        self.c.start_all()
        self.cl = self.c.client("auditor", key_name="orch", principal=PRINCIPAL)
        self.public, self.secret = sc.load_keys(self.c.keys, "orch")

    def client(self):
        return sc.SanctumClient(self.c.endpoints["auditor"][0], sc.server_key(self.c.keys, "auditor"),
                                self.public, self.secret)

    def close(self):
        self.cl.close()
        self.c.close()


def kill_while_appending(x):
    """Appends from CLIENTS clients until the auditor is SIGKILLed; the
    acknowledged ones: index -> (envelope, entry, reply body)."""
    acked, errors, stop = {}, [], threading.Event()
    lock = threading.Lock()

    def worker(k):
        cl = x.client()
        try:
            pending, n = {}, 0
            while True:
                while not stop.is_set() and len(pending) < IN_FLIGHT:
                    entry = {"client": k, "n": n, "kind": "step.intent"}
                    env = sc.envelope("audit.append", {"entry": entry})
                    cl.send_raw(msgpack.packb(env, use_bin_type=True))
                    pending[env["id"]] = (env, entry)
                    n += 1
                reply = cl.recv(500)
                if reply is None:
                    if stop.is_set():
                        return              # the auditor is gone: what is pending was never answered
                    continue
                env, entry = pending.pop(reply["corr"])
                if reply["ok"]:
                    with lock:
                        if reply["body"]["index"] in acked:
                            errors.append("index %d acknowledged twice" % reply["body"]["index"])
                        acked[reply["body"]["index"]] = (env, entry, reply["body"])
        finally:
            cl.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    time.sleep(KILL_AFTER_S)
    x.c.stop("auditor", sig=signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors
    return acked


def check_after_restart(x, acked):
    x.c.start("auditor")
    x.c.wait_healthy(["auditor"])
    x.cl.close()
    x.cl = x.c.client("auditor", key_name="orch", principal=PRINCIPAL)
    assert len(acked) >= 100, "only %d appends acknowledged before the kill" % len(acked)
    head = ok(call(x.cl, "audit.head"))
    top = max(acked)
    assert head["size"] > top, (head["size"], top)
    # every acknowledged index holds the acknowledged entry
    for index in sorted(acked):
        env, entry, b = acked[index]
        stored = canonical({"kind": "append", "from": PRINCIPAL, "id": env["id"], "ts": b["ts"], "entry": entry})
        e = ok(call(x.cl, "audit.entry", {"index": index}))
        assert e["entry"].encode() == stored, (index, e["entry"], stored)
        assert e["leaf_hash"] == b["leaf_hash"] == leaf_hash(stored).hex(), (index, e, b)
    # no hole below the head, and proofs of the acknowledged ones
    for index in range(head["size"]):
        ok(call(x.cl, "audit.entry", {"index": index}))
    for index in sorted(acked)[:: max(1, len(acked) // 50)]:
        p = ok(call(x.cl, "audit.inclusion", {"index": index, "size": head["size"]}))
        assert verify_inclusion(index, head["size"], bytes.fromhex(acked[index][2]["leaf_hash"]),
                                [bytes.fromhex(h) for h in p["path"]], bytes.fromhex(head["root"])), index
    # a retry of an acknowledged request: its first answer, nothing appended
    index = sorted(acked)[len(acked) // 2]
    env, entry, b = acked[index]
    again = ok(call(x.cl, "audit.append", env=env))
    assert again["index"] == index and again["leaf_hash"] == b["leaf_hash"], (again, b)
    assert ok(call(x.cl, "audit.head"))["size"] == head["size"]
    print("# %d appends acknowledged before the kill (indexes up to %d), head %d after the restart"
          % (len(acked), top, head["size"]))


@test
def every_acknowledged_append_survives_a_kill(x):
    acked = kill_while_appending(x)
    check_after_restart(x, acked)
    x.acked = acked


@test
def a_request_id_reused_for_another_entry_is_refused_after_a_restart(x):
    """The in-memory dedupe is gone with the process and no outcome was
    recorded: the log's request index answers, and tells another entry."""
    index = sorted(x.acked)[0]
    env, entry, b = x.acked[index]
    other = dict(env, body={"entry": dict(entry, n=-1)})
    r = call(x.cl, "audit.append", env=other)
    assert not r["ok"] and r["error"]["code"] == "conflict" and ("index %d" % index) in r["error"]["message"], r
    again = ok(call(x.cl, "audit.append", env=env))
    assert again["index"] == index and again["leaf_hash"] == b["leaf_hash"], (again, b)


@test
def a_head_read_under_load_is_durable(x):
    """audit.head while appends are in flight: a head is signed over
    committed entries only, so a head taken then is still the log's after
    a kill and restart."""
    heads, stop = [], threading.Event()

    def reader():
        cl = x.client()
        try:
            while not stop.is_set():
                env = sc.envelope("audit.head", {})
                cl.send_raw(msgpack.packb(env, use_bin_type=True))
                reply = cl.recv(500)
                if reply is not None and reply.get("ok"):
                    heads.append(reply["body"])
        finally:
            cl.close()

    t = threading.Thread(target=reader)
    t.start()
    try:
        acked = kill_while_appending(x)
    finally:
        stop.set()
        t.join()
    check_after_restart(x, acked)
    assert heads, "no head read during the appends"
    for hd in heads[:: max(1, len(heads) // 40)]:
        now = ok(call(x.cl, "audit.head", {"size": hd["size"]}))
        assert now["root"] == hd["root"], ("a head read under load is not the log's", hd, now)
    print("# %d heads read during the appends, each still the log's after the restart" % len(heads))


def setup():
    return Ctx()


def teardown(x):
    x.close()


if __name__ == "__main__":
    sys.exit(run(setup, teardown))
