/*  vault_internal.h — what the vault-broker's files share (private: only
    services/vault-broker/ includes it).

    vault_service.c   the daemon: its declaration, start/stop, the handler table
    vault_accounts.c  connected accounts: vault.connect / disconnect /
                      connections / rotate_key, the sealed records, scopes
    vault_tokens.c    signing keys, minting RFC 9068 tokens, the JWKS
                      (vault.jwks and over HTTP)
    vault_leases.c    leases: vault.lease / renew / revoke / leases /
                      token_used, approvals, the expiry sweep
    vault_upstream.c  the provider's tokens: `oauth` (refresh-token grant)
                      and `auth0` (federated connection token exchange) over
                      bus_http_client, and their revocation (RFC 7009)

    Threads: everything runs on the reactor but a lease's commit, on the
    writer thread ([vault] writer_thread), which only stores what the
    reactor made (vault_leases.c), and the recorded replies' sealer
    (vault_service.c), which reads only outcome_key; nothing here locks.
    Errors: functions returning int answer 0 or a negative BUS_E* code
    (bus_strerror); handlers answer their request themselves. */
#ifndef VAULT_INTERNAL_H
#define VAULT_INTERNAL_H

#include "vault_crypt.h"
#include "bus_call.h"
#include "bus_daemon.h"
#include "bus_follow.h"
#include "bus_http_client.h"
#include "bus_jose.h"

#include <stdbool.h>
#include <stdint.h>

#define VAULT_TTL_MAX       600         /* seconds: no lease lives longer */
#define VAULT_SIGKEYS_MAX   16
#define VAULT_CLOCK_SKEW    60          /* a retired signing key outlives its tokens by this */
#define VAULT_LEASE_ID_MAX  64
#define VAULT_RUN_MAX       128         /* bytes of a run id in the lease_run index */
#define VAULT_HMAC_TEXT_LEN (12 + 64 + 1)   /* "hmac-sha256:<hex>" and its NUL */
#define VAULT_APPROVED_MAX  4096        /* approvals seen approved, kept in memory */

/*  A signing key, in memory. */
typedef struct {
    char kid [BUS_JOSE_KID_LEN + 1];
    uint8_t pk [BUS_JOSE_PK_LEN];
    uint8_t *sk;                        /* sodium_malloc'd */
    int64_t created;                    /* s */
    int64_t retired;                    /* s; 0: signs now */
} vault_sigkey_t;

/*  The daemon's state (the handlers' arg), made by start, freed by stop. */
typedef struct {
    bus_service_t *svc;
    vault_keyring_t *keyring;
    int db_conn, db_signing, db_leases, db_exp, db_approvals, db_upstream;
    int db_lease_run;                   /* run ‖ NUL ‖ lease id -> "": the leases of each run */
    int db_run_ended;                   /* run -> when vault.revoke {run} ended it (ms, 8 bytes BE) */
    int db_lease_ended;                 /* when a lease ended (ms, 8 bytes BE) ‖ its id -> its run */
    bus_http_client_t *http;            /* oauth/auth0 modes: token and revocation endpoints */
    vault_sigkey_t keys [VAULT_SIGKEYS_MAX];
    size_t nkeys;
    uint8_t *mac_key;                   /* sodium_malloc'd: the token HMAC key */
    uint8_t *outcome_key;               /* sodium_malloc'd: seals tokens in recorded replies */
    char issuer [256];
    bus_calls_t *ciba;
    /* approvals the ciba-broker published approved (approval.completed,
       followed in memory): approval id -> "run\nnode", the oldest
       dropped past VAULT_APPROVED_MAX (vault_approvals_follow) */
    bus_follow_t *approvals_seen;
    zhash_t *approved;
    zlist_t *approved_order;            /* their ids, oldest first */
    /* the re-seal pass (vault_reseal): due after a rotation or at start */
    bool reseal_due;
    int64_t reseal_not_before;          /* ms: its first step */
    int reseal_db;                      /* 0 connections, 1 signing, 2 upstream, 3 done */
    char reseal_from [514];             /* where the next step starts in it */
    size_t reseal_from_len;
    size_t reseal_moved;
} vault_t;

/*  A lease request between its checks and its answer (it may wait for
    the ciba-broker, then for the provider). Owned by whoever holds it
    last: vault_lease_store and every path that answers free it. */
typedef struct {
    vault_t *self;
    bus_request_t *req;
    json_t *lease;                      /* lease_id, run, node, connection, scopes, ttl, jkt, approval */
    json_t *conn;                       /* the connection's metadata */
    char audience [257];
    int64_t cap;
    int64_t upstream_expires_in;        /* s: the provider's token's own life (0: not said) */
} vault_lease_job_t;

/* --- vault_service.c ---------------------------------------------------- */

/*  The wall clock, in ms and in s. */
int64_t vault_now_ms (void);
int64_t vault_now (void);

/* --- vault_accounts.c --------------------------------------------------- */

/*  A list of scopes, each 1..256 printable characters without blanks or
    quotes, duplicates dropped: a new list, or NULL with why. */
json_t *vault_scopes (json_t *list, char *why, size_t why_len);
/*  "a b c" from ["a","b","c"], malloc'd (NULL: out of memory). */
char *vault_scope_text (json_t *scopes);
/*  Seal meta JSON ‖ NUL ‖ secret under key (the associated data): *out
    malloc'd. Reactor only (the keyring may rotate there). */
int vault_seal_record (vault_t *self, const char *key, json_t *meta, const void *secret, size_t secret_len,
                       uint8_t **out, size_t *out_len);
/*  Seal meta JSON ‖ NUL ‖ secret under key (the associated data), put in db. */
int vault_put_sealed (vault_t *self, bus_txn_t *txn, int db, const char *key, json_t *meta,
                      const void *secret, size_t secret_len);
/*  Open sealed record key of db: *meta and, when plain_out is not NULL,
    the whole plaintext (sodium memory, vault_plain_free; the secret is at
    *secret_off, *secret_len bytes). BUS_ENOTFOUND, BUS_ECRYPTO, BUS_EINVAL. */
int vault_get_sealed (vault_t *self, bus_txn_t *txn, int db, const char *key, json_t **meta,
                      uint8_t **plain_out, size_t *secret_off, size_t *secret_len, uint32_t *key_id);
/*  Answer a failure (rc) to open a sealed record of what. */
void vault_reply_sealed_error (bus_request_t *req, const char *what, int rc);
void vault_connect (bus_service_t *svc, bus_request_t *req, void *arg);
void vault_disconnect (bus_service_t *svc, bus_request_t *req, void *arg);
void vault_connections (bus_service_t *svc, bus_request_t *req, void *arg);
void vault_rotate_key (bus_service_t *svc, bus_request_t *req, void *arg);
/*  (Re)start the background re-seal pass (due when the keyring holds
    more than one key). */
void vault_reseal_start (vault_t *self);
/*  The timer: one paced step of the re-seal pass. */
void vault_reseal (bus_service_t *svc, void *state);

/* --- vault_tokens.c ----------------------------------------------------- */

/*  The key that signs now (NULL: none loaded). */
vault_sigkey_t *vault_current_key (vault_t *self);
/*  A new signing key, stored in txn; the one signing before it retires. */
int vault_key_new (vault_t *self, bus_txn_t *txn);
/*  Load the signing keys, making the first one when there is none. */
int vault_keys_load (vault_t *self);
/*  Drop the signing keys retired longer than any token lives, in txn
    and in memory; true when one was dropped. */
bool vault_keys_drop_retired (vault_t *self, bus_txn_t *txn);
/*  "hmac-sha256:<hex>" of a token: what events carry instead of it. */
void vault_token_hmac (vault_t *self, const char *token, char out [VAULT_HMAC_TEXT_LEN]);
/*  Mint an RFC 9068 access token for lease, expiring at exp: *token
    (malloc'd) and its jti. */
int vault_mint (vault_t *self, json_t *lease, const char *audience, const char *client_id, int64_t iat,
                int64_t exp, char **token, char jti_out [40]);
void vault_jwks_req (bus_service_t *svc, bus_request_t *req, void *arg);
void vault_http_jwks (bus_service_t *svc, void *state, bus_http_exchange_t *ex);

/* --- vault_leases.c ----------------------------------------------------- */

void vault_lease_job_free (vault_lease_job_t *job);
/*  Store (lease, expiry, approval used, event) and answer with a token
    minted here (upstream NULL) or the provider's; frees job. */
void vault_lease_store (vault_lease_job_t *job, const char *upstream, const char *upstream_type);

/*  Follow the ciba-broker's approval.completed (memory mode, from now),
    keeping the approvals it published approved, so that a lease on one
    needs no ciba.status (an approved approval stays so). A vault-broker
    that does not know the ciba-broker asks ciba.status each time. Start;
    vault_approvals_stop frees. Returns 0 or BUS_ENOMEM. */
int vault_approvals_follow (vault_t *self);
void vault_approvals_stop (vault_t *self);
/*  At start, index the leases of a store of before an index was kept
    (the index empty, leases stored): by run (lease_run), and the ended
    ones by the time they ended (lease_ended, which the sweep forgets them
    by). Returns 0 or the store's error. */
int vault_lease_index (vault_t *self);
void vault_lease (bus_service_t *svc, bus_request_t *req, void *arg);
void vault_renew (bus_service_t *svc, bus_request_t *req, void *arg);
void vault_revoke (bus_service_t *svc, bus_request_t *req, void *arg);
void vault_leases (bus_service_t *svc, bus_request_t *req, void *arg);
void vault_token_used (bus_service_t *svc, bus_request_t *req, void *arg);
/*  The timer: expired leases end, outlived signing keys are dropped. */
void vault_sweep (bus_service_t *svc, void *state);

/* --- vault_upstream.c --------------------------------------------------- */

/*  oauth / auth0 modes: ask the provider for the lease's token; the
    answer goes to vault_lease_store, or an error to the request. Frees job. */
void vault_upstream_start (vault_lease_job_t *job);
/*  A lease holding a provider's token ends: forget it (in txn) and revoke
    it upstream when the connection names a revocation endpoint. */
void vault_upstream_end (vault_t *self, bus_txn_t *txn, json_t *lease);

/*  A provider's token obtained for a lease that was not stored: revoked
    at the provider (RFC 7009), counted upstream_tokens_discarded.
    Reactor only. */
void vault_upstream_discard (vault_t *self, const char *connection, const char *token);

#endif
