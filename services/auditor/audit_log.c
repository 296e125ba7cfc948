/*  audit_log.c — the audit log in LMDB and its Merkle tree (audit_log.h). */
#include "audit_log.h"
#include "proto_canon.h"
#include "bus_error.h"

#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

const char *const audit_log_db_names [] = {
    "audit_entries", "audit_nodes", "audit_events", "audit_requests", NULL
};

struct audit_log_t {
    int entries, nodes, events, requests;     /* database handles */
};

int
audit_log_new (audit_log_t **out, bus_store_t *store)
{
    *out = NULL;
    audit_log_t *self = calloc (1, sizeof *self);
    if (!self)
        return BUS_ENOMEM;
    self->entries = bus_store_db (store, "audit_entries");
    self->nodes = bus_store_db (store, "audit_nodes");
    self->events = bus_store_db (store, "audit_events");
    self->requests = bus_store_db (store, "audit_requests");
    if (self->entries < 0 || self->nodes < 0 || self->events < 0 || self->requests < 0) {
        free (self);
        return BUS_ENOTFOUND;
    }
    *out = self;
    return 0;
}

void
audit_log_destroy (audit_log_t **self_p)
{
    if (self_p && *self_p) {
        free (*self_p);
        *self_p = NULL;
    }
}

/*  The key of a subtree: level, then its index at that level. */
static void
s_node_key (uint8_t key [9], unsigned level, uint64_t index)
{
    key [0] = (uint8_t) level;
    bus_u64_to_key (index, key + 1);
}

/*  The stored hash of the complete subtree of 2^level leaves starting at
    leaf start (a multiple of 2^level). */
static int
s_node (audit_log_t *self, bus_txn_t *txn, unsigned level, uint64_t start, audit_hash_t out)
{
    uint8_t key [9];
    const void *val;
    size_t len;
    s_node_key (key, level, start >> level);
    int rc = bus_txn_get (txn, self->nodes, key, sizeof key, &val, &len);
    if (rc == BUS_ENOTFOUND || (rc == 0 && len != AUDIT_HASH_LEN))
        return BUS_ESTATE;          /* the log says it has this subtree */
    if (rc == 0)
        memcpy (out, val, AUDIT_HASH_LEN);
    return rc;
}

/*  The root of the n leaves from start (n >= 1; start a multiple of the
    smallest power of two >= n, which every range the RFC's recursion
    visits is): a stored subtree, or a stored left subtree and the rest. */
static int
s_range (audit_log_t *self, bus_txn_t *txn, uint64_t start, uint64_t n, audit_hash_t out)
{
    if ((n & (n - 1)) == 0)
        return s_node (self, txn, (unsigned) __builtin_ctzll (n), start, out);
    uint64_t k = audit_split (n);
    audit_hash_t left;
    int rc = s_node (self, txn, (unsigned) __builtin_ctzll (k), start, left);
    if (rc == 0)
        rc = s_range (self, txn, start + k, n - k, out);
    if (rc == 0)
        audit_node_hash (out, left, out);
    return rc;
}

int
audit_log_size (audit_log_t *self, bus_txn_t *txn, uint64_t *size)
{
    const void *key, *val;
    size_t key_len, val_len;
    int rc = bus_txn_last (txn, self->entries, &key, &key_len, &val, &val_len);
    *size = 0;
    if (rc == BUS_ENOTFOUND)
        return 0;
    if (rc)
        return rc;
    if (key_len != 8)
        return BUS_ESTATE;
    *size = bus_key_to_u64 (key) + 1;
    return 0;
}

int
audit_log_append (audit_log_t *self, bus_txn_t *txn, const void *entry, size_t len, uint64_t *index)
{
    if (!entry || len == 0 || len > AUDIT_ENTRY_MAX)
        return BUS_EINVAL;
    uint64_t n;
    int rc = audit_log_size (self, txn, &n);
    if (rc)
        return rc;
    uint8_t ikey [8], nkey [9];
    bus_u64_to_key (n, ikey);
    rc = bus_txn_put_new (txn, self->entries, ikey, sizeof ikey, entry, len);
    if (rc)
        return rc == BUS_EEXIST ? BUS_ESTATE : rc;
    /* the leaf, then each subtree it completes: at level l + 1 when the
       leaves so far fill it */
    audit_hash_t h;
    audit_leaf_hash (h, entry, len);
    s_node_key (nkey, 0, n);
    rc = bus_txn_put (txn, self->nodes, nkey, sizeof nkey, h, sizeof h);
    for (unsigned level = 0; rc == 0 && ((n + 1) & ((UINT64_C (2) << level) - 1)) == 0; level++) {
        audit_hash_t left;
        uint64_t at = n >> level;             /* h is the node at (level, at), a right child */
        rc = s_node (self, txn, level, (at - 1) << level, left);
        if (rc)
            break;
        audit_node_hash (h, left, h);
        s_node_key (nkey, level + 1, at >> 1);
        rc = bus_txn_put (txn, self->nodes, nkey, sizeof nkey, h, sizeof h);
    }
    if (rc) {
        bus_txn_fail (txn, rc);
        return rc;
    }
    *index = n;
    return 0;
}

/*  name + NUL + suffix, the key of an event or a request. */
static int
s_pair_key (uint8_t *key, size_t cap, const char *name, const void *suffix, size_t suffix_len,
            size_t *key_len)
{
    size_t n = name ? strlen (name) : 0;
    if (n == 0 || n > AUDIT_PUB_MAX || n + 1 + suffix_len > cap)
        return BUS_EINVAL;
    memcpy (key, name, n + 1);
    memcpy (key + n + 1, suffix, suffix_len);
    *key_len = n + 1 + suffix_len;
    return 0;
}

/*  Append entry unless key is already in db (then BUS_EEXIST, its index). */
static int
s_append_once (audit_log_t *self, bus_txn_t *txn, int db, const uint8_t *key, size_t key_len,
               const void *entry, size_t len, uint64_t *index)
{
    const void *val;
    size_t val_len;
    int rc = bus_txn_get (txn, db, key, key_len, &val, &val_len);
    if (rc == 0 && val_len == 8) {
        *index = bus_key_to_u64 (val);
        return BUS_EEXIST;
    }
    if (rc != BUS_ENOTFOUND)
        return rc ? rc : BUS_ESTATE;
    rc = audit_log_append (self, txn, entry, len, index);
    if (rc)
        return rc;
    uint8_t ival [8];
    bus_u64_to_key (*index, ival);
    return bus_txn_put (txn, db, key, key_len, ival, sizeof ival);
}

/*  The leaf index stored under key in db (audit_events, audit_requests). */
static int
s_index_get (bus_txn_t *txn, int db, const uint8_t *key, size_t key_len, uint64_t *index)
{
    const void *val;
    size_t val_len;
    int rc = bus_txn_get (txn, db, key, key_len, &val, &val_len);
    if (rc == 0 && val_len != 8)
        rc = BUS_ESTATE;
    if (rc == 0)
        *index = bus_key_to_u64 (val);
    return rc;
}

/*  The key of request (principal, request_id) in audit_requests. */
static int
s_request_key (uint8_t key [AUDIT_PUB_MAX + 1 + 64], const char *principal, const char *request_id,
               size_t *key_len)
{
    size_t id_len = request_id ? strlen (request_id) : 0;
    if (id_len == 0 || id_len > 64
        || s_pair_key (key, AUDIT_PUB_MAX + 1 + 64, principal, request_id, id_len, key_len))
        return BUS_EINVAL;
    return 0;
}

int
audit_log_append_request (audit_log_t *self, bus_txn_t *txn, const char *principal,
                          const char *request_id, const void *entry, size_t len, uint64_t *index)
{
    uint8_t key [AUDIT_PUB_MAX + 1 + 64];
    size_t key_len;
    int rc = s_request_key (key, principal, request_id, &key_len);
    return rc ? rc : s_append_once (self, txn, self->requests, key, key_len, entry, len, index);
}

int
audit_log_append_keyed (audit_log_t *self, bus_txn_t *txn, const char *principal, const char *idem_key,
                        const char *request_id, const void *tag, size_t tag_len, const void *entry, size_t len,
                        uint64_t *index)
{
    uint8_t key [AUDIT_PUB_MAX + 1 + 64], val [8 + AUDIT_REQUEST_TAG_MAX];
    size_t key_len;
    if (tag_len > AUDIT_REQUEST_TAG_MAX)
        return BUS_EINVAL;
    int rc = s_request_key (key, principal, idem_key, &key_len);
    if (rc == 0)
        rc = s_append_once (self, txn, self->requests, key, key_len, entry, len, index);
    if (rc && rc != BUS_EEXIST)
        return rc;
    int found = rc;
    rc = s_request_key (key, principal, request_id, &key_len);
    if (rc)
        return rc;
    bus_u64_to_key (*index, val);
    memcpy (val + 8, tag, tag_len);
    rc = bus_txn_put_new (txn, self->requests, key, key_len, val, 8 + tag_len);
    return rc == BUS_EEXIST || rc == 0 ? found : rc;      /* an id recorded before stays */
}

int
audit_log_request_get (audit_log_t *self, bus_txn_t *txn, const char *principal, const char *request_id,
                       uint64_t *index, const void **tag, size_t *tag_len)
{
    uint8_t key [AUDIT_PUB_MAX + 1 + 64];
    size_t key_len;
    const void *val;
    size_t val_len;
    int rc = s_request_key (key, principal, request_id, &key_len);
    if (rc == 0)
        rc = bus_txn_get (txn, self->requests, key, key_len, &val, &val_len);
    if (rc == 0 && (val_len < 8 || val_len > 8 + AUDIT_REQUEST_TAG_MAX))
        rc = BUS_ESTATE;
    if (rc)
        return rc;
    *index = bus_key_to_u64 (val);
    if (tag)
        *tag = val_len > 8 ? (const uint8_t *) val + 8 : NULL;
    if (tag_len)
        *tag_len = val_len - 8;
    return 0;
}

int
audit_log_request_index (audit_log_t *self, bus_txn_t *txn, const char *principal, const char *request_id,
                         uint64_t *index)
{
    return audit_log_request_get (self, txn, principal, request_id, index, NULL, NULL);
}

int
audit_log_append_event (audit_log_t *self, bus_txn_t *txn, const char *pub, uint64_t seq,
                        const void *entry, size_t len, uint64_t *index)
{
    uint8_t key [AUDIT_PUB_MAX + 1 + 8], sk [8];
    size_t key_len;
    bus_u64_to_key (seq, sk);
    if (seq == 0 || s_pair_key (key, sizeof key, pub, sk, sizeof sk, &key_len))
        return BUS_EINVAL;
    return s_append_once (self, txn, self->events, key, key_len, entry, len, index);
}

int
audit_log_append_event_msg (audit_log_t *self, bus_txn_t *txn, const proto_msg_t *event, uint64_t *index)
{
    if (!event || !*event->pub || event->seq == 0 || event->seq > (uint64_t) PROTO_CANON_INT_MAX)
        return BUS_EINVAL;
    json_t *entry = json_pack ("{s:s, s:s, s:I, s:s, s:s, s:I, s:O}", "kind", "event", "pub", event->pub,
                               "seq", (json_int_t) event->seq, "type", event->type, "id", event->id,
                               "ts", (json_int_t) event->ts, "body", event->body ? event->body : json_null ());
    if (entry && *event->traceparent)
        json_object_set_new (entry, "traceparent", json_string (event->traceparent));
    char *text = NULL;
    size_t len = 0;
    int rc = entry ? proto_canon (entry, &text, &len, NULL, 0) : BUS_ENOMEM;
    json_decref (entry);
    if (rc == 0)
        rc = audit_log_append_event (self, txn, event->pub, event->seq, text, len, index);
    free (text);
    return rc == BUS_EDEPTH ? BUS_EINVAL : rc;
}

int
audit_log_append_gap (audit_log_t *self, bus_txn_t *txn, const char *pub, uint64_t from_seq,
                      uint64_t to_seq, int64_t ts, uint64_t *index)
{
    if (from_seq == 0 || to_seq < from_seq || to_seq > (uint64_t) PROTO_CANON_INT_MAX)
        return BUS_EINVAL;
    json_t *gap = json_pack ("{s:s, s:s?, s:I, s:I, s:I}", "kind", "gap", "pub", pub,
                             "from_seq", (json_int_t) from_seq, "to_seq", (json_int_t) to_seq,
                             "ts", (json_int_t) ts);
    char *text = NULL;
    size_t len = 0;
    int rc = gap ? proto_canon (gap, &text, &len, NULL, 0) : BUS_ENOMEM;
    json_decref (gap);
    if (rc == 0)
        rc = audit_log_append_event (self, txn, pub, from_seq, text, len, index);
    free (text);
    return rc;
}

int
audit_log_event_index (audit_log_t *self, bus_txn_t *txn, const char *pub, uint64_t seq, uint64_t *index)
{
    uint8_t key [AUDIT_PUB_MAX + 1 + 8], sk [8];
    size_t key_len;
    bus_u64_to_key (seq, sk);
    if (s_pair_key (key, sizeof key, pub, sk, sizeof sk, &key_len))
        return BUS_EINVAL;
    return s_index_get (txn, self->events, key, key_len, index);
}

int
audit_log_entry (audit_log_t *self, bus_txn_t *txn, uint64_t index, const void **entry, size_t *len)
{
    uint8_t key [8];
    bus_u64_to_key (index, key);
    return bus_txn_get (txn, self->entries, key, sizeof key, entry, len);
}

int
audit_log_leaf (audit_log_t *self, bus_txn_t *txn, uint64_t index, audit_hash_t out)
{
    uint64_t size;
    int rc = audit_log_size (self, txn, &size);
    if (rc == 0 && index >= size)
        rc = BUS_ENOTFOUND;
    return rc ? rc : s_node (self, txn, 0, index, out);
}

int
audit_log_root (audit_log_t *self, bus_txn_t *txn, uint64_t size, audit_hash_t root)
{
    uint64_t have;
    int rc = audit_log_size (self, txn, &have);
    if (rc)
        return rc;
    if (size > have)
        return BUS_EINVAL;
    if (size == 0) {
        crypto_hash_sha256 (root, (const unsigned char *) "", 0);
        return 0;
    }
    return s_range (self, txn, 0, size, root);
}

/*  PATH (m, D[start : start + n]) of RFC 6962 2.1.1, appended to path. */
static int
s_path (audit_log_t *self, bus_txn_t *txn, uint64_t m, uint64_t start, uint64_t n,
        audit_hash_t *path, size_t *len)
{
    if (n == 1)
        return 0;
    uint64_t k = audit_split (n);
    int rc = m < k ? s_path (self, txn, m, start, k, path, len)
                   : s_path (self, txn, m - k, start + k, n - k, path, len);
    if (rc)
        return rc;
    if (*len >= AUDIT_PROOF_MAX)
        return BUS_EINVAL;
    rc = m < k ? s_range (self, txn, start + k, n - k, path [*len])
               : s_range (self, txn, start, k, path [*len]);
    if (rc == 0)
        (*len)++;
    return rc;
}

int
audit_log_inclusion (audit_log_t *self, bus_txn_t *txn, uint64_t index, uint64_t size,
                     audit_hash_t path [AUDIT_PROOF_MAX], size_t *path_len)
{
    uint64_t have;
    *path_len = 0;
    int rc = audit_log_size (self, txn, &have);
    if (rc)
        return rc;
    if (index >= size || size > have)
        return BUS_EINVAL;
    return s_path (self, txn, index, 0, size, path, path_len);
}

/*  SUBPROOF (m, D[start : start + n], b) of RFC 6962 2.1.2. */
static int
s_subproof (audit_log_t *self, bus_txn_t *txn, uint64_t m, uint64_t start, uint64_t n, bool b,
            audit_hash_t *path, size_t *len)
{
    int rc = 0;
    if (m == n) {
        if (b)
            return 0;
        if (*len >= AUDIT_PROOF_MAX)
            return BUS_EINVAL;
        rc = s_range (self, txn, start, n, path [*len]);
        if (rc == 0)
            (*len)++;
        return rc;
    }
    uint64_t k = audit_split (n);
    rc = m <= k ? s_subproof (self, txn, m, start, k, b, path, len)
                : s_subproof (self, txn, m - k, start + k, n - k, false, path, len);
    if (rc)
        return rc;
    if (*len >= AUDIT_PROOF_MAX)
        return BUS_EINVAL;
    rc = m <= k ? s_range (self, txn, start + k, n - k, path [*len])
                : s_range (self, txn, start, k, path [*len]);
    if (rc == 0)
        (*len)++;
    return rc;
}

int
audit_log_consistency (audit_log_t *self, bus_txn_t *txn, uint64_t old_size, uint64_t new_size,
                       audit_hash_t path [AUDIT_PROOF_MAX], size_t *path_len)
{
    uint64_t have;
    *path_len = 0;
    int rc = audit_log_size (self, txn, &have);
    if (rc)
        return rc;
    if (old_size == 0 || old_size > new_size || new_size > have)
        return BUS_EINVAL;
    if (old_size == new_size)
        return 0;
    return s_subproof (self, txn, old_size, 0, new_size, true, path, path_len);
}
