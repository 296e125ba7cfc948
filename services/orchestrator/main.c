/*  sanctum-orchestrator — see orch_service.h for what it does. */
#include "bus_daemon.h"
#include "orch_service.h"

int
main (int argc, char **argv)
{
    return bus_daemon_main (argc, argv, &orch_daemon);
}
