/*  ciba_tables.c — what the ciba-broker holds in memory of its stored
    approvals (ciba_service.c's header says why): the owners of the
    auth_req_ids, the approvals by deadline and by end, ciba.list's
    indexes; kept by the commits that change the approvals (ciba_save,
    the purge), under owners_lock, and rebuilt from the approvals at
    start (ciba_tables_load). ciba_internal.h declares what the other
    files use.
*/
#include "ciba_internal.h"
#include "bus_error.h"
#include "bus_log.h"

#include <stdlib.h>
#include <string.h>

/* ---- owners ------------------------------------------------------------- */

/*  The approval id a level's auth_req_id belongs to, into out (from
    memory: ciba_t.owners), or BUS_ENOTFOUND. The id may name an approval
    whose change did not commit: the caller loads it (not found). */
int
ciba_level_owner (ciba_t *self, const char *auth_req_id, char out [PROTO_ID_LEN + 1])
{
    pthread_mutex_lock (&self->owners_lock);
    const char *id = zhashx_lookup (self->owners, auth_req_id);
    if (id)
        snprintf (out, PROTO_ID_LEN + 1, "%s", id);
    pthread_mutex_unlock (&self->owners_lock);
    return id ? 0 : BUS_ENOTFOUND;
}

/*  Note that approval_id owns auth_req_id (ciba_t.owners). */
int
ciba_owner_note (ciba_t *self, const char *auth_req_id, const char *approval_id)
{
    char *id = strdup (approval_id);
    if (!id)
        return BUS_ENOMEM;
    pthread_mutex_lock (&self->owners_lock);
    zhashx_update (self->owners, auth_req_id, id);
    pthread_mutex_unlock (&self->owners_lock);
    return 0;
}

/*  Forget the auth_req_ids of the approvals purged (a JSON array of
    strings), once the purge has committed. */
void
ciba_owners_drop (ciba_t *self, json_t *auth_req_ids)
{
    size_t i;
    json_t *auth;
    pthread_mutex_lock (&self->owners_lock);
    json_array_foreach (auth_req_ids, i, auth)
        zhashx_delete (self->owners, json_string_value (auth));
    pthread_mutex_unlock (&self->owners_lock);
}

/* ---- approvals by time (deadlines, ended) ------------------------------- */

typedef struct {
    int64_t at;
    char id [PROTO_ID_LEN + 1];
} s_timed_t;

struct ciba_times_t {
    zlistx_t *order;                /* s_timed_t, by (at, id) */
    zhashx_t *handles;              /* id -> its handle in order */
};

static int
s_timed_cmp (const void *a, const void *b)
{
    const s_timed_t *x = a, *y = b;
    return x->at < y->at ? -1 : x->at > y->at ? 1 : strcmp (x->id, y->id);
}

static void
s_timed_free (void **item)
{
    free (*item);
    *item = NULL;
}

void
ciba_times_destroy (ciba_times_t **self_p)
{
    if (!*self_p)
        return;
    zhashx_destroy (&(*self_p)->handles);
    zlistx_destroy (&(*self_p)->order);
    free (*self_p);
    *self_p = NULL;
}

ciba_times_t *
ciba_times_new (void)
{
    ciba_times_t *self = calloc (1, sizeof *self);
    if (self) {
        self->order = zlistx_new ();
        self->handles = zhashx_new ();
    }
    if (!self || !self->order || !self->handles) {
        ciba_times_destroy (&self);
        return NULL;
    }
    zlistx_set_comparator (self->order, s_timed_cmp);
    zlistx_set_destructor (self->order, s_timed_free);
    return self;
}

/*  The time of id becomes at (0: none). Under owners_lock. Returns 0 or
    BUS_ENOMEM. */
int
ciba_times_set (ciba_times_t *self, const char *id, int64_t at)
{
    void *handle = zhashx_lookup (self->handles, id);
    if (handle) {
        zhashx_delete (self->handles, id);
        zlistx_delete (self->order, handle);
    }
    if (at <= 0)
        return 0;
    s_timed_t *t = calloc (1, sizeof *t);
    if (!t)
        return BUS_ENOMEM;
    t->at = at;
    snprintf (t->id, sizeof t->id, "%s", id);
    /* times mostly come later than those held: searched from the end */
    handle = zlistx_insert (self->order, t, false);
    if (!handle || zhashx_insert (self->handles, t->id, handle)) {
        if (handle)
            zlistx_delete (self->order, handle);
        return BUS_ENOMEM;
    }
    return 0;
}

/*  How many ids have a time. Under owners_lock. */
size_t
ciba_times_size (ciba_times_t *self)
{
    return zlistx_size (self->order);
}

/*  Up to max ids whose time is at or before until, earliest first, into
    ids; their count. Under owners_lock. */
size_t
ciba_times_due (ciba_times_t *self, int64_t until, char (*ids) [PROTO_ID_LEN + 1], size_t max)
{
    size_t n = 0;
    for (s_timed_t *t = zlistx_first (self->order); t && n < max && t->at <= until; t = zlistx_next (self->order))
        memcpy (ids [n++], t->id, PROTO_ID_LEN + 1);
    return n;
}

/*  A time to set once the transaction commits (s_time_hook). */
typedef struct {
    ciba_t *self;
    ciba_times_t *times;
    int64_t at;
    char id [PROTO_ID_LEN + 1];
} s_time_change_t;

static void
s_time_hook (void *arg, bool committed)
{
    s_time_change_t *c = arg;
    if (committed) {
        pthread_mutex_lock (&c->self->owners_lock);
        if (ciba_times_set (c->times, c->id, c->at))
            bus_error ("ciba: out of memory keeping the time of approval %s (looked at after a restart)", c->id);
        pthread_mutex_unlock (&c->self->owners_lock);
    }
    free (c);
}

/*  In txn: once it commits, the time of approval id in times becomes at
    (0: none). Errors are sticky in txn. */
void
ciba_time_on_commit (ciba_t *self, bus_txn_t *txn, ciba_times_t *times, const char *id, int64_t at)
{
    s_time_change_t *c = calloc (1, sizeof *c);
    if (!c) {
        bus_txn_fail (txn, BUS_ENOMEM);
        return;
    }
    c->self = self;
    c->times = times;
    c->at = at;
    snprintf (c->id, sizeof c->id, "%s", id);
    bus_txn_on_commit (txn, s_time_hook, c);
}

/*  When the approval must next be looked at: its expiry, its current
    level's escalation or queue slot, whichever is first; 0 when it has
    ended. */
static int64_t
s_next_deadline (json_t *a)
{
    if (!streq (ciba_str (a, "state") ?: "", "pending"))
        return 0;
    int64_t at = ciba_int (a, "expires_at");
    json_t *lvl = json_array_get (json_object_get (a, "levels"), (size_t) ciba_int (a, "current"));
    int64_t d = lvl ? ciba_int (lvl, "deadline") : 0;
    if (d > 0 && d < at)
        at = d;
    int64_t p = lvl && streq (ciba_str (lvl, "state") ?: "", "pending") ? ciba_int (lvl, "poll_at") : 0;
    if (p > 0 && p < at)
        at = p;
    return at;
}

/*  An index change to make once the transaction commits (s_index_hook):
    id leaves the list under prefix old (empty: none) and joins the list
    under new (empty: none). */
typedef struct {
    ciba_t *self;
    char id [PROTO_ID_LEN + 1];
    char old [600], new [600];
} s_index_change_t;

/*  id into (add) or out of the index list under prefix. Under
    owners_lock. Returns 0 or BUS_ENOMEM. */
static int
s_index_set (ciba_t *self, const char *prefix, const char *id, bool add)
{
    ciba_times_t *list = zhashx_lookup (self->index, prefix);
    if (!list && add) {
        list = ciba_times_new ();
        if (!list || zhashx_insert (self->index, prefix, list)) {
            ciba_times_destroy (&list);
            return BUS_ENOMEM;
        }
    }
    if (!list)
        return 0;
    int rc = ciba_times_set (list, id, add ? 1 : 0);     /* one time for all: in id order */
    if (zlistx_size (list->order) == 0)
        zhashx_delete (self->index, prefix);
    return rc;
}

static void
s_index_hook (void *arg, bool committed)
{
    s_index_change_t *c = arg;
    if (committed) {
        pthread_mutex_lock (&c->self->owners_lock);
        int rc = *c->old ? s_index_set (c->self, c->old, c->id, false) : 0;
        if (rc == 0 && *c->new)
            rc = s_index_set (c->self, c->new, c->id, true);
        if (rc)
            bus_error ("ciba: out of memory indexing approval %s (indexed again at the next start)", c->id);
        pthread_mutex_unlock (&c->self->owners_lock);
    }
    free (c);
}

/*  Move the index entries of approval a from state from (NULL: not
    indexed) to state to (NULL: none, the purge), once txn commits: under
    "s" LF state LF; under "a" LF approver LF state LF for each approver
    of its chain; under "r" LF run LF when it has a run (the same in every
    state: kept). Errors are sticky in txn. */
static void
s_index (ciba_t *self, bus_txn_t *txn, json_t *a, const char *from, const char *to)
{
    const char *id = ciba_str (a, "approval_id"), *run = ciba_str (a, "run");
    size_t n = json_array_size (json_object_get (a, "levels"));
    for (size_t i = 0; i < n + 2; i++) {
        json_t *lvl = json_array_get (json_object_get (a, "levels"), i);
        if ((i < n && !ciba_str (lvl, "approver")) || (i == n + 1 && (!run || (from && to))))
            continue;                   /* a run's entry stays while the approval does */
        s_index_change_t *c = calloc (1, sizeof *c);
        if (!c) {
            bus_txn_fail (txn, BUS_ENOMEM);
            return;
        }
        c->self = self;
        snprintf (c->id, sizeof c->id, "%s", id);
        const char *who = i < n ? ciba_str (lvl, "approver") : NULL;
        int on = 0, nn = 0;
        if (i < n) {
            on = from ? snprintf (c->old, sizeof c->old, "a\n%s\n%s\n", who, from) : 0;
            nn = to ? snprintf (c->new, sizeof c->new, "a\n%s\n%s\n", who, to) : 0;
        }
        else if (i == n) {
            on = from ? snprintf (c->old, sizeof c->old, "s\n%s\n", from) : 0;
            nn = to ? snprintf (c->new, sizeof c->new, "s\n%s\n", to) : 0;
        }
        else {
            on = from ? snprintf (c->old, sizeof c->old, "r\n%s\n", run) : 0;
            nn = to ? snprintf (c->new, sizeof c->new, "r\n%s\n", run) : 0;
        }
        if (on < 0 || (size_t) on >= sizeof c->old || nn < 0 || (size_t) nn >= sizeof c->new) {
            free (c);                   /* approvers are at most 256 bytes (ciba_approver_ok) */
            continue;
        }
        bus_txn_on_commit (txn, s_index_hook, c);
    }
}

/*  The index key of a requester's idempotency key into key (at least
    600 bytes): its length, or -1 when it does not fit. */
int
ciba_key_index (char *key, size_t cap, const char *requested_by, const char *idem)
{
    int n = snprintf (key, cap, "k\n%s\n%s", requested_by, idem);
    return n < 0 || (size_t) n >= cap ? -1 : n;
}

/*  Put a key that most likely sorts last (a time, a ULID) appended, so
    that pages fill up; else as any put. Returns the sticky error. */
static int
s_put_last (bus_txn_t *txn, int db, const void *key, size_t key_len, const void *val, size_t val_len)
{
    int rc = bus_txn_put_append (txn, db, key, key_len, val, val_len);
    return rc == BUS_EEXIST ? bus_txn_put (txn, db, key, key_len, val, val_len) : rc;
}

/*  Store the approval, move its deadline key, and keep its indexes: the
    state it is indexed under is its bookkeeping member `indexed`; an
    approval that has ended joins `ended` (by completed_at) for the purge.
    Errors are sticky in txn. */
int
ciba_save (ciba_t *self, bus_txn_t *txn, json_t *a)
{
    const char *id = ciba_str (a, "approval_id");
    int64_t old = ciba_int (a, "deadline"), next = s_next_deadline (a);
    if (old != next) {
        ciba_time_on_commit (self, txn, self->deadlines, id, next);
        ciba_set_int (a, "deadline", next);
    }
    const char *state = ciba_str (a, "state") ?: "";
    const char *indexed = ciba_str (a, "indexed");
    bool fresh = !indexed;          /* its first save (or a store from before the indexes) */
    if (!indexed || !streq (indexed, state)) {
        s_index (self, txn, a, indexed, state);
        if (!streq (state, "pending"))
            ciba_time_on_commit (self, txn, self->ended, id, ciba_int (a, "completed_at"));
        ciba_set_str (a, "indexed", state);
    }
    char *text = json_dumps (a, JSON_COMPACT);
    if (!text) {
        bus_txn_fail (txn, BUS_ENOMEM);
        return BUS_ENOMEM;
    }
    /* approval ids are ULIDs, made in order: a new one is appended */
    int rc = fresh ? s_put_last (txn, self->db_approvals, id, strlen (id), text, strlen (text))
                   : bus_txn_put (txn, self->db_approvals, id, strlen (id), text, strlen (text));
    free (text);
    return rc;
}

/*  Purge an ended approval (its end past the retention): its indexes,
    the approval, its place in ciba_t.ended (once committed); its levels'
    auth_req_ids are added to gone, forgotten once the purge commits
    (ciba_owners_drop). */
void
ciba_purge_one (ciba_t *self, bus_txn_t *txn, const char *id, json_t *gone)
{
    json_t *a = ciba_load (self, txn, id);
    if (a && !streq (ciba_str (a, "state") ?: "", "pending")) {
        size_t i;
        json_t *lvl;
        json_array_foreach (json_object_get (a, "levels"), i, lvl) {
            const char *auth = ciba_str (lvl, "auth_req_id");
            if (auth)
                json_array_append_new (gone, json_string (auth));
        }
        s_index (self, txn, a, ciba_str (a, "indexed") ?: ciba_str (a, "state"), NULL);
        char key [600];
        int n = ciba_str (a, "idempotency_key")
              ? ciba_key_index (key, sizeof key, ciba_str (a, "requested_by") ?: "", ciba_str (a, "idempotency_key")) : -1;
        if (n > 0)
            bus_txn_del (txn, self->db_index, key, (size_t) n);
        bus_txn_del (txn, self->db_approvals, id, PROTO_ID_LEN);
    }
    json_decref (a);
    ciba_time_on_commit (self, txn, self->ended, id, 0);
}

/* ---- at start ----------------------------------------------------------- */

/*  Scan callback: collect the approval ids (keys) into a JSON array. */
static int
s_collect_id (const void *k, size_t kl, const void *v, size_t vl, void *arg)
{
    json_array_append_new (arg, json_stringn (k, kl));
    return 0;
}

/*  Scan callback: what memory holds of one stored approval: its
    auth_req_ids, its deadline while pending, its end once ended. */
static int
s_owners_one (const void *k, size_t kl, const void *v, size_t vl, void *arg)
{
    ciba_t *self = arg;
    json_t *a = json_loadb (v, vl, 0, NULL);
    const char *id = ciba_str (a, "approval_id");
    size_t i;
    json_t *lvl;
    int rc = 0;
    json_array_foreach (json_object_get (a, "levels"), i, lvl)
        if (id && ciba_str (lvl, "auth_req_id") && rc == 0)
            rc = ciba_owner_note (self, ciba_str (lvl, "auth_req_id"), id);
    if (id && rc == 0) {
        const char *state = ciba_str (a, "state") ?: "", *run = ciba_str (a, "run");
        bool pending = streq (state, "pending");
        char prefix [600];
        pthread_mutex_lock (&self->owners_lock);
        rc = pending ? ciba_times_set (self->deadlines, id, ciba_int (a, "deadline"))
                     : ciba_times_set (self->ended, id, ciba_int (a, "completed_at"));
        snprintf (prefix, sizeof prefix, "s\n%s\n", state);
        rc = rc ? rc : s_index_set (self, prefix, id, true);
        json_array_foreach (json_object_get (a, "levels"), i, lvl) {
            int n = snprintf (prefix, sizeof prefix, "a\n%s\n%s\n", ciba_str (lvl, "approver") ?: "", state);
            if (rc == 0 && n > 0 && (size_t) n < sizeof prefix)
                rc = s_index_set (self, prefix, id, true);
        }
        int n = run ? snprintf (prefix, sizeof prefix, "r\n%s\n", run) : -1;
        if (rc == 0 && n > 0 && (size_t) n < sizeof prefix)
            rc = s_index_set (self, prefix, id, true);
        pthread_mutex_unlock (&self->owners_lock);
    }
    json_decref (a);
    return rc ? rc : 0;
}

/*  Empty db (a database brokers from before wrote) in txn, but for the
    keys starting with keep (NULL: none); true when it deleted any. */
static bool
s_db_empty (bus_txn_t *txn, int db, const char *keep, int *rc)
{
    const void *k, *v;
    size_t kl, vl;
    if (*rc || bus_txn_first (txn, db, &k, &kl, &v, &vl) != 0)
        return false;
    json_t *keys = json_array ();
    *rc = keys ? bus_txn_scan (txn, db, NULL, 0, NULL, 0, s_collect_id, keys) : BUS_ENOMEM;
    size_t i, deleted = 0;
    json_t *key;
    json_array_foreach (keys, i, key)
        if (!keep || strncmp (json_string_value (key), keep, strlen (keep))) {
            bus_txn_del (txn, db, json_string_value (key), json_string_length (key));
            deleted++;
        }
    json_decref (keys);
    return deleted > 0;
}

/*  At start: what memory holds of the stored approvals (ciba_t.owners,
    deadlines, ended); and the databases that held it before (levels,
    deadlines, ended) emptied, in one transaction, when a store from
    before has them. Returns 0 or the error. */
int
ciba_tables_load (ciba_t *self)
{
    bus_txn_t *txn = bus_txn_begin (self->store, true);
    if (!txn)
        return BUS_EIO;
    int rc = bus_txn_scan (txn, self->db_approvals, NULL, 0, NULL, 0, s_owners_one, self);
    bool old = s_db_empty (txn, self->db_levels, NULL, &rc);
    old = s_db_empty (txn, self->db_deadlines, NULL, &rc) || old;
    old = s_db_empty (txn, self->db_ended, NULL, &rc) || old;
    old = s_db_empty (txn, self->db_index, "k\n", &rc) || old;     /* the requesters' keys stay */
    if (rc == 0 && old)
        rc = bus_txn_commit (&txn);
    else
        bus_txn_abort (&txn);
    if (rc == 0)
        bus_info ("ciba: %zu auth_req_ids, %zu deadlines, %zu ended approvals known%s",
                  zhashx_size (self->owners), zlistx_size (self->deadlines->order), zlistx_size (self->ended->order),
                  old ? " (the levels, deadlines, ended databases and the list indexes of a store from before "
                        "emptied)" : "");
    return rc;
}
