/*  authz_check.c — Check and BatchCheck.

    Check walks the rewrite tree depth first with the semantics of
    OpenFGA's LocalChecker (internal/graph): union/intersection/exclusion
    combine children, a computed userset, a tuple-to-userset hop and a
    userset tuple each "dispatch" (one level deeper; 25 levels is error
    2002), a path that revisits object#relation is a cycle (false,
    remembered so exclusion can treat it as OpenFGA does). ListObjects
    (authz_list.c) decides its candidates with the same walk
    (authz_query_resolve). The query state and the tuple reading are
    authz_query.c.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bus_error.h"
#include "authz_query.h"

/*  Combine one child result into an OR: returns 1 to stop (true). */
static int
s_or (int r, int *err)
{
    if (r == 1)
        return 1;
    if (r < 0)
        *err = r;
    return 0;
}

/*  Dispatch through tuple t, whose user is obj (of type ut) with relation
    r: its condition, then obj#r one level deeper. Returns 1 to stop
    (true); an error goes to *err and the walk goes on. */
static int
s_through (authz_query_t *q, const authz_tuple_t *t, int ut, const char *obj, int r,
           int depth, bool *cycle, int *err)
{
    int c = authz_query_condition (q, t);
    if (c < 0)
        *err = c;
    if (c != 1)
        return 0;
    return s_or (authz_query_resolve (q, ut, obj, r, depth + 1, cycle), err);
}

/*  Direct relation (this): the user's own tuple, the wildcard tuple, and
    every allowed userset tuple dispatched. */
static int
s_direct (authz_query_t *q, int type, const char *object, const authz_relation_t *rel,
          int depth, bool *cycle)
{
    const authz_user_t *u = &q->user;
    int err = 0;
    bool related = false, public = false, usersets = false;
    for (int i = 0; i < rel->n_allowed; i++) {
        const authz_allowed_t *a = &rel->allowed [i];
        if (a->type == u->type && a->relation == u->relation)
            related = true;
        if (a->type == u->type && a->wildcard && u->relation < 0)
            public = true;
        if (a->relation >= 0)
            usersets = true;
    }
    if (related && s_or (authz_query_read_exact (q, type, rel->id, object, rel->name, u->text), &err))
        return 1;
    if (public && !u->wildcard) {
        char wild [AUTHZ_QUERY_OBJ_MAX + 2];
        const authz_type_t *ut = authz_model_type_at (q->model, u->type);
        snprintf (wild, sizeof wild, "%s:*", ut->name);
        if (s_or (authz_query_read_exact (q, type, rel->id, object, rel->name, wild), &err))
            return 1;
    }
    if (usersets) {
        authz_tlist_t l;
        const authz_relation_t *read;
        int rc = authz_query_read_leaf (q, type, object, rel, NULL, &l, &read);
        if (rc)
            err = rc;
        for (size_t i = 0; rc == 0 && i < l.n; i++) {
            char obj [AUTHZ_QUERY_OBJ_MAX];
            int ut;
            const char *urel;
            if (!authz_query_split_user (q, l.v [i].user, obj, &ut, &urel) || !urel)
                continue;
            int ur = authz_model_relation (q->model, ut, urel, strlen (urel));
            if (ur < 0)
                continue;
            if (s_through (q, &l.v [i], ut, obj, ur, depth, cycle, &err)) {
                authz_tlist_free (&l);
                return 1;
            }
        }
        authz_tlist_free (&l);
    }
    return err? err: 0;
}

/*  Tuple to userset: each user of object#tupleset, then the computed
    relation on it. */
static int
s_ttu (authz_query_t *q, int type, const char *object, const authz_rw_t *rw, int depth,
       bool *cycle)
{
    authz_tlist_t l;
    const authz_relation_t *ts;
    int err = authz_query_read_leaf (q, type, object, NULL, rw, &l, &ts);
    int result = 0;
    //  A condition error does not stop the walk: another tupleset user
    //  may still grant the relation (OpenFGA joins the errors)
    for (size_t i = 0; i < l.n && !result; i++) {
        char obj [AUTHZ_QUERY_OBJ_MAX];
        int ut;
        const char *urel;
        if (!authz_query_split_user (q, l.v [i].user, obj, &ut, &urel) || urel)
            continue;
        int cr = authz_query_ttu_computed (q, rw, ut);
        if (cr < 0)
            continue;
        result = s_through (q, &l.v [i], ut, obj, cr, depth, cycle, &err);
    }
    authz_tlist_free (&l);
    if (result)
        return 1;
    return err;
}

/*  Evaluate a rewrite node for object (of type). */
static int
s_rewrite (authz_query_t *q, int type, const char *object, const authz_relation_t *rel,
           const authz_rw_t *rw, int depth, bool *cycle)
{
    int err = 0;
    switch (rw->kind) {
        case AUTHZ_RW_THIS:
            return s_direct (q, type, object, rel, depth, cycle);
        case AUTHZ_RW_COMPUTED:
            return authz_query_resolve (q, type, object, rw->relation, depth + 1, cycle);
        case AUTHZ_RW_TTU:
            return s_ttu (q, type, object, rw, depth, cycle);
        case AUTHZ_RW_UNION:
            for (int i = 0; i < rw->n_children; i++)
                if (s_or (s_rewrite (q, type, object, rel, rw->children [i], depth, cycle), &err))
                    return 1;
            return err;
        case AUTHZ_RW_INTERSECTION: {
            bool any_cycle = false;
            for (int i = 0; i < rw->n_children; i++) {
                bool c = false;
                int r = s_rewrite (q, type, object, rel, rw->children [i], depth, &c);
                if (r == 0) {
                    *cycle = *cycle || c;
                    return 0;
                }
                if (r < 0)
                    err = r;
                any_cycle = any_cycle || c;
            }
            (void) any_cycle;
            return err? err: 1;
        }
        case AUTHZ_RW_DIFFERENCE: {
            bool bc = false, sc = false;
            int b = s_rewrite (q, type, object, rel, rw->children [0], depth, &bc);
            if (b == 0) {
                *cycle = *cycle || bc;
                return 0;
            }
            int s = s_rewrite (q, type, object, rel, rw->children [1], depth, &sc);
            if (s == 1)
                return 0;
            if (s == 0 && sc) {
                *cycle = true;
                return 0;
            }
            if (b < 0)
                return b;
            if (s < 0)
                return s;
            return 1;
        }
    }
    return 0;
}

/*  Resolve object#rel for the query's user ("ResolveCheck"). Returns 1,
    0, or a negative error; sets *cycle when a cycle decided a false. */
int
authz_query_resolve (authz_query_t *q, int type, const char *object, int rel, int depth, bool *cycle)
{
    if (q->budget->over)
        return authz_query_spend (q, 0, 0);
    if (depth >= q->max_depth)
        return authz_error_set (q->err, AUTHZ_ETOO_COMPLEX,
                                "Authorization Model resolution required too many rewrite rules to be resolved. Try simplifying your authorization model.");
    const authz_user_t *u = &q->user;
    if (u->relation == rel && u->type == type && strcmp (u->object, object) == 0)
        return 1;
    for (int i = 0; i < q->path_len; i++)
        if (q->path [i].type == type && q->path [i].relation == rel
        &&  strcmp (q->path [i].object, object) == 0) {
            *cycle = true;
            return 0;
        }
    const authz_relation_t *r = authz_model_relation_at (q->model, type, rel);
    if (!r)
        return 0;
    q->path [q->path_len++] = (authz_visit_t) { object, type, rel };
    int rc = s_rewrite (q, type, object, r, r->rewrite, depth, cycle);
    q->path_len--;
    return rc;
}

/*  Check; see the header. */
int
authz_check (authz_store_t *store, const authz_model_t *model, const char *object,
             const char *relation, const char *user, const authz_extra_t *extra,
             bool *allowed, authz_error_t *err)
{
    *allowed = false;
    authz_query_t q;
    if (!object || !relation || !user)
        return authz_error_set (err, AUTHZ_EVALIDATION, "object, relation and user are required");
    int type = authz_query_object_type (model, object);
    const char *colon = strchr (object, ':');
    if (type < 0 || !colon || !colon [1] || strlen (object) >= AUTHZ_QUERY_OBJ_MAX)
        return authz_error_set (err, AUTHZ_EVALIDATION, "type '%.*s' not found",
                                colon? (int) (colon - object): 0, object);
    int rel = authz_model_relation (model, type, relation, strlen (relation));
    if (rel < 0)
        return authz_error_set (err, AUTHZ_EVALIDATION, "relation '%.*s#%s' not found",
                                (int) (colon - object), object, relation);
    int rc = authz_user_parse (model, user, &q.user, err);
    if (rc)
        return rc;
    rc = authz_query_begin (&q, store, model, extra, err);
    if (rc == 0) {
        bool cycle = false;
        rc = authz_query_resolve (&q, type, object, rel, 0, &cycle);
        if (q.budget->over)             /* whatever was found meanwhile */
            rc = authz_query_spend (&q, 0, 0);
        if (rc >= 0) {
            *allowed = rc == 1;
            rc = 0;
        }
    }
    authz_query_end (&q);
    return rc;
}

/*  BatchCheck; see the header. */
int
authz_batch_check (authz_store_t *store, const authz_model_t *model, json_t *checks,
                   authz_budget_t *budget, json_t **result, authz_error_t *err)
{
    *result = NULL;
    authz_budget_t own = { 0 };
    if (!budget)
        budget = &own;
    size_t n = json_array_size (checks);
    if (!json_is_array (checks) || n == 0)
        return authz_error_set (err, AUTHZ_EVALIDATION, "checks must be a non-empty array");
    if (n > AUTHZ_MAX_BATCH)
        return authz_error_set (err, AUTHZ_EVALIDATION,
                                "batchCheck received %zu checks, the maximum allowed is %d",
                                n, AUTHZ_MAX_BATCH);
    json_t *out = json_object ();
    if (!out)
        return BUS_ENOMEM;
    int rc = 0;
    size_t i;
    json_t *item;
    json_array_foreach (checks, i, item) {
        const char *cid = json_string_value (json_object_get (item, "correlation_id"));
        if (!cid || !*cid || strlen (cid) > 36 || json_object_get (out, cid)) {
            rc = authz_error_set (err, AUTHZ_EVALIDATION,
                                  "correlation_id missing, too long or duplicated: '%s'",
                                  cid? cid: "");
            break;
        }
        json_t *ct = json_object_get (item, "contextual_tuples");
        if (json_is_object (ct))
            ct = json_object_get (ct, "tuple_keys");
        authz_tuple_t ctx [AUTHZ_MAX_CONTEXTUAL];
        size_t nc = 0;
        authz_error_t e = { 0 };
        int crc = json_array_size (ct) > AUTHZ_MAX_CONTEXTUAL?
            authz_error_set (&e, AUTHZ_EVALIDATION, "too many contextual tuples"): 0;
        for (size_t k = 0; crc == 0 && k < json_array_size (ct); k++)
            if ((crc = authz_tuple_from_json (&ctx [nc], json_array_get (ct, k), &e)) == 0)
                nc++;
        json_t *tk = json_object_get (item, "tuple_key");
        bool allowed = false;
        authz_extra_t extra = { ctx, nc, json_object_get (item, "context"), budget };
        if (crc == 0)
            crc = authz_check (store, model, json_string_value (json_object_get (tk, "object")),
                               json_string_value (json_object_get (tk, "relation")),
                               json_string_value (json_object_get (tk, "user")),
                               &extra, &allowed, &e);
        if (budget->over) {             /* the request's budget: all of it fails */
            rc = authz_error_set (err, AUTHZ_ETOO_COMPLEX, "%s", e.message);
            break;
        }
        json_t *res = crc? json_pack ("{s{siss}}", "error", "code", e.code? e.code: -crc,
                                      "message", e.message)
                         : json_pack ("{sb}", "allowed", allowed);
        json_object_set_new (out, cid, res);
    }
    if (rc)
        json_decref (out);
    else
        *result = out;
    return rc;
}
