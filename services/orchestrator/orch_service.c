/*  orch_service.c — the orchestrator daemon's handlers.

    Built so far: the bus runtime's health, stats, events.replay and echo.
    Not built yet: the orchestrator requests of the catalogue (proto/proto_catalog.def,
    owner "orchestrator"); until they land, the runtime answers each with a
    not_implemented error, never a made-up answer.
*/
#include "orch_service.h"

static const char *const s_dbs [] = { "runs", "checkpoints", NULL };

const bus_daemon_t orch_daemon = {
    .section = "orchestrator",
    .db_names = s_dbs,
};
