/*  vault_accounts.c — the vault-broker's connected accounts
    (vault_internal.h): vault.connect / disconnect / connections and
    vault.rotate_key (the master key, or the signing key through
    vault_tokens.c); the sealed records every file keeps (meta JSON ‖ NUL ‖
    secret, sealed by vault_crypt.h under the record's key); the checks of
    names and scopes.

    A connection's secret (and client secret) is sealed with the rest of
    its record and wiped from the request once sealed; no reply or event
    carries it.

    Threads: the reactor's.
*/
#include "vault_internal.h"
#include "bus_error.h"
#include "bus_log.h"

#include <ctype.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/*  A name of a connection: 1..128 of [A-Za-z0-9._-]. */
static bool
s_name_ok (const char *name)
{
    if (!name || !*name || strlen (name) > 128)
        return false;
    for (const char *p = name; *p; p++)
        if (!isalnum ((unsigned char) *p) && *p != '.' && *p != '_' && *p != '-')
            return false;
    return true;
}

/*  A scope: 1..256 printable characters without blanks or quotes. */
static bool
s_scope_ok (const char *scope)
{
    if (!scope || !*scope || strlen (scope) > 256)
        return false;
    for (const char *p = scope; *p; p++)
        if (*p <= ' ' || *p >= 127 || *p == '"' || *p == '\\')
            return false;
    return true;
}

/*  A list of scopes, each a string s_scope_ok, no duplicates: a new list,
    or NULL with why. */
json_t *
vault_scopes (json_t *list, char *why, size_t why_len)
{
    json_t *out = json_array ();
    size_t i, j;
    json_t *v, *w;
    json_array_foreach (list, i, v) {
        const char *s = json_string_value (v);
        if (!s_scope_ok (s)) {
            snprintf (why, why_len, "scope %zu is not a scope (1..256 printable characters, no blanks)", i);
            json_decref (out);
            return NULL;
        }
        bool dup = false;
        json_array_foreach (out, j, w)
            dup |= !strcmp (json_string_value (w), s);
        if (!dup)
            json_array_append (out, v);
    }
    return out;
}

/*  "a b c" from ["a","b","c"], malloc'd. */
char *
vault_scope_text (json_t *scopes)
{
    size_t len = 1, i;
    json_t *v;
    json_array_foreach (scopes, i, v)
        len += strlen (json_string_value (v)) + 1;
    char *out = calloc (1, len);
    if (!out)
        return NULL;
    json_array_foreach (scopes, i, v) {
        if (i)
            strcat (out, " ");
        strcat (out, json_string_value (v));
    }
    return out;
}

/*  The audience a kind's API checks, when the connection names none. */
static const char *
s_default_audience (const char *kind)
{
    if (!strcmp (kind, "google-sheets"))
        return "https://sheets.googleapis.com/";
    if (!strcmp (kind, "gmail"))
        return "https://gmail.googleapis.com/";
    if (!strcmp (kind, "dropbox"))
        return "https://content.dropboxapi.com/";
    return NULL;
}

/*  Seal plaintext meta JSON ‖ NUL ‖ secret under key (the associated
    data): *out malloc'd (vault_internal.h). */
int
vault_seal_record (vault_t *self, const char *key, json_t *meta, const void *secret, size_t secret_len,
                   uint8_t **out, size_t *out_len)
{
    *out = NULL;
    char *text = json_dumps (meta, JSON_COMPACT | JSON_SORT_KEYS);
    if (!text)
        return BUS_ENOMEM;
    size_t tlen = strlen (text), len = tlen + 1 + secret_len;
    uint8_t *plain = sodium_malloc (len ? len : 1);
    int rc = BUS_ENOMEM;
    if (plain) {
        memcpy (plain, text, tlen + 1);
        if (secret_len)
            memcpy (plain + tlen + 1, secret, secret_len);
        rc = vault_seal (self->keyring, key, strlen (key), plain, len, out, out_len);
        sodium_free (plain);
    }
    free (text);
    return rc;
}

/*  Seal (vault_seal_record) and put it in db under key. */
int
vault_put_sealed (vault_t *self, bus_txn_t *txn, int db, const char *key, json_t *meta,
                  const void *secret, size_t secret_len)
{
    uint8_t *sealed = NULL;
    size_t sealed_len = 0;
    int rc = vault_seal_record (self, key, meta, secret, secret_len, &sealed, &sealed_len);
    if (rc == 0)
        rc = bus_txn_put (txn, db, key, strlen (key), sealed, sealed_len);
    free (sealed);
    return rc;
}

/*  Open the sealed record key of db: *meta (the JSON part) and, when
    secret is not NULL, the whole plaintext (sodium memory; the secret is
    at *secret_off, *secret_len bytes). */
int
vault_get_sealed (vault_t *self, bus_txn_t *txn, int db, const char *key, json_t **meta,
              uint8_t **plain_out, size_t *secret_off, size_t *secret_len, uint32_t *key_id)
{
    *meta = NULL;
    const void *val;
    size_t val_len;
    int rc = bus_txn_get (txn, db, key, strlen (key), &val, &val_len);
    if (rc)
        return rc;
    uint8_t *plain = NULL;
    size_t len = 0;
    rc = vault_open (self->keyring, key, strlen (key), val, val_len, &plain, &len, key_id);
    if (rc)
        return rc;
    size_t tlen = strnlen ((const char *) plain, len);
    if (tlen == len)
        rc = BUS_EINVAL;                /* no NUL: not a record of ours */
    else if (!(*meta = json_loadb ((const char *) plain, tlen, 0, NULL)) || !json_is_object (*meta))
        rc = BUS_EINVAL;
    if (rc == 0 && plain_out) {
        *plain_out = plain;
        *secret_off = tlen + 1;
        *secret_len = len - tlen - 1;
        plain = NULL;
    }
    if (rc) {
        json_decref (*meta);
        *meta = NULL;
    }
    vault_plain_free (&plain);
    return rc;
}

/*  Answer a failure to open a sealed record. */
void
vault_reply_sealed_error (bus_request_t *req, const char *what, int rc)
{
    if (rc == BUS_ENOTFOUND)
        bus_reply_error (req, PROTO_ERR_NOT_FOUND, "no %s", what);
    else if (rc == BUS_ECRYPTO || rc == BUS_EINVAL)
        bus_reply_error_with (req, PROTO_ERR_INTERNAL, json_pack ("{s:s}", "reason", "integrity"),
                              "the stored %s does not open: tampered with, truncated or sealed "
                              "under a key this keyring lacks", what);
    else
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "cannot read the %s: %s", what, bus_strerror (rc));
}

/* --- connections ------------------------------------------------------ */

/*  A connection as replies show it: its metadata (no secret) and key id. */
static json_t *
s_conn_public (json_t *meta, uint32_t key_id)
{
    json_t *out = json_deep_copy (meta);
    json_object_set_new (out, "key_id", json_integer (key_id));
    return out;
}

/*  vault.connect {name, kind, scopes, secret?, audience?, token_endpoint?,
    ttl_cap?, approval?, mode?}: store (or replace) a connection. The secret
    is sealed with the rest and wiped from the request once sealed. */
void
vault_connect (bus_service_t *svc, bus_request_t *req, void *arg)
{
    vault_t *self = arg;
    json_t *body = bus_request_body (req);
    const char *name = json_string_value (json_object_get (body, "name"));
    const char *kind = json_string_value (json_object_get (body, "kind"));
    const char *mode = json_string_value (json_object_get (body, "mode"));
    const char *audience = json_string_value (json_object_get (body, "audience"));
    const char *endpoint = json_string_value (json_object_get (body, "token_endpoint"));
    const char *revocation = json_string_value (json_object_get (body, "revocation_endpoint"));
    const char *client_id = json_string_value (json_object_get (body, "client_id"));
    json_t *secret = json_object_get (body, "secret");
    json_t *client_secret = json_object_get (body, "client_secret");
    static const char *const kinds [] = { "google-sheets", "gmail", "dropbox", "oauth", "local", NULL };
    bool kind_ok = false;
    for (int i = 0; kind && kinds [i]; i++)
        kind_ok |= !strcmp (kind, kinds [i]);
    char why [200] = "";
    json_t *scopes = NULL, *meta = NULL;
    if (!s_name_ok (name)) {
        bus_reply_error (req, PROTO_ERR_INVALID, "name: 1..128 of A-Z a-z 0-9 . _ -");
        goto done;
    }
    if (!kind_ok) {
        bus_reply_error (req, PROTO_ERR_INVALID, "kind: one of google-sheets, gmail, dropbox, oauth, local");
        goto done;
    }
    if (!mode)
        mode = "local";
    if (strcmp (mode, "local") && strcmp (mode, "oauth") && strcmp (mode, "auth0")) {
        bus_reply_error (req, PROTO_ERR_INVALID, "mode: one of local, oauth, auth0");
        goto done;
    }
    if (!(scopes = vault_scopes (json_object_get (body, "scopes"), why, sizeof why))) {
        bus_reply_error (req, PROTO_ERR_INVALID, "scopes: %s", why);
        goto done;
    }
    const char *upconn = json_string_value (json_object_get (body, "auth0_connection"));
    const char *hint = json_string_value (json_object_get (body, "login_hint"));
    if (!strcmp (mode, "oauth") && (!secret || !endpoint || !client_id)) {
        bus_reply_error (req, PROTO_ERR_INVALID, "mode oauth needs secret (the refresh token), token_endpoint "
                         "and client_id");
        goto done;
    }
    if (!strcmp (mode, "auth0") && (!secret || !endpoint || !client_id || !client_secret || !upconn)) {
        bus_reply_error (req, PROTO_ERR_INVALID, "mode auth0 needs secret (the user's Auth0 refresh token), "
                         "token_endpoint (https://DOMAIN/oauth/token), client_id, client_secret and "
                         "auth0_connection");
        goto done;
    }
    if (!audience)
        audience = s_default_audience (kind);
    if (!audience) {
        bus_reply_error (req, PROTO_ERR_INVALID, "audience: required for kind %s", kind);
        goto done;
    }
    json_int_t cap = json_is_integer (json_object_get (body, "ttl_cap"))
                   ? json_integer_value (json_object_get (body, "ttl_cap")) : VAULT_TTL_MAX;
    meta = json_pack ("{s:s, s:s, s:s, s:O, s:s, s:I, s:b, s:b, s:I}", "name", name, "kind", kind,
                      "mode", mode, "scopes", scopes, "audience", audience, "ttl_cap", cap,
                      "approval", json_is_true (json_object_get (body, "approval")),
                      "has_secret", secret != NULL, "updated_at", (json_int_t) vault_now ());
    if (meta && endpoint)
        json_object_set_new (meta, "token_endpoint", json_string (endpoint));
    if (meta && revocation)
        json_object_set_new (meta, "revocation_endpoint", json_string (revocation));
    if (meta && client_id)
        json_object_set_new (meta, "client_id", json_string (client_id));
    if (meta && upconn)
        json_object_set_new (meta, "auth0_connection", json_string (upconn));
    if (meta && hint)
        json_object_set_new (meta, "login_hint", json_string (hint));
    char key [160];
    snprintf (key, sizeof key, "connection/%s", name);
    bus_txn_t *txn = meta ? bus_txn_begin (bus_service_store (svc), true) : NULL;
    /* the secret part: credential NUL client secret, assembled in sodium memory */
    const char *s = json_string_value (secret), *cs = json_string_value (client_secret);
    size_t slen = s ? strnlen (s, json_string_length (secret)) : 0;
    size_t cslen = cs ? strnlen (cs, json_string_length (client_secret)) : 0;
    size_t partlen = cs ? slen + 1 + cslen : slen;
    uint8_t *part = sodium_malloc (partlen + 1);
    if (part) {
        if (slen)
            memcpy (part, s, slen);
        if (cs) {
            part [slen] = 0;
            memcpy (part + slen + 1, cs, cslen);
        }
    }
    int rc = txn && part ? vault_put_sealed (self, txn, self->db_conn, key, meta, part, partlen) : BUS_ENOMEM;
    if (part)
        sodium_free (part);
    if (s)
        sodium_memzero ((char *) s, json_string_length (secret));   /* the request's copies: no longer needed */
    if (cs)
        sodium_memzero ((char *) cs, json_string_length (client_secret));
    json_t *event = json_deep_copy (meta);
    json_object_set_new (event, "key_id", json_integer (vault_keyring_current (self->keyring)));
    if (rc == 0)
        rc = bus_event_append (svc, txn, "vault.connected", event, bus_request_traceparent (req));
    else
        json_decref (event);
    if (rc) {
        bus_service_abort (svc, &txn);
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "cannot store the connection: %s", bus_strerror (rc));
        goto done;
    }
    bus_outcome_t out = { .body = s_conn_public (meta, vault_keyring_current (self->keyring)) };
    bus_request_commit (req, &txn, &out);
done:
    json_decref (scopes);
    json_decref (meta);
}

/*  vault.disconnect {name}. */
void
vault_disconnect (bus_service_t *svc, bus_request_t *req, void *arg)
{
    vault_t *self = arg;
    const char *name = json_string_value (json_object_get (bus_request_body (req), "name"));
    char key [160];
    snprintf (key, sizeof key, "connection/%s", name);
    bus_txn_t *txn = bus_txn_begin (bus_service_store (svc), true);
    int rc = txn ? bus_txn_del (txn, self->db_conn, key, strlen (key)) : BUS_EIO;
    if (rc == BUS_ENOTFOUND) {
        bus_service_abort (svc, &txn);
        bus_reply_error (req, PROTO_ERR_NOT_FOUND, "no connection %s", name);
        return;
    }
    if (rc == 0)
        rc = bus_event_append (svc, txn, "vault.disconnected", json_pack ("{s:s}", "name", name),
                               bus_request_traceparent (req));
    if (rc) {
        bus_service_abort (svc, &txn);
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "cannot remove the connection: %s", bus_strerror (rc));
        return;
    }
    bus_outcome_t out = { .body = json_pack ("{s:s, s:b}", "name", name, "removed", 1) };
    bus_request_commit (req, &txn, &out);
}

typedef struct {
    vault_t *self;
    bus_txn_t *txn;
    json_t *list;
} s_list_t;

/*  List one connection (vault.connections). */
static int
s_list_conn (const void *key, size_t key_len, const void *val, size_t val_len, void *arg)
{
    s_list_t *ls = arg;
    char name [200];
    if (key_len >= sizeof name)
        return 0;
    memcpy (name, key, key_len);
    name [key_len] = 0;
    json_t *meta = NULL;
    uint32_t key_id = 0;
    int rc = vault_get_sealed (ls->self, ls->txn, ls->self->db_conn, name, &meta, NULL, NULL, NULL, &key_id);
    if (rc == 0)
        json_array_append_new (ls->list, s_conn_public (meta, key_id));
    else
        json_array_append_new (ls->list, json_pack ("{s:s, s:s, s:I}", "name", name + strlen ("connection/"),
                                                    "error", "integrity", "key_id",
                                                    (json_int_t) vault_sealed_key_id (val, val_len)));
    json_decref (meta);
    return 0;
}

/*  vault.connections: every connection, without its secret; one whose
    record does not open is listed with error "integrity". */
void
vault_connections (bus_service_t *svc, bus_request_t *req, void *arg)
{
    vault_t *self = arg;
    s_list_t ls = { self, bus_txn_begin (bus_service_store (svc), false), json_array () };
    int rc = ls.txn ? bus_txn_scan (ls.txn, self->db_conn, NULL, 0, NULL, 0, s_list_conn, &ls) : BUS_EIO;
    bus_txn_abort (&ls.txn);
    if (rc) {
        json_decref (ls.list);
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "cannot list: %s", bus_strerror (rc));
        return;
    }
    bus_reply_ok (req, json_pack ("{s:o, s:I}", "connections", ls.list,
                                  "key_id", (json_int_t) vault_keyring_current (self->keyring)));
}

/*  vault.rotate_key {key?: "master" (default) | "signing"}. */
void
vault_rotate_key (bus_service_t *svc, bus_request_t *req, void *arg)
{
    vault_t *self = arg;
    const char *which = json_string_value (json_object_get (bus_request_body (req), "key"));
    if (!which || !strcmp (which, "master")) {
        char err [300] = "";
        int rc = vault_keyring_rotate (self->keyring, err, sizeof err);
        if (rc == BUS_EPERM) {
            bus_reply_error_with (req, PROTO_ERR_FORBIDDEN, json_pack ("{s:s}", "reason", "credential"),
                                  "cannot rotate the master key: %s", err);
            return;
        }
        if (rc) {
            bus_error ("vault: %s", err);
            bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "cannot rotate the master key: %s", bus_strerror (rc));
            return;
        }
        bus_info ("vault: master key %u made current", vault_keyring_current (self->keyring));
        vault_reseal_start (self);
        bus_reply_ok (req, json_pack ("{s:s, s:I}", "key", "master",
                                      "key_id", (json_int_t) vault_keyring_current (self->keyring)));
        return;
    }
    if (strcmp (which, "signing")) {
        bus_reply_error (req, PROTO_ERR_INVALID, "key: master or signing");
        return;
    }
    vault_sigkey_t *old = vault_current_key (self);
    char old_kid [BUS_JOSE_KID_LEN + 1] = "";
    if (old)
        snprintf (old_kid, sizeof old_kid, "%s", old->kid);
    bus_txn_t *txn = bus_txn_begin (bus_service_store (svc), true);
    int rc = txn ? vault_key_new (self, txn) : BUS_EIO;
    if (rc == 0)
        rc = bus_service_commit (svc, &txn);
    else
        bus_service_abort (svc, &txn);
    if (rc) {
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "cannot rotate the signing key: %s", bus_strerror (rc));
        return;
    }
    bus_reply_ok (req, json_pack ("{s:s, s:s, s:s}", "key", "signing", "kid", vault_current_key (self)->kid,
                                  "retired", old_kid));
}

/* --- the re-seal pass ------------------------------------------------- */

#define S_RESEAL_KEY_MAX 512

typedef struct {
    uint32_t current;
    size_t max, n;                      /* records to move, at most max */
    struct { char key [S_RESEAL_KEY_MAX + 1]; } *due;
    char last [S_RESEAL_KEY_MAX + 1];   /* the last key seen */
    size_t last_len;
    bool seen;
} s_reseal_t;

/*  Collect the records sealed under an older key (stops after max). */
static int
s_reseal_scan (const void *key, size_t key_len, const void *val, size_t val_len, void *arg)
{
    s_reseal_t *rs = arg;
    if (key_len > S_RESEAL_KEY_MAX)
        return 0;                       /* not a key of ours */
    memcpy (rs->last, key, key_len);
    rs->last [key_len] = 0;
    rs->last_len = key_len;
    rs->seen = true;
    uint32_t id = vault_sealed_key_id (val, val_len);
    if (id == 0 || id >= rs->current)
        return 0;
    memcpy (rs->due [rs->n].key, key, key_len);
    rs->due [rs->n].key [key_len] = 0;
    return ++rs->n >= rs->max;
}

/*  Re-seal record key of db under the current key in txn: 1 when moved,
    0 when it does not open (left as it is: logged), or an error. */
static int
s_reseal_one (vault_t *self, bus_txn_t *txn, int db, const char *key)
{
    const void *val;
    size_t val_len;
    int rc = bus_txn_get (txn, db, key, strlen (key), &val, &val_len);
    if (rc)
        return rc == BUS_ENOTFOUND ? 0 : rc;
    uint8_t *plain = NULL, *sealed = NULL;
    size_t len = 0, sealed_len = 0;
    rc = vault_open (self->keyring, key, strlen (key), val, val_len, &plain, &len, NULL);
    if (rc) {
        bus_warn ("vault: re-seal: record %.64s does not open (%s): left as it is", key, bus_strerror (rc));
        return 0;
    }
    rc = vault_seal (self->keyring, key, strlen (key), plain, len, &sealed, &sealed_len);
    vault_plain_free (&plain);
    if (rc == 0)
        rc = bus_txn_put (txn, db, key, strlen (key), sealed, sealed_len);
    free (sealed);
    return rc ? rc : 1;
}

void
vault_reseal_start (vault_t *self)
{
    self->reseal_due = vault_keyring_current (self->keyring) > 1;
    /* its first step a whole interval later: a paced pass, not a burst */
    self->reseal_not_before = vault_now_ms ()
                            + bus_config_int (bus_service_config (self->svc), "vault", "reseal_ms");
    self->reseal_db = 0;
    self->reseal_from_len = 0;
    self->reseal_moved = 0;
}

/*  The timer: one paced step of the background pass that moves records
    sealed under older master keys to the current one (connections,
    signing keys, providers' tokens, in key order, at most [vault]
    reseal_batch records per step, one commit each step), from the last
    rotation (or start) until one walk through the stores is done. A
    record written meanwhile is sealed under the current key anyway. */
void
vault_reseal (bus_service_t *svc, void *state)
{
    vault_t *self = state;
    if (!self->reseal_due || vault_now_ms () < self->reseal_not_before)
        return;
    const int dbs [3] = { self->db_conn, self->db_signing, self->db_upstream };
    size_t batch = (size_t) bus_config_int (bus_service_config (svc), "vault", "reseal_batch");
    s_reseal_t rs = { .current = vault_keyring_current (self->keyring), .max = batch };
    rs.due = calloc (batch, sizeof *rs.due);
    bus_txn_t *txn = rs.due ? bus_txn_begin (bus_service_store (svc), true) : NULL;
    int rc = txn ? 0 : BUS_EIO;
    size_t moved = 0;
    while (rc == 0 && self->reseal_db < 3 && rs.n < batch) {
        int db = dbs [self->reseal_db];
        rs.seen = false;
        size_t before = rs.n;
        rc = bus_txn_scan (txn, db, self->reseal_from_len ? self->reseal_from : NULL, self->reseal_from_len,
                           NULL, 0, s_reseal_scan, &rs);
        for (size_t i = before; i < rs.n && rc >= 0; i++) {
            int r = s_reseal_one (self, txn, db, rs.due [i].key);
            if (r < 0)
                rc = r;
            else
                moved += (size_t) r;
        }
        if (rc == 0 && rs.n < batch) {
            self->reseal_db++;              /* this store is done */
            self->reseal_from_len = 0;
        }
        else if (rc == 0 && rs.seen) {
            /* go on after the last key seen: the key and a NUL */
            memcpy (self->reseal_from, rs.last, rs.last_len);
            self->reseal_from [rs.last_len] = 0;
            self->reseal_from_len = rs.last_len + 1;
        }
    }
    if (rc == 0 && moved)
        rc = bus_service_commit (svc, &txn);
    else
        bus_service_abort (svc, &txn);
    free (rs.due);
    if (rc) {
        bus_warn ("vault: the re-seal pass failed: %s (it goes on at its next step)", bus_strerror (rc));
        vault_reseal_start (self);           /* from the start: nothing was moved */
        return;
    }
    self->reseal_moved += moved;
    if (self->reseal_db >= 3) {
        self->reseal_due = false;
        bus_info ("vault: re-seal pass done: %zu record(s) moved to master key %u", self->reseal_moved, rs.current);
    }
}
