#!/bin/sh
# test_daemon_link.sh — what the daemons link beside libsanctum.a: every
# service binary defines (and exports, so that libzmq's calls bind to it)
# the cached getpid of bus/bus_pid.c; sanctumctl and libsanctum.a do not
# (the library's users, the raw libzmq baseline of bench_authz among
# them, keep glibc's).
# Prints `ok NAME` / `not ok NAME` lines, then `N passed, N failed`.

. "$(dirname "$0")/results.sh"
BUILD=${BUILD:-build}

services=$(sed -n 's/^BUS_SERVICE *( *"\([a-z0-9-]*\)".*/\1/p' bus/bus_services.def)
[ -n "$services" ]; result "services_listed" $?
for s in $services; do
    bin="$BUILD/bin/sanctum-$s"
    nm -D --defined-only "$bin" 2>"$TMP/nm.err" | grep -Eq ' T getpid$'
    result "sanctum-$s exports the cached getpid" $? "$(head -2 "$TMP/nm.err")"
done
! nm -D --defined-only "$BUILD/bin/sanctumctl" 2>/dev/null | grep -Eq ' T getpid$'
result "sanctumctl keeps glibc's getpid" $?
! nm --defined-only "$BUILD/lib/libsanctum.a" 2>/dev/null | grep -Eq ' T getpid$'
result "libsanctum.a does not define getpid" $?

results_done
