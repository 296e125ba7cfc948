/*  test_authz_conformance.c — OpenFGA's conformance suite, in-process.

    Runs shared/conformance/openfga/{consolidated_1_1_tests,abac_tests}.json
    (directory: $SANCTUM_CONFORMANCE_DIR or ../shared/conformance/openfga
    from the repository root) against a fresh LMDB store per test: each
    stage writes its model_json and its tuples (in chunks of 40), then runs
    its check, list-objects and list-users assertions. As OpenFGA's own
    runners do, every single-stage test runs a second time with the
    stage's tuples sent as contextual tuples instead of stored ones
    (stages with more than 20 tuples skip that pass for ListObjects and
    ListUsers, more than 100 for Check: the API's limits). Prints pass and
    fail counts per kind and pass, every failure, and fails if any
    assertion fails.
*/
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>
#include "../../services/authz/authz_check.h"

enum { K_CHECK, K_OBJECTS, K_USERS, K_KINDS };
static const char *s_kind_names [K_KINDS] = { "check", "list-objects", "list-users" };
static int s_pass [2][K_KINDS], s_fail [2][K_KINDS];

/*  nftw callback: remove one entry. */
static int
s_rm (const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove (path);
}

/*  Fill an array of tuples from JSON tuple keys (appending to *n). */
static void
s_tuples (json_t *list, authz_tuple_t *out, size_t *n, size_t cap)
{
    size_t i;
    json_t *t;
    json_array_foreach (list, i, t) {
        if (*n < cap && authz_tuple_from_json (&out [*n], t, NULL) == 0)
            (*n)++;
    }
}

/*  True if got (JSON array of strings) holds exactly the strings of want
    (JSON array or null), ignoring order. */
static bool
s_same_set (json_t *got, json_t *want)
{
    size_t nw = json_array_size (want);
    if (json_array_size (got) != nw)
        return false;
    size_t i, j;
    json_t *w, *g;
    json_array_foreach (want, i, w) {
        bool found = false;
        json_array_foreach (got, j, g)
            if (json_equal (g, w))
                found = true;
        if (!found)
            return false;
    }
    return true;
}

/*  Record one assertion result. */
static void
s_record (int pass, int kind, bool ok, const char *test, int stage, size_t idx,
          json_t *assertion, const char *got)
{
    if (ok) {
        s_pass [pass][kind]++;
        return;
    }
    s_fail [pass][kind]++;
    char *a = json_dumps (assertion, JSON_COMPACT);
    printf ("FAIL %s%s stage %d %s #%zu: %s => got %s\n", test, pass? "_ctxTuples": "",
            stage, s_kind_names [kind], idx, a, got);
    free (a);
}

/*  Run one test (pass 0 stored tuples, pass 1 contextual tuples). */
static void
s_run_test (json_t *test, int pass)
{
    const char *name = json_string_value (json_object_get (test, "name"));
    json_t *stages = json_object_get (test, "stages");
    if (pass == 1 && json_array_size (stages) > 1)
        return;
    char dir [] = "/tmp/authz-conf-XXXXXX";
    assert_non_null (mkdtemp (dir));
    authz_store_t *store = NULL;
    assert_int_equal (authz_store_open (&store, dir, 64 << 20), 0);
    size_t si;
    json_t *stage;
    json_array_foreach (stages, si, stage) {
        char id [AUTHZ_MODEL_ID_LEN + 1];
        authz_error_t err = { 0 };
        int rc = authz_store_write_model (store, json_object_get (stage, "model_json"), id, &err);
        if (rc) {
            printf ("FAIL %s: model: %s\n", name, err.message);
            s_fail [pass][K_CHECK]++;
            break;
        }
        const authz_model_t *model = NULL;
        assert_int_equal (authz_store_model (store, id, &model, NULL), 0);
        json_t *tuples = json_object_get (stage, "tuples");
        size_t nt = json_array_size (tuples);
        if (pass == 0)
            for (size_t i = 0; i < nt; i += 40) {
                authz_tuple_t w [40];
                size_t n = 0;
                for (size_t k = i; k < nt && k < i + 40; k++)
                    if (authz_tuple_from_json (&w [n], json_array_get (tuples, k), NULL) == 0)
                        n++;
                rc = authz_store_write (store, model, w, n, NULL, 0, 0, &err);
                if (rc)
                    printf ("FAIL %s: write: %s\n", name, err.message);
            }
        //  Checks
        size_t ai;
        json_t *a;
        json_array_foreach (json_object_get (stage, "checkAssertions"), ai, a) {
            if (pass == 1 && nt > AUTHZ_MAX_CONTEXTUAL)
                break;
            authz_tuple_t ctx [2 * AUTHZ_MAX_CONTEXTUAL];
            size_t nc = 0;
            s_tuples (json_object_get (a, "contextualTuples"), ctx, &nc, AUTHZ_MAX_CONTEXTUAL);
            if (pass == 1)
                s_tuples (tuples, ctx, &nc, 2 * AUTHZ_MAX_CONTEXTUAL);
            authz_extra_t extra = { ctx, nc, json_object_get (a, "context") };
            json_t *tk = json_object_get (a, "tuple");
            bool allowed = false;
            authz_error_clear (&err);
            rc = authz_check (store, model, json_string_value (json_object_get (tk, "object")),
                              json_string_value (json_object_get (tk, "relation")),
                              json_string_value (json_object_get (tk, "user")),
                              &extra, &allowed, &err);
            int want_code = (int) json_integer_value (json_object_get (a, "errorCode"));
            bool ok = want_code? rc == -want_code
                               : rc == 0 && allowed == json_is_true (json_object_get (a, "expectation"));
            char got [300];
            if (rc)
                snprintf (got, sizeof got, "error %d (%s)", -rc, err.message);
            else
                snprintf (got, sizeof got, "%s", allowed? "true": "false");
            s_record (pass, K_CHECK, ok, name, (int) si, ai, a, got);
        }
        //  ListObjects and ListUsers
        for (int kind = K_OBJECTS; kind <= K_USERS; kind++) {
            const char *key = kind == K_OBJECTS? "listObjectsAssertions": "listUsersAssertions";
            json_array_foreach (json_object_get (stage, key), ai, a) {
                if (pass == 1 && nt > 20)
                    break;
                authz_tuple_t ctx [2 * AUTHZ_MAX_CONTEXTUAL];
                size_t nc = 0;
                s_tuples (json_object_get (a, "contextualTuples"), ctx, &nc, AUTHZ_MAX_CONTEXTUAL);
                if (pass == 1)
                    s_tuples (tuples, ctx, &nc, 2 * AUTHZ_MAX_CONTEXTUAL);
                authz_extra_t extra = { ctx, nc, json_object_get (a, "context") };
                json_t *req = json_object_get (a, "request");
                json_t *result = NULL;
                authz_error_clear (&err);
                if (kind == K_OBJECTS)
                    rc = authz_list_objects (store, model,
                                             json_string_value (json_object_get (req, "type")),
                                             json_string_value (json_object_get (req, "relation")),
                                             json_string_value (json_object_get (req, "user")),
                                             &extra, &result, &err);
                else
                    rc = authz_list_users (store, model,
                                           json_string_value (json_object_get (req, "object")),
                                           json_string_value (json_object_get (req, "relation")),
                                           json_string_value (json_array_get (
                                               json_object_get (req, "filters"), 0)),
                                           &extra, &result, &err);
                int want_code = (int) json_integer_value (json_object_get (a, "errorCode"));
                bool ok = want_code? rc == -want_code
                                   : rc == 0 && s_same_set (result, json_object_get (a, "expectation"));
                char *txt = result? json_dumps (result, JSON_COMPACT): NULL;
                char got [600];
                if (rc)
                    snprintf (got, sizeof got, "error %d (%s)", -rc, err.message);
                else
                    snprintf (got, sizeof got, "%s", txt? txt: "?");
                free (txt);
                json_decref (result);
                s_record (pass, kind, ok, name, (int) si, ai, a, got);
            }
        }
    }
    authz_store_destroy (&store);
    nftw (dir, s_rm, 16, FTW_DEPTH | FTW_PHYS);
}

/*  Run every test of one file in both passes. */
static void
s_run_file (const char *file)
{
    const char *dir = getenv ("SANCTUM_CONFORMANCE_DIR");
    char path [1024];
    snprintf (path, sizeof path, "%s/%s", dir? dir: "../shared/conformance/openfga", file);
    json_error_t jerr;
    json_t *root = json_load_file (path, 0, &jerr);
    if (!root)
        fprintf (stderr, "cannot load %s: %s\n", path, jerr.text);
    assert_non_null (root);
    const char *only = getenv ("AUTHZ_TEST");
    size_t i;
    json_t *test;
    json_array_foreach (json_object_get (root, "tests"), i, test) {
        if (only && strcmp (only, json_string_value (json_object_get (test, "name"))))
            continue;
        s_run_test (test, 0);
        s_run_test (test, 1);
    }
    json_decref (root);
}

/*  The main suite. */
static void
test_consolidated (void **state)
{
    s_run_file ("consolidated_1_1_tests.json");
}

/*  Conditions. */
static void
test_abac (void **state)
{
    s_run_file ("abac_tests.json");
}

/*  Totals: fails the binary if any assertion failed. */
static void
test_totals (void **state)
{
    int failed = 0, passed = 0;
    for (int p = 0; p < 2; p++)
        for (int k = 0; k < K_KINDS; k++) {
            printf ("%-13s %-13s %4d passed, %4d failed\n", s_kind_names [k],
                    p? "contextual": "stored", s_pass [p][k], s_fail [p][k]);
            failed += s_fail [p][k];
            passed += s_pass [p][k];
        }
    printf ("%d passed, %d failed\n", passed, failed);
    assert_int_equal (failed, 0);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_consolidated),
        cmocka_unit_test (test_abac),
        cmocka_unit_test (test_totals),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
