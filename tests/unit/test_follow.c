/*  test_follow.c — event followers (bus_follow.h) against a real
    publisher process.

    The publisher is this binary run as `test_follow --publisher DIR N B MS
    [SECTION]`: the authz (or SECTION's) service on the config DIR/sanctum.conf whose timer emits
    echo.seen events, B per transaction every MS ms, until N are stored; its
    count of emitted events commits with them, so after a SIGKILL and a
    restart it goes on where its store says and stops at exactly N. The
    follower is durable (its own store: the marks in db "follow", the
    counter in db "count"), in this process on the test thread's zloop, or
    as `test_follow --follower DIR STORE N` in a process of its own (killed
    and restarted). Its callback adds one to the counter inside the
    follower's transaction and checks that seq only grows. In every test
    the counter must equal the number of echo.seen events published, and
    the loss counter must account for any event the publisher trimmed.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "bus_client.h"
#include "bus_error.h"
#include "bus_follow.h"
#include "bus_keys.h"
#include "bus_log.h"
#include "bus_service.h"
#include "bus_store.h"
#include "../support/test_service.h"

static const char *const s_follower_dbs [] = { BUS_FOLLOW_DB, "count", NULL };
static const char *const s_topics [] = { "echo.", NULL };

/* --- the follower's callback (either process) ------------------------------- */

static bus_store_t *s_store;            /* the follower's (durable) */
static int s_count_db;
static uint64_t s_order_errors;         /* an event at or below the last one seen */
static uint64_t s_memory_count;         /* memory mode */
static uint64_t s_memory_last;
static uint64_t s_loss_from, s_loss_to, s_loss_calls;

/*  Read a u64 of the count db in txn (0 when absent). */
static uint64_t
s_get (bus_txn_t *txn, const char *key)
{
    const void *val;
    size_t len;
    if (bus_txn_get (txn, s_count_db, key, strlen (key), &val, &len) == 0 && len == 8)
        return bus_key_to_u64 (val);
    return 0;
}

static void
s_put (bus_txn_t *txn, const char *key, uint64_t value)
{
    uint8_t val [8];
    bus_u64_to_key (value, val);
    bus_txn_put (txn, s_count_db, key, strlen (key), val, 8);
}

/*  One echo.seen: count it, in the follower's transaction. */
static int
s_on_event (bus_follow_t *follow, bus_txn_t *txn, proto_msg_t *event, void *arg)
{
    if (!streq (event->type, "echo.seen"))
        s_order_errors++;               /* the topics let only echo.* through */
    if (!txn) {
        if (event->seq <= s_memory_last)
            s_order_errors++;
        s_memory_last = event->seq;
        s_memory_count++;
        return 0;
    }
    char last [PROTO_PRINCIPAL_MAX + 8];
    snprintf (last, sizeof last, "last/%s", event->pub);    /* each publisher's order */
    if (event->seq <= s_get (txn, last))
        s_order_errors++;
    s_put (txn, "count", s_get (txn, "count") + 1);
    s_put (txn, last, event->seq);
    return bus_txn_error (txn);
}

static void
s_on_loss (bus_follow_t *follow, const char *source, const char *pub, uint64_t from, uint64_t to, void *arg)
{
    if (!s_loss_calls)
        s_loss_from = from;
    s_loss_to = to;
    s_loss_calls++;
}

/*  Durable: the loss recorded in the transaction that moves the mark past
    it (keys lost_from, lost_to); fails s_record_fail times first (the
    transaction is then aborted and the loss must come again). */
static int s_record_fail;

static int
s_on_record_loss (bus_follow_t *follow, bus_txn_t *txn, const char *source, const char *pub,
                  uint64_t from, uint64_t to, void *arg)
{
    if (s_record_fail > 0) {
        s_record_fail--;
        return BUS_EIO;
    }
    if (s_get (txn, "lost_to") + 1 != from)
        s_order_errors++;                   /* recorded twice, or out of order */
    if (!s_get (txn, "lost_from"))
        s_put (txn, "lost_from", from);
    s_put (txn, "lost_to", to);
    return bus_txn_error (txn);
}

/*  The counter in the follower's store. */
static uint64_t
s_stored_count (bus_store_t *store, const char *key)
{
    bus_txn_t *txn = bus_txn_begin (store, false);
    uint64_t n = txn ? s_get (txn, key) : 0;
    bus_txn_abort (&txn);
    return n;
}

/*  A durable follower of the authz service of config, on loop, as
    svc:auditor (the publisher's outbox_acked_by). */
static bus_follow_t *
s_follower (zloop_t *loop, bus_config_t *config, zcert_t *cert, bus_store_t *store)
{
    bus_follow_opts_t opts = { .name = "audit", .topics = s_topics, .fn = s_on_event, .loss = s_on_loss,
                               .record_loss = s_on_record_loss, .store = store, .replay_ms = 200 };
    bus_follow_t *follow = bus_follow_new (loop, cert, &opts);
    if (follow && bus_follow_add_service (follow, config, "authz"))
        bus_follow_destroy (&follow);
    return follow;
}

/* --- the publisher process --------------------------------------------------- */

typedef struct {
    bus_service_t *svc;
    uint64_t n;
    int batch;
} s_pub_t;

/*  Emit the next batch of echo.seen (and the count) in one transaction. */
static int
s_pub_tick (zloop_t *loop, int timer_id, void *arg)
{
    s_pub_t *p = arg;
    bus_store_t *store = bus_service_store (p->svc);
    int db = bus_store_db (store, "records");
    bus_txn_t *txn = bus_txn_begin (store, true);
    if (!txn)
        return 0;
    const void *val;
    size_t len;
    uint64_t done = bus_txn_get (txn, db, "emitted", 7, &val, &len) == 0 ? bus_key_to_u64 (val) : 0;
    if (done >= p->n) {
        bus_service_abort (p->svc, &txn);
        return 0;
    }
    uint64_t k = 0;
    for (; k < (uint64_t) p->batch && done + k < p->n; k++)
        bus_event_append (p->svc, txn, "echo.seen",
                          json_pack ("{s:s, s:s, s:I}", "request", "burst", "from", "publisher",
                                     "i", (json_int_t) (done + k)), NULL);
    uint8_t v [8];
    bus_u64_to_key (done + k, v);
    bus_txn_put (txn, db, "emitted", 7, v, 8);
    if (bus_service_commit (p->svc, &txn))
        fprintf (stderr, "publisher: commit failed\n");
    return 0;
}

static int
s_publisher_main (const char *dir, uint64_t n, int batch, int ms, const char *section)
{
    char path [PATH_MAX], err [256] = "";
    snprintf (path, sizeof path, "%s/sanctum.conf", dir);
    bus_config_t *config = NULL;
    if (bus_config_load (&config, path, err, sizeof err)) {
        fprintf (stderr, "publisher: %s\n", err);
        return 1;
    }
    bus_log_init ("publisher", "warn");
    static const char *const dbs [] = { "records", NULL };
    s_pub_t p = { NULL, n, batch };
    p.svc = bus_service_new (config, section, "pub-1", dbs, err, sizeof err);
    if (!p.svc) {
        fprintf (stderr, "publisher: %s\n", err);
        return 1;
    }
    zloop_timer (bus_service_loop (p.svc), (size_t) ms, 0, s_pub_tick, &p);
    int rc = bus_service_run (p.svc);
    bus_service_destroy (&p.svc);
    bus_config_destroy (&config);
    return rc ? 1 : 0;
}

/* --- the follower process ---------------------------------------------------- */

static uint64_t s_target;
static bus_follow_t *s_follow;

static int
s_on_done_check (zloop_t *loop, int timer_id, void *arg)
{
    return s_stored_count (s_store, "count") >= s_target && bus_follow_idle (s_follow) ? -1 : 0;
}

static int
s_follower_main (const char *dir, const char *store_dir, uint64_t n)
{
    char path [PATH_MAX], err [256] = "";
    snprintf (path, sizeof path, "%s/sanctum.conf", dir);
    bus_config_t *config = NULL;
    if (bus_config_load (&config, path, err, sizeof err)) {
        fprintf (stderr, "follower: %s\n", err);
        return 1;
    }
    bus_log_init ("follower", "warn");
    zcert_t *cert = bus_keys_load (bus_config_str (config, "sanctum", "keys_dir"), "auditor", false);
    if (!cert || bus_store_open (&s_store, store_dir, 64UL << 20, s_follower_dbs))
        return 1;
    s_count_db = bus_store_db (s_store, "count");
    zloop_t *loop = zloop_new ();
    s_follow = s_follower (loop, config, cert, s_store);
    if (!s_follow)
        return 1;
    s_target = n;
    zloop_timer (loop, 5, 0, s_on_done_check, NULL);
    zloop_start (loop);
    int rc = s_order_errors || s_stored_count (s_store, "count") != n ? 2 : 0;
    bus_follow_destroy (&s_follow);
    zloop_destroy (&loop);
    bus_store_destroy (&s_store);
    zcert_destroy (&cert);
    bus_config_destroy (&config);
    return rc;
}

/* --- the test side -------------------------------------------------------- */

typedef struct {
    test_service_t *env;            /* the publisher's config, keys and ports */
    zcert_t *auditor;               /* svc:auditor: the follower */
    zcert_t *ops;                   /* ops:test: a client for health */
    pid_t publisher;
    char store_dir [256];
    zloop_t *loop;
    bus_follow_t *follow;
} fixture_t;

static fixture_t s_fx;

/*  Run this binary with args, its stderr into DIR/name.log. */
static pid_t
s_spawn (const char *name, char *const args [])
{
    char exe [PATH_MAX], log [PATH_MAX];
    ssize_t len = readlink ("/proc/self/exe", exe, sizeof exe - 1);
    assert_true (len > 0);
    exe [len] = 0;
    snprintf (log, sizeof log, "%s/%s.log", test_service_dir (s_fx.env), name);
    fflush (NULL);
    pid_t pid = fork ();
    if (pid == 0) {
        prctl (PR_SET_PDEATHSIG, SIGKILL);
        if (!freopen (log, "a", stderr))
            _exit (126);
        char *argv [8] = { exe };
        for (int i = 0; args [i] && i < 6; i++)
            argv [i + 1] = args [i];
        execv (exe, argv);
        _exit (127);
    }
    assert_true (pid > 0);
    return pid;
}

static void
s_publisher_start (uint64_t n, int batch, int ms)
{
    char sn [32], sb [32], sm [32];
    snprintf (sn, sizeof sn, "%llu", (unsigned long long) n);
    snprintf (sb, sizeof sb, "%d", batch);
    snprintf (sm, sizeof sm, "%d", ms);
    char *args [] = { "--publisher", (char *) test_service_dir (s_fx.env), sn, sb, sm, NULL };
    s_fx.publisher = s_spawn ("publisher", args);
}

static void
s_publisher_kill (int sig)
{
    if (s_fx.publisher > 0) {
        kill (s_fx.publisher, sig);
        waitpid (s_fx.publisher, NULL, 0);
    }
    s_fx.publisher = 0;
}

/*  The publisher's health: last_seq and first_seq (-1 when it does not
    answer). */
static void
s_health (int64_t *last_seq, int64_t *first_seq)
{
    *last_seq = *first_seq = -1;
    bus_client_t *client = bus_client_new (test_service_rpc (s_fx.env), test_service_server_key (s_fx.env),
                                           s_fx.ops, 300, 0);
    proto_msg_t *reply = NULL;
    if (client && bus_client_call (client, "health", NULL, NULL, &reply) == 0 && reply->ok) {
        *last_seq = json_integer_value (json_object_get (reply->body, "last_seq"));
        *first_seq = json_integer_value (json_object_get (reply->body, "first_seq"));
    }
    proto_msg_destroy (&reply);
    bus_client_destroy (&client);
}

/*  Wait until the publisher has published at least seq (ms at most). */
static int64_t
s_wait_published (int64_t seq, int ms)
{
    int64_t last = -1, first;
    for (int64_t until = zclock_mono () + ms; zclock_mono () < until; zclock_sleep (20)) {
        s_health (&last, &first);
        if (last >= seq)
            break;
    }
    return last;
}

static int s_want_count;

static int
s_on_check (zloop_t *loop, int timer_id, void *arg)
{
    uint64_t n = s_fx.follow && !bus_follow_idle (s_fx.follow) ? 0
               : s_store ? s_stored_count (s_store, "count") : s_memory_count;
    return n >= (uint64_t) s_want_count ? -1 : 0;
}

static int
s_on_give_up (zloop_t *loop, int timer_id, void *arg)
{
    return -1;
}

/*  Run the test thread's zloop until the follower is idle with count
    events counted, or ms passed. */
static void
s_run_until (int count, int ms)
{
    s_want_count = count;
    int check = zloop_timer (s_fx.loop, 10, 0, s_on_check, NULL);
    int give_up = zloop_timer (s_fx.loop, (size_t) ms, 1, s_on_give_up, NULL);
    zloop_start (s_fx.loop);
    zloop_timer_end (s_fx.loop, check);
    zloop_timer_end (s_fx.loop, give_up);
}

/*  A fresh publisher environment (lines: extra [sanctum] config) and
    follower store; counters reset. */
static void
s_env (const char *lines)
{
    char err [256] = "", all [512];
    snprintf (all, sizeof all, "map_size_mb = 512\nrpc_timeout_ms = 500\nrpc_retries = 3\n%s", lines);
    s_fx.env = test_service_new ("authz", NULL, all, err, sizeof err);
    if (!s_fx.env)
        fprintf (stderr, "test_service_new: %s\n", err);
    assert_non_null (s_fx.env);
    s_fx.auditor = test_service_cert (s_fx.env, "auditor", "svc:auditor");
    s_fx.ops = test_service_cert (s_fx.env, "ops-test", "ops:test");
    assert_true (s_fx.auditor && s_fx.ops);
    snprintf (s_fx.store_dir, sizeof s_fx.store_dir, "%s/follower", test_service_dir (s_fx.env));
    s_fx.loop = zloop_new ();
    s_order_errors = s_memory_count = s_memory_last = 0;
    s_loss_from = s_loss_to = s_loss_calls = 0;
}

static void
s_store_open (void)
{
    assert_int_equal (bus_store_open (&s_store, s_fx.store_dir, 512UL << 20, s_follower_dbs), 0);
    s_count_db = bus_store_db (s_store, "count");
}

static int
s_teardown (void **state)
{
    bus_follow_destroy (&s_fx.follow);
    bus_store_destroy (&s_store);
    s_publisher_kill (SIGTERM);
    zloop_destroy (&s_fx.loop);
    zcert_destroy (&s_fx.auditor);
    zcert_destroy (&s_fx.ops);
    test_service_destroy (&s_fx.env);
    return 0;
}

/* --- tests ------------------------------------------------------------------- */

/*  200,000 events in a burst, far past the PUB/SUB high-water marks
    (100,000): the live stream drops events, replays fill the gaps, and
    the counter equals 200,000; the publisher, whose outbox_acked_by is the
    follower, trims behind it without losing one. */
static void
test_burst_200k (void **state)
{
    s_env ("outbox_keep = 1000\n");
    s_store_open ();
    s_fx.follow = s_follower (s_fx.loop, test_service_config (s_fx.env), s_fx.auditor, s_store);
    assert_non_null (s_fx.follow);
    s_publisher_start (200000, 5000, 1);
    s_run_until (200000, 120000);
    fprintf (stderr, "# %llu counted, mark %llu, %llu lost\n",
             (unsigned long long) s_stored_count (s_store, "count"),
             (unsigned long long) bus_follow_mark (s_fx.follow, "authz"),
             (unsigned long long) bus_follow_lost (s_fx.follow));
    assert_int_equal (s_stored_count (s_store, "count"), 200000);
    assert_int_equal (bus_follow_lost (s_fx.follow), 0);
    assert_int_equal (s_order_errors, 0);
    int64_t last, first;
    s_health (&last, &first);
    assert_int_equal (bus_follow_mark (s_fx.follow, "authz"), last);   /* service.started + 200,000 */
    assert_int_equal (last, 200001);

    /* 200,000 more while the follower is away: it comes back from its
       stored mark, all of them by replay */
    bus_follow_destroy (&s_fx.follow);
    s_publisher_kill (SIGKILL);
    s_publisher_start (400000, 5000, 1);
    assert_true (s_wait_published (400002, 60000) >= 400002);
    s_fx.follow = s_follower (s_fx.loop, test_service_config (s_fx.env), s_fx.auditor, s_store);
    assert_non_null (s_fx.follow);
    assert_int_equal (bus_follow_mark (s_fx.follow, "authz"), 200001);
    s_run_until (400000, 120000);
    assert_int_equal (s_stored_count (s_store, "count"), 400000);
    assert_int_equal (bus_follow_lost (s_fx.follow), 0);
    assert_int_equal (s_order_errors, 0);
}

/*  The publisher SIGKILLed mid-burst and started again: it goes on from
    its store; the follower, through replays, counts every event once. */
static void
test_publisher_restarted (void **state)
{
    s_env ("outbox_keep = 500\n");
    s_store_open ();
    s_fx.follow = s_follower (s_fx.loop, test_service_config (s_fx.env), s_fx.auditor, s_store);
    assert_non_null (s_fx.follow);
    s_publisher_start (30000, 5, 1);
    for (int round = 0; round < 3; round++) {
        s_run_until (5000 * (round + 1), 20000);      /* mid-burst */
        uint64_t seen = s_stored_count (s_store, "count");
        fprintf (stderr, "# round %d: %llu counted when the publisher is killed\n", round, (unsigned long long) seen);
        assert_true (seen >= 5000U * (round + 1) && seen < 30000);
        s_publisher_kill (SIGKILL);
        s_run_until (-1, 300);                           /* replays fail meanwhile */
        s_publisher_start (30000, 5, 1);
    }
    s_run_until (30000, 60000);
    assert_int_equal (s_stored_count (s_store, "count"), 30000);
    assert_int_equal (bus_follow_lost (s_fx.follow), 0);
    assert_int_equal (s_order_errors, 0);
    int64_t last, first;
    s_health (&last, &first);
    assert_int_equal (last, 30000 + 4);                 /* and four service.started */
}

/*  The follower SIGKILLed mid-burst (a process of its own) and started
    again: its counter and mark committed together, so it goes on without
    a loss or a double; the publisher trimmed only what it had stored. */
static void
test_follower_killed (void **state)
{
    s_env ("outbox_keep = 100\n");
    char sn [] = "40000";
    char *args [] = { "--follower", (char *) test_service_dir (s_fx.env), s_fx.store_dir, sn, NULL };
    s_publisher_start (40000, 10, 1);
    pid_t follower = 0;
    uint64_t seen [3] = { 0 };
    for (int round = 0; round < 3; round++) {
        follower = s_spawn ("follower", args);
        s_wait_published (10000 * (round + 1), 60000);
        zclock_sleep (50);
        kill (follower, SIGKILL);
        waitpid (follower, NULL, 0);
        s_store_open ();
        seen [round] = s_stored_count (s_store, "count");
        bus_store_destroy (&s_store);
        assert_true (seen [round] < 40000);
    }
    follower = s_spawn ("follower", args);
    int status = -1;
    for (int waited = 0; waited < 90000; waited += 20) {
        if (waitpid (follower, &status, WNOHANG) == follower)
            break;
        zclock_sleep (20);
    }
    if (!WIFEXITED (status)) {
        kill (follower, SIGKILL);
        waitpid (follower, NULL, 0);
    }
    fprintf (stderr, "# counted before each kill: %llu, %llu, %llu\n", (unsigned long long) seen [0],
             (unsigned long long) seen [1], (unsigned long long) seen [2]);
    assert_true (WIFEXITED (status));
    assert_int_equal (WEXITSTATUS (status), 0);           /* count == 40,000, order kept */
    s_store_open ();
    assert_int_equal (s_stored_count (s_store, "count"), 40000);
    assert_true (seen [2] > 0);
}

/*  Events the publisher trimmed (outbox_max) before the follower came:
    reported as a loss (callback, counter, log) with the exact range, the
    rest counted; lost + counted = published. The loss is recorded in the
    transaction that moves the mark (record_loss): its first attempt fails,
    so nothing of that transaction stays and the loss is reported and
    recorded again, once. */
static void
test_trimmed_gap (void **state)
{
    s_env ("outbox_acked_by =\noutbox_max = 1000\n");
    s_store_open ();
    s_record_fail = 1;
    s_publisher_start (5000, 100, 1);
    int64_t last = s_wait_published (5001, 30000), first = -1;
    assert_int_equal (last, 5001);
    for (int64_t until = zclock_mono () + 5000; zclock_mono () < until && first < 2; zclock_sleep (50))
        s_health (&last, &first);
    assert_true (first > 2);                          /* the trim ran */
    s_fx.follow = s_follower (s_fx.loop, test_service_config (s_fx.env), s_fx.auditor, s_store);
    assert_non_null (s_fx.follow);
    s_run_until ((int) (last - first + 1), 20000);
    s_run_until (-1, 300);
    assert_int_equal (s_record_fail, 0);
    assert_int_equal (s_loss_calls, 2);               /* reported again after the failed record */
    assert_int_equal (s_loss_from, 1);
    assert_int_equal (s_loss_to, (uint64_t) first - 1);
    assert_int_equal (s_stored_count (s_store, "lost_from"), 1);
    assert_int_equal (s_stored_count (s_store, "lost_to"), (uint64_t) first - 1);
    assert_int_equal (s_stored_count (s_store, "count"), (uint64_t) (last - first + 1));
    assert_int_equal (bus_follow_mark (s_fx.follow, "authz"), (uint64_t) last);
    /* the loss is behind the mark, committed: a new follower does not report it again */
    bus_follow_destroy (&s_fx.follow);
    s_fx.follow = s_follower (s_fx.loop, test_service_config (s_fx.env), s_fx.auditor, s_store);
    s_run_until (-1, 500);
    assert_int_equal (s_loss_calls, 2);
    assert_int_equal (s_order_errors, 0);
}

/*  Two publishers at once (authz and sandbox, each its own process,
    config and keys): one follower, each publisher's events in its own seq
    order, every one counted once. */
static void
test_two_publishers (void **state)
{
    s_env ("outbox_keep = 100\n");
    char err [256] = "";
    test_service_t *env2 = test_service_new ("sandbox", NULL, "map_size_mb = 256\n", err, sizeof err);
    assert_non_null (env2);
    /* the follower's key is svc:auditor there too */
    assert_int_equal (bus_allow_add (bus_config_str (test_service_config (env2), "sanctum", "allow_dir"), "auditor",
                                     zcert_public_txt (s_fx.auditor), "svc:auditor"), 0);
    s_store_open ();
    s_fx.follow = s_follower (s_fx.loop, test_service_config (s_fx.env), s_fx.auditor, s_store);
    assert_non_null (s_fx.follow);
    assert_int_equal (bus_follow_add (s_fx.follow, "sandbox", "svc:sandbox", test_service_pub (env2),
                                      test_service_rpc (env2), test_service_server_key (env2), 500, 3), 0);
    s_publisher_start (20000, 20, 1);
    char *args [] = { "--publisher", (char *) test_service_dir (env2), "20000", "20", "1", "sandbox", NULL };
    pid_t second = s_spawn ("publisher2", args);
    s_run_until (40000, 60000);
    kill (second, SIGTERM);
    waitpid (second, NULL, 0);
    assert_int_equal (s_stored_count (s_store, "count"), 40000);
    assert_int_equal (bus_follow_mark (s_fx.follow, "authz"), 20001);
    assert_int_equal (bus_follow_mark (s_fx.follow, "sandbox"), 20001);
    assert_int_equal (bus_follow_lost (s_fx.follow), 0);
    assert_int_equal (s_order_errors, 0);
    test_service_destroy (&env2);
}

/* --- a follower of a service (bus_follow_for) --------------------------------- */

static bus_follow_t *s_svc_follow;      /* the follower service's thread only */

/*  The follower service's callback: count (as s_on_event), and emit an
    event of its own in the same transaction. */
static int
s_on_event_emit (bus_follow_t *follow, bus_txn_t *txn, proto_msg_t *event, void *arg)
{
    int rc = s_on_event (follow, txn, event, arg);
    return rc ? rc : bus_event_append (arg, txn, "echo.seen",
                                       json_pack ("{s:s, s:s, s:I}", "request", "followed", "from", event->pub,
                                                  "seq", (json_int_t) event->seq), NULL);
}

static int
s_svc_start (bus_service_t *svc, void **state)
{
    bus_follow_opts_t opts = { .name = "audit", .topics = s_topics, .fn = s_on_event_emit, .arg = svc,
                               .replay_ms = 200 };
    s_count_db = bus_store_db (bus_service_store (svc), "count");
    s_svc_follow = bus_follow_for (svc, &opts, false);
    return s_svc_follow ? bus_follow_add_service (s_svc_follow, bus_service_config (svc), "authz") : BUS_ENOMEM;
}

static void
s_svc_stop (bus_service_t *svc, void **state)
{
    bus_follow_destroy (&s_svc_follow);
}

static const bus_daemon_t s_svc_daemon = { .section = "auditor", .db_names = s_follower_dbs, .start = s_svc_start, .stop = s_svc_stop };

/*  A service that follows another (bus_follow_for, on its reactor, in its
    store, the publisher named by its config): every event it applies
    also emits one of its own in the same transaction, published by the
    commit. */
static void
test_service_follower (void **state)
{
    s_env ("");
    char err [256] = "", lines [512], path [PATH_MAX];
    snprintf (lines, sizeof lines, "map_size_mb = 64\n[authz]\nrpc = %s\npub = %s\n",
              test_service_rpc (s_fx.env), test_service_pub (s_fx.env));
    test_service_t *env2 = test_service_new ("auditor", NULL, lines, err, sizeof err);
    if (!env2)
        fprintf (stderr, "test_service_new: %s\n", err);
    assert_non_null (env2);
    /* the follower service knows the publisher's key; the publisher allows the follower's */
    snprintf (path, sizeof path, "%s/authz.key", bus_config_str (test_service_config (s_fx.env), "sanctum", "keys_dir"));
    zcert_t *cert = zcert_load (path);
    assert_non_null (cert);
    snprintf (path, sizeof path, "%s/authz.key", bus_config_str (test_service_config (env2), "sanctum", "keys_dir"));
    assert_int_equal (zcert_save_public (cert, path), 0);
    zcert_destroy (&cert);
    assert_int_equal (bus_allow_add (bus_config_str (test_service_config (s_fx.env), "sanctum", "allow_dir"),
                                     "auditor2", test_service_server_key (env2), "svc:auditor"), 0);
    s_publisher_start (2000, 50, 1);
    assert_int_equal (test_service_start (env2, &s_svc_daemon, "follower-1", 0, err, sizeof err), 0);
    /* its own events: service.started, then one per event followed */
    zcert_t *ops = test_service_cert (env2, "ops-test", "ops:test");
    int64_t last = -1;
    for (int64_t until = zclock_mono () + 30000; zclock_mono () < until && last < 2001; zclock_sleep (50)) {
        bus_client_t *client = bus_client_new (test_service_rpc (env2), test_service_server_key (env2), ops, 300, 0);
        proto_msg_t *reply = NULL;
        if (client && bus_client_call (client, "health", NULL, NULL, &reply) == 0 && reply->ok)
            last = json_integer_value (json_object_get (reply->body, "last_seq"));
        proto_msg_destroy (&reply);
        bus_client_destroy (&client);
    }
    assert_int_equal (last, 2001);
    assert_int_equal (test_service_stop (env2), 0);
    /* its store: the counter and the mark */
    snprintf (path, sizeof path, "%s/var/auditor", test_service_dir (env2));
    assert_int_equal (bus_store_open (&s_store, path, 64UL << 20, s_follower_dbs), 0);
    s_count_db = bus_store_db (s_store, "count");
    assert_int_equal (s_stored_count (s_store, "count"), 2000);
    assert_int_equal (s_order_errors, 0);
    zcert_destroy (&ops);
    bus_store_destroy (&s_store);
    test_service_destroy (&env2);
}

/*  The id of the follower store's last commit: it grows by one per commit. */
static uint64_t
s_snapshot (void)
{
    bus_txn_t *txn = bus_txn_begin (s_store, false);
    assert_non_null (txn);
    uint64_t id = bus_txn_snapshot (txn);
    bus_txn_abort (&txn);
    return id;
}

/*  The mark committed in the follower's store for name/source. */
static uint64_t
s_committed_mark (const char *key)
{
    bus_txn_t *txn = bus_txn_begin (s_store, false);
    assert_non_null (txn);
    const void *val;
    size_t len;
    uint64_t mark = bus_txn_get (txn, bus_store_db (s_store, BUS_FOLLOW_DB), key, strlen (key), &val, &len) == 0
                    && len == 8 ? bus_key_to_u64 (val) : 0;
    bus_txn_abort (&txn);
    return mark;
}

static uint64_t s_want_mark;

static int
s_on_mark_check (zloop_t *loop, int timer_id, void *arg)
{
    return bus_follow_mark (s_fx.follow, "authz") >= s_want_mark ? -1 : 0;
}

/*  Events no topic lets through: the mark moves over them in memory and
    is committed only with the next event applied, once it runs 1000
    events or 1 s ahead of the committed one, or before a replay is asked
    (a replay asks from a committed mark only: the publisher, whose
    outbox_acked_by this follower is, trims what it asks past). 3,000 such
    events in 60 transactions cost the follower's store a few commits, not
    60; once the publisher is quiet the committed mark catches up (the
    tail check's replay commits it first); nothing reaches the callback;
    and a follower started again on the store goes on from that mark. */
static void
test_skipped_events_commit_lazily (void **state)
{
    s_env ("outbox_keep = 100\n");
    s_store_open ();
    static const char *const none [] = { "nothing.", NULL };
    bus_follow_opts_t opts = { .name = "skip", .topics = none, .fn = s_on_event, .loss = s_on_loss,
                               .record_loss = s_on_record_loss, .store = s_store, .replay_ms = 200 };
    s_fx.follow = bus_follow_new (s_fx.loop, s_fx.auditor, &opts);
    assert_non_null (s_fx.follow);
    assert_int_equal (bus_follow_add_service (s_fx.follow, test_service_config (s_fx.env), "authz"), 0);
    uint64_t before = s_snapshot ();
    s_publisher_start (3000, 50, 5);
    s_want_mark = 3001;                                 /* service.started + 3,000 */
    int check = zloop_timer (s_fx.loop, 10, 0, s_on_mark_check, NULL);
    int give_up = zloop_timer (s_fx.loop, 30000, 1, s_on_give_up, NULL);
    zloop_start (s_fx.loop);
    zloop_timer_end (s_fx.loop, check);
    zloop_timer_end (s_fx.loop, give_up);
    assert_int_equal (bus_follow_mark (s_fx.follow, "authz"), 3001);
    uint64_t moved = s_snapshot () - before;
    /* the publisher is quiet now: within a replay period or two the
       tail check commits the mark */
    int settle = zloop_timer (s_fx.loop, 700, 1, s_on_give_up, NULL);
    zloop_start (s_fx.loop);
    zloop_timer_end (s_fx.loop, settle);
    uint64_t commits = s_snapshot () - before;
    fprintf (stderr, "# 3,000 skipped events: %llu commits while they came, %llu in all\n",
             (unsigned long long) moved, (unsigned long long) commits);
    assert_int_equal (s_committed_mark ("skip/authz"), 3001);
    assert_true (commits >= 1 && commits <= 12);
    assert_int_equal (s_stored_count (s_store, "count"), 0);
    assert_int_equal (bus_follow_lost (s_fx.follow), 0);
    assert_int_equal (s_order_errors, 0);

    /* started again on the same store: from the committed mark, nothing lost
       although the publisher kept only its last 100 */
    bus_follow_destroy (&s_fx.follow);
    s_fx.follow = bus_follow_new (s_fx.loop, s_fx.auditor, &opts);
    assert_non_null (s_fx.follow);
    assert_int_equal (bus_follow_add_service (s_fx.follow, test_service_config (s_fx.env), "authz"), 0);
    assert_int_equal (bus_follow_mark (s_fx.follow, "authz"), 3001);
    int again = zloop_timer (s_fx.loop, 700, 1, s_on_give_up, NULL);
    zloop_start (s_fx.loop);
    zloop_timer_end (s_fx.loop, again);
    assert_int_equal (bus_follow_lost (s_fx.follow), 0);
    assert_int_equal (s_loss_calls, 0);
}

/*  A callback that keeps one event in a thousand (seq a multiple of
    1000: counted) and answers BUS_FOLLOW_NOTHING for the others. */
static uint64_t s_nothing_calls;

static int
s_on_event_rarely (bus_follow_t *follow, bus_txn_t *txn, proto_msg_t *event, void *arg)
{
    s_nothing_calls++;
    if (event->seq % 1000)
        return BUS_FOLLOW_NOTHING;
    s_put (txn, "count", s_get (txn, "count") + 1);
    return bus_txn_error (txn);
}

/*  Events the topics let through but the callback answers
    BUS_FOLLOW_NOTHING (it wrote nothing): like events no topic lets
    through, the mark moves over them in memory; the events it did write
    commit with their marks. 3,000 events in 60 transactions, three of
    them kept: every one reached the callback, the three are stored, and
    the store saw a few commits (at most one per written event, and the
    mark's), not 60. */
static void
test_nothing_written_commits_lazily (void **state)
{
    s_env ("");
    s_store_open ();
    bus_follow_opts_t opts = { .name = "rare", .topics = s_topics, .fn = s_on_event_rarely, .loss = s_on_loss,
                               .record_loss = s_on_record_loss, .store = s_store, .replay_ms = 200 };
    s_fx.follow = bus_follow_new (s_fx.loop, s_fx.auditor, &opts);
    assert_non_null (s_fx.follow);
    assert_int_equal (bus_follow_add_service (s_fx.follow, test_service_config (s_fx.env), "authz"), 0);
    uint64_t before = s_snapshot ();
    s_nothing_calls = 0;
    s_publisher_start (3000, 50, 5);
    s_want_mark = 3001;                                 /* service.started + 3,000 */
    int check = zloop_timer (s_fx.loop, 10, 0, s_on_mark_check, NULL);
    int give_up = zloop_timer (s_fx.loop, 30000, 1, s_on_give_up, NULL);
    zloop_start (s_fx.loop);
    zloop_timer_end (s_fx.loop, check);
    zloop_timer_end (s_fx.loop, give_up);
    int settle = zloop_timer (s_fx.loop, 700, 1, s_on_give_up, NULL);
    zloop_start (s_fx.loop);
    zloop_timer_end (s_fx.loop, settle);
    uint64_t commits = s_snapshot () - before;
    fprintf (stderr, "# 3,000 events, 3 written: %llu commits\n", (unsigned long long) commits);
    assert_int_equal (s_nothing_calls, 3000);
    assert_int_equal (s_stored_count (s_store, "count"), 3);
    assert_int_equal (s_committed_mark ("rare/authz"), 3001);
    /* the three writes need not be three commits: when the follower
       falls behind, the events it reads in one batch share one (CI saw 2) */
    assert_true (commits >= 1 && commits <= 15);
    assert_int_equal (bus_follow_lost (s_fx.follow), 0);
}

/*  Memory mode: from the start (every kept event), and from now (only
    what comes after). */
static void
test_memory_mode (void **state)
{
    s_env ("");
    s_publisher_start (3000, 100, 1);
    assert_int_equal (s_wait_published (3001, 30000), 3001);
    bus_follow_opts_t opts = { .name = "tap", .topics = s_topics, .fn = s_on_event, .loss = s_on_loss,
                               .replay_ms = 100 };
    s_fx.follow = bus_follow_new (s_fx.loop, s_fx.ops, &opts);
    assert_non_null (s_fx.follow);
    assert_int_equal (bus_follow_add_service (s_fx.follow, test_service_config (s_fx.env), "authz"), 0);
    assert_int_equal (bus_follow_add_service (s_fx.follow, test_service_config (s_fx.env), "authz"), BUS_EINVAL);
    s_run_until (3000, 20000);
    assert_int_equal (s_memory_count, 3000);
    bus_follow_destroy (&s_fx.follow);

    /* from now: nothing old; then 2,000 more come */
    s_memory_count = s_memory_last = 0;
    opts.from_now = true;
    s_fx.follow = bus_follow_new (s_fx.loop, s_fx.ops, &opts);
    assert_int_equal (bus_follow_add_service (s_fx.follow, test_service_config (s_fx.env), "authz"), 0);
    s_run_until (-1, 500);
    assert_int_equal (s_memory_count, 0);
    assert_int_equal (bus_follow_mark (s_fx.follow, "authz"), 3001);
    s_publisher_kill (SIGKILL);
    s_publisher_start (5000, 100, 1);
    s_run_until (2000, 20000);
    s_run_until (-1, 300);
    assert_int_equal (s_memory_count, 2000);
    assert_int_equal (s_order_errors, 0);
    assert_int_equal (s_loss_calls, 0);

    /* bad options */
    bus_follow_opts_t bad = { .name = "a/b", .fn = s_on_event };
    assert_null (bus_follow_new (s_fx.loop, s_fx.ops, &bad));
    bad.name = "x";
    bad.fn = NULL;
    assert_null (bus_follow_new (s_fx.loop, s_fx.ops, &bad));
    bus_store_t *store = NULL;
    char dir [256];
    snprintf (dir, sizeof dir, "%s/nodb", test_service_dir (s_fx.env));
    static const char *const dbs [] = { "other", NULL };
    assert_int_equal (bus_store_open (&store, dir, 16UL << 20, dbs), 0);
    bus_follow_opts_t nodb = { .name = "x", .fn = s_on_event, .store = store };
    assert_null (bus_follow_new (s_fx.loop, s_fx.ops, &nodb));
    bus_store_destroy (&store);
}

int
main (int argc, char **argv)
{
    if ((argc == 6 || argc == 7) && streq (argv [1], "--publisher"))
        return s_publisher_main (argv [2], strtoull (argv [3], NULL, 10), atoi (argv [4]), atoi (argv [5]),
                                 argc == 7 ? argv [6] : "authz");
    if (argc == 5 && streq (argv [1], "--follower"))
        return s_follower_main (argv [2], argv [3], strtoull (argv [4], NULL, 10));
    bus_log_init ("test_follow", "error");
    const struct CMUnitTest tests [] = {
        cmocka_unit_test_teardown (test_burst_200k, s_teardown),
        cmocka_unit_test_teardown (test_publisher_restarted, s_teardown),
        cmocka_unit_test_teardown (test_follower_killed, s_teardown),
        cmocka_unit_test_teardown (test_trimmed_gap, s_teardown),
        cmocka_unit_test_teardown (test_two_publishers, s_teardown),
        cmocka_unit_test_teardown (test_memory_mode, s_teardown),
        cmocka_unit_test_teardown (test_skipped_events_commit_lazily, s_teardown),
        cmocka_unit_test_teardown (test_nothing_written_commits_lazily, s_teardown),
        cmocka_unit_test_teardown (test_service_follower, s_teardown),
    };
    int failed = cmocka_run_group_tests (tests, NULL, NULL);
    return test_service_summary ((int) (sizeof tests / sizeof tests [0]), failed);
}
