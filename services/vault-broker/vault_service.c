/*  vault_service.c — the vault-broker daemon (vault_service.h): its
    declaration (bus_daemon_t: stores, the sweep timer, the JWKS routes),
    start and stop, and the handler table. The handlers live by concept:
    vault_accounts.c (connected accounts, sealed records, key rotation),
    vault_leases.c (leases and the sweep), vault_tokens.c (signing keys,
    minting, the JWKS) and vault_upstream.c (`oauth` and `auth0` modes);
    vault_internal.h is what they share.

    Built: connected accounts (vault.connect / disconnect / connections,
    sealed at rest, vault.rotate_key, a paced background re-seal pass;
    the master keyring from a file or a systemd credential), leases
    (vault.lease, renew, revoke, leases, token_used) in `local` mode
    (RFC 9068 tokens bound to the node's key; the JWKS over HTTP and as
    vault.jwks), `oauth` mode (a refresh-token grant at the provider, its
    token revoked upstream when the lease ends) and `auth0` mode (Auth0
    Token Vault's federated connection token exchange), renewals in all
    three (a provider's token kept, within its own expiry); the expiry
    sweep.

    Records (LMDB):
      connections  "connection/<name>" -> sealed (meta JSON, NUL, secret [NUL client secret])
      signing      "signing/<kid>"     -> sealed (meta JSON, NUL, 32-byte seed)
      leases       <lease_id>          -> lease JSON (no token, no secret)
      lease_exp    be64 (expires_at ms) ‖ <lease_id> -> "" (active leases)
      lease_run    <run> ‖ NUL ‖ <lease_id> -> "" (every lease, by run: written
                   with the lease; built at start for a store of before it)
      approvals    <approval id>       -> <lease_id> (each approval yields one lease)
      upstream     "lease/<lease_id>"  -> sealed (oauth: the provider's token until the lease ends)

    Threads: the reactor, and the service's writer thread ([vault]
    writer_thread): a lone lease commits on the reactor; leases that queue
    commit on the writer (bus_request_write), grouped (one fsync for the group), each with its expiry
    entry, the approval used, its event and the request's outcome, before
    its token is answered. The outcome recorded for retries holds the
    token sealed (s_outcome_seal: under outcome_key, derived from the
    first master key), never in plain text.
*/
#include "vault_service.h"
#include "vault_internal.h"
#include "bus_error.h"
#include "bus_log.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*  The wall clock (vault_internal.h). */
int64_t
vault_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
vault_now (void)
{
    return vault_now_ms () / 1000;
}

/*  The associated data of a recorded reply's sealed token: who asked, and
    the request id (a sealed token moved to another record does not open). */
static void
s_outcome_ad (bus_request_t *req, char *ad, size_t len)
{
    snprintf (ad, len, "outcome\n%s\n%s", bus_request_principal (req), bus_request_msg (req)->id);
}

/*  bus_service_outcome_sealer's seal (the reactor or the writer: reads
    only the derived key, set before either runs): a reply's "token" is
    stored as "token_sealed", base64url (nonce ‖ XChaCha20-Poly1305
    ciphertext ‖ tag), so that no token is ever on disk in plain text. */
static json_t *
s_outcome_seal (bus_request_t *req, json_t *outcome, void *arg)
{
    vault_t *self = arg;
    json_t *body = json_object_get (outcome, "body");
    const char *token = json_string_value (json_object_get (body, "token"));
    if (!token)
        return json_incref (outcome);
    char ad [PROTO_PRINCIPAL_MAX + PROTO_ID_LEN + 16];
    s_outcome_ad (req, ad, sizeof ad);
    size_t len = strlen (token);
    size_t n = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + len + crypto_aead_xchacha20poly1305_ietf_ABYTES;
    uint8_t *rec = malloc (n);
    if (!rec)
        return NULL;
    randombytes_buf (rec, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
    crypto_aead_xchacha20poly1305_ietf_encrypt (rec + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, NULL,
                                                (const uint8_t *) token, len, (const uint8_t *) ad, strlen (ad),
                                                NULL, rec, self->outcome_key);
    char *text = bus_b64url_encode (rec, n);
    free (rec);
    json_t *copy = json_copy (body);
    json_t *out = text && copy ? json_pack ("{s:O}", "body", copy) : NULL;
    if (out) {
        json_t *b = json_object_get (out, "body");
        json_object_del (b, "token");
        json_object_set_new (b, "token_sealed", json_string (text));
    }
    json_decref (copy);
    free (text);
    return out;
}

/*  bus_service_outcome_sealer's open (the reactor): the token back, or
    NULL (the retry is answered `internal`) when it does not open. */
static json_t *
s_outcome_open (bus_request_t *req, json_t *outcome, void *arg)
{
    vault_t *self = arg;
    json_t *body = json_object_get (outcome, "body");
    const char *text = json_string_value (json_object_get (body, "token_sealed"));
    if (!text)
        return json_incref (outcome);
    char ad [PROTO_PRINCIPAL_MAX + PROTO_ID_LEN + 16];
    s_outcome_ad (req, ad, sizeof ad);
    size_t n = 0;
    uint8_t *rec = bus_b64url_decode (text, strlen (text), &n);
    size_t over = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + crypto_aead_xchacha20poly1305_ietf_ABYTES;
    char *token = rec && n >= over ? sodium_malloc (n - over + 1) : NULL;
    json_t *out = NULL;
    unsigned long long len = 0;
    if (token && crypto_aead_xchacha20poly1305_ietf_decrypt ((uint8_t *) token, &len, NULL,
                                                             rec + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
                                                             n - crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
                                                             (const uint8_t *) ad, strlen (ad), rec,
                                                             self->outcome_key) == 0) {
        token [len] = 0;
        json_t *copy = json_copy (body);
        json_object_del (copy, "token_sealed");
        json_object_set_new (copy, "token", json_string (token));
        out = json_pack ("{s:o}", "body", copy);
    }
    else
        bus_warn ("vault: the recorded reply to %s %s does not open: answered internal",
                  bus_request_msg (req)->type, bus_request_msg (req)->id);
    if (token)
        sodium_free (token);
    free (rec);
    return out;
}

/*  Open the stores, the keyring, the HTTP client and the signing keys;
    register the handlers. */
static int
s_start (bus_service_t *svc, void **state)
{
    vault_t *self = calloc (1, sizeof *self);
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
    self->db_lease_run = bus_store_db (store, "lease_run");
    self->db_run_ended = bus_store_db (store, "run_ended");
    self->db_lease_ended = bus_store_db (store, "lease_ended");
    bus_http_client_opts_t hopts;
    bus_http_client_opts_from_config (&hopts, config);
    self->http = bus_http_client_new (bus_service_loop (svc), &hopts);
    const char *path = bus_config_str (config, "vault", "master_key");
    char *dir = bus_config_data_dir (config, "vault-broker");
    char fallback [4200];
    snprintf (fallback, sizeof fallback, "%s/master.key", dir ? dir : ".");
    free (dir);
    char err [512] = "";
    const char *cred = bus_config_str (config, "vault", "master_key_credential");
    int rc;
    if (*cred && *path) {
        bus_error ("vault: set [vault] master_key or master_key_credential, not both");
        return BUS_EINVAL;
    }
    if (*cred)
        rc = vault_keyring_load_credential (&self->keyring, cred, err, sizeof err);
    else
        rc = vault_keyring_load (&self->keyring, *path ? path : fallback, err, sizeof err);
    if (rc) {
        bus_error ("vault: %s", err);
        return rc;
    }
    self->mac_key = sodium_malloc (VAULT_KEY_LEN);
    if (!self->mac_key)
        return BUS_ENOMEM;
    vault_keyring_derive (self->keyring, "tokenmac", self->mac_key);
    self->outcome_key = sodium_malloc (VAULT_KEY_LEN);
    if (!self->outcome_key)
        return BUS_ENOMEM;
    vault_keyring_derive (self->keyring, "outcome", self->outcome_key);
    rc = bus_service_outcome_sealer (svc, s_outcome_seal, s_outcome_open, self);
    if (rc == 0 && bus_config_bool (config, "vault", "writer_thread"))
        rc = bus_service_writer (svc, NULL, NULL, NULL);
    if (rc)
        return rc;
    const char *issuer = bus_config_str (config, "vault", "issuer");
    if (*issuer)
        snprintf (self->issuer, sizeof self->issuer, "%s", issuer);
    else
        snprintf (self->issuer, sizeof self->issuer, "http://%s", bus_config_str (config, "vault", "http"));
    vault_reseal_start (self);         /* records of an older key left by a stop mid-pass */
    rc = vault_keys_load (self);
    if (rc) {
        bus_error ("vault: cannot load the signing keys: %s", bus_strerror (rc));
        return rc;
    }
    bus_info ("vault: master key %u of %u, signing key %s, issuer %s", vault_keyring_current (self->keyring),
              vault_keyring_current (self->keyring), vault_current_key (self)->kid, self->issuer);
    rc = vault_lease_index (self);
    if (rc) {
        bus_error ("vault: cannot index the leases by run: %s", bus_strerror (rc));
        return rc;
    }
    rc = vault_approvals_follow (self);
    if (rc)
        return rc;
    static const bus_handler_entry_t handlers [] = {
        { "vault.connect",     vault_connect },
        { "vault.disconnect",  vault_disconnect },
        { "vault.connections", vault_connections },
        { "vault.rotate_key",  vault_rotate_key },
        { "vault.lease",       vault_lease },
        { "vault.renew",       vault_renew },
        { "vault.revoke",      vault_revoke },
        { "vault.leases",      vault_leases },
        { "vault.token_used",  vault_token_used },
        { "vault.jwks",        vault_jwks_req },
    };
    return bus_service_handle_all (svc, handlers, sizeof handlers / sizeof handlers [0], self);
}

/*  Free what s_start made, wiping the keys. */
static void
s_stop (bus_service_t *svc, void **state)
{
    vault_t *self = *state;
    if (!self)
        return;
    vault_approvals_stop (self);
    bus_calls_destroy (&self->ciba);
    bus_http_client_destroy (&self->http);
    for (size_t i = 0; i < self->nkeys; i++)
        sodium_free (self->keys [i].sk);
    if (self->mac_key)
        sodium_free (self->mac_key);
    if (self->outcome_key)
        sodium_free (self->outcome_key);
    vault_keyring_destroy (&self->keyring);
    free (self);
    *state = NULL;
}

static const char *const s_dbs [] = { "connections", "signing", "leases", "lease_exp", "approvals", "upstream",
                                      "lease_run", "run_ended", "lease_ended", NULL };

static const bus_timer_t s_timers [] = {
    { .name = "lease-sweep", .interval_key = "sweep_ms", .fn = vault_sweep },
    { .name = "reseal", .interval_key = "reseal_ms", .fn = vault_reseal },
    { 0 }
};

static const bus_route_t s_routes [] = {
    { "GET", "/.well-known/jwks.json", vault_http_jwks },
    { "GET", "/jwks", vault_http_jwks },
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
