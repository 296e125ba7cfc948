/*  fuzz_dsl.c — libFuzzer target for the OpenFGA modeling language.

    The input is DSL text (copied and NUL-terminated; an input with a NUL
    byte is cut there, as a C string would be). authz_dsl_parse (syntax)
    and authz_dsl_load (syntax and semantic rules) run on it; each model
    they produce is compiled with authz_model_compile and destroyed. Any
    input: no crash, leak or read out of bounds; success gives a model and
    an empty error array, BUS_EINVAL no model and at least one error.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "authz_dsl.h"
#include "bus_error.h"
#include "authz_model.h"
#include "authz_validate.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/*  Check that a decoder's result is coherent, compile the model when there
    is one, and release both. */
static void
s_check (int rc, json_t *model, json_t *errors)
{
    if (rc == 0 ? !model : model != NULL)
        abort ();
    if (rc != BUS_ENOMEM && !json_is_array (errors))
        abort ();
    if ((rc == 0 && json_array_size (errors)) || (rc == BUS_EINVAL && !json_array_size (errors)))
        abort ();
    if (model) {
        authz_model_t *compiled = NULL;
        authz_error_t err;
        if (authz_model_compile (&compiled, model, NULL, &err) == 0 && !compiled)
            abort ();
        authz_model_destroy (&compiled);
    }
    json_decref (model);
    json_decref (errors);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    char *text = malloc (size + 1);
    if (!text)
        return 0;
    memcpy (text, data, size);
    text [size] = '\0';

    json_t *model = NULL, *errors = NULL;
    int rc = authz_dsl_parse (&model, text, &errors);
    s_check (rc, model, errors);

    model = errors = NULL;
    rc = authz_dsl_load (&model, text, &errors);
    s_check (rc, model, errors);
    free (text);
    return 0;
}
