#!/usr/bin/env python3
"""Integration: what hostile and careless clients found (issue 16), sent as
real frames by the Python client (ops/python/sanctum_client.py) to a real
sanctum-authz:

- a NUL inside a string at any depth of a request body is `invalid`, the
  message naming the field's path, for every authz request type; a write
  of "user:a\\0b" stores nothing and the check bypass
  ("cost_center:engineering\\0../other") is refused;
- a frame whose id is readable but whose body does not decode (2^63, NaN,
  trailing bytes) is answered `malformed` WITH corr;
- every frame from the hard cap - 32 bytes to past it is answered
  `too_large` (CURVE's overhead no longer drops the connection), and only
  frames past the documented limit close the connection;
- ids that would push a store key past LMDB's 511 bytes are `invalid`
  (never `unavailable`), for writes, checks, contextual tuples and read
  filters, and nothing is stored;
- routing frames: a client's own routing id of 255 bytes (ZMTP's longest)
  and frames it puts before the request (as a proxy would) come back on
  the reply; a frame before the request over 255 bytes, or more routing
  than a reply can carry (512 bytes), drops that request, counted in
  stats, and the connection goes on.
"""
import os
import sys
import time

import msgpack

sys.path.insert(0, os.path.dirname(__file__))
from cluster import ROOT, Cluster  # noqa: E402
from harness import run, test  # noqa: E402
import sanctum_client as sc  # noqa: E402

EX = os.path.join(ROOT, "ops", "examples", "procurement")
MAX_FRAME = 16384
HARD_CAP = 2 * MAX_FRAME + 65536          # PROTOCOL.md 8
ANSWERED_PAST_CAP = 991                   # ZMQ_MAXMSGSIZE = cap + 1 KiB, less CURVE's 33 bytes
NUL = "\u0000"


def code(reply):
    assert reply is not None, "no reply"
    return None if reply.get("ok") else reply["error"]["code"]


def message(reply):
    return reply["error"]["message"]


def invalid(reply, path):
    """The reply refuses a NUL at path."""
    assert code(reply) == "invalid", reply
    assert "'%s' holds a NUL byte" % path in message(reply), (path, reply)


def tk(object_="cost_center:engineering", relation="writer", user="agent:po-drafter", **extra):
    key = {"object": object_, "relation": relation, "user": user}
    key.update(extra)
    return key


def setup():
    c = Cluster(services=["authz"], extra_config="\n[sanctum]\nmax_frame = %d\n" % MAX_FRAME)
    c.start_all()
    ops = c.client("authz", key_name="pyops", principal="ops:hardening")
    with open(os.path.join(EX, "model.fga")) as f:
        r = ops.call("authz.model.write", {"model": f.read()})
    assert r and r["ok"], r
    import json
    with open(os.path.join(EX, "tuples.json")) as f:
        r = ops.call("authz.write", {"writes": json.load(f)})
    assert r and r["ok"], r
    c.ops = ops
    return c


def teardown(c):
    c.ops.close()
    c.close()


def changes(c):
    r = c.ops.call("authz.read_changes", {"page_size": 100})
    assert r and r["ok"], r
    return r["body"]["changes"]


# --- NUL at every depth -----------------------------------------------------

@test
def nul_in_authz_write_is_invalid(c):
    before = len(changes(c))
    bad = "user:a" + NUL + "b"
    cases = [
        ({"writes": [tk(object_=bad, relation="manager", user="user:carol")]}, "writes[0].object"),
        ({"writes": [tk(), tk(user=bad, object_="user:erin", relation="manager")]}, "writes[1].user"),
        ({"writes": [tk(relation="writer" + NUL)]}, "writes[0].relation"),
        ({"writes": [tk(object_="cost_center:x", relation="approver", user="user:a",
                        condition={"name": "within_limit" + NUL, "context": {"limit": 1}})]},
         "writes[0].condition.name"),
        ({"writes": [tk(object_="cost_center:x", relation="approver", user="user:a",
                        condition={"name": "within_limit", "context": {"note": NUL}})]},
         "writes[0].condition.context.note"),
        ({"deletes": [tk(object_="cost_center:engineering" + NUL + "x")]}, "deletes[0].object"),
        ({"writes": [tk(object_="cost_center:y")], "on_duplicate": "ignore" + NUL}, "on_duplicate"),
    ]
    for body, path in cases:
        invalid(c.ops.call("authz.write", body), path)
    assert len(changes(c)) == before, "a refused write changed the store"


@test
def write_of_nul_object_stores_nothing(c):
    before = len(changes(c))
    r = c.ops.call("authz.write", {"writes": [{"user": "user:carol", "relation": "manager", "object": "user:a" + NUL + "b"}]})
    invalid(r, "writes[0].object")
    # not stored under the cut name either
    r = c.ops.call("authz.read", {"tuple_key": {"object": "user:a"}})
    assert r["ok"] and r["body"]["tuples"] == [], r
    r = c.ops.call("authz.check", {"tuple_key": {"user": "user:carol", "relation": "manager", "object": "user:a"}})
    assert r["ok"] and r["body"]["allowed"] is False, r
    assert len(changes(c)) == before


@test
def check_bypass_is_invalid(c):
    # the answer for cost_center:engineering must not leak to another object
    r = c.ops.call("authz.check", {"tuple_key": tk()})
    assert r["ok"] and r["body"]["allowed"] is True, r
    r = c.ops.call("authz.check", {"tuple_key": tk(object_="cost_center:engineering../other")})
    assert r["ok"] and r["body"]["allowed"] is False, r
    r = c.ops.call("authz.check", {"tuple_key": tk(object_="cost_center:engineering" + NUL + "../other")})
    invalid(r, "tuple_key.object")
    # from an external client too (EXT may send checks)
    ext = c.client("authz", key_name="pyext", principal="ext:erp-gateway")
    try:
        r = ext.call("authz.check", {"tuple_key": tk(user="agent:po-drafter" + NUL + "x")})
        invalid(r, "tuple_key.user")
    finally:
        ext.close()


@test
def nul_in_every_query_is_invalid(c):
    ctx_tuple = tk(object_="cost_center:other", user="agent:x" + NUL)
    cases = [
        ("authz.check", {"tuple_key": tk(relation="wri" + NUL + "ter")}, "tuple_key.relation"),
        ("authz.check", {"tuple_key": tk(), "contextual_tuples": [ctx_tuple]}, "contextual_tuples[0].user"),
        ("authz.check", {"tuple_key": tk(), "contextual_tuples": [tk(), tk(object_=NUL)]},
         "contextual_tuples[1].object"),
        ("authz.check", {"tuple_key": tk(), "context": {"amount": 5, "who": ["a", NUL]}}, "context.who[1]"),
        ("authz.check", {"tuple_key": tk(), "contextual_tuples": [
            tk(object_="cost_center:x", relation="approver", user="user:a",
               condition={"name": "within_limit", "context": {"limit": "1" + NUL}})]},
         "contextual_tuples[0].condition.context.limit"),
        ("authz.batch_check", {"checks": [{"tuple_key": tk(), "correlation_id": "a"},
                                          {"tuple_key": tk(object_="cost_center:engineering" + NUL),
                                           "correlation_id": "b"}]}, "checks[1].tuple_key.object"),
        ("authz.batch_check", {"checks": [{"tuple_key": tk(), "correlation_id": "a",
                                           "contextual_tuples": [ctx_tuple]}]},
         "checks[0].contextual_tuples[0].user"),
        ("authz.batch_check", {"checks": [{"tuple_key": tk(), "correlation_id": "a" + NUL}]},
         "checks[0].correlation_id"),
        ("authz.read", {"tuple_key": {"object": "cost_center:engineering" + NUL}}, "tuple_key.object"),
        ("authz.read", {"tuple_key": {"user": "user:erin" + NUL + "x"}}, "tuple_key.user"),
        ("authz.read", {"tuple": {"object": "cost_center:", "relation": NUL}}, "tuple.relation"),
        ("authz.expand", {"tuple_key": {"object": "cost_center:engineering" + NUL, "relation": "writer"}},
         "tuple_key.object"),
        ("authz.expand", {"tuple_key": {"object": "cost_center:engineering", "relation": "writer"},
                          "contextual_tuples": [ctx_tuple]}, "contextual_tuples[0].user"),
        ("authz.list_objects", {"user": "agent:po-drafter" + NUL, "relation": "writer", "type": "cost_center"},
         "user"),
        ("authz.list_objects", {"user": "agent:po-drafter", "relation": "writer", "type": "cost_center",
                                "contextual_tuples": [ctx_tuple]}, "contextual_tuples[0].user"),
        ("authz.list_users", {"object": {"type": "cost_center", "id": "engineering" + NUL},
                              "relation": "writer", "user_filters": [{"type": "agent"}]}, "object.id"),
        ("authz.list_users", {"object": {"type": "cost_center", "id": "engineering"},
                              "relation": "writer", "user_filters": [{"type": "agent" + NUL}]},
         "user_filters[0].type"),
        ("authz.list_users", {"object": {"type": "cost_center", "id": "engineering"},
                              "relation": "writer", "user_filters": [{"type": "agent"}],
                              "contextual_tuples": [ctx_tuple]}, "contextual_tuples[0].user"),
        ("authz.decide", {"principal": "agent:po-drafter", "action": "po.write",
                          "resource": "cost_center:engineering", "context": {"amount": 5, "x": NUL}}, "context.x"),
        ("echo", {"data": {"deep": [[NUL]]}}, "data.deep[0][0]"),
    ]
    for type_, body, path in cases:
        invalid(c.ops.call(type_, body), path)
    # the same shapes without the NUL are answered
    r = c.ops.call("authz.batch_check", {"checks": [{"tuple_key": tk(), "correlation_id": "a",
                                                     "contextual_tuples": [tk(object_="cost_center:other")]}]})
    assert r["ok"] and r["body"]["result"]["a"] == {"allowed": True}, r


# --- corr on frames whose body does not decode --------------------------------

@test
def undecodable_body_is_answered_with_corr(c):
    cases = [
        {"from_seq": 2 ** 63},                     # an integer above 2^63-1
        {"from_seq": 2 ** 64 - 1},
        {"from_seq": float("nan")},
        {"from_seq": float("inf")},
    ]
    frames = []
    for body in cases:
        env = sc.envelope("events.replay", body)
        frames.append((env["id"], msgpack.packb(env, use_bin_type=True)))
    env = sc.envelope("events.replay", {"from_seq": 1})
    frames.append((env["id"], msgpack.packb(env, use_bin_type=True) + b"\xc0"))   # trailing bytes
    env = sc.envelope("events.replay", {"from_seq": 1})
    frames.append((env["id"], msgpack.packb(env, use_bin_type=True) + b"junk"))
    # a map key with a NUL is refused by the decoder (11.1), also nested
    env = sc.envelope("authz.check", {"tuple_key": tk(), "context": {"a" + NUL + "b": 1}})
    frames.append((env["id"], msgpack.packb(env, use_bin_type=True)))
    for id_, frame in frames:
        c.ops.send_raw(frame)
        reply = c.ops.recv()
        assert reply and reply["ok"] is False and reply["error"]["code"] == "malformed", (frame[-12:], reply)
        assert reply.get("corr") == id_, ("no corr", frame[-12:], reply)
    # an id that cannot be read still gets its refusal, without corr
    env = sc.envelope("events.replay", {"from_seq": 2 ** 63})
    env["id"] = "not-a-ulid"
    c.ops.send_raw(msgpack.packb(env, use_bin_type=True))
    reply = c.ops.recv()
    assert reply and reply["error"]["code"] == "malformed" and not reply.get("corr"), reply
    # and the call pattern of a client matching by corr now gets an answer, not a timeout
    r = c.ops.call("events.replay", {"from_seq": 2 ** 63}, timeout_ms=1000)
    assert code(r) == "malformed", r


# --- frames around the hard cap -------------------------------------------------

def frame_of(size, type_="echo"):
    """A request envelope packed to exactly size bytes; (id, frame)."""
    env = sc.envelope(type_, {"pad": ""})
    base = len(msgpack.packb(env, use_bin_type=True))
    n = max(0, size - base)
    while True:
        env["body"]["pad"] = "x" * n
        frame = msgpack.packb(env, use_bin_type=True)
        if len(frame) == size:
            return env["id"], frame
        n += size - len(frame)
        assert n >= 0


@test
def frames_at_the_hard_cap_get_too_large(c):
    cl = c.client("authz", key_name="pycap", principal="ext:cap-client")
    try:
        sizes = [MAX_FRAME + 1, HARD_CAP - 64, HARD_CAP - 33] + list(range(HARD_CAP - 32, HARD_CAP + 65, 8)) \
            + [HARD_CAP - 1, HARD_CAP, HARD_CAP + 1, HARD_CAP + ANSWERED_PAST_CAP]
        for size in sizes:
            id_, frame = frame_of(size)
            assert len(frame) == size
            cl.send_raw(frame)
            reply = cl.recv(timeout_ms=2000)
            assert reply is not None, "frame of %d bytes (cap %d): no reply" % (size, HARD_CAP)
            assert reply["ok"] is False and reply["error"]["code"] == "too_large", (size, reply)
            assert reply.get("corr") == id_, (size, reply)
        # the connection is still up: the next call on it is answered
        r = cl.call("health")
        assert r and r["ok"], r
        # past the documented limit libzmq closes the connection: no reply
        id_, frame = frame_of(HARD_CAP + ANSWERED_PAST_CAP + 1)
        cl.send_raw(frame)
        assert cl.recv(timeout_ms=1000) is None, "a frame past the limit was answered"
    finally:
        cl.close()
    cl = c.client("authz", key_name="pycap", principal="ext:cap-client")
    try:
        r = cl.call("health")
        assert r and r["ok"], r
        # at max_frame itself the frame is decoded (echo answers)
        id_, frame = frame_of(MAX_FRAME)
        cl.send_raw(frame)
        reply = cl.recv()
        assert reply and reply["ok"] is True and reply["corr"] == id_, reply
    finally:
        cl.close()


# --- identifier limits: LMDB's 511-byte key ---------------------------------------

@test
def long_ids_are_invalid_not_unavailable(c):
    before = len(changes(c))
    long_obj = "cost_center:" + "o" * 478              # 490 bytes: past OpenFGA's 256
    ok_obj = "cost_center:" + "o" * 244                # 256 bytes: OpenFGA's limit
    long_user = "user:" + "u" * 507                    # 512 bytes: OpenFGA's user limit
    cases = [
        # writes: each field past its limit, and the three together past the key
        {"writes": [tk(object_=long_obj, relation="member", user="user:erin")]},
        {"writes": [tk(object_="cost_center:engineering", relation="member", user="user:" + "u" * 508)]},
        {"writes": [tk(object_=ok_obj, relation="member", user=long_user)]},
        {"deletes": [tk(object_=long_obj, relation="member", user="user:erin")]},
    ]
    for body in cases:
        r = c.ops.call("authz.write", body)
        assert code(r) == "invalid", (body, r)
        assert r["error"].get("fga_code") == 2000, r
    assert len(changes(c)) == before
    # at the limits it is stored: object 256 + relation + user up to the key
    user = "user:" + "u" * (504 - 256 - len("member") - len("user:"))
    r = c.ops.call("authz.write", {"writes": [tk(object_=ok_obj, relation="member", user=user)]})
    assert r and r["ok"], r
    r = c.ops.call("authz.check", {"tuple_key": tk(object_=ok_obj, relation="member", user=user)})
    assert r["ok"] and r["body"]["allowed"] is True, r
    r = c.ops.call("authz.read", {"tuple_key": {"object": ok_obj}})
    assert r["ok"] and len(r["body"]["tuples"]) == 1, r
    r = c.ops.call("authz.write", {"deletes": [tk(object_=ok_obj, relation="member", user=user)]})
    assert r and r["ok"], r
    # queries: check, contextual tuples, batch items, read filters, expand, list
    queries = [
        ("authz.check", {"tuple_key": tk(object_=long_obj)}),
        ("authz.check", {"tuple_key": tk(user="agent:" + "a" * 600)}),
        ("authz.check", {"tuple_key": tk(relation="w" * 51)}),
        ("authz.check", {"tuple_key": tk(), "contextual_tuples": [tk(object_=long_obj)]}),
        ("authz.check", {"tuple_key": tk(), "contextual_tuples": [tk(object_=ok_obj, user=long_user)]}),
        ("authz.batch_check", {"checks": [{"tuple_key": tk(), "correlation_id": "a"},
                                          {"tuple_key": tk(object_=long_obj), "correlation_id": "b"}]}),
        ("authz.read", {"tuple_key": {"object": long_obj}}),
        ("authz.read", {"tuple_key": {"user": "user:" + "u" * 600}}),
        ("authz.read", {"tuple": {"object": "cost_center:", "relation": "r" * 51}}),
        ("authz.expand", {"tuple_key": {"object": long_obj, "relation": "writer"}}),
        ("authz.list_objects", {"user": "agent:" + "a" * 600, "relation": "writer", "type": "cost_center"}),
        ("authz.list_users", {"object": {"type": "cost_center", "id": "o" * 478}, "relation": "writer",
                              "user_filters": [{"type": "agent"}]}),
        ("authz.list_users", {"object": {"type": "cost_center", "id": "engineering"}, "relation": "writer",
                              "user_filters": [{"type": "a" * 255}]}),
    ]
    for type_, body in queries:
        r = c.ops.call(type_, body)
        assert code(r) == "invalid", (type_, r)
        assert "unavailable" not in message(r), r
    # within each field's limit but past the store's key: answered (nothing
    # so long can be stored), never unavailable
    answered = [
        ("authz.check", {"tuple_key": tk(object_=ok_obj, user=long_user)}, {"allowed": False}),
        ("authz.check", {"tuple_key": tk(user="agent:" + "a" * 506)}, {"allowed": False}),
        ("authz.read", {"tuple_key": {"object": ok_obj, "relation": "member", "user": long_user}},
         {"tuples": [], "continuation_token": ""}),
        ("authz.read", {"tuple_key": {"object": "cost_center:", "user": long_user}},
         {"tuples": [], "continuation_token": ""}),
        ("authz.list_objects", {"user": long_user, "relation": "member", "type": "cost_center"}, {"objects": []}),
    ]
    for type_, body, want in answered:
        r = c.ops.call(type_, body)
        assert r and r["ok"] and r["body"] == want, (type_, r)
    # in a batch, a contextual tuple past the limits is that check's error
    r = c.ops.call("authz.batch_check", {"checks": [{"tuple_key": tk(), "correlation_id": "a",
                                                     "contextual_tuples": [tk(object_=long_obj)]},
                                                    {"tuple_key": tk(), "correlation_id": "b"}]})
    assert r and r["ok"], r
    assert r["body"]["result"]["a"]["error"]["code"] == 2027, r
    assert "'object' field is 490 bytes" in r["body"]["result"]["a"]["error"]["message"], r
    assert r["body"]["result"]["b"] == {"allowed": True}, r
    # a contextual tuple is a tuple: the whole key must fit
    r = c.ops.call("authz.check", {"tuple_key": tk(), "contextual_tuples": [tk(object_=ok_obj, user=long_user)]})
    assert code(r) == "invalid" and "store's key limit" in message(r), r
    # no error-level log line came from any of it
    errors = [line for line in c.read_logs().splitlines() if '"level":"error"' in line.replace(" ", "")]
    assert not errors, errors[:3]


# --- routing frames -------------------------------------------------------------

def counter(c, name):
    r = c.ops.call("stats")
    assert r and r["ok"], r
    return r["body"]["counters"].get(name, 0)


@test
def routing_frames_come_back_or_drop_the_request(c):
    cl = c.client("authz", key_name="pyroute", principal="ext:route-client", routing_id=b"r" * 255)
    try:
        # the longest routing id a client may choose: answered
        r = cl.call("health")
        assert r and r["ok"], r
        # frames before the request come back before the reply, as sent
        # (with the id's 256 bytes, 469 of the 512 a reply can carry)
        prefix = [b"", b"a" * 10, b"b" * 200]
        env = sc.envelope("health", {})
        cl.sock.send_multipart(prefix + [msgpack.packb(env, use_bin_type=True)])
        assert cl.sock.poll(2000), "no reply with routing frames"
        parts = cl.sock.recv_multipart()
        assert parts[:-1] == prefix, [len(p) for p in parts]
        reply = msgpack.unpackb(parts[-1], raw=False)
        assert reply["ok"] and reply["corr"] == env["id"], reply
        # a frame no routing id can be, or more routing than a reply can
        # carry: that request is dropped and counted, nothing else
        before = counter(c, "requests_dropped_routing_too_long")
        for prefix in ([b"x" * 256], [b"y" * 200] * 3):
            env = sc.envelope("health", {})
            cl.sock.send_multipart(prefix + [msgpack.packb(env, use_bin_type=True)])
            assert not cl.sock.poll(300), "a request with %d bytes of routing was answered" % sum(map(len, prefix))
        assert counter(c, "requests_dropped_routing_too_long") == before + 2
        r = cl.call("health")
        assert r and r["ok"], r
    finally:
        cl.close()


if __name__ == "__main__":
    sys.exit(run(setup, teardown))
