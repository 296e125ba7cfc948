/*  test_service.h — a bus service for tests and benchmarks, in a
    temporary directory, on ephemeral loopback ports, with real CURVE keys.

    test_service_new() makes the environment: a directory (a fresh one
    under /tmp, removed by test_service_destroy(), or the caller's, kept),
    two free TCP ports, a config file <dir>/sanctum.conf (data in <dir>/var,
    keys in <dir>/keys, the allow-list in <dir>/keys/allow, the caller's
    other [sanctum] lines, the section's rpc and pub) loaded into a config,
    and the service's own cert, allowed as svc:<name>. Client certs come from
    test_service_cert().

    test_service_start() runs the service on a thread of its own: the
    thread creates it, lets the daemon register its handlers, runs the
    reactor, and tears it down again. test_service_stop() stops it from
    its own reactor thread (a timer polls a flag: bus_service_stop() from
    another thread would be a data race) and joins. A service may be
    started and stopped again on the same environment.

    Also the small helpers the unit tests share: a temporary directory,
    its removal, a free port, and the "N passed, N failed" summary line.
    Nothing here needs cmocka: errors are returned (bus_error.h codes).
*/
#ifndef TEST_SERVICE_H
#define TEST_SERVICE_H

#include <czmq.h>
#include <stddef.h>

#include <stdint.h>

#include "bus_client.h"
#include "bus_config.h"
#include "bus_daemon.h"
#include "bus_keys.h"

typedef struct test_service_t test_service_t;

/*  Make the environment for the service of section ("authz") under root,
    or under a fresh /tmp/sanctum-<section>.XXXXXX when root is NULL.
    sanctum_lines are extra "key = value" lines of [sanctum] (may be NULL),
    e.g. "max_frame = 4096\nmap_size_mb = 16\n". Returns NULL with err set
    on failure. */
test_service_t *test_service_new (const char *section, const char *root,
                                  const char *sanctum_lines, char *err, size_t err_len);

/*  Stop the service if it runs, free everything, remove the directory when
    it was made by test_service_new. Accepts NULL; nulls the pointer. */
void test_service_destroy (test_service_t **self_p);

/*  Accessors: all owned by the environment. */
bus_config_t *test_service_config (test_service_t *self);
const char *test_service_dir (test_service_t *self);
const char *test_service_rpc (test_service_t *self);         /* tcp://127.0.0.1:N */
const char *test_service_pub (test_service_t *self);
const char *test_service_server_key (test_service_t *self);  /* Z85, the service's */

/*  Load or make the client cert <keys>/<name> and, unless principal is
    NULL, allow it as principal ("ops:test"). Returns a cert the caller
    destroys, or NULL on failure. */
zcert_t *test_service_cert (test_service_t *self, const char *name, const char *principal);

/*  Run the service on its own thread: bus_service_new (config,
    daemon->section, version, daemon->db_names), then bus_daemon_start
    (daemon->start, the daemon's timers), then the reactor;
    bus_daemon_stop (the timers, daemon->stop) runs on that thread after
    the reactor returns, before the service is destroyed.
    delay_ms 0: wait until the service exists and return 0, or an error
    with err set (the thread is then already gone). delay_ms > 0: return at
    once; the thread sleeps delay_ms before creating the service, and a
    failure shows in test_service_stop(). BUS_EINVAL when already running. */
int test_service_start (test_service_t *self, const bus_daemon_t *daemon,
                        const char *version, int delay_ms, char *err, size_t err_len);

/*  Stop the service from its reactor thread and wait for the thread to
    finish and (at most 2 s) for its ports to be free again, so that a
    service made at once binds them. Returns 0, or BUS_EINVAL when the service could not be created
    or was not running. */
int test_service_stop (test_service_t *self);

/*  Make a directory /tmp/<name>.XXXXXX into dir (size bytes). Returns 0,
    or BUS_EIO with dir empty. */
int test_service_tmpdir (char *dir, size_t size, const char *name);

/*  Remove dir and everything under it (symlinks are not followed). */
void test_service_rmtree (const char *dir);

/*  A free TCP port on loopback (the kernel's pick, released for the caller
    to bind at once), or -1. */
int test_service_free_port (void);

/*  n distinct free TCP ports on loopback into ports: each held until all
    are picked (the kernel may hand a port released a moment ago out
    again, and two daemons of one suite must not share one). 0, or -1. */
int test_service_free_ports (int *ports, int n);

/*  A counter of the service's `stats`, asked through client: its value
    (0 when it was never counted), or -1 when stats did not answer ok. */
int64_t test_service_counter (bus_client_t *client, const char *name);

/*  Print the "N passed, N failed" line a test program ends with; returns
    its exit status (0 when none failed, else 1). */
int test_service_summary (int total, int failed);

#endif
