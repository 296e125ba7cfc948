/*  test_orch_connector.c — the orchestrator's connectors: each builds the
    real API's request (Sheets values.append, Gmail messages.send with a
    base64url RFC 5322 message, Dropbox files/upload with Dropbox-API-Arg,
    plain http.request); every request carries Authorization: DPoP, an
    Idempotency-Key and a DPoP proof that verifies with bus_jws_verify
    against the node key and carries htm, htu (no query), iat, a fresh jti
    and ath = b64url (SHA-256 (token)); load-time checks name the missing,
    mistyped or unknown field and let templates through; header injection
    is refused; the response classification table (2xx OK, 429/5xx and
    transport errors RETRY with Retry-After, other statuses FAIL with the
    upstream's error); node_key is what vault.lease decodes.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include <sodium.h>

#include "bus_error.h"
#include "bus_jose.h"
#include "../../services/orchestrator/orch_connector.h"
#include "../support/test_service.h"

#define TOKEN "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln"

static uint8_t s_pk [32], s_sk [64];

/*  The value of header name in a request, or NULL. */
static const char *
s_header (const orch_http_call_t *rq, const char *name)
{
    size_t n = strlen (name);
    for (char **h = rq->headers; h && *h; h++)
        if (!strncasecmp (*h, name, n) && (*h) [n] == ':')
            return *h + n + 2;
    return NULL;
}

/*  Build a request for connector with args (JSON text): 0 or -1. */
static int
s_build (const char *connector, const char *args_text, const char *base, orch_http_call_t **out, char *err,
         size_t errlen)
{
    json_t *args = json_loads (args_text, 0, NULL);
    assert_non_null (args);
    orch_call_t call = { .connector = connector, .args = args, .base_url = base, .token = TOKEN,
                         .node_pk = s_pk, .node_sk = s_sk, .idempotency_key = "01RUN/write_po/1" };
    int rc = orch_connector_request (&call, out, err, errlen);
    json_decref (args);
    return rc;
}

/*  The common part: auth, idempotency, and a proof that verifies. */
static void
s_check_common (const orch_http_call_t *rq, const char *htm, const char *htu)
{
    assert_string_equal (s_header (rq, "Authorization"), "DPoP " TOKEN);
    assert_string_equal (s_header (rq, "Idempotency-Key"), "01RUN/write_po/1");
    const char *proof = s_header (rq, "DPoP");
    assert_non_null (proof);
    json_t *claims = NULL;
    assert_int_equal (bus_jws_verify (proof, s_pk, NULL, &claims), 0);
    assert_string_equal (json_string_value (json_object_get (claims, "htm")), htm);
    assert_string_equal (json_string_value (json_object_get (claims, "htu")), htu);
    json_int_t iat = json_integer_value (json_object_get (claims, "iat"));
    assert_true (iat >= time (NULL) - 5 && iat <= time (NULL) + 1);
    assert_true (strlen (json_string_value (json_object_get (claims, "jti"))) >= 16);
    uint8_t hash [32];
    crypto_hash_sha256 (hash, (const uint8_t *) TOKEN, strlen (TOKEN));
    char *ath = bus_b64url_encode (hash, 32);
    assert_string_equal (json_string_value (json_object_get (claims, "ath")), ath);
    free (ath);
    json_decref (claims);
    /* the header: typ dpop+jwt, alg EdDSA, the node's public jwk (no d) */
    bus_jws_t parsed = { 0 };
    assert_int_equal (bus_jws_parse (proof, &parsed), 0);
    assert_string_equal (json_string_value (json_object_get (parsed.header, "typ")), "dpop+jwt");
    assert_string_equal (json_string_value (json_object_get (parsed.header, "alg")), "EdDSA");
    uint8_t pk [32];
    assert_int_equal (bus_jose_jwk_public (json_object_get (parsed.header, "jwk"), pk), 0);
    assert_memory_equal (pk, s_pk, 32);
    bus_jws_clear (&parsed);
    /* signed by another key: does not verify */
    uint8_t opk [32], osk [64];
    crypto_sign_keypair (opk, osk);
    assert_int_equal (bus_jws_verify (proof, opk, NULL, NULL), BUS_ECRYPTO);
}

static void
test_sheets_append (void **state)
{
    orch_http_call_t *rq = NULL;
    char err [256];
    assert_int_equal (s_build ("sheets.append",
                               "{\"spreadsheet_id\": \"erp-2026\", \"range\": \"POs!A:F\","
                               " \"values\": [[\"PO-1\", \"Acme\", 520000, true, null]]}",
                               "http://127.0.0.1:7190/", &rq, err, sizeof err), 0);
    assert_string_equal (rq->method, "POST");
    assert_string_equal (rq->url,
                         "http://127.0.0.1:7190/v4/spreadsheets/erp-2026/values/POs!A:F:append?valueInputOption=USER_ENTERED");
    assert_string_equal (rq->content_type, "application/json");
    json_t *body = json_loadb (rq->body, rq->body_len, 0, NULL);
    assert_non_null (body);
    json_t *values = json_object_get (body, "values");
    assert_int_equal (json_array_size (values), 1);
    assert_int_equal (json_integer_value (json_array_get (json_array_get (values, 0), 2)), 520000);
    json_decref (body);
    s_check_common (rq, "POST", "http://127.0.0.1:7190/v4/spreadsheets/erp-2026/values/POs!A:F:append");
    orch_http_call_destroy (&rq);
    assert_null (rq);
    orch_http_call_destroy (&rq);

    /* a range with blanks and a slash is percent-encoded; RAW is passed on;
       a flat list of cells is one row */
    assert_int_equal (s_build ("sheets.append",
                               "{\"spreadsheet_id\": \"a/b\", \"range\": \"My Sheet!A1\", \"values\": [1, 2],"
                               " \"value_input_option\": \"RAW\"}",
                               "https://sheets.googleapis.com", &rq, err, sizeof err), 0);
    assert_string_equal (rq->url,
                         "https://sheets.googleapis.com/v4/spreadsheets/a%2Fb/values/My%20Sheet!A1:append?valueInputOption=RAW");
    assert_non_null (strstr (rq->body, "\"values\":[[1,2]]"));
    orch_http_call_destroy (&rq);

    /* bad values */
    assert_int_equal (s_build ("sheets.append", "{\"spreadsheet_id\": \"x\", \"range\": \"A\", \"values\": []}",
                               "http://h", &rq, err, sizeof err), -1);
    assert_non_null (strstr (err, "args.values"));
    assert_int_equal (s_build ("sheets.append", "{\"spreadsheet_id\": \"x\", \"range\": \"A\", \"values\": [[{}]]}",
                               "http://h", &rq, err, sizeof err), -1);
    assert_non_null (strstr (err, "args.values[0][0]"));
    assert_int_equal (s_build ("sheets.append", "{\"spreadsheet_id\": \"x\", \"range\": \"A\", \"values\": [[1]],"
                               " \"value_input_option\": \"FORMULA\"}", "http://h", &rq, err, sizeof err), -1);
    assert_non_null (strstr (err, "value_input_option"));
    assert_int_equal (s_build ("sheets.append", "{\"spreadsheet_id\": \"x\", \"range\": \"A\", \"values\": [[1]]}",
                               "ftp://h", &rq, err, sizeof err), -1);
    assert_non_null (strstr (err, "base URL"));
    assert_int_equal (s_build ("sheets.append", "{\"spreadsheet_id\": \"x\", \"range\": \"A\", \"values\": [[1]]}",
                               NULL, &rq, err, sizeof err), -1);
    assert_null (rq);
}

static void
test_gmail_send (void **state)
{
    orch_http_call_t *rq = NULL;
    char err [256];
    assert_int_equal (s_build ("gmail.send",
                               "{\"to\": \"orders@acme.example\", \"subject\": \"PO-1 for Acme\","
                               " \"body\": \"Dear Acme,\\nplease ship.\\n\"}",
                               "http://127.0.0.1:7190", &rq, err, sizeof err), 0);
    assert_string_equal (rq->method, "POST");
    assert_string_equal (rq->url, "http://127.0.0.1:7190/gmail/v1/users/me/messages/send");
    s_check_common (rq, "POST", "http://127.0.0.1:7190/gmail/v1/users/me/messages/send");
    json_t *body = json_loadb (rq->body, rq->body_len, 0, NULL);
    const char *raw = json_string_value (json_object_get (body, "raw"));
    assert_non_null (raw);
    size_t n = 0;
    char *msg = (char *) bus_b64url_decode (raw, strlen (raw), &n);
    assert_non_null (msg);
    assert_string_equal (msg, "To: orders@acme.example\r\nSubject: PO-1 for Acme\r\nMIME-Version: 1.0\r\n"
                              "Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
                              "Dear Acme,\r\nplease ship.\r\n");
    free (msg);
    json_decref (body);
    orch_http_call_destroy (&rq);

    /* a non-ASCII subject is an RFC 2047 encoded word */
    assert_int_equal (s_build ("gmail.send", "{\"to\": \"a@b\", \"subject\": \"Bestellung \xc3\xbc\", \"body\": \"x\"}",
                               "http://h", &rq, err, sizeof err), 0);
    body = json_loadb (rq->body, rq->body_len, 0, NULL);
    raw = json_string_value (json_object_get (body, "raw"));
    msg = (char *) bus_b64url_decode (raw, strlen (raw), &n);
    assert_non_null (strstr (msg, "Subject: =?UTF-8?B?QmVzdGVsbHVuZyDDvA==?=\r\n"));
    free (msg);
    json_decref (body);
    orch_http_call_destroy (&rq);

    /* header injection through a templated value is refused */
    assert_int_equal (s_build ("gmail.send", "{\"to\": \"a@b\\r\\nBcc: all@corp\", \"subject\": \"s\", \"body\": \"x\"}",
                               "http://h", &rq, err, sizeof err), -1);
    assert_non_null (strstr (err, "args.to"));
    assert_int_equal (s_build ("gmail.send", "{\"to\": \"a@b\", \"subject\": \"s\\nBcc: x@y\", \"body\": \"x\"}",
                               "http://h", &rq, err, sizeof err), -1);
    assert_non_null (strstr (err, "args.subject"));
    assert_int_equal (s_build ("gmail.send", "{\"to\": \"nobody\", \"subject\": \"s\", \"body\": \"x\"}",
                               "http://h", &rq, err, sizeof err), -1);
    assert_non_null (strstr (err, "not an address"));
    assert_null (rq);
}

static void
test_dropbox_upload (void **state)
{
    orch_http_call_t *rq = NULL;
    char err [256];
    assert_int_equal (s_build ("dropbox.upload", "{\"path\": \"/po/PO-1 \xc3\xa9.txt\", \"content\": \"hello\"}",
                               "http://127.0.0.1:7190", &rq, err, sizeof err), 0);
    assert_string_equal (rq->url, "http://127.0.0.1:7190/2/files/upload");
    assert_string_equal (rq->content_type, "application/octet-stream");
    assert_int_equal (rq->body_len, 5);
    assert_memory_equal (rq->body, "hello", 5);
    /* the arg is ASCII JSON (non-ASCII escaped as Dropbox requires) */
    assert_string_equal (s_header (rq, "Dropbox-API-Arg"),
                         "{\"path\":\"/po/PO-1 \\u00E9.txt\",\"mode\":\"add\",\"autorename\":false,\"mute\":false}");
    s_check_common (rq, "POST", "http://127.0.0.1:7190/2/files/upload");
    orch_http_call_destroy (&rq);

    /* content that is not a string goes as its JSON text */
    assert_int_equal (s_build ("dropbox.upload", "{\"path\": \"/po.json\", \"content\": {\"a\": 1}, \"mode\": \"overwrite\"}",
                               "http://h", &rq, err, sizeof err), 0);
    assert_string_equal (rq->body, "{\"a\":1}");
    assert_non_null (strstr (s_header (rq, "Dropbox-API-Arg"), "\"mode\":\"overwrite\""));
    orch_http_call_destroy (&rq);

    assert_int_equal (s_build ("dropbox.upload", "{\"path\": \"po.txt\", \"content\": \"x\"}", "http://h", &rq, err,
                               sizeof err), -1);
    assert_non_null (strstr (err, "args.path"));
}

static void
test_http_request (void **state)
{
    orch_http_call_t *rq = NULL;
    char err [256];
    assert_int_equal (s_build ("http.request",
                               "{\"method\": \"PUT\", \"url\": \"https://api.example.com/v2/items/7?x=1#f\","
                               " \"headers\": {\"X-Trace\": \"abc\"}, \"body\": {\"qty\": 3}}",
                               NULL, &rq, err, sizeof err), 0);
    assert_string_equal (rq->method, "PUT");
    assert_string_equal (rq->url, "https://api.example.com/v2/items/7?x=1#f");
    assert_string_equal (rq->body, "{\"qty\":3}");
    assert_string_equal (rq->content_type, "application/json");
    assert_string_equal (s_header (rq, "X-Trace"), "abc");
    s_check_common (rq, "PUT", "https://api.example.com/v2/items/7");
    orch_http_call_destroy (&rq);

    /* defaults: GET without a body; a path joins the base URL */
    assert_int_equal (s_build ("http.request", "{\"url\": \"/status\"}", "http://127.0.0.1:9/", &rq, err, sizeof err), 0);
    assert_string_equal (rq->method, "GET");
    assert_string_equal (rq->url, "http://127.0.0.1:9/status");
    assert_null (rq->body);
    orch_http_call_destroy (&rq);

    /* the connector's own headers cannot be set; no injection */
    assert_int_equal (s_build ("http.request", "{\"url\": \"http://h/\", \"headers\": {\"authorization\": \"Bearer x\"}}",
                               NULL, &rq, err, sizeof err), -1);
    assert_non_null (strstr (err, "args.headers.authorization"));
    assert_int_equal (s_build ("http.request", "{\"url\": \"http://h/\", \"headers\": {\"X-A\": \"1\\r\\nX-B: 2\"}}",
                               NULL, &rq, err, sizeof err), -1);
    assert_int_equal (s_build ("http.request", "{\"url\": \"http://h/\", \"headers\": {\"X A\": \"1\"}}",
                               NULL, &rq, err, sizeof err), -1);
    assert_int_equal (s_build ("http.request", "{\"url\": \"file:///etc/passwd\"}", NULL, &rq, err, sizeof err), -1);
    assert_non_null (strstr (err, "args.url"));
    assert_int_equal (s_build ("http.request", "{\"url\": \"http://h/\", \"method\": \"TRACE\"}", NULL, &rq, err,
                               sizeof err), -1);
    assert_non_null (strstr (err, "args.method"));
    assert_null (rq);
}

static void
test_call_checks (void **state)
{
    orch_http_call_t *rq = NULL;
    char err [256];
    json_t *args = json_pack ("{s:s, s:s, s:s}", "to", "a@b", "subject", "s", "body", "b");
    orch_call_t call = { .connector = "gmail.send", .args = args, .base_url = "http://h", .token = TOKEN,
                         .node_pk = s_pk, .node_sk = s_sk, .idempotency_key = "r/n/1" };
    call.token = "";
    assert_int_equal (orch_connector_request (&call, &rq, err, sizeof err), -1);
    assert_non_null (strstr (err, "token"));
    call.token = "abc\r\nX-Evil: 1";
    assert_int_equal (orch_connector_request (&call, &rq, err, sizeof err), -1);
    assert_null (strstr (err, "abc"));              /* no token in the error */
    call.token = TOKEN;
    call.idempotency_key = NULL;
    assert_int_equal (orch_connector_request (&call, &rq, err, sizeof err), -1);
    assert_non_null (strstr (err, "idempotency"));
    call.idempotency_key = "r/n/1";
    call.node_sk = NULL;
    assert_int_equal (orch_connector_request (&call, &rq, err, sizeof err), -1);
    call.node_sk = s_sk;
    call.connector = "slack.post";
    assert_int_equal (orch_connector_request (&call, &rq, err, sizeof err), -1);
    assert_non_null (strstr (err, "unknown"));
    call.connector = "gmail.send";
    assert_int_equal (orch_connector_request (&call, &rq, err, sizeof err), 0);
    /* two calls: two proofs with distinct jti (the sandbox refuses a replay) */
    orch_http_call_t *rq2 = NULL;
    assert_int_equal (orch_connector_request (&call, &rq2, err, sizeof err), 0);
    json_t *c1 = NULL, *c2 = NULL;
    assert_int_equal (bus_jws_verify (s_header (rq, "DPoP"), s_pk, NULL, &c1), 0);
    assert_int_equal (bus_jws_verify (s_header (rq2, "DPoP"), s_pk, NULL, &c2), 0);
    assert_string_not_equal (json_string_value (json_object_get (c1, "jti")),
                             json_string_value (json_object_get (c2, "jti")));
    json_decref (c1);
    json_decref (c2);
    orch_http_call_destroy (&rq);
    orch_http_call_destroy (&rq2);
    json_decref (args);
}

static void
test_check_args (void **state)
{
    char err [256];
    struct { const char *connector, *args, *field; } cases [] = {
        { "sheets.append", "{\"spreadsheet_id\": \"erp\", \"range\": \"POs!A:F\", \"values\": [[\"{{po.number}}\", \"{{po.total}}\"]]}", NULL },
        { "sheets.append", "{\"spreadsheet_id\": \"erp\", \"range\": \"POs!A:F\", \"values\": \"{{rows}}\"}", NULL },
        { "sheets.append", "{\"spreadsheet_id\": \"erp\", \"values\": [[1]]}", "args.range: required" },
        { "sheets.append", "{\"spreadsheet_id\": 7, \"range\": \"A\", \"values\": [[1]]}", "args.spreadsheet_id: must be a string" },
        { "sheets.append", "{\"spreadsheet_id\": \"e\", \"range\": \"A\", \"values\": {}}", "args.values: must be an array" },
        { "sheets.append", "{\"spreadsheet_id\": \"e\", \"range\": \"A\", \"values\": [[1]], \"valus\": 1}", "args.valus: unknown" },
        { "gmail.send", "{\"to\": \"{{input.email}}\", \"subject\": \"PO {{po.number}}\", \"body\": \"{{po.text}}\"}", NULL },
        { "gmail.send", "{\"to\": \"a@b\", \"body\": \"x\"}", "args.subject: required" },
        { "gmail.send", "{\"to\": \"a@b\", \"subject\": null, \"body\": \"x\"}", "args.subject: required" },
        { "dropbox.upload", "{\"path\": \"/po/{{po.number}}.json\", \"content\": \"{{po}}\"}", NULL },
        { "dropbox.upload", "{\"path\": \"/x\"}", "args.content: required" },
        { "dropbox.upload", "{\"path\": \"/x\", \"content\": 1, \"autorename\": \"yes\"}", "args.autorename: must be true or false" },
        { "http.request", "{\"method\": \"POST\", \"url\": \"https://x/{{input.id}}\", \"body\": {\"a\": \"{{input.a}}\"}}", NULL },
        { "http.request", "{\"method\": \"POST\"}", "args.url: required" },
        { "http.request", "{\"url\": \"http://x\", \"headers\": [\"X: y\"]}", "args.headers: must be an object" },
        { "gmail.send", "[]", "args: must be an object" },
        { "fax.send", "{}", "connector fax.send: unknown" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        json_t *args = json_loads (cases [i].args, 0, NULL);
        assert_non_null (args);
        err [0] = 0;
        int rc = orch_connector_check_args (cases [i].connector, args, err, sizeof err);
        if (!cases [i].field) {
            if (rc)
                fail_msg ("case %zu: %s", i, err);
        }
        else {
            assert_int_equal (rc, -1);
            if (!strstr (err, cases [i].field))
                fail_msg ("case %zu: \"%s\" does not name %s", i, err, cases [i].field);
        }
        json_decref (args);
    }
    assert_int_equal (orch_connector_check_args ("gmail.send", NULL, err, sizeof err), -1);
    assert_int_equal (orch_connector_known ("sheets.append"), 1);
    assert_int_equal (orch_connector_known ("gmail.send"), 1);
    assert_int_equal (orch_connector_known ("dropbox.upload"), 1);
    assert_int_equal (orch_connector_known ("http.request"), 1);
    assert_int_equal (orch_connector_known ("sheets"), 0);
    assert_int_equal (orch_connector_known (NULL), 0);
}

static void
test_classify (void **state)
{
    struct { int transport; int status; const char *retry_after; const char *body; orch_call_outcome_t want;
             int64_t want_ms; const char *message; } table [] = {
        { 0, 200, NULL, "{\"spreadsheetId\":\"erp\",\"updates\":{\"updatedRows\":1}}", ORCH_CALL_OK, 0, NULL },
        { 0, 201, NULL, "", ORCH_CALL_OK, 0, NULL },
        { 0, 204, NULL, NULL, ORCH_CALL_OK, 0, NULL },
        { 0, 429, "7", "{\"error\":{\"code\":429,\"message\":\"Quota exceeded\",\"status\":\"RESOURCE_EXHAUSTED\"}}",
          ORCH_CALL_RETRY, 7000, "Quota exceeded" },
        { 0, 503, NULL, "upstream down", ORCH_CALL_RETRY, 0, "upstream down" },
        { 0, 500, "999999", "", ORCH_CALL_RETRY, 3600000, "HTTP 500" },
        { 0, 502, "soon", "", ORCH_CALL_RETRY, 0, "HTTP 502" },
        { BUS_EREFUSED, 0, NULL, NULL, ORCH_CALL_RETRY, 0, NULL },
        { BUS_ETIMEOUT, 0, "5", NULL, ORCH_CALL_RETRY, 0, NULL },
        { 0, 400, "5", "{\"error\":{\"code\":400,\"message\":\"Invalid JSON payload\",\"status\":\"INVALID_ARGUMENT\"}}",
          ORCH_CALL_FAIL, 0, "Invalid JSON payload" },
        { 0, 401, NULL, "{\"error\":{\"code\":401,\"message\":\"the DPoP proof has been used before\",\"status\":\"UNAUTHENTICATED\"}}",
          ORCH_CALL_FAIL, 0, "the DPoP proof has been used before" },
        { 0, 409, NULL, "{\"error_summary\":\"path/conflict/file/..\",\"error\":{\".tag\":\"path\"}}",
          ORCH_CALL_FAIL, 0, "path/conflict/file/.." },
        { 0, 404, NULL, "<html>Not Found</html>", ORCH_CALL_FAIL, 0, "<html>Not Found</html>" },
        { 0, 302, NULL, "", ORCH_CALL_FAIL, 0, "HTTP 302" },
    };
    for (size_t i = 0; i < sizeof table / sizeof table [0]; i++) {
        json_t *result = NULL;
        int64_t ms = -1;
        const char *b = table [i].body;
        orch_call_outcome_t got = orch_connector_response ("sheets.append", table [i].transport, table [i].status,
                                                           table [i].retry_after, b, b ? strlen (b) : 0, &result, &ms);
        if (got != table [i].want || ms != table [i].want_ms)
            fail_msg ("row %zu: outcome %d (want %d), retry %lld ms (want %lld)", i, got, table [i].want,
                      (long long) ms, (long long) table [i].want_ms);
        assert_non_null (result);
        if (got == ORCH_CALL_OK && i == 0)
            assert_int_equal (json_integer_value (json_object_get (json_object_get (result, "updates"), "updatedRows")), 1);
        if (got == ORCH_CALL_OK && i != 0)
            assert_int_equal (json_integer_value (json_object_get (result, "status")), table [i].status);
        if (got != ORCH_CALL_OK) {
            assert_int_equal (json_integer_value (json_object_get (result, "status")), table [i].status);
            assert_non_null (json_object_get (result, "error"));
            if (table [i].message)
                assert_string_equal (json_string_value (json_object_get (result, "message")), table [i].message);
            else
                assert_non_null (json_string_value (json_object_get (result, "message")));
        }
        json_decref (result);
    }
    /* the upstream's error JSON is kept whole */
    json_t *result = NULL;
    int64_t ms;
    const char *b = "{\"error\":{\"code\":403,\"message\":\"no\",\"status\":\"PERMISSION_DENIED\"}}";
    assert_int_equal (orch_connector_response ("gmail.send", 0, 403, NULL, b, strlen (b), &result, &ms), ORCH_CALL_FAIL);
    assert_string_equal (json_string_value (json_object_get (json_object_get (json_object_get (result, "error"), "error"),
                                                             "status")), "PERMISSION_DENIED");
    json_decref (result);
    /* a binary body does not break the JSON */
    const char bin [] = "\xff\xfe\x00oops";
    assert_int_equal (orch_connector_response ("http.request", 0, 400, NULL, bin, sizeof bin - 1, &result, &ms),
                      ORCH_CALL_FAIL);
    assert_string_equal (json_string_value (json_object_get (result, "error")), "???oops");
    json_decref (result);
    /* Retry-After as an HTTP date ~30 s ahead */
    char date [64];
    time_t at = time (NULL) + 30;
    strftime (date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", gmtime (&at));
    assert_int_equal (orch_connector_response ("gmail.send", 0, 503, date, "", 0, &result, &ms), ORCH_CALL_RETRY);
    assert_true (ms >= 28000 && ms <= 30000);
    json_decref (result);
}

static void
test_node_key (void **state)
{
    char *key = orch_dpop_public_jwk_thumbprint (s_pk);
    assert_non_null (key);
    assert_int_equal (strlen (key), 43);
    /* what vault.lease does with it: decode to the key, thumbprint that */
    uint8_t pk [32];
    assert_int_equal (bus_b64url_decode_fixed (key, pk, 32), 0);
    assert_memory_equal (pk, s_pk, 32);
    free (key);
    assert_null (orch_dpop_public_jwk_thumbprint (NULL));
}

int
main (void)
{
    if (sodium_init () < 0)
        return 1;
    crypto_sign_keypair (s_pk, s_sk);
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_sheets_append),
        cmocka_unit_test (test_gmail_send),
        cmocka_unit_test (test_dropbox_upload),
        cmocka_unit_test (test_http_request),
        cmocka_unit_test (test_call_checks),
        cmocka_unit_test (test_check_args),
        cmocka_unit_test (test_classify),
        cmocka_unit_test (test_node_key),
    };
    return test_service_summary (sizeof tests / sizeof tests [0],
                                 cmocka_run_group_tests (tests, NULL, NULL));
}
