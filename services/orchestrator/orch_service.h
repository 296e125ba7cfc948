/*  orch_service.h — the orchestrator daemon: workflows, runs, checkpoints
    and tool execution (proto/PROTOCOL.md 10.2).

    Files: orch_service.c (the daemon's declaration, start/stop, workflows
    loaded, request handlers, run.wait waiters), orch_run.c (the engine:
    steps, checkpoints, retries), orch_approval.c (the approvals follower's
    events, resume and reconcile at start), orch_workflow.c (workflow files, templates, conditions; pure),
    orch_connector.c and orch_agent.c (HTTP shapes of the connectors and
    the chat/scripted agents; pure), orch_internal.h (what they share).

    Everything runs on the service's one reactor thread: calls to authz,
    ciba-broker, vault-broker and auditor through bus_call, connector and
    model HTTP through bus_http_client, ciba's approval.completed through a
    durable follower. At most ORCH_CALLS_MAX step calls per peer and
    ORCH_HTTP_MAX HTTP requests are in flight; the rest wait in line.
*/
#ifndef ORCH_SERVICE_H
#define ORCH_SERVICE_H

#include "bus_daemon.h"

extern const bus_daemon_t orch_daemon;

#endif
