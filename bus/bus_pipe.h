/*  bus_pipe.h — bytes from a worker thread to the reactor as they are
    made, with a bound: the partial answer of a long request (a streamed
    ListObjects' lines) on its way to a reader on the reactor (an HTTP
    stream).

    One producer (a job on a worker thread, bus_worker.h) puts bytes; the
    reactor's consumer learns through a descriptor its zloop polls that
    some wait (the ready callback) and reads them, in order, when it has
    room for them. At most max_bytes wait in the pipe: a put that would
    pass it waits until the consumer reads, for at most max_wait_ms in all
    over the pipe's life (a reader that never reads holds the producer,
    and its thread, that long and no longer); past it the put fails
    BUS_ETIMEOUT. A put on the reactor thread itself (a service without
    workers) never waits: BUS_EFULL. The consumer cancels the pipe when
    its reader goes away: every put fails BUS_EINTR from then on (a put
    waiting wakes), and bus_pipe_cancelled tells a producer that puts
    nothing for a while that it may stop. A put waiting when the process
    is asked to stop (SIGINT/SIGTERM: zsys_interrupted) fails BUS_EINTR
    within 100 ms: a service joins its workers before it ends its
    readers, so a reader that stopped reading does not hold up a stop.

    Threads: bus_pipe_put and bus_pipe_cancelled on the producer's;
    everything else on the reactor's. The consumer owns the pipe and
    destroys it once the producer is done with it (its job finished:
    the reactor learns that from the workers).
*/
#ifndef BUS_PIPE_H
#define BUS_PIPE_H

#include <czmq.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct bus_pipe_t bus_pipe_t;

/*  Bytes wait in the pipe (reactor; called again only after a put that
    follows a read that emptied it). */
typedef void (bus_pipe_ready_fn) (bus_pipe_t *pipe, void *arg);

/*  A pipe on loop (borrowed) holding at most max_bytes (> 0), whose
    producer waits at most max_wait_ms in all (0: never waits). Returns
    NULL (logged) when no descriptor can be had. */
bus_pipe_t *bus_pipe_new (zloop_t *loop, size_t max_bytes, int max_wait_ms,
                          bus_pipe_ready_fn *ready, void *arg);

/*  Stop polling and free. The producer must be done with it. Accepts
    NULL; nulls *self_p. */
void bus_pipe_destroy (bus_pipe_t **self_p);

/*  Producer: queue len bytes (len <= max_bytes), waiting for room as
    above. Returns 0, BUS_EINVAL (len over max_bytes), BUS_EINTR
    (cancelled), BUS_ETIMEOUT (waited max_wait_ms in all), BUS_EFULL (no
    room, on the reactor thread) or BUS_ENOMEM. */
int bus_pipe_put (bus_pipe_t *self, const void *data, size_t len);

/*  Producer: has the consumer cancelled? */
bool bus_pipe_cancelled (bus_pipe_t *self);

/*  Consumer: move up to max waiting bytes into buf; returns how many
    (0: none wait). A producer waiting for room wakes. */
size_t bus_pipe_read (bus_pipe_t *self, void *buf, size_t max);

/*  Consumer: bytes waiting. */
size_t bus_pipe_size (bus_pipe_t *self);

/*  Consumer: its reader went away; see above. */
void bus_pipe_cancel (bus_pipe_t *self);

#endif
