/*  bench_kit.c — the service kit's calls and followers against what they
    stand on, in the same run, over TCP loopback with CURVE.

    (a) Reactor calls (bus_call.h) against bus_client: a bus_service
        "authz" on its own thread answers `stats` with a handler that
        echoes a 200-byte `pad` (as bench_bus does with health). The kit side makes its
        calls from a zloop on the main thread (bus_calls_send, the next
        call sent from the callback); the baseline is bus_client_send /
        bus_client_recv (throughput) and bus_client_call (latency).
        Figures: latency p50/p99 one call at a time, throughput with 64 in
        flight. Targets: throughput >= 0.9x the client's, p50 <= 1.1x.
    (b) Follower (bus_follow.h) against a raw SUB: the same service emits
        a burst of echo.seen events (1,000 per transaction) on request;
        the kit side is a durable follower (its own LMDB store: the
        callback writes a counter in the follower's transaction, with the
        mark), the baseline a bare CURVE SUB that only counts frames.
        Figure: events per second from the request to the last event
        applied (follower) or received (SUB).

    Several interleaved rounds; each figure is the median. Output, one
    line per figure:
        bench NAME VALUE UNIT baseline VALUE ratio R
    then `bench kit_targets met` or `bench kit_targets missed: <which>`.
    Usage: bench_kit [--quick]; BENCH_KIT_ONLY=calls or =client measures
    one side of (a) alone, once (for profiling). Exit 0 when the measurement ran (targets
    met or not; with BENCH_STRICT=1 a missed target exits 2), 1 on error.
*/
#include "bus_call.h"
#include "bus_client.h"
#include "bus_config.h"
#include "bus_error.h"
#include "bus_follow.h"
#include "bus_keys.h"
#include "bus_log.h"
#include "bus_service.h"
#include "bus_store.h"
#include "../support/test_service.h"
#include "../support/bench_util.h"

#include <time.h>

#define S_PAD_LEN       200       /* request body payload, bytes */
#define S_INFLIGHT      64        /* calls in flight for throughput */
#define S_ROUNDS        3
#define S_TIMEOUT_MS    10000
#define S_EVENTS_TXN    1000      /* events per publisher transaction */
#define S_TARGET_TPUT   0.9       /* kit calls' throughput / the client's, at least */
#define S_TARGET_P50    1.1       /* kit calls' p50 / the client's, at most */

typedef struct {
    int warmup;               /* calls before measuring, per round */
    int rtt_count;            /* calls measured one at a time, per round */
    int tput_count;           /* calls in the throughput run, per round */
    int events;               /* events per burst */
} s_plan_t;

static s_plan_t s_plan;




/* --- the service ----------------------------------------------------------- */

/*  stats {pad} -> {pad}: a cheap request without effects (health stays
    the runtime's: the follower side reads last_seq from it). */
static void
s_handle_pad (bus_service_t *svc, bus_request_t *req, void *arg)
{
    json_t *pad = json_object_get (bus_request_body (req), "pad");
    bus_reply_ok (req, pad ? json_pack ("{s:O}", "pad", pad) : NULL);
}

/*  echo {data: {burst: N}}: emit N echo.seen events, S_EVENTS_TXN per
    transaction, then answer. */
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
                              json_pack ("{s:s, s:s, s:I}", "request", "bench", "from", "bench",
                                         "i", done), NULL);
        rc = txn ? bus_service_commit (svc, &txn) : BUS_EIO;
    }
    if (rc)
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "burst: %s", bus_strerror (rc));
    else
        bus_reply_ok (req, json_pack ("{s:I}", "emitted", n));
}

static int
s_service_start (bus_service_t *svc, void **state)
{
    int rc = bus_service_handle (svc, "stats", s_handle_pad, NULL);
    return rc ? rc : bus_service_handle (svc, "echo", s_handle_burst, NULL);
}

static const bus_daemon_t s_daemon = { .section = "authz", .start = s_service_start };

typedef struct {
    test_service_t *env;
    zcert_t *ops;               /* ops:bench: the clients */
    zcert_t *auditor;           /* svc:auditor: the follower */
    bus_client_t *client;
    zloop_t *loop;              /* the calls' */
    zloop_t *follow_loop;       /* the follower's */
    bus_calls_t *calls;
    json_t *body;
    /* the kit call runs */
    int sent, got, limit;
    bool failed;
    double t_sent;
    double t_last;              /* the last callback (the zloop stops a little later) */
    double *samples;
    /* the follower */
    bus_store_t *store;
    int count_db;
    bus_follow_t *follow;
    uint64_t target_mark;
    char store_dir [300];
} s_bench_t;

static s_bench_t s_b;

/* --- (a) calls ----------------------------------------------------------------- */

static void s_kit_send (void);

static void
s_kit_on_reply (bus_calls_t *calls, proto_msg_t *reply, void *arg)
{
    if (!reply->ok || json_string_length (json_object_get (reply->body, "pad")) != S_PAD_LEN)
        s_b.failed = true;
    if (s_b.samples)
        s_b.samples [s_b.got] = (bench_now_s () - s_b.t_sent) * 1e6;
    s_b.got++;
    s_b.t_last = bench_now_s ();
    if (s_b.sent < s_b.limit)
        s_kit_send ();
}

static void
s_kit_send (void)
{
    s_b.t_sent = bench_now_s ();
    if (bus_calls_send (s_b.calls, "stats", json_incref (s_b.body), NULL, s_kit_on_reply, NULL, NULL))
        s_b.failed = true;
    s_b.sent++;
}

static int
s_kit_check (zloop_t *loop, int timer_id, void *arg)
{
    return s_b.got >= s_b.limit || s_b.failed ? -1 : 0;
}

/*  Run the zloop until `limit` calls are answered (one at a time when
    inflight is 1). */
static int
s_kit_run (int limit, int inflight, double *samples)
{
    s_b.sent = s_b.got = 0;
    s_b.limit = limit;
    s_b.samples = samples;
    for (int i = 0; i < inflight && s_b.sent < limit; i++)
        s_kit_send ();
    int t = zloop_timer (s_b.loop, 20, 0, s_kit_check, NULL);
    zloop_start (s_b.loop);
    zloop_timer_end (s_b.loop, t);
    return s_b.failed || s_b.got < limit ? -1 : 0;
}

/*  The kit's figures: p50, p99 (µs) and throughput (calls/s). */
static int
s_kit_measure (double out [3])
{
    double *samples = calloc ((size_t) s_plan.rtt_count, sizeof *samples);
    if (!samples || s_kit_run (s_plan.warmup, 1, NULL) || s_kit_run (s_plan.rtt_count, 1, samples)) {
        free (samples);
        return -1;
    }
    qsort (samples, (size_t) s_plan.rtt_count, sizeof *samples, bench_cmp_double);
    out [0] = samples [s_plan.rtt_count / 2];
    out [1] = samples [(int) ((double) s_plan.rtt_count * 0.99)];
    free (samples);
    double t0 = bench_now_s ();
    if (s_kit_run (s_plan.tput_count, S_INFLIGHT, NULL))
        return -1;
    out [2] = s_plan.tput_count / (s_b.t_last - t0);
    return 0;
}

/*  bus_client's figures: bus_client_call one at a time, then
    bus_client_send / recv with 64 in flight. */
static int
s_client_measure (double out [3])
{
    double *samples = calloc ((size_t) s_plan.rtt_count, sizeof *samples);
    int rc = -1;
    if (!samples)
        return -1;
    for (int i = 0; i < s_plan.warmup + s_plan.rtt_count; i++) {
        proto_msg_t *reply = NULL;
        double t0 = bench_now_s ();
        if (bus_client_call (s_b.client, "stats", s_b.body, NULL, &reply) || !reply->ok) {
            proto_msg_destroy (&reply);
            goto done;
        }
        proto_msg_destroy (&reply);
        if (i >= s_plan.warmup)
            samples [i - s_plan.warmup] = (bench_now_s () - t0) * 1e6;
    }
    qsort (samples, (size_t) s_plan.rtt_count, sizeof *samples, bench_cmp_double);
    out [0] = samples [s_plan.rtt_count / 2];
    out [1] = samples [(int) ((double) s_plan.rtt_count * 0.99)];
    int sent = 0, got = 0;
    double t0 = bench_now_s ();
    for (; sent < S_INFLIGHT; sent++)
        if (bus_client_send (s_b.client, "stats", s_b.body, NULL, NULL))
            goto done;
    while (got < sent) {
        proto_msg_t *reply = NULL;
        if (bus_client_recv (s_b.client, S_TIMEOUT_MS, &reply) || !reply->ok) {
            proto_msg_destroy (&reply);
            goto done;
        }
        proto_msg_destroy (&reply);
        got++;
        if (sent < s_plan.tput_count) {
            if (bus_client_send (s_b.client, "stats", s_b.body, NULL, NULL))
                goto done;
            sent++;
        }
    }
    out [2] = got / (bench_now_s () - t0);
    rc = 0;
done:
    free (samples);
    return rc;
}

/* --- (b) follower ---------------------------------------------------------- */

/*  The durable follower's callback: count, in its transaction. */
static int
s_follow_apply (bus_follow_t *follow, bus_txn_t *txn, proto_msg_t *event, void *arg)
{
    const void *val;
    size_t len;
    uint64_t n = bus_txn_get (txn, s_b.count_db, "n", 1, &val, &len) == 0 ? bus_key_to_u64 (val) : 0;
    uint8_t v [8];
    bus_u64_to_key (n + 1, v);
    return bus_txn_put (txn, s_b.count_db, "n", 1, v, 8);
}

static int
s_follow_check (zloop_t *loop, int timer_id, void *arg)
{
    return bus_follow_mark (s_b.follow, "authz") >= s_b.target_mark ? -1 : 0;
}

static int
s_give_up (zloop_t *loop, int timer_id, void *arg)
{
    return -1;
}

/*  Ask the service for a burst (the reply is not waited for: the SUB side
    must read meanwhile). Returns the publisher's last_seq before it. */
static int64_t
s_burst (void)
{
    proto_msg_t *reply = NULL;
    int64_t last = -1;
    if (bus_client_call (s_b.client, "health", NULL, NULL, &reply) == 0 && reply->ok)
        last = json_integer_value (json_object_get (reply->body, "last_seq"));
    proto_msg_destroy (&reply);
    json_t *body = json_pack ("{s:{s:i}}", "data", "burst", s_plan.events);
    if (last < 0 || bus_client_send (s_b.client, "echo", body, NULL, NULL))
        last = -1;
    json_decref (body);
    return last;
}

/*  The reply to the burst request (it comes once all is emitted). */
static int
s_burst_done (void)
{
    proto_msg_t *reply = NULL;
    int rc = bus_client_recv (s_b.client, 60000, &reply);
    if (rc == 0 && !reply->ok)
        rc = BUS_EREMOTE;
    proto_msg_destroy (&reply);
    return rc;
}

/*  Events per second applied by the durable follower. */
static double
s_follow_measure (void)
{
    /* first catch up with what the raw SUB's burst left (the follower's
       SUB was not read meanwhile) */
    proto_msg_t *reply = NULL;
    if (bus_client_call (s_b.client, "health", NULL, NULL, &reply) || !reply->ok) {
        proto_msg_destroy (&reply);
        return -1;
    }
    s_b.target_mark = (uint64_t) json_integer_value (json_object_get (reply->body, "last_seq"));
    proto_msg_destroy (&reply);
    int t = zloop_timer (s_b.follow_loop, 1, 0, s_follow_check, NULL);
    int g = zloop_timer (s_b.follow_loop, 120000, 1, s_give_up, NULL);
    zloop_start (s_b.follow_loop);
    zloop_timer_end (s_b.follow_loop, t);
    zloop_timer_end (s_b.follow_loop, g);
    double t0 = bench_now_s ();
    int64_t last = s_burst ();
    if (last < 0)
        return -1;
    s_b.target_mark = (uint64_t) last + (uint64_t) s_plan.events;
    t = zloop_timer (s_b.follow_loop, 1, 0, s_follow_check, NULL);
    g = zloop_timer (s_b.follow_loop, 120000, 1, s_give_up, NULL);
    zloop_start (s_b.follow_loop);
    zloop_timer_end (s_b.follow_loop, t);
    zloop_timer_end (s_b.follow_loop, g);
    double took = bench_now_s () - t0;
    if (s_burst_done () || bus_follow_mark (s_b.follow, "authz") < s_b.target_mark)
        return -1;
    return s_plan.events / took;
}

/*  Events per second a bare SUB receives (it only counts frames). */
static double
s_sub_measure (void)
{
    zsock_t *sub = zsock_new (ZMQ_SUB);
    if (!sub)
        return -1;
    zsock_set_rcvhwm (sub, 1000000);
    bus_keys_apply_client (sub, s_b.ops, test_service_server_key (s_b.env));
    zsock_set_subscribe (sub, "");
    zsock_set_rcvtimeo (sub, 5000);
    double rate = -1;
    if (zsock_connect (sub, "%s", test_service_pub (s_b.env)) == 0) {
        zclock_sleep (300);                     /* connected and subscribed */
        double t0 = bench_now_s ();
        int got = 0;
        if (s_burst () >= 0) {
            while (got < s_plan.events) {
                zmsg_t *msg = zmsg_recv (sub);
                if (!msg)
                    break;
                zmsg_destroy (&msg);
                got++;
            }
            double took = bench_now_s () - t0;
            if (s_burst_done () == 0 && got == s_plan.events)
                rate = got / took;
        }
    }
    zsock_destroy (&sub);
    return rate;
}

/* --- main ---------------------------------------------------------------------- */

static int
s_start (void)
{
    char err [256] = "", pad [S_PAD_LEN + 1];
    s_b.env = test_service_new ("authz", NULL, "map_size_mb = 2048\n", err, sizeof err);
    if (!s_b.env)
        goto fail;
    s_b.ops = test_service_cert (s_b.env, "bench", "ops:bench");
    s_b.auditor = test_service_cert (s_b.env, "auditor", "svc:auditor");
    if (!s_b.ops || !s_b.auditor) {
        snprintf (err, sizeof err, "cannot make the keys");
        goto fail;
    }
    if (test_service_start (s_b.env, &s_daemon, "bench", 0, err, sizeof err))
        goto fail;
    memset (pad, 'x', S_PAD_LEN);
    pad [S_PAD_LEN] = 0;
    s_b.body = json_pack ("{s:s}", "pad", pad);
    s_b.client = bus_client_new (test_service_rpc (s_b.env), test_service_server_key (s_b.env), s_b.ops,
                                 S_TIMEOUT_MS, 0);
    s_b.loop = zloop_new ();
    s_b.calls = s_b.loop ? bus_calls_new (s_b.loop, "authz", test_service_rpc (s_b.env),
                                          test_service_server_key (s_b.env), s_b.ops, S_TIMEOUT_MS, 0, NULL)
                         : NULL;
    if (!s_b.client || !s_b.calls) {
        snprintf (err, sizeof err, "cannot make the clients");
        goto fail;
    }
    static const char *const dbs [] = { BUS_FOLLOW_DB, "count", NULL };
    snprintf (s_b.store_dir, sizeof s_b.store_dir, "%s/follower", test_service_dir (s_b.env));
    if (bus_store_open (&s_b.store, s_b.store_dir, 2048UL << 20, dbs)) {
        snprintf (err, sizeof err, "cannot open the follower's store");
        goto fail;
    }
    s_b.count_db = bus_store_db (s_b.store, "count");
    bus_follow_opts_t opts = { .name = "bench", .fn = s_follow_apply, .store = s_b.store };
    s_b.follow_loop = zloop_new ();
    s_b.follow = s_b.follow_loop ? bus_follow_new (s_b.follow_loop, s_b.auditor, &opts) : NULL;
    if (!s_b.follow || bus_follow_add (s_b.follow, "authz", "svc:authz", test_service_pub (s_b.env),
                                       test_service_rpc (s_b.env), test_service_server_key (s_b.env),
                                       S_TIMEOUT_MS, 1)) {
        snprintf (err, sizeof err, "cannot make the follower");
        goto fail;
    }
    return 0;
fail:
    fprintf (stderr, "bench_kit: setup: %s\n", err);
    return -1;
}

static void
s_stop (void)
{
    bus_follow_destroy (&s_b.follow);
    bus_calls_destroy (&s_b.calls);
    zloop_destroy (&s_b.loop);
    zloop_destroy (&s_b.follow_loop);
    bus_store_destroy (&s_b.store);
    bus_client_destroy (&s_b.client);
    test_service_destroy (&s_b.env);
    zcert_destroy (&s_b.ops);
    zcert_destroy (&s_b.auditor);
    json_decref (s_b.body);
}

int
main (int argc, char **argv)
{
    s_plan = (s_plan_t) { 2000, 10000, 100000, 50000 };
    for (int i = 1; i < argc; i++) {
        if (streq (argv [i], "--quick"))
            s_plan = (s_plan_t) { 200, 1000, 5000, 5000 };
        else {
            fprintf (stderr, "usage: bench_kit [--quick]\n");
            return 1;
        }
    }
    bus_log_init ("bench", "warn");
    int rc = 1;
    if (s_start ())
        goto done;
    double call [2][3][S_ROUNDS], follow [2][S_ROUNDS];   /* kit, baseline */
    const char *only = getenv ("BENCH_KIT_ONLY");          /* "calls" or "client": profiling */
    if (only) {
        double f [3];
        rc = streq (only, "calls") ? s_kit_measure (f) : s_client_measure (f);
        printf ("%s: p50 %.1f us p99 %.1f us %.0f calls/s\n", only, f [0], f [1], f [2]);
        goto done;
    }
    for (int r = 0; r < S_ROUNDS; r++) {
        for (int k = 0; k < 2; k++) {
            int s = (r + k) % 2;                        /* alternate who goes first */
            double f [3];
            if (s == 0 ? s_kit_measure (f) : s_client_measure (f)) {
                fprintf (stderr, "bench_kit: %s: a call failed\n", s == 0 ? "calls" : "client");
                goto done;
            }
            for (int m = 0; m < 3; m++)
                call [s][m][r] = f [m];
            fprintf (stderr, "# round %d %s: p50 %.1f us p99 %.1f us %.0f calls/s\n", r + 1,
                     s == 0 ? "bus_calls" : "bus_client", f [0], f [1], f [2]);
        }
        for (int k = 0; k < 2; k++) {
            int s = (r + k) % 2;
            double rate = s == 0 ? s_follow_measure () : s_sub_measure ();
            if (rate <= 0) {
                fprintf (stderr, "bench_kit: %s: the burst did not arrive\n", s == 0 ? "follower" : "raw SUB");
                goto done;
            }
            follow [s][r] = rate;
            fprintf (stderr, "# round %d %s: %.0f events/s\n", r + 1, s == 0 ? "durable follower" : "raw SUB", rate);
        }
    }
    double med [2][3], fmed [2];
    for (int s = 0; s < 2; s++) {
        for (int m = 0; m < 3; m++)
            med [s][m] = bench_median (call [s][m], S_ROUNDS);
        fmed [s] = bench_median (follow [s], S_ROUNDS);
    }
    printf ("bench kit_call_p50 %.1f us baseline %.1f ratio %.2f\n", med [0][0], med [1][0], med [0][0] / med [1][0]);
    printf ("bench kit_call_p99 %.1f us baseline %.1f ratio %.2f\n", med [0][1], med [1][1], med [0][1] / med [1][1]);
    printf ("bench kit_call_throughput_%d %.0f calls/s baseline %.0f ratio %.2f\n", S_INFLIGHT,
            med [0][2], med [1][2], med [0][2] / med [1][2]);
    printf ("bench kit_follow_durable %.0f events/s baseline %.0f ratio %.2f\n", fmed [0], fmed [1],
            fmed [0] / fmed [1]);
    char missed [160] = "";
    if (med [0][2] < S_TARGET_TPUT * med [1][2])
        strcat (missed, " call_throughput");
    if (med [0][0] > S_TARGET_P50 * med [1][0])
        strcat (missed, " call_p50");
    if (*missed)
        printf ("bench kit_targets missed:%s\n", missed);
    else
        printf ("bench kit_targets met\n");
    const char *strict = getenv ("BENCH_STRICT");
    rc = *missed && strict && streq (strict, "1") ? 2 : 0;
done:
    fflush (stdout);
    s_stop ();
    return rc;
}
