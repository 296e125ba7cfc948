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

int
main (void)
{
    char dir [] = "/tmp/bench-authz-XXXXXX";
    if (!mkdtemp (dir))
        return 1;
    authz_store_t *store = NULL;
    authz_error_t err = { 0 };
    json_t *mj = json_loads (s_model, 0, NULL);
    char id [AUTHZ_MODEL_ID_LEN + 1];
    if (authz_store_open (&store, dir, 1UL << 30)
    ||  authz_store_write_model (store, mj, id, &err)) {
        fprintf (stderr, "setup failed: %s\n", err.message);
        return 1;
    }
    const authz_model_t *model = NULL;
    if (authz_store_model (store, id, &model, &err))
        return 1;
    s_hierarchy ();
    srand (42);
    static int requester [N_TUPLES];
    static char strs [100][3][32];
    authz_tuple_t batch [100];
    int n = 0, written = 0, n_po = N_TUPLES - (N_USERS - 1);
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
            if (authz_store_write (store, model, batch, (size_t) n, NULL, 0, 0, &err)) {
                fprintf (stderr, "write failed: %s\n", err.message);
                return 1;
            }
            written += n;
            n = 0;
        }
    }
    printf ("bench authz_write_tuples %.0f tuples/s\n", written / ((s_now () - t0) / 1e9));

    //  Checks: half true (an ancestor of the requester), half random
    double *lat = malloc (N_CHECKS * sizeof *lat);
    int allowed_count = 0;
    double total0 = s_now ();
    for (int i = 0; i < N_CHECKS; i++) {
        int po = rand () % n_po;
        int u = requester [po];
        int who = rand () % N_USERS;
        if (i % 2 == 0 && s_manager [u] >= 0) {
            int hops = 1 + rand () % N_LEVELS;
            who = s_manager [u];
            for (int h = 1; h < hops && s_manager [who] >= 0; h++)
                who = s_manager [who];
        }
        char obj [40], user [32];
        snprintf (obj, sizeof obj, "purchase_order:%d", po);
        snprintf (user, sizeof user, "user:%d", who);
        bool allowed = false;
        double c0 = s_now ();
        if (authz_check (store, model, obj, "approver", user, NULL, &allowed, &err)) {
            fprintf (stderr, "check failed: %s\n", err.message);
            return 1;
        }
        lat [i] = s_now () - c0;
        allowed_count += allowed;
    }
    double secs = (s_now () - total0) / 1e9;
    double check_rate = N_CHECKS / secs;
    qsort (lat, N_CHECKS, sizeof *lat, s_cmp);
    authz_store_destroy (&store);

    //  Raw LMDB: random forward-key point reads, one read txn per get
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
        return 1;
    }
    mdb_txn_commit (txn);           /* keeps the dbi handle (abort would drop it) */
    int found = 0;
    double r0 = s_now ();
    for (int i = 0; i < N_CHECKS; i++) {
        int u = 1 + rand () % (N_USERS - 1);
        char key [80];
        int kl = snprintf (key, sizeof key, "user:%d%cmanager%cuser:%d", u, 0, 0, s_manager [u]);
        MDB_val k = { (size_t) kl + 1, key }, v;
        mdb_txn_begin (env, NULL, MDB_RDONLY, &txn);
        found += mdb_get (txn, dbi, &k, &v) == 0;
        mdb_txn_abort (txn);
    }
    double raw_rate = N_CHECKS / ((s_now () - r0) / 1e9);
    mdb_env_close (env);

    printf ("bench authz_check_allowed_fraction %.3f ratio\n", (double) allowed_count / N_CHECKS);
    printf ("bench authz_check_throughput %.0f checks/s baseline %.0f ratio %.3f\n",
            check_rate, raw_rate, check_rate / raw_rate);
    printf ("bench authz_check_p50 %.2f us\n", lat [N_CHECKS / 2] / 1e3);
    printf ("bench authz_check_p99 %.2f us\n", lat [N_CHECKS * 99 / 100] / 1e3);
    printf ("bench lmdb_raw_get %.0f gets/s (found %d of %d)\n", raw_rate, found, N_CHECKS);
    free (lat);
    json_decref (mj);
    nftw (dir, s_rm, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}
