/*  ctl_vault.c — `sanctumctl vault ...` and `sanctumctl sandbox ...`.

      vault connect NAME --kind K --scopes S[,S...] [--secret-file F] [--audience A]
                    [--ttl-cap N] [--approval] [--token-endpoint URL] [--mode local|oauth|auth0]
                    [--client-id ID] [--client-secret-file F] [--revocation-endpoint URL]
                    [--auth0-connection C] [--login-hint H]
      vault disconnect NAME
      vault connections
      vault leases [--run RUN]        {"leases": [{lease_id, run, node, connection, scopes,
                                       ttl, state, issued_at, expires_at}]} with --json
      vault revoke LEASE | --run RUN
      vault rotate-key [master|signing]
      vault jwks
      sandbox rows SHEET              the rows the sandbox's Sheets API stored

    The secret is read from the file (its last newline dropped) and goes
    to the vault-broker over the bus (CURVE); it is wiped here once sent
    and never printed. Exit codes as ctl.h says.
*/
#include "ctl.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*  One request: print the reply (JSON, or people's text by fmt_fn), or
    the error. Returns the exit code; *out (may be NULL) gets the body. */
static int
s_call (ctl_t *ctl, const char *service, const char *type, json_t *body, json_t **out)
{
    bus_client_t *client = ctl_client (ctl, service);
    if (!client) {
        json_decref (body);
        return CTL_ERROR;
    }
    proto_msg_t *reply = NULL;
    int crc = bus_client_call (client, type, body, NULL, &reply);
    json_decref (body);
    int rc = CTL_OK;
    if (crc) {
        ctl_print_call_error (ctl, service, client, crc, NULL, 0);
        rc = CTL_ERROR;
    }
    else if (!reply->ok) {
        ctl_print_error (ctl, reply);
        if (streq (type, "vault.revoke")) {
            ctl_print_hint (ctl, reply, "not_found", "`sanctumctl vault leases` lists the leases");
            ctl_print_hint (ctl, reply, "invalid", "revoke takes a LEASE id as `sanctumctl vault leases` lists "
                                                   "them, or --run RUN (26 characters, as `sanctumctl run list` "
                                                   "shows)");
        }
        else if (streq (type, "vault.disconnect"))
            ctl_print_hint (ctl, reply, "not_found", "`sanctumctl vault connections` lists the connections");
        rc = ctl_error_exit (reply);
    }
    else if (out)
        *out = json_incref (reply->body);
    proto_msg_destroy (&reply);
    bus_client_destroy (&client);
    return rc;
}

/*  A list of scopes from "a,b c". */
static json_t *
s_scope_list (const char *text)
{
    json_t *list = json_array ();
    char *copy = strdup (text), *save = NULL;
    for (char *t = strtok_r (copy, ", ", &save); t; t = strtok_r (NULL, ", ", &save))
        json_array_append_new (list, json_string (t));
    free (copy);
    return list;
}

/*  The secret in path (at most 8 KiB, the last newline dropped) into
    sodium memory; NULL after saying why. */
static char *
s_read_secret (const char *path, size_t *len)
{
    if (sodium_init () < 0)
        return NULL;
    FILE *f = fopen (path, "rb");
    if (!f) {
        fprintf (stderr, "sanctumctl: cannot open the secret file %s: %s\n", path, strerror (errno));
        return NULL;
    }
    char *buf = sodium_malloc (8193);
    size_t n = buf ? fread (buf, 1, 8193, f) : 0;
    fclose (f);
    if (!buf || n == 0 || n > 8192) {
        fprintf (stderr, "sanctumctl: %s: the secret must be 1..8192 bytes\n", path);
        if (buf)
            sodium_free (buf);
        return NULL;
    }
    while (n && (buf [n - 1] == '\n' || buf [n - 1] == '\r'))
        n--;
    buf [n] = 0;
    *len = n;
    return buf;
}

static int
s_connect (ctl_t *ctl)
{
    const char *name = ctl->argc > 1 ? ctl->argv [1] : NULL, *kind = NULL, *scopes = NULL, *file = NULL;
    const char *cfile = NULL;
    json_t *body = json_object ();
    for (int i = 2; i < ctl->argc; i++) {
        const char *a = ctl->argv [i], *v = i + 1 < ctl->argc ? ctl->argv [i + 1] : NULL;
        if (streq (a, "--approval"))
            json_object_set_new (body, "approval", json_true ());
        else if (!v)
            goto usage;
        else if (streq (a, "--kind"))
            kind = v, i++;
        else if (streq (a, "--scopes"))
            scopes = v, i++;
        else if (streq (a, "--secret-file"))
            file = v, i++;
        else if (streq (a, "--audience"))
            json_object_set_new (body, "audience", json_string (v)), i++;
        else if (streq (a, "--token-endpoint"))
            json_object_set_new (body, "token_endpoint", json_string (v)), i++;
        else if (streq (a, "--client-id"))
            json_object_set_new (body, "client_id", json_string (v)), i++;
        else if (streq (a, "--revocation-endpoint"))
            json_object_set_new (body, "revocation_endpoint", json_string (v)), i++;
        else if (streq (a, "--auth0-connection"))
            json_object_set_new (body, "auth0_connection", json_string (v)), i++;
        else if (streq (a, "--login-hint"))
            json_object_set_new (body, "login_hint", json_string (v)), i++;
        else if (streq (a, "--client-secret-file"))
            cfile = v, i++;
        else if (streq (a, "--mode"))
            json_object_set_new (body, "mode", json_string (v)), i++;
        else if (streq (a, "--ttl-cap"))
            json_object_set_new (body, "ttl_cap", json_integer (atoll (v))), i++;
        else
            goto usage;
    }
    if (!name || !kind || !scopes)
        goto usage;
    json_object_set_new (body, "name", json_string (name));
    json_object_set_new (body, "kind", json_string (kind));
    json_object_set_new (body, "scopes", s_scope_list (scopes));
    const char *files [2] = { file, cfile }, *fields [2] = { "secret", "client_secret" };
    for (int f = 0; f < 2; f++) {
        if (!files [f])
            continue;
        size_t slen = 0;
        char *secret = s_read_secret (files [f], &slen);
        json_t *s = secret ? json_stringn (secret, slen) : NULL;
        bool read = secret != NULL;         /* else s_read_secret said why */
        if (secret)
            sodium_free (secret);
        if (!s) {
            if (read)
                fprintf (stderr, "sanctumctl: %s: the secret must be UTF-8 text\n", files [f]);
            json_decref (body);
            return CTL_ERROR;
        }
        json_object_set_new (body, fields [f], s);
    }
    json_t *out = NULL;
    int rc = s_call (ctl, "vault-broker", "vault.connect", body, &out);
    if (rc == CTL_OK) {
        if (ctl->json)
            ctl_print_json (out, true);
        else
            printf ("connected %s (%s), sealed under master key %lld\n", name, kind,
                    (long long) json_integer_value (json_object_get (out, "key_id")));
    }
    json_decref (out);
    return rc;
usage:
    json_decref (body);
    fprintf (stderr, "usage: sanctumctl vault connect NAME --kind google-sheets|gmail|dropbox|oauth|local "
                     "--scopes S[,S...] [--secret-file F] [--audience A] [--ttl-cap N] [--approval] "
                     "[--token-endpoint URL] [--mode local|oauth|auth0] [--client-id ID] "
                     "[--client-secret-file F] [--revocation-endpoint URL] [--auth0-connection C] "
                     "[--login-hint H]\n");
    return CTL_USAGE;
}

static void
s_time (char *out, size_t len, json_int_t t)
{
    time_t tt = (time_t) t;
    struct tm tm;
    gmtime_r (&tt, &tm);
    strftime (out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int
s_leases (ctl_t *ctl)
{
    json_t *body = json_object ();
    for (int i = 1; i < ctl->argc; i++) {
        if (streq (ctl->argv [i], "--run") && i + 1 < ctl->argc)
            json_object_set_new (body, "run", json_string (ctl->argv [++i]));
        else {
            json_decref (body);
            fprintf (stderr, "usage: sanctumctl vault leases [--run RUN] [--json]\n");
            return CTL_USAGE;
        }
    }
    json_t *out = NULL;
    int rc = s_call (ctl, "vault-broker", "vault.leases", body, &out);
    if (rc == CTL_OK && ctl->json)
        ctl_print_json (out, true);
    else if (rc == CTL_OK) {
        printf ("%-38s %-26s %-16s %-16s %-8s %5s %-20s %s\n", "LEASE", "RUN", "NODE", "CONNECTION", "STATE",
                "TTL", "EXPIRES", "SCOPES");
        size_t i, j;
        json_t *l, *s;
        json_array_foreach (json_object_get (out, "leases"), i, l) {
            char exp [32];
            s_time (exp, sizeof exp, json_integer_value (json_object_get (l, "expires_at")));
            printf ("%-38s %-26s %-16s %-16s %-8s %5lld %-20s", json_string_value (json_object_get (l, "lease_id")),
                    json_string_value (json_object_get (l, "run")), json_string_value (json_object_get (l, "node")),
                    json_string_value (json_object_get (l, "connection")),
                    json_string_value (json_object_get (l, "state")),
                    (long long) json_integer_value (json_object_get (l, "ttl")), exp);
            json_array_foreach (json_object_get (l, "scopes"), j, s)
                printf ("%s%s", j ? "," : " ", json_string_value (s));
            printf ("\n");
        }
    }
    json_decref (out);
    return rc;
}

static int
s_connections (ctl_t *ctl)
{
    json_t *out = NULL;
    int rc = s_call (ctl, "vault-broker", "vault.connections", json_object (), &out);
    if (rc == CTL_OK && ctl->json)
        ctl_print_json (out, true);
    else if (rc == CTL_OK) {
        printf ("%-20s %-14s %-6s %-7s %-8s %-32s %s\n", "NAME", "KIND", "MODE", "TTL_CAP", "APPROVAL", "AUDIENCE", "SCOPES");
        size_t i, j;
        json_t *c, *s;
        json_array_foreach (json_object_get (out, "connections"), i, c) {
            if (json_object_get (c, "error")) {
                printf ("%-20s error: %s\n", json_string_value (json_object_get (c, "name")),
                        json_string_value (json_object_get (c, "error")));
                continue;
            }
            printf ("%-20s %-14s %-6s %-7lld %-8s %-32s", json_string_value (json_object_get (c, "name")),
                    json_string_value (json_object_get (c, "kind")), json_string_value (json_object_get (c, "mode")),
                    (long long) json_integer_value (json_object_get (c, "ttl_cap")),
                    json_is_true (json_object_get (c, "approval")) ? "yes" : "no",
                    json_string_value (json_object_get (c, "audience")));
            json_array_foreach (json_object_get (c, "scopes"), j, s)
                printf ("%s%s", j ? "," : " ", json_string_value (s));
            printf ("\n");
        }
    }
    json_decref (out);
    return rc;
}

/*  Print a reply as JSON (compact with --json, else pretty). */
static int
s_simple (ctl_t *ctl, const char *service, const char *type, json_t *body)
{
    json_t *out = NULL;
    int rc = s_call (ctl, service, type, body, &out);
    if (rc == CTL_OK)
        ctl_print_json (out, ctl->json);
    json_decref (out);
    return rc;
}

/*  vault disconnect NAME: "disconnected NAME" (the reply with --json). */
static int
s_disconnect (ctl_t *ctl, const char *name)
{
    json_t *out = NULL;
    int rc = s_call (ctl, "vault-broker", "vault.disconnect", json_pack ("{s:s}", "name", name), &out);
    if (rc == CTL_OK && ctl->json)
        ctl_print_json (out, true);
    else if (rc == CTL_OK)
        printf ("disconnected %s (leases already issued on it run to their end)\n", name);
    json_decref (out);
    return rc;
}

/*  vault revoke LEASE | --run RUN: the leases revoked, one a line, or
    that none was still active (the reply with --json). */
static int
s_revoke (ctl_t *ctl, const char *field, const char *value)
{
    json_t *out = NULL;
    int rc = s_call (ctl, "vault-broker", "vault.revoke", json_pack ("{s:s}", field, value), &out);
    json_t *revoked = json_object_get (out, "revoked");
    if (rc == CTL_OK && ctl->json)
        ctl_print_json (out, true);
    else if (rc == CTL_OK && json_array_size (revoked) == 0)
        printf ("nothing to revoke: %s %s has no active lease\n", streq (field, "run") ? "run" : "lease", value);
    else if (rc == CTL_OK) {
        size_t i;
        json_t *l;
        json_array_foreach (revoked, i, l)
            printf ("revoked %s\n", json_string_value (l));
    }
    json_decref (out);
    return rc;
}

/*  vault rotate-key [master|signing]: the new key's id (the reply with
    --json). */
static int
s_rotate_key (ctl_t *ctl, const char *key)
{
    if (!streq (key, "master") && !streq (key, "signing")) {
        fprintf (stderr, "sanctumctl: vault rotate-key: the key is master (the default) or signing, not '%s'\n",
                 key);
        return CTL_USAGE;
    }
    json_t *out = NULL;
    int rc = s_call (ctl, "vault-broker", "vault.rotate_key", json_pack ("{s:s}", "key", key), &out);
    if (rc == CTL_OK && ctl->json)
        ctl_print_json (out, true);
    else if (rc == CTL_OK && streq (key, "master"))
        printf ("new master key %lld: it seals from now on; older records move to it in the background\n",
                (long long) json_integer_value (json_object_get (out, "key_id")));
    else if (rc == CTL_OK) {
        const char *retired = json_string_value (json_object_get (out, "retired"));
        printf ("new signing key %s", json_string_value (json_object_get (out, "kid")) ?: "?");
        if (retired && *retired)
            printf ("; the old one, %s, stays in the JWKS until its tokens have expired", retired);
        printf ("\n");
    }
    json_decref (out);
    return rc;
}

int
ctl_cmd_vault (ctl_t *ctl)
{
    const char *sub = ctl->argc > 0 ? ctl->argv [0] : "";
    if (streq (sub, "connect"))
        return s_connect (ctl);
    if (streq (sub, "disconnect") && ctl->argc == 2)
        return s_disconnect (ctl, ctl->argv [1]);
    if (streq (sub, "connections") && ctl->argc == 1)
        return s_connections (ctl);
    if (streq (sub, "leases"))
        return s_leases (ctl);
    if (streq (sub, "revoke") && ctl->argc == 2)
        return s_revoke (ctl, "lease_id", ctl->argv [1]);
    if (streq (sub, "revoke") && ctl->argc == 3 && streq (ctl->argv [1], "--run"))
        return s_revoke (ctl, "run", ctl->argv [2]);
    if (streq (sub, "rotate-key") && ctl->argc <= 2)
        return s_rotate_key (ctl, ctl->argc == 2 ? ctl->argv [1] : "master");
    if (streq (sub, "jwks") && ctl->argc == 1)
        return s_simple (ctl, "vault-broker", "vault.jwks", json_object ());
    fprintf (stderr, "usage: sanctumctl vault connect NAME --kind K --scopes S,... [--secret-file F] [...]\n"
                     "       sanctumctl vault disconnect NAME | connections | leases [--run RUN]\n"
                     "       sanctumctl vault revoke LEASE | revoke --run RUN | rotate-key [master|signing] | jwks\n");
    return CTL_USAGE;
}

/*  sandbox rows SHEET: one row a line, its cells tab-separated (text as
    is, other values as JSON); the reply with --json. */
static int
s_rows (ctl_t *ctl, const char *sheet)
{
    json_t *out = NULL;
    int rc = s_call (ctl, "sandbox", "sandbox.rows", json_pack ("{s:s}", "sheet", sheet), &out);
    json_t *rows = json_object_get (out, "rows");
    if (rc == CTL_OK && ctl->json)
        ctl_print_json (out, true);
    else if (rc == CTL_OK && json_array_size (rows) == 0)
        printf ("no rows in sheet %s (the procurement workflow writes to sheet erp)\n", sheet);
    else if (rc == CTL_OK) {
        size_t i, j;
        json_t *row, *cell;
        json_array_foreach (rows, i, row) {
            json_array_foreach (row, j, cell) {
                char *text = json_is_string (cell) ? NULL : json_dumps (cell, JSON_COMPACT | JSON_ENCODE_ANY);
                printf ("%s%s", j ? "\t" : "", json_is_string (cell) ? json_string_value (cell) : text ?: "?");
                free (text);
            }
            printf ("\n");
        }
    }
    json_decref (out);
    return rc;
}

int
ctl_cmd_sandbox (ctl_t *ctl)
{
    if (ctl->argc == 2 && streq (ctl->argv [0], "rows"))
        return s_rows (ctl, ctl->argv [1]);
    fprintf (stderr, "usage: sanctumctl sandbox rows SHEET [--json]\n");
    return CTL_USAGE;
}
