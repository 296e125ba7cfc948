/*  test_proto.c — unit tests for proto/: the hostile-input-safe MessagePack
    codec, the envelope, the catalogue and its body validation, ULIDs,
    traceparents and principal classes.

    Hostile frames are written out byte by byte here (not with msgpack-c),
    so that each test says exactly which bytes the decoder must refuse.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include <math.h>
#include <msgpack.h>

#include "bus_error.h"
#include "bus_log.h"
#include "bus_service.h"
#include "proto_mpack.h"
#include "proto_msg.h"
#include "../support/test_service.h"

#define BYTES(...) ((const uint8_t []) { __VA_ARGS__ }), sizeof ((const uint8_t []) { __VA_ARGS__ })

/* --- helpers ---------------------------------------------------------------- */

/*  Decode with the default depth; on failure check that *out stays NULL
    and that the error text names a byte offset. */
static int
s_decode (const uint8_t *buf, size_t len, json_t **out)
{
    char err [128] = "unset";
    int rc = proto_mpack_decode (out, buf, len, 0, err, sizeof err);
    if (rc) {
        assert_null (*out);
        if (rc == PROTO_EINVAL || rc == PROTO_EDEPTH)
            assert_non_null (strstr (err, "at byte"));
    }
    else
        assert_string_equal (err, "");
    return rc;
}

/*  Expect the bytes to be refused with code. */
static void
s_refused (int code, const uint8_t *buf, size_t len)
{
    json_t *v = NULL;
    assert_int_equal (s_decode (buf, len, &v), code);
}

/*  Encode value (borrowed) to a malloc'd buffer. */
static uint8_t *
s_encode (json_t *value, size_t *len)
{
    uint8_t *data = NULL;
    assert_int_equal (proto_mpack_encode (&data, len, value), 0);
    assert_non_null (data);
    return data;
}

/*  Decode bytes that must be valid and return the value. */
static json_t *
s_accepted (const uint8_t *buf, size_t len)
{
    json_t *v = NULL;
    assert_int_equal (s_decode (buf, len, &v), 0);
    assert_non_null (v);
    return v;
}

/*  Encode, decode, compare; then re-encode and compare the bytes. */
static void
s_roundtrip (json_t *value)
{
    size_t len, len2;
    uint8_t *data = s_encode (value, &len);
    json_t *back = s_accepted (data, len);
    assert_true (json_equal (value, back));
    uint8_t *again = s_encode (back, &len2);
    assert_int_equal (len, len2);
    assert_memory_equal (data, again, len);
    free (data);
    free (again);
    json_decref (back);
}

/*  A valid request envelope as JSON (new reference). */
static json_t *
s_envelope (const char *type, json_t *body)
{
    char id [PROTO_ID_LEN + 1];
    proto_ulid (id);
    return json_pack ("{s:i, s:s, s:s, s:I, s:o}", "v", PROTO_VERSION, "type", type, "id", id,
                      "ts", (json_int_t) proto_now_us (), "body", body ? body : json_object ());
}

/*  Encode envelope (stolen) and run proto_msg_decode on it. */
static int
s_msg_decode (json_t *envelope, proto_msg_t **msg, char *id_out)
{
    size_t len;
    uint8_t *data = s_encode (envelope, &len);
    json_decref (envelope);
    char err [256] = "";
    int rc = proto_msg_decode (msg, data, len, 0, id_out, err, sizeof err);
    free (data);
    if (rc) {
        assert_null (*msg);
        assert_true (strlen (err) > 0);
    }
    else
        assert_non_null (*msg);
    return rc;
}

/*  Decode an envelope that must be refused with code. */
static void
s_env_refused (int code, json_t *envelope)
{
    proto_msg_t *msg = NULL;
    assert_int_equal (s_msg_decode (envelope, &msg, NULL), code);
}

/*  Validate body (stolen) as a message of type; returns the result. */
static int
s_validate (const char *type, json_t *body)
{
    proto_msg_t *msg = proto_msg_new (PROTO_KIND_REQ, type);
    assert_non_null (msg);
    msg->body = body;
    char err [256] = "";
    int rc = proto_msg_validate (msg, err, sizeof err);
    if (rc)
        assert_true (strlen (err) > 0);
    proto_msg_destroy (&msg);
    assert_null (msg);
    return rc;
}

/*  A string of n copies of c (new reference). */
static json_t *
s_str_of (size_t n, char c)
{
    char *buf = malloc (n + 1);
    assert_non_null (buf);
    memset (buf, c, n);
    buf [n] = 0;
    json_t *s = json_stringn (buf, n);
    free (buf);
    return s;
}

/*  A list of n integers (new reference). */
static json_t *
s_list_of (size_t n)
{
    json_t *list = json_array ();
    for (size_t i = 0; i < n; i++)
        json_array_append_new (list, json_integer ((json_int_t) i));
    return list;
}

/* --- counting jansson's allocations ----------------------------------------- */

static size_t s_allocs;

static void *
s_count_malloc (size_t size)
{
    s_allocs++;
    return malloc (size);
}

/* --- MessagePack: round trips ----------------------------------------------- */

/*  Every JSON type, and each MessagePack width boundary, survives
    encode -> decode -> encode byte for byte. */
static void
test_mpack_roundtrip_types (void **state)
{
    static const json_int_t ints [] = {
        0, 1, 31, 127, 128, 255, 256, 65535, 65536, 4294967295LL, 4294967296LL, INT64_MAX,
        -1, -32, -33, -128, -129, -32768, -32769, -2147483648LL, -2147483649LL, INT64_MIN
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints [0]; i++) {
        json_t *v = json_integer (ints [i]);
        s_roundtrip (v);
        json_decref (v);
    }
    static const double reals [] = { 0.5, -1.25, 1e300, -2.5e-300, 3.141592653589793 };
    for (size_t i = 0; i < sizeof reals / sizeof reals [0]; i++) {
        json_t *v = json_real (reals [i]);
        s_roundtrip (v);
        json_decref (v);
    }
    static const size_t lens [] = { 0, 1, 31, 32, 255, 256, 65535, 65536, 70000 };
    for (size_t i = 0; i < sizeof lens / sizeof lens [0]; i++) {
        json_t *s = s_str_of (lens [i], 'x');
        s_roundtrip (s);
        json_decref (s);
        json_t *list = s_list_of (lens [i]);
        s_roundtrip (list);
        json_decref (list);
    }
    json_t *big = json_object ();
    for (int i = 0; i < 70000; i++) {
        char key [16];
        snprintf (key, sizeof key, "k%d", i);
        json_object_set_new (big, key, json_integer (i));
    }
    s_roundtrip (big);
    json_decref (big);

    json_t *all = json_pack ("{s:n, s:b, s:b, s:i, s:f, s:s, s:s, s:[], s:{}, s:[i, [s, {s:[n]}]], s:s#}",
                             "null", "true", 1, "false", 0, "int", -7, "real", 2.75,
                             "ascii", "hello", "utf8", "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x94\x92",
                             "empty_list", "empty_map", "nested", 1, "two", "deep", "nul", "a\0b", 3);
    assert_non_null (all);
    s_roundtrip (all);
    for (const char *t = "ntfiaso"; *t; t++) {   /* and each alone at the top */
        json_t *one = *t == 'n' ? json_null () : *t == 't' ? json_true () : *t == 'f' ? json_false ()
                    : *t == 'i' ? json_integer (5) : *t == 'a' ? json_array ()
                    : *t == 's' ? json_string ("s") : json_object ();
        s_roundtrip (one);
        json_decref (one);
    }
    json_decref (all);
}

/*  Forms the encoder never writes still decode to the right values:
    wider integers, float32, str8/16/32, bin, array16/32, map16/32. */
static void
test_mpack_decode_forms (void **state)
{
    struct { const uint8_t *buf; size_t len; json_int_t want; } ints [] = {
        { BYTES (0xcc, 0x05), 5 },
        { BYTES (0xcd, 0x01, 0x00), 256 },
        { BYTES (0xce, 0x00, 0x01, 0x00, 0x00), 65536 },
        { BYTES (0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), INT64_MAX },
        { BYTES (0xd0, 0xff), -1 },
        { BYTES (0xd0, 0x7f), 127 },
        { BYTES (0xd1, 0xff, 0xfe), -2 },
        { BYTES (0xd2, 0x80, 0x00, 0x00, 0x00), -2147483648LL },
        { BYTES (0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0), INT64_MIN },
        { BYTES (0xe0), -32 },
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints [0]; i++) {
        json_t *v = s_accepted (ints [i].buf, ints [i].len);
        assert_true (json_is_integer (v));
        assert_true (json_integer_value (v) == ints [i].want);
        json_decref (v);
    }
    json_t *v = s_accepted (BYTES (0xca, 0x3f, 0xc0, 0x00, 0x00));          /* float32 1.5 */
    assert_true (json_is_real (v) && json_real_value (v) == 1.5);
    json_decref (v);
    const char *strs [] = { "\xd9\x02hi", "\xda\x00\x02hi", "\xdb\x00\x00\x00\x02hi" };
    for (int i = 0; i < 3; i++) {
        v = s_accepted ((const uint8_t *) strs [i], (size_t) (i == 0 ? 4 : i == 1 ? 5 : 7));
        assert_string_equal (json_string_value (v), "hi");
        json_decref (v);
    }
    /* bin -> base64url without padding */
    v = s_accepted (BYTES (0xc4, 0x03, 0xfb, 0xff, 0xfe));
    assert_string_equal (json_string_value (v), "-__-");
    json_decref (v);
    v = s_accepted (BYTES (0xc5, 0x00, 0x02, 'h', 'i'));
    assert_string_equal (json_string_value (v), "aGk");
    json_decref (v);
    v = s_accepted (BYTES (0xc6, 0x00, 0x00, 0x00, 0x00));
    assert_string_equal (json_string_value (v), "");
    json_decref (v);
    v = s_accepted (BYTES (0xdc, 0x00, 0x02, 0xc0, 0xc3));
    assert_int_equal (json_array_size (v), 2);
    json_decref (v);
    v = s_accepted (BYTES (0xdd, 0x00, 0x00, 0x00, 0x01, 0xc2));
    assert_true (json_is_false (json_array_get (v, 0)));
    json_decref (v);
    v = s_accepted (BYTES (0xde, 0x00, 0x01, 0xa1, 'a', 0x01));
    assert_int_equal (json_integer_value (json_object_get (v, "a")), 1);
    json_decref (v);
    v = s_accepted (BYTES (0xdf, 0x00, 0x00, 0x00, 0x01, 0xa1, 'b', 0xc0));
    assert_true (json_is_null (json_object_get (v, "b")));
    json_decref (v);
}

/* --- MessagePack: hostile input --------------------------------------------- */

/*  A valid envelope cut at every byte offset is refused, never read past. */
static void
test_mpack_truncated (void **state)
{
    json_t *env = s_envelope ("authz.check",
                              json_pack ("{s:{s:s, s:s, s:s}, s:[{s:i}], s:f, s:I}",
                                         "tuple_key", "user", "user:anne", "relation", "reader",
                                         "object", "doc:1", "contextual_tuples", "x", 1,
                                         "score", 0.5, "big", (json_int_t) 1 << 40));
    size_t len;
    uint8_t *data = s_encode (env, &len);
    json_decref (env);
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *copy = malloc (cut ? cut : 1);        /* exact size: ASan sees any overread */
        memcpy (copy, data, cut);
        s_refused (PROTO_EINVAL, copy, cut);
        proto_msg_t *msg = NULL;
        assert_int_equal (proto_msg_decode (&msg, copy, cut, 0, NULL, NULL, 0), PROTO_EINVAL);
        assert_null (msg);
        free (copy);
    }
    json_decref (s_accepted (data, len));
    free (data);
}

/*  Declared lengths and counts larger than the bytes left fail before
    anything is allocated: the 5-byte `dd ff ff ff ff` frame costs nothing. */
static void
test_mpack_declared_sizes (void **state)
{
    struct { const uint8_t *buf; size_t len; } cases [] = {
        { BYTES (0xdd, 0xff, 0xff, 0xff, 0xff) },                 /* array32 of 4G */
        { BYTES (0xdf, 0xff, 0xff, 0xff, 0xff) },                 /* map32 of 4G */
        { BYTES (0xdb, 0xff, 0xff, 0xff, 0xff) },                 /* str32 of 4G */
        { BYTES (0xc6, 0xff, 0xff, 0xff, 0xff) },                 /* bin32 of 4G */
        { BYTES (0xdc, 0xff, 0xff, 0xc0) },                       /* array16 */
        { BYTES (0xde, 0xff, 0xff, 0xc0, 0xc0) },                 /* map16 */
        { BYTES (0xda, 0x00, 0x03, 'a', 'b') },                   /* str16, one short */
        { BYTES (0xc5, 0x00, 0x03, 'a', 'b') },                   /* bin16, one short */
        { BYTES (0xd9, 0x03, 'a', 'b') },                         /* str8 */
        { BYTES (0xc4, 0x03, 'a', 'b') },                         /* bin8 */
        { BYTES (0xa3, 'a', 'b') },                               /* fixstr */
        { BYTES (0x93, 0xc0, 0xc0) },                             /* fixarray */
        { BYTES (0x82, 0xa1, 'a', 0xc0) },                        /* fixmap: 2 entries need 4 bytes */
        { BYTES (0xdd, 0x00, 0x00, 0x00, 0x03, 0xc0, 0xc0) },
        { BYTES (0xdf, 0x00, 0x00, 0x00, 0x02, 0xa1, 'a', 0xc0) },
        { BYTES (0xdb, 0x00) },                                   /* truncated length */
        { BYTES (0xcb, 0x00, 0x00) },                             /* truncated float64 */
        { BYTES (0xca, 0x00) },                                   /* truncated float32 */
        { BYTES (0xcf, 0x00, 0x00, 0x00) },                       /* truncated uint64 */
        { BYTES (0xd3, 0x00) },                                   /* truncated int64 */
    };
    json_malloc_t old_malloc;
    json_free_t old_free;
    json_get_alloc_funcs (&old_malloc, &old_free);
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        s_allocs = 0;
        json_set_alloc_funcs (s_count_malloc, free);
        struct timespec t0, t1;
        clock_gettime (CLOCK_MONOTONIC, &t0);
        json_t *v = NULL;
        int rc = proto_mpack_decode (&v, cases [i].buf, cases [i].len, 0, NULL, 0);
        clock_gettime (CLOCK_MONOTONIC, &t1);
        json_set_alloc_funcs (old_malloc, old_free);
        assert_int_equal (rc, PROTO_EINVAL);
        assert_null (v);
        /* the top-level container is refused before it is made */
        if (i < 4)
            assert_int_equal (s_allocs, 0);
        assert_true ((t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec) < 50000000L);
    }
    /* the bound is exact: an array16 of 65535 nils fits in 65535 bytes */
    size_t len = 3 + 65535;
    uint8_t *buf = calloc (1, len);
    buf [0] = 0xdc;
    buf [1] = buf [2] = 0xff;
    memset (buf + 3, 0xc0, 65535);
    json_t *v = s_accepted (buf, len);
    assert_int_equal (json_array_size (v), 65535);
    json_decref (v);
    s_refused (PROTO_EINVAL, buf, len - 1);
    free (buf);
}

/*  10,000 nested arrays or maps stop at the depth limit with PROTO_EDEPTH;
    the limit is the number of containers allowed. */
static void
test_mpack_depth (void **state)
{
    enum { DEEP = 10000 };
    uint8_t *buf = malloc (DEEP * 3 + 1);
    memset (buf, 0x91, DEEP);
    buf [DEEP] = 0xc0;
    s_refused (PROTO_EDEPTH, buf, DEEP + 1);
    proto_msg_t *msg = NULL;
    assert_int_equal (proto_msg_decode (&msg, buf, DEEP + 1, 0, NULL, NULL, 0), PROTO_EDEPTH);
    for (int i = 0; i < DEEP; i++)
        memcpy (buf + 3 * i, "\x81\xa1k", 3);
    buf [3 * DEEP] = 0xc0;
    s_refused (PROTO_EDEPTH, buf, 3 * DEEP + 1);

    json_t *v = NULL;
    assert_int_equal (proto_mpack_decode (&v, BYTES (0x91, 0x91, 0x91, 0x91, 0xc0), 4, NULL, 0), 0);
    json_decref (v);
    assert_int_equal (proto_mpack_decode (&v, BYTES (0x91, 0x91, 0x91, 0x91, 0x91, 0xc0), 4, NULL, 0),
                      PROTO_EDEPTH);
    assert_null (v);
    memset (buf, 0x91, PROTO_MPACK_MAX_DEPTH);
    buf [PROTO_MPACK_MAX_DEPTH] = 0xc0;
    json_decref (s_accepted (buf, PROTO_MPACK_MAX_DEPTH + 1));
    free (buf);
}

/*  Map keys: strings, non-empty, NUL-free and unique. */
static void
test_mpack_map_keys (void **state)
{
    s_refused (PROTO_EINVAL, BYTES (0x82, 0xa1, 'a', 0x01, 0xa1, 'a', 0x02));     /* duplicate */
    s_refused (PROTO_EINVAL, BYTES (0x82, 0xa1, 'a', 0x01, 0xd9, 0x01, 'a', 0x02)); /* same key, str8 */
    s_refused (PROTO_EINVAL, BYTES (0x81, 0x01, 0x02));                            /* integer key */
    s_refused (PROTO_EINVAL, BYTES (0x81, 0xc0, 0x02));                            /* nil key */
    s_refused (PROTO_EINVAL, BYTES (0x81, 0x90, 0x02));                            /* array key */
    s_refused (PROTO_EINVAL, BYTES (0x81, 0x80, 0x02));                            /* map key */
    s_refused (PROTO_EINVAL, BYTES (0x81, 0xc4, 0x01, 'a', 0x02));                 /* bin key */
    s_refused (PROTO_EINVAL, BYTES (0x81, 0xa0, 0x02));                            /* empty key */
    s_refused (PROTO_EINVAL, BYTES (0x81, 0xa3, 'a', 0x00, 'b', 0x02));            /* NUL in key */
    json_t *v = s_accepted (BYTES (0x82, 0xa1, 'a', 0x01, 0xa1, 'b', 0x02));
    assert_int_equal (json_object_size (v), 2);
    json_decref (v);
}

/*  Strings must be valid UTF-8, as values and as keys. */
static void
test_mpack_utf8 (void **state)
{
    s_refused (PROTO_EINVAL, BYTES (0xa2, 0xc3, 0x28));                 /* bad continuation */
    s_refused (PROTO_EINVAL, BYTES (0xa2, 0xc0, 0x80));                 /* overlong NUL */
    s_refused (PROTO_EINVAL, BYTES (0xa3, 0xed, 0xa0, 0x80));           /* UTF-16 surrogate */
    s_refused (PROTO_EINVAL, BYTES (0xa1, 0xff));
    s_refused (PROTO_EINVAL, BYTES (0xa4, 0xf4, 0x90, 0x80, 0x80));     /* above U+10FFFF */
    s_refused (PROTO_EINVAL, BYTES (0xa1, 0xe2));                       /* cut sequence */
    s_refused (PROTO_EINVAL, BYTES (0x81, 0xa1, 0xff, 0x01));           /* as a key */
    s_refused (PROTO_EINVAL, BYTES (0x91, 0xd9, 0x01, 0x80));
    json_t *v = s_accepted (BYTES (0xa3, 0xe2, 0x82, 0xac));
    assert_string_equal (json_string_value (v), "\xe2\x82\xac");
    json_decref (v);
}

/*  Ext types, the never-used 0xc1, uint64 above INT64_MAX, non-finite
    floats, trailing bytes and empty input are refused. */
static void
test_mpack_refused_values (void **state)
{
    s_refused (PROTO_EINVAL, BYTES (0xd4, 0x01, 0x00));                 /* fixext 1 */
    s_refused (PROTO_EINVAL, BYTES (0xd5, 0x01, 0x00, 0x00));           /* fixext 2 */
    s_refused (PROTO_EINVAL, BYTES (0xd6, 0x01, 0, 0, 0, 0));           /* fixext 4 */
    s_refused (PROTO_EINVAL, BYTES (0xd7, 0xff, 0, 0, 0, 0, 0, 0, 0, 0)); /* timestamp ext */
    s_refused (PROTO_EINVAL, BYTES (0xd8, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0));
    s_refused (PROTO_EINVAL, BYTES (0xc7, 0x01, 0x01, 0x00));           /* ext 8 */
    s_refused (PROTO_EINVAL, BYTES (0xc8, 0x00, 0x01, 0x01, 0x00));     /* ext 16 */
    s_refused (PROTO_EINVAL, BYTES (0xc9, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00));
    s_refused (PROTO_EINVAL, BYTES (0x91, 0xd4, 0x01, 0x00));           /* nested */
    s_refused (PROTO_EINVAL, BYTES (0xc1));
    s_refused (PROTO_EINVAL, BYTES (0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0));
    s_refused (PROTO_EINVAL, BYTES (0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff));
    s_refused (PROTO_EINVAL, BYTES (0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0));  /* NaN */
    s_refused (PROTO_EINVAL, BYTES (0xcb, 0xff, 0xf0, 0, 0, 0, 0, 0, 0));  /* -inf */
    s_refused (PROTO_EINVAL, BYTES (0xca, 0x7f, 0xc0, 0x00, 0x00));        /* float32 NaN */
    s_refused (PROTO_EINVAL, BYTES (0xca, 0x7f, 0x80, 0x00, 0x00));        /* float32 +inf */
    s_refused (PROTO_EINVAL, BYTES (0x91, 0xcb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0));
    s_refused (PROTO_EINVAL, BYTES (0xc0, 0xc0));                          /* trailing */
    s_refused (PROTO_EINVAL, BYTES (0x80, 0x00));
}

/*  An empty buffer, and a valid envelope followed by one byte. */
static void
test_mpack_empty_and_trailing (void **state)
{
    json_t *v = NULL;
    assert_int_equal (proto_mpack_decode (&v, (const uint8_t *) "", 0, 0, NULL, 0), PROTO_EINVAL);
    assert_null (v);
    json_t *env = s_envelope ("health", NULL);
    size_t len;
    uint8_t *data = s_encode (env, &len);
    json_decref (env);
    uint8_t *longer = malloc (len + 1);
    memcpy (longer, data, len);
    longer [len] = 0xc0;
    s_refused (PROTO_EINVAL, longer, len + 1);
    proto_msg_t *msg = NULL;
    assert_int_equal (proto_msg_decode (&msg, longer, len + 1, 0, NULL, NULL, 0), PROTO_EINVAL);
    free (longer);
    free (data);
}

/* --- envelope ----------------------------------------------------------------- */

/*  A request encodes and decodes field for field; a reply and an event
    come back with their kinds. */
static void
test_envelope_roundtrip (void **state)
{
    proto_msg_t *req = proto_msg_new (PROTO_KIND_REQ, "authz.check");
    assert_non_null (req);
    assert_non_null (req->spec);
    proto_traceparent_new (req->traceparent);
    req->body = json_pack ("{s:{s:s, s:s, s:s}}", "tuple_key", "user", "user:anne",
                           "relation", "reader", "object", "doc:1");
    uint8_t *data = NULL;
    size_t len = 0;
    assert_int_equal (proto_msg_encode (req, &data, &len), 0);
    proto_msg_t *back = NULL;
    char id [PROTO_ID_LEN + 1] = "";
    assert_int_equal (proto_msg_decode (&back, data, len, 0, id, NULL, 0), 0);
    free (data);
    assert_int_equal (back->kind, PROTO_KIND_REQ);
    assert_int_equal (back->v, PROTO_VERSION);
    assert_string_equal (back->type, "authz.check");
    assert_ptr_equal (back->spec, proto_type_find ("authz.check"));
    assert_string_equal (back->id, req->id);
    assert_string_equal (id, req->id);
    assert_string_equal (back->traceparent, req->traceparent);
    assert_true (back->ts == req->ts);
    assert_true (json_equal (back->body, req->body));
    assert_int_equal (proto_msg_validate (back, NULL, 0), 0);

    /* reply ok, reply error, event */
    proto_msg_t *rep = proto_reply_ok (back, json_pack ("{s:b}", "allowed", 1));
    assert_int_equal (proto_msg_encode (rep, &data, &len), 0);
    proto_msg_t *rback = NULL;
    assert_int_equal (proto_msg_decode (&rback, data, len, 0, NULL, NULL, 0), 0);
    free (data);
    assert_int_equal (rback->kind, PROTO_KIND_REPLY);
    assert_true (rback->ok);
    assert_string_equal (rback->corr, req->id);
    assert_string_equal (rback->traceparent, req->traceparent);
    assert_true (json_is_true (json_object_get (rback->body, "allowed")));
    proto_msg_destroy (&rback);
    proto_msg_destroy (&rep);

    rep = proto_reply_error (back, PROTO_ERR_FORBIDDEN, "no");
    assert_int_equal (proto_msg_encode (rep, &data, &len), 0);
    assert_int_equal (proto_msg_decode (&rback, data, len, 0, NULL, NULL, 0), 0);
    free (data);
    assert_false (rback->ok);
    assert_string_equal (json_string_value (json_object_get (rback->error, "code")), "forbidden");
    assert_string_equal (json_string_value (json_object_get (rback->error, "message")), "no");
    proto_msg_destroy (&rback);
    proto_msg_destroy (&rep);

    proto_msg_t *evt = proto_msg_new (PROTO_KIND_EVT, "echo.seen");
    snprintf (evt->pub, sizeof evt->pub, "svc:authz");
    evt->seq = 42;
    assert_int_equal (proto_msg_encode (evt, &data, &len), 0);
    assert_int_equal (proto_msg_decode (&rback, data, len, 0, NULL, NULL, 0), 0);
    free (data);
    assert_int_equal (rback->kind, PROTO_KIND_EVT);
    assert_string_equal (rback->pub, "svc:authz");
    assert_true (rback->seq == 42);
    json_t *j = proto_msg_to_json (rback);
    assert_int_equal (json_integer_value (json_object_get (j, "seq")), 42);
    json_decref (j);
    proto_msg_destroy (&rback);
    proto_msg_destroy (&evt);
    proto_msg_destroy (&back);
    proto_msg_destroy (&req);
    assert_null (req);
    proto_msg_destroy (&req);           /* NULL is fine */
    proto_msg_destroy (NULL);
}

/*  Envelope field with key set to value (stolen; NULL deletes the key). */
static json_t *
s_env_with (const char *key, json_t *value)
{
    json_t *env = s_envelope ("health", NULL);
    if (value)
        json_object_set_new (env, key, value);
    else
        json_object_del (env, key);
    return env;
}

/*  Missing or ill-typed v/type/id/ts, bad ULIDs, a non-map envelope or
    body: each refused with PROTO_EINVAL. */
/*  proto_msg_encode writes the envelope from the struct; its bytes are
    those of encoding proto_msg_to_json's map, for strings of every length
    class (fixstr under 32 bytes, str8 to 255), the three kinds, errors. */
static void
test_envelope_encode_bytes (void **state)
{
    static const size_t lens [] = { 1, 31, 32, 64 };
    for (size_t i = 0; i < sizeof lens / sizeof lens [0]; i++)
        for (int kind = 0; kind < 4; kind++) {
            char type [PROTO_TYPE_MAX + 1], from [PROTO_PRINCIPAL_MAX + 1];
            memset (type, 'a', lens [i]);
            type [lens [i]] = 0;
            snprintf (from, sizeof from, "svc:%0*d", (int) (lens [i] * 2 > 120 ? 120 : lens [i] * 2), 7);
            proto_msg_t *msg = proto_msg_new (kind == 2 ? PROTO_KIND_EVT : kind ? PROTO_KIND_REPLY
                                                                               : PROTO_KIND_REQ, type);
            snprintf (msg->from, sizeof msg->from, "%s", from);
            proto_traceparent_new (msg->traceparent);
            msg->body = json_pack ("{s:s, s:i}", "k", type, "n", (int) lens [i] * 1000);
            if (kind == 1 || kind == 3) {
                proto_ulid (msg->corr);
                msg->ok = kind == 1;
                if (kind == 3)
                    msg->error = json_pack ("{s:s, s:s}", "code", "invalid", "message", from);
            }
            if (kind == 2) {
                snprintf (msg->pub, sizeof msg->pub, "%s", from);
                msg->seq = 300;
            }
            uint8_t *data = NULL, *ref = NULL;
            size_t len = 0, ref_len = 0;
            assert_int_equal (proto_msg_encode (msg, &data, &len), 0);
            json_t *j = proto_msg_to_json (msg);
            assert_int_equal (proto_mpack_encode (&ref, &ref_len, j), 0);
            assert_int_equal (len, ref_len);
            assert_memory_equal (data, ref, len);
            json_decref (j);
            free (data);
            free (ref);
            proto_msg_destroy (&msg);
        }
}

static void
test_envelope_fields (void **state)
{
    s_env_refused (PROTO_EINVAL, s_env_with ("v", NULL));
    s_env_refused (PROTO_EINVAL, s_env_with ("v", json_string ("1")));
    s_env_refused (PROTO_EINVAL, s_env_with ("v", json_real (1.0)));
    s_env_refused (PROTO_EINVAL, s_env_with ("type", NULL));
    s_env_refused (PROTO_EINVAL, s_env_with ("type", json_integer (3)));
    s_env_refused (PROTO_EINVAL, s_env_with ("type", json_string ("")));
    s_env_refused (PROTO_EINVAL, s_env_with ("type", json_string ("Health")));
    s_env_refused (PROTO_EINVAL, s_env_with ("type", json_string ("health check")));
    s_env_refused (PROTO_EINVAL, s_env_with ("type", json_stringn ("he\0lth", 6)));
    s_env_refused (PROTO_EINVAL, s_env_with ("type", s_str_of (PROTO_TYPE_MAX + 1, 'a')));
    s_env_refused (PROTO_EINVAL, s_env_with ("id", NULL));
    s_env_refused (PROTO_EINVAL, s_env_with ("id", json_integer (1)));
    s_env_refused (PROTO_EINVAL, s_env_with ("ts", NULL));
    s_env_refused (PROTO_EINVAL, s_env_with ("ts", json_integer (-1)));
    s_env_refused (PROTO_EINVAL, s_env_with ("ts", json_string ("now")));
    s_env_refused (PROTO_EINVAL, s_env_with ("body", json_array ()));
    s_env_refused (PROTO_EINVAL, s_env_with ("body", json_string ("{}")));
    s_env_refused (PROTO_EINVAL, s_env_with ("corr", json_string ("not-a-ulid")));
    s_env_refused (PROTO_EINVAL, s_env_with ("pub", json_integer (1)));
    static const char *bad_ids [] = {
        "01ARZ3NDEKTSV4RRFFQ69G5FA",        /* 25 */
        "01ARZ3NDEKTSV4RRFFQ69G5FAVV",      /* 27 */
        "01arz3ndektsv4rrffq69g5fav",       /* lower case */
        "01ARZ3NDEKTSV4RRFFQ69G5FAU",       /* U is not Crockford */
        "01ARZ3NDEKTSV4RRFFQ69G5FAI",
        "81ARZ3NDEKTSV4RRFFQ69G5FAV",       /* over 48 bits of time */
        "",
    };
    for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids [0]; i++)
        s_env_refused (PROTO_EINVAL, s_env_with ("id", json_string (bad_ids [i])));
    json_t *nul_id = json_stringn ("01ARZ3NDEKTSV4RRFFQ69G5F\0V", 26);
    s_env_refused (PROTO_EINVAL, s_env_with ("id", nul_id));

    /* not a map at all */
    size_t len;
    json_t *arr = json_pack ("[i, s]", 1, "health");
    uint8_t *data = s_encode (arr, &len);
    json_decref (arr);
    proto_msg_t *msg = NULL;
    assert_int_equal (proto_msg_decode (&msg, data, len, 0, NULL, NULL, 0), PROTO_EINVAL);
    free (data);

    /* replies and events need their fields */
    s_env_refused (PROTO_EINVAL, s_env_with ("ok", json_true ()));                 /* no corr */
    s_env_refused (PROTO_EINVAL, s_env_with ("ok", json_integer (1)));
    s_env_refused (PROTO_EINVAL, s_env_with ("ok", json_false ()));                /* no error */
    s_env_refused (PROTO_EINVAL, s_env_with ("seq", json_integer (1)));            /* no pub */
    json_t *evt = s_env_with ("pub", json_string ("svc:authz"));
    json_object_set_new (evt, "seq", json_integer (0));
    s_env_refused (PROTO_EINVAL, evt);
    json_t *err_rep = s_env_with ("ok", json_false ());
    json_object_set_new (err_rep, "error", json_pack ("{s:i}", "code", 3));
    s_env_refused (PROTO_EINVAL, err_rep);

    /* a missing body is an empty map */
    assert_int_equal (s_msg_decode (s_env_with ("body", NULL), &msg, NULL), 0);
    assert_true (json_is_object (msg->body) && json_object_size (msg->body) == 0);
    proto_msg_destroy (&msg);
    /* unknown types decode (the service answers unknown_type) */
    json_t *unknown = s_envelope ("no.such.type", NULL);
    assert_int_equal (s_msg_decode (unknown, &msg, NULL), 0);
    assert_null (msg->spec);
    char err [128];
    assert_int_equal (proto_msg_validate (msg, err, sizeof err), PROTO_ENOTFOUND);
    proto_msg_destroy (&msg);
}

/*  A known version other than ours is PROTO_ESTATE; the id is still handed
    back so that the error reply can be correlated. */
static void
test_envelope_version (void **state)
{
    json_t *env = s_env_with ("v", json_integer (2));
    char want [PROTO_ID_LEN + 1];
    snprintf (want, sizeof want, "%s", json_string_value (json_object_get (env, "id")));
    char id [PROTO_ID_LEN + 1] = "";
    proto_msg_t *msg = NULL;
    assert_int_equal (s_msg_decode (env, &msg, id), PROTO_ESTATE);
    assert_string_equal (id, want);
    s_env_refused (PROTO_ESTATE, s_env_with ("v", json_integer (0)));
    /* the id comes back for other failures after it too */
    env = s_env_with ("type", NULL);
    snprintf (want, sizeof want, "%s", json_string_value (json_object_get (env, "id")));
    id [0] = 0;
    assert_int_equal (s_msg_decode (env, &msg, id), PROTO_EINVAL);
    assert_string_equal (id, want);
}

/*  A request frame packed by hand: {v, type, id, ts, body: {key: <value>}}
    where pack_value writes the value (anything msgpack-c can write, also
    what our decoder refuses); body_first puts the body before the id.
    Returns a malloc'd frame with extra trailing bytes appended. */
typedef void (s_pack_fn) (msgpack_packer *pk);

static uint8_t *
s_frame_with (const char *type, const char *id, const char *key, s_pack_fn *pack_value,
              bool body_first, const char *trailing, size_t *len)
{
    msgpack_sbuffer sbuf;
    msgpack_packer pk;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
#define S_STR(s) (msgpack_pack_str (&pk, strlen (s)), msgpack_pack_str_body (&pk, s, strlen (s)))
    msgpack_pack_map (&pk, 5);
    if (body_first) {
        S_STR ("body");
        msgpack_pack_map (&pk, 1);
        S_STR (key);
        pack_value (&pk);
    }
    S_STR ("v");
    msgpack_pack_int (&pk, 1);
    S_STR ("type");
    S_STR (type);
    S_STR ("id");
    S_STR (id);
    S_STR ("ts");
    msgpack_pack_int64 (&pk, 1);
    if (!body_first) {
        S_STR ("body");
        msgpack_pack_map (&pk, 1);
        S_STR (key);
        pack_value (&pk);
    }
#undef S_STR
    if (trailing)
        msgpack_sbuffer_write (&sbuf, trailing, strlen (trailing));
    *len = sbuf.size;
    return (uint8_t *) msgpack_sbuffer_release (&sbuf);
}

static void s_pack_2p63 (msgpack_packer *pk) { msgpack_pack_uint64 (pk, (uint64_t) 1 << 63); }
static void s_pack_nan (msgpack_packer *pk) { msgpack_pack_double (pk, NAN); }
static void s_pack_one (msgpack_packer *pk) { msgpack_pack_int (pk, 1); }
static void s_pack_ext (msgpack_packer *pk) { msgpack_pack_ext (pk, 1, 5); msgpack_pack_ext_body (pk, "x", 1); }
static void s_pack_bad_utf8 (msgpack_packer *pk) { msgpack_pack_str (pk, 2); msgpack_pack_str_body (pk, "\xc3\x28", 2); }

/*  A frame whose id is readable but whose body does not decode: an integer
    above 2^63-1 (events.replay from_seq = 2^63), a NaN, trailing bytes, an
    ext value, bad UTF-8, the bad value before or after the id, over the
    size cap: refused, and the id handed back so that the refusal carries
    corr; by both readers. A frame whose id is not a ULID gets none. */
static void
test_envelope_id_of_undecodable (void **state)
{
    char id [PROTO_ID_LEN + 1];
    proto_ulid (id);
    struct {
        const char *key;
        s_pack_fn *pack;
        bool body_first;
        const char *trailing;
        int rc;
    } cases [] = {
        { "from_seq", s_pack_2p63, false, NULL, PROTO_EINVAL },
        { "from_seq", s_pack_2p63, true, NULL, PROTO_EINVAL },
        { "from_seq", s_pack_nan, false, NULL, PROTO_EINVAL },
        { "from_seq", s_pack_nan, true, NULL, PROTO_EINVAL },
        { "from_seq", s_pack_one, false, "\xc0", PROTO_EINVAL },
        { "from_seq", s_pack_one, true, "junk", PROTO_EINVAL },
        { "from_seq", s_pack_ext, false, NULL, PROTO_EINVAL },
        { "from_seq", s_pack_bad_utf8, true, NULL, PROTO_EINVAL },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        size_t len;
        uint8_t *data = s_frame_with ("events.replay", id, cases [i].key, cases [i].pack,
                                      cases [i].body_first, cases [i].trailing, &len);
        for (int reference = 0; reference < 2; reference++) {
            char got [PROTO_ID_LEN + 1] = "unset", err [256] = "";
            proto_msg_t *msg = NULL;
            int rc = reference ? proto_msg_decode_reference (&msg, data, len, 0, got, err, sizeof err)
                               : proto_msg_decode (&msg, data, len, 0, got, err, sizeof err);
            if (rc != cases [i].rc || strcmp (got, id))
                fail_msg ("case %zu (%s): rc %d, id '%s', err '%s'", i, reference ? "reference" : "fast",
                          rc, got, err);
            assert_null (msg);
        }
        /* over the cap: refused unread, the id still found */
        char got [PROTO_ID_LEN + 1] = "unset";
        proto_msg_t *msg = NULL;
        assert_int_equal (proto_msg_decode (&msg, data, len, len - 1, got, NULL, 0), PROTO_ETOOBIG);
        assert_string_equal (got, id);
        free (data);
    }
    /* no readable id: nothing handed back */
    size_t len;
    uint8_t *data = s_frame_with ("events.replay", "not-a-ulid", "from_seq", s_pack_2p63, false, NULL, &len);
    char got [PROTO_ID_LEN + 1] = "unset";
    proto_msg_t *msg = NULL;
    assert_int_equal (proto_msg_decode (&msg, data, len, 0, got, NULL, 0), PROTO_EINVAL);
    assert_string_equal (got, "");
    free (data);
    /* a valid frame of the same shape decodes */
    data = s_frame_with ("events.replay", id, "from_seq", s_pack_one, false, NULL, &len);
    assert_int_equal (proto_msg_decode (&msg, data, len, 0, got, NULL, 0), 0);
    assert_string_equal (got, id);
    proto_msg_destroy (&msg);
    free (data);
}

/*  Over max_frame is PROTO_ETOOBIG before any parsing; 0 means the default. */
static void
test_envelope_too_big (void **state)
{
    json_t *env = s_envelope ("echo", json_pack ("{s:o}", "data", s_str_of (3000, 'z')));
    size_t len;
    uint8_t *data = s_encode (env, &len);
    json_decref (env);
    proto_msg_t *msg = NULL;
    char err [128] = "";
    assert_int_equal (proto_msg_decode (&msg, data, len, 1024, NULL, err, sizeof err), PROTO_ETOOBIG);
    assert_null (msg);
    assert_non_null (strstr (err, "cap"));
    assert_int_equal (proto_msg_decode (&msg, data, len, len, NULL, err, sizeof err), 0);
    proto_msg_destroy (&msg);
    assert_int_equal (proto_msg_decode (&msg, data, len, len - 1, NULL, err, sizeof err), PROTO_ETOOBIG);
    free (data);
    /* the default cap: garbage past it is refused unread */
    size_t huge = PROTO_MAX_FRAME + 1;
    uint8_t *junk = malloc (huge);
    memset (junk, 0xc1, huge);
    assert_int_equal (proto_msg_decode (&msg, junk, huge, 0, NULL, NULL, 0), PROTO_ETOOBIG);
    assert_int_equal (proto_msg_decode (&msg, junk, PROTO_MAX_FRAME, 0, NULL, NULL, 0), PROTO_EINVAL);
    free (junk);
}

/*  W3C: an invalid traceparent is ignored, never a reason to refuse. */
static void
test_envelope_traceparent (void **state)
{
    static const char *bad [] = {
        "garbage",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",   /* zero trace */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",   /* zero span */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",   /* upper case */
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra-fields",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++) {
        proto_msg_t *msg = NULL;
        assert_int_equal (s_msg_decode (s_env_with ("traceparent", json_string (bad [i])), &msg, NULL), 0);
        assert_string_equal (msg->traceparent, "");
        proto_msg_destroy (&msg);
    }
    proto_msg_t *msg = NULL;
    assert_int_equal (s_msg_decode (s_env_with ("traceparent", json_integer (7)), &msg, NULL), 0);
    assert_string_equal (msg->traceparent, "");
    proto_msg_destroy (&msg);
    const char *good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    assert_int_equal (s_msg_decode (s_env_with ("traceparent", json_string (good)), &msg, NULL), 0);
    assert_string_equal (msg->traceparent, good);
    proto_msg_destroy (&msg);

    char tp [PROTO_TRACEPARENT_LEN + 1], child [PROTO_TRACEPARENT_LEN + 1];
    proto_traceparent_new (tp);
    assert_int_equal (strlen (tp), PROTO_TRACEPARENT_LEN);
    assert_int_equal (s_msg_decode (s_env_with ("traceparent", json_string (tp)), &msg, NULL), 0);
    assert_string_equal (msg->traceparent, tp);         /* what we make, we accept */
    proto_msg_destroy (&msg);
    proto_traceparent_child (child, tp);
    assert_memory_equal (child, tp, 36);                /* same trace id */
    assert_string_not_equal (child + 36, tp + 36);      /* new span */
    assert_string_equal (child + 52, "-01");
    proto_traceparent_child (child, "short");           /* bad parent: a new trace */
    assert_int_equal (strlen (child), PROTO_TRACEPARENT_LEN);
    assert_memory_not_equal (child, tp, 36);
}

/*  `from` on the wire is never believed. */
static void
test_envelope_from_ignored (void **state)
{
    proto_msg_t *msg = NULL;
    assert_int_equal (s_msg_decode (s_env_with ("from", json_string ("svc:orchestrator")), &msg, NULL), 0);
    assert_string_equal (msg->from, "");
    proto_msg_destroy (&msg);
    assert_int_equal (s_msg_decode (s_env_with ("from", json_integer (1)), &msg, NULL), 0);
    assert_string_equal (msg->from, "");
    proto_msg_destroy (&msg);
}

/* --- catalogue ------------------------------------------------------------------ */

/*  Every entry: findable by name, a valid name, an owner that is ANY or a
    known service section, senders only on requests, and its fields one
    contiguous run that no other entry shares. */
static void
test_catalog_entries (void **state)
{
    size_t n = proto_type_count ();
    assert_true (n > 20);
    assert_null (proto_type_at (n));
    assert_null (proto_type_find ("no.such.type"));
    assert_null (proto_type_find (""));
    int total = 0;
    char *owner_of = calloc (4096, 1);            /* field index -> taken */
    for (size_t i = 0; i < n; i++) {
        const proto_type_t *t = proto_type_at (i);
        assert_non_null (t);
        assert_ptr_equal (proto_type_find (t->type), t);
        assert_true (strlen (t->type) > 0 && strlen (t->type) <= PROTO_TYPE_MAX);
        assert_true (streq (t->owner, "ANY") || bus_service_section (t->owner) != NULL);
        if (t->kind == PROTO_KIND_REQ)
            assert_true (t->senders != 0 && (t->senders & ~0x0fu) == 0);
        else {
            assert_int_equal (t->kind, PROTO_KIND_EVT);
            assert_int_equal (t->senders, 0);
        }
        assert_true (t->field_count >= 0);
        if (t->field_count == 0)
            continue;
        assert_true (t->first_field >= 0 && t->first_field + t->field_count < 4096);
        for (int f = t->first_field; f < t->first_field + t->field_count; f++) {
            assert_int_equal (owner_of [f], 0);
            owner_of [f] = 1;
        }
        total += t->field_count;
    }
    for (int f = 0; f < total; f++)               /* no gaps: [0, total) all taken */
        assert_int_equal (owner_of [f], 1);
    free (owner_of);
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            assert_string_not_equal (proto_type_at (i)->type, proto_type_at (j)->type);
}

/*  events.replay: from_seq required, unsigned, >= 1; limit <= 1000. */
static void
test_validate_replay (void **state)
{
    assert_int_equal (s_validate ("events.replay", json_pack ("{s:i}", "from_seq", 1)), 0);
    assert_int_equal (s_validate ("events.replay", json_pack ("{s:i, s:i, s:i}", "from_seq", 5,
                                                              "to_seq", 9, "limit", 1000)), 0);
    assert_int_equal (s_validate ("events.replay", json_object ()), PROTO_EINVAL);
    assert_int_equal (s_validate ("events.replay", json_pack ("{s:n}", "from_seq")), PROTO_EINVAL);
    assert_int_equal (s_validate ("events.replay", json_pack ("{s:i}", "from_seq", 0)), PROTO_EINVAL);
    assert_int_equal (s_validate ("events.replay", json_pack ("{s:i}", "from_seq", -3)), PROTO_EINVAL);
    assert_int_equal (s_validate ("events.replay", json_pack ("{s:s}", "from_seq", "1")), PROTO_EINVAL);
    assert_int_equal (s_validate ("events.replay", json_pack ("{s:f}", "from_seq", 1.0)), PROTO_EINVAL);
    assert_int_equal (s_validate ("events.replay", json_pack ("{s:i, s:i}", "from_seq", 1, "limit", 1001)),
                      PROTO_EINVAL);
    assert_int_equal (s_validate ("events.replay", json_pack ("{s:i, s:i}", "from_seq", 1, "limit", 0)),
                      PROTO_EINVAL);
    assert_int_equal (s_validate ("events.replay", json_pack ("{s:i, s:i}", "from_seq", 1, "to_seq", 0)),
                      PROTO_EINVAL);
    assert_int_equal (s_validate ("events.replay", json_pack ("{s:i, s:n}", "from_seq", 1, "to_seq")), 0);
    assert_int_equal (s_validate ("events.replay", json_pack ("{s:I, s:s}", "from_seq", (json_int_t) INT64_MAX,
                                                              "unknown", "ignored")), 0);
}

/*  authz.check: tuple_key a map of 3..8, optional context/list/model_id
    with their bounds; strings may not hold NUL. */
static void
test_validate_authz_check (void **state)
{
    json_t *tk = json_pack ("{s:s, s:s, s:s}", "user", "user:anne", "relation", "reader", "object", "doc:1");
    assert_int_equal (s_validate ("authz.check", json_pack ("{s:O}", "tuple_key", tk)), 0);
    assert_int_equal (s_validate ("authz.check", json_pack ("{s:O, s:{}, s:o, s:s}", "tuple_key", tk,
                                                            "context", "contextual_tuples", s_list_of (100),
                                                            "model_id", "01ARZ3NDEKTSV4RRFFQ69G5FAV")), 0);
    assert_int_equal (s_validate ("authz.check", json_object ()), PROTO_EINVAL);
    assert_int_equal (s_validate ("authz.check", json_pack ("{s:{s:s, s:s}}", "tuple_key", "user", "u",
                                                            "object", "o")), PROTO_EINVAL);
    assert_int_equal (s_validate ("authz.check", json_pack ("{s:[s, s, s]}", "tuple_key", "a", "b", "c")),
                      PROTO_EINVAL);
    assert_int_equal (s_validate ("authz.check", json_pack ("{s:O, s:[]}", "tuple_key", tk, "context")),
                      PROTO_EINVAL);
    assert_int_equal (s_validate ("authz.check", json_pack ("{s:O, s:o}", "tuple_key", tk,
                                                            "contextual_tuples", s_list_of (101))), PROTO_EINVAL);
    assert_int_equal (s_validate ("authz.check", json_pack ("{s:O, s:s}", "tuple_key", tk, "model_id", "")),
                      PROTO_EINVAL);
    assert_int_equal (s_validate ("authz.check", json_pack ("{s:O, s:o}", "tuple_key", tk,
                                                            "model_id", s_str_of (65, 'm'))), PROTO_EINVAL);
    assert_int_equal (s_validate ("authz.check", json_pack ("{s:O, s:s#}", "tuple_key", tk,
                                                            "model_id", "ab\0cd", 5)), PROTO_EINVAL);
    json_decref (tk);
}

/*  The body member of msg (stolen body, of type) the catalogue does not
    declare, as a string ("" for none), in buf. */
static const char *
s_unknown (const char *type, json_t *body, char *buf, size_t size)
{
    proto_msg_t *msg = proto_msg_new (PROTO_KIND_REQ, type);
    assert_non_null (msg);
    msg->body = body;
    const char *field = proto_msg_unknown_field (msg);
    snprintf (buf, size, "%s", field? field: "");
    proto_msg_destroy (&msg);
    return buf;
}

/*  Undeclared body members are found (they are ignored by validation, so
    that newer clients work; the bus reports them). */
static void
test_unknown_field (void **state)
{
    char buf [64];
    json_t *tk = json_pack ("{s:s, s:s, s:s}", "user", "user:anne", "relation", "reader", "object", "doc:1");
    assert_string_equal (s_unknown ("authz.check", json_pack ("{s:O, s:{}}", "tuple_key", tk, "context"),
                                    buf, sizeof buf), "");
    json_t *body = json_pack ("{s:O, s:[]}", "tuple_key", tk, "contextual_tuple");
    assert_string_equal (s_unknown ("authz.check", json_incref (body), buf, sizeof buf), "contextual_tuple");
    assert_int_equal (s_validate ("authz.check", body), 0);     /* still valid */
    assert_string_equal (s_unknown ("authz.read", json_pack ("{s:O}", "tuple", tk), buf, sizeof buf), "");
    assert_string_equal (s_unknown ("authz.read", json_pack ("{s:O, s:i}", "tuple_key", tk, "page", 2),
                                    buf, sizeof buf), "page");
    assert_string_equal (s_unknown ("health", json_pack ("{s:b}", "verbose", 1), buf, sizeof buf), "verbose");
    assert_string_equal (s_unknown ("health", json_object (), buf, sizeof buf), "");
    assert_string_equal (s_unknown ("health", NULL, buf, sizeof buf), "");
    assert_string_equal (s_unknown ("no.such.type", json_pack ("{s:i}", "x", 1), buf, sizeof buf), "");
    json_decref (tk);
}

/*  Reads are safe (not remembered for retries); requests with effects and
    events are not. */
static void
test_safe_types (void **state)
{
    const char *safe [] = { "health", "stats", "authz.check", "authz.list_objects", "authz.read",
                            "authz.approvers", "audit.head" };
    const char *not_safe [] = { "echo", "authz.write", "authz.model.write", "authz.decide",
                                "authz.policy.write", "audit.append", "vault.lease", "run.start",
                                "authz.decided" };
    for (size_t i = 0; i < sizeof safe / sizeof safe [0]; i++)
        assert_true (proto_type_find (safe [i])->safe);
    for (size_t i = 0; i < sizeof not_safe / sizeof not_safe [0]; i++)
        assert_false (proto_type_find (not_safe [i])->safe);
}

/*  Validate body (stolen) as a message of type, with the error text in
    err (empty when valid); returns the result. */
static int
s_validate_err (const char *type, json_t *body, char *err, size_t err_len)
{
    proto_msg_t *msg = proto_msg_new (PROTO_KIND_REQ, type);
    assert_non_null (msg);
    msg->body = body;
    err [0] = 0;
    int rc = proto_msg_validate (msg, err, err_len);
    proto_msg_destroy (&msg);
    return rc;
}

/*  Expect body (stolen) of type to be refused, the error naming path. */
static void
s_nul_refused (const char *type, json_t *body, const char *path)
{
    char err [256], want [200];
    assert_non_null (body);
    assert_int_equal (s_validate_err (type, body, err, sizeof err), PROTO_EINVAL);
    snprintf (want, sizeof want, "'%s' holds a NUL byte", path);
    if (!strstr (err, want))
        fail_msg ("%s: error '%s' does not name '%s'", type, err, path);
}

/*  A string value with a NUL inside (new reference). */
static json_t *
s_nul_str (const char *before, const char *after)
{
    char buf [256];
    size_t a = strlen (before), b = strlen (after);
    memcpy (buf, before, a);
    buf [a] = 0;
    memcpy (buf + a + 1, after, b);
    return json_stringn (buf, a + 1 + b);
}

/*  A tuple key map whose member field holds value (stolen). */
static json_t *
s_tk_with (const char *field, json_t *value)
{
    json_t *tk = json_pack ("{s:s, s:s, s:s}", "user", "user:anne", "relation", "reader",
                            "object", "doc:1");
    json_object_set_new (tk, field, value);
    return tk;
}

/*  A NUL anywhere in a request body is refused, the error naming the
    field by its path: a top-level string, a map member, a list item, a
    map in a list in a map, a condition inside a contextual tuple, a map
    key; in declared fields, ANYV (opaque) fields and undeclared ones. The
    same strings without the NUL are accepted. */
static void
test_validate_nul_nested (void **state)
{
    /* depth 1: a declared STR field */
    s_nul_refused ("authz.check", json_pack ("{s:o, s:o}", "tuple_key", s_tk_with ("user", json_string ("user:a")),
                                             "model_id", s_nul_str ("01ARZ3ND", "x")), "model_id");
    /* depth 2: a member of a MAP field (the check bypass of issue 16) */
    s_nul_refused ("authz.check", json_pack ("{s:o}", "tuple_key",
                                             s_tk_with ("object", s_nul_str ("cost_center:engineering", "../other"))),
                   "tuple_key.object");
    s_nul_refused ("authz.read", json_pack ("{s:o}", "tuple_key", s_tk_with ("user", s_nul_str ("user:a", "b"))),
                   "tuple_key.user");
    s_nul_refused ("authz.expand", json_pack ("{s:{s:o, s:s}}", "tuple_key", "object", s_nul_str ("doc:1", "x"),
                                              "relation", "reader"), "tuple_key.object");
    s_nul_refused ("authz.list_users", json_pack ("{s:{s:s, s:o}, s:s, s:[{s:s}]}", "object", "type", "doc",
                                                  "id", s_nul_str ("1", "2"), "relation", "reader",
                                                  "user_filters", "type", "user"), "object.id");
    /* depth 3: a map in a LIST field */
    s_nul_refused ("authz.write", json_pack ("{s:[o]}", "writes", s_tk_with ("object", s_nul_str ("user:a", "b"))),
                   "writes[0].object");
    s_nul_refused ("authz.write", json_pack ("{s:[o, o]}", "deletes", s_tk_with ("object", json_string ("doc:2")),
                                             s_tk_with ("relation", s_nul_str ("reader", ""))),
                   "deletes[1].relation");
    s_nul_refused ("authz.check", json_pack ("{s:o, s:[o]}", "tuple_key", s_tk_with ("user", json_string ("user:b")),
                                             "contextual_tuples", s_tk_with ("user", s_nul_str ("user:a", "b"))),
                   "contextual_tuples[0].user");
    /* depth 4: a tuple's condition, checks[i].tuple_key */
    s_nul_refused ("authz.write", json_pack ("{s:[o]}", "writes",
                                             s_tk_with ("condition", json_pack ("{s:o}", "name",
                                                                                s_nul_str ("within", "")))),
                   "writes[0].condition.name");
    s_nul_refused ("authz.batch_check", json_pack ("{s:[{s:o, s:s}, {s:o, s:s}]}", "checks",
                                                   "tuple_key", s_tk_with ("user", json_string ("user:ok")),
                                                   "correlation_id", "a",
                                                   "tuple_key", s_tk_with ("object", s_nul_str ("doc:1", "x")),
                                                   "correlation_id", "b"),
                   "checks[1].tuple_key.object");
    s_nul_refused ("authz.list_objects", json_pack ("{s:s, s:s, s:s, s:[o]}", "user", "user:anne",
                                                    "relation", "reader", "type", "doc", "contextual_tuples",
                                                    s_tk_with ("condition", json_pack ("{s:s, s:{s:o}}", "name", "c",
                                                                                       "context", "k",
                                                                                       s_nul_str ("", "v")))),
                   "contextual_tuples[0].condition.context.k");
    /* depth 5 and 6: a condition inside a contextual tuple of a check */
    s_nul_refused ("authz.batch_check", json_pack ("{s:[{s:o, s:s, s:[o]}]}", "checks",
                                                   "tuple_key", s_tk_with ("user", json_string ("user:ok")),
                                                   "correlation_id", "a", "contextual_tuples",
                                                   s_tk_with ("condition", json_pack ("{s:o}", "name",
                                                                                      s_nul_str ("within", "x")))),
                   "checks[0].contextual_tuples[0].condition.name");
    s_nul_refused ("authz.check", json_pack ("{s:o, s:{s:[s, o]}}", "tuple_key", s_tk_with ("user", json_string ("u:a")),
                                             "context", "xs", "ok", s_nul_str ("x", "y")),
                   "context.xs[1]");
    /* a list of strings */
    s_nul_refused ("vault.lease", json_pack ("{s:s, s:s, s:s, s:[s, o]}", "run", "01ARZ3NDEKTSV4RRFFQ69G5FAV",
                                             "node", "n", "connection", "c", "scopes", "read",
                                             s_nul_str ("write", "")), "scopes[1]");
    /* ANYV fields are not exempt, nor are undeclared members */
    s_nul_refused ("echo", json_pack ("{s:o}", "data", s_nul_str ("a", "b")), "data");
    s_nul_refused ("echo", json_pack ("{s:{s:[o]}}", "data", "x", s_nul_str ("", "")), "data.x[0]");
    s_nul_refused ("authz.model.write", json_pack ("{s:{s:[{s:o}]}}", "model", "type_definitions", "type",
                                                   s_nul_str ("user", "x")), "model.type_definitions[0].type");
    s_nul_refused ("health", json_pack ("{s:o}", "whatever", s_nul_str ("a", "b")), "whatever");
    /* a map key with a NUL (jansson can hold one; the decoder refuses it
       on the wire, this is the validator's own guard) */
    json_t *ctx = json_object ();
    json_object_setn_new (ctx, "a\0b", 3, json_integer (1));
    char err [256];
    assert_int_equal (s_validate_err ("authz.check", json_pack ("{s:o, s:o}", "tuple_key", s_tk_with ("user", json_string ("u:a")),
                                                                "context", ctx), err, sizeof err), PROTO_EINVAL);
    assert_non_null (strstr (err, "key 'context.a\\0b' holds a NUL byte"));
    /* the same bodies without the NUL pass, non-ASCII text included */
    assert_int_equal (s_validate_err ("authz.batch_check", json_pack ("{s:[{s:o, s:s, s:[o], s:{s:[s]}}]}", "checks",
                                                                      "tuple_key", s_tk_with ("user", json_string ("user:ok")),
                                                                      "correlation_id", "a", "contextual_tuples",
                                                                      s_tk_with ("condition", json_pack ("{s:s}", "name", "w")),
                                                                      "context", "xs", "caf\xc3\xa9"),
                                      err, sizeof err), 0);
    assert_int_equal (s_validate_err ("echo", json_pack ("{s:{s:[s, i, n, b, f]}}", "data", "x", "\xe2\x82\xac", 1, 1, 2.5),
                                      err, sizeof err), 0);
}

/*  The walk is bounded: nesting deeper than the decoder allows is refused
    rather than recursed into; a path longer than the error buffer is cut
    at a character boundary, never overrun. */
static void
test_validate_nul_limits (void **state)
{
    char err [256];
    json_t *deep = json_string ("leaf");
    for (int i = 0; i < 40; i++) {
        json_t *outer = json_array ();
        json_array_append_new (outer, deep);
        deep = outer;
    }
    assert_int_equal (s_validate_err ("echo", json_pack ("{s:o}", "data", deep), err, sizeof err), PROTO_EINVAL);
    assert_non_null (strstr (err, "nested too deep"));
    /* ten levels of 64-byte keys of 2-byte characters: the path is cut */
    char key [129];
    for (int i = 0; i < 64; i++)
        memcpy (key + 2 * i, "\xc3\xa9", 2);
    key [128] = 0;
    json_t *v = s_nul_str ("x", "y");
    for (int i = 0; i < 10; i++) {
        json_t *outer = json_object ();
        json_object_set_new (outer, key, v);
        v = outer;
    }
    assert_int_equal (s_validate_err ("echo", json_pack ("{s:o}", "data", v), err, sizeof err), PROTO_EINVAL);
    assert_non_null (strstr (err, "holds a NUL byte"));
    assert_non_null (strstr (err, "field 'data."));
    json_t *check = json_string (err);            /* valid UTF-8, or jansson refuses it */
    assert_non_null (check);
    json_decref (check);
}

/*  The fast reader's NUL check (a word at a time, then the tail) finds a
    NUL at every position of a string of 1 to 20 bytes, non-ASCII ones
    too; the same strings without it pass. */
static void
test_validate_nul_each_position (void **state)
{
    for (size_t len = 1; len <= 20; len++)
        for (size_t at = 0; at <= len; at++) {
            char buf [32];
            memset (buf, 'x', sizeof buf);
            if (len > 2 && (at < len - 2 || at == len))
                memcpy (buf + len - 2, "\xc3\xa9", 2);      /* é: the non-ASCII path */
            bool nul = at < len;
            if (nul)
                buf [at] = 0;
            json_t *env = s_envelope ("authz.write", json_pack ("{s:[o]}", "writes",
                                                                s_tk_with ("object", json_stringn_nocheck (buf, len))));
            size_t n;
            uint8_t *data = s_encode (env, &n);
            json_decref (env);
            proto_msg_t *msg = NULL;
            char err [256] = "";
            assert_int_equal (proto_msg_decode (&msg, data, n, 0, NULL, err, sizeof err), 0);
            int rc = proto_msg_validate (msg, err, sizeof err);
            if (nul) {
                assert_int_equal (rc, PROTO_EINVAL);
                assert_non_null (strstr (err, "holds a NUL byte"));
            }
            else
                assert_true (rc == 0 || !strstr (err, "NUL"));
            proto_msg_destroy (&msg);
            free (data);
        }
}

/*  A frame decoded off the wire keeps a nested NUL (the decoder accepts
    it: NUL is valid UTF-8) and the validator refuses it, through both the
    fast and the reference reader. */
static void
test_validate_nul_decoded (void **state)
{
    json_t *env = s_envelope ("authz.write", json_pack ("{s:[o]}", "writes",
                                                        s_tk_with ("object", s_nul_str ("user:a", "b"))));
    size_t len;
    uint8_t *data = s_encode (env, &len);
    json_decref (env);
    for (int reference = 0; reference < 2; reference++) {
        proto_msg_t *msg = NULL;
        char err [256] = "";
        int rc = reference ? proto_msg_decode_reference (&msg, data, len, 0, NULL, err, sizeof err)
                           : proto_msg_decode (&msg, data, len, 0, NULL, err, sizeof err);
        assert_int_equal (rc, 0);
        assert_int_equal (proto_msg_validate (msg, err, sizeof err), PROTO_EINVAL);
        assert_non_null (strstr (err, "'writes[0].object' holds a NUL byte"));
        proto_msg_destroy (&msg);
    }
    free (data);
}

/*  vault.lease: ttl <= 600, run exactly 26 characters, 1..32 scopes. */
static void
test_validate_vault_lease (void **state)
{
    const char *run = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
#define LEASE(ttl, runv, scopes) \
    json_pack ("{s:s, s:s, s:s, s:o, s:I}", "run", runv, "node", "n1", "connection", "sheets", \
               "scopes", scopes, "ttl", (json_int_t) (ttl))
    assert_int_equal (s_validate ("vault.lease", LEASE (600, run, s_list_of (1))), 0);
    assert_int_equal (s_validate ("vault.lease", LEASE (1, run, s_list_of (32))), 0);
    assert_int_equal (s_validate ("vault.lease", LEASE (601, run, s_list_of (1))), PROTO_EINVAL);
    assert_int_equal (s_validate ("vault.lease", LEASE (0, run, s_list_of (1))), PROTO_EINVAL);
    assert_int_equal (s_validate ("vault.lease", LEASE (-600, run, s_list_of (1))), PROTO_EINVAL);
    assert_int_equal (s_validate ("vault.lease", LEASE (86400, run, s_list_of (1))), PROTO_EINVAL);
    assert_int_equal (s_validate ("vault.lease", LEASE (60, "short", s_list_of (1))), PROTO_EINVAL);
    assert_int_equal (s_validate ("vault.lease", LEASE (60, run, s_list_of (0))), PROTO_EINVAL);
    assert_int_equal (s_validate ("vault.lease", LEASE (60, run, s_list_of (33))), PROTO_EINVAL);
    assert_int_equal (s_validate ("vault.lease", LEASE (60, run, json_string ("read"))), PROTO_EINVAL);
#undef LEASE
    /* ttl is optional */
    assert_int_equal (s_validate ("vault.lease", json_pack ("{s:s, s:s, s:s, s:[s]}", "run", run, "node", "n",
                                                            "connection", "c", "scopes", "read")), 0);
    assert_int_equal (s_validate ("vault.lease", json_pack ("{s:s, s:s, s:[s]}", "run", run, "node", "n",
                                                            "scopes", "read")), PROTO_EINVAL);
    /* a type without fields accepts any body */
    assert_int_equal (s_validate ("health", json_pack ("{s:i}", "x", 1)), 0);
}

/* --- ids, principals ---------------------------------------------------------- */

/*  100,000 ULIDs: well formed, strictly increasing, hence unique, with
    the current time in their first 48 bits. */
static void
test_ulid_order (void **state)
{
    enum { N = 100000 };
    char (*ids) [PROTO_ID_LEN + 1] = malloc ((size_t) N * sizeof *ids);
    assert_non_null (ids);
    int64_t before_ms = proto_now_us () / 1000;
    for (int i = 0; i < N; i++)
        proto_ulid (ids [i]);
    int64_t after_ms = proto_now_us () / 1000;
    static const char crockford [] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    for (int i = 0; i < N; i++) {
        assert_int_equal (strlen (ids [i]), PROTO_ID_LEN);
        assert_true (ids [i][0] <= '7');
        assert_int_equal (strspn (ids [i], crockford), PROTO_ID_LEN);
        if (i)
            assert_true (strcmp (ids [i - 1], ids [i]) < 0);
    }
    /* decode the time of the first and last */
    for (int k = 0; k < 2; k++) {
        const char *id = ids [k ? N - 1 : 0];
        int64_t ms = 0;
        for (int c = 0; c < 10; c++)
            ms = ms * 32 + (int64_t) (strchr (crockford, id [c]) - crockford);
        assert_true (ms >= before_ms && ms <= after_ms);
    }
    /* and every one is accepted as an envelope id */
    proto_msg_t *msg = NULL;
    assert_int_equal (s_msg_decode (s_env_with ("id", json_string (ids [N / 2])), &msg, NULL), 0);
    assert_string_equal (msg->id, ids [N / 2]);
    proto_msg_destroy (&msg);
    free (ids);
}

/*  Principal classes by prefix; anything else is 0. */
static void
test_principal_class (void **state)
{
    assert_int_equal (proto_principal_class ("svc:authz"), PROTO_P_SVC);
    assert_int_equal (proto_principal_class ("ops:admin"), PROTO_P_OPS);
    assert_int_equal (proto_principal_class ("ext:erp-gateway"), PROTO_P_EXT);
    assert_int_equal (proto_principal_class ("user:alice"), PROTO_P_USR);
    static const char *zero [] = { "usr:alice", "svc:", "svc", "", ":x", "SVC:x", "svcx:y", "users:a",
                                   "sv:a", "ext" };
    for (size_t i = 0; i < sizeof zero / sizeof zero [0]; i++)
        assert_int_equal (proto_principal_class (zero [i]), 0);
    assert_int_equal (proto_principal_class (NULL), 0);
}

int
main (void)
{
    bus_log_init ("test_proto", "error");
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_mpack_roundtrip_types),
        cmocka_unit_test (test_mpack_decode_forms),
        cmocka_unit_test (test_mpack_truncated),
        cmocka_unit_test (test_mpack_declared_sizes),
        cmocka_unit_test (test_mpack_depth),
        cmocka_unit_test (test_mpack_map_keys),
        cmocka_unit_test (test_mpack_utf8),
        cmocka_unit_test (test_mpack_refused_values),
        cmocka_unit_test (test_mpack_empty_and_trailing),
        cmocka_unit_test (test_envelope_roundtrip),
        cmocka_unit_test (test_envelope_encode_bytes),
        cmocka_unit_test (test_envelope_fields),
        cmocka_unit_test (test_envelope_version),
        cmocka_unit_test (test_envelope_too_big),
        cmocka_unit_test (test_envelope_id_of_undecodable),
        cmocka_unit_test (test_envelope_traceparent),
        cmocka_unit_test (test_envelope_from_ignored),
        cmocka_unit_test (test_catalog_entries),
        cmocka_unit_test (test_unknown_field),
        cmocka_unit_test (test_safe_types),
        cmocka_unit_test (test_validate_replay),
        cmocka_unit_test (test_validate_authz_check),
        cmocka_unit_test (test_validate_vault_lease),
        cmocka_unit_test (test_validate_nul_nested),
        cmocka_unit_test (test_validate_nul_limits),
        cmocka_unit_test (test_validate_nul_decoded),
        cmocka_unit_test (test_validate_nul_each_position),
        cmocka_unit_test (test_ulid_order),
        cmocka_unit_test (test_principal_class),
    };
    return test_service_summary ((int) (sizeof tests / sizeof tests [0]),
                                 cmocka_run_group_tests (tests, NULL, NULL));
}
