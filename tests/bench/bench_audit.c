/*  bench_audit.c — the auditor's durable appends and its proofs.

    (a) Durable appends over the bus: the auditor service (temporary
        config, keys and data dir, ephemeral ports) on a thread of this
        process; S_CLIENTS client threads, each its own bus_client with
        S_IN_FLIGHT audit.append requests in flight (a ~120-byte entry),
        for a fixed time. Every reply comes after its entry is fsync'd;
        the writer groups the appends that wait together into one commit.
        Baseline, in the same run and on the same file system: raw LMDB
        (no bus, no tree), one fsync'd commit per event (a 120-byte put
        under a u64 key). The machine's ceiling for a request, same run:
        the same clients sending the bus's trivial `health` (no store, no
        thread hop) to the same service. Then one client appending one
        at a time: the latency a step that must be audited first waits,
        beside one raw LMDB commit.
    (c) The follower's lag: a publisher (a bus service on a thread of
        this process) emits S_LAG_RATE events/s (those due every
        millisecond in one transaction, each carrying its time); a
        durable follower as the auditor's (svc:auditor, the publisher's
        outbox_acked_by; each event stored by audit_log_append_event_msg
        in the follower's transaction, with its mark) on another thread; a
        third thread polls the committed mark (every ~100 us) and takes,
        for each event newly under it, now - its time: p50/p99 of the lag
        from the publisher appending it (before its own commit) to the
        auditor having it durably stored. Baseline: a plain CURVE SUB on
        the same PUB, its receive time - the event's time (the
        publisher's commit and the transport: what any subscriber waits).
    (b) Proofs: a log of S_PROOF_ENTRIES entries (--quick: a tenth),
        built in large transactions, then inclusion proofs of random leaves
        in the whole tree, each in a renewed read transaction, p50 and
        mean; consistency proofs and roots likewise. Baseline: as many
        random raw LMDB gets (bus_txn_get of stored subtree hashes) as an
        inclusion path has hashes — the reads a proof cannot avoid. Then
        the receipt of a run of 40 entries spread over the whole log
        (audit_receipt_build: head, a proof per entry, summary, JWS).

    --appends: only (a), for profiling (perf record).

    (d) The writer's share: in process, no bus, the work the auditor's
        writer does per append (straight in the writer's group, as
        audit_service.c's s_append_work writes: the entry, its request
        key, its run index; no outcome record, the request key answers
        retries), 100 appends per fsync; beside the same puts each in a
        nested transaction (as appends were written before). Its rate over
        the bus rate says which bounds appends.

    Output, one line per figure:
        bench NAME VALUE UNIT [baseline B ratio R]
    then `bench audit_targets met` or `bench audit_targets missed: <which>`.
    Targets: >= 50,000 durable appends/s from 8 clients; an inclusion proof
    at 1,000,000 entries <= 50 us.

    Usage: bench_audit [--quick]. Exit 0 when the measurement ran (targets
    met or not; with BENCH_STRICT=1 a missed target exits 2), 1 on error.
*/
#include "audit_log.h"
#include "audit_merkle.h"
#include "audit_receipt.h"
#include "audit_runs.h"
#include "audit_service.h"
#include "bus_client.h"
#include "bus_error.h"
#include "bus_follow.h"
#include "bus_keys.h"
#include "bus_log.h"
#include "bus_services.h"
#include "bus_store.h"
#include "../support/test_service.h"
#include "../support/bench_util.h"

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>

#define S_CLIENTS          8
#define S_IN_FLIGHT        32        /* 8 x 32: within the writer's queue of 256 (bus_service.c) */
#define S_TIMEOUT_MS       20000
#define S_PROOF_ENTRIES    1000000
#define S_PROOFS           20000
#define S_LATENCY_N        400       /* one-at-a-time appends timed */
#define S_TARGET_RATE      50000.0
#define S_TARGET_PROOF_US  50.0
#define S_LAG_RATE         10000     /* events/s the publisher of (c) emits */
#define S_RUN              "01JB3M8Q5X9ZJ2G4T6V8W0Y2A4"
#define S_RUN_ENTRIES      40        /* entries of the run whose receipt (b) builds */
#define S_RECEIPTS         21


/* --- (a) appends over the bus ------------------------------------------- */

typedef struct {
    test_service_t *env;
    zcert_t *cert;
    double secs;
    int index;
    const char *type;                   /* audit.append, or health (the ceiling) */
    long done, failed;
} s_client_t;

static void *
s_client_run (void *arg)
{
    s_client_t *self = arg;
    bus_client_t *client = bus_client_new (test_service_rpc (self->env), test_service_server_key (self->env),
                                           self->cert, S_TIMEOUT_MS, 0);
    if (!client) {
        self->failed = 1;
        return NULL;
    }
    long sent = 0;
    int in_flight = 0;
    double until = bench_now_s () + self->secs;
    json_t *body = json_pack ("{s:{s:s, s:s, s:i, s:s, s:i}}", "entry", "kind", "step.intent",
                              "run", "01JB3M8Q5X9ZJ2G4T6V8W0Y2A4", "client", self->index,
                              "tool", "sheets.append", "n", 0);
    json_t *entry = json_object_get (body, "entry");
    bool health = self->type && strcmp (self->type, "health") == 0;
    json_t *empty = json_object ();
    for (; in_flight < S_IN_FLIGHT; in_flight++, sent++) {
        json_object_set_new (entry, "n", json_integer (sent));
        if (bus_client_send (client, health ? "health" : "audit.append", health ? empty : body, NULL, NULL))
            break;
    }
    while (in_flight > 0) {
        proto_msg_t *reply = NULL;
        if (bus_client_recv (client, S_TIMEOUT_MS, &reply)) {
            self->failed++;
            break;
        }
        in_flight--;
        if (reply->ok)
            self->done++;
        else if (self->failed++ == 0) {
            char *e = json_dumps (reply->error, JSON_COMPACT);
            fprintf (stderr, "bench_audit: client %d: %s\n", self->index, e ? e : "?");
            free (e);
        }
        proto_msg_destroy (&reply);
        if (bench_now_s () < until) {
            json_object_set_new (entry, "n", json_integer (sent++));
            in_flight += bus_client_send (client, health ? "health" : "audit.append", health ? empty : body,
                                          NULL, NULL) == 0;
        }
    }
    json_decref (empty);
    json_decref (body);
    bus_client_destroy (&client);
    return NULL;
}

/*  A counter of the auditor's stats. */
static long
s_counter (test_service_t *env, zcert_t *cert, const char *name)
{
    bus_client_t *client = bus_client_new (test_service_rpc (env), test_service_server_key (env), cert,
                                           S_TIMEOUT_MS, 0);
    long v = client ? (long) test_service_counter (client, name) : -1;
    bus_client_destroy (&client);
    return v;
}

/*  CPU seconds this process has used (every thread: the clients, the
    auditor's reactor and writer, ZeroMQ's I/O thread). */
static double
s_cpu_s (void)
{
    struct rusage ru;
    getrusage (RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/*  S_CLIENTS clients sending type (audit.append or health) for secs:
    requests per second, or -1 (failures counted into *failed); the CPU
    time per request (µs, every thread of the process) into *cpu_us. */
static double
s_clients (test_service_t *env, zcert_t *cert, const char *type, double secs, long *failed, double *cpu_us)
{
    double c0 = s_cpu_s ();
    s_client_t clients [S_CLIENTS];
    pthread_t threads [S_CLIENTS];
    double t0 = bench_now_s ();
    for (int i = 0; i < S_CLIENTS; i++) {
        clients [i] = (s_client_t) { .env = env, .cert = cert, .secs = secs, .index = i, .type = type };
        pthread_create (&threads [i], NULL, s_client_run, &clients [i]);
    }
    long done = 0;
    for (int i = 0; i < S_CLIENTS; i++) {
        pthread_join (threads [i], NULL);
        done += clients [i].done;
        *failed += clients [i].failed;
    }
    *cpu_us = done ? (s_cpu_s () - c0) * 1e6 / done : 0;
    return done / (bench_now_s () - t0);
}

/*  Appends per second from S_CLIENTS clients for secs; the mean group
    into *per_commit; with ceiling, the same clients' health requests per
    second into *ceiling; with latency, then S_LATENCY_N appends one at a
    time from one client, their latencies (µs, sorted). -1 on failure. */
static double
s_bus_appends (double secs, double *per_commit, double *ceiling, double latency [], double *cpu_us,
               double *ceiling_cpu_us)
{
    char err [256] = "";
    double rate = -1;
    test_service_t *env = test_service_new ("auditor", NULL, "map_size_mb = 4096\n", err, sizeof err);
    zcert_t *cert = env ? test_service_cert (env, "bench", "svc:orchestrator") : NULL;
    /* the auditor follows every other service: it needs their keys (none
       of them runs here; its follower keeps asking, off the appends' path) */
    for (const bus_service_id_t *id = bus_services; cert && id->name; id++) {
        zcert_t *other = strcmp (id->name, "auditor") ? test_service_cert (env, id->name, NULL) : NULL;
        zcert_destroy (&other);
    }
    if (!cert || test_service_start (env, &audit_daemon, "bench", 0, err, sizeof err)) {
        fprintf (stderr, "bench_audit: cannot start the auditor: %s\n", err);
        goto done;
    }
    /* warm up: connect, a few appends */
    s_client_t warm = { .env = env, .cert = cert, .secs = 0.1, .index = 99 };
    s_client_run (&warm);
    long g0 = s_counter (env, cert, "write_groups"), w0 = s_counter (env, cert, "writes_grouped");
    long failed = warm.failed;
    double appends = s_clients (env, cert, "audit.append", secs, &failed, cpu_us);
    long groups = s_counter (env, cert, "write_groups") - g0, grouped = s_counter (env, cert, "writes_grouped") - w0;
    *per_commit = groups > 0 ? (double) grouped / groups : 1;
    if (ceiling)
        *ceiling = s_clients (env, cert, "health", secs, &failed, ceiling_cpu_us);
    /* one append at a time: what a step that must be audited first waits */
    bus_client_t *client = latency ? bus_client_new (test_service_rpc (env), test_service_server_key (env), cert,
                                                     S_TIMEOUT_MS, 0) : NULL;
    json_t *body = json_pack ("{s:{s:s}}", "entry", "kind", "step.intent");
    for (int i = 0; client && i < S_LATENCY_N; i++) {
        proto_msg_t *reply = NULL;
        double a = bench_now_s ();
        if (bus_client_call (client, "audit.append", body, NULL, &reply) || !reply->ok)
            failed++;
        latency [i] = (bench_now_s () - a) * 1e6;
        proto_msg_destroy (&reply);
    }
    json_decref (body);
    bus_client_destroy (&client);
    if (latency)
        qsort (latency, S_LATENCY_N, sizeof *latency, bench_cmp_double);
    if (failed)
        fprintf (stderr, "bench_audit: %ld appends failed\n", failed);
    else
        rate = appends;
done:
    zcert_destroy (&cert);
    test_service_destroy (&env);
    return rate;
}


/* --- (c) the follower's lag ----------------------------------------------- */

static double s_lag_t0;                 /* when the publisher started (bench_now_s) */
static atomic_long s_lag_published;
static atomic_int s_lag_stop;
static _Atomic double *s_lag_time;      /* by seq: the event's time (bench_now_s) */
static long s_lag_cap;

/*  An event's time: bench_now_s () when the publisher appended it. */
static double
s_event_time (proto_msg_t *event)
{
    return json_real_value (json_object_get (event->body, "t"));
}

/*  The publisher's timer (every ms): the events due by now, in one
    transaction. */
static void
s_lag_tick (bus_service_t *svc, void *state)
{
    if (atomic_load (&s_lag_stop))
        return;
    long due = (long) ((bench_now_s () - s_lag_t0) * S_LAG_RATE), n = atomic_load (&s_lag_published);
    if (due <= n || n >= s_lag_cap - 1)
        return;
    if (due > s_lag_cap - 1)
        due = s_lag_cap - 1;
    bus_txn_t *txn = bus_txn_begin (bus_service_store (svc), true);
    for (long i = n; txn && i < due; i++)
        bus_event_append (svc, txn, "echo.seen", json_pack ("{s:f, s:i}", "t", bench_now_s (), "n", (int) i), NULL);
    if (txn && bus_service_commit (svc, &txn) == 0)
        atomic_store (&s_lag_published, due);
}

static const bus_timer_t s_lag_timers [] = {
    { .name = "publish", .interval_ms = 1, .fn = s_lag_tick },
    { 0 }
};

static const bus_daemon_t s_lag_daemon = {
    .section = "authz",
    .timers = s_lag_timers,
};

typedef struct {
    test_service_t *env;
    zcert_t *cert;
    bus_store_t *store;
    audit_log_t *log;
    int marks_db;
    double *lag;                        /* follower: by seq, 0 until stored */
    double *raw;                        /* plain SUB: by seq */
    long stored, failed;
} s_lag_t;

/*  The follower's callback: the auditor's own work, in its transaction. */
static int
s_lag_event (bus_follow_t *follow, bus_txn_t *txn, proto_msg_t *event, void *arg)
{
    s_lag_t *self = arg;
    if (event->seq < (uint64_t) s_lag_cap)
        atomic_store (&s_lag_time [event->seq], s_event_time (event));
    uint64_t index;
    int rc = audit_log_append_event_msg (self->log, txn, event, &index);
    return rc == BUS_EEXIST ? 0 : rc;
}

static int
s_lag_stop_check (zloop_t *loop, int timer_id, void *arg)
{
    return atomic_load (&s_lag_stop) ? -1 : 0;
}

/*  The follower, on a thread and zloop of its own. */
static void *
s_lag_follower_run (void *arg)
{
    s_lag_t *self = arg;
    zloop_t *loop = zloop_new ();
    bus_follow_opts_t opts = { .name = "audit", .fn = s_lag_event, .arg = self, .store = self->store,
                               .replay_ms = 1000 };
    bus_follow_t *follow = loop ? bus_follow_new (loop, self->cert, &opts) : NULL;
    if (!follow || bus_follow_add (follow, "authz", "svc:authz", test_service_pub (self->env),
                                   test_service_rpc (self->env), test_service_server_key (self->env),
                                   2000, 3)) {
        self->failed = 1;
        atomic_store (&s_lag_stop, 1);
    }
    else {
        zloop_timer (loop, 50, 0, s_lag_stop_check, NULL);
        zloop_start (loop);
    }
    bus_follow_destroy (&follow);
    zloop_destroy (&loop);
    return NULL;
}

/*  Poll the committed mark: each event newly under it is stored now. */
static void *
s_lag_poll_run (void *arg)
{
    s_lag_t *self = arg;
    uint64_t seen = 0;
    while (!atomic_load (&s_lag_stop)) {
        bus_txn_t *txn = bus_txn_begin (self->store, false);
        const void *val;
        size_t len;
        uint64_t mark = seen;
        if (txn && bus_txn_get (txn, self->marks_db, "audit/authz", 11, &val, &len) == 0 && len == 8)
            mark = bus_key_to_u64 (val);
        bus_txn_abort (&txn);
        double now = bench_now_s ();
        for (uint64_t q = seen + 1; q <= mark && q < (uint64_t) s_lag_cap; q++) {
            double t = atomic_load (&s_lag_time [q]);
            if (t > 0)
                self->lag [q] = (now - t) * 1e6;
        }
        seen = mark > seen ? mark : seen;
        struct timespec ts = { 0, 100000 };
        nanosleep (&ts, NULL);
    }
    return NULL;
}

/*  The baseline: a plain CURVE SUB on the publisher's PUB. */
static void *
s_lag_sub_run (void *arg)
{
    s_lag_t *self = arg;
    zsock_t *sub = zsock_new (ZMQ_SUB);
    if (!sub)
        return NULL;
    zsock_set_rcvhwm (sub, 100000);
    zsock_set_rcvtimeo (sub, 50);
    bus_keys_apply_client (sub, self->cert, test_service_server_key (self->env));
    zsock_set_subscribe (sub, "");
    zsock_connect (sub, "%s", test_service_pub (self->env));
    while (!atomic_load (&s_lag_stop)) {
        zmsg_t *msg = zmsg_recv (sub);
        if (!msg)
            continue;
        double now = bench_now_s ();
        zframe_t *topic = zmsg_first (msg), *frame = topic ? zmsg_next (msg) : NULL;
        proto_msg_t *evt = NULL;
        if (frame && proto_msg_decode (&evt, zframe_data (frame), zframe_size (frame), 1 << 20, NULL, NULL, 0) == 0
            && evt->seq < (uint64_t) s_lag_cap)
            self->raw [evt->seq] = (now - s_event_time (evt)) * 1e6;
        proto_msg_destroy (&evt);
        zmsg_destroy (&msg);
    }
    zsock_destroy (&sub);
    return NULL;
}

/*  The lags (µs) of the events both measured, sorted, into out [0..n). */
static long
s_lag_collect (const double *lag, long cap, double *out)
{
    long n = 0;
    for (long q = 2; q < cap; q++)      /* seq 1 is service.started */
        if (lag [q] > 0)
            out [n++] = lag [q];
    qsort (out, (size_t) n, sizeof *out, bench_cmp_double);
    return n;
}

/*  (c): follower and plain SUB lag behind a publisher at S_LAG_RATE for
    secs; prints the lines. Returns 0 or -1. */
static int
s_follow_lag (double secs)
{
    char err [256] = "", dir [64] = "", path [128];
    int rc = -1;
    s_lag_t self = { 0 };
    s_lag_cap = (long) (S_LAG_RATE * secs) + 16;
    s_lag_time = calloc ((size_t) s_lag_cap, sizeof *s_lag_time);
    self.lag = calloc ((size_t) s_lag_cap, sizeof *self.lag);
    self.raw = calloc ((size_t) s_lag_cap, sizeof *self.raw);
    double *sorted = calloc ((size_t) s_lag_cap, sizeof *sorted);
    atomic_store (&s_lag_stop, 0);
    atomic_store (&s_lag_published, 0);
    self.env = test_service_new ("authz", NULL, "map_size_mb = 1024\n", err, sizeof err);
    self.cert = self.env ? test_service_cert (self.env, "auditor", "svc:auditor") : NULL;
    const char *dbs [8] = { 0 };
    size_t k = 0;
    for (; audit_log_db_names [k]; k++)
        dbs [k] = audit_log_db_names [k];
    dbs [k] = BUS_FOLLOW_DB;
    if (!s_lag_time || !self.lag || !self.raw || !sorted || !self.cert
        || test_service_tmpdir (dir, sizeof dir, "bench-audit-follow"))
        goto done;
    snprintf (path, sizeof path, "%s/db", dir);
    if (bus_store_open (&self.store, path, (size_t) 1 << 30, dbs) || audit_log_new (&self.log, self.store))
        goto done;
    self.marks_db = bus_store_db (self.store, BUS_FOLLOW_DB);
    s_lag_t0 = bench_now_s () + 1e6;          /* nothing due until the follower is there */
    if (test_service_start (self.env, &s_lag_daemon, "bench", 0, err, sizeof err)) {
        fprintf (stderr, "bench_audit: cannot start the publisher: %s\n", err);
        goto done;
    }
    pthread_t follower, poller, sub;
    pthread_create (&follower, NULL, s_lag_follower_run, &self);
    pthread_create (&poller, NULL, s_lag_poll_run, &self);
    pthread_create (&sub, NULL, s_lag_sub_run, &self);
    zclock_sleep (500);                 /* connected, service.started applied */
    s_lag_t0 = bench_now_s ();
    zclock_sleep ((int) (secs * 1000));
    long published = atomic_load (&s_lag_published);
    zclock_sleep (500);                 /* the tail */
    atomic_store (&s_lag_stop, 1);
    pthread_join (follower, NULL);
    pthread_join (poller, NULL);
    pthread_join (sub, NULL);
    test_service_stop (self.env);
    long nf = s_lag_collect (self.lag, s_lag_cap, sorted);
    double f50 = nf ? sorted [nf / 2] : 0, f99 = nf ? sorted [nf * 99 / 100] : 0;
    long nr = s_lag_collect (self.raw, s_lag_cap, sorted);
    double r50 = nr ? sorted [nr / 2] : 0, r99 = nr ? sorted [nr * 99 / 100] : 0;
    if (self.failed || nf < published * 9 / 10 || nr == 0) {
        fprintf (stderr, "bench_audit: follower lag: %ld of %ld events stored, %ld seen by the SUB\n",
                 nf, published, nr);
        goto done;
    }
    printf ("bench audit_follow_lag_p50 %.0f us baseline %.0f ratio %.2f (%ld events at %d/s, "
            "appended to durably stored by the auditor's follower; baseline: a plain SUB's receive)\n",
            f50, r50, f50 / r50, published, S_LAG_RATE);
    printf ("bench audit_follow_lag_p99 %.0f us baseline %.0f ratio %.2f\n", f99, r99, f99 / r99);
    rc = 0;
done:
    audit_log_destroy (&self.log);
    bus_store_destroy (&self.store);
    if (*dir)
        test_service_rmtree (dir);
    zcert_destroy (&self.cert);
    test_service_destroy (&self.env);
    free (s_lag_time);
    free (self.lag);
    free (self.raw);
    free (sorted);
    s_lag_time = NULL;
    return rc;
}

/* --- (b) proofs at scale ------------------------------------------------ */

static int
s_proofs (uint64_t entries, int proofs, int quick)
{
    char dir [64], path [128];
    if (test_service_tmpdir (dir, sizeof dir, "bench-audit-proofs"))
        return -1;
    snprintf (path, sizeof path, "%s/db", dir);
    bus_store_t *store = NULL;
    audit_log_t *log = NULL;
    static const char *const dbs [] = {
        "audit_entries", "audit_nodes", "audit_events", "audit_requests",
        "audit_runs", "audit_gaps", "audit_ended", "audit_receipts", NULL
    };
    audit_runs_t *runs = NULL;
    int rc = bus_store_open (&store, path, (size_t) 4 << 30, dbs);
    if (rc == 0)
        rc = audit_log_new (&log, store);
    if (rc == 0)
        rc = audit_runs_new (&runs, store);
    double t0 = bench_now_s ();
    for (uint64_t i = 0; rc == 0 && i < entries; ) {
        bus_txn_t *txn = bus_txn_begin (store, true);
        for (int k = 0; rc == 0 && k < 50000 && i < entries; k++, i++) {
            char entry [160];
            int len = snprintf (entry, sizeof entry,
                                "{\"entry\":{\"n\":%llu,\"tool\":\"sheets.append\"},\"from\":\"svc:orchestrator\","
                                "\"id\":\"01JB3M8Q5X9ZJ2G4T6V8W0Y2A4\",\"kind\":\"append\",\"ts\":1796400000000000}",
                                (unsigned long long) i);
            uint64_t index;
            rc = txn ? audit_log_append (log, txn, entry, (size_t) len, &index) : BUS_EIO;
            /* one run's S_RUN_ENTRIES entries spread over the whole log */
            if (rc == 0 && i % (entries / S_RUN_ENTRIES) == 0)
                rc = audit_runs_note (runs, txn, S_RUN, index);
        }
        int crc = bus_txn_commit (&txn);
        rc = rc ? rc : crc;
    }
    double build = bench_now_s () - t0;
    if (rc) {
        fprintf (stderr, "bench_audit: building the log: %s\n", bus_strerror (rc));
        goto done;
    }
    printf ("bench audit_build_rate %.0f entries/s (%llu entries in transactions of 50,000)\n",
            entries / build, (unsigned long long) entries);

    double *lat = calloc ((size_t) proofs, sizeof *lat), *base = calloc ((size_t) proofs, sizeof *base);
    double *cons = calloc ((size_t) proofs, sizeof *cons), *roots = calloc ((size_t) proofs, sizeof *roots);
    bus_txn_t *txn = bus_txn_begin (store, false);
    int nodes = bus_store_db (store, "audit_nodes");
    unsigned seed = 6962;
    size_t path_len_sum = 0;
    audit_hash_t root;
    rc = txn && lat && base && cons && roots ? audit_log_root (log, txn, entries, root) : BUS_ENOMEM;
    for (int i = 0; rc == 0 && i < proofs; i++) {
        uint64_t m = ((uint64_t) rand_r (&seed) << 31 ^ (uint64_t) rand_r (&seed)) % entries;
        audit_hash_t p [AUDIT_PROOF_MAX], leaf;
        size_t len = 0;
        bus_txn_reset (txn);
        double a = bench_now_s ();
        rc = bus_txn_renew (txn);
        if (rc == 0)
            rc = audit_log_inclusion (log, txn, m, entries, p, &len);
        double b = bench_now_s ();
        lat [i] = (b - a) * 1e6;
        path_len_sum += len;
        if (rc == 0)
            rc = audit_log_leaf (log, txn, m, leaf);
        if (rc == 0 && (i % 97 == 0) && audit_verify_inclusion (m, entries, leaf, p, len, root))
            rc = BUS_ECRYPTO;           /* what is timed is also right */
        /* the baseline: len random gets of stored hashes */
        bus_txn_reset (txn);
        a = bench_now_s ();
        if (rc == 0)
            rc = bus_txn_renew (txn);
        for (size_t k = 0; rc == 0 && k < len; k++) {
            uint8_t key [9];
            key [0] = 0;
            bus_u64_to_key (((uint64_t) rand_r (&seed) << 31 ^ (uint64_t) rand_r (&seed)) % entries, key + 1);
            const void *val;
            size_t vlen;
            rc = bus_txn_get (txn, nodes, key, sizeof key, &val, &vlen);
        }
        base [i] = (bench_now_s () - a) * 1e6;
        /* a consistency proof from a random older size, and a root */
        uint64_t old = 1 + ((uint64_t) rand_r (&seed) << 31 ^ (uint64_t) rand_r (&seed)) % entries;
        bus_txn_reset (txn);
        a = bench_now_s ();
        if (rc == 0)
            rc = bus_txn_renew (txn);
        if (rc == 0)
            rc = audit_log_consistency (log, txn, old, entries, p, &len);
        cons [i] = (bench_now_s () - a) * 1e6;
        bus_txn_reset (txn);
        a = bench_now_s ();
        audit_hash_t r;
        if (rc == 0)
            rc = bus_txn_renew (txn);
        if (rc == 0)
            rc = audit_log_root (log, txn, old, r);
        roots [i] = (bench_now_s () - a) * 1e6;
    }
    bus_txn_abort (&txn);
    /* a receipt of a run whose entries span the log: built (head, a proof
       per entry, summary, JWS, HMAC) in a read-write transaction, aborted */
    double receipt_ms [S_RECEIPTS];
    size_t receipt_bytes = 0;
    uint8_t seed32 [32] = { 1 }, hmac32 [32] = { 2 };
    audit_keys_t *keys = NULL;
    if (rc == 0)
        rc = audit_keys_from_seed (&keys, seed32, hmac32);
    for (int i = 0; rc == 0 && i < S_RECEIPTS; i++) {
        json_t *stored = NULL;
        bus_txn_t *w = bus_txn_begin (store, true);
        double a = bench_now_s ();
        rc = w ? audit_receipt_build (runs, log, keys, w, S_RUN, 1796400000000000LL, &stored) : BUS_EIO;
        receipt_ms [i] = (bench_now_s () - a) * 1e3;
        receipt_bytes = strlen (json_string_value (json_object_get (stored, "jws")) ?: "");
        json_decref (stored);
        bus_txn_abort (&w);
    }
    audit_keys_destroy (&keys);
    if (rc == 0) {
        qsort (receipt_ms, S_RECEIPTS, sizeof *receipt_ms, bench_cmp_double);
        printf ("bench audit_receipt_build_p50 %.2f ms (a run of %d entries spread over %llu: %zu-byte JWS, a "
                "proof per entry)\n", receipt_ms [S_RECEIPTS / 2], S_RUN_ENTRIES, (unsigned long long) entries,
                receipt_bytes);
    }
    if (rc == 0) {
        double mean = 0, bmean = 0;
        for (int i = 0; i < proofs; i++) {
            mean += lat [i];
            bmean += base [i];
        }
        mean /= proofs;
        bmean /= proofs;
        qsort (lat, (size_t) proofs, sizeof *lat, bench_cmp_double);
        qsort (base, (size_t) proofs, sizeof *base, bench_cmp_double);
        qsort (cons, (size_t) proofs, sizeof *cons, bench_cmp_double);
        qsort (roots, (size_t) proofs, sizeof *roots, bench_cmp_double);
        const char *at = quick ? "inclusion_100k" : "inclusion_1m";
        printf ("bench audit_%s_p50 %.2f us baseline %.2f ratio %.2f (%d proofs of %.1f hashes; baseline: as many raw gets)\n",
                at, lat [proofs / 2], base [proofs / 2], lat [proofs / 2] / base [proofs / 2], proofs,
                (double) path_len_sum / proofs);
        printf ("bench audit_%s_p99 %.2f us baseline %.2f ratio %.2f\n", at, lat [proofs * 99 / 100],
                base [proofs * 99 / 100], lat [proofs * 99 / 100] / base [proofs * 99 / 100]);
        printf ("bench audit_%s_mean %.2f us baseline %.2f ratio %.2f\n", at, mean, bmean, mean / bmean);
        printf ("bench audit_consistency_p50 %.2f us (from a random older size to %llu)\n", cons [proofs / 2],
                (unsigned long long) entries);
        printf ("bench audit_root_p50 %.2f us (a random size up to %llu)\n", roots [proofs / 2],
                (unsigned long long) entries);
        rc = lat [proofs / 2] <= S_TARGET_PROOF_US ? 0 : 1;
    }
    else
        fprintf (stderr, "bench_audit: proofs: %s\n", bus_strerror (rc));
    free (lat);
    free (base);
    free (cons);
    free (roots);
done:
    audit_runs_destroy (&runs);
    audit_log_destroy (&log);
    bus_store_destroy (&store);
    test_service_rmtree (dir);
    return rc;
}


/* --- (d) the writer's share ------------------------------------------------ */

/*  In process, no bus: the work the auditor's writer does per append, in
    groups of S_WRITER_GROUP appends per fsync'd commit — flat (as the
    writer runs them: the entry, its request key and its run index
    straight in the group; no outcome record, as the auditor asks with
    bus_request_answers_retries) or nested (the same puts in a nested
    transaction per append). Appends per second; -1 on failure. */
#define S_WRITER_GROUP 100

static const char *const s_writer_dbs [] = {
    "audit_entries", "audit_nodes", "audit_events", "audit_requests",
    "audit_runs", "audit_gaps", "audit_ended", "audit_receipts", NULL
};

static double
s_writer (double secs, bool nested)
{
    char dir [128], path [160];
    if (test_service_tmpdir (dir, sizeof dir, "bench-audit-writer"))
        return -1;
    snprintf (path, sizeof path, "%s/db", dir);
    bus_store_t *store = NULL;
    audit_log_t *log = NULL;
    audit_runs_t *runs = NULL;
    int rc = bus_store_open (&store, path, (size_t) 1 << 30, s_writer_dbs);
    if (rc == 0)
        rc = audit_log_new (&log, store);
    if (rc == 0)
        rc = audit_runs_new (&runs, store);
    long n = 0;
    double t0 = bench_now_s (), until = t0 + secs;
    while (rc == 0 && bench_now_s () < until) {
        bus_txn_t *group = bus_txn_begin (store, true);
        if (!group) {
            rc = BUS_EIO;
            break;
        }
        bus_txn_group (group);
        for (int k = 0; rc == 0 && k < S_WRITER_GROUP; k++, n++) {
            char entry [320], id [40];
            int len = snprintf (entry, sizeof entry,
                                "{\"entry\":{\"client\":%d,\"kind\":\"step.intent\",\"n\":%ld,\"run\":"
                                "\"01JB3M8Q5X9ZJ2G4T6V8W0Y2A4\",\"tool\":\"sheets.append\"},\"from\":"
                                "\"svc:orchestrator\",\"id\":\"01JB3M8Q5X9ZJ2G4T6V8W0Y2A4\",\"kind\":\"append\","
                                "\"ts\":1796400000000000}", k % 8, n);
            snprintf (id, sizeof id, "01JB3M8Q5X9ZJ2%012ld", n);
            bus_txn_t *txn = nested ? bus_txn_begin (store, true) : group;
            uint64_t index;
            rc = txn ? audit_log_append_request (log, txn, "svc:orchestrator", id, entry, (size_t) len, &index)
                     : BUS_EIO;
            if (rc == 0)
                rc = audit_runs_note (runs, txn, "01JB3M8Q5X9ZJ2G4T6V8W0Y2A4", index);
            if (nested)
                rc = rc ? rc : bus_txn_commit (&txn);
        }
        bus_txn_group (NULL);
        int crc = bus_txn_commit (&group);
        rc = rc ? rc : crc;
    }
    double took = bench_now_s () - t0;
    audit_runs_destroy (&runs);
    audit_log_destroy (&log);
    bus_store_destroy (&store);
    test_service_rmtree (dir);
    if (rc) {
        fprintf (stderr, "bench_audit: the writer's share: %s\n", bus_strerror (rc));
        return -1;
    }
    return n / took;
}

int
main (int argc, char **argv)
{
    int quick = 0, appends_only = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp (argv [i], "--quick") == 0)
            quick = 1;
        else
        if (strcmp (argv [i], "--appends") == 0)
            appends_only = 1;
        else {
            fprintf (stderr, "usage: bench_audit [--quick] [--appends]\n");
            return 1;
        }
    }
    bus_log_init ("bench", "warn");
    double secs = quick ? 0.5 : 3.0;
    char missed [64] = "";
    double per_commit = 0, lat [S_LATENCY_N], raw_lat [S_LATENCY_N];
    double ceiling = -1, cpu_us = 0, ceiling_cpu_us = 0;
    double rate = s_bus_appends (secs, &per_commit, &ceiling, appends_only ? NULL : lat, &cpu_us, &ceiling_cpu_us);
    /* the machine is shared: the rates move with the others' load, the
       CPU time each request costs much less */
    if (appends_only) {
        printf ("bench audit_bus_appends %.0f events/s (%.1f per fsync; --appends)\n", rate, per_commit);
        printf ("bench audit_bus_ceiling %.0f req/s baseline %.0f ratio %.2f\n", ceiling, rate, ceiling / rate);
        printf ("bench audit_bus_cpu_per_append %.1f us baseline %.1f ratio %.2f (CPU time of every thread of "
                "the process per append; baseline: per health)\n", cpu_us, ceiling_cpu_us, cpu_us / ceiling_cpu_us);
        return rate < 0 || ceiling < 0;
    }
    /* the baseline: raw LMDB, one fsync'd commit per 120-byte event; the
       latencies one at a time, then the rate for a while */
    double raw = -1;
    if (bench_lmdb_commits ("bench-audit-raw", 120, S_LATENCY_N, 0, raw_lat, NULL) == S_LATENCY_N
        && bench_lmdb_commits ("bench-audit-raw", 120, INT_MAX, quick ? 0.5 : 2.0, NULL, &raw) > 0)
        qsort (raw_lat, S_LATENCY_N, sizeof *raw_lat, bench_cmp_double);
    else
        raw = -1;
    if (rate < 0 || ceiling < 0 || raw < 0) {
        fprintf (stderr, "bench_audit: the append measurement failed\n");
        return 1;
    }
    printf ("bench audit_bus_appends %.0f events/s baseline %.0f ratio %.2f (%d clients x %d in flight, "
            "%.1f appends per fsync; baseline: raw LMDB, one fsync'd commit per event)\n",
            rate, raw, rate / raw, S_CLIENTS, S_IN_FLIGHT, per_commit);
    printf ("bench audit_appends_per_fsync %.1f appends\n", per_commit);
    printf ("bench audit_bus_ceiling %.0f req/s baseline %.0f ratio %.2f (the same %d clients x %d in flight "
            "sending the bus's trivial health to the auditor: the machine's ceiling for a request; baseline: "
            "the appends)\n", ceiling, rate, ceiling / rate, S_CLIENTS, S_IN_FLIGHT);
    printf ("bench audit_bus_cpu_per_append %.1f us baseline %.1f ratio %.2f (CPU time of every thread of the "
            "process, clients, reactor, writer, I/O, per append; on 2 cores 50,000/s needs under 40; baseline: "
            "per health)\n", cpu_us, ceiling_cpu_us, cpu_us / ceiling_cpu_us);
    printf ("bench audit_append_p50 %.0f us baseline %.0f ratio %.2f (one at a time over the bus, durable; "
            "baseline: one raw LMDB commit)\n", lat [S_LATENCY_N / 2], raw_lat [S_LATENCY_N / 2],
            lat [S_LATENCY_N / 2] / raw_lat [S_LATENCY_N / 2]);
    printf ("bench audit_append_p99 %.0f us baseline %.0f ratio %.2f\n", lat [S_LATENCY_N * 99 / 100],
            raw_lat [S_LATENCY_N * 99 / 100], lat [S_LATENCY_N * 99 / 100] / raw_lat [S_LATENCY_N * 99 / 100]);
    if (rate < S_TARGET_RATE)
        strcat (missed, " appends");
    double wn = s_writer (quick ? 0.5 : 2.0, true), wf = s_writer (quick ? 0.5 : 2.0, false);
    if (wn < 0 || wf < 0)
        return 1;
    printf ("bench audit_writer_appends %.0f events/s baseline %.0f ratio %.2f (in process, no bus: the writer's "
            "work per append, straight in the group as the writer runs them, %d per fsync; baseline: the same "
            "puts each in a nested transaction)\n", wf, wn, wf / wn, S_WRITER_GROUP);
    printf ("bench audit_bus_share %.2f (the bus appends' rate over the writer's alone: below 1, the bus path "
            "and not the writer bounds the rate)\n", rate / wf);
    if (s_follow_lag (quick ? 1.0 : 3.0))
        return 1;
    int prc = s_proofs (quick ? S_PROOF_ENTRIES / 10 : S_PROOF_ENTRIES, quick ? S_PROOFS / 10 : S_PROOFS, quick);
    if (prc < 0)
        return 1;
    if (prc > 0)
        strcat (missed, " inclusion");
    if (*missed)
        printf ("bench audit_targets missed:%s\n", missed);
    else
        printf ("bench audit_targets met%s\n", quick ? " (--quick: proofs at 100,000 entries)" : "");
    if (*missed && getenv ("BENCH_STRICT") && strcmp (getenv ("BENCH_STRICT"), "1") == 0)
        return 2;
    return 0;
}
