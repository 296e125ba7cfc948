/*  test_authz_budget.c — what one request may spend (authz_budget_t):
    CEL cost summed over every condition of a request (one Check's
    contextual tuples, every check of a BatchCheck), tuples read, the
    resolution depth; the answer past a limit is 2002 whatever was found
    meanwhile; and the CEL side of it (authz_cel_run's allowance, the
    regular expressions' cost, the request context looked up beside the
    tuple's).
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
#include "bus_error.h"
#include "../support/test_authz.h"

/*  doc#viewer through folders whose parent tuples carry an expensive
    condition (the xs.all(x, xs.all(y, x+y<n))); owner grants
    too, after the costly branch; a regex condition with its pattern from
    the context; a plain chain of folders for depth and tuple counts. */
static const char *s_model_dsl =
    "model\n"
    "  schema 1.1\n"
    "type user\n"
    "type folder\n"
    "  relations\n"
    "    define viewer: [user] or viewer from parent\n"
    "    define parent: [folder]\n"
    "type doc\n"
    "  relations\n"
    "    define parent: [folder with heavy, folder]\n"
    "    define owner: [user]\n"
    "    define viewer: viewer from parent or owner\n"
    "    define matcher: [user with pattern]\n"
    "condition heavy(xs: list<int>, n: int) {\n"
    "  xs.all(x, xs.all(y, x + y < n))\n"
    "}\n"
    "condition pattern(s: string, p: string) {\n"
    "  s.matches(p)\n"
    "}\n";

typedef struct {
    test_authz_t *az;
    authz_store_t *store;
    const authz_model_t *model;
    char names [100][16];
    authz_tuple_t ctx [100];
} s_fix_t;

static int
s_setup (void **state)
{
    s_fix_t *f = calloc (1, sizeof *f);
    assert_int_equal (test_authz_new (&f->az, "authz-budget", s_model_dsl), 0);
    f->store = f->az->store;
    f->model = f->az->model;
    *state = f;
    return 0;
}

static int
s_teardown (void **state)
{
    s_fix_t *f = *state;
    test_authz_destroy (&f->az);
    free (f);
    return 0;
}

/*  The request context {"xs": [0..len-1], "n": n}. */
static json_t *
s_heavy_context (int len, int n)
{
    json_t *xs = json_array ();
    for (int i = 0; i < len; i++)
        json_array_append_new (xs, json_integer (i));
    return json_pack ("{s:o, s:i}", "xs", xs, "n", n);
}

/*  count contextual tuples doc:1#parent@folder:i with condition heavy. */
static authz_extra_t
s_heavy_extra (s_fix_t *f, int count, json_t *context, authz_budget_t *budget)
{
    for (int i = 0; i < count; i++) {
        snprintf (f->names [i], sizeof f->names [i], "folder:%d", i);
        f->ctx [i] = (authz_tuple_t) { "doc:1", "parent", f->names [i], "heavy", NULL, NULL };
    }
    return (authz_extra_t) { f->ctx, (size_t) count, context, budget };
}

/*  Check: 1, 0 or the error code; err's code must agree. */
static int
s_check (s_fix_t *f, const char *o, const char *r, const char *u, const authz_extra_t *x)
{
    bool allowed = false;
    authz_error_t err = { 0 };
    int rc = authz_check (f->store, f->model, o, r, u, x, &allowed, &err);
    if (rc)
        assert_int_equal (err.code, -rc);
    return rc? rc: allowed;
}

/*  The case: one Check, 100 contextual tuples each evaluating an
    expression of ~700,000 units. The budget stops it (2002) having spent
    no more than its limit; with small lists the same request fits and
    every condition was evaluated (the cost and the tuples say so). */
static void
test_cost_summed_over_tuples (void **state)
{
    s_fix_t *f = *state;
    json_t *big = s_heavy_context (300, 1000000);
    authz_budget_t b = { 0 };
    authz_extra_t x = s_heavy_extra (f, 100, big, &b);
    assert_int_equal (s_check (f, "doc:1", "viewer", "user:anne", &x), -2002);
    assert_true (b.over);
    assert_int_equal (b.max_cost, AUTHZ_BUDGET_COST);
    assert_true (b.cost > AUTHZ_BUDGET_COST && b.cost <= AUTHZ_BUDGET_COST + 1);
    //  Each evaluation alone is within the expression's own limit
    authz_budget_t one = { 0 };
    x = s_heavy_extra (f, 1, big, &one);
    assert_int_equal (s_check (f, "doc:1", "viewer", "user:anne", &x), 0);
    assert_false (one.over);
    assert_true (one.cost > 500000);
    json_decref (big);
    json_t *small = s_heavy_context (10, 1000000);
    authz_budget_t fits = { 0 };
    x = s_heavy_extra (f, 100, small, &fits);
    assert_int_equal (s_check (f, "doc:1", "viewer", "user:anne", &x), 0);
    assert_false (fits.over);
    assert_true (fits.cost > 100 * 100 && fits.cost < AUTHZ_BUDGET_COST);
    assert_true (fits.tuples >= 100);
    json_decref (small);
}

/*  Past the budget the answer is 2002 even when a later branch grants:
    doc:1 viewer is "viewer from parent or owner", the parents spend the
    budget, then anne's owner tuple would say true. */
static void
test_over_is_final (void **state)
{
    s_fix_t *f = *state;
    authz_tuple_t own = { "doc:1", "owner", "user:anne", NULL, NULL, NULL };
    assert_int_equal (authz_store_write (f->store, f->model, &own, 1, NULL, 0, 0, NULL), 0);
    json_t *big = s_heavy_context (300, 1000000);
    authz_budget_t b = { .max_cost = 2000000 };
    authz_extra_t x = s_heavy_extra (f, 10, big, &b);
    assert_int_equal (s_check (f, "doc:1", "viewer", "user:anne", &x), -2002);
    //  The same with room for it: the owner tuple grants
    authz_budget_t room = { 0 };
    x = s_heavy_extra (f, 10, big, &room);
    assert_int_equal (s_check (f, "doc:1", "viewer", "user:anne", &x), 1);
    json_decref (big);
}

/*  One budget for a whole BatchCheck: checks that each fit alone fail
    together, and the batch as a whole is refused. */
static void
test_batch_shares_budget (void **state)
{
    s_fix_t *f = *state;
    json_t *checks = json_array ();
    for (int i = 0; i < 4; i++) {
        json_t *ct = json_array ();
        for (int k = 0; k < 2; k++)
            json_array_append_new (ct, json_pack ("{s:s, s:s, s:s, s:{s:s}}", "object", "doc:1",
                                                  "relation", "parent", "user",
                                                  k? "folder:b": "folder:a",
                                                  "condition", "name", "heavy"));
        char cid [8];
        snprintf (cid, sizeof cid, "c%d", i);
        json_array_append_new (checks, json_pack ("{s:{s:s, s:s, s:s}, s:o, s:o, s:s}",
                                                  "tuple_key", "object", "doc:1", "relation", "viewer",
                                                  "user", "user:bob", "contextual_tuples", ct,
                                                  "context", s_heavy_context (300, 1000000),
                                                  "correlation_id", cid));
    }
    //  One check: two evaluations, ~1.5 million units
    authz_budget_t b = { .max_cost = 4000000 };
    json_t *one = json_array ();
    json_array_append (one, json_array_get (checks, 0));
    json_t *res = NULL;
    authz_error_t err = { 0 };
    assert_int_equal (authz_batch_check (f->store, f->model, one, &b, &res, &err), 0);
    assert_true (json_is_false (json_object_get (json_object_get (res, "c0"), "allowed")));
    json_decref (res);
    json_decref (one);
    //  Four of them: the budget runs out on the third
    b = (authz_budget_t) { .max_cost = 4000000 };
    res = NULL;
    assert_int_equal (authz_batch_check (f->store, f->model, checks, &b, &res, &err), -2002);
    assert_null (res);
    assert_int_equal (err.code, 2002);
    assert_non_null (strstr (err.message, "budget"));
    json_decref (checks);
}

/*  Tuples read: a folder chain read hop by hop; with room for fewer
    reads than the walk needs, 2002. The depth limit: OpenFGA's 25 by
    default, lower when the budget says so. */
static void
test_tuples_and_depth (void **state)
{
    s_fix_t *f = *state;
    char objs [12][16];
    authz_tuple_t w [12];
    for (int i = 0; i < 11; i++) {
        snprintf (objs [i], sizeof objs [i], "folder:%d", i);
        snprintf (objs [i + 1], sizeof objs [i + 1], "folder:%d", i + 1);
        w [i] = (authz_tuple_t) { objs [i], "parent", objs [i + 1], NULL, NULL, NULL };
    }
    w [11] = (authz_tuple_t) { "folder:11", "viewer", "user:anne", NULL, NULL, NULL };
    assert_int_equal (authz_store_write (f->store, f->model, w, 12, NULL, 0, 0, NULL), 0);
    authz_budget_t b = { 0 };
    authz_extra_t x = { NULL, 0, NULL, &b };
    assert_int_equal (s_check (f, "folder:0", "viewer", "user:anne", &x), 1);
    assert_true (b.tuples >= 12);
    uint64_t needed = b.tuples;
    b = (authz_budget_t) { .max_tuples = needed - 1 };
    assert_int_equal (s_check (f, "folder:0", "viewer", "user:anne", &x), -2002);
    assert_true (b.over);
    b = (authz_budget_t) { .max_tuples = needed };
    assert_int_equal (s_check (f, "folder:0", "viewer", "user:anne", &x), 1);
    //  Depth: 11 hops of tuple-to-userset need 12 levels
    b = (authz_budget_t) { .max_depth = 11 };
    assert_int_equal (s_check (f, "folder:0", "viewer", "user:anne", &x), -2002);
    b = (authz_budget_t) { .max_depth = 12 };
    assert_int_equal (s_check (f, "folder:0", "viewer", "user:anne", &x), 1);
    //  ListObjects and ListUsers spend from the budget too
    json_t *out = NULL;
    b = (authz_budget_t) { .max_tuples = 3 };
    assert_int_equal (authz_list_objects (f->store, f->model, "folder", "viewer", "user:anne", &x,
                                          &out, NULL), -2002);
    assert_null (out);
    b = (authz_budget_t) { 0 };
    assert_int_equal (authz_list_objects (f->store, f->model, "folder", "viewer", "user:anne", &x,
                                          &out, NULL), 0);
    assert_int_equal (json_array_size (out), 12);
    json_decref (out);
    out = NULL;
    b = (authz_budget_t) { .max_tuples = 3 };
    assert_int_equal (authz_list_users (f->store, f->model, "folder:0", "viewer", "user", &x,
                                        &out, NULL), -2002);
    assert_null (out);
}

/*  authz_list_objects_each's sink: what it counts and when it stops. */
typedef struct {
    json_t *seen;               /* object -> true */
    int calls;
    int stop_at;                /* found fails with BUS_EINTR at this call (0: never) */
} s_sink_t;

static int
s_found (const char *object, void *arg)
{
    s_sink_t *k = arg;
    k->calls++;
    json_object_set_new (k->seen, object, json_true ());
    return k->calls == k->stop_at ? BUS_EINTR : 0;
}

static int s_polls;

/*  The budget's stop: true from the 20th question on. */
static bool
s_stop_soon (void *arg)
{
    return ++s_polls >= 20;
}

/*  The streamed ListObjects: every object once, without the 1,000 cap of
    authz_list_objects; a sink that fails stops the query with its code;
    the budget's stop ends it as over the budget, with few objects given. */
static void
test_list_objects_each (void **state)
{
    s_fix_t *f = *state;
    char objs [100][16];
    authz_tuple_t w [100];
    for (int b = 0; b < 15; b++) {
        for (int i = 0; i < 100; i++) {
            snprintf (objs [i], sizeof objs [i], "doc:%d", b * 100 + i);
            w [i] = (authz_tuple_t) { objs [i], "owner", "user:bob", NULL, NULL, NULL };
        }
        assert_int_equal (authz_store_write (f->store, f->model, w, 100, NULL, 0, 0, NULL), 0);
    }
    json_t *out = NULL;
    assert_int_equal (authz_list_objects (f->store, f->model, "doc", "owner", "user:bob", NULL, &out, NULL), 0);
    assert_int_equal (json_array_size (out), AUTHZ_MAX_LIST_RESULTS);
    json_decref (out);
    s_sink_t k = { json_object (), 0, 0 };
    authz_found_t sink = { s_found, &k, 0 };
    assert_int_equal (authz_list_objects_each (f->store, f->model, "doc", "owner", "user:bob", NULL, &sink,
                                               NULL), 0);
    assert_int_equal (k.calls, 1500);
    assert_int_equal (json_object_size (k.seen), 1500);
    //  through the viewer's rewrite too, the same objects
    json_object_clear (k.seen);
    k.calls = 0;
    assert_int_equal (authz_list_objects_each (f->store, f->model, "doc", "viewer", "user:bob", NULL, &sink,
                                               NULL), 0);
    assert_int_equal (k.calls, 1500);
    assert_int_equal (json_object_size (k.seen), 1500);
    //  a cap
    k.calls = 0;
    sink.max = 7;
    assert_int_equal (authz_list_objects_each (f->store, f->model, "doc", "owner", "user:bob", NULL, &sink,
                                               NULL), 0);
    assert_int_equal (k.calls, 7);
    //  the sink stops it
    k = (s_sink_t) { k.seen, 0, 10 };
    sink.max = 0;
    assert_int_equal (authz_list_objects_each (f->store, f->model, "doc", "owner", "user:bob", NULL, &sink,
                                               NULL), BUS_EINTR);
    assert_int_equal (k.calls, 10);
    //  the budget's stop (asked every 64 spends)
    k.calls = 0;
    k.stop_at = 0;
    authz_budget_t b = { .stop = s_stop_soon };
    authz_extra_t x = { NULL, 0, NULL, &b };
    authz_error_t err = { 0 };
    assert_int_equal (authz_list_objects_each (f->store, f->model, "doc", "owner", "user:bob", &x, &sink,
                                               &err), -2002);
    assert_true (b.over && b.stopped);
    assert_true (s_polls >= 20);
    assert_true (k.calls < 1500);
    assert_non_null (strstr (err.message, "request stopped"));
    json_decref (k.seen);
}

/*  A regular expression from the context: a quadratic search on a long
    subject is over the expression's own limit (2002 before it runs, not
    after seconds), a short or anchored one fits; the request's budget
    stops one that would fit the expression's own limit. */
static void
test_regex_cost (void **state)
{
    s_fix_t *f = *state;
    char *s = malloc (4097);
    memset (s, 'a', 4096);
    s [4096] = 0;
    authz_tuple_t t = { "doc:1", "matcher", "user:anne", "pattern", NULL, NULL };
    authz_budget_t b = { 0 };
    authz_extra_t x = { &t, 1, NULL, &b };
    x.context = json_pack ("{s:s, s:s}", "s", s, "p", "(a|aa)*c");
    assert_int_equal (s_check (f, "doc:1", "matcher", "user:anne", &x), -2002);
    assert_false (b.over);          /* that evaluation's limit, not the request's */
    json_decref (x.context);
    x.context = json_pack ("{s:s, s:s}", "s", s, "p", "^a+$");
    b = (authz_budget_t) { 0 };
    assert_int_equal (s_check (f, "doc:1", "matcher", "user:anne", &x), 1);
    json_decref (x.context);
    s [1000] = 0;
    x.context = json_pack ("{s:s, s:s}", "s", s, "p", "(a|aa)*c");
    b = (authz_budget_t) { 0 };
    assert_int_equal (s_check (f, "doc:1", "matcher", "user:anne", &x), 0);
    assert_true (b.cost > 500000);
    b = (authz_budget_t) { .max_cost = 100000 };
    assert_int_equal (s_check (f, "doc:1", "matcher", "user:anne", &x), -2002);
    assert_true (b.over);
    json_decref (x.context);
    //  A pattern too large to compile at all once its repetitions are
    //  expanded (as glibc expands them), each repetition within RE2's
    char big [21 * 7 + 1] = "";
    for (int i = 0; i < 21; i++)
        strcat (big, "a{1000}");
    x.context = json_pack ("{s:s, s:s}", "s", "a", "p", big);
    b = (authz_budget_t) { 0 };
    authz_error_t err = { 0 };
    bool allowed = true;
    assert_int_equal (authz_check (f->store, f->model, "doc:1", "matcher", "user:anne", &x,
                                   &allowed, &err), -2000);
    assert_non_null (strstr (err.message, "too complex"));
    json_decref (x.context);
    big [20 * 7] = 0;               /* 20,000: compiles, and is charged for it */
    x.context = json_pack ("{s:s, s:s}", "s", "a", "p", big);
    b = (authz_budget_t) { 0 };
    assert_int_equal (s_check (f, "doc:1", "matcher", "user:anne", &x), -2002);
    json_decref (x.context);
    free (s);
}

/*  authz_cel_run: the allowance (EBUDGET, with the units spent), the
    request context looked up where the tuple's lacks a parameter (the
    tuple's winning), and the context's conversion charged. */
static void
test_cel_run (void **state)
{
    json_t *params = json_pack ("{s:{s:s}, s:{s:s}}", "a", "type_name", "TYPE_NAME_INT",
                                "b", "type_name", "TYPE_NAME_INT");
    authz_cel_t *cel = NULL;
    char err [200];
    assert_int_equal (authz_cel_compile (&cel, "a < b", params, err, sizeof err), 0);
    json_t *tuple = json_pack ("{s:i}", "a", 1), *request = json_pack ("{s:i, s:i}", "a", 5, "b", 3);
    authz_cel_run_t run = { .context = tuple, .fallback = request };
    assert_int_equal (authz_cel_run (cel, &run, NULL, err, sizeof err), 1);
    assert_true (run.spent >= 2);
    run = (authz_cel_run_t) { .context = NULL, .fallback = request };
    assert_int_equal (authz_cel_run (cel, &run, NULL, err, sizeof err), 0);
    run = (authz_cel_run_t) { .context = tuple, .fallback = NULL };
    assert_int_equal (authz_cel_run (cel, &run, NULL, err, sizeof err), AUTHZ_CEL_EMISSING);
    authz_cel_destroy (&cel);
    json_decref (tuple);
    json_decref (request);
    json_decref (params);
    params = json_pack ("{s:{s:s, s:[{s:s}]}}", "xs", "type_name", "TYPE_NAME_LIST",
                        "generic_types", "type_name", "TYPE_NAME_INT");
    assert_int_equal (authz_cel_compile (&cel, "xs.all(x, xs.all(y, x >= 0))", params, err, sizeof err), 0);
    json_t *ctx = s_heavy_context (100, 0);
    run = (authz_cel_run_t) { .context = ctx };
    assert_int_equal (authz_cel_run (cel, &run, NULL, err, sizeof err), 1);
    uint64_t full = run.spent;
    assert_true (full > 100 * 100);
    run = (authz_cel_run_t) { .context = ctx, .allowance = full - 1 };
    assert_int_equal (authz_cel_run (cel, &run, NULL, err, sizeof err), AUTHZ_CEL_EBUDGET);
    assert_true (run.spent >= full - 1 && run.spent <= full);
    run = (authz_cel_run_t) { .context = ctx, .allowance = full };
    assert_int_equal (authz_cel_run (cel, &run, NULL, err, sizeof err), 1);
    //  The same allowance as the expression's own limit is that limit
    run = (authz_cel_run_t) { .context = ctx, .allowance = AUTHZ_CEL_MAX_COST };
    assert_int_equal (authz_cel_run (cel, &run, NULL, err, sizeof err), 1);
    json_decref (ctx);
    authz_cel_destroy (&cel);
    json_decref (params);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test_setup_teardown (test_cost_summed_over_tuples, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_over_is_final, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_batch_shares_budget, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_tuples_and_depth, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_list_objects_each, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_regex_cost, s_setup, s_teardown),
        cmocka_unit_test (test_cel_run),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
