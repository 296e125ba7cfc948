/*  orch_service.h — the orchestrator daemon: workflows, runs, checkpoints and tool execution. */
#ifndef ORCH_SERVICE_H
#define ORCH_SERVICE_H

#include "bus_daemon.h"

extern const bus_daemon_t orch_daemon;

#endif
