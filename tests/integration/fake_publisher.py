"""fake_publisher — stand in for a Sanctum publisher (the orchestrator, by
default) in tests: it holds the service's own CURVE keys from the cluster's
keys_dir, binds the service's ROUTER and PUB endpoints from the cluster's
config, and speaks the protocol of a publisher (PROTOCOL.md 6.3, 6.4):
events with pub and seq from 1, kept in an outbox; `events.replay`
answered from it (paged, with first_seq / last_seq / next_seq); `health`
with last_seq. So the auditor (or telemetry) follows it exactly as the
real service, and a test can feed the events the orchestrator's contract
names (run.started, node.*, run.* terminal) without the orchestrator.

    pub = FakePublisher(cluster)                  # svc:orchestrator
    pub.publish("run.started", {"run": RUN, ...})
    pub.trim(5)                                   # forget seqs 1..5 (a loss)
    pub.handle("ciba.status", lambda body: {...}) # answer a request type
    pub.close()

`synthetic_run` publishes the events of one run as the orchestrator's
contract describes them (BRIEF: the orchestrator's contract).
"""
import hashlib
import json
import threading
import time

import msgpack
import zmq

import sanctum_client as sc


class FakePublisher:
    def __init__(self, cluster, service="orchestrator", principal=None, version="0.1.0"):
        self.principal = principal or "svc:" + service
        self.version = version
        self.lock = threading.RLock()       # a handler may publish
        self.handlers = {}                  # request type -> fn(body): body, or ("code", "message")
        self.outbox = []                    # envelopes, seq = index + 1 + trimmed
        self.trimmed = 0                    # seqs 1..trimmed are gone
        self.seq = 0
        self.replays = 0
        public, secret = sc.load_keys(cluster.keys, service)
        rpc, pub = cluster.endpoints[service]
        ctx = zmq.Context.instance()
        self.router = ctx.socket(zmq.ROUTER)
        self.pub = ctx.socket(zmq.PUB)
        for s in (self.router, self.pub):
            s.curve_server = True
            s.curve_publickey = public
            s.curve_secretkey = secret
            s.linger = 0
        self.router.bind(rpc)
        self.pub.bind(pub)
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        self.publish("service.started", {"version": version})

    # --- events ---------------------------------------------------------
    def publish(self, type_, body, ts=None):
        """Append an event to the outbox and publish it; its envelope."""
        with self.lock:
            self.seq += 1
            env = sc.envelope(type_, body, pub=self.principal, seq=self.seq)
            if ts is not None:
                env["ts"] = ts
            self.outbox.append(env)
            self.pub.send_multipart([type_.encode(), msgpack.packb(env, use_bin_type=True)])
        return env

    def trim(self, upto):
        """Forget events 1..upto (as an outbox trimmed past its reader)."""
        with self.lock:
            drop = max(0, upto - self.trimmed)
            self.outbox = self.outbox[drop:]
            self.trimmed += drop

    def last_seq(self):
        return self.seq

    def handle(self, type_, fn):
        """Answer requests of type_ with fn(body): a reply body (dict), or an
        error (code, message). fn runs on the serving thread and may
        publish (and sleep: the next request waits)."""
        self.handlers[type_] = fn

    # --- requests -------------------------------------------------------
    def _reply(self, ident, req, body=None, error=None):
        env = {"v": 1, "type": req.get("type", "?"), "id": sc.ulid(), "ts": int(time.time() * 1e6),
               "corr": req.get("id")}
        if error:
            env.update(ok=False, error={"code": error[0], "message": error[1]})
        else:
            env.update(ok=True, body=body or {})
        self.router.send_multipart([ident, msgpack.packb(env, use_bin_type=True)])

    def _replay(self, body):
        frm = int(body.get("from_seq", 1))
        to = int(body.get("to_seq", self.seq) or self.seq)
        limit = min(int(body.get("limit", 1000) or 1000), 1000)
        first = self.trimmed + 1
        events = [e for e in self.outbox if max(frm, first) <= e["seq"] <= to][:limit]
        out = {"pub": self.principal, "first_seq": first, "last_seq": self.seq, "events": events}
        if events and events[-1]["seq"] < min(to, self.seq):
            out["next_seq"] = events[-1]["seq"] + 1
        return out

    def _serve(self):
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        while not self.stopping:
            if not poller.poll(50):
                continue
            frames = self.router.recv_multipart()
            ident, data = frames[0], frames[-1]
            try:
                req = msgpack.unpackb(data, raw=False)
            except Exception:
                continue
            with self.lock:
                t = req.get("type")
                if t == "events.replay":
                    self.replays += 1
                    self._reply(ident, req, self._replay(req.get("body") or {}))
                elif t == "health":
                    self._reply(ident, req, {"state": "ok", "version": self.version, "service": self.principal,
                                             "last_seq": self.seq, "first_seq": self.trimmed + 1})
                elif t in self.handlers:
                    out = self.handlers[t](req.get("body") or {})
                    if isinstance(out, tuple):
                        self._reply(ident, req, error=out)
                    else:
                        self._reply(ident, req, out)
                else:
                    self._reply(ident, req, error=("not_implemented", "a fake publisher: %s" % t))

    def close(self):
        self.stopping = True
        self.thread.join(2)
        self.router.close(0)
        self.pub.close(0)


def digest(value):
    """sha256:<hex> of the canonical JSON of value (ASCII keys, no floats)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return "sha256:" + hashlib.sha256(text).hexdigest()


def synthetic_run(pub, run, terminal="run.completed", workflow="procurement", nodes=(("draft", "agent"),),
                  extra=None):
    """Publish one run's events as the orchestrator's contract names them:
    run.started, node.started/node.finished per node (extra(node) may add
    members to node.finished), then the terminal event (None: none, the
    run goes on). Returns the list
    of envelopes."""
    out = [pub.publish("run.started", {"run": run, "workflow": workflow,
                                       "workflow_hash": digest({"workflow": workflow}),
                                       "input_digest": digest({"amount": 520000}), "principal": "ext:erp-gateway",
                                       "started_at": int(time.time() * 1e6)})]
    for node, kind in nodes:
        out.append(pub.publish("node.started", {"run": run, "node": node, "kind": kind, "attempt": 1}))
        fin = {"run": run, "node": node, "kind": kind, "attempt": 1, "outcome": "ok",
               "decision": {"result": "allow"}}
        fin.update((extra or (lambda n: {}))(node))
        out.append(pub.publish("node.finished", fin))
    if not terminal:
        return out
    body = {"run": run}
    if terminal == "run.completed":
        body["finished_at"] = int(time.time() * 1e6)
    else:
        body["reason"] = "test"
    out.append(pub.publish(terminal, body))
    return out
