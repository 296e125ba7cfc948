/*  orch_connector.c — tool connectors: the request shapes of Google
    Sheets, Gmail, Dropbox and plain HTTP, the DPoP proof each call
    carries, and the classification of what comes back. See
    orch_connector.h.

    Each connector is one row of s_connectors: its name, the args it
    knows (required or not, and the JSON type a literal must have), and
    the function that builds its request. orch_connector_check_args (at
    workflow load, templates allowed) and orch_connector_request (at call
    time, templates resolved) share one check over that table, so a field
    the loader accepts is one the request builder reads.
*/
#include "orch_connector.h"

#include <curl/curl.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus_error.h"
#include "bus_jose.h"

#define S_MAX_URL        4096          /* a request URL, bytes */
#define S_MAX_HEADERS    32            /* extra headers of http.request */
#define S_MAX_ERROR_TEXT 1024          /* a non-JSON error body kept in run state */
#define S_RETRY_CAP_MS   3600000       /* a Retry-After beyond an hour is read as an hour */

/*  The JSON type a literal arg must have. */
typedef enum { S_STR, S_ARRAY, S_OBJECT, S_BOOL, S_ANY } s_type_t;

typedef struct {
    const char *name;
    s_type_t type;
    bool required;
} s_arg_t;

typedef struct s_builder_t s_builder_t;

/*  What a builder fills in; the common part (auth, DPoP, idempotency)
    is added after it by orch_connector_request. */
typedef struct {
    const orch_call_t *call;
    char *method;
    char *url;
    char *content_type;
    char *body;
    size_t body_len;
    char *extra [S_MAX_HEADERS + 2];   /* connector headers, "Name: value" */
    size_t extra_count;
    char *err;
    size_t errlen;
} s_req_t;

typedef int (s_build_fn) (s_req_t *req);

typedef struct {
    const char *name;
    const s_arg_t *args;          /* terminated by a NULL name */
    s_build_fn *build;
} s_connector_t;

/* --- small helpers ----------------------------------------------------- */

/*  True when a string arg is a template ("{{...}}" somewhere in it): at
    load time it stands for a value of any type. */
static bool
s_is_template (const json_t *value)
{
    const char *s = json_string_value (value);
    return s && strstr (s, "{{") && strstr (s, "}}");
}

/*  True when s has a CR or LF, which would end a header line early. */
static bool
s_header_unsafe (const char *s)
{
    for (; *s; s++)
        if (*s == '\r' || *s == '\n')
            return true;
    return false;
}

static const char *
s_type_name (s_type_t type)
{
    return type == S_STR ? "a string" : type == S_ARRAY ? "an array" : type == S_OBJECT ? "an object"
         : type == S_BOOL ? "true or false" : "a value";
}

static bool
s_type_ok (const json_t *value, s_type_t type)
{
    switch (type) {
        case S_STR: return json_is_string (value);
        case S_ARRAY: return json_is_array (value);
        case S_OBJECT: return json_is_object (value);
        case S_BOOL: return json_is_boolean (value);
        default: return value != NULL;
    }
}

/*  Append text to a malloc'd string (*s may be NULL). 0 or -1. */
static int
s_cat (char **s, size_t *len, const char *text, size_t n)
{
    char *grown = realloc (*s, *len + n + 1);
    if (!grown)
        return -1;
    memcpy (grown + *len, text, n);
    *len += n;
    grown [*len] = 0;
    *s = grown;
    return 0;
}

/*  Percent-encode a path segment (RFC 3986 pchar: unreserved, sub-delims,
    ':' and '@' stay; '/' and everything else is %XX), appended to *s. */
static int
s_cat_segment (char **s, size_t *len, const char *seg)
{
    static const char keep [] = "-._~!$&'()*+,;=:@";
    for (const unsigned char *p = (const unsigned char *) seg; *p; p++) {
        char buf [4];
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')
            || (*p && strchr (keep, *p))) {
            buf [0] = (char) *p;
            buf [1] = 0;
        }
        else
            snprintf (buf, sizeof buf, "%%%02X", *p);
        if (s_cat (s, len, buf, strlen (buf)))
            return -1;
    }
    return 0;
}

/*  The base URL without a trailing '/': checked to be http(s). */
static int
s_base (s_req_t *req, char **out)
{
    const char *base = req->call->base_url;
    *out = NULL;
    if (!base || !*base)
        return bus_errf (req->err, req->errlen, -1, "%s: no base URL configured", req->call->connector);
    if (strncmp (base, "http://", 7) && strncmp (base, "https://", 8))
        return bus_errf (req->err, req->errlen, -1, "%s: base URL %.200s is not http:// or https://",
                       req->call->connector, base);
    size_t n = strlen (base);
    while (n && base [n - 1] == '/')
        n--;
    *out = strndup (base, n);
    return *out ? 0 : bus_errf (req->err, req->errlen, -1, "out of memory");
}

static int
s_add_header (s_req_t *req, const char *name, const char *value)
{
    if (req->extra_count >= S_MAX_HEADERS)
        return bus_errf (req->err, req->errlen, -1, "%s: more than %d headers", req->call->connector, S_MAX_HEADERS);
    if (asprintf (&req->extra [req->extra_count], "%s: %s", name, value) < 0) {
        req->extra [req->extra_count] = NULL;
        return bus_errf (req->err, req->errlen, -1, "out of memory");
    }
    req->extra_count++;
    return 0;
}

/*  A JSON body: compact text of value (a new reference taken). */
static int
s_json_body (s_req_t *req, json_t *value)
{
    if (!value)
        return bus_errf (req->err, req->errlen, -1, "out of memory");
    req->body = json_dumps (value, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref (value);
    if (!req->body)
        return bus_errf (req->err, req->errlen, -1, "out of memory");
    req->body_len = strlen (req->body);
    req->content_type = strdup ("application/json");
    return req->content_type ? 0 : bus_errf (req->err, req->errlen, -1, "out of memory");
}

/* --- Google Sheets: spreadsheets.values.append ------------------------- */

static const s_arg_t s_sheets_args [] = {
    { "spreadsheet_id", S_STR, true },
    { "range", S_STR, true },
    { "values", S_ARRAY, true },
    { "value_input_option", S_STR, false },     /* USER_ENTERED (default) | RAW */
    { NULL, 0, false }
};

static int
s_sheets_build (s_req_t *req)
{
    const json_t *args = req->call->args;
    const char *id = json_string_value (json_object_get (args, "spreadsheet_id"));
    const char *range = json_string_value (json_object_get (args, "range"));
    json_t *values = json_object_get (args, "values");
    const char *option = json_string_value (json_object_get (args, "value_input_option"));
    if (!*id || !*range)
        return bus_errf (req->err, req->errlen, -1, "sheets.append: args.%s: must not be empty",
                       *id ? "range" : "spreadsheet_id");
    if (!option)
        option = "USER_ENTERED";
    if (strcmp (option, "USER_ENTERED") && strcmp (option, "RAW"))
        return bus_errf (req->err, req->errlen, -1,
                       "sheets.append: args.value_input_option: USER_ENTERED or RAW, not %.40s", option);
    /* values: rows of cells; a flat list of cells is one row */
    json_t *rows = NULL;
    size_t i, j;
    json_t *row, *cell;
    bool flat = json_array_size (values) > 0;
    json_array_foreach (values, i, row)
        flat &= !json_is_array (row);
    rows = flat ? json_pack ("[O]", values) : json_incref (values);
    if (!rows || json_array_size (rows) == 0) {
        json_decref (rows);
        return bus_errf (req->err, req->errlen, -1, "sheets.append: args.values: at least one row");
    }
    json_array_foreach (rows, i, row) {
        if (!json_is_array (row)) {
            json_decref (rows);
            return bus_errf (req->err, req->errlen, -1, "sheets.append: args.values[%zu]: a row is an array of cells", i);
        }
        json_array_foreach (row, j, cell)
            if (json_is_object (cell) || json_is_array (cell)) {
                json_decref (rows);
                return bus_errf (req->err, req->errlen, -1,
                               "sheets.append: args.values[%zu][%zu]: a cell is a string, number, boolean or null",
                               i, j);
            }
    }
    char *url = NULL;
    size_t len = 0;
    if (s_base (req, &url)) {
        json_decref (rows);
        return -1;
    }
    len = strlen (url);
    int rc = s_cat (&url, &len, "/v4/spreadsheets/", 17);
    rc = rc ? rc : s_cat_segment (&url, &len, id);
    rc = rc ? rc : s_cat (&url, &len, "/values/", 8);
    rc = rc ? rc : s_cat_segment (&url, &len, range);
    rc = rc ? rc : s_cat (&url, &len, ":append?valueInputOption=", 25);
    rc = rc ? rc : s_cat (&url, &len, option, strlen (option));
    if (rc) {
        free (url);
        json_decref (rows);
        return bus_errf (req->err, req->errlen, -1, "out of memory");
    }
    req->url = url;
    req->method = strdup ("POST");
    return s_json_body (req, json_pack ("{s:s, s:s, s:o}", "range", range, "majorDimension", "ROWS",
                                        "values", rows));
}

/* --- Gmail: users.messages.send ---------------------------------------- */

static const s_arg_t s_gmail_args [] = {
    { "to", S_STR, true },
    { "subject", S_STR, true },
    { "body", S_STR, true },
    { "cc", S_STR, false },
    { "from", S_STR, false },
    { NULL, 0, false }
};

/*  True when text is printable ASCII only (a header value left as it is). */
static bool
s_ascii (const char *text)
{
    for (const unsigned char *p = (const unsigned char *) text; *p; p++)
        if (*p < 0x20 || *p > 0x7e)
            return false;
    return true;
}

/*  "Name: value\r\n" appended; a non-ASCII value goes as an RFC 2047
    encoded word (UTF-8, base64). */
static int
s_cat_mail_header (char **s, size_t *len, const char *name, const char *value)
{
    int rc = s_cat (s, len, name, strlen (name));
    rc = rc ? rc : s_cat (s, len, ": ", 2);
    if (rc == 0 && s_ascii (value))
        rc = s_cat (s, len, value, strlen (value));
    else if (rc == 0) {
        size_t vlen = strlen (value);
        size_t cap = sodium_base64_ENCODED_LEN (vlen, sodium_base64_VARIANT_ORIGINAL);
        char *b64 = malloc (cap);
        if (!b64)
            return -1;
        sodium_bin2base64 (b64, cap, (const unsigned char *) value, vlen, sodium_base64_VARIANT_ORIGINAL);
        rc = s_cat (s, len, "=?UTF-8?B?", 10);
        rc = rc ? rc : s_cat (s, len, b64, strlen (b64));
        rc = rc ? rc : s_cat (s, len, "?=", 2);
        free (b64);
    }
    return rc ? rc : s_cat (s, len, "\r\n", 2);
}

static int
s_gmail_build (s_req_t *req)
{
    const json_t *args = req->call->args;
    const char *names [] = { "to", "subject", "cc", "from" };
    for (size_t i = 0; i < sizeof names / sizeof names [0]; i++) {
        const char *v = json_string_value (json_object_get (args, names [i]));
        if (v && s_header_unsafe (v))
            return bus_errf (req->err, req->errlen, -1, "gmail.send: args.%s: a line break would forge headers", names [i]);
    }
    const char *to = json_string_value (json_object_get (args, "to"));
    if (!strchr (to, '@'))
        return bus_errf (req->err, req->errlen, -1, "gmail.send: args.to: %.100s is not an address", to);
    const char *body = json_string_value (json_object_get (args, "body"));
    char *msg = NULL;
    size_t len = 0;
    int rc = 0;
    const char *from = json_string_value (json_object_get (args, "from"));
    const char *cc = json_string_value (json_object_get (args, "cc"));
    if (from)
        rc = s_cat_mail_header (&msg, &len, "From", from);
    rc = rc ? rc : s_cat_mail_header (&msg, &len, "To", to);
    if (cc && rc == 0)
        rc = s_cat_mail_header (&msg, &len, "Cc", cc);
    rc = rc ? rc : s_cat_mail_header (&msg, &len, "Subject",
                                      json_string_value (json_object_get (args, "subject")));
    rc = rc ? rc : s_cat_mail_header (&msg, &len, "MIME-Version", "1.0");
    rc = rc ? rc : s_cat_mail_header (&msg, &len, "Content-Type", "text/plain; charset=UTF-8");
    rc = rc ? rc : s_cat_mail_header (&msg, &len, "Content-Transfer-Encoding", "8bit");
    rc = rc ? rc : s_cat (&msg, &len, "\r\n", 2);
    /* the body with bare LFs made CRLF (RFC 5322 lines) */
    for (const char *p = body; rc == 0 && *p; p++) {
        if (*p == '\n' && (p == body || p [-1] != '\r'))
            rc = s_cat (&msg, &len, "\r\n", 2);
        else
            rc = s_cat (&msg, &len, p, 1);
    }
    char *raw = rc == 0 ? bus_b64url_encode (msg ? msg : "", len) : NULL;
    free (msg);
    char *base = NULL;
    if (!raw)
        return bus_errf (req->err, req->errlen, -1, "out of memory");
    if (s_base (req, &base)) {
        free (raw);
        return -1;
    }
    rc = asprintf (&req->url, "%s/gmail/v1/users/me/messages/send", base);
    free (base);
    if (rc < 0) {
        req->url = NULL;
        free (raw);
        return bus_errf (req->err, req->errlen, -1, "out of memory");
    }
    req->method = strdup ("POST");
    json_t *payload = json_pack ("{s:s}", "raw", raw);
    free (raw);
    return s_json_body (req, payload);
}

/* --- Dropbox: files/upload --------------------------------------------- */

static const s_arg_t s_dropbox_args [] = {
    { "path", S_STR, true },
    { "content", S_ANY, true },         /* a string as it is, else its JSON text */
    { "mode", S_STR, false },           /* add (default) | overwrite */
    { "autorename", S_BOOL, false },
    { NULL, 0, false }
};

static int
s_dropbox_build (s_req_t *req)
{
    const json_t *args = req->call->args;
    const char *path = json_string_value (json_object_get (args, "path"));
    const char *mode = json_string_value (json_object_get (args, "mode"));
    json_t *content = json_object_get (args, "content");
    if (path [0] != '/' || strlen (path) > 1024)
        return bus_errf (req->err, req->errlen, -1, "dropbox.upload: args.path: must start with / (at most 1024 bytes)");
    if (!mode)
        mode = "add";
    if (strcmp (mode, "add") && strcmp (mode, "overwrite"))
        return bus_errf (req->err, req->errlen, -1, "dropbox.upload: args.mode: add or overwrite, not %.40s", mode);
    /* the header is JSON with every non-ASCII character escaped, as
       Dropbox requires of Dropbox-API-Arg */
    json_t *arg = json_pack ("{s:s, s:s, s:b, s:b}", "path", path, "mode", mode, "autorename",
                             json_is_true (json_object_get (args, "autorename")), "mute", 0);
    char *text = arg ? json_dumps (arg, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    json_decref (arg);
    if (!text)
        return bus_errf (req->err, req->errlen, -1, "out of memory");
    int rc = s_add_header (req, "Dropbox-API-Arg", text);
    free (text);
    if (rc)
        return -1;
    if (json_is_string (content)) {
        req->body_len = json_string_length (content);
        req->body = malloc (req->body_len + 1);
        if (req->body) {
            memcpy (req->body, json_string_value (content), req->body_len);
            req->body [req->body_len] = 0;
        }
    }
    else {
        req->body = json_dumps (content, JSON_COMPACT | JSON_ENCODE_ANY);
        req->body_len = req->body ? strlen (req->body) : 0;
    }
    char *base = NULL;
    if (!req->body)
        return bus_errf (req->err, req->errlen, -1, "out of memory");
    if (s_base (req, &base))
        return -1;
    rc = asprintf (&req->url, "%s/2/files/upload", base);
    free (base);
    if (rc < 0) {
        req->url = NULL;
        return bus_errf (req->err, req->errlen, -1, "out of memory");
    }
    req->method = strdup ("POST");
    req->content_type = strdup ("application/octet-stream");
    return 0;
}

/* --- http.request ------------------------------------------------------ */

static const s_arg_t s_http_args [] = {
    { "url", S_STR, true },
    { "method", S_STR, false },         /* default GET, or POST with a body */
    { "headers", S_OBJECT, false },     /* {name: value} */
    { "body", S_ANY, false },           /* sent as JSON */
    { NULL, 0, false }
};

/*  Headers an http.request may not set: the connector's own. */
static bool
s_reserved_header (const char *name)
{
    static const char *const reserved [] = { "authorization", "dpop", "idempotency-key", "content-type",
                                             "content-length", "host", "transfer-encoding", NULL };
    for (size_t i = 0; reserved [i]; i++)
        if (!strcasecmp (name, reserved [i]))
            return true;
    return false;
}

/*  A header name: RFC 9110 token characters. */
static bool
s_header_name_ok (const char *name)
{
    if (!*name || strlen (name) > 128)
        return false;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')
              || strchr ("!#$%&'*+-.^_`|~", *p)))
            return false;
    return true;
}

static int
s_http_build (s_req_t *req)
{
    const json_t *args = req->call->args;
    const char *url = json_string_value (json_object_get (args, "url"));
    const char *method = json_string_value (json_object_get (args, "method"));
    json_t *body = json_object_get (args, "body");
    static const char *const methods [] = { "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", NULL };
    if (!method)
        method = body ? "POST" : "GET";
    size_t m = 0;
    while (methods [m] && strcmp (methods [m], method))
        m++;
    if (!methods [m])
        return bus_errf (req->err, req->errlen, -1, "http.request: args.method: one of GET POST PUT PATCH DELETE HEAD, not %.20s",
                       method);
    if (strlen (url) > S_MAX_URL || s_header_unsafe (url) || strchr (url, ' '))
        return bus_errf (req->err, req->errlen, -1, "http.request: args.url: not a URL (blanks, line breaks or too long)");
    if (!strncmp (url, "http://", 7) || !strncmp (url, "https://", 8))
        req->url = strdup (url);
    else if (url [0] == '/') {
        char *base = NULL;
        if (s_base (req, &base))
            return -1;
        if (asprintf (&req->url, "%s%s", base, url) < 0)
            req->url = NULL;
        free (base);
    }
    else
        return bus_errf (req->err, req->errlen, -1, "http.request: args.url: http://, https:// or a path under the base URL");
    if (!req->url)
        return bus_errf (req->err, req->errlen, -1, "out of memory");
    const char *name;
    json_t *value;
    json_object_foreach (json_object_get (args, "headers"), name, value) {
        const char *v = json_string_value (value);
        if (!s_header_name_ok (name))
            return bus_errf (req->err, req->errlen, -1, "http.request: args.headers: %.60s is not a header name", name);
        if (s_reserved_header (name))
            return bus_errf (req->err, req->errlen, -1, "http.request: args.headers.%s: set by the connector, not the workflow",
                           name);
        if (!v || s_header_unsafe (v))
            return bus_errf (req->err, req->errlen, -1, "http.request: args.headers.%s: a string without line breaks", name);
        if (s_add_header (req, name, v))
            return -1;
    }
    req->method = strdup (method);
    if (body)
        return s_json_body (req, json_incref (body));
    return 0;
}

/* --- the table --------------------------------------------------------- */

static const s_connector_t s_connectors [] = {
    { "sheets.append", s_sheets_args, s_sheets_build },
    { "gmail.send", s_gmail_args, s_gmail_build },
    { "dropbox.upload", s_dropbox_args, s_dropbox_build },
    { "http.request", s_http_args, s_http_build },
    { NULL, NULL, NULL }
};

static const s_connector_t *
s_find (const char *name)
{
    for (const s_connector_t *c = s_connectors; name && c->name; c++)
        if (!strcmp (c->name, name))
            return c;
    return NULL;
}

/*  Check args against the connector's table: every required field there,
    no unknown field, literals of the right type. With templates, a
    "{{...}}" string stands for any value. */
static int
s_check (const s_connector_t *c, const json_t *args, bool templates, char *err, size_t errlen)
{
    if (!json_is_object (args))
        return bus_errf (err, errlen, -1, "%s: args: must be an object", c->name);
    for (const s_arg_t *a = c->args; a->name; a++) {
        json_t *v = json_object_get (args, a->name);
        if (!v || json_is_null (v)) {
            if (a->required)
                return bus_errf (err, errlen, -1, "%s: args.%s: required", c->name, a->name);
            continue;
        }
        if (!s_type_ok (v, a->type) && !(templates && s_is_template (v)))
            return bus_errf (err, errlen, -1, "%s: args.%s: must be %s", c->name, a->name, s_type_name (a->type));
    }
    const char *key;
    json_t *v;
    json_object_foreach ((json_t *) args, key, v) {
        const s_arg_t *a = c->args;
        while (a->name && strcmp (a->name, key))
            a++;
        if (!a->name) {
            char known [200] = "";
            for (a = c->args; a->name; a++)
                snprintf (known + strlen (known), sizeof known - strlen (known), "%s%s", a == c->args ? "" : ", ",
                          a->name);
            return bus_errf (err, errlen, -1, "%s: args.%.60s: unknown (known: %s)", c->name, key, known);
        }
    }
    return 0;
}

/* --- the public functions ---------------------------------------------- */

int
orch_connector_known (const char *connector)
{
    return s_find (connector) ? 1 : 0;
}

int
orch_connector_check_args (const char *connector, const json_t *args_template, char *err, size_t errlen)
{
    const s_connector_t *c = s_find (connector);
    if (!c)
        return bus_errf (err, errlen, -1, "connector %.60s: unknown (sheets.append, gmail.send, dropbox.upload, http.request)",
                       connector ? connector : "(none)");
    return s_check (c, args_template, true, err, errlen);
}

/*  The DPoP proof (RFC 9449 §4.2) for method and url signed by the node
    key: header {typ, alg, jwk}, claims {jti, htm, htu, iat, ath}. htu is
    the URL without its query and fragment. */
static char *
s_dpop_proof (const orch_call_t *call, const char *method, const char *url)
{
    char *x = bus_b64url_encode (call->node_pk, BUS_JOSE_PK_LEN);
    size_t ulen = strcspn (url, "?#");
    uint8_t hash [crypto_hash_sha256_BYTES], rnd [16];
    crypto_hash_sha256 (hash, (const uint8_t *) call->token, strlen (call->token));
    randombytes_buf (rnd, sizeof rnd);
    char *ath = bus_b64url_encode (hash, sizeof hash);
    char *jti = bus_b64url_encode (rnd, sizeof rnd);
    json_t *header = x ? json_pack ("{s:s, s:{s:s, s:s, s:s}}", "typ", "dpop+jwt", "jwk", "kty", "OKP", "crv",
                                    "Ed25519", "x", x) : NULL;
    json_t *claims = ath && jti ? json_pack ("{s:s, s:s, s:s%, s:I, s:s}", "jti", jti, "htm", method, "htu", url,
                                             ulen, "iat", (json_int_t) time (NULL), "ath", ath) : NULL;
    char *payload = claims ? json_dumps (claims, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    char *proof = NULL;
    if (header && payload && bus_jws_sign (header, payload, strlen (payload), call->node_sk, &proof))
        proof = NULL;
    free (x);
    free (ath);
    free (jti);
    free (payload);
    json_decref (header);
    json_decref (claims);
    return proof;
}

int
orch_connector_request (const orch_call_t *call, orch_http_call_t **out, char *err, size_t errlen)
{
    *out = NULL;
    const s_connector_t *c = call ? s_find (call->connector) : NULL;
    if (!c)
        return bus_errf (err, errlen, -1, "connector %.60s: unknown", call && call->connector ? call->connector : "(none)");
    if (s_check (c, call->args, false, err, errlen))
        return -1;
    if (!call->token || !*call->token || s_header_unsafe (call->token) || strchr (call->token, ' '))
        return bus_errf (err, errlen, -1, "%s: no usable access token", c->name);
    if (!call->node_pk || !call->node_sk)
        return bus_errf (err, errlen, -1, "%s: no node key to sign the DPoP proof", c->name);
    if (!call->idempotency_key || !*call->idempotency_key || strlen (call->idempotency_key) > 255
        || s_header_unsafe (call->idempotency_key))
        return bus_errf (err, errlen, -1, "%s: the idempotency key must be 1-255 bytes without line breaks", c->name);
    s_req_t req = { .call = call, .err = err, .errlen = errlen };
    orch_http_call_t *self = NULL;
    char *proof = NULL;
    int rc = c->build (&req);
    if (rc)
        goto done;
    if (!req.method || !req.url) {
        rc = bus_errf (err, errlen, -1, "out of memory");
        goto done;
    }
    if (strlen (req.url) > S_MAX_URL) {
        rc = bus_errf (err, errlen, -1, "%s: the URL is over %d bytes", c->name, S_MAX_URL);
        goto done;
    }
    proof = s_dpop_proof (call, req.method, req.url);
    self = calloc (1, sizeof *self);
    char **headers = calloc (req.extra_count + 5, sizeof (char *));
    if (!proof || !self || !headers) {
        free (headers);
        rc = bus_errf (err, errlen, -1, "%s: cannot sign the DPoP proof (out of memory)", c->name);
        goto done;
    }
    self->headers = headers;
    size_t n = 0;
    if (asprintf (&headers [n++], "Authorization: DPoP %s", call->token) < 0
        || asprintf (&headers [n++], "DPoP: %s", proof) < 0
        || asprintf (&headers [n++], "Idempotency-Key: %s", call->idempotency_key) < 0
        || asprintf (&headers [n++], "Accept: application/json") < 0) {
        headers [n - 1] = NULL;
        rc = bus_errf (err, errlen, -1, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < req.extra_count; i++) {
        headers [n++] = req.extra [i];
        req.extra [i] = NULL;
    }
    self->method = req.method;
    self->url = req.url;
    self->content_type = req.content_type;
    self->body = req.body;
    self->body_len = req.body_len;
    req.method = req.url = req.content_type = req.body = NULL;
    *out = self;
    self = NULL;
done:
    orch_http_call_destroy (&self);
    free (proof);
    free (req.method);
    free (req.url);
    free (req.content_type);
    free (req.body);
    for (size_t i = 0; i < req.extra_count; i++)
        free (req.extra [i]);
    return rc ? -1 : 0;
}

void
orch_http_call_destroy (orch_http_call_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    orch_http_call_t *self = *self_p;
    free (self->method);
    free (self->url);
    if (self->headers) {
        for (char **h = self->headers; *h; h++) {
            if (!strncmp (*h, "Authorization:", 14))
                sodium_memzero (*h, strlen (*h));
            free (*h);
        }
    }
    free (self->headers);
    free (self->content_type);
    free (self->body);
    free (self);
    *self_p = NULL;
}

/*  Retry-After (RFC 9110 §10.2.3): delta-seconds or an HTTP date, as ms
    from now (0 when absent, unreadable or past; capped at an hour). */
static int64_t
s_retry_after_ms (const char *value)
{
    if (!value)
        return 0;
    while (*value == ' ' || *value == '\t')
        value++;
    if (!*value)
        return 0;
    int64_t ms = 0;
    if (*value >= '0' && *value <= '9') {
        char *end;
        unsigned long long secs = strtoull (value, &end, 10);
        while (*end == ' ' || *end == '\t')
            end++;
        if (*end)
            return 0;
        ms = secs > S_RETRY_CAP_MS / 1000 ? S_RETRY_CAP_MS : (int64_t) secs * 1000;
    }
    else {
        time_t at = curl_getdate (value, NULL);
        if (at == (time_t) -1)
            return 0;
        int64_t delta = (int64_t) at - (int64_t) time (NULL);
        ms = delta <= 0 ? 0 : delta > S_RETRY_CAP_MS / 1000 ? S_RETRY_CAP_MS : delta * 1000;
    }
    return ms;
}

/*  At most cap bytes of body as a JSON string: as it is when that is
    UTF-8, else with every byte outside printable ASCII made '?'. */
static json_t *
s_text (const char *body, size_t len, size_t cap)
{
    size_t n = len > cap ? cap : len;
    if (!body || !n)
        return json_string ("");
    json_t *text = json_stringn (body, n);
    if (text)
        return text;
    char *copy = malloc (n);
    if (!copy)
        return NULL;
    for (size_t i = 0; i < n; i++)
        copy [i] = (body [i] >= 0x20 && body [i] < 0x7f) || body [i] == '\n' || body [i] == '\t' ? body [i] : '?';
    text = json_stringn (copy, n);
    free (copy);
    return text;
}

/*  A human line for an upstream error: Google's error.message, Dropbox's
    error_summary, an OAuth error_description, else the start of the text. */
static json_t *
s_error_message (const json_t *error, int status)
{
    const char *m = json_string_value (json_object_get (json_object_get (error, "error"), "message"));
    if (!m)
        m = json_string_value (json_object_get (error, "error_summary"));
    if (!m)
        m = json_string_value (json_object_get (error, "error_description"));
    if (!m)
        m = json_string_value (json_object_get (error, "message"));
    if (!m)
        m = json_string_value (json_object_get (error, "error"));
    if (!m)
        m = json_string_value (error);
    if (m && *m)
        return json_stringn (m, strlen (m) > 200 ? 200 : strlen (m)) ?: json_string (m);
    char line [40];
    snprintf (line, sizeof line, "HTTP %d", status);
    return json_string (line);
}

orch_call_outcome_t
orch_connector_response (const char *connector, int transport_error, int status, const char *retry_after,
                         const char *body, size_t len, json_t **result, int64_t *retry_after_ms)
{
    *retry_after_ms = 0;
    *result = NULL;
    if (transport_error) {
        const char *why = bus_strerror (transport_error);
        *result = json_pack ("{s:i, s:s, s:{s:s, s:s}}", "status", 0, "message", why, "error", "code", "transport",
                             "message", why);
        return ORCH_CALL_RETRY;
    }
    json_t *parsed = body && len ? json_loadb (body, len, JSON_DECODE_ANY, NULL) : NULL;
    if (status >= 200 && status < 300) {
        if (json_is_object (parsed) || json_is_array (parsed))
            *result = parsed;
        else {
            json_decref (parsed);
            *result = json_pack ("{s:i, s:o}", "status", status, "body", s_text (body, len, S_MAX_ERROR_TEXT));
        }
        return ORCH_CALL_OK;
    }
    orch_call_outcome_t outcome = status == 429 || status >= 500 ? ORCH_CALL_RETRY : ORCH_CALL_FAIL;
    if (outcome == ORCH_CALL_RETRY)
        *retry_after_ms = s_retry_after_ms (retry_after);
    json_t *error = parsed ? parsed : s_text (body, len, S_MAX_ERROR_TEXT);
    *result = json_pack ("{s:i, s:o, s:o}", "status", status, "message", s_error_message (error, status),
                         "error", error);
    return outcome;
}

char *
orch_dpop_public_jwk_thumbprint (const uint8_t *node_pk)
{
    return node_pk ? bus_b64url_encode (node_pk, BUS_JOSE_PK_LEN) : NULL;
}
