/*  authz_cel.c — the CEL subset OpenFGA conditions use: the arena,
    compilation and the public API.

    Compilation decodes the parameter declarations, then parses
    (authz_cel_parse.c), type-checks (authz_cel_check.c) and compiles the
    constant regular expressions (authz_cel_lib.c); evaluation is
    authz_cel_eval.c. authz_cel_private.h says what each file holds.

    A compiled condition is read-only; every evaluation allocates from its
    own arena, so one condition may be evaluated by many threads at once.
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

#define S_MAX_PARAM_NAME   128     /* bytes of a parameter name */
#define S_MAX_TYPE_DEPTH   8       /* list<map<...>> nesting in a declaration */
#define S_MAX_COMPILE_MEM  (4u << 20)

//  ---------------------------------------------------------------------
//  Arena: bump allocation in chunks, freed at once, with a byte cap.

//  Allocate n zeroed bytes, 16-aligned; NULL when over the cap or out of
//  memory (the caller reports ELIMIT).
void *
cel_alloc (cel_arena_t *a, size_t n)
{
    if (n > a->limit)
        return NULL;
    n = n? (n + 15) & ~(size_t) 15: 16;
    cel_chunk_t *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 16384? n: 16384;
        if (a->total + cap > a->limit) {
            cap = n;
            if (a->total + cap > a->limit)
                return NULL;
        }
        c = malloc (sizeof (cel_chunk_t) + cap);
        if (!c)
            return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = a->head;
        a->head = c;
        a->total += cap;
    }
    void *p = (char *) c->data + c->used;
    c->used += n;
    memset (p, 0, n);
    return p;
}

//  Free every chunk.
void
cel_arena_free (cel_arena_t *a)
{
    while (a->head) {
        cel_chunk_t *next = a->head->next;
        free (a->head);
        a->head = next;
    }
    a->total = 0;
}

//  Copy n bytes into the arena with a terminating NUL.
char *
cel_strndup (cel_arena_t *a, const char *s, size_t n)
{
    char *p = cel_alloc (a, n + 1);
    if (p && n)
        memcpy (p, s, n);
    return p;
}

//  Write a printf-style message into err (NULL or 0 length allowed).
void
cel_errf (char *err, size_t err_len, const char *fmt, ...)
{
    if (!err || !err_len)
        return;
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (err, err_len, fmt, ap);
    va_end (ap);
}
//  ---------------------------------------------------------------------
//  The shared types and the function names.

const cel_type_t T_DYN = {K_DYN, 0, NULL, NULL};
const cel_type_t T_NULL = {K_NULL, 0, NULL, NULL};
const cel_type_t T_BOOL = {K_BOOL, 0, NULL, NULL};
const cel_type_t T_INT = {K_INT, 0, NULL, NULL};
const cel_type_t T_UINT = {K_UINT, 0, NULL, NULL};
const cel_type_t T_DOUBLE = {K_DOUBLE, 0, NULL, NULL};
const cel_type_t T_STRING = {K_STRING, 0, NULL, NULL};
const cel_type_t T_BYTES = {K_BYTES, 0, NULL, NULL};
const cel_type_t T_DUR = {K_DURATION, 0, NULL, NULL};
const cel_type_t T_TS = {K_TIMESTAMP, 0, NULL, NULL};
const cel_type_t T_IP = {K_IP, 0, NULL, NULL};
const cel_type_t T_PA = {K_PARAM, 0, NULL, NULL};
const cel_type_t T_PB = {K_PARAM, 1, NULL, NULL};
const cel_type_t T_LISTA = {K_LIST, 0, &T_PA, NULL};
const cel_type_t T_MAPAB = {K_MAP, 0, &T_PA, &T_PB};
const cel_type_t T_LISTDYN = {K_LIST, 0, &T_DYN, NULL};
const cel_type_t T_MAPDYN = {K_MAP, 0, &T_DYN, &T_DYN};

//  The name of function fn as cel-go spells it.
const char *
cel_fn_name (int fn)
{
    static const char *names [] = {
        "?", "_+_", "_-_", "_*_", "_/_", "_%_", "-_", "!_", "_==_", "_!=_",
        "_<_", "_<=_", "_>_", "_>=_", "@in", "_[_]", "size", "contains",
        "startsWith", "endsWith", "matches", "int", "uint", "double",
        "string", "bytes", "bool", "duration", "timestamp", "dyn",
        "ipaddress", "in_cidr", "getFullYear", "getMonth", "getDayOfYear",
        "getDayOfMonth", "getDate", "getDayOfWeek", "getHours", "getMinutes",
        "getSeconds", "getMilliseconds"
    };
    return fn >= 0 && (size_t) fn < sizeof names / sizeof names [0]? names [fn]: "?";
}

//  Compilation and the public API.

//  Decode a parameter type reference {"type_name": ..., "generic_types": [...]}.
static const cel_type_t *
s_decode_type (authz_cel_t *self, json_t *j, int depth, char *err, size_t err_len)
{
    static const struct { const char *name; const cel_type_t *type; } names [] = {
        {"TYPE_NAME_ANY", &T_DYN}, {"TYPE_NAME_BOOL", &T_BOOL},
        {"TYPE_NAME_STRING", &T_STRING}, {"TYPE_NAME_INT", &T_INT},
        {"TYPE_NAME_UINT", &T_UINT}, {"TYPE_NAME_DOUBLE", &T_DOUBLE},
        {"TYPE_NAME_DURATION", &T_DUR}, {"TYPE_NAME_TIMESTAMP", &T_TS},
        {"TYPE_NAME_IPADDRESS", &T_IP}, {"TYPE_NAME_LIST", &T_LISTA},
        {"TYPE_NAME_MAP", &T_MAPAB}
    };
    const char *name = json_is_object (j)? json_string_value (json_object_get (j, "type_name")): NULL;
    if (depth > S_MAX_TYPE_DEPTH) {
        cel_errf (err, err_len, "parameter type nested deeper than %d", S_MAX_TYPE_DEPTH);
        return NULL;
    }
    for (size_t i = 0; name && i < sizeof names / sizeof names [0]; i++) {
        if (strcmp (names [i].name, name))
            continue;
        const cel_type_t *t = names [i].type;
        if (t->k != K_LIST && t->k != K_MAP)
            return t;
        json_t *g = json_object_get (j, "generic_types");
        if (json_array_size (g) != 1) {
            cel_errf (err, err_len, "type `%s` requires 1 generic types; found %zu", name, json_array_size (g));
            return NULL;
        }
        const cel_type_t *e = s_decode_type (self, json_array_get (g, 0), depth + 1, err, err_len);
        if (!e)
            return NULL;
        cel_type_t *nt = cel_alloc (&self->arena, sizeof *nt);
        if (!nt) {
            cel_errf (err, err_len, "out of memory");
            return NULL;
        }
        nt->k = t->k;
        nt->p1 = t->k == K_LIST? e: &T_STRING;
        nt->p2 = t->k == K_MAP? e: NULL;
        return nt;
    }
    cel_errf (err, err_len, "unknown parameter type '%s'", name? name: "(none)");
    return NULL;
}

//  Compile the regular expressions matches() calls give as literals.
static int
s_precompile (authz_cel_t *self, cel_node_t *n)
{
    for (uint32_t i = 0; i < n->nargs; i++) {
        int rc = s_precompile (self, n->args [i]);
        if (rc)
            return rc;
    }
    if (n->kind != N_CALL || n->fn != F_MATCHES || n->nargs != 2
    ||  n->args [1]->kind != N_LIT || n->args [1]->lit.k != K_STRING)
        return 0;
    regex_t **list = realloc (self->regexes, (self->nregexes + 1) * sizeof *list);
    if (!list)
        return AUTHZ_CEL_ELIMIT;
    self->regexes = list;
    regex_t *re = malloc (sizeof *re);
    if (!re)
        return AUTHZ_CEL_ELIMIT;
    char msg [CEL_MAX_ERRMSG];
    if (cel_re_compile (n->args [1]->lit.s.p, n->args [1]->lit.s.n, re, &n->re_info, NULL, 0,
                        msg, sizeof msg)) {
        free (re);              //  cel-go reports a bad pattern when evaluating
        return 0;
    }
    self->regexes [self->nregexes++] = re;
    n->re = re;
    return 0;
}

int
authz_cel_compile (authz_cel_t **out, const char *expr, json_t *params,
                   char *err, size_t err_len)
{
    assert (out);
    *out = NULL;
    int rc = 0;
    authz_cel_t *self = NULL;
    if (err && err_len)
        err [0] = 0;
    if (!expr) {
        cel_errf (err, err_len, "no expression");
        rc = AUTHZ_CEL_ESYNTAX;
        goto done;
    }
    size_t len = strnlen (expr, AUTHZ_CEL_MAX_EXPR_LEN + 1);
    if (len > AUTHZ_CEL_MAX_EXPR_LEN) {
        cel_errf (err, err_len, "expression longer than %d bytes", AUTHZ_CEL_MAX_EXPR_LEN);
        rc = AUTHZ_CEL_ELIMIT;
        goto done;
    }
    if (params && !json_is_object (params)) {
        cel_errf (err, err_len, "parameters must be a JSON object");
        rc = AUTHZ_CEL_ETYPE;
        goto done;
    }
    size_t np = params? json_object_size (params): 0;
    if (np > AUTHZ_CEL_MAX_PARAMS) {
        cel_errf (err, err_len, "more than %d parameters", AUTHZ_CEL_MAX_PARAMS);
        rc = AUTHZ_CEL_ELIMIT;
        goto done;
    }
    self = calloc (1, sizeof *self);
    if (!self) {
        rc = AUTHZ_CEL_ELIMIT;
        goto done;
    }
    self->arena.limit = S_MAX_COMPILE_MEM;
    self->source = cel_strndup (&self->arena, expr, len);
    self->params = cel_alloc (&self->arena, (np + 1) * sizeof *self->params);
    if (!self->source || !self->params) {
        rc = AUTHZ_CEL_ELIMIT;
        goto done;
    }
    const char *pname;
    json_t *ptype;
    json_object_foreach (params, pname, ptype) {
        size_t nl = strlen (pname);
        if (nl == 0 || nl > S_MAX_PARAM_NAME) {
            cel_errf (err, err_len, "parameter name empty or longer than %d bytes", S_MAX_PARAM_NAME);
            rc = AUTHZ_CEL_ETYPE;
            goto done;
        }
        cel_param_t *p = &self->params [self->nparams++];
        p->name = cel_strndup (&self->arena, pname, nl);
        char why [CEL_MAX_ERRMSG] = "";
        p->type = s_decode_type (self, ptype, 0, why, sizeof why);
        if (!p->name || !p->type) {
            cel_errf (err, err_len, "failed to decode parameter type for parameter '%s': %s", pname, why);
            rc = AUTHZ_CEL_ETYPE;
            goto done;
        }
    }
    if ((rc = cel_parse (self, len, err, err_len)))
        goto done;
    if ((rc = cel_check (self, err, err_len)))
        goto done;
    if ((rc = s_precompile (self, self->root)))
        cel_errf (err, err_len, "out of memory");
done:
    if (rc == AUTHZ_CEL_ELIMIT && err && err_len && !err [0])
        cel_errf (err, err_len, "expression over the compile memory limit");
    if (rc)
        authz_cel_destroy (&self);
    *out = self;
    return rc;
}

//  Evaluate for both entry points; partial selects unknowns for absent
int
authz_cel_eval (const authz_cel_t *self, json_t *context,
                json_t **missing, char *err, size_t err_len)
{
    authz_cel_run_t run = {.context = context};
    return cel_run (self, &run, missing, err, err_len);
}

int
authz_cel_eval_partial (const authz_cel_t *self, json_t *context,
                        json_t **missing, char *err, size_t err_len)
{
    authz_cel_run_t run = {.context = context, .partial = true};
    return cel_run (self, &run, missing, err, err_len);
}

int
authz_cel_run (const authz_cel_t *self, authz_cel_run_t *run,
               json_t **missing, char *err, size_t err_len)
{
    return cel_run (self, run, missing, err, err_len);
}

const char *
authz_cel_expression (const authz_cel_t *self)
{
    return self && self->source? self->source: "";
}

const char *
authz_cel_strerror (int code)
{
    switch (code) {
        case AUTHZ_CEL_ESYNTAX: return "syntax error";
        case AUTHZ_CEL_ETYPE: return "type error";
        case AUTHZ_CEL_EMISSING: return "missing parameter";
        case AUTHZ_CEL_EEVAL: return "evaluation error";
        case AUTHZ_CEL_ELIMIT: return "limit exceeded";
        case AUTHZ_CEL_ENOTBOOL: return "not a bool";
        case AUTHZ_CEL_EBUDGET: return "cost budget spent";
        default: return code >= 0? "ok": "unknown error";
    }
}

void
authz_cel_destroy (authz_cel_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    authz_cel_t *self = *self_p;
    for (size_t i = 0; i < self->nregexes; i++) {
        regfree (self->regexes [i]);
        free (self->regexes [i]);
    }
    free (self->regexes);
    cel_arena_free (&self->arena);
    free (self);
    *self_p = NULL;
}
