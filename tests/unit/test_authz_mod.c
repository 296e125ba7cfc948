/*  test_authz_mod.c — modular models (fga.mod + module files, schema 1.2)
    against OpenFGA's own cases (shared/conformance/openfga/language):

    - fga-mod-transformer-cases.yaml: a valid fga.mod reads into the
      transformer's JSON exactly (values, lines, columns); each invalid
      one gives exactly the expected errors (msg, line, column).
    - transformer-module/CASE/module/NAME.fga (in name order): combined,
      the model equals authorization-model.json (key order ignored) and
      passes validation and compilation; for the cases with
      expected_errors.json, every error made here is one of the expected
      (msg, file, line, column), and the combining errors (not a module,
      duplicate condition, extended type missing, relation exists) are
      all made. Semantic errors of modular models with file positions are
      not made yet (counted and printed, not failed).
    - authz_mod_load reads fga.mod and its files from disk.

    The conformance directory is $SANCTUM_CONFORMANCE_DIR or
    ../shared/conformance relative to the repository root (the cwd).
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
#include "../../services/authz/authz_mod.h"
#include "../../services/authz/authz_model.h"
#include "../../services/authz/authz_validate.h"
#include "../support/test_service.h"
#include "bus_error.h"
#include <sys/stat.h>

static char s_base [1024];

static const char *
s_conf (const char *sub, char *buf, size_t size)
{
    const char *env = getenv ("SANCTUM_CONFORMANCE_DIR");
    snprintf (s_base, sizeof s_base, "%s/openfga/language", env && *env ? env : "../shared/conformance");
    snprintf (buf, size, "%s/%s", s_base, sub);
    return buf;
}

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

/*  Does error e match expected x (msg, line, column, and file when x has one)? */
static bool
s_same_error (json_t *e, json_t *x)
{
    if (!json_equal (json_object_get (e, "msg"), json_object_get (x, "msg"))
    ||  !json_equal (json_object_get (e, "line"), json_object_get (x, "line"))
    ||  !json_equal (json_object_get (e, "column"), json_object_get (x, "column")))
        return false;
    json_t *xf = json_object_get (x, "file");
    return !xf || json_equal (json_object_get (e, "file"), xf);
}

/*  Each of got is a distinct one of want; with all, the two are the same set. */
static bool
s_errors_within (json_t *got, json_t *want, bool all, const char *name)
{
    size_t n = json_array_size (want), i;
    bool *used = calloc (n + 1, 1), ok = true;
    json_t *e;
    json_array_foreach (got, i, e) {
        size_t k;
        for (k = 0; k < n; k++)
            if (!used [k] && s_same_error (e, json_array_get (want, k)))
                break;
        if (k == n) {
            char *text = json_dumps (e, JSON_COMPACT | JSON_SORT_KEYS);
            fprintf (stderr, "  %s: unexpected error %s\n", name, text);
            free (text);
            ok = false;
        }
        else
            used [k] = true;
    }
    if (all && json_array_size (got) != n)
        ok = false;
    free (used);
    return ok;
}

static void
test_mod_file_cases (void **state)
{
    char path [1200], err [256];
    json_t *cases = NULL;
    assert_int_equal (bus_yaml_load_file (&cases, s_conf ("fga-mod-transformer-cases.yaml", path, sizeof path),
                                          err, sizeof err), 0);
    size_t i;
    json_t *c;
    int pass = 0;
    json_array_foreach (cases, i, c) {
        const char *name = json_string_value (json_object_get (c, "name"));
        json_t *mod = NULL, *errors = NULL;
        int rc = authz_mod_parse (json_string_value (json_object_get (c, "modFile")), &mod, &errors);
        json_t *want_errors = json_object_get (c, "expected_errors");
        bool ok;
        if (want_errors)
            ok = rc != 0 && s_errors_within (errors, want_errors, true, name);
        else {
            json_t *want = json_loads (json_string_value (json_object_get (c, "json")), 0, NULL);
            ok = rc == 0 && json_equal (mod, want);
            if (!ok) {
                char *a = json_dumps (mod, JSON_COMPACT | JSON_SORT_KEYS);
                fprintf (stderr, "  %s: got %s\n", name, a);
                free (a);
            }
            json_decref (want);
        }
        if (!ok)
            fprintf (stderr, "not ok fga.mod case: %s\n", name);
        pass += ok;
        json_decref (mod);
        json_decref (errors);
    }
    printf ("  fga-mod-transformer-cases.yaml  %d passed, %zu failed\n", pass, json_array_size (cases) - (size_t) pass);
    assert_int_equal ((size_t) pass, json_array_size (cases));
    assert_true (pass >= 9);
    json_decref (cases);
}

static int
s_cmp (const void *a, const void *b)
{
    return strcmp (*(char *const *) a, *(char *const *) b);
}

/*  The module files of a case directory, in name order: [{file, text}]. */
static json_t *
s_module_files (const char *dir)
{
    char path [1600];
    snprintf (path, sizeof path, "%s/module", dir);
    DIR *d = opendir (path);
    char *names [64];
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir (d)) && n < 64)
        if (strstr (de->d_name, ".fga"))
            names [n++] = strdup (de->d_name);
    if (d)
        closedir (d);
    qsort (names, (size_t) n, sizeof names [0], s_cmp);
    json_t *files = json_array ();
    for (int i = 0; i < n; i++) {
        char full [1900];
        snprintf (full, sizeof full, "%s/%s", path, names [i]);
        char *text = s_slurp (full);
        json_array_append_new (files, json_pack ("{s:s, s:s}", "file", names [i], "text", text ? text : ""));
        free (text);
        free (names [i]);
    }
    return files;
}

static void
test_transformer_modules (void **state)
{
    char root [1200];
    s_conf ("transformer-module", root, sizeof root);
    DIR *d = opendir (root);
    assert_non_null (d);
    char *cases [32];
    int n = 0;
    struct dirent *de;
    while ((de = readdir (d)) && n < 32)
        if (de->d_name [0] != '.')
            cases [n++] = strdup (de->d_name);
    closedir (d);
    qsort (cases, (size_t) n, sizeof cases [0], s_cmp);
    int models = 0, error_cases = 0, combining_made = 0, semantic_missing = 0;
    for (int i = 0; i < n; i++) {
        char dir [1500], path [1700];
        snprintf (dir, sizeof dir, "%s/%s", root, cases [i]);
        json_t *files = s_module_files (dir);
        if (json_array_size (files) == 0) {     /* the data set has no module files for it */
            printf ("  transformer-module/%s: no module files in the data set, skipped\n", cases [i]);
            json_decref (files);
            free (cases [i]);
            continue;
        }
        json_t *model = NULL, *errors = NULL;
        int rc = authz_mod_combine (files, &model, &errors);
        snprintf (path, sizeof path, "%s/authorization-model.json", dir);
        json_t *want = json_load_file (path, 0, NULL);
        if (want) {
            if (rc || !json_equal (model, want)) {
                char *a = json_dumps (model ? model : errors, JSON_COMPACT | JSON_SORT_KEYS);
                fprintf (stderr, "not ok %s: got %s\n", cases [i], a);
                free (a);
            }
            assert_int_equal (rc, 0);
            assert_true (json_equal (model, want));
            /* it is a model authz takes: valid, and it compiles */
            json_t *copy = json_deep_copy (model), *verrs = NULL;
            assert_int_equal (authz_model_normalize (copy), 0);
            assert_int_equal (authz_model_validate (copy, &verrs), 0);
            assert_int_equal (json_array_size (verrs), 0);
            authz_model_t *compiled = NULL;
            assert_int_equal (authz_model_compile (&compiled, copy, NULL, NULL), 0);
            authz_model_destroy (&compiled);
            json_decref (copy);
            json_decref (verrs);
            models++;
        }
        snprintf (path, sizeof path, "%s/expected_errors.json", dir);
        json_t *want_errors = json_load_file (path, 0, NULL);
        if (want_errors) {
            /* the combining step's errors: each made here is expected */
            if (rc == 0) {
                /* no combining error: the expected ones are semantic */
                json_t *verrs = NULL, *copy = json_deep_copy (model);
                authz_model_normalize (copy);
                int vrc = authz_model_validate (copy, &verrs);
                assert_true (vrc != 0 || json_array_size (verrs) > 0);   /* refused all the same */
                json_decref (verrs);
                json_decref (copy);
            }
            else
                assert_true (s_errors_within (errors, want_errors, false, cases [i]));
            size_t k;
            json_t *x;
            json_array_foreach (want_errors, k, x) {
                const char *msg = json_string_value (json_object_get (x, "msg")) ?: "";
                bool combining = strstr (msg, "not a module") || strstr (msg, "duplicate condition")
                              || strstr (msg, "extended type") || strstr (msg, "already exists on type");
                bool made = false;
                size_t e;
                json_t *got;
                json_array_foreach (errors, e, got)
                    made |= s_same_error (got, x);
                if (combining) {
                    if (!made)
                        fprintf (stderr, "not ok %s: missing %s\n", cases [i], msg);
                    assert_true (made);
                    combining_made++;
                }
                else
                if (!made)
                    semantic_missing++;
            }
            error_cases++;
            json_decref (want_errors);
        }
        json_decref (want);
        json_decref (model);
        json_decref (errors);
        json_decref (files);
        free (cases [i]);
    }
    printf ("  transformer-module: %d models equal, %d error cases (%d combining errors made; "
            "%d semantic errors with positions not made)\n", models, error_cases, combining_made, semantic_missing);
    assert_true (models >= 2);
    assert_true (combining_made >= 4);
}

/*  fga.mod on disk: the files next to it, in its order. */
static void
test_mod_load (void **state)
{
    char dir [64];
    assert_int_equal (test_service_tmpdir (dir, sizeof dir, "authz-mod"), 0);
    char path [128];
    FILE *f;
    snprintf (path, sizeof path, "%s/fga.mod", dir);
    f = fopen (path, "w");
    fputs ("schema: '1.2'\ncontents:\n  - core.fga\n  - team/docs.fga\n", f);
    fclose (f);
    snprintf (path, sizeof path, "%s/core.fga", dir);
    f = fopen (path, "w");
    fputs ("module core\n\ntype user\n\ntype doc\n  relations\n    define owner: [user]\n", f);
    fclose (f);
    snprintf (path, sizeof path, "%s/team", dir);
    assert_int_equal (mkdir (path, 0700), 0);
    snprintf (path, sizeof path, "%s/team/docs.fga", dir);
    f = fopen (path, "w");
    fputs ("module docs\n\nextend type doc\n  relations\n    define viewer: [user] or owner\n", f);
    fclose (f);
    snprintf (path, sizeof path, "%s/fga.mod", dir);
    json_t *model = NULL, *errors = NULL;
    assert_int_equal (authz_mod_load (path, &model, &errors), 0);
    json_t *doc = json_array_get (json_object_get (model, "type_definitions"), 1);
    assert_non_null (json_object_get (json_object_get (doc, "relations"), "viewer"));
    assert_string_equal (json_string_value (json_object_get (json_object_get (json_object_get (
        json_object_get (json_object_get (doc, "metadata"), "relations"), "viewer"), "source_info"), "file")),
        "team/docs.fga");
    json_decref (model);
    json_decref (errors);
    /* a missing module file is an error naming it */
    snprintf (path, sizeof path, "%s/team/docs.fga", dir);
    remove (path);
    snprintf (path, sizeof path, "%s/fga.mod", dir);
    assert_int_equal (authz_mod_load (path, &model, &errors), BUS_EIO);
    assert_null (model);
    assert_non_null (strstr (json_string_value (json_object_get (json_array_get (errors, 0), "msg")), "docs.fga"));
    json_decref (errors);
    test_service_rmtree (dir);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_mod_file_cases),
        cmocka_unit_test (test_transformer_modules),
        cmocka_unit_test (test_mod_load),
    };
    int failed = cmocka_run_group_tests (tests, NULL, NULL);
    printf ("%d passed, %d failed\n", (int) (sizeof tests / sizeof tests [0]) - failed, failed);
    return failed ? 1 : 0;
}
