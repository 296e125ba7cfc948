/*  authz_service.h — the authz daemon: OpenFGA-compatible relationship engine, policy decisions, approver chains. */
#ifndef AUTHZ_SERVICE_H
#define AUTHZ_SERVICE_H

#include "bus_daemon.h"

extern const bus_daemon_t authz_daemon;

#endif
