/*  bus_service.c — reactor, request dispatch, dedupe, work off the
    reactor, built-ins. The outbox is in bus_outbox.c. */
#include "bus_service_internal.h"
#include "bus_error.h"
#include "bus_handshake.h"
#include "bus_keys.h"
#include "bus_log.h"
#include "bus_notify.h"

#include <stdarg.h>

#define S_SNDHWM_MIN      256       /* replies queued per connection, at least (see bus_service_new) */
#define S_HOLD_MS         10000     /* replies held for a connection that takes none, at most (bus_backlog.h) */
#define S_EXPIRE_MS       1000      /* how often recorded outcomes past their time are deleted */
#define S_EXPIRE_BATCH    4096      /* recorded outcomes deleted per transaction, at most */
#define S_BATCH_MAX       64        /* requests handled per reactor wake-up */
#define S_UNKNOWN_LOGGED  256       /* distinct (sender, type, field) logged */
#define S_WORK_QUEUE_MAX  256       /* requests waiting for a worker thread, at most */
#define S_GROUP_MAX       64        /* writes committed together by the writer, at most */
#define S_WRITER_NICE     10        /* the writer's nice value, below the reactor (as bus_workers_new's) */
#define S_REFUSAL_LINES   10        /* refusal lines per (peer, reason) ... */
#define S_REFUSAL_WINDOW_MS 10000   /* ... per window; then counted */
#define S_REFUSAL_KEYS    1024      /* (peer, reason) pairs tracked */

typedef struct {
    bus_handler_fn *fn;
    void *arg;
} s_handler_t;


static void
s_handler_free (void **item)
{
    free (*item);
    *item = NULL;
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
                                  "first_seq", (json_int_t) bus_outbox_first_seq (self)));
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
    if (counters) {
        json_object_set_new (counters, "dedupe_entries", json_integer ((json_int_t) bus_dedupe_size (self->dedupe, NULL)));
        json_object_set_new (counters, "dedupe_bytes", json_integer ((json_int_t) bus_dedupe_bytes (self->dedupe, NULL)));
        json_object_set_new (counters, "dedupe_evicted", json_integer ((json_int_t) bus_dedupe_evicted (self->dedupe)));
        json_object_set_new (counters, "outcomes_not_recorded",
                             json_integer ((json_int_t) atomic_load (&self->outcomes_unrecorded)));
    }
    json_object_set_new (body, "service", json_string (bus_service_name (self->section)));
    json_object_set_new (body, "uptime_s",
                         json_integer ((json_int_t) ((proto_now_us () - self->started_us) / 1000000)));
    bus_reply_ok (req, body);
}


/*  echo {data?} -> {data, from}: a diagnostic round trip that also emits an
    echo.seen event through the outbox, so a client can see a request cause
    an event. */
static void
s_handle_echo (bus_service_t *self, bus_request_t *req, void *arg)
{
    json_t *data = json_object_get (bus_request_body (req), "data");
    bus_txn_t *txn = bus_txn_begin (self->store, true);
    int rc = txn ? bus_event_append (self, txn, "echo.seen",
                                     json_pack ("{s:s, s:s}", "request", req->msg->id, "from", req->principal),
                                     req->msg->traceparent)
                 : BUS_EIO;
    if (rc) {
        bus_service_abort (self, &txn);
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "cannot record the event: %s", bus_strerror (rc));
        return;
    }
    /* the event and the answer commit together: a retry gets this answer */
    bus_outcome_t out = { .body = json_pack ("{s:O?, s:s}", "data", data, "from", req->principal) };
    bus_request_commit (req, &txn, &out);
}

/* --- replies -------------------------------------------------------------- */

/*  Send an encoded reply to route, or hold it while the connection's
    queue is full (bus_backlog.h). A send may take in the ROUTER's
    commands, a request's arrival among them: outside s_on_request (a
    deferred reply), the ROUTER is read again on the next turn of the loop
    (bus_reader.h). The frames go by zmq_send: a routing id of up to 33
    bytes is copied into the message itself, and the reply into one
    allocation of libzmq's (a zmsg of zframes cost three more). */
static void
s_send_reply (bus_service_t *self, const bus_route_t *route, const uint8_t *data, size_t len)
{
    bus_backlog_send (self->backlog, route->data, route->len, data, len);
    bus_reader_kick (self->router_reader);
}

/*  The backlog sent held replies from its timer. */
static void
s_backlog_sent (void *arg)
{
    bus_service_t *self = arg;
    bus_reader_kick (self->router_reader);
}

/*  True if requests wait on the ROUTER (which may take in its commands:
    read again on the next turn, as after a send). */
static bool
s_requests_wait (bus_service_t *self)
{
    bool wait = (zsock_events (self->router) & ZMQ_POLLIN) != 0;
    bus_reader_kick (self->router_reader);
    return wait;
}

/*  Answer a frame we could not turn into a request. */
static void
s_reject (bus_service_t *self, const bus_route_t *route, const char *corr, const char *code,
          const char *message)
{
    proto_msg_t *rep = proto_reply_error_id (corr, code, message);
    uint8_t *data = NULL;
    size_t len = 0;
    if (rep && proto_msg_encode (rep, &data, &len) == 0)
        s_send_reply (self, route, data, len);
    free (data);
    proto_msg_destroy (&rep);
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
    proto_msg_destroy (&req->msg);
    free (req->reply);
    free (req);
    *req_p = NULL;
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
    if (req->local_done) {          /* bus_service_local: handed over, not sent */
        req->local_done (rep, req->local_arg);
        bus_stats_latency (self->stats, req->msg->spec ? req->msg->spec->type : "(unknown)",
                           proto_now_us () - req->start_us);
        bus_stats_count (self->stats, rep && rep->ok ? "requests_ok" : "requests_error", 1);
        proto_msg_destroy (rep_p);
        if (!req->in_handler)
            s_request_free (&req);
        return;
    }
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
    s_send_reply (self, &req->route, data, len);
    /* remembered for retries once the reply has left: by s_on_message when
       it is still running, else in the entry it left for a deferred reply */
    if (req->remember && req->in_handler) {
        req->reply = data;
        req->reply_len = len;
        data = NULL;
    }
    else
    if (req->remember)
        bus_dedupe_reply (self->dedupe, req->principal, req->msg->id, data, len, zclock_mono ());
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

/*  Log the refusal and answer with error {code, message, extra...}.
    not_found is an answer ("there is none"), not a refusal: a client
    asking whether something exists yet (`sanctumctl seed` on a fresh
    suite) is no event for an operator, so it is logged at debug. */
static void
s_reply_error_v (bus_request_t *req, const char *code, json_t *extra, const char *fmt, va_list args)
{
    char message [512];
    vsnprintf (message, sizeof message, fmt, args);
    bool answer = streq (code, PROTO_ERR_NOT_FOUND);
    bus_log_limited (req->svc->refusals, req->principal, code, answer ? BUS_LOG_DEBUG : BUS_LOG_INFO,
                     json_pack ("{s:s, s:s, s:s, s:s}", "type", req->msg->type, "request", req->msg->id,
                                "peer", req->principal, "code", code),
                     "%s: %s", answer ? "not found" : "request refused", message);
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

/*  After the handler: remember the id once the reply has left (this
    thread runs nothing in between, so no retry can slip past): a retry
    gets the same reply, a retry of a deferred request waits for it. Frees
    the request when it was answered. */
static void
s_remember (bus_service_t *self, bus_request_t *req)
{
    req->in_handler = false;
    if (req->remember
        && bus_dedupe_put (self->dedupe, req->principal, req->msg->id, req->hash, req->reply,
                           req->reply_len, zclock_mono ()))
        bus_stats_count (self->stats, "requests_not_remembered", 1);
    if (req->answered)
        s_request_free (&req);
}

/*  The reply a recorded outcome ({"body"} or {"error"}) gives. */
static proto_msg_t *
s_outcome_reply (bus_request_t *req, json_t *outcome)
{
    json_t *body = json_object_get (outcome, "body");
    if (body)
        return proto_reply_ok (req->msg, json_incref (body));
    json_t *error = json_object_get (outcome, "error");
    const char *code = json_string_value (json_object_get (error, "code"));
    const char *message = json_string_value (json_object_get (error, "message"));
    proto_msg_t *rep = proto_reply_error (req->msg, code ? code : PROTO_ERR_INTERNAL, message ? message : "");
    if (rep && json_is_object (error))
        json_object_update_missing (rep->error, error);
    return rep;
}

/*  The reactor's read transaction on the recorded outcomes, on the
    latest state (reset it after use), or NULL (logged). */
static bus_txn_t *
s_reader (bus_service_t *self)
{
    if (self->dedupe_reader && bus_txn_renew (self->dedupe_reader))
        bus_txn_abort (&self->dedupe_reader);      /* not reset (new), or failed: begin afresh */
    if (!self->dedupe_reader)
        self->dedupe_reader = bus_txn_begin (self->store, false);
    return self->dedupe_reader;
}

/*  The durable record of req. */
static bus_dedupe_found_t
s_recall (bus_service_t *self, bus_request_t *req, json_t **outcome)
{
    if (!s_reader (self))
        return BUS_DEDUPE_NONE;     /* logged; the request runs */
    bus_dedupe_found_t found = bus_dedupe_recall (self->dedupe_reader, self->dedupe_store.db, req->principal,
                                                  req->msg->id, req->hash, outcome);
    bus_txn_reset (self->dedupe_reader);
    return found;
}

/*  A request with effects whose id was seen: answered (or left waiting
    for the first copy's reply) and freed; true. False: a new request. */
static bool
s_seen (bus_service_t *self, bus_request_t *req)
{
    bus_dedupe_hash (req->hash, req->msg->type, req->msg->body);
    const uint8_t *data = NULL;
    size_t len = 0;
    json_t *outcome = NULL;
    bus_dedupe_found_t found = bus_dedupe_lookup (self->dedupe, req->principal, req->msg->id, req->hash,
                                                  &data, &len);
    if (found == BUS_DEDUPE_NONE) {
        found = s_recall (self, req, &outcome);
        if (found == BUS_DEDUPE_REPLY)
            bus_stats_count (self->stats, "requests_duplicate_recorded", 1);
    }
    if (found == BUS_DEDUPE_NONE)
        return false;
    if (found == BUS_DEDUPE_CONFLICT) {
        /* not remembered: the first request's answer stays */
        req->remember = false;
        bus_stats_count (self->stats, "requests_id_reused", 1);
        bus_reply_error (req, PROTO_ERR_CONFLICT, "request id %s was already used by %s for a different "
                         "request (another type or body): a new request needs a new id", req->msg->id,
                         req->principal);
        return true;
    }
    bus_stats_count (self->stats, "requests_duplicate", 1);
    if (outcome && self->outcome_open && !json_object_get (outcome, "large")) {
        json_t *opened = self->outcome_open (req, outcome, self->outcome_seal_arg);
        json_decref (outcome);
        outcome = opened ? opened : json_pack ("{s:{s:s, s:s}}", "error", "code", PROTO_ERR_INTERNAL, "message",
                                               "the recorded reply could not be opened");
    }
    if (outcome) {
        /* answered as the first time, and remembered in memory again */
        req->in_handler = true;
        json_t *large = json_object_get (outcome, "large");
        if (large)
            bus_reply_error (req, PROTO_ERR_CONFLICT, "request id %s was done already; its reply (%lld bytes) "
                             "was too large to keep for retries: read the state to see its effect",
                             req->msg->id, (long long) json_integer_value (large));
        else {
            proto_msg_t *rep = s_outcome_reply (req, outcome);
            s_answer (req, &rep);
        }
        json_decref (outcome);
        s_remember (self, req);
        return true;
    }
    if (found == BUS_DEDUPE_REPLY)
        s_send_reply (self, &req->route, data, len);
    req->answered = true;
    s_request_free (&req);
    return true;
}

static void s_dispatch (bus_service_t *self, bus_request_t *req);

/*  One request from the ROUTER: its routing frames, and its last frame
    (closed here). */
static void
s_on_message (bus_service_t *self, const bus_route_t *route, zmq_msg_t *frame)
{
    bus_stats_count (self->stats, "requests_received", 1);
    int64_t start = proto_now_us ();
    /* who is it? — from the CURVE key, never from the message */
    const char *key = zmq_msg_gets (frame, "User-Id");
    const char *principal = bus_allow_principal (self->allow, key);
    /* an unknown key as text, for the refusal's lines: copied out, as the
       frame's metadata goes with the frame (a CURVE key is 40 characters) */
    char user_id [64] = "(none)";
    if (!principal && key && *key)
        snprintf (user_id, sizeof user_id, "%s", key);
    char id [PROTO_ID_LEN + 1] = "";
    char err [256];
    /* over the cap: not decoded, only its id looked for, so the refusal
       can name the request */
    size_t size = zmq_msg_size (frame);
    proto_msg_t *msg = NULL;
    int rc = 0;
    if (size > self->max_frame) {
        proto_msg_peek_id (zmq_msg_data (frame), size, id);
        zmq_msg_close (frame);
        bus_log_limited (self->refusals, principal ? principal : user_id, PROTO_ERR_TOO_LARGE, BUS_LOG_WARN,
                         json_pack ("{s:s, s:s}", "peer", principal ? principal : "(unknown key)",
                                    "code", PROTO_ERR_TOO_LARGE),
                         "frame of %zu bytes from %s over the cap", size, principal ? principal : "an unknown key");
        s_reject (self, route, id, principal ? PROTO_ERR_TOO_LARGE : PROTO_ERR_FORBIDDEN,
                  principal ? "frame exceeds the size cap" : "unknown client key");
        return;
    }
    rc = proto_msg_decode (&msg, zmq_msg_data (frame), size, SIZE_MAX, id, err, sizeof err);
    zmq_msg_close (frame);
    if (!principal) {
        bus_log_limited (self->refusals, user_id, "unknown_key", BUS_LOG_WARN,
                         json_pack ("{s:s, s:s}", "peer_key", user_id, "code", PROTO_ERR_FORBIDDEN),
                         "message from unknown key %s refused", user_id);
        proto_msg_destroy (&msg);
        s_reject (self, route, id, PROTO_ERR_FORBIDDEN, "unknown client key");
        return;
    }
    if (rc) {
        bus_log_limited (self->refusals, principal, PROTO_ERR_MALFORMED, BUS_LOG_WARN,
                         json_pack ("{s:s, s:s, s:s}", "peer", principal, "request", id,
                                    "code", PROTO_ERR_MALFORMED),
                         "malformed request: %s", err);
        s_reject (self, route, id, rc == PROTO_ESTATE ? PROTO_ERR_VERSION : PROTO_ERR_MALFORMED, err);
        return;
    }
    bus_request_t *req = calloc (1, sizeof *req);
    if (!req) {
        proto_msg_destroy (&msg);
        return;
    }
    req->svc = self;
    memcpy (&req->route.data, route->data, route->len);
    req->route.len = route->len;
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

    /* a retried request id: answer from memory or from the durable
       record, or wait for the reply; a request without effects (a safe
       type: a read) is not remembered, its retry simply runs again */
    req->remember = !msg->spec || !msg->spec->safe;
    if (req->remember && s_seen (self, req)) {
        bus_log_set_trace (NULL);
        return;
    }
    s_dispatch (self, req);
    bus_log_set_trace (NULL);
}

/*  Admit req and run its handler; then remember it (s_remember), which
    frees it when it was answered. */
static void
s_dispatch (bus_service_t *self, bus_request_t *req)
{
    proto_msg_t *msg = req->msg;
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
    s_remember (self, req);
}

int
bus_service_local (bus_service_t *self, const char *principal, const char *type, json_t *body,
                   bus_local_done_fn *done, void *arg)
{
    return bus_service_local_piped (self, principal, type, body, NULL, done, arg);
}

bus_pipe_t *
bus_request_pipe (bus_request_t *req)
{
    return req->pipe;
}

int
bus_service_local_piped (bus_service_t *self, const char *principal, const char *type, json_t *body,
                         bus_pipe_t *pipe, bus_local_done_fn *done, void *arg)
{
    size_t plen = principal ? strlen (principal) : 0;
    proto_msg_t *msg = plen && plen <= PROTO_PRINCIPAL_MAX && strlen (type) <= PROTO_TYPE_MAX
                     ? proto_msg_new (PROTO_KIND_REQ, type) : NULL;
    bus_request_t *req = msg ? calloc (1, sizeof *req) : NULL;
    if (!req) {
        json_decref (body);
        proto_msg_destroy (&msg);
        return msg || !plen ? BUS_ENOMEM : BUS_EINVAL;
    }
    bus_stats_count (self->stats, "requests_local", 1);
    msg->spec = proto_type_find (type);
    msg->body = body ? body : json_object ();
    msg->ts = proto_now_us ();
    proto_ulid (msg->id);
    proto_traceparent_new (msg->traceparent);
    memcpy (msg->from, principal, plen + 1);
    req->svc = self;
    req->msg = msg;
    req->start_us = proto_now_us ();
    memcpy (req->principal, principal, plen + 1);
    req->local_done = done;
    req->local_arg = arg;
    req->pipe = pipe;
    /* no id of the client's to retry with: nothing to remember (an
       effect stands on its own, as a bus request's not remembered) */
    req->remember = false;
    s_log_trace (msg);
    s_dispatch (self, req);
    bus_log_set_trace (NULL);
    return 0;
}

/*  Receive one request from the ROUTER: its routing frames into route,
    its last frame into frame (the caller closes it). 1: received; -1:
    one dropped (no routing frame, or more routing than a reply could
    carry: counted); 0: nothing waits (the receive timeout is 0), or
    interrupted. */
static int
s_recv_request (bus_service_t *self, bus_route_t *route, zmq_msg_t *frame)
{
    void *router = zsock_resolve (self->router);
    route->len = 0;
    bool fits = true;
    for (bool first = true; ; first = false) {
        zmq_msg_init (frame);
        int rc = zmq_msg_recv (frame, router, 0);
        /* a message's parts arrive together: a later part's receive can
           fail only when a signal interrupted it, and is asked again (else
           the rest would be read as a message of its own) */
        for (int tries = 0; rc < 0 && !first && zmq_errno () == EINTR && tries < 100; tries++)
            rc = zmq_msg_recv (frame, router, 0);
        if (rc < 0) {
            zmq_msg_close (frame);
            return 0;
        }
        if (!zmq_msg_more (frame))
            break;
        size_t size = zmq_msg_size (frame);
        if (size > UINT8_MAX || route->len + 1 + size > sizeof route->data)
            fits = false;
        else {
            route->data [route->len] = (uint8_t) size;
            memcpy (route->data + route->len + 1, zmq_msg_data (frame), size);
            route->len += 1 + size;
        }
        zmq_msg_close (frame);
    }
    if (fits && route->len)
        return 1;
    zmq_msg_close (frame);
    bus_stats_count (self->stats, fits ? "requests_dropped_no_routing" : "requests_dropped_routing_too_long", 1);
    return -1;
}

/*  The ROUTER may be readable: handle what is queued, up to S_BATCH_MAX
    requests, before going back to the reactor (its poll costs a system
    call per wake-up; timers still run between batches). A bus_reader_fn:
    1 when it stopped at S_BATCH_MAX (the rest on the next turn). */
static int
s_on_request (zloop_t *loop, zsock_t *router, void *arg)
{
    bus_service_t *self = arg;
    /* the ROUTER's receive timeout is 0: the receive that finds nothing
       ends the batch, and takes in the commands that re-arm the ROUTER's
       descriptor */
    for (int i = 0; i < S_BATCH_MAX; i++) {
        bus_route_t route;
        zmq_msg_t frame;
        int rc = s_recv_request (self, &route, &frame);
        if (rc == 0)
            return zsys_interrupted ? -1 : 0;
        if (rc == 1)
            s_on_message (self, &route, &frame);
    }
    return 1;
}

/* --- work off the reactor ------------------------------------------------ */



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
void
bus_offload_run (void *state, void *arg)
{
    bus_offload_t *o = arg;
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
    bus_offload_t *o = arg;
    bus_outbox_publish_ready (svc);          /* events the work committed go first */
    if (!o->req) {                  /* the service's own work: a trim, an expiry */
        o->done (svc, o->job, ran, !o->out.code);
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
    fsync) after the last of them, with the outcome of each request
    (s_write_run). */
static void
s_group_begin (void *state, void **jobs, size_t n, void *arg)
{
    bus_service_t *self = arg;
    /* one write too: its outcome is recorded in the group after it, so
       that the write and its outcome commit together */
    bus_txn_group (bus_txn_begin (self->store, true));
}

/*  The group could not be stored: what its writes answered is untrue. */
static void
s_group_failed (void **jobs, size_t n, int rc)
{
    for (size_t i = 0; i < n; i++) {
        bus_outcome_t *out = &((bus_offload_t *) jobs [i])->out;
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
        return;                         /* no group could begin: each write committed alone */
    bus_txn_group (NULL);
    int rc = bus_service_commit (self, &group);
    if (rc)
        s_group_failed (jobs, n, rc);
    size_t writes = 0;                  /* requests: not the service's own work */
    for (size_t i = 0; i < n; i++)
        writes += ((bus_offload_t *) jobs [i])->req != NULL;
    if (writes > 1) {                   /* counted: groups of several writes */
        atomic_fetch_add (&self->write_groups, 1);
        atomic_fetch_add (&self->writes_grouped, writes);
    }
}

/*  True if an outcome is recorded durably: not an unavailable or internal
    error, which says that nothing was done (a retry may do it). */
static bool
s_recordable (const bus_outcome_t *out)
{
    return !out->code || (strcmp (out->code, PROTO_ERR_UNAVAILABLE) && strcmp (out->code, PROTO_ERR_INTERNAL));
}

/*  An outcome as recorded: {"body"} or {"error": {code, message, extra}}. */
static json_t *
s_outcome_json (const bus_outcome_t *out)
{
    if (!out->code)
        return out->body ? json_pack ("{s:O}", "body", out->body) : json_pack ("{s:{}}", "body");
    json_t *error = json_pack ("{s:s, s:s}", "code", out->code, "message", out->message);
    if (error && out->extra)
        json_object_update_missing (error, out->extra);
    return json_pack ("{s:o}", "error", error);
}

/*  Record req's outcome in txn (any thread: req is read only). Over a
    quota, nothing is recorded (counted: the retry guarantee then holds
    in memory only); 0 all the same. */
static int
s_record (bus_service_t *self, bus_request_t *req, bus_txn_t *txn, const bus_outcome_t *out)
{
    json_t *outcome = s_outcome_json (out);
    if (outcome && self->outcome_seal) {
        json_t *sealed = self->outcome_seal (req, outcome, self->outcome_seal_arg);
        json_decref (outcome);
        outcome = sealed;
        if (!outcome) {
            atomic_fetch_add (&self->outcomes_unrecorded, 1);
            return 0;
        }
    }
    int rc = outcome ? bus_dedupe_record (txn, &self->dedupe_store, req->principal, req->msg->id, req->hash,
                                          outcome, proto_now_us () + self->dedupe_retention_us)
                     : BUS_ENOMEM;
    json_decref (outcome);
    if (rc == BUS_EFULL) {
        atomic_fetch_add (&self->outcomes_unrecorded, 1);
        rc = 0;
    }
    return rc;
}

/*  On the writer: a write's work, then its outcome recorded in the
    group, so that both are durable together or neither is (a group that
    cannot be stored answers every write unavailable, s_group_failed). */
static void
s_write_run (void *state, void *arg)
{
    bus_offload_t *o = arg;
    bus_offload_run (state, arg);
    bus_request_t *req = o->req;
    if (!req || !req->remember || req->recorded || !s_recordable (&o->out) || !bus_txn_group_current ())
        return;
    bus_service_t *self = req->svc;
    bus_txn_t *txn = bus_txn_begin (self->store, true);    /* nested in the group */
    int rc = txn ? s_record (self, req, txn, &o->out) : BUS_EIO;
    if (rc)
        bus_txn_abort (&txn);
    else
        rc = bus_txn_commit (&txn);
    if (rc)
        bus_error ("outcome of %s %s not recorded: %s", req->msg->type, req->msg->id, bus_strerror (rc));
}

/*  The writer, its thread at nice. */
static int
s_writer_start (bus_service_t *self, int nice, bus_worker_init_fn *init, bus_worker_fini_fn *fini, void *arg)
{
    if (self->writer)
        return BUS_EINVAL;
    self->writer = bus_workers_new_nice (self->loop, 1, S_WORK_QUEUE_MAX, nice, init, fini, arg, s_offload_done,
                                         self);
    if (self->writer)
        bus_workers_batch (self->writer, S_GROUP_MAX, s_group_begin, s_group_end, self);
    return self->writer ? 0 : BUS_EIO;
}

int
bus_service_writer (bus_service_t *self, bus_worker_init_fn *init, bus_worker_fini_fn *fini, void *arg)
{
    return s_writer_start (self, S_WRITER_NICE, init, fini, arg);
}

int
bus_service_writer_urgent (bus_service_t *self, bus_worker_init_fn *init, bus_worker_fini_fn *fini, void *arg)
{
    return s_writer_start (self, 0, init, fini, arg);
}

int
bus_service_writer_group (bus_service_t *self, size_t max)
{
    if (!self->writer || max < 1 || max > BUS_WRITE_GROUP_MAX)
        return BUS_EINVAL;
    bus_workers_batch (self->writer, max, s_group_begin, s_group_end, self);
    return 0;
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

/*  After a write made here during which more requests arrived (a burst:
    they waited for its fsync), writes go to the writer, which groups
    them, for this long; then a lone write may run here again. */
#define S_WRITE_HERE_PAUSE_US 10000

int
bus_request_write (bus_request_t *req, bus_work_fn *fn, void *state, void *job, void (*job_free) (void *job))
{
    bus_service_t *self = req->svc;
    if (bus_service_writes_queue (self) || (self->writer && proto_now_us () < self->write_here_after_us))
        return s_offload (self->writer, req, fn, job, job_free);
    /* the writer idle (or none): here, in a group of its own, as the
       writer would run it (s_group_begin, s_write_run, s_group_end) */
    bus_offload_t o = { .req = req, .fn = fn, .job = job, .job_free = job_free };
    int64_t t0 = proto_now_us ();
    bus_txn_t *group = bus_txn_begin (self->store, true);
    bus_txn_group (group);
    s_write_run (state, &o);
    int64_t t1 = proto_now_us ();
    if (group) {
        bus_txn_group (NULL);
        int rc = bus_service_commit (self, &group);     /* events published, before the reply */
        if (rc) {
            void *jobs [1] = { &o };
            s_group_failed (jobs, 1, rc);
        }
    }
    /* where a write's time goes: its work (reads, checks, puts) and its
       commit (the fsync'd pages), apart */
    bus_stats_latency (self->stats, "write_here_work", t1 - t0);
    int64_t t2 = proto_now_us ();
    bus_stats_latency (self->stats, "write_here_commit", t2 - t1);
    bus_stats_count (self->stats, "writes_on_reactor", 1);
    if (self->writer && s_requests_wait (self))
        self->write_here_after_us = t2 + S_WRITE_HERE_PAUSE_US;
    s_log_trace (req->msg);
    bus_reply_outcome (req, &o.out);
    bus_log_set_trace (NULL);
    s_job_free (job, job_free);
    return 0;
}

bool
bus_service_writes_queue (bus_service_t *self)
{
    if (!self->writer)
        return false;
    return bus_workers_pending (self->writer) > 0 || s_requests_wait (self);
}

int
bus_service_outcome_sealer (bus_service_t *self, bus_outcome_seal_fn *seal, bus_outcome_seal_fn *open, void *arg)
{
    if (self->outcome_seal || self->outcome_open)
        return BUS_EINVAL;
    self->outcome_seal = seal;
    self->outcome_open = open;
    self->outcome_seal_arg = arg;
    return 0;
}

void
bus_request_answers_retries (bus_request_t *req)
{
    req->recorded = true;           /* s_write_run records nothing more */
}

void
bus_reply_id_reused (bus_request_t *req, const char *fmt, ...)
{
    req->remember = false;          /* the first request's answer stays */
    bus_stats_count (req->svc->stats, "requests_id_reused", 1);
    va_list args;
    va_start (args, fmt);
    s_reply_error_v (req, PROTO_ERR_CONFLICT, NULL, fmt, args);
    va_end (args);
}

int
bus_request_record (bus_request_t *req, bus_txn_t *txn, const bus_outcome_t *out)
{
    if (!req->remember || !s_recordable (out))
        return 0;
    int rc = s_record (req->svc, req, txn, out);
    if (rc == 0)
        req->recorded = true;
    return rc;
}

int
bus_request_commit (bus_request_t *req, bus_txn_t **txn_p, bus_outcome_t *out)
{
    bus_service_t *self = req->svc;
    int rc = bus_request_record (req, *txn_p, out);
    if (rc)
        bus_service_abort (self, txn_p);
    else
        rc = bus_service_commit (self, txn_p);
    if (rc) {
        json_decref (out->body);
        json_decref (out->extra);
        out->body = out->extra = NULL;
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "the write could not be stored: %s", bus_strerror (rc));
    }
    else
        bus_reply_outcome (req, out);
    return rc;
}

static int
s_offload (bus_workers_t *pool, bus_request_t *req, bus_work_fn *fn, void *job, void (*job_free) (void *job))
{
    bus_service_t *self = req->svc;
    if (!pool)
        return BUS_ESTATE;
    bus_offload_t *o = calloc (1, sizeof *o);
    if (o)
        *o = (bus_offload_t) { .req = req, .fn = fn, .job = job, .job_free = job_free };
    /* from here the job belongs to a worker thread until reported done */
    int rc = o ? bus_workers_submit (pool, pool == self->writer ? s_write_run : bus_offload_run, o) : BUS_ENOMEM;
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



static int
s_on_tick (zloop_t *loop, int timer_id, void *arg)
{
    bus_service_t *self = arg;
    bus_allow_refresh (self->allow);
    bus_outbox_tick (self);
    bus_dedupe_trim (self->dedupe, zclock_mono ());
    return 0;
}

/*  Delete recorded outcomes past their time, at most max, in a
    transaction of its own (nested in the writer's group when it runs
    there). Returns the number deleted or an error. */
static int
s_expire (bus_service_t *self, size_t max)
{
    bus_txn_t *txn = bus_txn_begin (self->store, true);
    if (!txn)
        return BUS_EIO;
    int n = bus_dedupe_expire (txn, &self->dedupe_store, proto_now_us (), max, NULL);
    if (n < 0) {
        bus_txn_abort (&txn);
        return n;
    }
    int rc = bus_txn_commit (&txn);
    return rc ? rc : n;
}

typedef struct {
    bus_service_t *svc;
    int rc;
} s_expire_job_t;

static void
s_expire_work (void *state, json_t *body, void *job, bus_outcome_t *out)
{
    s_expire_job_t *x = job;
    x->rc = s_expire (x->svc, S_EXPIRE_BATCH);
}

/*  On the reactor: the writer's expiry is over. */
static void
s_expire_done (bus_service_t *self, void *job, bool ran, bool stored)
{
    s_expire_job_t *x = job;
    self->dedupe_expire_pending = false;
    if (ran && stored && x->rc > 0)
        bus_stats_count (self->stats, "outcomes_expired", (uint64_t) x->rc);
    else
    if (ran && (x->rc < 0 || !stored))
        bus_error ("expiring recorded outcomes failed: %s", bus_strerror (x->rc < 0 ? x->rc : BUS_EIO));
}

/*  True if the oldest recorded outcome's time is over (a read). */
static bool
s_expiry_due (bus_service_t *self)
{
    if (!s_reader (self))
        return false;
    const void *key, *val;
    size_t key_len, val_len;
    bool due = bus_txn_first (self->dedupe_reader, self->dedupe_store.time_db, &key, &key_len, &val, &val_len) == 0
               && key_len >= 8 && (int64_t) bus_key_to_u64 (key) < proto_now_us ();
    bus_txn_reset (self->dedupe_reader);
    return due;
}

/*  The expiry timer: recorded outcomes past dedupe_retention_s go, in
    bounded batches: on the writer when there is one (the reactor never
    waits for the write lock its group holds), else here in small ones. */
static int
s_on_expire (zloop_t *loop, int timer_id, void *arg)
{
    bus_service_t *self = arg;
    if (self->dedupe_expire_pending || !s_expiry_due (self))
        return 0;
    if (self->writer) {
        s_expire_job_t *x = calloc (1, sizeof *x);
        bus_offload_t *o = calloc (1, sizeof *o);
        if (x && o) {
            x->svc = self;
            *o = (bus_offload_t) { .fn = s_expire_work, .job = x, .done = s_expire_done };
            if (bus_workers_submit (self->writer, bus_offload_run, o) == 0) {
                self->dedupe_expire_pending = true;
                return 0;
            }
        }
        free (x);
        free (o);
        return 0;                   /* the writer is busy: next time */
    }
    int n = s_expire (self, S_EXPIRE_BATCH / 8);
    if (n > 0)
        bus_stats_count (self->stats, "outcomes_expired", (uint64_t) n);
    else
    if (n < 0)
        bus_error ("expiring recorded outcomes failed: %s", bus_strerror (n));
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
    bus_dedupe_limits_t limits = {
        .max_bytes = (size_t) bus_config_int (config, "sanctum", "dedupe_memory_kb") << 10,
        .max_entries = (size_t) bus_config_int (config, "sanctum", "dedupe_entries"),
        .principal_bytes = (size_t) bus_config_int (config, "sanctum", "dedupe_principal_kb") << 10,
        .principal_entries = (size_t) bus_config_int (config, "sanctum", "dedupe_principal_entries"),
        .ttl_ms = bus_config_int (config, "sanctum", "dedupe_ttl_ms")
    };
    self->dedupe = bus_dedupe_new (&limits);
    self->dedupe_retention_us = (int64_t) bus_config_int (config, "sanctum", "dedupe_retention_s") * 1000000;
    self->dedupe_store.record_max = (size_t) bus_config_int (config, "sanctum", "dedupe_record_max");
    self->dedupe_store.principal_bytes = (uint64_t) bus_config_int (config, "sanctum", "dedupe_store_principal_kb") << 10;
    self->dedupe_store.total_bytes = (uint64_t) bus_config_int (config, "sanctum", "dedupe_store_kb") << 10;
    self->unknown_logged = zhashx_new ();
    self->reactor = pthread_self ();
    self->stats = bus_stats_new ();
    self->refusals = bus_log_limit_new (S_REFUSAL_LINES, S_REFUSAL_WINDOW_MS, S_REFUSAL_KEYS);

    /* the store, with the outbox */
    size_t n = 0;
    while (db_names && db_names [n])
        n++;
    dbs = calloc (n + 5, sizeof *dbs);
    for (size_t i = 0; i < n; i++)
        dbs [i] = db_names [i];
    dbs [n] = "outbox";
    dbs [n + 1] = BUS_DEDUPE_DB;
    dbs [n + 2] = BUS_DEDUPE_TIME_DB;
    dbs [n + 3] = BUS_DEDUPE_USAGE_DB;
    data_dir = bus_config_data_dir (config, name);
    int rc = data_dir ? bus_store_open (&self->store, data_dir,
                                        (size_t) bus_config_int (config, "sanctum", "map_size_mb") << 20,
                                        dbs) : BUS_ENOMEM;
    if (rc) {
        snprintf (err, err_len, "cannot open store %s: %s", data_dir, bus_strerror (rc));
        goto fail;
    }
    self->dedupe_store.db = bus_store_db (self->store, BUS_DEDUPE_DB);
    self->dedupe_store.time_db = bus_store_db (self->store, BUS_DEDUPE_TIME_DB);
    self->dedupe_store.usage_db = bus_store_db (self->store, BUS_DEDUPE_USAGE_DB);
    if (!self->dedupe || bus_outbox_open (self)) {
        snprintf (err, err_len, "out of memory");
        goto fail;
    }

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
    /* what one connection can hold queued, in bytes: the high-water marks
       count messages, so they are set to that many frames of the largest
       size. Incoming, a full queue only stops reading the connection;
       outgoing, replies wait in the backlog (below) up to as many bytes
       again, the bursts of a client with many requests in flight; past
       that they are dropped (a client that stops reading collects them
       from the dedupe memory on its retry). That side keeps room for
       S_SNDHWM_MIN replies before the backlog holds any */
    size_t queue_bytes = (size_t) bus_config_int (config, "sanctum", "queue_kb") << 10;
    size_t frames = MIN (100000, queue_bytes / self->max_frame);
    zsock_set_rcvhwm (self->router, (int) MAX (16, frames));
    zsock_set_rcvtimeo (self->router, 0);     /* see s_on_request */
    zsock_set_sndhwm (self->router, (int) MAX (S_SNDHWM_MIN, frames));
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
    self->router_reader = self->loop ? bus_reader_new (self->loop, self->router, s_on_request, self) : NULL;
    if (!self->router_reader) {
        snprintf (err, err_len, "cannot read the ROUTER on the reactor");
        goto fail;
    }
    /* replies a full connection cannot take yet: held for it, up to what
       the connection could queue, while it takes any within S_HOLD_MS */
    self->backlog = bus_backlog_new (self->loop, self->router, queue_bytes, S_HOLD_MS, self->stats,
                                     s_backlog_sent, self);
    if (!self->backlog) {
        snprintf (err, err_len, "cannot hold replies on the reactor");
        goto fail;
    }
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
    zloop_timer (self->loop, BUS_OUTBOX_TRIM_MS, 0, bus_outbox_on_trim, self);
    zloop_timer (self->loop, S_EXPIRE_MS, 0, s_on_expire, self);
    uint64_t wd = bus_notify_watchdog_usec ();
    long wd_ms = bus_config_int (config, "sanctum", "watchdog_ms");
    if (wd_ms == 0 && wd)
        wd_ms = (long) (wd / 2000);
    if (wd_ms > 0)
        zloop_timer (self->loop, (size_t) wd_ms, 0, s_on_watchdog, self);

    bus_service_handle (self, "health", s_handle_health, NULL);
    bus_service_handle (self, "stats", s_handle_stats, NULL);
    bus_service_handle (self, "events.replay", bus_outbox_handle_replay, NULL);
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
    bus_reader_destroy (&self->router_reader);
    bus_backlog_destroy (&self->backlog);
    zloop_destroy (&self->loop);
    zsock_destroy (&self->router);
    zsock_destroy (&self->pub);
    free (self->pub_endpoint);
    zactor_destroy (&self->auth);
    bus_allow_destroy (&self->allow);
    zcert_destroy (&self->cert);
    zhashx_destroy (&self->handlers);
    bus_txn_abort (&self->dedupe_reader);
    bus_dedupe_destroy (&self->dedupe);
    zhashx_destroy (&self->unknown_logged);
    bus_outbox_close (self);
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
bus_service_handle_all (bus_service_t *self, const bus_handler_entry_t *table, size_t n, void *arg)
{
    for (size_t i = 0; i < n; i++) {
        int rc = bus_service_handle (self, table [i].type, table [i].fn, arg);
        if (rc) {
            bus_error ("cannot register the handler of %s: %s", table [i].type, bus_strerror (rc));
            return rc;
        }
    }
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
