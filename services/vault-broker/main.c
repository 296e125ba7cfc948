/*  sanctum-vault-broker — see vault_service.h for what it does. */
#include "bus_daemon.h"
#include "vault_service.h"

int
main (int argc, char **argv)
{
    return bus_daemon_main (argc, argv, &vault_daemon);
}
