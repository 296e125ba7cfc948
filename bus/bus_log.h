/*  bus_log.h — JSON-lines logging on stderr.

    One JSON object per line: {"ts":"2026-11-29T16:13:16.123456Z","level":
    "info","service":"authz","msg":"...","trace":"<32 hex>",<fields>}.
    Never log a secret, token or key: callers pass identifiers or HMACs.
    Thread-safe (one write(2) per line).
*/
#ifndef BUS_LOG_H
#define BUS_LOG_H

#include <jansson.h>

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

#define bus_debug(...) bus_log (BUS_LOG_DEBUG, __VA_ARGS__)
#define bus_info(...)  bus_log (BUS_LOG_INFO, __VA_ARGS__)
#define bus_warn(...)  bus_log (BUS_LOG_WARN, __VA_ARGS__)
#define bus_error(...) bus_log (BUS_LOG_ERROR, __VA_ARGS__)

#endif
