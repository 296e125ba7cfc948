/*  bus_service.c — reactor, request dispatch, dedupe, outbox, built-ins. */
#include "bus_service.h"
#include "bus_error.h"
#include "bus_handshake.h"
#include "bus_keys.h"
#include "bus_log.h"
#include "bus_notify.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <unistd.h>

#define S_DEDUPE_MAX      20000     /* remembered replies */
#define S_DEDUPE_TTL_MS   120000    /* how long a reply is kept for retries */
#define S_REPLAY_MAX      1000      /* events in one events.replay reply */
#define S_REBIND_TRIES  100        /* x 10 ms: the old listener closes asynchronously */
#define S_BATCH_MAX       64        /* requests handled per reactor wake-up */
#define S_TRIM_MS         1000      /* how often the outbox is trimmed */
#define S_TRIM_BATCH      8192      /* events deleted per trim, at most */
#define S_UNKNOWN_LOGGED  256       /* distinct (sender, type, field) logged */
#define S_WORK_QUEUE_MAX  256       /* requests waiting for a worker thread, at most */
#define S_GROUP_MAX       64        /* writes committed together by the writer, at most */
#define S_REFUSAL_LINES   10        /* refusal lines per (peer, reason) ... */
#define S_REFUSAL_WINDOW_MS 10000   /* ... per window; then counted */
#define S_REFUSAL_KEYS    1024      /* (peer, reason) pairs tracked */

typedef struct {
    bus_handler_fn *fn;
    void *arg;
} s_handler_t;

/*  A remembered reply: the encoded frame, or NULL while the request is
    still being worked on (a deferred reply). */
typedef struct {
    zchunk_t *reply;
    int64_t expires_ms;
} s_dedupe_t;

struct bus_service_t {
    bus_config_t *config;
    char section [32];
    char principal [64];
    char version [32];
    bus_store_t *store;
    int outbox_db;
    zcert_t *cert;
    zactor_t *auth;
    bus_allow_t *allow;
    zsock_t *router;
    zsock_t *pub;
    char *pub_endpoint;           /* as bound (ZMQ_LAST_ENDPOINT), for unbinding */
    bool pub_unbound;             /* unbound to close subscriptions, not yet bound again */
    int rebind_tries;             /* binds tried since (S_REBIND_TRIES + 1: given up on the timer) */
    zloop_t *loop;
    zhashx_t *handlers;           /* type -> s_handler_t */
    zhashx_t *dedupe;             /* "principal/id" -> s_dedupe_t */
    zlistx_t *dedupe_order;       /* keys, oldest first */
    zhashx_t *unknown_logged;     /* "principal type field" already logged */
    bus_workers_t *workers;       /* for bus_request_offload, or NULL */
    bus_workers_t *writer;        /* for bus_request_offload_write, or NULL */
    atomic_uint_fast64_t write_groups;    /* commits of the writer's groups */
    atomic_uint_fast64_t writes_grouped;  /* writes committed in them */
    bus_stats_t *stats;
    bus_log_limit_t *refusals;    /* refused requests' log lines, rate-limited */
    uint64_t refusals_counted;    /* of its suppressed lines, in stats so far */
    bus_handshake_t *handshakes;  /* monitors of the ROUTER and PUB */
    size_t max_frame;
    uint64_t published_seq;       /* last sequence published */
    pthread_mutex_t committed_lock;
    zlistx_t *committed;          /* s_txn_events_t of commits not yet published */
    pthread_t reactor;            /* the thread that runs the reactor (and publishes) */
    uint64_t outbox_first_seq;    /* oldest event stored, 0 while none is */
    uint64_t outbox_acked;        /* from_seq of the last events.replay by acked_by */
    uint64_t outbox_keep;         /* see s_outbox_trim */
    uint64_t outbox_max;
    char acked_by [PROTO_PRINCIPAL_MAX + 1];
    int64_t started_us;
    pid_t pid;                    /* for health, without a system call per request */
    bool stopping;
    bool trim_pending;            /* a trim is with the writer */
};

struct bus_request_t {
    bus_service_t *svc;
    zmsg_t *routing;              /* the routing frames, to send the reply */
    proto_msg_t *msg;
    char principal [PROTO_PRINCIPAL_MAX + 1];
    char dedupe_key [PROTO_PRINCIPAL_MAX + PROTO_ID_LEN + 2];
    int64_t start_us;
    zchunk_t *reply;              /* the reply sent while s_on_message ran, to remember */
    bool deferred;
    bool answered;
    bool in_handler;              /* s_on_message frees it after the handler */
    bool remember;                /* its reply is kept for retries (not a safe type) */
};

static void
s_dedupe_free (void **item)
{
    s_dedupe_t *d = (s_dedupe_t *) *item;
    if (d) {
        zchunk_destroy (&d->reply);
        free (d);
        *item = NULL;
    }
}

static void
s_handler_free (void **item)
{
    free (*item);
    *item = NULL;
}

/*  The oldest event the outbox holds (last_seq + 1 while it holds none). */
static uint64_t
s_first_seq (bus_service_t *self)
{
    return self->outbox_first_seq ? self->outbox_first_seq : self->published_seq + 1;
}

/* --- built-in handlers ---------------------------------------------------- */

static void
s_handle_health (bus_service_t *self, bus_request_t *req, void *arg)
{
    bus_reply_ok (req, json_pack ("{s:s, s:s, s:s, s:s, s:I, s:i, s:I, s:I}",
                                  "service", bus_service_name (self->section),
                                  "principal", self->principal,
                                  "state", self->stopping ? "stopping" : "ok",
                                  "version", self->version,
                                  "uptime_s", (json_int_t) ((proto_now_us () - self->started_us) / 1000000),
                                  "pid", (int) self->pid,
                                  "last_seq", (json_int_t) self->published_seq,
                                  "first_seq", (json_int_t) s_first_seq (self)));
}

static void
s_handle_stats (bus_service_t *self, bus_request_t *req, void *arg)
{
    json_t *body = bus_stats_json (self->stats);
    json_t *counters = json_object_get (body, "counters");
    if (self->writer && counters) {
        json_object_set_new (counters, "write_groups", json_integer ((json_int_t) atomic_load (&self->write_groups)));
        json_object_set_new (counters, "writes_grouped",
                             json_integer ((json_int_t) atomic_load (&self->writes_grouped)));
    }
    json_object_set_new (body, "service", json_string (bus_service_name (self->section)));
    json_object_set_new (body, "uptime_s",
                         json_integer ((json_int_t) ((proto_now_us () - self->started_us) / 1000000)));
    bus_reply_ok (req, body);
}

typedef struct {
    json_t *events;
    uint64_t to_seq;
    size_t limit;
    size_t bytes;               /* encoded size gathered so far */
    size_t max_bytes;           /* keep the reply well under the frame cap */
    uint64_t next;
    int rc;
} s_replay_t;

static int
s_replay_one (const void *key, size_t key_len, const void *val, size_t val_len, void *arg)
{
    s_replay_t *r = arg;
    uint64_t seq = bus_key_to_u64 (key);
    if (seq > r->to_seq)
        return 1;
    if (json_array_size (r->events) >= r->limit
        || (json_array_size (r->events) > 0 && r->bytes + val_len > r->max_bytes)) {
        r->next = seq;
        return 1;
    }
    r->bytes += val_len;
    proto_msg_t *evt = NULL;
    if (proto_msg_decode (&evt, val, val_len, SIZE_MAX, NULL, NULL, 0) == 0) {
        json_array_append_new (r->events, proto_msg_to_json (evt));
        proto_msg_destroy (&evt);
    }
    else
        bus_error ("outbox entry %llu does not decode", (unsigned long long) seq);
    return 0;
}

/*  events.replay {from_seq, to_seq?, limit?} -> {events: [...], last_seq,
    next_seq?}: the stored events of this publisher in order. */
static void
s_handle_replay (bus_service_t *self, bus_request_t *req, void *arg)
{
    json_t *body = bus_request_body (req);
    uint64_t from = (uint64_t) json_integer_value (json_object_get (body, "from_seq"));
    /* the subscriber that stores events elsewhere asks from the first it
       lacks: everything before is safe to trim */
    if (*self->acked_by && streq (bus_request_principal (req), self->acked_by))
        self->outbox_acked = from;
    json_t *to = json_object_get (body, "to_seq");
    json_t *limit = json_object_get (body, "limit");
    /* published events only: one a writer thread has just committed is
       replayed once the reactor has published it, never before */
    uint64_t to_seq = to ? (uint64_t) json_integer_value (to) : UINT64_MAX;
    s_replay_t r = { json_array (), MIN (to_seq, self->published_seq),
                     limit ? (size_t) json_integer_value (limit) : S_REPLAY_MAX, 0,
                     self->max_frame / 2, 0, 0 };
    uint8_t from_key [8];
    bus_u64_to_key (from, from_key);
    bus_txn_t *txn = bus_txn_begin (self->store, false);
    int rc = txn ? bus_txn_scan (txn, self->outbox_db, from_key, 8, NULL, 0, s_replay_one, &r) : BUS_EIO;
    bus_txn_abort (&txn);
    if (rc) {
        json_decref (r.events);
        bus_reply_error (req, PROTO_ERR_INTERNAL, "outbox read failed: %s", bus_strerror (rc));
        return;
    }
    /* first_seq: events before it were trimmed (s_outbox_trim) */
    json_t *reply = json_pack ("{s:o, s:s, s:I, s:I}", "events", r.events, "pub", self->principal,
                               "last_seq", (json_int_t) self->published_seq,
                               "first_seq", (json_int_t) s_first_seq (self));
    if (r.next)
        json_object_set_new (reply, "next_seq", json_integer ((json_int_t) r.next));
    bus_reply_ok (req, reply);
}

/*  echo {data?} -> {data, from}: a diagnostic round trip that also emits an
    echo.seen event through the outbox, so a client can see a request cause
    an event. */
static void
s_handle_echo (bus_service_t *self, bus_request_t *req, void *arg)
{
    json_t *data = json_object_get (bus_request_body (req), "data");
    int rc = bus_service_emit (self, "echo.seen",
                               json_pack ("{s:s, s:s}", "request", req->msg->id, "from", req->principal),
                               req->msg->traceparent);
    if (rc) {
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "cannot record the event: %s", bus_strerror (rc));
        return;
    }
    bus_reply_ok (req, json_pack ("{s:O?, s:s}", "data", data, "from", req->principal));
}

/* --- replies -------------------------------------------------------------- */

/*  Send an encoded reply to routing (consumed). */
static void
s_send_reply (bus_service_t *self, zmsg_t **routing_p, const uint8_t *data, size_t len)
{
    zmsg_t *out = *routing_p;
    *routing_p = NULL;
    zmsg_addmem (out, data, len);
    if (zmsg_send (&out, self->router))
        bus_stats_count (self->stats, "replies_unroutable", 1);
    zmsg_destroy (&out);
}

/*  Answer a frame we could not turn into a request. */
static void
s_reject (bus_service_t *self, zmsg_t **routing_p, const char *corr, const char *code,
          const char *message)
{
    proto_msg_t *rep = proto_reply_error_id (corr, code, message);
    uint8_t *data = NULL;
    size_t len = 0;
    if (rep && proto_msg_encode (rep, &data, &len) == 0)
        s_send_reply (self, routing_p, data, len);
    free (data);
    proto_msg_destroy (&rep);
    zmsg_destroy (routing_p);
    char counter [64];
    snprintf (counter, sizeof counter, "requests_rejected_%s", code);
    bus_stats_count (self->stats, counter, 1);
}

static void
s_request_free (bus_request_t **req_p)
{
    bus_request_t *req = *req_p;
    if (!req)
        return;
    zmsg_destroy (&req->routing);
    proto_msg_destroy (&req->msg);
    zchunk_destroy (&req->reply);
    free (req);
    *req_p = NULL;
}

/*  Drop dedupe entries past their time or over the cap. */
static void
s_dedupe_trim (bus_service_t *self)
{
    int64_t now = zclock_mono ();
    for (const char *key = zlistx_first (self->dedupe_order); key; key = zlistx_first (self->dedupe_order)) {
        s_dedupe_t *d = zhashx_lookup (self->dedupe, key);
        if (d && d->expires_ms > now && zhashx_size (self->dedupe) <= S_DEDUPE_MAX)
            break;                  /* the oldest is still wanted: so is what follows */
        zhashx_delete (self->dedupe, key);
        zlistx_delete (self->dedupe_order, NULL);
    }
}

/*  Encode and send the reply, remember it for retries, free the request. */
static void
s_answer (bus_request_t *req, proto_msg_t **rep_p)
{
    bus_service_t *self = req->svc;
    proto_msg_t *rep = *rep_p;
    uint8_t *data = NULL;
    size_t len = 0;
    if (req->answered) {
        bus_error ("request %s (%s) answered twice", req->msg->id, req->msg->type);
        proto_msg_destroy (rep_p);
        return;
    }
    req->answered = true;
    if (!rep || proto_msg_encode (rep, &data, &len)) {
        proto_msg_destroy (rep_p);
        rep = proto_reply_error (req->msg, PROTO_ERR_INTERNAL, "reply could not be encoded");
        *rep_p = rep;
        if (!rep || proto_msg_encode (rep, &data, &len)) {
            proto_msg_destroy (rep_p);
            if (!req->in_handler)
                s_request_free (&req);
            return;
        }
    }
    s_send_reply (self, &req->routing, data, len);
    /* remembered for retries once the reply has left: by s_on_message when
       it is still running, else in the entry it left for a deferred reply */
    if (req->remember && req->in_handler)
        req->reply = zchunk_new (data, len);
    else
    if (req->remember) {
        s_dedupe_t *d = zhashx_lookup (self->dedupe, req->dedupe_key);
        if (d) {
            zchunk_destroy (&d->reply);
            d->reply = zchunk_new (data, len);
            d->expires_ms = zclock_mono () + S_DEDUPE_TTL_MS;
        }
    }
    /* per catalogue type only: a client must not mint histogram names */
    bus_stats_latency (self->stats, req->msg->spec && req->msg->spec->kind == PROTO_KIND_REQ
                                    ? req->msg->spec->type : "(unknown)",
                       proto_now_us () - req->start_us);
    bus_stats_count (self->stats, rep->ok ? "requests_ok" : "requests_error", 1);
    free (data);
    proto_msg_destroy (rep_p);
    if (!req->in_handler)
        s_request_free (&req);
}

proto_msg_t *bus_request_msg (bus_request_t *req) { return req->msg; }
json_t *bus_request_body (bus_request_t *req) { return req->msg->body; }
const char *bus_request_principal (bus_request_t *req) { return req->principal; }
const char *bus_request_traceparent (bus_request_t *req) { return req->msg->traceparent; }

void
bus_request_defer (bus_request_t *req)
{
    req->deferred = true;
}

void
bus_reply_ok (bus_request_t *req, json_t *body)
{
    proto_msg_t *rep = proto_reply_ok (req->msg, body);
    s_answer (req, &rep);
}

/*  Log the refusal and answer with error {code, message, extra...}. */
static void
s_reply_error_v (bus_request_t *req, const char *code, json_t *extra, const char *fmt, va_list args)
{
    char message [512];
    vsnprintf (message, sizeof message, fmt, args);
    bus_log_limited (req->svc->refusals, req->principal, code, BUS_LOG_INFO,
                     json_pack ("{s:s, s:s, s:s, s:s}", "type", req->msg->type, "request", req->msg->id,
                                "peer", req->principal, "code", code),
                     "request refused: %s", message);
    proto_msg_t *rep = proto_reply_error (req->msg, code, message);
    if (rep && extra)
        json_object_update_missing (rep->error, extra);
    json_decref (extra);
    s_answer (req, &rep);
}

void
bus_reply_error (bus_request_t *req, const char *code, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    s_reply_error_v (req, code, NULL, fmt, args);
    va_end (args);
}

void
bus_reply_error_with (bus_request_t *req, const char *code, json_t *extra, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    s_reply_error_v (req, code, extra, fmt, args);
    va_end (args);
}

/* --- dispatch ------------------------------------------------------------- */

/*  Check a decoded request against the catalogue; 0 or an error reply sent. */
static int
s_admit (bus_service_t *self, bus_request_t *req)
{
    proto_msg_t *msg = req->msg;
    char err [256];
    if (msg->kind != PROTO_KIND_REQ) {
        bus_reply_error (req, PROTO_ERR_MALFORMED, "only requests are accepted on this socket");
        return -1;
    }
    if (!msg->spec || msg->spec->kind != PROTO_KIND_REQ) {
        bus_reply_error (req, PROTO_ERR_UNKNOWN_TYPE, "unknown request type '%s'", msg->type);
        return -1;
    }
    if (!streq (msg->spec->owner, "ANY") && !streq (msg->spec->owner, self->section)) {
        bus_reply_error (req, PROTO_ERR_WRONG_SERVICE, "'%s' is served by %s, not %s", msg->type,
                         bus_service_name (msg->spec->owner), bus_service_name (self->section));
        return -1;
    }
    if (!(proto_principal_class (req->principal) & msg->spec->senders)) {
        bus_reply_error (req, PROTO_ERR_FORBIDDEN, "%s may not send '%s'", req->principal, msg->type);
        return -1;
    }
    if (proto_msg_validate (msg, err, sizeof err)) {
        bus_reply_error (req, PROTO_ERR_INVALID, "%s", err);
        return -1;
    }
    return 0;
}

/*  Log lines of this thread carry msg's trace id from now on. */
static void
s_log_trace (const proto_msg_t *msg)
{
    char trace [33];
    memcpy (trace, msg->traceparent + 3, 32);
    trace [32] = 0;
    bus_log_set_trace (trace);
}

/*  A request carries a body member its type does not declare: ignored
    (PROTOCOL.md 9), but counted, and logged once per sender, type and
    field (up to S_UNKNOWN_LOGGED of them; then only counted), so that a
    misspelt optional field shows instead of silently doing nothing. */
static void
s_unknown_field (bus_service_t *self, bus_request_t *req, const char *field)
{
    bus_stats_count (self->stats, "requests_unknown_fields", 1);
    size_t n = zhashx_size (self->unknown_logged);
    if (n > S_UNKNOWN_LOGGED)
        return;
    char key [PROTO_PRINCIPAL_MAX + PROTO_TYPE_MAX + 72];
    snprintf (key, sizeof key, "%s %s %.64s", req->principal, req->msg->type, field);
    if (zhashx_lookup (self->unknown_logged, key))
        return;
    zhashx_insert (self->unknown_logged, key, (void *) 1);
    if (n == S_UNKNOWN_LOGGED)
        bus_warn ("more requests with unknown fields: counted in requests_unknown_fields, not logged");
    else
        bus_log_fields (BUS_LOG_WARN, json_pack ("{s:s, s:s, s:s}", "type", req->msg->type,
                                                 "request", req->msg->id, "peer", req->principal),
                        "unknown field '%.64s' in %s ignored (not in the catalogue: misspelt, "
                        "or from a newer client)", field, req->msg->type);
}

/*  One frame set from the ROUTER (consumed). */
static void
s_on_message (bus_service_t *self, zmsg_t *routing)
{
    bus_stats_count (self->stats, "requests_received", 1);
    int64_t start = proto_now_us ();
    zframe_t *frame = zmsg_last (routing);
    if (zmsg_size (routing) < 2 || !frame) {
        bus_stats_count (self->stats, "requests_dropped_no_routing", 1);
        zmsg_destroy (&routing);
        return;
    }
    zmsg_remove (routing, frame);      /* now ours; routing keeps the rest */
    /* who is it? — from the CURVE key, never from the message */
    const char *user_id = zframe_meta (frame, "User-Id");
    const char *principal = bus_allow_principal (self->allow, user_id);
    char id [PROTO_ID_LEN + 1] = "";
    char err [256];
    /* over the cap: not decoded, only its id looked for, so the refusal
       can name the request */
    size_t size = zframe_size (frame);
    proto_msg_t *msg = NULL;
    int rc = 0;
    if (size > self->max_frame) {
        proto_msg_peek_id (zframe_data (frame), size, id);
        zframe_destroy (&frame);
        bus_log_limited (self->refusals, principal ? principal : user_id, PROTO_ERR_TOO_LARGE, BUS_LOG_WARN,
                         json_pack ("{s:s, s:s}", "peer", principal ? principal : "(unknown key)",
                                    "code", PROTO_ERR_TOO_LARGE),
                         "frame of %zu bytes from %s over the cap", size, principal ? principal : "an unknown key");
        s_reject (self, &routing, id, principal ? PROTO_ERR_TOO_LARGE : PROTO_ERR_FORBIDDEN,
                  principal ? "frame exceeds the size cap" : "unknown client key");
        return;
    }
    rc = proto_msg_decode (&msg, zframe_data (frame), size, SIZE_MAX, id, err, sizeof err);
    zframe_destroy (&frame);
    if (!principal) {
        bus_log_limited (self->refusals, user_id, "unknown_key", BUS_LOG_WARN,
                         json_pack ("{s:s, s:s}", "peer_key", user_id && *user_id ? user_id : "(none)",
                                    "code", PROTO_ERR_FORBIDDEN),
                         "message from unknown key %s refused", user_id && *user_id ? user_id : "(none)");
        proto_msg_destroy (&msg);
        s_reject (self, &routing, id, PROTO_ERR_FORBIDDEN, "unknown client key");
        return;
    }
    if (rc) {
        bus_log_limited (self->refusals, principal, PROTO_ERR_MALFORMED, BUS_LOG_WARN,
                         json_pack ("{s:s, s:s, s:s}", "peer", principal, "request", id,
                                    "code", PROTO_ERR_MALFORMED),
                         "malformed request: %s", err);
        s_reject (self, &routing, id, rc == PROTO_ESTATE ? PROTO_ERR_VERSION : PROTO_ERR_MALFORMED, err);
        return;
    }
    bus_request_t *req = calloc (1, sizeof *req);
    if (!req) {
        proto_msg_destroy (&msg);
        zmsg_destroy (&routing);
        return;
    }
    req->svc = self;
    req->routing = routing;
    req->msg = msg;
    req->start_us = start;
    /* principals are at most 100 bytes (bus_principal_valid): they fit */
    size_t plen = strnlen (principal, PROTO_PRINCIPAL_MAX);
    memcpy (req->principal, principal, plen);
    req->principal [plen] = 0;
    memcpy (msg->from, req->principal, plen + 1);
    if (!msg->traceparent [0])
        proto_traceparent_new (msg->traceparent);
    s_log_trace (msg);

    /* a retried request id: answer from the cache, or wait for the reply;
       a request without effects (a safe type: a read) is not remembered,
       its retry simply runs again */
    memcpy (req->dedupe_key, req->principal, plen);
    req->dedupe_key [plen] = '/';
    memcpy (req->dedupe_key + plen + 1, msg->id, PROTO_ID_LEN + 1);
    req->remember = !msg->spec || !msg->spec->safe;
    s_dedupe_t *seen = req->remember ? zhashx_lookup (self->dedupe, req->dedupe_key) : NULL;
    if (seen) {
        bus_stats_count (self->stats, "requests_duplicate", 1);
        if (seen->reply)
            s_send_reply (self, &req->routing, zchunk_data (seen->reply), zchunk_size (seen->reply));
        req->answered = true;
        s_request_free (&req);
        bus_log_set_trace (NULL);
        return;
    }
    /* the request outlives a reply made below, so that s_on_message can
       check that there was one and remember it */
    req->in_handler = true;
    if (s_admit (self, req) == 0) {
        const char *unknown = proto_msg_unknown_field (msg);
        if (unknown)
            s_unknown_field (self, req, unknown);
        s_handler_t *h = zhashx_lookup (self->handlers, msg->type);
        if (!h)
            bus_reply_error (req, PROTO_ERR_NOT_IMPLEMENTED,
                             "'%s' is not implemented yet by %s", msg->type, bus_service_name (self->section));
        else {
            h->fn (self, req, h->arg);
            if (!req->answered && !req->deferred) {
                /* a handler that neither answered nor deferred is a bug */
                bus_error ("handler for %s returned without a reply", msg->type);
                bus_reply_error (req, PROTO_ERR_INTERNAL, "no reply produced");
            }
        }
    }
    req->in_handler = false;
    /* Remember the id after the reply has left (this thread runs nothing
       in between, so no retry can slip past): a retry gets the same reply,
       a retry of a deferred request waits for it. */
    s_dedupe_t *d = req->remember ? calloc (1, sizeof *d) : NULL;
    if (d) {
        d->reply = req->reply;
        req->reply = NULL;
        d->expires_ms = zclock_mono () + S_DEDUPE_TTL_MS;
        zhashx_insert (self->dedupe, req->dedupe_key, d);
        zlistx_add_end (self->dedupe_order, strdup (req->dedupe_key));
        s_dedupe_trim (self);
    }
    if (req->answered)
        s_request_free (&req);
    bus_log_set_trace (NULL);
}

/*  The ROUTER is readable: handle what is queued, up to S_BATCH_MAX
    requests, before going back to the reactor (its poll costs a system
    call per wake-up; timers still run between batches). */
static int
s_on_request (zloop_t *loop, zsock_t *router, void *arg)
{
    bus_service_t *self = arg;
    /* the ROUTER's receive timeout is 0: a receive finding nothing ends
       the batch without a system call (ZMQ_EVENTS would poll each time) */
    for (int i = 0; i < S_BATCH_MAX; i++) {
        zmsg_t *routing = zmsg_recv (router);
        if (!routing)
            return zsys_interrupted ? -1 : 0;
        s_on_message (self, routing);
    }
    return 0;
}

/* --- work off the reactor ------------------------------------------------ */

static void s_publish_ready (bus_service_t *self);
static void s_trim_done (bus_service_t *self, void *job, bool ran, bool stored);

typedef struct {
    bus_request_t *req;
    bus_work_fn *fn;
    void *job;
    void (*job_free) (void *job);
    bus_outcome_t out;
} s_offload_t;

/*  Free a job as its owner said (free() by default). */
static void
s_job_free (void *job, void (*job_free) (void *job))
{
    if (job_free)
        job_free (job);
    else
        free (job);
}

void
bus_reply_outcome (bus_request_t *req, bus_outcome_t *out)
{
    if (out->code)
        bus_reply_error_with (req, out->code, out->extra, "%s", out->message);
    else {
        json_decref (out->extra);
        bus_reply_ok (req, out->body);
    }
    out->body = out->extra = NULL;
}

/*  On a worker thread: the request's work, in its trace. The request is
    not touched by the reactor until the job is reported done. */
static void
s_offload_run (void *state, void *arg)
{
    s_offload_t *o = arg;
    if (o->req)
        s_log_trace (o->req->msg);
    o->fn (state, o->req ? o->req->msg->body : NULL, o->job, &o->out);
    bus_log_set_trace (NULL);
}

/*  On the reactor: answer with the outcome (or, for work the workers
    never started because the service stopped, unavailable). */
static void
s_offload_done (void *arg, bool ran, void *svc)
{
    s_offload_t *o = arg;
    s_publish_ready (svc);          /* events the work committed go first */
    if (!o->req) {                  /* the service's own work: a trim */
        s_trim_done (svc, o->job, ran, !o->out.code);
        free (o->job);
        free (o);
        return;
    }
    s_log_trace (o->req->msg);
    if (ran)
        bus_reply_outcome (o->req, &o->out);
    else
        bus_reply_error (o->req, PROTO_ERR_UNAVAILABLE, "the service stopped before it could answer");
    bus_log_set_trace (NULL);
    s_job_free (o->job, o->job_free);
    free (o);
}

int
bus_service_workers (bus_service_t *self, int n, bus_worker_init_fn *init,
                     bus_worker_fini_fn *fini, void *arg)
{
    if (self->workers || n < 1)
        return BUS_EINVAL;
    self->workers = bus_workers_new (self->loop, n, S_WORK_QUEUE_MAX, init, fini, arg,
                                     s_offload_done, self);
    return self->workers ? 0 : BUS_EIO;
}

/*  Group commit: when the writer takes several writes at once, the write
    transactions they begin are nested in one group, committed (one
    fsync) after the last of them. */
static void
s_group_begin (void *state, void **jobs, size_t n, void *arg)
{
    bus_service_t *self = arg;
    if (n > 1)
        bus_txn_group (bus_txn_begin (self->store, true));
}

/*  The group could not be stored: what its writes answered is untrue. */
static void
s_group_failed (void **jobs, size_t n, int rc)
{
    for (size_t i = 0; i < n; i++) {
        bus_outcome_t *out = &((s_offload_t *) jobs [i])->out;
        if (out->code)
            continue;                   /* an error stays an error */
        json_decref (out->body);
        out->body = NULL;
        out->code = PROTO_ERR_UNAVAILABLE;
        snprintf (out->message, sizeof out->message, "the write could not be stored: %s", bus_strerror (rc));
    }
}

static void
s_group_end (void *state, void **jobs, size_t n, void *arg)
{
    bus_service_t *self = arg;
    bus_txn_t *group = bus_txn_group_current ();
    if (!group)
        return;                         /* one write, or no group could begin: each committed alone */
    bus_txn_group (NULL);
    int rc = bus_service_commit (self, &group);
    if (rc)
        s_group_failed (jobs, n, rc);
    atomic_fetch_add (&self->write_groups, 1);
    atomic_fetch_add (&self->writes_grouped, n);
}

int
bus_service_writer (bus_service_t *self, bus_worker_init_fn *init, bus_worker_fini_fn *fini, void *arg)
{
    if (self->writer)
        return BUS_EINVAL;
    self->writer = bus_workers_new (self->loop, 1, S_WORK_QUEUE_MAX, init, fini, arg, s_offload_done, self);
    if (self->writer)
        bus_workers_batch (self->writer, S_GROUP_MAX, s_group_begin, s_group_end, self);
    return self->writer ? 0 : BUS_EIO;
}

static int s_offload (bus_workers_t *pool, bus_request_t *req, bus_work_fn *fn, void *job,
                      void (*job_free) (void *job));

int
bus_request_offload (bus_request_t *req, bus_work_fn *fn, void *job)
{
    return s_offload (req->svc->workers, req, fn, job, NULL);
}

int
bus_request_offload_write (bus_request_t *req, bus_work_fn *fn, void *job, void (*job_free) (void *job))
{
    return s_offload (req->svc->writer, req, fn, job, job_free);
}

static int
s_offload (bus_workers_t *pool, bus_request_t *req, bus_work_fn *fn, void *job, void (*job_free) (void *job))
{
    bus_service_t *self = req->svc;
    if (!pool)
        return BUS_ESTATE;
    s_offload_t *o = calloc (1, sizeof *o);
    if (o)
        *o = (s_offload_t) { .req = req, .fn = fn, .job = job, .job_free = job_free };
    /* from here the job belongs to a worker thread until reported done */
    int rc = o ? bus_workers_submit (pool, s_offload_run, o) : BUS_ENOMEM;
    if (rc) {
        free (o);
        s_job_free (job, job_free);
        bus_stats_count (self->stats, "requests_refused_busy", 1);
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "busy: %zu requests are waiting for a worker; retry later",
                         bus_workers_pending (pool));
        return rc;
    }
    bus_request_defer (req);
    bus_stats_count (self->stats, "requests_offloaded", 1);
    return 0;
}

/* --- events --------------------------------------------------------------- */

/*  True if value nests deeper than max levels below it. */
static bool
s_too_deep (json_t *value, int max)
{
    if (!json_is_object (value) && !json_is_array (value))
        return false;
    if (max <= 0)
        return true;
    const char *key;
    json_t *item;
    size_t i;
    if (json_is_object (value)) {
        json_object_foreach (value, key, item)
            if (s_too_deep (item, max - 1))
                return true;
    }
    else
        json_array_foreach (value, i, item)
            if (s_too_deep (item, max - 1))
                return true;
    return false;
}

/*  The events of one write transaction: numbered from the store inside
    it (the last stored seq + 1), so that whichever thread commits next,
    the reactor or a worker, continues the sequence, and a transaction
    that fails leaves nothing to hand back. */
typedef struct {
    uint64_t first_seq, next_seq;
    zlistx_t *chunks;             /* zchunk_t: topic \0 envelope, in seq order */
} s_txn_events_t;

static void
s_txn_events_free (void *arg)
{
    s_txn_events_t *events = arg;
    if (events) {
        zlistx_destroy (&events->chunks);
        free (events);
    }
}

static void
s_committed_free (void **item)
{
    s_txn_events_free (*item);
    *item = NULL;
}

/*  txn's events, made on its first event; NULL when out of memory. */
static s_txn_events_t *
s_txn_events (bus_service_t *self, bus_txn_t *txn)
{
    s_txn_events_t *events = bus_txn_data (txn);
    if (events)
        return events;
    events = calloc (1, sizeof *events);
    if (events)
        events->chunks = zlistx_new ();
    if (!events || !events->chunks) {
        s_txn_events_free (events);
        return NULL;
    }
    zlistx_set_destructor (events->chunks, (zlistx_destructor_fn *) zchunk_destroy);
    const void *key, *val;
    size_t key_len, val_len;
    uint64_t last = bus_txn_last (txn, self->outbox_db, &key, &key_len, &val, &val_len) == 0 && key_len == 8
                  ? bus_key_to_u64 (key) : 0;
    events->first_seq = events->next_seq = last + 1;
    bus_txn_set_data (txn, events, s_txn_events_free);
    return events;
}

int
bus_event_append (bus_service_t *self, bus_txn_t *txn, const char *type, json_t *body,
                  const char *traceparent)
{
    if (body && s_too_deep (body, BUS_EVENT_MAX_DEPTH)) {
        bus_error ("event %s refused: body nested deeper than %d", type, BUS_EVENT_MAX_DEPTH);
        json_decref (body);
        bus_txn_fail (txn, BUS_EDEPTH);
        return BUS_EDEPTH;
    }
    proto_msg_t *evt = proto_msg_new (PROTO_KIND_EVT, type);
    if (!evt) {
        json_decref (body);
        bus_txn_fail (txn, BUS_ENOMEM);
        return BUS_ENOMEM;
    }
    evt->body = body ? body : json_object ();
    s_txn_events_t *events = s_txn_events (self, txn);
    if (!events) {
        proto_msg_destroy (&evt);
        bus_txn_fail (txn, BUS_ENOMEM);
        return BUS_ENOMEM;
    }
    evt->seq = events->next_seq;
    snprintf (evt->pub, sizeof evt->pub, "%s", self->principal);
    if (traceparent && *traceparent)
        proto_traceparent_child (evt->traceparent, traceparent);
    else
        proto_traceparent_new (evt->traceparent);
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = proto_msg_encode (evt, &data, &len);
    if (rc == 0) {
        uint8_t key [8];
        bus_u64_to_key (evt->seq, key);
        /* never over an existing event: a reused sequence is a bug */
        rc = bus_txn_put_new (txn, self->outbox_db, key, 8, data, len);
    }
    if (rc)
        bus_txn_fail (txn, rc);
    if (rc == 0) {
        zchunk_t *chunk = zchunk_new (NULL, len + strlen (type) + 1);
        zchunk_append (chunk, type, strlen (type) + 1);   /* topic, NUL, envelope */
        zchunk_append (chunk, data, len);
        zlistx_add_end (events->chunks, chunk);
        events->next_seq++;
    }
    free (data);
    proto_msg_destroy (&evt);
    return rc;
}

/*  Publish one stored event: [topic][envelope]. */
static void
s_publish (bus_service_t *self, zchunk_t *chunk)
{
    const char *topic = (const char *) zchunk_data (chunk);
    size_t topic_len = strlen (topic);
    zmsg_t *msg = zmsg_new ();
    zmsg_addmem (msg, topic, topic_len);
    zmsg_addmem (msg, zchunk_data (chunk) + topic_len + 1, zchunk_size (chunk) - topic_len - 1);
    if (zmsg_send (&msg, self->pub))
        bus_stats_count (self->stats, "events_publish_failed", 1);
    zmsg_destroy (&msg);
    bus_stats_count (self->stats, "events_published", 1);
}

/*  On the reactor: publish the committed events that continue the
    sequence, in order. A commit on a worker thread can land in the queue
    after a later one made here; the later one waits for it. */
static void
s_publish_ready (bus_service_t *self)
{
    while (true) {
        s_txn_events_t *next = NULL;
        pthread_mutex_lock (&self->committed_lock);
        for (s_txn_events_t *e = zlistx_first (self->committed); e; e = zlistx_next (self->committed))
            if (e->first_seq == self->published_seq + 1) {
                next = e;
                zlistx_detach_cur (self->committed);
                break;
            }
        pthread_mutex_unlock (&self->committed_lock);
        if (!next)
            return;
        if (!self->outbox_first_seq)
            self->outbox_first_seq = next->first_seq;
        for (zchunk_t *chunk = zlistx_first (next->chunks); chunk; chunk = zlistx_next (next->chunks))
            s_publish (self, chunk);
        self->published_seq = next->next_seq - 1;
        s_txn_events_free (next);
    }
}

/*  A nested transaction committed into its group: its events join the
    group's, to be published when the group is durable. */
static void
s_events_join (bus_txn_t *group, s_txn_events_t *events)
{
    s_txn_events_t *all = bus_txn_data (group);
    if (!all) {
        bus_txn_set_data (group, events, s_txn_events_free);
        return;
    }
    zchunk_t *chunk;
    while ((chunk = zlistx_detach (events->chunks, NULL)))
        zlistx_add_end (all->chunks, chunk);
    all->next_seq = events->next_seq;
    s_txn_events_free (events);
}

int
bus_service_commit (bus_service_t *self, bus_txn_t **txn_p)
{
    s_txn_events_t *events = *txn_p ? bus_txn_data (*txn_p) : NULL;
    bus_txn_t *group = *txn_p ? bus_txn_parent (*txn_p) : NULL;
    if (events)
        bus_txn_set_data (*txn_p, NULL, NULL);      /* ours now */
    int rc = bus_txn_commit (txn_p);
    if (group) {                                    /* durable with the group */
        if (rc == 0 && events)
            s_events_join (group, events);
        else
            s_txn_events_free (events);
        return rc;
    }
    if (rc)
        bus_error ("commit failed: %s", bus_strerror (rc));
    if (rc == 0 && events && zlistx_size (events->chunks)) {
        pthread_mutex_lock (&self->committed_lock);
        zlistx_add_end (self->committed, events);
        pthread_mutex_unlock (&self->committed_lock);
        events = NULL;
    }
    s_txn_events_free (events);
    if (pthread_equal (pthread_self (), self->reactor))
        s_publish_ready (self);
    return rc;
}

void
bus_service_abort (bus_service_t *self, bus_txn_t **txn_p)
{
    bus_txn_abort (txn_p);          /* its events go with it */
}

int
bus_service_emit (bus_service_t *self, const char *type, json_t *body, const char *traceparent)
{
    bus_txn_t *txn = bus_txn_begin (self->store, true);
    if (!txn) {
        json_decref (body);
        return BUS_EIO;
    }
    int rc = bus_event_append (self, txn, type, body, traceparent);
    if (rc) {
        bus_service_abort (self, &txn);
        return rc;
    }
    return bus_service_commit (self, &txn);
}

/* --- timers --------------------------------------------------------------- */

static void s_pub_bind_again (bus_service_t *self);

static int
s_on_rebind (zloop_t *loop, int timer_id, void *arg)
{
    bus_service_t *self = arg;
    if (self->pub_unbound)
        s_pub_bind_again (self);
    return 0;
}

/*  Bind the unbound PUB again. libzmq closes the old listener
    asynchronously, so a port still in use is retried every 10 ms on a
    timer (the reactor never waits) up to S_REBIND_TRIES times; after that
    (the port taken meanwhile) once per allow-list scan. */
static void
s_pub_bind_again (bus_service_t *self)
{
    const char *pub = bus_config_str (self->config, self->section, "pub");
    if (zsock_bind (self->pub, "%s", pub) >= 0) {
        self->pub_unbound = false;
        self->rebind_tries = 0;
        free (self->pub_endpoint);
        self->pub_endpoint = zsock_last_endpoint (self->pub);
        bus_stats_count (self->stats, "subscriptions_closed", 1);
        bus_info ("a key left the allow-list: subscriptions to %s closed", pub);
        return;
    }
    if (zmq_errno () == EADDRINUSE && ++self->rebind_tries < S_REBIND_TRIES) {
        zloop_timer (self->loop, 10, 1, s_on_rebind, self);
        return;
    }
    if (self->rebind_tries <= S_REBIND_TRIES)
        bus_error ("cannot bind %s again: %s (retried on each allow-list scan)", pub,
                   zmq_strerror (zmq_errno ()));
    self->rebind_tries = S_REBIND_TRIES + 1;
}

/*  A key left the allow-list: zauth checks keys at the handshake only, so
    close every subscription by binding the PUB afresh. Subscribers still
    allowed reconnect within libzmq's reconnect interval (and find what
    they missed with events.replay); the others are refused by zauth. */
static void
s_pub_rebind (bus_service_t *self)
{
    if (self->pub_endpoint)
        zsock_unbind (self->pub, "%s", self->pub_endpoint);
    self->pub_unbound = true;
    self->rebind_tries = 0;
    s_pub_bind_again (self);
}

static int
s_on_tick (zloop_t *loop, int timer_id, void *arg)
{
    bus_service_t *self = arg;
    bus_allow_refresh (self->allow);
    if (bus_allow_revoked (self->allow) && !self->pub_unbound)
        s_pub_rebind (self);
    else
    if (self->pub_unbound && self->rebind_tries > S_REBIND_TRIES)
        s_pub_bind_again (self);        /* the timer's tries ran out */
    s_dedupe_trim (self);
    return 0;
}

/*  Trim the outbox from the front, at most S_TRIM_BATCH events a call.
    Trimmed: what outbox_acked_by has stored (it replayed from a later
    seq) beyond the newest outbox_keep events; and, stored or not, beyond
    the newest outbox_max, so that the store never fills with events (an
    error when acked_by has not stored them: they now exist nowhere; a
    replay says so with first_seq). The newest event always stays: it
    carries the sequence across restarts. */
/*  Delete events [first, below) from the outbox, in a transaction of
    its own (nested in the writer's group when it runs there). */
static int
s_trim_delete (bus_service_t *self, uint64_t first, uint64_t below)
{
    bus_txn_t *txn = bus_txn_begin (self->store, true);
    int rc = txn ? 0 : BUS_EIO;
    for (uint64_t seq = first; rc == 0 && seq < below; seq++) {
        uint8_t key [8];
        bus_u64_to_key (seq, key);
        rc = bus_txn_del (txn, self->outbox_db, key, 8);
        if (rc == BUS_ENOTFOUND)
            rc = 0;
    }
    if (rc)
        bus_txn_abort (&txn);
    else
        rc = bus_txn_commit (&txn);
    return rc;
}

/*  On the reactor: a trim of [first, below) done (rc 0) or not. */
static void
s_trim_applied (bus_service_t *self, uint64_t first, uint64_t below, uint64_t acked_below, int rc)
{
    if (rc) {
        bus_error ("outbox trim failed: %s", bus_strerror (rc));
        return;
    }
    self->outbox_first_seq = below;
    bus_stats_count (self->stats, "events_trimmed", below - first);
    if (below > acked_below && *self->acked_by) {
        bus_stats_count (self->stats, "events_trimmed_unacknowledged", below - acked_below);
        bus_error ("outbox over outbox_max (%llu events): events %llu..%llu trimmed before %s stored them",
                   (unsigned long long) self->outbox_max, (unsigned long long) acked_below,
                   (unsigned long long) below - 1, self->acked_by);
    }
}

/*  A trim handed to the writer (its range decided on the reactor). */
typedef struct {
    bus_service_t *svc;
    uint64_t first, below, acked_below;
    int rc;
} s_trim_t;

static void
s_trim_work (void *state, json_t *body, void *job, bus_outcome_t *out)
{
    s_trim_t *trim = job;
    trim->rc = s_trim_delete (trim->svc, trim->first, trim->below);
}

/*  On the reactor: the writer's trim is over (not ran: the service
    stopped first; not stored: it ran in a group that could not be
    stored). */
static void
s_trim_done (bus_service_t *self, void *job, bool ran, bool stored)
{
    s_trim_t *trim = job;
    self->trim_pending = false;
    if (ran)
        s_trim_applied (self, trim->first, trim->below, trim->acked_below, stored ? trim->rc : BUS_EIO);
}

/*  Trim the outbox from the front, at most S_TRIM_BATCH events a call.
    Trimmed: what outbox_acked_by has stored (it replayed from a later
    seq) beyond the newest outbox_keep events; and, stored or not, beyond
    the newest outbox_max, so that the store never fills with events (an
    error when acked_by has not stored them: they now exist nowhere; a
    replay says so with first_seq). The newest event always stays: it
    carries the sequence across restarts. With a writer thread, the
    deletion runs there, so that the reactor never waits for the write
    lock a writer group holds. */
static void
s_outbox_trim (bus_service_t *self)
{
    uint64_t first = self->outbox_first_seq, last = self->published_seq;
    if (!first || last < first || self->trim_pending)
        return;
    uint64_t stored = last - first + 1;
    uint64_t below = first;                     /* trim [first, below) */
    if (stored > self->outbox_keep) {
        uint64_t keep_from = last - self->outbox_keep + 1;
        below = MAX (first, MIN (self->outbox_acked, keep_from));
    }
    uint64_t acked_below = below;
    if (stored > self->outbox_max)
        below = MAX (below, last - self->outbox_max + 1);
    below = MIN (below, first + S_TRIM_BATCH);
    if (below <= first)
        return;
    if (self->writer) {
        s_trim_t *trim = calloc (1, sizeof *trim);
        s_offload_t *o = calloc (1, sizeof *o);
        if (trim && o) {
            *trim = (s_trim_t) { self, first, below, acked_below, 0 };
            *o = (s_offload_t) { .fn = s_trim_work, .job = trim };
            if (bus_workers_submit (self->writer, s_offload_run, o) == 0) {
                self->trim_pending = true;
                return;
            }
        }
        free (trim);
        free (o);
        return;                                 /* the writer is busy: next time */
    }
    s_trim_applied (self, first, below, acked_below, s_trim_delete (self, first, below));
}

static int
s_on_trim (zloop_t *loop, int timer_id, void *arg)
{
    s_outbox_trim ((bus_service_t *) arg);
    return 0;
}

static int
s_on_watchdog (zloop_t *loop, int timer_id, void *arg)
{
    bus_notify ("WATCHDOG=1");
    return 0;
}

static int
s_on_stop_check (zloop_t *loop, int timer_id, void *arg)
{
    bus_service_t *self = arg;
    return self->stopping ? -1 : 0;
}

/*  Once a second: the rate-limited log lines' pending counts, and how many
    lines were left out, in stats. */
static int
s_on_log_flush (zloop_t *loop, int timer_id, void *arg)
{
    bus_service_t *self = arg;
    bus_log_limit_flush (self->refusals);
    bus_handshake_flush (self->handshakes);
    bus_auth_flush ();
    uint64_t suppressed = bus_log_limit_suppressed (self->refusals);
    if (suppressed > self->refusals_counted)
        bus_stats_count (self->stats, "log_lines_suppressed", suppressed - self->refusals_counted);
    self->refusals_counted = suppressed;
    return 0;
}

/* --- life cycle ----------------------------------------------------------- */

bus_service_t *
bus_service_new (bus_config_t *config, const char *section, const char *version,
                 const char *const *db_names, char *err, size_t err_len)
{
    bus_service_t *self = calloc (1, sizeof *self);
    const char *name = bus_service_name (section);
    char *data_dir = NULL;
    const char **dbs = NULL;
    if (!self || !name) {
        snprintf (err, err_len, "unknown service '%s'", section);
        goto fail;
    }
    zsys_init ();
    self->config = config;
    self->started_us = proto_now_us ();
    self->pid = getpid ();
    snprintf (self->section, sizeof self->section, "%s", section);
    snprintf (self->principal, sizeof self->principal, "svc:%s", name);
    snprintf (self->version, sizeof self->version, "%s", version);
    self->max_frame = (size_t) bus_config_int (config, "sanctum", "max_frame");
    self->handlers = zhashx_new ();
    zhashx_set_destructor (self->handlers, s_handler_free);
    self->dedupe = zhashx_new ();
    zhashx_set_destructor (self->dedupe, s_dedupe_free);
    self->dedupe_order = zlistx_new ();
    self->unknown_logged = zhashx_new ();
    zlistx_set_destructor (self->dedupe_order, (zlistx_destructor_fn *) zstr_free);
    pthread_mutex_init (&self->committed_lock, NULL);
    self->committed = zlistx_new ();
    zlistx_set_destructor (self->committed, (zlistx_destructor_fn *) s_committed_free);
    self->reactor = pthread_self ();
    self->stats = bus_stats_new ();
    self->refusals = bus_log_limit_new (S_REFUSAL_LINES, S_REFUSAL_WINDOW_MS, S_REFUSAL_KEYS);

    /* the store, with the outbox */
    size_t n = 0;
    while (db_names && db_names [n])
        n++;
    dbs = calloc (n + 2, sizeof *dbs);
    for (size_t i = 0; i < n; i++)
        dbs [i] = db_names [i];
    dbs [n] = "outbox";
    data_dir = bus_config_data_dir (config, name);
    int rc = data_dir ? bus_store_open (&self->store, data_dir,
                                        (size_t) bus_config_int (config, "sanctum", "map_size_mb") << 20,
                                        dbs) : BUS_ENOMEM;
    if (rc) {
        snprintf (err, err_len, "cannot open store %s: %s", data_dir, bus_strerror (rc));
        goto fail;
    }
    self->outbox_db = bus_store_db (self->store, "outbox");
    bus_txn_t *txn = bus_txn_begin (self->store, false);
    const void *key, *val;
    size_t key_len, val_len;
    if (txn && bus_txn_last (txn, self->outbox_db, &key, &key_len, &val, &val_len) == 0 && key_len == 8)
        self->published_seq = bus_key_to_u64 (key);
    if (txn && bus_txn_first (txn, self->outbox_db, &key, &key_len, &val, &val_len) == 0 && key_len == 8)
        self->outbox_first_seq = bus_key_to_u64 (key);
    bus_txn_abort (&txn);
    self->outbox_keep = (uint64_t) bus_config_int (config, "sanctum", "outbox_keep");
    self->outbox_max = (uint64_t) bus_config_int (config, "sanctum", "outbox_max");
    snprintf (self->acked_by, sizeof self->acked_by, "%s", bus_config_str (config, "sanctum", "outbox_acked_by"));

    /* keys, authentication, sockets */
    const char *keys_dir = bus_config_str (config, "sanctum", "keys_dir");
    const char *allow_dir = bus_config_str (config, "sanctum", "allow_dir");
    self->cert = bus_keys_load (keys_dir, name, false);
    if (!self->cert) {
        snprintf (err, err_len, "no CURVE certificate %s/%s.key_secret (run sanctumctl keygen)", keys_dir, name);
        goto fail;
    }
    self->allow = bus_allow_new (allow_dir);
    self->auth = bus_auth_start (allow_dir, false);
    self->router = zsock_new (ZMQ_ROUTER);
    self->pub = zsock_new (ZMQ_PUB);
    if (!self->allow || !self->auth || !self->router || !self->pub) {
        snprintf (err, err_len, "cannot create sockets or the authenticator");
        goto fail;
    }
    /* Frames over max_frame up to the hard cap (2 x max_frame + 64 KiB) get
       a too_large reply; past libzmq's limit it drops the connection. That
       limit counts the frame as CURVE carries it, 33 bytes more (command
       name, nonce, MAC, flags): set 1 KiB above the cap, every frame up to
       cap + 991 bytes is answered (PROTOCOL.md 8). */
    zsock_set_maxmsgsize (self->router, (int64_t) self->max_frame * 2 + 65536 + 1024);
    zsock_set_rcvhwm (self->router, 100000);
    zsock_set_rcvtimeo (self->router, 0);     /* see s_on_request */
    zsock_set_sndhwm (self->router, 100000);
    zsock_set_sndhwm (self->pub, 100000);
    zsock_set_linger (self->router, 0);
    zsock_set_linger (self->pub, 200);
    bus_keys_apply_server (self->router, self->cert);
    bus_keys_apply_server (self->pub, self->cert);
    const char *rpc = bus_config_str (config, section, "rpc");
    const char *pub = bus_config_str (config, section, "pub");
    if (zsock_bind (self->router, "%s", rpc) < 0) {
        snprintf (err, err_len, "cannot bind %s: %s", rpc, zmq_strerror (zmq_errno ()));
        goto fail;
    }
    if (zsock_bind (self->pub, "%s", pub) < 0) {
        snprintf (err, err_len, "cannot bind %s: %s", pub, zmq_strerror (zmq_errno ()));
        goto fail;
    }
    self->pub_endpoint = zsock_last_endpoint (self->pub);
    self->loop = zloop_new ();
    zloop_reader (self->loop, self->router, s_on_request, self);
    /* refused and failed handshakes: counted, and logged (rate-limited) */
    self->handshakes = bus_handshake_new (self->loop, self->stats);
    if (!self->refusals || !self->handshakes || bus_handshake_watch (self->handshakes, self->router, "rpc")
        || bus_handshake_watch (self->handshakes, self->pub, "pub")) {
        snprintf (err, err_len, "cannot watch the handshakes");
        goto fail;
    }
    zloop_timer (self->loop, 1000, 0, s_on_log_flush, self);
    zloop_timer (self->loop, (size_t) bus_config_int (config, "sanctum", "allow_refresh_ms"), 0,
                 s_on_tick, self);
    zloop_timer (self->loop, 100, 0, s_on_stop_check, self);
    zloop_timer (self->loop, S_TRIM_MS, 0, s_on_trim, self);
    uint64_t wd = bus_notify_watchdog_usec ();
    long wd_ms = bus_config_int (config, "sanctum", "watchdog_ms");
    if (wd_ms == 0 && wd)
        wd_ms = (long) (wd / 2000);
    if (wd_ms > 0)
        zloop_timer (self->loop, (size_t) wd_ms, 0, s_on_watchdog, self);

    bus_service_handle (self, "health", s_handle_health, NULL);
    bus_service_handle (self, "stats", s_handle_stats, NULL);
    bus_service_handle (self, "events.replay", s_handle_replay, NULL);
    bus_service_handle (self, "echo", s_handle_echo, NULL);
    free (data_dir);
    free (dbs);
    return self;
fail:
    free (data_dir);
    free (dbs);
    bus_service_destroy (&self);
    return NULL;
}

void
bus_service_destroy (bus_service_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    bus_service_t *self = *self_p;
    bus_workers_destroy (&self->workers);     /* answers use the router */
    bus_workers_destroy (&self->writer);
    bus_handshake_destroy (&self->handshakes);      /* before its loop and the sockets it watches */
    zloop_destroy (&self->loop);
    zsock_destroy (&self->router);
    zsock_destroy (&self->pub);
    free (self->pub_endpoint);
    zactor_destroy (&self->auth);
    bus_allow_destroy (&self->allow);
    zcert_destroy (&self->cert);
    zhashx_destroy (&self->handlers);
    zhashx_destroy (&self->dedupe);
    zhashx_destroy (&self->unknown_logged);
    zlistx_destroy (&self->dedupe_order);
    if (self->committed) {
        zlistx_destroy (&self->committed);
        pthread_mutex_destroy (&self->committed_lock);
    }
    bus_stats_destroy (&self->stats);
    if (self->refusals)
        bus_log_limit_flush (self->refusals);
    bus_log_limit_destroy (&self->refusals);
    bus_store_destroy (&self->store);
    free (self);
    *self_p = NULL;
}

int
bus_service_handle (bus_service_t *self, const char *type, bus_handler_fn *fn, void *arg)
{
    const proto_type_t *spec = proto_type_find (type);
    if (!spec || spec->kind != PROTO_KIND_REQ
        || (!streq (spec->owner, "ANY") && !streq (spec->owner, self->section)))
        return BUS_EINVAL;
    s_handler_t *h = calloc (1, sizeof *h);
    if (!h)
        return BUS_ENOMEM;
    h->fn = fn;
    h->arg = arg;
    zhashx_update (self->handlers, type, h);
    return 0;
}

int
bus_service_run (bus_service_t *self)
{
    self->reactor = pthread_self ();        /* publishes; commits elsewhere queue */
    bus_service_emit (self, "service.started", json_pack ("{s:s}", "version", self->version), NULL);
    bus_info ("%s %s serving on %s, events on %s", self->principal, self->version,
              bus_config_str (self->config, self->section, "rpc"),
              bus_config_str (self->config, self->section, "pub"));
    char status [128];
    snprintf (status, sizeof status, "READY=1\nSTATUS=serving %s", bus_config_str (self->config, self->section, "rpc"));
    bus_notify (status);
    zloop_start (self->loop);
    self->stopping = true;
    bus_workers_destroy (&self->workers);     /* their work is answered */
    bus_workers_destroy (&self->writer);
    bus_notify ("STOPPING=1");
    bus_service_emit (self, "service.stopping", json_object (), NULL);
    bus_info ("%s stopping", self->principal);
    return 0;
}

void
bus_service_stop (bus_service_t *self)
{
    self->stopping = true;
}

zloop_t *bus_service_loop (bus_service_t *self) { return self->loop; }
bus_store_t *bus_service_store (bus_service_t *self) { return self->store; }
bus_stats_t *bus_service_stats (bus_service_t *self) { return self->stats; }
bus_config_t *bus_service_config (bus_service_t *self) { return self->config; }
zcert_t *bus_service_cert (bus_service_t *self) { return self->cert; }
const char *bus_service_principal (bus_service_t *self) { return self->principal; }
const char *bus_service_section_of (bus_service_t *self) { return self->section; }
