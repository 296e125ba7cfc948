#!/usr/bin/env python3
"""Integration: the vault-broker's `auth0` mode (Auth0 Token Vault's
federated connection access token exchange) against a stand-in token
endpoint run by this test (an HTTP server on loopback that checks the form
as Auth0 documents it and answers by the `connection` asked for).

- The exchange's form: grant_type
  urn:auth0:params:oauth:grant-type:token-exchange:federated-connection-access-token,
  subject_token_type refresh_token, the sealed subject token,
  requested_token_type http://auth0.com/oauth/token-type/federated-connection-access-token,
  connection, login_hint, client_id and client_secret; the lease answers
  the federated access token.
- Failures told apart (forbidden with reason): 401 -> invalid_client,
  unauthorized_client (grant type not allowed) -> grant_not_allowed,
  "not enabled" -> connection_not_enabled, invalid_grant (refresh token not
  found) -> not_connected; garbage and 500 -> unavailable provider_error;
  no listener -> unavailable network.
- vault.renew: the same federated token for longer, within the
  provider's own expiry for it (expires_in), refused past it.
"""
import json
import os
import socket
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(__file__))
from cluster import Cluster  # noqa: E402
from harness import run, test  # noqa: E402

RUN = "01JDZ0000000000000000RUN01"
SUBJECT = "auth0-user-refresh-token-canary-91b2"
CLIENT_SECRET = "auth0-client-secret-canary-77c1"
FORMS = []
ANSWERS = {
    "google-oauth2": (200, {"access_token": "ya29.federated-access", "expires_in": 3599, "scope": "sheets.write",
                            "token_type": "Bearer",
                            "issued_token_type": "http://auth0.com/oauth/token-type/federated-connection-access-token"}),
    "c-short": (200, {"access_token": "ya29.federated-short", "expires_in": 30, "token_type": "Bearer"}),
    "c-401": (401, {"error": "access_denied", "error_description": "Unauthorized"}),
    "c-grant": (403, {"error": "unauthorized_client", "error_description":
                      "Grant type 'urn:auth0:params:oauth:grant-type:token-exchange:federated-connection-access-token'"
                      " not allowed for the client."}),
    "c-disabled": (400, {"error": "invalid_request", "error_description":
                         "Connection 'c-disabled' is not enabled for this client."}),
    "c-notconnected": (400, {"error": "invalid_grant", "error_description": "Federated connection Refresh Token not found."}),
    "c-garbage": (200, "<html>maintenance</html>"),
    "c-500": (500, {"error": "server_error"}),
}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        form = dict(urllib.parse.parse_qsl(self.rfile.read(n).decode()))
        FORMS.append(form)
        status, body = ANSWERS.get(form.get("connection"), (400, {"error": "invalid_request"}))
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Ctx:
    def __init__(self):
        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.endpoint = "http://127.0.0.1:%d/oauth/token" % self.srv.server_address[1]
        self.c = Cluster(services=["vault-broker"])
        self.c.start("vault-broker")
        self.c.wait_healthy(["vault-broker"])
        self.orch = self.c.client("vault-broker", key_name="orch-test", principal="svc:orchestrator")
        self.rt = os.path.join(self.c.dir, "rt")
        self.cs = os.path.join(self.c.dir, "cs")
        for path, value in ((self.rt, SUBJECT), (self.cs, CLIENT_SECRET)):
            with open(path, "w") as f:
                f.write(value)
        self.replies = []

    def connect(self, name, conn, endpoint=None):
        r = self.c.ctl("vault", "connect", name, "--kind", "google-sheets", "--mode", "auth0", "--scopes",
                       "sheets.write", "--secret-file", self.rt, "--client-id", "sanctum-client",
                       "--client-secret-file", self.cs, "--token-endpoint", endpoint or self.endpoint,
                       "--auth0-connection", conn, "--login-hint", "buyer@example.com")
        assert r.returncode == 0, r.stdout + r.stderr

    def lease(self, name):
        r = self.orch.call("vault.lease", {"run": RUN, "node": "n1", "connection": name, "scopes": ["sheets.write"],
                                           "ttl": 60}, timeout_ms=15000)
        assert r is not None
        self.replies.append(r)
        return r


@test
def exchange_succeeds_with_the_documented_form(x):
    x.connect("sheets-a0", "google-oauth2")
    r = x.lease("sheets-a0")
    assert r["ok"] and r["body"]["token"] == "ya29.federated-access" and r["body"]["token_type"] == "Bearer", r
    f = FORMS[-1]
    assert f == {"grant_type": "urn:auth0:params:oauth:grant-type:token-exchange:federated-connection-access-token",
                 "subject_token_type": "urn:ietf:params:oauth:token-type:refresh_token",
                 "subject_token": SUBJECT,
                 "requested_token_type": "http://auth0.com/oauth/token-type/federated-connection-access-token",
                 "connection": "google-oauth2", "login_hint": "buyer@example.com",
                 "client_id": "sanctum-client", "client_secret": CLIENT_SECRET}, f


@test
def renewal_within_the_cap_and_the_tokens_own_expiry(x):
    """vault.renew of an auth0 lease: the same federated token for longer,
    no further exchange; never past the provider's own expiry for it
    (expires_in 30 here), refused with reason upstream_expiry beyond."""
    x.connect("sheets-short", "c-short")
    r = x.orch.call("vault.lease", {"run": RUN, "node": "n1", "connection": "sheets-short",
                                    "scopes": ["sheets.write"], "ttl": 10}, timeout_ms=15000)
    assert r["ok"], r
    x.replies.append(r)
    first = r["body"]
    forms = len(FORMS)
    rn = x.orch.call("vault.renew", {"lease_id": first["lease_id"], "ttl": 600}, timeout_ms=5000)
    assert rn["ok"], rn
    x.replies.append(rn)
    assert rn["body"]["token"] == "ya29.federated-short" and rn["body"]["token_type"] == "Bearer", rn
    assert rn["body"]["expires_at"] == first["issued_at"] + 30, (rn["body"], first)
    assert len(FORMS) == forms                          # no second exchange
    rn2 = x.orch.call("vault.renew", {"lease_id": first["lease_id"], "ttl": 600}, timeout_ms=5000)
    assert not rn2["ok"] and rn2["error"]["reason"] == "upstream_expiry", rn2


@test
def failures_told_apart(x):
    for conn, code, reason in (("c-401", "forbidden", "invalid_client"),
                               ("c-grant", "forbidden", "grant_not_allowed"),
                               ("c-disabled", "forbidden", "connection_not_enabled"),
                               ("c-notconnected", "forbidden", "not_connected"),
                               ("c-garbage", "unavailable", "provider_error"),
                               ("c-500", "unavailable", "provider_error")):
        x.connect("a0-" + conn, conn)
        r = x.lease("a0-" + conn)
        assert not r["ok"] and r["error"]["code"] == code and r["error"]["reason"] == reason, (conn, r)
    x.connect("a0-down", "google-oauth2", endpoint="http://127.0.0.1:%d/oauth/token" % free_port())
    r = x.lease("a0-down")
    assert not r["ok"] and r["error"]["code"] == "unavailable" and r["error"]["reason"] == "network", r


@test
def secrets_nowhere(x):
    x.c.stop("vault-broker")
    blob = x.c.read_logs() + json.dumps(x.replies)
    for secret in (SUBJECT, CLIENT_SECRET):
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
    x.srv.shutdown()


if __name__ == "__main__":
    sys.exit(run(setup, teardown))
