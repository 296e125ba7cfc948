/*  bus_pid.h — the process id, cached for libzmq: linked into the service
    daemons (build/bin/sanctum-*) only, not into libsanctum.a.

    libzmq checks on every wait of a socket's mailbox (each receive that
    finds nothing, each command it takes in) and on every wait of its I/O
    thread that the process has not forked since the socket was made: it
    calls getpid(). glibc has not cached the pid since 2.25, so each check
    is a system call. A service at 10,000 requests/s made about 8 per
    request (4 on its reactor, 4 on libzmq's I/O thread): on a virtual
    machine where a system call costs about 1 us, an eighth of the
    service's CPU per request (bench_authz, `cpu check` on the service
    side: ~66 us a Check without, 59-65 us with, the raw echo 47-50 us).

    bus_pid.c defines getpid() in the executable, which the dynamic linker
    binds libzmq's (and every other library's) calls to: the first call
    asks the kernel, later calls return the cached value. A fork() clears
    the cache in the child (pthread_atfork), so the child asks anew. The
    services do not fork; a process that made a child with clone() or
    vfork() by system call, bypassing glibc's fork, would see its parent's
    pid in the child until exec — none is made here. glibc's own calls
    (raise, for one) use the kernel directly and are unaffected.

    The raw libzmq baseline of bench_authz (an echo in a child of the
    bench) does not link it: it is libzmq as any program runs it.
*/
#ifndef BUS_PID_H
#define BUS_PID_H

#include <sys/types.h>

/*  Calls of getpid() made on the calling thread since it started (by
    this process's code and its libraries alike): a diagnostic, for the
    test that libzmq's checks reach the cache. */
unsigned long bus_pid_calls (void);

#endif
