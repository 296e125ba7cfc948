#!/usr/bin/env python3
"""Integration: sanctum-telemetry over HTTP, with the real ciba-broker,
vault-broker, auditor and orchestrator (the run these tests ask about is
not the orchestrator's: its not_found passes through).

- the dashboard's files: types, ETag/304, gzip (precompressed at build),
  no path outside them, security headers on every answer (a CSP without
  inline script, nosniff, frame-deny);
- /api/events: every bus event as SSE with id <pub>/<seq>; resumed with
  Last-Event-ID (the missed events, in order, nothing twice); an unknown
  id gets a resync notice; a client that never reads loses events (counted)
  while a reading client gets every one and the bus keeps its pace, and is
  told to resync once it reads again;
- the read endpoints (runs, a run, gantt, receipt, approvals, leases,
  health), bad and oversized requests;
- /metrics through `promtool check metrics`, every histogram's +Inf
  bucket equal to its _count;
- the decision relay: a decision signed by an enrolled device goes through
  (the broker verifies it), a forged one is refused, a cross-site or
  non-JSON POST is refused before any relay.
"""
import base64
import gzip
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from cluster import Cluster  # noqa: E402
from harness import run, test  # noqa: E402

RUN = "01JDZ0000000000000000TELE1"


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class SSE:
    """A raw SSE client: reads events (id, event, data) off a socket."""

    def __init__(self, port, last_id=None, rcvbuf=None, path="/api/events"):
        self.s = socket.socket()
        if rcvbuf:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.s.connect(("127.0.0.1", port))
        req = "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept: text/event-stream\r\n" % (path, port)
        if last_id:
            req += "Last-Event-ID: %s\r\n" % last_id
        self.s.sendall((req + "\r\n").encode())
        self.buf = bytearray()
        self.headers = None

    def _fill(self, deadline):
        self.s.settimeout(max(0.01, deadline - time.time()))
        try:
            chunk = self.s.recv(65536)
        except socket.timeout:
            return False
        if not chunk:
            raise AssertionError("stream closed")
        self.buf += chunk
        return True

    def _dechunk_ready(self):
        # the body is chunked: strip chunk framing from what we have so far
        pass

    def next(self, timeout=5.0):
        """The next event {id, event, data} (comments skipped), or None."""
        deadline = time.time() + timeout
        while self.headers is None:
            if b"\r\n\r\n" in self.buf:
                head, rest = bytes(self.buf).split(b"\r\n\r\n", 1)
                self.buf = bytearray(rest)
                self.headers = head.decode()
                self.raw = bytearray()
                break
            if not self._fill(deadline):
                return None
        while True:
            ev = self._parse()
            if ev is not None:
                return ev
            if time.time() >= deadline or not self._fill(deadline):
                return None

    def _parse(self):
        # de-chunk into self.raw
        while True:
            m = re.match(rb"([0-9a-fA-F]+)\r\n", self.buf)
            if not m:
                break
            n = int(m.group(1), 16)
            if len(self.buf) < m.end() + n + 2:
                break
            self.raw += self.buf[m.end():m.end() + n]
            del self.buf[:m.end() + n + 2]
        while True:
            at = self.raw.find(b"\n\n")
            if at < 0:
                break
            block = bytes(self.raw[:at])
            del self.raw[:at + 2]
            ev = {"id": None, "event": "message", "data": []}
            for line in block.decode().split("\n"):
                if line.startswith(":") or not line:
                    continue
                k, _, v = line.partition(": ")
                if k == "data":
                    ev["data"].append(v)
                elif k in ("id", "event"):
                    ev[k] = v
            if ev["data"]:
                ev["data"] = "\n".join(ev["data"])
                return ev
        return None

    def close(self):
        self.s.close()


class Ctx:
    def __init__(self):
        self.c = Cluster(services=["ciba-broker", "vault-broker", "auditor", "telemetry", "orchestrator"])
        with open(self.c.conf) as f:
            text = f.read()
        text = text.replace("[telemetry]\n", "[telemetry]\nsse_buffer_kb = 4\nsse_heartbeat_ms = 200\n", 1)
        with open(self.c.conf, "w") as f:
            f.write(text)
        section = text.split("[telemetry]", 1)[1]
        self.port = int(re.search(r"http = 127\.0\.0\.1:(\d+)", section).group(1))
        self.c.start_all()
        self.ciba = self.c.client("ciba-broker", key_name="orch", principal="svc:orchestrator")
        self.ops = self.c.client("ciba-broker", key_name="ops", principal="ops:admin")
        for user in ("carol", "victor"):      # approvers with a device: their levels are asked
            r = self.c.ctl("--json", "device", "enroll", user)
            assert r.returncode == 0, r.stdout + r.stderr
        self.wait_http()

    def wait_http(self, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if self.get("/api/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("telemetry's HTTP never answered")

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        conn.close()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data

    def get(self, path, headers=None):
        return self.request("GET", path, headers=headers)

    def get_json(self, path):
        st, h, data = self.get(path)
        assert h.get("content-type", "").startswith("application/json"), (path, h)
        return st, json.loads(data)

    def authorize(self, node="write_po", chain=None, msg="PO-7 USD 520,000"):
        chain = chain or [{"approver": "user:carol", "escalate_after": 0}]
        r = self.ciba.call("ciba.authorize", {"chain": chain, "binding_message": msg, "run": RUN, "node": node},
                           timeout_ms=5000)
        assert r and r["ok"], r
        return r["body"]

    def close(self):
        self.ciba.close()
        self.ops.close()
        self.c.close()


def security_headers_ok(h):
    csp = h.get("content-security-policy", "")
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp, csp
    assert h.get("x-content-type-options") == "nosniff", h
    assert h.get("x-frame-options") == "DENY", h


# ---- the dashboard's files ---------------------------------------------------

@test
def dashboard_files_types_caching_gzip(x):
    st, h, body = x.get("/")
    assert st == 200 and h["content-type"].startswith("text/html"), (st, h)
    assert b"<script type=\"module\" src=\"app.js\">" in body and b"<script>" not in body
    assert h["cache-control"] == "no-cache" and h["etag"].startswith('"'), h
    security_headers_ok(h)
    st, h2, _ = x.get("/", headers={"If-None-Match": h["etag"]})
    assert st == 304, st
    st, h, js = x.get("/app.js")
    assert st == 200 and h["content-type"].startswith("text/javascript") and "max-age" in h["cache-control"], h
    st, h, gz = x.get("/app.js", headers={"Accept-Encoding": "gzip"})
    assert st == 200 and h.get("content-encoding") == "gzip" and h.get("vary") == "Accept-Encoding", h
    assert gzip.decompress(gz) == js and len(gz) < len(js)
    st, h, _ = x.get("/app.css")
    assert h["content-type"].startswith("text/css"), h
    st, h, _ = x.get("/favicon.svg")
    assert h["content-type"] == "image/svg+xml", h


@test
def foreign_host_names_are_refused(x):
    # DNS rebinding: another site's name pointed at 127.0.0.1 must not read the API
    for path in ("/api/health", "/", "/metrics", "/api/events"):
        st, h, body = x.get(path, headers={"Host": "evil.example:%d" % x.port})
        assert st == 421, (path, st)
        security_headers_ok(h)
    for host in ("localhost:%d" % x.port, "127.0.0.1", "[::1]:%d" % x.port):
        st, _, _ = x.get("/api/health", headers={"Host": host})
        assert st == 200, (host, st)


@test
def no_file_outside_the_dashboard(x):
    for path in ("/nope.js", "/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/index.html.gz"):
        st, h, body = x.get(path)
        assert st == 404, (path, st)
        security_headers_ok(h)
        assert b"root:" not in body


# ---- read endpoints ----------------------------------------------------------

@test
def read_endpoints(x):
    a = x.authorize(node="read_endpoints")
    st, j = x.get_json("/api/approvals")
    assert st == 200 and a["approval_id"] in [p["approval_id"] for p in j["approvals"]], j
    st, j = x.get_json("/api/approvals?state=bogus")
    assert st == 400 and j["error"]["code"] == "invalid", j
    # filters: by run (this one's only), by state, or every state
    st, j = x.get_json("/api/approvals?run=%s" % RUN)
    assert st == 200 and a["approval_id"] in [p["approval_id"] for p in j["approvals"]], j
    assert all(p["run"] == RUN for p in j["approvals"]), j
    st, j = x.get_json("/api/approvals?run=01JDZ0000000000000000OTHER")
    assert st == 200 and j["approvals"] == [], j
    st, j = x.get_json("/api/approvals?state=approved&run=%s" % RUN)
    assert st == 200 and j["approvals"] == [], j
    for q in ("state=all", "state="):
        st, j = x.get_json("/api/approvals?%s&run=%s" % (q, RUN))
        assert st == 200 and a["approval_id"] in [p["approval_id"] for p in j["approvals"]], (q, j)
    st, j = x.get_json("/api/approvals?run=bad")
    assert st == 400 and j["error"]["code"] == "invalid" and "26" in j["error"]["message"], j
    st, j = x.get_json("/api/runs/%s" % RUN)
    assert st == 200 and j["id"] == RUN, j
    assert a["approval_id"] in [p["approval_id"] for p in j["approvals"]], j
    deadline = time.time() + 5
    while "ciba.requested" not in [e["type"] for e in j["events"]]:
        assert time.time() < deadline, j["events"]
        time.sleep(0.1)
        st, j = x.get_json("/api/runs/%s" % RUN)
    # the orchestrator never started this run: its not_found, passed through
    assert j["run"] is None and j["errors"]["run"]["code"] == "not_found", j
    st, g = x.get_json("/api/runs/%s/gantt" % RUN)
    assert st == 200 and any(r["kind"] == "approval" and r["id"] == a["approval_id"] for r in g["rows"]), g
    st, rc = x.get_json("/api/runs/%s/receipt" % RUN)
    # the auditor's answer, passed through: this run has no terminal event
    assert st == 409 and rc["error"]["code"] == "conflict", (st, rc)
    st, j = x.get_json("/api/runs")
    assert st == 200 and isinstance(j["runs"], list), (st, j)
    assert RUN not in [r["run"] for r in j["runs"]], j
    st, j = x.get_json("/api/runs?state=PAUSED")
    assert st == 200 and all(r["state"] == "PAUSED" for r in j["runs"]), (st, j)
    st, j = x.get_json("/api/runs?state=WHATEVER")
    assert st == 400, j
    st, j = x.get_json("/api/runs/not-a-run")
    assert st == 400 and j["error"]["code"] == "invalid", j
    st, j = x.get_json("/api/runs/%s/nothing" % RUN)
    assert st == 404, j
    st, j = x.get_json("/api/leases")
    assert st == 200 and isinstance(j["leases"], list), j
    st, j = x.get_json("/api/leases?run=bad")
    assert st == 400, j
    st, j = x.get_json("/api/health")
    assert st == 200 and j["services"]["ciba-broker"]["state"] == "ok", j
    assert j["services"]["vault-broker"]["state"] == "ok" and j["services"]["telemetry"]["state"] == "ok", j
    st, j = x.get_json("/api/nothing")
    assert st == 404 and j["error"]["code"] == "not_found", j
    st, h, _ = x.request("DELETE", "/api/runs")
    assert st == 405, st


def raw_status(port, head):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(head)
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    return int(data.split(b" ")[1]) if data else 0


@test
def bad_and_oversized_requests(x):
    # a declared body over the bound: 413 before any of it is read
    st = raw_status(x.port, b"POST /api/approvals/decide HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            b"Content-Type: application/json\r\nContent-Length: 2097152\r\n\r\n")
    assert st == 413, st
    st, _, body = x.request("POST", "/api/approvals/decide", body=b"{" + b" " * 8000 + b"}",
                            headers={"Content-Type": "application/json"})
    assert st == 413, (st, body)
    # request line and headers past the listener's bound
    st, _, _ = x.get("/?" + "a" * 40000)
    assert st in (413, 414, 431), st


# ---- server-sent events ------------------------------------------------------

def wait_event(sse, pred, timeout=5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        ev = sse.next(timeout=deadline - time.time())
        if ev and pred(ev):
            return ev
    raise AssertionError("event never came")


@test
def sse_every_event_and_resume_with_last_event_id(x):
    s = SSE(x.port)
    hello = s.next()
    assert hello and hello["event"] == "hello", hello
    assert "content-type: text/event-stream" in s.headers.lower(), s.headers
    assert "content-security-policy" in s.headers.lower()
    a = x.authorize(node="sse_one")
    ev = wait_event(s, lambda e: e["event"] == "message" and json.loads(e["data"])["type"] == "ciba.requested"
                    and json.loads(e["data"])["body"]["approval_id"] == a["approval_id"])
    env = json.loads(ev["data"])
    assert ev["id"] == "svc:ciba-broker/%d" % env["seq"] and env["pub"] == "svc:ciba-broker", ev
    s.close()
    # missed while away: three more approvals
    ids = [x.authorize(node="sse_missed_%d" % i)["approval_id"] for i in range(3)]
    time.sleep(0.5)
    s = SSE(x.port, last_id=ev["id"])
    got, seqs = [], []
    deadline = time.time() + 5
    while len(got) < 3 and time.time() < deadline:
        e = s.next(timeout=1)
        if e and e["event"] == "message":
            d = json.loads(e["data"])
            if d["pub"] == "svc:ciba-broker":
                seqs.append(d["seq"])
            if d["type"] == "ciba.requested":
                got.append(d["body"]["approval_id"])
        elif e:
            assert e["event"] == "hello" and json.loads(e["data"])["resumed"] is True, e
    assert got == ids, (got, ids)
    assert seqs == sorted(seqs) and seqs[0] == env["seq"] + 1 and len(set(seqs)) == len(seqs), seqs
    s.close()
    # an id telemetry never held: told to resync
    s = SSE(x.port, last_id="svc:ciba-broker/999999999")
    e = s.next()
    assert e["event"] == "resync" and json.loads(e["data"])["reason"] == "unknown_last_event_id", e
    s.close()


@test
def slow_client_does_not_slow_the_bus(x):
    import threading
    fast = SSE(x.port)
    assert fast.next()["event"] == "hello"
    slow = SSE(x.port, rcvbuf=2048)          # never reads until the end
    counts = {"seen": 0, "missed": 0}
    stop = threading.Event()

    def reader():                            # the reading client, reading all along
        while not stop.is_set():
            e = fast.next(timeout=0.5)
            if e and e["event"] == "message" and '"type":"echo.seen"' in e["data"]:
                counts["seen"] += 1
            elif e and e["event"] == "resync":
                counts["missed"] += json.loads(e["data"])["missed"]
    t = threading.Thread(target=reader)
    t.start()
    echo = x.c.client("ciba-broker", key_name="echoer", principal="svc:orchestrator")
    # enough events to fill the stalled client's kernel buffers on loopback
    # (they grow to a few MiB) and then its 4 KiB stream buffer: pipelined
    n, batch = 12000, 500
    t0 = time.time()
    try:
        for _ in range(n // batch):
            for i in range(batch):
                echo.send_raw(echo.frame("echo", {"data": 1})[1])
            for i in range(batch):
                r = echo.recv(5000)
                assert r and r["ok"], r
        elapsed = time.time() - t0
        deadline = time.time() + 30
        while counts["seen"] + counts["missed"] < n and time.time() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        t.join()
        echo.close()
    # the reading client (4 KiB of stream buffer, a Python thread) gets every
    # event, or is told how many it missed: nothing is lost in silence
    assert counts["seen"] + counts["missed"] == n and counts["seen"] >= n * 0.9, \
        "the reading client got %d of %d echo.seen (told of %d missed)" % (counts["seen"], n, counts["missed"])
    st, _, text = x.get("/metrics")
    m = re.search(r"^sanctum_telemetry_sse_dropped_total (\d+)$", text.decode(), re.M)
    assert m and int(m.group(1)) > 0, "no event was dropped for the slow client"
    # the slow one reads again: a resync notice with what it missed
    deadline = time.time() + 20
    notice = None
    while time.time() < deadline and not notice:
        e = slow.next(timeout=1)
        if e and e["event"] == "resync":
            notice = json.loads(e["data"])
    assert notice and notice["reason"] == "slow_client" and notice["missed"] > 0, notice
    print("# %d echoes in %.2f s (%.0f/s) with a stalled SSE client; it missed %d, the reader %d"
          % (n, elapsed, n / elapsed, notice["missed"], counts["missed"]))
    fast.close()
    slow.close()


# ---- metrics -----------------------------------------------------------------

@test
def metrics_pass_promtool_and_histograms_add_up(x):
    x.authorize(node="metrics")
    st, h, text = x.get("/metrics")
    assert st == 200 and h["content-type"].startswith("text/plain; version=0.0.4"), h
    security_headers_ok(h)
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: make deps (ops/deps.sh) installs Debian's prometheus"
    p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=30)
    assert p.returncode == 0, (p.stdout + p.stderr).decode()[:2000]
    body = text.decode()
    inf, count = {}, {}
    for line in body.splitlines():
        m = re.match(r'^sanctum_request_duration_seconds_bucket\{(.*),le="\+Inf"\} (\d+)$', line)
        if m:
            inf[m.group(1)] = int(m.group(2))
        m = re.match(r'^sanctum_request_duration_seconds_count\{(.*)\} (\d+)$', line)
        if m:
            count[m.group(1)] = int(m.group(2))
    assert inf and inf == count, (inf, count)
    assert 'type="ciba.authorize"' in body
    for name in ('sanctum_up{service="ciba-broker"} 1', "sanctum_approvals_pending ", "sanctum_leases_live ",
                 "sanctum_audit_log_entries ", 'sanctum_events_published_total{service="ciba-broker"}'):
        assert name in body, name


# ---- the decision relay ------------------------------------------------------

def decision_bytes(a, auth_req_id, decision):
    return "\n".join(["sanctum-ciba-decision/1", auth_req_id, decision, a["binding_message"],
                      a["authorization_details_sha256"]]).encode()


@test
def decide_relays_signed_decisions_only(x):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives import serialization
    key = Ed25519PrivateKey.generate()
    pub = b64u(key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
    r = x.ops.call("ciba.device.enroll", {"approver": "user:dora", "public_key": pub}, timeout_ms=5000)
    assert r and r["ok"], r
    a = x.authorize(node="decide", chain=[{"approver": "user:dora"}], msg="PO-9 USD 1,000")
    st = x.ciba.call("ciba.status", {"approval_id": a["approval_id"]}, timeout_ms=5000)["body"]
    ari = st["levels"][0]["auth_req_id"]
    good = {"auth_req_id": ari, "decision": "approve", "device": pub,
            "signature": b64u(key.sign(decision_bytes(st, ari, "approve")))}
    js = {"Content-Type": "application/json"}
    # refused before any relay: not JSON, cross-site, malformed
    s, _, _ = x.request("POST", "/api/approvals/decide", body=json.dumps(good), headers={"Content-Type": "text/plain"})
    assert s == 403, s
    s, _, _ = x.request("POST", "/api/approvals/decide", body=json.dumps(good),
                        headers={"Content-Type": "application/json", "Origin": "http://evil.example"})
    assert s == 403, s
    s, _, _ = x.request("POST", "/api/approvals/decide", body=json.dumps(good),
                        headers={"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"})
    assert s == 403, s
    s, _, _ = x.request("POST", "/api/approvals/decide", body="{not json", headers=js)
    assert s == 400, s
    s, _, _ = x.request("GET", "/api/approvals/decide")
    assert s == 405, s
    # a forged signature: the broker refuses, telemetry cannot decide for anyone
    forged = dict(good, signature=b64u(key.sign(decision_bytes(st, ari, "deny"))))
    s, _, body = x.request("POST", "/api/approvals/decide", body=json.dumps(forged), headers=js)
    assert s == 403 and json.loads(body)["error"]["code"] == "forbidden", (s, body)
    s, _, body = x.request("POST", "/api/approvals/decide", body=json.dumps(good),
                           headers={"Content-Type": "application/json",
                                    "Origin": "http://127.0.0.1:%d" % x.port})
    assert s == 200 and json.loads(body)["state"] == "approved", (s, body)
    s, _, body = x.request("POST", "/api/approvals/decide", body=json.dumps(good), headers=js)
    assert s == 409, (s, body)



@test
def redeem_relays_invite_codes_once(x):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives import serialization
    key = Ed25519PrivateKey.generate()
    pub = b64u(key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
    r = x.c.ctl("--json", "device", "invite", "ruth")
    assert r.returncode == 0, r.stdout + r.stderr
    inv = json.loads(r.stdout)
    good = {"code": inv["code"], "public_key": pub}
    js = {"Content-Type": "application/json"}
    # refused before any relay: not JSON, cross-site, malformed, wrong method
    s, _, _ = x.request("POST", "/api/devices/redeem", body=json.dumps(good), headers={"Content-Type": "text/plain"})
    assert s == 403, s
    s, _, _ = x.request("POST", "/api/devices/redeem", body=json.dumps(good),
                        headers={"Content-Type": "application/json", "Origin": "http://evil.example"})
    assert s == 403, s
    s, _, _ = x.request("POST", "/api/devices/redeem", body=json.dumps(good),
                        headers={"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"})
    assert s == 403, s
    s, _, _ = x.request("POST", "/api/devices/redeem", body=json.dumps({"code": inv["code"]}), headers=js)
    assert s == 400, s
    s, _, _ = x.request("GET", "/api/devices/redeem")
    assert s == 405, s
    # an unknown code: the broker's not_found, nothing enrolled
    s, _, body = x.request("POST", "/api/devices/redeem", body=json.dumps(dict(good, code="A" * 32)), headers=js)
    assert s == 404 and json.loads(body)["error"]["code"] == "not_found", (s, body)
    s, _, body = x.request("POST", "/api/devices/redeem", body=json.dumps(good),
                           headers={"Content-Type": "application/json", "Origin": "http://127.0.0.1:%d" % x.port})
    assert s == 200, (s, body)
    out = json.loads(body)
    assert out["user"] == "user:ruth" and out["device"] == pub, out
    devs = json.loads(x.c.ctl("--json", "device", "list", "ruth").stdout)["devices"]
    assert [(d["device"], d["state"]) for d in devs] == [(pub, "active")], devs
    # used: refused with the broker's conflict
    s, _, body = x.request("POST", "/api/devices/redeem", body=json.dumps(good), headers=js)
    assert s == 409 and "used" in json.loads(body)["error"]["message"], (s, body)

if __name__ == "__main__":
    ctx = None

    def setup():
        global ctx
        ctx = Ctx()
        return ctx

    sys.exit(run(setup=setup, teardown=lambda c: c.close()))
