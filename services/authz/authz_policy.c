/*  authz_policy.c — policy file, decide, approver chains. */
#include "authz_policy.h"
#include "bus_error.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    char *action;
    char *permit_relation;
    char *amount_field;
    double automatic_below;
    char *owner_relation;
    char *hierarchy_relation;
    char *approval_relation;
    char *limit_parameter;
    long escalate_after_s;
    int max_levels;
} s_rule_t;

struct authz_policy_t {
    json_t *json;
    s_rule_t *rules;
    size_t n_rules;
};

/*  The fields a rule may have: anything else is a mistake worth refusing. */
static bool
s_known_field (const char *key)
{
    static const char *const fields [] = {
        "permit_relation", "amount_field", "automatic_below", "owner_relation", "hierarchy_relation",
        "approval_relation", "limit_parameter", "escalate_after_s", "max_levels", NULL
    };
    for (size_t i = 0; fields [i]; i++)
        if (strcmp (fields [i], key) == 0)
            return true;
    return false;
}

/*  A required non-empty string field of a rule, copied. */
static int
s_str (json_t *rule, const char *action, const char *field, char **out, char *err, size_t err_len)
{
    json_t *v = json_object_get (rule, field);
    if (!json_is_string (v) || json_string_length (v) == 0 || json_string_length (v) > 50) {
        snprintf (err, err_len, "policy action '%s': '%s' must be a relation name (1-50 chars)", action, field);
        return BUS_EINVAL;
    }
    *out = strdup (json_string_value (v));
    return *out ? 0 : BUS_ENOMEM;
}

int
authz_policy_new (authz_policy_t **out, json_t *policy, char *err, size_t err_len)
{
    *out = NULL;
    json_t *actions = json_object_get (policy, "actions");
    json_t *store = json_object_get (policy, "store_id");
    if (!json_is_object (policy) || !json_is_object (actions) || json_object_size (actions) == 0
        || json_object_size (policy) != 1 + (store != NULL) || json_object_size (actions) > AUTHZ_POLICY_MAX_ACTIONS) {
        snprintf (err, err_len, "policy must be an object with 'actions', an object of 1 to %d actions, "
                  "and optionally 'store_id'", AUTHZ_POLICY_MAX_ACTIONS);
        return BUS_EINVAL;
    }
    if (store && (!json_is_string (store) || json_string_length (store) != 26)) {
        snprintf (err, err_len, "policy store_id must be a store's id (26 characters)");
        return BUS_EINVAL;
    }
    authz_policy_t *self = calloc (1, sizeof *self);
    if (!self || !(self->rules = calloc (json_object_size (actions), sizeof *self->rules))) {
        free (self);
        return BUS_ENOMEM;
    }
    self->json = json_incref (policy);
    int rc = 0;
    const char *action;
    json_t *rule;
    json_object_foreach (actions, action, rule) {
        s_rule_t *r = &self->rules [self->n_rules++];
        r->action = strdup (action);
        if (!json_is_object (rule)) {
            snprintf (err, err_len, "policy action '%s' must be an object", action);
            rc = BUS_EINVAL;
            break;
        }
        const char *key;
        json_t *value;
        json_object_foreach (rule, key, value) {
            if (!s_known_field (key)) {
                snprintf (err, err_len, "policy action '%s': unknown field '%.60s'", action, key);
                rc = BUS_EINVAL;
                break;
            }
        }
        if (rc)
            break;
        if ((rc = s_str (rule, action, "permit_relation", &r->permit_relation, err, err_len))
        ||  (rc = s_str (rule, action, "amount_field", &r->amount_field, err, err_len))
        ||  (rc = s_str (rule, action, "owner_relation", &r->owner_relation, err, err_len))
        ||  (rc = s_str (rule, action, "hierarchy_relation", &r->hierarchy_relation, err, err_len))
        ||  (rc = s_str (rule, action, "approval_relation", &r->approval_relation, err, err_len))
        ||  (rc = s_str (rule, action, "limit_parameter", &r->limit_parameter, err, err_len)))
            break;
        json_t *below = json_object_get (rule, "automatic_below");
        json_t *esc = json_object_get (rule, "escalate_after_s");
        json_t *levels = json_object_get (rule, "max_levels");
        if (!json_is_number (below) || json_number_value (below) < 0) {
            snprintf (err, err_len, "policy action '%s': 'automatic_below' must be a number >= 0", action);
            rc = BUS_EINVAL;
            break;
        }
        if (!json_is_integer (esc) || json_integer_value (esc) < 1 || json_integer_value (esc) > 7 * 86400) {
            snprintf (err, err_len, "policy action '%s': 'escalate_after_s' must be an integer in [1, 604800]", action);
            rc = BUS_EINVAL;
            break;
        }
        if (levels && (!json_is_integer (levels) || json_integer_value (levels) < 1
                       || json_integer_value (levels) > AUTHZ_POLICY_MAX_LEVELS)) {
            snprintf (err, err_len, "policy action '%s': 'max_levels' must be in [1, %d]", action,
                      AUTHZ_POLICY_MAX_LEVELS);
            rc = BUS_EINVAL;
            break;
        }
        r->automatic_below = json_number_value (below);
        r->escalate_after_s = (long) json_integer_value (esc);
        r->max_levels = levels ? (int) json_integer_value (levels) : 8;
    }
    if (rc) {
        authz_policy_destroy (&self);
        return rc;
    }
    *out = self;
    return 0;
}

int
authz_policy_load (authz_policy_t **out, const char *path, char *err, size_t err_len)
{
    struct stat st;
    *out = NULL;
    if (stat (path, &st) != 0 || st.st_size > AUTHZ_POLICY_MAX_BYTES) {
        snprintf (err, err_len, "policy %s: missing, unreadable or over %d bytes", path, AUTHZ_POLICY_MAX_BYTES);
        return BUS_EINVAL;
    }
    json_error_t jerr;
    json_t *policy = json_load_file (path, JSON_REJECT_DUPLICATES, &jerr);
    if (!policy) {
        snprintf (err, err_len, "policy %s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
        return BUS_EINVAL;
    }
    int rc = authz_policy_new (out, policy, err, err_len);
    json_decref (policy);
    return rc;
}

void
authz_policy_destroy (authz_policy_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    authz_policy_t *self = *self_p;
    for (size_t i = 0; i < self->n_rules; i++) {
        s_rule_t *r = &self->rules [i];
        free (r->action);
        free (r->permit_relation);
        free (r->amount_field);
        free (r->owner_relation);
        free (r->hierarchy_relation);
        free (r->approval_relation);
        free (r->limit_parameter);
    }
    free (self->rules);
    json_decref (self->json);
    free (self);
    *self_p = NULL;
}

/*  The store the policy decides on (its store_id), or NULL. */
const char *
authz_policy_store (authz_policy_t *self)
{
    return json_string_value (json_object_get (self->json, "store_id"));
}

json_t *
authz_policy_json (authz_policy_t *self)
{
    return self->json;
}

static json_t *
s_deny (const char *fmt, const char *a, const char *b)
{
    char reason [600];
    snprintf (reason, sizeof reason, fmt, a, b);
    return json_pack ("{s:s, s:s}", "decision", "deny", "reason", reason);
}

/*  The single user (filter "user") related to object by relation, the
    first in sort order when there are several; NULL if none. Caller frees. */
static int
s_one_user (authz_store_t *store, const authz_model_t *model, const char *object,
            const char *relation, char **out, authz_error_t *err)
{
    json_t *users = NULL;
    *out = NULL;
    int rc = authz_list_users (store, model, object, relation, "user", NULL, &users, err);
    if (rc)
        return rc;
    const char *best = NULL;
    size_t i;
    json_t *u;
    json_array_foreach (users, i, u) {
        const char *s = json_string_value (u);
        if (s && strchr (s, ':') && !strchr (s, '#') && !strstr (s, ":*")
            && (!best || strcmp (s, best) < 0))
            best = s;
    }
    if (best)
        *out = strdup (best);
    json_decref (users);
    return 0;
}

/*  The approval limit recorded on manager's approval tuple, or NaN. */
static double
s_limit (authz_store_t *store, s_rule_t *r, const char *manager, const char *resource)
{
    authz_tuple_t filter = { .object = resource, .relation = r->approval_relation, .user = manager };
    json_t *tuples = NULL;
    char *token = NULL;
    double limit = NAN;
    if (authz_store_read (store, &filter, 1, NULL, &tuples, &token, NULL) == 0 && json_array_size (tuples)) {
        json_t *ctx = json_object_get (json_object_get (json_object_get (json_array_get (tuples, 0), "key"),
                                                        "condition"), "context");
        json_t *v = json_object_get (ctx, r->limit_parameter);
        if (json_is_number (v))
            limit = json_number_value (v);
        else if (json_is_string (v))
            limit = strtod (json_string_value (v), NULL);
    }
    json_decref (tuples);
    free (token);
    return limit;
}

int
authz_policy_decide (authz_policy_t *self, authz_store_t *store, const authz_model_t *model,
                     const char *principal, const char *action, const char *resource,
                     json_t *context, json_t **decision, authz_error_t *err)
{
    *decision = NULL;
    s_rule_t *r = NULL;
    for (size_t i = 0; i < self->n_rules && !r; i++)
        if (strcmp (self->rules [i].action, action) == 0)
            r = &self->rules [i];
    if (!r) {
        *decision = s_deny ("no policy for action '%s'%s", action, "");
        return 0;
    }
    /* may the principal do this at all? */
    authz_extra_t extra = { .context = context };
    bool allowed = false;
    int rc = authz_check (store, model, resource, r->permit_relation, principal, &extra, &allowed, err);
    if (rc)
        return rc;
    if (!allowed) {
        char what [300];
        snprintf (what, sizeof what, "%s of %s", r->permit_relation, resource);
        *decision = s_deny ("%s is not %s", principal, what);
        return 0;
    }
    json_t *amount_v = json_object_get (context, r->amount_field);
    if (!json_is_number (amount_v) || json_number_value (amount_v) < 0) {
        *decision = s_deny ("context field '%s' must carry a non-negative amount%s", r->amount_field, "");
        return 0;
    }
    double amount = json_number_value (amount_v);
    if (amount < r->automatic_below) {
        *decision = json_pack ("{s:s}", "decision", "allow");
        return 0;
    }
    /* the chain: owner, then managers upward until one's limit covers */
    char *current = NULL;
    rc = s_one_user (store, model, principal, r->owner_relation, &current, err);
    if (rc)
        return rc;
    if (!current) {
        *decision = s_deny ("%s has no %s to answer for it", principal, r->owner_relation);
        return 0;
    }
    json_t *chain = json_array ();
    json_t *limit_ctx = json_pack ("{s:f}", r->amount_field, amount);
    bool covered = false;
    for (int level = 0; level < r->max_levels && !covered && rc == 0; level++) {
        char *manager = NULL;
        rc = s_one_user (store, model, current, r->hierarchy_relation, &manager, err);
        if (rc || !manager)
            break;
        /* a cycle in the hierarchy ends the walk */
        bool seen = false;
        size_t i;
        json_t *entry;
        json_array_foreach (chain, i, entry)
            seen = seen || strcmp (json_string_value (json_object_get (entry, "user")), manager) == 0;
        if (seen) {
            free (manager);
            break;
        }
        authz_extra_t limit_extra = { .context = limit_ctx };
        bool covers = false;
        rc = authz_check (store, model, resource, r->approval_relation, manager, &limit_extra, &covers, err);
        if (rc == -AUTHZ_EVALIDATION) {
            /* a manager without an approval tuple, or whose condition
               cannot be evaluated, has no authority: not an error */
            rc = 0;
            authz_error_clear (err);
            covers = false;
        }
        double limit = s_limit (store, r, manager, resource);
        json_t *e = json_pack ("{s:s, s:I}", "user", manager, "escalate_after", (json_int_t) r->escalate_after_s);
        json_object_set_new (e, "limit", isnan (limit) ? json_null () : json_real (limit));
        json_array_append_new (chain, e);
        covered = covers;
        free (current);
        current = manager;
    }
    free (current);
    json_decref (limit_ctx);
    if (rc) {
        json_decref (chain);
        return rc;
    }
    if (!covered) {
        json_decref (chain);
        *decision = json_pack ("{s:s, s:s}", "decision", "deny", "reason", "no approver with authority");
        return 0;
    }
    *decision = json_pack ("{s:s, s:o, s:f}", "decision", "approval_required", "chain", chain,
                           "amount", amount);
    return 0;
}
