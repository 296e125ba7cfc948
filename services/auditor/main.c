/*  sanctum-auditor — see audit_service.h for what it does. */
#include "bus_daemon.h"
#include "audit_service.h"

int
main (int argc, char **argv)
{
    return bus_daemon_main (argc, argv, &audit_daemon);
}
