/*  test_dedupe.c — bus_dedupe: the request hash; the memory's bounds in
    bytes and entries, per principal and in all (one principal's flood
    evicts its own replies, never a quiet principal's; waiting entries
    stay); its time window; and the durable records (recorded, recalled,
    told apart by hash, recorded without an oversized reply, expired in
    bounded batches through the time index).
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <sodium.h>

#include "bus_dedupe.h"
#include "bus_error.h"
#include "bus_store.h"
#include "../support/test_service.h"

static const bus_dedupe_limits_t s_limits = {
    .max_bytes = 4 << 20, .max_entries = 20000,
    .principal_bytes = 1 << 20, .principal_entries = 5000,
    .ttl_ms = 120000
};

/*  A request id for n (26 characters, like a ULID). */
static const char *
s_id (int n)
{
    static char id [32];
    snprintf (id, sizeof id, "01M90000000000000000%06d", n);
    return id;
}

static void
test_hash (void **state)
{
    uint8_t a [BUS_DEDUPE_HASH_LEN], b [BUS_DEDUPE_HASH_LEN], c [BUS_DEDUPE_HASH_LEN], d [BUS_DEDUPE_HASH_LEN];
    json_t *one = json_pack ("{s:i, s:s}", "x", 1, "y", "two");
    json_t *same = json_pack ("{s:s, s:i}", "y", "two", "x", 1);      /* members in another order */
    json_t *other = json_pack ("{s:i, s:s}", "x", 2, "y", "two");
    bus_dedupe_hash (a, "authz.write", one);
    bus_dedupe_hash (b, "authz.write", same);
    bus_dedupe_hash (c, "authz.write", other);
    bus_dedupe_hash (d, "echo", one);
    assert_memory_equal (a, b, sizeof a);
    assert_memory_not_equal (a, c, sizeof a);
    assert_memory_not_equal (a, d, sizeof a);
    json_decref (one);
    json_decref (same);
    json_decref (other);
}

/*  The hash as it was first defined: BLAKE2b-256 of the type, a NUL and
    jansson's compact, key-sorted text of the body (recorded outcomes
    keep it: it may not change). */
static void
s_hash_reference (uint8_t out [BUS_DEDUPE_HASH_LEN], const char *type, json_t *body)
{
    crypto_generichash_state state;
    crypto_generichash_init (&state, NULL, 0, BUS_DEDUPE_HASH_LEN);
    crypto_generichash_update (&state, (const uint8_t *) type, strlen (type) + 1);
    char *text = json_dumps (body, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    if (text)
        crypto_generichash_update (&state, (const uint8_t *) text, strlen (text));
    free (text);
    crypto_generichash_final (&state, out, BUS_DEDUPE_HASH_LEN);
}

/*  A random value, depth levels down: every JSON type, strings with
    quotes, backslashes, control bytes, UTF-8 and slashes, keys alike. */
static json_t *
s_random_value (unsigned *seed, int depth)
{
    static const char *const strings [] = {
        "", "a", "plain text", "q\"uote", "back\\slash", "tab\there", "nl\n", "\x01ctl", "del\x7f",
        "caf\xc3\xa9", "\xe2\x82\xac", "slash/es", "01JB3M8Q5X9ZJ2G4T6V8W0Y2A4", "B", "aa", "a b", "~", "{}"
    };
    size_t ns = sizeof strings / sizeof *strings;
    int kind = depth > 3 ? rand_r (seed) % 6 : rand_r (seed) % 8;
    switch (kind) {
        case 0: return json_null ();
        case 1: return json_boolean (rand_r (seed) % 2);
        case 2: return json_integer ((json_int_t) rand_r (seed) * (rand_r (seed) % 2 ? -1 : 1)
                                     * (rand_r (seed) % 3 ? 1 : 1000000007LL));
        case 3: return json_real ((double) rand_r (seed) / 7.0);
        case 4:
        case 5: return json_string (strings [rand_r (seed) % ns]);
        case 6: {
            json_t *a = json_array ();
            for (int i = rand_r (seed) % 5; i > 0; i--)
                json_array_append_new (a, s_random_value (seed, depth + 1));
            return a;
        }
        default: {
            json_t *o = json_object ();
            for (int i = rand_r (seed) % (rand_r (seed) % 9 ? 7 : 40); i > 0; i--)
                json_object_set_new (o, strings [rand_r (seed) % ns], s_random_value (seed, depth + 1));
            return o;
        }
    }
}

/*  The hash written without json_dumps is the same as with it, for
    every kind of body (it falls back to json_dumps where it must). */
static void
test_hash_text (void **state)
{
    unsigned seed = 8785;
    for (int i = 0; i < 20000; i++) {
        json_t *body = s_random_value (&seed, 0);
        uint8_t got [BUS_DEDUPE_HASH_LEN], want [BUS_DEDUPE_HASH_LEN];
        bus_dedupe_hash (got, "audit.append", body);
        s_hash_reference (want, "audit.append", body);
        if (memcmp (got, want, sizeof got)) {
            char *text = json_dumps (body, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
            fail_msg ("hash differs for %s", text ? text : "(no text)");
        }
        json_decref (body);
    }
    /* an entry as the auditor gets them, and a deep one */
    json_t *entry = json_pack ("{s:{s:s, s:s, s:i, s:s, s:i}}", "entry", "kind", "step.intent", "run",
                               "01JB3M8Q5X9ZJ2G4T6V8W0Y2A4", "client", 3, "tool", "sheets.append", "n", 17);
    json_t *deep = json_array ();
    for (json_t *at = deep, *next; json_array_size (deep) < 1; ) {
        for (int d = 0; d < 40; d++, at = next)
            json_array_append_new (at, next = json_array ());
    }
    json_t *bodies [] = { entry, deep, json_string ("top"), NULL };
    for (int i = 0; bodies [i]; i++) {
        uint8_t got [BUS_DEDUPE_HASH_LEN], want [BUS_DEDUPE_HASH_LEN];
        bus_dedupe_hash (got, "x", bodies [i]);
        s_hash_reference (want, "x", bodies [i]);
        assert_memory_equal (got, want, sizeof got);
        json_decref (bodies [i]);
    }
}

static void
test_memory_basics (void **state)
{
    bus_dedupe_t *mem = bus_dedupe_new (&s_limits);
    assert_non_null (mem);
    uint8_t h [BUS_DEDUPE_HASH_LEN] = { 1 }, other [BUS_DEDUPE_HASH_LEN] = { 2 };
    const uint8_t *data = NULL;
    size_t len = 0;
    assert_int_equal (bus_dedupe_lookup (mem, "ops:a", s_id (1), h, &data, &len), BUS_DEDUPE_NONE);
    assert_int_equal (bus_dedupe_put (mem, "ops:a", s_id (1), h, NULL, 0, 1000), 0);
    assert_int_equal (bus_dedupe_lookup (mem, "ops:a", s_id (1), h, &data, &len), BUS_DEDUPE_WAITING);
    assert_int_equal (bus_dedupe_lookup (mem, "ops:a", s_id (1), other, &data, &len), BUS_DEDUPE_CONFLICT);
    /* another principal's same id is another request */
    assert_int_equal (bus_dedupe_lookup (mem, "ops:b", s_id (1), h, &data, &len), BUS_DEDUPE_NONE);
    assert_int_equal (bus_dedupe_reply (mem, "ops:a", s_id (1), (const uint8_t *) "reply", 5, 2000), 0);
    assert_int_equal (bus_dedupe_lookup (mem, "ops:a", s_id (1), h, &data, &len), BUS_DEDUPE_REPLY);
    assert_int_equal (len, 5);
    assert_memory_equal (data, "reply", 5);
    assert_int_equal (bus_dedupe_reply (mem, "ops:a", s_id (9), (const uint8_t *) "x", 1, 2000), BUS_ENOTFOUND);
    /* kept for ttl after the reply */
    bus_dedupe_trim (mem, 2000 + s_limits.ttl_ms - 1);
    assert_int_equal (bus_dedupe_size (mem, NULL), 1);
    bus_dedupe_trim (mem, 2000 + s_limits.ttl_ms);
    assert_int_equal (bus_dedupe_size (mem, NULL), 0);
    assert_int_equal (bus_dedupe_bytes (mem, NULL), 0);
    bus_dedupe_destroy (&mem);
    bus_dedupe_destroy (&mem);
    assert_null (mem);
}

/*  One principal floods (20,050 requests, then 600 replies of 1 MiB);
    another's remembered reply stays, and the flood stays within its
    share in bytes and entries. */
static void
test_flood_keeps_others (void **state)
{
    bus_dedupe_t *mem = bus_dedupe_new (&s_limits);
    uint8_t h [BUS_DEDUPE_HASH_LEN] = { 7 };
    const uint8_t *data = NULL;
    size_t len = 0;
    assert_int_equal (bus_dedupe_put (mem, "ops:operator", s_id (0), h, (const uint8_t *) "first", 5, 0), 0);
    uint8_t small [200] = { 0 };
    for (int i = 1; i <= 20050; i++)
        assert_int_equal (bus_dedupe_put (mem, "ext:flood", s_id (i), h, small, sizeof small, i / 100), 0);
    assert_true (bus_dedupe_size (mem, "ext:flood") <= s_limits.principal_entries);
    assert_true (bus_dedupe_evicted (mem) >= 20050 - s_limits.principal_entries);
    /* the newest of the flood are the ones kept */
    assert_int_equal (bus_dedupe_lookup (mem, "ext:flood", s_id (20050), h, &data, &len), BUS_DEDUPE_REPLY);
    assert_int_equal (bus_dedupe_lookup (mem, "ext:flood", s_id (1), h, &data, &len), BUS_DEDUPE_NONE);

    size_t mib = 1 << 20;
    uint8_t *big = calloc (1, mib - 4096);
    for (int i = 0; i < 600; i++)
        assert_int_equal (bus_dedupe_put (mem, "ext:flood", s_id (30000 + i), h, big, mib - 4096, 300), 0);
    assert_true (bus_dedupe_bytes (mem, "ext:flood") <= s_limits.principal_bytes);
    assert_true (bus_dedupe_bytes (mem, NULL) <= s_limits.max_bytes);
    assert_int_equal (bus_dedupe_lookup (mem, "ops:operator", s_id (0), h, &data, &len), BUS_DEDUPE_REPLY);
    assert_memory_equal (data, "first", 5);
    /* a reply larger than a principal's share is not kept in memory */
    uint8_t *huge = calloc (1, 2 * mib);
    assert_int_equal (bus_dedupe_put (mem, "ext:huge", s_id (1), h, huge, 2 * mib, 300), 0);
    assert_int_equal (bus_dedupe_lookup (mem, "ext:huge", s_id (1), h, &data, &len), BUS_DEDUPE_NONE);
    free (huge);
    free (big);
    bus_dedupe_destroy (&mem);
}

/*  Over the whole bound, the principal holding the most loses its
    oldest, not a lighter one; waiting entries are never evicted. */
static void
test_whole_bound_takes_from_heaviest (void **state)
{
    bus_dedupe_limits_t l = s_limits;
    l.max_entries = 100;
    l.principal_entries = 80;
    bus_dedupe_t *mem = bus_dedupe_new (&l);
    uint8_t h [BUS_DEDUPE_HASH_LEN] = { 3 };
    const uint8_t *data = NULL;
    size_t len = 0;
    static const char *lights [] = { "ops:a", "ops:b", "ops:c", "ops:d", "ops:e", "ops:f" };
    for (int i = 0; i < 30; i++)
        assert_int_equal (bus_dedupe_put (mem, lights [i % 6], s_id (i), h, (const uint8_t *) "r", 1, 0), 0);
    assert_int_equal (bus_dedupe_put (mem, "ext:heavy", s_id (0), h, NULL, 0, 0), 0);   /* waiting */
    for (int i = 1; i < 500; i++)
        assert_int_equal (bus_dedupe_put (mem, "ext:heavy", s_id (i), h, (const uint8_t *) "r", 1, 0), 0);
    assert_true (bus_dedupe_size (mem, NULL) <= 100);
    assert_int_equal (bus_dedupe_size (mem, "ext:heavy"), 70);
    assert_int_equal (bus_dedupe_lookup (mem, "ext:heavy", s_id (0), h, &data, &len), BUS_DEDUPE_WAITING);
    for (int i = 0; i < 30; i++)
        assert_int_equal (bus_dedupe_lookup (mem, lights [i % 6], s_id (i), h, &data, &len), BUS_DEDUPE_REPLY);
    bus_dedupe_destroy (&mem);
}

/* --- durable --------------------------------------------------------------- */

typedef struct {
    char dir [256];
    bus_store_t *store;
    bus_dedupe_store_t d;
} s_store_t;

static void
s_store_open (s_store_t *s, size_t record_max, uint64_t principal_bytes, uint64_t total_bytes)
{
    static const char *const dbs [] = { BUS_DEDUPE_DB, BUS_DEDUPE_TIME_DB, BUS_DEDUPE_USAGE_DB, NULL };
    assert_int_equal (test_service_tmpdir (s->dir, sizeof s->dir, "test_dedupe"), 0);
    assert_int_equal (bus_store_open (&s->store, s->dir, 16 << 20, dbs), 0);
    s->d = (bus_dedupe_store_t) {
        .db = bus_store_db (s->store, BUS_DEDUPE_DB),
        .time_db = bus_store_db (s->store, BUS_DEDUPE_TIME_DB),
        .usage_db = bus_store_db (s->store, BUS_DEDUPE_USAGE_DB),
        .record_max = record_max, .principal_bytes = principal_bytes, .total_bytes = total_bytes
    };
}

static void
s_store_close (s_store_t *s)
{
    bus_store_destroy (&s->store);
    test_service_rmtree (s->dir);
}

static void
test_durable (void **state)
{
    s_store_t s;
    s_store_open (&s, 4096, 1 << 20, 1 << 20);
    uint8_t h [BUS_DEDUPE_HASH_LEN] = { 5 }, other [BUS_DEDUPE_HASH_LEN] = { 6 };
    json_t *ok = json_pack ("{s:{s:s}}", "body", "authorization_model_id", "01M9");
    json_t *err = json_pack ("{s:{s:s, s:s, s:i}}", "error", "code", "conflict", "message", "exists", "fga_code", 2017);
    json_t *big = json_pack ("{s:{}}", "body");
    char *pad = calloc (1, 5000);
    memset (pad, 'x', 4999);
    json_object_set_new (json_object_get (big, "body"), "data", json_string (pad));
    free (pad);

    bus_txn_t *txn = bus_txn_begin (s.store, true);
    assert_int_equal (bus_dedupe_record (txn, &s.d, "ops:a", s_id (1), h, ok, 1000), 0);
    assert_int_equal (bus_dedupe_record (txn, &s.d, "ops:a", s_id (2), h, err, 5000), 0);
    assert_int_equal (bus_dedupe_record (txn, &s.d, "ops:a", s_id (3), h, big, 2000), 0);
    assert_int_equal (bus_txn_commit (&txn), 0);

    /* an aborted transaction records nothing */
    txn = bus_txn_begin (s.store, true);
    assert_int_equal (bus_dedupe_record (txn, &s.d, "ops:a", s_id (4), h, ok, 1000), 0);
    bus_txn_abort (&txn);

    txn = bus_txn_begin (s.store, false);
    json_t *out = NULL;
    assert_int_equal (bus_dedupe_recall (txn, s.d.db, "ops:a", s_id (1), h, &out), BUS_DEDUPE_REPLY);
    assert_true (json_equal (out, ok));
    json_decref (out);
    assert_int_equal (bus_dedupe_recall (txn, s.d.db, "ops:a", s_id (2), h, &out), BUS_DEDUPE_REPLY);
    assert_true (json_equal (out, err));
    json_decref (out);
    assert_int_equal (bus_dedupe_recall (txn, s.d.db, "ops:a", s_id (3), h, &out), BUS_DEDUPE_REPLY);
    assert_true (json_integer_value (json_object_get (out, "large")) > 4096);
    assert_null (json_object_get (out, "body"));
    json_decref (out);
    assert_int_equal (bus_dedupe_recall (txn, s.d.db, "ops:a", s_id (1), other, &out), BUS_DEDUPE_CONFLICT);
    assert_int_equal (bus_dedupe_recall (txn, s.d.db, "ops:b", s_id (1), h, &out), BUS_DEDUPE_NONE);
    assert_int_equal (bus_dedupe_recall (txn, s.d.db, "ops:a", s_id (4), h, &out), BUS_DEDUPE_NONE);
    bus_txn_abort (&txn);

    /* expiry: oldest first, in batches, the rest kept */
    bool more = false;
    txn = bus_txn_begin (s.store, true);
    assert_int_equal (bus_dedupe_expire (txn, &s.d, 4000, 1, &more), 1);
    assert_true (more);
    assert_int_equal (bus_dedupe_expire (txn, &s.d, 4000, 10, &more), 1);
    assert_false (more);
    assert_int_equal (bus_dedupe_expire (txn, &s.d, 4000, 10, &more), 0);
    assert_int_equal (bus_txn_commit (&txn), 0);
    txn = bus_txn_begin (s.store, false);
    assert_int_equal (bus_dedupe_recall (txn, s.d.db, "ops:a", s_id (1), h, &out), BUS_DEDUPE_NONE);
    assert_int_equal (bus_dedupe_recall (txn, s.d.db, "ops:a", s_id (3), h, &out), BUS_DEDUPE_NONE);
    assert_int_equal (bus_dedupe_recall (txn, s.d.db, "ops:a", s_id (2), h, &out), BUS_DEDUPE_REPLY);
    json_decref (out);
    bus_txn_abort (&txn);

    /* what is left is counted; expiring it all counts it off */
    txn = bus_txn_begin (s.store, true);
    uint64_t left = bus_dedupe_usage (txn, &s.d, "ops:a");
    assert_true (left > 0 && left < 1024);
    assert_int_equal (bus_dedupe_usage (txn, &s.d, NULL), left);
    assert_int_equal (bus_dedupe_expire (txn, &s.d, 10000, 10, &more), 1);
    assert_int_equal (bus_dedupe_usage (txn, &s.d, "ops:a"), 0);
    assert_int_equal (bus_dedupe_usage (txn, &s.d, NULL), 0);
    assert_int_equal (bus_txn_commit (&txn), 0);

    json_decref (ok);
    json_decref (err);
    json_decref (big);
    s_store_close (&s);
}

/*  One principal's flood of recorded outcomes stops at its quota (not
    recorded: BUS_EFULL, not sticky) while another's are still recorded;
    the whole stops at everyone's quota; expiry makes room again. */
static void
test_durable_quota (void **state)
{
    s_store_t s;
    s_store_open (&s, 4096, 64 << 10, 96 << 10);
    uint8_t h [BUS_DEDUPE_HASH_LEN] = { 9 };
    json_t *ok = json_pack ("{s:{s:s}}", "body", "pad", "0123456789012345678901234567890123456789");
    bus_txn_t *txn = bus_txn_begin (s.store, true);
    int recorded = 0, refused = 0;
    for (int i = 0; i < 2000; i++) {
        int rc = bus_dedupe_record (txn, &s.d, "ext:flood", s_id (i), h, ok, 1000 + i);
        assert_true (rc == 0 || rc == BUS_EFULL);
        recorded += rc == 0;
        refused += rc == BUS_EFULL;
    }
    assert_true (recorded > 100 && refused > 0);
    assert_true (bus_dedupe_usage (txn, &s.d, "ext:flood") <= (64 << 10));
    assert_int_equal (bus_txn_error (txn), 0);
    /* the operator still gets its outcomes recorded */
    assert_int_equal (bus_dedupe_record (txn, &s.d, "ops:operator", s_id (1), h, ok, 1000), 0);
    /* another flood fills the rest, up to everyone's quota */
    int second = 0;
    for (int i = 0; i < 2000; i++)
        second += bus_dedupe_record (txn, &s.d, "ext:other", s_id (i), h, ok, 1000) == 0;
    assert_true (second > 0);
    assert_true (bus_dedupe_usage (txn, &s.d, NULL) <= (96 << 10));
    assert_int_equal (bus_dedupe_record (txn, &s.d, "ops:operator", s_id (2), h, ok, 1000), BUS_EFULL);
    assert_int_equal (bus_txn_commit (&txn), 0);
    /* expiry makes room */
    bool more = true;
    txn = bus_txn_begin (s.store, true);
    while (more)
        assert_true (bus_dedupe_expire (txn, &s.d, 1000 + 2000, 500, &more) >= 0);
    assert_int_equal (bus_dedupe_usage (txn, &s.d, NULL), 0);
    assert_int_equal (bus_dedupe_record (txn, &s.d, "ext:flood", s_id (5000), h, ok, 9000), 0);
    assert_int_equal (bus_txn_commit (&txn), 0);
    json_decref (ok);
    s_store_close (&s);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_hash),
        cmocka_unit_test (test_hash_text),
        cmocka_unit_test (test_memory_basics),
        cmocka_unit_test (test_flood_keeps_others),
        cmocka_unit_test (test_whole_bound_takes_from_heaviest),
        cmocka_unit_test (test_durable),
        cmocka_unit_test (test_durable_quota),
    };
    return test_service_summary ((int) (sizeof tests / sizeof tests [0]),
                                 cmocka_run_group_tests (tests, NULL, NULL));
}
