#!/usr/bin/env python3
"""Integration: `sanctumctl COMMAND --help` — every command in the global
usage has help of its own (its usage line, then what it does, its --json
shape and exit codes where it has them), printed on stdout with exit 0,
needing no config, keys or running service; an unknown command is bad usage
(exit 2)."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from cluster import BIN  # noqa: E402
from harness import run, test  # noqa: E402

CTL = os.path.join(BIN, "sanctumctl")
EMPTY = tempfile.mkdtemp(prefix="sanctum-help-")   # no ./var here: nothing to load


def ctl(*args):
    return subprocess.run([CTL, *args], cwd=EMPTY, capture_output=True, text=True, timeout=10)


def commands():
    out = ctl("--help")
    assert out.returncode == 0, out.stderr
    names = re.findall(r"^  ([a-z]+)\b", out.stdout.split("commands:", 1)[1], re.M)
    assert len(names) >= 19 and "run" in names and "receipt" in names, names
    return names


@test
def every_command_has_its_own_help():
    everything = ctl("--help").stdout
    for name in commands():
        for flag in ("--help", "-h"):
            r = ctl(name, flag)
            assert r.returncode == 0, (name, r.returncode, r.stderr)
            assert r.stdout.startswith("usage: sanctumctl") and (" %s" % name) in r.stdout.splitlines()[0], \
                (name, r.stdout[:200])
            assert r.stdout != everything, "%s --help printed the global usage" % name
            assert len(r.stdout.splitlines()) >= 2, (name, r.stdout)


@test
def help_says_json_shape_and_exit_codes():
    r = ctl("run", "--help").stdout
    assert '"runs"' in r and "3" in r and "REJECTED" in r, r
    r = ctl("receipt", "--help").stdout
    assert "Exit: 0" in r and "3" in r, r
    r = ctl("health", "--help").stdout
    assert '"services"' in r, r


@test
def inject_of_no_request_type_says_what_is_near_and_where_to_look():
    # refused before anything is sent: no service runs here, and the
    # refusal is immediate (a request sent would wait for its timeout)
    d = tempfile.mkdtemp(prefix="sanctum-inject-")
    try:
        subprocess.run([CTL, "init"], cwd=d, capture_output=True, check=True, timeout=30)

        def inject(*args):
            return subprocess.run([CTL, "inject", *args], cwd=d, capture_output=True, text=True, timeout=5)
        r = inject("run.strat", "{}")
        assert r.returncode == 2, (r.returncode, r.stderr)
        assert "'run.strat' is not a request type" in r.stderr and "did you mean: run.start" in r.stderr, r.stderr
        assert "PROTOCOL.md section 10" in r.stderr, r.stderr
        r = inject("run.completed")
        assert r.returncode == 2 and "an event, not a request" in r.stderr, (r.returncode, r.stderr)
        assert "run.start" in r.stderr and "run.cancel" in r.stderr, r.stderr
        r = inject("frob.nicate")
        assert r.returncode == 2 and "not a request type" in r.stderr, r.stderr
        assert "did you mean" not in r.stderr and "requests of that prefix" not in r.stderr, r.stderr
    finally:
        shutil.rmtree(d, ignore_errors=True)


@test
def unknown_command_is_bad_usage():
    r = ctl("frobnicate", "--help")
    assert r.returncode == 2 and "unknown command 'frobnicate'" in r.stderr, (r.returncode, r.stderr)


@test
def wrong_options_say_what_to_do():
    r = ctl("--config")
    assert r.returncode == 2 and "--config takes a value: --config FILE" in r.stderr, (r.returncode, r.stderr)
    r = ctl("--json=1", "health")
    assert r.returncode == 2 and "unknown option '--json=1'" in r.stderr and "--json" in r.stderr, r.stderr
    r = ctl("frobnicate")
    assert r.returncode == 2 and "sanctumctl --help" in r.stderr, r.stderr
    # no key here: said once, with the commands that make one, and no log line before it
    r = ctl("health")
    assert r.returncode == 1 and "sanctumctl init" in r.stderr and '"level"' not in r.stderr, r.stderr
    r = ctl("--config", os.path.join(EMPTY, "x.conf"), "health")
    assert r.returncode == 1 and "cannot open" in r.stderr, r.stderr
    with open(os.path.join(EMPTY, "host.conf"), "w") as f:
        f.write("[sanctum]\nkeys_dir = keys\n")
    r = ctl("--config", os.path.join(EMPTY, "host.conf"), "health")
    assert r.returncode == 1 and "keygen sanctumctl --principal ops:sanctumctl" in r.stderr, r.stderr



@test
def bad_arguments_caught_before_any_call():
    """With keys (init) but no service running: arguments sanctumctl can judge alone are bad usage (2)."""
    work = tempfile.mkdtemp(prefix="sanctum-usage-")
    r = subprocess.run([CTL, "init"], cwd=work, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr

    def here(*args):
        return subprocess.run([CTL, *args], cwd=work, capture_output=True, text=True, timeout=10)
    r = here("tap", "--count")              # the value forgotten: not a topic named "--count"
    assert r.returncode == 2 and "missing value: '--count'" in r.stderr, (r.returncode, r.stderr)
    r = here("run", "get", "nope")
    assert r.returncode == 2 and "not a run id" in r.stderr and "run list" in r.stderr, (r.returncode, r.stderr)
    r = here("health", "nosuch")
    assert r.returncode == 2 and "one of: " in r.stderr and "orchestrator" in r.stderr, (r.returncode, r.stderr)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(run())
