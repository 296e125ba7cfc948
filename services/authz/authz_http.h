/*  authz_http.h — OpenFGA's HTTP API (v1) on authz's HTTP listener: a
    thin adapter over the bus handlers.

    Each HTTP request is translated into the body of the bus request that
    does the same thing (authz.check, authz.write, ...), handled by the
    service exactly as one from the bus (bus_service_local: the same
    catalogue validation, handlers, limits and error codes), and the
    answer translated into OpenFGA's JSON shape, status code and error
    body ({code, message}, code being OpenFGA's error name).

    Authentication: pre-shared keys ([authz] http_keys, a file: one key a
    line, "KEY" or "NAME KEY"); a request without `Authorization: Bearer
    KEY` naming one of them gets 401. A key's requests come from the
    principal "ops:fga-NAME" (or "ops:fga-keyN", N its line).

    Stores: many (authz_stores.h). POST/GET /stores and GET/DELETE
    /stores/{id} are authz.store.create/list/get/delete; every other
    path names its store to the bus request (store_id), which the
    service checks: a store that is not there (or was deleted) gets 404
    store_id_not_found. Assertions: authz.assertions.write/read.

    StreamedListObjects streams as the query runs, in OpenFGA's shape:
    one {"result": {"object"}} line per object as soon as the query
    thread has decided it (chunked), every object (no 1,000 cap), within
    the request's budget ([authz] request_cost, request_tuples); it ends
    normally, or with OpenFGA's error line {"error": {code (gRPC),
    message, details}} (before any line: that line is the body, under
    the error's HTTP status). A client gone stops the query; a reader
    that stops reading holds the query thread 10 s in all, then gets a
    deadline error line (memory per stream: a 64 KiB window, a 64 KiB
    pipe). HTTP only: the bus protocol answers a request once.

    Threads: the reactor's, all of it (routes, answers); the lines of a
    stream are made on the query thread (authz_service.c).
*/
#ifndef AUTHZ_HTTP_H
#define AUTHZ_HTTP_H

#include "bus_daemon.h"

typedef struct authz_http_t authz_http_t;

/*  Make the adapter for svc: read the key file.
    Returns 0 with *out set, or BUS_ECONFIG (key file unreadable or a key
    shorter than 16 bytes; err says which line) / BUS_ENOMEM. */
int authz_http_new (authz_http_t **out, bus_service_t *svc, char *err, size_t err_len);

/*  Free; accepts NULL, nulls the pointer. */
void authz_http_destroy (authz_http_t **self_p);

/*  Answer one HTTP request (a route's handler; now or deferred). */
void authz_http_handle (authz_http_t *self, bus_http_exchange_t *ex);

#endif
