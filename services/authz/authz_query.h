/*  authz_query.h — one OpenFGA query's state and the tuple reading every
    query shares.

    Not an API of the service: the query files include it (authz_check.c
    for Check and BatchCheck, authz_list.c for ListObjects, ListUsers and
    Expand); authz_check.h is their public face.

    One request = one authz_query_t: the model, one LMDB read transaction
    (authz_query_begin / authz_query_end), the validated contextual tuples
    and the request context. Tuples read during a request are handed
    around as pointers into the LMDB map or into the caller's contextual
    tuples: valid until authz_query_end, so the hot path copies no strings.
    A query belongs to one thread.
*/
#ifndef AUTHZ_QUERY_H
#define AUTHZ_QUERY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include "authz_check.h"

#define AUTHZ_QUERY_OBJ_MAX (AUTHZ_MAX_FIELD + 1)   /* a "type:id" and its NUL */

/*  A parsed subject: "type:id", "type:*" or "type:id#relation". */
typedef struct {
    const char *text;           /* the whole string */
    char object [AUTHZ_QUERY_OBJ_MAX]; /* "type:id" */
    int type;                   /* type id */
    int relation;               /* relation id or -1 */
    bool wildcard;
} authz_user_t;

/*  One entry of the path (for cycle detection). */
typedef struct {
    const char *object;
    int type;
    int relation;
} authz_visit_t;

/*  A growable list of tuples (pointers into the map or the request). */
typedef struct {
    authz_tuple_t *v;
    size_t n, cap;
    authz_tuple_t local [8];
} authz_tlist_t;

#define AUTHZ_QUERY_CACHE_MAX 7 /* fits authz_tlist_t.local: never allocates */

/*  The last small tuple set read (see authz_query.c). */
typedef struct {
    bool valid, complete;
    int type, rel;
    char object [AUTHZ_QUERY_OBJ_MAX];
    authz_tlist_t tuples;
} authz_qcache_t;

/*  Per-request state. */
typedef struct {
    authz_store_t *store;
    const authz_model_t *model;
    bus_txn_t *txn;
    const authz_tuple_t *ctx_tuples;
    size_t n_ctx;
    json_t *context;
    authz_error_t *err;
    authz_user_t user;          /* Check / ListObjects subject */
    authz_visit_t path [AUTHZ_RESOLVE_DEPTH + 2];
    int path_len;
    const char *filter_type;    /* ListUsers */
    size_t filter_type_len;
    const char *filter_rel;     /* ListUsers: "" for none */
    authz_qcache_t cache;
    authz_budget_t *budget;     /* the request's (extra's, or own_budget) */
    authz_budget_t own_budget;
    int max_depth;
    /* One-entry memos of model lookups (see authz_query.c) */
    const char *memo_type_name;
    size_t memo_type_len;
    int memo_type;
    const authz_rw_t *memo_rw;
    int memo_rw_type, memo_rw_rel;
} authz_query_t;

/*  An empty list (no allocation until it outgrows its local storage). */
void authz_tlist_init (authz_tlist_t *l);
/*  Free a list's heap storage; the list is empty and usable after. */
void authz_tlist_free (authz_tlist_t *l);
/*  Append t (a scan callback; arg is the list): 0 or BUS_ENOMEM. */
int authz_tlist_add (const authz_tuple_t *t, void *arg);

/*  Parse a subject string against the model into u (u->text borrows
    text). Returns 0 or -2000 with err set. */
int authz_user_parse (const authz_model_t *m, const char *text, authz_user_t *u,
                      authz_error_t *err);

/*  Set up q: validate the contextual tuples of extra (2027; extra may be
    NULL), begin the read transaction. The subject and the ListUsers
    filter are the caller's to set. Returns 0 or a negative code with err
    set; call authz_query_end either way. */
int authz_query_begin (authz_query_t *q, authz_store_t *store, const authz_model_t *model,
                       const authz_extra_t *extra, authz_error_t *err);
/*  End the read transaction (no-op when none). */
void authz_query_end (authz_query_t *q);

/*  Spend cost CEL units and tuples reads from the request's budget.
    Returns 0, or -2002 (err set) once over, and from then on. */
int authz_query_spend (authz_query_t *q, uint64_t cost, uint64_t tuples);

/*  Type id of the object string's type, or -1. */
int authz_query_object_type (const authz_model_t *m, const char *object);
/*  The relation a tuple-to-userset rw computes on user type ut (-1 when
    that type has none), memoised in q. */
int authz_query_ttu_computed (authz_query_t *q, const authz_rw_t *rw, int ut);

/*  Evaluate t's condition with the request context: 1 met (or none), 0
    not met, -2000 on a missing parameter or an evaluation error, -2002
    over the request's budget (sticky) or the expression's own limits
    (AUTHZ_CEL_ELIMIT: that evaluation only). */
int authz_query_condition (authz_query_t *q, const authz_tuple_t *t);

/*  Append the tuples of object#relation (rel its id on type) to out:
    contextual ones first, then the stored ones the model still allows.
    Returns 0 or a BUS_E* code. */
int authz_query_read (authz_query_t *q, int type, int rel, const char *object,
                      const char *relation, authz_tlist_t *out);
/*  The tuples a leaf of object's rewrite reads into out (initialised
    here; the caller frees it): rel's own for a direct relation (rw NULL
    or AUTHZ_RW_THIS), the tupleset's for a tuple-to-userset rw. *read is
    the relation read. Returns 0 or a BUS_E* code. */
int authz_query_read_leaf (authz_query_t *q, int type, const char *object,
                           const authz_relation_t *rel, const authz_rw_t *rw,
                           authz_tlist_t *out, const authz_relation_t **read);
/*  Does object#relation@user exist with its condition met? 1, 0 or a
    negative code. */
int authz_query_read_exact (authz_query_t *q, int type, int rel, const char *object,
                            const char *relation, const char *user);
/*  Split a tuple's user "type:id#rel" into obj ("type:id" with a NUL),
    its type id and *rel (the text after '#', or NULL). Returns false if
    it does not fit or its type is unknown. */
bool authz_query_split_user (authz_query_t *q, const char *user,
                             char obj [AUTHZ_QUERY_OBJ_MAX], int *type, const char **rel);

/*  authz_check.c: resolve object#rel (rel on type) for q's user, as
    OpenFGA's ResolveCheck. Returns 1, 0 or a negative code; sets *cycle
    when a cycle decided a false. */
int authz_query_resolve (authz_query_t *q, int type, const char *object, int rel,
                         int depth, bool *cycle);

#endif
