/*  authz_cel.h — the CEL subset OpenFGA conditions use.

    A condition in an OpenFGA model is {name, expression, parameters} where
    parameters maps a name to {"type_name": "TYPE_NAME_INT", "generic_types":
    [...]} (TYPE_NAME_ANY, BOOL, STRING, INT, UINT, DOUBLE, DURATION,
    TIMESTAMP, MAP, LIST, IPADDRESS). The expression is compiled once
    against those parameter types and evaluated per check with a context:
    the tuple's condition context merged with the request context, the
    tuple's values winning (the caller merges; see authz_cel_eval).

    Errors are negative AUTHZ_CEL_E* codes; messages go to err. OpenFGA maps
    a missing parameter (and a context value that does not convert to the
    declared type) to validation error 2000.
*/
#ifndef AUTHZ_CEL_H
#define AUTHZ_CEL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUTHZ_CEL_ESYNTAX   -101  /* expression does not parse */
#define AUTHZ_CEL_ETYPE     -102  /* type error (compile) or bad context value type (eval) */
#define AUTHZ_CEL_EMISSING  -103  /* a parameter the evaluation needs is absent from the context */
#define AUTHZ_CEL_EEVAL     -104  /* runtime error: overflow, division by zero, bad conversion */
#define AUTHZ_CEL_ELIMIT    -105  /* expression or evaluation over a size/cost limit */
#define AUTHZ_CEL_ENOTBOOL  -106  /* expression does not yield a bool */
#define AUTHZ_CEL_EBUDGET   -107  /* the caller's cost allowance ran out (authz_cel_run) */

/*  Limits on input, every one explicit; going over one is AUTHZ_CEL_ELIMIT.
    The cost is one unit per evaluated node, comprehension step and list
    element built or scanned, plus one per 16 string bytes produced or
    scanned. OpenFGA bounds cost with cel-go's own cost model (its server
    default is 100); this budget is a safety bound, not that model. */
#define AUTHZ_CEL_MAX_EXPR_LEN     8192    /* bytes of expression source */
#define AUTHZ_CEL_MAX_DEPTH        100     /* nesting of the syntax tree */
#define AUTHZ_CEL_MAX_NODES        4096    /* nodes in the syntax tree */
#define AUTHZ_CEL_MAX_PARAMS       64      /* declared parameters */
#define AUTHZ_CEL_MAX_CONTEXT_VALUES 10000 /* values converted from one context */
#define AUTHZ_CEL_MAX_COST         1000000 /* evaluation cost units */
#define AUTHZ_CEL_MAX_EVAL_MEMORY  (16u << 20) /* bytes allocated by one evaluation */
#define AUTHZ_CEL_MAX_REGEX_LEN    1024    /* bytes of a matches() pattern */
#define AUTHZ_CEL_MAX_REGEX_SUBJECT 4096   /* bytes of a string matches() scans:
                                              the POSIX matcher used is quadratic
                                              on some patterns where RE2 is linear */
#define AUTHZ_CEL_MAX_REGEX_PROGRAM 20000  /* a pattern's size with its counted
                                              repetitions expanded, as glibc
                                              compiles it (about 1 us a unit) */

/*  What matches() costs, in the units above. A match scans the subject
    from every start position (glibc's search is quadratic where RE2 is
    linear), so it is charged (n (n + 1) / 2) x m / 8 units for a subject
    of n bytes and a translated pattern of m bytes, or n x m / 8 when the
    pattern is anchored (^, no alternation); a pattern that is not a
    literal is compiled per evaluation, charged 100 units per unit of its
    expanded size. Measured on glibc 2.36: about 10 ns a unit either way,
    as for the rest of the evaluation. */
#define AUTHZ_CEL_REGEX_STEP_DIV    8
#define AUTHZ_CEL_REGEX_COMPILE_UNIT 100

typedef struct authz_cel_t authz_cel_t;

/*  Compile expr with the given parameter declarations (a JSON object as in
    the model's condition "parameters"; NULL = none). Returns 0 and *out, or
    a negative code with a message in err. */
int authz_cel_compile (authz_cel_t **out, const char *expr, json_t *params,
                       char *err, size_t err_len)
    __attribute__((warn_unused_result));

/*  Evaluate with context (a JSON object; NULL = empty). Returns 1 (true),
    0 (false), or a negative code with a message in err. Thread-safe on a
    shared compiled condition. When the context lacks parameters, returns
    AUTHZ_CEL_EMISSING and, if missing is non-NULL, sets it to a new JSON
    array of the missing parameter names (caller decrefs). */
int authz_cel_eval (const authz_cel_t *self, json_t *context,
                    json_t **missing, char *err, size_t err_len);

/*  OpenFGA's partial evaluation, as its ListObjects and ListUsers use it:
    absent parameters are CEL "unknown" values, absorbed by && || and
    comprehensions like errors are. Returns 1 or 0 when the result does
    not depend on an absent parameter, AUTHZ_CEL_EMISSING when it does,
    or another negative code. Whenever a declared parameter is absent and
    missing is non-NULL, *missing is set to the new array of absent names
    (caller decrefs), also with a 1 or 0 result. OpenFGA's Check treats any
    absent parameter as an error (use authz_cel_eval); its list endpoints
    accept a true result despite absent ones and error on anything else. */
int authz_cel_eval_partial (const authz_cel_t *self, json_t *context,
                            json_t **missing, char *err, size_t err_len);

/*  One evaluation with the caller's say over its inputs and cost. */
typedef struct {
    json_t *context;            /* the tuple's condition context, or NULL */
    json_t *fallback;           /* the request context: a parameter absent
                                   from context is looked up here (NULL: none) */
    bool partial;               /* as authz_cel_eval_partial */
    uint64_t allowance;         /* units this evaluation may spend; 0 or more
                                   than AUTHZ_CEL_MAX_COST: that limit */
    uint64_t spent;             /* out: units spent (also on failure) */
} authz_cel_run_t;

/*  Evaluate as authz_cel_eval (or authz_cel_eval_partial) with context
    and fallback merged (context's values winning) without copying
    either, within run->allowance: running out of the allowance before
    AUTHZ_CEL_MAX_COST is AUTHZ_CEL_EBUDGET (the caller's budget is spent,
    not this expression's limit). The conversion of the context counts
    one unit a value converted. Thread-safe as authz_cel_eval. */
int authz_cel_run (const authz_cel_t *self, authz_cel_run_t *run,
                   json_t **missing, char *err, size_t err_len);

/*  The compiled expression's source text (never NULL). */
const char *authz_cel_expression (const authz_cel_t *self);

/*  Text for an AUTHZ_CEL_E* code; never NULL. */
const char *authz_cel_strerror (int code);

void authz_cel_destroy (authz_cel_t **self_p);

#endif
