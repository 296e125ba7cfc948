#!/usr/bin/env python3
"""Integration: `sanctumctl up` — first start, supervision, ordered stop."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import shutil
import time

sys.path.insert(0, os.path.dirname(__file__))
from cluster import BIN, HTTP_SECTIONS, SERVICES, free_ports  # noqa: E402
from harness import run, test  # noqa: E402

CTL = os.path.join(BIN, "sanctumctl")


def daemons_of(pid):
    """PIDs of sanctum daemons whose parent is pid."""
    out = subprocess.run(["ps", "-o", "pid=,ppid=,comm=", "-e"], capture_output=True, text=True).stdout
    return {int(p): comm for p, pp, comm in (l.split(None, 2) for l in out.splitlines())
            if int(pp) == pid and comm.startswith("sanctum-")}


def health(cwd):
    r = subprocess.run([CTL, "--json", "health"], cwd=cwd, capture_output=True, text=True, timeout=30)
    return r.returncode, (json.loads(r.stdout) if r.stdout.strip() else None)


@test
def up_first_start_supervises_and_stops():
    work = tempfile.mkdtemp(prefix="sanctum-up-")
    env = dict(os.environ)
    # ephemeral ports through the env overrides: the generated config keeps defaults
    ports = iter(free_ports(2 * len(SERVICES) + len(HTTP_SECTIONS)))
    for name, section in SERVICES.items():
        env["SANCTUM_%s_RPC" % section.upper()] = "tcp://127.0.0.1:%d" % next(ports)
        env["SANCTUM_%s_PUB" % section.upper()] = "tcp://127.0.0.1:%d" % next(ports)
    for section in HTTP_SECTIONS:
        env["SANCTUM_%s_HTTP" % section.upper()] = "127.0.0.1:%d" % next(ports)
    log = open(os.path.join(work, "up.log"), "w")
    up = subprocess.Popen([CTL, "up"], cwd=work, env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        rc = None
        while time.monotonic() < deadline:
            rc, out = subprocess.run([CTL, "--json", "health"], cwd=work, env=env, capture_output=True,
                                     text=True).returncode, None
            if rc == 0:
                break
            time.sleep(0.2)
        assert rc == 0, open(log.name).read()[-2000:]
        for f in ("var/sanctum.conf", "var/keys/authz.key_secret", "var/keys/allow/sanctumctl.key"):
            assert os.path.exists(os.path.join(work, f)), f
        kids = daemons_of(up.pid)
        assert len(kids) == len(SERVICES), kids
        # a crashed daemon comes back
        victim = next(p for p, comm in kids.items() if comm == "sanctum-authz")
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            now = daemons_of(up.pid)
            if "sanctum-authz" in now.values() and victim not in now:
                break
            time.sleep(0.2)
        assert victim not in daemons_of(up.pid) and "sanctum-authz" in daemons_of(up.pid).values()
        os.killpg(up.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole foreground group
        assert up.wait(20) == 0
        for pid in kids:
            try:
                os.kill(pid, 0)
                raise AssertionError("daemon %d still running after up stopped" % pid)
            except ProcessLookupError:
                pass
        text = open(log.name).read()
        assert "all stopped" in text and "restarting" in text, text[-2000:]
        lines = text.splitlines()
        # started one at a time in bus_services.def's order, each once the one
        # before said READY=1: every "X ready" line comes before the next
        # daemon's first line of output
        ready = [l.split("sanctumctl up: ")[1].split(" ready")[0] for l in lines
                 if l.startswith("sanctumctl up: ") and " ready (" in l]
        assert ready == list(SERVICES), (ready, text[-2000:])
        first_line = {name: min(i for i, l in enumerate(lines) if l.startswith("%-12s | " % name))
                      for name in SERVICES}
        ready_line = {name: next(i for i, l in enumerate(lines) if l.startswith("sanctumctl up: %s ready" % name))
                      for name in SERVICES}
        names = list(SERVICES)
        for before, after in zip(names, names[1:]):
            assert ready_line[before] < first_line[after], (before, after, text[:3000])
        # each daemon's lines come prefixed with its name, the line itself intact
        # (a log file is not a terminal: the JSON lines are kept as they are)
        for name in SERVICES:
            mine = [l[len("%-12s | " % name):] for l in lines if l.startswith("%-12s | " % name)]
            logged = [json.loads(l) for l in mine if l.startswith("{")]
            assert logged and all(e.get("service") == name for e in logged), (name, mine[:3])
        # the supervisor alone got the signal and stopped them in reverse start order
        # (bus/bus_services.def's order, which SERVICES keeps), the orchestrator first
        order = [l.split("stopping ")[1] for l in text.splitlines() if "sanctumctl up: stopping " in l]
        assert order == list(reversed(list(SERVICES))) and order[0] == "orchestrator", order
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        log.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(run())
