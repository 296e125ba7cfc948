/*  audit_runs.h — the audit log read by run: which entries belong to a
    run, what they say about it (its steps, approvals, leases, gaps), and
    the token-lifecycle gantt drawn from the same.

    Storage (databases of the service's store, audit_runs_db_names):
      audit_runs      run + NUL + leaf index (u64 BE) -> "" : the entries
                      that name the run (an event whose body has `run`, an
                      audit.append whose entry has `run`), written in the
                      transaction that stores the entry
      audit_gaps      leaf index (u64 BE) -> "" : every gap entry, so a
                      receipt finds the losses recorded while its run was
                      in the log
      audit_ended     run -> the leaf index of its terminal event (u64 BE)
                      followed by the time the receipt is due (µs, u64
                      BE): runs whose receipt is not built yet
      audit_receipts  run -> the stored receipt (JSON text, audit_receipt.h)

    The summary (audit_runs_summary) is a pure function of the run's
    entries in log order, shared by the auditor (which builds receipts
    from it) and every verifier (which recomputes it from the entries a
    receipt carries and compares): what a receipt says is exactly what
    its proven entries say. It trusts each kind of fact only from its
    owner: run.* and node.* events from svc:orchestrator, ciba.* and
    approval.completed from svc:ciba-broker, token.* from svc:vault-broker,
    step intents from audit.append entries sent by svc:orchestrator.
    Other entries naming the run stay in the receipt (proven) but add no
    fact. Times in the summary are µs since the epoch: each fact's from
    the `ts` of the entry that states it (the publisher's clock when it
    published), `expires_at` of a lease from the vault's seconds.

    Transactions: every function works in the caller's transaction, like
    audit_log.h. Errors: BUS_EINVAL (a run name empty or over
    AUDIT_RUN_MAX bytes), BUS_ENOTFOUND, store errors.
*/
#ifndef AUDIT_RUNS_H
#define AUDIT_RUNS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "audit_log.h"
#include "bus_store.h"

#define AUDIT_RUN_MAX 64                /* bytes of a run id */

typedef struct audit_runs_t audit_runs_t;

extern const char *const audit_runs_db_names [];

/*  The run index on store (which must hold audit_runs_db_names). */
int audit_runs_new (audit_runs_t **out, bus_store_t *store) __attribute__((warn_unused_result));
void audit_runs_destroy (audit_runs_t **self_p);

/*  The run an entry's content names: body.run of an event, entry.run of
    an append (a string of 1..AUDIT_RUN_MAX bytes), else NULL. content is
    the event's body or the append's entry. */
const char *audit_runs_named (const json_t *content);

/*  Whether the event type published by pub ends a run (run.completed,
    run.failed, run.rejected, run.cancelled from svc:orchestrator). */
bool audit_runs_terminal (const char *pub, const char *type);

/*  Index the entry at index under run (may be NULL: nothing). */
int audit_runs_note (audit_runs_t *self, bus_txn_t *txn, const char *run, uint64_t index);

/*  Index a gap entry. */
int audit_runs_note_gap (audit_runs_t *self, bus_txn_t *txn, uint64_t index);

/*  The leaf indexes of run's entries, in order, and of every gap stored
    at or after the run's first entry and below size: malloc'd arrays
    (caller frees; NULL when empty). */
int audit_runs_indexes (audit_runs_t *self, bus_txn_t *txn, const char *run, uint64_t size,
                        uint64_t **idx, size_t *n, uint64_t **gaps, size_t *n_gaps);

/*  A run has ended (its terminal event at index): its receipt is due at
    due_us. Kept until audit_runs_done. */
int audit_runs_mark_ended (audit_runs_t *self, bus_txn_t *txn, const char *run, uint64_t index,
                           int64_t due_us);

/*  Whether run has ended and has no receipt yet: 0 with *index and *due,
    or BUS_ENOTFOUND. */
int audit_runs_ended (audit_runs_t *self, bus_txn_t *txn, const char *run, uint64_t *index,
                      int64_t *due_us);

/*  The runs whose receipt is due by now (at most max), into runs (each
    AUDIT_RUN_MAX + 1 bytes); *n receives the count. */
int audit_runs_due (audit_runs_t *self, bus_txn_t *txn, int64_t now_us,
                    char (*runs) [AUDIT_RUN_MAX + 1], size_t max, size_t *n);

/*  Store run's receipt (JSON text) and take it off the ended list. */
int audit_runs_put_receipt (audit_runs_t *self, bus_txn_t *txn, const char *run,
                            const char *text, size_t len);

/*  The stored receipt of run: text pointing into the map (valid until the
    end of txn), or BUS_ENOTFOUND. */
int audit_runs_get_receipt (audit_runs_t *self, bus_txn_t *txn, const char *run,
                            const void **text, size_t *len);

/*  What the entries of a run say (entries: an array of the entries as
    parsed JSON objects with "index" added, in log order): {run, state?,
    reason?, workflow?, workflow_hash?, input_digest?, principal?,
    started_at?, finished_at?, steps: [...], pauses: [...], approvals:
    [...], leases: [...], gaps: [...]} (PROTOCOL.md 10.6 lists every
    member). NULL when out of memory. */
json_t *audit_runs_summary (const char *run, const json_t *entries);

/*  Whether the summary waits for a lease or an approval: a lease still
    open (neither revoked nor expired), or a lease or approval a step
    names whose events have not been stored yet (they come from the
    vault-broker and the ciba-broker, in no order with the orchestrator's
    terminal event), or an approval not completed. */
bool audit_runs_leases_open (const json_t *summary);

/*  The gantt of a summary: {run, t0, t1, steps: [{node, kind, attempt,
    start, end, outcome}], approvals: [{approval_id, node, requested,
    completed, outcome, levels: [{approver, asked_at, decided_at,
    state}]}], leases: [{lease_id, node, connection, scopes, requested,
    approved, issued, used: [...], renewed: [...], expires_at, ended,
    end: "revoked"|"expired"|"open"}]} on one time axis (µs). */
json_t *audit_runs_gantt (const json_t *summary);

/*  Read run's entries (as audit_runs_summary takes them) and gap entries
    (likewise) from the log in txn up to size. */
int audit_runs_entries (audit_runs_t *self, audit_log_t *log, bus_txn_t *txn, const char *run,
                        uint64_t size, json_t **entries, json_t **gap_entries);

#endif
