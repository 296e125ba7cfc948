/*  bus_client.h — request/reply and subscription clients (CURVE).

    Requests go out on a DEALER as [envelope] with a fresh request id; the
    reply comes back as [envelope] with corr = that id. Each request has a
    deadline (per attempt) and a bounded number of retries (Lazy Pirate):
    when an attempt's deadline passes, the socket is closed and reopened
    (a connection refused at the CURVE handshake is never retried by libzmq)
    and every request still in flight is sent again with the SAME id, which
    the server answers from its dedupe cache if it had already done the work.
    Many requests can be in flight at once (bus_client_send/recv).

    The handshake is watched (libzmq's socket monitor): when the server
    refuses our key (ZMQ_EVENT_HANDSHAKE_FAILED_AUTH: it is not in the
    server's allow-list), or the handshake fails S_HANDSHAKE_TRIES times in
    a row (ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL / _NO_DETAIL: the server key
    we use is not the server's, or the peer is not a CURVE server), every
    request in flight fails at once with BUS_EAUTH instead of being retried
    until its deadlines pass; bus_client_auth_error says which. The next
    send starts afresh (a fresh socket, a new handshake), so a key allowed
    meanwhile works.
*/
#ifndef BUS_CLIENT_H
#define BUS_CLIENT_H

#include <czmq.h>
#include <jansson.h>

#include "bus_config.h"
#include "proto_msg.h"

typedef struct bus_client_t bus_client_t;
typedef struct bus_sub_t bus_sub_t;

/*  Client of the server at endpoint whose public key is server_key (Z85),
    authenticating with cert (borrowed; must outlive the client). */
bus_client_t *bus_client_new (const char *endpoint, const char *server_key, zcert_t *cert,
                              int timeout_ms, int retries);

/*  Client of a named service ("authz", "ciba-broker") from the config: its
    rpc endpoint, its public key from keys_dir, timeout and retries. */
bus_client_t *bus_client_for (bus_config_t *config, const char *service, zcert_t *cert);

void bus_client_destroy (bus_client_t **self_p);

/*  Send a request and wait for its reply (all retries). Returns 0 with the
    reply in *reply (ok or error: check (*reply)->ok), or BUS_ETIMEOUT when
    every attempt went unanswered, BUS_EAUTH when the handshake failed (see
    bus_client_auth_error), or BUS_ENOMEM/BUS_EINVAL. body is
    borrowed. traceparent may be NULL. Replies to other requests in flight
    (bus_client_send) that come meanwhile are kept, in order, for
    bus_client_recv. */
int bus_client_call (bus_client_t *self, const char *type, json_t *body,
                     const char *traceparent, proto_msg_t **reply)
    __attribute__((warn_unused_result));

/*  Send without waiting; the id goes to id_out (may be NULL). */
int bus_client_send (bus_client_t *self, const char *type, json_t *body,
                     const char *traceparent, char id_out [PROTO_ID_LEN + 1]);

/*  Send a raw frame as-is (tests): no tracking, no retries. Never blocks:
    BUS_EFULL when the frame cannot be queued now (no connected peer, or
    the high-water mark reached). */
int bus_client_send_raw (bus_client_t *self, const void *data, size_t len);

/*  Wait up to timeout_ms for the next reply to any request in flight,
    retrying expired ones. A request out of retries comes back as an error
    reply with code "timeout". Returns 0 with *reply, or BUS_ETIMEOUT when
    nothing arrived in time, or BUS_EINTR, or BUS_EAUTH when the handshake
    failed: every request in flight is then dropped (none will be answered). With raw_ok, replies to untracked
    ids (raw sends) are returned too. */
int bus_client_recv (bus_client_t *self, int timeout_ms, proto_msg_t **reply);

/*  The DEALER socket, for a poller that waits on several things (its
    zsock_fd with ZMQ_EVENTS). Valid until the next call that may reconnect
    (a retry reopens the socket): fetch it again after each receive. */
zsock_t *bus_client_sock (bus_client_t *self);

/*  Requests in flight. */
size_t bus_client_inflight (bus_client_t *self);

/*  Why the client last failed with BUS_EAUTH (until the next send):
    BUS_CLIENT_REFUSED, the server's authenticator refused our public key
    (not in its allow-list); BUS_CLIENT_MISMATCH, the handshake failed again
    and again (the server's public key we use is not the key of the server
    at that endpoint, or the peer is not a CURVE server); 0 when it has
    not. text (may be NULL) gets a sentence for people, naming the endpoint
    and the key concerned; valid until the next call on the client. */
#define BUS_CLIENT_REFUSED  1
#define BUS_CLIENT_MISMATCH 2
int bus_client_auth_error (bus_client_t *self, const char **text);

/*  The endpoint and the server public key (Z85) the client uses. */
const char *bus_client_endpoint (bus_client_t *self);
const char *bus_client_server_key (bus_client_t *self);

/*  Subscriber of a service's PUB, filtered by topic prefixes (NULL or an
    empty list = all). Events larger than [sanctum] max_frame (bus_sub_for;
    64 MiB for bus_sub_new) are skipped without being decoded: no service
    publishes one, and events.replay can still fetch what was skipped. */
bus_sub_t *bus_sub_new (const char *endpoint, const char *server_key, zcert_t *cert,
                        const char *const *topics);
bus_sub_t *bus_sub_for (bus_config_t *config, const char *service, zcert_t *cert,
                        const char *const *topics);
void bus_sub_destroy (bus_sub_t **self_p);

/*  The largest event this subscriber decodes, in bytes. */
void bus_sub_set_max_frame (bus_sub_t *self, size_t max_frame);

/*  Next event, waiting up to timeout_ms: 0 with *event, BUS_ETIMEOUT, or
    BUS_EINVAL for a frame that did not decode or is over the cap (logged,
    skipped). */
int bus_sub_recv (bus_sub_t *self, int timeout_ms, proto_msg_t **event);

zsock_t *bus_sub_sock (bus_sub_t *self);

#endif
