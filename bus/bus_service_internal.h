/*  bus_service_internal.h — what the reactor (bus_service.c) and the
    outbox (bus_outbox.c) share: the service and request structs, the
    work handed to threads, and the outbox's entry points. Not for
    services: they use bus_service.h.

    Threads: everything here runs on the reactor, but for bus_offload_run
    (on a worker or the writer) and what bus_service.h says of commits.
*/
#ifndef BUS_SERVICE_INTERNAL_H
#define BUS_SERVICE_INTERNAL_H

#include "bus_service.h"
#include "bus_backlog.h"
#include "bus_dedupe.h"
#include "bus_handshake.h"
#include "bus_keys.h"
#include "bus_log.h"
#include "bus_reader.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#define BUS_OUTBOX_REBIND_TRIES 100     /* x 10 ms: the old listener closes asynchronously */
#define BUS_OUTBOX_TRIM_MS      1000    /* how often the outbox is trimmed */

struct bus_service_t {
    bus_config_t *config;
    char section [32];
    char principal [64];
    char version [32];
    bus_store_t *store;
    int outbox_db;
    zcert_t *cert;
    zactor_t *auth;
    bus_allow_t *allow;
    zsock_t *router;
    bus_reader_t *router_reader;  /* the ROUTER on the loop, by its descriptor */
    bus_backlog_t *backlog;       /* replies held while their connection is full */
    zsock_t *pub;
    char *pub_endpoint;           /* as bound (ZMQ_LAST_ENDPOINT), for unbinding */
    bool pub_unbound;             /* unbound to close subscriptions, not yet bound again */
    int rebind_tries;             /* binds tried since (BUS_OUTBOX_REBIND_TRIES + 1: given up on the timer) */
    zloop_t *loop;
    zhashx_t *handlers;           /* type -> handler and its argument */
    bus_dedupe_t *dedupe;         /* replies remembered in memory for retries */
    bus_dedupe_store_t dedupe_store;  /* outcomes recorded durably: databases, quotas */
    bus_txn_t *dedupe_reader;     /* read transaction (reset between lookups) */
    int64_t dedupe_retention_us;  /* how long an outcome is kept durably */
    bus_outcome_seal_fn *outcome_seal;  /* bus_service_outcome_sealer, or NULL */
    bus_outcome_seal_fn *outcome_open;
    void *outcome_seal_arg;
    atomic_uint_fast64_t outcomes_unrecorded;     /* over a quota: in memory only */
    bool dedupe_expire_pending;   /* an expiry is with the writer */
    zhashx_t *unknown_logged;     /* "principal type field" already logged */
    bus_workers_t *workers;       /* for bus_request_offload, or NULL */
    bus_workers_t *writer;        /* for bus_request_offload_write, or NULL */
    int64_t write_here_after_us;  /* bus_request_write runs writes here only from then (a burst) */
    atomic_uint_fast64_t write_groups;    /* commits of the writer's groups */
    atomic_uint_fast64_t writes_grouped;  /* writes committed in them */
    bus_stats_t *stats;
    bus_log_limit_t *refusals;    /* refused requests' log lines, rate-limited */
    uint64_t refusals_counted;    /* of its suppressed lines, in stats so far */
    bus_handshake_t *handshakes;  /* monitors of the ROUTER and PUB */
    size_t max_frame;
    uint64_t published_seq;       /* last sequence published */
    pthread_mutex_t committed_lock;
    zlistx_t *committed;          /* events of commits not yet published (bus_outbox.c) */
    pthread_t reactor;            /* the thread that runs the reactor (and publishes) */
    uint64_t outbox_first_seq;    /* oldest event stored, 0 while none is */
    uint64_t outbox_acked;        /* from_seq of the last events.replay by acked_by */
    uint64_t outbox_keep;         /* see bus_outbox_trim */
    uint64_t outbox_max;
    char acked_by [PROTO_PRINCIPAL_MAX + 1];
    int64_t started_us;
    pid_t pid;                    /* for health, without a system call per request */
    bool stopping;
    bool trim_pending;            /* a trim is with the writer */
};

/*  A request's routing frames (the client's routing id, and any a proxy
    added before it), kept to address its reply: each as one byte of
    length, then its bytes. A routing id is 0 to 255 bytes (ZMTP), so one
    a client chose at the longest fits, beside a few of a proxy's. */
#define BUS_ROUTE_MAX 512

typedef struct {
    size_t len;                   /* bytes of data used; 0: none (a local request) */
    uint8_t data [BUS_ROUTE_MAX];
} bus_route_t;

struct bus_request_t {
    bus_service_t *svc;
    bus_route_t route;            /* to send the reply */
    proto_msg_t *msg;
    char principal [PROTO_PRINCIPAL_MAX + 1];
    uint8_t hash [BUS_DEDUPE_HASH_LEN];   /* of type and body, when remembered */
    int64_t start_us;
    uint8_t *reply;               /* the reply sent while s_on_message ran, to remember */
    size_t reply_len;
    bool deferred;
    bool answered;
    bool in_handler;              /* s_on_message frees it after the handler */
    bool remember;                /* its reply is kept for retries (not a safe type) */
    bool recorded;                /* its outcome is in a write transaction (bus_request_record) */
    bus_local_done_fn *local_done;    /* a local request's (bus_service_local): no routing */
    void *local_arg;
    bus_pipe_t *pipe;             /* a local request's partial answers (bus_service_local_piped) */
};

/*  Work handed to a worker or the writer: a request's (req set), or the
    service's own (req NULL: an outbox trim). */
typedef struct {
    bus_request_t *req;
    bus_work_fn *fn;
    void *job;
    void (*job_free) (void *job);
    bus_outcome_t out;
    /* the service's own work (req NULL): over, on the reactor */
    void (*done) (bus_service_t *self, void *job, bool ran, bool stored);
} bus_offload_t;

/*  On a worker thread: run an offloaded job (bus_service.c). */
void bus_offload_run (void *state, void *arg);

/* --- the outbox (bus_outbox.c) --------------------------------------------- */

/*  Open the outbox: its sequence from the store, its limits from the
    config, the queue of commits to publish. Returns 0 or BUS_ENOMEM. */
int bus_outbox_open (bus_service_t *self);

/*  Free the queue of commits not yet published. */
void bus_outbox_close (bus_service_t *self);

/*  The oldest event the outbox holds (last_seq + 1 while it holds none). */
uint64_t bus_outbox_first_seq (bus_service_t *self);

/*  events.replay, the built-in handler. */
void bus_outbox_handle_replay (bus_service_t *self, bus_request_t *req, void *arg);

/*  Publish the committed events that continue the sequence, in order. */
void bus_outbox_publish_ready (bus_service_t *self);


/*  The trim timer (every BUS_OUTBOX_TRIM_MS; arg is the service). */
int bus_outbox_on_trim (zloop_t *loop, int timer_id, void *arg);

/*  On the allow-list tick: close every subscription when a key left the
    allow-list (PUB bound afresh), or bind again once the retries on the
    timer ran out. */
void bus_outbox_tick (bus_service_t *self);

#endif
