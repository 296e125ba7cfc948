/*  audit_runs.c — the audit log read by run (audit_runs.h). */
#include "audit_runs.h"
#include "bus_error.h"

#include <stdlib.h>
#include <string.h>

const char *const audit_runs_db_names [] = {
    "audit_runs", "audit_gaps", "audit_ended", "audit_receipts", NULL
};

struct audit_runs_t {
    int runs, gaps, ended, receipts;
};

#define S_ORCH  "svc:orchestrator"
#define S_CIBA  "svc:ciba-broker"
#define S_VAULT "svc:vault-broker"

int
audit_runs_new (audit_runs_t **out, bus_store_t *store)
{
    *out = NULL;
    audit_runs_t *self = calloc (1, sizeof *self);
    if (!self)
        return BUS_ENOMEM;
    self->runs = bus_store_db (store, "audit_runs");
    self->gaps = bus_store_db (store, "audit_gaps");
    self->ended = bus_store_db (store, "audit_ended");
    self->receipts = bus_store_db (store, "audit_receipts");
    if (self->runs < 0 || self->gaps < 0 || self->ended < 0 || self->receipts < 0) {
        free (self);
        return BUS_ENOTFOUND;
    }
    *out = self;
    return 0;
}

void
audit_runs_destroy (audit_runs_t **self_p)
{
    if (self_p && *self_p) {
        free (*self_p);
        *self_p = NULL;
    }
}

static bool
s_streq (const char *a, const char *b)
{
    return a && b && strcmp (a, b) == 0;
}

static size_t
s_run_len (const char *run)
{
    size_t n = run ? strnlen (run, AUDIT_RUN_MAX + 1) : 0;
    return n >= 1 && n <= AUDIT_RUN_MAX ? n : 0;
}

const char *
audit_runs_named (const json_t *content)
{
    json_t *v = json_object_get (content, "run");
    const char *run = json_string_value (v);
    /* a run id with a NUL inside would index under its prefix */
    return s_run_len (run) && strlen (run) == json_string_length (v) ? run : NULL;
}

bool
audit_runs_terminal (const char *pub, const char *type)
{
    return s_streq (pub, S_ORCH)
        && (s_streq (type, "run.completed") || s_streq (type, "run.failed")
            || s_streq (type, "run.rejected") || s_streq (type, "run.cancelled"));
}

int
audit_runs_note (audit_runs_t *self, bus_txn_t *txn, const char *run, uint64_t index)
{
    size_t n = s_run_len (run);
    if (!run)
        return 0;
    if (!n)
        return BUS_EINVAL;
    uint8_t key [AUDIT_RUN_MAX + 1 + 8];
    memcpy (key, run, n);
    key [n] = 0;
    bus_u64_to_key (index, key + n + 1);
    return bus_txn_put (txn, self->runs, key, n + 9, "", 0);
}

int
audit_runs_note_gap (audit_runs_t *self, bus_txn_t *txn, uint64_t index)
{
    uint8_t key [8];
    bus_u64_to_key (index, key);
    return bus_txn_put (txn, self->gaps, key, sizeof key, "", 0);
}

/*  A growing array of indexes. */
typedef struct {
    uint64_t *at;
    size_t n, cap;
    uint64_t below;                     /* only indexes below this */
} s_list_t;

static int
s_list_push (s_list_t *l, uint64_t v)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        uint64_t *at = realloc (l->at, cap * sizeof *at);
        if (!at)
            return BUS_ENOMEM;
        l->at = at;
        l->cap = cap;
    }
    l->at [l->n++] = v;
    return 0;
}

static int
s_collect_run (const void *key, size_t key_len, const void *val, size_t val_len, void *arg)
{
    s_list_t *l = arg;
    uint64_t index = bus_key_to_u64 ((const uint8_t *) key + key_len - 8);
    return index < l->below ? s_list_push (l, index) : 0;
}

static int
s_collect_gap (const void *key, size_t key_len, const void *val, size_t val_len, void *arg)
{
    s_list_t *l = arg;
    if (key_len != 8)
        return BUS_ESTATE;
    uint64_t index = bus_key_to_u64 (key);
    return index < l->below ? s_list_push (l, index) : 1;
}

int
audit_runs_indexes (audit_runs_t *self, bus_txn_t *txn, const char *run, uint64_t size,
                    uint64_t **idx, size_t *n, uint64_t **gaps, size_t *n_gaps)
{
    *idx = *gaps = NULL;
    *n = *n_gaps = 0;
    size_t len = s_run_len (run);
    if (!len)
        return BUS_EINVAL;
    uint8_t prefix [AUDIT_RUN_MAX + 1];
    memcpy (prefix, run, len);
    prefix [len] = 0;
    s_list_t runs = { .below = size }, gl = { .below = size };
    int rc = bus_txn_scan_prefix (txn, self->runs, prefix, len + 1, s_collect_run, &runs);
    if (rc == 0 && runs.n) {
        uint8_t from [8];
        bus_u64_to_key (runs.at [0], from);
        rc = bus_txn_scan (txn, self->gaps, from, sizeof from, NULL, 0, s_collect_gap, &gl);
    }
    if (rc) {
        free (runs.at);
        free (gl.at);
        return rc;
    }
    *idx = runs.at;
    *n = runs.n;
    *gaps = gl.at;
    *n_gaps = gl.n;
    return 0;
}

int
audit_runs_mark_ended (audit_runs_t *self, bus_txn_t *txn, const char *run, uint64_t index, int64_t due_us)
{
    size_t n = s_run_len (run);
    if (!n)
        return BUS_EINVAL;
    const void *v;
    size_t vl;
    if (bus_txn_get (txn, self->receipts, run, n, &v, &vl) == 0)
        return 0;                       /* a terminal event again: the receipt stands */
    uint8_t val [16];
    bus_u64_to_key (index, val);
    bus_u64_to_key ((uint64_t) due_us, val + 8);
    return bus_txn_put (txn, self->ended, run, n, val, sizeof val);
}

int
audit_runs_ended (audit_runs_t *self, bus_txn_t *txn, const char *run, uint64_t *index, int64_t *due_us)
{
    size_t n = s_run_len (run);
    if (!n)
        return BUS_EINVAL;
    const void *v;
    size_t vl;
    int rc = bus_txn_get (txn, self->ended, run, n, &v, &vl);
    if (rc == 0 && vl != 16)
        rc = BUS_ESTATE;
    if (rc == 0) {
        *index = bus_key_to_u64 (v);
        *due_us = (int64_t) bus_key_to_u64 ((const uint8_t *) v + 8);
    }
    return rc;
}

typedef struct {
    int64_t now;
    char (*runs) [AUDIT_RUN_MAX + 1];
    size_t max, n;
} s_due_t;

static int
s_collect_due (const void *key, size_t key_len, const void *val, size_t val_len, void *arg)
{
    s_due_t *d = arg;
    if (val_len != 16 || key_len > AUDIT_RUN_MAX)
        return 0;
    if ((int64_t) bus_key_to_u64 ((const uint8_t *) val + 8) > d->now)
        return 0;
    memcpy (d->runs [d->n], key, key_len);
    d->runs [d->n][key_len] = 0;
    return ++d->n >= d->max ? 1 : 0;
}

int
audit_runs_due (audit_runs_t *self, bus_txn_t *txn, int64_t now_us, char (*runs) [AUDIT_RUN_MAX + 1],
                size_t max, size_t *n)
{
    s_due_t d = { .now = now_us, .runs = runs, .max = max };
    *n = 0;
    if (max == 0)
        return 0;
    int rc = bus_txn_scan (txn, self->ended, NULL, 0, NULL, 0, s_collect_due, &d);
    *n = d.n;
    return rc;
}

int
audit_runs_put_receipt (audit_runs_t *self, bus_txn_t *txn, const char *run, const char *text, size_t len)
{
    size_t n = s_run_len (run);
    if (!n)
        return BUS_EINVAL;
    int rc = bus_txn_put (txn, self->receipts, run, n, text, len);
    if (rc == 0) {
        rc = bus_txn_del (txn, self->ended, run, n);
        if (rc == BUS_ENOTFOUND)
            rc = 0;
    }
    return rc;
}

int
audit_runs_get_receipt (audit_runs_t *self, bus_txn_t *txn, const char *run, const void **text, size_t *len)
{
    size_t n = s_run_len (run);
    if (!n)
        return BUS_EINVAL;
    return bus_txn_get (txn, self->receipts, run, n, text, len);
}

/*  Entries at the given indexes, parsed, with "index" added, into arr. */
static int
s_load (audit_log_t *log, bus_txn_t *txn, const uint64_t *idx, size_t n, json_t *arr)
{
    for (size_t i = 0; i < n; i++) {
        const void *bytes;
        size_t len;
        int rc = audit_log_entry (log, txn, idx [i], &bytes, &len);
        if (rc)
            return rc == BUS_ENOTFOUND ? BUS_ESTATE : rc;
        json_t *e = json_loadb (bytes, len, 0, NULL);
        if (!json_is_object (e)) {
            json_decref (e);
            return BUS_ESTATE;
        }
        json_object_set_new (e, "index", json_integer ((json_int_t) idx [i]));
        if (json_array_append_new (arr, e))
            return BUS_ENOMEM;
    }
    return 0;
}

int
audit_runs_entries (audit_runs_t *self, audit_log_t *log, bus_txn_t *txn, const char *run, uint64_t size,
                    json_t **entries, json_t **gap_entries)
{
    uint64_t *idx = NULL, *gaps = NULL;
    size_t n = 0, ng = 0;
    *entries = *gap_entries = NULL;
    int rc = audit_runs_indexes (self, txn, run, size, &idx, &n, &gaps, &ng);
    json_t *e = json_array (), *g = json_array ();
    if (rc == 0 && (!e || !g))
        rc = BUS_ENOMEM;
    if (rc == 0)
        rc = s_load (log, txn, idx, n, e);
    if (rc == 0)
        rc = s_load (log, txn, gaps, ng, g);
    free (idx);
    free (gaps);
    if (rc) {
        json_decref (e);
        json_decref (g);
        return rc;
    }
    *entries = e;
    *gap_entries = g;
    return 0;
}

/* --- the summary --------------------------------------------------------- */

/*  Copy member name of from into to when present. */
static void
s_copy (json_t *to, const char *name, const json_t *from)
{
    json_t *v = json_object_get (from, name);
    if (v)
        json_object_set (to, name, v);
}

/*  The item of list whose member key equals the string value, or NULL. */
static json_t *
s_find (json_t *list, const char *key, const char *value)
{
    size_t i;
    json_t *item;
    json_array_foreach (list, i, item)
        if (s_streq (json_string_value (json_object_get (item, key)), value))
            return item;
    return NULL;
}

/*  The step (node, attempt) of steps, made when missing. */
static json_t *
s_step (json_t *steps, const char *node, json_int_t attempt)
{
    size_t i;
    json_t *s;
    json_array_foreach (steps, i, s)
        if (s_streq (json_string_value (json_object_get (s, "node")), node)
            && json_integer_value (json_object_get (s, "attempt")) == attempt)
            return s;
    s = json_pack ("{s:s, s:I}", "node", node, "attempt", attempt);
    json_array_append_new (steps, s);
    return s;
}

static void
s_set_int (json_t *obj, const char *name, json_int_t v)
{
    json_object_set_new (obj, name, json_integer (v));
}

/*  The earliest time of name in obj, keeping an earlier one. */
static void
s_set_min (json_t *obj, const char *name, json_int_t v)
{
    json_t *old = json_object_get (obj, name);
    if (!json_is_integer (old) || json_integer_value (old) > v)
        s_set_int (obj, name, v);
}

static void
s_push_int (json_t *obj, const char *name, json_int_t v)
{
    json_t *list = json_object_get (obj, name);
    if (!list) {
        list = json_array ();
        json_object_set_new (obj, name, list);
    }
    json_array_append_new (list, json_integer (v));
}

/*  A fact of the orchestrator's. */
static void
s_orch_event (json_t *sum, const char *type, const json_t *body, json_int_t ts)
{
    json_t *steps = json_object_get (sum, "steps");
    const char *node = json_string_value (json_object_get (body, "node"));
    json_int_t attempt = json_integer_value (json_object_get (body, "attempt"));
    if (s_streq (type, "run.started")) {
        static const char *const names [] = { "workflow", "workflow_hash", "input_digest", "principal", NULL };
        for (int i = 0; names [i]; i++)
            s_copy (sum, names [i], body);
        json_t *at = json_object_get (body, "started_at");
        s_set_int (sum, "started_at", json_is_integer (at) ? json_integer_value (at) : ts);
    }
    else if (s_streq (type, "node.started") && node) {
        json_t *s = s_step (steps, node, attempt);
        s_copy (s, "kind", body);
        s_set_int (s, "started_at", ts);
    }
    else if (s_streq (type, "node.finished") && node) {
        json_t *s = s_step (steps, node, attempt);
        static const char *const names [] = { "kind", "outcome", "decision", "approval", "lease", "status",
                                              "error", "audit_index", NULL };
        for (int i = 0; names [i]; i++)
            s_copy (s, names [i], body);
        s_set_int (s, "finished_at", ts);
    }
    else if (s_streq (type, "run.paused")) {
        json_t *p = json_pack ("{s:I}", "paused_at", ts);
        s_copy (p, "node", body);
        s_copy (p, "reason", body);
        s_copy (p, "approval", body);
        json_array_append_new (json_object_get (sum, "pauses"), p);
    }
    else if (s_streq (type, "run.resumed")) {
        size_t i;
        json_t *p;
        json_array_foreach (json_object_get (sum, "pauses"), i, p)
            if (!json_object_get (p, "resumed_at")
                && json_equal (json_object_get (p, "node"), json_object_get (body, "node")))
                s_set_int (p, "resumed_at", ts);
    }
    else if (audit_runs_terminal (S_ORCH, type)) {
        static const char *const states [][2] = {
            { "run.completed", "COMPLETED" }, { "run.failed", "FAILED" },
            { "run.rejected", "REJECTED" }, { "run.cancelled", "CANCELLED" }
        };
        for (size_t i = 0; i < 4; i++)
            if (s_streq (type, states [i][0]))
                json_object_set_new (sum, "state", json_string (states [i][1]));
        s_copy (sum, "reason", body);
        if (node)
            json_object_set_new (sum, "ended_at_node", json_string (node));
        json_t *at = json_object_get (body, "finished_at");
        s_set_int (sum, "finished_at", json_is_integer (at) ? json_integer_value (at) : ts);
    }
}

/*  The level of a ciba event as a receipt keeps it. */
static json_t *
s_level (const json_t *lvl, json_int_t index)
{
    json_t *out = json_pack ("{s:I}", "level", index);
    static const char *const names [] = { "approver", "auth_req_id", "state", "asked_at", "decided_at",
                                          "device_key", "signature", "provider_sub", NULL };
    for (int i = 0; names [i]; i++)
        s_copy (out, names [i], lvl);
    return out;
}

/*  A fact of the ciba-broker's. */
static void
s_ciba_event (json_t *sum, const char *type, const json_t *body, json_int_t ts)
{
    const char *id = json_string_value (json_object_get (body, "approval_id"));
    if (!id)
        return;
    json_t *approvals = json_object_get (sum, "approvals");
    json_t *a = s_find (approvals, "approval_id", id);
    if (!a) {
        a = json_pack ("{s:s, s:s, s:[]}", "approval_id", id, "outcome", "pending", "levels");
        s_copy (a, "node", body);
        json_array_append_new (approvals, a);
    }
    s_copy (a, "binding_message", body);
    s_copy (a, "authorization_details_sha256", body);
    if (s_streq (type, "ciba.requested"))
        s_set_min (a, "requested_at", ts);
    if (s_streq (type, "ciba.escalated")) {
        json_t *e = json_pack ("{s:I}", "at", ts);
        static const char *const names [] = { "level", "approver", "reason", "to_level", "to_approver", NULL };
        for (int i = 0; names [i]; i++)
            s_copy (e, names [i], body);
        json_t *list = json_object_get (a, "escalations");
        if (!list)
            json_object_set_new (a, "escalations", list = json_array ());
        json_array_append_new (list, e);
    }
    if (s_streq (type, "approval.completed")) {
        s_copy (a, "outcome", body);
        s_copy (a, "reason", body);
        s_set_int (a, "completed_at", ts);
        json_t *levels = json_array (), *lvl;
        size_t i;
        json_array_foreach (json_object_get (body, "levels"), i, lvl)
            json_array_append_new (levels, s_level (lvl, (json_int_t) i));
        json_object_set_new (a, "levels", levels);
    }
}

/*  A fact of the vault-broker's. */
static void
s_vault_event (json_t *sum, const char *type, const json_t *body, json_int_t ts)
{
    const char *id = json_string_value (json_object_get (body, "lease_id"));
    if (!id || strncmp (type, "token.", 6) != 0)
        return;
    json_t *leases = json_object_get (sum, "leases");
    json_t *l = s_find (leases, "lease_id", id);
    if (!l) {
        l = json_pack ("{s:s}", "lease_id", id);
        json_array_append_new (leases, l);
    }
    static const char *const names [] = { "node", "connection", "scopes", "token_hmac", NULL };
    for (int i = 0; names [i]; i++)
        s_copy (l, names [i], body);
    json_t *exp = json_object_get (body, "expires_at");
    if (json_is_integer (exp))
        s_set_int (l, "expires_at", json_integer_value (exp) * 1000000);
    if (s_streq (type, "token.issued"))
        s_set_int (l, "issued_at", ts);
    else if (s_streq (type, "token.used"))
        s_push_int (l, "used_at", ts);
    else if (s_streq (type, "token.renewed"))
        s_push_int (l, "renewed_at", ts);
    else if (s_streq (type, "token.revoked"))
        s_set_int (l, "revoked_at", ts);
    else if (s_streq (type, "token.expired"))
        s_set_int (l, "expired_at", ts);
}

/*  A step intent the orchestrator appended before a tool call. */
static void
s_intent (json_t *sum, const json_t *entry, json_int_t index, json_int_t ts)
{
    const char *node = json_string_value (json_object_get (entry, "node"));
    if (!node || !s_streq (json_string_value (json_object_get (entry, "kind")), "step.intent"))
        return;
    json_t *s = s_step (json_object_get (sum, "steps"), node,
                        json_integer_value (json_object_get (entry, "attempt")));
    json_t *intent = json_pack ("{s:I, s:I}", "index", index, "at", ts);
    static const char *const names [] = { "connector", "connection", "action", "resource", "approval", "lease",
                                          "args_digest", NULL };
    for (int i = 0; names [i]; i++)
        s_copy (intent, names [i], entry);
    json_object_set_new (s, "intent", intent);
}

json_t *
audit_runs_summary (const char *run, const json_t *entries)
{
    json_t *sum = json_pack ("{s:s, s:[], s:[], s:[], s:[], s:[]}", "run", run, "steps", "pauses",
                             "approvals", "leases", "gaps");
    size_t i;
    json_t *e;
    json_array_foreach (entries, i, e) {
        const char *kind = json_string_value (json_object_get (e, "kind"));
        json_int_t ts = json_integer_value (json_object_get (e, "ts"));
        json_int_t index = json_integer_value (json_object_get (e, "index"));
        if (s_streq (kind, "gap")) {
            json_t *g = json_pack ("{s:I}", "index", index);
            static const char *const names [] = { "pub", "from_seq", "to_seq", "ts", NULL };
            for (int k = 0; names [k]; k++)
                s_copy (g, names [k], e);
            json_array_append_new (json_object_get (sum, "gaps"), g);
            continue;
        }
        if (s_streq (kind, "append")) {
            json_t *entry = json_object_get (e, "entry");
            if (s_streq (json_string_value (json_object_get (e, "from")), S_ORCH)
                && s_streq (audit_runs_named (entry), run))
                s_intent (sum, entry, index, ts);
            continue;
        }
        if (!s_streq (kind, "event"))
            continue;
        const char *pub = json_string_value (json_object_get (e, "pub"));
        const char *type = json_string_value (json_object_get (e, "type"));
        json_t *body = json_object_get (e, "body");
        if (!type || !s_streq (audit_runs_named (body), run))
            continue;
        if (s_streq (pub, S_ORCH))
            s_orch_event (sum, type, body, ts);
        else if (s_streq (pub, S_CIBA))
            s_ciba_event (sum, type, body, ts);
        else if (s_streq (pub, S_VAULT))
            s_vault_event (sum, type, body, ts);
    }
    return sum;
}

/*  Whether a step names a lease (or approval) that is not in the
    summary, or not ended: its events are still on their way (they come
    from another publisher, in no order with the orchestrator's). */
static bool
s_named_open (const json_t *summary, const char *member, const char *list, const char *key)
{
    size_t i;
    json_t *s;
    json_array_foreach (json_object_get (summary, "steps"), i, s) {
        const char *id = json_string_value (json_object_get (s, member));
        if (!id)
            id = json_string_value (json_object_get (json_object_get (s, "intent"), member));
        json_t *item = id ? s_find (json_object_get (summary, list), key, id) : NULL;
        if (id && !item)
            return true;
        if (item && strcmp (list, "approvals") == 0
            && s_streq (json_string_value (json_object_get (item, "outcome")), "pending"))
            return true;
    }
    return false;
}

bool
audit_runs_leases_open (const json_t *summary)
{
    size_t i;
    json_t *l;
    json_array_foreach (json_object_get (summary, "leases"), i, l)
        if (!json_object_get (l, "revoked_at") && !json_object_get (l, "expired_at"))
            return true;
    return s_named_open (summary, "lease", "leases", "lease_id")
        || s_named_open (summary, "approval", "approvals", "approval_id");
}

/* --- the gantt ----------------------------------------------------------- */

static json_int_t
s_int (const json_t *obj, const char *name)
{
    return json_integer_value (json_object_get (obj, name));
}

/*  Set name in obj to the integer member from of src, or null. */
static void
s_time (json_t *obj, const char *name, const json_t *src, const char *from)
{
    json_t *v = json_object_get (src, from);
    json_object_set_new (obj, name, json_is_integer (v) ? json_integer (json_integer_value (v)) : json_null ());
}

/*  The earliest and latest time of the run's facts. */
static void
s_bounds (json_int_t v, json_int_t *t0, json_int_t *t1)
{
    if (v <= 0)
        return;
    if (*t0 == 0 || v < *t0)
        *t0 = v;
    if (v > *t1)
        *t1 = v;
}

/*  A copy of the list member name of obj, or an empty list. */
static json_t *
s_list_copy (const json_t *obj, const char *name)
{
    json_t *list = json_object_get (obj, name);
    return list ? json_deep_copy (list) : json_array ();
}

json_t *
audit_runs_gantt (const json_t *summary)
{
    json_t *steps = json_array (), *approvals = json_array (), *leases = json_array ();
    json_int_t t0 = 0, t1 = 0;
    size_t i;
    json_t *s;
    s_bounds (s_int (summary, "started_at"), &t0, &t1);
    s_bounds (s_int (summary, "finished_at"), &t0, &t1);
    json_array_foreach (json_object_get (summary, "steps"), i, s) {
        json_t *g = json_pack ("{s:O?, s:O?, s:O?}", "node", json_object_get (s, "node"),
                               "kind", json_object_get (s, "kind"), "attempt", json_object_get (s, "attempt"));
        s_time (g, "start", s, "started_at");
        s_time (g, "end", s, "finished_at");
        s_copy (g, "outcome", s);
        s_copy (g, "approval", s);
        s_copy (g, "lease", s);
        s_bounds (s_int (s, "started_at"), &t0, &t1);
        s_bounds (s_int (s, "finished_at"), &t0, &t1);
        json_array_append_new (steps, g);
    }
    json_array_foreach (json_object_get (summary, "approvals"), i, s) {
        json_t *g = json_pack ("{s:O?, s:O?, s:O?, s:[]}", "approval_id", json_object_get (s, "approval_id"),
                               "node", json_object_get (s, "node"), "outcome", json_object_get (s, "outcome"),
                               "levels");
        s_time (g, "requested", s, "requested_at");
        s_time (g, "completed", s, "completed_at");
        s_bounds (s_int (s, "requested_at"), &t0, &t1);
        s_bounds (s_int (s, "completed_at"), &t0, &t1);
        size_t k;
        json_t *lvl;
        json_array_foreach (json_object_get (s, "levels"), k, lvl) {
            json_t *gl = json_pack ("{s:O?, s:O?}", "approver", json_object_get (lvl, "approver"),
                                    "state", json_object_get (lvl, "state"));
            s_time (gl, "asked_at", lvl, "asked_at");
            s_time (gl, "decided_at", lvl, "decided_at");
            json_array_append_new (json_object_get (g, "levels"), gl);
        }
        json_array_append_new (approvals, g);
    }
    json_array_foreach (json_object_get (summary, "leases"), i, s) {
        const char *node = json_string_value (json_object_get (s, "node"));
        json_t *g = json_pack ("{s:O?, s:O?, s:O?, s:O?}", "lease_id", json_object_get (s, "lease_id"),
                               "node", json_object_get (s, "node"), "connection",
                               json_object_get (s, "connection"), "scopes", json_object_get (s, "scopes"));
        /* requested: when its step started (the last attempt of the node
           that started before the issue); approved: when the node's
           approval completed approved */
        json_int_t issued = s_int (s, "issued_at"), requested = 0, approved = 0;
        size_t k;
        json_t *st;
        json_array_foreach (json_object_get (summary, "steps"), k, st)
            if (s_streq (json_string_value (json_object_get (st, "node")), node)
                && s_int (st, "started_at") && (!issued || s_int (st, "started_at") <= issued))
                requested = s_int (st, "started_at");
        json_array_foreach (json_object_get (summary, "approvals"), k, st)
            if (s_streq (json_string_value (json_object_get (st, "node")), node)
                && s_streq (json_string_value (json_object_get (st, "outcome")), "approved"))
                approved = s_int (st, "completed_at");
        json_object_set_new (g, "requested", requested ? json_integer (requested) : json_null ());
        json_object_set_new (g, "approved", approved ? json_integer (approved) : json_null ());
        s_time (g, "issued", s, "issued_at");
        json_object_set_new (g, "used", s_list_copy (s, "used_at"));
        json_object_set_new (g, "renewed", s_list_copy (s, "renewed_at"));
        s_time (g, "expires_at", s, "expires_at");
        bool revoked = json_object_get (s, "revoked_at") != NULL, expired = json_object_get (s, "expired_at") != NULL;
        s_time (g, "ended", s, revoked ? "revoked_at" : "expired_at");
        json_object_set_new (g, "end", json_string (revoked ? "revoked" : expired ? "expired" : "open"));
        s_bounds (requested, &t0, &t1);
        s_bounds (issued, &t0, &t1);
        s_bounds (s_int (s, revoked ? "revoked_at" : "expired_at"), &t0, &t1);
        size_t u;
        json_t *v;
        json_array_foreach (json_object_get (s, "used_at"), u, v)
            s_bounds (json_integer_value (v), &t0, &t1);
        json_array_append_new (leases, g);
    }
    return json_pack ("{s:O, s:I, s:I, s:O?, s:o, s:o, s:o}", "run", json_object_get (summary, "run"),
                      "t0", t0, "t1", t1, "state", json_object_get (summary, "state"), "steps", steps,
                      "approvals", approvals, "leases", leases);
}
