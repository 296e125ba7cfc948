/*  test_alarm.c — bus_alarm: zloop timers that can be ended from any
    handler (bus_alarm.h). Each case holds its state in memory of its own
    (malloc'd) and frees it as soon as the timer is ended, as a service
    does: under ASan a late call is a use after free, besides the counts.

    - The case the module exists for, with CZMQ's own timers first: a
      timer ended by another timer's handler in the same pass, both due,
      is still called (CZMQ 4.2); a bus_alarm is not.
    - A timer ended inside its own last call, inside one of its repeating
      calls, after it fired its last time, before the loop ran, and after
      the loop stopped: never called again, its memory freed (LSan).
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "bus_alarm.h"

typedef struct {
    int calls;
    int *total;                 /* counts calls after the state is freed */
} s_state_t;

static s_state_t *
s_state_new (int *total)
{
    s_state_t *st = calloc (1, sizeof *st);
    assert_non_null (st);
    st->total = total;
    return st;
}

/*  Ends the loop when the cases are over. */
static int
s_stop (zloop_t *loop, int timer_id, void *arg)
{
    return -1;
}

static void
s_run (zloop_t *loop, int ms)
{
    zloop_timer (loop, (size_t) ms, 1, s_stop, NULL);
    zloop_start (loop);
}

/* --- CZMQ's own timers: the quirk ------------------------------------------ */

typedef struct {
    zloop_t *loop;
    int victim;                 /* CZMQ id of the timer to end */
    int victim_calls;
} s_raw_t;

static int
s_raw_ender (zloop_t *loop, int timer_id, void *arg)
{
    s_raw_t *raw = arg;
    zloop_timer_end (loop, raw->victim);
    return 0;
}

static int
s_raw_victim (zloop_t *loop, int timer_id, void *arg)
{
    ((s_raw_t *) arg)->victim_calls++;
    return 0;
}

static void
test_czmq_calls_an_ended_timer (void **state)
{
    zloop_t *loop = zloop_new ();
    s_raw_t raw = { .loop = loop };
    zloop_timer (loop, 5, 1, s_raw_ender, &raw);
    raw.victim = zloop_timer (loop, 5, 1, s_raw_victim, &raw);
    s_run (loop, 50);
    /*  Ended before its call, still called: why bus_alarm exists. */
    assert_int_equal (raw.victim_calls, 1);
    zloop_destroy (&loop);
}

/* --- bus_alarm ------------------------------------------------------------ */

typedef struct {
    bus_alarm_t *victim;
    s_state_t *victim_state;
} s_pair_t;

static int
s_count (zloop_t *loop, void *arg)
{
    s_state_t *st = arg;
    st->calls++;
    (*st->total)++;
    return 0;
}

static int
s_end_other (zloop_t *loop, void *arg)
{
    s_pair_t *p = arg;
    bus_alarm_end (&p->victim);
    free (p->victim_state);     /* as a run.wait's waiter is freed */
    p->victim_state = NULL;
    return 0;
}

static void
test_ended_by_an_earlier_timer_in_the_same_pass (void **state)
{
    zloop_t *loop = zloop_new ();
    int total = 0;
    s_pair_t p = { .victim_state = s_state_new (&total) };
    bus_alarm_t *ender = bus_alarm_new (loop, 5, 1, s_end_other, &p);
    p.victim = bus_alarm_new (loop, 5, 1, s_count, p.victim_state);
    assert_non_null (ender);
    assert_non_null (p.victim);
    s_run (loop, 50);
    assert_int_equal (total, 0);
    assert_null (p.victim);
    assert_false (bus_alarm_armed (ender));
    bus_alarm_end (&ender);
    zloop_destroy (&loop);
}

typedef struct {
    bus_alarm_t *timer;
    int calls;
    int end_after;              /* end itself in this call */
} s_self_t;

static int
s_end_self (zloop_t *loop, void *arg)
{
    s_self_t *s = arg;
    if (++s->calls == s->end_after) {
        assert_true (bus_alarm_armed (s->timer) || s->end_after == 1);
        bus_alarm_end (&s->timer);
    }
    return 0;
}

static void
test_ended_inside_its_own_call (void **state)
{
    zloop_t *loop = zloop_new ();
    /*  A timer of 1 time, ended first thing in its call. */
    s_self_t once = { .end_after = 1 };
    once.timer = bus_alarm_new (loop, 2, 1, s_end_self, &once);
    /*  A repeating timer that ends itself on its third call. */
    s_self_t repeat = { .end_after = 3 };
    repeat.timer = bus_alarm_new (loop, 2, 0, s_end_self, &repeat);
    s_run (loop, 60);
    assert_int_equal (once.calls, 1);
    assert_int_equal (repeat.calls, 3);
    assert_null (once.timer);
    assert_null (repeat.timer);
    zloop_destroy (&loop);
}

static void
test_ended_after_its_last_call (void **state)
{
    zloop_t *loop = zloop_new ();
    int total = 0;
    s_state_t *st = s_state_new (&total);
    bus_alarm_t *t = bus_alarm_new (loop, 2, 2, s_count, st);
    assert_true (bus_alarm_armed (t));
    s_run (loop, 40);
    assert_int_equal (st->calls, 2);
    assert_false (bus_alarm_armed (t));
    bus_alarm_end (&t);         /* spent: freed at once */
    assert_null (t);
    bus_alarm_end (&t);         /* NULL: nothing */
    bus_alarm_end (NULL);
    free (st);
    zloop_destroy (&loop);
}

static void
test_ended_before_the_loop_ran (void **state)
{
    zloop_t *loop = zloop_new ();
    int total = 0;
    s_state_t *st = s_state_new (&total);
    bus_alarm_t *t = bus_alarm_new (loop, 0, 1, s_count, st);
    bus_alarm_t *r = bus_alarm_new (loop, 1, 0, s_count, st);
    bus_alarm_end (&t);
    bus_alarm_end (&r);
    free (st);
    s_run (loop, 20);
    assert_int_equal (total, 0);
    zloop_destroy (&loop);
}

static void
test_ended_after_the_loop_stopped (void **state)
{
    zloop_t *loop = zloop_new ();
    int total = 0;
    s_state_t *st = s_state_new (&total);
    bus_alarm_t *t = bus_alarm_new (loop, 1000, 1, s_count, st);
    bus_alarm_t *r = bus_alarm_new (loop, 3, 0, s_count, st);
    s_run (loop, 20);
    assert_true (st->calls >= 3);
    assert_true (bus_alarm_armed (t));
    bus_alarm_end (&t);
    bus_alarm_end (&r);
    free (st);
    zloop_destroy (&loop);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_czmq_calls_an_ended_timer),
        cmocka_unit_test (test_ended_by_an_earlier_timer_in_the_same_pass),
        cmocka_unit_test (test_ended_inside_its_own_call),
        cmocka_unit_test (test_ended_after_its_last_call),
        cmocka_unit_test (test_ended_before_the_loop_ran),
        cmocka_unit_test (test_ended_after_the_loop_stopped),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
