/*  test_pid.c — getpid() cached for libzmq (bus_pid.h), linked as the
    daemons link it.

    - The cached pid is the kernel's.
    - libzmq's own fork checks reach it: receives on an empty socket (each
      waits on the socket's mailbox, which asks for the pid) count as
      calls of this definition, not of glibc's.
    - A forked child sees its own pid, not its parent's cached one; the
      parent keeps its own.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <czmq.h>

#include "bus_pid.h"

static void
the_cached_pid_is_the_kernels (void **state)
{
    pid_t kernel = (pid_t) syscall (SYS_getpid);
    assert_int_equal (getpid (), kernel);
    assert_int_equal (getpid (), kernel);
}

static void
libzmq_fork_checks_reach_the_cache (void **state)
{
    zsock_t *a = zsock_new_pair ("@inproc://test-pid");
    zsock_t *b = zsock_new_pair (">inproc://test-pid");
    assert_non_null (a);
    assert_non_null (b);
    char byte;
    unsigned long before = bus_pid_calls ();
    for (int i = 0; i < 100; i++) {
        /* nothing waits: the receive looks at the mailbox, which checks the pid */
        assert_int_equal (zmq_recv (zsock_resolve (a), &byte, 1, ZMQ_DONTWAIT), -1);
        assert_int_equal (zmq_errno (), EAGAIN);
    }
    unsigned long calls = bus_pid_calls () - before;
    assert_true (calls >= 100);
    /* and a message still goes through */
    assert_int_equal (zmq_send (zsock_resolve (b), "x", 1, 0), 1);
    assert_int_equal (zmq_recv (zsock_resolve (a), &byte, 1, 0), 1);
    assert_int_equal (byte, 'x');
    zsock_destroy (&b);
    zsock_destroy (&a);
}

static void
a_forked_child_sees_its_own_pid (void **state)
{
    pid_t parent = getpid ();           /* cached now */
    pid_t child = fork ();
    assert_true (child >= 0);
    if (child == 0) {
        pid_t mine = getpid (), kernel = (pid_t) syscall (SYS_getpid);
        _exit (mine == kernel && mine != parent && getppid () == parent ? 0 : 1);
    }
    int status = 0;
    assert_int_equal (waitpid (child, &status, 0), child);
    assert_true (WIFEXITED (status));
    assert_int_equal (WEXITSTATUS (status), 0);
    assert_int_equal (getpid (), parent);
    assert_int_equal (getpid (), (pid_t) syscall (SYS_getpid));
}

int
main (void)
{
    zsys_init ();
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (the_cached_pid_is_the_kernels),
        cmocka_unit_test (libzmq_fork_checks_reach_the_cache),
        cmocka_unit_test (a_forked_child_sees_its_own_pid),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
