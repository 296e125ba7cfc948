/*  bus_call.h — requests to a peer service from the reactor, each answered
    by exactly one callback.

    A bus_calls_t is one service's line to one peer (its ROUTER): a CURVE
    DEALER registered with the caller's zloop, the requests in flight to
    that peer, and a timer for their deadlines. bus_calls_send() encodes a
    request, sends it without waiting and returns; the callback runs later
    on the reactor with the reply (ok or error), or with a `timeout` error
    reply once every attempt has gone unanswered. Nothing here blocks: a
    handler, a timer or another callback may call a peer.

    Exactly one callback per call, unless it is cancelled first:
    bus_calls_cancel() (one call, by its request id) and
    bus_calls_cancel_owner() (every call an owner made, e.g. a run that is
    being torn down) guarantee that no callback of theirs runs afterwards.
    bus_calls_destroy() cancels everything still in flight the same way.

    Retries (Lazy Pirate, as bus_client): each attempt has a deadline
    (timeout_ms); when it passes, the request goes again with the SAME id,
    so a peer that has done the work answers the repeat from its dedupe
    cache (PROTOCOL.md 6.2) instead of doing it twice. When no frame at all
    has come from the peer for timeout_ms, the connection is taken for dead
    (a peer that restarted, or refused our key at the CURVE handshake,
    which libzmq never retries): the DEALER is replaced by a fresh one,
    registered with the zloop in the old one's place, and every call in
    flight is sent again on it. While the peer answers other calls, a slow
    call is resent on the same connection (the peer ignores a repeat of a
    request it is still working on).

    The traceparent of a call is a child of opts.traceparent (the request
    being handled, typically), or a new trace.

    Thread: everything here runs on the thread of the zloop the calls were
    made with (the service's reactor), callbacks included. Ownership: the
    cert is borrowed (it must outlive the calls); a request body is stolen;
    a reply is lent to the callback for its duration (json_incref what you
    keep). Destroy the calls before the zloop.

    The deferred pattern — a handler asks a peer and answers its own
    request from the callback (the orchestrator and the vault-broker do
    this on every step):

        static void
        s_on_lease (bus_calls_t *calls, proto_msg_t *reply, void *arg)
        {
            bus_request_t *req = arg;
            bus_call_reply_to (req, reply);     // or build an answer of its own
        }

        static void
        s_handle_step (bus_service_t *svc, bus_request_t *req, void *arg)
        {
            my_state_t *st = arg;
            bus_request_defer (req);
            bus_call_opts_t opts = { .owner = st,
                                     .traceparent = bus_request_traceparent (req) };
            int rc = bus_calls_send (st->vault, "vault.lease", json_pack (...), &opts,
                                     s_on_lease, req, NULL);
            if (rc)                             // no callback will come
                bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "vault: %s", bus_strerror (rc));
        }

    The request stays deferred until the callback answers it; the callback
    always comes (the reply, or `timeout` after timeout_ms x attempts), so
    the request is always answered. An owner that cancels its calls
    (bus_calls_cancel_owner) must answer the requests those callbacks would
    have answered.
*/
#ifndef BUS_CALL_H
#define BUS_CALL_H

#include <czmq.h>
#include <jansson.h>

#include "bus_config.h"
#include "bus_service.h"
#include "bus_stats.h"
#include "proto_msg.h"

#define BUS_CALLS_MAX  100000      /* calls in flight to one peer, at most */

typedef struct bus_calls_t bus_calls_t;

/*  The answer to one call, on the reactor: reply is the peer's reply (ok
    true with body, or ok false with error {code, message, ...}), or a
    reply made here with error code `timeout` (PROTO_ERR_TIMEOUT) when no
    attempt was answered. reply->corr is the call's request id. reply is
    lent for the duration of the callback. The callback may send new
    calls, cancel others, and destroy calls (the object it was called
    from included: the remaining calls are then cancelled). */
typedef void (bus_call_fn) (bus_calls_t *calls, proto_msg_t *reply, void *arg);

/*  Per-call options; zero (or NULL) for each means the default. */
typedef struct {
    void *owner;                /* for bus_calls_cancel_owner; NULL: none */
    const char *traceparent;    /* the trace to carry on (a child span); NULL: a new trace */
    int timeout_ms;             /* per attempt; 0: the calls' */
    int attempts;               /* attempts in all (1: no retry); 0: the calls' (retries + 1) */
} bus_call_opts_t;

/*  Calls to the peer at endpoint whose public key is server_key (Z85),
    authenticating with cert, on loop: timeout_ms per attempt (<= 0: 2500),
    retries after the first attempt (< 0: 3). name names the peer in logs
    and messages ("authz"). Replies up to 64 MiB are decoded. stats, when
    not NULL, counts calls_sent, calls_retried, calls_timeout,
    calls_reconnects and calls_late (replies after their call ended). Returns
    NULL on failure (logged): a bad argument, no memory, an endpoint
    libzmq refuses. */
bus_calls_t *bus_calls_new (zloop_t *loop, const char *name, const char *endpoint,
                            const char *server_key, zcert_t *cert, int timeout_ms, int retries,
                            bus_stats_t *stats);

/*  Calls from the service svc to the peer service ("authz", "ciba-broker"
    or its section "ciba") as the config names it: its rpc endpoint, its
    public key from keys_dir, [sanctum] rpc_timeout_ms and rpc_retries;
    svc's own cert, reactor and stats. Returns NULL
    when the service is unknown or its key cannot be read (logged). */
bus_calls_t *bus_calls_for (bus_service_t *svc, const char *service);

/*  Cancel every call in flight (no callbacks), leave the zloop, free.
    Accepts NULL; nulls *self_p. Safe from inside one of its callbacks. */
void bus_calls_destroy (bus_calls_t **self_p);

/*  Send a request of type with body (stolen; NULL = {}) and return at
    once; fn (arg) runs exactly once later, unless the call is cancelled.
    opts may be NULL. The request id goes to id_out (may be NULL), for
    bus_calls_cancel. Returns 0, or (nothing sent, no callback will come,
    body freed): BUS_EINVAL (fn NULL, type not a request of the catalogue),
    BUS_EFULL (BUS_CALLS_MAX calls in flight), BUS_ENOMEM, BUS_ESTATE
    (the calls are being destroyed). A request libzmq cannot queue now (its
    high-water mark reached) is not an error: it goes with the next
    attempt. */
int bus_calls_send (bus_calls_t *self, const char *type, json_t *body,
                    const bus_call_opts_t *opts, bus_call_fn *fn, void *arg,
                    char id_out [PROTO_ID_LEN + 1]);

/*  Cancel the call with request id: its callback will not run. Returns 0,
    or BUS_ENOTFOUND (answered already, cancelled, or never sent). */
int bus_calls_cancel (bus_calls_t *self, const char *id);

/*  Cancel every call sent with opts.owner == owner (not NULL). Returns how
    many were cancelled. */
size_t bus_calls_cancel_owner (bus_calls_t *self, void *owner);

/*  Calls in flight (sent, neither answered nor cancelled). */
size_t bus_calls_inflight (bus_calls_t *self);

/*  The peer's name, as given. */
const char *bus_calls_name (bus_calls_t *self);

/*  Answer req (a deferred request) with a peer's reply as it is: ok with a
    copy of its body, or its error code, message and other error members.
    For the deferred pattern above. */
void bus_call_reply_to (bus_request_t *req, proto_msg_t *reply);

#endif
