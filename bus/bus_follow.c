/*  bus_follow.c — event followers (see the header).

    Per source: a SUB read by a zloop reader, a bus_calls_t to the
    publisher's ROUTER for events.replay (and health), the mark, and the
    live events held while a gap is being filled (sorted by seq). At most
    one replay (or health) is in flight per source; while it is, live
    events are held, never applied, so the mark only ever moves by one
    contiguous run at a time. A run is applied by s_apply: in durable mode
    one write transaction holds the callbacks' effects and the new mark.
*/
#include "bus_follow.h"

#include "bus_alarm.h"
#include "bus_call.h"
#include "bus_error.h"
#include "bus_keys.h"
#include "bus_log.h"

#define S_BATCH_MAX    2048         /* live events read per wake-up (one transaction) */
#define S_NAME_MAX     64
#define S_TOPICS_MAX   32
#define S_ACK_EVERY    5            /* x replay_ms: replay even while live events flow */
/*  Durable mode: over events no topic lets through (nothing to apply) the
    mark moves in memory only, committed with the next event applied or
    once it runs this far ahead of the committed one: a crash replays those
    events again and skips them again, and no fsync is spent on them. */
#define S_MARK_LAG_EVENTS 1000
#define S_MARK_LAG_MS     1000

typedef struct {
    bus_follow_t *follow;
    char name [S_NAME_MAX + 1];
    char principal [PROTO_PRINCIPAL_MAX + 1];   /* the events' pub; "" until learnt */
    char key [2 * S_NAME_MAX + 2];              /* "<follower>/<source>" */
    bus_calls_t *calls;
    zsock_t *sub;
    size_t max_frame;
    uint64_t mark;                  /* last seq applied (durable: committed, or see saved) */
    uint64_t saved;                 /* durable: the mark last committed (mark may run ahead of it
                                       over events no topic matched, S_MARK_LAG_*) */
    int64_t saved_ms;               /* when saved was committed (mono ms) */
    bool known;                     /* the mark is known (from_now: after health) */
    bool asking;                    /* a replay or health in flight */
    uint64_t replay_to;             /* the range's end of the replay in flight (0: none) */
    bool failed;                    /* an apply failed: wait for the timer */
    zlistx_t *held;                 /* proto_msg_t, live events past mark + 1, by seq */
    int64_t last_live_ms;
    int64_t last_replay_ms;
} s_source_t;

struct bus_follow_t {
    zloop_t *loop;
    zcert_t *cert;
    bus_service_t *svc;             /* commits through bus_service_commit, or NULL */
    char name [S_NAME_MAX + 1];
    char *topics [S_TOPICS_MAX + 1];
    bus_follow_fn *fn;
    bus_follow_loss_fn *loss;
    bus_follow_record_loss_fn *record_loss;
    void *arg;
    bus_store_t *store;             /* durable mode, or NULL */
    int db;
    bool from_now;
    int replay_ms;
    bus_stats_t *stats;
    bus_alarm_t *timer;
    s_source_t *sources [BUS_FOLLOW_SOURCES_MAX];
    size_t nsources;
    uint64_t applied;
    uint64_t lost;
};

static void
s_count (bus_follow_t *self, const char *name, uint64_t n)
{
    if (self->stats && n)
        bus_stats_count (self->stats, name, n);
}

static void
s_msg_free (void **item)
{
    proto_msg_destroy ((proto_msg_t **) item);
}

static int
s_seq_compare (const void *a, const void *b)
{
    const proto_msg_t *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq ? 1 : 0;
}

/*  Whether an event of type reaches the callback. */
static bool
s_matches (bus_follow_t *self, const char *type)
{
    if (!self->topics [0])
        return true;
    for (size_t i = 0; self->topics [i]; i++)
        if (strncmp (type, self->topics [i], strlen (self->topics [i])) == 0)
            return true;
    return false;
}

/* --- applying ------------------------------------------------------------ */

/*  A loss s_on_replay reported, to be recorded with the mark. */
typedef struct {
    const char *pub;
    uint64_t from, to;
} s_loss_t;

/*  Durable mode: may the mark move to mark in memory only? When the
    committed one is not too far behind (S_MARK_LAG_*). */
static bool
s_lag_ok (s_source_t *src, uint64_t mark)
{
    return mark - src->saved < S_MARK_LAG_EVENTS && zclock_mono () - src->saved_ms < S_MARK_LAG_MS;
}

/*  Durable mode: may the mark move over events (n of them) in memory only?
    When no topic lets any through, no loss is to be recorded with them,
    and the lag allows it. */
static bool
s_skip_only (s_source_t *src, proto_msg_t **events, size_t n, uint64_t skip_to, size_t nlost)
{
    if (n == 0 || nlost || skip_to > src->mark || !s_lag_ok (src, events [n - 1]->seq))
        return false;
    for (size_t i = 0; i < n; i++)
        if (s_matches (src->follow, events [i]->type))
            return false;
    return true;
}

/*  Apply a contiguous run of events (events [i].seq = mark + 1 + i, past
    skip_to when that is above the mark: a loss already reported; the
    nlost losses in lost, in seq order, are recorded first by
    record_loss) and move the mark past them, in one write transaction in
    durable mode.
    Returns 0, or the error that stopped it: the callback's, or the
    store's; in durable mode nothing of the run then happened (the mark
    stays), in memory mode the events before the failing one did. */
static int
s_apply (s_source_t *src, proto_msg_t **events, size_t n, uint64_t skip_to,
         const s_loss_t *lost, size_t nlost)
{
    bus_follow_t *self = src->follow;
    uint64_t mark = skip_to > src->mark ? skip_to : src->mark;
    int rc = 0;
    size_t done = 0;
    if (!self->store) {
        for (; done < n; done++) {
            if (s_matches (self, events [done]->type)
                && (rc = self->fn (self, NULL, events [done], self->arg)) && rc != BUS_FOLLOW_NOTHING)
                break;
            rc = 0;
            mark = events [done]->seq;
        }
        src->mark = mark;
        self->applied += done;
        s_count (self, "follow_applied", done);
    }
    else if (s_skip_only (src, events, n, skip_to, nlost)) {
        src->mark = events [n - 1]->seq;
        self->applied += n;
        s_count (self, "follow_applied", n);
    }
    else {
        bus_txn_t *txn = bus_txn_begin (self->store, true);
        if (!txn)
            rc = BUS_EIO;
        for (size_t i = 0; rc == 0 && self->record_loss && i < nlost; i++)
            rc = self->record_loss (self, txn, src->name, lost [i].pub, lost [i].from, lost [i].to,
                                    self->arg);
        bool wrote = nlost > 0 || skip_to > src->mark;
        for (; rc == 0 && done < n; done++) {
            if (s_matches (self, events [done]->type)) {
                rc = self->fn (self, txn, events [done], self->arg);
                if (rc == BUS_FOLLOW_NOTHING)
                    rc = 0;
                else
                    wrote = true;
            }
            if (rc == 0)
                mark = events [done]->seq;
        }
        /* the callback wrote nothing: the mark moves in memory, as over
           events no topic let through */
        bool commit = rc == 0 && (wrote || !s_lag_ok (src, mark));
        if (commit) {
            uint8_t val [8];
            bus_u64_to_key (mark, val);
            bus_txn_put (txn, self->db, src->key, strlen (src->key), val, sizeof val);
            rc = self->svc ? bus_service_commit (self->svc, &txn) : bus_txn_commit (&txn);
        }
        else
        if (txn && self->svc)
            bus_service_abort (self->svc, &txn);
        else
            bus_txn_abort (&txn);
        if (rc == 0) {
            src->mark = mark;
            if (commit) {
                src->saved = mark;
                src->saved_ms = zclock_mono ();
            }
            self->applied += n;
            s_count (self, "follow_applied", n);
        }
    }
    if (rc) {
        bus_log_fields (BUS_LOG_ERROR, json_pack ("{s:s, s:s, s:I}", "follower", self->name,
                                                  "source", src->name, "seq", (json_int_t) (mark + 1)),
                        "follower %s: events of %s from %llu not applied (%s); again in %d ms",
                        self->name, src->name, (unsigned long long) (src->mark + 1), bus_strerror (rc),
                        self->replay_ms);
        src->failed = true;
        s_count (self, "follow_apply_failed", 1);
    }
    return rc;
}

/* --- replay -------------------------------------------------------------- */

static void s_on_replay (bus_calls_t *calls, proto_msg_t *reply, void *arg);
static void s_on_health (bus_calls_t *calls, proto_msg_t *reply, void *arg);

/*  Durable: commit the mark when it ran ahead of the committed one (over
    events no topic let through), so that a replay asks from a committed
    mark only (a publisher trims what its outbox_acked_by asked past).
    Returns 0 or the store's error. */
static int
s_save_mark (s_source_t *src)
{
    bus_follow_t *self = src->follow;
    if (!self->store || src->mark <= src->saved)
        return 0;
    bus_txn_t *txn = bus_txn_begin (self->store, true);
    if (!txn)
        return BUS_EIO;
    uint8_t val [8];
    bus_u64_to_key (src->mark, val);
    bus_txn_put (txn, self->db, src->key, strlen (src->key), val, sizeof val);
    int rc = self->svc ? bus_service_commit (self->svc, &txn) : bus_txn_commit (&txn);
    if (rc == 0) {
        src->saved = src->mark;
        src->saved_ms = zclock_mono ();
    }
    return rc;
}

/*  Ask for the events from mark + 1 (up to to, 0: all), unless something
    is already asked. */
static void
s_replay (s_source_t *src, uint64_t to)
{
    bus_follow_t *self = src->follow;
    if (src->asking || !src->known || s_save_mark (src))
        return;
    json_t *body = json_pack ("{s:I}", "from_seq", (json_int_t) (src->mark + 1));
    if (to > src->mark && to <= INT64_MAX)
        json_object_set_new (body, "to_seq", json_integer ((json_int_t) to));
    else
        to = 0;
    if (bus_calls_send (src->calls, "events.replay", body, NULL, s_on_replay, src, NULL) == 0) {
        src->asking = true;
        src->replay_to = to;
        src->last_replay_ms = zclock_mono ();
        s_count (self, "follow_replays", 1);
    }
}

/*  Apply the held events that now follow the mark; if a gap remains
    before the next held one, replay it. */
static void
s_drain (s_source_t *src)
{
    if (src->asking || !src->known || src->failed)
        return;
    proto_msg_t *evt;
    while ((evt = zlistx_first (src->held)) && evt->seq <= src->mark)
        zlistx_delete (src->held, zlistx_cursor (src->held));
    size_t n = 0, cap = zlistx_size (src->held);
    proto_msg_t **run = cap ? calloc (cap, sizeof *run) : NULL;
    uint64_t expected = src->mark + 1;
    while (run && (evt = zlistx_first (src->held)) && evt->seq == expected) {
        run [n++] = zlistx_detach (src->held, zlistx_cursor (src->held));
        expected++;
    }
    if (n)
        s_apply (src, run, n, 0, NULL, 0);
    for (size_t i = 0; i < n; i++)
        proto_msg_destroy (&run [i]);
    free (run);
    if (!src->failed && (evt = zlistx_first (src->held))) {
        s_count (src->follow, "follow_gaps", 1);
        s_replay (src, evt->seq - 1);
    }
}

/*  An event of a replay reply, from its JSON form. */
static proto_msg_t *
s_event_from_json (json_t *env)
{
    const char *type = json_string_value (json_object_get (env, "type"));
    json_t *seq = json_object_get (env, "seq");
    if (!type || !json_is_integer (seq) || json_integer_value (seq) < 1)
        return NULL;
    proto_msg_t *evt = proto_msg_new (PROTO_KIND_EVT, type);
    if (!evt)
        return NULL;
    snprintf (evt->id, sizeof evt->id, "%s", json_string_value (json_object_get (env, "id")) ?: "");
    snprintf (evt->pub, sizeof evt->pub, "%s", json_string_value (json_object_get (env, "pub")) ?: "");
    snprintf (evt->traceparent, sizeof evt->traceparent, "%s",
              json_string_value (json_object_get (env, "traceparent")) ?: "");
    evt->ts = json_integer_value (json_object_get (env, "ts"));
    evt->seq = (uint64_t) json_integer_value (seq);
    json_t *body = json_object_get (env, "body");
    evt->body = body ? json_incref (body) : json_object ();
    return evt;
}

/*  Report events from..to of src lost. */
static void
s_lost (s_source_t *src, const char *pub, uint64_t from, uint64_t to)
{
    bus_follow_t *self = src->follow;
    uint64_t n = to - from + 1;
    self->lost += n;
    s_count (self, "follow_events_lost", n);
    bus_log_fields (BUS_LOG_ERROR, json_pack ("{s:s, s:s, s:s, s:I, s:I}", "follower", self->name,
                                              "source", src->name, "pub", pub, "from_seq", (json_int_t) from,
                                              "to_seq", (json_int_t) to),
                    "follower %s: %s no longer keeps events %llu..%llu (trimmed from its outbox): lost",
                    self->name, pub, (unsigned long long) from, (unsigned long long) to);
    if (self->loss)
        self->loss (self, src->name, pub, from, to, self->arg);
}

/*  A page of events.replay: report a loss below first_seq, apply the
    events that follow the mark, ask for the next page or drain. */
static void
s_on_replay (bus_calls_t *calls, proto_msg_t *reply, void *arg)
{
    s_source_t *src = arg;
    bus_follow_t *self = src->follow;
    src->asking = false;
    uint64_t to = src->replay_to;
    src->replay_to = 0;
    if (!reply->ok) {
        bus_warn ("follower %s: events.replay from %s failed: %s", self->name, src->name,
                  json_string_value (json_object_get (reply->error, "message")) ?: "?");
        return;                     /* the timer asks again */
    }
    const char *pub = json_string_value (json_object_get (reply->body, "pub"));
    json_t *events = json_object_get (reply->body, "events");
    json_t *first = json_object_get (reply->body, "first_seq");
    if (!pub || !json_is_array (events) || !json_is_integer (first)) {
        bus_warn ("follower %s: malformed events.replay reply from %s", self->name, src->name);
        return;
    }
    if (src->principal [0] && !streq (pub, src->principal)) {
        bus_error ("follower %s: %s replays events of %s, not of %s", self->name, src->name, pub,
                   src->principal);
        return;
    }
    if (!src->principal [0])
        snprintf (src->principal, sizeof src->principal, "%s", pub);
    /* seq never goes back, across restarts too (PROTOCOL.md 6.3): a
       publisher behind the mark lost its store; its new events below the
       mark would be taken for duplicates, so say it loudly */
    json_t *last = json_object_get (reply->body, "last_seq");
    if (json_is_integer (last) && (uint64_t) json_integer_value (last) < src->mark) {
        bus_log_fields (BUS_LOG_ERROR, json_pack ("{s:s, s:s, s:I, s:I}", "follower", self->name, "source", src->name,
                                                  "last_seq", json_integer_value (last), "mark", (json_int_t) src->mark),
                        "follower %s: %s's last_seq %lld is below the mark %llu (its outbox was reset?): "
                        "its events up to the mark are dropped as seen", self->name, src->name,
                        (long long) json_integer_value (last), (unsigned long long) src->mark);
        s_count (self, "follow_publisher_behind", 1);
    }
    uint64_t first_seq = (uint64_t) json_integer_value (first), skip_to = 0;
    s_loss_t lost [2];
    size_t nlost = 0;
    if (first_seq > src->mark + 1) {
        s_lost (src, pub, src->mark + 1, first_seq - 1);
        lost [nlost++] = (s_loss_t) { pub, src->mark + 1, first_seq - 1 };
        skip_to = first_seq - 1;
    }
    size_t count = json_array_size (events), n = 0, i;
    proto_msg_t **run = count ? calloc (count, sizeof *run) : NULL;
    uint64_t expected = (skip_to > src->mark ? skip_to : src->mark) + 1, hole_at = 0;
    json_t *env;
    json_array_foreach (events, i, env) {
        if (!run)
            break;
        proto_msg_t *evt = s_event_from_json (env);
        if (!evt || !streq (evt->pub, pub)) {
            bus_warn ("follower %s: an undecodable event in a replay from %s", self->name, src->name);
            proto_msg_destroy (&evt);
            hole_at = expected + 1;         /* ask again from the mark */
            break;
        }
        if (evt->seq > expected) {
            hole_at = evt->seq;
            proto_msg_destroy (&evt);
            break;
        }
        if (evt->seq < expected) {
            proto_msg_destroy (&evt);
            continue;
        }
        run [n++] = evt;
        expected++;
    }
    /* the publisher keeps first_seq yet lacks the event after the mark
       (an outbox entry it could not read): that one is lost too, or the
       follower would ask for it for ever */
    if (hole_at && n == 0 && hole_at > expected) {
        s_lost (src, pub, expected, hole_at - 1);
        lost [nlost++] = (s_loss_t) { pub, expected, hole_at - 1 };
        skip_to = hole_at - 1;
    }
    int rc = (n || skip_to) ? s_apply (src, run, n, skip_to, lost, nlost) : 0;
    for (i = 0; i < n; i++)
        proto_msg_destroy (&run [i]);
    free (run);
    if (rc)
        return;
    bool more = json_is_integer (json_object_get (reply->body, "next_seq")) || hole_at;
    /* back to the live stream as soon as what is held goes on from the
       mark: paging through a burst the SUB delivers is slower */
    proto_msg_t *head;
    while ((head = zlistx_first (src->held)) && head->seq <= src->mark)
        zlistx_delete (src->held, zlistx_cursor (src->held));
    if (head && head->seq == src->mark + 1)
        more = false;
    if (more && (!to || src->mark < to))
        s_replay (src, to);
    else
        s_drain (src);
}

/*  from_now: the publisher's last_seq is where this source starts. */
static void
s_on_health (bus_calls_t *calls, proto_msg_t *reply, void *arg)
{
    s_source_t *src = arg;
    src->asking = false;
    json_t *last = reply->ok ? json_object_get (reply->body, "last_seq") : NULL;
    if (!json_is_integer (last)) {
        bus_warn ("follower %s: no last_seq from %s's health; asking again", src->follow->name, src->name);
        return;
    }
    if (!src->known) {
        src->mark = (uint64_t) json_integer_value (last);
        src->known = true;
    }
    s_drain (src);
}

static void
s_ask_health (s_source_t *src)
{
    if (!src->asking && bus_calls_send (src->calls, "health", NULL, NULL, s_on_health, src, NULL) == 0)
        src->asking = true;
}

/* --- live events ---------------------------------------------------------- */

/*  Receive one [topic][event] message without waiting: 1 with *evt, 0
    when nothing is queued, -1 for a message skipped (logged). */
static int
s_receive (s_source_t *src, proto_msg_t **evt)
{
    void *sock = zsock_resolve (src->sub);
    zmq_msg_t part;
    zmq_msg_init (&part);
    if (zmq_msg_recv (&part, sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close (&part);
        return 0;
    }
    int frames = 1, rc = -1;
    char err [160] = "not a [topic, event] frame pair";
    while (zmq_msg_more (&part)) {
        zmq_msg_close (&part);
        zmq_msg_init (&part);
        if (zmq_msg_recv (&part, sock, 0) < 0)
            break;
        if (++frames == 2 && !zmq_msg_more (&part)) {
            rc = proto_msg_decode (evt, zmq_msg_data (&part), zmq_msg_size (&part), src->max_frame,
                                   NULL, err, sizeof err) == 0 ? 1 : -1;
        }
    }
    zmq_msg_close (&part);
    if (rc == 1 && (frames != 2 || (*evt)->kind != PROTO_KIND_EVT)) {
        snprintf (err, sizeof err, "not an event");
        proto_msg_destroy (evt);
        rc = -1;
    }
    if (rc == 1 && src->principal [0] && !streq ((*evt)->pub, src->principal)) {
        snprintf (err, sizeof err, "published as %s", (*evt)->pub);
        proto_msg_destroy (evt);
        rc = -1;
    }
    if (rc < 0)
        bus_warn ("follower %s: event from %s skipped: %s", src->follow->name, src->name, err);
    return rc;
}

/*  Hold a live event that cannot be applied yet (a gap before it, or a
    replay in flight); past BUS_FOLLOW_HELD_MAX it is dropped (a replay
    brings it). */
static void
s_hold (s_source_t *src, proto_msg_t **evt_p)
{
    if ((*evt_p)->seq > src->mark && zlistx_size (src->held) < BUS_FOLLOW_HELD_MAX)
        zlistx_insert (src->held, *evt_p, false);
    else
        proto_msg_destroy (evt_p);
    *evt_p = NULL;
}

/*  The SUB is readable: apply the run of events that follows the mark
    (one transaction), hold the rest, fill gaps. */
static int
s_on_event (zloop_t *loop, zsock_t *sock, void *arg)
{
    s_source_t *src = arg;
    proto_msg_t *run [S_BATCH_MAX];
    size_t n = 0;
    uint64_t expected = src->mark + 1;
    bool restarted = false, ahead = false;
    for (int i = 0; i < S_BATCH_MAX; i++) {
        proto_msg_t *evt = NULL;
        int rc = s_receive (src, &evt);
        if (rc == 0)
            break;
        if (rc < 0)
            continue;
        src->last_live_ms = zclock_mono ();
        if (!src->known || src->asking || src->failed || evt->seq > expected) {
            ahead |= src->known && !src->asking && !src->failed;
            s_hold (src, &evt);
        }
        else
        if (evt->seq < expected)
            proto_msg_destroy (&evt);       /* seen already */
        else {
            restarted |= streq (evt->type, "service.started");
            run [n++] = evt;
            expected++;
        }
    }
    if (n)
        s_apply (src, run, n, 0, NULL, 0);
    for (size_t i = 0; i < n; i++)
        proto_msg_destroy (&run [i]);
    if (ahead || zlistx_size (src->held))
        s_drain (src);
    else
    if (restarted)
        s_replay (src, 0);          /* the publisher restarted: check its tail */
    return 0;
}

/*  The timer: retry after a failure, fill what is held, check the tail of
    a quiet source (and, now and then, of a busy one: it keeps the
    publisher's outbox_acked_by record fresh). */
static int
s_on_timer (zloop_t *loop, void *arg)
{
    bus_follow_t *self = arg;
    int64_t now = zclock_mono ();
    for (size_t i = 0; i < self->nsources; i++) {
        s_source_t *src = self->sources [i];
        if (!src->known) {
            s_ask_health (src);
            continue;
        }
        if (src->asking)
            continue;
        if (src->failed) {
            src->failed = false;
            s_replay (src, 0);
        }
        else
        if (zlistx_size (src->held))
            s_drain (src);
        else
        if (now - src->last_live_ms >= self->replay_ms
            || now - src->last_replay_ms >= (int64_t) S_ACK_EVERY * self->replay_ms)
            s_replay (src, 0);
    }
    return 0;
}

/* --- life cycle ---------------------------------------------------------- */

static void
s_source_destroy (s_source_t **src_p)
{
    s_source_t *src = *src_p;
    if (!src)
        return;
    if (src->sub) {
        zloop_reader_end (src->follow->loop, src->sub);
        zsock_destroy (&src->sub);
    }
    bus_calls_destroy (&src->calls);
    zlistx_destroy (&src->held);
    free (src);
    *src_p = NULL;
}

bus_follow_t *
bus_follow_new (zloop_t *loop, zcert_t *cert, const bus_follow_opts_t *opts)
{
    if (!loop || !cert || !opts || !opts->fn || !opts->name || !*opts->name
        || strlen (opts->name) > S_NAME_MAX || strchr (opts->name, '/')) {
        bus_error ("follower: bad argument (loop, cert, fn and a name of 1..%d bytes without '/')", S_NAME_MAX);
        return NULL;
    }
    bus_follow_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->loop = loop;
    self->cert = cert;
    snprintf (self->name, sizeof self->name, "%s", opts->name);
    self->fn = opts->fn;
    self->loss = opts->loss;
    self->record_loss = opts->record_loss;
    self->arg = opts->arg;
    self->store = opts->store;
    self->from_now = opts->from_now && !opts->store;
    self->replay_ms = opts->replay_ms > 0 ? opts->replay_ms : 1000;
    self->stats = opts->stats;
    size_t ntopics = 0;
    for (size_t i = 0; opts->topics && opts->topics [i]; i++) {
        if (ntopics == S_TOPICS_MAX || !(self->topics [ntopics++] = strdup (opts->topics [i]))) {
            bus_error ("follower %s: more than %d topics (or out of memory)", self->name, S_TOPICS_MAX);
            bus_follow_destroy (&self);
            return NULL;
        }
    }
    if (self->store) {
        const char *db = opts->db ? opts->db : BUS_FOLLOW_DB;
        self->db = bus_store_db (self->store, db);
        if (self->db < 0) {
            bus_error ("follower %s: the store has no db '%s' for the marks", self->name, db);
            bus_follow_destroy (&self);
            return NULL;
        }
    }
    self->timer = bus_alarm_new (loop, (size_t) self->replay_ms, 0, s_on_timer, self);
    if (!self->timer) {
        bus_follow_destroy (&self);
        return NULL;
    }
    return self;
}

bus_follow_t *
bus_follow_for (bus_service_t *svc, const bus_follow_opts_t *opts, bool memory)
{
    if (!svc || !opts)
        return NULL;
    bus_follow_opts_t o = *opts;
    o.store = memory ? NULL : o.store ? o.store : bus_service_store (svc);
    if (!o.stats)
        o.stats = bus_service_stats (svc);
    bus_follow_t *self = bus_follow_new (bus_service_loop (svc), bus_service_cert (svc), &o);
    if (self && o.store == bus_service_store (svc))
        self->svc = svc;
    return self;
}

void
bus_follow_destroy (bus_follow_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    bus_follow_t *self = *self_p;
    for (size_t i = 0; i < self->nsources; i++)
        s_source_destroy (&self->sources [i]);
    bus_alarm_end (&self->timer);
    for (size_t i = 0; self->topics [i]; i++)
        free (self->topics [i]);
    free (self);
    *self_p = NULL;
}

/*  The stored mark of src (durable), 0 when none. Returns 0 or BUS_EIO. */
static int
s_load_mark (bus_follow_t *self, s_source_t *src)
{
    bus_txn_t *txn = bus_txn_begin (self->store, false);
    if (!txn)
        return BUS_EIO;
    const void *val;
    size_t len;
    int rc = bus_txn_get (txn, self->db, src->key, strlen (src->key), &val, &len);
    if (rc == 0 && len == 8)
        src->mark = src->saved = bus_key_to_u64 (val);
    src->saved_ms = zclock_mono ();
    bus_txn_abort (&txn);
    return rc == 0 && len != 8 ? BUS_EIO : rc == BUS_ENOTFOUND ? 0 : rc;
}

int
bus_follow_add (bus_follow_t *self, const char *source, const char *principal, const char *pub,
                const char *rpc, const char *server_key, int timeout_ms, int retries)
{
    if (!source || !*source || strlen (source) > S_NAME_MAX || strchr (source, '/') || !pub || !rpc
        || !server_key || strlen (server_key) != BUS_KEY_Z85_LEN
        || (principal && strlen (principal) > PROTO_PRINCIPAL_MAX))
        return BUS_EINVAL;
    for (size_t i = 0; i < self->nsources; i++)
        if (streq (self->sources [i]->name, source))
            return BUS_EINVAL;
    if (self->nsources == BUS_FOLLOW_SOURCES_MAX)
        return BUS_EFULL;
    s_source_t *src = calloc (1, sizeof *src);
    if (!src)
        return BUS_ENOMEM;
    int rc = BUS_ENOMEM;
    src->follow = self;
    snprintf (src->name, sizeof src->name, "%s", source);
    snprintf (src->principal, sizeof src->principal, "%s", principal ? principal : "");
    snprintf (src->key, sizeof src->key, "%s/%s", self->name, source);
    src->max_frame = (size_t) PROTO_MAX_FRAME * 64;
    src->held = zlistx_new ();
    if (!src->held)
        goto done;
    zlistx_set_destructor (src->held, s_msg_free);
    zlistx_set_comparator (src->held, s_seq_compare);
    if (self->store && (rc = s_load_mark (self, src)))
        goto done;
    src->known = !self->from_now;
    src->calls = bus_calls_new (self->loop, source, rpc, server_key, self->cert, timeout_ms, retries, NULL);
    rc = BUS_EINVAL;
    if (!src->calls)
        goto done;
    /* subscribe first, then replay: the overlap is removed by seq */
    src->sub = zsock_new (ZMQ_SUB);
    if (!src->sub)
        goto done;
    zsock_set_rcvhwm (src->sub, 100000);
    zsock_set_rcvtimeo (src->sub, 0);
    zsock_set_maxmsgsize (src->sub, (int64_t) src->max_frame);
    bus_keys_apply_client (src->sub, self->cert, server_key);
    zsock_set_subscribe (src->sub, "");
    if (zsock_connect (src->sub, "%s", pub) || zloop_reader (self->loop, src->sub, s_on_event, src))
        goto done;
    self->sources [self->nsources++] = src;
    if (src->known)
        s_replay (src, 0);
    else
        s_ask_health (src);
    src = NULL;
    rc = 0;
done:
    if (src) {
        bus_error ("follower %s: cannot follow %s (%s)", self->name, source, bus_strerror (rc));
        s_source_destroy (&src);
    }
    return rc;
}

int
bus_follow_add_service (bus_follow_t *self, bus_config_t *config, const char *service)
{
    const char *section = bus_service_section (service);
    char key [BUS_KEY_Z85_LEN + 1], principal [PROTO_PRINCIPAL_MAX + 1];
    if (!section || bus_keys_public (bus_config_str (config, "sanctum", "keys_dir"), bus_service_name (service), key)) {
        bus_error ("follower %s: no service %s, or no key for it", self->name, service);
        return BUS_ECONFIG;
    }
    snprintf (principal, sizeof principal, "svc:%s", bus_service_name (service));
    int rc = bus_follow_add (self, bus_service_name (service), principal, bus_config_str (config, section, "pub"),
                             bus_config_str (config, section, "rpc"), key,
                             (int) bus_config_int (config, "sanctum", "rpc_timeout_ms"),
                             (int) bus_config_int (config, "sanctum", "rpc_retries"));
    if (rc == 0) {
        s_source_t *src = self->sources [self->nsources - 1];
        src->max_frame = (size_t) bus_config_int (config, "sanctum", "max_frame");
        zsock_set_maxmsgsize (src->sub, (int64_t) src->max_frame);
    }
    return rc;
}

uint64_t
bus_follow_mark (bus_follow_t *self, const char *source)
{
    for (size_t i = 0; i < self->nsources; i++)
        if (streq (self->sources [i]->name, source))
            return self->sources [i]->mark;
    return 0;
}

uint64_t
bus_follow_applied (bus_follow_t *self)
{
    return self->applied;
}

uint64_t
bus_follow_lost (bus_follow_t *self)
{
    return self->lost;
}

bool
bus_follow_idle (bus_follow_t *self)
{
    for (size_t i = 0; i < self->nsources; i++) {
        s_source_t *src = self->sources [i];
        if (!src->known || src->asking || src->failed || zlistx_size (src->held))
            return false;
    }
    return true;
}
