/*  test_call.c — calls from the reactor (bus_call.h): a peer service on a
    thread of its own (the authz section, its `echo` handler replaced by a
    test one that answers now or later), a zloop on the test thread that
    makes the calls, and for the restart test the real sanctum-sandbox
    binary as its own process, killed (SIGKILL) and started again.

    The test echo handler reads body.data: {n, mode, delay_ms}: mode "fast"
    answers at once, "slow" defers and answers after delay_ms (a peer timer);
    "fail" answers a conflict error with {detail: 42}; the reply is {n, runs (how many times the handler ran for this request
    id), traceparent (the request's)}. Every test checks that each call got
    exactly one callback (or none after it was cancelled).
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "bus_call.h"
#include "bus_client.h"
#include "bus_error.h"
#include "bus_keys.h"
#include "bus_log.h"
#include "bus_service.h"
#include "bus_stats.h"
#include "../support/test_service.h"

#define S_CALLS_MAX 10000

/* --- the peer (its own thread) ---------------------------------------------- */

typedef struct {
    bus_request_t *req;
    int64_t due_ms;
} s_parked_t;

static zlistx_t *s_parked;              /* peer thread only */
static zhashx_t *s_runs;                /* request id -> runs (peer thread only) */
static atomic_int s_peer_runs;          /* handler runs, all requests */
static bus_calls_t *s_relay;            /* the peer's calls to itself (peer thread only) */

static void s_relay_echo (bus_service_t *svc, bus_request_t *req);

/*  Answer a request as the test echo does. */
static void
s_peer_answer (bus_request_t *req)
{
    proto_msg_t *msg = bus_request_msg (req);
    json_t *data = json_object_get (bus_request_body (req), "data");
    size_t runs = (size_t) zhashx_lookup (s_runs, msg->id);
    bus_reply_ok (req, json_pack ("{s:O?, s:I, s:s}", "n", json_object_get (data, "n"),
                                  "runs", (json_int_t) runs, "traceparent", msg->traceparent));
}

static void
s_peer_echo (bus_service_t *svc, bus_request_t *req, void *arg)
{
    proto_msg_t *msg = bus_request_msg (req);
    json_t *data = json_object_get (bus_request_body (req), "data");
    const char *mode = json_string_value (json_object_get (data, "mode"));
    size_t runs = (size_t) zhashx_lookup (s_runs, msg->id);
    zhashx_update (s_runs, msg->id, (void *) (runs + 1));
    atomic_fetch_add (&s_peer_runs, 1);
    if (mode && streq (mode, "slow")) {
        bus_request_defer (req);
        s_parked_t *p = calloc (1, sizeof *p);
        assert_non_null (p);
        p->req = req;
        p->due_ms = zclock_mono () + json_integer_value (json_object_get (data, "delay_ms"));
        zlistx_add_end (s_parked, p);
        return;
    }
    if (mode && streq (mode, "relay")) {
        s_relay_echo (svc, req);
        return;
    }
    if (mode && streq (mode, "fail")) {
        bus_reply_error_with (req, PROTO_ERR_CONFLICT, json_pack ("{s:i}", "detail", 42), "refused by the peer");
        return;
    }
    s_peer_answer (req);
}

/*  Peer timer: answer the parked requests that are due (all of them when
    stopping). */
static void
s_peer_flush (bool all)
{
    int64_t now = zclock_mono ();
    s_parked_t *p = zlistx_first (s_parked);
    while (p) {
        if (all || p->due_ms <= now) {
            s_peer_answer (p->req);
            free (p);
            zlistx_delete (s_parked, zlistx_cursor (s_parked));
            p = zlistx_first (s_parked);
        }
        else
            p = zlistx_next (s_parked);
    }
}

static int
s_peer_tick (zloop_t *loop, int timer_id, void *arg)
{
    s_peer_flush (false);
    return 0;
}

/* --- the deferred pattern ---------------------------------------------------- */

static void
s_relay_on_reply (bus_calls_t *calls, proto_msg_t *reply, void *arg)
{
    bus_call_reply_to (arg, reply);
}

/*  echo {mode: "relay", inner: DATA}: defer, ask a service (the peer
    itself, here: its calls do not wait, so it can) for echo {data: DATA},
    answer from the callback. */
static void
s_relay_echo (bus_service_t *svc, bus_request_t *req)
{
    bus_request_defer (req);
    bus_call_opts_t opts = { .traceparent = bus_request_traceparent (req) };
    json_t *data = json_object_get (bus_request_body (req), "data");
    int rc = bus_calls_send (s_relay, "echo", json_pack ("{s:O?}", "data", json_object_get (data, "inner")),
                             &opts, s_relay_on_reply, req, NULL);
    if (rc)
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "peer: %s", bus_strerror (rc));
}

static int
s_peer_start (bus_service_t *svc, void **state)
{
    /* from the config: [authz] rpc, keys_dir/authz.key, the service's cert */
    s_relay = bus_calls_for (svc, "authz");
    if (!s_relay)
        return BUS_ECONFIG;
    s_parked = zlistx_new ();
    s_runs = zhashx_new ();
    zloop_timer (bus_service_loop (svc), 5, 0, s_peer_tick, NULL);
    return bus_service_handle (svc, "echo", s_peer_echo, NULL);
}

static void
s_peer_stop (bus_service_t *svc, void **state)
{
    s_peer_flush (true);
    bus_calls_destroy (&s_relay);
    zlistx_destroy (&s_parked);
    zhashx_destroy (&s_runs);
}

static const bus_daemon_t s_peer_daemon = { .section = "authz", .start = s_peer_start, .stop = s_peer_stop };

/* --- the caller (the test thread) ------------------------------------------ */

typedef struct {
    test_service_t *peer;
    zcert_t *ops;
    zloop_t *loop;
    bus_stats_t *stats;
    int counts [S_CALLS_MAX];           /* callbacks per call */
    char codes [S_CALLS_MAX][24];       /* the last reply's code ("ok", "timeout", ...) */
    long runs [S_CALLS_MAX];            /* the peer's handler runs for the call */
    int callbacks;
    int wait_for;                       /* s_run_until: stop once callbacks reach it */
    bus_calls_t *calls;                 /* the test's */
    char cancel_id [PROTO_ID_LEN + 1];  /* a callback cancels it */
    bool destroy_in_callback;
} fixture_t;

static fixture_t *s_fx;

/*  A call's callback: arg is its index. */
static void
s_on_reply (bus_calls_t *calls, proto_msg_t *reply, void *arg)
{
    int i = (int) (intptr_t) arg;
    s_fx->counts [i]++;
    s_fx->callbacks++;
    const char *code = reply->ok ? "ok" : json_string_value (json_object_get (reply->error, "code"));
    snprintf (s_fx->codes [i], sizeof s_fx->codes [i], "%s", code ? code : "?");
    s_fx->runs [i] = (long) json_integer_value (json_object_get (reply->body, "runs"));
    json_t *n = json_object_get (reply->body, "n");     /* the test echo's; the sandbox's in data */
    if (!n)
        n = json_object_get (json_object_get (reply->body, "data"), "n");
    if (reply->ok)
        assert_int_equal (json_integer_value (n), i);
    if (s_fx->cancel_id [0]) {
        assert_int_equal (bus_calls_cancel (calls, s_fx->cancel_id), 0);
        s_fx->cancel_id [0] = 0;
    }
    if (s_fx->destroy_in_callback) {
        s_fx->destroy_in_callback = false;
        assert_ptr_equal (calls, s_fx->calls);
        bus_calls_destroy (&s_fx->calls);
    }
}

static int
s_on_check (zloop_t *loop, int timer_id, void *arg)
{
    return s_fx->callbacks >= s_fx->wait_for ? -1 : 0;
}

static int
s_on_give_up (zloop_t *loop, int timer_id, void *arg)
{
    return -1;
}

/*  Run the caller's reactor until wait_for callbacks came (wait_for < 0:
    for ms regardless), or ms passed. */
static void
s_run_until (int wait_for, int ms)
{
    s_fx->wait_for = wait_for < 0 ? INT_MAX : wait_for;
    int check = zloop_timer (s_fx->loop, 2, 0, s_on_check, NULL);
    int give_up = zloop_timer (s_fx->loop, (size_t) ms, 1, s_on_give_up, NULL);
    zloop_start (s_fx->loop);
    zloop_timer_end (s_fx->loop, check);
    zloop_timer_end (s_fx->loop, give_up);
}

/*  Send call i (data {n: i, mode, delay_ms}). */
static void
s_send (bus_calls_t *calls, int i, const char *mode, int delay_ms, const bus_call_opts_t *opts,
        char id [PROTO_ID_LEN + 1])
{
    json_t *body = json_pack ("{s:{s:i, s:s, s:i}}", "data", "n", i, "mode", mode, "delay_ms", delay_ms);
    assert_int_equal (bus_calls_send (calls, "echo", body, opts, s_on_reply, (void *) (intptr_t) i, id), 0);
}

static bus_calls_t *
s_calls (int timeout_ms, int retries)
{
    bus_calls_t *calls = bus_calls_new (s_fx->loop, "authz", test_service_rpc (s_fx->peer),
                                        test_service_server_key (s_fx->peer), s_fx->ops,
                                        timeout_ms, retries, s_fx->stats);
    assert_non_null (calls);
    return calls;
}

static void
s_reset (void)
{
    memset (s_fx->counts, 0, sizeof s_fx->counts);
    memset (s_fx->codes, 0, sizeof s_fx->codes);
    memset (s_fx->runs, 0, sizeof s_fx->runs);
    s_fx->callbacks = 0;
    s_fx->cancel_id [0] = 0;
    atomic_store (&s_peer_runs, 0);
    bus_stats_destroy (&s_fx->stats);
    s_fx->stats = bus_stats_new ();
}

static int
s_setup (void **state)
{
    static fixture_t fx;
    char err [256] = "";
    s_fx = &fx;
    /* the peer's echo replies from memory only (it records no outcome),
       and one principal here has 10,000 in flight: its share of the
       dedupe memory must hold them all for a late retry to find its reply */
    fx.peer = test_service_new ("authz", NULL, "map_size_mb = 16\ndedupe_principal_entries = 20000\n",
                                err, sizeof err);
    if (!fx.peer)
        fprintf (stderr, "test_service_new: %s\n", err);
    assert_non_null (fx.peer);
    fx.ops = test_service_cert (fx.peer, "ops-test", "ops:test");
    assert_non_null (fx.ops);
    if (test_service_start (fx.peer, &s_peer_daemon, "peer-1", 0, err, sizeof err))
        fprintf (stderr, "test_service_start: %s\n", err);
    fx.loop = zloop_new ();
    fx.stats = bus_stats_new ();
    *state = &fx;
    return 0;
}

static int
s_teardown (void **state)
{
    bus_calls_destroy (&s_fx->calls);
    zloop_destroy (&s_fx->loop);
    test_service_destroy (&s_fx->peer);
    zcert_destroy (&s_fx->ops);
    bus_stats_destroy (&s_fx->stats);
    return 0;
}

/* --- tests ------------------------------------------------------------------- */

/*  10,000 calls in flight at once to a peer that answers each 300 ms
    later: each gets exactly one callback, ok, on its first attempt, and
    the peer ran each once. */
static void
test_many_inflight (void **state)
{
    s_reset ();
    bus_calls_t *calls = s_calls (5000, 2);
    for (int i = 0; i < S_CALLS_MAX; i++)
        s_send (calls, i, "slow", 300, NULL, NULL);
    assert_int_equal (bus_calls_inflight (calls), S_CALLS_MAX);
    s_run_until (S_CALLS_MAX, 30000);
    s_run_until (-1, 200);              /* nothing more comes */
    assert_int_equal (s_fx->callbacks, S_CALLS_MAX);
    for (int i = 0; i < S_CALLS_MAX; i++) {
        assert_int_equal (s_fx->counts [i], 1);
        assert_string_equal (s_fx->codes [i], "ok");
        assert_int_equal (s_fx->runs [i], 1);
    }
    assert_int_equal (atomic_load (&s_peer_runs), S_CALLS_MAX);
    assert_int_equal (bus_calls_inflight (calls), 0);
    /* the burst of 10,000 replies overflows the peer's queue for this
       connection (256): the peer holds them (bus_backlog.h), none is
       dropped, so none waits for a retry (without it, about 2,000 did) */
    assert_int_equal (bus_stats_get (s_fx->stats, "calls_retried"), 0);
    bus_calls_destroy (&calls);
}

/*  A peer slower than every attempt: one `timeout` callback after the
    attempts (the peer ran the request once: its dedupe swallowed the
    repeats); a peer that is not there at all: the same, after reconnects. */
static void
test_timeout_and_retries (void **state)
{
    s_reset ();
    bus_calls_t *calls = s_calls (100, 2);
    int64_t start = zclock_mono ();
    s_send (calls, 0, "slow", 2000, NULL, NULL);
    bus_call_opts_t one = { .attempts = 1, .timeout_ms = 50 };
    s_send (calls, 1, "slow", 2000, &one, NULL);
    s_run_until (2, 5000);
    int64_t took = zclock_mono () - start;
    assert_int_equal (s_fx->callbacks, 2);
    assert_string_equal (s_fx->codes [0], "timeout");
    assert_string_equal (s_fx->codes [1], "timeout");
    assert_true (took >= 300);          /* three attempts of 100 ms */
    assert_int_equal (bus_stats_get (s_fx->stats, "calls_retried"), 2);
    assert_int_equal (bus_stats_get (s_fx->stats, "calls_timeout"), 2);
    s_run_until (-1, 300);
    assert_int_equal (s_fx->counts [0], 1);
    assert_int_equal (atomic_load (&s_peer_runs), 2);
    bus_calls_destroy (&calls);

    /* nobody listens there */
    s_reset ();
    char dead [64];
    snprintf (dead, sizeof dead, "tcp://127.0.0.1:%d", test_service_free_port ());
    calls = bus_calls_new (s_fx->loop, "nobody", dead, test_service_server_key (s_fx->peer),
                           s_fx->ops, 60, 3, s_fx->stats);
    assert_non_null (calls);
    s_send (calls, 5, "fast", 0, NULL, NULL);
    s_run_until (1, 5000);
    assert_int_equal (s_fx->counts [5], 1);
    assert_string_equal (s_fx->codes [5], "timeout");
    assert_true (bus_stats_get (s_fx->stats, "calls_reconnects") >= 1);
    bus_calls_destroy (&calls);

    /* bad arguments: no callback will come, nothing in flight */
    calls = s_calls (100, 0);
    assert_int_equal (bus_calls_send (calls, "no.such.type", NULL, NULL, s_on_reply, NULL, NULL), BUS_EINVAL);
    assert_int_equal (bus_calls_send (calls, "service.started", NULL, NULL, s_on_reply, NULL, NULL), BUS_EINVAL);
    assert_int_equal (bus_calls_send (calls, "echo", NULL, NULL, NULL, NULL, NULL), BUS_EINVAL);
    assert_int_equal (bus_calls_inflight (calls), 0);
    bus_calls_destroy (&calls);
    assert_null (bus_calls_new (s_fx->loop, "x", "tcp://127.0.0.1:1", "short", s_fx->ops, 0, 0, NULL));
}

/*  The first attempt's reply is lost (the peer answers after the caller
    gave up on that connection and made a new one); a later attempt, with
    the same id, is answered from the peer's dedupe cache: ok, and the
    handler ran once. */
static void
test_retry_from_dedupe (void **state)
{
    s_reset ();
    bus_calls_t *calls = s_calls (150, 10);
    s_send (calls, 7, "slow", 600, NULL, NULL);
    s_run_until (1, 5000);
    assert_int_equal (s_fx->counts [7], 1);
    assert_string_equal (s_fx->codes [7], "ok");
    assert_int_equal (s_fx->runs [7], 1);
    assert_int_equal (atomic_load (&s_peer_runs), 1);
    assert_true (bus_stats_get (s_fx->stats, "calls_retried") >= 3);
    assert_true (bus_stats_get (s_fx->stats, "calls_reconnects") >= 1);
    /* the peer saw the repeats and answered one from its cache */
    bus_client_t *client = bus_client_new (test_service_rpc (s_fx->peer),
                                           test_service_server_key (s_fx->peer), s_fx->ops, 2000, 1);
    assert_true (test_service_counter (client, "requests_duplicate") >= 3);
    bus_client_destroy (&client);
    bus_calls_destroy (&calls);
}

/*  Cancelled calls get no callback: by id, by owner, from inside another
    call's callback, and every call of an object destroyed in a callback. */
static void
test_cancel (void **state)
{
    s_reset ();
    bus_calls_t *calls = s_calls (5000, 1);
    int owner_a, owner_b;
    bus_call_opts_t a = { .owner = &owner_a }, b = { .owner = &owner_b };
    char ids [300][PROTO_ID_LEN + 1];
    for (int i = 0; i < 300; i++)
        s_send (calls, i, "slow", 150, i < 100 ? NULL : i < 200 ? &a : &b, ids [i]);
    for (int i = 0; i < 100; i += 2)
        assert_int_equal (bus_calls_cancel (calls, ids [i]), 0);
    assert_int_equal (bus_calls_cancel (calls, ids [0]), BUS_ENOTFOUND);
    assert_int_equal (bus_calls_cancel_owner (calls, &owner_a), 100);
    assert_int_equal (bus_calls_cancel_owner (calls, &owner_a), 0);
    assert_int_equal (bus_calls_inflight (calls), 150);
    /* the first callback (call 1) cancels call 299 */
    snprintf (s_fx->cancel_id, sizeof s_fx->cancel_id, "%s", ids [299]);
    s_run_until (149, 5000);
    s_run_until (-1, 400);
    assert_int_equal (s_fx->callbacks, 149);
    for (int i = 0; i < 300; i++)
        assert_int_equal (s_fx->counts [i], (i < 100 && i % 2 == 1) || (i >= 200 && i < 299) ? 1 : 0);
    assert_int_equal (bus_calls_cancel (calls, ids [1]), BUS_ENOTFOUND);
    bus_calls_destroy (&calls);

    /* destroyed from its own callback: the other calls are cancelled */
    s_reset ();
    s_fx->calls = s_calls (5000, 1);
    for (int i = 0; i < 20; i++)
        s_send (s_fx->calls, i, "slow", 100, NULL, NULL);
    s_fx->destroy_in_callback = true;
    s_run_until (-1, 600);
    assert_null (s_fx->calls);
    assert_int_equal (s_fx->callbacks, 1);

    /* destroyed with calls in flight, outside a callback: none comes */
    s_reset ();
    calls = s_calls (5000, 1);
    for (int i = 0; i < 20; i++)
        s_send (calls, i, "slow", 50, NULL, NULL);
    bus_calls_destroy (&calls);
    s_run_until (-1, 300);
    assert_int_equal (s_fx->callbacks, 0);
}

/*  The deferred pattern: the peer's handler defers its request, calls a
    service (itself) and answers from the callback; the trace is carried
    on (the inner request has the client's trace id and a span of its
    own); an error reply comes through as it is. */
static void
test_deferred (void **state)
{
    bus_client_t *client = bus_client_new (test_service_rpc (s_fx->peer), test_service_server_key (s_fx->peer),
                                           s_fx->ops, 3000, 2);
    char trace [PROTO_TRACEPARENT_LEN + 1];
    proto_traceparent_new (trace);
    for (int i = 0; i < 20; i++) {
        proto_msg_t *reply = NULL;
        json_t *body = json_pack ("{s:{s:s, s:{s:i, s:s, s:i}}}", "data", "mode", "relay", "inner",
                                  "n", i, "mode", i % 2 ? "slow" : "fast", "delay_ms", 30);
        assert_int_equal (bus_client_call (client, "echo", body, trace, &reply), 0);
        json_decref (body);
        assert_true (reply->ok);
        assert_int_equal (json_integer_value (json_object_get (reply->body, "n")), i);
        const char *tp = json_string_value (json_object_get (reply->body, "traceparent"));
        assert_non_null (tp);
        assert_memory_equal (tp + 3, trace + 3, 32);      /* same trace id */
        assert_memory_not_equal (tp + 36, trace + 36, 16); /* a span of its own */
        proto_msg_destroy (&reply);
    }
    /* a peer error comes through as it is */
    proto_msg_t *reply = NULL;
    json_t *body = json_pack ("{s:{s:s, s:{s:s}}}", "data", "mode", "relay", "inner", "mode", "fail");
    assert_int_equal (bus_client_call (client, "echo", body, NULL, &reply), 0);
    json_decref (body);
    assert_false (reply->ok);
    assert_string_equal (json_string_value (json_object_get (reply->error, "code")), PROTO_ERR_CONFLICT);
    assert_string_equal (json_string_value (json_object_get (reply->error, "message")), "refused by the peer");
    assert_int_equal (json_integer_value (json_object_get (reply->error, "detail")), 42);
    proto_msg_destroy (&reply);
    bus_client_destroy (&client);
}

/* --- the peer as a real process, killed and restarted mid-call --------------- */

static pid_t
s_spawn_sandbox (const char *dir)
{
    char exe [PATH_MAX], path [PATH_MAX + 32], conf [PATH_MAX], log [PATH_MAX];
    ssize_t n = readlink ("/proc/self/exe", exe, sizeof exe - 1);
    assert_true (n > 0);
    exe [n] = 0;
    snprintf (path, sizeof path, "%s/../bin/sanctum-sandbox", dirname (exe));
    snprintf (conf, sizeof conf, "%s/sanctum.conf", dir);
    snprintf (log, sizeof log, "%s/sandbox.log", dir);
    if (access (path, X_OK))
        fail_msg ("no %s (make builds it)", path);
    fflush (NULL);
    pid_t pid = fork ();
    if (pid == 0) {
        prctl (PR_SET_PDEATHSIG, SIGKILL);
        if (!freopen (log, "a", stderr))
            _exit (126);
        setenv ("SANCTUM_SANCTUM_LOG_LEVEL", "warn", 1);
        setenv ("SANCTUM_SANDBOX_HTTP", "127.0.0.1:0", 1);     /* its mock APIs: any free port */
        execl (path, path, "--config", conf, (char *) NULL);
        _exit (127);
    }
    assert_true (pid > 0);
    return pid;
}

static int s_kill_after;                /* SIGKILL the peer once this many callbacks came */
static pid_t s_sandbox;

static int
s_on_kill_check (zloop_t *loop, int timer_id, void *arg)
{
    return s_fx->callbacks >= s_kill_after ? -1 : 0;
}

/*  2,000 echo calls to a real sanctum-sandbox; it is killed (SIGKILL)
    after 100 answers and started again 300 ms later: every call gets
    exactly one callback, ok. */
static void
test_peer_killed_and_restarted (void **state)
{
    s_reset ();
    char err [256] = "";
    test_service_t *env = test_service_new ("sandbox", NULL, "map_size_mb = 64\n", err, sizeof err);
    assert_non_null (env);
    zcert_t *ops = test_service_cert (env, "ops-test", "ops:test");
    assert_non_null (ops);
    s_sandbox = s_spawn_sandbox (test_service_dir (env));
    bus_calls_t *calls = bus_calls_new (s_fx->loop, "sandbox", test_service_rpc (env),
                                        test_service_server_key (env), ops, 400, 60, s_fx->stats);
    assert_non_null (calls);
    int total = 2000;
    for (int i = 0; i < total; i++) {
        json_t *body = json_pack ("{s:{s:i}}", "data", "n", i);
        assert_int_equal (bus_calls_send (calls, "echo", body, NULL, s_on_reply, (void *) (intptr_t) i, NULL), 0);
    }
    s_kill_after = 100;
    int t = zloop_timer (s_fx->loop, 1, 0, s_on_kill_check, NULL);
    int give_up = zloop_timer (s_fx->loop, 20000, 1, s_on_give_up, NULL);
    zloop_start (s_fx->loop);
    zloop_timer_end (s_fx->loop, t);
    zloop_timer_end (s_fx->loop, give_up);
    int before = s_fx->callbacks;
    assert_true (before >= 100);
    kill (s_sandbox, SIGKILL);
    waitpid (s_sandbox, NULL, 0);
    s_run_until (-1, 300);
    s_sandbox = s_spawn_sandbox (test_service_dir (env));
    s_run_until (total, 40000);
    s_run_until (-1, 300);
    fprintf (stderr, "# %d answered before the kill, %d in all; %llu retried, %llu reconnects\n",
             before, s_fx->callbacks, (unsigned long long) bus_stats_get (s_fx->stats, "calls_retried"),
             (unsigned long long) bus_stats_get (s_fx->stats, "calls_reconnects"));
    assert_true (before < total);       /* the kill came mid-burst */
    assert_int_equal (s_fx->callbacks, total);
    for (int i = 0; i < total; i++) {
        assert_int_equal (s_fx->counts [i], 1);
        assert_string_equal (s_fx->codes [i], "ok");
    }
    bus_calls_destroy (&calls);
    kill (s_sandbox, SIGTERM);
    waitpid (s_sandbox, NULL, 0);
    zcert_destroy (&ops);
    test_service_destroy (&env);
}

int
main (void)
{
    bus_log_init ("test_call", "error");
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_many_inflight),
        cmocka_unit_test (test_timeout_and_retries),
        cmocka_unit_test (test_retry_from_dedupe),
        cmocka_unit_test (test_cancel),
        cmocka_unit_test (test_deferred),
        cmocka_unit_test (test_peer_killed_and_restarted),
    };
    int failed = cmocka_run_group_tests (tests, s_setup, s_teardown);
    return test_service_summary ((int) (sizeof tests / sizeof tests [0]), failed);
}
