/*  ctl_bus.c — health, inject, tap: talking to the bus directly. */
#include "ctl.h"
#include "bus_service.h"

#include <stdio.h>

/*  health [SERVICE]: one health request per service, all in flight at once. */
int
ctl_cmd_health (ctl_t *ctl)
{
    if (ctl->argc > 1) {
        fprintf (stderr, "usage: sanctumctl health [SERVICE]\n");
        return CTL_USAGE;
    }
    if (ctl->argc == 1 && !bus_service_name (ctl->argv [0])) {
        fprintf (stderr, "sanctumctl: unknown service '%s'\n", ctl->argv [0]);
        return CTL_USAGE;
    }
    json_t *services = json_object ();
    bool all_ok = true;
    for (const bus_service_id_t *s = bus_services; s->name; s++) {
        if (ctl->argc == 1 && !streq (bus_service_name (ctl->argv [0]), s->name))
            continue;
        bus_client_t *client = ctl_client (ctl, s->name);
        proto_msg_t *reply = NULL;
        int rc = client ? bus_client_call (client, "health", NULL, NULL, &reply) : BUS_ENOTFOUND;
        json_t *entry;
        if (rc == 0 && reply->ok)
            entry = json_incref (reply->body);
        else
        if (rc == BUS_EAUTH) {
            /* said at once, with the key and where it came from */
            char why [512];
            ctl_print_call_error (ctl, s->name, client, rc, why, sizeof why);
            entry = json_pack ("{s:s, s:s}", "state", "refused", "error", why);
        }
        else {
            const char *why = rc ? bus_strerror (rc)
                            : json_string_value (json_object_get (reply->error, "message"));
            entry = json_pack ("{s:s, s:s}", "state", rc == 0 ? "error" : "unreachable",
                               "error", why ? why : "(no message)");
        }
        if (!streq (json_string_value (json_object_get (entry, "state")) ?: "", "ok"))
            all_ok = false;
        json_object_set_new (services, s->name, entry);
        proto_msg_destroy (&reply);
        bus_client_destroy (&client);
    }
    if (ctl->json) {
        json_t *out = json_pack ("{s:o}", "services", services);
        ctl_print_json (out, false);
        json_decref (out);
    }
    else {
        const char *name;
        json_t *entry;
        printf ("%-14s %-12s %-8s %s\n", "SERVICE", "STATE", "VERSION", "UPTIME");
        json_object_foreach (services, name, entry)
            printf ("%-14s %-12s %-8s %llds\n", name, json_string_value (json_object_get (entry, "state")),
                    json_string_value (json_object_get (entry, "version")) ?: "-",
                    (long long) json_integer_value (json_object_get (entry, "uptime_s")));
        json_decref (services);
    }
    return all_ok ? CTL_OK : CTL_ERROR;
}

/*  inject TYPE JSON [--service S]: the request goes to the type's owner, or
    to --service for the requests every service answers. */
int
ctl_cmd_inject (ctl_t *ctl)
{
    const char *type = NULL, *text = NULL, *service = NULL;
    for (int i = 0; i < ctl->argc; i++) {
        if (streq (ctl->argv [i], "--service") && i + 1 < ctl->argc)
            service = ctl->argv [++i];
        else if (!type)
            type = ctl->argv [i];
        else if (!text)
            text = ctl->argv [i];
        else
            type = NULL;
    }
    if (!type) {
        fprintf (stderr, "usage: sanctumctl inject TYPE [JSON] [--service SERVICE]\n");
        return CTL_USAGE;
    }
    json_error_t jerr;
    json_t *body = text ? json_loads (text, JSON_REJECT_DUPLICATES, &jerr) : json_object ();
    if (!json_is_object (body)) {
        fprintf (stderr, "sanctumctl: the body must be a JSON object%s%s\n", body ? "" : ": ", body ? "" : jerr.text);
        json_decref (body);
        return CTL_USAGE;
    }
    if (!service) {
        const proto_type_t *spec = proto_type_find (type);
        service = spec && !streq (spec->owner, "ANY") ? spec->owner : "orchestrator";
    }
    int rc = CTL_ERROR;
    bus_client_t *client = ctl_client (ctl, service);
    proto_msg_t *reply = NULL;
    if (client) {
        int crc = bus_client_call (client, type, body, NULL, &reply);
        if (crc)
            ctl_print_call_error (ctl, service, client, crc, NULL, 0);
        else if (reply->ok) {
            json_t *out = ctl->json ? proto_msg_to_json (reply) : json_incref (reply->body);
            ctl_print_json (out, false);
            json_decref (out);
            rc = CTL_OK;
        }
        else {
            if (ctl->json) {
                json_t *out = proto_msg_to_json (reply);
                ctl_print_json (out, false);
                json_decref (out);
            }
            else
                ctl_print_error (ctl, reply);
            rc = ctl_error_exit (reply);
        }
    }
    proto_msg_destroy (&reply);
    bus_client_destroy (&client);
    json_decref (body);
    return rc;
}

/* --- tap ------------------------------------------------------------------ */

typedef struct {
    const char *service;
    bus_sub_t *sub;
    bus_client_t *client;
    uint64_t last_seq;          /* last sequence printed from this publisher */
} s_tap_src_t;

/*  Print one event if it is the next of its publisher; returns 1 if printed. */
static int
s_tap_print (ctl_t *ctl, s_tap_src_t *src, json_t *env, const char *const *topics, long *left)
{
    uint64_t seq = (uint64_t) json_integer_value (json_object_get (env, "seq"));
    if (seq <= src->last_seq)
        return 0;
    src->last_seq = seq;
    const char *type = json_string_value (json_object_get (env, "type"));
    bool match = !topics [0];
    for (size_t i = 0; topics [i] && !match; i++)
        match = type && strncmp (type, topics [i], strlen (topics [i])) == 0;
    if (!match)
        return 0;
    if (ctl->json)
        ctl_print_json (env, true);
    else {
        char *body = json_dumps (json_object_get (env, "body"), JSON_COMPACT | JSON_SORT_KEYS);
        printf ("%s #%llu %s %s\n", json_string_value (json_object_get (env, "pub")),
                (unsigned long long) seq, type, body ? body : "{}");
        free (body);
    }
    fflush (stdout);
    if (*left > 0)
        (*left)--;
    return 1;
}

/*  Fetch [from, to] from the publisher with events.replay and print them. */
static void
s_tap_replay (ctl_t *ctl, s_tap_src_t *src, uint64_t from, uint64_t to, const char *const *topics,
              long *left)
{
    while (from <= to && *left != 0) {
        json_t *body = json_pack ("{s:I}", "from_seq", (json_int_t) from);
        if (to != UINT64_MAX)
            json_object_set_new (body, "to_seq", json_integer ((json_int_t) to));
        proto_msg_t *reply = NULL;
        int rc = bus_client_call (src->client, "events.replay", body, NULL, &reply);
        json_decref (body);
        if (rc == BUS_EAUTH)
            ctl_print_call_error (ctl, src->service, src->client, rc, NULL, 0);
        if (rc || !reply->ok) {
            fprintf (stderr, "sanctumctl: replay from %s failed\n", src->service);
            proto_msg_destroy (&reply);
            return;
        }
        /* first_seq: the publisher no longer keeps anything older */
        json_t *first = json_object_get (reply->body, "first_seq");
        uint64_t kept = json_is_integer (first) ? (uint64_t) json_integer_value (first) : 0;
        if (kept > from)
            fprintf (stderr, "sanctumctl: %s no longer keeps events %llu..%llu (trimmed from its outbox)\n",
                     src->service, (unsigned long long) from,
                     (unsigned long long) MIN (kept - 1, to));
        size_t i;
        json_t *env;
        json_array_foreach (json_object_get (reply->body, "events"), i, env)
            if (*left != 0)
                s_tap_print (ctl, src, env, topics, left);
        /* next_seq: more in the range; none: the range is done */
        json_t *next = json_object_get (reply->body, "next_seq");
        from = json_is_integer (next) ? (uint64_t) json_integer_value (next) : 0;
        proto_msg_destroy (&reply);
        if (from == 0)
            break;
    }
}

int
ctl_cmd_tap (ctl_t *ctl)
{
    const char **topics = calloc ((size_t) ctl->argc + 1, sizeof *topics);
    const char *only = NULL;
    bool replay = false;
    long left = -1, timeout_ms = -1;
    size_t ntopics = 0;
    for (int i = 0; i < ctl->argc; i++) {
        if (streq (ctl->argv [i], "--service") && i + 1 < ctl->argc)
            only = ctl->argv [++i];
        else if (streq (ctl->argv [i], "--replay"))
            replay = true;
        else if (streq (ctl->argv [i], "--count") && i + 1 < ctl->argc)
            left = atol (ctl->argv [++i]);
        else if (streq (ctl->argv [i], "--timeout-ms") && i + 1 < ctl->argc)
            timeout_ms = atol (ctl->argv [++i]);
        else
            topics [ntopics++] = ctl->argv [i];
    }
    if (only && !bus_service_name (only)) {
        fprintf (stderr, "sanctumctl: unknown service '%s'\n", only);
        free (topics);
        return CTL_USAGE;
    }
    s_tap_src_t srcs [16] = { { 0 } };
    size_t nsrc = 0;
    zpoller_t *poller = NULL;
    for (const bus_service_id_t *s = bus_services; s->name; s++) {
        if (only && !streq (bus_service_name (only), s->name))
            continue;
        s_tap_src_t *src = &srcs [nsrc];
        src->service = s->name;
        src->sub = bus_sub_for (ctl->config, s->name, ctl->cert, NULL);
        src->client = ctl_client (ctl, s->name);
        if (!src->sub || !src->client) {
            bus_sub_destroy (&src->sub);
            bus_client_destroy (&src->client);
            continue;
        }
        if (!poller)
            poller = zpoller_new (bus_sub_sock (src->sub), NULL);
        else
            zpoller_add (poller, bus_sub_sock (src->sub));
        nsrc++;
    }
    /* late joiner: what was published before we subscribed */
    zclock_sleep (100);
    for (size_t i = 0; i < nsrc && replay; i++)
        s_tap_replay (ctl, &srcs [i], 1, UINT64_MAX, topics, &left);
    int64_t until = timeout_ms >= 0 ? zclock_mono () + timeout_ms : INT64_MAX;
    while (left != 0 && !zsys_interrupted && zclock_mono () < until && poller) {
        long wait = until == INT64_MAX ? 500 : (long) (until - zclock_mono ());
        zsock_t *ready = zpoller_wait (poller, wait > 500 ? 500 : (int) wait);
        if (!ready)
            continue;
        for (size_t i = 0; i < nsrc; i++) {
            if (bus_sub_sock (srcs [i].sub) != ready)
                continue;
            proto_msg_t *evt = NULL;
            if (bus_sub_recv (srcs [i].sub, 0, &evt) != 0)
                break;
            /* a gap: fetch what we missed before printing this one */
            if (replay && evt->seq > srcs [i].last_seq + 1)
                s_tap_replay (ctl, &srcs [i], srcs [i].last_seq + 1, evt->seq - 1, topics, &left);
            json_t *env = proto_msg_to_json (evt);
            if (left != 0)
                s_tap_print (ctl, &srcs [i], env, topics, &left);
            json_decref (env);
            proto_msg_destroy (&evt);
        }
    }
    zpoller_destroy (&poller);
    for (size_t i = 0; i < nsrc; i++) {
        bus_sub_destroy (&srcs [i].sub);
        bus_client_destroy (&srcs [i].client);
    }
    free (topics);
    return left > 0 ? CTL_ERROR : CTL_OK;
}
