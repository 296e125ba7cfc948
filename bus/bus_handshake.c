/*  bus_handshake.c — socket monitors for CURVE handshakes. */
#include "bus_handshake.h"
#include "bus_error.h"
#include "bus_reader.h"

#include <inttypes.h>
#include <stdatomic.h>

#define S_WATCH_MAX     4          /* sockets one service watches */
#define S_LOG_LINES     5          /* lines per socket and reason ... */
#define S_LOG_WINDOW_MS 10000      /* ... per window */
#define S_LOG_KEYS      64

typedef struct {
    bus_handshake_t *owner;
    zsock_t *sock;                 /* watched, borrowed */
    zsock_t *pair;                 /* its monitor's events */
    bus_reader_t *reader;          /* of pair, on the loop */
    char name [16];
} s_watch_t;

struct bus_handshake_t {
    zloop_t *loop;
    bus_stats_t *stats;
    bus_log_limit_t *limit;
    s_watch_t watches [S_WATCH_MAX];
    int nwatch;
};


zsock_t *
bus_monitor_start (zsock_t *sock, int mask, const char *tag)
{
    /* a socket made after another is destroyed may get its address, and
       the old monitor's endpoint may still be bound: a counter, too */
    static atomic_uint_fast64_t serial;
    char endpoint [128];
    snprintf (endpoint, sizeof endpoint, "inproc://sanctum-monitor-%s-%p-%" PRIu64, tag, (void *) sock,
              (uint64_t) atomic_fetch_add (&serial, 1));
    if (zmq_socket_monitor (zsock_resolve (sock), endpoint, mask))
        return NULL;
    zsock_t *pair = zsock_new (ZMQ_PAIR);
    if (!pair || zsock_connect (pair, "%s", endpoint)) {
        zmq_socket_monitor (zsock_resolve (sock), NULL, 0);
        zsock_destroy (&pair);
        return NULL;
    }
    zsock_set_rcvtimeo (pair, 0);
    return pair;
}


int
bus_monitor_read (zsock_t *pair, uint16_t *event, uint32_t *value, char *addr, size_t addr_len)
{
    zmsg_t *msg = zmsg_recv (pair);
    if (!msg)
        return BUS_ENOTFOUND;
    zframe_t *head = zmsg_first (msg);
    zframe_t *where = zmsg_next (msg);
    int rc = BUS_EINVAL;
    if (head && zframe_size (head) == 6) {
        memcpy (event, zframe_data (head), 2);
        memcpy (value, zframe_data (head) + 2, 4);
        size_t len = where ? zframe_size (where) : 0;
        if (len >= addr_len)
            len = addr_len - 1;
        if (len)
            memcpy (addr, zframe_data (where), len);
        addr [len] = 0;
        rc = 0;
    }
    zmsg_destroy (&msg);
    return rc;
}


const char *
bus_handshake_protocol_text (uint32_t value)
{
    switch (value) {
        case ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
            return "cryptographic error (the client does not use this server's public key)";
        case ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            return "mechanism mismatch (the peer does not use CURVE)";
        case ZMQ_PROTOCOL_ERROR_ZMTP_KEY_EXCHANGE:
            return "key exchange failed";
        case ZMQ_PROTOCOL_ERROR_ZMTP_UNEXPECTED_COMMAND:
        case ZMQ_PROTOCOL_ERROR_ZMTP_INVALID_SEQUENCE:
            return "unexpected handshake command";
        default:
            if (value >= ZMQ_PROTOCOL_ERROR_ZMTP_MALFORMED_COMMAND_UNSPECIFIED
            &&  value <= ZMQ_PROTOCOL_ERROR_ZMTP_INVALID_METADATA)
                return "malformed handshake command";
            if ((value & 0xF0000000u) == ZMQ_PROTOCOL_ERROR_ZAP_UNSPECIFIED)
                return "ZAP handler error";
            return "protocol error";
    }
}


bus_handshake_t *
bus_handshake_new (zloop_t *loop, bus_stats_t *stats)
{
    bus_handshake_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->loop = loop;
    self->stats = stats;
    self->limit = bus_log_limit_new (S_LOG_LINES, S_LOG_WINDOW_MS, S_LOG_KEYS);
    if (!self->limit) {
        free (self);
        return NULL;
    }
    return self;
}


void
bus_handshake_destroy (bus_handshake_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    bus_handshake_t *self = *self_p;
    for (int i = 0; i < self->nwatch; i++) {
        s_watch_t *w = &self->watches [i];
        bus_reader_destroy (&w->reader);
        zmq_socket_monitor (zsock_resolve (w->sock), NULL, 0);
        zsock_destroy (&w->pair);
    }
    bus_log_limit_flush (self->limit);
    bus_log_limit_destroy (&self->limit);
    free (self);
    *self_p = NULL;
}


/*  Monitor events of one socket: count, and log the failures; 64 at a
    time, the rest on the reactor's next turn (bus_reader_fn). */
static int
s_on_event (zloop_t *loop, zsock_t *pair, void *arg)
{
    s_watch_t *w = arg;
    bus_handshake_t *self = w->owner;
    uint16_t event;
    uint32_t value;
    char addr [256];
    int rc = 0;
    for (int i = 0; i < 64 && (rc = bus_monitor_read (pair, &event, &value, addr, sizeof addr)) != BUS_ENOTFOUND;
         i++) {
        if (rc)
            continue;                   /* not an event: dropped */
        if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
            /* zauth's own line names the key (see bus_auth_start) */
            bus_stats_count (self->stats, "handshakes_refused", 1);
        else
        if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) {
            bus_stats_count (self->stats, "handshakes_failed", 1);
            char reason [32];
            snprintf (reason, sizeof reason, "handshake_0x%08x", value);
            bus_log_limited (self->limit, w->name, reason, BUS_LOG_WARN,
                             json_pack ("{s:s, s:s, s:s}", "socket", w->name, "endpoint", addr,
                                        "reason", "handshake_failed"),
                             "CURVE handshake failed on %s (%s): %s", w->name, addr,
                             bus_handshake_protocol_text (value));
        }
    }
    return rc == BUS_ENOTFOUND ? 0 : 1;
}


int
bus_handshake_watch (bus_handshake_t *self, zsock_t *sock, const char *name)
{
    if (self->nwatch == S_WATCH_MAX)
        return BUS_EFULL;
    s_watch_t *w = &self->watches [self->nwatch];
    w->owner = self;
    w->sock = sock;
    snprintf (w->name, sizeof w->name, "%s", name);
    w->pair = bus_monitor_start (sock, ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL,
                                 name);
    if (!w->pair)
        return BUS_EIO;
    w->reader = bus_reader_new (self->loop, w->pair, s_on_event, w);
    if (!w->reader) {
        zmq_socket_monitor (zsock_resolve (sock), NULL, 0);
        zsock_destroy (&w->pair);
        return BUS_EIO;
    }
    self->nwatch++;
    return 0;
}


void
bus_handshake_flush (bus_handshake_t *self)
{
    if (self)
        bus_log_limit_flush (self->limit);
}
