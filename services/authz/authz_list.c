/*  authz_list.c — ListObjects, ListUsers and Expand.

    ListObjects finds candidates by walking the rewrites backwards from
    the user (the reverse index) and decides each by Check's walk
    (authz_query_resolve); past the walk's limits it tries every object of
    the type. ListUsers is a port of OpenFGA's listusers expansion
    (pkg/server/commands/listusers). Expand renders one level of the
    userset tree. The query state and the tuple reading are
    authz_query.c.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bus_error.h"
#include "authz_query.h"

/*  Distinct objects of a type, each tuple read spent from the query's
    budget. */
typedef struct {
    authz_query_t *q;
    json_t *set;                /* object -> true */
} s_collect_t;

/*  Collect t's object (scan callback; arg an s_collect_t). */
static int
s_collect_object (const authz_tuple_t *t, void *arg)
{
    s_collect_t *c = arg;
    int rc = authz_query_spend (c->q, 0, 1);
    if (rc)
        return rc;
    return json_object_set_new (c->set, t->object, json_true ())? BUS_ENOMEM: 0;
}

/*  Validate a ListObjects/ListUsers target: type (2021) and relation
    (2022). */
static int
s_target (const authz_model_t *model, const char *type, size_t type_len,
          const char *relation, int *t, int *r, authz_error_t *err)
{
    *t = authz_model_type (model, type, type_len);
    if (*t < 0)
        return authz_error_set (err, AUTHZ_ETYPE_NOT_FOUND, "type '%.*s' not found",
                                (int) type_len, type);
    *r = relation? authz_model_relation (model, *t, relation, strlen (relation)): -1;
    if (*r < 0)
        return authz_error_set (err, AUTHZ_EREL_NOT_FOUND,
                                "relation '%.*s#%s' not found", (int) type_len, type,
                                relation? relation: "");
    return 0;
}

/* --- ListObjects candidates: the rewrites walked backwards ------------------

   A superset of the objects of type T on which the user may have relation
   R, found from the user outwards instead of by trying every object of T:
   for each (type, relation) that R's rewrite reaches, the set of objects
   the user may reach it on, grown from the user's own tuples (found in the
   reverse index) through computed relations, usersets and tuple-to-userset
   hops until nothing new appears. An intersection is followed through its
   first operand only and an exclusion through its base, and conditions are
   not evaluated: each candidate is then decided by Check, so the answer is
   exact, and the walk only has to miss nothing. Past S_REV_MAX_PAIRS
   relations or S_REV_MAX_MEMBERS objects (or on anything it cannot walk)
   the caller tries every object. */

#define S_REV_MAX_PAIRS     256
#define S_REV_MAX_MEMBERS   200000

typedef enum { S_EDGE_COMPUTED, S_EDGE_USERSET, S_EDGE_TTU } s_edge_kind_t;

/*  Membership of pair `from` implies membership of pair `to`: directly
    (computed), through tuples to#rel@<from type>:<m>#<from rel> (userset),
    or through tuples to#rel@<from type>:<m> (tuple-to-userset, rel the
    tupleset). */
typedef struct {
    s_edge_kind_t kind;
    int from, to, rel;
} s_edge_t;

typedef struct {
    int type, rel;
    bool this;              /* the rewrite reads direct tuples */
    json_t *members;        /* object -> true */
} s_pair_t;

/*  The objects given so far (each once), and where to. */
typedef struct {
    const authz_found_t *sink;
    json_t *given;              /* object -> true */
    size_t n;
} s_give_t;

/*  Give object, decided related, unless it was already: 0, or what stops
    the query (the sink's answer, BUS_ETOOBIG at its cap). */
static int
s_give (s_give_t *g, const char *object)
{
    if (json_object_get (g->given, object))
        return 0;
    if (json_object_set_new (g->given, object, json_true ()))
        return BUS_ENOMEM;
    int rc = g->sink->found (object, g->sink->arg);
    if (rc == 0 && g->sink->max && ++g->n >= g->sink->max)
        rc = BUS_ETOOBIG;               /* full: not an error (see below) */
    return rc;
}

typedef struct {
    authz_query_t *q;
    s_pair_t pairs [S_REV_MAX_PAIRS];
    int n_pairs;
    s_edge_t *edges;
    int n_edges, cap_edges;
    char **queue;           /* objects to propagate, with their pair */
    int *queue_pair;
    size_t n_queue, cap_queue;
    size_t n_members;
} s_rev_t;

static int s_rev_pair (s_rev_t *rv, int type, int rel);

static int
s_rev_edge (s_rev_t *rv, s_edge_kind_t kind, int from, int to, int rel)
{
    if (from < 0)
        return from;
    if (rv->n_edges == rv->cap_edges) {
        int cap = rv->cap_edges? rv->cap_edges * 2: 16;
        s_edge_t *e = realloc (rv->edges, (size_t) cap * sizeof *e);
        if (!e)
            return BUS_ENOMEM;
        rv->edges = e;
        rv->cap_edges = cap;
    }
    rv->edges [rv->n_edges++] = (s_edge_t) { kind, from, to, rel };
    return 0;
}

/*  The edges into pair `to` from one node of its rewrite. */
static int
s_rev_walk (s_rev_t *rv, int to, const authz_rw_t *rw)
{
    const authz_model_t *m = rv->q->model;
    int type = rv->pairs [to].type, rel = rv->pairs [to].rel, rc = 0;
    switch (rw->kind) {
        case AUTHZ_RW_THIS: {
            rv->pairs [to].this = true;
            const authz_relation_t *r = authz_model_relation_at (m, type, rel);
            for (int i = 0; rc == 0 && r && i < r->n_allowed; i++)
                if (r->allowed [i].relation >= 0)
                    rc = s_rev_edge (rv, S_EDGE_USERSET, s_rev_pair (rv, r->allowed [i].type,
                                                                   r->allowed [i].relation), to, rel);
            return rc;
        }
        case AUTHZ_RW_COMPUTED:
            return s_rev_edge (rv, S_EDGE_COMPUTED, s_rev_pair (rv, type, rw->relation), to, rel);
        case AUTHZ_RW_TTU: {
            const authz_relation_t *ts = authz_model_relation_at (m, type, rw->relation);
            for (int i = 0; rc == 0 && ts && i < ts->n_allowed; i++) {
                const authz_allowed_t *a = &ts->allowed [i];
                int c = a->relation < 0 && !a->wildcard
                      ? authz_model_relation (m, a->type, rw->computed, strlen (rw->computed)): -1;
                if (c >= 0)
                    rc = s_rev_edge (rv, S_EDGE_TTU, s_rev_pair (rv, a->type, c), to, rw->relation);
            }
            return rc;
        }
        case AUTHZ_RW_UNION:
            for (int i = 0; rc == 0 && i < rw->n_children; i++)
                rc = s_rev_walk (rv, to, rw->children [i]);
            return rc;
        case AUTHZ_RW_INTERSECTION:
        case AUTHZ_RW_DIFFERENCE:       /* a superset: the first operand, the base */
            return rw->n_children > 0? s_rev_walk (rv, to, rw->children [0]): 0;
    }
    return 0;
}

/*  The index of pair (type, rel), collecting it and what reaches it on
    first sight; negative on failure or overflow. */
static int
s_rev_pair (s_rev_t *rv, int type, int rel)
{
    for (int i = 0; i < rv->n_pairs; i++)
        if (rv->pairs [i].type == type && rv->pairs [i].rel == rel)
            return i;
    const authz_relation_t *r = authz_model_relation_at (rv->q->model, type, rel);
    if (!r || !r->rewrite)
        return BUS_EINVAL;
    if (rv->n_pairs == S_REV_MAX_PAIRS)
        return BUS_ETOOBIG;
    int i = rv->n_pairs++;
    rv->pairs [i] = (s_pair_t) { type, rel, false, json_object () };
    if (!rv->pairs [i].members)
        return BUS_ENOMEM;
    int rc = s_rev_walk (rv, i, r->rewrite);
    return rc? rc: i;
}

/*  object joins pair p (once); queued to propagate. */
static int
s_rev_add (s_rev_t *rv, int p, const char *object)
{
    json_t *set = rv->pairs [p].members;
    if (json_object_get (set, object))
        return 0;
    if (++rv->n_members > S_REV_MAX_MEMBERS)
        return BUS_ETOOBIG;
    if (json_object_set_new (set, object, json_true ()))
        return BUS_ENOMEM;
    if (rv->n_queue == rv->cap_queue) {
        size_t cap = rv->cap_queue? rv->cap_queue * 2: 64;
        char **q = realloc (rv->queue, cap * sizeof *q);
        int *qp = q? realloc (rv->queue_pair, cap * sizeof *qp): NULL;
        if (q)
            rv->queue = q;
        if (!q || !qp)
            return BUS_ENOMEM;
        rv->queue_pair = qp;
        rv->cap_queue = cap;
    }
    rv->queue [rv->n_queue] = strdup (object);
    if (!rv->queue [rv->n_queue])
        return BUS_ENOMEM;
    rv->queue_pair [rv->n_queue++] = p;
    return 0;
}

typedef struct {
    s_rev_t *rv;
    int pair;
} s_rev_into_t;

static int
s_rev_found (const authz_tuple_t *t, void *arg)
{
    s_rev_into_t *into = arg;
    int rc = authz_query_spend (into->rv->q, 0, 1);
    return rc? rc: s_rev_add (into->rv, into->pair, t->object);
}

/*  Objects of pair p's type with tuples #rel@user, stored and contextual,
    join pair p. */
static int
s_rev_scan (s_rev_t *rv, int p, int rel, const char *user)
{
    authz_query_t *q = rv->q;
    const authz_type_t *t = authz_model_type_at (q->model, rv->pairs [p].type);
    const authz_relation_t *r = authz_model_relation_at (q->model, rv->pairs [p].type, rel);
    s_rev_into_t into = { rv, p };
    size_t tl = strlen (t->name);
    for (size_t i = 0; i < q->n_ctx; i++) {
        const authz_tuple_t *c = &q->ctx_tuples [i];
        if (strcmp (c->user, user) == 0 && strcmp (c->relation, r->name) == 0
        &&  strncmp (c->object, t->name, tl) == 0 && c->object [tl] == ':') {
            int rc = s_rev_add (rv, p, c->object);
            if (rc)
                return rc;
        }
    }
    return authz_store_scan_objects (q->store, q->txn, user, t->name, r->name, s_rev_found, &into);
}

/*  Decide candidate object of type type by Check (relation rel): given
    when the user has the relation; the first error to *first_err.
    Returns 0 or what stops the query (s_give). */
static int
s_decide (authz_query_t *q, int type, int rel, const char *object, s_give_t *out, int *first_err)
{
    bool cycle = false;
    q->path_len = 0;
    int c = authz_query_resolve (q, type, object, rel, 0, &cycle);
    if (c == 1)
        return s_give (out, object);
    if (c < 0 && !*first_err)
        *first_err = c;
    return 0;
}

/*  Pair `target`'s objects to out: seed every pair reading direct tuples
    with the user's own (and its type's wildcard's), then propagate,
    deciding each candidate of target as soon as it is queued, until the
    sink stops it or nothing new appears. A stop is *stop_rc (the walk itself
    succeeded); the walk's own failure is returned. */
static int
s_rev_run (s_rev_t *rv, int target, s_give_t *out, int *first_err, int *stop_rc)
{
    authz_query_t *q = rv->q;
    const authz_user_t *u = &q->user;
    char wildcard [AUTHZ_QUERY_OBJ_MAX + 2];
    const authz_type_t *ut = authz_model_type_at (q->model, u->type);
    snprintf (wildcard, sizeof wildcard, "%s:*", ut->name);
    int rc = 0;
    for (int p = 0; rc == 0 && p < rv->n_pairs; p++) {
        if (!rv->pairs [p].this)
            continue;
        rc = s_rev_scan (rv, p, rv->pairs [p].rel, u->text);
        if (rc == 0 && u->relation < 0 && !u->wildcard)
            rc = s_rev_scan (rv, p, rv->pairs [p].rel, wildcard);
    }
    /* a userset user type:id#rel is in its own set */
    for (int p = 0; rc == 0 && u->relation >= 0 && p < rv->n_pairs; p++)
        if (rv->pairs [p].type == u->type && rv->pairs [p].rel == u->relation)
            rc = s_rev_add (rv, p, u->object);
    //  Target's candidates are decided as soon as they are queued, before
    //  the walk goes further (a streamed answer starts with the first
    //  folder's documents, not after every folder was walked)
    size_t decided = 0;
    for (size_t next = 0; rc == 0 && next < rv->n_queue; next++) {
        for (; decided < rv->n_queue && !*stop_rc; decided++)
            if (rv->queue_pair [decided] == target)
                *stop_rc = s_decide (q, rv->pairs [target].type, rv->pairs [target].rel, rv->queue [decided],
                                     out, first_err);
        if (*stop_rc)
            break;
        int from = rv->queue_pair [next];
        const char *m = rv->queue [next];
        const authz_type_t *ft = authz_model_type_at (q->model, rv->pairs [from].type);
        for (int e = 0; rc == 0 && e < rv->n_edges; e++) {
            const s_edge_t *edge = &rv->edges [e];
            if (edge->from != from)
                continue;
            if (edge->kind == S_EDGE_COMPUTED)
                rc = s_rev_add (rv, edge->to, m);
            else {
                char user [2 * AUTHZ_QUERY_OBJ_MAX + 2];
                const authz_relation_t *fr = authz_model_relation_at (q->model, ft->id,
                                                                      rv->pairs [from].rel);
                if (edge->kind == S_EDGE_USERSET)
                    snprintf (user, sizeof user, "%s#%s", m, fr->name);
                else
                    snprintf (user, sizeof user, "%s", m);
                rc = s_rev_scan (rv, edge->to, edge->rel, user);
            }
        }
    }
    return rc;
}

static void
s_rev_free (s_rev_t *rv)
{
    for (int i = 0; i < rv->n_pairs; i++)
        json_decref (rv->pairs [i].members);
    for (size_t i = 0; i < rv->n_queue; i++)
        free (rv->queue [i]);
    free (rv->queue);
    free (rv->queue_pair);
    free (rv->edges);
}

/*  ListObjects to a sink; see the header. */
int
authz_list_objects_each (authz_store_t *store, const authz_model_t *model, const char *type,
                         const char *relation, const char *user, const authz_extra_t *extra,
                         const authz_found_t *sink, authz_error_t *err)
{
    authz_query_t q;
    int t, r;
    int rc = s_target (model, type? type: "", type? strlen (type): 0, relation, &t, &r, err);
    authz_user_t u;
    if (rc == 0)
        rc = authz_user_parse (model, user, &u, err);
    if (rc)
        return rc;
    rc = authz_query_begin (&q, store, model, extra, err);
    q.user = u;
    json_t *set = NULL;
    s_give_t out = { .sink = sink, .given = json_object () };
    int first_err = 0, stop_rc = 0;
    if (rc == 0 && !out.given)
        rc = BUS_ENOMEM;
    //  From the user outwards, or (past the walk's limits) every object of
    //  the type; what the walk gave before it gave up is not given again
    s_rev_t rv = { .q = &q };
    bool walked = false;
    if (rc == 0) {
        int target = s_rev_pair (&rv, t, r);
        int wrc = target < 0? target: s_rev_run (&rv, target, &out, &first_err, &stop_rc);
        walked = wrc == 0 || stop_rc;
        if (!stop_rc && (wrc == BUS_ENOMEM || q.budget->over))
            rc = q.budget->over? authz_query_spend (&q, 0, 0): wrc;
        else
        if (!walked)                /* the walk gave up: every object */
            first_err = 0;
    }
    s_rev_free (&rv);
    if (rc == 0 && !walked) {
        set = json_object ();
        s_collect_t collect = { &q, set };
        size_t tl = strlen (type);
        for (size_t i = 0; set && rc == 0 && i < q.n_ctx; i++)
            if (strncmp (q.ctx_tuples [i].object, type, tl) == 0
            &&  q.ctx_tuples [i].object [tl] == ':')
                rc = s_collect_object (&q.ctx_tuples [i], &collect);
        if (rc == 0)
            rc = set? authz_store_scan_type (store, q.txn, type, s_collect_object, &collect): BUS_ENOMEM;
    }
    const char *obj;
    json_t *v;
    json_object_foreach (set, obj, v) {
        if (rc || stop_rc)
            break;
        if (!json_object_get (out.given, obj))
            stop_rc = s_decide (&q, t, r, obj, &out, &first_err);
    }
    if (stop_rc == BUS_ETOOBIG)         /* the sink's cap: a full answer */
        stop_rc = 0;
    else
    if (stop_rc && !q.budget->over)     /* the sink stopped it */
        rc = stop_rc;
    if (rc == 0 && first_err)
        rc = first_err;
    if (q.budget->over)                 /* whatever was found meanwhile */
        rc = authz_query_spend (&q, 0, 0);
    authz_query_end (&q);
    json_decref (set);
    json_decref (out.given);
    return rc;
}

/*  Append object to a JSON array (the sink of authz_list_objects). */
static int
s_append (const char *object, void *arg)
{
    return json_array_append_new (arg, json_string (object))? BUS_ENOMEM: 0;
}

/*  ListObjects; see the header. */
int
authz_list_objects (authz_store_t *store, const authz_model_t *model, const char *type,
                    const char *relation, const char *user, const authz_extra_t *extra,
                    json_t **objects, authz_error_t *err)
{
    *objects = NULL;
    json_t *out = json_array ();
    if (!out)
        return BUS_ENOMEM;
    authz_found_t sink = { s_append, out, AUTHZ_MAX_LIST_RESULTS };
    int rc = authz_list_objects_each (store, model, type, relation, user, extra, &sink, err);
    if (rc == 0)
        *objects = out;
    else
        json_decref (out);
    return rc;
}

/*  ListUsers: a found user and whether it is related (OpenFGA's
    relationshipStatus). */
typedef struct {
    char *user;
    bool has;
} s_found_t;

typedef struct {
    s_found_t *v;
    size_t n, cap;
} s_flist_t;

/*  Append a found user (copied). */
static int
s_flist_add (s_flist_t *l, const char *user, size_t len, bool has)
{
    if (l->n == l->cap) {
        size_t cap = l->cap? l->cap * 2: 16;
        s_found_t *v = realloc (l->v, cap * sizeof *v);
        if (!v)
            return BUS_ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    l->v [l->n].user = strndup (user, len);
    if (!l->v [l->n].user)
        return BUS_ENOMEM;
    l->v [l->n++].has = has;
    return 0;
}

/*  Free a found-user list. */
static void
s_flist_free (s_flist_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free (l->v [i].user);
    free (l->v);
    memset (l, 0, sizeof *l);
}

/*  Index of user in l (the last one, as a Go map keeps the last write),
    or -1. */
static ssize_t
s_flist_find (const s_flist_t *l, const char *user)
{
    for (size_t i = l->n; i-- > 0;)
        if (strcmp (l->v [i].user, user) == 0)
            return (ssize_t) i;
    return -1;
}

/*  Collapse l into a map: keep each user's last entry, first-seen order. */
static void
s_flist_dedupe (s_flist_t *l)
{
    size_t keep = 0;
    for (size_t i = 0; i < l->n; i++) {
        ssize_t j = -1;
        for (size_t k = 0; k < keep; k++)
            if (strcmp (l->v [k].user, l->v [i].user) == 0) {
                j = (ssize_t) k;
                break;
            }
        if (j >= 0) {
            l->v [j].has = l->v [i].has;
            free (l->v [i].user);
        }
        else
            l->v [keep++] = l->v [i];
    }
    l->n = keep;
}

static int s_lu_expand (authz_query_t *q, int type, const char *object, int rel, int depth,
                        s_flist_t *out, bool *cycle);

/*  ListUsers over a rewrite node (OpenFGA's expandRewrite). */
static int
s_lu_rewrite (authz_query_t *q, int type, const char *object, const authz_relation_t *rel,
              const authz_rw_t *rw, int depth, s_flist_t *out, bool *cycle)
{
    int rc = 0;
    switch (rw->kind) {
        case AUTHZ_RW_THIS:
        case AUTHZ_RW_TTU: {
            bool ttu = rw->kind == AUTHZ_RW_TTU;
            authz_tlist_t l;
            const authz_relation_t *ts;
            rc = authz_query_read_leaf (q, type, object, rel, rw, &l, &ts);
            int err = 0;
            for (size_t i = 0; rc == 0 && i < l.n; i++) {
                int c = authz_query_condition (q, &l.v [i]);
                if (c < 0) {
                    err = c;
                    break;
                }
                if (c == 0)
                    continue;
                char obj [AUTHZ_QUERY_OBJ_MAX];
                int ut;
                const char *urel;
                if (!authz_query_split_user (q, l.v [i].user, obj, &ut, &urel))
                    continue;
                const char *tname = l.v [i].user;
                size_t tlen = (size_t) (strchr (tname, ':') - tname);
                if (ttu) {
                    int cr = authz_query_ttu_computed (q, rw, ut);
                    if (cr >= 0 && !urel) {
                        bool c2 = false;
                        rc = s_lu_expand (q, ut, obj, cr, depth, out, &c2);
                    }
                }
                else
                if (!urel) {
                    if (tlen == q->filter_type_len
                    &&  strncmp (tname, q->filter_type, tlen) == 0)
                        rc = s_flist_add (out, obj, strlen (obj), true);
                }
                else {
                    int ur = authz_model_relation (q->model, ut, urel, strlen (urel));
                    bool c2 = false;
                    if (ur >= 0)
                        rc = s_lu_expand (q, ut, obj, ur, depth, out, &c2);
                    if (c2)
                        *cycle = true;
                }
            }
            authz_tlist_free (&l);
            return rc? rc: err;
        }
        case AUTHZ_RW_COMPUTED:
            return s_lu_expand (q, type, object, rw->relation, depth, out, cycle);
        case AUTHZ_RW_UNION:
        case AUTHZ_RW_INTERSECTION: {
            bool inter = rw->kind == AUTHZ_RW_INTERSECTION;
            char wildcard [AUTHZ_QUERY_OBJ_MAX + 2];
            snprintf (wildcard, sizeof wildcard, "%.*s:*", (int) q->filter_type_len,
                      q->filter_type);
            s_flist_t all = { 0 };          /* users with per-child counts */
            s_flist_t excluded = { 0 };
            int *counts = NULL;
            size_t wild_children = 0;
            int err = 0;
            for (int i = 0; rc == 0 && i < rw->n_children; i++) {
                s_flist_t child = { 0 };
                bool c2 = false;
                int r = s_lu_rewrite (q, type, object, rel, rw->children [i], depth, &child, &c2);
                if (r < 0 && r != BUS_ENOMEM)
                    err = r;
                else
                    rc = r;
                //  Keep only related users, once each; remember the users
                //  an operand explicitly excluded (a wildcard minus them)
                size_t keep = 0;
                for (size_t k = 0; k < child.n; k++) {
                    if (!child.v [k].has && inter && rc == 0)
                        rc = s_flist_add (&excluded, child.v [k].user,
                                          strlen (child.v [k].user), false);
                    if (child.v [k].has)
                        child.v [keep++] = child.v [k];
                    else
                        free (child.v [k].user);
                }
                child.n = keep;
                s_flist_dedupe (&child);
                bool has_wild = s_flist_find (&child, wildcard) >= 0;
                if (has_wild)
                    wild_children++;
                for (size_t k = 0; rc == 0 && k < child.n; k++) {
                    ssize_t j = s_flist_find (&all, child.v [k].user);
                    if (j < 0) {
                        rc = s_flist_add (&all, child.v [k].user, strlen (child.v [k].user), true);
                        int *nc = realloc (counts, all.cap * sizeof *counts);
                        if (!nc)
                            rc = BUS_ENOMEM;
                        else {
                            counts = nc;
                            j = (ssize_t) all.n - 1;
                            counts [j] = 0;
                        }
                    }
                    if (rc == 0)
                        counts [j] += (inter && has_wild)? 0: 1;
                }
                s_flist_free (&child);
            }
            for (size_t k = 0; rc == 0 && k < all.n; k++)
                if (!inter || ((size_t) counts [k] + wild_children == (size_t) rw->n_children
                               && s_flist_find (&excluded, all.v [k].user) < 0))
                    rc = s_flist_add (out, all.v [k].user, strlen (all.v [k].user), true);
            free (counts);
            s_flist_free (&excluded);
            s_flist_free (&all);
            return rc? rc: err;
        }
        case AUTHZ_RW_DIFFERENCE: {
            s_flist_t base = { 0 }, sub = { 0 };
            bool bc = false, sc = false;
            int be = s_lu_rewrite (q, type, object, rel, rw->children [0], depth, &base, &bc);
            int se = s_lu_rewrite (q, type, object, rel, rw->children [1], depth, &sub, &sc);
            s_flist_dedupe (&base);
            s_flist_dedupe (&sub);
            char wildcard [AUTHZ_QUERY_OBJ_MAX + 2];
            snprintf (wildcard, sizeof wildcard, "%.*s:*", (int) q->filter_type_len,
                      q->filter_type);
            if (sc)
                goto diff_done;
            bool base_wild = s_flist_find (&base, wildcard) >= 0;
            ssize_t sw = s_flist_find (&sub, wildcard);
            for (size_t i = 0; rc == 0 && i < base.n; i++) {
                const char *key = base.v [i].user;
                ssize_t si = s_flist_find (&sub, key);
                if (base_wild) {
                    if (si < 0 && sw < 0)
                        rc = s_flist_add (out, key, strlen (key), true);
                    for (size_t k = 0; rc == 0 && k < sub.n; k++) {
                        const char *sk = sub.v [k].user;
                        size_t skl = strlen (sk);
                        if (skl >= 2 && strcmp (sk + skl - 2, ":*") == 0) {
                            if (si < 0)
                                rc = s_flist_add (out, key, strlen (key), false);
                            continue;
                        }
                        rc = s_flist_add (out, sk, skl, !sub.v [k].has);
                    }
                }
                else
                if (sw >= 0 || si >= 0) {
                    //  A missing subtracted entry reads as Go's zero value:
                    //  HasRelationship
                    bool sub_has = si >= 0? sub.v [si].has: true;
                    rc = s_flist_add (out, key, strlen (key), !sub_has);
                }
                else
                    rc = s_flist_add (out, key, strlen (key), base.v [i].has);
            }
        diff_done:
            s_flist_free (&base);
            s_flist_free (&sub);
            if (rc)
                return rc;
            return be? be: se;
        }
    }
    return 0;
}

/*  OpenFGA's listusers expand: depth, cycle, the filter's own userset,
    then the relation's rewrite. */
static int
s_lu_expand (authz_query_t *q, int type, const char *object, int rel, int depth,
             s_flist_t *out, bool *cycle)
{
    if (q->budget->over)
        return authz_query_spend (q, 0, 0);
    if (depth >= q->max_depth)
        return authz_error_set (q->err, AUTHZ_ETOO_COMPLEX,
                                "Authorization Model resolution required too many rewrite rules to be resolved. Try simplifying your authorization model.");
    for (int i = 0; i < q->path_len; i++)
        if (q->path [i].type == type && q->path [i].relation == rel
        &&  strcmp (q->path [i].object, object) == 0) {
            *cycle = true;
            return 0;
        }
    const authz_type_t *t = authz_model_type_at (q->model, type);
    const authz_relation_t *r = authz_model_relation_at (q->model, type, rel);
    if (!r)
        return 0;
    if (strlen (t->name) == q->filter_type_len
    &&  strncmp (t->name, q->filter_type, q->filter_type_len) == 0
    &&  strcmp (r->name, q->filter_rel) == 0) {
        char us [2 * AUTHZ_QUERY_OBJ_MAX];
        int n = snprintf (us, sizeof us, "%s#%s", object, r->name);
        int rc = s_flist_add (out, us, (size_t) n, true);
        if (rc)
            return rc;
    }
    q->path [q->path_len++] = (authz_visit_t) { object, type, rel };
    int rc = s_lu_rewrite (q, type, object, r, r->rewrite, depth + 1, out, cycle);
    q->path_len--;
    return rc;
}

/*  ListUsers; see the header. */
int
authz_list_users (authz_store_t *store, const authz_model_t *model, const char *object,
                  const char *relation, const char *filter, const authz_extra_t *extra,
                  json_t **users, authz_error_t *err)
{
    *users = NULL;
    const char *colon = object? strchr (object, ':'): NULL;
    if (!colon || !colon [1] || !filter || strlen (object) >= AUTHZ_QUERY_OBJ_MAX)
        return authz_error_set (err, AUTHZ_EVALIDATION, "invalid object or user filter");
    int t, r, ft, fr;
    int rc = s_target (model, object, (size_t) (colon - object), relation, &t, &r, err);
    const char *hash = strchr (filter, '#');
    size_t ftl = hash? (size_t) (hash - filter): strlen (filter);
    if (rc == 0) {
        ft = authz_model_type (model, filter, ftl);
        if (ft < 0)
            rc = authz_error_set (err, AUTHZ_ETYPE_NOT_FOUND, "type '%.*s' not found",
                                  (int) ftl, filter);
        else
        if (hash && authz_model_relation (model, ft, hash + 1, strlen (hash + 1)) < 0)
            rc = authz_error_set (err, AUTHZ_EREL_NOT_FOUND, "relation '%s' not found",
                                  filter);
        (void) fr;
    }
    if (rc)
        return rc;
    authz_query_t q;
    rc = authz_query_begin (&q, store, model, extra, err);
    q.filter_type = filter;
    q.filter_type_len = ftl;
    q.filter_rel = hash? hash + 1: "";
    s_flist_t found = { 0 };
    bool cycle = false;
    if (rc == 0)
        rc = s_lu_expand (&q, t, object, r, 0, &found, &cycle);
    if (q.budget->over)
        rc = authz_query_spend (&q, 0, 0);
    authz_query_end (&q);
    json_t *out = json_array ();
    if (rc == 0 && out) {
        s_flist_dedupe (&found);
        for (size_t i = 0; i < found.n && json_array_size (out) < AUTHZ_MAX_LIST_RESULTS; i++)
            if (found.v [i].has)
                json_array_append_new (out, json_string (found.v [i].user));
        *users = out;
        out = NULL;
    }
    json_decref (out);
    s_flist_free (&found);
    return rc;
}

/*  Expand one rewrite node of object#relation into OpenFGA's tree JSON. */
static json_t *
s_expand_node (authz_query_t *q, int type, const char *object, const authz_relation_t *rel,
               const authz_rw_t *rw, int *rc)
{
    char name [2 * AUTHZ_QUERY_OBJ_MAX];
    snprintf (name, sizeof name, "%s#%s", object, rel->name);
    json_t *node = json_pack ("{ss}", "name", name);
    if (!node) {
        *rc = BUS_ENOMEM;
        return NULL;
    }
    switch (rw->kind) {
        case AUTHZ_RW_THIS:
        case AUTHZ_RW_TTU: {
            bool ttu = rw->kind == AUTHZ_RW_TTU;
            authz_tlist_t l;
            const authz_relation_t *ts;
            *rc = authz_query_read_leaf (q, type, object, rel, rw, &l, &ts);
            json_t *list = json_array ();
            for (size_t i = 0; *rc == 0 && i < l.n; i++) {
                if (!ttu) {
                    json_array_append_new (list, json_string (l.v [i].user));
                    continue;
                }
                char obj [AUTHZ_QUERY_OBJ_MAX];
                int ut;
                const char *urel;
                if (!authz_query_split_user (q, l.v [i].user, obj, &ut, &urel) || urel
                ||  authz_query_ttu_computed (q, rw, ut) < 0)
                    continue;
                char us [2 * AUTHZ_QUERY_OBJ_MAX];
                snprintf (us, sizeof us, "%s#%s", obj, rw->computed);
                json_array_append_new (list, json_pack ("{ss}", "userset", us));
            }
            authz_tlist_free (&l);
            if (ttu) {
                char tsname [2 * AUTHZ_QUERY_OBJ_MAX];
                snprintf (tsname, sizeof tsname, "%s#%s", object, ts->name);
                json_object_set_new (node, "leaf", json_pack ("{s{sssO}}", "tupleToUserset",
                                     "tupleset", tsname, "computed", list));
            }
            else
                json_object_set_new (node, "leaf", json_pack ("{s{sO}}", "users", "users", list));
            json_decref (list);
            break;
        }
        case AUTHZ_RW_COMPUTED: {
            const authz_relation_t *cr = authz_model_relation_at (q->model, type, rw->relation);
            char us [2 * AUTHZ_QUERY_OBJ_MAX];
            snprintf (us, sizeof us, "%s#%s", object, cr->name);
            json_object_set_new (node, "leaf", json_pack ("{s{ss}}", "computed", "userset", us));
            break;
        }
        case AUTHZ_RW_UNION:
        case AUTHZ_RW_INTERSECTION: {
            json_t *nodes = json_array ();
            for (int i = 0; *rc == 0 && i < rw->n_children; i++)
                json_array_append_new (nodes, s_expand_node (q, type, object, rel,
                                                             rw->children [i], rc));
            json_object_set_new (node, rw->kind == AUTHZ_RW_UNION? "union": "intersection",
                                 json_pack ("{so}", "nodes", nodes));
            break;
        }
        case AUTHZ_RW_DIFFERENCE: {
            json_t *base = s_expand_node (q, type, object, rel, rw->children [0], rc);
            json_t *sub = *rc? NULL: s_expand_node (q, type, object, rel, rw->children [1], rc);
            json_object_set_new (node, "difference",
                                 json_pack ("{s:o*, s:o*}", "base", base, "subtract", sub));
            break;
        }
    }
    return node;
}

/*  Expand; see the header. */
int
authz_expand (authz_store_t *store, const authz_model_t *model, const char *object,
              const char *relation, const authz_extra_t *extra, json_t **tree,
              authz_error_t *err)
{
    *tree = NULL;
    const char *colon = object? strchr (object, ':'): NULL;
    if (!colon || !colon [1] || strlen (object) >= AUTHZ_QUERY_OBJ_MAX)
        return authz_error_set (err, AUTHZ_EVALIDATION, "invalid 'object' field format");
    int t, r;
    int rc = s_target (model, object, (size_t) (colon - object), relation, &t, &r, err);
    if (rc)
        return -AUTHZ_EVALIDATION;
    authz_query_t q;
    rc = authz_query_begin (&q, store, model, extra, err);
    if (rc == 0) {
        const authz_relation_t *rel = authz_model_relation_at (model, t, r);
        json_t *root = s_expand_node (&q, t, object, rel, rel->rewrite, &rc);
        if (rc == 0)
            *tree = json_pack ("{so}", "root", root);
        else
            json_decref (root);
    }
    authz_query_end (&q);
    return rc;
}
