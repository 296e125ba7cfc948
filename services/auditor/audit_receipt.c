/*  audit_receipt.c — build and verify run receipts (audit_receipt.h). */
#include "audit_receipt.h"
#include "bus_error.h"
#include "bus_jose.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*  The members of a receipt that the summary gives (audit_runs_summary). */
static const char *const s_summary_members [] = {
    "run", "state", "reason", "ended_at_node", "workflow", "workflow_hash", "input_digest", "principal",
    "started_at", "finished_at", "steps", "pauses", "approvals", "leases", "gaps", NULL
};

static json_t *
s_hex (const audit_hash_t h)
{
    char hex [2 * AUDIT_HASH_LEN + 1];
    audit_hash_hex (hex, h);
    return json_string (hex);
}

/*  Merge two arrays of entries sorted by "index" into one (new). */
static json_t *
s_merge (json_t *a, json_t *b)
{
    json_t *out = json_array ();
    size_t i = 0, j = 0, na = json_array_size (a), nb = json_array_size (b);
    while (out && (i < na || j < nb)) {
        json_t *x = i < na ? json_array_get (a, i) : NULL, *y = j < nb ? json_array_get (b, j) : NULL;
        json_int_t xi = json_integer_value (json_object_get (x, "index"));
        json_int_t yi = json_integer_value (json_object_get (y, "index"));
        if (x && (!y || xi < yi)) {
            json_array_append (out, x);
            i++;
        }
        else if (x && y && xi == yi) {      /* cannot be: a gap names no run */
            json_array_append (out, x);
            i++;
            j++;
        }
        else {
            json_array_append (out, y);
            j++;
        }
    }
    return out;
}

/*  The signed head of the first size entries, at now_us, as a receipt
    carries it. */
static int
s_head (audit_log_t *log, audit_keys_t *keys, bus_txn_t *txn, uint64_t size, int64_t now_us, json_t **out)
{
    audit_head_t head = { .size = size, .time = now_us };
    int rc = audit_log_root (log, txn, size, head.root);
    if (rc == 0)
        rc = audit_head_sign (keys, &head);
    if (rc)
        return rc;
    char *sig = bus_b64url_encode (head.signature, AUDIT_SIG_LEN);
    *out = sig ? json_pack ("{s:s, s:I, s:o, s:I, s:s, s:s}", "origin", head.origin, "size", (json_int_t) size,
                            "root", s_hex (head.root), "time", (json_int_t) head.time, "kid",
                            audit_keys_kid (keys), "signature", sig) : NULL;
    free (sig);
    return *out ? 0 : BUS_ENOMEM;
}

/*  The receipt's entries: the stored bytes and inclusion path of each. */
static int
s_proofs (audit_log_t *log, bus_txn_t *txn, const json_t *all, uint64_t size, json_t *out)
{
    size_t i;
    json_t *e;
    json_array_foreach (all, i, e) {
        uint64_t index = (uint64_t) json_integer_value (json_object_get (e, "index"));
        const void *bytes;
        size_t len, n = 0;
        audit_hash_t path [AUDIT_PROOF_MAX];
        int rc = audit_log_entry (log, txn, index, &bytes, &len);
        if (rc == 0)
            rc = audit_log_inclusion (log, txn, index, size, path, &n);
        if (rc)
            return rc;
        json_t *p = json_array ();
        for (size_t k = 0; p && k < n; k++)
            json_array_append_new (p, s_hex (path [k]));
        if (!p || json_array_append_new (out, json_pack ("{s:I, s:s%, s:o}", "index", (json_int_t) index,
                                                         "entry", (const char *) bytes, len, "path", p)))
            return BUS_ENOMEM;
    }
    return 0;
}

int
audit_receipt_build (audit_runs_t *runs, audit_log_t *log, audit_keys_t *keys, bus_txn_t *txn,
                     const char *run, int64_t now_us, json_t **stored)
{
    *stored = NULL;
    uint64_t size = 0;
    json_t *entries = NULL, *gaps = NULL, *all = NULL, *payload = NULL, *head = NULL, *proofs = NULL;
    char *jws = NULL;
    char hmac [2 * AUDIT_HASH_LEN + 1];
    int rc = audit_log_size (log, txn, &size);
    if (rc == 0)
        rc = audit_runs_entries (runs, log, txn, run, size, &entries, &gaps);
    if (rc == 0 && json_array_size (entries) == 0)
        rc = BUS_ENOTFOUND;
    if (rc)
        goto done;
    all = s_merge (entries, gaps);
    payload = all ? audit_runs_summary (run, all) : NULL;
    proofs = json_array ();
    if (!payload || !proofs) {
        rc = BUS_ENOMEM;
        goto done;
    }
    rc = s_head (log, keys, txn, size, now_us, &head);
    if (rc == 0)
        rc = s_proofs (log, txn, all, size, proofs);
    if (rc)
        goto done;
    json_object_set_new (payload, "receipt", json_string (AUDIT_RECEIPT_TYPE));
    json_object_set_new (payload, "iss", json_string (audit_keys_origin (keys)));
    json_object_set_new (payload, "sub", json_string (run));
    json_object_set_new (payload, "iat", json_integer (now_us / 1000000));
    json_object_set_new (payload, "issued_at", json_integer (now_us));
    json_object_set_new (payload, "head", head);
    head = NULL;
    json_object_set_new (payload, "entries", proofs);
    proofs = NULL;
    rc = audit_jws_sign_tagged (keys, payload, &jws, hmac);
    if (rc == 0 && strlen (jws) > AUDIT_RECEIPT_MAX)
        rc = BUS_ETOOBIG;
    if (rc)
        goto done;
    *stored = json_pack ("{s:s, s:O?, s:s, s:s, s:I, s:I, s:I}", "run", run, "state",
                         json_object_get (payload, "state"), "jws", jws, "hmac", hmac,
                         "issued_at", (json_int_t) now_us, "size", (json_int_t) size,
                         "entries", (json_int_t) json_array_size (all));
    if (!*stored)
        rc = BUS_ENOMEM;
done:
    free (jws);
    json_decref (entries);
    json_decref (gaps);
    json_decref (all);
    json_decref (payload);
    json_decref (head);
    json_decref (proofs);
    return rc;
}

/* --- verification -------------------------------------------------------- */

typedef struct {
    audit_check_fn *fn;
    void *arg;
    bool failed;
} s_checks_t;

static void
s_check (s_checks_t *c, bool ok, const char *fmt, ...) __attribute__((format (printf, 3, 4)));

static void
s_check (s_checks_t *c, bool ok, const char *fmt, ...)
{
    char text [512];
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (text, sizeof text, fmt, ap);
    va_end (ap);
    if (!ok)
        c->failed = true;
    if (c->fn)
        c->fn (c->arg, ok, text);
}

/*  The public key of kid in jwks, checked to be its RFC 7638 thumbprint. */
static bool
s_key (const json_t *jwks, const char *kid, uint8_t pk [AUDIT_PK_LEN])
{
    size_t i;
    json_t *k;
    json_array_foreach (json_object_get (jwks, "keys"), i, k) {
        char thumb [AUDIT_KID_LEN + 1];
        if (!kid || strcmp (json_string_value (json_object_get (k, "kid")) ?: "", kid) != 0
            || bus_jose_jwk_public (k, pk) != 0)
            continue;
        audit_kid (thumb, pk);
        if (strcmp (thumb, kid) == 0)
            return true;
    }
    return false;
}

/*  Decode base64url text of n characters into a NUL-terminated buffer. */
static uint8_t *
s_b64 (const char *text, size_t n, size_t *len)
{
    return bus_b64url_decode (text, n, len);
}

/*  Check the head of a receipt; its root into root. */
static bool
s_verify_head (s_checks_t *c, const json_t *jwks, const json_t *head, audit_hash_t root, uint64_t *size)
{
    audit_head_t h = { .size = (uint64_t) json_integer_value (json_object_get (head, "size")),
                       .time = json_integer_value (json_object_get (head, "time")) };
    const char *origin = json_string_value (json_object_get (head, "origin"));
    const char *kid = json_string_value (json_object_get (head, "kid"));
    const char *sig = json_string_value (json_object_get (head, "signature"));
    uint8_t pk [AUDIT_PK_LEN];
    bool well = origin && strlen (origin) <= AUDIT_ORIGIN_MAX && sig
             && audit_hash_from_hex (h.root, json_string_value (json_object_get (head, "root"))) == 0
             && bus_b64url_decode_fixed (sig, h.signature, AUDIT_SIG_LEN) == 0;
    if (!well) {
        s_check (c, false, "the tree head is well-formed");
        return false;
    }
    snprintf (h.origin, sizeof h.origin, "%s", origin);
    bool keyed = s_key (jwks, kid, pk);
    bool ok = keyed && audit_head_verify (&h, pk) == 0;
    s_check (c, ok, "tree head of %llu entries: Ed25519 signature by %s%s", (unsigned long long) h.size,
             kid ? kid : "(no kid)", keyed ? "" : " (no such key in the JWKS)");
    memcpy (root, h.root, AUDIT_HASH_LEN);
    *size = h.size;
    return ok;
}

/*  What to call an entry in a message: its type or kind. */
static const char *
s_entry_name (const json_t *e)
{
    return json_string_value (json_object_get (e, "type")) ?: json_string_value (json_object_get (e, "kind"))
        ?: "?";
}

/*  Check every entry's inclusion; collect the parsed entries. */
static void
s_verify_entries (s_checks_t *c, const json_t *entries, uint64_t size, const audit_hash_t root, json_t *parsed)
{
    size_t i;
    json_t *e;
    if (!json_is_array (entries) || json_array_size (entries) == 0) {
        s_check (c, false, "the receipt lists the run's entries");
        return;
    }
    json_array_foreach (entries, i, e) {
        json_t *idx = json_object_get (e, "index");
        const char *bytes = json_string_value (json_object_get (e, "entry"));
        json_t *path = json_object_get (e, "path");
        uint64_t index = (uint64_t) json_integer_value (idx);
        audit_hash_t leaf, hashes [AUDIT_PROOF_MAX];
        size_t n = json_array_size (path);
        bool well = json_is_integer (idx) && bytes && json_is_array (path) && n <= AUDIT_PROOF_MAX;
        for (size_t k = 0; well && k < n; k++)
            well = audit_hash_from_hex (hashes [k], json_string_value (json_array_get (path, k))) == 0;
        json_t *entry = bytes ? json_loads (bytes, JSON_REJECT_DUPLICATES, NULL) : NULL;
        if (well) {
            audit_leaf_hash (leaf, bytes, strlen (bytes));
            well = audit_verify_inclusion (index, size, leaf, hashes, n, root) == 0;
        }
        s_check (c, well, "entry %llu (%s): its bytes are in the signed tree of %llu entries (RFC 9162 "
                 "inclusion)", (unsigned long long) index, entry ? s_entry_name (entry) : "unreadable",
                 (unsigned long long) size);
        if (json_is_object (entry)) {
            json_object_set_new (entry, "index", json_integer ((json_int_t) index));
            json_array_append (parsed, entry);
        }
        json_decref (entry);
    }
}

/*  The summary members agree with what the proven entries say. */
static void
s_verify_summary (s_checks_t *c, const json_t *payload, const json_t *parsed)
{
    const char *run = json_string_value (json_object_get (payload, "run"));
    json_t *sum = run ? audit_runs_summary (run, parsed) : NULL;
    if (!sum) {
        s_check (c, false, "the receipt names its run");
        return;
    }
    bool all = true;
    for (int i = 0; s_summary_members [i]; i++) {
        json_t *a = json_object_get (payload, s_summary_members [i]);
        json_t *b = json_object_get (sum, s_summary_members [i]);
        if ((a || b) && !(a && b && json_equal (a, b))) {
            s_check (c, false, "the receipt's %s is what its proven entries say", s_summary_members [i]);
            all = false;
        }
    }
    if (all)
        s_check (c, true, "run %s: state, steps, approvals, leases and gaps are what the proven entries say "
                 "(%zu steps, %zu approvals, %zu leases, %zu gaps)", run,
                 json_array_size (json_object_get (sum, "steps")), json_array_size (json_object_get (sum, "approvals")),
                 json_array_size (json_object_get (sum, "leases")), json_array_size (json_object_get (sum, "gaps")));
    json_decref (sum);
}

/*  Every approval level's device signature. */
static void
s_verify_approvals (s_checks_t *c, const json_t *payload, audit_decision_verify_fn *decision)
{
    size_t i, k;
    json_t *a, *lvl;
    json_array_foreach (json_object_get (payload, "approvals"), i, a) {
        const char *id = json_string_value (json_object_get (a, "approval_id")) ?: "?";
        const char *msg = json_string_value (json_object_get (a, "binding_message"));
        const char *sha = json_string_value (json_object_get (a, "authorization_details_sha256"));
        json_array_foreach (json_object_get (a, "levels"), k, lvl) {
            const char *state = json_string_value (json_object_get (lvl, "state")) ?: "";
            const char *key = json_string_value (json_object_get (lvl, "device_key"));
            const char *sig = json_string_value (json_object_get (lvl, "signature"));
            const char *approver = json_string_value (json_object_get (lvl, "approver")) ?: "?";
            const char *req = json_string_value (json_object_get (lvl, "auth_req_id"));
            const char *verb = strcmp (state, "approved") == 0 ? "approve" : strcmp (state, "denied") == 0 ? "deny"
                             : NULL;
            if (!verb)
                continue;                   /* not decided: nothing signed */
            if (!key || !sig) {
                /* an oidc level: the provider decided, no device signature */
                bool oidc = json_object_get (lvl, "provider_sub") != NULL;
                s_check (c, oidc, "approval %s level %zu (%s, %s): %s", id, k, approver, state,
                         oidc ? "decided at the OIDC provider (no device signature)" : "device signature present");
                continue;
            }
            bool ok = req && msg && sha && decision (key, sig, req, verb, msg, sha) == 0;
            s_check (c, ok, "approval %s level %zu (%s, %s): Ed25519 signature by device %s over the decision",
                     id, k, approver, state, key);
        }
    }
}

int
audit_receipt_verify (const char *jws, const json_t *jwks, const uint8_t *hmac_key,
                      audit_decision_verify_fn *decision, audit_check_fn *check, void *arg, json_t **payload_out)
{
    s_checks_t c = { .fn = check, .arg = arg };
    int rc = BUS_EINVAL;
    uint8_t *hbytes = NULL, *pbytes = NULL;
    size_t hlen = 0, plen = 0;
    json_t *header = NULL, *payload = NULL, *parsed = json_array ();
    if (payload_out)
        *payload_out = NULL;
    size_t len = jws ? strlen (jws) : 0;
    const char *d1 = jws ? memchr (jws, '.', len) : NULL;
    const char *d2 = d1 ? memchr (d1 + 1, '.', len - (size_t) (d1 + 1 - jws)) : NULL;
    if (!d2 || len > AUDIT_RECEIPT_MAX || memchr (d2 + 1, '.', len - (size_t) (d2 + 1 - jws))) {
        s_check (&c, false, "the receipt is a compact JWS (three base64url parts, at most %d bytes)",
                 AUDIT_RECEIPT_MAX);
        goto done;
    }
    hbytes = s_b64 (jws, (size_t) (d1 - jws), &hlen);
    pbytes = s_b64 (d1 + 1, (size_t) (d2 - d1 - 1), &plen);
    header = hbytes ? json_loadb ((const char *) hbytes, hlen, JSON_REJECT_DUPLICATES, NULL) : NULL;
    payload = pbytes ? json_loadb ((const char *) pbytes, plen, JSON_REJECT_DUPLICATES, NULL) : NULL;
    const char *alg = json_string_value (json_object_get (header, "alg"));
    const char *kid = json_string_value (json_object_get (header, "kid"));
    if (!json_is_object (header) || !alg || strcmp (alg, "EdDSA") != 0 || !pbytes) {
        s_check (&c, false, "the receipt's header is a JSON object with alg EdDSA, its payload base64url");
        goto done;
    }
    rc = 0;
    /* the JWS signature */
    uint8_t pk [AUDIT_PK_LEN], sig [AUDIT_SIG_LEN];
    bool keyed = s_key (jwks, kid, pk);
    bool sig_ok = keyed && bus_b64url_decode_fixed (d2 + 1, sig, sizeof sig) == 0
               && crypto_sign_verify_detached (sig, (const uint8_t *) jws, (size_t) (d2 - jws), pk) == 0;
    s_check (&c, sig_ok, "receipt signature: EdDSA (Ed25519) by key %s%s", kid ? kid : "(no kid)",
             keyed ? "" : " (no such key in the JWKS)");
    /* the HMAC tag */
    if (hmac_key) {
        const char *tag = json_string_value (json_object_get (header, "hmac"));
        uint8_t want [crypto_auth_hmacsha256_BYTES], got [crypto_auth_hmacsha256_BYTES];
        size_t wl = 0;
        crypto_auth_hmacsha256_state st;
        crypto_auth_hmacsha256_init (&st, hmac_key, 32);
        crypto_auth_hmacsha256_update (&st, pbytes, plen);
        crypto_auth_hmacsha256_final (&st, got);
        bool ok = tag && sodium_hex2bin (want, sizeof want, tag, strlen (tag), NULL, &wl, NULL) == 0
               && wl == sizeof want && sodium_memcmp (want, got, sizeof got) == 0;
        s_check (&c, ok, "HMAC-SHA256 tag of the payload (header \"hmac\") under the given key");
    }
    if (!json_is_object (payload)) {
        s_check (&c, false, "the payload is a JSON object");
        goto done;
    }
    s_check (&c, strcmp (json_string_value (json_object_get (payload, "receipt")) ?: "", AUDIT_RECEIPT_TYPE) == 0,
             "the payload is a %s", AUDIT_RECEIPT_TYPE);
    /* the head, the entries, the summary, the approvals */
    audit_hash_t root;
    uint64_t size = 0;
    if (s_verify_head (&c, jwks, json_object_get (payload, "head"), root, &size))
        s_verify_entries (&c, json_object_get (payload, "entries"), size, root, parsed);
    s_verify_summary (&c, payload, parsed);
    if (decision)
        s_verify_approvals (&c, payload, decision);
done:
    if (rc == 0 && c.failed)
        rc = BUS_ECRYPTO;
    if (payload_out && payload)
        *payload_out = json_incref (payload);
    json_decref (header);
    json_decref (payload);
    json_decref (parsed);
    free (hbytes);
    free (pbytes);
    return rc;
}
