#!/usr/bin/env python3
"""inject.py — another service, in Python, starts a Sanctum run, follows it
to the end and fetches its receipt.

Written from proto/PROTOCOL.md alone (section numbers below are its own),
with Debian's python3-zmq and python3-msgpack:

  1. keys (3.2): our own CURVE keypair, a zcert file pair made by
     `sanctumctl keygen NAME --principal ext:NAME`, which also puts the
     public key in the allow-list; the services' public keys beside it;
  2. subscribe first (6.4): a SUB on the orchestrator's PUB, every topic
     (seq counts every type, so a filtered stream would look like a gap);
  3. `health` on the orchestrator: its last_seq is where our events start;
  4. `run.start` (10.2) on the orchestrator's ROUTER, from a DEALER;
  5. follow: each event of our run is printed in seq order; an event past
     the next seq, or a quiet second (events lost at the tail), is filled
     in with `events.replay` (6.4); the run's terminal event ends it;
  6. `audit.receipt` (10.6) on the auditor: the receipt's JWS.

    inject.py [--keys DIR] [--name NAME] [--workflow W] [--amount N]
              [--vendor V] [--cost-center C] [--late SECONDS] [--timeout SECONDS]

Endpoints: SANCTUM_ORCHESTRATOR_RPC, SANCTUM_ORCHESTRATOR_PUB and
SANCTUM_AUDITOR_RPC (the variables `sanctumctl up` reads), else the
defaults tcp://127.0.0.1:7101, :7102 and :7141. --late starts the run,
waits, and only then subscribes: every event comes from events.replay.

Output, one fact per line (inject.mjs prints the same):
    started RUN workflow=W hash=H
    event SEQ TYPE [NODE]             each event of the run, in seq order
    step NODE KIND attempt=A outcome=O [decision=D] [status=S]
    end RUN STATE
    followed live=N replayed=M        how the events arrived
    receipt RUN STATE entries=N size=S
    jws JWS
Exit: 0 the run ended and its receipt was fetched; 1 an error (said on
stderr); 3 our key was refused (not in the allow-list).
"""
import argparse
import os
import secrets
import sys
import time

try:
    import msgpack
    import zmq
    import zmq.auth
    from zmq.utils.monitor import recv_monitor_message
except ImportError as e:        # a python3 other than Debian's, or the packages missing
    sys.exit("inject.py: %s: it needs Debian's python3-zmq and python3-msgpack (apt-get install python3-zmq "
             "python3-msgpack) and Debian's /usr/bin/python3 to run it (this is %s)" % (e, sys.executable))

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
TERMINAL = ("run.completed", "run.failed", "run.rejected", "run.cancelled")


class Refused(Exception):
    """The service refused our key at the CURVE handshake (3.2)."""


class Failed(Exception):
    """An error reply, or no reply at all."""


def ulid():
    """A request id (5): 48-bit ms time and 80 random bits, Crockford base32."""
    value = (int(time.time() * 1000) << 80) | secrets.randbits(80)
    return "".join(CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def request(type_, body):
    """A request envelope (5); we never send `from`."""
    return {"v": 1, "type": type_, "id": ulid(), "ts": time.time_ns() // 1000,
            "traceparent": "00-%s-%s-01" % (secrets.token_hex(16), secrets.token_hex(8)), "body": body}


def curve(sock, keys):
    public, secret, server = keys
    sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = public, secret, server
    sock.linger = 0


class Service:
    """A DEALER to one service's ROUTER (4, 6.1), retried as in 6.2."""

    def __init__(self, name, endpoint, keys, timeout_ms=2500, retries=3):
        self.name, self.endpoint, self.keys = name, endpoint, keys
        self.timeout_ms, self.retries = timeout_ms, retries
        self.sock = self.monitor = None
        self._open()

    def _open(self):
        self.close()
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        curve(self.sock, self.keys)
        # the handshake's outcome: a refused key is told at once (3.2)
        self.monitor = self.sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH)
        self.sock.connect(self.endpoint)

    def call(self, type_, body):
        """The reply's body; Failed(code, message) on an error reply."""
        env = request(type_, body)
        frame = msgpack.packb(env, use_bin_type=True)
        for attempt in range(1 + self.retries):
            if attempt:
                self._open()            # a new socket, the same frame (6.2)
            deadline = time.monotonic() + self.timeout_ms / 1000
            sent = False                # a refused key leaves no peer to send to: wait to be writable
            while time.monotonic() < deadline:
                poller = zmq.Poller()
                poller.register(self.sock, zmq.POLLIN if sent else zmq.POLLOUT)
                poller.register(self.monitor, zmq.POLLIN)
                ready = dict(poller.poll(max(1, int((deadline - time.monotonic()) * 1000))))
                if self.monitor in ready and recv_monitor_message(self.monitor)["event"] \
                        == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                    raise Refused("%s refused our key %s: it is not in the allow-list"
                                  % (self.name, self.keys[0].decode()))
                if self.sock not in ready:
                    continue
                if not sent:
                    self.sock.send(frame, zmq.NOBLOCK)
                    sent = True
                    continue
                reply = msgpack.unpackb(self.sock.recv(), raw=False)
                if reply.get("corr") != env["id"]:
                    continue            # a late answer to an earlier request
                if not reply["ok"]:
                    raise Failed(reply["error"]["code"], reply["error"]["message"])
                return reply["body"]
        raise Failed("timeout", "%s: no reply to %s after %d attempts" % (self.name, type_, 1 + self.retries))

    def close(self):
        if self.sock is not None:
            self.sock.disable_monitor()
            self.monitor.close(0)
            self.sock.close(0)


class Follower:
    """The orchestrator's events in seq order, gaps filled by replay (6.4)."""

    def __init__(self, orch, pub_endpoint, keys, last_seq):
        self.orch, self.pub_endpoint, self.keys = orch, pub_endpoint, keys
        self.last = last_seq            # L: every event up to it is seen
        self.sub = None
        self.live = self.replayed = 0

    def subscribe(self):
        self.sub = zmq.Context.instance().socket(zmq.SUB)
        curve(self.sub, self.keys)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.connect(self.pub_endpoint)

    def replay(self, to_seq=None):
        """Events L+1 … to_seq (all there are when None), page by page."""
        out = []
        body = {"from_seq": self.last + 1}
        while True:
            if to_seq is not None:
                body["to_seq"] = to_seq
            page = self.orch.call("events.replay", body)
            if page["first_seq"] > body["from_seq"]:
                print("lost events %d-%d: trimmed from the outbox" % (body["from_seq"], page["first_seq"] - 1),
                      file=sys.stderr)
                self.last = max(self.last, page["first_seq"] - 1)     # said; go on after them
            out += page["events"]
            if "next_seq" not in page:
                return out
            body = {"from_seq": page["next_seq"]}

    def events(self, deadline, quiet_ms=1000):
        """Yield each event once, in seq order, until the caller stops or
        the deadline (time.monotonic()) passes: Failed("timeout")."""
        while time.monotonic() < deadline:
            got = []
            if self.sub is not None and self.sub.poll(quiet_ms):
                parts = self.sub.recv_multipart()
                env = msgpack.unpackb(parts[-1], raw=False)
                if len(parts) != 2 or not isinstance(env, dict) or env.get("type") != parts[0].decode() \
                        or env.get("pub") != "svc:orchestrator" or not isinstance(env.get("seq"), int):
                    continue            # not an event of the orchestrator (4, 11.4)
                if env["seq"] <= self.last:
                    continue            # replayed already
                if env["seq"] > self.last + 1:
                    got = self.replay(env["seq"] - 1)    # a gap
                    self.replayed += len(got)
                got.append(env)
                self.live += 1
            else:
                got = self.replay()     # quiet: anything lost at the tail?
                self.replayed += len(got)
            for env in got:
                if env["seq"] == self.last + 1:
                    self.last = env["seq"]
                    yield env
        raise Failed("timeout", "the run did not end in time (--timeout)")

    def close(self):
        if self.sub is not None:
            self.sub.close(0)


def step_line(body):
    line = "step %s %s attempt=%s outcome=%s" % (body["node"], body["kind"], body["attempt"], body["outcome"])
    if isinstance(body.get("decision"), dict):
        line += " decision=%s" % body["decision"].get("result")
    if body.get("status") is not None:
        line += " status=%s" % body["status"]
    return line


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", default="./var/keys", help="keys directory (default ./var/keys)")
    ap.add_argument("--name", default="erp-gateway", help="our key's name in it (default erp-gateway)")
    ap.add_argument("--workflow", default="procurement")
    ap.add_argument("--amount", type=int, default=5000)
    ap.add_argument("--vendor", default="Acme")
    ap.add_argument("--cost-center", default="engineering")
    ap.add_argument("--late", type=float, default=0, help="subscribe only SECONDS after the start")
    ap.add_argument("--timeout", type=float, default=60, help="give up after SECONDS (default 60)")
    args = ap.parse_args()
    def env(name, default):
        return os.environ.get(name) or default
    try:
        public, secret = zmq.auth.load_certificate(os.path.join(args.keys, args.name + ".key_secret"))

        def keys(service):
            return public, secret, zmq.auth.load_certificate(os.path.join(args.keys, service + ".key"))[0]
    except (OSError, ValueError) as e:
        print("inject: cannot read the keys: %s (make them with `sanctumctl keygen %s --principal ext:%s`)"
              % (e, args.name, args.name), file=sys.stderr)
        return 1
    orch = Service("orchestrator", env("SANCTUM_ORCHESTRATOR_RPC", "tcp://127.0.0.1:7101"), keys("orchestrator"))
    auditor = Service("auditor", env("SANCTUM_AUDITOR_RPC", "tcp://127.0.0.1:7141"), keys("auditor"))
    follower = None
    deadline = time.monotonic() + args.timeout
    try:
        follower = Follower(orch, env("SANCTUM_ORCHESTRATOR_PUB", "tcp://127.0.0.1:7102"), keys("orchestrator"),
                            orch.call("health", {})["last_seq"])
        if not args.late:
            follower.subscribe()
        started = orch.call("run.start", {"workflow": args.workflow, "input": {
            "vendor": args.vendor, "amount": args.amount, "cost_center": args.cost_center}})
        run = started["run"]
        print("started %s workflow=%s hash=%s" % (run, started["workflow"], started["workflow_hash"]), flush=True)
        if args.late:
            time.sleep(args.late)
            follower.subscribe()
        state = None
        for evt in follower.events(deadline):
            body = evt.get("body") or {}
            if body.get("run") != run:
                continue
            print("event %d %s%s" % (evt["seq"], evt["type"], " " + body["node"] if "node" in body else ""))
            if evt["type"] == "node.finished":
                print(step_line(body))
            if evt["type"] in TERMINAL:
                state = evt["type"].split(".")[1].upper()
                break
        print("end %s %s" % (run, state))
        print("followed live=%d replayed=%d" % (follower.live, follower.replayed), flush=True)
        # the auditor stores the terminal event a moment later: until then
        # the receipt is `conflict` (not ended) or `not_found` (10.6)
        while True:
            try:
                receipt = auditor.call("audit.receipt", {"run": run})
                break
            except Failed as e:
                if e.args[0] not in ("conflict", "not_found") or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        print("receipt %s %s entries=%d size=%d" % (run, receipt["state"], receipt["entries"], receipt["size"]))
        print("jws %s" % receipt["jws"])
        return 0
    except Refused as e:
        print("inject: %s (add it: sanctumctl keygen %s --principal ext:%s)" % (e, args.name, args.name),
              file=sys.stderr)
        return 3
    except Failed as e:
        print("inject: %s: %s" % e.args, file=sys.stderr)
        return 1
    finally:
        if follower:
            follower.close()
        orch.close()
        auditor.close()


if __name__ == "__main__":
    sys.exit(main())
