/*  bench_http.c — bus_http_client's throughput against curl_multi driven by
    a bare poll loop, both to the same local server, in the same run.

    Server: a bus_http_server (libmicrohttpd on a zloop) in a child process,
    answering GET /bench with a 64-byte body over keep-alive connections.
    (a) client: bus_http_client on a zloop: each completion sends the next
        request, 64 in flight (a new easy handle per request, as the API
        works; connections are reused from curl's cache).
    (b) baseline: 64 curl easy handles on a curl_multi, curl_multi_poll
        and curl_multi_perform in a loop; each finished handle is re-added
        for the next request.

    Figure: requests per second with 64 in flight; several interleaved
    rounds, each figure the median of the rounds. Output:
        bench http_client_throughput_64 VALUE req/s baseline B ratio R
    No target is set (the issue asks for the comparison); a ratio near 1
    says the zloop plumbing costs little beside curl itself.

    Usage: bench_http [--quick]. BENCH_HTTP_ONLY=client (or baseline)
    measures one side alone, for profiling (its ratio is then meaningless). Exit 0 when the measurement ran, 1 on
    error (a request failed, the server did not start).
*/
#include "bus_error.h"
#include "bus_http_client.h"
#include "bus_http_server.h"
#include "bus_log.h"
#include "../support/bench_util.h"

#include <curl/curl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define S_INFLIGHT      64
#define S_ROUNDS        3
#define S_BODY          "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

typedef struct {
    int count;                  /* requests per round */
    double max_s;               /* or stop after this long */
    int rounds;
} s_plan_t;



/* --- the server, in a child process --------------------------------------- */

static void
s_serve (bus_http_exchange_t *ex, void *arg)
{
    bus_http_respond (ex, 200, "text/plain", S_BODY, sizeof S_BODY - 1);
}

/*  Child: serve until SIGTERM (or the parent's death); report the port
    (or 0) on fd. */
static void
s_server_main (int fd)
{
    prctl (PR_SET_PDEATHSIG, SIGTERM);
    zloop_t *loop = zloop_new ();
    char err [256];
    bus_http_server_opts_t opts = { .address = "127.0.0.1:0", .max_connections = 1024,
                                    .max_per_ip = 1024 };
    bus_http_server_t *server = bus_http_server_new (loop, &opts, err, sizeof err);
    int port = 0;
    if (server && bus_http_server_route (server, "GET", "/bench", s_serve, NULL) == 0)
        port = bus_http_server_port (server);
    else
        fprintf (stderr, "bench_http: server: %s\n", server ? "route" : err);
    if (write (fd, &port, sizeof port) != sizeof port)
        port = 0;
    close (fd);
    if (port)
        zloop_start (loop);             /* ends on SIGTERM (CZMQ's handler) */
    bus_http_server_destroy (&server);
    zloop_destroy (&loop);
    _exit (0);
}

/* --- (a) bus_http_client on a zloop ----------------------------------------- */

typedef struct {
    bus_http_client_t *client;
    zloop_t *loop;
    const char *url;
    int sent, done, failed, limit;
    double until;
} s_bus_run_t;

static void s_bus_done (const bus_http_response_t *response, void *arg);

static int
s_bus_send (s_bus_run_t *run)
{
    bus_http_request_t req = { .url = run->url };
    run->sent++;
    return bus_http_client_send (run->client, &req, s_bus_done, run, NULL);
}

static void
s_bus_done (const bus_http_response_t *response, void *arg)
{
    s_bus_run_t *run = arg;
    run->done++;
    if (response->error || response->status != 200 || response->body_len != sizeof S_BODY - 1) {
        if (!run->failed++)
            fprintf (stderr, "bench_http: client: %s (%d) status %d\n", response->reason,
                     response->error, response->status);
    }
    if ((run->done & 255) == 0 && bench_now_s () >= run->until)
        run->limit = run->sent;         /* time is up: drain what is in flight */
    if (run->sent < run->limit && !run->failed) {
        if (s_bus_send (run))
            run->failed++;
    }
}

static int
s_bus_check (zloop_t *loop, int timer_id, void *arg)
{
    s_bus_run_t *run = arg;
    return run->done == run->sent && (run->sent >= run->limit || run->failed) ? -1 : 0;
}

/*  Requests per second through bus_http_client, or -1. */
static double
s_measure_bus (const char *url, const s_plan_t *plan)
{
    zloop_t *loop = zloop_new ();
    bus_http_client_opts_t opts = { .timeout_ms = 10000, .max_response = 65536 };
    bus_http_client_t *client = bus_http_client_new (loop, &opts);
    double rate = -1;
    if (!client)
        goto done;
    s_bus_run_t run = { .client = client, .loop = loop, .url = url, .limit = plan->count };
    run.until = bench_now_s () + plan->max_s;
    double t0 = bench_now_s ();
    for (int i = 0; i < S_INFLIGHT && run.sent < run.limit; i++)
        if (s_bus_send (&run))
            goto done;
    int check = zloop_timer (loop, 1, 0, s_bus_check, &run);
    zloop_start (loop);
    zloop_timer_end (loop, check);
    if (!run.failed && run.done == run.sent)
        rate = run.done / (bench_now_s () - t0);
done:
    bus_http_client_destroy (&client);
    zloop_destroy (&loop);
    return rate;
}

/* --- (b) curl_multi with a bare poll loop ------------------------------------- */

/*  Count the body's bytes. */
static size_t
s_sink (char *data, size_t size, size_t nmemb, void *userdata)
{
    *(size_t *) userdata += size * nmemb;
    return size * nmemb;
}

/*  Requests per second through curl_multi + curl_multi_poll, or -1. */
static double
s_measure_raw (const char *url, const s_plan_t *plan)
{
    CURLM *multi = curl_multi_init ();
    CURL *easy [S_INFLIGHT] = { NULL };
    size_t got [S_INFLIGHT] = { 0 };
    double rate = -1;
    int sent = 0, done = 0, limit = plan->count, failed = 0;
    double t0 = bench_now_s (), until = t0 + plan->max_s;
    for (int i = 0; i < S_INFLIGHT && sent < limit; i++) {
        easy [i] = curl_easy_init ();
        curl_easy_setopt (easy [i], CURLOPT_URL, url);
        curl_easy_setopt (easy [i], CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt (easy [i], CURLOPT_TIMEOUT_MS, 10000L);
        curl_easy_setopt (easy [i], CURLOPT_WRITEFUNCTION, s_sink);
        curl_easy_setopt (easy [i], CURLOPT_WRITEDATA, &got [i]);
        curl_easy_setopt (easy [i], CURLOPT_PRIVATE, (char *) &got [i]);
        curl_multi_add_handle (multi, easy [i]);
        sent++;
    }
    int running = 1;
    while (done < sent) {
        curl_multi_perform (multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read (multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            CURL *e = msg->easy_handle;
            size_t *count;
            long status = 0;
            curl_easy_getinfo (e, CURLINFO_PRIVATE, (char **) &count);
            curl_easy_getinfo (e, CURLINFO_RESPONSE_CODE, &status);
            if (msg->data.result != CURLE_OK || status != 200 || *count != sizeof S_BODY - 1)
                failed++;
            done++;
            *count = 0;
            curl_multi_remove_handle (multi, e);
            if ((done & 255) == 0 && bench_now_s () >= until)
                limit = sent;
            if (sent < limit && !failed) {
                curl_multi_add_handle (multi, e);
                sent++;
            }
        }
        if (done < sent)
            curl_multi_poll (multi, NULL, 0, 1000, NULL);
    }
    if (!failed)
        rate = done / (bench_now_s () - t0);
    else
        fprintf (stderr, "bench_http: baseline: %d requests failed\n", failed);
    for (int i = 0; i < S_INFLIGHT; i++)
        if (easy [i])
            curl_easy_cleanup (easy [i]);
    curl_multi_cleanup (multi);
    return rate;
}

/* --- main ------------------------------------------------------------------- */

int
main (int argc, char **argv)
{
    s_plan_t plan = { 200000, 3.0, S_ROUNDS };
    for (int i = 1; i < argc; i++) {
        if (strcmp (argv [i], "--quick") == 0)
            plan = (s_plan_t) { 3000, 0.5, 1 };
        else {
            fprintf (stderr, "usage: bench_http [--quick]\n");
            return 1;
        }
    }
    /*  The server's process first, before this one has threads */
    int fds [2];
    if (pipe (fds))
        return 1;
    pid_t child = fork ();
    if (child < 0)
        return 1;
    if (child == 0) {
        close (fds [0]);
        s_server_main (fds [1]);
    }
    close (fds [1]);
    int port = 0, rc = 1;
    if (read (fds [0], &port, sizeof port) != sizeof port || port <= 0) {
        fprintf (stderr, "bench_http: the server did not start\n");
        goto done;
    }
    bus_log_init ("bench", "warn");
    curl_global_init (CURL_GLOBAL_DEFAULT);
    char url [64];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/bench", port);

    double fig [2][S_ROUNDS];
    const char *only = getenv ("BENCH_HTTP_ONLY");   /* "client" | "baseline", for profiling */
    for (int r = 0; r < plan.rounds; r++)
        for (int k = 0; k < 2; k++) {
            int s = (r + k) % 2;        /* alternate who goes first */
            if (only && strcmp (only, s == 0 ? "client" : "baseline")) {
                fig [s][r] = 1;
                continue;
            }
            struct rusage ru0, ru1;
            getrusage (RUSAGE_SELF, &ru0);
            double t0 = bench_now_s ();
            double rate = s == 0 ? s_measure_bus (url, &plan) : s_measure_raw (url, &plan);
            if (rate < 0)
                goto done;
            getrusage (RUSAGE_SELF, &ru1);
            double cpu = (double) (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) * 1e6
                       + (double) (ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec);
            fig [s][r] = rate;
            fprintf (stderr, "# round %d %s: %.0f req/s, client CPU %.1f us per request\n", r + 1,
                     s == 0 ? "bus_http_client" : "curl_multi+poll", rate, cpu / (rate * (bench_now_s () - t0)));
        }
    qsort (fig [0], (size_t) plan.rounds, sizeof (double), bench_cmp_double);
    qsort (fig [1], (size_t) plan.rounds, sizeof (double), bench_cmp_double);
    double bus = fig [0][plan.rounds / 2], raw = fig [1][plan.rounds / 2];
    printf ("bench http_client_throughput_%d %.0f req/s baseline %.0f ratio %.2f\n",
            S_INFLIGHT, bus, raw, bus / raw);
    rc = 0;
done:
    fflush (stdout);
    close (fds [0]);
    kill (child, SIGTERM);
    waitpid (child, NULL, 0);
    return rc;
}
