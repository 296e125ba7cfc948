/*  test_pipe.c — unit tests for bus_pipe: bytes put on a producer thread
    reach the reactor (the zloop thread) whole and in order, never more
    than the bound waiting; a producer nobody reads for waits its
    allowance and no more; cancelling, or SIGINT/SIGTERM, wakes a waiting
    producer at once;
    on the reactor thread itself a put never waits.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "bus_error.h"
#include "bus_pipe.h"

#define S_LINES 20000
#define S_MAX   1024

static int64_t
s_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct {
    bus_pipe_t *pipe;
    int lines;                  /* to put */
    atomic_int rc;              /* the first put that failed, or 0 */
    atomic_bool done;
    int64_t waited_ms;          /* the failing put took this long */
} s_producer_t;

static void *
s_produce (void *arg)
{
    s_producer_t *p = arg;
    for (int i = 0; i < p->lines; i++) {
        char line [16];
        int n = snprintf (line, sizeof line, "%06d\n", i);
        int64_t start = s_now_ms ();
        int rc = bus_pipe_put (p->pipe, line, (size_t) n);
        if (rc) {
            p->waited_ms = s_now_ms () - start;
            atomic_store (&p->rc, rc);
            break;
        }
    }
    atomic_store (&p->done, true);
    return NULL;
}

typedef struct {
    char *got;
    size_t len;
    size_t most;                /* the most seen waiting */
    int calls;
    s_producer_t *producer;
} s_consumer_t;

static void
s_ready (bus_pipe_t *pipe, void *arg)
{
    s_consumer_t *c = arg;
    c->calls++;
    size_t n = bus_pipe_size (pipe);
    if (n > c->most)
        c->most = n;
    /* a small read at a time: the rest is read by the timer, as a reader
       whose outlet takes a little at a time would */
    c->len += bus_pipe_read (pipe, c->got + c->len, 100);
}

static int
s_drain_tick (zloop_t *loop, int timer_id, void *arg)
{
    s_consumer_t *c = arg;
    bus_pipe_t *pipe = c->producer->pipe;
    size_t n = bus_pipe_size (pipe);
    if (n > c->most)
        c->most = n;
    c->len += bus_pipe_read (pipe, c->got + c->len, 512);
    if (atomic_load (&c->producer->done) && bus_pipe_size (pipe) == 0)
        return -1;
    return 0;
}

/*  Everything arrives, in order, never more than the bound waiting. */
static void
test_in_order_bounded (void **state)
{
    zloop_t *loop = zloop_new ();
    s_producer_t prod = { .lines = S_LINES };
    s_consumer_t cons = { .got = malloc (S_LINES * 7 + 1), .producer = &prod };
    prod.pipe = bus_pipe_new (loop, S_MAX, 10000, s_ready, &cons);
    assert_non_null (prod.pipe);
    pthread_t thread;
    assert_int_equal (pthread_create (&thread, NULL, s_produce, &prod), 0);
    zloop_timer (loop, 1, 0, s_drain_tick, &cons);
    zloop_start (loop);
    pthread_join (thread, NULL);
    assert_int_equal (atomic_load (&prod.rc), 0);
    assert_int_equal (cons.len, (size_t) S_LINES * 7);
    for (int i = 0; i < S_LINES; i++) {
        char line [16];
        snprintf (line, sizeof line, "%06d\n", i);
        assert_memory_equal (cons.got + (size_t) i * 7, line, 7);
    }
    assert_true (cons.most <= S_MAX);
    assert_true (cons.calls > 0);           /* the descriptor told the reactor */
    bus_pipe_destroy (&prod.pipe);
    bus_pipe_destroy (&prod.pipe);          /* accepted */
    free (cons.got);
    zloop_destroy (&loop);
}

static void
s_ignore (bus_pipe_t *pipe, void *arg)
{
}

/*  Nobody reads: the producer waits its allowance (in all), then fails. */
static void
test_wait_bounded (void **state)
{
    zloop_t *loop = zloop_new ();
    s_producer_t prod = { .lines = S_LINES };
    prod.pipe = bus_pipe_new (loop, S_MAX, 300, s_ignore, NULL);
    int64_t start = s_now_ms ();
    pthread_t thread;
    assert_int_equal (pthread_create (&thread, NULL, s_produce, &prod), 0);
    pthread_join (thread, NULL);
    int64_t took = s_now_ms () - start;
    assert_int_equal (atomic_load (&prod.rc), BUS_ETIMEOUT);
    assert_true (took >= 290 && took < 3000);
    assert_true (bus_pipe_size (prod.pipe) <= S_MAX);
    assert_true (bus_pipe_size (prod.pipe) > S_MAX - 7);
    /*  the allowance is spent: the next put that needs room fails at once */
    start = s_now_ms ();
    assert_int_equal (bus_pipe_put (prod.pipe, "0123456\n", 8), BUS_EFULL);   /* (reactor thread) */
    prod.lines = 1;
    prod.rc = 0;
    assert_int_equal (pthread_create (&thread, NULL, s_produce, &prod), 0);
    pthread_join (thread, NULL);
    assert_int_equal (atomic_load (&prod.rc), BUS_ETIMEOUT);
    assert_true (s_now_ms () - start < 200);
    bus_pipe_destroy (&prod.pipe);
    zloop_destroy (&loop);
}

/*  Cancel wakes a producer waiting for room; every put fails after. */
static void
test_cancel (void **state)
{
    zloop_t *loop = zloop_new ();
    s_producer_t prod = { .lines = S_LINES };
    prod.pipe = bus_pipe_new (loop, S_MAX, 60000, s_ignore, NULL);
    pthread_t thread;
    assert_int_equal (pthread_create (&thread, NULL, s_produce, &prod), 0);
    int64_t until = s_now_ms () + 2000;
    while (bus_pipe_size (prod.pipe) + 7 <= S_MAX && s_now_ms () < until)
        usleep (1000);
    usleep (50 * 1000);                 /* the producer waits for room */
    assert_false (atomic_load (&prod.done));
    assert_false (bus_pipe_cancelled (prod.pipe));
    int64_t start = s_now_ms ();
    bus_pipe_cancel (prod.pipe);
    pthread_join (thread, NULL);
    assert_true (s_now_ms () - start < 1000);
    assert_int_equal (atomic_load (&prod.rc), BUS_EINTR);
    assert_true (bus_pipe_cancelled (prod.pipe));
    assert_int_equal (bus_pipe_size (prod.pipe), 0);
    assert_int_equal (bus_pipe_put (prod.pipe, "x", 1), BUS_EINTR);
    bus_pipe_destroy (&prod.pipe);
    zloop_destroy (&loop);
}

/*  SIGINT/SIGTERM (zsys_interrupted) ends a producer's wait soon. */
static void
test_interrupted (void **state)
{
    zloop_t *loop = zloop_new ();
    s_producer_t prod = { .lines = S_LINES };
    prod.pipe = bus_pipe_new (loop, S_MAX, 60000, s_ignore, NULL);
    pthread_t thread;
    assert_int_equal (pthread_create (&thread, NULL, s_produce, &prod), 0);
    int64_t until = s_now_ms () + 2000;
    while (bus_pipe_size (prod.pipe) + 7 <= S_MAX && s_now_ms () < until)
        usleep (1000);
    usleep (50 * 1000);
    assert_false (atomic_load (&prod.done));
    int64_t start = s_now_ms ();
    zsys_interrupted = 1;
    pthread_join (thread, NULL);
    zsys_interrupted = 0;
    assert_true (s_now_ms () - start < 1000);
    assert_int_equal (atomic_load (&prod.rc), BUS_EINTR);
    bus_pipe_destroy (&prod.pipe);
    zloop_destroy (&loop);
}

/*  On the reactor thread a put never waits; a put over the bound is
    refused whole. */
static void
test_reactor_put (void **state)
{
    zloop_t *loop = zloop_new ();
    bus_pipe_t *pipe = bus_pipe_new (loop, 16, 60000, s_ignore, NULL);
    char big [17] = { 0 };
    assert_int_equal (bus_pipe_put (pipe, big, 17), BUS_EINVAL);
    assert_int_equal (bus_pipe_put (pipe, "0123456789", 10), 0);
    int64_t start = s_now_ms ();
    assert_int_equal (bus_pipe_put (pipe, "0123456789", 10), BUS_EFULL);
    assert_true (s_now_ms () - start < 100);
    char out [16];
    assert_int_equal (bus_pipe_read (pipe, out, 4), 4);
    assert_memory_equal (out, "0123", 4);
    assert_int_equal (bus_pipe_put (pipe, "abcdefghij", 10), 0);   /* 6 + 10 = 16 */
    assert_int_equal (bus_pipe_read (pipe, out, sizeof out), 16);
    assert_memory_equal (out, "456789abcdefghij", 16);
    assert_int_equal (bus_pipe_read (pipe, out, sizeof out), 0);
    bus_pipe_destroy (&pipe);
    zloop_destroy (&loop);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_in_order_bounded),
        cmocka_unit_test (test_wait_bounded),
        cmocka_unit_test (test_cancel),
        cmocka_unit_test (test_interrupted),
        cmocka_unit_test (test_reactor_put),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
