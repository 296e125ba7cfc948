/*  tele_sse.c — the ring of recent bus events and the server-sent event
    clients of GET /api/events.

    Every event the follower applies is pushed into a ring (the last
    [telemetry] sse_history of them, in arrival order) under the id
    "<pub>/<seq>" — its publisher and seq, unique on the bus — and sent to
    every client as one SSE message (no `event:` line: the bus type is
    inside the data). A browser that reconnects sends the last id back
    (Last-Event-ID); what followed it in the ring is sent first. An id the
    ring no longer holds gets a `resync` event instead: the client reloads
    its state from the read endpoints.

    A client never slows the bus: each stream's unsent bytes are bounded
    (the listener's max_stream_buffer); an event that does not fit is
    dropped for that client, the client is marked lagging and gets nothing
    more until a `resync` notice fits (tried at each later event and at
    each heartbeat), which tells it how many events it lost.
*/
#include "tele_internal.h"

typedef struct {
    char *id;
    char *type;
    char *data;
} s_entry_t;

struct tele_ring_t {
    s_entry_t *entries;
    size_t capacity;
    int64_t end;               /* absolute position one past the newest */
    zhashx_t *index;           /* id -> position + 1 */
};

tele_ring_t *
tele_ring_new (size_t capacity)
{
    if (capacity == 0)
        return NULL;
    tele_ring_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->entries = calloc (capacity, sizeof *self->entries);
    self->index = zhashx_new ();
    if (!self->entries || !self->index) {
        tele_ring_destroy (&self);
        return NULL;
    }
    self->capacity = capacity;
    return self;
}

void
tele_ring_destroy (tele_ring_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    tele_ring_t *self = *self_p;
    for (size_t i = 0; self->entries && i < self->capacity; i++) {
        free (self->entries [i].id);
        free (self->entries [i].type);
        free (self->entries [i].data);
    }
    free (self->entries);
    zhashx_destroy (&self->index);
    free (self);
    *self_p = NULL;
}

int64_t
tele_ring_push (tele_ring_t *self, const char *id, const char *type, char *data)
{
    char *id_copy = strdup (id), *type_copy = strdup (type);
    if (!id_copy || !type_copy || !data) {
        free (id_copy);
        free (type_copy);
        free (data);
        return -1;
    }
    s_entry_t *e = &self->entries [self->end % (int64_t) self->capacity];
    if (e->id)
        zhashx_delete (self->index, e->id);
    free (e->id);
    free (e->type);
    free (e->data);
    e->id = id_copy;
    e->type = type_copy;
    e->data = data;
    int64_t pos = self->end++;
    zhashx_update (self->index, id_copy, (void *) (intptr_t) (pos + 1));
    return pos;
}

int64_t
tele_ring_find (tele_ring_t *self, const char *id)
{
    intptr_t v = (intptr_t) zhashx_lookup (self->index, id);
    return v ? (int64_t) v - 1 : -1;
}

int64_t
tele_ring_begin (tele_ring_t *self)
{
    return self->end > (int64_t) self->capacity ? self->end - (int64_t) self->capacity : 0;
}

int64_t
tele_ring_end (tele_ring_t *self)
{
    return self->end;
}

bool
tele_ring_get (tele_ring_t *self, int64_t pos, const char **id, const char **type, const char **data)
{
    if (pos < tele_ring_begin (self) || pos >= self->end)
        return false;
    s_entry_t *e = &self->entries [pos % (int64_t) self->capacity];
    if (id)
        *id = e->id;
    if (type)
        *type = e->type;
    if (data)
        *data = e->data;
    return true;
}

const char *
tele_ring_last_id (tele_ring_t *self)
{
    const char *id = "";
    if (self->end > 0)
        tele_ring_get (self, self->end - 1, &id, NULL, NULL);
    return id;
}

/* ---- clients ------------------------------------------------------------- */

typedef struct {
    tele_hub_t *hub;
    bus_http_exchange_t *ex;
    bool lagging;              /* an event did not fit: nothing more until a resync fits */
    uint64_t missed;           /* events dropped since the last notice */
} s_client_t;

struct tele_hub_t {
    tele_ring_t *ring;
    zlistx_t *clients;         /* s_client_t, owned */
    uint64_t dropped;
    uint64_t resyncs;
};

tele_hub_t *
tele_hub_new (tele_ring_t *ring)
{
    tele_hub_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->ring = ring;
    self->clients = zlistx_new ();
    if (!self->clients) {
        free (self);
        return NULL;
    }
    return self;
}

void
tele_hub_destroy (tele_hub_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    tele_hub_t *self = *self_p;
    s_client_t *c = zlistx_first (self->clients);
    while (c) {
        free (c);
        c = zlistx_next (self->clients);
    }
    zlistx_destroy (&self->clients);
    free (self);
    *self_p = NULL;
}

/*  The stream ended (the client left, the server is going): forget it. */
static void
s_gone (bus_http_exchange_t *ex, void *arg)
{
    s_client_t *c = arg;
    void *handle = zlistx_find (c->hub->clients, c);
    if (handle)
        zlistx_delete (c->hub->clients, handle);
    free (c);
}

/*  Try the resync notice of a lagging client; true when it went. */
static bool
s_try_resync (tele_hub_t *self, s_client_t *c, const char *reason)
{
    char data [256];
    snprintf (data, sizeof data, "{\"reason\":\"%s\",\"missed\":%" PRIu64 ",\"last_id\":\"%s\"}",
              reason, c->missed, tele_ring_last_id (self->ring));
    if (bus_http_sse_send (c->ex, NULL, "resync", data) != 0)
        return false;
    c->lagging = false;
    c->missed = 0;
    self->resyncs++;
    return true;
}

/*  Send the ring's entry at pos to one client, or count it dropped. */
static void
s_send_one (tele_hub_t *self, s_client_t *c, int64_t pos)
{
    const char *id, *type, *data;
    if (!tele_ring_get (self->ring, pos, &id, &type, &data))
        return;
    if (c->lagging) {
        c->missed++;
        self->dropped++;
        return;
    }
    int rc = bus_http_sse_send (c->ex, id, NULL, data);
    if (rc == BUS_EFULL) {
        c->lagging = true;
        c->missed++;
        self->dropped++;
        bus_debug ("telemetry: SSE client %s is slow: events dropped until it catches up",
                   bus_http_peer (c->ex));
    }
}

int
tele_hub_attach (tele_hub_t *self, bus_http_exchange_t *ex, const char *last_id)
{
    s_client_t *c = calloc (1, sizeof *c);
    if (!c)
        return BUS_ENOMEM;
    c->hub = self;
    c->ex = ex;
    int rc = bus_http_header_add (ex, "X-Accel-Buffering", "no");
    if (rc == 0)
        rc = bus_http_stream_open (ex, 200, "text/event-stream; charset=utf-8", s_gone, c);
    if (rc) {
        free (c);
        return rc;
    }
    if (!zlistx_add_end (self->clients, c)) {
        bus_http_stream_close (ex);
        free (c);
        return 0;
    }
    bus_http_stream_write (ex, "retry: 2000\n\n", 13);
    int64_t from = -1;
    if (last_id && *last_id) {
        int64_t at = tele_ring_find (self->ring, last_id);
        if (at >= 0)
            from = at + 1;
        else {
            c->lagging = true;
            s_try_resync (self, c, "unknown_last_event_id");
        }
    }
    char hello [256];
    snprintf (hello, sizeof hello, "{\"last_id\":\"%s\",\"resumed\":%s}", tele_ring_last_id (self->ring),
              from >= 0 ? "true" : "false");
    bus_http_sse_send (ex, NULL, "hello", hello);
    for (int64_t pos = from; from >= 0 && pos < tele_ring_end (self->ring); pos++)
        s_send_one (self, c, pos);
    return 0;
}

void
tele_hub_broadcast (tele_hub_t *self)
{
    int64_t pos = tele_ring_end (self->ring) - 1;
    s_client_t *c = zlistx_first (self->clients);
    while (c) {
        if (c->lagging)
            s_try_resync (self, c, "slow_client");
        s_send_one (self, c, pos);
        c = zlistx_next (self->clients);
    }
}

void
tele_hub_heartbeat (tele_hub_t *self)
{
    /* a write may find a client gone, whose callback deletes it from the
       list: walk a copy of the list of clients */
    size_t n = zlistx_size (self->clients), i = 0;
    if (n == 0)
        return;
    s_client_t **all = calloc (n, sizeof *all);
    if (!all)
        return;
    for (s_client_t *c = zlistx_first (self->clients); c && i < n; c = zlistx_next (self->clients))
        all [i++] = c;
    for (size_t k = 0; k < i; k++) {
        s_client_t *c = all [k];
        if (!zlistx_find (self->clients, c))
            continue;
        if (c->lagging)
            s_try_resync (self, c, "slow_client");
        else
            bus_http_stream_write (c->ex, ": ping\n\n", 8);
    }
    free (all);
}

size_t
tele_hub_clients (tele_hub_t *self)
{
    return zlistx_size (self->clients);
}

uint64_t
tele_hub_dropped (tele_hub_t *self)
{
    return self->dropped;
}

uint64_t
tele_hub_resyncs (tele_hub_t *self)
{
    return self->resyncs;
}
