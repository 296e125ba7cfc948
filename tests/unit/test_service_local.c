/*  test_service_local.c — bus_service_local: a request made inside a
    service (by its HTTP listener) goes through the same admission as one
    from the ROUTER (catalogue type, owner, senders, body schema), reaches
    the same handler with its principal, and its answer comes to the
    callback: at once for a handler that answers at once, later for one
    offloaded to a worker, exactly once either way.

    The service (section authz, handlers of this test's own for
    authz.check and authz.expand) makes its local requests from a timer
    on its reactor, as its listener would; the test thread waits for the
    answers.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <unistd.h>
#include <cmocka.h>

#include "bus_client.h"
#include "bus_daemon.h"
#include "bus_error.h"
#include "../support/test_service.h"

#define S_CASES 8

/*  One local request: what was asked, what came back. */
typedef struct {
    const char *principal, *type, *body;    /* asked */
    char code [32];                         /* answered: "ok" or the error code */
    char from [64];                         /* the principal the handler saw ("" if none ran) */
    int answers;                            /* how many times done was called */
    bool sync;                              /* answered before bus_service_local returned */
    bool returned;
} s_case_t;

static s_case_t s_cases [S_CASES] = {
    { .principal = "ops:http-a", .type = "authz.check",
      .body = "{\"tuple_key\": {\"object\": \"doc:1\", \"relation\": \"viewer\", \"user\": \"user:a\"}}" },
    /* the catalogue's schema: tuple_key needs 3..8 members */
    { .principal = "ops:http-a", .type = "authz.check", .body = "{\"tuple_key\": {\"user\": \"user:a\"}}" },
    /* senders: authz.model.write is OPS only */
    { .principal = "user:alice", .type = "authz.model.write", .body = "{\"model\": {}}" },
    { .principal = "ops:http-a", .type = "no.such.type", .body = "{}" },
    /* another service's type */
    { .principal = "ops:http-a", .type = "ciba.status", .body = "{\"request\": \"x\"}" },
    /* a type of this service with no handler */
    { .principal = "ops:http-a", .type = "authz.read", .body = "{}" },
    /* offloaded to a worker: answered later */
    { .principal = "ext:http-b", .type = "authz.list_objects",
      .body = "{\"user\": \"user:a\", \"relation\": \"viewer\", \"type\": \"doc\"}" },
    /* a principal of no known class */
    { .principal = "nobody", .type = "authz.check",
      .body = "{\"tuple_key\": {\"object\": \"doc:1\", \"relation\": \"viewer\", \"user\": \"user:a\"}}" },
};

static atomic_int s_answered;         /* answers in all */
static atomic_bool s_fired;

static void
s_check (bus_service_t *svc, bus_request_t *req, void *arg)
{
    bus_reply_ok (req, json_pack ("{s:b, s:s}", "allowed", 1, "from", bus_request_principal (req)));
}

static void
s_work (void *state, json_t *body, void *job, bus_outcome_t *out)
{
    usleep (20000);
    out->body = json_pack ("{s:[s]}", "objects", "doc:1");
}

static void
s_list (bus_service_t *svc, bus_request_t *req, void *arg)
{
    if (bus_request_offload (req, s_work, NULL))
        bus_reply_error (req, PROTO_ERR_INTERNAL, "no workers");
}

static void
s_done (proto_msg_t *reply, void *arg)
{
    s_case_t *c = arg;
    c->answers++;
    c->sync = !c->returned;
    snprintf (c->code, sizeof c->code, "%s",
              !reply ? "(none)" : reply->ok ? "ok"
                                : json_string_value (json_object_get (reply->error, "code")) ?: "?");
    const char *from = reply && reply->ok ? json_string_value (json_object_get (reply->body, "from")) : NULL;
    snprintf (c->from, sizeof c->from, "%s", from ? from : "");
    atomic_fetch_add (&s_answered, 1);
}

/*  On the reactor, once: every case as a local request. */
static void
s_fire (bus_service_t *svc, void *state)
{
    if (atomic_exchange (&s_fired, true))
        return;
    for (int i = 0; i < S_CASES; i++) {
        s_case_t *c = &s_cases [i];
        json_t *body = json_loads (c->body, 0, NULL);
        int rc = bus_service_local (svc, c->principal, c->type, body, s_done, c);
        c->returned = true;
        if (rc) {
            snprintf (c->code, sizeof c->code, "rc %d", rc);
            atomic_fetch_add (&s_answered, 1);
        }
    }
}

static int
s_start (bus_service_t *svc, void **state)
{
    int rc = bus_service_workers (svc, 1, NULL, NULL, NULL);
    if (rc == 0)
        rc = bus_service_handle (svc, "authz.check", s_check, NULL);
    if (rc == 0)
        rc = bus_service_handle (svc, "authz.list_objects", s_list, NULL);
    return rc;
}

static const bus_timer_t s_timers [] = {
    { .name = "fire", .interval_ms = 20, .fn = s_fire },
    { 0 }
};

static const bus_daemon_t s_daemon = { .section = "authz", .start = s_start, .timers = s_timers };

static struct {
    test_service_t *env;
} s_fx;

/*  Wait until every case is answered (3 s at most). */
static void
s_wait_all (void)
{
    for (int i = 0; i < 300 && atomic_load (&s_answered) < S_CASES; i++)
        usleep (10000);
    usleep (50000);                   /* a second answer would come now */
    assert_int_equal (atomic_load (&s_answered), S_CASES);
}

static void
test_admitted_and_handled (void **state)
{
    s_wait_all ();
    assert_string_equal (s_cases [0].code, "ok");
    assert_string_equal (s_cases [0].from, "ops:http-a");
    assert_true (s_cases [0].sync);
}

static void
test_refused_as_on_the_bus (void **state)
{
    s_wait_all ();
    assert_string_equal (s_cases [1].code, PROTO_ERR_INVALID);
    assert_string_equal (s_cases [2].code, PROTO_ERR_FORBIDDEN);
    assert_string_equal (s_cases [3].code, PROTO_ERR_UNKNOWN_TYPE);
    assert_string_equal (s_cases [4].code, PROTO_ERR_WRONG_SERVICE);
    assert_string_equal (s_cases [5].code, PROTO_ERR_NOT_IMPLEMENTED);
    assert_string_equal (s_cases [7].code, PROTO_ERR_FORBIDDEN);
    for (int i = 1; i <= 5; i++)
        assert_true (s_cases [i].sync);
}

static void
test_deferred_answer_comes_later (void **state)
{
    s_wait_all ();
    assert_string_equal (s_cases [6].code, "ok");
    assert_false (s_cases [6].sync);
}

static void
test_answered_once (void **state)
{
    s_wait_all ();
    for (int i = 0; i < S_CASES; i++)
        assert_int_equal (s_cases [i].answers, 1);
}

static int
s_setup (void **state)
{
    char err [256] = "";
    s_fx.env = test_service_new ("authz", NULL, "map_size_mb = 16\n", err, sizeof err);
    if (!s_fx.env)
        fprintf (stderr, "test_service_new: %s\n", err);
    assert_non_null (s_fx.env);
    if (test_service_start (s_fx.env, &s_daemon, "test-1", 0, err, sizeof err))
        fail_msg ("test_service_start: %s", err);
    return 0;
}

static int
s_teardown (void **state)
{
    test_service_stop (s_fx.env);
    test_service_destroy (&s_fx.env);
    return 0;
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_admitted_and_handled),
        cmocka_unit_test (test_refused_as_on_the_bus),
        cmocka_unit_test (test_deferred_answer_comes_later),
        cmocka_unit_test (test_answered_once),
    };
    return cmocka_run_group_tests (tests, s_setup, s_teardown);
}
