/*  authz_service.c — the authz daemon's handlers.

    Built so far: the bus runtime's health, stats, events.replay and echo.
    Not built yet: the authz requests of the catalogue (proto/proto_catalog.def,
    owner "authz"); until they land, the runtime answers each with a
    not_implemented error, never a made-up answer.
*/
#include "authz_service.h"

static const char *const s_dbs [] = { "models", "tuples", NULL };

const bus_daemon_t authz_daemon = { "authz", s_dbs, NULL, NULL };
