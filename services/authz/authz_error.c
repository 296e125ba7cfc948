/*  authz_error.c — OpenFGA-compatible error codes. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include "authz_error.h"

/*  Record code and message; return -code. */
int
authz_error_set (authz_error_t *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start (ap, fmt);
        err->code = code;
        vsnprintf (err->message, sizeof err->message, fmt, ap);
        va_end (ap);
    }
    return -code;
}

/*  Reset err to "no error". */
void
authz_error_clear (authz_error_t *err)
{
    if (err) {
        err->code = 0;
        err->message [0] = '\0';
    }
}

/*  OpenFGA's error name for a code (positive or negative). */
const char *
authz_strerror (int code)
{
    switch (abs (code)) {
        case 0: return "ok";
        case AUTHZ_EVALIDATION: return "validation_error";
        case AUTHZ_EMODEL_NOT_FOUND: return "authorization_model_not_found";
        case AUTHZ_ETOO_COMPLEX: return "authorization_model_resolution_too_complex";
        case AUTHZ_EINVALID_WRITE: return "invalid_write_input";
        case AUTHZ_EDUP_TUPLE: return "cannot_allow_duplicate_tuples_in_one_request";
        case AUTHZ_ETOKEN: return "invalid_continuation_token";
        case AUTHZ_EWRITE_FAILED: return "write_failed_due_to_invalid_input";
        case AUTHZ_ELATEST_NOT_FOUND: return "latest_authorization_model_not_found";
        case AUTHZ_ETYPE_NOT_FOUND: return "type_not_found";
        case AUTHZ_EREL_NOT_FOUND: return "relation_not_found";
        case AUTHZ_EINVALID_TUPLE: return "invalid_tuple";
        case AUTHZ_EEXCEEDED_ITEMS: return "exceeded_entity_limit";
        case AUTHZ_EDUP_CONTEXTUAL: return "duplicate_contextual_tuple";
        case AUTHZ_EINTERNAL: return "internal_error";
        case AUTHZ_ESTORE_NOT_FOUND: return "store_id_not_found";
        default: return "unknown_error";
    }
}
