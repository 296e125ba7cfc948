/*  bus_dedupe.c — remembered replies (memory, bounded per principal) and
    recorded outcomes (durable, in the effect's transaction). See
    bus_dedupe.h. */
#include "bus_dedupe.h"
#include "bus_error.h"
#include "bus_log.h"

#include <czmq.h>
#include <sodium.h>
#include <string.h>

#define S_ENTRY_OVERHEAD  160       /* bytes an entry costs beside its reply and key */
#define S_RECORD_VERSION  1
#define S_RECORD_HEAD     (1 + BUS_DEDUPE_HASH_LEN + 8)   /* version, hash, expiry */
#define S_KEY_MAX         256       /* principal/id */

typedef struct s_principal_t s_principal_t;

typedef struct {
    char *key;                    /* "principal/id" */
    s_principal_t *owner;
    uint8_t hash [BUS_DEDUPE_HASH_LEN];
    uint8_t *data;                /* the encoded reply; NULL while waiting */
    size_t len;
    size_t cost;                  /* what it counts against the bounds */
    int64_t expires_ms;
    void *in_owner;               /* handle in owner->order */
    void *in_all;                 /* handle in self->order */
} s_entry_t;

struct s_principal_t {
    char *name;
    size_t bytes, count;
    zlistx_t *order;              /* its entries, oldest first */
};

struct bus_dedupe_t {
    bus_dedupe_limits_t limits;
    zhashx_t *entries;            /* key -> s_entry_t */
    zhashx_t *principals;         /* name -> s_principal_t */
    zlistx_t *order;              /* every entry, oldest first */
    size_t bytes, count;
    uint64_t evicted;
};

/*  The hash's text is jansson's json_dumps (body, JSON_COMPACT |
    JSON_SORT_KEYS | JSON_ENCODE_ANY): recorded outcomes keep the hash, so
    its text may not change. Written here, without jansson's sorting and
    buffers, for the bodies nearly every request has (objects, arrays,
    integers, true, false, null, strings of printable ASCII, in which
    json_dumps escapes `"` and `\` only; keys so plain compare as json_dumps
    sorts them); for anything else (a real, a string with another byte:
    its escapes and UTF-8 checks are jansson's) false, and the caller
    hashes json_dumps' own text. */
#define S_HASH_BUF    512
#define S_HASH_DEPTH  32
#define S_HASH_KEYS   32            /* members sorted on the stack, at most */

typedef struct {
    crypto_generichash_state *state;
    uint8_t buf [S_HASH_BUF];
    size_t len;
} s_hash_text_t;

static void
s_hash_put (s_hash_text_t *t, const char *s, size_t n)
{
    if (t->len + n > sizeof t->buf) {
        crypto_generichash_update (t->state, t->buf, t->len);
        t->len = 0;
        if (n > sizeof t->buf) {
            crypto_generichash_update (t->state, (const uint8_t *) s, n);
            return;
        }
    }
    memcpy (t->buf + t->len, s, n);
    t->len += n;
}

/*  A string as json_dumps writes it, if it is plain printable ASCII. */
static bool
s_hash_string (s_hash_text_t *t, const char *s, size_t n)
{
    s_hash_put (t, "\"", 1);
    size_t from = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char) s [i];
        if (c < 0x20 || c > 0x7e)
            return false;
        if (c == '"' || c == '\\') {
            s_hash_put (t, s + from, i - from);
            s_hash_put (t, c == '"' ? "\\\"" : "\\\\", 2);
            from = i + 1;
        }
    }
    s_hash_put (t, s + from, n - from);
    s_hash_put (t, "\"", 1);
    return true;
}

static int
s_hash_key_cmp (const void *a, const void *b)
{
    return strcmp (*(const char *const *) a, *(const char *const *) b);
}

static bool
s_hash_value (s_hash_text_t *t, json_t *v, int depth)
{
    if (depth > S_HASH_DEPTH)
        return false;
    switch (json_typeof (v)) {
        case JSON_NULL:  s_hash_put (t, "null", 4); return true;
        case JSON_TRUE:  s_hash_put (t, "true", 4); return true;
        case JSON_FALSE: s_hash_put (t, "false", 5); return true;
        case JSON_REAL:  return false;
        case JSON_INTEGER: {
            char tmp [32];
            int n = snprintf (tmp, sizeof tmp, "%" JSON_INTEGER_FORMAT, json_integer_value (v));
            s_hash_put (t, tmp, (size_t) n);
            return true;
        }
        case JSON_STRING:
            return s_hash_string (t, json_string_value (v), json_string_length (v));
        case JSON_ARRAY: {
            s_hash_put (t, "[", 1);
            for (size_t i = 0; i < json_array_size (v); i++) {
                if (i)
                    s_hash_put (t, ",", 1);
                if (!s_hash_value (t, json_array_get (v, i), depth + 1))
                    return false;
            }
            s_hash_put (t, "]", 1);
            return true;
        }
        case JSON_OBJECT: {
            const char *keys [S_HASH_KEYS], *key;
            size_t n = 0, key_len;
            json_t *member;
            if (json_object_size (v) > S_HASH_KEYS)
                return false;
            json_object_keylen_foreach (v, key, key_len, member) {
                if (strlen (key) != key_len)
                    return false;           /* a NUL inside: json_dumps' own order */
                keys [n++] = key;
            }
            qsort (keys, n, sizeof *keys, s_hash_key_cmp);
            s_hash_put (t, "{", 1);
            for (size_t i = 0; i < n; i++) {
                if (i)
                    s_hash_put (t, ",", 1);
                if (!s_hash_string (t, keys [i], strlen (keys [i])))
                    return false;
                s_hash_put (t, ":", 1);
                if (!s_hash_value (t, json_object_get (v, keys [i]), depth + 1))
                    return false;
            }
            s_hash_put (t, "}", 1);
            return true;
        }
    }
    return false;
}

void
bus_dedupe_hash (uint8_t out [BUS_DEDUPE_HASH_LEN], const char *type, json_t *body)
{
    crypto_generichash_state state;
    crypto_generichash_init (&state, NULL, 0, BUS_DEDUPE_HASH_LEN);
    crypto_generichash_update (&state, (const uint8_t *) type, strlen (type) + 1);
    s_hash_text_t text = { .state = &state };
    if (body && s_hash_value (&text, body, 0)) {
        crypto_generichash_update (&state, text.buf, text.len);
        crypto_generichash_final (&state, out, BUS_DEDUPE_HASH_LEN);
        return;
    }
    /* not plain: jansson's own text, from the type again */
    crypto_generichash_init (&state, NULL, 0, BUS_DEDUPE_HASH_LEN);
    crypto_generichash_update (&state, (const uint8_t *) type, strlen (type) + 1);
    char *dumped = body ? json_dumps (body, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
    if (dumped) {
        crypto_generichash_update (&state, (const uint8_t *) dumped, strlen (dumped));
        free (dumped);
    }
    crypto_generichash_final (&state, out, BUS_DEDUPE_HASH_LEN);
}

/* --- memory --------------------------------------------------------------- */

static void
s_principal_free (void **item)
{
    s_principal_t *p = *item;
    if (p) {
        zlistx_destroy (&p->order);
        free (p->name);
        free (p);
        *item = NULL;
    }
}

bus_dedupe_t *
bus_dedupe_new (const bus_dedupe_limits_t *limits)
{
    bus_dedupe_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->limits = *limits;
    self->entries = zhashx_new ();
    self->principals = zhashx_new ();
    self->order = zlistx_new ();
    if (!self->entries || !self->principals || !self->order) {
        bus_dedupe_destroy (&self);
        return NULL;
    }
    /* an entry is keyed by its own key (freed after it leaves the table) */
    zhashx_set_key_duplicator (self->entries, NULL);
    zhashx_set_key_destructor (self->entries, NULL);
    zhashx_set_destructor (self->principals, s_principal_free);
    return self;
}

static void
s_entry_free (s_entry_t *e)
{
    if (e) {
        free (e->key);
        free (e->data);
        free (e);
    }
}

void
bus_dedupe_destroy (bus_dedupe_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    bus_dedupe_t *self = *self_p;
    if (self->order)
        for (s_entry_t *e = zlistx_first (self->order); e; e = zlistx_next (self->order))
            s_entry_free (e);
    zlistx_destroy (&self->order);
    zhashx_destroy (&self->entries);
    zhashx_destroy (&self->principals);
    free (self);
    *self_p = NULL;
}

/*  "principal/id" into key; false when it does not fit. */
static bool
s_key (char key [S_KEY_MAX], const char *principal, const char *id)
{
    int n = snprintf (key, S_KEY_MAX, "%s/%s", principal, id);
    return n > 0 && n < S_KEY_MAX;
}

/*  Forget one entry. */
static void
s_remove (bus_dedupe_t *self, s_entry_t *e)
{
    s_principal_t *p = e->owner;
    zhashx_delete (self->entries, e->key);
    zlistx_delete (self->order, e->in_all);
    zlistx_delete (p->order, e->in_owner);
    p->bytes -= e->cost;
    p->count--;
    self->bytes -= e->cost;
    self->count--;
    s_entry_free (e);
    if (p->count == 0)
        zhashx_delete (self->principals, p->name);
}

/*  The oldest entry of p that holds a reply (waiting ones are not
    evicted), or NULL. */
static s_entry_t *
s_evictable (s_principal_t *p)
{
    for (s_entry_t *e = zlistx_first (p->order); e; e = zlistx_next (p->order))
        if (e->data)
            return e;
    return NULL;
}

/*  Evict until p is within its share, then until the whole is within
    its bounds (from whoever holds the most). */
static void
s_bound (bus_dedupe_t *self, s_principal_t *p)
{
    const bus_dedupe_limits_t *l = &self->limits;
    while (p && (p->bytes > l->principal_bytes || p->count > l->principal_entries)) {
        s_entry_t *e = s_evictable (p);
        if (!e)
            break;
        bool last = p->count == 1;
        s_remove (self, e);
        self->evicted++;
        if (last)
            p = NULL;               /* freed with its last entry */
    }
    while (self->bytes > l->max_bytes || self->count > l->max_entries) {
        bool by_bytes = self->bytes > l->max_bytes;
        s_principal_t *heaviest = NULL;
        s_entry_t *victim = NULL;
        for (s_principal_t *q = zhashx_first (self->principals); q; q = zhashx_next (self->principals)) {
            if (heaviest && (by_bytes ? q->bytes <= heaviest->bytes : q->count <= heaviest->count))
                continue;
            s_entry_t *e = s_evictable (q);
            if (e) {
                heaviest = q;
                victim = e;
            }
        }
        if (!victim)
            break;
        s_remove (self, victim);
        self->evicted++;
    }
}

bus_dedupe_found_t
bus_dedupe_lookup (bus_dedupe_t *self, const char *principal, const char *id,
                   const uint8_t hash [BUS_DEDUPE_HASH_LEN], const uint8_t **data, size_t *len)
{
    char key [S_KEY_MAX];
    s_entry_t *e = s_key (key, principal, id) ? zhashx_lookup (self->entries, key) : NULL;
    if (!e)
        return BUS_DEDUPE_NONE;
    if (sodium_memcmp (e->hash, hash, BUS_DEDUPE_HASH_LEN))
        return BUS_DEDUPE_CONFLICT;
    if (!e->data)
        return BUS_DEDUPE_WAITING;
    *data = e->data;
    *len = e->len;
    return BUS_DEDUPE_REPLY;
}

int
bus_dedupe_put (bus_dedupe_t *self, const char *principal, const char *id,
                const uint8_t hash [BUS_DEDUPE_HASH_LEN], const uint8_t *data, size_t len,
                int64_t now_ms)
{
    char key [S_KEY_MAX];
    if (!s_key (key, principal, id))
        return BUS_EINVAL;
    s_entry_t *old = zhashx_lookup (self->entries, key);
    if (old)
        s_remove (self, old);
    size_t cost = S_ENTRY_OVERHEAD + strlen (key) + (data ? len : 0);
    if (cost > self->limits.principal_bytes || cost > self->limits.max_bytes)
        return 0;                   /* too large to keep in memory */
    s_principal_t *p = zhashx_lookup (self->principals, principal);
    if (!p) {
        p = calloc (1, sizeof *p);
        if (!p)
            return BUS_ENOMEM;
        p->name = strdup (principal);
        p->order = zlistx_new ();
        if (!p->name || !p->order) {
            s_principal_free ((void **) &p);
            return BUS_ENOMEM;
        }
        zhashx_insert (self->principals, principal, p);
    }
    s_entry_t *e = calloc (1, sizeof *e);
    if (e) {
        e->key = strdup (key);
        e->data = data ? malloc (len ? len : 1) : NULL;
    }
    if (!e || !e->key || (data && !e->data)) {
        s_entry_free (e);
        if (p->count == 0)
            zhashx_delete (self->principals, principal);
        return BUS_ENOMEM;
    }
    if (data) {
        memcpy (e->data, data, len);
        e->len = len;
    }
    memcpy (e->hash, hash, BUS_DEDUPE_HASH_LEN);
    e->owner = p;
    e->cost = cost;
    e->expires_ms = now_ms + self->limits.ttl_ms;
    e->in_owner = zlistx_add_end (p->order, e);
    e->in_all = zlistx_add_end (self->order, e);
    zhashx_insert (self->entries, e->key, e);
    p->bytes += cost;
    p->count++;
    self->bytes += cost;
    self->count++;
    s_bound (self, p);
    return 0;
}

int
bus_dedupe_reply (bus_dedupe_t *self, const char *principal, const char *id,
                  const uint8_t *data, size_t len, int64_t now_ms)
{
    char key [S_KEY_MAX];
    s_entry_t *e = s_key (key, principal, id) ? zhashx_lookup (self->entries, key) : NULL;
    if (!e)
        return BUS_ENOTFOUND;
    /* its reply in place: its cost changes, and it becomes the newest */
    s_principal_t *p = e->owner;
    size_t cost = S_ENTRY_OVERHEAD + strlen (e->key) + (data ? len : 0);
    uint8_t *copy = data ? malloc (len ? len : 1) : NULL;
    if (cost > self->limits.principal_bytes || cost > self->limits.max_bytes || (data && !copy)) {
        free (copy);
        s_remove (self, e);         /* too large to keep in memory (or no memory): forgotten */
        return copy || !data ? 0 : BUS_ENOMEM;
    }
    if (data)
        memcpy (copy, data, len);
    free (e->data);
    e->data = copy;
    e->len = data ? len : 0;
    p->bytes += cost - e->cost;
    self->bytes += cost - e->cost;
    e->cost = cost;
    e->expires_ms = now_ms + self->limits.ttl_ms;
    zlistx_move_end (p->order, e->in_owner);
    zlistx_move_end (self->order, e->in_all);
    s_bound (self, p);
    return 0;
}

void
bus_dedupe_trim (bus_dedupe_t *self, int64_t now_ms)
{
    for (s_entry_t *e = zlistx_first (self->order); e; e = zlistx_first (self->order)) {
        if (e->expires_ms > now_ms)
            break;                  /* the oldest is still wanted: so is what follows */
        s_remove (self, e);
    }
}

size_t
bus_dedupe_size (bus_dedupe_t *self, const char *principal)
{
    if (!principal)
        return self->count;
    s_principal_t *p = zhashx_lookup (self->principals, principal);
    return p ? p->count : 0;
}

size_t
bus_dedupe_bytes (bus_dedupe_t *self, const char *principal)
{
    if (!principal)
        return self->bytes;
    s_principal_t *p = zhashx_lookup (self->principals, principal);
    return p ? p->bytes : 0;
}

uint64_t
bus_dedupe_evicted (bus_dedupe_t *self)
{
    return self->evicted;
}

/* --- durable -------------------------------------------------------------- */

/*  The time index key: expiry (u64 BE) then the record's key. */
static size_t
s_time_key (uint8_t out [8 + S_KEY_MAX], int64_t expires_us, const char *key, size_t key_len)
{
    bus_u64_to_key ((uint64_t) expires_us, out);
    memcpy (out + 8, key, key_len);
    return 8 + key_len;
}

/*  The bytes of usage key (a principal, or "*") in txn. */
static uint64_t
s_usage_get (bus_txn_t *txn, int usage_db, const char *who)
{
    const void *val;
    size_t val_len;
    if (bus_txn_get (txn, usage_db, who, strlen (who), &val, &val_len) || val_len != 8)
        return 0;
    return bus_key_to_u64 (val);
}

/*  Add delta (may be negative) to the usage of who and of everyone. */
static int
s_usage_add (bus_txn_t *txn, int usage_db, const char *who, int64_t delta)
{
    static const char *const all = "*";
    const char *keys [2] = { who, all };
    int rc = 0;
    for (int i = 0; rc == 0 && i < 2; i++) {
        uint64_t now = s_usage_get (txn, usage_db, keys [i]);
        uint64_t next = delta < 0 && (uint64_t) -delta > now ? 0 : (uint64_t) ((int64_t) now + delta);
        uint8_t val [8];
        bus_u64_to_key (next, val);
        rc = next ? bus_txn_put (txn, usage_db, keys [i], strlen (keys [i]), val, 8)
                  : bus_txn_del (txn, usage_db, keys [i], strlen (keys [i]));
        if (rc == BUS_ENOTFOUND)
            rc = 0;
    }
    return rc;
}

/*  What a record costs against the quotas: its value, its key twice
    (the record and the time index), the time key's expiry. */
static size_t
s_cost (size_t key_len, size_t val_len)
{
    return val_len + 2 * key_len + 8;
}

uint64_t
bus_dedupe_usage (bus_txn_t *txn, const bus_dedupe_store_t *store, const char *principal)
{
    return s_usage_get (txn, store->usage_db, principal ? principal : "*");
}

int
bus_dedupe_record (bus_txn_t *txn, const bus_dedupe_store_t *store, const char *principal,
                   const char *id, const uint8_t hash [BUS_DEDUPE_HASH_LEN], json_t *outcome,
                   int64_t expires_us)
{
    char key [S_KEY_MAX];
    if (!s_key (key, principal, id) || streq (principal, "*")) {
        bus_txn_fail (txn, BUS_EINVAL);
        return BUS_EINVAL;
    }
    size_t key_len = strlen (key);
    char *text = json_dumps (outcome, JSON_COMPACT);
    if (!text) {
        bus_txn_fail (txn, BUS_ENOMEM);
        return BUS_ENOMEM;
    }
    size_t text_len = strlen (text);
    if (text_len > store->record_max) {
        free (text);
        text = NULL;
        if (asprintf (&text, "{\"large\":%zu}", text_len) < 0) {
            bus_txn_fail (txn, BUS_ENOMEM);
            return BUS_ENOMEM;
        }
        text_len = strlen (text);
    }
    /* the quotas, counting off a record this one replaces */
    size_t cost = s_cost (key_len, S_RECORD_HEAD + text_len), old_cost = 0;
    const void *old;
    size_t old_len;
    if (bus_txn_get (txn, store->db, key, key_len, &old, &old_len) == 0)
        old_cost = s_cost (key_len, old_len);
    if (s_usage_get (txn, store->usage_db, principal) + cost - old_cost > store->principal_bytes
        || s_usage_get (txn, store->usage_db, "*") + cost - old_cost > store->total_bytes) {
        free (text);
        return BUS_EFULL;
    }
    uint8_t *val = malloc (S_RECORD_HEAD + text_len);
    if (!val) {
        free (text);
        bus_txn_fail (txn, BUS_ENOMEM);
        return BUS_ENOMEM;
    }
    val [0] = S_RECORD_VERSION;
    memcpy (val + 1, hash, BUS_DEDUPE_HASH_LEN);
    bus_u64_to_key ((uint64_t) expires_us, val + 1 + BUS_DEDUPE_HASH_LEN);
    memcpy (val + S_RECORD_HEAD, text, text_len);
    free (text);
    uint8_t tkey [8 + S_KEY_MAX];
    size_t tkey_len = s_time_key (tkey, expires_us, key, key_len);
    /* a principal's request ids are ULIDs, in order: the newest principal's
       record is often the last key (appended: pages fill up) */
    if (bus_txn_put_append (txn, store->db, key, key_len, val, S_RECORD_HEAD + text_len) == BUS_EEXIST)
        bus_txn_put (txn, store->db, key, key_len, val, S_RECORD_HEAD + text_len);
    /* expiries grow with time: appended, when this one sorts last */
    if (bus_txn_put_append (txn, store->time_db, tkey, tkey_len, "", 0) == BUS_EEXIST)
        bus_txn_put (txn, store->time_db, tkey, tkey_len, "", 0);
    free (val);
    int rc = s_usage_add (txn, store->usage_db, principal, (int64_t) cost - (int64_t) old_cost);
    if (rc)
        bus_txn_fail (txn, rc);
    return bus_txn_error (txn);
}

bus_dedupe_found_t
bus_dedupe_recall (bus_txn_t *txn, int db, const char *principal, const char *id,
                   const uint8_t hash [BUS_DEDUPE_HASH_LEN], json_t **outcome)
{
    char key [S_KEY_MAX];
    const void *val;
    size_t val_len;
    if (!s_key (key, principal, id) || bus_txn_get (txn, db, key, strlen (key), &val, &val_len))
        return BUS_DEDUPE_NONE;
    const uint8_t *v = val;
    if (val_len < S_RECORD_HEAD || v [0] != S_RECORD_VERSION) {
        bus_error ("dedupe record %s does not decode", key);
        return BUS_DEDUPE_NONE;
    }
    if (sodium_memcmp (v + 1, hash, BUS_DEDUPE_HASH_LEN))
        return BUS_DEDUPE_CONFLICT;
    json_t *out = json_loadb ((const char *) v + S_RECORD_HEAD, val_len - S_RECORD_HEAD, 0, NULL);
    if (!json_is_object (out)) {
        json_decref (out);
        bus_error ("dedupe record %s does not decode", key);
        return BUS_DEDUPE_NONE;
    }
    *outcome = out;
    return BUS_DEDUPE_REPLY;
}

typedef struct {
    int64_t now_us;
    size_t max;
    zlistx_t *keys;               /* zchunk_t: time keys to delete */
    bool more;
} s_expire_t;

static int
s_expire_one (const void *key, size_t key_len, const void *val, size_t val_len, void *arg)
{
    s_expire_t *x = arg;
    if (key_len < 8 || (int64_t) bus_key_to_u64 (key) >= x->now_us)
        return 1;
    if (zlistx_size (x->keys) >= x->max) {
        x->more = true;
        return 1;
    }
    zlistx_add_end (x->keys, zchunk_new (key, key_len));
    return 0;
}

int
bus_dedupe_expire (bus_txn_t *txn, const bus_dedupe_store_t *store, int64_t now_us, size_t max, bool *more)
{
    int db = store->db, time_db = store->time_db;
    s_expire_t x = { now_us, max, zlistx_new (), false };
    if (!x.keys)
        return BUS_ENOMEM;
    zlistx_set_destructor (x.keys, (zlistx_destructor_fn *) zchunk_destroy);
    int rc = bus_txn_scan (txn, time_db, NULL, 0, NULL, 0, s_expire_one, &x);
    int deleted = 0;
    for (zchunk_t *k = zlistx_first (x.keys); rc == 0 && k; k = zlistx_next (x.keys)) {
        const uint8_t *tkey = zchunk_data (k);
        size_t tkey_len = zchunk_size (k);
        /* the record itself, unless it was recorded again since (a later expiry) */
        const void *val;
        size_t val_len;
        if (bus_txn_get (txn, db, tkey + 8, tkey_len - 8, &val, &val_len) == 0
            && val_len >= S_RECORD_HEAD
            && memcmp ((const uint8_t *) val + 1 + BUS_DEDUPE_HASH_LEN, tkey, 8) == 0) {
            /* its bytes off its principal's (the key up to the last '/') */
            size_t cost = s_cost (tkey_len - 8, val_len);
            char principal [S_KEY_MAX];
            size_t plen = tkey_len - 8 < S_KEY_MAX ? tkey_len - 8 : 0;
            while (plen > 0 && tkey [8 + plen - 1] != '/')
                plen--;
            memcpy (principal, tkey + 8, plen ? plen - 1 : 0);
            principal [plen ? plen - 1 : 0] = 0;
            rc = bus_txn_del (txn, db, tkey + 8, tkey_len - 8);
            if (rc == 0 && *principal)
                rc = s_usage_add (txn, store->usage_db, principal, -(int64_t) cost);
        }
        if (rc == 0) {
            rc = bus_txn_del (txn, time_db, tkey, tkey_len);
            if (rc == BUS_ENOTFOUND)
                rc = 0;
        }
        if (rc == 0)
            deleted++;
    }
    zlistx_destroy (&x.keys);
    if (more)
        *more = x.more;
    return rc ? rc : deleted;
}
