/*  audit_service.h — the auditor daemon: the Merkle audit log on the bus.

    Serves audit.append (an entry, answered with its leaf index once it is
    fsync'd; appends that arrive together share one fsync on the service's
    writer thread), audit.entry, audit.head (a signed tree head),
    audit.inclusion, audit.consistency and audit.jwks; PROTOCOL.md 10.6
    specifies each. The log itself is audit_log.h (it knows nothing of the
    bus), the keys and signatures audit_sign.h.

    It follows every other service (a durable follower, "audit"): each
    event is stored once (audit_log_append_event_msg, its sensitive fields
    replaced by their HMAC) in the follower's transaction, with its mark;
    events a publisher trimmed first become a gap entry in the same
    transaction. As the publishers' outbox_acked_by it replays from its
    committed mark + 1 only, so they trim only what it has stored.

    Runs (audit_runs.h): every entry naming a run is indexed under it in
    the transaction that stores it. A run's terminal event makes its
    receipt due (audit_receipt.h): built in that same transaction unless a
    lease of the run is still open, else when its last lease ends (a
    token.revoked / token.expired event) or by the "receipts" timer at
    most [auditor] receipt_wait_ms (2 s) later; stored, and announced as receipt.issued on commit.
    audit.receipt answers the stored receipt (building a due one at once);
    audit.gantt draws a run from its entries.
*/
#ifndef AUDIT_SERVICE_H
#define AUDIT_SERVICE_H

#include "bus_daemon.h"

extern const bus_daemon_t audit_daemon;

#endif
