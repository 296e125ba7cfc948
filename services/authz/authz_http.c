/*  authz_http.c — OpenFGA's HTTP API (v1) over authz's bus handlers
    (see authz_http.h).

    One path per request: authenticate, find the store, translate the
    HTTP request into a bus request body, run it through the service
    (bus_service_local), translate the reply. A handler that answers at
    once (a Check within the reactor's share) answers the HTTP request at
    once; one that is deferred (offloaded to a query thread or the writer)
    defers the exchange until it answers. A client that goes away
    meanwhile leaves its call behind, freed when the answer comes.

    StreamedListObjects is the one answer in parts: the ListObjects
    request goes with a pipe (bus_service_local_piped), into which the
    query thread puts each object's line as it is decided; the reactor
    moves the lines to the HTTP stream a window at a time
    (S_STREAM_WINDOW queued, the next when it has drained), so a slow
    reader fills the window, then the pipe, then holds the query thread
    back (for S_STREAM_WAIT_MS in all, then the listing ends with an
    error line). The stream opens (200) with the first line; an error
    before any (a missing store, an unknown type) is the HTTP status with
    OpenFGA's error line as the body, one after some is that line last.
    A client that goes away cancels the pipe, which stops the query.
*/
#include "authz_http.h"
#include "authz_error.h"
#include "bus_error.h"
#include "bus_log.h"

#include <sodium.h>
#include <sys/stat.h>
#include <stdio.h>
#include <string.h>

#define S_KEY_MIN      16              /* bytes of a pre-shared key, at least */
#define S_HASH_HEX     (2 * crypto_generichash_BYTES + 1)
#define S_MODELS_PAGE  50              /* authorization-models page size, default and most */
#define S_STREAM_WINDOW (64u << 10)    /* a stream's bytes queued for its connection, at most */
#define S_STREAM_PIPE   (64u << 10)    /* lines waiting between the query thread and the reactor */
#define S_STREAM_WAIT_MS 10000         /* a query thread waits that long in all for a slow reader */

struct authz_http_t {
    bus_service_t *svc;
    zhashx_t *keys;                    /* hex hash of a key -> principal (owned strings) */
};

/*  How a bus reply becomes the HTTP answer. */
typedef enum {
    S_AS_IS,                           /* the bus body */
    S_CHECK,                           /* {allowed} + resolution */
    S_BATCH,                           /* per-check errors in OpenFGA's shape */
    S_USERS,                           /* "type:id" strings -> user objects */
    S_MODEL_ID,                        /* 201 {authorization_model_id} */
    S_CREATED,                         /* 201, the bus body */
    S_MODEL,                           /* {authorization_model: {id, ...}} */
    S_EMPTY,                           /* {} */
    S_STREAM,                          /* the pipe's lines, then the end or an error line */
    S_NO_CONTENT                       /* 204, no body */
} s_shape_t;

/*  One HTTP request on its way through the service. */
typedef struct {
    bus_http_exchange_t *ex;           /* NULL once the client went away */
    s_shape_t shape;
    bool done;                         /* the bus answered */
    bool deferred;                     /* the exchange is deferred */
    bus_pipe_t *pipe;                  /* S_STREAM: the answer's lines */
    bool streaming;                    /* S_STREAM: the stream is open */
} s_call_t;

/* --- answers -------------------------------------------------------------- */

/*  Answer with status and a JSON body (stolen). */
static void
s_respond (bus_http_exchange_t *ex, int status, json_t *body)
{
    char *text = body ? json_dumps (body, JSON_COMPACT) : NULL;
    json_decref (body);
    if (!text) {
        static const char oom [] = "{\"code\":\"internal_error\",\"message\":\"out of memory\"}";
        bus_http_respond (ex, 500, "application/json", oom, sizeof oom - 1);
        return;
    }
    bus_http_respond (ex, status, "application/json", text, strlen (text));
    free (text);
}

/*  Answer with OpenFGA's error body {code, message}. */
static void
s_error (bus_http_exchange_t *ex, int status, const char *code, const char *message)
{
    s_respond (ex, status, json_pack ("{s:s, s:s}", "code", code, "message", message));
}

/*  A bus error as OpenFGA answers it: its status, code and message. */
typedef struct {
    int status;
    const char *code;
    const char *message;
} s_fga_error_t;

/*  The engine's code (fga_code) when the error carries one, else the
    bus code's nearest kin. */
static s_fga_error_t
s_fga_error (json_t *error)
{
    const char *code = json_string_value (json_object_get (error, "code"));
    const char *message = json_string_value (json_object_get (error, "message"));
    json_int_t fga = json_integer_value (json_object_get (error, "fga_code"));
    if (!code)
        code = PROTO_ERR_INTERNAL;
    if (!message)
        message = "";
    if (fga >= 2000 && fga < 3000)
        return (s_fga_error_t) { 400, authz_strerror ((int) fga), message };
    if (fga == AUTHZ_ESTORE_NOT_FOUND)
        return (s_fga_error_t) { 404, authz_strerror ((int) fga), message };
    static const struct { const char *bus; int status; const char *fga; } map [] = {
        { PROTO_ERR_INVALID,         400, "validation_error" },
        { PROTO_ERR_TOO_COMPLEX,     400, "authorization_model_resolution_too_complex" },
        { PROTO_ERR_NOT_FOUND,       404, "not_found" },
        { PROTO_ERR_CONFLICT,        409, "conflict" },
        { PROTO_ERR_FORBIDDEN,       403, "forbidden" },
        { PROTO_ERR_TOO_LARGE,       413, "request_too_large" },
        { PROTO_ERR_NOT_IMPLEMENTED, 501, "unimplemented" },
        { PROTO_ERR_UNAVAILABLE,     503, "unavailable" },
        { PROTO_ERR_TIMEOUT,         504, "deadline_exceeded" },
    };
    for (size_t i = 0; i < sizeof map / sizeof map [0]; i++)
        if (streq (code, map [i].bus))
            return (s_fga_error_t) { map [i].status, map [i].fga, message };
    return (s_fga_error_t) { 500, "internal_error", message };
}

static void
s_bus_error (bus_http_exchange_t *ex, json_t *error)
{
    s_fga_error_t e = s_fga_error (error);
    s_error (ex, e.status, e.code, e.message);
}

/*  "type:id", "type:*" or "type:id#relation" as OpenFGA's User object. */
static json_t *
s_user_object (const char *user)
{
    const char *colon = strchr (user, ':');
    if (!colon)
        return json_pack ("{s:{s:s, s:s}}", "object", "type", "", "id", user);
    json_t *type = json_stringn (user, (size_t) (colon - user));
    const char *id = colon + 1, *hash = strchr (id, '#');
    if (streq (id, "*"))
        return json_pack ("{s:{s:o}}", "wildcard", "type", type);
    if (hash)
        return json_pack ("{s:{s:o, s:s%, s:s}}", "userset", "type", type, "id", id, (size_t) (hash - id),
                          "relation", hash + 1);
    return json_pack ("{s:{s:o, s:s}}", "object", "type", type, "id", id);
}

/*  The bus's ok body in OpenFGA's shape (body borrowed; new reference). */
static json_t *
s_shape (s_shape_t shape, json_t *body)
{
    switch (shape) {
        case S_CHECK:
            return json_pack ("{s:O, s:s}", "allowed", json_object_get (body, "allowed") ?: json_false (),
                              "resolution", "");
        case S_BATCH: {
            json_t *result = json_object (), *item;
            const char *cid;
            json_object_foreach (json_object_get (body, "result"), cid, item) {
                json_t *err = json_object_get (item, "error");
                if (err) {
                    int code = (int) json_integer_value (json_object_get (err, "code"));
                    json_object_set_new (result, cid, json_pack ("{s:b, s:{s:s, s:O}}", "allowed", 0, "error",
                                                                 code == AUTHZ_EINTERNAL ? "internal_error"
                                                                                         : "input_error",
                                                                 authz_strerror (code), "message",
                                                                 json_object_get (err, "message")));
                }
                else
                    json_object_set (result, cid, item);
            }
            return json_pack ("{s:o}", "result", result);
        }
        case S_USERS: {
            json_t *users = json_array (), *u;
            size_t i;
            json_array_foreach (json_object_get (body, "users"), i, u)
                if (json_is_string (u))
                    json_array_append_new (users, s_user_object (json_string_value (u)));
            return json_pack ("{s:o}", "users", users);
        }
        case S_MODEL_ID:
            return json_pack ("{s:O}", "authorization_model_id", json_object_get (body, "authorization_model_id"));
        case S_MODEL: {
            json_t *model = json_deep_copy (json_object_get (body, "authorization_model"));
            if (model)
                json_object_set (model, "id", json_object_get (body, "authorization_model_id"));
            return json_pack ("{s:o}", "authorization_model", model);
        }
        case S_EMPTY:
            return json_object ();
        case S_AS_IS:
        default:
            return json_incref (body);
    }
}

/* --- StreamedListObjects ------------------------------------------------- */

static void s_on_gone (bus_http_exchange_t *ex, void *arg);

/*  OpenFGA's error line of a stream, as its gateway writes it: the gRPC
    status ({code, message, details}) under "error", code the gRPC code
    of the HTTP status the error has; new string (NULL: no memory). */
static char *
s_error_line (const s_fga_error_t *e)
{
    static const struct { int status, grpc; } grpc [] = {
        { 400, 3 }, { 401, 16 }, { 403, 7 }, { 404, 5 }, { 409, 10 }, { 413, 8 },
        { 501, 12 }, { 503, 14 }, { 504, 4 },
    };
    int code = 13;                      /* INTERNAL */
    for (size_t i = 0; i < sizeof grpc / sizeof grpc [0]; i++)
        if (grpc [i].status == e->status)
            code = grpc [i].grpc;
    json_t *line = json_pack ("{s:{s:i, s:s, s:[]}}", "error", "code", code, "message", e->message,
                              "details");
    char *text = line ? json_dumps (line, JSON_COMPACT) : NULL;
    json_decref (line);
    char *with_nl = text ? realloc (text, strlen (text) + 2) : NULL;
    if (!with_nl) {
        free (text);
        return NULL;
    }
    strcat (with_nl, "\n");
    return with_nl;
}

/*  Open the stream (200) before its first line. */
static int
s_stream_start (s_call_t *call)
{
    if (call->streaming)
        return 0;
    int rc = bus_http_stream_open (call->ex, 200, "application/json", s_on_gone, call);
    if (rc == 0)
        call->streaming = true;
    return rc;
}

/*  Move lines from the pipe to the stream: up to the window (all that
    wait when all is set: the query has ended, the pipe holds no more
    than S_STREAM_PIPE). Returns 0, or the stream's failure. */
static int
s_stream_pump (s_call_t *call, bool all)
{
    char buf [8192];
    while (call->ex && bus_pipe_size (call->pipe)) {
        size_t queued = call->streaming ? bus_http_stream_queued (call->ex) : 0;
        if (!all && queued >= S_STREAM_WINDOW)
            break;                      /* the drained callback goes on */
        size_t room = all ? sizeof buf : S_STREAM_WINDOW - queued;
        int rc = s_stream_start (call);
        if (rc)
            return rc;
        size_t n = bus_pipe_read (call->pipe, buf, room < sizeof buf ? room : sizeof buf);
        rc = bus_http_stream_write (call->ex, buf, n);
        if (rc)
            return rc;
    }
    return 0;
}

/*  The pipe has lines (the reactor), or the stream drained: pump. A
    stream that cannot take more (no memory) stops the query, whose end
    then says so in an error line. */
static void
s_stream_more (s_call_t *call)
{
    int rc = s_stream_pump (call, false);
    if (rc) {
        bus_warn ("streamed list-objects cut: %s", bus_strerror (rc));
        bus_pipe_cancel (call->pipe);
    }
}

static void
s_on_pipe (bus_pipe_t *pipe, void *arg)
{
    s_stream_more (arg);
}

static void
s_on_drained (bus_http_exchange_t *ex, void *arg)
{
    s_stream_more (arg);
}

/*  The query ended (reply: {} or the error): the rest of the lines, then
    the end, or the error (the HTTP status and the error line as the
    body, when no line came before it). */
static void
s_stream_end (s_call_t *call, proto_msg_t *reply)
{
    int rc = s_stream_pump (call, true);
    s_fga_error_t e = { 500, "internal_error", rc ? bus_strerror (rc) : "no reply could be made" };
    if (reply && !reply->ok)
        e = s_fga_error (reply->error);
    if (rc == 0 && reply && reply->ok) {
        if (s_stream_start (call) == 0)
            bus_http_stream_close (call->ex);
        else
            s_error (call->ex, 500, "internal_error", "the stream could not be opened");
        return;
    }
    char *line = s_error_line (&e);
    if (!call->streaming)
        bus_http_respond (call->ex, e.status, "application/json", line ? line : "", line ? strlen (line) : 0);
    else {
        if (line && bus_http_stream_write (call->ex, line, strlen (line)))
            bus_warn ("streamed list-objects: the error line did not fit: %s", e.message);
        bus_http_stream_close (call->ex);
    }
    free (line);
}

/*  The service's answer to a call: to the client when it is still
    there; the call is freed unless the handler is still running (it
    then sees done and frees it). */
static void
s_on_reply (proto_msg_t *reply, void *arg)
{
    s_call_t *call = arg;
    call->done = true;
    if (call->ex && call->shape == S_STREAM) {
        s_stream_end (call, reply);
        call->ex = NULL;
    }
    else
    if (call->shape == S_STREAM)
        bus_info ("streamed list-objects: the client went away; the query ended: %s",
                  reply && !reply->ok ? json_string_value (json_object_get (reply->error, "message")) ?: ""
                                      : "complete");
    if (call->ex) {
        if (!reply)
            s_error (call->ex, 500, "internal_error", "no reply could be made");
        else
        if (!reply->ok)
            s_bus_error (call->ex, reply->error);
        else
        if (call->shape == S_NO_CONTENT)
            bus_http_respond (call->ex, 204, "application/json", NULL, 0);
        else
            s_respond (call->ex, call->shape == S_MODEL_ID || call->shape == S_CREATED ? 201 : 200,
                       s_shape (call->shape, reply->body));
        call->ex = NULL;
    }
    bus_pipe_destroy (&call->pipe);     /* the query is over: nobody puts */
    if (call->deferred)
        free (call);
}

/*  The client went away before the answer: the call stays for it. */
static void
s_on_gone (bus_http_exchange_t *ex, void *arg)
{
    s_call_t *call = arg;
    call->ex = NULL;
    if (call->pipe)
        bus_pipe_cancel (call->pipe);   /* its query stops */
}

/*  Run type with body (stolen) as principal; the answer goes to ex. */
static void
s_call (authz_http_t *self, bus_http_exchange_t *ex, const char *principal, const char *store,
        const char *type, json_t *body, s_shape_t shape)
{
    if (body && store)                  /* the path's store: the service checks it */
        json_object_set_new (body, "store_id", json_string (store));
    s_call_t *call = calloc (1, sizeof *call);
    if (!call || !body) {
        free (call);
        json_decref (body);
        s_error (ex, 500, "internal_error", "out of memory");
        return;
    }
    call->ex = ex;
    call->shape = shape;
    if (shape == S_STREAM
    &&  !(call->pipe = bus_pipe_new (bus_service_loop (self->svc), S_STREAM_PIPE, S_STREAM_WAIT_MS,
                                     s_on_pipe, call))) {
        free (call);
        json_decref (body);
        s_error (ex, 500, "internal_error", "the stream could not be set up");
        return;
    }
    int rc = bus_service_local_piped (self->svc, principal, type, body, call->pipe, s_on_reply, call);
    if (rc) {
        bus_pipe_destroy (&call->pipe);
        free (call);
        s_error (ex, 500, "internal_error", bus_strerror (rc));
        return;
    }
    if (call->done) {                   /* answered already */
        free (call);
        return;
    }
    call->deferred = true;
    bus_http_defer (ex, s_on_gone, call);
    if (call->pipe)                     /* once the stream opens */
        bus_http_stream_drained (ex, s_on_drained, call);
}

/*  Run a request that the service answers at once (a model read, on the
    reactor) and return its reply ({"ok": true, "body"} or {"ok": false,
    "error"}; new reference), or NULL (no memory, or an answer that did
    not come at once: it is dropped when it comes). */
typedef struct {
    json_t *result;
    bool done;                          /* answered */
    bool abandoned;                     /* the caller stopped waiting: free on answer */
} s_now_t;

static void
s_on_now (proto_msg_t *reply, void *arg)
{
    s_now_t *now = arg;
    if (now->abandoned) {
        free (now);
        return;
    }
    now->done = true;
    if (reply)
        now->result = reply->ok ? json_pack ("{s:b, s:O}", "ok", 1, "body", reply->body)
                                : json_pack ("{s:b, s:O}", "ok", 0, "error", reply->error);
}

static json_t *
s_call_now (authz_http_t *self, const char *principal, const char *store, const char *type, json_t *body)
{
    s_now_t *now = calloc (1, sizeof *now);
    if (body)
        json_object_set_new (body, "store_id", json_string (store));
    if (!now || bus_service_local (self->svc, principal, type, body, s_on_now, now)) {
        if (!now)
            json_decref (body);
        free (now);
        return NULL;
    }
    if (!now->done) {
        now->abandoned = true;
        return NULL;
    }
    json_t *result = now->result;
    free (now);
    return result;
}

/* --- translations --------------------------------------------------------- */

/*  OpenFGA's {tuple_keys: [...]} as the bus's list, in place. */
static void
s_unwrap_tuples (json_t *obj, const char *key)
{
    json_t *v = json_object_get (obj, key);
    if (json_is_object (v)) {
        json_t *list = json_object_get (v, "tuple_keys");
        if (list)
            json_object_set (obj, key, list);
        else
            json_object_del (obj, key);
    }
}

/*  A request body in the bus's names: authorization_model_id is
    model_id; consistency (a hint for OpenFGA's caches) has no meaning
    here and goes; contextual tuples as a list. */
static json_t *
s_common (json_t *given)
{
    json_t *body = json_deep_copy (given);
    if (!body)
        return NULL;
    json_t *mid = json_object_get (body, "authorization_model_id");
    if (json_is_string (mid) && *json_string_value (mid))
        json_object_set (body, "model_id", mid);
    json_object_del (body, "authorization_model_id");
    json_object_del (body, "consistency");
    json_object_del (body, "trace");        /* Check's: no resolution trace is kept */
    s_unwrap_tuples (body, "contextual_tuples");
    return body;
}

/*  Write: {writes: {tuple_keys, on_duplicate}, deletes: {tuple_keys,
    on_missing}} as the bus's {writes: [...], deletes: [...], ...}. */
static json_t *
s_write_body (json_t *given)
{
    json_t *body = s_common (given);
    if (!body)
        return NULL;
    json_t *w = json_object_get (body, "writes"), *d = json_object_get (body, "deletes");
    if (json_is_object (w) && json_is_string (json_object_get (w, "on_duplicate")))
        json_object_set (body, "on_duplicate", json_object_get (w, "on_duplicate"));
    if (json_is_object (d) && json_is_string (json_object_get (d, "on_missing")))
        json_object_set (body, "on_missing", json_object_get (d, "on_missing"));
    s_unwrap_tuples (body, "writes");
    s_unwrap_tuples (body, "deletes");
    /* OpenFGA's deletes carry no condition: the bus's tuple keys may */
    return body;
}

/*  An unsigned query argument into body[key], or an error answered. */
static int
s_query_uint (bus_http_exchange_t *ex, json_t *body, const char *name)
{
    const char *v = bus_http_query (ex, name);
    if (!v || !*v)
        return 0;
    char *end = NULL;
    long long n = strtoll (v, &end, 10);
    if (*end || n < 0 || n > 1000000) {
        s_error (ex, 400, "validation_error", "page_size must be a positive integer");
        return -1;
    }
    if (n > 0)
        json_object_set_new (body, name, json_integer (n));
    return 0;
}

/*  GET /stores/{id}/authorization-models: newest first, pages of
    page_size (at most S_MODELS_PAGE) after continuation_token (the id
    the page starts at). */
static void
s_models_list (authz_http_t *self, bus_http_exchange_t *ex, const char *principal, const char *store)
{
    const char *ps = bus_http_query (ex, "page_size"), *token = bus_http_query (ex, "continuation_token");
    long page = ps && *ps ? strtol (ps, NULL, 10) : S_MODELS_PAGE;
    if (page <= 0 || page > S_MODELS_PAGE) {
        s_error (ex, 400, "validation_error", "page_size must be 1..50");
        return;
    }
    json_t *latest = s_call_now (self, principal, store, "authz.model.read", json_object ());
    if (!latest) {
        s_error (ex, 500, "internal_error", "the models could not be read");
        return;
    }
    json_t *models = json_array ();
    if (!json_is_true (json_object_get (latest, "ok"))) {
        json_t *error = json_object_get (latest, "error");
        if (json_integer_value (json_object_get (error, "fga_code")) == AUTHZ_ELATEST_NOT_FOUND)
            s_respond (ex, 200, json_pack ("{s:o, s:s}", "authorization_models", models, "continuation_token", ""));
        else {
            json_decref (models);
            s_bus_error (ex, error);
        }
        json_decref (latest);
        return;
    }
    json_t *ids = json_object_get (json_object_get (latest, "body"), "model_ids");
    size_t start = 0, i;
    if (token && *token) {
        for (start = 0; start < json_array_size (ids); start++)
            if (streq (json_string_value (json_array_get (ids, start)) ?: "", token))
                break;
        if (start == json_array_size (ids)) {
            json_decref (latest);
            json_decref (models);
            s_error (ex, 400, "invalid_continuation_token", "invalid continuation token");
            return;
        }
    }
    for (i = start; i < json_array_size (ids) && i < start + (size_t) page; i++) {
        json_t *one = s_call_now (self, principal, store, "authz.model.read",
                                  json_pack ("{s:O}", "model_id", json_array_get (ids, i)));
        json_t *body = json_object_get (one, "body");
        if (json_is_true (json_object_get (one, "ok")) && body) {
            json_t *shaped = s_shape (S_MODEL, body);
            json_array_append (models, json_object_get (shaped, "authorization_model"));
            json_decref (shaped);
        }
        json_decref (one);
    }
    const char *next = i < json_array_size (ids) ? json_string_value (json_array_get (ids, i)) : "";
    s_respond (ex, 200, json_pack ("{s:o, s:s}", "authorization_models", models, "continuation_token", next));
    json_decref (latest);
}

/* --- routing -------------------------------------------------------------- */

/*  The principal of the request's bearer key, or NULL (401 answered). */
static const char *
s_authenticate (authz_http_t *self, bus_http_exchange_t *ex)
{
    const char *auth = bus_http_header (ex, "Authorization");
    if (!auth || strncasecmp (auth, "Bearer ", 7) || !auth [7]) {
        s_error (ex, 401, "bearer_token_missing", "missing bearer token");
        return NULL;
    }
    const char *key = auth + 7;
    unsigned char hash [crypto_generichash_BYTES];
    char hex [S_HASH_HEX];
    crypto_generichash (hash, sizeof hash, (const unsigned char *) key, strlen (key), NULL, 0);
    sodium_bin2hex (hex, sizeof hex, hash, sizeof hash);
    const char *principal = zhashx_lookup (self->keys, hex);
    if (!principal)
        s_error (ex, 401, "unauthenticated", "unauthenticated");
    return principal;
}

/*  Split the path after "/stores/" into the store id, the operation and
    its argument ("authorization-models/{id}"); false when it is not one. */
static bool
s_split (const char *path, char *store, size_t store_len, char *op, size_t op_len, char *arg, size_t arg_len)
{
    *store = *op = *arg = 0;
    const char *p = path + strlen ("/stores");
    if (!*p || streq (p, "/"))
        return true;
    p++;
    const char *slash = strchr (p, '/');
    size_t n = slash ? (size_t) (slash - p) : strlen (p);
    if (n == 0 || n >= store_len)
        return false;
    memcpy (store, p, n);
    store [n] = 0;
    if (!slash || !slash [1])
        return true;
    p = slash + 1;
    slash = strchr (p, '/');
    n = slash ? (size_t) (slash - p) : strlen (p);
    if (n >= op_len)
        return false;
    memcpy (op, p, n);
    op [n] = 0;
    if (!slash || !slash [1])
        return true;
    p = slash + 1;
    n = strlen (p);
    if (n >= arg_len || strchr (p, '/'))
        return false;
    memcpy (arg, p, n + 1);
    return true;
}

void
authz_http_handle (authz_http_t *self, bus_http_exchange_t *ex)
{
    const char *principal = s_authenticate (self, ex);
    if (!principal)
        return;
    const char *method = bus_http_method (ex), *path = bus_http_path (ex);
    char store [64], op [32], arg [64];
    if (!s_split (path, store, sizeof store, op, sizeof op, arg, sizeof arg)) {
        s_error (ex, 404, "undefined_endpoint", "no such endpoint");
        return;
    }
    bool get = streq (method, "GET"), post = streq (method, "POST"), put = streq (method, "PUT");
    if (!*store) {                      /* /stores */
        if (get) {
            json_t *body = json_object ();
            const char *name = bus_http_query (ex, "name"), *token = bus_http_query (ex, "continuation_token");
            if (name && *name)
                json_object_set_new (body, "name", json_string (name));
            if (token && *token)
                json_object_set_new (body, "continuation_token", json_string (token));
            if (s_query_uint (ex, body, "page_size")) {
                json_decref (body);
                return;
            }
            s_call (self, ex, principal, NULL, "authz.store.list", body, S_AS_IS);
        }
        else
        if (post) {
            size_t len = 0;
            const char *text = bus_http_body (ex, &len);
            json_t *given = len ? json_loadb (text, len, JSON_REJECT_DUPLICATES, NULL) : NULL;
            json_t *name = json_object_get (given, "name");
            if (!json_is_string (name)) {
                json_decref (given);
                s_error (ex, 400, "validation_error", "invalid CreateStoreRequest.Name: a name is required");
                return;
            }
            json_t *body = json_pack ("{s:O}", "name", name);
            json_decref (given);
            s_call (self, ex, principal, NULL, "authz.store.create", body, S_CREATED);
        }
        else
            s_error (ex, 405, "undefined_endpoint", "method not allowed");
        return;
    }
    if (!*op) {                         /* /stores/{id} */
        if (get)
            s_call (self, ex, principal, store, "authz.store.get", json_object (), S_AS_IS);
        else
        if (streq (method, "DELETE"))
            s_call (self, ex, principal, store, "authz.store.delete", json_object (), S_NO_CONTENT);
        else
            s_error (ex, 405, "undefined_endpoint", "method not allowed");
        return;
    }
    if (streq (op, "changes") && get) {
        json_t *body = json_object ();
        const char *type = bus_http_query (ex, "type"), *token = bus_http_query (ex, "continuation_token");
        const char *since = bus_http_query (ex, "start_time");
        if (since && *since)
            json_object_set_new (body, "start_time", json_string (since));
        if (type && *type)
            json_object_set_new (body, "type", json_string (type));
        if (token && *token)
            json_object_set_new (body, "continuation_token", json_string (token));
        if (s_query_uint (ex, body, "page_size")) {
            json_decref (body);
            return;
        }
        s_call (self, ex, principal, store, "authz.read_changes", body, S_AS_IS);
        return;
    }
    if (streq (op, "authorization-models") && get) {
        if (*arg)
            s_call (self, ex, principal, store, "authz.model.read", json_pack ("{s:s}", "model_id", arg), S_MODEL);
        else
            s_models_list (self, ex, principal, store);
        return;
    }
    if (streq (op, "assertions") && *arg && get) {
        s_call (self, ex, principal, store, "authz.assertions.read", json_pack ("{s:s}", "model_id", arg), S_AS_IS);
        return;
    }
    static const struct { const char *op; const char *type; s_shape_t shape; } posts [] = {
        { "check",                "authz.check",        S_CHECK },
        { "batch-check",          "authz.batch_check",  S_BATCH },
        { "expand",               "authz.expand",       S_AS_IS },
        { "list-objects",         "authz.list_objects", S_AS_IS },
        { "streamed-list-objects", "authz.list_objects", S_STREAM },
        { "list-users",           "authz.list_users",   S_USERS },
        { "write",                "authz.write",        S_EMPTY },
        { "read",                 "authz.read",         S_AS_IS },
        { "authorization-models", "authz.model.write",  S_MODEL_ID },
    };
    size_t i;
    for (i = 0; i < sizeof posts / sizeof posts [0]; i++)
        if (streq (op, posts [i].op))
            break;
    bool assertions = streq (op, "assertions") && *arg;
    if (assertions && !put) {
        s_error (ex, 405, "undefined_endpoint", "method not allowed");
        return;
    }
    if (!assertions && (i == sizeof posts / sizeof posts [0] || *arg)) {
        s_error (ex, 404, "undefined_endpoint", "no such endpoint");
        return;
    }
    if (!post && !assertions) {
        s_error (ex, 405, "undefined_endpoint", "method not allowed");
        return;
    }
    size_t len = 0;
    const char *text = bus_http_body (ex, &len);
    json_error_t jerr;
    json_t *given = len ? json_loadb (text, len, JSON_REJECT_DUPLICATES, &jerr) : json_object ();
    if (!json_is_object (given)) {
        json_decref (given);
        s_error (ex, 400, "validation_error", "the body must be a JSON object");
        return;
    }
    json_t *body = NULL;
    if (assertions) {
        json_t *list = json_object_get (given, "assertions");
        body = json_pack ("{s:s, s:O}", "model_id", arg, "assertions", list ? list : json_null ());
        json_decref (given);
        s_call (self, ex, principal, store, "authz.assertions.write", body, S_NO_CONTENT);
        return;
    }
    if (streq (op, "authorization-models")) {
        body = json_pack ("{s:O}", "model", given);
    }
    else
    if (streq (op, "write"))
        body = s_write_body (given);
    else
        body = s_common (given);
    json_decref (given);
    s_call (self, ex, principal, store, posts [i].type, body, posts [i].shape);
}

/* --- life cycle ----------------------------------------------------------- */

/*  Read the key file: "KEY" or "NAME KEY" a line; # comments. */
static int
s_keys_load (authz_http_t *self, const char *path, char *err, size_t err_len)
{
    if (!path || !*path)
        return 0;
    FILE *f = fopen (path, "r");
    if (!f) {
        snprintf (err, err_len, "[authz] http_keys: cannot read %s", path);
        return BUS_ECONFIG;
    }
    struct stat st;
    if (fstat (fileno (f), &st) == 0 && (st.st_mode & 077))
        bus_warn ("[authz] http_keys: %s may be read by others than its owner (mode %03o)", path,
                  (unsigned) (st.st_mode & 0777));
    char line [1024];
    int n = 0, rc = 0;
    while (rc == 0 && fgets (line, sizeof line, f)) {
        n++;
        char *s = line + strspn (line, " \t");
        s [strcspn (s, "\r\n")] = 0;
        if (!*s || *s == '#')
            continue;
        char *sp = strpbrk (s, " \t"), name [64], *key = s;
        snprintf (name, sizeof name, "key%d", n);
        if (sp) {
            *sp = 0;
            if (strlen (s) > 60 || strspn (s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
                                   != strlen (s)) {
                snprintf (err, err_len, "[authz] http_keys: %s line %d: a name is 1..60 of A-Z a-z 0-9 . _ -",
                          path, n);
                rc = BUS_ECONFIG;
                break;
            }
            snprintf (name, sizeof name, "%s", s);
            key = sp + 1 + strspn (sp + 1, " \t");
        }
        if (strlen (key) < S_KEY_MIN || strpbrk (key, " \t")) {
            snprintf (err, err_len, "[authz] http_keys: %s line %d: a key is one word of at least %d bytes",
                      path, n, S_KEY_MIN);
            rc = BUS_ECONFIG;
            break;
        }
        unsigned char hash [crypto_generichash_BYTES];
        char hex [S_HASH_HEX], principal [80];
        crypto_generichash (hash, sizeof hash, (const unsigned char *) key, strlen (key), NULL, 0);
        sodium_bin2hex (hex, sizeof hex, hash, sizeof hash);
        snprintf (principal, sizeof principal, "ops:fga-%s", name);
        zhashx_update (self->keys, hex, strdup (principal));
    }
    sodium_memzero (line, sizeof line);
    fclose (f);
    return rc;
}

static void
s_free_str (void **item)
{
    free (*item);
    *item = NULL;
}

int
authz_http_new (authz_http_t **out, bus_service_t *svc, char *err, size_t err_len)
{
    *out = NULL;
    authz_http_t *self = calloc (1, sizeof *self);
    if (!self || !(self->keys = zhashx_new ())) {
        free (self);
        snprintf (err, err_len, "out of memory");
        return BUS_ENOMEM;
    }
    self->svc = svc;
    zhashx_set_destructor (self->keys, s_free_str);
    int rc = s_keys_load (self, bus_config_str (bus_service_config (svc), "authz", "http_keys"), err, err_len);
    if (rc) {
        authz_http_destroy (&self);
        return rc;
    }
    if (zhashx_size (self->keys) == 0)
        bus_info ("OpenFGA HTTP API: no key in [authz] http_keys, so it answers 401 to every request (to use "
                  "it, point http_keys at a 0600 file of keys, one a line: KEY or NAME KEY, a key at least %d "
                  "bytes)", S_KEY_MIN);
    *out = self;
    return 0;
}

void
authz_http_destroy (authz_http_t **self_p)
{
    authz_http_t *self = *self_p;
    if (!self)
        return;
    zhashx_destroy (&self->keys);
    free (self);
    *self_p = NULL;
}
