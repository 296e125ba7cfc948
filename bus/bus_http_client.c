/*  bus_http_client.c — libcurl's multi interface on a zloop.

    curl tells us which sockets to watch (s_socket_cb: an epoll set of our
    own, polled by the zloop as one descriptor) and when to call it back
    (s_timer_cb: one zloop timer, replaced each time; an eventfd for "now"). Readiness and the
    timer both end in curl_multi_socket_action, after which finished
    transfers are collected (s_collect) and their callbacks run: never
    inside a curl callback, so a callback may start or cancel requests.
*/
#include "bus_http_client.h"
#include "bus_alarm.h"
#include "bus_config.h"
#include "bus_error.h"
#include "bus_log.h"

#include <curl/curl.h>
#include <ctype.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define S_DEFAULT_TIMEOUT_MS   30000
#define S_DEFAULT_MAX_RESPONSE (8u << 20)
#define S_MAX_METHOD           16
#define S_EASY_POOL            256      /* idle easy handles kept for reuse */

struct bus_http_client_t {
    zloop_t *loop;
    CURLM *multi;
    bus_alarm_t *timer;         /* for curl's timeout, or NULL */
    int kick_fd;                /* eventfd: curl's timeout is 0, "at the next poll" */
    bool kicked;                /* curl's timeout is 0: call it back */
    bool kick_written;          /* ... and kick_fd says so */
    bool in_handler;            /* inside s_drive: it calls curl back itself */
    int epoll_fd;               /* curl's sockets; the zloop polls this one descriptor */
    char *ca_file;              /* NULL: the system's */
    int timeout_ms;
    size_t max_response;
    zhashx_t *pending;          /* id (uint64_t *) -> s_req_t */
    uint64_t next_id;
    bool collecting;            /* inside s_collect */
    CURL *pool [S_EASY_POOL];   /* easy handles reset for reuse */
    size_t pool_size;
};

/*  One request in flight. */
typedef struct {
    bus_http_client_t *client;
    CURL *easy;
    uint64_t id;
    bus_http_done_fn *done;
    void *arg;
    struct curl_slist *req_headers;
    size_t max_response;
    char *body;                 /* the response body, NUL-terminated */
    size_t body_len, body_cap;
    bool body_too_big;
    bool headers_too_big;
    bus_http_header_t *headers; /* names and values malloc'd */
    size_t header_count, header_cap, header_bytes;
    char errbuf [CURL_ERROR_SIZE];
} s_req_t;

static pthread_once_t s_curl_once = PTHREAD_ONCE_INIT;
static CURLcode s_curl_init_rc;

/*  curl_global_init, once per process (it is not thread-safe itself). */
static void
s_curl_init (void)
{
    s_curl_init_rc = curl_global_init (CURL_GLOBAL_DEFAULT);
    curl_version_info_data *info = curl_version_info (CURLVERSION_NOW);
    if (info && !(info->features & CURL_VERSION_ASYNCHDNS))
        bus_warn ("http client: libcurl %s resolves names synchronously: "
                  "a name lookup blocks the reactor (use IP addresses)", info->version);
}

static size_t
s_id_hash (const void *key)
{
    uint64_t x = *(const uint64_t *) key;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t) x;
}

static int
s_id_cmp (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y ? -1 : x > y;
}

/*  Free a request's own memory (its easy handle must be out of the
    multi); the handle goes back to the client's pool when there is room
    (reset: no option of this request survives into the next). */
static void
s_req_free (s_req_t *req)
{
    if (!req)
        return;
    if (req->easy) {
        bus_http_client_t *client = req->client;
        if (client && client->pool_size < S_EASY_POOL) {
            curl_easy_reset (req->easy);
            client->pool [client->pool_size++] = req->easy;
        }
        else
            curl_easy_cleanup (req->easy);
    }
    curl_slist_free_all (req->req_headers);
    for (size_t i = 0; i < req->header_count; i++) {
        free ((char *) req->headers [i].name);
        free ((char *) req->headers [i].value);
    }
    free (req->headers);
    free (req->body);
    free (req);
}

/*  Forget the response headers kept so far (a new status line came: an
    interim 100 Continue was followed by the real response). */
static void
s_req_clear_headers (s_req_t *req)
{
    for (size_t i = 0; i < req->header_count; i++) {
        free ((char *) req->headers [i].name);
        free ((char *) req->headers [i].value);
    }
    req->header_count = 0;
    req->header_bytes = 0;
}

/*  CURLOPT_WRITEFUNCTION: append to the body, up to the cap; past it,
    returning short makes curl abort the transfer (CURLE_WRITE_ERROR). */
static size_t
s_write_cb (char *data, size_t size, size_t nmemb, void *userdata)
{
    s_req_t *req = userdata;
    size_t n = size * nmemb;
    if (n > req->max_response - req->body_len) {
        req->body_too_big = true;
        return 0;
    }
    if (req->body_len + n + 1 > req->body_cap) {
        size_t cap = req->body_cap ? req->body_cap : 4096;
        while (cap < req->body_len + n + 1)
            cap *= 2;
        if (cap > req->max_response + 1)
            cap = req->max_response + 1;
        char *body = realloc (req->body, cap);
        if (!body)
            return 0;
        req->body = body;
        req->body_cap = cap;
    }
    memcpy (req->body + req->body_len, data, n);
    req->body_len += n;
    req->body [req->body_len] = 0;
    return n;
}

/*  CURLOPT_HEADERFUNCTION: one header line at a time (status line
    included). Keeps "Name: value" pairs, within the count and size caps. */
static size_t
s_header_cb (char *data, size_t size, size_t nmemb, void *userdata)
{
    s_req_t *req = userdata;
    size_t n = size * nmemb;
    if (n >= 5 && memcmp (data, "HTTP/", 5) == 0) {
        s_req_clear_headers (req);
        return n;
    }
    const char *colon = memchr (data, ':', n);
    if (!colon)
        return n;                       /* the blank line ending the headers */
    req->header_bytes += n;
    if (req->header_count >= BUS_HTTP_MAX_HEADERS || req->header_bytes > BUS_HTTP_MAX_HEADER_BYTES) {
        req->headers_too_big = true;
        return 0;
    }
    const char *name = data, *name_end = colon;
    while (name_end > name && isblank ((unsigned char) name_end [-1]))
        name_end--;
    const char *value = colon + 1, *value_end = data + n;
    while (value < value_end && isblank ((unsigned char) *value))
        value++;
    while (value_end > value && isspace ((unsigned char) value_end [-1]))
        value_end--;
    if (req->header_count == req->header_cap) {
        size_t cap = req->header_cap ? req->header_cap * 2 : 16;
        bus_http_header_t *headers = realloc (req->headers, cap * sizeof *headers);
        if (!headers)
            return 0;
        req->headers = headers;
        req->header_cap = cap;
    }
    char *name_copy = strndup (name, (size_t) (name_end - name));
    char *value_copy = strndup (value, (size_t) (value_end - value));
    if (!name_copy || !value_copy) {
        free (name_copy);
        free (value_copy);
        return 0;
    }
    req->headers [req->header_count].name = name_copy;
    req->headers [req->header_count].value = value_copy;
    req->header_count++;
    return n;
}

/*  curl's result for a transfer, as a bus code. */
static int
s_map_result (s_req_t *req, CURLcode rc)
{
    if (req->body_too_big || req->headers_too_big)
        return BUS_ETOOBIG;
    switch (rc) {
        case CURLE_OK:
            return 0;
        case CURLE_COULDNT_CONNECT:
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
            return BUS_EREFUSED;
        case CURLE_OPERATION_TIMEDOUT:
            return BUS_ETIMEOUT;
        case CURLE_FILESIZE_EXCEEDED:
            return BUS_ETOOBIG;
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_ISSUER_ERROR:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        case CURLE_SSL_INVALIDCERTSTATUS:
        case CURLE_SSL_CRL_BADFILE:
        case CURLE_SSL_SHUTDOWN_FAILED:
        case CURLE_SSL_ENGINE_INITFAILED:
        case CURLE_SSL_ENGINE_NOTFOUND:
        case CURLE_SSL_ENGINE_SETFAILED:
        case CURLE_USE_SSL_FAILED:
            return BUS_ETLS;
        case CURLE_WEIRD_SERVER_REPLY:
        case CURLE_UNSUPPORTED_PROTOCOL:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
        case CURLE_BAD_CONTENT_ENCODING:
            return BUS_EPROTO;
        case CURLE_OUT_OF_MEMORY:
            return BUS_ENOMEM;
        case CURLE_URL_MALFORMAT:
            return BUS_EINVAL;
        default:
            return BUS_EIO;
    }
}

/*  Run every finished transfer's callback. Each request leaves the multi
    and the pending table before its callback runs, so the callback may
    send and cancel (a cancelled request's message is dropped with it). */
static void
s_collect (bus_http_client_t *self)
{
    if (self->collecting)
        return;                         /* the outer loop picks them up */
    self->collecting = true;
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read (self->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result;
        s_req_t *req = NULL;
        curl_easy_getinfo (easy, CURLINFO_PRIVATE, (char **) &req);
        curl_multi_remove_handle (self->multi, easy);
        zhashx_delete (self->pending, &req->id);

        bus_http_response_t response = { .reason = "", .body = "" };
        response.error = s_map_result (req, result);
        char reason [CURL_ERROR_SIZE + 64];
        if (response.error) {
            if (req->body_too_big)
                snprintf (reason, sizeof reason, "response body over %zu bytes", req->max_response);
            else
            if (req->headers_too_big)
                snprintf (reason, sizeof reason, "response headers over %d or %d bytes",
                          BUS_HTTP_MAX_HEADERS, BUS_HTTP_MAX_HEADER_BYTES);
            else
            if (result == CURLE_FILESIZE_EXCEEDED)
                snprintf (reason, sizeof reason, "response body over %zu bytes (Content-Length)",
                          req->max_response);
            else
                snprintf (reason, sizeof reason, "%s",
                          req->errbuf [0] ? req->errbuf : curl_easy_strerror (result));
            response.reason = reason;
        }
        else {
            long status = 0;
            curl_easy_getinfo (easy, CURLINFO_RESPONSE_CODE, &status);
            response.status = (int) status;
            response.headers = req->headers;
            response.header_count = req->header_count;
            if (req->body) {
                response.body = req->body;
                response.body_len = req->body_len;
            }
        }
        req->done (&response, req->arg);
        s_req_free (req);
    }
    self->collecting = false;
}

/*  Ask the zloop to call curl back at its next turn. */
static int
s_kick (bus_http_client_t *self)
{
    if (!self->kick_written) {
        uint64_t one = 1;
        if (write (self->kick_fd, &one, sizeof one) != sizeof one)
            return -1;
        self->kick_written = true;
    }
    return 0;
}

/*  Tell curl about socket fd (or its timeout: CURL_SOCKET_TIMEOUT), run
    the finished requests' callbacks, and serve the zero timeouts that
    asked for (requests those callbacks started) a few times over before
    leaving the rest to the next turn of the zloop. */
static void
s_drive (bus_http_client_t *self, curl_socket_t fd, int flags)
{
    int running;
    self->in_handler = true;
    curl_multi_socket_action (self->multi, fd, flags, &running);
    s_collect (self);
    for (int round = 0; round < 4 && self->kicked; round++) {
        self->kicked = false;
        curl_multi_socket_action (self->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        s_collect (self);
    }
    self->in_handler = false;
    if (self->kicked)
        s_kick (self);
}

/*  zloop: one of curl's sockets is ready (the epoll descriptor is). */
static int
s_epoll_ready (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    bus_http_client_t *self = arg;
    struct epoll_event events [64];
    int n = epoll_wait (self->epoll_fd, events, 64, 0);
    for (int i = 0; i < n; i++) {
        int flags = 0;
        if (events [i].events & EPOLLIN)
            flags |= CURL_CSELECT_IN;
        if (events [i].events & EPOLLOUT)
            flags |= CURL_CSELECT_OUT;
        if (events [i].events & (EPOLLERR | EPOLLHUP))
            flags |= CURL_CSELECT_ERR;
        s_drive (self, events [i].data.fd, flags);
    }
    return 0;
}

/*  zloop: curl's timeout is due. */
static int
s_timer_fired (zloop_t *loop, void *arg)
{
    bus_http_client_t *self = arg;
    bus_alarm_end (&self->timer);
    self->kicked = false;
    s_drive (self, CURL_SOCKET_TIMEOUT, 0);
    return 0;
}

/*  CURLMOPT_SOCKETFUNCTION: watch socket s for what (or stop). curl's
    sockets live in an epoll set of our own, whose one descriptor the zloop
    polls: a change of events is an epoll_ctl, not a zloop poller replaced
    (which makes zloop rebuild its poll set and stop handling the other
    ready sockets of that pass). socketp marks a socket already added. */
static int
s_socket_cb (CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    bus_http_client_t *self = userp;
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl (self->epoll_fd, EPOLL_CTL_DEL, s, NULL);
        return 0;
    }
    struct epoll_event event = { .data.fd = s };
    if (what & CURL_POLL_IN)
        event.events |= EPOLLIN;
    if (what & CURL_POLL_OUT)
        event.events |= EPOLLOUT;
    if (socketp)
        return epoll_ctl (self->epoll_fd, EPOLL_CTL_MOD, s, &event) ? -1 : 0;
    if (epoll_ctl (self->epoll_fd, EPOLL_CTL_ADD, s, &event))
        return -1;
    curl_multi_assign (self->multi, s, self);
    return 0;
}

/*  zloop: the eventfd s_kick wrote to. */
static int
s_kick_ready (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    bus_http_client_t *self = arg;
    uint64_t count;
    if (read (self->kick_fd, &count, sizeof count) < 0) {
        /* already drained */
    }
    self->kick_written = false;
    if (self->kicked) {
        self->kicked = false;
        s_drive (self, CURL_SOCKET_TIMEOUT, 0);
    }
    return 0;
}

/*  CURLMOPT_TIMERFUNCTION: call curl back in timeout_ms (-1: never). A
    zero timeout is served by s_drive when curl asks from inside it, else
    through an eventfd the zloop polls: curl must not be called from inside
    this callback, and a zero-delay zloop timer made from a timer handler
    fires again in the same pass, so a chain of them would keep the zloop
    from polling. */
static int
s_timer_cb (CURLM *multi, long timeout_ms, void *userp)
{
    bus_http_client_t *self = userp;
    bus_alarm_end (&self->timer);
    self->kicked = timeout_ms == 0;
    if (self->kicked && !self->in_handler)
        return s_kick (self);
    if (timeout_ms > 0) {
        self->timer = bus_alarm_new (self->loop, (size_t) timeout_ms, 1, s_timer_fired, self);
        if (!self->timer)
            return -1;
    }
    return 0;
}

void
bus_http_client_opts_from_config (bus_http_client_opts_t *opts, bus_config_t *config)
{
    opts->ca_file = bus_config_str (config, "sanctum", "http_ca_file");
    opts->timeout_ms = (int) bus_config_int (config, "sanctum", "http_timeout_ms");
    opts->max_response = (size_t) bus_config_int (config, "sanctum", "http_max_response");
}

bus_http_client_t *
bus_http_client_new (zloop_t *loop, const bus_http_client_opts_t *opts)
{
    bus_http_client_t *self = NULL;
    bool ok = false;
    pthread_once (&s_curl_once, s_curl_init);
    if (s_curl_init_rc != CURLE_OK) {
        bus_error ("http client: libcurl failed to start: %s", curl_easy_strerror (s_curl_init_rc));
        goto done;
    }
    if (!loop || (opts && (opts->timeout_ms <= 0 || opts->max_response == 0))) {
        bus_error ("http client: invalid options");
        goto done;
    }
    self = calloc (1, sizeof *self);
    if (!self)
        goto done;
    self->loop = loop;
    self->kick_fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    self->epoll_fd = epoll_create1 (EPOLL_CLOEXEC);
    self->next_id = 1;
    zmq_pollitem_t kick = { NULL, self->kick_fd, ZMQ_POLLIN, 0 };
    if (self->kick_fd < 0 || zloop_poller (loop, &kick, s_kick_ready, self)) {
        bus_error ("http client: cannot make or poll an eventfd");
        if (self->kick_fd >= 0)
            close (self->kick_fd);
        self->kick_fd = -1;
        goto done;
    }
    zmq_pollitem_t sockets = { NULL, self->epoll_fd, ZMQ_POLLIN, 0 };
    if (self->epoll_fd < 0 || zloop_poller (loop, &sockets, s_epoll_ready, self)) {
        bus_error ("http client: cannot make or poll an epoll descriptor");
        if (self->epoll_fd >= 0)
            close (self->epoll_fd);
        self->epoll_fd = -1;
        goto done;
    }
    self->timeout_ms = opts ? opts->timeout_ms : S_DEFAULT_TIMEOUT_MS;
    self->max_response = opts ? opts->max_response : S_DEFAULT_MAX_RESPONSE;
    if (opts && opts->ca_file && *opts->ca_file) {
        FILE *file = fopen (opts->ca_file, "r");
        if (!file) {
            bus_error ("http client: CA file %s cannot be read: %s", opts->ca_file, strerror (errno));
            goto done;
        }
        fclose (file);
        self->ca_file = strdup (opts->ca_file);
        if (!self->ca_file)
            goto done;
    }
    self->pending = zhashx_new ();
    self->multi = curl_multi_init ();
    if (!self->pending || !self->multi)
        goto done;
    zhashx_set_key_hasher (self->pending, (zhashx_hash_fn *) s_id_hash);
    zhashx_set_key_comparator (self->pending, s_id_cmp);
    zhashx_set_key_duplicator (self->pending, NULL);
    zhashx_set_key_destructor (self->pending, NULL);
    curl_multi_setopt (self->multi, CURLMOPT_SOCKETFUNCTION, s_socket_cb);
    curl_multi_setopt (self->multi, CURLMOPT_SOCKETDATA, self);
    curl_multi_setopt (self->multi, CURLMOPT_TIMERFUNCTION, s_timer_cb);
    curl_multi_setopt (self->multi, CURLMOPT_TIMERDATA, self);
    ok = true;
done:
    if (!ok)
        bus_http_client_destroy (&self);
    return self;
}

void
bus_http_client_destroy (bus_http_client_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    bus_http_client_t *self = *self_p;
    if (self->pending) {
        s_req_t *req = zhashx_first (self->pending);
        while (req) {
            curl_multi_remove_handle (self->multi, req->easy);
            s_req_free (req);
            req = zhashx_next (self->pending);
        }
        zhashx_destroy (&self->pending);
    }
    if (self->multi)
        curl_multi_cleanup (self->multi);   /* closes cached connections: sockets removed */
    while (self->pool_size)
        curl_easy_cleanup (self->pool [--self->pool_size]);
    bus_alarm_end (&self->timer);
    if (self->kick_fd >= 0) {
        zmq_pollitem_t kick = { NULL, self->kick_fd, ZMQ_POLLIN, 0 };
        zloop_poller_end (self->loop, &kick);
        close (self->kick_fd);
    }
    if (self->epoll_fd >= 0) {
        zmq_pollitem_t sockets = { NULL, self->epoll_fd, ZMQ_POLLIN, 0 };
        zloop_poller_end (self->loop, &sockets);
        close (self->epoll_fd);
    }
    free (self->ca_file);
    free (self);
    *self_p = NULL;
}

/*  Is method an HTTP token of at most S_MAX_METHOD characters? */
static bool
s_method_ok (const char *method)
{
    size_t n = strlen (method);
    if (n == 0 || n > S_MAX_METHOD)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalpha ((unsigned char) method [i]) && method [i] != '-' && method [i] != '_')
            return false;
    return true;
}

/*  Is header "Name: value" with a non-empty name and no line break? */
static bool
s_header_ok (const char *header)
{
    const char *colon = strchr (header, ':');
    if (!colon || colon == header || strpbrk (header, "\r\n"))
        return false;
    for (const char *p = header; p < colon; p++)
        if (!isgraph ((unsigned char) *p))
            return false;
    return true;
}

int
bus_http_client_send (bus_http_client_t *self, const bus_http_request_t *request,
                      bus_http_done_fn *done, void *arg, uint64_t *id_p)
{
    assert (self && request && done);
    int rc = BUS_EINVAL;
    s_req_t *req = NULL;
    const char *url = request->url;
    const char *method = request->method ? request->method : (request->body ? "POST" : "GET");
    if (!url || (strncasecmp (url, "http://", 7) && strncasecmp (url, "https://", 8))
    ||  strpbrk (url, "\r\n ") || !s_method_ok (method)
    ||  (request->content_type && strpbrk (request->content_type, "\r\n"))
    ||  request->timeout_ms < 0 || (request->body_len && !request->body))
        goto done;
    for (const char *const *h = request->headers; h && *h; h++)
        if (!s_header_ok (*h))
            goto done;

    rc = BUS_ENOMEM;
    req = calloc (1, sizeof *req);
    if (!req)
        goto done;
    req->easy = self->pool_size ? self->pool [--self->pool_size] : curl_easy_init ();
    if (!req->easy)
        goto done;
    req->client = self;
    req->done = done;
    req->arg = arg;
    req->max_response = request->max_response ? request->max_response : self->max_response;
    for (const char *const *h = request->headers; h && *h; h++) {
        struct curl_slist *list = curl_slist_append (req->req_headers, *h);
        if (!list)
            goto done;
        req->req_headers = list;
    }
    if (request->content_type) {
        char line [256];
        if (snprintf (line, sizeof line, "Content-Type: %s", request->content_type) >= (int) sizeof line) {
            rc = BUS_EINVAL;
            goto done;
        }
        struct curl_slist *list = curl_slist_append (req->req_headers, line);
        if (!list)
            goto done;
        req->req_headers = list;
    }
    /*  No "Expect: 100-continue" round trip before a larger body */
    struct curl_slist *list = curl_slist_append (req->req_headers, "Expect:");
    if (!list)
        goto done;
    req->req_headers = list;

    CURL *easy = req->easy;
    int timeout_ms = request->timeout_ms ? request->timeout_ms : self->timeout_ms;
    bool failed = false;
    failed |= curl_easy_setopt (easy, CURLOPT_URL, url) != CURLE_OK;
    failed |= curl_easy_setopt (easy, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
    failed |= curl_easy_setopt (easy, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    failed |= curl_easy_setopt (easy, CURLOPT_TIMEOUT_MS, (long) timeout_ms) != CURLE_OK;
    failed |= curl_easy_setopt (easy, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK;
    failed |= curl_easy_setopt (easy, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK;
    if (self->ca_file)
        failed |= curl_easy_setopt (easy, CURLOPT_CAINFO, self->ca_file) != CURLE_OK;
    failed |= curl_easy_setopt (easy, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK;
    failed |= curl_easy_setopt (easy, CURLOPT_MAXFILESIZE_LARGE,
                                (curl_off_t) req->max_response) != CURLE_OK;
    failed |= curl_easy_setopt (easy, CURLOPT_WRITEFUNCTION, s_write_cb) != CURLE_OK;
    failed |= curl_easy_setopt (easy, CURLOPT_WRITEDATA, req) != CURLE_OK;
    failed |= curl_easy_setopt (easy, CURLOPT_HEADERFUNCTION, s_header_cb) != CURLE_OK;
    failed |= curl_easy_setopt (easy, CURLOPT_HEADERDATA, req) != CURLE_OK;
    failed |= curl_easy_setopt (easy, CURLOPT_ERRORBUFFER, req->errbuf) != CURLE_OK;
    failed |= curl_easy_setopt (easy, CURLOPT_PRIVATE, req) != CURLE_OK;
    failed |= curl_easy_setopt (easy, CURLOPT_HTTPHEADER, req->req_headers) != CURLE_OK;
    failed |= curl_easy_setopt (easy, CURLOPT_USERAGENT, "sanctum/0.1") != CURLE_OK;
    if (strcmp (method, "GET") == 0 && !request->body)
        failed |= curl_easy_setopt (easy, CURLOPT_HTTPGET, 1L) != CURLE_OK;
    else
    if (strcmp (method, "HEAD") == 0 && !request->body)
        failed |= curl_easy_setopt (easy, CURLOPT_NOBODY, 1L) != CURLE_OK;
    else {
        if (request->body || strcmp (method, "POST") == 0) {
            /*  COPYPOSTFIELDS copies: the caller's buffer may go at once */
            failed |= curl_easy_setopt (easy, CURLOPT_POSTFIELDSIZE_LARGE,
                                        (curl_off_t) request->body_len) != CURLE_OK;
            failed |= curl_easy_setopt (easy, CURLOPT_COPYPOSTFIELDS,
                                        request->body ? request->body : "") != CURLE_OK;
        }
        if (strcmp (method, "POST") != 0)
            failed |= curl_easy_setopt (easy, CURLOPT_CUSTOMREQUEST, method) != CURLE_OK;
    }
    if (failed)
        goto done;                      /* BUS_ENOMEM: the options themselves are valid */

    req->id = self->next_id++;
    if (zhashx_insert (self->pending, &req->id, req))
        goto done;
    if (curl_multi_add_handle (self->multi, easy) != CURLM_OK) {
        zhashx_delete (self->pending, &req->id);
        goto done;
    }
    if (id_p)
        *id_p = req->id;
    req = NULL;
    rc = 0;
done:
    s_req_free (req);
    return rc;
}

/*  Take a pending request out of the multi and free it: no callback. */
static void
s_cancel (bus_http_client_t *self, s_req_t *req)
{
    zhashx_delete (self->pending, &req->id);
    curl_multi_remove_handle (self->multi, req->easy);
    s_req_free (req);
}

int
bus_http_client_cancel (bus_http_client_t *self, uint64_t id)
{
    assert (self);
    s_req_t *req = zhashx_lookup (self->pending, &id);
    if (!req)
        return BUS_ENOTFOUND;
    s_cancel (self, req);
    return 0;
}

size_t
bus_http_client_cancel_arg (bus_http_client_t *self, void *arg)
{
    assert (self);
    /*  Collect first: cancelling while walking the table would disturb it */
    size_t n = 0, cap = zhashx_size (self->pending);
    s_req_t **doomed = cap ? calloc (cap, sizeof *doomed) : NULL;
    if (cap && !doomed)
        return 0;
    for (s_req_t *req = zhashx_first (self->pending); req; req = zhashx_next (self->pending))
        if (req->arg == arg)
            doomed [n++] = req;
    for (size_t i = 0; i < n; i++)
        s_cancel (self, doomed [i]);
    free (doomed);
    return n;
}

size_t
bus_http_client_pending (bus_http_client_t *self)
{
    assert (self);
    return zhashx_size (self->pending);
}

char *
bus_http_form_encode (const char *const *pairs)
{
    size_t count = 0;
    while (pairs && pairs [count])
        count++;
    if (count % 2)
        return NULL;
    pthread_once (&s_curl_once, s_curl_init);
    zchunk_t *out = zchunk_new (NULL, 256);
    char *text = NULL;
    if (!out)
        return NULL;
    for (size_t i = 0; i < count; i++) {
        char *escaped = curl_easy_escape (NULL, pairs [i], (int) strlen (pairs [i]));
        if (!escaped)
            goto done;
        const char *sep = i == 0 ? "" : (i % 2 ? "=" : "&");
        zchunk_extend (out, sep, strlen (sep));
        zchunk_extend (out, escaped, strlen (escaped));
        curl_free (escaped);
    }
    text = malloc (zchunk_size (out) + 1);
    if (text) {
        memcpy (text, zchunk_data (out), zchunk_size (out));
        text [zchunk_size (out)] = 0;
    }
done:
    zchunk_destroy (&out);
    return text;
}

const char *
bus_http_response_header (const bus_http_response_t *response, const char *name)
{
    for (size_t i = 0; i < response->header_count; i++)
        if (strcasecmp (response->headers [i].name, name) == 0)
            return response->headers [i].value;
    return NULL;
}
