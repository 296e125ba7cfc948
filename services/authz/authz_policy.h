/*  authz_policy.h — decisions about agent actions, and approver chains.

    A policy file (JSON) maps each action to how it is decided:

    {"store_id": "01J...",                  optional: the store it decides on
     "actions": {"po.write": {
        "permit_relation":    "writer",     principal must have it on the resource
        "amount_field":       "amount",     context field carrying the amount
        "automatic_below":    10000,        below this the action is allowed outright
        "owner_relation":     "owner",      principal#owner -> the accountable user
        "hierarchy_relation": "manager",    user#manager -> that user's manager
        "approval_relation":  "approver",   manager approver resource, with a condition
        "limit_parameter":    "limit",      the condition's parameter holding the limit
        "escalate_after_s":   900,          per level, before moving up
        "max_levels":         8 }}}         how far up the hierarchy to walk

    authz_policy_decide() answers allow, deny {reason}, or approval_required
    {chain}: from the principal's owner, walk hierarchy_relation upward and
    take every manager up to and including the first whose approval tuple's
    condition holds for the amount (a Check of manager approval_relation
    resource with context {amount_field: amount}). No such manager: deny
    "no approver with authority". Every question is asked of the relationship
    engine, so the policy never disagrees with Check.
*/
#ifndef AUTHZ_POLICY_H
#define AUTHZ_POLICY_H

#include <jansson.h>

#include "authz_check.h"

#define AUTHZ_POLICY_MAX_LEVELS 32
#define AUTHZ_POLICY_MAX_BYTES  (1024 * 1024)
#define AUTHZ_POLICY_MAX_ACTIONS 256

typedef struct authz_policy_t authz_policy_t;

/*  Parse and check a policy (JSON object): exactly the fields above, an
    unknown one is refused. Returns 0 and *out, or BUS_EINVAL with a
    message naming the action and field in err. */
int authz_policy_new (authz_policy_t **out, json_t *policy, char *err, size_t err_len)
    __attribute__((warn_unused_result));

/*  Load from a file (at most AUTHZ_POLICY_MAX_BYTES). */
int authz_policy_load (authz_policy_t **out, const char *path, char *err, size_t err_len)
    __attribute__((warn_unused_result));

void authz_policy_destroy (authz_policy_t **self_p);

/*  The store the policy names (store_id), or NULL: the default store. A
    decide request's own store_id comes first. */
const char *authz_policy_store (authz_policy_t *self);

/*  The policy as JSON (borrowed). */
json_t *authz_policy_json (authz_policy_t *self);

/*  Decide. *decision is a new object: {"decision": "allow"} |
    {"decision": "deny", "reason": "..."} | {"decision":
    "approval_required", "chain": [{"user", "limit", "escalate_after"}],
    "amount"}. Returns 0, or an engine error (-2000 etc. with err set):
    an engine error is not a deny, the caller reports it. */
int authz_policy_decide (authz_policy_t *self, authz_store_t *store,
                         const authz_model_t *model, const char *principal,
                         const char *action, const char *resource, json_t *context,
                         json_t **decision, authz_error_t *err);

#endif
