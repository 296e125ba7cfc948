/*  authz_tuples.c — models, tuples and changelog on LMDB (see the header). */
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include "bus_error.h"
#include "authz_tuples.h"

#define S_PFX AUTHZ_STORE_PREFIX      /* a key's store number, big-endian */
#define S_KEY_MAX (3 * AUTHZ_MAX_FIELD + 8 + S_PFX)
#define S_MAX_READS 4               /* open reads tracked for the tuple cache */

/*  One cached tuple set of object#relation (see the header): valid for
    reads whose snapshot is `snapshot`. data holds object \0 relation \0
    then, per tuple, user \0 condition \0 context \0. */
typedef struct {
    uint64_t snapshot;              /* 0: empty */
    uint64_t hash;
    char *data;
    uint32_t key_len;               /* object \0 relation \0 */
    uint32_t rel_off;               /* offset of the relation in data */
    uint16_t n;                     /* tuples */
    bool used;                      /* hit since filled or last aged */
} s_slot_t;

#define S_HUGE_PAGE (2UL << 20)     /* x86-64 transparent huge page */

const char *const authz_store_db_names [] = {
    "authz_models", "authz_tuples", "authz_users", "authz_changes", "authz_stores", NULL
};

struct authz_store_t {
    bus_store_t *bus;
    bool own_bus;
    int db_models, db_tuples, db_users, db_changes, db_stores;
    uint32_t store_no;              /* the store selected (authz_store_select) */
    bool checked;                   /* check it is live in every transaction */
    uint8_t prefix [S_PFX];         /* store_no, big-endian: every key's start */
    uint64_t live_snapshot;         /* store_no was live in this snapshot (0: not known) */
    uint32_t live_no;
    authz_model_t *models [AUTHZ_MAX_MODELS_CACHED];
    uint32_t model_store [AUTHZ_MAX_MODELS_CACHED];  /* the store of each */
    bool model_latest [AUTHZ_MAX_MODELS_CACHED];     /* its store's newest: this
                                       process is the only writer of models */
    int n_models;
    int next_evict;
    bus_txn_t *reader;              /* reset read txn kept for the next read */
    bus_txn_t *reads [S_MAX_READS]; /* reads begun here and not ended */
    int n_reads;
    s_slot_t *slots;                /* tuple cache, AUTHZ_TUPLE_CACHE_SLOTS */
    char **dead;                    /* replaced cache data, freed when no */
    size_t n_dead;                  /* read is open (AUTHZ_TUPLE_CACHE_SLOTS max) */
    authz_commit_fn *commit;        /* NULL: bus_txn_commit */
    void *commit_arg;
};

void
authz_store_set_commit (authz_store_t *self, authz_commit_fn *fn, void *arg)
{
    self->commit = fn;
    self->commit_arg = arg;
}

/*  Commit a write transaction through the configured commit function;
    change (stolen) describes it. */
static int
s_commit (authz_store_t *self, bus_txn_t **txn_p, json_t *change)
{
    int rc = self->commit ? self->commit (txn_p, change, self->commit_arg) : bus_txn_commit (txn_p);
    bus_txn_abort (txn_p);          /* in case the function did not consume it */
    json_decref (change);
    return rc;
}

/*  The selected store's prefix, then up to three strings into key, each
    followed by NUL. Returns the key length, or -1 when a part is too
    long or the key would pass LMDB's limit (no stored key can be that
    long: the lookup finds nothing). */
static int
s_key (authz_store_t *self, char *key, const char *a, const char *b, const char *c)
{
    const char *parts [3] = { a, b, c };
    size_t len = S_PFX;
    memcpy (key, self->prefix, S_PFX);
    for (int i = 0; i < 3 && parts [i]; i++) {
        size_t n = strlen (parts [i]);
        if (n > AUTHZ_MAX_FIELD || len + n + 1 > AUTHZ_STORE_KEY_MAX)
            return -1;
        memcpy (key + len, parts [i], n + 1);
        len += n + 1;
    }
    return (int) len;
}

/*  Current time as RFC 3339 UTC with milliseconds. */
static void
s_timestamp (char out [32])
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r (&ts.tv_sec, &tm);
    size_t n = strftime (out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf (out + n, 32 - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

/*  A new ULID (Crockford base32 of 48-bit ms time + 80 random bits),
    strictly greater than last (NULL = none). */
static void
s_ulid (char out [AUTHZ_MODEL_ID_LEN + 1], const char *last)
{
    static const char alphabet [] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    uint64_t ms = (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
    uint8_t rnd [10];
    randombytes_buf (rnd, sizeof rnd);
    for (int i = 9; i >= 0; i--) {
        out [i] = alphabet [ms & 31];
        ms >>= 5;
    }
    //  80 random bits -> 16 chars of 5 bits
    for (int i = 0; i < 16; i++) {
        int bit = i * 5, v = 0;
        for (int b = 0; b < 5; b++, bit++)
            v = (v << 1) | ((rnd [bit / 8] >> (7 - bit % 8)) & 1);
        out [10 + i] = alphabet [v];
    }
    out [AUTHZ_MODEL_ID_LEN] = '\0';
    if (last && strlen (last) == AUTHZ_MODEL_ID_LEN && strcmp (out, last) <= 0) {
        memcpy (out, last, AUTHZ_MODEL_ID_LEN);
        for (int i = AUTHZ_MODEL_ID_LEN - 1; i >= 0; i--) {
            const char *p = strchr (alphabet, out [i]);
            int v = p? (int) (p - alphabet): 0;
            if (v < 31) {
                out [i] = alphabet [v + 1];
                break;
            }
            out [i] = '0';
        }
    }
}

/*  Attach to an environment with the authz databases. */
int
authz_store_new (authz_store_t **out, bus_store_t *bus)
{
    *out = NULL;
    authz_store_t *self = calloc (1, sizeof *self);
    if (!self)
        return BUS_ENOMEM;
    self->bus = bus;
    self->db_models = bus_store_db (bus, "authz_models");
    self->db_tuples = bus_store_db (bus, "authz_tuples");
    self->db_users = bus_store_db (bus, "authz_users");
    self->db_changes = bus_store_db (bus, "authz_changes");
    self->db_stores = bus_store_db (bus, "authz_stores");
    if (self->db_models < 0 || self->db_tuples < 0 || self->db_users < 0
    ||  self->db_changes < 0 || self->db_stores < 0) {
        free (self);
        return BUS_ENOTFOUND;
    }
    authz_store_select (self, AUTHZ_STORE_FIRST, false);
    *out = self;
    return 0;
}

static bool s_tracked (authz_store_t *self, bus_txn_t *txn);

/*  Select the store the next calls work on. */
void
authz_store_select (authz_store_t *self, uint32_t number, bool checked)
{
    self->store_no = number;
    self->checked = checked;
    authz_store_prefix (number, self->prefix);
}

/*  The selected store's number. */
uint32_t
authz_store_selected (authz_store_t *self)
{
    return self->store_no;
}

/*  A store number as a key prefix. */
void
authz_store_prefix (uint32_t number, uint8_t out [AUTHZ_STORE_PREFIX])
{
    out [0] = (uint8_t) (number >> 24);
    out [1] = (uint8_t) (number >> 16);
    out [2] = (uint8_t) (number >> 8);
    out [3] = (uint8_t) number;
}

/*  Is the selected store live in txn's snapshot? */
int
authz_store_live (authz_store_t *self, bus_txn_t *txn, authz_error_t *err)
{
    if (!self->checked)
        return 0;
    /* known live in this very snapshot (any commit, a deletion too, makes
       a new one): no lookup (most Checks of a busy store) */
    bool tracked = s_tracked (self, txn);
    uint64_t snapshot = tracked ? bus_txn_snapshot (txn) : 0;
    if (snapshot && snapshot == self->live_snapshot && self->live_no == self->store_no)
        return 0;
    uint8_t key [1 + S_PFX] = { AUTHZ_STORES_NUMBER };
    memcpy (key + 1, self->prefix, S_PFX);
    const void *v;
    size_t vl;
    int rc = bus_txn_get (txn, self->db_stores, key, sizeof key, &v, &vl);
    if (rc == 0 && vl > 0 && ((const char *) v) [0] == AUTHZ_STORES_LIVE) {
        /* a read's snapshot only: a write transaction's changes are not committed */
        if (snapshot) {
            self->live_snapshot = snapshot;
            self->live_no = self->store_no;
        }
        return 0;
    }
    if (rc && rc != BUS_ENOTFOUND)
        return rc;
    return authz_error_set (err, AUTHZ_ESTORE_NOT_FOUND, "store not found");
}

/*  Open an environment of the store's own. */
int
authz_store_open (authz_store_t **out, const char *dir, size_t map_size)
{
    *out = NULL;
    bus_store_t *bus = NULL;
    int rc = bus_store_open (&bus, dir, map_size, authz_store_db_names);
    if (rc == 0)
        rc = authz_store_new (out, bus);
    if (rc)
        bus_store_destroy (&bus);
    else
        (*out)->own_bus = true;
    return rc;
}

/*  Close the store (and its environment if it owns it). */
void
authz_store_destroy (authz_store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    authz_store_t *self = *self_p;
    for (int i = 0; i < self->n_models; i++)
        authz_model_destroy (&self->models [i]);
    bus_txn_abort (&self->reader);
    for (size_t i = 0; self->slots && i < AUTHZ_TUPLE_CACHE_SLOTS; i++)
        free (self->slots [i].data);
    for (size_t i = 0; i < self->n_dead; i++)
        free (self->dead [i]);
    free (self->slots);
    free (self->dead);
    if (self->own_bus)
        bus_store_destroy (&self->bus);
    free (self);
    *self_p = NULL;
}

/*  The environment. */
bus_store_t *
authz_store_bus (authz_store_t *self)
{
    return self->bus;
}

/*  A read transaction on the latest commit: the kept one renewed, or a
    new one when none is kept (first use, another read open, or a failed
    renew). */
bus_txn_t *
authz_store_read_begin (authz_store_t *self)
{
    bus_txn_t *txn = self->reader;
    self->reader = NULL;
    if (txn && bus_txn_renew (txn) != 0)
        bus_txn_abort (&txn);
    if (!txn)
        txn = bus_txn_begin (self->bus, false);
    if (txn && self->n_reads < S_MAX_READS)
        self->reads [self->n_reads++] = txn;
    return txn;
}

/*  End a read from authz_store_read_begin: reset and keep it when no
    other is kept, else abort it. */
void
authz_store_read_end (authz_store_t *self, bus_txn_t **txn_p)
{
    if (!*txn_p)
        return;
    for (int i = 0; i < self->n_reads; i++)
        if (self->reads [i] == *txn_p) {
            self->reads [i] = self->reads [--self->n_reads];
            break;
        }
    //  No read open: no tuple handed out from replaced cache data is in use
    if (self->n_reads == 0) {
        for (size_t i = 0; i < self->n_dead; i++)
            free (self->dead [i]);
        self->n_dead = 0;
    }
    if (!self->reader && bus_txn_reset (*txn_p) == 0) {
        self->reader = *txn_p;
        *txn_p = NULL;
    }
    bus_txn_abort (txn_p);
}

/*  Keep a compiled model of the selected store in the cache (evicting
    round-robin when full); latest: it is now that store's newest. */
static void
s_cache_model (authz_store_t *self, authz_model_t *model, bool latest)
{
    for (int k = 0; latest && k < self->n_models; k++)
        if (self->model_store [k] == self->store_no)
            self->model_latest [k] = false;
    int i = self->n_models;
    if (i < AUTHZ_MAX_MODELS_CACHED)
        self->n_models++;
    else {
        //  Never evict slot 0 (usually the model in use): cheap and safe
        //  enough, since callers hold a model only for one request.
        i = 1 + self->next_evict++ % (AUTHZ_MAX_MODELS_CACHED - 1);
        authz_model_destroy (&self->models [i]);
    }
    self->models [i] = model;
    self->model_store [i] = self->store_no;
    self->model_latest [i] = latest;
}

/*  Compile and store a model under a new id. */
int
authz_store_write_model (authz_store_t *self, json_t *model,
                         char id_out [AUTHZ_MODEL_ID_LEN + 1], authz_error_t *err)
{
    authz_model_t *compiled = NULL;
    char *text = NULL;
    bus_txn_t *txn = NULL;
    int rc = authz_model_compile (&compiled, model, NULL, err);
    if (rc)
        goto done;
    text = json_dumps (model, JSON_COMPACT);
    txn = bus_txn_begin (self->bus, true);
    if (!text || !txn) {
        rc = text? BUS_EIO: BUS_ENOMEM;
        goto done;
    }
    const void *k, *v;
    size_t kl, vl;
    char last [AUTHZ_MODEL_ID_LEN + 1] = "";
    rc = authz_store_live (self, txn, err);
    if (rc)
        goto done;
    if (bus_txn_last_prefix (txn, self->db_models, self->prefix, S_PFX, &k, &kl, &v, &vl) == 0
    &&  kl == S_PFX + AUTHZ_MODEL_ID_LEN)
        memcpy (last, (const char *) k + S_PFX, AUTHZ_MODEL_ID_LEN);
    char id [AUTHZ_MODEL_ID_LEN + 1], key [S_PFX + AUTHZ_MODEL_ID_LEN];
    s_ulid (id, last);
    memcpy (key, self->prefix, S_PFX);
    memcpy (key + S_PFX, id, AUTHZ_MODEL_ID_LEN);
    bus_txn_put (txn, self->db_models, key, sizeof key, text, strlen (text));
    rc = s_commit (self, &txn, json_pack ("{s:s}", "authorization_model_id", id));
    if (rc == 0) {
        authz_model_t *final = NULL;
        //  Recompile with the id (cheap; keeps the model immutable)
        rc = authz_model_compile (&final, model, id, err);
        if (rc == 0) {
            s_cache_model (self, final, true);
            memcpy (id_out, id, sizeof id);
        }
    }
done:
    bus_txn_abort (&txn);
    authz_model_destroy (&compiled);
    free (text);
    return rc;
}

/*  Find or load a model; see the header. */
int
authz_store_model (authz_store_t *self, const char *id, const authz_model_t **out,
                   authz_error_t *err)
{
    *out = NULL;
    bool latest = !id || !*id;
    for (int i = 0; latest && i < self->n_models; i++)
        if (self->model_latest [i] && self->model_store [i] == self->store_no) {
            *out = self->models [i];    /* no read: only this store writes models */
            return 0;
        }
    char want [AUTHZ_MODEL_ID_LEN + 1] = "", key [S_PFX + AUTHZ_MODEL_ID_LEN];
    bus_txn_t *txn = authz_store_read_begin (self);
    if (!txn)
        return BUS_EIO;
    int rc = authz_store_live (self, txn, err);
    const void *k, *v = NULL;
    size_t kl, vl = 0;
    memcpy (key, self->prefix, S_PFX);
    if (rc)
        goto done;
    if (latest) {
        rc = bus_txn_last_prefix (txn, self->db_models, self->prefix, S_PFX, &k, &kl, &v, &vl);
        if (rc || kl != S_PFX + AUTHZ_MODEL_ID_LEN) {
            rc = authz_error_set (err, AUTHZ_ELATEST_NOT_FOUND,
                                  "No authorization models found for store");
            goto done;
        }
        memcpy (want, (const char *) k + S_PFX, AUTHZ_MODEL_ID_LEN);
    }
    else {
        if (strlen (id) == AUTHZ_MODEL_ID_LEN)
            memcpy (key + S_PFX, id, AUTHZ_MODEL_ID_LEN);
        if (strlen (id) != AUTHZ_MODEL_ID_LEN
        ||  bus_txn_get (txn, self->db_models, key, sizeof key, &v, &vl)) {
            rc = authz_error_set (err, AUTHZ_EMODEL_NOT_FOUND,
                                  "Authorization Model '%s' not found", id);
            goto done;
        }
        memcpy (want, id, AUTHZ_MODEL_ID_LEN + 1);
    }
    for (int i = 0; i < self->n_models; i++)
        if (self->model_store [i] == self->store_no
        &&  strcmp (authz_model_id (self->models [i]), want) == 0) {
            *out = self->models [i];
            if (latest) {
                for (int k2 = 0; k2 < self->n_models; k2++)
                    if (self->model_store [k2] == self->store_no)
                        self->model_latest [k2] = false;
                self->model_latest [i] = true;
            }
            goto done;
        }
    json_error_t jerr;
    json_t *js = json_loadb (v, vl, 0, &jerr);
    authz_model_t *m = NULL;
    rc = js? authz_model_compile (&m, js, want, err): BUS_EIO;
    json_decref (js);
    if (rc == 0) {
        s_cache_model (self, m, latest);
        *out = m;
    }
done:
    authz_store_read_end (self, &txn);
    return rc;
}

/*  Collect model ids into a JSON array (scan callback). */
static int
s_collect_id (const void *key, size_t key_len, const void *val, size_t val_len,
              void *arg)
{
    if (key_len == S_PFX + AUTHZ_MODEL_ID_LEN)
        json_array_insert_new ((json_t *) arg, 0, json_stringn ((const char *) key + S_PFX,
                                                               AUTHZ_MODEL_ID_LEN));
    return 0;
}

/*  All model ids, newest first. */
json_t *
authz_store_model_ids (authz_store_t *self)
{
    json_t *ids = json_array ();
    bus_txn_t *txn = authz_store_read_begin (self);
    if (txn && ids)
        bus_txn_scan_prefix (txn, self->db_models, self->prefix, S_PFX, s_collect_id, ids);
    authz_store_read_end (self, &txn);
    return ids;
}

/*  Split "type:id" at the first ':'; returns the type length or -1. */
static int
s_type_len (const char *s)
{
    const char *c = s? strchr (s, ':'): NULL;
    return c? (int) (c - s): -1;
}

/*  True if s is a non-empty name without ':', '#', '@' or whitespace in
    its first len bytes. */
static bool
s_name_ok (const char *s, size_t len)
{
    if (len == 0 || len > AUTHZ_MAX_FIELD)
        return false;
    for (size_t i = 0; i < len; i++)
        if (strchr (":#@ \t\r\n", s [i]))
            return false;
    return true;
}

/*  Identifier limits; see the header. */
int
authz_tuple_check_limits (const char *object, const char *relation, const char *user,
                          bool whole_key, int code, authz_error_t *err)
{
    size_t ol = object? strlen (object): 0, rl = relation? strlen (relation): 0;
    size_t ul = user? strlen (user): 0;
    if (ol > AUTHZ_MAX_OBJECT)
        return authz_error_set (err, code, "the 'object' field is %zu bytes, at most %d", ol,
                                AUTHZ_MAX_OBJECT);
    if (rl > AUTHZ_MAX_RELATION)
        return authz_error_set (err, code, "the 'relation' field is %zu bytes, at most %d", rl,
                                AUTHZ_MAX_RELATION);
    if (ul > AUTHZ_MAX_USER)
        return authz_error_set (err, code, "the 'user' field is %zu bytes, at most %d", ul,
                                AUTHZ_MAX_USER);
    if (whole_key && ol + rl + ul > AUTHZ_MAX_TUPLE_KEY)
        return authz_error_set (err, code, "object, relation and user together are %zu bytes, "
                                "at most %d (the store's key limit)", ol + rl + ul, AUTHZ_MAX_TUPLE_KEY);
    return 0;
}

/*  Validate a tuple against the model; see the header. */
int
authz_tuple_validate (const authz_model_t *m, const authz_tuple_t *t, int code,
                      authz_error_t *err)
{
    const char *o = t->object? t->object: "", *r = t->relation? t->relation: "";
    const char *u = t->user? t->user: "";
    int lrc = authz_tuple_check_limits (o, r, u, true, code, err);
    if (lrc)
        return lrc;
#define S_INVALID(...) do { \
        char reason [160]; snprintf (reason, sizeof reason, __VA_ARGS__); \
        return authz_error_set (err, code, "Invalid tuple '%.150s#%.60s@%.150s'. Reason: %s", \
                                o, r, u, reason); } while (0)
    int otl = s_type_len (o);
    if (otl <= 0 || !s_name_ok (o, (size_t) otl) || !o [otl + 1]
    ||  strpbrk (o + otl + 1, "#:@ \t\r\n") || strlen (o) > AUTHZ_MAX_FIELD)
        S_INVALID ("invalid 'object' field format");
    if (!s_name_ok (r, strlen (r)))
        S_INVALID ("invalid 'relation' field format");
    int utl = s_type_len (u);
    const char *uid = utl > 0? u + utl + 1: NULL;
    const char *hash = uid? strchr (uid, '#'): NULL;
    size_t uidl = uid? (hash? (size_t) (hash - uid): strlen (uid)): 0;
    if (utl <= 0 || !s_name_ok (u, (size_t) utl) || uidl == 0 || strlen (u) > AUTHZ_MAX_FIELD
    ||  memchr (uid, ':', uidl) || memchr (uid, '@', uidl)
    ||  (hash && (!s_name_ok (hash + 1, strlen (hash + 1)))))
        S_INVALID ("the 'user' field is malformed");
    int ot = authz_model_type (m, o, (size_t) otl);
    if (ot < 0)
        S_INVALID ("type '%.*s' not found", otl, o);
    int rel = authz_model_relation (m, ot, r, strlen (r));
    if (rel < 0)
        S_INVALID ("relation '%.*s#%s' not found", otl, o, r);
    int ut = authz_model_type (m, u, (size_t) utl);
    if (ut < 0)
        S_INVALID ("type '%.*s' not found", utl, u);
    bool wildcard = uidl == 1 && uid [0] == '*';
    if (wildcard && hash)
        S_INVALID ("the 'user' field is malformed");
    int urel = -1;
    if (hash) {
        urel = authz_model_relation (m, ut, hash + 1, strlen (hash + 1));
        if (urel < 0)
            S_INVALID ("relation '%.*s#%s' not found", utl, u, hash + 1);
    }
    int cond = -1;
    if (t->condition && *t->condition) {
        cond = authz_model_condition (m, t->condition, strlen (t->condition));
        if (cond < 0)
            S_INVALID ("undefined condition");
    }
    if (!authz_model_allowed (m, ot, rel, ut, urel, wildcard, AUTHZ_ANY_CONDITION)) {
        if (wildcard)
            S_INVALID ("the typed wildcard '%.*s:*' is not an allowed type restriction for '%.*s#%s'",
                       utl, u, otl, o, r);
        if (hash)
            S_INVALID ("'%.*s#%s' is not an allowed type restriction for '%.*s#%s'",
                       utl, u, hash + 1, otl, o, r);
        S_INVALID ("type '%.*s' is not an allowed type restriction for '%.*s#%s'",
                   utl, u, otl, o, r);
    }
    if (!authz_model_allowed (m, ot, rel, ut, urel, wildcard, cond))
        S_INVALID ("invalid condition for type restriction");
#undef S_INVALID
    return 0;
}

/*  Quiet validity test for stored tuples. */
bool
authz_tuple_is_valid (const authz_model_t *model, const authz_tuple_t *t)
{
    return authz_tuple_validate (model, t, AUTHZ_EVALIDATION, NULL) == 0;
}

/*  Fill a tuple from API JSON. */
int
authz_tuple_from_json (authz_tuple_t *t, json_t *js, authz_error_t *err)
{
    memset (t, 0, sizeof *t);
    t->object = json_string_value (json_object_get (js, "object"));
    t->relation = json_string_value (json_object_get (js, "relation"));
    t->user = json_string_value (json_object_get (js, "user"));
    json_t *cond = json_object_get (js, "condition");
    if (cond) {
        t->condition = json_string_value (json_object_get (cond, "name"));
        t->context = json_object_get (cond, "context");
        if (!t->condition || (t->context && !json_is_object (t->context)))
            return authz_error_set (err, AUTHZ_EVALIDATION, "invalid condition in tuple");
    }
    if (!t->object || !t->relation || !t->user)
        return authz_error_set (err, AUTHZ_EVALIDATION,
                                "tuple key needs object, relation and user");
    return 0;
}

/*  API JSON for a tuple. */
json_t *
authz_tuple_to_json (const authz_tuple_t *t)
{
    json_t *js = json_pack ("{ssssss}", "object", t->object, "relation", t->relation,
                            "user", t->user);
    if (js && t->condition && *t->condition) {
        json_t *cond = json_pack ("{ss}", "name", t->condition);
        json_t *ctx = t->context? json_incref (t->context): NULL;
        if (!ctx && t->context_text && *t->context_text)
            ctx = json_loads (t->context_text, 0, NULL);
        if (ctx)
            json_object_set_new (cond, "context", ctx);
        json_object_set_new (js, "condition", cond);
    }
    return js;
}

/*  Decode a stored value into t's condition fields (and a timestamp). */
static void
s_decode_value (const char *val, size_t len, authz_tuple_t *t, const char **ts)
{
    const char *end = val + len;
    t->condition = NULL;
    t->context_text = NULL;
    t->context = NULL;
    if (ts)
        *ts = NULL;
    if (len == 0 || val [len - 1] != '\0')
        return;
    t->condition = val;
    const char *p = val + strlen (val) + 1;
    if (p < end) {
        t->context_text = p;
        p += strlen (p) + 1;
        if (p < end && ts)
            *ts = p;
    }
}

/*  Decode a forward key (object \0 relation \0 user \0) into t. */
static bool
s_decode_key (const char *key, size_t len, authz_tuple_t *t)
{
    if (len < S_PFX + 6 || key [len - 1] != '\0')
        return false;
    key += S_PFX;
    len -= S_PFX;
    t->object = key;
    t->relation = key + strlen (key) + 1;
    if (t->relation >= key + len)
        return false;
    t->user = t->relation + strlen (t->relation) + 1;
    return t->user < key + len;
}

/*  Bridge from bus scans to tuple callbacks over forward keys; when
    seen is set, also remember the first AUTHZ_TUPLE_CACHE_SET + 1 tuples
    (to cache a small set) and whether fn stopped the scan. */
typedef struct {
    authz_tuple_fn *fn;
    void *arg;
    authz_tuple_t *seen;
    size_t n_seen;
    bool stopped;
} s_bridge_t;

/*  Scan callback: decode and forward. */
static int
s_bridge (const void *key, size_t key_len, const void *val, size_t val_len, void *arg)
{
    s_bridge_t *b = arg;
    authz_tuple_t t;
    if (!s_decode_key (key, key_len, &t))
        return 0;
    s_decode_value (val, val_len, &t, NULL);
    if (b->seen && b->n_seen <= AUTHZ_TUPLE_CACHE_SET)
        b->seen [b->n_seen] = t;
    b->n_seen++;
    int rc = b->fn (&t, b->arg);
    b->stopped = rc != 0;
    return rc;
}

/*  Hash of a cache key, eight bytes at a time (multiply and fold; keys
    are a few dozen bytes, a byte-wise hash cost more than the lookup). */
static uint64_t
s_hash (const char *key, size_t len)
{
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ len, w;
    for (; len >= 8; key += 8, len -= 8) {
        memcpy (&w, key, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
    }
    w = 0;
    memcpy (&w, key, len);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
    return h ^ (h >> 29);
}

/*  The two slots (ways) for hash, allocating the table on first use; NULL
    when out of memory. The table is read at random, one slot per tuple
    set a Check visits: on huge pages (where the kernel grants them) it
    costs one TLB entry, not one per 4 KiB (+7-20% checks per CPU-second
    in bench_authz). */
static s_slot_t *
s_ways (authz_store_t *self, uint64_t hash)
{
    if (!self->slots) {
        void *mem = NULL;
        size_t bytes = AUTHZ_TUPLE_CACHE_SLOTS * sizeof *self->slots;
        bytes = (bytes + S_HUGE_PAGE - 1) / S_HUGE_PAGE * S_HUGE_PAGE;
        if (posix_memalign (&mem, S_HUGE_PAGE, bytes) == 0) {
            madvise (mem, bytes, MADV_HUGEPAGE);
            memset (mem, 0, bytes);
        }
        self->slots = mem;
        self->dead = calloc (AUTHZ_TUPLE_CACHE_SLOTS, sizeof *self->dead);
        if (!self->slots || !self->dead) {
            free (self->slots);
            free (self->dead);
            self->slots = NULL;
            self->dead = NULL;
            return NULL;
        }
    }
    return &self->slots [(hash & (AUTHZ_TUPLE_CACHE_SLOTS / 2 - 1)) * 2];
}

/*  The slot to fill among two ways: an empty or stale one, else one not
    hit since it was filled or last aged (so sets read once, like most
    objects' own tuples, do not push out sets read again and again), else
    the first; both are aged. */
static s_slot_t *
s_victim (s_slot_t *ways, uint64_t snapshot)
{
    for (int k = 0; k < 2; k++)
        if (ways [k].snapshot != snapshot)
            return &ways [k];
    s_slot_t *victim = !ways [0].used? &ways [0]: !ways [1].used? &ways [1]: &ways [0];
    ways [0].used = ways [1].used = false;
    return victim;
}

/*  Call fn for each tuple of a cached set; 0 or fn's negative code. */
static int
s_cache_replay (const s_slot_t *slot, authz_tuple_fn *fn, void *arg)
{
    authz_tuple_t t = { .object = slot->data + S_PFX, .relation = slot->data + slot->rel_off };
    const char *p = slot->data + slot->key_len;
    for (uint32_t i = 0; i < slot->n; i++) {
        t.user = p;
        p += strlen (p) + 1;
        t.condition = p;
        p += strlen (p) + 1;
        t.context_text = p;
        p += strlen (p) + 1;
        int rc = fn (&t, arg);
        if (rc)
            return rc < 0? rc: 0;
    }
    return 0;
}

/*  Store the n tuples of key (object \0 relation \0) in slot for
    snapshot, unless they take more than AUTHZ_TUPLE_CACHE_BYTES. The data
    replaced goes to the dead list (readers may still hold pointers into
    it); when that list is full, nothing is cached until no read is open. */
static void
s_cache_put (authz_store_t *self, s_slot_t *slot, uint64_t snapshot, uint64_t hash,
             const char *key, size_t key_len, const authz_tuple_t *tuples, size_t n)
{
    size_t size = key_len;
    for (size_t i = 0; i < n; i++)
        size += strlen (tuples [i].user) + 3
              + (tuples [i].condition? strlen (tuples [i].condition): 0)
              + (tuples [i].context_text? strlen (tuples [i].context_text): 0);
    if (size > AUTHZ_TUPLE_CACHE_BYTES
    ||  (slot->data && self->n_dead == AUTHZ_TUPLE_CACHE_SLOTS))
        return;
    char *data = malloc (size);
    if (!data)
        return;
    memcpy (data, key, key_len);
    char *p = data + key_len;
    for (size_t i = 0; i < n; i++) {
        const char *parts [3] = { tuples [i].user, tuples [i].condition,
                                  tuples [i].context_text };
        for (int k = 0; k < 3; k++) {
            size_t len = parts [k]? strlen (parts [k]): 0;
            memcpy (p, parts [k]? parts [k]: "", len + 1);
            p += len + 1;
        }
    }
    if (slot->data)
        self->dead [self->n_dead++] = slot->data;
    *slot = (s_slot_t) { snapshot, hash, data, (uint32_t) key_len,
                         (uint32_t) (S_PFX + strlen (key + S_PFX) + 1), (uint16_t) n, false };
}

/*  Was txn begun by authz_store_read_begin and not yet ended? */
static bool
s_tracked (authz_store_t *self, bus_txn_t *txn)
{
    for (int i = 0; i < self->n_reads; i++)
        if (self->reads [i] == txn)
            return true;
    return false;
}

/*  All stored tuples of object#relation: from the tuple cache when it
    holds the set for txn's snapshot, else from LMDB (caching a small set
    read in full). The cache serves only reads from authz_store_read_begin,
    so that replaced data is freed only once no such read is open. */
int
authz_store_scan_users (authz_store_t *self, bus_txn_t *txn, const char *object,
                        const char *relation, authz_tuple_fn *fn, void *arg)
{
    char key [S_KEY_MAX];
    int kl = s_key (self, key, object, relation, NULL);
    if (kl < 0)
        return 0;
    uint64_t snapshot = bus_txn_snapshot (txn), hash = 0;
    s_slot_t *ways = NULL;
    if (snapshot && s_tracked (self, txn)) {
        hash = s_hash (key, (size_t) kl);
        ways = s_ways (self, hash);
    }
    for (int k = 0; ways && k < 2; k++) {
        s_slot_t *slot = &ways [k];
        if (slot->snapshot == snapshot && slot->hash == hash
        &&  slot->key_len == (uint32_t) kl && memcmp (slot->data, key, (size_t) kl) == 0) {
            slot->used = true;
            return s_cache_replay (slot, fn, arg);
        }
    }
    authz_tuple_t seen [AUTHZ_TUPLE_CACHE_SET + 1];
    s_bridge_t b = { fn, arg, ways? seen: NULL, 0, false };
    int rc = bus_txn_scan_prefix (txn, self->db_tuples, key, (size_t) kl, s_bridge, &b);
    if (ways && rc == 0 && !b.stopped && b.n_seen <= AUTHZ_TUPLE_CACHE_SET)
        s_cache_put (self, s_victim (ways, snapshot), snapshot, hash, key, (size_t) kl,
                     seen, b.n_seen);
    return rc;
}

/*  All stored tuples of objects of a type. */
int
authz_store_scan_type (authz_store_t *self, bus_txn_t *txn, const char *type,
                       authz_tuple_fn *fn, void *arg)
{
    char key [S_PFX + AUTHZ_MAX_FIELD + 2];
    size_t n = strlen (type);
    if (n > AUTHZ_MAX_FIELD || S_PFX + n + 1 > AUTHZ_STORE_KEY_MAX)
        return 0;
    memcpy (key, self->prefix, S_PFX);
    memcpy (key + S_PFX, type, n);
    key [S_PFX + n] = ':';
    s_bridge_t b = { fn, arg, NULL, 0, false };
    return bus_txn_scan_prefix (txn, self->db_tuples, key, S_PFX + n + 1, s_bridge, &b);
}

typedef struct {
    const char *relation;
    authz_tuple_fn *fn;
    void *arg;
} s_reverse_t;

/*  A reverse-index key user \0 object \0 relation \0: the tuple, when
    its relation is the one wanted. */
static int
s_reverse_one (const void *key, size_t key_len, const void *val, size_t val_len, void *arg)
{
    s_reverse_t *r = arg;
    if (key_len < S_PFX + 6)
        return 0;
    const char *user = (const char *) key + S_PFX, *end = (const char *) key + key_len;
    key_len -= S_PFX;
    const char *object = memchr (user, 0, key_len);
    const char *relation = object? memchr (object + 1, 0, (size_t) (end - object - 1)): NULL;
    if (!relation || relation + 1 >= end || end [-1] != 0 || strcmp (relation + 1, r->relation))
        return 0;
    authz_tuple_t t = { .object = object + 1, .relation = relation + 1, .user = user };
    return r->fn (&t, r->arg);
}

/*  Stored tuples type:*#relation@user, by the reverse index. */
int
authz_store_scan_objects (authz_store_t *self, bus_txn_t *txn, const char *user,
                          const char *type, const char *relation, authz_tuple_fn *fn, void *arg)
{
    char prefix [S_KEY_MAX];
    size_t ul = strlen (user), tl = strlen (type);
    if (ul > AUTHZ_MAX_FIELD || tl > AUTHZ_MAX_FIELD || S_PFX + ul + tl + 2 > AUTHZ_STORE_KEY_MAX)
        return 0;                       /* longer than any stored key: none */
    memcpy (prefix, self->prefix, S_PFX);
    memcpy (prefix + S_PFX, user, ul + 1);
    memcpy (prefix + S_PFX + ul + 1, type, tl);
    prefix [S_PFX + ul + 1 + tl] = ':';
    s_reverse_t r = { relation, fn, arg };
    return bus_txn_scan_prefix (txn, self->db_users, prefix, S_PFX + ul + tl + 2, s_reverse_one, &r);
}

/*  One stored tuple. */
int
authz_store_get (authz_store_t *self, bus_txn_t *txn, const char *object,
                 const char *relation, const char *user, authz_tuple_t *out)
{
    char key [S_KEY_MAX];
    int kl = s_key (self, key, object, relation, user);
    const void *v;
    size_t vl;
    if (kl < 0 || bus_txn_get (txn, self->db_tuples, key, (size_t) kl, &v, &vl))
        return BUS_ENOTFOUND;
    out->object = object;
    out->relation = relation;
    out->user = user;
    s_decode_value (v, vl, out, NULL);
    return 0;
}

/*  Same tuple key (object, relation, user)? */
static bool
s_same_key (const authz_tuple_t *a, const authz_tuple_t *b)
{
    return strcmp (a->object, b->object) == 0 && strcmp (a->relation, b->relation) == 0
        && strcmp (a->user, b->user) == 0;
}

/*  Append a change record in txn. */
static void
s_log_change (authz_store_t *self, bus_txn_t *txn, const authz_tuple_t *t,
              bool write, const char *ts)
{
    const void *k, *v;
    size_t kl, vl;
    uint64_t seq = 1;
    if (bus_txn_last_prefix (txn, self->db_changes, self->prefix, S_PFX, &k, &kl, &v, &vl) == 0
    &&  kl == S_PFX + 8)
        seq = bus_key_to_u64 ((const uint8_t *) k + S_PFX) + 1;
    uint8_t key [S_PFX + 8];
    memcpy (key, self->prefix, S_PFX);
    bus_u64_to_key (seq, key + S_PFX);
    json_t *js = json_pack ("{s:o s:s s:s}", "tuple_key", authz_tuple_to_json (t),
                            "operation", write? "TUPLE_OPERATION_WRITE": "TUPLE_OPERATION_DELETE",
                            "timestamp", ts);
    char *text = js? json_dumps (js, JSON_COMPACT): NULL;
    if (text)
        bus_txn_put (txn, self->db_changes, key, sizeof key, text, strlen (text));
    else
        bus_txn_put (txn, self->db_changes, key, sizeof key, "", 0);
    free (text);
    json_decref (js);
}

/*  Encode a tuple's value: condition \0 context \0 timestamp \0. Returns
    the length, 0 for "no condition", -1 if too big; *heap set when the
    buffer had to be allocated (caller frees). */
static int
s_encode_value (const authz_tuple_t *t, const char *ts, char **out)
{
    *out = NULL;
    char *ctx = NULL;
    if (t->context && json_object_size (t->context))
        ctx = json_dumps (t->context, JSON_COMPACT | JSON_SORT_KEYS);
    const char *cond = t->condition? t->condition: "";
    size_t cl = strlen (cond), xl = ctx? strlen (ctx): 0, tl = strlen (ts);
    if (xl > AUTHZ_MAX_CONTEXT_BYTES) {
        free (ctx);
        return -1;
    }
    char *buf = malloc (cl + xl + tl + 3);
    if (buf) {
        memcpy (buf, cond, cl + 1);
        memcpy (buf + cl + 1, ctx? ctx: "", xl + 1);
        memcpy (buf + cl + xl + 2, ts, tl + 1);
    }
    free (ctx);
    *out = buf;
    return buf? (int) (cl + xl + tl + 3): -1;
}

/*  Transactional write; see the header. */
int
authz_store_write (authz_store_t *self, const authz_model_t *model,
                   const authz_tuple_t *writes, size_t n_writes,
                   const authz_tuple_t *deletes, size_t n_deletes, int flags,
                   authz_error_t *err)
{
    return authz_store_write_counted (self, model, writes, n_writes, deletes, n_deletes, flags, NULL, err);
}

int
authz_store_write_counted (authz_store_t *self, const authz_model_t *model,
                           const authz_tuple_t *writes, size_t n_writes,
                           const authz_tuple_t *deletes, size_t n_deletes, int flags,
                           authz_write_count_t *count, authz_error_t *err)
{
    authz_write_count_t counted = { 0 };
    if (count)
        *count = counted;
    size_t n = n_writes + n_deletes;
    if (n == 0)
        return authz_error_set (err, AUTHZ_EINVALID_WRITE,
                                "Invalid input. Make sure you provide at least one write or delete");
    if (n > AUTHZ_MAX_WRITE_TUPLES)
        return authz_error_set (err, AUTHZ_EEXCEEDED_ITEMS,
                                "The number of write operations exceeds the allowed limit of %d",
                                AUTHZ_MAX_WRITE_TUPLES);
    for (size_t i = 0; i < n; i++) {
        const authz_tuple_t *a = i < n_deletes? &deletes [i]: &writes [i - n_deletes];
        if (!a->object || !a->relation || !a->user)
            return authz_error_set (err, AUTHZ_EVALIDATION,
                                    "tuple key needs object, relation and user");
        int lrc = authz_tuple_check_limits (a->object, a->relation, a->user, true,
                                            AUTHZ_EVALIDATION, err);
        if (lrc)
            return lrc;
        for (size_t j = 0; j < i; j++) {
            const authz_tuple_t *b = j < n_deletes? &deletes [j]: &writes [j - n_deletes];
            if (s_same_key (a, b))
                return authz_error_set (err, AUTHZ_EDUP_TUPLE,
                                        "duplicate tuple in write: user: '%.200s', relation: '%.100s', object: '%.200s'",
                                        a->user, a->relation, a->object);
        }
    }
    for (size_t i = 0; i < n_writes; i++) {
        int rc = authz_tuple_validate (model, &writes [i], AUTHZ_EVALIDATION, err);
        if (rc)
            return rc;
    }
    char ts [32];
    s_timestamp (ts);
    bus_txn_t *txn = bus_txn_begin (self->bus, true);
    if (!txn)
        return BUS_EIO;
    int rc = authz_store_live (self, txn, err);
    char key [S_KEY_MAX], rkey [S_KEY_MAX];
    for (size_t i = 0; rc == 0 && i < n_deletes; i++) {
        const authz_tuple_t *t = &deletes [i];
        int kl = s_key (self, key, t->object, t->relation, t->user);
        int rl = s_key (self, rkey, t->user, t->object, t->relation);
        int drc = kl < 0? BUS_ENOTFOUND: bus_txn_del (txn, self->db_tuples, key, (size_t) kl);
        if (drc == BUS_ENOTFOUND) {
            if (!(flags & AUTHZ_DELETE_IGNORE_MISSING))
                rc = authz_error_set (err, AUTHZ_EWRITE_FAILED,
                                      "cannot delete a tuple which does not exist: user: '%.200s', relation: '%.100s', object: '%.200s': invalid write input",
                                      t->user, t->relation, t->object);
            counted.missing++;
            continue;
        }
        if (drc == 0)
            drc = bus_txn_del (txn, self->db_users, rkey, (size_t) rl);
        if (drc && drc != BUS_ENOTFOUND)
            rc = drc;
        else {
            s_log_change (self, txn, t, false, ts);
            counted.deleted++;
        }
    }
    for (size_t i = 0; rc == 0 && i < n_writes; i++) {
        const authz_tuple_t *t = &writes [i];
        char *val = NULL;
        int kl = s_key (self, key, t->object, t->relation, t->user);
        int rl = s_key (self, rkey, t->user, t->object, t->relation);
        int vl = s_encode_value (t, ts, &val);
        if (kl < 0 || rl < 0 || vl < 0) {
            free (val);
            rc = authz_error_set (err, AUTHZ_EVALIDATION, "tuple too large");
            break;
        }
        int prc = bus_txn_put_new (txn, self->db_tuples, key, (size_t) kl, val, (size_t) vl);
        if (prc == BUS_EEXIST) {
            //  "ignore" only covers an identical tuple (same condition)
            authz_tuple_t old;
            const void *ov;
            size_t ovl;
            bool same = false;
            if (bus_txn_get (txn, self->db_tuples, key, (size_t) kl, &ov, &ovl) == 0) {
                authz_tuple_t cur = *t;
                s_decode_value (ov, ovl, &old, NULL);
                const char *oc = old.condition? old.condition: "";
                const char *nc = cur.condition? cur.condition: "";
                const char *ox = old.context_text? old.context_text: "";
                same = strcmp (oc, nc) == 0 && strcmp (ox, val + strlen (val) + 1) == 0;
            }
            if (!(flags & AUTHZ_WRITE_IGNORE_DUPLICATE) || !same)
                rc = authz_error_set (err, AUTHZ_EWRITE_FAILED,
                                      "cannot write a tuple which already exists: user: '%.200s', relation: '%.100s', object: '%.200s': tuple to be written already existed or the tuple to be deleted did not exist",
                                      t->user, t->relation, t->object);
            counted.existing++;
        }
        else
        if (prc)
            rc = prc;
        else {
            bus_txn_put (txn, self->db_users, rkey, (size_t) rl, "", 0);
            s_log_change (self, txn, t, true, ts);
            counted.written++;
        }
        free (val);
    }
    if (rc == 0)
        rc = s_commit (self, &txn, json_pack ("{s:s, s:I, s:I, s:I, s:I}", "authorization_model_id",
                                              authz_model_id (model), "writes", (json_int_t) counted.written,
                                              "deletes", (json_int_t) counted.deleted,
                                              "existing", (json_int_t) counted.existing,
                                              "missing", (json_int_t) counted.missing));
    bus_txn_abort (&txn);
    if (rc == 0 && count)
        *count = counted;
    return rc;
}

/*  State of a paged Read. */
typedef struct {
    authz_store_t *self;
    bus_txn_t *txn;
    const authz_tuple_t *filter;
    const char *skip_key;           /* the token's key: not returned again */
    size_t skip_len;
    bool reverse;
    size_t page;
    json_t *out;
    char *last_key;                 /* hex of the last key returned */
    bool more;
} s_read_t;

/*  Hex-encode bytes into a new string. */
static char *
s_hex (const void *data, size_t len)
{
    char *s = malloc (len * 2 + 1);
    if (s)
        sodium_bin2hex (s, len * 2 + 1, data, len);
    return s;
}

/*  Read scan callback: filter, collect, stop after a page (+1 to know
    whether more remain). */
static int
s_read_one (const void *key, size_t key_len, const void *val, size_t val_len, void *arg)
{
    s_read_t *r = arg;
    if (r->skip_key && key_len == r->skip_len && memcmp (key, r->skip_key, key_len) == 0)
        return 0;
    authz_tuple_t t;
    const char *ts = NULL;
    if (r->reverse) {
        //  user \0 object \0 relation \0
        const char *k = (const char *) key + S_PFX;
        if (key_len < S_PFX + 6 || k [key_len - S_PFX - 1])
            return 0;
        t.user = k;
        t.object = k + strlen (k) + 1;
        t.relation = t.object + strlen (t.object) + 1;
        char k2 [S_KEY_MAX];
        int l2 = s_key (r->self, k2, t.object, t.relation, t.user);
        const void *v2;
        size_t vl2;
        if (l2 < 0 || bus_txn_get (r->txn, r->self->db_tuples, k2, (size_t) l2, &v2, &vl2))
            return 0;
        s_decode_value (v2, vl2, &t, &ts);
    }
    else {
        if (!s_decode_key (key, key_len, &t))
            return 0;
        s_decode_value (val, val_len, &t, &ts);
    }
    const authz_tuple_t *f = r->filter;
    if (f->relation && *f->relation && strcmp (f->relation, t.relation))
        return 0;
    if (f->user && *f->user && strcmp (f->user, t.user))
        return 0;
    if (f->object && *f->object) {
        size_t ol = strlen (f->object);
        if (f->object [ol - 1] == ':'? strncmp (f->object, t.object, ol)
                                     : strcmp (f->object, t.object))
            return 0;
    }
    if (json_array_size (r->out) == r->page) {
        r->more = true;
        return 1;
    }
    json_t *item = json_pack ("{s:o}", "key", authz_tuple_to_json (&t));
    if (ts)
        json_object_set_new (item, "timestamp", json_string (ts));
    json_array_append_new (r->out, item);
    free (r->last_key);
    r->last_key = s_hex (key, key_len);
    return 0;
}

/*  Paged Read; see the header. */
int
authz_store_read (authz_store_t *self, const authz_tuple_t *filter, size_t page_size,
                  const char *token, json_t **tuples_out, char **token_out,
                  authz_error_t *err)
{
    *tuples_out = NULL;
    *token_out = NULL;
    if (page_size == 0)
        page_size = AUTHZ_READ_PAGE_DEFAULT;
    if (page_size > AUTHZ_READ_PAGE_MAX)
        return authz_error_set (err, AUTHZ_EVALIDATION,
                                "invalid ReadRequest.PageSize: value must be inside range [1, 100]");
    int lrc = authz_tuple_check_limits (filter->object, filter->relation, filter->user, false,
                                        AUTHZ_EVALIDATION, err);
    if (lrc)
        return lrc;
    char tok [S_KEY_MAX];
    size_t tok_len = 0;
    if (token && *token
    &&  (strlen (token) > 2 * AUTHZ_STORE_KEY_MAX
      || sodium_hex2bin ((unsigned char *) tok, sizeof tok, token, strlen (token),
                         NULL, &tok_len, NULL) != 0 || tok_len == 0))
        return authz_error_set (err, AUTHZ_ETOKEN, "Invalid continuation token");
    s_read_t r = { .self = self, .filter = filter, .page = page_size,
                   .skip_key = tok_len? tok: NULL, .skip_len = tok_len };
    const char *obj = filter->object && *filter->object? filter->object: NULL;
    const char *user = filter->user && *filter->user? filter->user: NULL;
    bool type_only = obj && obj [strlen (obj) - 1] == ':';
    char prefix [S_KEY_MAX];
    int pl = 0;
    int db = self->db_tuples;
    if (obj && !type_only)
        pl = s_key (self, prefix, obj, filter->relation && *filter->relation? filter->relation: NULL,
                    filter->relation && *filter->relation? user: NULL);
    else
    if (user) {
        r.reverse = true;
        db = self->db_users;
        pl = s_key (self, prefix, user, NULL, NULL);
        if (pl > 0 && obj) {
            memcpy (prefix + pl, obj, strlen (obj));
            pl += (int) strlen (obj);
        }
    }
    else
    if (obj) {
        pl = (int) strlen (obj);
        if (pl > AUTHZ_MAX_FIELD)
            pl = -1;
        else {
            memcpy (prefix, self->prefix, S_PFX);
            memcpy (prefix + S_PFX, obj, (size_t) pl);
            pl += S_PFX;
        }
    }
    else {
        memcpy (prefix, self->prefix, S_PFX);
        pl = S_PFX;
    }
    if (pl < 0 || pl > AUTHZ_STORE_KEY_MAX) {
        /* longer than any stored key: nothing matches */
        *tuples_out = json_array ();
        *token_out = strdup ("");
        if (*tuples_out && *token_out)
            return 0;
        json_decref (*tuples_out);
        free (*token_out);
        *tuples_out = NULL;
        *token_out = NULL;
        return BUS_ENOMEM;
    }
    if (tok_len && (tok_len < (size_t) pl || memcmp (tok, prefix, (size_t) pl)))
        return authz_error_set (err, AUTHZ_ETOKEN, "Invalid continuation token");
    r.out = json_array ();
    r.txn = authz_store_read_begin (self);
    int rc = (r.out && r.txn)? 0: BUS_ENOMEM;
    if (rc == 0)
        rc = authz_store_live (self, r.txn, err);
    if (rc == 0) {
        //  Scan from the token's key (or the prefix) to the prefix's end:
        //  the prefix plus one, with carry (a store number may end in 0xff;
        //  our prefixes past it end in NUL or text)
        uint8_t end [S_KEY_MAX + 1];
        size_t el = (size_t) pl;
        memcpy (end, prefix, el);
        while (el && end [el - 1] == 0xff)
            el--;
        if (el)
            end [el - 1]++;
        rc = bus_txn_scan (r.txn, db, tok_len? tok: prefix, tok_len? tok_len: (size_t) pl,
                           el? end: NULL, el, s_read_one, &r);
    }
    authz_store_read_end (self, &r.txn);
    if (rc == 0) {
        *tuples_out = r.out;
        *token_out = strdup (r.more && r.last_key? r.last_key: "");
        r.out = NULL;
    }
    json_decref (r.out);
    free (r.last_key);
    return rc;
}

/*  State of a ReadChanges page. */
typedef struct {
    const char *type;
    const char *since;              /* normalised start_time, or NULL */
    size_t page;
    json_t *out;
    uint64_t last;
} s_changes_t;

/*  ReadChanges scan callback. */
static int
s_change_one (const void *key, size_t key_len, const void *val, size_t val_len, void *arg)
{
    s_changes_t *c = arg;
    if (json_array_size (c->out) == c->page)
        return 1;
    if (key_len == S_PFX + 8)
        c->last = bus_key_to_u64 ((const uint8_t *) key + S_PFX);
    json_t *js = json_loadb (val, val_len, 0, NULL);
    const char *obj = json_string_value (json_object_get (json_object_get (js, "tuple_key"),
                                                          "object"));
    const char *ts = json_string_value (json_object_get (js, "timestamp"));
    size_t tl = c->type? strlen (c->type): 0;
    if (js && (!c->since || (ts && strcmp (ts, c->since) >= 0))
    &&  (!c->type || (obj && strncmp (obj, c->type, tl) == 0 && obj [tl] == ':')))
        json_array_append (c->out, js);
    json_decref (js);
    return 0;
}

/*  An RFC 3339 time as the changelog writes its timestamps (UTC, to the
    millisecond): "2026-12-04T18:47:46.000Z". Returns 0 or -1. */
int
authz_timestamp_normalize (const char *in, char out [32])
{
    struct tm tm = { 0 };
    const char *p = strptime (in, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p)
        return -1;
    long ms = 0;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++)
            if (digits < 3)
                ms = ms * 10 + (*p - '0');
        if (digits == 0)
            return -1;
        for (; digits < 3; digits++)
            ms *= 10;
    }
    long offset = 0;
    if (*p == 'Z' || *p == 'z')
        p++;
    else
    if ((*p == '+' || *p == '-') && strlen (p) == 6 && p [3] == ':') {
        int h = atoi (p + 1), m = atoi (p + 4);
        if (h > 23 || m > 59)
            return -1;
        offset = (*p == '+'? 1: -1) * (h * 3600L + m * 60L);
        p += 6;
    }
    else
        return -1;
    if (*p)
        return -1;
    time_t t = timegm (&tm) - offset;
    struct tm utc;
    if (!gmtime_r (&t, &utc))
        return -1;
    size_t n = strftime (out, 32, "%Y-%m-%dT%H:%M:%S", &utc);
    snprintf (out + n, 32 - n, ".%03ldZ", ms);
    return 0;
}

/*  Paged changelog; see the header. */
int
authz_store_read_changes (authz_store_t *self, const char *type, const char *start_time,
                          size_t page_size, const char *token, json_t **changes_out,
                          char **token_out, authz_error_t *err)
{
    *changes_out = NULL;
    *token_out = NULL;
    if (page_size == 0)
        page_size = AUTHZ_READ_PAGE_DEFAULT;
    if (page_size > AUTHZ_CHANGES_PAGE_MAX)
        return authz_error_set (err, AUTHZ_EVALIDATION,
                                "invalid ReadChangesRequest.PageSize: value must be inside range [1, 100]");
    uint64_t from = 0;
    if (token && *token) {
        char *end = NULL;
        unsigned long long v = strtoull (token, &end, 16);
        if (!end || *end || strlen (token) != 16)
            return authz_error_set (err, AUTHZ_ETOKEN, "Invalid continuation token");
        from = (uint64_t) v;
    }
    char since [32] = "";
    if (start_time && *start_time && !(token && *token)
    &&  authz_timestamp_normalize (start_time, since))
        return authz_error_set (err, AUTHZ_EVALIDATION,
                                "invalid start_time: an RFC 3339 time is expected");
    s_changes_t c = { .type = type && *type? type: NULL, .since = *since? since: NULL,
                      .page = page_size, .out = json_array (), .last = from };
    bus_txn_t *txn = authz_store_read_begin (self);
    int rc = (c.out && txn)? 0: BUS_ENOMEM;
    if (rc == 0)
        rc = authz_store_live (self, txn, err);
    uint8_t key [S_PFX + 8], end [S_PFX];
    memcpy (key, self->prefix, S_PFX);
    bus_u64_to_key (from + 1, key + S_PFX);
    authz_store_prefix (self->store_no + 1, end);
    if (rc == 0)
        rc = bus_txn_scan (txn, self->db_changes, key, sizeof key, end, sizeof end, s_change_one, &c);
    authz_store_read_end (self, &txn);
    if (rc == 0) {
        char tok [17];
        snprintf (tok, sizeof tok, "%016" PRIx64, c.last);
        *changes_out = c.out;
        *token_out = strdup (tok);
    }
    else
        json_decref (c.out);
    return rc;
}
