/*  audit_service.c — the auditor's handlers: audit_log and audit_sign on
    the bus (audit_service.h). Errors: a size or index beyond the log is
    `invalid`, an entry that cannot be made canonical `invalid`, a storage
    failure `unavailable`. */
#include "audit_service.h"
#include "proto_canon.h"
#include "audit_log.h"
#include "audit_receipt.h"
#include "audit_runs.h"
#include "audit_sign.h"
#include "bus_error.h"
#include "bus_log.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*  Microseconds since the epoch. */
static int64_t
s_now_us (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

typedef struct {
    bus_service_t *svc;
    audit_log_t *log;
    audit_runs_t *runs;
    audit_keys_t *keys;
    int64_t receipt_wait_us;            /* [auditor] receipt_wait_ms */
    bus_txn_t *reader;                  /* the reactor's, reset between appends (s_id_reused) */
} s_auditor_t;

/*  How often receipts due are looked for (a receipt waits, after its
    run's terminal event, [auditor] receipt_wait_ms for the run's leases
    to end: the vault revokes them when the run ends). */
#define S_RECEIPT_SCAN_MS   200
#define S_RECEIPT_SCAN_MAX  32
#define S_RETRY_US          (60 * 1000000LL)   /* a receipt that cannot be built: tried again after */
#define S_WAIT              1                  /* s_issue: not yet (a lease is open) */

/*  An append on its way to the writer: the entry's canonical bytes and who
    sent it under which request id; key, when the sender gave an
    idempotency_key, what the append is remembered by instead of the id:
    "k:" and the hex BLAKE2b-128 of the key (no request id, a ULID, looks
    like it). */
typedef struct {
    char principal [PROTO_PRINCIPAL_MAX + 1];
    char id [PROTO_ID_LEN + 1];
    char key [2 + 32 + 1];
    uint8_t digest [16];                /* BLAKE2b-128 of the entry's canonical form */
    char run [AUDIT_RUN_MAX + 1];       /* the run the entry names, or "" */
    int64_t ts;
    size_t len;
    char *entry;
} s_append_job_t;

static void
s_append_job_free (void *arg)
{
    s_append_job_t *job = arg;
    if (job)
        free (job->entry);
    free (job);
}

static void
s_outcome_error (bus_outcome_t *out, const char *code, int rc, const char *what)
{
    out->code = code;
    snprintf (out->message, sizeof out->message, "%s: %s", what, bus_strerror (rc));
}

/*  The reply to an append stored at index with leaf hash leaf. */
static json_t *
s_append_reply (uint64_t index, int64_t ts, const audit_hash_t leaf)
{
    char hex [2 * AUDIT_HASH_LEN + 1];
    audit_hash_hex (hex, leaf);
    return json_pack ("{s:I, s:I, s:s}", "index", (json_int_t) index, "ts", (json_int_t) ts, "leaf_hash", hex);
}

/*  What job's request id is recorded with when it has a key (the key,
    then the entry's digest: a reuse of the id with another key, or none,
    or another entry is told by it), into tag; its length, 0 without a
    key. */
static size_t
s_tag (const s_append_job_t *job, uint8_t tag [AUDIT_REQUEST_TAG_MAX])
{
    size_t n = strlen (job->key);
    if (!n)
        return 0;
    memcpy (tag, job->key, n);
    memcpy (tag + n, job->digest, sizeof job->digest);
    return n + sizeof job->digest;
}

/*  On the writer (or the reactor without one): append in the writer's
    group, when several appends came together, or in a transaction of its
    own; the reply goes out after the group's commit (its fsync). Straight
    in the group, not nested in it: a nested transaction copies the pages
    it touches and merges them back, the most of a group's CPU. An append
    that fails after it wrote fails the whole group (its appends are
    answered unavailable, a retry stores them: s_group_failed in
    bus_service.c), which a store that cannot take one append's puts
    would do to the others anyway. */
static void
s_append_work (void *state, json_t *body, void *arg, bus_outcome_t *out)
{
    s_auditor_t *self = state;
    s_append_job_t *job = arg;
    bus_txn_t *group = bus_txn_group_current ();
    bus_txn_t *txn = group ? group : self ? bus_txn_begin (bus_service_store (self->svc), true) : NULL;
    if (!txn) {
        s_outcome_error (out, PROTO_ERR_UNAVAILABLE, BUS_EIO, "cannot store the entry");
        return;
    }
    uint64_t index = 0;
    int64_t ts = job->ts;
    audit_hash_t leaf;
    uint8_t tag [AUDIT_REQUEST_TAG_MAX];
    size_t tag_len = s_tag (job, tag);
    int rc = tag_len ? audit_log_append_keyed (self->log, txn, job->principal, job->key, job->id, tag, tag_len,
                                               job->entry, job->len, &index)
                     : audit_log_append_request (self->log, txn, job->principal, job->id, job->entry, job->len,
                                                 &index);
    if (rc == 0 && *job->run)
        rc = audit_runs_note (self->runs, txn, job->run, index);
    if (rc == 0)
        audit_leaf_hash (leaf, job->entry, job->len);
    else if (rc == BUS_EEXIST) {
        /* a retry of a request stored before (this process or an earlier
           one; s_append refused one with another entry): the first answer
           again, with the time it was stored */
        const void *stored;
        size_t len;
        json_t *first = audit_log_entry (self->log, txn, index, &stored, &len) == 0
                      ? json_loadb (stored, len, 0, NULL) : NULL;
        ts = json_integer_value (json_object_get (first, "ts"));
        json_decref (first);
        rc = audit_log_leaf (self->log, txn, index, leaf);
    }
    json_t *reply = rc ? NULL : s_append_reply (index, ts, leaf);
    if (rc == 0 && !reply)
        rc = BUS_ESTATE;
    if (group) {
        if (rc && bus_txn_error (group) == 0)
            bus_txn_fail (group, rc);       /* what it wrote may not commit */
    }
    else
    if (rc == 0)
        rc = bus_service_commit (self->svc, &txn);
    else
        bus_service_abort (self->svc, &txn);
    if (rc) {
        json_decref (reply);
        s_outcome_error (out, PROTO_ERR_UNAVAILABLE, rc, "cannot store the entry");
        return;
    }
    out->body = reply;
}

/*  True if the log holds job's request id (principal, id) for another
    request (at *index): the id is reused. Another request: another entry,
    or, when either of them has an idempotency_key, another key (or none)
    or another entry (by its digest, recorded with the id). Retries of
    appends are answered from the log, not from a recorded outcome
    (bus_request_answers_retries); a read that fails says no (the writer
    then answers the first entry). */
static bool
s_id_reused (s_auditor_t *self, const s_append_job_t *job, uint64_t *index)
{
    if (self->reader && bus_txn_renew (self->reader))
        bus_txn_abort (&self->reader);          /* new (never reset), or failed: begin afresh */
    if (!self->reader)
        self->reader = bus_txn_begin (bus_service_store (self->svc), false);
    if (!self->reader)
        return false;
    const void *stored;
    size_t len;
    bool reused = false;
    const void *tag;
    size_t tag_len;
    uint8_t mine [AUDIT_REQUEST_TAG_MAX];
    size_t mine_len = s_tag (job, mine);
    if (audit_log_request_get (self->log, self->reader, job->principal, job->id, index, &tag, &tag_len))
        ;                                       /* a new id (or unread: the writer answers) */
    else if (tag_len || mine_len)
        reused = tag_len != mine_len || memcmp (tag, mine, mine_len);
    else if (audit_log_entry (self->log, self->reader, *index, &stored, &len) == 0) {
        json_t *first = json_loadb (stored, len, 0, NULL), *again = json_loadb (job->entry, job->len, 0, NULL);
        reused = first && again && !json_equal (json_object_get (first, "entry"), json_object_get (again, "entry"));
        json_decref (first);
        json_decref (again);
    }
    bus_txn_reset (self->reader);
    return reused;
}

/*  True if s is written as itself in canonical JSON (printable ASCII, no
    quote or backslash): principals and request ids are. */
static bool
s_plain (const char *s)
{
    for (; *s; s++)
        if (*s < 0x20 || *s > 0x7e || *s == '"' || *s == '\\')
            return false;
    return true;
}

/*  job's stored bytes: the canonical JSON of {"kind":"append","from":P,
    "id":REQUEST,"ts":µs,"entry":ENTRY}, and the digest of ENTRY's. Its keys in JCS order are entry,
    from, id, kind, ts: written around the entry's own canonical form (one
    canonicalisation of the entry alone, not of a copy wrapped in another
    object), as proto_canon would write the whole. 0 or proto_canon's
    error (err says why). */
static int
s_stored (s_append_job_t *job, json_t *entry, char *err, size_t err_len)
{
    if (!entry || !s_plain (job->principal) || !s_plain (job->id)) {
        json_t *stored = json_pack ("{s:s, s:s, s:s, s:I, s:O}", "kind", "append", "from", job->principal,
                                    "id", job->id, "ts", (json_int_t) job->ts, "entry", entry);
        int rc = stored ? proto_canon (stored, &job->entry, &job->len, err, err_len) : BUS_ENOMEM;
        json_decref (stored);
        char *text = NULL;
        size_t len = 0;
        if (rc == 0 && (rc = proto_canon_nested (entry, 1, &text, &len, err, err_len)) == 0)
            crypto_generichash (job->digest, sizeof job->digest, (const uint8_t *) text, len, NULL, 0);
        free (text);
        return rc;
    }
    char *text = NULL;
    size_t len = 0;
    int rc = proto_canon_nested (entry, 1, &text, &len, err, err_len);
    if (rc)
        return rc;
    crypto_generichash (job->digest, sizeof job->digest, (const uint8_t *) text, len, NULL, 0);
    size_t cap = len + strlen (job->principal) + strlen (job->id) + 80;
    job->entry = malloc (cap);
    int n = job->entry ? snprintf (job->entry, cap, "{\"entry\":%s,\"from\":\"%s\",\"id\":\"%s\",\"kind\":"
                                   "\"append\",\"ts\":%lld}", text, job->principal, job->id,
                                   (long long) job->ts) : -1;
    free (text);
    if (n < 0 || (size_t) n >= cap) {
        free (job->entry);
        job->entry = NULL;
        return BUS_ENOMEM;
    }
    job->len = (size_t) n;
    return 0;
}

/*  audit.append {entry, idempotency_key?}: stored as the canonical JSON
    of {"kind":"append","from":P,"id":REQUEST,"ts":µs,"entry":ENTRY},
    once per request id, or with idempotency_key once per key (a sender
    that lost the answer appends again under a new request id: the first
    index answers, whatever the entry). Either way a request id reused
    for another request is refused (s_id_reused). */
static void
s_append (bus_service_t *svc, bus_request_t *req, void *arg)
{
    s_auditor_t *self = arg;
    proto_msg_t *msg = bus_request_msg (req);
    s_append_job_t *job = calloc (1, sizeof *job);
    if (!job) {
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "out of memory");
        return;
    }
    snprintf (job->principal, sizeof job->principal, "%s", bus_request_principal (req));
    snprintf (job->id, sizeof job->id, "%s", msg->id);
    job->ts = s_now_us ();
    const char *run = audit_runs_named (json_object_get (bus_request_body (req), "entry"));
    snprintf (job->run, sizeof job->run, "%s", run ? run : "");
    char err [200] = "";
    int rc = s_stored (job, json_object_get (bus_request_body (req), "entry"), err, sizeof err);
    if (rc == 0 && job->len > AUDIT_ENTRY_MAX) {
        rc = BUS_ETOOBIG;
        snprintf (err, sizeof err, "the entry is %zu bytes stored; at most %d", job->len, AUDIT_ENTRY_MAX);
    }
    if (rc) {
        s_append_job_free (job);
        bus_reply_error (req, rc == BUS_ENOMEM ? PROTO_ERR_UNAVAILABLE : PROTO_ERR_INVALID,
                         "entry: %s", *err ? err : bus_strerror (rc));
        return;
    }
    const char *idem = json_string_value (json_object_get (bus_request_body (req), "idempotency_key"));
    if (idem) {
        uint8_t h [16];
        crypto_generichash (h, sizeof h, (const uint8_t *) idem, strlen (idem), NULL, 0);
        memcpy (job->key, "k:", 2);
        sodium_bin2hex (job->key + 2, sizeof job->key - 2, h, sizeof h);
    }
    uint64_t first = 0;
    if (s_id_reused (self, job, &first)) {
        s_append_job_free (job);
        bus_reply_id_reused (req, "request id %s was already used by %s for another entry (index %llu): a new "
                             "entry needs a new id", msg->id, bus_request_principal (req),
                             (unsigned long long) first);
        return;
    }
    bus_request_answers_retries (req);     /* the log's request index does */
    if (bus_request_offload_write (req, s_append_work, job, s_append_job_free) != BUS_ESTATE)
        return;                         /* deferred, or refused and answered */
    bus_outcome_t out = { .code = NULL };
    s_append_work (self, NULL, job, &out);
    s_append_job_free (job);
    bus_reply_outcome (req, &out);
}

/*  An unsigned integer field of the body, or dflt when absent. */
static uint64_t
s_uint (bus_request_t *req, const char *name, uint64_t dflt)
{
    json_t *v = json_object_get (bus_request_body (req), name);
    return json_is_integer (v) ? (uint64_t) json_integer_value (v) : dflt;
}

/*  A read transaction and the log's size, or an answer and NULL. */
static bus_txn_t *
s_read_begin (s_auditor_t *self, bus_request_t *req, uint64_t *size)
{
    bus_txn_t *txn = bus_txn_begin (bus_service_store (self->svc), false);
    int rc = txn ? audit_log_size (self->log, txn, size) : BUS_EIO;
    if (rc) {
        bus_txn_abort (&txn);
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "cannot read the log: %s", bus_strerror (rc));
    }
    return txn;
}

/*  Answer a failed read: bad sizes are the caller's, the rest the store's. */
static void
s_read_failed (bus_request_t *req, int rc, const char *what)
{
    bus_reply_error (req, rc == BUS_EINVAL ? PROTO_ERR_INVALID : PROTO_ERR_UNAVAILABLE, "%s: %s", what,
                     bus_strerror (rc));
}

static json_t *
s_hex (const audit_hash_t h)
{
    char hex [2 * AUDIT_HASH_LEN + 1];
    audit_hash_hex (hex, h);
    return json_string (hex);
}

static json_t *
s_path_json (audit_hash_t *path, size_t n)
{
    json_t *list = json_array ();
    for (size_t i = 0; list && i < n; i++)
        json_array_append_new (list, s_hex (path [i]));
    return list;
}

/*  audit.head {size?}: the signed head of the log now, or of an earlier
    size (the log had that root at that size, and still proves it). */
static void
s_head (bus_service_t *svc, bus_request_t *req, void *arg)
{
    s_auditor_t *self = arg;
    uint64_t have;
    bus_txn_t *txn = s_read_begin (self, req, &have);
    if (!txn)
        return;
    audit_head_t head = { .size = s_uint (req, "size", have), .time = s_now_us () };
    if (head.size > have) {
        bus_txn_abort (&txn);
        bus_reply_error (req, PROTO_ERR_INVALID, "size %llu is beyond the log's %llu entries",
                         (unsigned long long) head.size, (unsigned long long) have);
        return;
    }
    int rc = audit_log_root (self->log, txn, head.size, head.root);
    bus_txn_abort (&txn);
    if (rc == 0)
        rc = audit_head_sign (self->keys, &head);
    if (rc) {
        s_read_failed (req, rc, "cannot make the tree head");
        return;
    }
    char text [AUDIT_HEAD_TEXT_MAX], sig [sodium_base64_ENCODED_LEN (AUDIT_SIG_LEN, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
    audit_head_text (&head, text, sizeof text);
    sodium_bin2base64 (sig, sizeof sig, head.signature, AUDIT_SIG_LEN, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    bus_reply_ok (req, json_pack ("{s:s, s:I, s:o, s:I, s:s, s:s, s:s}", "origin", head.origin,
                                  "size", (json_int_t) head.size, "root", s_hex (head.root),
                                  "time", (json_int_t) head.time, "kid", audit_keys_kid (self->keys),
                                  "signature", sig, "signed", text));
}

/*  audit.inclusion {index, size?}. */
static void
s_inclusion (bus_service_t *svc, bus_request_t *req, void *arg)
{
    s_auditor_t *self = arg;
    uint64_t have;
    bus_txn_t *txn = s_read_begin (self, req, &have);
    if (!txn)
        return;
    uint64_t index = s_uint (req, "index", 0), size = s_uint (req, "size", have);
    if (size > have || index >= size) {
        bus_txn_abort (&txn);
        bus_reply_error (req, PROTO_ERR_INVALID, "index %llu of a tree of %llu: the log has %llu entries",
                         (unsigned long long) index, (unsigned long long) size, (unsigned long long) have);
        return;
    }
    audit_hash_t path [AUDIT_PROOF_MAX], leaf, root;
    size_t n = 0;
    int rc = audit_log_inclusion (self->log, txn, index, size, path, &n);
    if (rc == 0)
        rc = audit_log_leaf (self->log, txn, index, leaf);
    if (rc == 0)
        rc = audit_log_root (self->log, txn, size, root);
    bus_txn_abort (&txn);
    if (rc) {
        s_read_failed (req, rc, "cannot prove inclusion");
        return;
    }
    bus_reply_ok (req, json_pack ("{s:I, s:I, s:o, s:o, s:o}", "index", (json_int_t) index,
                                  "size", (json_int_t) size, "leaf_hash", s_hex (leaf), "root", s_hex (root),
                                  "path", s_path_json (path, n)));
}

/*  audit.consistency {old_size, new_size?}. */
static void
s_consistency (bus_service_t *svc, bus_request_t *req, void *arg)
{
    s_auditor_t *self = arg;
    uint64_t have;
    bus_txn_t *txn = s_read_begin (self, req, &have);
    if (!txn)
        return;
    uint64_t old_size = s_uint (req, "old_size", 0), new_size = s_uint (req, "new_size", have);
    if (old_size == 0 || old_size > new_size || new_size > have) {
        bus_txn_abort (&txn);
        bus_reply_error (req, PROTO_ERR_INVALID,
                         "sizes %llu to %llu: need 1 <= old_size <= new_size <= %llu (the log's size)",
                         (unsigned long long) old_size, (unsigned long long) new_size,
                         (unsigned long long) have);
        return;
    }
    audit_hash_t path [AUDIT_PROOF_MAX], old_root, new_root;
    size_t n = 0;
    int rc = audit_log_consistency (self->log, txn, old_size, new_size, path, &n);
    if (rc == 0)
        rc = audit_log_root (self->log, txn, old_size, old_root);
    if (rc == 0)
        rc = audit_log_root (self->log, txn, new_size, new_root);
    bus_txn_abort (&txn);
    if (rc) {
        s_read_failed (req, rc, "cannot prove consistency");
        return;
    }
    bus_reply_ok (req, json_pack ("{s:I, s:I, s:o, s:o, s:o}", "old_size", (json_int_t) old_size,
                                  "new_size", (json_int_t) new_size, "old_root", s_hex (old_root),
                                  "new_root", s_hex (new_root), "path", s_path_json (path, n)));
}

/*  audit.entry {index}: the stored bytes, as text (canonical JSON). */
static void
s_entry (bus_service_t *svc, bus_request_t *req, void *arg)
{
    s_auditor_t *self = arg;
    uint64_t have;
    bus_txn_t *txn = s_read_begin (self, req, &have);
    if (!txn)
        return;
    uint64_t index = s_uint (req, "index", 0);
    const void *entry;
    size_t len;
    audit_hash_t leaf;
    int rc = index < have ? audit_log_entry (self->log, txn, index, &entry, &len) : BUS_ENOTFOUND;
    if (rc == 0)
        rc = audit_log_leaf (self->log, txn, index, leaf);
    if (rc == BUS_ENOTFOUND)
        bus_reply_error (req, PROTO_ERR_NOT_FOUND, "no entry %llu: the log has %llu",
                         (unsigned long long) index, (unsigned long long) have);
    else if (rc)
        s_read_failed (req, rc, "cannot read the entry");
    else
        bus_reply_ok (req, json_pack ("{s:I, s:s%, s:o}", "index", (json_int_t) index, "entry",
                                      (const char *) entry, len, "leaf_hash", s_hex (leaf)));
    bus_txn_abort (&txn);
}

/*  audit.jwks: the public key verifiers need. */
static void
s_jwks (bus_service_t *svc, bus_request_t *req, void *arg)
{
    s_auditor_t *self = arg;
    bus_reply_ok (req, audit_keys_jwks (self->keys));
}

/* --- receipts ---------------------------------------------------------- */

/*  Build, store and announce run's receipt in txn (a write transaction;
    receipt.issued is published when it commits). Unless force, a run
    whose receipt is not yet due and that still has a lease open waits
    (S_WAIT): its revocation is on its way. *stored (may be NULL)
    receives what is stored. */
static int
s_issue (s_auditor_t *self, bus_txn_t *txn, const char *run, bool force, json_t **stored)
{
    uint64_t at;
    int64_t due, now = s_now_us ();
    if (stored)
        *stored = NULL;
    int rc = audit_runs_ended (self->runs, txn, run, &at, &due);
    if (rc)
        return rc;
    if (!force && now < due) {
        json_t *entries = NULL, *gaps = NULL;
        uint64_t size = 0;
        rc = audit_log_size (self->log, txn, &size);
        if (rc == 0)
            rc = audit_runs_entries (self->runs, self->log, txn, run, size, &entries, &gaps);
        json_t *sum = rc ? NULL : audit_runs_summary (run, entries);
        bool open = sum && audit_runs_leases_open (sum);
        json_decref (sum);
        json_decref (entries);
        json_decref (gaps);
        if (rc || open)
            return rc ? rc : S_WAIT;
    }
    json_t *receipt = NULL;
    rc = audit_receipt_build (self->runs, self->log, self->keys, txn, run, now, &receipt);
    char *text = NULL;
    size_t len = 0;
    if (rc == 0)
        rc = proto_canon (receipt, &text, &len, NULL, 0);
    if (rc == 0)
        rc = audit_runs_put_receipt (self->runs, txn, run, text, len);
    free (text);
    if (rc == 0) {
        json_t *event = json_pack ("{s:s, s:O, s:O, s:O, s:O, s:O, s:s}", "run", run,
                                   "state", json_object_get (receipt, "state"),
                                   "size", json_object_get (receipt, "size"),
                                   "entries", json_object_get (receipt, "entries"),
                                   "hmac", json_object_get (receipt, "hmac"),
                                   "issued_at", json_object_get (receipt, "issued_at"),
                                   "kid", audit_keys_kid (self->keys));
        rc = event ? bus_event_append (self->svc, txn, "receipt.issued", event, NULL) : BUS_ENOMEM;
    }
    if (rc) {
        bus_log_fields (BUS_LOG_ERROR, json_pack ("{s:s}", "run", run), "auditor: cannot issue the receipt of %s: %s",
                        run, bus_strerror (rc));
        json_decref (receipt);
        return rc;
    }
    if (stored)
        *stored = receipt;
    else
        json_decref (receipt);
    return 0;
}

/*  Timer: receipts whose wait is over, each built now (lease open or not). */
static void
s_receipts_due (bus_service_t *svc, void *state)
{
    s_auditor_t *self = state;
    char runs [S_RECEIPT_SCAN_MAX][AUDIT_RUN_MAX + 1];
    size_t n = 0;
    bus_txn_t *txn = bus_txn_begin (bus_service_store (svc), false);
    int rc = txn ? audit_runs_due (self->runs, txn, s_now_us (), runs, S_RECEIPT_SCAN_MAX, &n) : BUS_EIO;
    bus_txn_abort (&txn);
    if (rc || n == 0)
        return;
    txn = bus_txn_begin (bus_service_store (svc), true);
    if (!txn)
        return;
    for (size_t i = 0; i < n && !bus_txn_error (txn); i++) {
        uint64_t at;
        int64_t due;
        if (s_issue (self, txn, runs [i], true, NULL) != 0 && !bus_txn_error (txn)
            && audit_runs_ended (self->runs, txn, runs [i], &at, &due) == 0)
            audit_runs_mark_ended (self->runs, txn, runs [i], at, s_now_us () + S_RETRY_US);
    }
    if (bus_txn_error (txn))
        bus_service_abort (svc, &txn);
    else if ((rc = bus_service_commit (svc, &txn)) != 0)
        bus_error ("auditor: cannot store receipts: %s", bus_strerror (rc));
}

/*  The run field of a request, checked. */
static const char *
s_run_arg (bus_request_t *req)
{
    const char *run = json_string_value (json_object_get (bus_request_body (req), "run"));
    if (!run || strlen (run) > AUDIT_RUN_MAX) {
        bus_reply_error (req, PROTO_ERR_INVALID, "run: a run id of 1..%d bytes is required", AUDIT_RUN_MAX);
        return NULL;
    }
    return run;
}

/*  Answer "no receipt": the run is unknown, or has not ended. */
static void
s_no_receipt (s_auditor_t *self, bus_request_t *req, bus_txn_t *txn, const char *run)
{
    uint64_t *idx = NULL, *gaps = NULL;
    size_t n = 0, ng = 0;
    int rc = audit_runs_indexes (self->runs, txn, run, UINT64_MAX, &idx, &n, &gaps, &ng);
    free (idx);
    free (gaps);
    if (rc)
        s_read_failed (req, rc, "cannot read the run's entries");
    else if (n == 0)
        bus_reply_error (req, PROTO_ERR_NOT_FOUND, "no entry of run %s in the log", run);
    else
        bus_reply_error (req, PROTO_ERR_CONFLICT, "run %s has not ended: no terminal event in the log (%zu entries)",
                         run, n);
}

/*  audit.receipt {run}: the stored receipt; built now for a run that has
    ended and has none yet (the same receipt the timer would have built:
    stored and announced once). */
static void
s_receipt (bus_service_t *svc, bus_request_t *req, void *arg)
{
    s_auditor_t *self = arg;
    const char *run = s_run_arg (req);
    if (!run)
        return;
    bus_txn_t *txn = bus_txn_begin (bus_service_store (svc), false);
    const void *text;
    size_t len;
    uint64_t at;
    int64_t due;
    int rc = txn ? audit_runs_get_receipt (self->runs, txn, run, &text, &len) : BUS_EIO;
    if (rc == 0) {
        json_t *stored = json_loadb (text, len, 0, NULL);
        bus_txn_abort (&txn);
        if (stored)
            bus_reply_ok (req, stored);
        else
            bus_reply_error (req, PROTO_ERR_INTERNAL, "the stored receipt of %s is not JSON", run);
        return;
    }
    if (rc == BUS_ENOTFOUND)
        rc = audit_runs_ended (self->runs, txn, run, &at, &due);
    if (rc == BUS_ENOTFOUND) {
        s_no_receipt (self, req, txn, run);
        bus_txn_abort (&txn);
        return;
    }
    bus_txn_abort (&txn);
    if (rc) {
        s_read_failed (req, rc, "cannot read the receipt");
        return;
    }
    json_t *stored = NULL;
    txn = bus_txn_begin (bus_service_store (svc), true);
    rc = txn ? s_issue (self, txn, run, true, &stored) : BUS_EIO;
    if (rc == 0)
        rc = bus_service_commit (svc, &txn);
    else
        bus_service_abort (svc, &txn);
    if (rc) {
        json_decref (stored);
        bus_reply_error (req, rc == BUS_ETOOBIG ? PROTO_ERR_TOO_LARGE : PROTO_ERR_UNAVAILABLE,
                         "cannot build the receipt of %s: %s", run, bus_strerror (rc));
        return;
    }
    bus_reply_ok (req, stored);
}

/*  audit.gantt {run}: the run's steps, approvals and token lifecycles on
    one time axis, from its entries in the log now. */
static void
s_gantt (bus_service_t *svc, bus_request_t *req, void *arg)
{
    s_auditor_t *self = arg;
    const char *run = s_run_arg (req);
    uint64_t size;
    if (!run)
        return;
    bus_txn_t *txn = s_read_begin (self, req, &size);
    if (!txn)
        return;
    json_t *entries = NULL, *gaps = NULL;
    int rc = audit_runs_entries (self->runs, self->log, txn, run, size, &entries, &gaps);
    bus_txn_abort (&txn);
    if (rc == 0 && json_array_size (entries) == 0)
        bus_reply_error (req, PROTO_ERR_NOT_FOUND, "no entry of run %s in the log", run);
    else if (rc)
        s_read_failed (req, rc, "cannot read the run's entries");
    else {
        json_t *sum = audit_runs_summary (run, entries);
        json_t *gantt = sum ? audit_runs_gantt (sum) : NULL;
        json_decref (sum);
        if (gantt)
            bus_reply_ok (req, gantt);
        else
            bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "out of memory");
    }
    json_decref (entries);
    json_decref (gaps);
}

/* --- the follower ----------------------------------------------------- */

/*  An event that cannot have an entry (too large stored, a number without
    a canonical form) is recorded as a gap of its one seq, or it would come
    back for ever. */
static int
s_unstorable (s_auditor_t *self, bus_txn_t *txn, proto_msg_t *event, int why)
{
    bus_log_fields (BUS_LOG_ERROR, json_pack ("{s:s, s:I, s:s}", "pub", event->pub,
                                              "seq", (json_int_t) event->seq, "type", event->type),
                    "auditor: event %llu (%s) of %s cannot be stored (%s): recorded as a gap",
                    (unsigned long long) event->seq, event->type, event->pub, bus_strerror (why));
    uint64_t index;
    int rc = audit_log_append_gap (self->log, txn, event->pub, event->seq, event->seq, s_now_us (), &index);
    if (rc == 0)
        rc = audit_runs_note_gap (self->runs, txn, index);
    return rc == BUS_EEXIST ? 0 : rc;
}

/*  Each event of every other service, once, in the follower's transaction
    (its mark commits with it); sensitive fields (PROTOCOL.md 6.5) replaced
    by their HMAC first. */
static int
s_on_event (bus_service_t *svc, void *state, bus_txn_t *txn, proto_msg_t *event)
{
    s_auditor_t *self = state;
    int rc = audit_redact_fields (self->keys, event->type, event->body, proto_field_sensitive);
    uint64_t index = 0;
    if (rc >= 0)
        rc = audit_log_append_event_msg (self->log, txn, event, &index);
    if (rc == BUS_EEXIST)
        return 0;
    const char *run = rc == 0 ? audit_runs_named (event->body) : NULL;
    if (run) {
        /* indexed with the entry; a terminal event makes the receipt due,
           and it is built now unless a lease of the run is still open (a
           revocation or expiry of one then builds it, or the timer) */
        rc = audit_runs_note (self->runs, txn, run, index);
        if (rc == 0 && audit_runs_terminal (event->pub, event->type))
            rc = audit_runs_mark_ended (self->runs, txn, run, index, s_now_us () + self->receipt_wait_us);
        if (rc == 0 && (audit_runs_terminal (event->pub, event->type)
                        || streq (event->type, "token.revoked") || streq (event->type, "token.expired"))) {
            int irc = s_issue (self, txn, run, false, NULL);
            if (irc != 0 && irc != S_WAIT && irc != BUS_ENOTFOUND)
                rc = bus_txn_error (txn) ? irc : 0;   /* a receipt that could not be built waits for the timer */
        }
    }
    if (rc == 0)
        return 0;
    if (rc == BUS_EINVAL || rc == BUS_ETOOBIG || rc == BUS_EDEPTH)
        return s_unstorable (self, txn, event, rc);
    return rc;                          /* the store's: the batch comes again */
}

/*  Events a publisher trimmed before they were stored: a gap entry, in the
    transaction that moves the mark past them. */
static int
s_on_loss (bus_service_t *svc, void *state, bus_txn_t *txn, const char *source, const char *pub,
           uint64_t from_seq, uint64_t to_seq)
{
    s_auditor_t *self = state;
    uint64_t index;
    int rc = audit_log_append_gap (self->log, txn, pub, from_seq, to_seq, s_now_us (), &index);
    if (rc == 0)
        rc = audit_runs_note_gap (self->runs, txn, index);
    return rc == BUS_EEXIST ? 0 : rc;
}

static const bus_follower_t s_followers [] = {
    { .name = "audit", .publishers = NULL, .fn = s_on_event, .record_loss = s_on_loss,
      .replay_key = "replay_interval_ms" },
    { 0 }
};

/*  The writer's state is the service's own: the log holds database
    handles only, and every call brings its transaction. */
static void *
s_writer_init (void *arg)
{
    return arg;
}

static int
s_start (bus_service_t *svc, void **state)
{
    s_auditor_t *self = calloc (1, sizeof *self);
    if (!self)
        return BUS_ENOMEM;
    *state = self;
    self->svc = svc;
    char err [512] = "";
    char *dir = bus_config_data_dir (bus_service_config (svc), "auditor");
    char keys [4096];
    snprintf (keys, sizeof keys, "%s/keys", dir ? dir : ".");
    free (dir);
    int rc = audit_log_new (&self->log, bus_service_store (svc));
    if (rc == 0)
        rc = audit_runs_new (&self->runs, bus_service_store (svc));
    self->receipt_wait_us = (int64_t) bus_config_int (bus_service_config (svc), "auditor", "receipt_wait_ms") * 1000;
    if (rc == 0 && (rc = audit_keys_load (&self->keys, keys, err, sizeof err)) != 0)
        bus_error ("auditor keys: %s", err);
    /* appends are the auditor's main work, each on the writer, and the
       follower's commits wait for its write lock: at the reactor's
       priority (bus_service_writer_urgent) */
    if (rc == 0)
        rc = bus_service_writer_urgent (svc, s_writer_init, NULL, self);
    /* appends from many clients: a larger group than the default 64 shares
       each fsync among more of them ([auditor] write_group_max) */
    if (rc == 0)
        rc = bus_service_writer_group (svc, (size_t) bus_config_int (bus_service_config (svc), "auditor",
                                                                      "write_group_max"));
    if (rc)
        return rc;
    uint64_t size = 0;
    bus_txn_t *txn = bus_txn_begin (bus_service_store (svc), false);
    if (txn)
        audit_log_size (self->log, txn, &size);
    bus_txn_abort (&txn);
    bus_info ("audit log: %llu entries, key %s", (unsigned long long) size, audit_keys_kid (self->keys));
    static const bus_handler_entry_t handlers [] = {
        { "audit.append",      s_append },
        { "audit.entry",       s_entry },
        { "audit.head",        s_head },
        { "audit.inclusion",   s_inclusion },
        { "audit.consistency", s_consistency },
        { "audit.jwks",        s_jwks },
        { "audit.receipt",     s_receipt },
        { "audit.gantt",       s_gantt },
    };
    return bus_service_handle_all (svc, handlers, sizeof handlers / sizeof handlers [0], self);
}

static void
s_stop (bus_service_t *svc, void **state)
{
    s_auditor_t *self = *state;
    if (!self)
        return;
    bus_txn_abort (&self->reader);
    audit_log_destroy (&self->log);
    audit_runs_destroy (&self->runs);
    audit_keys_destroy (&self->keys);
    free (self);
    *state = NULL;
}

/*  The log's databases (audit_log_db_names, which audit_log_new checks)
    and the follower's marks. */
static const char *const s_dbs [] = {
    "audit_entries", "audit_nodes", "audit_events", "audit_requests",
    "audit_runs", "audit_gaps", "audit_ended", "audit_receipts", BUS_FOLLOW_DB, NULL
};

static const bus_timer_t s_timers [] = {
    { .name = "receipts", .interval_ms = S_RECEIPT_SCAN_MS, .fn = s_receipts_due },
    { 0 }
};

const bus_daemon_t audit_daemon = {
    .section = "auditor",
    .db_names = s_dbs,
    .start = s_start,
    .stop = s_stop,
    .timers = s_timers,
    .followers = s_followers,
};
