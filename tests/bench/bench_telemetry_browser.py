#!/usr/bin/env python3
"""bench_telemetry_browser — time from an event on the bus to a real
browser's EventSource handler, through sanctum-telemetry's /api/events.

sanctum-authz publishes the events (`echo` from an ops: client: one
`echo.seen` each, its `ts` set by authz as it stores it) and
sanctum-telemetry follows authz and serves them as server-sent events; both
are the real daemons, each its own process, over TCP loopback with CURVE.
Debian's chromium, headless, driven by playwright-core
(tests/browser/driver.mjs), opens a page of telemetry's origin whose
EventSource on /api/events records, in its message handler,
performance.timeOrigin + performance.now() minus the event's `ts`. In the
same run, a raw-socket SSE client (a thread of this process, reading the
same stream) records the same for the same events: the baseline, i.e.
what the browser adds to telemetry's own delivery.

Events are published one at a time, every 50 ms (a modest rate: the
latency of one event, not a burst), 300 of them (60 with --quick).

Output: `bench telemetry_browser_latency_p50 VALUE us baseline B ratio R`
and `_p99`. Exit 0 when it ran; 1 on error, and when chromium or
playwright-core is missing (it says which: `make deps` installs both).

    bench_telemetry_browser.py [--quick]        (BUILD selects the build tree)
"""
import http.client
import json
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402
from cluster import Cluster  # noqa: E402
from test_telemetry_browser import Browser  # noqa: E402

del harness.TESTS[:]                # the browser test's own tests: not run here

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
PLAYWRIGHT = os.path.join(ROOT, "tests", "js", "node_modules", "playwright-core")
INTERVAL_S = 0.05

# The page's EventSource: each echo.seen's latency in µs, by request id.
LISTEN = """new Promise((resolve, reject) => {
  window.__lat = {};
  const es = new EventSource("/api/events");
  es.onmessage = (m) => {
    const now = (performance.timeOrigin + performance.now()) * 1000;
    const env = JSON.parse(m.data);
    if (env.type === "echo.seen") window.__lat[env.body.request] = now - env.ts;
  };
  es.addEventListener("hello", () => resolve(true));
  es.onerror = () => reject(new Error("EventSource error, readyState " + es.readyState));
  setTimeout(() => reject(new Error("no hello from /api/events in 10 s")), 10000);
})"""


class RawSse(threading.Thread):
    """The baseline: /api/events read from a plain socket, the same latency."""

    def __init__(self, hostport):
        super().__init__(daemon=True)
        host, port = hostport.rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=60)
        self.lat = {}
        self.hello = threading.Event()
        self.error = None

    def run(self):
        try:
            self.conn.request("GET", "/api/events", headers={"Accept": "text/event-stream"})
            resp = self.conn.getresponse()
            if resp.status != 200:
                raise RuntimeError("GET /api/events: %d" % resp.status)
            while True:
                line = resp.readline()
                if not line:
                    return
                now = time.time_ns() / 1000
                if line.startswith(b"event: hello"):
                    self.hello.set()
                elif line.startswith(b"data: "):
                    env = json.loads(line[6:])
                    if isinstance(env, dict) and env.get("type") == "echo.seen":
                        self.lat[env["body"]["request"]] = now - env["ts"]
        except Exception as e:          # closed at the end, or a real failure: told by error
            self.error = e
            self.hello.set()


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(p / 100 * len(v)))]


def main():
    quick = "--quick" in sys.argv[1:]
    events = 60 if quick else 300
    missing = [what for what, ok in (("chromium (%s)" % CHROMIUM, os.path.exists(CHROMIUM)),
                                     ("playwright-core (tests/js: npm ci)", os.path.isdir(PLAYWRIGHT)),
                                     ("node", any(os.access(os.path.join(d, "node"), os.X_OK)
                                                  for d in os.environ.get("PATH", "").split(":"))))
               if not ok]
    if missing:
        print("bench_telemetry_browser: cannot run, missing: %s (make deps installs them)" % ", ".join(missing),
              file=sys.stderr)
        return 1
    c = Cluster(services=["authz", "telemetry"])
    browser = raw = None
    try:
        with open(c.conf) as f:
            hostport = f.read().split("[telemetry]", 1)[1].split("http = ", 1)[1].split("\n", 1)[0]
        ops = c.client("authz", key_name="ops", principal="ops:admin", timeout_ms=5000)
        c.start_all()
        browser = Browser()
        # a page of telemetry's origin without the dashboard's own scripts
        page = browser.do(cmd="open", url="http://%s/api/health" % hostport)
        assert page["status"] == 200, page
        browser.do(cmd="eval", expression=LISTEN)
        raw = RawSse(hostport)
        raw.start()
        assert raw.hello.wait(10) and raw.error is None, "raw SSE client: %s" % raw.error

        def publish():
            reply = ops.call("echo", {"data": {"bench": "telemetry_browser"}})
            assert reply and reply["ok"], reply
            return reply["corr"]

        def seen(ids, timeout=10):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                lat = browser.do(cmd="eval", expression="window.__lat")["value"]
                if all(i in lat and i in raw.lat for i in ids):
                    return lat
                time.sleep(0.1)
            raise AssertionError("events not delivered: browser %d, raw %d of %d"
                                 % (sum(i in lat for i in ids), sum(i in raw.lat for i in ids), len(ids)))

        seen([publish()], timeout=15)   # telemetry follows authz: warm up
        ids = []
        for _ in range(events):
            ids.append(publish())
            time.sleep(INTERVAL_S)
        lat = seen(ids)
        b = [lat[i] for i in ids]
        r = [raw.lat[i] for i in ids]
        for p in (50, 99):
            v, base = pct(b, p), pct(r, p)
            print("bench telemetry_browser_latency_p%d %.0f us baseline %.0f ratio %.2f" % (p, v, base, v / base))
        print("# %d events, one every %d ms; browser: chromium headless, an EventSource's onmessage; "
              "baseline: a raw-socket SSE client on the same stream" % (events, INTERVAL_S * 1000))
        return 0
    except (AssertionError, OSError) as e:
        print("bench_telemetry_browser: %s" % e, file=sys.stderr)
        return 1
    finally:
        if browser:
            browser.close()
        if raw:
            raw.conn.close()
        c.close()


if __name__ == "__main__":
    sys.exit(main())
