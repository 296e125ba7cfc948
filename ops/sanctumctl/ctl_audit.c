/*  ctl_audit.c — `sanctumctl audit ...`: the audit log's signed tree head
    and its proofs, fetched over the bus and checked here, with the same
    RFC 9162 verifiers and Ed25519 check a receipt verifier uses
    (audit_merkle.h, audit_sign.h), so a lying or broken auditor is caught.

      audit head [--jwks FILE]                     the signed head, its signature checked
      audit proof INDEX [--size N] [--jwks FILE]   entry INDEX: its bytes hash to the leaf, the
                                                   leaf is in the signed head of size N (default: now)
      audit consistency OLD [NEW] [--jwks FILE]    the signed heads of OLD and NEW (default: now)
                                                   entries: the older is a prefix of the newer
      audit jwks                                   the auditor's public keys (JWKS), for verifiers

    And `sanctumctl receipt ...` (audit_receipt.h says what a receipt is):
      receipt get RUN                              the run's receipt, the compact JWS, on stdout
      receipt verify FILE [--jwks FILE] [--hmac-key FILE]
                                                   offline: the JWS signature, the HMAC tag (with
                                                   the key), the signed head, every entry's
                                                   inclusion, the summary against the entries,
                                                   every approval signature (the ciba-broker's
                                                   verifier, ciba_decision.h); exit 0 or 3
      receipt jwks [--out FILE]                    the JWKS to verify receipts with elsewhere
      receipt gantt RUN                            audit.gantt, as JSON

    Keys: from --jwks FILE (a JWKS kept from before: nothing is trusted from
    the auditor), else audit.jwks (trust on first use, said so). Exit 0 when
    every check holds, 3 when one fails (saying which), 1 on errors.
*/
#include "ctl.h"
#include "audit_merkle.h"
#include "audit_receipt.h"
#include "audit_sign.h"
#include "bus_keys.h"
#include "ciba_decision.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    ctl_t *ctl;
    bus_client_t *client;
    json_t *jwks;                 /* the keys heads are checked with */
    bool keys_from_auditor;
    json_t *checks;               /* what was checked: ["...", ...] */
    char failed [512];            /* the first failed check, or "" */
} s_audit_t;

/*  One request to the auditor: the reply body (caller decrefs), or NULL
    after saying why. *rc receives the exit code. */
static json_t *
s_call (s_audit_t *self, const char *type, json_t *body, int *rc)
{
    proto_msg_t *reply = NULL;
    json_t *out = NULL;
    int crc = bus_client_call (self->client, type, body, NULL, &reply);
    if (crc) {
        fprintf (stderr, "sanctumctl: auditor: %s\n", bus_strerror (crc));
        *rc = CTL_ERROR;
    }
    else if (!reply->ok) {
        ctl_print_error (self->ctl, reply);
        if (streq (type, "audit.receipt") || streq (type, "audit.gantt")) {
            ctl_print_hint (self->ctl, reply, "invalid", "RUN is a run id (26 characters, as `sanctumctl run "
                                                         "start` prints it); `sanctumctl run list` lists the runs");
            ctl_print_hint (self->ctl, reply, "not_found", "`sanctumctl run list` lists the runs");
        }
        *rc = ctl_error_exit (reply);
    }
    else
        out = json_incref (reply->body);
    proto_msg_destroy (&reply);
    json_decref (body);
    return out;
}

static void
s_check (s_audit_t *self, bool ok, const char *fmt, ...)
    __attribute__((format (printf, 3, 4)));

/*  Record a check and its result; the first failure is kept. */
static void
s_check (s_audit_t *self, bool ok, const char *fmt, ...)
{
    char text [512];
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (text, sizeof text, fmt, ap);
    va_end (ap);
    json_array_append_new (self->checks, json_pack ("{s:s, s:b}", "check", text, "ok", ok));
    if (!ok && !*self->failed)
        snprintf (self->failed, sizeof self->failed, "%s", text);
}

static uint64_t
s_u64 (json_t *obj, const char *key)
{
    return (uint64_t) json_integer_value (json_object_get (obj, key));
}

/*  A hex hash member of obj into out; false when missing or malformed. */
static bool
s_hash (json_t *obj, const char *key, audit_hash_t out)
{
    return audit_hash_from_hex (out, json_string_value (json_object_get (obj, key))) == 0;
}

/*  Check a signed head's signature with the key its kid names. */
static void
s_check_head (s_audit_t *self, json_t *head)
{
    audit_head_t h = { .size = s_u64 (head, "size"), .time = json_integer_value (json_object_get (head, "time")) };
    const char *origin = json_string_value (json_object_get (head, "origin"));
    const char *kid = json_string_value (json_object_get (head, "kid"));
    const char *sig = json_string_value (json_object_get (head, "signature"));
    snprintf (h.origin, sizeof h.origin, "%s", origin ? origin : "");
    size_t sig_len = 0;
    bool ok = origin && kid && sig && s_hash (head, "root", h.root)
           && sodium_base642bin (h.signature, sizeof h.signature, sig, strlen (sig), NULL, &sig_len, NULL,
                                 sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0 && sig_len == AUDIT_SIG_LEN;
    const uint8_t *pk = NULL;
    uint8_t key [AUDIT_PK_LEN];
    size_t i;
    json_t *k;
    json_array_foreach (json_object_get (self->jwks, "keys"), i, k) {
        const char *x = json_string_value (json_object_get (k, "x"));
        size_t n = 0;
        if (ok && x && streq (json_string_value (json_object_get (k, "kid")) ?: "", kid)
            && sodium_base642bin (key, sizeof key, x, strlen (x), NULL, &n, NULL,
                                  sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0 && n == AUDIT_PK_LEN)
            pk = key;
    }
    if (!ok)
        s_check (self, false, "tree head of size %llu is well-formed", (unsigned long long) h.size);
    else if (!pk)
        s_check (self, false, "tree head of size %llu: key %s is in the JWKS", (unsigned long long) h.size, kid);
    else {
        char kid_of_key [AUDIT_KID_LEN + 1];
        audit_kid (kid_of_key, pk);
        s_check (self, streq (kid_of_key, kid), "key %s: its kid is its RFC 7638 thumbprint", kid);
        s_check (self, audit_head_verify (&h, pk) == 0, "tree head of size %llu: Ed25519 signature by %s",
                 (unsigned long long) h.size, kid);
    }
}

/*  Print what was checked; the exit code. */
static int
s_report (s_audit_t *self, json_t *result)
{
    bool ok = !*self->failed;
    json_object_set_new (result, "verified", json_boolean (ok));
    json_object_set (result, "checks", self->checks);
    if (!ok)
        json_object_set_new (result, "failed", json_string (self->failed));
    if (self->ctl->json)
        ctl_print_json (result, true);
    else {
        size_t i;
        json_t *c;
        json_array_foreach (self->checks, i, c)
            printf ("%s %s\n", json_is_true (json_object_get (c, "ok")) ? "ok    " : "FAILED",
                    json_string_value (json_object_get (c, "check")));
        if (self->keys_from_auditor)
            printf ("note: the key came from the auditor itself (audit.jwks); pass --jwks FILE to check against "
                    "a key kept from before\n");
        if (ok)
            printf ("verified\n");
        else
            printf ("NOT VERIFIED: %s\n", self->failed);
    }
    json_decref (result);
    return ok ? CTL_OK : CTL_DENIED;
}

static int
s_head (s_audit_t *self, uint64_t size, bool given, json_t **head_out)
{
    int rc = CTL_OK;
    json_t *body = given ? json_pack ("{s:I}", "size", (json_int_t) size) : json_object ();
    json_t *head = s_call (self, "audit.head", body, &rc);
    if (head)
        s_check_head (self, head);
    *head_out = head;
    return rc;
}

static int
s_cmd_head (s_audit_t *self)
{
    json_t *head = NULL;
    int rc = s_head (self, 0, false, &head);
    if (!head)
        return rc;
    return s_report (self, json_pack ("{s:o}", "head", head));
}

static int
s_cmd_proof (s_audit_t *self, uint64_t index, uint64_t size, bool sized)
{
    json_t *head = NULL;
    int rc = s_head (self, size, sized, &head);
    if (!head)
        return rc;
    size = s_u64 (head, "size");
    json_t *entry = s_call (self, "audit.entry", json_pack ("{s:I}", "index", (json_int_t) index), &rc);
    json_t *proof = entry ? s_call (self, "audit.inclusion", json_pack ("{s:I, s:I}", "index", (json_int_t) index,
                                                                       "size", (json_int_t) size), &rc) : NULL;
    if (!proof) {
        json_decref (head);
        json_decref (entry);
        return rc;
    }
    const char *bytes = json_string_value (json_object_get (entry, "entry"));
    audit_hash_t leaf, root, given;
    audit_leaf_hash (leaf, bytes ? bytes : "", bytes ? strlen (bytes) : 0);
    s_check (self, s_hash (proof, "leaf_hash", given) && sodium_memcmp (leaf, given, AUDIT_HASH_LEN) == 0,
             "entry %llu: its bytes hash to the leaf the proof is for", (unsigned long long) index);
    json_t *path = json_object_get (proof, "path");
    size_t n = json_array_size (path);
    audit_hash_t hashes [AUDIT_PROOF_MAX];
    bool well = n <= AUDIT_PROOF_MAX && s_hash (head, "root", root);
    for (size_t i = 0; well && i < n; i++)
        well = audit_hash_from_hex (hashes [i], json_string_value (json_array_get (path, i))) == 0;
    s_check (self, well && audit_verify_inclusion (index, size, leaf, hashes, n, root) == 0,
             "entry %llu is in the signed tree of %llu entries (RFC 9162 inclusion, %zu hashes)",
             (unsigned long long) index, (unsigned long long) size, n);
    return s_report (self, json_pack ("{s:o, s:o, s:o}", "head", head, "entry", entry, "proof", proof));
}

static int
s_cmd_consistency (s_audit_t *self, uint64_t old_size, uint64_t new_size, bool sized)
{
    json_t *old_head = NULL, *new_head = NULL;
    int rc = s_head (self, new_size, sized, &new_head);
    if (!new_head)
        return rc;
    new_size = s_u64 (new_head, "size");
    rc = s_head (self, old_size, true, &old_head);
    json_t *proof = old_head ? s_call (self, "audit.consistency", json_pack ("{s:I, s:I}", "old_size",
                                       (json_int_t) old_size, "new_size", (json_int_t) new_size), &rc) : NULL;
    if (!proof) {
        json_decref (old_head);
        json_decref (new_head);
        return rc;
    }
    audit_hash_t r1, r2, hashes [AUDIT_PROOF_MAX];
    json_t *path = json_object_get (proof, "path");
    size_t n = json_array_size (path);
    bool well = n <= AUDIT_PROOF_MAX && s_hash (old_head, "root", r1) && s_hash (new_head, "root", r2);
    for (size_t i = 0; well && i < n; i++)
        well = audit_hash_from_hex (hashes [i], json_string_value (json_array_get (path, i))) == 0;
    s_check (self, well && audit_verify_consistency (old_size, new_size, r1, r2, hashes, n) == 0,
             "the signed tree of %llu entries is a prefix of the signed tree of %llu (RFC 9162 consistency, "
             "%zu hashes)", (unsigned long long) old_size, (unsigned long long) new_size, n);
    return s_report (self, json_pack ("{s:o, s:o, s:o}", "old_head", old_head, "new_head", new_head,
                                      "proof", proof));
}

/*  A non-negative integer argument, or false. */
static bool
s_number (const char *text, uint64_t *out)
{
    char *end = NULL;
    if (!text || !*text || *text == '-')
        return false;
    unsigned long long v = strtoull (text, &end, 10);
    *out = v;
    return *end == 0 && v <= (unsigned long long) INT64_MAX;
}

int
ctl_cmd_audit (ctl_t *ctl)
{
    static const char *usage =
        "usage: sanctumctl audit head [--jwks FILE]\n"
        "       sanctumctl audit proof INDEX [--size N] [--jwks FILE]\n"
        "       sanctumctl audit consistency OLD [NEW] [--jwks FILE]\n"
        "       sanctumctl audit jwks\n";
    s_audit_t self = { .ctl = ctl, .checks = json_array () };
    const char *jwks_file = NULL;
    uint64_t nums [2] = { 0 }, size = 0;
    int nnums = 0, rc = CTL_USAGE;
    bool sized = false;
    const char *sub = ctl->argc > 0 ? ctl->argv [0] : "";
    for (int i = 1; i < ctl->argc; i++) {
        if (streq (ctl->argv [i], "--jwks") && i + 1 < ctl->argc)
            jwks_file = ctl->argv [++i];
        else if (streq (ctl->argv [i], "--size") && i + 1 < ctl->argc && s_number (ctl->argv [i + 1], &size)) {
            sized = true;
            i++;
        }
        else if (nnums < 2 && s_number (ctl->argv [i], &nums [nnums]))
            nnums++;
        else
            goto usage;
    }
    bool known = (streq (sub, "head") && nnums == 0 && !sized) || (streq (sub, "proof") && nnums == 1)
              || (streq (sub, "consistency") && nnums >= 1 && !sized) || (streq (sub, "jwks") && nnums == 0
                                                                          && !sized && !jwks_file);
    if (!known)
        goto usage;
    self.client = ctl_client (ctl, "auditor");
    rc = CTL_ERROR;
    if (!self.client)
        goto done;
    if (jwks_file) {
        json_error_t jerr;
        self.jwks = json_load_file (jwks_file, JSON_REJECT_DUPLICATES, &jerr);
        if (!json_is_array (json_object_get (self.jwks, "keys"))) {
            fprintf (stderr, "sanctumctl: %s is not a JWKS: %s\n", jwks_file, jerr.text);
            goto done;
        }
    }
    else {
        self.jwks = s_call (&self, "audit.jwks", json_object (), &rc);
        self.keys_from_auditor = true;
        if (!self.jwks)
            goto done;
    }
    if (sodium_init () < 0)
        goto done;
    if (streq (sub, "jwks")) {
        ctl_print_json (self.jwks, ctl->json);
        rc = CTL_OK;
    }
    else if (streq (sub, "head"))
        rc = s_cmd_head (&self);
    else if (streq (sub, "proof"))
        rc = s_cmd_proof (&self, nums [0], size, sized);
    else
        rc = s_cmd_consistency (&self, nums [0], nums [1], nnums == 2);
    goto done;
usage:
    fputs (usage, stderr);
done:
    bus_client_destroy (&self.client);
    json_decref (self.jwks);
    json_decref (self.checks);
    return rc;
}

/* --- sanctumctl receipt ------------------------------------------------- */

/*  The whole of a file ("-": stdin), NUL-terminated, malloc'd; NULL on
    error (said). At most max bytes. */
static char *
s_slurp (const char *path, size_t max, size_t *len)
{
    FILE *f = streq (path, "-") ? stdin : fopen (path, "rb");
    if (!f) {
        fprintf (stderr, "sanctumctl: cannot open %s: %s\n", path, strerror (errno));
        return NULL;
    }
    char *buf = malloc (max + 2);
    size_t n = buf ? fread (buf, 1, max + 1, f) : 0;
    if (f != stdin)
        fclose (f);
    if (!buf || n > max) {
        fprintf (stderr, "sanctumctl: %s: %s\n", path, buf ? "too large" : "out of memory");
        free (buf);
        return NULL;
    }
    buf [n] = 0;
    *len = n;
    return buf;
}

/*  The receipt in text: a compact JWS (whitespace around it dropped), or
    the audit.receipt reply as JSON (its "jws"). malloc'd, or NULL. */
static char *
s_receipt_text (char *text)
{
    while (*text && strchr (" \t\r\n", *text))
        text++;
    if (*text == '{') {
        json_t *obj = json_loads (text, 0, NULL);
        const char *jws = json_string_value (json_object_get (obj, "jws"));
        char *out = jws ? strdup (jws) : NULL;
        json_decref (obj);
        return out;
    }
    size_t n = strlen (text);
    while (n && strchr (" \t\r\n", text [n - 1]))
        n--;
    return strndup (text, n);
}

/*  An HMAC key file: 32 bytes, or 64 hex digits (a newline after them
    allowed). */
static int
s_hmac_key (const char *path, uint8_t key [32])
{
    size_t len = 0, got = 0;
    char *text = s_slurp (path, 4096, &len);
    if (!text)
        return -1;
    int rc = -1;
    if (len == 32) {
        memcpy (key, text, 32);
        rc = 0;
    }
    else if (sodium_hex2bin (key, 32, text, len, " \r\n", &got, NULL) == 0 && got == 32)
        rc = 0;
    else
        fprintf (stderr, "sanctumctl: %s is not an HMAC key (32 bytes, or 64 hex digits)\n", path);
    sodium_memzero (text, len);
    free (text);
    return rc;
}

/*  Record a receipt check (audit_receipt_verify's callback). */
static void
s_receipt_check (void *arg, bool ok, const char *what)
{
    s_check (arg, ok, "%s", what);
}

static int
s_cmd_receipt_verify (s_audit_t *self, const char *file, const char *hmac_file)
{
    uint8_t key [32];
    size_t len = 0;
    if (hmac_file && s_hmac_key (hmac_file, key))
        return CTL_ERROR;
    char *raw = s_slurp (file, AUDIT_RECEIPT_MAX + 4096, &len);
    char *jws = raw ? s_receipt_text (raw) : NULL;
    free (raw);
    if (!jws) {
        if (raw)
            fprintf (stderr, "sanctumctl: %s holds no receipt\n", file);
        return CTL_ERROR;
    }
    json_t *payload = NULL;
    int rc = audit_receipt_verify (jws, self->jwks, hmac_file ? key : NULL, ciba_decision_verify,
                                   s_receipt_check, self, &payload);
    sodium_memzero (key, sizeof key);
    free (jws);
    json_t *result = json_pack ("{s:O?, s:O?}", "run", json_object_get (payload, "run"),
                                "state", json_object_get (payload, "state"));
    if (!hmac_file && !self->ctl->json)
        printf ("note: HMAC tag not checked (no --hmac-key FILE: the auditor's <data_dir>/auditor/keys/hmac.key)\n");
    json_decref (payload);
    (void) rc;                          /* the checks say it all */
    return s_report (self, result);
}

int
ctl_cmd_receipt (ctl_t *ctl)
{
    static const char *usage =
        "usage: sanctumctl receipt get RUN                 the run's receipt (compact JWS) on stdout\n"
        "       sanctumctl receipt verify FILE [--jwks FILE] [--hmac-key FILE]\n"
        "                                                  check it offline (FILE: the JWS, or - for stdin)\n"
        "       sanctumctl receipt jwks [--out FILE]       the auditor's public keys (JWKS)\n"
        "       sanctumctl receipt gantt RUN               the run's steps and token lifecycles on one time axis\n";
    s_audit_t self = { .ctl = ctl, .checks = json_array () };
    const char *jwks_file = NULL, *hmac_file = NULL, *out_file = NULL, *arg = NULL;
    const char *sub = ctl->argc > 0 ? ctl->argv [0] : "";
    int rc = CTL_USAGE;
    for (int i = 1; i < ctl->argc; i++) {
        if (streq (ctl->argv [i], "--jwks") && i + 1 < ctl->argc)
            jwks_file = ctl->argv [++i];
        else if (streq (ctl->argv [i], "--hmac-key") && i + 1 < ctl->argc)
            hmac_file = ctl->argv [++i];
        else if (streq (ctl->argv [i], "--out") && i + 1 < ctl->argc)
            out_file = ctl->argv [++i];
        else if (!arg)
            arg = ctl->argv [i];
        else
            goto usage;
    }
    bool verify = streq (sub, "verify") && arg;
    bool known = verify || ((streq (sub, "get") || streq (sub, "gantt")) && arg && !jwks_file && !hmac_file
                            && !out_file)
              || (streq (sub, "jwks") && !arg && !jwks_file && !hmac_file);
    if (!known)
        goto usage;
    rc = CTL_ERROR;
    if (sodium_init () < 0)
        goto done;
    if (jwks_file) {
        json_error_t jerr;
        self.jwks = json_load_file (jwks_file, JSON_REJECT_DUPLICATES, &jerr);
        if (!json_is_array (json_object_get (self.jwks, "keys"))) {
            fprintf (stderr, "sanctumctl: %s is not a JWKS: %s\n", jwks_file, jerr.text);
            goto done;
        }
    }
    else {
        /* offline verify skipped the key at start: load it to fetch the JWKS */
        if (!ctl->cert)
            ctl->cert = bus_keys_load (bus_config_str (ctl->config, "sanctum", "keys_dir"), ctl->key_name, false);
        if (!ctl->cert) {
            fprintf (stderr, "sanctumctl: no client key to ask the auditor with; pass --jwks FILE to verify "
                             "offline\n");
            goto done;
        }
        self.client = ctl_client (ctl, "auditor");
        if (!self.client)
            goto done;
    }
    if (verify) {
        if (!jwks_file) {
            self.jwks = s_call (&self, "audit.jwks", json_object (), &rc);
            self.keys_from_auditor = true;
            if (!self.jwks)
                goto done;
        }
        rc = s_cmd_receipt_verify (&self, arg, hmac_file);
    }
    else if (streq (sub, "jwks")) {
        json_t *jwks = s_call (&self, "audit.jwks", json_object (), &rc);
        if (!jwks)
            goto done;
        rc = CTL_OK;
        if (out_file) {
            if (json_dump_file (jwks, out_file, JSON_INDENT (2) | JSON_SORT_KEYS)) {
                fprintf (stderr, "sanctumctl: cannot write %s\n", out_file);
                rc = CTL_ERROR;
            }
            else if (!ctl->json)
                printf ("wrote %s\n", out_file);
            else
                ctl_print_done (ctl, "");
        }
        else
            ctl_print_json (jwks, ctl->json);
        json_decref (jwks);
    }
    else {
        const char *type = streq (sub, "get") ? "audit.receipt" : "audit.gantt";
        json_t *reply = s_call (&self, type, json_pack ("{s:s}", "run", arg), &rc);
        if (!reply)
            goto done;
        if (streq (sub, "get") && !ctl->json)
            printf ("%s\n", json_string_value (json_object_get (reply, "jws")) ?: "");
        else
            ctl_print_json (reply, ctl->json);
        json_decref (reply);
        rc = CTL_OK;
    }
    goto done;
usage:
    fputs (usage, stderr);
done:
    bus_client_destroy (&self.client);
    json_decref (self.jwks);
    json_decref (self.checks);
    return rc;
}
