#!/usr/bin/env python3
"""Integration: one request cannot hold sanctum-authz for seconds (issue 16,
item 4). A real daemon, a Python client sending real frames: the expensive
requests the issue found (a Check with 100 conditional contextual tuples
over xs.all(x, xs.all(y, x + y < n)), a BatchCheck of 10 of them, a regular
expression from the context) each answer too_complex or finish within the
request's budget, and `health` from another client keeps answering fast
meanwhile."""
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from cluster import Cluster  # noqa: E402
from harness import run, test  # noqa: E402

MODEL = """model
  schema 1.1
type user
type folder
  relations
    define viewer: [user]
type doc
  relations
    define parent: [folder with heavy]
    define viewer: viewer from parent
    define matcher: [user with pattern]
condition heavy(xs: list<int>, n: int) {
  xs.all(x, xs.all(y, x + y < n))
}
condition pattern(s: string, p: string) {
  s.matches(p)
}
"""


def heavy_check(length, tuples=100, user="user:anne"):
    """A Check of doc:1 viewer whose contextual tuples each evaluate the
    nested comprehension over a list of `length` (all true: every step)."""
    ct = [{"object": "doc:1", "relation": "parent", "user": "folder:%d" % i, "condition": {"name": "heavy"}}
          for i in range(tuples)]
    return {"tuple_key": {"object": "doc:1", "relation": "viewer", "user": user},
            "contextual_tuples": ct, "context": {"xs": list(range(length)), "n": 10 ** 9}}


class HealthProbe:
    """Round trips of `health` from a client of its own, back to back (a
    few ms apart), on a thread, until stopped."""

    def __init__(self, c):
        self.client = c.client("authz", key_name="pyprobe", principal="ext:probe", timeout_ms=5000)
        self.times, self.lost = [], 0
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def loop(self):
        while not self.stop_flag.is_set():
            t = time.monotonic()
            r = self.client.call("health")
            if r is None or "error" in r:
                self.lost += 1
            else:
                self.times.append(time.monotonic() - t)
            time.sleep(0.003)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        self.thread.join(10)
        self.client.close()


def fga(reply):
    return reply.get("error", {}).get("fga_code")


class AuthzConfig:
    """sanctum-authz restarted with lines added to its [authz] section,
    and restarted as it was afterwards."""

    def __init__(self, c, lines):
        self.c, self.lines = c, lines

    def restart(self, conf):
        self.c.stop("authz")
        with open(self.c.conf, "w") as f:
            f.write(conf)
        self.c.start("authz")
        self.c.wait_healthy(["authz"])

    def __enter__(self):
        with open(self.c.conf) as f:
            self.saved = f.read()
        self.restart(self.saved.replace("[authz]\n", "[authz]\n" + self.lines, 1))

    def __exit__(self, *exc):
        self.restart(self.saved)


def assert_health(probe, hold):
    """The timing the issue asks for: health under 10 ms while heavy
    requests run. This VM has 2 cores shared by several sessions' builds
    and tests, so any single round trip can wait for a CPU whatever the
    service does (round trips of 50-200 ms were seen here with no heavy
    request running at all). So: the typical round trip (the median) under
    10 ms, nine in ten under 50 ms, and none anywhere near `hold`, the
    time a heavy request would hold the reactor if it ran there."""
    times = sorted(probe.times)
    assert probe.lost == 0 and len(times) >= 20, (probe.lost, len(times))
    median, p90, worst = statistics.median(times), times[int(len(times) * 0.9)], times[-1]
    print("# health round trips: %d, median %.1f ms, 90%% %.1f ms, worst %.1f ms"
          % (len(times), median * 1e3, p90 * 1e3, worst * 1e3))
    assert median < 0.010, median
    assert p90 < 0.050, p90
    assert worst < hold, worst


@test
def heavy_requests_refused_and_health_stays_fast(c):
    cl = c.client("authz", key_name="pyheavy", principal="ext:heavy", timeout_ms=20000)
    answers = {}
    try:
        with HealthProbe(c) as probe:
            time.sleep(0.2)                 # a few round trips at rest first
            # The Check: 100 tuples x ~700,000 units, 0.78 s before
            answers["check100"] = cl.call("authz.check", heavy_check(300))
            # A BatchCheck of 10 of them: 8 s before
            answers["batch10"] = cl.call("authz.batch_check", {"checks": [
                dict(heavy_check(300), correlation_id="c%d" % i) for i in range(10)]})
            # A regular expression from the context, quadratic on this subject
            answers["regex"] = cl.call("authz.check", {
                "tuple_key": {"object": "doc:1", "relation": "matcher", "user": "user:anne"},
                "contextual_tuples": [{"object": "doc:1", "relation": "matcher", "user": "user:anne",
                                       "condition": {"name": "pattern"}}],
                "context": {"s": "a" * 4096, "p": "(a|aa)*c"}})
            # Two tuples over a list of 200: more than the reactor's share,
            # within the request's budget: moved to a query thread, answered
            answers["moved"] = cl.call("authz.check", heavy_check(200, tuples=2))
            # The same shape with small lists: within budget, answered
            answers["batch_small"] = cl.call("authz.batch_check", {"checks": [
                dict(heavy_check(20), correlation_id="c%d" % i) for i in range(10)]})
            time.sleep(0.1)
    finally:
        cl.close()
    for name in ("check100", "batch10", "regex"):
        r = answers[name]
        assert r is not None, (name, "no answer")
        assert r.get("error", {}).get("code") == "too_complex" and fga(r) == 2002, (name, r)
    r = answers["moved"]
    assert r is not None and r.get("body") == {"allowed": False}, r
    r = answers["batch_small"]
    assert r is not None and "error" not in r, r
    assert sorted(r["body"]["result"]) == ["c%d" % i for i in range(10)], r
    assert all(v == {"allowed": False} for v in r["body"]["result"].values()), r
    # Before the budget and the offload a round trip waited for a whole
    # heavy request (0.78 s, 8 s); within the budget one would still hold
    # the reactor for 0.1-0.7 s here
    assert_health(probe, 0.5)


@test
def long_requests_leave_the_reactor(c):
    """With a budget large enough for the heavy requests to run for
    seconds, they hold a query thread, never the reactor: health stays
    fast (without the offload, a round trip waits 1-7 s)."""
    with AuthzConfig(c, "request_cost = 200000000\n"):
        cl = c.client("authz", key_name="pyheavy", principal="ext:heavy", timeout_ms=60000)
        try:
            with HealthProbe(c) as probe:
                time.sleep(0.2)
                t = time.monotonic()
                r = cl.call("authz.check", heavy_check(300))
                assert r is not None and r.get("body") == {"allowed": False}, r
                r = cl.call("authz.batch_check", {"checks": [
                    dict(heavy_check(300), correlation_id="c%d" % i) for i in range(10)]})
                assert r is not None and fga(r) == 2002, r
                took = time.monotonic() - t
                time.sleep(0.1)
        finally:
            cl.close()
        print("# heavy requests on a query thread: %.1f s" % took)
        assert took > 1.0, took     # they did run for seconds
        assert_health(probe, 0.5)


@test
def budget_from_config(c):
    """The [authz] keys set the budget: with request_cost low, a Check that
    fits the default is refused."""
    cl = c.client("authz", key_name="pyheavy", principal="ext:heavy")
    try:
        r = cl.call("authz.check", heavy_check(20, tuples=10))
        assert r is not None and r.get("body") == {"allowed": False}, r
    finally:
        cl.close()
    with AuthzConfig(c, "request_cost = 5000\n"):
        cl = c.client("authz", key_name="pyheavy", principal="ext:heavy")
        try:
            r = cl.call("authz.check", heavy_check(20, tuples=10))
            assert r is not None and fga(r) == 2002 and "budget" in r["error"]["message"], r
        finally:
            cl.close()


def setup():
    c = Cluster(services=["authz"])
    c.start_all()
    ops = c.client("authz", key_name="pyops", principal="ops:tester")
    try:
        r = ops.call("authz.model.write", {"model": MODEL})
        assert r is not None and "error" not in r, r
    finally:
        ops.close()
    return c


if __name__ == "__main__":
    sys.exit(run(setup, lambda c: c.close()))
