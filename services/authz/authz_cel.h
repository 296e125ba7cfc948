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

#define AUTHZ_CEL_ESYNTAX   -101  /* expression does not parse */
#define AUTHZ_CEL_ETYPE     -102  /* type error (compile) or bad context value type (eval) */
#define AUTHZ_CEL_EMISSING  -103  /* a parameter the evaluation needs is absent from the context */
#define AUTHZ_CEL_EEVAL     -104  /* runtime error: overflow, division by zero, bad conversion */
#define AUTHZ_CEL_ELIMIT    -105  /* expression or evaluation over a size/cost limit */
#define AUTHZ_CEL_ENOTBOOL  -106  /* expression does not yield a bool */

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

/*  The compiled expression's source text (never NULL). */
const char *authz_cel_expression (const authz_cel_t *self);

/*  Text for an AUTHZ_CEL_E* code; never NULL. */
const char *authz_cel_strerror (int code);

void authz_cel_destroy (authz_cel_t **self_p);

#endif
