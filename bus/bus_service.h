/*  bus_service.h — the runtime every Sanctum daemon is built on.

    A service owns: its config, its LMDB store (with the event outbox), a
    CURVE ROUTER for requests and a CURVE PUB for events, a zauth actor and
    the principal map, and a zloop reactor that runs it all on one thread.

    Requests: [routing...][envelope]. The runtime decodes (hostile-input
    safe), maps the client's CURVE key to a principal, answers retried
    request ids (below), checks the type against the catalogue (owner,
    permitted senders, body schema), and dispatches to the handler
    registered for the type. Built in: health, stats, events.replay, echo.

    Retries (PROTOCOL.md 6.2; bus_dedupe.h): for a request with effects
    (a type not PROTO_SAFE), the runtime keeps, per (principal, id), the
    hash of its type and body and its answer: in memory (the encoded
    reply, for dedupe_ttl_ms, bounded in bytes per principal), and durably
    (its outcome, for dedupe_retention_s) when the outcome was recorded in
    the transaction of its effect. That happens by itself for work on the
    writer (bus_request_offload_write: each outcome joins the writer's
    group, which commits effects and outcomes together), and on the
    reactor through bus_request_commit (or bus_request_record before
    bus_service_commit). A retry, even after a restart, gets the first
    answer; while the first copy is being worked on, no answer of its own;
    the same id with another type or body gets `conflict`. Outcomes
    `unavailable` and `internal` are not recorded durably: they say that
    nothing was done; nor are those of a principal over its quota of
    records (dedupe_store_principal_kb), until its oldest expire. A handler that answers a request with effects
    without recording it (plain bus_reply_*) is remembered in memory only:
    its effect must then be idempotent on its own. Exactly-once steps
    (the orchestrator's) rely on this contract.

    Events: bus_event_append() writes an event to the outbox in the caller's
    write transaction, so the event and the state change it describes commit
    together; bus_service_commit() commits and then publishes. A subscriber
    that misses events asks for them with events.replay.

    Signals: SIGINT/SIGTERM stop the reactor (CZMQ's handler); the service
    publishes service.stopping and returns from bus_service_run().
*/
#ifndef BUS_SERVICE_H
#define BUS_SERVICE_H

#include <czmq.h>
#include <jansson.h>
#include <stdbool.h>

#include "bus_config.h"
#include "bus_pipe.h"
#include "bus_services.h"
#include "bus_stats.h"
#include "bus_store.h"
#include "bus_worker.h"
#include "proto_msg.h"

typedef struct bus_service_t bus_service_t;
typedef struct bus_request_t bus_request_t;

/*  A request handler. It must answer exactly once, now (bus_reply_ok /
    bus_reply_error) or later after bus_request_defer(). */
typedef void (bus_handler_fn) (bus_service_t *svc, bus_request_t *req, void *arg);

/*  The well-known services (bus_services[], bus_service_section, ...)
    are in bus_services.h. */

/*  Create the service `section` (a config section, e.g. "authz") with the
    given version string and the NULL-terminated names of its own LMDB
    databases (the outbox is added). Opens the store, loads (or creates)
    its CURVE cert, starts zauth, binds ROUTER and PUB. On failure returns
    NULL with err set. The config is borrowed and must outlive the service. */
bus_service_t *bus_service_new (bus_config_t *config, const char *section,
                                const char *version, const char *const *db_names,
                                char *err, size_t err_len);
void bus_service_destroy (bus_service_t **self_p);

/*  Register the handler for a request type (must be a REQ of the catalogue
    owned by this service or by ANY). Returns 0 or BUS_EINVAL. */
int bus_service_handle (bus_service_t *self, const char *type, bus_handler_fn *fn, void *arg);

/*  One entry of a service's handler table. */
typedef struct {
    const char *type;
    bus_handler_fn *fn;
} bus_handler_entry_t;

/*  Register the n handlers of table, each with arg. Returns 0, or the
    error of the first entry refused (logged with its type). */
int bus_service_handle_all (bus_service_t *self, const bus_handler_entry_t *table, size_t n, void *arg);

/*  Run the reactor until SIGINT/SIGTERM or bus_service_stop(). Sends
    READY=1 to systemd, publishes service.started / service.stopping.
    Returns 0 on a clean stop. */
int bus_service_run (bus_service_t *self);

/*  Ask the reactor to stop after the current event. */
void bus_service_stop (bus_service_t *self);

/*  Accessors. */
zloop_t *bus_service_loop (bus_service_t *self);
bus_store_t *bus_service_store (bus_service_t *self);
bus_stats_t *bus_service_stats (bus_service_t *self);
bus_config_t *bus_service_config (bus_service_t *self);
zcert_t *bus_service_cert (bus_service_t *self);
const char *bus_service_principal (bus_service_t *self);   /* "svc:authz" */
const char *bus_service_section_of (bus_service_t *self);   /* "authz" */

/*  Append an event to the outbox in txn (a write transaction of this
    service's store). body is stolen. The event is published by
    bus_service_commit() after the transaction commits. traceparent may be
    NULL (a new trace). A body nested deeper than BUS_EVENT_MAX_DEPTH is
    refused (a replayed event must still decode within PROTO_MAX_DEPTH).
    Returns 0 or an error, which is also made sticky in txn: a transaction
    whose event could not be recorded cannot commit. */
#define BUS_EVENT_MAX_DEPTH (PROTO_MAX_DEPTH - 5)
int bus_event_append (bus_service_t *self, bus_txn_t *txn, const char *type,
                      json_t *body, const char *traceparent);

/*  Commit txn (always consumed); on success publish the events appended in
    it, on failure forget them. Returns the commit result. */
int bus_service_commit (bus_service_t *self, bus_txn_t **txn_p)
    __attribute__((warn_unused_result));

/*  Abort txn (consumed) and forget the events appended in it; their
    sequence numbers are handed out again. Use instead of bus_txn_abort
    for a transaction that may hold events. */
void bus_service_abort (bus_service_t *self, bus_txn_t **txn_p);

/*  Emit one event in its own transaction. */
int bus_service_emit (bus_service_t *self, const char *type, json_t *body,
                      const char *traceparent);

/*  The request being handled. */
proto_msg_t *bus_request_msg (bus_request_t *req);
json_t *bus_request_body (bus_request_t *req);
const char *bus_request_principal (bus_request_t *req);
const char *bus_request_traceparent (bus_request_t *req);

/*  Answer ok with body (stolen; NULL = {}). */
void bus_reply_ok (bus_request_t *req, json_t *body);

/*  Answer with an error code (PROTO_ERR_*) and a printf message, logged
    (rate-limited per peer and code) as "request refused: ..." at info;
    not_found, an answer rather than a refusal, at debug. */
void bus_reply_error (bus_request_t *req, const char *code, const char *fmt, ...)
    __attribute__((format (printf, 3, 4)));

/*  Same, with extra members (stolen, may be NULL) merged into the error
    object beside code and message, e.g. {"fga_code": 2000}. */
void bus_reply_error_with (bus_request_t *req, const char *code, json_t *extra,
                           const char *fmt, ...)
    __attribute__((format (printf, 4, 5)));

/*  The answer to a local request (bus_service_local), on the reactor:
    reply is the reply message (ok with body, or error {code, message,
    ...}; borrowed, valid during the call), or NULL when none could be
    made (out of memory). */
typedef void (bus_local_done_fn) (proto_msg_t *reply, void *arg);

/*  A request made inside the service, e.g. by its HTTP listener: type
    and body (stolen; NULL = {}) from principal (its class checked
    against the catalogue's senders like a bus client's), admitted,
    validated and handled exactly as one from the ROUTER, but for
    retries: it has no client id, so nothing is remembered. done gets the
    answer, before this returns for a handler that answers at once, later
    for a deferred one (e.g. offloaded), and exactly once either way.
    Reactor only. Returns 0 (done will be called) or BUS_EINVAL (a
    principal or type too long) / BUS_ENOMEM (done will not be called). */
int bus_service_local (bus_service_t *self, const char *principal, const char *type, json_t *body,
                       bus_local_done_fn *done, void *arg);

/*  As bus_service_local, with a pipe (bus_pipe.h; borrowed, the
    caller's until done has run) for the answer's parts as they are made:
    a handler that can stream its answer (bus_request_pipe) puts its
    parts there from its worker, then answers as usual (the end, or an
    error after some parts); one that cannot ignores the pipe. Parts are
    the handler's own format (a streamed ListObjects': OpenFGA's lines). */
int bus_service_local_piped (bus_service_t *self, const char *principal, const char *type, json_t *body,
                             bus_pipe_t *pipe, bus_local_done_fn *done, void *arg);

/*  The pipe of a request made by bus_service_local_piped, or NULL (every
    other request, the bus's included: the protocol has no partial
    answers). */
bus_pipe_t *bus_request_pipe (bus_request_t *req);

/*  Keep the request after the handler returns, to answer later; the reply
    functions free it then. */
void bus_request_defer (bus_request_t *req);

/*  How to answer a request, worked out away from it (on a worker thread). */
typedef struct {
    const char *code;           /* NULL: ok, with body; else a PROTO_ERR_* code */
    json_t *body;               /* ok: the reply body (NULL = {}) */
    json_t *extra;              /* error: members beside code and message, or NULL */
    char message [512];         /* error: the message */
} bus_outcome_t;

/*  Answer with an outcome; its body and extra are stolen. */
void bus_reply_outcome (bus_request_t *req, bus_outcome_t *out);

/*  Work on a request on a worker thread: state is that thread's own (see
    bus_service_workers), body the request's (read it; the reactor leaves
    the request alone meanwhile), job the handler's. Fills out, which
    starts zeroed. Must not call any other function of this header, but
    for bus_event_append, bus_service_commit, bus_service_abort and
    bus_service_emit on the writer (bus_request_offload_write). */
typedef void (bus_work_fn) (void *state, json_t *body, void *job, bus_outcome_t *out);

/*  Record req's outcome (a copy of out; nothing is stolen) in txn, a
    write transaction of this service's store, to commit with the effect
    it describes: a retry of req's id then gets this answer even after a
    restart (see the top of this file). A no-op for a safe type or an
    outcome `unavailable` / `internal`. Then commit with
    bus_service_commit and answer with the same outcome. Reactor only.
    Returns 0 or an error (then sticky in txn). */
int bus_request_record (bus_request_t *req, bus_txn_t *txn, const bus_outcome_t *out);

/*  The handler's own state answers a retry of req durably: its effect is
    stored under the request's (principal, id) with what its answer is
    made from (the auditor's log keeps each append's request id), so a
    retry after a restart finds it and answers as the first time, and
    checks that the same id came with the same body (else it answers
    with bus_reply_id_reused). No outcome is then recorded for req (bus_request_offload_write records
    none), saving the record's writes in the writer's group. Retries are
    still answered from memory while the reply is remembered there. Before
    the reply or the offload; reactor only. */
void bus_request_answers_retries (bus_request_t *req);

/*  Answer `conflict`: req's id was used before by its principal for
    another request, as the handler's own state says (see
    bus_request_answers_retries). The answer is not remembered for the
    id, whose first answer stays (as the runtime's own check does).
    Reactor only. */
void bus_reply_id_reused (bus_request_t *req, const char *fmt, ...) __attribute__((format (printf, 2, 3)));

/*  What a recorded outcome keeps on disk, for replies that carry a secret
    (the vault-broker's tokens): seal gets each outcome of a request about
    to be recorded ({"body": ...} or {"error": ...}; borrowed) with the
    request (read only: bus_request_msg, bus_request_principal) and
    returns what to store instead (a new reference; NULL: nothing is
    recorded, and the retry guarantee holds in memory only, as over a
    quota); it runs on the reactor or the writer thread, so it must be
    thread-safe. open (reactor) turns what was stored back into the
    outcome a retry is answered with (a new reference; NULL: the retry is
    answered `internal`, never with what was stored). Once, before
    bus_service_run; NULL functions: outcomes are stored as they are.
    Returns 0 or BUS_EINVAL (set already). */
typedef json_t *(bus_outcome_seal_fn) (bus_request_t *req, json_t *outcome, void *arg);
int bus_service_outcome_sealer (bus_service_t *self, bus_outcome_seal_fn *seal, bus_outcome_seal_fn *open,
                                void *arg);

/*  Record out in *txn_p (bus_request_record), commit it (consumed;
    its events are published), then answer: with out when the commit
    succeeded, else `unavailable` (out's body and extra are stolen either
    way). The way for a handler on the reactor to answer a request whose
    effect is in txn. Reactor only. Returns the commit's result. */
int bus_request_commit (bus_request_t *req, bus_txn_t **txn_p, bus_outcome_t *out);

/*  Start n (1..64) worker threads for bus_request_offload, the state of
    each made on it by init (arg) and freed there by fini, e.g. read
    handles of its own on the store. Once, before bus_service_run. The
    threads stop when the reactor does, after finishing the work they
    started. Returns 0 or an error. */
int bus_service_workers (bus_service_t *self, int n, bus_worker_init_fn *init,
                         bus_worker_fini_fn *fini, void *arg);

/*  Hand a long request (one that would hold up every request behind it on
    the reactor) to a worker thread: fn runs there and the reactor then
    answers with its outcome. job (malloc'd, or NULL) is freed with free()
    once answered. Returns 0 (the request is deferred); BUS_ESTATE when
    the service has no workers (nothing done: the caller keeps the request
    and job); else, when S_WORK_QUEUE_MAX requests already wait, the
    request has been answered `unavailable` and job freed. */
int bus_request_offload (bus_request_t *req, bus_work_fn *fn, void *job);

/*  Start the service's writer: one thread for requests that write (its
    state from init (arg), made and freed on it). Its commits (with
    bus_service_commit, events included) take the fsync off the reactor;
    their events are published, in sequence, before the reply. The writer
    runs the writes it finds queued as one group transaction: each write's
    commit nests in it, then its outcome is recorded in it, and the group
    commits once (one fsync); a group that cannot be stored answers each
    of its writes `unavailable` and records nothing. Once, before
    bus_service_run. Returns 0 or an error. */
int bus_service_writer (bus_service_t *self, bus_worker_init_fn *init,
                        bus_worker_fini_fn *fini, void *arg);

/*  As bus_service_writer, the writer at the reactor's priority rather
    than below it (nice 10, as the workers run): for a service whose
    writes are most of its work and each request's critical path (the
    auditor's appends), where a writer preempted mid-group also holds
    LMDB's write lock, which the reactor's own commits (a follower's
    marks, an outbox trim) wait for. */
int bus_service_writer_urgent (bus_service_t *self, bus_worker_init_fn *init,
                               bus_worker_fini_fn *fini, void *arg);

/*  At most max writes (1..BUS_WRITE_GROUP_MAX; default 64) in one of the
    writer's groups (one fsync). A larger group shares each fsync among
    more writes when many wait (the auditor's appends), but holds LMDB's
    write lock longer: a write on the reactor (an outbox trim, a follower's
    commit) waits for the whole group. A per-service choice, from the
    service's own config (e.g. [auditor] write_group_max). After
    bus_service_writer. Returns 0, or BUS_EINVAL (no writer, max out of
    range). */
#define BUS_WRITE_GROUP_MAX 1024
int bus_service_writer_group (bus_service_t *self, size_t max);

/*  As bus_request_offload, on the writer (write requests run there one
    after another, in the order they came), job freed by job_free (NULL:
    free()), whether it ran or not. BUS_ESTATE when the service has no
    writer (nothing done: the caller keeps the request and job). */
int bus_request_offload_write (bus_request_t *req, bus_work_fn *fn, void *job,
                               void (*job_free) (void *job));

/*  Run fn, a write, where it answers soonest: on the writer (as
    bus_request_offload_write) when writes queue (bus_service_writes_queue),
    else now, here on the reactor, with state as fn's state: no thread hop
    (the writer is idle and stays so until the reactor hands it more).
    A write made here during which other requests arrived (they waited
    for its fsync) sends the writes of the next 10 ms to the writer, so
    that a burst is grouped rather than committed one by one here.
    Either way as the writer runs a group: fn's commits nest in a group,
    its outcome is recorded there, the group commits (one fsync), its
    events are published, and then the reply is sent; job is freed by
    job_free (NULL: free()) after the answer. Stats: writes_on_reactor
    counts those run here, the latencies write_here_work and
    write_here_commit time their work and their commit. Returns 0 (answered, or
    deferred to the writer), or an error of bus_request_offload_write
    (the request then answered, job freed). Reactor only. */
int bus_request_write (bus_request_t *req, bus_work_fn *fn, void *state, void *job,
                       void (*job_free) (void *job));

/*  True when writes queue: requests handed to the writer are not yet
    answered, or more requests wait on the ROUTER behind this one. A
    handler may commit a lone write on the reactor when false (the writer
    is idle, and stays so until the reactor hands it more), saving the
    thread hop, and hand writes to the writer, which groups them, when
    true. False when there is no writer. Reactor only. */
bool bus_service_writes_queue (bus_service_t *self);

#endif
