#!/usr/bin/env python3
"""Integration: sanctum-auditor as a real process — audit.append durable and
idempotent, and every root, inclusion proof and consistency proof of every
tree up to N entries checked by a verifier written here from RFC 6962 /
RFC 9162 with hashlib alone (it shares no code with the auditor); the tree
head's Ed25519 signature checked with Node (the key imported by the `jose`
package) against audit.jwks; appends from 8 concurrent clients sharing
fsyncs (the writer's group counters); restarts keeping log and key; bad
input answered with errors; an entry changed in the store caught by its
proof."""
import base64
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(__file__))
from cluster import ROOT, Cluster  # noqa: E402
from harness import run, test  # noqa: E402
import msgpack  # noqa: E402
import sanctum_client as sc  # noqa: E402

N = 300                     # entries appended one by one; every tree size up to N is checked
ALL_PAIRS_UP_TO = 48        # sizes whose every index / old size is proved
PRINCIPAL = "svc:orchestrator"
LEAVES = []                 # leaf hashes in index order, computed here
SENT = {}                   # index -> (envelope, entry) of appends made here


# ---- RFC 6962 / RFC 9162, written from the RFCs -------------------------
def sha(b):
    return hashlib.sha256(b).digest()


def leaf_hash(entry_bytes):
    return sha(b"\x00" + entry_bytes)


def node_hash(left, right):
    return sha(b"\x01" + left + right)


def mth(leaves):
    """RFC 6962 2.1 MTH over leaf hashes."""
    n = len(leaves)
    if n == 0:
        return sha(b"")
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def verify_inclusion(index, size, leaf, path, root):
    """RFC 9162 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first, second, first_hash, second_hash, path):
    """RFC 9162 2.1.4.2 (equal sizes: an empty path and equal roots)."""
    if first == second:
        return not path and first_hash == second_hash
    if first == 0 or first > second or not path:
        return False
    if first & (first - 1) == 0:
        path = [first_hash] + list(path)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_hash and sr == second_hash


def canonical(value):
    """RFC 8785 for values without floats or keys past the BMP."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def h(hexstr):
    return bytes.fromhex(hexstr)


# ---- the bus ------------------------------------------------------------
def exchange(cl, env, timeout_ms=5000):
    cl.send_raw(msgpack.packb(env, use_bin_type=True))
    while True:
        reply = cl.recv(timeout_ms)
        assert reply is not None, "no reply to %s" % env["type"]
        if reply.get("corr") == env["id"]:
            return reply


def call(cl, type_, body=None):
    return exchange(cl, sc.envelope(type_, body or {}))


def body(reply):
    assert reply["ok"], reply
    return reply["body"]


def code(reply):
    assert not reply["ok"], reply
    return reply["error"]["code"]


def append(cl, entry, env=None):
    """Append entry, check the leaf hash the auditor reports against the
    stored form computed here, and record it."""
    env = env or sc.envelope("audit.append", {"entry": entry})
    b = body(exchange(cl, env))
    stored = canonical({"kind": "append", "from": PRINCIPAL, "id": env["id"], "ts": b["ts"], "entry": entry})
    assert b["leaf_hash"] == leaf_hash(stored).hex(), (b, stored)
    if b["index"] == len(LEAVES):
        LEAVES.append(leaf_hash(stored))
        SENT[b["index"]] = (env, entry)
    return b["index"], env


def node_verify(request):
    r = subprocess.run(["node", os.path.join(ROOT, "tests", "js", "verify.mjs")], input=json.dumps(request),
                       capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout + r.stderr


def have_jose():
    return shutil.which("node") and os.path.isdir(os.path.join(ROOT, "tests", "js", "node_modules", "jose"))


class Ctx:
    def __init__(self):
        self.c = Cluster(services=["auditor"])
        self.c.start_all()
        self.cl = self.c.client("auditor", key_name="orch", principal=PRINCIPAL)

    def reconnect(self):
        self.cl.close()
        public, secret = sc.load_keys(self.c.keys, "orch")
        self.cl = sc.SanctumClient(self.c.endpoints["auditor"][0], sc.server_key(self.c.keys, "auditor"),
                                   public, secret)


# ---- tests --------------------------------------------------------------
@test
def appends_are_indexed_and_hash_as_documented(x):
    rnd = random.Random(6962)
    for i in range(N):
        entry = {"step": i, "run": "run-%d" % (i % 7), "ok": i % 3 == 0, "none": None,
                 "amount": rnd.randint(-10**12, 10**12), "note": "é ü \"q\" \\ \n" + "x" * (i % 40),
                 "nested": {"b": [1, 2, {"z": "Z", "a": "A"}], "a": "first"}}
        index, _ = append(x.cl, entry)
        assert index == i, (index, i)
    # the stored bytes are the canonical form this test computes
    for i in (0, 1, N // 2, N - 1):
        b = body(call(x.cl, "audit.entry", {"index": i}))
        env, entry = SENT[i]
        stored = json.loads(b["entry"])
        assert stored["entry"] == entry and stored["id"] == env["id"] and stored["from"] == PRINCIPAL, stored
        assert b["entry"].encode() == canonical(stored), b["entry"]
        assert h(b["leaf_hash"]) == LEAVES[i] == leaf_hash(b["entry"].encode())


@test
def every_tree_size_root_inclusion_and_consistency(x):
    roots = [mth(LEAVES[:n]) for n in range(N + 1)]
    rnd = random.Random(9162)
    checked = [0, 0]
    for n in range(1, N + 1):
        head = body(call(x.cl, "audit.head", {"size": n}))
        assert head["size"] == n and h(head["root"]) == roots[n], (n, head)
        indexes = range(n) if n <= ALL_PAIRS_UP_TO else {0, n - 1, n // 2, rnd.randrange(n), rnd.randrange(n)}
        for m in indexes:
            p = body(call(x.cl, "audit.inclusion", {"index": m, "size": n}))
            path = [h(e) for e in p["path"]]
            assert h(p["leaf_hash"]) == LEAVES[m] and h(p["root"]) == roots[n], (m, n, p)
            assert verify_inclusion(m, n, LEAVES[m], path, roots[n]), (m, n, p)
            if path:                                  # the verifier is not a yes-machine
                bad = list(path)
                bad[m % len(bad)] = bytes([bad[m % len(bad)][0] ^ 1]) + bad[m % len(bad)][1:]
                assert not verify_inclusion(m, n, LEAVES[m], bad, roots[n])
            checked[0] += 1
        olds = range(1, n + 1) if n <= ALL_PAIRS_UP_TO else {1, n // 2, n - 1, n, rnd.randrange(1, n + 1)}
        for m in olds:
            p = body(call(x.cl, "audit.consistency", {"old_size": m, "new_size": n}))
            path = [h(e) for e in p["path"]]
            assert h(p["old_root"]) == roots[m] and h(p["new_root"]) == roots[n], (m, n, p)
            assert verify_consistency(m, n, roots[m], roots[n], path), (m, n, p)
            if m < n:
                assert not verify_consistency(m, n, roots[n], roots[n], path) or roots[m] == roots[n]
            checked[1] += 1
    # the default size is the whole log
    p = body(call(x.cl, "audit.inclusion", {"index": 7}))
    assert p["size"] == N and verify_inclusion(7, N, LEAVES[7], [h(e) for e in p["path"]], roots[N])
    print("# %d inclusion and %d consistency proofs verified, every size 1..%d" % (checked[0], checked[1], N))


@test
def tree_head_signed_and_jwks_thumbprint(x):
    jwks = body(call(x.cl, "audit.jwks"))
    key = jwks["keys"][0]
    assert key["kty"] == "OKP" and key["crv"] == "Ed25519" and key["alg"] == "EdDSA", key
    # kid: the RFC 7638 thumbprint, computed here
    thumb = sha(('{"crv":"Ed25519","kty":"OKP","x":"%s"}' % key["x"]).encode())
    assert key["kid"] == base64.urlsafe_b64encode(thumb).rstrip(b"=").decode(), key
    head = body(call(x.cl, "audit.head"))
    text = "%s\n%d\n%s\ntime %d\n" % (head["origin"], head["size"],
                                     base64.b64encode(h(head["root"])).decode(), head["time"])
    assert head["signed"] == text and head["origin"] == "sanctum-auditor/" + key["kid"], head
    assert head["kid"] == key["kid"] and head["size"] == len(LEAVES) and h(head["root"]) == mth(LEAVES)
    if not have_jose():
        print("# skip the signature check: node or tests/js/node_modules (make deps) missing")
        return
    rc, out = node_verify({"jwks": jwks, "kid": head["kid"], "signed": text, "signature": head["signature"]})
    assert rc == 0, out
    forged = text.replace("\n%d\n" % head["size"], "\n%d\n" % (head["size"] + 1))
    rc, out = node_verify({"jwks": jwks, "kid": head["kid"], "signed": forged, "signature": head["signature"]})
    assert rc == 3 and "does not verify" in out, out


@test
def a_retried_append_is_stored_once(x):
    env = sc.envelope("audit.append", {"entry": {"retry": "me"}})
    i1, _ = append(x.cl, {"retry": "me"}, env)
    i2, _ = append(x.cl, {"retry": "me"}, env)      # the same request id again
    assert i1 == i2 == len(LEAVES) - 1, (i1, i2)
    assert body(call(x.cl, "audit.head"))["size"] == len(LEAVES)
    x.retried, x.retried_index = env, i1


@test
def a_keyed_append_is_stored_once(x):
    entry = {"kind": "step.intent", "try": 1}
    i1, _ = append(x.cl, entry, sc.envelope("audit.append", {"entry": entry, "idempotency_key": "r/n/1"}))
    first = body(call(x.cl, "audit.entry", {"index": i1}))
    size = body(call(x.cl, "audit.head"))["size"]
    # a new request id, another entry, the same key: the first answers
    again = body(call(x.cl, "audit.append", {"entry": {"kind": "step.intent", "try": 2}, "idempotency_key": "r/n/1"}))
    assert again["index"] == i1 and again["leaf_hash"] == LEAVES[i1].hex(), (again, i1)
    assert again["ts"] == json.loads(first["entry"])["ts"], (again, first)
    assert body(call(x.cl, "audit.head"))["size"] == size
    # another key is another entry
    i3, _ = append(x.cl, entry, sc.envelope("audit.append", {"entry": entry, "idempotency_key": "r/n/2"}))
    assert i3 == size, (i3, size)
    x.keyed = i1


@test
def restart_keeps_log_key_and_request_ids(x):
    before = body(call(x.cl, "audit.head"))
    kid = body(call(x.cl, "audit.jwks"))["keys"][0]["kid"]
    seed = os.path.join(x.c.dir, "data", "auditor", "keys", "ed25519.seed")
    assert os.stat(seed).st_mode & 0o777 == 0o600
    assert os.stat(os.path.dirname(seed)).st_mode & 0o777 == 0o700
    x.c.stop("auditor")
    x.c.start("auditor")
    x.c.wait_healthy(["auditor"])
    x.reconnect()
    after = body(call(x.cl, "audit.head"))
    assert (after["size"], after["root"], after["kid"]) == (before["size"], before["root"], kid), (before, after)
    # the dedupe cache is gone with the process; the log still knows the id
    index, _ = append(x.cl, {"retry": "me"}, x.retried)
    assert index == x.retried_index and body(call(x.cl, "audit.head"))["size"] == before["size"]
    again = body(call(x.cl, "audit.append", {"entry": {"after": "restart"}, "idempotency_key": "r/n/1"}))
    assert again["index"] == x.keyed and body(call(x.cl, "audit.head"))["size"] == before["size"], again
    for i in range(5):
        append(x.cl, {"after_restart": i})
    p = body(call(x.cl, "audit.consistency", {"old_size": before["size"]}))
    assert verify_consistency(before["size"], len(LEAVES), h(before["root"]), mth(LEAVES), [h(e) for e in p["path"]])


def restart_auditor(x):
    x.c.stop("auditor")
    x.c.start("auditor")
    x.c.wait_healthy(["auditor"])
    x.reconnect()


@test
def a_request_id_is_checked_with_a_key_too(x):
    """The request id's reuse check holds with an idempotency_key as
    without: the same id and body -> the first answer; the same id with
    another entry, another key or none -> conflict. The same key under a
    new id -> the key's first entry, whatever the entry (PROTOCOL.md).
    Checked in a new process (the in-memory dedupe forgotten): the log's
    request index answers."""
    keyed = {"kind": "step.intent", "id_check": 1}
    kenv = sc.envelope("audit.append", {"entry": keyed, "idempotency_key": "r/id/1"})
    ik, _ = append(x.cl, keyed, kenv)
    plain = {"kind": "step.intent", "id_check": 2}
    penv = sc.envelope("audit.append", {"entry": plain})
    ip, _ = append(x.cl, plain, penv)
    # a keyed append that found its key taken, under a new id
    denv = sc.envelope("audit.append", {"entry": dict(keyed, id_check=3), "idempotency_key": "r/id/1"})
    assert body(exchange(x.cl, denv))["index"] == ik
    restart_auditor(x)
    size = body(call(x.cl, "audit.head"))["size"]

    def again(env, b):
        return exchange(x.cl, dict(env, body=b))
    # (the refusals first: a retry answered is remembered in memory, which
    # would then refuse the id itself; the log's index must, named here)
    def refused(env, b, index):
        r = again(env, b)
        assert code(r) == "conflict" and ("index %d" % index) in r["error"]["message"], r
    # the same id, the same key, another entry
    refused(kenv, {"entry": dict(keyed, id_check=9), "idempotency_key": "r/id/1"}, ik)
    # the same id, the same entry, another key or none
    refused(kenv, {"entry": keyed, "idempotency_key": "r/id/other"}, ik)
    refused(kenv, {"entry": keyed}, ik)
    refused(denv, {"entry": keyed, "idempotency_key": "r/id/other"}, ik)
    refused(denv, {"entry": dict(keyed, id_check=3)}, ik)
    # an id first used without a key, again with one (same entry or not)
    refused(penv, {"entry": plain, "idempotency_key": "r/id/2"}, ip)
    refused(penv, {"entry": dict(plain, id_check=9), "idempotency_key": "r/id/2"}, ip)
    # the same id and body: the first answer
    assert body(again(kenv, kenv["body"]))["index"] == ik
    assert body(again(penv, penv["body"]))["index"] == ip
    assert body(again(denv, denv["body"]))["index"] == ik
    # the key under a new id, another entry: the key's first answer
    b = body(call(x.cl, "audit.append", {"entry": dict(keyed, id_check=4), "idempotency_key": "r/id/1"}))
    assert b["index"] == ik, b
    # nothing of it appended
    assert body(call(x.cl, "audit.head"))["size"] == size
    # the keys refused above are free: their first use appends
    i2, _ = append(x.cl, keyed, sc.envelope("audit.append", {"entry": keyed, "idempotency_key": "r/id/other"}))
    assert i2 == size, (i2, size)


@test
def concurrent_appends_share_fsyncs(x):
    counters = body(call(x.cl, "stats"))["counters"]
    g0, w0 = counters.get("write_groups", 0), counters.get("writes_grouped", 0)
    start = len(LEAVES)
    clients, per_client, in_flight = 8, 120, 16
    public, secret = sc.load_keys(x.c.keys, "orch")
    results, errors = [], []

    def worker(k):
        cl = sc.SanctumClient(x.c.endpoints["auditor"][0], sc.server_key(x.c.keys, "auditor"), public, secret)
        try:
            pending, sent = {}, 0
            while sent < per_client or pending:
                while sent < per_client and len(pending) < in_flight:
                    entry = {"client": k, "n": sent}
                    env = sc.envelope("audit.append", {"entry": entry})
                    cl.send_raw(msgpack.packb(env, use_bin_type=True))
                    pending[env["id"]] = (env, entry)
                    sent += 1
                reply = cl.recv(10000)
                if reply is None:
                    errors.append("client %d: no reply" % k)
                    return
                env, entry = pending.pop(reply["corr"])
                results.append((env, entry, reply))
        finally:
            cl.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(results) == clients * per_client and all(r["ok"] for _, _, r in results)
    by_index = {}
    for env, entry, reply in results:
        stored = canonical({"kind": "append", "from": PRINCIPAL, "id": env["id"], "ts": reply["body"]["ts"],
                            "entry": entry})
        assert reply["body"]["leaf_hash"] == leaf_hash(stored).hex()
        by_index[reply["body"]["index"]] = leaf_hash(stored)
    assert sorted(by_index) == list(range(start, start + clients * per_client)), "indexes not contiguous"
    LEAVES.extend(by_index[i] for i in sorted(by_index))
    assert h(body(call(x.cl, "audit.head"))["root"]) == mth(LEAVES)
    counters = body(call(x.cl, "stats"))["counters"]
    groups, grouped = counters["write_groups"] - g0, counters["writes_grouped"] - w0
    print("# %d appends from %d clients: %d in %d shared commits (%.1f per fsync)"
          % (len(results), clients, grouped, groups, grouped / max(groups, 1)))
    assert groups >= 1 and grouped >= 2 * groups, (groups, grouped)


@test
def bad_input_gets_clear_errors(x):
    cl = x.c.client("auditor")                        # ext: may read, not append
    assert code(call(cl, "audit.append", {"entry": {"k": 1}})) == "forbidden"
    assert "keys" in body(call(cl, "audit.jwks"))
    cl.close()
    r = call(x.cl, "audit.append", {"entry": {"n": 2 ** 60}})
    assert code(r) == "invalid" and "2^53" in r["error"]["message"], r
    size = len(LEAVES)
    r = call(x.cl, "audit.inclusion", {"index": size, "size": size})
    assert code(r) == "invalid", r
    assert code(call(x.cl, "audit.inclusion", {"index": 0, "size": size + 1})) == "invalid"
    assert code(call(x.cl, "audit.inclusion", {"index": -1})) == "invalid"
    assert code(call(x.cl, "audit.consistency", {"old_size": 5, "new_size": 4})) == "invalid"
    assert code(call(x.cl, "audit.consistency", {"old_size": 0})) == "invalid"
    assert code(call(x.cl, "audit.consistency", {"old_size": 1, "new_size": size + 1})) == "invalid"
    assert code(call(x.cl, "audit.head", {"size": size + 1})) == "invalid"
    assert code(call(x.cl, "audit.entry", {"index": size})) == "not_found"
    assert code(call(x.cl, "audit.receipt", {"run": "0" * 26})) == "not_found"
    assert body(call(x.cl, "audit.head"))["size"] == size           # nothing was appended
    p = body(call(x.cl, "audit.consistency", {"old_size": size, "new_size": size}))
    assert p["path"] == [] and p["old_root"] == p["new_root"]


@test
def sanctumctl_audit_checks_heads_and_proofs(x):
    r = x.c.ctl("audit", "jwks")
    assert r.returncode == 0, r.stderr
    jwks_file = os.path.join(x.c.dir, "auditor.jwks")
    with open(jwks_file, "w") as f:
        f.write(r.stdout)
    r = x.c.ctl("audit", "head")
    assert r.returncode == 0 and "Ed25519 signature" in r.stdout and r.stdout.endswith("verified\n"), r.stdout
    assert "key came from the auditor itself" in r.stdout, r.stdout
    r = x.c.ctl("--json", "audit", "proof", "5", "--size", "17", "--jwks", jwks_file)
    out = json.loads(r.stdout)
    assert r.returncode == 0 and out["verified"] and out["head"]["size"] == 17, r.stdout
    assert len(out["checks"]) == 4 and all(c["ok"] for c in out["checks"]), out["checks"]
    r = x.c.ctl("audit", "consistency", "10", "--jwks", jwks_file)
    assert r.returncode == 0 and "is a prefix of the signed tree of %d" % len(LEAVES) in r.stdout, r.stdout
    r = x.c.ctl("audit", "consistency", "10", "200", "--jwks", jwks_file)
    assert r.returncode == 0 and "prefix of the signed tree of 200 " in r.stdout, r.stdout
    # a JWKS holding another key under the auditor's kid: the signature fails, exit 3, saying so
    other = json.loads(open(jwks_file).read())
    other["keys"][0]["x"] = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    with open(jwks_file + ".other", "w") as f:
        json.dump(other, f)
    r = x.c.ctl("audit", "head", "--jwks", jwks_file + ".other")
    assert r.returncode == 3 and "FAILED" in r.stdout and "NOT VERIFIED" in r.stdout, r.stdout
    # usage and errors
    assert x.c.ctl("audit", "proof").returncode == 2
    assert x.c.ctl("audit", "bogus").returncode == 2
    r = x.c.ctl("audit", "proof", str(10 ** 6))
    assert r.returncode == 1 and "not_found: no entry 1000000" in r.stderr, (r.stdout, r.stderr)


@test
def an_entry_changed_in_the_store_fails_its_proof(x):
    """Change one byte of a stored entry behind the auditor's back (mdb_dump,
    edit, mdb_load): the entry now read no longer hashes to its leaf, and its
    inclusion proof against the signed head fails."""
    if not (shutil.which("mdb_dump") and shutil.which("mdb_load")):
        print("# skip: lmdb-utils (mdb_dump, mdb_load) not installed")
        return
    victim = 3
    x.c.stop("auditor")
    db = os.path.join(x.c.dir, "data", "auditor")
    dump = subprocess.run(["mdb_dump", "-s", "audit_entries", db], capture_output=True, text=True, check=True)
    lines = [line for line in dump.stdout.split("\n") if not line.startswith("db_pagesize=")]
    key = "%016x" % victim
    at = next(i for i, line in enumerate(lines) if line.strip() == key)
    value = bytearray(bytes.fromhex(lines[at + 1].strip()))
    value[value.index(b'"step":3') + 7] = ord("4")  # "step":3 -> "step":4
    lines[at + 1] = " " + value.hex()
    subprocess.run(["mdb_load", "-s", "audit_entries", db], input="\n".join(lines), text=True, check=True)
    x.c.start("auditor")
    x.c.wait_healthy(["auditor"])
    x.reconnect()
    entry = body(call(x.cl, "audit.entry", {"index": victim}))["entry"].encode()
    assert b'"step":4' in entry, entry
    head = body(call(x.cl, "audit.head"))
    p = body(call(x.cl, "audit.inclusion", {"index": victim, "size": head["size"]}))
    path = [h(e) for e in p["path"]]
    assert not verify_inclusion(victim, head["size"], leaf_hash(entry), path, h(head["root"]))
    assert verify_inclusion(victim, head["size"], LEAVES[victim], path, h(head["root"]))   # the original still does
    r = x.c.ctl("audit", "proof", str(victim))
    assert r.returncode == 3 and "FAILED entry %d: its bytes hash to the leaf" % victim in r.stdout, r.stdout
    assert x.c.ctl("audit", "proof", str(victim + 1)).returncode == 0


def setup():
    return Ctx()


def teardown(x):
    x.cl.close()
    x.c.close()


if __name__ == "__main__":
    sys.exit(run(setup, teardown))
