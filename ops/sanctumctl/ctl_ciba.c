/*  ctl_ciba.c — approvers' commands (backend `local` of the ciba-broker):

      device enroll USER            an Ed25519 keypair for USER's device: the
                                    secret under KEYS_DIR/devices/USER.device_secret
                                    (0600), the public key registered
                                    (ciba.device.enroll)
      device invite USER [--ttl SECONDS]
                                    a one-time code (default 10 minutes) that
                                    enrols one browser (the dashboard's Device
                                    panel) as USER's device (ciba.device.invite)
      device list [USER]            the registered devices
      device revoke USER            revoke USER's devices (and forget the secret here)
      approvals [--as USER]         pending levels (ciba.list), for USER or all
      approve|deny AUTH_REQ_ID --as USER
                                    sign the decision with USER's device
                                    (ciba_decision.h) and send ciba.decide

    USER is a name ("alice", meaning user:alice) or a principal. Exit 0 on
    success, 1 on errors, 2 on bad usage, 3 when the broker refuses
    (forbidden: a bad signature, a device not enrolled).
*/
#include "ctl.h"
#include "ciba_decision.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <stdlib.h>
#include <unistd.h>

/*  The principal of a USER argument into out. */
static void
s_principal (char *out, size_t len, const char *user)
{
    snprintf (out, len, "%s%s", strchr (user, ':') ? "" : "user:", user);
}

/*  The path of USER's device secret into out; false when the name does not
    make a plain file name. */
static bool
s_secret_path (ctl_t *ctl, const char *principal, char *out, size_t len, bool make_dir)
{
    const char *keys = bus_config_str (ctl->config, "sanctum", "keys_dir");
    char name [300];
    snprintf (name, sizeof name, "%s", principal);
    for (char *p = name; *p; p++) {
        if (*p == ':')
            *p = '_';
        else if (!(isalnum ((unsigned char) *p) || strchr ("._@-+", *p)))
            return false;
    }
    char dir [4096];
    snprintf (dir, sizeof dir, "%s/devices", keys ? keys : ".");
    if (make_dir && mkdir (dir, 0700) && errno != EEXIST)
        return false;
    int n = snprintf (out, len, "%s/%s.device_secret", dir, name);
    return n > 0 && (size_t) n < len;
}

/*  One request to the ciba-broker: the reply body (caller decrefs), or
    NULL after saying why, *rc set. body is stolen. */
static json_t *
s_call (ctl_t *ctl, const char *type, json_t *body, int *rc)
{
    bus_client_t *client = ctl_client (ctl, "ciba-broker");
    proto_msg_t *reply = NULL;
    json_t *out = NULL;
    *rc = CTL_ERROR;
    int crc = client ? bus_client_call (client, type, body, NULL, &reply) : BUS_EINVAL;
    if (client && crc)
        ctl_print_call_error (ctl, "ciba-broker", client, crc, NULL, 0);
    else if (reply && !reply->ok) {
        ctl_print_error (ctl, reply);
        if (streq (type, "ciba.status") || streq (type, "ciba.decide"))
            ctl_print_hint (ctl, reply, "not_found", "`sanctumctl approvals --as USER` lists the requests waiting "
                                                     "for USER, with their AUTH_REQ_IDs");
        *rc = ctl_error_exit (reply);
    }
    else if (reply) {
        out = json_incref (reply->body);
        *rc = CTL_OK;
    }
    proto_msg_destroy (&reply);
    bus_client_destroy (&client);
    json_decref (body);
    return out;
}

static int
s_enroll (ctl_t *ctl, const char *principal)
{
    char path [4200], tmp [4300];
    if (!s_secret_path (ctl, principal, path, sizeof path, true)) {
        fprintf (stderr, "sanctumctl: '%s' does not make a device file name (letters, digits, . _ @ - +)\n",
                 principal);
        return CTL_USAGE;
    }
    uint8_t pk [CIBA_PK_LEN];
    uint8_t *sk = sodium_malloc (CIBA_SK_LEN);
    char *sk_b64 = sodium_malloc (sodium_base64_ENCODED_LEN (CIBA_SK_LEN, sodium_base64_VARIANT_URLSAFE_NO_PADDING));
    int rc = CTL_ERROR;
    if (!sk || !sk_b64)
        goto done;
    crypto_sign_keypair (pk, sk);
    sodium_bin2base64 (sk_b64, sodium_base64_ENCODED_LEN (CIBA_SK_LEN, sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                       sk, CIBA_SK_LEN, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    /* the secret is written (0600) before the key is registered, and kept
       only when the broker took the public key */
    snprintf (tmp, sizeof tmp, "%s.new", path);
    int fd = open (tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write (fd, sk_b64, strlen (sk_b64)) != (ssize_t) strlen (sk_b64) || write (fd, "\n", 1) != 1
        || fsync (fd)) {
        fprintf (stderr, "sanctumctl: cannot write %s: %s\n", tmp, strerror (errno));
        if (fd >= 0)
            close (fd);
        unlink (tmp);
        goto done;
    }
    close (fd);
    char pk_b64 [CIBA_PK_B64_LEN + 1];
    ciba_pk_b64 (pk_b64, pk);
    json_t *reply = s_call (ctl, "ciba.device.enroll",
                            json_pack ("{s:s, s:s}", "approver", principal, "public_key", pk_b64), &rc);
    if (!reply || rename (tmp, path)) {
        if (reply)
            fprintf (stderr, "sanctumctl: cannot keep %s: %s\n", path, strerror (errno));
        unlink (tmp);
        json_decref (reply);
        rc = reply ? CTL_ERROR : rc;
        goto done;
    }
    json_object_set_new (reply, "secret_file", json_string (path));
    if (ctl->json)
        ctl_print_json (reply, true);
    else
        printf ("enrolled a device for %s: %s (secret in %s)\n", principal, pk_b64, path);
    json_decref (reply);
done:
    sodium_free (sk);
    sodium_free (sk_b64);
    return rc;
}

/*  device invite USER [--ttl SECONDS]: a one-time enrolment code for
    USER's browser (ciba.device.invite); printed once, never stored here. */
static int
s_invite (ctl_t *ctl, const char *principal, const char *ttl)
{
    json_t *body = json_pack ("{s:s}", "user", principal);
    if (ttl) {
        char *end = NULL;
        long v = strtol (ttl, &end, 10);
        if (!*ttl || *end || v < 1 || v > 86400) {
            json_decref (body);
            fprintf (stderr, "sanctumctl: --ttl takes 1..86400 seconds\n");
            return CTL_USAGE;
        }
        json_object_set_new (body, "ttl_s", json_integer (v));
    }
    int rc = CTL_ERROR;
    json_t *reply = s_call (ctl, "ciba.device.invite", body, &rc);
    if (!reply)
        return rc;
    if (ctl->json)
        ctl_print_json (reply, true);
    else {
        time_t at = (time_t) (json_integer_value (json_object_get (reply, "expires_at")) / 1000000);
        struct tm tm;
        char when [32];
        strftime (when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r (&at, &tm));
        printf ("invite code for %s (one use, until %s):\n%s\n"
                "paste it into the dashboard's Device panel in the browser to enrol\n", principal, when,
                json_string_value (json_object_get (reply, "code")));
    }
    json_decref (reply);
    return CTL_OK;
}

static int
s_device (ctl_t *ctl)
{
    const char *sub = ctl->argc > 0 ? ctl->argv [0] : "";
    char principal [300] = "";
    if (ctl->argc > 1)
        s_principal (principal, sizeof principal, ctl->argv [1]);
    int rc = CTL_ERROR;
    if (streq (sub, "enroll") && ctl->argc == 2)
        return s_enroll (ctl, principal);
    if (streq (sub, "invite") && (ctl->argc == 2 || (ctl->argc == 4 && streq (ctl->argv [2], "--ttl"))))
        return s_invite (ctl, principal, ctl->argc == 4 ? ctl->argv [3] : NULL);
    if (streq (sub, "list") && ctl->argc <= 2) {
        json_t *body = *principal ? json_pack ("{s:s}", "approver", principal) : json_object ();
        json_t *reply = s_call (ctl, "ciba.device.list", body, &rc);
        if (!reply)
            return rc;
        if (ctl->json)
            ctl_print_json (reply, true);
        else {
            size_t i;
            json_t *d;
            json_array_foreach (json_object_get (reply, "devices"), i, d)
                printf ("%-24s %-8s %s\n", json_string_value (json_object_get (d, "approver")),
                        json_string_value (json_object_get (d, "state")),
                        json_string_value (json_object_get (d, "device")));
            if (json_array_size (json_object_get (reply, "devices")) == 0)
                printf ("no devices%s%s (`sanctumctl device enroll USER` makes one, `device invite USER` "
                        "enrols a browser)\n", *principal ? " of " : "", principal);
        }
        json_decref (reply);
        return CTL_OK;
    }
    if (streq (sub, "revoke") && ctl->argc == 2) {
        json_t *reply = s_call (ctl, "ciba.device.revoke", json_pack ("{s:s}", "approver", principal), &rc);
        if (!reply)
            return rc;
        char path [4200];
        if (s_secret_path (ctl, principal, path, sizeof path, false))
            unlink (path);
        if (ctl->json)
            ctl_print_json (reply, true);
        else
            printf ("revoked %zu device(s) of %s\n", json_array_size (json_object_get (reply, "revoked")),
                    principal);
        json_decref (reply);
        return CTL_OK;
    }
    fputs ("usage: sanctumctl device enroll USER | invite USER [--ttl SECONDS] | list [USER] | revoke USER\n",
           stderr);
    return CTL_USAGE;
}

/*  The value of --as in the arguments from index from, or NULL; the
    count of other arguments into *positional, the first into *first. */
static const char *
s_as (ctl_t *ctl, int from, int *positional, const char **first)
{
    const char *as = NULL;
    *positional = 0;
    for (int i = from; i < ctl->argc; i++) {
        if (streq (ctl->argv [i], "--as") && i + 1 < ctl->argc)
            as = ctl->argv [++i];
        else {
            if (*positional == 0 && first)
                *first = ctl->argv [i];
            (*positional)++;
        }
    }
    return as;
}

static int
s_approvals (ctl_t *ctl)
{
    int positional = 0;
    const char *as = s_as (ctl, 0, &positional, NULL);
    if (positional) {
        fputs ("usage: sanctumctl approvals [--as USER] [--json]\n", stderr);
        return CTL_USAGE;
    }
    char principal [300] = "";
    if (as)
        s_principal (principal, sizeof principal, as);
    json_t *body = json_pack ("{s:s, s:i}", "state", "pending", "limit", 1000);
    if (as)
        json_object_set_new (body, "approver", json_string (principal));
    int rc = CTL_ERROR;
    json_t *reply = s_call (ctl, "ciba.list", body, &rc);
    if (!reply)
        return rc;
    json_t *out = json_array ();
    size_t i, j;
    json_t *a, *lvl;
    json_array_foreach (json_object_get (reply, "approvals"), i, a)
        json_array_foreach (json_object_get (a, "levels"), j, lvl) {
            const char *approver = json_string_value (json_object_get (lvl, "approver"));
            if (!streq (json_string_value (json_object_get (lvl, "state")) ?: "", "pending")
                || json_is_true (json_object_get (lvl, "queued")) || (as && !streq (approver ?: "", principal)))
                continue;
            json_array_append_new (out, json_pack ("{s:O, s:O, s:O, s:O, s:O, s:O, s:O}",
                                                   "auth_req_id", json_object_get (lvl, "auth_req_id"),
                                                   "approval_id", json_object_get (a, "approval_id"),
                                                   "approver", json_object_get (lvl, "approver"),
                                                   "run", json_object_get (a, "run"),
                                                   "node", json_object_get (a, "node"),
                                                   "binding_message", json_object_get (a, "binding_message"),
                                                   "expires_at", json_object_get (a, "expires_at")));
        }
    if (ctl->json) {
        json_t *wrapped = json_pack ("{s:O}", "approvals", out);
        ctl_print_json (wrapped, true);
        json_decref (wrapped);
    }
    else {
        json_array_foreach (out, i, a)
            printf ("%s  %-16s %s\n", json_string_value (json_object_get (a, "auth_req_id")),
                    json_string_value (json_object_get (a, "approver")),
                    json_string_value (json_object_get (a, "binding_message")));
        if (json_array_size (out) == 0)
            printf ("no pending approvals\n");
    }
    json_decref (out);
    json_decref (reply);
    return CTL_OK;
}

/*  Load USER's device secret (sodium_malloc'd, caller sodium_frees) and
    its public key. */
static uint8_t *
s_load_secret (ctl_t *ctl, const char *principal, char pk_b64 [CIBA_PK_B64_LEN + 1])
{
    char path [4200];
    if (!s_secret_path (ctl, principal, path, sizeof path, false))
        return NULL;
    FILE *f = fopen (path, "r");
    char *text = sodium_malloc (200);
    uint8_t *sk = sodium_malloc (CIBA_SK_LEN);
    bool ok = f && text && sk && fgets (text, 200, f);
    if (f)
        fclose (f);
    if (ok) {
        text [strcspn (text, "\r\n")] = 0;
        ok = ciba_b64_decode (sk, CIBA_SK_LEN, text) == 0;
    }
    sodium_free (text);
    if (!ok) {
        fprintf (stderr, "sanctumctl: no device secret for %s in %s (sanctumctl device enroll)\n", principal, path);
        sodium_free (sk);
        return NULL;
    }
    uint8_t pk [CIBA_PK_LEN];
    crypto_sign_ed25519_sk_to_pk (pk, sk);
    ciba_pk_b64 (pk_b64, pk);
    return sk;
}

static int
s_decide (ctl_t *ctl, const char *decision)
{
    int positional = 0;
    const char *auth_req_id = NULL;
    const char *as = s_as (ctl, 0, &positional, &auth_req_id);
    if (positional != 1 || !as) {
        fprintf (stderr, "usage: sanctumctl %s AUTH_REQ_ID --as USER\n", decision);
        return CTL_USAGE;
    }
    char principal [300], pk_b64 [CIBA_PK_B64_LEN + 1], sig [CIBA_SIG_B64_LEN + 1];
    s_principal (principal, sizeof principal, as);
    uint8_t *sk = s_load_secret (ctl, principal, pk_b64);
    if (!sk)
        return CTL_ERROR;
    int rc = CTL_ERROR;
    json_t *status = s_call (ctl, "ciba.status", json_pack ("{s:s}", "auth_req_id", auth_req_id), &rc);
    json_t *reply = NULL;
    if (!status)
        goto done;
    const char *message = json_string_value (json_object_get (status, "binding_message"));
    const char *hash = json_string_value (json_object_get (status, "authorization_details_sha256"));
    if (!message || !hash || ciba_decision_sign (sig, sk, auth_req_id, decision, message, hash)) {
        fprintf (stderr, "sanctumctl: the broker's status has no binding_message or details hash\n");
        rc = CTL_ERROR;
        goto done;
    }
    reply = s_call (ctl, "ciba.decide", json_pack ("{s:s, s:s, s:s, s:s}", "auth_req_id", auth_req_id,
                                                   "decision", decision, "signature", sig, "device", pk_b64), &rc);
    if (!reply && rc == CTL_DENIED && !ctl->json) {
        /* refused: most often a request asked of someone else */
        size_t i;
        json_t *lvl;
        json_array_foreach (json_object_get (status, "levels"), i, lvl) {
            const char *asked = json_string_value (json_object_get (lvl, "approver"));
            if (streq (json_string_value (json_object_get (lvl, "auth_req_id")) ?: "", auth_req_id)
            &&  asked && !streq (asked, principal))
                fprintf (stderr, "  %s is asked of %s, not %s: `sanctumctl approvals --as %s` lists %s's\n",
                         auth_req_id, asked, principal, as, principal);
        }
    }
    if (!reply)
        goto done;
    if (ctl->json)
        ctl_print_json (reply, true);
    else {
        /* a chain goes on to its next level: say who is asked now */
        const char *state = json_string_value (json_object_get (reply, "state")) ?: "?";
        json_t *next = json_array_get (json_object_get (reply, "levels"),
                                       (size_t) json_integer_value (json_object_get (reply, "current")));
        const char *asked = streq (state, "pending") ? json_string_value (json_object_get (next, "approver")) : NULL;
        printf ("%s %s: approval %s is %s%s%s\n", streq (decision, "approve") ? "approved" : "denied", auth_req_id,
                json_string_value (json_object_get (reply, "approval_id")), state,
                asked ? ", asked next of " : "", asked ? asked : "");
    }
done:
    sodium_free (sk);
    json_decref (status);
    json_decref (reply);
    return rc;
}

int
ctl_cmd_device (ctl_t *ctl)
{
    return sodium_init () < 0 ? CTL_ERROR : s_device (ctl);
}

int
ctl_cmd_approvals (ctl_t *ctl)
{
    return s_approvals (ctl);
}

int
ctl_cmd_approve (ctl_t *ctl)
{
    return sodium_init () < 0 ? CTL_ERROR : s_decide (ctl, "approve");
}

int
ctl_cmd_deny (ctl_t *ctl)
{
    return sodium_init () < 0 ? CTL_ERROR : s_decide (ctl, "deny");
}
