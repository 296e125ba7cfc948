/*  ctl_authz.c — `sanctumctl authz ...`: models, tuples, checks, policy,
    decisions, over the bus to sanctum-authz. (`authz test` runs OpenFGA
    test files: ctl_authz_test.c.)
*/
#include "ctl.h"
#include "authz_mod.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define S_FILE_MAX (4 * 1024 * 1024)

/*  Read a whole file (at most S_FILE_MAX) into a NUL-terminated buffer. */
static char *
s_slurp (const char *path)
{
    struct stat st;
    if (stat (path, &st) != 0) {
        fprintf (stderr, "sanctumctl: cannot read %s: %s\n", path, strerror (errno));
        return NULL;
    }
    if (st.st_size > S_FILE_MAX) {
        fprintf (stderr, "sanctumctl: %s: over %d bytes\n", path, S_FILE_MAX);
        return NULL;
    }
    FILE *f = fopen (path, "rb");
    char *text = f ? malloc ((size_t) st.st_size + 1) : NULL;
    size_t n = text ? fread (text, 1, (size_t) st.st_size, f) : 0;
    if (f)
        fclose (f);
    if (!text || n != (size_t) st.st_size) {
        free (text);
        fprintf (stderr, "sanctumctl: cannot read %s\n", path);
        return NULL;
    }
    text [n] = 0;
    return text;
}

/*  Send one authz request and print the reply. Returns the exit code;
    *reply_out (if given) keeps the reply. */
/*  The store named by --store (NULL: the default store). */
static const char *s_store;

static int
s_call (ctl_t *ctl, const char *type, json_t *body, proto_msg_t **reply_out, bool print)
{
    /* the store, for every request that names one */
    if (s_store && body && strncmp (type, "authz.policy.", 13) && strcmp (type, "authz.store.create")
    &&  strcmp (type, "authz.store.list"))
        json_object_set_new (body, "store_id", json_string (s_store));
    bus_client_t *client = ctl_client (ctl, "authz");
    proto_msg_t *reply = NULL;
    int rc = CTL_ERROR;
    if (client) {
        int crc = bus_client_call (client, type, body, NULL, &reply);
        if (crc)
            ctl_print_call_error (ctl, "authz", client, crc, NULL, 0);
        else if (!reply->ok) {
            ctl_print_error (ctl, reply);
            if (streq (type, "authz.write"))
                ctl_print_hint (ctl, reply, "conflict", "--ignore-existing skips the tuples already written "
                                                        "(or already deleted)");
            json_t *errors = json_object_get (reply->error, "errors");
            size_t i;
            json_t *e;
            if (!ctl->json)
                json_array_foreach (errors, i, e)
                    fprintf (stderr, "  line %lld col %lld: %s\n",
                             (long long) json_integer_value (json_object_get (json_object_get (e, "line"), "start")) + 1,
                             (long long) json_integer_value (json_object_get (json_object_get (e, "column"), "start")),
                             json_string_value (json_object_get (e, "msg")));
            rc = ctl_error_exit (reply);
        }
        else {
            if (print)
                ctl_print_json (reply->body, !ctl->json ? false : true);
            rc = CTL_OK;
        }
    }
    bus_client_destroy (&client);
    if (reply_out)
        *reply_out = reply;
    else
        proto_msg_destroy (&reply);
    return rc;
}

/*  --context JSON / --condition NAME options among args. */
static int
s_options (ctl_t *ctl, int from, json_t **context, const char **condition)
{
    for (int i = from; i < ctl->argc; i++) {
        if (streq (ctl->argv [i], "--context") && i + 1 < ctl->argc) {
            json_error_t jerr;
            *context = json_loads (ctl->argv [++i], JSON_REJECT_DUPLICATES, &jerr);
            if (!json_is_object (*context)) {
                fprintf (stderr, "sanctumctl: --context must be a JSON object: %s\n", jerr.text);
                return CTL_USAGE;
            }
        }
        else if (streq (ctl->argv [i], "--condition") && i + 1 < ctl->argc && condition)
            *condition = ctl->argv [++i];
        else if (streq (ctl->argv [i], "--context") || (streq (ctl->argv [i], "--condition") && condition)) {
            fprintf (stderr, "sanctumctl: %s takes a value: %s\n", ctl->argv [i],
                     streq (ctl->argv [i], "--context") ? "--context '{\"amount\": 1000}' (a JSON object)"
                                                         : "--condition NAME");
            return CTL_USAGE;
        }
        else {
            fprintf (stderr, "sanctumctl: unexpected argument '%s'\n", ctl->argv [i]);
            return CTL_USAGE;
        }
    }
    return CTL_OK;
}

/*  Send model (stolen) as the store's newest; say its id ("model
    written: ID", the reply with --json). */
static int
s_model_send (ctl_t *ctl, json_t *model)
{
    json_t *body = json_pack ("{s:o}", "model", model);
    proto_msg_t *reply = NULL;
    int rc = s_call (ctl, "authz.model.write", body, &reply, ctl->json);
    json_decref (body);
    if (rc == CTL_OK && !ctl->json)
        printf ("model written: %s (now the newest; checks use it unless they name another)\n",
                json_string_value (json_object_get (reply->body, "authorization_model_id")) ?: "?");
    proto_msg_destroy (&reply);
    return rc;
}

/*  authz model write FILE: DSL or JSON, by content; a file ending in
    .mod is a modular model's fga.mod, combined here (authz_mod.h) with
    its module files and sent as one model. */
static int
s_model_write (ctl_t *ctl)
{
    if (ctl->argc != 3) {
        fprintf (stderr, "usage: sanctumctl authz model write FILE (DSL, JSON or fga.mod)\n");
        return CTL_USAGE;
    }
    size_t plen = strlen (ctl->argv [2]);
    if (plen >= 4 && streq (ctl->argv [2] + plen - 4, ".mod")) {
        json_t *model = NULL, *errors = NULL;
        if (authz_mod_load (ctl->argv [2], &model, &errors)) {
            size_t i;
            json_t *e;
            json_array_foreach (errors, i, e)
                fprintf (stderr, "sanctumctl: %s:%lld:%lld: %s\n",
                         json_string_value (json_object_get (e, "file")) ?: ctl->argv [2],
                         json_integer_value (json_object_get (json_object_get (e, "line"), "start")) + 1,
                         json_integer_value (json_object_get (json_object_get (e, "column"), "start")) + 1,
                         json_string_value (json_object_get (e, "msg")) ?: "invalid");
            json_decref (errors);
            return CTL_ERROR;
        }
        json_decref (errors);
        return s_model_send (ctl, model);
    }
    char *text = s_slurp (ctl->argv [2]);
    if (!text)
        return CTL_ERROR;
    json_t *model = json_loads (text, JSON_REJECT_DUPLICATES, NULL);
    if (!model)
        model = json_string (text);    /* not JSON: the DSL */
    free (text);
    if (!model) {
        fprintf (stderr, "sanctumctl: %s is neither JSON nor UTF-8 text\n", ctl->argv [2]);
        return CTL_ERROR;
    }
    return s_model_send (ctl, model);
}

/*  What a write did, for people: "written 3 tuples; 12 already there"
    from the reply's counts (an authz that gives none: "written (15
    tuples asked)"). With --json: {"ok": true, "written", "existing"}
    ("deleted", "missing" for a delete). */
static void
s_print_written (ctl_t *ctl, json_t *body, bool del, size_t asked)
{
    json_t *done = json_object_get (body, del ? "deleted" : "written");
    json_t *left = json_object_get (body, del ? "missing" : "existing");
    if (ctl->json) {
        json_t *out = json_pack ("{s:b}", "ok", 1);
        if (json_is_integer (done) && json_is_integer (left)) {
            json_object_set (out, del ? "deleted" : "written", done);
            json_object_set (out, del ? "missing" : "existing", left);
        }
        ctl_print_json (out, true);
        json_decref (out);
    }
    else
    if (!json_is_integer (done) || !json_is_integer (left))
        printf ("%s (%zu tuple%s asked)\n", del ? "deleted" : "written", asked, asked == 1 ? "" : "s");
    else
    if (json_integer_value (left) == 0)
        printf ("%s %lld tuple%s\n", del ? "deleted" : "written", (long long) json_integer_value (done),
                json_integer_value (done) == 1 ? "" : "s");
    else
        printf ("%s %lld tuple%s; %lld %s\n", del ? "deleted" : "written", (long long) json_integer_value (done),
                json_integer_value (done) == 1 ? "" : "s", (long long) json_integer_value (left),
                del ? "already gone" : "already there");
    fflush (stdout);
}

/*  authz write|delete USER RELATION OBJECT [--condition N --context J],
    or authz write --file TUPLES.json (a list of tuple keys). */
static int
s_write (ctl_t *ctl, bool del)
{
    json_t *tuples = NULL;
    const char *on_conflict = NULL;       /* --ignore-existing: on_duplicate / on_missing = ignore */
    if (ctl->argc >= 1 && streq (ctl->argv [ctl->argc - 1], "--ignore-existing")) {
        on_conflict = "ignore";
        ctl->argc--;
    }
    if (ctl->argc == 3 && streq (ctl->argv [1], "--file")) {
        json_error_t jerr;
        tuples = json_load_file (ctl->argv [2], JSON_REJECT_DUPLICATES, &jerr);
        if (!json_is_array (tuples)) {
            fprintf (stderr, "sanctumctl: %s: a JSON list of tuple keys expected (%s)\n", ctl->argv [2], jerr.text);
            json_decref (tuples);
            return CTL_ERROR;
        }
    }
    else {
        if (ctl->argc < 4) {
            fprintf (stderr, "usage: sanctumctl authz %s USER RELATION OBJECT [--condition NAME [--context JSON]] [--ignore-existing]\n"
                             "       sanctumctl authz %s --file TUPLES.json [--ignore-existing]\n",
                     del ? "delete" : "write", del ? "delete" : "write");
            return CTL_USAGE;
        }
        json_t *context = NULL;
        const char *condition = NULL;
        int rc = s_options (ctl, 4, &context, &condition);
        if (rc)
            return rc;
        json_t *key = json_pack ("{s:s, s:s, s:s}", "user", ctl->argv [1], "relation", ctl->argv [2],
                                 "object", ctl->argv [3]);
        if (condition)
            json_object_set_new (key, "condition", json_pack ("{s:s, s:o?}", "name", condition, "context", context));
        else
            json_decref (context);
        tuples = json_pack ("[o]", key);
    }
    size_t asked = json_array_size (tuples);
    json_t *body = json_pack ("{s:o}", del ? "deletes" : "writes", tuples);
    if (on_conflict)
        json_object_set_new (body, del ? "on_missing" : "on_duplicate", json_string (on_conflict));
    proto_msg_t *reply = NULL;
    int rc = s_call (ctl, "authz.write", body, &reply, false);
    json_decref (body);
    if (rc == CTL_OK)
        s_print_written (ctl, reply->body, del, asked);
    proto_msg_destroy (&reply);
    return rc;
}

/*  authz check USER RELATION OBJECT [--context JSON]: exit 0 allowed, 3 not. */
static int
s_check (ctl_t *ctl)
{
    if (ctl->argc < 4) {
        fprintf (stderr, "usage: sanctumctl authz check USER RELATION OBJECT [--context JSON]\n");
        return CTL_USAGE;
    }
    json_t *context = NULL;
    int rc = s_options (ctl, 4, &context, NULL);
    if (rc)
        return rc;
    json_t *body = json_pack ("{s:{s:s, s:s, s:s}, s:o?}", "tuple_key", "user", ctl->argv [1],
                              "relation", ctl->argv [2], "object", ctl->argv [3], "context", context);
    proto_msg_t *reply = NULL;
    rc = s_call (ctl, "authz.check", body, &reply, ctl->json);
    json_decref (body);
    if (rc == CTL_OK) {
        bool allowed = json_is_true (json_object_get (reply->body, "allowed"));
        if (!ctl->json)
            printf ("%s\n", allowed ? "allowed" : "not allowed");
        rc = allowed ? CTL_OK : CTL_DENIED;
    }
    proto_msg_destroy (&reply);
    return rc;
}

/*  authz policy write FILE | authz policy read */
static int
s_policy (ctl_t *ctl)
{
    if (ctl->argc == 2 && streq (ctl->argv [1], "read"))
        return s_call (ctl, "authz.policy.read", NULL, NULL, true);
    if (ctl->argc != 3 || !streq (ctl->argv [1], "write")) {
        fprintf (stderr, "usage: sanctumctl authz policy write FILE | authz policy read\n");
        return CTL_USAGE;
    }
    json_error_t jerr;
    json_t *policy = json_load_file (ctl->argv [2], JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object (policy)) {
        fprintf (stderr, "sanctumctl: %s:%d: %s\n", ctl->argv [2], jerr.line, jerr.text);
        json_decref (policy);
        return CTL_ERROR;
    }
    json_t *body = json_pack ("{s:o}", "policy", policy);
    int rc = s_call (ctl, "authz.policy.write", body, NULL, false);
    json_decref (body);
    if (rc == CTL_OK)
        ctl_print_done (ctl, "policy loaded");
    return rc;
}

/*  authz decide PRINCIPAL ACTION RESOURCE [--context JSON]: exit 0 allow,
    3 deny, 0 with the chain printed for approval_required. */
static int
s_decide (ctl_t *ctl)
{
    if (ctl->argc < 4) {
        fprintf (stderr, "usage: sanctumctl authz decide PRINCIPAL ACTION RESOURCE [--context JSON]\n");
        return CTL_USAGE;
    }
    json_t *context = NULL;
    int rc = s_options (ctl, 4, &context, NULL);
    if (rc)
        return rc;
    json_t *body = json_pack ("{s:s, s:s, s:s, s:o?}", "principal", ctl->argv [1], "action", ctl->argv [2],
                              "resource", ctl->argv [3], "context", context);
    proto_msg_t *reply = NULL;
    rc = s_call (ctl, "authz.decide", body, &reply, ctl->json);
    json_decref (body);
    if (rc == CTL_OK) {
        const char *decision = json_string_value (json_object_get (reply->body, "decision"));
        if (!ctl->json) {
            printf ("%s", decision);
            if (streq (decision, "deny"))
                printf (": %s", json_string_value (json_object_get (reply->body, "reason")));
            size_t i;
            json_t *e;
            json_array_foreach (json_object_get (reply->body, "chain"), i, e)
                printf ("%s%s (limit %.0f, escalate after %llds)", i ? " -> " : ": ",
                        json_string_value (json_object_get (e, "user")),
                        json_number_value (json_object_get (e, "limit")),
                        (long long) json_integer_value (json_object_get (e, "escalate_after")));
            printf ("\n");
        }
        rc = streq (decision, "deny") ? CTL_DENIED : CTL_OK;
    }
    proto_msg_destroy (&reply);
    return rc;
}

/*  authz store create NAME | list | get | delete (the store of --store). */
static int
s_stores (ctl_t *ctl)
{
    const char *op = ctl->argc >= 2 ? ctl->argv [1] : "";
    if (streq (op, "create") && ctl->argc == 3) {
        json_t *body = json_pack ("{s:s}", "name", ctl->argv [2]);
        int rc = s_call (ctl, "authz.store.create", body, NULL, true);
        json_decref (body);
        return rc;
    }
    if (streq (op, "list") && ctl->argc == 2) {
        json_t *body = json_object ();
        int rc = s_call (ctl, "authz.store.list", body, NULL, true);
        json_decref (body);
        return rc;
    }
    if ((streq (op, "get") || streq (op, "delete")) && ctl->argc == 2 && s_store) {
        json_t *body = json_object ();
        int rc = s_call (ctl, streq (op, "get") ? "authz.store.get" : "authz.store.delete", body, NULL, true);
        json_decref (body);
        return rc;
    }
    fprintf (stderr, "usage: sanctumctl authz store create NAME | store list | --store ID store get|delete\n");
    return CTL_USAGE;
}

int
ctl_cmd_authz (ctl_t *ctl)
{
    /* --store ID, anywhere: the store of the requests */
    for (int i = 0; i + 1 < ctl->argc; i++)
        if (streq (ctl->argv [i], "--store")) {
            s_store = ctl->argv [i + 1];
            for (int k = i; k + 2 < ctl->argc; k++)
                ctl->argv [k] = ctl->argv [k + 2];
            ctl->argc -= 2;
            break;
        }
    const char *sub = ctl->argc ? ctl->argv [0] : "";
    if (streq (sub, "store"))
        return s_stores (ctl);
    if (streq (sub, "model") && ctl->argc >= 2 && streq (ctl->argv [1], "write"))
        return s_model_write (ctl);
    if (streq (sub, "write") || streq (sub, "delete"))
        return s_write (ctl, streq (sub, "delete"));
    if (streq (sub, "check"))
        return s_check (ctl);
    if (streq (sub, "policy"))
        return s_policy (ctl);
    if (streq (sub, "decide"))
        return s_decide (ctl);
    if (streq (sub, "test"))
        return ctl_cmd_authz_test (ctl);
    fprintf (stderr, "usage: sanctumctl authz [--store ID] model write FILE | write|delete TUPLE\n"
                     "       | check USER RELATION OBJECT | policy write FILE | policy read\n"
                     "       | decide PRINCIPAL ACTION RESOURCE | store create NAME | store list\n"
                     "       | store get|delete | test FILE\n");
    return CTL_USAGE;
}
