#!/usr/bin/env python3
"""The procurement story, told unattended on a running suite (seeded by
`sanctumctl up` / `sanctumctl seed`), through sanctumctl alone:

  1. $5,000 goes straight through: the purchase order lands in the sheet;
  2. $520,000 pauses at the gate; carol's device signs, then victor's; the
     vault leases a token of at most ten minutes bound to that one step;
     the order lands in the sheet;
  3. the run's receipt is printed, verified offline, then one byte of it
     is changed and verification refuses it;
  4. $2,000,000 is rejected, and nothing more reaches the sheet.

    demo_story.py SANCTUMCTL [--config FILE]

Exits 0 only if every step happened as told, 1 otherwise (saying which).
"""
import json
import os
import subprocess
import sys
import tempfile
import time

CTL = sys.argv[1] if len(sys.argv) > 1 else "build/bin/sanctumctl"
EXTRA = sys.argv[2:]
SHEET = "erp"


class StoryError(Exception):
    pass


def ctl(*args, ok=(0,)):
    """Run sanctumctl; return (exit code, stdout)."""
    p = subprocess.run([CTL, *EXTRA, *args], capture_output=True, text=True, timeout=120)
    if p.returncode not in ok:
        raise StoryError("sanctumctl %s exited %d: %s" % (" ".join(args), p.returncode,
                                                          (p.stderr or p.stdout).strip()))
    return p.returncode, p.stdout


def ctl_json(*args, ok=(0,)):
    rc, out = ctl(*args, "--json", ok=ok)
    try:
        return rc, json.loads(out)
    except ValueError:
        raise StoryError("sanctumctl %s --json printed no JSON: %r" % (" ".join(args), out[:200]))


def say(text=""):
    print(text, flush=True)


def receipts_dir():
    """Where the receipts are written: beside the config in force (--config,
    else $SANCTUM_CONFIG, else ./var/sanctum.conf), so the story runs from any
    folder; a temporary folder when that one is not writable."""
    conf = None
    if "--config" in EXTRA[:-1]:
        conf = EXTRA[EXTRA.index("--config") + 1]
    conf = conf or os.environ.get("SANCTUM_CONFIG") or os.path.join("var", "sanctum.conf")
    folder = os.path.dirname(os.path.abspath(conf))
    if os.path.isdir(folder) and os.access(folder, os.W_OK):
        return os.path.relpath(folder) if not os.path.relpath(folder).startswith("..") else folder
    return tempfile.mkdtemp(prefix="sanctum-demo-")


def rows():
    _, r = ctl_json("sandbox", "rows", SHEET)
    return r.get("rows", [])


def start(amount):
    _, r = ctl_json("run", "start", "procurement", "--input", "vendor=Acme",
                    "--input", "amount=%d" % amount, "--input", "cost_center=engineering")
    return r["run"]


def wait(run, until):
    """run wait until the run is in one of the states `until` (a run that
    pauses answers at once: wait again while it stays RUNNING)."""
    deadline = time.time() + 60
    while time.time() < deadline:
        rc, r = ctl_json("run", "wait", run, "--timeout-ms", "5000", ok=(0, 1, 3))
        if r.get("state") in until:
            return r
        time.sleep(0.1)
    raise StoryError("run %s did not reach %s (last: %s)" % (run, "/".join(until), r.get("state")))


def pending_for(user, run):
    deadline = time.time() + 30
    while time.time() < deadline:
        _, r = ctl_json("approvals", "--as", user)
        mine = [a for a in r.get("approvals", []) if a.get("run") == run]
        if mine:
            return mine[0]
        time.sleep(0.2)
    raise StoryError("no approval request reached %s for run %s" % (user, run))


def node_line(n):
    d = n.get("decision") or {}
    extra = []
    if d.get("result"):
        extra.append("authz: " + d["result"])
    if n.get("approval"):
        extra.append("approval " + n["approval"])
    if n.get("lease"):
        extra.append("lease " + n["lease"])
    return "    %-12s %-6s %-9s %s" % (n.get("node"), n.get("kind"), n.get("outcome") or n.get("state"),
                                    ", ".join(extra))


def story():
    before = len(rows())

    say("== 1. A $5,000 order: below the automatic limit, straight through ==")
    run = start(5000)
    r = wait(run, ("COMPLETED", "REJECTED", "FAILED", "CANCELLED"))
    for n in r.get("nodes", []):
        say(node_line(n))
    if r["state"] != "COMPLETED":
        raise StoryError("the $5,000 run ended %s (%s)" % (r["state"], r.get("reason")))
    if len(rows()) != before + 1:
        raise StoryError("the $5,000 order did not land in the sheet")
    say("  run %s COMPLETED; the order is row %d of sheet %s" % (run, before + 1, SHEET))
    say()

    say("== 2. A $520,000 order: the run pauses at the approval gate ==")
    big = start(520000)
    r = wait(big, ("PAUSED", "COMPLETED", "REJECTED", "FAILED"))
    if r["state"] != "PAUSED":
        raise StoryError("the $520,000 run did not pause (it is %s)" % r["state"])
    say("  run %s PAUSED (%s) at node %s" % (big, r.get("reason"), (r.get("approval") or {}).get("node")))
    for user, title in (("carol", "manager, limit $50,000"), ("victor", "VP Finance, limit $1,000,000")):
        a = pending_for(user, big)
        say("  %s's phone (%s) is asked: \"%s\"" % (user, title, a.get("binding_message")))
        ctl("approve", a["auth_req_id"], "--as", user)
        say("  %s's device signs the decision (Ed25519)" % user)
    r = wait(big, ("COMPLETED", "REJECTED", "FAILED", "CANCELLED"))
    for n in r.get("nodes", []):
        say(node_line(n))
    if r["state"] != "COMPLETED":
        raise StoryError("the $520,000 run ended %s (%s)" % (r["state"], r.get("reason")))
    _, lz = ctl_json("vault", "leases", "--run", big)
    leases = lz.get("leases", [])
    if not leases:
        raise StoryError("the vault shows no lease for run %s" % big)
    for l in leases:
        if int(l.get("ttl", 601)) > 600:
            raise StoryError("lease %s lived %s s, over ten minutes" % (l["lease_id"], l.get("ttl")))
        say("  lease %s: %s %s, ttl %s s, bound to node %s, now %s"
            % (l["lease_id"], l["connection"], " ".join(l["scopes"]), l["ttl"], l["node"], l["state"]))
    now = rows()
    if len(now) != before + 2:
        raise StoryError("the $520,000 order did not land in the sheet once (rows: %d)" % len(now))
    say("  the sheet %s now holds %d rows%s:" % (SHEET, len(now), ", the last two" if len(now) > 2 else ""))
    for row in now[-2:]:
        say("    " + json.dumps(row.get("values", row) if isinstance(row, dict) else row))
    say()

    say("== 3. The run's signed receipt ==")
    deadline = time.time() + 20
    while True:
        rc, out = ctl("receipt", "get", big, ok=(0, 1))
        if rc == 0 and out.strip():
            break
        if time.time() > deadline:
            raise StoryError("no receipt for run %s" % big)
        time.sleep(0.3)
    jws = out.strip()
    where = receipts_dir()
    path = os.path.join(where, "receipt-%s.jws" % big)
    with open(path, "w") as f:
        f.write(jws + "\n")
    say("  %s (%d bytes, compact JWS): %s…" % (path, len(jws), jws[:72]))
    rc, out = ctl("receipt", "verify", path, ok=(0, 3))
    lines = out.strip().splitlines()
    proofs = [l for l in lines if "(RFC 9162 inclusion)" in l]
    for l in lines:
        if l in proofs[1:]:
            continue
        if l in proofs[:1]:
            l = "ok     %d entries of the run: each one's bytes in the signed tree (RFC 9162 inclusion)" % len(proofs)
        say("  " + l)
    if rc != 0:
        raise StoryError("the receipt did not verify")
    # one byte of the payload changed
    head, payload, sig = jws.split(".")
    i = len(payload) // 2
    flipped = payload[:i] + ("A" if payload[i] != "A" else "B") + payload[i + 1:]
    bad = os.path.join(where, "receipt-%s.tampered.jws" % big)
    with open(bad, "w") as f:
        f.write(".".join((head, flipped, sig)) + "\n")
    rc, out = ctl("receipt", "verify", bad, ok=(0, 1, 3))
    say("  one byte changed, then verified again (exit %d):" % rc)
    say("  " + out.strip().splitlines()[-1] if out.strip() else "")
    if rc != 3:
        raise StoryError("a tampered receipt was not refused (exit %d)" % rc)
    say()

    say("== 4. A $2,000,000 order: beyond every approver's limit, rejected ==")
    huge = start(2000000)
    r = wait(huge, ("COMPLETED", "REJECTED", "FAILED", "CANCELLED"))
    if r["state"] != "REJECTED":
        raise StoryError("the $2,000,000 run ended %s, not REJECTED" % r["state"])
    say("  run %s REJECTED: %s" % (huge, r.get("reason")))
    if len(rows()) != before + 2:
        raise StoryError("something reached the sheet for the rejected order")
    say("  nothing reached the sheet (still %d rows)" % (before + 2))


def main():
    try:
        story()
    except (StoryError, subprocess.TimeoutExpired, KeyError, OSError) as e:
        say("DEMO FAILED: %s" % e)
        return 1
    say()
    say("Every step happened as told.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
