/*  bus_http_server.h — an HTTP listener on a service's reactor
    (libmicrohttpd, driven by the zloop).

    Threads: none of its own. MHD runs in its epoll mode without an
    internal thread: the zloop polls MHD's epoll descriptor and calls
    MHD_run on readiness and on a timer from MHD_get_timeout. So every
    handler, every `gone` callback and every function of this header runs
    on the reactor thread, beside the service's bus handlers and timers,
    and must be called only from it. A handler must not block.

    A request reaches its route's handler once it is complete (headers and
    body). The handler answers it in one of three ways:
      - now: bus_http_respond (status, content type, body);
      - later: bus_http_defer, then bus_http_respond from another callback
        (a bus call's reply, a timer). The connection is suspended meanwhile;
      - as a stream: bus_http_stream_open, then bus_http_stream_write /
        bus_http_sse_send as data comes, bus_http_stream_close to end it
        (server-sent events: content type text/event-stream).
    A handler that does none of these gets a 500 for its request (logged).

    Ownership: the server owns every bus_http_exchange_t. An exchange is
    valid from the handler's call until it is answered (bus_http_respond),
    its stream closed (bus_http_stream_close), or its `gone` callback runs,
    whichever comes first; not after. `gone` (given to defer / stream_open)
    runs when the exchange ends without that: the client went away, the
    server is being destroyed. The client's going away is seen as it
    happens, deferred and streaming exchanges included (the socket of a
    suspended connection is watched for its end), unless it had sent more
    bytes first (a pipelined request: then at the next write). Strings
    from the accessors belong to the exchange.

    A stream's flow: bus_http_stream_queued says how many bytes wait,
    unsent; bus_http_stream_drained names a function run each time they
    have all gone to the connection, so that an owner with more to say
    than it should queue at once (a long listing) writes a window, waits
    for the drain, writes the next: a slow reader then holds the owner
    back instead of growing the queue.

    Bounds (a refused request gets its status where one is due and its
    connection is closed; refusals are logged at debug, MHD's own and ours,
    ours naming the peer's address):
      - max_body: a declared Content-Length over it gets 413 before any of
        the body is read; a chunked body growing past it closes the
        connection;
      - max_header_bytes: MHD's memory per connection (request line and
        headers must fit; MHD answers 431 or 413 otherwise);
      - max_headers: more header fields get 431;
      - max_connections in total: past it MHD stops accepting, so further
        connections wait in the kernel's backlog, unserved and costing
        nothing, until one closes; max_per_ip from one address: further
        ones are accepted and closed at once. Streams and deferred
        exchanges count: they hold their connection;
      - request_timeout_ms: a request (line, headers and body) must arrive
        within this of the connection opening or the previous response
        ending, however slowly its bytes trickle in (a sweep shuts the
        socket of one that does not); idle_timeout_s: a connection with no
        traffic at all is closed (not a suspended one: deferred exchanges
        and open streams, which their owner ends).

    Routes: bus_http_server_route (method, path, handler). A path ending in
    '*' matches every path with that prefix. No route for the path: 404;
    a route for the path but not the method: 405.

    HTTPS (tls_cert_pem and tls_key_pem set) exists for tests that need a
    TLS peer on loopback.
*/
#ifndef BUS_HTTP_SERVER_H
#define BUS_HTTP_SERVER_H

#include <czmq.h>
#include <stddef.h>

typedef struct bus_http_server_t bus_http_server_t;
typedef struct bus_http_exchange_t bus_http_exchange_t;

typedef struct {
    const char *address;        /* "127.0.0.1:7180"; port 0 binds an ephemeral one */
    size_t max_body;            /* request body, bytes (0: 1 MiB) */
    size_t max_header_bytes;    /* request line + headers, bytes (0: 16 KiB; at least 4 KiB) */
    int max_headers;            /* header fields (0: 64) */
    int max_connections;        /* in total (0: 256) */
    int max_per_ip;             /* from one address (0: 64) */
    int request_timeout_ms;     /* a whole request must arrive within this (0: 10 s) */
    int idle_timeout_s;         /* no traffic for this long closes (0: 30 s) */
    size_t max_stream_buffer;   /* bytes queued on a stream, unsent (0: 1 MiB) */
    const char *tls_cert_pem;   /* PEM text; both set: HTTPS */
    const char *tls_key_pem;
} bus_http_server_opts_t;

/*  Handles a request: answer it (see above). */
typedef void (bus_http_handler_fn) (bus_http_exchange_t *ex, void *arg);

/*  A deferred exchange or a stream ended before its owner ended it; ex is
    no longer valid when this returns. */
typedef void (bus_http_gone_fn) (bus_http_exchange_t *ex, void *arg);

/*  Listen on opts->address with the zloop loop (borrowed: it must outlive
    the server). Returns NULL with err set: a bad address or option, the
    port taken, MHD failing to start. */
bus_http_server_t *bus_http_server_new (zloop_t *loop, const bus_http_server_opts_t *opts,
                                        char *err, size_t err_len);

/*  Close every connection (deferred exchanges and streams get their gone
    callbacks) and free the server. Not from inside one of its callbacks.
    Accepts NULL; nulls *self_p. */
void bus_http_server_destroy (bus_http_server_t **self_p);

/*  Add a route: method ("GET"; NULL: any) and path ("/api/events", or
    "/static/" followed by a star). Earlier routes win. Returns 0, BUS_EINVAL or BUS_ENOMEM. */
int bus_http_server_route (bus_http_server_t *self, const char *method, const char *path,
                           bus_http_handler_fn *handler, void *arg);

/*  The port it listens on. */
int bus_http_server_port (bus_http_server_t *self);

/*  Exchanges in progress: deferred, streaming or being answered. */
size_t bus_http_server_active (bus_http_server_t *self);

/*  The request. path is decoded, without the query; query and header give
    the named query argument / header (case-insensitive) or NULL; body is
    NUL-terminated ("" when none); peer is the client's address. */
const char *bus_http_method (bus_http_exchange_t *ex);
const char *bus_http_path (bus_http_exchange_t *ex);
const char *bus_http_query (bus_http_exchange_t *ex, const char *name);
const char *bus_http_header (bus_http_exchange_t *ex, const char *name);
const char *bus_http_body (bus_http_exchange_t *ex, size_t *len_p);
const char *bus_http_peer (bus_http_exchange_t *ex);

/*  Add a header to the response (before it is sent: before respond or
    stream_open). Returns 0, BUS_EINVAL (a line break in it) or BUS_ENOMEM. */
int bus_http_header_add (bus_http_exchange_t *ex, const char *name, const char *value);

/*  Answer with status and body (copied; may be NULL with len 0). The
    exchange is over for its owner when this returns. Returns 0, or
    BUS_ESTATE when it was already answered or is a stream, BUS_EINVAL (a
    status outside 100..599, a line break in content_type) (nothing sent
    either way: the exchange is still the owner's), BUS_ENOMEM (a 500 goes
    out instead). */
int bus_http_respond (bus_http_exchange_t *ex, int status, const char *content_type,
                      const void *body, size_t len);

/*  Keep the exchange open after the handler returns, to answer it later
    with bus_http_respond. gone (may be NULL) as above. */
void bus_http_defer (bus_http_exchange_t *ex, bus_http_gone_fn *gone, void *arg);

/*  Start a streamed response (chunked, no length): the status and headers
    go now, the body as it is written. Returns 0, BUS_ESTATE (already
    answered), BUS_EINVAL (as for bus_http_respond) or BUS_ENOMEM. */
int bus_http_stream_open (bus_http_exchange_t *ex, int status, const char *content_type,
                          bus_http_gone_fn *gone, void *arg);

/*  Queue bytes on a stream. Returns 0, BUS_EFULL when the client is so
    slow that max_stream_buffer bytes would wait (nothing queued: the owner
    may drop this data or close the stream), BUS_ESTATE (not a stream). */
int bus_http_stream_write (bus_http_exchange_t *ex, const void *data, size_t len);

/*  Queue one server-sent event: "id: <id>\n" (when id is not NULL: the
    browser sends the last one back as Last-Event-ID when it reconnects),
    "event: <event>\n" (when event is not NULL), one "data: " line per
    line of data, and a blank line. BUS_EINVAL for a line break in id or
    event; else the returns of bus_http_stream_write. */
int bus_http_sse_send (bus_http_exchange_t *ex, const char *id, const char *event,
                       const char *data);

/*  Bytes queued on a stream and not yet taken by the connection. */
size_t bus_http_stream_queued (bus_http_exchange_t *ex);

/*  A stream's queue emptied (MHD took its last byte): the owner may write
    more (from inside the call too). */
typedef void (bus_http_drained_fn) (bus_http_exchange_t *ex, void *arg);

/*  Run drained (arg) each time the stream's queue empties, until it is
    closed or gone (NULL: no longer). */
void bus_http_stream_drained (bus_http_exchange_t *ex, bus_http_drained_fn *drained, void *arg);

/*  End a stream once what is queued has gone. ex is invalid afterwards
    (gone is not called). */
void bus_http_stream_close (bus_http_exchange_t *ex);

#endif
