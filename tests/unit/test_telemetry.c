/*  test_telemetry.c — unit tests for telemetry's pure parts: the
    Prometheus rendering of `stats` replies (tele_metrics.c), the event ring
    behind Last-Event-ID (tele_sse.c) and the dashboard's file table
    (tele_static.c).
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>
#include <czmq.h>

#include "../../services/telemetry/tele_internal.h"

/*  A stats reply with one histogram: 3 requests, two under 4 µs, one
    slower than the last bucket. */
static json_t *
s_stats (void)
{
    json_t *buckets = json_array ();
    json_int_t cum [27];
    for (int b = 0; b < 27; b++) {
        cum [b] = b < 2 ? 0 : 2;
        if (b == 26)
            cum [b] = 3;          /* the last bucket also holds what is slower */
        json_array_append_new (buckets, json_pack ("[I, I]", (json_int_t) (1LL << b), cum [b]));
    }
    return json_pack ("{s:s, s:i, s:{s:i, s:i, s:i}, s:{s:{s:i, s:i, s:o}}}", "service", "ciba-broker", "uptime_s", 7,
                      "counters", "requests_received", 3, "dedupe_entries", 2, "weird.name-x", 1,
                      "latency_us", "ciba.authorize", "count", 3, "sum", 100000000, "buckets", buckets);
}

static void
test_metrics_histograms_and_names (void **state)
{
    json_t *stats = json_pack ("{s:o, s:n}", "ciba-broker", s_stats (), "authz");
    json_t *extra = json_pack ("{s:{s:s, s:s, s:[[{s:s}, i]]}}", "sanctum_runs", "type", "gauge", "help",
                               "Runs.", "samples", "state", "a\"b\\c\nd", 4);
    char *text = tele_metrics_render (stats, extra);
    assert_non_null (text);
    /* +Inf equals _count even though the last bucket was left out */
    assert_non_null (strstr (text, "sanctum_request_duration_seconds_bucket{service=\"ciba-broker\",type=\"ciba.authorize\",le=\"+Inf\"} 3\n"));
    assert_non_null (strstr (text, "sanctum_request_duration_seconds_count{service=\"ciba-broker\",type=\"ciba.authorize\"} 3\n"));
    assert_non_null (strstr (text, "sanctum_request_duration_seconds_sum{service=\"ciba-broker\",type=\"ciba.authorize\"} 100.000000\n"));
    assert_non_null (strstr (text, "le=\"0.000004\"} 2\n"));
    assert_null (strstr (text, "le=\"67.108864\""));
    /* counters get _total, levels stay gauges, names are sanitised */
    assert_non_null (strstr (text, "# TYPE sanctum_requests_received_total counter\n"));
    assert_non_null (strstr (text, "sanctum_requests_received_total{service=\"ciba-broker\"} 3\n"));
    assert_non_null (strstr (text, "# TYPE sanctum_dedupe_entries gauge\n"));
    assert_non_null (strstr (text, "sanctum_weird_name_x_total{service=\"ciba-broker\"} 1\n"));
    /* a service that did not answer is down, and nothing else of it */
    assert_non_null (strstr (text, "sanctum_up{service=\"authz\"} 0\n"));
    assert_non_null (strstr (text, "sanctum_up{service=\"ciba-broker\"} 1\n"));
    assert_null (strstr (text, "sanctum_uptime_seconds{service=\"authz\"}"));
    /* label values escaped */
    assert_non_null (strstr (text, "sanctum_runs{state=\"a\\\"b\\\\c\\nd\"} 4\n"));
    /* each family's HELP and TYPE once */
    const char *first = strstr (text, "# TYPE sanctum_up gauge");
    assert_non_null (first);
    assert_null (strstr (first + 1, "# TYPE sanctum_up gauge"));
    free (text);
    json_decref (stats);
    json_decref (extra);
}

/*  Buckets that go down are not a histogram: only +Inf, _sum and _count. */
static void
test_metrics_broken_buckets (void **state)
{
    json_t *stats = json_pack ("{s:{s:i, s:{}, s:{s:{s:i, s:i, s:[[i,i],[i,i],[i,i]]}}}}", "x", "uptime_s", 1,
                               "counters", "latency_us", "t", "count", 5, "sum", 10, "buckets", 1, 4, 2, 3, 4, 5);
    json_t *none = json_object ();
    char *text = tele_metrics_render (stats, none);
    json_decref (none);
    assert_non_null (text);
    assert_non_null (strstr (text, "le=\"0.000001\"} 4\n"));
    assert_null (strstr (text, "le=\"0.000002\""));
    assert_non_null (strstr (text, "le=\"+Inf\"} 5\n"));
    free (text);
    json_decref (stats);
}

static void
test_ring_ids_and_eviction (void **state)
{
    tele_ring_t *ring = tele_ring_new (3);
    assert_non_null (ring);
    assert_string_equal (tele_ring_last_id (ring), "");
    assert_int_equal (tele_ring_find (ring, "svc:a/1"), -1);
    char id [32];
    for (int i = 1; i <= 5; i++) {
        snprintf (id, sizeof id, "svc:a/%d", i);
        assert_int_equal (tele_ring_push (ring, id, "echo.seen", strdup ("{}")), i - 1);
    }
    /* three kept: 3, 4, 5 at positions 2..4 */
    assert_int_equal (tele_ring_begin (ring), 2);
    assert_int_equal (tele_ring_end (ring), 5);
    assert_int_equal (tele_ring_find (ring, "svc:a/1"), -1);
    assert_int_equal (tele_ring_find (ring, "svc:a/2"), -1);
    assert_int_equal (tele_ring_find (ring, "svc:a/3"), 2);
    assert_int_equal (tele_ring_find (ring, "svc:a/5"), 4);
    const char *got, *type, *data;
    assert_false (tele_ring_get (ring, 1, &got, &type, &data));
    assert_true (tele_ring_get (ring, 3, &got, &type, &data));
    assert_string_equal (got, "svc:a/4");
    assert_string_equal (type, "echo.seen");
    assert_string_equal (tele_ring_last_id (ring), "svc:a/5");
    tele_ring_destroy (&ring);
    assert_null (ring);
}

static void
test_static_types_and_load (void **state)
{
    assert_string_equal (tele_static_type ("index.html"), "text/html; charset=utf-8");
    assert_string_equal (tele_static_type ("a/app.js"), "text/javascript; charset=utf-8");
    assert_string_equal (tele_static_type ("x.CSS"), "text/css; charset=utf-8");
    assert_string_equal (tele_static_type ("f.svg"), "image/svg+xml");
    assert_string_equal (tele_static_type ("noext"), "application/octet-stream");
    char dir [] = "/tmp/tele-static-XXXXXX";
    assert_non_null (mkdtemp (dir));
    char path [256];
    snprintf (path, sizeof path, "%s/index.html", dir);
    FILE *f = fopen (path, "w");
    fputs ("<!doctype html>", f);
    fclose (f);
    snprintf (path, sizeof path, "%s/index.html.gz", dir);
    f = fopen (path, "w");
    fputs ("gz", f);
    fclose (f);
    snprintf (path, sizeof path, "%s/sub", dir);
    mkdir (path, 0700);
    snprintf (path, sizeof path, "%s/sub/b.js", dir);
    f = fopen (path, "w");
    fputs ("export {}", f);
    fclose (f);
    char err [256] = "";
    tele_static_t *files = tele_static_load (dir, err, sizeof err);
    assert_non_null (files);
    assert_int_equal (tele_static_count (files), 2);     /* the .gz is not a file of its own */
    tele_static_destroy (&files);
    assert_null (tele_static_load ("/nonexistent/dashboard", err, sizeof err));
    assert_non_null (strstr (err, "/nonexistent/dashboard"));
    char cmd [300];
    snprintf (cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal (system (cmd), 0);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_metrics_histograms_and_names),
        cmocka_unit_test (test_metrics_broken_buckets),
        cmocka_unit_test (test_ring_ids_and_eviction),
        cmocka_unit_test (test_static_types_and_load),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
