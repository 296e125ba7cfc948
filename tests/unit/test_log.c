/*  test_log.c — unit tests for bus_log (JSON lines on stderr).

    stderr is captured through a pipe (dup2) drained by a reader thread,
    so that many lines never block the writer; every captured line must be
    one complete JSON object.
*/
#include <fcntl.h>
#include <pthread.h>
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

#include "bus_log.h"

#define TRACE "0af7651916cd43dd8448eb211c80319c"

typedef struct {
    int saved_fd;               /* the real stderr, -1 when not capturing */
    int read_fd;
    pthread_t reader;
    char *text;                 /* what was captured, NUL-terminated */
    size_t len;
} capture_t;

static capture_t s_cap = { -1, -1, 0, NULL, 0 };


/*  Reader thread: append everything from the pipe to s_cap.text. */
static void *
s_drain (void *arg)
{
    char buf [4096];
    ssize_t n;
    while ((n = read (s_cap.read_fd, buf, sizeof buf)) > 0) {
        char *grown = realloc (s_cap.text, s_cap.len + (size_t) n + 1);
        if (!grown)
            abort ();
        s_cap.text = grown;
        memcpy (s_cap.text + s_cap.len, buf, (size_t) n);
        s_cap.len += (size_t) n;
        s_cap.text [s_cap.len] = 0;
    }
    return NULL;
}


/*  Start capturing stderr. */
static void
s_capture_begin (void)
{
    int fds [2];
    assert_int_equal (pipe (fds), 0);
    free (s_cap.text);
    s_cap.text = calloc (1, 1);
    s_cap.len = 0;
    s_cap.read_fd = fds [0];
    s_cap.saved_fd = dup (STDERR_FILENO);
    assert_true (s_cap.saved_fd >= 0);
    assert_true (dup2 (fds [1], STDERR_FILENO) >= 0);
    close (fds [1]);
    assert_int_equal (pthread_create (&s_cap.reader, NULL, s_drain, NULL), 0);
}


/*  Stop capturing (restoring stderr) and return the captured text, owned
    by s_cap. Safe to call when not capturing. */
static const char *
s_capture_end (void)
{
    if (s_cap.saved_fd < 0)
        return s_cap.text;
    dup2 (s_cap.saved_fd, STDERR_FILENO);   /* closes the pipe's write end */
    close (s_cap.saved_fd);
    s_cap.saved_fd = -1;
    pthread_join (s_cap.reader, NULL);
    close (s_cap.read_fd);
    return s_cap.text;
}


/*  Teardown: restore stderr even if a test failed mid-capture. */
static int
s_teardown (void **state)
{
    s_capture_end ();
    free (s_cap.text);
    s_cap.text = NULL;
    bus_log_set_trace (NULL);
    return 0;
}


/*  Split the captured text into parsed lines (up to max); asserts that
    the text ends with a newline and every line is a JSON object with
    string ts, level, service, msg and a well-formed timestamp. Returns the
    number of lines; the caller decrefs them. */
static int
s_lines (const char *text, json_t **lines, int max)
{
    int count = 0;
    size_t len = strlen (text);
    assert_true (len == 0 || text [len - 1] == '\n');
    while (*text) {
        const char *nl = strchr (text, '\n');
        assert_non_null (nl);
        assert_true (count < max);
        json_error_t error;
        json_t *line = json_loadb (text, (size_t) (nl - text), 0, &error);
        if (!line)
            fail_msg ("not JSON: %.*s (%s)", (int) (nl - text), text, error.text);
        assert_true (json_is_object (line));
        const char *keys [] = { "ts", "level", "service", "msg" };
        for (int i = 0; i < 4; i++)
            assert_true (json_is_string (json_object_get (line, keys [i])));
        const char *ts = json_string_value (json_object_get (line, "ts"));
        assert_int_equal (strlen (ts), 27);     /* 2026-11-29T16:13:16.123456Z */
        assert_true (ts [4] == '-' && ts [10] == 'T' && ts [19] == '.' && ts [26] == 'Z');
        lines [count++] = line;
        text = nl + 1;
    }
    return count;
}


/*  String member of a line, or NULL. */
static const char *
s_get (json_t *line, const char *key)
{
    return json_string_value (json_object_get (line, key));
}


static void
s_free_lines (json_t **lines, int count)
{
    for (int i = 0; i < count; i++)
        json_decref (lines [i]);
}


static void
test_required_fields (void **state)
{
    bus_log_init ("svc-a", "debug");
    s_capture_begin ();
    bus_info ("hello %d", 42);
    json_t *lines [4];
    int n = s_lines (s_capture_end (), lines, 4);
    assert_int_equal (n, 1);
    assert_string_equal (s_get (lines [0], "level"), "info");
    assert_string_equal (s_get (lines [0], "service"), "svc-a");
    assert_string_equal (s_get (lines [0], "msg"), "hello 42");
    assert_null (json_object_get (lines [0], "trace"));
    assert_int_equal (json_object_size (lines [0]), 4);
    s_free_lines (lines, n);
}


static void
test_level_filter (void **state)
{
    assert_int_equal (bus_log_level_parse ("debug"), BUS_LOG_DEBUG);
    assert_int_equal (bus_log_level_parse ("WARN"), BUS_LOG_WARN);
    assert_int_equal (bus_log_level_parse ("error"), BUS_LOG_ERROR);
    assert_int_equal (bus_log_level_parse ("verbose"), -1);
    assert_int_equal (bus_log_level_parse (NULL), -1);

    bus_log_init ("svc", "warn");
    bus_log_init (NULL, "nonsense");        /* keeps warn and the name */
    s_capture_begin ();
    bus_debug ("d");
    bus_info ("i");
    bus_warn ("w");
    bus_error ("e");
    bus_log_fields (BUS_LOG_INFO, json_pack ("{s:i}", "dropped", 1), "filtered");
    json_t *lines [8];
    int n = s_lines (s_capture_end (), lines, 8);
    assert_int_equal (n, 2);
    assert_string_equal (s_get (lines [0], "level"), "warn");
    assert_string_equal (s_get (lines [0], "msg"), "w");
    assert_string_equal (s_get (lines [0], "service"), "svc");
    assert_string_equal (s_get (lines [1], "level"), "error");
    s_free_lines (lines, n);
    bus_log_init (NULL, "debug");
}


/*  Thread body: log one line (this thread has no trace id). */
static void *
s_log_thread (void *arg)
{
    bus_info ("from another thread");
    return NULL;
}


static void
test_trace (void **state)
{
    bus_log_init ("svc", "debug");
    s_capture_begin ();
    bus_log_set_trace (TRACE);
    bus_info ("traced");
    pthread_t thread;
    pthread_create (&thread, NULL, s_log_thread, NULL);
    pthread_join (thread, NULL);
    bus_log_set_trace (NULL);
    bus_info ("cleared");
    bus_log_set_trace ("0af7651916cd43dd8448eb211c80319");    /* 31 chars */
    bus_info ("short");
    bus_log_set_trace ("0af7651916cd43dd8448eb211c80319\"");  /* not hex */
    bus_info ("bad");
    json_t *lines [8];
    int n = s_lines (s_capture_end (), lines, 8);
    assert_int_equal (n, 5);
    assert_string_equal (s_get (lines [0], "trace"), TRACE);
    assert_string_equal (s_get (lines [1], "msg"), "from another thread");
    for (int i = 1; i < 5; i++)
        assert_null (json_object_get (lines [i], "trace"));
    s_free_lines (lines, n);
}


static void
test_fields_merged (void **state)
{
    bus_log_init ("svc", "debug");
    bus_log_set_trace (TRACE);
    s_capture_begin ();
    bus_log_fields (BUS_LOG_WARN,
                    json_pack ("{s:s, s:i, s:s, s:s, s:s, s:s, s:s}",
                               "peer", "vault", "count", 3,
                               "ts", "forged", "level", "debug",
                               "service", "other", "msg", "forged",
                               "trace", "forged"),
                    "real %s", "message");
    bus_log_fields (BUS_LOG_INFO, NULL, "no fields");
    bus_log_fields (BUS_LOG_INFO, json_pack ("[i]", 1), "not an object");
    json_t *lines [4];
    int n = s_lines (s_capture_end (), lines, 4);
    bus_log_set_trace (NULL);
    assert_int_equal (n, 3);
    assert_string_equal (s_get (lines [0], "peer"), "vault");
    assert_int_equal (json_integer_value (json_object_get (lines [0], "count")), 3);
    assert_string_equal (s_get (lines [0], "level"), "warn");
    assert_string_equal (s_get (lines [0], "service"), "svc");
    assert_string_equal (s_get (lines [0], "msg"), "real message");
    assert_string_equal (s_get (lines [0], "trace"), TRACE);
    assert_string_not_equal (s_get (lines [0], "ts"), "forged");
    assert_string_equal (s_get (lines [1], "msg"), "no fields");
    assert_string_equal (s_get (lines [2], "msg"), "not an object");
    s_free_lines (lines, n);
}


static void
test_escaping (void **state)
{
    bus_log_init ("svc", "debug");
    const char *nasty = "say \"hi\"\nnew line\\ tab\t bell\x07 {\"x\":1}";
    s_capture_begin ();
    bus_info ("%s", nasty);
    bus_info ("bad utf8: \xff\xfe ok \xc3\xa9 cut \xe2\x82");
    char big [10000];
    memset (big, 'a', sizeof big - 1);
    big [sizeof big - 1] = 0;
    bus_info ("%s", big);
    json_t *lines [4];
    int n = s_lines (s_capture_end (), lines, 4);
    assert_int_equal (n, 3);
    assert_string_equal (s_get (lines [0], "msg"), nasty);
    assert_string_equal (s_get (lines [1], "msg"), "bad utf8: ?? ok \xc3\xa9 cut ??");
    assert_int_equal (strlen (s_get (lines [2], "msg")), 4096);
    s_free_lines (lines, n);
}


/*  Thread body: log many lines with a field naming the thread. */
static void *
s_spam (void *arg)
{
    for (int i = 0; i < 300; i++)
        bus_log_fields (BUS_LOG_INFO, json_pack ("{s:i, s:i}", "thread",
                        (int) (intptr_t) arg, "i", i),
                        "line %d of a burst from several threads", i);
    return NULL;
}


/*  Concurrent lines never interleave: each is whole JSON. */
static void
test_threads_whole_lines (void **state)
{
    bus_log_init ("svc", "debug");
    s_capture_begin ();
    pthread_t threads [4];
    for (intptr_t t = 0; t < 4; t++)
        pthread_create (&threads [t], NULL, s_spam, (void *) t);
    for (int t = 0; t < 4; t++)
        pthread_join (threads [t], NULL);
    static json_t *lines [1200];
    int n = s_lines (s_capture_end (), lines, 1200);
    assert_int_equal (n, 1200);
    s_free_lines (lines, n);
}


/* --- rate-limited lines ----------------------------------------------------- */

static int64_t s_clock_ms = 1000000;

static int64_t
s_fake_clock (void)
{
    return s_clock_ms;
}


/*  Number of captured lines whose msg contains text. */
static int
s_count_msg (json_t **lines, int n, const char *text)
{
    int count = 0;
    for (int i = 0; i < n; i++)
        if (strstr (s_get (lines [i], "msg"), text))
            count++;
    return count;
}


/*  A flood from one key writes `lines` lines per window; the first line
    after the window says how many were left out, with thousands
    separators and a "suppressed" field; other keys are not held back. */
static void
test_limit_window (void **state)
{
    bus_log_init ("svc", "info");
    bus_log_limit_t *limit = bus_log_limit_new (5, 10000, 16);
    assert_non_null (limit);
    bus_log_limit_set_clock (limit, s_fake_clock);
    s_capture_begin ();
    int written = 0;
    for (int i = 0; i < 1239; i++)
        written += bus_log_limited (limit, "ext:flood", "forbidden", BUS_LOG_INFO,
                                    json_pack ("{s:i}", "i", i), "request refused: %d", i);
    /* the same peer with another reason, another peer with the same one */
    written += bus_log_limited (limit, "ext:flood", "invalid", BUS_LOG_INFO, NULL, "other reason");
    written += bus_log_limited (limit, "ext:calm", "forbidden", BUS_LOG_INFO, NULL, "other peer");
    s_clock_ms += 10000;            /* the window is over */
    written += bus_log_limited (limit, "ext:flood", "forbidden", BUS_LOG_INFO, NULL, "request refused: again");
    written += bus_log_limited (limit, "ext:flood", "forbidden", BUS_LOG_INFO, NULL, "request refused: and again");
    static json_t *lines [64];
    int n = s_lines (s_capture_end (), lines, 64);
    assert_int_equal (written, 5 + 2 + 2);
    assert_int_equal (n, 9);
    assert_string_equal (s_get (lines [0], "msg"), "request refused: 0");
    assert_string_equal (s_get (lines [4], "msg"), "request refused: 4");
    assert_string_equal (s_get (lines [5], "msg"), "other reason");
    assert_string_equal (s_get (lines [6], "msg"), "other peer");
    assert_string_equal (s_get (lines [7], "msg"), "request refused: again (1,234 similar lines suppressed)");
    assert_int_equal (json_integer_value (json_object_get (lines [7], "suppressed")), 1234);
    assert_string_equal (s_get (lines [8], "msg"), "request refused: and again");
    assert_null (json_object_get (lines [8], "suppressed"));
    assert_int_equal (bus_log_limit_suppressed (limit), 1234);
    s_free_lines (lines, n);
    bus_log_limit_destroy (&limit);
    bus_log_limit_destroy (&limit);     /* NULL is fine */
}


/*  A flood that stops is still reported: flush writes the count (with the
    first line left out) once the window is over, and only once. */
static void
test_limit_flush (void **state)
{
    bus_log_init ("svc", "info");
    bus_log_limit_t *limit = bus_log_limit_new (2, 1000, 16);
    bus_log_limit_set_clock (limit, s_fake_clock);
    s_capture_begin ();
    for (int i = 0; i < 12; i++)
        bus_log_limited (limit, "KEY", "handshake_refused", BUS_LOG_WARN, NULL, "refused %d", i);
    assert_int_equal (bus_log_limit_flush (limit), 0);     /* the window is still open */
    s_clock_ms += 1000;
    assert_int_equal (bus_log_limit_flush (limit), 1);
    assert_int_equal (bus_log_limit_flush (limit), 0);
    bus_log_limited (limit, "KEY", "handshake_refused", BUS_LOG_WARN, NULL, "refused later");
    static json_t *lines [16];
    int n = s_lines (s_capture_end (), lines, 16);
    assert_int_equal (n, 4);
    assert_string_equal (s_get (lines [2], "msg"), "refused 2 (10 similar lines suppressed)");
    assert_string_equal (s_get (lines [2], "level"), "warn");
    assert_string_equal (s_get (lines [2], "limited"), "KEY");
    assert_int_equal (json_integer_value (json_object_get (lines [2], "suppressed")), 10);
    assert_string_equal (s_get (lines [3], "msg"), "refused later");
    s_free_lines (lines, n);
    /* idle keys are forgotten after another window */
    assert_int_equal (bus_log_limit_keys (limit), 1);
    s_clock_ms += 2000;
    bus_log_limit_flush (limit);
    assert_int_equal (bus_log_limit_keys (limit), 0);
    bus_log_limit_destroy (&limit);
}


/*  Memory is bounded: many distinct peers in one window use at most
    max_keys slots, and the peers that find no slot share one overflow
    key, so that distinct keys cannot flood the log either. */
static void
test_limit_bounded_keys (void **state)
{
    bus_log_init ("svc", "info");
    bus_log_limit_t *limit = bus_log_limit_new (3, 1000, 4);
    bus_log_limit_set_clock (limit, s_fake_clock);
    s_capture_begin ();
    int written = 0;
    for (int i = 0; i < 1000; i++) {
        char who [32];
        snprintf (who, sizeof who, "peer-%d", i);
        written += bus_log_limited (limit, who, "forbidden", BUS_LOG_INFO, NULL, "from %s", who);
    }
    assert_true (bus_log_limit_keys (limit) <= 4);
    s_clock_ms += 1000;
    bus_log_limit_flush (limit);
    static json_t *lines [64];
    int n = s_lines (s_capture_end (), lines, 64);
    assert_int_equal (written, 4 + 3);          /* one line for each of 4 keys, 3 for the rest */
    assert_int_equal (s_count_msg (lines, n, "(993 similar lines suppressed)"), 1);
    s_free_lines (lines, n);
    /* after the window, the slots are taken by new peers again */
    s_capture_begin ();
    assert_true (bus_log_limited (limit, "peer-new", "forbidden", BUS_LOG_INFO, NULL, "new"));
    n = s_lines (s_capture_end (), lines, 64);
    assert_int_equal (n, 1);
    s_free_lines (lines, n);
    bus_log_limit_destroy (&limit);
}


/*  Lines below the level are neither written nor counted. */
static void
test_limit_level (void **state)
{
    bus_log_init ("svc", "warn");
    bus_log_limit_t *limit = bus_log_limit_new (1, 1000, 4);
    s_capture_begin ();
    for (int i = 0; i < 10; i++)
        bus_log_limited (limit, "p", "r", BUS_LOG_INFO, json_object (), "quiet");
    json_t *lines [4];
    int n = s_lines (s_capture_end (), lines, 4);
    assert_int_equal (n, 0);
    assert_int_equal (bus_log_limit_suppressed (limit), 0);
    bus_log_limit_destroy (&limit);
    bus_log_init ("svc", "debug");
}


/*  CZMQ's own lines come out as JSON lines at their level; a filter can
    claim some (they are then not written). */
static bool
s_claim (const char *text)
{
    return strncmp (text, "claimed", 7) == 0;
}

static void
test_zsys_captured (void **state)
{
    bus_log_init ("svc", "debug");
    bus_log_capture_zsys (s_claim);
    s_capture_begin ();
    zsys_warning ("careful: %d", 7);
    zsys_error ("broken");
    zsys_info ("claimed line");
    zsys_debug ("details");
    json_t *lines [8];
    int n = s_lines (s_capture_end (), lines, 8);
    assert_int_equal (n, 3);
    assert_string_equal (s_get (lines [0], "msg"), "careful: 7");
    assert_string_equal (s_get (lines [0], "level"), "warn");
    assert_string_equal (s_get (lines [0], "from"), "czmq");
    assert_string_equal (s_get (lines [1], "level"), "error");
    assert_string_equal (s_get (lines [2], "msg"), "details");
    assert_string_equal (s_get (lines [2], "level"), "debug");
    s_free_lines (lines, n);
}


int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test_teardown (test_required_fields, s_teardown),
        cmocka_unit_test_teardown (test_level_filter, s_teardown),
        cmocka_unit_test_teardown (test_trace, s_teardown),
        cmocka_unit_test_teardown (test_fields_merged, s_teardown),
        cmocka_unit_test_teardown (test_escaping, s_teardown),
        cmocka_unit_test_teardown (test_threads_whole_lines, s_teardown),
        cmocka_unit_test_teardown (test_limit_window, s_teardown),
        cmocka_unit_test_teardown (test_limit_flush, s_teardown),
        cmocka_unit_test_teardown (test_limit_bounded_keys, s_teardown),
        cmocka_unit_test_teardown (test_limit_level, s_teardown),
        cmocka_unit_test_teardown (test_zsys_captured, s_teardown),
    };
    int failed = cmocka_run_group_tests (tests, NULL, NULL);
    int total = (int) (sizeof tests / sizeof tests [0]);
    printf ("%d passed, %d failed\n", total - failed, failed);
    return failed? 1: 0;
}
