/*  bus_call.c — requests to a peer from the reactor (see the header).

    The calls in flight sit in a hash by request id (replies, cancel) and in
    a list ordered by deadline (the timer looks at its head only). The
    DEALER is read by a zloop reader whose handler ignores the socket it is
    given and reads self->sock: when a timer replaces the socket, zloop may
    still call the handler once with the old one in the same pass (its
    pollset is rebuilt only at the next), and must not touch it.
*/
#include "bus_call.h"

#include <errno.h>
#include "bus_alarm.h"
#include "bus_error.h"
#include "bus_keys.h"
#include "bus_log.h"

#define S_MAX_FRAME     (64UL << 20)   /* replies decoded, at most (libzmq's cap) */
#define S_BATCH_MAX     256            /* replies handled per reactor wake-up */
#define S_TICK_MIN_MS   5
#define S_TICK_MAX_MS   50

typedef struct {
    char id [PROTO_ID_LEN + 1];
    char type [PROTO_TYPE_MAX + 1];
    uint8_t *frame;                     /* the encoded request, sent again as is */
    size_t frame_len;
    int64_t deadline_ms;                /* of the current attempt */
    int timeout_ms;
    int attempts;                       /* made so far */
    int max_attempts;
    void *owner;
    bus_call_fn *fn;
    void *arg;
    void *handle;                       /* in deadlines */
} s_call_t;

struct bus_calls_t {
    zloop_t *loop;
    char name [64];
    char *endpoint;
    char server_key [BUS_KEY_Z85_LEN + 1];
    zcert_t *cert;
    zsock_t *sock;                      /* registered with loop while not NULL */
    int timeout_ms;
    int retries;
    size_t max_frame;
    bus_stats_t *stats;                 /* or NULL */
    zhashx_t *calls;                    /* id -> s_call_t (owned here) */
    zlistx_t *deadlines;                /* s_call_t, earliest deadline first */
    bus_alarm_t *timer;                 /* NULL while no timer runs */
    int64_t last_rx_ms;                 /* a frame came from the peer */
    int64_t connected_ms;               /* the current socket was made */
    int busy;                           /* reactor handlers of ours running */
    bool dying;                         /* destroyed while busy: freed on the way out */
};

/*  Free one call (the hash's destructor). */
static void
s_call_free (void **item)
{
    s_call_t *c = (s_call_t *) *item;
    if (c) {
        free (c->frame);
        free (c);
        *item = NULL;
    }
}

/*  Deadline order, for the list. */
static int
s_call_compare (const void *a, const void *b)
{
    const s_call_t *x = a, *y = b;
    return x->deadline_ms < y->deadline_ms ? -1 : x->deadline_ms > y->deadline_ms ? 1 : 0;
}

static void
s_count (bus_calls_t *self, const char *name, uint64_t n)
{
    if (self->stats)
        bus_stats_count (self->stats, name, n);
}

static int s_on_reply (zloop_t *loop, zsock_t *sock, void *arg);
static int s_on_tick (zloop_t *loop, void *arg);

/*  Replace the DEALER (if any) by a fresh one, connected and registered
    with the zloop in the old one's place. Returns 0, BUS_ENOMEM or
    BUS_EINVAL (the endpoint refused); on failure no socket is left and
    the next tick tries again. */
static int
s_connect (bus_calls_t *self)
{
    if (self->sock) {
        zloop_reader_end (self->loop, self->sock);
        zsock_destroy (&self->sock);
    }
    self->connected_ms = zclock_mono ();
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    if (!sock)
        return BUS_ENOMEM;
    zsock_set_linger (sock, 0);
    zsock_set_sndhwm (sock, BUS_CALLS_MAX);
    zsock_set_rcvhwm (sock, BUS_CALLS_MAX);
    zsock_set_rcvtimeo (sock, 0);          /* a receive finding nothing ends the batch */
    zsock_set_maxmsgsize (sock, (int64_t) self->max_frame);
    bus_keys_apply_client (sock, self->cert, self->server_key);
    if (zsock_connect (sock, "%s", self->endpoint)) {
        bus_error ("calls to %s: cannot connect to %s", self->name, self->endpoint);
        zsock_destroy (&sock);
        return BUS_EINVAL;
    }
    if (zloop_reader (self->loop, sock, s_on_reply, self)) {
        zsock_destroy (&sock);
        return BUS_ENOMEM;
    }
    self->sock = sock;
    return 0;
}

/*  Queue one request frame on the DEALER without waiting; one libzmq
    cannot take now (high-water mark, no socket) goes with the next
    attempt. */
static void
s_transmit (bus_calls_t *self, s_call_t *c)
{
    if (!self->sock)
        return;
    zmq_msg_t msg;
    if (zmq_msg_init_size (&msg, c->frame_len))
        return;
    memcpy (zmq_msg_data (&msg), c->frame, c->frame_len);
    if (zmq_msg_send (&msg, zsock_resolve (self->sock), ZMQ_DONTWAIT) < 0)
        zmq_msg_close (&msg);
}

/*  Make sure the deadline timer runs (it stops itself once nothing is in
    flight). */
static void
s_timer_arm (bus_calls_t *self)
{
    if (self->timer)
        return;
    int tick = self->timeout_ms / 10;
    tick = tick < S_TICK_MIN_MS ? S_TICK_MIN_MS : tick > S_TICK_MAX_MS ? S_TICK_MAX_MS : tick;
    self->timer = bus_alarm_new (self->loop, (size_t) tick, 0, s_on_tick, self);
}

/*  Take the call out of flight and run its callback with reply (consumed);
    reply NULL: cancelled, no callback. */
static void
s_finish (bus_calls_t *self, s_call_t *c, proto_msg_t *reply)
{
    zlistx_delete (self->deadlines, c->handle);
    bus_call_fn *fn = c->fn;
    void *arg = c->arg;
    zhashx_delete (self->calls, c->id);         /* frees c */
    if (reply) {
        fn (self, reply, arg);
        proto_msg_destroy (&reply);
    }
}

/*  Free everything (the object is no longer in any handler). */
static void
s_free (bus_calls_t *self)
{
    bus_alarm_end (&self->timer);
    if (self->sock) {
        zloop_reader_end (self->loop, self->sock);
        zsock_destroy (&self->sock);
    }
    zlistx_destroy (&self->deadlines);
    zhashx_destroy (&self->calls);
    free (self->endpoint);
    free (self);
}

/*  Leave a handler of ours: free the object if it was destroyed meanwhile. */
static int
s_leave (bus_calls_t *self)
{
    if (--self->busy == 0 && self->dying) {
        s_free (self);
        return 1;
    }
    return 0;
}

/*  The DEALER is readable: match each reply to its call and run the
    callback, up to S_BATCH_MAX replies per wake-up. */
static int
s_on_reply (zloop_t *loop, zsock_t *unused, void *arg)
{
    bus_calls_t *self = arg;
    self->busy++;
    for (int i = 0; i < S_BATCH_MAX && !self->dying && self->sock; i++) {
        zmq_msg_t frame;
        zmq_msg_init (&frame);
        if (zmq_msg_recv (&frame, zsock_resolve (self->sock), ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (&frame);
            break;
        }
        self->last_rx_ms = zclock_mono ();
        proto_msg_t *msg = NULL;
        char err [160];
        int rc = proto_msg_decode (&msg, zmq_msg_data (&frame), zmq_msg_size (&frame),
                                   self->max_frame, NULL, err, sizeof err);
        zmq_msg_close (&frame);
        if (rc || msg->kind != PROTO_KIND_REPLY) {
            bus_warn ("calls to %s: undecodable reply: %s", self->name, rc ? err : "not a reply");
            proto_msg_destroy (&msg);
            continue;
        }
        s_call_t *c = msg->corr [0] ? zhashx_lookup (self->calls, msg->corr) : NULL;
        if (!c) {
            s_count (self, "calls_late", 1);   /* answered, cancelled, or a repeat's twin */
            proto_msg_destroy (&msg);
            continue;
        }
        s_finish (self, c, msg);
    }
    s_leave (self);
    return 0;
}

/*  The deadline timer: fail the calls out of attempts (a `timeout` reply),
    send the others whose attempt expired again; when the peer has been
    silent for a whole timeout, replace the connection first and send
    everything in flight on the new one. */
static int
s_on_tick (zloop_t *loop, void *arg)
{
    bus_calls_t *self = arg;
    if (zhashx_size (self->calls) == 0) {
        bus_alarm_end (&self->timer);
        return 0;
    }
    self->busy++;
    int64_t now = zclock_mono ();
    s_call_t *head = zlistx_first (self->deadlines);
    bool expired = head && head->deadline_ms <= now;
    int64_t heard = self->last_rx_ms > self->connected_ms ? self->last_rx_ms : self->connected_ms;
    bool reconnect = !self->sock || (expired && now - heard >= self->timeout_ms);
    zlistx_t *again = zlistx_new ();
    s_call_t *c;
    while (!self->dying && (c = zlistx_first (self->deadlines)) && c->deadline_ms <= now) {
        if (c->attempts >= c->max_attempts) {
            char message [200];
            snprintf (message, sizeof message, "no reply to %s from %s after %d attempts",
                      c->type, self->name, c->attempts);
            proto_msg_t *reply = proto_reply_error_id (c->id, PROTO_ERR_TIMEOUT, message);
            if (reply)
                snprintf (reply->type, sizeof reply->type, "%s", c->type);
            s_count (self, "calls_timeout", 1);
            if (reply)
                s_finish (self, c, reply);
            else
                s_finish (self, c, NULL);      /* out of memory: logged by nobody; rare */
            continue;
        }
        c->attempts++;
        c->deadline_ms = now + c->timeout_ms;
        zlistx_reorder (self->deadlines, c->handle, false);
        s_count (self, "calls_retried", 1);
        if (again)
            zlistx_add_end (again, c->id);
    }
    if (!self->dying && reconnect && zhashx_size (self->calls) > 0) {
        bus_warn ("calls to %s: no answer for %lld ms, connecting again to %s", self->name,
                  (long long) (now - heard), self->endpoint);
        s_count (self, "calls_reconnects", 1);
        if (s_connect (self) == 0)
            for (c = zlistx_first (self->deadlines); c; c = zlistx_next (self->deadlines))
                s_transmit (self, c);
    }
    else
    if (!self->dying && again)
        for (const char *id = zlistx_first (again); id; id = zlistx_next (again))
            if ((c = zhashx_lookup (self->calls, id)))
                s_transmit (self, c);
    zlistx_destroy (&again);
    s_leave (self);
    return 0;
}

bus_calls_t *
bus_calls_new (zloop_t *loop, const char *name, const char *endpoint, const char *server_key,
               zcert_t *cert, int timeout_ms, int retries, bus_stats_t *stats)
{
    if (!loop || !endpoint || !server_key || !cert || strlen (server_key) != BUS_KEY_Z85_LEN) {
        bus_error ("calls: bad argument (loop, endpoint, server key and cert are required)");
        return NULL;
    }
    bus_calls_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->loop = loop;
    snprintf (self->name, sizeof self->name, "%s", name ? name : endpoint);
    self->endpoint = strdup (endpoint);
    snprintf (self->server_key, sizeof self->server_key, "%s", server_key);
    self->cert = cert;
    self->timeout_ms = timeout_ms > 0 ? timeout_ms : 2500;
    self->retries = retries >= 0 ? retries : 3;
    self->max_frame = S_MAX_FRAME;
    self->stats = stats;
    self->calls = zhashx_new ();
    self->deadlines = zlistx_new ();
    if (!self->endpoint || !self->calls || !self->deadlines) {
        s_free (self);
        return NULL;
    }
    zhashx_set_destructor (self->calls, s_call_free);
    zlistx_set_comparator (self->deadlines, s_call_compare);
    if (s_connect (self)) {
        s_free (self);
        return NULL;
    }
    return self;
}

bus_calls_t *
bus_calls_for (bus_service_t *svc, const char *service)
{
    bus_config_t *config = bus_service_config (svc);
    const char *section = bus_service_section (service);
    char key [BUS_KEY_Z85_LEN + 1];
    if (!section) {
        bus_error ("calls: no service '%s'", service);
        return NULL;
    }
    if (bus_keys_public (bus_config_str (config, "sanctum", "keys_dir"), bus_service_name (service), key)) {
        bus_error ("calls: no public key for %s under %s", service,
                   bus_config_str (config, "sanctum", "keys_dir"));
        return NULL;
    }
    /* replies are decoded up to 64 MiB, as bus_client does: a reply may
       be larger than the requests the config's max_frame bounds */
    return bus_calls_new (bus_service_loop (svc), bus_service_name (service),
                          bus_config_str (config, section, "rpc"), key, bus_service_cert (svc),
                          (int) bus_config_int (config, "sanctum", "rpc_timeout_ms"),
                          (int) bus_config_int (config, "sanctum", "rpc_retries"), bus_service_stats (svc));
}

void
bus_calls_destroy (bus_calls_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    bus_calls_t *self = *self_p;
    *self_p = NULL;
    if (self->busy) {
        /* inside one of our handlers: cancel everything now, free on the
           way out of the handler */
        zlistx_purge (self->deadlines);
        zhashx_purge (self->calls);
        self->dying = true;
        return;
    }
    s_free (self);
}

int
bus_calls_send (bus_calls_t *self, const char *type, json_t *body, const bus_call_opts_t *opts,
                bus_call_fn *fn, void *arg, char id_out [PROTO_ID_LEN + 1])
{
    int rc = 0;
    proto_msg_t *req = NULL;
    s_call_t *c = NULL;
    const proto_type_t *spec = type ? proto_type_find (type) : NULL;
    if (!fn || !spec || spec->kind != PROTO_KIND_REQ) {
        bus_error ("calls to %s: %s", self->name, !fn ? "no callback"
                   : "not a request type of the catalogue");
        rc = BUS_EINVAL;
        goto done;
    }
    if (self->dying) {
        rc = BUS_ESTATE;
        goto done;
    }
    if (zhashx_size (self->calls) >= BUS_CALLS_MAX) {
        rc = BUS_EFULL;
        goto done;
    }
    req = proto_msg_new (PROTO_KIND_REQ, type);
    c = calloc (1, sizeof *c);
    if (!req || !c) {
        rc = BUS_ENOMEM;
        goto done;
    }
    req->body = body ? body : json_object ();
    body = NULL;
    if (opts && opts->traceparent && *opts->traceparent)
        proto_traceparent_child (req->traceparent, opts->traceparent);
    else
        proto_traceparent_new (req->traceparent);
    if ((rc = proto_msg_encode (req, &c->frame, &c->frame_len)))
        goto done;
    memcpy (c->id, req->id, sizeof c->id);
    snprintf (c->type, sizeof c->type, "%s", type);
    c->timeout_ms = opts && opts->timeout_ms > 0 ? opts->timeout_ms : self->timeout_ms;
    c->max_attempts = opts && opts->attempts > 0 ? opts->attempts : self->retries + 1;
    c->attempts = 1;
    c->deadline_ms = zclock_mono () + c->timeout_ms;
    c->owner = opts ? opts->owner : NULL;
    c->fn = fn;
    c->arg = arg;
    if (zhashx_insert (self->calls, c->id, c)) {
        rc = BUS_EINVAL;                        /* a ULID twice: cannot happen */
        goto done;
    }
    c->handle = zlistx_insert (self->deadlines, c, false);
    s_transmit (self, c);
    s_timer_arm (self);
    s_count (self, "calls_sent", 1);
    if (id_out)
        memcpy (id_out, c->id, PROTO_ID_LEN + 1);
    c = NULL;
done:
    if (c) {
        free (c->frame);
        free (c);
    }
    json_decref (body);
    proto_msg_destroy (&req);
    return rc;
}

int
bus_calls_cancel (bus_calls_t *self, const char *id)
{
    s_call_t *c = id ? zhashx_lookup (self->calls, id) : NULL;
    if (!c)
        return BUS_ENOTFOUND;
    s_finish (self, c, NULL);
    return 0;
}

size_t
bus_calls_cancel_owner (bus_calls_t *self, void *owner)
{
    if (!owner)
        return 0;
    zlistx_t *doomed = zlistx_new ();
    if (!doomed)
        return 0;
    for (s_call_t *c = zlistx_first (self->deadlines); c; c = zlistx_next (self->deadlines))
        if (c->owner == owner)
            zlistx_add_end (doomed, c);
    size_t n = zlistx_size (doomed);
    for (s_call_t *c = zlistx_first (doomed); c; c = zlistx_next (doomed))
        s_finish (self, c, NULL);
    zlistx_destroy (&doomed);
    return n;
}

size_t
bus_calls_inflight (bus_calls_t *self)
{
    return zhashx_size (self->calls);
}

const char *
bus_calls_name (bus_calls_t *self)
{
    return self->name;
}

void
bus_call_reply_to (bus_request_t *req, proto_msg_t *reply)
{
    if (reply->ok) {
        bus_reply_ok (req, reply->body ? json_deep_copy (reply->body) : NULL);
        return;
    }
    const char *code = json_string_value (json_object_get (reply->error, "code"));
    const char *message = json_string_value (json_object_get (reply->error, "message"));
    json_t *extra = reply->error ? json_deep_copy (reply->error) : NULL;
    if (extra) {
        json_object_del (extra, "code");
        json_object_del (extra, "message");
    }
    bus_reply_error_with (req, code ? code : PROTO_ERR_INTERNAL, extra, "%s",
                          message ? message : "(no message)");
}
