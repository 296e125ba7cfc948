/*  test_orch_agent.c — the orchestrator's agents. scripted: drafts the PO
    from {vendor, amount, cost_center} (an amount given as text too), the
    same state drafts the same PO number and another run another, missing
    input is named. chat: the config (base URL, model, a key file's first
    line, an unreadable file refused); the request (URL, Bearer key or
    none, model, messages with the state as data, each tool node as a
    function, a bad function name refused); the answers of OpenAI, Gemini's
    OpenAI endpoint and llama.cpp (tool calls with arguments as a JSON
    string, an object, or empty; ids made when missing; structured output;
    text parts), and the malformed ones (not JSON, no choices, arguments
    not an object, too many calls, oversized, HTTP errors, a refusal, a
    content filter) refused with a clear error. The conversation of a
    multi-turn chat: the request carries the messages given (the first
    ones, the assistant's tool calls with their arguments as JSON text,
    the tool results by tool_call_id); a long result is cut.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <sodium.h>

#include "bus_config.h"
#include "../../services/orchestrator/orch_agent.h"
#include "../support/test_service.h"

/* --- scripted ---------------------------------------------------------- */

static void
test_scripted_po (void **state)
{
    json_t *node = json_pack ("{s:s, s:s, s:s, s:s}", "id", "draft", "kind", "agent", "agent", "scripted", "output", "po");
    json_t *st = json_pack ("{s:s, s:{s:s, s:i, s:s}}", "run", "01JRUNAAAAAAAAAAAAAAAAAAAA", "input", "vendor", "Acme",
                            "amount", 520000, "cost_center", "engineering");
    json_t *po = NULL, *calls = NULL;
    char err [256];
    assert_int_equal (orch_agent_scripted (node, st, &po, &calls, err, sizeof err), 0);
    assert_true (json_is_array (calls));
    assert_int_equal (json_array_size (calls), 0);
    assert_string_equal (json_string_value (json_object_get (po, "vendor")), "Acme");
    assert_int_equal (json_integer_value (json_object_get (po, "total")), 520000);
    assert_string_equal (json_string_value (json_object_get (po, "cost_center")), "engineering");
    const char *number = json_string_value (json_object_get (po, "number"));
    assert_int_equal (strncmp (number, "PO-", 3), 0);
    assert_int_equal (strlen (number), 13);
    json_t *line = json_array_get (json_object_get (po, "lines"), 0);
    assert_int_equal (json_integer_value (json_object_get (line, "amount")), 520000);
    assert_non_null (strstr (json_string_value (json_object_get (po, "summary")), number));

    /* a retry (the same state) drafts the same PO; the amount as text too */
    json_t *st2 = json_pack ("{s:s, s:{s:s, s:s, s:s}}", "run", "01JRUNAAAAAAAAAAAAAAAAAAAA", "input", "vendor", "Acme",
                             "amount", "520000", "cost_center", "engineering");
    json_t *po2 = NULL, *calls2 = NULL;
    assert_int_equal (orch_agent_scripted (node, st2, &po2, &calls2, err, sizeof err), 0);
    assert_true (json_equal (po, po2));
    json_decref (po2);
    json_decref (calls2);
    /* another run drafts another number */
    json_object_set_new (st2, "run", json_string ("01JRUNBBBBBBBBBBBBBBBBBBBB"));
    assert_int_equal (orch_agent_scripted (node, st2, &po2, &calls2, err, sizeof err), 0);
    assert_string_not_equal (json_string_value (json_object_get (po2, "number")), number);
    json_decref (po2);
    json_decref (calls2);
    json_decref (st2);
    json_decref (po);
    json_decref (calls);

    /* missing and bad input is named */
    struct { const char *input; const char *field; } bad [] = {
        { "{\"amount\": 5, \"cost_center\": \"x\"}", "input.vendor" },
        { "{\"vendor\": \"A\", \"cost_center\": \"x\"}", "input.amount" },
        { "{\"vendor\": \"A\", \"amount\": -5, \"cost_center\": \"x\"}", "input.amount" },
        { "{\"vendor\": \"A\", \"amount\": \"lots\", \"cost_center\": \"x\"}", "input.amount" },
        { "{\"vendor\": \"A\", \"amount\": 5}", "input.cost_center" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++) {
        json_object_set_new (st, "input", json_loads (bad [i].input, 0, NULL));
        assert_int_equal (orch_agent_scripted (node, st, &po, &calls, err, sizeof err), -1);
        assert_null (po);
        if (!strstr (err, bad [i].field))
            fail_msg ("case %zu: \"%s\" does not name %s", i, err, bad [i].field);
    }
    json_object_del (st, "input");
    assert_int_equal (orch_agent_scripted (node, st, &po, &calls, err, sizeof err), -1);
    assert_non_null (strstr (err, "state.input"));
    json_decref (node);
    json_decref (st);
}

/* --- chat: config and request ------------------------------------------ */

static orch_agent_config_t *
s_config (const char *base, const char *key_file)
{
    bus_config_t *config = NULL;
    char err [256];
    assert_int_equal (bus_config_load (&config, NULL, err, sizeof err), 0);
    assert_int_equal (bus_config_set (config, "orchestrator", "llm_base_url", base, err, sizeof err), 0);
    assert_int_equal (bus_config_set (config, "orchestrator", "llm_model", "gemini-2.0-flash", err, sizeof err), 0);
    if (key_file)
        assert_int_equal (bus_config_set (config, "orchestrator", "llm_key_file", key_file, err, sizeof err), 0);
    orch_agent_config_t *cfg = NULL;
    int rc = orch_agent_config_load (&cfg, config, err, sizeof err);
    bus_config_destroy (&config);
    if (rc)
        fail_msg ("config: %s", err);
    return cfg;
}

static const char *
s_header (const orch_http_call_t *rq, const char *name)
{
    size_t n = strlen (name);
    for (char **h = rq->headers; h && *h; h++)
        if (!strncasecmp (*h, name, n) && (*h) [n] == ':')
            return *h + n + 2;
    return NULL;
}

static void
test_chat_request (void **state)
{
    char path [] = "/tmp/test_orch_agent_keyXXXXXX";
    int fd = mkstemp (path);
    assert_true (fd >= 0);
    assert_int_equal (write (fd, "  sk-canary-123\nsecond line\n", 28), 28);
    close (fd);
    orch_agent_config_t *cfg = s_config ("https://generativelanguage.googleapis.com/v1beta/openai/", path);
    json_t *node = json_pack ("{s:s, s:s, s:s, s:s, s:[s]}", "id", "buyer", "kind", "agent", "agent", "chat", "prompt",
                              "Draft the purchase order and write it to the ERP.", "tools", "write_po");
    json_t *tools = json_loads ("[{\"id\": \"write_po\", \"kind\": \"tool\", \"connector\": \"sheets.append\","
                                " \"description\": \"Append the PO as a row of the ERP sheet\","
                                " \"parameters\": {\"type\": \"object\", \"properties\": {\"amount\": {\"type\": \"number\"}},"
                                " \"required\": [\"amount\"]}},"
                                " {\"id\": \"mail_vendor\", \"connector\": \"gmail.send\"}]", 0, NULL);
    json_t *st = json_pack ("{s:{s:s, s:i}}", "input", "vendor", "Acme", "amount", 5000);
    orch_http_call_t *rq = NULL;
    char err [256];
    assert_int_equal (orch_agent_chat_request (cfg, node, tools, st, NULL, &rq, err, sizeof err), 0);
    assert_string_equal (rq->method, "POST");
    assert_string_equal (rq->url, "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions");
    assert_string_equal (rq->content_type, "application/json");
    assert_string_equal (s_header (rq, "Authorization"), "Bearer sk-canary-123");
    json_t *body = json_loadb (rq->body, rq->body_len, 0, NULL);
    assert_non_null (body);
    assert_string_equal (json_string_value (json_object_get (body, "model")), "gemini-2.0-flash");
    json_t *msgs = json_object_get (body, "messages");
    assert_int_equal (json_array_size (msgs), 2);
    assert_string_equal (json_string_value (json_object_get (json_array_get (msgs, 0), "role")), "system");
    const char *user = json_string_value (json_object_get (json_array_get (msgs, 1), "content"));
    assert_non_null (strstr (user, "Draft the purchase order"));
    assert_non_null (strstr (user, "\"vendor\":\"Acme\""));
    json_t *fns = json_object_get (body, "tools");
    assert_int_equal (json_array_size (fns), 2);
    json_t *f0 = json_object_get (json_array_get (fns, 0), "function");
    assert_string_equal (json_string_value (json_object_get (json_array_get (fns, 0), "type")), "function");
    assert_string_equal (json_string_value (json_object_get (f0, "name")), "write_po");
    assert_string_equal (json_string_value (json_object_get (f0, "description")), "Append the PO as a row of the ERP sheet");
    assert_string_equal (json_string_value (json_array_get (json_object_get (json_object_get (f0, "parameters"), "required"), 0)),
                         "amount");
    json_t *f1 = json_object_get (json_array_get (fns, 1), "function");
    assert_string_equal (json_string_value (json_object_get (json_object_get (f1, "parameters"), "type")), "object");
    assert_string_equal (json_string_value (json_object_get (body, "tool_choice")), "auto");
    json_decref (body);
    orch_http_call_destroy (&rq);
    orch_agent_config_destroy (&cfg);
    assert_null (cfg);

    /* no key file: no Authorization (a local llama.cpp) */
    cfg = s_config ("http://127.0.0.1:8080/v1", NULL);
    assert_int_equal (orch_agent_chat_request (cfg, node, tools, st, NULL, &rq, err, sizeof err), 0);
    assert_string_equal (rq->url, "http://127.0.0.1:8080/v1/chat/completions");
    assert_null (s_header (rq, "Authorization"));
    orch_http_call_destroy (&rq);
    /* a tool id the APIs would refuse as a function name */
    json_t *bad = json_loads ("[{\"id\": \"write po!\"}]", 0, NULL);
    assert_int_equal (orch_agent_chat_request (cfg, node, bad, st, NULL, &rq, err, sizeof err), -1);
    assert_non_null (strstr (err, "tools[0]"));
    json_decref (bad);
    orch_agent_config_destroy (&cfg);

    /* no base URL: chat is refused with a clear error */
    cfg = s_config ("", NULL);
    assert_int_equal (orch_agent_chat_request (cfg, node, tools, st, NULL, &rq, err, sizeof err), -1);
    assert_non_null (strstr (err, "llm_base_url"));
    orch_agent_config_destroy (&cfg);

    /* an unreadable key file, a base URL that is not HTTP */
    bus_config_t *config = NULL;
    assert_int_equal (bus_config_load (&config, NULL, err, sizeof err), 0);
    unlink (path);
    assert_int_equal (bus_config_set (config, "orchestrator", "llm_base_url", "http://x/v1", err, sizeof err), 0);
    assert_int_equal (bus_config_set (config, "orchestrator", "llm_key_file", path, err, sizeof err), 0);
    assert_int_equal (orch_agent_config_load (&cfg, config, err, sizeof err), -1);
    assert_null (cfg);
    assert_non_null (strstr (err, "llm_key_file"));
    assert_int_equal (bus_config_set (config, "orchestrator", "llm_key_file", "", err, sizeof err), 0);
    assert_int_equal (bus_config_set (config, "orchestrator", "llm_base_url", "ftp://x", err, sizeof err), 0);
    assert_int_equal (orch_agent_config_load (&cfg, config, err, sizeof err), -1);
    assert_non_null (strstr (err, "llm_base_url"));
    bus_config_destroy (&config);
    json_decref (node);
    json_decref (tools);
    json_decref (st);
}

/* --- chat: responses --------------------------------------------------- */

/* OpenAI (gpt-4o-mini), as the API documents it */
static const char s_openai [] =
    "{\"id\":\"chatcmpl-9pXq\",\"object\":\"chat.completion\",\"created\":1722000000,\"model\":\"gpt-4o-mini-2024-07-18\","
    "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":["
    "{\"id\":\"call_abc123\",\"type\":\"function\",\"function\":{\"name\":\"write_po\","
    "\"arguments\":\"{\\n\\\"vendor\\\": \\\"Acme\\\",\\n\\\"amount\\\": 5000\\n}\"}},"
    "{\"id\":\"call_def456\",\"type\":\"function\",\"function\":{\"name\":\"mail_vendor\",\"arguments\":\"{}\"}}],"
    "\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}],"
    "\"usage\":{\"prompt_tokens\":82,\"completion_tokens\":17,\"total_tokens\":99},\"system_fingerprint\":\"fp_0ba0d124f1\"}";

/* Gemini's OpenAI-compatible endpoint: no content member, an empty id */
static const char s_gemini [] =
    "{\"choices\":[{\"finish_reason\":\"tool_calls\",\"index\":0,\"message\":{\"role\":\"assistant\",\"tool_calls\":["
    "{\"function\":{\"arguments\":\"{\\\"amount\\\":10000000,\\\"to\\\":\\\"attacker\\\"}\",\"name\":\"transfer_funds\"},"
    "\"id\":\"\",\"type\":\"function\"}]}}],\"created\":1740000000,\"model\":\"gemini-2.0-flash\","
    "\"object\":\"chat.completion\",\"usage\":{\"completion_tokens\":9,\"prompt_tokens\":120,\"total_tokens\":129}}";

/* llama.cpp's server: the content as text, no tool call */
static const char s_llamacpp [] =
    "{\"choices\":[{\"finish_reason\":\"stop\",\"index\":0,\"message\":{\"role\":\"assistant\","
    "\"content\":\"I drafted the order.\"}}],\"created\":1740000000,\"model\":\"qwen2.5-7b-instruct\","
    "\"system_fingerprint\":\"b4600-5bbe6a9f\",\"object\":\"chat.completion\",\"usage\":{\"completion_tokens\":6,"
    "\"prompt_tokens\":50,\"total_tokens\":56},\"id\":\"chatcmpl-Xyz\",\"timings\":{\"prompt_n\":50}}";

static void
test_chat_parse_real (void **state)
{
    json_t *out = NULL, *calls = NULL;
    char err [256];
    assert_int_equal (orch_agent_chat_response (200, s_openai, strlen (s_openai), &out, &calls, err, sizeof err), 0);
    assert_true (json_is_null (out));
    assert_int_equal (json_array_size (calls), 2);
    json_t *c0 = json_array_get (calls, 0);
    assert_string_equal (json_string_value (json_object_get (c0, "name")), "write_po");
    assert_string_equal (json_string_value (json_object_get (c0, "id")), "call_abc123");
    assert_int_equal (json_integer_value (json_object_get (json_object_get (c0, "arguments"), "amount")), 5000);
    assert_true (json_is_object (json_object_get (json_array_get (calls, 1), "arguments")));
    json_decref (out);
    json_decref (calls);

    assert_int_equal (orch_agent_chat_response (200, s_gemini, strlen (s_gemini), &out, &calls, err, sizeof err), 0);
    c0 = json_array_get (calls, 0);
    assert_string_equal (json_string_value (json_object_get (c0, "name")), "transfer_funds");
    assert_string_equal (json_string_value (json_object_get (c0, "id")), "call_0");
    assert_int_equal (json_integer_value (json_object_get (json_object_get (c0, "arguments"), "amount")), 10000000);
    json_decref (out);
    json_decref (calls);

    assert_int_equal (orch_agent_chat_response (200, s_llamacpp, strlen (s_llamacpp), &out, &calls, err, sizeof err), 0);
    assert_string_equal (json_string_value (out), "I drafted the order.");
    assert_int_equal (json_array_size (calls), 0);
    json_decref (out);
    json_decref (calls);

    /* structured output (a JSON object as content); arguments as an
       object (some servers); text parts; a legacy function_call */
    const char *more [] = {
        "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\"{\\\"vendor\\\":\\\"Acme\\\",\\\"total\\\":5}\"}}]}",
        "{\"choices\":[{\"message\":{\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"write_po\",\"arguments\":{\"a\":1}}}]}}]}",
        "{\"choices\":[{\"message\":{\"content\":[{\"type\":\"text\",\"text\":\"one \"},{\"type\":\"text\",\"text\":\"two\"}]}}]}",
        "{\"choices\":[{\"message\":{\"content\":null,\"function_call\":{\"name\":\"write_po\",\"arguments\":\"\"}}}]}",
    };
    assert_int_equal (orch_agent_chat_response (200, more [0], strlen (more [0]), &out, &calls, err, sizeof err), 0);
    assert_int_equal (json_integer_value (json_object_get (out, "total")), 5);
    json_decref (out);
    json_decref (calls);
    assert_int_equal (orch_agent_chat_response (200, more [1], strlen (more [1]), &out, &calls, err, sizeof err), 0);
    assert_int_equal (json_integer_value (json_object_get (json_object_get (json_array_get (calls, 0), "arguments"), "a")), 1);
    json_decref (out);
    json_decref (calls);
    assert_int_equal (orch_agent_chat_response (200, more [2], strlen (more [2]), &out, &calls, err, sizeof err), 0);
    assert_string_equal (json_string_value (out), "one two");
    json_decref (out);
    json_decref (calls);
    assert_int_equal (orch_agent_chat_response (200, more [3], strlen (more [3]), &out, &calls, err, sizeof err), 0);
    assert_string_equal (json_string_value (json_object_get (json_array_get (calls, 0), "name")), "write_po");
    assert_int_equal (json_object_size (json_object_get (json_array_get (calls, 0), "arguments")), 0);
    json_decref (out);
    json_decref (calls);
}

static void
test_chat_parse_malformed (void **state)
{
    struct { int status; const char *body; const char *says; } cases [] = {
        { 200, "", "not JSON" },
        { 200, "<html>502 Bad Gateway</html>", "not JSON" },
        { 200, "{\"choices\": []}", "choices[0].message" },
        { 200, "{\"object\": \"list\", \"data\": []}", "choices[0].message" },
        { 200, "{\"choices\":[{\"message\":{\"tool_calls\":[{\"function\":{\"name\":\"write_po\",\"arguments\":\"{\\\"amount\\\": 5\"}}]}}]}",
          "not a JSON object" },
        { 200, "{\"choices\":[{\"message\":{\"tool_calls\":[{\"function\":{\"name\":\"write_po\",\"arguments\":\"[1,2]\"}}]}}]}",
          "not a JSON object" },
        { 200, "{\"choices\":[{\"message\":{\"tool_calls\":[{\"function\":{\"name\":\"write_po\",\"arguments\":7}}]}}]}",
          "neither a JSON string nor an object" },
        { 200, "{\"choices\":[{\"message\":{\"tool_calls\":[{\"function\":{\"arguments\":\"{}\"}}]}}]}", "no usable function name" },
        { 200, "{\"choices\":[{\"message\":{\"tool_calls\":{\"name\":\"x\"}}}]}", "not an array" },
        { 200, "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":null,\"refusal\":\"I can't help with moving $10,000,000.\"}}]}",
          "the model refused: I can't help" },
        { 200, "{\"choices\":[{\"finish_reason\":\"content_filter\",\"message\":{\"content\":\"\"}}]}", "content filter" },
        { 200, "{\"error\":{\"message\":\"model overloaded\",\"type\":\"server_error\"}}", "model overloaded" },
        { 401, "{\"error\":{\"message\":\"Incorrect API key provided: sk-...\",\"type\":\"invalid_request_error\",\"code\":\"invalid_api_key\"}}",
          "HTTP 401: Incorrect API key" },
        { 429, "[{\"error\":{\"code\":429,\"message\":\"Resource has been exhausted (e.g. check quota).\",\"status\":\"RESOURCE_EXHAUSTED\"}}]",
          "HTTP 429: Resource has been exhausted" },
        { 500, "oops", "HTTP 500" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        json_t *out = (json_t *) 1, *calls = (json_t *) 1;
        char err [256] = "";
        int rc = orch_agent_chat_response (cases [i].status, cases [i].body, strlen (cases [i].body), &out, &calls, err,
                                           sizeof err);
        if (rc != -1 || out || calls)
            fail_msg ("case %zu: accepted", i);
        if (!strstr (err, cases [i].says))
            fail_msg ("case %zu: \"%s\" does not say \"%s\"", i, err, cases [i].says);
    }
    /* too many calls; oversized arguments; an oversized answer */
    char *many = NULL;
    size_t len = 0;
    FILE *f = open_memstream (&many, &len);
    fprintf (f, "{\"choices\":[{\"message\":{\"tool_calls\":[");
    for (int i = 0; i < 17; i++)
        fprintf (f, "%s{\"id\":\"c%d\",\"function\":{\"name\":\"write_po\",\"arguments\":\"{}\"}}", i ? "," : "", i);
    fprintf (f, "]}}]}");
    fclose (f);
    json_t *out, *calls;
    char err [256];
    assert_int_equal (orch_agent_chat_response (200, many, len, &out, &calls, err, sizeof err), -1);
    assert_non_null (strstr (err, "17 tool calls"));
    free (many);
    size_t big = 70000;
    char *huge = malloc (big + 200);
    int n = sprintf (huge, "{\"choices\":[{\"message\":{\"tool_calls\":[{\"function\":{\"name\":\"w\",\"arguments\":\"");
    memset (huge + n, 'a', big);
    strcpy (huge + n + big, "\"}}]}}]}");
    assert_int_equal (orch_agent_chat_response (200, huge, strlen (huge), &out, &calls, err, sizeof err), -1);
    assert_non_null (strstr (err, "bytes of arguments"));
    assert_int_equal (orch_agent_chat_response (200, huge, 5 * 1024 * 1024, &out, &calls, err, sizeof err), -1);
    assert_non_null (strstr (err, "over"));
    free (huge);
}

/*  A second turn: the answer's calls go back as the assistant message,
    the results as tool messages, and the request carries them all. */
static void
test_chat_turns (void **state)
{
    orch_agent_config_t *cfg = s_config ("http://127.0.0.1:8080/v1", NULL);
    json_t *node = json_pack ("{s:s, s:s, s:s, s:[s]}", "id", "buyer", "kind", "agent", "agent", "chat", "tools",
                              "write_po");
    json_t *tools = json_loads ("[{\"id\": \"write_po\", \"connector\": \"sheets.append\"}]", 0, NULL);
    json_t *st = json_pack ("{s:{s:i}}", "input", "amount", 5000);
    char err [256];
    json_t *msgs = orch_agent_chat_messages (node, st, err, sizeof err);
    assert_int_equal (json_array_size (msgs), 2);
    const char *answer = "{\"choices\": [{\"message\": {\"role\": \"assistant\", \"content\": null, \"tool_calls\":"
                         " [{\"id\": \"call_9\", \"type\": \"function\", \"function\": {\"name\": \"write_po\","
                         " \"arguments\": \"{\\\"amount\\\": 5000}\"}}]}, \"finish_reason\": \"tool_calls\"}]}";
    json_t *output = NULL, *calls = NULL;
    assert_int_equal (orch_agent_chat_response (200, answer, strlen (answer), &output, &calls, err, sizeof err), 0);
    json_t *a = orch_agent_chat_assistant (output, calls);
    assert_non_null (a);
    assert_string_equal (json_string_value (json_object_get (a, "role")), "assistant");
    assert_true (json_is_null (json_object_get (a, "content")));
    json_t *tc = json_array_get (json_object_get (a, "tool_calls"), 0);
    assert_string_equal (json_string_value (json_object_get (tc, "id")), "call_9");
    assert_string_equal (json_string_value (json_object_get (json_object_get (tc, "function"), "arguments")),
                         "{\"amount\":5000}");
    json_array_append_new (msgs, a);
    json_t *result = json_pack ("{s:s}", "updatedRange", "POs!A2:C2");
    json_array_append_new (msgs, orch_agent_chat_tool_result ("call_9", result));
    orch_http_call_t *rq = NULL;
    assert_int_equal (orch_agent_chat_request (cfg, node, tools, st, msgs, &rq, err, sizeof err), 0);
    json_t *body = json_loadb (rq->body, rq->body_len, 0, NULL);
    json_t *sent = json_object_get (body, "messages");
    assert_int_equal (json_array_size (sent), 4);
    json_t *tool = json_array_get (sent, 3);
    assert_string_equal (json_string_value (json_object_get (tool, "role")), "tool");
    assert_string_equal (json_string_value (json_object_get (tool, "tool_call_id")), "call_9");
    assert_string_equal (json_string_value (json_object_get (tool, "content")), "{\"updatedRange\":\"POs!A2:C2\"}");
    json_decref (body);
    orch_http_call_destroy (&rq);
    /* not a conversation */
    json_t *one = json_pack ("[{s:s}]", "role", "user");
    assert_int_equal (orch_agent_chat_request (cfg, node, tools, st, one, &rq, err, sizeof err), -1);
    assert_non_null (strstr (err, "conversation"));
    json_decref (one);
    /* a long result is cut */
    char *big = malloc (ORCH_AGENT_RESULT_MAX * 2);
    memset (big, 'x', ORCH_AGENT_RESULT_MAX * 2 - 1);
    big [ORCH_AGENT_RESULT_MAX * 2 - 1] = 0;
    json_t *bigv = json_string (big);
    json_t *cut = orch_agent_chat_tool_result ("c", bigv);
    const char *text = json_string_value (json_object_get (cut, "content"));
    assert_int_equal (strlen (text), ORCH_AGENT_RESULT_MAX + 3);
    assert_string_equal (text + ORCH_AGENT_RESULT_MAX, "...");
    json_decref (cut);
    json_decref (bigv);
    free (big);
    json_decref (result);
    json_decref (msgs);
    json_decref (output);
    json_decref (calls);
    json_decref (st);
    json_decref (tools);
    json_decref (node);
    orch_agent_config_destroy (&cfg);
}

int
main (void)
{
    if (sodium_init () < 0)
        return 1;
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_scripted_po),
        cmocka_unit_test (test_chat_request),
        cmocka_unit_test (test_chat_parse_real),
        cmocka_unit_test (test_chat_parse_malformed),
        cmocka_unit_test (test_chat_turns),
    };
    return test_service_summary (sizeof tests / sizeof tests [0],
                                 cmocka_run_group_tests (tests, NULL, NULL));
}
