/*  ciba_internal.h — what the ciba-broker's files share: the broker's
    state, the approval store, chain and requests (ciba_service.c), what
    is held in memory of the approvals (ciba_tables.c), the devices and
    invites (ciba_devices.c), and the oidc backend (ciba_oidc.c). Not for
    other modules.

    Approvals are JSON objects (ciba_service.c says their members); every
    function taking a txn works in that write transaction, its errors
    sticky there, its events appended to its outbox. Threads: a change
    runs on the service's writer (requests) or on the reactor (the
    deadline timer, the provider's answers), one at a time (LMDB's write
    lock); what reaches the world beyond the bus (HTTP to the provider,
    the webhook) is only noted in the change's `after` list and sent on
    the reactor once the change is durable (ciba_after_commit). What is
    derived from the approvals (owners, deadlines, ended, index: the
    lookups the timer and ciba.list need) is held in memory under
    owners_lock, rebuilt at start, and follows the commits
    (bus_txn_on_commit), so that a change's commit writes only what is
    its own.
*/
#ifndef CIBA_INTERNAL_H
#define CIBA_INTERNAL_H

#include <czmq.h>
#include <pthread.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "bus_http_client.h"
#include "bus_service.h"

/*  How the broker authenticates to the provider (oidc_client_auth). */
enum { CIBA_AUTH_POST, CIBA_AUTH_BASIC, CIBA_AUTH_JWT };

/*  Approval ids ordered by a time (ciba_service.c): one time per id. */
typedef struct ciba_times_t ciba_times_t;

typedef struct {
    bus_service_t *svc;
    bus_store_t *store;
    int db_approvals, db_levels, db_deadlines, db_devices, db_index, db_ended, db_asked, db_invites;
    int64_t default_expiry_s, interval_s, rate_per_min, message_max;
    int64_t retention_us;        /* ended approvals kept this long, then purged */
    /* auth_req_id -> approval_id (owned strings): derived from the stored
       approvals (built at start, noted as a change makes a level, dropped
       as the purge commits), so that no commit writes it; the writer and
       the reactor both read it, under owners_lock */
    zhashx_t *owners;
    /* the approvals' deadlines and ends, by time: derived from the stored
       approvals the same way (built at start), changed by the commit that
       changes an approval's `deadline` or ends it (bus_txn_on_commit);
       read by the deadline scan */
    ciba_times_t *deadlines, *ended;
    /* ciba.list's indexes: "s" LF state LF, "a" LF approver LF state LF,
       "r" LF run LF -> the approval ids under it (ciba_times_t, in id
       order); derived and kept the same way */
    zhashx_t *index;
    pthread_mutex_t owners_lock;  /* owners, deadlines, ended, index */
    bool owners_ready;           /* owners_lock initialised */
    /* backend oidc */
    bool oidc;
    atomic_bool oidc_ready;      /* endpoints known (discovery answered or failed); read on the writer */
    bus_http_client_t *http;     /* oidc, and the webhook */
    char *webhook_url;           /* POST each ciba.requested here, or NULL */
    char *issuer, *iss, *bc_url, *token_url, *client_id, *secret, *audience;
    bool hint_iss_sub, auth0_charset;
    int client_auth;             /* CIBA_AUTH_*: oidc_client_auth */
    uint8_t jwt_sk [64];         /* private_key_jwt: the client's Ed25519 key (libsodium's form) */
    char jwt_kid [44];           /* its RFC 7638 thumbprint */
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

/*  Ask level i (passing approvers who cannot be asked); what must reach
    the world once the change is durable is appended to after. */
void ciba_ask (ciba_t *self, bus_txn_t *txn, json_t *a, size_t i, int64_t now, const char *tp, json_t *after);

/*  Note in after that level i must be told to the world once durable:
    kind "ask" (the webhook) or "poll" (the provider), with at, the
    level's asked_at or poll_at as this change stores it. */
void ciba_after_note (json_t *after, json_t *a, size_t i, const char *kind, int64_t at);

/*  On the reactor, after the change that filled after committed (or
    failed: then nothing is sent): read each noted level back from the
    store and send what the stored state still asks for. Consumes
    nothing (the caller frees after). */
void ciba_after_commit (ciba_t *self, json_t *after);

/*  An approver name: "user:NAME" (or another principal class) with a
    short, plain name. */
bool ciba_approver_ok (const char *a);

/*  A fresh auth_req_id (also an invite code): 192 random bits, base64url
    (32 characters of [A-Za-z0-9_-]). */
void ciba_auth_req_id (char out [48]);

/*  Requests (ciba_service.c): a change asked by a request (ciba_job_t: what
    the work needs of the request, and what must reach the world once the
    change is durable) runs through ciba_change, on the writer when writes
    queue there, else on the reactor; its work opens its transaction with
    ciba_write_begin, sets its outcome (ciba_fail for an error) and
    commits with ciba_finish. ciba_tp: the request's traceparent (NULL:
    none). */
typedef struct ciba_job_t ciba_job_t;
void ciba_change (ciba_t *self, bus_request_t *req, bus_work_fn *fn);
const char *ciba_tp (ciba_job_t *job);
void ciba_fail (bus_outcome_t *out, const char *code, const char *fmt, ...)
    __attribute__((format (printf, 3, 4)));
void ciba_finish (ciba_t *self, bus_txn_t **txn, bus_outcome_t *out);
bus_txn_t *ciba_write_begin (ciba_t *self, bus_outcome_t *out);

/*  The in-memory tables (ciba_tables.c), under owners_lock where said.
    The owners: the approval id auth_req_id belongs to, into out, or
    BUS_ENOTFOUND; note one (0 or BUS_ENOMEM); forget the auth_req_ids
    purged (a JSON array of strings), once the purge has committed. */
int ciba_level_owner (ciba_t *self, const char *auth_req_id, char out [PROTO_ID_LEN + 1]);
int ciba_owner_note (ciba_t *self, const char *auth_req_id, const char *approval_id);
void ciba_owners_drop (ciba_t *self, json_t *auth_req_ids);

/*  Approval ids by time: new / destroy; the time of id becomes at (0:
    none; under owners_lock; 0 or BUS_ENOMEM); how many ids have one
    (under owners_lock); up to max ids whose time is
    at or before until, earliest first (under owners_lock); in txn, the
    time of id in times becomes at once txn commits (errors sticky in
    txn). */
ciba_times_t *ciba_times_new (void);
void ciba_times_destroy (ciba_times_t **self_p);
int ciba_times_set (ciba_times_t *self, const char *id, int64_t at);
size_t ciba_times_size (ciba_times_t *self);
size_t ciba_times_due (ciba_times_t *self, int64_t until, char (*ids) [PROTO_ID_LEN + 1], size_t max);
void ciba_time_on_commit (ciba_t *self, bus_txn_t *txn, ciba_times_t *times, const char *id, int64_t at);

/*  The index key of a requester's idempotency key into key (at least
    600 bytes): its length, or -1 when it does not fit. */
int ciba_key_index (char *key, size_t cap, const char *requested_by, const char *idem);

/*  Purge ended approval id in txn (its indexes, the approval, its place
    in ended once committed); its auth_req_ids are added to gone. */
void ciba_purge_one (ciba_t *self, bus_txn_t *txn, const char *id, json_t *gone);

/*  At start: the tables from the stored approvals, and the databases
    that held them in a store from before emptied. 0 or the error. */
int ciba_tables_load (ciba_t *self);

/*  Devices (ciba_devices.c): does approver have an active device (the
    device's record into *out when device is given; NULL: any)? And the
    handlers of ciba.device.enroll, revoke, list, invite and redeem. */
bool ciba_device_active (ciba_t *self, bus_txn_t *txn, const char *approver, const char *device, json_t **out);
void ciba_device_enroll (bus_service_t *svc, bus_request_t *req, void *arg);
void ciba_device_revoke (bus_service_t *svc, bus_request_t *req, void *arg);
void ciba_device_list (bus_service_t *svc, bus_request_t *req, void *arg);
void ciba_device_invite (bus_service_t *svc, bus_request_t *req, void *arg);
void ciba_device_redeem (bus_service_t *svc, bus_request_t *req, void *arg);

/*  Backend oidc (ciba_oidc.c): start (config, the client secret, the HTTP
    client, discovery) and stop; level i is due its next request to the
    provider (bc-authorize or a token poll): its guard poll_at is set in a
    (any thread, in a change) and the request noted in after; the request
    itself sent from the stored approval (reactor, ciba_after_commit); a
    binding message mapped to Auth0's character set (caller frees; NULL
    when out of memory). */
int ciba_oidc_start (ciba_t *self, bus_config_t *config);
void ciba_oidc_stop (ciba_t *self);
void ciba_oidc_due (ciba_t *self, json_t *a, size_t i, int64_t now, json_t *after);
void ciba_oidc_request (ciba_t *self, json_t *a, size_t i);
char *ciba_oidc_charset (const char *in);

#endif
