/*  test_audit_log.c — the auditor's Merkle log: RFC 6962 hashes, roots and
    proofs against the known vectors of transparency-dev/merkle (the tree of
    the 8 leaves CT's tests use), every proof of every tree up to
    S_ALL_SIZES entries against a reference written from the RFC's
    recursion and through the RFC 9162 verifiers, events and requests
    stored once, gaps, limits, reopening, and the canonical JSON (RFC 8785)
    the entries are stored in.
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

#include "proto_canon.h"
#include "audit_log.h"
#include "audit_merkle.h"
#include "bus_error.h"
#include "bus_store.h"
#include "../support/test_service.h"

#define S_ALL_SIZES 160

typedef struct {
    char dir [64];
    char path [128];
    bus_store_t *store;
    audit_log_t *log;
} fixture_t;

static int
s_setup (void **state)
{
    fixture_t *fx = calloc (1, sizeof *fx);
    assert_non_null (fx);
    assert_int_equal (test_service_tmpdir (fx->dir, sizeof fx->dir, "test_audit_log"), 0);
    snprintf (fx->path, sizeof fx->path, "%s/db", fx->dir);
    assert_int_equal (bus_store_open (&fx->store, fx->path, 64 << 20, audit_log_db_names), 0);
    assert_int_equal (audit_log_new (&fx->log, fx->store), 0);
    *state = fx;
    return 0;
}

static int
s_teardown (void **state)
{
    fixture_t *fx = *state;
    audit_log_destroy (&fx->log);
    bus_store_destroy (&fx->store);
    test_service_rmtree (fx->dir);
    free (fx);
    return 0;
}

static void
s_hash (audit_hash_t out, const char *hex)
{
    assert_int_equal (audit_hash_from_hex (out, hex), 0);
}

static void
s_assert_hash (const audit_hash_t got, const char *want)
{
    char hex [2 * AUDIT_HASH_LEN + 1];
    audit_hash_hex (hex, got);
    assert_string_equal (hex, want);
}

/* --- the vectors of transparency-dev/merkle (testonly/constants.go,
       reference_test.go): the 8 leaves of CT's merkle tests ----------- */

static const struct { const char *data; size_t len; } s_leaves [] = {
    { "", 0 }, { "\x00", 1 }, { "\x10", 1 }, { "\x20\x21", 2 }, { "\x30\x31", 2 },
    { "\x40\x41\x42\x43", 4 }, { "\x50\x51\x52\x53\x54\x55\x56\x57", 8 },
    { "\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f", 16 },
};

static const char *const s_leaf_hashes [] = {
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
};

static const char *const s_roots [] = {        /* by tree size, 0..8 */
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
};

static const struct { uint64_t index, size; int n; const char *path [3]; } s_inclusion [] = {
    { 0, 1, 0, { NULL } },
    { 0, 2, 1, { "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7" } },
    { 1, 2, 1, { "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d" } },
    { 2, 3, 1, { "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125" } },
    { 1, 5, 3, { "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                 "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                 "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b" } },
    { 0, 8, 3, { "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                 "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                 "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4" } },
    { 5, 8, 3, { "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                 "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                 "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7" } },
};

static const struct { uint64_t old_size, new_size; int n; const char *path [3]; } s_consistency [] = {
    { 1, 1, 0, { NULL } },
    { 1, 8, 3, { "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                 "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                 "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4" } },
    { 2, 5, 2, { "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                 "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b" } },
    { 6, 8, 3, { "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                 "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                 "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7" } },
};

/*  Append the 8 leaves. The log refuses an empty entry (every real entry
    is a JSON object), so vector leaf 0 (the empty input) is written
    straight into the store, as audit_log_append would have written it. */
static void
s_append_vectors (fixture_t *fx)
{
    bus_txn_t *txn = bus_txn_begin (fx->store, true);
    for (size_t i = 0; i < 8; i++) {
        uint64_t index = 99;
        if (s_leaves [i].len == 0) {
            uint8_t key [8], nkey [9];
            audit_hash_t h;
            audit_leaf_hash (h, "", 0);
            bus_u64_to_key (0, key);
            nkey [0] = 0;
            bus_u64_to_key (0, nkey + 1);
            assert_int_equal (bus_txn_put (txn, bus_store_db (fx->store, "audit_entries"), key, 8, "", 0), 0);
            assert_int_equal (bus_txn_put (txn, bus_store_db (fx->store, "audit_nodes"), nkey, 9, h, 32), 0);
            continue;
        }
        assert_int_equal (audit_log_append (fx->log, txn, s_leaves [i].data, s_leaves [i].len, &index), 0);
        assert_int_equal (index, i);
    }
    assert_int_equal (bus_txn_commit (&txn), 0);
}

static void
test_vector_hashes_and_roots (void **state)
{
    fixture_t *fx = *state;
    for (size_t i = 0; i < 8; i++) {
        audit_hash_t h;
        audit_leaf_hash (h, s_leaves [i].data, s_leaves [i].len);
        s_assert_hash (h, s_leaf_hashes [i]);
    }
    s_append_vectors (fx);
    bus_txn_t *txn = bus_txn_begin (fx->store, false);
    uint64_t size;
    assert_int_equal (audit_log_size (fx->log, txn, &size), 0);
    assert_int_equal (size, 8);
    for (uint64_t n = 0; n <= 8; n++) {
        audit_hash_t root;
        assert_int_equal (audit_log_root (fx->log, txn, n, root), 0);
        s_assert_hash (root, s_roots [n]);
    }
    audit_hash_t root;
    assert_int_equal (audit_log_root (fx->log, txn, 9, root), BUS_EINVAL);
    bus_txn_abort (&txn);
}

static void
test_vector_inclusion (void **state)
{
    fixture_t *fx = *state;
    s_append_vectors (fx);
    bus_txn_t *txn = bus_txn_begin (fx->store, false);
    for (size_t v = 0; v < sizeof s_inclusion / sizeof s_inclusion [0]; v++) {
        audit_hash_t path [AUDIT_PROOF_MAX], leaf, root;
        size_t n = 99;
        assert_int_equal (audit_log_inclusion (fx->log, txn, s_inclusion [v].index, s_inclusion [v].size,
                                               path, &n), 0);
        assert_int_equal (n, (size_t) s_inclusion [v].n);
        for (size_t i = 0; i < n; i++)
            s_assert_hash (path [i], s_inclusion [v].path [i]);
        s_hash (leaf, s_leaf_hashes [s_inclusion [v].index]);
        s_hash (root, s_roots [s_inclusion [v].size]);
        assert_int_equal (audit_verify_inclusion (s_inclusion [v].index, s_inclusion [v].size, leaf, path, n,
                                                  root), 0);
        /* the proof of another leaf, or for another root, fails */
        s_hash (leaf, s_leaf_hashes [(s_inclusion [v].index + 1) % 8]);
        assert_int_equal (audit_verify_inclusion (s_inclusion [v].index, s_inclusion [v].size, leaf, path, n,
                                                  root), BUS_ECRYPTO);
    }
    bus_txn_abort (&txn);
}

static void
test_vector_consistency (void **state)
{
    fixture_t *fx = *state;
    s_append_vectors (fx);
    bus_txn_t *txn = bus_txn_begin (fx->store, false);
    for (size_t v = 0; v < sizeof s_consistency / sizeof s_consistency [0]; v++) {
        audit_hash_t path [AUDIT_PROOF_MAX], r1, r2;
        size_t n = 99;
        assert_int_equal (audit_log_consistency (fx->log, txn, s_consistency [v].old_size,
                                                 s_consistency [v].new_size, path, &n), 0);
        assert_int_equal (n, (size_t) s_consistency [v].n);
        for (size_t i = 0; i < n; i++)
            s_assert_hash (path [i], s_consistency [v].path [i]);
        s_hash (r1, s_roots [s_consistency [v].old_size]);
        s_hash (r2, s_roots [s_consistency [v].new_size]);
        assert_int_equal (audit_verify_consistency (s_consistency [v].old_size, s_consistency [v].new_size,
                                                    r1, r2, path, n), 0);
        if (n) {
            path [n - 1][5] ^= 1;
            assert_int_equal (audit_verify_consistency (s_consistency [v].old_size, s_consistency [v].new_size,
                                                        r1, r2, path, n), BUS_ECRYPTO);
        }
    }
    bus_txn_abort (&txn);
}

/* --- a reference straight from RFC 6962 2.1, over leaf hashes in memory -- */

static void
s_ref_mth (audit_hash_t out, audit_hash_t *leaves, uint64_t n)
{
    if (n == 1) {
        memcpy (out, leaves [0], AUDIT_HASH_LEN);
        return;
    }
    uint64_t k = 1;
    while (k * 2 < n)
        k *= 2;
    audit_hash_t l, r;
    s_ref_mth (l, leaves, k);
    s_ref_mth (r, leaves + k, n - k);
    audit_node_hash (out, l, r);
}

static void
s_ref_path (audit_hash_t *out, size_t *len, uint64_t m, audit_hash_t *leaves, uint64_t n)
{
    if (n == 1)
        return;
    uint64_t k = 1;
    while (k * 2 < n)
        k *= 2;
    if (m < k) {
        s_ref_path (out, len, m, leaves, k);
        s_ref_mth (out [(*len)++], leaves + k, n - k);
    }
    else {
        s_ref_path (out, len, m - k, leaves + k, n - k);
        s_ref_mth (out [(*len)++], leaves, k);
    }
}

static void
s_ref_subproof (audit_hash_t *out, size_t *len, uint64_t m, audit_hash_t *leaves, uint64_t n, bool b)
{
    if (m == n) {
        if (!b)
            s_ref_mth (out [(*len)++], leaves, n);
        return;
    }
    uint64_t k = 1;
    while (k * 2 < n)
        k *= 2;
    if (m <= k) {
        s_ref_subproof (out, len, m, leaves, k, b);
        s_ref_mth (out [(*len)++], leaves + k, n - k);
    }
    else {
        s_ref_subproof (out, len, m - k, leaves + k, n - k, false);
        s_ref_mth (out [(*len)++], leaves, k);
    }
}

/*  Every root, every inclusion proof and every consistency proof of every
    tree up to S_ALL_SIZES entries: equal to the reference, and accepted by
    the verifiers; a proof with one bit changed is refused. */
static void
test_every_proof_up_to_all_sizes (void **state)
{
    fixture_t *fx = *state;
    audit_hash_t *leaves = calloc (S_ALL_SIZES, sizeof *leaves);
    assert_non_null (leaves);
    bus_txn_t *txn = bus_txn_begin (fx->store, true);
    for (uint64_t i = 0; i < S_ALL_SIZES; i++) {
        char entry [32];
        int len = snprintf (entry, sizeof entry, "{\"n\":%llu}", (unsigned long long) i);
        uint64_t index;
        assert_int_equal (audit_log_append (fx->log, txn, entry, (size_t) len, &index), 0);
        assert_int_equal (index, i);
        audit_leaf_hash (leaves [i], entry, (size_t) len);
    }
    assert_int_equal (bus_txn_commit (&txn), 0);
    txn = bus_txn_begin (fx->store, false);
    audit_hash_t *roots = calloc (S_ALL_SIZES + 1, sizeof *roots);
    for (uint64_t n = 1; n <= S_ALL_SIZES; n++) {
        audit_hash_t want;
        s_ref_mth (want, leaves, n);
        assert_int_equal (audit_log_root (fx->log, txn, n, roots [n]), 0);
        assert_memory_equal (roots [n], want, AUDIT_HASH_LEN);
    }
    for (uint64_t n = 1; n <= S_ALL_SIZES; n++) {
        for (uint64_t m = 0; m < n; m++) {
            audit_hash_t path [AUDIT_PROOF_MAX], ref [AUDIT_PROOF_MAX];
            size_t len = 0, ref_len = 0;
            assert_int_equal (audit_log_inclusion (fx->log, txn, m, n, path, &len), 0);
            s_ref_path (ref, &ref_len, m, leaves, n);
            assert_int_equal (len, ref_len);
            assert_memory_equal (path, ref, len * AUDIT_HASH_LEN);
            assert_int_equal (audit_verify_inclusion (m, n, leaves [m], path, len, roots [n]), 0);
            if (len) {
                path [m % len][m % AUDIT_HASH_LEN] ^= 0x80;
                assert_int_equal (audit_verify_inclusion (m, n, leaves [m], path, len, roots [n]), BUS_ECRYPTO);
            }
            /* the same proof under a wrong index or size fails */
            path [m % (len ? len : 1)][m % AUDIT_HASH_LEN] ^= 0x80;
            if (n > 1)
                assert_int_not_equal (audit_verify_inclusion ((m + 1) % n, n, leaves [m], path, len, roots [n]), 0);
        }
        for (uint64_t m = 1; m <= n; m++) {
            audit_hash_t path [AUDIT_PROOF_MAX], ref [AUDIT_PROOF_MAX];
            size_t len = 0, ref_len = 0;
            assert_int_equal (audit_log_consistency (fx->log, txn, m, n, path, &len), 0);
            if (m < n)
                s_ref_subproof (ref, &ref_len, m, leaves, n, true);
            assert_int_equal (len, ref_len);
            assert_memory_equal (path, ref, len * AUDIT_HASH_LEN);
            assert_int_equal (audit_verify_consistency (m, n, roots [m], roots [n], path, len), 0);
            if (m < n)
                assert_int_equal (audit_verify_consistency (m, n, roots [n], roots [n], path, len), BUS_ECRYPTO);
            if (len) {
                path [len - 1][0] ^= 1;
                assert_int_equal (audit_verify_consistency (m, n, roots [m], roots [n], path, len), BUS_ECRYPTO);
            }
        }
    }
    bus_txn_abort (&txn);
    free (roots);
    free (leaves);
}

/*  An event is stored once by (publisher, seq); a request once by
    (principal, id); a gap once, by its first seq. */
static void
test_events_requests_gaps_once (void **state)
{
    fixture_t *fx = *state;
    bus_txn_t *txn = bus_txn_begin (fx->store, true);
    uint64_t a = 99, b = 99, c = 99;
    assert_int_equal (audit_log_append_event (fx->log, txn, "svc:authz", 1, "{\"e\":1}", 7, &a), 0);
    assert_int_equal (audit_log_append_event (fx->log, txn, "svc:authz", 2, "{\"e\":2}", 7, &b), 0);
    assert_int_equal (audit_log_append_event (fx->log, txn, "svc:ciba", 1, "{\"e\":3}", 7, &c), 0);
    assert_int_equal (a, 0);
    assert_int_equal (b, 1);
    assert_int_equal (c, 2);
    uint64_t again = 99;
    assert_int_equal (audit_log_append_event (fx->log, txn, "svc:authz", 2, "{\"e\":2}", 7, &again), BUS_EEXIST);
    assert_int_equal (again, 1);
    assert_int_equal (audit_log_event_index (fx->log, txn, "svc:ciba", 1, &again), 0);
    assert_int_equal (again, 2);
    assert_int_equal (audit_log_event_index (fx->log, txn, "svc:ciba", 2, &again), BUS_ENOTFOUND);
    assert_int_equal (audit_log_append_event (fx->log, txn, "svc:authz", 0, "{}", 2, &again), BUS_EINVAL);
    assert_int_equal (audit_log_append_event (fx->log, txn, "", 1, "{}", 2, &again), BUS_EINVAL);

    uint64_t gap = 99;
    assert_int_equal (audit_log_append_gap (fx->log, txn, "svc:vault", 3, 9, 1700000000000000, &gap), 0);
    assert_int_equal (gap, 3);
    assert_int_equal (audit_log_append_gap (fx->log, txn, "svc:vault", 3, 9, 1700000000000001, &again), BUS_EEXIST);
    assert_int_equal (again, 3);
    assert_int_equal (audit_log_append_gap (fx->log, txn, "svc:vault", 9, 3, 0, &again), BUS_EINVAL);
    const void *entry;
    size_t len;
    assert_int_equal (audit_log_entry (fx->log, txn, gap, &entry, &len), 0);
    const char *want = "{\"from_seq\":3,\"kind\":\"gap\",\"pub\":\"svc:vault\",\"to_seq\":9,\"ts\":1700000000000000}";
    assert_int_equal (len, strlen (want));
    assert_memory_equal (entry, want, len);

    uint64_t r1 = 99, r2 = 99;
    assert_int_equal (audit_log_append_request (fx->log, txn, "svc:orchestrator", "01ABC", "{\"s\":1}", 7, &r1), 0);
    assert_int_equal (audit_log_append_request (fx->log, txn, "svc:orchestrator", "01ABC", "{\"s\":1}", 7, &r2),
                      BUS_EEXIST);
    assert_int_equal (r1, r2);
    assert_int_equal (audit_log_append_request (fx->log, txn, "svc:other", "01ABC", "{\"s\":1}", 7, &r2), 0);
    assert_int_equal (r2, r1 + 1);
    /* found by its request: what answers an append's retry */
    uint64_t found = 99;
    assert_int_equal (audit_log_request_index (fx->log, txn, "svc:orchestrator", "01ABC", &found), 0);
    assert_int_equal (found, r1);
    assert_int_equal (audit_log_request_index (fx->log, txn, "svc:other", "01ABC", &found), 0);
    assert_int_equal (found, r2);
    assert_int_equal (audit_log_request_index (fx->log, txn, "svc:orchestrator", "01ABD", &found), BUS_ENOTFOUND);
    assert_int_equal (audit_log_request_index (fx->log, txn, "svc:orchestrator", "", &found), BUS_EINVAL);
    assert_int_equal (bus_txn_commit (&txn), 0);

    /* an event stored in a transaction that aborts is not stored */
    txn = bus_txn_begin (fx->store, true);
    assert_int_equal (audit_log_append_event (fx->log, txn, "svc:authz", 3, "{\"e\":4}", 7, &a), 0);
    bus_txn_abort (&txn);
    txn = bus_txn_begin (fx->store, false);
    assert_int_equal (audit_log_event_index (fx->log, txn, "svc:authz", 3, &a), BUS_ENOTFOUND);
    uint64_t size;
    assert_int_equal (audit_log_size (fx->log, txn, &size), 0);
    assert_int_equal (size, 6);
    bus_txn_abort (&txn);
}

/*  A keyed request: appended once per key (whatever the entry), its
    request id recorded with its tag, once (a later keyed call under the
    same id leaves the first tag); a plain request's id has no tag. */
static void
test_keyed_requests (void **state)
{
    fixture_t *fx = *state;
    bus_txn_t *txn = bus_txn_begin (fx->store, true);
    uint64_t k1 = 99, k2 = 99, p1 = 99, found = 99;
    const void *tag;
    size_t tag_len;
    assert_int_equal (audit_log_append_keyed (fx->log, txn, "svc:orchestrator", "k:aa", "01K1", "tagA", 4,
                                              "{\"s\":1}", 7, &k1), 0);
    /* the key again under another id and entry: the first index; the id recorded */
    assert_int_equal (audit_log_append_keyed (fx->log, txn, "svc:orchestrator", "k:aa", "01K2", "tagB", 4,
                                              "{\"s\":2}", 7, &k2), BUS_EEXIST);
    assert_int_equal (k2, k1);
    assert_int_equal (audit_log_request_get (fx->log, txn, "svc:orchestrator", "01K1", &found, &tag, &tag_len), 0);
    assert_int_equal (found, k1);
    assert_int_equal (tag_len, 4);
    assert_memory_equal (tag, "tagA", 4);
    assert_int_equal (audit_log_request_get (fx->log, txn, "svc:orchestrator", "01K2", &found, &tag, &tag_len), 0);
    assert_int_equal (found, k1);
    assert_memory_equal (tag, "tagB", 4);
    /* an id recorded before keeps its tag; another key under it appends (the
       caller refuses it first: the tags differ) */
    assert_int_equal (audit_log_append_keyed (fx->log, txn, "svc:orchestrator", "k:bb", "01K1", "tagC", 4,
                                              "{\"s\":3}", 7, &k2), 0);
    assert_int_equal (k2, k1 + 1);
    assert_int_equal (audit_log_request_get (fx->log, txn, "svc:orchestrator", "01K1", &found, &tag, &tag_len), 0);
    assert_int_equal (found, k1);
    assert_memory_equal (tag, "tagA", 4);
    /* a plain request's id: no tag; the index reads both */
    assert_int_equal (audit_log_append_request (fx->log, txn, "svc:orchestrator", "01P1", "{\"p\":1}", 7, &p1), 0);
    assert_int_equal (audit_log_request_get (fx->log, txn, "svc:orchestrator", "01P1", &found, &tag, &tag_len), 0);
    assert_int_equal (found, p1);
    assert_int_equal (tag_len, 0);
    assert_null (tag);
    assert_int_equal (audit_log_request_index (fx->log, txn, "svc:orchestrator", "01K2", &found), 0);
    assert_int_equal (found, k1);
    assert_int_equal (audit_log_request_get (fx->log, txn, "svc:orchestrator", "01NO", &found, &tag, &tag_len),
                      BUS_ENOTFOUND);
    char big [AUDIT_REQUEST_TAG_MAX + 1] = "";
    assert_int_equal (audit_log_append_keyed (fx->log, txn, "svc:orchestrator", "k:cc", "01K3", big, sizeof big,
                                              "{}", 2, &k2), BUS_EINVAL);
    assert_int_equal (bus_txn_commit (&txn), 0);
}

/*  An event envelope as the follower will store it: canonical, once. */
static void
test_event_msg (void **state)
{
    fixture_t *fx = *state;
    proto_msg_t *ev = proto_msg_new (PROTO_KIND_EVT, "authz.decided");
    snprintf (ev->pub, sizeof ev->pub, "svc:authz");
    snprintf (ev->id, sizeof ev->id, "01JB3M8Q5X9ZJ2G4T6V8W0Y2A4");
    ev->seq = 7;
    ev->ts = 1796400000000001;
    ev->body = json_pack ("{s:s, s:{s:i}}", "principal", "agent:x", "decision", "n", 1);
    bus_txn_t *txn = bus_txn_begin (fx->store, true);
    uint64_t index = 99, again = 99;
    assert_int_equal (audit_log_append_event_msg (fx->log, txn, ev, &index), 0);
    assert_int_equal (index, 0);
    assert_int_equal (audit_log_append_event_msg (fx->log, txn, ev, &again), BUS_EEXIST);
    assert_int_equal (again, 0);
    const void *entry;
    size_t len;
    assert_int_equal (audit_log_entry (fx->log, txn, 0, &entry, &len), 0);
    const char *want = "{\"body\":{\"decision\":{\"n\":1},\"principal\":\"agent:x\"},\"id\":\"01JB3M8Q5X9ZJ2G4T6V8W0Y2A4\","
                       "\"kind\":\"event\",\"pub\":\"svc:authz\",\"seq\":7,\"ts\":1796400000000001,\"type\":\"authz.decided\"}";
    assert_int_equal (len, strlen (want));
    assert_memory_equal (entry, want, len);
    /* no pub, no seq, a body without a canonical form: refused */
    ev->seq = 8;
    json_object_set_new (ev->body, "big", json_integer (9007199254740992LL));
    assert_int_equal (audit_log_append_event_msg (fx->log, txn, ev, &index), BUS_EINVAL);
    ev->seq = 0;
    assert_int_equal (audit_log_append_event_msg (fx->log, txn, ev, &index), BUS_EINVAL);
    ev->pub [0] = 0;
    ev->seq = 9;
    assert_int_equal (audit_log_append_event_msg (fx->log, txn, ev, &index), BUS_EINVAL);
    assert_int_equal (bus_txn_commit (&txn), 0);
    proto_msg_destroy (&ev);
}

/*  Sizes and indexes outside the log, empty and oversized entries. */
static void
test_limits (void **state)
{
    fixture_t *fx = *state;
    bus_txn_t *txn = bus_txn_begin (fx->store, true);
    uint64_t index;
    assert_int_equal (audit_log_append (fx->log, txn, "", 0, &index), BUS_EINVAL);
    char *big = calloc (1, AUDIT_ENTRY_MAX + 1);
    memset (big, 'a', AUDIT_ENTRY_MAX + 1);
    assert_int_equal (audit_log_append (fx->log, txn, big, AUDIT_ENTRY_MAX + 1, &index), BUS_EINVAL);
    assert_int_equal (audit_log_append (fx->log, txn, big, AUDIT_ENTRY_MAX, &index), 0);
    free (big);
    assert_int_equal (audit_log_append (fx->log, txn, "x", 1, &index), 0);
    assert_int_equal (bus_txn_commit (&txn), 0);
    txn = bus_txn_begin (fx->store, false);
    audit_hash_t path [AUDIT_PROOF_MAX], root;
    size_t n;
    assert_int_equal (audit_log_inclusion (fx->log, txn, 2, 2, path, &n), BUS_EINVAL);
    assert_int_equal (audit_log_inclusion (fx->log, txn, 0, 3, path, &n), BUS_EINVAL);
    assert_int_equal (audit_log_inclusion (fx->log, txn, 1, 2, path, &n), 0);
    assert_int_equal (audit_log_consistency (fx->log, txn, 0, 2, path, &n), BUS_EINVAL);
    assert_int_equal (audit_log_consistency (fx->log, txn, 2, 1, path, &n), BUS_EINVAL);
    assert_int_equal (audit_log_consistency (fx->log, txn, 1, 3, path, &n), BUS_EINVAL);
    assert_int_equal (audit_log_root (fx->log, txn, 3, root), BUS_EINVAL);
    assert_int_equal (audit_verify_inclusion (2, 2, root, path, 0, root), BUS_EINVAL);
    assert_int_equal (audit_verify_consistency (0, 2, root, root, path, 0), BUS_EINVAL);
    const void *entry;
    size_t len;
    assert_int_equal (audit_log_entry (fx->log, txn, 2, &entry, &len), BUS_ENOTFOUND);
    bus_txn_abort (&txn);
}

/*  The log survives reopening, and appends carry on from where it was. */
static void
test_reopen (void **state)
{
    fixture_t *fx = *state;
    audit_hash_t before, after;
    bus_txn_t *txn = bus_txn_begin (fx->store, true);
    uint64_t index;
    for (int i = 0; i < 13; i++)
        assert_int_equal (audit_log_append (fx->log, txn, "abc", 3, &index), 0);
    assert_int_equal (bus_txn_commit (&txn), 0);
    txn = bus_txn_begin (fx->store, false);
    assert_int_equal (audit_log_root (fx->log, txn, 13, before), 0);
    bus_txn_abort (&txn);
    audit_log_destroy (&fx->log);
    bus_store_destroy (&fx->store);
    assert_int_equal (bus_store_open (&fx->store, fx->path, 64 << 20, audit_log_db_names), 0);
    assert_int_equal (audit_log_new (&fx->log, fx->store), 0);
    txn = bus_txn_begin (fx->store, true);
    assert_int_equal (audit_log_root (fx->log, txn, 13, after), 0);
    assert_memory_equal (before, after, AUDIT_HASH_LEN);
    assert_int_equal (audit_log_append (fx->log, txn, "abc", 3, &index), 0);
    assert_int_equal (index, 13);
    assert_int_equal (bus_txn_commit (&txn), 0);
}

/*  A store without the log's databases is refused. */
static void
test_missing_databases (void **state)
{
    char dir [64], path [128];
    assert_int_equal (test_service_tmpdir (dir, sizeof dir, "test_audit_log"), 0);
    snprintf (path, sizeof path, "%s/db", dir);
    static const char *const dbs [] = { "audit_entries", NULL };
    bus_store_t *store = NULL;
    assert_int_equal (bus_store_open (&store, path, 0, dbs), 0);
    audit_log_t *log = (audit_log_t *) 1;
    assert_int_equal (audit_log_new (&log, store), BUS_ENOTFOUND);
    assert_null (log);
    bus_store_destroy (&store);
    test_service_rmtree (dir);
}

/* --- canonical JSON (RFC 8785) ------------------------------------------ */

static void
s_canon_is (const char *json, const char *want)
{
    json_error_t jerr;
    json_t *v = json_loads (json, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    assert_non_null (v);
    char *out = NULL;
    size_t len = 0;
    assert_int_equal (proto_canon (v, &out, &len, NULL, 0), 0);
    assert_string_equal (out, want);
    assert_int_equal (len, strlen (want));
    free (out);
    json_decref (v);
}

static void
test_canon (void **state)
{
    s_canon_is ("{ \"b\" : 1, \"a\" : [true, null, false, \"x\\n\\u0001\\u001f\\\"\\\\/é\"], \"c\": {}}",
                "{\"a\":[true,null,false,\"x\\n\\u0001\\u001f\\\"\\\\/é\"],\"b\":1,\"c\":{}}");
    /* JCS 3.2.3: keys sorted as UTF-16 code units (the emoji's high
       surrogate sorts before U+FB33) */
    s_canon_is ("{\"\\u20ac\":1,\"\\r\":2,\"\\ufb33\":3,\"1\":4,\"\\ud83d\\ude00\":5,\"\\u0080\":6,\"\\u00f6\":7}",
                "{\"\\r\":2,\"1\":4,\"\xc2\x80\":6,\"\xc3\xb6\":7,\"\xe2\x82\xac\":1,\"\xf0\x9f\x98\x80\":5,"
                "\"\xef\xac\xb3\":3}");
    /* JCS appendix B numbers (those within +-(2^53 - 1)) */
    s_canon_is ("[0.0, -0.0, 5e-324, 9007199254740991.0, 0.000001, 9.999999999999997e-7, 333333333.3333333,"
                " 1e-7, 0.1, 100.0, -1.5, 123456789012, 4503599627370495.5, 1.5e-300]",
                "[0,0,5e-324,9007199254740991,0.000001,9.999999999999997e-7,333333333.3333333,"
                "1e-7,0.1,100,-1.5,123456789012,4503599627370495.5,1.5e-300]");
    s_canon_is ("\"a\\u0000b\"", "\"a\\u0000b\"");

    /* integers past 2^53 - 1, and nesting past the limit, are refused */
    json_t *big = json_pack ("{s:I}", "n", (json_int_t) 9007199254740992LL);
    char *out = NULL, err [128] = "";
    size_t len;
    assert_int_equal (proto_canon (big, &out, &len, err, sizeof err), BUS_EINVAL);
    assert_non_null (strstr (err, "2^53"));
    assert_null (out);
    json_decref (big);
    /* so are numbers past it, which would print as digits nothing reads
       back (900719925474000000000: the fuzzer's find) */
    const char *too_big [] = { "[9007199254740992.0]", "[9.00719925474e20]", "[1e21]", "[-1.7976931348623157e308]" };
    for (size_t i = 0; i < sizeof too_big / sizeof too_big [0]; i++) {
        json_t *v = json_loads (too_big [i], 0, NULL);
        assert_non_null (v);
        assert_int_equal (proto_canon (v, &out, &len, err, sizeof err), BUS_EINVAL);
        assert_non_null (strstr (err, "2^53"));
        json_decref (v);
    }
    json_t *deep = json_array (), *at = deep;
    for (int i = 0; i < PROTO_CANON_DEPTH + 2; i++) {
        json_t *inner = json_array ();
        json_array_append_new (at, inner);
        at = inner;
    }
    assert_int_equal (proto_canon (deep, &out, &len, NULL, 0), BUS_EDEPTH);
    json_decref (deep);
}

int
main (void)
{
    if (sodium_init () < 0)
        return 1;
    const struct CMUnitTest tests [] = {
        cmocka_unit_test_setup_teardown (test_vector_hashes_and_roots, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_vector_inclusion, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_vector_consistency, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_every_proof_up_to_all_sizes, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_events_requests_gaps_once, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_keyed_requests, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_event_msg, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_limits, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_reopen, s_setup, s_teardown),
        cmocka_unit_test (test_missing_databases),
        cmocka_unit_test (test_canon),
    };
    return test_service_summary (sizeof tests / sizeof tests [0],
                                 cmocka_run_group_tests (tests, NULL, NULL));
}
