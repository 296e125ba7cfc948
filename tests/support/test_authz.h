/*  test_authz.h — an authz engine on a store of its own, for the authz
    unit tests: a fresh temporary directory, an LMDB environment in it, and
    one model written and loaded.

    Nothing here needs cmocka: errors are returned (bus_error.h codes, or
    the engine's negative OpenFGA codes).
*/
#ifndef TEST_AUTHZ_H
#define TEST_AUTHZ_H

#include "authz_check.h"

typedef struct {
    char dir [64];                  /* removed by test_authz_destroy */
    authz_store_t *store;
    const authz_model_t *model;     /* the model written, owned by store */
} test_authz_t;

/*  A store under a fresh /tmp/sanctum-<name>.XXXXXX with model written:
    OpenFGA JSON when its first non-blank character is '{', else the DSL.
    Returns 0 and *out, or an error (nothing left behind). */
int test_authz_new (test_authz_t **out, const char *name, const char *model);

/*  Close the store and remove the directory; accepts NULL, nulls the
    caller's pointer. */
void test_authz_destroy (test_authz_t **self_p);

#endif
