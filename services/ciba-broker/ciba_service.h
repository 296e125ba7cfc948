/*  ciba_service.h — the ciba-broker daemon: approval requests over OpenID CIBA, approver devices, escalation. */
#ifndef CIBA_SERVICE_H
#define CIBA_SERVICE_H

#include "bus_daemon.h"

extern const bus_daemon_t ciba_daemon;

#endif
