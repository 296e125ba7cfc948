/*  test_audit_full.c — the auditor's appends when its store fills up.

    Appends are written straight in the writer's group (audit_service.c,
    s_append_work): one that fails after it wrote must fail its whole
    group, or its half-written entry would commit with the others. The
    auditor runs on a thread (a real bus service: CURVE socket, LMDB with
    a 2 MB map); one client keeps 64 appends of ~1 KB in flight until the
    map is full and appends are answered unavailable. Then every append
    answered ok has its own index, below the log's size, and the log holds
    exactly those: no entry was stored without its answer, none twice.
    Afterwards, the log still proves: its signed head reads.
*/
#include "audit_service.h"
#include "bus_client.h"
#include "bus_services.h"
#include "../support/test_service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_IN_FLIGHT  64
#define S_SENT_MAX   20000
#define S_TIMEOUT_MS 20000

static int s_failed, s_total;

static void
s_check (bool ok, const char *what)
{
    s_total++;
    if (!ok)
        s_failed++;
    printf ("%s %s\n", ok ? "ok" : "FAIL", what);
}

int
main (void)
{
    char err [256] = "";
    test_service_t *env = test_service_new ("auditor", NULL, "map_size_mb = 2\n", err, sizeof err);
    zcert_t *cert = env ? test_service_cert (env, "orch", "svc:orchestrator") : NULL;
    for (const bus_service_id_t *id = bus_services; cert && id->name; id++) {
        zcert_t *other = strcmp (id->name, "auditor") ? test_service_cert (env, id->name, NULL) : NULL;
        zcert_destroy (&other);
    }
    if (!cert || test_service_start (env, &audit_daemon, "test", 0, err, sizeof err)) {
        fprintf (stderr, "test_audit_full: cannot start the auditor: %s\n", err);
        return 1;
    }
    bus_client_t *client = bus_client_new (test_service_rpc (env), test_service_server_key (env), cert,
                                           S_TIMEOUT_MS, 0);
    char pad [1001];
    memset (pad, 'x', sizeof pad - 1);
    pad [sizeof pad - 1] = 0;
    json_t *body = json_pack ("{s:{s:s, s:s, s:i}}", "entry", "kind", "step.intent", "pad", pad, "n", 0);
    json_t *entry = json_object_get (body, "entry");
    uint8_t *seen = calloc (S_SENT_MAX, 1);
    long sent = 0, ok = 0, unavailable = 0, other = 0, dup = 0, beyond = 0;
    int in_flight = 0;
    for (; client && in_flight < S_IN_FLIGHT; in_flight++, sent++) {
        json_object_set_new (entry, "n", json_integer (sent));
        if (bus_client_send (client, "audit.append", body, NULL, NULL))
            break;
    }
    while (client && in_flight > 0) {
        proto_msg_t *reply = NULL;
        if (bus_client_recv (client, S_TIMEOUT_MS, &reply))
            break;
        in_flight--;
        if (reply->ok) {
            json_int_t index = json_integer_value (json_object_get (reply->body, "index"));
            ok++;
            if (index < 0 || index >= S_SENT_MAX)
                beyond++;
            else if (seen [index]++)
                dup++;
        }
        else if (strcmp (json_string_value (json_object_get (reply->error, "code")) ?: "", "unavailable") == 0)
            unavailable++;
        else
            other++;
        proto_msg_destroy (&reply);
        /* until the map is full and a few hundred more were refused */
        if (unavailable < 300 && sent < S_SENT_MAX) {
            json_object_set_new (entry, "n", json_integer (sent++));
            in_flight += bus_client_send (client, "audit.append", body, NULL, NULL) == 0;
        }
    }
    printf ("# %ld sent, %ld ok, %ld unavailable, %ld other\n", sent, ok, unavailable, other);
    s_check (in_flight == 0, "every append was answered");
    s_check (ok > 100 && unavailable > 0, "the map filled after appends were stored");
    s_check (other == 0, "no answer but ok or unavailable");
    s_check (dup == 0 && beyond == 0, "each append answered ok has its own index");
    proto_msg_t *head = NULL;
    json_t *empty = json_object ();
    int rc = client ? bus_client_call (client, "audit.head", empty, NULL, &head) : -1;
    json_decref (empty);
    json_int_t size = rc == 0 && head->ok ? json_integer_value (json_object_get (head->body, "size")) : -1;
    printf ("# the log holds %lld entries\n", (long long) size);
    s_check (size == ok, "the log holds exactly the appends answered ok");
    bool below = true;
    for (json_int_t i = size; i >= 0 && i < S_SENT_MAX; i++)
        below = below && !seen [i];
    s_check (size >= 0 && below, "every index answered is below the log's size");
    proto_msg_destroy (&head);
    json_decref (body);
    free (seen);
    bus_client_destroy (&client);
    zcert_destroy (&cert);
    test_service_destroy (&env);
    return test_service_summary (s_total, s_failed);
}
