/*  vault_service.c — the vault-broker daemon's handlers.

    Built so far: the bus runtime's health, stats, events.replay and echo.
    Not built yet: the vault-broker requests of the catalogue (proto/proto_catalog.def,
    owner "vault"); until they land, the runtime answers each with a
    not_implemented error, never a made-up answer.
*/
#include "vault_service.h"

static const char *const s_dbs [] = { "connections", "leases", NULL };

const bus_daemon_t vault_daemon = {
    .section = "vault",
    .db_names = s_dbs,
};
