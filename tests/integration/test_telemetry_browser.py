#!/usr/bin/env python3
"""Integration: the dashboard in a real browser (Debian's chromium, headless,
driven by playwright-core through tests/browser/driver.mjs) on the whole
suite as `sanctumctl up` starts it and seeds it with the procurement example
(as test_up_seed.py does): every daemon, the orchestrator and the sandbox
among them; carol (the manager) and victor (the VP) approve.

- the page loads over the CSP (no console error, no failed request) and its
  event stream goes live;
- a real $520,000 procurement run (`sanctumctl run start`: run.start with
  vendor, amount and cost_center) pauses at its approval gate, and the page
  shows it: the run in the runs list with its workflow's name, its pipeline
  with every step of the workflow (those not reached yet too) and the
  plasma halted at the valve of the gated step, the gate asking carol with
  the binding message, the amount and the time left, the run's past events;
- a decision signed by a key that is no approver's device is refused;
- the browser's own WebCrypto Ed25519 key is enrolled as carol's device by
  a one-time code (`sanctumctl device invite`) pasted into the page, and
  carol approves in the page: the VP is asked (the escalation shows); the
  key is enrolled as victor's device (a second code; the used first code is
  refused), victor approves: the run goes on to COMPLETED (checked over the
  bus too, with both levels signed by the browser's key), the plasma passes
  the gate to the end, the Gantt chart shows both steps' leases (issued →
  used → revoked), the receipt panel shows the page's own verification of
  /api/runs/{id}/receipt as verified (and so does `sanctumctl receipt
  verify`, offline), the sandbox sheet holds the run's row;
- an inline script added to the page is blocked by the CSP.
Screenshots of the halted and the finished state:
build/test-artifacts/telemetry/halted.png and finished.png.

Tools: node with tests/js/node_modules/playwright-core and /usr/bin/chromium
(`make deps` installs both: ops/deps.sh). A missing tool fails the test.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from cluster import ROOT  # noqa: E402
from harness import run, test  # noqa: E402
from test_up_seed import CTL, EXAMPLES, Up, ctl, ctl_json, env_with_ports  # noqa: E402

del harness.TESTS[:]          # test_up_seed's own tests, registered by its import, run in their own file

ART = os.path.join(ROOT, os.environ.get("BUILD", "build"), "test-artifacts", "telemetry")
AMOUNT = 520000
MANAGER, VP = "carol", "victor"      # ops/examples/procurement/tuples.json: erin's manager, and hers
SLOW = 60000                         # ms: a wait on the page under a loaded machine


def ensure_tools():
    js = os.path.join(ROOT, "tests", "js")
    if not os.path.isdir(os.path.join(js, "node_modules", "playwright-core")) or not os.path.exists("/usr/bin/chromium"):
        subprocess.run(["sh", os.path.join(ROOT, "ops", "deps.sh")], check=False)
    assert os.path.exists("/usr/bin/chromium"), "chromium is missing (ops/deps.sh installs Debian's chromium)"
    assert os.path.isdir(os.path.join(js, "node_modules", "playwright-core")), \
        "playwright-core is missing (ops/deps.sh: npm ci in tests/js)"


def workflow_path():
    """The procurement workflow's steps from its start along its edges."""
    with open(os.path.join(EXAMPLES, "workflows", "procurement.json")) as f:
        wf = json.load(f)
    path, cur = [], wf["start"]
    while cur and cur not in path:
        path.append(cur)
        cur = next((e["to"] for e in wf["edges"] if e["from"] == cur), None)
    gated = [n["id"] for n in wf["nodes"] if "policy" in n and "binding_message" in n]
    assert path[-1] in [n["id"] for n in wf["nodes"] if n["kind"] == "end"] and len(gated) == 1, (path, gated)
    return path, gated[0]


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

    def wait(self, selector, contains, timeout=SLOW):
        return self.do(cmd="wait", selector=selector, contains=contains, timeout=timeout)

    def text(self, selector):
        return self.do(cmd="text", selector=selector)["text"]

    def eval(self, expression):
        return self.do(cmd="eval", expression=expression)["value"]

    def until(self, expression, timeout=SLOW):
        """Wait until expression (evaluated in the page) is true."""
        return self.do(cmd="wait_for", expression=expression, timeout=timeout)

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
        for name in ("halted.png", "finished.png"):     # never last run's picture
            if os.path.exists(os.path.join(ART, name)):
                os.unlink(os.path.join(ART, name))
        self.work = tempfile.mkdtemp(prefix="sanctum-browser-")
        self.env = env_with_ports()
        self.url = "http://%s/" % self.env["SANCTUM_TELEMETRY_HTTP"]
        self.b = None
        self.up = Up(self.work, self.env)
        try:                          # the harness tears down only what set up
            self.up.wait_for("the procurement example is in", timeout=180)
            self.b = Browser()
        except BaseException:
            self.close()
            raise

    def ctl_ok(self, *args):
        rc, out, err = ctl(self.up, *args)
        assert rc == 0, (args, rc, out, err)
        return json.loads(out) if out.strip() else None

    def bus(self, type_, body, service):
        """One request over the bus, as ops (sanctumctl inject): its body."""
        out = self.ctl_ok("inject", type_, json.dumps(body), "--service", service)
        assert out["ok"], out
        return out["body"]

    def close(self):
        if self.b:
            self.b.close()
        self.up.stop()
        shutil.rmtree(self.work, ignore_errors=True)


def run_state(x, run_id, states, timeout=60):
    """The run (run.get over the bus) once it is in one of states."""
    deadline = time.monotonic() + timeout
    while True:
        v = x.ctl_ok("run", "get", run_id)
        if v["state"] in states:
            return v
        assert time.monotonic() < deadline, "run %s never reached %s: %s" % (run_id, states, v)
        time.sleep(0.2)


def asked_of(x, user, run_id, timeout=30):
    """The approval asked of user for the run (sanctumctl approvals --as)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for a in ctl_json(x.up, "approvals", "--as", user).get("approvals", []):
            if a.get("run") == run_id:
                return a
        time.sleep(0.2)
    raise AssertionError("nothing asked of %s for run %s" % (user, run_id))


def enrol(x, user, key):
    """A one-time code for user, pasted into the page: the browser's key is user's device."""
    code = x.ctl_ok("device", "invite", user)["code"]
    b = x.b
    b.do(cmd="fill", selector="#invite-code", value=code)
    b.do(cmd="click", selector="#invite-redeem")
    b.wait("#invite-msg", "Enrolled: this browser is now a device of user:%s" % user)
    devs = x.ctl_ok("device", "list", user)["devices"]
    assert (key, "active") in [(d["device"], d["state"]) for d in devs], devs
    return code


def pipeline_label(b):
    return b.do(cmd="attr", selector="#pipeline", name="aria-label")["value"]


@test
def a_520000_run_halts_at_the_valve_and_flows_on_when_both_sign(x):
    b = x.b
    path, gated = workflow_path()
    page = b.do(cmd="open", url=x.url)
    assert page["status"] == 200 and "script-src 'self'" in page["headers"]["content-security-policy"], page
    b.wait("#conn", "live")
    key = b.text("#device-key")
    assert len(key) == 43, "no WebCrypto Ed25519 device key: %r" % key

    # a real run of the seeded workflow, over the bus: it pauses at the gate
    started = x.ctl_ok("run", "start", "procurement", "--input", "vendor=Acme", "--input", "amount=%d" % AMOUNT,
                       "--input", "cost_center=engineering")
    rid = started["run"]
    v = run_state(x, rid, ("PAUSED",))
    assert v["reason"] == "approval" and v["approval"]["node"] == gated, v
    assert [lvl["approver"] for lvl in v["approval"]["levels"]] == ["user:" + MANAGER, "user:" + VP], v
    asked = asked_of(x, MANAGER, rid)

    # the page: the run in the list with its workflow's name, selected
    b.wait('#runs button[data-run="%s"]' % rid, "procurement · PAUSED")
    assert "?" not in b.text('#runs button[data-run="%s"]' % rid)
    b.do(cmd="click", selector='#runs button[data-run="%s"]' % rid)
    b.wait("#run-id", rid)
    b.wait("#run-workflow", "workflow procurement")
    b.wait("#run-state", "PAUSED")
    # every step of the workflow, in its order; the plasma halted at the gated step's valve
    halted = ", ".join("%s %s" % (n, "done" if i < path.index(gated) else
                                  "halted at a closed valve" if n == gated else "pending")
                       for i, n in enumerate(path))
    b.wait("#pipeline", "Pipeline: " + halted)
    assert pipeline_label(b) == "Pipeline: " + halted, pipeline_label(b)
    # the gate: who is asked, the message, the amount, the time left
    b.wait("#gate-node", gated)
    b.wait("#gate-state", "pending")
    b.wait("#gate-who", "user:%s (level 1)" % MANAGER)
    assert b.text("#gate-msg") == asked["binding_message"], (b.text("#gate-msg"), asked)
    assert b.text("#gate-amount") == "USD 520,000", b.text("#gate-amount")
    left = b.text("#gate-left")
    m = re.fullmatch(r"(\d+)m (\d\d)s", left)
    assert m and 0 < int(m.group(1)) * 60 + int(m.group(2)) <= 3600, left
    b.wait("#gate-history", "asked user:%s (level 1)" % MANAGER)
    b.wait("#approvals", "asks user:%s" % MANAGER)
    # the run's past events, though the page opened after they happened
    b.wait("#events", "run.paused")
    b.wait("#events", "run.started")
    b.until("document.querySelectorAll('#gantt g[data-kind=\"approval\"]').length === 1")
    b.wait("#receipt", "issued when the run ends")
    b.do(cmd="screenshot", path=os.path.join(ART, "halted.png"))

    # a key that is no approver's device: the broker refuses its decision
    b.do(cmd="click", selector="#approve")
    b.wait("#decide-msg", "Refused")
    assert x.ctl_ok("run", "get", rid)["state"] == "PAUSED"

    # the browser as the manager's device: carol approves in the page; the VP is asked
    used = enrol(x, MANAGER, key)
    b.do(cmd="click", selector="#approve")
    b.wait("#decide-msg", "Approved: the broker verified this device's signature")
    b.wait("#gate-who", "user:%s (level 2)" % VP)
    b.wait("#gate-history", "user:%s approved (signed)" % MANAGER)
    b.wait("#gate-history", "asked user:%s (level 2)" % VP)
    b.wait("#approvals", "asks user:%s" % VP)
    b.wait("#pipeline", "%s halted at a closed valve" % gated)
    asked_of(x, VP, rid)
    assert x.ctl_ok("run", "get", rid)["state"] == "PAUSED"

    # a used code is refused, in the page, with the broker's reason
    b.do(cmd="fill", selector="#invite-code", value=used)
    b.do(cmd="click", selector="#invite-redeem")
    b.wait("#invite-msg", "Refused: this invite code was used already")

    # the browser as the VP's device: victor approves; the run goes on to its end
    enrol(x, VP, key)
    b.do(cmd="click", selector="#approve")
    b.wait("#gate-state", "approved")
    b.wait("#gate-who", "user:%s, then user:%s" % (MANAGER, VP))
    b.wait("#gate-history", "chain approved")
    done = run_state(x, rid, ("COMPLETED", "FAILED", "REJECTED", "CANCELLED"))
    assert done["state"] == "COMPLETED", done
    st = x.bus("ciba.status", {"approval_id": v["approval"]["approval_id"]}, "ciba-broker")
    assert st["state"] == "approved" and [(l["approver"], l["device_key"]) for l in st["levels"]] == \
        [("user:" + MANAGER, key), ("user:" + VP, key)], st
    b.wait("#run-state", "COMPLETED")
    b.wait('#runs button[data-run="%s"]' % rid, "procurement · COMPLETED")
    b.wait("#pipeline", "Pipeline: " + ", ".join("%s done" % n for n in path))
    b.wait("#approvals-note", "None waiting.")

    # the Gantt chart: each step's lease, issued → used → revoked
    leases = {n["node"]: n["lease"] for n in done["nodes"] if n.get("lease")}
    assert gated in leases, done["nodes"]
    b.until("document.querySelectorAll('#gantt g[data-kind=\"lease\"]').length === %d" % len(leases))
    for node, lease in leases.items():
        sel = '#gantt g[data-kind="lease"][data-id="%s"]' % lease
        b.until("(document.querySelector('%s') || {textContent: ''}).textContent.includes('revoked')"
                % sel.replace("'", "\\'"))
        marks = b.eval("[...document.querySelectorAll('%s circle title')].map((t) => t.textContent.split(' ')[0])"
                       % sel.replace("'", "\\'"))
        assert marks == ["issued", "used", "revoked"], (node, marks)
    assert b.do(cmd="count", selector='#gantt g[data-kind="step"]')["count"] == len(path)

    # the receipt: the page's own verification, verified; and offline, by sanctumctl
    b.wait("#receipt", "Receipt verified")
    assert b.do(cmd="attr", selector="#receipt", name="class")["value"] == "verified"
    # and what it says, from its signed payload
    b.wait("#receipt-facts", "COMPLETED · workflow procurement")
    b.wait("#receipt-facts", " → ".join(path))
    b.wait("#receipt-facts", "signed by user:%s, user:%s" % (MANAGER, VP))
    api = b.eval("fetch('/api/runs/%s/receipt').then((r) => r.json())" % rid)
    assert api["verification"]["verified"] is True, api
    jws = os.path.join(x.work, "receipt.jws")
    r = subprocess.run([CTL, "receipt", "get", rid], cwd=x.work, env=x.env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and r.stdout.count(".") == 2, (r.stdout, r.stderr)
    with open(jws, "w") as f:
        f.write(r.stdout.strip())
    verdict = x.ctl_ok("receipt", "verify", jws)
    assert verdict["verified"] and verdict["run"] == rid and verdict["state"] == "COMPLETED", verdict

    # the sandbox's ERP sheet holds the run's row
    rows = x.ctl_ok("sandbox", "rows", "erp")["rows"]
    assert [r[1:] for r in rows] == [["Acme", AMOUNT, "engineering"]], rows
    b.wait("#events", "run.completed")
    b.do(cmd="screenshot", path=os.path.join(ART, "finished.png"))

    # Chromium logs every HTTP error status of a fetch as a console error:
    # none is allowed but the two refusals made on purpose above
    errors = b.do(cmd="errors")["errors"]
    refused = [e for e in errors if "/api/devices/redeem" in e["url"] and "409" in e["text"]]
    denied = [e for e in errors if "/api/approvals/decide" in e["url"]]
    assert len(refused) == 1 and len(denied) == 1, errors
    assert [e for e in errors if e not in refused + denied] == [], errors


@test
def the_csp_blocks_inline_script(x):
    probe = x.b.do(cmd="csp_probe")
    assert probe["ran"] is False and probe["violation"] in ("script-src-elem", "script-src"), probe


if __name__ == "__main__":
    sys.exit(run(setup=Ctx, teardown=lambda c: c.close()))
