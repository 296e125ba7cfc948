/*  sanctum-authz — see authz_service.h for what it does. */
#include "bus_daemon.h"
#include "authz_service.h"

int
main (int argc, char **argv)
{
    return bus_daemon_main (argc, argv, &authz_daemon);
}
