/*  test_authz_edges.c — paths of the engine that were right but that no
    test reached (issue 16, "Tests that a bug would slip past"):

    - exclusion and intersection when an operand errors (a condition
      lacking its parameter) or ends in a cycle: an error must never be
      read as "not blocked" (fail-open) nor as "granted";
    - on_duplicate "ignore" covers only an identical tuple: the same key
      with another condition context, another condition, or none, is
      still 2017;
    - the policy's max_levels bounds the approver walk, and a cycle in
      the manager hierarchy ends it.
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
#include "../../services/authz/authz_policy.h"
#include "../support/test_authz.h"

/*  The repository root: $SANCTUM_ROOT, else the current directory (make
    runs the tests from the root). */
static const char *
s_root (void)
{
    const char *root = getenv ("SANCTUM_ROOT");
    return root && *root? root: ".";
}

/*  A path under the repository root, in buf. */
static const char *
s_path (char *buf, size_t len, const char *rel)
{
    snprintf (buf, len, "%s/%s", s_root (), rel);
    return buf;
}

/*  The model: viewer is allowed but not blocked, blocked carries
    a condition (or a group); both is the intersection. */
static const char *s_model_dsl =
    "model\n"
    "  schema 1.1\n"
    "type user\n"
    "type group\n"
    "  relations\n"
    "    define member: [user, group#member]\n"
    "type doc\n"
    "  relations\n"
    "    define allowed: [user]\n"
    "    define blocked: [user with over, group#member]\n"
    "    define viewer: allowed but not blocked\n"
    "    define both: blocked and allowed\n"
    "    define tagged: [user with over, user with under]\n"
    "    define plain: [user, user with over]\n"
    "condition over(x: int) {\n"
    "  x > 1\n"
    "}\n"
    "condition under(x: int) {\n"
    "  x < 1\n"
    "}\n";

typedef test_authz_t s_fix_t;

/*  A fresh store with the DSL model text. */
static s_fix_t *
s_fix_new (const char *dsl)
{
    s_fix_t *f = NULL;
    assert_int_equal (test_authz_new (&f, "authz-edges", dsl), 0);
    return f;
}

static int
s_setup (void **state)
{
    *state = s_fix_new (s_model_dsl);
    return 0;
}

static int
s_teardown (void **state)
{
    s_fix_t *f = *state;
    test_authz_destroy (&f);
    return 0;
}

/*  Tuple shorthand, with an optional condition and its context. */
static authz_tuple_t
s_t (const char *object, const char *relation, const char *user, const char *cond, json_t *ctx)
{
    return (authz_tuple_t) { object, relation, user, cond, ctx, NULL };
}

/*  Write one tuple with flags: 0 or the error. */
static int
s_write (s_fix_t *f, authz_tuple_t t, int flags)
{
    return authz_store_write (f->store, f->model, &t, 1, NULL, 0, flags, NULL);
}

/*  Check with an optional request context: 1, 0 or the error code. */
static int
s_check (s_fix_t *f, const char *o, const char *r, const char *u, json_t *context)
{
    bool allowed = true;
    authz_extra_t x = { NULL, 0, context, NULL };
    authz_error_t err = { 0 };
    int rc = authz_check (f->store, f->model, o, r, u, &x, &allowed, &err);
    if (rc) {
        assert_int_equal (err.code, -rc);
        assert_false (allowed);
    }
    return rc? rc: allowed;
}

/*  "but not" whose subtracted side errors: 2000, not true (the issue's
    fail-open). With the parameter given, the condition decides. */
static void
test_exclusion_error (void **state)
{
    s_fix_t *f = *state;
    assert_int_equal (s_write (f, s_t ("doc:1", "allowed", "user:a", NULL, NULL), 0), 0);
    assert_int_equal (s_write (f, s_t ("doc:1", "blocked", "user:a", "over", NULL), 0), 0);
    assert_int_equal (s_check (f, "doc:1", "viewer", "user:a", NULL), -2000);
    json_t *lo = json_pack ("{s:i}", "x", 0), *hi = json_pack ("{s:i}", "x", 2);
    assert_int_equal (s_check (f, "doc:1", "viewer", "user:a", lo), 1);
    assert_int_equal (s_check (f, "doc:1", "viewer", "user:a", hi), 0);
    //  The base false decides without the subtracted side: no error
    assert_int_equal (s_check (f, "doc:1", "viewer", "user:b", NULL), 0);
    json_decref (lo);
    json_decref (hi);
}

/*  "and" with an erroring operand: 2000 when the others hold, false when
    another operand is false (false decides an intersection). */
static void
test_intersection_error (void **state)
{
    s_fix_t *f = *state;
    assert_int_equal (s_write (f, s_t ("doc:1", "allowed", "user:a", NULL, NULL), 0), 0);
    assert_int_equal (s_write (f, s_t ("doc:1", "blocked", "user:a", "over", NULL), 0), 0);
    assert_int_equal (s_write (f, s_t ("doc:1", "blocked", "user:c", "over", NULL), 0), 0);
    assert_int_equal (s_check (f, "doc:1", "both", "user:a", NULL), -2000);
    assert_int_equal (s_check (f, "doc:1", "both", "user:c", NULL), 0);
    json_t *hi = json_pack ("{s:i}", "x", 2);
    assert_int_equal (s_check (f, "doc:1", "both", "user:a", hi), 1);
    json_decref (hi);
}

/*  A cycle on the subtracted side (group:x and group:y members of each
    other) decides "not related" with the cycle remembered, as OpenFGA's
    exclusion does: the answer is false, not the base's true. In an
    intersection, a cycle is a false operand. */
static void
test_cycles (void **state)
{
    s_fix_t *f = *state;
    assert_int_equal (s_write (f, s_t ("group:x", "member", "group:y#member", NULL, NULL), 0), 0);
    assert_int_equal (s_write (f, s_t ("group:y", "member", "group:x#member", NULL, NULL), 0), 0);
    assert_int_equal (s_write (f, s_t ("doc:2", "allowed", "user:a", NULL, NULL), 0), 0);
    assert_int_equal (s_write (f, s_t ("doc:2", "blocked", "group:x#member", NULL, NULL), 0), 0);
    assert_int_equal (s_check (f, "doc:2", "viewer", "user:a", NULL), 0);
    assert_int_equal (s_check (f, "doc:2", "both", "user:a", NULL), 0);
    //  Without the cycle, the same shapes: not blocked, so viewer; both
    //  needs blocked
    assert_int_equal (s_write (f, s_t ("doc:3", "allowed", "user:a", NULL, NULL), 0), 0);
    assert_int_equal (s_write (f, s_t ("doc:3", "blocked", "group:z#member", NULL, NULL), 0), 0);
    assert_int_equal (s_check (f, "doc:3", "viewer", "user:a", NULL), 1);
    assert_int_equal (s_check (f, "doc:3", "both", "user:a", NULL), 0);
    assert_int_equal (s_write (f, s_t ("group:z", "member", "user:a", NULL, NULL), 0), 0);
    assert_int_equal (s_check (f, "doc:3", "viewer", "user:a", NULL), 0);
    assert_int_equal (s_check (f, "doc:3", "both", "user:a", NULL), 1);
}

/*  on_duplicate "ignore" is for a retry of the same tuple: the same key
    with another condition context, another condition, or without its
    condition, is a different tuple and 2017, and the stored one stays. */
static void
test_duplicate_ignore (void **state)
{
    s_fix_t *f = *state;
    int ignore = AUTHZ_WRITE_IGNORE_DUPLICATE;
    json_t *one = json_pack ("{s:i}", "x", 1), *same = json_pack ("{s:i}", "x", 1),
           *two = json_pack ("{s:i}", "x", 2);
    assert_int_equal (s_write (f, s_t ("doc:1", "tagged", "user:a", "over", one), 0), 0);
    assert_int_equal (s_write (f, s_t ("doc:1", "tagged", "user:a", "over", same), ignore), 0);
    assert_int_equal (s_write (f, s_t ("doc:1", "tagged", "user:a", "over", two), ignore), -2017);
    assert_int_equal (s_write (f, s_t ("doc:1", "tagged", "user:a", "over", NULL), ignore), -2017);
    assert_int_equal (s_write (f, s_t ("doc:1", "tagged", "user:a", "under", one), ignore), -2017);
    //  Without "ignore", even the identical one is 2017
    assert_int_equal (s_write (f, s_t ("doc:1", "tagged", "user:a", "over", same), 0), -2017);
    //  The stored tuple is still the first: over(1) is false
    assert_int_equal (s_check (f, "doc:1", "tagged", "user:a", NULL), 0);
    //  A tuple stored without a condition: rewritten with one is 2017,
    //  and the other way round
    assert_int_equal (s_write (f, s_t ("doc:1", "plain", "user:a", NULL, NULL), 0), 0);
    assert_int_equal (s_write (f, s_t ("doc:1", "plain", "user:a", NULL, NULL), ignore), 0);
    assert_int_equal (s_write (f, s_t ("doc:1", "plain", "user:a", "over", two), ignore), -2017);
    assert_int_equal (s_write (f, s_t ("doc:2", "plain", "user:a", "over", two), 0), 0);
    assert_int_equal (s_write (f, s_t ("doc:2", "plain", "user:a", NULL, NULL), ignore), -2017);
    assert_int_equal (s_check (f, "doc:1", "plain", "user:a", NULL), 1);
    json_decref (one);
    json_decref (same);
    json_decref (two);
}

/*  authz_store_write_counted says what a write did: tuples written and
    deleted, and those the ignore flags left (already there, already
    gone); a refused write counts nothing. */
static void
test_write_counts (void **state)
{
    s_fix_t *f = *state;
    authz_error_t err = { 0 };
    authz_write_count_t n = { 9, 9, 9, 9 };
    assert_int_equal (s_write (f, s_t ("doc:1", "plain", "user:a", NULL, NULL), 0), 0);
    authz_tuple_t two [2] = { s_t ("doc:1", "plain", "user:a", NULL, NULL),
                              s_t ("doc:1", "plain", "user:b", NULL, NULL) };
    assert_int_equal (authz_store_write_counted (f->store, f->model, two, 2, NULL, 0, AUTHZ_WRITE_IGNORE_DUPLICATE,
                                                 &n, &err), 0);
    assert_true (n.written == 1 && n.existing == 1 && n.deleted == 0 && n.missing == 0);
    authz_tuple_t gone [2] = { s_t ("doc:1", "plain", "user:b", NULL, NULL),
                               s_t ("doc:9", "plain", "user:b", NULL, NULL) };
    assert_int_equal (authz_store_write_counted (f->store, f->model, NULL, 0, gone, 2, AUTHZ_DELETE_IGNORE_MISSING,
                                                 &n, &err), 0);
    assert_true (n.written == 0 && n.existing == 0 && n.deleted == 1 && n.missing == 1);
    //  Without "ignore" the tuple already there refuses the whole write
    n = (authz_write_count_t) { 9, 9, 9, 9 };
    assert_int_equal (authz_store_write_counted (f->store, f->model, two, 2, NULL, 0, 0, &n, &err), -2017);
    assert_true (n.written == 0 && n.existing == 0 && n.deleted == 0 && n.missing == 0);
    assert_int_equal (s_check (f, "doc:1", "plain", "user:b", NULL), 0);
}

/*  Read a whole file (test data). */
static char *
s_slurp (const char *path)
{
    FILE *fp = fopen (path, "rb");
    assert_non_null (fp);
    fseek (fp, 0, SEEK_END);
    long n = ftell (fp);
    fseek (fp, 0, SEEK_SET);
    char *text = malloc ((size_t) n + 1);
    assert_int_equal (fread (text, 1, (size_t) n, fp), (size_t) n);
    text [n] = 0;
    fclose (fp);
    return text;
}

/*  The procurement example (ops/examples/procurement): its model and
    tuples, and its policy with max_levels set. */
static authz_policy_t *
s_procurement (s_fix_t **fp, int max_levels)
{
    char path [1024];
    char *dsl = s_slurp (s_path (path, sizeof path, "ops/examples/procurement/model.fga"));
    s_fix_t *f = s_fix_new (dsl);
    free (dsl);
    json_t *tuples = json_load_file (s_path (path, sizeof path, "ops/examples/procurement/tuples.json"), 0, NULL);
    assert_non_null (tuples);
    size_t i;
    json_t *t;
    json_array_foreach (tuples, i, t) {
        authz_tuple_t tuple;
        assert_int_equal (authz_tuple_from_json (&tuple, t, NULL), 0);
        assert_int_equal (s_write (f, tuple, 0), 0);
    }
    json_decref (tuples);
    json_t *policy = json_load_file (s_path (path, sizeof path, "ops/examples/procurement/policy.json"), 0, NULL);
    assert_non_null (policy);
    json_object_set_new (json_object_get (json_object_get (policy, "actions"), "po.write"),
                         "max_levels", json_integer (max_levels));
    authz_policy_t *p = NULL;
    char err [200];
    assert_int_equal (authz_policy_new (&p, policy, err, sizeof err), 0);
    json_decref (policy);
    *fp = f;
    return p;
}

/*  Decide po.write on cost_center:engineering for amount: the decision
    (caller decrefs). */
static json_t *
s_decide (s_fix_t *f, authz_policy_t *p, double amount)
{
    json_t *ctx = json_pack ("{s:f}", "amount", amount), *d = NULL;
    authz_error_t err = { 0 };
    assert_int_equal (authz_policy_decide (p, f->store, f->model, "agent:po-drafter", "po.write",
                                           "cost_center:engineering", ctx, &d, &err), 0);
    json_decref (ctx);
    return d;
}

/*  The chain's users, comma-separated, into buf. */
static const char *
s_chain (json_t *d, char *buf, size_t len)
{
    buf [0] = 0;
    size_t i;
    json_t *e;
    json_array_foreach (json_object_get (d, "chain"), i, e)
        snprintf (buf + strlen (buf), len - strlen (buf), "%s%s", i? ",": "",
                  json_string_value (json_object_get (e, "user")));
    return buf;
}

/*  max_levels: $520,000 needs victor, two levels up from erin (carol's
    limit is $50,000). One level is a deny; two are carol then victor. */
static void
test_policy_max_levels (void **state)
{
    s_fix_t *f = NULL;
    char buf [200];
    authz_policy_t *p = s_procurement (&f, 1);
    json_t *d = s_decide (f, p, 520000);
    assert_string_equal (json_string_value (json_object_get (d, "decision")), "deny");
    assert_string_equal (json_string_value (json_object_get (d, "reason")), "no approver with authority");
    json_decref (d);
    d = s_decide (f, p, 50000);         /* carol's own limit: one level is enough */
    assert_string_equal (json_string_value (json_object_get (d, "decision")), "approval_required");
    assert_string_equal (s_chain (d, buf, sizeof buf), "user:carol");
    json_decref (d);
    authz_policy_destroy (&p);
    *state = f;
    s_teardown (state);
    p = s_procurement (&f, 2);
    d = s_decide (f, p, 520000);
    assert_string_equal (json_string_value (json_object_get (d, "decision")), "approval_required");
    assert_string_equal (s_chain (d, buf, sizeof buf), "user:carol,user:victor");
    json_decref (d);
    authz_policy_destroy (&p);
    *state = f;
}

/*  A cycle in the hierarchy (carol manages victor, who manages carol)
    ends the walk at the first repeat: a deny when nobody on it covers
    the amount, each manager asked once, whatever max_levels allows. */
static void
test_policy_manager_cycle (void **state)
{
    s_fix_t *f = NULL;
    char buf [200];
    authz_policy_t *p = s_procurement (&f, AUTHZ_POLICY_MAX_LEVELS);
    assert_int_equal (s_write (f, s_t ("user:victor", "manager", "user:carol", NULL, NULL), 0), 0);
    json_t *d = s_decide (f, p, 2000000);
    assert_string_equal (json_string_value (json_object_get (d, "decision")), "deny");
    assert_string_equal (json_string_value (json_object_get (d, "reason")), "no approver with authority");
    json_decref (d);
    //  Below victor's limit the cycle is never reached
    d = s_decide (f, p, 520000);
    assert_string_equal (s_chain (d, buf, sizeof buf), "user:carol,user:victor");
    json_decref (d);
    authz_policy_destroy (&p);
    *state = f;
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test_setup_teardown (test_exclusion_error, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_intersection_error, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_cycles, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_duplicate_ignore, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_write_counts, s_setup, s_teardown),
        cmocka_unit_test_teardown (test_policy_max_levels, s_teardown),
        cmocka_unit_test_teardown (test_policy_manager_cycle, s_teardown),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
