/*  test_authz_cel.c — the CEL subset OpenFGA conditions use.

    Table-driven: each row compiles an expression against declared
    parameters (written "x:int, l:list<string>") and evaluates it on a JSON
    context, expecting 1, 0 or an AUTHZ_CEL_E* code. Also: every condition
    in the OpenFGA conformance data compiles and gives the answer its
    direct check assertions imply ($SANCTUM_CONFORMANCE_DIR or
    ../shared/conformance/openfga), limits, partial evaluation, and
    concurrent evaluation of one compiled condition.
*/
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <cmocka.h>

#include "authz_cel.h"

#define OK1  1
#define OK0  0
#define SYN  AUTHZ_CEL_ESYNTAX
#define TYP  AUTHZ_CEL_ETYPE
#define MIS  AUTHZ_CEL_EMISSING
#define EVL  AUTHZ_CEL_EEVAL
#define LIM  AUTHZ_CEL_ELIMIT
#define NB   AUTHZ_CEL_ENOTBOOL

typedef struct {
    const char *expr;
    const char *params;         //  "name:type, ..." or NULL
    const char *ctx;            //  JSON object or NULL
    int want;
} s_case_t;

static int s_pass, s_fail;

//  One declared type as OpenFGA JSON: int, list<string>, map<any>, ...
static json_t *
s_type_json (const char *t, size_t n)
{
    static const struct { const char *dsl, *name; } names [] = {
        {"any", "TYPE_NAME_ANY"}, {"bool", "TYPE_NAME_BOOL"}, {"string", "TYPE_NAME_STRING"},
        {"int", "TYPE_NAME_INT"}, {"uint", "TYPE_NAME_UINT"}, {"double", "TYPE_NAME_DOUBLE"},
        {"duration", "TYPE_NAME_DURATION"}, {"timestamp", "TYPE_NAME_TIMESTAMP"},
        {"ipaddress", "TYPE_NAME_IPADDRESS"}, {"bogus", "TYPE_NAME_BOGUS"}
    };
    for (const char *g = "list<", *m = "map<"; g; g = NULL) {
        size_t gl = strlen (g), ml = strlen (m);
        bool is_list = n > gl && !strncmp (t, g, gl), is_map = n > ml && !strncmp (t, m, ml);
        if (is_list || is_map) {
            size_t skip = is_list? gl: ml;
            json_t *inner = s_type_json (t + skip, n - skip - 1);
            return json_pack ("{s:s, s:[o]}", "type_name", is_list? "TYPE_NAME_LIST": "TYPE_NAME_MAP",
                              "generic_types", inner);
        }
    }
    for (size_t i = 0; i < sizeof names / sizeof names [0]; i++)
        if (strlen (names [i].dsl) == n && !strncmp (names [i].dsl, t, n))
            return json_pack ("{s:s}", "type_name", names [i].name);
    if (n == 4 && !strncmp (t, "list", 4))
        return json_pack ("{s:s}", "type_name", "TYPE_NAME_LIST");
    fail_msg ("bad type in test: %.*s", (int) n, t);
    return NULL;
}

//  Parameters "x:int, l:list<string>" as OpenFGA JSON (NULL for NULL).
static json_t *
s_params (const char *spec)
{
    if (!spec)
        return NULL;
    json_t *o = json_object ();
    const char *p = spec;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p)
            break;
        const char *colon = strchr (p, ':');
        assert_non_null (colon);
        const char *end = colon + 1;
        while (*end && *end != ',')
            end++;
        char name [64];
        snprintf (name, sizeof name, "%.*s", (int) (colon - p), p);
        json_object_set_new (o, name, s_type_json (colon + 1, (size_t) (end - colon - 1)));
        p = end;
    }
    return o;
}

//  Compile and evaluate one case; returns the result code.
static int
s_run (const char *expr, const char *params, const char *ctx, bool partial,
       json_t **missing, char *err, size_t err_len)
{
    json_t *pj = s_params (params);
    json_t *cj = NULL;
    if (ctx) {
        json_error_t je;
        cj = json_loads (ctx, 0, &je);
        if (!cj)
            fail_msg ("bad context JSON in test: %s (%s)", ctx, je.text);
    }
    authz_cel_t *cel = NULL;
    int rc = authz_cel_compile (&cel, expr, pj, err, err_len);
    if (rc == 0) {
        assert_non_null (cel);
        rc = partial? authz_cel_eval_partial (cel, cj, missing, err, err_len)
                    : authz_cel_eval (cel, cj, missing, err, err_len);
        authz_cel_destroy (&cel);
        assert_null (cel);
    }
    else
        assert_null (cel);
    json_decref (pj);
    json_decref (cj);
    return rc;
}

//  Run a table; report every mismatch, then fail if there was one.
static void
s_table (const s_case_t *cases, size_t n)
{
    int failed = 0;
    for (size_t i = 0; i < n; i++) {
        char err [256] = "";
        int rc = s_run (cases [i].expr, cases [i].params, cases [i].ctx, false, NULL, err, sizeof err);
        if (rc == cases [i].want)
            s_pass++;
        else {
            failed++;
            s_fail++;
            printf ("MISMATCH: %s [%s] ctx=%s: want %d got %d (%s)\n", cases [i].expr,
                    cases [i].params? cases [i].params: "", cases [i].ctx? cases [i].ctx: "null",
                    cases [i].want, rc, err);
        }
    }
    assert_int_equal (failed, 0);
}
#define S_TABLE(t) s_table (t, sizeof t / sizeof t [0])

//  ---------------------------------------------------------------------
//  Arithmetic, overflow, and the type rules of the operators.

static void
test_arithmetic (void **state)
{
    static const s_case_t cases [] = {
        {"1 + 2 == 3", NULL, NULL, OK1},
        {"7 / 2 == 3 && 7 % 3 == 1 && -7 / 2 == -3 && -7 % 3 == -1", NULL, NULL, OK1},
        {"9223372036854775807 + 1 == 0", NULL, NULL, EVL},
        {"-9223372036854775808 - 1 == 0", NULL, NULL, EVL},
        {"-9223372036854775808 < 0", NULL, NULL, OK1},
        {"-9223372036854775808 / -1 == 0", NULL, NULL, EVL},
        {"-9223372036854775808 % -1 == 0", NULL, NULL, EVL},
        {"-(-9223372036854775808) == 0", NULL, NULL, EVL},
        {"9223372036854775808 == 0", NULL, NULL, SYN},
        {"-(9223372036854775808) == 0", NULL, NULL, SYN},
        {"x * 2 > 0", "x:int", "{\"x\": 4611686018427387904}", EVL},
        {"x * -2 < 0", "x:int", "{\"x\": 4611686018427387904}", OK1},
        {"x / 0 == 1", "x:int", "{\"x\": 1}", EVL},
        {"x % 0 == 1", "x:int", "{\"x\": 1}", EVL},
        {"-x == -5 && --x == 5", "x:int", "{\"x\": 5}", OK1},
        {"0x10 == 16 && 0x10u == 16u && 0XfF == 255", NULL, NULL, OK1},
        {"1u - 2u == 0u", NULL, NULL, EVL},
        {"18446744073709551615u + 1u == 0u", NULL, NULL, EVL},
        {"18446744073709551615u * 2u == 0u", NULL, NULL, EVL},
        {"18446744073709551616u == 0u", NULL, NULL, SYN},
        {"5u / 2u == 2u && 5u % 2u == 1u && 3u * 3u == 9u && 3u - 1u == 2u", NULL, NULL, OK1},
        {"5u / 0u == 1u", NULL, NULL, EVL},
        {"5u % 0u == 1u", NULL, NULL, EVL},
        {"1.0 / 0.0 > 1e308 && -1.0 / 0.0 < -1e308", NULL, NULL, OK1},
        {"2.5 * 2.0 == 5.0 && 5.0 - 0.5 == 4.5 && 1.0 / 4.0 == 0.25 && -(1.5) == -1.5", NULL, NULL, OK1},
        {".5 == 0.5 && 1e3 == 1000.0 && 1.5e-3 == 0.0015", NULL, NULL, OK1},
        {"'a' + 'b' == 'ab' && b'a' + b'b' == b'ab'", NULL, NULL, OK1},
        {"[1, 2] + [3] == [1, 2, 3] && size([1] + []) == 1", NULL, NULL, OK1},
        {"1 + 1.0 == 2.0", NULL, NULL, TYP},
        {"x + 1u == 2u", "x:int", NULL, TYP},
        {"-1u == 1u", NULL, NULL, TYP},
        {"1.0 % 2.0 == 1.0", NULL, NULL, TYP},
        {"'a' - 'b' == ''", NULL, NULL, TYP},
        {"dyn(1) + dyn(1.0) == 2.0", NULL, NULL, EVL},
        {"dyn(1) + 1 == 2", NULL, NULL, OK1},
        {"1 + 1", NULL, NULL, NB},
    };
    S_TABLE (cases);
}

//  Comparisons: same-type only at compile time (cel-go without cross-type
//  numeric comparisons), heterogeneous at runtime through dyn.
static void
test_comparison (void **state)
{
    static const s_case_t cases [] = {
        {"1 < 2 && 2u > 1u && 1.5 >= 1.5 && 'a' < 'b' && b'a' < b'b' && false < true", NULL, NULL, OK1},
        {"'abc' < 'abd' && 'ab' < 'abc' && !('b' < 'abc') && 2 <= 2 && 3 >= 2", NULL, NULL, OK1},
        {"x < 1.0", "x:int", NULL, TYP},
        {"x == 1.0", "x:int", NULL, TYP},
        {"x == 1u", "x:int", NULL, TYP},
        {"x == null", "x:int", NULL, TYP},
        {"1 < 'a'", NULL, NULL, TYP},
        {"[1] < [2]", NULL, NULL, TYP},
        {"dyn(1) < 1.5 && dyn(2u) > 1 && dyn(-1) < 1u && 1.5 > dyn(1)", NULL, NULL, OK1},
        {"dyn(1) == 1.0 && dyn(1u) == 1 && dyn(1.0) == 1u", NULL, NULL, OK1},
        {"dyn('1') == 1", NULL, NULL, OK0},
        {"dyn('1') != 1", NULL, NULL, OK1},
        {"dyn(1) < 'a'", NULL, NULL, EVL},
        {"m.a == 1 && m.a < 2 && m.b == 'x' && m.c == null && m.d == true", "m:map<any>",
         "{\"m\": {\"a\": 1, \"b\": \"x\", \"c\": null, \"d\": true}}", OK1},
        {"true == true && null == null && [1, 2] == [1, 2] && [1] != [2] && [1] != [1, 1]", NULL, NULL, OK1},
        {"{'a': 1, 'b': 2} == {'b': 2, 'a': 1} && {'a': 1} != {'a': 2} && {'a': 1} != {'b': 1}", NULL, NULL, OK1},
        {"[1, 'a'] == [1, 'a'] && [1, 'a'] != ['a', 1]", NULL, NULL, OK1},
        {"double('NaN') < 1.0 || double('NaN') >= 1.0 || double('NaN') == double('NaN')", NULL, NULL, OK0},
        {"d == null", "d:duration", "{\"d\": \"1s\"}", OK0},
        {"d != null && t != null && ip != null && a != null", "d:duration, t:timestamp, ip:ipaddress, a:any",
         "{\"d\": \"1s\", \"t\": \"2023-01-01T00:00:00Z\", \"ip\": \"::1\", \"a\": 1}", OK1},
        {"a == null", "a:any", "{\"a\": null}", OK1},
        {"null == d", "d:duration", "{\"d\": \"0s\"}", OK0},
        {"s == null", "s:string", NULL, TYP},
        {"l == null", "l:list<int>", NULL, TYP},
    };
    S_TABLE (cases);
}

//  && || ! ?: with CEL's error-absorbing semantics.
static void
test_logic (void **state)
{
    static const s_case_t cases [] = {
        {"true || 1 / 0 == 1", NULL, NULL, OK1},
        {"1 / 0 == 1 || true", NULL, NULL, OK1},
        {"false && 1 / 0 == 1", NULL, NULL, OK0},
        {"1 / 0 == 1 && false", NULL, NULL, OK0},
        {"1 / 0 == 1 && true", NULL, NULL, EVL},
        {"1 / 0 == 1 || false", NULL, NULL, EVL},
        {"false || false || 1 / 0 == 1 || true", NULL, NULL, OK1},
        {"true && true && true && !false", NULL, NULL, OK1},
        {"!true == false && !!true && !!!false", NULL, NULL, OK1},
        {"!1", NULL, NULL, TYP},
        {"x && true", "x:int", NULL, TYP},
        {"true || 'a'", NULL, NULL, TYP},
        {"b || false", "b:bool", "{\"b\": true}", OK1},
        {"b || false", "b:bool", "{\"b\": \"true\"}", TYP},
        {"a || false", "a:any", "{\"a\": 1}", EVL},
        {"a || true", "a:any", "{\"a\": 1}", OK1},
        {"!-1 == 1", NULL, NULL, SYN},
        {"(1 == 1 ? 'a' : 'b') == 'a' && (false ? 1 : 2) == 2", NULL, NULL, OK1},
        {"(true ? 1 : 'a') == 1", NULL, NULL, TYP},
        {"(1 ? 1 : 2) == 1", NULL, NULL, TYP},
        {"(true ? d : null) == null", "d:duration", "{\"d\": \"1s\"}", OK0},
        {"(x > 0 ? 1 / 0 : 2) == 2", "x:int", "{\"x\": -1}", OK1},
        {"(x > 0 ? 1 / 0 : 2) == 2", "x:int", "{\"x\": 1}", EVL},
        {"(a ? 1 : 2) == 1", "a:any", "{\"a\": 1}", EVL},
        {"(a ? 1 : 2) == 1", "a:any", "{\"a\": true}", OK1},
        {"true ? false : true ? true : true", NULL, NULL, OK0},
    };
    S_TABLE (cases);
}

//  size, contains, startsWith, endsWith, matches.
static void
test_strings (void **state)
{
    static const s_case_t cases [] = {
        {"size('h\xc3\xa9llo') == 5 && size(b'ab') == 2 && 'abc'.size() == 3", NULL, NULL, OK1},
        {"size([1, 2]) == 2 && [1, 2].size() == 2 && size({'a': 1}) == 1 && {'a': 1}.size() == 1", NULL, NULL, OK1},
        {"size(1) == 1", NULL, NULL, TYP},
        {"'hello'.contains('ell') && 'hello'.startsWith('he') && 'hello'.endsWith('lo')", NULL, NULL, OK1},
        {"'hello'.contains('') && !'hello'.contains('x') && !'he'.startsWith('hello') && !'lo'.endsWith('hello')", NULL, NULL, OK1},
        {"contains('hello', 'e')", NULL, NULL, TYP},
        {"'hello'.contains(1)", NULL, NULL, TYP},
        {"'abc123'.matches('[0-9]+') && matches('abc', '^a.c$') && !'abc'.matches('^b')", NULL, NULL, OK1},
        {"'a1'.matches('\\\\d') && 'a1'.matches(r'\\d') && !'ab'.matches(r'\\d') && 'a b'.matches(r'\\s')", NULL, NULL, OK1},
        {"'x_1'.matches(r'^\\w+$') && !'x-1'.matches(r'^\\w+$') && 'x-1'.matches(r'\\W')", NULL, NULL, OK1},
        {"'ABC'.matches('(?i)abc') && !'ABC'.matches('abc') && 'aaa'.matches('^a{3}$') && !'aa'.matches('^a{3}$')", NULL, NULL, OK1},
        {"'a.b'.matches(r'a\\.b') && !'axb'.matches(r'a\\.b') && 'a]b'.matches('[]]') && 'a-b'.matches('[-]')", NULL, NULL, OK1},
        {"'foo'.matches('fo*?') && '{x}'.matches('{x}') && 'ab'.matches('(?:a|c)b') && 'a^'.matches('[\\\\^]')", NULL, NULL, OK1},
        {"'7'.matches('[[:digit:]]') && '7'.matches(r'[\\d]') && !'x'.matches(r'[\\d]')", NULL, NULL, OK1},
        {"'x'.matches('(')", NULL, NULL, EVL},
        {"'x'.matches(r'\\pL')", NULL, NULL, EVL},
        {"'x'.matches('a{1001}')", NULL, NULL, EVL},
        {"'x'.matches('(?P<n>x)')", NULL, NULL, EVL},
        {"'x'.matches('((a{10}){10}){11}')", NULL, NULL, EVL},
        {"'x'.matches('(((((((((((a{2}){2}){2}){2}){2}){2}){2}){2}){2}){2}){2})')", NULL, NULL, EVL},
        {"'aaaa'.matches('^((a{2}){2}){1,10}$') && 'ab'.matches('(a){500}|b{2}|b')", NULL, NULL, OK1},
        {"'x'.matches('(x')", NULL, NULL, EVL},
        {"'x'.matches('x)')", NULL, NULL, EVL},
        {"s.matches(p)", "s:string, p:string", "{\"s\": \"foo\", \"p\": \"o+$\"}", OK1},
        {"s.matches(p)", "s:string, p:string", "{\"s\": \"foo\", \"p\": \"(\"}", EVL},
        {"'x'.matches(1)", NULL, NULL, TYP},
        //  literals and escapes
        {"'a\\nb' == \"a\\nb\" && '\\x41' == 'A' && '\\101' == 'A' && '\\u00e9' == '\xc3\xa9' && '\\U0001F600' == '\xf0\x9f\x98\x80'", NULL, NULL, OK1},
        {"b'\\xff' != b'\\x00' && size(b'\\xff') == 1 && size('\\xff') == 1 && size(bytes('\\xff')) == 2", NULL, NULL, OK1},
        {"r'\\n' != '\\n' && size(r'\\n') == 2 && '''a'b''' == \"a'b\" && \"\"\"x\ny\"\"\" == 'x\\ny'", NULL, NULL, OK1},
        {"'\\q' == ''", NULL, NULL, SYN},
        {"'\\ud800' == ''", NULL, NULL, SYN},
        {"'unterminated", NULL, NULL, SYN},
        {"'a\nb' == ''", NULL, NULL, SYN},
        {"true // a comment", NULL, NULL, OK1},
    };
    S_TABLE (cases);
}

//  int() uint() double() string() bytes() bool() and their range errors.
static void
test_conversions (void **state)
{
    static const s_case_t cases [] = {
        {"int('42') == 42 && int('-42') == -42 && int('+7') == 7 && int(4.9) == 4 && int(-4.9) == -4", NULL, NULL, OK1},
        {"int(42u) == 42 && int(timestamp('1970-01-01T00:01:00Z')) == 60", NULL, NULL, OK1},
        {"int('4.2') == 4", NULL, NULL, EVL},
        {"int(' 4') == 4", NULL, NULL, EVL},
        {"int('9223372036854775808') == 0", NULL, NULL, EVL},
        {"int(1e19) == 0", NULL, NULL, EVL},
        {"int(-9223372036854775808.0) == 0", NULL, NULL, EVL},
        {"int(18446744073709551615u) == 0", NULL, NULL, EVL},
        {"uint(-1) == 0u", NULL, NULL, EVL},
        {"uint(-0.5) == 0u", NULL, NULL, EVL},
        {"uint(3.7) == 3u && uint('7') == 7u && uint(7) == 7u", NULL, NULL, OK1},
        {"uint('-7') == 7u", NULL, NULL, EVL},
        {"uint('+7') == 7u", NULL, NULL, EVL},
        {"double(1) == 1.0 && double(2u) == 2.0 && double('2.5') == 2.5 && double('-1e3') == -1000.0", NULL, NULL, OK1},
        {"double(18446744073709551615u) == 18446744073709551616.0", NULL, NULL, OK1},
        {"double('x') == 0.0", NULL, NULL, EVL},
        {"double('1e999') == 0.0", NULL, NULL, EVL},
        {"string(1) == '1' && string(-5) == '-5' && string(5u) == '5' && string(true) == 'true'", NULL, NULL, OK1},
        {"string(1.5) == '1.5' && string(1e21) == '1e+21' && string(1000000.0) == '1e+06' && string(123456.0) == '123456'", NULL, NULL, OK1},
        {"string(0.0001) == '0.0001' && string(0.00001) == '1e-05' && string(-2.5) == '-2.5' && string(0.1) == '0.1'", NULL, NULL, OK1},
        {"string(1.0) == '1' && string(100.0) == '100' && string(1.0/0.0) == '+Inf'", NULL, NULL, OK1},
        {"string(b'abc') == 'abc' && string('s') == 's' && bytes('abc') == b'abc'", NULL, NULL, OK1},
        {"string(b'\\xff') == ''", NULL, NULL, EVL},
        {"string(duration('1h')) == '3600s' && string(duration('1.5s')) == '1.5s' && string(duration('-1ms')) == '-0.001s'", NULL, NULL, OK1},
        {"string(timestamp('2023-01-01T00:00:00Z')) == '2023-01-01T00:00:00Z'", NULL, NULL, OK1},
        {"string(timestamp('2023-01-01T00:00:00.120Z')) == '2023-01-01T00:00:00.12Z'", NULL, NULL, OK1},
        {"string(timestamp('2023-01-01T02:00:00+02:00')) == '2023-01-01T02:00:00+02:00'", NULL, NULL, OK1},
        {"string([1]) == ''", NULL, NULL, TYP},
        {"string(ip) == ''", "ip:ipaddress", NULL, TYP},
        {"bool('true') && !bool('0') && bool('T') && !bool('False') && bool(true)", NULL, NULL, OK1},
        {"bool('yes')", NULL, NULL, EVL},
        {"dyn(1) == 1 && type(1) == int", NULL, NULL, TYP},
        {"int(x) == 1", "x:any", "{\"x\": 1.5}", OK1},
        {"int(x) == 1", "x:any", "{\"x\": [1]}", EVL},
    };
    S_TABLE (cases);
}

//  duration(), timestamp(), their arithmetic, comparison and accessors.
static void
test_time (void **state)
{
    static const s_case_t cases [] = {
        {"duration('1h2m3s4ms5us6ns') == duration('3723004005006ns')", NULL, NULL, OK1},
        {"duration('1.5h') == duration('90m') && duration('-1.5h') < duration('0s') && duration('0') == duration('0s')", NULL, NULL, OK1},
        {"duration('1\xc2\xb5s') == duration('1us') && duration('+5s') == duration('5000ms') && duration('.5s') == duration('500ms')", NULL, NULL, OK1},
        {"duration('2562047h47m16.854775807s') > duration('0s')", NULL, NULL, OK1},
        {"duration('2562047h47m16.854775808s') > duration('0s')", NULL, NULL, EVL},
        {"duration('') == duration('0s')", NULL, NULL, EVL},
        {"duration('1') == duration('0s')", NULL, NULL, EVL},
        {"duration('1d') == duration('0s')", NULL, NULL, EVL},
        {"duration('9999999999h') == duration('0s')", NULL, NULL, EVL},
        {"duration('1h') + duration('1h') == duration('2h') && duration('1h') - duration('2h') < duration('0s')", NULL, NULL, OK1},
        {"timestamp('2023-01-01T00:00:00Z') + duration('1h') == timestamp('2023-01-01T01:00:00Z')", NULL, NULL, OK1},
        {"duration('1h') + timestamp('2023-01-01T00:00:00Z') == timestamp('2023-01-01T01:00:00Z')", NULL, NULL, OK1},
        {"timestamp('2023-01-01T01:00:00Z') - timestamp('2023-01-01T00:00:00.5Z') == duration('59m59.5s')", NULL, NULL, OK1},
        {"timestamp('2023-01-01T00:00:00Z') - duration('1ns') < timestamp('2023-01-01T00:00:00Z')", NULL, NULL, OK1},
        {"timestamp('9999-12-31T23:59:59Z') + duration('1s') > timestamp(0)", NULL, NULL, EVL},
        {"timestamp('0001-01-01T00:00:00Z') - duration('1s') > timestamp(0)", NULL, NULL, EVL},
        {"timestamp('0001-01-01T00:00:00Z') - timestamp('9999-12-31T23:59:59Z') < duration('0s')", NULL, NULL, EVL},
        {"timestamp(0) == timestamp('1970-01-01T00:00:00Z') && timestamp(-1) < timestamp(0)", NULL, NULL, OK1},
        {"timestamp('2023-01-01T00:00:00+01:00') == timestamp('2022-12-31T23:00:00Z')", NULL, NULL, OK1},
        {"timestamp('2024-02-29T00:00:00Z') > timestamp('2023-02-28T00:00:00Z')", NULL, NULL, OK1},
        {"timestamp('2023-02-29T00:00:00Z') == timestamp(0)", NULL, NULL, EVL},
        {"timestamp('2023-13-01T00:00:00Z') == timestamp(0)", NULL, NULL, EVL},
        {"timestamp('2023-01-01 00:00:00Z') == timestamp(0)", NULL, NULL, EVL},
        {"timestamp('2023-01-01T00:00:60Z') == timestamp(0)", NULL, NULL, EVL},
        {"timestamp('2023-01-01T00:00:00') == timestamp(0)", NULL, NULL, EVL},
        {"timestamp(253402300800) == timestamp(0)", NULL, NULL, EVL},
        {"timestamp('2023-01-01T00:00:00Z') + 1 == timestamp(0)", NULL, NULL, TYP},
        {"duration('1h') < timestamp(0)", NULL, NULL, TYP},
        {"t.getFullYear() == 2023 && t.getMonth() == 2 && t.getDate() == 15 && t.getDayOfMonth() == 14", "t:timestamp",
         "{\"t\": \"2023-03-15T10:20:30.456Z\"}", OK1},
        {"t.getDayOfYear() == 73 && t.getDayOfWeek() == 3 && t.getHours() == 10 && t.getMinutes() == 20", "t:timestamp",
         "{\"t\": \"2023-03-15T10:20:30.456Z\"}", OK1},
        {"t.getSeconds() == 30 && t.getMilliseconds() == 456 && t.getHours('+02:00') == 12 && t.getHours('UTC') == 10", "t:timestamp",
         "{\"t\": \"2023-03-15T10:20:30.456Z\"}", OK1},
        {"t.getHours() == 12 && t.getHours('UTC') == 10 && t.getDayOfWeek('-11:00') == 2", "t:timestamp",
         "{\"t\": \"2023-03-15T12:20:30+02:00\"}", OK1},
        {"t.getHours('America/New_York') == 5", "t:timestamp", "{\"t\": \"2023-03-15T10:20:30Z\"}", EVL},
        {"timestamp('1969-12-31T23:59:59Z').getDayOfWeek() == 3 && timestamp('1969-12-31T23:59:59Z').getHours() == 23", NULL, NULL, OK1},
        {"duration('90m').getHours() == 1 && duration('90m').getMinutes() == 90 && duration('1.5s').getMilliseconds() == 1500", NULL, NULL, OK1},
        {"duration('90m').getFullYear() == 1", NULL, NULL, TYP},
        {"current_time < grant_time + grant_duration", "current_time:timestamp, grant_duration:duration, grant_time:timestamp",
         "{\"current_time\": \"2023-01-01T00:10:00Z\", \"grant_time\": \"2023-01-01T00:00:00Z\", \"grant_duration\": \"1h\"}", OK1},
        {"current_time < grant_time + grant_duration", "current_time:timestamp, grant_duration:duration, grant_time:timestamp",
         "{\"current_time\": \"2023-01-01T02:10:00Z\", \"grant_time\": \"2023-01-01T00:00:00Z\", \"grant_duration\": \"1h\"}", OK0},
    };
    S_TABLE (cases);
}

//  OpenFGA's ipaddress extension.
static void
test_ipaddress (void **state)
{
    static const s_case_t cases [] = {
        {"ipaddress('192.168.0.1').in_cidr('192.168.0.0/24') && !ipaddress('192.168.1.1').in_cidr('192.168.0.0/24')", NULL, NULL, OK1},
        {"ipaddress('192.168.0.1') == ipaddress('192.168.0.1') && ipaddress('192.168.0.1') != ipaddress('192.168.0.2')", NULL, NULL, OK1},
        {"ipaddress('2001:db8::1').in_cidr('2001:db8::/32') && !ipaddress('2001:db9::1').in_cidr('2001:db8::/32')", NULL, NULL, OK1},
        {"ipaddress('::ffff:192.168.0.1').in_cidr('192.168.0.0/16')", NULL, NULL, OK0},
        {"ipaddress('10.1.2.3').in_cidr('0.0.0.0/0') && ipaddress('10.1.2.3').in_cidr('10.1.2.3/32') && ipaddress('10.1.2.3').in_cidr('10.1.2.0/24')", NULL, NULL, OK1},
        {"ipaddress('fe80::1%eth0') != ipaddress('fe80::1') && !ipaddress('fe80::1%eth0').in_cidr('fe80::/10')", NULL, NULL, OK1},
        {"ipaddress('x') == ipaddress('::1')", NULL, NULL, EVL},
        {"ipaddress('010.0.0.1') == ipaddress('::1')", NULL, NULL, EVL},
        {"ipaddress('1.2.3.4%eth0') == ipaddress('::1')", NULL, NULL, EVL},
        {"ipaddress('192.168.0.1').in_cidr('192.168.0.0/33')", NULL, NULL, EVL},
        {"ipaddress('192.168.0.1').in_cidr('192.168.0.0')", NULL, NULL, EVL},
        {"ipaddress('192.168.0.1').in_cidr('192.168.0.0/024')", NULL, NULL, EVL},
        {"ipaddress('192.168.0.1').in_cidr('x/8')", NULL, NULL, EVL},
        {"ipaddress(1) == ipaddress('::1')", NULL, NULL, TYP},
        {"ip.in_cidr(1)", "ip:ipaddress", NULL, TYP},
        {"ip == '1.2.3.4'", "ip:ipaddress", NULL, TYP},
        {"'1.2.3.4'.in_cidr('1.2.3.0/24')", NULL, NULL, TYP},
        {"user_ip.in_cidr(cidr)", "user_ip:ipaddress, cidr:string", "{\"user_ip\": \"192.168.0.1\", \"cidr\": \"192.168.0.0/24\"}", OK1},
        {"user_ip.in_cidr(cidr)", "user_ip:ipaddress, cidr:string", "{\"user_ip\": \"192.168.1.0\", \"cidr\": \"192.168.0.0/24\"}", OK0},
        {"user_ip.in_cidr(cidr)", "user_ip:ipaddress, cidr:string", "{\"user_ip\": \"192.168.0.256\", \"cidr\": \"192.168.0.0/24\"}", TYP},
        {"user_ip.in_cidr(cidr)", "user_ip:ipaddress, cidr:string", "{\"user_ip\": 3232235521, \"cidr\": \"192.168.0.0/24\"}", TYP},
        {"ip.in_cidr('::/0') && !ip.in_cidr('0.0.0.0/0')", "ip:ipaddress", "{\"ip\": \"::1\"}", OK1},
    };
    S_TABLE (cases);
}

//  in, indexing, field selection, has(), list and map literals.
static void
test_access (void **state)
{
    static const s_case_t cases [] = {
        {"'a' in ['a', 'b'] && !('c' in ['a']) && 'k' in {'k': 1} && !('j' in {'k': 1})", NULL, NULL, OK1},
        {"1 in [1.0]", NULL, NULL, TYP},
        {"1 in {'k': 1}", NULL, NULL, TYP},
        {"1 in 'abc'", NULL, NULL, TYP},
        {"dyn(1) in [1.0] && dyn(1u) in [1]", NULL, NULL, OK1},
        {"[1, 2, 3][1] == 2 && {'a': 1}['a'] == 1 && [[1], [2]][1][0] == 2", NULL, NULL, OK1},
        {"[1][5] == 1", NULL, NULL, EVL},
        {"[1][-1] == 1", NULL, NULL, EVL},
        {"[1][0u] == 1", NULL, NULL, TYP},
        {"[1][dyn(0u)] == 1 && [1][dyn(0.0)] == 1", NULL, NULL, OK1},
        {"[1][dyn(0.5)] == 1", NULL, NULL, EVL},
        {"{'a': 1}['b'] == 1", NULL, NULL, EVL},
        {"{'a': 1}[1] == 1", NULL, NULL, TYP},
        {"m.k == 'v' && m['k'] == 'v' && has(m.k) && !has(m.j)", "m:map<string>", "{\"m\": {\"k\": \"v\"}}", OK1},
        {"m.k == 'v'", "m:map<string>", "{\"m\": {}}", EVL},
        {"has(m.k) && m.k == 'v'", "m:map<string>", "{\"m\": {}}", OK0},
        {"has(m.a.b) && m.a.b == 1", "m:map<any>", "{\"m\": {\"a\": {\"b\": 1}}}", OK1},
        {"has(m.a.b)", "m:map<any>", "{\"m\": {\"a\": 1}}", EVL},
        {"has(m)", "m:map<any>", NULL, SYN},
        {"has(m.k, 1)", "m:map<any>", NULL, TYP},
        {"x.k == 1", "x:int", NULL, TYP},
        {"m.k", "m:map<bool>", "{\"m\": {\"k\": true}}", OK1},
        {"m.k", "m:map<any>", NULL, NB},
        {"l[0] == 'a'", "l:list<string>", "{\"l\": []}", EVL},
        {"l[0] == 'a' && l[1] == 'b'", "l:list<string>", "{\"l\": [\"a\", \"b\"]}", OK1},
        {"{'a': 1, 'a': 2}.size() == 2", NULL, NULL, EVL},
        {"{1: 'a', 2u: 'b', true: 'c'}[2u] == 'b'", NULL, NULL, OK1},
        {"{1: 'a', 1u: 'b'}.size() == 2", NULL, NULL, EVL},
        {"{1.5: 'a'}.size() == 1", NULL, NULL, EVL},
        {"[1, 2, ].size() == 2 && {'a': 1, }.size() == 1 && [].size() == 0 && {}.size() == 0", NULL, NULL, OK1},
        {"size([1, 'a', 2.0, null, [1], {'a': b'x'}]) == 6", NULL, NULL, OK1},
        {"document_attributes['state'] in allowed_states", "allowed_states:list<string>, document_attributes:map<string>",
         "{\"allowed_states\": [\"open\", \"draft\"], \"document_attributes\": {\"state\": \"draft\"}}", OK1},
        {"document_attributes['state'] in allowed_states", "allowed_states:list<string>, document_attributes:map<string>",
         "{\"allowed_states\": [\"open\"], \"document_attributes\": {\"state\": \"draft\"}}", OK0},
        {"document_attributes['state'] in allowed_states", "allowed_states:list<string>, document_attributes:map<string>",
         "{\"allowed_states\": [\"open\"], \"document_attributes\": {}}", EVL},
    };
    S_TABLE (cases);
}

//  all, exists, exists_one, map, filter: results, error absorption, scope.
static void
test_macros (void **state)
{
    static const s_case_t cases [] = {
        {"[1, 2, 3].all(x, x > 0) && [1, 2, 3].exists(x, x > 2) && [1, 2, 3].exists_one(x, x > 2)", NULL, NULL, OK1},
        {"[1, 2, 3].exists_one(x, x > 1)", NULL, NULL, OK0},
        {"[1, 2, 3].map(x, x * 2) == [2, 4, 6] && [1, 2, 3].filter(x, x % 2 == 1) == [1, 3]", NULL, NULL, OK1},
        {"[1, 2, 3].map(x, x > 1, x * 10) == [20, 30] && [1, 2].map(x, string(x)) == ['1', '2']", NULL, NULL, OK1},
        {"{'a': 1, 'b': 2}.all(k, k in ['a', 'b']) && {'a': 1}.exists(k, k == 'a')", NULL, NULL, OK1},
        {"[].all(x, x > 0) && ![].exists(x, true) && ![].exists_one(x, true) && [].map(x, x) == []", NULL, NULL, OK1},
        {"[0, 1].all(x, 1 / x > 0)", NULL, NULL, EVL},
        {"[0, -1].all(x, 1 / x > 0)", NULL, NULL, OK0},
        {"[-1, 0].all(x, 1 / x > 0)", NULL, NULL, OK0},
        {"[0, 1].exists(x, 1 / x > 0)", NULL, NULL, OK1},
        {"[0].exists(x, 1 / x > 0)", NULL, NULL, EVL},
        {"[0, 1].exists_one(x, 1 / x > 0)", NULL, NULL, EVL},
        {"[0, 1].map(x, 1 / x) == [1]", NULL, NULL, EVL},
        {"[0, 1].filter(x, 1 / x > 0) == [1]", NULL, NULL, EVL},
        {"[[1, 2], [3]].all(l, l.all(x, x > 0)) && [1, 2].all(x, [3, 4].exists(y, y > x))", NULL, NULL, OK1},
        {"[1, 2].all(x, [3, 4].exists(x, x > 3))", NULL, NULL, OK1},
        {"[1].all(x, x == 1) && x == 's' && [1, 2].map(x, x) == [1, 2] && x == 's'", "x:string", "{\"x\": \"s\"}", OK1},
        {"1.all(x, true)", NULL, NULL, TYP},
        {"[1].all(1, true)", NULL, NULL, SYN},
        {"[1].all((x), true)", NULL, NULL, SYN},
        {"[1].all(x, x)", NULL, NULL, TYP},
        {"[1, 2].exists(x, x == 'a')", NULL, NULL, TYP},
        {"[1].map(x, x).size() == 1 && [1].filter(x, true)[0] == 1", NULL, NULL, OK1},
        {"x.all(y, true)", "x:any", "{\"x\": 1}", EVL},
        {"x.exists(y, y == 'k')", "x:any", "{\"x\": {\"k\": 1}}", OK1},
        {"\"1\" in _liststring && _liststring[0] != \"\" && _liststring[0] > \"\" && _liststring.exists(x, x > \"\") "
         "&& _liststring.exists_one(x, x > \"\") && _liststring.all(x, x > \"\")", "_liststring:list<string>",
         "{\"_liststring\": [\"1\"]}", OK1},
        {"y.all(x, x.startsWith('a'))", "y:list<string>", "{\"y\": [\"ab\", \"ac\"]}", OK1},
        {"y.exists(x, x.size() > 2)", "y:list<any>", "{\"y\": [\"ab\", 1]}", EVL},
        {"y.exists(x, x == 1)", "y:list<any>", "{\"y\": [\"ab\", 1]}", OK1},
    };
    S_TABLE (cases);
}

//  Context values converted to declared parameter types as OpenFGA does.
static void
test_context (void **state)
{
    static const s_case_t cases [] = {
        {"x == 10", "x:int", "{\"x\": \"10\"}", OK1},
        {"x == 10", "x:int", "{\"x\": 10.0}", OK1},
        {"x == 1000", "x:int", "{\"x\": \"1e3\"}", OK1},
        {"x == 10", "x:int", "{\"x\": 10.5}", TYP},
        {"x == 10", "x:int", "{\"x\": \"10.5\"}", TYP},
        {"x == 10", "x:int", "{\"x\": \"abc\"}", TYP},
        {"x == 10", "x:int", "{\"x\": \" 10\"}", TYP},
        {"x == 10", "x:int", "{\"x\": true}", TYP},
        {"x == 10", "x:int", "{\"x\": null}", TYP},
        {"x == 10", "x:int", "{\"x\": [10]}", TYP},
        {"x == 9223372036854775807", "x:int", "{\"x\": 1e30}", OK1},
        {"x == -9223372036854775808", "x:int", "{\"x\": -1e30}", OK1},
        {"x == 9007199254740993", "x:int", "{\"x\": \"9007199254740993\"}", OK1},
        {"x == 5u", "x:uint", "{\"x\": 5}", OK1},
        {"x == 5u", "x:uint", "{\"x\": \"5\"}", OK1},
        {"x == 0u", "x:uint", "{\"x\": -0.0}", OK1},
        {"x == 5u", "x:uint", "{\"x\": -1}", TYP},
        {"x > 0.0", "x:double", "{\"x\": 1.797693134862315708145274237317}", OK1},
        {"x > 0.0", "x:double", "{\"x\": -1.797693134862315708145274237317}", OK0},
        {"x > 0.0", "x:double", "{\"x\": \"1.79769313486231570814527423731704356798070e+309\"}", TYP},
        {"x > 0.0", "x:double", "{\"x\": \"-1.79769313486231570814527423731704356798070e+309\"}", TYP},
        {"x > 0.0", "x:double", "{\"x\": \"Inf\"}", TYP},
        {"x > 0.0", "x:double", "{\"x\": \"NaN\"}", TYP},
        {"x == 1.5", "x:double", "{\"x\": \"1.5\"}", OK1},
        {"x == 1.0", "x:double", "{\"x\": 1}", OK1},
        {"s == 'a'", "s:string", "{\"s\": 1}", TYP},
        {"s == 'a'", "s:string", "{\"s\": \"a\"}", OK1},
        {"b", "b:bool", "{\"b\": 1}", TYP},
        {"d == duration('90m')", "d:duration", "{\"d\": \"1h30m\"}", OK1},
        {"d == duration('90m')", "d:duration", "{\"d\": \"1x\"}", TYP},
        {"d == duration('90m')", "d:duration", "{\"d\": 5400}", TYP},
        {"t == timestamp('2022-12-31T23:00:00Z')", "t:timestamp", "{\"t\": \"2023-01-01T00:00:00+01:00\"}", OK1},
        {"t == timestamp('2022-12-31T23:00:00Z')", "t:timestamp", "{\"t\": \"2023-02-30T00:00:00Z\"}", TYP},
        {"t == timestamp('2022-12-31T23:00:00Z')", "t:timestamp", "{\"t\": \"2023-10-11T11:00.000Z\"}", TYP},
        {"t == timestamp('2022-12-31T23:00:00Z')", "t:timestamp", "{\"t\": 0}", TYP},
        {"ip == ipaddress('10.0.0.1')", "ip:ipaddress", "{\"ip\": \"10.0.0.1\"}", OK1},
        {"ip == ipaddress('10.0.0.1')", "ip:ipaddress", "{\"ip\": \"10.0.0.256\"}", TYP},
        {"l == ['a']", "l:list<string>", "{\"l\": [\"a\"]}", OK1},
        {"l == ['a']", "l:list<string>", "{\"l\": [\"a\", 1]}", TYP},
        {"l == ['a']", "l:list<string>", "{\"l\": \"a\"}", TYP},
        {"l[0][0] == 1", "l:list<list<int>>", "{\"l\": [[\"1\"]]}", OK1},
        {"m.a == 1", "m:map<int>", "{\"m\": {\"a\": \"1\"}}", OK1},
        {"m.a == 1", "m:map<int>", "{\"m\": {\"a\": \"x\"}}", TYP},
        {"m.a == 1", "m:map<int>", "{\"m\": [1]}", TYP},
        {"m.a.b[0] == 'x'", "m:map<map<list<string>>>", "{\"m\": {\"a\": {\"b\": [\"x\"]}}}", OK1},
        {"a[2].k == true && a[0] == 1 && a[1] == 'x'", "a:any", "{\"a\": [1, \"x\", {\"k\": true}]}", OK1},
        {"x < 1", "x:int", "{\"x\": 0, \"other\": \"ignored\"}", OK1},
        {"true", NULL, "{\"a\": 1}", TYP},
        {"true", NULL, "{}", OK1},
        {"true", NULL, NULL, OK1},
        {"x < 1", "x:int", "[1]", TYP},
    };
    S_TABLE (cases);
}

//  Compile-time errors: syntax, undeclared names, declarations.
static void
test_compile_errors (void **state)
{
    static const s_case_t cases [] = {
        {"", NULL, NULL, SYN},
        {"1 +", NULL, NULL, SYN},
        {"(1 == 1", NULL, NULL, SYN},
        {"1 == 1)", NULL, NULL, SYN},
        {"1 2", NULL, NULL, SYN},
        {"a.", "a:map<int>", NULL, SYN},
        {"if == 1", NULL, NULL, SYN},
        {"x $ 1", "x:int", NULL, SYN},
        {".x == 1", "x:int", NULL, SYN},
        {"[1, 2", NULL, NULL, SYN},
        {"{'a' 1}", NULL, NULL, SYN},
        {"f(1,)", NULL, NULL, SYN},
        {"undeclared == 1", NULL, NULL, TYP},
        {"foo(1) == 1", NULL, NULL, TYP},
        {"'a'.foo() == 1", NULL, NULL, TYP},
        {"x < 1", "x:bogus", NULL, TYP},
        {"x < 1", "x:list", NULL, TYP},
    };
    S_TABLE (cases);
    char err [128];
    authz_cel_t *cel = (authz_cel_t *) 1;
    assert_int_equal (authz_cel_compile (&cel, NULL, NULL, err, sizeof err), SYN);
    assert_null (cel);
    json_t *bad = json_array ();
    assert_int_equal (authz_cel_compile (&cel, "true", bad, err, sizeof err), TYP);
    json_decref (bad);
    bad = json_pack ("{s:s}", "x", "TYPE_NAME_INT");
    assert_int_equal (authz_cel_compile (&cel, "true", bad, err, sizeof err), TYP);
    json_decref (bad);
    //  a NULL or short err buffer is fine
    assert_int_equal (authz_cel_compile (&cel, "1 +", NULL, NULL, 0), SYN);
    assert_int_equal (authz_cel_compile (&cel, "1 +", NULL, err, 1), SYN);
    authz_cel_destroy (&cel);
    authz_cel_destroy (NULL);
    assert_string_equal (authz_cel_strerror (AUTHZ_CEL_EMISSING), "missing parameter");
}

//  Missing parameters: Check semantics (always an error) and partial
//  evaluation (unknowns absorbed like errors).
static void
test_missing (void **state)
{
    static const struct { const char *ctx; bool partial; int want; const char *missing; } cases [] = {
        {"{\"x\": 10, \"y\": 5}", false, OK1, NULL},
        {"{\"x\": 101, \"y\": 51}", false, OK0, NULL},
        {"{\"x\": 10}", false, MIS, "[\"y\"]"},
        {"{\"y\": 10}", false, MIS, "[\"x\"]"},
        {"{}", false, MIS, "[\"x\", \"y\"]"},
        {NULL, false, MIS, "[\"x\", \"y\"]"},
        {"{\"x\": \"bad\"}", false, TYP, NULL},
        {"{\"x\": 10}", true, OK1, "[\"y\"]"},
        {"{\"y\": 10}", true, OK1, "[\"x\"]"},
        {"{\"x\": 101}", true, MIS, "[\"y\"]"},
        {"{}", true, MIS, "[\"x\", \"y\"]"},
        {"{\"x\": 101, \"y\": 51}", true, OK0, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        char err [256] = "";
        json_t *missing = NULL;
        int rc = s_run ("x < 100 || y < 50", "x:int, y:int", cases [i].ctx, cases [i].partial, &missing, err, sizeof err);
        if (rc != cases [i].want)
            fail_msg ("case %zu: want %d got %d (%s)", i, cases [i].want, rc, err);
        if (cases [i].missing) {
            json_t *want = json_loads (cases [i].missing, 0, NULL);
            assert_non_null (missing);
            assert_true (json_equal (want, missing));
            json_decref (want);
        }
        else
            assert_null (missing);
        json_decref (missing);
        s_pass++;
    }
    //  absorbed by && and comprehensions too; an error still wins over nothing
    char err [128];
    json_t *missing = NULL;
    assert_int_equal (s_run ("x > 1 && y > 1", "x:int, y:int", "{\"x\": 0}", true, &missing, err, sizeof err), OK0);
    json_decref (missing);
    assert_int_equal (s_run ("[1, 2].exists(i, i == y) || x == 1", "x:int, y:int", "{\"x\": 1}", true, NULL, err, sizeof err), OK1);
    assert_int_equal (s_run ("1 / 0 == 1 || y == 1", "y:int", "{}", true, NULL, err, sizeof err), MIS);
    assert_int_equal (s_run ("1 / 0 == 1 && y == 1", "y:int", "{}", true, NULL, err, sizeof err), MIS);
    assert_int_equal (s_run ("(y == 1 ? true : true)", "y:int", "{}", true, NULL, err, sizeof err), MIS);
    assert_int_equal (s_run ("x == 1", "x:int", NULL, false, NULL, err, sizeof err), MIS);
    assert_non_null (strstr (err, "x"));
}

//  Every condition in the OpenFGA language test data (DSL transformer
//  cases); want is 0 (compiles) or the compile error expected.
static const s_case_t s_language_conditions [] = {
    {"val <= 10", "val:int", NULL, 0},
    {"other <= 10", "other:int", NULL, 0},
    {"another <= 10", "another:int", NULL, 0},
    {"user_ip.in_cidr(cidr)", "cidr:string, user_ip:ipaddress", NULL, 0},
    {"collaborator_count <= collaborator_limit", "collaborator_count:int, collaborator_limit:int", NULL, 0},
    {"page_history_days_count <= page_history_days_limit", "page_history_days_count:int, page_history_days_limit:int", NULL, 0},
    {"row_sync_count <= row_sync_limit", "row_sync_count:int, row_sync_limit:int", NULL, 0},
    {"(current_timestamp < grant_timestamp + grant_duration) && user_ip.in_cidr(cidr)", "cidr:string, current_timestamp:timestamp, grant_duration:duration, grant_timestamp:timestamp, user_ip:ipaddress", NULL, 0},
    {"document_name == \"hello\"", "document_name:string", NULL, 0},
    {"version_count < 100", "version_count:int", NULL, 0},
    //  a transformer (syntax-only) case: OpenFGA rejects this model, as the
    //  expression names an undeclared parameter
    {"document_attributes[\"state\"] in allowed_states", "allowed_states:list<string>, tags:map<string>", NULL, TYP},
    {"document_attributes[\"status\"] in allowed_statuses", "allowed_statuses:list<string>, document_attributes:map<string>", NULL, 0},
    {"_double != 0.0 && _double > 0.0", "_double:double", NULL, 0},
    {"_duration != null && _duration != duration(\"0s\") && _duration > duration(\"0s\")", "_duration:duration", NULL, 0},
    {"_int != 0 && _int > 0", "_int:int", NULL, 0},
    {"_ipaddress != null &&  _ipaddress != ipaddress(\"192.0.0.1\")", "_ipaddress:ipaddress", NULL, 0},
    {"\"1\" in _liststring && _liststring[0] != \"\" && _liststring[0] > \"\" && _liststring.exists(x, x > \"\") && _liststring.exists_one(x, x > \"\") && _liststring.all(x, x > \"\")", "_liststring:list<string>", NULL, 0},
    {"\"key\" in _mapstring && _mapstring[\"key\"] != \"\"  && _mapstring[\"key\"] > \"\"", "_mapstring:map<string>", NULL, 0},
    {"_string != \"\" && _string.startsWith(\"1\") && _string.endsWith(\"1\") && _string.contains(\"1\") && _string.matches(\"[0-9]\")", "_string:string", NULL, 0},
    {"_timestamp != null && _timestamp != timestamp(\"2019-01-01T00:00:00Z\") && _timestamp > timestamp(\"2019-01-01T00:00:00Z\")", "_timestamp:timestamp", NULL, 0},
    {"_uint != 0u && _uint > 0u", "_uint:uint", NULL, 0},
    {"current_time < grant_time + grant_duration", "current_time:timestamp, grant_duration:duration, grant_time:timestamp", NULL, 0},
    {"transaction_amount <= transaction_limit || transaction_amount <= new_transaction_limit_approved", "new_transaction_limit_approved:double, transaction_amount:double, transaction_limit:double", NULL, 0},
    {"x<100", "x:int", NULL, 0},
    {"x==\"{}\"", "x:string", NULL, 0},
};

//  Compile every language condition.
static void
test_language_conditions (void **state)
{
    for (size_t i = 0; i < sizeof s_language_conditions / sizeof s_language_conditions [0]; i++) {
        json_t *p = s_params (s_language_conditions [i].params);
        authz_cel_t *cel = NULL;
        char err [256] = "";
        int rc = authz_cel_compile (&cel, s_language_conditions [i].expr, p, err, sizeof err);
        if (rc != s_language_conditions [i].want)
            fail_msg ("%s: %d %s", s_language_conditions [i].expr, rc, err);
        authz_cel_destroy (&cel);
        json_decref (p);
        s_pass++;
    }
}

//  The abac conformance file: every condition compiles; every check
//  assertion whose answer rests on one conditioned tuple of a direct
//  relation gets that answer (errorCode 2000: a negative code).
static void
test_abac_conformance (void **state)
{
    const char *dir = getenv ("SANCTUM_CONFORMANCE_DIR");
    char path [512];
    snprintf (path, sizeof path, "%s/abac_tests.json", dir? dir: "../shared/conformance/openfga");
    json_error_t je;
    json_t *root = json_load_file (path, 0, &je);
    if (!root) {
        printf ("abac conformance data not found at %s: skipped\n", path);
        skip ();
    }
    int compiled = 0, checked = 0;
    size_t ti, si, ai;
    json_t *test, *stage, *a;
    json_array_foreach (json_object_get (root, "tests"), ti, test)
    json_array_foreach (json_object_get (test, "stages"), si, stage) {
        json_t *model = json_object_get (stage, "model_json");
        json_t *conds = json_object_get (model, "conditions");
        json_t *compiled_by_name = json_object ();
        const char *name;
        json_t *c;
        json_object_foreach (conds, name, c) {
            authz_cel_t *cel = NULL;
            char err [256] = "";
            int rc = authz_cel_compile (&cel, json_string_value (json_object_get (c, "expression")),
                                        json_object_get (c, "parameters"), err, sizeof err);
            if (rc)
                fail_msg ("%s: %s: %d %s", json_string_value (json_object_get (test, "name")), name, rc, err);
            json_object_set_new (compiled_by_name, name, json_integer ((json_int_t) (intptr_t) cel));
            compiled++;
        }
        json_array_foreach (json_object_get (stage, "checkAssertions"), ai, a) {
            json_t *tk = json_object_get (a, "tuple");
            if (json_array_size (json_object_get (a, "contextualTuples")))
                continue;
            //  the relation must be a plain direct one ("this")
            const char *obj = json_string_value (json_object_get (tk, "object"));
            const char *rel = json_string_value (json_object_get (tk, "relation"));
            const char *user = json_string_value (json_object_get (tk, "user"));
            size_t tl = strcspn (obj, ":"), di;
            json_t *td, *def = NULL;
            json_array_foreach (json_object_get (model, "type_definitions"), di, td)
                if (strlen (json_string_value (json_object_get (td, "type"))) == tl
                &&  !strncmp (json_string_value (json_object_get (td, "type")), obj, tl))
                    def = json_object_get (json_object_get (td, "relations"), rel);
            if (!def || json_object_size (def) != 1 || !json_object_get (def, "this"))
                continue;
            json_t *only = NULL, *tp;
            size_t count = 0, k;
            json_array_foreach (json_object_get (stage, "tuples"), k, tp)
                if (!strcmp (json_string_value (json_object_get (tp, "object")), obj)
                &&  !strcmp (json_string_value (json_object_get (tp, "relation")), rel)
                &&  !strcmp (json_string_value (json_object_get (tp, "user")), user)) {
                    only = tp;
                    count++;
                }
            json_t *cond = json_object_get (only, "condition");
            if (count != 1 || !cond)
                continue;
            authz_cel_t *cel = (authz_cel_t *) (intptr_t) json_integer_value (
                json_object_get (compiled_by_name, json_string_value (json_object_get (cond, "name"))));
            assert_non_null (cel);
            //  request context, then the tuple's context winning
            json_t *ctx = json_object ();
            if (json_is_object (json_object_get (a, "context")))
                json_object_update (ctx, json_object_get (a, "context"));
            if (json_is_object (json_object_get (cond, "context")))
                json_object_update (ctx, json_object_get (cond, "context"));
            char err [256] = "";
            int rc = authz_cel_eval (cel, ctx, NULL, err, sizeof err);
            json_t *exp = json_object_get (a, "expectation");
            bool ok = exp? rc == (json_is_true (exp)? 1: 0): rc < 0;
            if (!ok)
                fail_msg ("%s: %s: got %d (%s)", json_string_value (json_object_get (test, "name")),
                          authz_cel_expression (cel), rc, err);
            json_decref (ctx);
            checked++;
        }
        json_object_foreach (compiled_by_name, name, c) {
            authz_cel_t *cel = (authz_cel_t *) (intptr_t) json_integer_value (c);
            authz_cel_destroy (&cel);
        }
        json_decref (compiled_by_name);
    }
    json_decref (root);
    printf ("abac conformance: %d conditions compiled, %d direct check assertions agreed\n", compiled, checked);
    assert_true (compiled >= 20);
    assert_true (checked >= 20);
    s_pass += compiled + checked;
}

//  The conditions of the abac data that sit behind indirect relations,
//  with their tuple contexts merged in as the engine will.
static void
test_abac_indirect (void **state)
{
    static const s_case_t cases [] = {
        {"ts < timestamp(\"2023-10-11T10:00:00.000Z\")", "ts:timestamp", NULL, MIS},
        {"ts < timestamp(\"2023-10-11T10:00:00.000Z\")", "ts:timestamp", "{\"ts\": \"2023-10-11T09:00:00.000Z\"}", OK1},
        {"ts < timestamp(\"2023-10-11T10:00:00.000Z\")", "ts:timestamp", "{\"ts\": \"2023-10-11T10:00:00.000Z\"}", OK0},
        {"ts < timestamp(\"2023-10-11T10:00:00.000Z\")", "ts:timestamp", "{\"ts\": \"2023-10-11T11:00:00.000Z\"}", OK0},
        {"ts < timestamp(\"2023-10-11T10:00:00.000Z\")", "ts:timestamp", "{\"ts\": \"2023-10-11T11:00.000Z\"}", TYP},
        {"user_ip.in_cidr(cidr)", "user_ip:ipaddress, cidr:string", "{\"cidr\": \"192.168.0.0/24\"}", MIS},
        {"y < 50", "y:int", "{\"x\": 10, \"y\": 5}", OK1},
        {"x == 10", "x:int", "{\"y\": 10}", MIS},
        {"s == \"hello\"", "s:string", "{\"s\": \"foo\"}", OK0},
        {"s == \"hello\"", "s:string", "{\"x\": 10}", MIS},
        {"x > 200", "x:int", "{\"x\": 201}", OK1},
    };
    S_TABLE (cases);
}

//  A string of n copies of unit between head and tail (caller frees).
static char *
s_repeat (const char *head, const char *unit, size_t n, const char *tail)
{
    size_t hl = strlen (head), ul = strlen (unit), tl = strlen (tail);
    char *s = malloc (hl + ul * n + tl + 1);
    assert_non_null (s);
    memcpy (s, head, hl);
    for (size_t i = 0; i < n; i++)
        memcpy (s + hl + i * ul, unit, ul);
    memcpy (s + hl + ul * n, tail, tl + 1);
    return s;
}

//  Run expr (owned, freed here) and expect want.
static void
s_expect_owned (char *expr, const char *params, const char *ctx, int want)
{
    char err [256] = "";
    int rc = s_run (expr, params, ctx, false, NULL, err, sizeof err);
    if (rc != want)
        fail_msg ("%.60s...: want %d got %d (%s)", expr, want, rc, err);
    free (expr);
    s_pass++;
}

//  Oversized, over-deep and over-costly input gives errors, never a crash.
static void
test_limits (void **state)
{
    //  source size and nesting
    s_expect_owned (s_repeat ("", "1 + ", 25000, "1 == 2"), NULL, NULL, LIM);          //  100 KB
    s_expect_owned (s_repeat ("", "(", 10000, "true"), NULL, NULL, LIM);
    {
        char *open = s_repeat ("", "(", 4000, "true");
        char *expr = s_repeat (open, ")", 4000, "");
        free (open);
        s_expect_owned (expr, NULL, NULL, LIM);
    }
    s_expect_owned (s_repeat ("", "[", 4000, ""), NULL, NULL, LIM);
    s_expect_owned (s_repeat ("", "1 + ", 1500, "1 == 2"), NULL, NULL, LIM);
    s_expect_owned (s_repeat ("m", ".a", 2000, " == 1"), "m:map<any>", NULL, LIM);
    s_expect_owned (s_repeat ("", "!", 4000, "true"), NULL, NULL, OK1);
    s_expect_owned (s_repeat ("", "-", 4001, "1 == -1"), NULL, NULL, OK1);
    s_expect_owned (s_repeat ("", "x == 1 || ", 700, "true"), "x:int", "{\"x\": 0}", OK1);
    s_expect_owned (s_repeat ("", "[1].all(x, ", 150, "true"), NULL, NULL, LIM);
    {
        //  nesting within the limits works
        char *open = s_repeat ("", "(", 50, "true");
        s_expect_owned (s_repeat (open, ")", 50, ""), NULL, NULL, OK1);
        free (open);
    }
    //  a large context list and deep context nesting
    char *big = s_repeat ("{\"l\": [", "1,", 20000, "1]}");
    s_expect_owned (strdup ("size(l) > 0"), "l:list<int>", big, LIM);
    s_expect_owned (strdup ("size(l) > 0"), "l:any", big, LIM);
    free (big);
    char *deep_open = s_repeat ("{\"a\": ", "[", 40, "1");
    char *deep = s_repeat (deep_open, "]", 40, "}");
    free (deep_open);
    s_expect_owned (strdup ("a != null"), "a:any", deep, LIM);
    free (deep);
    //  evaluation cost: a quadratic comprehension over a modest list
    char *mid = s_repeat ("{\"l\": [", "1,", 4999, "1], \"s\": \"abc\"}");
    s_expect_owned (strdup ("l.all(x, l.all(y, y == x))"), "l:list<int>, s:string", mid, LIM);
    s_expect_owned (strdup ("l.all(x, l.all(y, true)) || true"), "l:list<int>, s:string", mid, LIM);
    s_expect_owned (strdup ("true || l.all(x, l.all(y, true))"), "l:list<int>, s:string", mid, OK1);
    s_expect_owned (strdup ("l.map(x, l + l).size() > 0"), "l:list<int>, s:string", mid, LIM);
    s_expect_owned (strdup ("l.all(x, x == 1) && l.exists(x, x == 1) && size(l.filter(x, x == 1)) == 5000"),
                    "l:list<int>, s:string", mid, OK1);
    free (mid);
    //  long regular expressions and long strings
    s_expect_owned (s_repeat ("'a'.matches('", "a", 2000, "')"), NULL, NULL, EVL);
    char *long_s = s_repeat ("{\"s\": \"", "a", 100000, "\"}");
    s_expect_owned (strdup ("s.contains('aaa') && size(s) == 100000 && s.startsWith('a')"), "s:string", long_s, OK1);
    //  matches() scans at most AUTHZ_CEL_MAX_REGEX_SUBJECT bytes: the POSIX
    //  matcher is quadratic on patterns such as (a|aa)*c
    s_expect_owned (strdup ("s.matches('(a|aa)*c')"), "s:string", long_s, LIM);
    s_expect_owned (strdup ("s.matches('(a|aa)*c') || true"), "s:string", long_s, LIM);
    free (long_s);
    char *edge = s_repeat ("{\"s\": \"", "a", AUTHZ_CEL_MAX_REGEX_SUBJECT, "\"}");
    s_expect_owned (strdup ("s.matches('^a+$') && !s.matches('^a*c')"), "s:string", edge, OK1);
    //  an unanchored search is charged as quadratic, as glibc's is: over
    //  the per-evaluation cost on the longest subject, not on a shorter one
    s_expect_owned (strdup ("!s.matches('(a|aa)*c')"), "s:string", edge, LIM);
    free (edge);
    char *mid_s = s_repeat ("{\"s\": \"", "a", 1000, "\"}");
    s_expect_owned (strdup ("!s.matches('(a|aa)*c') && s.matches('^a+$')"), "s:string", mid_s, OK1);
    free (mid_s);
    //  too many parameters
    json_t *many = json_object ();
    for (int i = 0; i < AUTHZ_CEL_MAX_PARAMS + 1; i++) {
        char name [16];
        snprintf (name, sizeof name, "p%d", i);
        json_object_set_new (many, name, json_pack ("{s:s}", "type_name", "TYPE_NAME_INT"));
    }
    authz_cel_t *cel = NULL;
    char err [128];
    assert_int_equal (authz_cel_compile (&cel, "true", many, err, sizeof err), LIM);
    json_decref (many);
}

typedef struct {
    const authz_cel_t *cel;
    int id;
    int failures;
} s_worker_t;

//  Evaluate the shared condition many times with this thread's context.
static void *
s_worker (void *arg)
{
    s_worker_t *w = arg;
    for (int i = 0; i < 500; i++) {
        json_t *ctx = json_pack ("{s:[s,s], s:s}", "l", "a1", "b2", "s", (w->id + i) % 2? "a1": "zz");
        char err [128];
        int rc = authz_cel_eval (w->cel, ctx, NULL, err, sizeof err);
        if (rc != ((w->id + i) % 2? 1: 0))
            w->failures++;
        json_decref (ctx);
    }
    return NULL;
}

//  One compiled condition, evaluated by several threads at once.
static void
test_threads (void **state)
{
    json_t *p = s_params ("l:list<string>, s:string");
    authz_cel_t *cel = NULL;
    char err [128];
    assert_int_equal (authz_cel_compile (&cel, "l.exists(x, x == s) && s.matches('^a[0-9]$')", p, err, sizeof err), 0);
    pthread_t th [8];
    s_worker_t w [8];
    for (int i = 0; i < 8; i++) {
        w [i] = (s_worker_t) {cel, i, 0};
        assert_int_equal (pthread_create (&th [i], NULL, s_worker, &w [i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join (th [i], NULL);
        assert_int_equal (w [i].failures, 0);
    }
    authz_cel_destroy (&cel);
    json_decref (p);
    s_pass++;
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_arithmetic),
        cmocka_unit_test (test_comparison),
        cmocka_unit_test (test_logic),
        cmocka_unit_test (test_strings),
        cmocka_unit_test (test_conversions),
        cmocka_unit_test (test_time),
        cmocka_unit_test (test_ipaddress),
        cmocka_unit_test (test_access),
        cmocka_unit_test (test_macros),
        cmocka_unit_test (test_context),
        cmocka_unit_test (test_compile_errors),
        cmocka_unit_test (test_missing),
        cmocka_unit_test (test_language_conditions),
        cmocka_unit_test (test_abac_conformance),
        cmocka_unit_test (test_abac_indirect),
        cmocka_unit_test (test_limits),
        cmocka_unit_test (test_threads),
    };
    int failed = cmocka_run_group_tests (tests, NULL, NULL);
    printf ("cel: %d passed, %d failed\n", s_pass, s_fail + failed);
    return failed || s_fail? 1: 0;
}
