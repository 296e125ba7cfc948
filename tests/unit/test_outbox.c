/*  test_outbox.c — the outbox stays bounded without losing what the
    auditor has not stored: trimming after events.replay by the
    acknowledging principal (outbox_acked_by), the outbox_max cap, first_seq
    in health and events.replay, and the sequence across a restart.

    The service (svc:authz, no handlers of its own: echo emits the events)
    runs on a thread; outbox_keep = 3, outbox_max = 8, acknowledged by
    svc:auditor, a client of this test. ops:test replays too, and does not
    count. Trimming runs once a second, so each step waits for it. Every
    test runs twice: with the trim on the reactor, then with a writer
    thread, which the trim's deletions are handed to.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "bus_client.h"
#include "bus_log.h"
#include "bus_service.h"
#include "proto_msg.h"
#include "../support/test_service.h"

#define S_KEEP 3
#define S_MAX  8

typedef struct {
    test_service_t *env;
    zcert_t *ops, *auditor;
    bus_client_t *ops_client, *auditor_client;
} fixture_t;

static fixture_t s_fx;

static bool s_with_writer;        /* the second run of the tests */

static int
s_writer_start (bus_service_t *svc, void **state)
{
    return bus_service_writer (svc, NULL, NULL, NULL);
}

static const bus_daemon_t s_daemon = { .section = "authz" };
static const bus_daemon_t s_daemon_writer = { .section = "authz", .start = s_writer_start };

static void
s_start (void)
{
    char err [256] = "";
    int rc = test_service_start (s_fx.env, s_with_writer ? &s_daemon_writer : &s_daemon, "test-1", 0,
                                 err, sizeof err);
    if (rc)
        fprintf (stderr, "test_service_start: %s\n", err);
    assert_int_equal (rc, 0);
}

static int
s_setup (void **state)
{
    char err [256] = "", lines [160];
    snprintf (lines, sizeof lines, "map_size_mb = 16\nrpc_timeout_ms = 5000\nrpc_retries = 0\n"
                                   "outbox_keep = %d\noutbox_max = %d\noutbox_acked_by = svc:auditor\n",
              S_KEEP, S_MAX);
    s_fx.env = test_service_new ("authz", NULL, lines, err, sizeof err);
    if (!s_fx.env)
        fprintf (stderr, "test_service_new: %s\n", err);
    assert_non_null (s_fx.env);
    s_fx.ops = test_service_cert (s_fx.env, "ops-test", "ops:test");
    s_fx.auditor = test_service_cert (s_fx.env, "auditor", "svc:auditor");
    assert_true (s_fx.ops && s_fx.auditor);
    s_start ();
    bus_config_t *config = test_service_config (s_fx.env);
    s_fx.ops_client = bus_client_for (config, "authz", s_fx.ops);
    s_fx.auditor_client = bus_client_for (config, "authz", s_fx.auditor);
    assert_true (s_fx.ops_client && s_fx.auditor_client);
    return 0;
}

static int
s_teardown (void **state)
{
    bus_client_destroy (&s_fx.ops_client);
    bus_client_destroy (&s_fx.auditor_client);
    zcert_destroy (&s_fx.ops);
    zcert_destroy (&s_fx.auditor);
    test_service_destroy (&s_fx.env);
    return 0;
}

/*  Call type on client with body (stolen); the reply must be ok. */
static json_t *
s_ok (bus_client_t *client, const char *type, json_t *body)
{
    proto_msg_t *reply = NULL;
    int rc = bus_client_call (client, type, body, NULL, &reply);
    json_decref (body);
    assert_int_equal (rc, 0);
    assert_non_null (reply);
    assert_true (reply->ok);
    json_t *out = json_incref (reply->body);
    proto_msg_destroy (&reply);
    return out;
}

/*  A member of health's body. */
static int64_t
s_health (const char *member)
{
    json_t *h = s_ok (s_fx.ops_client, "health", NULL);
    int64_t v = json_integer_value (json_object_get (h, member));
    json_decref (h);
    return v;
}

/*  A counter of stats (0 when it was never counted). */
static int64_t
s_counter (const char *name)
{
    int64_t v = test_service_counter (s_fx.ops_client, name);
    assert_true (v >= 0);
    return v;
}

static void
s_echo (int n)
{
    for (int i = 0; i < n; i++)
        json_decref (s_ok (s_fx.ops_client, "echo", json_pack ("{s:i}", "data", i)));
}

/*  events.replay from from_seq by client: the reply body. */
static json_t *
s_replay (bus_client_t *client, int64_t from)
{
    return s_ok (client, "events.replay", json_pack ("{s:I}", "from_seq", (json_int_t) from));
}

/*  Wait (up to 4 s: the trim runs once a second) for first_seq to be want. */
static void
s_wait_first (int64_t want)
{
    int64_t first = 0;
    for (int i = 0; i < 80 && (first = s_health ("first_seq")) != want; i++)
        zclock_sleep (50);
    assert_int_equal (first, want);
}

/*  Nothing is trimmed before the acknowledging principal has the events,
    however often others replay; after it replays from N, everything
    before N beyond the newest outbox_keep goes, and a replay from the start
    says so with first_seq. */
static void
test_trim_after_ack (void **state)
{
    s_echo (6);
    int64_t last = s_health ("last_seq");
    assert_int_equal (last, 7);                 /* service.started, 6 x echo.seen */
    json_decref (s_replay (s_fx.ops_client, 7));    /* not the auditor: no effect */
    zclock_sleep (1300);
    assert_int_equal (s_health ("first_seq"), 1);

    json_decref (s_replay (s_fx.auditor_client, 6));    /* it has 1..5 */
    s_wait_first (5);                           /* the newest 3 (5..7) stay: 1..4 go */
    assert_int_equal (s_counter ("events_trimmed"), 4);
    assert_int_equal (s_counter ("events_trimmed_unacknowledged"), 0);

    json_t *r = s_replay (s_fx.ops_client, 1);
    assert_int_equal (json_integer_value (json_object_get (r, "first_seq")), 5);
    json_t *events = json_object_get (r, "events");
    assert_int_equal (json_array_size (events), 3);
    assert_int_equal (json_integer_value (json_object_get (json_array_get (events, 0), "seq")), 5);
    json_decref (r);
}

/*  Past outbox_max the oldest go even unacknowledged, counted as such;
    the newest outbox_max stay. */
static void
test_trim_at_cap (void **state)
{
    s_echo (10);                                /* 8..17; the auditor has 1..5 */
    assert_int_equal (s_health ("last_seq"), 17);
    s_wait_first (10);                          /* 17 - 8 + 1 */
    assert_int_equal (s_counter ("events_trimmed"), 9);
    assert_int_equal (s_counter ("events_trimmed_unacknowledged"), 4);     /* 6..9 */
    json_t *r = s_replay (s_fx.ops_client, 1);
    assert_int_equal (json_array_size (json_object_get (r, "events")), S_MAX);
    json_decref (r);
}

/*  An acknowledgement past the end still leaves the newest outbox_keep;
    after a restart the outbox keeps its first_seq and the sequence goes
    on from the last event (never trimmed). */
static void
test_trim_keeps_newest (void **state)
{
    json_decref (s_replay (s_fx.auditor_client, 1000));
    int64_t last = s_health ("last_seq");
    s_wait_first (last - S_KEEP + 1);
    test_service_stop (s_fx.env);
    s_start ();
    /* service.stopping and service.started came in between */
    assert_int_equal (s_health ("last_seq"), last + 2);
    assert_int_equal (s_health ("first_seq"), last - S_KEEP + 1);
    /* the acknowledgement is remembered in memory only: a restarted
       service trims again after the auditor's next replay */
    json_decref (s_replay (s_fx.auditor_client, last + 3));
    s_wait_first (last + 2 - S_KEEP + 1);
}

int
main (void)
{
    bus_log_init ("test_outbox", "error");
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_trim_after_ack),
        cmocka_unit_test (test_trim_at_cap),
        cmocka_unit_test (test_trim_keeps_newest),
    };
    int failed = cmocka_run_group_tests_name ("trim on the reactor", tests, s_setup, s_teardown);
    s_with_writer = true;
    failed += cmocka_run_group_tests_name ("trim on the writer", tests, s_setup, s_teardown);
    return test_service_summary (2 * (int) (sizeof tests / sizeof tests [0]), failed);
}
