/*  vault_leases.c — the vault-broker's leases (vault_internal.h):
    vault.lease (checked against the connection, its approval asked of the
    ciba-broker, then a token minted by vault_tokens.c or obtained by
    vault_upstream.c), vault.renew, vault.revoke, vault.leases,
    vault.token_used, and the expiry sweep (the timer).

    A lease is stored with its expiry index entry, the approval it used,
    its event and the request's outcome in one commit (bus_request_write)
    before the token is answered. Lease records and
    events never hold a token: its HMAC.

    Threads: the reactor's; a lease's writes (s_store_work) may run on
    the service's writer thread.
*/
#include "vault_internal.h"
#include "bus_error.h"
#include "bus_log.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

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

/*  The lease_exp key of lease_id expiring at exp_ms: be64 ‖ id. */
static void
s_exp_key (uint8_t key [8 + VAULT_LEASE_ID_MAX], size_t *len, int64_t exp_ms, const char *lease_id)
{
    bus_u64_to_key ((uint64_t) exp_ms, key);
    size_t n = strnlen (lease_id, VAULT_LEASE_ID_MAX);
    memcpy (key + 8, lease_id, n);
    *len = 8 + n;
}

/*  Index the end of lease_id of run at end_ms (lease_ended: the sweep
    forgets the lease lease_keep_s later), in txn. Returns 0 or the
    store's error. */
static int
s_end_index (vault_t *self, bus_txn_t *txn, int64_t end_ms, const char *lease_id, const char *run)
{
    uint8_t key [8 + VAULT_LEASE_ID_MAX];
    size_t len;
    s_exp_key (key, &len, end_ms, lease_id);
    run = run ?: "";
    return bus_txn_put (txn, self->db_lease_ended, key, len, run, strlen (run));
}

/*  The lease_run key of lease_id of run: run ‖ NUL ‖ id (len the prefix
    of the run's keys when lease_id is NULL). BUS_EINVAL for a run too
    long or empty. */
static int
s_run_key (uint8_t key [VAULT_RUN_MAX + 1 + VAULT_LEASE_ID_MAX], size_t *len, const char *run,
           const char *lease_id)
{
    size_t n = run ? strnlen (run, VAULT_RUN_MAX + 1) : 0;
    if (n == 0 || n > VAULT_RUN_MAX)
        return BUS_EINVAL;
    memcpy (key, run, n);
    key [n] = 0;
    size_t m = lease_id ? strnlen (lease_id, VAULT_LEASE_ID_MAX) : 0;
    memcpy (key + n + 1, lease_id, m);
    *len = n + 1 + m;
    return 0;
}

/*  Has vault.revoke {run} ended run (in txn)? */
static bool
s_run_ended (vault_t *self, bus_txn_t *txn, const char *run)
{
    const void *val;
    size_t len;
    return run && bus_txn_get (txn, self->db_run_ended, run, strlen (run), &val, &len) == 0;
}

/*  The refusal of a lease for a run that has ended. */
static void
s_run_ended_error (bus_outcome_t *out, const char *run)
{
    out->code = PROTO_ERR_CONFLICT;
    out->extra = json_pack ("{s:s}", "reason", "run_ended");
    snprintf (out->message, sizeof out->message, "run %s has ended: its leases were revoked", run);
}

/*  Store lease (JSON) in txn. */
static int
s_lease_put (vault_t *self, bus_txn_t *txn, json_t *lease)
{
    const char *id = json_string_value (json_object_get (lease, "lease_id"));
    char *text = json_dumps (lease, JSON_COMPACT | JSON_SORT_KEYS);
    int rc = text ? bus_txn_put (txn, self->db_leases, id, strlen (id), text, strlen (text)) : BUS_ENOMEM;
    free (text);
    return rc;
}

/*  Lease id read in txn (NULL with *rc_out: BUS_ENOTFOUND, BUS_EINVAL). */
static json_t *
s_lease_get (vault_t *self, bus_txn_t *txn, const char *id, int *rc_out)
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

/*  Lease id read in a new write transaction (*txn) for a handler of req:
    the lease, or NULL with req answered (no lease, or the store failing)
    and no transaction left open. */
static json_t *
s_lease_open (vault_t *self, bus_request_t *req, const char *id, bus_txn_t **txn)
{
    int rc = BUS_EIO;
    *txn = bus_txn_begin (bus_service_store (self->svc), true);
    json_t *lease = *txn ? s_lease_get (self, *txn, id, &rc) : NULL;
    if (rc == 0)
        return lease;
    json_decref (lease);
    bus_service_abort (self->svc, txn);
    if (rc == BUS_ENOTFOUND)
        bus_reply_error (req, PROTO_ERR_NOT_FOUND, "no lease %s", id);
    else
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "cannot read lease %s: %s", id, bus_strerror (rc));
    return NULL;
}

/*  Free a lease request (not its request: answered by then). */
void
vault_lease_job_free (vault_lease_job_t *job)
{
    if (job) {
        json_decref (job->lease);
        json_decref (job->conn);
        free (job);
    }
}

/*  What a lease's commit writes, all made on the reactor (the lease's
    JSON, its expiry entry, the approval it uses, the provider's token
    sealed, its event, the reply) so that the writer thread only stores:
    it never touches the keyring or the signing keys. */
typedef struct {
    vault_t *self;
    char lease_id [VAULT_LEASE_ID_MAX];
    char *lease_text;                   /* the lease record (JSON) */
    uint8_t ekey [8 + VAULT_LEASE_ID_MAX];
    size_t ekey_len;
    uint8_t rkey [VAULT_RUN_MAX + 1 + VAULT_LEASE_ID_MAX];  /* its lease_run entry: the run, a NUL, ... */
    size_t rkey_len;
    char *approval;                     /* the approval it uses, or NULL */
    char ukey [VAULT_LEASE_ID_MAX + 8]; /* oauth/auth0: "lease/<id>" */
    uint8_t *usealed;                   /* ... and the provider's token, sealed */
    size_t usealed_len;
    json_t *event;                      /* token.issued */
    json_t *reply;                      /* the ok body: holds the token */
    char *connection;                   /* oauth/auth0: the connection ... */
    char *upstream;                     /* ... and the provider's token, revoked if not stored */
    char traceparent [64];
} s_store_t;

/*  Whether the lease is stored: its commit (and its group's, on the
    writer) went through. True when that cannot be read. */
static bool
s_lease_stored (vault_t *self, const char *lease_id)
{
    bus_txn_t *txn = bus_txn_begin (bus_service_store (self->svc), false);
    const void *val;
    size_t len;
    int rc = txn ? bus_txn_get (txn, self->db_leases, lease_id, strlen (lease_id), &val, &len) : BUS_EIO;
    bus_txn_abort (&txn);
    if (rc && rc != BUS_ENOTFOUND)
        bus_warn ("vault: cannot tell whether lease %s was stored: %s", lease_id, bus_strerror (rc));
    return rc != BUS_ENOTFOUND;
}

/*  Free a store job, wiping the reply's token; a provider's token of a
    lease not stored (refused in its commit, or its commit failed) is
    revoked at the provider: nobody holds it. On the reactor, after the
    answer (bus_request_write). */
static void
s_store_free (void *arg)
{
    s_store_t *st = arg;
    if (!st)
        return;
    if (st->upstream) {
        if (!s_lease_stored (st->self, st->lease_id))
            vault_upstream_discard (st->self, st->connection, st->upstream);
        sodium_memzero (st->upstream, strlen (st->upstream));
        free (st->upstream);
    }
    free (st->connection);
    free (st->lease_text);
    free (st->approval);
    free (st->usealed);
    json_decref (st->event);
    json_t *token = st->reply ? json_object_get (st->reply, "token") : NULL;
    if (token && st->reply->refcount == 1) {       /* never sent: wiped */
        char *t = (char *) json_string_value (token);
        sodium_memzero (t, strlen (t));
    }
    json_decref (st->reply);
    free (st);
}

/*  The lease's writes in txn: 0 (out->body the reply), 1 (the approval
    has a lease already: out the conflict), or an error. Any thread. */
static int
s_store_in (s_store_t *st, bus_txn_t *txn, bus_outcome_t *out)
{
    vault_t *self = st->self;
    const char *run = (const char *) st->rkey;     /* its lease_run key begins with the run */
    int rc = 0;
    /* checked where the lease is written: vault.revoke {run} writes the
       run's end under the same single-writer lock, so either it came
       first (refused here) or this lease is in the index it revokes */
    if (s_run_ended (self, txn, run)) {
        s_run_ended_error (out, run);
        return 1;
    }
    if (st->usealed)
        rc = bus_txn_put (txn, self->db_upstream, st->ukey, strlen (st->ukey), st->usealed, st->usealed_len);
    if (rc == 0 && st->approval) {
        rc = bus_txn_put_new (txn, self->db_approvals, st->approval, strlen (st->approval), st->lease_id,
                              strlen (st->lease_id));
        if (rc == BUS_EEXIST) {
            out->code = PROTO_ERR_CONFLICT;
            out->extra = json_pack ("{s:s}", "reason", "approval_used");
            snprintf (out->message, sizeof out->message, "approval %s has yielded its lease already",
                      st->approval);
            return 1;
        }
    }
    if (rc == 0)
        rc = bus_txn_put (txn, self->db_leases, st->lease_id, strlen (st->lease_id), st->lease_text,
                          strlen (st->lease_text));
    if (rc == 0)
        rc = bus_txn_put (txn, self->db_exp, st->ekey, st->ekey_len, "", 0);
    if (rc == 0)
        rc = bus_txn_put (txn, self->db_lease_run, st->rkey, st->rkey_len, "", 0);
    if (rc == 0) {
        rc = bus_event_append (self->svc, txn, "token.issued", st->event, st->traceparent);
        st->event = NULL;
    }
    if (rc == 0) {
        out->body = st->reply;
        st->reply = NULL;
    }
    return rc;
}

/*  The outcome of a lease that could not be stored. */
static void
s_store_failed (bus_outcome_t *out, int rc)
{
    json_decref (out->body);
    out->body = NULL;
    out->code = PROTO_ERR_UNAVAILABLE;
    snprintf (out->message, sizeof out->message, "cannot issue the lease: %s", bus_strerror (rc));
}

/*  bus_request_write's work (the reactor, or the writer): the lease's
    writes nested in the group, which commits them with the request's
    outcome (on the writer, one fsync shared by the leases queued
    together) before the reply leaves. */
static void
s_store_work (void *state, json_t *body, void *arg, bus_outcome_t *out)
{
    s_store_t *st = arg;
    bus_service_t *svc = st->self->svc;
    bus_txn_t *txn = bus_txn_begin (bus_service_store (svc), true);
    int rc = txn ? s_store_in (st, txn, out) : BUS_EIO;
    if (rc == 0)
        rc = bus_service_commit (svc, &txn);
    else
        bus_service_abort (svc, &txn);
    if (rc < 0)
        s_store_failed (out, rc);
}

/*  Store (lease, expiry, approval used, event) and answer, with a token
    minted here (upstream NULL: local mode) or the provider's (oauth mode:
    sealed under "lease/<id>" until the lease ends, then revoked): here
    when the writer is idle, else on the writer (bus_request_write). */
void
vault_lease_store (vault_lease_job_t *job, const char *upstream, const char *upstream_type)
{
    vault_t *self = job->self;
    bus_request_t *req = job->req;
    json_t *lease = job->lease;
    int64_t now_ms = vault_now_ms (), iat = now_ms / 1000;
    int64_t ttl = json_integer_value (json_object_get (lease, "ttl"));
    int64_t exp = iat + ttl;
    s_store_t *st = calloc (1, sizeof *st);
    char *token = NULL, jti [40] = "", mac [VAULT_HMAC_TEXT_LEN];
    int rc = st ? 0 : BUS_ENOMEM;
    if (rc)
        goto failed;
    st->self = self;
    snprintf (st->traceparent, sizeof st->traceparent, "%s", bus_request_traceparent (req));
    uint8_t rnd [16];
    randombytes_buf (rnd, sizeof rnd);
    char hex [33];
    sodium_bin2hex (hex, sizeof hex, rnd, sizeof rnd);
    snprintf (st->lease_id, sizeof st->lease_id, "lease_%s", hex);
    json_object_set_new (lease, "lease_id", json_string (st->lease_id));
    json_object_set_new (lease, "issued_at", json_integer (iat));
    json_object_set_new (lease, "expires_at", json_integer (exp));
    json_object_set_new (lease, "cap_at", json_integer (iat + job->cap));
    json_object_set_new (lease, "state", json_string ("active"));
    json_object_set_new (lease, "audience", json_string (job->audience));
    json_object_set_new (lease, "client_id", json_string (bus_request_principal (req)));
    if (upstream) {
        token = strdup (upstream);
        st->upstream = strdup (upstream);
        const char *conn = json_string_value (json_object_get (lease, "connection"));
        st->connection = conn ? strdup (conn) : NULL;
        rc = token && st->upstream && st->connection ? 0 : BUS_ENOMEM;
        json_object_set_new (lease, "upstream", json_true ());
        json_object_set_new (lease, "token_type", json_string (upstream_type));
        if (job->upstream_expires_in > 0)
            json_object_set_new (lease, "upstream_expires_at", json_integer (iat + job->upstream_expires_in));
    }
    else
        rc = vault_mint (self, lease, job->audience, bus_request_principal (req), iat, exp, &token, jti);
    if (rc == 0) {
        vault_token_hmac (self, token, mac);
        if (*jti)
            json_object_set_new (lease, "jti", json_string (jti));
        json_object_set_new (lease, "token_hmac", json_string (mac));
    }
    if (rc == 0 && upstream) {
        snprintf (st->ukey, sizeof st->ukey, "lease/%s", st->lease_id);
        json_t *none = json_object ();
        rc = vault_seal_record (self, st->ukey, none, token, strlen (token), &st->usealed, &st->usealed_len);
        json_decref (none);
    }
    const char *approval = json_string_value (json_object_get (lease, "approval"));
    if (rc == 0 && approval && !(st->approval = strdup (approval)))
        rc = BUS_ENOMEM;
    s_exp_key (st->ekey, &st->ekey_len, exp * 1000, st->lease_id);
    if (rc == 0)
        rc = s_run_key (st->rkey, &st->rkey_len, json_string_value (json_object_get (lease, "run")), st->lease_id);
    if (rc == 0) {
        st->lease_text = json_dumps (lease, JSON_COMPACT | JSON_SORT_KEYS);
        st->event = s_lease_event (lease, mac);
        st->reply = json_pack ("{s:s, s:s, s:s, s:I, s:I, s:O}", "lease_id", st->lease_id, "token", token,
                               "token_type", upstream ? upstream_type : "DPoP", "issued_at", (json_int_t) iat,
                               "expires_at", (json_int_t) exp, "scopes", json_object_get (lease, "scopes"));
        if (!st->lease_text || !st->event || !st->reply)
            rc = BUS_ENOMEM;
    }
    if (token)
        sodium_memzero (token, strlen (token));
    free (token);
    if (rc)
        goto failed;
    vault_lease_job_free (job);
    /* a lone lease commits here on the reactor (the writer idle: no
       thread hop); leases that queue go to the writer, which groups them
       (one fsync); either way with the outcome, events after the commit,
       the reply last (bus_request_write) */
    (void) bus_request_write (req, s_store_work, NULL, st, s_store_free);   /* answered or deferred; st freed */
    return;
failed:
    bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "cannot issue the lease: %s", bus_strerror (rc));
    s_store_free (st);
    vault_lease_job_free (job);
}

/*  The checks passed: a token minted here (local) or asked of the provider. */
static void
s_lease_finish (vault_lease_job_t *job)
{
    const char *mode = json_string_value (json_object_get (job->conn, "mode"));
    if (mode && (!strcmp (mode, "oauth") || !strcmp (mode, "auth0")))
        vault_upstream_start (job);
    else
        vault_lease_store (job, NULL, NULL);
}

/*  approval.completed from the ciba-broker: an approved one is kept
    (run and node), the oldest dropped past VAULT_APPROVED_MAX. */
static int
s_on_completed (bus_follow_t *follow, bus_txn_t *txn, proto_msg_t *event, void *arg)
{
    vault_t *self = arg;
    const char *id = json_string_value (json_object_get (event->body, "approval_id"));
    const char *outcome = json_string_value (json_object_get (event->body, "outcome"));
    const char *run = json_string_value (json_object_get (event->body, "run"));
    const char *node = json_string_value (json_object_get (event->body, "node"));
    if (!id || !outcome || strcmp (outcome, "approved") || !run || !node || zhash_lookup (self->approved, id))
        return 0;
    char *where = NULL;
    if (asprintf (&where, "%s\n%s", run, node) < 0)
        return 0;                       /* not kept: the lease asks ciba.status */
    if (zhash_insert (self->approved, id, where)) {
        free (where);
        return 0;
    }
    zhash_freefn (self->approved, id, free);
    zlist_append (self->approved_order, strdup (id));
    while (zlist_size (self->approved_order) > VAULT_APPROVED_MAX) {
        char *old = zlist_pop (self->approved_order);
        zhash_delete (self->approved, old);
        free (old);
    }
    return 0;
}

int
vault_approvals_follow (vault_t *self)
{
    self->approved = zhash_new ();
    self->approved_order = zlist_new ();
    static const char *const topics [] = { "approval.completed", NULL };
    bus_follow_opts_t fo = { .name = "approvals", .topics = topics, .fn = s_on_completed, .arg = self,
                             .from_now = true };
    self->approvals_seen = self->approved && self->approved_order ? bus_follow_for (self->svc, &fo, true) : NULL;
    if (!self->approvals_seen)
        return BUS_ENOMEM;
    if (bus_follow_add_service (self->approvals_seen, bus_service_config (self->svc), "ciba-broker"))
        bus_warn ("vault: the ciba-broker is not known here (no key): each lease on an approval asks ciba.status");
    return 0;
}

void
vault_approvals_stop (vault_t *self)
{
    bus_follow_destroy (&self->approvals_seen);
    zhash_destroy (&self->approved);
    char *id;
    while (self->approved_order && (id = zlist_pop (self->approved_order)))
        free (id);
    zlist_destroy (&self->approved_order);
}

/*  Was approval published approved for this run and node? (Then the
    ciba-broker's ciba.status would answer so too: approved is final.) */
static bool
s_approved_seen (vault_t *self, const char *approval, json_t *lease)
{
    const char *where = self->approved ? zhash_lookup (self->approved, approval) : NULL;
    const char *run = json_string_value (json_object_get (lease, "run"));
    const char *node = json_string_value (json_object_get (lease, "node"));
    size_t n = run ? strlen (run) : 0;
    return where && run && node && !strncmp (where, run, n) && where [n] == '\n' && !strcmp (where + n + 1, node);
}

/*  The ciba-broker's answer on the approval. */
static void
s_on_approval (bus_calls_t *calls, proto_msg_t *reply, void *arg)
{
    vault_lease_job_t *job = arg;
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
        vault_lease_job_free (job);
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
        vault_lease_job_free (job);
        return;
    }
    if (!run || !node || strcmp (run, want_run) || strcmp (node, want_node)) {
        bus_reply_error_with (req, PROTO_ERR_FORBIDDEN, json_pack ("{s:s}", "reason", "approval_mismatch"),
                              "approval %s is for run %s node %s, not this step", approval,
                              run ? run : "?", node ? node : "?");
        vault_lease_job_free (job);
        return;
    }
    if (!state || strcmp (state, "approved")) {
        char reason [40];
        snprintf (reason, sizeof reason, "approval_%s", state && strlen (state) < 20 ? state : "unknown");
        bus_reply_error_with (req, PROTO_ERR_FORBIDDEN, json_pack ("{s:s}", "reason", reason),
                              "approval %s is %s, not approved", approval, state ? state : "in no state");
        vault_lease_job_free (job);
        return;
    }
    s_lease_finish (job);
}

/*  vault.lease {run, node, connection, scopes, ttl?, approval?, node_key}. */
void
vault_lease (bus_service_t *svc, bus_request_t *req, void *arg)
{
    vault_t *self = arg;
    json_t *body = bus_request_body (req);
    const char *run = json_string_value (json_object_get (body, "run"));
    const char *node = json_string_value (json_object_get (body, "node"));
    const char *name = json_string_value (json_object_get (body, "connection"));
    const char *approval = json_string_value (json_object_get (body, "approval"));
    const char *node_key = json_string_value (json_object_get (body, "node_key"));
    char why [200] = "", key [160];
    json_t *scopes = vault_scopes (json_object_get (body, "scopes"), why, sizeof why), *meta = NULL;
    vault_lease_job_t *job = NULL;
    if (!scopes) {
        bus_reply_error (req, PROTO_ERR_INVALID, "scopes: %s", why);
        goto done;
    }
    snprintf (key, sizeof key, "connection/%s", name);
    bus_txn_t *txn = bus_txn_begin (bus_service_store (svc), false);
    int rc = txn ? vault_get_sealed (self, txn, self->db_conn, key, &meta, NULL, NULL, NULL, NULL) : BUS_EIO;
    bool ended = rc == 0 && s_run_ended (self, txn, run);
    bus_txn_abort (&txn);
    if (rc) {
        vault_reply_sealed_error (req, "connection", rc);
        goto done;
    }
    if (ended) {                /* early: no approval asked, no token obtained */
        bus_outcome_t out = { 0 };
        s_run_ended_error (&out, run);
        bus_reply_outcome (req, &out);
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
    if (cap <= 0 || cap > VAULT_TTL_MAX)
        cap = VAULT_TTL_MAX;
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
        vault_lease_job_free (job);
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
        vault_lease_job_free (job);
        goto done;
    }
    /* published approved for this step: no need to ask (the approval is
       used once all the same: the approvals record, in the lease's commit) */
    if (s_approved_seen (self, approval, job->lease)) {
        bus_stats_count (bus_service_stats (svc), "approvals_seen", 1);
        s_lease_finish (job);
        goto done;
    }
    bus_stats_count (bus_service_stats (svc), "approvals_asked", 1);
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
        vault_lease_job_free (job);
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

/*  vault.renew of a lease holding a provider's token (checked): the same
    token (the provider's, sealed) for longer, the lease's expiry moved to
    exp (within its cap and the token's own expiry), token.renewed; no
    call to the provider, so no new token to track. The token still ends
    with its lease: revoked upstream and forgotten (vault_upstream_end). */
static void
s_renew_upstream (vault_t *self, bus_request_t *req, bus_txn_t **txn, json_t *lease, int64_t now,
                  int64_t old_exp, int64_t exp)
{
    bus_service_t *svc = self->svc;
    const char *id = json_string_value (json_object_get (lease, "lease_id"));
    char ukey [VAULT_LEASE_ID_MAX + 8];
    snprintf (ukey, sizeof ukey, "lease/%s", id);
    json_t *none = NULL;
    uint8_t *tok = NULL;
    size_t off = 0, len = 0;
    int rc = vault_get_sealed (self, *txn, self->db_upstream, ukey, &none, &tok, &off, &len, NULL);
    json_decref (none);
    if (rc) {
        bus_service_abort (svc, txn);
        vault_reply_sealed_error (req, "provider's token of the lease", rc);
        return;
    }
    uint8_t ekey [8 + VAULT_LEASE_ID_MAX];
    size_t ekey_len;
    s_exp_key (ekey, &ekey_len, old_exp * 1000, id);
    bus_txn_del (*txn, self->db_exp, ekey, ekey_len);
    s_exp_key (ekey, &ekey_len, exp * 1000, id);
    rc = bus_txn_put (*txn, self->db_exp, ekey, ekey_len, "", 0);
    json_object_set_new (lease, "expires_at", json_integer (exp));
    json_object_set_new (lease, "renewals", json_integer (json_integer_value (json_object_get (lease, "renewals")) + 1));
    if (rc == 0)
        rc = s_lease_put (self, *txn, lease);
    json_t *ev = rc ? NULL : s_lease_event (lease, NULL);
    if (ev) {
        json_object_set_new (ev, "previous_expires_at", json_integer (old_exp));
        json_object_set_new (ev, "renewed_at", json_integer (now));
    }
    if (rc == 0)
        rc = bus_event_append (svc, *txn, "token.renewed", ev, bus_request_traceparent (req));
    if (rc) {
        bus_service_abort (svc, txn);
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "cannot renew: %s", bus_strerror (rc));
    }
    else {
        const char *type = json_string_value (json_object_get (lease, "token_type"));
        bus_outcome_t out = { .body = json_pack ("{s:s, s:s%, s:s, s:I, s:O}", "lease_id", id,
                                                 "token", (const char *) tok + off, len,
                                                 "token_type", type ? type : "Bearer", "expires_at", (json_int_t) exp,
                                                 "scopes", json_object_get (lease, "scopes")) };
        bus_request_commit (req, txn, &out);
    }
    vault_plain_free (&tok);
}

/*  vault.renew {lease_id, ttl?}: a new token for an active lease, expiring
    at most ttl (default the lease's) from now and never past the lease's
    cap (issued_at + the connection's ttl_cap). */
void
vault_renew (bus_service_t *svc, bus_request_t *req, void *arg)
{
    vault_t *self = arg;
    json_t *body = bus_request_body (req);
    const char *id = json_string_value (json_object_get (body, "lease_id"));
    bus_txn_t *txn = NULL;
    json_t *lease = s_lease_open (self, req, id, &txn);
    char *token = NULL;
    int rc;
    if (!lease)
        goto done;
    int64_t now = vault_now ();
    int64_t old_exp = json_integer_value (json_object_get (lease, "expires_at"));
    int64_t cap_at = json_integer_value (json_object_get (lease, "cap_at"));
    const char *state = json_string_value (json_object_get (lease, "state"));
    if (strcmp (state, "active") || old_exp <= now) {
        bus_service_abort (svc, &txn);
        bus_reply_error_with (req, PROTO_ERR_CONFLICT, json_pack ("{s:s}", "reason", "not_active"),
                              "lease %s is %s", id, old_exp <= now && !strcmp (state, "active") ? "expired" : state);
        goto done;
    }
    int64_t ttl = json_is_integer (json_object_get (body, "ttl")) ? json_integer_value (json_object_get (body, "ttl"))
                : json_integer_value (json_object_get (lease, "ttl"));
    if (ttl < 1 || ttl > VAULT_TTL_MAX) {
        bus_service_abort (svc, &txn);
        bus_reply_error_with (req, PROTO_ERR_INVALID, json_pack ("{s:s}", "reason", "ttl"),
                              "ttl %lld: 1..%d s", (long long) ttl, VAULT_TTL_MAX);
        goto done;
    }
    int64_t exp = now + ttl < cap_at ? now + ttl : cap_at;
    /* a provider's token: the lease lives no longer than it (when known) */
    bool upstream = json_is_true (json_object_get (lease, "upstream"));
    int64_t up_exp = json_integer_value (json_object_get (lease, "upstream_expires_at"));
    bool by_upstream = upstream && up_exp > 0 && up_exp < exp;
    if (by_upstream)
        exp = up_exp;
    if (exp <= old_exp) {
        bus_service_abort (svc, &txn);
        if (by_upstream)
            bus_reply_error_with (req, PROTO_ERR_CONFLICT, json_pack ("{s:s, s:I}", "reason", "upstream_expiry",
                                                                       "upstream_expires_at", (json_int_t) up_exp),
                                  "lease %s cannot outlive its provider's token (%lld): ask for a new lease", id,
                                  (long long) up_exp);
        else
            bus_reply_error_with (req, PROTO_ERR_CONFLICT, json_pack ("{s:s, s:I}", "reason", "cap", "cap_at",
                                                                       (json_int_t) cap_at),
                                  "lease %s cannot outlive its cap (%lld)", id, (long long) cap_at);
        goto done;
    }
    if (upstream) {
        s_renew_upstream (self, req, &txn, lease, now, old_exp, exp);
        goto done;
    }
    char jti [40], mac [VAULT_HMAC_TEXT_LEN];
    rc = vault_mint (self, lease, json_string_value (json_object_get (lease, "audience")),
                 json_string_value (json_object_get (lease, "client_id")), now, exp, &token, jti);
    uint8_t ekey [8 + VAULT_LEASE_ID_MAX];
    size_t ekey_len;
    if (rc == 0) {
        s_exp_key (ekey, &ekey_len, old_exp * 1000, id);
        bus_txn_del (txn, self->db_exp, ekey, ekey_len);
        s_exp_key (ekey, &ekey_len, exp * 1000, id);
        rc = bus_txn_put (txn, self->db_exp, ekey, ekey_len, "", 0);
    }
    if (rc == 0) {
        vault_token_hmac (self, token, mac);
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
    index entry gone, its end indexed (lease_ended: the sweep forgets the
    lease lease_keep_s later), the event. Returns 0, or 1 when it was not
    active. */
static int
s_lease_end (vault_t *self, bus_txn_t *txn, json_t *lease, const char *state, const char *traceparent)
{
    if (strcmp (json_string_value (json_object_get (lease, "state")) ?: "", "active"))
        return 1;
    const char *id = json_string_value (json_object_get (lease, "lease_id"));
    uint8_t ekey [8 + VAULT_LEASE_ID_MAX];
    size_t ekey_len;
    s_exp_key (ekey, &ekey_len, json_integer_value (json_object_get (lease, "expires_at")) * 1000, id);
    bus_txn_del (txn, self->db_exp, ekey, ekey_len);
    bool revoked = !strcmp (state, "revoked");
    if (json_is_true (json_object_get (lease, "upstream")))
        vault_upstream_end (self, txn, lease);
    json_object_set_new (lease, "state", json_string (state));
    json_object_set_new (lease, revoked ? "revoked_at" : "expired_at", json_integer (vault_now ()));
    int rc = s_lease_put (self, txn, lease);
    if (rc == 0)
        rc = s_end_index (self, txn, vault_now_ms (), id, json_string_value (json_object_get (lease, "run")));
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
    vault_t *self;
    bus_txn_t *txn;
    json_t *list;                   /* leases (full records) */
    int rc;
} s_scan_t;

/*  Collect every lease. */
static int
s_scan_lease (const void *key, size_t key_len, const void *val, size_t val_len, void *arg)
{
    s_scan_t *sc = arg;
    json_t *lease = json_loadb (val, val_len, 0, NULL);
    if (lease)
        json_array_append_new (sc->list, lease);
    return 0;
}

/*  Collect the lease a lease_run entry names (run ‖ NUL ‖ id). */
static int
s_scan_run (const void *key, size_t key_len, const void *val, size_t val_len, void *arg)
{
    s_scan_t *sc = arg;
    const char *sep = memchr (key, 0, key_len);
    size_t n = sep ? key_len - (size_t) (sep + 1 - (const char *) key) : 0;
    if (n == 0 || n > VAULT_LEASE_ID_MAX)
        return 0;
    char id [VAULT_LEASE_ID_MAX + 1];
    memcpy (id, sep + 1, n);
    id [n] = 0;
    int rc;
    json_t *lease = s_lease_get (sc->self, sc->txn, id, &rc);
    if (lease)
        json_array_append_new (sc->list, lease);
    return rc == 0 || rc == BUS_ENOTFOUND || rc == BUS_EINVAL ? 0 : rc;
}

/*  The leases of run (by the lease_run index), or every lease (run
    NULL), read in txn into a new *list. */
static int
s_collect (vault_t *self, bus_txn_t *txn, const char *run, json_t **list)
{
    s_scan_t sc = { self, txn, json_array (), 0 };
    int rc = sc.list ? 0 : BUS_ENOMEM;
    if (rc == 0 && run) {
        uint8_t prefix [VAULT_RUN_MAX + 1 + VAULT_LEASE_ID_MAX];
        size_t len;
        if (s_run_key (prefix, &len, run, NULL) == 0)      /* else no lease has such a run */
            rc = bus_txn_scan_prefix (txn, self->db_lease_run, prefix, len, s_scan_run, &sc);
    }
    else if (rc == 0)
        rc = bus_txn_scan (txn, self->db_leases, NULL, 0, NULL, 0, s_scan_lease, &sc);
    if (rc)
        json_decref (sc.list);
    *list = rc ? NULL : sc.list;
    return rc;
}

/*  The leases vault.revoke names (lease_id, or run's), read in txn into
    *list; *active: how many of them are active. */
static int
s_revoke_list (vault_t *self, bus_txn_t *txn, const char *id, const char *run, json_t **list, size_t *active)
{
    int rc;
    *active = 0;
    if (id) {
        json_t *lease = s_lease_get (self, txn, id, &rc);
        *list = lease ? json_pack ("[o]", lease) : NULL;
        if (lease && !*list)
            rc = BUS_ENOMEM;
    }
    else
        rc = s_collect (self, txn, run, list);
    size_t i;
    json_t *lease;
    json_array_foreach (rc ? NULL : *list, i, lease)
        *active += !strcmp (json_string_value (json_object_get (lease, "state")) ?: "", "active");
    return rc;
}

/*  vault.revoke {lease_id} or {run}: every active lease named ends now.
    A run's leases are read by the lease_run index, and the run is
    recorded as ended (run_ended), so that no lease is issued for it
    later: not one that was on its way (asking its approval, queued for
    the writer), not a retry that arrives late. With nothing active and
    the run's end already recorded, the answer comes from a read
    transaction and nothing is committed. */
void
vault_revoke (bus_service_t *svc, bus_request_t *req, void *arg)
{
    vault_t *self = arg;
    json_t *body = bus_request_body (req);
    const char *id = json_string_value (json_object_get (body, "lease_id"));
    const char *run = json_string_value (json_object_get (body, "run"));
    if (!id == !run) {
        bus_reply_error (req, PROTO_ERR_INVALID, "name either lease_id or run");
        return;
    }
    json_t *list = NULL;
    size_t active = 0;
    bus_txn_t *txn = bus_txn_begin (bus_service_store (svc), false);
    int rc = txn ? s_revoke_list (self, txn, id, run, &list, &active) : BUS_EIO;
    bool mark = rc == 0 && run && !s_run_ended (self, txn, run);
    bus_txn_abort (&txn);
    if (rc == 0 && (active || mark)) {
        /* something to revoke or record: read again where it is written */
        json_decref (list);
        list = NULL;
        txn = bus_txn_begin (bus_service_store (svc), true);
        rc = txn ? s_revoke_list (self, txn, id, run, &list, &active) : BUS_EIO;
        if (rc == 0 && run) {
            uint8_t at [8];
            bus_u64_to_key ((uint64_t) vault_now_ms (), at);
            rc = bus_txn_put (txn, self->db_run_ended, run, strlen (run), at, sizeof at);
        }
    }
    if (rc == BUS_ENOTFOUND) {
        bus_service_abort (svc, &txn);
        bus_reply_error (req, PROTO_ERR_NOT_FOUND, "no lease %s", id);
        return;
    }
    json_t *revoked = json_array ();
    size_t i;
    json_t *lease;
    json_array_foreach (rc ? NULL : list, i, lease) {
        int r = s_lease_end (self, txn, lease, "revoked", bus_request_traceparent (req));
        if (r == 0)
            json_array_append (revoked, json_object_get (lease, "lease_id"));
        else if (r < 0) {
            rc = r;
            break;
        }
    }
    json_decref (list);
    if (rc) {
        json_decref (revoked);
        bus_service_abort (svc, &txn);
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "cannot revoke: %s", bus_strerror (rc));
        return;
    }
    if (!txn) {
        bus_reply_ok (req, json_pack ("{s:o}", "revoked", revoked));      /* nothing was active */
        return;
    }
    bus_outcome_t out = { .body = json_pack ("{s:o}", "revoked", revoked) };
    bus_request_commit (req, &txn, &out);
}

/*  vault.leases {run?} (a run's by the lease_run index). */
void
vault_leases (bus_service_t *svc, bus_request_t *req, void *arg)
{
    vault_t *self = arg;
    json_t *list = NULL;
    bus_txn_t *txn = bus_txn_begin (bus_service_store (svc), false);
    int rc = txn ? s_collect (self, txn, json_string_value (json_object_get (bus_request_body (req), "run")), &list)
                 : BUS_EIO;
    bus_txn_abort (&txn);
    if (rc) {
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "cannot list leases: %s", bus_strerror (rc));
        return;
    }
    json_t *out = json_array ();
    size_t i;
    json_t *lease;
    json_array_foreach (list, i, lease)
        json_array_append_new (out, s_lease_public (lease));
    json_decref (list);
    bus_reply_ok (req, json_pack ("{s:o}", "leases", out));
}

/*  The start-time indexing of a store written before an index was kept. */
typedef struct {
    vault_t *self;
    bus_txn_t *txn;
    bool by_run, by_end;            /* which index to build */
    size_t n_run, n_end;            /* entries put */
    int64_t now_ms;
    int rc;
} s_reindex_t;

/*  Put a lease's entries (its JSON) in the indexes being built: lease_run;
    lease_ended when it has ended, at the time it ended (revoked_at or
    expired_at, seconds; now when it has neither). */
static int
s_reindex_lease (const void *key, size_t key_len, const void *val, size_t val_len, void *arg)
{
    s_reindex_t *ri = arg;
    json_t *lease = key_len <= VAULT_LEASE_ID_MAX ? json_loadb (val, val_len, 0, NULL) : NULL;
    if (!lease)
        return 0;
    char id [VAULT_LEASE_ID_MAX + 1];
    memcpy (id, key, key_len);
    id [key_len] = 0;
    const char *run = json_string_value (json_object_get (lease, "run"));
    const char *state = json_string_value (json_object_get (lease, "state")) ?: "";
    uint8_t rkey [VAULT_RUN_MAX + 1 + VAULT_LEASE_ID_MAX];
    size_t len;
    if (ri->by_run && s_run_key (rkey, &len, run, id) == 0) {
        ri->rc = bus_txn_put (ri->txn, ri->self->db_lease_run, rkey, len, "", 0);
        ri->n_run += ri->rc == 0;
    }
    if (ri->rc == 0 && ri->by_end && strcmp (state, "active")) {
        json_t *at = json_object_get (lease, strcmp (state, "revoked") ? "expired_at" : "revoked_at");
        ri->rc = s_end_index (ri->self, ri->txn, json_is_integer (at) ? json_integer_value (at) * 1000 : ri->now_ms,
                              id, run);
        ri->n_end += ri->rc == 0;
    }
    json_decref (lease);
    return ri->rc;
}

/*  Is db empty in txn? (0 no, 1 yes, or an error) */
static int
s_db_empty (bus_txn_t *txn, int db)
{
    const void *k, *v;
    size_t kl, vl;
    int rc = bus_txn_first (txn, db, &k, &kl, &v, &vl);
    return rc == BUS_ENOTFOUND ? 1 : rc;
}

int
vault_lease_index (vault_t *self)
{
    bus_service_t *svc = self->svc;
    bus_txn_t *txn = bus_txn_begin (bus_service_store (svc), false);
    if (!txn)
        return BUS_EIO;
    int no_leases = s_db_empty (txn, self->db_leases);
    int no_run = s_db_empty (txn, self->db_lease_run);
    int no_end = s_db_empty (txn, self->db_lease_ended);
    bus_txn_abort (&txn);
    if (no_leases < 0 || no_run < 0 || no_end < 0)
        return no_leases < 0 ? no_leases : no_run < 0 ? no_run : no_end;
    if (no_leases || (!no_run && !no_end))
        return 0;
    /* leases, and an index empty: a store of before it (or, for lease_ended,
       one whose ended leases are all forgotten: the leases are then the
       active ones, and none is indexed) */
    s_reindex_t ri = { self, bus_txn_begin (bus_service_store (svc), true), no_run == 1, no_end == 1,
                       0, 0, vault_now_ms (), 0 };
    int rc = ri.txn ? bus_txn_scan (ri.txn, self->db_leases, NULL, 0, NULL, 0, s_reindex_lease, &ri) : BUS_EIO;
    if (rc == 0)
        rc = ri.rc;
    if (rc == 0 && (ri.n_run || ri.n_end))
        rc = bus_service_commit (svc, &ri.txn);
    else
        bus_service_abort (svc, &ri.txn);
    if (rc == 0 && ri.n_run)
        bus_info ("vault: %zu lease(s) indexed by run (a store of before the lease_run index)", ri.n_run);
    if (rc == 0 && ri.n_end)
        bus_info ("vault: %zu ended lease(s) indexed by their end, to be forgotten lease_keep_s after it "
                  "(a store of before the lease_ended index)", ri.n_end);
    return rc;
}

/*  vault.token_used {lease_id, target?}: the orchestrator reports a use;
    published as token.used. */
void
vault_token_used (bus_service_t *svc, bus_request_t *req, void *arg)
{
    vault_t *self = arg;
    json_t *body = bus_request_body (req);
    const char *id = json_string_value (json_object_get (body, "lease_id"));
    bus_txn_t *txn = NULL;
    json_t *lease = s_lease_open (self, req, id, &txn);
    int rc;
    if (!lease)
        return;
    int64_t now = vault_now ();
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

#define S_SWEEP_MAX 256

/*  Entries of a time index (lease_exp, lease_ended: 8-byte BE ms ‖ lease
    id -> a value, the run for lease_ended) due by until_ms, oldest first,
    up to S_SWEEP_MAX. */
typedef struct {
    uint64_t until_ms;
    size_t n;
    struct {
        uint8_t key [8 + VAULT_LEASE_ID_MAX];
        size_t len;
        char val [VAULT_RUN_MAX + 1];
    } due [S_SWEEP_MAX];
} s_due_t;

/*  Collect the entries due (stops at the first not due). */
static int
s_due_scan (const void *key, size_t key_len, const void *val, size_t val_len, void *arg)
{
    s_due_t *d = arg;
    if (key_len < 8 || bus_key_to_u64 (key) > d->until_ms)
        return 1;
    if (key_len > 8 && key_len <= sizeof d->due [0].key && val_len < sizeof d->due [0].val) {
        memcpy (d->due [d->n].key, key, key_len);
        d->due [d->n].len = key_len;
        memcpy (d->due [d->n].val, val, val_len);
        d->due [d->n++].val [val_len] = 0;
    }
    return d->n >= S_SWEEP_MAX;
}

/*  The lease id of due entry i. */
static void
s_due_id (const s_due_t *d, size_t i, char id [VAULT_LEASE_ID_MAX + 1])
{
    size_t n = d->due [i].len - 8;
    memcpy (id, d->due [i].key + 8, n);
    id [n] = 0;
}

/*  The run ends a sweep forgets: a bounded stretch of the run_ended
    database per sweep (the sweep runs every sweep_ms on the reactor),
    from where the last stretch stopped, round and round. */
#define S_FORGET_VISIT 1024             /* entries looked at per sweep */

typedef struct {
    uint64_t before_ms;                 /* ends recorded before this go */
    size_t visited, n;
    char resume [VAULT_RUN_MAX];        /* where the next stretch starts */
    size_t resume_len;
    struct { char run [VAULT_RUN_MAX]; size_t len; } old [S_SWEEP_MAX];
} s_forget_t;

static int
s_forget_scan (const void *key, size_t key_len, const void *val, size_t val_len, void *arg)
{
    s_forget_t *fg = arg;
    if (key_len > sizeof fg->resume)
        return 0;                       /* not one of ours: run ids are shorter */
    if (fg->visited++ >= S_FORGET_VISIT || fg->n >= S_SWEEP_MAX) {
        memcpy (fg->resume, key, key_len);
        fg->resume_len = key_len;
        return 1;
    }
    if (val_len == 8 && bus_key_to_u64 (val) < fg->before_ms) {
        memcpy (fg->old [fg->n].run, key, key_len);
        fg->old [fg->n++].len = key_len;
    }
    return 0;
}

/*  Run ends older than [vault] run_end_keep_s are forgotten (longer than
    any lease request of the run can be in flight or retried); how many. */
static size_t
s_forget_runs (vault_t *self, bus_txn_t *txn, uint64_t now_ms, int *rc)
{
    static s_forget_t fg;                /* the reactor's alone */
    fg.before_ms = now_ms - 1000 * (uint64_t) bus_config_int (bus_service_config (self->svc), "vault",
                                                              "run_end_keep_s");
    fg.visited = fg.n = 0;
    size_t from_len = fg.resume_len;
    fg.resume_len = 0;                  /* the end reached: round again */
    *rc = bus_txn_scan (txn, self->db_run_ended, from_len ? fg.resume : NULL, from_len, NULL, 0,
                        s_forget_scan, &fg);
    for (size_t i = 0; i < fg.n && *rc == 0; i++)
        *rc = bus_txn_del (txn, self->db_run_ended, fg.old [i].run, fg.old [i].len);
    return *rc ? 0 : fg.n;
}

/*  Ended leases older than [vault] lease_keep_s are forgotten: their
    record and their entry in the run's index (the approval each used
    stays marked used: an approval yields one lease, ever). Up to
    S_SWEEP_MAX per sweep, oldest first; how many. */
static size_t
s_forget_leases (vault_t *self, bus_txn_t *txn, uint64_t now_ms, int *rc)
{
    static s_due_t g;                    /* the reactor's alone */
    g.until_ms = now_ms - 1000 * (uint64_t) bus_config_int (bus_service_config (self->svc), "vault",
                                                            "lease_keep_s");
    g.n = 0;
    *rc = bus_txn_scan (txn, self->db_lease_ended, NULL, 0, NULL, 0, s_due_scan, &g);
    for (size_t i = 0; i < g.n && *rc == 0; i++) {
        char id [VAULT_LEASE_ID_MAX + 1];
        s_due_id (&g, i, id);
        uint8_t rkey [VAULT_RUN_MAX + 1 + VAULT_LEASE_ID_MAX];
        size_t rkey_len;
        int del = bus_txn_del (txn, self->db_leases, id, strlen (id));
        if ((del == 0 || del == BUS_ENOTFOUND) && s_run_key (rkey, &rkey_len, g.due [i].val, id) == 0)
            del = bus_txn_del (txn, self->db_lease_run, rkey, rkey_len);
        if (del == 0 || del == BUS_ENOTFOUND)
            del = bus_txn_del (txn, self->db_lease_ended, g.due [i].key, g.due [i].len);
        if (del && del != BUS_ENOTFOUND)
            *rc = del;
    }
    if (*rc == 0 && g.n)
        bus_stats_count (bus_service_stats (self->svc), "leases_forgotten", g.n);
    return *rc ? 0 : g.n;
}

/*  The sweep: every active lease past its expiry ends (token.expired);
    signing keys retired longer than any token lives are dropped; run ends
    older than run_end_keep_s are forgotten, and leases ended longer
    ago than lease_keep_s. */
void
vault_sweep (bus_service_t *svc, void *state)
{
    vault_t *self = state;
    static s_due_t sw;                   /* the reactor's alone */
    sw.until_ms = (uint64_t) vault_now_ms ();
    sw.n = 0;
    bus_txn_t *txn = bus_txn_begin (bus_service_store (svc), true);
    int rc = txn ? bus_txn_scan (txn, self->db_exp, NULL, 0, NULL, 0, s_due_scan, &sw) : BUS_EIO;
    size_t ended = 0;
    for (size_t i = 0; i < sw.n && rc == 0; i++) {
        char id [VAULT_LEASE_ID_MAX + 1];
        s_due_id (&sw, i, id);
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
    bool dropped = rc == 0 && vault_keys_drop_retired (self, txn);
    size_t forgotten = rc == 0 ? s_forget_runs (self, txn, sw.until_ms, &rc) : 0;
    forgotten += rc == 0 ? s_forget_leases (self, txn, sw.until_ms, &rc) : 0;
    if (rc == 0 && (ended || dropped || forgotten))
        rc = bus_service_commit (svc, &txn);
    else
        bus_service_abort (svc, &txn);
    if (rc)
        bus_warn ("vault: the lease sweep failed: %s (it runs again)", bus_strerror (rc));
    else if (ended)
        bus_debug ("vault: %zu lease(s) expired", ended);
}
