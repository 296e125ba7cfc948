/*  orch_connector.h — the orchestrator's tool connectors: pure functions
    that turn a tool node's (templated) args into the HTTP request the
    upstream API expects, and its response into run state.

    Connectors and their real request shapes (base URL from config, the
    sandbox by default, so the same code speaks to Google and Dropbox):
      sheets.append   POST {base}/v4/spreadsheets/{spreadsheet_id}/values/
                      {range}:append?valueInputOption=USER_ENTERED|RAW
                      body {"values":[[...]]}
      gmail.send      POST {base}/gmail/v1/users/me/messages/send
                      body {"raw": base64url (RFC 5322 message)}
      dropbox.upload  POST {base}/2/files/upload, header Dropbox-API-Arg
                      (JSON: path, mode, autorename, mute), body the file
                      (application/octet-stream)
      http.request    method, url, headers, json body as the args say
    Every request carries "Authorization: DPoP <token>", a DPoP proof
    (RFC 9449: typ dpop+jwt, alg EdDSA, the node's public jwk; claims htm,
    htu, iat, jti, ath = base64url (SHA-256 (token))) signed by the step's
    ephemeral node key, and "Idempotency-Key: <run/node/attempt>".

    Classification of a response (orch_connector_response): a transport
    error, 429 or 5xx is RETRY (Retry-After honoured); 2xx is OK; any other
    status is FAIL with the upstream's error JSON.

    Nothing here keeps state, does I/O or logs: every function is
    thread-safe. Errors: -1 with err (errlen bytes, NUL-terminated, may be
    truncated) naming the connector and the field. No token or key ever
    goes into err. Ownership: *out and *result are the caller's
    (orch_http_call_destroy, json_decref); strings returned are malloc'd.
*/
#ifndef ORCH_CONNECTOR_H
#define ORCH_CONNECTOR_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/*  One tool call, everything borrowed for the length of the call. */
typedef struct {
    const char *connector;        /* "sheets.append" | "gmail.send" | "dropbox.upload" | "http.request" */
    const json_t *args;           /* the tool node's args after templating (jansson) */
    const char *base_url;         /* for this connector, from config (sandbox by default) */
    const char *token;            /* the leased access token */
    const uint8_t *node_pk;       /* Ed25519 public key (32) of the step's ephemeral node key */
    const uint8_t *node_sk;       /* its secret key (64, libsodium form) */
    const char *idempotency_key;  /* "run/node/attempt" */
} orch_call_t;

/*  The request to send; maps 1:1 onto bus_http_request_t. Owned by the
    caller once returned: free with orch_http_call_destroy. */
typedef struct {                  /* maps 1:1 onto bus_http_request_t */
    char *method; char *url; char **headers /* "Name: value", NULL-terminated */;
    char *content_type; char *body; size_t body_len;
} orch_http_call_t;

/*  1 when connector names a known connector, else 0. */
int orch_connector_known (const char *connector);

/*  At workflow load: check that args_template (the node's args before
    templating; "{{...}}" strings stand for any value) has every field the
    connector requires, of the right type where it is literal. 0, or -1
    with err naming the field ("sheets.append: args.values: required"). */
int orch_connector_check_args (const char *connector, const json_t *args_template,
                               char *err, size_t errlen);

/*  Build the HTTP request for call into *out (the caller's). 0, or -1
    with err (unknown connector, a missing or mistyped arg, a bad base
    URL, a signing failure). */
int orch_connector_request (const orch_call_t *call, orch_http_call_t **out,
                            char *err, size_t errlen);

/*  Free a request and null the caller's pointer; accepts NULL. */
void orch_http_call_destroy (orch_http_call_t **self_p);

typedef enum { ORCH_CALL_OK, ORCH_CALL_RETRY, ORCH_CALL_FAIL } orch_call_outcome_t;

/*  Classify a response (transport_error != 0 → RETRY). *result (the
    caller's, never NULL on return unless out of memory): the JSON to put
    in run state (OK: the upstream's JSON body, or {status, body} when it
    is not JSON) or {status, error} (FAIL/RETRY; error the upstream's error
    JSON when it sent one, else its text). *retry_after_ms from Retry-After
    (delta-seconds or an HTTP date) or 0. */
orch_call_outcome_t orch_connector_response (const char *connector, int transport_error,
                                             int status, const char *retry_after,
                                             const char *body, size_t len,
                                             json_t **result, int64_t *retry_after_ms);

/*  What vault.lease's node_key takes for node_pk: the base64url (no
    padding) of the 32-byte Ed25519 public key, i.e. the "x" of its JWK
    (43 characters). The vault binds the token to that key's RFC 7638
    thumbprint (cnf.jkt), which the sandbox checks against the DPoP
    proof's jwk. (The name is the contract's: the vault computes the
    thumbprint itself from this.) malloc'd (the caller frees); NULL when
    out of memory. */
char *orch_dpop_public_jwk_thumbprint (const uint8_t *node_pk);

#endif
