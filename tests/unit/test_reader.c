/*  test_reader.c — bus_reader: a socket read on a zloop through its
    descriptor (bus_reader.h), over inproc PAIRs and a TCP ROUTER.

    - Input waiting before the reader exists is read on the loop's first
      turn; input arriving later wakes the loop.
    - A handler that stops early (returns 1, a batch limit) is called
      again until nothing is left, though no new input signals.
    - After a send outside the handler took in the socket's commands (the
      signal of input that arrived meanwhile), bus_reader_kick makes the
      handler run: without the kick that input would wait for the next
      arrival (checked too: the case the kick exists for).
    - bus_reader_destroy stops the reading, kick pending or not.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "bus_reader.h"
#include "../support/test_service.h"

typedef struct {
    bus_reader_t *reader;
    int batch;                  /* messages read per call, at most (0: all) */
    int calls, got;
    int want;                   /* end the loop once this many are read */
} s_state_t;

/*  Read up to batch messages (all when 0); end the loop once want are
    read and nothing is left (the reader's rule: read until nothing). */
static int
s_read (zloop_t *loop, zsock_t *sock, void *arg)
{
    s_state_t *st = arg;
    st->calls++;
    for (int i = 0; st->batch == 0 || i < st->batch; i++) {
        char *s = zstr_recv (sock);
        if (!s)
            return st->want && st->got >= st->want ? -1 : 0;
        zstr_free (&s);
        st->got++;
    }
    return 1;
}

/*  Ends the loop when nothing happened in time. */
static int
s_give_up (zloop_t *loop, int timer_id, void *arg)
{
    return -1;
}

/*  A PAIR pair over inproc: *in reads, *out writes. */
static void
s_pair (zsock_t **in, zsock_t **out, const char *name)
{
    char bind [64], connect [64];
    snprintf (bind, sizeof bind, "@inproc://test-reader-%s", name);
    snprintf (connect, sizeof connect, ">inproc://test-reader-%s", name);
    *in = zsock_new_pair (bind);
    *out = zsock_new_pair (connect);
    assert_non_null (*in);
    assert_non_null (*out);
    zsock_set_rcvtimeo (*in, 0);
}

static void
test_waiting_and_later (void **state)
{
    zsock_t *in, *out;
    s_pair (&in, &out, "later");
    for (int i = 0; i < 3; i++)
        zstr_send (out, "before");
    zloop_t *loop = zloop_new ();
    s_state_t st = { .want = 3 };
    st.reader = bus_reader_new (loop, in, s_read, &st);
    assert_non_null (st.reader);
    zloop_timer (loop, 2000, 1, s_give_up, NULL);
    zloop_start (loop);
    assert_int_equal (st.got, 3);               /* read on the first turn */
    /* later input wakes the loop through the descriptor */
    st.want = 5;
    zstr_send (out, "after");
    zstr_send (out, "after");
    zloop_timer (loop, 2000, 1, s_give_up, NULL);
    zloop_start (loop);
    assert_int_equal (st.got, 5);
    bus_reader_destroy (&st.reader);
    assert_null (st.reader);
    bus_reader_destroy (&st.reader);            /* NULL accepted */
    zloop_destroy (&loop);
    zsock_destroy (&out);
    zsock_destroy (&in);
}

static void
test_batch_limit (void **state)
{
    zsock_t *in, *out;
    s_pair (&in, &out, "batch");
    zloop_t *loop = zloop_new ();
    s_state_t st = { .batch = 4, .want = 50 };
    st.reader = bus_reader_new (loop, in, s_read, &st);
    zloop_timer (loop, 2000, 1, s_give_up, NULL);
    for (int i = 0; i < 50; i++)
        zstr_send (out, "m");
    zloop_start (loop);
    assert_int_equal (st.got, 50);              /* no new arrival needed */
    assert_true (st.calls >= 13);               /* 4 at a time */
    bus_reader_destroy (&st.reader);
    zloop_destroy (&loop);
    zsock_destroy (&out);
    zsock_destroy (&in);
}

/*  The case of a service's deferred reply: a ROUTER whose handler has
    read everything, then a request arrives while the reactor is busy
    elsewhere, and the reactor sends on the ROUTER (which takes in the
    request's signal) before it polls again. */
typedef struct {
    zsock_t *router, *dealer;
    zframe_t *peer;             /* the DEALER's routing id */
    s_state_t st;
    bool kick;
} s_router_t;

static int
s_router_read (zloop_t *loop, zsock_t *router, void *arg)
{
    s_router_t *r = arg;
    r->st.calls++;
    while (true) {
        zmsg_t *msg = zmsg_recv (router);
        if (!msg)
            return r->st.got >= r->st.want ? -1 : 0;
        zframe_destroy (&r->peer);
        r->peer = zmsg_pop (msg);
        zmsg_destroy (&msg);
        r->st.got++;
    }
}

/*  A timer: the request arrives (and is in the ROUTER's pipe), then a
    reply goes out on the ROUTER, as a worker's answer would. */
static int
s_busy_elsewhere (zloop_t *loop, int timer_id, void *arg)
{
    s_router_t *r = arg;
    zstr_send (r->dealer, "second");
    zclock_sleep (100);                         /* it is in the ROUTER's pipe */
    for (int i = 0; i < 3; i++) {               /* sends take in commands now and then */
        zframe_send (&r->peer, r->router, ZFRAME_MORE + ZFRAME_REUSE);
        zstr_send (r->router, "reply");
        zclock_sleep (2);
    }
    if (r->kick)
        bus_reader_kick (r->st.reader);
    return 0;
}

static int
s_router_case (bool kick)
{
    s_router_t r = { .kick = kick, .st.want = 2 };
    r.router = zsock_new (ZMQ_ROUTER);
    zsock_set_rcvtimeo (r.router, 0);
    int port = zsock_bind (r.router, "tcp://127.0.0.1:*");
    assert_true (port > 0);
    r.dealer = zsock_new (ZMQ_DEALER);
    assert_int_equal (zsock_connect (r.dealer, "tcp://127.0.0.1:%d", port), 0);
    zloop_t *loop = zloop_new ();
    r.st.reader = bus_reader_new (loop, r.router, s_router_read, &r);
    zstr_send (r.dealer, "first");
    zloop_timer (loop, 300, 1, s_busy_elsewhere, &r);
    zloop_timer (loop, 1500, 1, s_give_up, NULL);
    zloop_start (loop);
    int got = r.st.got;
    bus_reader_destroy (&r.st.reader);
    zloop_destroy (&loop);
    zframe_destroy (&r.peer);
    zsock_destroy (&r.dealer);
    zsock_destroy (&r.router);
    return got;
}

static void
test_kick_after_send (void **state)
{
    assert_int_equal (s_router_case (true), 2);
}

/*  Without the kick the second request waits (the send took in its
    signal): the case the kick exists for. */
static void
test_no_kick_waits (void **state)
{
    assert_int_equal (s_router_case (false), 1);
}

static void
test_destroy_with_kick_pending (void **state)
{
    zsock_t *in, *out;
    s_pair (&in, &out, "destroy");
    zloop_t *loop = zloop_new ();
    s_state_t st = { 0 };
    st.reader = bus_reader_new (loop, in, s_read, &st);   /* its first-turn kick pending */
    bus_reader_destroy (&st.reader);
    zstr_send (out, "unread");
    zloop_timer (loop, 50, 1, s_give_up, NULL);
    zloop_start (loop);
    assert_int_equal (st.calls, 0);
    zloop_destroy (&loop);
    zsock_destroy (&out);
    zsock_destroy (&in);
}

int
main (void)
{
    zsys_init ();
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_waiting_and_later),
        cmocka_unit_test (test_batch_limit),
        cmocka_unit_test (test_kick_after_send),
        cmocka_unit_test (test_no_kick_waits),
        cmocka_unit_test (test_destroy_with_kick_pending),
    };
    return test_service_summary ((int) (sizeof tests / sizeof tests [0]),
                                 cmocka_run_group_tests (tests, NULL, NULL));
}
