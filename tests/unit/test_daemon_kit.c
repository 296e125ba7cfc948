/*  test_daemon_kit.c — unit tests for what a daemon declares beside its
    timers: event followers and an HTTP listener (bus_daemon.h), started by
    bus_daemon_start on the service's reactor and stopped by
    bus_daemon_stop.

    A telemetry service runs on a thread of its own (test_service.c). It
    declares a durable follower of its own events (echo.seen: every echo
    request emits one) that counts them in its store, in the follower's
    transaction, and an HTTP listener whose GET /count answers that count
    from the store. So one test drives both, end to end through the
    sockets: echo over the bus, the event through the follower, the count
    over HTTP.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <curl/curl.h>
#include <cmocka.h>

#include "bus_client.h"
#include "bus_config.h"
#include "bus_daemon.h"
#include "bus_error.h"
#include "bus_service.h"
#include "../support/test_service.h"

#define S_WAIT_MS 10000

/*  The daemon's state: made by start, checked by every callback. */
typedef struct {
    pthread_t reactor;
    int counts_db;
} s_state_t;

static s_state_t *s_live;
static atomic_int s_wrong;          /* callbacks off the reactor or with another state */
static atomic_int s_applied;        /* events the follower's callback saw */

static void
s_check (void *state)
{
    s_state_t *self = state;
    if (self != s_live || !pthread_equal (pthread_self (), self->reactor))
        atomic_fetch_add (&s_wrong, 1);
}

static int
s_start (bus_service_t *svc, void **state)
{
    s_state_t *self = calloc (1, sizeof *self);
    if (!self)
        return -1;
    self->reactor = pthread_self ();
    self->counts_db = bus_store_db (bus_service_store (svc), "counts");
    s_live = self;
    *state = self;
    return 0;
}

static void
s_stop (bus_service_t *svc, void **state)
{
    s_live = NULL;
    free (*state);
    *state = NULL;
}

/*  The stored count, read in txn. */
static uint64_t
s_count (bus_txn_t *txn, int db)
{
    const void *val = NULL;
    size_t len = 0;
    if (bus_txn_get (txn, db, "echo", 4, &val, &len) || len != 8)
        return 0;
    return bus_key_to_u64 (val);
}

/*  The follower's callback: one more echo seen, in the transaction that
    also stores the follower's mark. */
static int
s_on_echo (bus_service_t *svc, void *state, bus_txn_t *txn, proto_msg_t *event)
{
    s_check (state);
    s_state_t *self = state;
    assert_non_null (txn);
    uint8_t buf [8];
    bus_u64_to_key (s_count (txn, self->counts_db) + 1, buf);
    atomic_fetch_add (&s_applied, 1);
    return bus_txn_put (txn, self->counts_db, "echo", 4, buf, 8);
}

/*  GET /count: the stored count, as text. */
static void
s_on_count (bus_service_t *svc, void *state, bus_http_exchange_t *ex)
{
    s_check (state);
    s_state_t *self = state;
    bus_txn_t *txn = bus_txn_begin (bus_service_store (svc), false);
    char text [32];
    int n = snprintf (text, sizeof text, "%llu", (unsigned long long) (txn ? s_count (txn, self->counts_db) : 0));
    bus_txn_abort (&txn);
    bus_http_respond (ex, 200, "text/plain", text, (size_t) n);
}

static const char *const s_dbs [] = { BUS_FOLLOW_DB, "counts", NULL };
static const char *const s_self [] = { "telemetry", NULL };
static const char *const s_topics [] = { "echo.seen", NULL };
static const bus_follower_t s_followers [] = {
    { .name = "echoes", .publishers = s_self, .topics = s_topics, .fn = s_on_echo },
    { 0 }
};
static const bus_route_t s_routes [] = {
    { .method = "GET", .path = "/count", .fn = s_on_count },
    { 0 }
};
static const bus_listener_t s_listener = { .routes = s_routes };
static const bus_daemon_t s_daemon = {
    .section = "telemetry", .db_names = s_dbs, .start = s_start, .stop = s_stop,
    .followers = s_followers, .http = &s_listener,
};

/*  The same follower where the service has no db for its marks. */
static const char *const s_no_follow_dbs [] = { "counts", NULL };
static const bus_daemon_t s_no_marks_daemon = {
    .section = "telemetry", .db_names = s_no_follow_dbs, .start = s_start, .stop = s_stop,
    .followers = s_followers,
};

static test_service_t *s_env;
static zcert_t *s_ops;
static int s_port;

static int
s_setup (void **state)
{
    atomic_store (&s_wrong, 0);
    atomic_store (&s_applied, 0);
    s_port = test_service_free_port ();
    char address [64];
    snprintf (address, sizeof address, "127.0.0.1:%d", s_port);
    setenv ("SANCTUM_TELEMETRY_HTTP", address, 1);
    char err [256] = "";
    s_env = test_service_new ("telemetry", NULL, "map_size_mb = 16\nrpc_timeout_ms = 1000\n", err, sizeof err);
    if (!s_env)
        fprintf (stderr, "test_service_new: %s\n", err);
    assert_non_null (s_env);
    s_ops = test_service_cert (s_env, "ops-test", "ops:test");
    assert_non_null (s_ops);
    return 0;
}

static int
s_teardown (void **state)
{
    test_service_stop (s_env);
    zcert_destroy (&s_ops);
    test_service_destroy (&s_env);
    unsetenv ("SANCTUM_TELEMETRY_HTTP");
    return 0;
}

static size_t
s_collect (char *data, size_t size, size_t n, void *arg)
{
    char *buf = arg;
    size_t have = strlen (buf);
    size_t take = size * n;
    if (have + take >= 64)
        take = 63 - have;
    memcpy (buf + have, data, take);
    buf [have + take] = 0;
    return size * n;
}

/*  GET /count over HTTP: the count, or -1 when it did not answer 200. */
static long
s_get_count (void)
{
    char url [64], body [64] = "";
    snprintf (url, sizeof url, "http://127.0.0.1:%d/count", s_port);
    CURL *curl = curl_easy_init ();
    curl_easy_setopt (curl, CURLOPT_URL, url);
    curl_easy_setopt (curl, CURLOPT_WRITEFUNCTION, s_collect);
    curl_easy_setopt (curl, CURLOPT_WRITEDATA, body);
    curl_easy_setopt (curl, CURLOPT_TIMEOUT_MS, 2000L);
    long status = 0;
    CURLcode rc = curl_easy_perform (curl);
    curl_easy_getinfo (curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup (curl);
    return rc == CURLE_OK && status == 200 ? atol (body) : -1;
}

/*  Wait until the count over HTTP is n; returns the last count seen. */
static long
s_wait_count (long n)
{
    long seen = -1;
    for (int waited = 0; waited < S_WAIT_MS; waited += 20) {
        seen = s_get_count ();
        if (seen == n)
            return seen;
        zclock_sleep (20);
    }
    return seen;
}

/*  n echo requests, each answered ok. */
static void
s_echo (int n)
{
    bus_client_t *client = bus_client_new (test_service_rpc (s_env), test_service_server_key (s_env),
                                           s_ops, 1000, 2);
    assert_non_null (client);
    for (int i = 0; i < n; i++) {
        proto_msg_t *reply = NULL;
        assert_int_equal (bus_client_call (client, "echo", NULL, NULL, &reply), 0);
        assert_true (reply->ok);
        proto_msg_destroy (&reply);
    }
    bus_client_destroy (&client);
}

/* --- tests ---------------------------------------------------------------------- */

/*  Every echo's event reaches the declared follower once and is counted
    in its transaction; the declared route answers the count; both run on
    the reactor with start's state. Across a restart the count and the
    follower's mark survive together: nothing is applied twice, and what
    comes after is counted on top. */
static void
test_follower_and_listener (void **unused)
{
    char err [256] = "";
    if (test_service_start (s_env, &s_daemon, "test-1", 0, err, sizeof err))
        fail_msg ("test_service_start: %s", err);
    s_echo (40);
    assert_int_equal (s_wait_count (40), 40);
    assert_int_equal (s_get_count (), 40);
    assert_int_equal (test_service_stop (s_env), 0);

    atomic_store (&s_applied, 0);
    if (test_service_start (s_env, &s_daemon, "test-2", 0, err, sizeof err))
        fail_msg ("test_service_start again: %s", err);
    s_echo (10);
    assert_int_equal (s_wait_count (50), 50);
    zclock_sleep (300);                 /* a replay would bring a duplicate by now */
    assert_int_equal (s_get_count (), 50);
    /* after the restart: the 10 new echoes and service.started's
       neighbours are stepped over by topic; nothing of the first 40 again */
    assert_int_equal (atomic_load (&s_applied), 10);
    assert_int_equal (atomic_load (&s_wrong), 0);
}

/*  A durable follower needs its marks' db among the service's: without
    it the daemon does not start, and says why. */
static void
test_follower_without_marks_db (void **unused)
{
    char err [256] = "";
    assert_int_not_equal (test_service_start (s_env, &s_no_marks_daemon, "test-1", 0, err, sizeof err), 0);
    assert_non_null (strstr (err, "echoes"));
}

/*  A listener whose address is taken: the daemon does not start, and the
    error names the address. */
static void
test_listener_address_taken (void **unused)
{
    zsock_t *holder = zsock_new (ZMQ_ROUTER);
    char endpoint [64];
    snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", s_port);
    assert_int_equal (zsock_bind (holder, "%s", endpoint), s_port);
    char err [256] = "";
    assert_int_not_equal (test_service_start (s_env, &s_daemon, "test-1", 0, err, sizeof err), 0);
    char address [64];
    snprintf (address, sizeof address, "127.0.0.1:%d", s_port);
    assert_non_null (strstr (err, address));
    zsock_destroy (&holder);
}

int
main (void)
{
    curl_global_init (CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests [] = {
        cmocka_unit_test_setup_teardown (test_follower_and_listener, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_follower_without_marks_db, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_listener_address_taken, s_setup, s_teardown),
    };
    int failed = cmocka_run_group_tests (tests, NULL, NULL);
    curl_global_cleanup ();
    return test_service_summary ((int) (sizeof tests / sizeof tests [0]), failed);
}
