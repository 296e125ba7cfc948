#!/usr/bin/env python3
"""Integration: sanctumctl for a new user — a config file found from any
folder, and a key the servers refuse reported at once.

A Sanctum set up by `sanctumctl init` in WORK (WORK/var/sanctum.conf, its
paths relative to WORK/var) runs with every daemon. Then sanctumctl runs
from other folders: with --config WORK/var/sanctum.conf it works from
anywhere; from a folder with a var/ of its own (other keys) it fails within
seconds, naming the service and the key file, instead of timing out for
70 s and saying `unreachable`.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from cluster import BIN, SERVICES, free_ports  # noqa: E402
from harness import run, test  # noqa: E402

CTL = os.path.join(BIN, "sanctumctl")
FAST = 10       # seconds: far from the 7 x (4 attempts x 2.5 s) of deadlines


class Setup:
    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="sanctum-ctlconf-")
        self.work = os.path.join(self.root, "work")
        os.makedirs(self.work)
        self.env = dict(os.environ)
        for k in list(self.env):
            if k.startswith("SANCTUM_"):
                del self.env[k]
        ports = iter(free_ports(2 * len(SERVICES) + 2))
        for name, section in SERVICES.items():
            self.env["SANCTUM_%s_RPC" % section.upper()] = "tcp://127.0.0.1:%d" % next(ports)
            self.env["SANCTUM_%s_PUB" % section.upper()] = "tcp://127.0.0.1:%d" % next(ports)
        self.env["SANCTUM_TELEMETRY_HTTP"] = "127.0.0.1:%d" % next(ports)
        self.env["SANCTUM_SANDBOX_HTTP"] = "127.0.0.1:%d" % next(ports)
        # init writes the effective config, endpoints included
        self.ctl(["init"], cwd=self.work, env=self.env, check=True)
        self.conf = os.path.join(self.work, "var", "sanctum.conf")
        self.plain_env = {k: v for k, v in self.env.items() if not k.startswith("SANCTUM_")}
        self.procs = []
        for name in SERVICES:
            log = open(os.path.join(self.root, name + ".log"), "w")
            # from / : the daemons find their keys and data through the file
            self.procs.append(subprocess.Popen([os.path.join(BIN, "sanctum-" + name), "--config", self.conf],
                                               cwd="/", env=self.plain_env, stdout=log, stderr=log))
            log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.ctl(["--config", self.conf, "health"], cwd="/").returncode == 0:
                break
            time.sleep(0.2)

    def ctl(self, args, cwd, env=None, check=False):
        r = subprocess.run([CTL] + args, cwd=cwd, env=env or self.plain_env, capture_output=True, text=True,
                           timeout=120)
        if check and r.returncode != 0:
            raise AssertionError("sanctumctl %s: %d %s %s" % (args, r.returncode, r.stdout, r.stderr))
        return r

    def folder_with_own_var(self, name):
        """A folder with a var/ of its own: its own config (same endpoints), its own keys."""
        d = os.path.join(self.root, name)
        os.makedirs(d)
        self.ctl(["init"], cwd=d, env=self.env, check=True)
        return d

    def close(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.root, ignore_errors=True)


@test
def config_written_relative_to_its_folder(s):
    text = open(s.conf).read()
    for line in ("data_dir = .", "keys_dir = keys", "allow_dir = keys/allow"):
        assert "\n%s\n" % line in text, text[:800]


@test
def config_works_from_any_folder(s):
    elsewhere = os.path.join(s.root, "elsewhere")
    os.makedirs(elsewhere)
    r = s.ctl(["--config", s.conf, "--json", "health"], cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    r = s.ctl(["--config", os.path.relpath(s.conf, elsewhere), "health", "authz"], cwd=elsewhere)
    assert r.returncode == 0, r.stderr


@test
def own_var_with_other_keys_fails_fast_naming_the_key_file(s):
    d = s.folder_with_own_var("mine")
    t0 = time.monotonic()
    r = s.ctl(["health"], cwd=d)                     # ./var/sanctum.conf of that folder
    took = time.monotonic() - t0
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert took < FAST, took
    own_keys = os.path.realpath(os.path.join(d, "var", "keys"))
    for name in SERVICES:
        # the server key we hold for it is not the key of the server there
        assert "sanctumctl: %s at tcp://" % name in r.stderr, r.stderr
        assert "(from %s/%s.key)" % (own_keys, name) in r.stderr, r.stderr
    assert "refused" in r.stdout and "unreachable" not in r.stdout, r.stdout
    # the same folder, with --config: the right Sanctum
    r = s.ctl(["--config", s.conf, "health"], cwd=d)
    assert r.returncode == 0, r.stderr


@test
def refused_client_key_fails_fast_naming_key_and_file(s):
    d = s.folder_with_own_var("stranger")
    # the servers' real public keys, but our own (unknown) client key
    # (a client holds the services' public keys only: zcert reads a
    # .key_secret beside a .key in its place)
    for name in SERVICES:
        shutil.copy(os.path.join(s.work, "var", "keys", name + ".key"), os.path.join(d, "var", "keys", name + ".key"))
        os.unlink(os.path.join(d, "var", "keys", name + ".key_secret"))
    t0 = time.monotonic()
    r = s.ctl(["--json", "health"], cwd=d)
    took = time.monotonic() - t0
    assert r.returncode == 1 and took < FAST, (r.returncode, took, r.stderr)
    key_file = os.path.realpath(os.path.join(d, "var", "keys", "sanctumctl.key"))
    public = [l.split('"')[1] for l in open(key_file) if l.strip().startswith("public-key")][0]
    for name in SERVICES:
        assert "sanctumctl: %s refused our key %s (from %s)" % (name, public, key_file) in r.stderr, r.stderr
    assert '"state": "refused"' in r.stdout, r.stdout
    # inject says the same, and exits 1
    r = s.ctl(["inject", "health", "{}", "--service", "authz"], cwd=d)
    assert r.returncode == 1 and "authz refused our key" in r.stderr, r.stderr


@test
def missing_key_names_the_config(s):
    empty = os.path.join(s.root, "empty")
    os.makedirs(empty)
    r = s.ctl(["health"], cwd=empty)                  # no config here at all
    assert r.returncode == 1 and "no config file" in r.stderr and "--config" in r.stderr, r.stderr


if __name__ == "__main__":
    sys.exit(run(Setup, lambda s: s.close()))
