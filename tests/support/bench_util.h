/*  bench_util.h — what every benchmark in tests/bench needs: a monotonic
    clock and latency quantiles. Each figure is printed as one line,
    `bench NAME VALUE UNIT baseline B ratio R`, by the benchmark itself. */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

/*  Seconds on the monotonic clock. */
double bench_now_s (void);

/*  qsort comparator for doubles, ascending. */
int bench_cmp_double (const void *a, const void *b);

/*  The q-quantile (0..1) of v [0..n), which it sorts; 0 when n is 0. */
double bench_quantile (double *v, int n, double q);

/*  The median of v [0..n) (sorts v). */
double bench_median (double *v, int n);

#endif
