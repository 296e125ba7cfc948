/*  test_authz_limits.c — the authz identifier limits (PROTOCOL.md 10.3):
    OpenFGA's per field, and LMDB's 511-byte key for a stored tuple's
    object + relation + user. Ids past them are a validation error (2000,
    2027) before the store sees them, never a storage failure; a lookup
    whose key could not fit finds nothing.
*/
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
#include "../support/test_service.h"

static const char *s_model_json =
    "{\"schema_version\":\"1.1\",\"type_definitions\":["
    "{\"type\":\"user\"},"
    "{\"type\":\"doc\",\"relations\":{\"viewer\":{\"this\":{}},\"public\":{\"this\":{}}},"
     "\"metadata\":{\"relations\":{\"viewer\":{\"directly_related_user_types\":[{\"type\":\"user\"}]},"
       "\"public\":{\"directly_related_user_types\":[{\"type\":\"user\",\"wildcard\":{}}]}}}}]}";

typedef struct {
    char dir [64];
    authz_store_t *store;
    const authz_model_t *model;
    char log [96];                  /* stderr while a test runs */
    int saved_stderr;
} s_fix_t;

/*  Send stderr (the log) to a file of the fixture's directory. */
static void
s_log_capture (s_fix_t *f)
{
    snprintf (f->log, sizeof f->log, "%s/stderr.log", f->dir);
    fflush (stderr);
    f->saved_stderr = dup (2);
    FILE *file = fopen (f->log, "w");
    assert_non_null (file);
    assert_true (dup2 (fileno (file), 2) == 2);
    fclose (file);
}

/*  Restore stderr; the number of error-level log lines written meanwhile
    (an id that reached LMDB past its key size logs one). */
static int
s_log_errors (s_fix_t *f)
{
    fflush (stderr);
    dup2 (f->saved_stderr, 2);
    close (f->saved_stderr);
    FILE *file = fopen (f->log, "r");
    assert_non_null (file);
    char line [4096];
    int errors = 0;
    while (fgets (line, sizeof line, file))
        if (strstr (line, "\"level\":\"error\"") || strstr (line, "key of")) {
            fputs (line, stderr);
            errors++;
        }
    fclose (file);
    return errors;
}

static int
s_setup (void **state)
{
    s_fix_t *f = calloc (1, sizeof *f);
    assert_int_equal (test_service_tmpdir (f->dir, sizeof f->dir, "authz-limits"), 0);
    assert_int_equal (authz_store_open (&f->store, f->dir, 64 << 20), 0);
    json_t *m = json_loads (s_model_json, 0, NULL);
    assert_non_null (m);
    char id [AUTHZ_MODEL_ID_LEN + 1];
    assert_int_equal (authz_store_write_model (f->store, m, id, NULL), 0);
    json_decref (m);
    assert_int_equal (authz_store_model (f->store, NULL, &f->model, NULL), 0);
    s_log_capture (f);
    *state = f;
    return 0;
}

static int
s_teardown (void **state)
{
    s_fix_t *f = *state;
    int errors = s_log_errors (f);
    authz_store_destroy (&f->store);
    test_service_rmtree (f->dir);
    free (f);
    /* nothing reached the store past its key size */
    return errors ? -1 : 0;
}

/*  "prefix" followed by 'x' up to len bytes, in buf (of at least len + 1). */
static const char *
s_id (char *buf, const char *prefix, size_t len)
{
    size_t p = strlen (prefix);
    assert_true (len >= p);
    memcpy (buf, prefix, p);
    memset (buf + p, 'x', len - p);
    buf [len] = 0;
    return buf;
}

/*  Number of tuples a read with this filter returns (or the error). */
static int
s_read_count (s_fix_t *f, const char *object, const char *relation, const char *user)
{
    authz_tuple_t filter = { object, relation, user, NULL, NULL, NULL };
    json_t *tuples = NULL;
    char *token = NULL;
    authz_error_t err = { 0 };
    int rc = authz_store_read (f->store, &filter, 100, NULL, &tuples, &token, &err);
    int n = rc? rc: (int) json_array_size (tuples);
    json_decref (tuples);
    free (token);
    return n;
}

/*  Each field's limit, and the three together for a whole key. */
static void
test_limits_per_field (void **state)
{
    char o [600], r [100], u [600];
    authz_error_t err = { 0 };
    assert_int_equal (authz_tuple_check_limits (s_id (o, "doc:", 256), "viewer", "user:a", false, 2000, &err), 0);
    assert_int_equal (authz_tuple_check_limits (s_id (o, "doc:", 257), "viewer", "user:a", false, 2000, &err),
                      -2000);
    assert_non_null (strstr (err.message, "'object' field is 257 bytes, at most 256"));
    assert_int_equal (authz_tuple_check_limits ("doc:1", s_id (r, "v", 50), "user:a", false, 2000, &err), 0);
    assert_int_equal (authz_tuple_check_limits ("doc:1", s_id (r, "v", 51), "user:a", false, 2027, &err), -2027);
    assert_int_equal (err.code, 2027);
    assert_int_equal (authz_tuple_check_limits ("doc:1", "viewer", s_id (u, "user:", 512), false, 2000, &err), 0);
    assert_int_equal (authz_tuple_check_limits ("doc:1", "viewer", s_id (u, "user:", 513), false, 2000, &err),
                      -2000);
    /* absent fields (a filter) count as empty */
    assert_int_equal (authz_tuple_check_limits (NULL, NULL, NULL, true, 2000, &err), 0);
    /* the whole key: 504 bytes of fields fit LMDB's 511 with the store prefix and three NULs */
    s_id (o, "doc:", 256);
    s_id (u, "user:", 504 - 256 - 6);
    assert_int_equal (authz_tuple_check_limits (o, "viewer", u, true, 2000, &err), 0);
    s_id (u, "user:", 504 - 256 - 6 + 1);
    assert_int_equal (authz_tuple_check_limits (o, "viewer", u, true, 2000, &err), -2000);
    assert_non_null (strstr (err.message, "505 bytes, at most 504"));
    assert_int_equal (authz_tuple_check_limits (o, "viewer", u, false, 2000, &err), 0);
}

/*  Writes and deletes past the limits are 2000 and store nothing; at the
    limit the tuple is stored, read back, checked and deleted. */
static void
test_limits_write (void **state)
{
    s_fix_t *f = *state;
    char o [600], u [600];
    authz_error_t err = { 0 };
    s_id (o, "doc:", 256);
    s_id (u, "user:", 504 - 256 - 6);
    authz_tuple_t at = { o, "viewer", u, NULL, NULL, NULL };
    assert_int_equal (authz_store_write (f->store, f->model, &at, 1, NULL, 0, 0, &err), 0);
    assert_int_equal (s_read_count (f, o, NULL, NULL), 1);
    bool allowed = false;
    assert_int_equal (authz_check (f->store, f->model, o, "viewer", u, NULL, &allowed, &err), 0);
    assert_true (allowed);
    /* one byte more: refused, nothing written */
    char u2 [600];
    s_id (u2, "user:", 504 - 256 - 6 + 1);
    authz_tuple_t past = { o, "viewer", u2, NULL, NULL, NULL };
    memset (&err, 0, sizeof err);
    assert_int_equal (authz_store_write (f->store, f->model, &past, 1, NULL, 0, 0, &err), -2000);
    assert_non_null (strstr (err.message, "store's key limit"));
    assert_int_equal (authz_store_write (f->store, f->model, NULL, 0, &past, 1, AUTHZ_DELETE_IGNORE_MISSING, &err),
                      -2000);
    char o2 [600];
    authz_tuple_t long_object = { s_id (o2, "doc:", 490), "viewer", "user:erin", NULL, NULL, NULL };
    assert_int_equal (authz_store_write (f->store, f->model, &long_object, 1, NULL, 0, 0, &err), -2000);
    assert_int_equal (s_read_count (f, "doc:", NULL, NULL), 1);
    assert_int_equal (authz_store_write (f->store, f->model, NULL, 0, &at, 1, 0, &err), 0);
    assert_int_equal (s_read_count (f, "doc:", NULL, NULL), 0);
}

/*  Queries: a contextual tuple past the whole key is 2027; a checked user
    within its own limit but past the key is simply not found (a wildcard
    still grants it); read filters: a field past its limit is 2000, a
    filter past the key an empty page; a long continuation token is 2007. */
static void
test_limits_queries (void **state)
{
    s_fix_t *f = *state;
    char o [600], u [600], tok [1200];
    authz_error_t err = { 0 };
    s_id (o, "doc:", 256);
    s_id (u, "user:", 512);
    authz_tuple_t ctx = { o, "viewer", u, NULL, NULL, NULL };
    authz_extra_t extra = { .tuples = &ctx, .n_tuples = 1 };
    bool allowed = true;
    assert_int_equal (authz_check (f->store, f->model, "doc:1", "viewer", "user:a", &extra, &allowed, &err), -2027);
    assert_int_equal (err.code, 2027);
    memset (&err, 0, sizeof err);
    assert_int_equal (authz_check (f->store, f->model, o, "viewer", u, NULL, &allowed, &err), 0);
    assert_false (allowed);
    /* more viewers than the tuple cache holds: the check looks the user
       up by its whole key, which cannot fit */
    char names [12][16];
    authz_tuple_t many [12];
    for (int i = 0; i < 12; i++) {
        snprintf (names [i], sizeof names [i], "user:%d", i);
        many [i] = (authz_tuple_t) { "doc:1", "viewer", names [i], NULL, NULL, NULL };
    }
    assert_int_equal (authz_store_write (f->store, f->model, many, 12, NULL, 0, 0, &err), 0);
    assert_int_equal (authz_check (f->store, f->model, "doc:1", "viewer", u, NULL, &allowed, &err), 0);
    assert_false (allowed);
    assert_int_equal (authz_check (f->store, f->model, "doc:1", "viewer", "user:11", NULL, &allowed, &err), 0);
    assert_true (allowed);
    authz_tuple_t pub = { "doc:1", "public", "user:*", NULL, NULL, NULL };
    assert_int_equal (authz_store_write (f->store, f->model, &pub, 1, NULL, 0, 0, &err), 0);
    assert_int_equal (authz_check (f->store, f->model, "doc:1", "public", u, NULL, &allowed, &err), 0);
    assert_true (allowed);
    json_t *objects = NULL;
    assert_int_equal (authz_list_objects (f->store, f->model, "doc", "viewer", u, NULL, &objects, &err), 0);
    assert_int_equal (json_array_size (objects), 0);
    json_decref (objects);
    /* read filters */
    char big [600];
    assert_int_equal (s_read_count (f, s_id (big, "doc:", 257), NULL, NULL), -2000);
    assert_int_equal (s_read_count (f, NULL, NULL, s_id (big, "user:", 513)), -2000);
    assert_int_equal (s_read_count (f, o, "viewer", u), 0);
    assert_int_equal (s_read_count (f, "doc:", NULL, u), 0);
    assert_int_equal (s_read_count (f, "doc:1", "public", NULL), 1);
    memset (tok, 'a', 1100);
    tok [1100] = 0;
    authz_tuple_t filter = { "doc:", NULL, NULL, NULL, NULL, NULL };
    json_t *tuples = NULL;
    char *token = NULL;
    assert_int_equal (authz_store_read (f->store, &filter, 10, tok, &tuples, &token, &err), -2007);
    assert_null (tuples);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_limits_per_field),
        cmocka_unit_test_setup_teardown (test_limits_write, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_limits_queries, s_setup, s_teardown),
    };
    return test_service_summary ((int) (sizeof tests / sizeof tests [0]),
                                 cmocka_run_group_tests (tests, NULL, NULL));
}
