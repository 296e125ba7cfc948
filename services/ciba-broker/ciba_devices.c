/*  ciba_devices.c — the ciba-broker's approver devices and their
    invites: ciba.device.enroll / revoke / list / invite / redeem (each
    change on the writer, through ciba_change), and whether an approver
    has an active device (ciba_device_active, for the chain). The
    records are described in ciba_service.c's header.
*/
#include "ciba_decision.h"
#include "ciba_internal.h"
#include "bus_error.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define S_INVITE_TTL_S 600       /* a device invite's default lifetime */
#define S_INVITE_TTL_MAX_S 86400
#define S_INVITE_KEEP_S 86400    /* an expired invite is kept this long (its code refused as used/expired) */
#define S_INVITE_PURGE 256       /* stale invites dropped per issue, at most */

/* ---- devices ------------------------------------------------------------ */

/*  Scan callback: stop at the first active device (*arg, a bool). */
static int
s_any_active (const void *k, size_t kl, const void *v, size_t vl, void *arg)
{
    json_t *d = json_loadb (v, vl, 0, NULL);
    bool *any = arg;
    *any = d && streq (ciba_str (d, "state") ?: "", "active");
    json_decref (d);
    return *any ? 1 : 0;
}

/*  Does approver have an active device? The device's record into *out
    when device is given (NULL: any). */
bool
ciba_device_active (ciba_t *self, bus_txn_t *txn, const char *approver, const char *device, json_t **out)
{
    char prefix [600];
    int n = snprintf (prefix, sizeof prefix, "%s\n%s", approver, device ? device : "");
    if (n < 0 || (size_t) n >= sizeof prefix)
        return false;
    if (device) {
        const void *val;
        size_t len;
        if (bus_txn_get (txn, self->db_devices, prefix, (size_t) n, &val, &len))
            return false;
        json_t *d = json_loadb (val, len, 0, NULL);
        bool ok = d && streq (ciba_str (d, "state") ?: "", "active");
        if (out)
            *out = d;
        else
            json_decref (d);
        return ok;
    }
    bool any = false;
    bus_txn_scan_prefix (txn, self->db_devices, prefix, (size_t) n, s_any_active, &any);
    return any;
}

/*  ciba.device.enroll {approver, public_key}: an Ed25519 public key
    (base64url, 32 bytes) becomes a device of approver; the device is named
    by its key. A revoked key cannot come back. On the writer. */
static void
s_device_enroll_work (void *state, json_t *body, void *arg, bus_outcome_t *out)
{
    ciba_t *self = state;
    ciba_job_t *job = arg;
    const char *approver = ciba_str (body, "approver"), *pk = ciba_str (body, "public_key");
    uint8_t raw [CIBA_PK_LEN];
    if (!ciba_approver_ok (approver) || ciba_b64_decode (raw, sizeof raw, pk)) {
        ciba_fail (out, PROTO_ERR_INVALID, "approver must be a principal such as user:alice and "
                "public_key 32 bytes of base64url (an Ed25519 public key)");
        return;
    }
    bus_txn_t *txn = ciba_write_begin (self, out);
    if (!txn)
        return;
    char key [600];
    int n = snprintf (key, sizeof key, "%s\n%s", approver, pk);
    const void *val;
    size_t len;
    int64_t now = proto_now_us ();
    if (bus_txn_get (txn, self->db_devices, key, (size_t) n, &val, &len) == 0) {
        json_t *d = json_loadb (val, len, 0, NULL);
        bool active = d && streq (ciba_str (d, "state") ?: "", "active");
        json_decref (d);
        if (!active)
            ciba_fail (out, PROTO_ERR_CONFLICT, "this key was revoked; enrol a new one");
        else
            out->body = json_pack ("{s:s, s:s, s:s}", "approver", approver, "device", pk, "state", "active");
        ciba_finish (self, &txn, out);
        return;
    }
    json_t *d = json_pack ("{s:s, s:s, s:s, s:I}", "approver", approver, "device", pk, "state", "active",
                           "enrolled_at", (json_int_t) now);
    char *text = d ? json_dumps (d, JSON_COMPACT) : NULL;
    if (!text)
        bus_txn_fail (txn, BUS_ENOMEM);
    else
        bus_txn_put (txn, self->db_devices, key, (size_t) n, text, strlen (text));
    free (text);
    bus_event_append (self->svc, txn, "ciba.device.enrolled", json_pack ("{s:s, s:s}", "approver", approver,
                                                                          "device", pk), ciba_tp (job));
    out->body = d;
    ciba_finish (self, &txn, out);
}

void
ciba_device_enroll (bus_service_t *svc, bus_request_t *req, void *arg)
{
    ciba_change (arg, req, s_device_enroll_work);
}

typedef struct {
    json_t *found;
    size_t exact;            /* key length when one device is named, else 0 */
} s_collect_t;

/*  Scan callback: the active devices (of the one key when exact). */
static int
s_collect (const void *k, size_t kl, const void *v, size_t vl, void *arg)
{
    s_collect_t *c = arg;
    json_t *d = json_loadb (v, vl, 0, NULL);
    if (d && streq (ciba_str (d, "state") ?: "", "active") && (!c->exact || kl == c->exact))
        json_array_append (c->found, d);
    json_decref (d);
    return 0;
}

/*  ciba.device.revoke {approver, device?}: one device, or every active
    device of approver. On the writer. */
static void
s_device_revoke_work (void *state, json_t *body, void *arg, bus_outcome_t *out)
{
    ciba_t *self = state;
    ciba_job_t *job = arg;
    const char *approver = ciba_str (body, "approver"), *device = ciba_str (body, "device");
    if (!ciba_approver_ok (approver)) {
        ciba_fail (out, PROTO_ERR_INVALID, "approver must be a principal such as user:alice");
        return;
    }
    bus_txn_t *txn = ciba_write_begin (self, out);
    if (!txn)
        return;
    char prefix [600];
    int n = snprintf (prefix, sizeof prefix, "%s\n%s", approver, device ? device : "");
    json_t *found = json_array (), *revoked = json_array ();
    s_collect_t collect = { found, device ? (size_t) n : 0 };
    bus_txn_scan_prefix (txn, self->db_devices, prefix, (size_t) n, s_collect, &collect);
    int64_t now = proto_now_us ();
    size_t i;
    json_t *d;
    json_array_foreach (found, i, d) {
        ciba_set_str (d, "state", "revoked");
        ciba_set_int (d, "revoked_at", now);
        char key [600];
        int kn = snprintf (key, sizeof key, "%s\n%s", approver, ciba_str (d, "device"));
        char *text = json_dumps (d, JSON_COMPACT);
        if (!text)
            bus_txn_fail (txn, BUS_ENOMEM);
        else
            bus_txn_put (txn, self->db_devices, key, (size_t) kn, text, strlen (text));
        free (text);
        json_array_append_new (revoked, json_string (ciba_str (d, "device")));
        bus_event_append (self->svc, txn, "ciba.device.revoked", json_pack ("{s:s, s:s}", "approver", approver,
                                                                             "device", ciba_str (d, "device")),
                          ciba_tp (job));
    }
    json_decref (found);
    if (json_array_size (revoked) == 0) {
        json_decref (revoked);
        ciba_fail (out, PROTO_ERR_NOT_FOUND, "%s has no active device%s", approver, device ? " by that key" : "");
    }
    else
        out->body = json_pack ("{s:s, s:o}", "approver", approver, "revoked", revoked);
    ciba_finish (self, &txn, out);
}

void
ciba_device_revoke (bus_service_t *svc, bus_request_t *req, void *arg)
{
    ciba_change (arg, req, s_device_revoke_work);
}

/* ---- device invites ----------------------------------------------------- */

/*  The key of an invite code in `invites`: its SHA-256 (the code itself is
    never stored: a copy of the store enrols nothing). */
static void
s_invite_key (uint8_t key [crypto_hash_sha256_BYTES], const char *code)
{
    crypto_hash_sha256 (key, (const uint8_t *) code, strlen (code));
}

typedef struct {
    int64_t before;          /* invites that expired before this are dropped */
    size_t n;
    uint8_t keys [S_INVITE_PURGE][crypto_hash_sha256_BYTES];
} s_stale_t;

/*  Scan callback: invites (used or not) expired before q->before. */
static int
s_stale_invite (const void *k, size_t kl, const void *v, size_t vl, void *arg)
{
    s_stale_t *q = arg;
    json_t *inv = kl == crypto_hash_sha256_BYTES ? json_loadb (v, vl, 0, NULL) : NULL;
    if (inv && ciba_int (inv, "expires_at") < q->before)
        memcpy (q->keys [q->n++], k, kl);
    json_decref (inv);
    return q->n >= S_INVITE_PURGE ? 1 : 0;
}

/*  ciba.device.invite {user, ttl_s?}: a one-time code that enrols one
    device for user (ciba.device.redeem). 192 random bits, base64url; kept
    as its hash with {user, state: unused|used, created_at, expires_at,
    used_at?, device?}. The code is in the reply only (and the request's
    recorded outcome, which a retry must get back). On the writer. */
static void
s_device_invite_work (void *state, json_t *body, void *arg, bus_outcome_t *out)
{
    ciba_t *self = state;
    ciba_job_t *job = arg;
    const char *user = ciba_str (body, "user");
    json_t *jttl = json_object_get (body, "ttl_s");
    int64_t ttl_s = jttl ? json_integer_value (jttl) : S_INVITE_TTL_S;
    if (!ciba_approver_ok (user) || ttl_s < 1 || ttl_s > S_INVITE_TTL_MAX_S) {
        ciba_fail (out, PROTO_ERR_INVALID, "user must be a principal such as user:alice and ttl_s 1..%d",
                S_INVITE_TTL_MAX_S);
        return;
    }
    bus_txn_t *txn = ciba_write_begin (self, out);
    if (!txn)
        return;
    char code [48];
    ciba_auth_req_id (code);
    uint8_t key [crypto_hash_sha256_BYTES];
    s_invite_key (key, code);
    int64_t now = proto_now_us (), expires = now + ttl_s * 1000000LL;
    /* invites are issued by hand, rarely: each issue drops (a bounded
       number of) those expired more than a day ago, used or not; their
       codes are refused as unknown from then on */
    s_stale_t *stale = calloc (1, sizeof *stale);
    if (stale) {
        stale->before = now - S_INVITE_KEEP_S * 1000000LL;
        bus_txn_scan (txn, self->db_invites, NULL, 0, NULL, 0, s_stale_invite, stale);
        for (size_t i = 0; i < stale->n; i++)
            bus_txn_del (txn, self->db_invites, stale->keys [i], crypto_hash_sha256_BYTES);
        free (stale);
    }
    json_t *inv = json_pack ("{s:s, s:s, s:I, s:I}", "user", user, "state", "unused",
                             "created_at", (json_int_t) now, "expires_at", (json_int_t) expires);
    char *text = inv ? json_dumps (inv, JSON_COMPACT) : NULL;
    if (!text)
        bus_txn_fail (txn, BUS_ENOMEM);
    else
        bus_txn_put (txn, self->db_invites, key, sizeof key, text, strlen (text));
    free (text);
    json_decref (inv);
    bus_event_append (self->svc, txn, "ciba.device.invited",
                      json_pack ("{s:s, s:I}", "approver", user, "expires_at", (json_int_t) expires), ciba_tp (job));
    out->body = json_pack ("{s:s, s:s, s:I}", "user", user, "code", code, "expires_at", (json_int_t) expires);
    ciba_finish (self, &txn, out);
    sodium_memzero (code, sizeof code);
}

void
ciba_device_invite (bus_service_t *svc, bus_request_t *req, void *arg)
{
    ciba_change (arg, req, s_device_invite_work);
}

/*  ciba.device.redeem {code, public_key}: the code of an unused, unexpired
    invite enrols public_key as a device of the invite's user, and the
    invite is used (once). Unknown: not_found; used: conflict; expired:
    forbidden. On the writer. */
static void
s_device_redeem_work (void *state, json_t *body, void *arg, bus_outcome_t *out)
{
    ciba_t *self = state;
    ciba_job_t *job = arg;
    const char *code = ciba_str (body, "code"), *pk = ciba_str (body, "public_key");
    uint8_t raw [CIBA_PK_LEN];
    if (!code || !*code || ciba_b64_decode (raw, sizeof raw, pk)) {
        ciba_fail (out, PROTO_ERR_INVALID, "code must be an invite code and public_key 32 bytes of base64url "
                "(an Ed25519 public key)");
        return;
    }
    bus_txn_t *txn = ciba_write_begin (self, out);
    if (!txn)
        return;
    uint8_t key [crypto_hash_sha256_BYTES];
    s_invite_key (key, code);
    const void *val;
    size_t len;
    int64_t now = proto_now_us ();
    json_t *inv = NULL;
    if (bus_txn_get (txn, self->db_invites, key, sizeof key, &val, &len) == 0)
        inv = json_loadb (val, len, 0, NULL);
    const char *user = inv ? ciba_str (inv, "user") : NULL;
    if (!user)
        ciba_fail (out, PROTO_ERR_NOT_FOUND, "unknown invite code");
    else
    if (!streq (ciba_str (inv, "state") ?: "", "unused"))
        ciba_fail (out, PROTO_ERR_CONFLICT, "this invite code was used already; ask for a new one");
    else
    if (ciba_int (inv, "expires_at") <= now)
        ciba_fail (out, PROTO_ERR_FORBIDDEN, "this invite code has expired; ask for a new one");
    if (out->code) {
        json_decref (inv);
        ciba_finish (self, &txn, out);
        return;
    }
    char dkey [600];
    int n = snprintf (dkey, sizeof dkey, "%s\n%s", user, pk);
    json_t *old = NULL;
    if (bus_txn_get (txn, self->db_devices, dkey, (size_t) n, &val, &len) == 0)
        old = json_loadb (val, len, 0, NULL);
    if (old && !streq (ciba_str (old, "state") ?: "", "active")) {
        ciba_fail (out, PROTO_ERR_CONFLICT, "this key was revoked; enrol a new one");
        json_decref (old);
        json_decref (inv);
        ciba_finish (self, &txn, out);
        return;
    }
    json_t *d = old ? old : json_pack ("{s:s, s:s, s:s, s:I}", "approver", user, "device", pk, "state", "active",
                                       "enrolled_at", (json_int_t) now);
    ciba_set_str (inv, "state", "used");
    ciba_set_int (inv, "used_at", now);
    ciba_set_str (inv, "device", pk);
    char *itext = json_dumps (inv, JSON_COMPACT);
    char *dtext = d && !old ? json_dumps (d, JSON_COMPACT) : NULL;
    if (!itext || !d || (!old && !dtext))
        bus_txn_fail (txn, BUS_ENOMEM);
    else {
        bus_txn_put (txn, self->db_invites, key, sizeof key, itext, strlen (itext));
        if (dtext)
            bus_txn_put (txn, self->db_devices, dkey, (size_t) n, dtext, strlen (dtext));
    }
    free (itext);
    free (dtext);
    if (!old)
        bus_event_append (self->svc, txn, "ciba.device.enrolled",
                          json_pack ("{s:s, s:s, s:s}", "approver", user, "device", pk, "via", "invite"), ciba_tp (job));
    out->body = json_pack ("{s:s, s:s, s:s, s:s, s:I}", "user", user, "approver", user, "device", pk,
                           "state", "active", "enrolled_at", (json_int_t) ciba_int (d, "enrolled_at"));
    json_decref (d);
    json_decref (inv);
    ciba_finish (self, &txn, out);
}

void
ciba_device_redeem (bus_service_t *svc, bus_request_t *req, void *arg)
{
    ciba_change (arg, req, s_device_redeem_work);
}

/*  Scan callback of ciba.device.list. */
static int
s_device_one (const void *k, size_t kl, const void *v, size_t vl, void *arg)
{
    json_t *d = json_loadb (v, vl, 0, NULL);
    if (d)
        json_array_append_new (arg, d);
    return json_array_size (arg) >= 10000 ? 1 : 0;
}

/*  ciba.device.list {approver?}. */
void
ciba_device_list (bus_service_t *svc, bus_request_t *req, void *arg)
{
    ciba_t *self = arg;
    const char *approver = ciba_str (bus_request_body (req), "approver");
    char prefix [600];
    int n = approver ? snprintf (prefix, sizeof prefix, "%s\n", approver) : 0;
    json_t *out = json_array ();
    bus_txn_t *txn = bus_txn_begin (self->store, false);
    int rc = txn ? bus_txn_scan_prefix (txn, self->db_devices, prefix, (size_t) n, s_device_one, out) : BUS_EIO;
    bus_txn_abort (&txn);
    if (rc) {
        json_decref (out);
        bus_reply_error (req, PROTO_ERR_UNAVAILABLE, "cannot read the devices: %s", bus_strerror (rc));
        return;
    }
    bus_reply_ok (req, json_pack ("{s:o}", "devices", out));
}
