/*  bench_util.c — clock and quantiles for the benchmarks (bench_util.h). */
#include "bench_util.h"

#include <stdlib.h>
#include <time.h>

double
bench_now_s (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

int
bench_cmp_double (const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return (x > y) - (x < y);
}

double
bench_quantile (double *v, int n, double q)
{
    if (n <= 0)
        return 0;
    qsort (v, (size_t) n, sizeof *v, bench_cmp_double);
    int i = (int) (n * q);
    return v [i < n ? i : n - 1];
}

double
bench_median (double *v, int n)
{
    return bench_quantile (v, n, 0.5);
}
