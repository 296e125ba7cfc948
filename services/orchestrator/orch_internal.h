/*  orch_internal.h — what the orchestrator's files share: its state, the
    run record, and the engine's entry points (orch_run.c, orch_approval.c)
    that the handlers (orch_service.c) and each other call. Not for other
    modules.

    A run record (LMDB "runs", key the run id, value its JSON) is the run's
    checkpoint:
        {run, workflow, workflow_hash, input, principal, state, reason?,
         vars {input, run, <outputs>..., call?},  the run state templates read
         cursor,                              the node being run (null: ended)
         step {node, attempt, phase, tries, decision?, approval?, levels?,
               lease?, audit_index?},         the cursor's step
         nodes [{node, kind, state, attempt, outcome?, ...}],
         calls [{name, arguments, id}], return_to?,   an agent's queued calls
         chat? {node, turn, messages},        a chat agent's conversation
                                              while its calls run (turn: the
                                              model's answers so far)
         call_id?,                            the chat call the cursor runs
         leased?, epoch, created_at, updated_at}
    step.phase on disk is decide, approval (paused for it) or lease (an
    approval came, or a step past its decision was interrupted: it leases
    again, then appends its intent and calls under the same idempotency
    key); audit and call live only in memory, with the token.

    Threads: everything runs on the service's reactor.
*/
#ifndef ORCH_INTERNAL_H
#define ORCH_INTERNAL_H

#include <czmq.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "bus_alarm.h"
#include "bus_call.h"
#include "bus_http_client.h"
#include "bus_service.h"
#include "orch_agent.h"
#include "orch_workflow.h"

/*  Outbound HTTP requests (connector calls, models) in flight at most; the
    runs past it wait their turn in order, so a thousand runs do not open a
    thousand connections to one upstream. */
#define ORCH_HTTP_MAX 64

/*  Calls of runs' steps in flight to one peer at most (authz, ciba-broker,
    vault-broker, auditor); past it they wait in line, so a burst of runs
    does not push a peer past its deadlines (and into retries that only
    add to its load). */
#define ORCH_CALLS_MAX 64
#define ORCH_PEERS     4

/*  Paused runs' approvals asked of the ciba-broker per ciba.status
    {approval_ids} when reconciling after a restart (the broker takes up
    to 1000). */
#define ORCH_RECONCILE_BATCH 500

typedef struct {
    bus_service_t *svc;
    bus_store_t *store;
    int db_runs, db_meta, db_workflows, db_approvals;
    uint64_t epoch;                 /* this instance's fencing epoch */
    bool fenced;                    /* a newer instance took the store: advance nothing */
    bool following;                 /* in the approvals follower's transaction: no other may begin */
    uint8_t node_seed [32];         /* derives each step's node key (meta "node_seed") */
    zhash_t *workflows;             /* name -> orch_workflow_t (current; borrowed from by_hash) */
    zhash_t *by_hash;               /* hash -> orch_workflow_t (owned) */
    zhash_t *runs;                  /* run id -> orch_run_t: runs being worked on */
    zhash_t *waiters;               /* run id -> zlist_t of orch_waiter_t */
    zlist_t *kick;                  /* run ids to look at again (char *, owned) */
    bus_alarm_t *kick_timer;        /* NULL: none armed */
    bus_calls_t *authz, *ciba, *vault, *auditor;
    zlist_t *reconciling;           /* ciba.status batches in flight (s_batch_t, orch_approval.c) */
    size_t peer_busy [ORCH_PEERS];  /* step calls in flight, per peer */
    zlist_t *peer_wait [ORCH_PEERS];/* step calls waiting for a slot (s_queued_t, orch_run.c) */
    bus_http_client_t *http;
    size_t http_busy;               /* outbound HTTP requests in flight */
    zlist_t *http_wait;             /* orch_run_t waiting for a slot (ORCH_HTTP_MAX) */
    orch_agent_config_t *agent;
    char dir [1024];                /* the workflows' directory */
    char sandbox [256];             /* http://<[sandbox] http> */
    char sheets_url [256], gmail_url [256], dropbox_url [256];
    int64_t lease_ttl, approval_expiry, retry_max, retry_base, retry_cap, audit_retry;
    uint64_t steps, runs_started, runs_ended;
} orch_t;

/*  A run being worked on (in memory while it has work in flight). */
typedef struct {
    orch_t *self;
    char id [27];
    json_t *rec;                    /* the record (as committed, plus the step in memory) */
    const orch_workflow_t *wf;
    char *token;                    /* the leased token: memory only, wiped */
    uint8_t pk [32], sk [64];       /* the step's node key */
    bus_alarm_t *timer;             /* a retry's; NULL: none */
    bool paused;                    /* PAUSED committed for audit/upstream (in memory) */
    int call_peer;                  /* the peer of the step call in flight or queued; -1: none */
    bool call_live;                 /* that call was sent */
    void *call_queued;              /* or waits in line (its entry) */
    void (*call_fn) (bus_calls_t *, proto_msg_t *, void *);
    bool http_live;                 /* a request of ours in flight */
    bool http_queued;               /* waiting in http_wait */
    uint64_t http_id;
    json_t *early_end;              /* approval.completed's body, come before ciba.authorize's answer */
} orch_run_t;

/*  Members of JSON objects. */
static inline const char *
orch_str (const json_t *o, const char *k)
{
    return json_string_value (json_object_get (o, k));
}

/*  orch_service.c */
int orch_workflows_load (orch_t *self, const char *only, json_t *loaded, json_t *errors);
const orch_workflow_t *orch_workflow_by_hash (orch_t *self, const char *hash);
int orch_workflow_store (orch_t *self, bus_txn_t *txn, const orch_workflow_t *wf);
void orch_waiters_notify (orch_t *self, const char *id, const json_t *rec);
json_t *orch_run_view (const json_t *rec);

/*  orch_run.c */
bus_txn_t *orch_txn (orch_t *self);                         /* a write txn, fencing checked */
json_t *orch_run_load (orch_t *self, bus_txn_t *txn, const char *id);
int orch_run_put (orch_t *self, bus_txn_t *txn, json_t *rec);
json_t *orch_run_new_record (orch_t *self, const orch_workflow_t *wf, const char *id, const json_t *input,
                             const char *principal, bus_txn_t *txn);
void orch_run_kick (orch_t *self, const char *id);
void orch_run_resume_all (orch_t *self);
orch_run_t *orch_run_find (orch_t *self, const char *id);
void orch_run_drop (orch_run_t *run);
int orch_run_cancel (orch_t *self, bus_txn_t *txn, json_t *rec, const char *reason);
void orch_run_after_end (orch_t *self, const json_t *rec);
void orch_engine_stop (orch_t *self);
orch_run_t *orch_run_take (orch_t *self, json_t *rec);      /* rec (consumed) into memory, or NULL */
void orch_run_lease (orch_run_t *run);
void orch_run_emit (orch_t *self, bus_txn_t *txn, const char *type, json_t *body);
void orch_run_finish_node (orch_t *self, bus_txn_t *txn, json_t *rec, const char *outcome, const json_t *extra);
void orch_run_end (orch_t *self, bus_txn_t *txn, json_t *rec, const char *state, const char *reason);

/*  orch_approval.c */
int orch_on_approval (bus_service_t *svc, void *state, bus_txn_t *txn, proto_msg_t *event);
void orch_approval_early_end (orch_t *self, const json_t *body);
void orch_approval_stop (orch_t *self);

#endif
