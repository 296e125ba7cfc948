/*  tele_service.c — the telemetry daemon: a memory-only follower of every
    publisher feeding the event ring and the browsers' event streams, and
    an HTTP listener ([telemetry] http, 127.0.0.1:7180 by default) serving
    the dashboard's files, the read API, the decision relay and /metrics.

    Routes (every answer carries the security headers of tele_headers):
      GET  /api/events                 server-sent events (tele_sse.c)
      GET  /api/runs[?state=S]         run.list
      GET  /api/runs/{id}              run.get + ciba.list + vault.leases + its events
      GET  /api/runs/{id}/gantt        steps, approvals and leases on one time axis
      GET  /api/runs/{id}/receipt      audit.receipt, its JWS verified here
      GET  /api/approvals[?state=&run=] ciba.list (pending by default)
      POST /api/approvals/decide       ciba.decide relayed (signed by the browser's device)
      POST /api/devices/redeem         ciba.device.redeem relayed (an invite code enrols
                                       the browser's public key)
      GET  /api/leases[?run=]          vault.leases
      GET  /api/health                 health of every service
      GET  /metrics                    Prometheus text (tele_metrics.c)
      GET  /...                        the dashboard's files (tele_static.c)

    The listener is made here rather than declared (bus_listener_t) so
    that its stream buffer — the bound on what a slow browser can hold
    back — comes from [telemetry] sse_buffer_kb.

    On the bus telemetry answers the requests of PROTOCOL.md 10.1 only.
*/
#include <arpa/inet.h>
#include <libgen.h>

#include "tele_service.h"
#include "tele_internal.h"

bus_calls_t *
tele_calls (tele_t *self, const char *name)
{
    for (size_t i = 0; i < self->npeers; i++)
        if (streq (self->names [i], name))
            return self->calls [i];
    return NULL;
}

/*  Whether the Host header names this listener by an address, not by a
    name someone else's DNS could point here (DNS rebinding: a page of
    another site reading this one's API as if same-origin): an IPv4 or
    IPv6 literal, localhost, or the host of [telemetry] http. */
static char s_listen_host [256];

static bool
s_host_ok (bus_http_exchange_t *ex)
{
    const char *host = bus_http_header (ex, "Host");
    if (!host || !*host)
        return false;
    if (host [0] == '[')
        return true;
    char name [256];
    snprintf (name, sizeof name, "%s", host);
    char *colon = strrchr (name, ':');
    if (colon)
        *colon = 0;
    struct in_addr a;
    return inet_pton (AF_INET, name, &a) == 1 || strcasecmp (name, "localhost") == 0
        || (s_listen_host [0] && strcasecmp (name, s_listen_host) == 0);
}

void
tele_headers (bus_http_exchange_t *ex)
{
    bus_http_header_add (ex, "Content-Security-Policy",
                         "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                         "connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; "
                         "form-action 'self'; frame-ancestors 'none'");
    bus_http_header_add (ex, "X-Content-Type-Options", "nosniff");
    bus_http_header_add (ex, "X-Frame-Options", "DENY");
    bus_http_header_add (ex, "Referrer-Policy", "no-referrer");
    bus_http_header_add (ex, "Cross-Origin-Opener-Policy", "same-origin");
    bus_http_header_add (ex, "Cross-Origin-Resource-Policy", "same-origin");
    bus_http_header_add (ex, "Permissions-Policy", "camera=(), microphone=(), geolocation=()");
}

/*  The security headers, and the Host check: false (answered 421) when
    the request names this listener by a foreign name. */
static bool
s_admit (bus_http_exchange_t *ex)
{
    tele_headers (ex);
    if (s_host_ok (ex))
        return true;
    tele_error (ex, 421, "misdirected", "this dashboard answers to its address (127.0.0.1, localhost), not to a name");
    return false;
}

void
tele_json (bus_http_exchange_t *ex, int status, json_t *json)
{
    char *text = json ? json_dumps (json, JSON_COMPACT) : NULL;
    json_decref (json);
    if (!text) {
        bus_http_respond (ex, 500, "application/json", "{\"error\":{\"code\":\"internal\"}}", 29);
        return;
    }
    bus_http_header_add (ex, "Cache-Control", "no-store");
    bus_http_respond (ex, status, "application/json; charset=utf-8", text, strlen (text));
    free (text);
}

void
tele_error (bus_http_exchange_t *ex, int status, const char *code, const char *fmt, ...)
{
    char message [512];
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (message, sizeof message, fmt, ap);
    va_end (ap);
    tele_json (ex, status, json_pack ("{s:{s:s, s:s}}", "error", "code", code, "message", message));
}

/* ---- routes -------------------------------------------------------------- */

static void
s_route_events (bus_http_exchange_t *ex, void *arg)
{
    tele_t *self = arg;
    if (!s_admit (ex))
        return;
    const char *last = bus_http_header (ex, "Last-Event-ID");
    if (!last)
        last = bus_http_query (ex, "last_event_id");
    if (last && (strlen (last) > 128 || strpbrk (last, "\r\n"))) {
        tele_error (ex, 400, "invalid", "Last-Event-ID is <publisher>/<seq>");
        return;
    }
    int rc = tele_hub_attach (self->hub, ex, last);
    if (rc)
        tele_error (ex, 500, "internal", "cannot open the stream: %s", bus_strerror (rc));
}

static void
s_route_runs (bus_http_exchange_t *ex, void *arg)
{
    if (!s_admit (ex))
        return;
    tele_api_runs (arg, ex);
}

/*  /api/runs/{id}[/gantt|/receipt] */
static void
s_route_run (bus_http_exchange_t *ex, void *arg)
{
    if (!s_admit (ex))
        return;
    const char *rest = bus_http_path (ex) + strlen ("/api/runs/");
    char run [64] = "";
    const char *slash = strchr (rest, '/');
    size_t n = slash ? (size_t) (slash - rest) : strlen (rest);
    if (n == 0 || n >= sizeof run) {
        tele_error (ex, 400, "invalid", "a run id is 26 letters and digits");
        return;
    }
    memcpy (run, rest, n);
    run [n] = 0;
    tele_api_run (arg, ex, run, slash && slash [1] ? slash + 1 : NULL);
}

static void
s_route_approvals (bus_http_exchange_t *ex, void *arg)
{
    if (!s_admit (ex))
        return;
    tele_api_approvals (arg, ex);
}

static void
s_route_decide (bus_http_exchange_t *ex, void *arg)
{
    if (!s_admit (ex))
        return;
    tele_api_decide (arg, ex);
}

static void
s_route_redeem (bus_http_exchange_t *ex, void *arg)
{
    if (!s_admit (ex))
        return;
    tele_api_redeem (arg, ex);
}

static void
s_route_leases (bus_http_exchange_t *ex, void *arg)
{
    if (!s_admit (ex))
        return;
    tele_api_leases (arg, ex);
}

static void
s_route_health (bus_http_exchange_t *ex, void *arg)
{
    if (!s_admit (ex))
        return;
    tele_api_health (arg, ex);
}

static void
s_route_metrics (bus_http_exchange_t *ex, void *arg)
{
    if (!s_admit (ex))
        return;
    tele_api_metrics (arg, ex);
}

static bool s_known_path (const char *path, char *allow, size_t allow_len);

/*  /api/ paths no route took: 405 for a known path asked with another
    method (with Allow), 404 otherwise. */
static void
s_route_api_unknown (bus_http_exchange_t *ex, void *arg)
{
    if (!s_admit (ex))
        return;
    char allow [64] = "";
    if (s_known_path (bus_http_path (ex), allow, sizeof allow)) {
        bus_http_header_add (ex, "Allow", allow);
        tele_error (ex, 405, "method_not_allowed", "this endpoint takes %s", allow);
        return;
    }
    tele_error (ex, 404, "not_found", "no such endpoint");
}

static void
s_route_static (bus_http_exchange_t *ex, void *arg)
{
    tele_t *self = arg;
    if (!s_admit (ex))
        return;
    tele_static_serve (self->files, ex, bus_http_path (ex));
}

static const struct {
    const char *method;
    const char *path;
    bus_http_handler_fn *fn;
} s_routes [] = {
    { "GET", "/api/events", s_route_events },
    { "GET", "/api/runs", s_route_runs },
    { "GET", "/api/runs/*", s_route_run },
    { "POST", "/api/approvals/decide", s_route_decide },
    { "POST", "/api/devices/redeem", s_route_redeem },
    { "GET", "/api/approvals", s_route_approvals },
    { "GET", "/api/leases", s_route_leases },
    { "GET", "/api/health", s_route_health },
    { "GET", "/metrics", s_route_metrics },
    { NULL, "/api/*", s_route_api_unknown },
    { "GET", "/*", s_route_static },
};

/*  Whether a route serves exactly path; allow gets its method. */
static bool
s_known_path (const char *path, char *allow, size_t allow_len)
{
    for (size_t i = 0; i < sizeof s_routes / sizeof s_routes [0]; i++) {
        const char *p = s_routes [i].path;
        size_t n = strlen (p);
        bool match = p [n - 1] == '*' ? (strncmp (path, p, n - 1) == 0 && !streq (p, "/api/*") && !streq (p, "/*"))
                                      : streq (path, p);
        if (match && s_routes [i].method) {
            snprintf (allow, allow_len, "%s", s_routes [i].method);
            return true;
        }
    }
    return false;
}

/* ---- the follower and the heartbeat -------------------------------------- */

/*  Every event of every publisher: into the ring, out to the browsers. */
static int
s_on_event (bus_service_t *svc, void *state, bus_txn_t *txn, proto_msg_t *event)
{
    tele_t *self = state;
    json_t *env = proto_msg_to_json (event);
    char *data = env ? json_dumps (env, JSON_COMPACT) : NULL;
    json_decref (env);
    if (!data)
        return 0;               /* out of memory: this one is not shown (logged below) */
    char id [PROTO_PRINCIPAL_MAX + 32];
    snprintf (id, sizeof id, "%s/%" PRIu64, event->pub, event->seq);
    self->events_seen++;
    if (tele_ring_push (self->ring, id, event->type, data) < 0) {
        bus_warn ("telemetry: event %s not kept: out of memory", id);
        return 0;
    }
    tele_hub_broadcast (self->hub);
    return 0;
}

static void
s_heartbeat (bus_service_t *svc, void *state)
{
    tele_t *self = state;
    if (self && self->hub)
        tele_hub_heartbeat (self->hub);
}

/* ---- start and stop ------------------------------------------------------ */

/*  The dashboard's folder: [telemetry] static_dir, else
    share/sanctum/dashboard beside the binary's bin/. */
static void
s_static_dir (bus_config_t *config, char *out, size_t out_len)
{
    const char *dir = bus_config_str (config, "telemetry", "static_dir");
    if (dir && *dir) {
        snprintf (out, out_len, "%s", dir);
        return;
    }
    char exe [4096];
    ssize_t n = readlink ("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        snprintf (out, out_len, "share/sanctum/dashboard");
        return;
    }
    exe [n] = 0;
    snprintf (out, out_len, "%s/../share/sanctum/dashboard", dirname (exe));
}

static int
s_start (bus_service_t *svc, void **state)
{
    tele_t *self = calloc (1, sizeof *self);
    if (!self)
        return BUS_ENOMEM;
    *state = self;
    self->svc = svc;
    bus_config_t *config = bus_service_config (svc);
    self->ring = tele_ring_new ((size_t) bus_config_int (config, "telemetry", "sse_history"));
    self->hub = self->ring ? tele_hub_new (self->ring) : NULL;
    if (!self->hub)
        return BUS_ENOMEM;
    for (const bus_service_id_t *id = bus_services; id->name && self->npeers < TELE_PEERS; id++) {
        self->names [self->npeers] = id->name;
        if (!streq (id->section, "telemetry")) {
            self->calls [self->npeers] = bus_calls_for (svc, id->name);
            if (!self->calls [self->npeers]) {
                bus_error ("telemetry: no line to %s", id->name);
                return BUS_ECONFIG;
            }
        }
        self->npeers++;
    }
    char dir [4200], err [512] = "";
    s_static_dir (config, dir, sizeof dir);
    self->files = tele_static_load (dir, err, sizeof err);
    if (self->files)
        bus_info ("telemetry: dashboard: %zu files from %s", tele_static_count (self->files), dir);
    else
        bus_warn ("telemetry: no dashboard (%s): the API and /metrics are served, / answers 503", err);
    const char *address = bus_config_str (config, "telemetry", "http");
    snprintf (s_listen_host, sizeof s_listen_host, "%s", address ? address : "");
    if (strrchr (s_listen_host, ':'))
        *strrchr (s_listen_host, ':') = 0;
    bus_http_server_opts_t opts = {
        .address = address,
        .max_body = 65536,
        .max_stream_buffer = (size_t) bus_config_int (config, "telemetry", "sse_buffer_kb") * 1024,
        .max_connections = (int) bus_config_int (config, "telemetry", "http_max_connections"),
        .max_per_ip = (int) bus_config_int (config, "telemetry", "http_max_per_ip"),
    };
    self->http = bus_http_server_new (bus_service_loop (svc), &opts, err, sizeof err);
    if (!self->http) {
        bus_error ("telemetry: HTTP listener on %s ([telemetry] http): %s", address ? address : "(none)", err);
        return BUS_ECONFIG;
    }
    for (size_t i = 0; i < sizeof s_routes / sizeof s_routes [0]; i++) {
        int rc = bus_http_server_route (self->http, s_routes [i].method, s_routes [i].path, s_routes [i].fn, self);
        if (rc)
            return rc;
    }
    bus_info ("telemetry: HTTP on %s (port %d)", address, bus_http_server_port (self->http));
    return 0;
}

static void
s_stop (bus_service_t *svc, void **state)
{
    tele_t *self = *state;
    if (!self)
        return;
    /* the listener first: its open exchanges' gone callbacks free their
       gathers (cancelling their calls) and their stream clients */
    bus_http_server_destroy (&self->http);
    for (size_t i = 0; i < self->npeers; i++)
        bus_calls_destroy (&self->calls [i]);
    tele_hub_destroy (&self->hub);
    tele_ring_destroy (&self->ring);
    tele_static_destroy (&self->files);
    free (self);
    *state = NULL;
}

static const char *const s_dbs [] = { "cursors", NULL };

static const bus_timer_t s_timers [] = {
    { .name = "sse-heartbeat", .interval_key = "sse_heartbeat_ms", .fn = s_heartbeat },
    { 0 }
};

static const bus_follower_t s_followers [] = {
    { .name = "telemetry", .publishers = NULL, .fn = s_on_event, .memory = true, .from_now = false },
    { 0 }
};

const bus_daemon_t tele_daemon = {
    .section = "telemetry",
    .db_names = s_dbs,
    .start = s_start,
    .stop = s_stop,
    .timers = s_timers,
    .followers = s_followers,
};
