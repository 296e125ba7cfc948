/*  proto_msg.c — envelope codec, catalogue and body validation. */
#include "proto_msg.h"
#include "proto_mpack.h"
#include "proto_error.h"

#include <assert.h>
#include <ctype.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdarg.h>
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
#define PROTO_SAFE(id)
#define PROTO_SENSITIVE(id, name)
#include "proto_catalog.def"
#undef PROTO_MSG
#undef PROTO_FIELD
#undef PROTO_SAFE
#undef PROTO_SENSITIVE
    s_msg_count
};

static const s_field_t s_fields [] = {
#define PROTO_MSG(id, type, kind, owner, senders)
#define PROTO_FIELD(id, name, type, presence, min, max) \
    { s_msg_##id, #name, type, presence, (int64_t) (min), (int64_t) (max) },
#define PROTO_SAFE(id)
#define PROTO_SENSITIVE(id, name)
#include "proto_catalog.def"
#undef PROTO_MSG
#undef PROTO_FIELD
#undef PROTO_SAFE
#undef PROTO_SENSITIVE
};

static proto_type_t s_types [] = {
#define PROTO_MSG(id, type, kind, owner, senders) { type, kind, #owner, senders, -1, 0, false },
#define PROTO_FIELD(id, name, type, presence, min, max)
#define PROTO_SAFE(id)
#define PROTO_SENSITIVE(id, name)
#include "proto_catalog.def"
#undef PROTO_MSG
#undef PROTO_FIELD
#undef PROTO_SAFE
#undef PROTO_SENSITIVE
};

/*  Requests without effects (6.2: not remembered for retries). */
static const int s_safe [] = {
#define PROTO_MSG(id, type, kind, owner, senders)
#define PROTO_FIELD(id, name, type, presence, min, max)
#define PROTO_SAFE(id) s_msg_##id,
#define PROTO_SENSITIVE(id, name)
#include "proto_catalog.def"
#undef PROTO_MSG
#undef PROTO_FIELD
#undef PROTO_SAFE
#undef PROTO_SENSITIVE
};

/*  Fields whose values the auditor never stores in the clear (PROTOCOL.md
    "Sensitive fields"). The empty first entry keeps the array non-empty
    while the catalogue marks none. */
typedef struct {
    int msg;
    const char *name;
} s_sensitive_t;

static const s_sensitive_t s_sensitive [] = {
    { -1, NULL },
#define PROTO_MSG(id, type, kind, owner, senders)
#define PROTO_FIELD(id, name, type, presence, min, max)
#define PROTO_SAFE(id)
#define PROTO_SENSITIVE(id, name) { s_msg_##id, #name },
#include "proto_catalog.def"
#undef PROTO_MSG
#undef PROTO_FIELD
#undef PROTO_SAFE
#undef PROTO_SENSITIVE
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
static const proto_type_t *s_by_name [s_msg_count];   /* sorted by type, for bsearch */

static int
s_type_cmp (const void *a, const void *b)
{
    return strcmp ((*(const proto_type_t *const *) a)->type, (*(const proto_type_t *const *) b)->type);
}

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
    for (size_t i = 0; i < sizeof s_safe / sizeof s_safe [0]; i++) {
        assert (s_types [s_safe [i]].kind == PROTO_KIND_REQ);
        s_types [s_safe [i]].safe = true;
    }
    for (size_t i = 0; i < s_msg_count; i++)
        s_by_name [i] = &s_types [i];
    qsort (s_by_name, s_msg_count, sizeof s_by_name [0], s_type_cmp);
    if (sodium_init () < 0)
        abort ();
    pthread_atfork (NULL, NULL, s_pool_drop);
}

const proto_type_t *
proto_type_find (const char *type)
{
    pthread_once (&s_catalog_once, s_catalog_init);
    proto_type_t key = { .type = type };
    const proto_type_t *kp = &key;
    const proto_type_t **found = bsearch (&kp, s_by_name, s_msg_count, sizeof s_by_name [0], s_type_cmp);
    return found ? *found : NULL;
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

/*  Crockford's base-32 alphabet in upper case: digits, and letters but
    I L O U; one flag a byte. */
static const bool s_ulid_char [256] = {
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1,
    ['9'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1,
    ['J'] = 1, ['K'] = 1, ['M'] = 1, ['N'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1,
    ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1
};

/*  A well-formed ULID: 26 Crockford chars, first one 0-7. */
static bool
s_ulid_valid (const char *s, size_t len)
{
    if (len != PROTO_ID_LEN || s [0] < '0' || s [0] > '7')
        return false;
    unsigned ok = 1;
    for (size_t i = 0; i < len; i++)
        ok &= s_ulid_char [(unsigned char) s [i]];
    return ok;
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

/*  A new message of type, whose catalogue entry spec is (NULL: none). */
static proto_msg_t *
s_msg_new (proto_kind_t kind, const char *type, const proto_type_t *spec)
{
    proto_msg_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->v = PROTO_VERSION;
    self->kind = kind;
    if (type) {
        s_copy (self->type, sizeof self->type, type);
        self->spec = spec;
    }
    proto_ulid (self->id);
    self->ts = proto_now_us ();
    return self;
}

proto_msg_t *
proto_msg_new (proto_kind_t kind, const char *type)
{
    return s_msg_new (kind, type, type ? proto_type_find (type) : NULL);
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

/* --- envelope decoding -----------------------------------------------------

   Two readers fill one table of the envelope's fields, and one function
   checks them, so both give the same answer and the same error text:

   - the fast reader walks the top-level map itself and builds JSON only for
     `body` and `error` (no allocation per envelope field);
   - the full reader decodes the whole frame into JSON first (proto_mpack).

   The fast reader handles the common, well-formed frame; at the first thing
   it does not expect (an unknown or duplicate key, a non-ASCII string, a
   value of an unexpected type, a decoding error) it gives up and the full
   reader runs, whose checks and messages are the reference. */

typedef enum { E_ABSENT, E_STR, E_INT, E_BOOL, E_OTHER } s_ekind_t;

typedef struct {
    s_ekind_t kind;
    const char *s;          /* E_STR: bytes (not NUL-terminated in the fast reader) */
    size_t len;
    int64_t i;              /* E_INT */
    bool b;                 /* E_BOOL */
    json_t *json;           /* body / error: the value (borrowed) */
} s_efield_t;

enum { K_V, K_TYPE, K_ID, K_TS, K_CORR, K_TRACE, K_PUB, K_OK, K_SEQ, K_BODY, K_ERROR, K_FROM, K_COUNT };
static const char *const s_ekeys [K_COUNT] = {
    "v", "type", "id", "ts", "corr", "traceparent", "pub", "ok", "seq", "body", "error", "from"
};

/*  Copy a bounded string field; required says whether absence is an error. */
static int
s_get_str (const s_efield_t *f, int key, char *dst, size_t cap, bool required,
           char *err, size_t err_len)
{
    f += key;
    if (f->kind == E_ABSENT) {
        if (required)
            snprintf (err, err_len, "envelope field '%s' missing", s_ekeys [key]);
        return required ? PROTO_EINVAL : 0;
    }
    if (f->kind != E_STR || f->len >= cap || memchr (f->s, 0, f->len)) {
        snprintf (err, err_len, "envelope field '%s' is not a string of at most %zu bytes",
                  s_ekeys [key], cap - 1);
        return PROTO_EINVAL;
    }
    memcpy (dst, f->s, f->len);
    dst [f->len] = 0;
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

/*  Check the captured fields and fill self (the reference rules). */
static int
s_env_check (proto_msg_t *self, const s_efield_t *f, char *id_out, char *err, size_t err_len)
{
    /* the id first, so an error reply can name the request */
    int rc = s_get_str (f, K_ID, self->id, sizeof self->id, true, err, err_len);
    if (rc == 0 && !s_ulid_valid (self->id, strlen (self->id))) {
        snprintf (err, err_len, "envelope field 'id' is not a ULID");
        rc = PROTO_EINVAL;
    }
    if (rc)
        return rc;
    if (id_out)
        memcpy (id_out, self->id, PROTO_ID_LEN + 1);
    if (f [K_V].kind != E_INT) {
        snprintf (err, err_len, "envelope field 'v' missing or not an integer");
        return PROTO_EINVAL;
    }
    if (f [K_V].i != PROTO_VERSION) {
        snprintf (err, err_len, "protocol version %lld not supported (this is %d)",
                  (long long) f [K_V].i, PROTO_VERSION);
        return PROTO_ESTATE;
    }
    self->v = PROTO_VERSION;
    if ((rc = s_get_str (f, K_TYPE, self->type, sizeof self->type, true, err, err_len)))
        return rc;
    if (!s_type_name_valid (self->type)) {
        snprintf (err, err_len, "envelope field 'type' has characters outside [a-z0-9._-]");
        return PROTO_EINVAL;
    }
    if (f [K_TS].kind != E_INT || f [K_TS].i < 0) {
        snprintf (err, err_len, "envelope field 'ts' missing or not a non-negative integer");
        return PROTO_EINVAL;
    }
    self->ts = f [K_TS].i;
    if ((rc = s_get_str (f, K_CORR, self->corr, sizeof self->corr, false, err, err_len))
    ||  (rc = s_get_str (f, K_PUB, self->pub, sizeof self->pub, false, err, err_len)))
        return rc;
    if (self->corr [0] && !s_ulid_valid (self->corr, strlen (self->corr))) {
        snprintf (err, err_len, "envelope field 'corr' is not a ULID");
        return PROTO_EINVAL;
    }
    /* W3C: an invalid traceparent (of any type or length) is ignored */
    const s_efield_t *tp = &f [K_TRACE];
    if (tp->kind == E_STR && tp->len == PROTO_TRACEPARENT_LEN && s_traceparent_valid (tp->s, tp->len)) {
        memcpy (self->traceparent, tp->s, PROTO_TRACEPARENT_LEN);
        self->traceparent [PROTO_TRACEPARENT_LEN] = 0;
    }
    if (f [K_OK].kind != E_ABSENT) {
        if (f [K_OK].kind != E_BOOL || (f [K_OK].b && !self->corr [0])) {
            snprintf (err, err_len, "reply needs boolean 'ok', and 'corr' when ok");
            return PROTO_EINVAL;
        }
        self->kind = PROTO_KIND_REPLY;
        self->ok = f [K_OK].b;
    }
    else if (f [K_SEQ].kind != E_ABSENT) {
        if (f [K_SEQ].kind != E_INT || f [K_SEQ].i < 1 || !self->pub [0]) {
            snprintf (err, err_len, "event needs 'pub' and a positive integer 'seq'");
            return PROTO_EINVAL;
        }
        self->kind = PROTO_KIND_EVT;
        self->seq = (uint64_t) f [K_SEQ].i;
    }
    else
        self->kind = PROTO_KIND_REQ;
    json_t *body = f [K_BODY].json;
    if (body && !json_is_object (body)) {
        snprintf (err, err_len, "envelope field 'body' is not a map");
        return PROTO_EINVAL;
    }
    if (self->kind == PROTO_KIND_REPLY && !self->ok) {
        json_t *e = f [K_ERROR].json;
        if (!json_is_object (e) || !json_is_string (json_object_get (e, "code"))) {
            snprintf (err, err_len, "error reply needs 'error' {code, message}");
            return PROTO_EINVAL;
        }
        self->error = json_incref (e);
    }
    self->body = body ? json_incref (body) : json_object ();
    self->spec = proto_type_find (self->type);
    /* 'from' is never taken from the wire */
    return 0;
}

/*  The full reader: the whole frame as JSON, then the fields from it. */
static int
s_decode_full (proto_msg_t *self, const uint8_t *data, size_t len, char *id_out,
               char *err, size_t err_len)
{
    json_t *env = NULL;
    int rc = proto_mpack_decode (&env, data, len, PROTO_MAX_DEPTH, err, err_len);
    if (rc == 0 && !json_is_object (env)) {
        snprintf (err, err_len, "envelope is not a map");
        rc = PROTO_EINVAL;
    }
    if (rc == 0) {
        s_efield_t f [K_COUNT] = { { 0 } };
        for (int k = 0; k < K_COUNT; k++) {
            json_t *v = json_object_get (env, s_ekeys [k]);
            f [k].json = v;
            if (!v)
                f [k].kind = E_ABSENT;
            else if (json_is_string (v)) {
                f [k].kind = E_STR;
                f [k].s = json_string_value (v);
                f [k].len = json_string_length (v);
            }
            else if (json_is_integer (v)) {
                f [k].kind = E_INT;
                f [k].i = json_integer_value (v);
            }
            else if (json_is_boolean (v)) {
                f [k].kind = E_BOOL;
                f [k].b = json_is_true (v);
            }
            else
                f [k].kind = E_OTHER;
        }
        rc = s_env_check (self, f, id_out, err, err_len);
    }
    json_decref (env);
    return rc;
}


/*  The fast reader; returns 0, or 1 to hand over to the full reader (the
    decoded body/error values it made are released). */
static int
s_decode_fast (proto_msg_t *self, const uint8_t *data, size_t len, char *id_out,
               char *err, size_t err_len, int *rc_out)
{
    const uint8_t *p = data, *end = data + len;
    s_efield_t f [K_COUNT] = { { 0 } };
    uint64_t count;
    int give_up = 1;
    bool body_nul = false;
    if (p >= end)
        return 1;
    if ((*p & 0xf0) == 0x80)
        count = *p++ & 0x0f;
    else if ((*p == 0xde || *p == 0xdf) && end - p >= (*p == 0xde ? 3 : 5)) {
        int w = *p == 0xde ? 2 : 4;
        count = proto_mpack_be (p + 1, w);
        p += 1 + w;
    }
    else
        return 1;
    if (count > K_COUNT)
        return 1;
    for (uint64_t n = 0; n < count; n++) {
        /* key: a short str naming a field we know, seen once */
        if (p >= end || (*p & 0xe0) != 0xa0)
            goto done;
        size_t klen = *p++ & 0x1f;
        if ((size_t) (end - p) < klen)
            goto done;
        int k = 0;
        while (k < K_COUNT && !(strlen (s_ekeys [k]) == klen && memcmp (s_ekeys [k], p, klen) == 0))
            k++;
        if (k == K_COUNT || f [k].kind != E_ABSENT)
            goto done;
        p += klen;
        if (p >= end)
            goto done;
        /* value */
        uint8_t t = *p;
        if (k == K_BODY || k == K_ERROR) {
            proto_mpack_reader_t r = { p, end, data, PROTO_MAX_DEPTH, NULL, 0, false };
            if (proto_mpack_read_value (&r, &f [k].json, 1))
                goto done;
            f [k].kind = E_OTHER;
            p = r.p;
            if (k == K_BODY)
                body_nul = r.nul;
        }
        else if (t <= 0x7f) {
            f [k].kind = E_INT;
            f [k].i = t;
            p++;
        }
        else if (t >= 0xcc && t <= 0xd3) {
            int w = 1 << ((t - 0xcc) & 3);
            if (end - p < 1 + w)
                goto done;
            uint64_t u = proto_mpack_be (p + 1, w);
            if (t <= 0xcf) {
                if (u > INT64_MAX)
                    goto done;
                f [k].i = (int64_t) u;
            }
            else
                f [k].i = w == 8 ? (int64_t) u : (int64_t) (u << (64 - 8 * w)) >> (64 - 8 * w);
            f [k].kind = E_INT;
            p += 1 + w;
        }
        else if (t == 0xc2 || t == 0xc3) {
            f [k].kind = E_BOOL;
            f [k].b = t == 0xc3;
            p++;
        }
        else if ((t & 0xe0) == 0xa0 || t == 0xd9) {
            size_t slen = t == 0xd9 ? (end - p >= 2 ? p [1] : SIZE_MAX) : (size_t) (t & 0x1f);
            p += t == 0xd9 ? 2 : 1;
            if (slen == SIZE_MAX || (size_t) (end - p) < slen)
                goto done;
            for (size_t i = 0; i < slen; i++)
                if (p [i] & 0x80)
                    goto done;          /* UTF-8 checks are the full reader's */
            f [k].kind = E_STR;
            f [k].s = (const char *) p;
            f [k].len = slen;
            p += slen;
        }
        else
            goto done;
    }
    if (p != end)
        goto done;
    give_up = 0;
    *rc_out = s_env_check (self, f, id_out, err, err_len);
    /* every string of the body was seen here: none holds a NUL */
    self->body_nul_free = *rc_out == 0 && !body_nul;
done:
    json_decref (f [K_BODY].json);
    json_decref (f [K_ERROR].json);
    return give_up;
}

int
proto_msg_peek_id (const uint8_t *data, size_t len, char id_out [PROTO_ID_LEN + 1])
{
    proto_mpack_reader_t r = { data, data + len, data, PROTO_MAX_DEPTH, NULL, 0, false };
    uint64_t count;
    id_out [0] = 0;
    if (len < 1)
        return PROTO_EINVAL;
    if ((*r.p & 0xf0) == 0x80)
        count = *r.p++ & 0x0f;
    else if ((*r.p == 0xde || *r.p == 0xdf) && len >= (*r.p == 0xde ? 3u : 5u)) {
        int w = *r.p == 0xde ? 2 : 4;
        count = proto_mpack_be (r.p + 1, w);
        r.p += 1 + w;
    }
    else
        return PROTO_EINVAL;
    for (uint64_t i = 0; i < count; i++) {
        /* "id" as a fixstr key, then a 26-byte fixstr ULID */
        if (r.end - r.p >= 3 + PROTO_ID_LEN + 1 && memcmp (r.p, "\xa2id", 3) == 0
            && r.p [3] == (0xa0 | PROTO_ID_LEN)) {
            const char *id = (const char *) r.p + 4;
            if (!s_ulid_valid (id, PROTO_ID_LEN))
                return PROTO_EINVAL;
            memcpy (id_out, id, PROTO_ID_LEN);
            id_out [PROTO_ID_LEN] = 0;
            return 0;
        }
        if (proto_mpack_skip (&r, 1) || proto_mpack_skip (&r, 1))
            return PROTO_EINVAL;
    }
    return PROTO_EINVAL;
}

/*  Both entry points: with fast set, try the fast reader first. */
static int
s_decode (proto_msg_t **out, const uint8_t *data, size_t len, size_t max_frame, char *id_out,
          char *err, size_t err_len, bool fast)
{
    char scratch [8];
    if (!err) {
        err = scratch;
        err_len = sizeof scratch;
    }
    *out = NULL;
    if (max_frame == 0)
        max_frame = PROTO_MAX_FRAME;
    if (id_out)
        id_out [0] = 0;
    proto_msg_t *self = NULL;
    int rc = 0;
    if (len > max_frame) {
        snprintf (err, err_len, "frame of %zu bytes exceeds the %zu-byte cap", len, max_frame);
        rc = PROTO_ETOOBIG;
        goto done;
    }
    self = calloc (1, sizeof *self);
    if (!self)
        return PROTO_ENOMEM;
    if (!fast || s_decode_fast (self, data, len, id_out, err, err_len, &rc)) {
        /* start clean: the fast reader may have filled some fields */
        memset (self, 0, sizeof *self);
        rc = s_decode_full (self, data, len, id_out, err, err_len);
    }
done:
    /* a frame refused before its envelope was checked (a value the decoder
       refuses anywhere in it, trailing bytes, over the cap): its id may
       still be readable, and then the refusal names the request */
    if (rc && id_out && !id_out [0] && proto_msg_peek_id (data, len, id_out) != 0)
        id_out [0] = 0;
    if (rc)
        proto_msg_destroy (&self);
    *out = self;
    return rc;
}

int
proto_msg_decode (proto_msg_t **out, const uint8_t *data, size_t len,
                  size_t max_frame, char *id_out, char *err, size_t err_len)
{
    return s_decode (out, data, len, max_frame, id_out, err, err_len, true);
}

int
proto_msg_decode_reference (proto_msg_t **out, const uint8_t *data, size_t len,
                            size_t max_frame, char *id_out, char *err, size_t err_len)
{
    return s_decode (out, data, len, max_frame, id_out, err, err_len, false);
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
                return PROTO_EINVAL;
            }
            if (strlen (json_string_value (v)) != (size_t) n) {
                snprintf (err, err_len, "field '%s' holds a NUL byte", f->name);
                return PROTO_EINVAL;
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
                return PROTO_EINVAL;
            }
            return 0;
        case F_NUM:
            return json_is_number (v) ? 0 : (snprintf (err, err_len, "field '%s' is not a number", f->name), PROTO_EINVAL);
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
                return PROTO_EINVAL;
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
    return PROTO_EINVAL;
}

/*  The path of a value inside a body ("writes[0].object"), for a
    refusal: len bytes used of buf (always NUL terminated; a path longer
    than the buffer is cut, never overrun). */
typedef struct {
    char buf [160];
    size_t len;
} s_path_t;

/*  Cut an incomplete UTF-8 sequence off the end of buf [0, *len) (left by
    a cut at a byte count), so that the path stays valid text. */
static void
s_utf8_trim (char *buf, size_t *len)
{
    size_t i = *len, back = 0;
    while (i > 0 && back < 4 && ((unsigned char) buf [i - 1] & 0xc0) == 0x80) {
        i--;
        back++;
    }
    if (i == 0 || ((unsigned char) buf [i - 1] & 0x80) == 0)
        return;                         /* ASCII (or nothing) before the tail */
    unsigned char lead = (unsigned char) buf [i - 1];
    size_t want = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
    if (back + 1 < want) {
        *len = i - 1;
        buf [*len] = 0;
    }
}

/*  Append to the path. */
static void
s_path_push (s_path_t *path, const char *fmt, ...) __attribute__((format (printf, 2, 3)));

static void
s_path_push (s_path_t *path, const char *fmt, ...)
{
    if (path->len < sizeof path->buf - 1) {
        va_list args;
        va_start (args, fmt);
        int n = vsnprintf (path->buf + path->len, sizeof path->buf - path->len, fmt, args);
        va_end (args);
        if (n > 0)
            path->len += (size_t) n;
        if (path->len > sizeof path->buf - 1) {
            path->len = sizeof path->buf - 1;
            s_utf8_trim (path->buf, &path->len);
        }
    }
}

/*  The way down to a value inside a body, one step a level: an object's
    member (its key) or an array's item (its index). The NUL walk writes
    it as it descends, without text (most bodies hold no NUL); a refusal
    makes it into the path it names. */
typedef struct {
    const char *key;                /* NULL: an array's item */
    size_t key_len, index;
} s_step_t;

typedef struct {
    s_step_t steps [PROTO_MPACK_MAX_DEPTH + 2];
} s_trail_t;

/*  The path of the first n steps of trail ("writes[0].object"); a key
    shows at most 64 bytes, a NUL in it as \0. */
static void
s_trail_path (const s_trail_t *trail, int n, s_path_t *path)
{
    path->buf [0] = 0;
    path->len = 0;
    for (int d = 0; d < n; d++) {
        const s_step_t *step = &trail->steps [d];
        if (!step->key) {
            s_path_push (path, "[%zu]", step->index);
            continue;
        }
        char shown [2 * 64 + 1];
        size_t len = 0;
        for (size_t i = 0; i < step->key_len && i < 64; i++) {
            if (step->key [i])
                shown [len++] = step->key [i];
            else {
                shown [len++] = '\\';
                shown [len++] = '0';
            }
        }
        shown [len] = 0;
        if (step->key_len > 64)
            s_utf8_trim (shown, &len);
        s_path_push (path, "%s%s", path->len ? "." : "", shown);
    }
}

/*  Refusal text: fmt with the path of trail's first n steps. */
static int
s_nul_refuse (const s_trail_t *trail, int n, const char *what, char *err, size_t err_len)
{
    s_path_t path;
    s_trail_path (trail, n, &path);
    snprintf (err, err_len, what, path.buf);
    return PROTO_EINVAL;
}

/*  Refuse a NUL byte in any string and any map key of v, at any depth
    (PROTOCOL.md 10): handlers and engines read strings as C strings, so
    "user:a\0b" would become "user:a" further on. Bin values arrive as
    base64url text and never hold one. Returns 0 or PROTO_EINVAL with err
    naming the path of the first offending string or key. */
static int
s_nul_walk (json_t *v, s_trail_t *trail, int depth, char *err, size_t err_len)
{
    if (depth > PROTO_MPACK_MAX_DEPTH)
        return s_nul_refuse (trail, depth, "field '%s' is nested too deep", err, err_len);
    if (json_is_string (v))
        return memchr (json_string_value (v), 0, json_string_length (v))
             ? s_nul_refuse (trail, depth, "field '%s' holds a NUL byte", err, err_len) : 0;
    s_step_t *step = &trail->steps [depth];
    if (json_is_array (v)) {
        size_t i;
        json_t *item;
        json_array_foreach (v, i, item) {
            if (!json_is_string (item) && !json_is_array (item) && !json_is_object (item))
                continue;
            *step = (s_step_t) { .index = i };
            int rc = s_nul_walk (item, trail, depth + 1, err, err_len);
            if (rc)
                return rc;
        }
        return 0;
    }
    if (json_is_object (v)) {
        const char *key;
        size_t key_len;
        json_t *item;
        json_object_keylen_foreach (v, key, key_len, item) {
            *step = (s_step_t) { .key = key, .key_len = key_len };
            int rc = 0;
            if (memchr (key, 0, key_len))
                rc = s_nul_refuse (trail, depth + 1, "key '%s' holds a NUL byte", err, err_len);
            else
            if (json_is_string (item) || json_is_array (item) || json_is_object (item))
                rc = s_nul_walk (item, trail, depth + 1, err, err_len);
            if (rc)
                return rc;
        }
    }
    return 0;
}

int
proto_msg_validate (proto_msg_t *self, char *err, size_t err_len)
{
    if (!self->spec) {
        snprintf (err, err_len, "unknown message type '%s'", self->type);
        return PROTO_ENOTFOUND;
    }
    for (int i = 0; i < self->spec->field_count; i++) {
        const s_field_t *f = &s_fields [self->spec->first_field + i];
        json_t *v = json_object_get (self->body, f->name);
        if (!v || json_is_null (v)) {
            if (f->required) {
                snprintf (err, err_len, "field '%s' is required", f->name);
                return PROTO_EINVAL;
            }
            /* nil means absent (PROTOCOL.md): handlers see it so */
            if (v)
                json_object_del (self->body, f->name);
            continue;
        }
        int rc = s_field_check (f, v, err, err_len);
        if (rc)
            return rc;
    }
    /* every string and key of the body, declared or not, opaque or not
       (unless the decoder saw them all: keys it refuses, strings it marks) */
    s_trail_t trail;
    return self->body && !self->body_nul_free ? s_nul_walk (self->body, &trail, 0, err, err_len) : 0;
}

const char *
proto_msg_unknown_field (const proto_msg_t *self)
{
    if (!self->spec || !json_is_object (self->body))
        return NULL;
    const char *key;
    json_t *value;
    json_object_foreach (self->body, key, value) {
        int i = 0;
        while (i < self->spec->field_count
           &&  strcmp (s_fields [self->spec->first_field + i].name, key))
            i++;
        if (i == self->spec->field_count)
            return key;
    }
    return NULL;
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

_Static_assert (PROTO_TYPE_MAX <= 255 && PROTO_PRINCIPAL_MAX <= 255 && PROTO_TRACEPARENT_LEN <= 255,
                "an envelope string fits a str8");

/*  Pack the map key (a literal under 32 bytes: a fixstr) and, when value
    is not NULL, a string value, in one write (the envelope's strings are
    under 256 bytes: fixstr or str8, as msgpack_pack_str writes them). */
static bool
s_pack_str (msgpack_packer *pk, const char *key, const char *value)
{
    uint8_t buf [1 + 31 + 2 + 255];
    size_t klen = strlen (key), vlen = value ? strlen (value) : 0, n = 0;
    if (klen > 31 || vlen > 255)
        return false;
    buf [n++] = (uint8_t) (0xa0 | klen);
    memcpy (buf + n, key, klen);
    n += klen;
    if (value) {
        if (vlen > 31)
            buf [n++] = 0xd9;
        buf [n++] = vlen > 31 ? (uint8_t) vlen : (uint8_t) (0xa0 | vlen);
        memcpy (buf + n, value, vlen);
        n += vlen;
    }
    return pk->callback (pk->data, (const char *) buf, n) == 0;
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
    proto_mpack_sbuffer_init (&sbuf);
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
    int rc = ok ? 0 : PROTO_ENOMEM;
    if (rc == 0 && error && !s_pack_str (&pk, "error", NULL))
        rc = PROTO_ENOMEM;
    if (rc == 0 && error)
        rc = proto_mpack_pack (&pk, self->error);
    if (rc == 0 && self->body && !s_pack_str (&pk, "body", NULL))
        rc = PROTO_ENOMEM;
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

/*  A reply skeleton answering corr; spec is type's catalogue entry. */
static proto_msg_t *
s_reply (const char *type, const proto_type_t *spec, const char *corr, const char *traceparent)
{
    proto_msg_t *rep = s_msg_new (PROTO_KIND_REPLY, type, spec);
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
    /* the request's entry, looked up when it was decoded or made */
    const proto_type_t *spec = req->spec && strcmp (req->spec->type, req->type) == 0 ? req->spec
                             : proto_type_find (req->type);
    proto_msg_t *rep = s_reply (req->type, spec, req->id, req->traceparent);
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
    proto_msg_t *rep = s_reply ("error", proto_type_find ("error"), corr, NULL);
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

bool
proto_field_sensitive (const char *type, const char *field)
{
    if (!type || !field)
        return false;
    for (size_t i = 1; i < sizeof s_sensitive / sizeof s_sensitive [0]; i++)
        if (strcmp (s_types [s_sensitive [i].msg].type, type) == 0 && strcmp (s_sensitive [i].name, field) == 0)
            return true;
    return false;
}
