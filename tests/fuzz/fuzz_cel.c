/*  fuzz_cel.c — libFuzzer target for the CEL subset of OpenFGA conditions.

    Input layout (text):
        line 1     parameter declarations "name:TYPE" separated by spaces or
                   commas (TYPE: int uint double bool string timestamp
                   duration ipaddress any list<T> map<T>, anything else is
                   passed on as TYPE_NAME_<WORD> for the compiler to refuse);
                   an empty first line declares the fixed set x:int s:string
                   l:list<int> m:map<string> t:timestamp d:duration
                   ip:ipaddress b:bool u:uint f:double a:any
        then       the expression, up to a line "---" or the end
        after ---  a JSON context (ignored unless it is an object)
    The expression is compiled; when it compiles it is evaluated (plainly
    and partially) against the input's context and fixed contexts built
    from the declarations: typical values, edge values, values of the wrong
    type, and none. Any input: no crash, leak or sanitizer report, and
    every result is 1, 0 or an AUTHZ_CEL_E* code.
*/
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authz_cel.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define S_MAX_TYPE_TEXT  8     /* generic nesting the declaration parser follows */
#define S_FIXED_PARAMS   "x:int s:string l:list<int> m:map<string> t:timestamp " \
                         "d:duration ip:ipaddress b:bool u:uint f:double a:any"

typedef enum { S_TYPICAL, S_EDGE, S_WRONG } s_flavour_t;

/*  Parse one TYPE at *p (advanced past it) into {"type_name", "generic_types"}. */
static json_t *
s_type (const char **p, int depth)
{
    static const char *names [][2] = {
        {"int", "INT"}, {"uint", "UINT"}, {"double", "DOUBLE"}, {"bool", "BOOL"},
        {"string", "STRING"}, {"timestamp", "TIMESTAMP"}, {"duration", "DURATION"},
        {"ipaddress", "IPADDRESS"}, {"any", "ANY"}, {"list", "LIST"}, {"map", "MAP"}
    };
    char word [32], name [48];
    size_t n = 0;
    while (isalnum ((unsigned char) **p) || **p == '_') {
        if (n < sizeof word - 1)
            word [n++] = **p;
        (*p)++;
    }
    word [n] = '\0';
    const char *upper = NULL;
    for (size_t i = 0; i < sizeof names / sizeof names [0]; i++)
        if (!strcmp (word, names [i][0]))
            upper = names [i][1];
    snprintf (name, sizeof name, "TYPE_NAME_%s", upper ? upper : word);
    json_t *t = json_pack ("{ss}", "type_name", name);
    if (t && **p == '<' && depth < S_MAX_TYPE_TEXT) {
        (*p)++;
        json_t *g = json_array ();
        json_object_set_new (t, "generic_types", g);
        do {
            json_array_append_new (g, s_type (p, depth + 1));
        } while (**p == ',' && (*p)++);
        if (**p == '>')
            (*p)++;
    }
    return t;
}

/*  The declarations line (NUL-terminated) as a CEL parameters object. */
static json_t *
s_params (const char *line)
{
    json_t *params = json_object ();
    const char *p = line;
    while (params && *p) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *name = p;
        while (*p && *p != ':' && *p != ' ' && *p != ',')
            p++;
        if (*p != ':') {
            if (p == name && *p)
                p++;
            continue;
        }
        char key [64];
        snprintf (key, sizeof key, "%.*s", (int) (p - name), name);
        p++;
        json_object_set_new (params, key, s_type (&p, 0));
    }
    return params;
}

/*  A context value of the given parameter type, in one flavour. */
static json_t *
s_value (json_t *type, s_flavour_t flavour, int depth)
{
    const char *tn = json_string_value (json_object_get (type, "type_name"));
    json_t *g = json_array_get (json_object_get (type, "generic_types"), 0);
    bool edge = flavour == S_EDGE;
    if (flavour == S_WRONG)
        return json_pack ("{s[i]}", "zz", depth);
    if (!tn || depth > S_MAX_TYPE_TEXT)
        return json_null ();
    if (!strcmp (tn, "TYPE_NAME_INT"))
        return json_integer (edge ? INT64_MIN : 3);
    if (!strcmp (tn, "TYPE_NAME_UINT"))
        return edge ? json_string ("18446744073709551615") : json_integer (7);
    if (!strcmp (tn, "TYPE_NAME_DOUBLE"))
        return json_real (edge ? -0.0 : 1.5);
    if (!strcmp (tn, "TYPE_NAME_BOOL"))
        return json_boolean (!edge);
    if (!strcmp (tn, "TYPE_NAME_STRING"))
        return json_string (edge ? "" : "abc\xc3\xa9");
    if (!strcmp (tn, "TYPE_NAME_TIMESTAMP"))
        return json_string (edge ? "9999-12-31T23:59:59.999999999Z" : "2023-10-11T10:00:00Z");
    if (!strcmp (tn, "TYPE_NAME_DURATION"))
        return json_string (edge ? "-87600h0.000000001s" : "1h30m");
    if (!strcmp (tn, "TYPE_NAME_IPADDRESS"))
        return json_string (edge ? "::ffff:10.0.0.1" : "192.168.0.1");
    if (!strcmp (tn, "TYPE_NAME_LIST"))
        return edge ? json_array ()
                    : json_pack ("[oo]", s_value (g, flavour, depth + 1), s_value (g, flavour, depth + 1));
    if (!strcmp (tn, "TYPE_NAME_MAP"))
        return edge ? json_object ()
                    : json_pack ("{soso}", "a", s_value (g, flavour, depth + 1),
                                 "b", s_value (g, flavour, depth + 1));
    return edge ? json_pack ("[{}]") : json_integer (1);
}

/*  A context giving every declared parameter a value of one flavour. */
static json_t *
s_context (json_t *params, s_flavour_t flavour)
{
    json_t *ctx = json_object ();
    const char *name;
    json_t *type;
    json_object_foreach (params, name, type)
        json_object_set_new (ctx, name, s_value (type, flavour, 0));
    return ctx;
}

/*  Evaluate plainly and partially with context; the results must be in range. */
static void
s_eval (const authz_cel_t *cel, json_t *context)
{
    char err [256];
    for (int partial = 0; partial < 2; partial++) {
        json_t *missing = NULL;
        int rc = partial ? authz_cel_eval_partial (cel, context, &missing, err, sizeof err)
                         : authz_cel_eval (cel, context, &missing, err, sizeof err);
        if (rc > 1 || (rc < 0 && (rc > AUTHZ_CEL_ESYNTAX || rc < AUTHZ_CEL_ENOTBOOL)))
            abort ();
        if (rc == AUTHZ_CEL_EMISSING && !json_is_array (missing))
            abort ();
        json_decref (missing);
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    char *text = malloc (size + 1);
    if (!text)
        return 0;
    memcpy (text, data, size);
    text [size] = '\0';
    char *expr = strchr (text, '\n');
    if (expr)
        *expr++ = '\0';
    else
        expr = text + size;
    char *sep = strstr (expr, "\n---\n");
    json_t *given = NULL;
    if (sep) {
        *sep = '\0';
        given = json_loads (sep + 5, JSON_REJECT_DUPLICATES, NULL);
    }
    json_t *params = s_params (*text ? text : S_FIXED_PARAMS);
    authz_cel_t *cel = NULL;
    char err [256];
    int rc = authz_cel_compile (&cel, expr, params, err, sizeof err);
    if (rc > 0 || (rc == 0) != (cel != NULL))
        abort ();
    if (cel) {
        if (!authz_cel_expression (cel))
            abort ();
        if (json_is_object (given))
            s_eval (cel, given);
        for (s_flavour_t f = S_TYPICAL; f <= S_WRONG; f++) {
            json_t *ctx = s_context (params, f);
            s_eval (cel, ctx);
            json_decref (ctx);
        }
        s_eval (cel, NULL);
    }
    authz_cel_destroy (&cel);
    json_decref (params);
    json_decref (given);
    free (text);
    return 0;
}
