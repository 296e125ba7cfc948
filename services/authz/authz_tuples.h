/*  authz_tuples.h — models, relationship tuples and the changelog on LMDB.

    An authz_store_t keeps OpenFGA stores (tenants) in four named
    databases of a bus_store environment (names in authz_store_db_names),
    every key starting with the store's number (S = 4 bytes, big-endian,
    AUTHZ_STORE_PREFIX), so that a store's keys are one contiguous range
    of each database:

      authz_models   S model id (26-char ULID, sorts by time) -> model JSON
      authz_tuples   S object \0 relation \0 user \0 -> condition \0 context \0
                     (check/expand/list-users: all users of object#relation)
      authz_users    S user \0 object \0 relation \0 -> "" (reverse index:
                     Read by user, objects of a user)
      authz_changes  S big-endian u64 sequence -> change JSON

    Which stores exist is authz_stores.h's registry (the fifth database,
    authz_stores). Calls work on the store selected with
    authz_store_select (by default AUTHZ_STORE_FIRST, unchecked: an
    engine without a registry, as in tests and `sanctumctl authz test`).
    A store selected `checked` is looked up in the registry inside every
    transaction that reads or writes it (authz_store_live): once its
    deletion commits, no read or write begun after sees anything of it,
    while its keys are reclaimed in the background.

    Keys and values end with NUL bytes so the strings handed to scan
    callbacks are C strings pointing straight into the map (valid only
    until the end of the transaction).

    Tuple cache: the stored tuples of an object#relation read in full by
    authz_store_scan_users, when there are at most AUTHZ_TUPLE_CACHE_SET
    of them (none counts), are kept in memory and tagged with the read's
    snapshot (bus_txn_snapshot, LMDB's last committed transaction id). A
    later read whose snapshot is the same, i.e. with no commit to the
    environment in between, from this or any other process, is served
    from memory; any commit makes every set stale. The table has two ways
    per hash and AUTHZ_TUPLE_CACHE_SLOTS sets, allocated on first use (2
    MiB, plus each set: at most AUTHZ_TUPLE_CACHE_BYTES, typically under
    100); a set hit again outlives sets read once. Only reads from
    authz_store_read_begin use the cache, and a replaced set is freed
    only once none of them is open, so tuples handed to scan callbacks
    stay valid until the read ends.

    An authz_store_t (its model and tuple caches, its kept read
    transaction) is used by one thread at a time.

    Write follows OpenFGA: at most 100 writes+deletes per request, deletes
    applied before writes, a tuple twice in one request is error 2004,
    writing an existing tuple or deleting a missing one is error 2017
    unless on_duplicate / on_missing is "ignore"; every written tuple is
    validated against the model (2000).
*/
#ifndef AUTHZ_TUPLES_H
#define AUTHZ_TUPLES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include "bus_store.h"
#include "authz_error.h"
#include "authz_model.h"

#define AUTHZ_MAX_WRITE_TUPLES   100   /* writes + deletes per Write */
#define AUTHZ_MAX_CONTEXTUAL     100   /* contextual tuples per request */
#define AUTHZ_MAX_FIELD          512   /* object, relation or user length: buffers */

/*  Identifier limits, in bytes (PROTOCOL.md 10.3). Per field, OpenFGA's
    (its TupleKey: object 256, relation 50, user 512; a type name 254).
    A tuple is stored under object \0 relation \0 user \0 (and the reverse
    index under user \0 object \0 relation \0), and LMDB caps a key at 511
    bytes: a written or contextual tuple's three fields together hold at
    most AUTHZ_MAX_TUPLE_KEY bytes. A query may name longer ones (a check
    of a 512-byte user can be true through a wildcard); a store lookup
    whose key could not fit finds nothing, never reaches LMDB. */
#define AUTHZ_MAX_OBJECT         256   /* "type:id" */
#define AUTHZ_MAX_RELATION        50
#define AUTHZ_MAX_USER           512   /* "type:id", "type:*" or "type:id#relation" */
#define AUTHZ_MAX_TYPE           254
#define AUTHZ_STORE_KEY_MAX      511   /* LMDB's default mdb_env_get_maxkeysize */
#define AUTHZ_STORE_PREFIX         4   /* the store's number before every key */
#define AUTHZ_STORE_FIRST          1   /* the first store's number (the default store's) */
#define AUTHZ_MAX_TUPLE_KEY      (AUTHZ_STORE_KEY_MAX - 3 - AUTHZ_STORE_PREFIX)   /* 504 */

/*  The registry's keys and states (authz_stores.h; here because a store
    checks liveness itself). */
#define AUTHZ_STORES_NUMBER      'N'   /* 'N' number -> state, record JSON */
#define AUTHZ_STORES_ID          'I'   /* 'I' id -> number (live stores only) */
#define AUTHZ_STORES_LIVE        'L'
#define AUTHZ_STORES_DELETED     'D'
#define AUTHZ_MAX_CONTEXT_BYTES 8192   /* a tuple's condition context as JSON */
#define AUTHZ_READ_PAGE_DEFAULT   50
#define AUTHZ_READ_PAGE_MAX      100
#define AUTHZ_CHANGES_PAGE_MAX   100
#define AUTHZ_MAX_MODELS_CACHED   64
#ifndef AUTHZ_TUPLE_CACHE_SLOTS
#define AUTHZ_TUPLE_CACHE_SLOTS 65536  /* tuple sets cached (a power of 2, >= 2) */
#endif
#define AUTHZ_TUPLE_CACHE_SET      7   /* tuples in a cached set, at most */
#define AUTHZ_TUPLE_CACHE_BYTES 1024   /* bytes of a cached set, at most */

/*  Flags for authz_store_write. */
#define AUTHZ_WRITE_IGNORE_DUPLICATE 1   /* on_duplicate: "ignore" */
#define AUTHZ_DELETE_IGNORE_MISSING  2   /* on_missing: "ignore" */

typedef struct authz_store_t authz_store_t;

/*  A relationship tuple. Strings are borrowed. condition NULL or "" means
    none; context is the condition's context (borrowed, may be NULL);
    context_text is the same as stored JSON text (set by scans only). */
typedef struct {
    const char *object;
    const char *relation;
    const char *user;
    const char *condition;
    json_t *context;
    const char *context_text;
} authz_tuple_t;

/*  The database names an environment must have for an authz store
    (NULL-terminated). */
extern const char *const authz_store_db_names [];

/*  Attach to an open environment that has the authz databases; the store
    does not own bus. Returns 0, BUS_ENOTFOUND (a database missing),
    BUS_ENOMEM. */
int authz_store_new (authz_store_t **out, bus_store_t *bus)
    __attribute__((warn_unused_result));

/*  Open (create) an environment of its own at dir (map_size 0 = 1 GiB). */
int authz_store_open (authz_store_t **out, const char *dir, size_t map_size)
    __attribute__((warn_unused_result));

/*  Close; accepts NULL, nulls the caller's pointer. */
void authz_store_destroy (authz_store_t **self_p);

/*  The environment underneath. */
bus_store_t *authz_store_bus (authz_store_t *self);

/*  Select the store (by number) that the next calls work on; checked:
    each transaction checks it is live in the registry (a store deleted
    is then AUTHZ_ESTORE_NOT_FOUND). Models cached stay cached per store. */
void authz_store_select (authz_store_t *self, uint32_t number, bool checked);

/*  The number selected. */
uint32_t authz_store_selected (authz_store_t *self);

/*  A store number as the key prefix. */
void authz_store_prefix (uint32_t number, uint8_t out [AUTHZ_STORE_PREFIX]);

/*  0 when the selected store is live in txn's snapshot (or unchecked),
    else -AUTHZ_ESTORE_NOT_FOUND (err set) or a BUS_E* code. */
int authz_store_live (authz_store_t *self, bus_txn_t *txn, authz_error_t *err);

/*  An RFC 3339 time ("2026-12-04T18:47:46Z", fractions and offsets
    allowed) as the changelog's timestamps are written: UTC, milliseconds
    ("2026-12-04T18:47:46.000Z"), which sort as text. Returns 0 or -1. */
int authz_timestamp_normalize (const char *in, char out [32]);

/*  A read transaction on the latest committed state for one request:
    the store keeps one reset transaction between requests and renews it
    here (no allocation, no reader-slot search); when it is already in use
    (a nested read) a new one is begun. End it with authz_store_read_end,
    not bus_txn_abort (which is also correct, only slower next time).
    Returns NULL on failure (logged). */
bus_txn_t *authz_store_read_begin (authz_store_t *self);

/*  End a read from authz_store_read_begin: the transaction is reset and
    kept for the next read (or aborted when one is kept already). Accepts
    a NULL *txn_p; nulls it. */
void authz_store_read_end (authz_store_t *self, bus_txn_t **txn_p);

/*  Compile, then store a model under a new ULID (copied to id_out).
    Returns 0, -2000 (err set), or a BUS_E* code. */
int authz_store_write_model (authz_store_t *self, json_t *model,
                             char id_out [AUTHZ_MODEL_ID_LEN + 1],
                             authz_error_t *err)
    __attribute__((warn_unused_result));

/*  The compiled model with id (NULL or "" = the latest). Owned by the
    store, valid until it is destroyed. Returns 0, -2001 not found, -2020
    no model yet. */
int authz_store_model (authz_store_t *self, const char *id,
                       const authz_model_t **out, authz_error_t *err);

/*  The ids of all models, newest first, as a new JSON array. */
json_t *authz_store_model_ids (authz_store_t *self);

/*  Write and delete tuples in one transaction; see the header comment.
    Returns 0, -2000, -2004, -2017, -2033 (too many), BUS_E*. */
int authz_store_write (authz_store_t *self, const authz_model_t *model,
                       const authz_tuple_t *writes, size_t n_writes,
                       const authz_tuple_t *deletes, size_t n_deletes,
                       int flags, authz_error_t *err)
    __attribute__((warn_unused_result));

/*  What a write did: tuples written and deleted, and those the ignore
    flags left as they were (already there, already gone). */
typedef struct {
    size_t written, deleted, existing, missing;
} authz_write_count_t;

/*  authz_store_write, saying into count (may be NULL; zeroed first) what
    it did once it returns 0. */
int authz_store_write_counted (authz_store_t *self, const authz_model_t *model,
                               const authz_tuple_t *writes, size_t n_writes,
                               const authz_tuple_t *deletes, size_t n_deletes,
                               int flags, authz_write_count_t *count, authz_error_t *err)
    __attribute__((warn_unused_result));

/*  Read tuples matching filter: object "type:id" or "type:" (type only)
    or NULL, relation or NULL, user or NULL (at least object type or
    user). page_size 0 = 50, max 100. token NULL or "" for the first page.
    *tuples_out: a new JSON array of {key {object, relation, user,
    condition?}, timestamp}; *token_out: a new string ("" when done).
    Returns 0, -2000, -2007 bad token, BUS_E*. */
int authz_store_read (authz_store_t *self, const authz_tuple_t *filter,
                      size_t page_size, const char *token,
                      json_t **tuples_out, char **token_out, authz_error_t *err);

/*  Changes in write order, optionally only for object type (NULL = all)
    and only those at or after start_time (RFC 3339; NULL = all; ignored
    with a token, as OpenFGA ignores it; a bad time is -2000).
    *changes_out: a new JSON array of {tuple_key, operation
    ("TUPLE_OPERATION_WRITE"|"TUPLE_OPERATION_DELETE"), timestamp};
    *token_out: a new string to continue with (the same position when no
    change is left, so polling works). Returns 0, -2007, BUS_E*. */
int authz_store_read_changes (authz_store_t *self, const char *type, const char *start_time,
                              size_t page_size, const char *token,
                              json_t **changes_out, char **token_out,
                              authz_error_t *err);

/*  Check identifiers against the limits above: object, relation and user
    each within its own (NULL: absent, as in a read filter), and with
    whole_key the three together within AUTHZ_MAX_TUPLE_KEY. Returns 0 or
    -code with err naming the field and its length (the ids themselves,
    which may be long, are not repeated). */
int authz_tuple_check_limits (const char *object, const char *relation, const char *user,
                              bool whole_key, int code, authz_error_t *err);

/*  Validate t against model as OpenFGA validates a tuple for writing,
    identifier limits included (whole key). Returns 0 or -code with err
    set (code given by the caller: 2000 for Write, 2027 for contextual
    tuples). */
int authz_tuple_validate (const authz_model_t *model, const authz_tuple_t *t,
                          int code, authz_error_t *err);

/*  True if a stored tuple is still valid under model (OpenFGA silently
    skips tuples a newer model no longer allows). */
bool authz_tuple_is_valid (const authz_model_t *model, const authz_tuple_t *t);

/*  Fill t from an API tuple key {object, relation, user, condition?
    {name, context?}} (pointers into js). Returns 0 or -2000. */
int authz_tuple_from_json (authz_tuple_t *t, json_t *js, authz_error_t *err);

/*  A new API tuple key JSON for t. */
json_t *authz_tuple_to_json (const authz_tuple_t *t);

/*  How the store commits its writes (authz_store_write_model and
    authz_store_write). By default with bus_txn_commit; a service sets its
    own to append the event describing the change to its outbox in the SAME
    transaction, then commit and publish (bus_service_commit). change
    describes the write: {"authorization_model_id"} for a model,
    {"authorization_model_id", "writes", "deletes"} for tuples (borrowed).
    The function must consume *txn_p (commit or abort) and return the
    commit's result. */
typedef int (authz_commit_fn) (bus_txn_t **txn_p, json_t *change, void *arg);
void authz_store_set_commit (authz_store_t *self, authz_commit_fn *fn, void *arg);

/*  Callback for scans: return 0 to go on, 1 to stop, negative to fail. */
typedef int (authz_tuple_fn) (const authz_tuple_t *t, void *arg);

/*  Every stored tuple of object#relation (in txn; served from the tuple
    cache when txn came from authz_store_read_begin and no commit happened
    since the set was cached). Tuples are valid until the end of txn. */
int authz_store_scan_users (authz_store_t *self, bus_txn_t *txn,
                            const char *object, const char *relation,
                            authz_tuple_fn *fn, void *arg);

/*  Every stored tuple whose object has the given type (in txn). */
int authz_store_scan_type (authz_store_t *self, bus_txn_t *txn,
                           const char *type, authz_tuple_fn *fn, void *arg);

/*  Every stored tuple <type>:<id>#relation@user (exactly that user
    string), by the reverse index: object, relation and user are set;
    condition and context are not (they are not in that index). */
int authz_store_scan_objects (authz_store_t *self, bus_txn_t *txn, const char *user,
                              const char *type, const char *relation,
                              authz_tuple_fn *fn, void *arg);

/*  The stored tuple object#relation@user: 0 and *out (strings into the
    map), or BUS_ENOTFOUND. */
int authz_store_get (authz_store_t *self, bus_txn_t *txn, const char *object,
                     const char *relation, const char *user, authz_tuple_t *out);

#endif
