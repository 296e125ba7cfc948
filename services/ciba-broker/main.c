/*  sanctum-ciba-broker — see ciba_service.h for what it does. */
#include "bus_daemon.h"
#include "ciba_service.h"

int
main (int argc, char **argv)
{
    return bus_daemon_main (argc, argv, &ciba_daemon);
}
