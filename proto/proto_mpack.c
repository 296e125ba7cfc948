/*  proto_mpack.c — bounded MessagePack decoder and msgpack-c based encoder. */
#include "proto_mpack.h"
#include "proto_error.h"

#include <msgpack.h>
#include <stdbool.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

typedef proto_mpack_reader_t s_reader_t;

static int
s_fail (s_reader_t *r, int code, const char *why)
{
    if (r->err && r->err_len)
        snprintf (r->err, r->err_len, "%s at byte %zu", why, (size_t) (r->p - r->start));
    return code;
}

static size_t
s_left (s_reader_t *r)
{
    return (size_t) (r->end - r->p);
}


/*  Take n bytes of a length/count field. */
static int
s_take_be (s_reader_t *r, int n, uint64_t *v)
{
    if (s_left (r) < (size_t) n)
        return s_fail (r, PROTO_EINVAL, "truncated length");
    *v = proto_mpack_be (r->p, n);
    r->p += n;
    return 0;
}

static int s_value (s_reader_t *r, json_t **out, int depth);

/*  True when the n bytes at p are all ASCII (hence valid UTF-8); *nul set
    when one of them is 0. Both a word at a time. */
static bool
s_ascii (const uint8_t *p, size_t n, bool *nul)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t high = 0, zero = 0, word;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        memcpy (&word, p + i, 8);
        high |= word;
        zero |= (word - ones) & ~word & highs;      /* nonzero iff a byte is 0 */
    }
    for (; i < n; i++) {
        high |= p [i];
        zero |= p [i] == 0;
    }
    *nul = zero != 0;
    return (high & highs) == 0;
}

static int
s_string (s_reader_t *r, uint64_t len, json_t **out)
{
    if (len > s_left (r))
        return s_fail (r, PROTO_EINVAL, "string longer than frame");
    /* jansson checks UTF-8 byte by byte; ASCII needs no check */
    bool nul;
    *out = s_ascii (r->p, (size_t) len, &nul) ? json_stringn_nocheck ((const char *) r->p, (size_t) len)
                                              : json_stringn ((const char *) r->p, (size_t) len);
    if (!*out)
        return s_fail (r, PROTO_EINVAL, "string is not valid UTF-8");
    r->nul |= nul;
    r->p += len;
    return 0;
}

static int
s_binary (s_reader_t *r, uint64_t len, json_t **out)
{
    if (len > s_left (r))
        return s_fail (r, PROTO_EINVAL, "bin longer than frame");
    size_t b64_len = sodium_base64_ENCODED_LEN (len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *b64 = malloc (b64_len);
    if (!b64)
        return PROTO_ENOMEM;
    sodium_bin2base64 (b64, b64_len, r->p, (size_t) len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    *out = json_string (b64);
    free (b64);
    r->p += len;
    return *out ? 0 : PROTO_ENOMEM;
}

static int
s_array (s_reader_t *r, uint64_t count, json_t **out, int depth)
{
    if (depth >= r->max_depth)
        return s_fail (r, PROTO_EDEPTH, "nesting too deep");
    if (count > s_left (r))
        return s_fail (r, PROTO_EINVAL, "array count exceeds bytes left");
    json_t *arr = json_array ();
    if (!arr)
        return PROTO_ENOMEM;
    for (uint64_t i = 0; i < count; i++) {
        json_t *item = NULL;
        int rc = s_value (r, &item, depth + 1);
        if (rc) {
            json_decref (arr);
            return rc;
        }
        json_array_append_new (arr, item);
    }
    *out = arr;
    return 0;
}

static int
s_map (s_reader_t *r, uint64_t count, json_t **out, int depth)
{
    if (depth >= r->max_depth)
        return s_fail (r, PROTO_EDEPTH, "nesting too deep");
    if (count > s_left (r) / 2)
        return s_fail (r, PROTO_EINVAL, "map count exceeds bytes left");
    json_t *obj = json_object ();
    if (!obj)
        return PROTO_ENOMEM;
    int rc = 0;
    for (uint64_t i = 0; i < count && rc == 0; i++) {
        json_t *key = NULL, *val = NULL;
        /* a key must be a str: a bin would become a base64 text key */
        bool is_str = s_left (r) > 0 && ((*r->p & 0xe0) == 0xa0 || (*r->p >= 0xd9 && *r->p <= 0xdb));
        rc = s_value (r, &key, depth + 1);
        if (rc == 0 && (!is_str || !json_is_string (key)))
            rc = s_fail (r, PROTO_EINVAL, "map key is not a string");
        if (rc == 0 && (json_string_length (key) == 0
                        || memchr (json_string_value (key), 0, json_string_length (key))))
            rc = s_fail (r, PROTO_EINVAL, "map key is empty or holds NUL");
        if (rc == 0 && json_object_get (obj, json_string_value (key)))
            rc = s_fail (r, PROTO_EINVAL, "duplicate map key");
        if (rc == 0)
            rc = s_value (r, &val, depth + 1);
        if (rc == 0)        /* the key is valid UTF-8 (a string value) without NUL */
            json_object_set_new_nocheck (obj, json_string_value (key), val);
        json_decref (key);
    }
    if (rc) {
        json_decref (obj);
        return rc;
    }
    *out = obj;
    return 0;
}

/*  One value at r->p. */
static int
s_value (s_reader_t *r, json_t **out, int depth)
{
    if (s_left (r) < 1)
        return s_fail (r, PROTO_EINVAL, "truncated value");
    uint8_t t = *r->p++;
    uint64_t n;
    int rc;
    if (t <= 0x7f)
        return (*out = json_integer (t)) ? 0 : PROTO_ENOMEM;
    if (t >= 0xe0)
        return (*out = json_integer ((int8_t) t)) ? 0 : PROTO_ENOMEM;
    if ((t & 0xf0) == 0x80)
        return s_map (r, t & 0x0f, out, depth);
    if ((t & 0xf0) == 0x90)
        return s_array (r, t & 0x0f, out, depth);
    if ((t & 0xe0) == 0xa0)
        return s_string (r, t & 0x1f, out);
    switch (t) {
        case 0xc0: *out = json_null (); return 0;
        case 0xc2: *out = json_false (); return 0;
        case 0xc3: *out = json_true (); return 0;
        case 0xc4: case 0xc5: case 0xc6:
            if ((rc = s_take_be (r, 1 << (t - 0xc4), &n)))
                return rc;
            return s_binary (r, n, out);
        case 0xca: {
            if (s_left (r) < 4)
                return s_fail (r, PROTO_EINVAL, "truncated float32");
            uint32_t bits = (uint32_t) proto_mpack_be (r->p, 4);
            float f;
            memcpy (&f, &bits, 4);
            r->p += 4;
            return (*out = json_real (f)) ? 0 : s_fail (r, PROTO_EINVAL, "float is not finite");
        }
        case 0xcb: {
            if (s_left (r) < 8)
                return s_fail (r, PROTO_EINVAL, "truncated float64");
            uint64_t bits = proto_mpack_be (r->p, 8);
            double d;
            memcpy (&d, &bits, 8);
            r->p += 8;
            return (*out = json_real (d)) ? 0 : s_fail (r, PROTO_EINVAL, "float is not finite");
        }
        case 0xcc: case 0xcd: case 0xce: case 0xcf:
            if ((rc = s_take_be (r, 1 << (t - 0xcc), &n)))
                return rc;
            if (n > INT64_MAX)
                return s_fail (r, PROTO_EINVAL, "unsigned integer above INT64_MAX");
            return (*out = json_integer ((json_int_t) n)) ? 0 : PROTO_ENOMEM;
        case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
            int width = 1 << (t - 0xd0);
            if ((rc = s_take_be (r, width, &n)))
                return rc;
            int64_t v = width == 8 ? (int64_t) n
                      : (int64_t) (n << (64 - 8 * width)) >> (64 - 8 * width);
            return (*out = json_integer (v)) ? 0 : PROTO_ENOMEM;
        }
        case 0xd9: case 0xda: case 0xdb:
            if ((rc = s_take_be (r, 1 << (t - 0xd9), &n)))
                return rc;
            return s_string (r, n, out);
        case 0xdc: case 0xdd:
            if ((rc = s_take_be (r, 2 << (t - 0xdc), &n)))
                return rc;
            return s_array (r, n, out, depth);
        case 0xde: case 0xdf:
            if ((rc = s_take_be (r, 2 << (t - 0xde), &n)))
                return rc;
            return s_map (r, n, out, depth);
        default:
            r->p--;
            return s_fail (r, PROTO_EINVAL, "unsupported type (ext or reserved)");
    }
}

int
proto_mpack_skip (proto_mpack_reader_t *r, int depth)
{
    if (s_left (r) < 1)
        return s_fail (r, PROTO_EINVAL, "truncated value");
    uint8_t t = *r->p++;
    uint64_t n = 0, items = 0;
    int rc;
    if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3)
        return 0;
    if ((t & 0xf0) == 0x80 || (t & 0xf0) == 0x90)
        items = (uint64_t) (t & 0x0f) * ((t & 0xf0) == 0x80 ? 2 : 1);
    else if ((t & 0xe0) == 0xa0)
        n = t & 0x1f;
    else switch (t) {
        case 0xc4: case 0xc5: case 0xc6:
            if ((rc = s_take_be (r, 1 << (t - 0xc4), &n)))
                return rc;
            break;
        case 0xd9: case 0xda: case 0xdb:
            if ((rc = s_take_be (r, 1 << (t - 0xd9), &n)))
                return rc;
            break;
        case 0xca: n = 4; break;
        case 0xcb: n = 8; break;
        case 0xcc: case 0xcd: case 0xce: case 0xcf: n = 1u << (t - 0xcc); break;
        case 0xd0: case 0xd1: case 0xd2: case 0xd3: n = 1u << (t - 0xd0); break;
        case 0xdc: case 0xdd:
            if ((rc = s_take_be (r, 2 << (t - 0xdc), &items)))
                return rc;
            break;
        case 0xde: case 0xdf:
            if ((rc = s_take_be (r, 2 << (t - 0xde), &items)))
                return rc;
            if (items > UINT64_MAX / 2)
                return s_fail (r, PROTO_EINVAL, "map count exceeds bytes left");
            items *= 2;
            break;
        default:
            r->p--;
            return s_fail (r, PROTO_EINVAL, "unsupported type (ext or reserved)");
    }
    if (n > s_left (r))
        return s_fail (r, PROTO_EINVAL, "value longer than frame");
    r->p += n;
    if (items == 0)
        return 0;
    if (depth >= r->max_depth)
        return s_fail (r, PROTO_EDEPTH, "nesting too deep");
    if (items > s_left (r))
        return s_fail (r, PROTO_EINVAL, "container count exceeds bytes left");
    for (uint64_t i = 0; i < items; i++)
        if ((rc = proto_mpack_skip (r, depth + 1)))
            return rc;
    return 0;
}

int
proto_mpack_read_value (proto_mpack_reader_t *r, json_t **out, int depth)
{
    return s_value (r, out, depth);
}

int
proto_mpack_decode (json_t **out, const uint8_t *buf, size_t len,
                    int max_depth, char *err, size_t err_len)
{
    s_reader_t r = { buf, buf + len, buf,
                     max_depth > 0 ? max_depth : PROTO_MPACK_MAX_DEPTH, err, err_len, false };
    *out = NULL;
    if (err && err_len)
        err [0] = 0;
    json_t *value = NULL;
    int rc = s_value (&r, &value, 0);
    if (rc == 0 && r.p != r.end) {
        json_decref (value);
        return s_fail (&r, PROTO_EINVAL, "trailing bytes after value");
    }
    if (rc == 0)
        *out = value;
    return rc;
}

/*  Pack one jansson value. */
static int
s_pack (msgpack_packer *pk, json_t *v)
{
    switch (json_typeof (v)) {
        case JSON_OBJECT: {
            const char *key;
            json_t *item;
            if (msgpack_pack_map (pk, json_object_size (v)))
                return PROTO_ENOMEM;
            json_object_foreach (v, key, item) {
                size_t klen = strlen (key);
                if (msgpack_pack_str (pk, klen) || msgpack_pack_str_body (pk, key, klen))
                    return PROTO_ENOMEM;
                int rc = s_pack (pk, item);
                if (rc)
                    return rc;
            }
            return 0;
        }
        case JSON_ARRAY: {
            size_t i;
            json_t *item;
            if (msgpack_pack_array (pk, json_array_size (v)))
                return PROTO_ENOMEM;
            json_array_foreach (v, i, item) {
                int rc = s_pack (pk, item);
                if (rc)
                    return rc;
            }
            return 0;
        }
        case JSON_STRING: {
            size_t len = json_string_length (v);
            return msgpack_pack_str (pk, len) || msgpack_pack_str_body (pk, json_string_value (v), len)
                   ? PROTO_ENOMEM : 0;
        }
        case JSON_INTEGER: return msgpack_pack_int64 (pk, json_integer_value (v)) ? PROTO_ENOMEM : 0;
        case JSON_REAL:    return msgpack_pack_double (pk, json_real_value (v)) ? PROTO_ENOMEM : 0;
        case JSON_TRUE:    return msgpack_pack_true (pk) ? PROTO_ENOMEM : 0;
        case JSON_FALSE:   return msgpack_pack_false (pk) ? PROTO_ENOMEM : 0;
        case JSON_NULL:    return msgpack_pack_nil (pk) ? PROTO_ENOMEM : 0;
    }
    return PROTO_EINVAL;
}

int
proto_mpack_pack (struct msgpack_packer *pk, json_t *value)
{
    return s_pack (pk, value);
}

void
proto_mpack_sbuffer_init (msgpack_sbuffer *sbuf)
{
    msgpack_sbuffer_init (sbuf);
    sbuf->data = malloc (PROTO_MPACK_INITIAL);
    if (sbuf->data)
        sbuf->alloc = PROTO_MPACK_INITIAL;
}

int
proto_mpack_encode (uint8_t **out, size_t *out_len, json_t *value)
{
    msgpack_sbuffer sbuf;
    msgpack_packer pk;
    proto_mpack_sbuffer_init (&sbuf);
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    int rc = s_pack (&pk, value);
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
