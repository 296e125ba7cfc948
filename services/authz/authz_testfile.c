/*  authz_testfile.c — run OpenFGA test files against an embedded engine.

    Reading order: the runner object; one test's store (s_run_*); one
    assertion (s_assert); the conformance format (s_conf_*); the store
    format: its schema (s_shape), referenced files (s_read_ref, tuple
    files, CSV), the model, the tests (s_store_*); the public entry points.
*/
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bus_error.h"
#include "bus_yaml.h"
#include "authz_check.h"
#include "authz_validate.h"
#include "authz_testfile.h"
#include "authz_mod.h"

#define S_CHUNK         40     /* tuples per write (OpenFGA's runner writes 40 at a time) */
#define S_CTX_LIST_MAX  20     /* contextual pass: list queries only up to 20 stage tuples */
#define S_GOT_MAX      600     /* characters of an error kept in a failure */

static const char *const s_kind_names [AUTHZ_TESTFILE_KINDS] = { "check", "list_objects", "list_users" };
static const char *const s_pass_names [AUTHZ_TESTFILE_PASSES] = { "stored", "contextual" };

struct authz_testfile_t {
    authz_testfile_opts_t opts;
    int passed [AUTHZ_TESTFILE_PASSES][AUTHZ_TESTFILE_KINDS];
    int failed [AUTHZ_TESTFILE_PASSES][AUTHZ_TESTFILE_KINDS];
    json_t *failures;           /* details of the first failures */
    json_t *errors;             /* file errors of the last run */
};

/*  One test being run: its temporary store, the current stage's model,
    and a setup error that fails every assertion when set. */
typedef struct {
    authz_testfile_t *self;
    const char *test;
    int stage;                  /* conformance stage, -1 for store files */
    authz_testfile_pass_t pass;
    char dir [PATH_MAX];
    authz_store_t *store;
    const authz_model_t *model;
    json_t *pass_tuples;        /* contextual pass: sent with every query */
    char setup [AUTHZ_ERRMSG_MAX + 64];
    int n_passed, n_failed;
} s_run_t;

/*  One query and what it should give. */
typedef struct {
    authz_testfile_kind_t kind;
    const char *object;         /* check, list users */
    const char *type;           /* list objects */
    const char *relation;
    const char *user;           /* check, list objects; list users: the filter */
    json_t *context;            /* condition context or NULL */
    json_t *tuples;             /* the assertion's contextual tuples or NULL */
    json_t *expected;           /* check: boolean; lists: array or null */
    int want_code;              /* an expected error code, 0 for none */
} s_query_t;

/* --- the runner ----------------------------------------------------------- */

/*  Record a file error at path (a JSON pointer or file name) and return
    BUS_EINVAL. */
static int
s_error (authz_testfile_t *self, const char *path, const char *fmt, ...)
{
    char msg [512];
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (msg, sizeof msg, fmt, ap);
    va_end (ap);
    if (json_array_size (self->errors) < AUTHZ_TESTFILE_MAX_ERRORS)
        json_array_append_new (self->errors, json_pack ("{s:s, s:s}", "path", path, "message", msg));
    return BUS_EINVAL;
}

/*  A path made of a parent path and a key or index (JSON pointer). */
static const char *
s_path (char *buf, size_t size, const char *parent, const char *key, size_t index)
{
    int n = key ? snprintf (buf, size, "%s/%s", parent, key)
                : snprintf (buf, size, "%s/%zu", parent, index);
    if (n < 0 || (size_t) n >= size)
        snprintf (buf + size - 4, 4, "...");
    return buf;
}

/* --- one test's store ------------------------------------------------------ */

/*  nftw callback: remove one entry. */
static int
s_rm (const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove (path);
}

/*  Where temporary stores go: $TMPDIR, else /dev/shm (no fsync cost) when
    writable, else /tmp. */
static const char *
s_tmp_base (void)
{
    const char *env = getenv ("TMPDIR");
    if (env && *env)
        return env;
    return access ("/dev/shm", W_OK | X_OK) == 0 ? "/dev/shm" : "/tmp";
}

/*  Start a test: a fresh store in a new temporary directory. A failure
    becomes the run's setup error. */
static void
s_run_open (s_run_t *run, authz_testfile_t *self, const char *test, authz_testfile_pass_t pass)
{
    memset (run, 0, sizeof *run);
    run->self = self;
    run->test = test;
    run->pass = pass;
    run->stage = -1;
    snprintf (run->dir, sizeof run->dir, "%s/sanctum-authz-test-XXXXXX", s_tmp_base ());
    if (!mkdtemp (run->dir)) {
        snprintf (run->setup, sizeof run->setup, "temporary store: %s", strerror (errno));
        run->dir [0] = 0;
        return;
    }
    int rc = authz_store_open (&run->store, run->dir, AUTHZ_TESTFILE_MAP_SIZE);
    if (rc)
        snprintf (run->setup, sizeof run->setup, "temporary store: %s", bus_strerror (rc));
}

/*  End a test: close and remove its store; a line when verbose. */
static void
s_run_close (s_run_t *run)
{
    authz_store_destroy (&run->store);
    if (run->dir [0])
        nftw (run->dir, s_rm, 16, FTW_DEPTH | FTW_PHYS);
    if (run->self->opts.verbose)
        fprintf (stderr, "%-7s %s%s: %d passed, %d failed%s%s\n", run->n_failed ? "FAIL" : "ok",
                 run->test, run->pass == AUTHZ_TESTFILE_CONTEXTUAL ? " (contextual tuples)" : "",
                 run->n_passed, run->n_failed, run->setup [0] ? "; " : "", run->setup);
}

/*  Write a model (borrowed) into the run's store and make it current. */
static void
s_run_model (s_run_t *run, json_t *model)
{
    if (run->setup [0])
        return;
    char id [AUTHZ_MODEL_ID_LEN + 1];
    authz_error_t err = { 0 };
    int rc = authz_store_write_model (run->store, model, id, &err);
    if (rc == 0)
        rc = authz_store_model (run->store, id, &run->model, &err);
    if (rc)
        snprintf (run->setup, sizeof run->setup, "model: %s",
                  err.code ? err.message : bus_strerror (rc));
}

/*  Write tuples (a JSON array of tuple keys) in chunks of S_CHUNK. */
static void
s_run_tuples (s_run_t *run, json_t *tuples)
{
    size_t nt = json_array_size (tuples);
    for (size_t i = 0; i < nt && !run->setup [0]; i += S_CHUNK) {
        authz_tuple_t w [S_CHUNK];
        authz_error_t err = { 0 };
        size_t n = 0;
        int rc = 0;
        for (size_t k = i; k < nt && k < i + S_CHUNK && rc == 0; k++)
            rc = authz_tuple_from_json (&w [n++], json_array_get (tuples, k), &err);
        if (rc == 0)
            rc = authz_store_write (run->store, run->model, w, n, NULL, 0, 0, &err);
        if (rc)
            snprintf (run->setup, sizeof run->setup, "writing tuples %zu-%zu: %s", i, i + n - 1,
                      err.code ? err.message : bus_strerror (rc));
    }
}

/* --- one assertion ---------------------------------------------------------- */

/*  Fill out with tuples from a JSON array (appending to *n, at most cap).
    Returns 0, or -2000 for a malformed tuple key. */
static int
s_ctx_tuples (json_t *list, authz_tuple_t *out, size_t *n, size_t cap, authz_error_t *err)
{
    size_t i;
    json_t *t;
    json_array_foreach (list, i, t) {
        if (*n >= cap)
            return authz_error_set (err, AUTHZ_EEXCEEDED_ITEMS, "too many contextual tuples");
        int rc = authz_tuple_from_json (&out [*n], t, err);
        if (rc)
            return rc;
        (*n)++;
    }
    return 0;
}

/*  True if got (array of strings) holds exactly the strings of want (array
    or null), ignoring order. */
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
            found = found || json_equal (g, w);
        if (!found)
            return false;
    }
    return true;
}

/*  Count one result; keep the details of a failure. got is stolen. */
static void
s_record (s_run_t *run, const s_query_t *q, bool ok, json_t *got)
{
    authz_testfile_t *self = run->self;
    if (ok) {
        self->passed [run->pass][q->kind]++;
        run->n_passed++;
        json_decref (got);
        return;
    }
    self->failed [run->pass][q->kind]++;
    run->n_failed++;
    if (json_array_size (self->failures) >= AUTHZ_TESTFILE_MAX_FAILURES) {
        json_decref (got);
        return;
    }
    json_t *expected = q->want_code ? json_sprintf ("error %d", q->want_code)
                     : q->kind == AUTHZ_TESTFILE_CHECK ? json_boolean (json_is_true (q->expected))
                     : json_is_array (q->expected) ? json_incref (q->expected) : json_array ();
    json_t *request = json_pack ("{s:s*, s:s*, s:s*, s:s*, s:O*}", "object", q->object,
                                 "type", q->type, "relation", q->relation,
                                 q->kind == AUTHZ_TESTFILE_LIST_USERS ? "filter" : "user", q->user,
                                 "context", q->context);
    json_t *failure = json_pack ("{s:s, s:s, s:s, s:o, s:o, s:o}", "test", run->test ? run->test : "",
                                 "pass", s_pass_names [run->pass], "kind", s_kind_names [q->kind],
                                 "request", request, "expected", expected,
                                 "got", got ? got : json_null ());
    if (failure && run->stage >= 0)
        json_object_set_new (failure, "stage", json_integer (run->stage));
    json_array_append_new (self->failures, failure);
}

/*  Run one query against the run's store and record the result. */
static void
s_assert (s_run_t *run, const s_query_t *q)
{
    if (run->setup [0]) {
        s_record (run, q, false, json_sprintf ("setup failed: %s", run->setup));
        return;
    }
    authz_tuple_t ctx [2 * AUTHZ_MAX_CONTEXTUAL];
    size_t nc = 0;
    authz_error_t err = { 0 };
    int rc = s_ctx_tuples (q->tuples, ctx, &nc, AUTHZ_MAX_CONTEXTUAL, &err);
    if (rc == 0)
        rc = s_ctx_tuples (run->pass_tuples, ctx, &nc, 2 * AUTHZ_MAX_CONTEXTUAL, &err);
    authz_extra_t extra = { ctx, nc, q->context, NULL };
    bool allowed = false;
    json_t *result = NULL;
    if (rc == 0 && q->kind == AUTHZ_TESTFILE_CHECK)
        rc = authz_check (run->store, run->model, q->object, q->relation, q->user, &extra,
                          &allowed, &err);
    else if (rc == 0 && q->kind == AUTHZ_TESTFILE_LIST_OBJECTS)
        rc = authz_list_objects (run->store, run->model, q->type, q->relation, q->user, &extra,
                                 &result, &err);
    else if (rc == 0)
        rc = authz_list_users (run->store, run->model, q->object, q->relation, q->user, &extra,
                               &result, &err);
    bool ok;
    json_t *got;
    if (rc) {
        ok = q->want_code && rc == -q->want_code;
        got = json_sprintf ("error %d: %.*s", -rc, S_GOT_MAX,
                            err.code ? err.message : bus_strerror (rc));
    }
    else if (q->kind == AUTHZ_TESTFILE_CHECK) {
        ok = !q->want_code && allowed == json_is_true (q->expected);
        got = json_boolean (allowed);
    }
    else {
        ok = !q->want_code && s_same_set (result, q->expected);
        got = json_incref (result);
    }
    json_decref (result);
    s_record (run, q, ok, got);
}

/* --- the conformance format --------------------------------------------------- */

/*  A stage's model as API JSON (new reference): model_json, else the DSL
    `model` parsed and validated. NULL with msg set when neither works. */
static json_t *
s_conf_model (json_t *stage, char *msg, size_t size)
{
    json_t *model = json_object_get (stage, "model_json");
    if (json_is_object (model))
        return json_incref (model);
    const char *dsl = json_string_value (json_object_get (stage, "model"));
    json_t *errors = NULL;
    model = NULL;
    if (!dsl)
        snprintf (msg, size, "model: the stage has neither model nor model_json");
    else if (authz_dsl_load (&model, dsl, &errors)) {
        json_t *first = json_array_get (errors, 0);
        snprintf (msg, size, "model line %lld: %s",
                  json_integer_value (json_object_get (json_object_get (first, "line"), "start")) + 1,
                  json_string_value (json_object_get (first, "msg")) ?: "invalid");
    }
    json_decref (errors);
    return model;
}

/*  Run one test of the conformance format in one pass. */
static void
s_conf_test (authz_testfile_t *self, json_t *test, authz_testfile_pass_t pass)
{
    static const char *const keys [AUTHZ_TESTFILE_KINDS] = {
        "checkAssertions", "listObjectsAssertions", "listUsersAssertions" };
    s_run_t run;
    s_run_open (&run, self, json_string_value (json_object_get (test, "name")), pass);
    size_t si;
    json_t *stage;
    json_array_foreach (json_object_get (test, "stages"), si, stage) {
        run.stage = (int) si;
        json_t *model = s_conf_model (stage, run.setup, sizeof run.setup);
        if (model)
            s_run_model (&run, model);
        json_decref (model);
        json_t *tuples = json_object_get (stage, "tuples");
        size_t nt = json_array_size (tuples);
        if (pass == AUTHZ_TESTFILE_STORED)
            s_run_tuples (&run, tuples);
        else
            run.pass_tuples = tuples;
        for (int kind = 0; kind < AUTHZ_TESTFILE_KINDS; kind++) {
            if (pass == AUTHZ_TESTFILE_CONTEXTUAL
                && nt > (kind == AUTHZ_TESTFILE_CHECK ? AUTHZ_MAX_CONTEXTUAL : S_CTX_LIST_MAX))
                continue;
            size_t ai;
            json_t *a;
            json_array_foreach (json_object_get (stage, keys [kind]), ai, a) {
                json_t *req = json_object_get (a, kind == AUTHZ_TESTFILE_CHECK ? "tuple" : "request");
                s_query_t q = {
                    .kind = kind,
                    .object = json_string_value (json_object_get (req, "object")),
                    .type = json_string_value (json_object_get (req, "type")),
                    .relation = json_string_value (json_object_get (req, "relation")),
                    .user = json_string_value (kind == AUTHZ_TESTFILE_LIST_USERS
                                               ? json_array_get (json_object_get (req, "filters"), 0)
                                               : json_object_get (req, "user")),
                    .context = json_object_get (a, "context"),
                    .tuples = json_object_get (a, "contextualTuples"),
                    .expected = json_object_get (a, "expectation"),
                    .want_code = (int) json_integer_value (json_object_get (a, "errorCode")),
                };
                s_assert (&run, &q);
            }
        }
    }
    s_run_close (&run);
}

/*  Run every test of a conformance file. */
static int
s_conf_file (authz_testfile_t *self, json_t *file)
{
    size_t i;
    json_t *test;
    json_array_foreach (json_object_get (file, "tests"), i, test) {
        const char *name = json_string_value (json_object_get (test, "name"));
        char where [64];
        if (!json_is_array (json_object_get (test, "stages")) || !name)
            s_error (self, s_path (where, sizeof where, "/tests", NULL, i),
                     "a conformance test needs a name and stages");
    }
    if (json_array_size (self->errors))
        return BUS_EINVAL;
    json_array_foreach (json_object_get (file, "tests"), i, test) {
        const char *name = json_string_value (json_object_get (test, "name"));
        if (self->opts.only && strcmp (self->opts.only, name))
            continue;
        s_conf_test (self, test, AUTHZ_TESTFILE_STORED);
        if (self->opts.contextual && json_array_size (json_object_get (test, "stages")) == 1)
            s_conf_test (self, test, AUTHZ_TESTFILE_CONTEXTUAL);
    }
    return 0;
}

/* --- the store format: schema ----------------------------------------------- */

/*  One property of an object in the schema and its JSON type: 's'
    string, 'o' object, 'a' array, 'b' boolean; upper case when required. */
typedef struct {
    const char *key;
    char type;
} s_field_t;

static const s_field_t s_store_fields [] = {
    { "name", 's' }, { "model", 's' }, { "model_file", 's' }, { "tuples", 'a' },
    { "tuple_file", 's' }, { "tuple_files", 'a' }, { "tests", 'A' }, { NULL, 0 } };
static const s_field_t s_test_fields [] = {
    { "name", 's' }, { "description", 's' }, { "tuples", 'a' }, { "tuple_file", 's' },
    { "check", 'a' }, { "list_objects", 'a' }, { "list_users", 'a' }, { NULL, 0 } };
static const s_field_t s_tuple_fields [] = {
    { "user", 'S' }, { "relation", 'S' }, { "object", 'S' },
    { "condition", 'o' }, { NULL, 0 } };
static const s_field_t s_condition_fields [] = {
    { "name", 'S' }, { "context", 'o' }, { NULL, 0 } };
static const s_field_t s_check_fields [] = {
    { "user", 's' }, { "users", 'a' }, { "object", 's' }, { "objects", 'a' },
    { "context", 'o' }, { "assertions", 'O' }, { NULL, 0 } };
static const s_field_t s_list_objects_fields [] = {
    { "user", 'S' }, { "type", 'S' }, { "relation", 's' }, { "context", 'o' },
    { "assertions", 'O' }, { NULL, 0 } };
static const s_field_t s_list_users_fields [] = {
    { "object", 'S' }, { "user_filter", 'A' }, { "context", 'o' },
    { "assertions", 'O' }, { NULL, 0 } };
static const s_field_t s_filter_fields [] = {
    { "type", 'S' }, { "relation", 's' }, { NULL, 0 } };
static const s_field_t s_users_fields [] = {
    { "users", 'a' }, { NULL, 0 } };

/*  True if value has the schema type t (null counts as absent). */
static bool
s_is_type (json_t *value, char t)
{
    t = (char) tolower ((unsigned char) t);
    return t == '*' || json_is_null (value)
        || (t == 's' && json_is_string (value)) || (t == 'o' && json_is_object (value))
        || (t == 'a' && json_is_array (value)) || (t == 'b' && json_is_boolean (value));
}

/*  Check obj at path against fields: an object, no other properties,
    each property of its type, the required ones present. Returns the
    number of errors. */
static int
s_shape (authz_testfile_t *self, json_t *obj, const char *path, const s_field_t *fields)
{
    static const char *const names [] = { ['s'] = "a string", ['o'] = "an object",
                                          ['a'] = "an array", ['b'] = "a boolean" };
    if (!json_is_object (obj)) {
        s_error (self, path, "must be an object");
        return 1;
    }
    int errors = 0;
    const char *key;
    json_t *value;
    json_object_foreach (obj, key, value) {
        const s_field_t *f = fields;
        while (f->key && strcmp (f->key, key))
            f++;
        char where [512];
        if (!f->key)
            errors += s_error (self, path, "must NOT have additional properties ('%s')", key) != 0;
        else if (!s_is_type (value, f->type))
            errors += s_error (self, s_path (where, sizeof where, path, key, 0), "must be %s",
                               names [tolower ((unsigned char) f->type)]) != 0;
    }
    for (const s_field_t *f = fields; f->key; f++)
        if (isupper ((unsigned char) f->type) && (!json_object_get (obj, f->key) || json_is_null (json_object_get (obj, f->key))))
            errors += s_error (self, path, "must have required property '%s'", f->key) != 0;
    return errors;
}

/*  Check every element of an array (at path/key) with check(self, value,
    element path). Returns the number of errors. */
static int
s_each (authz_testfile_t *self, json_t *obj, const char *path, const char *key,
        int (*check) (authz_testfile_t *, json_t *, const char *))
{
    char base [512], where [512];
    s_path (base, sizeof base, path, key, 0);
    int errors = 0;
    size_t i;
    json_t *value;
    json_array_foreach (json_object_get (obj, key), i, value)
        errors += check (self, value, s_path (where, sizeof where, base, NULL, i));
    return errors;
}

/*  A string element. */
static int
s_check_string (authz_testfile_t *self, json_t *value, const char *path)
{
    return json_is_string (value) ? 0 : s_error (self, path, "must be a string") != 0;
}

/*  A tuple key {user, relation, object, condition? {name, context?}}. */
static int
s_check_tuple (authz_testfile_t *self, json_t *value, const char *path)
{
    int errors = s_shape (self, value, path, s_tuple_fields);
    json_t *cond = json_object_get (value, "condition");
    char where [512];
    if (json_is_object (cond))
        errors += s_shape (self, cond, s_path (where, sizeof where, path, "condition", 0),
                           s_condition_fields);
    return errors;
}

/*  The values of an assertions map: each of type t (lists of strings for
    'a'; {users: [strings]} for 'u'). */
static int
s_check_assertions (authz_testfile_t *self, json_t *obj, const char *path, char t)
{
    char base [512], where [512];
    s_path (base, sizeof base, path, "assertions", 0);
    int errors = 0;
    const char *key;
    json_t *value;
    json_object_foreach (json_object_get (obj, "assertions"), key, value) {
        s_path (where, sizeof where, base, key, 0);
        if (t == 'u') {
            errors += s_shape (self, value, where, s_users_fields);
            if (json_is_object (value))
                errors += s_each (self, value, where, "users", s_check_string);
        }
        else if (!s_is_type (value, t))
            errors += s_error (self, where, t == 'b' ? "must be a boolean" : "must be an array") != 0;
        else if (t == 'a')
            errors += s_each (self, json_object_get (obj, "assertions"), base, key, s_check_string);
    }
    return errors;
}

/*  A check entry: user or users, object or objects, as fga requires. */
static int
s_check_check (authz_testfile_t *self, json_t *value, const char *path)
{
    int errors = s_shape (self, value, path, s_check_fields);
    if (errors)
        return errors;
    static const char *const pairs [2][2] = { { "user", "users" }, { "object", "objects" } };
    for (int p = 0; p < 2; p++) {
        bool one = json_is_string (json_object_get (value, pairs [p][0]));
        bool many = json_array_size (json_object_get (value, pairs [p][1])) > 0;
        if (one == many)
            errors += s_error (self, path, one ? "cannot contain both '%s' and '%s'"
                                               : "must specify '%s' or '%s'",
                               pairs [p][0], pairs [p][1]) != 0;
        errors += s_each (self, value, path, pairs [p][1], s_check_string);
    }
    return errors + s_check_assertions (self, value, path, 'b');
}

/*  A list_objects entry. */
static int
s_check_list_objects (authz_testfile_t *self, json_t *value, const char *path)
{
    int errors = s_shape (self, value, path, s_list_objects_fields);
    return errors ? errors : s_check_assertions (self, value, path, 'a');
}

/*  A user_filter element {type, relation?}. */
static int
s_check_filter (authz_testfile_t *self, json_t *value, const char *path)
{
    return s_shape (self, value, path, s_filter_fields);
}

/*  A list_users entry. */
static int
s_check_list_users (authz_testfile_t *self, json_t *value, const char *path)
{
    int errors = s_shape (self, value, path, s_list_users_fields);
    if (errors)
        return errors;
    if (json_array_size (json_object_get (value, "user_filter")) != 1)
        errors += s_error (self, path, "user_filter must hold exactly one filter") != 0;
    return errors + s_each (self, value, path, "user_filter", s_check_filter)
                  + s_check_assertions (self, value, path, 'u');
}

/*  A test. */
static int
s_check_test (authz_testfile_t *self, json_t *value, const char *path)
{
    int errors = s_shape (self, value, path, s_test_fields);
    if (errors)
        return errors;
    return s_each (self, value, path, "tuples", s_check_tuple)
         + s_each (self, value, path, "check", s_check_check)
         + s_each (self, value, path, "list_objects", s_check_list_objects)
         + s_each (self, value, path, "list_users", s_check_list_users);
}

/*  The whole store file. Returns the number of errors. */
static int
s_check_store (authz_testfile_t *self, json_t *file)
{
    int errors = s_shape (self, file, "", s_store_fields);
    if (!json_is_object (file))
        return errors;
    if (!json_is_string (json_object_get (file, "model"))
        && !json_is_string (json_object_get (file, "model_file")))
        errors += s_error (self, "", "'model' or 'model_file' must be present") != 0;
    return errors + s_each (self, file, "", "tuples", s_check_tuple)
                  + s_each (self, file, "", "tuple_files", s_check_string)
                  + s_each (self, file, "", "tests", s_check_test);
}

/* --- the store format: referenced files --------------------------------------- */

/*  Read the file ref names, relative to dir, into a new NUL-terminated
    buffer (*text, *len). It must be a regular file inside dir (after
    resolving symlinks) of at most AUTHZ_TESTFILE_MAX_FILE bytes. Errors
    are recorded at where. */
static int
s_read_ref (authz_testfile_t *self, const char *dir, const char *ref, const char *where,
            char **text, size_t *len)
{
    char base [PATH_MAX], full [PATH_MAX], real [PATH_MAX];
    *text = NULL;
    if (!realpath (dir, base))
        return s_error (self, where, "cannot resolve directory '%s': %s", dir, strerror (errno));
    snprintf (full, sizeof full, "%s/%s", dir, ref);
    if (!realpath (full, real))
        return s_error (self, where, "cannot read '%s': %s", ref, strerror (errno));
    size_t nb = strlen (base);
    if (strncmp (real, base, nb) || (real [nb] != '/' && base [nb - 1] != '/'))
        return s_error (self, where, "'%s' is outside the test file's directory", ref);
    struct stat st;
    if (stat (real, &st) || !S_ISREG (st.st_mode))
        return s_error (self, where, "'%s' is not a regular file", ref);
    if ((unsigned long long) st.st_size > AUTHZ_TESTFILE_MAX_FILE)
        return s_error (self, where, "'%s' is over %u bytes", ref, AUTHZ_TESTFILE_MAX_FILE);
    FILE *f = fopen (real, "rb");
    char *buf = f ? malloc ((size_t) st.st_size + 1) : NULL;
    size_t n = buf ? fread (buf, 1, (size_t) st.st_size, f) : 0;
    int rc = 0;
    if (!f || !buf || n != (size_t) st.st_size) {
        free (buf);
        buf = NULL;
        rc = f && !buf ? BUS_ENOMEM : s_error (self, where, "cannot read '%s'", ref);
    }
    else
        buf [n] = 0;
    if (f)
        fclose (f);
    *text = buf;
    *len = n;
    return rc;
}

/*  True if name ends with suffix. */
static bool
s_ends_with (const char *name, const char *suffix)
{
    size_t n = strlen (name), m = strlen (suffix);
    return n >= m && strcmp (name + n - m, suffix) == 0;
}

/*  One CSV record starting at *p (RFC 4180: quoted fields with "" escapes,
    CRLF or LF), using field (as long as the text) as scratch. Returns a new array of strings (NULL at the end of the
    text or on a bad quote, with *bad set); *p moves past the record. */
static json_t *
s_csv_record (const char **p, char *field, bool *bad)
{
    const char *s = *p;
    while (*s == '\n' || *s == '\r')
        s++;
    if (!*s)
        return NULL;
    json_t *fields = json_array ();
    while (fields) {
        size_t n = 0;
        if (*s == '"') {
            for (s++; *s && !(*s == '"' && s [1] != '"'); s++) {
                if (*s == '"')
                    s++;
                field [n++] = *s;
            }
            if (*s != '"') {
                *bad = true;
                break;
            }
            s++;
        }
        else
            while (*s && *s != ',' && *s != '\n' && *s != '\r')
                field [n++] = *s++;
        json_array_append_new (fields, json_stringn (field, n));
        if (*s != ',')
            break;
        s++;
    }
    if (*bad) {
        json_decref (fields);
        fields = NULL;
    }
    *p = s;
    return fields;
}

/*  Tuples from CSV text with fga's headers (user_type, user_id,
    user_relation?, relation, object_type, object_id, condition_name?,
    condition_context?) appended to out. */
static int
s_csv_tuples (authz_testfile_t *self, const char *text, const char *where, json_t *out)
{
    static const char *const names [] = { "user_type", "user_id", "user_relation", "relation",
                                          "object_type", "object_id", "condition_name",
                                          "condition_context" };
    enum { UT, UI, UR, REL, OT, OI, CN, CC, NCOL };
    int col [NCOL];
    for (int c = 0; c < NCOL; c++)
        col [c] = -1;
    bool bad = false;
    char *field = malloc (strlen (text) + 1);
    if (!field)
        return BUS_ENOMEM;
    json_t *header = s_csv_record (&text, field, &bad);
    int rc = header ? 0 : s_error (self, where, "CSV: no header");
    size_t i;
    json_t *h;
    json_array_foreach (header, i, h) {
        char name [64];
        snprintf (name, sizeof name, "%s", json_string_value (h));
        char *n = name + strspn (name, " \t");
        n [strcspn (n, " \t")] = 0;
        int c = 0;
        while (c < NCOL && strcmp (names [c], n))
            c++;
        if (c == NCOL)
            rc = s_error (self, where, "CSV: invalid header '%s'", n);
        else
            col [c] = (int) i;
    }
    for (int c = 0; c < NCOL && rc == 0; c++)
        if (col [c] < 0 && c != UR && c != CN && c != CC)
            rc = s_error (self, where, "CSV: missing required header '%s'", names [c]);
    if (rc == 0 && col [CC] >= 0 && col [CN] < 0)
        rc = s_error (self, where, "CSV: 'condition_context' needs a 'condition_name' column");
    for (int line = 2; rc == 0; line++) {
        json_t *rec = s_csv_record (&text, field, &bad);
        if (!rec) {
            if (bad)
                rc = s_error (self, where, "CSV line %d: unterminated quote", line);
            break;
        }
        const char *v [NCOL];
        for (int c = 0; c < NCOL; c++)
            v [c] = col [c] >= 0 ? json_string_value (json_array_get (rec, (size_t) col [c])) : "";
        json_t *tuple = NULL;
        if (json_array_size (rec) != json_array_size (header))
            rc = s_error (self, where, "CSV line %d: wrong number of fields", line);
        else
            tuple = json_pack ("{s:s++, s:s, s:s++}",
                               "user", v [UT], ":", v [UI], "relation", v [REL],
                               "object", v [OT], ":", v [OI]);
        if (tuple && *v [UR]) {
            json_t *user = json_sprintf ("%s#%s", json_string_value (json_object_get (tuple, "user")),
                                         v [UR]);
            json_object_set_new (tuple, "user", user);
        }
        if (tuple && *v [CN]) {
            json_error_t jerr;
            json_t *ctx = *v [CC] ? json_loads (v [CC], 0, &jerr) : json_object ();
            if (!json_is_object (ctx))
                rc = s_error (self, where, "CSV line %d: condition_context must be a JSON object",
                              line);
            json_object_set_new (tuple, "condition",
                                 json_pack ("{s:s, s:o}", "name", v [CN], "context",
                                            ctx ? ctx : json_object ()));
        }
        if (rc == 0 && !tuple)
            rc = BUS_ENOMEM;
        if (rc == 0)
            json_array_append (out, tuple);
        json_decref (tuple);
        json_decref (rec);
    }
    json_decref (header);
    free (field);
    return rc;
}

/*  Append the tuples of a tuple file (ref, relative to dir) to out; errors
    are recorded at where. */
static int
s_tuple_file (authz_testfile_t *self, const char *dir, const char *ref, const char *where,
              json_t *out)
{
    char *text = NULL;
    size_t len = 0, before = json_array_size (out);
    int rc = s_read_ref (self, dir, ref, where, &text, &len);
    json_t *list = NULL;
    char msg [256] = "";
    if (rc == 0 && s_ends_with (ref, ".csv"))
        rc = s_csv_tuples (self, text, where, out);
    else if (rc == 0 && s_ends_with (ref, ".jsonl")) {
        list = json_array ();
        int line = 1;
        for (char *s = text, *nl; s && *s && rc == 0; s = nl ? nl + 1 : NULL, line++) {
            nl = strchr (s, '\n');
            size_t n = nl ? (size_t) (nl - s) : strlen (s);
            if (strspn (s, " \t\r") >= n)
                continue;
            json_error_t jerr;
            json_t *t = json_loadb (s, n, 0, &jerr);
            if (!t)
                rc = s_error (self, where, "'%s' line %d: %s", ref, line, jerr.text);
            json_array_append_new (list, t);
        }
    }
    else if (rc == 0 && s_ends_with (ref, ".json")) {
        json_error_t jerr;
        list = json_loadb (text, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!list)
            rc = s_error (self, where, "'%s' line %d: %s", ref, jerr.line, jerr.text);
    }
    else if (rc == 0 && (s_ends_with (ref, ".yaml") || s_ends_with (ref, ".yml"))) {
        if (bus_yaml_load_string (&list, text, len, msg, sizeof msg))
            rc = s_error (self, where, "'%s': %s", ref, msg);
    }
    else if (rc == 0)
        rc = s_error (self, where, "'%s': unsupported tuple file format (.yaml, .yml, .json, .jsonl, .csv)",
                      ref);
    if (rc == 0 && list && !json_is_array (list))
        rc = s_error (self, where, "'%s' must hold an array of tuples", ref);
    size_t i;
    json_t *t;
    json_array_foreach (list, i, t) {
        char at [512];
        snprintf (at, sizeof at, "%s[%zu]", ref, i);
        if (rc == 0 && s_check_tuple (self, t, at))
            rc = BUS_EINVAL;
        if (rc == 0)
            json_array_append (out, t);
    }
    if (rc == 0 && json_array_size (out) == before)
        rc = s_error (self, where, "'%s' holds no tuples", ref);
    json_decref (list);
    free (text);
    return rc;
}

/* --- the store format: model and tests ------------------------------------------ */

/*  Record a model's validation errors (from DSL text when dsl is given). */
static int
s_model_errors (authz_testfile_t *self, const char *where, json_t *errors, int rc)
{
    size_t i;
    json_t *e;
    json_array_foreach (errors, i, e) {
        json_t *line = json_object_get (json_object_get (e, "line"), "start");
        json_t *col = json_object_get (json_object_get (e, "column"), "start");
        const char *file = json_string_value (json_object_get (e, "file"));
        if (line && file)               /* a modular model's module file */
            s_error (self, where, "%s line %lld column %lld: %s", file, json_integer_value (line) + 1,
                     json_integer_value (col) + 1, json_string_value (json_object_get (e, "msg")) ?: "invalid");
        else
        if (line)
            s_error (self, where, "line %lld: %s", json_integer_value (line) + 1,
                     json_string_value (json_object_get (e, "msg")) ?: "invalid");
        else
            s_error (self, where, "%s", json_string_value (json_object_get (e, "msg")) ?: "invalid");
    }
    if (json_array_size (errors) == 0)
        s_error (self, where, "invalid model: %s", bus_strerror (rc));
    return BUS_EINVAL;
}

/*  The store file's model as API JSON (new reference in *out): `model`
    (DSL), else `model_file` (API JSON when it ends in .json, else DSL). */
static int
s_store_model (authz_testfile_t *self, json_t *file, const char *dir, json_t **out)
{
    *out = NULL;
    const char *dsl = json_string_value (json_object_get (file, "model"));
    const char *ref = json_string_value (json_object_get (file, "model_file"));
    const char *where = dsl ? "/model" : "/model_file";
    bool from_file = !dsl;
    char *text = NULL;
    size_t len = 0;
    json_t *errors = NULL, *model = NULL;
    int rc = 0;
    if (from_file) {
        rc = s_read_ref (self, dir, ref, where, &text, &len);
        dsl = text;
    }
    if (rc)
        model = NULL;
    else if (from_file && s_ends_with (ref, ".json")) {
        json_error_t jerr;
        model = json_loadb (text, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!model)
            rc = s_error (self, where, "'%s' line %d: %s", ref, jerr.line, jerr.text);
        else if ((rc = authz_model_normalize (model)) == 0)
            rc = authz_model_validate (model, &errors);
        if (rc && model)
            rc = s_model_errors (self, where, errors, rc);
    }
    else if (from_file && s_ends_with (ref, ".mod")) {
        /* a modular model: fga.mod and its module files, beside it */
        char full [PATH_MAX * 2];
        snprintf (full, sizeof full, "%s/%s", dir, ref);
        rc = authz_mod_load (full, &model, &errors);
        if (rc == 0 && (rc = authz_model_normalize (model)) == 0) {
            json_decref (errors);
            errors = NULL;
            rc = authz_model_validate (model, &errors);
        }
        if (rc)
            rc = s_model_errors (self, where, errors, rc);
    }
    else if ((rc = authz_dsl_load (&model, dsl, &errors)) != 0)
        rc = s_model_errors (self, where, errors, rc);
    if (rc) {
        json_decref (model);
        model = NULL;
    }
    json_decref (errors);
    free (text);
    *out = model;
    return rc;
}

/*  Run the check entries of a store-file test. */
static void
s_store_checks (s_run_t *run, json_t *test)
{
    size_t i;
    json_t *c;
    json_array_foreach (json_object_get (test, "check"), i, c) {
        json_t *user = json_object_get (c, "user"), *object = json_object_get (c, "object");
        json_t *users = user ? NULL : json_object_get (c, "users");
        json_t *objects = object ? NULL : json_object_get (c, "objects");
        size_t nu = user ? 1 : json_array_size (users), no = object ? 1 : json_array_size (objects);
        for (size_t u = 0; u < nu; u++)
            for (size_t o = 0; o < no; o++) {
                const char *relation;
                json_t *expected;
                json_object_foreach (json_object_get (c, "assertions"), relation, expected) {
                    s_query_t q = {
                        .kind = AUTHZ_TESTFILE_CHECK,
                        .object = json_string_value (object ?: json_array_get (objects, o)),
                        .relation = relation,
                        .user = json_string_value (user ?: json_array_get (users, u)),
                        .context = json_object_get (c, "context"),
                        .expected = expected,
                    };
                    s_assert (run, &q);
                }
            }
    }
}

/*  Run the list_objects and list_users entries of a store-file test. */
static void
s_store_lists (s_run_t *run, json_t *test)
{
    size_t i;
    json_t *e;
    json_array_foreach (json_object_get (test, "list_objects"), i, e) {
        const char *relation;
        json_t *expected;
        json_object_foreach (json_object_get (e, "assertions"), relation, expected) {
            s_query_t q = {
                .kind = AUTHZ_TESTFILE_LIST_OBJECTS,
                .type = json_string_value (json_object_get (e, "type")),
                .relation = relation,
                .user = json_string_value (json_object_get (e, "user")),
                .context = json_object_get (e, "context"),
                .expected = expected,
            };
            s_assert (run, &q);
        }
    }
    json_array_foreach (json_object_get (test, "list_users"), i, e) {
        json_t *f = json_array_get (json_object_get (e, "user_filter"), 0);
        const char *frel = json_string_value (json_object_get (f, "relation"));
        char filter [2 * AUTHZ_MAX_FIELD + 2];
        snprintf (filter, sizeof filter, "%s%s%s", json_string_value (json_object_get (f, "type")),
                  frel ? "#" : "", frel ? frel : "");
        const char *relation;
        json_t *expected;
        json_object_foreach (json_object_get (e, "assertions"), relation, expected) {
            s_query_t q = {
                .kind = AUTHZ_TESTFILE_LIST_USERS,
                .object = json_string_value (json_object_get (e, "object")),
                .relation = relation,
                .user = filter,
                .context = json_object_get (e, "context"),
                .expected = json_object_get (expected, "users"),
            };
            s_assert (run, &q);
        }
    }
}

/*  Run a store file: check its shape, load its model and tuple files,
    then each test in a fresh store with the global and the test's tuples. */
static int
s_store_file (authz_testfile_t *self, json_t *file, const char *dir)
{
    json_t *model = NULL, *global = json_array (), *tests = json_array ();
    if (!global || !tests) {
        json_decref (global);
        json_decref (tests);
        return BUS_ENOMEM;
    }
    int rc = s_check_store (self, file) ? BUS_EINVAL : 0;
    if (rc == 0)
        rc = s_store_model (self, file, dir, &model);
    json_array_extend (global, json_object_get (file, "tuples"));
    const char *ref = json_string_value (json_object_get (file, "tuple_file"));
    if (rc == 0 && ref)
        rc = s_tuple_file (self, dir, ref, "/tuple_file", global);
    size_t i;
    json_t *test, *name_js;
    json_array_foreach (json_object_get (file, "tuple_files"), i, name_js) {
        char where [64];
        if (rc == 0)
            rc = s_tuple_file (self, dir, json_string_value (name_js),
                               s_path (where, sizeof where, "/tuple_files", NULL, i), global);
    }
    //  Every test's tuples, before anything runs: a bad file stops the run
    json_array_foreach (json_object_get (file, "tests"), i, test) {
        json_t *tuples = json_copy (global);
        json_array_extend (tuples, json_object_get (test, "tuples"));
        ref = json_string_value (json_object_get (test, "tuple_file"));
        char where [64];
        snprintf (where, sizeof where, "/tests/%zu/tuple_file", i);
        if (rc == 0 && ref)
            rc = s_tuple_file (self, dir, ref, where, tuples);
        json_array_append_new (tests, tuples);
    }
    json_array_foreach (json_object_get (file, "tests"), i, test) {
        if (rc)
            break;
        char name [64];
        const char *tname = json_string_value (json_object_get (test, "name"));
        if (!tname)
            snprintf (name, sizeof name, "test %zu", i + 1);
        if (self->opts.only && strcmp (self->opts.only, tname ? tname : name))
            continue;
        s_run_t run;
        s_run_open (&run, self, tname ? tname : name, AUTHZ_TESTFILE_STORED);
        s_run_model (&run, model);
        s_run_tuples (&run, json_array_get (tests, i));
        s_store_checks (&run, test);
        s_store_lists (&run, test);
        s_run_close (&run);
    }
    json_decref (model);
    json_decref (global);
    json_decref (tests);
    return rc;
}

/* --- public ------------------------------------------------------------------ */

int
authz_testfile_new (authz_testfile_t **out, const authz_testfile_opts_t *opts)
{
    authz_testfile_t *self = calloc (1, sizeof *self);
    if (self) {
        if (opts)
            self->opts = *opts;
        self->failures = json_array ();
        self->errors = json_array ();
    }
    if (self && (!self->failures || !self->errors))
        authz_testfile_destroy (&self);
    *out = self;
    return self ? 0 : BUS_ENOMEM;
}

void
authz_testfile_destroy (authz_testfile_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    authz_testfile_t *self = *self_p;
    json_decref (self->failures);
    json_decref (self->errors);
    free (self);
    *self_p = NULL;
}

int
authz_testfile_load (json_t **out, const char *path, char *err, size_t err_len)
{
    *out = NULL;
    if (!s_ends_with (path, ".json")) {
        char msg [512] = "";
        int rc = bus_yaml_load_file (out, path, msg, sizeof msg);
        if (rc)
            snprintf (err, err_len, "%s%s%s", strncmp (msg, path, strlen (path)) ? path : "",
                      strncmp (msg, path, strlen (path)) ? ": " : "", msg);
        return rc;
    }
    struct stat st;
    if (stat (path, &st) != 0) {
        snprintf (err, err_len, "%s: %s", path, strerror (errno));
        return BUS_EIO;
    }
    if ((unsigned long long) st.st_size > AUTHZ_TESTFILE_MAX_FILE) {
        snprintf (err, err_len, "%s: over %u bytes", path, AUTHZ_TESTFILE_MAX_FILE);
        return BUS_ETOOBIG;
    }
    json_error_t jerr;
    *out = json_load_file (path, JSON_REJECT_DUPLICATES, &jerr);
    if (!*out) {
        snprintf (err, err_len, "%s line %d column %d: %s", path, jerr.line, jerr.column, jerr.text);
        return BUS_EINVAL;
    }
    return 0;
}

int
authz_testfile_run (authz_testfile_t *self, json_t *file, const char *dir)
{
    assert (self);
    json_array_clear (self->errors);
    json_t *first = json_array_get (json_object_get (file, "tests"), 0);
    if (json_object_get (first, "stages"))
        return s_conf_file (self, file);
    return s_store_file (self, file, dir ? dir : ".");
}

int
authz_testfile_passed (const authz_testfile_t *self, authz_testfile_pass_t pass,
                       authz_testfile_kind_t kind)
{
    return self->passed [pass][kind];
}

int
authz_testfile_failed (const authz_testfile_t *self, authz_testfile_pass_t pass,
                       authz_testfile_kind_t kind)
{
    return self->failed [pass][kind];
}

/*  Sum of a [pass][kind] table. */
static int
s_sum (const int table [AUTHZ_TESTFILE_PASSES][AUTHZ_TESTFILE_KINDS])
{
    int n = 0;
    for (int p = 0; p < AUTHZ_TESTFILE_PASSES; p++)
        for (int k = 0; k < AUTHZ_TESTFILE_KINDS; k++)
            n += table [p][k];
    return n;
}

int
authz_testfile_total_passed (const authz_testfile_t *self)
{
    return s_sum (self->passed);
}

int
authz_testfile_total_failed (const authz_testfile_t *self)
{
    return s_sum (self->failed);
}

json_t *
authz_testfile_failures (const authz_testfile_t *self)
{
    return self->failures;
}

json_t *
authz_testfile_errors (const authz_testfile_t *self)
{
    return self->errors;
}

json_t *
authz_testfile_summary (const authz_testfile_t *self)
{
    json_t *summary = json_object ();
    json_t *contextual = json_object ();
    for (int p = 0; p < AUTHZ_TESTFILE_PASSES; p++)
        for (int k = 0; k < AUTHZ_TESTFILE_KINDS; k++)
            json_object_set_new (p ? contextual : summary, s_kind_names [k],
                                 json_pack ("{s:i, s:i}", "passed", self->passed [p][k],
                                            "failed", self->failed [p][k]));
    json_object_set_new (summary, "contextual", contextual);
    json_object_set_new (summary, "passed", json_integer (authz_testfile_total_passed (self)));
    json_object_set_new (summary, "failed", json_integer (authz_testfile_total_failed (self)));
    json_object_set (summary, "failures", self->failures);
    return summary;
}

const char *
authz_testfile_kind_name (authz_testfile_kind_t kind)
{
    return kind < AUTHZ_TESTFILE_KINDS ? s_kind_names [kind] : "?";
}

const char *
authz_testfile_pass_name (authz_testfile_pass_t pass)
{
    return pass < AUTHZ_TESTFILE_PASSES ? s_pass_names [pass] : "?";
}
