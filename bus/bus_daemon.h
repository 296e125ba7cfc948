/*  bus_daemon.h — what a Sanctum service declares, and the whole main() of
    its daemon.

    A service module declares one constant bus_daemon_t with designated
    initialisers (its name, its databases, start and stop, its timers) and
    its main.c hands it to bus_daemon_main():

        static const bus_timer_t s_timers [] = {
            { .name = "escalation", .interval_key = "escalation_scan_ms", .fn = s_escalate },
            { 0 }
        };
        const bus_daemon_t ciba_daemon = {
            .section = "ciba",
            .db_names = s_dbs,
            .start = s_start,
            .stop = s_stop,
            .timers = s_timers,
        };

    bus_daemon_main parses `--config FILE` (default $SANCTUM_CONFIG, else
    ./var/sanctum.conf when it exists, else the built-in defaults),
    `--version`, `--help`; loads the config, starts logging, creates the
    service, starts the daemon on it (bus_daemon_start), runs the reactor
    until SIGTERM/SIGINT, stops the daemon (bus_daemon_stop), then tears
    down. Exit codes: 0 clean stop, 1 start-up failure, 2 usage.

    Threads: a daemon's start, its timer callbacks and its stop all run on
    the thread that runs its service's reactor (the one that made it).
*/
#ifndef BUS_DAEMON_H
#define BUS_DAEMON_H

#include "bus_service.h"

#define SANCTUM_VERSION "0.1.0"

/*  A timer callback, on the reactor: svc is the service, state what the
    daemon's start stored in *state (NULL when it stored nothing). It must
    not block (STYLE.md habit 6): slow work goes to a worker or a peer. */
typedef void (bus_timer_fn) (bus_service_t *svc, void *state);

/*  A periodic timer of a service, e.g. an escalation scan or lease expiry.
    It first fires about one interval after the reactor starts, then every
    interval, for as long as the reactor runs. The interval is the INT
    config key interval_key of the service's own section when given (read
    once at start; a key missing from bus_config_keys.def is a programmer
    mistake and asserts), else interval_ms; either must be > 0. */
typedef struct {
    const char *name;             /* for logs and errors: "escalation" */
    int interval_ms;
    const char *interval_key;     /* "escalation_scan_ms", or NULL */
    bus_timer_fn *fn;
} bus_timer_t;

/*  What a service declares. Only section is required. */
typedef struct {
    const char *section;          /* config section, e.g. "ciba" (bus_services.def) */
    const char *const *db_names;  /* its own LMDB databases, NULL-terminated (or NULL) */
    /*  Register handlers and make the service's state, on the reactor
        thread before the reactor runs; *state is passed back to the timers
        and to stop (it may stay NULL). Returns 0, or nonzero to refuse to
        start: stop is called all the same, to free what start left in
        *state. */
    int (*start) (bus_service_t *svc, void **state);
    /*  Free the state, after the reactor has stopped and every timer with
        it; also after a start that failed, so it must take a state that
        start made only in part (or NULL). Called once per start. */
    void (*stop) (bus_service_t *svc, void **state);
    /*  Periodic timers, terminated by an entry whose fn is NULL ({ 0 }),
        or NULL for none. Started after start, stopped before stop. */
    const bus_timer_t *timers;
    /*  Still to come, in this struct, started after the timers and stopped
        before them (in bus_daemon_start / bus_daemon_stop):
        - the event followers the service declares (topics, publishers,
          durable or in memory, the callback) — bus/bus_follow.h;
        - its HTTP listener (the config key of its address, the request
          callback, the limits) — bus/bus_http.h. */
} bus_daemon_t;

/*  The whole main() of a daemon (see the top of this file). Returns the
    process's exit code. */
int bus_daemon_main (int argc, char **argv, const bus_daemon_t *daemon);

/*  A daemon started on a service: its state and its timers. */
typedef struct bus_daemon_run_t bus_daemon_run_t;

/*  Start daemon on svc (made for daemon->section), on the thread that
    will run svc's reactor, before bus_service_run: daemon->start, then
    every timer on the service's zloop. Returns the running daemon, or
    NULL with err set, nothing left running (daemon->stop has been called
    when there is one). Errors: start refusing; a timer whose
    interval is not > 0 (err names the timer, and the section, key and
    value when it came from the config); out of memory. */
bus_daemon_run_t *bus_daemon_start (const bus_daemon_t *daemon, bus_service_t *svc,
                                    char *err, size_t err_len);

/*  Stop a started daemon, on the reactor thread once bus_service_run has
    returned (or before it ran): its timers are cancelled, then
    daemon->stop runs. Accepts NULL; nulls the pointer. */
void bus_daemon_stop (bus_daemon_run_t **self_p);

/*  The config path the daemons and sanctumctl use when none is given. */
const char *bus_default_config_path (void);

#endif
