/*  bus_daemon.c — argument parsing and life cycle shared by every daemon:
    the daemon's start, its timers, followers and HTTP listener on the
    service's reactor, its stop. */
#include "bus_daemon.h"
#include "bus_alarm.h"
#include "bus_error.h"
#include "bus_log.h"

#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*  One timer of a running daemon: what zloop calls back with. */
typedef struct {
    bus_daemon_run_t *run;
    const bus_timer_t *def;
    bus_alarm_t *alarm;           /* NULL while not set */
} s_timer_t;

/*  One declared follower of a running daemon: what bus_follow calls back
    with. */
typedef struct {
    bus_daemon_run_t *run;
    const bus_follower_t *def;
    bus_follow_t *follow;
} s_follower_t;

/*  One declared route of a running daemon's listener. */
typedef struct {
    bus_daemon_run_t *run;
    const bus_route_t *def;
} s_route_t;

struct bus_daemon_run_t {
    const bus_daemon_t *daemon;
    bus_service_t *svc;
    void *state;                  /* the daemon's, from start */
    size_t ntimers;
    s_timer_t *timers;
    size_t nfollowers;
    s_follower_t *followers;
    size_t nroutes;
    s_route_t *routes;
    bus_http_server_t *http;
};

/*  $SANCTUM_CONFIG, else ./var/sanctum.conf when readable, else NULL. */
const char *
bus_default_config_path (void)
{
    const char *env = getenv ("SANCTUM_CONFIG");
    if (env && *env)
        return env;
    return access ("./var/sanctum.conf", R_OK) == 0 ? "./var/sanctum.conf" : NULL;
}

/*  The usage text. */
static void
s_usage (FILE *out, const char *prog)
{
    fprintf (out, "usage: %s [--config FILE] [--version]\n"
                  "  --config FILE  configuration (default $SANCTUM_CONFIG, else ./var/sanctum.conf)\n",
             prog);
}

/*  zloop timer handler: run the daemon's callback with its state. */
static int
s_on_timer (zloop_t *loop, void *arg)
{
    s_timer_t *timer = arg;
    timer->def->fn (timer->run->svc, timer->run->state);
    return 0;
}

/*  An interval in ms: the INT config key of the daemon's section when key
    is given, else interval_ms; or -1 (err set, naming what and name) when
    it is not > 0. */
static long
s_interval (const bus_daemon_t *daemon, bus_service_t *svc, const char *what, const char *name,
            int interval_ms, const char *key, char *err, size_t err_len)
{
    long ms = interval_ms;
    if (key)
        ms = bus_config_int (bus_service_config (svc), daemon->section, key);
    if (ms <= 0 || ms > INT32_MAX) {
        if (key)
            snprintf (err, err_len, "%s %s: [%s] %s = %ld is not a positive interval",
                      what, name ? name : "?", daemon->section, key, ms);
        else
            snprintf (err, err_len, "%s %s: interval_ms %ld is not positive", what, name ? name : "?", ms);
        return -1;
    }
    return ms;
}

/*  Set every declared timer on the service's zloop. Returns 0, or an
    error with err set (the timers set so far stay, for bus_daemon_stop). */
static int
s_timers_start (bus_daemon_run_t *self, char *err, size_t err_len)
{
    const bus_daemon_t *daemon = self->daemon;
    size_t n = 0;
    while (daemon->timers && daemon->timers [n].fn)
        n++;
    if (n == 0)
        return 0;
    self->timers = calloc (n, sizeof *self->timers);
    if (!self->timers) {
        snprintf (err, err_len, "out of memory");
        return BUS_ENOMEM;
    }
    zloop_t *loop = bus_service_loop (self->svc);
    for (size_t i = 0; i < n; i++) {
        s_timer_t *timer = &self->timers [i];
        timer->run = self;
        timer->def = &daemon->timers [i];
        self->ntimers = i + 1;
        long ms = s_interval (daemon, self->svc, "timer", timer->def->name, timer->def->interval_ms,
                              timer->def->interval_key, err, err_len);
        if (ms < 0)
            return BUS_EINVAL;
        timer->alarm = bus_alarm_new (loop, (size_t) ms, 0, s_on_timer, timer);
        if (!timer->alarm) {
            snprintf (err, err_len, "timer %s: zloop refused it", timer->def->name ? timer->def->name : "?");
            return BUS_ENOMEM;
        }
        bus_debug ("timer %s every %ld ms", timer->def->name ? timer->def->name : "?", ms);
    }
    return 0;
}

/*  Cancel the timers that were set. */
static void
s_timers_stop (bus_daemon_run_t *self)
{
    for (size_t i = 0; i < self->ntimers; i++)
        bus_alarm_end (&self->timers [i].alarm);
    free (self->timers);
    self->timers = NULL;
    self->ntimers = 0;
}

/*  bus_follow callbacks: the daemon's, with its service and state. */
static int
s_on_event (bus_follow_t *follow, bus_txn_t *txn, proto_msg_t *event, void *arg)
{
    s_follower_t *f = arg;
    return f->def->fn (f->run->svc, f->run->state, txn, event);
}

static void
s_on_loss (bus_follow_t *follow, const char *source, const char *pub,
           uint64_t from_seq, uint64_t to_seq, void *arg)
{
    s_follower_t *f = arg;
    if (f->def->loss)
        f->def->loss (f->run->svc, f->run->state, source, pub, from_seq, to_seq);
}

static int
s_on_record_loss (bus_follow_t *follow, bus_txn_t *txn, const char *source, const char *pub,
                  uint64_t from_seq, uint64_t to_seq, void *arg)
{
    s_follower_t *f = arg;
    return f->def->record_loss (f->run->svc, f->run->state, txn, source, pub, from_seq, to_seq);
}

/*  Make one declared follower and add its publishers. Returns 0, or an
    error with err set. */
static int
s_follower_start (bus_daemon_run_t *self, s_follower_t *f, char *err, size_t err_len)
{
    const bus_follower_t *def = f->def;
    bus_follow_opts_t opts = {
        .name = def->name, .topics = def->topics, .fn = s_on_event, .loss = s_on_loss,
        .record_loss = def->record_loss ? s_on_record_loss : NULL,
        .arg = f, .from_now = def->from_now,
    };
    if (def->replay_key) {
        long ms = s_interval (self->daemon, self->svc, "follower", def->name, 0, def->replay_key, err, err_len);
        if (ms < 0)
            return BUS_EINVAL;
        opts.replay_ms = (int) ms;
    }
    f->follow = bus_follow_for (self->svc, &opts, def->memory);
    if (!f->follow) {
        snprintf (err, err_len, "follower %s: cannot be made%s", def->name ? def->name : "?",
                  def->memory ? "" : " (is " BUS_FOLLOW_DB " among the service's databases?)");
        return BUS_EINVAL;
    }
    bus_config_t *config = bus_service_config (self->svc);
    if (def->publishers) {
        for (const char *const *p = def->publishers; *p; p++) {
            int rc = bus_follow_add_service (f->follow, config, *p);
            if (rc) {
                snprintf (err, err_len, "follower %s: cannot follow %s: %s",
                          def->name ? def->name : "?", *p, bus_strerror (rc));
                return rc;
            }
        }
        return 0;
    }
    for (const bus_service_id_t *id = bus_services; id->name; id++) {
        if (streq (id->section, self->daemon->section))
            continue;
        int rc = bus_follow_add_service (f->follow, config, id->name);
        if (rc) {
            snprintf (err, err_len, "follower %s: cannot follow %s: %s",
                      def->name ? def->name : "?", id->name, bus_strerror (rc));
            return rc;
        }
    }
    return 0;
}

/*  Every declared follower. Returns 0, or an error with err set (the
    followers made so far stay, for bus_daemon_stop). */
static int
s_followers_start (bus_daemon_run_t *self, char *err, size_t err_len)
{
    const bus_daemon_t *daemon = self->daemon;
    size_t n = 0;
    while (daemon->followers && daemon->followers [n].fn)
        n++;
    if (n == 0)
        return 0;
    self->followers = calloc (n, sizeof *self->followers);
    if (!self->followers) {
        snprintf (err, err_len, "out of memory");
        return BUS_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        self->followers [i].run = self;
        self->followers [i].def = &daemon->followers [i];
        self->nfollowers = i + 1;
        int rc = s_follower_start (self, &self->followers [i], err, err_len);
        if (rc)
            return rc;
    }
    return 0;
}

static void
s_followers_stop (bus_daemon_run_t *self)
{
    for (size_t i = 0; i < self->nfollowers; i++)
        bus_follow_destroy (&self->followers [i].follow);
    free (self->followers);
    self->followers = NULL;
    self->nfollowers = 0;
}

/*  bus_http_server callback: the daemon's route, with its service and
    state. */
static void
s_on_http (bus_http_exchange_t *ex, void *arg)
{
    s_route_t *route = arg;
    route->def->fn (route->run->svc, route->run->state, ex);
}

/*  The declared listener on its configured address, with its routes.
    Returns 0, or an error with err set. */
static int
s_listener_start (bus_daemon_run_t *self, char *err, size_t err_len)
{
    const bus_listener_t *def = self->daemon->http;
    if (!def)
        return 0;
    const char *key = def->address_key ? def->address_key : "http";
    const char *address = bus_config_str (bus_service_config (self->svc), self->daemon->section, key);
    if (!address || !*address) {
        snprintf (err, err_len, "HTTP listener: no address in [%s] %s", self->daemon->section, key);
        return BUS_ECONFIG;
    }
    bus_http_server_opts_t opts = { .address = address };
    char why [256] = "";
    self->http = bus_http_server_new (bus_service_loop (self->svc), &opts, why, sizeof why);
    if (!self->http) {
        snprintf (err, err_len, "HTTP listener on %s ([%s] %s): %s", address, self->daemon->section, key, why);
        return BUS_ECONFIG;
    }
    size_t n = 0;
    while (def->routes && def->routes [n].fn)
        n++;
    self->routes = n ? calloc (n, sizeof *self->routes) : NULL;
    if (n && !self->routes) {
        snprintf (err, err_len, "out of memory");
        return BUS_ENOMEM;
    }
    self->nroutes = n;
    for (size_t i = 0; i < n; i++) {
        self->routes [i].run = self;
        self->routes [i].def = &def->routes [i];
        int rc = bus_http_server_route (self->http, def->routes [i].method, def->routes [i].path,
                                        s_on_http, &self->routes [i]);
        if (rc) {
            snprintf (err, err_len, "HTTP route %s %s: %s", def->routes [i].method ? def->routes [i].method : "*",
                      def->routes [i].path ? def->routes [i].path : "(none)", bus_strerror (rc));
            return rc;
        }
    }
    bus_info ("HTTP on %s (port %d)", address, bus_http_server_port (self->http));
    return 0;
}

static void
s_listener_stop (bus_daemon_run_t *self)
{
    bus_http_server_destroy (&self->http);
    free (self->routes);
    self->routes = NULL;
    self->nroutes = 0;
}

bus_follow_t *
bus_daemon_follower (bus_daemon_run_t *self, const char *name)
{
    for (size_t i = 0; self && i < self->nfollowers; i++)
        if (self->followers [i].def->name && streq (self->followers [i].def->name, name))
            return self->followers [i].follow;
    return NULL;
}

bus_http_server_t *
bus_daemon_listener (bus_daemon_run_t *self)
{
    return self ? self->http : NULL;
}

/*  start, then the timers, followers and listener; on a failure of any,
    stop. */
bus_daemon_run_t *
bus_daemon_start (const bus_daemon_t *daemon, bus_service_t *svc, char *err, size_t err_len)
{
    assert (daemon && daemon->section && svc);
    bus_daemon_run_t *self = calloc (1, sizeof *self);
    if (!self) {
        snprintf (err, err_len, "out of memory");
        return NULL;
    }
    self->daemon = daemon;
    self->svc = svc;
    if (daemon->start && daemon->start (svc, &self->state)) {
        snprintf (err, err_len, "the %s service's start failed", daemon->section);
        bus_daemon_stop (&self);
    }
    else
    if (s_timers_start (self, err, err_len)
    ||  s_followers_start (self, err, err_len)
    ||  s_listener_start (self, err, err_len))
        bus_daemon_stop (&self);
    return self;
}

/*  The listener, the followers, the timers, then stop. */
void
bus_daemon_stop (bus_daemon_run_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    bus_daemon_run_t *self = *self_p;
    s_listener_stop (self);
    s_followers_stop (self);
    s_timers_stop (self);
    if (self->daemon->stop)
        self->daemon->stop (self->svc, &self->state);
    free (self);
    *self_p = NULL;
}

/*  Arguments, config, logging, then the service and the daemon on it for
    as long as the reactor runs. */
int
bus_daemon_main (int argc, char **argv, const bus_daemon_t *daemon)
{
    const char *config_path = NULL;
    const char *name = bus_service_name (daemon->section);
    if (!name) {
        fprintf (stderr, "%s: '%s' is not a service of bus_services.def\n", argv [0], daemon->section);
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        if (streq (argv [i], "--config") && i + 1 < argc)
            config_path = argv [++i];
        else if (streq (argv [i], "--version")) {
            printf ("sanctum-%s %s\n", name, SANCTUM_VERSION);
            return 0;
        }
        else if (streq (argv [i], "--help") || streq (argv [i], "-h")) {
            s_usage (stdout, argv [0]);
            return 0;
        }
        else {
            s_usage (stderr, argv [0]);
            return 2;
        }
    }
    if (!config_path)
        config_path = bus_default_config_path ();

    bus_log_init (name, "info");
    char err [512] = "";
    bus_config_t *config = NULL;
    if (bus_config_load (&config, config_path, err, sizeof err)) {
        bus_error ("configuration: %s", err);
        return 1;
    }
    bus_log_init (name, bus_config_str (config, "sanctum", "log_level"));
    int rc = 1;
    bus_daemon_run_t *run = NULL;
    bus_service_t *svc = bus_service_new (config, daemon->section, SANCTUM_VERSION,
                                          daemon->db_names, err, sizeof err);
    if (!svc) {
        bus_error ("cannot start: %s", err);
        goto done;
    }
    run = bus_daemon_start (daemon, svc, err, sizeof err);
    if (!run) {
        bus_error ("service start-up failed: %s", err);
        goto done;
    }
    rc = bus_service_run (svc) == 0 ? 0 : 1;
    bus_daemon_stop (&run);
done:
    bus_service_destroy (&svc);
    bus_config_destroy (&config);
    return rc;
}
