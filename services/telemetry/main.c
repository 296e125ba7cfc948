/*  sanctum-telemetry — see tele_service.h for what it does. */
#include "bus_daemon.h"
#include "tele_service.h"

int
main (int argc, char **argv)
{
    return bus_daemon_main (argc, argv, &tele_daemon);
}
