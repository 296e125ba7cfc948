/*  fuzz_dsl.c — libFuzzer target for the model decoders: the OpenFGA
    modeling language and the model's JSON form.

    The input is DSL text (copied and NUL-terminated; an input with a NUL
    byte is cut there, as a C string would be). authz_dsl_parse (syntax)
    and authz_dsl_load (syntax and semantic rules) run on it; each model
    they produce is compiled with authz_model_compile and destroyed. An
    input that starts with '{' is also read as a JSON model (the form
    authz.write_model carries): normalised, validated and compiled, valid
    or not. Any
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

/*  A decoder's errors must match its result: an array (unless memory ran
    out), empty on success, not empty on BUS_EINVAL. */
static void
s_check_errors (int rc, json_t *errors)
{
    if (rc != BUS_ENOMEM && !json_is_array (errors))
        abort ();
    if ((rc == 0 && json_array_size (errors)) || (rc == BUS_EINVAL && !json_array_size (errors)))
        abort ();
}

/*  Compile model (borrowed) and destroy the result. */
static void
s_compile (json_t *model)
{
    authz_model_t *compiled = NULL;
    authz_error_t err;
    if (authz_model_compile (&compiled, model, NULL, &err) == 0 && !compiled)
        abort ();
    authz_model_destroy (&compiled);
}

/*  Check a DSL decoder's result, compile its model if any, release both. */
static void
s_check (int rc, json_t *model, json_t *errors)
{
    if (rc == 0 ? !model : model != NULL)
        abort ();
    s_check_errors (rc, errors);
    if (model)
        s_compile (model);
    json_decref (model);
    json_decref (errors);
}

/*  The JSON form: normalise, validate, and compile even when invalid
    (compile must refuse what it cannot build without crashing). */
static void
s_json_model (const char *text)
{
    json_t *model = json_loads (text, JSON_REJECT_DUPLICATES, NULL);
    json_t *errors = NULL;
    if (json_is_object (model) && authz_model_normalize (model) == 0) {
        int rc = authz_model_validate (model, &errors);
        s_check_errors (rc, errors);
        s_compile (model);
    }
    json_decref (errors);
    json_decref (model);
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
    if (text [0] == '{')
        s_json_model (text);
    free (text);
    return 0;
}
