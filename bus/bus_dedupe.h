/*  bus_dedupe.h — what a service remembers of the requests with effects
    it answered, so that a retry (the same principal and request id) gets
    the first answer instead of doing the work again.

    Two layers:

    - Memory (bus_dedupe_t): the encoded reply frames, for a short window
      (dedupe_ttl_ms), bounded in bytes and in entries, in all and per
      principal. When a principal is over its share, its own oldest
      replies go; when the whole is over its bound, the oldest replies of
      the principal holding the most go. So one principal's flood evicts
      only its own replies (and those of whoever holds more than it), never
      a quiet principal's. An entry still being worked on (no reply yet:
      "waiting") is never evicted by the bounds, only by its time, so a
      retry of a request in progress never runs it twice. A reply larger
      than a principal's share is not kept in memory (the durable record
      answers its retry).

    - Durable (bus_dedupe_record / _recall / _expire): the outcome of a
      request, written in the write transaction of its effect, so that
      both commit or neither does; keyed by (principal, id), with the hash
      of (type, body) so that a reused id with another body is told apart;
      kept for dedupe_retention_s, then deleted in the background through
      a time index (bounded batches). The bytes they take are counted per
      principal and in all, in the same transactions, and bounded: a
      principal over its quota has its outcomes remembered in memory only
      until its records expire, so that one client's flood cannot fill the
      store, nor keep another's outcomes from being recorded. Three
      databases of the service's store: BUS_DEDUPE_DB, BUS_DEDUPE_TIME_DB
      and BUS_DEDUPE_USAGE_DB.

    The request hash is BLAKE2b-256 over the type, a NUL, and the body
    serialised as compact JSON with sorted keys (so the order of a map's
    members does not matter).

    Threads: a bus_dedupe_t is used by one thread (the reactor). The
    durable functions run on whichever thread holds the transaction.
    Errors: negative BUS_E* codes (bus_error.h).
*/
#ifndef BUS_DEDUPE_H
#define BUS_DEDUPE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus_store.h"

#define BUS_DEDUPE_HASH_LEN   32
#define BUS_DEDUPE_DB         "dedupe"          /* principal/id -> outcome */
#define BUS_DEDUPE_TIME_DB    "dedupe_time"     /* expiry (u64 BE, us) principal/id -> "" */
#define BUS_DEDUPE_USAGE_DB   "dedupe_usage"    /* principal, or "*" for all -> bytes (u64 BE) */

typedef struct bus_dedupe_t bus_dedupe_t;

/*  The bounds of the memory. */
typedef struct {
    size_t max_bytes;             /* every reply kept, with its overhead */
    size_t max_entries;
    size_t principal_bytes;       /* one principal's share */
    size_t principal_entries;
    int64_t ttl_ms;               /* how long a reply is kept after it is sent */
} bus_dedupe_limits_t;

/*  What a lookup found. */
typedef enum {
    BUS_DEDUPE_NONE = 0,          /* not remembered: handle the request */
    BUS_DEDUPE_WAITING,           /* being worked on: no reply of its own */
    BUS_DEDUPE_REPLY,             /* the remembered reply: send it again */
    BUS_DEDUPE_CONFLICT           /* the id was used for another request */
} bus_dedupe_found_t;

/*  The hash of a request's type and body into out. */
void bus_dedupe_hash (uint8_t out [BUS_DEDUPE_HASH_LEN], const char *type, json_t *body);

/* --- memory --------------------------------------------------------------- */

/*  A memory with these bounds, or NULL (out of memory). */
bus_dedupe_t *bus_dedupe_new (const bus_dedupe_limits_t *limits);

/*  Free; accepts NULL; nulls the caller's pointer. */
void bus_dedupe_destroy (bus_dedupe_t **self_p);

/*  Look (principal, id) up. On BUS_DEDUPE_REPLY, *data and *len give the
    encoded reply, valid until the next call that changes the memory. */
bus_dedupe_found_t bus_dedupe_lookup (bus_dedupe_t *self, const char *principal, const char *id,
                                      const uint8_t hash [BUS_DEDUPE_HASH_LEN],
                                      const uint8_t **data, size_t *len);

/*  Remember (principal, id) with its reply (data, len: copied), or as
    waiting (data NULL), replacing what was there; then apply the bounds.
    Returns 0, or BUS_ENOMEM (nothing remembered). */
int bus_dedupe_put (bus_dedupe_t *self, const char *principal, const char *id,
                    const uint8_t hash [BUS_DEDUPE_HASH_LEN], const uint8_t *data, size_t len,
                    int64_t now_ms);

/*  The reply of a waiting entry (copied), its time restarted; nothing
    when the entry is gone. Returns 0, BUS_ENOTFOUND or BUS_ENOMEM. */
int bus_dedupe_reply (bus_dedupe_t *self, const char *principal, const char *id,
                      const uint8_t *data, size_t len, int64_t now_ms);

/*  Forget entries past their time. */
void bus_dedupe_trim (bus_dedupe_t *self, int64_t now_ms);

/*  Entries and bytes held, in all or (principal not NULL) by one. */
size_t bus_dedupe_size (bus_dedupe_t *self, const char *principal);
size_t bus_dedupe_bytes (bus_dedupe_t *self, const char *principal);

/*  Entries evicted by the bounds so far (not by their time). */
uint64_t bus_dedupe_evicted (bus_dedupe_t *self);

/* --- durable -------------------------------------------------------------- */

/*  Where and how much: the indexes of the three databases in the store,
    the longest outcome recorded with its reply, and the quotas. */
typedef struct {
    int db, time_db, usage_db;
    size_t record_max;            /* longer outcomes are recorded without their reply */
    uint64_t principal_bytes;     /* one principal's records, at most */
    uint64_t total_bytes;         /* everyone's */
} bus_dedupe_store_t;

/*  Record in txn (a write transaction) the outcome of (principal, id):
    outcome is {"body": ...} or {"error": {...}} (borrowed), kept until
    expires_us. An outcome whose JSON is longer than record_max is
    recorded without it (only that the request was done, and its size).
    Overwrites an earlier record of the same key. Returns 0; BUS_EFULL
    when the principal's or everyone's quota would be passed (nothing
    recorded; not sticky); or the store's error (then sticky in txn). */
int bus_dedupe_record (bus_txn_t *txn, const bus_dedupe_store_t *store, const char *principal,
                       const char *id, const uint8_t hash [BUS_DEDUPE_HASH_LEN], json_t *outcome,
                       int64_t expires_us);

/*  Bytes of records held by principal (NULL: by everyone), in txn. */
uint64_t bus_dedupe_usage (bus_txn_t *txn, const bus_dedupe_store_t *store, const char *principal);

/*  The recorded outcome of (principal, id) in txn (read or write).
    Returns BUS_DEDUPE_NONE, BUS_DEDUPE_CONFLICT (recorded with another
    hash), or BUS_DEDUPE_REPLY with *outcome (new reference) the recorded
    {"body"} or {"error"}, or {"large": N} for an outcome recorded
    without its reply. A record that does not decode counts as none
    (logged). */
bus_dedupe_found_t bus_dedupe_recall (bus_txn_t *txn, int db, const char *principal, const char *id,
                                      const uint8_t hash [BUS_DEDUPE_HASH_LEN], json_t **outcome);

/*  Delete in txn (a write transaction) up to max records whose time
    ended before now_us, oldest first, and count their bytes off. Returns
    the number deleted (>= 0) or an error. *more is set when more may be
    due. */
int bus_dedupe_expire (bus_txn_t *txn, const bus_dedupe_store_t *store, int64_t now_us, size_t max,
                       bool *more);

#endif
