/*  authz_query.c — one OpenFGA query's state and its tuple reading.

    A query begins by validating the request's contextual tuples and
    opening one read transaction. Reading object#relation merges the
    contextual tuples with the stored ones the model still allows (a
    one-entry cache of the last small set serves both "is this user
    there" and "who is there"); conditions are evaluated with the tuple's
    own context over the request's. See authz_query.h.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bus_error.h"
#include "authz_query.h"

/*  Start an empty list. */
void
authz_tlist_init (authz_tlist_t *l)
{
    l->v = l->local;
    l->n = 0;
    l->cap = 8;
}

/*  Free a list's heap storage. */
void
authz_tlist_free (authz_tlist_t *l)
{
    if (l->v != l->local)
        free (l->v);
    l->v = l->local;
    l->n = 0;
}

/*  Append (scan callback): 0, or BUS_ENOMEM. */
int
authz_tlist_add (const authz_tuple_t *t, void *arg)
{
    authz_tlist_t *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap * 2;
        authz_tuple_t *v = malloc (cap * sizeof *v);
        if (!v)
            return BUS_ENOMEM;
        memcpy (v, l->v, l->n * sizeof *v);
        if (l->v != l->local)
            free (l->v);
        l->v = v;
        l->cap = cap;
    }
    l->v [l->n++] = *t;
    return 0;
}

/*  Parse a subject string against the model. Returns 0 or -2000. */
int
authz_user_parse (const authz_model_t *m, const char *text, authz_user_t *u, authz_error_t *err)
{
    u->text = text;
    u->object [0] = '\0';
    u->type = -1;
    u->relation = -1;
    u->wildcard = false;
    const char *colon = text? strchr (text, ':'): NULL;
    const char *hash = colon? strchr (colon, '#'): NULL;
    size_t ol = hash? (size_t) (hash - text): (text? strlen (text): 0);
    if (!colon || colon == text || ol >= AUTHZ_QUERY_OBJ_MAX || ol == (size_t) (colon - text) + 1
    ||  strchr (colon + 1, ':') || (hash && (!hash [1] || strchr (hash + 1, '#')))
    ||  strpbrk (text, " \t\r\n@"))
        return authz_error_set (err, AUTHZ_EVALIDATION,
                                "Invalid tuple. Reason: the 'user' field is malformed");
    memcpy (u->object, text, ol);
    u->object [ol] = '\0';
    u->type = authz_model_type (m, text, (size_t) (colon - text));
    if (u->type < 0)
        return authz_error_set (err, AUTHZ_EVALIDATION, "type '%.*s' not found",
                                (int) (colon - text), text);
    u->wildcard = strcmp (colon + 1, "*") == 0;
    if (hash) {
        u->relation = authz_model_relation (m, u->type, hash + 1, strlen (hash + 1));
        if (u->relation < 0)
            return authz_error_set (err, AUTHZ_EVALIDATION, "relation '%.*s#%s' not found",
                                    (int) (colon - text), text, hash + 1);
    }
    return 0;
}

/*  Split an object string: its type id (or -1). */
int
authz_query_object_type (const authz_model_t *m, const char *object)
{
    const char *colon = strchr (object, ':');
    return colon? authz_model_type (m, object, (size_t) (colon - object)): -1;
}

/*  Type id of the len-byte type name, remembering the last one found
    (the tuples of one request mostly name the same few types). */
static int
s_type_id (authz_query_t *q, const char *name, size_t len)
{
    if (q->memo_type >= 0 && len == q->memo_type_len
    &&  memcmp (name, q->memo_type_name, len) == 0)
        return q->memo_type;
    int t = authz_model_type (q->model, name, len);
    if (t >= 0) {
        q->memo_type = t;
        q->memo_type_name = authz_model_type_at (q->model, t)->name;
        q->memo_type_len = len;
    }
    return t;
}

/*  The relation a tuple-to-userset rw computes on user type ut (-1 when
    that type has none), remembering the last answer (a walk up a
    hierarchy asks the same rw and type at every hop). */
int
authz_query_ttu_computed (authz_query_t *q, const authz_rw_t *rw, int ut)
{
    if (q->memo_rw != rw || q->memo_rw_type != ut) {
        q->memo_rw = rw;
        q->memo_rw_type = ut;
        q->memo_rw_rel = authz_model_relation (q->model, ut, rw->computed, strlen (rw->computed));
    }
    return q->memo_rw_rel;
}

/*  Evaluate a tuple's condition: 1 met (or none), 0 not met, -2000 on a
    missing parameter or evaluation error, -2002 over the request's budget
    or the expression's own limits. */
int
authz_query_condition (authz_query_t *q, const authz_tuple_t *t)
{
    if (!t->condition || !*t->condition)
        return 1;
    int id = authz_model_condition (q->model, t->condition, strlen (t->condition));
    const authz_condition_t *c = authz_model_condition_at (q->model, id);
    if (!c || !c->cel)
        return authz_error_set (q->err, AUTHZ_EVALIDATION,
                                "condition '%s' was not found", t->condition);
    //  The tuple's context over the request's, looked up (not merged) by
    //  the evaluation; a stored one is parsed, charged by its length
    json_t *tctx = t->context? json_incref (t->context): NULL;
    size_t text_len = !tctx && t->context_text? strlen (t->context_text): 0;
    int rc = authz_query_spend (q, 1 + text_len / 16, 0);
    if (rc)
        return rc;
    if (text_len)
        tctx = json_loads (t->context_text, 0, NULL);
    authz_budget_t *b = q->budget;
    authz_cel_run_t run = {.context = tctx, .fallback = q->context,
                           .allowance = b->max_cost > b->cost? b->max_cost - b->cost: 1};
    char msg [160] = "";
    json_t *missing = NULL;
    rc = authz_cel_run (c->cel, &run, &missing, msg, sizeof msg);
    json_decref (tctx);
    int spent = authz_query_spend (q, run.spent, 0);
    if (rc == AUTHZ_CEL_EBUDGET || (rc < 0 && spent)) {
        json_decref (missing);
        b->over = true;                 /* the allowance was what was left */
        return spent? spent: authz_query_spend (q, 0, 0);
    }
    if (rc < 0) {
        if (rc == AUTHZ_CEL_EMISSING) {
            char *names = missing? json_dumps (missing, JSON_COMPACT): NULL;
            authz_error_set (q->err, AUTHZ_EVALIDATION,
                             "failed to evaluate relationship condition '%s': context is missing parameters '%s'",
                             t->condition, names? names: "");
            free (names);
        }
        else
        if (rc == AUTHZ_CEL_ELIMIT) {
            //  over the expression's own cost or memory limit: the work
            //  asked for is too much, as the request's budget would be
            authz_error_set (q->err, AUTHZ_ETOO_COMPLEX,
                             "failed to evaluate relationship condition '%s': %s",
                             t->condition, msg);
            json_decref (missing);
            return -AUTHZ_ETOO_COMPLEX;
        }
        else
            authz_error_set (q->err, AUTHZ_EVALIDATION,
                             "failed to evaluate relationship condition '%s': %s",
                             t->condition, msg);
        rc = -AUTHZ_EVALIDATION;
    }
    json_decref (missing);
    return rc;
}

/*  A stored tuple still allowed by the model? Object type and relation
    are those being read, so only the user and condition need checking
    (the fast path of authz_tuple_is_valid). */
static bool
s_stored_valid (authz_query_t *q, int type, int rel, const authz_tuple_t *t)
{
    const char *colon = strchr (t->user, ':');
    if (!colon)
        return false;
    int ut = s_type_id (q, t->user, (size_t) (colon - t->user));
    if (ut < 0)
        return false;
    const char *hash = strchr (colon, '#');
    int ur = hash? authz_model_relation (q->model, ut, hash + 1, strlen (hash + 1)): -1;
    if (hash && ur < 0)
        return false;
    int cond = -1;
    if (t->condition && *t->condition
    &&  (cond = authz_model_condition (q->model, t->condition, strlen (t->condition))) < 0)
        return false;
    bool wildcard = !hash && colon [1] == '*' && colon [2] == '\0';
    return authz_model_allowed (q->model, type, rel, ut, ur, wildcard, cond) != NULL;
}

/*  Scan callback that stops after AUTHZ_QUERY_CACHE_MAX + 1 tuples. */
static int
s_cache_add (const authz_tuple_t *t, void *arg)
{
    authz_tlist_t *l = arg;
    if (l->n > AUTHZ_QUERY_CACHE_MAX)
        return 1;
    return authz_tlist_add (t, l);
}

/*  Make the cache hold the stored, valid tuples of object#relation if
    there are at most AUTHZ_QUERY_CACHE_MAX of them: returns true when it does. One
    LMDB scan then serves both "is this user there" and "who is there"
    (a computed relation and a tuple-to-userset over the same tupleset). */
static bool
s_cache_fill (authz_query_t *q, int type, int rel, const char *object, const char *relation)
{
    authz_qcache_t *c = &q->cache;
    if (c->valid && c->type == type && c->rel == rel && strcmp (c->object, object) == 0)
        return c->complete;
    size_t ol = strlen (object);
    c->valid = false;
    if (ol >= sizeof c->object)
        return false;
    authz_tlist_init (&c->tuples);
    int rc = authz_store_scan_users (q->store, q->txn, object, relation, s_cache_add, &c->tuples);
    c->complete = rc == 0 && c->tuples.n <= AUTHZ_QUERY_CACHE_MAX;
    size_t keep = 0;
    for (size_t i = 0; c->complete && i < c->tuples.n; i++)
        if (s_stored_valid (q, type, rel, &c->tuples.v [i]))
            c->tuples.v [keep++] = c->tuples.v [i];
    c->tuples.n = keep;
    memcpy (c->object, object, ol + 1);
    c->type = type;
    c->rel = rel;
    c->valid = rc == 0;
    return c->complete;
}

/*  Collect the tuples of object#relation: contextual ones first, then the
    stored ones the model still allows. */
int
authz_query_read (authz_query_t *q, int type, int rel, const char *object, const char *relation,
        authz_tlist_t *out)
{
    //  One read, then each tuple it yields, from the request's budget
    size_t before = out->n;
    int rc = authz_query_spend (q, 0, 1);
    for (size_t i = 0; rc == 0 && i < q->n_ctx; i++) {
        const authz_tuple_t *t = &q->ctx_tuples [i];
        if (strcmp (t->object, object) == 0 && strcmp (t->relation, relation) == 0)
            rc = authz_tlist_add (t, out);
    }
    if (rc)
        return rc;
    if (s_cache_fill (q, type, rel, object, relation)) {
        for (size_t i = 0; rc == 0 && i < q->cache.tuples.n; i++)
            rc = authz_tlist_add (&q->cache.tuples.v [i], out);
    }
    else {
        size_t first = out->n;
        rc = authz_store_scan_users (q->store, q->txn, object, relation, authz_tlist_add, out);
        //  Drop stored tuples the model does not allow
        size_t keep = first;
        for (size_t i = first; rc == 0 && i < out->n; i++)
            if (s_stored_valid (q, type, rel, &out->v [i]))
                out->v [keep++] = out->v [i];
        out->n = keep;
    }
    return rc? rc: authz_query_spend (q, 0, out->n - before);
}

/*  Does object#relation@user exist with its condition met? 1, 0 or error. */
int
authz_query_read_exact (authz_query_t *q, int type, int rel, const char *object, const char *relation,
              const char *user)
{
    int result = authz_query_spend (q, 0, 1);
    if (result)
        return result;
    for (size_t i = 0; i < q->n_ctx; i++) {
        const authz_tuple_t *t = &q->ctx_tuples [i];
        if (strcmp (t->object, object) == 0 && strcmp (t->relation, relation) == 0
        &&  strcmp (t->user, user) == 0) {
            int rc = authz_query_condition (q, t);
            if (rc == 1)
                return 1;
            if (rc < 0)
                result = rc;
        }
    }
    authz_tuple_t t, *found = NULL;
    if (s_cache_fill (q, type, rel, object, relation)) {
        for (size_t i = 0; i < q->cache.tuples.n && !found; i++)
            if (strcmp (q->cache.tuples.v [i].user, user) == 0)
                found = &q->cache.tuples.v [i];
    }
    else
    if (authz_store_get (q->store, q->txn, object, relation, user, &t) == 0
    &&  s_stored_valid (q, type, rel, &t))
        found = &t;
    if (found) {
        int rc = authz_query_condition (q, found);
        if (rc == 1)
            return 1;
        if (rc < 0)
            result = rc;
    }
    return result;
}

/*  Split a tuple's user "type:id#rel" into obj (NUL-terminated copy of
    "type:id"), its type id and relation id (-1 when none or unknown).
    Returns false if it does not fit or has no ':'. */
bool
authz_query_split_user (authz_query_t *q, const char *user, char obj [AUTHZ_QUERY_OBJ_MAX],
              int *type, const char **rel)
{
    const char *hash = strchr (user, '#');
    size_t ol = hash? (size_t) (hash - user): strlen (user);
    if (ol >= AUTHZ_QUERY_OBJ_MAX)
        return false;
    memcpy (obj, user, ol);
    obj [ol] = '\0';
    *rel = hash? hash + 1: NULL;
    const char *colon = memchr (obj, ':', ol);
    *type = colon? s_type_id (q, obj, (size_t) (colon - obj)): -1;
    return *type >= 0;
}

/*  Set up a query: validate contextual tuples (2027), begin the read
    transaction. */
int
authz_query_begin (authz_query_t *q, authz_store_t *store, const authz_model_t *model,
               const authz_extra_t *extra, authz_error_t *err)
{
    //  Field by field: the query is ~2 KiB, mostly buffers set before use
    //  (the user is the caller's, parsed before or after this)
    q->store = store;
    q->model = model;
    q->txn = NULL;
    q->ctx_tuples = NULL;
    q->n_ctx = 0;
    q->context = NULL;
    q->err = err;
    q->path_len = 0;
    q->filter_type = NULL;
    q->filter_type_len = 0;
    q->filter_rel = "";
    q->cache.valid = false;
    q->memo_type = -1;
    q->memo_rw = NULL;
    q->own_budget = (authz_budget_t) { 0 };
    q->budget = extra && extra->budget? extra->budget: &q->own_budget;
    if (!q->budget->max_cost)
        q->budget->max_cost = AUTHZ_BUDGET_COST;
    if (!q->budget->max_tuples)
        q->budget->max_tuples = AUTHZ_BUDGET_TUPLES;
    q->max_depth = q->budget->max_depth > 0 && q->budget->max_depth < AUTHZ_RESOLVE_DEPTH?
                   q->budget->max_depth: AUTHZ_RESOLVE_DEPTH;
    if (extra) {
        if (extra->n_tuples > AUTHZ_MAX_CONTEXTUAL)
            return authz_error_set (err, AUTHZ_EVALIDATION,
                                    "value must contain at most %d contextual tuples",
                                    AUTHZ_MAX_CONTEXTUAL);
        for (size_t i = 0; i < extra->n_tuples; i++) {
            int rc = authz_tuple_validate (model, &extra->tuples [i], AUTHZ_EINVALID_TUPLE, err);
            if (rc)
                return rc;
        }
        if (extra->context && !json_is_object (extra->context))
            return authz_error_set (err, AUTHZ_EVALIDATION, "context must be an object");
        q->ctx_tuples = extra->tuples;
        q->n_ctx = extra->n_tuples;
        q->context = extra->context;
    }
    q->txn = authz_store_read_begin (store);
    if (!q->txn)
        return authz_error_set (err, AUTHZ_EINTERNAL, "cannot read the store");
    /* the store is live in this read's snapshot (a deleted one is gone) */
    return authz_store_live (store, q->txn, err);
}

/*  Spend from the request's budget; see the header. */
int
authz_query_spend (authz_query_t *q, uint64_t cost, uint64_t tuples)
{
    authz_budget_t *b = q->budget;
    if (!b->over) {                     /* once over, nothing more is done */
        b->cost += cost;
        b->tuples += tuples;
        b->over = b->cost > b->max_cost || b->tuples > b->max_tuples;
        if (!b->over && b->stop && ++b->polls % 64 == 0 && b->stop (b->stop_arg))
            b->over = b->stopped = true;
    }
    if (!b->over)
        return 0;
    if (b->stopped)
        return authz_error_set (q->err, AUTHZ_ETOO_COMPLEX, "request stopped: nobody waits for its answer");
    if (b->tuples > b->max_tuples)
        return authz_error_set (q->err, AUTHZ_ETOO_COMPLEX,
                                "request over its budget: more than %llu tuples read",
                                (unsigned long long) b->max_tuples);
    return authz_error_set (q->err, AUTHZ_ETOO_COMPLEX,
                            "request over its budget: condition evaluation cost over %llu",
                            (unsigned long long) b->max_cost);
}

/*  End the read transaction; see the header. */
void
authz_query_end (authz_query_t *q)
{
    authz_store_read_end (q->store, &q->txn);
}

/*  Read a rewrite leaf's tuples; see the header. */
int
authz_query_read_leaf (authz_query_t *q, int type, const char *object,
                       const authz_relation_t *rel, const authz_rw_t *rw,
                       authz_tlist_t *out, const authz_relation_t **read)
{
    const authz_relation_t *r = rw && rw->kind == AUTHZ_RW_TTU?
        authz_model_relation_at (q->model, type, rw->relation): rel;
    authz_tlist_init (out);
    *read = r;
    return authz_query_read (q, type, r->id, object, r->name, out);
}

