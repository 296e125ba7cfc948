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

void authz_cel_destroy (authz_cel_t **self_p);

#endif
