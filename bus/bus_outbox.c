/*  bus_outbox.c — the event outbox: events appended in the caller's
    write transaction, committed and then published in sequence (commits
    on other threads queue for the reactor), events.replay, the trim of
    the outbox, and the PUB bound afresh when a key leaves the allow-list.
    The reactor and dispatch are in bus_service.c. */
#include "bus_service_internal.h"
#include "bus_error.h"
#include "bus_log.h"

#define S_REPLAY_MAX      1000      /* events in one events.replay reply */
#define S_TRIM_BATCH      8192      /* events deleted per trim, at most */

/*  The oldest event the outbox holds (last_seq + 1 while it holds none). */
uint64_t
bus_outbox_first_seq (bus_service_t *self)
{
    return self->outbox_first_seq ? self->outbox_first_seq : self->published_seq + 1;
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
void
bus_outbox_handle_replay (bus_service_t *self, bus_request_t *req, void *arg)
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
                               "first_seq", (json_int_t) bus_outbox_first_seq (self));
    if (r.next)
        json_object_set_new (reply, "next_seq", json_integer ((json_int_t) r.next));
    bus_reply_ok (req, reply);
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
void
bus_outbox_publish_ready (bus_service_t *self)
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
        bus_outbox_publish_ready (self);
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
    timer (the reactor never waits) up to BUS_OUTBOX_REBIND_TRIES times; after that
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
    if (zmq_errno () == EADDRINUSE && ++self->rebind_tries < BUS_OUTBOX_REBIND_TRIES) {
        zloop_timer (self->loop, 10, 1, s_on_rebind, self);
        return;
    }
    if (self->rebind_tries <= BUS_OUTBOX_REBIND_TRIES)
        bus_error ("cannot bind %s again: %s (retried on each allow-list scan)", pub,
                   zmq_strerror (zmq_errno ()));
    self->rebind_tries = BUS_OUTBOX_REBIND_TRIES + 1;
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
        bus_offload_t *o = calloc (1, sizeof *o);
        if (trim && o) {
            *trim = (s_trim_t) { self, first, below, acked_below, 0 };
            *o = (bus_offload_t) { .fn = s_trim_work, .job = trim, .done = s_trim_done };
            if (bus_workers_submit (self->writer, bus_offload_run, o) == 0) {
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

int
bus_outbox_on_trim (zloop_t *loop, int timer_id, void *arg)
{
    s_outbox_trim ((bus_service_t *) arg);
    return 0;
}

/*  The outbox's state from the store and the config. */
int
bus_outbox_open (bus_service_t *self)
{
    pthread_mutex_init (&self->committed_lock, NULL);
    self->committed = zlistx_new ();
    if (!self->committed)
        return BUS_ENOMEM;
    zlistx_set_destructor (self->committed, (zlistx_destructor_fn *) s_committed_free);
    self->outbox_db = bus_store_db (self->store, "outbox");
    bus_txn_t *txn = bus_txn_begin (self->store, false);
    const void *key, *val;
    size_t key_len, val_len;
    if (txn && bus_txn_last (txn, self->outbox_db, &key, &key_len, &val, &val_len) == 0 && key_len == 8)
        self->published_seq = bus_key_to_u64 (key);
    if (txn && bus_txn_first (txn, self->outbox_db, &key, &key_len, &val, &val_len) == 0 && key_len == 8)
        self->outbox_first_seq = bus_key_to_u64 (key);
    bus_txn_abort (&txn);
    self->outbox_keep = (uint64_t) bus_config_int (self->config, "sanctum", "outbox_keep");
    self->outbox_max = (uint64_t) bus_config_int (self->config, "sanctum", "outbox_max");
    snprintf (self->acked_by, sizeof self->acked_by, "%s",
              bus_config_str (self->config, "sanctum", "outbox_acked_by"));
    return 0;
}

void
bus_outbox_close (bus_service_t *self)
{
    if (self->committed) {
        zlistx_destroy (&self->committed);
        pthread_mutex_destroy (&self->committed_lock);
    }
}

/*  The allow-list tick's part for the PUB. */
void
bus_outbox_tick (bus_service_t *self)
{
    if (bus_allow_revoked (self->allow) && !self->pub_unbound)
        s_pub_rebind (self);
    else
    if (self->pub_unbound && self->rebind_tries > BUS_OUTBOX_REBIND_TRIES)
        s_pub_bind_again (self);        /* the timer's tries ran out */
}
