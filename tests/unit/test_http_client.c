/*  test_http_client.c — bus_http_client against local servers: a
    bus_http_server on the same zloop (requests, methods, bodies, headers;
    HTTPS with a self-signed certificate), and a raw socket server on a
    thread that misbehaves on purpose (slow, huge, garbage, closed
    mid-response), and a closed port. Each is answered by exactly one
    callback with the right error, and the reactor keeps running meanwhile
    (a timer ticks, another request completes).
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <poll.h>
#include <stdatomic.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "bus_error.h"
#include "bus_http_client.h"
#include "bus_http_server.h"
#include "../support/test_service.h"

/* --- a raw server on a thread, misbehaving as told ------------------------ */

typedef enum {
    RAW_SLOW,                   /* headers, 3 bytes of 100, then nothing */
    RAW_HUGE_DECLARED,          /* Content-Length: 10 MiB */
    RAW_HUGE_CHUNKED,           /* chunks until the client hangs up */
    RAW_GARBAGE,                /* not HTTP */
    RAW_CLOSED,                 /* 10 bytes of a declared 1000, then close */
    RAW_MANY_HEADERS            /* 500 header fields */
} s_raw_mode_t;

static int s_raw_listen = -1;
static int s_raw_port;
static int s_raw_stop [2] = { -1, -1 };
static atomic_int s_raw_mode;
static pthread_t s_raw_thread;

/*  Read the request's headers (up to the blank line), or give up. */
static void
s_raw_read_request (int fd)
{
    char buf [4096];
    size_t got = 0;
    while (got < sizeof buf - 1) {
        struct pollfd p = { fd, POLLIN, 0 };
        if (poll (&p, 1, 2000) <= 0)
            return;
        ssize_t n = recv (fd, buf + got, sizeof buf - 1 - got, 0);
        if (n <= 0)
            return;
        got += (size_t) n;
        buf [got] = 0;
        if (strstr (buf, "\r\n\r\n"))
            return;
    }
}

static void
s_send_str (int fd, const char *text)
{
    send (fd, text, strlen (text), MSG_NOSIGNAL);
}

/*  Wait until the peer closes, the stop pipe fires, or ms pass. */
static void
s_raw_hold (int fd, int ms)
{
    struct pollfd p [2] = { { fd, POLLIN, 0 }, { s_raw_stop [0], POLLIN, 0 } };
    char buf [256];
    while (poll (p, 2, ms) > 0 && !(p [1].revents & POLLIN))
        if (recv (fd, buf, sizeof buf, 0) <= 0)
            break;
}

static void *
s_raw_main (void *arg)
{
    while (true) {
        struct pollfd p [2] = { { s_raw_listen, POLLIN, 0 }, { s_raw_stop [0], POLLIN, 0 } };
        if (poll (p, 2, -1) < 0 || (p [1].revents & POLLIN))
            break;
        int fd = accept (s_raw_listen, NULL, NULL);
        if (fd < 0)
            continue;
        s_raw_read_request (fd);
        switch (atomic_load (&s_raw_mode)) {
            case RAW_SLOW:
                s_send_str (fd, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc");
                s_raw_hold (fd, 10000);
                break;
            case RAW_HUGE_DECLARED:
                s_send_str (fd, "HTTP/1.1 200 OK\r\nContent-Length: 10485760\r\n\r\n");
                s_raw_hold (fd, 2000);
                break;
            case RAW_HUGE_CHUNKED: {
                s_send_str (fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
                char chunk [4096 + 16];
                int n = snprintf (chunk, sizeof chunk, "%x\r\n", 4096);
                memset (chunk + n, 'x', 4096);
                memcpy (chunk + n + 4096, "\r\n", 2);
                for (int i = 0; i < 1024; i++)         /* 4 MiB at most */
                    if (send (fd, chunk, (size_t) n + 4096 + 2, MSG_NOSIGNAL) < 0)
                        break;
                s_send_str (fd, "0\r\n\r\n");
                break;
            }
            case RAW_GARBAGE:
                s_send_str (fd, "SSH-2.0-OpenSSH_9.2\r\n\001\002\003 not http at all\r\n\r\n");
                break;
            case RAW_CLOSED:
                s_send_str (fd, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789");
                break;
            case RAW_MANY_HEADERS:
                s_send_str (fd, "HTTP/1.1 200 OK\r\n");
                for (int i = 0; i < 500; i++) {
                    char line [64];
                    snprintf (line, sizeof line, "X-Header-%d: %d\r\n", i, i);
                    s_send_str (fd, line);
                }
                s_send_str (fd, "Content-Length: 2\r\n\r\nok");
                break;
        }
        close (fd);
    }
    return NULL;
}

static void
s_raw_start (void)
{
    s_raw_listen = socket (AF_INET, SOCK_STREAM, 0);
    assert_true (s_raw_listen >= 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    assert_int_equal (bind (s_raw_listen, (struct sockaddr *) &sa, sizeof sa), 0);
    assert_int_equal (listen (s_raw_listen, 16), 0);
    socklen_t len = sizeof sa;
    getsockname (s_raw_listen, (struct sockaddr *) &sa, &len);
    s_raw_port = ntohs (sa.sin_port);
    assert_int_equal (pipe (s_raw_stop), 0);
    assert_int_equal (pthread_create (&s_raw_thread, NULL, s_raw_main, NULL), 0);
}

static void
s_raw_stop_thread (void)
{
    assert_int_equal (write (s_raw_stop [1], "x", 1), 1);
    pthread_join (s_raw_thread, NULL);
    close (s_raw_listen);
    close (s_raw_stop [0]);
    close (s_raw_stop [1]);
}

/* --- the reactor: a loop, a client, an echo server, a ticking timer ------- */

typedef struct {
    int calls;
    int error;
    int status;
    char reason [256];
    char body [512];
    size_t body_len;
    char x_echo [64];
} s_result_t;

typedef struct {
    zloop_t *loop;
    bus_http_client_t *client;
    bus_http_server_t *server;
    char base [64];             /* http(s)://127.0.0.1:port */
    int ticks;
    s_result_t **wait;          /* run until each has its callback */
    size_t wait_n;
} s_env_t;

static void
s_done (const bus_http_response_t *response, void *arg)
{
    s_result_t *result = arg;
    result->calls++;
    result->error = response->error;
    result->status = response->status;
    snprintf (result->reason, sizeof result->reason, "%s", response->reason);
    result->body_len = response->body_len;
    snprintf (result->body, sizeof result->body, "%s", response->body);
    const char *x = bus_http_response_header (response, "X-Echo");
    snprintf (result->x_echo, sizeof result->x_echo, "%s", x ? x : "");
}

/*  Echo: "METHOD PATH q=<q> h=<X-Name> body=<body>", header X-Echo: yes. */
static void
s_echo (bus_http_exchange_t *ex, void *arg)
{
    const char *q = bus_http_query (ex, "q"), *h = bus_http_header (ex, "X-Name");
    const char *ct = bus_http_header (ex, "Content-Type");
    char text [1024];
    int n = snprintf (text, sizeof text, "%s %s q=%s h=%s ct=%s body=%s", bus_http_method (ex),
                      bus_http_path (ex), q ? q : "", h ? h : "", ct ? ct : "", bus_http_body (ex, NULL));
    assert_int_equal (bus_http_header_add (ex, "X-Echo", "yes"), 0);
    assert_int_equal (bus_http_respond (ex, 200, "text/plain", text, (size_t) n), 0);
}

static int
s_tick (zloop_t *loop, int timer_id, void *arg)
{
    ((s_env_t *) arg)->ticks++;
    return 0;
}

static int
s_check (zloop_t *loop, int timer_id, void *arg)
{
    s_env_t *env = arg;
    for (size_t i = 0; i < env->wait_n; i++)
        if (env->wait [i]->calls == 0)
            return 0;
    return -1;
}

static int
s_guard (zloop_t *loop, int timer_id, void *arg)
{
    return -1;
}

/*  Run the reactor until every result has its callback, or ms pass. */
static void
s_run (s_env_t *env, s_result_t **wait, size_t n, int ms)
{
    env->wait = wait;
    env->wait_n = n;
    int check = zloop_timer (env->loop, 5, 0, s_check, env);
    int guard = zloop_timer (env->loop, (size_t) ms, 1, s_guard, env);
    zloop_start (env->loop);
    zloop_timer_end (env->loop, check);
    zloop_timer_end (env->loop, guard);
}

/*  A loop, a client with opts (NULL: defaults), an echo server (TLS when
    cert and key are given). */
static void
s_env_init (s_env_t *env, const bus_http_client_opts_t *opts, const char *cert, const char *key)
{
    memset (env, 0, sizeof *env);
    env->loop = zloop_new ();
    assert_non_null (env->loop);
    env->client = bus_http_client_new (env->loop, opts);
    assert_non_null (env->client);
    char err [256];
    bus_http_server_opts_t sopts = { .address = "127.0.0.1:0", .tls_cert_pem = cert, .tls_key_pem = key };
    env->server = bus_http_server_new (env->loop, &sopts, err, sizeof err);
    if (!env->server)
        fail_msg ("server: %s", err);
    assert_int_equal (bus_http_server_route (env->server, NULL, "/echo", s_echo, NULL), 0);
    snprintf (env->base, sizeof env->base, "%s://127.0.0.1:%d", cert ? "https" : "http",
              bus_http_server_port (env->server));
    zloop_timer (env->loop, 10, 0, s_tick, env);
}

static void
s_env_fini (s_env_t *env)
{
    bus_http_client_destroy (&env->client);
    bus_http_server_destroy (&env->server);
    zloop_destroy (&env->loop);
}

static void
s_send (s_env_t *env, const char *url, s_result_t *result, int timeout_ms)
{
    bus_http_request_t req = { .url = url, .timeout_ms = timeout_ms };
    assert_int_equal (bus_http_client_send (env->client, &req, s_done, result, NULL), 0);
}

/* --- tests ---------------------------------------------------------------- */

/*  GET with a query and a header; a form POST; a JSON PUT; all echoed. */
static void
test_requests_and_bodies (void **state)
{
    s_env_t env;
    s_env_init (&env, NULL, NULL, NULL);
    char url [128];
    s_result_t get = { 0 }, post = { 0 }, put = { 0 };

    snprintf (url, sizeof url, "%s/echo?q=a%%20b", env.base);
    const char *headers [] = { "X-Name: alice", NULL };
    bus_http_request_t req = { .url = url, .headers = headers };
    assert_int_equal (bus_http_client_send (env.client, &req, s_done, &get, NULL), 0);

    const char *pairs [] = { "grant_type", "urn:openid:params:grant-type:ciba", "auth_req_id", "a&b=c d", NULL };
    char *form = bus_http_form_encode (pairs);
    assert_string_equal (form, "grant_type=urn%3Aopenid%3Aparams%3Agrant-type%3Aciba&auth_req_id=a%26b%3Dc%20d");
    snprintf (url, sizeof url, "%s/echo", env.base);
    bus_http_request_t preq = { .url = url, .content_type = "application/x-www-form-urlencoded",
                                .body = form, .body_len = strlen (form) };
    assert_int_equal (bus_http_client_send (env.client, &preq, s_done, &post, NULL), 0);
    free (form);                        /* copied by send */

    const char *json = "{\"a\":1}";
    bus_http_request_t jreq = { .method = "PUT", .url = url, .content_type = "application/json",
                                .body = json, .body_len = strlen (json) };
    assert_int_equal (bus_http_client_send (env.client, &jreq, s_done, &put, NULL), 0);
    assert_int_equal (bus_http_client_pending (env.client), 3);

    s_result_t *all [] = { &get, &post, &put };
    s_run (&env, all, 3, 5000);
    assert_int_equal (get.calls, 1);
    assert_int_equal (get.error, 0);
    assert_int_equal (get.status, 200);
    assert_string_equal (get.body, "GET /echo q=a b h=alice ct= body=");
    assert_string_equal (get.x_echo, "yes");
    assert_int_equal (post.error, 0);
    assert_string_equal (post.body, "POST /echo q= h= ct=application/x-www-form-urlencoded "
                         "body=grant_type=urn%3Aopenid%3Aparams%3Agrant-type%3Aciba&auth_req_id=a%26b%3Dc%20d");
    assert_int_equal (put.error, 0);
    assert_string_equal (put.body, "PUT /echo q= h= ct=application/json body={\"a\":1}");
    assert_int_equal (bus_http_client_pending (env.client), 0);

    /*  an unknown path is a 404, not an error */
    s_result_t missing = { 0 };
    snprintf (url, sizeof url, "%s/nothing", env.base);
    s_send (&env, url, &missing, 0);
    s_result_t *one [] = { &missing };
    s_run (&env, one, 1, 5000);
    assert_int_equal (missing.error, 0);
    assert_int_equal (missing.status, 404);
    s_env_fini (&env);
}

/*  A server that stops sending: the deadline answers BUS_ETIMEOUT, while
    the reactor ticks and answers another request meanwhile. */
static void
test_slow_server_times_out (void **state)
{
    s_env_t env;
    s_env_init (&env, NULL, NULL, NULL);
    atomic_store (&s_raw_mode, RAW_SLOW);
    char url [128], echo [128];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/slow", s_raw_port);
    snprintf (echo, sizeof echo, "%s/echo", env.base);
    s_result_t slow = { 0 }, other = { 0 };
    s_send (&env, url, &slow, 400);
    s_send (&env, echo, &other, 0);
    s_result_t *all [] = { &slow, &other };
    s_run (&env, all, 2, 10000);
    assert_int_equal (other.calls, 1);
    assert_int_equal (other.status, 200);
    assert_int_equal (slow.calls, 1);
    assert_int_equal (slow.error, BUS_ETIMEOUT);
    assert_int_equal (slow.status, 0);
    assert_true (env.ticks >= 10);      /* 400 ms of 10 ms ticks, loosely */
    s_env_fini (&env);
}

/*  A body over the cap: declared (Content-Length) or growing (chunked). */
static void
test_huge_response_over_cap (void **state)
{
    bus_http_client_opts_t opts = { .timeout_ms = 5000, .max_response = 16384 };
    s_env_t env;
    s_env_init (&env, &opts, NULL, NULL);
    char url [128];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/huge", s_raw_port);

    atomic_store (&s_raw_mode, RAW_HUGE_DECLARED);
    s_result_t declared = { 0 };
    s_send (&env, url, &declared, 0);
    s_result_t *one [] = { &declared };
    s_run (&env, one, 1, 10000);
    assert_int_equal (declared.calls, 1);
    assert_int_equal (declared.error, BUS_ETOOBIG);

    atomic_store (&s_raw_mode, RAW_HUGE_CHUNKED);
    s_result_t chunked = { 0 };
    s_send (&env, url, &chunked, 0);
    one [0] = &chunked;
    s_run (&env, one, 1, 10000);
    assert_int_equal (chunked.calls, 1);
    assert_int_equal (chunked.error, BUS_ETOOBIG);
    assert_non_null (strstr (chunked.reason, "16384"));

    /*  the same body under a per-request cap that fits it is accepted */
    s_result_t fits = { 0 };
    bus_http_request_t req = { .url = url, .max_response = 8 << 20 };
    assert_int_equal (bus_http_client_send (env.client, &req, s_done, &fits, NULL), 0);
    one [0] = &fits;
    s_run (&env, one, 1, 10000);
    assert_int_equal (fits.error, 0);
    assert_int_equal (fits.body_len, 4u << 20);

    /*  too many response headers */
    atomic_store (&s_raw_mode, RAW_MANY_HEADERS);
    s_result_t headers = { 0 };
    s_send (&env, url, &headers, 0);
    one [0] = &headers;
    s_run (&env, one, 1, 10000);
    assert_int_equal (headers.calls, 1);
    assert_int_equal (headers.error, BUS_ETOOBIG);
    s_env_fini (&env);
}

/*  Not HTTP, and a response cut short: BUS_EPROTO. */
static void
test_garbage_and_closed (void **state)
{
    s_env_t env;
    s_env_init (&env, NULL, NULL, NULL);
    char url [128];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/x", s_raw_port);

    atomic_store (&s_raw_mode, RAW_GARBAGE);
    s_result_t garbage = { 0 };
    s_send (&env, url, &garbage, 3000);
    s_result_t *one [] = { &garbage };
    s_run (&env, one, 1, 10000);
    assert_int_equal (garbage.calls, 1);
    assert_int_equal (garbage.error, BUS_EPROTO);

    atomic_store (&s_raw_mode, RAW_CLOSED);
    s_result_t closed = { 0 };
    s_send (&env, url, &closed, 3000);
    one [0] = &closed;
    s_run (&env, one, 1, 10000);
    assert_int_equal (closed.calls, 1);
    assert_int_equal (closed.error, BUS_EPROTO);
    s_env_fini (&env);
}

/*  Nothing listens: BUS_EREFUSED. */
static void
test_refused (void **state)
{
    s_env_t env;
    s_env_init (&env, NULL, NULL, NULL);
    int port = test_service_free_port ();
    assert_true (port > 0);
    char url [128];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/", port);
    s_result_t refused = { 0 };
    s_send (&env, url, &refused, 3000);
    s_result_t *one [] = { &refused };
    s_run (&env, one, 1, 10000);
    assert_int_equal (refused.calls, 1);
    assert_int_equal (refused.error, BUS_EREFUSED);
    s_env_fini (&env);
}

/*  Read a whole file into a string (caller frees). */
static char *
s_slurp (const char *path)
{
    FILE *file = fopen (path, "r");
    assert_non_null (file);
    char *text = calloc (1, 65536);
    size_t n = fread (text, 1, 65535, file);
    fclose (file);
    text [n] = 0;
    return text;
}

/*  HTTPS with a self-signed certificate: refused (BUS_ETLS) when nothing
    trusts it, accepted when its file is the client's CA file. */
static void
test_tls_untrusted_then_trusted (void **state)
{
    char dir [256], cmd [1024], cert_path [300], key_path [300];
    assert_int_equal (test_service_tmpdir (dir, sizeof dir, "sanctum-http-tls"), 0);
    snprintf (cert_path, sizeof cert_path, "%s/cert.pem", dir);
    snprintf (key_path, sizeof key_path, "%s/key.pem", dir);
    snprintf (cmd, sizeof cmd,
              "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
              "-keyout %s -out %s -days 2 -subj /CN=127.0.0.1 "
              "-addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1", key_path, cert_path);
    if (system (cmd) != 0)
        fail_msg ("openssl could not make a test certificate (ops/deps.sh installs openssl)");
    char *cert = s_slurp (cert_path), *key = s_slurp (key_path);

    s_env_t env;
    s_env_init (&env, NULL, cert, key);
    char url [128];
    snprintf (url, sizeof url, "%s/echo", env.base);
    s_result_t untrusted = { 0 };
    s_send (&env, url, &untrusted, 5000);
    s_result_t *one [] = { &untrusted };
    s_run (&env, one, 1, 10000);
    assert_int_equal (untrusted.calls, 1);
    assert_int_equal (untrusted.error, BUS_ETLS);

    /*  a second client on the same loop, trusting the certificate */
    bus_http_client_opts_t opts = { .ca_file = cert_path, .timeout_ms = 5000, .max_response = 65536 };
    bus_http_client_t *trusting = bus_http_client_new (env.loop, &opts);
    assert_non_null (trusting);
    s_result_t trusted = { 0 };
    bus_http_request_t req = { .url = url };
    assert_int_equal (bus_http_client_send (trusting, &req, s_done, &trusted, NULL), 0);
    one [0] = &trusted;
    s_run (&env, one, 1, 10000);
    assert_int_equal (trusted.calls, 1);
    assert_int_equal (trusted.error, 0);
    assert_int_equal (trusted.status, 200);
    assert_string_equal (trusted.body, "GET /echo q= h= ct= body=");

    /*  a CA file that does not exist is refused at creation */
    opts.ca_file = "/nonexistent/ca.pem";
    assert_null (bus_http_client_new (env.loop, &opts));

    bus_http_client_destroy (&trusting);
    s_env_fini (&env);
    free (cert);
    free (key);
    test_service_rmtree (dir);
}

/*  Cancelled requests get no callback; destroying the client with
    requests in flight calls none either. */
static void
test_cancel (void **state)
{
    s_env_t env;
    s_env_init (&env, NULL, NULL, NULL);
    atomic_store (&s_raw_mode, RAW_SLOW);
    char url [128], echo [128];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/slow", s_raw_port);
    snprintf (echo, sizeof echo, "%s/echo", env.base);
    s_result_t by_id = { 0 }, owner = { 0 }, marker = { 0 };
    uint64_t id;
    bus_http_request_t req = { .url = url, .timeout_ms = 300 };
    assert_int_equal (bus_http_client_send (env.client, &req, s_done, &by_id, &id), 0);
    assert_int_equal (bus_http_client_send (env.client, &req, s_done, &owner, NULL), 0);
    assert_int_equal (bus_http_client_send (env.client, &req, s_done, &owner, NULL), 0);
    assert_int_equal (bus_http_client_cancel (env.client, id), 0);
    assert_int_equal (bus_http_client_cancel (env.client, id), BUS_ENOTFOUND);
    assert_int_equal (bus_http_client_cancel_arg (env.client, &owner), 2);
    assert_int_equal (bus_http_client_pending (env.client), 0);
    /*  run past the deadlines they would have had */
    req.url = echo;
    req.timeout_ms = 0;
    assert_int_equal (bus_http_client_send (env.client, &req, s_done, &marker, NULL), 0);
    s_result_t *none [] = { &by_id };
    s_run (&env, none, 1, 700);
    assert_int_equal (marker.calls, 1);
    assert_int_equal (by_id.calls, 0);
    assert_int_equal (owner.calls, 0);

    req.url = url;
    assert_int_equal (bus_http_client_send (env.client, &req, s_done, &by_id, NULL), 0);
    s_run (&env, none, 1, 50);
    s_env_fini (&env);                 /* destroyed in flight: no callback */
    assert_int_equal (by_id.calls, 0);
}

/*  The defaults from the config: [sanctum] http_*. */
static void
test_opts_from_config (void **state)
{
    bus_config_t *config = NULL;
    char err [256];
    assert_int_equal (bus_config_load (&config, NULL, err, sizeof err), 0);
    bus_http_client_opts_t opts;
    bus_http_client_opts_from_config (&opts, config);
    assert_string_equal (opts.ca_file, "");
    assert_int_equal (opts.timeout_ms, 30000);
    assert_int_equal (opts.max_response, 8388608);
    assert_int_equal (bus_config_set (config, "sanctum", "http_max_response", "100", err, sizeof err),
                      BUS_ECONFIG);     /* under the bound */
    bus_config_destroy (&config);
}

/*  Bad requests are refused at send, with no callback. */
static void
test_bad_requests (void **state)
{
    s_env_t env;
    s_env_init (&env, NULL, NULL, NULL);
    s_result_t result = { 0 };
    bus_http_request_t req = { .url = "ftp://127.0.0.1/" };
    assert_int_equal (bus_http_client_send (env.client, &req, s_done, &result, NULL), BUS_EINVAL);
    req.url = "file:///etc/passwd";
    assert_int_equal (bus_http_client_send (env.client, &req, s_done, &result, NULL), BUS_EINVAL);
    req.url = NULL;
    assert_int_equal (bus_http_client_send (env.client, &req, s_done, &result, NULL), BUS_EINVAL);
    req.url = "http://127.0.0.1/";
    req.method = "GE T";
    assert_int_equal (bus_http_client_send (env.client, &req, s_done, &result, NULL), BUS_EINVAL);
    req.method = NULL;
    const char *split [] = { "X-A: 1\r\nX-Injected: 2", NULL };
    req.headers = split;
    assert_int_equal (bus_http_client_send (env.client, &req, s_done, &result, NULL), BUS_EINVAL);
    const char *nocolon [] = { "X-A", NULL };
    req.headers = nocolon;
    assert_int_equal (bus_http_client_send (env.client, &req, s_done, &result, NULL), BUS_EINVAL);
    assert_int_equal (bus_http_client_pending (env.client), 0);
    const char *odd [] = { "a", NULL };
    assert_null (bus_http_form_encode (odd));
    bus_http_client_opts_t bad = { .timeout_ms = 0, .max_response = 10 };
    assert_null (bus_http_client_new (env.loop, &bad));
    s_env_fini (&env);
    assert_int_equal (result.calls, 0);
}

static int
s_setup (void **state)
{
    s_raw_start ();
    return 0;
}

static int
s_teardown (void **state)
{
    s_raw_stop_thread ();
    return 0;
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_requests_and_bodies),
        cmocka_unit_test (test_slow_server_times_out),
        cmocka_unit_test (test_huge_response_over_cap),
        cmocka_unit_test (test_garbage_and_closed),
        cmocka_unit_test (test_refused),
        cmocka_unit_test (test_tls_untrusted_then_trusted),
        cmocka_unit_test (test_cancel),
        cmocka_unit_test (test_bad_requests),
        cmocka_unit_test (test_opts_from_config),
    };
    return cmocka_run_group_tests (tests, s_setup, s_teardown);
}
