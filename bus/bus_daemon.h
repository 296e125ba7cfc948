/*  bus_daemon.h — the whole main() of a Sanctum daemon.

    Parses `--config FILE` (default $SANCTUM_CONFIG, else ./var/sanctum.conf
    when it exists, else the built-in defaults), `--version`, `--help`;
    loads the config, starts logging, creates the service, lets the service
    module register its handlers, runs the reactor until SIGTERM/SIGINT,
    then tears down. Exit codes: 0 clean stop, 1 start-up failure, 2 usage.
*/
#ifndef BUS_DAEMON_H
#define BUS_DAEMON_H

#include "bus_service.h"

#define SANCTUM_VERSION "0.1.0"

typedef struct {
    const char *section;                 /* config section, e.g. "authz" */
    const char *const *db_names;         /* the service's own LMDB databases */
    /* register handlers; *state is passed back to stop (may stay NULL) */
    int (*start) (bus_service_t *svc, void **state);
    void (*stop) (bus_service_t *svc, void **state);
} bus_daemon_t;

int bus_daemon_main (int argc, char **argv, const bus_daemon_t *daemon);

/*  The config path the daemons and sanctumctl use when none is given. */
const char *bus_default_config_path (void);

#endif
