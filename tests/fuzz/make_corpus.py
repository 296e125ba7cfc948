#!/usr/bin/python3
"""make_corpus.py: write the seed corpora of the proto fuzz targets.

    /usr/bin/python3 tests/fuzz/make_corpus.py    (needs python3-msgpack)

Writes tests/fuzz/corpus/mpack/ and tests/fuzz/corpus/envelope/: valid
values and envelopes of several catalogue types, and each hostile case
that tests/unit/test_proto.c checks. Deterministic (fixed ids and times),
so a rerun rewrites the same files.
"""
import os
import struct
import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))
ID = "01HZX3K4V9QW8E7R6T5Y4V3J2P"
ID2 = "01HZX3K4V9QW8E7R6T5Y4V3J2Q"
RUN = "01HZX3K4V9QW8E7R6T5Y4V3J2R"
TS = 1764000000000000
TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def pack(value):
    return msgpack.packb(value, use_bin_type=True)


def env(type_, body=None, **extra):
    e = {"v": 1, "type": type_, "id": ID, "ts": TS, "traceparent": TP}
    if body is not None:
        e["body"] = body
    e.update(extra)
    return e


def without(key, e):
    return {k: v for k, v in e.items() if k != key}


def nested(depth):
    return b"\x91" * depth + b"\xc0"


HOSTILE = {
    "huge_array32": b"\xdd\xff\xff\xff\xff",
    "huge_map32": b"\xdf\xff\xff\xff\xff",
    "huge_str32": b"\xdb\xff\xff\xff\xff",
    "huge_bin32": b"\xc6\xff\xff\xff\xff",
    "short_str16": b"\xda\x00\x03ab",
    "short_map16": b"\xde\x00\x02\xa1a\xc0",
    "deep_10000": nested(10000),
    "deep_maps": b"\x81\xa1k" * 200 + b"\xc0",
    "dup_keys": b"\x82\xa1a\x01\xa1a\x02",
    "int_key": b"\x81\x01\x02",
    "bin_key": b"\x81\xc4\x01a\x02",
    "empty_key": b"\x81\xa0\x02",
    "bad_utf8": b"\xa2\xc3\x28",
    "surrogate": b"\xa3\xed\xa0\x80",
    "fixext1": b"\xd4\x01\x00",
    "ext8": b"\xc7\x01\x01\x00",
    "never_used_c1": b"\xc1",
    "uint64_big": b"\xcf\x80\x00\x00\x00\x00\x00\x00\x00",
    "nan64": b"\xcb" + struct.pack(">d", float("nan")),
    "inf32": b"\xca\x7f\x80\x00\x00",
    "trailing": b"\xc0\xc0",
    "empty": b"",
}

MPACK_VALID = {
    "scalars": pack([None, True, False, 0, 127, 128, -32, -33, 255, 65536, 2**32, 2**63 - 1,
                     -2**63, 1.5, -0.25, "", "x" * 31, "y" * 40, "h\u00e9llo \u20ac"]),
    "float32": b"\xca\x3f\xc0\x00\x00",
    "ints_wide": b"\x94\xcc\x05\xd0\xff\xd1\xff\xfe\xd3\x80\x00\x00\x00\x00\x00\x00\x00",
    "str16": pack("s" * 300),
    "bin8": pack(b"\x00\x01\xfe\xff"),
    "array16": pack(list(range(20))),
    "map_nested": pack({"a": {"b": {"c": [1, {"d": None}]}}, "e": []}),
    "map16": pack({"k%d" % i: i for i in range(20)}),
    "deep_ok": nested(30),
    "envelope": pack(env("authz.check", {"tuple_key": {"user": "user:anne", "relation": "reader",
                                                       "object": "doc:1"}})),
}


def envelopes():
    e = {}
    e["health"] = pack(env("health", {}))
    e["health_nobody"] = pack(env("health"))
    e["echo"] = pack(env("echo", {"data": {"n": 1, "list": [1, "two", None, 3.5]}}))
    e["events_replay"] = pack(env("events.replay", {"from_seq": 1, "to_seq": 10, "limit": 5}))
    e["events_replay_bad"] = pack(env("events.replay", {"from_seq": 0, "limit": 1001}))
    e["authz_check"] = MPACK_VALID["envelope"]
    e["authz_check_ctx"] = pack(env("authz.check", {
        "tuple_key": {"user": "user:anne", "relation": "reader", "object": "doc:1"},
        "context": {"amount": 520000}, "contextual_tuples": [{"user": "a", "relation": "b", "object": "c"}]}))
    e["vault_lease"] = pack(env("vault.lease", {"run": RUN, "node": "n1", "connection": "sheets",
                                                "scopes": ["read"], "ttl": 600}))
    e["vault_lease_ttl"] = pack(env("vault.lease", {"run": RUN, "node": "n1", "connection": "sheets",
                                                    "scopes": ["read"], "ttl": 601}))
    e["run_start"] = pack(env("run.start", {"workflow": "procurement", "input": {"amount": 5}}))
    e["ciba_authorize"] = pack(env("ciba.authorize", {"login_hint": "user:alice",
                                                      "binding_message": "PO 42", "requested_expiry": 300}))
    e["audit_append"] = pack(env("audit.append", {"entry": {"k": "v"}}))
    e["unknown_type"] = pack(env("no.such.type", {}))
    e["reply_ok"] = pack(env("health", {"state": "ok"}, ok=True, corr=ID2))
    e["reply_error"] = pack(env("health", None, ok=False, corr=ID2,
                                error={"code": "forbidden", "message": "no"}))
    e["event"] = pack(env("echo.seen", {"request": ID2}, pub="svc:authz", seq=7))
    base = env("health", {})
    e["missing_v"] = pack(without("v", base))
    e["missing_type"] = pack(without("type", base))
    e["missing_id"] = pack(without("id", base))
    e["missing_ts"] = pack(without("ts", base))
    e["type_int"] = pack(dict(base, type=3))
    e["ts_negative"] = pack(dict(base, ts=-1))
    e["bad_ulid"] = pack(dict(base, id="01HZX3K4V9QW8E7R6T5Y4V3J2"))
    e["ulid_lower"] = pack(dict(base, id=ID.lower()))
    e["version_2"] = pack(dict(base, v=2))
    e["bad_traceparent"] = pack(dict(base, traceparent="00-zz-00-01"))
    e["long_traceparent"] = pack(dict(base, traceparent=TP + "-more"))
    e["from_on_wire"] = pack(dict(base, **{"from": "svc:orchestrator"}))
    e["body_list"] = pack(dict(base, body=[1, 2]))
    e["not_a_map"] = pack([1, "health"])
    e["truncated"] = e["authz_check"][: len(e["authz_check"]) // 2]
    e["event_seq0"] = pack(env("echo.seen", {}, pub="svc:authz", seq=0))
    for name in ("huge_array32", "deep_10000", "dup_keys", "bad_utf8", "fixext1", "nan64", "trailing"):
        e[name] = HOSTILE[name]
    return e


def write(folder, files):
    path = os.path.join(HERE, "corpus", folder)
    os.makedirs(path, exist_ok=True)
    for name, data in sorted(files.items()):
        with open(os.path.join(path, name), "wb") as f:
            f.write(data)
    print("%s: %d files" % (path, len(files)))


if __name__ == "__main__":
    write("mpack", dict(MPACK_VALID, **HOSTILE))
    write("envelope", envelopes())
