/*  ciba_internal.h — what the ciba-broker's files share: the broker's
    state, the approval store and chain (ciba_service.c), and the oidc
    backend (ciba_oidc.c). Not for other modules.

    Approvals are JSON objects (ciba_service.c says their members); every
    function taking a txn works in that write transaction, its errors
    sticky there, its events appended to its outbox. Reactor thread only.
*/
#ifndef CIBA_INTERNAL_H
#define CIBA_INTERNAL_H

#include <czmq.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "bus_http_client.h"
#include "bus_service.h"

typedef struct {
    bus_service_t *svc;
    bus_store_t *store;
    int db_approvals, db_levels, db_deadlines, db_devices;
    int64_t default_expiry_s, interval_s, rate_per_min, message_max;
    zhash_t *asked;              /* approver -> s_window_t: when levels were asked of them */
    /* backend oidc */
    bool oidc;
    bool oidc_ready;             /* endpoints known (discovery answered or failed) */
    bus_http_client_t *http;     /* oidc, and the webhook */
    char *webhook_url;           /* POST each ciba.requested here, or NULL */
    char *issuer, *iss, *bc_url, *token_url, *client_id, *secret, *audience;
    bool hint_iss_sub, auth0_charset;
    int64_t expiry_max_s, default_interval_s;
} ciba_t;

/*  Members of a JSON object (NULL / 0 when absent), and setters. */
static inline const char *
ciba_str (json_t *obj, const char *key)
{
    return json_string_value (json_object_get (obj, key));
}

static inline int64_t
ciba_int (json_t *obj, const char *key)
{
    return json_integer_value (json_object_get (obj, key));
}

static inline void
ciba_set_int (json_t *obj, const char *key, int64_t v)
{
    json_object_set_new (obj, key, json_integer (v));
}

static inline void
ciba_set_str (json_t *obj, const char *key, const char *v)
{
    json_object_set_new (obj, key, json_string (v));
}

/*  The approval approval_id (a new object), or NULL. */
json_t *ciba_load (ciba_t *self, bus_txn_t *txn, const char *approval_id);

/*  Store the approval and move its deadline key. Returns the sticky error. */
int ciba_save (ciba_t *self, bus_txn_t *txn, json_t *a);

/*  Append level i's event type with the members of extra (stolen). */
void ciba_level_event (ciba_t *self, bus_txn_t *txn, const char *type, json_t *a, size_t i, json_t *extra,
                       const char *traceparent);

/*  End the chain with outcome (and reason, may be NULL): approval.completed. */
void ciba_complete (ciba_t *self, bus_txn_t *txn, json_t *a, const char *outcome, const char *reason,
                    int64_t now, const char *tp);

/*  Pass level i (its state becomes reason): true when a level follows
    (ciba.escalated; ask it next), else the approval ends denied. */
bool ciba_pass_level (ciba_t *self, bus_txn_t *txn, json_t *a, size_t i, const char *reason, int64_t now,
                      const char *tp);

/*  Ask level i (passing approvers who cannot be asked). */
void ciba_ask (ciba_t *self, bus_txn_t *txn, json_t *a, size_t i, int64_t now, const char *tp);

/*  Backend oidc (ciba_oidc.c): start (config, the client secret, the HTTP
    client, discovery) and stop; send level i's next request to the
    provider (bc-authorize or a token poll); a binding message mapped to
    Auth0's character set (caller frees; NULL when out of memory). */
int ciba_oidc_start (ciba_t *self, bus_config_t *config);
void ciba_oidc_stop (ciba_t *self);
void ciba_oidc_send (ciba_t *self, json_t *a, size_t i, int64_t now);
char *ciba_oidc_charset (const char *in);

#endif
