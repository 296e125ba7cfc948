/*  audit_service.h — the auditor daemon: the Merkle audit log on the bus.

    Serves audit.append (an entry, answered with its leaf index once it is
    fsync'd; appends that arrive together share one fsync on the service's
    writer thread), audit.entry, audit.head (a signed tree head),
    audit.inclusion, audit.consistency and audit.jwks; PROTOCOL.md 10.6
    specifies each. The log itself is audit_log.h (it knows nothing of the
    bus), the keys and signatures audit_sign.h.

    Not built yet: following every publisher into the log (the service
    kit's durable followers; audit_log_append_event is the call they will
    make), run receipts (audit.receipt answers not_implemented), the gantt.
*/
#ifndef AUDIT_SERVICE_H
#define AUDIT_SERVICE_H

#include "bus_daemon.h"

extern const bus_daemon_t audit_daemon;

#endif
