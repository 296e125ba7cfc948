/*  test_outcome_sealer.c — bus_service_outcome_sealer,
    bus_service_writes_queue and bus_request_write (bus_service.h), on an
    in-process authz-section service whose authz.write handler answers
    {"token": <a canary>} with its effect (an event), committed on the
    reactor (bus_request_commit), on the writer (bus_request_offload_write),
    or where bus_request_write puts it.

    - Sealed: no page of the store holds the canary, though both outcomes
      are recorded; without the sealer (the control) the reactor's outcome
      puts it on disk, so the search can find it.
    - A retry after a restart is answered with the token (open gives it
      back) and does not run again (no new event); when open fails the
      retry is answered `internal`, never with what was stored.
    - bus_service_writes_queue: false when the writer is idle and nothing
      waits; true while the writer holds a request.
    - bus_request_write: with the writer idle the write runs on the
      reactor, its outcome recorded with it (a retry after a restart gets
      it, sealed on disk) and its event published; while
      the writer holds a write, it queues there behind it.
*/
#include <dirent.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "bus_client.h"
#include "bus_error.h"
#include "bus_keys.h"
#include "bus_service.h"
#include "bus_store.h"
#include "proto_msg.h"
#include "../support/test_service.h"

#define S_CANARY "canary-t0ken-4c6f9e"

static test_service_t *s_env;
static bool s_seal = true;              /* install the sealer */
static bool s_open_fails;               /* open answers NULL */
static int s_queue_seen = -1;           /* bus_service_writes_queue in mode 3 */
static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t s_cond = PTHREAD_COND_INITIALIZER;
static bool s_hold;                     /* mode 2 waits while set */
static pthread_t s_reactor;             /* the thread handlers run on */

/*  Seal: the token reversed and marked (enough to show what is stored is
    what seal returned). */
static json_t *
s_seal_fn (bus_request_t *req, json_t *outcome, void *arg)
{
    json_t *body = json_object_get (outcome, "body");
    const char *token = json_string_value (json_object_get (body, "token"));
    if (!token)
        return json_incref (outcome);
    char rev [64];
    size_t n = strlen (token);
    for (size_t i = 0; i < n; i++)
        rev [i] = token [n - 1 - i];
    rev [n] = 0;
    json_t *copy = json_copy (body);
    json_object_del (copy, "token");
    json_object_set_new (copy, "sealed", json_string (rev));
    return json_pack ("{s:o}", "body", copy);
}

static json_t *
s_open_fn (bus_request_t *req, json_t *outcome, void *arg)
{
    json_t *body = json_object_get (outcome, "body");
    const char *rev = json_string_value (json_object_get (body, "sealed"));
    if (!rev)
        return json_incref (outcome);
    if (s_open_fails)
        return NULL;
    char token [64];
    size_t n = strlen (rev);
    for (size_t i = 0; i < n; i++)
        token [i] = rev [n - 1 - i];
    token [n] = 0;
    json_t *copy = json_copy (body);
    json_object_del (copy, "sealed");
    json_object_set_new (copy, "token", json_string (token));
    return json_pack ("{s:o}", "body", copy);
}

/*  On the writer: an event, and the token (mode 2 waits while s_hold). */
static void
s_write_work (void *state, json_t *body, void *job, bus_outcome_t *out)
{
    pthread_mutex_lock (&s_lock);
    while (s_hold)
        pthread_cond_wait (&s_cond, &s_lock);
    pthread_mutex_unlock (&s_lock);
    int rc = bus_service_emit (state, "echo.seen", json_pack ("{s:s}", "request", "writer"), NULL);
    if (rc) {
        out->code = PROTO_ERR_UNAVAILABLE;
        snprintf (out->message, sizeof out->message, "emit failed");
    }
    else
        out->body = json_pack ("{s:s, s:s}", "token", S_CANARY "-w", "where", "writer");
}

/*  bus_request_write's work (mode 4): an event, the token, and the
    thread it ran on. */
static void
s_write_here_work (void *state, json_t *body, void *job, bus_outcome_t *out)
{
    int rc = bus_service_emit (state, "echo.seen", json_pack ("{s:s}", "request", "write"), NULL);
    if (rc) {
        out->code = PROTO_ERR_UNAVAILABLE;
        snprintf (out->message, sizeof out->message, "emit failed");
    }
    else
        out->body = json_pack ("{s:s, s:s}", "token", S_CANARY "-x", "where",
                               pthread_equal (pthread_self (), s_reactor) ? "reactor" : "writer");
}

static void *
s_writer_state (void *arg)
{
    return arg;
}

/*  authz.write {mode}: 1 on the reactor, 2 on the writer, 3 answers
    whether writes queue (after the writer took a mode 2), 4 through
    bus_request_write. */
static void
s_handler (bus_service_t *svc, bus_request_t *req, void *arg)
{
    json_int_t mode = json_integer_value (json_object_get (bus_request_body (req), "mode"));
    s_reactor = pthread_self ();
    if (mode == 4) {
        assert_int_equal (bus_request_write (req, s_write_here_work, svc, NULL, NULL), 0);
        return;
    }
    if (mode == 2) {
        bus_request_offload_write (req, s_write_work, NULL, NULL);
        return;
    }
    if (mode == 3) {
        s_queue_seen = bus_service_writes_queue (svc);
        bus_reply_ok (req, json_pack ("{s:b}", "queue", s_queue_seen));
        return;
    }
    bus_txn_t *txn = bus_txn_begin (bus_service_store (svc), true);
    assert_non_null (txn);
    assert_int_equal (bus_event_append (svc, txn, "echo.seen", json_pack ("{s:s}", "request", "reactor"), NULL), 0);
    bus_outcome_t out = { .body = json_pack ("{s:s, s:s}", "token", S_CANARY "-r", "where", "reactor") };
    bus_request_commit (req, &txn, &out);
}

static int
s_start (bus_service_t *svc, void **state)
{
    int rc = bus_service_writer (svc, s_writer_state, NULL, svc);
    if (rc == 0 && s_seal)
        rc = bus_service_outcome_sealer (svc, s_seal_fn, s_open_fn, NULL);
    if (rc == 0 && s_seal)      /* once only */
        assert_int_equal (bus_service_outcome_sealer (svc, s_seal_fn, s_open_fn, NULL), BUS_EINVAL);
    return rc ? rc : bus_service_handle (svc, "authz.write", s_handler, NULL);
}

static const bus_daemon_t s_daemon = { .section = "authz", .start = s_start };

static void
s_run (void)
{
    char err [256] = "";
    int rc = test_service_start (s_env, &s_daemon, "test-1", 0, err, sizeof err);
    if (rc)
        fprintf (stderr, "test_service_start: %s\n", err);
    assert_int_equal (rc, 0);
}

/*  Does any file under dir hold needle? */
static bool
s_on_disk (const char *dir, const char *needle)
{
    DIR *d = opendir (dir);
    if (!d)
        return false;
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir (d))) {
        if (!strcmp (e->d_name, ".") || !strcmp (e->d_name, ".."))
            continue;
        char path [1024];
        snprintf (path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat (path, &st))
            continue;
        if (S_ISDIR (st.st_mode))
            found = s_on_disk (path, needle);
        else if (S_ISREG (st.st_mode)) {
            FILE *f = fopen (path, "rb");
            char *buf = f ? malloc ((size_t) st.st_size + 1) : NULL;
            size_t n = buf ? fread (buf, 1, (size_t) st.st_size, f) : 0;
            found = buf && memmem (buf, n, needle, strlen (needle));
            free (buf);
            if (f)
                fclose (f);
        }
    }
    closedir (d);
    return found;
}

static uint8_t *
s_frame (json_t *body, size_t *len)
{
    proto_msg_t *req = proto_msg_new (PROTO_KIND_REQ, "authz.write");
    req->body = body;
    uint8_t *data = NULL;
    assert_int_equal (proto_msg_encode (req, &data, len), 0);
    proto_msg_destroy (&req);
    return data;
}

static proto_msg_t *
s_raw (bus_client_t *client, const void *data, size_t len)
{
    assert_int_equal (bus_client_send_raw (client, data, len), 0);
    proto_msg_t *reply = NULL;
    assert_int_equal (bus_client_recv (client, 5000, &reply), 0);
    assert_non_null (reply);
    return reply;
}

/*  Two writes (reactor, writer), a restart, their retries. */
static void
s_round (bool sealed)
{
    char err [256] = "";
    s_seal = sealed;
    s_open_fails = false;
    s_env = test_service_new ("authz", NULL, "map_size_mb = 16\n", err, sizeof err);
    assert_non_null (s_env);
    zcert_t *ops = test_service_cert (s_env, "ops-test", "ops:test");
    s_run ();
    bus_client_t *raw = bus_client_new (test_service_rpc (s_env), test_service_server_key (s_env), ops, 5000, 0);
    size_t rlen, wlen;
    uint8_t *r = s_frame (json_pack ("{s:i}", "mode", 1), &rlen);
    uint8_t *w = s_frame (json_pack ("{s:i}", "mode", 2), &wlen);
    size_t xlen;
    uint8_t *x = s_frame (json_pack ("{s:i}", "mode", 4), &xlen);
    /* the events of the writes */
    zsock_t *sub = zsock_new (ZMQ_SUB);
    assert_non_null (sub);
    bus_keys_apply_client (sub, ops, test_service_server_key (s_env));
    zsock_set_subscribe (sub, "echo.seen");
    zsock_set_rcvtimeo (sub, 5000);
    assert_int_equal (zsock_connect (sub, "%s", test_service_pub (s_env)), 0);
    usleep (300 * 1000);
    proto_msg_t *r1 = s_raw (raw, r, rlen), *w1 = s_raw (raw, w, wlen);
    assert_true (r1->ok && w1->ok);
    for (int i = 0; i < 2; i++) {               /* the events of r and w */
        zmsg_t *ev = zmsg_recv (sub);
        assert_non_null (ev);
        zmsg_destroy (&ev);
    }
    proto_msg_t *x1 = s_raw (raw, x, xlen);
    assert_true (x1->ok);
    assert_string_equal (json_string_value (json_object_get (x1->body, "where")), "reactor");
    zsock_set_rcvtimeo (sub, 1000);             /* its event too (published before the reply, on
                                                   another connection: no order to assert) */
    zmsg_t *ev = zmsg_recv (sub);
    assert_non_null (ev);
    zmsg_destroy (&ev);
    zsock_destroy (&sub);
    assert_string_equal (json_string_value (json_object_get (r1->body, "token")), S_CANARY "-r");
    assert_string_equal (json_string_value (json_object_get (w1->body, "token")), S_CANARY "-w");
    test_service_stop (s_env);
    /* the outcomes are on disk: sealed, not the token */
    bool r_disk = s_on_disk (test_service_dir (s_env), S_CANARY "-r");
    bool w_disk = s_on_disk (test_service_dir (s_env), S_CANARY "-w");
    bool x_disk = s_on_disk (test_service_dir (s_env), S_CANARY "-x");
    if (sealed) {
        assert_false (r_disk);
        assert_false (w_disk);
        assert_false (x_disk);
        assert_true (s_on_disk (test_service_dir (s_env), "x-" "e9f6c4-nek0t-yranac"));
        assert_true (s_on_disk (test_service_dir (s_env), "r-" "e9f6c4-nek0t-yranac"));  /* reversed: recorded */
    }
    else
        assert_true (r_disk);                 /* the control: the search finds a plain token */
    s_run ();
    bus_client_t *client = bus_client_new (test_service_rpc (s_env), test_service_server_key (s_env), ops, 5000, 0);
    int64_t dup = test_service_counter (client, "requests_duplicate_recorded");
    proto_msg_t *r2 = s_raw (raw, r, rlen), *w2 = s_raw (raw, w, wlen), *x2 = s_raw (raw, x, xlen);
    assert_true (json_equal (r1->body, r2->body));
    assert_true (json_equal (w1->body, w2->body));
    assert_true (json_equal (x1->body, x2->body));
    assert_int_equal (test_service_counter (client, "requests_duplicate_recorded"), dup + 3);
    proto_msg_destroy (&r2);
    proto_msg_destroy (&w2);
    proto_msg_destroy (&x2);
    if (sealed) {
        /* open fails: internal, never what was stored */
        test_service_stop (s_env);
        s_run ();
        s_open_fails = true;
        r2 = s_raw (raw, r, rlen);
        assert_false (r2->ok);
        assert_string_equal (json_string_value (json_object_get (r2->error, "code")), PROTO_ERR_INTERNAL);
        proto_msg_destroy (&r2);
        s_open_fails = false;
    }
    proto_msg_destroy (&r1);
    proto_msg_destroy (&w1);
    proto_msg_destroy (&x1);
    free (r);
    free (w);
    free (x);
    bus_client_destroy (&raw);
    bus_client_destroy (&client);
    zcert_destroy (&ops);
    test_service_destroy (&s_env);
}

static void
test_sealed (void **state)
{
    s_round (true);
}

static void
test_unsealed_control (void **state)
{
    s_round (false);
}

/*  writes_queue: false when idle; true while the writer holds a write. */
static void
test_writes_queue (void **state)
{
    char err [256] = "";
    s_seal = true;
    s_env = test_service_new ("authz", NULL, "map_size_mb = 16\n", err, sizeof err);
    assert_non_null (s_env);
    zcert_t *ops = test_service_cert (s_env, "ops-test", "ops:test");
    s_run ();
    bus_client_t *a = bus_client_new (test_service_rpc (s_env), test_service_server_key (s_env), ops, 5000, 0);
    bus_client_t *b = bus_client_new (test_service_rpc (s_env), test_service_server_key (s_env), ops, 5000, 0);
    proto_msg_t *reply = NULL;
    json_t *three = json_pack ("{s:i}", "mode", 3);
    assert_int_equal (bus_client_call (a, "authz.write", three, NULL, &reply), 0);
    assert_false (json_is_true (json_object_get (reply->body, "queue")));
    proto_msg_destroy (&reply);
    pthread_mutex_lock (&s_lock);
    s_hold = true;
    pthread_mutex_unlock (&s_lock);
    json_t *two = json_pack ("{s:i}", "mode", 2);
    assert_int_equal (bus_client_send (b, "authz.write", two, NULL, NULL), 0);
    usleep (100 * 1000);
    assert_int_equal (bus_client_call (a, "authz.write", three, NULL, &reply), 0);
    assert_true (json_is_true (json_object_get (reply->body, "queue")));
    proto_msg_destroy (&reply);
    /* bus_request_write queues behind the held write, on the writer */
    json_t *four = json_pack ("{s:i}", "mode", 4);
    assert_int_equal (bus_client_send (a, "authz.write", four, NULL, NULL), 0);
    json_decref (four);
    pthread_mutex_lock (&s_lock);
    s_hold = false;
    pthread_cond_broadcast (&s_cond);
    pthread_mutex_unlock (&s_lock);
    assert_int_equal (bus_client_recv (b, 5000, &reply), 0);
    assert_true (reply->ok);
    proto_msg_destroy (&reply);
    assert_int_equal (bus_client_recv (a, 5000, &reply), 0);
    assert_true (reply->ok);
    assert_string_equal (json_string_value (json_object_get (reply->body, "where")), "writer");
    proto_msg_destroy (&reply);
    json_decref (two);
    json_decref (three);
    bus_client_destroy (&a);
    bus_client_destroy (&b);
    zcert_destroy (&ops);
    test_service_destroy (&s_env);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_sealed),
        cmocka_unit_test (test_unsealed_control),
        cmocka_unit_test (test_writes_queue),
    };
    return test_service_summary ((int) (sizeof tests / sizeof tests [0]), cmocka_run_group_tests (tests, NULL, NULL));
}
