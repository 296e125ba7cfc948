/*  bus_client.c — DEALER client with retries, and SUB client. */
#include "bus_client.h"

#include <errno.h>
#include "bus_error.h"
#include "bus_handshake.h"
#include "bus_keys.h"
#include "bus_log.h"
#include "bus_service.h"

#define S_MAX_FRAME (64UL << 20)    /* libzmq's cap; bus_sub_for: the config's */
#define S_READY_MAX 10000            /* replies set aside by bus_client_call, unread */
#define S_HANDSHAKE_TRIES 3          /* failed handshakes in a row that fail the requests */
#define S_MONITOR_EVENTS (ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH \
                          | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)

typedef struct {
    char id [PROTO_ID_LEN + 1];
    char type [PROTO_TYPE_MAX + 1];
    zchunk_t *frame;
    int64_t deadline_ms;
    int attempts;
} s_pending_t;

struct bus_client_t {
    char *endpoint;
    char server_key [BUS_KEY_Z85_LEN + 1];
    zcert_t *cert;
    zsock_t *sock;
    zsock_t *monitor;        /* the DEALER's handshake events, or NULL */
    int64_t monitor_read_ms; /* when the monitor was last read (zclock_mono) */
    int handshake_failures;  /* in a row, since the last success */
    int auth_error;          /* BUS_CLIENT_REFUSED / _MISMATCH, or 0 */
    char auth_text [512];
    int timeout_ms;
    int retries;
    zhashx_t *inflight;      /* id -> s_pending_t */
    zlistx_t *ready;         /* proto_msg_t*: replies to return before reading the socket:
                                timeouts, and replies bus_client_call set aside */
    int64_t next_deadline_ms; /* no deadline in flight is earlier; 0 = unknown */
    size_t max_frame;
};

struct bus_sub_t {
    zsock_t *sock;
    size_t max_frame;             /* larger events are skipped, not decoded */
};

static void
s_pending_free (void **item)
{
    s_pending_t *p = (s_pending_t *) *item;
    if (p) {
        zchunk_destroy (&p->frame);
        free (p);
        *item = NULL;
    }
}

/*  Stop watching the DEALER's handshakes. */
static void
s_monitor_stop (bus_client_t *self)
{
    if (self->monitor && self->sock)
        zmq_socket_monitor (zsock_resolve (self->sock), NULL, 0);
    zsock_destroy (&self->monitor);
}

/*  (Re)create the DEALER and connect it, its handshakes watched. */
static int
s_connect (bus_client_t *self)
{
    s_monitor_stop (self);
    zsock_destroy (&self->sock);
    self->handshake_failures = 0;
    self->auth_error = 0;
    self->monitor_read_ms = 0;
    self->sock = zsock_new (ZMQ_DEALER);
    if (!self->sock)
        return BUS_ENOMEM;
    /* without a monitor the client still works, failing by deadlines */
    self->monitor = bus_monitor_start (self->sock, S_MONITOR_EVENTS, "client");
    zsock_set_linger (self->sock, 0);
    zsock_set_sndhwm (self->sock, 100000);
    zsock_set_rcvhwm (self->sock, 100000);
    zsock_set_rcvtimeo (self->sock, 0);       /* receives never block: see bus_client_recv */
    bus_keys_apply_client (self->sock, self->cert, self->server_key);
    return zsock_connect (self->sock, "%s", self->endpoint) == 0 ? 0 : BUS_EINVAL;
}

bus_client_t *
bus_client_new (const char *endpoint, const char *server_key, zcert_t *cert,
                int timeout_ms, int retries)
{
    zsys_init ();
    bus_client_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->endpoint = strdup (endpoint);
    snprintf (self->server_key, sizeof self->server_key, "%s", server_key);
    self->cert = cert;
    self->timeout_ms = timeout_ms > 0 ? timeout_ms : 2500;
    self->retries = retries >= 0 ? retries : 3;
    self->max_frame = S_MAX_FRAME;
    self->inflight = zhashx_new ();
    zhashx_set_destructor (self->inflight, s_pending_free);
    self->ready = zlistx_new ();
    if (!self->endpoint || s_connect (self)) {
        bus_client_destroy (&self);
        return NULL;
    }
    return self;
}

bus_client_t *
bus_client_for (bus_config_t *config, const char *service, zcert_t *cert)
{
    const char *section = bus_service_section (service);
    char key [BUS_KEY_Z85_LEN + 1];
    if (!section || bus_keys_public (bus_config_str (config, "sanctum", "keys_dir"),
                                     bus_service_name (service), key))
        return NULL;
    return bus_client_new (bus_config_str (config, section, "rpc"), key, cert,
                           (int) bus_config_int (config, "sanctum", "rpc_timeout_ms"),
                           (int) bus_config_int (config, "sanctum", "rpc_retries"));
}

void
bus_client_destroy (bus_client_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    bus_client_t *self = *self_p;
    s_monitor_stop (self);
    zsock_destroy (&self->sock);
    zhashx_destroy (&self->inflight);
    if (self->ready) {
        proto_msg_t *msg;
        while ((msg = zlistx_detach (self->ready, NULL)))
            proto_msg_destroy (&msg);
        zlistx_destroy (&self->ready);
    }
    free (self->endpoint);
    free (self);
    *self_p = NULL;
}

int
bus_client_send_raw (bus_client_t *self, const void *data, size_t len)
{
    /* never block: a DEALER whose only peer refused our key has no pipe
       left, and a blocking send would hang the caller for good */
    zframe_t *frame = zframe_new (data, len);
    if (!frame)
        return BUS_ENOMEM;
    if (zframe_send (&frame, self->sock, ZFRAME_DONTWAIT) == 0)
        return 0;
    zframe_destroy (&frame);
    return zmq_errno () == EAGAIN ? BUS_EFULL : BUS_EIO;
}

int
bus_client_send (bus_client_t *self, const char *type, json_t *body, const char *traceparent,
                 char id_out [PROTO_ID_LEN + 1])
{
    /* refused before: a fresh socket, a fresh handshake (the key may have
       been allowed since) */
    if (self->auth_error && s_connect (self))
        return BUS_ENOMEM;
    proto_msg_t *req = proto_msg_new (PROTO_KIND_REQ, type);
    if (!req)
        return BUS_ENOMEM;
    req->body = body ? json_incref (body) : json_object ();
    if (traceparent && *traceparent)
        proto_traceparent_child (req->traceparent, traceparent);
    else
        proto_traceparent_new (req->traceparent);
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = proto_msg_encode (req, &data, &len);
    if (rc == 0) {
        s_pending_t *p = calloc (1, sizeof *p);
        if (!p)
            rc = BUS_ENOMEM;
        else {
            memcpy (p->id, req->id, sizeof p->id);
            snprintf (p->type, sizeof p->type, "%s", type);
            p->frame = zchunk_new (data, len);
            p->deadline_ms = zclock_mono () + self->timeout_ms;
            p->attempts = 1;
            zhashx_update (self->inflight, p->id, p);
            if (p->deadline_ms < self->next_deadline_ms)
                self->next_deadline_ms = p->deadline_ms;
            /* not queued now (no peer yet, or the queue full): it stays in
               flight and goes again when its deadline passes */
            rc = bus_client_send_raw (self, data, len);
            if (rc == BUS_EFULL)
                rc = 0;
            if (id_out)
                memcpy (id_out, req->id, PROTO_ID_LEN + 1);
        }
    }
    free (data);
    proto_msg_destroy (&req);
    return rc;
}

/*  Read the DEALER's handshake events. Returns BUS_EAUTH when the server
    refused our key or the handshake failed S_HANDSHAKE_TRIES times in a
    row: every request in flight is dropped then (libzmq does not retry a
    refused key, and a wrong server key fails every retry alike). The
    monitor is read when force (a poll saw an event) or once a millisecond:
    an empty read costs two system calls, and a caller reading replies as
    they come calls this more than once per reply. */
static int
s_check_handshake (bus_client_t *self, bool force)
{
    if (self->auth_error)
        return BUS_EAUTH;
    int64_t now = zclock_mono ();
    if (!force && now == self->monitor_read_ms)
        return 0;
    self->monitor_read_ms = now;
    uint16_t event;
    uint32_t value;
    char addr [256];
    while (self->monitor && bus_monitor_read (self->monitor, &event, &value, addr, sizeof addr) == 0) {
        const char *our_key = self->cert ? zcert_public_txt (self->cert) : "?";
        if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
            self->handshake_failures = 0;
        else
        if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
            self->auth_error = BUS_CLIENT_REFUSED;
            snprintf (self->auth_text, sizeof self->auth_text,
                      "the server at %s refused our key %s (not in its allow-list; ZAP status %u)",
                      self->endpoint, our_key, value);
        }
        else
        if (++self->handshake_failures >= S_HANDSHAKE_TRIES && !self->auth_error) {
            self->auth_error = BUS_CLIENT_MISMATCH;
            snprintf (self->auth_text, sizeof self->auth_text,
                      "the CURVE handshake with %s failed %d times in a row (%s): the server key we use, "
                      "%s, is not the key of the server there (or it is not a CURVE server)",
                      self->endpoint, self->handshake_failures,
                      event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ? bus_handshake_protocol_text (value)
                                                                  : "the server closed the connection",
                      self->server_key);
        }
    }
    if (!self->auth_error)
        return 0;
    zhashx_purge (self->inflight);
    self->next_deadline_ms = 0;
    return BUS_EAUTH;
}

int
bus_client_auth_error (bus_client_t *self, const char **text)
{
    if (text)
        *text = self->auth_error ? self->auth_text : "";
    return self->auth_error;
}

const char *
bus_client_endpoint (bus_client_t *self)
{
    return self->endpoint;
}

const char *
bus_client_server_key (bus_client_t *self)
{
    return self->server_key;
}

/*  Fail requests out of retries (each becomes a timeout reply queued for
    bus_client_recv) and, if any other request's deadline passed, reopen
    the socket and send everything still in flight again. The requests in
    flight are scanned only once the earliest known deadline has come. */
static void
s_check_deadlines (bus_client_t *self)
{
    int64_t now = zclock_mono ();
    if (now < self->next_deadline_ms)
        return;
    bool expired = false;
    int64_t earliest = INT64_MAX;
    for (s_pending_t *p = zhashx_first (self->inflight); p; p = zhashx_next (self->inflight)) {
        if (p->deadline_ms <= now)
            expired = true;
        if (p->deadline_ms < earliest)
            earliest = p->deadline_ms;
    }
    self->next_deadline_ms = expired ? 0 : earliest;
    if (!expired)
        return;
    zlistx_t *dead = zlistx_new ();
    for (s_pending_t *p = zhashx_first (self->inflight); p; p = zhashx_next (self->inflight))
        if (p->deadline_ms <= now && p->attempts > self->retries)
            zlistx_add_end (dead, p->id);
    for (const char *id = zlistx_first (dead); id; id = zlistx_next (dead)) {
        s_pending_t *p = zhashx_lookup (self->inflight, id);
        char message [160];
        snprintf (message, sizeof message, "no reply to %s from %s after %d attempts",
                  p->type, self->endpoint, p->attempts);
        proto_msg_t *failed = proto_reply_error_id (p->id, PROTO_ERR_TIMEOUT, message);
        if (failed) {
            snprintf (failed->type, sizeof failed->type, "%s", p->type);
            zlistx_add_end (self->ready, failed);
        }
        zhashx_delete (self->inflight, id);
    }
    zlistx_destroy (&dead);
    /* Lazy Pirate: a deadline passed, so the connection is suspect (a peer
       that refused our key is never retried by libzmq): a fresh socket,
       then everything still in flight again */
    s_connect (self);
    for (s_pending_t *p = zhashx_first (self->inflight); p; p = zhashx_next (self->inflight)) {
        if (p->deadline_ms <= now) {
            p->attempts++;
            p->deadline_ms = now + self->timeout_ms;
        }
        bus_client_send_raw (self, zchunk_data (p->frame), zchunk_size (p->frame));
    }
}

/*  The earliest deadline in flight, ms from now (or -1). */
static int64_t
s_next_deadline (bus_client_t *self)
{
    int64_t next = -1, now = zclock_mono ();
    if (self->next_deadline_ms > 0 && self->next_deadline_ms < INT64_MAX)
        return self->next_deadline_ms > now ? self->next_deadline_ms - now : 0;
    for (s_pending_t *p = zhashx_first (self->inflight); p; p = zhashx_next (self->inflight))
        if (next < 0 || p->deadline_ms - now < next)
            next = p->deadline_ms - now;
    return next < 0 ? -1 : next > 0 ? next : 0;
}

int
bus_client_recv (bus_client_t *self, int timeout_ms, proto_msg_t **reply)
{
    *reply = NULL;
    int64_t until = zclock_mono () + (timeout_ms < 0 ? 0 : timeout_ms);
    bool handshake_event = false;
    while (true) {
        if ((*reply = zlistx_detach (self->ready, NULL)))
            return 0;
        if (s_check_handshake (self, handshake_event))
            return BUS_EAUTH;
        handshake_event = false;
        s_check_deadlines (self);
        if ((*reply = zlistx_detach (self->ready, NULL)))
            return 0;
        int64_t wait = until - zclock_mono ();
        int64_t next = s_next_deadline (self);
        if (next >= 0 && next < wait)
            wait = next;
        if (wait < 0)
            wait = 0;
        /* a reply already queued is taken without a system call: the
           socket's receive timeout is 0, and libzmq's non-blocking receive
           checks its mailbox only now and then (ZMQ_EVENTS, by contrast,
           polls it on every call) */
        zframe_t *frame = zframe_recv (self->sock);
        int rc = frame ? 1 : 0;
        if (!frame && zmq_errno () != EAGAIN)
            return BUS_EINTR;
        if (!frame && wait > 0) {
            zmq_pollitem_t items [2] = {
                { zsock_resolve (self->sock), 0, ZMQ_POLLIN, 0 },
                { self->monitor ? zsock_resolve (self->monitor) : NULL, 0, ZMQ_POLLIN, 0 }
            };
            rc = zmq_poll (items, self->monitor ? 2 : 1, (long) wait);
            if (rc < 0)
                return BUS_EINTR;
            if (rc > 0 && !(items [0].revents & ZMQ_POLLIN)) {
                handshake_event = true;
                continue;           /* a handshake event: read at the top */
            }
            if (rc > 0 && !(frame = zframe_recv (self->sock)))
                rc = 0;
        }
        if (rc > 0) {
            proto_msg_t *msg = NULL;
            char err [160];
            int drc = proto_msg_decode (&msg, zframe_data (frame), zframe_size (frame),
                                        self->max_frame, NULL, err, sizeof err);
            zframe_destroy (&frame);
            if (drc || msg->kind != PROTO_KIND_REPLY) {
                bus_warn ("client: undecodable reply from %s: %s", self->endpoint, drc ? err : "not a reply");
                proto_msg_destroy (&msg);
                continue;
            }
            if (msg->corr [0] && zhashx_lookup (self->inflight, msg->corr)) {
                zhashx_delete (self->inflight, msg->corr);
                *reply = msg;
                return 0;
            }
            if (!msg->corr [0] || zhashx_size (self->inflight) == 0) {
                /* an answer to a raw send (or a frame the server could not read) */
                *reply = msg;
                return 0;
            }
            proto_msg_destroy (&msg);          /* a late duplicate of an answered request */
            continue;
        }
        if (zsys_interrupted)
            return BUS_EINTR;
        if (zclock_mono () >= until && s_next_deadline (self) != 0)
            return BUS_ETIMEOUT;
    }
}

zsock_t *
bus_client_sock (bus_client_t *self)
{
    return self->sock;
}

size_t
bus_client_inflight (bus_client_t *self)
{
    return zhashx_size (self->inflight) + zlistx_size (self->ready);
}

int
bus_client_call (bus_client_t *self, const char *type, json_t *body, const char *traceparent,
                 proto_msg_t **reply)
{
    char id [PROTO_ID_LEN + 1];
    *reply = NULL;
    int rc = bus_client_send (self, type, body, traceparent, id);
    if (rc)
        return rc;
    int64_t budget = (int64_t) self->timeout_ms * (self->retries + 1) + 1000;
    int64_t until = zclock_mono () + budget;
    /* replies to other requests in flight are set aside, and handed to
       bus_client_recv afterwards, in the order they came */
    zlistx_t *aside = zlistx_new ();
    if (!aside) {
        zhashx_delete (self->inflight, id);
        return BUS_ENOMEM;
    }
    rc = BUS_ETIMEOUT;
    while (zclock_mono () < until) {
        proto_msg_t *msg = NULL;
        int rrc = bus_client_recv (self, (int) (until - zclock_mono ()), &msg);
        if (rrc) {
            rc = rrc;
            break;
        }
        if (streq (msg->corr, id)) {
            if (!msg->ok && msg->error
                && streq (json_string_value (json_object_get (msg->error, "code")), PROTO_ERR_TIMEOUT)
                && !msg->body)
                proto_msg_destroy (&msg);
            else
                *reply = msg;
            rc = *reply ? 0 : BUS_ETIMEOUT;
            break;
        }
        zlistx_add_end (aside, msg);
    }
    if (rc)
        zhashx_delete (self->inflight, id);
    proto_msg_t *msg;
    while ((msg = zlistx_detach (aside, NULL))) {
        if (zlistx_size (self->ready) < S_READY_MAX)
            zlistx_add_end (self->ready, msg);
        else {
            bus_warn ("client: %d replies set aside and not read; dropping one (%s)", S_READY_MAX, msg->corr);
            proto_msg_destroy (&msg);
        }
    }
    zlistx_destroy (&aside);
    return rc;
}

/* --- subscriber ----------------------------------------------------------- */

bus_sub_t *
bus_sub_new (const char *endpoint, const char *server_key, zcert_t *cert, const char *const *topics)
{
    zsys_init ();
    bus_sub_t *self = calloc (1, sizeof *self);
    if (!self || !(self->sock = zsock_new (ZMQ_SUB))) {
        free (self);
        return NULL;
    }
    self->max_frame = S_MAX_FRAME;
    zsock_set_rcvhwm (self->sock, 100000);
    bus_keys_apply_client (self->sock, cert, server_key);
    if (!topics || !topics [0])
        zsock_set_subscribe (self->sock, "");
    else
        for (size_t i = 0; topics [i]; i++)
            zsock_set_subscribe (self->sock, topics [i]);
    if (zsock_connect (self->sock, "%s", endpoint)) {
        bus_sub_destroy (&self);
        return NULL;
    }
    return self;
}

bus_sub_t *
bus_sub_for (bus_config_t *config, const char *service, zcert_t *cert, const char *const *topics)
{
    const char *section = bus_service_section (service);
    char key [BUS_KEY_Z85_LEN + 1];
    if (!section || bus_keys_public (bus_config_str (config, "sanctum", "keys_dir"),
                                     bus_service_name (service), key))
        return NULL;
    bus_sub_t *self = bus_sub_new (bus_config_str (config, section, "pub"), key, cert, topics);
    if (self)                       /* no service publishes more than it accepts */
        bus_sub_set_max_frame (self, (size_t) bus_config_int (config, "sanctum", "max_frame"));
    return self;
}

void
bus_sub_destroy (bus_sub_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zsock_destroy (&(*self_p)->sock);
    free (*self_p);
    *self_p = NULL;
}

void
bus_sub_set_max_frame (bus_sub_t *self, size_t max_frame)
{
    self->max_frame = max_frame;
}

zsock_t *
bus_sub_sock (bus_sub_t *self)
{
    return self->sock;
}

int
bus_sub_recv (bus_sub_t *self, int timeout_ms, proto_msg_t **event)
{
    *event = NULL;
    zmq_pollitem_t item = { zsock_resolve (self->sock), 0, ZMQ_POLLIN, 0 };
    int rc = zmq_poll (&item, 1, timeout_ms);
    if (rc < 0)
        return BUS_EINTR;
    if (rc == 0)
        return BUS_ETIMEOUT;
    zmsg_t *msg = zmsg_recv (self->sock);
    if (!msg)
        return BUS_EINTR;
    zframe_t *body = zmsg_size (msg) == 2 ? zmsg_last (msg) : NULL;
    char err [160];
    int drc = body ? proto_msg_decode (event, zframe_data (body), zframe_size (body), self->max_frame,
                                       NULL, err, sizeof err)
                   : BUS_EINVAL;
    if (drc)
        bus_warn ("event skipped: %s", body ? err : "not a [topic, event] frame pair");
    zmsg_destroy (&msg);
    if (drc == 0 && (*event)->kind != PROTO_KIND_EVT) {
        proto_msg_destroy (event);
        drc = BUS_EINVAL;
    }
    return drc ? BUS_EINVAL : 0;
}
