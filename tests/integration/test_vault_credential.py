#!/usr/bin/env python3
"""Integration: the vault-broker's master keyring from a systemd credential
([vault] master_key_credential = NAME: $CREDENTIALS_DIRECTORY/NAME, as
LoadCredential= / LoadCredentialEncrypted= provide it).

- The daemon starts with the credential (two keys, mode 0400): connections
  seal under key 2, leases work; no master.key file is made in the data
  folder.
- `sanctumctl vault rotate-key master` is refused (forbidden, reason
  credential: the daemon cannot write a credential), the credential
  unchanged; a signing key rotation still works.
- A record sealed under the credential opens after a restart with it.
- Started without CREDENTIALS_DIRECTORY, or with the credential missing, the
  daemon fails fast, naming what is missing.
"""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from cluster import BIN, Cluster  # noqa: E402
from harness import run, test  # noqa: E402

RUN = "01JDZ0000000000000000RUN01"
SCOPE = "https://www.googleapis.com/auth/spreadsheets"


def node_pub():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives import serialization
    import base64
    pk = Ed25519PrivateKey.generate().public_key().public_bytes(serialization.Encoding.Raw,
                                                               serialization.PublicFormat.Raw)
    return base64.urlsafe_b64encode(pk).rstrip(b"=").decode()


class Ctx:
    def __init__(self):
        self.c = Cluster(services=["vault-broker"], extra_config="[vault]\nmaster_key_credential = vault-master.key\n")
        self.creds = os.path.join(self.c.dir, "creds")
        os.makedirs(self.creds, mode=0o700)
        self.cred = os.path.join(self.creds, "vault-master.key")
        with open(self.cred, "wb") as f:
            f.write(os.urandom(64))
        os.chmod(self.cred, 0o400)
        self.env = {"CREDENTIALS_DIRECTORY": self.creds}
        self.c.start("vault-broker", env=self.env)
        self.c.wait_healthy(["vault-broker"])
        self.orch = self.c.client("vault-broker", key_name="orch-test", principal="svc:orchestrator")
        self.secret = os.path.join(self.c.dir, "secret")
        with open(self.secret, "w") as f:
            f.write("refresh-token-of-the-credential-test\n")


def _lease(x):
    r = x.orch.call("vault.lease", {"run": RUN, "node": "n1", "connection": "sheets", "scopes": [SCOPE], "ttl": 30,
                                    "node_key": node_pub()}, timeout_ms=5000)
    assert r is not None and r["ok"], r
    return r["body"]


@test
def starts_with_the_credential(x):
    r = x.c.ctl("--json", "vault", "connect", "sheets", "--kind", "google-sheets", "--scopes", SCOPE,
                "--secret-file", x.secret)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["key_id"] == 2, r.stdout
    assert _lease(x)["token"]
    assert not os.path.exists(os.path.join(x.c.dir, "data", "vault-broker", "master.key"))


@test
def master_rotation_refused_signing_rotation_works(x):
    before = open(x.cred, "rb").read()
    r = x.c.ctl("--json", "vault", "rotate-key", "master")
    assert r.returncode != 0, r.stdout
    assert "credential" in r.stdout + r.stderr, r.stdout + r.stderr
    assert open(x.cred, "rb").read() == before
    r = x.c.ctl("--json", "vault", "rotate-key", "signing")
    assert r.returncode == 0, r.stdout + r.stderr


@test
def records_open_after_a_restart(x):
    x.c.stop("vault-broker")
    x.c.start("vault-broker", env=x.env)
    x.c.wait_healthy(["vault-broker"])
    x.orch.close()
    x.orch = x.c.client("vault-broker", key_name="orch-test", principal="svc:orchestrator")
    time.sleep(0.2)
    assert _lease(x)["token"]


@test
def missing_credential_fails_fast(x):
    x.c.stop("vault-broker")
    for env, want in (({}, "CREDENTIALS_DIRECTORY"),
                      ({"CREDENTIALS_DIRECTORY": os.path.join(x.c.dir, "nowhere")}, "vault-master.key")):
        e = dict(os.environ)
        e.pop("CREDENTIALS_DIRECTORY", None)
        e.update(env)
        bin_ = os.path.join(BIN, "sanctum-vault-broker")
        t0 = time.monotonic()
        p = subprocess.run([bin_, "--config", x.c.conf], env=e, capture_output=True, text=True, timeout=30)
        assert p.returncode != 0, p
        assert time.monotonic() - t0 < 10
        assert want in p.stdout + p.stderr, p.stdout + p.stderr


def setup():
    return Ctx()


def teardown(x):
    x.orch.close()
    x.c.close()


if __name__ == "__main__":
    sys.exit(run(setup, teardown))
