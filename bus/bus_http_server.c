/*  bus_http_server.c — libmicrohttpd in epoll mode, run by the zloop.

    MHD's epoll descriptor is a zloop poller; each readiness and each
    expiry of the timer MHD_get_timeout asks for calls MHD_run, which runs
    the access handler (s_access) for each request as it arrives. s_access
    gathers the body, applies the caps, then routes the complete request to
    its handler. Deferred exchanges and idle streams suspend their
    connection; answering or writing resumes it and schedules a run.

    MHD's own timeout is an idle one (a client trickling a byte a second
    never trips it), so each connection also carries the time its current
    request began (s_conn_t, MHD's socket context); a sweep timer shuts the
    socket of any whose request is not complete within request_timeout_ms,
    and MHD then sees the connection end.

    MHD does not poll a suspended connection, so a client that goes away
    from a deferred exchange or an idle stream would be seen only once it
    is resumed. The zloop watches the socket of each suspended exchange
    instead (s_watch): readable with nothing to read (end of file, reset)
    is a client gone; the exchange is resumed and ended (its owner's gone
    callback runs). Readable with bytes (a pipelined request, a TLS
    record) ends the watch: those are MHD's.
*/
#include "bus_http_server.h"
#include "bus_alarm.h"
#include "bus_error.h"
#include "bus_log.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <errno.h>
#include <sys/socket.h>

#define S_DEFAULT_MAX_BODY       (1u << 20)
#define S_DEFAULT_HEADER_BYTES   (16u << 10)
#define S_MIN_HEADER_BYTES       (4u << 10)
#define S_DEFAULT_MAX_HEADERS    64
#define S_DEFAULT_CONNECTIONS    256
#define S_DEFAULT_PER_IP         64
#define S_DEFAULT_REQUEST_MS     10000
#define S_DEFAULT_IDLE_S         30
#define S_DEFAULT_STREAM_BUFFER  (1u << 20)
#define S_STREAM_BLOCK           4096

/*  One connection: when its current request began (MHD socket context). */
typedef struct s_conn_t {
    struct s_conn_t *prev, *next;
    int fd;
    int64_t since;              /* zclock_mono ms the current request began */
    bool waiting;               /* a request is being received */
    char peer [INET6_ADDRSTRLEN];
} s_conn_t;

typedef struct {
    char *method;               /* NULL: any */
    char *path;
    size_t prefix_len;          /* path ended in '*': match this many bytes */
    bus_http_handler_fn *handler;
    void *arg;
} s_route_t;

typedef enum {
    S_READING,                  /* the body is arriving */
    S_HANDLING,                 /* inside the handler */
    S_DEFERRED,                 /* the handler will answer later; suspended */
    S_ANSWERED,                 /* a response is ready to queue */
    S_STREAM_READY,             /* a stream is ready to queue */
    S_QUEUED,                   /* the response is MHD's */
    S_STREAMING                 /* the stream is MHD's; writes go to buf */
} s_state_t;

struct bus_http_exchange_t {
    bus_http_exchange_t *prev, *next;
    bus_http_server_t *server;
    struct MHD_Connection *conn;
    s_conn_t *sconn;
    s_state_t state;
    char *method, *path;
    char *body;
    size_t body_len, body_cap;
    char **hdr;                 /* response headers: name, value, name, value... */
    size_t hdr_count;
    struct MHD_Response *response;
    int status;
    bus_http_gone_fn *gone;
    void *gone_arg;
    bool owner_done;            /* answered or closed by its owner: no gone */
    bool suspended;
    char *buf;                  /* a stream's unsent bytes: buf [off .. len) */
    size_t off, len, cap;
    bool closing;               /* the owner closed the stream */
    bus_http_drained_fn *drained;   /* a stream's queue emptied */
    void *drained_arg;
    int watched_fd;             /* the socket on the zloop (s_watch), or -1 */
    bool peer_gone;             /* the client closed or reset it */
};

struct bus_http_server_t {
    zloop_t *loop;
    struct MHD_Daemon *mhd;
    int epoll_fd;
    bool polled;
    bus_alarm_t *run_timer;     /* one-shot: MHD_get_timeout, or NULL */
    bus_alarm_t *sweep_timer;
    int kick_fd;                /* eventfd: "run MHD at the next poll" */
    bool kicked;
    bool in_run, run_again;
    bool closed_in_run;         /* a connection closed during MHD_run */
    bool stopping;
    int port;
    size_t max_body;
    int max_headers;
    int request_timeout_ms;
    size_t max_stream_buffer;
    s_route_t *routes;
    size_t route_count;
    s_conn_t *conns;
    bus_http_exchange_t *exchanges;
    size_t active;
};

static void s_run (bus_http_server_t *self);
static void s_schedule (bus_http_server_t *self);
static void s_wake (bus_http_exchange_t *ex);

/*  MHD's log lines, at debug (a client's mistakes are not ours to shout). */
static void
s_mhd_log (void *cls, const char *fmt, va_list ap)
{
    char line [512];
    vsnprintf (line, sizeof line, fmt, ap);
    size_t n = strlen (line);
    while (n && (line [n - 1] == '\n' || line [n - 1] == '\r'))
        line [--n] = 0;
    bus_debug ("http server: %s", line);
}

/*  zloop: MHD's timeout is due. */
static int
s_run_timer_fired (zloop_t *loop, void *arg)
{
    bus_http_server_t *self = arg;
    bus_alarm_end (&self->run_timer);
    s_run (self);
    return 0;
}

/*  Arm the run timer for delay_ms (replacing it). */
static void
s_arm (bus_http_server_t *self, long long delay_ms)
{
    bus_alarm_end (&self->run_timer);
    if (delay_ms > 60000)
        delay_ms = 60000;
    self->run_timer = bus_alarm_new (self->loop, (size_t) delay_ms, 1, s_run_timer_fired, self);
}

/*  Run MHD at the next turn of the zloop, after it has polled: through
    an eventfd, not a zero-delay timer, which zloop would fire again in
    the same pass (a chain of them would never let it poll). */
static void
s_schedule (bus_http_server_t *self)
{
    if (self->in_run)
        self->run_again = true;
    else
    if (!self->kicked) {
        uint64_t one = 1;
        if (write (self->kick_fd, &one, sizeof one) == sizeof one)
            self->kicked = true;
    }
}

/*  zloop: the eventfd s_schedule wrote to. */
static int
s_kick_ready (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    bus_http_server_t *self = arg;
    uint64_t count;
    if (read (self->kick_fd, &count, sizeof count) < 0) {
        /* nothing to read: already drained */
    }
    self->kicked = false;
    s_run (self);
    return 0;
}

/*  MHD_run, then arm the timer MHD asks for. A connection closed in the
    run calls for another: MHD re-arms a listening socket it stopped
    polling at the connection cap only at the start of a run. */
static void
s_run (bus_http_server_t *self)
{
    self->in_run = true;
    self->run_again = false;
    self->closed_in_run = false;
    MHD_run (self->mhd);
    self->in_run = false;
    MHD_UNSIGNED_LONG_LONG timeout;
    if (self->run_again || self->closed_in_run)
        s_schedule (self);
    else
    if (MHD_get_timeout (self->mhd, &timeout) == MHD_YES) {
        if (timeout == 0)
            s_schedule (self);
        else
            s_arm (self, (long long) timeout);
    }
    else
        bus_alarm_end (&self->run_timer);
}

/*  zloop: MHD's epoll descriptor is ready. */
static int
s_epoll_ready (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    s_run ((bus_http_server_t *) arg);
    return 0;
}

/*  zloop: shut the socket of every connection whose request is late. */
static int
s_sweep (zloop_t *loop, void *arg)
{
    bus_http_server_t *self = arg;
    int64_t now = zclock_mono ();
    bool shut = false;
    for (s_conn_t *c = self->conns; c; c = c->next)
        if (c->waiting && now - c->since > self->request_timeout_ms) {
            bus_debug ("http server: %s: request not complete within %d ms, closing",
                       c->peer, self->request_timeout_ms);
            shutdown (c->fd, SHUT_RDWR);
            c->waiting = false;
            shut = true;
        }
    if (shut)
        s_schedule (self);
    return 0;
}

/*  MHD_OPTION_NOTIFY_CONNECTION: track connections for the sweep. */
static void
s_notify_connection (void *cls, struct MHD_Connection *connection, void **socket_context,
                     enum MHD_ConnectionNotificationCode toe)
{
    bus_http_server_t *self = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        s_conn_t *c = calloc (1, sizeof *c);
        if (!c)
            return;                     /* not swept; MHD's idle timeout still holds */
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info (connection, MHD_CONNECTION_INFO_CONNECTION_FD);
        c->fd = info ? info->connect_fd : -1;
        info = MHD_get_connection_info (connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (info && info->client_addr) {
            const struct sockaddr *sa = info->client_addr;
            if (sa->sa_family == AF_INET)
                inet_ntop (AF_INET, &((const struct sockaddr_in *) sa)->sin_addr, c->peer, sizeof c->peer);
            else
            if (sa->sa_family == AF_INET6)
                inet_ntop (AF_INET6, &((const struct sockaddr_in6 *) sa)->sin6_addr, c->peer, sizeof c->peer);
        }
        c->since = zclock_mono ();
        c->waiting = c->fd >= 0;
        c->next = self->conns;
        if (self->conns)
            self->conns->prev = c;
        self->conns = c;
        *socket_context = c;
    }
    else
    if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        self->closed_in_run = true;
        s_conn_t *c = *socket_context;
        if (!c)
            return;
        if (c->prev)
            c->prev->next = c->next;
        else
            self->conns = c->next;
        if (c->next)
            c->next->prev = c->prev;
        free (c);
        *socket_context = NULL;
    }
}

/*  Queue a short canned response; a refusal (4xx but 404/405, 5xx) also
    closes the connection, whose unread rest cannot be trusted. */
static enum MHD_Result
s_queue_canned (struct MHD_Connection *conn, unsigned int status, const char *text)
{
    struct MHD_Response *response = MHD_create_response_from_buffer (strlen (text), (void *) text,
                                                                     MHD_RESPMEM_PERSISTENT);
    if (!response)
        return MHD_NO;
    if (status != 404 && status != 405)
        MHD_add_response_header (response, MHD_HTTP_HEADER_CONNECTION, "close");
    MHD_add_response_header (response, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain");
    enum MHD_Result rc = MHD_queue_response (conn, status, response);
    MHD_destroy_response (response);
    return rc;
}

/*  Stop watching ex's socket. */
static void
s_watch_end (bus_http_exchange_t *ex)
{
    if (ex->server && ex->watched_fd >= 0) {     /* (no server: never set up) */
        zmq_pollitem_t item = { NULL, ex->watched_fd, ZMQ_POLLIN, 0 };
        zloop_poller_end (ex->server->loop, &item);
        ex->watched_fd = -1;
    }
}

/*  zloop: the socket of a watched exchange is readable. */
static int
s_peer_readable (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    bus_http_exchange_t *ex = arg;
    char byte;
    ssize_t n = recv (item->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    s_watch_end (ex);
    if (n <= 0) {
        bus_debug ("http server: %s: the client went away from %s %s", ex->sconn->peer, ex->method, ex->path);
        ex->peer_gone = true;
        s_wake (ex);
    }
    return 0;
}

/*  Watch the socket of ex, which is being suspended, for its client
    going away (once: the watch lasts until the exchange ends). */
static void
s_watch (bus_http_exchange_t *ex)
{
    if (ex->watched_fd >= 0 || ex->peer_gone || !ex->sconn || ex->sconn->fd < 0)
        return;
    zmq_pollitem_t item = { NULL, ex->sconn->fd, ZMQ_POLLIN, 0 };
    if (zloop_poller (ex->server->loop, &item, s_peer_readable, ex) == 0) {
        zloop_poller_set_tolerant (ex->server->loop, &item);
        ex->watched_fd = ex->sconn->fd;
    }
}

static void
s_exchange_free (bus_http_exchange_t *ex)
{
    if (!ex)
        return;
    s_watch_end (ex);
    free (ex->method);
    free (ex->path);
    free (ex->body);
    for (size_t i = 0; i < ex->hdr_count * 2; i++)
        free (ex->hdr [i]);
    free (ex->hdr);
    if (ex->response)
        MHD_destroy_response (ex->response);
    free (ex->buf);
    free (ex);
}

/*  Add the response headers the owner set. */
static bool
s_apply_headers (bus_http_exchange_t *ex, struct MHD_Response *response)
{
    for (size_t i = 0; i < ex->hdr_count; i++)
        if (MHD_add_response_header (response, ex->hdr [2 * i], ex->hdr [2 * i + 1]) != MHD_YES)
            return false;
    return true;
}

/*  The handler of the first route matching method and path; *status_p
    404 or 405 when none. */
static s_route_t *
s_route_find (bus_http_server_t *self, const char *method, const char *path, int *status_p)
{
    *status_p = 404;
    for (size_t i = 0; i < self->route_count; i++) {
        s_route_t *route = &self->routes [i];
        bool match = route->prefix_len ? strncmp (path, route->path, route->prefix_len) == 0
                                       : strcmp (path, route->path) == 0;
        if (!match)
            continue;
        if (!route->method || strcmp (route->method, method) == 0
        ||  (strcmp (method, "HEAD") == 0 && strcmp (route->method, "GET") == 0))
            return route;
        *status_p = 405;
    }
    return NULL;
}

/*  The exchange's state after its handler (or a resumption): queue what
    is ready, suspend what waits. */
static enum MHD_Result
s_advance (bus_http_exchange_t *ex)
{
    bus_http_server_t *self = ex->server;
    switch (ex->state) {
        case S_HANDLING:
            bus_error ("http server: %s %s: the handler neither answered nor deferred",
                       ex->method, ex->path);
            ex->owner_done = true;
            ex->state = S_QUEUED;
            return s_queue_canned (ex->conn, 500, "internal error\n");
        case S_DEFERRED:
            if (self->stopping) {
                ex->state = S_QUEUED;
                return s_queue_canned (ex->conn, 503, "server stopping\n");
            }
            if (ex->peer_gone)
                return MHD_NO;          /* closed: s_completed tells the owner */
            MHD_suspend_connection (ex->conn);
            ex->suspended = true;
            s_watch (ex);
            return MHD_YES;
        case S_ANSWERED:
        case S_STREAM_READY: {
            struct MHD_Response *response = ex->response;
            ex->response = NULL;
            ex->state = ex->state == S_ANSWERED ? S_QUEUED : S_STREAMING;
            enum MHD_Result rc = MHD_queue_response (ex->conn, (unsigned int) ex->status, response);
            MHD_destroy_response (response);
            return rc;
        }
        default:
            return MHD_YES;
    }
}

/*  MHD's access handler: called on the request's headers, per body chunk,
    once the body is complete, and again after each resumption. */
static enum MHD_Result
s_access (void *cls, struct MHD_Connection *conn, const char *url, const char *method,
          const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    bus_http_server_t *self = cls;
    bus_http_exchange_t *ex = *con_cls;
    if (!ex) {
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info (conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        s_conn_t *sconn = info ? info->socket_context : NULL;
        const char *peer = sconn ? sconn->peer : "?";
        if (self->stopping)
            return s_queue_canned (conn, 503, "server stopping\n");
        int headers = MHD_get_connection_values (conn, MHD_HEADER_KIND, NULL, NULL);
        if (headers > self->max_headers) {
            bus_debug ("http server: %s: %d header fields, over %d", peer, headers, self->max_headers);
            return s_queue_canned (conn, 431, "too many header fields\n");
        }
        const char *length = MHD_lookup_connection_value (conn, MHD_HEADER_KIND,
                                                          MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (length) {
            char *end;
            errno = 0;
            unsigned long long n = strtoull (length, &end, 10);
            if (errno || end == length || *end || n > self->max_body) {
                bus_debug ("http server: %s: Content-Length %.32s over %zu", peer, length, self->max_body);
                return s_queue_canned (conn, 413, "request body too large\n");
            }
        }
        ex = calloc (1, sizeof *ex);
        if (!ex || !(ex->method = strdup (method)) || !(ex->path = strdup (url))) {
            s_exchange_free (ex);
            return MHD_NO;
        }
        ex->server = self;
        ex->watched_fd = -1;
        ex->conn = conn;
        ex->sconn = sconn;
        ex->state = S_READING;
        ex->next = self->exchanges;
        if (self->exchanges)
            self->exchanges->prev = ex;
        self->exchanges = ex;
        self->active++;
        *con_cls = ex;
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        if (ex->state != S_READING)
            return MHD_NO;
        if (n > self->max_body - ex->body_len) {
            bus_debug ("http server: %s: request body over %zu, closing",
                       ex->sconn ? ex->sconn->peer : "?", self->max_body);
            return MHD_NO;
        }
        if (ex->body_len + n + 1 > ex->body_cap) {
            size_t cap = ex->body_cap ? ex->body_cap : 1024;
            while (cap < ex->body_len + n + 1)
                cap *= 2;
            char *body = realloc (ex->body, cap);
            if (!body)
                return MHD_NO;
            ex->body = body;
            ex->body_cap = cap;
        }
        memcpy (ex->body + ex->body_len, upload_data, n);
        ex->body_len += n;
        ex->body [ex->body_len] = 0;
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (ex->state == S_READING) {
        if (ex->sconn)
            ex->sconn->waiting = false; /* the request is complete */
        ex->state = S_HANDLING;
        int status;
        s_route_t *route = s_route_find (self, ex->method, ex->path, &status);
        if (!route) {
            ex->owner_done = true;
            ex->state = S_QUEUED;
            return s_queue_canned (conn, (unsigned int) status,
                                   status == 404 ? "not found\n" : "method not allowed\n");
        }
        route->handler (ex, route->arg);
    }
    return s_advance (ex);
}

/*  MHD_OPTION_NOTIFY_COMPLETED: the request is over (sent, failed, or the
    connection closed). Tell an owner who still holds it; free it. */
static void
s_completed (void *cls, struct MHD_Connection *conn, void **con_cls,
             enum MHD_RequestTerminationCode toe)
{
    bus_http_server_t *self = cls;
    bus_http_exchange_t *ex = *con_cls;
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info (conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    s_conn_t *sconn = info ? info->socket_context : NULL;
    if (sconn) {
        sconn->since = zclock_mono ();  /* the next request's clock starts */
        sconn->waiting = true;
    }
    if (!ex)
        return;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
        bus_debug ("http server: %s %s ended early (MHD termination code %d)", ex->method, ex->path, (int) toe);
    *con_cls = NULL;
    if (ex->prev)
        ex->prev->next = ex->next;
    else
        self->exchanges = ex->next;
    if (ex->next)
        ex->next->prev = ex->prev;
    self->active--;
    if (!ex->owner_done && ex->gone)
        ex->gone (ex, ex->gone_arg);
    s_exchange_free (ex);
}

/*  The stream's content reader: what is queued, or suspend until more is. */
static ssize_t
s_stream_read (void *cls, uint64_t pos, char *buf, size_t max)
{
    bus_http_exchange_t *ex = cls;
    if (ex->len > ex->off) {
        size_t n = ex->len - ex->off;
        if (n > max)
            n = max;
        memcpy (buf, ex->buf + ex->off, n);
        ex->off += n;
        if (ex->off == ex->len) {
            ex->off = ex->len = 0;
            if (ex->drained && !ex->closing)
                ex->drained (ex, ex->drained_arg);      /* may queue more */
        }
        return (ssize_t) n;
    }
    if (ex->closing)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (ex->server->stopping || ex->peer_gone)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    MHD_suspend_connection (ex->conn);
    ex->suspended = true;
    s_watch (ex);
    return 0;
}

/*  Resume a suspended exchange and have MHD look at it. */
static void
s_wake (bus_http_exchange_t *ex)
{
    if (ex->suspended) {
        ex->suspended = false;
        MHD_resume_connection (ex->conn);
        s_schedule (ex->server);
    }
}

/*  Split "host:port" / "[v6]:port" into a socket address. */
static int
s_parse_address (const char *address, struct sockaddr_storage *sa, socklen_t *len, bool *v6)
{
    char host [256];
    const char *colon = strrchr (address, ':');
    if (!colon || colon == address || (size_t) (colon - address) >= sizeof host)
        return BUS_EINVAL;
    const char *start = address, *end = colon;
    if (*start == '[' && end [-1] == ']') {
        start++;
        end--;
    }
    memcpy (host, start, (size_t) (end - start));
    host [end - start] = 0;
    struct addrinfo hints = { .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV, .ai_socktype = SOCK_STREAM };
    struct addrinfo *res = NULL;
    if (getaddrinfo (host, colon + 1, &hints, &res) || !res)
        return BUS_EINVAL;
    memcpy (sa, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    *v6 = res->ai_family == AF_INET6;
    freeaddrinfo (res);
    return 0;
}

bus_http_server_t *
bus_http_server_new (zloop_t *loop, const bus_http_server_opts_t *opts,
                     char *err, size_t err_len)
{
    assert (loop && opts);
    bus_http_server_t *self = NULL;
    bool ok = false;
    struct sockaddr_storage sa;
    socklen_t sa_len;
    bool v6 = false;
    if (!opts->address || s_parse_address (opts->address, &sa, &sa_len, &v6)) {
        snprintf (err, err_len, "http listen address '%s' is not host:port with a numeric host",
                  opts->address ? opts->address : "");
        goto done;
    }
    if ((opts->max_header_bytes && opts->max_header_bytes < S_MIN_HEADER_BYTES)
    ||  opts->max_headers < 0 || opts->max_connections < 0 || opts->max_per_ip < 0
    ||  opts->request_timeout_ms < 0 || opts->idle_timeout_s < 0
    ||  (!opts->tls_cert_pem != !opts->tls_key_pem)) {
        snprintf (err, err_len, "http server: invalid options");
        goto done;
    }
    self = calloc (1, sizeof *self);
    if (!self) {
        snprintf (err, err_len, "out of memory");
        goto done;
    }
    self->loop = loop;
    self->kick_fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (self->kick_fd < 0) {
        snprintf (err, err_len, "http server: eventfd: %s", strerror (errno));
        goto done;
    }
    zmq_pollitem_t kick = { NULL, self->kick_fd, ZMQ_POLLIN, 0 };
    if (zloop_poller (loop, &kick, s_kick_ready, self)) {
        close (self->kick_fd);
        self->kick_fd = -1;
        snprintf (err, err_len, "http server: cannot poll its eventfd");
        goto done;
    }
    self->max_body = opts->max_body ? opts->max_body : S_DEFAULT_MAX_BODY;
    self->max_headers = opts->max_headers ? opts->max_headers : S_DEFAULT_MAX_HEADERS;
    self->request_timeout_ms = opts->request_timeout_ms ? opts->request_timeout_ms : S_DEFAULT_REQUEST_MS;
    self->max_stream_buffer = opts->max_stream_buffer ? opts->max_stream_buffer : S_DEFAULT_STREAM_BUFFER;
    size_t header_bytes = opts->max_header_bytes ? opts->max_header_bytes : S_DEFAULT_HEADER_BYTES;
    unsigned int connections = (unsigned int) (opts->max_connections ? opts->max_connections : S_DEFAULT_CONNECTIONS);
    unsigned int per_ip = (unsigned int) (opts->max_per_ip ? opts->max_per_ip : S_DEFAULT_PER_IP);
    unsigned int idle = (unsigned int) (opts->idle_timeout_s ? opts->idle_timeout_s : S_DEFAULT_IDLE_S);

    unsigned int flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (v6)
        flags |= MHD_USE_IPv6;
    if (opts->tls_cert_pem)
        flags |= MHD_USE_TLS;
    struct MHD_OptionItem tls [] = {
        { MHD_OPTION_HTTPS_MEM_CERT, 0, (void *) opts->tls_cert_pem },
        { MHD_OPTION_HTTPS_MEM_KEY, 0, (void *) opts->tls_key_pem },
        { MHD_OPTION_END, 0, NULL }
    };
    self->mhd = MHD_start_daemon (flags, 0, NULL, NULL, s_access, self,
                                  MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &sa,
                                  MHD_OPTION_CONNECTION_MEMORY_LIMIT, header_bytes,
                                  MHD_OPTION_CONNECTION_LIMIT, connections,
                                  MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_ip,
                                  MHD_OPTION_CONNECTION_TIMEOUT, idle,
                                  MHD_OPTION_NOTIFY_COMPLETED, s_completed, self,
                                  MHD_OPTION_NOTIFY_CONNECTION, s_notify_connection, self,
                                  MHD_OPTION_EXTERNAL_LOGGER, s_mhd_log, self,
                                  MHD_OPTION_ARRAY, opts->tls_cert_pem ? tls : tls + 2,
                                  MHD_OPTION_END);
    if (!self->mhd) {
        snprintf (err, err_len, "http server: cannot listen on %s (in use, or TLS key/cert invalid)",
                  opts->address);
        goto done;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info (self->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    self->epoll_fd = info ? info->epoll_fd : -1;
    info = MHD_get_daemon_info (self->mhd, MHD_DAEMON_INFO_BIND_PORT);
    self->port = info ? info->port : 0;
    zmq_pollitem_t item = { NULL, self->epoll_fd, ZMQ_POLLIN, 0 };
    if (self->epoll_fd < 0 || zloop_poller (loop, &item, s_epoll_ready, self)) {
        snprintf (err, err_len, "http server: cannot poll MHD's descriptor");
        goto done;
    }
    self->polled = true;
    int sweep_ms = self->request_timeout_ms / 4;
    sweep_ms = sweep_ms < 10 ? 10 : sweep_ms > 1000 ? 1000 : sweep_ms;
    self->sweep_timer = bus_alarm_new (loop, (size_t) sweep_ms, 0, s_sweep, self);
    if (!self->sweep_timer) {
        snprintf (err, err_len, "http server: cannot start the sweep timer");
        goto done;
    }
    s_schedule (self);
    ok = true;
done:
    if (!ok)
        bus_http_server_destroy (&self);
    return self;
}

void
bus_http_server_destroy (bus_http_server_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    bus_http_server_t *self = *self_p;
    if (self->mhd) {
        /*  Suspended connections must be resumed before MHD stops: deferred
            ones get a 503, streams end; then MHD closes everything and
            s_completed tells the owners. */
        self->stopping = true;
        for (bus_http_exchange_t *ex = self->exchanges; ex; ex = ex->next)
            if (ex->suspended) {
                ex->suspended = false;
                MHD_resume_connection (ex->conn);
            }
        MHD_run (self->mhd);
        MHD_stop_daemon (self->mhd);
    }
    if (self->polled) {
        zmq_pollitem_t item = { NULL, self->epoll_fd, ZMQ_POLLIN, 0 };
        zloop_poller_end (self->loop, &item);
    }
    if (self->kick_fd >= 0) {
        zmq_pollitem_t kick = { NULL, self->kick_fd, ZMQ_POLLIN, 0 };
        zloop_poller_end (self->loop, &kick);
        close (self->kick_fd);
    }
    bus_alarm_end (&self->run_timer);
    bus_alarm_end (&self->sweep_timer);
    for (size_t i = 0; i < self->route_count; i++) {
        free (self->routes [i].method);
        free (self->routes [i].path);
    }
    free (self->routes);
    free (self);
    *self_p = NULL;
}

int
bus_http_server_route (bus_http_server_t *self, const char *method, const char *path,
                       bus_http_handler_fn *handler, void *arg)
{
    assert (self && handler);
    if (!path || *path != '/')
        return BUS_EINVAL;
    s_route_t *routes = realloc (self->routes, (self->route_count + 1) * sizeof *routes);
    if (!routes)
        return BUS_ENOMEM;
    self->routes = routes;
    s_route_t *route = &routes [self->route_count];
    memset (route, 0, sizeof *route);
    route->method = method ? strdup (method) : NULL;
    route->path = strdup (path);
    if ((method && !route->method) || !route->path) {
        free (route->method);
        free (route->path);
        return BUS_ENOMEM;
    }
    size_t n = strlen (path);
    if (path [n - 1] == '*')
        route->prefix_len = n - 1;
    route->handler = handler;
    route->arg = arg;
    self->route_count++;
    return 0;
}

int
bus_http_server_port (bus_http_server_t *self)
{
    assert (self);
    return self->port;
}

size_t
bus_http_server_active (bus_http_server_t *self)
{
    assert (self);
    return self->active;
}

const char *
bus_http_method (bus_http_exchange_t *ex)
{
    return ex->method;
}

const char *
bus_http_path (bus_http_exchange_t *ex)
{
    return ex->path;
}

const char *
bus_http_query (bus_http_exchange_t *ex, const char *name)
{
    return MHD_lookup_connection_value (ex->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *
bus_http_header (bus_http_exchange_t *ex, const char *name)
{
    return MHD_lookup_connection_value (ex->conn, MHD_HEADER_KIND, name);
}

const char *
bus_http_body (bus_http_exchange_t *ex, size_t *len_p)
{
    if (len_p)
        *len_p = ex->body_len;
    return ex->body ? ex->body : "";
}

const char *
bus_http_peer (bus_http_exchange_t *ex)
{
    return ex->sconn ? ex->sconn->peer : "";
}

int
bus_http_header_add (bus_http_exchange_t *ex, const char *name, const char *value)
{
    if (!name || !value || !*name || strpbrk (name, "\r\n: ") || strpbrk (value, "\r\n"))
        return BUS_EINVAL;
    if (ex->state != S_HANDLING && ex->state != S_DEFERRED)
        return BUS_ESTATE;
    char **hdr = realloc (ex->hdr, (ex->hdr_count + 1) * 2 * sizeof *hdr);
    if (!hdr)
        return BUS_ENOMEM;
    ex->hdr = hdr;
    hdr [2 * ex->hdr_count] = strdup (name);
    hdr [2 * ex->hdr_count + 1] = strdup (value);
    ex->hdr_count++;
    if (!hdr [2 * ex->hdr_count - 2] || !hdr [2 * ex->hdr_count - 1])
        return BUS_ENOMEM;              /* freed with the exchange */
    return 0;
}

int
bus_http_respond (bus_http_exchange_t *ex, int status, const char *content_type,
                  const void *body, size_t len)
{
    if (ex->state != S_HANDLING && ex->state != S_DEFERRED)
        return BUS_ESTATE;
    if (status < 100 || status > 599 || (content_type && strpbrk (content_type, "\r\n")))
        return BUS_EINVAL;
    int rc = 0;
    struct MHD_Response *response = MHD_create_response_from_buffer (len, (void *) (body ? body : ""),
                                                                     MHD_RESPMEM_MUST_COPY);
    if (response && content_type
    &&  MHD_add_response_header (response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) != MHD_YES) {
        MHD_destroy_response (response);
        response = NULL;
    }
    if (response && !s_apply_headers (ex, response)) {
        MHD_destroy_response (response);
        response = NULL;
    }
    if (!response) {
        rc = BUS_ENOMEM;
        status = 500;
        response = MHD_create_response_from_buffer (0, (void *) "", MHD_RESPMEM_PERSISTENT);
    }
    ex->response = response;
    ex->status = status;
    ex->owner_done = true;
    ex->state = S_ANSWERED;             /* queued by s_advance (now, or once resumed) */
    s_wake (ex);
    return rc;
}

void
bus_http_defer (bus_http_exchange_t *ex, bus_http_gone_fn *gone, void *arg)
{
    assert (ex->state == S_HANDLING);
    ex->gone = gone;
    ex->gone_arg = arg;
    ex->state = S_DEFERRED;
}

int
bus_http_stream_open (bus_http_exchange_t *ex, int status, const char *content_type,
                      bus_http_gone_fn *gone, void *arg)
{
    if (ex->state != S_HANDLING && ex->state != S_DEFERRED)
        return BUS_ESTATE;
    if (status < 100 || status > 599 || (content_type && strpbrk (content_type, "\r\n")))
        return BUS_EINVAL;
    struct MHD_Response *response = MHD_create_response_from_callback (MHD_SIZE_UNKNOWN, S_STREAM_BLOCK,
                                                                       s_stream_read, ex, NULL);
    if (!response)
        return BUS_ENOMEM;
    if ((content_type && MHD_add_response_header (response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) != MHD_YES)
    ||  MHD_add_response_header (response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") != MHD_YES
    ||  !s_apply_headers (ex, response)) {
        MHD_destroy_response (response);
        return BUS_ENOMEM;
    }
    ex->response = response;
    ex->status = status;
    ex->gone = gone;
    ex->gone_arg = arg;
    ex->state = S_STREAM_READY;
    s_wake (ex);
    return 0;
}

int
bus_http_stream_write (bus_http_exchange_t *ex, const void *data, size_t len)
{
    if ((ex->state != S_STREAM_READY && ex->state != S_STREAMING) || ex->closing)
        return BUS_ESTATE;
    if (len > ex->server->max_stream_buffer - (ex->len - ex->off))
        return BUS_EFULL;
    if (ex->off && ex->len + len > ex->cap) {
        memmove (ex->buf, ex->buf + ex->off, ex->len - ex->off);
        ex->len -= ex->off;
        ex->off = 0;
    }
    if (ex->len + len > ex->cap) {
        size_t cap = ex->cap ? ex->cap : 4096;
        while (cap < ex->len + len)
            cap *= 2;
        char *buf = realloc (ex->buf, cap);
        if (!buf)
            return BUS_ENOMEM;
        ex->buf = buf;
        ex->cap = cap;
    }
    memcpy (ex->buf + ex->len, data, len);
    ex->len += len;
    s_wake (ex);
    return 0;
}

int
bus_http_sse_send (bus_http_exchange_t *ex, const char *id, const char *event, const char *data)
{
    if ((id && strpbrk (id, "\r\n")) || (event && strpbrk (event, "\r\n")) || !data)
        return BUS_EINVAL;
    zchunk_t *text = zchunk_new (NULL, strlen (data) + 64);
    if (!text)
        return BUS_ENOMEM;
    if (id) {
        zchunk_extend (text, "id: ", 4);
        zchunk_extend (text, id, strlen (id));
        zchunk_extend (text, "\n", 1);
    }
    if (event) {
        zchunk_extend (text, "event: ", 7);
        zchunk_extend (text, event, strlen (event));
        zchunk_extend (text, "\n", 1);
    }
    const char *line = data;
    while (true) {
        size_t n = strcspn (line, "\r\n");
        zchunk_extend (text, "data: ", 6);
        zchunk_extend (text, line, n);
        zchunk_extend (text, "\n", 1);
        if (!line [n])
            break;
        line += n + (line [n] == '\r' && line [n + 1] == '\n' ? 2 : 1);
    }
    zchunk_extend (text, "\n", 1);
    int rc = bus_http_stream_write (ex, zchunk_data (text), zchunk_size (text));
    zchunk_destroy (&text);
    return rc;
}

size_t
bus_http_stream_queued (bus_http_exchange_t *ex)
{
    return ex->len - ex->off;
}

void
bus_http_stream_drained (bus_http_exchange_t *ex, bus_http_drained_fn *drained, void *arg)
{
    ex->drained = drained;
    ex->drained_arg = arg;
}

void
bus_http_stream_close (bus_http_exchange_t *ex)
{
    if (ex->state != S_STREAM_READY && ex->state != S_STREAMING)
        return;
    ex->closing = true;
    ex->owner_done = true;
    s_wake (ex);
}
