/*  ctl_run.c — `sanctumctl run ...`: the orchestrator's runs.

      run start WORKFLOW [--input KEY=VALUE]...   start a run; VALUE is a JSON
                                                  number, true/false/null or a
                                                  JSON object/list when it parses
                                                  as one, else a string
      run get RUN                                 one run
      run wait RUN [--timeout-ms T]               block until the run ends or
                                                  pauses (T: give up after T ms)
      run cancel RUN
      run list [--state STATE]
      workflows [--load]                          the loaded workflows (--load:
                                                  read the files again first)

    --json prints the orchestrator's reply: run start|get|wait|cancel
    → {"run", "state", "reason"?, "workflow", "nodes": [...], "approval"?: {...}}
    (a paused run's approval levels as the orchestrator follows them from
    the ciba-broker's events);
    run list → {"runs": [...]}. Exit codes (ctl.h): a run that ended REJECTED
    is 3, FAILED is 1; otherwise 0 once the request was answered.
*/
#include "ctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*  One request to the orchestrator. Returns the exit code; *out gets the
    body on success. The error is printed. */
static int
s_call (ctl_t *ctl, bus_client_t *client, const char *type, json_t *body, json_t **out)
{
    proto_msg_t *reply = NULL;
    int crc = bus_client_call (client, type, body, NULL, &reply);
    json_decref (body);
    int rc = CTL_OK;
    if (crc) {
        ctl_print_call_error (ctl, "orchestrator", client, crc, NULL, 0);
        rc = CTL_ERROR;
    }
    else if (!reply->ok) {
        ctl_print_error (ctl, reply);
        if (streq (type, "run.start"))
            ctl_print_hint (ctl, reply, "not_found", "`sanctumctl workflows` lists the loaded workflows");
        else
            ctl_print_hint (ctl, reply, "not_found", "`sanctumctl run list` lists the runs");
        rc = ctl_error_exit (reply);
    }
    else
        *out = json_incref (reply->body);
    proto_msg_destroy (&reply);
    return rc;
}

/*  A run id as the orchestrator makes them: a ULID, 26 characters. */
static bool
s_run_id_ok (const char *id)
{
    if (strlen (id) == 26)
        return true;
    fprintf (stderr, "sanctumctl: '%s' is not a run id (a ULID of 26 characters, as `sanctumctl run start` "
                     "prints it); `sanctumctl run list` lists the runs\n", id);
    return false;
}

/*  The exit code a run's state calls for. */
static int
s_state_exit (const json_t *run)
{
    const char *state = json_string_value (json_object_get (run, "state"));
    if (state && !strcmp (state, "REJECTED"))
        return CTL_DENIED;
    if (state && !strcmp (state, "FAILED"))
        return CTL_ERROR;
    return CTL_OK;
}

/*  A run for people. */
static void
s_print_run (const json_t *run)
{
    const char *reason = json_string_value (json_object_get (run, "reason"));
    printf ("run %s  %s%s%s  (%s)\n", json_string_value (json_object_get (run, "run")),
            json_string_value (json_object_get (run, "state")), reason ? ": " : "", reason ? reason : "",
            json_string_value (json_object_get (run, "workflow")));
    size_t i;
    json_t *n;
    json_array_foreach (json_object_get (run, "nodes"), i, n) {
        json_t *d = json_object_get (n, "decision");
        printf ("  %-16s %-6s %-9s %-9s%s%s%s%s\n", json_string_value (json_object_get (n, "node")),
                json_string_value (json_object_get (n, "kind")), json_string_value (json_object_get (n, "state")),
                json_object_get (n, "outcome") ? json_string_value (json_object_get (n, "outcome")) : "",
                d ? " decision " : "", d ? json_string_value (json_object_get (d, "result")) : "",
                json_object_get (n, "lease") ? " lease " : "",
                json_object_get (n, "lease") ? json_string_value (json_object_get (n, "lease")) : "");
    }
    json_t *a = json_object_get (run, "approval");
    if (a && !strcmp (json_string_value (json_object_get (run, "state")), "PAUSED")) {
        printf ("  waiting for approval %s:", json_string_value (json_object_get (a, "approval_id")));
        json_array_foreach (json_object_get (a, "levels"), i, n)
            printf (" %s (%s)", json_string_value (json_object_get (n, "approver")),
                    json_string_value (json_object_get (n, "state")));
        printf ("\n");
    }
}

/*  KEY=VALUE into obj: VALUE as JSON when it is a number, true, false,
    null, an object or a list; else as a string. */
static int
s_input (json_t *obj, const char *kv)
{
    const char *eq = strchr (kv, '=');
    if (!eq || eq == kv) {
        fprintf (stderr, "sanctumctl: --input takes KEY=VALUE, not '%s'\n", kv);
        return -1;
    }
    char key [256];
    snprintf (key, sizeof key, "%.*s", (int) (eq - kv), kv);
    const char *val = eq + 1;
    json_t *v = json_loads (val, JSON_DECODE_ANY, NULL);
    if (!v || json_is_string (v)) {
        json_decref (v);
        v = json_string (val);
    }
    json_object_set_new (obj, key, v);
    return 0;
}

static void
s_print (ctl_t *ctl, json_t *run)
{
    if (ctl->json)
        ctl_print_json (run, false);
    else
        s_print_run (run);
}

int
ctl_cmd_run (ctl_t *ctl)
{
    const char *usage = "usage: sanctumctl run start WORKFLOW [--input KEY=VALUE]... | get RUN | wait RUN "
                        "[--timeout-ms T] | cancel RUN | list [--state STATE]\n";
    if (ctl->argc < 1) {
        fputs (usage, stderr);
        return CTL_USAGE;
    }
    const char *verb = ctl->argv [0];
    json_t *body = NULL;
    long wait_ms = 0;
    if (streq (verb, "start") && ctl->argc >= 2) {
        json_t *input = json_object ();
        for (int i = 2; i < ctl->argc; i++) {
            if (streq (ctl->argv [i], "--input") && i + 1 < ctl->argc) {
                if (s_input (input, ctl->argv [++i])) {
                    json_decref (input);
                    return CTL_USAGE;
                }
            }
            else {
                fputs (usage, stderr);
                json_decref (input);
                return CTL_USAGE;
            }
        }
        body = json_pack ("{s:s, s:o}", "workflow", ctl->argv [1], "input", input);
    }
    else if ((streq (verb, "get") || streq (verb, "cancel")) && ctl->argc == 2) {
        if (!s_run_id_ok (ctl->argv [1]))
            return CTL_USAGE;
        body = json_pack ("{s:s}", "run", ctl->argv [1]);
    }
    else if (streq (verb, "wait") && (ctl->argc == 2 || (ctl->argc == 4 && streq (ctl->argv [2], "--timeout-ms")))) {
        if (!s_run_id_ok (ctl->argv [1]))
            return CTL_USAGE;
        body = json_pack ("{s:s}", "run", ctl->argv [1]);
        wait_ms = ctl->argc == 4 ? atol (ctl->argv [3]) : 0;
    }
    else if (streq (verb, "list") && (ctl->argc == 1 || (ctl->argc == 3 && streq (ctl->argv [1], "--state")))) {
        body = json_object ();
        if (ctl->argc == 3)
            json_object_set_new (body, "state", json_string (ctl->argv [2]));
    }
    else {
        fputs (usage, stderr);
        return CTL_USAGE;
    }
    bus_client_t *client = ctl_client (ctl, "orchestrator");
    if (!client) {
        json_decref (body);
        return CTL_ERROR;
    }
    json_t *out = NULL;
    int rc;
    if (streq (verb, "wait")) {
        /* each run.wait is answered within the bus deadline; ask again until
           the run is no longer RUNNING (or the caller's deadline passes) */
        long per = bus_config_int (ctl->config, "sanctum", "rpc_timeout_ms") - 500;
        if (per < 100)
            per = 100;
        int64_t deadline = wait_ms > 0 ? zclock_mono () + wait_ms : 0;
        for (;;) {
            json_object_set_new (body, "timeout_ms", json_integer (per));
            rc = s_call (ctl, client, "run.wait", json_incref (body), &out);
            if (rc || strcmp (json_string_value (json_object_get (out, "state")), "RUNNING")
                || (deadline && zclock_mono () >= deadline))
                break;
            json_decref (out);
            out = NULL;
        }
        json_decref (body);
    }
    else
        rc = s_call (ctl, client, streq (verb, "start") ? "run.start" : streq (verb, "get") ? "run.get"
                                : streq (verb, "cancel") ? "run.cancel" : "run.list", body, &out);
    bus_client_destroy (&client);
    if (rc)
        return rc;
    if (streq (verb, "list")) {
        if (ctl->json)
            ctl_print_json (out, false);
        else {
            size_t i;
            json_t *r;
            json_array_foreach (json_object_get (out, "runs"), i, r) {
                const char *reason = json_string_value (json_object_get (r, "reason"));
                printf ("%s  %-9s %-16s %s\n", json_string_value (json_object_get (r, "run")),
                        json_string_value (json_object_get (r, "state")),
                        json_string_value (json_object_get (r, "workflow")), reason ? reason : "");
            }
        }
        json_decref (out);
        return CTL_OK;
    }
    if (streq (verb, "start") && !ctl->json)
        printf ("run %s started (%s)\n", json_string_value (json_object_get (out, "run")),
                json_string_value (json_object_get (out, "workflow")));
    else
        s_print (ctl, out);
    rc = s_state_exit (out);
    json_decref (out);
    return rc;
}

int
ctl_cmd_workflows (ctl_t *ctl)
{
    bool load = ctl->argc == 1 && streq (ctl->argv [0], "--load");
    if (ctl->argc > 1 || (ctl->argc == 1 && !load)) {
        fputs ("usage: sanctumctl workflows [--load]\n", stderr);
        return CTL_USAGE;
    }
    bus_client_t *client = ctl_client (ctl, "orchestrator");
    if (!client)
        return CTL_ERROR;
    json_t *out = NULL;
    int rc = s_call (ctl, client, load ? "orch.workflow_load" : "orch.workflows", json_object (), &out);
    bus_client_destroy (&client);
    if (rc)
        return rc;
    if (ctl->json)
        ctl_print_json (out, false);
    else {
        size_t i;
        json_t *w;
        json_array_foreach (json_object_get (out, "workflows"), i, w)
            printf ("%-20s %s  %s (%d nodes)\n", json_string_value (json_object_get (w, "workflow")),
                    json_string_value (json_object_get (w, "hash")), json_string_value (json_object_get (w, "file")),
                    (int) json_integer_value (json_object_get (w, "nodes")));
        json_array_foreach (json_object_get (out, "errors"), i, w)
            printf ("error: %s\n", json_string_value (w));
    }
    rc = json_array_size (json_object_get (out, "errors")) ? CTL_ERROR : CTL_OK;
    json_decref (out);
    return rc;
}
