/*  tele_metrics.c — every service's `stats` as the Prometheus text
    exposition format 0.0.4.

    From each service's stats reply (PROTOCOL.md 10.1):
      - sanctum_up{service} 1 when it answered, 0 when not;
      - sanctum_uptime_seconds{service};
      - each counter NAME as sanctum_NAME_total{service} (a counter), or
        sanctum_NAME{service} (a gauge) for the names that tell a level,
        not a count (dedupe_entries, dedupe_bytes, ... _inflight);
      - latency_us TYPE {count, sum, buckets} as the histogram
        sanctum_request_duration_seconds{service, type}: its log2 buckets
        (cumulative, `< 2^i` µs) as `le` in seconds, then le="+Inf" equal
        to _count. The stats' last bucket also holds everything slower
        than it, so it is left out: +Inf carries it.
    Then the gauges the caller gathered (runs by state, approvals pending,
    leases live, audit log size, telemetry's own).

    Every family is written once, HELP and TYPE first, its samples
    together; names are [a-zA-Z0-9_:], label values escaped.
*/
#include "tele_internal.h"

/*  Counter names that are levels, not counts. */
static bool
s_is_gauge (const char *name)
{
    static const char *const suffixes [] = { "_entries", "_bytes", "_inflight", "_active", "_pending",
                                             "_live", "_size", "_held", NULL };
    size_t n = strlen (name);
    for (const char *const *s = suffixes; *s; s++) {
        size_t k = strlen (*s);
        if (n > k && streq (name + n - k, *s))
            return true;
    }
    return false;
}

/*  name made a valid metric name part: [a-zA-Z0-9_:], others '_'. */
static void
s_sanitize (char *out, size_t out_len, const char *name)
{
    size_t i = 0;
    for (; name [i] && i + 1 < out_len; i++) {
        char c = name [i];
        out [i] = (isalnum ((unsigned char) c) || c == '_' || c == ':') ? c : '_';
    }
    out [i] = 0;
}

/*  A label value, escaped (\\, \", \n). */
static void
s_label (zchunk_t *out, const char *value)
{
    for (const char *p = value; *p; p++) {
        if (*p == '\\')
            zchunk_extend (out, "\\\\", 2);
        else if (*p == '"')
            zchunk_extend (out, "\\\"", 2);
        else if (*p == '\n')
            zchunk_extend (out, "\\n", 2);
        else
            zchunk_extend (out, p, 1);
    }
}

static void
s_put (zchunk_t *out, const char *text)
{
    zchunk_extend (out, text, strlen (text));
}

/*  The families being built: name -> {type, help, lines (a zchunk)}. */
typedef struct {
    zhashx_t *by_name;        /* name -> s_family_t */
    zlistx_t *order;          /* names in first-seen order (owned strings) */
} s_families_t;

typedef struct {
    char type [16];
    char *help;
    zchunk_t *lines;
} s_family_t;

static void
s_family_free (void **item)
{
    s_family_t *f = *item;
    if (f) {
        free (f->help);
        zchunk_destroy (&f->lines);
        free (f);
        *item = NULL;
    }
}

/*  The family named name, made with type and help if new. NULL: no memory. */
static s_family_t *
s_family (s_families_t *fams, const char *name, const char *type, const char *help)
{
    s_family_t *f = zhashx_lookup (fams->by_name, name);
    if (f)
        return f;
    f = calloc (1, sizeof *f);
    if (!f)
        return NULL;
    snprintf (f->type, sizeof f->type, "%s", type);
    f->help = strdup (help);
    f->lines = zchunk_new (NULL, 256);
    if (!f->help || !f->lines) {
        s_family_free ((void **) &f);
        return NULL;
    }
    zhashx_insert (fams->by_name, name, f);
    zlistx_add_end (fams->order, strdup (name));
    return f;
}

/*  One sample line: name{labels} value. labels: "k", "v", ..., NULL. */
static void
s_sample (s_family_t *f, const char *name, const char *value, ...)
{
    if (!f)
        return;
    s_put (f->lines, name);
    va_list ap;
    va_start (ap, value);
    const char *k = va_arg (ap, const char *);
    bool first = true;
    while (k) {
        const char *v = va_arg (ap, const char *);
        s_put (f->lines, first ? "{" : ",");
        s_put (f->lines, k);
        s_put (f->lines, "=\"");
        s_label (f->lines, v);
        s_put (f->lines, "\"");
        first = false;
        k = va_arg (ap, const char *);
    }
    va_end (ap);
    s_put (f->lines, first ? " " : "} ");
    s_put (f->lines, value);
    s_put (f->lines, "\n");
}

/*  One service's stats into the families. */
static void
s_service (s_families_t *fams, const char *service, json_t *stats)
{
    char value [64], name [256], clean [200];
    s_sample (s_family (fams, "sanctum_up", "gauge", "Whether the service answered its stats request (1) or not (0)."),
              "sanctum_up", json_is_object (stats) ? "1" : "0", "service", service, NULL);
    if (!json_is_object (stats))
        return;
    snprintf (value, sizeof value, "%" JSON_INTEGER_FORMAT, json_integer_value (json_object_get (stats, "uptime_s")));
    s_sample (s_family (fams, "sanctum_uptime_seconds", "gauge", "Seconds since the service started."),
              "sanctum_uptime_seconds", value, "service", service, NULL);
    const char *key;
    json_t *v;
    json_object_foreach (json_object_get (stats, "counters"), key, v) {
        if (!json_is_integer (v))
            continue;
        s_sanitize (clean, sizeof clean, key);
        bool gauge = s_is_gauge (clean);
        snprintf (name, sizeof name, gauge ? "sanctum_%s" : "sanctum_%s_total", clean);
        char help [300];
        snprintf (help, sizeof help, "The %s counter of each service's stats.", clean);
        snprintf (value, sizeof value, "%" JSON_INTEGER_FORMAT, json_integer_value (v));
        s_sample (s_family (fams, name, gauge ? "gauge" : "counter", help), name, value, "service", service, NULL);
    }
    s_family_t *h = s_family (fams, "sanctum_request_duration_seconds", "histogram",
                              "Time to answer a request, by service and request type.");
    json_object_foreach (json_object_get (stats, "latency_us"), key, v) {
        json_int_t count = json_integer_value (json_object_get (v, "count"));
        json_int_t sum = json_integer_value (json_object_get (v, "sum"));
        json_t *buckets = json_object_get (v, "buckets");
        size_t n = json_array_size (buckets);
        json_int_t last = 0;
        for (size_t i = 0; i + 1 < n; i++) {
            json_t *b = json_array_get (buckets, i);
            json_int_t le_us = json_integer_value (json_array_get (b, 0));
            json_int_t cum = json_integer_value (json_array_get (b, 1));
            if (cum < last || cum > count)      /* not cumulative: not a histogram we can trust */
                break;
            last = cum;
            char le [32];
            snprintf (le, sizeof le, "%.6f", (double) le_us / 1e6);
            snprintf (value, sizeof value, "%" JSON_INTEGER_FORMAT, cum);
            s_sample (h, "sanctum_request_duration_seconds_bucket", value, "service", service, "type", key,
                      "le", le, NULL);
        }
        snprintf (value, sizeof value, "%" JSON_INTEGER_FORMAT, count);
        s_sample (h, "sanctum_request_duration_seconds_bucket", value, "service", service, "type", key,
                  "le", "+Inf", NULL);
        char sum_text [64];
        snprintf (sum_text, sizeof sum_text, "%.6f", (double) sum / 1e6);
        s_sample (h, "sanctum_request_duration_seconds_sum", sum_text, "service", service, "type", key, NULL);
        s_sample (h, "sanctum_request_duration_seconds_count", value, "service", service, "type", key, NULL);
    }
}

/*  The caller's gauges: name -> {type?, help, samples: [[{label: value}, value], ...]}. */
static void
s_extra (s_families_t *fams, json_t *extra)
{
    const char *name;
    json_t *spec;
    json_object_foreach (extra, name, spec) {
        json_t *samples = json_object_get (spec, "samples");
        if (json_array_size (samples) == 0)
            continue;
        const char *type = json_string_value (json_object_get (spec, "type"));
        const char *help = json_string_value (json_object_get (spec, "help"));
        s_family_t *f = s_family (fams, name, type ? type : "gauge", help ? help : name);
        if (!f)
            continue;
        size_t i;
        json_t *s;
        json_array_foreach (samples, i, s) {
            json_t *labels = json_array_get (s, 0), *v = json_array_get (s, 1);
            if (!json_is_number (v))
                continue;
            s_put (f->lines, name);
            const char *k;
            json_t *lv;
            bool first = true;
            json_object_foreach (labels, k, lv) {
                s_put (f->lines, first ? "{" : ",");
                s_put (f->lines, k);
                s_put (f->lines, "=\"");
                s_label (f->lines, json_string_value (lv) ? json_string_value (lv) : "");
                s_put (f->lines, "\"");
                first = false;
            }
            char value [64];
            if (json_is_integer (v))
                snprintf (value, sizeof value, "%" JSON_INTEGER_FORMAT, json_integer_value (v));
            else
                snprintf (value, sizeof value, "%.6f", json_real_value (v));
            s_put (f->lines, first ? " " : "} ");
            s_put (f->lines, value);
            s_put (f->lines, "\n");
        }
    }
}

char *
tele_metrics_render (json_t *stats, json_t *extra)
{
    char *text = NULL;
    s_families_t fams = { zhashx_new (), zlistx_new () };
    zchunk_t *out = zchunk_new (NULL, 16384);
    if (!fams.by_name || !fams.order || !out)
        goto done;
    zhashx_set_destructor (fams.by_name, s_family_free);
    zlistx_set_destructor (fams.order, (zlistx_destructor_fn *) zstr_free);
    const char *service;
    json_t *s;
    json_object_foreach (stats, service, s)
        s_service (&fams, service, s);
    s_extra (&fams, extra);
    for (char *name = zlistx_first (fams.order); name; name = zlistx_next (fams.order)) {
        s_family_t *f = zhashx_lookup (fams.by_name, name);
        s_put (out, "# HELP ");
        s_put (out, name);
        s_put (out, " ");
        for (const char *p = f->help; *p; p++) {
            if (*p == '\\')
                s_put (out, "\\\\");
            else if (*p == '\n')
                s_put (out, "\\n");
            else
                zchunk_extend (out, p, 1);
        }
        s_put (out, "\n# TYPE ");
        s_put (out, name);
        s_put (out, " ");
        s_put (out, f->type);
        s_put (out, "\n");
        zchunk_extend (out, zchunk_data (f->lines), zchunk_size (f->lines));
    }
    text = malloc (zchunk_size (out) + 1);
    if (text) {
        memcpy (text, zchunk_data (out), zchunk_size (out));
        text [zchunk_size (out)] = 0;
    }
done:
    zhashx_destroy (&fams.by_name);
    zlistx_destroy (&fams.order);
    zchunk_destroy (&out);
    return text;
}
