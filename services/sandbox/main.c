/*  sanctum-sandbox — see sandbox_service.h for what it does. */
#include "bus_daemon.h"
#include "sandbox_service.h"

int
main (int argc, char **argv)
{
    return bus_daemon_main (argc, argv, &sandbox_daemon);
}
