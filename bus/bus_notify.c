/*  bus_notify.c — sd_notify without libsystemd. */
#include "bus_notify.h"
#include "bus_error.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int
bus_notify (const char *state)
{
    const char *path = getenv ("NOTIFY_SOCKET");
    if (!path || !*path)
        return 0;
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    size_t len = strlen (path);
    if (len >= sizeof addr.sun_path || (path [0] != '/' && path [0] != '@'))
        return BUS_EINVAL;
    memcpy (addr.sun_path, path, len);
    if (path [0] == '@')
        addr.sun_path [0] = 0;      /* abstract namespace */
    int fd = socket (AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return BUS_EIO;
    ssize_t sent = sendto (fd, state, strlen (state), MSG_NOSIGNAL, (struct sockaddr *) &addr,
                           (socklen_t) (offsetof (struct sockaddr_un, sun_path) + len));
    close (fd);
    return sent == (ssize_t) strlen (state) ? 0 : BUS_EIO;
}

uint64_t
bus_notify_watchdog_usec (void)
{
    const char *usec = getenv ("WATCHDOG_USEC");
    const char *pid = getenv ("WATCHDOG_PID");
    if (!usec)
        return 0;
    if (pid && strtol (pid, NULL, 10) != (long) getpid ())
        return 0;
    return strtoull (usec, NULL, 10);
}
