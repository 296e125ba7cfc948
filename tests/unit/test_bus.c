/*  test_bus.c — unit tests for the bus runtime: an in-process authz
    service on ephemeral loopback ports, in a temporary directory, with
    real CURVE keys and a real allow-list, talked to by bus_client and
    bus_sub.

    Principals: svc:authz (the service), ops:test (an operator client),
    ext:gw (an external client) and a "stranger" whose key is not in the
    allow-list. The service runs its reactor on a thread of its own; a test
    that needs to touch the service's store directly stops that thread and
    drives the service from the test thread instead.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>
#include <cmocka.h>

#include "bus_client.h"
#include "bus_config.h"
#include "bus_error.h"
#include "bus_keys.h"
#include "bus_log.h"
#include "bus_service.h"
#include "bus_store.h"
#include "proto_mpack.h"
#include "proto_msg.h"
#include "../support/test_service.h"

#define S_MAX_FRAME 4096

typedef struct {
    test_service_t *env;          /* temp dir, config, keys, the service thread */
    const char *rpc;
    const char *pub;
    const char *server_key;
    bus_config_t *config;
    zcert_t *ops;                 /* ops:test */
    zcert_t *ext;                 /* ext:gw */
    zcert_t *stranger;            /* not allowed */
    bus_client_t *client;         /* ops:test, from the config */
} fixture_t;

static fixture_t s_fx;

/* --- the service thread ------------------------------------------------------- */

static bus_request_t *s_parked;   /* a deferred request (service thread only) */

static pthread_mutex_t s_work_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t s_work_cond = PTHREAD_COND_INITIALIZER;
static bool s_work_hold;          /* mode 8 work waits while set */
static int s_work_started;        /* mode 8 works begun */
static pthread_t s_service_thread;

static void
s_work_release (void)
{
    pthread_mutex_lock (&s_work_lock);
    s_work_hold = false;
    pthread_cond_broadcast (&s_work_cond);
    pthread_mutex_unlock (&s_work_lock);
}

/*  Hold the work of the next request: send an authz.write of mode on
    client and return once its work has begun (and waits, until
    s_work_release). */
static void
s_send_held (bus_client_t *client, int mode)
{
    pthread_mutex_lock (&s_work_lock);
    s_work_hold = true;
    int started = s_work_started;
    pthread_mutex_unlock (&s_work_lock);
    json_t *body = json_pack ("{s:i}", "mode", mode);
    assert_int_equal (bus_client_send (client, "authz.write", body, NULL, NULL), 0);
    json_decref (body);
    pthread_mutex_lock (&s_work_lock);
    while (s_work_started == started)
        pthread_cond_wait (&s_work_cond, &s_work_lock);
    pthread_mutex_unlock (&s_work_lock);
}

/*  On a worker thread: say it started, and wait while s_work_hold. */
static void
s_work_wait (void)
{
    pthread_mutex_lock (&s_work_lock);
    s_work_started++;
    pthread_cond_broadcast (&s_work_cond);
    while (s_work_hold)
        pthread_cond_wait (&s_work_cond, &s_work_lock);
    pthread_mutex_unlock (&s_work_lock);
}

/*  Work of modes 8 and 9, on a worker thread. */
static void
s_test_work (void *state, json_t *body, void *job, bus_outcome_t *out)
{
    json_int_t mode = json_integer_value (json_object_get (body, "mode"));
    if (mode == 9) {
        out->code = PROTO_ERR_CONFLICT;
        out->extra = json_pack ("{s:s}", "job", (char *) job);
        snprintf (out->message, sizeof out->message, "refused on a worker");
        return;
    }
    s_work_wait ();
    out->body = json_pack ("{s:I, s:b, s:s}", "mode", mode, "on_worker",
                           !pthread_equal (pthread_self (), s_service_thread), "job", (char *) job);
}

/*  Mode 10, on the writer thread (state: the service). */
static void
s_test_write (void *state, json_t *body, void *job, bus_outcome_t *out)
{
    int rc = 0;
    for (int i = 0; rc == 0 && i < 30; i++)
        rc = bus_service_emit (state, "echo.seen", json_pack ("{s:s, s:s, s:i}", "request", "writer",
                               "from", "writer", "i", i), NULL);
    if (rc) {
        out->code = PROTO_ERR_UNAVAILABLE;
        snprintf (out->message, sizeof out->message, "emit failed");
    }
    else
        out->body = json_pack ("{s:i}", "emitted", 30);
}

/*  Modes 11, 12, 13, on the writer thread. */
static void
s_test_write_one (void *state, json_t *body, void *job, bus_outcome_t *out)
{
    json_int_t mode = json_integer_value (json_object_get (body, "mode"));
    if (mode == 11)
        s_work_wait ();
    int rc = bus_service_emit (state, "echo.seen", json_pack ("{s:s, s:I}", "request", "writer", "mode", mode),
                               NULL);
    if (mode == 14)
        s_work_wait ();
    if (mode == 13 && bus_txn_group_current ())
        bus_txn_fail (bus_txn_group_current (), BUS_EIO);
    if (rc) {
        out->code = PROTO_ERR_UNAVAILABLE;
        snprintf (out->message, sizeof out->message, "emit failed");
    }
    else
        out->body = json_pack ("{s:I}", "mode", mode);
}

static void *
s_writer_state (void *arg)
{
    return arg;
}

/*  A test handler on authz.write; body.mode (a member authz.write does not
    declare: ignored by validation, PROTOCOL.md 9) picks what it does:
    1 answer, 2 defer then answer at once, 3 forget to answer, 4 answer
    twice, 5 defer and park, 6 answer the parked request and then this,
    7 publish an echo.seen event padded to 3000 bytes, then answer, 8
    answer from a worker thread once s_work_hold is clear, 9 answer an
    error from a worker thread, 10 on the writer thread publish 30
    echo.seen events (each its own commit), then answer, 11 on the writer
    wait while s_work_hold, then publish one, 12 on the writer publish
    one, 13 on the writer publish one and spoil the group it is in, 14 on
    the writer publish one, then wait while s_work_hold. */
static void
s_test_handler (bus_service_t *svc, bus_request_t *req, void *arg)
{
    json_int_t mode = json_integer_value (json_object_get (bus_request_body (req), "mode"));
    switch (mode) {
        case 2:
            bus_request_defer (req);
            bus_reply_ok (req, json_pack ("{s:I}", "mode", mode));
            break;
        case 3:
            break;
        case 4:
            bus_reply_ok (req, json_pack ("{s:I}", "mode", mode));
            bus_reply_error (req, PROTO_ERR_INTERNAL, "a second answer");
            break;
        case 5:
            bus_request_defer (req);
            s_parked = req;
            break;
        case 7: {
            char pad [3001];
            memset (pad, 'p', 3000);
            pad [3000] = 0;
            int rc = bus_service_emit (svc, "echo.seen", json_pack ("{s:s, s:s, s:s}", "request",
                                       bus_request_msg (req)->id, "from", "big", "pad", pad), NULL);
            bus_reply_ok (req, json_pack ("{s:I, s:i}", "mode", mode, "emitted", rc));
            break;
        }
        case 10:
            bus_request_offload_write (req, s_test_write, NULL, NULL);
            break;
        case 11:
        case 12:
        case 13:
        case 14:
            bus_request_offload_write (req, s_test_write_one, NULL, NULL);
            break;
        case 8:
        case 9:
            s_service_thread = pthread_self ();
            bus_request_offload (req, s_test_work, strdup ("the job"));   /* busy: answered */
            break;
        case 6:
            if (s_parked)
                bus_reply_ok (s_parked, json_pack ("{s:i}", "mode", 5));
            s_parked = NULL;
            /* fall through */
        default:
            bus_reply_ok (req, json_pack ("{s:I, s:s}", "mode", mode, "principal",
                                          bus_request_principal (req)));
    }
}

/*  The test service's start: the test handler on authz.write. */
static int
s_test_start (bus_service_t *svc, void **state)
{
    int rc = bus_service_workers (svc, 1, NULL, NULL, NULL);
    if (rc == 0)
        rc = bus_service_writer (svc, s_writer_state, NULL, svc);
    return rc ? rc : bus_service_handle (svc, "authz.write", s_test_handler, NULL);
}

static const bus_daemon_t s_test_daemon = { .section = "authz", .start = s_test_start };

/*  Start the service thread; with no delay, return once the service exists. */
static void
s_service_start (int delay_ms)
{
    char err [256] = "";
    int rc = test_service_start (s_fx.env, &s_test_daemon, "test-1", delay_ms, err, sizeof err);
    if (rc)
        fprintf (stderr, "test_service_start: %s\n", err);
    assert_int_equal (rc, 0);
}

/*  Stop the service thread (the service is destroyed on it). */
static void
s_service_stop (void)
{
    test_service_stop (s_fx.env);
}

/*  Temp dir, config file, keys, allow-list, a running service, a client. */
static int
s_setup (void **state)
{
    char err [256] = "", lines [128];
    snprintf (lines, sizeof lines, "max_frame = %d\nrpc_timeout_ms = 1000\nrpc_retries = 2\n"
                                   "map_size_mb = 16\nallow_refresh_ms = 200\n", S_MAX_FRAME);
    s_fx.env = test_service_new ("authz", NULL, lines, err, sizeof err);
    if (!s_fx.env)
        fprintf (stderr, "test_service_new: %s\n", err);
    assert_non_null (s_fx.env);
    s_fx.rpc = test_service_rpc (s_fx.env);
    s_fx.pub = test_service_pub (s_fx.env);
    s_fx.server_key = test_service_server_key (s_fx.env);
    s_fx.config = test_service_config (s_fx.env);
    s_fx.ops = test_service_cert (s_fx.env, "ops-test", "ops:test");
    s_fx.ext = test_service_cert (s_fx.env, "ext-gw", "ext:gw");
    s_fx.stranger = test_service_cert (s_fx.env, "stranger", NULL);
    assert_true (s_fx.ops && s_fx.ext && s_fx.stranger);
    s_service_start (0);
    s_fx.client = bus_client_for (s_fx.config, "authz", s_fx.ops);
    assert_non_null (s_fx.client);
    *state = &s_fx;
    return 0;
}

static int
s_teardown (void **state)
{
    bus_client_destroy (&s_fx.client);
    s_service_stop ();
    zcert_destroy (&s_fx.ops);
    zcert_destroy (&s_fx.ext);
    zcert_destroy (&s_fx.stranger);
    test_service_destroy (&s_fx.env);
    return 0;
}

/* --- helpers ------------------------------------------------------------------- */

/*  The error code of a reply, or "ok". */
static const char *
s_code (proto_msg_t *reply)
{
    assert_non_null (reply);
    if (reply->ok)
        return "ok";
    assert_non_null (reply->error);
    return json_string_value (json_object_get (reply->error, "code"));
}

/*  Call type with body (stolen) on client; the reply must come. */
static proto_msg_t *
s_call (bus_client_t *client, const char *type, json_t *body)
{
    proto_msg_t *reply = NULL;
    int rc = bus_client_call (client, type, body, NULL, &reply);
    json_decref (body);
    assert_int_equal (rc, 0);
    assert_non_null (reply);
    assert_int_equal (reply->kind, PROTO_KIND_REPLY);
    return reply;
}

/*  Call and expect the given code ("ok" or an error code). */
static void
s_expect (bus_client_t *client, const char *type, json_t *body, const char *code)
{
    proto_msg_t *reply = s_call (client, type, body);
    assert_string_equal (s_code (reply), code);
    proto_msg_destroy (&reply);
}

/*  last_seq from health. */
static int64_t
s_last_seq (void)
{
    proto_msg_t *reply = s_call (s_fx.client, "health", NULL);
    assert_true (reply->ok);
    int64_t seq = json_integer_value (json_object_get (reply->body, "last_seq"));
    proto_msg_destroy (&reply);
    return seq;
}

/*  events.replay with the given bounds (0 = absent); returns the reply body. */
static json_t *
s_replay (int64_t from, int64_t to, int64_t limit)
{
    json_t *body = json_pack ("{s:I}", "from_seq", (json_int_t) from);
    if (to)
        json_object_set_new (body, "to_seq", json_integer (to));
    if (limit)
        json_object_set_new (body, "limit", json_integer (limit));
    proto_msg_t *reply = s_call (s_fx.client, "events.replay", body);
    assert_string_equal (s_code (reply), "ok");
    json_t *out = json_incref (reply->body);
    proto_msg_destroy (&reply);
    return out;
}

/*  An encoded request frame (malloc'd). */
static uint8_t *
s_frame (const char *type, json_t *body, char id_out [PROTO_ID_LEN + 1], size_t *len)
{
    proto_msg_t *req = proto_msg_new (PROTO_KIND_REQ, type);
    req->body = body ? body : json_object ();
    if (id_out)
        memcpy (id_out, req->id, PROTO_ID_LEN + 1);
    uint8_t *data = NULL;
    assert_int_equal (proto_msg_encode (req, &data, len), 0);
    proto_msg_destroy (&req);
    return data;
}

/*  Send a raw frame and return the reply to it. */
static proto_msg_t *
s_raw (bus_client_t *client, const void *data, size_t len)
{
    assert_int_equal (bus_client_send_raw (client, data, len), 0);
    proto_msg_t *reply = NULL;
    assert_int_equal (bus_client_recv (client, 2000, &reply), 0);
    assert_non_null (reply);
    return reply;
}

/*  Next event on sub whose type is type (others skipped), or NULL. */
static proto_msg_t *
s_next_event (bus_sub_t *sub, const char *type, int timeout_ms)
{
    int64_t until = zclock_mono () + timeout_ms;
    while (zclock_mono () < until) {
        proto_msg_t *evt = NULL;
        int rc = bus_sub_recv (sub, (int) (until - zclock_mono ()), &evt);
        if (rc == BUS_ETIMEOUT)
            break;
        assert_int_equal (rc, 0);
        if (streq (evt->type, type))
            return evt;
        proto_msg_destroy (&evt);
    }
    return NULL;
}

/* --- tests ---------------------------------------------------------------------- */

/*  health names the service, its principal and state. */
static void
test_health (void **state)
{
    proto_msg_t *reply = s_call (s_fx.client, "health", NULL);
    assert_true (reply->ok);
    assert_string_equal (json_string_value (json_object_get (reply->body, "service")), "authz");
    assert_string_equal (json_string_value (json_object_get (reply->body, "principal")), "svc:authz");
    assert_string_equal (json_string_value (json_object_get (reply->body, "state")), "ok");
    assert_string_equal (json_string_value (json_object_get (reply->body, "version")), "test-1");
    assert_true (json_integer_value (json_object_get (reply->body, "last_seq")) >= 1);
    assert_string_equal (reply->type, "health");
    proto_msg_destroy (&reply);
    /* every class may ask */
    bus_client_t *ext = bus_client_new (s_fx.rpc, s_fx.server_key, s_fx.ext, 1000, 1);
    s_expect (ext, "health", NULL, "ok");
    bus_client_destroy (&ext);
    assert_null (ext);
    bus_client_destroy (&ext);
}

/*  A SUB joins late: echo until one echo.seen gets through to sub, then
    drain, so that the next event sub sees is the next one published. */
static void
s_sub_joined (bus_sub_t *sub)
{
    proto_msg_t *evt = NULL;
    for (int i = 0; i < 40 && !evt; i++) {
        proto_msg_t *reply = s_call (s_fx.client, "echo", NULL);
        proto_msg_destroy (&reply);
        evt = s_next_event (sub, "echo.seen", 100);
    }
    assert_non_null (evt);
    proto_msg_destroy (&evt);
    while ((evt = s_next_event (sub, "echo.seen", 100)))
        proto_msg_destroy (&evt);
}

/*  echo answers with data and the caller's principal, and publishes an
    echo.seen event naming the request. */
static void
test_echo_and_event (void **state)
{
    bus_sub_t *sub = bus_sub_new (s_fx.pub, s_fx.server_key, s_fx.ops,
                                  (const char *const []) { "echo.", NULL });
    assert_non_null (sub);
    s_sub_joined (sub);
    char id [PROTO_ID_LEN + 1];
    json_t *body = json_pack ("{s:{s:i}}", "data", "n", 7);
    assert_int_equal (bus_client_send (s_fx.client, "echo", body, NULL, id), 0);
    json_decref (body);
    proto_msg_t *reply = NULL;
    assert_int_equal (bus_client_recv (s_fx.client, 2000, &reply), 0);
    assert_string_equal (reply->corr, id);
    assert_true (reply->ok);
    assert_int_equal (json_integer_value (json_object_get (json_object_get (reply->body, "data"), "n")), 7);
    assert_string_equal (json_string_value (json_object_get (reply->body, "from")), "ops:test");
    proto_msg_destroy (&reply);
    proto_msg_t *evt = s_next_event (sub, "echo.seen", 2000);
    assert_non_null (evt);
    assert_string_equal (json_string_value (json_object_get (evt->body, "request")), id);
    proto_msg_destroy (&evt);
    /* and one more round trip whose event must be the next one */
    assert_int_equal (bus_client_send (s_fx.client, "echo", NULL, NULL, id), 0);
    assert_int_equal (bus_client_recv (s_fx.client, 2000, &reply), 0);
    proto_msg_destroy (&reply);
    evt = s_next_event (sub, "echo.seen", 2000);
    assert_non_null (evt);
    assert_int_equal (evt->kind, PROTO_KIND_EVT);
    assert_string_equal (evt->pub, "svc:authz");
    assert_true (evt->seq >= 2);
    assert_string_equal (json_string_value (json_object_get (evt->body, "request")), id);
    assert_string_equal (json_string_value (json_object_get (evt->body, "from")), "ops:test");
    assert_true (evt->traceparent [0]);
    proto_msg_destroy (&evt);
    bus_sub_destroy (&sub);
    assert_null (sub);
}

/*  The catalogue is enforced: owner, handler, senders, body schema, kind. */
static void
test_catalogue_checks (void **state)
{
    s_expect (s_fx.client, "run.get", json_pack ("{s:s}", "run", "01ARZ3NDEKTSV4RRFFQ69G5FAV"),
              PROTO_ERR_WRONG_SERVICE);
    s_expect (s_fx.client, "vault.revoke", NULL, PROTO_ERR_WRONG_SERVICE);
    s_expect (s_fx.client, "authz.check",
              json_pack ("{s:{s:s, s:s, s:s}}", "tuple_key", "user", "user:anne", "relation", "reader",
                         "object", "doc:1"),
              PROTO_ERR_NOT_IMPLEMENTED);
    s_expect (s_fx.client, "authz.check", json_object (), PROTO_ERR_INVALID);
    s_expect (s_fx.client, "events.replay", json_pack ("{s:i}", "from_seq", 0), PROTO_ERR_INVALID);
    s_expect (s_fx.client, "no.such.type", NULL, PROTO_ERR_UNKNOWN_TYPE);
    s_expect (s_fx.client, "echo.seen", NULL, PROTO_ERR_UNKNOWN_TYPE);     /* an event, not a request */

    bus_client_t *ext = bus_client_new (s_fx.rpc, s_fx.server_key, s_fx.ext, 1000, 1);
    s_expect (ext, "stats", NULL, PROTO_ERR_FORBIDDEN);
    s_expect (ext, "events.replay", json_pack ("{s:i}", "from_seq", 1), "ok");    /* a subscriber's gaps */
    s_expect (ext, "events.replay", json_pack ("{s:i}", "from_seq", 0), PROTO_ERR_INVALID);
    s_expect (ext, "authz.write", json_object (), PROTO_ERR_FORBIDDEN);
    s_expect (ext, "echo", NULL, "ok");
    proto_msg_t *reply = s_call (ext, "echo", NULL);
    assert_string_equal (json_string_value (json_object_get (reply->body, "from")), "ext:gw");
    proto_msg_destroy (&reply);
    bus_client_destroy (&ext);

    reply = s_call (s_fx.client, "stats", NULL);
    assert_true (reply->ok);
    proto_msg_destroy (&reply);
}

/*  A key outside the allow-list gets no connection: the client sees the
    refusal at the handshake and fails at once with BUS_EAUTH (not after
    its deadlines and retries), naming the key; every request in flight
    fails with it, and no send ever blocks on the refused connection. Once
    the key is allowed, the next call connects afresh and works. A wrong
    server key fails fast too, as a mismatch naming that key. */
static void
test_unknown_key (void **state)
{
    bus_client_t *stranger = bus_client_new (s_fx.rpc, s_fx.server_key, s_fx.stranger, 5000, 3);
    assert_non_null (stranger);
    proto_msg_t *reply = NULL;
    int64_t t0 = zclock_mono ();
    assert_int_equal (bus_client_call (stranger, "health", NULL, NULL, &reply), BUS_EAUTH);
    assert_null (reply);
    assert_true (zclock_mono () - t0 < 5000);       /* before the first deadline */
    const char *text = NULL;
    assert_int_equal (bus_client_auth_error (stranger, &text), BUS_CLIENT_REFUSED);
    assert_non_null (strstr (text, zcert_public_txt (s_fx.stranger)));
    assert_non_null (strstr (text, s_fx.rpc));
    assert_int_equal (bus_client_inflight (stranger), 0);
    /* several in flight fail together */
    for (int i = 0; i < 3; i++)
        assert_int_equal (bus_client_send (stranger, "health", NULL, NULL, NULL), 0);
    assert_int_equal (bus_client_recv (stranger, 4000, &reply), BUS_EAUTH);
    assert_int_equal (bus_client_inflight (stranger), 0);
    bus_client_destroy (&stranger);

    /* allowed later: the next call tries afresh */
    zcert_t *late = test_service_cert (s_fx.env, "late", NULL);
    assert_non_null (late);
    bus_client_t *client = bus_client_new (s_fx.rpc, s_fx.server_key, late, 1000, 0);
    assert_int_equal (bus_client_call (client, "health", NULL, NULL, &reply), BUS_EAUTH);
    assert_int_equal (bus_allow_add (bus_config_str (s_fx.config, "sanctum", "allow_dir"), "late",
                                     zcert_public_txt (late), "ops:late"), 0);
    int rc = BUS_EAUTH;
    for (int i = 0; i < 30 && rc == BUS_EAUTH; i++) {
        zclock_sleep (100);
        rc = bus_client_call (client, "health", NULL, NULL, &reply);
    }
    assert_int_equal (rc, 0);
    assert_true (reply->ok);
    assert_int_equal (bus_client_auth_error (client, NULL), 0);
    proto_msg_destroy (&reply);
    bus_client_destroy (&client);
    zcert_destroy (&late);

    /* a server key that is not the server's */
    client = bus_client_new (s_fx.rpc, zcert_public_txt (s_fx.ext), s_fx.ops, 5000, 3);
    t0 = zclock_mono ();
    assert_int_equal (bus_client_call (client, "health", NULL, NULL, &reply), BUS_EAUTH);
    assert_true (zclock_mono () - t0 < 5000);
    assert_int_equal (bus_client_auth_error (client, &text), BUS_CLIENT_MISMATCH);
    assert_non_null (strstr (text, zcert_public_txt (s_fx.ext)));
    bus_client_destroy (&client);
    /* the service is unharmed */
    s_expect (s_fx.client, "health", NULL, "ok");
}

/*  Raw frames that are not requests each get an error reply, and the
    service goes on answering. */
static void
test_malformed_frames (void **state)
{
    bus_client_t *raw = bus_client_new (s_fx.rpc, s_fx.server_key, s_fx.ops, 1000, 0);
    proto_msg_t *reply = s_raw (raw, "\xc1garbage", 8);
    assert_string_equal (s_code (reply), PROTO_ERR_MALFORMED);
    assert_string_equal (reply->corr, "");
    proto_msg_destroy (&reply);

    reply = s_raw (raw, "", 0);
    assert_string_equal (s_code (reply), PROTO_ERR_MALFORMED);
    proto_msg_destroy (&reply);

    reply = s_raw (raw, "\xdd\xff\xff\xff\xff", 5);
    assert_string_equal (s_code (reply), PROTO_ERR_MALFORMED);
    proto_msg_destroy (&reply);

    /* truncated: the id may be lost with the rest */
    char id [PROTO_ID_LEN + 1];
    size_t len;
    uint8_t *data = s_frame ("health", NULL, id, &len);
    for (size_t cut = 1; cut < len; cut += 7) {
        reply = s_raw (raw, data, cut);
        assert_string_equal (s_code (reply), PROTO_ERR_MALFORMED);
        proto_msg_destroy (&reply);
    }
    free (data);

    /* another version: the reply still answers the id */
    proto_msg_t *req = proto_msg_new (PROTO_KIND_REQ, "health");
    json_t *env = proto_msg_to_json (req);
    json_object_set_new (env, "v", json_integer (PROTO_VERSION + 1));
    assert_int_equal (proto_mpack_encode (&data, &len, env), 0);
    json_decref (env);
    reply = s_raw (raw, data, len);
    assert_string_equal (s_code (reply), PROTO_ERR_VERSION);
    assert_string_equal (reply->corr, req->id);
    proto_msg_destroy (&reply);
    proto_msg_destroy (&req);
    free (data);

    /* over max_frame (but under libzmq's hard cap) */
    char big [5000];
    memset (big, 'x', sizeof big);
    data = s_frame ("echo", json_pack ("{s:s#}", "data", big, sizeof big), NULL, &len);
    assert_true (len > S_MAX_FRAME);
    reply = s_raw (raw, data, len);
    assert_string_equal (s_code (reply), PROTO_ERR_TOO_LARGE);
    proto_msg_destroy (&reply);
    free (data);

    /* a reply sent as a request */
    req = proto_msg_new (PROTO_KIND_REQ, "health");
    proto_msg_t *fake = proto_reply_ok (req, NULL);
    assert_int_equal (proto_msg_encode (fake, &data, &len), 0);
    reply = s_raw (raw, data, len);
    assert_string_equal (s_code (reply), PROTO_ERR_MALFORMED);
    assert_string_equal (reply->corr, fake->id);
    proto_msg_destroy (&reply);
    proto_msg_destroy (&fake);
    proto_msg_destroy (&req);
    free (data);

    /* still serving, on this socket and on others */
    s_expect (raw, "health", NULL, "ok");
    s_expect (s_fx.client, "health", NULL, "ok");
    bus_client_destroy (&raw);
}

/*  The same request frame twice: the handler runs once and both get the
    same reply; the same id from another principal is another request. */
static void
test_dedupe (void **state)
{
    int64_t last = s_last_seq ();
    char id [PROTO_ID_LEN + 1];
    size_t len;
    uint8_t *data = s_frame ("echo", json_pack ("{s:s}", "data", "twice"), id, &len);
    bus_client_t *raw = bus_client_new (s_fx.rpc, s_fx.server_key, s_fx.ops, 1000, 0);
    proto_msg_t *first = s_raw (raw, data, len);
    proto_msg_t *second = s_raw (raw, data, len);
    assert_true (first->ok && second->ok);
    assert_string_equal (first->corr, id);
    assert_string_equal (second->corr, id);
    assert_string_equal (first->id, second->id);         /* the very same reply frame */
    assert_true (json_equal (first->body, second->body));
    proto_msg_destroy (&first);
    proto_msg_destroy (&second);
    /* from another connection of the same principal: still a duplicate */
    bus_client_t *again = bus_client_new (s_fx.rpc, s_fx.server_key, s_fx.ops, 1000, 0);
    second = s_raw (again, data, len);
    assert_string_equal (second->corr, id);
    proto_msg_destroy (&second);
    bus_client_destroy (&again);
    /* from ext:gw: a different principal, so its own request */
    bus_client_t *ext = bus_client_new (s_fx.rpc, s_fx.server_key, s_fx.ext, 1000, 0);
    second = s_raw (ext, data, len);
    assert_true (second->ok);
    assert_string_equal (json_string_value (json_object_get (second->body, "from")), "ext:gw");
    proto_msg_destroy (&second);
    bus_client_destroy (&ext);
    bus_client_destroy (&raw);
    free (data);

    json_t *r = s_replay (last + 1, 0, 0);
    size_t i, ops_runs = 0, ext_runs = 0;
    json_t *evt;
    json_array_foreach (json_object_get (r, "events"), i, evt) {
        json_t *body = json_object_get (evt, "body");
        if (!streq (json_string_value (json_object_get (evt, "type")), "echo.seen")
            || !streq (json_string_value (json_object_get (body, "request")), id))
            continue;
        const char *from = json_string_value (json_object_get (body, "from"));
        ops_runs += streq (from, "ops:test");
        ext_runs += streq (from, "ext:gw");
    }
    assert_int_equal (ops_runs, 1);
    assert_int_equal (ext_runs, 1);
    json_decref (r);
}

/*  A subscriber skips an event over its size cap without decoding it, and
    receives the next one. */
static void
test_sub_cap (void **state)
{
    bus_sub_t *sub = bus_sub_new (s_fx.pub, s_fx.server_key, s_fx.ops,
                                  (const char *const []) { "echo.", NULL });
    assert_non_null (sub);
    bus_sub_set_max_frame (sub, 1024);
    s_sub_joined (sub);
    proto_msg_t *evt = NULL;
    proto_msg_t *reply = s_call (s_fx.client, "authz.write", json_pack ("{s:i}", "mode", 7));
    assert_int_equal (json_integer_value (json_object_get (reply->body, "emitted")), 0);
    proto_msg_destroy (&reply);
    assert_int_equal (bus_sub_recv (sub, 2000, &evt), BUS_EINVAL);      /* the big one, skipped */
    assert_null (evt);
    char id [PROTO_ID_LEN + 1];
    assert_int_equal (bus_client_send (s_fx.client, "echo", NULL, NULL, id), 0);
    assert_int_equal (bus_client_recv (s_fx.client, 2000, &reply), 0);
    proto_msg_destroy (&reply);
    evt = s_next_event (sub, "echo.seen", 2000);
    assert_non_null (evt);
    assert_string_equal (json_string_value (json_object_get (evt->body, "request")), id);
    proto_msg_destroy (&evt);
    bus_sub_destroy (&sub);
}

/*  A key removed from the allow-list loses its subscription at the next
    rescan (the PUB is bound afresh and zauth refuses the key when it
    reconnects), while a subscriber still allowed resumes. */
static void
test_revoked_subscriber (void **state)
{
    const char *const topics [] = { "echo.", NULL };
    zcert_t *cert = test_service_cert (s_fx.env, "leaving", "svc:leaving");
    assert_non_null (cert);
    bus_sub_t *kept = bus_sub_new (s_fx.pub, s_fx.server_key, s_fx.ops, topics);
    bus_sub_t *leaving = bus_sub_new (s_fx.pub, s_fx.server_key, cert, topics);
    assert_true (kept && leaving);
    s_sub_joined (leaving);
    s_sub_joined (kept);

    char path [512];
    snprintf (path, sizeof path, "%s/keys/allow/leaving.key", test_service_dir (s_fx.env));
    assert_int_equal (unlink (path), 0);
    zclock_sleep (400);                                 /* two rescans */
    s_sub_joined (kept);                                /* reconnected */
    proto_msg_t *evt;
    while ((evt = s_next_event (leaving, "echo.seen", 100)))
        proto_msg_destroy (&evt);                      /* from before the revocation */
    for (int i = 0; i < 3; i++) {
        proto_msg_t *reply = s_call (s_fx.client, "echo", NULL);
        proto_msg_destroy (&reply);
        evt = s_next_event (kept, "echo.seen", 2000);
        assert_non_null (evt);
        proto_msg_destroy (&evt);
    }
    evt = s_next_event (leaving, "echo.seen", 500);
    assert_null (evt);
    proto_msg_t *stats = s_call (s_fx.client, "stats", NULL);
    assert_true (json_integer_value (json_object_get (json_object_get (stats->body, "counters"),
                                                      "subscriptions_closed")) >= 1);
    proto_msg_destroy (&stats);
    bus_sub_destroy (&kept);
    bus_sub_destroy (&leaving);
    zcert_destroy (&cert);
}

/*  A deferred request retried while parked runs once and gets no second
    reply; once it is answered, a retry gets the remembered reply. The
    same for a request deferred and answered inside its handler. */
static void
test_dedupe_deferred (void **state)
{
    char parked [PROTO_ID_LEN + 1], at_once [PROTO_ID_LEN + 1];
    size_t len, len2;
    uint8_t *data = s_frame ("authz.write", json_pack ("{s:i}", "mode", 5), parked, &len);
    bus_client_t *raw = bus_client_new (s_fx.rpc, s_fx.server_key, s_fx.ops, 1000, 0);
    assert_int_equal (bus_client_send_raw (raw, data, len), 0);
    assert_int_equal (bus_client_send_raw (raw, data, len), 0);
    proto_msg_t *reply = NULL;
    assert_int_equal (bus_client_recv (raw, 300, &reply), BUS_ETIMEOUT);
    proto_msg_t *other = s_call (s_fx.client, "authz.write", json_pack ("{s:i}", "mode", 6));
    assert_true (other->ok);
    proto_msg_destroy (&other);
    reply = NULL;
    assert_int_equal (bus_client_recv (raw, 2000, &reply), 0);
    assert_string_equal (reply->corr, parked);
    assert_int_equal (json_integer_value (json_object_get (reply->body, "mode")), 5);
    proto_msg_t *again = NULL;
    assert_int_equal (bus_client_recv (raw, 200, &again), BUS_ETIMEOUT);   /* one reply, not two */
    again = s_raw (raw, data, len);
    assert_string_equal (again->id, reply->id);                          /* the remembered frame */
    proto_msg_destroy (&again);
    proto_msg_destroy (&reply);

    uint8_t *data2 = s_frame ("authz.write", json_pack ("{s:i}", "mode", 2), at_once, &len2);
    reply = s_raw (raw, data2, len2);
    again = s_raw (raw, data2, len2);
    assert_string_equal (reply->corr, at_once);
    assert_string_equal (again->id, reply->id);
    proto_msg_destroy (&again);
    proto_msg_destroy (&reply);
    bus_client_destroy (&raw);
    free (data);
    free (data2);
}

/*  Commits on the writer thread and on the reactor interleave; every
    event is published once, in sequence order, without a gap, and a
    replay agrees. */
static void
test_writer_events_in_order (void **state)
{
    bus_sub_t *sub = bus_sub_new (s_fx.pub, s_fx.server_key, s_fx.ops,
                                  (const char *const []) { "echo.", NULL });
    assert_non_null (sub);
    s_sub_joined (sub);
    int64_t last = s_last_seq ();
    char id [PROTO_ID_LEN + 1];
    bus_client_t *writer = bus_client_new (s_fx.rpc, s_fx.server_key, s_fx.ops, 10000, 0);
    json_t *body = json_pack ("{s:i}", "mode", 10);
    assert_int_equal (bus_client_send (writer, "authz.write", body, NULL, id), 0);
    json_decref (body);
    for (int i = 0; i < 30; i++)        /* the reactor's own commits, meanwhile */
        s_expect (s_fx.client, "echo", json_pack ("{s:i}", "data", i), "ok");
    proto_msg_t *reply = NULL;
    assert_int_equal (bus_client_recv (writer, 5000, &reply), 0);
    assert_string_equal (reply->corr, id);
    assert_true (reply->ok);
    proto_msg_destroy (&reply);
    bus_client_destroy (&writer);
    int64_t expect = last + 1;
    int from_writer = 0;
    while (expect <= last + 60) {
        proto_msg_t *evt = NULL;
        assert_int_equal (bus_sub_recv (sub, 5000, &evt), 0);
        if (streq (evt->type, "service.started") || !streq (evt->type, "echo.seen")) {
            proto_msg_destroy (&evt);
            continue;
        }
        assert_int_equal ((int64_t) evt->seq, expect);
        from_writer += streq (json_string_value (json_object_get (evt->body, "from")), "writer");
        expect++;
        proto_msg_destroy (&evt);
    }
    assert_int_equal (from_writer, 30);
    assert_int_equal (s_last_seq (), last + 60);
    int64_t from = last + 1;             /* replayed in pages (max_frame is small here) */
    while (from) {
        json_t *r = s_replay (from, 0, 0), *evt;
        size_t i;
        json_array_foreach (json_object_get (r, "events"), i, evt)
            assert_int_equal (json_integer_value (json_object_get (evt, "seq")), from + (int64_t) i);
        from = json_integer_value (json_object_get (r, "next_seq"));
        if (!from)
            assert_int_equal (json_integer_value (json_object_get (r, "last_seq")), last + 60);
        json_decref (r);
    }
    bus_sub_destroy (&sub);
}

/*  An event the writer has committed but the reactor not yet published
    is not replayed (a subscriber would get it twice, or before its live
    copy); once published, it is. */
static void
test_replay_published_only (void **state)
{
    int64_t last = s_last_seq ();
    bus_client_t *writer = bus_client_new (s_fx.rpc, s_fx.server_key, s_fx.ops, 10000, 0);
    s_send_held (writer, 14);           /* committed, and held before reporting */
    json_t *r = s_replay (last + 1, 0, 0);
    size_t held_events = json_array_size (json_object_get (r, "events"));
    json_int_t held_last = json_integer_value (json_object_get (r, "last_seq"));
    json_decref (r);
    s_work_release ();                  /* before asserting: a failure must not leave it held */
    assert_int_equal (held_events, 0);
    assert_int_equal (held_last, last);
    proto_msg_t *reply = NULL;
    assert_int_equal (bus_client_recv (writer, 5000, &reply), 0);
    assert_true (reply->ok);
    proto_msg_destroy (&reply);
    bus_client_destroy (&writer);
    r = s_replay (last + 1, 0, 0);
    assert_int_equal (json_array_size (json_object_get (r, "events")), 1);
    assert_int_equal (json_integer_value (json_object_get (r, "last_seq")), last + 1);
    json_decref (r);
}

/*  A call on a client with another request in flight keeps that
    request's reply (which comes first) for bus_client_recv. */
static void
test_call_keeps_other_replies (void **state)
{
    char first [PROTO_ID_LEN + 1];
    json_t *body = json_pack ("{s:s}", "data", "first");
    assert_int_equal (bus_client_send (s_fx.client, "echo", body, NULL, first), 0);
    json_decref (body);
    proto_msg_t *reply = s_call (s_fx.client, "echo", json_pack ("{s:s}", "data", "second"));
    assert_string_equal (json_string_value (json_object_get (reply->body, "data")), "second");
    proto_msg_destroy (&reply);
    assert_int_equal (bus_client_recv (s_fx.client, 2000, &reply), 0);
    assert_string_equal (reply->corr, first);
    assert_string_equal (json_string_value (json_object_get (reply->body, "data")), "first");
    proto_msg_destroy (&reply);
    assert_int_equal (bus_client_inflight (s_fx.client), 0);
}

/*  A counter of stats. */
static int64_t
s_counter (const char *name)
{
    int64_t n = test_service_counter (s_fx.client, name);
    assert_true (n >= 0);
    return n;
}

/*  Hold the writer with a mode 11 request on client held, send the
    modes (a 0-terminated list) on client many, release the writer;
    returns the replies' codes in send order ("ok" or the error code)
    in codes, the held request's last. */
static void
s_writer_batch (const int *modes, const char **codes)
{
    bus_client_t *held = bus_client_new (s_fx.rpc, s_fx.server_key, s_fx.ops, 10000, 0);
    bus_client_t *many = bus_client_new (s_fx.rpc, s_fx.server_key, s_fx.ops, 10000, 0);
    s_send_held (held, 11);
    char ids [16][PROTO_ID_LEN + 1];
    int n = 0;
    for (; modes [n]; n++) {
        json_t *body = json_pack ("{s:i}", "mode", modes [n]);
        assert_int_equal (bus_client_send (many, "authz.write", body, NULL, ids [n]), 0);
        json_decref (body);
    }
    usleep (200 * 1000);                /* all queued behind the held one */
    s_work_release ();
    for (int got = 0; got < n; got++) {
        proto_msg_t *reply = NULL;
        assert_int_equal (bus_client_recv (many, 5000, &reply), 0);
        for (int i = 0; i < n; i++)
            if (streq (reply->corr, ids [i]))
                codes [i] = reply->ok ? "ok"
                          : streq (s_code (reply), PROTO_ERR_UNAVAILABLE) ? PROTO_ERR_UNAVAILABLE : "other";
        proto_msg_destroy (&reply);
    }
    proto_msg_t *reply = NULL;
    assert_int_equal (bus_client_recv (held, 5000, &reply), 0);
    codes [n] = reply->ok ? "ok" : "not ok";
    proto_msg_destroy (&reply);
    bus_client_destroy (&held);
    bus_client_destroy (&many);
}

/*  Group commit: writes queued behind a running one are committed
    together (one group), their events in sequence; a group that cannot
    be stored turns every answer in it into unavailable, publishes none
    of its events, and the sequence goes on without a gap. */
static void
test_group_commit (void **state)
{
    json_int_t groups = s_counter ("write_groups"), grouped = s_counter ("writes_grouped");
    int64_t last = s_last_seq ();
    const char *codes [16];
    s_writer_batch ((const int []) { 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 0 }, codes);
    for (int i = 0; i < 11; i++)
        assert_string_equal (codes [i], "ok");
    assert_int_equal (s_counter ("write_groups"), groups + 1);
    assert_int_equal (s_counter ("writes_grouped"), grouped + 10);
    assert_int_equal (s_last_seq (), last + 11);

    last = s_last_seq ();
    s_writer_batch ((const int []) { 12, 12, 13, 12, 0 }, codes);
    for (int i = 0; i < 4; i++)
        assert_string_equal (codes [i], PROTO_ERR_UNAVAILABLE);
    assert_string_equal (codes [4], "ok");                      /* the held one, alone */
    assert_int_equal (s_last_seq (), last + 1);
    s_expect (s_fx.client, "authz.write", json_pack ("{s:i}", "mode", 12), "ok");
    assert_int_equal (s_last_seq (), last + 2);
    json_t *r = s_replay (last + 1, 0, 0), *evt;
    size_t i;
    json_array_foreach (json_object_get (r, "events"), i, evt)
        assert_int_equal (json_integer_value (json_object_get (evt, "seq")), last + 1 + (int64_t) i);
    assert_int_equal (json_array_size (json_object_get (r, "events")), 2);
    json_decref (r);
}

/*  A request with effects is remembered: its retry gets the very reply
    frame again; a safe one (a read) is answered afresh each time, and
    never counted as a duplicate. */
static void
test_safe_not_remembered (void **state)
{
    bus_client_t *raw = bus_client_new (s_fx.rpc, s_fx.server_key, s_fx.ops, 1000, 0);
    size_t len;
    int64_t dups = s_counter ("requests_duplicate");

    uint8_t *health = s_frame ("health", NULL, NULL, &len);
    proto_msg_t *first = s_raw (raw, health, len), *again = s_raw (raw, health, len);
    assert_true (first->ok && again->ok);
    assert_string_equal (first->corr, again->corr);
    assert_string_not_equal (first->id, again->id);            /* a new reply */
    proto_msg_destroy (&first);
    proto_msg_destroy (&again);
    free (health);

    uint8_t *write = s_frame ("authz.write", json_pack ("{s:i}", "mode", 1), NULL, &len);
    first = s_raw (raw, write, len);
    again = s_raw (raw, write, len);
    assert_true (first->ok);
    assert_string_equal (first->id, again->id);                /* the remembered frame */
    proto_msg_destroy (&first);
    proto_msg_destroy (&again);
    free (write);

    assert_int_equal (s_counter ("requests_duplicate"), dups + 1);
    bus_client_destroy (&raw);
}

/*  Work handed to a worker thread is answered from there, ok or error;
    past S_WORK_QUEUE_MAX (256) requests waiting, a request is refused
    `unavailable` at once, and the others are all answered later. */
static void
test_offload (void **state)
{
    proto_msg_t *reply = s_call (s_fx.client, "authz.write", json_pack ("{s:i}", "mode", 8));
    assert_true (reply->ok);
    assert_int_equal (json_integer_value (json_object_get (reply->body, "mode")), 8);
    assert_true (json_is_true (json_object_get (reply->body, "on_worker")));
    assert_string_equal (json_string_value (json_object_get (reply->body, "job")), "the job");
    proto_msg_destroy (&reply);
    reply = s_call (s_fx.client, "authz.write", json_pack ("{s:i}", "mode", 9));
    assert_string_equal (s_code (reply), PROTO_ERR_CONFLICT);
    assert_string_equal (json_string_value (json_object_get (reply->error, "message")), "refused on a worker");
    assert_string_equal (json_string_value (json_object_get (reply->error, "job")), "the job");
    proto_msg_destroy (&reply);

    bus_client_t *many = bus_client_new (s_fx.rpc, s_fx.server_key, s_fx.ops, 30000, 0);
    enum { N = 1 + 256 + 1 };           /* one running, 256 waiting, one too many */
    s_send_held (many, 8);              /* the worker holds the first */
    json_t *body = json_pack ("{s:i}", "mode", 8);
    for (int i = 1; i < N; i++)
        assert_int_equal (bus_client_send (many, "authz.write", body, NULL, NULL), 0);
    json_decref (body);
    reply = NULL;
    proto_msg_t *busy = NULL, *early = NULL;
    int busy_rc = bus_client_recv (many, 3000, &busy);
    int early_rc = bus_client_recv (many, 200, &early);                  /* the rest wait */
    s_work_release ();                  /* before asserting: a failure must not leave it held */
    assert_int_equal (busy_rc, 0);
    assert_string_equal (s_code (busy), PROTO_ERR_UNAVAILABLE);
    assert_non_null (strstr (json_string_value (json_object_get (busy->error, "message")), "busy"));
    proto_msg_destroy (&busy);
    assert_int_equal (early_rc, BUS_ETIMEOUT);
    proto_msg_destroy (&early);
    for (int i = 0; i < N - 1; i++) {
        reply = NULL;
        assert_int_equal (bus_client_recv (many, 5000, &reply), 0);
        assert_string_equal (s_code (reply), "ok");
        proto_msg_destroy (&reply);
    }
    bus_client_destroy (&many);
}

/*  Handlers: answered at once, deferred and answered at once or later,
    forgotten (an internal error reply), answered twice (the second is
    dropped). Each answer reaches its own request. */
static void
test_handlers (void **state)
{
    proto_msg_t *reply = s_call (s_fx.client, "authz.write", json_pack ("{s:i}", "mode", 1));
    assert_true (reply->ok);
    assert_int_equal (json_integer_value (json_object_get (reply->body, "mode")), 1);
    assert_string_equal (json_string_value (json_object_get (reply->body, "principal")), "ops:test");
    proto_msg_destroy (&reply);
    reply = s_call (s_fx.client, "authz.write", json_pack ("{s:i}", "mode", 2));
    assert_int_equal (json_integer_value (json_object_get (reply->body, "mode")), 2);
    proto_msg_destroy (&reply);
    s_expect (s_fx.client, "authz.write", json_pack ("{s:i}", "mode", 3), PROTO_ERR_INTERNAL);
    reply = s_call (s_fx.client, "authz.write", json_pack ("{s:i}", "mode", 4));
    assert_true (reply->ok);
    proto_msg_destroy (&reply);
    assert_int_equal (bus_client_recv (s_fx.client, 200, &reply), BUS_ETIMEOUT);

    char parked [PROTO_ID_LEN + 1], later [PROTO_ID_LEN + 1];
    json_t *body = json_pack ("{s:i}", "mode", 5);
    assert_int_equal (bus_client_send (s_fx.client, "authz.write", body, NULL, parked), 0);
    json_decref (body);
    assert_int_equal (bus_client_recv (s_fx.client, 200, &reply), BUS_ETIMEOUT);
    body = json_pack ("{s:i}", "mode", 6);
    assert_int_equal (bus_client_send (s_fx.client, "authz.write", body, NULL, later), 0);
    json_decref (body);
    for (int i = 0; i < 2; i++) {
        assert_int_equal (bus_client_recv (s_fx.client, 2000, &reply), 0);
        json_int_t mode = json_integer_value (json_object_get (reply->body, "mode"));
        assert_string_equal (reply->corr, mode == 5 ? parked : later);
        assert_int_equal (mode, i == 0 ? 5 : 6);
        proto_msg_destroy (&reply);
    }
}

/*  A client whose first attempts go nowhere (the service starts 500 ms
    after the request) gets its reply through Lazy Pirate retries. */
static void
test_client_retries (void **state)
{
    s_service_stop ();
    bus_client_t *client = bus_client_new (s_fx.rpc, s_fx.server_key, s_fx.ops, 200, 6);
    int64_t t0 = zclock_mono ();
    s_service_start (500);
    proto_msg_t *reply = NULL;
    assert_int_equal (bus_client_call (client, "health", NULL, NULL, &reply), 0);
    assert_true (reply->ok);
    assert_true (zclock_mono () - t0 >= 450);
    proto_msg_destroy (&reply);
    assert_int_equal (bus_client_inflight (client), 0);
    /* and several in flight at once come back, each to its id */
    char ids [5][PROTO_ID_LEN + 1];
    for (int i = 0; i < 5; i++)
        assert_int_equal (bus_client_send (client, "echo", NULL, NULL, ids [i]), 0);
    assert_int_equal (bus_client_inflight (client), 5);
    int seen = 0;
    for (int i = 0; i < 5; i++) {
        assert_int_equal (bus_client_recv (client, 2000, &reply), 0);
        for (int k = 0; k < 5; k++)
            if (streq (reply->corr, ids [k]))
                seen |= 1 << k;
        proto_msg_destroy (&reply);
    }
    assert_int_equal (seen, 0x1f);
    assert_int_equal (bus_client_inflight (client), 0);
    bus_client_destroy (&client);
    /* out of retries: an unanswered request times out */
    client = bus_client_new ("tcp://127.0.0.1:1", s_fx.server_key, s_fx.ops, 100, 1);
    t0 = zclock_mono ();
    assert_int_equal (bus_client_call (client, "health", NULL, NULL, &reply), BUS_ETIMEOUT);
    assert_true (zclock_mono () - t0 >= 190);
    bus_client_destroy (&client);
}

/*  events.replay: in order, bounded by from/to/limit, with next_seq when
    cut short. */
static void
test_replay (void **state)
{
    int64_t last = s_last_seq ();
    for (int i = 0; i < 5; i++)
        s_expect (s_fx.client, "echo", json_pack ("{s:i}", "data", i), "ok");
    json_t *r = s_replay (last + 1, 0, 0);
    json_t *events = json_object_get (r, "events");
    assert_int_equal (json_array_size (events), 5);
    assert_int_equal (json_integer_value (json_object_get (r, "last_seq")), last + 5);
    assert_string_equal (json_string_value (json_object_get (r, "pub")), "svc:authz");
    assert_null (json_object_get (r, "next_seq"));
    for (size_t i = 0; i < 5; i++) {
        json_t *evt = json_array_get (events, i);
        assert_int_equal (json_integer_value (json_object_get (evt, "seq")), last + 1 + (int64_t) i);
        assert_string_equal (json_string_value (json_object_get (evt, "type")), "echo.seen");
        assert_string_equal (json_string_value (json_object_get (evt, "pub")), "svc:authz");
    }
    json_decref (r);

    r = s_replay (last + 1, 0, 2);
    assert_int_equal (json_array_size (json_object_get (r, "events")), 2);
    assert_int_equal (json_integer_value (json_object_get (r, "next_seq")), last + 3);
    json_decref (r);

    r = s_replay (last + 2, last + 4, 0);
    events = json_object_get (r, "events");
    assert_int_equal (json_array_size (events), 3);
    assert_int_equal (json_integer_value (json_object_get (json_array_get (events, 0), "seq")), last + 2);
    assert_int_equal (json_integer_value (json_object_get (json_array_get (events, 2), "seq")), last + 4);
    assert_null (json_object_get (r, "next_seq"));
    json_decref (r);

    r = s_replay (last + 4, last + 4, 1);
    assert_int_equal (json_array_size (json_object_get (r, "events")), 1);
    json_decref (r);

    r = s_replay (last + 100, 0, 0);
    assert_int_equal (json_array_size (json_object_get (r, "events")), 0);
    json_decref (r);

    /* everything from the start: replies stay under half the frame cap,
       so follow next_seq */
    json_t *all = json_array ();
    int64_t from = 1;
    while (from) {
        r = s_replay (from, 0, 0);
        events = json_object_get (r, "events");
        assert_true (json_array_size (events) > 0);
        json_array_extend (all, events);
        json_t *next = json_object_get (r, "next_seq");
        from = next ? json_integer_value (next) : 0;
        json_decref (r);
    }
    assert_int_equal (json_array_size (all), last + 5);
    assert_string_equal (json_string_value (json_object_get (json_array_get (all, 0), "type")),
                         "service.started");
    for (size_t i = 0; i < json_array_size (all); i++)
        assert_int_equal (json_integer_value (json_object_get (json_array_get (all, i), "seq")), (int64_t) i + 1);
    json_decref (all);
}

/*  The outbox survives a restart: seq continues from the last stored. */
static void
test_outbox_restart (void **state)
{
    int64_t last = s_last_seq ();
    assert_true (last >= 1);
    s_service_stop ();
    s_service_start (0);
    s_expect (s_fx.client, "echo", NULL, "ok");
    json_t *r = s_replay (last + 1, 0, 0);
    json_t *events = json_object_get (r, "events");
    static const char *want [] = { "service.stopping", "service.started", "echo.seen" };
    assert_int_equal (json_array_size (events), 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *evt = json_array_get (events, i);
        assert_string_equal (json_string_value (json_object_get (evt, "type")), want [i]);
        assert_int_equal (json_integer_value (json_object_get (evt, "seq")), last + 1 + (int64_t) i);
    }
    json_decref (r);
    assert_int_equal (s_last_seq (), last + 3);
}

/*  The outcome of a request with effects is recorded with its effect: a
    retry after a restart gets the first answer and does not do the work
    again (no new event); a reused id with another body is refused
    conflict; the writes of a group that could not be stored record
    nothing (their retry after the restart runs them); so does an outcome
    "unavailable" from the reactor. */
static void
test_outcome_survives_restart (void **state)
{
    bus_client_t *raw = bus_client_new (s_fx.rpc, s_fx.server_key, s_fx.ops, 2000, 0);
    size_t wlen, elen, olen, alen, blen;
    char wid [PROTO_ID_LEN + 1];
    uint8_t *write = s_frame ("authz.write", json_pack ("{s:i}", "mode", 12), wid, &wlen);
    uint8_t *echo = s_frame ("echo", json_pack ("{s:{s:s}}", "data", "po", "PO-1"), NULL, &elen);
    proto_msg_t *w1 = s_raw (raw, write, wlen), *e1 = s_raw (raw, echo, elen);
    assert_string_equal (s_code (w1), "ok");
    assert_string_equal (s_code (e1), "ok");

    /* a group spoilt by its second write: both answered unavailable */
    bus_client_t *held = bus_client_new (s_fx.rpc, s_fx.server_key, s_fx.ops, 10000, 0);
    char aid [PROTO_ID_LEN + 1], bid [PROTO_ID_LEN + 1];
    uint8_t *a = s_frame ("authz.write", json_pack ("{s:i}", "mode", 12), aid, &alen);
    uint8_t *b = s_frame ("authz.write", json_pack ("{s:i}", "mode", 13), bid, &blen);
    s_send_held (held, 11);
    assert_int_equal (bus_client_send_raw (raw, a, alen), 0);
    assert_int_equal (bus_client_send_raw (raw, b, blen), 0);
    usleep (200 * 1000);
    s_work_release ();
    for (int i = 0; i < 2; i++) {
        proto_msg_t *reply = NULL;
        assert_int_equal (bus_client_recv (raw, 5000, &reply), 0);
        assert_string_equal (s_code (reply), PROTO_ERR_UNAVAILABLE);
        proto_msg_destroy (&reply);
    }
    proto_msg_t *reply = NULL;
    assert_int_equal (bus_client_recv (held, 5000, &reply), 0);
    proto_msg_destroy (&reply);
    bus_client_destroy (&held);

    /* the same id, another body: conflict, before and after the restart */
    uint8_t *other = NULL;
    {
        proto_msg_t *req = proto_msg_new (PROTO_KIND_REQ, "authz.write");
        memcpy (req->id, wid, PROTO_ID_LEN + 1);
        req->body = json_pack ("{s:i}", "mode", 1);
        assert_int_equal (proto_msg_encode (req, &other, &olen), 0);
        proto_msg_destroy (&req);
    }
    reply = s_raw (raw, other, olen);
    assert_string_equal (s_code (reply), PROTO_ERR_CONFLICT);
    assert_non_null (strstr (json_string_value (json_object_get (reply->error, "message")), "different request"));
    proto_msg_destroy (&reply);

    s_service_stop ();
    s_service_start (0);
    int64_t last = s_last_seq ();
    int64_t recalled = s_counter ("requests_duplicate_recorded");
    proto_msg_t *w2 = s_raw (raw, write, wlen), *e2 = s_raw (raw, echo, elen);
    assert_string_equal (s_code (w2), "ok");
    assert_string_equal (w2->corr, wid);
    assert_true (json_equal (w1->body, w2->body));
    assert_string_equal (s_code (e2), "ok");
    assert_true (json_equal (e1->body, e2->body));
    assert_int_equal (s_last_seq (), last);                    /* no work done again */
    assert_int_equal (s_counter ("requests_duplicate_recorded"), recalled + 2);
    reply = s_raw (raw, other, olen);
    assert_string_equal (s_code (reply), PROTO_ERR_CONFLICT);
    proto_msg_destroy (&reply);
    /* the spoilt group's write recorded nothing: it runs now */
    reply = s_raw (raw, a, alen);
    assert_string_equal (s_code (reply), "ok");
    proto_msg_destroy (&reply);
    assert_int_equal (s_last_seq (), last + 1);

    proto_msg_destroy (&w1);
    proto_msg_destroy (&w2);
    proto_msg_destroy (&e1);
    proto_msg_destroy (&e2);
    free (write);
    free (echo);
    free (other);
    free (a);
    free (b);
    bus_client_destroy (&raw);
}

/*  A failed commit publishes nothing and hands its seq numbers out again.
    The service is driven from this thread (its reactor is not running). */
static void
test_failed_commit (void **state)
{
    s_service_stop ();
    char err [256];
    bus_service_t *svc = bus_service_new (s_fx.config, "authz", "test-1", NULL, err, sizeof err);
    assert_non_null (svc);
    /* handlers only for this service's requests */
    assert_int_equal (bus_service_handle (svc, "run.get", s_test_handler, NULL), BUS_EINVAL);
    assert_int_equal (bus_service_handle (svc, "echo.seen", s_test_handler, NULL), BUS_EINVAL);
    assert_int_equal (bus_service_handle (svc, "no.such", s_test_handler, NULL), BUS_EINVAL);
    assert_int_equal (bus_service_handle (svc, "authz.check", s_test_handler, NULL), 0);
    assert_string_equal (bus_service_principal (svc), "svc:authz");
    assert_string_equal (bus_service_section_of (svc), "authz");
    bus_sub_t *sub = bus_sub_new (s_fx.pub, s_fx.server_key, s_fx.ops, NULL);
    proto_msg_t *evt = NULL;
    for (int i = 0; i < 40 && !evt; i++) {
        assert_int_equal (bus_service_emit (svc, "echo.seen", json_pack ("{s:s}", "probe", "x"), NULL), 0);
        evt = s_next_event (sub, "echo.seen", 50);
    }
    assert_non_null (evt);
    proto_msg_destroy (&evt);
    assert_int_equal (bus_service_emit (svc, "echo.seen", json_pack ("{s:s}", "marker", "m"), NULL), 0);
    uint64_t marker = 0;
    while (!marker && (evt = s_next_event (sub, "echo.seen", 1000))) {
        if (json_object_get (evt->body, "marker"))
            marker = evt->seq;
        proto_msg_destroy (&evt);
    }
    assert_true (marker > 0);

    bus_store_t *store = bus_service_store (svc);
    bus_txn_t *txn = bus_txn_begin (store, true);
    assert_int_equal (bus_event_append (svc, txn, "echo.seen", json_pack ("{s:s}", "lost", "a"), NULL), 0);
    assert_int_equal (bus_event_append (svc, txn, "echo.seen", json_pack ("{s:s}", "lost", "b"), NULL), 0);
    assert_int_not_equal (bus_txn_put (txn, 999, "k", 1, "v", 1), 0);    /* sticky error */
    assert_int_not_equal (bus_service_commit (svc, &txn), 0);
    assert_null (txn);
    assert_int_equal (bus_service_emit (svc, "echo.seen", json_pack ("{s:s}", "after", "c"), NULL), 0);
    evt = s_next_event (sub, "echo.seen", 1000);
    assert_non_null (evt);
    assert_null (json_object_get (evt->body, "lost"));
    assert_non_null (json_object_get (evt->body, "after"));
    assert_true (evt->seq == marker + 1);
    proto_msg_destroy (&evt);
    assert_null (s_next_event (sub, "echo.seen", 100));

    /* the outbox agrees: marker + 1 is the "after" event, and the last */
    txn = bus_txn_begin (store, false);
    int db = bus_store_db (store, "outbox");
    assert_true (db >= 0);
    const void *key, *val;
    size_t key_len, val_len;
    assert_int_equal (bus_txn_last (txn, db, &key, &key_len, &val, &val_len), 0);
    assert_int_equal (key_len, 8);
    assert_true (bus_key_to_u64 (key) == marker + 1);
    proto_msg_t *stored = NULL;
    assert_int_equal (proto_msg_decode (&stored, val, val_len, 0, NULL, NULL, 0), 0);
    assert_non_null (json_object_get (stored->body, "after"));
    proto_msg_destroy (&stored);
    bus_txn_abort (&txn);

    /* and the sequence goes on from there */
    assert_int_equal (bus_service_emit (svc, "echo.seen", NULL, NULL), 0);
    evt = s_next_event (sub, "echo.seen", 1000);
    assert_non_null (evt);
    assert_true (evt->seq == marker + 2);
    proto_msg_destroy (&evt);

    bus_sub_destroy (&sub);
    bus_service_destroy (&svc);
    s_service_start (0);
    s_expect (s_fx.client, "health", NULL, "ok");
}

int
main (void)
{
    bus_log_init ("test_bus", "error");
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_health),
        cmocka_unit_test (test_echo_and_event),
        cmocka_unit_test (test_catalogue_checks),
        cmocka_unit_test (test_unknown_key),
        cmocka_unit_test (test_malformed_frames),
        cmocka_unit_test (test_dedupe),
        cmocka_unit_test (test_handlers),
        cmocka_unit_test (test_offload),
        cmocka_unit_test (test_safe_not_remembered),
        cmocka_unit_test (test_writer_events_in_order),
        cmocka_unit_test (test_group_commit),
        cmocka_unit_test (test_call_keeps_other_replies),
        cmocka_unit_test (test_replay_published_only),
        cmocka_unit_test (test_dedupe_deferred),
        cmocka_unit_test (test_sub_cap),
        cmocka_unit_test (test_revoked_subscriber),
        cmocka_unit_test (test_client_retries),
        cmocka_unit_test (test_replay),
        cmocka_unit_test (test_outcome_survives_restart),
        cmocka_unit_test (test_outbox_restart),
        cmocka_unit_test (test_failed_commit),
    };
    return test_service_summary ((int) (sizeof tests / sizeof tests [0]),
                                 cmocka_run_group_tests (tests, s_setup, s_teardown));
}
