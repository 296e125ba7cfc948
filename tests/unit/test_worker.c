/*  test_worker.c — unit tests for bus_worker: jobs run on the worker
    threads with each thread's own state, are reported on the reactor
    (the zloop thread), queue up to their cap, and are all accounted for
    when the workers stop (finished ones as ran, queued ones as not).
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>
#include <cmocka.h>

#include "bus_error.h"
#include "bus_worker.h"

typedef struct {
    int id;
    pthread_t ran_on;
    int state_seen;                 /* the thread state's value */
    bool ran;                       /* as reported by done */
    bool reported;
    pthread_t reported_on;
} s_job_t;

static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t s_cond = PTHREAD_COND_INITIALIZER;
static int s_states_made, s_states_freed;
static bool s_hold;                 /* jobs wait while set */
static int s_running;               /* jobs inside s_run */
static int s_reported;

static void *
s_init (void *arg)
{
    pthread_mutex_lock (&s_lock);
    int *state = malloc (sizeof *state);
    *state = 100 + s_states_made++;
    pthread_mutex_unlock (&s_lock);
    return state;
}

static void
s_fini (void *state, void *arg)
{
    pthread_mutex_lock (&s_lock);
    s_states_freed++;
    pthread_mutex_unlock (&s_lock);
    free (state);
}

static void
s_run (void *state, void *arg)
{
    s_job_t *job = arg;
    job->ran_on = pthread_self ();
    job->state_seen = *(int *) state;
    pthread_mutex_lock (&s_lock);
    s_running++;
    pthread_cond_broadcast (&s_cond);
    while (s_hold)
        pthread_cond_wait (&s_cond, &s_lock);
    s_running--;
    pthread_mutex_unlock (&s_lock);
}

static void
s_done (void *arg, bool ran, void *done_arg)
{
    s_job_t *job = arg;
    assert_false (job->reported);       /* once only */
    job->reported = true;
    job->ran = ran;
    job->reported_on = pthread_self ();
    s_reported++;
}

/*  zloop timer: end the loop once *target jobs are reported. */
static int
s_until (zloop_t *loop, int timer_id, void *arg)
{
    return s_reported >= *(int *) arg ? -1 : 0;
}

/*  Run loop until target jobs are reported (or 5 s). */
static void
s_wait_reported (zloop_t *loop, int target)
{
    int t = zloop_timer (loop, 1, 0, s_until, &target);
    int guard = zloop_timer (loop, 5000, 1, s_until, &(int) { 0 });
    zloop_start (loop);
    zloop_timer_end (loop, t);
    zloop_timer_end (loop, guard);
    assert_int_equal (s_reported, target);
}

/*  Wait until n jobs are inside s_run. */
static void
s_wait_running (int n)
{
    pthread_mutex_lock (&s_lock);
    while (s_running < n)
        pthread_cond_wait (&s_cond, &s_lock);
    pthread_mutex_unlock (&s_lock);
}

static void
s_release (void)
{
    pthread_mutex_lock (&s_lock);
    s_hold = false;
    pthread_cond_broadcast (&s_cond);
    pthread_mutex_unlock (&s_lock);
}

static void
s_reset (void)
{
    s_states_made = s_states_freed = s_running = s_reported = 0;
    s_hold = false;
}

/*  Every job runs on a worker thread with that thread's state and is
    reported on the loop's thread; states are made and freed per thread. */
static void
test_jobs_run_and_are_reported (void **state)
{
    s_reset ();
    zloop_t *loop = zloop_new ();
    bus_workers_t *w = bus_workers_new (loop, 3, 100, s_init, s_fini, NULL, s_done, NULL);
    assert_non_null (w);
    s_job_t jobs [50];
    memset (jobs, 0, sizeof jobs);
    for (int i = 0; i < 50; i++) {
        jobs [i].id = i;
        assert_int_equal (bus_workers_submit (w, s_run, &jobs [i]), 0);
    }
    s_wait_reported (loop, 50);
    assert_int_equal (bus_workers_pending (w), 0);
    for (int i = 0; i < 50; i++) {
        assert_true (jobs [i].ran);
        assert_false (pthread_equal (jobs [i].ran_on, pthread_self ()));
        assert_true (pthread_equal (jobs [i].reported_on, pthread_self ()));
        assert_in_range (jobs [i].state_seen, 100, 102);
    }
    bus_workers_destroy (&w);
    assert_null (w);
    assert_int_equal (s_states_made, 3);
    assert_int_equal (s_states_freed, 3);
    zloop_destroy (&loop);
}

/*  The queue holds queue_max jobs beyond those running: one more is
    refused, and taken again once there is room. */
static void
test_queue_cap (void **state)
{
    s_reset ();
    s_hold = true;
    zloop_t *loop = zloop_new ();
    bus_workers_t *w = bus_workers_new (loop, 1, 2, s_init, s_fini, NULL, s_done, NULL);
    assert_non_null (w);
    s_job_t jobs [4];
    memset (jobs, 0, sizeof jobs);
    assert_int_equal (bus_workers_submit (w, s_run, &jobs [0]), 0);
    s_wait_running (1);                 /* the thread holds job 0 */
    assert_int_equal (bus_workers_submit (w, s_run, &jobs [1]), 0);
    assert_int_equal (bus_workers_submit (w, s_run, &jobs [2]), 0);
    assert_int_equal (bus_workers_submit (w, s_run, &jobs [3]), BUS_EFULL);
    assert_int_equal (bus_workers_pending (w), 3);
    s_release ();
    s_wait_reported (loop, 3);
    assert_int_equal (bus_workers_submit (w, s_run, &jobs [3]), 0);
    s_wait_reported (loop, 4);
    for (int i = 0; i < 4; i++)
        assert_true (jobs [i].ran);
    bus_workers_destroy (&w);
    zloop_destroy (&loop);
}

static void *
s_stop_later (void *arg)
{
    usleep (50 * 1000);
    s_release ();
    return NULL;
}

/*  Stopping: the running job finishes and is reported as ran; the queued
    ones are reported as not ran; nothing is lost or reported twice. */
static void
test_stop_accounts_for_every_job (void **state)
{
    s_reset ();
    s_hold = true;
    zloop_t *loop = zloop_new ();
    bus_workers_t *w = bus_workers_new (loop, 1, 10, s_init, s_fini, NULL, s_done, NULL);
    assert_non_null (w);
    s_job_t jobs [5];
    memset (jobs, 0, sizeof jobs);
    for (int i = 0; i < 5; i++)
        assert_int_equal (bus_workers_submit (w, s_run, &jobs [i]), 0);
    s_wait_running (1);
    pthread_t releaser;
    pthread_create (&releaser, NULL, s_stop_later, NULL);
    /* destroy blocks until the running job ends (released by the other
       thread); a released thread may not start another job first */
    bus_workers_destroy (&w);
    pthread_join (releaser, NULL);
    assert_int_equal (s_reported, 5);
    assert_true (jobs [0].reported && jobs [0].ran);
    int ran = 0;
    for (int i = 0; i < 5; i++) {
        assert_true (jobs [i].reported);
        ran += jobs [i].ran;
    }
    assert_int_equal (ran, 1);
    assert_int_equal (s_states_freed, 1);
    zloop_destroy (&loop);
}

/*  A thread's init: its nice value, as its state. */
static void *
s_nice_init (void *arg)
{
    int *nice = malloc (sizeof *nice);
    *nice = getpriority (PRIO_PROCESS, (id_t) gettid ());
    return nice;
}

/*  A job: its thread's nice value (the state) into the job's state_seen. */
static void
s_nice_run (void *state, void *arg)
{
    ((s_job_t *) arg)->state_seen = *(int *) state;
}

/*  The threads run below the creator (nice 10) unless made at another
    nice value: 0 leaves them at the creator's (a writer on every
    request's path). */
static void
test_nice (void **state)
{
    s_reset ();
    int mine = getpriority (PRIO_PROCESS, (id_t) gettid ());
    zloop_t *loop = zloop_new ();
    bus_workers_t *low = bus_workers_new (loop, 1, 10, s_nice_init, s_fini, NULL, s_done, NULL);
    bus_workers_t *same = bus_workers_new_nice (loop, 1, 10, 0, s_nice_init, s_fini, NULL, s_done, NULL);
    assert_non_null (low);
    assert_non_null (same);
    s_job_t jobs [2];
    memset (jobs, 0, sizeof jobs);
    assert_int_equal (bus_workers_submit (low, s_nice_run, &jobs [0]), 0);
    assert_int_equal (bus_workers_submit (same, s_nice_run, &jobs [1]), 0);
    s_wait_reported (loop, 2);
    if (mine <= 10)                     /* a process niced past 10 already stays so */
        assert_int_equal (jobs [0].state_seen, 10);
    assert_int_equal (jobs [1].state_seen, mine);
    assert_null (bus_workers_new_nice (loop, 1, 10, 20, NULL, NULL, NULL, s_done, NULL));
    assert_null (bus_workers_new_nice (loop, 1, 10, -1, NULL, NULL, NULL, s_done, NULL));
    bus_workers_destroy (&low);
    bus_workers_destroy (&same);
    zloop_destroy (&loop);
}

/*  Bad arguments make no workers. */
static void
test_bad_arguments (void **state)
{
    zloop_t *loop = zloop_new ();
    assert_null (bus_workers_new (loop, 0, 10, NULL, NULL, NULL, s_done, NULL));
    assert_null (bus_workers_new (loop, 65, 10, NULL, NULL, NULL, s_done, NULL));
    assert_null (bus_workers_new (loop, 1, 0, NULL, NULL, NULL, s_done, NULL));
    assert_null (bus_workers_new (loop, 1, 10, NULL, NULL, NULL, NULL, NULL));
    assert_null (bus_workers_new (NULL, 1, 10, NULL, NULL, NULL, s_done, NULL));
    bus_workers_t *none = NULL;
    bus_workers_destroy (&none);        /* accepted */
    zloop_destroy (&loop);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_jobs_run_and_are_reported),
        cmocka_unit_test (test_nice),
        cmocka_unit_test (test_queue_cap),
        cmocka_unit_test (test_stop_accounts_for_every_job),
        cmocka_unit_test (test_bad_arguments),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
