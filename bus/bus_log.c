/*  bus_log.c — JSON-lines logging on stderr.

    Each line is built as a jansson object, dumped compact, and written with
    a single write(2), so lines from concurrent threads never interleave
    (stderr is a pipe or a file opened O_APPEND under systemd/journald; for
    lines up to PIPE_BUF a pipe write is atomic too). The service name and
    minimum level are process-wide; the trace id is per thread.
*/
#include <czmq.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "bus_log.h"

#define S_SERVICE_MAX  64      /* longest service name kept */
#define S_MSG_MAX      4096    /* longest message, bytes; longer is cut */
#define S_TRACE_LEN    32      /* W3C trace id: 32 lower-case hex chars */

static const char *s_level_names [] = { "debug", "info", "warn", "error" };

static char s_service [S_SERVICE_MAX + 1];
static atomic_int s_min_level = BUS_LOG_INFO;
static __thread char s_trace [S_TRACE_LEN + 1];


/*  Parse a level name (case-insensitive) into a bus_log_level_t value, or
    -1 when the string is NULL or not one of debug, info, warn, error. */
int
bus_log_level_parse (const char *level)
{
    if (!level)
        return -1;
    for (int i = BUS_LOG_DEBUG; i <= BUS_LOG_ERROR; i++)
        if (strcasecmp (level, s_level_names [i]) == 0)
            return i;
    return -1;
}


/*  Set the service name (cut to S_SERVICE_MAX bytes) and the minimum level.
    Meant to be called once at start, before other threads log; an unknown
    level string keeps the current level. */
void
bus_log_init (const char *service, const char *level)
{
    if (service)
        snprintf (s_service, sizeof s_service, "%s", service);
    int parsed = bus_log_level_parse (level);
    if (parsed >= 0)
        atomic_store (&s_min_level, parsed);
}


/*  Set or clear this thread's trace id. Anything that is not exactly 32 hex
    characters clears it, so a malformed traceparent never reaches a log. */
void
bus_log_set_trace (const char *trace_id)
{
    s_trace [0] = 0;
    if (!trace_id || strlen (trace_id) != S_TRACE_LEN
    ||  strspn (trace_id, "0123456789abcdefABCDEF") != S_TRACE_LEN)
        return;
    memcpy (s_trace, trace_id, S_TRACE_LEN + 1);
}


/*  Replace, in place, every byte that does not belong to a well-formed UTF-8
    sequence (including a sequence cut short by truncation) with '?', so
    that jansson accepts the string. Overlong forms and surrogates are not
    rejected here; jansson rejects those and the caller then falls back to
    plain ASCII. */
static void
s_utf8_scrub (char *text)
{
    unsigned char *p = (unsigned char *) text;
    while (*p) {
        int extra = *p < 0x80? 0: (*p & 0xE0) == 0xC0? 1:
                    (*p & 0xF0) == 0xE0? 2: (*p & 0xF8) == 0xF0? 3: -1;
        int ok = extra >= 0;
        for (int i = 1; ok && i <= extra; i++)
            ok = (p [i] & 0xC0) == 0x80;
        if (!ok) {
            *p++ = '?';
            continue;
        }
        p += extra + 1;
    }
}


/*  Replace every non-ASCII byte with '?': the last resort when jansson
    still refuses the text. */
static void
s_ascii_only (char *text)
{
    for (unsigned char *p = (unsigned char *) text; *p; p++)
        if (*p >= 0x80)
            *p = '?';
}


/*  Current time as RFC 3339 UTC with microseconds into buf (at least 32
    bytes): 2026-11-29T16:13:16.123456Z. */
static void
s_timestamp (char *buf, size_t size)
{
    struct timespec now;
    struct tm tm;
    clock_gettime (CLOCK_REALTIME, &now);
    gmtime_r (&now.tv_sec, &tm);
    size_t len = strftime (buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf (buf + len, size - len, ".%06ldZ", (long) (now.tv_nsec / 1000));
}


/*  Write all of line with one write(2) where the kernel allows; a partial
    write (only possible on very long lines) or EINTR continues with the
    rest. Errors are ignored: there is nowhere left to report them. */
static void
s_write_all (const char *line, size_t len)
{
    while (len > 0) {
        ssize_t rc = write (STDERR_FILENO, line, len);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            return;
        line += rc;
        len -= (size_t) rc;
    }
}


/*  Format, build and write one line. Takes ownership of fields (may be
    NULL; ignored unless an object). Members of fields never replace the
    standard members: json_object_update_missing only adds absent keys. */
static void
s_log (bus_log_level_t level, json_t *fields, const char *fmt, va_list args)
{
    json_t *line = NULL;
    char *text = NULL;
    if (level < BUS_LOG_DEBUG || level > BUS_LOG_ERROR)
        level = BUS_LOG_ERROR;
    if ((int) level < atomic_load (&s_min_level))
        goto done;

    char msg [S_MSG_MAX + 1];
    vsnprintf (msg, sizeof msg, fmt, args);
    s_utf8_scrub (msg);
    json_t *jmsg = json_string (msg);
    if (!jmsg) {
        s_ascii_only (msg);
        jmsg = json_string (msg);
    }
    char ts [40];
    s_timestamp (ts, sizeof ts);
    line = json_object ();
    if (!line || !jmsg) {
        json_decref (jmsg);
        goto done;
    }
    json_object_set_new (line, "ts", json_string (ts));
    json_object_set_new (line, "level", json_string (s_level_names [level]));
    json_object_set_new (line, "service", json_string (
        s_service [0]? s_service: program_invocation_short_name));
    json_object_set_new (line, "msg", jmsg);
    if (s_trace [0])
        json_object_set_new (line, "trace", json_string (s_trace));
    if (json_is_object (fields))
        json_object_update_missing (line, fields);

    text = json_dumps (line, JSON_COMPACT);
    if (!text)
        goto done;
    size_t len = strlen (text);
    char *grown = realloc (text, len + 2);
    if (!grown)
        goto done;
    text = grown;
    text [len] = '\n';
    text [len + 1] = 0;
    s_write_all (text, len + 1);
done:
    free (text);
    json_decref (line);
    json_decref (fields);
}


/*  Log a printf-style message at the given level. */
void
bus_log (bus_log_level_t level, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    s_log (level, NULL, fmt, args);
    va_end (args);
}


/*  Log a printf-style message with extra fields merged into the line; the
    reference to fields is stolen even when the level filters the line. */
void
bus_log_fields (bus_log_level_t level, json_t *fields, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    s_log (level, fields, fmt, args);
    va_end (args);
}


/* --- rate-limited lines ---------------------------------------------------- */

#define S_KEY_MAX      160     /* who + reason, bytes kept */
#define S_SAMPLE_MAX   200     /* first suppressed message kept for the summary */

/*  One key's window. */
typedef struct {
    char key [S_KEY_MAX + 1];       /* "who\x1freason" */
    char who [S_KEY_MAX + 1];
    char reason [64];
    int64_t window_end;             /* ms; the window is open before it */
    int written;                    /* lines written in the window */
    uint64_t suppressed;            /* lines left out since the last report */
    bus_log_level_t level;          /* of the first line left out */
    char sample [S_SAMPLE_MAX + 1]; /* the first line left out, cut */
    bool used;
} s_slot_t;

struct bus_log_limit_t {
    pthread_mutex_t lock;
    int lines;
    int window_ms;
    size_t max_keys;
    s_slot_t *slots;                /* max_keys + 1: the last is the overflow key */
    size_t used;
    uint64_t suppressed_total;
    int64_t (*now_ms) (void);
};


/*  Monotonic clock, ms. */
static int64_t
s_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


/*  Create a limiter: lines per window_ms per key, max_keys keys (each at
    least 1). Returns NULL on allocation failure. */
bus_log_limit_t *
bus_log_limit_new (int lines, int window_ms, size_t max_keys)
{
    bus_log_limit_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->lines = lines > 0? lines: 1;
    self->window_ms = window_ms > 0? window_ms: 1;
    self->max_keys = max_keys > 0? max_keys: 1;
    self->slots = calloc (self->max_keys + 1, sizeof *self->slots);
    if (!self->slots) {
        free (self);
        return NULL;
    }
    snprintf (self->slots [self->max_keys].who, sizeof self->slots [0].who, "*");
    snprintf (self->slots [self->max_keys].reason, sizeof self->slots [0].reason, "*");
    self->slots [self->max_keys].used = true;
    self->now_ms = s_now_ms;
    pthread_mutex_init (&self->lock, NULL);
    return self;
}


/*  Destroy a limiter; accepts NULL, nulls the caller's pointer. Counts
    not yet reported are lost: flush first to keep them. */
void
bus_log_limit_destroy (bus_log_limit_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    bus_log_limit_t *self = *self_p;
    pthread_mutex_destroy (&self->lock);
    free (self->slots);
    free (self);
    *self_p = NULL;
}


void
bus_log_limit_set_clock (bus_log_limit_t *self, int64_t (*now_ms) (void))
{
    pthread_mutex_lock (&self->lock);
    self->now_ms = now_ms? now_ms: s_now_ms;
    pthread_mutex_unlock (&self->lock);
}


/*  n with thousands separators ("1,234") into buf. */
static void
s_thousands (char *buf, size_t size, uint64_t n)
{
    char digits [32];
    int len = snprintf (digits, sizeof digits, "%" PRIu64, n);
    size_t out = 0;
    for (int i = 0; i < len && out + 2 < size; i++) {
        if (i > 0 && (len - i) % 3 == 0)
            buf [out++] = ',';
        buf [out++] = digits [i];
    }
    buf [out] = 0;
}


/*  The summary of a slot's suppressed lines, as one line: its first left-out
    message and the count. Called without the lock held, on a copy. */
static void
s_write_summary (const s_slot_t *slot)
{
    char count [40];
    s_thousands (count, sizeof count, slot->suppressed);
    json_t *fields = json_pack ("{s:s, s:s, s:I}", "limited", slot->who, "limit_reason", slot->reason,
                                "suppressed", (json_int_t) slot->suppressed);
    bus_log_fields (slot->level, fields, "%s (%s similar lines suppressed)", slot->sample, count);
}


/*  Find the slot of key, or take one: a free slot, else the slot of a key
    whose window is over (its pending count copied to *evicted for the
    caller to report), else the overflow slot. Called with the lock held. */
static s_slot_t *
s_slot (bus_log_limit_t *self, const char *key, int64_t now, s_slot_t *evicted, bool *has_evicted)
{
    s_slot_t *free_slot = NULL, *stale = NULL;
    for (size_t i = 0; i < self->max_keys; i++) {
        s_slot_t *slot = &self->slots [i];
        if (!slot->used) {
            if (!free_slot)
                free_slot = slot;
            continue;
        }
        if (strcmp (slot->key, key) == 0)
            return slot;
        if (!stale && now >= slot->window_end)
            stale = slot;
    }
    s_slot_t *slot = free_slot? free_slot: stale;
    if (!slot)
        return &self->slots [self->max_keys];
    if (slot == stale && stale->suppressed) {
        *evicted = *stale;
        *has_evicted = true;
    }
    if (slot == free_slot)
        self->used++;
    memset (slot, 0, sizeof *slot);
    slot->used = true;
    return slot;
}


/*  Decide and write one line through the limiter. */
bool
bus_log_limited (bus_log_limit_t *self, const char *who, const char *reason,
                 bus_log_level_t level, json_t *fields, const char *fmt, ...)
{
    if ((int) level < atomic_load (&s_min_level)) {
        json_decref (fields);
        return true;
    }
    char msg [S_MSG_MAX + 1];
    va_list args;
    va_start (args, fmt);
    vsnprintf (msg, sizeof msg, fmt, args);
    va_end (args);
    who = who && *who? who: "-";
    reason = reason && *reason? reason: "-";
    char key [S_KEY_MAX + 1];
    snprintf (key, sizeof key, "%s\x1f%s", who, reason);

    s_slot_t evicted;
    bool has_evicted = false;
    uint64_t reopened = 0;          /* left out in the window just over */
    bool write = false;
    pthread_mutex_lock (&self->lock);
    int64_t now = self->now_ms ();
    s_slot_t *slot = s_slot (self, key, now, &evicted, &has_evicted);
    if (!slot->key [0] && slot != &self->slots [self->max_keys]) {
        snprintf (slot->key, sizeof slot->key, "%s", key);
        snprintf (slot->who, sizeof slot->who, "%s", who);
        snprintf (slot->reason, sizeof slot->reason, "%s", reason);
    }
    if (now >= slot->window_end) {
        reopened = slot->suppressed;
        slot->suppressed = 0;
        slot->written = 0;
        slot->window_end = now + self->window_ms;
    }
    if (slot->written < self->lines) {
        slot->written++;
        write = true;
    }
    else {
        if (slot->suppressed++ == 0) {
            slot->level = level;
            size_t len = strnlen (msg, S_SAMPLE_MAX);
            memcpy (slot->sample, msg, len);
            slot->sample [len] = 0;
        }
        self->suppressed_total++;
    }
    pthread_mutex_unlock (&self->lock);

    if (has_evicted)
        s_write_summary (&evicted);
    if (!write) {
        json_decref (fields);
        return false;
    }
    if (reopened) {
        char count [40];
        s_thousands (count, sizeof count, reopened);
        if (!json_is_object (fields)) {
            json_decref (fields);
            fields = json_object ();
        }
        json_object_set_new (fields, "suppressed", json_integer ((json_int_t) reopened));
        bus_log_fields (level, fields, "%s (%s similar lines suppressed)", msg, count);
    }
    else
        bus_log_fields (level, fields, "%s", msg);
    return true;
}


/*  Report every key whose window is over and left lines out; forget keys
    whose window ended a whole window ago. */
int
bus_log_limit_flush (bus_log_limit_t *self)
{
    int reported = 0;
    for (size_t i = 0; i <= self->max_keys; i++) {
        s_slot_t copy;
        bool report = false;
        pthread_mutex_lock (&self->lock);
        int64_t now = self->now_ms ();
        s_slot_t *slot = &self->slots [i];
        if (slot->used && now >= slot->window_end) {
            if (slot->suppressed) {
                copy = *slot;
                report = true;
                slot->suppressed = 0;
                /* a fresh window, so that the next line is not marked as
                   reopening with a count already reported */
                slot->written = 0;
            }
            else
            if (i < self->max_keys && now >= slot->window_end + self->window_ms) {
                memset (slot, 0, sizeof *slot);
                self->used--;
            }
        }
        pthread_mutex_unlock (&self->lock);
        if (report) {
            s_write_summary (&copy);
            reported++;
        }
    }
    return reported;
}


uint64_t
bus_log_limit_suppressed (bus_log_limit_t *self)
{
    pthread_mutex_lock (&self->lock);
    uint64_t n = self->suppressed_total;
    pthread_mutex_unlock (&self->lock);
    return n;
}


size_t
bus_log_limit_keys (bus_log_limit_t *self)
{
    pthread_mutex_lock (&self->lock);
    size_t n = self->used;
    pthread_mutex_unlock (&self->lock);
    return n;
}


/* --- CZMQ's log lines -------------------------------------------------------- */

#define S_ZSYS_LINE_MAX 1100   /* zsys cuts its lines at 1024 bytes */

static bus_log_zsys_filter_fn *s_zsys_filter;
static char s_zsys_buf [S_ZSYS_LINE_MAX + 1];   /* a line not yet complete */
static size_t s_zsys_len;

/*  One complete zsys line: "L: [(ident) ]yy-mm-dd HH:MM:SS text". */
static void
s_zsys_line (char *line)
{
    bus_log_level_t level = line [0] == 'E'? BUS_LOG_ERROR: line [0] == 'W'? BUS_LOG_WARN:
                            line [0] == 'D'? BUS_LOG_DEBUG: BUS_LOG_INFO;
    char *text = line;
    if (line [0] && line [1] == ':' && line [2] == ' ') {
        text = line + 3;
        if (*text == '(') {
            char *close = strstr (text, ") ");
            if (close)
                text = close + 2;
        }
        /* the date: 17 characters and a blank */
        if (strlen (text) > 18 && text [2] == '-' && text [5] == '-' && text [8] == ' '
        &&  text [11] == ':' && text [14] == ':' && text [17] == ' ')
            text += 18;
    }
    if (s_zsys_filter && s_zsys_filter (text))
        return;
    bus_log_fields (level, json_pack ("{s:s}", "from", "czmq"), "%s", text);
}


/*  fopencookie write: runs under the stream's lock (glibc locks a FILE
    for each call, flushes included), so the line buffer needs no lock of
    its own. Splits what comes into lines. */
static ssize_t
s_zsys_write (void *cookie, const char *data, size_t size)
{
    for (size_t i = 0; i < size; i++) {
        if (data [i] == '\n' || s_zsys_len == S_ZSYS_LINE_MAX) {
            s_zsys_buf [s_zsys_len] = 0;
            s_zsys_line (s_zsys_buf);
            s_zsys_len = 0;
            if (data [i] == '\n')
                continue;
        }
        s_zsys_buf [s_zsys_len++] = data [i];
    }
    return (ssize_t) size;
}


void
bus_log_capture_zsys (bus_log_zsys_filter_fn *filter)
{
    static FILE *stream;
    s_zsys_filter = filter;
    if (stream)
        return;
    cookie_io_functions_t io = { .write = s_zsys_write };
    stream = fopencookie (NULL, "w", io);
    if (!stream)
        return;
    zsys_set_logstream (stream);
}
