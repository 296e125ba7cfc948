/*  bus_daemon.h — what a Sanctum service declares, and the whole main() of
    its daemon.

    A service module declares one constant bus_daemon_t with designated
    initialisers (its name, its databases, start and stop, its timers) and
    its main.c hands it to bus_daemon_main() (followers and an HTTP
    listener are declared the same way: bus_follower_t, bus_listener_t):

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

#include "bus_follow.h"
#include "bus_http_server.h"
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

/*  An event callback of a declared follower, on the reactor: as
    bus_follow_fn (bus_follow.h), with the service and the daemon's state.
    txn is the service's write transaction in which the follower's mark
    commits too (durable), or NULL (memory). Return 0 when applied,
    BUS_FOLLOW_NOTHING when nothing was to be written for it (no commit is
    spent on it), or a negative BUS_E* error for a failure that may pass
    (the batch is rolled back and comes again by replay). */
typedef int (bus_event_fn) (bus_service_t *svc, void *state, bus_txn_t *txn, proto_msg_t *event);

/*  Events lost: a publisher trimmed from_seq..to_seq before the follower
    stored them (bus_follow_loss_fn). */
typedef void (bus_loss_fn) (bus_service_t *svc, void *state, const char *source,
                            const char *pub, uint64_t from_seq, uint64_t to_seq);

/*  Durable followers: record the loss of from_seq..to_seq in txn, the
    transaction in which the follower's mark moves past them
    (bus_follow_record_loss_fn). Return 0, or a negative BUS_E* error (the
    transaction is rolled back; the loss comes again). */
typedef int (bus_record_loss_fn) (bus_service_t *svc, void *state, bus_txn_t *txn, const char *source,
                                  const char *pub, uint64_t from_seq, uint64_t to_seq);

/*  An event follower a service declares (bus_follow.h says what it
    guarantees). Durable unless memory is set: the events are applied in
    write transactions of the service's own store, in which the follower's
    marks commit too, so the service must list BUS_FOLLOW_DB among its
    db_names. */
typedef struct {
    const char *name;               /* the follower's name: its marks' keys, its logs */
    const char *const *publishers;  /* services to follow (bus_services.def names),
                                       NULL-terminated; NULL: every service but this one */
    const char *const *topics;      /* type prefixes that reach fn; NULL: every type */
    bus_event_fn *fn;
    bus_loss_fn *loss;              /* may be NULL: a loss is still logged and counted */
    bus_record_loss_fn *record_loss;/* durable: the loss recorded with the mark; may be NULL */
    bool memory;                    /* marks in memory only (telemetry) */
    bool from_now;                  /* memory: start at each publisher's last event */
    const char *replay_key;         /* INT key of the service's section: how often
                                       gaps and the tail are checked by replay, ms;
                                       NULL: bus_follow's default (1 s) */
} bus_follower_t;

/*  An HTTP request handler of a declared listener, on the reactor: as
    bus_http_handler_fn (bus_http_server.h), with the service and the
    daemon's state. */
typedef void (bus_route_fn) (bus_service_t *svc, void *state, bus_http_exchange_t *ex);

typedef struct {
    const char *method;             /* "GET"; NULL: any */
    const char *path;               /* "/api/events", or a prefix ending in '*' */
    bus_route_fn *fn;
} bus_route_t;

/*  An HTTP listener a service declares (bus_http_server.h: libmicrohttpd
    on the reactor, with caps on size, headers, connections and time). */
typedef struct {
    const char *address_key;        /* the key of the service's section holding
                                       "host:port"; NULL: "http" */
    const bus_route_t *routes;      /* terminated by { 0 }; earlier routes win */
} bus_listener_t;

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
    /*  Event followers, terminated by an entry whose fn is NULL, or NULL
        for none. Started after the timers, stopped before them. */
    const bus_follower_t *followers;
    /*  The HTTP listener, or NULL for none. Started after the followers,
        stopped first. */
    const bus_listener_t *http;
} bus_daemon_t;

/*  The whole main() of a daemon (see the top of this file). Returns the
    process's exit code. */
int bus_daemon_main (int argc, char **argv, const bus_daemon_t *daemon);

/*  A daemon started on a service: its state and its timers. */
typedef struct bus_daemon_run_t bus_daemon_run_t;

/*  Start daemon on svc (made for daemon->section), on the thread that
    will run svc's reactor, before bus_service_run: daemon->start, then
    every timer on the service's zloop, then its followers (each following
    its publishers as the config names them), then its HTTP listener.
    Returns the running daemon, or NULL with err set, nothing left running
    (daemon->stop has been called when there is one). Errors: start
    refusing; a timer whose interval is not > 0 (err names the timer, and
    the section, key and value when it came from the config); a follower
    that cannot be made (no BUS_FOLLOW_DB for a durable one, a publisher
    unknown or without a key); a listener whose address is missing, bad or
    taken; out of memory. */
bus_daemon_run_t *bus_daemon_start (const bus_daemon_t *daemon, bus_service_t *svc,
                                    char *err, size_t err_len);

/*  Stop a started daemon, on the reactor thread once bus_service_run has
    returned (or before it ran): its HTTP listener closes (open exchanges
    get their gone callbacks), its followers stop, its timers are
    cancelled, then daemon->stop runs. Accepts NULL; nulls the pointer. */
void bus_daemon_stop (bus_daemon_run_t **self_p);

/*  The running daemon's follower named name, or NULL; its listener, or
    NULL (for tests, stats and the port bound when the address asked for
    port 0). */
bus_follow_t *bus_daemon_follower (bus_daemon_run_t *self, const char *name);
bus_http_server_t *bus_daemon_listener (bus_daemon_run_t *self);

/*  The config path the daemons and sanctumctl use when none is given. */
const char *bus_default_config_path (void);

#endif
