/*  sandbox_service.c — the mock ERP (sandbox_service.h): the subsets of
    Google Sheets, Gmail and Dropbox the connectors use, over HTTP on the
    service kit's listener, storing what they receive in LMDB, and a
    resource server's checks on every request:

      Authorization: DPoP <access token>   an RFC 9068 token (typ at+jwt,
                                           EdDSA) signed by a key of the
                                           vault's JWKS (fetched over HTTP,
                                           cached jwks_cache_ms; an unknown
                                           kid fetches again at once),
                                           unexpired, for this API's
                                           audience, carrying its scope, of
                                           a lease not revoked (the
                                           vault-broker's token.revoked
                                           events, followed durably)
      DPoP: <proof>                        RFC 9449: typ dpop+jwt, alg EdDSA,
                                           its jwk's thumbprint the token's
                                           cnf.jkt, htm and htu this
                                           request's, iat within 60 s, ath
                                           the token's hash, jti never seen
                                           before (kept in LMDB)

    APIs (paths as the real ones):
      POST /v4/spreadsheets/{id}/values/{range}:append   {"values": [[...]]}
      GET  /v4/spreadsheets/{id}/values/{range}
      POST /gmail/v1/users/{user}/messages/send          {"raw": base64url RFC 5322}
      POST /2/files/upload   Dropbox-API-Arg: {"path": ...}, the file as the body
    An Idempotency-Key header makes a write happen once: a repeat gets the
    first response. Errors as the real APIs answer them: Google's
    {"error": {"code", "message", "status"}}, Dropbox's {"error_summary",
    "error": {".tag"}}; 401 with WWW-Authenticate: DPoP error="...".
*/
#include "sandbox_service.h"
#include "bus_error.h"
#include "bus_http_client.h"
#include "bus_jose.h"
#include "bus_log.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_SKEW        60
#define S_JTI_KEEP    (2 * S_SKEW + 10)

#define S_AUD_SHEETS  "https://sheets.googleapis.com/"
#define S_AUD_GMAIL   "https://gmail.googleapis.com/"
#define S_AUD_DROPBOX "https://content.dropboxapi.com/"
#define S_SCOPE_SHEETS "https://www.googleapis.com/auth/spreadsheets"
#define S_SCOPE_GMAIL  "https://www.googleapis.com/auth/gmail.send"
#define S_SCOPE_DROPBOX "files.content.write"

typedef enum { S_API_SHEETS, S_API_GMAIL, S_API_DROPBOX } s_api_t;

typedef struct s_sandbox_t s_sandbox_t;

/*  A request waiting for the JWKS. */
typedef struct {
    s_sandbox_t *self;
    bus_http_exchange_t *ex;
    void (*fn) (s_sandbox_t *self, bus_http_exchange_t *ex);
} s_waiter_t;

struct s_sandbox_t {
    bus_service_t *svc;
    bus_http_client_t *http;
    int db_records, db_jti, db_idem, db_revoked;
    char jwks_url [512];
    char issuer [256];                /* "" : not checked */
    char base_url [256];
    json_t *jwks;                     /* the keys, or NULL */
    int64_t jwks_at;                  /* ms */
    int64_t cache_ms;
    bool fetching;
    zlist_t *waiters;                 /* s_waiter_t */
    bus_follow_t *revocations;        /* the vault-broker's token.revoked, durably */
};

static int64_t
s_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- answers ---------------------------------------------------------- */

static void
s_json (bus_http_exchange_t *ex, int status, json_t *body)
{
    char *text = json_dumps (body, JSON_COMPACT);
    bus_http_respond (ex, status, "application/json; charset=UTF-8", text ? text : "{}", text ? strlen (text) : 2);
    free (text);
    json_decref (body);
}

/*  An error as the API answers one; auth errors (401/403 from the token
    checks) carry WWW-Authenticate: DPoP error="<oauth_error>". */
static void
s_fail (bus_http_exchange_t *ex, s_api_t api, int status, const char *oauth_error, const char *fmt, ...)
    __attribute__((format (printf, 5, 6)));

static void
s_fail (bus_http_exchange_t *ex, s_api_t api, int status, const char *oauth_error, const char *fmt, ...)
{
    char msg [512];
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (msg, sizeof msg, fmt, ap);
    va_end (ap);
    if (oauth_error) {
        char h [700];
        snprintf (h, sizeof h, "DPoP algs=\"EdDSA\", error=\"%s\", error_description=\"%s\"", oauth_error, msg);
        for (char *p = h + 5; *p; p++)
            if (*p == '\n' || *p == '\r')
                *p = ' ';
        bus_http_header_add (ex, "WWW-Authenticate", h);
    }
    if (api == S_API_DROPBOX) {
        const char *tag = status == 401 ? "invalid_access_token" : status == 403 ? "missing_scope"
                        : status == 409 ? "path" : "bad_request";
        char summary [600];
        snprintf (summary, sizeof summary, "%s/%s", tag, msg);
        s_json (ex, status, json_pack ("{s:s, s:{s:s}}", "error_summary", summary, "error", ".tag", tag));
        return;
    }
    const char *gs = status == 401 ? "UNAUTHENTICATED" : status == 403 ? "PERMISSION_DENIED"
                   : status == 404 ? "NOT_FOUND" : status == 409 ? "ALREADY_EXISTS" : status >= 500 ? "INTERNAL"
                   : "INVALID_ARGUMENT";
    s_json (ex, status, json_pack ("{s:{s:i, s:s, s:s}}", "error", "code", status, "message", msg, "status", gs));
}

/* --- the JWKS --------------------------------------------------------- */

static void s_run_waiters (s_sandbox_t *self);

static void
s_on_jwks (const bus_http_response_t *resp, void *arg)
{
    s_sandbox_t *self = arg;
    self->fetching = false;
    json_t *jwks = resp->error == 0 && resp->status == 200 ? json_loadb (resp->body, resp->body_len, 0, NULL) : NULL;
    if (jwks && json_is_array (json_object_get (jwks, "keys"))) {
        json_decref (self->jwks);
        self->jwks = jwks;
        self->jwks_at = s_now_ms ();
    }
    else {
        bus_warn ("sandbox: JWKS from %s: %s (status %d)", self->jwks_url,
                  resp->error ? resp->reason : "not a JWKS", resp->status);
        json_decref (jwks);
    }
    s_run_waiters (self);
}

static int
s_fetch_jwks (s_sandbox_t *self)
{
    if (self->fetching)
        return 0;
    bus_http_request_t rq = { .method = "GET", .url = self->jwks_url, .timeout_ms = 5000 };
    int rc = bus_http_client_send (self->http, &rq, s_on_jwks, self, NULL);
    if (rc == 0)
        self->fetching = true;
    return rc;
}

/*  The public key of kid in the cached JWKS. */
static bool
s_key (s_sandbox_t *self, const char *kid, uint8_t pk [BUS_JOSE_PK_LEN])
{
    size_t i;
    json_t *k;
    json_array_foreach (json_object_get (self->jwks, "keys"), i, k) {
        const char *id = json_string_value (json_object_get (k, "kid"));
        if (id && kid && !strcmp (id, kid) && bus_jose_jwk_public (k, pk) == 0) {
            char tp [BUS_JOSE_KID_LEN + 1];
            bus_jose_thumbprint (tp, pk);
            return !strcmp (tp, kid);
        }
    }
    return false;
}

static void
s_waiter_gone (bus_http_exchange_t *ex, void *arg)
{
    s_waiter_t *w = arg;
    zlist_remove (w->self->waiters, w);
    free (w);
}

/* --- the checks ------------------------------------------------------- */

/*  The path of a URL (after scheme and authority), %XX decoded, without
    query or fragment, into out. */
static void
s_url_path (const char *url, char *out, size_t cap)
{
    const char *p = strstr (url, "://");
    p = p ? strchr (p + 3, '/') : NULL;
    size_t n = 0;
    for (; p && *p && *p != '?' && *p != '#' && n + 1 < cap; p++) {
        unsigned int c;
        if (*p == '%' && sscanf (p + 1, "%2x", &c) == 1) {
            out [n++] = (char) c;
            p += 2;
        }
        else
            out [n++] = *p;
    }
    out [n] = 0;
}

/*  The origin part of a URL ("http://host:port"). */
static size_t
s_url_origin_len (const char *url)
{
    const char *p = strstr (url, "://");
    const char *slash = p ? strchr (p + 3, '/') : NULL;
    return slash ? (size_t) (slash - url) : strlen (url);
}

/*  Check the token and proof of ex for api. 0 when good (claims in
    *claims_out), else -1: answered already. The proof's jti is recorded
    in a write transaction: committed here when txn_out is NULL, else
    left open in *txn_out for the request's own writes, so that a write
    and its proof make one commit (the caller commits it on every path,
    s_commit_answer or s_jti_commit). */
static int
s_authorize (s_sandbox_t *self, bus_http_exchange_t *ex, s_api_t api, json_t **claims_out, bus_txn_t **txn_out)
{
    *claims_out = NULL;
    if (txn_out)
        *txn_out = NULL;
    const char *aud = api == S_API_SHEETS ? S_AUD_SHEETS : api == S_API_GMAIL ? S_AUD_GMAIL : S_AUD_DROPBOX;
    const char *scope = api == S_API_SHEETS ? S_SCOPE_SHEETS : api == S_API_GMAIL ? S_SCOPE_GMAIL : S_SCOPE_DROPBOX;
    const char *authz = bus_http_header (ex, "Authorization");
    const char *proof = bus_http_header (ex, "DPoP");
    if (!authz || strncasecmp (authz, "DPoP ", 5)) {
        s_fail (ex, api, 401, "invalid_token", "a DPoP-bound access token is required (Authorization: DPoP ...)");
        return -1;
    }
    const char *token = authz + 5;
    bus_jws_t jwt = { 0 }, dp = { 0 };
    json_t *claims = NULL, *pclaims = NULL;
    int rc = -1;
    if (bus_jws_parse (token, &jwt)) {
        s_fail (ex, api, 401, "invalid_token", "the access token is not a JWS");
        goto done;
    }
    const char *typ = json_string_value (json_object_get (jwt.header, "typ"));
    const char *kid = json_string_value (json_object_get (jwt.header, "kid"));
    if (!typ || strcasecmp (typ, "at+jwt")) {
        s_fail (ex, api, 401, "invalid_token", "the access token is not typ at+jwt");
        goto done;
    }
    uint8_t pk [BUS_JOSE_PK_LEN];
    if (!s_key (self, kid, pk)) {       /* s_dispatch fetched the JWKS already when it had to */
        s_fail (ex, api, 401, "invalid_token", "the access token's key is not the vault's");
        goto done;
    }
    if (bus_jws_check (token, &jwt, pk)) {
        s_fail (ex, api, 401, "invalid_token", "the access token's signature does not verify");
        goto done;
    }
    claims = json_loadb ((const char *) jwt.payload, jwt.payload_len, 0, NULL);
    int64_t now = s_now_ms () / 1000;
    json_t *exp = json_object_get (claims, "exp");
    if (!json_is_object (claims) || !json_is_integer (exp) || json_integer_value (exp) <= now) {
        s_fail (ex, api, 401, "invalid_token", "the access token has expired");
        goto done;
    }
    if (json_integer_value (json_object_get (claims, "nbf")) > now + S_SKEW) {
        s_fail (ex, api, 401, "invalid_token", "the access token is not valid yet");
        goto done;
    }
    const char *iss = json_string_value (json_object_get (claims, "iss"));
    if (*self->issuer && (!iss || strcmp (iss, self->issuer))) {
        s_fail (ex, api, 401, "invalid_token", "the access token is from another issuer");
        goto done;
    }
    const char *taud = json_string_value (json_object_get (claims, "aud"));
    if (!taud || strcmp (taud, aud)) {
        s_fail (ex, api, 401, "invalid_token", "the access token is for another audience");
        goto done;
    }
    const char *tscope = json_string_value (json_object_get (claims, "scope"));
    bool has = false;
    if (tscope) {
        char *copy = strdup (tscope), *save = NULL;
        for (char *t = strtok_r (copy, " ", &save); t && !has; t = strtok_r (NULL, " ", &save))
            has = !strcmp (t, scope);
        free (copy);
    }
    if (!has) {
        s_fail (ex, api, 403, "insufficient_scope", "the access token lacks scope %s", scope);
        goto done;
    }
    const char *lease = json_string_value (json_object_get (json_object_get (claims, "sanctum"), "lease"));
    bus_txn_t *txn = bus_txn_begin (bus_service_store (self->svc), false);
    const void *v;
    size_t vlen;
    bool revoked = txn && lease && bus_txn_get (txn, self->db_revoked, lease, strlen (lease), &v, &vlen) == 0;
    bus_txn_abort (&txn);
    if (revoked) {
        s_fail (ex, api, 401, "invalid_token", "the access token's lease has been revoked");
        goto done;
    }
    /* the proof (RFC 9449 4.3) */
    const char *jkt = json_string_value (json_object_get (json_object_get (claims, "cnf"), "jkt"));
    if (!proof) {
        s_fail (ex, api, 401, "invalid_dpop_proof", "a DPoP proof is required: the token is bound to a key");
        goto done;
    }
    uint8_t ppk [BUS_JOSE_PK_LEN];
    char tp [BUS_JOSE_KID_LEN + 1];
    if (bus_jws_parse (proof, &dp) || !(typ = json_string_value (json_object_get (dp.header, "typ")))
        || strcasecmp (typ, "dpop+jwt") || bus_jose_jwk_public (json_object_get (dp.header, "jwk"), ppk)
        || bus_jws_check (proof, &dp, ppk)) {
        s_fail (ex, api, 401, "invalid_dpop_proof", "the DPoP proof is not a valid dpop+jwt signed by its jwk");
        goto done;
    }
    bus_jose_thumbprint (tp, ppk);
    if (!jkt || strcmp (tp, jkt)) {
        s_fail (ex, api, 401, "invalid_dpop_proof", "the DPoP proof's key is not the one the token is bound to");
        goto done;
    }
    pclaims = json_loadb ((const char *) dp.payload, dp.payload_len, 0, NULL);
    const char *htm = json_string_value (json_object_get (pclaims, "htm"));
    const char *htu = json_string_value (json_object_get (pclaims, "htu"));
    const char *jti = json_string_value (json_object_get (pclaims, "jti"));
    const char *ath = json_string_value (json_object_get (pclaims, "ath"));
    json_t *iat = json_object_get (pclaims, "iat");
    char upath [2048];
    if (htu)
        s_url_path (htu, upath, sizeof upath);
    size_t olen = strlen (self->base_url);
    if (!htm || strcmp (htm, bus_http_method (ex)) || !htu || s_url_origin_len (htu) != olen
        || strncmp (htu, self->base_url, olen) || strcmp (upath, bus_http_path (ex))) {
        s_fail (ex, api, 401, "invalid_dpop_proof", "the DPoP proof is for another request (htm, htu)");
        goto done;
    }
    if (!json_is_integer (iat) || json_integer_value (iat) > now + S_SKEW || json_integer_value (iat) < now - S_SKEW) {
        s_fail (ex, api, 401, "invalid_dpop_proof", "the DPoP proof's iat is not within %d s of now", S_SKEW);
        goto done;
    }
    uint8_t hash [crypto_hash_sha256_BYTES];
    crypto_hash_sha256 (hash, (const uint8_t *) token, strlen (token));
    char *want = bus_b64url_encode (hash, sizeof hash);
    bool ath_ok = ath && want && !strcmp (ath, want);
    free (want);
    if (!ath_ok) {
        s_fail (ex, api, 401, "invalid_dpop_proof", "the DPoP proof's ath is not this token's hash");
        goto done;
    }
    if (!jti || !*jti || strlen (jti) > 256) {
        s_fail (ex, api, 401, "invalid_dpop_proof", "the DPoP proof has no jti");
        goto done;
    }
    txn = bus_txn_begin (bus_service_store (self->svc), true);
    uint8_t at [8];
    bus_u64_to_key ((uint64_t) json_integer_value (iat), at);
    int prc = txn ? bus_txn_put_new (txn, self->db_jti, jti, strlen (jti), at, sizeof at) : BUS_EIO;
    if (prc == 0 && txn_out)
        *txn_out = txn;
    else if (prc == 0)
        prc = bus_txn_commit (&txn);
    else
        bus_txn_abort (&txn);
    if (prc == BUS_EEXIST) {
        s_fail (ex, api, 401, "invalid_dpop_proof", "the DPoP proof has been used before (jti replayed)");
        goto done;
    }
    if (prc) {
        s_fail (ex, api, 503, NULL, "cannot record the proof: %s", bus_strerror (prc));
        goto done;
    }
    *claims_out = claims;
    claims = NULL;
    rc = 0;
done:
    bus_jws_clear (&jwt);
    bus_jws_clear (&dp);
    json_decref (claims);
    json_decref (pclaims);
    return rc;
}

/* --- idempotency ------------------------------------------------------ */

/*  Commit the request's write transaction (s_authorize's) holding only
    its proof's jti: the request writes nothing more. 0, or it failed
    (answered 503). */
static int
s_jti_commit (s_sandbox_t *self, bus_http_exchange_t *ex, s_api_t api, bus_txn_t **txn_p)
{
    int rc = bus_service_commit (self->svc, txn_p);
    if (rc)
        s_fail (ex, api, 503, NULL, "cannot record the proof: %s", bus_strerror (rc));
    return rc;
}

/*  A repeat of an Idempotency-Key answered again (looked up in txn, the
    request's write transaction, committed then with the proof's jti):
    true when answered. */
static bool
s_idem_replay (s_sandbox_t *self, bus_http_exchange_t *ex, s_api_t api, bus_txn_t **txn_p, const char *name,
               char *key, size_t cap)
{
    const char *ik = bus_http_header (ex, "Idempotency-Key");
    *key = 0;
    if (!ik || !*ik || strlen (ik) > 255)
        return false;
    snprintf (key, cap, "%s %s", name, ik);
    const void *v;
    size_t len;
    bool found = bus_txn_get (*txn_p, self->db_idem, key, strlen (key), &v, &len) == 0;
    json_t *stored = found ? json_loadb (v, len, 0, NULL) : NULL;
    if (!stored)
        return false;
    if (s_jti_commit (self, ex, api, txn_p)) {
        json_decref (stored);
        return true;
    }
    bus_http_header_add (ex, "Idempotent-Replayed", "true");
    s_json (ex, (int) json_integer_value (json_object_get (stored, "status")),
            json_incref (json_object_get (stored, "body")));
    json_decref (stored);
    return true;
}

/*  Commit txn with the response remembered under key (when set), then answer. */
static void
s_commit_answer (s_sandbox_t *self, bus_http_exchange_t *ex, s_api_t api, bus_txn_t **txn_p, const char *key,
                 json_t *body)
{
    if (*key) {
        json_t *stored = json_pack ("{s:i, s:O}", "status", 200, "body", body);
        char *text = json_dumps (stored, JSON_COMPACT);
        bus_txn_put (*txn_p, self->db_idem, key, strlen (key), text, strlen (text));
        free (text);
        json_decref (stored);
    }
    int rc = bus_service_commit (self->svc, txn_p);
    if (rc) {
        json_decref (body);
        s_fail (ex, api, 503, NULL, "cannot store: %s", bus_strerror (rc));
        return;
    }
    s_json (ex, 200, body);
}

/* --- Sheets ----------------------------------------------------------- */

/*  /v4/spreadsheets/{id}/values/{range}[:append] into id and range. */
static bool
s_sheet_path (const char *path, char *id, size_t id_cap, char *range, size_t range_cap, bool *append)
{
    const char *p = path + strlen ("/v4/spreadsheets/");
    const char *slash = strchr (p, '/');
    if (!slash || slash == p || (size_t) (slash - p) >= id_cap || strncmp (slash, "/values/", 8))
        return false;
    memcpy (id, p, (size_t) (slash - p));
    id [slash - p] = 0;
    snprintf (range, range_cap, "%s", slash + 8);
    size_t n = strlen (range);
    *append = n > 7 && !strcmp (range + n - 7, ":append");
    if (*append)
        range [n - 7] = 0;
    return *range && !strchr (id, '/');
}

typedef struct {
    json_t *rows;
} s_rows_t;

static int
s_collect_row (const void *key, size_t key_len, const void *val, size_t val_len, void *arg)
{
    s_rows_t *r = arg;
    json_t *row = json_loadb (val, val_len, 0, NULL);
    if (row)
        json_array_append_new (r->rows, json_incref (json_object_get (row, "values")));
    json_decref (row);
    return 0;
}

/*  Every row of sheet id, in order. */
static json_t *
s_sheet_rows (s_sandbox_t *self, bus_txn_t *txn, const char *id)
{
    char prefix [300];
    snprintf (prefix, sizeof prefix, "sheet/%s/", id);
    s_rows_t r = { json_array () };
    bus_txn_scan_prefix (txn, self->db_records, prefix, strlen (prefix), s_collect_row, &r);
    return r.rows;
}

static void
s_sheets (s_sandbox_t *self, bus_http_exchange_t *ex)
{
    char id [200], range [300], key [600];
    bool append = false;
    const char *method = bus_http_method (ex);
    if (!s_sheet_path (bus_http_path (ex), id, sizeof id, range, sizeof range, &append)) {
        s_fail (ex, S_API_SHEETS, 404, NULL, "Requested entity was not found.");
        return;
    }
    json_t *claims = NULL;
    bool writes = !strcmp (method, "POST") && append;
    bus_txn_t *txn = NULL;
    int rc = s_authorize (self, ex, S_API_SHEETS, &claims, writes ? &txn : NULL);
    if (rc)
        return;
    json_decref (claims);
    if (!strcmp (method, "GET") && !append) {
        txn = bus_txn_begin (bus_service_store (self->svc), false);
        json_t *rows = txn ? s_sheet_rows (self, txn, id) : json_array ();
        bus_txn_abort (&txn);
        s_json (ex, 200, json_pack ("{s:s, s:s, s:o}", "range", range, "majorDimension", "ROWS", "values", rows));
        return;
    }
    if (!writes) {
        s_fail (ex, S_API_SHEETS, 400, NULL, "Invalid request: use POST ...:append or GET");
        return;
    }
    if (s_idem_replay (self, ex, S_API_SHEETS, &txn, "sheets", key, sizeof key))
        return;
    size_t blen = 0;
    const char *btext = bus_http_body (ex, &blen);
    json_t *body = json_loadb (btext, blen, 0, NULL);
    json_t *values = json_object_get (body, "values");
    size_t i;
    json_t *row;
    bool good = json_is_array (values) && json_array_size (values) > 0;
    size_t cols = 0;
    json_array_foreach (values, i, row) {
        good &= json_is_array (row);
        if (json_array_size (row) > cols)
            cols = json_array_size (row);
    }
    if (!good) {
        json_decref (body);
        if (s_jti_commit (self, ex, S_API_SHEETS, &txn) == 0)
            s_fail (ex, S_API_SHEETS, 400, NULL, "Invalid JSON payload: \"values\" must be a list of rows (lists)");
        return;
    }
    char prefix [300];
    snprintf (prefix, sizeof prefix, "sheet/%s/", id);
    json_t *existing = s_sheet_rows (self, txn, id);
    size_t start = json_array_size (existing);
    json_decref (existing);
    json_array_foreach (values, i, row) {
        char rkey [400];
        snprintf (rkey, sizeof rkey, "%s%012zu", prefix, start + i);
        json_t *rec = json_pack ("{s:O, s:s, s:I}", "values", row, "range", range, "at", (json_int_t) s_now_ms ());
        char *text = json_dumps (rec, JSON_COMPACT);
        bus_txn_put (txn, self->db_records, rkey, strlen (rkey), text, strlen (text));
        free (text);
        json_decref (rec);
    }
    char updated [400];
    char sheet_name [300];
    snprintf (sheet_name, sizeof sheet_name, "%s", range);
    char *bang = strchr (sheet_name, '!');
    if (bang)
        *bang = 0;
    snprintf (updated, sizeof updated, "%s!A%zu:%c%zu", sheet_name, start + 1,
              (char) ('A' + (cols ? (int) ((cols - 1) % 26) : 0)), start + json_array_size (values));
    json_t *reply = json_pack ("{s:s, s:s, s:{s:s, s:s, s:I, s:I, s:I}}", "spreadsheetId", id,
                               "tableRange", range, "updates", "spreadsheetId", id, "updatedRange", updated,
                               "updatedRows", (json_int_t) json_array_size (values),
                               "updatedColumns", (json_int_t) cols,
                               "updatedCells", (json_int_t) (cols * json_array_size (values)));
    json_decref (body);
    s_commit_answer (self, ex, S_API_SHEETS, &txn, key, reply);
}

/* --- Gmail ------------------------------------------------------------ */

static void
s_gmail (s_sandbox_t *self, bus_http_exchange_t *ex)
{
    const char *path = bus_http_path (ex);
    size_t n = strlen (path);
    char key [600];
    if (strcmp (bus_http_method (ex), "POST") || n < 14 || strcmp (path + n - 14, "/messages/send")) {
        s_fail (ex, S_API_GMAIL, 404, NULL, "Requested entity was not found.");
        return;
    }
    json_t *claims = NULL;
    bus_txn_t *txn = NULL;
    if (s_authorize (self, ex, S_API_GMAIL, &claims, &txn))
        return;
    json_decref (claims);
    if (s_idem_replay (self, ex, S_API_GMAIL, &txn, "gmail", key, sizeof key))
        return;
    size_t blen = 0;
    const char *btext = bus_http_body (ex, &blen);
    json_t *body = json_loadb (btext, blen, 0, NULL);
    const char *raw = json_string_value (json_object_get (body, "raw"));
    size_t mlen = 0;
    uint8_t *mime = raw ? bus_b64url_decode (raw, strlen (raw), &mlen) : NULL;
    if (!mime) {
        json_decref (body);
        if (s_jti_commit (self, ex, S_API_GMAIL, &txn) == 0)
            s_fail (ex, S_API_GMAIL, 400, NULL, "Invalid value for ByteString: \"raw\" must be base64url");
        return;
    }
    uint8_t rnd [8];
    randombytes_buf (rnd, sizeof rnd);
    char id [17];
    sodium_bin2hex (id, sizeof id, rnd, sizeof rnd);
    char rkey [64];
    snprintf (rkey, sizeof rkey, "mail/%s", id);
    json_t *rec = json_pack ("{s:s, s:s%, s:I}", "id", id, "message", (const char *) mime, mlen,
                             "at", (json_int_t) s_now_ms ());
    free (mime);
    json_decref (body);
    char *text = rec ? json_dumps (rec, JSON_COMPACT) : NULL;
    json_decref (rec);
    if (!text) {
        if (s_jti_commit (self, ex, S_API_GMAIL, &txn) == 0)
            s_fail (ex, S_API_GMAIL, 400, NULL, "Invalid message: not UTF-8 text");
        return;
    }
    bus_txn_put (txn, self->db_records, rkey, strlen (rkey), text, strlen (text));
    free (text);
    s_commit_answer (self, ex, S_API_GMAIL, &txn, key,
                     json_pack ("{s:s, s:s, s:[s]}", "id", id, "threadId", id, "labelIds", "SENT"));
}

/* --- Dropbox ---------------------------------------------------------- */

static void
s_dropbox (s_sandbox_t *self, bus_http_exchange_t *ex)
{
    char key [600];
    if (strcmp (bus_http_method (ex), "POST")) {
        s_fail (ex, S_API_DROPBOX, 400, NULL, "Error in call to API function \"files/upload\": use POST");
        return;
    }
    json_t *claims = NULL;
    bus_txn_t *txn = NULL;
    if (s_authorize (self, ex, S_API_DROPBOX, &claims, &txn))
        return;
    json_decref (claims);
    json_t *arg = json_loads (bus_http_header (ex, "Dropbox-API-Arg") ?: "", 0, NULL);
    const char *path = json_string_value (json_object_get (arg, "path"));
    if (!path || path [0] != '/' || strlen (path) > 512) {
        json_decref (arg);
        if (s_jti_commit (self, ex, S_API_DROPBOX, &txn) == 0)
            s_fail (ex, S_API_DROPBOX, 400, NULL,
                    "Error in call to API function \"files/upload\": Dropbox-API-Arg needs a \"path\" starting with /");
        return;
    }
    if (s_idem_replay (self, ex, S_API_DROPBOX, &txn, "dropbox", key, sizeof key)) {
        json_decref (arg);
        return;
    }
    size_t blen = 0;
    const char *data = bus_http_body (ex, &blen);
    uint8_t hash [crypto_hash_sha256_BYTES];
    crypto_hash_sha256 (hash, (const uint8_t *) data, blen);
    char hex [65];
    sodium_bin2hex (hex, sizeof hex, hash, sizeof hash);
    char *b64 = bus_b64url_encode (data, blen);
    char rkey [600];
    snprintf (rkey, sizeof rkey, "file%s", path);
    const char *name = strrchr (path, '/') + 1;
    json_t *meta = json_pack ("{s:s, s:s, s:s, s:s, s:I, s:s}", "name", name, "path_lower", path,
                              "path_display", path, "id", hex + 48, "size", (json_int_t) blen, "content_hash", hex);
    json_t *rec = json_pack ("{s:O, s:s, s:I}", "meta", meta, "content", b64 ? b64 : "", "at", (json_int_t) s_now_ms ());
    free (b64);
    char *text = json_dumps (rec, JSON_COMPACT);
    json_decref (rec);
    json_decref (arg);
    if (!text) {
        bus_service_abort (self->svc, &txn);
        json_decref (meta);
        s_fail (ex, S_API_DROPBOX, 503, NULL, "unavailable");
        return;
    }
    bus_txn_put (txn, self->db_records, rkey, strlen (rkey), text, strlen (text));
    free (text);
    s_commit_answer (self, ex, S_API_DROPBOX, &txn, key, meta);
}

/* --- routing: requests wait for the JWKS when they must ---------------- */

static void
s_dispatch (s_sandbox_t *self, bus_http_exchange_t *ex, void (*fn) (s_sandbox_t *, bus_http_exchange_t *),
            s_api_t api)
{
    /* a request whose token names a key not in the cache (or a stale
       cache) waits for the JWKS: s_authorize says so with 1 */
    const char *authz = bus_http_header (ex, "Authorization");
    bus_jws_t jwt = { 0 };
    bool must_fetch = false;
    if (authz && !strncasecmp (authz, "DPoP ", 5) && bus_jws_parse (authz + 5, &jwt) == 0) {
        uint8_t pk [BUS_JOSE_PK_LEN];
        const char *kid = json_string_value (json_object_get (jwt.header, "kid"));
        bool stale = s_now_ms () - self->jwks_at > self->cache_ms;
        must_fetch = stale || (!s_key (self, kid, pk) && s_now_ms () - self->jwks_at > 1000);
    }
    bus_jws_clear (&jwt);
    if (!must_fetch) {
        fn (self, ex);
        return;
    }
    s_waiter_t *w = calloc (1, sizeof *w);
    if (!w || s_fetch_jwks (self)) {
        free (w);
        s_fail (ex, api, 503, NULL, "cannot fetch the vault's keys");
        return;
    }
    w->self = self;
    w->ex = ex;
    w->fn = fn;
    zlist_append (self->waiters, w);
    bus_http_defer (ex, s_waiter_gone, w);
}

static void
s_run_waiters (s_sandbox_t *self)
{
    s_waiter_t *w;
    /* fetched (or failed): each waiter now checks with what the cache holds */
    int64_t saved = self->jwks_at;
    if (self->jwks_at == 0 || s_now_ms () - self->jwks_at > self->cache_ms)
        self->jwks_at = s_now_ms ();        /* a failed fetch is not retried for this batch */
    while ((w = zlist_pop (self->waiters))) {
        w->fn (self, w->ex);
        free (w);
    }
    if (!self->jwks)
        self->jwks_at = saved;
}

static void
s_route_sheets (bus_service_t *svc, void *state, bus_http_exchange_t *ex)
{
    s_dispatch (state, ex, s_sheets, S_API_SHEETS);
}

static void
s_route_gmail (bus_service_t *svc, void *state, bus_http_exchange_t *ex)
{
    s_dispatch (state, ex, s_gmail, S_API_GMAIL);
}

static void
s_route_dropbox (bus_service_t *svc, void *state, bus_http_exchange_t *ex)
{
    s_dispatch (state, ex, s_dropbox, S_API_DROPBOX);
}

/* --- the bus ---------------------------------------------------------- */

/*  sandbox.rows {sheet}. */
static void
s_rows (bus_service_t *svc, bus_request_t *req, void *arg)
{
    s_sandbox_t *self = arg;
    const char *sheet = json_string_value (json_object_get (bus_request_body (req), "sheet"));
    bus_txn_t *txn = bus_txn_begin (bus_service_store (svc), false);
    if (!txn) {
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "cannot read the store");
        return;
    }
    json_t *rows = s_sheet_rows (self, txn, sheet);
    bus_txn_abort (&txn);
    bus_reply_ok (req, json_pack ("{s:s, s:o}", "sheet", sheet, "rows", rows));
}

/*  token.revoked from the vault-broker: its lease's tokens are refused. */
static int
s_on_revoked (bus_follow_t *follow, bus_txn_t *txn, proto_msg_t *event, void *arg)
{
    s_sandbox_t *self = arg;
    const char *lease = json_string_value (json_object_get (event->body, "lease_id"));
    if (!lease || !*lease || strlen (lease) > 128)
        return 0;
    uint8_t at [8];
    bus_u64_to_key ((uint64_t) s_now_ms (), at);
    return bus_txn_put (txn, self->db_revoked, lease, strlen (lease), at, sizeof at);
}

static int
s_jti_old (const void *key, size_t key_len, const void *val, size_t val_len, void *arg)
{
    zlist_t *old = arg;
    if (val_len == 8 && (int64_t) bus_key_to_u64 (val) < s_now_ms () / 1000 - S_JTI_KEEP && zlist_size (old) < 1000)
        zlist_append (old, strndup (key, key_len));
    return 0;
}

/*  Forget proofs too old to be accepted again anyway (their iat). */
static void
s_prune (bus_service_t *svc, void *state)
{
    s_sandbox_t *self = state;
    zlist_t *old = zlist_new ();
    zlist_autofree (old);
    bus_txn_t *txn = bus_txn_begin (bus_service_store (svc), true);
    if (txn)
        bus_txn_scan (txn, self->db_jti, NULL, 0, NULL, 0, s_jti_old, old);
    for (char *k = zlist_first (old); k && txn; k = zlist_next (old))
        bus_txn_del (txn, self->db_jti, k, strlen (k));
    if (txn && zlist_size (old)) {
        if (bus_txn_commit (&txn))
            bus_warn ("sandbox: cannot prune the DPoP replay cache");
    }
    else
        bus_txn_abort (&txn);
    zlist_destroy (&old);
}

static int
s_start (bus_service_t *svc, void **state)
{
    s_sandbox_t *self = calloc (1, sizeof *self);
    if (!self)
        return BUS_ENOMEM;
    *state = self;
    self->svc = svc;
    bus_config_t *config = bus_service_config (svc);
    bus_store_t *store = bus_service_store (svc);
    self->db_records = bus_store_db (store, "records");
    self->db_jti = bus_store_db (store, "dpop_jti");
    self->db_idem = bus_store_db (store, "idempotency");
    self->db_revoked = bus_store_db (store, "revoked");
    self->cache_ms = bus_config_int (config, "sandbox", "jwks_cache_ms");
    const char *url = bus_config_str (config, "sandbox", "jwks_url");
    if (*url)
        snprintf (self->jwks_url, sizeof self->jwks_url, "%s", url);
    else {
        snprintf (self->jwks_url, sizeof self->jwks_url, "http://%s/.well-known/jwks.json",
                  bus_config_str (config, "vault", "http"));
        const char *iss = bus_config_str (config, "vault", "issuer");
        if (*iss)
            snprintf (self->issuer, sizeof self->issuer, "%s", iss);
        else
            snprintf (self->issuer, sizeof self->issuer, "http://%s", bus_config_str (config, "vault", "http"));
    }
    const char *base = bus_config_str (config, "sandbox", "base_url");
    if (*base)
        snprintf (self->base_url, sizeof self->base_url, "%s", base);
    else
        snprintf (self->base_url, sizeof self->base_url, "http://%s", bus_config_str (config, "sandbox", "http"));
    size_t bl = strlen (self->base_url);
    if (bl && self->base_url [bl - 1] == '/')
        self->base_url [bl - 1] = 0;
    self->waiters = zlist_new ();
    bus_http_client_opts_t opts;
    bus_http_client_opts_from_config (&opts, config);
    self->http = bus_http_client_new (bus_service_loop (svc), &opts);
    if (!self->http || !self->waiters)
        return BUS_ENOMEM;
    /* revocations: followed when the vault-broker is known (its key in
       keys_dir); a sandbox without one cannot fetch its keys either, so
       it accepts no token at all */
    static const char *const topics [] = { "token.revoked", NULL };
    bus_follow_opts_t fo = { .name = "revocations", .topics = topics, .fn = s_on_revoked, .arg = self };
    self->revocations = bus_follow_for (svc, &fo, false);
    if (!self->revocations)
        return BUS_ENOMEM;
    if (bus_follow_add_service (self->revocations, config, "vault-broker"))
        bus_warn ("sandbox: the vault-broker is not known here (no key): its revocations are not followed");
    bus_info ("sandbox: tokens from %s, proofs for %s", self->jwks_url, self->base_url);
    return bus_service_handle (svc, "sandbox.rows", s_rows, self);
}

static void
s_stop (bus_service_t *svc, void **state)
{
    s_sandbox_t *self = *state;
    if (!self)
        return;
    s_waiter_t *w;
    while (self->waiters && (w = zlist_pop (self->waiters)))
        free (w);
    zlist_destroy (&self->waiters);
    bus_follow_destroy (&self->revocations);
    bus_http_client_destroy (&self->http);
    json_decref (self->jwks);
    free (self);
    *state = NULL;
}

static const char *const s_dbs [] = { "records", "dpop_jti", "idempotency", "revoked", BUS_FOLLOW_DB, NULL };

static const bus_timer_t s_timers [] = {
    { .name = "dpop-prune", .interval_ms = 10000, .fn = s_prune },
    { 0 }
};

static const bus_route_t s_routes [] = {
    { NULL, "/v4/spreadsheets/*", s_route_sheets },
    { NULL, "/gmail/v1/users/*", s_route_gmail },
    { NULL, "/2/files/upload", s_route_dropbox },
    { 0 }
};

static const bus_listener_t s_listener = { .routes = s_routes };

const bus_daemon_t sandbox_daemon = {
    .section = "sandbox",
    .db_names = s_dbs,
    .start = s_start,
    .stop = s_stop,
    .timers = s_timers,
    .http = &s_listener,
};
