/*  authz_testfile.h — run OpenFGA test files against an embedded engine.

    What `fga model test` does, on a temporary LMDB store per test (under
    $TMPDIR, else /dev/shm when writable, else /tmp; removed afterwards).
    Two formats are accepted, told apart by the shape of `tests`:

    Conformance (OpenFGA's own test suites): tests[].stages[], each stage with
    `model` (DSL) and/or `model_json` (API JSON, preferred when present),
    `tuples`, `checkAssertions[] {tuple, expectation | errorCode,
    contextualTuples, context}`, `listObjectsAssertions[] {request {user,
    type, relation}, ...}`, `listUsersAssertions[] {request {filters,
    object, relation}, ...}`. All stages of a test share one store; each
    stage writes its model, then its tuples (40 per write), then runs its
    assertions. With opts.contextual, a single-stage test runs again with
    its tuples sent as contextual tuples instead (skipped as OpenFGA's
    runner skips: Check when the stage has more than 100 tuples,
    ListObjects/ListUsers when it has more than 20). A stage whose model or
    tuples cannot be written fails each of its assertions.

    Store (`fga model test`'s .fga.yaml): `name`, `model` (DSL) or
    `model_file` (DSL, API JSON when it ends in .json, or a modular model
    when it ends in .mod: an fga.mod, authz_mod.h), `tuples`,
    `tuple_file`, `tuple_files` (.yaml/.yml/.json arrays of tuple keys,
    .jsonl, .csv with fga's headers), `tests[] {name, description, tuples,
    tuple_file, check[] {user|users, object|objects, context, assertions
    {relation: bool}}, list_objects[] {user, type, context, assertions
    {relation: [objects]}}, list_users[] {object, user_filter [{type,
    relation?}], context, assertions {relation: {users: [...]}}}}`. The file
    is checked against fga's schema first (unknown properties, missing
    model, wrong types are errors with a JSON-pointer path). Each test runs
    in a fresh store holding the model, the global tuples and the test's
    own tuples; there is no contextual pass. Referenced files resolve
    against the directory given to authz_testfile_run() and must stay
    inside it (after symlinks), as fga requires by default.

    An assertion is one query: for store files, one per relation in
    `assertions` (and per user × object for check `users`/`objects`).
*/
#ifndef AUTHZ_TESTFILE_H
#define AUTHZ_TESTFILE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define AUTHZ_TESTFILE_MAX_FILE      (16u * 1024u * 1024u) /* a test, model or tuple file */
#define AUTHZ_TESTFILE_MAX_FAILURES  1000  /* failure details kept (all are counted) */
#define AUTHZ_TESTFILE_MAX_ERRORS    100   /* file errors kept per run */
#define AUTHZ_TESTFILE_MAP_SIZE      (256u * 1024u * 1024u) /* LMDB map per test store */

typedef enum {
    AUTHZ_TESTFILE_CHECK,
    AUTHZ_TESTFILE_LIST_OBJECTS,
    AUTHZ_TESTFILE_LIST_USERS,
    AUTHZ_TESTFILE_KINDS
} authz_testfile_kind_t;

typedef enum {
    AUTHZ_TESTFILE_STORED,        /* tuples written to the store */
    AUTHZ_TESTFILE_CONTEXTUAL,    /* tuples sent as contextual tuples */
    AUTHZ_TESTFILE_PASSES
} authz_testfile_pass_t;

typedef struct {
    bool verbose;                 /* one line per test on stderr */
    bool contextual;              /* conformance files: the contextual pass */
    const char *only;             /* run only the test of this name (NULL: all) */
} authz_testfile_opts_t;

typedef struct authz_testfile_t authz_testfile_t;

/*  A runner with opts (copied; NULL = defaults: quiet, no contextual pass).
    Counts and failures add up over authz_testfile_run() calls. Returns 0,
    BUS_ENOMEM. */
int authz_testfile_new (authz_testfile_t **out, const authz_testfile_opts_t *opts)
    __attribute__((warn_unused_result));

/*  Free; accepts NULL, nulls the caller's pointer. */
void authz_testfile_destroy (authz_testfile_t **self_p);

/*  Read a test file: JSON when path ends in ".json", YAML otherwise (at
    most AUTHZ_TESTFILE_MAX_FILE bytes). Returns 0 and *out (new reference),
    or BUS_EIO / BUS_EINVAL / BUS_ETOOBIG / BUS_EDEPTH / BUS_ENOMEM with a
    message in err that starts with the path. */
int authz_testfile_load (json_t **out, const char *path, char *err, size_t err_len)
    __attribute__((warn_unused_result));

/*  Run a parsed test file (borrowed); relative file references resolve
    against dir (NULL = "."). Returns 0 when the file ran, whatever its
    assertions gave; BUS_EINVAL when it is not a valid test file (nothing
    is counted; see authz_testfile_errors), BUS_ENOMEM. */
int authz_testfile_run (authz_testfile_t *self, json_t *file, const char *dir)
    __attribute__((warn_unused_result));

/*  Assertions passed / failed so far for one pass and kind. */
int authz_testfile_passed (const authz_testfile_t *self, authz_testfile_pass_t pass,
                           authz_testfile_kind_t kind);
int authz_testfile_failed (const authz_testfile_t *self, authz_testfile_pass_t pass,
                           authz_testfile_kind_t kind);

/*  Totals over every pass and kind. */
int authz_testfile_total_passed (const authz_testfile_t *self);
int authz_testfile_total_failed (const authz_testfile_t *self);

/*  Failed assertions so far (borrowed; the first AUTHZ_TESTFILE_MAX_FAILURES):
    [{test, stage? (conformance, 0-based), pass ("stored"|"contextual"),
    kind ("check"|"list_objects"|"list_users"), request {object?, type?,
    relation, user? | filter?, context?}, expected, got}]. expected and got
    are a boolean, an array, or a string "error N: message". */
json_t *authz_testfile_failures (const authz_testfile_t *self);

/*  Why the last run returned BUS_EINVAL (borrowed): [{path, message}],
    path a JSON pointer into the file ("" for the top) or a file name. */
json_t *authz_testfile_errors (const authz_testfile_t *self);

/*  Counts and failures as a new JSON object: {check {passed, failed},
    list_objects {...}, list_users {...}, contextual {check {...}, ...},
    passed, failed, failures [...]}. */
json_t *authz_testfile_summary (const authz_testfile_t *self);

/*  "check", "list_objects", "list_users"; "stored", "contextual". */
const char *authz_testfile_kind_name (authz_testfile_kind_t kind);
const char *authz_testfile_pass_name (authz_testfile_pass_t pass);

#endif
