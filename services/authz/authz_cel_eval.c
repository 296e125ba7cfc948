/*  authz_cel_eval.c — evaluating a compiled CEL condition.

    The evaluation state and its limits (cost, memory: going over either
    aborts the whole evaluation, which no operator absorbs), the tree
    walk with CEL's error- and unknown-absorbing logic and comprehensions,
    the conversion of a JSON context to values of the declared parameter
    types (OpenFGA's converters), and one run from context to answer.
*/
#include "authz_cel_private.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <regex.h>

#define S_MAX_CTX_DEPTH    32      /* JSON nesting converted from a context */

//  ---------------------------------------------------------------------
//  Evaluation state.

//  An error value with a message in the arena (static text if full).
cel_val_t
cel_verr (cel_eval_t *ev, int code, const char *fmt, ...)
{
    cel_val_t v = {.k = V_ERR, .code = code};
    char *msg = cel_alloc (&ev->arena, CEL_MAX_ERRMSG);
    if (msg) {
        va_list ap;
        va_start (ap, fmt);
        vsnprintf (msg, CEL_MAX_ERRMSG, fmt, ap);
        va_end (ap);
    }
    v.s.p = msg? msg: "evaluation error";
    return v;
}

//  Stop the evaluation for a limit: no operator may absorb this error.
cel_val_t
cel_vlimit (cel_eval_t *ev, const char *what)
{
    if (!ev->abort) {
        ev->abort = true;
        ev->abort_val.k = V_ERR;
        ev->abort_val.code = AUTHZ_CEL_ELIMIT;
        ev->abort_val.s.p = what;
    }
    return ev->abort_val;
}

//  Add units to the cost; false (and abort) when over the budget.
bool
cel_charge (cel_eval_t *ev, uint64_t units)
{
    ev->cost += units;
    if (ev->cost > ev->limit) {
        if (ev->limit < AUTHZ_CEL_MAX_COST) {
            cel_vlimit (ev, "the request's cost budget is spent");
            ev->abort_val.code = AUTHZ_CEL_EBUDGET;
        }
        else
            cel_vlimit (ev, "evaluation cost limit exceeded");
        return false;
    }
    return !ev->abort;
}

//  Arena allocation during evaluation; aborts on exhaustion.
void *
cel_ealloc (cel_eval_t *ev, size_t n)
{
    void *p = cel_alloc (&ev->arena, n);
    if (!p)
        cel_vlimit (ev, "evaluation memory limit exceeded");
    return p;
}

cel_val_t
cel_nooverload (cel_eval_t *ev, int fn)
{
    return cel_verr (ev, AUTHZ_CEL_EEVAL, "no such overload for '%s'", cel_fn_name (fn));
}

//  A string (or bytes) value of n bytes copied from p.
cel_val_t
cel_vstr (cel_eval_t *ev, int k, const char *p, size_t n)
{
    cel_val_t v = {.k = (uint8_t) k};
    char *c = cel_ealloc (ev, n + 1);
    if (!c)
        return ev->abort_val;
    if (n)
        memcpy (c, p, n);
    v.s.p = c;
    v.s.n = n;
    return v;
}


static cel_val_t s_eval (cel_eval_t *ev, const cel_node_t *n);

//  CEL's logical and/or of two values: the deciding value (false for and,
//  true for or) wins over unknowns, unknowns over errors.
static cel_val_t
s_logic2 (cel_eval_t *ev, bool is_or, cel_val_t a, cel_val_t b)
{
    if ((a.k == K_BOOL && a.b == is_or) || (b.k == K_BOOL && b.b == is_or))
        return cel_vbool (is_or);
    if (a.k == K_BOOL && b.k == K_BOOL)
        return cel_vbool (!is_or);
    if (a.k == V_UNKNOWN) return a;
    if (b.k == V_UNKNOWN) return b;
    if (a.k == V_ERR) return a;
    if (b.k == V_ERR) return b;
    return cel_nooverload (ev, F_UNKNOWN);
}

//  An n-ary && or ||: stops at the first deciding value.
static cel_val_t
s_eval_logic (cel_eval_t *ev, const cel_node_t *n)
{
    bool is_or = n->kind == N_OR;
    cel_val_t acc = cel_vbool (!is_or);
    for (uint32_t i = 0; i < n->nargs && !ev->abort; i++) {
        acc = s_logic2 (ev, is_or, acc, s_eval (ev, n->args [i]));
        if (acc.k == K_BOOL && acc.b == is_or)
            break;
    }
    return ev->abort? ev->abort_val: acc;
}

//  Append v to a list being built (doubling storage in the arena).
static bool
s_list_push (cel_eval_t *ev, cel_list_t *l, size_t *cap, cel_val_t v)
{
    if (l->n == *cap) {
        size_t ncap = *cap? *cap * 2: 8;
        cel_val_t *items = cel_ealloc (ev, ncap * sizeof *items);
        if (!items)
            return false;
        if (l->n)
            memcpy (items, l->items, l->n * sizeof *items);
        l->items = items;
        *cap = ncap;
    }
    l->items [l->n++] = v;
    return cel_charge (ev, 1);
}

//  A comprehension: all, exists, exists_one, map, filter, following
//  cel-go's expansions (so errors are absorbed the same way).
static cel_val_t
s_eval_comp (cel_eval_t *ev, const cel_node_t *n)
{
    cel_val_t r = s_eval (ev, n->args [0]);
    if (cel_is_err (&r))
        return r;
    const cel_val_t *items;
    size_t count;
    if (r.k == K_LIST) {
        items = r.list->items;
        count = r.list->n;
    }
    else
    if (r.k == K_MAP) {
        items = r.map->keys;
        count = r.map->n;
    }
    else
        return cel_verr (ev, AUTHZ_CEL_EEVAL, "expression does not support iteration");
    cel_val_t acc = n->fn == M_ALL? cel_vbool (true): n->fn == M_EXISTS? cel_vbool (false): cel_vint (0);
    cel_list_t *out = NULL;
    size_t cap = 0;
    bool builds = n->fn == M_MAP || n->fn == M_MAP_FILTER || n->fn == M_FILTER;
    if (builds) {
        out = cel_ealloc (ev, sizeof *out);
        if (!out)
            return ev->abort_val;
    }
    for (size_t i = 0; i < count && !ev->abort; i++) {
        if (!cel_charge (ev, 1))
            break;
        ev->vars [n->slot] = items [i];
        if (n->fn == M_ALL || n->fn == M_EXISTS) {
            bool is_or = n->fn == M_EXISTS;
            acc = s_logic2 (ev, is_or, acc, s_eval (ev, n->args [1]));
            if (acc.k == K_BOOL && acc.b == is_or)
                break;
            continue;
        }
        cel_val_t p = n->fn == M_MAP? cel_vbool (true): s_eval (ev, n->args [1]);
        if (cel_is_err (&p) || p.k != K_BOOL) {
            acc = cel_is_err (&p)? p: cel_nooverload (ev, F_UNKNOWN);
            break;              //  the error or unknown is sticky
        }
        if (n->fn == M_EXISTS_ONE) {
            acc.i += p.b;
            continue;
        }
        if (!p.b)
            continue;
        cel_val_t t = n->fn == M_FILTER? items [i]: s_eval (ev, n->args [n->fn == M_MAP? 1: 2]);
        if (cel_is_err (&t)) {
            acc = t;
            break;
        }
        if (!s_list_push (ev, out, &cap, t))
            break;
    }
    if (ev->abort)
        return ev->abort_val;
    if (cel_is_err (&acc))
        return acc;
    if (n->fn == M_EXISTS_ONE)
        return cel_vbool (acc.i == 1);
    if (builds) {
        cel_val_t v = {.k = K_LIST};
        v.list = out;
        return v;
    }
    return acc;
}

//  Build a list or map literal.
static cel_val_t
s_eval_aggregate (cel_eval_t *ev, const cel_node_t *n)
{
    if (!cel_charge (ev, n->nargs))
        return ev->abort_val;
    cel_val_t *vals = cel_ealloc (ev, (n->nargs + 1) * sizeof *vals);
    if (!vals)
        return ev->abort_val;
    for (uint32_t i = 0; i < n->nargs; i++) {
        vals [i] = s_eval (ev, n->args [i]);
        if (cel_is_err (&vals [i]))
            return vals [i];
    }
    cel_val_t v = {.k = (uint8_t) (n->kind == N_LIST? K_LIST: K_MAP)};
    if (n->kind == N_LIST) {
        cel_list_t *l = cel_ealloc (ev, sizeof *l);
        if (!l)
            return ev->abort_val;
        l->n = n->nargs;
        l->items = vals;
        v.list = l;
        return v;
    }
    cel_map_t *m = cel_ealloc (ev, sizeof *m);
    if (!m)
        return ev->abort_val;
    m->n = n->nargs / 2;
    m->keys = cel_ealloc (ev, (m->n + 1) * sizeof *m->keys);
    m->vals = cel_ealloc (ev, (m->n + 1) * sizeof *m->vals);
    if (!m->keys || !m->vals)
        return ev->abort_val;
    for (size_t i = 0; i < m->n; i++) {
        cel_val_t *k = &vals [2 * i];
        if (k->k != K_INT && k->k != K_UINT && k->k != K_BOOL && k->k != K_STRING)
            return cel_verr (ev, AUTHZ_CEL_EEVAL, "unsupported key type");
        cel_map_t seen = {i, m->keys, m->vals};
        if (cel_map_find (ev, &seen, k) >= 0)
            return cel_verr (ev, AUTHZ_CEL_EEVAL, "Failed with repeated key");
        m->keys [i] = *k;
        m->vals [i] = vals [2 * i + 1];
    }
    v.map = m;
    return ev->abort? ev->abort_val: v;
}

//  Evaluate a node.
static cel_val_t
s_eval (cel_eval_t *ev, const cel_node_t *n)
{
    if (!cel_charge (ev, 1))
        return ev->abort_val;
    switch (n->kind) {
        case N_LIT: return n->lit;
        case N_PARAM: return ev->params [n->slot];
        case N_IVAR: return ev->vars [n->slot];
        case N_AND: case N_OR: return s_eval_logic (ev, n);
        case N_COMP: return s_eval_comp (ev, n);
        case N_LIST: case N_MAP: return s_eval_aggregate (ev, n);
        case N_COND: {
            cel_val_t c = s_eval (ev, n->args [0]);
            if (cel_is_err (&c))
                return c;
            if (c.k != K_BOOL)
                return cel_nooverload (ev, F_UNKNOWN);
            return s_eval (ev, n->args [c.b? 1: 2]);
        }
        case N_SELECT: case N_HAS: {
            cel_val_t o = s_eval (ev, n->args [0]);
            if (cel_is_err (&o))
                return o;
            if (o.k != K_MAP)
                return cel_verr (ev, AUTHZ_CEL_EEVAL, "type does not support field selection");
            cel_val_t key = {.k = K_STRING};
            key.s.p = n->name;
            key.s.n = strlen (n->name);
            ssize_t j = cel_map_find (ev, o.map, &key);
            if (n->kind == N_HAS)
                return cel_vbool (j >= 0);
            if (j < 0)
                return cel_verr (ev, AUTHZ_CEL_EEVAL, "no such key: %.64s", n->name);
            return o.map->vals [j];
        }
        case N_CALL: {
            cel_val_t a [3];
            assert (n->nargs <= 3);
            for (uint32_t i = 0; i < n->nargs; i++) {
                a [i] = s_eval (ev, n->args [i]);
                if (cel_is_err (&a [i]))
                    return a [i];
            }
            return cel_apply (ev, n, a);
        }
        default:
            return cel_verr (ev, AUTHZ_CEL_EEVAL, "unsupported expression");
    }
}

//  ---------------------------------------------------------------------
//  Context conversion (OpenFGA's parameter converters).

typedef struct {
    cel_eval_t *ev;
    size_t budget;              //  values left to convert
    char *err;
    size_t err_len;
} s_conv_t;

//  A JSON number or numeric string as int, uint or double, as OpenFGA's
//  numericTypeConverterFunc does: numbers are float64 (as in structpb);
//  strings parse with 64-bit mantissa precision; int and uint must be
//  integral and saturate at the int64 bounds; a double must be finite.
static bool
s_conv_number (int k, json_t *j, cel_val_t *out)
{
    long double f;
    if (json_is_number (j))
        f = (long double) (double) json_number_value (j);
    else
    if (json_is_string (j)) {
        const char *s = json_string_value (j);
        size_t n = json_string_length (j), i = 0, digits = 0;
        if (n == 0 || n > 512 || strlen (s) != n)
            return false;
        if (s [i] == '+' || s [i] == '-')
            i++;
        while (i < n && isdigit ((unsigned char) s [i])) { i++; digits++; }
        if (i < n && s [i] == '.')
            for (i++; i < n && isdigit ((unsigned char) s [i]); i++)
                digits++;
        if (!digits)
            return false;
        if (i < n && (s [i] == 'e' || s [i] == 'E')) {
            i++;
            if (i < n && (s [i] == '+' || s [i] == '-'))
                i++;
            size_t e = i;
            while (i < n && isdigit ((unsigned char) s [i]))
                i++;
            if (i == e)
                return false;
        }
        if (i != n)
            return false;
        f = strtold (s, NULL);
    }
    else
        return false;
    if (isnan (f) || isinf (f))
        return false;
    if (k == K_DOUBLE) {
        double d = (double) f;
        if (isinf (d))
            return false;
        *out = cel_vdouble (d);
        return true;
    }
    if (f != truncl (f))
        return false;
    int64_t i = f >= 9223372036854775807.0L? INT64_MAX: f <= -9223372036854775808.0L? INT64_MIN: (int64_t) f;
    if (k == K_INT) {
        *out = cel_vint (i);
        return true;
    }
    if (i < 0)
        return false;
    *out = cel_vuint ((uint64_t) i);
    return true;
}

//  Convert JSON value j to a value of declared type t.
static int
s_from_json (s_conv_t *cv, const cel_type_t *t, json_t *j, cel_val_t *out, int depth, const char *name)
{
    if (cv->budget == 0 || depth > S_MAX_CTX_DEPTH) {
        cel_errf (cv->err, cv->err_len, "context parameter '%s' is over the size or nesting limit", name);
        return AUTHZ_CEL_ELIMIT;
    }
    cv->budget--;
    memset (out, 0, sizeof *out);
    bool ok = false;
    switch (t->k) {
        case K_DYN:
            if (json_is_null (j)) { out->k = K_NULL; ok = true; }
            else if (json_is_boolean (j)) { *out = cel_vbool (json_is_true (j)); ok = true; }
            else if (json_is_number (j)) { *out = cel_vdouble (json_number_value (j)); ok = true; }
            else if (json_is_string (j)) ok = true;
            else if (json_is_array (j)) return s_from_json (cv, &T_LISTDYN, j, out, depth, name);
            else if (json_is_object (j)) return s_from_json (cv, &T_MAPDYN, j, out, depth, name);
            if (ok && json_is_string (j)) {
                out->k = K_STRING;
                out->s.p = json_string_value (j);
                out->s.n = json_string_length (j);
            }
            break;
        case K_BOOL:
            if ((ok = json_is_boolean (j)))
                *out = cel_vbool (json_is_true (j));
            break;
        case K_STRING:
            if ((ok = json_is_string (j))) {
                out->k = K_STRING;
                out->s.p = json_string_value (j);
                out->s.n = json_string_length (j);
            }
            break;
        case K_INT: case K_UINT: case K_DOUBLE:
            ok = s_conv_number (t->k, j, out);
            break;
        case K_DURATION:
            if ((ok = json_is_string (j) && cel_parse_duration (json_string_value (j), json_string_length (j), &out->dur)))
                out->k = K_DURATION;
            break;
        case K_TIMESTAMP:
            ok = json_is_string (j) && cel_parse_rfc3339 (json_string_value (j), json_string_length (j), out);
            break;
        case K_IP: {
            cel_ip_t *ip = cel_alloc (&cv->ev->arena, sizeof *ip);
            if ((ok = ip && json_is_string (j) && cel_parse_ip (json_string_value (j), json_string_length (j), ip, &cv->ev->arena))) {
                out->k = K_IP;
                out->ip = ip;
            }
            break;
        }
        case K_LIST: case K_MAP: {
            bool is_list = t->k == K_LIST;
            if (is_list? !json_is_array (j): !json_is_object (j))
                break;
            size_t n = is_list? json_array_size (j): json_object_size (j);
            if (n > cv->budget) {
                cel_errf (cv->err, cv->err_len, "context parameter '%s' has more than %d values", name, AUTHZ_CEL_MAX_CONTEXT_VALUES);
                return AUTHZ_CEL_ELIMIT;
            }
            cel_val_t *vals = cel_alloc (&cv->ev->arena, (n + 1) * sizeof *vals);
            cel_val_t *keys = is_list? NULL: cel_alloc (&cv->ev->arena, (n + 1) * sizeof *keys);
            void *hdr = cel_alloc (&cv->ev->arena, is_list? sizeof (cel_list_t): sizeof (cel_map_t));
            if (!vals || !hdr || (!is_list && !keys)) {
                cel_errf (cv->err, cv->err_len, "context too large");
                return AUTHZ_CEL_ELIMIT;
            }
            size_t i = 0;
            if (is_list) {
                json_t *item;
                json_array_foreach (j, i, item) {
                    int rc = s_from_json (cv, t->p1, item, &vals [i], depth + 1, name);
                    if (rc)
                        return rc;
                }
                ((cel_list_t *) hdr)->n = n;
                ((cel_list_t *) hdr)->items = vals;
                out->k = K_LIST;
                out->list = hdr;
            }
            else {
                const char *key;
                json_t *item;
                json_object_foreach (j, key, item) {
                    keys [i].k = K_STRING;
                    keys [i].s.p = key;
                    keys [i].s.n = strlen (key);
                    int rc = s_from_json (cv, t->p2, item, &vals [i], depth + 1, name);
                    if (rc)
                        return rc;
                    i++;
                }
                ((cel_map_t *) hdr)->n = i;
                ((cel_map_t *) hdr)->keys = keys;
                ((cel_map_t *) hdr)->vals = vals;
                out->k = K_MAP;
                out->map = hdr;
            }
            return 0;
        }
        default:
            break;
    }
    if (ok)
        return 0;
    char ts [96];
    cel_type_str (t, ts, sizeof ts);
    cel_errf (cv->err, cv->err_len, "failed to convert context parameter '%s': expected a %s value", name, ts);
    return AUTHZ_CEL_ETYPE;
}

//  parameters over failing at once.
int
cel_run (const authz_cel_t *self, authz_cel_run_t *run,
         json_t **missing, char *err, size_t err_len)
{
    json_t *context = run->context, *fallback = run->fallback;
    bool partial = run->partial;
    assert (self);
    int rc = 0;
    json_t *absent = NULL;
    if (missing)
        *missing = NULL;
    if (err && err_len)
        err [0] = 0;
    cel_eval_t ev = {.cel = self};
    ev.arena.limit = AUTHZ_CEL_MAX_EVAL_MEMORY;
    ev.limit = run->allowance && run->allowance < AUTHZ_CEL_MAX_COST? run->allowance: AUTHZ_CEL_MAX_COST;
    run->spent = 0;
    if ((context && !json_is_object (context)) || (fallback && !json_is_object (fallback))) {
        cel_errf (err, err_len, "context must be a JSON object");
        rc = AUTHZ_CEL_ETYPE;
        goto done;
    }
    if (self->nparams == 0 && json_object_size (context) + json_object_size (fallback) > 0) {
        cel_errf (err, err_len, "no parameters defined for the condition");
        rc = AUTHZ_CEL_ETYPE;
        goto done;
    }
    ev.params = cel_alloc (&ev.arena, (self->nparams + 1) * sizeof *ev.params);
    ev.vars = cel_alloc (&ev.arena, (self->nslots + 1) * sizeof *ev.vars);
    if (!ev.params || !ev.vars) {
        rc = AUTHZ_CEL_ELIMIT;
        goto done;
    }
    s_conv_t cv = {.ev = &ev, .budget = AUTHZ_CEL_MAX_CONTEXT_VALUES, .err = err, .err_len = err_len};
    for (size_t i = 0; i < self->nparams; i++) {
        json_t *j = context? json_object_get (context, self->params [i].name): NULL;
        if (!j && fallback)
            j = json_object_get (fallback, self->params [i].name);
        if (!j) {
            ev.params [i].k = V_UNKNOWN;
            if (!absent)
                absent = json_array ();
            json_array_append_new (absent, json_string (self->params [i].name));
            continue;
        }
        if ((rc = s_from_json (&cv, self->params [i].type, j, &ev.params [i], 0, self->params [i].name)))
            goto done;
    }
    if (absent && !partial) {
        char names [160] = "";
        size_t used = 0;
        for (size_t i = 0; i < json_array_size (absent) && used < sizeof names - 1; i++)
            used += (size_t) snprintf (names + used, sizeof names - used, "%s%s", i? ", ": "",
                                       json_string_value (json_array_get (absent, i)));
        cel_errf (err, err_len, "missing context parameters: %s", names);
        rc = AUTHZ_CEL_EMISSING;
        goto done;
    }
    //  the conversion costs a unit a value
    cel_charge (&ev, AUTHZ_CEL_MAX_CONTEXT_VALUES - cv.budget);
    cel_val_t v = s_eval (&ev, self->root);
    if (ev.abort)
        v = ev.abort_val;
    if (v.k == V_UNKNOWN) {
        cel_errf (err, err_len, "the result depends on missing context parameters");
        rc = AUTHZ_CEL_EMISSING;
    }
    else
    if (v.k == V_ERR) {
        cel_errf (err, err_len, "failed to evaluate condition expression: %s", v.s.p);
        rc = v.code;
    }
    else
    if (v.k != K_BOOL) {
        cel_errf (err, err_len, "condition expression did not yield a bool");
        rc = AUTHZ_CEL_ENOTBOOL;
    }
    else
        rc = v.b;
done:
    if (rc == AUTHZ_CEL_ELIMIT && err && err_len && !err [0])
        cel_errf (err, err_len, "evaluation over the memory limit");
    if (missing && absent && (rc >= 0 || rc == AUTHZ_CEL_EMISSING)) {
        *missing = absent;
        absent = NULL;
    }
    json_decref (absent);
    cel_arena_free (&ev.arena);
    //  a charge refused did no work: what was spent is at most the limit
    //  and the unit that passed it
    run->spent = ev.cost > ev.limit? ev.limit + 1: ev.cost;
    return rc;
}
