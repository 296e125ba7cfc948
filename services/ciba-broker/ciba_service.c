/*  ciba_service.c — the ciba-broker daemon's handlers.

    Built so far: the bus runtime's health, stats, events.replay and echo.
    Not built yet: the ciba-broker requests of the catalogue (proto/proto_catalog.def,
    owner "ciba"); until they land, the runtime answers each with a
    not_implemented error, never a made-up answer.
*/
#include "ciba_service.h"

static const char *const s_dbs [] = { "requests", "devices", NULL };

const bus_daemon_t ciba_daemon = {
    .section = "ciba",
    .db_names = s_dbs,
};
