/*  authz_dsl.c — OpenFGA modeling language to API JSON. See authz_dsl.h.

    A recursive-descent parser working straight on the text (no separate
    token list): the cursor skips blanks and comment lines between
    statements, and each statement is read with small scanners
    (identifier, whitespace run, keyword). Positions are byte offsets; an
    error converts its offset to a 0-based line and column.
*/
#include "authz_dsl.h"
#include "bus_error.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *s;          /* the text */
    size_t len;             /* its length */
    size_t pos;             /* cursor */
    json_t *errors;         /* array of error objects */
    int depth;              /* parenthesis nesting */
    int rc;                 /* first fatal error code (syntax/limit) */
    bool module;            /* a module file (`module name` header) */
} s_parser_t;

/*  What a relation definition collects while its expression is read. */
typedef struct {
    json_t *direct;         /* directly_related_user_types, or NULL */
} s_relctx_t;

/*  The ANTLR spelling of the identifier-like tokens, used in messages. */
#define S_IDENTS "IDENTIFIER, 'module', 'model', 'schema', 'extend', 'type', 'relation', EXTENDED_IDENTIFIER"

/*  Character classes of the lexer. */
static bool s_is_ws (char c)        { return c == ' ' || c == '\t' || c == '\f'; }
static bool s_is_nl (char c)        { return c == '\n' || c == '\r'; }
static bool s_is_id_start (char c)  { return isalpha ((unsigned char) c) || c == '_'; }
static bool s_is_id_char (char c)
{
    return isalnum ((unsigned char) c) || c == '_' || c == '-' || c == '/' || c == '.';
}

/*  Character at offset at, or NUL past the end. */
static char
s_at (const s_parser_t *p, size_t at)
{
    return at < p->len ? p->s [at] : '\0';
}

/*  Length of the identifier starting at at (0 if none). */
static size_t
s_ident_len (const s_parser_t *p, size_t at)
{
    if (!s_is_id_start (s_at (p, at)))
        return 0;
    size_t n = 1;
    while (s_is_id_char (s_at (p, at + n)))
        n++;
    return n;
}

/*  True if the identifier at at is exactly word. */
static bool
s_word_is (const s_parser_t *p, size_t at, const char *word)
{
    size_t n = strlen (word);
    return s_ident_len (p, at) == n && memcmp (p->s + at, word, n) == 0;
}

/*  Length of the whitespace run at at. */
static size_t
s_ws_len (const s_parser_t *p, size_t at)
{
    size_t n = 0;
    while (s_is_ws (s_at (p, at + n)))
        n++;
    return n;
}

/*  Length of the lexer's NEWLINE token at at: newlines with the spaces
    around and between them (0 if at is not on one). */
static size_t
s_nl_len (const s_parser_t *p, size_t at)
{
    size_t n = s_ws_len (p, at);
    if (!s_is_nl (s_at (p, at + n)))
        return 0;
    while (s_is_nl (s_at (p, at + n)) || s_is_ws (s_at (p, at + n)))
        n++;
    return n;
}

/*  Length of the token at at, as the messages name it. */
static size_t
s_token_len (const s_parser_t *p, size_t at)
{
    if (at >= p->len)
        return 0;
    if (s_is_nl (p->s [at]))
        return s_nl_len (p, at);
    if (s_is_ws (p->s [at]))
        return s_ws_len (p, at);
    if (s_word_is (p, at, "but") && strncmp (p->s + at, "but not", 7) == 0)
        return 7;
    size_t n = s_ident_len (p, at);
    if (n)
        return n;
    if (isdigit ((unsigned char) p->s [at])) {
        while (isdigit ((unsigned char) s_at (p, at + n)) || s_at (p, at + n) == '.')
            n++;
        return n;
    }
    return 1;
}

/*  Offset of the first byte of text (len bytes) that is not part of a
    well-formed UTF-8 sequence (overlong forms, surrogates and code points
    over U+10FFFF are not well-formed), or len when there is none. */
static size_t
s_utf8_invalid (const char *text, size_t len)
{
    const unsigned char *s = (const unsigned char *) text;
    size_t i = 0;
    while (i < len) {
        unsigned c = s [i];
        size_t n = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
                 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (n == 0 || i + n > len)
            return i;
        unsigned lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
        unsigned hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
        for (size_t k = 1; k < n; k++, lo = 0x80, hi = 0xBF)
            if (s [i + k] < lo || s [i + k] > hi)
                return i;
        i += n;
    }
    return len;
}

/*  A JSON string of the n bytes at text. Messages quote input cut at a
    buffer's end, maybe inside a UTF-8 sequence: such bytes (every byte
    from the first bad one on that is not ASCII) become '?' rather than
    losing the whole error. */
static json_t *
s_json_text (const char *text, size_t n)
{
    size_t bad = s_utf8_invalid (text, n);
    if (bad == n)
        return json_stringn (text, n);
    char *copy = malloc (n ? n : 1);
    if (!copy)
        return NULL;
    memcpy (copy, text, n);
    for (size_t i = bad; i < n; i++)
        if ((unsigned char) copy [i] >= 0x80)
            copy [i] = '?';
    json_t *j = json_stringn (copy, n);
    free (copy);
    return j;
}

/*  Append one error: msg (printf format), at the token at offset at of
    length n, with symbol text (NULL = the token's text) and errorType
    (NULL = none). Newlines in the message's quoted token are escaped as
    ANTLR does. Returns BUS_EINVAL. */
static int
s_error (s_parser_t *p, size_t at, size_t n, const char *symbol, const char *error_type,
         const char *fmt, ...)
{
    char msg [512];
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (msg, sizeof msg, fmt, ap);
    va_end (ap);
    size_t line = 0, line_start = 0;
    for (size_t i = 0; i < at && i < p->len; i++)
        if (p->s [i] == '\n')
            line++, line_start = i + 1;
    json_t *meta = json_object ();
    json_object_set_new (meta, "symbol", s_json_text (symbol ? symbol : p->s + at,
                                                      symbol ? strlen (symbol) : at < p->len ? n : 0));
    if (error_type)
        json_object_set_new (meta, "errorType", json_string (error_type));
    json_t *e = json_pack ("{s:o, s:{s:I, s:I}, s:{s:I, s:I}, s:o}", "msg", s_json_text (msg, strlen (msg)),
                           "line", "start", (json_int_t) line, "end", (json_int_t) line,
                           "column", "start", (json_int_t) (at - line_start),
                                     "end", (json_int_t) (at - line_start + n),
                           "metadata", meta);
    if (e)
        json_array_append_new (p->errors, e);
    return BUS_EINVAL;
}

/*  Text of the token at at for a message: "<EOF>" at the end, newlines
    written as \n. */
static void
s_token_text (const s_parser_t *p, size_t at, char *buf, size_t size)
{
    if (at >= p->len) {
        snprintf (buf, size, "<EOF>");
        return;
    }
    size_t n = s_token_len (p, at), o = 0;
    for (size_t i = 0; i < n && o + 3 < size; i++) {
        char c = p->s [at + i];
        if (c == '\n' || c == '\r') {
            buf [o++] = '\\';
            buf [o++] = c == '\n' ? 'n' : 'r';
        }
        else
            buf [o++] = c;
    }
    buf [o] = '\0';
}

/*  A syntax error on the token at at: "<kind> input '<tok>' expecting
    <what>" (what NULL = "no viable alternative" form). Records the error,
    marks the parse failed and returns BUS_EINVAL. */
static int
s_syntax (s_parser_t *p, size_t at, const char *kind, const char *what)
{
    char tok [256];
    s_token_text (p, at, tok, sizeof tok);
    size_t n = at < p->len ? s_token_len (p, at) : 0;
    const char *sym = at >= p->len ? "<EOF>" : NULL;
    if (what)
        s_error (p, at, n, sym, NULL, "%s input '%s' expecting %s", kind, tok, what);
    else
        s_error (p, at, n, sym, NULL, "%s", kind);
    if (p->rc == 0)
        p->rc = BUS_EINVAL;
    return BUS_EINVAL;
}

/*  Skip blank lines and comment lines (first non-blank character '#').
    Leaves the cursor on the first character of the next statement (after
    its indentation) or at the end. Returns the offset where the skipped
    NEWLINE run began (for "no viable alternative" messages). */
static size_t
s_skip_lines (s_parser_t *p)
{
    size_t begin = p->pos;
    for (;;) {
        size_t at = p->pos + s_ws_len (p, p->pos);
        if (s_at (p, at) == '#') {
            while (at < p->len && !s_is_nl (p->s [at]))
                at++;
        }
        if (s_is_nl (s_at (p, at))) {
            p->pos = at + 1;
            continue;
        }
        p->pos = at;
        return begin;
    }
}

/*  Require the end of a line (optional trailing spaces and a `# comment`
    after a space, then a newline or the end of text). Returns 0 or a
    syntax error. */
static int
s_expect_eol (s_parser_t *p)
{
    size_t ws = s_ws_len (p, p->pos), at = p->pos + ws;
    if (ws && s_at (p, at) == '#')         /* trailing comment */
        while (at < p->len && !s_is_nl (p->s [at]))
            at++;
    if (at >= p->len || s_is_nl (p->s [at])) {
        p->pos = at;
        return 0;
    }
    return s_syntax (p, p->pos, "mismatched", "{<EOF>, NEWLINE}");
}

/*  Read an (extended) identifier at the cursor into a new JSON string;
    NULL (and a syntax error naming what) if there is none. */
static json_t *
s_expect_ident (s_parser_t *p, const char *what)
{
    size_t n = s_ident_len (p, p->pos);
    if (n == 0) {
        s_syntax (p, p->pos, "mismatched", what);
        return NULL;
    }
    json_t *s = json_stringn (p->s + p->pos, n);
    p->pos += n;
    return s;
}

/*  Require at least one space at the cursor and skip the run. */
static int
s_expect_ws (s_parser_t *p, const char *what)
{
    size_t n = s_ws_len (p, p->pos);
    if (n == 0)
        return s_syntax (p, p->pos, "mismatched", what);
    p->pos += n;
    return 0;
}

/*  Skip spaces and, when newlines is true, newlines too. */
static void
s_skip (s_parser_t *p, bool newlines)
{
    while (s_is_ws (s_at (p, p->pos)) || (newlines && s_is_nl (s_at (p, p->pos))))
        p->pos++;
}

/*  One type restriction: type, type:*, type#relation, optional " with
    cond". Appends {type, wildcard|relation, condition} to rc->direct. */
static int
s_type_restriction (s_parser_t *p, s_relctx_t *rc, bool first)
{
    s_skip (p, true);
    if (s_ident_len (p, p->pos) == 0) {
        const char *exp = first && s_is_ws (s_at (p, p->pos - 1))
            ? "{" S_IDENTS ", NEWLINE}" : "{WHITESPACE, " S_IDENTS ", NEWLINE}";
        return s_syntax (p, p->pos, "extraneous", exp);
    }
    json_t *ref = json_object ();
    json_object_set_new (ref, "type", s_expect_ident (p, S_IDENTS));
    if (s_at (p, p->pos) == ':' && s_at (p, p->pos + 1) == '*') {
        json_object_set_new (ref, "wildcard", json_object ());
        p->pos += 2;
    }
    else
    if (s_at (p, p->pos) == '#') {
        p->pos++;
        json_t *rel = s_expect_ident (p, "{" S_IDENTS "}");
        if (!rel) {
            json_decref (ref);
            return BUS_EINVAL;
        }
        json_object_set_new (ref, "relation", rel);
    }
    size_t ws = s_ws_len (p, p->pos);
    if (ws && s_word_is (p, p->pos + ws, "with")) {
        p->pos += ws + 4;
        json_t *cond = s_expect_ws (p, "WHITESPACE") == 0 ? s_expect_ident (p, "IDENTIFIER") : NULL;
        if (!cond) {
            json_decref (ref);
            return BUS_EINVAL;
        }
        json_object_set_new (ref, "condition", cond);
    }
    json_array_append_new (rc->direct, ref);
    s_skip (p, true);
    char c = s_at (p, p->pos);
    if (c != ',' && c != ']')
        return s_syntax (p, p->pos, "mismatched", "{',', WHITESPACE, ']'}");
    return 0;
}

/*  A direct assignment [r, r, ...] at the cursor ('['): records the
    restrictions and returns {"this": {}}. */
static json_t *
s_direct (s_parser_t *p, s_relctx_t *rc)
{
    p->pos++;
    if (!rc->direct)
        rc->direct = json_array ();
    bool first = true;
    for (;;) {
        if (s_type_restriction (p, rc, first) != 0)
            return NULL;
        first = false;
        if (p->s [p->pos++] == ']')
            return json_pack ("{s:{}}", "this");
    }
}

/*  The operator word at at ("or", "and", "but not") or NULL. */
static const char *
s_operator (const s_parser_t *p, size_t at)
{
    if (s_word_is (p, at, "or"))
        return "or";
    if (s_word_is (p, at, "and"))
        return "and";
    if (s_word_is (p, at, "but") && s_token_len (p, at) == 7 && !s_is_id_char (s_at (p, at + 7)))
        return "but not";
    return NULL;
}

static json_t *s_rel_def (s_parser_t *p, s_relctx_t *rc, bool allow_direct, bool nested);

/*  One operand of a relation expression: a direct assignment (only where
    allow_direct), a parenthesised expression, `rel` or `rel from tupleset`. */
static json_t *
s_operand (s_parser_t *p, s_relctx_t *rc, bool allow_direct)
{
    char c = s_at (p, p->pos);
    const char *exp = allow_direct ? "{'[', '(', " S_IDENTS "}" : "{'(', " S_IDENTS "}";
    if (c == '[' && allow_direct)
        return s_direct (p, rc);
    if (c == '[') {
        s_syntax (p, p->pos, "extraneous", exp);
        return NULL;
    }
    if (c == '(') {
        if (++p->depth > AUTHZ_DSL_MAX_DEPTH) {
            s_error (p, p->pos, 1, "(", NULL, "parentheses nested deeper than %d", AUTHZ_DSL_MAX_DEPTH);
            p->rc = BUS_EDEPTH;
            return NULL;
        }
        p->pos++;
        s_skip (p, false);
        json_t *inner = s_rel_def (p, rc, allow_direct, true);
        if (!inner)
            return NULL;
        s_skip (p, false);
        if (s_at (p, p->pos) != ')') {
            json_decref (inner);
            s_syntax (p, p->pos, "extraneous", "{')', WHITESPACE}");
            return NULL;
        }
        p->pos++;
        p->depth--;
        return inner;
    }
    size_t n = s_ident_len (p, p->pos);
    if (n == 0 || s_operator (p, p->pos) || s_word_is (p, p->pos, "from")) {
        s_syntax (p, p->pos, "mismatched", exp);
        return NULL;
    }
    json_t *target = json_stringn (p->s + p->pos, n);
    p->pos += n;
    size_t ws = s_ws_len (p, p->pos);
    if (ws && s_word_is (p, p->pos + ws, "from")) {
        p->pos += ws + 4;
        json_t *tupleset = s_expect_ws (p, "WHITESPACE") == 0 ? s_expect_ident (p, "{" S_IDENTS "}") : NULL;
        if (!tupleset) {
            json_decref (target);
            return NULL;
        }
        return json_pack ("{s:{s:{s:o}, s:{s:o}}}", "tupleToUserset",
                          "tupleset", "relation", tupleset, "computedUserset", "relation", target);
    }
    return json_pack ("{s:{s:o}}", "computedUserset", "relation", target);
}

/*  A relation definition: an operand followed by operands joined with one
    kind of operator (any number of `or` or of `and`, or one `but not`).
    Stops before anything else; a different operator inside parentheses
    is an error here, at the top level the caller's end-of-line check
    reports it. Returns the userset or NULL. */
static json_t *
s_rel_def (s_parser_t *p, s_relctx_t *rc, bool allow_direct, bool nested)
{
    json_t *first = s_operand (p, rc, allow_direct);
    if (!first)
        return NULL;
    json_t *children = json_array ();
    json_array_append_new (children, first);
    const char *op = NULL;
    for (;;) {
        size_t ws = s_ws_len (p, p->pos);
        const char *next = ws ? s_operator (p, p->pos + ws) : NULL;
        if (!next)
            break;
        if ((op && strcmp (op, next) != 0) || (op && strcmp (op, "but not") == 0)) {
            if (nested) {
                s_syntax (p, p->pos + ws, "extraneous", "{')', WHITESPACE}");
                json_decref (children);
                return NULL;
            }
            break;
        }
        op = next;
        p->pos += ws + strlen (op);
        json_t *operand = s_expect_ws (p, "WHITESPACE") == 0 ? s_operand (p, rc, false) : NULL;
        if (!operand) {
            json_decref (children);
            return NULL;
        }
        json_array_append_new (children, operand);
    }
    json_t *out = NULL;
    if (!op) {
        out = json_incref (first);
    }
    else
    if (strcmp (op, "but not") == 0)
        out = json_pack ("{s:{s:O, s:O}}", "difference", "base", json_array_get (children, 0),
                         "subtract", json_array_get (children, 1));
    else
        out = json_pack ("{s:{s:O}}", strcmp (op, "or") == 0 ? "union" : "intersection",
                         "child", children);
    json_decref (children);
    return out;
}

/*  `define name: expr` at the cursor (on "define"): adds the relation and
    its metadata to the type. */
static int
s_relation (s_parser_t *p, json_t *type, json_t *relations, json_t *metadata)
{
    p->pos += 6;
    if (s_expect_ws (p, "WHITESPACE") != 0)
        return BUS_EINVAL;
    size_t name_at = p->pos;
    json_t *name = s_expect_ident (p, "{" S_IDENTS "}");
    if (!name)
        return BUS_EINVAL;
    size_t name_len = p->pos - name_at;
    int rc = 0;
    s_relctx_t ctx = { NULL };
    json_t *def = NULL;
    s_skip (p, false);
    if (s_at (p, p->pos) != ':') {
        char tok [256];
        s_token_text (p, p->pos, tok, sizeof tok);
        s_error (p, p->pos, s_token_len (p, p->pos), NULL, NULL, "missing ':' at '%s'", tok);
        p->rc = rc = BUS_EINVAL;
        goto done;
    }
    p->pos++;
    s_skip (p, false);
    def = s_rel_def (p, &ctx, true, false);
    if (!def || s_expect_eol (p) != 0) {
        rc = BUS_EINVAL;
        goto done;
    }
    const char *rel = json_string_value (name);
    if (json_object_get (relations, rel))
        s_error (p, name_at, name_len, rel, NULL, "'%s' is already defined in '%s'",
                 rel, json_string_value (json_object_get (type, "type")));
    if (json_object_size (relations) >= AUTHZ_DSL_MAX_RELATIONS) {
        s_error (p, name_at, name_len, rel, NULL, "more than %d relations in a type", AUTHZ_DSL_MAX_RELATIONS);
        p->rc = rc = BUS_ETOOBIG;
        goto done;
    }
    json_object_set (relations, rel, def);
    json_object_set_new (metadata, rel, json_pack ("{s:o}", "directly_related_user_types",
                                                   ctx.direct ? ctx.direct : json_array ()));
    ctx.direct = NULL;
done:
    json_decref (ctx.direct);
    json_decref (def);
    json_decref (name);
    return rc;
}

/*  `type name` with an optional `relations` block, at the cursor (on
    "type"). Appends the type definition to types. */
static int
s_type (s_parser_t *p, json_t *types)
{
    if (json_array_size (types) >= AUTHZ_DSL_MAX_TYPES) {
        s_error (p, p->pos, 4, "type", NULL, "more than %d types", AUTHZ_DSL_MAX_TYPES);
        return p->rc = BUS_ETOOBIG;
    }
    p->pos += 4;
    if (s_expect_ws (p, "WHITESPACE") != 0)
        return BUS_EINVAL;
    json_t *name = s_expect_ident (p, "{" S_IDENTS "}");
    if (!name || s_expect_eol (p) != 0) {
        json_decref (name);
        return BUS_EINVAL;
    }
    json_t *relations = json_object (), *metadata = json_object ();
    json_t *type = json_pack ("{s:o, s:o}", "type", name, "relations", relations);
    json_array_append_new (types, type);
    int rc = 0;
    size_t nl = s_skip_lines (p);
    if (s_word_is (p, p->pos, "relations")) {
        p->pos += 9;
        if ((rc = s_expect_eol (p)) != 0)
            goto done;
        nl = s_skip_lines (p);
        if (!s_word_is (p, p->pos, "define")) {
            rc = s_syntax (p, p->pos, "mismatched", "NEWLINE");
            goto done;
        }
        while (s_word_is (p, p->pos, "define")) {
            if ((rc = s_relation (p, type, relations, metadata)) != 0)
                goto done;
            nl = s_skip_lines (p);
        }
    }
    size_t n = s_ident_len (p, p->pos);
    if (p->pos < p->len && !s_word_is (p, p->pos, "type") && !s_word_is (p, p->pos, "condition")
    &&  !s_word_is (p, p->pos, "extend")) {
        /* "no viable alternative at input '\n  word'": the newline run
           before the word, then the word */
        char msg [300], tok [200];
        size_t from = nl;
        while (from < p->pos && !s_is_nl (p->s [from]))
            from++;
        size_t o = 0;
        for (size_t i = from; i < p->pos + (n ? n : 1) && o + 3 < sizeof tok; i++) {
            if (s_is_nl (p->s [i]))
                tok [o++] = '\\', tok [o++] = 'n';
            else
                tok [o++] = p->s [i];
        }
        tok [o] = '\0';
        snprintf (msg, sizeof msg, "no viable alternative at input '%s'", tok);
        rc = s_syntax (p, p->pos, msg, NULL);
    }
done:
    if (json_object_size (metadata))
        json_object_set_new (type, "metadata", json_pack ("{s:O}", "relations", metadata));
    else
        json_object_set_new (type, "metadata", json_null ());
    json_decref (metadata);
    return rc;
}

/*  A condition parameter type at the cursor: a scalar type name or
    map<T> / list<T>. Sets the parameter's type_name and generic_types. */
static const char *s_scalars [] = { "bool", "string", "int", "uint", "double",
                                    "duration", "timestamp", "ipaddress", NULL };

/*  True if a parameter type keyword (scalar, map or list) is at at. */
static bool
s_is_type_word (const s_parser_t *p, size_t at)
{
    for (int i = 0; s_scalars [i]; i++)
        if (s_word_is (p, at, s_scalars [i]))
            return true;
    return s_word_is (p, at, "map") || s_word_is (p, at, "list");
}

static int
s_param_type (s_parser_t *p, json_t *param)
{
    const char **scalars = s_scalars;
    bool container = s_word_is (p, p->pos, "map") || s_word_is (p, p->pos, "list");
    for (int i = 0; !container && scalars [i]; i++)
        if (s_word_is (p, p->pos, scalars [i]))
            goto scalar;
    return s_syntax (p, p->pos, "mismatched", container ? "CONDITION_PARAM_TYPE" : "{'map', 'list', CONDITION_PARAM_TYPE}");
scalar:
    ;
    char up [32] = "TYPE_NAME_";
    size_t n = s_ident_len (p, p->pos);
    for (size_t i = 0; i < n && i < 20; i++)
        up [10 + i] = (char) toupper ((unsigned char) p->s [p->pos + i]);
    json_object_set_new (param, "type_name", json_string (up));
    p->pos += n;
    return 0;
}

/*  Parse a parameter type including generics into param. */
static int
s_param (s_parser_t *p, json_t *param)
{
    bool container = s_word_is (p, p->pos, "map") || s_word_is (p, p->pos, "list");
    if (!container)
        return s_param_type (p, param);
    char up [32];
    snprintf (up, sizeof up, "TYPE_NAME_%s", p->s [p->pos] == 'm' ? "MAP" : "LIST");
    p->pos += p->s [p->pos] == 'm' ? 3 : 4;
    if (s_at (p, p->pos) != '<')
        return s_syntax (p, p->pos, "mismatched", "'<'");
    p->pos++;
    json_t *inner = json_object ();
    int rc = 0;
    if (s_word_is (p, p->pos, "map") || s_word_is (p, p->pos, "list"))
        rc = s_syntax (p, p->pos, "mismatched", "CONDITION_PARAM_TYPE");
    else
        rc = s_param_type (p, inner);
    if (rc == 0 && s_at (p, p->pos) != '>')
        rc = s_syntax (p, p->pos, "mismatched", "'>'");
    if (rc == 0) {
        p->pos++;
        json_object_set_new (param, "type_name", json_string (up));
        json_object_set_new (param, "generic_types", json_pack ("[O]", inner));
    }
    json_decref (inner);
    return rc;
}

/*  `condition name(p: T, ...) { expression }` at the cursor. */
static int
s_condition (s_parser_t *p, json_t *conditions)
{
    p->pos += 9;
    if (s_expect_ws (p, "WHITESPACE") != 0)
        return BUS_EINVAL;
    size_t name_at = p->pos;
    json_t *name = s_expect_ident (p, "IDENTIFIER");
    if (!name)
        return BUS_EINVAL;
    const char *cname = json_string_value (name);
    json_t *params = json_object ();
    json_t *cond = json_pack ("{s:o, s:s, s:o}", "name", name, "expression", "", "parameters", params);
    int rc = 0;
    s_skip (p, false);
    if (s_at (p, p->pos) != '(') {
        rc = s_syntax (p, p->pos, "mismatched", "'('");
        goto done;
    }
    p->pos++;
    for (;;) {
        s_skip (p, true);
        size_t param_at = p->pos;
        bool is_type = s_is_type_word (p, p->pos);
        if (is_type) {
            /* the lexer reads a type keyword here, not a name */
            rc = s_syntax (p, p->pos, "mismatched", "{WHITESPACE, IDENTIFIER, NEWLINE}");
            goto done;
        }
        json_t *pname = s_expect_ident (p, "IDENTIFIER");
        if (!pname) {
            rc = BUS_EINVAL;
            goto done;
        }
        size_t pname_len = p->pos - param_at;
        s_skip (p, false);
        if (s_at (p, p->pos) != ':') {
            json_decref (pname);
            rc = s_syntax (p, p->pos, "mismatched", "':'");
            goto done;
        }
        p->pos++;
        s_skip (p, false);
        json_t *param = json_object ();
        rc = s_param (p, param);
        const char *pn = json_string_value (pname);
        if (rc == 0 && json_object_get (params, pn))
            s_error (p, param_at, pname_len, pn, NULL,
                     "parameter '%s' is already defined in the condition '%s'", pn, cname);
        if (rc == 0)
            json_object_set (params, pn, param);
        json_decref (param);
        json_decref (pname);
        if (rc != 0)
            goto done;
        s_skip (p, true);
        char c = s_at (p, p->pos);
        if (c == ')')
            break;
        if (c != ',') {
            rc = s_syntax (p, p->pos, "mismatched", "{',', ')'}");
            goto done;
        }
        p->pos++;
    }
    p->pos++;
    s_skip (p, false);
    if (s_at (p, p->pos) != '{') {
        rc = s_syntax (p, p->pos, "mismatched", "'{'");
        goto done;
    }
    p->pos++;
    size_t start = p->pos;
    char quote = 0;
    while (p->pos < p->len && (quote || p->s [p->pos] != '}')) {
        char c = p->s [p->pos];
        if (quote && c == '\\')
            p->pos++;
        else
        if (quote && c == quote)
            quote = 0;
        else
        if (!quote && (c == '"' || c == '\''))
            quote = c;
        p->pos++;
    }
    if (p->pos >= p->len) {
        rc = s_syntax (p, p->pos, "mismatched", "'}'");
        goto done;
    }
    size_t end = p->pos++;
    while (start < end && isspace ((unsigned char) p->s [start]))
        start++;
    while (end > start && isspace ((unsigned char) p->s [end - 1]))
        end--;
    json_object_set_new (cond, "expression", json_stringn (p->s + start, end - start));
    if ((rc = s_expect_eol (p)) != 0)
        goto done;
    if (json_object_get (conditions, cname))
        s_error (p, name_at, strlen (cname), cname, NULL,
                 "condition '%s' is already defined in the model", cname);
    json_object_set (conditions, cname, cond);
done:
    json_decref (cond);
    return rc;
}

/*  The header: `model` NEWLINE `schema X.Y`. */
static int
s_header (s_parser_t *p, json_t *model)
{
    s_skip_lines (p);
    if (s_word_is (p, p->pos, "module")) {
        /* a module file: no schema; `extend type` allowed */
        p->pos += 6;
        size_t at = p->pos + s_ws_len (p, p->pos);
        if (at >= p->len || s_is_nl (p->s [at])) {
            size_t n = 0;
            while (s_is_nl (s_at (p, at + n)))
                n++;
            char sym [64] = "", msg [160] = "";
            for (size_t i = 0; i < n && i < 20; i++)
                strcat (sym, "\n"), strcat (msg, "\\n");
            s_error (p, p->pos, n, sym, NULL, "mismatched input '%s' expecting WHITESPACE", msg);
            return p->rc = BUS_EINVAL;
        }
        p->pos = at;
        json_t *name = s_expect_ident (p, "{" S_IDENTS "}");
        if (!name)
            return BUS_EINVAL;
        json_object_set_new (model, "module", name);   /* authz_mod.h combines modules */
        p->module = true;
        return s_expect_eol (p);
    }
    if (!s_word_is (p, p->pos, "model"))
        return s_syntax (p, p->pos, "extraneous", "{WHITESPACE, '#', 'module', 'model', NEWLINE}");
    p->pos += 5;
    if (s_expect_eol (p) != 0)
        return BUS_EINVAL;
    s_skip_lines (p);
    if (!s_word_is (p, p->pos, "schema"))
        return s_syntax (p, p->pos, "mismatched", "'schema'");
    p->pos += 6;
    if (s_expect_ws (p, "WHITESPACE") != 0)
        return BUS_EINVAL;
    size_t n = s_token_len (p, p->pos), dots = 0, digits = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p->s [p->pos + i];
        dots += c == '.';
        digits += isdigit ((unsigned char) c) != 0;
    }
    if (n < 3 || dots != 1 || digits != n - 1 || p->s [p->pos] == '.' || p->s [p->pos + n - 1] == '.')
        return s_syntax (p, p->pos, "mismatched", "SCHEMA_VERSION");
    json_object_set_new (model, "schema_version", json_stringn (p->s + p->pos, n));
    p->pos += n;
    return s_expect_eol (p);
}

/*  main: header, types, conditions, end of text. */
static int
s_main (s_parser_t *p, json_t *model)
{
    if (s_header (p, model) != 0)
        return BUS_EINVAL;
    json_t *types = json_array (), *conditions = json_object (), *extended = json_object ();
    json_object_set_new (model, "type_definitions", types);
    int rc = 0;
    s_skip_lines (p);
    while (rc == 0 && p->pos < p->len) {
        if (s_word_is (p, p->pos, "type") && json_object_size (conditions) == 0)
            rc = s_type (p, types);
        else
        if (s_word_is (p, p->pos, "condition"))
            rc = s_condition (p, conditions);
        else
        if (s_word_is (p, p->pos, "extend") && p->module) {
            size_t at = p->pos + 6 + s_ws_len (p, p->pos + 6);
            size_t name_at = at + 4 + s_ws_len (p, at + 4);
            json_t *name = json_stringn (p->s + name_at, s_ident_len (p, name_at));
            if (!s_word_is (p, at, "type"))
                rc = s_syntax (p, at, "mismatched", "'type'");
            else {
                if (json_object_get (extended, json_string_value (name)))
                    s_error (p, name_at, s_ident_len (p, name_at), NULL, NULL,
                             "'%s' is already extended in file.", json_string_value (name));
                json_object_set_new (extended, json_string_value (name), json_true ());
                p->pos = at;
                rc = s_type (p, types);
                /* marked for authz_mod.h, which merges it into its type */
                json_object_set_new (json_array_get (types, json_array_size (types) - 1), "extend", json_true ());
            }
            json_decref (name);
        }
        else
        if (s_word_is (p, p->pos, "extend")) {
            size_t at = p->pos + 6;
            at += s_ws_len (p, at);
            if (s_word_is (p, at, "type"))
                at += 4 + s_ws_len (p, at + 4);
            s_error (p, at, s_ident_len (p, at), NULL, NULL, "extend can only be used in a modular model");
            rc = p->rc = BUS_EINVAL;
        }
        else
            rc = s_syntax (p, p->pos, "extraneous", "{<EOF>, NEWLINE}");
        s_skip_lines (p);
    }
    if (json_object_size (conditions))
        json_object_set (model, "conditions", conditions);
    json_decref (conditions);
    json_decref (extended);
    return rc;
}

int
authz_dsl_parse (json_t **model_out, const char *text, json_t **errors_out)
{
    if (!model_out)
        return BUS_EINVAL;
    *model_out = NULL;
    if (errors_out)
        *errors_out = NULL;
    s_parser_t p = { .s = text ? text : "", .errors = json_array () };
    p.len = strlen (p.s);
    json_t *model = json_object ();
    int rc = 0;
    size_t bad;
    if (!p.errors || !model)
        rc = BUS_ENOMEM;
    else
    if (p.len > AUTHZ_DSL_MAX_SIZE) {
        s_error (&p, 0, 0, "", NULL, "model text of %zu bytes is over the %d-byte limit",
                 p.len, AUTHZ_DSL_MAX_SIZE);
        rc = BUS_ETOOBIG;
    }
    else
    if ((bad = s_utf8_invalid (p.s, p.len)) < p.len)
        rc = s_error (&p, bad, 1, "", NULL, "model text is not valid UTF-8 (byte 0x%02x at offset %zu)",
                      (unsigned char) p.s [bad], bad);
    else {
        rc = s_main (&p, model);
        if (p.rc)
            rc = p.rc;
        if (rc == 0 && json_array_size (p.errors))
            rc = BUS_EINVAL;
    }
    if (rc == 0)
        *model_out = model;
    else
        json_decref (model);
    if (errors_out)
        *errors_out = p.errors;
    else
        json_decref (p.errors);
    return rc;
}
