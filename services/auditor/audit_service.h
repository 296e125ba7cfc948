/*  audit_service.h — the auditor daemon: the Merkle audit log and signed run receipts. */
#ifndef AUDIT_SERVICE_H
#define AUDIT_SERVICE_H

#include "bus_daemon.h"

extern const bus_daemon_t audit_daemon;

#endif
