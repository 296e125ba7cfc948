/*  bench_authz.c — in-process Check throughput and latency on a
    procurement-like model, beside raw LMDB point reads on the same data.

    Model: user#manager (direct), user#manager_chain (manager or
    manager_chain from manager), purchase_order#requester and
    purchase_order#approver (manager_chain from requester). 10,000 users
    in a 6-level management hierarchy (9,999 manager tuples) and 90,001
    purchase orders with a requester: 100,000 tuples. Checks ask whether a
    user approves an order: half are a manager of the requester (true, 1-5
    hops), half a random user (mostly false, walking the whole chain).

    Prints `bench NAME value UNIT [baseline VALUE ratio R]` lines; the
    baseline is a raw mdb_get loop (one read transaction per get, like one
    request) on the same environment, measured in the same run.
*/
#include <ftw.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "../../services/authz/authz_check.h"

#define N_USERS   10000
#define N_TUPLES  100000
#define N_CHECKS  200000
#define N_LEVELS  6

static const char *s_model =
    "{\"schema_version\":\"1.1\",\"type_definitions\":["
    "{\"type\":\"user\",\"relations\":{"
      "\"manager\":{\"this\":{}},"
      "\"manager_chain\":{\"union\":{\"child\":[{\"computedUserset\":{\"relation\":\"manager\"}},"
        "{\"tupleToUserset\":{\"tupleset\":{\"relation\":\"manager\"},"
        "\"computedUserset\":{\"relation\":\"manager_chain\"}}}]}}},"
     "\"metadata\":{\"relations\":{\"manager\":{\"directly_related_user_types\":[{\"type\":\"user\"}]},"
       "\"manager_chain\":{\"directly_related_user_types\":[]}}}},"
    "{\"type\":\"purchase_order\",\"relations\":{"
      "\"requester\":{\"this\":{}},"
      "\"approver\":{\"tupleToUserset\":{\"tupleset\":{\"relation\":\"requester\"},"
        "\"computedUserset\":{\"relation\":\"manager_chain\"}}}},"
     "\"metadata\":{\"relations\":{\"requester\":{\"directly_related_user_types\":[{\"type\":\"user\"}]},"
       "\"approver\":{\"directly_related_user_types\":[]}}}}]}";

static int s_manager [N_USERS];     /* -1 for the root */

/*  Monotonic time in nanoseconds. */
static double
s_now (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec * 1e9 + (double) ts.tv_nsec;
}

/*  nftw callback: remove one entry. */
static int
s_rm (const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove (path);
}

/*  CPU time of this thread in nanoseconds (the machine may be shared:
    checks per CPU-second is the figure a busy neighbour disturbs least). */
static double
s_cpu_now (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double) ts.tv_sec * 1e9 + (double) ts.tv_nsec;
}

/*  qsort comparator for latencies. */
static int
s_cmp (const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return (x > y) - (x < y);
}

/*  Build the hierarchy: level sizes grow by ~5.3x to reach N_USERS. */
static void
s_hierarchy (void)
{
    int start = 0, size = 1;
    s_manager [0] = -1;
    int next = 1;
    for (int level = 1; level < N_LEVELS && next < N_USERS; level++) {
        int want = level == N_LEVELS - 1? N_USERS - next: size * 5 + size / 3 + 1;
        for (int i = 0; i < want && next < N_USERS; i++)
            s_manager [next++] = start + i % size;
        start += size;
        size = want;
    }
}

/*  One check of the workload, built before timing starts. */
typedef struct {
    char object [32];
    char user [16];
} s_query_t;

/*  Load the model and the 100,000 tuples into store (writes of 100), or,
    when the store already has a model (--dir reuse), only rebuild the
    in-memory hierarchy and requesters (the same seed gives the same data).
    Sets *model and requester []. Returns 0 or -1. */
static int
s_load (authz_store_t *store, const authz_model_t **model, int *requester)
{
    authz_error_t err = { 0 };
    s_hierarchy ();
    srand (42);
    bool loaded = authz_store_model (store, NULL, model, NULL) == 0;
    if (!loaded) {
        json_t *mj = json_loads (s_model, 0, NULL);
        char id [AUTHZ_MODEL_ID_LEN + 1];
        int rc = authz_store_write_model (store, mj, id, &err);
        json_decref (mj);
        if (rc || authz_store_model (store, id, model, &err)) {
            fprintf (stderr, "setup failed: %s\n", err.message);
            return -1;
        }
    }
    static char strs [100][3][32];
    authz_tuple_t batch [100];
    int n = 0, written = 0;
    double t0 = s_now ();
    for (int i = 0; i < N_TUPLES; i++) {
        bool mgr = i < N_USERS - 1;
        int u = mgr? i + 1: rand () % N_USERS;
        if (mgr) {
            snprintf (strs [n][0], 32, "user:%d", u);
            snprintf (strs [n][1], 32, "manager");
            snprintf (strs [n][2], 32, "user:%d", s_manager [u]);
        }
        else {
            int po = i - (N_USERS - 1);
            requester [po] = u;
            snprintf (strs [n][0], 32, "purchase_order:%d", po);
            snprintf (strs [n][1], 32, "requester");
            snprintf (strs [n][2], 32, "user:%d", u);
        }
        batch [n] = (authz_tuple_t) { strs [n][0], strs [n][1], strs [n][2], NULL, NULL, NULL };
        if (++n == 100 || i == N_TUPLES - 1) {
            if (!loaded
            &&  authz_store_write (store, *model, batch, (size_t) n, NULL, 0, 0, &err)) {
                fprintf (stderr, "write failed: %s\n", err.message);
                return -1;
            }
            written += n;
            n = 0;
        }
    }
    if (!loaded)
        printf ("bench authz_write_tuples %.0f tuples/s\n", written / ((s_now () - t0) / 1e9));
    return 0;
}

/*  The check workload: half true (an ancestor of the requester, 1-6
    hops up), half a random user (mostly false). */
static void
s_queries (s_query_t *queries, int n, const int *requester)
{
    int n_po = N_TUPLES - (N_USERS - 1);
    for (int i = 0; i < n; i++) {
        int po = rand () % n_po;
        int u = requester [po];
        int who = rand () % N_USERS;
        if (i % 2 == 0 && s_manager [u] >= 0) {
            int hops = 1 + rand () % N_LEVELS;
            who = s_manager [u];
            for (int h = 1; h < hops && s_manager [who] >= 0; h++)
                who = s_manager [who];
        }
        snprintf (queries [i].object, sizeof queries [i].object, "purchase_order:%d", po);
        snprintf (queries [i].user, sizeof queries [i].user, "user:%d", who);
    }
}

/*  Raw LMDB: random forward-key point reads, one read txn per get, on a
    second environment handle of dir (the store must be closed). Returns
    gets per second, or 0 on failure. */
static double
s_raw_lmdb (const char *dir, int n)
{
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    mdb_env_create (&env);
    mdb_env_set_maxdbs (env, 16);
    mdb_env_set_mapsize (env, 1UL << 30);
    if (mdb_env_open (env, dir, MDB_NOTLS | MDB_RDONLY, 0600)
    ||  mdb_txn_begin (env, NULL, MDB_RDONLY, &txn)
    ||  mdb_dbi_open (txn, "authz_tuples", 0, &dbi)) {
        fprintf (stderr, "raw lmdb open failed\n");
        mdb_env_close (env);
        return 0;
    }
    mdb_txn_commit (txn);           /* keeps the dbi handle (abort would drop it) */
    int found = 0;
    double r0 = s_now ();
    for (int i = 0; i < n; i++) {
        int u = 1 + rand () % (N_USERS - 1);
        char key [80];
        int kl = snprintf (key, sizeof key, "user:%d%cmanager%cuser:%d", u, 0, 0, s_manager [u]);
        MDB_val k = { (size_t) kl + 1, key }, v;
        mdb_txn_begin (env, NULL, MDB_RDONLY, &txn);
        found += mdb_get (txn, dbi, &k, &v) == 0;
        mdb_txn_abort (txn);
    }
    double rate = n / ((s_now () - r0) / 1e9);
    mdb_env_close (env);
    if (found != n) {
        fprintf (stderr, "raw lmdb found %d of %d\n", found, n);
        return 0;
    }
    return rate;
}

/*  Usage: bench_authz [--quick] [--dir DIR]. --dir keeps the data in DIR
    and reuses it on the next run (for profiling the check phase alone). */
int
main (int argc, char **argv)
{
    char tmp [] = "/tmp/bench-authz-XXXXXX";
    const char *dir = NULL;
    int n_checks = N_CHECKS;
    for (int i = 1; i < argc; i++) {
        if (strcmp (argv [i], "--quick") == 0)
            n_checks = N_CHECKS / 10;
        else
        if (strcmp (argv [i], "--dir") == 0 && i + 1 < argc)
            dir = argv [++i];
        else {
            fprintf (stderr, "usage: bench_authz [--quick] [--dir DIR]\n");
            return 1;
        }
    }
    if (!dir && !(dir = mkdtemp (tmp)))
        return 1;
    int rc = 1;
    authz_store_t *store = NULL;
    const authz_model_t *model = NULL;
    static int requester [N_TUPLES];
    s_query_t *queries = calloc ((size_t) n_checks, sizeof *queries);
    double *lat = calloc ((size_t) n_checks, sizeof *lat);
    if (!queries || !lat || authz_store_open (&store, dir, 1UL << 30)
    ||  s_load (store, &model, requester))
        goto done;
    s_queries (queries, n_checks, requester);

    int allowed_count = 0;
    authz_error_t err = { 0 };
    double total0 = s_now (), cpu0 = s_cpu_now ();
    for (int i = 0; i < n_checks; i++) {
        bool allowed = false;
        double c0 = s_now ();
        if (authz_check (store, model, queries [i].object, "approver", queries [i].user,
                         NULL, &allowed, &err)) {
            fprintf (stderr, "check failed: %s\n", err.message);
            goto done;
        }
        lat [i] = s_now () - c0;
        allowed_count += allowed;
    }
    double check_rate = n_checks / ((s_now () - total0) / 1e9);
    double cpu_rate = n_checks / ((s_cpu_now () - cpu0) / 1e9);
    qsort (lat, (size_t) n_checks, sizeof *lat, s_cmp);
    authz_store_destroy (&store);

    double raw_rate = s_raw_lmdb (dir, n_checks);
    if (raw_rate <= 0)
        goto done;
    printf ("bench authz_check_allowed_fraction %.3f ratio\n", (double) allowed_count / n_checks);
    printf ("bench authz_check_throughput %.0f checks/s baseline %.0f ratio %.3f\n",
            check_rate, raw_rate, check_rate / raw_rate);
    printf ("bench authz_check_throughput_cpu %.0f checks/cpu-s\n", cpu_rate);
    printf ("bench authz_check_p50 %.2f us\n", lat [n_checks / 2] / 1e3);
    printf ("bench authz_check_p99 %.2f us\n", lat [n_checks * 99 / 100] / 1e3);
    printf ("bench lmdb_raw_get %.0f gets/s\n", raw_rate);
    rc = 0;
done:
    authz_store_destroy (&store);
    free (queries);
    free (lat);
    if (dir == tmp)
        nftw (dir, s_rm, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}
