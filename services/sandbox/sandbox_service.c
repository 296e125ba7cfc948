/*  sandbox_service.c — the sandbox daemon's handlers.

    Built so far: the bus runtime's health, stats, events.replay and echo.
    Not built yet: the sandbox requests of the catalogue (proto/proto_catalog.def,
    owner "sandbox"); until they land, the runtime answers each with a
    not_implemented error, never a made-up answer.
*/
#include "sandbox_service.h"

static const char *const s_dbs [] = { "records", NULL };

const bus_daemon_t sandbox_daemon = {
    .section = "sandbox",
    .db_names = s_dbs,
};
