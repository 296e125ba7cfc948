/*  test_orch_workflow.c — workflow files (orch_workflow.h): the procurement
    example validates; bad files are refused with the file, node and field
    named; the hash ignores whitespace and key order and changes with the
    content; templates keep a value's type when whole and interpolate text
    otherwise, and name a missing path; declared inputs (checked at load
    and against a run's input); conditions (every op, all/any/not,
    missing values) and the edge taken after a node.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../services/orchestrator/orch_workflow.h"

#define EXAMPLE "ops/examples/workflows/procurement.json"

static json_t *
s_json (const char *text)
{
    json_error_t e;
    json_t *v = json_loads (text, 0, &e);
    if (!v)
        fail_msg ("bad test JSON: %s: %s", e.text, text);
    return v;
}

/*  A minimal valid tool node, as text, with id. */
#define TOOL(id) "{\"id\":\"" id "\",\"kind\":\"tool\",\"connector\":\"sheets.append\",\"connection\":\"sheets\"," \
    "\"scopes\":[\"s\"],\"args\":{\"spreadsheet_id\":\"erp\",\"range\":\"A1\",\"values\":[[\"{{input.x}}\"]]}," \
    "\"policy\":{\"action\":\"po.write\",\"resource\":\"cost_center:e\"}}"

static void
test_example_loads (void **state)
{
    char err [600] = "";
    orch_workflow_t *wf = orch_workflow_load (EXAMPLE, err, sizeof err);
    if (!wf)
        fail_msg ("%s", err);
    assert_string_equal (orch_workflow_name (wf), "procurement");
    assert_string_equal (orch_workflow_start (wf), "draft");
    assert_string_equal (orch_workflow_file (wf), "procurement.json");
    assert_int_equal (strlen (orch_workflow_hash (wf)), ORCH_HASH_LEN);
    assert_memory_equal (orch_workflow_hash (wf), "sha256:", 7);
    assert_non_null (orch_workflow_node (wf, "write_po"));
    assert_null (orch_workflow_node (wf, "nope"));
    const char *next = NULL;
    json_t *st = json_object ();
    assert_int_equal (orch_workflow_next (wf, "draft", st, &next, err, sizeof err), 0);
    assert_string_equal (next, "write_po");
    assert_int_equal (orch_workflow_next (wf, "done", st, &next, err, sizeof err), 0);
    assert_null (next);
    json_decref (st);
    orch_workflow_destroy (&wf);
    assert_null (wf);
    orch_workflow_destroy (&wf);
}

/*  text must be refused with an error holding every one of want (NULL-terminated). */
static void
s_refused (const char *text, const char *const *want)
{
    json_t *root = s_json (text);
    char err [600] = "";
    orch_workflow_t *wf = orch_workflow_new (root, "/some/dir/bad.json", err, sizeof err);
    json_decref (root);
    if (wf)
        fail_msg ("accepted: %s", text);
    for (int i = 0; want [i]; i++)
        if (!strstr (err, want [i]))
            fail_msg ("error \"%s\" lacks \"%s\"", err, want [i]);
}

static void
test_errors_name_file_node_field (void **state)
{
    s_refused ("[]", (const char *[]) { "bad.json", "a JSON object", NULL });
    s_refused ("{\"nodes\":[{\"id\":\"a\",\"kind\":\"end\"}]}", (const char *[]) { "bad.json", "field workflow", NULL });
    s_refused ("{\"workflow\":\"w\",\"nodes\":[]}", (const char *[]) { "field nodes", NULL });
    s_refused ("{\"workflow\":\"w\",\"nodes\":[{\"kind\":\"end\"}]}", (const char *[]) { "field nodes[0].id", NULL });
    s_refused ("{\"workflow\":\"w\",\"nodes\":[{\"id\":\"a\",\"kind\":\"end\"},{\"id\":\"a\",\"kind\":\"end\"}]}",
               (const char *[]) { "node a", "two nodes", NULL });
    s_refused ("{\"workflow\":\"w\",\"nodes\":[{\"id\":\"a\",\"kind\":\"loop\"}]}",
               (const char *[]) { "bad.json: node a: field kind", NULL });
    s_refused ("{\"workflow\":\"w\",\"nodes\":[{\"id\":\"t\",\"kind\":\"tool\",\"connector\":\"fax.send\"}]}",
               (const char *[]) { "node t", "field connector", "fax.send", NULL });
    s_refused ("{\"workflow\":\"w\",\"nodes\":[{\"id\":\"t\",\"kind\":\"tool\",\"connector\":\"sheets.append\","
               "\"connection\":\"c\",\"scopes\":[]}]}", (const char *[]) { "node t", "field scopes", NULL });
    s_refused ("{\"workflow\":\"w\",\"nodes\":[{\"id\":\"t\",\"kind\":\"tool\",\"connector\":\"sheets.append\","
               "\"connection\":\"c\",\"scopes\":[\"s\"],\"args\":{},\"policy\":{\"action\":\"a\",\"resource\":\"r\"}}]}",
               (const char *[]) { "node t", "field args", NULL });
    s_refused ("{\"workflow\":\"w\",\"nodes\":[{\"id\":\"t\",\"kind\":\"tool\",\"connector\":\"sheets.append\","
               "\"connection\":\"c\",\"scopes\":[\"s\"],\"args\":{\"spreadsheet_id\":\"x\",\"range\":\"A1\",\"values\":[[1]]},"
               "\"policy\":{\"action\":\"a\"}}]}", (const char *[]) { "node t", "field policy.resource", NULL });
    s_refused ("{\"workflow\":\"w\",\"nodes\":[{\"id\":\"g\",\"kind\":\"agent\",\"agent\":\"oracle\"}]}",
               (const char *[]) { "node g", "field agent", NULL });
    s_refused ("{\"workflow\":\"w\",\"nodes\":[{\"id\":\"g\",\"kind\":\"agent\",\"agent\":\"scripted\"}]}",
               (const char *[]) { "node g", "field output", NULL });
    s_refused ("{\"workflow\":\"w\",\"nodes\":[{\"id\":\"g\",\"kind\":\"agent\",\"agent\":\"chat\",\"tools\":[\"e\"]},"
               "{\"id\":\"e\",\"kind\":\"end\"}]}", (const char *[]) { "node g", "field tools", "not a tool node", NULL });
    s_refused ("{\"workflow\":\"w\",\"nodes\":[{\"id\":\"a\",\"kind\":\"end\"}],\"edges\":[{\"from\":\"a\",\"to\":\"zz\"}]}",
               (const char *[]) { "edges[0].to", "zz", NULL });
    s_refused ("{\"workflow\":\"w\",\"nodes\":[{\"id\":\"a\",\"kind\":\"branch\"},{\"id\":\"b\",\"kind\":\"end\"}],"
               "\"edges\":[{\"from\":\"a\",\"to\":\"b\",\"when\":{\"var\":\"x\",\"op\":\"~\"}}]}",
               (const char *[]) { "node a", "edges[0].when", "op", NULL });
    s_refused ("{\"workflow\":\"w\",\"start\":\"q\",\"nodes\":[{\"id\":\"a\",\"kind\":\"end\"}]}",
               (const char *[]) { "field start", NULL });
}

/*  A workflow with declared inputs: declarations and reads checked at
    load; run.start's input checked against them. */
static void
test_declared_inputs (void **state)
{
    s_refused ("{\"workflow\":\"w\",\"inputs\":[\"x\"],\"nodes\":[" TOOL ("t") "]}",
               (const char *[]) { "bad.json", "field inputs", NULL });
    s_refused ("{\"workflow\":\"w\",\"inputs\":{\"x\":\"money\"},\"nodes\":[" TOOL ("t") "]}",
               (const char *[]) { "field inputs.x", "a type", NULL });
    s_refused ("{\"workflow\":\"w\",\"inputs\":{\"a b\":\"string\"},\"nodes\":[" TOOL ("t") "]}",
               (const char *[]) { "field inputs.a b", "name", NULL });
    /* TOOL reads {{input.x}}: with only y declared, that read is named */
    s_refused ("{\"workflow\":\"w\",\"inputs\":{\"y\":\"string\"},\"nodes\":[" TOOL ("t") "]}",
               (const char *[]) { "node t", "field args", "{{input.x}}", "y (string)", NULL });
    s_refused ("{\"workflow\":\"w\",\"inputs\":{\"x\":\"number\"},\"nodes\":[" TOOL ("t") ",{\"id\":\"e\","
               "\"kind\":\"end\"}],\"edges\":[{\"from\":\"t\",\"to\":\"e\",\"when\":{\"not\":{\"var\":\"input.z\","
               "\"op\":\"exists\"}}}]}", (const char *[]) { "node t", "edges[0].when", "input.z", NULL });

    json_t *root = s_json ("{\"workflow\":\"w\",\"inputs\":{\"x\":\"number\",\"note\":\"string?\",\"n\":\"integer?\"},"
                           "\"nodes\":[" TOOL ("t") "]}");
    char err [600] = "";
    orch_workflow_t *wf = orch_workflow_new (root, "w.json", err, sizeof err);
    json_decref (root);
    if (!wf)
        fail_msg ("%s", err);
    static const struct { const char *input; const char *want; } cases [] = {
        { "{\"x\": 5}", NULL },
        { "{\"x\": 5.5, \"note\": \"hi\", \"n\": 3}", NULL },
        { "{}", "input x: missing (w takes x (number), note (string?), n (integer?))" },
        { "{\"x\": \"5\"}", "input x: a number, not \"5\"" },
        { "{\"x\": 1, \"n\": 1.5}", "input n: an integer, not 1.5" },
        { "{\"x\": 1, \"amout\": 2}", "input amout: w takes no such input" },
        { "[1]", "input: an object" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        json_t *in = json_loads (cases [i].input, JSON_DECODE_ANY, NULL);
        err [0] = 0;
        int rc = orch_workflow_check_input (wf, in, err, sizeof err);
        json_decref (in);
        if (!cases [i].want && rc)
            fail_msg ("%s refused: %s", cases [i].input, err);
        if (cases [i].want && (!rc || !strstr (err, cases [i].want)))
            fail_msg ("%s: got \"%s\", want \"%s\"", cases [i].input, rc ? err : "accepted", cases [i].want);
    }
    assert_int_not_equal (orch_workflow_check_input (wf, NULL, err, sizeof err), 0);      /* no input: x missing */
    orch_workflow_destroy (&wf);

    /* no inputs declared: anything goes, as before */
    root = s_json ("{\"workflow\":\"w\",\"nodes\":[" TOOL ("t") "]}");
    wf = orch_workflow_new (root, "w.json", err, sizeof err);
    json_decref (root);
    assert_non_null (wf);
    json_t *in = s_json ("{\"anything\": [1]}");
    assert_int_equal (orch_workflow_check_input (wf, in, err, sizeof err), 0);
    assert_int_equal (orch_workflow_check_input (wf, NULL, err, sizeof err), 0);
    json_decref (in);
    orch_workflow_destroy (&wf);

    /* the example declares vendor, amount and cost_center */
    wf = orch_workflow_load (EXAMPLE, err, sizeof err);
    assert_non_null (wf);
    in = s_json ("{\"vendor\": \"Acme\", \"amount\": 520000, \"cost_center\": \"engineering\"}");
    assert_int_equal (orch_workflow_check_input (wf, in, err, sizeof err), 0);
    json_object_del (in, "amount");
    assert_int_not_equal (orch_workflow_check_input (wf, in, err, sizeof err), 0);
    assert_non_null (strstr (err, "input amount: missing"));
    json_decref (in);
    orch_workflow_destroy (&wf);
}

static void
test_hash_is_canonical (void **state)
{
    char err [600];
    json_t *a = s_json ("{\"workflow\":\"w\",\"nodes\":[{\"id\":\"a\",\"kind\":\"end\"}]}");
    json_t *b = s_json ("{ \"nodes\" : [ { \"kind\":\"end\", \"id\":\"a\" } ],\n \"workflow\":\"w\" }");
    json_t *c = s_json ("{\"workflow\":\"w\",\"nodes\":[{\"id\":\"b\",\"kind\":\"end\"}]}");
    orch_workflow_t *wa = orch_workflow_new (a, NULL, err, sizeof err);
    orch_workflow_t *wb = orch_workflow_new (b, NULL, err, sizeof err);
    orch_workflow_t *wc = orch_workflow_new (c, NULL, err, sizeof err);
    assert_non_null (wa);
    assert_non_null (wb);
    assert_non_null (wc);
    assert_string_equal (orch_workflow_hash (wa), orch_workflow_hash (wb));
    assert_string_not_equal (orch_workflow_hash (wa), orch_workflow_hash (wc));
    orch_workflow_destroy (&wa);
    orch_workflow_destroy (&wb);
    orch_workflow_destroy (&wc);
    json_decref (a);
    json_decref (b);
    json_decref (c);
}

static void
test_templates (void **state)
{
    json_t *st = s_json ("{\"input\":{\"amount\":520000,\"vendor\":\"Acme\"},\"po\":{\"lines\":[{\"n\":1}],\"ok\":true}}");
    json_t *t = s_json ("{\"a\":\"{{input.amount}}\",\"b\":\"USD {{ input.amount }} to {{input.vendor}}\","
                        "\"c\":[\"{{po.lines}}\",\"{{po.lines.0.n}}\"],\"d\":7,\"e\":\"plain\",\"f\":\"{{po.ok}}!\"}");
    char err [300] = "";
    json_t *out = orch_template (t, st, err, sizeof err);
    assert_non_null (out);
    assert_true (json_is_integer (json_object_get (out, "a")));
    assert_int_equal (json_integer_value (json_object_get (out, "a")), 520000);
    assert_string_equal (json_string_value (json_object_get (out, "b")), "USD 520000 to Acme");
    assert_true (json_is_array (json_array_get (json_object_get (out, "c"), 0)));
    assert_int_equal (json_integer_value (json_array_get (json_object_get (out, "c"), 1)), 1);
    assert_int_equal (json_integer_value (json_object_get (out, "d")), 7);
    assert_string_equal (json_string_value (json_object_get (out, "e")), "plain");
    assert_string_equal (json_string_value (json_object_get (out, "f")), "true!");
    json_decref (out);
    json_t *bad = s_json ("{\"x\":[\"{{po.total}}\"]}");
    assert_null (orch_template (bad, st, err, sizeof err));
    assert_non_null (strstr (err, "po.total"));
    json_decref (bad);
    json_decref (t);
    json_decref (st);
}

static void
test_conditions_and_edges (void **state)
{
    json_t *st = s_json ("{\"po\":{\"total\":520000,\"vendor\":\"Acme\"}}");
    char err [300] = "";
    struct { const char *cond; int want; } cases [] = {
        { "{\"var\":\"po.total\",\"op\":\"<\",\"value\":10000}", 0 },
        { "{\"var\":\"po.total\",\"op\":\">=\",\"value\":520000}", 1 },
        { "{\"var\":\"po.total\",\"op\":\"<=\",\"value\":520000}", 1 },
        { "{\"var\":\"po.total\",\"op\":\">\",\"value\":520000}", 0 },
        { "{\"var\":\"po.vendor\",\"op\":\"==\",\"value\":\"Acme\"}", 1 },
        { "{\"var\":\"po.vendor\",\"op\":\"!=\",\"value\":\"Acme\"}", 0 },
        { "{\"var\":\"po.vendor\",\"op\":\"<\",\"value\":\"B\"}", 1 },
        { "{\"var\":\"po.nope\",\"op\":\"exists\"}", 0 },
        { "{\"var\":\"po.nope\",\"op\":\"<\",\"value\":1}", 0 },
        { "{\"var\":\"po.vendor\",\"op\":\"<\",\"value\":1}", 0 },
        { "{\"all\":[{\"var\":\"po.total\",\"op\":\">\",\"value\":1},{\"var\":\"po.vendor\",\"op\":\"exists\"}]}", 1 },
        { "{\"any\":[{\"var\":\"po.total\",\"op\":\"<\",\"value\":1},{\"var\":\"po.nope\",\"op\":\"exists\"}]}", 0 },
        { "{\"not\":{\"var\":\"po.total\",\"op\":\"<\",\"value\":1}}", 1 },
        { "{\"var\":\"po.total\",\"op\":\"<\"}", -1 },
        { "{\"all\":[]}", -1 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        json_t *c = s_json (cases [i].cond);
        int got = orch_condition (c, st, err, sizeof err);
        if (got != cases [i].want)
            fail_msg ("%s: got %d, want %d", cases [i].cond, got, cases [i].want);
        json_decref (c);
    }
    json_t *root = s_json ("{\"workflow\":\"w\",\"nodes\":[{\"id\":\"b\",\"kind\":\"branch\"},{\"id\":\"small\",\"kind\":\"end\"},"
                           "{\"id\":\"big\",\"kind\":\"end\"}],\"edges\":["
                           "{\"from\":\"b\",\"to\":\"small\",\"when\":{\"var\":\"po.total\",\"op\":\"<\",\"value\":10000}},"
                           "{\"from\":\"b\",\"to\":\"big\"}]}");
    orch_workflow_t *wf = orch_workflow_new (root, "w.json", err, sizeof err);
    assert_non_null (wf);
    const char *next = NULL;
    assert_int_equal (orch_workflow_next (wf, "b", st, &next, err, sizeof err), 0);
    assert_string_equal (next, "big");
    json_object_set_new (json_object_get (st, "po"), "total", json_integer (5000));
    assert_int_equal (orch_workflow_next (wf, "b", st, &next, err, sizeof err), 0);
    assert_string_equal (next, "small");
    orch_workflow_destroy (&wf);
    json_decref (root);
    json_decref (st);
}

static void
test_agent_tools (void **state)
{
    char err [600] = "";
    json_t *root = s_json ("{\"workflow\":\"w\",\"nodes\":[{\"id\":\"g\",\"kind\":\"agent\",\"agent\":\"chat\","
                           "\"tools\":[\"t\"]}," TOOL ("t") "]}");
    orch_workflow_t *wf = orch_workflow_new (root, "w.json", err, sizeof err);
    if (!wf)
        fail_msg ("%s", err);
    const json_t *g = orch_workflow_node (wf, "g");
    assert_true (orch_workflow_agent_may (g, "t"));
    assert_false (orch_workflow_agent_may (g, "transfer_funds"));
    assert_false (orch_workflow_agent_may (g, NULL));
    assert_int_equal (orch_workflow_agent_turns (g), ORCH_AGENT_TURNS);
    orch_workflow_destroy (&wf);
    json_decref (root);
    /* max_turns: 1..32 */
    root = s_json ("{\"workflow\":\"w\",\"nodes\":[{\"id\":\"g\",\"kind\":\"agent\",\"agent\":\"chat\","
                   "\"max_turns\":2,\"tools\":[\"t\"]}," TOOL ("t") "]}");
    wf = orch_workflow_new (root, "w.json", err, sizeof err);
    assert_non_null (wf);
    assert_int_equal (orch_workflow_agent_turns (orch_workflow_node (wf, "g")), 2);
    orch_workflow_destroy (&wf);
    json_decref (root);
    root = s_json ("{\"workflow\":\"w\",\"nodes\":[{\"id\":\"g\",\"kind\":\"agent\",\"agent\":\"chat\","
                   "\"max_turns\":0}]}");
    assert_null (orch_workflow_new (root, "w.json", err, sizeof err));
    assert_non_null (strstr (err, "w.json: node g: field max_turns"));
    json_decref (root);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_example_loads),
        cmocka_unit_test (test_errors_name_file_node_field),
        cmocka_unit_test (test_declared_inputs),
        cmocka_unit_test (test_hash_is_canonical),
        cmocka_unit_test (test_templates),
        cmocka_unit_test (test_conditions_and_edges),
        cmocka_unit_test (test_agent_tools),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
