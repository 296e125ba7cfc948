"""sanctum_client — a Sanctum bus client in Python (pyzmq + msgpack).

Proof that another service in another language can talk to Sanctum: it
speaks the wire protocol of proto/PROTOCOL.md directly — a DEALER with CURVE
(its own zcert-compatible key, which must be in the allow-list), one
MessagePack envelope per frame, a ULID request id, replies matched by corr.

    client = SanctumClient("tcp://127.0.0.1:7111", server_public, my_public, my_secret)
    reply = client.call("echo", {"data": "hi"})     # -> envelope dict
"""
import os
import secrets
import time

import msgpack
import zmq
import zmq.auth

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid():
    """A ULID: 48-bit ms timestamp + 80 random bits, Crockford base32."""
    value = (int(time.time() * 1000) << 80) | secrets.randbits(80)
    return "".join(CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def traceparent():
    return "00-%s-%s-01" % (secrets.token_hex(16), secrets.token_hex(8))


def envelope(type_, body, **extra):
    env = {"v": 1, "type": type_, "id": ulid(), "ts": int(time.time() * 1e6),
           "traceparent": traceparent(), "body": body}
    env.update(extra)
    return env


def load_keys(keys_dir, name):
    """(public, secret) of <keys_dir>/<name>.key_secret, as pyzmq reads zcert files."""
    return zmq.auth.load_certificate(os.path.join(keys_dir, name + ".key_secret"))


def server_key(keys_dir, service):
    public, _ = zmq.auth.load_certificate(os.path.join(keys_dir, service + ".key"))
    return public


class SanctumClient:
    def __init__(self, endpoint, server_public, public, secret, timeout_ms=2000, rcvhwm=None, rcvbuf=None,
                 routing_id=None):
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        if routing_id is not None:      # the id the server's ROUTER routes replies by (1-255 bytes)
            self.sock.routing_id = routing_id
        if rcvhwm is not None:          # tests: a client that barely reads
            self.sock.rcvhwm = rcvhwm
        if rcvbuf is not None:
            self.sock.rcvbuf = rcvbuf
        self.sock.curve_publickey = public
        self.sock.curve_secretkey = secret
        self.sock.curve_serverkey = server_public
        self.sock.linger = 0
        self.sock.connect(endpoint)
        self.timeout_ms = timeout_ms

    def send_raw(self, frame):
        self.sock.send(frame)

    @staticmethod
    def frame(type_, body=None, request_id=None):
        """(id, encoded request frame): a request to send, and to send again
        unchanged as its retry (PROTOCOL.md 6.2), with send_raw / call_raw."""
        env = envelope(type_, body or {})
        if request_id:
            env["id"] = request_id
        return env["id"], msgpack.packb(env, use_bin_type=True)

    def call_raw(self, frame, request_id, timeout_ms=None):
        """Send an encoded request (a retry: the same frame again) and
        return the reply whose corr is request_id, or None on timeout."""
        self.sock.send(frame)
        deadline = time.monotonic() + (timeout_ms or self.timeout_ms) / 1000
        while time.monotonic() < deadline:
            reply = self.recv(int((deadline - time.monotonic()) * 1000) + 1)
            if reply is None:
                return None
            if reply.get("corr") == request_id:
                return reply
        return None

    def recv(self, timeout_ms=None):
        """The next reply envelope, or None on timeout."""
        if not self.sock.poll(self.timeout_ms if timeout_ms is None else timeout_ms):
            return None
        return msgpack.unpackb(self.sock.recv(), raw=False)

    def call(self, type_, body=None, timeout_ms=None):
        env = envelope(type_, body or {})
        self.sock.send(msgpack.packb(env, use_bin_type=True))
        deadline = time.monotonic() + (timeout_ms or self.timeout_ms) / 1000
        while time.monotonic() < deadline:
            reply = self.recv(int((deadline - time.monotonic()) * 1000) + 1)
            if reply is None:
                return None
            if reply.get("corr") == env["id"]:
                return reply
        return None

    def close(self):
        self.sock.close(0)


class SanctumSubscriber:
    def __init__(self, endpoint, server_public, public, secret, topics=("",)):
        self.sock = zmq.Context.instance().socket(zmq.SUB)
        self.sock.curve_publickey = public
        self.sock.curve_secretkey = secret
        self.sock.curve_serverkey = server_public
        self.sock.linger = 0
        for t in topics:
            self.sock.setsockopt_string(zmq.SUBSCRIBE, t)
        self.sock.connect(endpoint)

    def recv(self, timeout_ms=2000):
        if not self.sock.poll(timeout_ms):
            return None
        topic, frame = self.sock.recv_multipart()
        env = msgpack.unpackb(frame, raw=False)
        assert env["type"] == topic.decode()
        return env

    def close(self):
        self.sock.close(0)
