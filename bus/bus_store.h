/*  bus_store.h — the LMDB wrapper every Sanctum process uses for its state.

    One environment per process under its data directory, a named database
    per record kind, opened once at bus_store_open(). Write transactions
    carry a sticky error (Knot DNS style): a sequence of puts is written
    straight and checked once at bus_txn_commit(). A commit fsyncs (no
    MDB_NOSYNC) before returning, so a reply or event sent after it is
    durable. Only one write transaction is open at a time (LMDB's rule).

    Ownership: values returned by bus_txn_get() and cursors point into the
    map and are valid only until the end of the transaction (or its
    bus_txn_reset).

    Reads: a read transaction keeps one LMDB cursor per database it has
    scanned (reused by every later scan of that database, and by a nested
    scan only when no scan of the database is running), and can be reset
    and renewed: a reader that keeps one transaction and calls
    bus_txn_renew / bus_txn_reset around each request does no allocation
    and no reader-slot search per request. A transaction (read or write)
    is used by one thread at a time.
*/
#ifndef BUS_STORE_H
#define BUS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct bus_store_t bus_store_t;
typedef struct bus_txn_t bus_txn_t;

/*  Open (creating the directory if needed, mode 0700) the environment at
    dir with the given map size in bytes (0 = 1 GiB default) and the NULL-
    terminated list of database names; db handles are indexes into that
    list (at most 64 names of 1..64 bytes). Returns 0, BUS_EIO, BUS_EINVAL,
    BUS_ENOMEM, or BUS_ESTATE when dir is already open in this process
    (LMDB forbids opening one environment twice in a process). */
int bus_store_open (bus_store_t **out, const char *dir, size_t map_size,
                    const char *const *db_names)
    __attribute__((warn_unused_result));

/*  Close; accepts NULL, nulls the caller's pointer. */
void bus_store_destroy (bus_store_t **self_p);

/*  Index of a named database, or BUS_ENOTFOUND. */
int bus_store_db (bus_store_t *self, const char *name);

/*  Begin a transaction (read-only unless write). Returns NULL only on
    failure (logged). */
bus_txn_t *bus_txn_begin (bus_store_t *self, bool write);

/*  Commit: returns the sticky error if any (and aborts instead), else the
    commit result. Always frees the transaction and nulls *txn_p. Returns 0,
    the sticky error, BUS_EFULL (map full), BUS_EIO. */
int bus_txn_commit (bus_txn_t **txn_p) __attribute__((warn_unused_result));

/*  Abort and free; accepts NULL; nulls *txn_p. Read transactions end
    with abort. */
void bus_txn_abort (bus_txn_t **txn_p);

/*  Reset a read transaction: release its snapshot (writers may reuse the
    pages it pinned) but keep its handle, reader slot and cursors, so that
    bus_txn_renew starts the next read without allocating. Every value
    and key read through it becomes invalid; until renewed, reads on it
    fail with BUS_EINVAL. Resetting a reset transaction is a no-op.
    Returns 0, or BUS_EINVAL for a write transaction. */
int bus_txn_reset (bus_txn_t *self);

/*  Renew a reset read transaction on the latest committed state. Returns
    0, BUS_EINVAL (a write transaction, or not reset), BUS_EFULL, BUS_EIO;
    after a failure the transaction is still reset: abort it (and begin a
    new one, which also adopts a map grown by another process). */
int bus_txn_renew (bus_txn_t *self) __attribute__((warn_unused_result));

/*  The id of the committed state a read transaction sees: it grows with
    every commit to the environment (from any process), so two reads with
    the same id saw the same data. 0 for a write transaction (its view is
    not a committed state) and for a reset one. */
uint64_t bus_txn_snapshot (bus_txn_t *self);

/*  The caller's data for this transaction (e.g. the events it carries),
    freed by data_free (may be NULL) when the transaction ends, commit or
    abort, unless set to NULL before. */
void bus_txn_set_data (bus_txn_t *self, void *data, void (*data_free) (void *data));
void *bus_txn_data (bus_txn_t *self);

/*  What a write transaction's caller keeps beside the store (e.g. a
    lookup table derived from what it stores) follows its commit: fn (arg,
    true) runs once the changes are durable, right after the commit
    returns, on the committing thread and before bus_service_commit
    publishes the events; fn (arg, false) when they never will be (abort,
    failed commit: then arg is only freed). In a group, a nested
    transaction's hooks wait for the group's commit (dropped, false, with
    the group or with its own abort). Hooks run in the order added.
    Returns 0; BUS_ENOMEM (fn (arg, false) run, the sticky error set) or
    BUS_EINVAL (a read transaction: fn (arg, false) run). */
typedef void (bus_txn_hook_fn) (void *arg, bool committed);
int bus_txn_on_commit (bus_txn_t *self, bus_txn_hook_fn *fn, void *arg);

/*  Group commit: while group (a write transaction) is this thread's
    group, every write transaction the thread begins on the same store is
    nested in it: its commit merges into the group (no fsync) and its abort
    undoes only itself; the group's own commit makes them all durable with
    one fsync, and the group is used for nothing else meanwhile. NULL ends
    the grouping (then commit or abort the group). */
void bus_txn_group (bus_txn_t *group);
bus_txn_t *bus_txn_group_current (void);
/*  The group a write transaction is nested in, or NULL. */
bus_txn_t *bus_txn_parent (bus_txn_t *self);

/*  The sticky error so far (0 if none). */
int bus_txn_error (bus_txn_t *self);

/*  Set the sticky error (when none is set yet), so that the transaction
    cannot commit: for callers whose own part of the transaction failed
    outside the store (an event that could not be encoded). code < 0. */
void bus_txn_fail (bus_txn_t *self, int code);

/*  Put (overwrite). On failure sets the sticky error; once set, later puts
    and dels are no-ops. Returns the sticky error. */
int bus_txn_put (bus_txn_t *self, int db, const void *key, size_t key_len,
                 const void *val, size_t val_len);

/*  Put only if absent: BUS_EEXIST if present (NOT sticky: the caller
    decides). */
int bus_txn_put_new (bus_txn_t *self, int db, const void *key, size_t key_len,
                     const void *val, size_t val_len);

/*  Put a key that sorts after every key of db (an event's sequence, a
    time): appended, so that the page it fills stays full and the next
    key starts a new one (LMDB's MDB_APPEND), where a put splits a full
    page in two half-empty ones: fewer pages per commit and in the file
    when keys grow. BUS_EEXIST (NOT sticky) when the key does not sort
    last: nothing written, put it otherwise. */
int bus_txn_put_append (bus_txn_t *self, int db, const void *key, size_t key_len,
                        const void *val, size_t val_len);

/*  Delete; a missing key is BUS_ENOTFOUND and is NOT sticky. */
int bus_txn_del (bus_txn_t *self, int db, const void *key, size_t key_len);

/*  Get: 0 with *val, *val_len pointing into the map, or BUS_ENOTFOUND. */
int bus_txn_get (bus_txn_t *self, int db, const void *key, size_t key_len,
                 const void **val, size_t *val_len);

/*  Ordered scan: calls fn for each key >= from (NULL = first) and < to
    (NULL = no bound), in key order; fn returns 0 to continue, 1 to stop,
    negative to stop with that error. Returns 0 or the error. */
typedef int (bus_scan_fn) (const void *key, size_t key_len,
                           const void *val, size_t val_len, void *arg);
int bus_txn_scan (bus_txn_t *self, int db,
                  const void *from, size_t from_len,
                  const void *to, size_t to_len,
                  bus_scan_fn *fn, void *arg);

/*  Same, for every key that starts with prefix. */
int bus_txn_scan_prefix (bus_txn_t *self, int db,
                         const void *prefix, size_t prefix_len,
                         bus_scan_fn *fn, void *arg);

/*  First / last key in the db (for sequence counters): 0 with pointers
    into the map, or BUS_ENOTFOUND when empty. */
int bus_txn_first (bus_txn_t *self, int db, const void **key, size_t *key_len,
                   const void **val, size_t *val_len);
int bus_txn_last (bus_txn_t *self, int db, const void **key, size_t *key_len,
                  const void **val, size_t *val_len);

/*  The last entry whose key starts with prefix (prefix_len >= 1): 0 with
    pointers into the map, or BUS_ENOTFOUND when there is none. */
int bus_txn_last_prefix (bus_txn_t *self, int db, const void *prefix, size_t prefix_len,
                         const void **key, size_t *key_len, const void **val, size_t *val_len);

/*  Big-endian u64 key helpers, so numeric keys sort. */
void bus_u64_to_key (uint64_t v, uint8_t out[8]);
uint64_t bus_key_to_u64 (const uint8_t in[8]);

#endif
