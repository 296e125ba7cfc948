#!/usr/bin/env python3
"""Integration: the vault-broker's `oauth` mode against a real authorization
server — oidc-provider (npm), run by this test (tests/js/oidc_server.mjs)
with a confidential client and a refresh token it issued.

- A lease runs the refresh-token grant at the provider's token endpoint
  (on the reactor, the kit's HTTP client) and answers the provider's access
  token; the provider's introspection says it is active.
- When the lease ends (revoked here) the broker forgets the token and
  revokes it at the provider's revocation endpoint (RFC 7009): introspection
  then says inactive.
- vault.renew: the lease lives longer with the same provider's token,
  within the connection's cap, refused past it; revoked upstream when the
  lease ends. An hour-long provider token ends (revoked upstream) when its
  2 s lease expires.
- A refresh token the provider does not know: forbidden, reason
  invalid_grant; a token endpoint that does not answer: unavailable, reason
  network; one that answers garbage: unavailable, reason provider_error.
- A lease refused in its commit (its run ended while the provider's
  answer was on the way): the provider's token it obtained is revoked.
- The refresh token and client secret are in no reply, event, log or LMDB
  page in plain text.
"""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from cluster import ROOT, Cluster  # noqa: E402
from harness import run, test  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

JS = os.path.join(ROOT, "tests", "js")
RUN = "01JDZ0000000000000000RUN01"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Ctx:
    def __init__(self):
        port = free_port()
        self.oidc = subprocess.Popen(["node", os.path.join(JS, "oidc_server.mjs"), str(port)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = ""
        while not line.startswith("{"):         # oidc-provider prints its warnings first
            line = self.oidc.stdout.readline()
            assert line, "oidc_server.mjs did not start"
        self.op = json.loads(line)
        self.c = Cluster(services=["vault-broker"])
        self.c.start("vault-broker")
        self.c.wait_healthy(["vault-broker"])
        self.orch = self.c.client("vault-broker", key_name="orch-test", principal="svc:orchestrator")
        self.files = {}
        for name, value in (("rt", self.op["refresh_token"]), ("cs", self.op["client_secret"]),
                            ("rt2", self.op["refresh_tokens"][1]), ("rt3", self.op["refresh_tokens"][2]),
                            ("rt4", self.op["refresh_tokens"][3]),
                            ("bad", "not-a-refresh-token-of-this-provider")):
            path = os.path.join(self.c.dir, name)
            with open(path, "w") as f:
                f.write(value)
            self.files[name] = path
        self.replies = []

    def connect(self, name, secret="rt", endpoint=None):
        r = self.c.ctl("vault", "connect", name, "--kind", "oauth", "--mode", "oauth", "--scopes", "sheets.write",
                       "--audience", "https://erp.example/", "--secret-file", self.files[secret],
                       "--client-id", self.op["client_id"], "--client-secret-file", self.files["cs"],
                       "--token-endpoint", endpoint or self.op["token_endpoint"],
                       "--revocation-endpoint", self.op["revocation_endpoint"])
        assert r.returncode == 0, r.stdout + r.stderr
        self.replies.append(r.stdout)

    def lease(self, connection):
        r = self.orch.call("vault.lease", {"run": RUN, "node": "n1", "connection": connection,
                                           "scopes": ["sheets.write"], "ttl": 60}, timeout_ms=15000)
        assert r is not None
        self.replies.append(r)
        return r

    def introspect(self, token):
        data = urllib.parse.urlencode({"token": token, "client_id": self.op["client_id"],
                                       "client_secret": self.op["client_secret"]}).encode()
        with urllib.request.urlopen(self.op["introspection_endpoint"], data=data, timeout=5) as f:
            return json.load(f)


@test
def refresh_grant_and_revocation_at_lease_end(x):
    x.connect("erp")
    r = x.lease("erp")
    assert r["ok"], r
    b = r["body"]
    assert b["token_type"] == "Bearer" and b["token"] and b["expires_at"] - time.time() <= 61, b
    assert x.introspect(b["token"])["active"] is True
    rv = x.orch.call("vault.revoke", {"lease_id": b["lease_id"]}, timeout_ms=5000)
    assert rv["ok"] and rv["body"]["revoked"] == [b["lease_id"]], rv
    deadline = time.monotonic() + 5
    while x.introspect(b["token"])["active"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert x.introspect(b["token"])["active"] is False


def _wait_inactive(x, token, secs=5):
    """Introspection says inactive within secs."""
    deadline = time.monotonic() + secs
    while x.introspect(token)["active"] and time.monotonic() < deadline:
        time.sleep(0.1)
    return not x.introspect(token)["active"]


@test
def renewal_within_the_cap_and_the_end_revokes(x):
    """vault.renew of an oauth lease: the lease lives longer (within the
    connection's cap) with the same provider's token, which stays active
    upstream; past the cap it is refused; when the lease ends the token is
    revoked at the provider (RFC 7009)."""
    r = x.c.ctl("vault", "connect", "erp-capped", "--kind", "oauth", "--mode", "oauth", "--scopes", "sheets.write",
                "--audience", "https://erp.example/", "--secret-file", x.files["rt2"],
                "--client-id", x.op["client_id"], "--client-secret-file", x.files["cs"],
                "--token-endpoint", x.op["token_endpoint"], "--revocation-endpoint", x.op["revocation_endpoint"],
                "--ttl-cap", "40")
    assert r.returncode == 0, r.stdout + r.stderr
    r = x.orch.call("vault.lease", {"run": RUN, "node": "n1", "connection": "erp-capped",
                                    "scopes": ["sheets.write"], "ttl": 10}, timeout_ms=15000)
    assert r["ok"], r
    first = r["body"]
    x.replies.append(r)
    rn = x.orch.call("vault.renew", {"lease_id": first["lease_id"], "ttl": 20}, timeout_ms=15000)
    assert rn["ok"], rn
    x.replies.append(rn)
    b = rn["body"]
    assert b["lease_id"] == first["lease_id"] and b["token_type"] == "Bearer", b
    assert b["token"] == first["token"] and b["expires_at"] > first["expires_at"], (b, first)
    assert x.introspect(b["token"])["active"] is True
    # within the cap: asking for 600 s gives the cap (issued_at + 40)
    rn2 = x.orch.call("vault.renew", {"lease_id": first["lease_id"], "ttl": 600}, timeout_ms=15000)
    assert rn2["ok"], rn2
    x.replies.append(rn2)
    assert rn2["body"]["expires_at"] == first["issued_at"] + 40, (rn2["body"], first)
    rn3 = x.orch.call("vault.renew", {"lease_id": first["lease_id"], "ttl": 600}, timeout_ms=15000)
    assert not rn3["ok"] and rn3["error"]["code"] == "conflict" and rn3["error"]["reason"] == "cap", rn3
    leases = x.orch.call("vault.leases", {"run": RUN}, timeout_ms=5000)["body"]["leases"]
    mine = [l for l in leases if l["lease_id"] == first["lease_id"]][0]
    assert mine["renewals"] == 2 and mine["expires_at"] == first["issued_at"] + 40, mine
    assert x.introspect(first["token"])["active"] is True
    rv = x.orch.call("vault.revoke", {"lease_id": first["lease_id"]}, timeout_ms=5000)
    assert rv["ok"], rv
    assert _wait_inactive(x, first["token"]), "the lease ended, its token is still active upstream"
    rn4 = x.orch.call("vault.renew", {"lease_id": first["lease_id"]}, timeout_ms=5000)
    assert not rn4["ok"] and rn4["error"]["code"] == "conflict", rn4


@test
def an_hour_long_token_ends_when_its_lease_expires(x):
    """The provider's token lives an hour (oidc_server.mjs); its lease of 2 s
    expires (the sweep) and the broker revokes it upstream."""
    x.connect("erp-short", secret="rt3")
    r = x.orch.call("vault.lease", {"run": RUN, "node": "n1", "connection": "erp-short", "scopes": ["sheets.write"],
                                    "ttl": 2}, timeout_ms=15000)
    assert r["ok"], r
    x.replies.append(r)
    short = r["body"]
    info = x.introspect(short["token"])
    assert info["active"] is True and info.get("exp", 0) - time.time() > 600, info    # the provider's: an hour
    assert _wait_inactive(x, short["token"], secs=8), "the expired lease's token is still active upstream"
    leases = x.orch.call("vault.leases", {"run": RUN}, timeout_ms=5000)["body"]["leases"]
    assert [l for l in leases if l["lease_id"] == short["lease_id"]][0]["state"] == "expired"


@test
def provider_failures_are_told_apart(x):
    x.connect("erp-bad", secret="bad")
    r = x.lease("erp-bad")
    assert not r["ok"] and r["error"]["code"] == "forbidden" and r["error"]["reason"] == "invalid_grant", r
    x.connect("erp-down", endpoint="http://127.0.0.1:%d/token" % free_port())
    r = x.lease("erp-down")
    assert not r["ok"] and r["error"]["code"] == "unavailable" and r["error"]["reason"] == "network", r
    x.connect("erp-garbage", endpoint=x.op["issuer"] + "/.well-known/openid-configuration")
    r = x.lease("erp-garbage")
    assert not r["ok"] and r["error"]["code"] == "unavailable" and r["error"]["reason"] == "provider_error", r


class HeldTokenEndpoint:
    """A token endpoint in front of the provider's that holds each request
    until released, then forwards it and keeps the access token it saw."""

    def __init__(self, upstream):
        import http.server
        import threading
        self.arrived, self.release, self.tokens = threading.Event(), threading.Event(), []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.arrived.set()
                outer.release.wait(10)
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "authorization")}
                try:
                    with urllib.request.urlopen(urllib.request.Request(upstream, data=body, headers=headers),
                                                timeout=5) as f:
                        status, data = f.status, f.read()
                except urllib.error.HTTPError as e:
                    status, data = e.code, e.read()
                tok = json.loads(data).get("access_token") if data.startswith(b"{") else None
                if tok:
                    outer.tokens.append(tok)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/token" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()


@test
def a_token_for_a_lease_refused_in_its_commit_is_revoked(x):
    """The run ends (vault.revoke {run}) while the provider's answer to its
    lease is on the way: the lease is refused in its commit (conflict
    run_ended), and the provider's token it had obtained, which nobody
    holds, is revoked at the provider (RFC 7009)."""
    import threading
    run = "01JDZ0000000000000000RUN07"
    held = HeldTokenEndpoint(x.op["token_endpoint"])
    try:
        x.connect("erp-held", secret="rt4", endpoint=held.url)
        out = {}
        t = threading.Thread(target=lambda: out.update(r=x.orch.call(
            "vault.lease", {"run": run, "node": "n1", "connection": "erp-held", "scopes": ["sheets.write"],
                            "ttl": 60}, timeout_ms=15000)))
        t.start()
        assert held.arrived.wait(10), "the vault did not ask the provider"
        other = x.c.client("vault-broker", key_name="orch-test", principal="svc:orchestrator")
        rv = other.call("vault.revoke", {"run": run}, timeout_ms=5000)
        assert rv["ok"] and rv["body"]["revoked"] == [], rv
        held.release.set()
        t.join(20)
        r = out.get("r")
        assert r is not None and not r["ok"], r
        assert r["error"]["code"] == "conflict" and r["error"]["reason"] == "run_ended", r
        assert len(held.tokens) == 1, held.tokens
        assert _wait_inactive(x, held.tokens[0]), "the refused lease's provider token is still active"
        ops = x.c.client("vault-broker", key_name="ops-stats", principal="ops:stats")
        stats = ops.call("stats", {}, timeout_ms=5000)
        assert stats["body"]["counters"].get("upstream_tokens_discarded") == 1, stats["body"]["counters"]
    finally:
        held.close()


@test
def secrets_nowhere(x):
    x.c.stop("vault-broker")
    blob = x.c.read_logs() + json.dumps(x.replies)
    for secret in (x.op["refresh_token"], x.op["client_secret"]):
        assert secret not in blob
        for root, _, files in os.walk(os.path.join(x.c.dir, "data")):
            for f in files:
                with open(os.path.join(root, f), "rb") as fh:
                    assert secret.encode() not in fh.read(), f


def setup():
    return Ctx()


def teardown(x):
    x.orch.close()
    x.c.close()
    x.oidc.terminate()
    x.oidc.wait()


if __name__ == "__main__":
    if not os.path.isdir(os.path.join(JS, "node_modules", "oidc-provider")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS, capture_output=True, timeout=180)
    if not os.path.isdir(os.path.join(JS, "node_modules", "oidc-provider")):
        print("not ok oidc_provider_installed: npm could not install oidc-provider (registry unreachable?)")
        print("0 passed, 1 failed")
        sys.exit(1)
    sys.exit(run(setup, teardown))
