/*  test_audit_receipt.c — run receipts built over a temporary LMDB log
    fed the events the orchestrator, the ciba-broker and the vault-broker
    publish for a synthetic run (two approval levels signed by real device
    keys over the ciba decision bytes, a lease issued, used and revoked, a
    step intent, a gap, another run interleaved), then verified as
    `sanctumctl receipt verify` does (audit_receipt_verify with the
    ciba-broker's own decision verifier). Tampering: an entry changed in
    the store, one byte of the receipt, an approval signature, a summary
    re-signed with the right key but saying something the entries do not,
    a wrong HMAC key, a foreign JWKS: each fails, naming where. Also the
    gantt, the run index, receipts due.

    --emit DIR writes receipts for the CLI and jose tests
    (tests/integration/test_receipt_cli.sh): good.jws, entry.jws (made
    after an entry was changed in the store), approval.jws (an approval
    level signed over other bytes), jwks.json, other_jwks.json, hmac.key
    (32 bytes), hmac.hex, jose.json (tests/js/verify.mjs's request).
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <sodium.h>

#include "audit_log.h"
#include "audit_receipt.h"
#include "audit_runs.h"
#include "audit_sign.h"
#include "bus_error.h"
#include "bus_store.h"
#include "ciba_decision.h"
#include "proto_canon.h"
#include "../support/test_service.h"

#define RUN   "01JDZ0000000000000000RUN01"
#define OTHER "01JDZ0000000000000000RUN02"
#define T0    1760000000000000LL

typedef struct {
    char dir [64];
    char path [128];
    bus_store_t *store;
    audit_log_t *log;
    audit_runs_t *runs;
    audit_keys_t *keys;
    uint8_t hmac_key [32];
    uint64_t seq;
    int64_t ts;
    uint8_t device_sk [2][CIBA_SK_LEN];
    char device_pk [2][CIBA_PK_B64_LEN + 1];
    json_t *checks;                     /* [{ok, what}] of the last verify */
} fixture_t;

static const char *const s_dbs [] = {
    "audit_entries", "audit_nodes", "audit_events", "audit_requests",
    "audit_runs", "audit_gaps", "audit_ended", "audit_receipts", NULL
};

static int
s_setup (void **state)
{
    fixture_t *fx = calloc (1, sizeof *fx);
    assert_non_null (fx);
    assert_int_equal (test_service_tmpdir (fx->dir, sizeof fx->dir, "test_audit_receipt"), 0);
    snprintf (fx->path, sizeof fx->path, "%s/db", fx->dir);
    assert_int_equal (bus_store_open (&fx->store, fx->path, 64 << 20, s_dbs), 0);
    assert_int_equal (audit_log_new (&fx->log, fx->store), 0);
    assert_int_equal (audit_runs_new (&fx->runs, fx->store), 0);
    uint8_t seed [32];
    randombytes_buf (seed, sizeof seed);
    randombytes_buf (fx->hmac_key, sizeof fx->hmac_key);
    assert_int_equal (audit_keys_from_seed (&fx->keys, seed, fx->hmac_key), 0);
    for (int i = 0; i < 2; i++) {
        uint8_t pk [CIBA_PK_LEN];
        crypto_sign_keypair (pk, fx->device_sk [i]);
        ciba_pk_b64 (fx->device_pk [i], pk);
    }
    fx->ts = T0;
    fx->checks = json_array ();
    *state = fx;
    return 0;
}

static int
s_teardown (void **state)
{
    fixture_t *fx = *state;
    audit_runs_destroy (&fx->runs);
    audit_log_destroy (&fx->log);
    audit_keys_destroy (&fx->keys);
    bus_store_destroy (&fx->store);
    test_service_rmtree (fx->dir);
    json_decref (fx->checks);
    free (fx);
    return 0;
}

/*  Store an event as the auditor's follower does (entry, run index, gap
    index), body stolen; its leaf index. */
static uint64_t
s_event (fixture_t *fx, const char *pub, const char *type, json_t *body)
{
    fx->ts += 1000;
    fx->seq++;
    char id [27];
    snprintf (id, sizeof id, "01JDZ00000000000000000%04llu", (unsigned long long) fx->seq);
    json_t *entry = json_pack ("{s:s, s:s, s:I, s:s, s:s, s:I, s:o}", "kind", "event", "pub", pub,
                               "seq", (json_int_t) fx->seq, "type", type, "id", id, "ts", (json_int_t) fx->ts,
                               "body", body);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal (proto_canon (entry, &text, &len, NULL, 0), 0);
    bus_txn_t *txn = bus_txn_begin (fx->store, true);
    uint64_t index = 0;
    assert_int_equal (audit_log_append_event (fx->log, txn, pub, fx->seq, text, len, &index), 0);
    const char *run = audit_runs_named (body);
    if (run)
        assert_int_equal (audit_runs_note (fx->runs, txn, run, index), 0);
    if (run && audit_runs_terminal (pub, type))
        assert_int_equal (audit_runs_mark_ended (fx->runs, txn, run, index, fx->ts + 2000000), 0);
    assert_int_equal (bus_txn_commit (&txn), 0);
    free (text);
    json_decref (entry);
    return index;
}

/*  An audit.append as the auditor stores it. */
static uint64_t
s_append (fixture_t *fx, const char *from, json_t *content)
{
    fx->ts += 1000;
    char id [27];
    snprintf (id, sizeof id, "01JDZ0000000000000APPEND%02llu", (unsigned long long) (fx->seq % 100));
    json_t *entry = json_pack ("{s:s, s:s, s:s, s:I, s:o}", "kind", "append", "from", from, "id", id,
                               "ts", (json_int_t) fx->ts, "entry", content);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal (proto_canon (entry, &text, &len, NULL, 0), 0);
    bus_txn_t *txn = bus_txn_begin (fx->store, true);
    uint64_t index = 0;
    assert_int_equal (audit_log_append_request (fx->log, txn, from, id, text, len, &index), 0);
    assert_int_equal (audit_runs_note (fx->runs, txn, audit_runs_named (content), index), 0);
    assert_int_equal (bus_txn_commit (&txn), 0);
    free (text);
    json_decref (entry);
    return index;
}

static uint64_t
s_gap (fixture_t *fx, const char *pub, uint64_t from, uint64_t to)
{
    bus_txn_t *txn = bus_txn_begin (fx->store, true);
    uint64_t index = 0;
    assert_int_equal (audit_log_append_gap (fx->log, txn, pub, from, to, fx->ts, &index), 0);
    assert_int_equal (audit_runs_note_gap (fx->runs, txn, index), 0);
    assert_int_equal (bus_txn_commit (&txn), 0);
    return index;
}

/*  A decided level of approval.completed, signed by device d (bad: over
    another binding message). */
static json_t *
s_level (fixture_t *fx, int d, const char *approver, const char *req, const char *msg, const char *sha, bool bad)
{
    char sig [CIBA_SIG_B64_LEN + 1];
    assert_int_equal (ciba_decision_sign (sig, fx->device_sk [d], req, "approve", bad ? "pay someone else" : msg,
                                          sha), 0);
    return json_pack ("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I}", "approver", approver, "auth_req_id", req,
                      "state", "approved", "device_key", fx->device_pk [d], "signature", sig,
                      "escalate_after", (json_int_t) 0, "asked_at", (json_int_t) fx->ts,
                      "decided_at", (json_int_t) fx->ts + 500);
}

/*  The synthetic run: what each publisher would have published, in
    order, with another run interleaved; bad_approval signs level 1 over
    other bytes. Returns the index of the step intent. */
static uint64_t
s_feed_run (fixture_t *fx, const char *terminal, bool bad_approval)
{
    const char *msg = "Approve PO-1042: $520,000 to Acme";
    char sha [65];
    json_t *details = json_pack ("[{s:s, s:I}]", "type", "purchase_order", "amount", (json_int_t) 520000);
    assert_int_equal (ciba_details_sha256 (sha, details), 0);
    json_decref (details);
    s_event (fx, "svc:orchestrator", "run.started",
             json_pack ("{s:s, s:s, s:s, s:s, s:s, s:I}", "run", RUN, "workflow", "procurement", "workflow_hash",
                        "sha256:1111111111111111111111111111111111111111111111111111111111111111",
                        "input_digest", "sha256:2222222222222222222222222222222222222222222222222222222222222222",
                        "principal", "ext:erp-gateway", "started_at", (json_int_t) fx->ts));
    s_event (fx, "svc:orchestrator", "run.started", json_pack ("{s:s, s:s}", "run", OTHER, "workflow", "other"));
    s_event (fx, "svc:orchestrator", "node.started",
             json_pack ("{s:s, s:s, s:s, s:i}", "run", RUN, "node", "draft", "kind", "agent", "attempt", 1));
    s_event (fx, "svc:orchestrator", "node.finished",
             json_pack ("{s:s, s:s, s:s, s:i, s:s}", "run", RUN, "node", "draft", "kind", "agent", "attempt", 1,
                        "outcome", "ok"));
    s_event (fx, "svc:orchestrator", "node.started",
             json_pack ("{s:s, s:s, s:s, s:i}", "run", RUN, "node", "write_po", "kind", "tool", "attempt", 1));
    s_event (fx, "svc:ciba-broker", "ciba.requested",
             json_pack ("{s:s, s:s, s:s, s:i, s:s, s:s, s:s, s:s}", "approval_id", "01JDZ000000000000000APPR01",
                        "auth_req_id", "reqAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "approver", "user:maria", "level", 0,
                        "run", RUN, "node", "write_po", "binding_message", msg, "authorization_details_sha256", sha));
    s_event (fx, "svc:orchestrator", "run.paused",
             json_pack ("{s:s, s:s, s:s, s:s}", "run", RUN, "node", "write_po", "reason", "approval", "approval",
                        "01JDZ000000000000000APPR01"));
    s_gap (fx, "svc:authz", 7, 9);
    json_t *levels = json_pack ("[o, o]",
                                s_level (fx, 0, "user:maria", "reqAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", msg, sha, false),
                                s_level (fx, 1, "user:victor", "reqBBBBBBBBBBBBBBBBBBBBBBBBBBBBB", msg, sha,
                                         bad_approval));
    s_event (fx, "svc:ciba-broker", "approval.completed",
             json_pack ("{s:s, s:s, s:o, s:s, s:s, s:s, s:s}", "approval_id", "01JDZ000000000000000APPR01",
                        "outcome", "approved", "levels", levels, "run", RUN, "node", "write_po",
                        "binding_message", msg, "authorization_details_sha256", sha));
    s_event (fx, "svc:orchestrator", "run.resumed", json_pack ("{s:s, s:s}", "run", RUN, "node", "write_po"));
    s_event (fx, "svc:vault-broker", "token.issued",
             json_pack ("{s:s, s:s, s:s, s:s, s:[s], s:I, s:I, s:s}", "lease_id", "lease-1", "run", RUN,
                        "node", "write_po", "connection", "sheets", "scopes", "sheets.write",
                        "issued_at", (json_int_t) (fx->ts / 1000000), "expires_at",
                        (json_int_t) (fx->ts / 1000000 + 600), "token_hmac", "hmac-sha256:abcd"));
    uint64_t intent = s_append (fx, "svc:orchestrator",
                                json_pack ("{s:s, s:s, s:s, s:i, s:s, s:s, s:s, s:s, s:s, s:s}", "kind",
                                           "step.intent", "run", RUN, "node", "write_po", "attempt", 1,
                                           "connector", "sheets.append", "connection", "sheets", "action",
                                           "purchase_order.create", "resource", "purchase_order:PO-1042",
                                           "lease", "lease-1", "args_digest", "sha256:33"));
    /* someone else's append naming the run states nothing */
    s_append (fx, "svc:authz", json_pack ("{s:s, s:s, s:s, s:i}", "kind", "step.intent", "run", RUN,
                                          "node", "forged", "attempt", 1));
    s_event (fx, "svc:vault-broker", "token.used",
             json_pack ("{s:s, s:s, s:s, s:s, s:I}", "lease_id", "lease-1", "run", RUN, "node", "write_po",
                        "connection", "sheets", "used_at", (json_int_t) (fx->ts / 1000000)));
    /* an event naming the run from a publisher that does not own the fact */
    s_event (fx, "svc:authz", "run.completed", json_pack ("{s:s}", "run", RUN));
    s_event (fx, "svc:orchestrator", "node.finished",
             json_pack ("{s:s, s:s, s:s, s:i, s:s, s:{s:s}, s:s, s:s, s:i, s:I}", "run", RUN, "node", "write_po",
                        "kind", "tool", "attempt", 1, "outcome", "ok", "decision", "result", "approval_required",
                        "approval", "01JDZ000000000000000APPR01", "lease", "lease-1", "status", 200,
                        "audit_index", (json_int_t) intent));
    s_event (fx, "svc:orchestrator", terminal, json_pack ("{s:s, s:I}", "run", RUN, "finished_at", (json_int_t) fx->ts));
    s_event (fx, "svc:vault-broker", "token.revoked",
             json_pack ("{s:s, s:s, s:s, s:s, s:I}", "lease_id", "lease-1", "run", RUN, "node", "write_po",
                        "connection", "sheets", "revoked_at", (json_int_t) (fx->ts / 1000000)));
    return intent;
}

static json_t *
s_build (fixture_t *fx)
{
    bus_txn_t *txn = bus_txn_begin (fx->store, true);
    json_t *stored = NULL;
    assert_int_equal (audit_receipt_build (fx->runs, fx->log, fx->keys, txn, RUN, fx->ts + 10, &stored), 0);
    assert_int_equal (bus_txn_commit (&txn), 0);
    return stored;
}

static void
s_record (void *arg, bool ok, const char *what)
{
    json_array_append_new (arg, json_pack ("{s:b, s:s}", "ok", ok, "what", what));
}

static int
s_verify (fixture_t *fx, const char *jws, const json_t *jwks, const uint8_t *hmac_key)
{
    json_array_clear (fx->checks);
    return audit_receipt_verify (jws, jwks, hmac_key, ciba_decision_verify, s_record, fx->checks, NULL);
}

/*  The text of the first failed check, or "". */
static const char *
s_failed (fixture_t *fx)
{
    size_t i;
    json_t *c;
    json_array_foreach (fx->checks, i, c)
        if (!json_is_true (json_object_get (c, "ok")))
            return json_string_value (json_object_get (c, "what"));
    return "";
}

static size_t
s_failures (fixture_t *fx)
{
    size_t i, n = 0;
    json_t *c;
    json_array_foreach (fx->checks, i, c)
        n += !json_is_true (json_object_get (c, "ok"));
    return n;
}

/*  The payload of a compact JWS (not verified). */
static json_t *
s_payload (const char *jws)
{
    const char *d1 = strchr (jws, '.'), *d2 = strchr (d1 + 1, '.');
    size_t n = 0;
    uint8_t *bytes = NULL;
    size_t cap = (size_t) (d2 - d1) + 4;
    bytes = malloc (cap);
    assert_int_equal (sodium_base642bin (bytes, cap, d1 + 1, (size_t) (d2 - d1 - 1), NULL, &n, NULL,
                                         sodium_base64_VARIANT_URLSAFE_NO_PADDING), 0);
    json_t *p = json_loadb ((const char *) bytes, n, 0, NULL);
    free (bytes);
    assert_non_null (p);
    return p;
}

/* --- tests --------------------------------------------------------------- */

static void
test_receipt_verifies (void **state)
{
    fixture_t *fx = *state;
    uint64_t intent = s_feed_run (fx, "run.completed", false);
    json_t *stored = s_build (fx);
    const char *jws = json_string_value (json_object_get (stored, "jws"));
    assert_non_null (jws);
    assert_string_equal (json_string_value (json_object_get (stored, "state")), "COMPLETED");
    json_t *jwks = audit_keys_jwks (fx->keys);
    assert_int_equal (s_verify (fx, jws, jwks, fx->hmac_key), 0);
    assert_string_equal (s_failed (fx), "");
    /* the JWS, the HMAC, the type, the head, 16 run entries + 1 gap, the summary, 2 approval levels */
    assert_int_equal (json_array_size (fx->checks), 3 + 1 + 17 + 1 + 2);
    json_t *p = s_payload (jws);
    assert_string_equal (json_string_value (json_object_get (p, "workflow")), "procurement");
    assert_string_equal (json_string_value (json_object_get (p, "state")), "COMPLETED");
    assert_string_equal (json_string_value (json_object_get (p, "input_digest")),
                         "sha256:2222222222222222222222222222222222222222222222222222222222222222");
    json_t *steps = json_object_get (p, "steps");
    assert_int_equal (json_array_size (steps), 2);      /* the forged step states nothing */
    json_t *wp = json_array_get (steps, 1);
    assert_string_equal (json_string_value (json_object_get (wp, "node")), "write_po");
    assert_string_equal (json_string_value (json_object_get (json_object_get (wp, "decision"), "result")),
                         "approval_required");
    assert_int_equal (json_integer_value (json_object_get (json_object_get (wp, "intent"), "index")), intent);
    json_t *a = json_array_get (json_object_get (p, "approvals"), 0);
    assert_string_equal (json_string_value (json_object_get (a, "outcome")), "approved");
    assert_int_equal (json_array_size (json_object_get (a, "levels")), 2);
    assert_string_equal (json_string_value (json_object_get (json_array_get (json_object_get (a, "levels"), 1),
                                                             "approver")), "user:victor");
    json_t *l = json_array_get (json_object_get (p, "leases"), 0);
    assert_string_equal (json_string_value (json_object_get (l, "connection")), "sheets");
    assert_non_null (json_object_get (l, "revoked_at"));
    assert_int_equal (json_array_size (json_object_get (l, "used_at")), 1);
    assert_null (json_object_get (l, "token"));
    assert_int_equal (json_array_size (json_object_get (p, "gaps")), 1);
    assert_int_equal (json_array_size (json_object_get (p, "pauses")), 1);
    assert_non_null (json_object_get (json_array_get (json_object_get (p, "pauses"), 0), "resumed_at"));
    /* the other run's entries are not in it */
    size_t i;
    json_t *e;
    json_array_foreach (json_object_get (p, "entries"), i, e)
        assert_null (strstr (json_string_value (json_object_get (e, "entry")), OTHER));
    assert_int_equal (json_array_size (json_object_get (p, "entries")), 17);
    json_decref (p);
    json_decref (jwks);
    json_decref (stored);
}

static void
test_tampered_receipt_bytes (void **state)
{
    fixture_t *fx = *state;
    s_feed_run (fx, "run.completed", false);
    json_t *stored = s_build (fx);
    json_t *jwks = audit_keys_jwks (fx->keys);
    char *jws = strdup (json_string_value (json_object_get (stored, "jws")));
    size_t at = (size_t) (strchr (jws, '.') - jws) + 100;    /* one byte of the payload */
    jws [at] = jws [at] == 'A' ? 'B' : 'A';
    assert_int_equal (s_verify (fx, jws, jwks, NULL), BUS_ECRYPTO);
    assert_non_null (strstr (s_failed (fx), "receipt signature"));
    jws [at] = json_string_value (json_object_get (stored, "jws")) [at];
    size_t last = strlen (jws) - 5;                           /* one byte of the signature */
    jws [last] = jws [last] == 'A' ? 'B' : 'A';
    assert_int_equal (s_verify (fx, jws, jwks, NULL), BUS_ECRYPTO);
    assert_non_null (strstr (s_failed (fx), "receipt signature"));
    assert_int_equal (s_failures (fx), 1);                    /* only the signature */
    /* a wrong HMAC key; another JWKS */
    uint8_t other [32];
    randombytes_buf (other, sizeof other);
    assert_int_equal (s_verify (fx, json_string_value (json_object_get (stored, "jws")), jwks, other), BUS_ECRYPTO);
    assert_non_null (strstr (s_failed (fx), "HMAC-SHA256"));
    audit_keys_t *k2 = NULL;
    uint8_t seed [32];
    randombytes_buf (seed, sizeof seed);
    assert_int_equal (audit_keys_from_seed (&k2, seed, other), 0);
    json_t *jwks2 = audit_keys_jwks (k2);
    assert_int_equal (s_verify (fx, json_string_value (json_object_get (stored, "jws")), jwks2, NULL), BUS_ECRYPTO);
    assert_non_null (strstr (s_failed (fx), "no such key in the JWKS"));
    /* not a JWS */
    assert_int_equal (s_verify (fx, "not.a-receipt", jwks, NULL), BUS_EINVAL);
    audit_keys_destroy (&k2);
    json_decref (jwks2);
    free (jws);
    json_decref (jwks);
    json_decref (stored);
}

/*  Change one stored entry behind the log's back (its leaf hash stays):
    the receipt built afterwards carries the changed bytes, which no
    longer prove into the signed head. */
static void
s_tamper_entry (fixture_t *fx, uint64_t index)
{
    bus_txn_t *txn = bus_txn_begin (fx->store, true);
    const void *val;
    size_t len;
    assert_int_equal (audit_log_entry (fx->log, txn, index, &val, &len), 0);
    char *copy = malloc (len);
    memcpy (copy, val, len);
    char *at = memmem (copy, len, "sheets.append", 13);
    assert_non_null (at);
    memcpy (at, "gmail.sendxxx", 13);
    uint8_t key [8];
    bus_u64_to_key (index, key);
    assert_int_equal (bus_txn_put (txn, bus_store_db (fx->store, "audit_entries"), key, 8, copy, len), 0);
    assert_int_equal (bus_txn_commit (&txn), 0);
    free (copy);
}

static void
test_tampered_stored_entry (void **state)
{
    fixture_t *fx = *state;
    uint64_t intent = s_feed_run (fx, "run.completed", false);
    s_tamper_entry (fx, intent);
    json_t *stored = s_build (fx);
    json_t *jwks = audit_keys_jwks (fx->keys);
    assert_int_equal (s_verify (fx, json_string_value (json_object_get (stored, "jws")), jwks, fx->hmac_key),
                      BUS_ECRYPTO);
    char want [64];
    snprintf (want, sizeof want, "entry %llu (append)", (unsigned long long) intent);
    assert_non_null (strstr (s_failed (fx), want));
    assert_int_equal (s_failures (fx), 1);
    json_decref (jwks);
    json_decref (stored);
}

static void
test_tampered_approval_signature (void **state)
{
    fixture_t *fx = *state;
    s_feed_run (fx, "run.completed", true);
    json_t *stored = s_build (fx);
    json_t *jwks = audit_keys_jwks (fx->keys);
    assert_int_equal (s_verify (fx, json_string_value (json_object_get (stored, "jws")), jwks, NULL), BUS_ECRYPTO);
    assert_non_null (strstr (s_failed (fx), "approval 01JDZ000000000000000APPR01 level 1 (user:victor"));
    assert_int_equal (s_failures (fx), 1);
    /* without the decision verifier the rest holds */
    assert_int_equal (audit_receipt_verify (json_string_value (json_object_get (stored, "jws")), jwks, NULL, NULL,
                                            NULL, NULL, NULL), 0);
    json_decref (jwks);
    json_decref (stored);
}

/*  A payload re-signed with the auditor's own key but saying what the
    entries do not (a FAILED run told COMPLETED): the summary check. */
static void
test_summary_must_match_entries (void **state)
{
    fixture_t *fx = *state;
    s_feed_run (fx, "run.failed", false);
    json_t *stored = s_build (fx);
    assert_string_equal (json_string_value (json_object_get (stored, "state")), "FAILED");
    json_t *p = s_payload (json_string_value (json_object_get (stored, "jws")));
    json_object_set_new (p, "state", json_string ("COMPLETED"));
    char *jws = NULL, tag [65];
    assert_int_equal (audit_jws_sign_tagged (fx->keys, p, &jws, tag), 0);
    json_t *jwks = audit_keys_jwks (fx->keys);
    assert_int_equal (s_verify (fx, jws, jwks, fx->hmac_key), BUS_ECRYPTO);
    assert_string_equal (s_failed (fx), "the receipt's state is what its proven entries say");
    free (jws);
    /* dropping a lease from the summary is caught the same way */
    json_object_set_new (p, "state", json_string ("FAILED"));
    json_array_clear (json_object_get (p, "leases"));
    assert_int_equal (audit_jws_sign_tagged (fx->keys, p, &jws, tag), 0);
    assert_int_equal (s_verify (fx, jws, jwks, fx->hmac_key), BUS_ECRYPTO);
    assert_string_equal (s_failed (fx), "the receipt's leases is what its proven entries say");
    free (jws);
    json_decref (p);
    json_decref (jwks);
    json_decref (stored);
}

static void
test_gantt_and_due (void **state)
{
    fixture_t *fx = *state;
    s_feed_run (fx, "run.completed", false);
    bus_txn_t *txn = bus_txn_begin (fx->store, true);
    json_t *entries = NULL, *gaps = NULL;
    uint64_t size = 0;
    assert_int_equal (audit_log_size (fx->log, txn, &size), 0);
    assert_int_equal (audit_runs_entries (fx->runs, fx->log, txn, RUN, size, &entries, &gaps), 0);
    assert_int_equal (json_array_size (entries), 16);
    assert_int_equal (json_array_size (gaps), 1);
    json_t *sum = audit_runs_summary (RUN, entries);
    assert_false (audit_runs_leases_open (sum));
    /* a lease or approval a step names, not stored yet (another
       publisher's events lag the orchestrator's): the receipt waits */
    json_t *w = json_pack ("{s:[{s:s, s:s}], s:[], s:[]}", "steps", "node", "a", "lease", "L1", "leases",
                           "approvals");
    assert_true (audit_runs_leases_open (w));
    json_array_append_new (json_object_get (w, "leases"), json_pack ("{s:s, s:i}", "lease_id", "L1", "revoked_at", 1));
    assert_false (audit_runs_leases_open (w));
    json_object_set_new (json_array_get (json_object_get (w, "steps"), 0), "approval", json_string ("A1"));
    assert_true (audit_runs_leases_open (w));
    json_array_append_new (json_object_get (w, "approvals"), json_pack ("{s:s, s:s}", "approval_id", "A1",
                                                                         "outcome", "pending"));
    assert_true (audit_runs_leases_open (w));
    json_object_set_new (json_array_get (json_object_get (w, "approvals"), 0), "outcome", json_string ("approved"));
    assert_false (audit_runs_leases_open (w));
    json_decref (w);
    json_t *g = audit_runs_gantt (sum);
    assert_int_equal (json_array_size (json_object_get (g, "steps")), 2);
    json_t *l = json_array_get (json_object_get (g, "leases"), 0);
    assert_string_equal (json_string_value (json_object_get (l, "end")), "revoked");
    json_int_t requested = json_integer_value (json_object_get (l, "requested"));
    json_int_t approved = json_integer_value (json_object_get (l, "approved"));
    json_int_t issued = json_integer_value (json_object_get (l, "issued"));
    json_int_t ended = json_integer_value (json_object_get (l, "ended"));
    assert_true (requested > 0 && requested < approved && approved < issued && issued < ended);
    assert_int_equal (json_array_size (json_object_get (l, "used")), 1);
    assert_true (json_integer_value (json_object_get (g, "t0")) <= requested);
    assert_true (json_integer_value (json_object_get (g, "t1")) >= ended);
    /* due: the run ended, its receipt due 2 s after; not before */
    char runs [4][AUDIT_RUN_MAX + 1];
    size_t n = 9;
    assert_int_equal (audit_runs_due (fx->runs, txn, fx->ts, runs, 4, &n), 0);
    assert_int_equal (n, 0);
    assert_int_equal (audit_runs_due (fx->runs, txn, fx->ts + 3000000, runs, 4, &n), 0);
    assert_int_equal (n, 1);
    assert_string_equal (runs [0], RUN);
    /* stored: no longer due, readable */
    json_t *stored = NULL;
    assert_int_equal (audit_receipt_build (fx->runs, fx->log, fx->keys, txn, RUN, fx->ts, &stored), 0);
    const char *jws = json_string_value (json_object_get (stored, "jws"));
    assert_int_equal (audit_runs_put_receipt (fx->runs, txn, RUN, jws, strlen (jws)), 0);
    assert_int_equal (audit_runs_due (fx->runs, txn, fx->ts + 3000000, runs, 4, &n), 0);
    assert_int_equal (n, 0);
    uint64_t at;
    int64_t due;
    assert_int_equal (audit_runs_ended (fx->runs, txn, RUN, &at, &due), BUS_ENOTFOUND);
    /* no entries: no receipt */
    json_t *none = NULL;
    assert_int_equal (audit_receipt_build (fx->runs, fx->log, fx->keys, txn, "01JDZ0000000000000000NONE0", fx->ts,
                                           &none), BUS_ENOTFOUND);
    bus_txn_abort (&txn);
    json_decref (stored);
    json_decref (g);
    json_decref (sum);
    json_decref (entries);
    json_decref (gaps);
}

/* --- --emit -------------------------------------------------------------- */

static int
s_write (const char *dir, const char *name, const void *data, size_t len)
{
    char path [512];
    snprintf (path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen (path, "w");
    if (!f)
        return 1;
    size_t n = fwrite (data, 1, len, f);
    return fclose (f) == 0 && n == len ? 0 : 1;
}

static int
s_emit_receipt (const char *dir, const char *name, bool bad_approval, bool bad_entry, json_t **jwks_out)
{
    fixture_t *fx = NULL;
    s_setup ((void **) &fx);
    /* the same auditor key for every file: seeded from the name-less
       constant, so the JWKS of one verifies the others */
    uint8_t seed [32], hmac [32];
    memset (seed, 7, sizeof seed);
    memset (hmac, 9, sizeof hmac);
    audit_keys_destroy (&fx->keys);
    if (audit_keys_from_seed (&fx->keys, seed, hmac))
        return 1;
    memcpy (fx->hmac_key, hmac, sizeof hmac);
    uint64_t intent = s_feed_run (fx, "run.completed", bad_approval);
    if (bad_entry)
        s_tamper_entry (fx, intent);
    json_t *stored = s_build (fx);
    const char *jws = json_string_value (json_object_get (stored, "jws"));
    int rc = s_write (dir, name, jws, strlen (jws));
    if (jwks_out) {
        *jwks_out = audit_keys_jwks (fx->keys);
        char hex [65];
        sodium_bin2hex (hex, sizeof hex, hmac, sizeof hmac);
        rc |= s_write (dir, "hmac.key", hmac, sizeof hmac);
        rc |= s_write (dir, "hmac.hex", hex, 64);
        json_t *req = json_pack ("{s:O, s:s, s:s, s:O}", "jwks", *jwks_out, "jws", jws, "hmac_key", hex, "hmac",
                                 json_object_get (stored, "hmac"));
        char *text = json_dumps (req, JSON_COMPACT);
        rc |= s_write (dir, "jose.json", text, strlen (text));
        free (text);
        json_decref (req);
    }
    json_decref (stored);
    s_teardown ((void **) &fx);
    return rc;
}

static int
s_emit (const char *dir)
{
    json_t *jwks = NULL;
    int rc = s_emit_receipt (dir, "good.jws", false, false, &jwks);
    rc |= s_emit_receipt (dir, "entry.jws", false, true, NULL);
    rc |= s_emit_receipt (dir, "approval.jws", true, false, NULL);
    char *text = json_dumps (jwks, JSON_COMPACT);
    rc |= s_write (dir, "jwks.json", text, strlen (text));
    free (text);
    json_decref (jwks);
    uint8_t seed [32], hmac [32];
    randombytes_buf (seed, sizeof seed);
    randombytes_buf (hmac, sizeof hmac);
    audit_keys_t *other = NULL;
    if (audit_keys_from_seed (&other, seed, hmac))
        return 1;
    json_t *ojwks = audit_keys_jwks (other);
    text = json_dumps (ojwks, JSON_COMPACT);
    rc |= s_write (dir, "other_jwks.json", text, strlen (text));
    free (text);
    json_decref (ojwks);
    audit_keys_destroy (&other);
    return rc;
}

int
main (int argc, char **argv)
{
    if (sodium_init () < 0)
        return 1;
    if (argc == 3 && strcmp (argv [1], "--emit") == 0)
        return s_emit (argv [2]);
    const struct CMUnitTest tests [] = {
        cmocka_unit_test_setup_teardown (test_receipt_verifies, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_tampered_receipt_bytes, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_tampered_stored_entry, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_tampered_approval_signature, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_summary_must_match_entries, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_gantt_and_due, s_setup, s_teardown),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
