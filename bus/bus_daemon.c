/*  bus_daemon.c — argument parsing and life cycle shared by every daemon:
    the daemon's start, its timers on the service's reactor, its stop. */
#include "bus_daemon.h"
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
    int id;                       /* zloop's, or -1 while not set */
} s_timer_t;

struct bus_daemon_run_t {
    const bus_daemon_t *daemon;
    bus_service_t *svc;
    void *state;                  /* the daemon's, from start */
    size_t ntimers;
    s_timer_t *timers;
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
s_on_timer (zloop_t *loop, int timer_id, void *arg)
{
    s_timer_t *timer = arg;
    timer->def->fn (timer->run->svc, timer->run->state);
    return 0;
}

/*  The interval of a declared timer in ms, or -1 (err set) when it is not
    > 0. */
static long
s_interval (const bus_daemon_t *daemon, bus_service_t *svc, const bus_timer_t *def,
            char *err, size_t err_len)
{
    long ms = def->interval_ms;
    if (def->interval_key)
        ms = bus_config_int (bus_service_config (svc), daemon->section, def->interval_key);
    if (ms <= 0 || ms > INT32_MAX) {
        if (def->interval_key)
            snprintf (err, err_len, "timer %s: [%s] %s = %ld is not a positive interval",
                      def->name ? def->name : "?", daemon->section, def->interval_key, ms);
        else
            snprintf (err, err_len, "timer %s: interval_ms %ld is not positive",
                      def->name ? def->name : "?", ms);
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
        timer->id = -1;
        self->ntimers = i + 1;
        long ms = s_interval (daemon, self->svc, timer->def, err, err_len);
        if (ms < 0)
            return BUS_EINVAL;
        timer->id = zloop_timer (loop, (size_t) ms, 0, s_on_timer, timer);
        if (timer->id == -1) {
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
    zloop_t *loop = bus_service_loop (self->svc);
    for (size_t i = 0; i < self->ntimers; i++)
        if (self->timers [i].id != -1) {
            zloop_timer_end (loop, self->timers [i].id);
            self->timers [i].id = -1;
        }
    free (self->timers);
    self->timers = NULL;
    self->ntimers = 0;
}

/*  start, then the timers; on a failure of either, stop. */
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
    if (s_timers_start (self, err, err_len))
        bus_daemon_stop (&self);
    /* the daemon's followers (bus_follow.h) and HTTP listener (bus_http.h)
       start here, after its timers, once they land */
    return self;
}

/*  The timers, then stop. */
void
bus_daemon_stop (bus_daemon_run_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    bus_daemon_run_t *self = *self_p;
    /* its HTTP listener and followers stop here, before its timers */
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
