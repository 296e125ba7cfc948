/*  test_backlog.c — replies held while their connection's queue is full
    (bus_backlog.h): a TCP ROUTER with a high-water mark of 4 and small
    kernel buffers, DEALER clients that read or do not.

    - The control: the ROUTER alone drops most of a burst to a client
      that is not reading, and says nothing.
    - Through the backlog the same burst is sent or held, and a client
      that reads later gets every reply, in order; new replies queue
      behind the held ones.
    - What is held per connection is bounded in bytes: past it a reply is
      dropped (replies_dropped_full), and the client gets all the others,
      in order.
    - A connection that takes nothing for hold_ms loses what is held for
      it (replies_dropped_stalled); one that is gone, too
      (replies_unroutable); a route to no connection is refused.
    - One stalled client does not hold up another.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "bus_backlog.h"
#include "bus_stats.h"

#define S_REPLY 2048            /* bytes of each reply */
#define S_BURST 500

typedef struct {
    zloop_t *loop;
    zsock_t *router;
    char endpoint [64];
    bus_stats_t *stats;
    bus_backlog_t *backlog;
} s_fx_t;

typedef struct {
    zsock_t *sock;
    char id [16];
    int got;                    /* replies read */
    int last;                   /* sequence of the last one (-1: none) */
    bool in_order;
    bool reading;
} s_client_t;

static s_fx_t s_fx;

static int
s_setup (void **state)
{
    memset (&s_fx, 0, sizeof s_fx);
    s_fx.loop = zloop_new ();
    s_fx.router = zsock_new (ZMQ_ROUTER);
    assert_non_null (s_fx.router);
    zsock_set_sndhwm (s_fx.router, 4);
    zsock_set_sndbuf (s_fx.router, 4096);
    zsock_set_linger (s_fx.router, 0);
    int port = zsock_bind (s_fx.router, "tcp://127.0.0.1:*");
    assert_true (port > 0);
    snprintf (s_fx.endpoint, sizeof s_fx.endpoint, "tcp://127.0.0.1:%d", port);
    s_fx.stats = bus_stats_new ();
    return 0;
}

static int
s_teardown (void **state)
{
    bus_backlog_destroy (&s_fx.backlog);
    zsock_destroy (&s_fx.router);
    zloop_destroy (&s_fx.loop);
    bus_stats_destroy (&s_fx.stats);
    return 0;
}

/*  A client connected as id, known to the ROUTER (its hello read). */
static void
s_client (s_client_t *c, const char *id)
{
    memset (c, 0, sizeof *c);
    snprintf (c->id, sizeof c->id, "%s", id);
    c->last = -1;
    c->in_order = true;
    c->sock = zsock_new (ZMQ_DEALER);
    assert_non_null (c->sock);
    zsock_set_identity (c->sock, id);
    zsock_set_rcvhwm (c->sock, 4);
    zsock_set_rcvbuf (c->sock, 4096);
    zsock_set_linger (c->sock, 0);
    assert_int_equal (zsock_connect (c->sock, "%s", s_fx.endpoint), 0);
    zstr_send (c->sock, "hello");
    zsock_set_rcvtimeo (s_fx.router, 2000);
    zmsg_t *hello = zmsg_recv (s_fx.router);
    assert_non_null (hello);
    zframe_t *from = zmsg_first (hello);
    assert_true (zframe_streq (from, id));
    zmsg_destroy (&hello);
}

/*  Route of one frame to client id. */
static size_t
s_route (uint8_t *route, const char *id)
{
    size_t n = strlen (id);
    route [0] = (uint8_t) n;
    memcpy (route + 1, id, n);
    return n + 1;
}

static int
s_send (const char *id, int seq)
{
    uint8_t route [32];
    size_t route_len = s_route (route, id);
    uint8_t data [S_REPLY];
    memset (data, 'x', sizeof data);
    memcpy (data, &seq, sizeof seq);
    return bus_backlog_send (s_fx.backlog, route, route_len, data, sizeof data);
}

/*  Read what the client has (a zloop reader). */
static int
s_on_reply (zloop_t *loop, zsock_t *sock, void *arg)
{
    s_client_t *c = arg;
    zframe_t *frame = zframe_recv (sock);
    if (!frame)
        return 0;
    int seq = -1;
    if (zframe_size (frame) == S_REPLY)
        memcpy (&seq, zframe_data (frame), sizeof seq);
    if (seq <= c->last)
        c->in_order = false;
    c->last = seq;
    c->got++;
    zframe_destroy (&frame);
    return 0;
}

static void
s_read_on_loop (s_client_t *c)
{
    assert_int_equal (zloop_reader (s_fx.loop, c->sock, s_on_reply, c), 0);
    c->reading = true;
}

static void
s_close (s_client_t *c)
{
    if (c->reading)
        zloop_reader_end (s_fx.loop, c->sock);
    zsock_destroy (&c->sock);
}

typedef bool (s_done_fn) (void *arg);

typedef struct {
    s_done_fn *done;
    void *arg;
} s_wait_t;

static int
s_check (zloop_t *loop, int timer_id, void *arg)
{
    s_wait_t *w = arg;
    return w->done && w->done (w->arg) ? -1 : 0;
}

static int
s_give_up (zloop_t *loop, int timer_id, void *arg)
{
    return -1;
}

/*  Run the loop until done (arg) or ms passed. */
static void
s_run (s_done_fn *done, void *arg, int ms)
{
    s_wait_t w = { done, arg };
    int check = zloop_timer (s_fx.loop, 1, 0, s_check, &w);
    int give_up = zloop_timer (s_fx.loop, (size_t) ms, 1, s_give_up, NULL);
    zloop_start (s_fx.loop);
    zloop_timer_end (s_fx.loop, check);
    zloop_timer_end (s_fx.loop, give_up);
}

static bool
s_nothing_held (void *arg)
{
    return bus_backlog_held (s_fx.backlog) == 0;
}

static int s_want;
static bool
s_got_all (void *arg)
{
    s_client_t *c = arg;
    return c->got >= s_want && bus_backlog_held (s_fx.backlog) == 0;
}

/* --- tests ---------------------------------------------------------------- */

/*  Without the backlog (and without ZMQ_ROUTER_MANDATORY), the ROUTER
    drops most of a burst to a client that is not reading yet. */
static void
test_router_alone_drops (void **state)
{
    s_client_t c;
    s_client (&c, "c-alone");
    for (int i = 0; i < S_BURST; i++) {
        uint8_t data [S_REPLY] = { 0 };
        zmq_send (zsock_resolve (s_fx.router), c.id, strlen (c.id), ZMQ_SNDMORE);
        assert_int_equal (zmq_send (zsock_resolve (s_fx.router), data, sizeof data, 0), S_REPLY);
    }
    zsock_set_rcvtimeo (c.sock, 500);
    int got = 0;
    zframe_t *f;
    while ((f = zframe_recv (c.sock))) {
        zframe_destroy (&f);
        got++;
    }
    fprintf (stderr, "# the ROUTER alone: %d of %d delivered\n", got, S_BURST);
    assert_true (got < S_BURST / 2);
    s_close (&c);
}

/*  Every reply of the burst reaches a client that reads later, in order;
    replies made while some are held go behind them. */
static void
test_burst_held_in_order (void **state)
{
    s_fx.backlog = bus_backlog_new (s_fx.loop, s_fx.router, 64 << 20, 10000, s_fx.stats, NULL, NULL);
    assert_non_null (s_fx.backlog);
    s_client_t c;
    s_client (&c, "c-burst");
    for (int i = 0; i < S_BURST; i++)
        assert_int_equal (s_send (c.id, i), 0);
    size_t held = bus_backlog_held (s_fx.backlog);
    assert_true (held > S_BURST / 2);
    assert_int_equal (bus_stats_get (s_fx.stats, "replies_held"), held);
    /* the loop runs, the client does not read: nothing is lost */
    s_run (NULL, NULL, 50);
    assert_true (bus_backlog_held (s_fx.backlog) > 0);
    for (int i = S_BURST; i < S_BURST + 10; i++)
        assert_int_equal (s_send (c.id, i), 0);
    s_read_on_loop (&c);
    s_want = S_BURST + 10;
    s_run (s_got_all, &c, 10000);
    assert_int_equal (c.got, S_BURST + 10);
    assert_true (c.in_order);
    assert_int_equal (c.last, S_BURST + 9);
    assert_int_equal (bus_backlog_held (s_fx.backlog), 0);
    assert_int_equal (bus_stats_get (s_fx.stats, "replies_dropped_full"), 0);
    assert_int_equal (bus_stats_get (s_fx.stats, "replies_dropped_stalled"), 0);
    assert_int_equal (bus_stats_get (s_fx.stats, "replies_unroutable"), 0);
    s_close (&c);
}

/*  Past peer_bytes held, a reply is dropped; the client gets the rest,
    in order. */
static void
test_bounded_per_connection (void **state)
{
    s_fx.backlog = bus_backlog_new (s_fx.loop, s_fx.router, 64 * 1024, 10000, s_fx.stats, NULL, NULL);
    assert_non_null (s_fx.backlog);
    s_client_t c;
    s_client (&c, "c-bound");
    int refused = 0;
    for (int i = 0; i < S_BURST; i++)
        refused += s_send (c.id, i) != 0;
    uint64_t dropped = bus_stats_get (s_fx.stats, "replies_dropped_full");
    assert_int_equal (dropped, refused);
    assert_true (dropped > 0);
    /* held: what fits in 64 KiB, routes included */
    assert_int_equal (bus_backlog_held (s_fx.backlog), 64 * 1024 / (S_REPLY + 1 + strlen (c.id)));
    s_read_on_loop (&c);
    s_want = S_BURST - refused;
    s_run (s_got_all, &c, 10000);
    assert_int_equal (c.got, S_BURST - refused);
    assert_true (c.in_order);
    assert_int_equal (bus_backlog_held (s_fx.backlog), 0);
    s_close (&c);
}

/*  A connection that takes nothing for hold_ms loses what is held; one
    that is gone, too; a route to no connection is refused. */
static void
test_stalled_and_gone (void **state)
{
    bus_stats_t *stats = s_fx.stats;
    s_fx.backlog = bus_backlog_new (s_fx.loop, s_fx.router, 64 << 20, 200, stats, NULL, NULL);
    assert_non_null (s_fx.backlog);
    s_client_t stalled, gone;
    s_client (&stalled, "c-stall");
    s_client (&gone, "c-gone");
    for (int i = 0; i < S_BURST; i++) {
        assert_int_equal (s_send (stalled.id, i), 0);
        assert_int_equal (s_send (gone.id, i), 0);
    }
    size_t held = bus_backlog_held (s_fx.backlog);
    assert_true (held > S_BURST);
    s_close (&gone);
    int64_t start = zclock_mono ();
    s_run (s_nothing_held, NULL, 5000);
    assert_int_equal (bus_backlog_held (s_fx.backlog), 0);
    uint64_t stalled_n = bus_stats_get (stats, "replies_dropped_stalled");
    uint64_t gone_n = bus_stats_get (stats, "replies_unroutable");
    assert_true (stalled_n > 0);
    assert_true (gone_n > 0);
    assert_true (stalled_n + gone_n <= held);   /* the gone one's pipe took a few as it closed */
    assert_true (zclock_mono () - start >= 150);
    /* no such connection, or no route at all */
    uint8_t route [32];
    size_t route_len = s_route (route, "nobody");
    assert_int_equal (bus_backlog_send (s_fx.backlog, route, route_len, (const uint8_t *) "x", 1), -1);
    assert_int_equal (bus_backlog_send (s_fx.backlog, route, 0, (const uint8_t *) "x", 1), -1);
    route [0] = 200;            /* a frame longer than the route */
    assert_int_equal (bus_backlog_send (s_fx.backlog, route, route_len, (const uint8_t *) "x", 1), -1);
    assert_int_equal (bus_stats_get (stats, "replies_unroutable"), gone_n + 3);
    assert_int_equal (bus_backlog_held (s_fx.backlog), 0);
    s_close (&stalled);
}

/*  A client that stops reading does not hold up another. */
static void
test_one_stalled_other_flows (void **state)
{
    s_fx.backlog = bus_backlog_new (s_fx.loop, s_fx.router, 64 << 20, 10000, s_fx.stats, NULL, NULL);
    assert_non_null (s_fx.backlog);
    s_client_t stalled, reader;
    s_client (&stalled, "c-stuck");
    s_client (&reader, "c-reads");
    s_read_on_loop (&reader);
    for (int i = 0; i < S_BURST; i++) {
        assert_int_equal (s_send (stalled.id, i), 0);
        assert_int_equal (s_send (reader.id, i), 0);
    }
    int64_t start = zclock_mono ();
    while (reader.got < S_BURST && zclock_mono () - start < 10000)
        s_run (NULL, NULL, 20);
    assert_int_equal (reader.got, S_BURST);
    assert_true (reader.in_order);
    assert_true (bus_backlog_held (s_fx.backlog) > 0);      /* the stalled one's */
    s_close (&stalled);
    s_close (&reader);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test_setup_teardown (test_router_alone_drops, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_burst_held_in_order, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_bounded_per_connection, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_stalled_and_gone, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_one_stalled_other_flows, s_setup, s_teardown),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
