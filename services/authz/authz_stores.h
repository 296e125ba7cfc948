/*  authz_stores.h — the registry of OpenFGA stores (tenants) in one authz.

    Each store has an OpenFGA identity ({id (a ULID), name, created_at,
    updated_at}) and a number (a uint32, never reused) that prefixes every
    one of its keys in the engine's databases (authz_tuples.h). The
    registry is the authz_stores database:

      'H'            -> the highest number ever given (4 bytes, big-endian)
      'I' id         -> number (4 bytes): live stores only, by id
      'N' number     -> state ('L' live, 'D' deleted) then the record JSON

    Deleting a store, in one transaction, removes its 'I' entry and marks
    its 'N' record 'D': lookups by id fail at once, and every engine
    transaction that checks the store (authz_store_live) sees it gone.
    Its keys are then reclaimed by authz_stores_reclaim, a bounded number
    per call (the service calls it from a timer), and the 'N' record goes
    last, once no key of the store is left.

    All functions work inside the caller's transaction (read or write as
    stated) and return 0 or a negative code: BUS_E* from the store,
    BUS_ENOTFOUND for a store that is not (or no longer) there, or an
    engine error (-2000 validation, -2007 bad token) with err set.
*/
#ifndef AUTHZ_STORES_H
#define AUTHZ_STORES_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include "bus_store.h"
#include "authz_error.h"

#define AUTHZ_STORES_PAGE_DEFAULT 50
#define AUTHZ_STORES_PAGE_MAX    100
#define AUTHZ_STORE_NAME_MAX      64    /* bytes of a store's name */

/*  Create a store named name (1..AUTHZ_STORE_NAME_MAX bytes, printable)
    in write txn db, under id (a 26-char ULID; NULL: a new one). Returns
    0 with *record (new reference) and *number, -2000 (bad name), BUS_E*. */
int authz_stores_create (bus_txn_t *txn, int db, const char *name, const char *id,
                         json_t **record, uint32_t *number, authz_error_t *err)
    __attribute__((warn_unused_result));

/*  The live store id: 0 with *record (new reference, may be NULL when
    not wanted) and *number, or BUS_ENOTFOUND. */
int authz_stores_get (bus_txn_t *txn, int db, const char *id, json_t **record, uint32_t *number);

/*  Live stores by id (creation order), a page of page_size (0 = 50, at
    most 100) after token ("" or NULL: from the start), only those named
    name when name is given. *stores: new array of records; *token_out:
    new string, "" when no more. */
int authz_stores_list (bus_txn_t *txn, int db, const char *name, size_t page_size,
                       const char *token, json_t **stores, char **token_out, authz_error_t *err);

/*  Delete the live store id in write txn (see the header comment); its
    number in *number. Returns 0 or BUS_ENOTFOUND. */
int authz_stores_delete (bus_txn_t *txn, int db, const char *id, uint32_t *number);

/*  Called for each key reclaimed: dbs [i] is the database it was in. */
typedef void (authz_reclaim_fn) (bus_txn_t *txn, size_t i, const void *key, size_t key_len, void *arg);

/*  Reclaim up to max_keys keys of deleted stores from the n_dbs engine
    databases dbs, in write txn; a deleted store whose keys are all gone
    loses its 'N' record too. *more: a deleted store remains (call again).
    *reclaimed: keys deleted. */
int authz_stores_reclaim (bus_txn_t *txn, int db, const int *dbs, size_t n_dbs, size_t max_keys,
                          authz_reclaim_fn *fn, void *arg, size_t *reclaimed, bool *more);

/*  Every live store, in number order: fn (record, number, arg) returning
    non-zero stops. */
typedef int (authz_stores_fn) (json_t *record, uint32_t number, void *arg);
int authz_stores_each (bus_txn_t *txn, int db, authz_stores_fn *fn, void *arg);

/*  Move every key of an engine database written by an authz from before
    stores (no prefix) under number's prefix, in write txn, values
    unchanged; keys already under a number stay. Done once, when the
    registry is made. */
int authz_stores_migrate (bus_txn_t *txn, int db, uint32_t number)
    __attribute__((warn_unused_result));

#endif
