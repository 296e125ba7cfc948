/*  vault_upstream.c — leases whose token comes from the provider
    (vault_internal.h): `oauth` mode (a refresh-token grant at the
    connection's token endpoint) and `auth0` mode (Auth0 Token Vault's
    federated connection access token exchange), both over
    bus_http_client; the provider's refusals told apart; the token
    revoked upstream (RFC 7009) when its lease ends. A renewal
    (vault_leases.c) moves the lease's expiry, within its cap and the
    provider's own expiry for the token (expires_in), and answers the same
    token: no new grant, so no second token to track (and none revoked
    early: some providers revoke the whole grant with one of its tokens).

    Forms holding a secret are wiped once sent; the provider's token is
    sealed (vault_lease_store) and never logged.

    Threads: the reactor's (the HTTP answers arrive on it).
*/
#include "vault_internal.h"
#include "bus_error.h"
#include "bus_log.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/*  The secrets of a connection: its credential (refresh token) and its
    client secret, NUL-separated in the sealed record's secret part, in
    sodium memory (*plain; free with vault_plain_free). Read in txn, or in
    a read transaction of its own when txn is NULL. */
static int
s_conn_secrets (vault_t *self, bus_txn_t *in, const char *name, json_t **meta, uint8_t **plain,
                const char **secret, const char **client_secret)
{
    char key [160];
    snprintf (key, sizeof key, "connection/%s", name);
    size_t off = 0, len = 0;
    bus_txn_t *txn = in ? in : bus_txn_begin (bus_service_store (self->svc), false);
    int rc = txn ? vault_get_sealed (self, txn, self->db_conn, key, meta, plain, &off, &len, NULL) : BUS_EIO;
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
s_post_form (vault_t *self, const char *url, const char *const *pairs, bus_http_done_fn *done, void *arg)
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
    vault_lease_job_t *job = arg;
    bus_request_t *req = job->req;
    const char *name = json_string_value (json_object_get (job->lease, "connection"));
    if (resp->error) {
        bus_reply_error_with (req, PROTO_ERR_UNAVAILABLE, json_pack ("{s:s}", "reason", "network"),
                              "connection %s: the token endpoint did not answer: %s", name, resp->reason);
        vault_lease_job_free (job);
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
        json_t *in = json_object_get (b, "expires_in");
        job->upstream_expires_in = json_is_integer (in) && json_integer_value (in) > 0 ? json_integer_value (in) : 0;
        vault_lease_store (job, access, type && !strcasecmp (type, "dpop") ? "DPoP" : "Bearer");
        sodium_memzero ((char *) access, strlen (access));
    }
    else if (auth0 && (reason = s_auth0_reason (resp->status, error,
                                                json_string_value (json_object_get (b, "error_description"))))) {
        bus_reply_error_with (req, PROTO_ERR_FORBIDDEN, json_pack ("{s:s, s:i}", "reason", reason,
                                                                    "status", resp->status),
                              "connection %s: Auth0 refused the exchange: %s", name, reason);
        vault_lease_job_free (job);
    }
    else if (!auth0 && error && (!strcmp (error, "invalid_grant") || !strcmp (error, "unauthorized_client")
                                 || !strcmp (error, "invalid_client") || !strcmp (error, "invalid_scope"))) {
        bus_reply_error_with (req, PROTO_ERR_FORBIDDEN, json_pack ("{s:s}", "reason", error),
                              "connection %s: the provider refused the grant: %s", name, error);
        vault_lease_job_free (job);
    }
    else {
        bus_reply_error_with (req, PROTO_ERR_UNAVAILABLE, json_pack ("{s:s, s:i}", "reason", "provider_error",
                                                                      "status", resp->status),
                              "connection %s: the token endpoint answered %d%s%s", name, resp->status,
                              error ? ": " : " without a token", error ? error : "");
        vault_lease_job_free (job);
    }
    json_decref (b);
}

/*  oauth mode: a refresh-token grant at the connection's token endpoint. */
void
vault_upstream_start (vault_lease_job_t *job)
{
    vault_t *self = job->self;
    const char *name = json_string_value (json_object_get (job->lease, "connection"));
    json_t *meta = NULL;
    uint8_t *plain = NULL;
    const char *secret = NULL, *client_secret = NULL;
    int rc = s_conn_secrets (self, NULL, name, &meta, &plain, &secret, &client_secret);
    if (rc) {
        vault_reply_sealed_error (job->req, "connection", rc);
        vault_lease_job_free (job);
        return;
    }
    char *scope = vault_scope_text (json_object_get (job->lease, "scopes"));
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
        vault_lease_job_free (job);
    }
}

/*  The provider's answer to a revocation: only logged. */
static void
s_on_revoked_upstream (const bus_http_response_t *resp, void *arg)
{
    if (resp->error || resp->status != 200)
        bus_warn ("vault: an upstream token revocation failed: %s (status %d)",
                  resp->error ? resp->reason : "refused", resp->status);
}

/*  Revoke token at the provider of connection, when the connection names
    a revocation endpoint (RFC 7009); the connection read in txn, or in a
    read transaction of its own when txn is NULL. what names the token in
    the log. */
static void
s_revoke_upstream (vault_t *self, bus_txn_t *txn, const char *connection, const char *token,
                   const char *what)
{
    json_t *meta = NULL;
    uint8_t *plain = NULL;
    const char *secret = NULL, *client_secret = NULL;
    if (connection && s_conn_secrets (self, txn, connection, &meta, &plain, &secret, &client_secret) == 0) {
        const char *endpoint = json_string_value (json_object_get (meta, "revocation_endpoint"));
        const char *client_id = json_string_value (json_object_get (meta, "client_id"));
        const char *pairs [] = { "token", token, "token_type_hint", "access_token",
                                 "client_id", client_id ? client_id : "",
                                 *client_secret ? "client_secret" : NULL, client_secret, NULL };
        if (endpoint && self->http && s_post_form (self, endpoint, pairs, s_on_revoked_upstream, NULL))
            bus_warn ("vault: cannot send the revocation of %s's upstream token", what);
    }
    json_decref (meta);
    vault_plain_free (&plain);
}

/*  A lease with an upstream token ends: the token is forgotten (its sealed
    record deleted in txn) and revoked at the provider when the connection
    names a revocation endpoint (RFC 7009). */
void
vault_upstream_end (vault_t *self, bus_txn_t *txn, json_t *lease)
{
    const char *id = json_string_value (json_object_get (lease, "lease_id"));
    char ukey [VAULT_LEASE_ID_MAX + 8];
    snprintf (ukey, sizeof ukey, "lease/%s", id);
    json_t *none = NULL;
    uint8_t *tok = NULL;
    size_t off = 0, len = 0;
    if (vault_get_sealed (self, txn, self->db_upstream, ukey, &none, &tok, &off, &len, NULL) == 0)
        s_revoke_upstream (self, txn, json_string_value (json_object_get (lease, "connection")),
                           (const char *) tok + off, id);
    bus_txn_del (txn, self->db_upstream, ukey, strlen (ukey));
    json_decref (none);
    vault_plain_free (&tok);
}

/*  A provider's token obtained for a lease that was then not stored
    (refused in its commit: the run ended, the approval yielded a lease
    meanwhile; or the commit failed): nobody holds it, so it is revoked
    at the provider, as at a lease's end. Reactor only. */
void
vault_upstream_discard (vault_t *self, const char *connection, const char *token)
{
    s_revoke_upstream (self, NULL, connection, token, "a lease not issued");
    bus_stats_count (bus_service_stats (self->svc), "upstream_tokens_discarded", 1);
}
