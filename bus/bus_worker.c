/*  bus_worker.c — threads beside a service's reactor (see bus_worker.h).

    One queue of jobs under a mutex, a condition variable to wake a free
    thread, and a list of finished jobs that the reactor drains when an
    eventfd it polls becomes readable. A thread writes the eventfd only
    when it finds the finished list empty: the reactor drains the whole
    list on each wake-up, so one write covers every job that joins the
    list before the drain (a write after the drain costs at most a
    wake-up that finds nothing).
*/
#include "bus_worker.h"
#include "bus_error.h"
#include "bus_log.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#define S_THREADS_MAX 64
#define S_BATCH_MAX   1024   /* jobs a thread takes at once, at most (BUS_WRITE_GROUP_MAX) */
#define S_NICE        10     /* the threads' nice value (the reactor's is 0) */

typedef struct s_job_t {
    bus_worker_run_fn *run;
    void *job;
    struct s_job_t *next;
} s_job_t;

typedef struct {
    s_job_t *head, *tail;
    size_t n;
} s_queue_t;

struct bus_workers_t {
    zloop_t *loop;
    zmq_pollitem_t poll;            /* the eventfd, on loop */
    bool polling;
    pthread_mutex_t lock;           /* guards queued, done, stopping */
    pthread_cond_t wake;            /* a job queued, or stopping */
    s_queue_t queued, done;
    bool stopping;
    size_t queue_max;
    size_t pending;                 /* submitted, not yet reported (reactor only) */
    bus_worker_init_fn *init;
    bus_worker_fini_fn *fini;
    void *arg;
    bus_worker_done_fn *on_done;
    void *done_arg;
    size_t batch_max;               /* jobs taken at once (1 unless batched) */
    bus_worker_batch_fn *batch_begin, *batch_end;
    void *batch_arg;
    int nice;                       /* the threads' (S_NICE unless bus_workers_new_nice) */
    pthread_t threads [S_THREADS_MAX];
    int n_threads;
};

static void
s_push (s_queue_t *q, s_job_t *j)
{
    j->next = NULL;
    if (q->tail)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
    q->n++;
}

static s_job_t *
s_pop (s_queue_t *q)
{
    s_job_t *j = q->head;
    if (j) {
        q->head = j->next;
        if (!q->head)
            q->tail = NULL;
        q->n--;
    }
    return j;
}

/*  Take the whole queue (the caller holds the lock). */
static s_job_t *
s_take_all (s_queue_t *q)
{
    s_job_t *all = q->head;
    *q = (s_queue_t) { NULL, NULL, 0 };
    return all;
}

static void *
s_thread (void *arg)
{
    bus_workers_t *self = arg;
    /* below the reactor: a long job takes the CPU the short requests leave
       (nice 0: the reactor's own, left as it is) */
    if (self->nice && setpriority (PRIO_PROCESS, (id_t) gettid (), self->nice) != 0)
        bus_warn ("workers: cannot lower the threads' priority: %s", strerror (errno));
    void *state = self->init ? self->init (self->arg) : NULL;
    pthread_mutex_lock (&self->lock);
    while (true) {
        while (!self->queued.head && !self->stopping)
            pthread_cond_wait (&self->wake, &self->lock);
        if (self->stopping)
            break;
        s_job_t *batch [S_BATCH_MAX];
        void *jobs [S_BATCH_MAX];
        size_t n = 0;
        while (n < self->batch_max && self->queued.head) {
            batch [n] = s_pop (&self->queued);
            jobs [n] = batch [n]->job;
            n++;
        }
        bus_worker_batch_fn *begin = self->batch_begin, *end = self->batch_end;
        void *batch_arg = self->batch_arg;
        pthread_mutex_unlock (&self->lock);
        if (begin)
            begin (state, jobs, n, batch_arg);
        for (size_t i = 0; i < n; i++)
            batch [i]->run (state, batch [i]->job);
        if (end)
            end (state, jobs, n, batch_arg);
        pthread_mutex_lock (&self->lock);
        bool first = !self->done.head;
        for (size_t i = 0; i < n; i++)
            s_push (&self->done, batch [i]);
        if (first) {
            uint64_t one = 1;
            while (write (self->poll.fd, &one, sizeof one) < 0 && errno == EINTR)
                ;
        }
    }
    pthread_mutex_unlock (&self->lock);
    if (self->fini)
        self->fini (state, self->arg);
    return NULL;
}

/*  Report each job of list to done, freeing the list. */
static void
s_report (bus_workers_t *self, s_job_t *list, bool ran)
{
    while (list) {
        s_job_t *next = list->next;
        self->pending--;
        self->on_done (list->job, ran, self->done_arg);
        free (list);
        list = next;
    }
}

/*  The eventfd is readable: report every finished job. */
static int
s_on_done (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    bus_workers_t *self = arg;
    uint64_t count;
    if (read (self->poll.fd, &count, sizeof count) < 0 && errno != EAGAIN && errno != EINTR)
        bus_error ("workers: eventfd read: %s", strerror (errno));
    pthread_mutex_lock (&self->lock);
    s_job_t *done = s_take_all (&self->done);
    pthread_mutex_unlock (&self->lock);
    s_report (self, done, true);
    return 0;
}

bus_workers_t *
bus_workers_new (zloop_t *loop, int n, size_t queue_max,
                 bus_worker_init_fn *init, bus_worker_fini_fn *fini, void *arg,
                 bus_worker_done_fn *done, void *done_arg)
{
    return bus_workers_new_nice (loop, n, queue_max, S_NICE, init, fini, arg, done, done_arg);
}

bus_workers_t *
bus_workers_new_nice (zloop_t *loop, int n, size_t queue_max, int nice,
                      bus_worker_init_fn *init, bus_worker_fini_fn *fini, void *arg,
                      bus_worker_done_fn *done, void *done_arg)
{
    if (!loop || n < 1 || n > S_THREADS_MAX || !done || queue_max == 0 || nice < 0 || nice > 19) {
        bus_error ("workers: bad arguments (%d threads)", n);
        return NULL;
    }
    bus_workers_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->loop = loop;
    self->queue_max = queue_max;
    self->init = init;
    self->fini = fini;
    self->arg = arg;
    self->on_done = done;
    self->done_arg = done_arg;
    self->batch_max = 1;
    self->nice = nice;
    pthread_mutex_init (&self->lock, NULL);
    pthread_cond_init (&self->wake, NULL);
    self->poll = (zmq_pollitem_t) { NULL, eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC), ZMQ_POLLIN, 0 };
    if (self->poll.fd < 0) {
        bus_error ("workers: eventfd: %s", strerror (errno));
        goto fail;
    }
    if (zloop_poller (loop, &self->poll, s_on_done, self)) {
        bus_error ("workers: cannot poll the eventfd");
        goto fail;
    }
    zloop_poller_set_tolerant (loop, &self->poll);
    self->polling = true;
    for (; self->n_threads < n; self->n_threads++) {
        int rc = pthread_create (&self->threads [self->n_threads], NULL, s_thread, self);
        if (rc) {
            bus_error ("workers: cannot start a thread: %s", strerror (rc));
            goto fail;
        }
    }
    return self;
fail:
    bus_workers_destroy (&self);
    return NULL;
}

int
bus_workers_submit (bus_workers_t *self, bus_worker_run_fn *run, void *job)
{
    s_job_t *j = malloc (sizeof *j);
    if (!j)
        return BUS_ENOMEM;
    *j = (s_job_t) { run, job, NULL };
    pthread_mutex_lock (&self->lock);
    bool full = self->queued.n >= self->queue_max;
    if (!full) {
        s_push (&self->queued, j);
        pthread_cond_signal (&self->wake);
    }
    pthread_mutex_unlock (&self->lock);
    if (full) {
        free (j);
        return BUS_EFULL;
    }
    self->pending++;
    return 0;
}

void
bus_workers_batch (bus_workers_t *self, size_t max, bus_worker_batch_fn *begin,
                   bus_worker_batch_fn *end, void *arg)
{
    pthread_mutex_lock (&self->lock);
    self->batch_max = max < 1 ? 1 : max > S_BATCH_MAX ? S_BATCH_MAX : max;
    self->batch_begin = begin;
    self->batch_end = end;
    self->batch_arg = arg;
    pthread_mutex_unlock (&self->lock);
}

size_t
bus_workers_pending (bus_workers_t *self)
{
    return self->pending;
}

void
bus_workers_destroy (bus_workers_t **self_p)
{
    bus_workers_t *self = *self_p;
    if (!self)
        return;
    pthread_mutex_lock (&self->lock);
    self->stopping = true;
    pthread_cond_broadcast (&self->wake);
    pthread_mutex_unlock (&self->lock);
    for (int i = 0; i < self->n_threads; i++)
        pthread_join (self->threads [i], NULL);
    if (self->polling)
        zloop_poller_end (self->loop, &self->poll);
    s_report (self, s_take_all (&self->done), true);
    s_report (self, s_take_all (&self->queued), false);
    if (self->poll.fd >= 0)
        close (self->poll.fd);
    pthread_cond_destroy (&self->wake);
    pthread_mutex_destroy (&self->lock);
    free (self);
    *self_p = NULL;
}
