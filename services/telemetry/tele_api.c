/*  tele_api.c — the read endpoints and the decision relay: each one asks
    the owners over the bus (reactor calls, bus_call.h) and answers from
    their replies; nothing is cached and nothing blocks.

    A gather is one HTTP exchange waiting for a few calls: deferred, each
    call's reply kept in its slot (ok: its body; not ok: {error: {code,
    message}}), and answered once the last reply is in. When the browser
    goes first, its calls are cancelled (bus_calls_cancel_owner) and the
    gather freed.

    A peer that answers not_implemented (the orchestrator, receipts, not
    built yet) is passed on as such: the endpoint says 501 or carries the
    error in its member, and the dashboard shows "not available yet".
*/
#include <sodium.h>

#include "tele_internal.h"

#define S_SLOTS 12

typedef struct s_gather_t s_gather_t;
typedef void (s_done_fn) (s_gather_t *g);

typedef struct {
    s_gather_t *g;
    json_t *reply;             /* body, or {error: {...}} */
    bool ok;
    const char *label;
} s_slot_t;

struct s_gather_t {
    tele_t *self;
    bus_http_exchange_t *ex;
    s_done_fn *done;
    int pending;
    size_t nslots;
    s_slot_t slots [S_SLOTS];
    bool sending;              /* still adding calls: do not finish yet */
    char run [32];
};

static void s_gather_free (s_gather_t *g);

/*  The exchange went away first: cancel the calls still out. */
static void
s_gather_gone (bus_http_exchange_t *ex, void *arg)
{
    s_gather_t *g = arg;
    for (size_t i = 0; i < g->self->npeers; i++)
        if (g->self->calls [i])
            bus_calls_cancel_owner (g->self->calls [i], g);
    g->ex = NULL;
    s_gather_free (g);
}

static void
s_gather_free (s_gather_t *g)
{
    for (size_t i = 0; i < g->nslots; i++)
        json_decref (g->slots [i].reply);
    free (g);
}

static s_gather_t *
s_gather_new (tele_t *self, bus_http_exchange_t *ex, s_done_fn *done)
{
    s_gather_t *g = calloc (1, sizeof *g);
    if (!g) {
        tele_error (ex, 500, "internal", "out of memory");
        return NULL;
    }
    g->self = self;
    g->ex = ex;
    g->done = done;
    g->sending = true;
    bus_http_defer (ex, s_gather_gone, g);
    return g;
}

/*  Every reply is in: answer, free. */
static void
s_gather_finish (s_gather_t *g)
{
    g->done (g);
    s_gather_free (g);
}

static void
s_set_error (s_slot_t *slot, const char *code, const char *message)
{
    slot->ok = false;
    slot->reply = json_pack ("{s:{s:s, s:s}}", "error", "code", code, "message", message);
}

static void
s_on_reply (bus_calls_t *calls, proto_msg_t *reply, void *arg)
{
    s_slot_t *slot = arg;
    s_gather_t *g = slot->g;
    if (reply->ok) {
        slot->ok = true;
        slot->reply = json_incref (reply->body ? reply->body : json_object ());
    }
    else {
        json_t *err = reply->error ? json_deep_copy (reply->error) : json_object ();
        slot->reply = json_pack ("{s:o}", "error", err);
    }
    if (--g->pending == 0 && !g->sending)
        s_gather_finish (g);
}

/*  A local request's answer (our own stats and health). */
static void
s_on_local (proto_msg_t *reply, void *arg)
{
    if (!reply) {
        s_slot_t *slot = arg;
        s_set_error (slot, "internal", "no reply");
        if (--slot->g->pending == 0 && !slot->g->sending)
            s_gather_finish (slot->g);
        return;
    }
    s_on_reply (NULL, reply, arg);
}

/*  Ask service for type with body (stolen); the reply lands in a new slot
    named label. Returns the slot's index. */
static size_t
s_ask (s_gather_t *g, const char *service, const char *label, const char *type, json_t *body)
{
    size_t i = g->nslots++;
    assert (i < S_SLOTS);
    s_slot_t *slot = &g->slots [i];
    slot->g = g;
    slot->label = label;
    if (!proto_type_find (type)) {
        json_decref (body);
        s_set_error (slot, "not_implemented", "not in this build's catalogue");
        return i;
    }
    g->pending++;
    if (streq (service, "telemetry")) {
        if (bus_service_local (g->self->svc, "svc:telemetry", type, body, s_on_local, slot) != 0) {
            g->pending--;
            s_set_error (slot, "internal", "out of memory");
        }
        return i;
    }
    bus_calls_t *calls = tele_calls (g->self, service);
    /* reads answer within 3 s even when a peer is down (a Prometheus
       scrape times out at 10 s); a decision keeps the configured retries */
    bool safe = proto_type_find (type)->safe;
    bus_call_opts_t opts = { .owner = g, .timeout_ms = safe ? 1500 : 0, .attempts = safe ? 2 : 0 };
    int rc = calls ? bus_calls_send (calls, type, body, &opts, s_on_reply, slot, NULL) : BUS_ECONFIG;
    if (!calls)
        json_decref (body);
    if (rc) {
        g->pending--;
        s_set_error (slot, "unavailable", calls ? bus_strerror (rc) : "no line to that service");
    }
    return i;
}

/*  Every call is out: finish now when every reply is in already. */
static void
s_gather_go (s_gather_t *g)
{
    g->sending = false;
    if (g->pending == 0)
        s_gather_finish (g);
}

/*  The HTTP status for a peer's error code. */
static int
s_status_of (const char *code)
{
    if (!code)
        return 502;
    if (streq (code, "not_found"))
        return 404;
    if (streq (code, "invalid"))
        return 400;
    if (streq (code, "forbidden"))
        return 403;
    if (streq (code, "conflict"))
        return 409;
    if (streq (code, "not_implemented"))
        return 501;
    if (streq (code, "timeout") || streq (code, "unavailable"))
        return 503;
    return 502;
}

/*  Answer with the one slot as it is: its body, or its error and status. */
static void
s_answer_slot (s_gather_t *g, size_t i)
{
    s_slot_t *slot = &g->slots [i];
    if (slot->ok)
        tele_json (g->ex, 200, json_incref (slot->reply));
    else {
        const char *code = json_string_value (json_object_get (json_object_get (slot->reply, "error"), "code"));
        tele_json (g->ex, s_status_of (code), json_incref (slot->reply));
    }
}

static void
s_done_single (s_gather_t *g)
{
    s_answer_slot (g, 0);
}

/* ---- /api/runs ---------------------------------------------------------- */

static const char *const s_states [] = { "RUNNING", "PAUSED", "COMPLETED", "REJECTED", "FAILED", "CANCELLED", NULL };

static bool
s_known_state (const char *state)
{
    for (const char *const *s = s_states; *s; s++)
        if (streq (*s, state))
            return true;
    return false;
}

/*  A run id: 26 characters of Crockford base32 (a ULID). */
static bool
s_run_id_ok (const char *run)
{
    if (!run || strlen (run) != 26)
        return false;
    for (const char *p = run; *p; p++)
        if (!isalnum ((unsigned char) *p))
            return false;
    return true;
}

/*  Set body's field from the query parameter of the same name when it is
    given and valid (valid() true); false when it is given and not: then
    the 400 is answered with message and body is freed. */
static bool
s_filter (bus_http_exchange_t *ex, json_t *body, const char *name, bool (*valid) (const char *),
          const char *message)
{
    const char *value = bus_http_query (ex, name);
    if (!value || !*value)
        return true;
    if (!valid (value)) {
        json_decref (body);
        tele_error (ex, 400, "invalid", "%s", message);
        return false;
    }
    json_object_set_new (body, name, json_string (value));
    return true;
}

/*  Ask service's request type with body (taken), and answer with its reply. */
static void
s_ask_single (tele_t *self, bus_http_exchange_t *ex, const char *service, const char *name, const char *type,
              json_t *body)
{
    s_gather_t *g = s_gather_new (self, ex, s_done_single);
    if (!g) {
        json_decref (body);
        return;
    }
    s_ask (g, service, name, type, body);
    s_gather_go (g);
}

#define S_RUN_ID_MESSAGE "a run id is 26 letters and digits"

void
tele_api_runs (tele_t *self, bus_http_exchange_t *ex)
{
    json_t *body = json_object ();
    if (s_filter (ex, body, "state", s_known_state,
                  "state must be one of RUNNING, PAUSED, COMPLETED, REJECTED, FAILED, CANCELLED"))
        s_ask_single (self, ex, "orchestrator", "runs", "run.list", body);
}

/* ---- /api/runs/{id}, /gantt, /receipt ------------------------------------ */

/*  The ring's events whose body names this run, oldest first. */
static json_t *
s_run_events (tele_t *self, const char *run)
{
    json_t *out = json_array ();
    char needle [64];
    snprintf (needle, sizeof needle, "\"run\":\"%s\"", run);
    for (int64_t pos = tele_ring_begin (self->ring); pos < tele_ring_end (self->ring); pos++) {
        const char *id, *type, *data;
        if (!tele_ring_get (self->ring, pos, &id, &type, &data) || !strstr (data, needle))
            continue;
        json_t *e = json_loads (data, 0, NULL);
        if (e) {
            json_object_set_new (e, "event_id", json_string (id));
            json_array_append_new (out, e);
        }
    }
    return out;
}

/*  The member of a slot's reply: body[member] when ok, else the error. */
static void
s_take (json_t *out, const char *name, s_slot_t *slot, const char *member)
{
    if (slot->ok) {
        json_t *v = member ? json_object_get (slot->reply, member) : slot->reply;
        json_object_set (out, name, v ? v : json_null ());
    }
    else {
        json_object_set (out, name, json_null ());
        json_t *errors = json_object_get (out, "errors");
        if (!errors)
            json_object_set_new (out, "errors", errors = json_object ());
        json_object_set (errors, name, json_object_get (slot->reply, "error"));
    }
}

/*  {run, approvals, leases, events, errors?}: the run's graph and node
    states from the orchestrator, its approvals and leases from their
    owners, its events from the ring. A run the orchestrator does not know
    and nothing else names: 404. */
static void
s_done_run (s_gather_t *g)
{
    json_t *out = json_object ();
    s_take (out, "run", &g->slots [0], NULL);
    s_take (out, "approvals", &g->slots [1], "approvals");
    s_take (out, "leases", &g->slots [2], "leases");
    json_object_set_new (out, "events", s_run_events (g->self, g->run));
    json_object_set_new (out, "id", json_string (g->run));
    const char *code = json_string_value (json_object_get (json_object_get (g->slots [0].reply, "error"), "code"));
    if (code && streq (code, "not_found") && json_array_size (json_object_get (out, "approvals")) == 0
        && json_array_size (json_object_get (out, "leases")) == 0
        && json_array_size (json_object_get (out, "events")) == 0) {
        json_decref (out);
        tele_error (g->ex, 404, "not_found", "no such run");
        return;
    }
    tele_json (g->ex, 200, out);
}

/*  A time in µs from a lease time in seconds (or µs already). */
static json_t *
s_us (json_t *v)
{
    if (!json_is_integer (v))
        return json_null ();
    json_int_t t = json_integer_value (v);
    return json_integer (t < 100000000000LL ? t * 1000000 : t);
}

/*  The Gantt rows of a run on one time axis (µs): its steps (node.started
    → node.finished in the ring), each approval (asked → decided per
    level) and each lease (issued → used → revoked/expired). */
static void
s_done_gantt (s_gather_t *g)
{
    json_t *rows = json_array ();
    json_t *events = s_run_events (g->self, g->run);
    size_t i;
    json_t *e;
    json_array_foreach (events, i, e) {
        const char *type = json_string_value (json_object_get (e, "type"));
        json_t *b = json_object_get (e, "body");
        if (!type || !streq (type, "node.started"))
            continue;
        json_t *row = json_pack ("{s:s, s:O?, s:O?, s:O, s:n, s:n}", "kind", "step", "id",
                                 json_object_get (b, "node"), "label", json_object_get (b, "node"),
                                 "start", json_object_get (e, "ts"), "end", "outcome");
        size_t k;
        json_t *f;
        json_array_foreach (events, k, f) {
            json_t *fb = json_object_get (f, "body");
            if (k > i && json_string_value (json_object_get (f, "type"))
                && streq (json_string_value (json_object_get (f, "type")), "node.finished")
                && json_equal (json_object_get (fb, "node"), json_object_get (b, "node"))
                && json_equal (json_object_get (fb, "attempt"), json_object_get (b, "attempt"))) {
                json_object_set (row, "end", json_object_get (f, "ts"));
                json_object_set (row, "outcome", json_object_get (fb, "outcome"));
                break;
            }
        }
        json_array_append_new (rows, row);
    }
    json_t *a;
    json_array_foreach (g->slots [1].ok ? json_object_get (g->slots [1].reply, "approvals") : NULL, i, a) {
        json_t *marks = json_array ();
        size_t k;
        json_t *lvl;
        json_array_foreach (json_object_get (a, "levels"), k, lvl) {
            if (json_is_integer (json_object_get (lvl, "asked_at")))
                json_array_append_new (marks, json_pack ("{s:s, s:O, s:O?}", "what", "asked", "at",
                                                         json_object_get (lvl, "asked_at"), "who",
                                                         json_object_get (lvl, "approver")));
            if (json_is_integer (json_object_get (lvl, "decided_at")))
                json_array_append_new (marks, json_pack ("{s:O?, s:O, s:O?}", "what", json_object_get (lvl, "state"),
                                                         "at", json_object_get (lvl, "decided_at"), "who",
                                                         json_object_get (lvl, "approver")));
        }
        json_array_append_new (rows, json_pack ("{s:s, s:O?, s:O?, s:O?, s:O?, s:O?, s:O?, s:o}", "kind", "approval",
                                                "id", json_object_get (a, "approval_id"),
                                                "label", json_object_get (a, "node"),
                                                "start", json_object_get (a, "created_at"),
                                                "end", json_object_get (a, "completed_at"),
                                                "state", json_object_get (a, "state"),
                                                "binding_message", json_object_get (a, "binding_message"),
                                                "marks", marks));
    }
    json_t *l;
    json_array_foreach (g->slots [2].ok ? json_object_get (g->slots [2].reply, "leases") : NULL, i, l) {
        json_t *end = json_object_get (l, "revoked_at") ? json_object_get (l, "revoked_at")
                    : json_object_get (l, "expired_at") ? json_object_get (l, "expired_at")
                    : json_object_get (l, "expires_at");
        json_t *marks = json_array ();
        json_array_append_new (marks, json_pack ("{s:s, s:o}", "what", "issued", "at",
                                                 s_us (json_object_get (l, "issued_at"))));
        if (json_object_get (l, "last_used_at"))
            json_array_append_new (marks, json_pack ("{s:s, s:o}", "what", "used", "at",
                                                     s_us (json_object_get (l, "last_used_at"))));
        if (json_object_get (l, "revoked_at"))
            json_array_append_new (marks, json_pack ("{s:s, s:o}", "what", "revoked", "at",
                                                     s_us (json_object_get (l, "revoked_at"))));
        if (json_object_get (l, "expired_at"))
            json_array_append_new (marks, json_pack ("{s:s, s:o}", "what", "expired", "at",
                                                     s_us (json_object_get (l, "expired_at"))));
        json_array_append_new (rows, json_pack ("{s:s, s:O?, s:O?, s:o, s:o, s:O?, s:O?, s:O?, s:o}", "kind", "lease",
                                                "id", json_object_get (l, "lease_id"),
                                                "label", json_object_get (l, "connection"),
                                                "start", s_us (json_object_get (l, "issued_at")),
                                                "end", s_us (end),
                                                "state", json_object_get (l, "state"),
                                                "node", json_object_get (l, "node"),
                                                "approval", json_object_get (l, "approval"),
                                                "marks", marks));
    }
    json_decref (events);
    json_t *out = json_pack ("{s:s, s:o}", "run", g->run, "rows", rows);
    for (size_t k = 1; k < 3; k++)
        if (!g->slots [k].ok)
            s_take (out, g->slots [k].label, &g->slots [k], NULL);
    tele_json (g->ex, 200, out);
}

/*  Verify a compact JWS (EdDSA) against a JWKS: true when a key of the set
    with the header's kid (or the only key) verifies it. */
static bool
s_jws_verifies (const char *jws, json_t *jwks, char *why, size_t why_len)
{
    bool ok = false;
    char *copy = strdup (jws ? jws : "");
    char *dot1 = copy ? strchr (copy, '.') : NULL;
    char *dot2 = dot1 ? strchr (dot1 + 1, '.') : NULL;
    uint8_t header [1024], sig [crypto_sign_BYTES + 8], pk [crypto_sign_PUBLICKEYBYTES + 8];
    size_t hlen = 0, slen = 0, plen = 0;
    if (!dot2) {
        snprintf (why, why_len, "not a compact JWS");
        goto done;
    }
    *dot1 = 0;
    if (sodium_base642bin (header, sizeof header - 1, copy, strlen (copy), NULL, &hlen, NULL,
                           sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0) {
        snprintf (why, why_len, "bad JWS header");
        goto done;
    }
    header [hlen] = 0;
    *dot1 = '.';
    json_t *h = json_loads ((const char *) header, 0, NULL);
    const char *kid = json_string_value (json_object_get (h, "kid"));
    const char *alg = json_string_value (json_object_get (h, "alg"));
    if (!alg || !streq (alg, "EdDSA")) {
        snprintf (why, why_len, "alg is not EdDSA");
        json_decref (h);
        goto done;
    }
    if (sodium_base642bin (sig, sizeof sig, dot2 + 1, strlen (dot2 + 1), NULL, &slen, NULL,
                           sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 || slen != crypto_sign_BYTES) {
        snprintf (why, why_len, "bad signature encoding");
        json_decref (h);
        goto done;
    }
    size_t i;
    json_t *k;
    snprintf (why, why_len, "no key of the auditor's JWKS verifies it");
    json_array_foreach (json_object_get (jwks, "keys"), i, k) {
        const char *kkid = json_string_value (json_object_get (k, "kid"));
        const char *x = json_string_value (json_object_get (k, "x"));
        if (!x || (kid && kkid && !streq (kid, kkid)))
            continue;
        if (sodium_base642bin (pk, sizeof pk, x, strlen (x), NULL, &plen, NULL,
                               sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 || plen != crypto_sign_PUBLICKEYBYTES)
            continue;
        if (crypto_sign_verify_detached (sig, (const uint8_t *) copy, (size_t) (dot2 - copy), pk) == 0) {
            ok = true;
            snprintf (why, why_len, "signature verifies with the auditor's key %s", kkid ? kkid : "(no kid)");
            break;
        }
    }
    json_decref (h);
done:
    free (copy);
    return ok;
}

/*  The first compact JWS string found in v (a member named jws, receipt
    or token, at the top or one level down). */
static const char *
s_find_jws (json_t *v)
{
    static const char *const names [] = { "jws", "receipt_jws", "receipt", "token", NULL };
    for (const char *const *n = names; *n; n++) {
        const char *s = json_string_value (json_object_get (v, *n));
        if (s && strchr (s, '.'))
            return s;
    }
    const char *key;
    json_t *m;
    json_object_foreach (v, key, m)
        if (json_is_object (m)) {
            for (const char *const *n = names; *n; n++) {
                const char *s = json_string_value (json_object_get (m, *n));
                if (s && strchr (s, '.'))
                    return s;
            }
        }
    return NULL;
}

/*  {run, receipt, verification: {verified, detail}}: the auditor's receipt
    and whether its JWS verifies under the auditor's JWKS (checked here,
    with libsodium). 501 while the auditor answers not_implemented. */
static void
s_done_receipt (s_gather_t *g)
{
    if (!g->slots [0].ok) {
        s_answer_slot (g, 0);
        return;
    }
    json_t *receipt = g->slots [0].reply;
    char why [256] = "";
    bool verified = false;
    const char *jws = s_find_jws (receipt);
    if (!jws)
        snprintf (why, sizeof why, "the receipt carries no JWS to verify");
    else if (!g->slots [1].ok)
        snprintf (why, sizeof why, "the auditor's JWKS could not be read");
    else
        verified = s_jws_verifies (jws, g->slots [1].reply, why, sizeof why);
    tele_json (g->ex, 200, json_pack ("{s:s, s:O, s:{s:b, s:s}}", "run", g->run, "receipt", receipt,
                                      "verification", "verified", verified, "detail", why));
}

void
tele_api_run (tele_t *self, bus_http_exchange_t *ex, const char *run, const char *what)
{
    if (!s_run_id_ok (run)) {
        tele_error (ex, 400, "invalid", S_RUN_ID_MESSAGE);
        return;
    }
    if (what && !streq (what, "gantt") && !streq (what, "receipt")) {
        tele_error (ex, 404, "not_found", "no such endpoint");
        return;
    }
    bool receipt = what && streq (what, "receipt");
    s_gather_t *g = s_gather_new (self, ex, !what ? s_done_run : receipt ? s_done_receipt : s_done_gantt);
    if (!g)
        return;
    snprintf (g->run, sizeof g->run, "%s", run);
    if (receipt) {
        s_ask (g, "auditor", "receipt", "audit.receipt", json_pack ("{s:s}", "run", run));
        s_ask (g, "auditor", "jwks", "audit.jwks", NULL);
    }
    else {
        s_ask (g, "orchestrator", "run", "run.get", json_pack ("{s:s}", "run", run));
        s_ask (g, "ciba-broker", "approvals", "ciba.list", json_pack ("{s:s, s:i}", "run", run, "limit", 100));
        s_ask (g, "vault-broker", "leases", "vault.leases", json_pack ("{s:s}", "run", run));
    }
    s_gather_go (g);
}

/* ---- /api/approvals, /api/leases ---------------------------------------- */

static bool
s_known_approval_state (const char *state)
{
    static const char *const ok [] = { "pending", "approved", "denied", "expired", "cancelled", NULL };
    for (const char *const *s = ok; *s; s++)
        if (streq (*s, state))
            return true;
    return false;
}

void
tele_api_approvals (tele_t *self, bus_http_exchange_t *ex)
{
    const char *state = bus_http_query (ex, "state");
    json_t *body = json_pack ("{s:i}", "limit", 200);
    /* pending unless asked: state= or state=all for every one */
    if (!state)
        json_object_set_new (body, "state", json_string ("pending"));
    else
    if (!streq (state, "all") && !s_filter (ex, body, "state", s_known_approval_state,
                                            "state must be pending, approved, denied, expired, cancelled or all"))
        return;
    if (s_filter (ex, body, "run", s_run_id_ok, S_RUN_ID_MESSAGE))
        s_ask_single (self, ex, "ciba-broker", "approvals", "ciba.list", body);
}

void
tele_api_leases (tele_t *self, bus_http_exchange_t *ex)
{
    json_t *body = json_object ();
    if (s_filter (ex, body, "run", s_run_id_ok, S_RUN_ID_MESSAGE))
        s_ask_single (self, ex, "vault-broker", "leases", "vault.leases", body);
}

/* ---- /api/health --------------------------------------------------------- */

static void
s_done_health (s_gather_t *g)
{
    json_t *services = json_object ();
    bool all = true;
    for (size_t i = 0; i < g->nslots; i++) {
        json_object_set (services, g->slots [i].label, g->slots [i].reply);
        all = all && g->slots [i].ok;
    }
    tele_json (g->ex, 200, json_pack ("{s:s, s:o, s:{s:I, s:I, s:s}}", "state", all ? "ok" : "degraded",
                                      "services", services, "telemetry",
                                      "sse_clients", (json_int_t) tele_hub_clients (g->self->hub),
                                      "events_seen", (json_int_t) g->self->events_seen,
                                      "last_event_id", tele_ring_last_id (g->self->ring)));
}

void
tele_api_health (tele_t *self, bus_http_exchange_t *ex)
{
    s_gather_t *g = s_gather_new (self, ex, s_done_health);
    if (!g)
        return;
    for (size_t i = 0; i < self->npeers; i++)
        s_ask (g, self->names [i], self->names [i], "health", NULL);
    s_gather_go (g);
}

/* ---- /metrics ------------------------------------------------------------ */

/*  A gauge family of one sample without labels. */
static void
s_gauge (json_t *extra, const char *name, const char *help, json_t *value)
{
    json_object_set_new (extra, name, json_pack ("{s:s, s:s, s:[[{}, o]]}", "type", "gauge", "help", help,
                                                 "samples", value));
}

static void
s_done_metrics (s_gather_t *g)
{
    tele_t *self = g->self;
    json_t *stats = json_object (), *extra = json_object ();
    size_t i;
    for (i = 0; i < self->npeers; i++)
        json_object_set (stats, g->slots [i].label, g->slots [i].ok ? g->slots [i].reply : json_null ());
    /* runs by state */
    s_slot_t *runs = &g->slots [i++];
    if (runs->ok) {
        json_t *samples = json_array ();
        for (const char *const *s = s_states; *s; s++) {
            json_int_t n = 0;
            size_t k;
            json_t *r;
            json_array_foreach (json_object_get (runs->reply, "runs"), k, r) {
                const char *st = json_string_value (json_object_get (r, "state"));
                n += st && streq (st, *s);
            }
            json_array_append_new (samples, json_pack ("[{s:s}, I]", "state", *s, n));
        }
        json_object_set_new (extra, "sanctum_runs", json_pack ("{s:s, s:s, s:o}", "type", "gauge", "help",
                                                               "Runs the orchestrator lists, by state.", "samples", samples));
    }
    s_slot_t *pending = &g->slots [i++];
    if (pending->ok)
        s_gauge (extra, "sanctum_approvals_pending", "Approvals waiting for a decision (at most 1000 counted).",
                 json_integer ((json_int_t) json_array_size (json_object_get (pending->reply, "approvals"))));
    s_slot_t *leases = &g->slots [i++];
    if (leases->ok) {
        json_int_t live = 0;
        size_t k;
        json_t *l;
        json_array_foreach (json_object_get (leases->reply, "leases"), k, l) {
            const char *st = json_string_value (json_object_get (l, "state"));
            live += st && streq (st, "active");
        }
        s_gauge (extra, "sanctum_leases_live", "Leases the vault-broker holds active.", json_integer (live));
    }
    s_slot_t *head = &g->slots [i++];
    if (head->ok)
        s_gauge (extra, "sanctum_audit_log_entries", "Entries in the auditor's Merkle log (its signed tree head's size).",
                 json_incref (json_object_get (head->reply, "size")));
    json_object_set_new (extra, "sanctum_telemetry_sse_clients",
                         json_pack ("{s:s, s:s, s:[[{}, I]]}", "type", "gauge", "help", "Browsers on /api/events now.",
                                    "samples", (json_int_t) tele_hub_clients (self->hub)));
    json_object_set_new (extra, "sanctum_telemetry_events_seen_total",
                         json_pack ("{s:s, s:s, s:[[{}, I]]}", "type", "counter", "help",
                                    "Bus events the telemetry follower received.", "samples",
                                    (json_int_t) self->events_seen));
    json_object_set_new (extra, "sanctum_telemetry_sse_dropped_total",
                         json_pack ("{s:s, s:s, s:[[{}, I]]}", "type", "counter", "help",
                                    "Events not sent to a slow browser (it was told to resync).", "samples",
                                    (json_int_t) tele_hub_dropped (self->hub)));
    char *text = tele_metrics_render (stats, extra);
    json_decref (stats);
    json_decref (extra);
    if (!text) {
        tele_error (g->ex, 500, "internal", "out of memory");
        return;
    }
    bus_http_header_add (g->ex, "Cache-Control", "no-store");
    bus_http_respond (g->ex, 200, "text/plain; version=0.0.4; charset=utf-8", text, strlen (text));
    free (text);
}

void
tele_api_metrics (tele_t *self, bus_http_exchange_t *ex)
{
    s_gather_t *g = s_gather_new (self, ex, s_done_metrics);
    if (!g)
        return;
    for (size_t i = 0; i < self->npeers; i++)
        s_ask (g, self->names [i], self->names [i], "stats", NULL);
    s_ask (g, "orchestrator", "runs", "run.list", NULL);
    s_ask (g, "ciba-broker", "pending", "ciba.list", json_pack ("{s:s, s:i}", "state", "pending", "limit", 1000));
    s_ask (g, "vault-broker", "leases", "vault.leases", NULL);
    s_ask (g, "auditor", "head", "audit.head", NULL);
    s_gather_go (g);
}

/* ---- POST /api/approvals/decide ------------------------------------------ */

/*  A changing request must come from this origin: no cross-site form or
    fetch can make one (Origin, when sent, is our own Host; Sec-Fetch-Site,
    when sent, same-origin), and its body must be JSON (a cross-site form
    cannot send that without a CORS preflight, which we never grant). */
static bool
s_same_origin (bus_http_exchange_t *ex, char *why, size_t why_len)
{
    const char *ctype = bus_http_header (ex, "Content-Type");
    if (!ctype || strncasecmp (ctype, "application/json", 16) != 0) {
        snprintf (why, why_len, "Content-Type must be application/json");
        return false;
    }
    const char *site = bus_http_header (ex, "Sec-Fetch-Site");
    if (site && !streq (site, "same-origin") && !streq (site, "none")) {
        snprintf (why, why_len, "cross-site request refused");
        return false;
    }
    const char *origin = bus_http_header (ex, "Origin");
    const char *host = bus_http_header (ex, "Host");
    if (origin) {
        char want [512];
        snprintf (want, sizeof want, "http://%s", host ? host : "");
        if (!host || !streq (origin, want)) {
            snprintf (why, why_len, "Origin %s is not this dashboard's", origin);
            return false;
        }
    }
    return true;
}

static void
s_done_decide (s_gather_t *g)
{
    if (g->slots [0].ok)
        g->self->decisions_relayed++;
    s_answer_slot (g, 0);
}

void
tele_api_decide (tele_t *self, bus_http_exchange_t *ex)
{
    char why [256];
    if (!s_same_origin (ex, why, sizeof why)) {
        tele_error (ex, 403, "forbidden", "%s", why);
        return;
    }
    size_t len = 0;
    const char *text = bus_http_body (ex, &len);
    if (len > 4096) {
        tele_error (ex, 413, "too_large", "a decision is at most 4096 bytes");
        return;
    }
    json_error_t jerr;
    json_t *in = json_loadb (text, len, 0, &jerr);
    const char *auth_req_id = json_string_value (json_object_get (in, "auth_req_id"));
    const char *decision = json_string_value (json_object_get (in, "decision"));
    const char *signature = json_string_value (json_object_get (in, "signature"));
    const char *device = json_string_value (json_object_get (in, "device"));
    if (!json_is_object (in) || !auth_req_id || !decision || !signature || !device
        || (!streq (decision, "approve") && !streq (decision, "deny"))
        || strlen (auth_req_id) > 128 || strlen (signature) > 256 || strlen (device) > 128) {
        json_decref (in);
        tele_error (ex, 400, "invalid", "the body must be {auth_req_id, decision: approve|deny, signature, device}");
        return;
    }
    /* the signature is the authentication: the broker verifies it over
       the decision bytes with the device enrolled for the level's
       approver, so telemetry cannot decide for anyone */
    json_t *body = json_pack ("{s:s, s:s, s:s, s:s}", "auth_req_id", auth_req_id, "decision", decision,
                              "signature", signature, "device", device);
    json_decref (in);
    s_gather_t *g = s_gather_new (self, ex, s_done_decide);
    if (!g) {
        json_decref (body);
        return;
    }
    s_ask (g, "ciba-broker", "decide", "ciba.decide", body);
    s_gather_go (g);
}

/* ---- POST /api/devices/redeem -------------------------------------------- */

/*  {code, public_key}: a device invite code (sanctumctl device invite USER)
    enrols the browser's Ed25519 public key as USER's device. Same-origin
    as the decide relay; the code is the authority (the broker keeps only
    its hash, and takes it once), so telemetry cannot enrol anyone without
    one. The code is never logged here. */
void
tele_api_redeem (tele_t *self, bus_http_exchange_t *ex)
{
    char why [256];
    if (!s_same_origin (ex, why, sizeof why)) {
        tele_error (ex, 403, "forbidden", "%s", why);
        return;
    }
    size_t len = 0;
    const char *text = bus_http_body (ex, &len);
    if (len > 1024) {
        tele_error (ex, 413, "too_large", "a redemption is at most 1024 bytes");
        return;
    }
    json_error_t jerr;
    json_t *in = json_loadb (text, len, 0, &jerr);
    const char *code = json_string_value (json_object_get (in, "code"));
    const char *pk = json_string_value (json_object_get (in, "public_key"));
    if (!json_is_object (in) || !code || !pk || !*code || strlen (code) > 128 || strlen (pk) != 43) {
        json_decref (in);
        tele_error (ex, 400, "invalid", "the body must be {code, public_key (43 characters of base64url)}");
        return;
    }
    json_t *body = json_pack ("{s:s, s:s}", "code", code, "public_key", pk);
    json_decref (in);
    s_ask_single (self, ex, "ciba-broker", "redeem", "ciba.device.redeem", body);
}
