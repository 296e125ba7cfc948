/*  test_authz_stores.c — many stores in one engine: the registry
    (create, get, list with pages, delete), each store's models, tuples
    and changelog apart from another's, a deleted store gone for a read
    and a write begun after its deletion, its keys reclaimed in bounded
    batches to the last (the other store's untouched), and read_changes
    with start_time.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>
#include "../../services/authz/authz_check.h"
#include "../../services/authz/authz_validate.h"
#include "../../services/authz/authz_stores.h"
#include "bus_error.h"
#include "../support/test_authz.h"

static const char *s_model =
    "model\n  schema 1.1\ntype user\ntype doc\n  relations\n    define viewer: [user]\n";

typedef struct {
    test_authz_t *t;
    bus_store_t *bus;
    int db;                         /* the registry */
} s_fix_t;

static int
s_setup (void **state)
{
    s_fix_t *f = calloc (1, sizeof *f);
    assert_int_equal (test_authz_new (&f->t, "authz-stores", s_model), 0);
    f->bus = authz_store_bus (f->t->store);
    f->db = bus_store_db (f->bus, "authz_stores");
    assert_true (f->db >= 0);
    /* the fixture's store (number 1) is registered first, as authz's default is */
    bus_txn_t *txn = bus_txn_begin (f->bus, true);
    json_t *rec = NULL;
    uint32_t n = 0;
    assert_int_equal (authz_stores_create (txn, f->db, "default", NULL, &rec, &n, NULL), 0);
    assert_int_equal (bus_txn_commit (&txn), 0);
    assert_int_equal (n, AUTHZ_STORE_FIRST);
    json_decref (rec);
    *state = f;
    return 0;
}

static int
s_teardown (void **state)
{
    s_fix_t *f = *state;
    test_authz_destroy (&f->t);
    free (f);
    return 0;
}

/*  Create a store named name; its number. */
static uint32_t
s_create (s_fix_t *f, const char *name, char id [27])
{
    bus_txn_t *txn = bus_txn_begin (f->bus, true);
    json_t *rec = NULL;
    uint32_t n = 0;
    assert_int_equal (authz_stores_create (txn, f->db, name, NULL, &rec, &n, NULL), 0);
    assert_int_equal (bus_txn_commit (&txn), 0);
    snprintf (id, 27, "%s", json_string_value (json_object_get (rec, "id")));
    assert_string_equal (json_string_value (json_object_get (rec, "name")), name);
    json_decref (rec);
    return n;
}

/*  Keys of store number in the engine's database name. */
static int
s_count_cb (const void *k, size_t kl, const void *v, size_t vl, void *arg)
{
    (*(size_t *) arg)++;
    return 0;
}

static size_t
s_keys (s_fix_t *f, const char *name, uint32_t number)
{
    uint8_t prefix [AUTHZ_STORE_PREFIX];
    authz_store_prefix (number, prefix);
    bus_txn_t *txn = bus_txn_begin (f->bus, false);
    size_t n = 0;
    assert_int_equal (bus_txn_scan_prefix (txn, bus_store_db (f->bus, name), prefix, sizeof prefix, s_count_cb, &n),
                      0);
    bus_txn_abort (&txn);
    return n;
}

/*  Check shorthand on the selected store: 1, 0 or the error. */
static int
s_check (s_fix_t *f, const authz_model_t *m, const char *user)
{
    bool allowed = false;
    int rc = authz_check (f->t->store, m, "doc:1", "viewer", user, NULL, &allowed, NULL);
    return rc ? rc : allowed;
}

/*  Two stores: their own models, tuples and changes; one deleted is gone
    for the next read and write; its keys reclaimed a batch at a time. */
static void
test_stores_apart_then_reclaimed (void **state)
{
    s_fix_t *f = *state;
    authz_store_t *st = f->t->store;
    char ida [27], idb [27];
    uint32_t a = s_create (f, "a", ida), b = s_create (f, "b", idb);
    assert_int_not_equal (a, b);
    authz_error_t err = { 0 };
    const authz_model_t *ma = NULL, *mb = NULL;
    json_t *js = NULL;
    assert_int_equal (authz_dsl_load (&js, s_model, NULL), 0);
    char mid_a [AUTHZ_MODEL_ID_LEN + 1], mid_b [AUTHZ_MODEL_ID_LEN + 1];
    authz_store_select (st, a, true);
    /* no model yet in a new store (the fixture's model is the first store's) */
    assert_int_equal (authz_store_model (st, NULL, &ma, &err), -AUTHZ_ELATEST_NOT_FOUND);
    assert_int_equal (authz_store_write_model (st, js, mid_a, &err), 0);
    assert_int_equal (authz_store_model (st, NULL, &ma, &err), 0);
    authz_store_select (st, b, true);
    assert_int_equal (authz_store_write_model (st, js, mid_b, &err), 0);
    assert_int_equal (authz_store_model (st, NULL, &mb, &err), 0);
    assert_string_equal (authz_model_id (mb), mid_b);
    /* a's model is not b's */
    const authz_model_t *other = NULL;
    assert_int_equal (authz_store_model (st, mid_a, &other, &err), -AUTHZ_EMODEL_NOT_FOUND);
    json_decref (js);
    /* 300 tuples in a (more than a reclaim batch below), one in b */
    authz_store_select (st, a, true);
    for (int i = 0; i < 3; i++) {
        authz_tuple_t w [100];
        char users [100][32];
        for (int k = 0; k < 100; k++) {
            snprintf (users [k], sizeof users [k], "user:u%d", i * 100 + k);
            w [k] = (authz_tuple_t) { "doc:1", "viewer", users [k], NULL, NULL, NULL };
        }
        assert_int_equal (authz_store_write (st, ma, w, 100, NULL, 0, 0, &err), 0);
    }
    authz_store_select (st, b, true);
    authz_tuple_t one = { "doc:1", "viewer", "user:bea", NULL, NULL, NULL };
    assert_int_equal (authz_store_write (st, mb, &one, 1, NULL, 0, 0, &err), 0);
    /* apart: checks, reads, changes */
    assert_int_equal (s_check (f, mb, "user:bea"), 1);
    assert_int_equal (s_check (f, mb, "user:u7"), 0);
    json_t *changes = NULL;
    char *token = NULL;
    assert_int_equal (authz_store_read_changes (st, NULL, NULL, 100, NULL, &changes, &token, &err), 0);
    assert_int_equal (json_array_size (changes), 1);
    json_decref (changes);
    free (token);
    authz_store_select (st, a, true);
    assert_int_equal (s_check (f, ma, "user:u7"), 1);
    assert_int_equal (s_check (f, ma, "user:bea"), 0);
    authz_tuple_t filter = { .object = "doc:1" };
    json_t *tuples = NULL;
    assert_int_equal (authz_store_read (st, &filter, 100, NULL, &tuples, &token, &err), 0);
    assert_int_equal (json_array_size (tuples), 100);
    json_decref (tuples);
    free (token);
    /* the first store (the fixture's) sees none of them */
    authz_store_select (st, AUTHZ_STORE_FIRST, true);
    assert_int_equal (s_check (f, f->t->model, "user:u7"), 0);
    /* delete a: the next check and write find no store */
    bus_txn_t *txn = bus_txn_begin (f->bus, true);
    uint32_t gone = 0;
    assert_int_equal (authz_stores_delete (txn, f->db, ida, &gone), 0);
    assert_int_equal (bus_txn_commit (&txn), 0);
    assert_int_equal (gone, a);
    authz_store_select (st, a, true);
    assert_int_equal (s_check (f, ma, "user:u7"), -AUTHZ_ESTORE_NOT_FOUND);
    authz_tuple_t late = { "doc:1", "viewer", "user:late", NULL, NULL, NULL };
    memset (&err, 0, sizeof err);
    assert_int_equal (authz_store_write (st, ma, &late, 1, NULL, 0, 0, &err), -AUTHZ_ESTORE_NOT_FOUND);
    assert_int_equal (authz_store_read (st, &filter, 10, NULL, &tuples, &token, &err), -AUTHZ_ESTORE_NOT_FOUND);
    txn = bus_txn_begin (f->bus, false);
    assert_int_equal (authz_stores_get (txn, f->db, ida, NULL, &gone), BUS_ENOTFOUND);
    bus_txn_abort (&txn);
    /* reclaimed in batches of 250: 300 tuples, 300 reverse, 300 changes, a model */
    int dbs [4] = { bus_store_db (f->bus, "authz_models"), bus_store_db (f->bus, "authz_tuples"),
                    bus_store_db (f->bus, "authz_users"), bus_store_db (f->bus, "authz_changes") };
    assert_int_equal (s_keys (f, "authz_tuples", a), 300);
    size_t total = 0, n = 0;
    bool more = true;
    int rounds = 0;
    while (more) {
        txn = bus_txn_begin (f->bus, true);
        assert_int_equal (authz_stores_reclaim (txn, f->db, dbs, 4, 250, NULL, NULL, &n, &more), 0);
        assert_int_equal (bus_txn_commit (&txn), 0);
        assert_true (n <= 250);
        total += n;
        assert_true (++rounds < 10);
    }
    assert_int_equal (total, 901);
    assert_true (rounds >= 4);
    assert_int_equal (s_keys (f, "authz_tuples", a) + s_keys (f, "authz_users", a) + s_keys (f, "authz_changes", a)
                      + s_keys (f, "authz_models", a), 0);
    /* b untouched; nothing left to reclaim */
    assert_int_equal (s_keys (f, "authz_tuples", b), 1);
    authz_store_select (st, b, true);
    assert_int_equal (s_check (f, mb, "user:bea"), 1);
    txn = bus_txn_begin (f->bus, true);
    assert_int_equal (authz_stores_reclaim (txn, f->db, dbs, 4, 250, NULL, NULL, &n, &more), 0);
    bus_txn_abort (&txn);
    assert_int_equal (n, 0);
    assert_false (more);
    /* a number is never given again */
    char idc [27];
    assert_true (s_create (f, "c", idc) > b);
}

/*  The list: live stores in creation order, pages and tokens, by name. */
static void
test_stores_list (void **state)
{
    s_fix_t *f = *state;
    char ids [5][27], first [27];
    bus_txn_t *t0 = bus_txn_begin (f->bus, false);
    json_t *all = NULL;
    char *t0k = NULL;
    assert_int_equal (authz_stores_list (t0, f->db, NULL, 0, NULL, &all, &t0k, NULL), 0);
    snprintf (first, sizeof first, "%s", json_string_value (json_object_get (json_array_get (all, 0), "id")));
    json_decref (all);
    free (t0k);
    bus_txn_abort (&t0);
    const char *names [5] = { "one", "two", "three", "two", "five" };
    for (int i = 0; i < 5; i++)
        s_create (f, names [i], ids [i]);
    bus_txn_t *txn = bus_txn_begin (f->bus, true);
    uint32_t n;
    assert_int_equal (authz_stores_delete (txn, f->db, ids [2], &n), 0);
    assert_int_equal (authz_stores_delete (txn, f->db, ids [2], &n), BUS_ENOTFOUND);
    json_t *page = NULL, *rec = NULL;
    char *token = NULL, *next = NULL;
    authz_error_t err = { 0 };
    assert_int_equal (authz_stores_list (txn, f->db, NULL, 3, NULL, &page, &token, &err), 0);
    assert_int_equal (json_array_size (page), 3);
    assert_string_equal (json_string_value (json_object_get (json_array_get (page, 0), "id")), first);
    assert_string_equal (json_string_value (json_object_get (json_array_get (page, 2), "id")), ids [1]);
    assert_string_equal (token, ids [1]);
    json_decref (page);
    assert_int_equal (authz_stores_list (txn, f->db, NULL, 3, token, &page, &next, &err), 0);
    assert_int_equal (json_array_size (page), 2);   /* ids [2] is deleted */
    assert_string_equal (json_string_value (json_object_get (json_array_get (page, 0), "id")), ids [3]);
    assert_string_equal (json_string_value (json_object_get (json_array_get (page, 1), "id")), ids [4]);
    assert_string_equal (next, "");
    json_decref (page);
    free (next);
    free (token);
    assert_int_equal (authz_stores_list (txn, f->db, "two", 0, NULL, &page, &token, &err), 0);
    assert_int_equal (json_array_size (page), 2);
    json_decref (page);
    free (token);
    assert_int_equal (authz_stores_list (txn, f->db, NULL, 0, "not-a-token", &page, &token, &err), -AUTHZ_ETOKEN);
    assert_int_equal (authz_stores_list (txn, f->db, NULL, 101, NULL, &page, &token, &err), -AUTHZ_EVALIDATION);
    assert_int_equal (authz_stores_create (txn, f->db, "", NULL, &rec, &n, &err), -AUTHZ_EVALIDATION);
    assert_int_equal (authz_stores_create (txn, f->db, "bad\nname", NULL, &rec, &n, &err), -AUTHZ_EVALIDATION);
    assert_int_equal (authz_stores_create (txn, f->db, "dup", ids [0], &rec, &n, &err), -AUTHZ_EVALIDATION);
    bus_txn_abort (&txn);
}

/*  read_changes start_time: RFC 3339 times, offsets, bad ones. */
static void
test_changes_start_time (void **state)
{
    s_fix_t *f = *state;
    char out [32];
    assert_int_equal (authz_timestamp_normalize ("2026-12-04T18:47:46Z", out), 0);
    assert_string_equal (out, "2026-12-04T18:47:46.000Z");
    assert_int_equal (authz_timestamp_normalize ("2026-12-04T20:47:46.12345+02:00", out), 0);
    assert_string_equal (out, "2026-12-04T18:47:46.123Z");
    assert_int_equal (authz_timestamp_normalize ("2026-12-04", out), -1);
    assert_int_equal (authz_timestamp_normalize ("2026-12-04T18:47:46", out), -1);
    authz_error_t err = { 0 };
    authz_tuple_t w = { "doc:1", "viewer", "user:anne", NULL, NULL, NULL };
    assert_int_equal (authz_store_write (f->t->store, f->t->model, &w, 1, NULL, 0, 0, &err), 0);
    json_t *changes = NULL;
    char *token = NULL;
    assert_int_equal (authz_store_read_changes (f->t->store, NULL, "2000-01-01T00:00:00Z", 10, NULL, &changes,
                                                &token, &err), 0);
    assert_int_equal (json_array_size (changes), 1);
    json_decref (changes);
    free (token);
    assert_int_equal (authz_store_read_changes (f->t->store, NULL, "2999-01-01T00:00:00Z", 10, NULL, &changes,
                                                &token, &err), 0);
    assert_int_equal (json_array_size (changes), 0);
    json_decref (changes);
    free (token);
    assert_int_equal (authz_store_read_changes (f->t->store, NULL, "soon", 10, NULL, &changes, &token, &err),
                      -AUTHZ_EVALIDATION);
}

/*  Keys an authz from before stores wrote (no prefix) move under a
    store's number, and read as that store's. */
static void
test_migrate_unprefixed (void **state)
{
    s_fix_t *f = *state;
    json_t *js = NULL;
    assert_int_equal (authz_dsl_load (&js, s_model, NULL), 0);
    char *model_text = json_dumps (js, JSON_COMPACT);
    json_decref (js);
    const char *id = "01JAAAAAAAAAAAAAAAAAAAAAAA";
    static const char tkey [] = "doc:1\0viewer\0user:old";           /* + its NUL */
    static const char ukey [] = "user:old\0doc:1\0viewer";
    static const char tval [] = "\0\0" "2026-01-01T00:00:00.000Z";
    const char *change = "{\"tuple_key\":{\"object\":\"doc:1\",\"relation\":\"viewer\",\"user\":\"user:old\"},"
                         "\"operation\":\"TUPLE_OPERATION_WRITE\",\"timestamp\":\"2026-01-01T00:00:00.000Z\"}";
    uint8_t seq [8];
    bus_u64_to_key (1, seq);
    bus_txn_t *txn = bus_txn_begin (f->bus, true);
    int models = bus_store_db (f->bus, "authz_models"), tuples = bus_store_db (f->bus, "authz_tuples");
    int users = bus_store_db (f->bus, "authz_users"), changes = bus_store_db (f->bus, "authz_changes");
    assert_int_equal (bus_txn_put (txn, models, id, 26, model_text, strlen (model_text)), 0);
    assert_int_equal (bus_txn_put (txn, tuples, tkey, sizeof tkey, tval, sizeof tval), 0);
    assert_int_equal (bus_txn_put (txn, users, ukey, sizeof ukey, "", 0), 0);
    assert_int_equal (bus_txn_put (txn, changes, seq, 8, change, strlen (change)), 0);
    assert_int_equal (bus_txn_commit (&txn), 0);
    free (model_text);
    /* store 1 (the fixture's) has its own keys too, already prefixed:
       those stay where they are */
    txn = bus_txn_begin (f->bus, true);
    int dbs [4] = { models, tuples, users, changes };
    for (int i = 0; i < 4; i++)
        assert_int_equal (authz_stores_migrate (txn, dbs [i], 7), 0);
    assert_int_equal (bus_txn_commit (&txn), 0);
    authz_store_t *st = NULL;
    assert_int_equal (authz_store_new (&st, f->bus), 0);
    authz_store_select (st, 7, false);
    const authz_model_t *model = NULL;
    assert_int_equal (authz_store_model (st, id, &model, NULL), 0);
    bool allowed = false;
    assert_int_equal (authz_check (st, model, "doc:1", "viewer", "user:old", NULL, &allowed, NULL), 0);
    assert_true (allowed);
    json_t *list = NULL, *got = NULL;
    char *token = NULL;
    assert_int_equal (authz_store_read_changes (st, NULL, NULL, 10, NULL, &list, &token, NULL), 0);
    assert_int_equal (json_array_size (list), 1);
    json_decref (list);
    free (token);
    assert_int_equal (authz_list_objects (st, model, "doc", "viewer", "user:old", NULL, &got, NULL), 0);
    assert_int_equal (json_array_size (got), 1);
    json_decref (got);
    assert_int_equal (s_keys (f, "authz_tuples", 7), 1);
    assert_int_equal (s_keys (f, "authz_models", 7), 1);          /* the old model only */
    authz_store_select (st, AUTHZ_STORE_FIRST, false);
    assert_int_equal (authz_store_model (st, NULL, &model, NULL), 0);  /* store 1's, untouched */
    assert_string_equal (authz_model_id (model), authz_model_id (f->t->model));
    authz_store_destroy (&st);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test_setup_teardown (test_stores_apart_then_reclaimed, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_stores_list, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_changes_start_time, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_migrate_unprefixed, s_setup, s_teardown),
    };
    int failed = cmocka_run_group_tests (tests, NULL, NULL);
    printf ("%d passed, %d failed\n", (int) (sizeof tests / sizeof tests [0]) - failed, failed);
    return failed ? 1 : 0;
}
