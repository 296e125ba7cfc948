/*  tele_internal.h — the telemetry daemon's parts, shared by its files.

    tele_sse.c     the event ring and the server-sent event clients
    tele_static.c  the dashboard's files, loaded once at start
    tele_metrics.c every service's `stats` as Prometheus text
    tele_api.c     the read endpoints and the decision relay (reactor calls)
    tele_service.c the daemon: config, start/stop, routes, headers

    Threads: everything runs on the service's reactor. Ownership is said
    per function; strings returned are owned by the object they came from.
*/
#ifndef TELE_INTERNAL_H
#define TELE_INTERNAL_H

#include <czmq.h>
#include <jansson.h>

#include "bus_call.h"
#include "bus_daemon.h"
#include "bus_http_server.h"
#include "bus_log.h"
#include "bus_error.h"

/* ---- the event ring and SSE clients (tele_sse.c) ------------------------ */

typedef struct tele_ring_t tele_ring_t;

/*  A ring of the last capacity events (capacity >= 1). NULL: no memory. */
tele_ring_t *tele_ring_new (size_t capacity);
void tele_ring_destroy (tele_ring_t **self_p);

/*  Append one event: id "<pub>/<seq>" (copied), type (copied), data the
    JSON text to send (stolen: malloc'd). The oldest goes when full.
    Returns its absolute position, or -1 (no memory: data freed). */
int64_t tele_ring_push (tele_ring_t *self, const char *id, const char *type, char *data);

/*  The absolute position of the event with id, or -1 when the ring no
    longer (or never) held it. */
int64_t tele_ring_find (tele_ring_t *self, const char *id);

/*  The entry at absolute position pos (NULL when out of the ring); its
    strings belong to the ring. */
bool tele_ring_get (tele_ring_t *self, int64_t pos, const char **id, const char **type,
                    const char **data);

/*  Positions: first kept, one past the newest. */
int64_t tele_ring_begin (tele_ring_t *self);
int64_t tele_ring_end (tele_ring_t *self);

/*  The id of the newest event, or "" when none. */
const char *tele_ring_last_id (tele_ring_t *self);

/*  The SSE hub: its clients, fed from the ring. */
typedef struct tele_hub_t tele_hub_t;

tele_hub_t *tele_hub_new (tele_ring_t *ring);
/*  Close every stream (no gone callbacks follow: the server is being
    destroyed after this) and free. */
void tele_hub_destroy (tele_hub_t **self_p);

/*  Take a GET /api/events exchange: open its stream, send what follows
    last_id (NULL: nothing of the past; an id the ring lacks: a `resync`
    notice), then every new event. Returns 0 or a BUS_E* error (the
    exchange is still the caller's to answer). */
int tele_hub_attach (tele_hub_t *self, bus_http_exchange_t *ex, const char *last_id);

/*  Send the ring's newest event to every client (after tele_ring_push). */
void tele_hub_broadcast (tele_hub_t *self);

/*  A comment line to every client (keeps proxies and the browser's
    EventSource from timing out; also finds clients that left), and a
    retried resync notice to lagging ones. */
void tele_hub_heartbeat (tele_hub_t *self);

/*  Clients now; events dropped for slow clients; resync notices sent. */
size_t tele_hub_clients (tele_hub_t *self);
uint64_t tele_hub_dropped (tele_hub_t *self);
uint64_t tele_hub_resyncs (tele_hub_t *self);

/* ---- static files (tele_static.c) --------------------------------------- */

typedef struct tele_static_t tele_static_t;

/*  Load every regular file under dir (recursively, at most 512 files and
    32 MiB), with its `.gz` sibling when one exists (precompressed at
    build). Returns NULL with err set: dir unreadable, too big. */
tele_static_t *tele_static_load (const char *dir, char *err, size_t err_len);
void tele_static_destroy (tele_static_t **self_p);

/*  Answer GET path from the files ("/" is index.html): content type,
    ETag / If-None-Match (304), Cache-Control, gzip when the client
    accepts it and a .gz was built. 404 when no such file. */
void tele_static_serve (tele_static_t *self, bus_http_exchange_t *ex, const char *path);

/*  The content type for a file name, by its extension. */
const char *tele_static_type (const char *name);

/*  Files loaded. */
size_t tele_static_count (tele_static_t *self);

/* ---- metrics (tele_metrics.c) ------------------------------------------- */

/*  Render the Prometheus text format 0.0.4 from what was gathered:
    stats an object service name -> its `stats` reply body (or null when
    it did not answer); extra an object of gauges (name -> {help, value}
    or {help, labels: [[{label: value}, value], ...]}). Returns malloc'd
    text, or NULL (no memory). */
char *tele_metrics_render (json_t *stats, json_t *extra);

/* ---- the daemon's state -------------------------------------------------- */

#define TELE_PEERS 16

typedef struct {
    bus_service_t *svc;
    bus_http_server_t *http;
    tele_ring_t *ring;
    tele_hub_t *hub;
    tele_static_t *files;
    bus_calls_t *calls [TELE_PEERS];    /* by bus_services order, NULL for ourself */
    const char *names [TELE_PEERS];     /* service names, same order */
    size_t npeers;
    uint64_t events_seen;
    uint64_t http_requests;
    uint64_t decisions_relayed;
} tele_t;

/*  The calls to the service named name ("ciba-broker"), or NULL. */
bus_calls_t *tele_calls (tele_t *self, const char *name);

/*  Add the security headers every response carries. */
void tele_headers (bus_http_exchange_t *ex);

/*  Answer with JSON (json stolen) or a JSON error {error: {code, message}}. */
void tele_json (bus_http_exchange_t *ex, int status, json_t *json);
void tele_error (bus_http_exchange_t *ex, int status, const char *code, const char *fmt, ...)
    __attribute__ ((format (printf, 4, 5)));

/*  The read endpoints and the relay (tele_api.c), on the reactor. */
void tele_api_runs (tele_t *self, bus_http_exchange_t *ex);
void tele_api_run (tele_t *self, bus_http_exchange_t *ex, const char *run, const char *what);
void tele_api_approvals (tele_t *self, bus_http_exchange_t *ex);
void tele_api_leases (tele_t *self, bus_http_exchange_t *ex);
void tele_api_health (tele_t *self, bus_http_exchange_t *ex);
void tele_api_metrics (tele_t *self, bus_http_exchange_t *ex);
void tele_api_decide (tele_t *self, bus_http_exchange_t *ex);
void tele_api_redeem (tele_t *self, bus_http_exchange_t *ex);

#endif
