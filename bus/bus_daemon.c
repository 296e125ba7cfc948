/*  bus_daemon.c — argument parsing and life cycle shared by every daemon. */
#include "bus_daemon.h"
#include "bus_error.h"
#include "bus_log.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

const char *
bus_default_config_path (void)
{
    const char *env = getenv ("SANCTUM_CONFIG");
    if (env && *env)
        return env;
    return access ("./var/sanctum.conf", R_OK) == 0 ? "./var/sanctum.conf" : NULL;
}

static void
s_usage (FILE *out, const char *prog)
{
    fprintf (out, "usage: %s [--config FILE] [--version]\n"
                  "  --config FILE  configuration (default $SANCTUM_CONFIG, else ./var/sanctum.conf)\n",
             prog);
}

int
bus_daemon_main (int argc, char **argv, const bus_daemon_t *daemon)
{
    const char *config_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (streq (argv [i], "--config") && i + 1 < argc)
            config_path = argv [++i];
        else if (streq (argv [i], "--version")) {
            printf ("sanctum-%s %s\n", bus_service_name (daemon->section), SANCTUM_VERSION);
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

    bus_log_init (bus_service_name (daemon->section), "info");
    char err [512] = "";
    bus_config_t *config = NULL;
    if (bus_config_load (&config, config_path, err, sizeof err)) {
        bus_error ("configuration: %s", err);
        return 1;
    }
    bus_log_init (bus_service_name (daemon->section), bus_config_str (config, "sanctum", "log_level"));
    int rc = 1;
    void *state = NULL;
    bus_service_t *svc = bus_service_new (config, daemon->section, SANCTUM_VERSION,
                                          daemon->db_names, err, sizeof err);
    if (!svc) {
        bus_error ("cannot start: %s", err);
        goto done;
    }
    if (daemon->start && daemon->start (svc, &state)) {
        bus_error ("service start-up failed");
        goto done;
    }
    rc = bus_service_run (svc) == 0 ? 0 : 1;
    if (daemon->stop)
        daemon->stop (svc, &state);
done:
    bus_service_destroy (&svc);
    bus_config_destroy (&config);
    return rc;
}
