/*  bus_pid.c — the process id, cached for libzmq (see bus_pid.h). */
#include "bus_pid.h"

#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

static pid_t s_pid;                             /* 0: ask the kernel */
static _Thread_local unsigned long s_calls;     /* per thread: no shared line to bounce */

static void
s_forked_child (void)
{
    __atomic_store_n (&s_pid, 0, __ATOMIC_RELAXED);
}

__attribute__ ((constructor))
static void
s_install (void)
{
    pthread_atfork (NULL, NULL, s_forked_child);
}

pid_t
getpid (void)
{
    s_calls++;
    pid_t pid = __atomic_load_n (&s_pid, __ATOMIC_RELAXED);
    if (pid == 0) {
        pid = (pid_t) syscall (SYS_getpid);
        __atomic_store_n (&s_pid, pid, __ATOMIC_RELAXED);
    }
    return pid;
}

unsigned long
bus_pid_calls (void)
{
    return s_calls;
}
