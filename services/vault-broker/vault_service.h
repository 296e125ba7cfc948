/*  vault_service.h — the vault-broker daemon: connected-account credentials, JIT leases, token minting and exchange. */
#ifndef VAULT_SERVICE_H
#define VAULT_SERVICE_H

#include "bus_daemon.h"

extern const bus_daemon_t vault_daemon;

#endif
