/*  bus_stats.c — counters and log2 latency histograms. */
#include "bus_stats.h"

#include <czmq.h>

typedef struct {
    uint64_t count;
    uint64_t sum;
    uint64_t buckets [BUS_STATS_BUCKETS];   /* bucket i: us < 2^i */
} s_hist_t;

struct bus_stats_t {
    zhashx_t *counters;     /* name -> uint64_t* */
    zhashx_t *hists;        /* name -> s_hist_t* */
};

static void
s_free (void **item)
{
    free (*item);
    *item = NULL;
}

bus_stats_t *
bus_stats_new (void)
{
    bus_stats_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->counters = zhashx_new ();
    self->hists = zhashx_new ();
    zhashx_set_destructor (self->counters, s_free);
    zhashx_set_destructor (self->hists, s_free);
    return self;
}

void
bus_stats_destroy (bus_stats_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zhashx_destroy (&(*self_p)->counters);
    zhashx_destroy (&(*self_p)->hists);
    free (*self_p);
    *self_p = NULL;
}

void
bus_stats_count (bus_stats_t *self, const char *name, uint64_t n)
{
    uint64_t *c = zhashx_lookup (self->counters, name);
    if (!c) {
        c = calloc (1, sizeof *c);
        if (!c)
            return;
        zhashx_insert (self->counters, name, c);
    }
    *c += n;
}

uint64_t
bus_stats_get (bus_stats_t *self, const char *name)
{
    uint64_t *c = zhashx_lookup (self->counters, name);
    return c ? *c : 0;
}

void
bus_stats_latency (bus_stats_t *self, const char *name, int64_t us)
{
    s_hist_t *h = zhashx_lookup (self->hists, name);
    if (!h) {
        h = calloc (1, sizeof *h);
        if (!h)
            return;
        zhashx_insert (self->hists, name, h);
    }
    if (us < 0)
        us = 0;
    int b = 0;
    while (b < BUS_STATS_BUCKETS - 1 && (uint64_t) us >= (1ULL << b))
        b++;
    h->buckets [b]++;
    h->count++;
    h->sum += (uint64_t) us;
}

json_t *
bus_stats_json (bus_stats_t *self)
{
    json_t *counters = json_object ();
    json_t *lat = json_object ();
    for (uint64_t *c = zhashx_first (self->counters); c; c = zhashx_next (self->counters))
        json_object_set_new (counters, (const char *) zhashx_cursor (self->counters),
                             json_integer ((json_int_t) *c));
    for (s_hist_t *h = zhashx_first (self->hists); h; h = zhashx_next (self->hists)) {
        json_t *buckets = json_array ();
        uint64_t cumulative = 0;
        for (int b = 0; b < BUS_STATS_BUCKETS; b++) {
            cumulative += h->buckets [b];
            json_array_append_new (buckets, json_pack ("[I, I]", (json_int_t) (1LL << b),
                                                       (json_int_t) cumulative));
        }
        json_object_set_new (lat, (const char *) zhashx_cursor (self->hists),
                             json_pack ("{s:I, s:I, s:o}", "count", (json_int_t) h->count,
                                        "sum", (json_int_t) h->sum, "buckets", buckets));
    }
    return json_pack ("{s:o, s:o}", "counters", counters, "latency_us", lat);
}
