/*  bus_worker.h — threads beside a service's reactor, for work that would
    hold up every request queued behind it (a ListObjects that walks
    thousands of tuples).

    The reactor submits jobs; the first free thread runs each with its own
    state (made on that thread by init, so a thread can keep its own read
    handles and caches); the reactor learns of each finished job through a
    descriptor its zloop polls, and finishes it there (the reply, which only
    the reactor may send). Jobs queue in submission order up to a cap.
    Everything but run and the init/fini functions happens on the reactor
    thread.
*/
#ifndef BUS_WORKER_H
#define BUS_WORKER_H

#include <czmq.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct bus_workers_t bus_workers_t;

/*  A thread's state, made on the thread (NULL is a valid state). */
typedef void *(bus_worker_init_fn) (void *arg);
/*  Free a thread's state, on the thread. */
typedef void (bus_worker_fini_fn) (void *state, void *arg);
/*  Run a job on a worker thread. */
typedef void (bus_worker_run_fn) (void *state, void *job);
/*  A job is over, on the reactor: ran is false for a job that was still
    queued when the workers were stopped (run never saw it). */
typedef void (bus_worker_done_fn) (void *job, bool ran, void *arg);

/*  Start n (1..64) threads, each with its state from init (arg), and poll
    for finished jobs on loop, calling done (done_arg) for each. At most
    queue_max jobs wait. Returns NULL on failure (logged). */
bus_workers_t *bus_workers_new (zloop_t *loop, int n, size_t queue_max,
                                bus_worker_init_fn *init, bus_worker_fini_fn *fini, void *arg,
                                bus_worker_done_fn *done, void *done_arg);

/*  As bus_workers_new, the threads at nice (0..19) rather than 10 (below
    the reactor, so that a long job takes only the CPU the short requests
    leave): 0 for jobs that are every request's critical path (a writer
    whose commits hold LMDB's write lock). */
bus_workers_t *bus_workers_new_nice (zloop_t *loop, int n, size_t queue_max, int nice,
                                     bus_worker_init_fn *init, bus_worker_fini_fn *fini, void *arg,
                                     bus_worker_done_fn *done, void *done_arg);

/*  Queue job for run. Returns 0, or BUS_EFULL when queue_max jobs are
    waiting (the job is not taken). */
int bus_workers_submit (bus_workers_t *self, bus_worker_run_fn *run, void *job);

/*  Batches: a thread takes up to max (1..64) queued jobs at once; begin
    runs before them and end after them (on the thread, with its state,
    the jobs and arg; either may be NULL), and only then are they reported
    done: a writer groups the commits of a batch this way. Set before the
    first submit. */
typedef void (bus_worker_batch_fn) (void *state, void **jobs, size_t n, void *arg);
void bus_workers_batch (bus_workers_t *self, size_t max, bus_worker_batch_fn *begin,
                        bus_worker_batch_fn *end, void *arg);

/*  Jobs submitted and not yet done. */
size_t bus_workers_pending (bus_workers_t *self);

/*  Stop: each thread ends its current job and exits; then done is called
    for every finished job not yet reported (ran true) and for every job
    still queued (ran false). Accepts NULL; nulls *self_p. */
void bus_workers_destroy (bus_workers_t **self_p);

#endif
