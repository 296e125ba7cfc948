#!/usr/bin/env python3
"""Integration: the injection examples of ops/examples/inject/ (inject.py,
Python; inject.mjs, Node), each with its own CURVE key allowed as an `ext:`
principal, against a suite that `sanctumctl up` started and seeded (as
test_up_seed.py does). Each starts a $5,000 procurement run, which goes
straight through: its output is checked against the bus — the run is
COMPLETED (run.get), its `step` lines are the run's nodes, its `event` lines
are exactly the orchestrator's events of the run (events.replay as ops:),
and its receipt verifies with `sanctumctl receipt verify`. Run with --late
(subscribed only after the run ended) every event comes from events.replay.
A $520,000 run is followed through its pause at the approval gate (carol,
then victor approve with the seeded devices) to its end; one nobody
approves ends the client at its --timeout (exit 1).
A client whose key is not in the allow-list is refused (exit 3, naming its
key) and starts nothing.

Tools: node, and ops/examples/inject/node_modules (`npm ci` there; ops/deps.sh
runs it): missing, the Node part fails and says so."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import zmq.auth

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import run, test  # noqa: E402
from test_up_seed import CTL, EXAMPLES, Up, approve_as, ctl_json, env_with_ports  # noqa: E402

del harness.TESTS[:]          # test_up_seed's own tests, registered by its import, run in their own file

INJECT = os.path.join(EXAMPLES, "inject")
CLIENTS = {"python": ["/usr/bin/python3", os.path.join(INJECT, "inject.py")],
           "node": ["node", os.path.join(INJECT, "inject.mjs")]}
S = {}


def setup():
    S["work"] = tempfile.mkdtemp(prefix="sanctum-inject-")
    S["env"] = env_with_ports()
    S["keys"] = os.path.join(S["work"], "var", "keys")
    r = subprocess.run([CTL, "init"], cwd=S["work"], env=S["env"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for name in CLIENTS:            # each client its own key, allowed as ext:<name>-gateway
        r = subprocess.run([CTL, "keygen", name + "-gateway", "--principal", "ext:%s-gateway" % name],
                           cwd=S["work"], env=S["env"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
    zmq.auth.create_certificates(S["keys"], "stranger")     # a key, but not in the allow-list
    S["up"] = Up(S["work"], S["env"])
    S["up"].wait_for("the procurement example is in")


def teardown(_):
    if "up" in S:
        S["up"].stop()
    shutil.rmtree(S["work"], ignore_errors=True)


def command(lang, name, *args):
    if lang == "node":
        assert shutil.which("node"), "no node: install nodejs (ops/deps.sh)"
        assert os.path.isdir(os.path.join(INJECT, "node_modules", "zeromq")), \
            "no ops/examples/inject/node_modules: run `npm ci` there (ops/deps.sh does)"
    return CLIENTS[lang] + ["--keys", S["keys"], "--name", name] + list(args)


def client(lang, name, *args):
    return subprocess.run(command(lang, name, *args), cwd=S["work"], env=S["env"], capture_output=True, text=True,
                          timeout=120)


def bus_events(run_id):
    """(seq, type) of every orchestrator event of the run, as ops: replays them."""
    out, body = [], {"from_seq": 1}
    while True:
        page = ctl_json(S["up"], "inject", "events.replay", json.dumps(body), "--service", "orchestrator")["body"]
        out += [(e["seq"], e["type"]) for e in page["events"] if e["body"].get("run") == run_id]
        if "next_seq" not in page:
            return out
        body = {"from_seq": page["next_seq"]}


def check_output(lang, r, amount=5000):
    """The client's lines against the bus; returns (live, replayed)."""
    assert r.returncode == 0, (lang, r.returncode, r.stdout[-3000:], r.stderr[-3000:])
    lines = r.stdout.splitlines()
    started = [ln.split() for ln in lines if ln.startswith("started ")]
    assert len(started) == 1, r.stdout
    run_id = started[0][1]
    assert started[0][2] == "workflow=procurement", started
    # the run, as the orchestrator tells it
    got = ctl_json(S["up"], "run", "get", run_id)
    assert got["state"] == "COMPLETED", got
    assert got["principal"] == "ext:%s-gateway" % lang, got["principal"]
    assert got["input"]["amount"] == amount, got["input"]
    assert "end %s COMPLETED" % run_id in lines, r.stdout
    steps = [ln.split()[1:5] for ln in lines if ln.startswith("step ")]
    want = [[n["node"], n["kind"], "attempt=%d" % n["attempt"], "outcome=%s" % n["outcome"]] for n in got["nodes"]]
    assert steps == want and len(steps) == len(want) >= 4, (steps, want)
    tool = [ln for ln in lines if ln.startswith("step write_po ")]
    decision = "allow" if amount < 10000 else "approval_required"     # the seeded po.write policy
    assert tool and "decision=" + decision in tool[0] and "status=200" in tool[0], tool
    # every event of the run, once, in seq order: what the bus holds
    events = [(int(ln.split()[1]), ln.split()[2]) for ln in lines if ln.startswith("event ")]
    assert events == bus_events(run_id), (events, bus_events(run_id))
    assert events[0][1] == "run.started" and events[-1][1] == "run.completed", events
    # the receipt verifies, and is of this run
    receipt = [ln.split()[1:] for ln in lines if ln.startswith("receipt ")]
    assert receipt and receipt[0][:2] == [run_id, "COMPLETED"], receipt
    jws = [ln[4:] for ln in lines if ln.startswith("jws ")]
    assert len(jws) == 1 and jws[0].count(".") == 2, lines[-2:]
    path = os.path.join(S["work"], "%s-%s.jws" % (lang, run_id))
    with open(path, "w") as f:
        f.write(jws[0])
    v = subprocess.run([CTL, "--json", "receipt", "verify", path], cwd=S["work"], env=S["env"],
                       capture_output=True, text=True, timeout=60)
    assert v.returncode == 0, (v.stdout[-2000:], v.stderr)
    verdict = json.loads(v.stdout)
    assert verdict["verified"] and verdict["run"] == run_id and verdict["state"] == "COMPLETED", verdict
    followed = [ln.split() for ln in lines if ln.startswith("followed ")]
    return tuple(int(f.split("=")[1]) for f in followed[0][1:3])


def follows(lang):
    live, replayed = check_output(lang, client(lang, lang + "-gateway"))
    assert live + replayed >= 10, (live, replayed)
    # subscribed after the run ended: every event of it came by events.replay
    live, replayed = check_output(lang, client(lang, lang + "-gateway", "--late", "2"))
    assert live == 0 and replayed >= 10, (live, replayed)


def paused_runs(lang):
    return [r["run"] for r in ctl_json(S["up"], "run", "list", "--state", "PAUSED")["runs"]]


def follows_through_the_gate(lang):
    """$520,000: the client follows the pause (one, for the chain of two approvers); approved
    meanwhile, the run ends."""
    before = paused_runs(lang)
    p = subprocess.Popen(command(lang, lang + "-gateway", "--amount", "520000"), cwd=S["work"], env=S["env"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (set(paused_runs(lang)) - set(before)) and time.monotonic() < deadline:
            time.sleep(0.2)
        new = set(paused_runs(lang)) - set(before)
        assert len(new) == 1, (before, new)
        run_id = new.pop()
        approve_as(S["up"], "carol", run_id)
        approve_as(S["up"], "victor", run_id)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    r = subprocess.CompletedProcess(p.args, p.returncode, out, err)
    check_output(lang, r, amount=520000)
    events = [ln.split()[2] for ln in out.splitlines() if ln.startswith("event ")]
    assert events.count("run.paused") == 1 and events.count("run.resumed") == 1, events


def gives_up(lang):
    """Paused at the gate and nobody approves: --timeout ends it, exit 1."""
    r = client(lang, lang + "-gateway", "--amount", "520000", "--timeout", "3")
    assert r.returncode == 1 and "did not end in time" in r.stderr, (r.returncode, r.stdout, r.stderr)
    assert "event " in r.stdout and "jws " not in r.stdout, r.stdout


def refused(lang):
    before = len(ctl_json(S["up"], "run", "list")["runs"])
    r = client(lang, "stranger")
    assert r.returncode == 3, (lang, r.returncode, r.stdout, r.stderr)
    public, _ = zmq.auth.load_certificate(os.path.join(S["keys"], "stranger.key"))
    assert "not in the allow-list" in r.stderr and public.decode() in r.stderr, r.stderr
    assert "started" not in r.stdout, r.stdout
    assert len(ctl_json(S["up"], "run", "list")["runs"]) == before


@test
def python_client_follows_a_run_to_its_verified_receipt(_):
    follows("python")


@test
def node_client_follows_a_run_to_its_verified_receipt(_):
    follows("node")


@test
def python_client_follows_a_run_through_the_approval_gate(_):
    follows_through_the_gate("python")


@test
def node_client_follows_a_run_through_the_approval_gate(_):
    follows_through_the_gate("node")


@test
def clients_give_up_at_their_timeout(_):
    gives_up("python")
    gives_up("node")


@test
def python_client_with_a_key_not_allowed_is_refused(_):
    refused("python")


@test
def node_client_with_a_key_not_allowed_is_refused(_):
    refused("node")


if __name__ == "__main__":
    sys.exit(run(setup, teardown))
