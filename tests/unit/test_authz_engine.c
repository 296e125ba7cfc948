/*  test_authz_engine.c — the authz engine's own semantics: Write/Delete
    rules and error codes, Read pagination, ReadChanges continuation,
    contextual tuple limits, the depth limit, cycles, Expand, BatchCheck,
    persistence across reopen, and the tuple cache seeing every write.
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
#include "../support/test_authz.h"
#include "../support/test_service.h"

static const char *s_model_json =
    "{\"schema_version\":\"1.1\",\"type_definitions\":["
    "{\"type\":\"user\"},"
    "{\"type\":\"group\",\"relations\":{\"member\":{\"this\":{}}},"
     "\"metadata\":{\"relations\":{\"member\":{\"directly_related_user_types\":"
       "[{\"type\":\"user\"},{\"type\":\"group\",\"relation\":\"member\"}]}}}},"
    "{\"type\":\"doc\",\"relations\":{\"viewer\":{\"this\":{}},\"parent\":{\"this\":{}},"
      "\"can_read\":{\"union\":{\"child\":[{\"computedUserset\":{\"relation\":\"viewer\"}},"
        "{\"tupleToUserset\":{\"tupleset\":{\"relation\":\"parent\"},"
        "\"computedUserset\":{\"relation\":\"can_read\"}}}]}}},"
     "\"metadata\":{\"relations\":{\"viewer\":{\"directly_related_user_types\":"
       "[{\"type\":\"user\"},{\"type\":\"group\",\"relation\":\"member\"}]},"
       "\"parent\":{\"directly_related_user_types\":[{\"type\":\"doc\"}]}}}}]}";

typedef test_authz_t s_fix_t;

/*  Fresh store with the test model. */
static int
s_setup (void **state)
{
    s_fix_t *f = NULL;
    assert_int_equal (test_authz_new (&f, "authz-engine", s_model_json), 0);
    *state = f;
    return 0;
}

/*  Remove the store. */
static int
s_teardown (void **state)
{
    s_fix_t *f = *state;
    test_authz_destroy (&f);
    return 0;
}

/*  Shorthand tuple. */
static authz_tuple_t
s_t (const char *object, const char *relation, const char *user)
{
    return (authz_tuple_t) { object, relation, user, NULL, NULL, NULL };
}

/*  Check shorthand: 1, 0 or the error code. */
static int
s_check (s_fix_t *f, const char *o, const char *r, const char *u, const authz_extra_t *x)
{
    bool allowed = false;
    int rc = authz_check (f->store, f->model, o, r, u, x, &allowed, NULL);
    return rc? rc: allowed;
}

/*  Write/delete: duplicates, existing, missing, ignore flags, validation. */
static void
test_write_semantics (void **state)
{
    s_fix_t *f = *state;
    authz_error_t err = { 0 };
    authz_tuple_t w [2] = { s_t ("doc:1", "viewer", "user:anne"),
                            s_t ("doc:1", "viewer", "user:anne") };
    assert_int_equal (authz_store_write (f->store, f->model, w, 2, NULL, 0, 0, &err), -2004);
    assert_int_equal (authz_store_write (f->store, f->model, w, 1, NULL, 0, 0, &err), 0);
    assert_int_equal (authz_store_write (f->store, f->model, w, 1, NULL, 0, 0, &err), -2017);
    assert_int_equal (authz_store_write (f->store, f->model, w, 1, NULL, 0,
                                         AUTHZ_WRITE_IGNORE_DUPLICATE, &err), 0);
    authz_tuple_t d = s_t ("doc:1", "viewer", "user:bob");
    assert_int_equal (authz_store_write (f->store, f->model, NULL, 0, &d, 1, 0, &err), -2017);
    assert_int_equal (authz_store_write (f->store, f->model, NULL, 0, &d, 1,
                                         AUTHZ_DELETE_IGNORE_MISSING, &err), 0);
    //  A failed request changes nothing (transactional)
    authz_tuple_t mix [2] = { s_t ("doc:2", "viewer", "user:carl"),
                              s_t ("doc:1", "viewer", "user:anne") };
    assert_int_equal (authz_store_write (f->store, f->model, mix, 2, NULL, 0, 0, &err), -2017);
    assert_int_equal (s_check (f, "doc:2", "viewer", "user:carl", NULL), 0);
    //  Deletes apply before writes: delete + rewrite in one request is fine? No:
    //  the same key twice in one request is a duplicate
    assert_int_equal (authz_store_write (f->store, f->model, w, 1, w, 1, 0, &err), -2004);
    //  Validation against the model
    authz_tuple_t bad = s_t ("doc:1", "viewer", "doc:2");
    assert_int_equal (authz_store_write (f->store, f->model, &bad, 1, NULL, 0, 0, &err), -2000);
    assert_non_null (strstr (err.message, "not an allowed type restriction"));
    bad = s_t ("folder:1", "viewer", "user:anne");
    assert_int_equal (authz_store_write (f->store, f->model, &bad, 1, NULL, 0, 0, &err), -2000);
    bad = s_t ("doc:1", "editor", "user:anne");
    assert_int_equal (authz_store_write (f->store, f->model, &bad, 1, NULL, 0, 0, &err), -2000);
    bad = s_t ("doc:1", "viewer", "user:anne");
    bad.condition = "nope";
    assert_int_equal (authz_store_write (f->store, f->model, &bad, 1, NULL, 0, 0, &err), -2000);
    //  Limit: 100 per request
    authz_tuple_t many [101];
    char names [101][32];
    for (int i = 0; i < 101; i++) {
        snprintf (names [i], sizeof names [i], "user:u%d", i);
        many [i] = s_t ("doc:9", "viewer", names [i]);
    }
    assert_int_equal (authz_store_write (f->store, f->model, many, 101, NULL, 0, 0, &err), -2033);
    assert_int_equal (authz_store_write (f->store, f->model, many, 100, NULL, 0, 0, &err), 0);
    assert_int_equal (s_check (f, "doc:9", "viewer", "user:u99", NULL), 1);
    assert_int_equal (authz_store_write (f->store, f->model, NULL, 0, many, 1, 0, &err), 0);
    assert_int_equal (s_check (f, "doc:9", "viewer", "user:u0", NULL), 0);
}

/*  Read with filters and pagination. */
static void
test_read_pagination (void **state)
{
    s_fix_t *f = *state;
    authz_tuple_t w [25];
    char names [25][32];
    for (int i = 0; i < 25; i++) {
        snprintf (names [i], sizeof names [i], "user:u%02d", i);
        w [i] = s_t (i < 20? "doc:1": "doc:2", "viewer", names [i]);
    }
    assert_int_equal (authz_store_write (f->store, f->model, w, 25, NULL, 0, 0, NULL), 0);
    authz_tuple_t filter = s_t ("doc:1", NULL, NULL);
    char *token = NULL;
    json_t *page = NULL;
    size_t total = 0;
    int pages = 0;
    do {
        char *prev = token;
        assert_int_equal (authz_store_read (f->store, &filter, 7, prev, &page, &token, NULL), 0);
        free (prev);
        total += json_array_size (page);
        pages++;
        json_decref (page);
    } while (*token && pages < 10);
    free (token);
    assert_int_equal (total, 20);
    assert_int_equal (pages, 3);
    //  Type-only filter, user filter
    filter = s_t ("doc:", NULL, NULL);
    assert_int_equal (authz_store_read (f->store, &filter, 100, NULL, &page, &token, NULL), 0);
    assert_int_equal (json_array_size (page), 25);
    json_decref (page);
    free (token);
    filter = s_t ("doc:", "viewer", "user:u21");
    assert_int_equal (authz_store_read (f->store, &filter, 0, NULL, &page, &token, NULL), 0);
    assert_int_equal (json_array_size (page), 1);
    assert_string_equal (json_string_value (json_object_get (json_object_get (
        json_array_get (page, 0), "key"), "object")), "doc:2");
    json_decref (page);
    free (token);
    assert_int_equal (authz_store_read (f->store, &filter, 0, "zz", &page, &token, NULL), -2007);
    assert_int_equal (authz_store_read (f->store, &filter, 101, NULL, &page, &token, NULL), -2000);
}

/*  ReadChanges: order, type filter, continuation token. */
static void
test_read_changes (void **state)
{
    s_fix_t *f = *state;
    authz_tuple_t a = s_t ("doc:1", "viewer", "user:anne");
    authz_tuple_t g = s_t ("group:x", "member", "user:anne");
    assert_int_equal (authz_store_write (f->store, f->model, &a, 1, NULL, 0, 0, NULL), 0);
    assert_int_equal (authz_store_write (f->store, f->model, &g, 1, NULL, 0, 0, NULL), 0);
    assert_int_equal (authz_store_write (f->store, f->model, NULL, 0, &a, 1, 0, NULL), 0);
    json_t *changes = NULL;
    char *token = NULL;
    assert_int_equal (authz_store_read_changes (f->store, NULL, NULL, 2, NULL, &changes, &token, NULL), 0);
    assert_int_equal (json_array_size (changes), 2);
    json_decref (changes);
    char *t2 = NULL;
    assert_int_equal (authz_store_read_changes (f->store, NULL, NULL, 2, token, &changes, &t2, NULL), 0);
    assert_int_equal (json_array_size (changes), 1);
    assert_string_equal (json_string_value (json_object_get (json_array_get (changes, 0),
                                            "operation")), "TUPLE_OPERATION_DELETE");
    json_decref (changes);
    char *t3 = NULL;
    assert_int_equal (authz_store_read_changes (f->store, NULL, NULL, 2, t2, &changes, &t3, NULL), 0);
    assert_int_equal (json_array_size (changes), 0);
    assert_string_equal (t2, t3);
    json_decref (changes);
    free (token);
    free (t2);
    free (t3);
    assert_int_equal (authz_store_read_changes (f->store, "doc", NULL, 100, NULL, &changes, &token, NULL), 0);
    assert_int_equal (json_array_size (changes), 2);
    json_decref (changes);
    free (token);
    assert_int_equal (authz_store_read_changes (f->store, NULL, NULL, 1, "bad", &changes, &token, NULL), -2007);
}

/*  Contextual tuples: overlay, validation (2027), limit. */
static void
test_contextual (void **state)
{
    s_fix_t *f = *state;
    authz_tuple_t ctx [101];
    ctx [0] = s_t ("doc:1", "viewer", "user:anne");
    authz_extra_t x = { ctx, 1, NULL, NULL };
    assert_int_equal (s_check (f, "doc:1", "viewer", "user:anne", &x), 1);
    assert_int_equal (s_check (f, "doc:1", "viewer", "user:anne", NULL), 0);
    ctx [0] = s_t ("doc:1", "viewer", "doc:3");
    assert_int_equal (s_check (f, "doc:1", "viewer", "user:anne", &x), -2027);
    for (int i = 0; i < 101; i++)
        ctx [i] = s_t ("doc:1", "viewer", "user:anne");
    x.n_tuples = 101;
    assert_int_equal (s_check (f, "doc:1", "viewer", "user:anne", &x), -2000);
    x.n_tuples = 100;
    assert_int_equal (s_check (f, "doc:1", "viewer", "user:anne", &x), 1);
}

/*  Depth limit (2002) and cycles (false). */
static void
test_depth_and_cycles (void **state)
{
    s_fix_t *f = *state;
    //  A 30-document parent chain: can_read walks it through TTU hops
    char objs [31][16];
    authz_tuple_t w [31];
    for (int i = 0; i < 30; i++) {
        snprintf (objs [i], sizeof objs [i], "doc:%d", i);
        snprintf (objs [i + 1], sizeof objs [i + 1], "doc:%d", i + 1);
    }
    for (int i = 0; i < 30; i++)
        w [i] = s_t (objs [i], "parent", objs [i + 1]);
    w [30] = s_t ("doc:30", "viewer", "user:anne");
    assert_int_equal (authz_store_write (f->store, f->model, w, 31, NULL, 0, 0, NULL), 0);
    assert_int_equal (s_check (f, "doc:25", "can_read", "user:anne", NULL), 1);
    assert_int_equal (s_check (f, "doc:0", "can_read", "user:anne", NULL), -2002);
    //  Group cycle: x member of y, y member of x
    authz_tuple_t c [2] = { s_t ("group:x", "member", "group:y#member"),
                            s_t ("group:y", "member", "group:x#member") };
    assert_int_equal (authz_store_write (f->store, f->model, c, 2, NULL, 0, 0, NULL), 0);
    assert_int_equal (s_check (f, "group:x", "member", "user:bob", NULL), 0);
    assert_int_equal (s_check (f, "group:x", "member", "group:y#member", NULL), 1);
    json_t *users = NULL;
    assert_int_equal (authz_list_users (f->store, f->model, "group:x", "member", "group#member",
                                        NULL, &users, NULL), 0);
    assert_int_equal (json_array_size (users), 2);
    json_decref (users);
}

/*  Expand and BatchCheck shapes. */
static void
test_expand_batch (void **state)
{
    s_fix_t *f = *state;
    authz_tuple_t w [2] = { s_t ("doc:1", "viewer", "user:anne"),
                            s_t ("doc:1", "viewer", "group:x#member") };
    assert_int_equal (authz_store_write (f->store, f->model, w, 2, NULL, 0, 0, NULL), 0);
    json_t *tree = NULL;
    assert_int_equal (authz_expand (f->store, f->model, "doc:1", "viewer", NULL, &tree, NULL), 0);
    json_t *users = json_object_get (json_object_get (json_object_get (
        json_object_get (tree, "root"), "leaf"), "users"), "users");
    assert_int_equal (json_array_size (users), 2);
    json_decref (tree);
    assert_int_equal (authz_expand (f->store, f->model, "doc:1", "can_read", NULL, &tree, NULL), 0);
    assert_non_null (json_object_get (json_object_get (tree, "root"), "union"));
    json_decref (tree);
    json_t *checks = json_loads ("[{\"tuple_key\":{\"object\":\"doc:1\",\"relation\":\"viewer\","
                                 "\"user\":\"user:anne\"},\"correlation_id\":\"a\"},"
                                 "{\"tuple_key\":{\"object\":\"doc:1\",\"relation\":\"nope\","
                                 "\"user\":\"user:anne\"},\"correlation_id\":\"b\"}]", 0, NULL);
    json_t *res = NULL;
    assert_int_equal (authz_batch_check (f->store, f->model, checks, NULL, &res, NULL), 0);
    assert_true (json_is_true (json_object_get (json_object_get (res, "a"), "allowed")));
    assert_non_null (json_object_get (json_object_get (res, "b"), "error"));
    json_decref (res);
    json_decref (checks);
}

/*  Tuples and models survive close and reopen; model ids sort by time. */
static void
test_persistence (void **state)
{
    s_fix_t *f = *state;
    authz_tuple_t w = s_t ("doc:1", "viewer", "user:anne");
    assert_int_equal (authz_store_write (f->store, f->model, &w, 1, NULL, 0, 0, NULL), 0);
    char first [AUTHZ_MODEL_ID_LEN + 1];
    snprintf (first, sizeof first, "%s", authz_model_id (f->model));
    json_t *m = json_loads (s_model_json, 0, NULL);
    char second [AUTHZ_MODEL_ID_LEN + 1];
    assert_int_equal (authz_store_write_model (f->store, m, second, NULL), 0);
    json_decref (m);
    assert_true (strcmp (second, first) > 0);
    authz_store_destroy (&f->store);
    assert_int_equal (authz_store_open (&f->store, f->dir, 64 << 20), 0);
    assert_int_equal (authz_store_model (f->store, NULL, &f->model, NULL), 0);
    assert_string_equal (authz_model_id (f->model), second);
    const authz_model_t *old = NULL;
    assert_int_equal (authz_store_model (f->store, first, &old, NULL), 0);
    assert_int_equal (authz_store_model (f->store, "01ARZ3NDEKTSV4RRFFQ69G5FAV", &old, NULL), -2001);
    assert_int_equal (s_check (f, "doc:1", "viewer", "user:anne", NULL), 1);
    json_t *ids = authz_store_model_ids (f->store);
    assert_int_equal (json_array_size (ids), 2);
    json_decref (ids);
}

/*  ListObjects finds objects through usersets and tuple-to-userset hops
    from the user outwards, with contextual tuples; and when a relation
    reaches more relations than that walk follows, it tries every object
    of the type instead and answers the same. */
static void
test_list_objects_walk (void **state)
{
    s_fix_t *f = *state;
    authz_tuple_t w [] = {
        s_t ("group:g", "member", "user:anne"), s_t ("doc:1", "viewer", "group:g#member"),
        s_t ("doc:2", "parent", "doc:1"), s_t ("doc:3", "viewer", "user:bob"),
    };
    assert_int_equal (authz_store_write (f->store, f->model, w, 4, NULL, 0, 0, NULL), 0);
    json_t *objects = NULL;
    assert_int_equal (authz_list_objects (f->store, f->model, "doc", "can_read", "user:anne",
                                          NULL, &objects, NULL), 0);
    assert_int_equal (json_array_size (objects), 2);
    for (size_t i = 0; i < 2; i++) {
        const char *o = json_string_value (json_array_get (objects, i));
        assert_true (o && (!strcmp (o, "doc:1") || !strcmp (o, "doc:2")));
    }
    json_decref (objects);
    //  a contextual tuple puts doc:3 under doc:1 for this request only
    authz_tuple_t ctx = s_t ("doc:3", "parent", "doc:1");
    authz_extra_t extra = { .tuples = &ctx, .n_tuples = 1 };
    assert_int_equal (authz_list_objects (f->store, f->model, "doc", "can_read", "user:anne",
                                          &extra, &objects, NULL), 0);
    assert_int_equal (json_array_size (objects), 3);
    json_decref (objects);

    //  r0 = r1 or ... or r299 (five unions of 60: a union takes at most 64
    //  operands), each direct: 300 relations, past the walk
    json_t *rel = json_object (), *meta = json_object (), *child = json_array (), *part = NULL;
    char name [16];
    for (int i = 1; i < 300; i++) {
        snprintf (name, sizeof name, "r%d", i);
        json_object_set_new (rel, name, json_pack ("{s:{}}", "this"));
        json_object_set_new (meta, name, json_pack ("{s:[{s:s}]}", "directly_related_user_types",
                                                    "type", "user"));
        if (!part || json_array_size (part) == 60) {
            part = json_array ();
            json_array_append_new (child, json_pack ("{s:{s:o}}", "union", "child", part));
        }
        json_array_append_new (part, json_pack ("{s:{s:s}}", "computedUserset", "relation", name));
    }
    json_object_set_new (rel, "r0", json_pack ("{s:{s:o}}", "union", "child", child));
    json_t *m = json_pack ("{s:s, s:[{s:s}, {s:s, s:o, s:{s:o}}]}", "schema_version", "1.1",
                           "type_definitions", "type", "user", "type", "doc", "relations", rel,
                           "metadata", "relations", meta);
    char id [AUTHZ_MODEL_ID_LEN + 1];
    authz_error_t err = { 0 };
    int rc = authz_store_write_model (f->store, m, id, &err);
    if (rc)
        fprintf (stderr, "model: %s\n", err.message);
    assert_int_equal (rc, 0);
    json_decref (m);
    assert_int_equal (authz_store_model (f->store, NULL, &f->model, NULL), 0);
    authz_tuple_t wide [] = { s_t ("doc:7", "r299", "user:x"), s_t ("doc:8", "r5", "user:y") };
    assert_int_equal (authz_store_write (f->store, f->model, wide, 2, NULL, 0, 0, NULL), 0);
    assert_int_equal (authz_list_objects (f->store, f->model, "doc", "r0", "user:x",
                                          NULL, &objects, NULL), 0);
    assert_int_equal (json_array_size (objects), 1);
    assert_string_equal (json_string_value (json_array_get (objects, 0)), "doc:7");
    json_decref (objects);
}

/*  The latest model follows every model write, also once more models
    were written than the store keeps compiled, and asking for an older
    model by id does not change which is the latest. */
static void
test_latest_model (void **state)
{
    s_fix_t *f = *state;
    char first [AUTHZ_MODEL_ID_LEN + 1], id [AUTHZ_MODEL_ID_LEN + 1];
    snprintf (first, sizeof first, "%s", authz_model_id (f->model));
    json_t *m = json_loads (s_model_json, 0, NULL);
    const authz_model_t *got = NULL;
    for (int i = 0; i < AUTHZ_MAX_MODELS_CACHED + 3; i++) {
        assert_int_equal (authz_store_write_model (f->store, m, id, NULL), 0);
        assert_int_equal (authz_store_model (f->store, NULL, &got, NULL), 0);
        assert_string_equal (authz_model_id (got), id);
        assert_int_equal (authz_store_model (f->store, first, &got, NULL), 0);
        assert_string_equal (authz_model_id (got), first);
        assert_int_equal (authz_store_model (f->store, "", &got, NULL), 0);
        assert_string_equal (authz_model_id (got), id);
    }
    json_decref (m);
    f->model = got;
}

/*  The tuple cache (sets cached per LMDB snapshot) never serves a set
    from before a write: every check after a write or delete sees it, on
    direct tuples, usersets and tuple-to-userset hops, including a set
    that was cached empty. */
static void
test_cache_sees_writes (void **state)
{
    s_fix_t *f = *state;
    authz_tuple_t a = s_t ("doc:1", "viewer", "user:anne");
    authz_tuple_t g = s_t ("group:x", "member", "user:bob");
    authz_tuple_t gv = s_t ("doc:2", "viewer", "group:x#member");
    authz_tuple_t p = s_t ("doc:3", "parent", "doc:1");
    for (int round = 0; round < 3; round++) {
        //  Empty sets, asked twice (the second from the cache)
        for (int i = 0; i < 2; i++) {
            assert_int_equal (s_check (f, "doc:1", "viewer", "user:anne", NULL), 0);
            assert_int_equal (s_check (f, "doc:2", "viewer", "user:bob", NULL), 0);
            assert_int_equal (s_check (f, "doc:3", "can_read", "user:anne", NULL), 0);
        }
        assert_int_equal (authz_store_write (f->store, f->model, &a, 1, NULL, 0, 0, NULL), 0);
        assert_int_equal (s_check (f, "doc:1", "viewer", "user:anne", NULL), 1);
        assert_int_equal (s_check (f, "doc:3", "can_read", "user:anne", NULL), 0);
        assert_int_equal (authz_store_write (f->store, f->model, &p, 1, NULL, 0, 0, NULL), 0);
        assert_int_equal (s_check (f, "doc:3", "can_read", "user:anne", NULL), 1);
        assert_int_equal (authz_store_write (f->store, f->model, &gv, 1, NULL, 0, 0, NULL), 0);
        assert_int_equal (s_check (f, "doc:2", "viewer", "user:bob", NULL), 0);
        assert_int_equal (authz_store_write (f->store, f->model, &g, 1, NULL, 0, 0, NULL), 0);
        for (int i = 0; i < 2; i++) {
            assert_int_equal (s_check (f, "doc:2", "viewer", "user:bob", NULL), 1);
            assert_int_equal (s_check (f, "doc:1", "viewer", "user:anne", NULL), 1);
        }
        //  Deletes, each seen at once
        assert_int_equal (authz_store_write (f->store, f->model, NULL, 0, &g, 1, 0, NULL), 0);
        assert_int_equal (s_check (f, "doc:2", "viewer", "user:bob", NULL), 0);
        assert_int_equal (authz_store_write (f->store, f->model, NULL, 0, &p, 1, 0, NULL), 0);
        assert_int_equal (s_check (f, "doc:3", "can_read", "user:anne", NULL), 0);
        assert_int_equal (authz_store_write (f->store, f->model, NULL, 0, &a, 1, 0, NULL), 0);
        assert_int_equal (s_check (f, "doc:1", "viewer", "user:anne", NULL), 0);
        assert_int_equal (authz_store_write (f->store, f->model, NULL, 0, &gv, 1, 0, NULL), 0);
    }
    //  A set larger than the cache's limit is read from LMDB every time
    authz_tuple_t many [AUTHZ_TUPLE_CACHE_SET + 2];
    char names [AUTHZ_TUPLE_CACHE_SET + 2][32];
    for (int i = 0; i < AUTHZ_TUPLE_CACHE_SET + 2; i++) {
        snprintf (names [i], sizeof names [i], "user:m%d", i);
        many [i] = s_t ("doc:9", "viewer", names [i]);
    }
    size_t last = AUTHZ_TUPLE_CACHE_SET + 1;
    assert_int_equal (authz_store_write (f->store, f->model, many, last, NULL, 0, 0, NULL), 0);
    assert_int_equal (s_check (f, "doc:9", "viewer", names [last], NULL), 0);
    assert_int_equal (s_check (f, "doc:9", "viewer", names [0], NULL), 1);
    assert_int_equal (authz_store_write (f->store, f->model, &many [last], 1, NULL, 0, 0, NULL), 0);
    assert_int_equal (s_check (f, "doc:9", "viewer", names [last], NULL), 1);
    assert_int_equal (authz_store_write (f->store, f->model, NULL, 0, many, 1, 0, NULL), 0);
    assert_int_equal (s_check (f, "doc:9", "viewer", names [0], NULL), 0);
}

/*  Scan callback: count tuples. */
static int
s_count (const authz_tuple_t *t, void *arg)
{
    (*(int *) arg)++;
    return 0;
}

/*  Tuples of object#relation seen by txn. */
static int
s_scan_count (s_fix_t *f, bus_txn_t *txn, const char *object, const char *relation)
{
    int n = 0;
    assert_int_equal (authz_store_scan_users (f->store, txn, object, relation, s_count, &n), 0);
    return n;
}

/*  Reads keep their snapshot while the cache moves on: a read open across
    a write still sees (and is served) the state it began with, a nested
    read begun after the write sees the write; the kept read transaction
    is reused after both end. */
static void
test_cache_snapshots (void **state)
{
    s_fix_t *f = *state;
    authz_tuple_t a = s_t ("doc:1", "viewer", "user:anne");
    bus_txn_t *old = authz_store_read_begin (f->store);
    assert_non_null (old);
    assert_int_equal (s_scan_count (f, old, "doc:1", "viewer"), 0);
    assert_int_equal (authz_store_write (f->store, f->model, &a, 1, NULL, 0, 0, NULL), 0);
    assert_int_equal (s_scan_count (f, old, "doc:1", "viewer"), 0);
    bus_txn_t *fresh = authz_store_read_begin (f->store);
    assert_non_null (fresh);
    assert_ptr_not_equal (fresh, old);
    assert_true (bus_txn_snapshot (fresh) > bus_txn_snapshot (old));
    for (int i = 0; i < 2; i++) {
        assert_int_equal (s_scan_count (f, fresh, "doc:1", "viewer"), 1);
        assert_int_equal (s_scan_count (f, old, "doc:1", "viewer"), 0);
    }
    authz_store_read_end (f->store, &fresh);
    assert_null (fresh);
    authz_store_read_end (f->store, &old);
    assert_null (old);
    assert_int_equal (s_check (f, "doc:1", "viewer", "user:anne", NULL), 1);
    //  The kept transaction is renewed on the latest state
    bus_txn_t *again = authz_store_read_begin (f->store);
    assert_int_equal (s_scan_count (f, again, "doc:1", "viewer"), 1);
    authz_store_read_end (f->store, &again);
    authz_store_read_end (f->store, &again);         /* NULL is fine */
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test_setup_teardown (test_write_semantics, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_read_pagination, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_read_changes, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_contextual, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_depth_and_cycles, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_expand_batch, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_list_objects_walk, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_latest_model, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_persistence, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_cache_sees_writes, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_cache_snapshots, s_setup, s_teardown),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
