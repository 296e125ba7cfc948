/*  authz_cel_check.c — the CEL type checker.

    cel-go's rules: no implicit numeric conversion, type parameters for
    == in [] ?:, null only against nullable types, overloads resolved from
    cel-go's standard declarations (plus OpenFGA's ipaddress), and the
    result must be bool. Sets every node's type for the evaluator.
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

//  ---------------------------------------------------------------------
//  Type checker.

typedef struct {
    uint8_t fn;
    uint8_t member;             //  1: receiver style only; 0: global only
    uint8_t n;
    const cel_type_t *a [3];
    const cel_type_t *r;
} s_overload_t;

#define G(fn, r, ...) {fn, 0, sizeof ((const cel_type_t *[]) {__VA_ARGS__}) / sizeof (const cel_type_t *), {__VA_ARGS__}, r}
#define M(fn, r, ...) {fn, 1, sizeof ((const cel_type_t *[]) {__VA_ARGS__}) / sizeof (const cel_type_t *), {__VA_ARGS__}, r}

//  cel-go's standard declarations for the supported functions (cross-type
//  numeric comparisons disabled, as in OpenFGA), plus OpenFGA's ipaddress.
static const s_overload_t s_overloads [] = {
    G (F_ADD, &T_INT, &T_INT, &T_INT), G (F_ADD, &T_UINT, &T_UINT, &T_UINT),
    G (F_ADD, &T_DOUBLE, &T_DOUBLE, &T_DOUBLE), G (F_ADD, &T_STRING, &T_STRING, &T_STRING),
    G (F_ADD, &T_BYTES, &T_BYTES, &T_BYTES), G (F_ADD, &T_LISTA, &T_LISTA, &T_LISTA),
    G (F_ADD, &T_TS, &T_TS, &T_DUR), G (F_ADD, &T_TS, &T_DUR, &T_TS),
    G (F_ADD, &T_DUR, &T_DUR, &T_DUR),
    G (F_SUB, &T_INT, &T_INT, &T_INT), G (F_SUB, &T_UINT, &T_UINT, &T_UINT),
    G (F_SUB, &T_DOUBLE, &T_DOUBLE, &T_DOUBLE), G (F_SUB, &T_DUR, &T_TS, &T_TS),
    G (F_SUB, &T_TS, &T_TS, &T_DUR), G (F_SUB, &T_DUR, &T_DUR, &T_DUR),
    G (F_MUL, &T_INT, &T_INT, &T_INT), G (F_MUL, &T_UINT, &T_UINT, &T_UINT),
    G (F_MUL, &T_DOUBLE, &T_DOUBLE, &T_DOUBLE),
    G (F_DIV, &T_INT, &T_INT, &T_INT), G (F_DIV, &T_UINT, &T_UINT, &T_UINT),
    G (F_DIV, &T_DOUBLE, &T_DOUBLE, &T_DOUBLE),
    G (F_MOD, &T_INT, &T_INT, &T_INT), G (F_MOD, &T_UINT, &T_UINT, &T_UINT),
    G (F_NEG, &T_INT, &T_INT), G (F_NEG, &T_DOUBLE, &T_DOUBLE),
    G (F_NOT, &T_BOOL, &T_BOOL),
    G (F_EQ, &T_BOOL, &T_PA, &T_PA), G (F_NE, &T_BOOL, &T_PA, &T_PA),
    #define S_ORD(fn) \
    G (fn, &T_BOOL, &T_BOOL, &T_BOOL), G (fn, &T_BOOL, &T_INT, &T_INT), \
    G (fn, &T_BOOL, &T_UINT, &T_UINT), G (fn, &T_BOOL, &T_DOUBLE, &T_DOUBLE), \
    G (fn, &T_BOOL, &T_STRING, &T_STRING), G (fn, &T_BOOL, &T_BYTES, &T_BYTES), \
    G (fn, &T_BOOL, &T_TS, &T_TS), G (fn, &T_BOOL, &T_DUR, &T_DUR)
    S_ORD (F_LT), S_ORD (F_LE), S_ORD (F_GT), S_ORD (F_GE),
    #undef S_ORD
    G (F_IN, &T_BOOL, &T_PA, &T_LISTA), G (F_IN, &T_BOOL, &T_PA, &T_MAPAB),
    G (F_INDEX, &T_PA, &T_LISTA, &T_INT), G (F_INDEX, &T_PB, &T_MAPAB, &T_PA),
    G (F_SIZE, &T_INT, &T_STRING), G (F_SIZE, &T_INT, &T_BYTES),
    G (F_SIZE, &T_INT, &T_LISTA), G (F_SIZE, &T_INT, &T_MAPAB),
    M (F_SIZE, &T_INT, &T_STRING), M (F_SIZE, &T_INT, &T_BYTES),
    M (F_SIZE, &T_INT, &T_LISTA), M (F_SIZE, &T_INT, &T_MAPAB),
    M (F_CONTAINS, &T_BOOL, &T_STRING, &T_STRING),
    M (F_STARTS, &T_BOOL, &T_STRING, &T_STRING),
    M (F_ENDS, &T_BOOL, &T_STRING, &T_STRING),
    G (F_MATCHES, &T_BOOL, &T_STRING, &T_STRING), M (F_MATCHES, &T_BOOL, &T_STRING, &T_STRING),
    G (F_INT, &T_INT, &T_INT), G (F_INT, &T_INT, &T_UINT), G (F_INT, &T_INT, &T_DOUBLE),
    G (F_INT, &T_INT, &T_STRING), G (F_INT, &T_INT, &T_TS),
    G (F_UINT, &T_UINT, &T_INT), G (F_UINT, &T_UINT, &T_UINT),
    G (F_UINT, &T_UINT, &T_DOUBLE), G (F_UINT, &T_UINT, &T_STRING),
    G (F_DOUBLE, &T_DOUBLE, &T_INT), G (F_DOUBLE, &T_DOUBLE, &T_UINT),
    G (F_DOUBLE, &T_DOUBLE, &T_DOUBLE), G (F_DOUBLE, &T_DOUBLE, &T_STRING),
    G (F_STRING, &T_STRING, &T_INT), G (F_STRING, &T_STRING, &T_UINT),
    G (F_STRING, &T_STRING, &T_DOUBLE), G (F_STRING, &T_STRING, &T_BOOL),
    G (F_STRING, &T_STRING, &T_STRING), G (F_STRING, &T_STRING, &T_BYTES),
    G (F_STRING, &T_STRING, &T_TS), G (F_STRING, &T_STRING, &T_DUR),
    G (F_BYTES, &T_BYTES, &T_BYTES), G (F_BYTES, &T_BYTES, &T_STRING),
    G (F_BOOL, &T_BOOL, &T_BOOL), G (F_BOOL, &T_BOOL, &T_STRING),
    G (F_DURATION, &T_DUR, &T_DUR), G (F_DURATION, &T_DUR, &T_STRING),
    G (F_TIMESTAMP, &T_TS, &T_TS), G (F_TIMESTAMP, &T_TS, &T_STRING),
    G (F_TIMESTAMP, &T_TS, &T_INT),
    G (F_DYN, &T_DYN, &T_PA),
    G (F_IPADDRESS, &T_IP, &T_STRING),
    M (F_IN_CIDR, &T_BOOL, &T_IP, &T_STRING),
    #define S_TIME(fn) M (fn, &T_INT, &T_TS), M (fn, &T_INT, &T_TS, &T_STRING)
    S_TIME (F_FULLYEAR), S_TIME (F_MONTH), S_TIME (F_DAYOFYEAR),
    S_TIME (F_DAYOFMONTH), S_TIME (F_DATE), S_TIME (F_DAYOFWEEK),
    S_TIME (F_HOURS), S_TIME (F_MINUTES), S_TIME (F_SECONDS), S_TIME (F_MILLIS),
    #undef S_TIME
    M (F_HOURS, &T_INT, &T_DUR), M (F_MINUTES, &T_INT, &T_DUR),
    M (F_SECONDS, &T_INT, &T_DUR), M (F_MILLIS, &T_INT, &T_DUR),
};
#undef G
#undef M

typedef struct {
    authz_cel_t *cel;
    int rc;
    char *err;
    size_t err_len;
    struct { const char *name; const cel_type_t *type; } scope [AUTHZ_CEL_MAX_DEPTH + 1];
    int nscope;
} s_checker_t;

//  Render t as cel-go spells types in messages.
void
cel_type_str (const cel_type_t *t, char *buf, size_t len)
{
    static const char *names [] = {
        "dyn", "null_type", "bool", "int", "uint", "double", "string", "bytes",
        "google.protobuf.Duration", "google.protobuf.Timestamp", "IPAddress"
    };
    if (t->k == K_LIST || t->k == K_MAP) {
        char a [96] = "", b [96] = "";
        cel_type_str (t->p1, a, sizeof a);
        if (t->k == K_MAP)
            cel_type_str (t->p2, b, sizeof b);
        snprintf (buf, len, t->k == K_LIST? "list(%s)": "map(%s, %s)", a, b);
    }
    else
        snprintf (buf, len, "%s", t->k < sizeof names / sizeof names [0]? names [t->k]: "?");
}

//  Record the first type error.
static void
s_cerr (s_checker_t *ck, int rc, const cel_node_t *n, const char *fmt, ...)
    __attribute__((format (printf, 4, 5)));
static void
s_cerr (s_checker_t *ck, int rc, const cel_node_t *n, const char *fmt, ...)
{
    if (ck->rc)
        return;
    ck->rc = rc;
    char msg [CEL_MAX_ERRMSG];
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (msg, sizeof msg, fmt, ap);
    va_end (ap);
    cel_errf (ck->err, ck->err_len, "%s at offset %zu", msg, n->pos);
}

static bool
s_nullable (const cel_type_t *t)
{
    return t->k == K_NULL || t->k == K_DYN || t->k == K_DURATION
        || t->k == K_TIMESTAMP || t->k == K_IP;
}

static bool
s_type_eq (const cel_type_t *a, const cel_type_t *b)
{
    if (a->k != b->k)
        return false;
    if (a->k == K_LIST)
        return s_type_eq (a->p1, b->p1);
    if (a->k == K_MAP)
        return s_type_eq (a->p1, b->p1) && s_type_eq (a->p2, b->p2);
    return true;
}

//  Is act assignable to pattern pat, binding type parameters in sub?
//  Follows cel-go: dyn is assignable both ways, null only to nullable
//  types, a bound parameter may widen (null to a nullable type, any to dyn).
static bool
s_unify (const cel_type_t *pat, const cel_type_t *act, const cel_type_t **sub)
{
    if (pat->k == K_PARAM) {
        const cel_type_t *cur = sub [pat->idx];
        if (!cur || cur->k == K_PARAM) {
            sub [pat->idx] = act;
            return true;
        }
        const cel_type_t *tmp [2] = {NULL, NULL};
        if (!s_unify (cur, act, tmp))
            return false;
        if (act->k == K_DYN || (cur->k == K_NULL && act->k != K_NULL))
            sub [pat->idx] = act;
        return true;
    }
    if (pat->k == K_DYN || act->k == K_DYN)
        return true;
    if (pat->k == K_NULL)
        return s_nullable (act);
    if (act->k == K_NULL)
        return s_nullable (pat);
    if (pat->k != act->k)
        return false;
    if (pat->k == K_LIST)
        return s_unify (pat->p1, act->p1, sub);
    if (pat->k == K_MAP)
        return s_unify (pat->p1, act->p1, sub) && s_unify (pat->p2, act->p2, sub);
    return true;
}

//  A new type in the compile arena (NULL on exhaustion).
static const cel_type_t *
s_type_new (s_checker_t *ck, int k, const cel_type_t *p1, const cel_type_t *p2)
{
    cel_type_t *t = cel_alloc (&ck->cel->arena, sizeof *t);
    if (!t)
        return NULL;
    t->k = (uint8_t) k;
    t->p1 = p1;
    t->p2 = p2;
    return t;
}

//  Substitute bound parameters in pat (unbound ones become dyn).
static const cel_type_t *
s_subst (s_checker_t *ck, const cel_type_t *pat, const cel_type_t **sub)
{
    if (pat->k == K_PARAM)
        return sub [pat->idx] && sub [pat->idx]->k != K_PARAM? sub [pat->idx]: &T_DYN;
    if (pat->k == K_LIST) {
        const cel_type_t *e = s_subst (ck, pat->p1, sub);
        return e? s_type_new (ck, K_LIST, e, NULL): NULL;
    }
    if (pat->k == K_MAP) {
        const cel_type_t *k = s_subst (ck, pat->p1, sub), *v = s_subst (ck, pat->p2, sub);
        return k && v? s_type_new (ck, K_MAP, k, v): NULL;
    }
    return pat;
}

//  The type of a literal list's elements or map's keys/values: one type
//  if all agree (null joins a nullable type), dyn otherwise.
static const cel_type_t *
s_join (const cel_type_t *a, const cel_type_t *b)
{
    if (!a)
        return b;
    if (s_type_eq (a, b))
        return a;
    if (a->k == K_NULL && s_nullable (b))
        return b;
    if (b->k == K_NULL && s_nullable (a))
        return a;
    return &T_DYN;
}

static const cel_type_t *s_check (s_checker_t *ck, cel_node_t *n, int depth);

//  Resolve a call against the overload table.
static const cel_type_t *
s_check_call (s_checker_t *ck, cel_node_t *n, int depth)
{
    if (n->fn == F_UNKNOWN) {
        s_cerr (ck, AUTHZ_CEL_ETYPE, n, "undeclared reference to '%s'", n->name? n->name: "?");
        return NULL;
    }
    const cel_type_t *at [3];
    if (n->nargs > 3) {
        s_cerr (ck, AUTHZ_CEL_ETYPE, n, "found no matching overload for '%s'", cel_fn_name (n->fn));
        return NULL;
    }
    for (uint32_t i = 0; i < n->nargs; i++)
        if (!(at [i] = s_check (ck, n->args [i], depth + 1)))
            return NULL;
    const cel_type_t *result = NULL;
    bool member = n->member;
    for (size_t o = 0; o < sizeof s_overloads / sizeof s_overloads [0]; o++) {
        const s_overload_t *ov = &s_overloads [o];
        if (ov->fn != n->fn || ov->member != member || ov->n != n->nargs)
            continue;
        const cel_type_t *sub [2] = {NULL, NULL};
        bool ok = true;
        for (uint32_t i = 0; i < n->nargs && ok; i++)
            ok = s_unify (ov->a [i], at [i], sub);
        if (!ok)
            continue;
        const cel_type_t *r = s_subst (ck, ov->r, sub);
        if (!r) {
            s_cerr (ck, AUTHZ_CEL_ELIMIT, n, "out of memory");
            return NULL;
        }
        result = !result || s_type_eq (result, r)? r: &T_DYN;
    }
    if (!result) {
        char args [200] = "";
        size_t used = 0;
        for (uint32_t i = 0; i < n->nargs && used < sizeof args - 1; i++) {
            char t [96];
            cel_type_str (at [i], t, sizeof t);
            used += (size_t) snprintf (args + used, sizeof args - used, "%s%s", i? ", ": "", t);
        }
        s_cerr (ck, AUTHZ_CEL_ETYPE, n, "found no matching overload for '%s' applied to '%s(%s)'",
                cel_fn_name (n->fn), member? "receiver ": "", args);
    }
    return result;
}

//  Require t to be bool (or dyn) for the operator named op.
static bool
s_want_bool (s_checker_t *ck, const cel_node_t *n, const cel_type_t *t, const char *op)
{
    if (t->k == K_BOOL || t->k == K_DYN)
        return true;
    char ts [96];
    cel_type_str (t, ts, sizeof ts);
    s_cerr (ck, AUTHZ_CEL_ETYPE, n, "found no matching overload for '%s' applied to '(%s)'", op, ts);
    return false;
}

//  Check a comprehension (expanded macro).
static const cel_type_t *
s_check_comp (s_checker_t *ck, cel_node_t *n, int depth)
{
    const cel_type_t *rt = s_check (ck, n->args [0], depth + 1);
    if (!rt)
        return NULL;
    const cel_type_t *vt = rt->k == K_LIST || rt->k == K_MAP? rt->p1: rt->k == K_DYN? &T_DYN: NULL;
    if (!vt) {
        char ts [96];
        cel_type_str (rt, ts, sizeof ts);
        s_cerr (ck, AUTHZ_CEL_ETYPE, n, "expression of type '%s' cannot be range of a comprehension", ts);
        return NULL;
    }
    //  the iteration variable is visible in the other arguments only
    n->slot = ck->nscope;
    ck->scope [ck->nscope].name = n->name;
    ck->scope [ck->nscope++].type = vt;
    if ((size_t) ck->nscope > ck->cel->nslots)
        ck->cel->nslots = (size_t) ck->nscope;
    const cel_type_t *at [3] = {NULL, NULL, NULL};
    bool ok = true;
    for (uint32_t i = 1; i < n->nargs && ok; i++)
        ok = (at [i] = s_check (ck, n->args [i], depth + 1)) != NULL;
    ck->nscope--;
    if (!ok)
        return NULL;
    bool pred = n->fn != M_MAP;
    if (pred && !s_want_bool (ck, n->args [1], at [1], "_&&_"))
        return NULL;
    const cel_type_t *res = &T_BOOL;
    if (n->fn == M_MAP)
        res = s_type_new (ck, K_LIST, at [1], NULL);
    if (n->fn == M_MAP_FILTER)
        res = s_type_new (ck, K_LIST, at [2], NULL);
    if (n->fn == M_FILTER)
        res = s_type_new (ck, K_LIST, vt, NULL);
    if (!res)
        s_cerr (ck, AUTHZ_CEL_ELIMIT, n, "out of memory");
    return res;
}

//  Find the variable a comprehension in scope declares with this name:
//  returns the comprehension's slot or -1.
static int
s_scope_find (const s_checker_t *ck, const char *name)
{
    for (int i = ck->nscope - 1; i >= 0; i--)
        if (!strcmp (ck->scope [i].name, name))
            return i;
    return -1;
}

//  Type-check n (and its children), resolving identifiers. Sets n->type.
static const cel_type_t *
s_check (s_checker_t *ck, cel_node_t *n, int depth)
{
    if (ck->rc)
        return NULL;
    if (depth > AUTHZ_CEL_MAX_DEPTH) {
        s_cerr (ck, AUTHZ_CEL_ELIMIT, n, "expression nested deeper than %d", AUTHZ_CEL_MAX_DEPTH);
        return NULL;
    }
    const cel_type_t *t = NULL;
    switch (n->kind) {
        case N_LIT: {
            static const cel_type_t *lit [] = {
                [K_NULL] = &T_NULL, [K_BOOL] = &T_BOOL, [K_INT] = &T_INT,
                [K_UINT] = &T_UINT, [K_DOUBLE] = &T_DOUBLE, [K_STRING] = &T_STRING,
                [K_BYTES] = &T_BYTES
            };
            t = lit [n->lit.k];
            break;
        }
        case N_IDENT: {
            int slot = s_scope_find (ck, n->name);
            if (slot >= 0) {
                n->kind = N_IVAR;
                n->slot = slot;
                t = ck->scope [slot].type;
                break;
            }
            for (size_t i = 0; i < ck->cel->nparams; i++)
                if (!strcmp (ck->cel->params [i].name, n->name)) {
                    n->kind = N_PARAM;
                    n->slot = (int32_t) i;
                    t = ck->cel->params [i].type;
                }
            if (!t)
                s_cerr (ck, AUTHZ_CEL_ETYPE, n, "undeclared reference to '%s'", n->name);
            break;
        }
        case N_SELECT: case N_HAS: {
            const cel_type_t *ot = s_check (ck, n->args [0], depth + 1);
            if (!ot)
                return NULL;
            if (ot->k == K_MAP)
                t = ot->p2;
            else
            if (ot->k == K_DYN)
                t = &T_DYN;
            else {
                char ts [96];
                cel_type_str (ot, ts, sizeof ts);
                s_cerr (ck, AUTHZ_CEL_ETYPE, n, "type '%s' does not support field selection", ts);
                return NULL;
            }
            if (n->kind == N_HAS)
                t = &T_BOOL;
            break;
        }
        case N_CALL:
            t = s_check_call (ck, n, depth);
            break;
        case N_AND: case N_OR:
            for (uint32_t i = 0; i < n->nargs; i++) {
                const cel_type_t *at = s_check (ck, n->args [i], depth + 1);
                if (!at || !s_want_bool (ck, n->args [i], at, n->kind == N_AND? "_&&_": "_||_"))
                    return NULL;
            }
            t = &T_BOOL;
            break;
        case N_COND: {
            const cel_type_t *c = s_check (ck, n->args [0], depth + 1);
            if (!c || !s_want_bool (ck, n->args [0], c, "_?_:_"))
                return NULL;
            const cel_type_t *a = s_check (ck, n->args [1], depth + 1);
            const cel_type_t *b = a? s_check (ck, n->args [2], depth + 1): NULL;
            if (!b)
                return NULL;
            const cel_type_t *sub [2] = {NULL, NULL};
            if (!s_unify (&T_PA, a, sub) || !s_unify (&T_PA, b, sub)) {
                char as [96], bs [96];
                cel_type_str (a, as, sizeof as);
                cel_type_str (b, bs, sizeof bs);
                s_cerr (ck, AUTHZ_CEL_ETYPE, n, "found no matching overload for '_?_:_' applied to '(bool, %s, %s)'", as, bs);
                return NULL;
            }
            t = s_subst (ck, &T_PA, sub);
            break;
        }
        case N_LIST: case N_MAP: {
            const cel_type_t *et [2] = {NULL, NULL};
            bool is_map = n->kind == N_MAP;
            for (uint32_t i = 0; i < n->nargs; i++) {
                const cel_type_t *at = s_check (ck, n->args [i], depth + 1);
                if (!at)
                    return NULL;
                int w = is_map? (int) (i % 2): 0;
                et [w] = s_join (et [w], at);
            }
            t = s_type_new (ck, is_map? K_MAP: K_LIST, et [0]? et [0]: &T_DYN,
                            is_map? (et [1]? et [1]: &T_DYN): NULL);
            if (!t)
                s_cerr (ck, AUTHZ_CEL_ELIMIT, n, "out of memory");
            break;
        }
        case N_COMP:
            t = s_check_comp (ck, n, depth);
            break;
        default:
            s_cerr (ck, AUTHZ_CEL_ETYPE, n, "unsupported expression");
    }
    n->type = t;
    return t;
}

//  ---------------------------------------------------------------------
//  Entry point.

/*  Type-check self->root; see authz_cel_private.h. */
int
cel_check (authz_cel_t *self, char *err, size_t err_len)
{
    s_checker_t ck = {.cel = self, .err = err, .err_len = err_len};
    const cel_type_t *t = s_check (&ck, self->root, 0);
    if (ck.rc)
        return ck.rc;
    if (t->k != K_BOOL) {
        char ts [96];
        cel_type_str (t, ts, sizeof ts);
        cel_errf (err, err_len, "expected a bool condition expression output, but got '%s'", ts);
        return AUTHZ_CEL_ENOTBOOL;
    }
    return 0;
}

