/*  bench_authz_stores.c — a store among many checks as fast as a lone one.

    In process, on the engine (authz_store_t, as the reactor and the query
    threads use it): store A holds S_TUPLES tuples (doc:i#viewer@user:j, a
    model with viewer: [user] or owner). Checks of A are timed while A is
    the only store (baseline), then again once S_STORES - 1 other stores
    of S_TUPLES tuples each share its databases (every key of a store
    behind its 4-byte number). Each figure is the median of S_ROUNDS
    rounds; a round asks each of S_CHECKS checks once (half true), on
    objects spread over the whole store, with the tuple cache emptied
    before each round (a fresh engine handle), so that each round reads
    LMDB's pages as a cold Check does.

        bench authz_check_among_stores VALUE checks/s baseline B ratio R

    (R = among / lone; the target is R >= 0.9: "as fast"). --quick: 20
    stores of 1,000 tuples, fewer checks.

    Usage: bench_authz_stores [--quick]. Exit 0 when the measurement ran.
*/
#include "authz_check.h"
#include "authz_stores.h"
#include "authz_validate.h"
#include "bus_error.h"
#include "../support/test_service.h"
#include "../support/bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_ROUNDS 7

static const char *s_model =
    "model\n  schema 1.1\ntype user\ntype doc\n  relations\n    define owner: [user]\n"
    "    define viewer: [user] or owner\n";

static int s_tuples = 10000, s_stores = 100, s_checks = 20000;

/*  Fill the selected store: the model, then n tuples 100 a write. */
static int
s_fill (authz_store_t *st, int n, const authz_model_t **model_out)
{
    json_t *js = NULL;
    char id [AUTHZ_MODEL_ID_LEN + 1];
    int rc = authz_dsl_load (&js, s_model, NULL);
    if (rc == 0)
        rc = authz_store_write_model (st, js, id, NULL);
    json_decref (js);
    const authz_model_t *model = NULL;
    if (rc == 0)
        rc = authz_store_model (st, id, &model, NULL);
    static char objects [100][32], users [100][32];
    for (int base = 0; rc == 0 && base < n; base += 100) {
        authz_tuple_t w [100];
        int k = 0;
        for (; k < 100 && base + k < n; k++) {
            int i = base + k;
            snprintf (objects [k], sizeof objects [k], "doc:%d", i);
            snprintf (users [k], sizeof users [k], "user:%d", i % 997);
            w [k] = (authz_tuple_t) { objects [k], "viewer", users [k], NULL, NULL, NULL };
        }
        rc = authz_store_write (st, model, w, (size_t) k, NULL, 0, 0, NULL);
    }
    if (model_out)
        *model_out = model;
    return rc;
}

/*  Register a store in the registry; its number. */
static int
s_register (bus_store_t *bus, const char *name, uint32_t *number)
{
    int db = bus_store_db (bus, "authz_stores");
    bus_txn_t *txn = bus_txn_begin (bus, true);
    json_t *rec = NULL;
    int rc = txn ? authz_stores_create (txn, db, name, NULL, &rec, number, NULL) : BUS_EIO;
    json_decref (rec);
    if (rc == 0)
        rc = bus_txn_commit (&txn);
    bus_txn_abort (&txn);
    return rc;
}

/*  One round of checks on store number in a fresh engine handle (cold
    tuple cache); checks per second, or -1. */
static double
s_round (bus_store_t *bus, uint32_t number, const char *model_id)
{
    authz_store_t *st = NULL;
    if (authz_store_new (&st, bus))
        return -1;
    authz_store_select (st, number, true);
    const authz_model_t *model = NULL;
    if (authz_store_model (st, model_id, &model, NULL)) {
        authz_store_destroy (&st);
        return -1;
    }
    double t0 = bench_now_s ();
    int wrong = 0;
    for (int k = 0; k < s_checks; k++) {
        int i = (int) (((unsigned) k * 7919u) % (unsigned) s_tuples);
        char object [32], user [32];
        snprintf (object, sizeof object, "doc:%d", i);
        snprintf (user, sizeof user, "user:%d", (i % 997 + (k & 1)) % 997);
        bool allowed = false;
        if (authz_check (st, model, object, "viewer", user, NULL, &allowed, NULL) || allowed != !(k & 1))
            wrong++;
    }
    double dt = bench_now_s () - t0;
    authz_store_destroy (&st);
    if (wrong) {
        fprintf (stderr, "bench_authz_stores: %d checks answered wrongly\n", wrong);
        return -1;
    }
    return s_checks / dt;
}

/*  The median of S_ROUNDS rounds. */
static double
s_measure (bus_store_t *bus, uint32_t number, const char *model_id)
{
    double v [S_ROUNDS];
    for (int r = 0; r < S_ROUNDS; r++)
        if ((v [r] = s_round (bus, number, model_id)) < 0)
            return -1;
    return bench_median (v, S_ROUNDS);
}

int
main (int argc, char **argv)
{
    if (argc > 1 && streq (argv [1], "--quick")) {
        s_tuples = 1000;
        s_stores = 20;
        s_checks = 5000;
    }
    char dir [64];
    authz_store_t *st = NULL;
    int rc = test_service_tmpdir (dir, sizeof dir, "bench-authz-stores");
    if (rc == 0)
        rc = authz_store_open (&st, dir, (size_t) 4 << 30);
    bus_store_t *bus = st ? authz_store_bus (st) : NULL;
    uint32_t a = 0;
    const authz_model_t *model = NULL;
    char model_id [AUTHZ_MODEL_ID_LEN + 1] = "";
    if (rc == 0)
        rc = s_register (bus, "a", &a);
    if (rc == 0) {
        authz_store_select (st, a, true);
        rc = s_fill (st, s_tuples, &model);
    }
    if (rc == 0)
        snprintf (model_id, sizeof model_id, "%s", authz_model_id (model));
    double lone = rc == 0 ? s_measure (bus, a, model_id) : -1;
    double t0 = bench_now_s ();
    for (int i = 1; rc == 0 && lone > 0 && i < s_stores; i++) {
        char name [16];
        uint32_t n = 0;
        snprintf (name, sizeof name, "s%d", i);
        rc = s_register (bus, name, &n);
        if (rc == 0) {
            authz_store_select (st, n, true);
            rc = s_fill (st, s_tuples, NULL);
        }
    }
    fprintf (stderr, "# %d stores of %d tuples filled in %.1f s\n", s_stores, s_tuples, bench_now_s () - t0);
    double among = rc == 0 && lone > 0 ? s_measure (bus, a, model_id) : -1;
    authz_store_destroy (&st);
    test_service_rmtree (dir);
    if (rc || lone <= 0 || among <= 0) {
        fprintf (stderr, "bench_authz_stores: failed: %s\n", rc ? bus_strerror (rc) : "a round failed");
        return 1;
    }
    printf ("bench authz_check_among_stores %.0f checks/s baseline %.0f ratio %.2f\n", among, lone, among / lone);
    printf ("bench authz_check_among_stores_target %s (ratio >= 0.90; %d stores of %d tuples)\n",
            among / lone >= 0.9 ? "met" : "missed", s_stores, s_tuples);
    return 0;
}
