/*  orch_approval.c — approvals reaching runs: the approvals follower's
    events (approval.completed and the level events) applied to the runs
    paused for them, an end that came before ciba.authorize's answer kept
    until it can be applied, and at start the runs paused for an approval
    reconciled with the broker (ciba.status) and the others resumed. The
    engine that advances a run is orch_run.c.
*/
#include "orch_internal.h"
#include "bus_error.h"
#include "bus_follow.h"
#include "bus_log.h"

#include <stdlib.h>
#include <string.h>

/*  Set level i of levels (the step's: [{approver, auth_req_id, state}],
    as ciba.authorize answered them) to state. Returns whether it changed. */
static bool
s_level_set (json_t *levels, size_t i, const char *state)
{
    json_t *lvl = json_array_get (levels, i);
    const char *was = orch_str (lvl, "state");
    if (!lvl || !state || (was && !strcmp (was, state)))
        return false;
    json_object_set_new (lvl, "state", json_string (state));
    return true;
}

/*  The run paused for approval (by the approvals db, in txn), its record
    loaded, when the approval is still the one its step waits for; NULL
    otherwise (not one of ours, or handled). */
static json_t *
s_paused_for (orch_t *self, bus_txn_t *txn, const char *approval)
{
    const void *v;
    size_t len;
    if (bus_txn_get (txn, self->db_approvals, approval, strlen (approval), &v, &len) || len != 26)
        return NULL;
    char id [27];
    memcpy (id, v, 26);
    id [26] = 0;
    json_t *rec = orch_run_load (self, txn, id);
    json_t *step = json_object_get (rec, "step");
    if (!rec || strcmp (orch_str (rec, "state") ?: "", "PAUSED") || !orch_str (step, "approval")
        || strcmp (orch_str (step, "approval"), approval) || strcmp (orch_str (step, "phase") ?: "", "approval")) {
        json_decref (rec);
        return NULL;
    }
    return rec;
}

/*  An approval ended: in txn, the paused run goes on (approved) or is
    REJECTED; its levels as the broker ended them (levels: approval.completed's,
    may be NULL). rec is the run's record as s_paused_for loaded it
    (borrowed, updated). */
static void
s_apply_approval (orch_t *self, bus_txn_t *txn, json_t *rec, const char *approval, const char *outcome,
                  const char *why, const json_t *levels)
{
    json_t *step = json_object_get (rec, "step");
    size_t i;
    json_t *lvl;
    json_array_foreach (levels, i, lvl)
        s_level_set (json_object_get (step, "levels"), i, orch_str (lvl, "state"));
    bus_txn_del (txn, self->db_approvals, approval, strlen (approval));
    if (!strcmp (outcome, "approved")) {
        json_object_set_new (rec, "state", json_string ("RUNNING"));
        json_object_del (rec, "reason");
        json_object_set_new (step, "phase", json_string ("lease"));
        orch_run_emit (self, txn, "run.resumed", json_pack ("{s:s, s:s}", "run", orch_str (rec, "run"), "node",
                                                     orch_str (rec, "cursor")));
    }
    else {
        char msg [300];
        snprintf (msg, sizeof msg, "approval %s%s%s", outcome, why ? ": " : "", why ? why : "");
        char code [64];
        snprintf (code, sizeof code, "approval_%s", outcome);
        json_t *x = json_pack ("{s:O?, s:s, s:{s:s, s:s}}", "decision", json_object_get (step, "decision"),
                               "approval", approval, "error", "code", code, "message", msg);
        orch_run_finish_node (self, txn, rec, "rejected", x);
        json_decref (x);
        orch_run_end (self, txn, rec, "REJECTED", msg);
    }
    orch_run_put (self, txn, rec);
}

/*  A level event of the ciba-broker, in the follower's transaction: a
    paused run's approval levels as the broker has them, so run.get and
    run.wait tell who decided and who is asked now. ciba.approved of a
    level before the last: it is approved, the next one pending (the
    broker asks it in the same transaction: a ciba.requested, or a
    ciba.escalated when its approver has no device, follows);
    ciba.escalated: the level passed (escalated, or its reason), the next
    pending; ciba.requested (not followed): the level pending. What ends
    the approval (the last level's ciba.approved, ciba.denied,
    ciba.expired, ciba.cancelled) is left to approval.completed, which the
    broker appends in the same transaction with every level.
    BUS_FOLLOW_NOTHING (no commit) unless a run of ours changed. */
static int
s_on_level (orch_t *self, bus_txn_t *txn, proto_msg_t *event)
{
    const char *approval = orch_str (event->body, "approval_id");
    json_int_t level = json_integer_value (json_object_get (event->body, "level"));
    json_t *rec = approval && level >= 0 && !self->fenced ? s_paused_for (self, txn, approval) : NULL;
    if (!rec)
        return BUS_FOLLOW_NOTHING;
    json_t *levels = json_object_get (json_object_get (rec, "step"), "levels");
    size_t i = (size_t) level;
    bool changed = false;
    if (!strcmp (event->type, "ciba.requested"))
        changed = s_level_set (levels, i, "pending");
    else if (!strcmp (event->type, "ciba.approved") && i + 1 < json_array_size (levels)) {
        changed = s_level_set (levels, i, "approved");
        changed |= s_level_set (levels, i + 1, "pending");
    }
    else if (!strcmp (event->type, "ciba.escalated")) {
        const char *why = orch_str (event->body, "reason");
        changed = s_level_set (levels, i, why && strcmp (why, "timeout") ? why : "escalated");
        changed |= s_level_set (levels, i + 1, "pending");
    }
    int rc = changed ? orch_run_put (self, txn, rec) : BUS_FOLLOW_NOTHING;
    json_decref (rec);
    return rc;
}

/*  An approval ended (approval.completed's body), in txn: the run paused
    for it goes on (approved) or is REJECTED; id gets that run. 0, or
    BUS_FOLLOW_NOTHING when no run is paused for it. */
static int
s_approval_ended (orch_t *self, bus_txn_t *txn, const json_t *body, char id [27])
{
    const char *approval = orch_str (body, "approval_id");
    const char *outcome = orch_str (body, "outcome");
    json_t *rec = approval && outcome && !self->fenced ? s_paused_for (self, txn, approval) : NULL;
    if (!rec)
        return BUS_FOLLOW_NOTHING;
    s_apply_approval (self, txn, rec, approval, outcome, orch_str (body, "reason"),
                      json_object_get (body, "levels"));
    snprintf (id, 27, "%s", orch_str (rec, "run"));
    if (!strcmp (outcome, "approved") && !orch_run_find (self, id)) {
        /* the lease is asked now, while this transaction commits, not
           after it (one fsync off the step's path): a crash before the
           commit leaves the run PAUSED, reconciled after the restart into
           a lease again, which finds this one (approval_used) and renews
           it, as after a crash past the lease */
        orch_run_t *run = orch_run_take (self, json_deep_copy (rec));
        if (run) {
            self->following = true;
            orch_run_lease (run);
            self->following = false;
        }
    }
    json_decref (rec);
    return 0;
}

/*  An approval that ended before its run had ciba.authorize's answer (the
    broker publishes the end as soon as a device signs, which may be before
    the answer is read here): no run is paused for it yet. Kept on the run
    that is asking for that node, until the answer comes (s_on_authorize).
    Anything else (a run of no ours, one not asking) is not ours to keep. */
static void
s_keep_early_end (orch_t *self, const json_t *body)
{
    const char *id = orch_str (body, "run");
    orch_run_t *run = id ? orch_run_find (self, id) : NULL;
    json_t *step = run ? json_object_get (run->rec, "step") : NULL;
    const char *node = orch_str (body, "node");
    if (!step || !node || strcmp (orch_str (step, "phase") ?: "", "authorize")
        || strcmp (orch_str (step, "node") ?: "", node) || !orch_str (body, "approval_id"))
        return;
    json_decref (run->early_end);
    run->early_end = json_deep_copy (body);
}

/*  ciba.authorize's answer has come and the run's pause is stored: the end
    of its approval that came first (body), applied now. */
void
orch_approval_early_end (orch_t *self, const json_t *body)
{
    bus_txn_t *txn = orch_txn (self);
    if (!txn)
        return;
    char id [27];
    if (s_approval_ended (self, txn, body, id) == 0) {
        if (bus_service_commit (self->svc, &txn) == 0)
            orch_run_kick (self, id);
    }
    else
        bus_service_abort (self->svc, &txn);
}

/*  The approvals follower's events (orch_service.c: approval.completed and
    the level events ciba.approved, ciba.escalated), in its transaction. BUS_FOLLOW_NOTHING (no commit) when no run of ours
    changed: an approval no run of ours waits for, a level already so. */
int
orch_on_approval (bus_service_t *svc, void *state, bus_txn_t *txn, proto_msg_t *event)
{
    orch_t *self = state;
    if (strcmp (event->type, "approval.completed"))
        return s_on_level (self, txn, event);
    char id [27];
    int rc = s_approval_ended (self, txn, event->body, id);
    if (rc == 0)
        orch_run_kick (self, id);       /* in memory already: left alone */
    else
        s_keep_early_end (self, event->body);
    return rc;
}

/*  The broker's word (state, reason) on a paused run's approval, in txn:
    the run advanced when the approval has ended; id gets the run to kick
    (empty: none). */
static void
s_apply_status (orch_t *self, bus_txn_t *txn, const char *approval, const char *state, const char *reason,
                char id [27])
{
    id [0] = 0;
    json_t *rec = s_paused_for (self, txn, approval);
    if (!rec)
        return;
    s_apply_approval (self, txn, rec, approval, state, reason, NULL);
    snprintf (id, 27, "%s", orch_str (rec, "run"));
    json_decref (rec);
}

/*  After a restart, the broker's word on a paused run's approval. */
static void
s_on_status (bus_calls_t *calls, proto_msg_t *reply, void *arg)
{
    orch_t *self = arg;
    bus_stats_count (bus_service_stats (self->svc), "runs_reconciled", 1);
    const char *approval = reply->ok ? orch_str (reply->body, "approval_id") : NULL;
    const char *state = reply->ok ? orch_str (reply->body, "state") : NULL;
    if (!approval || !state || !strcmp (state, "pending"))
        return;                 /* still pending: approval.completed will come */
    bus_txn_t *txn = orch_txn (self);
    if (!txn)
        return;
    char id [27];
    s_apply_status (self, txn, approval, state, orch_str (reply->body, "reason"), id);
    if (bus_service_commit (self->svc, &txn) == 0 && id [0])
        orch_run_kick (self, id);
}

/*  A batch of approvals asked with one ciba.status {approval_ids}. */
typedef struct {
    orch_t *self;
    json_t *ids;                /* the approval ids asked */
} s_batch_t;

static void
s_batch_free (void *arg)
{
    s_batch_t *b = arg;
    json_decref (b->ids);
    free (b);
}

/*  The broker's word on a batch: the approvals that ended advance their
    runs in one transaction (one fsync for the batch); pending ones wait
    for approval.completed. A broker that refuses the bulk form (invalid:
    an older one) is asked one approval at a time. */
static void
s_on_status_many (bus_calls_t *calls, proto_msg_t *reply, void *arg)
{
    s_batch_t *b = arg;
    orch_t *self = b->self;
    zlist_remove (self->reconciling, b);
    size_t i;
    json_t *a;
    if (!reply->ok) {
        const char *code = orch_str (reply->error, "code");
        bool older = code && !strcmp (code, PROTO_ERR_INVALID);
        bus_warn ("orchestrator: ciba.status for %zu approvals: %s%s", json_array_size (b->ids),
                  orch_str (reply->error, "message") ?: "failed", older ? " (asking one at a time)" : "");
        json_array_foreach (b->ids, i, a) {
            if (!older || bus_calls_send (self->ciba, "ciba.status", json_pack ("{s:O}", "approval_id", a), NULL,
                                          s_on_status, self, NULL))
                bus_stats_count (bus_service_stats (self->svc), "runs_reconciled", 1);
        }
        s_batch_free (b);
        return;
    }
    json_t *list = json_object_get (reply->body, "approvals");
    bus_txn_t *txn = NULL;
    zlist_t *kick = zlist_new ();
    zlist_autofree (kick);
    json_array_foreach (list, i, a) {
        const char *approval = orch_str (a, "approval_id"), *state = orch_str (a, "state");
        if (!approval || !state || !strcmp (state, "pending"))
            continue;
        if (!txn && !(txn = orch_txn (self)))
            break;
        char id [27];
        s_apply_status (self, txn, approval, state, orch_str (a, "reason"), id);
        if (id [0])
            zlist_append (kick, id);
    }
    if (txn && bus_service_commit (self->svc, &txn) == 0)
        for (char *id = zlist_first (kick); id; id = zlist_next (kick))
            orch_run_kick (self, id);
    zlist_destroy (&kick);
    bus_stats_count (bus_service_stats (self->svc), "runs_reconciled", json_array_size (b->ids));
    s_batch_free (b);
}

/*  Ask the broker about the approvals of ids (stolen) in one call. */
static void
s_reconcile (orch_t *self, json_t *ids)
{
    s_batch_t *b = calloc (1, sizeof *b);
    if (!b || !self->reconciling) {
        free (b);
        bus_stats_count (bus_service_stats (self->svc), "runs_reconciled", json_array_size (ids));
        json_decref (ids);
        return;
    }
    b->self = self;
    b->ids = ids;
    zlist_append (self->reconciling, b);
    if (bus_calls_send (self->ciba, "ciba.status", json_pack ("{s:O}", "approval_ids", ids), NULL, s_on_status_many,
                        b, NULL)) {
        zlist_remove (self->reconciling, b);
        bus_stats_count (bus_service_stats (self->svc), "runs_reconciled", json_array_size (ids));
        s_batch_free (b);
    }
}

typedef struct {
    orch_t *self;
    zlist_t *resume;            /* run ids to resume (RUNNING or paused in memory) */
    json_t *batch;              /* approval ids being gathered for one ciba.status */
    size_t reconcile;           /* approvals asked about */
} s_scan_t;

/*  An approval a run is paused for (the approvals index): asked about in
    batches as the scan goes, so the broker answers the first while the
    runs are scanned. */
static int
s_scan_approval (const void *key, size_t key_len, const void *val, size_t val_len, void *arg)
{
    s_scan_t *scan = arg;
    if (!scan->batch)
        scan->batch = json_array ();
    json_array_append_new (scan->batch, json_stringn (key, key_len));
    scan->reconcile++;
    if (json_array_size (scan->batch) == ORCH_RECONCILE_BATCH) {
        s_reconcile (scan->self, scan->batch);
        scan->batch = NULL;
    }
    return 0;
}

/*  A run to resume: RUNNING, or PAUSED for the auditor or an upstream
    (those paused for an approval are in the approvals index). */
static int
s_scan_run (const void *key, size_t key_len, const void *val, size_t val_len, void *arg)
{
    s_scan_t *scan = arg;
    json_t *rec = json_loadb (val, val_len, 0, NULL);
    const char *state = orch_str (rec, "state");
    const char *reason = orch_str (rec, "reason");
    if (state && !strcmp (state, "RUNNING"))
        zlist_append (scan->resume, strndup (key, key_len));
    else if (state && !strcmp (state, "PAUSED") && !(reason && !strcmp (reason, "approval")))
        zlist_append (scan->resume, strndup (key, key_len));
    json_decref (rec);
    return 0;
}

/*  At start: reconcile the runs paused for an approval with the broker
    (ciba.status {approval_ids}, ORCH_RECONCILE_BATCH at a time, all sent
    before the runs are scanned), resume RUNNING runs (and those paused for
    the auditor or an upstream: they try again at once). */
void
orch_run_resume_all (orch_t *self)
{
    if (!self->reconciling)
        self->reconciling = zlist_new ();
    s_scan_t scan = { self, zlist_new (), NULL, 0 };
    bus_txn_t *txn = bus_txn_begin (self->store, false);
    if (txn)
        bus_txn_scan (txn, self->db_approvals, NULL, 0, NULL, 0, s_scan_approval, &scan);
    bus_stats_count (bus_service_stats (self->svc), "runs_to_reconcile", scan.reconcile);
    if (scan.batch)
        s_reconcile (self, scan.batch);
    if (txn)
        bus_txn_scan (txn, self->db_runs, NULL, 0, NULL, 0, s_scan_run, &scan);
    bus_txn_abort (&txn);
    size_t resumed = zlist_size (scan.resume);
    char *id;
    while ((id = zlist_pop (scan.resume))) {
        bus_txn_t *w = orch_txn (self);
        json_t *rec = w ? orch_run_load (self, w, id) : NULL;
        if (rec && !strcmp (orch_str (rec, "state"), "PAUSED")) {
            json_object_set_new (rec, "state", json_string ("RUNNING"));
            json_object_del (rec, "reason");
            orch_run_emit (self, w, "run.resumed", json_pack ("{s:s, s:s?}", "run", id, "node", orch_str (rec, "cursor")));
            orch_run_put (self, w, rec);
        }
        json_decref (rec);
        if (w && bus_service_commit (self->svc, &w) == 0)
            orch_run_kick (self, id);
        free (id);
    }
    bus_stats_count (bus_service_stats (self->svc), "runs_resumed", resumed);
    zlist_destroy (&scan.resume);
    if (resumed || scan.reconcile)
        bus_info ("orchestrator: %zu runs resumed, %zu paused for approval reconciled", resumed, scan.reconcile);
}

/*  Forget the reconciliations in flight (at stop). */
void
orch_approval_stop (orch_t *self)
{
    s_batch_t *b;
    while (self->reconciling && (b = zlist_pop (self->reconciling)))
        s_batch_free (b);
    zlist_destroy (&self->reconciling);
}
