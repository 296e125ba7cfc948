/*  authz_error.h — OpenFGA-compatible error codes for the authz engine.

    Engine functions return int: 0 for success, or the negative OpenFGA
    error code (-2000 validation error, -2002 resolution too complex, ...),
    or a negative BUS_E* code for storage failures. When an authz_error_t
    is passed, it receives the positive code and a message worded as
    OpenFGA words it.
*/
#ifndef AUTHZ_ERROR_H
#define AUTHZ_ERROR_H

#include <stddef.h>

#define AUTHZ_EVALIDATION       2000  /* validation error */
#define AUTHZ_EMODEL_NOT_FOUND  2001  /* authorization model not found */
#define AUTHZ_ETOO_COMPLEX      2002  /* resolution too complex (depth 25) */
#define AUTHZ_EINVALID_WRITE    2003  /* invalid write input */
#define AUTHZ_EDUP_TUPLE        2004  /* duplicate tuple in one request */
#define AUTHZ_ETOKEN            2007  /* invalid continuation token */
#define AUTHZ_EWRITE_FAILED     2017  /* tuple exists (write) or missing (delete) */
#define AUTHZ_ELATEST_NOT_FOUND 2020  /* no model in the store yet */
#define AUTHZ_ETYPE_NOT_FOUND   2021  /* type not found */
#define AUTHZ_EREL_NOT_FOUND    2022  /* relation not found */
#define AUTHZ_EINVALID_TUPLE    2027  /* invalid (contextual) tuple */
#define AUTHZ_EEXCEEDED_ITEMS   2033  /* too many items in a request */
#define AUTHZ_EDUP_CONTEXTUAL   2039  /* duplicate contextual tuple */
#define AUTHZ_EINTERNAL         4000  /* internal error (storage) */
#define AUTHZ_ESTORE_NOT_FOUND  5002  /* no such store (OpenFGA's NotFoundErrorCode) */

#define AUTHZ_ERRMSG_MAX 256

typedef struct {
    int code;                       /* positive OpenFGA code; 0 = none */
    char message [AUTHZ_ERRMSG_MAX];
} authz_error_t;

/*  Record code and a printf-style message in err (NULL allowed) and return
    -code, so callers can write `return authz_error_set (err, 2000, ...)`. */
int authz_error_set (authz_error_t *err, int code, const char *fmt, ...)
    __attribute__((format (printf, 3, 4)));

/*  Clear err (NULL allowed). */
void authz_error_clear (authz_error_t *err);

/*  OpenFGA's name for a code ("validation_error", ...); never NULL. */
const char *authz_strerror (int code);

#endif
