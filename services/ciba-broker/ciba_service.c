/*  ciba_service.c — the ciba-broker daemon: approvals over an approver
    chain, each level its own CIBA request, decided by signatures of
    enrolled devices (backend `local`; PROTOCOL.md 10.4).

    State (LMDB, one write transaction per change, events in the same
    transaction through the outbox):
      approvals   approval_id (ULID) -> the approval, JSON (below)
      levels      no longer written (a store from before holds auth_req_id
                  -> approval_id there; emptied at start): which approval a
                  level's auth_req_id belongs to is kept in memory
                  (ciba_t.owners), built from the approvals at start,
                  noted by the change that makes the level (before its
                  commit: an id whose change did not commit names an
                  approval that does not exist, which reads as not found)
                  and dropped once the purge of its approval commits. A
                  commit then writes no random-keyed page for it (the
                  lookup cost a leaf and a branch page per ciba.authorize)
      deadlines   no longer written (emptied at start, like levels): the
                  next moment each pending approval must be looked at
                  (expiry, a level's escalation, a queued level's slot:
                  its `deadline` member) is kept in memory, ordered by
                  time (ciba_t.deadlines), so that the timer looks only at
                  what is due; built from the approvals at start (expiry
                  is enforced across restarts: the member is stored) and
                  changed as the commit that changes the member returns
                  (bus_txn_on_commit: a change that does not commit
                  changes nothing)
      devices     approver LF device -> {approver, device, state,
                  enrolled_at, revoked_at?}
      index       "k" LF requested_by LF idempotency_key -> approval_id:
                  a requester's key, so that ciba.authorize asked again
                  with it (a restarted orchestrator) gets the same
                  approval (checked in the change's transaction, so
                  stored). ciba.list's indexes are no longer stored here
                  (their keys in a store from before are dropped at
                  start): the ids under "s" LF state LF, "a" LF approver
                  LF state LF and "r" LF run LF are kept in memory
                  (ciba_t.index, the state indexed being the approval's
                  `indexed` member), built at start and moved by the
                  commits, like the deadlines

    Why in memory: each table an approval's change touches costs its
    commit a leaf and a branch page or more, fsync'd; with the lookups,
    deadlines, ends and list indexes stored, a change wrote ~15 pages
    (~26 with the file grown), the approval's own 2-3 among them. All of
    them are functions of the approvals, which are stored, so they are
    rebuilt from them at start (one scan; memory ~0.3 KB per approval
    kept) and follow the commits (bus_txn_on_commit, under owners_lock:
    the writer and the reactor both read them). What a commit writes now:
    the approval, its events (outbox), the request's outcome (the bus's
    dedupe trees), asked (rate limit) and index "k" when used.
      ended       no longer written (emptied at start): the ended
                  approvals by completed_at, what the purge reclaims after
                  retention_s, are kept in memory the same way
                  (ciba_t.ended)
      asked       approver -> the 8-byte times of the levels asked of
                  them in the last minute: the rate limit's window
      invites     SHA-256 of a device invite code -> {user, state
                  (unused|used), created_at, expires_at, used_at?, device?};
                  dropped a day after expiry, by the next issue

    An approval: {approval_id, state (pending|approved|denied|expired|
    cancelled), reason?, run, node, idempotency_key?, binding_message, authorization_details,
    authorization_details_sha256, requested_by, created_at, expires_at,
    completed_at?, current (the level asked now), deadline (its key in
    deadlines, 0: none), indexed (the state its index keys name), levels: [{approver, escalate_after, auth_req_id,
    state, asked_at?, deadline?, queued?, device_key?, signature?,
    decided_at?}]}. Times are µs since the epoch, by this broker's clock.

    Level states: waiting (not asked yet), pending (asked; `queued` while
    the approver's rate limit holds it back), approved, denied, expired,
    escalated, cancelled, approver_not_enrolled. The chain: the first
    level is asked; its approval asks the next; a denial ends the approval
    denied; a level past its escalate_after (when a level follows) is
    escalated and the next asked; a level whose approver has no active
    device is passed at once (approver_not_enrolled). The approval expires
    at expires_at whatever the levels did.

    Requests with effects run through bus_request_write: here on the
    reactor when no other write waits (no thread hop), on the service's
    writer when they queue (the changes queued together share one fsync);
    either way the change, its events and the request's outcome commit
    together (retries get the outcome, even after a restart), and the
    events are published as the commit returns, before the reply. Reads
    (ciba.status, ciba.list, ciba.device.list) stay on the reactor, as do
    the deadline scan and the provider's answers (LMDB's write lock puts
    them between the writer's groups). What a change asks of the world
    (a webhook POST, a request to the provider) is noted, and sent on the
    reactor once the change is durable, from the state read back.

    Backend oidc (a CIBA provider, Auth0 first): each level is a
    bc-authorize at the provider, then token polls honouring interval,
    slow_down (+5 s) and Retry-After, all on the reactor through
    bus_http_client; the provider's answers map to distinct level states.
    That backend is in ciba_oidc.c, the tables held in memory (owners,
    deadlines, ended, the list indexes) in ciba_tables.c, the devices and
    invites in ciba_devices.c; what the files share in ciba_internal.h.
    With webhook_url set, each asked level is also POSTed there as JSON
    (a phone's ntfy topic, a Slack hook).
*/
#include "ciba_service.h"
#include "ciba_decision.h"
#include "ciba_internal.h"
#include "bus_error.h"
#include "bus_http_client.h"
#include "bus_log.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define S_LEVELS_MAX   16
#define S_SCAN_BATCH   512
#define S_LIST_DEFAULT 100
#define S_AUTH_REQ_BYTES 24      /* 192 bits; base64url: 32 characters */
#define S_RATE_MAX     1000      /* approver_rate_per_min's bound (bus_config_keys.def) */
#define S_PURGE_BATCH  256       /* ended approvals purged per deadline scan, at most */

/* ---- small helpers ------------------------------------------------------ */

/*  An approver name: "user:NAME" (or another principal class) with a
    short, plain name. */
bool
ciba_approver_ok (const char *a)
{
    const char *colon = a ? strchr (a, ':') : NULL;
    if (!colon || colon == a || !colon [1] || strlen (a) > 256)
        return false;
    for (const char *p = a; *p; p++)
        if (!(isalnum ((unsigned char) *p) || strchr (":._@-+", *p)))
            return false;
    return true;
}

/*  A fresh auth_req_id: 192 random bits, base64url (32 characters of
    [A-Za-z0-9_-]). */
void
ciba_auth_req_id (char out [48])
{
    uint8_t raw [S_AUTH_REQ_BYTES];
    randombytes_buf (raw, sizeof raw);
    sodium_bin2base64 (out, 48, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

/*  The binding message sanitised: control characters become spaces, runs
    of spaces one, none at either end. NULL (with why) when empty or longer
    than max bytes once sanitised. Caller frees. */
static char *
s_sanitise (const char *in, size_t max, char *why, size_t why_len)
{
    size_t n = strlen (in);
    char *out = malloc (n + 1);
    if (!out) {
        snprintf (why, why_len, "out of memory");
        return NULL;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char) in [i];
        if (c < 0x20 || c == 0x7f)
            c = ' ';
        if (c == ' ' && (o == 0 || out [o - 1] == ' '))
            continue;
        out [o++] = (char) c;
    }
    while (o > 0 && out [o - 1] == ' ')
        o--;
    out [o] = 0;
    if (o == 0 || o > max) {
        snprintf (why, why_len, o ? "binding_message is %zu bytes once sanitised; at most %zu" :
                                    "binding_message is empty once sanitised", o, max);
        free (out);
        return NULL;
    }
    return out;
}

/* ---- store -------------------------------------------------------------- */

/*  The approval approval_id as a new JSON object, or NULL (not found or
    unreadable). */
json_t *
ciba_load (ciba_t *self, bus_txn_t *txn, const char *approval_id)
{
    const void *val;
    size_t len;
    if (bus_txn_get (txn, self->db_approvals, approval_id, strlen (approval_id), &val, &len))
        return NULL;
    return json_loadb (val, len, 0, NULL);
}

/* ---- events ------------------------------------------------------------- */

/*  The public form of a level (what replies and events carry). */
static json_t *
s_level_public (json_t *lvl)
{
    json_t *out = json_deep_copy (lvl);
    json_object_del (out, "deadline");
    json_object_del (out, "provider_auth_req_id");
    return out;
}

/*  The public form of an approval: without its bookkeeping. At now, an
    approval past its expiry reads expired even before the timer has
    stored it so. */
static json_t *
s_public (json_t *a, int64_t now)
{
    json_t *out = json_deep_copy (a);
    json_object_del (out, "deadline");
    json_object_del (out, "indexed");
    json_t *levels = json_object_get (out, "levels"), *lvl;
    size_t i;
    json_array_foreach (levels, i, lvl) {
        json_object_del (lvl, "deadline");
        json_object_del (lvl, "provider_auth_req_id");
    }
    if (streq (ciba_str (out, "state") ?: "", "pending") && now >= ciba_int (out, "expires_at")) {
        ciba_set_str (out, "state", "expired");
        json_array_foreach (levels, i, lvl)
            if (streq (ciba_str (lvl, "state") ?: "", "pending"))
                ciba_set_str (lvl, "state", "expired");
            else if (streq (ciba_str (lvl, "state") ?: "", "waiting"))
                ciba_set_str (lvl, "state", "cancelled");
    }
    return out;
}

/*  Append a level's event: {approval_id, auth_req_id, approver, level,
    run, node} and the members of extra (stolen, may be NULL). */
void
ciba_level_event (ciba_t *self, bus_txn_t *txn, const char *type, json_t *a, size_t i, json_t *extra,
               const char *traceparent)
{
    json_t *lvl = json_array_get (json_object_get (a, "levels"), i);
    json_t *body = json_pack ("{s:s, s:s, s:s, s:I, s:O, s:O, s:I}", "approval_id", ciba_str (a, "approval_id"),
                              "auth_req_id", ciba_str (lvl, "auth_req_id"), "approver", ciba_str (lvl, "approver"),
                              "level", (json_int_t) i, "run", json_object_get (a, "run"),
                              "node", json_object_get (a, "node"), "expires_at",
                              (json_int_t) ciba_int (a, "expires_at"));
    if (body && extra)
        json_object_update (body, extra);
    json_decref (extra);
    if (!body) {
        bus_txn_fail (txn, BUS_ENOMEM);
        return;
    }
    bus_event_append (self->svc, txn, type, body, traceparent);
}

/*  The chain has ended with outcome: levels not asked are cancelled,
    approval.completed carries every level's decision. */
void
ciba_complete (ciba_t *self, bus_txn_t *txn, json_t *a, const char *outcome, const char *reason,
            int64_t now, const char *tp)
{
    ciba_set_str (a, "state", outcome);
    if (reason)
        ciba_set_str (a, "reason", reason);
    ciba_set_int (a, "completed_at", now);
    json_t *levels = json_object_get (a, "levels"), *lvl;
    size_t i;
    json_array_foreach (levels, i, lvl)
        if (streq (ciba_str (lvl, "state") ?: "", "waiting"))
            ciba_set_str (lvl, "state", "cancelled");
    json_t *pub_levels = json_array ();
    json_array_foreach (levels, i, lvl)
        json_array_append_new (pub_levels, s_level_public (lvl));
    json_t *body = json_pack ("{s:s, s:s, s:o, s:O, s:O, s:s, s:s}", "approval_id", ciba_str (a, "approval_id"),
                              "outcome", outcome, "levels", pub_levels, "run", json_object_get (a, "run"),
                              "node", json_object_get (a, "node"), "binding_message",
                              ciba_str (a, "binding_message"), "authorization_details_sha256",
                              ciba_str (a, "authorization_details_sha256"));
    if (body && reason)
        ciba_set_str (body, "reason", reason);
    if (!body) {
        bus_txn_fail (txn, BUS_ENOMEM);
        return;
    }
    bus_event_append (self->svc, txn, "approval.completed", body, tp);
}

/* ---- the rate limit ----------------------------------------------------- */

/*  The per-approver window is durable (database asked: approver -> the
    8-byte big-endian times, oldest first, of the levels asked of them in
    the last minute, at most rate_per_min): written in the transaction
    that asks, so a restart neither forgets it (and floods the provider,
    whose own window did not restart) nor loses a queued level (it waits
    in the approval, with its slot as its deadline). */

/*  The times in the window at now (oldest first, at most S_RATE_MAX)
    into at, their count into *n. */
static void
s_rate_window (ciba_t *self, bus_txn_t *txn, const char *approver, int64_t now, int64_t *at, size_t *n)
{
    const void *val;
    size_t len;
    *n = 0;
    if (bus_txn_get (txn, self->db_asked, approver, strlen (approver), &val, &len))
        return;
    for (size_t k = 0; k + 8 <= len; k += 8) {
        int64_t t = (int64_t) bus_key_to_u64 ((const uint8_t *) val + k);
        if (now - t < 60 * 1000000LL && *n < S_RATE_MAX)
            at [(*n)++] = t;
    }
}

/*  May a level be asked of approver at now? When not, *free_at is when a
    slot frees. */
static bool
s_rate_allows (ciba_t *self, bus_txn_t *txn, const char *approver, int64_t now, int64_t *free_at)
{
    if (self->rate_per_min <= 0)
        return true;
    int64_t at [S_RATE_MAX];
    size_t n;
    s_rate_window (self, txn, approver, now, at, &n);
    if (n < (size_t) self->rate_per_min)
        return true;
    *free_at = at [n - (size_t) self->rate_per_min] + 60 * 1000000LL;
    return false;
}

/*  A level was asked of approver at now: into the window, in txn. */
static void
s_rate_note (ciba_t *self, bus_txn_t *txn, const char *approver, int64_t now)
{
    if (self->rate_per_min <= 0)
        return;
    int64_t at [S_RATE_MAX + 1];
    size_t n;
    s_rate_window (self, txn, approver, now, at, &n);
    at [n++] = now;                 /* only the last rate_per_min are kept */
    size_t from = n > (size_t) self->rate_per_min ? n - (size_t) self->rate_per_min : 0;
    uint8_t buf [8 * (S_RATE_MAX + 1)];
    for (size_t k = from; k < n; k++)
        bus_u64_to_key ((uint64_t) at [k], buf + 8 * (k - from));
    bus_txn_put (txn, self->db_asked, approver, strlen (approver), buf, 8 * (n - from));
}

/* ---- the chain ---------------------------------------------------------- */

/*  Level i's approver cannot be asked (reason: approver_not_enrolled):
    the level is passed with ciba.escalated and true returned when a level
    follows; else the approval ends denied and false is returned. */
bool
ciba_pass_level (ciba_t *self, bus_txn_t *txn, json_t *a, size_t i, const char *reason, int64_t now,
              const char *tp)
{
    json_t *levels = json_object_get (a, "levels");
    json_t *lvl = json_array_get (levels, i), *next = json_array_get (levels, i + 1);
    ciba_set_str (lvl, "state", reason);
    ciba_set_int (lvl, "decided_at", now);
    if (next) {
        ciba_level_event (self, txn, "ciba.escalated", a, i,
                       json_pack ("{s:s, s:s, s:s, s:I}", "reason", reason, "to_approver", ciba_str (next, "approver"),
                                  "to_auth_req_id", ciba_str (next, "auth_req_id"), "to_level", (json_int_t) i + 1), tp);
        return true;
    }
    ciba_complete (self, txn, a, "denied", reason, now, tp);
    return false;
}

/*  The webhook answered: only failures are said (the approver can still
    find the request with `sanctumctl approvals`). */
static void
s_webhook_done (const bus_http_response_t *r, void *arg)
{
    if (r->error || r->status >= 300)
        bus_warn ("ciba: webhook: %s", r->error ? r->reason : "the endpoint answered an HTTP error");
}

/*  Tell the approver's phone (ntfy, Slack, anything that takes JSON) that
    level i of the stored approval a is asked: POST {type, approval_id,
    auth_req_id, approver, level, binding_message, expires_at, run, node}.
    Reactor, once the change that asked is durable (ciba_after_commit):
    the approver is never woken for a request the broker then lost. */
static void
s_webhook (ciba_t *self, json_t *a, size_t i)
{
    json_t *lvl = json_array_get (json_object_get (a, "levels"), i);
    json_t *body = json_pack ("{s:s, s:s, s:s, s:s, s:I, s:s, s:I, s:O, s:O}", "type", "ciba.requested",
                              "approval_id", ciba_str (a, "approval_id"), "auth_req_id",
                              ciba_str (lvl, "auth_req_id"), "approver", ciba_str (lvl, "approver"),
                              "level", (json_int_t) i, "binding_message", ciba_str (a, "binding_message"),
                              "expires_at", (json_int_t) ciba_int (a, "expires_at"),
                              "run", json_object_get (a, "run"), "node", json_object_get (a, "node"));
    char *text = body ? json_dumps (body, JSON_COMPACT) : NULL;
    json_decref (body);
    bus_http_request_t req = { .method = "POST", .url = self->webhook_url, .content_type = "application/json",
                               .body = text, .body_len = text ? strlen (text) : 0, .timeout_ms = 10000 };
    if (!text || bus_http_client_send (self->http, &req, s_webhook_done, NULL, NULL))
        bus_warn ("ciba: webhook: cannot send");
    free (text);
}

void
ciba_after_note (json_t *after, json_t *a, size_t i, const char *kind, int64_t at)
{
    json_t *lvl = json_array_get (json_object_get (a, "levels"), i);
    json_array_append_new (after, json_pack ("{s:s, s:s, s:I, s:s, s:I}", "approval_id", ciba_str (a, "approval_id"),
                                             "auth_req_id", ciba_str (lvl, "auth_req_id"), "level", (json_int_t) i,
                                             "kind", kind, "at", (json_int_t) at));
}

/*  What the store shows is what is sent: a noted level goes out only when
    the stored approval still has it as its current, pending, asked level,
    with the asked_at (webhook) or poll_at (provider) the change stored. A
    change that did not commit stored neither, so nothing of it is sent. */
void
ciba_after_commit (ciba_t *self, json_t *after)
{
    if (json_array_size (after) == 0)
        return;
    bus_txn_t *txn = bus_txn_begin (self->store, false);
    if (!txn)
        return;                     /* the deadline scan asks again (poll_at) */
    size_t k;
    json_t *note;
    json_array_foreach (after, k, note) {
        json_t *a = ciba_load (self, txn, ciba_str (note, "approval_id"));
        size_t i = (size_t) ciba_int (note, "level");
        json_t *lvl = json_array_get (json_object_get (a, "levels"), i);
        bool webhook = streq (ciba_str (note, "kind"), "ask");
        bool live = lvl && streq (ciba_str (a, "state") ?: "", "pending") && (size_t) ciba_int (a, "current") == i
                 && streq (ciba_str (lvl, "state") ?: "", "pending") && !json_is_true (json_object_get (lvl, "queued"))
                 && streq (ciba_str (lvl, "auth_req_id") ?: "", ciba_str (note, "auth_req_id") ?: "")
                 && ciba_int (lvl, webhook ? "asked_at" : "poll_at") == ciba_int (note, "at");
        if (live && webhook && self->webhook_url)
            s_webhook (self, a, i);
        else if (live && !webhook && self->oidc)
            ciba_oidc_request (self, a, i);
        json_decref (a);
    }
    bus_txn_abort (&txn);
}

/*  Ask level i (and, past approvers without a device, the levels after
    it); the last level without a device ends the approval denied. With
    the oidc backend every approver is asked of the provider (which says
    whether it knows them), by a bc-authorize noted in after (sent once
    the change is durable), as is the webhook. */
void
ciba_ask (ciba_t *self, bus_txn_t *txn, json_t *a, size_t i, int64_t now, const char *tp, json_t *after)
{
    json_t *levels = json_object_get (a, "levels");
    size_t n = json_array_size (levels);
    for (; i < n; i++) {
        json_t *lvl = json_array_get (levels, i);
        const char *approver = ciba_str (lvl, "approver");
        ciba_set_int (a, "current", (json_int_t) i);
        if (!self->oidc && !ciba_device_active (self, txn, approver, NULL, NULL)) {
            if (ciba_pass_level (self, txn, a, i, "approver_not_enrolled", now, tp))
                continue;
            return;
        }
        int64_t free_at = 0;
        ciba_set_str (lvl, "state", "pending");
        if (!s_rate_allows (self, txn, approver, now, &free_at)) {
            json_object_set_new (lvl, "queued", json_true ());
            ciba_set_int (lvl, "deadline", free_at);
            return;
        }
        json_object_del (lvl, "queued");
        s_rate_note (self, txn, approver, now);
        ciba_set_int (lvl, "asked_at", now);
        int64_t escalate = ciba_int (lvl, "escalate_after");
        ciba_set_int (lvl, "deadline", escalate > 0 && i + 1 < n ? now + escalate * 1000000LL : 0);
        ciba_level_event (self, txn, "ciba.requested", a, i,
                       json_pack ("{s:s, s:s}", "binding_message", ciba_str (a, "binding_message"),
                                  "authorization_details_sha256", ciba_str (a, "authorization_details_sha256")),
                       tp);
        if (self->oidc)
            ciba_oidc_due (self, a, i, now, after);
        if (self->webhook_url)
            ciba_after_note (after, a, i, "ask", now);
        return;
    }
}

/*  Look at a pending approval at now: expire it, escalate its level past
    its deadline, or ask its queued level. Returns true when it changed. */
static bool
s_tick (ciba_t *self, bus_txn_t *txn, json_t *a, int64_t now, json_t *after)
{
    if (!streq (ciba_str (a, "state") ?: "", "pending"))
        return false;
    size_t i = (size_t) ciba_int (a, "current");
    json_t *levels = json_object_get (a, "levels");
    json_t *lvl = json_array_get (levels, i);
    if (now >= ciba_int (a, "expires_at")) {
        if (lvl && streq (ciba_str (lvl, "state") ?: "", "pending")) {
            bool asked = !json_is_true (json_object_get (lvl, "queued"));
            ciba_set_str (lvl, "state", "expired");
            ciba_set_int (lvl, "decided_at", now);
            if (asked)
                ciba_level_event (self, txn, "ciba.expired", a, i, NULL, NULL);
        }
        ciba_complete (self, txn, a, "expired", NULL, now, NULL);
        return true;
    }
    if (!lvl || !streq (ciba_str (lvl, "state") ?: "", "pending"))
        return false;
    bool changed = false;
    int64_t p = ciba_int (lvl, "poll_at");
    if (self->oidc && p > 0 && now >= p && !json_is_true (json_object_get (lvl, "queued"))) {
        ciba_oidc_due (self, a, i, now, after);
        changed = true;
    }
    int64_t d = ciba_int (lvl, "deadline");
    if (d == 0 || now < d)
        return changed;
    if (json_is_true (json_object_get (lvl, "queued"))) {
        ciba_ask (self, txn, a, i, now, NULL, after);
        return true;
    }
    json_t *next = json_array_get (levels, i + 1);
    if (!next)
        return changed;
    ciba_set_str (lvl, "state", "escalated");
    ciba_set_int (lvl, "decided_at", now);
    ciba_level_event (self, txn, "ciba.escalated", a, i,
                   json_pack ("{s:s, s:s, s:s, s:I}", "reason", "timeout", "to_approver", ciba_str (next, "approver"),
                              "to_auth_req_id", ciba_str (next, "auth_req_id"), "to_level", (json_int_t) i + 1),
                   NULL);
    ciba_ask (self, txn, a, i + 1, now, NULL, after);
    return true;
}

/* ---- requests ----------------------------------------------------------- */

/*  A change asked by a request, run on the writer (in its group, one
    fsync for every change queued together): what the work needs of the
    request, copied on the reactor (the writer may not ask the request),
    and what must reach the world once the change is durable. Freed on
    the reactor after the answer (s_job_after), which then sends it. */
struct ciba_job_t {
    ciba_t *self;
    char principal [PROTO_PRINCIPAL_MAX + 1];
    char tp [PROTO_TRACEPARENT_LEN + 1];
    bool user;                   /* the principal is an approver (user:) */
    json_t *after;               /* ciba_after_note's list */
};

static bool
s_is_user (bus_request_t *req)
{
    return proto_principal_class (bus_request_principal (req)) == PROTO_P_USR;
}

/*  Reactor: the group that held this change has committed (or not, or
    never ran: then the store shows nothing of it and nothing is sent). */
static void
s_job_after (void *arg)
{
    ciba_job_t *job = arg;
    if (!job)
        return;
    ciba_after_commit (job->self, job->after);
    json_decref (job->after);
    free (job);
}

/*  Run fn, a change, on the writer when writes queue there (its group
    shares one fsync among them), else here on the reactor (no thread
    hop): either way its outcome is recorded with its effect, and its
    events are published as soon as the commit returns, before the
    reply. */
void
ciba_change (ciba_t *self, bus_request_t *req, bus_work_fn *fn)
{
    ciba_job_t *job = calloc (1, sizeof *job);
    if (job)
        job->after = json_array ();
    if (!job || !job->after) {
        free (job);
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "out of memory");
        return;
    }
    job->self = self;
    snprintf (job->principal, sizeof job->principal, "%s", bus_request_principal (req));
    snprintf (job->tp, sizeof job->tp, "%s", bus_request_traceparent (req) ?: "");
    job->user = s_is_user (req);
    (void) bus_request_write (req, fn, self, job, s_job_after);   /* answered or deferred; job freed */
}

const char *
ciba_tp (ciba_job_t *job)
{
    return *job->tp ? job->tp : NULL;
}

/*  out becomes the error code with a printf message. */
void
ciba_fail (bus_outcome_t *out, const char *code, const char *fmt, ...)
{
    json_decref (out->body);
    out->body = NULL;
    out->code = code;
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (out->message, sizeof out->message, fmt, ap);
    va_end (ap);
}

/*  Commit the change (nested in the writer's group: durable with the
    group's fsync, the outcome recorded beside it); out, already the
    answer (ok or an error found on the way, e.g. after an expiry the
    change stored), becomes `unavailable` when it cannot be stored. */
void
ciba_finish (ciba_t *self, bus_txn_t **txn, bus_outcome_t *out)
{
    int rc = bus_service_commit (self->svc, txn);
    if (rc)
        ciba_fail (out, PROTO_ERR_UNAVAILABLE, "the change could not be stored: %s", bus_strerror (rc));
}

/*  A write transaction for a change, or NULL with out set. */
bus_txn_t *
ciba_write_begin (ciba_t *self, bus_outcome_t *out)
{
    bus_txn_t *txn = bus_txn_begin (self->store, true);
    if (!txn)
        ciba_fail (out, PROTO_ERR_UNAVAILABLE, "cannot open the store");
    return txn;
}

/*  The chain of a ciba.authorize body, checked and made into levels with
    fresh auth_req_ids; NULL with why. */
static json_t *
s_levels_from (json_t *body, char *why, size_t why_len)
{
    json_t *chain = json_object_get (body, "chain");
    const char *hint = ciba_str (body, "login_hint");
    json_t *levels = json_array ();
    json_t *one = NULL;
    if (chain && hint) {
        snprintf (why, why_len, "give chain or login_hint, not both");
        goto fail;
    }
    if (!chain && !hint) {
        snprintf (why, why_len, "chain (or login_hint for a chain of one) is required");
        goto fail;
    }
    if (hint)
        chain = one = json_pack ("[{s:s}]", "approver", hint);
    size_t i;
    json_t *e;
    json_array_foreach (chain, i, e) {
        json_t *who = json_object_get (e, "approver") ?: json_object_get (e, "user");
        json_t *after = json_object_get (e, "escalate_after");
        if (!json_is_object (e) || !json_is_string (who) || !ciba_approver_ok (json_string_value (who))) {
            snprintf (why, why_len, "chain[%zu]: approver must be a principal such as user:alice", i);
            goto fail;
        }
        if (after && (!json_is_integer (after) || json_integer_value (after) < 0
                      || json_integer_value (after) > 86400)) {
            snprintf (why, why_len, "chain[%zu]: escalate_after must be 0..86400 seconds", i);
            goto fail;
        }
        char id [48];
        ciba_auth_req_id (id);
        json_array_append_new (levels, json_pack ("{s:O, s:I, s:s, s:s}", "approver", who, "escalate_after",
                                                  (json_int_t) (after ? json_integer_value (after) : 0),
                                                  "auth_req_id", id, "state", "waiting"));
    }
    json_decref (one);
    return levels;
fail:
    json_decref (one);
    json_decref (levels);
    return NULL;
}

/*  The reply of ciba.authorize for approval a at now: {approval_id,
    state, levels [{approver, auth_req_id, state}], expires_in, expires_at,
    interval}. */
static json_t *
s_authorize_reply (ciba_t *self, json_t *a, int64_t now)
{
    json_t *levels = json_array (), *lvl;
    size_t i;
    json_array_foreach (json_object_get (a, "levels"), i, lvl)
        json_array_append_new (levels, json_pack ("{s:s, s:s, s:s}", "approver", ciba_str (lvl, "approver"),
                                                  "auth_req_id", ciba_str (lvl, "auth_req_id"),
                                                  "state", ciba_str (lvl, "state")));
    int64_t left = ciba_int (a, "expires_at") - now;
    return json_pack ("{s:s, s:s, s:o, s:I, s:I, s:I}", "approval_id", ciba_str (a, "approval_id"),
                      "state", ciba_str (a, "state"), "levels", levels,
                      "expires_in", (json_int_t) (left > 0 ? left / 1000000 : 0), "expires_at",
                      (json_int_t) ciba_int (a, "expires_at"), "interval", (json_int_t) self->interval_s);
}

/*  The approval that requested_by's idempotency key idem names, in txn,
    as ciba.authorize answers it (its state now): true with out set (the
    reply, or `conflict` when the key was given for other
    authorization_details), false when the key names none (then the
    new approval a takes it, in txn). */
static bool
s_authorize_again (ciba_t *self, bus_txn_t *txn, const char *requested_by, const char *idem, json_t *a,
                   bus_outcome_t *out)
{
    char key [600];
    int n = ciba_key_index (key, sizeof key, requested_by, idem);
    const void *val;
    size_t len;
    if (n < 0)
        return false;
    json_t *first = NULL;
    if (bus_txn_get (txn, self->db_index, key, (size_t) n, &val, &len) == 0 && len == PROTO_ID_LEN) {
        char id [PROTO_ID_LEN + 1];
        memcpy (id, val, PROTO_ID_LEN);
        id [PROTO_ID_LEN] = 0;
        first = ciba_load (self, txn, id);
    }
    if (!first) {
        ciba_set_str (a, "idempotency_key", idem);
        bus_txn_put (txn, self->db_index, key, (size_t) n, ciba_str (a, "approval_id"), PROTO_ID_LEN);
        return false;
    }
    if (!streq (ciba_str (first, "authorization_details_sha256") ?: "", ciba_str (a, "authorization_details_sha256")))
        ciba_fail (out, PROTO_ERR_CONFLICT, "idempotency_key %s was given for approval %s, whose authorization_details "
                "differ", idem, ciba_str (first, "approval_id"));
    else {
        int64_t now = proto_now_us ();
        json_t *view = s_public (first, now);
        out->body = view ? s_authorize_reply (self, view, now) : NULL;
        json_decref (view);
        if (!out->body)
            ciba_fail (out, PROTO_ERR_UNAVAILABLE, "out of memory");
    }
    json_decref (first);
    return true;
}

/*  ciba.authorize {chain | login_hint, binding_message,
    authorization_details?, requested_expiry?, run?, node?,
    idempotency_key?}: on the writer. With idempotency_key, the approval
    the requester made with that key before (if any) answers, as it is
    now, and nothing new is asked. */
static void
s_authorize_work (void *state, json_t *body, void *arg, bus_outcome_t *out)
{
    ciba_t *self = state;
    ciba_job_t *job = arg;
    char why [256] = "";
    json_t *details = json_object_get (body, "authorization_details");
    size_t i;
    json_t *d;
    json_array_foreach (details, i, d)
        if (!json_is_object (d) || !json_is_string (json_object_get (d, "type"))) {
            ciba_fail (out, PROTO_ERR_INVALID, "authorization_details[%zu] must be an object with a type (RFC 9396)", i);
            return;
        }
    char hash [65];
    if (ciba_details_sha256 (hash, details)) {
        ciba_fail (out, PROTO_ERR_INVALID, "authorization_details has no canonical JSON form "
                "(RFC 8785): integers beyond 2^53, or nesting past 32 levels");
        return;
    }
    char *mapped = self->oidc && self->auth0_charset ? ciba_oidc_charset (ciba_str (body, "binding_message")) : NULL;
    char *message = s_sanitise (mapped ? mapped : ciba_str (body, "binding_message"), (size_t) self->message_max, why,
                                sizeof why);
    free (mapped);
    json_t *levels = message ? s_levels_from (body, why, sizeof why) : NULL;
    if (!levels) {
        free (message);
        ciba_fail (out, PROTO_ERR_INVALID, "%s", why);
        return;
    }
    int64_t now = proto_now_us ();
    json_t *expiry = json_object_get (body, "requested_expiry");
    int64_t expires_in = expiry ? json_integer_value (expiry) : self->default_expiry_s;
    char approval_id [PROTO_ID_LEN + 1];
    proto_ulid (approval_id);
    json_t *a = json_pack ("{s:s, s:s, s:O, s:O, s:s, s:O, s:s, s:s, s:I, s:I, s:I, s:I, s:o}",
                           "approval_id", approval_id, "state", "pending",
                           "run", json_object_get (body, "run") ?: json_null (),
                           "node", json_object_get (body, "node") ?: json_null (),
                           "binding_message", message,
                           "authorization_details", details ?: json_null (),
                           "authorization_details_sha256", hash,
                           "requested_by", job->principal,
                           "created_at", (json_int_t) now, "expires_at", (json_int_t) (now + expires_in * 1000000LL),
                           "current", (json_int_t) 0, "deadline", (json_int_t) 0, "levels", levels);
    free (message);
    if (!a) {
        ciba_fail (out, PROTO_ERR_UNAVAILABLE, "out of memory");
        return;
    }
    bus_txn_t *txn = ciba_write_begin (self, out);
    if (!txn) {
        json_decref (a);
        return;
    }
    const char *idem = ciba_str (body, "idempotency_key");
    if (idem && s_authorize_again (self, txn, job->principal, idem, a, out)) {
        json_decref (a);
        ciba_finish (self, &txn, out);
        return;
    }
    json_t *lvl;
    json_array_foreach (levels, i, lvl)
        if (ciba_owner_note (self, ciba_str (lvl, "auth_req_id"), approval_id))
            bus_txn_fail (txn, BUS_ENOMEM);
    ciba_ask (self, txn, a, 0, now, ciba_tp (job), job->after);
    ciba_save (self, txn, a);
    out->body = s_authorize_reply (self, a, now);
    json_decref (a);
    if (!out->body)
        bus_txn_fail (txn, BUS_ENOMEM);
    ciba_finish (self, &txn, out);
}

static void
s_authorize (bus_service_t *svc, bus_request_t *req, void *arg)
{
    ciba_change (arg, req, s_authorize_work);
}

/*  The approval a body names by approval_id or auth_req_id, in txn; NULL
    with out set (the caller's txn untouched). */
static json_t *
s_find (ciba_t *self, bus_txn_t *txn, json_t *body, bus_outcome_t *out)
{
    const char *approval_id = ciba_str (body, "approval_id");
    const char *auth_req_id = ciba_str (body, "auth_req_id");
    char owner [PROTO_ID_LEN + 1];
    if (!approval_id && !auth_req_id) {
        ciba_fail (out, PROTO_ERR_INVALID, "approval_id or auth_req_id is required");
        return NULL;
    }
    if (!approval_id) {
        json_t *a = ciba_level_owner (self, auth_req_id, owner) == 0 ? ciba_load (self, txn, owner) : NULL;
        if (!a)
            ciba_fail (out, PROTO_ERR_NOT_FOUND, "no approval has that auth_req_id");
        return a;
    }
    json_t *a = ciba_load (self, txn, approval_id);
    if (!a)
        ciba_fail (out, PROTO_ERR_NOT_FOUND, "no approval %s", approval_id);
    else if (auth_req_id && (ciba_level_owner (self, auth_req_id, owner) || !streq (owner, approval_id))) {
        /* both given: they must agree */
        ciba_fail (out, PROTO_ERR_INVALID, "auth_req_id is not a level of approval %s", approval_id);
        json_decref (a);
        return NULL;
    }
    return a;
}

/*  Is the approver principal a level of a? */
static bool
s_has_approver (json_t *a, const char *who)
{
    size_t i;
    json_t *lvl;
    json_array_foreach (json_object_get (a, "levels"), i, lvl)
        if (streq (ciba_str (lvl, "approver") ?: "", who))
            return true;
    return false;
}

/*  The summary of an approval the bulk ciba.status answers: {approval_id,
    state, reason?, expires_at, completed_at?}, the state as s_public
    reads it at now. */
static json_t *
s_summary (json_t *a, int64_t now)
{
    const char *state = ciba_str (a, "state") ?: "pending";
    if (streq (state, "pending") && now >= ciba_int (a, "expires_at"))
        state = "expired";
    json_t *out = json_pack ("{s:O, s:s, s:O}", "approval_id", json_object_get (a, "approval_id"), "state", state,
                             "expires_at", json_object_get (a, "expires_at"));
    if (out && json_object_get (a, "reason"))
        json_object_set (out, "reason", json_object_get (a, "reason"));
    if (out && json_object_get (a, "completed_at"))
        json_object_set (out, "completed_at", json_object_get (a, "completed_at"));
    return out;
}

/*  ciba.status {approval_ids: [...]}: many approvals in one read (the
    orchestrator reconciling its paused runs after a restart). Answers
    {approvals: [...]} in the order asked: each the approval's summary
    (s_summary), or {approval_id, error: {code, message}} (not found; an
    approver sees only approvals they are a level of). */
static void
s_status_many (ciba_t *self, bus_request_t *req, bus_txn_t *txn, json_t *ids)
{
    json_t *list = json_array ();
    int64_t now = proto_now_us ();
    size_t i;
    json_t *id;
    json_array_foreach (ids, i, id) {
        const char *approval_id = json_string_value (id);
        json_t *a = approval_id && strlen (approval_id) == PROTO_ID_LEN ? ciba_load (self, txn, approval_id) : NULL;
        if (a && s_is_user (req) && !s_has_approver (a, bus_request_principal (req))) {
            json_decref (a);
            a = NULL;
        }
        if (a)
            json_array_append_new (list, s_summary (a, now));
        else if (approval_id)
            json_array_append_new (list, json_pack ("{s:s, s:{s:s, s:s}}", "approval_id", approval_id, "error",
                                                    "code", PROTO_ERR_NOT_FOUND, "message", "no such approval"));
        else {
            json_decref (list);
            bus_reply_error (req, PROTO_ERR_INVALID, "approval_ids[%zu]: a string", i);
            return;
        }
        json_decref (a);
    }
    bus_reply_ok (req, json_pack ("{s:o}", "approvals", list));
}

/*  ciba.status {approval_id | auth_req_id}: an approver (user:) sees only
    approvals they are a level of. A read, on the reactor. With
    approval_ids, many at once (s_status_many). */
static void
s_status (bus_service_t *svc, bus_request_t *req, void *arg)
{
    ciba_t *self = arg;
    bus_txn_t *txn = bus_txn_begin (self->store, false);
    if (!txn) {
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "cannot open the store");
        return;
    }
    json_t *ids = json_object_get (bus_request_body (req), "approval_ids");
    if (ids) {
        s_status_many (self, req, txn, ids);
        bus_txn_abort (&txn);
        return;
    }
    bus_outcome_t out = { .code = NULL };
    json_t *a = s_find (self, txn, bus_request_body (req), &out);
    bus_txn_abort (&txn);
    if (!a)
        bus_reply_outcome (req, &out);
    else if (s_is_user (req) && !s_has_approver (a, bus_request_principal (req)))
        bus_reply_error (req, PROTO_ERR_NOT_FOUND, "no such approval for %s", bus_request_principal (req));
    else
        bus_reply_ok (req, s_public (a, proto_now_us ()));
    json_decref (a);
}

/*  ciba.decide {auth_req_id, decision, signature, device}: on the writer. */
static void
s_decide_work (void *state, json_t *body, void *arg, bus_outcome_t *out)
{
    ciba_t *self = state;
    ciba_job_t *job = arg;
    const char *auth_req_id = ciba_str (body, "auth_req_id");
    const char *decision = ciba_str (body, "decision");
    const char *device = ciba_str (body, "device");
    const char *signature = ciba_str (body, "signature");
    if (!streq (decision, "approve") && !streq (decision, "deny")) {
        ciba_fail (out, PROTO_ERR_INVALID, "decision must be approve or deny");
        return;
    }
    if (self->oidc) {
        ciba_fail (out, PROTO_ERR_CONFLICT, "backend oidc: decisions come from the provider");
        return;
    }
    bus_txn_t *txn = ciba_write_begin (self, out);
    json_t *a = txn ? s_find (self, txn, body, out) : NULL;
    json_t *dev = NULL;
    if (!a) {
        bus_service_abort (self->svc, &txn);
        return;
    }
    int64_t now = proto_now_us ();
    const char *tp = ciba_tp (job);
    json_t *levels = json_object_get (a, "levels"), *lvl = NULL;
    size_t i, at = 0;
    json_array_foreach (levels, i, lvl)
        if (streq (ciba_str (lvl, "auth_req_id") ?: "", auth_req_id)) {
            at = i;
            break;
        }
    lvl = json_array_get (levels, at);
    const char *approver = ciba_str (lvl, "approver");
    if (job->user && !streq (job->principal, approver)) {
        ciba_fail (out, PROTO_ERR_FORBIDDEN, "%s is not the approver of this request", job->principal);
        goto done;
    }
    if (s_tick (self, txn, a, now, job->after) && ciba_save (self, txn, a) == 0
        && !streq (ciba_str (a, "state"), "pending")) {
        /* the deadline had passed: the expiry is stored, the decision refused */
        ciba_fail (out, PROTO_ERR_CONFLICT, "the approval is %s", ciba_str (a, "state"));
        goto done;
    }
    if (!streq (ciba_str (a, "state"), "pending")) {
        ciba_fail (out, PROTO_ERR_CONFLICT, "the approval is %s", ciba_str (a, "state"));
        goto done;
    }
    if (!streq (ciba_str (lvl, "state"), "pending") || json_is_true (json_object_get (lvl, "queued"))) {
        ciba_fail (out, PROTO_ERR_CONFLICT, "this request (level %zu) is %s: a decision is taken once, "
                "and only for the level being asked", at,
                json_is_true (json_object_get (lvl, "queued")) ? "queued, not asked yet" : ciba_str (lvl, "state"));
        goto done;
    }
    if (!ciba_device_active (self, txn, approver, device, &dev)) {
        ciba_fail (out, PROTO_ERR_FORBIDDEN, "device %.43s is %s", device,
                dev ? "revoked" : "not enrolled for this approver");
        goto done;
    }
    int vrc = ciba_decision_verify (device, signature, auth_req_id, decision, ciba_str (a, "binding_message"),
                                    ciba_str (a, "authorization_details_sha256"));
    if (vrc) {
        ciba_fail (out, PROTO_ERR_FORBIDDEN, "%s", vrc == BUS_ECRYPTO
                ? "the signature does not verify over this request's decision bytes (PROTOCOL.md 10.4)"
                : "the signature is not 64 bytes of base64url");
        goto done;
    }
    bool approve = streq (decision, "approve");
    ciba_set_str (lvl, "state", approve ? "approved" : "denied");
    ciba_set_str (lvl, "device_key", device);
    ciba_set_str (lvl, "signature", signature);
    ciba_set_int (lvl, "decided_at", now);
    ciba_set_int (lvl, "deadline", 0);
    ciba_level_event (self, txn, approve ? "ciba.approved" : "ciba.denied", a, at,
                      json_pack ("{s:s, s:s, s:s, s:s}", "device_key", device, "signature", signature,
                                 "binding_message", ciba_str (a, "binding_message"), "authorization_details_sha256",
                                 ciba_str (a, "authorization_details_sha256")), tp);
    if (!approve)
        ciba_complete (self, txn, a, "denied", NULL, now, tp);
    else if (at + 1 < json_array_size (levels))
        ciba_ask (self, txn, a, at + 1, now, tp, job->after);
    else
        ciba_complete (self, txn, a, "approved", NULL, now, tp);
    ciba_save (self, txn, a);
    out->body = s_public (a, now);
done:
    ciba_finish (self, &txn, out);         /* an error found on the way keeps what the tick stored */
    json_decref (dev);
    json_decref (a);
}

static void
s_decide (bus_service_t *svc, bus_request_t *req, void *arg)
{
    ciba_change (arg, req, s_decide_work);
}

/*  ciba.cancel {approval_id | auth_req_id, reason?}: on the writer. */
static void
s_cancel_work (void *state, json_t *body, void *arg, bus_outcome_t *out)
{
    ciba_t *self = state;
    ciba_job_t *job = arg;
    bus_txn_t *txn = ciba_write_begin (self, out);
    json_t *a = txn ? s_find (self, txn, body, out) : NULL;
    if (!a) {
        bus_service_abort (self->svc, &txn);
        return;
    }
    int64_t now = proto_now_us ();
    const char *tp = ciba_tp (job);
    if (s_tick (self, txn, a, now, job->after))
        ciba_save (self, txn, a);
    if (!streq (ciba_str (a, "state"), "pending")) {
        ciba_fail (out, PROTO_ERR_CONFLICT, "the approval is %s", ciba_str (a, "state"));
        ciba_finish (self, &txn, out);
        json_decref (a);
        return;
    }
    size_t i = (size_t) ciba_int (a, "current");
    json_t *lvl = json_array_get (json_object_get (a, "levels"), i);
    const char *reason = ciba_str (body, "reason");
    if (lvl && streq (ciba_str (lvl, "state") ?: "", "pending")) {
        ciba_set_str (lvl, "state", "cancelled");
        ciba_set_int (lvl, "decided_at", now);
        ciba_level_event (self, txn, "ciba.cancelled", a, i,
                          reason ? json_pack ("{s:s}", "reason", reason) : NULL, tp);
    }
    ciba_complete (self, txn, a, "cancelled", reason, now, tp);
    ciba_save (self, txn, a);
    out->body = s_public (a, now);
    ciba_finish (self, &txn, out);
    json_decref (a);
}

static void
s_cancel (bus_service_t *svc, bus_request_t *req, void *arg)
{
    ciba_change (arg, req, s_cancel_work);
}

typedef struct {
    ciba_t *self;
    bus_txn_t *txn;
    const char *approver, *state, *run;
    size_t limit;
    int64_t now;
    json_t *out;
    int rc;
} s_list_scan_t;

/*  Keep approval a (borrowed) when it matches the query. */
static void
s_list_match (s_list_scan_t *q, json_t *a)
{
    json_t *p = a ? s_public (a, q->now) : NULL;
    if (p && (!q->approver || s_has_approver (p, q->approver))
        && (!q->state || streq (ciba_str (p, "state") ?: "", q->state))
        && (!q->run || streq (ciba_str (p, "run") ?: "", q->run)))
        json_array_append_new (q->out, p);
    else
        json_decref (p);
}

/*  Scan callback of ciba.list over every approval (no filter). */
static int
s_list_one (const void *k, size_t kl, const void *v, size_t vl, void *arg)
{
    s_list_scan_t *q = arg;
    json_t *a = json_loadb (v, vl, 0, NULL);
    s_list_match (q, a);
    json_decref (a);
    return json_array_size (q->out) >= q->limit ? 1 : 0;
}

/*  ciba.list over the index list under prefix (ciba_t.index): its ids,
    taken under the lock, then each record read and checked against the
    query (the index narrows, the record decides). Returns 0 or
    BUS_ENOMEM. */
static int
s_list_indexed (s_list_scan_t *q, const char *prefix)
{
    ciba_t *self = q->self;
    pthread_mutex_lock (&self->owners_lock);
    ciba_times_t *list = zhashx_lookup (self->index, prefix);
    size_t n = list ? ciba_times_size (list) : 0;
    char (*ids) [PROTO_ID_LEN + 1] = n ? malloc (n * sizeof *ids) : NULL;
    if (ids)
        n = ciba_times_due (list, INT64_MAX, ids, n);
    pthread_mutex_unlock (&self->owners_lock);
    if (n && !ids)
        return BUS_ENOMEM;
    for (size_t i = 0; i < n && json_array_size (q->out) < q->limit; i++) {
        json_t *a = ciba_load (self, q->txn, ids [i]);
        s_list_match (q, a);
        json_decref (a);
    }
    free (ids);
    return 0;
}

/*  ciba.list {approver?, state?, run?, limit?}: approvals oldest first;
    an approver (user:) sees only their own. Served from the narrowest
    index that applies: run, else approver (and state), else state; a
    full scan only without any filter (then the first limit). A pending
    approval past its expiry that the timer has not stored yet reads
    expired (s_public), and is found under state pending's index. */
static void
s_list (bus_service_t *svc, bus_request_t *req, void *arg)
{
    ciba_t *self = arg;
    json_t *body = bus_request_body (req);
    const char *approver = s_is_user (req) ? bus_request_principal (req) : ciba_str (body, "approver");
    const char *state = ciba_str (body, "state");
    const char *run = ciba_str (body, "run");
    size_t limit = json_object_get (body, "limit") ? (size_t) ciba_int (body, "limit") : S_LIST_DEFAULT;
    json_t *out = json_array ();
    bus_txn_t *txn = bus_txn_begin (self->store, false);
    if (!txn || !out) {
        bus_txn_abort (&txn);
        json_decref (out);
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "cannot open the store");
        return;
    }
    s_list_scan_t scan = { self, txn, approver, state, run, limit, proto_now_us (), out, 0 };
    char prefix [600];
    int n = -1, rc = 0;
    /* expired is also what a pending approval past its time reads: look under both */
    bool expired = state && streq (state, "expired");
    if (run)
        n = snprintf (prefix, sizeof prefix, "r\n%s\n", run);
    else if (approver && state && !expired)
        n = snprintf (prefix, sizeof prefix, "a\n%s\n%s\n", approver, state);
    else if (approver)
        n = snprintf (prefix, sizeof prefix, "a\n%s\n", approver);
    else if (state && !expired)
        n = snprintf (prefix, sizeof prefix, "s\n%s\n", state);
    if (n >= (int) sizeof prefix)
        n = snprintf (prefix, sizeof prefix, "-");    /* too long to be indexed: nothing matches */
    if (n >= 0)
        rc = s_list_indexed (&scan, prefix);
    else if (expired) {
        rc = s_list_indexed (&scan, "s\nexpired\n");
        if (rc == 0 && json_array_size (out) < limit)
            rc = s_list_indexed (&scan, "s\npending\n");
    }
    else
        rc = bus_txn_scan (txn, self->db_approvals, NULL, 0, NULL, 0, s_list_one, &scan);
    bus_txn_abort (&txn);
    if (rc) {
        json_decref (out);
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "cannot read the approvals: %s", bus_strerror (rc));
        return;
    }
    bus_reply_ok (req, json_pack ("{s:o}", "approvals", out));
}

/* ---- the timer ---------------------------------------------------------- */

typedef struct {
    size_t n;
    char ids [S_SCAN_BATCH][PROTO_ID_LEN + 1];
} s_due_t;

/*  The approvals whose deadline is at or before now (due), and those
    ended before old (ended, at most S_PURGE_BATCH), from memory: a scan
    with nothing to do never takes LMDB's write lock (nor waits for the
    writer's group). True when there are any. */
static bool
s_anything_due (ciba_t *self, int64_t now, int64_t old, s_due_t *due, s_due_t *ended)
{
    pthread_mutex_lock (&self->owners_lock);
    due->n = ciba_times_due (self->deadlines, now, due->ids, S_SCAN_BATCH);
    ended->n = old > 0 ? ciba_times_due (self->ended, old - 1, ended->ids, S_PURGE_BATCH) : 0;
    pthread_mutex_unlock (&self->owners_lock);
    return due->n + ended->n > 0;
}

/*  Every escalation_scan_ms, on the reactor, in one transaction: the
    approvals whose deadline has come (expiry, escalation, a queued
    level's slot, an oidc poll), and up to S_PURGE_BATCH approvals ended
    longer than retention_s ago, purged with their auth_req_ids and
    indexes. What the changes ask of the world goes out once committed. */
static void
s_scan (bus_service_t *svc, void *state)
{
    ciba_t *self = state;
    int64_t now = proto_now_us ();
    s_due_t *lists = calloc (2, sizeof *lists);
    if (!lists || !s_anything_due (self, now, now > self->retention_us ? now - self->retention_us : 0, &lists [0],
                                   &lists [1])) {
        free (lists);
        return;
    }
    s_due_t *due = &lists [0], *ended = &lists [1];
    json_t *after = json_array ();
    bus_txn_t *txn = after ? bus_txn_begin (self->store, true) : NULL;
    if (!txn) {
        json_decref (after);
        free (lists);
        return;
    }
    json_t *gone = json_array ();       /* the auth_req_ids purged */
    for (size_t i = 0; i < due->n; i++) {
        json_t *a = ciba_load (self, txn, due->ids [i]);
        if (a) {
            s_tick (self, txn, a, now, after);
            ciba_save (self, txn, a);
        }
        /* what is held in memory becomes what is stored (none when the
           approval is gone) */
        ciba_time_on_commit (self, txn, self->deadlines, due->ids [i], a ? ciba_int (a, "deadline") : 0);
        json_decref (a);
    }
    for (size_t i = 0; i < ended->n; i++)
        ciba_purge_one (self, txn, ended->ids [i], gone);
    int rc = bus_service_commit (svc, &txn);
    if (rc)
        bus_warn ("ciba: deadline scan not stored: %s (tried again next scan)", bus_strerror (rc));
    else {
        ciba_owners_drop (self, gone);
        ciba_after_commit (self, after);
        if (ended->n)
            bus_stats_count (bus_service_stats (svc), "approvals_purged", ended->n);
    }
    json_decref (gone);
    json_decref (after);
    free (lists);
}

/* ---- the daemon --------------------------------------------------------- */

/*  bus_service_outcome_sealer's seal (reactor or writer; reads nothing
    shared): an invite's reply carries its code, which must not be on disk
    in plain text, so that outcome is not recorded (a retry is answered
    from memory only); every other outcome is stored as it is. */
static json_t *
s_outcome_seal (bus_request_t *req, json_t *outcome, void *arg)
{
    if (json_object_get (json_object_get (outcome, "body"), "code"))
        return NULL;
    return json_incref (outcome);
}

/*  bus_service_outcome_sealer's open: outcomes are stored as they are. */
static json_t *
s_outcome_open (bus_request_t *req, json_t *outcome, void *arg)
{
    return json_incref (outcome);
}

/*  The writer's state: the broker (its changes take what they need of it
    as arguments; its members are read-only once started). */
static void *
s_writer_init (void *arg)
{
    return arg;
}

static int
s_start (bus_service_t *svc, void **state)
{
    if (sodium_init () < 0)
        return BUS_ECRYPTO;
    ciba_t *self = calloc (1, sizeof *self);
    if (!self)
        return BUS_ENOMEM;
    *state = self;
    self->svc = svc;
    self->store = bus_service_store (svc);
    bus_config_t *config = bus_service_config (svc);
    const char *backend = bus_config_str (config, "ciba", "backend");
    if (!streq (backend ?: "", "local") && !streq (backend ?: "", "oidc")) {
        bus_error ("ciba: backend '%s': local or oidc", backend ?: "");
        return BUS_ECONFIG;
    }
    self->oidc = streq (backend, "oidc");
    self->default_expiry_s = bus_config_int (config, "ciba", "default_expiry_s");
    self->interval_s = bus_config_int (config, "ciba", "poll_interval_s");
    self->rate_per_min = bus_config_int (config, "ciba", "approver_rate_per_min");
    self->message_max = bus_config_int (config, "ciba", "binding_message_max");
    self->retention_us = bus_config_int (config, "ciba", "retention_s") * 1000000LL;
    self->db_approvals = bus_store_db (self->store, "approvals");
    self->db_levels = bus_store_db (self->store, "levels");
    self->db_deadlines = bus_store_db (self->store, "deadlines");
    self->db_devices = bus_store_db (self->store, "devices");
    self->db_index = bus_store_db (self->store, "index");
    self->db_ended = bus_store_db (self->store, "ended");
    self->db_asked = bus_store_db (self->store, "asked");
    self->db_invites = bus_store_db (self->store, "invites");
    if (self->db_approvals < 0 || self->db_levels < 0 || self->db_deadlines < 0 || self->db_devices < 0
        || self->db_index < 0 || self->db_ended < 0 || self->db_asked < 0
        || self->db_invites < 0)
        return BUS_EINVAL;
    if (self->rate_per_min > S_RATE_MAX)
        return BUS_ECONFIG;
    int wrc = bus_service_outcome_sealer (svc, s_outcome_seal, s_outcome_open, self);
    if (wrc)
        return wrc;
    self->owners = zhashx_new ();
    self->deadlines = ciba_times_new ();
    self->ended = ciba_times_new ();
    self->index = zhashx_new ();
    if (!self->owners || !self->deadlines || !self->ended || !self->index)
        return BUS_ENOMEM;
    zhashx_set_destructor (self->index, (zhashx_destructor_fn *) ciba_times_destroy);
    zhashx_set_destructor (self->owners, (zhashx_destructor_fn *) zstr_free);
    pthread_mutex_init (&self->owners_lock, NULL);
    self->owners_ready = true;
    wrc = ciba_tables_load (self);
    if (wrc) {
        bus_error ("ciba: cannot read the stored approvals' auth_req_ids: %s", bus_strerror (wrc));
        return wrc;
    }
    /* every change on the writer: one fsync for all the changes queued together */
    wrc = bus_service_writer (svc, s_writer_init, NULL, self);
    if (wrc)
        return wrc;
    if (self->oidc) {
        int rc = ciba_oidc_start (self, config);
        if (rc)
            return rc;
    }
    const char *hook = bus_config_str (config, "ciba", "webhook_url");
    const char *hook_file = bus_config_str (config, "ciba", "webhook_url_file");
    char hook_buf [4096] = "";
    if (hook && *hook && hook_file && *hook_file) {
        bus_error ("ciba: set webhook_url or webhook_url_file, not both");
        return BUS_ECONFIG;
    }
    if (hook_file && *hook_file) {
        /* a URL that is a secret (Slack's, ntfy's with a token): its
           first line, and never logged */
        FILE *f = fopen (hook_file, "r");
        if (!f || !fgets (hook_buf, sizeof hook_buf, f)) {
            bus_error ("ciba: webhook_url_file %s is %s", hook_file, f ? "empty" : "not readable");
            if (f)
                fclose (f);
            return BUS_ECONFIG;
        }
        fclose (f);
        hook_buf [strcspn (hook_buf, "\r\n")] = 0;
        hook = hook_buf;
    }
    if (hook && *hook) {
        if (strncmp (hook, "http://", 7) && strncmp (hook, "https://", 8)) {
            bus_error ("ciba: %s must be an http:// or https:// URL", hook == hook_buf ? "webhook_url_file" : "webhook_url");
            return BUS_ECONFIG;
        }
        self->webhook_url = strdup (hook);
        sodium_memzero (hook_buf, sizeof hook_buf);
        if (!self->http) {
            bus_http_client_opts_t opts;
            bus_http_client_opts_from_config (&opts, config);
            self->http = bus_http_client_new (bus_service_loop (svc), &opts);
        }
        if (!self->webhook_url || !self->http)
            return BUS_ENOMEM;
    }
    static const bus_handler_entry_t handlers [] = {
        { "ciba.authorize",     s_authorize },
        { "ciba.status",        s_status },
        { "ciba.decide",        s_decide },
        { "ciba.cancel",        s_cancel },
        { "ciba.list",          s_list },
        { "ciba.device.enroll", ciba_device_enroll },
        { "ciba.device.revoke", ciba_device_revoke },
        { "ciba.device.list",   ciba_device_list },
        { "ciba.device.invite", ciba_device_invite },
        { "ciba.device.redeem", ciba_device_redeem },
    };
    return bus_service_handle_all (svc, handlers, sizeof handlers / sizeof handlers [0], self);
}

static void
s_stop (bus_service_t *svc, void **state)
{
    ciba_t *self = *state;
    if (!self)
        return;
    ciba_oidc_stop (self);
    zhashx_destroy (&self->owners);
    ciba_times_destroy (&self->deadlines);
    ciba_times_destroy (&self->ended);
    zhashx_destroy (&self->index);
    if (self->owners_ready)
        pthread_mutex_destroy (&self->owners_lock);
    free (self->webhook_url);
    free (self);
    *state = NULL;
}

static const char *const s_dbs [] = { "approvals", "levels", "deadlines", "devices", "index", "ended", "asked",
                                      "invites", NULL };

static const bus_timer_t s_timers [] = {
    { .name = "deadlines", .interval_key = "escalation_scan_ms", .fn = s_scan },
    { 0 }
};

const bus_daemon_t ciba_daemon = {
    .section = "ciba",
    .db_names = s_dbs,
    .start = s_start,
    .stop = s_stop,
    .timers = s_timers,
};
