/*  bus_log.h — JSON-lines logging on stderr.

    One JSON object per line: {"ts":"2026-11-29T16:13:16.123456Z","level":
    "info","service":"authz","msg":"...","trace":"<32 hex>",<fields>}.
    Never log a secret, token or key: callers pass identifiers or HMACs.
    Thread-safe (one write(2) per line).
*/
#ifndef BUS_LOG_H
#define BUS_LOG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { BUS_LOG_DEBUG, BUS_LOG_INFO, BUS_LOG_WARN, BUS_LOG_ERROR } bus_log_level_t;

/*  Set the service name and minimum level ("debug","info","warn","error");
    unknown level strings keep the current one. Call once at start. */
void bus_log_init (const char *service, const char *level);

/*  Level as parsed; returns -1 for an unknown string. */
int bus_log_level_parse (const char *level);

/*  Set this thread's trace id (32 hex chars, or NULL to clear), as taken
    from the W3C traceparent of the message being handled. */
void bus_log_set_trace (const char *trace_id);

/*  Log a printf-style message. */
void bus_log (bus_log_level_t level, const char *fmt, ...)
    __attribute__((format (printf, 2, 3)));

/*  Log with extra fields: fields is a JSON object whose members are merged
    into the line (reference stolen; may be NULL). */
void bus_log_fields (bus_log_level_t level, json_t *fields, const char *fmt, ...)
    __attribute__((format (printf, 3, 4)));

/*  Rate-limited lines, for whatever a peer can make us log (refused
    requests, refused handshakes): at most `lines` lines per window of
    window_ms per key, a key being a peer (a principal, a public key, an
    address) and a reason (an error code). Lines past the limit are counted,
    not written; once the window is over, the key's next line, or
    bus_log_limit_flush() when none comes, says how many were left out:
    "... (1,234 similar lines suppressed)", with a field "suppressed".
    At most max_keys keys are tracked (bounded memory); when every slot
    holds a key whose window is still open, lines for new keys share one
    overflow key ("*", "*"), so that a flood of distinct peers is limited
    as one. Thread-safe (a mutex). */
typedef struct bus_log_limit_t bus_log_limit_t;

bus_log_limit_t *bus_log_limit_new (int lines, int window_ms, size_t max_keys);
void bus_log_limit_destroy (bus_log_limit_t **self_p);

/*  Log through the limiter: who and reason form the key (NULL: "-");
    fields as in bus_log_fields (stolen, even when the line is left out).
    Returns true when the line was written (or filtered by level only). */
bool bus_log_limited (bus_log_limit_t *self, const char *who, const char *reason,
                      bus_log_level_t level, json_t *fields, const char *fmt, ...)
    __attribute__((format (printf, 6, 7)));

/*  Write the "suppressed" summary of every key whose window is over and
    that left lines out, and forget keys idle for a whole window. Call it
    from a timer (about once a second) so that a flood that stops still
    reports its count. Returns the number of summaries written. */
int bus_log_limit_flush (bus_log_limit_t *self);

/*  Lines left out so far, over all keys (for stats). */
uint64_t bus_log_limit_suppressed (bus_log_limit_t *self);

/*  Keys tracked now (tests). */
size_t bus_log_limit_keys (bus_log_limit_t *self);

/*  Replace the clock (ms, monotonic) for tests; NULL restores it. */
void bus_log_limit_set_clock (bus_log_limit_t *self, int64_t (*now_ms) (void));

/*  Send CZMQ's own log lines (zsys_error ... zsys_debug, printed on stdout
    in another format by default) through bus_log as JSON lines on stderr,
    at the matching level. A line that filter (may be NULL) claims (returns
    true) is not written: it is the filter's to handle. Process-wide; call
    once, from the main thread, before other threads log. */
typedef bool (bus_log_zsys_filter_fn) (const char *text);
void bus_log_capture_zsys (bus_log_zsys_filter_fn *filter);

#define bus_debug(...) bus_log (BUS_LOG_DEBUG, __VA_ARGS__)
#define bus_info(...)  bus_log (BUS_LOG_INFO, __VA_ARGS__)
#define bus_warn(...)  bus_log (BUS_LOG_WARN, __VA_ARGS__)
#define bus_error(...) bus_log (BUS_LOG_ERROR, __VA_ARGS__)

#endif
