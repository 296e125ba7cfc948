/*  orch_run.c — the engine: runs advance node by node on the reactor
    (orch_internal.h says what a run record holds).

    A node ends in one transaction: its node.finished, the cursor moved,
    the next node's node.started (and, when the run ends there, its
    terminal event) with the record. A tool step:

        decide   authz.decide; allow -> lease; deny -> REJECTED;
                 approval_required -> ciba.authorize (idempotency_key
                 run/node/attempt: asked again after a crash before the
                 pause was checkpointed, the broker answers the approval
                 it made then), then the run is
                 PAUSED (approval), checkpointed, and leaves memory; the
                 ciba-broker's approval.completed (a durable follower,
                 applied in the follower's own transaction) or, after a
                 restart, ciba.status brings it back: approved -> lease
                 (from the follower: asked while the follower's
                 transaction commits), anything else -> REJECTED
        lease    vault.lease with the step's node key (derived from the
                 instance's node seed and run/node/attempt, so a restarted
                 step presents the same key); an approval already used by
                 a lease of this step (a restart after the lease) -> the
                 lease is found with vault.leases and renewed; the vault
                 down -> PAUSED vault_unavailable, asked again with capped
                 backoff while the approval lasts (its expires_at), then
                 FAILED approval_expired
        audit    audit.append of the step intent (idempotency_key
                 run/node/attempt: appended again after a crash, the
                 auditor answers the first entry's index); no acknowledgement ->
                 PAUSED audit_unavailable, asked again every audit_retry
        (a peer down at decide or authorize: PAUSED authz_unavailable
        or ciba_unavailable, asked again with capped backoff)
        call     the connector's request (DPoP, Idempotency-Key
                 run/node/attempt) on the HTTP client; 5xx/429/network ->
                 PAUSED upstream_retry, backoff, the same key again; 4xx
                 -> FAILED with the upstream's error
        then     the result into vars[output]; once the node's checkpoint
                 is stored, vault.token_used and vault.revoke (neither
                 awaited; the run's end revokes it with the run's others)

    At the run's end: vault.revoke {run} (when it leased), waiters answered.

    An agent node's proposed calls are queued in the record; each runs as
    its tool node (the arguments as vars.call), then the run goes back to
    the agent. A chat agent keeps its conversation in the record (chat):
    each call's result (and each refusal) joins it as a `tool` message
    when the call's node finishes, and the agent runs again (its next
    attempt) until the model answers without calls (the agent's edges are
    then followed) or its max_turns is reached (FAILED agent_turns).
*/
#include "orch_internal.h"
#include "orch_connector.h"
#include "bus_error.h"
#include "bus_jose.h"
#include "bus_log.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/*  A step call waiting for a slot to its peer. */
typedef struct {
    orch_run_t *run;
    char type [40];
    json_t *body;
} s_queued_t;

static void s_peer_next (orch_t *self, int peer);
static void s_advance (orch_run_t *run);
static json_t *s_step_extra (orch_run_t *run);
static void s_fail (orch_run_t *run, const char *state, const char *outcome, const char *code,
                    json_t *extra, const char *fmt, ...) __attribute__((format (printf, 6, 7)));

/* --- records and transactions -------------------------------------------- */

/*  A write transaction on the store, refused (NULL) once a newer instance
    holds the fencing epoch: this one then advances nothing more. */
bus_txn_t *
orch_txn (orch_t *self)
{
    if (self->fenced)
        return NULL;
    bus_txn_t *txn = bus_txn_begin (self->store, true);
    if (!txn)
        return NULL;
    const void *v;
    size_t len;
    if (bus_txn_get (txn, self->db_meta, "epoch", 5, &v, &len) == 0 && len == 8
        && bus_key_to_u64 (v) != self->epoch) {
        bus_error ("orchestrator: fenced: epoch %llu on the store, ours %llu: another instance owns the runs",
                   (unsigned long long) bus_key_to_u64 (v), (unsigned long long) self->epoch);
        self->fenced = true;
        bus_service_abort (self->svc, &txn);
        return NULL;
    }
    return txn;
}

json_t *
orch_run_load (orch_t *self, bus_txn_t *txn, const char *id)
{
    const void *v;
    size_t len;
    if (bus_txn_get (txn, self->db_runs, id, strlen (id), &v, &len))
        return NULL;
    return json_loadb (v, len, 0, NULL);
}

int
orch_run_put (orch_t *self, bus_txn_t *txn, json_t *rec)
{
    json_object_set_new (rec, "updated_at", json_integer (proto_now_us ()));
    json_object_set_new (rec, "epoch", json_integer ((json_int_t) self->epoch));
    /* the in-memory phases go to disk as the phase a restart resumes from */
    json_t *step = json_object_get (rec, "step");
    const char *phase = orch_str (step, "phase");
    json_t *saved = NULL;
    if (phase && (!strcmp (phase, "audit") || !strcmp (phase, "call"))) {
        saved = json_string (phase);
        json_object_set_new (step, "phase", json_string ("lease"));
    }
    else if (phase && !strcmp (phase, "authorize")) {
        saved = json_string (phase);
        json_object_set_new (step, "phase", json_string ("decide"));
    }
    char *text = json_dumps (rec, JSON_COMPACT);
    if (saved)
        json_object_set_new (step, "phase", saved);
    if (!text) {
        bus_txn_fail (txn, BUS_ENOMEM);
        return BUS_ENOMEM;
    }
    const char *id = orch_str (rec, "run");
    int rc = bus_txn_put (txn, self->db_runs, id, strlen (id), text, strlen (text));
    free (text);
    return rc;
}

/*  Append an event (body stolen) to txn. */
void
orch_run_emit (orch_t *self, bus_txn_t *txn, const char *type, json_t *body)
{
    bus_event_append (self->svc, txn, type, body, NULL);
}

/*  The entry of nodes[] for the cursor (the last one of that node). */
static json_t *
s_node_entry (json_t *rec)
{
    json_t *nodes = json_object_get (rec, "nodes");
    size_t n = json_array_size (nodes);
    return n ? json_array_get (nodes, n - 1) : NULL;
}

/*  Move the cursor to node id: a new step, a nodes[] entry, node.started. */
static void
s_enter (orch_t *self, bus_txn_t *txn, json_t *rec, const orch_workflow_t *wf, const char *id)
{
    const json_t *node = orch_workflow_node (wf, id);
    const char *kind = orch_str (node, "kind");
    json_t *nodes = json_object_get (rec, "nodes");
    int attempt = 1;
    size_t i;
    json_t *e;
    json_array_foreach (nodes, i, e)
        if (!strcmp (orch_str (e, "node"), id))
            attempt++;
    json_array_append_new (nodes, json_pack ("{s:s, s:s, s:s, s:i}", "node", id, "kind", kind,
                                             "state", "running", "attempt", attempt));
    json_object_set_new (rec, "cursor", json_string (id));
    json_object_set_new (rec, "step", json_pack ("{s:s, s:i, s:s, s:i}", "node", id, "attempt", attempt,
                                                 "phase", "decide", "tries", 0));
    orch_run_emit (self, txn, "node.started", json_pack ("{s:s, s:s, s:s, s:i}", "run", orch_str (rec, "run"),
                                                  "node", id, "kind", kind, "attempt", attempt));
}

/*  Finish the cursor's node: node.finished {outcome, extra...} and its
    nodes[] entry. extra is borrowed. */
void
orch_run_finish_node (orch_t *self, bus_txn_t *txn, json_t *rec, const char *outcome, const json_t *extra)
{
    json_t *entry = s_node_entry (rec);
    json_t *step = json_object_get (rec, "step");
    if (!entry || !json_object_get (rec, "cursor") || json_is_null (json_object_get (rec, "cursor")))
        return;
    json_object_set_new (entry, "state", json_string ("finished"));
    json_object_set_new (entry, "outcome", json_string (outcome));
    json_t *ev = json_pack ("{s:s, s:O, s:O, s:O, s:s}", "run", orch_str (rec, "run"), "node",
                            json_object_get (entry, "node"), "kind", json_object_get (entry, "kind"),
                            "attempt", json_object_get (step, "attempt"), "outcome", outcome);
    if (extra)
        json_object_update (entry, (json_t *) extra), json_object_update (ev, (json_t *) extra);
    orch_run_emit (self, txn, "node.finished", ev);
}

/*  End the run in txn: state, reason, its terminal event. */
void
orch_run_end (orch_t *self, bus_txn_t *txn, json_t *rec, const char *state, const char *reason)
{
    const char *id = orch_str (rec, "run");
    const char *node = orch_str (rec, "cursor");
    json_object_set_new (rec, "state", json_string (state));
    if (reason)
        json_object_set_new (rec, "reason", json_string (reason));
    else
        json_object_del (rec, "reason");
    const char *approval = orch_str (json_object_get (rec, "step"), "approval");
    if (approval)
        bus_txn_del (txn, self->db_approvals, approval, strlen (approval));
    json_t *ev;
    if (!strcmp (state, "COMPLETED"))
        ev = json_pack ("{s:s, s:I}", "run", id, "finished_at", (json_int_t) proto_now_us ());
    else if (!strcmp (state, "CANCELLED"))
        ev = json_pack ("{s:s, s:s?}", "run", id, "reason", reason);
    else
        ev = json_pack ("{s:s, s:s, s:s?}", "run", id, "reason", reason ? reason : state, "node", node);
    char type [32];
    snprintf (type, sizeof type, "run.%s", !strcmp (state, "COMPLETED") ? "completed"
                                         : !strcmp (state, "REJECTED") ? "rejected"
                                         : !strcmp (state, "CANCELLED") ? "cancelled" : "failed");
    orch_run_emit (self, txn, type, ev);
    json_object_set_new (rec, "cursor", json_null ());
    self->runs_ended++;
    bus_stats_count (bus_service_stats (self->svc), "runs_ended", 1);
}

/* --- runs in memory ------------------------------------------------------- */

/*  Outbound HTTP slots: a request ends (or is dropped); start the next
    run waiting for a slot. */
static void s_call (orch_run_t *run);
static void s_agent (orch_run_t *run, const json_t *node);

static void
s_http_next (orch_t *self)
{
    while (self->http_busy < ORCH_HTTP_MAX && zlist_size (self->http_wait)) {
        orch_run_t *run = zlist_pop (self->http_wait);
        run->http_queued = false;
        const json_t *node = orch_workflow_node (run->wf, orch_str (run->rec, "cursor"));
        if (!strcmp (orch_str (node, "kind"), "agent"))
            s_agent (run, node);
        else
            s_call (run);
    }
}

/*  Whether run may send an HTTP request now; else it waits in line. */
static bool
s_http_slot (orch_run_t *run)
{
    orch_t *self = run->self;
    if (self->http_busy < ORCH_HTTP_MAX)
        return true;
    run->http_queued = true;
    zlist_append (self->http_wait, run);
    return false;
}

orch_run_t *
orch_run_find (orch_t *self, const char *id)
{
    return zhash_lookup (self->runs, id);
}

/*  Forget a run in memory: its calls, request, timer and token go. */
void
orch_run_drop (orch_run_t *run)
{
    if (!run)
        return;
    orch_t *self = run->self;
    bus_calls_cancel_owner (self->authz, run);
    bus_calls_cancel_owner (self->ciba, run);
    bus_calls_cancel_owner (self->vault, run);
    bus_calls_cancel_owner (self->auditor, run);
    int peer = run->call_peer;
    if (peer >= 0 && run->call_queued) {
        s_queued_t *q = run->call_queued;
        zlist_remove (self->peer_wait [peer], q);
        json_decref (q->body);
        free (q);
        run->call_queued = NULL;
    }
    else if (peer >= 0 && run->call_live) {
        run->call_live = false;
        self->peer_busy [peer]--;
    }
    run->call_peer = -1;
    if (self->http && bus_http_client_cancel_arg (self->http, run) && self->http_busy)
        self->http_busy--;
    if (run->http_queued)
        zlist_remove (self->http_wait, run);
    if (run->http_live || run->http_queued)
        s_http_next (self);
    bus_alarm_end (&run->timer);
    if (peer >= 0)
        s_peer_next (self, peer);
    if (run->token) {
        sodium_memzero (run->token, strlen (run->token));
        free (run->token);
    }
    sodium_memzero (run->sk, sizeof run->sk);
    json_decref (run->early_end);
    json_decref (run->rec);
    zhash_delete (self->runs, run->id);      /* frees run (zhash freefn) */
}

static void
s_run_free (void *arg)
{
    free (arg);
}

/*  A run record taken into memory to be advanced. */
orch_run_t *
orch_run_take (orch_t *self, json_t *rec)
{
    const orch_workflow_t *wf = orch_workflow_by_hash (self, orch_str (rec, "workflow_hash"));
    if (!wf) {
        bus_error ("orchestrator: run %s: workflow %s (%s) is not stored", orch_str (rec, "run"),
                   orch_str (rec, "workflow"), orch_str (rec, "workflow_hash"));
        json_decref (rec);
        return NULL;
    }
    orch_run_t *run = calloc (1, sizeof *run);
    if (!run) {
        json_decref (rec);
        return NULL;
    }
    run->self = self;
    snprintf (run->id, sizeof run->id, "%s", orch_str (rec, "run"));
    run->rec = rec;
    run->wf = wf;
    run->call_peer = -1;
    zhash_insert (self->runs, run->id, run);
    zhash_freefn (self->runs, run->id, s_run_free);
    return run;
}

/*  Commit txn for run; on failure the run leaves memory (a restart resumes
    it from its last checkpoint). Returns 0 or the error. */
static int
s_commit (orch_run_t *run, bus_txn_t **txn)
{
    orch_t *self = run->self;
    orch_run_put (self, *txn, run->rec);
    int rc = bus_service_commit (self->svc, txn);
    if (rc) {
        bus_error ("orchestrator: run %s: checkpoint not stored (%s): the run waits for a restart",
                   run->id, bus_strerror (rc));
        orch_run_drop (run);
    }
    return rc;
}

/*  A fire-and-forget call's answer: logged when it failed. */
static void
s_ignore (bus_calls_t *calls, proto_msg_t *reply, void *arg)
{
    if (!reply->ok)
        bus_warn ("orchestrator: %s: %s: %s", bus_calls_name (calls),
                  json_string_value (json_object_get (reply->error, "code")),
                  json_string_value (json_object_get (reply->error, "message")));
}

/*  After a run has ended (committed): revoke its leases (when it asked
    for any: "leased" is set with the first vault.lease), answer waiters. */
void
orch_run_after_end (orch_t *self, const json_t *rec)
{
    if (json_is_true (json_object_get (rec, "leased"))) {
        bus_calls_send (self->vault, "vault.revoke", json_pack ("{s:s}", "run", orch_str (rec, "run")),
                        NULL, s_ignore, NULL, NULL);
    }
    orch_waiters_notify (self, orch_str (rec, "run"), rec);
}

static bus_calls_t *
s_peer_calls (orch_t *self, int peer)
{
    bus_calls_t *all [ORCH_PEERS] = { self->authz, self->ciba, self->vault, self->auditor };
    return all [peer];
}

static int
s_peer_of (orch_t *self, bus_calls_t *calls)
{
    for (int i = 0; i < ORCH_PEERS; i++)
        if (s_peer_calls (self, i) == calls)
            return i;
    return -1;
}

static void s_send_now (orch_run_t *run, const char *type, json_t *body);

/*  A slot to peer came free: send the calls waiting for it. */
static void
s_peer_next (orch_t *self, int peer)
{
    while (self->peer_busy [peer] < ORCH_CALLS_MAX && zlist_size (self->peer_wait [peer])) {
        s_queued_t *q = zlist_pop (self->peer_wait [peer]);
        orch_run_t *run = q->run;
        run->call_queued = NULL;
        s_send_now (run, q->type, q->body);
        free (q);
    }
}

/*  The answer to a step call: free its slot, then the step's callback. */
static void
s_on_reply (bus_calls_t *calls, proto_msg_t *reply, void *arg)
{
    orch_run_t *run = arg;
    orch_t *self = run->self;
    int peer = run->call_peer;
    run->call_live = false;
    run->call_peer = -1;
    self->peer_busy [peer]--;
    s_peer_next (self, peer);
    run->call_fn (calls, reply, run);
}

/*  Send the run's step call now (a slot is free); on failure the run fails. */
static void
s_send_now (orch_run_t *run, const char *type, json_t *body)
{
    orch_t *self = run->self;
    bus_call_opts_t opts = { .owner = run };
    int peer = run->call_peer;
    int rc = bus_calls_send (s_peer_calls (self, peer), type, body, &opts, s_on_reply, run, NULL);
    if (rc) {
        run->call_peer = -1;
        s_fail (run, "FAILED", "failed", "unavailable", NULL, "%s: cannot send (%s)", type, bus_strerror (rc));
        return;
    }
    run->call_live = true;
    self->peer_busy [peer]++;
}

/*  Send a step call for run (body stolen), fn answering it; it waits in
    line while ORCH_CALLS_MAX calls are in flight to that peer. On failure
    the run fails. */
static void
s_send (orch_run_t *run, bus_calls_t *calls, const char *type, json_t *body, bus_call_fn *fn)
{
    orch_t *self = run->self;
    int peer = s_peer_of (self, calls);
    if (peer < 0 || !body) {
        json_decref (body);
        s_fail (run, "FAILED", "failed", "unavailable", NULL, "%s: cannot send", type);
        return;
    }
    run->call_fn = fn;
    run->call_peer = peer;
    if (self->peer_busy [peer] < ORCH_CALLS_MAX) {
        s_send_now (run, type, body);
        return;
    }
    s_queued_t *q = calloc (1, sizeof *q);
    if (!q) {
        json_decref (body);
        run->call_peer = -1;
        s_fail (run, "FAILED", "failed", "unavailable", NULL, "%s: out of memory", type);
        return;
    }
    q->run = run;
    snprintf (q->type, sizeof q->type, "%s", type);
    q->body = body;
    run->call_queued = q;
    zlist_append (self->peer_wait [peer], q);
}

/*  End the run as state (FAILED/REJECTED) with node outcome and error
    {code, message}; extra (stolen, may be NULL) joins node.finished. */
static void
s_fail (orch_run_t *run, const char *state, const char *outcome, const char *code, json_t *extra,
        const char *fmt, ...)
{
    orch_t *self = run->self;
    char msg [600];
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (msg, sizeof msg, fmt, ap);
    va_end (ap);
    if (self->following) {
        /* a lease sent from the follower's transaction (orch_on_approval)
           could not be: the run goes on from its checkpoint once that
           transaction is stored, and fails then if it must */
        json_decref (extra);
        char id [27];
        snprintf (id, sizeof id, "%s", run->id);
        orch_run_drop (run);
        orch_run_kick (self, id);
        return;
    }
    bus_info ("orchestrator: run %s %s at %s: %s", run->id, state, orch_str (run->rec, "cursor"), msg);
    if (!extra)
        extra = json_object ();
    json_object_set_new (extra, "error", json_pack ("{s:s, s:s}", "code", code, "message", msg));
    bus_txn_t *txn = orch_txn (self);
    if (!txn) {
        json_decref (extra);
        orch_run_drop (run);
        return;
    }
    orch_run_finish_node (self, txn, run->rec, outcome, extra);
    json_decref (extra);
    orch_run_end (self, txn, run->rec, state, msg);
    json_t *rec = json_incref (run->rec);
    if (s_commit (run, &txn) == 0) {
        orch_run_drop (run);
        orch_run_after_end (self, rec);
    }
    json_decref (rec);
}

/*  A chat agent's call (rec.call_id) has finished: its result (the
    tool's output in the run state) joins the agent's conversation as a
    `tool` message, for the agent's next turn. */
static void
s_chat_result (orch_run_t *run)
{
    const char *call_id = orch_str (run->rec, "call_id");
    json_t *messages = json_object_get (json_object_get (run->rec, "chat"), "messages");
    if (call_id && messages) {
        const json_t *node = orch_workflow_node (run->wf, orch_str (run->rec, "cursor"));
        const char *key = orch_str (node, "output") ? orch_str (node, "output") : orch_str (node, "id");
        json_t *vars = json_object_get (run->rec, "vars");
        json_array_append_new (messages, orch_agent_chat_tool_result (call_id, key ? json_object_get (vars, key) : NULL));
    }
    json_object_del (run->rec, "call_id");
}

/*  The step's token is done with: report its use (target) and, unless
    the run has ended (orch_run_after_end then revokes all its leases,
    this one with them: one commit at the vault rather than two), revoke
    its lease; neither awaited. */
static void
s_token_done (orch_t *self, const char *lease, const char *target, bool ended)
{
    bus_calls_send (self->vault, "vault.token_used", json_pack ("{s:s, s:s}", "lease_id", lease, "target", target),
                    NULL, s_ignore, NULL, NULL);
    if (!ended)
        bus_calls_send (self->vault, "vault.revoke", json_pack ("{s:s}", "lease_id", lease), NULL, s_ignore, NULL,
                        NULL);
}

/*  The cursor's node finished ok (extra borrowed, may be NULL): commit it
    with the move to the next node (or the run's end), then go on. A
    tool step's lease (NULL: none) is reported used and revoked once that
    checkpoint is stored (s_token_done): the vault's two commits then do
    not contend with it for the disk, and a restart before it finds the
    lease still active (renewed, the call asked again under its
    Idempotency-Key) rather than revoked (the step failed). */
static void
s_node_done (orch_run_t *run, const json_t *extra, const char *lease, const char *target)
{
    orch_t *self = run->self;
    json_t *rec = run->rec;
    bus_txn_t *txn = orch_txn (self);
    if (!txn) {
        orch_run_drop (run);
        return;
    }
    orch_run_finish_node (self, txn, rec, "ok", extra);
    json_t *vars = json_object_get (rec, "vars");
    json_t *calls = json_object_get (rec, "calls");
    const char *next = NULL;
    char err [300] = "", nextb [130] = "";
    int rc = 0;
    s_chat_result (run);
    const char *return_to = orch_str (rec, "return_to");
    if (json_array_size (calls) > 0) {
        json_t *call = json_array_get (calls, 0);
        snprintf (nextb, sizeof nextb, "%s", orch_str (call, "name"));
        next = nextb;
        json_object_set (vars, "call", json_object_get (call, "arguments"));
        if (json_object_get (rec, "chat") && orch_str (call, "id"))
            json_object_set (rec, "call_id", json_object_get (call, "id"));
        json_array_remove (calls, 0);
    }
    else if (return_to && orch_str (json_object_get (rec, "chat"), "node")
             && !strcmp (orch_str (json_object_get (rec, "chat"), "node"), return_to)) {
        /* the agent's calls are done: their results go to its next turn */
        snprintf (nextb, sizeof nextb, "%s", return_to);
        next = nextb;
        json_object_del (rec, "return_to");
        json_object_del (vars, "call");
    }
    else {
        const char *from = orch_str (rec, "return_to") ? orch_str (rec, "return_to") : orch_str (rec, "cursor");
        char fromb [130];
        snprintf (fromb, sizeof fromb, "%s", from);
        json_object_del (rec, "return_to");
        json_object_del (vars, "call");
        rc = orch_workflow_next (run->wf, fromb, vars, &next, err, sizeof err);
    }
    if (rc) {
        bus_service_abort (self->svc, &txn);
        s_fail (run, "FAILED", "failed", "workflow", NULL, "%s", err);
        return;
    }
    bool ended = false;
    if (next && !strcmp (orch_str (orch_workflow_node (run->wf, next), "kind"), "end")) {
        s_enter (self, txn, rec, run->wf, next);
        orch_run_finish_node (self, txn, rec, "ok", NULL);
        next = NULL;
    }
    if (!next) {
        orch_run_end (self, txn, rec, "COMPLETED", NULL);
        ended = true;
    }
    else
        s_enter (self, txn, rec, run->wf, next);
    json_incref (rec);
    if (s_commit (run, &txn) == 0) {
        if (lease)
            s_token_done (self, lease, target, ended);
        if (ended) {
            orch_run_drop (run);
            orch_run_after_end (self, rec);
        }
        else
            s_advance (run);
    }
    json_decref (rec);
}

static void
s_node_ok (orch_run_t *run, const json_t *extra)
{
    s_node_done (run, extra, NULL, NULL);
}

/*  Commit a pause (reason; the run stays in memory unless drop) with
    run.paused; answer waiters. Returns 0 or the commit's error (the run
    is then gone). */
static int
s_pause (orch_run_t *run, const char *reason, bool drop)
{
    orch_t *self = run->self;
    bus_txn_t *txn = orch_txn (self);
    if (!txn) {
        orch_run_drop (run);
        return BUS_ESTATE;
    }
    json_object_set_new (run->rec, "state", json_string ("PAUSED"));
    json_object_set_new (run->rec, "reason", json_string (reason));
    const char *approval = orch_str (json_object_get (run->rec, "step"), "approval");
    if (!strcmp (reason, "approval"))
        bus_txn_put (txn, self->db_approvals, approval, strlen (approval), run->id, strlen (run->id));
    orch_run_emit (self, txn, "run.paused", json_pack ("{s:s, s:s, s:s, s:s?}", "run", run->id, "node",
                                                orch_str (run->rec, "cursor"), "reason", reason,
                                                "approval", !strcmp (reason, "approval") ? approval : NULL));
    json_t *rec = json_incref (run->rec);
    int rc = s_commit (run, &txn);
    if (rc == 0) {
        run->paused = true;
        if (drop)
            orch_run_drop (run);
        orch_waiters_notify (self, orch_str (rec, "run"), rec);
    }
    json_decref (rec);
    return rc;
}

/*  Commit a resume from a pause held in memory (run.resumed). */
static int
s_resume (orch_run_t *run)
{
    if (!run->paused)
        return 0;
    orch_t *self = run->self;
    bus_txn_t *txn = orch_txn (self);
    if (!txn) {
        orch_run_drop (run);
        return BUS_ESTATE;
    }
    json_object_set_new (run->rec, "state", json_string ("RUNNING"));
    json_object_del (run->rec, "reason");
    orch_run_emit (self, txn, "run.resumed", json_pack ("{s:s, s:s}", "run", run->id, "node", orch_str (run->rec, "cursor")));
    int rc = s_commit (run, &txn);
    if (rc == 0)
        run->paused = false;
    return rc;
}

/*  The delay before retry number tries (1...): base * 2^(tries-1), capped,
    with up to 25% jitter; at least the upstream's Retry-After. */
static int64_t
s_backoff (orch_t *self, int64_t tries, int64_t retry_after_ms)
{
    int64_t d = self->retry_base;
    for (int64_t i = 1; i < tries && d < self->retry_cap; i++)
        d *= 2;
    if (d > self->retry_cap)
        d = self->retry_cap;
    d += (int64_t) randombytes_uniform ((uint32_t) (d / 4 + 1));
    return d < retry_after_ms ? retry_after_ms : d;
}

static int
s_on_timer (zloop_t *loop, void *arg)
{
    orch_run_t *run = arg;
    bus_alarm_end (&run->timer);
    if (s_resume (run) == 0)
        s_advance (run);
    return 0;
}

/*  Try the step again in delay_ms, paused for reason meanwhile. */
static void
s_retry_later (orch_run_t *run, const char *reason, int64_t delay_ms)
{
    if (!run->paused && s_pause (run, reason, false))
        return;
    bus_alarm_end (&run->timer);
    run->timer = bus_alarm_new (bus_service_loop (run->self->svc), (size_t) (delay_ms > 0 ? delay_ms : 1), 1,
                                s_on_timer, run);
}

/*  A transient error of a peer (timeout, unavailable). */
static bool
s_transient (proto_msg_t *reply)
{
    const char *code = json_string_value (json_object_get (reply->error, "code"));
    return code && (!strcmp (code, PROTO_ERR_TIMEOUT) || !strcmp (code, PROTO_ERR_UNAVAILABLE));
}

/*  A peer's error on a step call. A transient one (the peer stopped or
    slow) does not end a durable run: it waits, PAUSED <peer>_unavailable
    (as for the auditor: audit_unavailable), the call asked again with
    capped backoff until the peer answers. A lease on an approval waits
    only while the approval can be used (until its expires_at; unknown,
    from a record of before: approval_expiry_s from the first miss), then
    the run FAILS approval_expired. A real error (denied, invalid, ...)
    fails the run at once. */
static void
s_peer_error (orch_run_t *run, bus_calls_t *calls, proto_msg_t *reply)
{
    orch_t *self = run->self;
    json_t *step = json_object_get (run->rec, "step");
    int64_t tries = json_integer_value (json_object_get (step, "tries")) + 1;
    json_object_set_new (step, "tries", json_integer (tries));
    const char *code = json_string_value (json_object_get (reply->error, "code"));
    const char *msg = json_string_value (json_object_get (reply->error, "message"));
    static const char *const reasons [ORCH_PEERS] = { "authz_unavailable", "ciba_unavailable",
                                                      "vault_unavailable", "audit_unavailable" };
    int peer = s_peer_of (self, calls);
    if (s_transient (reply) && peer >= 0) {
        if (calls == self->vault && orch_str (step, "approval")) {
            int64_t now = proto_now_us ();
            if (!json_is_integer (json_object_get (step, "approval_expires_at")))
                json_object_set_new (step, "approval_expires_at",
                                     json_integer ((json_int_t) (now + self->approval_expiry * 1000000LL)));
            if (now >= json_integer_value (json_object_get (step, "approval_expires_at"))) {
                s_fail (run, "FAILED", "failed", "approval_expired", s_step_extra (run),
                        "%s: %s until the approval expired: the step cannot act on it",
                        bus_calls_name (calls), code);
                return;
            }
        }
        bus_warn ("orchestrator: run %s: %s: %s: paused %s (try %lld)", run->id, bus_calls_name (calls), code,
                  reasons [peer], (long long) tries);
        s_retry_later (run, reasons [peer], s_backoff (self, tries, 0));
        return;
    }
    s_fail (run, "FAILED", "failed", code ? code : "error", NULL, "%s: %s", bus_calls_name (calls),
            msg ? msg : "error");
}

/* --- the tool step -------------------------------------------------------- */

/*  The step's idempotency key "run/node/attempt": the same after a
    restart (the attempt is committed with the node's start), so what the
    step asks of others again (ciba.authorize, audit.append, the
    connector's call) names the first asking. */
static void
s_step_key (orch_run_t *run, char *idem, size_t idemlen)
{
    json_t *step = json_object_get (run->rec, "step");
    snprintf (idem, idemlen, "%s/%s/%lld", run->id, orch_str (step, "node"),
              (long long) json_integer_value (json_object_get (step, "attempt")));
}

/*  The step's node key: Ed25519 from BLAKE2b(node_seed, "run/node/attempt"). */
static void
s_node_key (orch_run_t *run, char *idem, size_t idemlen)
{
    s_step_key (run, idem, idemlen);
    uint8_t seed [crypto_sign_SEEDBYTES];
    crypto_generichash (seed, sizeof seed, (const uint8_t *) idem, strlen (idem), run->self->node_seed,
                        sizeof run->self->node_seed);
    crypto_sign_seed_keypair (run->pk, run->sk, seed);
    sodium_memzero (seed, sizeof seed);
}

/*  The templating context: the run's vars. */
static json_t *
s_vars (orch_run_t *run)
{
    return json_object_get (run->rec, "vars");
}

/*  The decision's summary for node.finished. */
static json_t *
s_step_extra (orch_run_t *run)
{
    json_t *step = json_object_get (run->rec, "step");
    json_t *x = json_object ();
    const char *keys [] = { "decision", "approval", "lease", "audit_index", "status", NULL };
    for (int i = 0; keys [i]; i++)
        if (json_object_get (step, keys [i]))
            json_object_set (x, keys [i], json_object_get (step, keys [i]));
    return x;
}

static void
s_on_http (const bus_http_response_t *res, void *arg)
{
    orch_run_t *run = arg;
    orch_t *self = run->self;
    run->http_live = false;
    self->http_busy--;
    s_http_next (self);
    const json_t *node = orch_workflow_node (run->wf, orch_str (run->rec, "cursor"));
    const char *connector = orch_str (node, "connector");
    json_t *result = NULL;
    int64_t retry_after = 0;
    orch_call_outcome_t out = orch_connector_response (connector, res->error, res->status,
                                                       bus_http_response_header (res, "Retry-After"),
                                                       res->body, res->body_len, &result, &retry_after);
    json_t *step = json_object_get (run->rec, "step");
    if (res->status)
        json_object_set_new (step, "status", json_integer (res->status));
    if (out == ORCH_CALL_OK) {
        char lease [128], target [64];      /* the record's step changes as the node ends */
        snprintf (lease, sizeof lease, "%s", orch_str (step, "lease") ? orch_str (step, "lease") : "");
        snprintf (target, sizeof target, "%s", connector);
        if (run->token) {
            sodium_memzero (run->token, strlen (run->token));
            free (run->token);
            run->token = NULL;
        }
        const char *key = orch_str (node, "output") ? orch_str (node, "output") : orch_str (node, "id");
        json_object_set_new (s_vars (run), key, result ? result : json_object ());
        json_t *x = s_step_extra (run);
        self->steps++;
        bus_stats_count (bus_service_stats (self->svc), "steps", 1);
        s_node_done (run, x, *lease ? lease : NULL, target);
        json_decref (x);
        return;
    }
    char *text = result ? json_dumps (result, JSON_COMPACT) : NULL;
    json_decref (result);
    int64_t tries = json_integer_value (json_object_get (step, "tries")) + 1;
    json_object_set_new (step, "tries", json_integer (tries));
    if (out == ORCH_CALL_RETRY && tries <= self->retry_max) {
        bus_warn ("orchestrator: run %s: %s: %s %d (retry %lld)", run->id, connector,
                  res->error ? res->reason : "status", res->status, (long long) tries);
        json_object_set_new (step, "phase", json_string ("call"));
        s_retry_later (run, "upstream_retry", s_backoff (self, tries, retry_after));
    }
    else {
        char code [32];
        snprintf (code, sizeof code, res->error ? "upstream_unreachable" : "upstream_%d", res->status);
        s_fail (run, "FAILED", "failed", code, s_step_extra (run), "%s: %s", connector,
                text ? text : res->error ? res->reason : "failed");
    }
    free (text);
}

/*  The connector call. */
static void
s_call (orch_run_t *run)
{
    orch_t *self = run->self;
    if (!s_http_slot (run))
        return;
    const json_t *node = orch_workflow_node (run->wf, orch_str (run->rec, "cursor"));
    const char *connector = orch_str (node, "connector");
    char err [300] = "", idem [200];
    json_t *args = orch_template (json_object_get (node, "args"), s_vars (run), err, sizeof err);
    if (!args) {
        s_fail (run, "FAILED", "failed", "template", NULL, "args: %s", err);
        return;
    }
    s_node_key (run, idem, sizeof idem);
    const char *base = !strcmp (connector, "sheets.append") ? self->sheets_url
                     : !strcmp (connector, "gmail.send") ? self->gmail_url
                     : !strcmp (connector, "dropbox.upload") ? self->dropbox_url : NULL;
    orch_call_t call = { .connector = connector, .args = args, .base_url = base, .token = run->token,
                         .node_pk = run->pk, .node_sk = run->sk, .idempotency_key = idem };
    orch_http_call_t *h = NULL;
    int rc = orch_connector_request (&call, &h, err, sizeof err);
    json_decref (args);
    if (rc) {
        s_fail (run, "FAILED", "failed", "connector", s_step_extra (run), "%s: %s", connector, err);
        return;
    }
    bus_http_request_t req = { .method = h->method, .url = h->url, .headers = (const char *const *) h->headers,
                               .content_type = h->content_type, .body = h->body, .body_len = h->body_len };
    rc = bus_http_client_send (self->http, &req, s_on_http, run, &run->http_id);
    orch_http_call_destroy (&h);
    if (rc)
        s_fail (run, "FAILED", "failed", "connector", s_step_extra (run), "%s: cannot send (%s)", connector,
                bus_strerror (rc));
    else {
        run->http_live = true;
        self->http_busy++;
    }
}

static void
s_on_audit (bus_calls_t *calls, proto_msg_t *reply, void *arg)
{
    orch_run_t *run = arg;
    json_t *step = json_object_get (run->rec, "step");
    if (!reply->ok) {
        const char *code = json_string_value (json_object_get (reply->error, "code"));
        if (s_transient (reply)) {
            bus_warn ("orchestrator: run %s: the auditor did not acknowledge the step intent (%s): paused",
                      run->id, code);
            s_retry_later (run, "audit_unavailable", run->self->audit_retry);
            return;
        }
        s_fail (run, "FAILED", "failed", code ? code : "error", s_step_extra (run), "auditor: %s",
                json_string_value (json_object_get (reply->error, "message")));
        return;
    }
    json_object_set (step, "audit_index", json_object_get (reply->body, "index"));
    json_object_set_new (step, "phase", json_string ("call"));
    if (s_resume (run) == 0)
        s_call (run);
}

/*  Append the step intent (fail-closed: no call before it is stored). */
static void
s_audit (orch_run_t *run)
{
    const json_t *node = orch_workflow_node (run->wf, orch_str (run->rec, "cursor"));
    json_t *step = json_object_get (run->rec, "step");
    char err [300] = "", digest [ORCH_HASH_LEN + 1] = "";
    json_t *args = orch_template (json_object_get (node, "args"), s_vars (run), err, sizeof err);
    json_t *policy = orch_template (json_object_get (node, "policy"), s_vars (run), err, sizeof err);
    if (!args || !policy || orch_digest (args, digest)) {
        json_decref (args);
        json_decref (policy);
        s_fail (run, "FAILED", "failed", "template", NULL, "%s", *err ? err : "args have no canonical form");
        return;
    }
    json_t *entry = json_pack ("{s:s, s:s, s:s, s:O, s:s, s:s, s:O, s:O, s:s, s:s}", "kind", "step.intent",
                               "run", run->id, "node", orch_str (node, "id"), "attempt",
                               json_object_get (step, "attempt"), "connector", orch_str (node, "connector"),
                               "connection", orch_str (node, "connection"), "action",
                               json_object_get (policy, "action"), "resource", json_object_get (policy, "resource"),
                               "lease", orch_str (step, "lease"), "args_digest", digest);
    if (orch_str (step, "approval"))
        json_object_set (entry, "approval", json_object_get (step, "approval"));
    json_decref (args);
    json_decref (policy);
    char idem [200];
    s_step_key (run, idem, sizeof idem);
    s_send (run, run->self->auditor, "audit.append", json_pack ("{s:o, s:s}", "entry", entry, "idempotency_key", idem),
            s_on_audit);
}

/*  A lease granted (or renewed): keep the token in memory, go on. */
static void
s_leased (orch_run_t *run, json_t *body)
{
    json_t *step = json_object_get (run->rec, "step");
    const char *token = orch_str (body, "token");
    if (!token) {
        s_fail (run, "FAILED", "failed", "vault", NULL, "vault: a lease without a token");
        return;
    }
    if (run->token) {
        sodium_memzero (run->token, strlen (run->token));
        free (run->token);
    }
    run->token = strdup (token);
    json_object_set (step, "lease", json_object_get (body, "lease_id"));
    json_object_set_new (run->rec, "leased", json_true ());
    json_object_set_new (step, "phase", json_string ("audit"));
    s_audit (run);
}

static void
s_on_renew (bus_calls_t *calls, proto_msg_t *reply, void *arg)
{
    orch_run_t *run = arg;
    const char *reason = reply->ok ? NULL : json_string_value (json_object_get (reply->error, "reason"));
    if (reason && !strcmp (reason, "cap")) {
        /* renewed within the second it was issued (times are in seconds):
           the same expiry is no renewal; ask again in a second */
        json_t *step = json_object_get (run->rec, "step");
        int64_t tries = json_integer_value (json_object_get (step, "tries")) + 1;
        json_object_set_new (step, "tries", json_integer (tries));
        if (tries <= run->self->retry_max) {
            s_retry_later (run, "upstream_retry", 1100);
            return;
        }
    }
    if (!reply->ok) {
        s_peer_error (run, calls, reply);
        return;
    }
    s_leased (run, reply->body);
}

/*  After a restart: the approval made its lease before; find it and renew
    it (the token is bound to the same node key). */
static void
s_on_leases (bus_calls_t *calls, proto_msg_t *reply, void *arg)
{
    orch_run_t *run = arg;
    if (!reply->ok) {
        s_peer_error (run, calls, reply);
        return;
    }
    const char *node = orch_str (run->rec, "cursor");
    const char *approval = orch_str (json_object_get (run->rec, "step"), "approval");
    size_t i;
    json_t *l;
    json_array_foreach (json_object_get (reply->body, "leases"), i, l) {
        if (strcmp (orch_str (l, "node"), node) || strcmp (orch_str (l, "state"), "active")
            || (approval && orch_str (l, "approval") && strcmp (orch_str (l, "approval"), approval)))
            continue;
        s_send (run, run->self->vault, "vault.renew", json_pack ("{s:s}", "lease_id", orch_str (l, "lease_id")),
                s_on_renew);
        return;
    }
    s_fail (run, "FAILED", "failed", "approval_used", s_step_extra (run),
            "vault: the approval's lease is no longer active: the step cannot act on it");
}

static void
s_on_lease (bus_calls_t *calls, proto_msg_t *reply, void *arg)
{
    orch_run_t *run = arg;
    if (reply->ok) {
        s_leased (run, reply->body);
        return;
    }
    const char *code = json_string_value (json_object_get (reply->error, "code"));
    const char *reason = json_string_value (json_object_get (reply->error, "reason"));
    if (code && !strcmp (code, PROTO_ERR_CONFLICT) && reason && !strcmp (reason, "approval_used")) {
        s_send (run, run->self->vault, "vault.leases", json_pack ("{s:s}", "run", run->id), s_on_leases);
        return;
    }
    if (code && !strcmp (code, PROTO_ERR_FORBIDDEN) && reason && !strncmp (reason, "approval_", 9)) {
        s_fail (run, "REJECTED", "rejected", reason, s_step_extra (run), "vault: %s",
                json_string_value (json_object_get (reply->error, "message")));
        return;
    }
    s_peer_error (run, calls, reply);
}

void
orch_run_lease (orch_run_t *run)
{
    orch_t *self = run->self;
    const json_t *node = orch_workflow_node (run->wf, orch_str (run->rec, "cursor"));
    json_t *step = json_object_get (run->rec, "step");
    char idem [200];
    s_node_key (run, idem, sizeof idem);
    char *key = bus_b64url_encode (run->pk, sizeof run->pk);
    int64_t ttl = json_integer_value (json_object_get (node, "ttl"));
    if (ttl <= 0 || ttl > self->lease_ttl)
        ttl = self->lease_ttl;
    json_t *body = json_pack ("{s:s, s:s, s:s, s:O, s:I, s:s}", "run", run->id, "node", orch_str (node, "id"),
                              "connection", orch_str (node, "connection"), "scopes", json_object_get (node, "scopes"),
                              "ttl", (json_int_t) ttl, "node_key", key ? key : "");
    free (key);
    if (orch_str (step, "approval"))
        json_object_set (body, "approval", json_object_get (step, "approval"));
    /* marked when asked, not when answered: a run that ends with its
       lease on the way (the vault slow, or down and its asks queued)
       still revokes at its end, and the vault refuses that lease then */
    json_object_set_new (run->rec, "leased", json_true ());
    s_send (run, self->vault, "vault.lease", body, s_on_lease);
}

static void
s_on_authorize (bus_calls_t *calls, proto_msg_t *reply, void *arg)
{
    orch_run_t *run = arg;
    if (!reply->ok) {
        s_peer_error (run, calls, reply);
        return;
    }
    json_t *step = json_object_get (run->rec, "step");
    json_object_set (step, "approval", json_object_get (reply->body, "approval_id"));
    json_object_set (step, "levels", json_object_get (reply->body, "levels"));
    if (json_is_integer (json_object_get (reply->body, "expires_at")))
        json_object_set (step, "approval_expires_at", json_object_get (reply->body, "expires_at"));
    json_object_set_new (step, "phase", json_string ("approval"));
    json_t *entry = s_node_entry (run->rec);
    json_object_set (entry, "approval", json_object_get (reply->body, "approval_id"));
    const char *state = orch_str (reply->body, "state");
    if (state && strcmp (state, "pending")) {
        /* the chain ended at once (no level could be asked) */
        if (!strcmp (state, "approved")) {
            json_object_set_new (step, "phase", json_string ("lease"));
            orch_run_lease (run);
        }
        else
            s_fail (run, "REJECTED", "rejected", "approval", s_step_extra (run), "approval %s",
                    state);
        return;
    }
    /* an end of this approval that came before this answer (the run is
       dropped from memory once paused) */
    json_t *early = run->early_end;
    run->early_end = NULL;
    if (early && strcmp (orch_str (early, "approval_id"), orch_str (reply->body, "approval_id") ?: "")) {
        json_decref (early);
        early = NULL;
    }
    orch_t *self = run->self;
    if (s_pause (run, "approval", true) == 0 && early)
        orch_approval_early_end (self, early);
    json_decref (early);
}

static void
s_on_decide (bus_calls_t *calls, proto_msg_t *reply, void *arg)
{
    orch_run_t *run = arg;
    orch_t *self = run->self;
    if (!reply->ok) {
        s_peer_error (run, calls, reply);
        return;
    }
    json_t *step = json_object_get (run->rec, "step");
    const char *d = orch_str (reply->body, "decision");
    json_t *decision = json_pack ("{s:s}", "result", d ? d : "deny");
    if (orch_str (reply->body, "reason"))
        json_object_set (decision, "reason", json_object_get (reply->body, "reason"));
    json_t *chain = json_array ();
    size_t i;
    json_t *lvl;
    json_array_foreach (json_object_get (reply->body, "chain"), i, lvl)
        json_array_append (chain, json_object_get (lvl, "user"));
    if (json_array_size (chain))
        json_object_set (decision, "chain", chain);
    json_object_set_new (step, "decision", decision);
    json_object_set (s_node_entry (run->rec), "decision", decision);
    if (d && !strcmp (d, "allow")) {
        json_decref (chain);
        json_object_set_new (step, "phase", json_string ("lease"));
        orch_run_lease (run);
        return;
    }
    if (!d || strcmp (d, "approval_required")) {
        json_decref (chain);
        const char *why = orch_str (reply->body, "reason");
        s_fail (run, "REJECTED", "rejected", "denied", s_step_extra (run), "denied: %s", why ? why : "by policy");
        return;
    }
    /* ask the chain */
    const json_t *node = orch_workflow_node (run->wf, orch_str (run->rec, "cursor"));
    char err [300] = "", bm [512];
    json_t *policy = orch_template (json_object_get (node, "policy"), s_vars (run), err, sizeof err);
    json_t *bmt = json_object_get (node, "binding_message")
                ? orch_template (json_object_get (node, "binding_message"), s_vars (run), err, sizeof err) : NULL;
    const json_t *amount = json_object_get (json_object_get (policy, "context"), "amount");
    if (bmt && json_is_string (bmt))
        snprintf (bm, sizeof bm, "%s", json_string_value (bmt));
    else if (json_is_number (amount))
        snprintf (bm, sizeof bm, "%s %s: %s on %s, amount %.0f", orch_str (run->rec, "workflow"), orch_str (node, "id"),
                  orch_str (policy, "action"), orch_str (policy, "resource"), json_number_value (amount));
    else
        snprintf (bm, sizeof bm, "%s %s: %s on %s", orch_str (run->rec, "workflow"), orch_str (node, "id"),
                  orch_str (policy, "action"), orch_str (policy, "resource"));
    json_decref (bmt);
    json_t *ciba_chain = json_array ();
    json_array_foreach (json_object_get (reply->body, "chain"), i, lvl) {
        json_t *l = json_pack ("{s:O}", "approver", json_object_get (lvl, "user"));
        if (json_is_integer (json_object_get (lvl, "escalate_after")))
            json_object_set (l, "escalate_after", json_object_get (lvl, "escalate_after"));
        json_array_append_new (ciba_chain, l);
    }
    json_t *details = json_pack ("[{s:s, s:s, s:s, s:s, s:O?, s:O?, s:O?}]", "type", "sanctum_tool_call",
                                 "run", run->id, "node", orch_str (node, "id"), "connector",
                                 orch_str (node, "connector"), "action", policy ? json_object_get (policy, "action") : NULL,
                                 "resource", policy ? json_object_get (policy, "resource") : NULL,
                                 "amount", amount);
    json_decref (policy);
    json_decref (chain);
    json_object_set_new (step, "phase", json_string ("authorize"));
    char idem [200];
    s_step_key (run, idem, sizeof idem);
    s_send (run, self->ciba, "ciba.authorize",
            json_pack ("{s:o, s:s, s:o, s:I, s:s, s:s, s:s}", "chain", ciba_chain, "binding_message", bm,
                       "authorization_details", details, "requested_expiry", (json_int_t) self->approval_expiry,
                       "run", run->id, "node", orch_str (node, "id"), "idempotency_key", idem),
            s_on_authorize);
}

static void
s_decide (orch_run_t *run)
{
    const json_t *node = orch_workflow_node (run->wf, orch_str (run->rec, "cursor"));
    char err [300] = "";
    json_t *policy = orch_template (json_object_get (node, "policy"), s_vars (run), err, sizeof err);
    if (!policy) {
        s_fail (run, "FAILED", "failed", "template", NULL, "policy: %s", err);
        return;
    }
    json_t *body = json_pack ("{s:O, s:O, s:O}", "principal",
                              json_object_get (policy, "principal") ? json_object_get (policy, "principal")
                                                                    : json_string ("agent:orchestrator"),
                              "action", json_object_get (policy, "action"), "resource",
                              json_object_get (policy, "resource"));
    if (json_is_object (json_object_get (policy, "context")))
        json_object_set (body, "context", json_object_get (policy, "context"));
    json_decref (policy);
    s_send (run, run->self->authz, "authz.decide", body, s_on_decide);
}

/* --- agents --------------------------------------------------------------- */

/*  An agent's proposals: calls for tools it was given are queued; others
    are refused (node.finished refused, and a step.refused audit entry). */
static json_t *
s_agent_calls (orch_run_t *run, const json_t *node, json_t *calls, json_t *refused)
{
    json_t *queue = json_array ();
    size_t i;
    json_t *c;
    json_array_foreach (calls, i, c) {
        const char *name = orch_str (c, "name");
        json_t *args = json_object_get (c, "arguments");
        if (name && orch_workflow_agent_may (node, name) && json_is_object (args)) {
            json_array_append_new (queue, json_pack ("{s:s, s:O, s:O?}", "name", name, "arguments", args,
                                                     "id", json_object_get (c, "id")));
            continue;
        }
        char digest [ORCH_HASH_LEN + 1] = "";
        if (!args || orch_digest (args, digest))
            snprintf (digest, sizeof digest, "none");
        json_array_append_new (refused, json_pack ("{s:s, s:s}", "tool", name ? name : "", "args_digest", digest));
        bus_warn ("orchestrator: run %s: agent %s proposed %s, a tool it was not given: refused", run->id,
                  orch_str (node, "id"), name ? name : "(none)");
        json_t *messages = json_object_get (json_object_get (run->rec, "chat"), "messages");
        if (messages && orch_str (c, "id")) {
            json_t *why = json_pack ("{s:s, s:s}", "error", "tool_not_allowed", "message",
                                     "refused: this tool was not offered to you; nothing ran");
            json_array_append_new (messages, orch_agent_chat_tool_result (orch_str (c, "id"), why));
            json_decref (why);
        }
        json_t *entry = json_pack ("{s:s, s:s, s:s, s:s, s:s}", "kind", "step.refused", "run", run->id, "node",
                                   orch_str (node, "id"), "tool", name ? name : "", "args_digest", digest);
        /* keyed by the proposal too: a model asked again after a crash
           may propose something else, which is recorded as well */
        char idem [240], hex [17];
        uint8_t h [8];
        crypto_generichash_state hs;
        crypto_generichash_init (&hs, NULL, 0, sizeof h);
        crypto_generichash_update (&hs, (const uint8_t *) (name ? name : ""), name ? strlen (name) + 1 : 1);
        crypto_generichash_update (&hs, (const uint8_t *) digest, strlen (digest));
        crypto_generichash_final (&hs, h, sizeof h);
        sodium_bin2hex (hex, sizeof hex, h, sizeof h);
        s_step_key (run, idem, sizeof idem);
        snprintf (idem + strlen (idem), sizeof idem - strlen (idem), "/refused/%zu/%s", i, hex);
        bus_calls_send (run->self->auditor, "audit.append",
                        json_pack ("{s:o, s:s}", "entry", entry, "idempotency_key", idem), NULL, s_ignore, NULL, NULL);
    }
    return queue;
}

/*  The agent produced output and calls: record refusals, queue the rest,
    finish the node. */
static void
s_agent_done (orch_run_t *run, const json_t *node, json_t *output, json_t *calls)
{
    orch_t *self = run->self;
    if (orch_str (node, "output") && output)
        json_object_set (s_vars (run), orch_str (node, "output"), output);
    json_t *refused = json_array ();
    json_t *queue = s_agent_calls (run, node, calls, refused);
    if (json_array_size (queue) || (json_array_size (calls) && json_object_get (run->rec, "chat"))) {
        /* after the calls, back to the agent: a chat agent's next turn
           hears of every call, the refused ones too */
        json_object_set (run->rec, "calls", queue);
        json_object_set_new (run->rec, "return_to", json_string (orch_str (node, "id")));
    }
    if (json_array_size (refused)) {
        bus_txn_t *txn = orch_txn (self);
        if (!txn) {
            orch_run_drop (run);
            goto done;
        }
        size_t i;
        json_t *r;
        json_t *step = json_object_get (run->rec, "step");
        json_array_foreach (refused, i, r)
            orch_run_emit (self, txn, "node.finished",
                    json_pack ("{s:s, s:s, s:s, s:O, s:s, s:O, s:{s:s, s:s}}", "run", run->id, "node",
                               orch_str (node, "id"), "kind", "agent", "attempt", json_object_get (step, "attempt"),
                               "outcome", "refused", "tool", json_object_get (r, "tool"), "error", "code",
                               "tool_not_allowed", "message", "the agent was not given this tool"));
        json_object_set (s_node_entry (run->rec), "refused", refused);
        if (s_commit (run, &txn))
            goto done;
    }
    s_node_ok (run, NULL);
done:
    json_decref (queue);
    json_decref (refused);
}

static void
s_on_chat (const bus_http_response_t *res, void *arg)
{
    orch_run_t *run = arg;
    run->http_live = false;
    run->self->http_busy--;
    s_http_next (run->self);
    const json_t *node = orch_workflow_node (run->wf, orch_str (run->rec, "cursor"));
    json_t *output = NULL, *calls = NULL;
    char err [300] = "";
    if (res->error) {
        json_t *step = json_object_get (run->rec, "step");
        int64_t tries = json_integer_value (json_object_get (step, "tries")) + 1;
        json_object_set_new (step, "tries", json_integer (tries));
        if (tries <= run->self->retry_max) {
            s_retry_later (run, "upstream_retry", s_backoff (run->self, tries, 0));
            return;
        }
        s_fail (run, "FAILED", "failed", "model_unreachable", NULL, "model: %s", res->reason);
        return;
    }
    if (orch_agent_chat_response (res->status, res->body, res->body_len, &output, &calls, err, sizeof err)) {
        s_fail (run, "FAILED", "failed", "model", NULL, "model: %s", err);
        return;
    }
    json_t *chat = json_object_get (run->rec, "chat");
    int turn = (int) json_integer_value (json_object_get (chat, "turn")) + 1;
    int turns = orch_workflow_agent_turns (node);
    if (json_array_size (calls) && turn >= turns) {
        s_fail (run, "FAILED", "failed", "agent_turns", json_pack ("{s:i}", "turn", turn),
                "agent %s: the model still asks for tools at its turn %d of max_turns %d: its %zu calls are not run",
                orch_str (node, "id"), turn, turns, json_array_size (calls));
        json_decref (output);
        json_decref (calls);
        return;
    }
    if (json_array_size (calls)) {
        json_object_set_new (chat, "turn", json_integer (turn));
        json_array_append_new (json_object_get (chat, "messages"), orch_agent_chat_assistant (output, calls));
    }
    else
        json_object_del (run->rec, "chat");         /* the model's last word: the conversation ends */
    s_agent_done (run, node, output, calls);
    json_decref (output);
    json_decref (calls);
}

static void
s_agent (orch_run_t *run, const json_t *node)
{
    orch_t *self = run->self;
    char err [300] = "";
    json_t *output = NULL, *calls = NULL;
    if (!strcmp (orch_str (node, "agent"), "scripted")) {
        if (orch_agent_scripted (node, s_vars (run), &output, &calls, err, sizeof err)) {
            s_fail (run, "FAILED", "failed", "agent", NULL, "agent: %s", err);
            return;
        }
        s_agent_done (run, node, output, calls);
        json_decref (output);
        json_decref (calls);
        return;
    }
    if (!s_http_slot (run))
        return;
    /* the conversation: begun at the agent's first turn, kept in the
       record (checkpointed with each turn's end) while its calls run */
    json_t *chat = json_object_get (run->rec, "chat");
    if (!orch_str (chat, "node") || strcmp (orch_str (chat, "node"), orch_str (node, "id"))) {
        json_t *messages = orch_agent_chat_messages (node, s_vars (run), err, sizeof err);
        if (!messages) {
            s_fail (run, "FAILED", "failed", "agent", NULL, "agent: %s", err);
            return;
        }
        chat = json_pack ("{s:s, s:i, s:o}", "node", orch_str (node, "id"), "turn", 0, "messages", messages);
        json_object_set_new (run->rec, "chat", chat);
    }
    json_t *tools = json_array ();
    size_t i;
    json_t *t;
    json_array_foreach (json_object_get (node, "tools"), i, t)
        json_array_append (tools, (json_t *) orch_workflow_node (run->wf, json_string_value (t)));
    orch_http_call_t *h = NULL;
    int rc = self->agent ? orch_agent_chat_request (self->agent, node, tools, s_vars (run),
                                                    json_object_get (chat, "messages"), &h, err, sizeof err) : -1;
    json_decref (tools);
    if (rc) {
        s_fail (run, "FAILED", "failed", "agent", NULL, "agent: %s", *err ? err : "no model configured");
        return;
    }
    bus_http_request_t req = { .method = h->method, .url = h->url, .headers = (const char *const *) h->headers,
                               .content_type = h->content_type, .body = h->body, .body_len = h->body_len };
    rc = bus_http_client_send (self->http, &req, s_on_chat, run, &run->http_id);
    orch_http_call_destroy (&h);
    if (rc)
        s_fail (run, "FAILED", "failed", "agent", NULL, "model: cannot send (%s)", bus_strerror (rc));
    else {
        run->http_live = true;
        self->http_busy++;
    }
}

/* --- the driver ----------------------------------------------------------- */

/*  Do the next thing the run's cursor and step call for. */
static void
s_advance (orch_run_t *run)
{
    const char *cursor = orch_str (run->rec, "cursor");
    const json_t *node = orch_workflow_node (run->wf, cursor);
    if (!node) {
        s_fail (run, "FAILED", "failed", "workflow", NULL, "node %s is not in workflow %s", cursor ? cursor : "(none)",
                orch_str (run->rec, "workflow"));
        return;
    }
    const char *kind = orch_str (node, "kind");
    if (!strcmp (kind, "agent")) {
        s_agent (run, node);
        return;
    }
    if (strcmp (kind, "tool")) {          /* branch; end is handled where it is entered */
        s_node_ok (run, NULL);
        return;
    }
    const char *phase = orch_str (json_object_get (run->rec, "step"), "phase");
    if (!strcmp (phase, "lease"))
        orch_run_lease (run);
    else if (!strcmp (phase, "audit"))
        s_audit (run);
    else if (!strcmp (phase, "call"))
        s_call (run);
    else
        s_decide (run);
}

json_t *
orch_run_new_record (orch_t *self, const orch_workflow_t *wf, const char *id, const json_t *input,
                     const char *principal, bus_txn_t *txn)
{
    int64_t now = proto_now_us ();
    json_t *in = input ? json_deep_copy (input) : json_object ();
    char digest [ORCH_HASH_LEN + 1] = "";
    if (orch_digest (in, digest)) {
        json_decref (in);
        return NULL;
    }
    json_t *rec = json_pack ("{s:s, s:s, s:s, s:O, s:s, s:s, s:{s:O, s:s}, s:[], s:[], s:I, s:I}", "run", id,
                             "workflow", orch_workflow_name (wf), "workflow_hash", orch_workflow_hash (wf),
                             "input", in, "principal", principal, "state", "RUNNING", "vars", "input", in, "run", id,
                             "nodes", "calls", "created_at", (json_int_t) now, "started_at", (json_int_t) now);
    json_decref (in);
    if (!rec)
        return NULL;
    orch_run_emit (self, txn, "run.started", json_pack ("{s:s, s:s, s:s, s:s, s:s, s:I}", "run", id, "workflow",
                                                 orch_workflow_name (wf), "workflow_hash", orch_workflow_hash (wf),
                                                 "input_digest", digest, "principal", principal,
                                                 "started_at", (json_int_t) now));
    s_enter (self, txn, rec, wf, orch_workflow_start (wf));
    self->runs_started++;
    bus_stats_count (bus_service_stats (self->svc), "runs_started", 1);
    return rec;
}

/* --- kicks: runs looked at again ----------------------------------------------- */

static int
s_on_kick (zloop_t *loop, void *arg)
{
    orch_t *self = arg;
    bus_alarm_end (&self->kick_timer);
    char *id;
    bus_txn_t *txn = bus_txn_begin (self->store, false);
    while (txn && (id = zlist_pop (self->kick))) {
        json_t *rec = orch_run_find (self, id) ? NULL : orch_run_load (self, txn, id);
        const char *state = orch_str (rec, "state");
        if (rec && !strcmp (state, "RUNNING")) {
            orch_run_t *run = orch_run_take (self, rec);
            if (run)
                s_advance (run);
        }
        else if (rec && strcmp (state, "PAUSED")) {
            orch_run_after_end (self, rec);
            json_decref (rec);
        }
        else {
            if (rec)
                orch_waiters_notify (self, id, rec);
            json_decref (rec);
        }
        free (id);
    }
    bus_txn_abort (&txn);
    return 0;
}

/*  Look at run id again soon (after the transaction that changed it): at
    the reactor's next turn (a 0 ms timer: the kicks of one turn go
    together, and a step waits no timer tick). */
void
orch_run_kick (orch_t *self, const char *id)
{
    zlist_append (self->kick, strdup (id));
    if (!self->kick_timer)
        self->kick_timer = bus_alarm_new (bus_service_loop (self->svc), 0, 1, s_on_kick, self);
}

/*  Cancel rec (RUNNING or PAUSED) in txn: node.finished cancelled, the
    approval cancelled at the broker (after commit: the caller), run.cancelled. */
int
orch_run_cancel (orch_t *self, bus_txn_t *txn, json_t *rec, const char *reason)
{
    orch_run_drop (orch_run_find (self, orch_str (rec, "run")));
    orch_run_finish_node (self, txn, rec, "cancelled", NULL);
    orch_run_end (self, txn, rec, "CANCELLED", reason);
    return orch_run_put (self, txn, rec);
}

/*  Forget every run in memory (at stop; their checkpoints stay). */
void
orch_engine_stop (orch_t *self)
{
    orch_approval_stop (self);
    if (!self->runs)
        return;
    zlist_t *keys = zhash_keys (self->runs);
    for (char *k = zlist_first (keys); k; k = zlist_next (keys))
        orch_run_drop (orch_run_find (self, k));
    zlist_destroy (&keys);
}
