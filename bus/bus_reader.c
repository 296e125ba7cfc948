/*  bus_reader.c — a ZeroMQ socket read on a zloop through its descriptor
    (see bus_reader.h). */
#include "bus_reader.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct bus_reader_t {
    zloop_t *loop;
    zsock_t *sock;
    bus_reader_fn *handler;
    void *arg;
    zmq_pollitem_t item;          /* the socket's descriptor, on loop */
    zmq_pollitem_t kick;          /* an eventfd of ours, on loop: written by a kick */
    bool polling, kicking;
    bool kicked;                  /* the eventfd is written, not yet read */
    bool in_handler;
};

/*  Run the handler; arm a kick when it left input behind. */
static int
s_run (bus_reader_t *self)
{
    self->in_handler = true;
    int rc = self->handler (self->loop, self->sock, self->arg);
    self->in_handler = false;
    if (rc == 1) {
        bus_reader_kick (self);
        rc = 0;
    }
    return rc;
}

static int
s_on_fd (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    return s_run (arg);
}

/*  A kick: read the eventfd, then the socket. (Not a zloop timer: a
    timer ended before the loop first runs would still fire once.) */
static int
s_on_kick (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    bus_reader_t *self = arg;
    uint64_t n;
    ssize_t len = read (self->kick.fd, &n, sizeof n);     /* resets it; EAGAIN: nothing was */
    (void) len;
    self->kicked = false;
    return s_run (self);
}

bus_reader_t *
bus_reader_new (zloop_t *loop, zsock_t *sock, bus_reader_fn *handler, void *arg)
{
    bus_reader_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->loop = loop;
    self->sock = sock;
    self->handler = handler;
    self->arg = arg;
    self->item = (zmq_pollitem_t) { NULL, zsock_fd (sock), ZMQ_POLLIN, 0 };
    self->kick = (zmq_pollitem_t) { NULL, eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC), ZMQ_POLLIN, 0 };
    self->polling = self->item.fd >= 0 && zloop_poller (loop, &self->item, s_on_fd, self) == 0;
    self->kicking = self->polling && self->kick.fd >= 0
                 && zloop_poller (loop, &self->kick, s_on_kick, self) == 0;
    if (!self->kicking) {
        bus_reader_destroy (&self);
        return NULL;
    }
    /* the descriptor signals what arrives from now on; what came before
       (or whose signal a bind or connect took in) is read on the first turn */
    bus_reader_kick (self);
    return self;
}

void
bus_reader_destroy (bus_reader_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    bus_reader_t *self = *self_p;
    if (self->polling)
        zloop_poller_end (self->loop, &self->item);
    if (self->kicking)
        zloop_poller_end (self->loop, &self->kick);
    if (self->kick.fd >= 0)
        close (self->kick.fd);
    free (self);
    *self_p = NULL;
}

void
bus_reader_kick (bus_reader_t *self)
{
    if (!self || self->in_handler || self->kicked)
        return;
    uint64_t one = 1;
    self->kicked = write (self->kick.fd, &one, sizeof one) == sizeof one;
}
