/*  test_service.c — a bus service for tests and benchmarks (see the header).

    The service thread owns the service from bus_service_new to
    bus_service_destroy; the starter learns the outcome of the creation
    through lock/cond, and stops the reactor through an atomic flag that a
    reactor timer polls every S_STOP_POLL_MS.
*/
#include <arpa/inet.h>
#include <assert.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bus_error.h"
#include "bus_service.h"
#include "test_service.h"

#define S_STOP_POLL_MS  20
#define S_PORT_WAIT_MS  2000        /* for a closed listener to let go */

struct test_service_t {
    char dir [256];
    bool own_dir;                   /* made here: removed at destroy */
    int ports [2];                  /* rpc, pub */
    char rpc [64];
    char pub [64];
    char server_key [BUS_KEY_Z85_LEN + 1];
    bus_config_t *config;
    /* the service thread */
    const bus_daemon_t *daemon;
    char version [64];
    int delay_ms;
    pthread_t thread;
    bool running;                   /* the thread exists, not yet joined */
    atomic_bool stop;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool created;                   /* creation tried; rc and err say how */
    int rc;
    char err [256];
};

/*  Write the config file at path for section. Returns 0 or
    BUS_EIO. */
static int
s_write_config (test_service_t *self, const char *path, const char *section,
                const char *sanctum_lines)
{
    FILE *f = fopen (path, "w");
    if (!f)
        return BUS_EIO;
    fprintf (f, "[sanctum]\ndata_dir = %s/var\nkeys_dir = %s/keys\nallow_dir = %s/keys/allow\n%s\n"
                "[%s]\nrpc = %s\npub = %s\n",
             self->dir, self->dir, self->dir, sanctum_lines ? sanctum_lines : "",
             section, self->rpc, self->pub);
    return fclose (f) == 0 ? 0 : BUS_EIO;
}

/*  Directory, ports, config file and config, the service's cert (allowed
    as svc:<name>). */
test_service_t *
test_service_new (const char *section, const char *root, const char *sanctum_lines,
                  char *err, size_t err_len)
{
    assert (section && err);
    test_service_t *self = calloc (1, sizeof *self);
    const char *name = bus_service_name (section);
    char tmp_name [64], path [300], principal [128];
    zcert_t *cert = NULL;
    int rc = BUS_EINVAL;
    if (self) {
        pthread_mutex_init (&self->lock, NULL);
        pthread_cond_init (&self->cond, NULL);
    }
    if (!self || !name) {
        snprintf (err, err_len, "no service %s (or out of memory)", section);
        goto done;
    }
    snprintf (tmp_name, sizeof tmp_name, "sanctum-%s", section);
    if (root && (size_t) snprintf (self->dir, sizeof self->dir, "%s", root) >= sizeof self->dir) {
        snprintf (err, err_len, "directory name too long: %s", root);
        goto done;
    }
    if (!root && test_service_tmpdir (self->dir, sizeof self->dir, tmp_name)) {
        snprintf (err, err_len, "cannot make a temporary directory");
        goto done;
    }
    self->own_dir = !root;
    if (test_service_free_ports (self->ports, 2)) {
        snprintf (err, err_len, "no free loopback port");
        goto done;
    }
    snprintf (self->rpc, sizeof self->rpc, "tcp://127.0.0.1:%d", self->ports [0]);
    snprintf (self->pub, sizeof self->pub, "tcp://127.0.0.1:%d", self->ports [1]);
    snprintf (path, sizeof path, "%s/sanctum.conf", self->dir);
    if (s_write_config (self, path, section, sanctum_lines)) {
        snprintf (err, err_len, "cannot write %s", path);
        goto done;
    }
    if (bus_config_load (&self->config, path, err, err_len))
        goto done;
    snprintf (principal, sizeof principal, "svc:%s", name);
    cert = test_service_cert (self, name, principal);
    if (!cert) {
        snprintf (err, err_len, "cannot make the keys under %s",
                  bus_config_str (self->config, "sanctum", "keys_dir"));
        goto done;
    }
    snprintf (self->server_key, sizeof self->server_key, "%s", zcert_public_txt (cert));
    rc = 0;
done:
    zcert_destroy (&cert);
    if (rc)
        test_service_destroy (&self);
    return self;
}

/*  Stop the thread, free the config, remove a directory made here. */
void
test_service_destroy (test_service_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    test_service_t *self = *self_p;
    if (self->running)
        test_service_stop (self);
    bus_config_destroy (&self->config);
    if (self->own_dir && self->dir [0])
        test_service_rmtree (self->dir);
    pthread_cond_destroy (&self->cond);
    pthread_mutex_destroy (&self->lock);
    free (self);
    *self_p = NULL;
}

/*  Accessors (see the header). */
bus_config_t *test_service_config (test_service_t *self) { return self->config; }
const char *test_service_dir (test_service_t *self) { return self->dir; }
const char *test_service_rpc (test_service_t *self) { return self->rpc; }
const char *test_service_pub (test_service_t *self) { return self->pub; }
const char *test_service_server_key (test_service_t *self) { return self->server_key; }

/*  Load or make a cert under keys_dir; allow it as principal unless NULL. */
zcert_t *
test_service_cert (test_service_t *self, const char *name, const char *principal)
{
    zcert_t *cert = bus_keys_load (bus_config_str (self->config, "sanctum", "keys_dir"), name, true);
    if (cert && principal
    &&  bus_allow_add (bus_config_str (self->config, "sanctum", "allow_dir"), name,
                       zcert_public_txt (cert), principal))
        zcert_destroy (&cert);
    return cert;
}

/* --- the service thread ---------------------------------------------------- */

/*  Whether port can be bound on loopback as libzmq binds it (with
    SO_REUSEADDR, so only a listener still open stands in the way). */
static bool
s_port_free (int port)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port),
                                .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    bool free_ = fd >= 0 && setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0
              && bind (fd, (struct sockaddr *) &addr, sizeof addr) == 0;
    if (fd >= 0)
        close (fd);
    return free_;
}

/*  Wait (at most S_PORT_WAIT_MS) until both ports can be bound: libzmq
    closes a destroyed socket's listener on its I/O thread a moment later,
    so a service made again at once could find its ports still taken. */
static void
s_wait_ports (test_service_t *self)
{
    for (int waited = 0; waited < S_PORT_WAIT_MS; waited += 5) {
        if (s_port_free (self->ports [0]) && s_port_free (self->ports [1]))
            return;
        zclock_sleep (5);
    }
}

/*  Reactor timer: leave the loop once the starter raised the flag. */
static int
s_on_stop (zloop_t *loop, int timer_id, void *arg)
{
    test_service_t *self = arg;
    return atomic_load (&self->stop) ? -1 : 0;
}

/*  Tell the starter how creation went. */
static void
s_created (test_service_t *self, int rc, const char *err)
{
    pthread_mutex_lock (&self->lock);
    self->rc = rc;
    snprintf (self->err, sizeof self->err, "%s", err);
    self->created = true;
    pthread_cond_signal (&self->cond);
    pthread_mutex_unlock (&self->lock);
}

/*  Create the service (after delay_ms), start the daemon (its start and
    timers, as bus_daemon_main does), tell the starter, run the reactor
    until stopped, then stop the daemon and destroy. */
static void *
s_service_thread (void *arg)
{
    test_service_t *self = arg;
    const bus_daemon_t *daemon = self->daemon;
    char name [16];                 /* the kernel's limit, with the NUL */
    snprintf (name, sizeof name, "%s-service", daemon->section);
    pthread_setname_np (pthread_self (), name);
    if (self->delay_ms)
        zclock_sleep (self->delay_ms);
    char err [256] = "";
    int rc = BUS_EINVAL;
    s_wait_ports (self);
    bus_daemon_run_t *run = NULL;
    bus_service_t *svc = bus_service_new (self->config, daemon->section, self->version,
                                          daemon->db_names, err, sizeof err);
    if (svc)
        run = bus_daemon_start (daemon, svc, err, sizeof err);
    if (run && zloop_timer (bus_service_loop (svc), S_STOP_POLL_MS, 0, s_on_stop, self) == -1)
        snprintf (err, sizeof err, "cannot set the stop timer");
    else
    if (run)
        rc = 0;
    if (rc && self->delay_ms)
        fprintf (stderr, "test_service: %s\n", err);
    s_created (self, rc, err);
    if (rc == 0)
        bus_service_run (svc);
    bus_daemon_stop (&run);
    bus_service_destroy (&svc);
    return NULL;
}

/*  Start the thread; with no delay, wait for the outcome of creation. */
int
test_service_start (test_service_t *self, const bus_daemon_t *daemon,
                    const char *version, int delay_ms, char *err, size_t err_len)
{
    assert (daemon && daemon->section && version);
    if (self->running) {
        snprintf (err, err_len, "the service is running already");
        return BUS_EINVAL;
    }
    self->daemon = daemon;
    snprintf (self->version, sizeof self->version, "%s", version);
    self->delay_ms = delay_ms;
    self->created = false;
    atomic_store (&self->stop, false);
    if (pthread_create (&self->thread, NULL, s_service_thread, self)) {
        snprintf (err, err_len, "cannot start the service thread");
        return BUS_EIO;
    }
    self->running = true;
    if (delay_ms)
        return 0;
    pthread_mutex_lock (&self->lock);
    while (!self->created)
        pthread_cond_wait (&self->cond, &self->lock);
    int rc = self->rc;
    pthread_mutex_unlock (&self->lock);
    if (rc) {
        snprintf (err, err_len, "%s", self->err);
        test_service_stop (self);
    }
    return rc;
}

/*  Raise the flag the reactor timer polls, and join. */
int
test_service_stop (test_service_t *self)
{
    if (!self->running)
        return BUS_EINVAL;
    atomic_store (&self->stop, true);
    pthread_join (self->thread, NULL);
    self->running = false;
    s_wait_ports (self);
    return self->created ? self->rc : BUS_EINVAL;
}

/* --- shared helpers -------------------------------------------------------- */

/*  mkdtemp of /tmp/<name>.XXXXXX. */
int
test_service_tmpdir (char *dir, size_t size, const char *name)
{
    if ((size_t) snprintf (dir, size, "/tmp/%s.XXXXXX", name) >= size || !mkdtemp (dir)) {
        if (size)
            dir [0] = 0;
        return BUS_EIO;
    }
    return 0;
}

/*  nftw callback: remove one entry. */
static int
s_rm (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove (path);
}

/*  Depth first, without following links. */
void
test_service_rmtree (const char *dir)
{
    nftw (dir, s_rm, 16, FTW_DEPTH | FTW_PHYS);
}

/*  Bind port 0 on loopback n times, read each port back, then release
    them all. */
int
test_service_free_ports (int *ports, int n)
{
    int fds [n];
    int rc = 0;
    for (int i = 0; i < n; i++) {
        fds [i] = socket (AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
        socklen_t len = sizeof addr;
        ports [i] = -1;
        if (fds [i] >= 0 && bind (fds [i], (struct sockaddr *) &addr, sizeof addr) == 0
        &&  getsockname (fds [i], (struct sockaddr *) &addr, &len) == 0)
            ports [i] = ntohs (addr.sin_port);
        else
            rc = -1;
    }
    for (int i = 0; i < n; i++)
        if (fds [i] >= 0)
            close (fds [i]);
    return rc;
}

int
test_service_free_port (void)
{
    int port;
    return test_service_free_ports (&port, 1) ? -1 : port;
}

/*  The summary line tests/run.sh counts. */
int
test_service_summary (int total, int failed)
{
    printf ("%d passed, %d failed\n", total - failed, failed);
    return failed ? 1 : 0;
}

int64_t
test_service_counter (bus_client_t *client, const char *name)
{
    proto_msg_t *reply = NULL;
    int64_t value = -1;
    if (bus_client_call (client, "stats", NULL, NULL, &reply) == 0 && reply->ok)
        value = json_integer_value (json_object_get (json_object_get (reply->body, "counters"), name));
    proto_msg_destroy (&reply);
    return value;
}
