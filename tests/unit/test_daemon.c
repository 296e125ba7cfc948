/*  test_daemon.c — unit tests for bus_daemon: a daemon's declared timers
    and its life cycle around them (start, timers, stop).

    A daemon-like auditor service runs on a thread of its own
    (tests/support/test_service.c, which starts it with bus_daemon_start
    as bus_daemon_main does); its timers count into a state that its start
    makes and its stop frees, and record the thread they ran on and
    whether they ran after stop. One test drives a service on the test
    thread instead, to run its reactor again after the daemon stopped and
    see that no cancelled timer fires.
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
#include <cmocka.h>

#include "bus_client.h"
#include "bus_config.h"
#include "bus_daemon.h"
#include "bus_error.h"
#include "bus_service.h"
#include "../support/test_service.h"

#define S_WAIT_MS 5000              /* longest wait for a count */

/*  What the daemon's start makes (its state), seen by every callback. */
typedef struct {
    pthread_t reactor;              /* the thread start ran on */
    atomic_int fast;                /* fires of the fast timer */
    atomic_int keyed;               /* fires of the timer whose interval is a config key */
    atomic_int wrong_thread;        /* fires off the reactor thread */
    atomic_int wrong_state;         /* fires with another state than start's */
    atomic_bool stopped;            /* stop ran */
    atomic_int after_stop;          /* fires after stop */
} s_state_t;

/*  The tests' view: the last state start made (freed by stop; the test
    keeps its own copy of the counts), how often start and stop ran. */
static s_state_t *s_live;
static s_state_t s_seen;
static atomic_int s_fires;          /* every timer callback, whatever its state */
static atomic_int s_starts;
static atomic_int s_stops;
static bool s_refuse_start;

static void
s_check (bus_service_t *svc, s_state_t *self)
{
    atomic_fetch_add (&s_fires, 1);
    if (!pthread_equal (pthread_self (), self->reactor))
        atomic_fetch_add (&self->wrong_thread, 1);
    if (self != s_live)
        atomic_fetch_add (&self->wrong_state, 1);
    if (atomic_load (&self->stopped))
        atomic_fetch_add (&self->after_stop, 1);
}

static void
s_on_fast (bus_service_t *svc, void *state)
{
    s_state_t *self = state;
    s_check (svc, self);
    atomic_fetch_add (&self->fast, 1);
}

static void
s_on_keyed (bus_service_t *svc, void *state)
{
    s_state_t *self = state;
    s_check (svc, self);
    atomic_fetch_add (&self->keyed, 1);
}

static int
s_start (bus_service_t *svc, void **state)
{
    atomic_fetch_add (&s_starts, 1);
    s_state_t *self = calloc (1, sizeof *self);
    if (!self)
        return -1;
    self->reactor = pthread_self ();
    s_live = self;
    *state = self;
    return s_refuse_start ? -1 : 0;     /* refused: stop frees the state */
}

/*  Copy the counts out for the test, then free the state. */
static void
s_stop (bus_service_t *svc, void **state)
{
    atomic_fetch_add (&s_stops, 1);
    s_state_t *self = *state;
    if (!self)
        return;
    atomic_store (&self->stopped, true);
    memcpy (&s_seen, self, sizeof s_seen);
    s_live = NULL;
    free (self);
    *state = NULL;
}

/*  A fast timer (5 ms), and one whose interval_ms (1 ms) is overridden by
    the auditor's replay_interval_ms. */
static const bus_timer_t s_timers [] = {
    { .name = "fast", .interval_ms = 5, .fn = s_on_fast },
    { .name = "keyed", .interval_ms = 1, .interval_key = "replay_interval_ms", .fn = s_on_keyed },
    { 0 }
};
static const bus_daemon_t s_daemon = {
    .section = "auditor", .start = s_start, .stop = s_stop, .timers = s_timers,
};

/*  A timer that cannot run: no interval. */
static const bus_timer_t s_bad_timers [] = {
    { .name = "fast", .interval_ms = 5, .fn = s_on_fast },
    { .name = "never", .fn = s_on_fast },
    { 0 }
};
static const bus_daemon_t s_bad_daemon = {
    .section = "auditor", .start = s_start, .stop = s_stop, .timers = s_bad_timers,
};

/*  authz.query_threads may be 0: as an interval it is refused. */
static const bus_timer_t s_zero_timers [] = {
    { .name = "zero", .interval_key = "query_threads", .fn = s_on_fast },
    { 0 }
};
static const bus_daemon_t s_zero_daemon = {
    .section = "authz", .start = s_start, .stop = s_stop, .timers = s_zero_timers,
};

static test_service_t *s_env;

static void
s_reset (void)
{
    s_live = NULL;
    memset (&s_seen, 0, sizeof s_seen);
    atomic_store (&s_fires, 0);
    atomic_store (&s_starts, 0);
    atomic_store (&s_stops, 0);
    s_refuse_start = false;
}

/*  A fresh auditor environment, the keyed interval set to value. */
static int
s_setup (void **state)
{
    s_reset ();
    char err [256] = "";
    s_env = test_service_new ("auditor", NULL, "map_size_mb = 16\nrpc_timeout_ms = 1000\n", err, sizeof err);
    if (!s_env)
        fprintf (stderr, "test_service_new: %s\n", err);
    assert_non_null (s_env);
    return 0;
}

static int
s_teardown (void **state)
{
    test_service_destroy (&s_env);
    return 0;
}

static void
s_set_interval (const char *value)
{
    char err [256] = "";
    assert_int_equal (bus_config_set (test_service_config (s_env), "auditor", "replay_interval_ms",
                                      value, err, sizeof err), 0);
}

/*  Wait until *counter reaches n (at most S_WAIT_MS). */
static bool
s_wait_for (atomic_int *counter, int n)
{
    for (int waited = 0; waited < S_WAIT_MS; waited += 5) {
        if (atomic_load (counter) >= n)
            return true;
        zclock_sleep (5);
    }
    return atomic_load (counter) >= n;
}

/* --- tests ---------------------------------------------------------------------- */

/*  The timers fire on the reactor thread with start's state, again and
    again, while the service answers requests; the keyed one waits for its
    config interval (an hour here), not for its 1 ms interval_ms; none
    fires after stop, which runs once. */
static void
test_timers_fire_on_reactor (void **unused)
{
    s_set_interval ("3600000");
    char err [256] = "";
    assert_int_equal (test_service_start (s_env, &s_daemon, "test-1", 0, err, sizeof err), 0);
    s_state_t *live = s_live;
    assert_non_null (live);
    assert_true (s_wait_for (&live->fast, 20));

    zcert_t *cert = test_service_cert (s_env, "ops-test", "ops:test");
    bus_client_t *client = bus_client_for (test_service_config (s_env), "auditor", cert);
    assert_non_null (client);
    proto_msg_t *reply = NULL;
    assert_int_equal (bus_client_call (client, "health", NULL, NULL, &reply), 0);
    assert_true (reply->ok);
    proto_msg_destroy (&reply);
    bus_client_destroy (&client);
    zcert_destroy (&cert);

    assert_int_equal (test_service_stop (s_env), 0);
    assert_int_equal (atomic_load (&s_starts), 1);
    assert_int_equal (atomic_load (&s_stops), 1);
    assert_true (atomic_load (&s_seen.fast) >= 20);
    assert_int_equal (atomic_load (&s_seen.keyed), 0);
    assert_int_equal (atomic_load (&s_seen.wrong_thread), 0);
    assert_int_equal (atomic_load (&s_seen.wrong_state), 0);
    assert_int_equal (atomic_load (&s_seen.after_stop), 0);
}

/*  At 100 ms from its config key the keyed timer fires too (that the key,
    not interval_ms, sets its pace is test_timers_fire_on_reactor's). */
static void
test_timer_interval_from_config (void **unused)
{
    s_set_interval ("100");
    char err [256] = "";
    assert_int_equal (test_service_start (s_env, &s_daemon, "test-1", 0, err, sizeof err), 0);
    s_state_t *live = s_live;
    assert_non_null (live);
    assert_true (s_wait_for (&live->keyed, 2));
    assert_int_equal (test_service_stop (s_env), 0);
    assert_true (atomic_load (&s_seen.keyed) >= 2);
    assert_int_equal (atomic_load (&s_seen.after_stop), 0);
}

/*  A timer with no interval: the daemon does not start, with an error
    naming the timer, and its start's state is freed by its stop; a
    refusing start: an error, and stop frees what it left. */
static void
test_bad_timer_and_refused_start (void **unused)
{
    char err [256] = "";
    assert_int_not_equal (test_service_start (s_env, &s_bad_daemon, "test-1", 0, err, sizeof err), 0);
    assert_non_null (strstr (err, "timer never"));
    assert_int_equal (atomic_load (&s_starts), 1);
    assert_int_equal (atomic_load (&s_stops), 1);
    assert_null (s_live);

    s_reset ();
    s_refuse_start = true;
    err [0] = 0;
    assert_int_not_equal (test_service_start (s_env, &s_daemon, "test-1", 0, err, sizeof err), 0);
    assert_non_null (strstr (err, "start failed"));
    assert_int_equal (atomic_load (&s_starts), 1);
    assert_int_equal (atomic_load (&s_stops), 1);
    assert_null (s_live);
}

/*  An interval key whose value is 0 is refused with the key in the message. */
static void
test_zero_interval_key (void **unused)
{
    char err [256] = "";
    test_service_t *env = test_service_new ("authz", NULL, "map_size_mb = 16\n", err, sizeof err);
    assert_non_null (env);
    assert_int_equal (bus_config_set (test_service_config (env), "authz", "query_threads", "0",
                                      err, sizeof err), 0);
    assert_int_not_equal (test_service_start (env, &s_zero_daemon, "test-1", 0, err, sizeof err), 0);
    assert_non_null (strstr (err, "[authz] query_threads = 0"));
    assert_int_equal (atomic_load (&s_stops), 1);
    test_service_destroy (&env);
}

/*  Leave the loop (a one-shot timer). */
static int
s_on_leave (zloop_t *loop, int timer_id, void *arg)
{
    return -1;
}

/*  On the test thread: run the reactor a while with the daemon started,
    stop the daemon, run the reactor again: the cancelled timers stay
    silent (and their freed memory untouched, which ASan would report). */
static void
test_timers_cancelled_by_stop (void **unused)
{
    s_set_interval ("100");
    char err [256] = "";
    bus_service_t *svc = bus_service_new (test_service_config (s_env), "auditor", "test-1", NULL,
                                          err, sizeof err);
    assert_non_null (svc);
    bus_daemon_run_t *run = bus_daemon_start (&s_daemon, svc, err, sizeof err);
    assert_non_null (run);
    s_state_t *live = s_live;
    zloop_t *loop = bus_service_loop (svc);
    assert_int_not_equal (zloop_timer (loop, 300, 1, s_on_leave, NULL), -1);
    zloop_start (loop);
    assert_true (atomic_load (&live->fast) > 0);
    assert_true (atomic_load (&live->keyed) > 0);

    bus_daemon_stop (&run);
    assert_null (run);
    assert_int_equal (atomic_load (&s_stops), 1);
    assert_int_equal (atomic_load (&s_fires), atomic_load (&s_seen.fast) + atomic_load (&s_seen.keyed));
    int fires = atomic_load (&s_fires);
    /* a timer left set would fire into freed memory: counted by s_fires
       if it got as far as our callback, else a crash (ASan: a report) */
    assert_int_not_equal (zloop_timer (loop, 300, 1, s_on_leave, NULL), -1);
    zloop_start (loop);
    assert_int_equal (atomic_load (&s_fires), fires);
    bus_daemon_stop (&run);           /* NULL: nothing */
    bus_service_destroy (&svc);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test_setup_teardown (test_timers_fire_on_reactor, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_timer_interval_from_config, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_bad_timer_and_refused_start, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_zero_interval_key, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_timers_cancelled_by_stop, s_setup, s_teardown),
    };
    return test_service_summary ((int) (sizeof tests / sizeof tests [0]),
                                 cmocka_run_group_tests (tests, NULL, NULL));
}
