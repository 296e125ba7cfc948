/*  tele_service.h — the telemetry daemon: the dashboard, live event stream, metrics and read API over HTTP. */
#ifndef TELE_SERVICE_H
#define TELE_SERVICE_H

#include "bus_daemon.h"

extern const bus_daemon_t tele_daemon;

#endif
