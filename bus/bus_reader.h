/*  bus_reader.h — a ZeroMQ socket read on a zloop through its descriptor.

    zloop_reader puts the socket itself in zmq_poll's set, and zmq_poll
    asks every such socket for ZMQ_EVENTS twice on each turn of the loop
    (before it sleeps and after it wakes): each ask is two system calls
    (getpid, poll) when no command waits. A service's reactor (a ROUTER
    and two handshake monitors) made about 11 getpid and poll calls per
    request at 10,000 requests/s; read as below, about 5, as many as a
    blocking zmq_recv echo makes (bench_authz, perf stat per thread).

    A bus_reader_t polls the socket's descriptor (ZMQ_FD) as a plain file
    descriptor instead: the poll costs nothing per socket. The descriptor
    is edge-triggered: it becomes readable when commands reach the socket
    (a message arriving while it had none), and a receive or send on the
    socket may consume that signal. Hence the two rules it keeps:

    - The handler receives until a receive finds nothing (EAGAIN: that
      receive takes in the socket's commands, so the next arrival signals
      anew). A handler that stops before (a batch limit) says so by
      returning 1: it is called again on the next turn of the loop.
    - A send on the socket outside the handler (a reply a worker made) may
      take in a command that announced input: bus_reader_kick after such a
      send makes the handler run on the next turn of the loop (through an
      eventfd of the reader's: a write, then a read and a receive that
      finds nothing, four system calls in all).

    Reactor thread only, as zloop.
*/
#ifndef BUS_READER_H
#define BUS_READER_H

#include <czmq.h>
#include <stdbool.h>

typedef struct bus_reader_t bus_reader_t;

/*  Called when sock may have input: receive until nothing is left and
    return 0, or return 1 having left some (called again on the next turn
    of the loop), or -1 to end the loop (as a zloop handler). */
typedef int (bus_reader_fn) (zloop_t *loop, zsock_t *sock, void *arg);

/*  Read sock (borrowed: it must outlive the reader) on loop (borrowed)
    with handler. Input already waiting is read on the loop's first turn.
    Returns NULL when sock has no descriptor or memory ran out. */
bus_reader_t *bus_reader_new (zloop_t *loop, zsock_t *sock, bus_reader_fn *handler, void *arg);

/*  Stop reading (before the socket or the loop is destroyed) and free.
    Accepts NULL. */
void bus_reader_destroy (bus_reader_t **self_p);

/*  The handler runs on the next turn of the loop, whether the descriptor
    signals or not (after a send on the socket outside the handler).
    Inside the handler, nothing: it reads on until nothing is left, or
    returns 1. */
void bus_reader_kick (bus_reader_t *self);

#endif
