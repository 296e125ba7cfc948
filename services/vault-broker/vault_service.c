/*  vault_service.c — the vault-broker's handlers (vault_service.h).

    Built: connected accounts (vault.connect / disconnect / connections,
    sealed at rest, vault.rotate_key), leases (vault.lease, renew, revoke,
    leases, token_used) in `local` mode (RFC 9068 tokens bound to the
    node's key; the JWKS over HTTP and as vault.jwks), `oauth` mode (a
    refresh-token grant at the provider, its token revoked upstream when
    the lease ends) and `auth0` mode (Auth0 Token Vault's federated
    connection token exchange); the expiry sweep.
    Not built: renewing an `oauth` or `auth0` lease: answered
    not_implemented, never with a made-up token.

    Records (LMDB):
      connections  "connection/<name>" -> sealed (meta JSON, NUL, secret [NUL client secret])
      signing      "signing/<kid>"     -> sealed (meta JSON, NUL, 32-byte seed)
      leases       <lease_id>          -> lease JSON (no token, no secret)
      lease_exp    be64 (expires_at ms) ‖ <lease_id> -> "" (active leases)
      approvals    <approval id>       -> <lease_id> (each approval yields one lease)
      upstream     "lease/<lease_id>"  -> sealed (oauth: the provider's token until the lease ends)

    Threads: everything runs on the reactor. A lease commits on the reactor
    with bus_request_commit (the lease, its expiry entry, the approval used,
    its event and the request's outcome in one fsync'd transaction) before
    the token is answered.
*/
#include "vault_service.h"
#include "vault_crypt.h"
#include "bus_call.h"
#include "bus_error.h"
#include "bus_http_client.h"
#include "bus_jose.h"
#include "bus_log.h"

#include <ctype.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_TTL_MAX        600             /* seconds: no lease lives longer */
#define S_SIGKEYS_MAX    16
#define S_CLOCK_SKEW     60              /* a retired signing key outlives its tokens by this */
#define S_LEASE_ID_MAX   64

typedef struct {
    char kid [BUS_JOSE_KID_LEN + 1];
    uint8_t pk [BUS_JOSE_PK_LEN];
    uint8_t *sk;                         /* sodium_malloc'd */
    int64_t created;                     /* s */
    int64_t retired;                     /* s; 0: signs now */
} s_sigkey_t;

typedef struct {
    bus_service_t *svc;
    vault_keyring_t *keyring;
    int db_conn, db_signing, db_leases, db_exp, db_approvals, db_upstream;
    bus_http_client_t *http;            /* oauth mode: token and revocation endpoints */
    s_sigkey_t keys [S_SIGKEYS_MAX];
    size_t nkeys;
    uint8_t *mac_key;                    /* sodium_malloc'd: the token HMAC key */
    char issuer [256];
    bus_calls_t *ciba;
} s_vault_t;

static int64_t
s_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t
s_now (void)
{
    return s_now_ms () / 1000;
}

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
static json_t *
s_scopes (json_t *list, char *why, size_t why_len)
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

/*  Is every scope of want in have? */
static bool
s_subset (json_t *want, json_t *have, const char **missing)
{
    size_t i, j;
    json_t *v, *w;
    json_array_foreach (want, i, v) {
        bool found = false;
        json_array_foreach (have, j, w)
            found |= !strcmp (json_string_value (v), json_string_value (w));
        if (!found) {
            *missing = json_string_value (v);
            return false;
        }
    }
    return true;
}

/*  "a b c" from ["a","b","c"], malloc'd. */
static char *
s_scope_text (json_t *scopes)
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

/*  Seal plaintext meta JSON ‖ NUL ‖ secret under key (the associated data)
    and put it in db. */
static int
s_put_sealed (s_vault_t *self, bus_txn_t *txn, int db, const char *key, json_t *meta,
              const void *secret, size_t secret_len)
{
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
        uint8_t *sealed = NULL;
        size_t sealed_len = 0;
        rc = vault_seal (self->keyring, key, strlen (key), plain, len, &sealed, &sealed_len);
        if (rc == 0)
            rc = bus_txn_put (txn, db, key, strlen (key), sealed, sealed_len);
        free (sealed);
        sodium_free (plain);
    }
    free (text);
    return rc;
}

/*  Open the sealed record key of db: *meta (the JSON part) and, when
    secret is not NULL, the whole plaintext (sodium memory; the secret is
    at *secret_off, *secret_len bytes). */
static int
s_get_sealed (s_vault_t *self, bus_txn_t *txn, int db, const char *key, json_t **meta,
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
static void
s_reply_sealed_error (bus_request_t *req, const char *what, int rc)
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

/* --- signing keys ----------------------------------------------------- */

static s_sigkey_t *
s_current_key (s_vault_t *self)
{
    for (size_t i = self->nkeys; i > 0; i--)
        if (self->keys [i - 1].retired == 0)
            return &self->keys [i - 1];
    return NULL;
}

/*  Keep a signing key in memory from its seed. */
static int
s_key_add (s_vault_t *self, const uint8_t seed [32], int64_t created, int64_t retired)
{
    if (self->nkeys >= S_SIGKEYS_MAX)
        return BUS_EFULL;
    s_sigkey_t *k = &self->keys [self->nkeys];
    k->sk = sodium_malloc (BUS_JOSE_SK_LEN);
    if (!k->sk)
        return BUS_ENOMEM;
    crypto_sign_seed_keypair (k->pk, k->sk, seed);
    bus_jose_thumbprint (k->kid, k->pk);
    k->created = created;
    k->retired = retired;
    self->nkeys++;
    return 0;
}

static json_t *
s_key_meta (const s_sigkey_t *k)
{
    return json_pack ("{s:s, s:I, s:I}", "kid", k->kid, "created", (json_int_t) k->created,
                      "retired", (json_int_t) k->retired);
}

/*  Store signing key k (its seed is the first half of its libsodium secret key). */
static int
s_key_store (s_vault_t *self, bus_txn_t *txn, const s_sigkey_t *k)
{
    char key [80];
    snprintf (key, sizeof key, "signing/%s", k->kid);
    json_t *meta = s_key_meta (k);
    int rc = meta ? s_put_sealed (self, txn, self->db_signing, key, meta, k->sk, 32) : BUS_ENOMEM;
    json_decref (meta);
    return rc;
}

/*  A new signing key, stored in txn; the one signing before it retires. */
static int
s_key_new (s_vault_t *self, bus_txn_t *txn)
{
    uint8_t *seed = sodium_malloc (32);
    if (!seed)
        return BUS_ENOMEM;
    randombytes_buf (seed, 32);
    s_sigkey_t *old = s_current_key (self);
    int rc = s_key_add (self, seed, s_now (), 0);
    sodium_free (seed);
    if (rc == 0 && old) {
        old->retired = s_now ();
        rc = s_key_store (self, txn, old);
    }
    if (rc == 0)
        rc = s_key_store (self, txn, &self->keys [self->nkeys - 1]);
    return rc;
}

typedef struct {
    s_vault_t *self;
    bus_txn_t *txn;
    int rc;
} s_load_t;

static int
s_load_key (const void *key, size_t key_len, const void *val, size_t val_len, void *arg)
{
    s_load_t *ld = arg;
    char name [80];
    if (key_len >= sizeof name)
        return 0;
    memcpy (name, key, key_len);
    name [key_len] = 0;
    json_t *meta = NULL;
    uint8_t *plain = NULL;
    size_t off = 0, len = 0;
    int rc = s_get_sealed (ld->self, ld->txn, ld->self->db_signing, name, &meta, &plain, &off, &len, NULL);
    if (rc == 0 && len == 32)
        rc = s_key_add (ld->self, plain + off, json_integer_value (json_object_get (meta, "created")),
                        json_integer_value (json_object_get (meta, "retired")));
    else if (rc == 0)
        rc = BUS_EINVAL;
    if (rc)
        bus_error ("vault: signing key %s does not load: %s", name, bus_strerror (rc));
    ld->rc = ld->rc ? ld->rc : rc;
    json_decref (meta);
    vault_plain_free (&plain);
    return 0;
}

static int
s_key_cmp (const void *a, const void *b)
{
    const s_sigkey_t *x = a, *y = b;
    return x->created < y->created ? -1 : x->created > y->created;
}

/*  Load the signing keys, making the first one when there is none. */
static int
s_keys_load (s_vault_t *self)
{
    bus_txn_t *txn = bus_txn_begin (bus_service_store (self->svc), true);
    if (!txn)
        return BUS_EIO;
    s_load_t ld = { self, txn, 0 };
    int rc = bus_txn_scan (txn, self->db_signing, NULL, 0, NULL, 0, s_load_key, &ld);
    if (rc == 0)
        rc = ld.rc;
    qsort (self->keys, self->nkeys, sizeof self->keys [0], s_key_cmp);
    if (rc == 0 && !s_current_key (self))
        rc = s_key_new (self, txn);
    if (rc == 0)
        rc = bus_service_commit (self->svc, &txn);
    else
        bus_service_abort (self->svc, &txn);
    return rc;
}

static json_t *
s_jwks (s_vault_t *self)
{
    json_t *keys = json_array ();
    int64_t now = s_now ();
    for (size_t i = 0; i < self->nkeys; i++) {
        const s_sigkey_t *k = &self->keys [i];
        if (k->retired == 0 || k->retired + S_TTL_MAX + S_CLOCK_SKEW > now)
            json_array_append_new (keys, bus_jose_jwk (k->pk));
    }
    return json_pack ("{s:o}", "keys", keys);
}

/* --- connections ------------------------------------------------------ */

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
static void
s_connect (bus_service_t *svc, bus_request_t *req, void *arg)
{
    s_vault_t *self = arg;
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
    if (!(scopes = s_scopes (json_object_get (body, "scopes"), why, sizeof why))) {
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
                   ? json_integer_value (json_object_get (body, "ttl_cap")) : S_TTL_MAX;
    meta = json_pack ("{s:s, s:s, s:s, s:O, s:s, s:I, s:b, s:b, s:I}", "name", name, "kind", kind,
                      "mode", mode, "scopes", scopes, "audience", audience, "ttl_cap", cap,
                      "approval", json_is_true (json_object_get (body, "approval")),
                      "has_secret", secret != NULL, "updated_at", (json_int_t) s_now ());
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
    int rc = txn && part ? s_put_sealed (self, txn, self->db_conn, key, meta, part, partlen) : BUS_ENOMEM;
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
static void
s_disconnect (bus_service_t *svc, bus_request_t *req, void *arg)
{
    s_vault_t *self = arg;
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
    s_vault_t *self;
    bus_txn_t *txn;
    json_t *list;
} s_list_t;

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
    int rc = s_get_sealed (ls->self, ls->txn, ls->self->db_conn, name, &meta, NULL, NULL, NULL, &key_id);
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
static void
s_connections (bus_service_t *svc, bus_request_t *req, void *arg)
{
    s_vault_t *self = arg;
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
static void
s_rotate_key (bus_service_t *svc, bus_request_t *req, void *arg)
{
    s_vault_t *self = arg;
    const char *which = json_string_value (json_object_get (bus_request_body (req), "key"));
    if (!which || !strcmp (which, "master")) {
        char err [300] = "";
        int rc = vault_keyring_rotate (self->keyring, err, sizeof err);
        if (rc) {
            bus_error ("vault: %s", err);
            bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "cannot rotate the master key: %s", bus_strerror (rc));
            return;
        }
        bus_info ("vault: master key %u made current", vault_keyring_current (self->keyring));
        bus_reply_ok (req, json_pack ("{s:s, s:I}", "key", "master",
                                      "key_id", (json_int_t) vault_keyring_current (self->keyring)));
        return;
    }
    if (strcmp (which, "signing")) {
        bus_reply_error (req, PROTO_ERR_INVALID, "key: master or signing");
        return;
    }
    s_sigkey_t *old = s_current_key (self);
    char old_kid [BUS_JOSE_KID_LEN + 1] = "";
    if (old)
        snprintf (old_kid, sizeof old_kid, "%s", old->kid);
    bus_txn_t *txn = bus_txn_begin (bus_service_store (svc), true);
    int rc = txn ? s_key_new (self, txn) : BUS_EIO;
    if (rc == 0)
        rc = bus_service_commit (svc, &txn);
    else
        bus_service_abort (svc, &txn);
    if (rc) {
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "cannot rotate the signing key: %s", bus_strerror (rc));
        return;
    }
    bus_reply_ok (req, json_pack ("{s:s, s:s, s:s}", "key", "signing", "kid", s_current_key (self)->kid,
                                  "retired", old_kid));
}

/* --- leases ----------------------------------------------------------- */

/*  "hmac-sha256:<hex>" of a token: what events carry instead of it. */
static void
s_token_hmac (s_vault_t *self, const char *token, char out [12 + 64 + 1])
{
    uint8_t tag [crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init (&st, self->mac_key, VAULT_KEY_LEN);
    crypto_auth_hmacsha256_update (&st, (const uint8_t *) token, strlen (token));
    crypto_auth_hmacsha256_final (&st, tag);
    memcpy (out, "hmac-sha256:", 12);
    sodium_bin2hex (out + 12, 65, tag, sizeof tag);
}

/*  Mint an RFC 9068 access token for lease, expiring at exp. */
static int
s_mint (s_vault_t *self, json_t *lease, const char *audience, const char *client_id, int64_t iat,
        int64_t exp, char **token, char jti_out [40])
{
    s_sigkey_t *k = s_current_key (self);
    if (!k)
        return BUS_ESTATE;
    uint8_t rnd [16];
    randombytes_buf (rnd, sizeof rnd);
    char *jti = bus_b64url_encode (rnd, sizeof rnd);
    char *scope = s_scope_text (json_object_get (lease, "scopes"));
    json_t *claims = jti && scope ? json_pack (
        "{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:s, s:{s:s}, s:{s:s, s:s, s:s, s:s}}",
        "iss", self->issuer, "sub", json_string_value (json_object_get (lease, "node")),
        "aud", audience, "client_id", client_id, "iat", (json_int_t) iat, "nbf", (json_int_t) iat,
        "exp", (json_int_t) exp, "jti", jti, "scope", scope,
        "cnf", "jkt", json_string_value (json_object_get (lease, "jkt")),
        "sanctum", "run", json_string_value (json_object_get (lease, "run")),
        "node", json_string_value (json_object_get (lease, "node")),
        "connection", json_string_value (json_object_get (lease, "connection")),
        "lease", json_string_value (json_object_get (lease, "lease_id"))) : NULL;
    json_t *header = json_pack ("{s:s, s:s}", "typ", "at+jwt", "kid", k->kid);
    char *payload = claims ? json_dumps (claims, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    int rc = payload && header ? bus_jws_sign (header, payload, strlen (payload), k->sk, token) : BUS_ENOMEM;
    if (rc == 0)
        snprintf (jti_out, 40, "%s", jti);
    free (payload);
    json_decref (claims);
    json_decref (header);
    free (jti);
    free (scope);
    return rc;
}

/*  The event body of a lease (never its token: its HMAC). */
static json_t *
s_lease_event (json_t *lease, const char *token_hmac)
{
    json_t *ev = json_pack ("{s:O, s:O, s:O, s:O, s:O, s:O, s:O}",
                            "lease_id", json_object_get (lease, "lease_id"),
                            "run", json_object_get (lease, "run"),
                            "node", json_object_get (lease, "node"),
                            "connection", json_object_get (lease, "connection"),
                            "scopes", json_object_get (lease, "scopes"),
                            "issued_at", json_object_get (lease, "issued_at"),
                            "expires_at", json_object_get (lease, "expires_at"));
    if (ev && token_hmac)
        json_object_set_new (ev, "token_hmac", json_string (token_hmac));
    else if (ev && json_object_get (lease, "token_hmac"))
        json_object_set (ev, "token_hmac", json_object_get (lease, "token_hmac"));
    return ev;
}

static void
s_exp_key (uint8_t key [8 + S_LEASE_ID_MAX], size_t *len, int64_t exp_ms, const char *lease_id)
{
    bus_u64_to_key ((uint64_t) exp_ms, key);
    size_t n = strnlen (lease_id, S_LEASE_ID_MAX);
    memcpy (key + 8, lease_id, n);
    *len = 8 + n;
}

/*  Store lease (JSON) in txn. */
static int
s_lease_put (s_vault_t *self, bus_txn_t *txn, json_t *lease)
{
    const char *id = json_string_value (json_object_get (lease, "lease_id"));
    char *text = json_dumps (lease, JSON_COMPACT | JSON_SORT_KEYS);
    int rc = text ? bus_txn_put (txn, self->db_leases, id, strlen (id), text, strlen (text)) : BUS_ENOMEM;
    free (text);
    return rc;
}

static json_t *
s_lease_get (s_vault_t *self, bus_txn_t *txn, const char *id, int *rc_out)
{
    const void *val;
    size_t len;
    int rc = id ? bus_txn_get (txn, self->db_leases, id, strlen (id), &val, &len) : BUS_ENOTFOUND;
    json_t *lease = rc ? NULL : json_loadb (val, len, 0, NULL);
    if (rc == 0 && !lease)
        rc = BUS_EINVAL;
    *rc_out = rc;
    return lease;
}

/*  A lease request between its checks and its answer (it may wait for
    the ciba-broker). */
typedef struct {
    s_vault_t *self;
    bus_request_t *req;
    json_t *lease;                  /* lease_id, run, node, connection, scopes, ttl, jkt, approval */
    json_t *conn;                   /* the connection's metadata */
    char audience [257];
    int64_t cap;
} s_lease_job_t;

static void
s_lease_job_free (s_lease_job_t *job)
{
    if (job) {
        json_decref (job->lease);
        json_decref (job->conn);
        free (job);
    }
}

/*  Store (lease, expiry, approval used, event) and answer, with a token
    minted here (upstream NULL: local mode) or the provider's (oauth mode:
    sealed under "lease/<id>" until the lease ends, then revoked). */
static void
s_lease_store (s_lease_job_t *job, const char *upstream, const char *upstream_type)
{
    s_vault_t *self = job->self;
    bus_request_t *req = job->req;
    bus_service_t *svc = self->svc;
    json_t *lease = job->lease;
    int64_t now_ms = s_now_ms (), iat = now_ms / 1000;
    int64_t ttl = json_integer_value (json_object_get (lease, "ttl"));
    int64_t exp = iat + ttl;
    uint8_t rnd [16];
    randombytes_buf (rnd, sizeof rnd);
    char lease_id [S_LEASE_ID_MAX];
    char hex [33];
    sodium_bin2hex (hex, sizeof hex, rnd, sizeof rnd);
    snprintf (lease_id, sizeof lease_id, "lease_%s", hex);
    json_object_set_new (lease, "lease_id", json_string (lease_id));
    json_object_set_new (lease, "issued_at", json_integer (iat));
    json_object_set_new (lease, "expires_at", json_integer (exp));
    json_object_set_new (lease, "cap_at", json_integer (iat + job->cap));
    json_object_set_new (lease, "state", json_string ("active"));
    json_object_set_new (lease, "audience", json_string (job->audience));
    json_object_set_new (lease, "client_id", json_string (bus_request_principal (req)));
    char *token = NULL, jti [40] = "", mac [12 + 64 + 1];
    int rc = 0;
    if (upstream) {
        token = strdup (upstream);
        rc = token ? 0 : BUS_ENOMEM;
        json_object_set_new (lease, "upstream", json_true ());
    }
    else
        rc = s_mint (self, lease, job->audience, bus_request_principal (req), iat, exp, &token, jti);
    bus_txn_t *txn = NULL;
    if (rc == 0) {
        s_token_hmac (self, token, mac);
        if (*jti)
            json_object_set_new (lease, "jti", json_string (jti));
        json_object_set_new (lease, "token_hmac", json_string (mac));
        txn = bus_txn_begin (bus_service_store (svc), true);
        rc = txn ? 0 : BUS_EIO;
    }
    if (rc == 0 && upstream) {
        char ukey [S_LEASE_ID_MAX + 8];
        snprintf (ukey, sizeof ukey, "lease/%s", lease_id);
        json_t *none = json_object ();
        rc = s_put_sealed (self, txn, self->db_upstream, ukey, none, token, strlen (token));
        json_decref (none);
    }
    const char *approval = json_string_value (json_object_get (lease, "approval"));
    if (rc == 0 && approval) {
        rc = bus_txn_put_new (txn, self->db_approvals, approval, strlen (approval), lease_id, strlen (lease_id));
        if (rc == BUS_EEXIST) {
            bus_service_abort (svc, &txn);
            bus_reply_error_with (req, PROTO_ERR_CONFLICT, json_pack ("{s:s}", "reason", "approval_used"),
                                  "approval %s has yielded its lease already", approval);
            goto done;
        }
    }
    uint8_t ekey [8 + S_LEASE_ID_MAX];
    size_t ekey_len = 0;
    s_exp_key (ekey, &ekey_len, exp * 1000, lease_id);
    if (rc == 0)
        rc = s_lease_put (self, txn, lease);
    if (rc == 0)
        rc = bus_txn_put (txn, self->db_exp, ekey, ekey_len, "", 0);
    if (rc == 0)
        rc = bus_event_append (svc, txn, "token.issued", s_lease_event (lease, mac), bus_request_traceparent (req));
    if (rc) {
        bus_service_abort (svc, &txn);
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "cannot issue the lease: %s", bus_strerror (rc));
        goto done;
    }
    bus_outcome_t out = { .body = json_pack ("{s:s, s:s, s:s, s:I, s:I, s:O}", "lease_id", lease_id,
                                             "token", token, "token_type", upstream ? upstream_type : "DPoP",
                                             "issued_at", (json_int_t) iat, "expires_at", (json_int_t) exp,
                                             "scopes", json_object_get (lease, "scopes")) };
    bus_request_commit (req, &txn, &out);
done:
    if (token)
        sodium_memzero (token, strlen (token));
    free (token);
    s_lease_job_free (job);
}

/*  The secrets of a connection: its credential (refresh token) and its
    client secret, NUL-separated in the sealed record's secret part, in
    sodium memory (*plain; free with vault_plain_free). Read in txn, or in
    a read transaction of its own when txn is NULL. */
static int
s_conn_secrets (s_vault_t *self, bus_txn_t *in, const char *name, json_t **meta, uint8_t **plain,
                const char **secret, const char **client_secret)
{
    char key [160];
    snprintf (key, sizeof key, "connection/%s", name);
    size_t off = 0, len = 0;
    bus_txn_t *txn = in ? in : bus_txn_begin (bus_service_store (self->svc), false);
    int rc = txn ? s_get_sealed (self, txn, self->db_conn, key, meta, plain, &off, &len, NULL) : BUS_EIO;
    if (!in)
        bus_txn_abort (&txn);
    if (rc)
        return rc;
    *secret = (const char *) *plain + off;
    size_t first = strnlen (*secret, len);
    *client_secret = first < len ? *secret + first + 1 : "";
    return 0;
}

/*  Form-encode pairs, send to url, wipe the form. */
static int
s_post_form (s_vault_t *self, const char *url, const char *const *pairs, bus_http_done_fn *done, void *arg)
{
    char *form = bus_http_form_encode (pairs);
    if (!form)
        return BUS_ENOMEM;
    const char *headers [] = { "Accept: application/json", NULL };
    bus_http_request_t rq = { .method = "POST", .url = url, .headers = headers,
                              .content_type = "application/x-www-form-urlencoded",
                              .body = form, .body_len = strlen (form), .timeout_ms = 10000 };
    int rc = bus_http_client_send (self->http, &rq, done, arg, NULL);
    sodium_memzero (form, strlen (form));
    free (form);
    return rc;
}

/*  Auth0 Token Vault's refusals of the federated connection exchange, told
    apart: the user never connected the account (or its refresh token is
    gone), the client may not use the grant, the connection is not enabled
    for the client, the client's own credentials are wrong. NULL: none of
    these (a provider error). */
static const char *
s_auth0_reason (int status, const char *error, const char *description)
{
    if (!error)
        return NULL;
    const char *d = description ? description : "";
    if (strstr (d, "not enabled"))
        return "connection_not_enabled";
    if (!strcmp (error, "unauthorized_client") || strstr (d, "rant type"))
        return "grant_not_allowed";
    if (!strcmp (error, "invalid_client") || status == 401)
        return "invalid_client";
    if (!strcmp (error, "invalid_grant") || !strcmp (error, "federated_connection_refresh_token_not_found")
        || strstr (d, "not found"))
        return "not_connected";
    return NULL;
}

/*  The provider's answer to the refresh-token grant. */
static void
s_on_token (const bus_http_response_t *resp, void *arg)
{
    s_lease_job_t *job = arg;
    bus_request_t *req = job->req;
    const char *name = json_string_value (json_object_get (job->lease, "connection"));
    if (resp->error) {
        bus_reply_error_with (req, PROTO_ERR_UNAVAILABLE, json_pack ("{s:s}", "reason", "network"),
                              "connection %s: the token endpoint did not answer: %s", name, resp->reason);
        s_lease_job_free (job);
        return;
    }
    json_t *b = json_loadb (resp->body, resp->body_len, 0, NULL);
    const char *access = json_string_value (json_object_get (b, "access_token"));
    const char *type = json_string_value (json_object_get (b, "token_type"));
    const char *error = json_string_value (json_object_get (b, "error"));
    const char *mode = json_string_value (json_object_get (job->conn, "mode"));
    bool auth0 = mode && !strcmp (mode, "auth0");
    const char *reason = NULL;
    if (resp->status == 200 && access && *access && strlen (access) < 8192) {
        s_lease_store (job, access, type && !strcasecmp (type, "dpop") ? "DPoP" : "Bearer");
        sodium_memzero ((char *) access, strlen (access));
    }
    else if (auth0 && (reason = s_auth0_reason (resp->status, error,
                                                json_string_value (json_object_get (b, "error_description"))))) {
        bus_reply_error_with (req, PROTO_ERR_FORBIDDEN, json_pack ("{s:s, s:i}", "reason", reason,
                                                                    "status", resp->status),
                              "connection %s: Auth0 refused the exchange: %s", name, reason);
        s_lease_job_free (job);
    }
    else if (!auth0 && error && (!strcmp (error, "invalid_grant") || !strcmp (error, "unauthorized_client")
                                 || !strcmp (error, "invalid_client") || !strcmp (error, "invalid_scope"))) {
        bus_reply_error_with (req, PROTO_ERR_FORBIDDEN, json_pack ("{s:s}", "reason", error),
                              "connection %s: the provider refused the grant: %s", name, error);
        s_lease_job_free (job);
    }
    else {
        bus_reply_error_with (req, PROTO_ERR_UNAVAILABLE, json_pack ("{s:s, s:i}", "reason", "provider_error",
                                                                      "status", resp->status),
                              "connection %s: the token endpoint answered %d%s%s", name, resp->status,
                              error ? ": " : " without a token", error ? error : "");
        s_lease_job_free (job);
    }
    json_decref (b);
}

/*  oauth mode: a refresh-token grant at the connection's token endpoint. */
static void
s_oauth_start (s_lease_job_t *job)
{
    s_vault_t *self = job->self;
    const char *name = json_string_value (json_object_get (job->lease, "connection"));
    json_t *meta = NULL;
    uint8_t *plain = NULL;
    const char *secret = NULL, *client_secret = NULL;
    int rc = s_conn_secrets (self, NULL, name, &meta, &plain, &secret, &client_secret);
    if (rc) {
        s_reply_sealed_error (job->req, "connection", rc);
        s_lease_job_free (job);
        return;
    }
    char *scope = s_scope_text (json_object_get (job->lease, "scopes"));
    const char *client_id = json_string_value (json_object_get (meta, "client_id"));
    const char *mode = json_string_value (json_object_get (meta, "mode"));
    const char *upconn = json_string_value (json_object_get (meta, "auth0_connection"));
    const char *hint = json_string_value (json_object_get (meta, "login_hint"));
    const char *oauth [] = { "grant_type", "refresh_token", "refresh_token", secret, "scope", scope ? scope : "",
                             "client_id", client_id ? client_id : "",
                             *client_secret ? "client_secret" : NULL, client_secret, NULL };
    /* Auth0 Token Vault: the federated connection access token exchange */
    const char *auth0 [] = {
        "grant_type", "urn:auth0:params:oauth:grant-type:token-exchange:federated-connection-access-token",
        "subject_token_type", "urn:ietf:params:oauth:token-type:refresh_token", "subject_token", secret,
        "requested_token_type", "http://auth0.com/oauth/token-type/federated-connection-access-token",
        "connection", upconn ? upconn : "", "client_id", client_id ? client_id : "",
        "client_secret", client_secret, hint ? "login_hint" : NULL, hint, NULL };
    const char *const *pairs = mode && !strcmp (mode, "auth0") ? auth0 : oauth;
    rc = self->http ? s_post_form (self, json_string_value (json_object_get (meta, "token_endpoint")), pairs,
                                   s_on_token, job) : BUS_ESTATE;
    free (scope);
    vault_plain_free (&plain);
    json_decref (meta);
    if (rc) {
        bus_reply_error_with (job->req, PROTO_ERR_UNAVAILABLE, json_pack ("{s:s}", "reason", "network"),
                              "connection %s: cannot reach the token endpoint: %s", name, bus_strerror (rc));
        s_lease_job_free (job);
    }
}

static void
s_lease_finish (s_lease_job_t *job)
{
    const char *mode = json_string_value (json_object_get (job->conn, "mode"));
    if (mode && (!strcmp (mode, "oauth") || !strcmp (mode, "auth0")))
        s_oauth_start (job);
    else
        s_lease_store (job, NULL, NULL);
}

static void
s_on_revoked_upstream (const bus_http_response_t *resp, void *arg)
{
    if (resp->error || resp->status != 200)
        bus_warn ("vault: an upstream token revocation failed: %s (status %d)",
                  resp->error ? resp->reason : "refused", resp->status);
}

/*  A lease with an upstream token ends: the token is forgotten (its sealed
    record deleted in txn) and revoked at the provider when the connection
    names a revocation endpoint (RFC 7009). */
static void
s_upstream_end (s_vault_t *self, bus_txn_t *txn, json_t *lease)
{
    const char *id = json_string_value (json_object_get (lease, "lease_id"));
    char ukey [S_LEASE_ID_MAX + 8];
    snprintf (ukey, sizeof ukey, "lease/%s", id);
    json_t *none = NULL, *meta = NULL;
    uint8_t *tok = NULL, *plain = NULL;
    size_t off = 0, len = 0;
    const char *secret = NULL, *client_secret = NULL;
    if (s_get_sealed (self, txn, self->db_upstream, ukey, &none, &tok, &off, &len, NULL) == 0
        && s_conn_secrets (self, txn, json_string_value (json_object_get (lease, "connection")), &meta, &plain,
                           &secret, &client_secret) == 0) {
        const char *endpoint = json_string_value (json_object_get (meta, "revocation_endpoint"));
        const char *client_id = json_string_value (json_object_get (meta, "client_id"));
        const char *pairs [] = { "token", (const char *) tok + off, "token_type_hint", "access_token",
                                 "client_id", client_id ? client_id : "",
                                 *client_secret ? "client_secret" : NULL, client_secret, NULL };
        if (endpoint && self->http && s_post_form (self, endpoint, pairs, s_on_revoked_upstream, NULL))
            bus_warn ("vault: cannot send the revocation of lease %s's upstream token", id);
    }
    bus_txn_del (txn, self->db_upstream, ukey, strlen (ukey));
    json_decref (none);
    json_decref (meta);
    vault_plain_free (&tok);
    vault_plain_free (&plain);
}

/*  The ciba-broker's answer on the approval. */
static void
s_on_approval (bus_calls_t *calls, proto_msg_t *reply, void *arg)
{
    s_lease_job_t *job = arg;
    bus_request_t *req = job->req;
    json_t *lease = job->lease;
    const char *approval = json_string_value (json_object_get (lease, "approval"));
    if (!reply->ok) {
        const char *code = json_string_value (json_object_get (reply->error, "code"));
        const char *msg = json_string_value (json_object_get (reply->error, "message"));
        /* not found, or not even the form of an approval id (invalid) */
        if (code && (!strcmp (code, PROTO_ERR_NOT_FOUND) || !strcmp (code, PROTO_ERR_INVALID)))
            bus_reply_error_with (req, PROTO_ERR_FORBIDDEN, json_pack ("{s:s}", "reason", "approval_unknown"),
                                  "approval %s: the ciba-broker knows no such approval", approval);
        else
            bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "approval %s: ciba-broker: %s: %s", approval,
                             code ? code : "?", msg ? msg : "");
        s_lease_job_free (job);
        return;
    }
    json_t *b = reply->body;
    const char *state = json_string_value (json_object_get (b, "state"));
    const char *run = json_string_value (json_object_get (b, "run"));
    const char *node = json_string_value (json_object_get (b, "node"));
    const char *id = json_string_value (json_object_get (b, "approval_id"));
    const char *want_run = json_string_value (json_object_get (lease, "run"));
    const char *want_node = json_string_value (json_object_get (lease, "node"));
    if (id && strcmp (id, approval)) {
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "approval %s: the ciba-broker answered for %s", approval, id);
        s_lease_job_free (job);
        return;
    }
    if (!run || !node || strcmp (run, want_run) || strcmp (node, want_node)) {
        bus_reply_error_with (req, PROTO_ERR_FORBIDDEN, json_pack ("{s:s}", "reason", "approval_mismatch"),
                              "approval %s is for run %s node %s, not this step", approval,
                              run ? run : "?", node ? node : "?");
        s_lease_job_free (job);
        return;
    }
    if (!state || strcmp (state, "approved")) {
        char reason [40];
        snprintf (reason, sizeof reason, "approval_%s", state && strlen (state) < 20 ? state : "unknown");
        bus_reply_error_with (req, PROTO_ERR_FORBIDDEN, json_pack ("{s:s}", "reason", reason),
                              "approval %s is %s, not approved", approval, state ? state : "in no state");
        s_lease_job_free (job);
        return;
    }
    s_lease_finish (job);
}

/*  vault.lease {run, node, connection, scopes, ttl?, approval?, node_key}. */
static void
s_lease (bus_service_t *svc, bus_request_t *req, void *arg)
{
    s_vault_t *self = arg;
    json_t *body = bus_request_body (req);
    const char *run = json_string_value (json_object_get (body, "run"));
    const char *node = json_string_value (json_object_get (body, "node"));
    const char *name = json_string_value (json_object_get (body, "connection"));
    const char *approval = json_string_value (json_object_get (body, "approval"));
    const char *node_key = json_string_value (json_object_get (body, "node_key"));
    char why [200] = "", key [160];
    json_t *scopes = s_scopes (json_object_get (body, "scopes"), why, sizeof why), *meta = NULL;
    s_lease_job_t *job = NULL;
    if (!scopes) {
        bus_reply_error (req, PROTO_ERR_INVALID, "scopes: %s", why);
        goto done;
    }
    snprintf (key, sizeof key, "connection/%s", name);
    bus_txn_t *txn = bus_txn_begin (bus_service_store (svc), false);
    int rc = txn ? s_get_sealed (self, txn, self->db_conn, key, &meta, NULL, NULL, NULL, NULL) : BUS_EIO;
    bus_txn_abort (&txn);
    if (rc) {
        s_reply_sealed_error (req, "connection", rc);
        goto done;
    }
    const char *mode = json_string_value (json_object_get (meta, "mode"));
    bool local = !mode || !strcmp (mode, "local");
    if (!local && strcmp (mode, "oauth") && strcmp (mode, "auth0")) {
        bus_reply_error (req, PROTO_ERR_NOT_IMPLEMENTED, "connection %s: mode %s is not built", name, mode);
        goto done;
    }
    uint8_t pk [BUS_JOSE_PK_LEN] = { 0 };
    rc = BUS_EINVAL;
    if (node_key && node_key [0] == '{') {
        json_t *jwk = json_loads (node_key, 0, NULL);
        rc = bus_jose_jwk_public (jwk, pk);
        json_decref (jwk);
    }
    else if (node_key)
        rc = bus_b64url_decode_fixed (node_key, pk, sizeof pk);
    if (rc && (local || node_key)) {
        bus_reply_error (req, PROTO_ERR_INVALID,
                         "node_key: the node's Ed25519 public key (base64url, or its JWK) is required: "
                         "tokens are bound to it (cnf.jkt)");
        goto done;
    }
    const char *missing = NULL;
    if (!s_subset (scopes, json_object_get (meta, "scopes"), &missing)) {
        bus_reply_error_with (req, PROTO_ERR_FORBIDDEN, json_pack ("{s:s}", "reason", "scope"),
                              "scope %s is beyond connection %s's", missing, name);
        goto done;
    }
    json_int_t cap = json_integer_value (json_object_get (meta, "ttl_cap"));
    if (cap <= 0 || cap > S_TTL_MAX)
        cap = S_TTL_MAX;
    json_int_t ttl = json_is_integer (json_object_get (body, "ttl"))
                   ? json_integer_value (json_object_get (body, "ttl")) : cap;
    if (ttl < 1 || ttl > cap) {
        bus_reply_error_with (req, PROTO_ERR_INVALID, json_pack ("{s:s, s:I}", "reason", "ttl", "cap", cap),
                              "ttl %lld is over connection %s's cap of %lld s", (long long) ttl, name,
                              (long long) cap);
        goto done;
    }
    bool needs = json_is_true (json_object_get (meta, "approval"));
    if (needs && !approval) {
        bus_reply_error_with (req, PROTO_ERR_FORBIDDEN, json_pack ("{s:s}", "reason", "approval_required"),
                              "connection %s needs an approval for each lease", name);
        goto done;
    }
    char jkt [BUS_JOSE_KID_LEN + 1];
    bus_jose_thumbprint (jkt, pk);
    job = calloc (1, sizeof *job);
    if (!job) {
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "out of memory");
        goto done;
    }
    job->self = self;
    job->req = req;
    job->cap = cap;
    job->conn = json_incref (meta);
    snprintf (job->audience, sizeof job->audience, "%s", json_string_value (json_object_get (meta, "audience")));
    job->lease = json_pack ("{s:s, s:s, s:s, s:O, s:I, s:s}", "run", run, "node", node, "connection", name,
                            "scopes", scopes, "ttl", ttl, "jkt", jkt);
    if (job->lease && approval)
        json_object_set_new (job->lease, "approval", json_string (approval));
    if (!job->lease) {
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "out of memory");
        s_lease_job_free (job);
        goto done;
    }
    if (!approval) {
        if (!local)
            bus_request_defer (req);    /* answered from the provider's reply */
        s_lease_finish (job);
        goto done;
    }
    /* an approval that yielded a lease already is refused before asking */
    txn = bus_txn_begin (bus_service_store (svc), false);
    const void *v;
    size_t vlen;
    rc = txn ? bus_txn_get (txn, self->db_approvals, approval, strlen (approval), &v, &vlen) : BUS_EIO;
    bus_txn_abort (&txn);
    if (rc == 0) {
        bus_reply_error_with (req, PROTO_ERR_CONFLICT, json_pack ("{s:s}", "reason", "approval_used"),
                              "approval %s has yielded its lease already", approval);
        s_lease_job_free (job);
        goto done;
    }
    if (!self->ciba)
        self->ciba = bus_calls_for (svc, "ciba-broker");
    bus_request_defer (req);
    bus_call_opts_t opts = { .owner = self, .traceparent = bus_request_traceparent (req) };
    rc = self->ciba ? bus_calls_send (self->ciba, "ciba.status",
                                      json_pack ("{s:s}", "approval_id", approval),
                                      &opts, s_on_approval, job, NULL)
                    : BUS_ESTATE;
    if (rc) {
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "cannot ask the ciba-broker: %s", bus_strerror (rc));
        s_lease_job_free (job);
    }
done:
    json_decref (scopes);
    json_decref (meta);
}

/*  The public view of a lease (vault.leases, sanctumctl). */
static json_t *
s_lease_public (json_t *lease)
{
    json_t *out = json_pack ("{s:O, s:O, s:O, s:O, s:O, s:I, s:O, s:O, s:O}",
                             "lease_id", json_object_get (lease, "lease_id"),
                             "run", json_object_get (lease, "run"),
                             "node", json_object_get (lease, "node"),
                             "connection", json_object_get (lease, "connection"),
                             "scopes", json_object_get (lease, "scopes"),
                             "ttl", (json_int_t) (json_integer_value (json_object_get (lease, "expires_at"))
                                                  - json_integer_value (json_object_get (lease, "issued_at"))),
                             "state", json_object_get (lease, "state"),
                             "issued_at", json_object_get (lease, "issued_at"),
                             "expires_at", json_object_get (lease, "expires_at"));
    const char *opt [] = { "revoked_at", "expired_at", "renewals", "approval", "last_used_at", NULL };
    for (int i = 0; out && opt [i]; i++)
        if (json_object_get (lease, opt [i]))
            json_object_set (out, opt [i], json_object_get (lease, opt [i]));
    return out;
}

/*  vault.renew {lease_id, ttl?}: a new token for an active lease, expiring
    at most ttl (default the lease's) from now and never past the lease's
    cap (issued_at + the connection's ttl_cap). */
static void
s_renew (bus_service_t *svc, bus_request_t *req, void *arg)
{
    s_vault_t *self = arg;
    json_t *body = bus_request_body (req);
    const char *id = json_string_value (json_object_get (body, "lease_id"));
    int rc;
    bus_txn_t *txn = bus_txn_begin (bus_service_store (svc), true);
    json_t *lease = txn ? s_lease_get (self, txn, id, &rc) : NULL;
    char *token = NULL;
    if (!txn)
        rc = BUS_EIO;
    if (rc) {
        bus_service_abort (svc, &txn);
        if (rc == BUS_ENOTFOUND)
            bus_reply_error (req, PROTO_ERR_NOT_FOUND, "no lease %s", id);
        else
            bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "cannot read lease %s: %s", id, bus_strerror (rc));
        goto done;
    }
    int64_t now = s_now ();
    int64_t old_exp = json_integer_value (json_object_get (lease, "expires_at"));
    int64_t cap_at = json_integer_value (json_object_get (lease, "cap_at"));
    const char *state = json_string_value (json_object_get (lease, "state"));
    if (strcmp (state, "active") || old_exp <= now) {
        bus_service_abort (svc, &txn);
        bus_reply_error_with (req, PROTO_ERR_CONFLICT, json_pack ("{s:s}", "reason", "not_active"),
                              "lease %s is %s", id, old_exp <= now && !strcmp (state, "active") ? "expired" : state);
        goto done;
    }
    if (json_is_true (json_object_get (lease, "upstream"))) {
        bus_service_abort (svc, &txn);
        bus_reply_error (req, PROTO_ERR_NOT_IMPLEMENTED, "lease %s holds a provider's token: renewing one is not "
                         "built yet (ask for a new lease)", id);
        goto done;
    }
    int64_t ttl = json_is_integer (json_object_get (body, "ttl")) ? json_integer_value (json_object_get (body, "ttl"))
                : json_integer_value (json_object_get (lease, "ttl"));
    int64_t exp = now + ttl < cap_at ? now + ttl : cap_at;
    if (exp <= old_exp) {
        bus_service_abort (svc, &txn);
        bus_reply_error_with (req, PROTO_ERR_CONFLICT, json_pack ("{s:s, s:I}", "reason", "cap", "cap_at", (json_int_t) cap_at),
                              "lease %s cannot outlive its cap (%lld)", id, (long long) cap_at);
        goto done;
    }
    char jti [40], mac [12 + 64 + 1];
    rc = s_mint (self, lease, json_string_value (json_object_get (lease, "audience")),
                 json_string_value (json_object_get (lease, "client_id")), now, exp, &token, jti);
    uint8_t ekey [8 + S_LEASE_ID_MAX];
    size_t ekey_len;
    if (rc == 0) {
        s_exp_key (ekey, &ekey_len, old_exp * 1000, id);
        bus_txn_del (txn, self->db_exp, ekey, ekey_len);
        s_exp_key (ekey, &ekey_len, exp * 1000, id);
        rc = bus_txn_put (txn, self->db_exp, ekey, ekey_len, "", 0);
    }
    if (rc == 0) {
        s_token_hmac (self, token, mac);
        json_object_set_new (lease, "expires_at", json_integer (exp));
        json_object_set_new (lease, "jti", json_string (jti));
        json_object_set_new (lease, "token_hmac", json_string (mac));
        json_object_set_new (lease, "renewals",
                             json_integer (json_integer_value (json_object_get (lease, "renewals")) + 1));
        rc = s_lease_put (self, txn, lease);
    }
    json_t *ev = rc ? NULL : s_lease_event (lease, mac);
    if (ev) {
        json_object_set_new (ev, "previous_expires_at", json_integer (old_exp));
        json_object_set_new (ev, "renewed_at", json_integer (now));
    }
    if (rc == 0)
        rc = bus_event_append (svc, txn, "token.renewed", ev, bus_request_traceparent (req));
    if (rc) {
        bus_service_abort (svc, &txn);
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "cannot renew: %s", bus_strerror (rc));
        goto done;
    }
    bus_outcome_t out = { .body = json_pack ("{s:s, s:s, s:s, s:I, s:O}", "lease_id", id, "token", token,
                                             "token_type", "DPoP", "expires_at", (json_int_t) exp,
                                             "scopes", json_object_get (lease, "scopes")) };
    bus_request_commit (req, &txn, &out);
done:
    if (token)
        sodium_memzero (token, strlen (token));
    free (token);
    json_decref (lease);
}

/*  End an active lease in txn: state (revoked or expired), its expiry
    index entry gone, the event. Returns 0, or 1 when it was not active. */
static int
s_lease_end (s_vault_t *self, bus_txn_t *txn, json_t *lease, const char *state, const char *traceparent)
{
    if (strcmp (json_string_value (json_object_get (lease, "state")) ?: "", "active"))
        return 1;
    const char *id = json_string_value (json_object_get (lease, "lease_id"));
    uint8_t ekey [8 + S_LEASE_ID_MAX];
    size_t ekey_len;
    s_exp_key (ekey, &ekey_len, json_integer_value (json_object_get (lease, "expires_at")) * 1000, id);
    bus_txn_del (txn, self->db_exp, ekey, ekey_len);
    bool revoked = !strcmp (state, "revoked");
    if (json_is_true (json_object_get (lease, "upstream")))
        s_upstream_end (self, txn, lease);
    json_object_set_new (lease, "state", json_string (state));
    json_object_set_new (lease, revoked ? "revoked_at" : "expired_at", json_integer (s_now ()));
    int rc = s_lease_put (self, txn, lease);
    json_t *ev = s_lease_event (lease, NULL);
    json_object_set (ev, revoked ? "revoked_at" : "expired_at",
                     json_object_get (lease, revoked ? "revoked_at" : "expired_at"));
    if (rc == 0)
        rc = bus_event_append (self->svc, txn, revoked ? "token.revoked" : "token.expired", ev, traceparent);
    else
        json_decref (ev);
    return rc;
}

typedef struct {
    s_vault_t *self;
    const char *run;
    json_t *list;                   /* leases (full records) */
} s_scan_t;

static int
s_scan_lease (const void *key, size_t key_len, const void *val, size_t val_len, void *arg)
{
    s_scan_t *sc = arg;
    json_t *lease = json_loadb (val, val_len, 0, NULL);
    if (!lease)
        return 0;
    if (!sc->run || !strcmp (json_string_value (json_object_get (lease, "run")) ?: "", sc->run))
        json_array_append (sc->list, lease);
    json_decref (lease);
    return 0;
}

/*  vault.revoke {lease_id} or {run}: every active lease named ends now. */
static void
s_revoke (bus_service_t *svc, bus_request_t *req, void *arg)
{
    s_vault_t *self = arg;
    json_t *body = bus_request_body (req);
    const char *id = json_string_value (json_object_get (body, "lease_id"));
    const char *run = json_string_value (json_object_get (body, "run"));
    if (!id == !run) {
        bus_reply_error (req, PROTO_ERR_INVALID, "name either lease_id or run");
        return;
    }
    bus_txn_t *txn = bus_txn_begin (bus_service_store (svc), true);
    s_scan_t sc = { self, run, json_array () };
    int rc = txn ? 0 : BUS_EIO;
    if (rc == 0 && id) {
        json_t *lease = s_lease_get (self, txn, id, &rc);
        if (lease)
            json_array_append_new (sc.list, lease);
    }
    else if (rc == 0)
        rc = bus_txn_scan (txn, self->db_leases, NULL, 0, NULL, 0, s_scan_lease, &sc);
    if (rc == BUS_ENOTFOUND) {
        bus_service_abort (svc, &txn);
        bus_reply_error (req, PROTO_ERR_NOT_FOUND, "no lease %s", id);
        json_decref (sc.list);
        return;
    }
    json_t *revoked = json_array ();
    size_t i;
    json_t *lease;
    json_array_foreach (sc.list, i, lease) {
        if (rc)
            break;
        int r = s_lease_end (self, txn, lease, "revoked", bus_request_traceparent (req));
        if (r == 0)
            json_array_append (revoked, json_object_get (lease, "lease_id"));
        else if (r < 0)
            rc = r;
    }
    json_decref (sc.list);
    if (rc) {
        json_decref (revoked);
        bus_service_abort (svc, &txn);
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "cannot revoke: %s", bus_strerror (rc));
        return;
    }
    bus_outcome_t out = { .body = json_pack ("{s:o}", "revoked", revoked) };
    bus_request_commit (req, &txn, &out);
}

/*  vault.leases {run?}. */
static void
s_leases (bus_service_t *svc, bus_request_t *req, void *arg)
{
    s_vault_t *self = arg;
    s_scan_t sc = { self, json_string_value (json_object_get (bus_request_body (req), "run")), json_array () };
    bus_txn_t *txn = bus_txn_begin (bus_service_store (svc), false);
    int rc = txn ? bus_txn_scan (txn, self->db_leases, NULL, 0, NULL, 0, s_scan_lease, &sc) : BUS_EIO;
    bus_txn_abort (&txn);
    if (rc) {
        json_decref (sc.list);
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "cannot list leases: %s", bus_strerror (rc));
        return;
    }
    json_t *out = json_array ();
    size_t i;
    json_t *lease;
    json_array_foreach (sc.list, i, lease)
        json_array_append_new (out, s_lease_public (lease));
    json_decref (sc.list);
    bus_reply_ok (req, json_pack ("{s:o}", "leases", out));
}

/*  vault.token_used {lease_id, target?}: the orchestrator reports a use;
    published as token.used. */
static void
s_token_used (bus_service_t *svc, bus_request_t *req, void *arg)
{
    s_vault_t *self = arg;
    json_t *body = bus_request_body (req);
    const char *id = json_string_value (json_object_get (body, "lease_id"));
    int rc;
    bus_txn_t *txn = bus_txn_begin (bus_service_store (svc), true);
    json_t *lease = txn ? s_lease_get (self, txn, id, &rc) : NULL;
    if (!txn)
        rc = BUS_EIO;
    if (rc) {
        bus_service_abort (svc, &txn);
        if (rc == BUS_ENOTFOUND)
            bus_reply_error (req, PROTO_ERR_NOT_FOUND, "no lease %s", id);
        else
            bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "cannot read lease %s: %s", id, bus_strerror (rc));
        return;
    }
    int64_t now = s_now ();
    json_object_set_new (lease, "last_used_at", json_integer (now));
    rc = s_lease_put (self, txn, lease);
    json_t *ev = s_lease_event (lease, NULL);
    json_object_set_new (ev, "used_at", json_integer (now));
    json_object_set (ev, "state", json_object_get (lease, "state"));
    if (json_object_get (body, "target"))
        json_object_set (ev, "target", json_object_get (body, "target"));
    if (rc == 0)
        rc = bus_event_append (svc, txn, "token.used", ev, bus_request_traceparent (req));
    else
        json_decref (ev);
    if (rc) {
        bus_service_abort (svc, &txn);
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "cannot record the use: %s", bus_strerror (rc));
    }
    else {
        bus_outcome_t out = { .body = json_pack ("{s:s, s:I, s:O}", "lease_id", id, "used_at", (json_int_t) now,
                                                 "state", json_object_get (lease, "state")) };
        bus_request_commit (req, &txn, &out);
    }
    json_decref (lease);
}

static void
s_jwks_req (bus_service_t *svc, bus_request_t *req, void *arg)
{
    bus_reply_ok (req, s_jwks (arg));
}

/*  GET /.well-known/jwks.json (and /jwks): the signing keys. */
static void
s_http_jwks (bus_service_t *svc, void *state, bus_http_exchange_t *ex)
{
    json_t *jwks = s_jwks (state);
    char *text = jwks ? json_dumps (jwks, JSON_COMPACT) : NULL;
    bus_http_header_add (ex, "Cache-Control", "max-age=60");
    if (text)
        bus_http_respond (ex, 200, "application/jwk-set+json", text, strlen (text));
    else
        bus_http_respond (ex, 500, "application/json", "{\"error\":\"internal\"}", 20);
    free (text);
    json_decref (jwks);
}

#define S_SWEEP_MAX 256

typedef struct {
    uint64_t now_ms;
    size_t n;
    struct { uint8_t key [8 + S_LEASE_ID_MAX]; size_t len; } due [S_SWEEP_MAX];
} s_sweep_t;

static int
s_sweep_scan (const void *key, size_t key_len, const void *val, size_t val_len, void *arg)
{
    s_sweep_t *sw = arg;
    if (key_len < 8 || bus_key_to_u64 (key) > sw->now_ms)
        return 1;
    if (key_len <= sizeof sw->due [0].key) {
        memcpy (sw->due [sw->n].key, key, key_len);
        sw->due [sw->n++].len = key_len;
    }
    return sw->n >= S_SWEEP_MAX;
}

/*  The sweep: every active lease past its expiry ends (token.expired);
    signing keys retired longer than any token lives are dropped. */
static void
s_sweep (bus_service_t *svc, void *state)
{
    s_vault_t *self = state;
    static s_sweep_t sw;                 /* the reactor's alone */
    sw.now_ms = (uint64_t) s_now_ms ();
    sw.n = 0;
    bus_txn_t *txn = bus_txn_begin (bus_service_store (svc), true);
    int rc = txn ? bus_txn_scan (txn, self->db_exp, NULL, 0, NULL, 0, s_sweep_scan, &sw) : BUS_EIO;
    size_t ended = 0;
    for (size_t i = 0; i < sw.n && rc == 0; i++) {
        char id [S_LEASE_ID_MAX + 1];
        size_t n = sw.due [i].len - 8;
        memcpy (id, sw.due [i].key + 8, n);
        id [n] = 0;
        int grc;
        json_t *lease = s_lease_get (self, txn, id, &grc);
        int r = lease ? s_lease_end (self, txn, lease, "expired", NULL) : 1;
        if (r < 0)
            rc = r;
        else if (r == 1) {
            /* an entry of a lease gone or no longer active: drop it */
            bus_txn_del (txn, self->db_exp, sw.due [i].key, sw.due [i].len);
            ended++;
        }
        else
            ended++;
        json_decref (lease);
    }
    int64_t now = s_now ();
    size_t kept = 0;
    bool dropped = false;
    for (size_t k = 0; k < self->nkeys && rc == 0; k++) {
        s_sigkey_t *key = &self->keys [k];
        if (key->retired && key->retired + S_TTL_MAX + S_CLOCK_SKEW <= now) {
            char name [80];
            snprintf (name, sizeof name, "signing/%s", key->kid);
            bus_txn_del (txn, self->db_signing, name, strlen (name));
            sodium_free (key->sk);
            dropped = true;
            continue;
        }
        self->keys [kept++] = *key;
    }
    if (rc == 0)
        self->nkeys = kept;
    if (rc == 0 && (ended || dropped))
        rc = bus_service_commit (svc, &txn);
    else
        bus_service_abort (svc, &txn);
    if (rc)
        bus_warn ("vault: the lease sweep failed: %s (it runs again)", bus_strerror (rc));
    else if (ended)
        bus_debug ("vault: %zu lease(s) expired", ended);
}

static int
s_start (bus_service_t *svc, void **state)
{
    s_vault_t *self = calloc (1, sizeof *self);
    if (!self)
        return BUS_ENOMEM;
    *state = self;
    self->svc = svc;
    bus_config_t *config = bus_service_config (svc);
    bus_store_t *store = bus_service_store (svc);
    self->db_conn = bus_store_db (store, "connections");
    self->db_signing = bus_store_db (store, "signing");
    self->db_leases = bus_store_db (store, "leases");
    self->db_exp = bus_store_db (store, "lease_exp");
    self->db_approvals = bus_store_db (store, "approvals");
    self->db_upstream = bus_store_db (store, "upstream");
    bus_http_client_opts_t hopts;
    bus_http_client_opts_from_config (&hopts, config);
    self->http = bus_http_client_new (bus_service_loop (svc), &hopts);
    const char *path = bus_config_str (config, "vault", "master_key");
    char *dir = bus_config_data_dir (config, "vault-broker");
    char fallback [4200];
    snprintf (fallback, sizeof fallback, "%s/master.key", dir ? dir : ".");
    free (dir);
    char err [512] = "";
    int rc = vault_keyring_load (&self->keyring, *path ? path : fallback, err, sizeof err);
    if (rc) {
        bus_error ("vault: %s", err);
        return rc;
    }
    self->mac_key = sodium_malloc (VAULT_KEY_LEN);
    if (!self->mac_key)
        return BUS_ENOMEM;
    vault_keyring_derive (self->keyring, "tokenmac", self->mac_key);
    const char *issuer = bus_config_str (config, "vault", "issuer");
    if (*issuer)
        snprintf (self->issuer, sizeof self->issuer, "%s", issuer);
    else
        snprintf (self->issuer, sizeof self->issuer, "http://%s", bus_config_str (config, "vault", "http"));
    rc = s_keys_load (self);
    if (rc) {
        bus_error ("vault: cannot load the signing keys: %s", bus_strerror (rc));
        return rc;
    }
    bus_info ("vault: master key %u of %u, signing key %s, issuer %s", vault_keyring_current (self->keyring),
              vault_keyring_current (self->keyring), s_current_key (self)->kid, self->issuer);
    static const bus_handler_entry_t handlers [] = {
        { "vault.connect",     s_connect },
        { "vault.disconnect",  s_disconnect },
        { "vault.connections", s_connections },
        { "vault.rotate_key",  s_rotate_key },
        { "vault.lease",       s_lease },
        { "vault.renew",       s_renew },
        { "vault.revoke",      s_revoke },
        { "vault.leases",      s_leases },
        { "vault.token_used",  s_token_used },
        { "vault.jwks",        s_jwks_req },
    };
    return bus_service_handle_all (svc, handlers, sizeof handlers / sizeof handlers [0], self);
}

static void
s_stop (bus_service_t *svc, void **state)
{
    s_vault_t *self = *state;
    if (!self)
        return;
    bus_calls_destroy (&self->ciba);
    bus_http_client_destroy (&self->http);
    for (size_t i = 0; i < self->nkeys; i++)
        sodium_free (self->keys [i].sk);
    if (self->mac_key)
        sodium_free (self->mac_key);
    vault_keyring_destroy (&self->keyring);
    free (self);
    *state = NULL;
}

static const char *const s_dbs [] = { "connections", "signing", "leases", "lease_exp", "approvals", "upstream",
                                      NULL };

static const bus_timer_t s_timers [] = {
    { .name = "lease-sweep", .interval_key = "sweep_ms", .fn = s_sweep },
    { 0 }
};

static const bus_route_t s_routes [] = {
    { "GET", "/.well-known/jwks.json", s_http_jwks },
    { "GET", "/jwks", s_http_jwks },
    { 0 }
};

static const bus_listener_t s_listener = { .routes = s_routes };

const bus_daemon_t vault_daemon = {
    .section = "vault",
    .db_names = s_dbs,
    .start = s_start,
    .stop = s_stop,
    .timers = s_timers,
    .http = &s_listener,
};
