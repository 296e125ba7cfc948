/*  audit_log.h — the audit log: entries in order in LMDB, an RFC 6962
    Merkle tree over them, and its proofs read from stored subtree hashes.

    Storage (databases of the service's store, audit_log_db_names):
      audit_entries   leaf index (u64 BE) -> the entry's bytes (canonical
                      JSON, proto_canon.h); the last key gives the size
      audit_nodes     level (1 byte) + index at that level (u64 BE) -> the
                      hash of the complete subtree of 2^level leaves that
                      starts at leaf index << level (level 0: leaf hashes)
      audit_events    publisher + NUL + seq (u64 BE) -> leaf index: each
                      event (and each gap, by its first seq) is stored once
      audit_requests  principal + NUL + request id -> leaf index: an
                      audit.append retried after a restart appends nothing
                      (a keyed append's id: the index and a tag, what a
                      reuse of the id is checked against); principal +
                      NUL + idempotency key -> leaf index
    Appending leaf n stores its leaf hash and the hash of every subtree it
    completes (on average one more), so every stored subtree is perfect and
    aligned. Any range the RFC's recursion visits is either such a subtree
    (one read) or splits into O(log n) of them; a root costs popcount(n)
    reads, an inclusion or consistency proof O(log n) reads, nothing is
    rehashed from entries.

    Transactions: every function works in the caller's transaction (bus_txn),
    so the follower can store an event together with its high-water mark, and
    the writer's nested transactions group their commits. Writes need a write
    transaction; their errors are sticky in it (bus_store.h). Nothing is
    cached between transactions: the log object holds database handles only,
    and may be shared by threads that each use their own transactions.

    Errors: BUS_EINVAL (bad index or size, an empty or oversized entry),
    BUS_ENOTFOUND (no such entry), BUS_EEXIST (the event or request is
    already stored; *index is where), BUS_EIO / BUS_EFULL from the store,
    BUS_ESTATE when a stored subtree hash is missing (a damaged store).
*/
#ifndef AUDIT_LOG_H
#define AUDIT_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audit_merkle.h"
#include "bus_store.h"
#include "proto_msg.h"

#define AUDIT_ENTRY_MAX   (64 * 1024)   /* bytes of one entry */
#define AUDIT_PUB_MAX     128           /* bytes of a publisher's name */

typedef struct audit_log_t audit_log_t;

/*  The databases the log needs in its store (NULL-terminated); a service
    lists them among its own. */
extern const char *const audit_log_db_names [];

/*  A log on store, which must hold every database of audit_log_db_names.
    Returns 0, BUS_ENOTFOUND (a database is missing) or BUS_ENOMEM. */
int audit_log_new (audit_log_t **out, bus_store_t *store) __attribute__((warn_unused_result));
void audit_log_destroy (audit_log_t **self_p);

/*  The number of entries in the log as txn sees it. */
int audit_log_size (audit_log_t *self, bus_txn_t *txn, uint64_t *size);

/*  Append entry (len bytes, 1..AUDIT_ENTRY_MAX: the caller's canonical
    bytes) at the end; *index receives its leaf index. */
int audit_log_append (audit_log_t *self, bus_txn_t *txn, const void *entry, size_t len,
                      uint64_t *index);

/*  Append the entry of a request (principal, request id) once: a second
    call with the same pair appends nothing and returns BUS_EEXIST with the
    first one's index. */
int audit_log_append_request (audit_log_t *self, bus_txn_t *txn, const char *principal,
                              const char *request_id, const void *entry, size_t len,
                              uint64_t *index);

#define AUDIT_REQUEST_TAG_MAX  64     /* bytes of a keyed request's tag */

/*  Append the entry of a keyed request once per (principal, idem_key),
    which takes the request id's place: a second call with the key appends
    nothing and returns BUS_EEXIST with the first one's index, whatever its
    entry. The request id is recorded as well (once: an id recorded before
    stays as it was), with the key's index and tag (at most
    AUDIT_REQUEST_TAG_MAX bytes: the caller's record of the request, what
    a reuse of the id is checked against). */
int audit_log_append_keyed (audit_log_t *self, bus_txn_t *txn, const char *principal, const char *idem_key,
                            const char *request_id, const void *tag, size_t tag_len, const void *entry,
                            size_t len, uint64_t *index);

/*  Append the entry of event seq (>= 1) of publisher pub once: BUS_EEXIST
    with the stored index when (pub, seq) is already in the log. */
int audit_log_append_event (audit_log_t *self, bus_txn_t *txn, const char *pub, uint64_t seq,
                            const void *entry, size_t len, uint64_t *index);

/*  Append an event as the follower receives it (an envelope with pub and
    seq), once: the entry is the canonical JSON of
      {"kind":"event","pub":P,"seq":N,"type":T,"id":ID,"ts":TS,
       "traceparent":TP,"body":BODY}
    (traceparent omitted when empty). BUS_EEXIST with the stored index
    when (pub, seq) is already in the log; BUS_EINVAL when the envelope
    has no pub or seq, or its body has no canonical form (a number past
    ±(2^53 − 1)). Sensitive fields (PROTO_SENSITIVE): the caller replaces
    them first (audit_redact_fields; the auditor's follower does). */
int audit_log_append_event_msg (audit_log_t *self, bus_txn_t *txn, const proto_msg_t *event,
                                uint64_t *index);

/*  Record that publisher pub lost events from_seq..to_seq (it trimmed them
    before they were stored): appends the entry
      {"kind":"gap","pub":P,"from_seq":F,"to_seq":T,"ts":TS}
    (ts: µs since the epoch) and marks (pub, from_seq) taken, so the same
    gap is recorded once (BUS_EEXIST with its index). */
int audit_log_append_gap (audit_log_t *self, bus_txn_t *txn, const char *pub,
                          uint64_t from_seq, uint64_t to_seq, int64_t ts, uint64_t *index);

/*  The leaf index of the entry of request (principal, request_id) and
    the tag a keyed append recorded with it (*tag NULL, *tag_len 0: none;
    the bytes point into the map, valid until the end of txn; tag and
    tag_len may be NULL): 0, BUS_ENOTFOUND, BUS_EINVAL or BUS_ESTATE. */
int audit_log_request_get (audit_log_t *self, bus_txn_t *txn, const char *principal,
                           const char *request_id, uint64_t *index, const void **tag, size_t *tag_len);

/*  The leaf index of the entry of request (principal, request_id): 0,
    BUS_ENOTFOUND or BUS_EINVAL. */
int audit_log_request_index (audit_log_t *self, bus_txn_t *txn, const char *principal,
                             const char *request_id, uint64_t *index);

/*  The leaf index of (pub, seq): 0 or BUS_ENOTFOUND. */
int audit_log_event_index (audit_log_t *self, bus_txn_t *txn, const char *pub, uint64_t seq,
                           uint64_t *index);

/*  The entry at index: its bytes point into the map, valid until the end
    of txn. */
int audit_log_entry (audit_log_t *self, bus_txn_t *txn, uint64_t index,
                     const void **entry, size_t *len);

/*  The stored leaf hash of index. */
int audit_log_leaf (audit_log_t *self, bus_txn_t *txn, uint64_t index, audit_hash_t out);

/*  The root of the tree of the first size entries (size <= the log's size;
    size 0: SHA-256 of nothing). */
int audit_log_root (audit_log_t *self, bus_txn_t *txn, uint64_t size, audit_hash_t root);

/*  The inclusion proof of leaf index in the tree of size (index < size <=
    the log's size): path receives *path_len (<= AUDIT_PROOF_MAX) hashes,
    leaf-side first (RFC 6962 2.1.1). */
int audit_log_inclusion (audit_log_t *self, bus_txn_t *txn, uint64_t index, uint64_t size,
                         audit_hash_t path [AUDIT_PROOF_MAX], size_t *path_len);

/*  The consistency proof between the trees of old_size and new_size (1 <=
    old_size <= new_size <= the log's size; equal sizes: an empty path),
    RFC 6962 2.1.2. */
int audit_log_consistency (audit_log_t *self, bus_txn_t *txn, uint64_t old_size, uint64_t new_size,
                           audit_hash_t path [AUDIT_PROOF_MAX], size_t *path_len);

#endif
