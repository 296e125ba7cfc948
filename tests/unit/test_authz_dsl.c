/*  test_authz_dsl.c — the OpenFGA DSL parser and model validator against
    OpenFGA's own case files (shared/conformance/openfga).

    The conformance directory is $SANCTUM_CONFORMANCE_DIR or
    ../shared/conformance relative to the repository root (the cwd).

    Comparisons:
    - models (transformer cases, consolidated/abac stages): JSON equality
      ignoring key order, after dropping `"metadata": null` and an empty
      `conditions` object and an empty `type_definitions` array on both
      sides (OpenFGA's tools treat null, empty and absent alike).
    - semantic and JSON validation cases: the error sets must be equal
      (same count; each expected error matched by a distinct actual one
      with the same msg, line, column and the metadata fields the case
      gives), order ignored.
    - syntax cases: a valid case must parse; an invalid one must fail with
      the first error at the expected first error's line and column
      (STRICT: the same first message too; the full ANTLR error recovery
      list is reported as information only, see the report).
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../bus/bus_yaml.h"
#include "../../services/authz/authz_dsl.h"
#include "../../services/authz/authz_validate.h"

static char s_dir [1024];
static int s_total_pass, s_total_fail;
static bool s_verbose;

/*  Resolve the openfga conformance directory. */
static const char *
s_conf (const char *sub, char *buf, size_t size)
{
    if (!*s_dir) {
        const char *env = getenv ("SANCTUM_CONFORMANCE_DIR");
        snprintf (s_dir, sizeof s_dir, "%s/openfga", env && *env ? env : "../shared/conformance");
        s_verbose = getenv ("AUTHZ_DSL_VERBOSE") != NULL;
    }
    snprintf (buf, size, "%s/%s", s_dir, sub);
    return buf;
}

/*  Read a whole file (NUL-terminated) or NULL. */
static char *
s_slurp (const char *path)
{
    FILE *f = fopen (path, "rb");
    if (!f)
        return NULL;
    fseek (f, 0, SEEK_END);
    long n = ftell (f);
    fseek (f, 0, SEEK_SET);
    char *buf = malloc ((size_t) n + 1);
    if (buf && fread (buf, 1, (size_t) n, f) != (size_t) n) {
        free (buf);
        buf = NULL;
    }
    if (buf)
        buf [n] = '\0';
    fclose (f);
    return buf;
}

/*  Drop "metadata": null from type definitions, an empty "conditions" and
    an empty "type_definitions". */
static void
s_canon (json_t *model)
{
    json_t *c = json_object_get (model, "conditions");
    if (c && (json_is_null (c) || json_object_size (c) == 0))
        json_object_del (model, "conditions");
    if (json_array_size (json_object_get (model, "type_definitions")) == 0)
        json_object_del (model, "type_definitions");
    size_t i;
    json_t *td;
    json_array_foreach (json_object_get (model, "type_definitions"), i, td)
        if (json_is_null (json_object_get (td, "metadata")))
            json_object_del (td, "metadata");
}

/*  True if model text parses (and, when validate, passes validation) to
    a model equal to expected. The transformer cases are syntax-only: some
    are not semantically valid models. */
static bool
s_model_matches (const char *dsl, json_t *expected, const char *name, bool validate)
{
    json_t *model = NULL, *errors = NULL;
    int rc = validate ? authz_dsl_load (&model, dsl, &errors) : authz_dsl_parse (&model, dsl, &errors);
    json_t *want = json_deep_copy (expected);
    authz_model_normalize (want);
    bool ok = rc == 0 && model;
    if (ok) {
        s_canon (model);
        s_canon (want);
        ok = json_equal (model, want);
    }
    if (!ok && s_verbose) {
        char *a = model ? json_dumps (model, JSON_SORT_KEYS | JSON_COMPACT) : json_dumps (errors, JSON_COMPACT);
        char *b = json_dumps (want, JSON_SORT_KEYS | JSON_COMPACT);
        fprintf (stderr, "MODEL MISMATCH %s\n got  %s\n want %s\n", name, a, b);
        free (a);
        free (b);
    }
    json_decref (want);
    json_decref (model);
    json_decref (errors);
    return ok;
}

/*  Print and fold a case file's counts into the totals. */
static void
s_report (const char *what, int pass, int fail)
{
    printf ("  %-48s %4d passed, %d failed\n", what, pass, fail);
    s_total_pass += pass;
    s_total_fail += fail;
}

/*  Cases the file itself marks `skip: true` (OpenFGA skips them too). */
static void
s_skipped (int n)
{
    if (n)
        printf ("  %-48s %4d skipped (marked skip: true)\n", "", n);
}

/*  Load a YAML case file or fail the test. */
static json_t *
s_cases (const char *sub)
{
    char path [1200], err [256];
    json_t *cases = NULL;
    int rc = bus_yaml_load_file (&cases, s_conf (sub, path, sizeof path), err, sizeof err);
    if (rc != 0)
        fprintf (stderr, "%s: %s\n", path, err);
    assert_int_equal (rc, 0);
    assert_true (json_is_array (cases));
    return cases;
}

/*  True if actual error a satisfies expected error e: msg equal, and the
    line, column and metadata members e gives equal in a. */
static bool
s_error_matches (json_t *e, json_t *a)
{
    if (!json_equal (json_object_get (e, "msg"), json_object_get (a, "msg")))
        return false;
    const char *keys [] = { "line", "column" };
    for (int i = 0; i < 2; i++) {
        json_t *ev = json_object_get (e, keys [i]);
        if (ev && !json_equal (ev, json_object_get (a, keys [i])))
            return false;
    }
    const char *k;
    json_t *v;
    json_object_foreach (json_object_get (e, "metadata"), k, v)
        if (!json_equal (v, json_object_get (json_object_get (a, "metadata"), k)))
            return false;
    return true;
}

/*  True if the error sets are equal (order ignored). */
static bool
s_errors_match (json_t *expected, json_t *actual)
{
    size_t n = json_array_size (expected);
    if (n != json_array_size (actual))
        return false;
    char used [4096] = { 0 };
    if (n > sizeof used)
        return false;
    size_t i, j;
    json_t *e, *a;
    json_array_foreach (expected, i, e) {
        bool found = false;
        json_array_foreach (actual, j, a)
            if (!used [j] && s_error_matches (e, a)) {
                used [j] = 1;
                found = true;
                break;
            }
        if (!found)
            return false;
    }
    return true;
}

/*  Show a failing validation case. */
static void
s_show (const char *name, json_t *expected, json_t *actual)
{
    if (!s_verbose)
        return;
    char *a = json_dumps (actual, JSON_COMPACT), *b = json_dumps (expected, JSON_COMPACT);
    fprintf (stderr, "FAIL %s\n got  %s\n want %s\n", name, a, b);
    free (a);
    free (b);
}

/*  language/transformer/<case>/authorization-model.fga -> .json */
static void
test_transformer (void **state)
{
    char dir [1200], path [1600];
    s_conf ("language/transformer", dir, sizeof dir);
    DIR *d = opendir (dir);
    assert_non_null (d);
    int pass = 0, fail = 0;
    struct dirent *de;
    while ((de = readdir (d))) {
        if (de->d_name [0] == '.')
            continue;
        snprintf (path, sizeof path, "%s/%s/authorization-model.fga", dir, de->d_name);
        char *dsl = s_slurp (path);
        snprintf (path, sizeof path, "%s/%s/authorization-model.json", dir, de->d_name);
        json_t *want = json_load_file (path, 0, NULL);
        if (dsl && want && s_model_matches (dsl, want, de->d_name, false))
            pass++;
        else
            fail++;
        free (dsl);
        json_decref (want);
    }
    closedir (d);
    s_report ("language/transformer/*", pass, fail);
    assert_int_equal (fail, 0);
}

/*  Every stage of a test file: model (DSL) must give model_json. */
static void
s_stages (const char *file)
{
    char path [1200];
    json_t *doc = json_load_file (s_conf (file, path, sizeof path), 0, NULL);
    assert_non_null (doc);
    int pass = 0, fail = 0;
    size_t i, j;
    json_t *t, *st;
    json_array_foreach (json_object_get (doc, "tests"), i, t)
        json_array_foreach (json_object_get (t, "stages"), j, st) {
            const char *dsl = json_string_value (json_object_get (st, "model"));
            json_t *want = json_object_get (st, "model_json");
            if (dsl && want && s_model_matches (dsl, want, json_string_value (json_object_get (t, "name")), true))
                pass++;
            else
                fail++;
        }
    json_decref (doc);
    s_report (file, pass, fail);
    assert_int_equal (fail, 0);
}

static void test_consolidated (void **state) { s_stages ("consolidated_1_1_tests.json"); }
static void test_abac (void **state)         { s_stages ("abac_tests.json"); }

/*  language/dsl-semantic-validation-cases.yaml */
static void
test_semantic (void **state)
{
    json_t *cases = s_cases ("language/dsl-semantic-validation-cases.yaml");
    int pass = 0, fail = 0, skipped = 0;
    size_t i;
    json_t *c;
    json_array_foreach (cases, i, c) {
        json_t *model = NULL, *errors = NULL;
        json_t *want = json_object_get (c, "expected_errors");
        if (json_is_true (json_object_get (c, "skip"))) {
            skipped++;
            continue;
        }
        json_t *empty = json_array ();
        int rc = authz_dsl_load (&model, json_string_value (json_object_get (c, "dsl")), &errors);
        bool ok = json_array_size (want) ? rc != 0 && s_errors_match (want, errors)
                                          : rc == 0;
        if (ok)
            pass++;
        else {
            fail++;
            s_show (json_string_value (json_object_get (c, "name")), want ? want : empty, errors);
        }
        json_decref (empty);
        json_decref (model);
        json_decref (errors);
    }
    json_decref (cases);
    s_report ("language/dsl-semantic-validation-cases.yaml", pass, fail);
    s_skipped (skipped);
    assert_int_equal (fail, 0);
}

/*  language/dsl-syntax-validation-cases.yaml (criterion in the header) */
static void
test_syntax (void **state)
{
    json_t *cases = s_cases ("language/dsl-syntax-validation-cases.yaml");
    int pass = 0, fail = 0, skipped = 0, strict = 0, n_invalid = 0;
    size_t i;
    json_t *c;
    json_array_foreach (cases, i, c) {
        json_t *model = NULL, *errors = NULL;
        json_t *want = json_object_get (c, "expected_errors");
        if (json_is_true (json_object_get (c, "skip"))) {
            skipped++;
            continue;
        }
        const char *dsl = json_string_value (json_object_get (c, "dsl"));
        int rc = authz_dsl_parse (&model, dsl, &errors);
        bool ok;
        if (json_array_size (want) == 0)
            ok = rc == 0;
        else {
            n_invalid++;
            json_t *w = json_array_get (want, 0), *g = json_array_get (errors, 0);
            ok = rc != 0 && g
              && json_equal (json_object_get (json_object_get (w, "line"), "start"),
                             json_object_get (json_object_get (g, "line"), "start"))
              && json_equal (json_object_get (json_object_get (w, "column"), "start"),
                             json_object_get (json_object_get (g, "column"), "start"));
            if (ok && s_errors_match (want, errors))
                strict++;
        }
        if (ok)
            pass++;
        else {
            fail++;
            s_show (json_string_value (json_object_get (c, "name")), want, errors);
        }
        json_decref (model);
        json_decref (errors);
    }
    json_decref (cases);
    s_report ("language/dsl-syntax-validation-cases.yaml", pass, fail);
    s_skipped (skipped);
    printf ("  %-48s %4d of %d invalid cases with the exact full error list\n", "  (information)", strict, n_invalid);
    assert_int_equal (fail, 0);
}

/*  language/json-validation-cases.yaml */
static void
test_json_validation (void **state)
{
    json_t *cases = s_cases ("language/json-validation-cases.yaml");
    int pass = 0, fail = 0;
    size_t i;
    json_t *c;
    json_array_foreach (cases, i, c) {
        json_t *want = json_object_get (c, "expected_errors");
        json_t *model = json_loads (json_string_value (json_object_get (c, "json")), 0, NULL);
        json_t *errors = NULL, *empty = json_array ();
        authz_model_normalize (model);
        int rc = authz_model_validate (model, &errors);
        bool ok = json_array_size (want) ? rc != 0 && s_errors_match (want, errors) : rc == 0;
        if (ok)
            pass++;
        else {
            fail++;
            s_show (json_string_value (json_object_get (c, "name")), want ? want : empty, errors);
        }
        json_decref (empty);
        json_decref (model);
        json_decref (errors);
    }
    json_decref (cases);
    s_report ("language/json-validation-cases.yaml", pass, fail);
    assert_int_equal (fail, 0);
}

/*  Normalisation renames structural keys only. */
static void
test_normalize (void **state)
{
    json_t *m = json_loads ("{\"schemaVersion\":\"1.1\",\"typeDefinitions\":[{\"type\":\"doc\","
        "\"relations\":{\"typeName\":{\"computed_userset\":{\"relation\":\"x\"}},"
        "\"x\":{\"this\":{}}},\"metadata\":{\"relations\":{\"x\":{\"directlyRelatedUserTypes\":"
        "[{\"type\":\"doc\"}]}}}}],\"conditions\":{\"c\":{\"name\":\"c\",\"expression\":\"a\","
        "\"parameters\":{\"a\":{\"typeName\":\"TYPE_NAME_LIST\",\"genericTypes\":"
        "[{\"typeName\":\"TYPE_NAME_INT\"}]}}}}}", 0, NULL);
    assert_non_null (m);
    assert_int_equal (authz_model_normalize (m), 0);
    json_t *want = json_loads ("{\"schema_version\":\"1.1\",\"type_definitions\":[{\"type\":\"doc\","
        "\"relations\":{\"typeName\":{\"computedUserset\":{\"relation\":\"x\"}},"
        "\"x\":{\"this\":{}}},\"metadata\":{\"relations\":{\"x\":{\"directly_related_user_types\":"
        "[{\"type\":\"doc\"}]}}}}],\"conditions\":{\"c\":{\"name\":\"c\",\"expression\":\"a\","
        "\"parameters\":{\"a\":{\"type_name\":\"TYPE_NAME_LIST\",\"generic_types\":"
        "[{\"type_name\":\"TYPE_NAME_INT\"}]}}}}}", 0, NULL);
    assert_true (json_equal (m, want));
    json_decref (m);
    json_decref (want);
}

/*  Hostile inputs: size, type count, nesting, garbage. Errors, no crash. */
static void
test_limits (void **state)
{
    json_t *model = NULL, *errors = NULL;
    size_t big = AUTHZ_DSL_MAX_SIZE + 10;
    char *text = malloc (big + 1);
    assert_non_null (text);
    memset (text, ' ', big);
    memcpy (text, "model\n  schema 1.1\n", 19);
    text [big] = '\0';
    assert_int_not_equal (authz_dsl_parse (&model, text, &errors), 0);
    assert_null (model);
    assert_true (json_array_size (errors) > 0);
    json_decref (errors);

    /* 10,001 types within the size limit */
    size_t o = (size_t) sprintf (text, "model\n  schema 1.1\n");
    for (int i = 0; i <= AUTHZ_DSL_MAX_TYPES; i++)
        o += (size_t) sprintf (text + o, "type t%d\n", i);
    assert_true (o < AUTHZ_DSL_MAX_SIZE);
    assert_int_not_equal (authz_dsl_parse (&model, text, &errors), 0);
    assert_null (model);
    json_decref (errors);

    /* pathological parenthesis nesting */
    o = (size_t) sprintf (text, "model\n  schema 1.1\ntype user\ntype d\n  relations\n    define a: [user]\n    define b: ");
    for (int i = 0; i < 100000; i++)
        text [o++] = '(';
    text [o++] = 'a';
    for (int i = 0; i < 100000; i++)
        text [o++] = ')';
    text [o] = '\0';
    assert_int_not_equal (authz_dsl_parse (&model, text, &errors), 0);
    json_decref (errors);

    /* garbage and truncations of a real model */
    const char *good = "model\n  schema 1.1\ntype user\ntype doc\n  relations\n"
                       "    define viewer: [user, user:*, doc#viewer with c] or (editor and viewer from parent)\n"
                       "    define editor: [user]\n    define parent: [doc]\n"
                       "condition c(x: map<int>) {\n  x.a < 3\n}\n";
    assert_int_equal (authz_dsl_parse (&model, good, NULL), 0);
    json_decref (model);
    size_t n = strlen (good);
    for (size_t cut = 0; cut < n; cut++) {
        memcpy (text, good, cut);
        text [cut] = '\0';
        if (authz_dsl_load (&model, text, &errors) == 0)
            json_decref (model);
        json_decref (errors);
        for (size_t k = 0; k < n; k++)
            text [k] = good [(k * 7 + cut) % n];
        text [n] = '\0';
        if (authz_dsl_load (&model, text, &errors) == 0)
            json_decref (model);
        json_decref (errors);
    }
    free (text);
}

/*  Print the totals last, as the house style asks. */
static int
s_teardown (void **state)
{
    printf ("%d passed, %d failed\n", s_total_pass, s_total_fail);
    return 0;
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_normalize),
        cmocka_unit_test (test_transformer),
        cmocka_unit_test (test_consolidated),
        cmocka_unit_test (test_abac),
        cmocka_unit_test (test_syntax),
        cmocka_unit_test (test_semantic),
        cmocka_unit_test (test_json_validation),
        cmocka_unit_test (test_limits),
    };
    return cmocka_run_group_tests (tests, NULL, s_teardown);
}
