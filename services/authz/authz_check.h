/*  authz_check.h — OpenFGA queries: Check, BatchCheck, Expand, ListObjects,
    ListUsers.

    Every query runs against one compiled model and one LMDB read
    transaction, with optional contextual tuples (at most 100, validated
    against the model: an invalid one is error 2027) overlaying the stored
    tuples, and an optional request context for conditions (a tuple's own
    condition context wins over the request's).

    Semantics follow OpenFGA: a cycle resolves to "not related" (and makes
    an exclusion's subtracted branch false), a path of more than 25
    dispatches is error 2002, a condition whose parameters are missing is
    error 2000 when it decides the answer. Stored tuples the model no
    longer allows are ignored.

    Check and BatchCheck are authz_check.c; ListObjects, ListUsers and
    Expand authz_list.c; the query state and tuple reading they share
    authz_query.c (authz_query.h, private to them).
*/
#ifndef AUTHZ_CHECK_H
#define AUTHZ_CHECK_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "authz_error.h"
#include "authz_model.h"
#include "authz_tuples.h"

#define AUTHZ_RESOLVE_DEPTH   25     /* OpenFGA's resolve node limit */
#define AUTHZ_MAX_BATCH       50     /* checks per BatchCheck */
#define AUTHZ_MAX_LIST_RESULTS 1000  /* ListObjects / ListUsers results */
#define AUTHZ_MAX_USER_FILTERS 1     /* OpenFGA accepts exactly one */

#define AUTHZ_BUDGET_COST    10000000  /* CEL cost units a request may spend
                                          (authz_cel.h: about 10 ns a unit) */
#define AUTHZ_BUDGET_TUPLES  1000000   /* tuples a request may read */

/*  What one request may spend, summed over everything it does (every
    check of a BatchCheck, every candidate of a ListObjects): CEL cost
    units over every condition evaluated (the context's conversion, the
    comprehension steps, the regular expressions, the strings built and
    scanned), tuples read (stored and contextual, one at least per read),
    and the resolution depth. Past a limit the request fails with 2002
    (resolution too complex), whatever it had found so far: the answer
    must not depend on where it stopped. Zero limits take the defaults. */
typedef struct {
    uint64_t max_cost;          /* 0: AUTHZ_BUDGET_COST */
    uint64_t max_tuples;        /* 0: AUTHZ_BUDGET_TUPLES */
    int max_depth;              /* 0 (or more than AUTHZ_RESOLVE_DEPTH): that */
    uint64_t cost, tuples;      /* spent so far (the engine adds to them) */
    bool over;                  /* a limit was passed (sticky) */
    /* A request nobody waits for any more (a streamed answer's client
       went away) stops as one over its budget: stop (NULL: never) is
       asked every few spends, and true ends the request, whatever it was
       doing. */
    bool (*stop) (void *arg);
    void *stop_arg;
    unsigned polls;             /* spends since stop was last asked */
    bool stopped;               /* stop said so (over is set too) */
} authz_budget_t;

/*  Per-request extras: contextual tuples, the condition context, and the
    budget (NULL: a fresh default budget for each call). */
typedef struct {
    const authz_tuple_t *tuples;
    size_t n_tuples;
    json_t *context;            /* JSON object or NULL, borrowed */
    authz_budget_t *budget;     /* borrowed; spent by the call */
} authz_extra_t;

/*  Is user related to object by relation? Sets *allowed. Returns 0,
    -2000 (invalid request or a condition lacking parameters), -2002,
    -2027, or a BUS_E* code. extra may be NULL. */
int authz_check (authz_store_t *store, const authz_model_t *model,
                 const char *object, const char *relation, const char *user,
                 const authz_extra_t *extra, bool *allowed, authz_error_t *err)
    __attribute__((warn_unused_result));

/*  BatchCheck: checks is a JSON array of {tuple_key {object, relation,
    user}, contextual_tuples? {tuple_keys [...]} | [...], context?,
    correlation_id}. *result is a new object {correlation_id: {allowed} |
    {error {code, message}}}. Every check spends the one budget (NULL: a
    default one for the batch). Returns 0, -2000 (bad shape, duplicate or
    missing correlation id, more than 50 checks), -2002 when the budget
    ran out (the whole batch fails). */
int authz_batch_check (authz_store_t *store, const authz_model_t *model,
                       json_t *checks, authz_budget_t *budget, json_t **result,
                       authz_error_t *err);

/*  Expand object#relation one level into OpenFGA's userset tree JSON:
    {"root": node}, node = {name, leaf {users {users [..]} | computed
    {userset} | tupleToUserset {tupleset, computed [{userset}]}} | union
    {nodes} | intersection {nodes} | difference {base, subtract}}. */
int authz_expand (authz_store_t *store, const authz_model_t *model,
                  const char *object, const char *relation,
                  const authz_extra_t *extra, json_t **tree, authz_error_t *err);

/*  Objects of type to which user has relation: *objects is a new JSON
    array of "type:id" strings (unordered, at most 1000). The candidates
    come from walking the rewrites backwards from the user (the reverse
    index), each decided by Check; a relation that reaches too much for
    that walk falls back to trying every object of the type. Returns 0,
    -2000, -2002, -2021 unknown type, -2022 unknown relation, -2027. */
int authz_list_objects (authz_store_t *store, const authz_model_t *model,
                        const char *type, const char *relation, const char *user,
                        const authz_extra_t *extra, json_t **objects,
                        authz_error_t *err);

/*  Where ListObjects gives each object, as soon as it is decided. */
typedef struct {
    /* 0 goes on; anything else stops the query, which returns it */
    int (*found) (const char *object, void *arg);
    void *arg;
    size_t max;                 /* stop after this many (0: no cap) */
} authz_found_t;

/*  ListObjects, each object to sink->found as it is decided (each once,
    unordered), without waiting for the end: the streamed variant
    (StreamedListObjects). Same candidates, checks, budget and errors as
    authz_list_objects, but an error found after some objects were given
    (2002 over the budget, 2000 a condition missing parameters) is
    returned after them: a streamed answer ends with it. Returns what
    authz_list_objects does, or what found returned. */
int authz_list_objects_each (authz_store_t *store, const authz_model_t *model,
                             const char *type, const char *relation, const char *user,
                             const authz_extra_t *extra, const authz_found_t *sink,
                             authz_error_t *err);

/*  Users of the filter's type (filter "type" or "type#relation") that
    have relation on object: *users is a new JSON array of strings
    "type:id", "type:*" or "type:id#relation". Returns 0, -2000, -2002,
    -2021, -2022, -2027. */
int authz_list_users (authz_store_t *store, const authz_model_t *model,
                      const char *object, const char *relation, const char *filter,
                      const authz_extra_t *extra, json_t **users, authz_error_t *err);

#endif
