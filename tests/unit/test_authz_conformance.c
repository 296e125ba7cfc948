/*  test_authz_conformance.c — OpenFGA's conformance suite, and the test
    file runner (authz_testfile) behind `sanctumctl authz test`.

    Runs shared/conformance/openfga/{consolidated_1_1_tests,abac_tests}.json
    (directory: $SANCTUM_CONFORMANCE_DIR or ../shared/conformance/openfga
    from the repository root) through authz_testfile with the
    contextual-tuple pass, prints the counts per kind and pass and every
    failure, and fails unless every assertion passes and the counts are
    exactly the suite's. $AUTHZ_TEST=NAME runs only that test. Then the
    `.fga.yaml` store format: OpenFGA's language/stores cases (two valid,
    two that must be refused) and files written here that use every
    feature (tuple files in CSV, JSONL, JSON and YAML, per-test tuples,
    users/objects lists, conditions, user filters with a relation) and the
    errors a bad file must give.
*/
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>
#include "../../bus/bus_error.h"
#include "../../services/authz/authz_testfile.h"

static authz_testfile_t *s_suite;     /* counts over both conformance files */

/*  The conformance directory. */
static const char *
s_conf_dir (void)
{
    const char *dir = getenv ("SANCTUM_CONFORMANCE_DIR");
    return dir ? dir : "../shared/conformance/openfga";
}

/*  Load and run one file (relative to the conformance directory) with
    runner; returns what authz_testfile_run returned. */
static int
s_run (authz_testfile_t *runner, const char *name)
{
    char path [1024], dir [1024], err [512] = "";
    snprintf (path, sizeof path, "%s/%s", s_conf_dir (), name);
    snprintf (dir, sizeof dir, "%s", path);
    char *slash = strrchr (dir, '/');
    *slash = 0;
    json_t *file = NULL;
    int rc = authz_testfile_load (&file, path, err, sizeof err);
    if (rc)
        fprintf (stderr, "cannot load %s: %s\n", path, err);
    assert_int_equal (rc, 0);
    rc = authz_testfile_run (runner, file, dir);
    json_decref (file);
    return rc;
}

/*  The main suite. */
static void
test_consolidated (void **state)
{
    assert_int_equal (s_run (s_suite, "consolidated_1_1_tests.json"), 0);
}

/*  Conditions. */
static void
test_abac (void **state)
{
    assert_int_equal (s_run (s_suite, "abac_tests.json"), 0);
}

/*  Totals: every assertion passes, and all of them ran. */
static void
test_totals (void **state)
{
    static const int want [AUTHZ_TESTFILE_PASSES][AUTHZ_TESTFILE_KINDS] = {
        { 485, 345, 386 }, { 398, 281, 329 } };
    char *text = json_dumps (authz_testfile_failures (s_suite), JSON_INDENT (1));
    if (authz_testfile_total_failed (s_suite))
        printf ("failures: %s\n", text);
    free (text);
    for (int p = 0; p < AUTHZ_TESTFILE_PASSES; p++)
        for (int k = 0; k < AUTHZ_TESTFILE_KINDS; k++)
            printf ("%-13s %-11s %4d passed, %4d failed\n", authz_testfile_kind_name (k),
                    authz_testfile_pass_name (p), authz_testfile_passed (s_suite, p, k),
                    authz_testfile_failed (s_suite, p, k));
    printf ("conformance: %d passed, %d failed\n", authz_testfile_total_passed (s_suite),
            authz_testfile_total_failed (s_suite));
    assert_int_equal (authz_testfile_total_failed (s_suite), 0);
    if (!getenv ("AUTHZ_TEST"))
        for (int p = 0; p < AUTHZ_TESTFILE_PASSES; p++)
            for (int k = 0; k < AUTHZ_TESTFILE_KINDS; k++)
                assert_int_equal (authz_testfile_passed (s_suite, p, k), want [p][k]);
}

/*  True if some error of runner has path and a message containing text. */
static bool
s_has_error (authz_testfile_t *runner, const char *path, const char *text)
{
    size_t i;
    json_t *e;
    json_array_foreach (authz_testfile_errors (runner), i, e)
        if (strcmp (json_string_value (json_object_get (e, "path")), path) == 0
            && strstr (json_string_value (json_object_get (e, "message")), text))
            return true;
    char *dump = json_dumps (authz_testfile_errors (runner), JSON_COMPACT);
    printf ("no error at '%s' with '%s' in %s\n", path, text, dump);
    free (dump);
    return false;
}

/*  OpenFGA's store-file cases: two valid stores, one without a model, one
    with properties the schema does not know (both with the errors of
    their expected_errors.json). */
static void
test_language_stores (void **state)
{
    static const char *const valid [] = { "00-valid-model", "01-valid-model-file" };
    for (int i = 0; i < 2; i++) {
        authz_testfile_t *runner = NULL;
        assert_int_equal (authz_testfile_new (&runner, NULL), 0);
        char name [256];
        snprintf (name, sizeof name, "language/stores/%s/store.fga.yaml", valid [i]);
        assert_int_equal (s_run (runner, name), 0);
        for (int k = 0; k < AUTHZ_TESTFILE_KINDS; k++) {
            assert_int_equal (authz_testfile_passed (runner, AUTHZ_TESTFILE_STORED, k), 1);
            assert_int_equal (authz_testfile_failed (runner, AUTHZ_TESTFILE_STORED, k), 0);
        }
        authz_testfile_destroy (&runner);
        assert_null (runner);
    }
    authz_testfile_t *runner = NULL;
    assert_int_equal (authz_testfile_new (&runner, NULL), 0);
    assert_int_equal (s_run (runner, "language/stores/02-missing-model/store.fga.yaml"), BUS_EINVAL);
    assert_true (s_has_error (runner, "", "'model' or 'model_file' must be present"));
    assert_int_equal (s_run (runner, "language/stores/03-additional-properties/store.fga.yaml"),
                      BUS_EINVAL);
    assert_int_equal (json_array_size (authz_testfile_errors (runner)), 2);
    assert_true (s_has_error (runner, "", "additional properties ('unexpected_field2')"));
    assert_true (s_has_error (runner, "/tests/0/check/0", "additional properties ('unexpected_field')"));
    assert_int_equal (authz_testfile_total_passed (runner) + authz_testfile_total_failed (runner), 0);
    authz_testfile_destroy (&runner);
}

/*  nftw callback: remove one entry. */
static int
s_rm (const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove (path);
}

/*  Write text to dir/name. */
static void
s_write (const char *dir, const char *name, const char *text)
{
    char path [512];
    snprintf (path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen (path, "w");
    assert_non_null (f);
    fputs (text, f);
    fclose (f);
}

/*  Run the YAML text as a store file in dir with runner. */
static int
s_run_text (authz_testfile_t *runner, const char *dir, const char *yaml)
{
    s_write (dir, "store.fga.yaml", yaml);
    char path [512], err [256];
    snprintf (path, sizeof path, "%s/store.fga.yaml", dir);
    json_t *file = NULL;
    assert_int_equal (authz_testfile_load (&file, path, err, sizeof err), 0);
    int rc = authz_testfile_run (runner, file, dir);
    json_decref (file);
    return rc;
}

static const char s_model [] =
    "model: |\n"
    "  model\n"
    "    schema 1.1\n"
    "  type user\n"
    "  type group\n"
    "    relations\n"
    "      define member: [user]\n"
    "  type doc\n"
    "    relations\n"
    "      define viewer: [user, group#member, user with small]\n"
    "  condition small(x: int) {\n"
    "    x < 10\n"
    "  }\n";

/*  Every feature of the store format, and one wrong assertion reported. */
static void
test_store_format (void **state)
{
    char dir [] = "/tmp/authz-testfile-XXXXXX";
    assert_non_null (mkdtemp (dir));
    s_write (dir, "tuples.csv",
             "user_type,user_id,user_relation,relation,object_type,object_id,condition_name,condition_context\r\n"
             "group,eng,member,viewer,doc,1,,\r\n"
             "user,ann,,viewer,doc,2,small,\"{\"\"x\"\": 3}\"\r\n"
             "user,bob,,viewer,doc,3,small,\r\n");
    s_write (dir, "more.jsonl", "{\"user\":\"user:carl\",\"relation\":\"member\",\"object\":\"group:eng\"}\n\n");
    s_write (dir, "extra.json", "[{\"user\":\"user:dora\",\"relation\":\"viewer\",\"object\":\"doc:4\"}]");
    s_write (dir, "t.yaml", "- {user: \"user:erin\", relation: viewer, object: \"doc:5\"}\n");
    char yaml [4096];
    snprintf (yaml, sizeof yaml, "%s%s", s_model,
              "tuple_file: tuples.csv\n"
              "tuple_files: [more.jsonl, extra.json]\n"
              "tests:\n"
              "  - name: one\n"
              "    tuple_file: t.yaml\n"
              "    tuples: [{user: \"user:fay\", relation: viewer, object: \"doc:6\"}]\n"
              "    check:\n"
              "      - {users: [\"user:ann\", \"user:bob\"], object: \"doc:1\", assertions: {viewer: false}}\n"
              "      - {user: \"user:carl\", objects: [\"doc:1\"], assertions: {viewer: true}}\n"
              "      - {user: \"user:ann\", object: \"doc:2\", assertions: {viewer: true}}\n"
              "      - {user: \"user:bob\", object: \"doc:3\", context: {x: 20}, assertions: {viewer: false}}\n"
              "      - {user: \"user:erin\", object: \"doc:5\", assertions: {viewer: true}}\n"
              "      - {user: \"user:fay\", object: \"doc:6\", assertions: {viewer: true}}\n"
              "      - {user: \"user:dora\", object: \"doc:4\", assertions: {viewer: false}}\n"
              "    list_objects:\n"
              "      - {user: \"user:carl\", type: doc, assertions: {viewer: [\"doc:1\"]}}\n"
              "    list_users:\n"
              "      - object: \"doc:1\"\n"
              "        user_filter: [{type: group, relation: member}]\n"
              "        assertions: {viewer: {users: [\"group:eng#member\"]}}\n"
              "  - name: two\n"
              "    check:\n"
              "      - {user: \"user:erin\", object: \"doc:5\", assertions: {viewer: false}}\n");
    authz_testfile_t *runner = NULL;
    assert_int_equal (authz_testfile_new (&runner, &(authz_testfile_opts_t) { .contextual = true }), 0);
    assert_int_equal (s_run_text (runner, dir, yaml), 0);
    char *dump = json_dumps (authz_testfile_failures (runner), JSON_COMPACT);
    printf ("store format failures: %s\n", dump);
    free (dump);
    assert_int_equal (authz_testfile_passed (runner, AUTHZ_TESTFILE_STORED, AUTHZ_TESTFILE_CHECK), 8);
    assert_int_equal (authz_testfile_failed (runner, AUTHZ_TESTFILE_STORED, AUTHZ_TESTFILE_CHECK), 1);
    assert_int_equal (authz_testfile_passed (runner, AUTHZ_TESTFILE_STORED, AUTHZ_TESTFILE_LIST_OBJECTS), 1);
    assert_int_equal (authz_testfile_passed (runner, AUTHZ_TESTFILE_STORED, AUTHZ_TESTFILE_LIST_USERS), 1);
    assert_int_equal (authz_testfile_total_failed (runner), 1);
    assert_int_equal (authz_testfile_total_passed (runner), 10);
    json_t *f = json_array_get (authz_testfile_failures (runner), 0);
    assert_string_equal (json_string_value (json_object_get (f, "test")), "one");
    assert_string_equal (json_string_value (json_object_get (f, "kind")), "check");
    assert_true (json_is_false (json_object_get (f, "expected")));
    assert_true (json_is_true (json_object_get (f, "got")));
    assert_string_equal (json_string_value (json_object_get (json_object_get (f, "request"), "user")),
                         "user:dora");
    json_t *summary = authz_testfile_summary (runner);
    assert_int_equal (json_integer_value (json_object_get (json_object_get (summary, "check"), "failed")), 1);
    assert_int_equal (json_integer_value (json_object_get (summary, "passed")), 10);
    json_decref (summary);
    authz_testfile_destroy (&runner);
    nftw (dir, s_rm, 16, FTW_DEPTH | FTW_PHYS);
}

/*  Files that must be refused, each with the error it must give. */
static void
test_store_errors (void **state)
{
    static const struct { const char *yaml, *path, *message; } cases [] = {
        { "model_file: ../outside.fga\ntests: []\n", "/model_file", "outside the test file's directory" },
        { "model_file: missing.fga\ntests: []\n", "/model_file", "cannot read 'missing.fga'" },
        { "model_file: link.fga\ntests: []\n", "/model_file", "outside the test file's directory" },
        { "tuple_file: missing.csv\ntests: []\n", "/tuple_file", "cannot read 'missing.csv'" },
        { "tuple_file: bad.csv\ntests: []\n", "/tuple_file", "invalid header 'who'" },
        { "tuple_file: bad.txt\ntests: []\n", "/tuple_file", "unsupported tuple file format" },
        { "tuples: [{user: \"user:a\", relation: member, object: \"group:g\"}]\n"
          "tests: [{tuple_file: empty.yaml}]\n", "/tests/0/tuple_file", "holds no tuples" },
        { "tuple_files: [bad.json]\ntests: []\n", "bad.json[0]", "required property 'object'" },
        { "tests: [{check: [{user: \"user:a\", users: [\"user:b\"], object: \"doc:1\", assertions: {viewer: true}}]}]\n",
          "/tests/0/check/0", "cannot contain both 'user' and 'users'" },
        { "tests: [{check: [{object: \"doc:1\", assertions: {viewer: true}}]}]\n",
          "/tests/0/check/0", "must specify 'user' or 'users'" },
        { "tests: [{check: [{user: \"user:a\", object: \"doc:1\", assertions: {viewer: 3}}]}]\n",
          "/tests/0/check/0/assertions/viewer", "must be a boolean" },
        { "tests: [{list_users: [{object: \"doc:1\", user_filter: [], assertions: {}}]}]\n",
          "/tests/0/list_users/0", "exactly one filter" },
        { "tuples: [{user: \"user:a\", relation: viewer}]\ntests: []\n", "/tuples/0",
          "required property 'object'" },
        { "name: 3\n", "", "required property 'tests'" },
    };
    char root [] = "/tmp/authz-testfile-XXXXXX", dir [64], link [96];
    assert_non_null (mkdtemp (root));
    snprintf (dir, sizeof dir, "%s/in", root);
    assert_int_equal (mkdir (dir, 0700), 0);
    s_write (root, "outside.fga", "model\n  schema 1.1\ntype user\n");
    snprintf (link, sizeof link, "%s/link.fga", dir);
    assert_int_equal (symlink ("../outside.fga", link), 0);
    s_write (dir, "bad.csv", "who,relation\nuser,viewer\n");
    s_write (dir, "bad.txt", "x");
    s_write (dir, "empty.yaml", "[]\n");
    s_write (dir, "bad.json", "[{\"user\": \"user:a\", \"relation\": \"viewer\"}]");
    authz_testfile_t *runner = NULL;
    assert_int_equal (authz_testfile_new (&runner, NULL), 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        char yaml [2048];
        snprintf (yaml, sizeof yaml, "%s%s", strncmp (cases [i].yaml, "model_file", 10) ? s_model : "",
                  cases [i].yaml);
        assert_int_equal (s_run_text (runner, dir, yaml), BUS_EINVAL);
        assert_true (s_has_error (runner, cases [i].path, cases [i].message));
    }
    //  A model that does not validate, with its line
    assert_int_equal (s_run_text (runner, dir, "model: |\n  model\n    schema 1.1\n  type doc\n"
                                               "    relations\n      define viewer: [nobody]\ntests: []\n"),
                      BUS_EINVAL);
    assert_true (s_has_error (runner, "/model", "line 5"));
    assert_int_equal (authz_testfile_total_passed (runner) + authz_testfile_total_failed (runner), 0);
    authz_testfile_destroy (&runner);
    nftw (root, s_rm, 16, FTW_DEPTH | FTW_PHYS);
}

/*  The suite's runner (contextual pass on; $AUTHZ_TEST picks one test). */
static int
s_setup (void **state)
{
    authz_testfile_opts_t opts = { .contextual = true, .only = getenv ("AUTHZ_TEST") };
    return authz_testfile_new (&s_suite, &opts);
}

static int
s_teardown (void **state)
{
    authz_testfile_destroy (&s_suite);
    return 0;
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_consolidated),
        cmocka_unit_test (test_abac),
        cmocka_unit_test (test_totals),
        cmocka_unit_test (test_language_stores),
        cmocka_unit_test (test_store_format),
        cmocka_unit_test (test_store_errors),
    };
    return cmocka_run_group_tests (tests, s_setup, s_teardown);
}
