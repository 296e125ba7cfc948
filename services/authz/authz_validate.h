/*  authz_validate.h — normalise and validate OpenFGA authorization models.

    The canonical model form in Sanctum is OpenFGA's API JSON as the
    OpenFGA transformer emits it (and as `model_json` in the conformance
    files): snake_case for schema_version, type_definitions,
    directly_related_user_types, type_name, generic_types, source_info;
    camelCase for the rewrite keys computedUserset and tupleToUserset (that
    is how OpenFGA's protobuf JSON names them). authz_model_normalize()
    converts the other spellings tools emit into that form.

    authz_model_validate() applies OpenFGA's semantic rules (the rules and
    messages of openfga/language's validator): names (reserved self/this,
    naming patterns), schema version (1.1 or 1.2), undefined types,
    relations and conditions, tupleset (`from`) rules, duplicate types,
    type restrictions and partial definitions, relations without an entry
    point or in a loop, unused conditions, condition key/name mismatch,
    several modules in one file, condition parameter types.

    Errors are a JSON array of {msg, metadata{symbol, errorType, typeName?,
    relation?}} and, for authz_model_validate_dsl(), line{start,end} and
    column{start,end} (0-based) located in the DSL text the way OpenFGA's
    validator locates them.
*/
#ifndef AUTHZ_VALIDATE_H
#define AUTHZ_VALIDATE_H

#include <jansson.h>

/*  Rename alternative key spellings in place (see above). Only keys at
    their structural positions are renamed, never relation, type or
    condition names. Returns 0, or BUS_EINVAL if model is not an object. */
int authz_model_normalize (json_t *model);

/*  Validate a normalised model. Returns 0 when valid, BUS_EINVAL when the
    model breaks a rule (errors in *errors_out), BUS_ETOOBIG when it is too
    complex to check. errors_out (may be NULL) gets a new array (empty when
    valid). */
int authz_model_validate (json_t *model, json_t **errors_out)
    __attribute__((warn_unused_result));

/*  The same, with error positions taken from the model's DSL source dsl. */
int authz_model_validate_dsl (json_t *model, const char *dsl, json_t **errors_out)
    __attribute__((warn_unused_result));

/*  Parse DSL text and validate the result: syntax errors first, semantic
    errors when the syntax is right. Returns 0 and *model_out when valid. */
int authz_dsl_load (json_t **model_out, const char *dsl, json_t **errors_out)
    __attribute__((warn_unused_result));

#endif
