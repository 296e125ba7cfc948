/*  vault_tokens.c — the vault-broker's signing keys and the tokens they
    sign (vault_internal.h): Ed25519 keys sealed in the signing store,
    retired on rotation and dropped once they outlive every token they
    signed; RFC 9068 access tokens bound to the node's key (cnf.jkt); the
    HMAC events carry instead of a token; the JWKS, as vault.jwks and over
    HTTP (GET /.well-known/jwks.json and /jwks).

    Threads: the reactor's (the keys live in vault_t, unlocked).
*/
#include "vault_internal.h"
#include "bus_error.h"
#include "bus_log.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/* --- signing keys ----------------------------------------------------- */

/*  The key that signs now (vault_internal.h). */
vault_sigkey_t *
vault_current_key (vault_t *self)
{
    for (size_t i = self->nkeys; i > 0; i--)
        if (self->keys [i - 1].retired == 0)
            return &self->keys [i - 1];
    return NULL;
}

/*  Keep a signing key in memory from its seed. */
static int
s_key_add (vault_t *self, const uint8_t seed [32], int64_t created, int64_t retired)
{
    if (self->nkeys >= VAULT_SIGKEYS_MAX)
        return BUS_EFULL;
    vault_sigkey_t *k = &self->keys [self->nkeys];
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

/*  The stored, public part of signing key k. */
static json_t *
s_key_meta (const vault_sigkey_t *k)
{
    return json_pack ("{s:s, s:I, s:I}", "kid", k->kid, "created", (json_int_t) k->created,
                      "retired", (json_int_t) k->retired);
}

/*  Store signing key k (its seed is the first half of its libsodium secret key). */
static int
s_key_store (vault_t *self, bus_txn_t *txn, const vault_sigkey_t *k)
{
    char key [80];
    snprintf (key, sizeof key, "signing/%s", k->kid);
    json_t *meta = s_key_meta (k);
    int rc = meta ? vault_put_sealed (self, txn, self->db_signing, key, meta, k->sk, 32) : BUS_ENOMEM;
    json_decref (meta);
    return rc;
}

/*  A new signing key, stored in txn; the one signing before it retires. */
int
vault_key_new (vault_t *self, bus_txn_t *txn)
{
    uint8_t *seed = sodium_malloc (32);
    if (!seed)
        return BUS_ENOMEM;
    randombytes_buf (seed, 32);
    vault_sigkey_t *old = vault_current_key (self);
    int rc = s_key_add (self, seed, vault_now (), 0);
    sodium_free (seed);
    if (rc == 0 && old) {
        old->retired = vault_now ();
        rc = s_key_store (self, txn, old);
    }
    if (rc == 0)
        rc = s_key_store (self, txn, &self->keys [self->nkeys - 1]);
    return rc;
}

typedef struct {
    vault_t *self;
    bus_txn_t *txn;
    int rc;
} s_load_t;

/*  Load one stored signing key into memory (a failure is logged, kept in ld->rc). */
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
    int rc = vault_get_sealed (ld->self, ld->txn, ld->self->db_signing, name, &meta, &plain, &off, &len, NULL);
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

/*  Oldest first. */
static int
s_key_cmp (const void *a, const void *b)
{
    const vault_sigkey_t *x = a, *y = b;
    return x->created < y->created ? -1 : x->created > y->created;
}

/*  Load the signing keys, making the first one when there is none. */
int
vault_keys_load (vault_t *self)
{
    bus_txn_t *txn = bus_txn_begin (bus_service_store (self->svc), true);
    if (!txn)
        return BUS_EIO;
    s_load_t ld = { self, txn, 0 };
    int rc = bus_txn_scan (txn, self->db_signing, NULL, 0, NULL, 0, s_load_key, &ld);
    if (rc == 0)
        rc = ld.rc;
    qsort (self->keys, self->nkeys, sizeof self->keys [0], s_key_cmp);
    if (rc == 0 && !vault_current_key (self))
        rc = vault_key_new (self, txn);
    if (rc == 0)
        rc = bus_service_commit (self->svc, &txn);
    else
        bus_service_abort (self->svc, &txn);
    return rc;
}

/*  Has retired key k outlived every token it signed (and the clock skew)? */
static bool
s_key_outlived (const vault_sigkey_t *k, int64_t now)
{
    return k->retired && k->retired + VAULT_TTL_MAX + VAULT_CLOCK_SKEW <= now;
}

/*  The JWKS: the keys that sign now or signed a token still alive. */
static json_t *
s_jwks (vault_t *self)
{
    json_t *keys = json_array ();
    int64_t now = vault_now ();
    for (size_t i = 0; i < self->nkeys; i++) {
        const vault_sigkey_t *k = &self->keys [i];
        if (!s_key_outlived (k, now))
            json_array_append_new (keys, bus_jose_jwk (k->pk));
    }
    return json_pack ("{s:o}", "keys", keys);
}

/*  "hmac-sha256:<hex>" of a token: what events carry instead of it. */
void
vault_token_hmac (vault_t *self, const char *token, char out [VAULT_HMAC_TEXT_LEN])
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
int
vault_mint (vault_t *self, json_t *lease, const char *audience, const char *client_id, int64_t iat,
        int64_t exp, char **token, char jti_out [40])
{
    vault_sigkey_t *k = vault_current_key (self);
    if (!k)
        return BUS_ESTATE;
    uint8_t rnd [16];
    randombytes_buf (rnd, sizeof rnd);
    char *jti = bus_b64url_encode (rnd, sizeof rnd);
    char *scope = vault_scope_text (json_object_get (lease, "scopes"));
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

/*  vault.jwks: the JWKS. */
void
vault_jwks_req (bus_service_t *svc, bus_request_t *req, void *arg)
{
    bus_reply_ok (req, s_jwks (arg));
}

/*  GET /.well-known/jwks.json (and /jwks): the signing keys. */
void
vault_http_jwks (bus_service_t *svc, void *state, bus_http_exchange_t *ex)
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

/*  Drop, in txn and in memory, the signing keys retired longer than any
    token lives; true when one was dropped (txn then needs committing). */
bool
vault_keys_drop_retired (vault_t *self, bus_txn_t *txn)
{
    int64_t now = vault_now ();
    size_t kept = 0;
    bool dropped = false;
    for (size_t k = 0; k < self->nkeys; k++) {
        vault_sigkey_t *key = &self->keys [k];
        if (s_key_outlived (key, now)) {
            char name [80];
            snprintf (name, sizeof name, "signing/%s", key->kid);
            bus_txn_del (txn, self->db_signing, name, strlen (name));
            sodium_free (key->sk);
            dropped = true;
            continue;
        }
        self->keys [kept++] = *key;
    }
    self->nkeys = kept;
    return dropped;
}
