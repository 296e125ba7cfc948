/*  test_authz.c — an authz engine on a store of its own, for tests. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "authz_dsl.h"
#include "bus_error.h"
#include "test_authz.h"
#include "test_service.h"

/*  The model text as JSON (parsed or from the DSL), or NULL. */
static json_t *
s_model (const char *text)
{
    while (isspace ((unsigned char) *text))
        text++;
    if (*text == '{')
        return json_loads (text, 0, NULL);
    json_t *model = NULL, *errors = NULL;
    int rc = authz_dsl_parse (&model, text, &errors);
    json_decref (errors);
    return rc? NULL: model;
}

/*  A store with a model; see the header. */
int
test_authz_new (test_authz_t **out, const char *name, const char *model_text)
{
    *out = NULL;
    test_authz_t *self = calloc (1, sizeof *self);
    if (!self)
        return BUS_ENOMEM;
    json_t *model = NULL;
    int rc = test_service_tmpdir (self->dir, sizeof self->dir, name);
    if (rc) {
        free (self);
        return rc;
    }
    rc = authz_store_open (&self->store, self->dir, 64 << 20);
    if (rc == 0)
        rc = (model = s_model (model_text))? 0: BUS_EINVAL;
    char id [AUTHZ_MODEL_ID_LEN + 1];
    if (rc == 0)
        rc = authz_store_write_model (self->store, model, id, NULL);
    if (rc == 0)
        rc = authz_store_model (self->store, NULL, &self->model, NULL);
    json_decref (model);
    if (rc)
        test_authz_destroy (&self);
    *out = self;
    return rc;
}

/*  Close and remove; see the header. */
void
test_authz_destroy (test_authz_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    test_authz_t *self = *self_p;
    authz_store_destroy (&self->store);
    test_service_rmtree (self->dir);
    free (self);
    *self_p = NULL;
}
