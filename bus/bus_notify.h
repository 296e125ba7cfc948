/*  bus_notify.h — systemd's notify protocol, spoken directly.

    Sends READY=1, STATUS=..., WATCHDOG=1, STOPPING=1 as datagrams to
    $NOTIFY_SOCKET (an AF_UNIX path, or an abstract name starting with '@').
    Without NOTIFY_SOCKET every call is a no-op, so the same binary runs
    under systemd, docker and `sanctumctl up`.
*/
#ifndef BUS_NOTIFY_H
#define BUS_NOTIFY_H

#include <stdint.h>

/*  Send one notify message ("READY=1\nSTATUS=serving"). 0 or BUS_EIO; 0
    when there is no NOTIFY_SOCKET. */
int bus_notify (const char *state);

/*  The watchdog interval systemd asks for, µs (WATCHDOG_USEC, honouring
    WATCHDOG_PID), or 0. */
uint64_t bus_notify_watchdog_usec (void);

#endif
