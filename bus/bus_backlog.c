/*  bus_backlog.c — replies held while their connection's queue is full
    (see bus_backlog.h). */
#include "bus_backlog.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bus_alarm.h"

#define S_FLUSH_MS 1                    /* how often held replies are tried again */

typedef struct s_reply_t s_reply_t;
struct s_reply_t {
    s_reply_t *next;
    size_t route_len, len;
    uint8_t bytes [];                   /* route, then data */
};

/*  What is held for one connection, oldest first. */
typedef struct {
    s_reply_t *head, *tail;
    size_t count, bytes;
    int64_t moved_ms;                   /* when it last took one (or began to hold) */
} s_peer_t;

struct bus_backlog_t {
    zloop_t *loop;
    zsock_t *router;
    size_t peer_bytes;
    int64_t hold_ms;
    bus_stats_t *stats;
    bus_backlog_sent_fn *sent;
    void *arg;
    zhashx_t *peers;                    /* hex of the first routing frame -> s_peer_t */
    size_t held;                        /* replies, all peers */
    bus_alarm_t *flush;                 /* armed while anything is held */
};

static void
s_count (bus_backlog_t *self, const char *counter, uint64_t n)
{
    if (self->stats && n)
        bus_stats_count (self->stats, counter, n);
}

/*  Free a list of replies. */
static void
s_replies_free (s_reply_t *r)
{
    for (s_reply_t *next; r; r = next) {
        next = r->next;
        free (r);
    }
}

static void
s_peer_destroy (void **item)
{
    s_peer_t *peer = *item;
    if (!peer)
        return;
    s_replies_free (peer->head);
    free (peer);
    *item = NULL;
}

/*  The connection's key: its first routing frame, in hex. */
static void
s_key (const uint8_t *route, char key [2 * 255 + 1])
{
    static const char hex [] = "0123456789abcdef";
    size_t n = route [0];
    for (size_t i = 0; i < n; i++) {
        key [2 * i] = hex [route [1 + i] >> 4];
        key [2 * i + 1] = hex [route [1 + i] & 15];
    }
    key [2 * n] = 0;
}

/*  One try: 0 sent, else errno (EAGAIN: the connection's queue is full,
    EHOSTUNREACH: no such connection). Only the first frame can be
    refused: once it is taken, the rest of the message is too. */
static int
s_try (bus_backlog_t *self, const uint8_t *route, size_t route_len, const uint8_t *data, size_t len)
{
    void *router = zsock_resolve (self->router);
    int flags = ZMQ_DONTWAIT;
    for (size_t at = 0; at < route_len; at += 1 + (size_t) route [at]) {
        if (zmq_send (router, route + at + 1, route [at], flags | ZMQ_SNDMORE) < 0)
            return zmq_errno ();
        flags = 0;
    }
    return zmq_send (router, data, len, flags) < 0 ? zmq_errno () : 0;
}

/*  Drop what is held for peer (gone, or stalled), counting it as counter. */
static void
s_drop_all (bus_backlog_t *self, s_peer_t *peer, const char *counter)
{
    s_count (self, counter, peer->count);
    self->held -= peer->count;
    s_replies_free (peer->head);
    peer->head = peer->tail = NULL;
    peer->count = peer->bytes = 0;
}

/*  Send what peer's connection takes now; true if it sent any. */
static bool
s_peer_flush (bus_backlog_t *self, s_peer_t *peer, int64_t now)
{
    bool sent = false;
    while (peer->head) {
        s_reply_t *r = peer->head;
        int err = s_try (self, r->bytes, r->route_len, r->bytes + r->route_len, r->len);
        if (err == EAGAIN) {
            if (now - peer->moved_ms >= self->hold_ms)
                s_drop_all (self, peer, "replies_dropped_stalled");
            break;
        }
        if (err) {
            s_drop_all (self, peer, "replies_unroutable");
            break;
        }
        sent = true;
        peer->head = r->next;
        if (!peer->head)
            peer->tail = NULL;
        peer->count--;
        peer->bytes -= r->route_len + r->len;
        peer->moved_ms = now;
        self->held--;
        free (r);
    }
    return sent;
}

static int
s_on_flush (zloop_t *loop, void *arg)
{
    bus_backlog_t *self = arg;
    int64_t now = zclock_mono ();
    bool sent = false, emptied = false;
    for (s_peer_t *peer = zhashx_first (self->peers); peer; peer = zhashx_next (self->peers)) {
        sent |= s_peer_flush (self, peer, now);
        emptied |= !peer->head;
    }
    /* forget the connections with nothing held (not while iterating) */
    if (emptied) {
        zlistx_t *empty = zlistx_new ();
        for (s_peer_t *peer = zhashx_first (self->peers); empty && peer; peer = zhashx_next (self->peers))
            if (!peer->head)
                zlistx_add_end (empty, (void *) zhashx_cursor (self->peers));
        for (const char *key = empty ? zlistx_first (empty) : NULL; key; key = zlistx_next (empty))
            zhashx_delete (self->peers, key);
        zlistx_destroy (&empty);
    }
    if (self->held == 0)
        bus_alarm_end (&self->flush);
    if (sent && self->sent)
        self->sent (self->arg);
    return 0;
}

bus_backlog_t *
bus_backlog_new (zloop_t *loop, zsock_t *router, size_t peer_bytes, int64_t hold_ms,
                 bus_stats_t *stats, bus_backlog_sent_fn *sent, void *arg)
{
    if (!loop || !router || zsock_type (router) != ZMQ_ROUTER)
        return NULL;
    bus_backlog_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->loop = loop;
    self->router = router;
    self->peer_bytes = peer_bytes;
    self->hold_ms = hold_ms;
    self->stats = stats;
    self->sent = sent;
    self->arg = arg;
    self->peers = zhashx_new ();
    if (!self->peers) {
        free (self);
        return NULL;
    }
    zhashx_set_destructor (self->peers, s_peer_destroy);
    zsock_set_router_mandatory (router, 1);
    return self;
}

void
bus_backlog_destroy (bus_backlog_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    bus_backlog_t *self = *self_p;
    bus_alarm_end (&self->flush);
    zhashx_destroy (&self->peers);
    free (self);
    *self_p = NULL;
}

int
bus_backlog_send (bus_backlog_t *self, const uint8_t *route, size_t route_len,
                  const uint8_t *data, size_t len)
{
    if (route_len == 0 || (size_t) route [0] + 1 > route_len) {
        s_count (self, "replies_unroutable", 1);
        return -1;
    }
    /* nothing held (nearly always): no lookup before the send */
    char key [2 * 255 + 1];
    s_peer_t *peer = NULL;
    if (self->held) {
        s_key (route, key);
        peer = zhashx_lookup (self->peers, key);
    }
    if (!peer || !peer->head) {
        int err = s_try (self, route, route_len, data, len);
        if (err == 0)
            return 0;
        if (err != EAGAIN) {
            s_count (self, "replies_unroutable", 1);
            return -1;
        }
        if (!self->held)
            s_key (route, key);
        peer = zhashx_lookup (self->peers, key);
    }
    /* the connection's queue is full, or it has replies held before this */
    if ((peer ? peer->bytes : 0) + route_len + len > self->peer_bytes) {
        s_count (self, "replies_dropped_full", 1);
        return -1;
    }
    s_reply_t *r = malloc (sizeof *r + route_len + len);
    if (!r) {
        s_count (self, "replies_dropped_full", 1);
        return -1;
    }
    if (!peer) {
        peer = calloc (1, sizeof *peer);
        if (!peer) {
            free (r);
            s_count (self, "replies_dropped_full", 1);
            return -1;
        }
        zhashx_insert (self->peers, key, peer);
    }
    if (!peer->head)
        peer->moved_ms = zclock_mono ();
    r->next = NULL;
    r->route_len = route_len;
    r->len = len;
    memcpy (r->bytes, route, route_len);
    memcpy (r->bytes + route_len, data, len);
    if (peer->tail)
        peer->tail->next = r;
    else
        peer->head = r;
    peer->tail = r;
    peer->count++;
    peer->bytes += route_len + len;
    self->held++;
    s_count (self, "replies_held", 1);
    if (!self->flush)
        self->flush = bus_alarm_new (self->loop, S_FLUSH_MS, 0, s_on_flush, self);
    return 0;
}

size_t
bus_backlog_held (const bus_backlog_t *self)
{
    return self ? self->held : 0;
}
