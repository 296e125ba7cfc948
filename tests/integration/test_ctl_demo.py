#!/usr/bin/env python3
"""Integration: `sanctumctl demo` tells the procurement story unattended on a
running suite (started and seeded by `sanctumctl up`, as test_up_seed.py
does) and exits 0 with the receipt verified; it finds ops/demo_story.py
beside the binary and passes --config along; `demo --help` says what it does
without a suite; a story it cannot find is an error (exit 1), extra
arguments bad usage (exit 2)."""
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import run, test  # noqa: E402
from test_up_seed import CTL, Up, env_with_ports  # noqa: E402

del harness.TESTS[:]          # test_up_seed's own tests, registered by its import, run in their own file


@test
def demo_help_and_usage():
    r = subprocess.run([CTL, "demo", "--help"], capture_output=True, text=True, timeout=30, cwd="/")
    assert r.returncode == 0 and "procurement story" in r.stdout, (r.returncode, r.stdout, r.stderr)
    r = subprocess.run([CTL, "demo", "extra"], capture_output=True, text=True, timeout=30, cwd="/")
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    r = subprocess.run([CTL, "--help"], capture_output=True, text=True, timeout=30)
    assert "demo " in r.stdout and "device enroll USER | invite USER" in r.stdout, r.stdout


@test
def demo_tells_the_story_on_the_running_suite():
    work = tempfile.mkdtemp(prefix="sanctum-demo-")
    env = env_with_ports()
    up = Up(work, env)
    try:
        up.wait_for("the procurement example is in")
        conf = os.path.join(work, "var", "sanctum.conf")
        assert os.path.exists(conf), os.listdir(os.path.join(work, "var"))
        # a story that is not there: a clear error
        bad = dict(env, SANCTUM_DEMO_STORY=os.path.join(work, "nowhere.py"))
        r = subprocess.run([CTL, "--config", conf, "demo"], cwd=work, env=bad, capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 1 and "demo_story.py" in r.stderr, (r.returncode, r.stderr)
        r = subprocess.run([CTL, "--config", conf, "demo"], cwd=work, env=env, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, (r.returncode, r.stdout[-3000:], r.stderr[-2000:], up.text()[-2000:])
        assert "verified" in r.stdout.lower(), r.stdout[-3000:]
        # the $2,000,000 run is told as rejected, the tampered receipt as refused
        assert "2,000,000" in r.stdout or "2000000" in r.stdout, r.stdout[-3000:]
    finally:
        up.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(run())
