#!/usr/bin/env python3
"""Integration: sanctum-ciba-broker with backend oidc.

Part 1, against a real, independent CIBA provider: node-oidc-provider
(tests/js/ciba_op.mjs, features.ciba in poll mode), its endpoints found
through its .well-known/openid-configuration as the broker would find any
provider's: approval, a two-level chain, denial (AccessDenied), expiry, an
unknown user passed (unknown_user_id), the Auth0 binding-message mapping,
and the client secret nowhere in the logs.

Part 2, a stand-in written here for what is Auth0's own (no discovery:
Auth0's /bc-authorize and /oauth/token paths): the iss_sub login hint,
the binding-message character set, slow_down with Retry-After (+5 s for
this and every later poll), Retry-After on authorization_pending, 5
requests a minute per approver (the broker queues the sixth), 401 for bad
client credentials, garbage JSON, a connection cut, invalid_grant,
expired_token and an ID token for another user; the broker's poll timing
and states are asserted from the stand-in's own clock."""
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(__file__))
from cluster import ROOT, Cluster  # noqa: E402
from harness import run, test  # noqa: E402

SECRET = "s3cret-canary-7f1c2d"


def body(reply):
    assert reply is not None, "no reply"
    assert reply["ok"], reply
    return reply["body"]


def b64u(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def broker(issuer, extra):
    c = Cluster(services=["ciba-broker"])
    secret_file = os.path.join(c.dir, "client_secret")
    with open(secret_file, "w") as f:
        f.write(SECRET + "\n")
    os.chmod(secret_file, 0o600)
    with open(c.conf) as f:
        text = f.read()
    lines = ["backend = oidc", "oidc_issuer = " + issuer, "oidc_client_id = sanctum",
             "oidc_client_secret_file = " + secret_file, "oidc_default_interval_s = 1",
             "escalation_scan_ms = 50"] + extra
    with open(c.conf, "w") as f:
        f.write(text.replace("[ciba]\n", "[ciba]\n" + "\n".join(lines) + "\n", 1))
    c.start_all()
    return c


def wait(fn, timeout=10, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


class Ctx:
    def __init__(self):
        self.op = None
        self.c = None
        self.stand = None
        self.sc = None


# ---- part 1: node-oidc-provider -------------------------------------------
def have_op():
    return shutil.which("node") and os.path.isdir(os.path.join(ROOT, "tests", "js", "node_modules", "oidc-provider"))


def op_get(x, path):
    with urllib.request.urlopen(x.control + path, timeout=5) as r:
        return json.loads(r.read())


def op_post(x, path):
    req = urllib.request.Request(x.control + path, data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def status(x, approval_id):
    return body(x.svc.call("ciba.status", {"approval_id": approval_id}))


def wait_state(x, approval_id, want, timeout=10):
    return wait(lambda: (lambda a: a if a["state"] == want else None)(status(x, approval_id)), timeout,
                "approval %s %s" % (approval_id, want))


def op_requests_for(x, user, n):
    return wait(lambda: [r for r in op_get(x, "/requests") if r["user"] == user][n - 1:] or None, 10,
                "the provider's request %d for %s" % (n, user))


@test
def op_discovery_and_approval(x):
    a = body(x.svc.call("ciba.authorize", {"chain": [{"approver": "user:alice"}],
                                           "binding_message": "Approve PO-7 for $520,000 (ACME)",
                                           "run": "01JABCDEFGHJKMNPQRSTVWXYZ0", "node": "approve"}))
    st = status(x, a["approval_id"])
    assert st["binding_message"] == "Approve PO-7 for USD 520,000 ACME", st
    req = op_requests_for(x, "alice", 1)[0]
    assert req["binding_message"] == "Approve PO-7 for USD 520,000 ACME", req
    time.sleep(1.2)                               # a few authorization_pending polls
    st = status(x, a["approval_id"])
    assert st["state"] == "pending" and st["levels"][0]["poll"] == "authorization_pending", st
    assert "provider_auth_req_id" not in st["levels"][0]
    op_post(x, "/approve/alice")
    st = wait_state(x, a["approval_id"], "approved")
    assert st["levels"][0]["state"] == "approved" and st["levels"][0]["provider_sub"] == "alice", st


@test
def op_two_level_chain(x):
    a = body(x.svc.call("ciba.authorize", {"chain": [{"approver": "user:alice"}, {"approver": "user:bob"}],
                                           "binding_message": "Two phones"}))
    n_alice = len([r for r in op_get(x, "/requests") if r["user"] == "alice"])
    op_requests_for(x, "alice", n_alice)
    assert not [r for r in op_get(x, "/requests") if r["user"] == "bob"]     # bob not asked yet
    op_post(x, "/approve/alice")
    wait(lambda: [lvl["state"] for lvl in status(x, a["approval_id"])["levels"]] == ["approved", "pending"],
         10, "level 2 asked")
    op_requests_for(x, "bob", 1)
    op_post(x, "/approve/bob")
    st = wait_state(x, a["approval_id"], "approved")
    assert [lvl["state"] for lvl in st["levels"]] == ["approved", "approved"], st


@test
def op_denial(x):
    a = body(x.svc.call("ciba.authorize", {"login_hint": "user:bob", "binding_message": "Deny me"}))
    n = len([r for r in op_get(x, "/requests") if r["user"] == "bob"])
    op_requests_for(x, "bob", n)
    wait(lambda: status(x, a["approval_id"])["levels"][0].get("poll"), 5, "a poll")
    op_post(x, "/deny/bob")
    st = wait_state(x, a["approval_id"], "denied")
    assert st["levels"][0]["state"] == "denied" and st["levels"][0]["provider_error"] == "access_denied", st


@test
def op_expiry(x):
    a = body(x.svc.call("ciba.authorize", {"login_hint": "user:alice", "binding_message": "Too late",
                                           "requested_expiry": 2}))
    st = wait_state(x, a["approval_id"], "expired", timeout=8)
    assert st["levels"][0]["state"] == "expired", st


@test
def op_unknown_user_passed(x):
    a = body(x.svc.call("ciba.authorize", {"chain": [{"approver": "user:zed"}, {"approver": "user:alice"}],
                                           "binding_message": "Who is zed"}))
    wait(lambda: [lvl["state"] for lvl in status(x, a["approval_id"])["levels"]] ==
         ["approver_not_enrolled", "pending"], 10, "zed passed")


@test
def op_secret_never_logged(x):
    assert SECRET not in x.c.read_logs()
    r = body(x.svc.call("events.replay", {"from_seq": 1}))
    assert SECRET not in json.dumps(r)


@test
def op_client_secret_basic_from_a_credential(x):
    """oidc_client_auth = client_secret_basic (an HTTP Basic header on
    bc-authorize and every token poll, seen by the provider), the secret
    read from a systemd credential ($CREDENTIALS_DIRECTORY/NAME), not
    logged; without $CREDENTIALS_DIRECTORY, or with a blank credential
    (the shipped unit's default), the broker does not start."""
    c = Cluster(services=["ciba-broker"])
    try:
        creds = os.path.join(c.dir, "credentials")
        os.mkdir(creds, 0o700)
        with open(os.path.join(creds, "ciba-client-secret"), "w") as f:
            f.write(SECRET + "\n")
        with open(c.conf) as f:
            text = f.read()
        lines = ["backend = oidc", "oidc_issuer = " + x.issuer, "oidc_client_id = sanctum-basic",
                 "oidc_client_auth = client_secret_basic", "oidc_client_secret_credential = ciba-client-secret",
                 "oidc_login_hint = plain", "oidc_default_interval_s = 1", "escalation_scan_ms = 50"]
        with open(c.conf, "w") as f:
            f.write(text.replace("[ciba]\n", "[ciba]\n" + "\n".join(lines) + "\n", 1))
        seen = len(op_get(x, "/auths"))
        c.start("ciba-broker", env={"CREDENTIALS_DIRECTORY": creds})
        c.wait_healthy()
        svc = c.client("ciba-broker", key_name="orch", principal="svc:orchestrator")
        try:
            n = len([r for r in op_get(x, "/requests") if r["user"] == "bob"])
            a = body(svc.call("ciba.authorize", {"login_hint": "user:bob", "binding_message": "Basic auth"}))
            req = op_requests_for(x, "bob", n + 1)[-1]
            assert req["client"] == "sanctum-basic", req
            wait(lambda: (body(svc.call("ciba.status", {"approval_id": a["approval_id"]}))["levels"][0]
                          .get("poll") == "authorization_pending"), 8, "a token poll the provider accepted")
            op_post(x, "/approve/bob")
            st = wait(lambda: (lambda b: b if b["state"] == "approved" else None)(
                body(svc.call("ciba.status", {"approval_id": a["approval_id"]}))), 10, "approved")
            assert st["levels"][0]["provider_sub"] == "bob", st
        finally:
            svc.close()
        mine = [r for r in op_get(x, "/auths")[seen:] if not r["path"].startswith("/.well-known")]
        assert any(r["path"].startswith("/backchannel") for r in mine), mine
        assert any(r["path"].startswith("/token") for r in mine), mine
        # every request of this broker (the other broker polls with client_secret_post meanwhile)
        basic = [r for r in mine if r["basic"]]
        assert len(basic) >= 2 and any(r["path"].startswith("/backchannel") for r in basic), mine
        assert SECRET not in c.read_logs()
        c.stop("ciba-broker")
        p = c.start("ciba-broker")
        assert p.wait(timeout=10) != 0
        assert "CREDENTIALS_DIRECTORY" in c.read_logs()
        # the shipped unit's stand-in when /etc/sanctum/ciba-oidc-client.secret
        # is absent, a blank credential (SetCredential=...:\n), stops it too, by name
        with open(os.path.join(creds, "ciba-client-secret"), "w") as f:
            f.write("\n")
        p = c.start("ciba-broker", env={"CREDENTIALS_DIRECTORY": creds})
        assert p.wait(timeout=10) != 0
        assert "ciba-client-secret is empty" in c.read_logs()
    finally:
        c.close()


@test
def op_private_key_jwt(x):
    """oidc_client_auth = private_key_jwt: the broker holds only a private
    Ed25519 JWK (a multi-line file) and authenticates bc-authorize and
    every poll with a client assertion the provider verifies against the
    public key it was given (client "sanctum-jwt" takes nothing else);
    a file that is not such a JWK stops the broker at start."""
    c = Cluster(services=["ciba-broker"])
    try:
        key_file = os.path.join(c.dir, "client_key.jwk")
        with open(key_file, "w") as f:
            json.dump(x.jwt_private, f, indent=2)
        os.chmod(key_file, 0o600)
        with open(c.conf) as f:
            text = f.read()
        lines = ["backend = oidc", "oidc_issuer = " + x.issuer, "oidc_client_id = sanctum-jwt",
                 "oidc_client_auth = private_key_jwt", "oidc_client_secret_file = " + key_file,
                 "oidc_login_hint = plain", "oidc_default_interval_s = 1", "escalation_scan_ms = 50"]
        with open(c.conf, "w") as f:
            f.write(text.replace("[ciba]\n", "[ciba]\n" + "\n".join(lines) + "\n", 1))
        c.start_all()
        svc = c.client("ciba-broker", key_name="orch", principal="svc:orchestrator")
        try:
            n = len([r for r in op_get(x, "/requests") if r["user"] == "alice"])
            a = body(svc.call("ciba.authorize", {"login_hint": "user:alice", "binding_message": "JWT auth"}))
            req = op_requests_for(x, "alice", n + 1)[-1]
            assert req["client"] == "sanctum-jwt", req
            wait(lambda: (body(svc.call("ciba.status", {"approval_id": a["approval_id"]}))["levels"][0]
                          .get("poll") == "authorization_pending"), 8, "a token poll the provider accepted")
            op_post(x, "/approve/alice")
            st = wait(lambda: (lambda b: b if b["state"] == "approved" else None)(
                body(svc.call("ciba.status", {"approval_id": a["approval_id"]}))), 10, "approved")
            assert st["levels"][0]["provider_sub"] == "alice", st
        finally:
            svc.close()
        assert x.jwt_private["d"] not in c.read_logs()
        c.stop("ciba-broker")
        with open(key_file, "w") as f:
            f.write(SECRET + "\n")
        p = c.start("ciba-broker")
        assert p.wait(timeout=10) != 0
        assert "private Ed25519 JWK" in c.read_logs() and SECRET not in c.read_logs()
    finally:
        c.close()


# ---- part 2: an Auth0 stand-in ----------------------------------------------
class Stand:
    """Auth0's own behaviour, scripted per approver (the login hint's sub)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.bc = []          # (time, form)
        self.polls = {}       # sub -> [time, ...]
        self.ids = {}         # auth_req_id -> sub
        stand = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def send(self, status, value, headers=()):
                data = value if isinstance(value, bytes) else json.dumps(value).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self.send(404, {"error": "not_found"})       # no discovery: Auth0's paths

            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(n).decode()))
                stand.handle(self, self.path, form)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.issuer = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def id_token(self, sub):
        head = b64u(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
        claims = b64u(json.dumps({"iss": self.issuer + "/", "aud": "sanctum", "sub": sub,
                                  "iat": int(time.time())}).encode())
        return "%s.%s.%s" % (head, claims, b64u(b"sig"))

    def handle(self, h, path, form):
        now = time.monotonic()
        if form.get("client_id") != "sanctum" or form.get("client_secret") != SECRET:
            return h.send(401, {"error": "invalid_client", "error_description": "bad client credentials"})
        if path == "/bc-authorize":
            hint = json.loads(form["login_hint"])
            assert hint["format"] == "iss_sub" and hint["iss"] == self.issuer + "/", hint
            sub = hint["sub"]
            msg = form.get("binding_message", "")
            with self.lock:
                self.bc.append((now, form))
                recent = [t for t, f in self.bc if json.loads(f["login_hint"])["sub"] == sub and now - t < 60]
            if len(recent) > 5:
                return h.send(429, {"error": "too_many_requests"}, [("Retry-After", "60")])
            if not all(c.isalnum() or c in " +-_.,:#" for c in msg) or len(msg) > 64:
                return h.send(400, {"error": "invalid_request", "error_description": "binding_message"})
            if sub == "badclient":
                return h.send(401, {"error": "invalid_client"})
            auth = "a0-%d-%s" % (len(self.bc), sub)
            with self.lock:
                self.ids[auth] = sub
            return h.send(200, {"auth_req_id": auth, "expires_in": 300, "interval": 1})
        if path == "/oauth/token":
            assert form["grant_type"] == "urn:openid:params:grant-type:ciba", form
            sub = self.ids[form["auth_req_id"]]
            with self.lock:
                polls = self.polls.setdefault(sub, [])
                polls.append(now)
                k = len(polls)
            script = {
                "slow": [("slow_down", "2"), None],
                "ra": [("authorization_pending", "3"), None],
                "garbage": ["garbage", None],
                "net": ["cut", None],
                "ig": [("invalid_grant", None)],
                "exp": [("expired_token", None)],
                "liar": ["liar"],
                "pend": [("authorization_pending", None)] * 1000,
            }.get(sub, [None])
            step = script[min(k, len(script)) - 1]
            if step is None:
                return h.send(200, {"access_token": "at", "id_token": self.id_token(sub), "token_type": "Bearer",
                                    "expires_in": 60})
            if step == "garbage":
                return h.send(200, b"{not json")
            if step == "cut":
                h.close_connection = True
                return
            if step == "liar":
                return h.send(200, {"access_token": "at", "id_token": self.id_token("someone-else")})
            error, ra = step
            return h.send(400, {"error": error}, [("Retry-After", ra)] if ra else [])
        h.send(404, {"error": "not_found"})


def authorize(x, sub, message="Approve PO-7"):
    return body(x.ssvc.call("ciba.authorize", {"chain": [{"approver": "user:" + sub}], "binding_message": message}))


def sstatus(x, approval_id):
    return body(x.ssvc.call("ciba.status", {"approval_id": approval_id}))


def swait(x, approval_id, want, timeout=15):
    return wait(lambda: (lambda a: a if a["state"] == want else None)(sstatus(x, approval_id)), timeout,
                "approval %s %s" % (approval_id, want))


@test
def auth0_slow_down_with_retry_after(x):
    a = authorize(x, "slow", "Pay $1,234.50 to ACME; ok?")
    st = swait(x, a["approval_id"], "approved", timeout=20)
    bc = [(t, f) for t, f in x.stand.bc if json.loads(f["login_hint"])["sub"] == "slow"]
    assert bc[0][1]["binding_message"] == "Pay USD 1,234.50 to ACME ok", bc[0][1]
    assert bc[0][1]["scope"] == "openid" and int(bc[0][1]["requested_expiry"]) <= 300, bc[0][1]
    polls = x.stand.polls["slow"]
    assert len(polls) == 2, polls
    assert polls[0] - bc[0][0] >= 0.95, "first poll before the interval"
    # slow_down: interval 1 + 5 = 6 s (more than Retry-After's 2)
    assert polls[1] - polls[0] >= 5.9, "poll after slow_down came after %.2f s" % (polls[1] - polls[0])
    assert st["levels"][0]["interval"] == 6, st


@test
def auth0_retry_after_on_pending(x):
    a = authorize(x, "ra")
    swait(x, a["approval_id"], "approved")
    polls = x.stand.polls["ra"]
    assert len(polls) == 2 and polls[1] - polls[0] >= 2.95, polls


@test
def auth0_garbage_and_cut_connection_retried(x):
    a = authorize(x, "garbage")
    b = authorize(x, "net")
    swait(x, a["approval_id"], "approved")
    swait(x, b["approval_id"], "approved")
    assert len(x.stand.polls["garbage"]) == 2 and len(x.stand.polls["net"]) == 2


@test
def auth0_terminal_errors_are_distinct(x):
    want = {"badclient": ("invalid_client", "denied"), "ig": ("invalid_grant", "denied"),
            "exp": ("expired", "expired"), "liar": ("request_rejected", "denied")}
    ids = {sub: authorize(x, sub)["approval_id"] for sub in want}
    for sub, (level_state, state) in want.items():
        st = swait(x, ids[sub], state)
        assert st["levels"][0]["state"] == level_state, (sub, st)
        if state == "denied" and level_state != "denied":
            assert st["reason"] == level_state, st


@test
def auth0_five_a_minute_queues(x):
    got = [authorize(x, "pend", "Queue %d" % i) for i in range(6)]
    time.sleep(0.5)
    sent = [f for t, f in x.stand.bc if json.loads(f["login_hint"])["sub"] == "pend"]
    assert len(sent) == 5, len(sent)                   # the broker held the sixth back
    st = sstatus(x, got[5]["approval_id"])
    assert st["state"] == "pending" and st["levels"][0].get("queued") is True, st


@test
def auth0_bad_client_secret_is_401(x):
    # the stand-in answers 401 to a wrong secret: checked with a request made here
    req = urllib.request.Request(x.stand.issuer + "/bc-authorize", data=urllib.parse.urlencode(
        {"client_id": "sanctum", "client_secret": "wrong", "login_hint": "{}"}).encode(), method="POST")
    try:
        urllib.request.urlopen(req, timeout=5)
        raise AssertionError("accepted")
    except urllib.error.HTTPError as e:
        assert e.code == 401
    assert SECRET not in x.sc.read_logs()


def setup():
    x = Ctx()
    if have_op():
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PrivateFormat, PublicFormat, NoEncryption
        key = Ed25519PrivateKey.generate()
        d = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        public = {"kty": "OKP", "crv": "Ed25519", "x": b64u(pub)}
        # registered with its RFC 7638 thumbprint as kid, which the broker's assertions name
        public["kid"] = b64u(hashlib.sha256(json.dumps(public, sort_keys=True, separators=(",", ":"))
                                            .encode()).digest())
        x.jwt_private = {"kty": "OKP", "crv": "Ed25519", "x": public["x"], "d": b64u(d)}
        x.op = subprocess.Popen(["node", os.path.join(ROOT, "tests", "js", "ciba_op.mjs")], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True,
                                env=dict(os.environ, CIBA_OP_SECRET=SECRET, CIBA_OP_JWT_JWK=json.dumps(public)))
        info = json.loads(x.op.stdout.readline())
        x.control = info["control"]
        x.issuer = info["issuer"]
        x.c = broker(info["issuer"], ["oidc_login_hint = plain"])
        x.svc = x.c.client("ciba-broker", key_name="orch", principal="svc:orchestrator")
    x.stand = Stand()
    x.sc = broker(x.stand.issuer, ["approver_rate_per_min = 5", "binding_message_max = 64"])
    x.ssvc = x.sc.client("ciba-broker", key_name="orch", principal="svc:orchestrator")
    return x


def teardown(x):
    if x.c:
        x.svc.close()
        x.c.close()
    if x.op:
        x.op.terminate()
        x.op.wait()
    x.ssvc.close()
    x.sc.close()
    x.stand.server.shutdown()


if __name__ == "__main__":
    if not have_op():   # a check whose tool is missing fails; it never vanishes from the count
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=os.path.join(ROOT, "tests", "js"),
                       capture_output=True, timeout=180)
    if not have_op():
        from harness import TESTS

        def missing(name):
            def op_missing(x):
                raise AssertionError("%s not run: node or tests/js/node_modules/oidc-provider missing "
                                     "(ops/deps.sh runs npm ci in tests/js)" % name)
            op_missing.__name__ = name
            return op_missing
        TESTS[:] = [missing(t.__name__) if t.__name__.startswith("op_") else t for t in TESTS]
    sys.exit(run(setup, teardown))
