/*  bus_stats.h — counters and latency histograms of one process.

    Named counters and per-name latency histograms (log2 buckets of µs,
    1 µs .. ~67 s), answered by every service's `stats` request and scraped
    by telemetry into Prometheus text. Not thread-safe: owned by the reactor
    thread.
*/
#ifndef BUS_STATS_H
#define BUS_STATS_H

#include <jansson.h>
#include <stdint.h>

#define BUS_STATS_BUCKETS 27

typedef struct bus_stats_t bus_stats_t;

bus_stats_t *bus_stats_new (void);
void bus_stats_destroy (bus_stats_t **self_p);

/*  Add n to counter name (created at 0). */
void bus_stats_count (bus_stats_t *self, const char *name, uint64_t n);

/*  Value of a counter (0 if absent). */
uint64_t bus_stats_get (bus_stats_t *self, const char *name);

/*  Record one latency sample, µs, in histogram name. */
void bus_stats_latency (bus_stats_t *self, const char *name, int64_t us);

/*  {"counters": {name: n}, "latency_us": {name: {"count", "sum",
    "buckets": [[le_us, cumulative_count], ...]}}}: a new reference. */
json_t *bus_stats_json (bus_stats_t *self);

#endif
