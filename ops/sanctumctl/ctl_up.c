/*  ctl_up.c — `sanctumctl up`: every daemon under one small supervisor.

    Creates config and keys on first start (ctl_init_local), then starts
    the daemons one at a time in the order of bus/bus_services.def (where
    everything the orchestrator calls comes first), each only once the one
    before it is ready: every daemon says READY=1 on $NOTIFY_SOCKET once it
    serves (bus_notify.h, as under systemd), and the supervisor listens on
    an abstract socket of its own, telling children apart by the sender's
    pid (SO_PASSCRED). A daemon not ready within S_READY_TIMEOUT_MS is
    reported and the rest start anyway.

    Each daemon's stdout and stderr come through a pipe and are written on
    our stderr a line at a time, prefixed with its name ("authz        | "),
    as docker-compose does. On a terminal (and without NO_COLOR) the JSON
    log lines (bus_log.h) are shown for people instead: the time, the
    service in its colour, the level, the message, then the other fields as
    key=value.

    A daemon that exits is restarted with exponential backoff (1 s doubling
    to 30 s, reset after a minute of good running). On SIGINT/SIGTERM the
    daemons stop in reverse order: SIGTERM, then SIGKILL after 5 s.

    On first start of the default local setup (./var/sanctum.conf, not a
    config named by --config or SANCTUM_CONFIG; `--seed` asks for it with
    any config, `--no-seed` not at all) a `sanctumctl seed` process runs
    once every daemon is up: it loads the procurement example
    (ctl_seed.c); later starts find it seeded and change nothing.
*/
#include "ctl.h"
#include "bus_service.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define S_BACKOFF_MAX_MS   30000
#define S_HEALTHY_AFTER_MS 60000
#define S_STOP_GRACE_MS    5000
#define S_SEED_GRACE_MS    1000     /* seeding is idempotent: killing it loses nothing */
#define S_READY_TIMEOUT_MS 30000
#define S_LINE_MAX         8192     /* a longer line is written in pieces */

typedef struct {
    const char *name;
    char path [4096];
    pid_t pid;
    int out;                        /* read end of its stdout and stderr, or -1 */
    char line [S_LINE_MAX];         /* a line not yet ended */
    size_t line_len;
    bool ready;                     /* said READY=1 since it was last started */
    int64_t started_ms;
    int64_t restart_at_ms;
    int backoff_ms;
    int restarts;
} s_child_t;

typedef struct {
    ctl_t *ctl;
    s_child_t children [BUS_SERVICES_COUNT];
    size_t n;
    int notify;                     /* our NOTIFY_SOCKET, or -1 */
    char notify_name [108];
    bool pretty;                    /* a terminal: JSON lines shown for people */
    pid_t seeder;
} s_up_t;

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

/*  An abstract datagram socket for the daemons' READY=1, named after our
    pid; -1 (and no readiness to wait for) when it cannot be made. */
static int
s_notify_open (s_up_t *up)
{
    snprintf (up->notify_name, sizeof up->notify_name, "@sanctum-up-%d", (int) getpid ());
    int fd = socket (AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    size_t len = strlen (up->notify_name);
    memcpy (addr.sun_path, up->notify_name, len);
    addr.sun_path [0] = 0;
    int on = 1;
    if (bind (fd, (struct sockaddr *) &addr, (socklen_t) (offsetof (struct sockaddr_un, sun_path) + len))
        || setsockopt (fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof on)) {
        close (fd);
        return -1;
    }
    return fd;
}

static void
s_spawn (s_up_t *up, s_child_t *child)
{
    int pipefd [2];
    if (pipe2 (pipefd, O_CLOEXEC)) {
        fprintf (stderr, "sanctumctl up: cannot start %s: pipe: %s\n", child->name, strerror (errno));
        child->pid = 0;
        return;
    }
    pid_t pid = fork ();
    if (pid == 0) {
        /* a group of our own: a terminal's Ctrl-C reaches the supervisor
           only, which stops the daemons in order (CZMQ installs its own
           SIGINT handler after exec, so ignoring SIGINT would not last) */
        setpgid (0, 0);
        prctl (PR_SET_PDEATHSIG, SIGTERM);  /* and if the supervisor dies, we stop too */
        dup2 (pipefd [1], STDOUT_FILENO);
        dup2 (pipefd [1], STDERR_FILENO);
        if (up->notify >= 0)
            setenv ("NOTIFY_SOCKET", up->notify_name, 1);
        else
            unsetenv ("NOTIFY_SOCKET");
        unsetenv ("WATCHDOG_USEC");         /* ours, if any, is not theirs */
        unsetenv ("WATCHDOG_PID");
        if (up->ctl->config_path)
            execlp (child->path, child->path, "--config", up->ctl->config_path, (char *) NULL);
        else
            execlp (child->path, child->path, (char *) NULL);
        fprintf (stderr, "sanctumctl up: cannot run %s: %s\n", child->path, strerror (errno));
        _exit (127);
    }
    close (pipefd [1]);
    if (pid > 0) {
        setpgid (pid, pid);            /* also here: no race with the child */
        fcntl (pipefd [0], F_SETFL, O_NONBLOCK);
        child->out = pipefd [0];
    }
    else {
        close (pipefd [0]);
        child->out = -1;
    }
    child->pid = pid > 0 ? pid : 0;
    child->ready = false;
    child->line_len = 0;
    child->started_ms = zclock_mono ();
}

/*  One line of a daemon's output on our stderr: prefixed with its name, or
    for people when it is one of bus_log's JSON lines and pretty is on. */
static void
s_emit (s_up_t *up, s_child_t *child, const char *text, size_t len)
{
    static const char *colours [] = { "36", "32", "33", "35", "34", "31", "96", "92" };
    size_t index = (size_t) (child - up->children);
    json_t *line = NULL;
    if (up->pretty && len && text [0] == '{')
        line = json_loadb (text, len, 0, NULL);
    const char *msg = json_string_value (json_object_get (line, "msg"));
    if (!msg) {
        if (up->pretty)
            fprintf (stderr, "\033[%sm%-12s\033[0m | %.*s\n", colours [index % 8], child->name, (int) len, text);
        else
            fprintf (stderr, "%-12s | %.*s\n", child->name, (int) len, text);
        json_decref (line);
        return;
    }
    const char *ts = json_string_value (json_object_get (line, "ts"));
    const char *level = json_string_value (json_object_get (line, "level"));
    char fields [2048] = "";
    size_t used = 0;
    const char *key;
    json_t *value;
    json_object_foreach (line, key, value) {
        if (streq (key, "ts") || streq (key, "level") || streq (key, "service") || streq (key, "msg")
            || streq (key, "trace") || used >= sizeof fields)
            continue;
        char *v = json_is_string (value) ? NULL : json_dumps (value, JSON_COMPACT | JSON_ENCODE_ANY);
        int n = snprintf (fields + used, sizeof fields - used, " %s=%s", key, v ? v : json_string_value (value));
        free (v);
        used = n > 0 ? used + (size_t) n : used;
    }
    bool loud = level && (streq (level, "warn") || streq (level, "error"));
    fprintf (stderr, "%.12s \033[%sm%-12s\033[0m %s%-5s%s %s\033[2m%s\033[0m\n",
             ts && strlen (ts) >= 23 ? ts + 11 : "", colours [index % 8], child->name,
             loud ? "\033[1;31m" : "", level ? level : "", loud ? "\033[0m" : "", msg, fields);
    json_decref (line);
}

/*  Read what a daemon wrote, a line at a time. At end of file (it exited
    and nothing else holds the pipe) the rest is written and the pipe
    closed. */
static void
s_read_output (s_up_t *up, s_child_t *child)
{
    while (child->out >= 0) {
        ssize_t got = read (child->out, child->line + child->line_len, sizeof child->line - child->line_len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
                if (child->line_len)
                    s_emit (up, child, child->line, child->line_len);
                child->line_len = 0;
                close (child->out);
                child->out = -1;
            }
            return;
        }
        child->line_len += (size_t) got;
        char *start = child->line;
        char *end;
        while ((end = memchr (start, '\n', child->line_len - (size_t) (start - child->line)))) {
            s_emit (up, child, start, (size_t) (end - start));
            start = end + 1;
        }
        child->line_len -= (size_t) (start - child->line);
        memmove (child->line, start, child->line_len);
        if (child->line_len == sizeof child->line) {     /* too long: write it in pieces */
            s_emit (up, child, child->line, child->line_len);
            child->line_len = 0;
        }
    }
}

/*  READY=1 from a daemon: the sender's pid (SO_PASSCRED) says which. */
static void
s_read_notify (s_up_t *up)
{
    for (;;) {
        char data [512];
        char control [CMSG_SPACE (sizeof (struct ucred))];
        struct iovec iov = { .iov_base = data, .iov_len = sizeof data - 1 };
        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
                              .msg_control = control, .msg_controllen = sizeof control };
        ssize_t got = recvmsg (up->notify, &msg, MSG_DONTWAIT);
        if (got < 0)
            return;
        data [got] = 0;
        struct cmsghdr *cmsg = CMSG_FIRSTHDR (&msg);
        if (!cmsg || cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_CREDENTIALS)
            continue;
        struct ucred cred;
        memcpy (&cred, CMSG_DATA (cmsg), sizeof cred);
        bool ready = strncmp (data, "READY=1", 7) == 0 || strstr (data, "\nREADY=1");
        for (size_t i = 0; i < up->n && ready; i++)
            if (up->children [i].pid == cred.pid)
                up->children [i].ready = true;
    }
}

/*  Wait up to timeout_ms for output or a notification, and take them. */
static void
s_pump (s_up_t *up, int timeout_ms)
{
    struct pollfd fds [BUS_SERVICES_COUNT + 1];
    s_child_t *of [BUS_SERVICES_COUNT + 1];
    nfds_t n = 0;
    if (up->notify >= 0) {
        fds [n] = (struct pollfd) { .fd = up->notify, .events = POLLIN };
        of [n++] = NULL;
    }
    for (size_t i = 0; i < up->n; i++)
        if (up->children [i].out >= 0) {
            fds [n] = (struct pollfd) { .fd = up->children [i].out, .events = POLLIN };
            of [n++] = &up->children [i];
        }
    if (poll (fds, n, timeout_ms) <= 0)
        return;
    for (nfds_t i = 0; i < n; i++) {
        if (!fds [i].revents)
            continue;
        if (of [i])
            s_read_output (up, of [i]);
        else
            s_read_notify (up);
    }
}

/*  Take every child that exited: the seeder's result, or a daemon to
    restart after its backoff. */
static void
s_reap (s_up_t *up)
{
    int status;
    pid_t pid;
    while ((pid = waitpid (-1, &status, WNOHANG)) > 0) {
        int64_t now = zclock_mono ();
        if (pid == up->seeder) {
            up->seeder = 0;
            if (!WIFEXITED (status) || WEXITSTATUS (status))
                fprintf (stderr, "sanctumctl up: seeding the example did not finish (`sanctumctl seed` tries again)\n");
            continue;
        }
        for (size_t i = 0; i < up->n; i++) {
            s_child_t *c = &up->children [i];
            if (c->pid != pid)
                continue;
            s_read_output (up, c);          /* its last words first */
            c->pid = 0;
            c->ready = false;
            if (now - c->started_ms >= S_HEALTHY_AFTER_MS)
                c->backoff_ms = 1000;
            c->restart_at_ms = now + c->backoff_ms;
            fprintf (stderr, "sanctumctl up: %s exited (%s %d); restarting in %d ms\n", c->name,
                     WIFSIGNALED (status) ? "signal" : "status",
                     WIFSIGNALED (status) ? WTERMSIG (status) : WEXITSTATUS (status), c->backoff_ms);
            c->backoff_ms = c->backoff_ms * 2 > S_BACKOFF_MAX_MS ? S_BACKOFF_MAX_MS : c->backoff_ms * 2;
        }
    }
}

/*  Start the daemons in order, each once the one before is ready. */
static void
s_start_in_order (s_up_t *up)
{
    for (size_t i = 0; i < up->n && !s_stop; i++) {
        s_child_t *c = &up->children [i];
        s_spawn (up, c);
        if (up->notify < 0)
            continue;
        int64_t until = c->started_ms + S_READY_TIMEOUT_MS;
        while (!s_stop && c->pid && !c->ready && zclock_mono () < until) {
            s_pump (up, 50);
            s_reap (up);
        }
        if (c->ready)
            fprintf (stderr, "sanctumctl up: %s ready (%d ms)\n", c->name,
                     (int) (zclock_mono () - c->started_ms));
        else if (!s_stop && c->pid)
            fprintf (stderr, "sanctumctl up: %s not ready after %d s; starting the rest\n", c->name,
                     S_READY_TIMEOUT_MS / 1000);
        else if (!s_stop)
            fprintf (stderr, "sanctumctl up: %s exited before it was ready; starting the rest\n", c->name);
    }
}

/*  Stop one child: SIGTERM, wait (its output still read), SIGKILL. */
static void
s_stop_child (s_up_t *up, s_child_t *child)
{
    if (child->pid <= 0)
        return;
    fprintf (stderr, "sanctumctl up: stopping %s\n", child->name);
    kill (child->pid, SIGTERM);
    int64_t until = zclock_mono () + S_STOP_GRACE_MS;
    while (zclock_mono () < until) {
        if (waitpid (child->pid, NULL, WNOHANG) == child->pid) {
            s_read_output (up, child);
            child->pid = 0;
            return;
        }
        s_pump (up, 20);
    }
    fprintf (stderr, "sanctumctl up: %s did not stop in time, killing it\n", child->name);
    kill (child->pid, SIGKILL);
    waitpid (child->pid, NULL, 0);
    s_read_output (up, child);
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

    static s_up_t up;           /* the children's line buffers: ~60 KiB */
    up = (s_up_t) { .ctl = ctl, .seeder = 0 };
    up.notify = s_notify_open (&up);
    if (up.notify < 0)
        fprintf (stderr, "sanctumctl up: no notify socket (%s): starting without waiting for readiness\n",
                 strerror (errno));
    up.pretty = isatty (STDERR_FILENO) && !getenv ("NO_COLOR");
    for (; bus_services [up.n].name; up.n++) {
        s_child_t *c = &up.children [up.n];
        c->name = bus_services [up.n].name;
        c->out = -1;
        c->backoff_ms = 1000;
        s_find_binary (c);
    }
    s_start_in_order (&up);
    if (!s_stop) {
        fprintf (stderr, "sanctumctl up: %zu services started (config %s); Ctrl-C stops them all\n", up.n,
                 ctl->config_path);
        up.seeder = seed ? s_spawn_seeder (ctl) : 0;
    }

    while (!s_stop) {
        s_pump (&up, 100);
        s_reap (&up);
        int64_t now = zclock_mono ();
        for (size_t i = 0; i < up.n; i++) {
            s_child_t *c = &up.children [i];
            if (c->pid == 0 && c->restart_at_ms && now >= c->restart_at_ms) {
                c->restart_at_ms = 0;
                c->restarts++;
                s_spawn (&up, c);
            }
        }
    }
    fprintf (stderr, "sanctumctl up: stopping\n");
    if (up.seeder > 0) {
        /* a seeder still waiting for a service that does not answer keeps
           retrying (CZMQ takes its SIGTERM): a second, then killed */
        kill (up.seeder, SIGTERM);
        int64_t until = zclock_mono () + S_SEED_GRACE_MS;
        pid_t gone;
        while ((gone = waitpid (up.seeder, NULL, WNOHANG)) == 0 && zclock_mono () < until)
            s_pump (&up, 20);
        if (gone == 0) {
            kill (up.seeder, SIGKILL);
            waitpid (up.seeder, NULL, 0);
        }
    }
    for (size_t i = up.n; i-- > 0;)
        s_stop_child (&up, &up.children [i]);
    if (up.notify >= 0)
        close (up.notify);
    fprintf (stderr, "sanctumctl up: all stopped\n");
    return CTL_OK;
}
