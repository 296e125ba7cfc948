/*  bus_handshake.h — watching CURVE handshakes: who was refused, and why.

    zauth (CZMQ) decides who may connect; it says nothing of the clients it
    refuses, and libzmq drops them without a trace. Two documented sources
    tell us, and this module reads both:

    - libzmq's socket monitor (zmq_socket_monitor) reports, per socket,
      ZMQ_EVENT_HANDSHAKE_FAILED_AUTH (value: the ZAP status code, 400 for
      a key zauth refused) and ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL (value: a
      ZMQ_PROTOCOL_ERROR_* code, e.g. CRYPTOGRAPHIC when the client used a
      server key that is not ours). With libzmq 4.3.4 as Debian builds it
      (no draft API, so monitor events of version 1) the address given is
      the socket's own endpoint, not the peer's; the client's key is not
      given at all.
    - zauth's VERBOSE mode names the client key and IP address of every ZAP
      request it refuses, through CZMQ's log (zsys). bus_auth_start turns it
      on and takes those lines (bus_log_capture_zsys): they become one
      rate-limited warning per refused key ("CURVE handshake refused ...",
      fields peer_key, peer_address), and zauth's other lines (one per
      handshake, allowed ones included) are dropped.

    A bus_handshake_t watches a service's server sockets on its reactor:
    it counts handshakes refused (handshakes_refused) and failed
    (handshakes_failed) in the service's stats, and logs failed ones, rate
    limited per socket and reason. It reads the monitors through their
    descriptors (bus_reader.h): they cost the reactor nothing per request.
    Reactor thread only.
*/
#ifndef BUS_HANDSHAKE_H
#define BUS_HANDSHAKE_H

#include <czmq.h>
#include <stdint.h>

#include "bus_log.h"
#include "bus_stats.h"

typedef struct bus_handshake_t bus_handshake_t;

/*  A watcher whose events are read on loop and counted in stats (both
    borrowed; they must outlive it). Returns NULL on allocation failure. */
bus_handshake_t *bus_handshake_new (zloop_t *loop, bus_stats_t *stats);

/*  Stop watching (before the watched sockets are closed) and free. */
void bus_handshake_destroy (bus_handshake_t **self_p);

/*  Watch sock (borrowed, must outlive the watcher), named name ("rpc",
    "pub") in log lines. Returns 0, BUS_EFULL (past 4 sockets) or BUS_EIO. */
int bus_handshake_watch (bus_handshake_t *self, zsock_t *sock, const char *name);

/*  Write the pending "suppressed" summaries (call once a second). */
void bus_handshake_flush (bus_handshake_t *self);

/*  Start a monitor of sock for the events in mask, and return the PAIR
    socket that receives them (caller destroys it, after
    zmq_socket_monitor (sock, NULL, 0)); NULL on failure. tag makes the
    inproc endpoint unique, with sock's address and a counter. */
zsock_t *bus_monitor_start (zsock_t *sock, int mask, const char *tag);

/*  Read one monitor event from pair (non-blocking when dontwait):
    0 with event, value and the address (cut to addr_len), BUS_ENOTFOUND
    (nothing there) or BUS_EINVAL (not an event: read and dropped). */
int bus_monitor_read (zsock_t *pair, uint16_t *event, uint32_t *value, char *addr, size_t addr_len);

/*  A few words for a ZMQ_PROTOCOL_ERROR_* value ("cryptographic error: ..."). */
const char *bus_handshake_protocol_text (uint32_t value);

#endif
