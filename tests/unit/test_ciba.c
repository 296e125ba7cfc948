/*  test_ciba.c — the ciba-broker's store, in process (the daemon on a
    thread of its own, over the bus with CURVE):

    - changes run on the writer and are grouped: 64 ciba.authorize in
      flight are all answered, with groups of several writes (one fsync
      each) counted in stats;
    - a store written before ciba.list's indexes existed is indexed at
      start: its approvals are found by run, approver and state;
    - ciba.list answers from the indexes exactly what matches, oldest
      first, and an approver's index follows a state change;
    - which approval an auth_req_id belongs to, the deadlines and the
      ended approvals are rebuilt from the approvals at start (no commit
      stores them): after a restart a level is found by its auth_req_id,
      an unknown one is not_found, and the levels, deadlines and ended
      databases of a store from before are emptied;
    - a device invite is redeemed once (ops issues, a service redeems);
    - ciba.authorize asked again with the same idempotency_key (a new
      request id) answers the first approval as it is now and asks no one
      again; other authorization_details under the key are `conflict`.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "bus_client.h"
#include "bus_error.h"
#include "bus_services.h"
#include "bus_store.h"
#include "ciba_decision.h"
#include "ciba_service.h"
#include "../support/test_service.h"

#include <sodium.h>

#define S_TIMEOUT_MS 10000
#define S_RUN "01JTESTRUN0000000000000001"

typedef struct {
    test_service_t *env;
    zcert_t *svc_cert, *ops_cert;
    bus_client_t *svc, *ops;
} s_ctx_t;

/*  One call; the reply body (caller decrefs) or NULL. body is stolen. */
static json_t *
s_call (bus_client_t *client, const char *type, json_t *body)
{
    proto_msg_t *reply = NULL;
    json_t *out = NULL;
    if (bus_client_call (client, type, body, NULL, &reply) == 0 && reply->ok)
        out = json_incref (reply->body);
    else if (reply)
        print_message ("%s: %s\n", type, json_dumps (reply->error, 0));
    proto_msg_destroy (&reply);
    json_decref (body);
    return out;
}

static void
s_clients (s_ctx_t *x)
{
    x->svc = bus_client_new (test_service_rpc (x->env), test_service_server_key (x->env), x->svc_cert,
                             S_TIMEOUT_MS, 0);
    x->ops = bus_client_new (test_service_rpc (x->env), test_service_server_key (x->env), x->ops_cert,
                             S_TIMEOUT_MS, 0);
    assert_non_null (x->svc);
    assert_non_null (x->ops);
}

static int
s_setup (void **state)
{
    char err [512] = "";
    s_ctx_t *x = calloc (1, sizeof *x);
    assert_non_null (x);
    assert_int_equal (sodium_init () < 0, 0);
    x->env = test_service_new ("ciba", NULL, "map_size_mb = 64\n", err, sizeof err);
    assert_non_null (x->env);
    x->svc_cert = test_service_cert (x->env, "orch", "svc:orchestrator");
    x->ops_cert = test_service_cert (x->env, "ops", "ops:test");
    assert_non_null (x->svc_cert);
    assert_non_null (x->ops_cert);
    assert_int_equal (test_service_start (x->env, &ciba_daemon, "test", 0, err, sizeof err), 0);
    s_clients (x);
    uint8_t pk [CIBA_PK_LEN], sk [CIBA_SK_LEN];
    char pk_b64 [CIBA_PK_B64_LEN + 1];
    crypto_sign_keypair (pk, sk);
    ciba_pk_b64 (pk_b64, pk);
    for (int i = 0; i < 2; i++) {
        json_t *r = s_call (x->ops, "ciba.device.enroll", json_pack ("{s:s, s:s}", "approver",
                                                                      i ? "user:bob" : "user:alice",
                                                                      "public_key", pk_b64));
        assert_non_null (r);
        json_decref (r);
    }
    *state = x;
    return 0;
}

static int
s_teardown (void **state)
{
    s_ctx_t *x = *state;
    bus_client_destroy (&x->svc);
    bus_client_destroy (&x->ops);
    test_service_destroy (&x->env);
    zcert_destroy (&x->svc_cert);
    zcert_destroy (&x->ops_cert);
    free (x);
    return 0;
}

static json_t *
s_authorize (s_ctx_t *x, const char *approver, const char *run)
{
    return s_call (x->svc, "ciba.authorize", json_pack ("{s:[{s:s}], s:s, s:s}", "chain", "approver", approver,
                                                        "binding_message", "Approve PO-7", "run", run));
}

/*  The approval ids ciba.list answers to query (stolen), as one string
    "id,id,...". Caller frees. */
static char *
s_list (s_ctx_t *x, json_t *query)
{
    json_t *r = s_call (x->svc, "ciba.list", query);
    assert_non_null (r);
    char *out = calloc (1, 4096);
    size_t i;
    json_t *a;
    json_array_foreach (json_object_get (r, "approvals"), i, a) {
        if (i)
            strcat (out, ",");
        strcat (out, json_string_value (json_object_get (a, "approval_id")));
    }
    json_decref (r);
    return out;
}

/*  64 authorizes in flight: all answered ok, and the writer grouped them
    (write_groups counts groups of more than one write). */
static void
test_changes_grouped (void **state)
{
    s_ctx_t *x = *state;
    int64_t groups0 = test_service_counter (x->svc, "write_groups");
    json_t *body = json_pack ("{s:[{s:s}], s:s}", "chain", "approver", "user:alice", "binding_message", "many");
    for (int i = 0; i < 64; i++)
        assert_int_equal (bus_client_send (x->svc, "ciba.authorize", body, NULL, NULL), 0);
    json_decref (body);
    for (int i = 0; i < 64; i++) {
        proto_msg_t *reply = NULL;
        assert_int_equal (bus_client_recv (x->svc, S_TIMEOUT_MS, &reply), 0);
        assert_true (reply->ok);
        assert_non_null (json_object_get (reply->body, "approval_id"));
        proto_msg_destroy (&reply);
    }
    int64_t groups = test_service_counter (x->svc, "write_groups");
    print_message ("write groups of several writes: %lld\n", (long long) (groups - groups0));
    assert_true (groups > groups0);
}

/*  ciba.list from the indexes: by run, by approver and state, following
    a cancel. */
static void
test_list_indexed (void **state)
{
    s_ctx_t *x = *state;
    json_t *a = s_authorize (x, "user:alice", "01JTESTRUN0000000000000002");
    json_t *b = s_authorize (x, "user:bob", "01JTESTRUN0000000000000002");
    assert_non_null (a);
    assert_non_null (b);
    const char *ida = json_string_value (json_object_get (a, "approval_id"));
    const char *idb = json_string_value (json_object_get (b, "approval_id"));
    char want [64];
    snprintf (want, sizeof want, "%s,%s", ida, idb);
    char *got = s_list (x, json_pack ("{s:s}", "run", "01JTESTRUN0000000000000002"));
    assert_string_equal (got, want);
    free (got);
    got = s_list (x, json_pack ("{s:s, s:s, s:s}", "run", "01JTESTRUN0000000000000002", "approver", "user:bob",
                                "state", "pending"));
    assert_string_equal (got, idb);
    free (got);
    json_t *r = s_call (x->svc, "ciba.cancel", json_pack ("{s:s}", "approval_id", idb));
    assert_non_null (r);
    json_decref (r);
    got = s_list (x, json_pack ("{s:s, s:s}", "approver", "user:bob", "state", "cancelled"));
    assert_string_equal (got, idb);
    free (got);
    got = s_list (x, json_pack ("{s:s, s:s}", "approver", "user:bob", "state", "pending"));
    assert_null (strstr (got, idb));
    free (got);
    json_decref (a);
    json_decref (b);
}

/*  Scan callback: every key, into a JSON array. */
static int
s_keys (const void *k, size_t kl, const void *v, size_t vl, void *arg)
{
    json_array_append_new (arg, json_stringn (k, kl));
    return 0;
}

/*  ciba.list's indexes live in memory, built from the approvals at
    start: a store whose index database holds list keys (a broker from
    before wrote them; one here names an approval that does not exist)
    has them dropped at start, a requester's idempotency key ("k") kept,
    and its approvals are found by run, approver and state. */
static void
test_old_store_indexed (void **state)
{
    s_ctx_t *x = *state;
    char err [512] = "";
    json_t *a = s_authorize (x, "user:alice", S_RUN);
    assert_non_null (a);
    char id [PROTO_ID_LEN + 1];
    snprintf (id, sizeof id, "%s", json_string_value (json_object_get (a, "approval_id")));
    json_decref (a);
    bus_client_destroy (&x->svc);
    bus_client_destroy (&x->ops);
    assert_int_equal (test_service_stop (x->env), 0);

    char *dir = bus_config_data_dir (test_service_config (x->env), bus_service_name ("ciba"));
    assert_non_null (dir);
    static const char *const dbs [] = { "approvals", "levels", "deadlines", "devices", "index", "ended", "asked",
                                        NULL };
    bus_store_t *store = NULL;
    assert_int_equal (bus_store_open (&store, dir, 64 << 20, dbs), 0);
    free (dir);
    int db = bus_store_db (store, "index");
    bus_txn_t *txn = bus_txn_begin (store, true);
    json_t *keys = json_array ();
    assert_int_equal (bus_txn_scan (txn, db, NULL, 0, NULL, 0, s_keys, keys), 0);
    assert_int_equal (json_array_size (keys), 0);       /* no list key was stored */
    json_decref (keys);
    static const char stale [] = "r\n" S_RUN "\n01JZZZZZZZZZZZZZZZZZZZZZZZ", key [] = "k\nsvc:x\nkey";
    assert_int_equal (bus_txn_put (txn, db, stale, strlen (stale), "", 0), 0);
    assert_int_equal (bus_txn_put (txn, db, key, strlen (key), id, PROTO_ID_LEN), 0);
    assert_int_equal (bus_txn_commit (&txn), 0);
    bus_store_destroy (&store);

    assert_int_equal (test_service_start (x->env, &ciba_daemon, "test", 0, err, sizeof err), 0);
    s_clients (x);
    char *got = s_list (x, json_pack ("{s:s}", "run", S_RUN));
    assert_string_equal (got, id);
    free (got);
    got = s_list (x, json_pack ("{s:s, s:s, s:I}", "approver", "user:alice", "state", "pending", "limit", (json_int_t) 1000));
    assert_non_null (strstr (got, id));
    free (got);
    got = s_list (x, json_pack ("{s:s, s:I}", "state", "pending", "limit", (json_int_t) 1000));
    assert_non_null (strstr (got, id));
    free (got);

    /* what stays in the index database: the requester's key alone */
    bus_client_destroy (&x->svc);
    bus_client_destroy (&x->ops);
    assert_int_equal (test_service_stop (x->env), 0);
    dir = bus_config_data_dir (test_service_config (x->env), bus_service_name ("ciba"));
    assert_int_equal (bus_store_open (&store, dir, 64 << 20, dbs), 0);
    free (dir);
    txn = bus_txn_begin (store, false);
    keys = json_array ();
    assert_int_equal (bus_txn_scan (txn, db, NULL, 0, NULL, 0, s_keys, keys), 0);
    assert_int_equal (json_array_size (keys), 1);
    assert_string_equal (json_string_value (json_array_get (keys, 0)), key);
    json_decref (keys);
    bus_txn_abort (&txn);
    bus_store_destroy (&store);
    assert_int_equal (test_service_start (x->env, &ciba_daemon, "test", 0, err, sizeof err), 0);
    s_clients (x);
}

/*  The error code of one call (body stolen), or "" when it succeeded. */
static const char *
s_code (bus_client_t *client, const char *type, json_t *body)
{
    static char code [64];
    proto_msg_t *reply = NULL;
    *code = 0;
    if (bus_client_call (client, type, body, NULL, &reply) == 0 && !reply->ok)
        snprintf (code, sizeof code, "%s",
                  json_string_value (json_object_get (reply->error, "code")) ?: "?");
    proto_msg_destroy (&reply);
    json_decref (body);
    return code;
}

/*  The broker's store opened while it is stopped; its databases levels,
    deadlines, ended (written by brokers from before) are 1, 2, 3. */
static bus_store_t *
s_store_old (s_ctx_t *x)
{
    char *dir = bus_config_data_dir (test_service_config (x->env), bus_service_name ("ciba"));
    assert_non_null (dir);
    static const char *const dbs [] = { "approvals", "levels", "deadlines", "ended", NULL };
    bus_store_t *store = NULL;
    assert_int_equal (bus_store_open (&store, dir, 64 << 20, dbs), 0);
    free (dir);
    return store;
}

/*  auth_req_id -> approval lives in memory, rebuilt from the approvals
    at start: restarted, the broker finds a level by its auth_req_id (and
    says not_found for one it never made); a store from before, whose
    levels database holds entries, has them emptied at start. */
static void
test_owners_rebuilt (void **state)
{
    s_ctx_t *x = *state;
    char err [512] = "";
    json_t *a = s_authorize (x, "user:alice", S_RUN);
    assert_non_null (a);
    char id [PROTO_ID_LEN + 1], auth [64];
    snprintf (id, sizeof id, "%s", json_string_value (json_object_get (a, "approval_id")));
    snprintf (auth, sizeof auth, "%s",
              json_string_value (json_object_get (json_array_get (json_object_get (a, "levels"), 0), "auth_req_id")));
    json_decref (a);
    bus_client_destroy (&x->svc);
    bus_client_destroy (&x->ops);
    assert_int_equal (test_service_stop (x->env), 0);

    /* nothing of it was stored in levels, deadlines, ended; old entries
       put there go at start */
    bus_store_t *store = s_store_old (x);
    bus_txn_t *txn = bus_txn_begin (store, true);
    const void *k, *v;
    size_t kl, vl;
    for (int db = 1; db <= 3; db++) {
        assert_int_equal (bus_txn_first (txn, db, &k, &kl, &v, &vl), BUS_ENOTFOUND);
        assert_int_equal (bus_txn_put (txn, db, auth, strlen (auth), id, PROTO_ID_LEN), 0);
    }
    assert_int_equal (bus_txn_commit (&txn), 0);
    bus_store_destroy (&store);

    assert_int_equal (test_service_start (x->env, &ciba_daemon, "test", 0, err, sizeof err), 0);
    s_clients (x);
    json_t *st = s_call (x->svc, "ciba.status", json_pack ("{s:s}", "auth_req_id", auth));
    assert_non_null (st);
    assert_string_equal (json_string_value (json_object_get (st, "approval_id")), id);
    json_decref (st);
    st = s_call (x->svc, "ciba.status", json_pack ("{s:s, s:s}", "auth_req_id", auth, "approval_id", id));
    assert_non_null (st);
    json_decref (st);
    assert_string_equal (s_code (x->svc, "ciba.status", json_pack ("{s:s}", "auth_req_id",
                                                                   "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")),
                         "not_found");
    bus_client_destroy (&x->svc);
    bus_client_destroy (&x->ops);
    assert_int_equal (test_service_stop (x->env), 0);
    store = s_store_old (x);
    txn = bus_txn_begin (store, false);
    for (int db = 1; db <= 3; db++)
        assert_int_equal (bus_txn_first (txn, db, &k, &kl, &v, &vl), BUS_ENOTFOUND);
    bus_txn_abort (&txn);
    bus_store_destroy (&store);
    assert_int_equal (test_service_start (x->env, &ciba_daemon, "test", 0, err, sizeof err), 0);
    s_clients (x);
}

/*  A device invite, in process (under the sanitizers in CI): issued by
    ops only, redeemed once by a service for a fresh key, refused after,
    an unknown code not_found; the key is then carol's device. */
static void
test_device_invite (void **state)
{
    s_ctx_t *x = *state;
    assert_string_equal (s_code (x->svc, "ciba.device.invite", json_pack ("{s:s}", "user", "user:carol")),
                         "forbidden");
    json_t *inv = s_call (x->ops, "ciba.device.invite", json_pack ("{s:s, s:i}", "user", "user:carol",
                                                                    "ttl_s", 60));
    assert_non_null (inv);
    const char *code = json_string_value (json_object_get (inv, "code"));
    assert_non_null (code);
    assert_true (strlen (code) >= 22);
    uint8_t pk [CIBA_PK_LEN], sk [CIBA_SK_LEN];
    char pk_b64 [CIBA_PK_B64_LEN + 1];
    crypto_sign_keypair (pk, sk);
    ciba_pk_b64 (pk_b64, pk);
    json_t *r = s_call (x->svc, "ciba.device.redeem", json_pack ("{s:s, s:s}", "code", code, "public_key", pk_b64));
    assert_non_null (r);
    assert_string_equal (json_string_value (json_object_get (r, "user")), "user:carol");
    json_decref (r);
    assert_string_equal (s_code (x->svc, "ciba.device.redeem", json_pack ("{s:s, s:s}", "code", code,
                                                                          "public_key", pk_b64)), "conflict");
    assert_string_equal (s_code (x->svc, "ciba.device.redeem", json_pack ("{s:s, s:s}", "code", "nope",
                                                                          "public_key", pk_b64)), "not_found");
    r = s_call (x->svc, "ciba.device.list", json_pack ("{s:s}", "approver", "user:carol"));
    assert_non_null (r);
    json_t *devs = json_object_get (r, "devices");
    assert_int_equal (json_array_size (devs), 1);
    assert_string_equal (json_string_value (json_object_get (json_array_get (devs, 0), "device")), pk_b64);
    json_decref (r);
    json_decref (inv);
}

/*  The same idempotency_key: one approval, answered as it is now. */
static void
test_authorize_idempotent (void **state)
{
    s_ctx_t *x = *state;
    const char *run = "01JTESTRUN0000000000000003";
    json_t *details = json_pack ("[{s:s, s:i}]", "type", "sanctum_tool_call", "amount", 7);
    json_t *body = json_pack ("{s:[{s:s}, {s:s}], s:s, s:s, s:s, s:O}", "chain", "approver", "user:alice",
                              "approver", "user:bob", "binding_message", "Approve PO-9", "run", run,
                              "idempotency_key", "run/node/1", "authorization_details", details);
    json_t *a = s_call (x->svc, "ciba.authorize", json_deep_copy (body));
    json_t *b = s_call (x->svc, "ciba.authorize", json_deep_copy (body));
    assert_non_null (a);
    assert_non_null (b);
    const char *id = json_string_value (json_object_get (a, "approval_id"));
    assert_string_equal (json_string_value (json_object_get (b, "approval_id")), id);
    assert_string_equal (json_string_value (json_object_get (b, "state")), "pending");
    assert_string_equal (json_string_value (json_object_get (json_array_get (json_object_get (b, "levels"), 0),
                                                             "auth_req_id")),
                         json_string_value (json_object_get (json_array_get (json_object_get (a, "levels"), 0),
                                                             "auth_req_id")));
    assert_true (json_integer_value (json_object_get (b, "expires_in")) > 0);
    char *got = s_list (x, json_pack ("{s:s}", "run", run));
    assert_string_equal (got, id);
    free (got);
    /* another key: another approval */
    json_t *other = json_deep_copy (body);
    json_object_set_new (other, "idempotency_key", json_string ("run/node/2"));
    json_t *c = s_call (x->svc, "ciba.authorize", other);
    assert_non_null (c);
    assert_string_not_equal (json_string_value (json_object_get (c, "approval_id")), id);
    /* the key with other details */
    json_t *changed = json_deep_copy (body);
    json_object_set_new (changed, "authorization_details", json_pack ("[{s:s, s:i}]", "type", "sanctum_tool_call",
                                                                      "amount", 8));
    assert_string_equal (s_code (x->svc, "ciba.authorize", changed), "conflict");
    /* once it ended, the key answers its end */
    json_t *r = s_call (x->svc, "ciba.cancel", json_pack ("{s:s}", "approval_id", id));
    assert_non_null (r);
    json_decref (r);
    json_t *d = s_call (x->svc, "ciba.authorize", json_deep_copy (body));
    assert_non_null (d);
    assert_string_equal (json_string_value (json_object_get (d, "approval_id")), id);
    assert_string_equal (json_string_value (json_object_get (d, "state")), "cancelled");
    got = s_list (x, json_pack ("{s:s}", "run", run));
    char want [64];
    snprintf (want, sizeof want, "%s,%s", id, json_string_value (json_object_get (c, "approval_id")));
    assert_string_equal (got, want);
    free (got);
    json_decref (a);
    json_decref (b);
    json_decref (c);
    json_decref (d);
    json_decref (body);
    json_decref (details);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_changes_grouped),
        cmocka_unit_test (test_list_indexed),
        cmocka_unit_test (test_old_store_indexed),
        cmocka_unit_test (test_owners_rebuilt),
        cmocka_unit_test (test_device_invite),
        cmocka_unit_test (test_authorize_idempotent),
    };
    return cmocka_run_group_tests (tests, s_setup, s_teardown);
}
