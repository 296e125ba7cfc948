/*  orch_service.c — the orchestrator daemon (orch_service.h): its
    declaration (stores, the approvals follower), start and stop, the
    workflows it has loaded, and the request handlers; the engine that
    advances runs is orch_run.c (orch_internal.h: the run record).

    Requests: run.start, run.get, run.list, run.cancel, run.wait,
    orch.workflow_load, orch.workflows (proto/PROTOCOL.md 10.2).

    Records (LMDB):
      runs       <run id>           -> the run record (JSON): its checkpoint
      approvals  <approval id>      -> <run id> (runs paused for it)
      workflows  <sha256:hash>      -> the workflow's JSON (every version a run used)
      meta       "epoch"            -> be64 fencing epoch; "node_seed" -> 32 bytes
      follow     the approvals follower's marks (ciba-broker's approval.completed,
                 ciba.approved, ciba.escalated: a paused run's levels kept current)

    Threads: everything runs on the reactor. run.start and run.cancel
    commit with bus_request_commit (their outcome recorded with the
    effect: a retried request id gets the same run).
*/
#include "orch_service.h"
#include "orch_internal.h"
#include "bus_error.h"
#include "bus_log.h"

#include <dirent.h>
#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define S_WAIT_DEFAULT_MS 30000

typedef struct {
    orch_t *self;
    bus_request_t *req;
    char id [27];
    bus_alarm_t *timer;
} s_waiter_t;

/* --- workflows ------------------------------------------------------------ */

/*  Keep wf (stolen) among the versions, return the one kept. */
static orch_workflow_t *
s_keep (orch_t *self, orch_workflow_t *wf)
{
    orch_workflow_t *have = zhash_lookup (self->by_hash, orch_workflow_hash (wf));
    if (have) {
        orch_workflow_destroy (&wf);
        return have;
    }
    zhash_insert (self->by_hash, orch_workflow_hash (wf), wf);
    return wf;
}

int
orch_workflow_store (orch_t *self, bus_txn_t *txn, const orch_workflow_t *wf)
{
    const char *hash = orch_workflow_hash (wf);
    const void *v;
    size_t len;
    if (bus_txn_get (txn, self->db_workflows, hash, strlen (hash), &v, &len) == 0)
        return 0;
    char *text = json_dumps (orch_workflow_json (wf), JSON_COMPACT);
    int rc = text ? bus_txn_put (txn, self->db_workflows, hash, strlen (hash), text, strlen (text)) : BUS_ENOMEM;
    free (text);
    return rc;
}

const orch_workflow_t *
orch_workflow_by_hash (orch_t *self, const char *hash)
{
    if (!hash)
        return NULL;
    orch_workflow_t *wf = zhash_lookup (self->by_hash, hash);
    if (wf)
        return wf;
    bus_txn_t *txn = bus_txn_begin (self->store, false);
    const void *v;
    size_t len;
    json_t *root = NULL;
    if (txn && bus_txn_get (txn, self->db_workflows, hash, strlen (hash), &v, &len) == 0)
        root = json_loadb (v, len, 0, NULL);
    bus_txn_abort (&txn);
    char err [400] = "";
    wf = root ? orch_workflow_new (root, "stored", err, sizeof err) : NULL;
    json_decref (root);
    if (!wf) {
        if (*err)
            bus_error ("orchestrator: stored workflow %s: %s", hash, err);
        return NULL;
    }
    return s_keep (self, wf);
}

static int
s_name_cmp (const void *a, const void *b)
{
    return strcmp (*(char *const *) a, *(char *const *) b);
}

/*  Read every *.json of the workflows' directory (only: just the file
    defining that workflow); loaded gets {workflow, hash, file, nodes} per
    workflow, errors a message per file that failed. A valid workflow
    replaces the one of its name; a failed file leaves it. Returns how many
    loaded. */
int
orch_workflows_load (orch_t *self, const char *only, json_t *loaded, json_t *errors)
{
    DIR *d = opendir (self->dir);
    if (!d) {
        json_array_append_new (errors, json_sprintf ("%s: cannot open the workflows' directory: %s", self->dir,
                                                     strerror (errno)));
        return 0;
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir (d))) {
        size_t len = strlen (e->d_name);
        if (e->d_name [0] == '.' || len < 6 || strcmp (e->d_name + len - 5, ".json"))
            continue;
        char **more = realloc (names, (n + 1) * sizeof *names);
        if (!more)
            break;
        names = more;
        names [n++] = strdup (e->d_name);
    }
    closedir (d);
    qsort (names, n, sizeof *names, s_name_cmp);
    zhash_t *seen = zhash_new ();
    bus_txn_t *txn = orch_txn (self);
    int count = 0;
    for (size_t i = 0; i < n; i++) {
        char path [2048], err [600] = "";
        snprintf (path, sizeof path, "%s/%s", self->dir, names [i]);
        orch_workflow_t *wf = orch_workflow_load (path, err, sizeof err);
        if (!wf) {
            json_array_append_new (errors, json_string (err));
            bus_warn ("orchestrator: workflow not loaded: %s", err);
            continue;
        }
        const char *name = orch_workflow_name (wf);
        if (only && strcmp (name, only)) {
            orch_workflow_destroy (&wf);
            continue;
        }
        if (zhash_lookup (seen, name)) {
            json_array_append_new (errors, json_sprintf ("%s: workflow %s is defined in %s already", names [i], name,
                                                         (char *) zhash_lookup (seen, name)));
            orch_workflow_destroy (&wf);
            continue;
        }
        zhash_insert (seen, name, names [i]);
        orch_workflow_t *prev = zhash_lookup (self->workflows, name);
        wf = s_keep (self, wf);
        name = orch_workflow_name (wf);     /* the kept version's (the new copy may be gone) */
        if (txn)
            orch_workflow_store (self, txn, wf);
        if (prev != wf && txn)
            bus_event_append (self->svc, txn, "orch.workflow_loaded",
                              json_pack ("{s:s, s:s, s:s}", "workflow", name, "hash", orch_workflow_hash (wf),
                                         "file", orch_workflow_file (wf)), NULL);
        zhash_update (self->workflows, name, wf);
        json_array_append_new (loaded, json_pack ("{s:s, s:s, s:s, s:i}", "workflow", name, "hash",
                                                  orch_workflow_hash (wf), "file", orch_workflow_file (wf), "nodes",
                                                  (int) json_array_size (json_object_get (orch_workflow_json (wf),
                                                                                          "nodes"))));
        count++;
    }
    if (txn && bus_service_commit (self->svc, &txn))
        bus_error ("orchestrator: the workflows could not be stored");
    zhash_destroy (&seen);
    for (size_t i = 0; i < n; i++)
        free (names [i]);
    free (names);
    if (only && count == 0)
        json_array_append_new (errors, json_sprintf ("no file in %s defines workflow %s", self->dir, only));
    return count;
}

/* --- run views and waiters ------------------------------------------------ */

json_t *
orch_run_view (const json_t *rec)
{
    json_t *v = json_object ();
    const char *keys [] = { "run", "state", "reason", "workflow", "workflow_hash", "input", "principal", "nodes",
                            "created_at", "updated_at", NULL };
    for (int i = 0; keys [i]; i++)
        if (json_object_get (rec, keys [i]))
            json_object_set (v, keys [i], json_object_get (rec, keys [i]));
    json_t *step = json_object_get (rec, "step");
    if (orch_str (step, "approval") && json_object_get (rec, "cursor") && !json_is_null (json_object_get (rec, "cursor")))
        json_object_set_new (v, "approval", json_pack ("{s:O, s:O, s:O*}", "approval_id",
                                                       json_object_get (step, "approval"), "node",
                                                       json_object_get (step, "node"), "levels",
                                                       json_object_get (step, "levels")));
    return v;
}

static void
s_list_free (void *arg)
{
    zlist_t *list = arg;
    zlist_destroy (&list);
}

static void
s_waiter_free (void *arg)
{
    s_waiter_t *w = arg;
    bus_alarm_end (&w->timer);
    free (w);
}

/*  Answer every run.wait on run id with rec (not RUNNING). */
void
orch_waiters_notify (orch_t *self, const char *id, const json_t *rec)
{
    zlist_t *list = zhash_lookup (self->waiters, id);
    if (!list || !strcmp (orch_str (rec, "state"), "RUNNING"))
        return;
    s_waiter_t *w;
    while ((w = zlist_pop (list))) {
        bus_reply_ok (w->req, orch_run_view (rec));
        s_waiter_free (w);
    }
    zhash_delete (self->waiters, id);
}

static int
s_wait_timeout (zloop_t *loop, void *arg)
{
    s_waiter_t *w = arg;
    orch_t *self = w->self;
    bus_alarm_end (&w->timer);
    zlist_t *list = zhash_lookup (self->waiters, w->id);
    if (list)
        zlist_remove (list, w);
    bus_txn_t *txn = bus_txn_begin (self->store, false);
    json_t *rec = txn ? orch_run_load (self, txn, w->id) : NULL;
    bus_txn_abort (&txn);
    if (rec)
        bus_reply_ok (w->req, orch_run_view (rec));
    else
        bus_reply_error (w->req, PROTO_ERR_NOT_FOUND, "run %s", w->id);
    json_decref (rec);
    if (list && zlist_size (list) == 0)
        zhash_delete (self->waiters, w->id);
    free (w);
    return 0;
}

/* --- handlers ------------------------------------------------------------- */

static bool
s_state_known (const char *s)
{
    const char *states [] = { "RUNNING", "PAUSED", "COMPLETED", "REJECTED", "FAILED", "CANCELLED", NULL };
    for (int i = 0; states [i]; i++)
        if (!strcmp (s, states [i]))
            return true;
    return false;
}

static void
s_run_start (bus_service_t *svc, bus_request_t *req, void *arg)
{
    orch_t *self = arg;
    json_t *body = bus_request_body (req);
    const char *name = orch_str (body, "workflow");
    orch_workflow_t *wf = zhash_lookup (self->workflows, name);
    if (!wf) {
        bus_reply_error (req, PROTO_ERR_NOT_FOUND, "no workflow %s is loaded (orch.workflows lists them)", name);
        return;
    }
    char why [600];
    if (orch_workflow_check_input (wf, json_object_get (body, "input"), why, sizeof why)) {
        bus_reply_error (req, PROTO_ERR_INVALID, "%s", why);
        return;
    }
    bus_txn_t *txn = orch_txn (self);
    if (!txn) {
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, self->fenced ? "another orchestrator owns the runs (fenced)"
                                                                  : "store unavailable");
        return;
    }
    char id [PROTO_ID_LEN + 1];
    proto_ulid (id);
    orch_workflow_store (self, txn, wf);
    json_t *rec = orch_run_new_record (self, wf, id, json_object_get (body, "input"), bus_request_principal (req), txn);
    if (!rec) {
        bus_service_abort (svc, &txn);
        bus_reply_error (req, PROTO_ERR_INVALID, "input: no canonical JSON form (a number beyond 2^53?)");
        return;
    }
    orch_run_put (self, txn, rec);
    json_decref (rec);
    bus_outcome_t out = { .body = json_pack ("{s:s, s:s, s:s, s:s}", "run", id, "state", "RUNNING", "workflow",
                                             name, "workflow_hash", orch_workflow_hash (wf)) };
    if (bus_request_commit (req, &txn, &out) == 0)
        orch_run_kick (self, id);
}

/*  A workflow's shape, for a run's view (the dashboard draws the steps not
    reached yet): {start, nodes: [{node, kind}], edges: [{from, to}]}. */
static json_t *
s_graph (const orch_workflow_t *wf)
{
    const json_t *root = orch_workflow_json (wf);
    json_t *nodes = json_array (), *edges = json_array ();
    size_t i;
    json_t *v;
    json_array_foreach (json_object_get (root, "nodes"), i, v)
        json_array_append_new (nodes, json_pack ("{s:s?, s:s?}", "node", orch_str (v, "id"), "kind",
                                                 orch_str (v, "kind")));
    json_array_foreach (json_object_get (root, "edges"), i, v)
        json_array_append_new (edges, json_pack ("{s:s?, s:s?}", "from", orch_str (v, "from"), "to",
                                                 orch_str (v, "to")));
    return json_pack ("{s:s?, s:o, s:o}", "start", orch_workflow_start (wf), "nodes", nodes, "edges", edges);
}

static void
s_run_get (bus_service_t *svc, bus_request_t *req, void *arg)
{
    orch_t *self = arg;
    const char *id = orch_str (bus_request_body (req), "run");
    bus_txn_t *txn = bus_txn_begin (self->store, false);
    json_t *rec = txn ? orch_run_load (self, txn, id) : NULL;
    bus_txn_abort (&txn);
    if (!rec) {
        bus_reply_error (req, PROTO_ERR_NOT_FOUND, "no run %s", id);
        return;
    }
    json_t *view = orch_run_view (rec);
    const orch_workflow_t *wf = orch_workflow_by_hash (self, orch_str (rec, "workflow_hash"));
    if (wf)
        json_object_set_new (view, "graph", s_graph (wf));
    bus_reply_ok (req, view);
    json_decref (rec);
}

typedef struct {
    const char *state;
    json_t *runs;
} s_list_t;

static int
s_list_one (const void *key, size_t key_len, const void *val, size_t val_len, void *arg)
{
    s_list_t *l = arg;
    json_t *rec = json_loadb (val, val_len, 0, NULL);
    if (rec && (!l->state || !strcmp (orch_str (rec, "state"), l->state)))
        json_array_append_new (l->runs, json_pack ("{s:O, s:O, s:O, s:O*, s:O, s:O}", "run", json_object_get (rec, "run"),
                                                   "state", json_object_get (rec, "state"), "workflow",
                                                   json_object_get (rec, "workflow"), "reason",
                                                   json_object_get (rec, "reason"), "created_at",
                                                   json_object_get (rec, "created_at"), "updated_at",
                                                   json_object_get (rec, "updated_at")));
    json_decref (rec);
    return 0;
}

static void
s_run_list (bus_service_t *svc, bus_request_t *req, void *arg)
{
    orch_t *self = arg;
    s_list_t l = { orch_str (bus_request_body (req), "state"), json_array () };
    if (l.state && !s_state_known (l.state)) {
        json_decref (l.runs);
        bus_reply_error (req, PROTO_ERR_INVALID, "state %s: one of RUNNING, PAUSED, COMPLETED, REJECTED, FAILED, "
                         "CANCELLED", l.state);
        return;
    }
    bus_txn_t *txn = bus_txn_begin (self->store, false);
    int rc = txn ? bus_txn_scan (txn, self->db_runs, NULL, 0, NULL, 0, s_list_one, &l) : BUS_EIO;
    bus_txn_abort (&txn);
    if (rc) {
        json_decref (l.runs);
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "store: %s", bus_strerror (rc));
        return;
    }
    bus_reply_ok (req, json_pack ("{s:o}", "runs", l.runs));
}

static void
s_ignore (bus_calls_t *calls, proto_msg_t *reply, void *arg)
{
    if (!reply->ok)
        bus_warn ("orchestrator: %s: %s", bus_calls_name (calls),
                  json_string_value (json_object_get (reply->error, "message")));
}

static void
s_run_cancel (bus_service_t *svc, bus_request_t *req, void *arg)
{
    orch_t *self = arg;
    const char *id = orch_str (bus_request_body (req), "run");
    bus_txn_t *txn = orch_txn (self);
    if (!txn) {
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "store unavailable or fenced");
        return;
    }
    json_t *rec = orch_run_load (self, txn, id);
    if (!rec) {
        bus_service_abort (svc, &txn);
        bus_reply_error (req, PROTO_ERR_NOT_FOUND, "no run %s", id);
        return;
    }
    const char *state = orch_str (rec, "state");
    if (strcmp (state, "RUNNING") && strcmp (state, "PAUSED")) {
        bus_service_abort (svc, &txn);
        bus_reply_error_with (req, PROTO_ERR_CONFLICT, json_pack ("{s:s}", "state", state), "run %s has ended: %s",
                              id, state);
        json_decref (rec);
        return;
    }
    char approval [64] = "";
    const char *a = orch_str (json_object_get (rec, "step"), "approval");
    if (!strcmp (state, "PAUSED") && a)
        snprintf (approval, sizeof approval, "%s", a);
    char why [200];
    snprintf (why, sizeof why, "cancelled by %s", bus_request_principal (req));
    orch_run_cancel (self, txn, rec, why);
    bus_outcome_t out = { .body = orch_run_view (rec) };
    if (bus_request_commit (req, &txn, &out) == 0) {
        if (*approval)
            bus_calls_send (self->ciba, "ciba.cancel", json_pack ("{s:s, s:s}", "approval_id", approval, "reason",
                                                                  "run cancelled"), NULL, s_ignore, NULL, NULL);
        orch_run_after_end (self, rec);
    }
    json_decref (rec);
}

static void
s_run_wait (bus_service_t *svc, bus_request_t *req, void *arg)
{
    orch_t *self = arg;
    json_t *body = bus_request_body (req);
    const char *id = orch_str (body, "run");
    int64_t timeout = json_is_integer (json_object_get (body, "timeout_ms"))
                    ? json_integer_value (json_object_get (body, "timeout_ms")) : S_WAIT_DEFAULT_MS;
    bus_txn_t *txn = bus_txn_begin (self->store, false);
    json_t *rec = txn ? orch_run_load (self, txn, id) : NULL;
    bus_txn_abort (&txn);
    if (!rec) {
        bus_reply_error (req, PROTO_ERR_NOT_FOUND, "no run %s", id);
        return;
    }
    if (strcmp (orch_str (rec, "state"), "RUNNING") || timeout <= 0) {
        bus_reply_ok (req, orch_run_view (rec));
        json_decref (rec);
        return;
    }
    json_decref (rec);
    s_waiter_t *w = calloc (1, sizeof *w);
    zlist_t *list = zhash_lookup (self->waiters, id);
    if (!list) {
        list = zlist_new ();
        zhash_insert (self->waiters, id, list);
        zhash_freefn (self->waiters, id, s_list_free);
    }
    if (!w || !list) {
        free (w);
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "out of memory");
        return;
    }
    w->self = self;
    w->req = req;
    snprintf (w->id, sizeof w->id, "%s", id);
    bus_request_defer (req);
    w->timer = bus_alarm_new (bus_service_loop (svc), (size_t) timeout, 1, s_wait_timeout, w);
    if (!w->timer) {
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "out of memory");
        free (w);
        if (zlist_size (list) == 0)
            zhash_delete (self->waiters, id);
        return;
    }
    zlist_append (list, w);
}

static json_t *
s_workflow_list (orch_t *self)
{
    json_t *list = json_array ();
    for (orch_workflow_t *wf = zhash_first (self->workflows); wf; wf = zhash_next (self->workflows))
        json_array_append_new (list, json_pack ("{s:s, s:s, s:s, s:i}", "workflow", orch_workflow_name (wf), "hash",
                                                orch_workflow_hash (wf), "file", orch_workflow_file (wf), "nodes",
                                                (int) json_array_size (json_object_get (orch_workflow_json (wf),
                                                                                        "nodes"))));
    return list;
}

static void
s_workflow_load (bus_service_t *svc, bus_request_t *req, void *arg)
{
    orch_t *self = arg;
    json_t *loaded = json_array (), *errors = json_array ();
    orch_workflows_load (self, orch_str (bus_request_body (req), "workflow"), loaded, errors);
    bus_reply_ok (req, json_pack ("{s:o, s:o}", "workflows", loaded, "errors", errors));
}

static void
s_workflows (bus_service_t *svc, bus_request_t *req, void *arg)
{
    bus_reply_ok (req, json_pack ("{s:o}", "workflows", s_workflow_list (arg)));
}

/* --- start and stop ------------------------------------------------------- */

/*  Take the next fencing epoch and the node seed. */
static int
s_meta (orch_t *self)
{
    bus_txn_t *txn = bus_txn_begin (self->store, true);
    if (!txn)
        return BUS_EIO;
    const void *v;
    size_t len;
    uint64_t epoch = 0;
    if (bus_txn_get (txn, self->db_meta, "epoch", 5, &v, &len) == 0 && len == 8)
        epoch = bus_key_to_u64 (v);
    self->epoch = epoch + 1;
    uint8_t key [8];
    bus_u64_to_key (self->epoch, key);
    bus_txn_put (txn, self->db_meta, "epoch", 5, key, 8);
    if (bus_txn_get (txn, self->db_meta, "node_seed", 9, &v, &len) == 0 && len == sizeof self->node_seed)
        memcpy (self->node_seed, v, len);
    else {
        randombytes_buf (self->node_seed, sizeof self->node_seed);
        bus_txn_put (txn, self->db_meta, "node_seed", 9, self->node_seed, sizeof self->node_seed);
    }
    return bus_txn_commit (&txn);
}

static int
s_on_resume (zloop_t *loop, int timer_id, void *arg)
{
    orch_run_resume_all (arg);
    return 0;
}

static int
s_start (bus_service_t *svc, void **state)
{
    orch_t *self = calloc (1, sizeof *self);
    if (!self)
        return BUS_ENOMEM;
    *state = self;
    self->svc = svc;
    self->store = bus_service_store (svc);
    self->db_runs = bus_store_db (self->store, "runs");
    self->db_meta = bus_store_db (self->store, "meta");
    self->db_workflows = bus_store_db (self->store, "workflows");
    self->db_approvals = bus_store_db (self->store, "approvals");
    self->workflows = zhash_new ();
    self->by_hash = zhash_new ();
    self->runs = zhash_new ();
    self->waiters = zhash_new ();
    self->kick = zlist_new ();
    self->http_wait = zlist_new ();
    for (int i = 0; i < ORCH_PEERS; i++)
        if (!(self->peer_wait [i] = zlist_new ()))
            return BUS_ENOMEM;
    if (!self->http_wait || !self->workflows || !self->by_hash || !self->runs || !self->waiters || !self->kick)
        return BUS_ENOMEM;
    int rc = s_meta (self);
    if (rc) {
        bus_error ("orchestrator: cannot take the fencing epoch: %s", bus_strerror (rc));
        return rc;
    }
    bus_config_t *config = bus_service_config (svc);
    const char *dir = bus_config_str (config, "orchestrator", "workflows");
    if (*dir)
        snprintf (self->dir, sizeof self->dir, "%s", dir);
    else
        snprintf (self->dir, sizeof self->dir, "%s/workflows", bus_config_str (config, "sanctum", "data_dir"));
    snprintf (self->sandbox, sizeof self->sandbox, "http://%s", bus_config_str (config, "sandbox", "http"));
    const char *urls [] = { "sheets_url", "gmail_url", "dropbox_url" };
    char *dst [] = { self->sheets_url, self->gmail_url, self->dropbox_url };
    for (int i = 0; i < 3; i++) {
        const char *u = bus_config_str (config, "orchestrator", urls [i]);
        snprintf (dst [i], sizeof self->sheets_url, "%s", *u ? u : self->sandbox);
    }
    self->lease_ttl = bus_config_int (config, "orchestrator", "lease_ttl_s");
    self->approval_expiry = bus_config_int (config, "orchestrator", "approval_expiry_s");
    self->retry_max = bus_config_int (config, "orchestrator", "retry_max");
    self->retry_base = bus_config_int (config, "orchestrator", "retry_base_ms");
    self->retry_cap = bus_config_int (config, "orchestrator", "retry_cap_ms");
    self->audit_retry = bus_config_int (config, "orchestrator", "audit_retry_ms");
    self->authz = bus_calls_for (svc, "authz");
    self->ciba = bus_calls_for (svc, "ciba-broker");
    self->vault = bus_calls_for (svc, "vault-broker");
    self->auditor = bus_calls_for (svc, "auditor");
    if (!self->authz || !self->ciba || !self->vault || !self->auditor) {
        bus_error ("orchestrator: cannot reach its peers (authz, ciba-broker, vault-broker, auditor): their keys?");
        return BUS_ECONFIG;
    }
    bus_http_client_opts_t hopts;
    bus_http_client_opts_from_config (&hopts, config);
    self->http = bus_http_client_new (bus_service_loop (svc), &hopts);
    if (!self->http)
        return BUS_EIO;
    char err [400] = "";
    if (orch_agent_config_load (&self->agent, config, err, sizeof err)) {
        bus_warn ("orchestrator: chat agents unavailable: %s", err);
        self->agent = NULL;
    }
    json_t *loaded = json_array (), *errors = json_array ();
    struct stat st;
    if (!*dir && stat (self->dir, &st) && errno == ENOENT)
        /* the default directory, not made yet (a first start, before the
           example is seeded): nothing to load, nothing refused */
        bus_info ("orchestrator: no workflows yet (%s does not exist; orch.workflow_load reads it)", self->dir);
    else
        orch_workflows_load (self, NULL, loaded, errors);
    bus_info ("orchestrator: epoch %llu, %zu workflows loaded from %s, %zu refused",
              (unsigned long long) self->epoch, json_array_size (loaded), self->dir, json_array_size (errors));
    size_t i;
    json_t *why;
    json_array_foreach (errors, i, why)
        bus_warn ("orchestrator: workflow refused: %s", json_string_value (why));
    json_decref (loaded);
    json_decref (errors);
    static const bus_handler_entry_t handlers [] = {
        { "run.start",          s_run_start },
        { "run.get",            s_run_get },
        { "run.list",           s_run_list },
        { "run.cancel",         s_run_cancel },
        { "run.wait",           s_run_wait },
        { "orch.workflow_load", s_workflow_load },
        { "orch.workflows",     s_workflows },
    };
    rc = bus_service_handle_all (svc, handlers, sizeof handlers / sizeof handlers [0], self);
    if (rc == 0)
        zloop_timer (bus_service_loop (svc), 5, 1, s_on_resume, self);
    return rc;
}

static void
s_stop (bus_service_t *svc, void **state)
{
    orch_t *self = *state;
    if (!self)
        return;
    orch_engine_stop (self);
    if (self->waiters) {
        for (zlist_t *list = zhash_first (self->waiters); list; list = zhash_next (self->waiters)) {
            s_waiter_t *w;
            while ((w = zlist_pop (list))) {
                bus_reply_error (w->req, PROTO_ERR_UNAVAILABLE, "the orchestrator is stopping");
                s_waiter_free (w);
            }
        }
        zhash_destroy (&self->waiters);
    }
    bus_alarm_end (&self->kick_timer);
    char *id;
    while (self->kick && (id = zlist_pop (self->kick)))
        free (id);
    zlist_destroy (&self->kick);
    zlist_destroy (&self->http_wait);
    for (int i = 0; i < ORCH_PEERS; i++)
        zlist_destroy (&self->peer_wait [i]);
    bus_calls_destroy (&self->authz);
    bus_calls_destroy (&self->ciba);
    bus_calls_destroy (&self->vault);
    bus_calls_destroy (&self->auditor);
    bus_http_client_destroy (&self->http);
    orch_agent_config_destroy (&self->agent);
    zhash_destroy (&self->runs);
    zhash_destroy (&self->workflows);
    if (self->by_hash) {
        for (orch_workflow_t *wf = zhash_first (self->by_hash); wf; wf = zhash_next (self->by_hash)) {
            orch_workflow_t *w = wf;
            orch_workflow_destroy (&w);
        }
        zhash_destroy (&self->by_hash);
    }
    sodium_memzero (self->node_seed, sizeof self->node_seed);
    free (self);
    *state = NULL;
}

static const char *const s_dbs [] = { "runs", "approvals", "workflows", "meta", BUS_FOLLOW_DB, NULL };

static const char *const s_ciba [] = { "ciba-broker", NULL };
/*  approval.completed moves a paused run on; ciba.approved and
    ciba.escalated keep its approval levels current (orch_on_approval).
    Not followed: the events that end an approval (approval.completed
    comes with them), and ciba.requested (the level it asks is pending
    already: ciba.authorize's reply, or the ciba.approved or
    ciba.escalated of the level before it). An event that changes no run
    of ours commits nothing. */
static const char *const s_approval_events [] = { "approval.completed", "ciba.approved", "ciba.escalated",
                                                  NULL };

static const bus_follower_t s_followers [] = {
    { .name = "approvals", .publishers = s_ciba, .topics = s_approval_events, .fn = orch_on_approval },
    { 0 }
};

const bus_daemon_t orch_daemon = {
    .section = "orchestrator",
    .db_names = s_dbs,
    .start = s_start,
    .stop = s_stop,
    .followers = s_followers,
};
