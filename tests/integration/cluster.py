"""cluster — start a real Sanctum (every daemon as its own process) for tests.

Each cluster lives in a fresh temporary directory with its own config, keys
and LMDB data, on ephemeral loopback ports, so clusters run side by side and
leave nothing behind.
"""
import json
import sys
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(ROOT, os.environ.get("BUILD", "build"), "bin")
sys.path.insert(0, os.path.join(ROOT, "ops", "python"))
import sanctum_client  # noqa: E402
import sanctum_services  # noqa: E402
# key/binary name -> config section, in start order (bus/bus_services.def)
SERVICES = {s.name: s.section for s in sanctum_services.SERVICES}
# sections with an HTTP listen address (bus/bus_config_keys.def)
HTTP_SECTIONS = sanctum_services.sections_with("http")


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class Cluster:
    def __init__(self, services=None, extra_config=""):
        self.dir = tempfile.mkdtemp(prefix="sanctum-it-")
        self.keys = os.path.join(self.dir, "keys")
        self.conf = os.path.join(self.dir, "sanctum.conf")
        self.procs = {}
        self.logs = {}
        self.services = list(services or SERVICES)
        ports = iter(free_ports(2 * len(SERVICES) + len(HTTP_SECTIONS)))
        self.endpoints = {}
        lines = ["[sanctum]", "data_dir = %s/data" % self.dir, "keys_dir = %s" % self.keys,
                 "allow_dir = %s/allow" % self.keys, "log_level = info",
                 "rpc_timeout_ms = 1000", "rpc_retries = 1", "map_size_mb = 64"]
        for name, section in SERVICES.items():
            rpc, pub = "tcp://127.0.0.1:%d" % next(ports), "tcp://127.0.0.1:%d" % next(ports)
            self.endpoints[name] = (rpc, pub)
            lines += ["", "[%s]" % section, "rpc = %s" % rpc, "pub = %s" % pub]
            if section in HTTP_SECTIONS:
                lines.append("http = 127.0.0.1:%d" % next(ports))
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n" + extra_config)
        self.ctl("init", check=True)

    # --- processes -----------------------------------------------------------
    def ctl(self, *args, check=False, timeout=30, input=None):
        r = subprocess.run([os.path.join(BIN, "sanctumctl"), "--config", self.conf] + list(args),
                           capture_output=True, text=True, timeout=timeout, input=input)
        if check and r.returncode != 0:
            raise AssertionError("sanctumctl %s failed (%d): %s %s" % (args, r.returncode, r.stdout, r.stderr))
        return r

    def ctl_json(self, *args):
        r = self.ctl("--json", *args)
        return r.returncode, (json.loads(r.stdout) if r.stdout.strip() else None)

    def start(self, name, env=None):
        log = open(os.path.join(self.dir, name + ".log"), "a")
        self.logs[name] = log.name
        e = dict(os.environ)
        e.update(env or {})
        self.procs[name] = subprocess.Popen([os.path.join(BIN, "sanctum-" + name), "--config", self.conf],
                                            stdout=log, stderr=log, env=e)
        log.close()
        return self.procs[name]

    def start_all(self):
        for name in self.services:
            self.start(name)
        self.wait_healthy()

    def wait_healthy(self, names=None, timeout=15):
        names = names or self.services
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ok = True
            for n in names:
                rc, out = self.ctl_json("health", n)
                ok = ok and rc == 0 and out["services"][n]["state"] == "ok"
            if ok:
                return True
            time.sleep(0.1)
        raise AssertionError("services not healthy: %s" % names)

    def stop(self, name, sig=signal.SIGTERM, timeout=10):
        p = self.procs.pop(name, None)
        if p and p.poll() is None:
            p.send_signal(sig)
            try:
                return p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                return None
        return p.returncode if p else None

    def alive(self, name):
        p = self.procs.get(name)
        return p is not None and p.poll() is None

    def close(self):
        for name in list(self.procs):
            self.stop(name)
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- keys ----------------------------------------------------------------
    def client_key(self, name, principal):
        self.ctl("keygen", name, "--principal", principal, check=True)
        return sanctum_client.load_keys(self.keys, name)

    def client(self, service, key_name="pyclient", principal="ext:erp-gateway", **kw):
        public, secret = self.client_key(key_name, principal)
        return sanctum_client.SanctumClient(self.endpoints[service][0],
                                            sanctum_client.server_key(self.keys, service), public, secret, **kw)

    def read_logs(self):
        text = ""
        for path in self.logs.values():
            with open(path, errors="replace") as f:
                text += f.read()
        return text
