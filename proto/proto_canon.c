/*  proto_canon.c — RFC 8785 canonical JSON from a jansson value. */
#include "proto_canon.h"
#include "proto_error.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *data;
    size_t len, cap;
    int error;
    char *err;
    size_t err_len;
} s_buf_t;

/*  Record the first error (and its reason, when asked for). */
static void
s_fail (s_buf_t *b, int code, const char *fmt, ...)
{
    if (b->error)
        return;
    b->error = code;
    if (b->err && b->err_len) {
        va_list ap;
        va_start (ap, fmt);
        vsnprintf (b->err, b->err_len, fmt, ap);
        va_end (ap);
    }
}

static void
s_put (s_buf_t *b, const char *s, size_t n)
{
    if (b->error)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *fresh = realloc (b->data, cap);
        if (!fresh) {
            s_fail (b, PROTO_ENOMEM, "out of memory");
            return;
        }
        b->data = fresh;
        b->cap = cap;
    }
    memcpy (b->data + b->len, s, n);
    b->len += n;
    b->data [b->len] = 0;
}

static void
s_puts (s_buf_t *b, const char *s)
{
    s_put (b, s, strlen (s));
}

/*  A string, escaped as JCS says (3.2.2.2). */
static void
s_string (s_buf_t *b, const char *s, size_t n)
{
    s_put (b, "\"", 1);
    size_t run = 0;                 /* bytes copied as they are, pending */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char) s [i];
        const char *esc = NULL;
        char hex [8];
        switch (c) {
            case '"':  esc = "\\\""; break;
            case '\\': esc = "\\\\"; break;
            case '\b': esc = "\\b"; break;
            case '\t': esc = "\\t"; break;
            case '\n': esc = "\\n"; break;
            case '\f': esc = "\\f"; break;
            case '\r': esc = "\\r"; break;
            default:
                if (c < 0x20) {
                    snprintf (hex, sizeof hex, "\\u%04x", c);
                    esc = hex;
                }
        }
        if (!esc) {
            run++;
            continue;
        }
        s_put (b, s + i - run, run);
        run = 0;
        s_puts (b, esc);
    }
    s_put (b, s + n - run, run);
    s_put (b, "\"", 1);
}

/*  ECMAScript Number::toString of a finite double (JCS 3.2.2.3): the
    shortest digits that read back to the same double, then placed as
    ECMAScript places them. */
static void
s_number (s_buf_t *b, double v)
{
    if (!isfinite (v)) {
        s_fail (b, PROTO_EINVAL, "NaN and infinities have no JSON form");
        return;
    }
    if (fabs (v) > (double) PROTO_CANON_INT_MAX) {
        /* past 2^53 a number is no longer exact, and past 2^63 its
           integer-looking form reads back nowhere (jansson refuses it) */
        s_fail (b, PROTO_EINVAL, "number %g is beyond +-(2^53 - 1), which JSON numbers hold exactly", v);
        return;
    }
    if (v == 0) {
        s_puts (b, "0");            /* -0 too */
        return;
    }
    char tmp [40], digits [24];
    int exp10 = 0;
    for (int p = 1; p <= 17; p++) {
        snprintf (tmp, sizeof tmp, "%.*e", p - 1, v);
        if (strtod (tmp, NULL) == v)
            break;
    }
    /* tmp: [-]d[.ddd]e[+-]xx */
    const char *t = tmp;
    char out [64];
    size_t o = 0, k = 0;
    if (*t == '-') {
        out [o++] = '-';
        t++;
    }
    for (; *t && *t != 'e'; t++)
        if (*t != '.')
            digits [k++] = *t;
    digits [k] = 0;
    while (k > 1 && digits [k - 1] == '0')
        digits [--k] = 0;
    exp10 = atoi (t + 1);
    int n = exp10 + 1;              /* v = 0.d1d2...dk x 10^n */
    if ((int) k <= n && n <= 21) {
        memcpy (out + o, digits, k);
        o += k;
        for (int i = 0; i < n - (int) k; i++)
            out [o++] = '0';
    }
    else if (0 < n && n <= 21) {
        memcpy (out + o, digits, (size_t) n);
        o += (size_t) n;
        out [o++] = '.';
        memcpy (out + o, digits + n, k - (size_t) n);
        o += k - (size_t) n;
    }
    else if (-6 < n && n <= 0) {
        out [o++] = '0';
        out [o++] = '.';
        for (int i = 0; i < -n; i++)
            out [o++] = '0';
        memcpy (out + o, digits, k);
        o += k;
    }
    else {
        out [o++] = digits [0];
        if (k > 1) {
            out [o++] = '.';
            memcpy (out + o, digits + 1, k - 1);
            o += k - 1;
        }
        o += (size_t) snprintf (out + o, sizeof out - o, "e%c%d", n - 1 < 0 ? '-' : '+', abs (n - 1));
    }
    s_put (b, out, o);
}

/*  The next code point of valid UTF-8 at *s (jansson keeps strings valid). */
static uint32_t
s_next_cp (const unsigned char **s)
{
    const unsigned char *p = *s;
    uint32_t c = *p++;
    int more = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc0 ? 1 : 0;
    if (more)
        c &= 0x3f >> more;
    while (more-- && *p)
        c = (c << 6) | (*p++ & 0x3f);
    *s = p;
    return c;
}

/*  Keys compared as UTF-16 code units (JCS 3.2.3): a code point past the
    BMP sorts by its high surrogate, which is below U+E000. */
static int
s_key_cmp (const void *a, const void *b)
{
    const unsigned char *x = *(const unsigned char *const *) a, *y = *(const unsigned char *const *) b;
    while (*x && *y) {
        uint32_t cx = s_next_cp (&x), cy = s_next_cp (&y);
        if (cx == cy)
            continue;
        uint32_t ux = cx < 0x10000 ? cx : 0xd800 + ((cx - 0x10000) >> 10);
        uint32_t uy = cy < 0x10000 ? cy : 0xd800 + ((cy - 0x10000) >> 10);
        if (ux != uy)
            return ux < uy ? -1 : 1;
        return cx < cy ? -1 : 1;    /* both past the BMP: code point order */
    }
    return *x ? 1 : *y ? -1 : 0;
}

static void
s_value (s_buf_t *b, const json_t *v, int depth)
{
    if (b->error)
        return;
    if (depth > PROTO_CANON_DEPTH) {
        s_fail (b, PROTO_EDEPTH, "nested deeper than %d levels", PROTO_CANON_DEPTH);
        return;
    }
    char tmp [32];
    switch (json_typeof (v)) {
        case JSON_NULL:  s_puts (b, "null"); break;
        case JSON_TRUE:  s_puts (b, "true"); break;
        case JSON_FALSE: s_puts (b, "false"); break;
        case JSON_INTEGER: {
            json_int_t i = json_integer_value (v);
            if (i > PROTO_CANON_INT_MAX || i < -PROTO_CANON_INT_MAX) {
                s_fail (b, PROTO_EINVAL, "integer %lld is beyond +-(2^53 - 1), which JSON numbers hold exactly",
                        (long long) i);
                return;
            }
            snprintf (tmp, sizeof tmp, "%lld", (long long) i);
            s_puts (b, tmp);
            break;
        }
        case JSON_REAL:
            s_number (b, json_real_value (v));
            break;
        case JSON_STRING:
            s_string (b, json_string_value (v), json_string_length (v));
            break;
        case JSON_ARRAY: {
            s_put (b, "[", 1);
            for (size_t i = 0; i < json_array_size (v); i++) {
                if (i)
                    s_put (b, ",", 1);
                s_value (b, json_array_get (v, i), depth + 1);
            }
            s_put (b, "]", 1);
            break;
        }
        case JSON_OBJECT: {
            size_t n = json_object_size (v), i = 0;
            const char **keys = n ? malloc (n * sizeof *keys) : NULL;
            if (n && !keys) {
                s_fail (b, PROTO_ENOMEM, "out of memory");
                return;
            }
            const char *key;
            json_t *member;
            json_object_foreach ((json_t *) v, key, member)
                keys [i++] = key;
            if (n > 1)
                qsort (keys, n, sizeof *keys, s_key_cmp);
            s_put (b, "{", 1);
            for (i = 0; i < n; i++) {
                if (i)
                    s_put (b, ",", 1);
                s_string (b, keys [i], strlen (keys [i]));
                s_put (b, ":", 1);
                s_value (b, json_object_get (v, keys [i]), depth + 1);
            }
            s_put (b, "}", 1);
            free (keys);
            break;
        }
    }
}

int
proto_canon (const json_t *value, char **out, size_t *len, char *err, size_t err_len)
{
    return proto_canon_nested (value, 0, out, len, err, err_len);
}

int
proto_canon_nested (const json_t *value, int depth, char **out, size_t *len, char *err, size_t err_len)
{
    s_buf_t b = { .err = err, .err_len = err_len };
    *out = NULL;
    *len = 0;
    if (!value) {
        s_fail (&b, PROTO_EINVAL, "no value");
        return b.error;
    }
    s_value (&b, value, depth);
    s_put (&b, "", 0);              /* an empty buffer still gets its NUL */
    if (b.error) {
        free (b.data);
        return b.error;
    }
    *out = b.data;
    *len = b.len;
    return 0;
}
