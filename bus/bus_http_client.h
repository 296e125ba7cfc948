/*  bus_http_client.h — outbound HTTP on a service's reactor: libcurl's
    multi interface driven by the zloop.

    One client per service (bus_http_client_new on the service's zloop).
    Each request is answered by exactly one callback, on the reactor: the
    response (status, headers, body) or an error. A request that is
    cancelled before its answer gets no callback at all.

    Threads: everything here runs on the thread that runs the zloop, and
    must be called only from it (handlers, timers, other callbacks). The
    sockets curl opens go into an epoll set whose one descriptor the zloop
    polls, and curl's timeout into a zloop timer (an eventfd when it is 0);
    curl_multi_socket_action runs on readiness and on expiry.
    Nothing blocks the reactor: connects, TLS and transfers are non-blocking,
    and names resolve on curl's resolver thread (Debian's libcurl is built
    with the threaded resolver; bus_http_client_new logs a warning when the
    library in use is not, as a lookup would then block the reactor).
    Tests and loopback peers use IP literals, which never resolve.

    Bounds: a deadline per request (the whole exchange: connect, TLS,
    request, response), a cap on the response body (a Content-Length over
    it fails before any byte is read; a body that grows past it is cut off
    there), at most BUS_HTTP_MAX_HEADERS response headers of at most
    BUS_HTTP_MAX_HEADER_BYTES together. http:// and https:// only; no
    redirects are followed (a 3xx is returned as it is).

    TLS: the peer's certificate and name are always verified, against the
    configured CA file or else the system's bundle. There is no switch to
    turn verification off: trust a private CA by naming its file.

    Errors in the callback's response (libcurl's codes never leave here):
      BUS_EREFUSED  connection refused, no route, name not resolved
      BUS_ETIMEOUT  the request's deadline passed
      BUS_ETOOBIG   body over the cap, or too many / too long headers
      BUS_ETLS      TLS handshake failed or the certificate did not verify
      BUS_EPROTO    the peer did not speak HTTP, or closed mid-response
      BUS_EIO       any other transport failure
      BUS_ENOMEM    out of memory
    An HTTP error status (404, 500) is not an error here: error is 0 and
    status says it.

    Configuration ([sanctum] in bus_config_keys.def): http_ca_file,
    http_timeout_ms, http_max_response; see bus_http_client_opts_from_config.
*/
#ifndef BUS_HTTP_CLIENT_H
#define BUS_HTTP_CLIENT_H

#include <czmq.h>
#include <stddef.h>
#include <stdint.h>

#include "bus_config.h"

#define BUS_HTTP_MAX_HEADERS        100       /* response headers kept at most */
#define BUS_HTTP_MAX_HEADER_BYTES   65536     /* their total size at most */

typedef struct bus_http_client_t bus_http_client_t;

/*  A header, name and value without surrounding blanks. */
typedef struct {
    const char *name;
    const char *value;
} bus_http_header_t;

/*  The client's defaults. */
typedef struct {
    const char *ca_file;        /* PEM file of trusted CAs; NULL or "": the system's */
    int timeout_ms;             /* deadline of a request that names none (> 0) */
    size_t max_response;        /* body cap of a request that names none (> 0) */
} bus_http_client_opts_t;

/*  A request. Everything is copied by bus_http_client_send: the caller
    may free it as soon as that returns. */
typedef struct {
    const char *method;         /* "GET", "POST", ...; NULL: GET, or POST with a body */
    const char *url;            /* http:// or https:// */
    const char *const *headers; /* "Name: value" strings, NULL-terminated; may be NULL */
    const char *content_type;   /* of the body, e.g. "application/json"; may be NULL */
    const void *body;           /* may be NULL */
    size_t body_len;
    int timeout_ms;             /* 0: the client's default */
    size_t max_response;        /* 0: the client's default */
} bus_http_request_t;

/*  What came back. Valid only during the callback: copy what you keep. */
typedef struct {
    int error;                  /* 0, or a BUS_E* code listed above */
    const char *reason;         /* error: what went wrong, in words; "" on success */
    int status;                 /* the HTTP status; 0 when error is set */
    const bus_http_header_t *headers;   /* in the order received */
    size_t header_count;
    const char *body;           /* NUL-terminated (the NUL is not counted); "" when none */
    size_t body_len;
} bus_http_response_t;

/*  A request is over: runs once, on the reactor, never from inside
    bus_http_client_send. It may send and cancel requests, but must not
    destroy the client. */
typedef void (bus_http_done_fn) (const bus_http_response_t *response, void *arg);

/*  The defaults from a service's config: http_ca_file, http_timeout_ms,
    http_max_response of [sanctum]. ca_file is owned by the config. */
void bus_http_client_opts_from_config (bus_http_client_opts_t *opts, bus_config_t *config);

/*  A client on loop (borrowed: it must outlive the client). opts NULL:
    system CAs, 30 s, 8 MiB. Returns NULL on failure (logged): bad options,
    an unreadable CA file, libcurl failing to start. */
bus_http_client_t *bus_http_client_new (zloop_t *loop, const bus_http_client_opts_t *opts);

/*  Abort every request in flight, without callbacks, and free the client.
    Not from inside a callback. Accepts NULL; nulls *self_p. */
void bus_http_client_destroy (bus_http_client_t **self_p);

/*  Start a request; done (arg) answers it. *id_p (may be NULL) gets its id
    for bus_http_client_cancel. Returns 0, or BUS_EINVAL (no URL, a scheme
    other than http/https, a method that is not a token, a header without
    a colon or with a line break) or BUS_ENOMEM; then there is no callback. */
int bus_http_client_send (bus_http_client_t *self, const bus_http_request_t *request,
                          bus_http_done_fn *done, void *arg, uint64_t *id_p)
    __attribute__((warn_unused_result));

/*  Cancel a request: it gets no callback. Returns 0, or BUS_ENOTFOUND when
    it is already over (its callback has run or is running). */
int bus_http_client_cancel (bus_http_client_t *self, uint64_t id);

/*  Cancel every request whose callback argument is arg, e.g. when the
    object arg names goes away. Returns how many were cancelled. */
size_t bus_http_client_cancel_arg (bus_http_client_t *self, void *arg);

/*  Requests in flight. */
size_t bus_http_client_pending (bus_http_client_t *self);

/*  application/x-www-form-urlencoded text of name/value pairs, e.g.
    {"grant_type", "client_credentials", "scope", "a b", NULL}. Returns a
    string the caller frees with free(), or NULL (out of memory, or an odd
    number of strings). */
char *bus_http_form_encode (const char *const *pairs);

/*  The value of the first header called name (case-insensitive) in a
    response, or NULL. */
const char *bus_http_response_header (const bus_http_response_t *response, const char *name);

#endif
