#!/usr/bin/env python3
"""Integration: the dashboard in a real browser (Debian's chromium, headless,
driven by playwright-core through tests/browser/driver.mjs) against a real
ciba-broker, vault-broker, auditor and telemetry.

- the page loads over the CSP (no console error, no failed request) and its
  event stream goes live;
- a $520,000 approval for a run (ciba.authorize, as the orchestrator would
  ask it) shows the run halted at the gate: the valve closed, the manager
  asked, the binding message and the amount, the time left;
- the browser's own WebCrypto Ed25519 key is enrolled as the manager's and
  then the VP's device by one-time codes (`sanctumctl device invite`) pasted
  into the page (a used code is refused there), and the decision is signed in the page and relayed
  by telemetry: the VP is asked after the manager approves (the escalation
  of the chain as it happens), and the gate opens after the VP signs;
- a lease backed by that approval appears in the Gantt chart; the receipt
  panel answers (verified, or "not available yet" while the auditor has no
  receipts);
- an inline script added to the page is blocked by the CSP.
Screenshots of the halted and the finished state: build/test-artifacts/telemetry/.

Tools: node with tests/js/node_modules/playwright-core and /usr/bin/chromium
(`make deps` installs both: ops/deps.sh). A missing tool fails the test.
"""
import base64
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from cluster import Cluster, ROOT  # noqa: E402
from harness import run, test  # noqa: E402

RUN = "01JDZ0000000000000000BROWS"
NODE = "approve_po"
SCOPE = "https://www.googleapis.com/auth/spreadsheets"
ART = os.path.join(ROOT, os.environ.get("BUILD", "build"), "test-artifacts", "telemetry")


def ensure_tools():
    js = os.path.join(ROOT, "tests", "js")
    if not os.path.isdir(os.path.join(js, "node_modules", "playwright-core")) or not os.path.exists("/usr/bin/chromium"):
        subprocess.run(["sh", os.path.join(ROOT, "ops", "deps.sh")], check=False)
    assert os.path.exists("/usr/bin/chromium"), "chromium is missing (ops/deps.sh installs Debian's chromium)"
    assert os.path.isdir(os.path.join(js, "node_modules", "playwright-core")), \
        "playwright-core is missing (ops/deps.sh: npm ci in tests/js)"


class Browser:
    def __init__(self):
        self.p = subprocess.Popen(["node", os.path.join(ROOT, "tests", "browser", "driver.mjs")],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def do(self, **cmd):
        self.p.stdin.write(json.dumps(cmd) + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        assert line, "the browser driver died"
        out = json.loads(line)
        assert out["ok"], "%s: %s" % (cmd, out.get("error"))
        return out

    def wait(self, selector, contains, timeout=10000):
        return self.do(cmd="wait", selector=selector, contains=contains, timeout=timeout)

    def text(self, selector):
        return self.do(cmd="text", selector=selector)["text"]

    def close(self):
        try:
            self.do(cmd="close")
        except Exception:
            pass
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()


class Ctx:
    def __init__(self):
        ensure_tools()
        os.makedirs(ART, exist_ok=True)
        self.c = Cluster(services=["ciba-broker", "vault-broker", "auditor", "telemetry", "orchestrator"])
        with open(self.c.conf) as f:
            text = f.read()
        self.url = "http://" + text.split("[telemetry]", 1)[1].split("http = ", 1)[1].split("\n", 1)[0] + "/"
        self.c.start_all()
        self.ciba = self.c.client("ciba-broker", key_name="orch", principal="svc:orchestrator")
        self.vault = self.c.client("vault-broker", key_name="orch", principal="svc:orchestrator")
        self.ops = self.c.client("ciba-broker", key_name="ops", principal="ops:admin")
        self.b = Browser()

    def call(self, client, type_, body):
        r = client.call(type_, body, timeout_ms=5000)
        assert r and r["ok"], (type_, r)
        return r["body"]

    def close(self):
        self.b.close()
        for cl in (self.ciba, self.vault, self.ops):
            cl.close()
        self.c.close()


@test
def the_plasma_stops_at_the_valve_and_surges_on(x):
    b = x.b
    page = b.do(cmd="open", url=x.url)
    assert page["status"] == 200 and "script-src 'self'" in page["headers"]["content-security-policy"], page
    b.wait("#conn", "live")
    key = b.text("#device-key")
    assert len(key) == 43, "no WebCrypto Ed25519 device key: %r" % key
    # the orchestrator's ask, made here: a two-level chain for one run's step
    chain = [{"approver": "user:manager", "escalate_after": 0}, {"approver": "user:vp", "escalate_after": 0}]
    # the manager's device first (an approver without one is passed at once):
    # one-time codes from sanctumctl, pasted into the page, which enrols its key
    codes = {}
    for user in ("manager", "vp"):
        r = x.c.ctl("--json", "device", "invite", user)
        assert r.returncode == 0, r.stdout + r.stderr
        codes[user] = json.loads(r.stdout)["code"]
        b.do(cmd="fill", selector="#invite-code", value=codes[user])
        b.do(cmd="click", selector="#invite-redeem")
        b.wait("#invite-msg", "Enrolled: this browser is now a device of user:%s" % user)
        devs = json.loads(x.c.ctl("--json", "device", "list", user).stdout)["devices"]
        assert [(d["device"], d["state"]) for d in devs] == [(key, "active")], devs
    # a used code is refused, in the page, with the broker's reason
    b.do(cmd="fill", selector="#invite-code", value=codes["manager"])
    b.do(cmd="click", selector="#invite-redeem")
    b.wait("#invite-msg", "Refused: this invite code was used already")
    a = x.call(x.ciba, "ciba.authorize", {"chain": chain, "binding_message": "PO-4471 Acme Corp USD 520,000",
                                          "run": RUN, "node": NODE})
    b.wait("#run-id", RUN)
    b.wait("#gate-who", "user:manager")
    b.wait("#gate-amount", "520,000")
    b.wait("#gate-msg", "PO-4471 Acme Corp USD 520,000")
    b.wait("#pipeline", "halted at a closed valve")
    left = b.text("#gate-left")
    assert "m" in left and "s" in left, left
    b.do(cmd="screenshot", path=os.path.join(ART, "halted.png"))
    # the manager signs in the browser; telemetry relays; the VP is asked
    b.do(cmd="click", selector="#approve")
    b.wait("#decide-msg", "Approved")
    b.wait("#gate-who", "user:vp")
    b.wait("#gate-history", "user:manager approved")
    b.do(cmd="click", selector="#approve")
    b.wait("#gate-state", "approved", timeout=10000)
    b.wait("#pipeline", "open")
    st = x.call(x.ciba, "ciba.status", {"approval_id": a["approval_id"]})
    assert st["state"] == "approved" and all(l["device_key"] == key for l in st["levels"]), st
    # the step's lease, on that approval: the Gantt shows it
    secret = os.path.join(x.c.dir, "sheets.secret")
    with open(secret, "w") as f:
        f.write("refresh-token-for-the-test\n")
    r = x.c.ctl("--json", "vault", "connect", "sheets", "--kind", "google-sheets", "--scopes", SCOPE,
                "--secret-file", secret, "--approval")
    assert r.returncode == 0, r.stdout + r.stderr
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives import serialization
    nk = base64.urlsafe_b64encode(Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)).rstrip(b"=").decode()
    lease = x.call(x.vault, "vault.lease", {"run": RUN, "node": NODE, "connection": "sheets", "scopes": [SCOPE],
                                            "ttl": 300, "approval": a["approval_id"], "node_key": nk})
    deadline = time.time() + 10
    while b.do(cmd="count", selector='#gantt g[data-kind="lease"]')["count"] < 1:
        assert time.time() < deadline, "the lease never reached the Gantt chart"
        time.sleep(0.2)
    assert b.do(cmd="count", selector='#gantt g[data-id="%s"]' % lease["lease_id"])["count"] == 1
    assert b.do(cmd="count", selector='#gantt g[data-kind="approval"]')["count"] >= 1
    b.wait("#receipt", "eceipt")
    receipt = b.text("#receipt")
    assert "verified" in receipt or "issued when the run ends" in receipt, receipt
    b.do(cmd="screenshot", path=os.path.join(ART, "finished.png"))
    errors = b.do(cmd="errors")["errors"]
    # Chromium logs every HTTP error status of a fetch as a console error:
    # every service is built, so none is allowed (the page asks for a
    # receipt only once its run has ended) but the 409 of the used code
    # refused above, on purpose
    refused = [e for e in errors if "/api/devices/redeem" in e["url"] and "409" in e["text"]]
    assert len(refused) == 1 and [e for e in errors if e not in refused] == [], errors


@test
def the_csp_blocks_inline_script(x):
    probe = x.b.do(cmd="csp_probe")
    assert probe["ran"] is False and probe["violation"] in ("script-src-elem", "script-src"), probe


if __name__ == "__main__":
    sys.exit(run(setup=Ctx, teardown=lambda c: c.close()))
