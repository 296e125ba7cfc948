/*  tele_service.c — the telemetry daemon's handlers.

    Built so far: the bus runtime's health, stats, events.replay and echo.
    Not built yet: the telemetry requests of the catalogue (proto/proto_catalog.def,
    owner "telemetry"); until they land, the runtime answers each with a
    not_implemented error, never a made-up answer.
*/
#include "tele_service.h"

static const char *const s_dbs [] = { "cursors", NULL };

const bus_daemon_t tele_daemon = {
    .section = "telemetry",
    .db_names = s_dbs,
};
