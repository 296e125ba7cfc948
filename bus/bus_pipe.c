/*  bus_pipe.c — a bounded byte queue from a worker to the reactor (see
    bus_pipe.h).

    One buffer [off .. len) under a mutex, grown up to max_bytes; a
    condition variable (on the monotonic clock) for a producer waiting
    for room; an eventfd the zloop polls. The producer writes the eventfd
    only when its put finds the pipe empty: the consumer is told once per
    run of bytes, and reads the rest when it has room (it knows its own
    outlet's state; the pipe does not). A producer waits in slices of
    S_SLICE_MS, so that SIGINT/SIGTERM (zsys_interrupted) ends its wait
    soon: the service joins its workers before its HTTP listener goes.
*/
#include "bus_pipe.h"
#include "bus_error.h"
#include "bus_log.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define S_SLICE_MS 100      /* a waiting producer looks at zsys_interrupted this often */

struct bus_pipe_t {
    zloop_t *loop;
    zmq_pollitem_t poll;            /* the eventfd, on loop */
    bool polling;
    pthread_t reactor;              /* the thread that made it */
    pthread_mutex_t lock;           /* guards everything below */
    pthread_cond_t room;            /* bytes were read, or cancelled */
    char *buf;
    size_t off, len, cap, max;
    int64_t wait_left_ms;           /* what the producer may still wait */
    bool cancelled;
    bus_pipe_ready_fn *ready;
    void *arg;
};

static int64_t
s_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*  zloop: the producer put bytes into an empty pipe. */
static int
s_readable (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    bus_pipe_t *self = arg;
    uint64_t count;
    if (read (self->poll.fd, &count, sizeof count) < 0) {
        /* nothing to read: already drained */
    }
    if (bus_pipe_size (self))
        self->ready (self, self->arg);
    return 0;
}

bus_pipe_t *
bus_pipe_new (zloop_t *loop, size_t max_bytes, int max_wait_ms, bus_pipe_ready_fn *ready, void *arg)
{
    assert (loop && max_bytes && ready && max_wait_ms >= 0);
    bus_pipe_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->loop = loop;
    self->reactor = pthread_self ();
    self->max = max_bytes;
    self->wait_left_ms = max_wait_ms;
    self->ready = ready;
    self->arg = arg;
    pthread_mutex_init (&self->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init (&attr);
    pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
    pthread_cond_init (&self->room, &attr);
    pthread_condattr_destroy (&attr);
    int fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    self->poll = (zmq_pollitem_t) { NULL, fd, ZMQ_POLLIN, 0 };
    if (fd < 0 || zloop_poller (loop, &self->poll, s_readable, self)) {
        bus_error ("pipe: cannot poll an eventfd: %s", strerror (errno));
        bus_pipe_destroy (&self);
        return NULL;
    }
    self->polling = true;
    return self;
}

void
bus_pipe_destroy (bus_pipe_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    bus_pipe_t *self = *self_p;
    if (self->polling)
        zloop_poller_end (self->loop, &self->poll);
    if (self->poll.fd >= 0)
        close (self->poll.fd);
    pthread_cond_destroy (&self->room);
    pthread_mutex_destroy (&self->lock);
    free (self->buf);
    free (self);
    *self_p = NULL;
}

int
bus_pipe_put (bus_pipe_t *self, const void *data, size_t len)
{
    if (len > self->max)
        return BUS_EINVAL;
    bool reactor = pthread_equal (pthread_self (), self->reactor);
    int rc = 0;
    pthread_mutex_lock (&self->lock);
    while (!self->cancelled && self->len - self->off + len > self->max) {
        if (reactor) {
            rc = BUS_EFULL;
            break;
        }
        if (zsys_interrupted) {         /* the reactor stops: nobody will read */
            rc = BUS_EINTR;
            break;
        }
        if (self->wait_left_ms <= 0) {
            rc = BUS_ETIMEOUT;
            break;
        }
        int64_t start = s_now_ms ();
        int64_t slice = self->wait_left_ms < S_SLICE_MS ? self->wait_left_ms : S_SLICE_MS;
        struct timespec until;
        clock_gettime (CLOCK_MONOTONIC, &until);
        until.tv_sec += (time_t) (slice / 1000);
        until.tv_nsec += (long) (slice % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait (&self->room, &self->lock, &until);
        self->wait_left_ms -= s_now_ms () - start;
    }
    if (rc == 0 && self->cancelled)
        rc = BUS_EINTR;
    bool was_empty = self->len == self->off;
    if (rc == 0 && self->len + len > self->cap) {
        if (self->off) {                /* slide what waits to the front */
            memmove (self->buf, self->buf + self->off, self->len - self->off);
            self->len -= self->off;
            self->off = 0;
        }
        if (self->len + len > self->cap) {
            size_t cap = self->cap ? self->cap : 4096;
            while (cap < self->len + len)
                cap *= 2;
            char *buf = realloc (self->buf, cap);
            if (buf) {
                self->buf = buf;
                self->cap = cap;
            }
            else
                rc = BUS_ENOMEM;
        }
    }
    if (rc == 0) {
        memcpy (self->buf + self->len, data, len);
        self->len += len;
    }
    pthread_mutex_unlock (&self->lock);
    if (rc == 0 && was_empty && len) {
        uint64_t one = 1;
        if (write (self->poll.fd, &one, sizeof one) != sizeof one)
            bus_warn ("pipe: cannot signal the reactor: %s", strerror (errno));
    }
    return rc;
}

bool
bus_pipe_cancelled (bus_pipe_t *self)
{
    pthread_mutex_lock (&self->lock);
    bool cancelled = self->cancelled;
    pthread_mutex_unlock (&self->lock);
    return cancelled;
}

size_t
bus_pipe_read (bus_pipe_t *self, void *buf, size_t max)
{
    pthread_mutex_lock (&self->lock);
    size_t n = self->len - self->off;
    if (n > max)
        n = max;
    if (n)
        memcpy (buf, self->buf + self->off, n);
    self->off += n;
    if (self->off == self->len)
        self->off = self->len = 0;
    if (n)
        pthread_cond_signal (&self->room);
    pthread_mutex_unlock (&self->lock);
    return n;
}

size_t
bus_pipe_size (bus_pipe_t *self)
{
    pthread_mutex_lock (&self->lock);
    size_t n = self->len - self->off;
    pthread_mutex_unlock (&self->lock);
    return n;
}

void
bus_pipe_cancel (bus_pipe_t *self)
{
    pthread_mutex_lock (&self->lock);
    self->cancelled = true;
    self->off = self->len = 0;          /* nobody will read them */
    pthread_cond_signal (&self->room);
    pthread_mutex_unlock (&self->lock);
}
