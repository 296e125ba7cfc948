/*  authz_dsl.h — OpenFGA modeling language (schema 1.1) to API JSON.

    A hand-written parser for the DSL described by OpenFGA's ANTLR grammar
    (OpenFGALexer.g4 / OpenFGAParser.g4): `model` / `schema 1.1`, `type`,
    `relations`, `define r: <expr>` where expr combines a direct assignment
    `[user, user:*, group#member, user with cond]`, computed relations,
    `x from y`, `or`, `and`, `but not` and parentheses; `condition
    name(p: T, m: map<T>) { CEL }`; `#` comment lines (also after a space at the
    end of a line). `module name` files with `extend type` are parsed (no
    schema_version): the model then has "module": name, and each extended
    type "extend": true, for authz_mod.h to combine modules into one model.

    The output is the authorization model in OpenFGA's API JSON form, as the
    OpenFGA transformer emits it: {schema_version, type_definitions[{type,
    relations{r: this | computedUserset | tupleToUserset | union |
    intersection | difference}, metadata (null when the type has no
    relations) {relations{r: {directly_related_user_types[{type, relation |
    wildcard, condition}]}}}}], conditions{name: {name, expression,
    parameters{p: {type_name, generic_types}}}} (absent when none)}. Note the
    rewrite keys computedUserset/tupleToUserset are camelCase in that form.

    Errors are JSON objects {msg, line{start,end}, column{start,end},
    metadata{symbol, errorType?}} with 0-based lines and 0-based columns
    (the convention of OpenFGA's validation case files). Syntax errors stop
    the parse (one error; the message imitates ANTLR's wording but error
    recovery is not emulated). Duplicate relations, conditions and condition
    parameters are reported during the parse, as OpenFGA's listener does.

    Limits: input over AUTHZ_DSL_MAX_SIZE bytes, more than AUTHZ_DSL_MAX_TYPES
    types, AUTHZ_DSL_MAX_RELATIONS relations per type or parentheses nested
    deeper than AUTHZ_DSL_MAX_DEPTH give an error. Text that is not valid
    UTF-8 is refused (an error at the first bad byte), never stored cut.

    This is syntax only: semantic rules (undefined types and relations,
    entry points, ...) are in authz_validate.h (authz_model_validate_dsl).
*/
#ifndef AUTHZ_DSL_H
#define AUTHZ_DSL_H

#include <jansson.h>

#define AUTHZ_DSL_MAX_SIZE       (1024 * 1024)
#define AUTHZ_DSL_MAX_TYPES      10000
#define AUTHZ_DSL_MAX_RELATIONS  10000
#define AUTHZ_DSL_MAX_DEPTH      32

/*  Parse text (NUL-terminated). Returns 0 and *model_out (new reference) on
    success. On a syntax or limit error returns BUS_EINVAL / BUS_ETOOBIG /
    BUS_EDEPTH with *model_out NULL. errors_out (may be NULL) receives a new
    JSON array of errors (empty on success). */
int authz_dsl_parse (json_t **model_out, const char *text, json_t **errors_out)
    __attribute__((warn_unused_result));

#endif
