/*  bus_store.c — the LMDB wrapper every Sanctum process uses for its state.

    One MDB_env per process, opened with MDB_NOTLS (a read transaction may
    be used from any thread, one thread at a time) and without MDB_NOSYNC
    (mdb_txn_commit fsyncs). A read transaction keeps one cursor per
    database it scanned and can be reset and renewed, so a process that
    serves many short reads allocates nothing per read. Named databases are opened once, at open, in
    one write transaction; their handles are indexes into the caller's list.

    LMDB return codes stop here: s_map() turns them into BUS_E* codes and
    logs the unexpected ones. A write transaction carries a sticky error:
    the first failing put/del records it, later puts/dels are no-ops that
    return it, and commit aborts and returns it.
*/
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "bus_error.h"
#include "bus_log.h"
#include "bus_store.h"

#define S_MAX_DBS        64                     /* names in db_names */
#define S_DB_NAME_MAX    64                     /* bytes per db name */
#define S_DEFAULT_MAP    ((size_t) 1 << 30)     /* 1 GiB */

struct bus_store_t {
    MDB_env *env;
    int ndbs;
    MDB_dbi dbis [S_MAX_DBS];
    char *names [S_MAX_DBS];
    size_t max_key;                     /* mdb_env_get_maxkeysize */
    dev_t dev;                          /* identity of the directory */
    ino_t ino;
    bus_store_t *next;                  /* in s_open_list */
};

/*  Stores open in this process. LMDB must not open one environment twice
    in a process (closing either would drop the other's fcntl locks), so
    bus_store_open refuses a directory that is already open. */
static pthread_mutex_t s_open_lock = PTHREAD_MUTEX_INITIALIZER;
static bus_store_t *s_open_list;

/*  What runs once a write transaction's changes are durable
    (bus_txn_on_commit). */
typedef struct s_hook_t s_hook_t;
struct s_hook_t {
    bus_txn_hook_fn *fn;
    void *arg;
    s_hook_t *next;
};

struct bus_txn_t {
    bus_store_t *store;
    MDB_txn *txn;
    bool write;
    bool reset;                         /* read txn between reset and renew */
    int error;                          /* sticky: first failed put/del */
    //  Read transactions keep one cursor per database for their whole life
    //  (across reset/renew): a scan takes it unless a scan of the same db
    //  is already running in a callback (busy), and renews it after a
    //  renew of the transaction (stale).
    uint64_t busy, stale;               /* bit i: database i */
    MDB_cursor *cursors [S_MAX_DBS];
    void *data;                         /* the caller's (bus_txn_set_data) */
    void (*data_free) (void *data);
    bus_txn_t *parent;                  /* the group it is nested in, or NULL */
    s_hook_t *hooks, *hooks_tail;       /* bus_txn_on_commit's, in order */
};

/*  This thread's group (bus_txn_group): the write transactions it begins
    meanwhile are nested in it. */
static __thread bus_txn_t *s_group;


/*  Map an LMDB (or errno) return code to a BUS_E* code, logging every code
    that is not a normal outcome (not found, key exists). what names the
    operation for the log line. */
static int
s_map (int rc, const char *what)
{
    int code;
    switch (rc) {
        case MDB_SUCCESS:       return 0;
        case MDB_NOTFOUND:      return BUS_ENOTFOUND;
        case MDB_KEYEXIST:      return BUS_EEXIST;
        case MDB_MAP_FULL:
        case MDB_TXN_FULL:
        case MDB_DBS_FULL:
        case MDB_READERS_FULL:  code = BUS_EFULL; break;
        case ENOMEM:            code = BUS_ENOMEM; break;
        case EINVAL:
        case EACCES:            /* write op on a read-only transaction */
        case MDB_BAD_VALSIZE:
        case MDB_BAD_TXN:
        case MDB_BAD_DBI:
        case MDB_BAD_RSLOT:
        case MDB_INCOMPATIBLE:
        case MDB_VERSION_MISMATCH:
                                code = BUS_EINVAL; break;
        default:                code = BUS_EIO; break;
    }
    bus_log_fields (BUS_LOG_ERROR,
                    json_pack ("{s:s, s:i}", "op", what, "lmdb_rc", rc),
                    "store: %s failed: %s", what, mdb_strerror (rc));
    return code;
}


/*  Create dir and any missing parents with mode 0700 (like mkdir -p), then
    check that it is a directory, returning its stat in st. Returns 0,
    BUS_EINVAL (path too long or not a directory) or BUS_EIO. */
static int
s_mkdirs (const char *dir, struct stat *st)
{
    char path [PATH_MAX];
    size_t len = strlen (dir);
    if (len == 0 || len >= sizeof path)
        return BUS_EINVAL;
    memcpy (path, dir, len + 1);
    for (char *p = path + 1; ; p++) {
        if (*p != '/' && *p != 0)
            continue;
        char saved = *p;
        *p = 0;
        if (mkdir (path, 0700) != 0 && errno != EEXIST) {
            bus_error ("store: cannot create %s: %s", path, strerror (errno));
            return BUS_EIO;
        }
        *p = saved;
        if (saved == 0)
            break;
    }
    if (stat (dir, st) != 0 || !S_ISDIR (st->st_mode)) {
        bus_error ("store: %s is not a directory", dir);
        return BUS_EINVAL;
    }
    return 0;
}


/*  Open the environment at dir (created 0700 if needed) with the given map
    size (0: 1 GiB) and open or create each database of the NULL-terminated
    db_names list (at most S_MAX_DBS names, each 1..S_DB_NAME_MAX bytes).
    Stale reader slots left by dead processes are cleared. A directory
    already open in this process is BUS_ESTATE. */
int
bus_store_open (bus_store_t **out, const char *dir, size_t map_size,
                const char *const *db_names)
{
    assert (out);
    *out = NULL;
    int rc = 0;
    bool locked = false;
    MDB_txn *txn = NULL;
    bus_store_t *self = NULL;
    if (!dir || !db_names) {
        rc = BUS_EINVAL;
        goto done;
    }
    int ndbs = 0;
    while (db_names [ndbs]) {
        size_t len = strlen (db_names [ndbs]);
        if (ndbs == S_MAX_DBS || len == 0 || len > S_DB_NAME_MAX) {
            bus_error ("store: bad database list (max %d names of 1..%d bytes)",
                       S_MAX_DBS, S_DB_NAME_MAX);
            rc = BUS_EINVAL;
            goto done;
        }
        ndbs++;
    }
    struct stat st;
    if ((rc = s_mkdirs (dir, &st)))
        goto done;
    self = calloc (1, sizeof *self);
    if (!self) {
        rc = BUS_ENOMEM;
        goto done;
    }
    self->dev = st.st_dev;
    self->ino = st.st_ino;
    pthread_mutex_lock (&s_open_lock);
    locked = true;
    for (bus_store_t *other = s_open_list; other; other = other->next)
        if (other->dev == self->dev && other->ino == self->ino) {
            bus_error ("store: %s is already open in this process", dir);
            rc = BUS_ESTATE;
            goto done;
        }
    int mrc = mdb_env_create (&self->env);
    if (!mrc)
        mrc = mdb_env_set_maxdbs (self->env, (MDB_dbi) ndbs);
    if (!mrc)
        mrc = mdb_env_set_mapsize (self->env, map_size? map_size: S_DEFAULT_MAP);
    if (!mrc)
        mrc = mdb_env_open (self->env, dir, MDB_NOTLS, 0600);
    if (!mrc) {
        int dead = 0;
        mrc = mdb_reader_check (self->env, &dead);
        if (dead > 0)
            bus_warn ("store: cleared %d stale reader slot(s) in %s", dead, dir);
    }
    if (!mrc)
        mrc = mdb_txn_begin (self->env, NULL, 0, &txn);
    for (int i = 0; !mrc && i < ndbs; i++) {
        mrc = mdb_dbi_open (txn, db_names [i], MDB_CREATE, &self->dbis [i]);
        self->names [i] = mrc? NULL: strdup (db_names [i]);
        if (!mrc && !self->names [i])
            mrc = ENOMEM;
        self->ndbs = i + 1;
    }
    if (!mrc) {
        mrc = mdb_txn_commit (txn);
        txn = NULL;
    }
    if (mrc) {
        rc = s_map (mrc, "open");
        bus_error ("store: cannot open %s", dir);
        goto done;
    }
    self->max_key = (size_t) mdb_env_get_maxkeysize (self->env);
    self->next = s_open_list;
    s_open_list = self;
    *out = self;
    self = NULL;
done:
    if (locked)
        pthread_mutex_unlock (&s_open_lock);
    if (txn)
        mdb_txn_abort (txn);
    bus_store_destroy (&self);
    return rc;
}


/*  Close the environment (every transaction must be finished) and free
    the store; accepts NULL, nulls the caller's pointer. */
void
bus_store_destroy (bus_store_t **self_p)
{
    assert (self_p);
    bus_store_t *self = *self_p;
    if (!self)
        return;
    pthread_mutex_lock (&s_open_lock);
    for (bus_store_t **p = &s_open_list; *p; p = &(*p)->next)
        if (*p == self) {
            *p = self->next;
            break;
        }
    pthread_mutex_unlock (&s_open_lock);
    for (int i = 0; i < self->ndbs; i++)
        free (self->names [i]);
    if (self->env)
        mdb_env_close (self->env);
    free (self);
    *self_p = NULL;
}


/*  Index of the database called name, or BUS_ENOTFOUND. */
int
bus_store_db (bus_store_t *self, const char *name)
{
    assert (self);
    for (int i = 0; name && i < self->ndbs; i++)
        if (strcmp (self->names [i], name) == 0)
            return i;
    return BUS_ENOTFOUND;
}


/*  Begin a transaction. A full reader table (MDB_READERS_FULL) is retried
    once after clearing slots held by dead processes; a map grown by
    another process (MDB_MAP_RESIZED) is adopted and retried once. Returns
    NULL on failure (logged). */
bus_txn_t *
bus_txn_begin (bus_store_t *self, bool write)
{
    assert (self);
    bus_txn_t *txn = calloc (1, sizeof *txn);
    if (!txn) {
        bus_error ("store: out of memory beginning a transaction");
        return NULL;
    }
    unsigned flags = write? 0: MDB_RDONLY;
    bus_txn_t *parent = write && s_group && s_group->store == self? s_group: NULL;
    int rc = mdb_txn_begin (self->env, parent? parent->txn: NULL, flags, &txn->txn);
    if (rc == MDB_READERS_FULL) {
        int dead = 0;
        mdb_reader_check (self->env, &dead);
        rc = mdb_txn_begin (self->env, parent? parent->txn: NULL, flags, &txn->txn);
    }
    else
    if (rc == MDB_MAP_RESIZED) {
        mdb_env_set_mapsize (self->env, 0);
        rc = mdb_txn_begin (self->env, parent? parent->txn: NULL, flags, &txn->txn);
    }
    if (rc) {
        s_map (rc, write? "begin write": "begin read");
        free (txn);
        return NULL;
    }
    txn->store = self;
    txn->write = write;
    txn->parent = parent;
    return txn;
}

void
bus_txn_group (bus_txn_t *group)
{
    assert (!group || group->write);
    s_group = group;
}

bus_txn_t *
bus_txn_group_current (void)
{
    return s_group;
}

bus_txn_t *
bus_txn_parent (bus_txn_t *self)
{
    return self->parent;
}


/*  Close the cursors a read transaction kept (a write transaction keeps
    none: LMDB frees its cursors with it). */
static void
s_cursors_close (bus_txn_t *self)
{
    for (int i = 0; i < self->store->ndbs; i++)
        if (self->cursors [i]) {
            mdb_cursor_close (self->cursors [i]);
            self->cursors [i] = NULL;
        }
}


/*  Run (committed) or drop (not) a transaction's hooks, in order. */
static void
s_hooks_end (bus_txn_t *self, bool committed)
{
    while (self->hooks) {
        s_hook_t *h = self->hooks;
        self->hooks = h->next;
        h->fn (h->arg, committed);
        free (h);
    }
    self->hooks_tail = NULL;
}

/*  Commit, or abort when the sticky error is set (returning it). The
    transaction is freed and *txn_p nulled in every case. A nested
    transaction's hooks join its group's; a top one's run once the commit
    has returned. */
int
bus_txn_commit (bus_txn_t **txn_p)
{
    assert (txn_p);
    bus_txn_t *self = *txn_p;
    if (!self)
        return BUS_EINVAL;
    int rc = self->error;
    s_cursors_close (self);
    if (rc)
        mdb_txn_abort (self->txn);
    else
        rc = s_map (mdb_txn_commit (self->txn), "commit");
    if (rc == 0 && self->parent && self->hooks) {
        if (self->parent->hooks_tail)
            self->parent->hooks_tail->next = self->hooks;
        else
            self->parent->hooks = self->hooks;
        self->parent->hooks_tail = self->hooks_tail;
        self->hooks = self->hooks_tail = NULL;
    }
    s_hooks_end (self, rc == 0);
    if (self->data_free)
        self->data_free (self->data);
    free (self);
    *txn_p = NULL;
    return rc;
}


/*  Abort and free; accepts NULL and nulls *txn_p. */
void
bus_txn_abort (bus_txn_t **txn_p)
{
    assert (txn_p);
    bus_txn_t *self = *txn_p;
    if (!self)
        return;
    s_cursors_close (self);
    mdb_txn_abort (self->txn);
    s_hooks_end (self, false);
    if (self->data_free)
        self->data_free (self->data);
    free (self);
    *txn_p = NULL;
}

int
bus_txn_on_commit (bus_txn_t *self, bus_txn_hook_fn *fn, void *arg)
{
    assert (self && fn);
    s_hook_t *h = self->write ? calloc (1, sizeof *h) : NULL;
    if (!h) {
        fn (arg, false);
        if (self->write)
            bus_txn_fail (self, BUS_ENOMEM);
        return self->write ? BUS_ENOMEM : BUS_EINVAL;
    }
    h->fn = fn;
    h->arg = arg;
    if (self->hooks_tail)
        self->hooks_tail->next = h;
    else
        self->hooks = h;
    self->hooks_tail = h;
    return 0;
}

void
bus_txn_set_data (bus_txn_t *self, void *data, void (*data_free) (void *data))
{
    self->data = data;
    self->data_free = data_free;
}

void *
bus_txn_data (bus_txn_t *self)
{
    return self->data;
}


/*  Release a read transaction's snapshot, keeping the handle, its reader
    slot and its cursors for bus_txn_renew. */
int
bus_txn_reset (bus_txn_t *self)
{
    assert (self);
    if (self->write)
        return BUS_EINVAL;
    if (!self->reset) {
        mdb_txn_reset (self->txn);
        self->reset = true;
    }
    return 0;
}


/*  Take a new snapshot (the latest commit) for a reset read transaction;
    its cursors are renewed lazily, at their next use. */
int
bus_txn_renew (bus_txn_t *self)
{
    assert (self);
    if (self->write || !self->reset)
        return BUS_EINVAL;
    int rc = s_map (mdb_txn_renew (self->txn), "renew");
    if (rc == 0) {
        self->reset = false;
        self->stale = ~(uint64_t) 0;
    }
    return rc;
}


/*  The id of the committed state a read transaction sees, or 0. */
uint64_t
bus_txn_snapshot (bus_txn_t *self)
{
    assert (self);
    return self->write || self->reset? 0: (uint64_t) mdb_txn_id (self->txn);
}


/*  Poison a write transaction from outside. */
void
bus_txn_fail (bus_txn_t *self, int code)
{
    assert (self && code < 0);
    if (!self->error)
        self->error = code;
}

/*  The sticky error so far, 0 if none. */
int
bus_txn_error (bus_txn_t *self)
{
    assert (self);
    return self->error;
}


/*  The dbi for database index db, through dbi. Returns 0 or BUS_EINVAL
    (logged) for an index outside the list given at open. */
static int
s_dbi (bus_txn_t *self, int db, MDB_dbi *dbi)
{
    assert (self);
    if (db < 0 || db >= self->store->ndbs) {
        bus_error ("store: no database with index %d", db);
        return BUS_EINVAL;
    }
    if (self->reset) {
        bus_error ("store: read transaction used while reset");
        return BUS_EINVAL;
    }
    *dbi = self->store->dbis [db];
    return 0;
}


/*  A cursor on database db for one scan: a read transaction's own cursor
    (opened once, renewed after a renew) unless a scan of db is already
    running, else a new one. Give it back with s_cursor_put. */
static int
s_cursor_get (bus_txn_t *self, int db, MDB_cursor **cursor)
{
    MDB_dbi dbi;
    int rc = s_dbi (self, db, &dbi);
    if (rc)
        return rc;
    uint64_t bit = (uint64_t) 1 << db;
    if (self->write || (self->busy & bit))
        return s_map (mdb_cursor_open (self->txn, dbi, cursor), "cursor open");
    if (!self->cursors [db])
        rc = s_map (mdb_cursor_open (self->txn, dbi, &self->cursors [db]), "cursor open");
    else
    if (self->stale & bit)
        rc = s_map (mdb_cursor_renew (self->txn, self->cursors [db]), "cursor renew");
    if (rc)
        return rc;
    self->stale &= ~bit;
    self->busy |= bit;
    *cursor = self->cursors [db];
    return 0;
}


/*  Give back a cursor from s_cursor_get: the transaction's own is kept,
    another one closed. */
static void
s_cursor_put (bus_txn_t *self, int db, MDB_cursor *cursor)
{
    if (cursor == self->cursors [db])
        self->busy &= ~((uint64_t) 1 << db);
    else
        mdb_cursor_close (cursor);
}


/*  As s_dbi, and check that the key is 1..max_key bytes. */
static int
s_check (bus_txn_t *self, int db, const void *key, size_t key_len, MDB_dbi *dbi)
{
    if (!key || key_len == 0 || key_len > self->store->max_key) {
        bus_error ("store: key of %zu bytes outside 1..%zu", key_len,
                   self->store->max_key);
        return BUS_EINVAL;
    }
    return s_dbi (self, db, dbi);
}


/*  The shared body of put, put_new and del: a no-op returning the sticky
    error once set; otherwise runs the operation and makes any failure
    sticky except the expected outcome not_sticky (BUS_EEXIST for put_new,
    BUS_ENOTFOUND for del), which is only returned. */
static int
s_write (bus_txn_t *self, int db, const void *key, size_t key_len,
         const void *val, size_t val_len, unsigned flags, bool del)
{
    assert (self);
    if (self->error)
        return self->error;
    MDB_dbi dbi;
    int rc = s_check (self, db, key, key_len, &dbi);
    if (rc == 0 && !val && val_len) {
        bus_error ("store: NULL value of %zu bytes", val_len);
        rc = BUS_EINVAL;
    }
    if (rc == 0) {
        MDB_val k = { key_len, (void *) key };
        MDB_val v = { val_len, (void *) val };
        int mrc = del? mdb_del (self->txn, dbi, &k, NULL)
                     : mdb_put (self->txn, dbi, &k, &v, flags);
        rc = s_map (mrc, del? "del": "put");
    }
    int not_sticky = del? BUS_ENOTFOUND: (flags & (MDB_NOOVERWRITE | MDB_APPEND))? BUS_EEXIST: 0;
    if (rc && rc != not_sticky)
        self->error = rc;
    return rc;
}


/*  Put, overwriting; returns the sticky error. */
int
bus_txn_put (bus_txn_t *self, int db, const void *key, size_t key_len,
             const void *val, size_t val_len)
{
    return s_write (self, db, key, key_len, val, val_len, 0, false);
}


/*  Put only if absent; BUS_EEXIST when present, and not sticky. */
int
bus_txn_put_new (bus_txn_t *self, int db, const void *key, size_t key_len,
                 const void *val, size_t val_len)
{
    return s_write (self, db, key, key_len, val, val_len, MDB_NOOVERWRITE, false);
}


/*  Put at the end (MDB_APPEND: a full page stays full, the key starts
    the next); BUS_EEXIST when the key does not sort after every other,
    and not sticky. */
int
bus_txn_put_append (bus_txn_t *self, int db, const void *key, size_t key_len,
                    const void *val, size_t val_len)
{
    return s_write (self, db, key, key_len, val, val_len, MDB_APPEND, false);
}


/*  Delete; BUS_ENOTFOUND when missing, and not sticky. */
int
bus_txn_del (bus_txn_t *self, int db, const void *key, size_t key_len)
{
    return s_write (self, db, key, key_len, NULL, 0, 0, true);
}


/*  Get the value of key, pointing into the map (valid until the end of
    the transaction). A transaction with a sticky error returns it. */
int
bus_txn_get (bus_txn_t *self, int db, const void *key, size_t key_len,
             const void **val, size_t *val_len)
{
    assert (self && val && val_len);
    if (self->error)
        return self->error;
    MDB_dbi dbi;
    int rc = s_check (self, db, key, key_len, &dbi);
    if (rc)
        return rc;
    MDB_val k = { key_len, (void *) key };
    MDB_val v;
    rc = s_map (mdb_get (self->txn, dbi, &k, &v), "get");
    if (rc == 0) {
        *val = v.mv_data;
        *val_len = v.mv_size;
    }
    return rc;
}


/*  The shared scan: positions at from (or the first key), then calls fn
    for each key while it is < to (when to is set) and starts with prefix
    (when prefix is set). fn's 1 stops with 0, a negative value stops with
    that value. The cursor is closed before returning. */
static int
s_scan (bus_txn_t *self, int db, const void *from, size_t from_len,
        const void *to, size_t to_len, const void *prefix, size_t prefix_len,
        bus_scan_fn *fn, void *arg)
{
    assert (self && fn);
    if (self->error)
        return self->error;
    MDB_cursor *cursor = NULL;
    int rc = s_cursor_get (self, db, &cursor);
    if (rc)
        return rc;
    MDB_dbi dbi = self->store->dbis [db];
    MDB_val k = { from_len, (void *) from }, v;
    MDB_val end = { to_len, (void *) to };
    int mrc = from && from_len? mdb_cursor_get (cursor, &k, &v, MDB_SET_RANGE)
                              : mdb_cursor_get (cursor, &k, &v, MDB_FIRST);
    while (mrc == 0) {
        if (to && mdb_cmp (self->txn, dbi, &k, &end) >= 0)
            break;
        if (prefix && (k.mv_size < prefix_len
                   ||  memcmp (k.mv_data, prefix, prefix_len) != 0))
            break;
        int frc = fn (k.mv_data, k.mv_size, v.mv_data, v.mv_size, arg);
        if (frc != 0) {
            rc = frc < 0? frc: 0;
            goto done;
        }
        mrc = mdb_cursor_get (cursor, &k, &v, MDB_NEXT);
    }
    if (mrc != MDB_NOTFOUND)
        rc = s_map (mrc, "scan");
done:
    s_cursor_put (self, db, cursor);
    return rc;
}


/*  Ordered scan of [from, to); NULL from is the first key, NULL to no
    bound. */
int
bus_txn_scan (bus_txn_t *self, int db, const void *from, size_t from_len,
              const void *to, size_t to_len, bus_scan_fn *fn, void *arg)
{
    return s_scan (self, db, from, from_len, to, to_len, NULL, 0, fn, arg);
}


/*  Ordered scan of every key that starts with prefix (an empty prefix
    matches every key). */
int
bus_txn_scan_prefix (bus_txn_t *self, int db, const void *prefix,
                     size_t prefix_len, bus_scan_fn *fn, void *arg)
{
    return s_scan (self, db, prefix, prefix_len, NULL, 0,
                   prefix? prefix: "", prefix_len, fn, arg);
}


/*  Last key and its value (pointing into the map), or BUS_ENOTFOUND when
    the database is empty. */
/*  The first or last entry of db (MDB_FIRST / MDB_LAST). */
static int
s_txn_edge (bus_txn_t *self, int db, MDB_cursor_op op, const void **key, size_t *key_len,
            const void **val, size_t *val_len)
{
    assert (self && key && key_len && val && val_len);
    if (self->error)
        return self->error;
    MDB_cursor *cursor = NULL;
    int rc = s_cursor_get (self, db, &cursor);
    if (rc)
        return rc;
    MDB_val k, v;
    rc = s_map (mdb_cursor_get (cursor, &k, &v, op), op == MDB_FIRST ? "first" : "last");
    if (rc == 0) {
        *key = k.mv_data;
        *key_len = k.mv_size;
        *val = v.mv_data;
        *val_len = v.mv_size;
    }
    s_cursor_put (self, db, cursor);
    return rc;
}

int
bus_txn_first (bus_txn_t *self, int db, const void **key, size_t *key_len,
               const void **val, size_t *val_len)
{
    return s_txn_edge (self, db, MDB_FIRST, key, key_len, val, val_len);
}

int
bus_txn_last (bus_txn_t *self, int db, const void **key, size_t *key_len,
              const void **val, size_t *val_len)
{
    return s_txn_edge (self, db, MDB_LAST, key, key_len, val, val_len);
}

/*  The last entry whose key starts with prefix: seek to the first key
    past every key with that prefix, then step back. */
int
bus_txn_last_prefix (bus_txn_t *self, int db, const void *prefix, size_t prefix_len,
                     const void **key, size_t *key_len, const void **val, size_t *val_len)
{
    assert (self && prefix && prefix_len && key && key_len && val && val_len);
    if (self->error)
        return self->error;
    if (prefix_len > 511)
        return BUS_ENOTFOUND;
    /* the first key after the prefix's range: the prefix plus one, with
       carry (all 0xff: no such key, the range runs to the end) */
    uint8_t end [511];
    size_t end_len = prefix_len;
    memcpy (end, prefix, prefix_len);
    while (end_len && end [end_len - 1] == 0xff)
        end_len--;
    if (end_len)
        end [end_len - 1]++;
    MDB_cursor *cursor = NULL;
    int rc = s_cursor_get (self, db, &cursor);
    if (rc)
        return rc;
    MDB_val k = { .mv_size = end_len, .mv_data = end }, v;
    int mrc = end_len ? mdb_cursor_get (cursor, &k, &v, MDB_SET_RANGE) : MDB_NOTFOUND;
    mrc = mrc == 0 ? mdb_cursor_get (cursor, &k, &v, MDB_PREV)
        : mrc == MDB_NOTFOUND ? mdb_cursor_get (cursor, &k, &v, MDB_LAST) : mrc;
    rc = s_map (mrc, "last_prefix");
    if (rc == 0 && (k.mv_size < prefix_len || memcmp (k.mv_data, prefix, prefix_len)))
        rc = BUS_ENOTFOUND;
    if (rc == 0) {
        *key = k.mv_data;
        *key_len = k.mv_size;
        *val = v.mv_data;
        *val_len = v.mv_size;
    }
    s_cursor_put (self, db, cursor);
    return rc;
}

/*  Store v big-endian in out, so that numeric order is key order. */
void
bus_u64_to_key (uint64_t v, uint8_t out [8])
{
    for (int i = 7; i >= 0; i--) {
        out [i] = (uint8_t) v;
        v >>= 8;
    }
}


/*  Read a big-endian u64 key. */
uint64_t
bus_key_to_u64 (const uint8_t in [8])
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | in [i];
    return v;
}
