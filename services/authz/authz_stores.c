/*  authz_stores.c — the registry of OpenFGA stores (see the header). */
#include "authz_stores.h"
#include "authz_tuples.h"
#include "bus_error.h"
#include "proto_msg.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_ID_LEN PROTO_ID_LEN
#define S_RECLAIM_BATCH 256         /* keys collected per scan, then deleted */

/*  The 'N' key of number. */
static void
s_number_key (uint8_t key [1 + AUTHZ_STORE_PREFIX], uint32_t number)
{
    key [0] = AUTHZ_STORES_NUMBER;
    authz_store_prefix (number, key + 1);
}

/*  A 4-byte big-endian number. */
static uint32_t
s_u32 (const void *p)
{
    const uint8_t *b = p;
    return (uint32_t) b [0] << 24 | (uint32_t) b [1] << 16 | (uint32_t) b [2] << 8 | b [3];
}

/*  Is id a ULID's shape (26 of Crockford's base32)? */
static bool
s_id_ok (const char *id)
{
    return id && strlen (id) == S_ID_LEN
        && strspn (id, "0123456789ABCDEFGHJKMNPQRSTVWXYZ") == S_ID_LEN;
}

/*  Now as RFC 3339 UTC, as OpenFGA writes a store's times. */
static void
s_now (char out [32])
{
    time_t t = time (NULL);
    struct tm tm;
    gmtime_r (&t, &tm);
    strftime (out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/*  Store the record for number with state. */
static int
s_put_record (bus_txn_t *txn, int db, uint32_t number, char state, json_t *record)
{
    char *text = json_dumps (record, JSON_COMPACT);
    if (!text)
        return BUS_ENOMEM;
    size_t tl = strlen (text);
    char *val = malloc (tl + 1);
    int rc = BUS_ENOMEM;
    if (val) {
        val [0] = state;
        memcpy (val + 1, text, tl);
        uint8_t key [1 + AUTHZ_STORE_PREFIX];
        s_number_key (key, number);
        rc = bus_txn_put (txn, db, key, sizeof key, val, tl + 1);
    }
    free (val);
    free (text);
    return rc;
}

/*  Create a store; see the header. */
int
authz_stores_create (bus_txn_t *txn, int db, const char *name, const char *id,
                     json_t **record, uint32_t *number, authz_error_t *err)
{
    *record = NULL;
    size_t nl = name ? strlen (name) : 0;
    if (nl == 0 || nl > AUTHZ_STORE_NAME_MAX)
        return authz_error_set (err, AUTHZ_EVALIDATION,
                                "invalid CreateStoreRequest.Name: value length must be between 1 and %d bytes",
                                AUTHZ_STORE_NAME_MAX);
    for (size_t i = 0; i < nl; i++)
        if ((unsigned char) name [i] < 0x20 || name [i] == 0x7f)
            return authz_error_set (err, AUTHZ_EVALIDATION,
                                    "invalid CreateStoreRequest.Name: control characters are not allowed");
    char fresh [S_ID_LEN + 1];
    if (!id) {
        proto_ulid (fresh);
        id = fresh;
    }
    if (!s_id_ok (id))
        return authz_error_set (err, AUTHZ_EVALIDATION, "a store id is a ULID");
    const void *v;
    size_t vl;
    uint32_t high = 0;
    if (bus_txn_get (txn, db, "H", 1, &v, &vl) == 0 && vl == 4)
        high = s_u32 (v);
    if (high == UINT32_MAX - 1)
        return BUS_EFULL;
    uint32_t n = high + 1;
    char now [32];
    s_now (now);
    json_t *rec = json_pack ("{s:s, s:s, s:s, s:s}", "id", id, "name", name, "created_at", now,
                             "updated_at", now);
    if (!rec)
        return BUS_ENOMEM;
    uint8_t nk [AUTHZ_STORE_PREFIX], idk [1 + S_ID_LEN] = { AUTHZ_STORES_ID };
    authz_store_prefix (n, nk);
    memcpy (idk + 1, id, S_ID_LEN);
    int rc = bus_txn_put_new (txn, db, idk, sizeof idk, nk, sizeof nk);
    if (rc == BUS_EEXIST)
        rc = authz_error_set (err, AUTHZ_EVALIDATION, "store %s exists already", id);
    if (rc == 0)
        rc = bus_txn_put (txn, db, "H", 1, nk, sizeof nk);
    if (rc == 0)
        rc = s_put_record (txn, db, n, AUTHZ_STORES_LIVE, rec);
    if (rc) {
        json_decref (rec);
        return rc;
    }
    *record = rec;
    *number = n;
    return 0;
}

/*  A live store by id; see the header. */
int
authz_stores_get (bus_txn_t *txn, int db, const char *id, json_t **record, uint32_t *number)
{
    if (record)
        *record = NULL;
    if (!s_id_ok (id))
        return BUS_ENOTFOUND;
    uint8_t idk [1 + S_ID_LEN] = { AUTHZ_STORES_ID };
    memcpy (idk + 1, id, S_ID_LEN);
    const void *v;
    size_t vl;
    int rc = bus_txn_get (txn, db, idk, sizeof idk, &v, &vl);
    if (rc)
        return rc;
    if (vl != AUTHZ_STORE_PREFIX)
        return BUS_ENOTFOUND;
    *number = s_u32 (v);
    if (!record)
        return 0;
    uint8_t nk [1 + AUTHZ_STORE_PREFIX];
    s_number_key (nk, *number);
    rc = bus_txn_get (txn, db, nk, sizeof nk, &v, &vl);
    if (rc == 0 && (vl < 2 || ((const char *) v) [0] != AUTHZ_STORES_LIVE))
        rc = BUS_ENOTFOUND;
    if (rc == 0 && !(*record = json_loadb ((const char *) v + 1, vl - 1, 0, NULL)))
        rc = BUS_EIO;
    return rc;
}

/*  A page of the list. */
typedef struct {
    bus_txn_t *txn;
    int db;
    const char *name;
    size_t page;
    json_t *out;
    char last [S_ID_LEN + 1];
    bool more;
} s_list_t;

static int
s_list_one (const void *key, size_t key_len, const void *val, size_t val_len, void *arg)
{
    s_list_t *l = arg;
    if (key_len != 1 + S_ID_LEN || val_len != AUTHZ_STORE_PREFIX)
        return 0;
    if (json_array_size (l->out) == l->page) {
        l->more = true;
        return 1;
    }
    uint8_t nk [1 + AUTHZ_STORE_PREFIX];
    s_number_key (nk, s_u32 (val));
    const void *v;
    size_t vl;
    if (bus_txn_get (l->txn, l->db, nk, sizeof nk, &v, &vl) || vl < 2 || ((const char *) v) [0] != AUTHZ_STORES_LIVE)
        return 0;
    json_t *rec = json_loadb ((const char *) v + 1, vl - 1, 0, NULL);
    if (!rec)
        return BUS_EIO;
    const char *name = json_string_value (json_object_get (rec, "name"));
    if (l->name && (!name || strcmp (name, l->name))) {
        json_decref (rec);
        return 0;
    }
    json_array_append_new (l->out, rec);
    memcpy (l->last, (const char *) key + 1, S_ID_LEN);
    l->last [S_ID_LEN] = 0;
    return 0;
}

/*  Live stores, a page; see the header. */
int
authz_stores_list (bus_txn_t *txn, int db, const char *name, size_t page_size,
                   const char *token, json_t **stores, char **token_out, authz_error_t *err)
{
    *stores = NULL;
    *token_out = NULL;
    if (page_size == 0)
        page_size = AUTHZ_STORES_PAGE_DEFAULT;
    if (page_size > AUTHZ_STORES_PAGE_MAX)
        return authz_error_set (err, AUTHZ_EVALIDATION,
                                "invalid ListStoresRequest.PageSize: value must be inside range [1, %d]",
                                AUTHZ_STORES_PAGE_MAX);
    if (token && *token && !s_id_ok (token))
        return authz_error_set (err, AUTHZ_ETOKEN, "Invalid continuation token");
    s_list_t l = { .txn = txn, .db = db, .name = name && *name ? name : NULL, .page = page_size,
                   .out = json_array () };
    if (!l.out)
        return BUS_ENOMEM;
    /* from just after the token's id ('I' id plus a NUL sorts right after it) */
    uint8_t from [1 + S_ID_LEN + 1] = { AUTHZ_STORES_ID };
    size_t fl = 1;
    if (token && *token) {
        memcpy (from + 1, token, S_ID_LEN);
        fl = sizeof from;
    }
    uint8_t to [1] = { AUTHZ_STORES_ID + 1 };
    int rc = bus_txn_scan (txn, db, from, fl, to, 1, s_list_one, &l);
    if (rc == 0)
        *token_out = strdup (l.more ? l.last : "");
    if (rc == 0 && !*token_out)
        rc = BUS_ENOMEM;
    if (rc) {
        json_decref (l.out);
        return rc;
    }
    *stores = l.out;
    return 0;
}

/*  Delete a live store; see the header. */
int
authz_stores_delete (bus_txn_t *txn, int db, const char *id, uint32_t *number)
{
    json_t *rec = NULL;
    int rc = authz_stores_get (txn, db, id, &rec, number);
    if (rc)
        return rc;
    uint8_t idk [1 + S_ID_LEN] = { AUTHZ_STORES_ID };
    memcpy (idk + 1, id, S_ID_LEN);
    char now [32];
    s_now (now);
    json_object_set_new (rec, "deleted_at", json_string (now));
    rc = bus_txn_del (txn, db, idk, sizeof idk);
    if (rc == 0)
        rc = s_put_record (txn, db, *number, AUTHZ_STORES_DELETED, rec);
    json_decref (rec);
    return rc;
}

/*  The first deleted store. */
typedef struct {
    uint32_t number;
    bool found;
} s_dead_t;

static int
s_dead_one (const void *key, size_t key_len, const void *val, size_t val_len, void *arg)
{
    s_dead_t *d = arg;
    if (key_len != 1 + AUTHZ_STORE_PREFIX || val_len < 1 || ((const char *) val) [0] != AUTHZ_STORES_DELETED)
        return 0;
    d->number = s_u32 ((const char *) key + 1);
    d->found = true;
    return 1;
}

/*  Keys collected for deletion (copied: a scan's keys point into pages
    that deleting may change). */
typedef struct {
    char *keys [S_RECLAIM_BATCH];
    size_t lens [S_RECLAIM_BATCH];
    size_t n, max;
} s_batch_t;

static int
s_collect (const void *key, size_t key_len, const void *val, size_t val_len, void *arg)
{
    s_batch_t *b = arg;
    if (b->n == b->max)
        return 1;
    b->keys [b->n] = malloc (key_len);
    if (!b->keys [b->n])
        return BUS_ENOMEM;
    memcpy (b->keys [b->n], key, key_len);
    b->lens [b->n++] = key_len;
    return 0;
}

/*  Reclaim deleted stores' keys; see the header. */
int
authz_stores_reclaim (bus_txn_t *txn, int db, const int *dbs, size_t n_dbs, size_t max_keys,
                      authz_reclaim_fn *fn, void *arg, size_t *reclaimed, bool *more)
{
    *reclaimed = 0;
    *more = false;
    int rc = 0;
    while (rc == 0 && *reclaimed < max_keys) {
        s_dead_t dead = { 0 };
        uint8_t from [1] = { AUTHZ_STORES_NUMBER };
        rc = bus_txn_scan_prefix (txn, db, from, 1, s_dead_one, &dead);
        if (rc || !dead.found)
            break;
        uint8_t prefix [AUTHZ_STORE_PREFIX];
        authz_store_prefix (dead.number, prefix);
        bool left = false;
        for (size_t i = 0; rc == 0 && i < n_dbs && !left; i++) {
            s_batch_t b = { .max = max_keys - *reclaimed };
            if (b.max > S_RECLAIM_BATCH)
                b.max = S_RECLAIM_BATCH;
            rc = bus_txn_scan_prefix (txn, dbs [i], prefix, sizeof prefix, s_collect, &b);
            for (size_t k = 0; k < b.n; k++) {
                if (rc == 0) {
                    if (fn)
                        fn (txn, i, b.keys [k], b.lens [k], arg);
                    int drc = bus_txn_del (txn, dbs [i], b.keys [k], b.lens [k]);
                    if (drc && drc != BUS_ENOTFOUND)
                        rc = drc;
                }
                free (b.keys [k]);
            }
            *reclaimed += b.n;
            /* a full batch: this database may hold more of it */
            if (b.n == b.max)
                left = true;
        }
        if (rc == 0 && left) {
            *more = true;
            break;
        }
        if (rc == 0) {                  /* nothing of it left: its record goes */
            uint8_t nk [1 + AUTHZ_STORE_PREFIX];
            s_number_key (nk, dead.number);
            rc = bus_txn_del (txn, db, nk, sizeof nk);
        }
    }
    if (rc == 0 && !*more && *reclaimed >= max_keys) {
        s_dead_t dead = { 0 };
        uint8_t from [1] = { AUTHZ_STORES_NUMBER };
        rc = bus_txn_scan_prefix (txn, db, from, 1, s_dead_one, &dead);
        *more = dead.found;
    }
    return rc;
}

/*  Every live store. */
typedef struct {
    authz_stores_fn *fn;
    void *arg;
} s_each_t;

static int
s_each_one (const void *key, size_t key_len, const void *val, size_t val_len, void *arg)
{
    s_each_t *e = arg;
    if (key_len != 1 + AUTHZ_STORE_PREFIX || val_len < 2 || ((const char *) val) [0] != AUTHZ_STORES_LIVE)
        return 0;
    json_t *rec = json_loadb ((const char *) val + 1, val_len - 1, 0, NULL);
    if (!rec)
        return BUS_EIO;
    int rc = e->fn (rec, s_u32 ((const char *) key + 1), e->arg);
    json_decref (rec);
    return rc ? 1 : 0;
}

int
authz_stores_each (bus_txn_t *txn, int db, authz_stores_fn *fn, void *arg)
{
    s_each_t e = { fn, arg };
    uint8_t from [1] = { AUTHZ_STORES_NUMBER };
    return bus_txn_scan_prefix (txn, db, from, 1, s_each_one, &e);
}

/*  Keys written before stores (no prefix), copied out of a scan. */
typedef struct {
    uint8_t **pairs;              /* prefix, key, value */
    uint32_t number;
    size_t *key_len, *val_len;
    size_t n, cap;
} s_moves_t;

static int
s_move_one (const void *key, size_t key_len, const void *val, size_t val_len, void *arg)
{
    s_moves_t *m = arg;
    /* already under a store's number (an engine opened on this environment
       without the service, e.g. a tool or a bench, wrote it): stays. Old
       keys start with a type name or a ULID, never NUL, except the
       changelog's 8-byte sequence numbers; no prefixed key is 8 bytes. */
    if (key_len > 0 && ((const uint8_t *) key) [0] == 0 && key_len != 8)
        return 0;
    if (m->n == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 256;
        uint8_t **p = realloc (m->pairs, cap * sizeof *p);
        if (p)
            m->pairs = p;
        size_t *k = p ? realloc (m->key_len, cap * sizeof *k) : NULL;
        if (k)
            m->key_len = k;
        size_t *v = k ? realloc (m->val_len, cap * sizeof *v) : NULL;
        if (v)
            m->val_len = v;
        if (!v)
            return BUS_ENOMEM;
        m->cap = cap;
    }
    uint8_t *copy = malloc (AUTHZ_STORE_PREFIX + key_len + val_len);
    if (!copy)
        return BUS_ENOMEM;
    authz_store_prefix (m->number, copy);
    memcpy (copy + AUTHZ_STORE_PREFIX, key, key_len);
    memcpy (copy + AUTHZ_STORE_PREFIX + key_len, val, val_len);
    m->pairs [m->n] = copy;
    m->key_len [m->n] = key_len;
    m->val_len [m->n++] = val_len;
    return 0;
}

/*  Move every key of db under number's prefix; see the header. */
int
authz_stores_migrate (bus_txn_t *txn, int db, uint32_t number)
{
    s_moves_t m = { .number = number };
    int rc = bus_txn_scan (txn, db, NULL, 0, NULL, 0, s_move_one, &m);
    for (size_t i = 0; i < m.n; i++) {
        uint8_t *p = m.pairs [i];
        if (rc == 0)
            rc = bus_txn_del (txn, db, p + AUTHZ_STORE_PREFIX, m.key_len [i]);
        if (rc == 0)
            rc = bus_txn_put (txn, db, p, AUTHZ_STORE_PREFIX + m.key_len [i],
                              p + AUTHZ_STORE_PREFIX + m.key_len [i], m.val_len [i]);
        free (p);
    }
    free (m.pairs);
    free (m.key_len);
    free (m.val_len);
    return rc;
}
