/*  test_http_server.c — bus_http_server on a zloop running on a thread of
    its own, with a timer ticking beside it; the test thread is the
    client, with raw sockets, so that it can misbehave: trickle headers,
    send too much, open too many connections. Each misbehaviour is
    bounded (the connection is refused or closed, with the right status
    where one is due), and the reactor keeps ticking and answering other
    clients meanwhile. Also: routes, deferred answers, SSE streams, and
    the `gone` callback when a stream's client leaves or the server stops,
    or a deferred or idle stream's client closes (seen at once, though MHD
    does not poll a suspended connection); a stream written a window at a
    time from its drained callback.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <pthread.h>
#include <poll.h>
#include <stdatomic.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "bus_error.h"
#include "bus_http_server.h"

/* --- the reactor thread --------------------------------------------------- */

/*  cmocka's asserts work on the test's thread only: the reactor thread
    counts its failures, and s_srv_stop asserts there were none. */
static atomic_int s_thread_errors;
#define S_CHECK(cond) do { if (!(cond)) { \
        fprintf (stderr, "%s:%d: reactor check failed: %s\n", __FILE__, __LINE__, #cond); \
        atomic_fetch_add (&s_thread_errors, 1); } } while (0)
#define S_CHECK_EQ(a, b) S_CHECK ((a) == (b))

typedef struct {
    bus_http_server_opts_t opts;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool ready;
    int port;
    zloop_t *loop;
    bus_http_server_t *server;
    atomic_bool stop;
    atomic_int ticks;
    atomic_int gone;            /* gone callbacks seen */
    atomic_int active;          /* bus_http_server_active, as of the last tick */
    atomic_int full;            /* stream writes refused BUS_EFULL */
    atomic_int windows;         /* windows written from the drained callback */
} s_srv_t;

/*  A deferred request waiting for its timer. */
typedef struct {
    s_srv_t *srv;
    bus_http_exchange_t *ex;
    int timer_id;
    int sent;                   /* events sent on a stream */
    int limit;                  /* close after this many (0: never) */
} s_pending_t;

static void
s_hello (bus_http_exchange_t *ex, void *arg)
{
    S_CHECK_EQ (bus_http_respond (ex, 1000, "text/plain", "bad", 3), BUS_EINVAL);
    S_CHECK_EQ (bus_http_respond (ex, 200, "text/plain\r\nX-Evil: 1", "bad", 3), BUS_EINVAL);
    S_CHECK_EQ (bus_http_header_add (ex, "X-Bad", "a\r\nX-Evil: 1"), BUS_EINVAL);
    S_CHECK_EQ (bus_http_respond (ex, 200, "text/plain", "hello\n", 6), 0);
    S_CHECK_EQ (bus_http_respond (ex, 200, "text/plain", "again", 5), BUS_ESTATE);
}

static void
s_echo (bus_http_exchange_t *ex, void *arg)
{
    size_t len;
    const char *body = bus_http_body (ex, &len);
    const char *q = bus_http_query (ex, "q"), *h = bus_http_header (ex, "x-name");
    char head [256];
    int n = snprintf (head, sizeof head, "%s %s q=%s h=%s peer=%s len=%zu\n", bus_http_method (ex),
                      bus_http_path (ex), q ? q : "", h ? h : "", bus_http_peer (ex), len);
    char *text = malloc ((size_t) n + len);
    memcpy (text, head, (size_t) n);
    memcpy (text + n, body, len);
    S_CHECK_EQ (bus_http_respond (ex, 200, "text/plain", text, (size_t) n + len), 0);
    free (text);
}

static int
s_later_fired (zloop_t *loop, int timer_id, void *arg)
{
    s_pending_t *p = arg;
    S_CHECK_EQ (bus_http_header_add (p->ex, "X-Later", "1"), 0);
    S_CHECK_EQ (bus_http_respond (p->ex, 202, "text/plain", "later\n", 6), 0);
    free (p);
    return 0;
}

static void
s_gone (bus_http_exchange_t *ex, void *arg)
{
    s_pending_t *p = arg;
    atomic_fetch_add (&p->srv->gone, 1);
    if (p->timer_id >= 0)
        zloop_timer_end (p->srv->loop, p->timer_id);
    free (p);
}

/*  Answered 50 ms later, from a timer. */
static void
s_later (bus_http_exchange_t *ex, void *arg)
{
    s_srv_t *srv = arg;
    s_pending_t *p = calloc (1, sizeof *p);
    p->srv = srv;
    p->ex = ex;
    bus_http_defer (ex, NULL, NULL);
    p->timer_id = zloop_timer (srv->loop, 50, 1, s_later_fired, p);
}

/*  Never answered: only the server's end tells its owner (gone). */
static void
s_never (bus_http_exchange_t *ex, void *arg)
{
    s_srv_t *srv = arg;
    s_pending_t *p = calloc (1, sizeof *p);
    p->srv = srv;
    p->ex = ex;
    p->timer_id = -1;
    bus_http_defer (ex, s_gone, p);
}

static int
s_event_fired (zloop_t *loop, int timer_id, void *arg)
{
    s_pending_t *p = arg;
    char data [64], id [16];
    snprintf (data, sizeof data, "%d\nline two", ++p->sent);
    snprintf (id, sizeof id, "%d", p->sent);
    S_CHECK_EQ (bus_http_sse_send (p->ex, "1\n2", "tick", data), BUS_EINVAL);
    int rc = bus_http_sse_send (p->ex, id, "tick", data);
    S_CHECK (rc == 0 || rc == BUS_EFULL);
    if (p->limit && p->sent == p->limit) {
        zloop_timer_end (loop, p->timer_id);
        bus_http_stream_close (p->ex);
        free (p);
    }
    return 0;
}

/*  An SSE stream: an event every 20 ms; /events closes after 3. */
static void
s_events (bus_http_exchange_t *ex, void *arg)
{
    s_srv_t *srv = arg;
    s_pending_t *p = calloc (1, sizeof *p);
    p->srv = srv;
    p->ex = ex;
    p->limit = strcmp (bus_http_path (ex), "/events") == 0 ? 3 : 0;
    S_CHECK_EQ (bus_http_stream_open (ex, 200, "text/event-stream", s_gone, p), 0);
    S_CHECK_EQ (bus_http_stream_write (ex, ": hi\n\n", 6), 0);
    p->timer_id = zloop_timer (srv->loop, 20, 0, s_event_fired, p);
}

static int
s_flood_fired (zloop_t *loop, int timer_id, void *arg)
{
    s_pending_t *p = arg;
    static char block [65536];
    int rc = bus_http_stream_write (p->ex, block, sizeof block);
    S_CHECK (rc == 0 || rc == BUS_EFULL);
    if (rc == BUS_EFULL)
        atomic_fetch_add (&p->srv->full, 1);
    return 0;
}

/*  A stream written as fast as a timer can: 64 KiB every 5 ms. */
static void
s_flood (bus_http_exchange_t *ex, void *arg)
{
    s_srv_t *srv = arg;
    s_pending_t *p = calloc (1, sizeof *p);
    p->srv = srv;
    p->ex = ex;
    S_CHECK_EQ (bus_http_stream_open (ex, 200, "application/octet-stream", s_gone, p), 0);
    p->timer_id = zloop_timer (srv->loop, 5, 0, s_flood_fired, p);
}

/*  A stream that says nothing until its client goes (or the server stops). */
static void
s_idle (bus_http_exchange_t *ex, void *arg)
{
    s_srv_t *srv = arg;
    s_pending_t *p = calloc (1, sizeof *p);
    p->srv = srv;
    p->ex = ex;
    p->timer_id = -1;
    S_CHECK_EQ (bus_http_stream_open (ex, 200, "application/x-ndjson", s_gone, p), 0);
}

#define S_WINDOW    (16 << 10)
#define S_WINDOWS   256         /* 4 MiB in all: more than loopback's socket buffers */

/*  The next window of /window's stream, when the last has gone. */
static void
s_window_drained (bus_http_exchange_t *ex, void *arg)
{
    s_pending_t *p = arg;
    S_CHECK_EQ (bus_http_stream_queued (ex), 0);
    if (p->sent == S_WINDOWS) {
        bus_http_stream_close (ex);
        free (p);
        return;
    }
    static char block [S_WINDOW];
    memset (block, 'w', sizeof block);
    S_CHECK_EQ (bus_http_stream_write (ex, block, sizeof block), 0);
    S_CHECK_EQ (bus_http_stream_queued (ex), S_WINDOW);
    p->sent++;
    atomic_fetch_add (&p->srv->windows, 1);
}

/*  4 MiB, never more than a window queued: each written once the last
    has drained. */
static void
s_window (bus_http_exchange_t *ex, void *arg)
{
    s_srv_t *srv = arg;
    s_pending_t *p = calloc (1, sizeof *p);
    p->srv = srv;
    p->ex = ex;
    p->timer_id = -1;
    S_CHECK_EQ (bus_http_stream_open (ex, 200, "application/octet-stream", s_gone, p), 0);
    bus_http_stream_drained (ex, s_window_drained, p);
    s_window_drained (ex, p);
}

static int
s_tick (zloop_t *loop, int timer_id, void *arg)
{
    s_srv_t *srv = arg;
    atomic_fetch_add (&srv->ticks, 1);
    atomic_store (&srv->active, (int) bus_http_server_active (srv->server));
    return atomic_load (&srv->stop) ? -1 : 0;
}

static void *
s_srv_main (void *arg)
{
    s_srv_t *srv = arg;
    char err [256];
    srv->loop = zloop_new ();
    srv->server = bus_http_server_new (srv->loop, &srv->opts, err, sizeof err);
    if (srv->server) {
        bus_http_server_route (srv->server, "GET", "/hello", s_hello, srv);
        bus_http_server_route (srv->server, "POST", "/echo", s_echo, srv);
        bus_http_server_route (srv->server, "GET", "/later", s_later, srv);
        bus_http_server_route (srv->server, "GET", "/never", s_never, srv);
        bus_http_server_route (srv->server, "GET", "/events", s_events, srv);
        bus_http_server_route (srv->server, "GET", "/forever/*", s_events, srv);
        bus_http_server_route (srv->server, "GET", "/flood", s_flood, srv);
        bus_http_server_route (srv->server, "GET", "/idle", s_idle, srv);
        bus_http_server_route (srv->server, "GET", "/window", s_window, srv);
        srv->port = bus_http_server_port (srv->server);
        zloop_timer (srv->loop, 10, 0, s_tick, srv);
    }
    else
        fprintf (stderr, "server: %s\n", err);
    pthread_mutex_lock (&srv->lock);
    srv->ready = true;
    pthread_cond_broadcast (&srv->cond);
    pthread_mutex_unlock (&srv->lock);
    if (srv->server)
        zloop_start (srv->loop);
    bus_http_server_destroy (&srv->server);
    zloop_destroy (&srv->loop);
    return NULL;
}

/*  Start a server with opts on a reactor thread. Heap-allocated, so that
    a failed test (which never stops it) leaves the thread valid memory. */
static s_srv_t *
s_srv_start (const bus_http_server_opts_t *opts)
{
    s_srv_t *srv = calloc (1, sizeof *srv);
    srv->opts = *opts;
    srv->opts.address = "127.0.0.1:0";
    pthread_mutex_init (&srv->lock, NULL);
    pthread_cond_init (&srv->cond, NULL);
    assert_int_equal (pthread_create (&srv->thread, NULL, s_srv_main, srv), 0);
    pthread_mutex_lock (&srv->lock);
    while (!srv->ready)
        pthread_cond_wait (&srv->cond, &srv->lock);
    pthread_mutex_unlock (&srv->lock);
    assert_true (srv->port > 0);
    return srv;
}

/*  Stop the reactor thread and free srv; returns how many gone
    callbacks ran (the server's destruction runs some). */
static int
s_srv_stop (s_srv_t *srv)
{
    atomic_store (&srv->stop, true);
    pthread_join (srv->thread, NULL);
    pthread_mutex_destroy (&srv->lock);
    pthread_cond_destroy (&srv->cond);
    int gone = atomic_load (&srv->gone);
    free (srv);
    assert_int_equal (atomic_load (&s_thread_errors), 0);
    return gone;
}

/* --- the client side: raw sockets ------------------------------------------ */

static int64_t
s_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
s_connect (int port)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    assert_true (fd >= 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port),
                              .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    assert_int_equal (connect (fd, (struct sockaddr *) &sa, sizeof sa), 0);
    return fd;
}

static void
s_send_all (int fd, const char *data, size_t len)
{
    while (len) {
        ssize_t n = send (fd, data, len, MSG_NOSIGNAL);
        if (n <= 0)
            return;                     /* the server closed: the caller finds out */
        data += n;
        len -= (size_t) n;
    }
}

/*  Read until the server closes or ms pass in silence; returns what came
    (caller frees), NUL-terminated. *closed_p: the server closed. */
static char *
s_read_all (int fd, int ms, bool *closed_p)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc (cap);
    bool closed = false;
    while (true) {
        struct pollfd p = { fd, POLLIN, 0 };
        if (poll (&p, 1, ms) <= 0)
            break;
        if (len + 4096 > cap)
            buf = realloc (buf, cap *= 2);
        ssize_t n = recv (fd, buf + len, cap - len - 1, 0);
        if (n <= 0) {
            closed = true;
            break;
        }
        len += (size_t) n;
    }
    buf [len] = 0;
    if (closed_p)
        *closed_p = closed;
    return buf;
}

/*  One request on a fresh connection (Connection: close): the response. */
static char *
s_request (int port, const char *request)
{
    int fd = s_connect (port);
    s_send_all (fd, request, strlen (request));
    char *response = s_read_all (fd, 3000, NULL);
    close (fd);
    return response;
}

static int
s_status (const char *response)
{
    int status = 0;
    if (sscanf (response, "HTTP/1.%*d %d", &status) != 1)
        return 0;
    return status;
}

/*  Is hello answered (the reactor serves others)? */
static bool
s_hello_ok (int port)
{
    char *r = s_request (port, "GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    bool ok = s_status (r) == 200 && strstr (r, "\r\n\r\nhello\n");
    free (r);
    return ok;
}

/*  Wait up to ms for the counter to reach want. */
static bool
s_wait_for (atomic_int *counter, int want, int ms)
{
    int64_t until = s_now_ms () + ms;
    while (atomic_load (counter) < want && s_now_ms () < until)
        usleep (5000);
    return atomic_load (counter) >= want;
}

/* --- tests ------------------------------------------------------------------ */

static void
test_routes_and_bodies (void **state)
{
    bus_http_server_opts_t opts = { 0 };
    s_srv_t *srv = s_srv_start (&opts);
    assert_true (s_hello_ok (srv->port));

    char *r = s_request (srv->port, "POST /echo?q=x%20y HTTP/1.1\r\nHost: t\r\nX-Name: bob\r\n"
                                   "Content-Length: 11\r\nConnection: close\r\n\r\nhello world");
    assert_int_equal (s_status (r), 200);
    assert_non_null (strstr (r, "POST /echo q=x y h=bob peer=127.0.0.1 len=11\nhello world"));
    free (r);
    /*  chunked upload */
    r = s_request (srv->port, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                             "Connection: close\r\n\r\n5\r\nabcde\r\n3\r\nfgh\r\n0\r\n\r\n");
    assert_non_null (strstr (r, "len=8\nabcdefgh"));
    free (r);
    r = s_request (srv->port, "GET /nothing HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_int_equal (s_status (r), 404);
    free (r);
    r = s_request (srv->port, "DELETE /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_int_equal (s_status (r), 405);
    free (r);
    /*  keep-alive: two requests on one connection */
    int fd = s_connect (srv->port);
    const char *two = "GET /hello HTTP/1.1\r\nHost: t\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    s_send_all (fd, two, strlen (two));
    r = s_read_all (fd, 3000, NULL);
    char *second = strstr (r, "hello\n");
    assert_non_null (second);
    assert_non_null (strstr (second + 6, "hello\n"));
    free (r);
    close (fd);
    s_srv_stop (srv);
}

/*  A deferred answer comes from a timer; meanwhile others are served. */
static void
test_deferred_answer (void **state)
{
    bus_http_server_opts_t opts = { 0 };
    s_srv_t *srv = s_srv_start (&opts);
    int fd = s_connect (srv->port);
    const char *req = "GET /later HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    s_send_all (fd, req, strlen (req));
    assert_true (s_hello_ok (srv->port));
    char *r = s_read_all (fd, 3000, NULL);
    assert_int_equal (s_status (r), 202);
    assert_non_null (strstr (r, "X-Later: 1"));
    assert_non_null (strstr (r, "\r\n\r\nlater\n"));
    free (r);
    close (fd);
    s_srv_stop (srv);
}

/*  A stream of server-sent events, ended by its owner. */
static void
test_sse_stream (void **state)
{
    bus_http_server_opts_t opts = { 0 };
    s_srv_t *srv = s_srv_start (&opts);
    char *r = s_request (srv->port, "GET /events HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal (s_status (r), 200);
    assert_non_null (strstr (r, "Content-Type: text/event-stream"));
    assert_non_null (strstr (r, "Transfer-Encoding: chunked"));
    assert_non_null (strstr (r, ": hi\n\n"));
    assert_non_null (strstr (r, "id: 1\nevent: tick\ndata: 1\ndata: line two\n\n"));
    assert_non_null (strstr (r, "id: 3\nevent: tick\ndata: 3\ndata: line two\n\n"));
    assert_null (strstr (r, "data: 4"));
    assert_non_null (strstr (r, "\r\n0\r\n\r\n"));  /* the last chunk: ended cleanly */
    free (r);
    assert_int_equal (atomic_load (&srv->gone), 0);
    s_srv_stop (srv);
}

/*  A stream whose client leaves: its owner hears of it (gone) at the next
    write, and the exchange is freed. */
static void
test_stream_client_gone (void **state)
{
    bus_http_server_opts_t opts = { 0 };
    s_srv_t *srv = s_srv_start (&opts);
    int fd = s_connect (srv->port);
    const char *req = "GET /forever/x HTTP/1.1\r\nHost: t\r\n\r\n";
    s_send_all (fd, req, strlen (req));
    char buf [4096];
    struct pollfd p = { fd, POLLIN, 0 };
    assert_int_equal (poll (&p, 1, 3000), 1);
    assert_true (recv (fd, buf, sizeof buf, 0) > 0);
    close (fd);
    assert_true (s_wait_for (&srv->gone, 1, 3000));
    int64_t until = s_now_ms () + 2000;
    while (atomic_load (&srv->active) != 0 && s_now_ms () < until)
        usleep (5000);
    assert_int_equal (atomic_load (&srv->active), 0);
    s_srv_stop (srv);
}

/*  A stream to a client that does not read: once max_stream_buffer bytes
    wait, writes are refused (BUS_EFULL) instead of growing memory. */
static void
test_stream_buffer_bounded (void **state)
{
    bus_http_server_opts_t opts = { .max_stream_buffer = 256 << 10 };
    s_srv_t *srv = s_srv_start (&opts);
    int fd = s_connect (srv->port);
    int small = 4096;
    setsockopt (fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    const char *req = "GET /flood HTTP/1.1\r\nHost: t\r\n\r\n";
    s_send_all (fd, req, strlen (req));
    assert_true (s_wait_for (&srv->full, 1, 10000));
    assert_true (s_hello_ok (srv->port));
    close (fd);
    assert_true (s_wait_for (&srv->gone, 1, 3000));
    s_srv_stop (srv);
}

/*  A client trickling its headers a byte at a time is cut off by the
    request deadline (far before MHD's idle timeout could), and one that
    sends nothing too; the reactor ticks and serves others meanwhile. */
static void
test_slow_client_bounded (void **state)
{
    bus_http_server_opts_t opts = { .request_timeout_ms = 400, .idle_timeout_s = 60 };
    s_srv_t *srv = s_srv_start (&opts);
    int silent = s_connect (srv->port);
    int fd = s_connect (srv->port);
    const char *start = "GET /hello HTTP/1.1\r\nHost: t\r\nX-Pad: ";
    s_send_all (fd, start, strlen (start));
    int ticks0 = atomic_load (&srv->ticks);
    bool closed = false, served = false;
    int64_t t0 = s_now_ms ();
    for (int i = 0; i < 100 && !closed; i++) {          /* 5 s of trickle at most */
        if (send (fd, "a", 1, MSG_NOSIGNAL) < 0)
            closed = true;
        struct pollfd p = { fd, POLLIN, 0 };
        if (poll (&p, 1, 50) == 1) {
            char c;
            if (recv (fd, &c, 1, 0) <= 0)
                closed = true;
        }
        if (i == 2)
            served = s_hello_ok (srv->port);
    }
    int64_t took = s_now_ms () - t0;
    assert_true (closed);               /* cut off before the trickle ended */
    assert_true (took < 4000);
    assert_true (served);
    assert_true (atomic_load (&srv->ticks) > ticks0 + 5);
    bool silent_closed;
    free (s_read_all (silent, 3000, &silent_closed));
    assert_true (silent_closed);
    close (silent);
    close (fd);
    assert_true (s_hello_ok (srv->port));
    s_srv_stop (srv);
}

/*  Requests over the caps: a declared body, a chunked body, too many
    header fields, headers too long. None reaches a handler. */
static void
test_oversized_request (void **state)
{
    bus_http_server_opts_t opts = { .max_body = 65536, .max_headers = 20, .max_header_bytes = 8192 };
    s_srv_t *srv = s_srv_start (&opts);

    char *r = s_request (srv->port, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10485760\r\n\r\n");
    assert_int_equal (s_status (r), 413);
    free (r);

    /*  chunked, past the cap: the connection is closed, nothing answered 200 */
    int fd = s_connect (srv->port);
    const char *head = "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
    s_send_all (fd, head, strlen (head));
    char chunk [8192 + 16];
    int n = snprintf (chunk, sizeof chunk, "%x\r\n", 8192);
    memset (chunk + n, 'x', 8192);
    memcpy (chunk + n + 8192, "\r\n", 2);
    for (int i = 0; i < 12; i++)        /* 96 KiB */
        s_send_all (fd, chunk, (size_t) n + 8192 + 2);
    s_send_all (fd, "0\r\n\r\n", 5);
    bool closed;
    r = s_read_all (fd, 3000, &closed);
    assert_true (closed);
    assert_int_not_equal (s_status (r), 200);
    free (r);
    close (fd);

    /*  just under the cap passes */
    char *big = malloc (65536 + 256);
    n = snprintf (big, 256, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 65000\r\nConnection: close\r\n\r\n");
    memset (big + n, 'y', 65000);
    big [n + 65000] = 0;
    r = s_request (srv->port, big);
    assert_int_equal (s_status (r), 200);
    assert_non_null (strstr (r, "len=65000"));
    free (r);

    /*  30 header fields, over 20 */
    char *many = big;
    n = sprintf (many, "GET /hello HTTP/1.1\r\nHost: t\r\n");
    for (int i = 0; i < 30; i++)
        n += sprintf (many + n, "X-H%d: %d\r\n", i, i);
    sprintf (many + n, "\r\n");
    r = s_request (srv->port, many);
    assert_int_equal (s_status (r), 431);
    free (r);

    /*  one header of 16 KiB, over 8 KiB of header memory */
    n = sprintf (big, "GET /hello HTTP/1.1\r\nHost: t\r\nX-Big: ");
    memset (big + n, 'z', 16384);
    sprintf (big + n + 16384, "\r\n\r\n");
    r = s_request (srv->port, big);
    int status = s_status (r);
    assert_true (status == 431 || status == 413);
    free (r);
    free (big);
    assert_true (s_hello_ok (srv->port));
    s_srv_stop (srv);
}

/*  Connections over the total cap wait unserved (MHD stops accepting:
    they stay in the kernel's backlog, costing the server nothing) until
    one of the others goes; the reactor ticks meanwhile. */
static void
test_too_many_connections (void **state)
{
    bus_http_server_opts_t opts = { .max_connections = 4 };
    s_srv_t *srv = s_srv_start (&opts);
    int held [4];
    for (int i = 0; i < 4; i++)
        held [i] = s_connect (srv->port);
    usleep (100 * 1000);                /* let the reactor accept them */
    int ticks0 = atomic_load (&srv->ticks);
    int extra = s_connect (srv->port);
    const char *req = "GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    s_send_all (extra, req, strlen (req));
    struct pollfd p = { extra, POLLIN, 0 };
    assert_int_equal (poll (&p, 1, 500), 0);    /* not served while the cap holds */
    assert_true (atomic_load (&srv->ticks) > ticks0 + 5);
    close (held [0]);
    char *r = s_read_all (extra, 3000, NULL);   /* served once a place is free */
    assert_int_equal (s_status (r), 200);
    free (r);
    close (extra);
    for (int i = 1; i < 4; i++)
        close (held [i]);
    s_srv_stop (srv);
}

/*  Connections from one address over its cap are accepted and closed at
    once, while another address (127.0.0.2, also loopback) is served and
    the reactor ticks. */
static void
test_too_many_from_one_address (void **state)
{
    bus_http_server_opts_t opts = { .max_per_ip = 3 };
    s_srv_t *srv = s_srv_start (&opts);
    int held [3];
    for (int i = 0; i < 3; i++)
        held [i] = s_connect (srv->port);
    usleep (100 * 1000);
    int ticks0 = atomic_load (&srv->ticks);
    int extra = s_connect (srv->port);
    bool closed;
    char *r = s_read_all (extra, 1500, &closed);
    assert_true (closed);
    assert_int_equal (r [0], 0);
    free (r);
    close (extra);

    int other = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in from = { .sin_family = AF_INET, .sin_addr.s_addr = htonl (0x7f000002) };
    assert_int_equal (bind (other, (struct sockaddr *) &from, sizeof from), 0);
    struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) srv->port),
                              .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    assert_int_equal (connect (other, (struct sockaddr *) &to, sizeof to), 0);
    const char *req = "GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    s_send_all (other, req, strlen (req));
    r = s_read_all (other, 3000, NULL);
    assert_int_equal (s_status (r), 200);
    free (r);
    close (other);
    usleep (50 * 1000);
    assert_true (atomic_load (&srv->ticks) > ticks0);

    close (held [0]);
    usleep (100 * 1000);
    assert_true (s_hello_ok (srv->port));
    for (int i = 1; i < 3; i++)
        close (held [i]);
    s_srv_stop (srv);
}

/*  Destroying the server answers a deferred request 503, ends a stream,
    and tells both owners (gone). */
static void
test_stop_with_deferred (void **state)
{
    bus_http_server_opts_t opts = { 0 };
    s_srv_t *srv = s_srv_start (&opts);
    int fd = s_connect (srv->port);
    const char *req = "GET /never HTTP/1.1\r\nHost: t\r\n\r\n";
    s_send_all (fd, req, strlen (req));
    int stream = s_connect (srv->port);
    req = "GET /forever/y HTTP/1.1\r\nHost: t\r\n\r\n";
    s_send_all (stream, req, strlen (req));
    int64_t until = s_now_ms () + 2000;
    while (atomic_load (&srv->active) != 2 && s_now_ms () < until)
        usleep (5000);
    assert_int_equal (atomic_load (&srv->active), 2);
    assert_int_equal (s_srv_stop (srv), 2);
    bool closed;
    char *r = s_read_all (fd, 2000, &closed);
    assert_true (closed);
    assert_true (s_status (r) == 503 || r [0] == 0);
    free (r);
    close (fd);
    r = s_read_all (stream, 2000, &closed);
    assert_true (closed);
    free (r);
    close (stream);
}

/*  A client that closes while its exchange is suspended (a deferred
    answer, a stream with nothing to say) is seen at once: the owners'
    gone callbacks run with the server up, and it serves on. */
static void
test_suspended_client_gone (void **state)
{
    bus_http_server_opts_t opts = { 0 };
    s_srv_t *srv = s_srv_start (&opts);
    int fd = s_connect (srv->port);
    const char *req = "GET /never HTTP/1.1\r\nHost: t\r\n\r\n";
    s_send_all (fd, req, strlen (req));
    int stream = s_connect (srv->port);
    req = "GET /idle HTTP/1.1\r\nHost: t\r\n\r\n";
    s_send_all (stream, req, strlen (req));
    char *r = s_read_all (stream, 300, NULL);   /* the stream's head came */
    assert_int_equal (s_status (r), 200);
    free (r);
    int64_t until = s_now_ms () + 2000;
    while (atomic_load (&srv->active) != 2 && s_now_ms () < until)
        usleep (5000);
    assert_int_equal (atomic_load (&srv->active), 2);
    assert_int_equal (atomic_load (&srv->gone), 0);
    close (fd);
    assert_true (s_wait_for (&srv->gone, 1, 1000));
    /*  a reset, not a close */
    struct linger hard = { 1, 0 };
    setsockopt (stream, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
    close (stream);
    assert_true (s_wait_for (&srv->gone, 2, 1000));
    until = s_now_ms () + 1000;
    while (atomic_load (&srv->active) != 0 && s_now_ms () < until)
        usleep (5000);
    assert_int_equal (atomic_load (&srv->active), 0);
    assert_true (s_hello_ok (srv->port));
    assert_int_equal (s_srv_stop (srv), 2);     /* nothing left for the stop */
}

/*  A stream written a window at a time from its drained callback: all
    of it arrives, in order, to a client that reads slowly, and never
    more than a window was queued (checked on the reactor). */
static void
test_stream_drained (void **state)
{
    bus_http_server_opts_t opts = { 0 };
    s_srv_t *srv = s_srv_start (&opts);
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    int small = 16 << 10;
    setsockopt (fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) srv->port),
                              .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    assert_int_equal (connect (fd, (struct sockaddr *) &sa, sizeof sa), 0);
    const char *req = "GET /window HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    s_send_all (fd, req, strlen (req));
    usleep (200 * 1000);                /* not read: the socket buffers fill */
    int early = atomic_load (&srv->windows);
    assert_true (early < S_WINDOWS);    /* held back by the reader */
    size_t ws = 0;
    bool closed = false;
    char buf [4096];
    int64_t until = s_now_ms () + 10000;
    while (!closed && s_now_ms () < until) {
        ssize_t n = recv (fd, buf, sizeof buf, 0);
        if (n <= 0)
            closed = true;
        for (ssize_t i = 0; i < n; i++)
            ws += buf [i] == 'w';
    }
    close (fd);
    assert_true (closed);
    assert_int_equal (ws, (size_t) S_WINDOWS * S_WINDOW);
    assert_int_equal (atomic_load (&srv->windows), S_WINDOWS);
    assert_int_equal (s_srv_stop (srv), 0);
}

/*  Bad options and addresses are refused. */
static void
test_bad_options (void **state)
{
    zloop_t *loop = zloop_new ();
    char err [256];
    bus_http_server_opts_t opts = { .address = "localhost:80" };
    assert_null (bus_http_server_new (loop, &opts, err, sizeof err));
    opts.address = "127.0.0.1";
    assert_null (bus_http_server_new (loop, &opts, err, sizeof err));
    opts.address = "127.0.0.1:0";
    opts.max_header_bytes = 100;
    assert_null (bus_http_server_new (loop, &opts, err, sizeof err));
    opts.max_header_bytes = 0;
    opts.tls_cert_pem = "x";
    assert_null (bus_http_server_new (loop, &opts, err, sizeof err));
    opts.tls_cert_pem = NULL;
    bus_http_server_t *server = bus_http_server_new (loop, &opts, err, sizeof err);
    assert_non_null (server);
    assert_int_equal (bus_http_server_route (server, "GET", "nope", s_hello, NULL), BUS_EINVAL);
    /*  the port taken */
    char taken [64];
    snprintf (taken, sizeof taken, "127.0.0.1:%d", bus_http_server_port (server));
    opts.address = taken;
    assert_null (bus_http_server_new (loop, &opts, err, sizeof err));
    bus_http_server_destroy (&server);
    bus_http_server_destroy (&server);      /* accepted */
    zloop_destroy (&loop);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_routes_and_bodies),
        cmocka_unit_test (test_deferred_answer),
        cmocka_unit_test (test_sse_stream),
        cmocka_unit_test (test_stream_client_gone),
        cmocka_unit_test (test_stream_buffer_bounded),
        cmocka_unit_test (test_slow_client_bounded),
        cmocka_unit_test (test_oversized_request),
        cmocka_unit_test (test_too_many_connections),
        cmocka_unit_test (test_too_many_from_one_address),
        cmocka_unit_test (test_stop_with_deferred),
        cmocka_unit_test (test_suspended_client_gone),
        cmocka_unit_test (test_stream_drained),
        cmocka_unit_test (test_bad_options),
    };
    if (getenv ("TEST_FILTER"))         /* e.g. TEST_FILTER='*connections*' */
        cmocka_set_test_filter (getenv ("TEST_FILTER"));
    return cmocka_run_group_tests (tests, NULL, NULL);
}
