/*  bus_log.c — JSON-lines logging on stderr.

    Each line is built as a jansson object, dumped compact, and written with
    a single write(2), so lines from concurrent threads never interleave
    (stderr is a pipe or a file opened O_APPEND under systemd/journald; for
    lines up to PIPE_BUF a pipe write is atomic too). The service name and
    minimum level are process-wide; the trace id is per thread.
*/
#include <errno.h>
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
