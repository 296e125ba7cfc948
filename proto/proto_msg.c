/*  proto_msg.c — envelope codec, catalogue and body validation. */
#include "proto_msg.h"
#include "proto_mpack.h"
#include "bus_error.h"

#include <assert.h>
#include <ctype.h>
#include <msgpack.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

/* --- the catalogue, expanded from proto_catalog.def --------------------- */

typedef enum { F_STR, F_INT, F_UINT, F_BOOL, F_MAP, F_LIST, F_NUM, F_ANYV } s_ftype_t;

typedef struct {
    int msg;                 /* index of its message */
    const char *name;
    s_ftype_t type;
    bool required;
    int64_t min, max;
} s_field_t;

#define REQ PROTO_KIND_REQ
#define EVT PROTO_KIND_EVT
#define SVC PROTO_P_SVC
#define OPS PROTO_P_OPS
#define EXT PROTO_P_EXT
#define USR PROTO_P_USR
#define REQUIRED true
#define OPTIONAL false
#define STR F_STR
#define INT F_INT
#define UINT F_UINT
#define BOOL F_BOOL
#define MAP F_MAP
#define LIST F_LIST
#define NUM F_NUM
#define ANYV F_ANYV

enum {
#define PROTO_MSG(id, type, kind, owner, senders) s_msg_##id,
#define PROTO_FIELD(id, name, type, presence, min, max)
#include "proto_catalog.def"
#undef PROTO_MSG
#undef PROTO_FIELD
    s_msg_count
};

static const s_field_t s_fields [] = {
#define PROTO_MSG(id, type, kind, owner, senders)
#define PROTO_FIELD(id, name, type, presence, min, max) \
    { s_msg_##id, #name, type, presence, (int64_t) (min), (int64_t) (max) },
#include "proto_catalog.def"
#undef PROTO_MSG
#undef PROTO_FIELD
};

static proto_type_t s_types [] = {
#define PROTO_MSG(id, type, kind, owner, senders) { type, kind, #owner, senders, -1, 0 },
#define PROTO_FIELD(id, name, type, presence, min, max)
#include "proto_catalog.def"
#undef PROTO_MSG
#undef PROTO_FIELD
};

#undef REQ
#undef EVT
#undef SVC
#undef OPS
#undef EXT
#undef USR
#undef REQUIRED
#undef OPTIONAL
#undef STR
#undef INT
#undef UINT
#undef BOOL
#undef MAP
#undef LIST
#undef NUM
#undef ANYV

static pthread_once_t s_catalog_once = PTHREAD_ONCE_INIT;

/*  Random bytes for ids come from a per-thread pool refilled from libsodium
    256 bytes at a time: one getrandom(2) per trace, span or ULID was a
    measurable part of a round trip, and these ids are not secrets. A forked
    child drops the pool it inherited, so parent and child never hand out
    the same bytes. */
static __thread uint8_t s_pool [256];
static __thread size_t s_pool_left;

static void
s_pool_drop (void)
{
    s_pool_left = 0;
}

static void
s_random (void *out, size_t n)
{
    assert (n <= sizeof s_pool);
    if (s_pool_left < n) {
        randombytes_buf (s_pool, sizeof s_pool);
        s_pool_left = sizeof s_pool;
    }
    memcpy (out, s_pool + sizeof s_pool - s_pool_left, n);
    s_pool_left -= n;
}

/*  Link each message to its run of fields (fields of one message are
    contiguous in the .def file; checked here). */
static void
s_catalog_init (void)
{
    for (size_t i = 0; i < sizeof s_fields / sizeof s_fields [0]; i++) {
        proto_type_t *t = &s_types [s_fields [i].msg];
        assert (t->first_field < 0 || t->first_field + t->field_count == (int) i);
        if (t->first_field < 0)
            t->first_field = (int) i;
        t->field_count++;
    }
    if (sodium_init () < 0)
        abort ();
    pthread_atfork (NULL, NULL, s_pool_drop);
}

const proto_type_t *
proto_type_find (const char *type)
{
    pthread_once (&s_catalog_once, s_catalog_init);
    for (size_t i = 0; i < s_msg_count; i++)
        if (strcmp (s_types [i].type, type) == 0)
            return &s_types [i];
    return NULL;
}

size_t
proto_type_count (void)
{
    return s_msg_count;
}

const proto_type_t *
proto_type_at (size_t index)
{
    pthread_once (&s_catalog_once, s_catalog_init);
    return index < s_msg_count ? &s_types [index] : NULL;
}

unsigned
proto_principal_class (const char *principal)
{
    if (!principal)
        return 0;
    const char *colon = strchr (principal, ':');
    if (!colon || colon [1] == 0)
        return 0;
    size_t n = (size_t) (colon - principal);
    if (n == 3 && memcmp (principal, "svc", 3) == 0) return PROTO_P_SVC;
    if (n == 3 && memcmp (principal, "ops", 3) == 0) return PROTO_P_OPS;
    if (n == 3 && memcmp (principal, "ext", 3) == 0) return PROTO_P_EXT;
    if (n == 4 && memcmp (principal, "user", 4) == 0) return PROTO_P_USR;
    return 0;
}

/* --- time, ids, traces ---------------------------------------------------- */

int64_t
proto_now_us (void)
{
    struct timeval tv;
    gettimeofday (&tv, NULL);
    return (int64_t) tv.tv_sec * 1000000 + tv.tv_usec;
}

static const char s_crockford [] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/*  ULID: 48-bit ms timestamp + 80 random bits; within one ms the random
    part is incremented so ids stay strictly ordered in this process. */
void
proto_ulid (char out [PROTO_ID_LEN + 1])
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static uint64_t last_ms;
    static uint8_t last_rand [10];
    pthread_once (&s_catalog_once, s_catalog_init);

    uint64_t ms = (uint64_t) (proto_now_us () / 1000);
    uint8_t bytes [16];
    pthread_mutex_lock (&lock);
    if (ms <= last_ms) {
        ms = last_ms;
        for (int i = 9; i >= 0; i--)
            if (++last_rand [i] != 0)
                break;
    }
    else {
        s_random (last_rand, sizeof last_rand);
        last_rand [0] &= 0x7f;          /* room to increment */
        last_ms = ms;
    }
    for (int i = 0; i < 6; i++)
        bytes [i] = (uint8_t) (ms >> (40 - 8 * i));
    memcpy (bytes + 6, last_rand, 10);
    pthread_mutex_unlock (&lock);

    /* 128 bits -> 26 chars of 5 bits, last char first (the first char
       carries the top 3 bits) */
    unsigned __int128 v = 0;
    for (int i = 0; i < 16; i++)
        v = (v << 8) | bytes [i];
    for (int c = PROTO_ID_LEN - 1; c >= 0; c--, v >>= 5)
        out [c] = s_crockford [(unsigned) v & 31];
    out [PROTO_ID_LEN] = 0;
}

/*  A well-formed ULID: 26 Crockford chars, first one 0-7. */
static bool
s_ulid_valid (const char *s, size_t len)
{
    if (len != PROTO_ID_LEN || s [0] > '7')
        return false;
    for (size_t i = 0; i < len; i++)
        if (!strchr (s_crockford, s [i]) || s [i] == 0)
            return false;
    return true;
}

static void
s_hex (char *out, size_t bytes)
{
    uint8_t buf [16];
    s_random (buf, bytes);
    sodium_bin2hex (out, bytes * 2 + 1, buf, bytes);
}

void
proto_traceparent_new (char out [PROTO_TRACEPARENT_LEN + 1])
{
    pthread_once (&s_catalog_once, s_catalog_init);
    memcpy (out, "00-", 3);
    s_hex (out + 3, 16);
    out [35] = '-';
    s_hex (out + 36, 8);
    memcpy (out + 52, "-01", 4);
}

void
proto_traceparent_child (char out [PROTO_TRACEPARENT_LEN + 1], const char *parent)
{
    if (!parent || strlen (parent) != PROTO_TRACEPARENT_LEN) {
        proto_traceparent_new (out);
        return;
    }
    pthread_once (&s_catalog_once, s_catalog_init);
    memcpy (out, parent, PROTO_TRACEPARENT_LEN + 1);
    s_hex (out + 36, 8);
    out [52] = '-';
}

/*  W3C traceparent version 00: 00-<32 hex>-<16 hex>-<2 hex>, lower case,
    trace and span ids not all zero. */
static bool
s_traceparent_valid (const char *s, size_t len)
{
    if (len != PROTO_TRACEPARENT_LEN || memcmp (s, "00-", 3) || s [35] != '-' || s [52] != '-')
        return false;
    bool trace_nonzero = false, span_nonzero = false;
    for (size_t i = 3; i < len; i++) {
        if (i == 35 || i == 52)
            continue;
        if (!isdigit ((unsigned char) s [i]) && !(s [i] >= 'a' && s [i] <= 'f'))
            return false;
        if (s [i] != '0' && i < 35) trace_nonzero = true;
        if (s [i] != '0' && i > 35 && i < 52) span_nonzero = true;
    }
    return trace_nonzero && span_nonzero;
}

/* --- messages ------------------------------------------------------------- */

/*  snprintf (dst, cap, "%s", src) without the printf machinery: copy at
    most cap - 1 bytes and terminate. */
static void
s_copy (char *dst, size_t cap, const char *src)
{
    size_t n = strnlen (src, cap - 1);
    memcpy (dst, src, n);
    dst [n] = 0;
}

proto_msg_t *
proto_msg_new (proto_kind_t kind, const char *type)
{
    proto_msg_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->v = PROTO_VERSION;
    self->kind = kind;
    if (type) {
        s_copy (self->type, sizeof self->type, type);
        self->spec = proto_type_find (type);
    }
    proto_ulid (self->id);
    self->ts = proto_now_us ();
    return self;
}

void
proto_msg_destroy (proto_msg_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    proto_msg_t *self = *self_p;
    json_decref (self->body);
    json_decref (self->error);
    free (self);
    *self_p = NULL;
}

/*  Copy a bounded string field; required says whether absence is an error. */
static int
s_get_str (json_t *env, const char *key, char *dst, size_t cap, bool required,
           char *err, size_t err_len)
{
    json_t *v = json_object_get (env, key);
    if (!v) {
        if (required)
            snprintf (err, err_len, "envelope field '%s' missing", key);
        return required ? BUS_EINVAL : 0;
    }
    if (!json_is_string (v) || json_string_length (v) >= cap
        || json_string_length (v) != strlen (json_string_value (v))) {
        snprintf (err, err_len, "envelope field '%s' is not a string of at most %zu bytes", key, cap - 1);
        return BUS_EINVAL;
    }
    memcpy (dst, json_string_value (v), json_string_length (v) + 1);
    return 0;
}

/*  A type name: [a-z0-9._-], starting with a letter. */
static bool
s_type_name_valid (const char *s)
{
    if (!islower ((unsigned char) s [0]))
        return false;
    for (; *s; s++)
        if (!islower ((unsigned char) *s) && !isdigit ((unsigned char) *s)
            && *s != '.' && *s != '_' && *s != '-')
            return false;
    return true;
}

int
proto_msg_decode (proto_msg_t **out, const uint8_t *data, size_t len,
                  size_t max_frame, char *id_out, char *err, size_t err_len)
{
    char scratch [8];
    if (!err) {
        err = scratch;
        err_len = sizeof scratch;
    }
    *out = NULL;
    if (max_frame == 0)
        max_frame = PROTO_MAX_FRAME;
    if (len > max_frame) {
        snprintf (err, err_len, "frame of %zu bytes exceeds the %zu-byte cap", len, max_frame);
        return BUS_ETOOBIG;
    }
    json_t *env = NULL;
    proto_msg_t *self = NULL;
    int rc = proto_mpack_decode (&env, data, len, PROTO_MAX_DEPTH, err, err_len);
    if (rc)
        goto done;
    if (!json_is_object (env)) {
        snprintf (err, err_len, "envelope is not a map");
        rc = BUS_EINVAL;
        goto done;
    }
    self = calloc (1, sizeof *self);
    if (!self) {
        rc = BUS_ENOMEM;
        goto done;
    }
    /* the id first, so an error reply can name the request */
    rc = s_get_str (env, "id", self->id, sizeof self->id, true, err, err_len);
    if (rc == 0 && !s_ulid_valid (self->id, strlen (self->id))) {
        snprintf (err, err_len, "envelope field 'id' is not a ULID");
        rc = BUS_EINVAL;
    }
    if (rc)
        goto done;
    if (id_out)
        memcpy (id_out, self->id, PROTO_ID_LEN + 1);

    json_t *v = json_object_get (env, "v");
    if (!json_is_integer (v)) {
        snprintf (err, err_len, "envelope field 'v' missing or not an integer");
        rc = BUS_EINVAL;
        goto done;
    }
    if (json_integer_value (v) != PROTO_VERSION) {
        snprintf (err, err_len, "protocol version %lld not supported (this is %d)",
                  (long long) json_integer_value (v), PROTO_VERSION);
        rc = BUS_ESTATE;
        goto done;
    }
    self->v = PROTO_VERSION;
    if ((rc = s_get_str (env, "type", self->type, sizeof self->type, true, err, err_len)))
        goto done;
    if (!s_type_name_valid (self->type)) {
        snprintf (err, err_len, "envelope field 'type' has characters outside [a-z0-9._-]");
        rc = BUS_EINVAL;
        goto done;
    }
    json_t *ts = json_object_get (env, "ts");
    if (!json_is_integer (ts) || json_integer_value (ts) < 0) {
        snprintf (err, err_len, "envelope field 'ts' missing or not a non-negative integer");
        rc = BUS_EINVAL;
        goto done;
    }
    self->ts = json_integer_value (ts);
    if ((rc = s_get_str (env, "corr", self->corr, sizeof self->corr, false, err, err_len))
    ||  (rc = s_get_str (env, "pub", self->pub, sizeof self->pub, false, err, err_len)))
        goto done;
    if (self->corr [0] && !s_ulid_valid (self->corr, strlen (self->corr))) {
        snprintf (err, err_len, "envelope field 'corr' is not a ULID");
        rc = BUS_EINVAL;
        goto done;
    }
    /* W3C: an invalid traceparent (of any type or length) is ignored */
    json_t *tp = json_object_get (env, "traceparent");
    if (json_is_string (tp) && s_traceparent_valid (json_string_value (tp), json_string_length (tp)))
        memcpy (self->traceparent, json_string_value (tp), PROTO_TRACEPARENT_LEN + 1);

    json_t *ok = json_object_get (env, "ok");
    json_t *seq = json_object_get (env, "seq");
    if (ok) {
        if (!json_is_boolean (ok) || (json_is_true (ok) && !self->corr [0])) {
            snprintf (err, err_len, "reply needs boolean 'ok', and 'corr' when ok");
            rc = BUS_EINVAL;
            goto done;
        }
        self->kind = PROTO_KIND_REPLY;
        self->ok = json_is_true (ok);
    }
    else if (seq) {
        if (!json_is_integer (seq) || json_integer_value (seq) < 1 || !self->pub [0]) {
            snprintf (err, err_len, "event needs 'pub' and a positive integer 'seq'");
            rc = BUS_EINVAL;
            goto done;
        }
        self->kind = PROTO_KIND_EVT;
        self->seq = (uint64_t) json_integer_value (seq);
    }
    else
        self->kind = PROTO_KIND_REQ;

    json_t *body = json_object_get (env, "body");
    if (body && !json_is_object (body)) {
        snprintf (err, err_len, "envelope field 'body' is not a map");
        rc = BUS_EINVAL;
        goto done;
    }
    if (self->kind == PROTO_KIND_REPLY && !self->ok) {
        json_t *e = json_object_get (env, "error");
        if (!json_is_object (e) || !json_is_string (json_object_get (e, "code"))) {
            snprintf (err, err_len, "error reply needs 'error' {code, message}");
            rc = BUS_EINVAL;
            goto done;
        }
        self->error = json_incref (e);
    }
    self->body = body ? json_incref (body) : json_object ();
    self->spec = proto_type_find (self->type);
    /* 'from' is never taken from the wire */
done:
    json_decref (env);
    if (rc)
        proto_msg_destroy (&self);
    *out = self;
    return rc;
}

/*  Check one field's value against its declaration. */
static int
s_field_check (const s_field_t *f, json_t *v, char *err, size_t err_len)
{
    int64_t n;
    switch (f->type) {
        case F_STR:
            if (!json_is_string (v))
                goto type;
            n = (int64_t) json_string_length (v);
            if (n < f->min || n > f->max) {
                snprintf (err, err_len, "field '%s' length %lld outside [%lld, %lld]", f->name,
                          (long long) n, (long long) f->min, (long long) f->max);
                return BUS_EINVAL;
            }
            if (strlen (json_string_value (v)) != (size_t) n) {
                snprintf (err, err_len, "field '%s' holds a NUL byte", f->name);
                return BUS_EINVAL;
            }
            return 0;
        case F_INT:
        case F_UINT:
            if (!json_is_integer (v))
                goto type;
            n = json_integer_value (v);
            if (n < f->min || n > f->max || (f->type == F_UINT && n < 0)) {
                snprintf (err, err_len, "field '%s' value %lld outside [%lld, %lld]", f->name,
                          (long long) n, (long long) f->min, (long long) f->max);
                return BUS_EINVAL;
            }
            return 0;
        case F_NUM:
            return json_is_number (v) ? 0 : (snprintf (err, err_len, "field '%s' is not a number", f->name), BUS_EINVAL);
        case F_BOOL:
            if (!json_is_boolean (v))
                goto type;
            return 0;
        case F_MAP:
        case F_LIST:
            if (f->type == F_MAP ? !json_is_object (v) : !json_is_array (v))
                goto type;
            n = (int64_t) (f->type == F_MAP ? json_object_size (v) : json_array_size (v));
            if (n < f->min || n > f->max) {
                snprintf (err, err_len, "field '%s' has %lld entries, allowed [%lld, %lld]", f->name,
                          (long long) n, (long long) f->min, (long long) f->max);
                return BUS_EINVAL;
            }
            return 0;
        case F_ANYV:
            return 0;
    }
type:
    {
        static const char *names [] = { "string", "integer", "unsigned integer", "boolean",
                                        "map", "list", "number", "value" };
        snprintf (err, err_len, "field '%s' must be a %s", f->name, names [f->type]);
    }
    return BUS_EINVAL;
}

int
proto_msg_validate (proto_msg_t *self, char *err, size_t err_len)
{
    if (!self->spec) {
        snprintf (err, err_len, "unknown message type '%s'", self->type);
        return BUS_ENOTFOUND;
    }
    for (int i = 0; i < self->spec->field_count; i++) {
        const s_field_t *f = &s_fields [self->spec->first_field + i];
        json_t *v = json_object_get (self->body, f->name);
        if (!v || json_is_null (v)) {
            if (f->required) {
                snprintf (err, err_len, "field '%s' is required", f->name);
                return BUS_EINVAL;
            }
            continue;
        }
        int rc = s_field_check (f, v, err, err_len);
        if (rc)
            return rc;
    }
    return 0;
}

json_t *
proto_msg_to_json (proto_msg_t *self)
{
    json_t *env = json_pack ("{s:i, s:s, s:s, s:I}", "v", self->v, "type", self->type,
                             "id", self->id, "ts", (json_int_t) self->ts);
    if (!env)
        return NULL;
    if (self->from [0])        json_object_set_new (env, "from", json_string (self->from));
    if (self->corr [0])        json_object_set_new (env, "corr", json_string (self->corr));
    if (self->traceparent [0]) json_object_set_new (env, "traceparent", json_string (self->traceparent));
    if (self->kind == PROTO_KIND_REPLY) {
        json_object_set_new (env, "ok", json_boolean (self->ok));
        if (!self->ok && self->error)
            json_object_set (env, "error", self->error);
    }
    if (self->kind == PROTO_KIND_EVT) {
        json_object_set_new (env, "pub", json_string (self->pub));
        json_object_set_new (env, "seq", json_integer ((json_int_t) self->seq));
    }
    if (self->body)
        json_object_set (env, "body", self->body);
    return env;
}

/*  Pack the map key and, when value is not NULL, a string value. */
static bool
s_pack_str (msgpack_packer *pk, const char *key, const char *value)
{
    size_t klen = strlen (key), vlen = value ? strlen (value) : 0;
    return msgpack_pack_str (pk, klen) == 0 && msgpack_pack_str_body (pk, key, klen) == 0
        && (!value || (msgpack_pack_str (pk, vlen) == 0 && msgpack_pack_str_body (pk, value, vlen) == 0));
}

/*  Written straight from the struct, member for member in the order of
    proto_msg_to_json (so the same bytes as encoding that JSON), without
    building a JSON envelope per message. */
int
proto_msg_encode (proto_msg_t *self, uint8_t **out, size_t *out_len)
{
    bool reply = self->kind == PROTO_KIND_REPLY, event = self->kind == PROTO_KIND_EVT;
    bool error = reply && !self->ok && self->error;
    size_t members = 4 + (self->from [0] != 0) + (self->corr [0] != 0) + (self->traceparent [0] != 0)
                   + reply + error + 2 * event + (self->body != NULL);
    msgpack_sbuffer sbuf;
    msgpack_packer pk;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    bool ok = msgpack_pack_map (&pk, members) == 0
           && s_pack_str (&pk, "v", NULL) && msgpack_pack_int64 (&pk, self->v) == 0
           && s_pack_str (&pk, "type", self->type) && s_pack_str (&pk, "id", self->id)
           && s_pack_str (&pk, "ts", NULL) && msgpack_pack_int64 (&pk, self->ts) == 0
           && (!self->from [0] || s_pack_str (&pk, "from", self->from))
           && (!self->corr [0] || s_pack_str (&pk, "corr", self->corr))
           && (!self->traceparent [0] || s_pack_str (&pk, "traceparent", self->traceparent))
           && (!reply || (s_pack_str (&pk, "ok", NULL)
                          && (self->ok ? msgpack_pack_true (&pk) : msgpack_pack_false (&pk)) == 0))
           && (!event || (s_pack_str (&pk, "pub", self->pub) && s_pack_str (&pk, "seq", NULL)
                          && msgpack_pack_int64 (&pk, (int64_t) self->seq) == 0));
    int rc = ok ? 0 : BUS_ENOMEM;
    if (rc == 0 && error && !s_pack_str (&pk, "error", NULL))
        rc = BUS_ENOMEM;
    if (rc == 0 && error)
        rc = proto_mpack_pack (&pk, self->error);
    if (rc == 0 && self->body && !s_pack_str (&pk, "body", NULL))
        rc = BUS_ENOMEM;
    if (rc == 0 && self->body)
        rc = proto_mpack_pack (&pk, self->body);
    if (rc) {
        msgpack_sbuffer_destroy (&sbuf);
        *out = NULL;
        *out_len = 0;
        return rc;
    }
    *out_len = sbuf.size;
    *out = (uint8_t *) msgpack_sbuffer_release (&sbuf);
    return 0;
}

/*  A reply skeleton answering corr. */
static proto_msg_t *
s_reply (const char *type, const char *corr, const char *traceparent)
{
    proto_msg_t *rep = proto_msg_new (PROTO_KIND_REPLY, type);
    if (!rep)
        return NULL;
    s_copy (rep->corr, sizeof rep->corr, corr ? corr : "");
    if (traceparent)
        s_copy (rep->traceparent, sizeof rep->traceparent, traceparent);
    return rep;
}

proto_msg_t *
proto_reply_ok (proto_msg_t *req, json_t *body)
{
    proto_msg_t *rep = s_reply (req->type, req->id, req->traceparent);
    if (!rep) {
        json_decref (body);
        return NULL;
    }
    rep->ok = true;
    rep->body = body ? body : json_object ();
    return rep;
}

proto_msg_t *
proto_reply_error_id (const char *corr, const char *code, const char *message)
{
    proto_msg_t *rep = s_reply ("error", corr, NULL);
    if (!rep)
        return NULL;
    rep->ok = false;
    rep->error = json_pack ("{s:s, s:s}", "code", code, "message", message ? message : code);
    return rep;
}

proto_msg_t *
proto_reply_error (proto_msg_t *req, const char *code, const char *message)
{
    proto_msg_t *rep = proto_reply_error_id (req->id, code, message);
    if (rep) {
        s_copy (rep->type, sizeof rep->type, req->type);
        s_copy (rep->traceparent, sizeof rep->traceparent, req->traceparent);
    }
    return rep;
}
