/*  ctl_up.c — `sanctumctl up`: every daemon under one small supervisor.

    Creates config and keys on first start (ctl_init_local), starts the
    daemons in the order of bus/bus_services.def, where everything the
    orchestrator calls comes first (the binaries beside sanctumctl, or on
    PATH), restarts one that exits with exponential backoff (1 s doubling
    to 30 s, reset after a minute of good running), and on SIGINT/SIGTERM
    stops them in reverse order: SIGTERM, then SIGKILL after 5 s.

    On first start of the default local setup (./var/sanctum.conf, not a
    config named by --config or SANCTUM_CONFIG; `--seed` asks for it with
    any config, `--no-seed` not at all) a `sanctumctl seed`
    process runs beside them: once the services answer it loads the
    procurement example (ctl_seed.c); later starts find it seeded and
    change nothing.
*/
#include "ctl.h"
#include "bus_service.h"

#include <errno.h>
#include <libgen.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#define S_BACKOFF_MAX_MS   30000
#define S_HEALTHY_AFTER_MS 60000
#define S_STOP_GRACE_MS    5000

typedef struct {
    const char *name;
    char path [4096];
    pid_t pid;
    int64_t started_ms;
    int64_t restart_at_ms;
    int backoff_ms;
    int restarts;
} s_child_t;

static volatile sig_atomic_t s_stop;

static void
s_on_signal (int sig)
{
    s_stop = 1;
}

/*  The daemon binary: beside our own executable, else from PATH. */
static void
s_find_binary (s_child_t *child)
{
    char self [4096];
    ssize_t n = readlink ("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self [n] = 0;
        snprintf (child->path, sizeof child->path, "%s/sanctum-%s", dirname (self), child->name);
        if (access (child->path, X_OK) == 0)
            return;
    }
    snprintf (child->path, sizeof child->path, "sanctum-%s", child->name);
}

static void
s_spawn (ctl_t *ctl, s_child_t *child)
{
    pid_t pid = fork ();
    if (pid == 0) {
        /* a group of our own: a terminal's Ctrl-C reaches the supervisor
           only, which stops the daemons in order (CZMQ installs its own
           SIGINT handler after exec, so ignoring SIGINT would not last) */
        setpgid (0, 0);
        prctl (PR_SET_PDEATHSIG, SIGTERM);  /* and if the supervisor dies, we stop too */
        if (ctl->config_path)
            execlp (child->path, child->path, "--config", ctl->config_path, (char *) NULL);
        else
            execlp (child->path, child->path, (char *) NULL);
        fprintf (stderr, "sanctumctl up: cannot run %s: %s\n", child->path, strerror (errno));
        _exit (127);
    }
    if (pid > 0)
        setpgid (pid, pid);            /* also here: no race with the child */
    child->pid = pid;
    child->started_ms = zclock_mono ();
    if (pid < 0)
        child->pid = 0;
}

/*  Stop one child: SIGTERM, wait, SIGKILL. */
static void
s_stop_child (s_child_t *child)
{
    if (child->pid <= 0)
        return;
    fprintf (stderr, "sanctumctl up: stopping %s\n", child->name);
    kill (child->pid, SIGTERM);
    int64_t until = zclock_mono () + S_STOP_GRACE_MS;
    while (zclock_mono () < until) {
        if (waitpid (child->pid, NULL, WNOHANG) == child->pid) {
            child->pid = 0;
            return;
        }
        usleep (20000);
    }
    fprintf (stderr, "sanctumctl up: %s did not stop in time, killing it\n", child->name);
    kill (child->pid, SIGKILL);
    waitpid (child->pid, NULL, 0);
    child->pid = 0;
}

/*  The seeder: this program again, `seed`, its words on stderr. */
static pid_t
s_spawn_seeder (ctl_t *ctl)
{
    char self [4096];
    ssize_t n = readlink ("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return 0;
    self [n] = 0;
    pid_t pid = fork ();
    if (pid == 0) {
        setpgid (0, 0);
        prctl (PR_SET_PDEATHSIG, SIGTERM);
        dup2 (2, 1);
        execl (self, "sanctumctl", "--config", ctl->config_path, "--key", ctl->key_name, "seed", (char *) NULL);
        _exit (127);
    }
    return pid > 0 ? pid : 0;
}

int
ctl_cmd_up (ctl_t *ctl)
{
    /* the default local setup: no config named, or ./var's found by default */
    int seed = !ctl->config_path || (streq (ctl->config_path, "./var/sanctum.conf") && !getenv ("SANCTUM_CONFIG"));
    for (int i = 0; i < ctl->argc; i++) {
        if (streq (ctl->argv [i], "--seed"))
            seed = 1;
        else if (streq (ctl->argv [i], "--no-seed"))
            seed = 0;
        else {
            fprintf (stderr, "usage: sanctumctl up [--seed|--no-seed]\n");
            return CTL_USAGE;
        }
    }
    if (!ctl->config_path) {
        ctl->config_path = "./var/sanctum.conf";
        char err [512];
        bus_config_destroy (&ctl->config);
        if (access (ctl->config_path, R_OK) == 0 && bus_config_load (&ctl->config, ctl->config_path, err, sizeof err)) {
            fprintf (stderr, "sanctumctl: configuration: %s\n", err);
            return CTL_ERROR;
        }
        if (!ctl->config && bus_config_load (&ctl->config, NULL, err, sizeof err))
            return CTL_ERROR;
    }
    if (ctl_init_local (ctl))
        return CTL_ERROR;

    struct sigaction sa = { .sa_handler = s_on_signal };
    sigemptyset (&sa.sa_mask);
    sigaction (SIGINT, &sa, NULL);
    sigaction (SIGTERM, &sa, NULL);

    s_child_t children [BUS_SERVICES_COUNT] = { { 0 } };
    size_t n = 0;
    for (; bus_services [n].name; n++) {
        children [n].name = bus_services [n].name;
        children [n].backoff_ms = 1000;
        s_find_binary (&children [n]);
        s_spawn (ctl, &children [n]);
    }
    fprintf (stderr, "sanctumctl up: %zu services started (config %s); Ctrl-C stops them all\n", n, ctl->config_path);
    pid_t seeder = seed ? s_spawn_seeder (ctl) : 0;

    while (!s_stop) {
        int status;
        pid_t pid = waitpid (-1, &status, WNOHANG);
        int64_t now = zclock_mono ();
        if (pid > 0 && pid == seeder) {
            seeder = 0;
            if (!WIFEXITED (status) || WEXITSTATUS (status))
                fprintf (stderr, "sanctumctl up: seeding the example did not finish (`sanctumctl seed` tries again)\n");
        }
        for (size_t i = 0; i < n && pid > 0; i++) {
            s_child_t *c = &children [i];
            if (c->pid != pid)
                continue;
            c->pid = 0;
            if (now - c->started_ms >= S_HEALTHY_AFTER_MS)
                c->backoff_ms = 1000;
            c->restart_at_ms = now + c->backoff_ms;
            fprintf (stderr, "sanctumctl up: %s exited (%s %d); restarting in %d ms\n", c->name,
                     WIFSIGNALED (status) ? "signal" : "status",
                     WIFSIGNALED (status) ? WTERMSIG (status) : WEXITSTATUS (status), c->backoff_ms);
            c->backoff_ms = c->backoff_ms * 2 > S_BACKOFF_MAX_MS ? S_BACKOFF_MAX_MS : c->backoff_ms * 2;
        }
        for (size_t i = 0; i < n; i++) {
            s_child_t *c = &children [i];
            if (c->pid == 0 && c->restart_at_ms && now >= c->restart_at_ms) {
                c->restart_at_ms = 0;
                c->restarts++;
                s_spawn (ctl, c);
            }
        }
        if (pid <= 0)
            usleep (100000);
    }
    fprintf (stderr, "sanctumctl up: stopping\n");
    if (seeder > 0) {
        kill (seeder, SIGTERM);
        waitpid (seeder, NULL, 0);
    }
    for (size_t i = n; i-- > 0;)
        s_stop_child (&children [i]);
    fprintf (stderr, "sanctumctl up: all stopped\n");
    return CTL_OK;
}
