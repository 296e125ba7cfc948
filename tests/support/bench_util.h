/*  bench_util.h — what every benchmark in tests/bench needs: a monotonic
    clock and latency quantiles. Each figure is printed as one line,
    `bench NAME VALUE UNIT baseline B ratio R`, by the benchmark itself. */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <stddef.h>

/*  Seconds on the monotonic clock. */
double bench_now_s (void);

/*  qsort comparator for doubles, ascending. */
int bench_cmp_double (const void *a, const void *b);

/*  The q-quantile (0..1) of v [0..n), which it sorts; 0 when n is 0. */
double bench_quantile (double *v, int n, double q);

/*  The median of v [0..n) (sorts v). */
double bench_median (double *v, int n);

/*  The baseline of durable writes: up to n commits of one put of
    value_len bytes each (an 8-byte big-endian key), each its own fsync'd
    LMDB transaction, in a fresh environment under /tmp (removed after),
    stopping early after secs (0: no time limit). The latency of each
    commit (µs) goes to lat [i] when lat is not NULL. Returns the commits
    made (sets *rate, commits per second, when not NULL), or -1 when LMDB
    failed. */
int bench_lmdb_commits (const char *name, size_t value_len, int n, double secs,
                        double *lat, double *rate);

#endif
