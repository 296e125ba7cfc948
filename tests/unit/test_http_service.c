/*  test_http_service.c — a bus service with a bus_http_server on its own
    reactor (as the telemetry service and the sandbox will have): while
    HTTP clients misbehave (a slow client trickling headers, the connection
    cap held full, an oversized upload), the service keeps answering
    `health` on the bus, and the HTTP listener serves again afterwards.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <stdatomic.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "bus_client.h"
#include "bus_error.h"
#include "bus_http_server.h"
#include "bus_service.h"
#include "../support/test_service.h"

static atomic_int s_port;

static void
s_hello (bus_http_exchange_t *ex, void *arg)
{
    bus_http_respond (ex, 200, "text/plain", "hello\n", 6);
}

/*  The daemon's start: the listener on the service's zloop. */
static int
s_start (bus_service_t *svc, void **state)
{
    char err [256];
    bus_http_server_opts_t opts = { .address = "127.0.0.1:0", .request_timeout_ms = 500,
                                    .max_connections = 6, .max_body = 65536 };
    bus_http_server_t *server = bus_http_server_new (bus_service_loop (svc), &opts, err, sizeof err);
    if (!server) {
        fprintf (stderr, "http server: %s\n", err);
        return BUS_EIO;
    }
    bus_http_server_route (server, "GET", "/hello", s_hello, NULL);
    atomic_store (&s_port, bus_http_server_port (server));
    *state = server;
    return 0;
}

static void
s_stop (bus_service_t *svc, void **state)
{
    bus_http_server_t *server = *state;
    bus_http_server_destroy (&server);
    *state = NULL;
}

static const bus_daemon_t s_daemon = { .section = "telemetry", .start = s_start, .stop = s_stop };

static struct {
    test_service_t *env;
    zcert_t *ops;
    bus_client_t *client;
} s_fx;

/*  health answers ok (within the client's 1 s deadline, no retry). */
static bool
s_health_ok (void)
{
    proto_msg_t *reply = NULL;
    int rc = bus_client_call (s_fx.client, "health", NULL, NULL, &reply);
    bool ok = rc == 0 && reply && reply->ok;
    proto_msg_destroy (&reply);
    return ok;
}

static int
s_connect (void)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    assert_true (fd >= 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) atomic_load (&s_port)),
                              .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    assert_int_equal (connect (fd, (struct sockaddr *) &sa, sizeof sa), 0);
    return fd;
}

/*  Has the server closed fd (within ms)? */
static bool
s_closed (int fd, int ms)
{
    struct pollfd p = { fd, POLLIN, 0 };
    char buf [512];
    while (poll (&p, 1, ms) == 1) {
        ssize_t n = recv (fd, buf, sizeof buf, 0);
        if (n <= 0)
            return true;
    }
    return false;
}

/*  GET /hello on a fresh connection answers 200. */
static bool
s_hello_ok (void)
{
    int fd = s_connect ();
    const char *req = "GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    send (fd, req, strlen (req), MSG_NOSIGNAL);
    char buf [1024] = "";
    size_t got = 0;
    struct pollfd p = { fd, POLLIN, 0 };
    while (got < sizeof buf - 1 && poll (&p, 1, 3000) == 1) {
        ssize_t n = recv (fd, buf + got, sizeof buf - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t) n;
    }
    close (fd);
    return strncmp (buf, "HTTP/1.1 200", 12) == 0;
}

/*  A client trickling its headers is cut off; health answers throughout. */
static void
test_health_beside_slow_client (void **state)
{
    int fd = s_connect ();
    const char *start = "GET /hello HTTP/1.1\r\nX-Pad: ";
    send (fd, start, strlen (start), MSG_NOSIGNAL);
    int answered = 0;
    bool closed = false;
    for (int i = 0; i < 60 && !closed; i++) {       /* 6 s of trickle at most */
        if (send (fd, "a", 1, MSG_NOSIGNAL) < 0 || s_closed (fd, 50))
            closed = true;
        if (s_health_ok ())
            answered++;
        else
            fail_msg ("health went unanswered beside a slow HTTP client");
    }
    assert_true (closed);
    assert_true (answered >= 3);
    close (fd);
    assert_true (s_hello_ok ());
}

/*  The connection cap held full: health answers; once freed, HTTP too. */
static void
test_health_beside_full_connections (void **state)
{
    int held [6];
    for (int i = 0; i < 6; i++)
        held [i] = s_connect ();
    for (int i = 0; i < 10; i++)
        assert_true (s_health_ok ());
    for (int i = 0; i < 6; i++)
        close (held [i]);
    usleep (100 * 1000);
    assert_true (s_hello_ok ());
}

/*  An oversized upload is refused; health answers meanwhile. */
static void
test_health_beside_oversized_upload (void **state)
{
    int fd = s_connect ();
    const char *head = "POST /hello HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
    send (fd, head, strlen (head), MSG_NOSIGNAL);
    char chunk [4096 + 16];
    int n = snprintf (chunk, sizeof chunk, "%x\r\n", 4096);
    memset (chunk + n, 'x', 4096);
    memcpy (chunk + n + 4096, "\r\n", 2);
    bool closed = false;
    for (int i = 0; i < 64 && !closed; i++) {       /* 256 KiB, 4x the cap */
        if (send (fd, chunk, (size_t) n + 4096 + 2, MSG_NOSIGNAL) < 0)
            closed = true;
        if ((i & 7) == 0)
            assert_true (s_health_ok ());
    }
    assert_true (closed || s_closed (fd, 2000));
    close (fd);
    assert_true (s_health_ok ());
    assert_true (s_hello_ok ());
}

static int
s_setup (void **state)
{
    char err [256] = "";
    s_fx.env = test_service_new ("telemetry", NULL, "map_size_mb = 16\n", err, sizeof err);
    if (!s_fx.env)
        fprintf (stderr, "test_service_new: %s\n", err);
    assert_non_null (s_fx.env);
    s_fx.ops = test_service_cert (s_fx.env, "ops-test", "ops:test");
    assert_non_null (s_fx.ops);
    if (test_service_start (s_fx.env, &s_daemon, "test-1", 0, err, sizeof err))
        fail_msg ("test_service_start: %s", err);
    s_fx.client = bus_client_new (test_service_rpc (s_fx.env), test_service_server_key (s_fx.env),
                                  s_fx.ops, 1000, 0);
    assert_non_null (s_fx.client);
    assert_true (atomic_load (&s_port) > 0);
    return 0;
}

static int
s_teardown (void **state)
{
    bus_client_destroy (&s_fx.client);
    test_service_stop (s_fx.env);
    zcert_destroy (&s_fx.ops);
    test_service_destroy (&s_fx.env);
    return 0;
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_health_beside_slow_client),
        cmocka_unit_test (test_health_beside_full_connections),
        cmocka_unit_test (test_health_beside_oversized_upload),
    };
    return cmocka_run_group_tests (tests, s_setup, s_teardown);
}
