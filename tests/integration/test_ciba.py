#!/usr/bin/env python3
"""Integration: sanctum-ciba-broker as a real process, backend local.

Approver devices enrolled with `sanctumctl device enroll`, decisions signed
by `sanctumctl approve|deny --as USER` (C, libsodium), by this test (Python's
`cryptography`, from the bytes PROTOCOL.md 10.4 writes down), and by Node's
WebCrypto Ed25519 (tests/js/ciba_sign.mjs). Proves: a two-level chain
approved in order; escalation on timeout; denial mid-chain; expiry; cancel;
an unenrolled approver passed at once; the approvers' webhook; the broker SIGKILLed with requests
pending and restarted (state kept, expiry by its clock across the
restart); a replayed signature, a signature over another binding message,
by another user's device, by a revoked device refused; events from the
outbox with run and node; the approvals --json shape; a per-approver rate
limit that queues, its window kept across a SIGKILL; the webhook sent
only once the asked level is stored; ciba.list from its indexes; ended
approvals purged after retention_s."""
import base64
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(__file__))
from cluster import BIN, ROOT, Cluster, free_ports  # noqa: E402
from harness import run, test  # noqa: E402
import sanctum_client as sc  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey  # noqa: E402
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat  # noqa: E402

RUN = "01JABCDEFGHJKMNPQRSTVWXYZ0"
EMPTY_SHA = hashlib.sha256(b"[]").hexdigest()


def b64u(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64u(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def decision_bytes(auth_req_id, decision, message, details_sha):
    """PROTOCOL.md 10.4, Signed decisions."""
    return "\n".join(["sanctum-ciba-decision/1", auth_req_id, decision, message, details_sha]).encode()


def body(reply):
    assert reply is not None, "no reply"
    assert reply["ok"], reply
    return reply["body"]


def code(reply):
    assert reply is not None, "no reply"
    assert not reply["ok"], reply
    return reply["error"]["code"]


class Hook(BaseHTTPRequestHandler):
    """The approvers' webhook endpoint (an ntfy or Slack stand-in). With
    probe set, each post is checked against the broker as it arrives
    (probe(post) -> what the broker says then), under lock."""
    posts = []
    probe = None
    probed = []
    lock = threading.Lock()

    def log_message(self, *a):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        post = json.loads(self.rfile.read(n))
        Hook.posts.append((self.path, self.headers.get("Content-Type"), post))
        if Hook.probe:
            with Hook.lock:
                Hook.probed.append((post, Hook.probe(post)))
        self.send_response(204)
        self.end_headers()


HOOK_TOKEN = "tk_" + "5ecret" * 4


class Ctx:
    def __init__(self):
        self.hook = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        threading.Thread(target=self.hook.serve_forever, daemon=True).start()
        self.c = Cluster(services=["ciba-broker"])
        # the webhook's URL carries a token (as Slack's and ntfy's do): it
        # comes from a file of its own, not the config file
        self.hook_file = os.path.join(self.c.dir, "webhook.url")
        with open(self.hook_file, "w") as f:
            f.write("http://127.0.0.1:%d/hook/%s\n" % (self.hook.server_address[1], HOOK_TOKEN))
        os.chmod(self.hook_file, 0o600)
        with open(self.c.conf) as f:
            text = f.read()
        with open(self.c.conf, "w") as f:
            f.write(text.replace("[ciba]\n", "[ciba]\nescalation_scan_ms = 50\nwebhook_url_file = %s\n"
                                 % self.hook_file, 1))
        self.c.start_all()
        self.svc = self.c.client("ciba-broker", key_name="orch", principal="svc:orchestrator")
        self.ops = self.c.client("ciba-broker", key_name="opsk", principal="ops:test")
        self.sub = self.subscribe()
        self.events = []
        self.devices = {}

    def subscribe(self):
        public, secret = sc.load_keys(self.c.keys, "orch")
        s = sc.SanctumSubscriber(self.c.endpoints["ciba-broker"][1], sc.server_key(self.c.keys, "ciba-broker"),
                                 public, secret, topics=("ciba.", "approval."))
        time.sleep(0.3)
        return s

    def reconnect(self):
        for x in (self.svc, self.ops, self.sub):
            x.close()
        self.svc = self.c.client("ciba-broker", key_name="orch", principal="svc:orchestrator")
        self.ops = self.c.client("ciba-broker", key_name="opsk", principal="ops:test")
        self.sub = self.subscribe()

    def drain(self, wait_ms=300):
        while True:
            e = self.sub.recv(wait_ms)
            if e is None:
                return self.events
            self.events.append(e)

    def replay(self):
        """What the outbox kept that the subscriber missed (a restart)."""
        seen = {e["seq"] for e in self.events}
        r = body(self.svc.call("events.replay", {"from_seq": 1}))
        for e in r["events"]:
            if e["seq"] not in seen and e["type"].startswith(("ciba.", "approval.")):
                self.events.append(e)
        self.events.sort(key=lambda e: e["seq"])

    def events_of(self, approval_id, wait_ms=300):
        self.drain(wait_ms)
        return [e for e in self.events if e["body"].get("approval_id") == approval_id]

    def enroll(self, user):
        r = self.c.ctl("--json", "device", "enroll", user)
        assert r.returncode == 0, r.stdout + r.stderr
        out = json.loads(r.stdout)
        assert out["approver"] == "user:" + user and out["state"] == "active", out
        st = os.stat(out["secret_file"])
        assert st.st_mode & 0o777 == 0o600, oct(st.st_mode)
        with open(out["secret_file"]) as f:
            sk = unb64u(f.read().strip())
        key = Ed25519PrivateKey.from_private_bytes(sk[:32])
        self.devices[user] = (out["device"], key)
        return out["device"]

    def authorize(self, chain, message="Approve PO-7 for USD 520,000", **extra):
        b = {"chain": chain, "binding_message": message, "run": RUN, "node": "approve_po"}
        b.update(extra)
        return self.svc.call("ciba.authorize", b)

    def status(self, **kw):
        return body(self.svc.call("ciba.status", kw))

    def sign(self, user, auth_req_id, decision, message, details_sha=EMPTY_SHA):
        device, key = self.devices[user]
        return device, b64u(key.sign(decision_bytes(auth_req_id, decision, message, details_sha)))

    def decide(self, auth_req_id, decision, device, signature):
        return self.ops.call("ciba.decide", {"auth_req_id": auth_req_id, "decision": decision,
                                             "device": device, "signature": signature})


def chain(*users, after=0):
    return [{"approver": "user:" + u, "escalate_after": after} for u in users]


def level_states(a):
    return [lvl["state"] for lvl in a["levels"]]


def wait_state(x, approval_id, want, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        a = x.status(approval_id=approval_id)
        if a["state"] == want:
            return a
        time.sleep(0.05)
    raise AssertionError("approval %s not %s: %s" % (approval_id, want, a))


def verify_level(a, i):
    """An approved level's signature verifies over the documented bytes."""
    lvl = a["levels"][i]
    pk = Ed25519PublicKey.from_public_bytes(unb64u(lvl["device_key"]))
    pk.verify(unb64u(lvl["signature"]), decision_bytes(lvl["auth_req_id"], "approve", a["binding_message"],
                                                       a["authorization_details_sha256"]))


# ---- tests ------------------------------------------------------------------
@test
def enrol_devices(x):
    for u in ("alice", "bob", "carol"):
        x.enroll(u)
    r = x.c.ctl("--json", "device", "list")
    assert r.returncode == 0, r.stderr
    devs = json.loads(r.stdout)["devices"]
    assert {d["approver"] for d in devs} == {"user:alice", "user:bob", "user:carol"}, devs
    # a bad key is refused
    assert code(x.ops.call("ciba.device.enroll", {"approver": "user:x", "public_key": "!" * 43})) == "invalid"


@test
def two_level_chain_approved_in_order(x):
    details = [{"type": "payment_initiation", "amount": {"currency": "USD", "value": 520000}, "po": "PO-7"}]
    a = body(x.authorize(chain("alice", "bob"), authorization_details=details))
    assert level_states(a) == ["pending", "waiting"], a
    assert a["expires_in"] == 300 and a["interval"] == 5, a
    ids = [lvl["auth_req_id"] for lvl in a["levels"]]
    for i in ids:                                     # >= 160 bits, [A-Za-z0-9._-]
        assert re.fullmatch(r"[A-Za-z0-9._-]{27,}", i) and len(unb64u(i)) * 8 >= 160, i
    assert len(set(ids)) == 2
    st = x.status(approval_id=a["approval_id"])
    canon = json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert st["authorization_details_sha256"] == hashlib.sha256(canon).hexdigest(), st
    # bob cannot decide before alice (his level is not asked yet)
    dev, sig = x.sign("bob", ids[1], "approve", st["binding_message"], st["authorization_details_sha256"])
    assert code(x.decide(ids[1], "approve", dev, sig)) == "conflict"
    # alice approves with sanctumctl (C, libsodium)
    r = x.c.ctl("approve", ids[0], "--as", "alice")
    assert r.returncode == 0, r.stdout + r.stderr
    st = x.status(auth_req_id=ids[0])
    assert st["state"] == "pending" and level_states(st) == ["approved", "pending"], st
    r = x.c.ctl("--json", "approve", ids[1], "--as", "bob")
    assert r.returncode == 0, r.stdout + r.stderr
    st = x.status(approval_id=a["approval_id"])
    assert st["state"] == "approved" and level_states(st) == ["approved", "approved"], st
    verify_level(st, 0)
    verify_level(st, 1)
    ev = x.events_of(a["approval_id"])
    types = [e["type"] for e in ev]
    assert types == ["ciba.requested", "ciba.approved", "ciba.requested", "ciba.approved",
                     "approval.completed"], types
    for e in ev:
        assert e["body"]["run"] == RUN and e["body"]["node"] == "approve_po", e
    assert [e["body"]["approver"] for e in ev[:4]] == ["user:alice"] * 2 + ["user:bob"] * 2
    done = ev[-1]["body"]
    assert done["outcome"] == "approved" and [lvl["signature"] for lvl in done["levels"]] == \
        [lvl["signature"] for lvl in st["levels"]], done
    # seq strictly increasing from the outbox
    seqs = [e["seq"] for e in ev]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


@test
def webhook_wakes_the_approver(x):
    # as the post arrives, the broker already has the level stored as asked
    probe_client = x.c.client("ciba-broker", key_name="hookprobe", principal="svc:orchestrator")
    Hook.probe = lambda post: probe_client.call("ciba.status", {"auth_req_id": post["auth_req_id"]})
    try:
        a = body(x.authorize(chain("dave", "bob")))           # dave has no device: bob is asked
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not [p for p, _ in Hook.probed if p["approval_id"] == a["approval_id"]]:
            time.sleep(0.05)
    finally:
        with Hook.lock:
            Hook.probe = None
        probe_client.close()
    seen = [st for p, st in Hook.probed if p["approval_id"] == a["approval_id"]]
    assert len(seen) == 1 and body(seen[0])["levels"][1]["state"] == "pending", seen
    assert body(seen[0])["levels"][1]["asked_at"] > 0, seen
    auth = a["levels"][1]["auth_req_id"]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not [p for p in Hook.posts if p[2]["auth_req_id"] == auth]:
        time.sleep(0.05)
    got = [p for p in Hook.posts if p[2]["approval_id"] == a["approval_id"]]
    assert len(got) == 1, got
    path, ctype, post = got[0]
    assert path == "/hook/" + HOOK_TOKEN and ctype == "application/json", got
    assert post["type"] == "ciba.requested" and post["approver"] == "user:bob" and post["level"] == 1, post
    assert post["binding_message"] == "Approve PO-7 for USD 520,000" and post["run"] == RUN, post


@test
def escalation_on_timeout(x):
    a = body(x.authorize(chain("alice", after=1) + chain("bob")))
    ids = [lvl["auth_req_id"] for lvl in a["levels"]]
    time.sleep(1.4)
    st = x.status(approval_id=a["approval_id"])
    assert level_states(st) == ["escalated", "pending"], st
    ev = [e for e in x.events_of(a["approval_id"]) if e["type"] == "ciba.escalated"]
    assert len(ev) == 1 and ev[0]["body"]["reason"] == "timeout" and ev[0]["body"]["to_approver"] == "user:bob", ev
    assert ev[0]["body"]["run"] == RUN
    # alice is too late
    dev, sig = x.sign("alice", ids[0], "approve", st["binding_message"])
    assert code(x.decide(ids[0], "approve", dev, sig)) == "conflict"
    dev, sig = x.sign("bob", ids[1], "approve", st["binding_message"])
    assert body(x.decide(ids[1], "approve", dev, sig))["state"] == "approved"


@test
def denial_mid_chain(x):
    a = body(x.authorize(chain("alice", "bob", "carol")))
    ids = [lvl["auth_req_id"] for lvl in a["levels"]]
    assert x.c.ctl("approve", ids[0], "--as", "alice").returncode == 0
    r = x.c.ctl("deny", ids[1], "--as", "bob")
    assert r.returncode == 0, r.stdout + r.stderr
    st = x.status(approval_id=a["approval_id"])
    assert st["state"] == "denied" and level_states(st) == ["approved", "denied", "cancelled"], st
    ev = x.events_of(a["approval_id"])
    assert [e["type"] for e in ev][-2:] == ["ciba.denied", "approval.completed"], ev
    assert ev[-1]["body"]["outcome"] == "denied"
    assert x.c.ctl("approve", ids[2], "--as", "carol").returncode == 1


@test
def expiry(x):
    a = body(x.authorize(chain("alice"), requested_expiry=1))
    assert a["expires_in"] == 1
    st = wait_state(x, a["approval_id"], "expired")
    assert level_states(st) == ["expired"], st
    time.sleep(0.2)
    ev = x.events_of(a["approval_id"])
    assert [e["type"] for e in ev] == ["ciba.requested", "ciba.expired", "approval.completed"], ev
    assert ev[-1]["body"]["outcome"] == "expired"
    dev, sig = x.sign("alice", a["levels"][0]["auth_req_id"], "approve", st["binding_message"])
    assert code(x.decide(a["levels"][0]["auth_req_id"], "approve", dev, sig)) == "conflict"


@test
def cancel(x):
    a = body(x.authorize(chain("alice", "bob")))
    st = body(x.svc.call("ciba.cancel", {"approval_id": a["approval_id"], "reason": "run cancelled"}))
    assert st["state"] == "cancelled" and level_states(st) == ["cancelled", "cancelled"], st
    ev = x.events_of(a["approval_id"])
    assert [e["type"] for e in ev] == ["ciba.requested", "ciba.cancelled", "approval.completed"], ev
    assert ev[-1]["body"]["outcome"] == "cancelled"
    assert code(x.svc.call("ciba.cancel", {"auth_req_id": a["levels"][0]["auth_req_id"]})) == "conflict"
    assert code(x.svc.call("ciba.cancel", {})) == "invalid"


@test
def unenrolled_approver_escalated_past(x):
    a = body(x.authorize(chain("dave", "alice")))
    assert level_states(a) == ["approver_not_enrolled", "pending"], a
    ev = x.events_of(a["approval_id"])
    assert [e["type"] for e in ev] == ["ciba.escalated", "ciba.requested"], ev
    assert ev[0]["body"]["reason"] == "approver_not_enrolled" and ev[0]["body"]["approver"] == "user:dave"
    # a chain whose last level has no device cannot be approved
    b = body(x.authorize(chain("dave")))
    st = x.status(approval_id=b["approval_id"])
    assert st["state"] == "denied" and st["reason"] == "approver_not_enrolled", st
    assert x.events_of(b["approval_id"])[-1]["body"]["outcome"] == "denied"


@test
def broker_killed_and_restarted(x):
    short = body(x.authorize(chain("alice"), requested_expiry=2))
    long_ = body(x.authorize(chain("alice", "bob")))
    esc = body(x.authorize(chain("carol", after=2) + chain("bob")))
    x.drain()
    x.c.stop("ciba-broker", sig=signal.SIGKILL)
    time.sleep(2.5)                       # the short one expires while the broker is down
    x.c.start("ciba-broker")
    x.c.wait_healthy(["ciba-broker"])
    x.reconnect()
    st = wait_state(x, short["approval_id"], "expired")
    assert level_states(st) == ["expired"], st
    esc_st = x.status(approval_id=esc["approval_id"])
    deadline = time.monotonic() + 3
    while level_states(esc_st) != ["escalated", "pending"] and time.monotonic() < deadline:
        time.sleep(0.05)
        esc_st = x.status(approval_id=esc["approval_id"])
    assert level_states(esc_st) == ["escalated", "pending"], esc_st
    # the pending one is still decidable, by the same auth_req_ids
    ids = [lvl["auth_req_id"] for lvl in long_["levels"]]
    assert x.c.ctl("approve", ids[0], "--as", "alice").returncode == 0
    assert x.c.ctl("approve", ids[1], "--as", "bob").returncode == 0
    assert x.status(approval_id=long_["approval_id"])["state"] == "approved"
    time.sleep(0.3)
    x.drain()
    x.replay()                            # the expiry was published before we subscribed again
    ev = x.events_of(short["approval_id"])
    assert [e["type"] for e in ev] == ["ciba.requested", "ciba.expired", "approval.completed"], ev


@test
def replayed_and_misdirected_signatures_refused(x):
    a = body(x.authorize(chain("alice"), message="Pay ACME USD 10"))
    b = body(x.authorize(chain("alice"), message="Pay ACME USD 10"))
    ida, idb = a["levels"][0]["auth_req_id"], b["levels"][0]["auth_req_id"]
    dev, sig = x.sign("alice", ida, "approve", "Pay ACME USD 10")
    # the same signature on another request (same message, other auth_req_id)
    assert code(x.decide(idb, "approve", dev, sig)) == "forbidden"
    assert body(x.decide(ida, "approve", dev, sig))["state"] == "approved"
    # replayed (a new request id, same decision)
    assert code(x.decide(ida, "approve", dev, sig)) == "conflict"
    # a signature over another binding message
    dev, sig = x.sign("alice", idb, "approve", "Pay ACME USD 1")
    assert code(x.decide(idb, "approve", dev, sig)) == "forbidden"
    # a signature of "deny" sent as "approve"
    dev, sig = x.sign("alice", idb, "deny", "Pay ACME USD 10")
    assert code(x.decide(idb, "approve", dev, sig)) == "forbidden"
    # another user's device: bob's key, named as his device or as alice's
    bdev, bsig = x.sign("bob", idb, "approve", "Pay ACME USD 10")
    assert code(x.decide(idb, "approve", bdev, bsig)) == "forbidden"
    assert code(x.decide(idb, "approve", x.devices["alice"][0], bsig)) == "forbidden"
    # an unknown device
    other = Ed25519PrivateKey.generate()
    odev = b64u(other.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    osig = b64u(other.sign(decision_bytes(idb, "approve", "Pay ACME USD 10", EMPTY_SHA)))
    assert code(x.decide(idb, "approve", odev, osig)) == "forbidden"
    assert x.status(approval_id=b["approval_id"])["state"] == "pending"
    dev, sig = x.sign("alice", idb, "approve", "Pay ACME USD 10")
    assert body(x.decide(idb, "approve", dev, sig))["state"] == "approved"


@test
def revoked_device_refused(x):
    x.enroll("erin")
    a = body(x.authorize(chain("erin")))
    auth = a["levels"][0]["auth_req_id"]
    dev, sig = x.sign("erin", auth, "approve", a.get("binding_message", "Approve PO-7 for USD 520,000"))
    r = x.c.ctl("device", "revoke", "erin")
    assert r.returncode == 0, r.stdout + r.stderr
    assert code(x.decide(auth, "approve", dev, sig)) == "forbidden"
    assert code(x.ops.call("ciba.device.enroll", {"approver": "user:erin", "public_key": dev})) == "conflict"
    # a new chain for erin passes her by: no active device
    b = body(x.authorize(chain("erin", "alice")))
    assert level_states(b) == ["approver_not_enrolled", "pending"], b


@test
def webcrypto_decision_accepted(x):
    r = subprocess.run(["node", os.path.join(ROOT, "tests", "js", "ciba_sign.mjs"), "keygen"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    key = json.loads(r.stdout)
    body(x.ops.call("ciba.device.enroll", {"approver": "user:frank", "public_key": key["public_key"]}))
    details = [{"type": "payment_initiation", "note": "é ü", "amount": 12}]
    a = body(x.authorize(chain("frank"), message="Approve PO-9 (EUR 12)", authorization_details=details))
    st = x.status(approval_id=a["approval_id"])
    req = {"jwk": key["jwk"], "auth_req_id": a["levels"][0]["auth_req_id"], "decision": "approve",
           "binding_message": st["binding_message"],
           "authorization_details_sha256": st["authorization_details_sha256"]}
    r = subprocess.run(["node", os.path.join(ROOT, "tests", "js", "ciba_sign.mjs"), "sign"], input=json.dumps(req),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    sig = json.loads(r.stdout)["signature"]
    out = body(x.decide(req["auth_req_id"], "approve", key["public_key"], sig))
    assert out["state"] == "approved" and out["levels"][0]["device_key"] == key["public_key"], out


def new_key():
    k = Ed25519PrivateKey.generate()
    return k, b64u(k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def invite(x, user, *extra):
    r = x.c.ctl("--json", "device", "invite", user, *extra)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


def redeem(x, code, pk):
    return x.svc.call("ciba.device.redeem", {"code": code, "public_key": pk})


@test
def device_invite_redeemed_once(x):
    inv = invite(x, "inez")
    assert inv["user"] == "user:inez" and len(unb64u(inv["code"])) >= 16, inv
    assert 0 < inv["expires_at"] - time.time() * 1e6 <= 600e6 + 5e6, inv       # 10 minutes by default
    key, pk = new_key()
    out = body(redeem(x, inv["code"], pk))
    assert out["user"] == "user:inez" and out["device"] == pk and out["state"] == "active", out
    listed = json.loads(x.c.ctl("--json", "device", "list", "inez").stdout)["devices"]
    assert [(d["device"], d["state"]) for d in listed] == [(pk, "active")], listed
    # once only: the same code again, with this key or another
    for again in (pk, new_key()[1]):
        r = redeem(x, inv["code"], again)
        assert code(r) == "conflict" and "used" in r["error"]["message"], r
    assert [d["device"] for d in json.loads(x.c.ctl("--json", "device", "list", "inez").stdout)["devices"]] == [pk]
    # unknown, malformed, wrong senders
    r = redeem(x, b64u(os.urandom(24)), new_key()[1])
    assert code(r) == "not_found" and "unknown invite code" in r["error"]["message"], r
    assert code(redeem(x, invite(x, "inez")["code"], "!" * 43)) == "invalid"
    assert code(x.svc.call("ciba.device.invite", {"user": "user:inez"})) == "forbidden"
    assert code(x.ops.call("ciba.device.invite", {"user": "inez"})) == "invalid"
    assert x.c.ctl("device", "invite", "inez", "--ttl", "0").returncode == 2
    # the enrolled key decides erin's level
    a = body(x.authorize(chain("inez")))
    st = x.status(approval_id=a["approval_id"])
    idl = a["levels"][0]["auth_req_id"]
    sig = b64u(key.sign(decision_bytes(idl, "approve", st["binding_message"], st["authorization_details_sha256"])))
    assert body(x.decide(idl, "approve", pk, sig))["state"] == "approved"
    x.drain()
    ev = [e for e in x.events if e["type"] in ("ciba.device.invited", "ciba.device.enrolled")
          and e["body"].get("approver") == "user:inez"]
    assert [e["type"] for e in ev][:2] == ["ciba.device.invited", "ciba.device.enrolled"], ev
    assert all("code" not in e["body"] for e in ev), ev
    assert ev[1]["body"].get("via") == "invite", ev


@test
def device_invite_expires_and_survives_restart(x):
    short = invite(x, "gina", "--ttl", "1")
    kept = invite(x, "gina")
    used = invite(x, "gina")
    _, pk_used = new_key()
    body(redeem(x, used["code"], pk_used))
    time.sleep(1.3)
    r = redeem(x, short["code"], new_key()[1])
    assert code(r) == "forbidden" and "expired" in r["error"]["message"], r
    x.c.stop("ciba-broker", sig=signal.SIGKILL)
    # stored hashed: no code is in the broker's store in plain text
    blob = b""
    for root, _, files in os.walk(os.path.join(x.c.dir, "data")):
        for f in files:
            if "ciba" in root or "ciba" in f:
                with open(os.path.join(root, f), "rb") as fh:
                    blob += fh.read()
    assert blob and all(i["code"].encode() not in blob for i in (short, kept, used))
    x.c.start("ciba-broker")
    x.c.wait_healthy(["ciba-broker"])
    x.reconnect()
    assert code(redeem(x, used["code"], new_key()[1])) == "conflict"
    assert code(redeem(x, short["code"], new_key()[1])) == "forbidden"
    _, pk = new_key()
    assert body(redeem(x, kept["code"], pk))["device"] == pk
    devs = {d["device"] for d in json.loads(x.c.ctl("--json", "device", "list", "gina").stdout)["devices"]}
    assert devs == {pk_used, pk}, devs


@test
def approvals_json_and_login_hint(x):
    a = body(x.svc.call("ciba.authorize", {"login_hint": "user:carol", "binding_message": "One\tline\nplease",
                                           "run": RUN, "node": "n1"}))
    assert len(a["levels"]) == 1 and a["levels"][0]["state"] == "pending"
    r = x.c.ctl("--json", "approvals", "--as", "carol")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)["approvals"]
    mine = [p for p in out if p["approval_id"] == a["approval_id"]]
    assert len(mine) == 1, out
    p = mine[0]
    assert set(p) == {"auth_req_id", "approval_id", "approver", "run", "node", "binding_message", "expires_at"}, p
    assert p["binding_message"] == "One line please" and p["approver"] == "user:carol" and p["run"] == RUN
    assert all(q["approver"] == "user:carol" for q in out)
    # ciba.list filters
    lst = body(x.svc.call("ciba.list", {"run": RUN, "state": "pending"}))["approvals"]
    assert a["approval_id"] in [q["approval_id"] for q in lst]
    assert all(q["state"] == "pending" for q in lst)


@test
def list_by_index(x):
    """ciba.list by run, approver and state (each from its index) gives
    exactly the approvals that match, and follows a state change."""
    run1, run2 = "01JLISTRUN0000000000000001", "01JLISTRUN0000000000000002"
    a1 = body(x.authorize(chain("alice", "bob"), run=run1))
    a2 = body(x.authorize(chain("carol"), run=run1))
    a3 = body(x.authorize(chain("bob"), run=run2))

    def ids(**q):
        return [p["approval_id"] for p in body(x.svc.call("ciba.list", q))["approvals"]]
    assert ids(run=run1) == [a1["approval_id"], a2["approval_id"]]            # oldest first
    assert ids(run=run2) == [a3["approval_id"]]
    assert ids(run=run1, approver="user:carol") == [a2["approval_id"]]
    bob_pending = ids(approver="user:bob", state="pending")
    assert a1["approval_id"] in bob_pending and a3["approval_id"] in bob_pending
    assert a2["approval_id"] not in ids(approver="user:bob")
    x.svc.call("ciba.cancel", {"approval_id": a3["approval_id"]})
    assert a3["approval_id"] not in ids(approver="user:bob", state="pending")
    assert a3["approval_id"] in ids(approver="user:bob", state="cancelled")
    assert a3["approval_id"] in ids(state="cancelled", limit=1000)
    assert a3["approval_id"] not in ids(state="pending", limit=1000)
    assert all(p["state"] == "cancelled" for p in body(x.svc.call("ciba.list", {"state": "cancelled"}))["approvals"])
    # an approver sees only approvals they are a level of, whatever they ask
    carol = x.c.client("ciba-broker", key_name="carolk", principal="user:carol")
    try:
        got = body(carol.call("ciba.list", {"approver": "user:bob", "run": run1}))["approvals"]
        assert [p["approval_id"] for p in got] == [a2["approval_id"]], got
    finally:
        carol.close()


@test
def ended_approvals_purged_after_retention(x):
    """retention_s = 1: an ended approval (its auth_req_ids, its index
    entries) is gone a second after it ended; a pending one stays."""
    c = Cluster(services=["ciba-broker"])
    try:
        with open(c.conf) as f:
            text = f.read()
        with open(c.conf, "w") as f:
            f.write(text.replace("[ciba]\n", "[ciba]\nretention_s = 1\nescalation_scan_ms = 50\n", 1))
        c.start_all()
        assert c.ctl("device", "enroll", "hana").returncode == 0
        svc = c.client("ciba-broker", key_name="orch", principal="svc:orchestrator")
        try:
            ended = body(svc.call("ciba.authorize", {"chain": chain("hana"), "binding_message": "m", "run": RUN,
                                                     "idempotency_key": "purged/key/1"}))
            kept = body(svc.call("ciba.authorize", {"chain": chain("hana"), "binding_message": "m", "run": RUN}))
            body(svc.call("ciba.cancel", {"approval_id": ended["approval_id"]}))
            assert body(svc.call("ciba.status", {"approval_id": ended["approval_id"]}))["state"] == "cancelled"

            def index_keys():
                if not shutil.which("mdb_dump"):
                    return None
                return subprocess.run(["mdb_dump", "-p", "-s", "index", os.path.join(c.dir, "data", "ciba-broker")],
                                      capture_output=True, text=True, check=True).stdout
            before = index_keys()
            assert before is None or "purged/key/1" in before, before
            time.sleep(1.6)
            after = index_keys()
            assert after is None or "purged/key/1" not in after, "the idempotency key outlived its approval"
            assert code(svc.call("ciba.status", {"approval_id": ended["approval_id"]})) == "not_found"
            assert code(svc.call("ciba.status", {"auth_req_id": ended["levels"][0]["auth_req_id"]})) == "not_found"
            assert body(svc.call("ciba.status", {"approval_id": kept["approval_id"]}))["state"] == "pending"
            for q in ({"run": RUN}, {"approver": "user:hana"}, {"state": "cancelled"}, {}):
                got = [p["approval_id"] for p in body(svc.call("ciba.list", q))["approvals"]]
                assert ended["approval_id"] not in got, (q, got)
            assert [p["approval_id"] for p in body(svc.call("ciba.list", {"run": RUN}))["approvals"]] == \
                [kept["approval_id"]]
            stats = body(svc.call("stats", {}))
            assert "approvals_purged" in json.dumps(stats), stats
        finally:
            svc.close()
    finally:
        c.close()


@test
def bad_input_refused(x):
    assert code(x.svc.call("ciba.status", {})) == "invalid"
    assert code(x.svc.call("ciba.status", {"auth_req_id": "nope"})) == "not_found"
    assert code(x.authorize([])) == "invalid"                                      # schema: 1..16 levels
    assert code(x.authorize([{"approver": "alice"}])) == "invalid"                 # not a principal
    assert code(x.authorize(chain("alice"), message="\n\t ")) == "invalid"        # empty once sanitised
    assert code(x.authorize(chain("alice"), message="x" * 300)) == "invalid"      # too long
    assert code(x.authorize(chain("alice"), authorization_details=[{"no": "type"}])) == "invalid"
    assert code(x.svc.call("ciba.authorize", {"chain": chain("alice"), "login_hint": "user:a",
                                              "binding_message": "m"})) == "invalid"
    assert code(x.ops.call("ciba.authorize", {"login_hint": "user:a", "binding_message": "m"})) == "forbidden"
    a = body(x.authorize(chain("alice")))
    dev, sig = x.sign("alice", a["levels"][0]["auth_req_id"], "approve", "Approve PO-7 for USD 520,000")
    assert code(x.decide(a["levels"][0]["auth_req_id"], "maybe", dev, sig)) == "invalid"
    assert code(x.decide(a["levels"][0]["auth_req_id"], "approve", dev, "AAAA")) == "forbidden"


@test
def status_many(x):
    """ciba.status {approval_ids}: many approvals in one read, answered in
    the order asked (a summary each; an unknown id not_found in its place);
    an approver sees only their own; bad lists are refused; no effects."""
    a1 = body(x.authorize(chain("alice")))
    a2 = body(x.authorize(chain("bob")))
    body(x.svc.call("ciba.cancel", {"approval_id": a2["approval_id"], "reason": "run cancelled"}))
    unknown = "0" * 26
    got = body(x.svc.call("ciba.status", {"approval_ids": [a2["approval_id"], unknown, a1["approval_id"]]}))
    got = got["approvals"]
    assert [g["approval_id"] for g in got] == [a2["approval_id"], unknown, a1["approval_id"]], got
    assert got[0]["state"] == "cancelled" and got[0]["completed_at"] > 0 and "levels" not in got[0], got[0]
    assert got[1]["error"]["code"] == "not_found" and "state" not in got[1], got[1]
    assert got[2]["state"] == "pending" and got[2]["expires_at"] > 0 and "completed_at" not in got[2], got[2]
    assert x.status(approval_id=a1["approval_id"])["state"] == "pending"        # the single form as before
    alice = x.c.client("ciba-broker", key_name="alicek", principal="user:alice")
    try:
        mine = body(alice.call("ciba.status", {"approval_ids": [a1["approval_id"], a2["approval_id"]]}))["approvals"]
        assert mine[0]["state"] == "pending" and mine[1]["error"]["code"] == "not_found", mine
    finally:
        alice.close()
    assert code(x.svc.call("ciba.status", {"approval_ids": []})) == "invalid"
    assert code(x.svc.call("ciba.status", {"approval_ids": [a1["approval_id"], 7]})) == "invalid"
    assert code(x.svc.call("ciba.status", {"approval_ids": [unknown] * 1001})) == "invalid"
    assert x.status(approval_id=a1["approval_id"])["state"] == "pending"


@test
def rate_limit_queues(x):
    """A second broker with 2 asks a minute per approver: the third level
    for the same approver waits, queued, and is not asked (no
    ciba.requested) while the first two are pending."""
    c = Cluster(services=["ciba-broker"])
    try:
        with open(c.conf) as f:
            text = f.read()
        with open(c.conf, "w") as f:
            f.write(text.replace("[ciba]\n", "[ciba]\napprover_rate_per_min = 2\nescalation_scan_ms = 50\n", 1))
        c.start_all()
        r = c.ctl("device", "enroll", "gina")
        assert r.returncode == 0, r.stderr
        svc = c.client("ciba-broker", key_name="orch", principal="svc:orchestrator")
        got = [body(svc.call("ciba.authorize", {"chain": chain("gina"), "binding_message": "m%d" % i}))
               for i in range(3)]
        assert [g["levels"][0]["state"] for g in got] == ["pending"] * 3
        st = body(svc.call("ciba.status", {"approval_id": got[2]["approval_id"]}))
        assert st["levels"][0].get("queued") is True and "asked_at" not in st["levels"][0], st
        assert [st0["levels"][0].get("queued") for st0 in
                (body(svc.call("ciba.status", {"approval_id": g["approval_id"]})) for g in got[:2])] == [None, None]
        # a queued level cannot be decided yet
        r = c.ctl("approve", got[2]["levels"][0]["auth_req_id"], "--as", "gina")
        assert r.returncode == 1 and "queued" in r.stderr, r.stderr
        r = c.ctl("--json", "approvals", "--as", "gina")
        assert len(json.loads(r.stdout)["approvals"]) == 2, r.stdout
        svc.close()
        # the window is durable: killed and restarted, the broker still
        # counts the two asks of this minute, so a fourth level queues too
        c.stop("ciba-broker", sig=signal.SIGKILL)
        c.start("ciba-broker")
        c.wait_healthy(["ciba-broker"])
        svc = c.client("ciba-broker", key_name="orch", principal="svc:orchestrator")
        fourth = body(svc.call("ciba.authorize", {"chain": chain("gina"), "binding_message": "m3"}))
        st = body(svc.call("ciba.status", {"approval_id": fourth["approval_id"]}))
        assert st["levels"][0].get("queued") is True and "asked_at" not in st["levels"][0], st
        st = body(svc.call("ciba.status", {"approval_id": got[2]["approval_id"]}))
        assert st["levels"][0].get("queued") is True, st
        svc.close()
    finally:
        c.close()


@test
def webhook_url_from_its_file_never_logged(x):
    # the token in the URL (webhook_url_file) appears in no log line,
    # though the webhook was used (webhook_wakes_the_approver)
    assert [p for p in Hook.posts if p[0] == "/hook/" + HOOK_TOKEN], Hook.posts
    assert HOOK_TOKEN not in x.c.read_logs()
    # a broker given both, an unreadable file, or a file that is no URL
    # does not start, and says why (never echoing the file's content)
    bad_url = os.path.join(x.c.dir, "bad.url")
    with open(bad_url, "w") as f:
        f.write("ftp://h/%s\n" % HOOK_TOKEN)
    for extra, want in (("webhook_url = http://127.0.0.1:1/x\nwebhook_url_file = %s\n" % x.hook_file, "not both"),
                        ("webhook_url_file = %s/nowhere.url\n" % x.c.dir, "nowhere.url is not readable"),
                        ("webhook_url_file = %s\n" % bad_url, "webhook_url_file must be an http:// or https:// URL")):
        conf = os.path.join(x.c.dir, "bad-hook.conf")
        with open(x.c.conf) as f:
            text = f.read()
        text = re.sub(r"webhook_url_file = .*\n", "", text)
        with open(conf, "w") as f:
            f.write(text.replace("[ciba]\n", "[ciba]\n" + extra, 1))
        rpc, pub = free_ports(2)       # beside the running broker: ports of its own
        env = dict(os.environ, SANCTUM_CIBA_RPC="tcp://127.0.0.1:%d" % rpc, SANCTUM_CIBA_PUB="tcp://127.0.0.1:%d" % pub)
        p = subprocess.run([os.path.join(BIN, "sanctum-ciba-broker"), "--config", conf], capture_output=True,
                           text=True, timeout=30, env=env)
        out = p.stdout + p.stderr
        assert p.returncode != 0 and want in out, (extra, p.returncode, out)
        assert HOOK_TOKEN not in out, out


def setup():
    return Ctx()


def teardown(x):
    for s in (x.svc, x.ops, x.sub):
        s.close()
    x.c.close()
    x.hook.shutdown()


if __name__ == "__main__":
    sys.exit(run(setup, teardown))
