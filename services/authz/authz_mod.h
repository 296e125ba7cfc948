/*  authz_mod.h — OpenFGA's modular models (schema 1.2): an `fga.mod`
    manifest naming module files, each `module NAME` with its types,
    `extend type` blocks and conditions, combined into one model.

    fga.mod is YAML of this shape (OpenFGA's; other YAML is refused):

        schema: '1.2'
        contents:
          - core.fga
          - team1/project.fga

    authz_mod_parse reads it into OpenFGA's transformer form: {schema:
    {value, line, column}, contents: {value: [{value, line, column}],
    line, column}} (0-based lines and columns, as the case files give
    them), or errors: missing/mistyped schema or contents, a version other
    than 1.2, an item that is not a string, does not end in `.fga`, or is
    not a plain relative path (absolute, `..`, percent-encoded).

    authz_mod_combine joins modules ([{file, text}], in the manifest's
    order) as OpenFGA's transformer does: every type, in file order, with
    metadata {module, source_info {file}}; then each `extend type`'s
    relations added to its type (a relation from another module than its
    type's carries its own module and source_info); conditions with
    metadata {module, source_info}. schema_version is "1.2". Errors carry
    "file": a file's syntax errors (its parser's, line and column), "file
    is not a module", "duplicate condition NAME", "extended type NAME does
    not exist", "relation NAME already exists on type TYPE" (each at the
    name in its file). The model is not otherwise validated here:
    authz_model_validate does that (its errors have no file).

    authz_mod_load reads fga.mod at path and the module files next to it,
    then combines; a file that cannot be read is an error naming it.

    Returns 0 with the result (new reference), or BUS_EINVAL with
    *errors (a new array; also set, empty, on success when asked),
    BUS_EIO, BUS_ENOMEM.
*/
#ifndef AUTHZ_MOD_H
#define AUTHZ_MOD_H

#include <jansson.h>

#define AUTHZ_MOD_MAX_FILES 256

int authz_mod_parse (const char *text, json_t **mod_out, json_t **errors_out);

int authz_mod_combine (json_t *files, json_t **model_out, json_t **errors_out);

int authz_mod_load (const char *path, json_t **model_out, json_t **errors_out);

#endif
