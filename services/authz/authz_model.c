/*  authz_model.c — compile OpenFGA's model JSON into an interned typesystem.

    Names are interned with small open-addressing hash tables (s_dict), so
    every lookup on the check path is O(1). The rewrite trees and allowed
    type lists are plain arrays owned by the model.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bus_error.h"
#include "authz_model.h"

/*  An interned name -> id table (power-of-two capacity, linear probing). */
typedef struct {
    const char **keys;
    size_t *lens;
    int *vals;
    size_t cap;
    size_t n;
} s_dict_t;

struct authz_model_t {
    char id [AUTHZ_MODEL_ID_LEN + 1];
    json_t *json;
    int n_types;
    authz_type_t *types;
    s_dict_t *rel_dicts;            /* one per type */
    s_dict_t type_dict;
    int n_conditions;
    authz_condition_t *conditions;
    s_dict_t cond_dict;
};

/*  FNV-1a over len bytes. */
static uint64_t
s_hash (const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char) s [i];
        h *= 1099511628211ULL;
    }
    return h;
}

/*  Size a dict for n names; returns 0 or BUS_ENOMEM. */
static int
s_dict_init (s_dict_t *d, size_t n)
{
    d->cap = 8;
    while (d->cap < n * 2 + 2)
        d->cap *= 2;
    d->n = 0;
    d->keys = calloc (d->cap, sizeof *d->keys);
    d->lens = calloc (d->cap, sizeof *d->lens);
    d->vals = calloc (d->cap, sizeof *d->vals);
    return (d->keys && d->lens && d->vals)? 0: BUS_ENOMEM;
}

/*  Free a dict's arrays (the keys are borrowed). */
static void
s_dict_free (s_dict_t *d)
{
    free (d->keys);
    free (d->lens);
    free (d->vals);
    memset (d, 0, sizeof *d);
}

/*  Look a name up: its value, or -1. */
static int
s_dict_get (const s_dict_t *d, const char *key, size_t len)
{
    if (!d->cap)
        return -1;
    size_t i = s_hash (key, len) & (d->cap - 1);
    while (d->keys [i]) {
        if (d->lens [i] == len && memcmp (d->keys [i], key, len) == 0)
            return d->vals [i];
        i = (i + 1) & (d->cap - 1);
    }
    return -1;
}

/*  Insert a name (borrowed, must outlive the dict); 0, or BUS_EEXIST. */
static int
s_dict_put (s_dict_t *d, const char *key, int val)
{
    size_t len = strlen (key);
    if (s_dict_get (d, key, len) >= 0)
        return BUS_EEXIST;
    size_t i = s_hash (key, len) & (d->cap - 1);
    while (d->keys [i])
        i = (i + 1) & (d->cap - 1);
    d->keys [i] = key;
    d->lens [i] = len;
    d->vals [i] = val;
    d->n++;
    return 0;
}

/*  Free a rewrite tree. */
static void
s_rw_free (authz_rw_t *rw)
{
    if (!rw)
        return;
    for (int i = 0; i < rw->n_children; i++)
        s_rw_free (rw->children [i]);
    free (rw->children);
    free (rw);
}

/*  A member of obj under either of two spellings (camelCase, snake_case). */
static json_t *
s_get2 (json_t *obj, const char *a, const char *b)
{
    json_t *v = json_object_get (obj, a);
    return v? v: json_object_get (obj, b);
}

/*  Compile one userset rewrite of relation on type t. */
static int
s_rw_compile (authz_model_t *self, int t, json_t *js, int depth,
              authz_rw_t **out, authz_error_t *err)
{
    const char *tname = self->types [t].name;
    if (depth > AUTHZ_MAX_REWRITE_DEPTH)
        return authz_error_set (err, AUTHZ_EVALIDATION,
                                "rewrite of type '%s' nested too deeply", tname);
    if (!json_is_object (js))
        return authz_error_set (err, AUTHZ_EVALIDATION,
                                "invalid rewrite in type '%s'", tname);
    authz_rw_t *rw = calloc (1, sizeof *rw);
    if (!rw)
        return BUS_ENOMEM;
    int rc = 0;
    json_t *v, *children = NULL;
    if (json_object_get (js, "this")) {
        rw->kind = AUTHZ_RW_THIS;
    }
    else
    if ((v = s_get2 (js, "computedUserset", "computed_userset"))) {
        rw->kind = AUTHZ_RW_COMPUTED;
        const char *r = json_string_value (json_object_get (v, "relation"));
        rw->relation = r? s_dict_get (&self->rel_dicts [t], r, strlen (r)): -1;
        if (rw->relation < 0)
            rc = authz_error_set (err, AUTHZ_EVALIDATION,
                                  "relation '%s' not found on type '%s'", r? r: "", tname);
    }
    else
    if ((v = s_get2 (js, "tupleToUserset", "tuple_to_userset"))) {
        rw->kind = AUTHZ_RW_TTU;
        const char *ts = json_string_value (json_object_get (
                             json_object_get (v, "tupleset"), "relation"));
        rw->computed = json_string_value (json_object_get (
                             s_get2 (v, "computedUserset", "computed_userset"), "relation"));
        rw->relation = ts? s_dict_get (&self->rel_dicts [t], ts, strlen (ts)): -1;
        if (rw->relation < 0 || !rw->computed)
            rc = authz_error_set (err, AUTHZ_EVALIDATION,
                                  "invalid tupleset '%s' on type '%s'", ts? ts: "", tname);
    }
    else
    if ((v = json_object_get (js, "union"))) {
        rw->kind = AUTHZ_RW_UNION;
        children = json_object_get (v, "child");
    }
    else
    if ((v = json_object_get (js, "intersection"))) {
        rw->kind = AUTHZ_RW_INTERSECTION;
        children = json_object_get (v, "child");
    }
    else
    if ((v = json_object_get (js, "difference"))) {
        rw->kind = AUTHZ_RW_DIFFERENCE;
        children = json_pack ("[OO]", json_object_get (v, "base"),
                              json_object_get (v, "subtract"));
        if (!children)
            rc = authz_error_set (err, AUTHZ_EVALIDATION,
                                  "invalid difference in type '%s'", tname);
    }
    else
        rc = authz_error_set (err, AUTHZ_EVALIDATION,
                              "unknown rewrite in type '%s'", tname);

    if (rc == 0 && rw->kind >= AUTHZ_RW_UNION) {
        size_t n = json_array_size (children);
        if (n == 0 || n > 64)
            rc = authz_error_set (err, AUTHZ_EVALIDATION,
                                  "invalid operand count in type '%s'", tname);
        else
        if (!(rw->children = calloc (n, sizeof *rw->children)))
            rc = BUS_ENOMEM;
        for (size_t i = 0; rc == 0 && i < n; i++) {
            rc = s_rw_compile (self, t, json_array_get (children, i), depth + 1,
                               &rw->children [i], err);
            if (rc == 0)
                rw->n_children++;
        }
    }
    if (rw->kind == AUTHZ_RW_DIFFERENCE)
        json_decref (children);
    if (rc)
        s_rw_free (rw);
    else
        *out = rw;
    return rc;
}

/*  Compile a relation's directly_related_user_types. */
static int
s_allowed_compile (authz_model_t *self, authz_relation_t *rel, json_t *list,
                   authz_error_t *err)
{
    size_t n = json_array_size (list);
    if (n == 0)
        return 0;
    if (n > 256)
        return authz_error_set (err, AUTHZ_EVALIDATION, "too many related user types");
    rel->allowed = calloc (n, sizeof *rel->allowed);
    if (!rel->allowed)
        return BUS_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get (list, i);
        authz_allowed_t *a = &rel->allowed [i];
        const char *type = json_string_value (json_object_get (e, "type"));
        const char *r = json_string_value (json_object_get (e, "relation"));
        const char *cond = json_string_value (json_object_get (e, "condition"));
        a->type = type? s_dict_get (&self->type_dict, type, strlen (type)): -1;
        if (a->type < 0)
            return authz_error_set (err, AUTHZ_EVALIDATION, "type '%s' not found",
                                    type? type: "");
        a->relation = -1;
        if (r && *r) {
            a->relation = s_dict_get (&self->rel_dicts [a->type], r, strlen (r));
            if (a->relation < 0)
                return authz_error_set (err, AUTHZ_EVALIDATION,
                                        "relation '%s' not found on type '%s'", r, type);
        }
        a->wildcard = json_object_get (e, "wildcard") != NULL;
        a->condition = -1;
        if (cond && *cond) {
            a->condition = s_dict_get (&self->cond_dict, cond, strlen (cond));
            if (a->condition < 0)
                return authz_error_set (err, AUTHZ_EVALIDATION,
                                        "condition '%s' not found", cond);
        }
        rel->n_allowed++;
    }
    return 0;
}

/*  Intern the conditions and compile their expressions. */
static int
s_conditions_compile (authz_model_t *self, json_t *conds, authz_error_t *err)
{
    size_t n = json_object_size (conds);
    if (n > AUTHZ_MAX_CONDITIONS)
        return authz_error_set (err, AUTHZ_EVALIDATION, "too many conditions");
    if (s_dict_init (&self->cond_dict, n))
        return BUS_ENOMEM;
    if (n && !(self->conditions = calloc (n, sizeof *self->conditions)))
        return BUS_ENOMEM;
    const char *name;
    json_t *c;
    json_object_foreach (conds, name, c) {
        authz_condition_t *cd = &self->conditions [self->n_conditions];
        cd->name = name;
        const char *expr = json_string_value (json_object_get (c, "expression"));
        char msg [200] = "";
        int rc = authz_cel_compile (&cd->cel, expr? expr: "",
                                    json_object_get (c, "parameters"), msg, sizeof msg);
        if (rc)
            return authz_error_set (err, AUTHZ_EVALIDATION,
                                    "invalid condition '%s': %s", name, msg);
        s_dict_put (&self->cond_dict, name, self->n_conditions);
        self->n_conditions++;
    }
    return 0;
}

/*  Build the typesystem; see the header. */
int
authz_model_compile (authz_model_t **out, json_t *model, const char *id,
                     authz_error_t *err)
{
    *out = NULL;
    authz_model_t *self = calloc (1, sizeof *self);
    if (!self)
        return BUS_ENOMEM;
    int rc = 0;
    self->json = json_incref (model);
    snprintf (self->id, sizeof self->id, "%s", id? id: "");
    json_t *tds = json_object_get (model, "type_definitions");
    size_t nt = json_array_size (tds);
    if (!json_is_object (model) || !json_is_array (tds) || nt > AUTHZ_MAX_TYPES) {
        rc = authz_error_set (err, AUTHZ_EVALIDATION, "invalid authorization model");
        goto done;
    }
    self->types = calloc (nt + 1, sizeof *self->types);
    self->rel_dicts = calloc (nt + 1, sizeof *self->rel_dicts);
    if (!self->types || !self->rel_dicts || s_dict_init (&self->type_dict, nt)) {
        rc = BUS_ENOMEM;
        goto done;
    }
    //  Pass 1: intern types and relation names
    for (size_t i = 0; i < nt; i++) {
        json_t *td = json_array_get (tds, i);
        const char *name = json_string_value (json_object_get (td, "type"));
        json_t *rels = json_object_get (td, "relations");
        size_t nr = json_object_size (rels);
        if (!name || !*name || strlen (name) > AUTHZ_MAX_NAME || nr > AUTHZ_MAX_RELATIONS) {
            rc = authz_error_set (err, AUTHZ_EVALIDATION, "invalid type definition");
            goto done;
        }
        authz_type_t *t = &self->types [i];
        t->name = name;
        t->id = (int) i;
        self->n_types++;
        if (s_dict_put (&self->type_dict, name, (int) i)) {
            rc = authz_error_set (err, AUTHZ_EVALIDATION,
                                  "the type `%s` is defined more than once", name);
            goto done;
        }
        if (s_dict_init (&self->rel_dicts [i], nr)
        ||  (nr && !(t->relations = calloc (nr, sizeof *t->relations)))) {
            rc = BUS_ENOMEM;
            goto done;
        }
        const char *rname;
        json_t *rv;
        json_object_foreach (rels, rname, rv) {
            authz_relation_t *r = &t->relations [t->n_relations];
            r->name = rname;
            r->id = t->n_relations++;
            s_dict_put (&self->rel_dicts [i], rname, r->id);
        }
    }
    rc = s_conditions_compile (self, json_object_get (model, "conditions"), err);
    //  Pass 2: rewrites and allowed types
    for (int i = 0; rc == 0 && i < self->n_types; i++) {
        json_t *td = json_array_get (tds, i);
        authz_type_t *t = &self->types [i];
        json_t *meta = json_object_get (json_object_get (td, "metadata"), "relations");
        for (int r = 0; rc == 0 && r < t->n_relations; r++) {
            authz_relation_t *rel = &t->relations [r];
            rc = s_rw_compile (self, i, json_object_get (json_object_get (td, "relations"),
                                                         rel->name), 0, &rel->rewrite, err);
            if (rc == 0)
                rc = s_allowed_compile (self, rel, s_get2 (json_object_get (meta, rel->name),
                                        "directly_related_user_types",
                                        "directlyRelatedUserTypes"), err);
        }
    }
done:
    if (rc)
        authz_model_destroy (&self);
    *out = self;
    return rc;
}

/*  Free everything the model owns. */
void
authz_model_destroy (authz_model_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    authz_model_t *self = *self_p;
    for (int i = 0; i < self->n_types; i++) {
        authz_type_t *t = &self->types [i];
        for (int r = 0; r < t->n_relations; r++) {
            s_rw_free (t->relations [r].rewrite);
            free (t->relations [r].allowed);
        }
        free (t->relations);
        s_dict_free (&self->rel_dicts [i]);
    }
    for (int i = 0; i < self->n_conditions; i++)
        authz_cel_destroy (&self->conditions [i].cel);
    free (self->conditions);
    free (self->types);
    free (self->rel_dicts);
    s_dict_free (&self->type_dict);
    s_dict_free (&self->cond_dict);
    json_decref (self->json);
    free (self);
    *self_p = NULL;
}

/*  The model's id. */
const char *
authz_model_id (const authz_model_t *self)
{
    return self->id;
}

/*  The source JSON (borrowed). */
json_t *
authz_model_json (const authz_model_t *self)
{
    return self->json;
}

/*  Type id by name. */
int
authz_model_type (const authz_model_t *self, const char *name, size_t len)
{
    return s_dict_get (&self->type_dict, name, len);
}

/*  Number of types. */
int
authz_model_n_types (const authz_model_t *self)
{
    return self->n_types;
}

/*  Type by id. */
const authz_type_t *
authz_model_type_at (const authz_model_t *self, int id)
{
    return (id >= 0 && id < self->n_types)? &self->types [id]: NULL;
}

/*  Relation id by name on a type. */
int
authz_model_relation (const authz_model_t *self, int type, const char *name, size_t len)
{
    if (type < 0 || type >= self->n_types)
        return -1;
    return s_dict_get (&self->rel_dicts [type], name, len);
}

/*  Relation by ids. */
const authz_relation_t *
authz_model_relation_at (const authz_model_t *self, int type, int rel)
{
    if (type < 0 || type >= self->n_types || rel < 0
    ||  rel >= self->types [type].n_relations)
        return NULL;
    return &self->types [type].relations [rel];
}

/*  Condition id by name. */
int
authz_model_condition (const authz_model_t *self, const char *name, size_t len)
{
    return s_dict_get (&self->cond_dict, name, len);
}

/*  Condition by id. */
const authz_condition_t *
authz_model_condition_at (const authz_model_t *self, int id)
{
    return (id >= 0 && id < self->n_conditions)? &self->conditions [id]: NULL;
}

/*  First allowed-type entry matching a user shape; see the header. */
const authz_allowed_t *
authz_model_allowed (const authz_model_t *self, int type, int rel, int user_type,
                     int user_rel, bool wildcard, int condition)
{
    const authz_relation_t *r = authz_model_relation_at (self, type, rel);
    if (!r)
        return NULL;
    for (int i = 0; i < r->n_allowed; i++) {
        const authz_allowed_t *a = &r->allowed [i];
        if (a->type == user_type && a->relation == user_rel && a->wildcard == wildcard
        &&  (condition == AUTHZ_ANY_CONDITION || condition == a->condition))
            return a;
    }
    return NULL;
}
