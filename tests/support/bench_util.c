/*  bench_util.c — clock and quantiles for the benchmarks (bench_util.h). */
#include "bench_util.h"

#include <lmdb.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus_store.h"
#include "test_service.h"

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

int
bench_lmdb_commits (const char *name, size_t value_len, int n, double secs,
                    double *lat, double *rate)
{
    char dir [64];
    if (test_service_tmpdir (dir, sizeof dir, name))
        return -1;
    MDB_env *env = NULL;
    MDB_dbi dbi;
    MDB_txn *txn = NULL;
    int done = -1;
    char *value = calloc (1, value_len ? value_len : 1);
    if (!value || mdb_env_create (&env) || mdb_env_set_mapsize (env, (size_t) 1 << 30)
        || mdb_env_open (env, dir, 0, 0600))
        goto out;
    if (mdb_txn_begin (env, NULL, 0, &txn) || mdb_dbi_open (txn, NULL, 0, &dbi) || mdb_txn_commit (txn))
        goto out;
    memset (value, 'v', value_len);
    double t0 = bench_now_s ();
    int i = 0;
    for (; i < n && (secs <= 0 || bench_now_s () < t0 + secs); i++) {
        uint8_t key [8];
        bus_u64_to_key ((uint64_t) i, key);
        MDB_val k = { sizeof key, key }, v = { value_len, value };
        double a = bench_now_s ();
        if (mdb_txn_begin (env, NULL, 0, &txn) || mdb_put (txn, dbi, &k, &v, 0) || mdb_txn_commit (txn))
            goto out;
        if (lat)
            lat [i] = (bench_now_s () - a) * 1e6;
    }
    if (rate)
        *rate = i / (bench_now_s () - t0);
    done = i;
out:
    free (value);
    if (env)
        mdb_env_close (env);
    test_service_rmtree (dir);
    return done;
}
