/*  audit_service.c — the auditor daemon's handlers.

    Built so far: the bus runtime's health, stats, events.replay and echo.
    Not built yet: the auditor requests of the catalogue (proto/proto_catalog.def,
    owner "auditor"); until they land, the runtime answers each with a
    not_implemented error, never a made-up answer.
*/
#include "audit_service.h"

static const char *const s_dbs [] = { "entries", "cursors", NULL };

const bus_daemon_t audit_daemon = {
    .section = "auditor",
    .db_names = s_dbs,
};
