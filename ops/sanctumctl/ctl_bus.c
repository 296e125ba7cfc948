/*  ctl_bus.c — health, inject, tap: talking to the bus directly. */
#include "ctl.h"
#include "bus_follow.h"
#include "bus_service.h"

#include <stdio.h>

/*  Say that name is no service, and which are. */
static void
s_unknown_service (const char *name)
{
    fprintf (stderr, "sanctumctl: unknown service '%s' (one of:", name);
    for (const bus_service_id_t *s = bus_services; s->name; s++)
        fprintf (stderr, " %s", s->name);
    fprintf (stderr, ")\n");
}

/*  health [SERVICE]: one health request per service, all in flight at once. */
int
ctl_cmd_health (ctl_t *ctl)
{
    if (ctl->argc > 1) {
        fprintf (stderr, "usage: sanctumctl health [SERVICE]\n");
        return CTL_USAGE;
    }
    if (ctl->argc == 1 && !bus_service_name (ctl->argv [0])) {
        s_unknown_service (ctl->argv [0]);
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

/*  Edit distance between a and b (both short: type names), capped at 3. */
static int
s_distance (const char *a, const char *b)
{
    size_t la = strlen (a), lb = strlen (b);
    if (la > 64 || lb > 64)
        return 3;
    int row [65];
    for (size_t j = 0; j <= lb; j++)
        row [j] = (int) j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row [0];
        row [0] = (int) i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row [j];
            int best = diag + (a [i - 1] != b [j - 1]);
            if (row [j - 1] + 1 < best)
                best = row [j - 1] + 1;
            if (up + 1 < best)
                best = up + 1;
            row [j] = best;
            diag = up;
        }
    }
    return row [lb] < 3 ? row [lb] : 3;
}

/*  Say that type is no request of the catalogue, with the request types
    it is a near miss of, or else those of its prefix (`run.` for
    `run.strat`), and where every type is described. */
static void
s_unknown_type (const char *type, const proto_type_t *spec)
{
    fprintf (stderr, "sanctumctl: '%s' is %s\n", type,
             spec ? "an event, not a request: it cannot be injected" : "not a request type of the catalogue");
    const char *dot = strchr (type, '.');
    size_t prefix = dot ? (size_t) (dot - type) + 1 : 0;
    bool near = false;
    for (int pass = 0; pass < 2 && !near; pass++)
        for (size_t i = 0; i < proto_type_count (); i++) {
            const proto_type_t *t = proto_type_at (i);
            if (t->kind != PROTO_KIND_REQ)
                continue;
            bool match = pass == 0 ? s_distance (type, t->type) <= 2
                                   : prefix && strncmp (type, t->type, prefix) == 0;
            if (match) {
                fprintf (stderr, "%s %s", near ? "," : pass == 0 ? "  did you mean:" : "  the requests of that prefix:",
                         t->type);
                near = true;
            }
        }
    if (near)
        fprintf (stderr, "\n");
    fprintf (stderr, "  every request type, its owner and body: proto/PROTOCOL.md section 10 (in the source tree)\n");
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
    const proto_type_t *spec = proto_type_find (type);
    if (!spec || spec->kind != PROTO_KIND_REQ) {
        s_unknown_type (type, spec);
        json_decref (body);
        return CTL_USAGE;
    }
    if (!service) {
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

/*  tap prints what a memory-mode follower (bus_follow.h) applies: every
    event once, in each publisher's seq order, gaps filled by replay, and
    events a publisher trimmed reported as lost. */
typedef struct {
    ctl_t *ctl;
    long left;                  /* events still to print; < 0: no limit */
} s_tap_t;

static int
s_tap_event (bus_follow_t *follow, bus_txn_t *txn, proto_msg_t *event, void *arg)
{
    s_tap_t *tap = arg;
    if (tap->left == 0)
        return 0;
    if (tap->ctl->json) {
        json_t *env = proto_msg_to_json (event);
        ctl_print_json (env, true);
        json_decref (env);
    }
    else {
        char *body = json_dumps (event->body, JSON_COMPACT | JSON_SORT_KEYS);
        printf ("%s #%llu %s %s\n", event->pub, (unsigned long long) event->seq, event->type,
                body ? body : "{}");
        free (body);
    }
    fflush (stdout);
    if (tap->left > 0)
        tap->left--;
    return 0;
}

static void
s_tap_loss (bus_follow_t *follow, const char *source, const char *pub, uint64_t from, uint64_t to, void *arg)
{
    fprintf (stderr, "sanctumctl: %s no longer keeps events %llu..%llu (trimmed from its outbox)\n",
             source, (unsigned long long) from, (unsigned long long) to);
}

typedef struct {
    s_tap_t *tap;
    int64_t until;
} s_tap_wait_t;

static int
s_tap_check (zloop_t *loop, int timer_id, void *arg)
{
    s_tap_wait_t *w = arg;
    return w->tap->left == 0 || zclock_mono () >= w->until ? -1 : 0;
}

/*  tap [TOPIC]... [--service S] [--replay] [--count N] [--timeout-ms MS]:
    live events of every service (or S) whose type starts with a TOPIC;
    with --replay, what the outboxes still keep first. */
int
ctl_cmd_tap (ctl_t *ctl)
{
    const char **topics = calloc ((size_t) ctl->argc + 1, sizeof *topics);
    const char *only = NULL;
    bool replay = false;
    long timeout_ms = -1;
    s_tap_t tap = { ctl, -1 };
    size_t ntopics = 0;
    for (int i = 0; i < ctl->argc; i++) {
        if (streq (ctl->argv [i], "--service") && i + 1 < ctl->argc)
            only = ctl->argv [++i];
        else if (streq (ctl->argv [i], "--replay"))
            replay = true;
        else if (streq (ctl->argv [i], "--count") && i + 1 < ctl->argc)
            tap.left = atol (ctl->argv [++i]);
        else if (streq (ctl->argv [i], "--timeout-ms") && i + 1 < ctl->argc)
            timeout_ms = atol (ctl->argv [++i]);
        else if (ctl->argv [i][0] == '-') {       /* no topic starts so: an option misspelt or without its value */
            fprintf (stderr, "sanctumctl: tap: unknown option or missing value: '%s'\n"
                             "usage: sanctumctl tap [TOPIC]... [--service S] [--replay] [--count N] "
                             "[--timeout-ms T]\n", ctl->argv [i]);
            free (topics);
            return CTL_USAGE;
        }
        else
            topics [ntopics++] = ctl->argv [i];
    }
    if (only && !bus_service_name (only)) {
        s_unknown_service (only);
        free (topics);
        return CTL_USAGE;
    }
    zloop_t *loop = zloop_new ();
    bus_follow_opts_t opts = { .name = "tap", .topics = topics, .fn = s_tap_event, .loss = s_tap_loss,
                               .arg = &tap, .from_now = !replay };
    bus_follow_t *follow = loop ? bus_follow_new (loop, ctl->cert, &opts) : NULL;
    size_t sources = 0;
    for (const bus_service_id_t *s = bus_services; follow && s->name; s++) {
        if (only && !streq (bus_service_name (only), s->name))
            continue;
        if (bus_follow_add_service (follow, ctl->config, s->name) == 0)
            sources++;
    }
    if (follow && sources) {
        s_tap_wait_t wait = { &tap, timeout_ms >= 0 ? zclock_mono () + timeout_ms : INT64_MAX };
        zloop_timer (loop, 20, 0, s_tap_check, &wait);
        zloop_start (loop);
    }
    else
        fprintf (stderr, "sanctumctl: no service to tap\n");
    bus_follow_destroy (&follow);
    zloop_destroy (&loop);
    free (topics);
    return sources && tap.left <= 0 ? CTL_OK : CTL_ERROR;
}
