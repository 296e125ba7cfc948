/*  test_orch_chat_standin.c — the chat agent's request and answer code
    against tests/integration/llm_standin.py (a Python process speaking
    /v1/chat/completions), over the service kit's HTTP client on a zloop,
    as the orchestrator sends it. The stand-in is scripted: a PO proposal
    (the run's input read back from the prompt), the prompt-injected
    answer (a $10,000,000 call to an offered tool and a call to
    transfer_funds, never offered: both come back as proposals, the second
    not among the offered names), then garbage, a refusal, a 500 and
    arguments that are not JSON, each refused with its error. The
    stand-in's log shows the request carried the key and the tools.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <unistd.h>
#include <sys/wait.h>
#include <cmocka.h>
#include <sodium.h>

#include "bus_config.h"
#include "bus_http_client.h"
#include "../../services/orchestrator/orch_agent.h"
#include "../support/test_service.h"

typedef struct {
    int done;
    int error;
    int status;
    char *body;
    size_t len;
} s_answer_t;

static void
s_on_answer (const bus_http_response_t *r, void *arg)
{
    s_answer_t *a = arg;
    a->done = 1;
    a->error = r->error;
    a->status = r->status;
    a->len = r->body_len;
    a->body = malloc (r->body_len + 1);
    memcpy (a->body, r->body, r->body_len + 1);
}

static int
s_check (zloop_t *loop, int timer_id, void *arg)
{
    return ((s_answer_t *) arg)->done ? -1 : 0;
}

/*  Send rq on a fresh loop and wait for the answer (10 s at most). */
static void
s_send (const orch_http_call_t *rq, s_answer_t *a)
{
    zloop_t *loop = zloop_new ();
    bus_http_client_t *client = bus_http_client_new (loop, NULL);
    assert_non_null (client);
    bus_http_request_t req = { .method = rq->method, .url = rq->url, .headers = (const char *const *) rq->headers,
                               .content_type = rq->content_type, .body = rq->body, .body_len = rq->body_len,
                               .timeout_ms = 10000 };
    memset (a, 0, sizeof *a);
    assert_int_equal (bus_http_client_send (client, &req, s_on_answer, a, NULL), 0);
    zloop_timer (loop, 5, 0, s_check, a);
    zloop_start (loop);
    bus_http_client_destroy (&client);
    zloop_destroy (&loop);
    assert_true (a->done);
    assert_int_equal (a->error, 0);
}

static pid_t s_pid;
static char s_url [128];
static char s_log [64] = "/tmp/test_orch_standin_logXXXXXX";
static char s_key [64] = "/tmp/test_orch_standin_keyXXXXXX";

/*  Start the stand-in with the script, read its port. */
static int
s_setup (void **state)
{
    char exe [PATH_MAX], script [PATH_MAX + 64];
    ssize_t n = readlink ("/proc/self/exe", exe, sizeof exe - 1);
    assert_true (n > 0);
    exe [n] = 0;
    /* <root>/<build>/tests/test_orch_chat_standin */
    char *root = dirname (dirname (dirname (exe)));
    snprintf (script, sizeof script, "%s/tests/integration/llm_standin.py", root);
    int fd = mkstemp (s_log);
    assert_true (fd >= 0);
    close (fd);
    fd = mkstemp (s_key);
    assert_true (fd >= 0);
    assert_int_equal (write (fd, "sk-standin-key\n", 15), 15);
    close (fd);
    int pipefd [2];
    assert_int_equal (pipe (pipefd), 0);
    s_pid = fork ();
    assert_true (s_pid >= 0);
    if (s_pid == 0) {
        dup2 (pipefd [1], 1);
        close (pipefd [0]);
        setenv ("LLM_STANDIN_SCRIPT",
                "[\"po\", \"injected\", \"garbage\", \"refusal\", \"error500\", \"bad_args\"]", 1);
        execlp ("python3", "python3", script, "--port", "0", "--log", s_log, (char *) NULL);
        _exit (127);
    }
    close (pipefd [1]);
    FILE *f = fdopen (pipefd [0], "r");
    char line [128] = "";
    int port = 0;
    if (!fgets (line, sizeof line, f) || sscanf (line, "listening on %d", &port) != 1)
        fail_msg ("the stand-in (%s) did not start: %s", script, line);
    fclose (f);
    snprintf (s_url, sizeof s_url, "http://127.0.0.1:%d/v1", port);
    return 0;
}

static int
s_teardown (void **state)
{
    if (s_pid > 0) {
        kill (s_pid, SIGTERM);
        waitpid (s_pid, NULL, 0);
    }
    unlink (s_log);
    unlink (s_key);
    return 0;
}

static void
test_against_standin (void **state)
{
    bus_config_t *config = NULL;
    char err [256];
    assert_int_equal (bus_config_load (&config, NULL, err, sizeof err), 0);
    assert_int_equal (bus_config_set (config, "orchestrator", "llm_base_url", s_url, err, sizeof err), 0);
    assert_int_equal (bus_config_set (config, "orchestrator", "llm_key_file", s_key, err, sizeof err), 0);
    orch_agent_config_t *cfg = NULL;
    assert_int_equal (orch_agent_config_load (&cfg, config, err, sizeof err), 0);
    bus_config_destroy (&config);
    json_t *node = json_pack ("{s:s, s:s, s:s, s:s, s:[s, s]}", "id", "buyer", "kind", "agent", "agent", "chat",
                              "prompt", "Draft the PO for the vendor and record it.", "tools", "write_po", "mail_vendor");
    json_t *tools = json_loads ("[{\"id\": \"write_po\", \"connector\": \"sheets.append\"},"
                                " {\"id\": \"mail_vendor\", \"connector\": \"gmail.send\"}]", 0, NULL);
    json_t *st = json_pack ("{s:{s:s, s:i, s:s}}", "input", "vendor", "Acme", "amount", 5000, "cost_center",
                            "engineering");
    struct { const char *says; } expect [] = {
        { NULL }, { NULL }, { "not JSON" }, { "the model refused" }, { "HTTP 500" }, { "not a JSON object" },
    };
    for (size_t i = 0; i < sizeof expect / sizeof expect [0]; i++) {
        orch_http_call_t *rq = NULL;
        assert_int_equal (orch_agent_chat_request (cfg, node, tools, st, NULL, &rq, err, sizeof err), 0);
        s_answer_t a;
        s_send (rq, &a);
        orch_http_call_destroy (&rq);
        json_t *output = NULL, *calls = NULL;
        int rc = orch_agent_chat_response (a.status, a.body, a.len, &output, &calls, err, sizeof err);
        free (a.body);
        if (expect [i].says) {
            assert_int_equal (rc, -1);
            if (!strstr (err, expect [i].says))
                fail_msg ("answer %zu: \"%s\" does not say \"%s\"", i, err, expect [i].says);
            continue;
        }
        if (rc)
            fail_msg ("answer %zu: %s", i, err);
        if (i == 0) {
            /* the PO proposal: the offered tool, the run's input */
            assert_int_equal (json_array_size (calls), 1);
            json_t *c = json_array_get (calls, 0);
            assert_string_equal (json_string_value (json_object_get (c, "name")), "write_po");
            json_t *args = json_object_get (c, "arguments");
            assert_string_equal (json_string_value (json_object_get (args, "vendor")), "Acme");
            assert_int_equal (json_integer_value (json_object_get (args, "amount")), 5000);
        }
        else {
            /* the injected answer: both proposals come back as data; the
               engine is left to refuse what was never offered and to
               decide the $10,000,000 */
            assert_int_equal (json_array_size (calls), 2);
            json_t *c0 = json_array_get (calls, 0), *c1 = json_array_get (calls, 1);
            assert_string_equal (json_string_value (json_object_get (c0, "name")), "write_po");
            assert_int_equal (json_integer_value (json_object_get (json_object_get (c0, "arguments"), "amount")),
                              10000000);
            const char *never = json_string_value (json_object_get (c1, "name"));
            assert_string_equal (never, "transfer_funds");
            size_t k;
            json_t *t;
            json_array_foreach (tools, k, t)
                assert_string_not_equal (json_string_value (json_object_get (t, "id")), never);
            assert_non_null (strstr (json_string_value (output), "10,000,000"));
        }
        json_decref (output);
        json_decref (calls);
    }
    /* what the stand-in received: the key, the model, the tools offered */
    FILE *f = fopen (s_log, "r");
    assert_non_null (f);
    char *line = NULL;
    size_t cap = 0;
    int lines = 0;
    while (getline (&line, &cap, f) > 0) {
        json_t *rec = json_loads (line, 0, NULL);
        assert_non_null (rec);
        json_t *headers = json_object_get (rec, "headers");
        const char *auth = json_string_value (json_object_get (headers, "Authorization"));
        assert_non_null (auth);
        assert_string_equal (auth, "Bearer sk-standin-key");
        assert_string_equal (json_string_value (json_object_get (rec, "path")), "/v1/chat/completions");
        json_t *body = json_object_get (rec, "body");
        assert_int_equal (json_array_size (json_object_get (body, "tools")), 2);
        lines++;
        json_decref (rec);
    }
    free (line);
    fclose (f);
    assert_int_equal (lines, 6);
    json_decref (node);
    json_decref (tools);
    json_decref (st);
    orch_agent_config_destroy (&cfg);
}

int
main (void)
{
    if (sodium_init () < 0)
        return 1;
    signal (SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_against_standin),
    };
    return test_service_summary (sizeof tests / sizeof tests [0],
                                 cmocka_run_group_tests (tests, s_setup, s_teardown));
}
