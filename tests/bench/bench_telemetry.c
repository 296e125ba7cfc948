/*  bench_telemetry.c — telemetry's event stream under load: a publisher
    in this process ("authz" section: echo {data: {burst: N}} emits N
    echo.seen events, 1,000 per transaction) and sanctum-telemetry's daemon
    (the real binary, its own process), over TCP loopback with CURVE; 100
    SSE clients on /api/events (plain sockets, read as fast as they come)
    and a raw CURVE SUB on the publisher as the baseline.

    Figures (median of the rounds):
      - telemetry_sse_fanout: bus events per second that reached each SSE
        client (events delivered per client over the time from the burst
        request to the last delivery); baseline: the raw SUB's rate for the
        same burst;
      - telemetry_sse_delivered: the share of the burst's events the
        clients got (the rest dropped for clients that fell behind, each
        told by a resync notice): all clients read from this one thread;
      - telemetry_sse_latency_p50 / _p99: µs from an event's ts (set by
        the publisher) to its arrival on an SSE client, one event at a
        time; baseline: the same to the raw SUB;
      - telemetry_rss: sanctum-telemetry's VmRSS after the runs, MiB;
        baseline: once it serves, before the clients and the bursts.

    Output: `bench NAME VALUE UNIT baseline B ratio R` lines. Usage:
    bench_telemetry [--quick]. Exit 0 when it ran, 1 on error.
*/
#include "bus_client.h"
#include "bus_config.h"
#include "bus_error.h"
#include "bus_log.h"
#include "bus_service.h"
#include "bus_store.h"
#include "proto_msg.h"
#include "../support/test_service.h"
#include "../support/bench_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#define S_EVENTS_TXN 1000
#define S_ROUNDS     3
#define S_CLIENTS_MAX 200

typedef struct {
    int clients;
    int events;
    int latency;
} s_plan_t;

static s_plan_t s_plan;

typedef struct {
    int fd;
    int state;                  /* chunked framing: 0 size line, 1 data, 2 CRLF */
    int64_t left;               /* the chunk's size, then its bytes still to come */
    size_t id_at, rs_at;        /* how much of each marker matched so far */
    int64_t count;              /* "id: svc:authz/" seen */
    int64_t resyncs;            /* "event: resync" seen: events were dropped for it */
    char *buf;                  /* client 0: what is read, for the ts of events */
    size_t len, cap;
} s_sse_t;

static s_sse_t s_sse [S_CLIENTS_MAX];

static void
s_handle_burst (bus_service_t *svc, bus_request_t *req, void *arg)
{
    json_t *data = json_object_get (bus_request_body (req), "data");
    json_int_t n = json_integer_value (json_object_get (data, "burst"));
    int rc = 0;
    for (json_int_t done = 0; rc == 0 && done < n; ) {
        bus_txn_t *txn = bus_txn_begin (bus_service_store (svc), true);
        for (int k = 0; txn && k < S_EVENTS_TXN && done < n; k++, done++)
            bus_event_append (svc, txn, "echo.seen",
                              json_pack ("{s:s, s:s, s:I}", "request", "bench", "from", "bench", "i", done), NULL);
        rc = txn ? bus_service_commit (svc, &txn) : BUS_EIO;
    }
    if (rc)
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "burst: %s", bus_strerror (rc));
    else
        bus_reply_ok (req, json_pack ("{s:I}", "emitted", n));
}

static int
s_pub_start (bus_service_t *svc, void **state)
{
    return bus_service_handle (svc, "echo", s_handle_burst, NULL);
}

static const bus_daemon_t s_pub_daemon = { .section = "authz", .start = s_pub_start };

/*  Open an SSE client on port and read its response's headers (it is then
    attached: every later event reaches it). */
static int
s_sse_open (s_sse_t *c, int port)
{
    memset (c, 0, sizeof *c);
    c->fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port) };
    a.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    if (c->fd < 0 || connect (c->fd, (struct sockaddr *) &a, sizeof a))
        return -1;
    char req [256];
    int n = snprintf (req, sizeof req, "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", port);
    if (write (c->fd, req, (size_t) n) != n)
        return -1;
    char head [4096];
    size_t got = 0;
    while (got < sizeof head - 1) {         /* a byte at a time: not a byte of the body */
        if (read (c->fd, head + got, 1) != 1)
            return -1;
        head [++got] = 0;
        if (got >= 4 && memcmp (head + got - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    fcntl (c->fd, F_SETFL, O_NONBLOCK);
    return strncmp (head, "HTTP/1.1 200", 12) == 0 ? 0 : -1;
}

/*  Read what a client has: undo the chunked framing (a chunk may cut an
    event anywhere) and count the events' id lines and resync notices in
    the body; client 0 (keep) also keeps the body, for the events' ts. */
static void
s_sse_feed (s_sse_t *c, const char *buf, ssize_t r, bool keep)
{
    static const char id_mark [] = "id: svc:authz/", resync_mark [] = "event: resync";
    {
        for (ssize_t i = 0; i < r; i++) {
            char ch = buf [i];
            if (c->state == 0) {                /* the chunk's size line */
                if (isxdigit ((unsigned char) ch))
                    c->left = c->left * 16 + (ch <= '9' ? ch - '0' : (ch | 32) - 'a' + 10);
                else if (ch == '\n')
                    c->state = c->left ? 1 : 0;
                continue;
            }
            if (c->state == 2) {                /* the CRLF after a chunk's data */
                if (ch == '\n') {
                    c->state = 0;
                    c->left = 0;
                }
                continue;
            }
            if (--c->left == 0)
                c->state = 2;
            c->id_at = ch == id_mark [c->id_at] ? c->id_at + 1 : ch == id_mark [0];
            if (c->id_at == sizeof id_mark - 1) {
                c->count++;
                c->id_at = 0;
            }
            c->rs_at = ch == resync_mark [c->rs_at] ? c->rs_at + 1 : ch == resync_mark [0];
            if (c->rs_at == sizeof resync_mark - 1) {
                c->resyncs++;
                c->rs_at = 0;
            }
            if (keep) {
                if (c->len + 2 > c->cap) {
                    c->cap = c->cap ? c->cap * 2 : 65536;
                    c->buf = realloc (c->buf, c->cap);
                }
                c->buf [c->len++] = ch;
                c->buf [c->len] = 0;
            }
        }
    }
}

static void
s_sse_read (s_sse_t *c, bool keep)
{
    static char buf [1 << 16];
    ssize_t r;
    while ((r = read (c->fd, buf, sizeof buf)) > 0)
        s_sse_feed (c, buf, r, keep);
}

/*  The "ts" of the last complete event in client 0's buffer, or -1. */
static int64_t
s_last_ts (s_sse_t *c)
{
    char *p = c->buf ? strstr (c->buf, "\"ts\":") : NULL, *last = NULL;
    while (p) {
        last = p;
        p = strstr (p + 5, "\"ts\":");
    }
    return last ? atoll (last + 5) : -1;
}

/*  VmRSS of process pid, MiB. */
static double
s_rss_of (pid_t pid)
{
    char path [64];
    snprintf (path, sizeof path, "/proc/%d/status", (int) pid);
    FILE *f = fopen (path, "r");
    char line [256];
    double kb = 0;
    while (f && fgets (line, sizeof line, f))
        if (strncmp (line, "VmRSS:", 6) == 0)
            kb = atof (line + 6);
    if (f)
        fclose (f);
    return kb / 1024;
}

int
main (int argc, char **argv)
{
    s_plan = (s_plan_t) { 100, 10000, 300 };
    for (int i = 1; i < argc; i++) {
        if (streq (argv [i], "--quick"))
            s_plan = (s_plan_t) { 20, 2000, 30 };
        else {
            fprintf (stderr, "usage: bench_telemetry [--quick]\n");
            return 1;
        }
    }
    bus_log_init ("bench", "error");
    int rc = 1;
    char err [512] = "";
    test_service_t *pub = NULL, *tel = NULL;
    zcert_t *ops = NULL, *sub_cert = NULL;
    bus_client_t *client = NULL;
    zsock_t *sub = NULL;
    zmq_pollitem_t *items = NULL;
    pid_t tel_pid = -1;
    pub = test_service_new ("authz", NULL, "map_size_mb = 512\n", err, sizeof err);
    if (!pub)
        goto done;
    tel = test_service_new ("telemetry", test_service_dir (pub), "map_size_mb = 64\n", err, sizeof err);
    if (!tel)
        goto done;
    /* telemetry follows every service: keys for those not running here */
    static const char *const others [] = { "orchestrator", "ciba-broker", "vault-broker", "auditor", "sandbox", NULL };
    for (const char *const *o = others; *o; o++) {
        char principal [64];
        snprintf (principal, sizeof principal, "svc:%s", *o);
        zcert_t *c = test_service_cert (tel, *o, principal);
        if (!c) {
            snprintf (err, sizeof err, "no key for %s", *o);
            goto done;
        }
        zcert_destroy (&c);
    }
    int port = test_service_free_port ();
    char http [64];
    snprintf (http, sizeof http, "127.0.0.1:%d", port);
    bus_config_t *tc = test_service_config (tel);
    if (bus_config_set (tc, "authz", "rpc", test_service_rpc (pub), err, sizeof err)
        || bus_config_set (tc, "authz", "pub", test_service_pub (pub), err, sizeof err)
        || bus_config_set (tc, "telemetry", "http", http, err, sizeof err)
        || bus_config_set (tc, "telemetry", "sse_buffer_kb", "4096", err, sizeof err)
        || bus_config_set (tc, "telemetry", "static_dir", "/nonexistent", err, sizeof err)
        || bus_config_set (tc, "telemetry", "http_max_per_ip", "256", err, sizeof err)
        || bus_config_set (tc, "sanctum", "log_level", "error", err, sizeof err))
        goto done;
    ops = test_service_cert (pub, "bench", "ops:bench");
    sub_cert = test_service_cert (pub, "benchsub", "svc:auditor");
    if (test_service_start (pub, &s_pub_daemon, "bench", 0, err, sizeof err))
        goto done;
    /* telemetry: the real daemon, its own process (one ZAP handler per
       process: two services cannot share one), its config written here */
    char conf [4300], exe [4096], bin [4200];
    snprintf (conf, sizeof conf, "%s/telemetry.conf", test_service_dir (tel));
    ssize_t xl = readlink ("/proc/self/exe", exe, sizeof exe - 1);
    if (xl <= 0 || bus_config_write_file (tc, conf)) {
        snprintf (err, sizeof err, "cannot write the telemetry config");
        goto done;
    }
    exe [xl] = 0;
    *strrchr (exe, '/') = 0;
    snprintf (bin, sizeof bin, "%s/../bin/sanctum-telemetry", exe);
    tel_pid = fork ();
    if (tel_pid == 0) {
        execl (bin, bin, "--config", conf, (char *) NULL);
        _exit (127);
    }
    double rss1 = 0;
    client = ops ? bus_client_new (test_service_rpc (pub), test_service_server_key (pub), ops, 60000, 0) : NULL;
    sub = zsock_new (ZMQ_SUB);
    if (!client || !sub || !sub_cert) {
        snprintf (err, sizeof err, "cannot make the clients");
        goto done;
    }
    zcert_apply (sub_cert, sub);
    zsock_set_curve_serverkey (sub, test_service_server_key (pub));
    zsock_set_subscribe (sub, "echo.seen");
    zsock_set_rcvhwm (sub, 0);
    zsock_connect (sub, "%s", test_service_pub (pub));
    zclock_sleep (300);
    for (double t = bench_now_s (); bench_now_s () - t < 15; zclock_sleep (100)) {
        s_sse_t probe;
        if (s_sse_open (&probe, port) == 0) {
            close (probe.fd);
            break;
        }
        if (probe.fd > 0)
            close (probe.fd);
    }
    rss1 = s_rss_of (tel_pid);
    for (int i = 0; i < s_plan.clients; i++)
        if (s_sse_open (&s_sse [i], port)) {
            snprintf (err, sizeof err, "SSE client %d could not connect", i);
            goto done;
        }
    items = calloc ((size_t) s_plan.clients + 1, sizeof *items);
    items [0].socket = zsock_resolve (sub);
    items [0].events = ZMQ_POLLIN;
    for (int i = 0; i < s_plan.clients; i++) {
        items [i + 1].fd = s_sse [i].fd;
        items [i + 1].events = ZMQ_POLLIN;
    }
    double fan [S_ROUNDS], base [S_ROUNDS], delivered [S_ROUNDS];
    for (int r = 0; r < S_ROUNDS; r++) {
        int64_t start [S_CLIENTS_MAX], sub_got = 0;
        for (int i = 0; i < s_plan.clients; i++)
            start [i] = s_sse [i].count;
        json_t *body = json_pack ("{s:{s:i}}", "data", "burst", s_plan.events);
        double t0 = bench_now_s (), t_sub = 0, t_all = 0, t_last = 0;
        int64_t last_total = 0;
        if (bus_client_send (client, "echo", body, NULL, NULL)) {
            json_decref (body);
            goto done;
        }
        json_decref (body);
        while (bench_now_s () - t0 < 30 && (!t_sub || !t_all)) {
            zmq_poll (items, s_plan.clients + 1, 100);
            while (zsock_events (sub) & ZMQ_POLLIN) {
                zmsg_t *m = zmsg_recv (sub);
                if (!m)
                    break;
                zmsg_destroy (&m);
                if (++sub_got == s_plan.events)
                    t_sub = bench_now_s ();
            }
            int done_clients = 0;
            int64_t total = 0;
            for (int i = 0; i < s_plan.clients; i++) {
                s_sse_read (&s_sse [i], false);
                done_clients += s_sse [i].count - start [i] >= s_plan.events;
                total += s_sse [i].count - start [i];
            }
            if (total > last_total) {
                last_total = total;
                t_last = bench_now_s ();
            }
            if (!t_all && done_clients == s_plan.clients)
                t_all = bench_now_s ();
            /* clients that fell behind lost events (told by resync): the
               round ends once nothing more arrives for a second */
            if (!t_all && t_sub && t_last && bench_now_s () - t_last > 1.0)
                t_all = t_last;
        }
        delivered [r] = (double) last_total / ((double) s_plan.clients * s_plan.events);
        proto_msg_t *reply = NULL;
        bus_client_recv (client, 60000, &reply);
        proto_msg_destroy (&reply);
        if (!t_sub || !t_all) {
            snprintf (err, sizeof err, "round %d: the burst did not reach %s (SUB %lld, client 0 %lld of %d, %lld resyncs)", r + 1,
                      t_sub ? "every SSE client" : "the SUB", (long long) sub_got,
                      (long long) (s_sse [0].count - start [0]), s_plan.events, (long long) s_sse [0].resyncs);
            goto done;
        }
        fan [r] = delivered [r] * s_plan.events / (t_all - t0);
        base [r] = s_plan.events / (t_sub - t0);
        fprintf (stderr, "# round %d: %d events to %d SSE clients at %.0f/s each, %.1f%% delivered (raw SUB %.0f/s)\n",
                 r + 1, s_plan.events, s_plan.clients, fan [r], 100 * delivered [r], base [r]);
    }
    /* latency, one event at a time: to SSE client 0 and to the SUB */
    double *lat = calloc ((size_t) s_plan.latency, sizeof *lat), *lat_sub = calloc ((size_t) s_plan.latency, sizeof *lat_sub);
    int nl = 0;
    for (int k = 0; k < s_plan.latency; k++) {
        int64_t before = s_sse [0].count;
        s_sse [0].len = 0;
        json_t *body = json_pack ("{s:{s:i}}", "data", "burst", 1);
        bus_client_send (client, "echo", body, NULL, NULL);
        json_decref (body);
        double t0 = bench_now_s ();
        double got_sse = 0, got_sub = 0;
        int64_t ts_sub = -1;
        while (bench_now_s () - t0 < 10 && (!got_sse || !got_sub)) {
            zmq_poll (items, s_plan.clients + 1, 50);
            while (zsock_events (sub) & ZMQ_POLLIN) {
                zmsg_t *m = zmsg_recv (sub);
                zframe_t *f = m ? zmsg_last (m) : NULL;
                proto_msg_t *ev = NULL;
                if (f && proto_msg_decode (&ev, zframe_data (f), zframe_size (f), 1 << 20, NULL, NULL, 0) == 0) {
                    ts_sub = ev->ts;
                    got_sub = (double) proto_now_us ();
                }
                proto_msg_destroy (&ev);
                zmsg_destroy (&m);
            }
            for (int i = 0; i < s_plan.clients; i++)
                s_sse_read (&s_sse [i], i == 0);
            if (!got_sse && s_sse [0].count > before && strstr (s_sse [0].buf ? s_sse [0].buf : "", "\n\n"))
                got_sse = (double) proto_now_us ();
        }
        proto_msg_t *reply = NULL;
        bus_client_recv (client, 10000, &reply);
        proto_msg_destroy (&reply);
        int64_t ts = s_last_ts (&s_sse [0]);
        if (got_sse && got_sub && ts > 0 && ts_sub > 0) {
            lat [nl] = got_sse - (double) ts;
            lat_sub [nl] = got_sub - (double) ts_sub;
            nl++;
        }
    }
    if (nl < s_plan.latency / 2) {
        snprintf (err, sizeof err, "only %d of %d latency samples", nl, s_plan.latency);
        free (lat);
        free (lat_sub);
        goto done;
    }
    double f = bench_median (fan, S_ROUNDS), b = bench_median (base, S_ROUNDS);
    printf ("bench telemetry_sse_fanout_%d %.0f events/s baseline %.0f ratio %.2f\n", s_plan.clients, f, b, f / b);
    double d = bench_median (delivered, S_ROUNDS) * 100;
    printf ("bench telemetry_sse_delivered_%d %.1f pct baseline 100 ratio %.3f\n", s_plan.clients, d, d / 100);
    double p50 = bench_quantile (lat, nl, 0.5), p99 = bench_quantile (lat, nl, 0.99);
    double b50 = bench_quantile (lat_sub, nl, 0.5), b99 = bench_quantile (lat_sub, nl, 0.99);
    printf ("bench telemetry_sse_latency_p50 %.0f us baseline %.0f ratio %.2f\n", p50, b50, p50 / b50);
    printf ("bench telemetry_sse_latency_p99 %.0f us baseline %.0f ratio %.2f\n", p99, b99, p99 / b99);
    double rss2 = s_rss_of (tel_pid);
    printf ("bench telemetry_rss %.1f MiB baseline %.1f ratio %.2f\n", rss2, rss1, rss2 / (rss1 > 0 ? rss1 : 1));
    free (lat);
    free (lat_sub);
    rc = 0;
done:
    if (rc)
        fprintf (stderr, "bench_telemetry: %s\n", err);
    for (int i = 0; i < s_plan.clients; i++) {
        if (s_sse [i].fd > 0)
            close (s_sse [i].fd);
        free (s_sse [i].buf);
    }
    free (items);
    zsock_destroy (&sub);
    bus_client_destroy (&client);
    if (tel_pid > 0) {
        kill (tel_pid, SIGTERM);
        waitpid (tel_pid, NULL, 0);
    }
    test_service_destroy (&tel);
    test_service_destroy (&pub);
    zcert_destroy (&ops);
    zcert_destroy (&sub_cert);
    return rc;
}
