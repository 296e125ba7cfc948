#!/usr/bin/env python3
"""Integration: `sanctumctl up` seeds the procurement example on first start —
the authz model, tuples and policy (po.write decides allow / approval_required
/ deny for $5,000 / $520,000 / $2,000,000), approver devices for carol and
victor (secrets under keys/devices), the sandbox connections sheets and gmail
in the vault, the example workflows — and a second start changes nothing; nor
does `sanctumctl seed` run again with its record removed (each item is only
seeded when missing). Where the orchestrator runs workflows (`sanctumctl run`),
the story works on the seeded suite alone: $5,000 completes, $520,000 pauses for
carol then victor (signing with the seeded devices) and completes, $2,000,000
is rejected; the sandbox holds one row per completed run. `up --no-seed` seeds
nothing. A workflows directory `seed` may not write (read-only) is skipped and
said so, the rest seeded, nothing recorded until a later seed copies them."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from cluster import BIN, HTTP_SECTIONS, ROOT, SERVICES, free_ports  # noqa: E402
from harness import run, test  # noqa: E402

CTL = os.path.join(BIN, "sanctumctl")
EXAMPLES = os.path.join(ROOT, "ops", "examples")


def env_with_ports():
    env = dict(os.environ)
    env.pop("SANCTUM_EXAMPLES", None)
    ports = iter(free_ports(2 * len(SERVICES) + len(HTTP_SECTIONS)))
    for name, section in SERVICES.items():
        env["SANCTUM_%s_RPC" % section.upper()] = "tcp://127.0.0.1:%d" % next(ports)
        env["SANCTUM_%s_PUB" % section.upper()] = "tcp://127.0.0.1:%d" % next(ports)
    for section in HTTP_SECTIONS:
        env["SANCTUM_%s_HTTP" % section.upper()] = "127.0.0.1:%d" % next(ports)
    return env


class Up:
    """`sanctumctl up` in work, its log kept."""

    def __init__(self, work, env, *args):
        self.work, self.env = work, env
        self.log_path = os.path.join(work, "up-%d.log" % time.monotonic_ns())
        self.log = open(self.log_path, "w")
        self.p = subprocess.Popen([CTL, "up"] + list(args), cwd=work, env=env, stdout=self.log, stderr=self.log,
                                  start_new_session=True)

    def text(self):
        with open(self.log_path) as f:
            return f.read()

    def wait_for(self, what, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if what in self.text():
                return
            assert self.p.poll() is None, self.text()[-3000:]
            time.sleep(0.2)
        raise AssertionError("no %r in the log: %s" % (what, self.text()[-3000:]))

    def stop(self):
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGINT)
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()


def ctl(up, *args):
    r = subprocess.run([CTL, "--json"] + list(args), cwd=up.work, env=up.env, capture_output=True, text=True,
                       timeout=60)
    return r.returncode, r.stdout, r.stderr


def ctl_json(up, *args):
    rc, out, err = ctl(up, *args)
    assert rc in (0, 3), (args, out, err)
    return json.loads(out)


def snapshot(up):
    """What seeding may change: models, policy, devices, connections, workflows."""
    model = ctl_json(up, "inject", "authz.model.read", "{}", "--service", "authz")
    devices = ctl_json(up, "device", "list")
    conns = ctl_json(up, "vault", "connections")
    wf = os.path.join(up.work, "var", "workflows")
    return {"models": model["body"]["model_ids"] if "body" in model else model.get("model_ids"),
            "devices": sorted((d["approver"], d["device"], d["state"]) for d in devices["devices"]),
            "connections": sorted((c["name"], c["updated_at"]) for c in conns["connections"]),
            "workflows": sorted(os.listdir(wf)) if os.path.isdir(wf) else None,
            "secrets": sorted(os.listdir(os.path.join(up.work, "var", "keys", "devices")))}


def has_runs():
    r = subprocess.run([CTL, "--help"], capture_output=True, text=True)
    return "run start" in r.stdout


def approve_as(up, user, run_id):
    """user approves, with the seeded device, what the run asks of them."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        for a in ctl_json(up, "approvals", "--as", user).get("approvals", []):
            if a.get("run") == run_id:
                rc, out, err = ctl(up, "approve", a["auth_req_id"], "--as", user)
                assert rc == 0, out + err
                return
        time.sleep(0.2)
    raise AssertionError("nothing asked of %s" % user)


def run_story(up):
    """The procurement story on what seeding put in place."""
    def start(amount):
        out = ctl_json(up, "run", "start", "procurement", "--input", "vendor=Acme", "--input", "amount=%d" % amount,
                       "--input", "cost_center=engineering")
        return out["run"]

    def wait(run_id, states, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = ctl_json(up, "run", "get", run_id)
            if v["state"] in states:
                return v
            time.sleep(0.2)
        raise AssertionError("run %s never reached %s: %s" % (run_id, states, v))

    small = start(5000)
    assert wait(small, ("COMPLETED", "FAILED", "REJECTED"))["state"] == "COMPLETED"
    big = start(520000)
    v = wait(big, ("PAUSED",))
    assert v["reason"] == "approval", v
    approve_as(up, "carol", big)
    # carol's level is decided, victor's asked: the run shows the levels as they are now
    # (the orchestrator follows the ciba-broker's level events; sanctumctl prints its answer)
    deadline = time.monotonic() + 15
    while True:
        levels = ctl_json(up, "run", "get", big)["approval"]["levels"]
        states = [(l["approver"], l["state"]) for l in levels]
        if states == [("user:carol", "approved"), ("user:victor", "pending")] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert states == [("user:carol", "approved"), ("user:victor", "pending")], levels
    people = subprocess.run([CTL, "run", "get", big], cwd=up.work, env=up.env, capture_output=True, text=True,
                            timeout=60).stdout
    assert "user:carol (approved) user:victor (pending)" in people, people
    approve_as(up, "victor", big)
    assert wait(big, ("COMPLETED", "FAILED", "REJECTED"))["state"] == "COMPLETED"
    huge = start(2000000)
    assert wait(huge, ("COMPLETED", "FAILED", "REJECTED"))["state"] == "REJECTED"
    rows = ctl_json(up, "sandbox", "rows", "erp")["rows"]
    assert [r[2] for r in rows] == [5000, 520000], rows


def readme_errors(up):
    """README's commands on the seeded suite, and wrong usages that say what to do next."""
    def people(*args):
        r = subprocess.run([CTL] + list(args), cwd=up.work, env=up.env, capture_output=True, text=True, timeout=60)
        return r.returncode, r.stdout, r.stderr

    tuples = os.path.join(EXAMPLES, "procurement", "tuples.json")
    rc, out, err = people("authz", "write", "--file", tuples)      # seeded already: each one a conflict
    assert rc == 1 and "conflict" in err and "--ignore-existing" in err, (rc, out, err)
    rc, out, err = people("authz", "write", "--file", tuples, "--ignore-existing")
    n = len(json.load(open(tuples)))
    assert rc == 0 and out == "written 0 tuples; %d already there\n" % n, (rc, out, err)
    # a value the service refuses as invalid is bad usage (2), and the refusal stays in the log at info
    rc, out, err = people("run", "list", "--state", "BOGUS")
    assert rc == 2 and "error invalid" in err and "RUNNING" in err, (rc, err)
    assert any('"code":"invalid"' in l and '"level":"info"' in l and "request refused" in l
               for l in up.text().splitlines()), up.text()[-3000:]
    rc, out, err = people("run", "get", "nope")
    assert rc == 2 and "not a run id" in err and "sanctumctl run list" in err, (rc, err)
    rc, out, err = people("run", "wait", "0" * 26)
    assert rc == 1 and "not_found" in err and "sanctumctl run list" in err, (rc, err)
    rc, out, err = people("run", "start", "nosuch")
    assert rc == 1 and "sanctumctl workflows" in err, (rc, err)
    rc, out, err = people("approve", "nosuch", "--as", "carol")
    assert rc == 1 and "sanctumctl approvals --as USER" in err, (rc, err)
    # a request asked of carol, approved as victor: refused (3), saying whose it is
    run_id = ctl_json(up, "run", "start", "procurement", "--input", "vendor=Acme", "--input", "amount=60000",
                      "--input", "cost_center=engineering")["run"]
    deadline = time.monotonic() + 15
    mine = []
    while not mine and time.monotonic() < deadline:
        mine = [a for a in ctl_json(up, "approvals", "--as", "carol")["approvals"] if a.get("run") == run_id]
        time.sleep(0.2)
    assert mine, "nothing asked of carol"
    rc, out, err = people("approve", mine[0]["auth_req_id"], "--as", "victor")
    assert rc == 3 and "is asked of user:carol, not user:victor" in err, (rc, err)
    deadline = time.monotonic() + 5         # up copies the broker's lines as they come
    while not any('"code":"forbidden"' in l and '"level":"info"' in l and "request refused" in l
                  for l in up.text().splitlines()):
        assert time.monotonic() < deadline, "the forbidden approval is not in the log: " + up.text()[-3000:]
        time.sleep(0.1)
    rc, out, err = people("approve", mine[0]["auth_req_id"], "--as", "carol")
    assert rc == 0 and "asked next of user:victor" in out, (rc, out, err)
    assert people("run", "cancel", run_id)[0] == 0
    rc, out, err = people("vault", "revoke", "lease_nosuch")
    assert rc == 1 and "sanctumctl vault leases" in err, (rc, err)
    rc, out, err = people("receipt", "get", "nosuch")
    assert rc == 2 and "RUN is a run id" in err and "sanctumctl run list" in err, (rc, err)
    rc, out, err = people("device", "list", "nobody")
    assert rc == 0 and out.startswith("no devices of user:nobody") and "device enroll" in out, (rc, out, err)
    rc, out, err = people("vault", "connect", "x", "--kind", "gmail", "--scopes", "x", "--secret-file",
                          os.path.join(up.work, "nowhere"))
    assert rc == 1 and "cannot open the secret file" in err and "UTF-8" not in err, (rc, err)
    # the mock ERP's rows for people: one a line, cells tab-separated
    rc, out, err = people("sandbox", "rows", "erp")
    assert rc == 0 and "\tAcme\t5000\tengineering\n" in out and "{" not in out, (rc, out, err)
    rc, out, err = people("sandbox", "rows", "nosheet")
    assert rc == 0 and out.startswith("no rows in sheet nosheet"), (rc, out, err)
    rc, out, err = people("health", "nosuch")
    assert rc == 2 and "one of: " in err and "orchestrator" in err, (rc, err)
    # with --json the error is JSON on stdout, and no hint is added
    rc, out, err = people("run", "wait", "0" * 26, "--json")
    assert rc == 1 and json.loads(out)["error"]["code"] == "not_found" and "run list" not in err, (rc, out, err)


@test
def first_start_seeds_and_second_changes_nothing():
    work = tempfile.mkdtemp(prefix="sanctum-seed-")
    env = env_with_ports()
    up = Up(work, env)
    try:
        up.wait_for("the procurement example is in")
        # seeding asks whether a model and a policy exist yet: "none yet" is an answer (logged at
        # debug), not a refused request in a newcomer's first log
        assert "request refused" not in up.text(), \
            [l for l in up.text().splitlines() if "request refused" in l]
        # the OpenFGA HTTP API off for want of keys says how to turn it on
        assert "answers 401 to every request (to use it, point http_keys at" in up.text(), up.text()[:3000]
        marker = os.path.join(work, "var", "seeded.json")
        record = json.load(open(marker))
        seeded = record["seeded"]
        for item in ("authz model", "authz policy", "device user:carol", "device user:victor",
                     "connection sheets", "connection gmail"):
            assert item in seeded, seeded
        # the policy decides the story's three amounts
        results = {}
        for amount in (5000, 520000, 2000000):
            d = ctl_json(up, "authz", "decide", "agent:po-drafter", "po.write", "cost_center:engineering",
                         "--context", json.dumps({"amount": amount}))
            results[amount] = d["decision"]
        assert results == {5000: "allow", 520000: "approval_required", 2000000: "deny"}, results
        devices = ctl_json(up, "device", "list")["devices"]
        assert {d["approver"] for d in devices if d["state"] == "active"} == {"user:carol", "user:victor"}, devices
        for user in ("user_carol", "user_victor"):
            path = os.path.join(work, "var", "keys", "devices", user + ".device_secret")
            assert os.stat(path).st_mode & 0o077 == 0, oct(os.stat(path).st_mode)
        conns = {c["name"]: c for c in ctl_json(up, "vault", "connections")["connections"]}
        assert conns["sheets"]["kind"] == "google-sheets" and conns["gmail"]["kind"] == "gmail", conns
        assert conns["sheets"]["mode"] == "local" and not conns["sheets"]["approval"], conns["sheets"]
        assert "https://www.googleapis.com/auth/spreadsheets" in conns["sheets"]["scopes"]
        examples_wf = os.path.join(EXAMPLES, "workflows")
        if os.path.isdir(examples_wf):
            want = sorted(f for f in os.listdir(examples_wf) if f.endswith(".json"))
            assert want and sorted(os.listdir(os.path.join(work, "var", "workflows"))) == want
            for f in want:
                assert ("workflow " + f) in seeded
        # a first start: no "workflow refused" for the workflows' folder not made yet
        assert "workflow refused" not in up.text(), up.text()[-3000:]
        if has_runs():
            run_story(up)
            readme_errors(up)
        else:
            print("# no `sanctumctl run` in this build: the story is left to the orchestrator's tests")
        before = snapshot(up)
        marker_text = open(marker).read()
        up.stop()

        # the second start: seeded before, nothing changes
        up = Up(work, env)
        up.wait_for("nothing to do")
        up.wait_for("services started")
        deadline = time.monotonic() + 20
        while ctl(up, "health")[0] != 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert snapshot(up) == before
        assert open(marker).read() == marker_text

        # the record removed: `seed` checks each item, finds it there, changes nothing
        os.unlink(marker)
        rc, out, err = ctl(up, "seed")
        assert rc == 0, out + err
        assert json.loads(out)["seeded"] == [], out
        assert snapshot(up) == before
        # and once recorded, again nothing to do
        rc, out, err = ctl(up, "seed")
        assert rc == 0 and "nothing to do" in err, out + err
    finally:
        up.stop()
        shutil.rmtree(work, ignore_errors=True)


@test
def no_seed_and_bad_examples():
    work = tempfile.mkdtemp(prefix="sanctum-noseed-")
    env = env_with_ports()
    up = Up(work, env, "--no-seed")
    try:
        up.wait_for("services started")
        deadline = time.monotonic() + 20
        while ctl(up, "health")[0] != 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
        assert not os.path.exists(os.path.join(work, "var", "seeded.json"))
        assert "sanctumctl seed" not in up.text(), up.text()
        rc, out, err = ctl(up, "authz", "policy", "read")
        assert rc != 0, out             # no policy: nothing was seeded
        rc, out, err = ctl(up, "seed", "--examples", os.path.join(work, "nowhere"))
        assert rc == 1 and "no examples" in err, err
        rc, out, err = ctl(up, "seed", "--wait-ms", "x")
        assert rc == 2, err
    finally:
        up.stop()
        shutil.rmtree(work, ignore_errors=True)


@test
def ctrl_c_while_seeding_waits_for_a_dead_service():
    """authz cannot start (a bad [authz] http_keys), so the seeder keeps asking it: Ctrl-C still
    stops everything at once, the seeder included (it took its full wait, a minute, before)."""
    work = tempfile.mkdtemp(prefix="sanctum-seedstop-")
    env = env_with_ports()
    keys = os.path.join(work, "http_keys")
    with open(keys, "w") as f:
        f.write("short\n")                  # a key is one word of at least 16 bytes: authz refuses to start
    os.chmod(keys, 0o600)
    env["SANCTUM_AUTHZ_HTTP_KEYS"] = keys
    up = Up(work, env)
    try:
        up.wait_for("services started")
        time.sleep(1)                       # the seeder is asking authz
        started = time.monotonic()
        os.killpg(up.p.pid, signal.SIGINT)
        up.p.wait(30)
        took = time.monotonic() - started
        assert took < 10, "up took %.1f s to stop: %s" % (took, up.text()[-2000:])
        assert "all stopped" in up.text(), up.text()[-2000:]
        left = subprocess.run(["pgrep", "-f", "--", "--config ./var/sanctum.conf"], capture_output=True, text=True,
                              cwd=work).stdout.split()
        mine = [p for p in left if os.path.realpath("/proc/%s/cwd" % p) == os.path.realpath(work)]
        assert not mine, "left running: %s" % mine
    finally:
        up.stop()
        shutil.rmtree(work, ignore_errors=True)


@test
def seed_skips_workflows_it_cannot_write():
    """A workflows directory seed may not write (here a read-only bind mount,
    in a mount namespace of its own: `unshare -r -m`) is skipped and said
    so; everything else is seeded, exit 0, and nothing recorded, so the next
    seed, able to write, copies the workflows and records it all."""
    assert shutil.which("unshare"), "no unshare (package util-linux)"
    work = tempfile.mkdtemp(prefix="sanctum-seedro-")
    env = env_with_ports()
    wf = os.path.join(work, "workflows")
    os.makedirs(wf)
    env["SANCTUM_ORCHESTRATOR_WORKFLOWS"] = wf
    up = Up(work, env, "--no-seed")
    try:
        up.wait_for("services started")
        deadline = time.monotonic() + 20
        while ctl(up, "health")[0] != 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
        r = subprocess.run(["unshare", "-r", "-m", "sh", "-c", script, "sh", wf, CTL, "--json", "seed"],
                           cwd=work, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        out = json.loads(r.stdout)
        assert out["ok"] is True, out
        for item in ("authz model", "authz policy", "device user:carol", "device user:victor",
                     "connection sheets", "connection gmail"):
            assert item in out["seeded"], out
        assert not [x for x in out["seeded"] if x.startswith("workflow ")], out
        assert out["skipped"] and all(x.startswith("workflow ") and "Read-only file system" in x
                                      for x in out["skipped"]), out
        assert "skipping workflow" in r.stderr and "not recorded" in r.stderr, r.stderr
        assert os.listdir(wf) == [], os.listdir(wf)
        assert not os.path.exists(os.path.join(work, "var", "seeded.json"))
        # writable again: the workflows alone are seeded, and it is recorded
        rc, stdout, err = ctl(up, "seed")
        assert rc == 0, stdout + err
        out = json.loads(stdout)
        assert out["skipped"] == [] and out["seeded"] and all(x.startswith("workflow ") for x in out["seeded"]), out
        assert os.listdir(wf), "no workflow copied"
        assert os.path.exists(os.path.join(work, "var", "seeded.json"))
    finally:
        up.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(run())
