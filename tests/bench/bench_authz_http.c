/*  bench_authz_http.c — Check over OpenFGA's HTTP API beside the same Check
    over the bus, in the same run, against the same sanctum-authz daemon.

    Service: build/bin/sanctum-authz (beside this binary's directory) as
    its own process, as deployed, on a temporary config and keys, with
    its HTTP listener on an ephemeral loopback port and one pre-shared
    key. Data: a two-relation model (doc#viewer: [user] or owner) and
    2,000 owner tuples.

    (a) HTTP: 64 curl easy handles on a curl_multi (keep-alive: each
        connection is reused, across rounds too), each POSTing /stores/{id}/check with its
        bearer key; a finished handle is checked (200, an `allowed`
        boolean) and sent again at once: 64 in flight.
    (b) baseline: the same checks as authz.check over the bus, one
        bus_client (CURVE), 64 in flight (bus_client_send; each reply
        sends the next).
    The two take turns for S_ROUNDS rounds; each figure is the median of
    its rounds. Output:
        bench authz_http_check_throughput_64 VALUE req/s baseline B ratio R
    (R = HTTP / bus). No target is set: the figure says what HTTP and
    JSON cost beside the bus's MessagePack over CURVE.

    (c) StreamedListObjects of a big listing: user:anne views a root
        folder, S_FOLDERS folders under it and S_FILES files under those
        (file#viewer: [user] or viewer from parent); the time its first
        line arrives beside the time its last does, each the median of
        the rounds:
        bench authz_http_streamed_first_line VALUE ms baseline TOTAL ratio R
    (R = first / total: how early a streamed answer starts; a listing
    answered whole would be 1.00). (c) runs first: (a) keeps 64
    connections open, the server's most from one address.

    Usage: bench_authz_http [--quick]. Exit 0 when the measurement ran, 1
    on error (setup, a request failing).
*/
#include "bus_client.h"
#include "bus_error.h"
#include "../support/test_service.h"
#include "../support/bench_util.h"

#include <curl/curl.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define S_INFLIGHT   64
#define S_DOCS       2000
#define S_USERS      100
#define S_KEY        "bench-key-0123456789abcdef"
#define S_TIMEOUT_MS 10000
#define S_FOLDERS    100
#define S_FILES      20000          /* S_FILES / S_FOLDERS a folder */

/*  Check number k: doc k % S_DOCS, owned by user (k % S_DOCS) % S_USERS;
    every other check asks for another user (false). */
static void
s_check_of (int k, char *object, size_t olen, char *user, size_t ulen)
{
    int doc = k % S_DOCS;
    snprintf (object, olen, "doc:%d", doc);
    snprintf (user, ulen, "user:%d", (doc % S_USERS + (k & 1)) % S_USERS);
}

/* --- the daemon ----------------------------------------------------------- */

typedef struct s_slot_t s_slot_t;

typedef struct {
    test_service_t *env;
    zcert_t *cert;
    bus_client_t *client;
    pid_t daemon;
    char url [128];                 /* http://127.0.0.1:PORT/stores/ID/check */
    char stream_url [160];          /* .../streamed-list-objects */
    CURLM *multi;                   /* kept across rounds: its connections are reused */
    s_slot_t *slots;
    struct curl_slist *hdr;
} s_bench_t;

static void
s_stop (s_bench_t *self)
{
    bus_client_destroy (&self->client);
    if (self->daemon > 0) {
        kill (self->daemon, SIGTERM);
        waitpid (self->daemon, NULL, 0);
        self->daemon = 0;
    }
    test_service_destroy (&self->env);
    zcert_destroy (&self->cert);
}

/*  A bus call that must succeed. */
static int
s_call (s_bench_t *self, const char *type, json_t *body)
{
    proto_msg_t *reply = NULL;
    int rc = bus_client_call (self->client, type, body, NULL, &reply);
    json_decref (body);
    if (rc == 0 && !reply->ok) {
        char *e = json_dumps (reply->error, JSON_COMPACT);
        fprintf (stderr, "bench_authz_http: %s: %s\n", type, e ? e : "?");
        free (e);
        rc = -1;
    }
    proto_msg_destroy (&reply);
    return rc;
}

/*  Collects a response body. */
typedef struct {
    char data [4096];
    size_t len;
} s_buf_t;

static size_t
s_write_cb (char *ptr, size_t size, size_t n, void *arg)
{
    s_buf_t *b = arg;
    size_t len = size * n;
    size_t room = sizeof b->data - 1 - b->len;
    memcpy (b->data + b->len, ptr, len < room ? len : room);
    b->len += len < room ? len : room;
    b->data [b->len] = 0;
    return len;
}

/*  The store's id (GET /stores) into the check URL. */
static int
s_store_url (s_bench_t *self, int port)
{
    char url [96];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/stores", port);
    CURL *h = curl_easy_init ();
    struct curl_slist *hdr = curl_slist_append (NULL, "Authorization: Bearer " S_KEY);
    s_buf_t buf = { .len = 0 };
    int rc = -1;
    for (int tries = 0; h && tries < 100 && rc; tries++) {
        buf.len = 0;
        curl_easy_setopt (h, CURLOPT_URL, url);
        curl_easy_setopt (h, CURLOPT_HTTPHEADER, hdr);
        curl_easy_setopt (h, CURLOPT_WRITEFUNCTION, s_write_cb);
        curl_easy_setopt (h, CURLOPT_WRITEDATA, &buf);
        long status = 0;
        if (curl_easy_perform (h) == CURLE_OK
        &&  curl_easy_getinfo (h, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK && status == 200) {
            json_t *out = json_loads (buf.data, 0, NULL);
            const char *id = json_string_value (json_object_get (json_array_get (json_object_get (out, "stores"), 0),
                                                                 "id"));
            if (id) {
                snprintf (self->url, sizeof self->url, "http://127.0.0.1:%d/stores/%s/check", port, id);
                snprintf (self->stream_url, sizeof self->stream_url,
                          "http://127.0.0.1:%d/stores/%s/streamed-list-objects", port, id);
                rc = 0;
            }
            json_decref (out);
        }
        else
            usleep (50000);
    }
    curl_slist_free_all (hdr);
    curl_easy_cleanup (h);
    return rc;
}

/*  Environment, keys, the daemon with its HTTP listener, the data. */
static int
s_start (s_bench_t *self)
{
    char err [256] = "", path [PATH_MAX + 32], keys [PATH_MAX], conf [PATH_MAX], exe [PATH_MAX];
    self->env = test_service_new ("authz", NULL, "map_size_mb = 256\n", err, sizeof err);
    if (!self->env) {
        fprintf (stderr, "bench_authz_http: %s\n", err);
        return -1;
    }
    self->cert = test_service_cert (self->env, "bench", "ops:bench");
    snprintf (keys, sizeof keys, "%s/fga_keys", test_service_dir (self->env));
    FILE *f = fopen (keys, "w");
    if (!self->cert || !f) {
        if (f)
            fclose (f);
        return -1;
    }
    fprintf (f, "bench %s\n", S_KEY);
    fclose (f);
    ssize_t n = readlink ("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return -1;
    exe [n] = 0;
    snprintf (path, sizeof path, "%s/../bin/sanctum-authz", dirname (exe));
    snprintf (conf, sizeof conf, "%s/sanctum.conf", test_service_dir (self->env));
    if (access (path, X_OK)) {
        fprintf (stderr, "bench_authz_http: no %s (make builds it)\n", path);
        return -1;
    }
    int port = test_service_free_port ();
    char address [64];
    snprintf (address, sizeof address, "127.0.0.1:%d", port);
    fflush (NULL);
    self->daemon = fork ();
    if (self->daemon == 0) {
        prctl (PR_SET_PDEATHSIG, SIGTERM);
        setenv ("SANCTUM_SANCTUM_LOG_LEVEL", "warn", 1);
        setenv ("SANCTUM_AUTHZ_HTTP", address, 1);
        setenv ("SANCTUM_AUTHZ_HTTP_KEYS", keys, 1);
        execl (path, path, "--config", conf, (char *) NULL);
        _exit (127);
    }
    if (self->daemon < 0)
        return -1;
    self->client = bus_client_new (test_service_rpc (self->env), test_service_server_key (self->env),
                                   self->cert, S_TIMEOUT_MS, 0);
    if (!self->client || s_call (self, "health", NULL))
        return -1;
    if (s_call (self, "authz.model.write",
                json_pack ("{s:s}", "model", "model\n  schema 1.1\ntype user\ntype doc\n  relations\n"
                                             "    define owner: [user]\n    define viewer: [user] or owner\n"
                                             "type folder\n  relations\n    define parent: [folder]\n"
                                             "    define viewer: [user] or viewer from parent\n"
                                             "type file\n  relations\n    define parent: [folder]\n"
                                             "    define viewer: [user] or viewer from parent\n")))
        return -1;
    //  the hierarchy of (c): root, folders, files, 100 tuples a write
    json_t *writes = json_array ();
    json_array_append_new (writes, json_pack ("{s:s, s:s, s:s}", "object", "folder:root", "relation", "viewer",
                                              "user", "user:anne"));
    for (int i = 0; i < S_FOLDERS + S_FILES; i++) {
        char object [32], user [32];
        snprintf (object, sizeof object, i < S_FOLDERS ? "folder:%d" : "file:%d", i);
        if (i < S_FOLDERS)
            snprintf (user, sizeof user, "folder:root");
        else
            snprintf (user, sizeof user, "folder:%d", i % S_FOLDERS);
        json_array_append_new (writes, json_pack ("{s:s, s:s, s:s}", "object", object, "relation", "parent",
                                                  "user", user));
        if (json_array_size (writes) == 100 || i == S_FOLDERS + S_FILES - 1) {
            if (s_call (self, "authz.write", json_pack ("{s:o}", "writes", writes)))
                return -1;
            writes = json_array ();
        }
    }
    json_decref (writes);
    for (int d = 0; d < S_DOCS; d += 100) {
        json_t *writes = json_array ();
        for (int i = d; i < d + 100; i++) {
            char object [32], user [32];
            snprintf (object, sizeof object, "doc:%d", i);
            snprintf (user, sizeof user, "user:%d", i % S_USERS);
            json_array_append_new (writes, json_pack ("{s:s, s:s, s:s}", "object", object, "relation", "owner",
                                                      "user", user));
        }
        if (s_call (self, "authz.write", json_pack ("{s:o}", "writes", writes)))
            return -1;
    }
    return s_store_url (self, port);
}

/* --- (a) HTTP ------------------------------------------------------------- */

struct s_slot_t {
    CURL *h;
    s_buf_t buf;
    char body [160];
};

/*  Point slot at check k. */
static void
s_slot_set (s_slot_t *slot, int k)
{
    char object [32], user [32];
    s_check_of (k, object, sizeof object, user, sizeof user);
    snprintf (slot->body, sizeof slot->body,
              "{\"tuple_key\":{\"object\":\"%s\",\"relation\":\"viewer\",\"user\":\"%s\"}}", object, user);
    slot->buf.len = 0;
    curl_easy_setopt (slot->h, CURLOPT_POSTFIELDS, slot->body);
}

/*  Checks per second over HTTP for secs, S_INFLIGHT in flight; -1 on a
    failed request. */
/*  The multi handle and its S_INFLIGHT easy handles, made once: the
    connections they open stay in the multi handle's cache from one round
    to the next (a client that closed 64 connections and opened 64 new
    ones at once could meet the server's cap of 64 per address before it
    has seen the old ones close). */
static int
s_http_init (s_bench_t *self)
{
    self->multi = curl_multi_init ();
    self->hdr = curl_slist_append (NULL, "Authorization: Bearer " S_KEY);
    self->hdr = curl_slist_append (self->hdr, "Content-Type: application/json");
    self->slots = calloc (S_INFLIGHT, sizeof *self->slots);
    if (!self->multi || !self->hdr || !self->slots)
        return -1;
    for (int i = 0; i < S_INFLIGHT; i++) {
        s_slot_t *slot = &self->slots [i];
        if (!(slot->h = curl_easy_init ()))
            return -1;
        curl_easy_setopt (slot->h, CURLOPT_URL, self->url);
        curl_easy_setopt (slot->h, CURLOPT_HTTPHEADER, self->hdr);
        curl_easy_setopt (slot->h, CURLOPT_WRITEFUNCTION, s_write_cb);
        curl_easy_setopt (slot->h, CURLOPT_WRITEDATA, &slot->buf);
        curl_easy_setopt (slot->h, CURLOPT_PRIVATE, slot);
    }
    return 0;
}

static void
s_http_fini (s_bench_t *self)
{
    for (int i = 0; self->slots && i < S_INFLIGHT; i++)
        curl_easy_cleanup (self->slots [i].h);
    free (self->slots);
    self->slots = NULL;
    curl_slist_free_all (self->hdr);
    self->hdr = NULL;
    if (self->multi)
        curl_multi_cleanup (self->multi);
    self->multi = NULL;
}

static double
s_http_round (s_bench_t *self, double secs)
{
    CURLM *multi = self->multi;
    int k = 0, done = 0, failed = 0, active = 0;
    for (int i = 0; i < S_INFLIGHT; i++) {
        s_slot_set (&self->slots [i], k++);
        curl_multi_add_handle (multi, self->slots [i].h);
        active++;
    }
    double start = bench_now_s (), end = start + secs;
    while (active > 0 && !failed) {
        int running = 0;
        curl_multi_perform (multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read (multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            s_slot_t *slot = NULL;
            long status = 0;
            curl_easy_getinfo (msg->easy_handle, CURLINFO_PRIVATE, (char **) &slot);
            curl_easy_getinfo (msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
            if (msg->data.result != CURLE_OK || status != 200 || !strstr (slot->buf.data, "\"allowed\":")) {
                fprintf (stderr, "bench_authz_http: a check failed: %s %ld %s\n",
                         curl_easy_strerror (msg->data.result), status, slot->buf.data);
                failed = 1;
            }
            curl_multi_remove_handle (multi, slot->h);
            active--;
            if (bench_now_s () < end) {
                done++;
                s_slot_set (slot, k++);
                curl_multi_add_handle (multi, slot->h);
                active++;
            }
        }
        if (active > 0)
            curl_multi_poll (multi, NULL, 0, 100, NULL);
    }
    double took = bench_now_s () - start;
    for (int i = 0; i < S_INFLIGHT; i++)
        curl_multi_remove_handle (multi, self->slots [i].h);
    return failed ? -1 : done / took;
}

/* --- (c) a streamed listing ---------------------------------------------- */

/*  A streamed answer's lines as they come: when the first ended, how
    many, whether one was an error. */
typedef struct {
    double start, first;
    int lines;
    bool error;
    char tail [512];                /* the line being received */
    size_t tail_len;
} s_lines_t;

static size_t
s_lines_cb (char *ptr, size_t size, size_t n, void *arg)
{
    s_lines_t *l = arg;
    size_t len = size * n;
    for (size_t i = 0; i < len; i++) {
        if (ptr [i] != '\n') {
            if (l->tail_len < sizeof l->tail - 1)
                l->tail [l->tail_len++] = ptr [i];
            continue;
        }
        l->tail [l->tail_len] = 0;
        if (strncmp (l->tail, "{\"result\":", 10))
            l->error = true;
        if (l->lines++ == 0)
            l->first = bench_now_s () - l->start;
        l->tail_len = 0;
    }
    return len;
}

/*  One streamed listing of anne's files: *first and *total in ms; -1 on
    failure (not every file, an error line, not a 200). */
static int
s_stream_round (s_bench_t *self, double *first, double *total)
{
    CURL *h = curl_easy_init ();
    struct curl_slist *hdr = curl_slist_append (NULL, "Authorization: Bearer " S_KEY);
    hdr = hdr ? curl_slist_append (hdr, "Content-Type: application/json") : NULL;
    if (!h || !hdr) {
        curl_slist_free_all (hdr);
        curl_easy_cleanup (h);
        return -1;
    }
    s_lines_t lines = { .start = bench_now_s () };
    curl_easy_setopt (h, CURLOPT_URL, self->stream_url);
    curl_easy_setopt (h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt (h, CURLOPT_POSTFIELDS, "{\"type\":\"file\",\"relation\":\"viewer\",\"user\":\"user:anne\"}");
    curl_easy_setopt (h, CURLOPT_WRITEFUNCTION, s_lines_cb);
    curl_easy_setopt (h, CURLOPT_WRITEDATA, &lines);
    long status = 0;
    CURLcode rc = curl_easy_perform (h);
    *total = (bench_now_s () - lines.start) * 1000;
    *first = lines.first * 1000;
    curl_easy_getinfo (h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup (h);
    curl_slist_free_all (hdr);
    if (rc != CURLE_OK || status != 200 || lines.error || lines.lines != S_FILES) {
        fprintf (stderr, "bench_authz_http: the streamed listing failed: %s %ld, %d lines%s\n",
                 curl_easy_strerror (rc), status, lines.lines, lines.error ? ", an error line" : "");
        return -1;
    }
    return 0;
}

/* --- (b) the bus ---------------------------------------------------------- */

static json_t *
s_bus_body (int k)
{
    char object [32], user [32];
    s_check_of (k, object, sizeof object, user, sizeof user);
    return json_pack ("{s:{s:s, s:s, s:s}}", "tuple_key", "object", object, "relation", "viewer", "user", user);
}

/*  Checks per second over the bus for secs, S_INFLIGHT in flight. */
static double
s_bus_round (s_bench_t *self, double secs)
{
    int k = 0, done = 0, inflight = 0, failed = 0;
    for (int i = 0; i < S_INFLIGHT; i++) {
        json_t *body = s_bus_body (k++);
        if (bus_client_send (self->client, "authz.check", body, NULL, NULL) == 0)
            inflight++;
        json_decref (body);
    }
    double start = bench_now_s (), end = start + secs;
    while (inflight > 0) {
        proto_msg_t *reply = NULL;
        if (bus_client_recv (self->client, S_TIMEOUT_MS, &reply)) {
            failed = 1;
            break;
        }
        inflight--;
        if (!reply->ok || !json_is_boolean (json_object_get (reply->body, "allowed")))
            failed = 1;
        proto_msg_destroy (&reply);
        if (!failed && bench_now_s () < end) {
            done++;
            json_t *body = s_bus_body (k++);
            if (bus_client_send (self->client, "authz.check", body, NULL, NULL) == 0)
                inflight++;
            json_decref (body);
        }
    }
    double took = bench_now_s () - start;
    return failed ? -1 : done / took;
}

int
main (int argc, char **argv)
{
    bool quick = false;
    for (int i = 1; i < argc; i++) {
        if (streq (argv [i], "--quick"))
            quick = true;
        else {
            fprintf (stderr, "usage: bench_authz_http [--quick]\n");
            return 1;
        }
    }
    zsys_init ();
    zsys_set_logstream (NULL);
    curl_global_init (CURL_GLOBAL_DEFAULT);
    s_bench_t bench = { 0 };
    int rc = 1;
    if (s_start (&bench) || s_http_init (&bench)) {
        fprintf (stderr, "bench_authz_http: setup failed\n");
        goto done;
    }
    int rounds = quick ? 1 : 5;
    double secs = quick ? 0.3 : 2.0;
    /*  (c) first, before (a)'s 64 connections (the most from one address)
        are open */
    double first [5], total [5];
    for (int r = 0; r < rounds; r++) {
        if (s_stream_round (&bench, &first [r], &total [r]))
            goto done;
        fprintf (stderr, "# streamed listing %d: first line %.1f ms, last %.1f ms\n", r + 1, first [r], total [r]);
    }
    qsort (first, (size_t) rounds, sizeof (double), bench_cmp_double);
    qsort (total, (size_t) rounds, sizeof (double), bench_cmp_double);
    double f1 = first [rounds / 2], t1 = total [rounds / 2];
    printf ("bench authz_http_streamed_first_line %.1f ms baseline %.1f ratio %.2f\n", f1, t1, t1 > 0 ? f1 / t1 : 0);
    double http [5], bus [5];
    /* a warm-up of each: connections made, pages touched */
    if (s_http_round (&bench, 0.1) < 0 || s_bus_round (&bench, 0.1) < 0)
        goto done;
    for (int r = 0; r < rounds; r++) {
        bool http_first = r % 2 == 0;
        double a = http_first ? s_http_round (&bench, secs) : s_bus_round (&bench, secs);
        double b = http_first ? s_bus_round (&bench, secs) : s_http_round (&bench, secs);
        http [r] = http_first ? a : b;
        bus [r] = http_first ? b : a;
        if (http [r] < 0 || bus [r] < 0)
            goto done;
        fprintf (stderr, "# round %d: http %.0f/s, bus %.0f/s\n", r + 1, http [r], bus [r]);
    }
    qsort (http, (size_t) rounds, sizeof (double), bench_cmp_double);
    qsort (bus, (size_t) rounds, sizeof (double), bench_cmp_double);
    double h = http [rounds / 2], b = bus [rounds / 2];
    printf ("bench authz_http_check_throughput_64 %.0f req/s baseline %.0f ratio %.2f\n", h, b, b > 0 ? h / b : 0);
    rc = 0;
done:
    s_http_fini (&bench);
    s_stop (&bench);
    curl_global_cleanup ();
    return rc;
}
