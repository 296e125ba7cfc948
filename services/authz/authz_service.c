/*  authz_service.c — the authz daemon: the relationship engine on the bus.

    Serves OpenFGA's API as bus requests (authz.model.write/read, write,
    read, read_changes, check, batch_check, expand, list_objects,
    list_users, assertions.write/read), and over HTTP in OpenFGA's shapes
    through authz_http.c (the same handlers), and Sanctum's decisions (authz.decide, authz.approvers,
    authz.policy.write/read). Engine errors keep OpenFGA's numeric code in
    the reply's error as `fga_code`, beside a bus error code:
    2000/2004/2027/2033 invalid, 2001/2020/2021/2022/5002 not_found, 2017
    conflict, 2002 too_complex, storage failures unavailable.

    Every query spends one budget ([authz] request_cost, request_tuples,
    resolve_depth; authz_budget_t). A ListObjects asked for with a pipe
    (bus_service_local_piped: the HTTP adapter's StreamedListObjects)
    puts each object into it as OpenFGA's line as soon as it is decided,
    without the 1,000 cap, and stops when the pipe is cancelled. Expand, ListObjects, ListUsers and
    BatchCheck run on the query threads; a Check runs on the reactor
    within reactor_cost/reactor_tuples and starts again on a query thread
    past them (or at once, with offload_conditions conditional contextual
    tuples), so that no request holds the reactor for long.
*/
#include "authz_service.h"
#include "authz_check.h"
#include "authz_http.h"
#include "authz_policy.h"
#include "authz_stores.h"
#include "authz_tuples.h"
#include "authz_validate.h"
#include "bus_error.h"
#include "bus_log.h"

#include <errno.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#define S_POLICY_KEY "current"
#define S_STORE_KEY "fga_store"   /* the default store's identity, in the policy database */
#define S_WORKER_NICE 10
#define S_RECLAIM_KEYS 2000       /* keys of deleted stores reclaimed per timer tick */

/*  How a store commits: for this service, in the trace of this request. */
typedef struct {
    bus_service_t *svc;
    const char *traceparent;      /* of the request whose write is committing */
    bus_request_t *req;           /* on the reactor: that request, whose outcome commits with it */
} s_committer_t;

typedef struct {
    s_committer_t committer;      /* for store's commits, on the reactor */
    bus_service_t *svc;
    authz_store_t *store;
    authz_policy_t *policy;
    int policy_db;
    authz_budget_t budget;        /* a request's limits ([authz] request_*) */
    authz_budget_t reactor;       /* a Check's on the reactor (reactor_*) */
    long offload_conditions;      /* conditional contextual tuples that send
                                     a Check to a query thread at once */
    authz_http_t *http;           /* OpenFGA's HTTP API (authz_http.h) */
    int stores_db;                /* the registry (authz_stores.h) */
    zhashx_t *stores;             /* live stores: id -> s_store_t (owned) */
    char default_id [PROTO_ID_LEN + 1];  /* the store of requests that name none */
    uint32_t store_no;            /* the store of the request being handled */
    const char *store_id;         /* its id */
    bool reclaim;                 /* a deleted store's keys remain */
    struct s_guard_t *guards;     /* the handlers, behind the store_id check */
} s_authz_t;

/*  A live store, as the reactor knows it. */
typedef struct {
    json_t *record;               /* {id, name, created_at, updated_at} */
    uint32_t number;              /* its keys' prefix (authz_tuples.h) */
} s_store_t;

/*  A handler behind the store check (s_guarded). */
typedef struct s_guard_t {
    s_authz_t *self;
    bus_handler_fn *fn;
} s_guard_t;

/*  The writer thread's state: a store of its own, committing on it. */
typedef struct {
    s_committer_t committer;
    authz_store_t *store;
} s_writer_t;

/*  The store's commit: the event describing the change goes into the
    outbox in the same transaction, and is published once it is durable.
    On the reactor, the request's answer (what a successful write
    answers: {} for tuples, the model's id for a model) is recorded in it
    too, so that a retry after a crash gets it (bus_request_record); on
    the writer the runtime records it. */
static int
s_commit (bus_txn_t **txn_p, json_t *change, void *arg)
{
    s_committer_t *self = arg;
    bool tuples = json_object_get (change, "writes") != NULL;
    int rc = bus_event_append (self->svc, *txn_p, tuples ? "authz.tuples.written" : "authz.model.written",
                               json_incref (change), self->traceparent);
    if (rc == 0 && self->req) {
        /* the reply s_write_tuples gives, for a retry after a restart */
        bus_outcome_t out = { .body = tuples ? json_pack ("{s:O, s:O, s:O, s:O}", "written",
                                                          json_object_get (change, "writes"), "deleted",
                                                          json_object_get (change, "deletes"), "existing",
                                                          json_object_get (change, "existing"), "missing",
                                                          json_object_get (change, "missing"))
                                             : json_pack ("{s:O}", "authorization_model_id",
                                                          json_object_get (change, "authorization_model_id")) };
        rc = out.body ? bus_request_record (self->req, *txn_p, &out) : BUS_ENOMEM;
        json_decref (out.body);
    }
    if (rc) {
        bus_service_abort (self->svc, txn_p);
        return rc;
    }
    return bus_service_commit (self->svc, txn_p);
}

/*  The engine's databases (authz_store_db_names; authz_store_new checks
    they are all here) and the policy's. */
static const char *const s_dbs [] = {
    "authz_models", "authz_tuples", "authz_users", "authz_changes", "authz_stores", "authz_policy", NULL
};

/*  An engine error as an answer: a bus code, OpenFGA's code beside it. */
static void
s_fail_outcome (bus_outcome_t *out, int rc, authz_error_t *err)
{
    int fga = err->code ? err->code : rc < -1000 ? -rc : AUTHZ_EINTERNAL;
    out->code = PROTO_ERR_INVALID;
    switch (fga) {
        case AUTHZ_EMODEL_NOT_FOUND: case AUTHZ_ELATEST_NOT_FOUND:
        case AUTHZ_ETYPE_NOT_FOUND: case AUTHZ_EREL_NOT_FOUND: case AUTHZ_ESTORE_NOT_FOUND:
            out->code = PROTO_ERR_NOT_FOUND; break;
        case AUTHZ_EWRITE_FAILED:
            out->code = PROTO_ERR_CONFLICT; break;
        case AUTHZ_ETOO_COMPLEX:
            out->code = PROTO_ERR_TOO_COMPLEX; break;
        case AUTHZ_EINTERNAL:
            out->code = PROTO_ERR_UNAVAILABLE; break;
        default:
            break;
    }
    snprintf (out->message, sizeof out->message, "%s", err->code ? err->message : bus_strerror (rc));
    out->extra = json_pack ("{s:i, s:s}", "fga_code", fga, "fga_name", authz_strerror (fga));
}

/*  Reply with an engine error. */
static void
s_fail (bus_request_t *req, int rc, authz_error_t *err)
{
    bus_outcome_t out = { .code = NULL };
    s_fail_outcome (&out, rc, err);
    bus_reply_outcome (req, &out);
}

/*  The answer to a query: the engine's error, or body (stolen; built by
    the caller from results that exist only when rc is 0). */
static void
s_finish_outcome (bus_outcome_t *out, int rc, authz_error_t *err, json_t *body)
{
    if (rc) {
        json_decref (body);
        s_fail_outcome (out, rc, err);
    }
    else if (!body) {
        out->code = PROTO_ERR_INTERNAL;
        snprintf (out->message, sizeof out->message, "reply could not be built");
    }
    else
        out->body = body;
}

static void
s_finish (bus_request_t *req, int rc, authz_error_t *err, json_t *body)
{
    bus_outcome_t out = { .code = NULL };
    s_finish_outcome (&out, rc, err, body);
    bus_reply_outcome (req, &out);
}

/*  A request whose shape the catalogue cannot express is wrong. */
static void
s_invalid_outcome (bus_outcome_t *out, const char *message)
{
    out->code = PROTO_ERR_INVALID;
    out->extra = json_pack ("{s:i}", "fga_code", AUTHZ_EVALIDATION);
    snprintf (out->message, sizeof out->message, "%s", message);
}

static void
s_invalid (bus_request_t *req, const char *message)
{
    bus_outcome_t out = { .code = NULL };
    s_invalid_outcome (&out, message);
    bus_reply_outcome (req, &out);
}

/*  The model named by the request's model_id, or the latest. */
static const authz_model_t *
s_model (s_authz_t *self, bus_request_t *req)
{
    authz_error_t err = { 0 };
    const authz_model_t *model = NULL;
    const char *id = json_string_value (json_object_get (bus_request_body (req), "model_id"));
    int rc = authz_store_model (self->store, id, &model, &err);
    if (rc) {
        s_fail (req, rc, &err);
        return NULL;
    }
    return model;
}

/*  Contextual tuples of a request (a list of tuple keys, or OpenFGA's
    {tuple_keys: [...]}) into extra, with the request's budget; tuples
    must hold AUTHZ_MAX_CONTEXTUAL. Returns 0, or -1 with the answer in
    out. */
static int
s_extra (json_t *body, authz_extra_t *extra, authz_tuple_t *tuples, authz_budget_t *budget,
         bus_outcome_t *out)
{
    extra->budget = budget;
    authz_error_t err = { 0 };
    json_t *ct = json_object_get (body, "contextual_tuples");
    if (json_is_object (ct))
        ct = json_object_get (ct, "tuple_keys");
    extra->context = json_object_get (body, "context");
    if (json_is_null (extra->context))
        extra->context = NULL;
    extra->tuples = tuples;
    extra->n_tuples = 0;
    if (extra->context && !json_is_object (extra->context)) {
        out->code = PROTO_ERR_INVALID;
        snprintf (out->message, sizeof out->message, "context must be a map");
        return -1;
    }
    if (!ct || json_is_null (ct))
        return 0;
    if (!json_is_array (ct) || json_array_size (ct) > AUTHZ_MAX_CONTEXTUAL) {
        authz_error_set (&err, AUTHZ_EINVALID_TUPLE, "contextual tuples must be a list of at most %d tuple keys",
                         AUTHZ_MAX_CONTEXTUAL);
        s_fail_outcome (out, -AUTHZ_EINVALID_TUPLE, &err);
        return -1;
    }
    size_t i;
    json_t *t;
    json_array_foreach (ct, i, t) {
        int rc = authz_tuple_from_json (&tuples [i], t, &err);
        if (rc) {
            err.code = AUTHZ_EINVALID_TUPLE;
            s_fail_outcome (out, -AUTHZ_EINVALID_TUPLE, &err);
            return -1;
        }
    }
    extra->n_tuples = json_array_size (ct);
    return 0;
}

/*  A string member of a map, or NULL. */
static const char *
s_field (json_t *obj, const char *key)
{
    return json_string_value (json_object_get (obj, key));
}

/* --- models --------------------------------------------------------------- */

static void
s_model_write (bus_service_t *svc, bus_request_t *req, void *arg)
{
    s_authz_t *self = arg;
    json_t *given = json_object_get (bus_request_body (req), "model");
    json_t *model = NULL, *errors = NULL;
    int rc;
    if (json_is_string (given))
        rc = authz_dsl_load (&model, json_string_value (given), &errors);
    else if (json_is_object (given)) {
        model = json_deep_copy (given);
        rc = model ? authz_model_normalize (model) : BUS_ENOMEM;
        if (rc == 0)
            rc = authz_model_validate (model, &errors);
    }
    else {
        bus_reply_error (req, PROTO_ERR_INVALID, "model must be OpenFGA JSON (a map) or DSL (a string)");
        return;
    }
    if (rc || (errors && json_array_size (errors))) {
        json_t *first = json_array_get (errors, 0);
        bus_reply_error_with (req, PROTO_ERR_INVALID,
                              json_pack ("{s:i, s:O?}", "fga_code", AUTHZ_EVALIDATION, "errors", errors),
                              "invalid authorization model: %s",
                              first ? s_field (first, "msg") ?: "see errors" : bus_strerror (rc));
        json_decref (model);
        json_decref (errors);
        return;
    }
    json_decref (errors);
    char id [AUTHZ_MODEL_ID_LEN + 1];
    authz_error_t err = { 0 };
    self->committer.traceparent = bus_request_traceparent (req);
    self->committer.req = req;
    rc = authz_store_write_model (self->store, model, id, &err);
    self->committer.traceparent = NULL;
    self->committer.req = NULL;
    s_finish (req, rc, &err, rc ? NULL : json_pack ("{s:s}", "authorization_model_id", id));
    json_decref (model);
}

static void
s_model_read (bus_service_t *svc, bus_request_t *req, void *arg)
{
    const authz_model_t *model = s_model (arg, req);
    if (model)
        bus_reply_ok (req, json_pack ("{s:s, s:O, s:o}", "authorization_model_id", authz_model_id (model),
                                      "authorization_model", authz_model_json (model),
                                      "model_ids", authz_store_model_ids (((s_authz_t *) arg)->store)));
}

/* --- tuples --------------------------------------------------------------- */

/*  Tuple keys of a list into out (at most AUTHZ_MAX_WRITE_TUPLES). */
static int
s_tuples (json_t *list, authz_tuple_t *out, size_t *n, authz_error_t *err)
{
    size_t i;
    json_t *t;
    *n = 0;
    if (json_is_object (list))
        list = json_object_get (list, "tuple_keys");
    json_array_foreach (list, i, t) {
        if (i >= AUTHZ_MAX_WRITE_TUPLES)
            return authz_error_set (err, AUTHZ_EEXCEEDED_ITEMS, "at most %d tuples per write",
                                    AUTHZ_MAX_WRITE_TUPLES);
        int rc = authz_tuple_from_json (&out [i], t, err);
        if (rc)
            return rc;
        (*n)++;
    }
    return 0;
}

/*  authz.write on store (the writer's, or the reactor's), committing
    through committer in the request's trace. */
static void
s_write_tuples (authz_store_t *store, s_committer_t *committer, const authz_model_t *model, json_t *body,
                const char *traceparent, bus_outcome_t *out)
{
    authz_tuple_t writes [AUTHZ_MAX_WRITE_TUPLES], deletes [AUTHZ_MAX_WRITE_TUPLES];
    size_t nw = 0, nd = 0;
    authz_error_t err = { 0 };
    int rc = s_tuples (json_object_get (body, "writes"), writes, &nw, &err);
    if (rc == 0)
        rc = s_tuples (json_object_get (body, "deletes"), deletes, &nd, &err);
    if (rc == 0 && nw + nd == 0)
        rc = authz_error_set (&err, AUTHZ_EINVALID_WRITE, "a write needs writes or deletes");
    if (rc == 0 && nw + nd > AUTHZ_MAX_WRITE_TUPLES)
        rc = authz_error_set (&err, AUTHZ_EEXCEEDED_ITEMS, "at most %d writes and deletes together",
                              AUTHZ_MAX_WRITE_TUPLES);
    const char *dup = s_field (body, "on_duplicate"), *miss = s_field (body, "on_missing");
    if (rc == 0 && ((dup && strcmp (dup, "ignore") && strcmp (dup, "error"))
                    || (miss && strcmp (miss, "ignore") && strcmp (miss, "error"))))
        rc = authz_error_set (&err, AUTHZ_EVALIDATION, "on_duplicate and on_missing take \"error\" or \"ignore\"");
    int flags = (dup && !strcmp (dup, "ignore") ? AUTHZ_WRITE_IGNORE_DUPLICATE : 0)
              | (miss && !strcmp (miss, "ignore") ? AUTHZ_DELETE_IGNORE_MISSING : 0);
    committer->traceparent = traceparent;
    authz_write_count_t count = { 0 };
    if (rc == 0)
        rc = authz_store_write_counted (store, model, writes, nw, deletes, nd, flags, &count, &err);
    committer->traceparent = NULL;
    s_finish_outcome (out, rc, &err, rc ? NULL : json_pack ("{s:I, s:I, s:I, s:I}", "written",
                                                            (json_int_t) count.written, "deleted",
                                                            (json_int_t) count.deleted, "existing",
                                                            (json_int_t) count.existing, "missing",
                                                            (json_int_t) count.missing));
}

/*  A write handed to the writer thread: the model (resolved on the
    reactor) by id, and the request's trace. */
typedef struct {
    char model_id [AUTHZ_MODEL_ID_LEN + 1];
    char traceparent [PROTO_TRACEPARENT_LEN + 1];
    uint32_t store_no;
} s_write_job_t;

/*  On a worker or the writer: the model (resolved on the reactor) by id,
    from that thread's store (NULL when it has none); NULL with the answer
    in out when it cannot be had. */
static const authz_model_t *
s_model_by_id (authz_store_t *store, const char *id, bus_outcome_t *out)
{
    authz_error_t err = { 0 };
    const authz_model_t *model = NULL;
    int rc = store ? authz_store_model (store, id, &model, &err) : BUS_ENOMEM;
    if (rc)
        s_fail_outcome (out, rc, &err);
    return rc ? NULL : model;
}

static void
s_write_work (void *state, json_t *body, void *arg, bus_outcome_t *out)
{
    s_writer_t *writer = state;
    s_write_job_t *job = arg;
    if (writer)                         /* checked in the write's own transaction */
        authz_store_select (writer->store, job->store_no, true);
    const authz_model_t *model = s_model_by_id (writer ? writer->store : NULL, job->model_id, out);
    if (model)
        s_write_tuples (writer->store, &writer->committer, model, body, job->traceparent, out);
}

static void *
s_writer_init (void *arg)
{
    s_writer_t *writer = calloc (1, sizeof *writer);
    if (writer && authz_store_new (&writer->store, bus_service_store (arg)) == 0) {
        writer->committer.svc = arg;
        authz_store_set_commit (writer->store, s_commit, &writer->committer);
        return writer;
    }
    bus_error ("writer: cannot open the store");
    free (writer);
    return NULL;
}

static void
s_writer_fini (void *state, void *arg)
{
    s_writer_t *writer = state;
    if (writer)
        authz_store_destroy (&writer->store);
    free (writer);
}

/*  On the writer thread when there is one (its commit, two fsyncs, then
    holds up nothing here), else here. */
static void
s_write (bus_service_t *svc, bus_request_t *req, void *arg)
{
    s_authz_t *self = arg;
    const authz_model_t *model = s_model (self, req);
    if (!model)
        return;
    s_write_job_t *job = malloc (sizeof *job);
    if (job) {
        snprintf (job->model_id, sizeof job->model_id, "%s", authz_model_id (model));
        snprintf (job->traceparent, sizeof job->traceparent, "%s", bus_request_traceparent (req));
        job->store_no = self->store_no;
        if (bus_request_offload_write (req, s_write_work, job, NULL) != BUS_ESTATE)
            return;                     /* deferred, or refused and answered */
        free (job);
    }
    bus_outcome_t out = { .code = NULL };
    self->committer.req = req;
    s_write_tuples (self->store, &self->committer, model, bus_request_body (req),
                    bus_request_traceparent (req), &out);
    self->committer.req = NULL;
    bus_reply_outcome (req, &out);
}

static void
s_read (bus_service_t *svc, bus_request_t *req, void *arg)
{
    s_authz_t *self = arg;
    json_t *body = bus_request_body (req);
    /* tuple_key, as OpenFGA's Read names it; tuple, this API's first name */
    json_t *key = json_object_get (body, "tuple_key"), *older = json_object_get (body, "tuple");
    if (key && older) {
        s_invalid (req, "give the filter as tuple_key or as tuple, not both");
        return;
    }
    if (!key)
        key = older;
    authz_tuple_t filter = { .object = s_field (key, "object"), .relation = s_field (key, "relation"),
                             .user = s_field (key, "user") };
    json_t *tuples = NULL;
    char *token = NULL;
    authz_error_t err = { 0 };
    int rc = authz_store_read (self->store, &filter,
                               (size_t) json_integer_value (json_object_get (body, "page_size")),
                               s_field (body, "continuation_token"), &tuples, &token, &err);
    s_finish (req, rc, &err, rc ? NULL : json_pack ("{s:o, s:s}", "tuples", tuples, "continuation_token", token));
    free (token);
}

static void
s_read_changes (bus_service_t *svc, bus_request_t *req, void *arg)
{
    s_authz_t *self = arg;
    json_t *body = bus_request_body (req);
    json_t *changes = NULL;
    char *token = NULL;
    authz_error_t err = { 0 };
    int rc = authz_store_read_changes (self->store, s_field (body, "type"), s_field (body, "start_time"),
                                       (size_t) json_integer_value (json_object_get (body, "page_size")),
                                       s_field (body, "continuation_token"), &changes, &token, &err);
    s_finish (req, rc, &err, rc ? NULL : json_pack ("{s:o, s:s}", "changes", changes, "continuation_token", token));
    free (token);
}

/* --- queries -------------------------------------------------------------- */

/*  A query's work on a model, with the store of the thread it runs on
    (the reactor's, or a worker's) and the request's budget (spent): the
    answer goes to out. */
typedef void (s_query_fn) (authz_store_t *store, const authz_model_t *model, json_t *body,
                           authz_budget_t *budget, bus_outcome_t *out);

/*  A query handed to a worker: what to run, on which model (resolved on
    the reactor, so that the latest model is the one the reactor knows),
    within which limits. */
typedef struct {
    s_query_fn *fn;
    char model_id [AUTHZ_MODEL_ID_LEN + 1];
    authz_budget_t budget;
    uint32_t store_no;
} s_job_t;

/*  On a worker thread: its own store (state) resolves the model by id. */
static void
s_query_work (void *state, json_t *body, void *arg, bus_outcome_t *out)
{
    s_job_t *job = arg;
    if (state)                          /* checked in the query's own snapshot */
        authz_store_select (state, job->store_no, true);
    const authz_model_t *model = s_model_by_id (state, job->model_id, out);
    if (model)
        job->fn (state, model, body, &job->budget, out);
}

/*  Worker threads' state: a store of their own on the service's
    environment (read handles and caches are per thread). A worker runs
    at a lower priority (nice +S_WORKER_NICE, this thread only, as Linux
    allows): on a busy machine the reactor, which answers everything
    else, gets the CPU before a long query does. */
static void *
s_worker_init (void *arg)
{
    if (setpriority (PRIO_PROCESS, (id_t) syscall (SYS_gettid), S_WORKER_NICE))
        bus_warn ("query worker: cannot lower its priority: %s", strerror (errno));
    authz_store_t *store = NULL;
    if (authz_store_new (&store, arg))
        bus_error ("query worker: cannot open the store");
    return store;
}

static void
s_worker_fini (void *state, void *arg)
{
    authz_store_t *store = state;
    authz_store_destroy (&store);
}

/*  A streamed query's budget: the request's pipe rides in it (the query
    function finds it in stop_arg), whose cancellation stops the query. */
static bool
s_pipe_cancelled (void *arg)
{
    return bus_pipe_cancelled (arg);
}

static void
s_budget_piped (authz_budget_t *budget, bus_request_t *req)
{
    if (bus_request_pipe (req)) {
        budget->stop = s_pipe_cancelled;
        budget->stop_arg = bus_request_pipe (req);
    }
}

/*  Hand a query to a worker thread with the request's whole budget: true
    when it is (deferred, or refused and answered), false when the service
    has no workers or no memory (the caller runs it). */
static bool
s_offload (s_authz_t *self, bus_request_t *req, const authz_model_t *model, s_query_fn *fn)
{
    s_job_t *job = malloc (sizeof *job);
    if (!job)
        return false;
    job->fn = fn;
    job->budget = self->budget;
    s_budget_piped (&job->budget, req);
    job->store_no = self->store_no;
    snprintf (job->model_id, sizeof job->model_id, "%s", authz_model_id (model));
    if (bus_request_offload (req, s_query_work, job) != BUS_ESTATE)
        return true;
    free (job);
    return false;
}

/*  Contextual tuples of a request that carry a condition: what makes a
    Check's cost unknown before it runs (each may evaluate an expression
    of the model's with a context of the client's). */
static size_t
s_conditional (json_t *body)
{
    json_t *ct = json_object_get (body, "contextual_tuples");
    if (json_is_object (ct))
        ct = json_object_get (ct, "tuple_keys");
    size_t i, n = 0;
    json_t *t;
    json_array_foreach (ct, i, t)
        n += json_object_get (t, "condition") != NULL;
    return n;
}

/*  How a query runs (see s_query). */
typedef enum {
    S_SHORT,                      /* Check: on the reactor within its share */
    S_LONG                        /* on a worker thread when there are any */
} s_span_t;

/*  Run a query. A long one (Expand, ListObjects, ListUsers, BatchCheck:
    each would hold up every request behind it) goes to a worker thread
    when the service has workers. A Check runs here within the reactor's
    share of the budget, unless its contextual tuples make it look costly;
    past that share it starts again on a worker with the whole budget
    (the work done here is lost, and bounded). Without workers, everything
    runs here with the whole budget. */
static void
s_query (s_authz_t *self, bus_request_t *req, s_query_fn *fn, s_span_t span)
{
    const authz_model_t *model = s_model (self, req);
    if (!model)
        return;
    json_t *body = bus_request_body (req);
    if ((span == S_LONG || s_conditional (body) >= (size_t) self->offload_conditions)
    &&  s_offload (self, req, model, fn))
        return;
    bus_outcome_t out = { .code = NULL };
    authz_budget_t budget = span == S_SHORT? self->reactor: self->budget;
    s_budget_piped (&budget, req);
    fn (self->store, model, body, &budget, &out);
    if (span == S_SHORT && budget.over && (budget.max_cost < self->budget.max_cost
                                           || budget.max_tuples < self->budget.max_tuples)) {
        json_decref (out.body);
        json_decref (out.extra);
        out = (bus_outcome_t) { .code = NULL };
        if (s_offload (self, req, model, fn))
            return;
        budget = self->budget;
        fn (self->store, model, body, &budget, &out);
    }
    bus_reply_outcome (req, &out);
}

static void
s_check_query (authz_store_t *store, const authz_model_t *model, json_t *body,
               authz_budget_t *budget, bus_outcome_t *out)
{
    json_t *key = json_object_get (body, "tuple_key");
    authz_tuple_t ctx [AUTHZ_MAX_CONTEXTUAL];
    authz_extra_t extra;
    if (s_extra (body, &extra, ctx, budget, out))
        return;
    const char *object = s_field (key, "object"), *relation = s_field (key, "relation"),
               *user = s_field (key, "user");
    if (!object || !relation || !user) {
        s_invalid_outcome (out, "tuple_key needs object, relation and user strings");
        return;
    }
    bool allowed = false;
    authz_error_t err = { 0 };
    int rc = authz_tuple_check_limits (object, relation, user, false, AUTHZ_EVALIDATION, &err);
    if (rc == 0)
        rc = authz_check (store, model, object, relation, user, &extra, &allowed, &err);
    /* built by hand: json_pack parses its format on every call */
    json_t *reply = rc ? NULL : json_object ();
    if (reply && json_object_set_new_nocheck (reply, "allowed", json_boolean (allowed))) {
        json_decref (reply);
        reply = NULL;           /* out of memory: "reply could not be built" */
    }
    s_finish_outcome (out, rc, &err, reply);
}

/*  The identifier limits of every check's tuple key, before any is run:
    a request with one id too long is refused as a whole. */
static int
s_batch_limits (json_t *checks, authz_error_t *err)
{
    size_t i;
    json_t *item;
    json_array_foreach (checks, i, item) {
        json_t *key = json_object_get (item, "tuple_key");
        authz_error_t e = { 0 };
        if (authz_tuple_check_limits (s_field (key, "object"), s_field (key, "relation"),
                                      s_field (key, "user"), false, AUTHZ_EVALIDATION, &e))
            return authz_error_set (err, AUTHZ_EVALIDATION, "checks[%zu]: %s", i, e.message);
    }
    return 0;
}

static void
s_batch_check_query (authz_store_t *store, const authz_model_t *model, json_t *body,
                     authz_budget_t *budget, bus_outcome_t *out)
{
    json_t *result = NULL;
    authz_error_t err = { 0 };
    int rc = s_batch_limits (json_object_get (body, "checks"), &err);
    if (rc == 0)
        rc = authz_batch_check (store, model, json_object_get (body, "checks"), budget, &result, &err);
    s_finish_outcome (out, rc, &err, rc ? NULL : json_pack ("{s:o}", "result", result));
}

static void
s_expand_query (authz_store_t *store, const authz_model_t *model, json_t *body,
                authz_budget_t *budget, bus_outcome_t *out)
{
    json_t *key = json_object_get (body, "tuple_key");
    authz_tuple_t ctx [AUTHZ_MAX_CONTEXTUAL];
    authz_extra_t extra;
    if (s_extra (body, &extra, ctx, budget, out))
        return;
    if (!s_field (key, "object") || !s_field (key, "relation")) {
        s_invalid_outcome (out, "tuple_key needs object and relation strings");
        return;
    }
    json_t *tree = NULL;
    authz_error_t err = { 0 };
    int rc = authz_tuple_check_limits (s_field (key, "object"), s_field (key, "relation"), NULL, false,
                                       AUTHZ_EVALIDATION, &err);
    if (rc == 0)
        rc = authz_expand (store, model, s_field (key, "object"), s_field (key, "relation"),
                           &extra, &tree, &err);
    s_finish_outcome (out, rc, &err, rc ? NULL : json_pack ("{s:o}", "tree", tree));
}

static void
s_list_objects_query (authz_store_t *store, const authz_model_t *model, json_t *body,
                      authz_budget_t *budget, bus_outcome_t *out)
{
    authz_tuple_t ctx [AUTHZ_MAX_CONTEXTUAL];
    authz_extra_t extra;
    if (s_extra (body, &extra, ctx, budget, out))
        return;
    json_t *objects = NULL;
    authz_error_t err = { 0 };
    int rc = authz_list_objects (store, model, s_field (body, "type"), s_field (body, "relation"),
                                 s_field (body, "user"), &extra, &objects, &err);
    s_finish_outcome (out, rc, &err, rc ? NULL : json_pack ("{s:o}", "objects", objects));
}

/*  An object, as StreamedListObjects' line, into the pipe (found's arg):
    waits there while the reader is slow (bus_pipe.h). */
static int
s_stream_found (const char *object, void *arg)
{
    json_t *line = json_pack ("{s:{s:s}}", "result", "object", object);
    char *text = line? json_dumps (line, JSON_COMPACT): NULL;
    json_decref (line);
    if (!text)
        return BUS_ENOMEM;
    size_t n = strlen (text);
    text [n] = '\n';                    /* over the NUL: sent as n + 1 bytes */
    int rc = bus_pipe_put (arg, text, n + 1);
    free (text);
    return rc;
}

/*  StreamedListObjects: every object (no cap: OpenFGA streams them all)
    into the request's pipe as it is decided; the answer is the end ({})
    or the error that ended it, possibly after some objects. Within the
    request's budget like every query. A reader so slow that the pipe
    stays full for S_STREAM_WAIT_MS in all (bus_pipe.h; the adapter's
    choice) ends it deadline_exceeded; a pipe full on the reactor (no
    query thread: it cannot drain until the query ends) unavailable; a
    cancelled pipe (the client went away) as over its budget (nobody
    reads that answer). */
static void
s_streamed_list_objects_query (authz_store_t *store, const authz_model_t *model, json_t *body,
                               authz_budget_t *budget, bus_outcome_t *out)
{
    authz_tuple_t ctx [AUTHZ_MAX_CONTEXTUAL];
    authz_extra_t extra;
    if (s_extra (body, &extra, ctx, budget, out))
        return;
    authz_found_t sink = { s_stream_found, budget->stop_arg, 0 };
    authz_error_t err = { 0 };
    int rc = authz_list_objects_each (store, model, s_field (body, "type"), s_field (body, "relation"),
                                      s_field (body, "user"), &extra, &sink, &err);
    if (rc == BUS_EINTR)                /* the pipe was cancelled: as the budget's stop says */
        rc = authz_error_set (&err, AUTHZ_ETOO_COMPLEX, "request stopped: nobody waits for its answer");
    if (rc == BUS_ETIMEOUT || rc == BUS_EFULL) {
        out->code = rc == BUS_ETIMEOUT? PROTO_ERR_TIMEOUT: PROTO_ERR_UNAVAILABLE;
        out->extra = json_pack ("{s:i}", "fga_code", AUTHZ_EINTERNAL);
        snprintf (out->message, sizeof out->message, "%s",
                  rc == BUS_ETIMEOUT? "the client read the stream too slowly: the listing stopped"
                                    : "more objects than a stream holds without a query thread "
                                      "([authz] query_threads = 0)");
        return;
    }
    s_finish_outcome (out, rc, &err, rc? NULL: json_object ());
}

/*  list_users: object {type, id}, user_filters [{type, relation?}] as in
    OpenFGA's API; users come back as "type:id", "type:*" or
    "type:id#relation" strings. */
static void
s_list_users_query (authz_store_t *store, const authz_model_t *model, json_t *body,
                    authz_budget_t *budget, bus_outcome_t *out)
{
    json_t *obj = json_object_get (body, "object");
    json_t *filter = json_array_get (json_object_get (body, "user_filters"), 0);
    authz_tuple_t ctx [AUTHZ_MAX_CONTEXTUAL];
    authz_extra_t extra;
    if (s_extra (body, &extra, ctx, budget, out))
        return;
    const char *type = s_field (obj, "type"), *id = s_field (obj, "id"), *ftype = s_field (filter, "type");
    if (!type || !id || !ftype) {
        s_invalid_outcome (out, "object needs type and id, user_filters[0] needs type");
        return;
    }
    const char *frel = s_field (filter, "relation");
    json_t *users = NULL;
    authz_error_t err = { 0 };
    /* within the limits both joined strings fit their buffers: never cut */
    size_t tl = strlen (type), il = strlen (id), fl = strlen (ftype);
    int rc = 0;
    if (tl > AUTHZ_MAX_TYPE || fl > AUTHZ_MAX_TYPE)
        rc = authz_error_set (&err, AUTHZ_EVALIDATION, "a type name is %zu bytes, at most %d",
                              tl > fl ? tl : fl, AUTHZ_MAX_TYPE);
    else if (tl + 1 + il > AUTHZ_MAX_OBJECT)
        rc = authz_error_set (&err, AUTHZ_EVALIDATION, "the object (type:id) is %zu bytes, at most %d",
                              tl + 1 + il, AUTHZ_MAX_OBJECT);
    else
        rc = authz_tuple_check_limits (NULL, frel, NULL, false, AUTHZ_EVALIDATION, &err);
    char object [2 * AUTHZ_MAX_FIELD + 2], ufilter [2 * AUTHZ_MAX_FIELD + 2];
    if (rc == 0) {
        snprintf (object, sizeof object, "%s:%s", type, id);
        snprintf (ufilter, sizeof ufilter, "%s%s%s", ftype, frel ? "#" : "", frel ? frel : "");
        rc = authz_list_users (store, model, object, s_field (body, "relation"), ufilter, &extra,
                               &users, &err);
    }
    s_finish_outcome (out, rc, &err, rc ? NULL : json_pack ("{s:o}", "users", users));
}

/*  A Check is short and runs here (within the reactor's share); a
    BatchCheck (up to 50 checks), Expand, ListObjects and ListUsers may
    walk thousands of tuples and run on a worker thread. */
static void
s_check (bus_service_t *svc, bus_request_t *req, void *arg)
{
    s_query (arg, req, s_check_query, S_SHORT);
}

static void
s_batch_check (bus_service_t *svc, bus_request_t *req, void *arg)
{
    s_query (arg, req, s_batch_check_query, S_LONG);
}

static void
s_expand (bus_service_t *svc, bus_request_t *req, void *arg)
{
    s_query (arg, req, s_expand_query, S_LONG);
}

static void
s_list_objects (bus_service_t *svc, bus_request_t *req, void *arg)
{
    s_query (arg, req, bus_request_pipe (req)? s_streamed_list_objects_query: s_list_objects_query, S_LONG);
}

static void
s_list_users (bus_service_t *svc, bus_request_t *req, void *arg)
{
    s_query (arg, req, s_list_users_query, S_LONG);
}

/* --- decisions ------------------------------------------------------------ */

/*  A decision to record (authz.decided) before it is given. */
typedef struct {
    json_t *event, *decision;
    char traceparent [PROTO_TRACEPARENT_LEN + 1];
} s_decided_t;

static void
s_decided_free (void *arg)
{
    s_decided_t *job = arg;
    json_decref (job->event);
    json_decref (job->decision);
    free (job);
}

/*  Record the decision, then give it: a decision nobody can audit is not
    given. bus_request_write's work, on the reactor or the writer: its
    event nests in the group that commits the request's outcome. state:
    the committer of the thread it runs on (the writer's state starts with
    one, as the service's does). */
static void
s_decided_work (void *state, json_t *body, void *arg, bus_outcome_t *out)
{
    s_committer_t *committer = state;
    s_decided_t *job = arg;
    int rc = committer ? bus_service_emit (committer->svc, "authz.decided", job->event, job->traceparent)
                       : BUS_ENOMEM;
    job->event = NULL;                  /* taken by bus_service_emit */
    if (rc) {
        out->code = PROTO_ERR_UNAVAILABLE;
        snprintf (out->message, sizeof out->message, "cannot record the decision");
        return;
    }
    out->body = job->decision;
    job->decision = NULL;
}

/*  authz.decide, and authz.approvers (the chain alone) when arg says so. */
static void
s_decide_common (bus_service_t *svc, bus_request_t *req, s_authz_t *self, bool chain_only)
{
    json_t *body = bus_request_body (req);
    if (!self->policy) {
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE,
                         "no policy loaded (authz.policy.write, or [authz] policy in the config)");
        return;
    }
    const authz_model_t *model = s_model (self, req);
    if (!model)
        return;
    json_t *context = json_object_get (body, "context");
    context = json_is_object (context) ? json_incref (context) : json_object ();
    json_t *decision = NULL;
    authz_error_t err = { 0 };
    int rc = authz_policy_decide (self->policy, self->store, model, s_field (body, "principal"),
                                  s_field (body, "action"), s_field (body, "resource"),
                                  context, &decision, &err);
    json_decref (context);
    if (rc) {
        s_fail (req, rc, &err);
        return;
    }
    if (chain_only) {
        json_t *chain = json_object_get (decision, "chain");
        json_t *out = chain ? json_pack ("{s:O}", "chain", chain)
                            : json_pack ("{s:[], s:O}", "chain", "decision", decision);
        json_decref (decision);
        bus_reply_ok (req, out);
        return;
    }
    s_decided_t *job = calloc (1, sizeof *job);
    if (!job) {
        json_decref (decision);
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "cannot record the decision");
        return;
    }
    job->event = json_pack ("{s:s, s:s, s:s, s:O, s:s}", "principal", s_field (body, "principal"),
                            "action", s_field (body, "action"), "resource", s_field (body, "resource"),
                            "decision", decision, "store_id", self->store_id);
    job->decision = decision;
    snprintf (job->traceparent, sizeof job->traceparent, "%s", bus_request_traceparent (req));
    /* recorded with its answer in one commit before it is given: here
       when the writer is idle (no thread hop), on the writer when writes
       queue (decisions queued together share its fsync) */
    (void) bus_request_write (req, s_decided_work, &self->committer, job, s_decided_free);
}

static void
s_decide (bus_service_t *svc, bus_request_t *req, void *arg)
{
    s_decide_common (svc, req, arg, false);
}

static void
s_approvers (bus_service_t *svc, bus_request_t *req, void *arg)
{
    s_decide_common (svc, req, arg, true);
}

/*  Store a policy and use it from now on (it survives restarts). */
static int
s_policy_store (s_authz_t *self, bus_service_t *svc, bus_request_t *req, json_t *policy,
                const char *traceparent, char *err, size_t err_len)
{
    authz_policy_t *fresh = NULL;
    int rc = authz_policy_new (&fresh, policy, err, err_len);
    if (rc)
        return rc;
    const char *store = authz_policy_store (fresh);
    if (store && !zhashx_lookup (self->stores, store)) {
        snprintf (err, err_len, "the policy's store_id %s names no store", store);
        authz_policy_destroy (&fresh);
        return BUS_EINVAL;
    }
    char *text = json_dumps (policy, JSON_COMPACT | JSON_SORT_KEYS);
    bus_txn_t *txn = text ? bus_txn_begin (bus_service_store (svc), true) : NULL;
    if (!txn) {
        free (text);
        authz_policy_destroy (&fresh);
        snprintf (err, err_len, "cannot store the policy");
        return BUS_EIO;
    }
    bus_txn_put (txn, self->policy_db, S_POLICY_KEY, strlen (S_POLICY_KEY), text, strlen (text));
    /* an event that cannot be appended fails the transaction (sticky) */
    bus_event_append (svc, txn, "authz.policy.written",
                      json_pack ("{s:o}", "actions", json_deep_copy (json_object_get (policy, "actions"))),
                      traceparent);
    free (text);
    /* with the request's answer, when a request wrote it (not at boot) */
    if (req) {
        bus_outcome_t out = { .body = json_object () };
        bus_request_record (req, txn, &out);
        json_decref (out.body);
    }
    rc = bus_service_commit (svc, &txn);
    if (rc) {
        authz_policy_destroy (&fresh);
        snprintf (err, err_len, "cannot store the policy: %s", bus_strerror (rc));
        return rc;
    }
    authz_policy_destroy (&self->policy);
    self->policy = fresh;
    return 0;
}

static void
s_policy_write (bus_service_t *svc, bus_request_t *req, void *arg)
{
    char err [256];
    int rc = s_policy_store (arg, svc, req, json_object_get (bus_request_body (req), "policy"),
                             bus_request_traceparent (req), err, sizeof err);
    if (rc)
        bus_reply_error (req, rc == BUS_EINVAL ? PROTO_ERR_INVALID : PROTO_ERR_UNAVAILABLE, "%s", err);
    else
        bus_reply_ok (req, json_object ());
}

static void
s_policy_read (bus_service_t *svc, bus_request_t *req, void *arg)
{
    s_authz_t *self = arg;
    if (!self->policy)
        bus_reply_error (req, PROTO_ERR_NOT_FOUND, "no policy loaded");
    else
        bus_reply_ok (req, json_pack ("{s:O}", "policy", authz_policy_json (self->policy)));
}

/* --- assertions ----------------------------------------------------------- */

/*  OpenFGA's assertions (tests kept beside a model), per model, in the
    policy database under "assertions/<model id>". */
static void
s_assertions_key (char *key, size_t len, const char *model_id)
{
    snprintf (key, len, "assertions/%s", model_id);
}

/*  One assertion's shape: {tuple_key: {object, relation, user},
    expectation: bool, contextual_tuples?: [tuple key], context?: map};
    0 or an engine error in err. */
static int
s_assertion_valid (const authz_model_t *model, json_t *a, size_t i, authz_error_t *err)
{
    json_t *key = json_object_get (a, "tuple_key"), *ct = json_object_get (a, "contextual_tuples");
    json_t *context = json_object_get (a, "context");
    authz_error_t e = { 0 };
    authz_tuple_t t;
    if (!json_is_object (a) || !json_is_boolean (json_object_get (a, "expectation")))
        return authz_error_set (err, AUTHZ_EVALIDATION, "assertions[%zu]: needs tuple_key and a boolean expectation", i);
    if (!s_field (key, "object") || !s_field (key, "relation") || !s_field (key, "user")
    ||  authz_tuple_check_limits (s_field (key, "object"), s_field (key, "relation"), s_field (key, "user"),
                                  false, AUTHZ_EVALIDATION, &e))
        return authz_error_set (err, AUTHZ_EVALIDATION, "assertions[%zu].tuple_key: %s", i,
                                e.code ? e.message : "needs object, relation and user strings");
    /* the object's type and the relation are the model's (as OpenFGA
       checks an assertion's tuple key) */
    const char *object = s_field (key, "object"), *colon = strchr (object, ':');
    int type = colon && colon > object && colon [1] ? authz_model_type (model, object, (size_t) (colon - object)) : -1;
    const char *rel = s_field (key, "relation");
    if (type < 0 || authz_model_relation (model, type, rel, strlen (rel)) < 0 || !strchr (s_field (key, "user"), ':'))
        return authz_error_set (err, AUTHZ_EVALIDATION,
                                "assertions[%zu].tuple_key: '%s#%s@%s' is not a tuple key of the model", i,
                                object, rel, s_field (key, "user"));
    if (ct && !json_is_null (ct) && (!json_is_array (ct) || json_array_size (ct) > AUTHZ_MAX_CONTEXTUAL))
        return authz_error_set (err, AUTHZ_EVALIDATION, "assertions[%zu].contextual_tuples: a list of at most %d",
                                i, AUTHZ_MAX_CONTEXTUAL);
    size_t k;
    json_t *c;
    json_array_foreach (ct, k, c)
        if (authz_tuple_from_json (&t, c, &e))
            return authz_error_set (err, AUTHZ_EVALIDATION, "assertions[%zu].contextual_tuples[%zu]: %s", i, k,
                                    e.message);
    if (context && !json_is_null (context) && !json_is_object (context))
        return authz_error_set (err, AUTHZ_EVALIDATION, "assertions[%zu].context must be a map", i);
    return 0;
}

static void
s_assertions_write (bus_service_t *svc, bus_request_t *req, void *arg)
{
    s_authz_t *self = arg;
    json_t *body = bus_request_body (req);
    const authz_model_t *model = s_model (self, req);
    if (!model)
        return;
    json_t *list = json_object_get (body, "assertions");
    authz_error_t err = { 0 };
    size_t i;
    json_t *a;
    json_array_foreach (list, i, a)
        if (s_assertion_valid (model, a, i, &err)) {
            s_fail (req, -err.code, &err);
            return;
        }
    char key [AUTHZ_MODEL_ID_LEN + 16];
    s_assertions_key (key, sizeof key, authz_model_id (model));
    char *text = json_dumps (list, JSON_COMPACT);
    bus_txn_t *txn = text ? bus_txn_begin (bus_service_store (svc), true) : NULL;
    int rc = txn ? bus_txn_put (txn, self->policy_db, key, strlen (key), text, strlen (text)) : BUS_EIO;
    free (text);
    if (rc) {
        bus_service_abort (svc, &txn);
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "the assertions could not be stored: %s", bus_strerror (rc));
        return;
    }
    bus_outcome_t out = { .body = json_object () };
    bus_request_commit (req, &txn, &out);
}

static void
s_assertions_read (bus_service_t *svc, bus_request_t *req, void *arg)
{
    s_authz_t *self = arg;
    const authz_model_t *model = s_model (self, req);
    if (!model)
        return;
    char key [AUTHZ_MODEL_ID_LEN + 16];
    s_assertions_key (key, sizeof key, authz_model_id (model));
    bus_txn_t *txn = bus_txn_begin (bus_service_store (svc), false);
    const void *val;
    size_t len;
    json_t *list = NULL;
    int rc = txn ? bus_txn_get (txn, self->policy_db, key, strlen (key), &val, &len) : BUS_EIO;
    if (rc == 0)
        list = json_loadb (val, len, 0, NULL);
    bus_txn_abort (&txn);
    if (rc && rc != BUS_ENOTFOUND) {
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "the assertions could not be read: %s", bus_strerror (rc));
        return;
    }
    bus_reply_ok (req, json_pack ("{s:s, s:o}", "authorization_model_id", authz_model_id (model),
                                  "assertions", list ? list : json_array ()));
}

/* --- life cycle ----------------------------------------------------------- */

/*  Every request may name its store (store_id; authz.decide and
    authz.approvers without one: the policy's store_id); one that names
    none works on the default store. A store that is not live is
    not_found (OpenFGA's 5002 store_id_not_found), before the handler
    runs; the handler finds the store in self->store_no / store_id, and
    the reactor's engine has it selected. */
static void
s_guarded (bus_service_t *svc, bus_request_t *req, void *arg)
{
    s_guard_t *g = arg;
    s_authz_t *self = g->self;
    const char *store = s_field (bus_request_body (req), "store_id");
    if (!store && self->policy && (g->fn == s_decide || g->fn == s_approvers))
        store = authz_policy_store (self->policy);
    s_store_t *st = zhashx_lookup (self->stores, store ? store : self->default_id);
    if (!st) {
        authz_error_t err = { 0 };
        authz_error_set (&err, AUTHZ_ESTORE_NOT_FOUND, "store %s not found", store ? store : "(default)");
        s_fail (req, -AUTHZ_ESTORE_NOT_FOUND, &err);
        return;
    }
    self->store_no = st->number;
    self->store_id = json_string_value (json_object_get (st->record, "id"));
    authz_store_select (self->store, st->number, true);
    g->fn (svc, req, self);
}

static void
s_store_free (void **item)
{
    s_store_t *st = *item;
    if (st)
        json_decref (st->record);
    free (st);
    *item = NULL;
}

/*  Remember a live store (record: a new reference, taken). */
static int
s_store_add (json_t *record, uint32_t number, void *arg)
{
    s_authz_t *self = arg;
    s_store_t *st = calloc (1, sizeof *st);
    if (!st)
        return BUS_ENOMEM;
    st->record = json_incref (record);
    st->number = number;
    zhashx_update (self->stores, json_string_value (json_object_get (record, "id")), st);
    return 0;
}

/*  The registry at start: made on first start under stores (the default
    store, number AUTHZ_STORE_FIRST, keeping the identity an older authz
    made and moving its keys under its prefix); then every live store
    into memory, and the default store's id. */
static int
s_stores_boot (s_authz_t *self)
{
    bus_store_t *st = bus_service_store (self->svc);
    bus_txn_t *txn = bus_txn_begin (st, true);
    if (!txn)
        return BUS_EIO;
    const void *val;
    size_t len;
    json_t *old = NULL, *rec = NULL;
    int rc = 0;
    if (bus_txn_get (txn, self->policy_db, S_STORE_KEY, strlen (S_STORE_KEY), &val, &len) == 0)
        old = json_loadb (val, len, 0, NULL);
    if (bus_txn_get (txn, self->stores_db, "H", 1, &val, &len) != 0) {
        const char *id = json_string_value (json_object_get (old, "id"));
        uint32_t number = 0;
        authz_error_t err = { 0 };
        rc = authz_stores_create (txn, self->stores_db, "default", id && strlen (id) == PROTO_ID_LEN ? id : NULL,
                                  &rec, &number, &err);
        if (rc == 0 && number != AUTHZ_STORE_FIRST)
            rc = BUS_EIO;
        static const char *const engine [] = { "authz_models", "authz_tuples", "authz_users", "authz_changes" };
        for (size_t i = 0; rc == 0 && i < 4; i++)
            rc = authz_stores_migrate (txn, bus_store_db (st, engine [i]), AUTHZ_STORE_FIRST);
        /* the default store: its id (the identity it had, when it had one) */
        char *text = rc == 0 ? json_dumps (rec, JSON_COMPACT) : NULL;
        if (rc == 0)
            rc = text ? bus_txn_put (txn, self->policy_db, S_STORE_KEY, strlen (S_STORE_KEY), text, strlen (text))
                      : BUS_ENOMEM;
        free (text);
        json_decref (old);
        old = json_incref (rec);
        json_decref (rec);
        if (rc == 0)
            bus_info ("stores: made the default store %s", json_string_value (json_object_get (old, "id")));
    }
    if (rc == 0)
        rc = bus_txn_commit (&txn);
    bus_txn_abort (&txn);
    const char *id = json_string_value (json_object_get (old, "id"));
    snprintf (self->default_id, sizeof self->default_id, "%s", id ? id : "");
    json_decref (old);
    if (rc)
        return rc;
    txn = bus_txn_begin (st, false);
    rc = txn ? authz_stores_each (txn, self->stores_db, s_store_add, self) : BUS_EIO;
    bus_txn_abort (&txn);
    self->reclaim = true;               /* deleted stores' keys left: the first tick finds out */
    if (rc == 0 && !zhashx_lookup (self->stores, self->default_id)) {
        bus_error ("stores: the default store %s is missing", self->default_id);
        rc = BUS_ENOTFOUND;
    }
    return rc;
}

/* --- stores --------------------------------------------------------------- */

/*  authz.store.create {name}: a new store, its record answered. */
static void
s_store_create (bus_service_t *svc, bus_request_t *req, void *arg)
{
    s_authz_t *self = arg;
    bus_txn_t *txn = bus_txn_begin (bus_service_store (svc), true);
    json_t *rec = NULL;
    uint32_t number = 0;
    authz_error_t err = { 0 };
    int rc = txn ? authz_stores_create (txn, self->stores_db, s_field (bus_request_body (req), "name"), NULL,
                                        &rec, &number, &err)
                 : BUS_EIO;
    if (rc == 0)
        rc = bus_event_append (svc, txn, "authz.store.created", json_incref (rec), bus_request_traceparent (req));
    if (rc) {
        bus_service_abort (svc, &txn);
        json_decref (rec);
        s_fail (req, rc, &err);
        return;
    }
    bus_outcome_t out = { .body = json_incref (rec) };
    if (bus_request_commit (req, &txn, &out) == 0)
        s_store_add (rec, number, self);
    json_decref (rec);
}

/*  authz.store.list {page_size?, continuation_token?, name?}. */
static void
s_store_list (bus_service_t *svc, bus_request_t *req, void *arg)
{
    s_authz_t *self = arg;
    json_t *body = bus_request_body (req), *stores = NULL;
    char *token = NULL;
    authz_error_t err = { 0 };
    bus_txn_t *txn = bus_txn_begin (bus_service_store (svc), false);
    int rc = txn ? authz_stores_list (txn, self->stores_db, s_field (body, "name"),
                                      (size_t) json_integer_value (json_object_get (body, "page_size")),
                                      s_field (body, "continuation_token"), &stores, &token, &err)
                 : BUS_EIO;
    bus_txn_abort (&txn);
    s_finish (req, rc, &err, rc ? NULL : json_pack ("{s:o, s:s}", "stores", stores, "continuation_token", token));
    free (token);
}

/*  authz.store.get {store_id}: the guard found it. */
static void
s_store_get (bus_service_t *svc, bus_request_t *req, void *arg)
{
    s_authz_t *self = arg;
    s_store_t *st = zhashx_lookup (self->stores, self->store_id);
    bus_reply_ok (req, json_deep_copy (st->record));
}

/*  authz.store.delete {store_id}: gone at once for every reader (its
    registry entry, in one commit), its keys reclaimed by the timer. The
    default store stays. */
static void
s_store_delete (bus_service_t *svc, bus_request_t *req, void *arg)
{
    s_authz_t *self = arg;
    const char *id = s_field (bus_request_body (req), "store_id");
    if (!id) {
        s_invalid (req, "store_id is required");
        return;
    }
    if (streq (id, self->default_id)) {
        authz_error_t err = { 0 };
        authz_error_set (&err, AUTHZ_EVALIDATION, "the default store (%s) cannot be deleted", id);
        s_fail (req, -AUTHZ_EVALIDATION, &err);
        return;
    }
    bus_txn_t *txn = bus_txn_begin (bus_service_store (svc), true);
    uint32_t number = 0;
    int rc = txn ? authz_stores_delete (txn, self->stores_db, id, &number) : BUS_EIO;
    if (rc == 0)
        rc = bus_event_append (svc, txn, "authz.store.deleted", json_pack ("{s:s}", "id", id),
                               bus_request_traceparent (req));
    if (rc) {
        bus_service_abort (svc, &txn);
        bus_reply_error (req, rc == BUS_ENOTFOUND ? PROTO_ERR_NOT_FOUND : PROTO_ERR_UNAVAILABLE,
                         "the store could not be deleted: %s", bus_strerror (rc));
        return;
    }
    bus_outcome_t out = { .body = json_object () };
    if (bus_request_commit (req, &txn, &out) == 0) {
        zhashx_delete (self->stores, id);
        self->reclaim = true;
    }
}

/*  Timer: reclaim up to S_RECLAIM_KEYS keys of deleted stores (their
    models' assertions with them), one commit; nothing when none is left. */
static void
s_assertion_reclaim (bus_txn_t *txn, size_t i, const void *key, size_t key_len, void *arg)
{
    s_authz_t *self = arg;
    if (i != 0 || key_len != AUTHZ_STORE_PREFIX + AUTHZ_MODEL_ID_LEN)
        return;                         /* models only: their assertions */
    char akey [AUTHZ_MODEL_ID_LEN + 16];
    snprintf (akey, sizeof akey, "assertions/%.*s", AUTHZ_MODEL_ID_LEN, (const char *) key + AUTHZ_STORE_PREFIX);
    bus_txn_del (txn, self->policy_db, akey, strlen (akey));
}

static void
s_reclaim (bus_service_t *svc, void *state)
{
    s_authz_t *self = state;
    if (!self || !self->reclaim)
        return;
    bus_store_t *st = bus_service_store (svc);
    int dbs [4] = { bus_store_db (st, "authz_models"), bus_store_db (st, "authz_tuples"),
                    bus_store_db (st, "authz_users"), bus_store_db (st, "authz_changes") };
    bus_txn_t *txn = bus_txn_begin (st, true);
    size_t n = 0;
    bool more = false;
    int rc = txn ? authz_stores_reclaim (txn, self->stores_db, dbs, 4, S_RECLAIM_KEYS, s_assertion_reclaim, self,
                                         &n, &more)
                 : BUS_EIO;
    if (rc == 0)
        rc = bus_txn_commit (&txn);
    bus_txn_abort (&txn);
    if (rc) {
        bus_warn ("stores: reclaiming a deleted store's keys failed: %s (tried again)", bus_strerror (rc));
        return;
    }
    if (n)
        bus_debug ("stores: reclaimed %zu keys of deleted stores%s", n, more ? ", more remain" : "");
    self->reclaim = more;
}


/*  The stored policy, then the config's policy file (which replaces it). */
static int
s_policy_boot (s_authz_t *self, bus_service_t *svc)
{
    char err [256];
    bus_txn_t *txn = bus_txn_begin (bus_service_store (svc), false);
    const void *val;
    size_t len;
    if (txn && bus_txn_get (txn, self->policy_db, S_POLICY_KEY, strlen (S_POLICY_KEY), &val, &len) == 0) {
        json_t *policy = json_loadb (val, len, 0, NULL);
        if (!policy || authz_policy_new (&self->policy, policy, err, sizeof err))
            bus_error ("stored policy unreadable; ignoring it");
        json_decref (policy);
    }
    bus_txn_abort (&txn);
    const char *path = bus_config_str (bus_service_config (svc), "authz", "policy");
    if (!path || !*path)
        return 0;
    authz_policy_t *from_file = NULL;
    if (authz_policy_load (&from_file, path, err, sizeof err)) {
        bus_error ("%s", err);
        return BUS_ECONFIG;
    }
    int rc = s_policy_store (self, svc, NULL, authz_policy_json (from_file), NULL, err, sizeof err);
    authz_policy_destroy (&from_file);
    if (rc)
        bus_error ("%s", err);
    return rc;
}

static int
s_start (bus_service_t *svc, void **state)
{
    s_authz_t *self = calloc (1, sizeof *self);
    if (!self)
        return BUS_ENOMEM;
    *state = self;
    self->svc = svc;
    self->committer.svc = svc;
    self->policy_db = bus_store_db (bus_service_store (svc), "authz_policy");
    self->stores_db = bus_store_db (bus_service_store (svc), "authz_stores");
    self->stores = zhashx_new ();
    if (!self->stores)
        return BUS_ENOMEM;
    zhashx_set_destructor (self->stores, s_store_free);
    int rc = authz_store_new (&self->store, bus_service_store (svc));
    if (rc == 0)
        authz_store_set_commit (self->store, s_commit, &self->committer);
    if (rc == 0 && (rc = s_stores_boot (self)))
        bus_error ("the stores cannot be loaded: %s", bus_strerror (rc));
    if (rc == 0)
        rc = s_policy_boot (self, svc);
    if (rc == 0) {
        char err [256];
        rc = authz_http_new (&self->http, svc, err, sizeof err);
        if (rc)
            bus_error ("%s", err);
    }
    bus_config_t *cfg = bus_service_config (svc);
    self->budget = (authz_budget_t) {
        .max_cost = (uint64_t) bus_config_int (cfg, "authz", "request_cost"),
        .max_tuples = (uint64_t) bus_config_int (cfg, "authz", "request_tuples"),
        .max_depth = (int) bus_config_int (cfg, "authz", "resolve_depth") };
    self->reactor = self->budget;
    uint64_t rc_cost = (uint64_t) bus_config_int (cfg, "authz", "reactor_cost");
    uint64_t rc_tuples = (uint64_t) bus_config_int (cfg, "authz", "reactor_tuples");
    /* 0 would mean "the default" to the engine: at least one unit */
    self->reactor.max_cost = rc_cost < self->budget.max_cost? (rc_cost? rc_cost: 1): self->budget.max_cost;
    self->reactor.max_tuples = rc_tuples < self->budget.max_tuples? (rc_tuples? rc_tuples: 1)
                                                                  : self->budget.max_tuples;
    self->offload_conditions = bus_config_int (cfg, "authz", "offload_conditions");
    int threads = (int) bus_config_int (cfg, "authz", "query_threads");
    if (rc == 0 && threads > 0)
        rc = bus_service_workers (svc, threads, s_worker_init, s_worker_fini, bus_service_store (svc));
    if (rc == 0 && bus_config_bool (bus_service_config (svc), "authz", "writer_thread"))
        rc = bus_service_writer (svc, s_writer_init, s_writer_fini, svc);
    if (rc)
        return rc;
    static const bus_handler_entry_t handlers [] = {
        { "authz.model.write",  s_model_write },
        { "authz.model.read",   s_model_read },
        { "authz.write",        s_write },
        { "authz.read",         s_read },
        { "authz.read_changes", s_read_changes },
        { "authz.check",        s_check },
        { "authz.batch_check",  s_batch_check },
        { "authz.expand",       s_expand },
        { "authz.list_objects", s_list_objects },
        { "authz.list_users",   s_list_users },
        { "authz.decide",       s_decide },
        { "authz.approvers",    s_approvers },
        { "authz.policy.write", s_policy_write },
        { "authz.policy.read",  s_policy_read },
        { "authz.assertions.write", s_assertions_write },
        { "authz.assertions.read",  s_assertions_read },
        { "authz.store.create", s_store_create },
        { "authz.store.list",   s_store_list },
        { "authz.store.get",    s_store_get },
        { "authz.store.delete", s_store_delete },
    };
    size_t n = sizeof handlers / sizeof handlers [0];
    self->guards = calloc (n, sizeof *self->guards);
    if (!self->guards)
        return BUS_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        self->guards [i] = (s_guard_t) { .self = self, .fn = handlers [i].fn };
        if (bus_service_handle (svc, handlers [i].type, s_guarded, &self->guards [i]))
            return BUS_EINVAL;
    }
    return 0;
}

static void
s_stop (bus_service_t *svc, void **state)
{
    s_authz_t *self = *state;
    if (!self)
        return;
    authz_http_destroy (&self->http);
    zhashx_destroy (&self->stores);
    free (self->guards);
    authz_policy_destroy (&self->policy);
    authz_store_destroy (&self->store);
    free (self);
    *state = NULL;
}

/*  OpenFGA's HTTP API: every path under /stores, through the adapter. */
static void
s_http (bus_service_t *svc, void *state, bus_http_exchange_t *ex)
{
    authz_http_handle (((s_authz_t *) state)->http, ex);
}

static const bus_route_t s_routes [] = {
    { .method = NULL, .path = "/stores*", .fn = s_http },
    { 0 }
};

static const bus_listener_t s_listener = {
    .address_key = "http",
    .routes = s_routes,
};

/*  Deleted stores' keys are reclaimed a bounded batch at a time. */
static const bus_timer_t s_timers [] = {
    { .name = "store-reclaim", .interval_ms = 100, .fn = s_reclaim },
    { 0 }
};

const bus_daemon_t authz_daemon = {
    .section = "authz",
    .db_names = s_dbs,
    .start = s_start,
    .stop = s_stop,
    .timers = s_timers,
    .http = &s_listener,
};
