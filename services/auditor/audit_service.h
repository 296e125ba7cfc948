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

    Not built yet: run receipts (audit.receipt answers not_implemented),
    the gantt.
*/
#ifndef AUDIT_SERVICE_H
#define AUDIT_SERVICE_H

#include "bus_daemon.h"

extern const bus_daemon_t audit_daemon;

#endif
