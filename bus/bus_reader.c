/*  bus_reader.c — a ZeroMQ socket read on a zloop through its descriptor
    (see bus_reader.h). */
#include "bus_reader.h"

#include <stdlib.h>

struct bus_reader_t {
    zloop_t *loop;
    zsock_t *sock;
    bus_reader_fn *handler;
    void *arg;
    zmq_pollitem_t item;          /* the socket's descriptor, on loop */
    bool polling;
    int kick_id;                  /* the one-shot timer of a kick, or -1 */
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

/*  The kick's timer (one-shot: zloop removes it after this call). */
static int
s_on_kick (zloop_t *loop, int timer_id, void *arg)
{
    bus_reader_t *self = arg;
    self->kick_id = -1;
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
    self->kick_id = -1;
    self->item = (zmq_pollitem_t) { NULL, zsock_fd (sock), ZMQ_POLLIN, 0 };
    if (self->item.fd < 0 || zloop_poller (loop, &self->item, s_on_fd, self)) {
        free (self);
        return NULL;
    }
    self->polling = true;
    /* the descriptor signals what arrives from now on; what came before
       (or whose signal a bind or connect took in) is read on the first turn */
    bus_reader_kick (self);
    if (self->kick_id < 0) {
        bus_reader_destroy (&self);
        return NULL;
    }
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
    if (self->kick_id >= 0)
        zloop_timer_end (self->loop, self->kick_id);
    free (self);
    *self_p = NULL;
}

void
bus_reader_kick (bus_reader_t *self)
{
    if (!self || self->in_handler || self->kick_id >= 0)
        return;
    self->kick_id = zloop_timer (self->loop, 0, 1, s_on_kick, self);
}
