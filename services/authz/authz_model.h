/*  authz_model.h — a compiled OpenFGA authorization model (schema 1.1).

    authz_model_compile() takes a normalized model in OpenFGA's API JSON
    ({schema_version, type_definitions, conditions}) and builds a
    typesystem: types and relations interned to small integer ids (O(1)
    lookups by name), each relation's rewrite as a tree of authz_rw_t, its
    directly related user types as authz_allowed_t, and every condition
    compiled once through authz_cel. Validation of the model's semantics
    is authz_validate's job; compile only rejects what it cannot build
    (unknown names, bad shapes) with a 2000 validation error.

    A compiled model is immutable and may be shared by threads. Pointers
    returned by the accessors live as long as the model.
*/
#ifndef AUTHZ_MODEL_H
#define AUTHZ_MODEL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include "authz_cel.h"
#include "authz_error.h"

#define AUTHZ_MAX_TYPES        1024   /* type definitions per model */
#define AUTHZ_MAX_RELATIONS     512   /* relations per type */
#define AUTHZ_MAX_CONDITIONS    256   /* conditions per model */
#define AUTHZ_MAX_REWRITE_DEPTH  32   /* nesting of union/intersection/... */
#define AUTHZ_MAX_NAME          254   /* type, relation, condition name */
#define AUTHZ_MODEL_ID_LEN       26   /* ULID text */

typedef struct authz_model_t authz_model_t;

typedef enum {
    AUTHZ_RW_THIS,          /* direct: tuples on object#relation */
    AUTHZ_RW_COMPUTED,      /* another relation of the same object */
    AUTHZ_RW_TTU,           /* tupleset relation, then a relation on each user */
    AUTHZ_RW_UNION,
    AUTHZ_RW_INTERSECTION,
    AUTHZ_RW_DIFFERENCE     /* children [0] base, [1] subtract */
} authz_rw_kind_t;

typedef struct authz_rw_t authz_rw_t;
struct authz_rw_t {
    authz_rw_kind_t kind;
    int relation;           /* COMPUTED: relation id; TTU: tupleset relation id */
    const char *computed;   /* TTU: computed relation name (resolved per user type) */
    int n_children;
    authz_rw_t **children;
};

/*  One entry of directly_related_user_types. */
typedef struct {
    int type;               /* type id */
    int relation;           /* relation id on that type, or -1 */
    bool wildcard;          /* type:* */
    int condition;          /* condition id, or -1 */
} authz_allowed_t;

typedef struct {
    const char *name;
    int id;
    authz_rw_t *rewrite;
    authz_allowed_t *allowed;
    int n_allowed;
} authz_relation_t;

typedef struct {
    const char *name;
    int id;
    int n_relations;
    authz_relation_t *relations;
} authz_type_t;

typedef struct {
    const char *name;
    authz_cel_t *cel;       /* NULL if the expression did not compile */
} authz_condition_t;

/*  Compile model (borrowed; a reference is kept for authz_model_json) with
    the given id (NULL = none). Returns 0 and *out, or -2000 with err set,
    or BUS_ENOMEM. */
int authz_model_compile (authz_model_t **out, json_t *model, const char *id,
                         authz_error_t *err)
    __attribute__((warn_unused_result));

/*  Free; accepts NULL, nulls the caller's pointer. */
void authz_model_destroy (authz_model_t **self_p);

/*  The model's id ("" if none) and its source JSON (borrowed). */
const char *authz_model_id (const authz_model_t *self);
json_t *authz_model_json (const authz_model_t *self);

/*  Type id by name (len bytes), or -1. */
int authz_model_type (const authz_model_t *self, const char *name, size_t len);

/*  Number of types; the type with id 0 <= id < n. */
int authz_model_n_types (const authz_model_t *self);
const authz_type_t *authz_model_type_at (const authz_model_t *self, int id);

/*  Relation id on type by name (len bytes), or -1 (also for a bad type). */
int authz_model_relation (const authz_model_t *self, int type,
                          const char *name, size_t len);

/*  The relation (type, rel) or NULL when out of range. */
const authz_relation_t *authz_model_relation_at (const authz_model_t *self,
                                                 int type, int rel);

/*  Condition id by name, or -1; the condition with that id or NULL. */
int authz_model_condition (const authz_model_t *self, const char *name, size_t len);
const authz_condition_t *authz_model_condition_at (const authz_model_t *self, int id);

#define AUTHZ_ANY_CONDITION (-2)

/*  Find the allowed-type entry of relation (type, rel) matching a user of
    user_type, with user_rel (-1 for a plain object) or wildcard, and
    condition (a condition id, -1 for none, AUTHZ_ANY_CONDITION for any).
    Returns the first match or NULL. */
const authz_allowed_t *authz_model_allowed (const authz_model_t *self, int type,
                                            int rel, int user_type, int user_rel,
                                            bool wildcard, int condition);

#endif
