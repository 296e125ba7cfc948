/*  bus_yaml.c — YAML (1.1, via libyaml) to jansson. See bus_yaml.h. */
#include "bus_yaml.h"
#include "bus_error.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/*  One open collection: the container, and for a mapping the pending key
    (NULL while a key is expected). */
typedef struct {
    json_t *value;
    char *key;
} s_frame_t;

/*  True when s is one of the space-separated words in list. */
static bool
s_is_word (const char *s, const char *list)
{
    size_t n = strlen (s);
    const char *p = list;
    while (*p) {
        const char *e = strchr (p, ' ');
        size_t m = e ? (size_t) (e - p) : strlen (p);
        if (m == n && memcmp (p, s, n) == 0)
            return true;
        p += m;
        while (*p == ' ')
            p++;
    }
    return false;
}

/*  Parse s as a YAML integer (decimal, 0x, 0o, optional sign). True and
    *v on success; false if s is not an integer or overflows int64. */
static bool
s_parse_int (const char *s, json_int_t *v)
{
    const char *p = s;
    int base = 10;
    if (*p == '+' || *p == '-')
        p++;
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X'))
        base = 16, p += 2;
    else
    if (p[0] == '0' && p[1] == 'o')
        base = 8, p += 2;
    if (!*p)
        return false;
    for (const char *q = p; *q; q++) {
        bool ok = base == 16 ? (q[0] >= '0' && q[0] <= '9') || (q[0] >= 'a' && q[0] <= 'f') || (q[0] >= 'A' && q[0] <= 'F')
                : base == 8 ? q[0] >= '0' && q[0] <= '7'
                : q[0] >= '0' && q[0] <= '9';
        if (!ok)
            return false;
    }
    errno = 0;
    char *end = NULL;
    long long x = strtoll (p, &end, base);
    if (errno || *end)
        return false;
    *v = s[0] == '-' ? -x : x;
    return true;
}

/*  True if s is a YAML float: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
static bool
s_is_float (const char *s)
{
    const char *p = s;
    if (*p == '+' || *p == '-')
        p++;
    size_t digits = 0;
    while (*p >= '0' && *p <= '9')
        p++, digits++;
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9')
            p++, digits++;
    }
    if (digits == 0)
        return false;
    bool fraction = strchr (s, '.') != NULL;
    if (*p == 'e' || *p == 'E') {
        fraction = true;
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!(*p >= '0' && *p <= '9'))
            return false;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    return *p == '\0' && fraction;      /* an overflowing integer is not a float */
}

/*  Convert a scalar event to a JSON value following YAML 1.1's plain
    scalar resolution (see header). */
static json_t *
s_scalar (const yaml_event_t *ev)
{
    const char *s = (const char *) ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || ev->data.scalar.tag)
        return json_stringn (s, len);
    if (len == 0 || s_is_word (s, "~ null Null NULL"))
        return json_null ();
    if (s_is_word (s, "true True TRUE"))
        return json_true ();
    if (s_is_word (s, "false False FALSE"))
        return json_false ();
    json_int_t i;
    if (strlen (s) == len && s_parse_int (s, &i))
        return json_integer (i);
    if (strlen (s) == len && s_is_float (s)) {
        double d = strtod (s, NULL);
        if (isfinite (d))
            return json_real (d);
    }
    return json_stringn (s, len);
}

/*  Attach v (stolen) to the innermost open collection, or make it the
    document root. Returns 0 or a negative code with a message. */
static int
s_attach (s_frame_t *stack, int depth, json_t **root, json_t *v,
          const yaml_event_t *ev, char *err, size_t err_len)
{
    if (!v) {
        (void) bus_errf (err, err_len, 0, "out of memory");
        return BUS_ENOMEM;
    }
    if (depth == 0) {
        *root = v;
        return 0;
    }
    s_frame_t *top = &stack [depth - 1];
    if (json_is_array (top->value))
        return json_array_append_new (top->value, v) == 0 ? 0 : BUS_ENOMEM;
    if (!top->key) {
        if (!json_is_string (v)) {
            json_decref (v);
            (void) bus_errf (err, err_len, 0, "line %zu column %zu: mapping key must be a scalar string",
                   ev->start_mark.line + 1, ev->start_mark.column + 1);
            return BUS_EINVAL;
        }
        //  jansson keys are C strings: a key with a NUL ("a\0b") would be
        //  cut short silently (and might then collide with another)
        bool nul = strlen (json_string_value (v)) != json_string_length (v);
        top->key = nul ? NULL : strdup (json_string_value (v));
        json_decref (v);
        if (nul) {
            (void) bus_errf (err, err_len, 0, "line %zu column %zu: mapping key contains a NUL character",
                   ev->start_mark.line + 1, ev->start_mark.column + 1);
            return BUS_EINVAL;
        }
        if (!top->key)
            return BUS_ENOMEM;
        if (json_object_get (top->value, top->key)) {
            (void) bus_errf (err, err_len, 0, "line %zu column %zu: duplicate mapping key '%.64s'",
                   ev->start_mark.line + 1, ev->start_mark.column + 1, top->key);
            return BUS_EINVAL;
        }
        return 0;
    }
    int rc = json_object_set_new (top->value, top->key, v) == 0 ? 0 : BUS_ENOMEM;
    free (top->key);
    top->key = NULL;
    return rc;
}

/*  A mapping key event: a scalar converted to its text, whatever its type
    (so `1: x` and `true: y` give the keys "1" and "true"). */
static json_t *
s_key_scalar (const yaml_event_t *ev)
{
    return json_stringn ((const char *) ev->data.scalar.value, ev->data.scalar.length);
}

int
bus_yaml_load_string (json_t **out, const char *text, size_t len,
                      char *err, size_t err_len)
{
    if (!out)
        return BUS_EINVAL;
    *out = NULL;
    if (!text)
        return BUS_EINVAL;
    if (len > BUS_YAML_MAX_SIZE) {
        (void) bus_errf (err, err_len, 0, "YAML input of %zu bytes is over the %u-byte limit", len, BUS_YAML_MAX_SIZE);
        return BUS_ETOOBIG;
    }
    yaml_parser_t parser;
    if (!yaml_parser_initialize (&parser)) {
        (void) bus_errf (err, err_len, 0, "out of memory");
        return BUS_ENOMEM;
    }
    yaml_parser_set_input_string (&parser, (const unsigned char *) text, len);

    s_frame_t stack [BUS_YAML_MAX_DEPTH];
    int depth = 0;
    json_t *root = NULL;
    bool have_root = false, done = false;
    size_t nodes = 0;
    int rc = 0;

    while (!done && rc == 0) {
        yaml_event_t ev;
        if (!yaml_parser_parse (&parser, &ev)) {
            (void) bus_errf (err, err_len, 0, "line %zu column %zu: %s",
                   parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                   parser.problem ? parser.problem : "YAML syntax error");
            rc = BUS_EINVAL;
            break;
        }
        bool is_node = ev.type == YAML_SCALAR_EVENT || ev.type == YAML_SEQUENCE_START_EVENT
                    || ev.type == YAML_MAPPING_START_EVENT;
        if (is_node && ++nodes > BUS_YAML_MAX_NODES) {
            (void) bus_errf (err, err_len, 0, "line %zu: more than %d YAML nodes", ev.start_mark.line + 1, BUS_YAML_MAX_NODES);
            rc = BUS_ETOOBIG;
        }
        else
        switch (ev.type) {
            case YAML_STREAM_END_EVENT:
                done = true;
                break;
            case YAML_DOCUMENT_END_EVENT:
                done = have_root;        /* first document only */
                break;
            case YAML_ALIAS_EVENT:
                (void) bus_errf (err, err_len, 0, "line %zu column %zu: YAML aliases are not supported",
                       ev.start_mark.line + 1, ev.start_mark.column + 1);
                rc = BUS_EINVAL;
                break;
            case YAML_SCALAR_EVENT: {
                bool is_key = depth > 0 && json_is_object (stack [depth - 1].value) && !stack [depth - 1].key;
                rc = s_attach (stack, depth, &root, is_key ? s_key_scalar (&ev) : s_scalar (&ev),
                               &ev, err, err_len);
                have_root = true;
                break;
            }
            case YAML_SEQUENCE_START_EVENT:
            case YAML_MAPPING_START_EVENT:
                if (depth == BUS_YAML_MAX_DEPTH) {
                    (void) bus_errf (err, err_len, 0, "line %zu column %zu: nesting deeper than %d",
                           ev.start_mark.line + 1, ev.start_mark.column + 1, BUS_YAML_MAX_DEPTH);
                    rc = BUS_EDEPTH;
                    break;
                }
                if (depth > 0 && json_is_object (stack [depth - 1].value) && !stack [depth - 1].key) {
                    (void) bus_errf (err, err_len, 0, "line %zu column %zu: mapping key must be a scalar string",
                           ev.start_mark.line + 1, ev.start_mark.column + 1);
                    rc = BUS_EINVAL;
                    break;
                }
                stack [depth].value = ev.type == YAML_SEQUENCE_START_EVENT ? json_array () : json_object ();
                stack [depth].key = NULL;
                if (!stack [depth].value)
                    rc = BUS_ENOMEM;
                else
                    depth++;
                have_root = true;
                break;
            case YAML_SEQUENCE_END_EVENT:
            case YAML_MAPPING_END_EVENT: {
                json_t *v = stack [--depth].value;
                free (stack [depth].key);
                rc = s_attach (stack, depth, &root, v, &ev, err, err_len);
                break;
            }
            default:
                break;
        }
        yaml_event_delete (&ev);
    }
    while (depth > 0) {
        depth--;
        json_decref (stack [depth].value);
        free (stack [depth].key);
    }
    yaml_parser_delete (&parser);
    if (rc == 0)
        *out = root ? root : json_null ();
    else
        json_decref (root);
    return rc;
}

int
bus_yaml_load_file (json_t **out, const char *path, char *err, size_t err_len)
{
    if (!out || !path)
        return BUS_EINVAL;
    *out = NULL;
    int rc = 0;
    char *buf = NULL;
    FILE *f = fopen (path, "rb");
    if (!f) {
        (void) bus_errf (err, err_len, 0, "%s: %s", path, strerror (errno));
        return BUS_EIO;
    }
    long size = fseek (f, 0, SEEK_END) == 0 ? ftell (f) : -1;
    if (size < 0 || fseek (f, 0, SEEK_SET) != 0) {
        (void) bus_errf (err, err_len, 0, "%s: cannot determine size", path);
        rc = BUS_EIO;
        goto done;
    }
    if ((unsigned long) size > BUS_YAML_MAX_SIZE)
        size = BUS_YAML_MAX_SIZE;
    buf = malloc ((size_t) size + 2);
    if (!buf) {
        rc = BUS_ENOMEM;
        goto done;
    }
    size_t n = fread (buf, 1, (size_t) size + 1, f);
    if (ferror (f)) {
        (void) bus_errf (err, err_len, 0, "%s: read error", path);
        rc = BUS_EIO;
        goto done;
    }
    if (n > (size_t) size || n > BUS_YAML_MAX_SIZE) {
        (void) bus_errf (err, err_len, 0, "%s: over the %u-byte limit", path, BUS_YAML_MAX_SIZE);
        rc = BUS_ETOOBIG;
        goto done;
    }
    rc = bus_yaml_load_string (out, buf, n, err, err_len);
done:
    free (buf);
    fclose (f);
    return rc;
}
