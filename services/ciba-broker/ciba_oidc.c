/*  ciba_oidc.c — the ciba-broker's backend oidc: each level a CIBA
    request at a provider (Auth0 or any), POST bc-authorize with client
    authentication (client_secret_post, client_secret_basic or
    private_key_jwt), then token polls with
    grant_type=urn:openid:params:grant-type:ciba honouring interval,
    slow_down (+5 s for this and every later poll) and Retry-After. All
    HTTP on the service's reactor (bus_http_client.h); each answer is
    applied in a write transaction of its own, to the level it was for
    (dropped when the level has moved on); a request goes out only once
    the change that asked for it is durable (ciba_after_commit). The
    client secret (or key) comes from a file or a systemd credential and
    is never logged. PROTOCOL.md 10.4 lists the states.
*/
#include "ciba_internal.h"
#include "bus_error.h"
#include "bus_jose.h"
#include "bus_keys.h"
#include "bus_log.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_HTTP_TIMEOUT_MS 10000

/*  A request to the provider on its way: which level it is for. */
typedef struct {
    ciba_t *self;
    char approval_id [PROTO_ID_LEN + 1];
    char auth_req_id [48];
    bool token;                  /* a token poll (else bc-authorize) */
} s_oidc_job_t;

/*  The provider's name of an approver: what follows the principal class
    ("user:alice" -> "alice"). */
static const char *
s_sub_of (const char *approver)
{
    const char *colon = strchr (approver, ':');
    return colon ? colon + 1 : approver;
}

/*  The binding message in Auth0's character set: letters, digits, space
    and + - _ . , : # ("$520,000" becomes "USD 520,000"); other
    characters become spaces (s_sanitise collapses them). Caller frees. */
char *
ciba_oidc_charset (const char *in)
{
    size_t n = strlen (in);
    char *out = malloc (4 * n + 1), *o = out;
    if (!out)
        return NULL;
    for (const char *p = in; *p; p++) {
        unsigned char c = (unsigned char) *p;
        if (c == '$') {
            memcpy (o, "USD ", 4);
            o += 4;
        }
        else if (isalnum (c) || strchr (" +-_.,:#", c))
            *o++ = (char) c;
        else
            *o++ = ' ';
    }
    *o = 0;
    return out;
}

static void s_oidc_done (const bus_http_response_t *response, void *arg);

/*  Level i is due its next request to the provider (in a change, any
    thread): until the answer, the level's poll_at is a guard (the
    request's deadline and a second), so a broker restarted meanwhile, or
    a change that was not stored, asks again; the request is noted in
    after, sent once the change is durable. Before discovery has
    answered, the guard is short and nothing is noted. */
void
ciba_oidc_due (ciba_t *self, json_t *a, size_t i, int64_t now, json_t *after)
{
    json_t *lvl = json_array_get (json_object_get (a, "levels"), i);
    if (!atomic_load (&self->oidc_ready)) {
        ciba_set_int (lvl, "poll_at", now + 200 * 1000LL);       /* the endpoints are not known yet */
        return;
    }
    int64_t guard = now + (S_HTTP_TIMEOUT_MS + 1000) * 1000LL;
    ciba_set_int (lvl, "poll_at", guard);
    ciba_after_note (after, a, i, "poll", guard);
}

/*  x-www-form-urlencoded form of one value (RFC 6749 2.3.1 asks it of
    client_secret_basic's id and secret): unreserved bytes kept, the rest
    %XX. Caller frees (and wipes: it may hold the secret). */
static char *
s_form_escape (const char *in)
{
    size_t n = strlen (in);
    char *out = malloc (3 * n + 1), *o = out;
    if (!out)
        return NULL;
    for (const unsigned char *p = (const unsigned char *) in; *p; p++)
        if (isalnum (*p) || strchr ("-._~", *p))
            *o++ = (char) *p;
        else
            o += sprintf (o, "%%%02X", *p);
    *o = 0;
    return out;
}

/*  The Authorization header of client_secret_basic (RFC 6749 2.3.1):
    "Authorization: Basic base64(escape(id) ":" escape(secret))". Caller
    wipes and frees. NULL when out of memory. */
static char *
s_basic_header (ciba_t *self)
{
    char *id = s_form_escape (self->client_id), *secret = s_form_escape (self->secret);
    char *pair = NULL, *header = NULL;
    if (id && secret && asprintf (&pair, "%s:%s", id, secret) >= 0) {
        size_t b64_len = sodium_base64_encoded_len (strlen (pair), sodium_base64_VARIANT_ORIGINAL);
        header = malloc (b64_len + 32);
        if (header) {
            int k = sprintf (header, "Authorization: Basic ");
            sodium_bin2base64 (header + k, b64_len, (const unsigned char *) pair, strlen (pair),
                               sodium_base64_VARIANT_ORIGINAL);
        }
    }
    if (secret)
        sodium_memzero (secret, strlen (secret));
    if (pair)
        sodium_memzero (pair, strlen (pair));
    free (id);
    free (secret);
    free (pair);
    return header;
}

/*  A private_key_jwt client assertion (RFC 7523 2.2, OpenID Connect
    Core 9): a JWS (EdDSA, the client key's thumbprint as kid) of {iss,
    sub: the client id, aud: the provider's issuer, jti, iat, exp: a
    minute on}. Caller frees. NULL when out of memory. */
static char *
s_client_assertion (ciba_t *self)
{
    uint8_t raw [16];
    randombytes_buf (raw, sizeof raw);
    char *jti = bus_b64url_encode (raw, sizeof raw), *jws = NULL, *text = NULL;
    int64_t now = proto_now_us () / 1000000;
    json_t *header = json_pack ("{s:s, s:s}", "kid", self->jwt_kid, "typ", "JWT");
    json_t *claims = jti ? json_pack ("{s:s, s:s, s:s, s:s, s:I, s:I}", "iss", self->client_id, "sub",
                                      self->client_id, "aud", self->iss, "jti", jti, "iat", (json_int_t) now,
                                      "exp", (json_int_t) (now + 60)) : NULL;
    text = claims ? json_dumps (claims, JSON_COMPACT) : NULL;
    if (!header || !text || bus_jws_sign (header, text, strlen (text), self->jwt_sk, &jws))
        jws = NULL;
    json_decref (header);
    json_decref (claims);
    free (text);
    free (jti);
    return jws;
}

/*  The client's credentials on one request, as oidc_client_auth says:
    appended to pairs at *k (client_secret_post: client_id and
    client_secret; private_key_jwt: client_id, client_assertion_type and
    client_assertion, the assertion malloc'd into *assertion), or an
    Authorization header into *header (client_secret_basic). Returns 0 or
    BUS_ENOMEM. */
static int
s_client_auth (ciba_t *self, const char **pairs, int *k, char **assertion, char **header)
{
    if (self->client_auth == CIBA_AUTH_BASIC) {
        *header = s_basic_header (self);
        return *header ? 0 : BUS_ENOMEM;
    }
    pairs [(*k)++] = "client_id";
    pairs [(*k)++] = self->client_id;
    if (self->client_auth == CIBA_AUTH_JWT) {
        *assertion = s_client_assertion (self);
        pairs [(*k)++] = "client_assertion_type";
        pairs [(*k)++] = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
        pairs [(*k)++] = "client_assertion";
        pairs [(*k)++] = *assertion;
        return *assertion ? 0 : BUS_ENOMEM;
    }
    pairs [(*k)++] = "client_secret";
    pairs [(*k)++] = self->secret;
    return 0;
}

/*  Send level i's next request to the provider, from the stored
    approval a (reactor): bc-authorize when the level has no provider
    auth_req_id yet, else a token poll; the client authenticated as
    oidc_client_auth says. */
void
ciba_oidc_request (ciba_t *self, json_t *a, size_t i)
{
    json_t *lvl = json_array_get (json_object_get (a, "levels"), i);
    if (!atomic_load (&self->oidc_ready) || !lvl)
        return;
    s_oidc_job_t *job = calloc (1, sizeof *job);
    if (!job)
        return;
    job->self = self;
    snprintf (job->approval_id, sizeof job->approval_id, "%s", ciba_str (a, "approval_id"));
    snprintf (job->auth_req_id, sizeof job->auth_req_id, "%s", ciba_str (lvl, "auth_req_id"));
    const char *provider_id = ciba_str (lvl, "provider_auth_req_id");
    char *form = NULL, *hint = NULL, *details = NULL, *basic = NULL, *assertion = NULL, expiry [24];
    const char *pairs [24];
    int k = 0;
    if (provider_id) {
        job->token = true;
        pairs [k++] = "grant_type";
        pairs [k++] = "urn:openid:params:grant-type:ciba";
        pairs [k++] = "auth_req_id";
        pairs [k++] = provider_id;
    }
    else {
        const char *sub = s_sub_of (ciba_str (lvl, "approver"));
        if (self->hint_iss_sub) {
            json_t *h = json_pack ("{s:s, s:s, s:s}", "format", "iss_sub", "iss", self->iss, "sub", sub);
            hint = h ? json_dumps (h, JSON_COMPACT) : NULL;
            json_decref (h);
        }
        else
            hint = strdup (sub);
        int64_t left = (ciba_int (a, "expires_at") - proto_now_us ()) / 1000000;
        snprintf (expiry, sizeof expiry, "%lld",
                  (long long) (left < 1 ? 1 : left > self->expiry_max_s ? self->expiry_max_s : left));
        json_t *ad = json_object_get (a, "authorization_details");
        details = json_array_size (ad) ? json_dumps (ad, JSON_COMPACT) : NULL;
        pairs [k++] = "scope";
        pairs [k++] = "openid";
        pairs [k++] = "login_hint";
        pairs [k++] = hint ? hint : "";
        pairs [k++] = "binding_message";
        pairs [k++] = ciba_str (a, "binding_message");
        pairs [k++] = "requested_expiry";
        pairs [k++] = expiry;
        if (details) {
            pairs [k++] = "authorization_details";
            pairs [k++] = details;
        }
        if (*self->audience) {
            pairs [k++] = "audience";
            pairs [k++] = self->audience;
        }
    }
    int rc = s_client_auth (self, pairs, &k, &assertion, &basic);
    pairs [k] = NULL;
    if (rc == 0 && !(form = bus_http_form_encode (pairs)))
        rc = BUS_ENOMEM;
    const char *headers [] = { basic, NULL };
    bus_http_request_t req = { .method = "POST", .url = job->token ? self->token_url : self->bc_url,
                               .headers = basic ? headers : NULL,
                               .content_type = "application/x-www-form-urlencoded", .body = form,
                               .body_len = form ? strlen (form) : 0, .timeout_ms = S_HTTP_TIMEOUT_MS };
    if (rc == 0)
        rc = bus_http_client_send (self->http, &req, s_oidc_done, job, NULL);
    if (form)
        sodium_memzero (form, strlen (form));      /* it may hold the client secret */
    if (basic)
        sodium_memzero (basic, strlen (basic));
    free (form);
    free (basic);
    free (assertion);
    free (hint);
    free (details);
    if (rc) {
        bus_warn ("ciba: cannot send to the provider: %s (tried again at the next poll)", bus_strerror (rc));
        free (job);
    }
}

/*  The seconds of a Retry-After header (delta-seconds form), or 0. */
static int64_t
s_retry_after (const bus_http_response_t *r)
{
    const char *v = bus_http_response_header (r, "Retry-After");
    char *end = NULL;
    long long n = v ? strtoll (v, &end, 10) : 0;
    return v && end && end != v && n > 0 && n < 3600 ? n : 0;
}

/*  The claims of an ID token (its payload, not its signature: it came
    straight from the token endpoint over the connection the client
    authenticated, OpenID Connect Core 3.1.3.7 (6)), or NULL. */
static json_t *
s_id_token_claims (const char *jwt)
{
    const char *dot1 = jwt ? strchr (jwt, '.') : NULL;
    const char *dot2 = dot1 ? strchr (dot1 + 1, '.') : NULL;
    if (!dot2 || dot2 - dot1 - 1 > 16384)
        return NULL;
    size_t len = 0;
    uint8_t buf [12288];
    if (sodium_base642bin (buf, sizeof buf, dot1 + 1, (size_t) (dot2 - dot1 - 1), NULL, &len, NULL,
                           sodium_base64_VARIANT_URLSAFE_NO_PADDING))
        return NULL;
    return json_loadb ((const char *) buf, len, 0, NULL);
}

/*  Does the ID token name the approver asked, for us, from our issuer? */
static const char *
s_id_token_wrong (ciba_t *self, json_t *claims, const char *sub)
{
    json_t *aud = json_object_get (claims, "aud");
    bool aud_ok = json_is_string (aud) ? streq (json_string_value (aud), self->client_id) : false;
    size_t k;
    json_t *v;
    json_array_foreach (aud, k, v)
        aud_ok = aud_ok || streq (json_string_value (v) ?: "", self->client_id);
    if (!claims)
        return "the ID token cannot be read";
    if (!streq (ciba_str (claims, "sub") ?: "", sub))
        return "the ID token's sub is not the approver asked";
    if (!streq (ciba_str (claims, "iss") ?: "", self->iss))
        return "the ID token's iss is not the provider's";
    if (!aud_ok)
        return "the ID token's aud is not this client";
    return NULL;
}

/*  Level i ended by the provider's word: state (the level's), event, and
    the approval's outcome. */
static void
s_oidc_end (ciba_t *self, bus_txn_t *txn, json_t *a, size_t i, const char *state, const char *error,
            int64_t now)
{
    json_t *lvl = json_array_get (json_object_get (a, "levels"), i);
    ciba_set_str (lvl, "state", state);
    ciba_set_int (lvl, "decided_at", now);
    ciba_set_int (lvl, "poll_at", 0);
    if (error)
        ciba_set_str (lvl, "provider_error", error);
    if (streq (state, "expired")) {
        ciba_level_event (self, txn, "ciba.expired", a, i, NULL, NULL);
        ciba_complete (self, txn, a, "expired", NULL, now, NULL);
        return;
    }
    ciba_level_event (self, txn, "ciba.denied", a, i, json_pack ("{s:s, s:s?}", "state", state, "error", error), NULL);
    ciba_complete (self, txn, a, "denied", streq (state, "denied") ? NULL : state, now, NULL);
}

/*  The provider answered a request of level job->auth_req_id: apply it
    in a transaction of its own (the level may have moved on meanwhile:
    escalated, cancelled, expired; then the answer is dropped). */
static void
s_oidc_done (const bus_http_response_t *r, void *arg)
{
    s_oidc_job_t *job = arg;
    ciba_t *self = job->self;
    int64_t now = proto_now_us ();
    json_t *after = json_array ();
    bus_txn_t *txn = after ? bus_txn_begin (self->store, true) : NULL;
    json_t *a = txn ? ciba_load (self, txn, job->approval_id) : NULL;
    json_t *levels = json_object_get (a, "levels"), *lvl = NULL, *body = NULL;
    size_t i = 0, k;
    json_t *l;
    json_array_foreach (levels, k, l)
        if (streq (ciba_str (l, "auth_req_id") ?: "", job->auth_req_id))
            lvl = l, i = k;
    if (!lvl || !streq (ciba_str (a, "state") ?: "", "pending") || !streq (ciba_str (lvl, "state") ?: "", "pending")
        || (size_t) ciba_int (a, "current") != i) {
        bus_service_abort (self->svc, &txn);
        goto done;
    }
    body = r->error ? NULL : json_loadb (r->body, r->body_len, 0, NULL);
    const char *error = ciba_str (body, "error");
    int64_t interval = ciba_int (lvl, "interval") ?: self->default_interval_s;
    int64_t wait_s = interval;
    const char *poll = NULL;
    if (r->error)
        poll = "network_error";
    else if (!job->token && r->status == 200 && json_is_string (json_object_get (body, "auth_req_id"))) {
        ciba_set_str (lvl, "provider_auth_req_id", ciba_str (body, "auth_req_id"));
        if (json_integer_value (json_object_get (body, "interval")) > 0)
            interval = wait_s = json_integer_value (json_object_get (body, "interval"));
        ciba_set_int (lvl, "interval", interval);
        poll = "authorization_pending";
    }
    else if (job->token && r->status == 200 && json_is_string (json_object_get (body, "id_token"))) {
        json_t *claims = s_id_token_claims (ciba_str (body, "id_token"));
        const char *sub = s_sub_of (ciba_str (lvl, "approver"));
        const char *wrong = s_id_token_wrong (self, claims, sub);
        json_decref (claims);
        if (wrong) {
            bus_warn ("ciba: approval %s level %zu: %s", job->approval_id, i, wrong);
            s_oidc_end (self, txn, a, i, "request_rejected", wrong, now);
        }
        else {
            ciba_set_str (lvl, "state", "approved");
            ciba_set_str (lvl, "provider_sub", sub);
            ciba_set_int (lvl, "decided_at", now);
            ciba_set_int (lvl, "poll_at", 0);
            ciba_set_int (lvl, "deadline", 0);
            ciba_level_event (self, txn, "ciba.approved", a, i, json_pack ("{s:s, s:s}", "provider", "oidc",
                                                                         "sub", sub), NULL);
            if (i + 1 < json_array_size (levels))
                ciba_ask (self, txn, a, i + 1, now, NULL, after);
            else
                ciba_complete (self, txn, a, "approved", NULL, now, NULL);
        }
    }
    else if (r->status == 401 || (error && streq (error, "invalid_client"))) {
        /* the operator's to fix: say what the provider said (its words hold no secret of ours) */
        bus_warn ("ciba: the provider refused this client (approval %s level %zu): %.200s", job->approval_id, i,
                  ciba_str (body, "error_description") ?: error ?: "HTTP 401");
        s_oidc_end (self, txn, a, i, "invalid_client", "invalid_client", now);
    }
    else if (!error || r->status >= 500 || r->status == 429)
        poll = r->status == 429 ? "slow_down" : "provider_error";     /* garbage, an outage: try again */
    else if (streq (error, "authorization_pending"))
        poll = "authorization_pending";
    else if (streq (error, "slow_down")) {
        interval += 5;                                       /* for this and every later poll */
        ciba_set_int (lvl, "interval", interval);
        wait_s = interval;
        poll = "slow_down";
    }
    else if (streq (error, "access_denied"))
        s_oidc_end (self, txn, a, i, "denied", error, now);
    else if (streq (error, "expired_token"))
        s_oidc_end (self, txn, a, i, "expired", error, now);
    else if (streq (error, "invalid_grant"))
        s_oidc_end (self, txn, a, i, "invalid_grant", error, now);
    else if (!job->token && streq (error, "unknown_user_id")) {
        if (ciba_pass_level (self, txn, a, i, "approver_not_enrolled", now, NULL))
            ciba_ask (self, txn, a, i + 1, now, NULL, after);
    }
    else
        s_oidc_end (self, txn, a, i, "request_rejected", error, now);
    if (poll) {
        int64_t ra = s_retry_after (r);
        if (ra > wait_s)
            wait_s = ra;
        ciba_set_str (lvl, "poll", poll);
        ciba_set_int (lvl, "poll_at", now + wait_s * 1000000LL);
    }
    ciba_save (self, txn, a);
    int rc = bus_service_commit (self->svc, &txn);
    if (rc)
        bus_warn ("ciba: the provider's answer for approval %s was not stored: %s (asked again)",
                  job->approval_id, bus_strerror (rc));
    else
        ciba_after_commit (self, after);
done:
    json_decref (after);
    json_decref (body);
    json_decref (a);
    free (job);
}

/*  The provider's discovery document answered: its endpoints, else
    Auth0's paths under the issuer. */
static void
s_oidc_discovered (const bus_http_response_t *r, void *arg)
{
    ciba_t *self = arg;
    json_t *doc = !r->error && r->status == 200 ? json_loadb (r->body, r->body_len, 0, NULL) : NULL;
    const char *bc = ciba_str (doc, "backchannel_authentication_endpoint");
    const char *token = ciba_str (doc, "token_endpoint");
    const char *iss = ciba_str (doc, "issuer");
    if (bc && token) {
        free (self->bc_url);
        free (self->token_url);
        self->bc_url = strdup (bc);
        self->token_url = strdup (token);
        if (iss) {
            free (self->iss);
            self->iss = strdup (iss);
        }
        bus_info ("ciba: provider %s: bc-authorize %s, token %s", self->iss, bc, token);
    }
    else
        bus_warn ("ciba: no CIBA endpoints in %s/.well-known/openid-configuration (%s): using %s and %s",
                  self->issuer, r->error ? r->reason : "no backchannel_authentication_endpoint", self->bc_url,
                  self->token_url);
    json_decref (doc);
    atomic_store (&self->oidc_ready, true);
}

/*  private_key_jwt: the client's key, a private Ed25519 JWK ({"kty":
    "OKP", "crv": "Ed25519", "d", "x"}; the provider holds its public
    part) in text, read from file (named in errors, its content never).
    Returns 0 or BUS_ECONFIG. */
static int
s_client_key (ciba_t *self, const char *text, const char *file)
{
    json_t *jwk = json_loads (text, 0, NULL);
    uint8_t seed [32], pk [BUS_JOSE_PK_LEN], want [BUS_JOSE_PK_LEN];
    bool ok = jwk && streq (ciba_str (jwk, "kty") ?: "", "OKP") && streq (ciba_str (jwk, "crv") ?: "", "Ed25519")
           && ciba_str (jwk, "d") && bus_b64url_decode_fixed (ciba_str (jwk, "d"), seed, sizeof seed) == 0;
    if (ok) {
        crypto_sign_seed_keypair (pk, self->jwt_sk, seed);
        /* an x that is given must be the d's */
        ok = !ciba_str (jwk, "x") || (bus_b64url_decode_fixed (ciba_str (jwk, "x"), want, sizeof want) == 0
                                      && memcmp (want, pk, sizeof pk) == 0);
        bus_jose_thumbprint (self->jwt_kid, pk);
    }
    sodium_memzero (seed, sizeof seed);
    json_t *d = json_object_get (jwk, "d");
    if (json_is_string (d))
        sodium_memzero ((char *) json_string_value (d), json_string_length (d));
    json_decref (jwk);
    if (!ok) {
        sodium_memzero (self->jwt_sk, sizeof self->jwt_sk);
        bus_error ("ciba: oidc_client_auth private_key_jwt: %s must hold a private Ed25519 JWK "
                   "(kty OKP, crv Ed25519, d, and x matching d when given)", file);
        return BUS_ECONFIG;
    }
    bus_info ("ciba: private_key_jwt with key %s", self->jwt_kid);
    return 0;
}

/*  Start the oidc backend: config, secret, the HTTP client, discovery. */
int
ciba_oidc_start (ciba_t *self, bus_config_t *config)
{
    const char *issuer = bus_config_str (config, "ciba", "oidc_issuer");
    const char *secret_file = bus_config_str (config, "ciba", "oidc_client_secret_file");
    const char *credential = bus_config_str (config, "ciba", "oidc_client_secret_credential");
    const char *client_id = bus_config_str (config, "ciba", "oidc_client_id");
    const char *auth = bus_config_str (config, "ciba", "oidc_client_auth");
    bool from_file = secret_file && *secret_file, from_cred = credential && *credential;
    if (!issuer || !*issuer || !client_id || !*client_id || from_file == from_cred) {
        bus_error ("ciba: backend oidc needs oidc_issuer, oidc_client_id and one of oidc_client_secret_file "
                   "or oidc_client_secret_credential");
        return BUS_ECONFIG;
    }
    if (!streq (auth ?: "", "client_secret_post") && !streq (auth ?: "", "client_secret_basic")
        && !streq (auth ?: "", "private_key_jwt")) {
        bus_error ("ciba: oidc_client_auth must be client_secret_post, client_secret_basic or private_key_jwt");
        return BUS_ECONFIG;
    }
    self->client_auth = streq (auth, "client_secret_basic") ? CIBA_AUTH_BASIC
                      : streq (auth, "private_key_jwt") ? CIBA_AUTH_JWT : CIBA_AUTH_POST;
    char path [4096];
    if (from_cred) {
        /* a systemd credential (the shipped unit's LoadCredential=
           ciba-oidc-client.secret): a plain name under $CREDENTIALS_DIRECTORY */
        char why [512];
        if (bus_credential_path (path, sizeof path, credential, "ciba: oidc_client_secret_credential", why,
                                 sizeof why)) {
            bus_error ("%s", why);
            return BUS_ECONFIG;
        }
        secret_file = path;
    }
    FILE *f = fopen (secret_file, "r");
    char buf [4096] = "";
    size_t got = f ? fread (buf, 1, sizeof buf - 1, f) : 0;
    bool opened = f != NULL;
    if (f)
        fclose (f);
    buf [got] = 0;
    int rc = 0;
    if (strspn (buf, " \t\r\n") == got) {
        /* missing, unreadable, or blank: the shipped unit's default (a
           newline, SetCredential=) when /etc/sanctum/ciba-oidc-client.secret
           is absent */
        bus_error ("ciba: the client secret %s is %s", secret_file, opened ? "empty" : "not readable");
        rc = BUS_ECONFIG;
    }
    else if (self->client_auth == CIBA_AUTH_JWT)
        rc = s_client_key (self, buf, secret_file);
    else {
        buf [strcspn (buf, "\r\n")] = 0;            /* the secret is the first line */
        if (!*buf) {
            bus_error ("ciba: cannot read the client secret from %s", secret_file);
            rc = BUS_ECONFIG;
        }
        else if (!(self->secret = strdup (buf)))
            rc = BUS_ENOMEM;
    }
    sodium_memzero (buf, sizeof buf);
    if (rc)
        return rc;
    self->issuer = strdup (issuer);
    size_t n = strlen (self->issuer);
    while (n > 0 && self->issuer [n - 1] == '/')
        self->issuer [--n] = 0;
    /* Auth0's iss (and its iss_sub login hint) ends in a slash */
    if (asprintf (&self->iss, "%s/", self->issuer) < 0 || asprintf (&self->bc_url, "%s/bc-authorize", self->issuer) < 0
        || asprintf (&self->token_url, "%s/oauth/token", self->issuer) < 0)
        return BUS_ENOMEM;
    self->client_id = strdup (client_id);
    self->audience = strdup (bus_config_str (config, "ciba", "oidc_audience") ?: "");
    const char *hint = bus_config_str (config, "ciba", "oidc_login_hint");
    const char *charset = bus_config_str (config, "ciba", "oidc_binding_charset");
    if (!streq (hint ?: "", "iss_sub") && !streq (hint ?: "", "plain")) {
        bus_error ("ciba: oidc_login_hint must be iss_sub or plain");
        return BUS_ECONFIG;
    }
    if (!streq (charset ?: "", "auth0") && !streq (charset ?: "", "any")) {
        bus_error ("ciba: oidc_binding_charset must be auth0 or any");
        return BUS_ECONFIG;
    }
    self->hint_iss_sub = streq (hint, "iss_sub");
    self->auth0_charset = streq (charset, "auth0");
    self->expiry_max_s = bus_config_int (config, "ciba", "oidc_requested_expiry_max");
    self->default_interval_s = bus_config_int (config, "ciba", "oidc_default_interval_s");
    bus_http_client_opts_t opts;
    bus_http_client_opts_from_config (&opts, config);
    self->http = bus_http_client_new (bus_service_loop (self->svc), &opts);
    if (!self->http || !self->client_id || !self->audience)
        return BUS_ENOMEM;
    char url [2048];
    snprintf (url, sizeof url, "%s/.well-known/openid-configuration", self->issuer);
    bus_http_request_t req = { .method = "GET", .url = url, .timeout_ms = 10000 };
    rc = bus_http_client_send (self->http, &req, s_oidc_discovered, self, NULL);
    if (rc)
        bus_error ("ciba: oidc_issuer %s: %s", self->issuer, bus_strerror (rc));
    return rc;
}

void
ciba_oidc_stop (ciba_t *self)
{
    bus_http_client_destroy (&self->http);
    if (self->secret)
        sodium_memzero (self->secret, strlen (self->secret));
    sodium_memzero (self->jwt_sk, sizeof self->jwt_sk);
    free (self->secret);
    free (self->issuer);
    free (self->iss);
    free (self->bc_url);
    free (self->token_url);
    free (self->client_id);
    free (self->audience);
}

