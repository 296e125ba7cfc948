/*  bus_backlog.h — replies held while their connection's queue is full.

    A ROUTER drops what it sends to a connection whose queue is at its
    high-water mark (a count of messages: a service's is queue_kb /
    max_frame, 256 with the defaults), and says nothing. A client with
    many requests in flight gets their replies in a burst: a client with
    10,000 calls in flight, answered together, lost about a fifth of them
    to that drop (test_call), and collected them only on its retry, 5 s
    later; on a loaded machine a retry's replies were dropped again, until
    calls timed out.

    With ZMQ_ROUTER_MANDATORY on, the ROUTER says EAGAIN instead (and
    EHOSTUNREACH for a connection that is gone). A bus_backlog_t sends a
    reply at once when it can, else holds it, in order, per connection
    (its first routing frame), and sends what it holds every millisecond
    while it holds anything, as the connection drains. A reply behind one
    held for its connection is held too: each connection's replies go in
    the order they were made.

    What it holds is bounded per connection, in bytes (a service: its
    queue_kb), and in time: a connection that has taken nothing for
    hold_ms loses what is held for it. A reply past either bound is
    dropped (the client's retry collects it from the dedupe memory), and
    counted: replies_held, replies_dropped_full, replies_dropped_stalled,
    replies_unroutable (the connection is gone; what was held for it too).

    Reactor thread only, as zloop and the socket.
*/
#ifndef BUS_BACKLOG_H
#define BUS_BACKLOG_H

#include <czmq.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus_stats.h"

typedef struct bus_backlog_t bus_backlog_t;

/*  Called after the backlog sent on the socket from its timer (a send may
    take in the socket's commands: bus_reader_kick). */
typedef void (bus_backlog_sent_fn) (void *arg);

/*  Hold replies for router (borrowed; this sets ZMQ_ROUTER_MANDATORY on
    it) on loop (borrowed), up to peer_bytes per connection, for up to
    hold_ms without progress; counts in stats (borrowed, may be NULL);
    sent (may be NULL) after its timer sent anything. NULL when out of
    memory or an argument is missing. */
bus_backlog_t *bus_backlog_new (zloop_t *loop, zsock_t *router, size_t peer_bytes, int64_t hold_ms,
                                bus_stats_t *stats, bus_backlog_sent_fn *sent, void *arg);

/*  Drop what is held and free. Accepts NULL. */
void bus_backlog_destroy (bus_backlog_t **self_p);

/*  Send a reply: route is its routing frames, each as one byte of length
    then its bytes (route_len bytes in all, at least one frame), then data.
    0 sent or held (bus_backlog_held tells), -1 dropped: no route, the
    connection is gone, or what it holds for it is full. */
int bus_backlog_send (bus_backlog_t *self, const uint8_t *route, size_t route_len,
                      const uint8_t *data, size_t len);

/*  Replies held now, all connections. */
size_t bus_backlog_held (const bus_backlog_t *self);

#endif
