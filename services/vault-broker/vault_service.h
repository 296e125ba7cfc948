/*  vault_service.h — the vault-broker daemon: connected-account
    credentials sealed at rest (vault_crypt.h), just-in-time leases whose
    tokens are minted here (local mode: RFC 9068, DPoP-bound, EdDSA) or
    obtained upstream (oauth mode: a refresh-token grant; auth0 mode: Token
    Vault's federated exchange), the JWKS over HTTP, and the
    lease expiry sweep. The requests and events are in proto/PROTOCOL.md
    (10.5); the config keys are [vault] in bus/bus_config_keys.def. */
#ifndef VAULT_SERVICE_H
#define VAULT_SERVICE_H

#include "bus_daemon.h"

extern const bus_daemon_t vault_daemon;

#endif
