/*  authz_cel_parse.c — CEL source to syntax tree.

    The lexer (CEL's literals: quoted, raw and bytes strings with their
    escapes, ints, uints and doubles), then a recursive-descent parser
    over CEL's grammar with its limits (nesting, node count) checked as it
    goes. The macros (all, exists, exists_one, map, filter) and has() are
    expanded here into comprehension and presence nodes; a call's name is
    resolved to a function id (cel_fn_t) for the checker.
*/
#include "authz_cel_private.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <regex.h>

//  ---------------------------------------------------------------------
//  Lexer.

typedef enum {
    TK_EOF, TK_INT, TK_UINT, TK_DOUBLE, TK_STRING, TK_BYTES, TK_IDENT,
    TK_TRUE, TK_FALSE, TK_NULL, TK_IN, TK_LPAREN, TK_RPAREN, TK_LBRACK,
    TK_RBRACK, TK_LBRACE, TK_RBRACE, TK_DOT, TK_COMMA, TK_COLON,
    TK_QUESTION, TK_PLUS, TK_MINUS, TK_STAR, TK_SLASH, TK_PERCENT, TK_NOT,
    TK_EQ, TK_NE, TK_LT, TK_LE, TK_GT, TK_GE, TK_AND, TK_OR
} s_tok_kind_t;

typedef struct {
    s_tok_kind_t k;
    size_t pos;
    uint64_t u;                 //  TK_INT magnitude, TK_UINT value
    double d;                   //  TK_DOUBLE
    const char *s;              //  TK_IDENT name, TK_STRING/TK_BYTES decoded
    size_t n;
} s_tok_t;

typedef struct {
    authz_cel_t *cel;
    const char *src;
    size_t len, pos;
    s_tok_t tok;
    int depth;
    size_t nodes;
    int rc;
    char *err;
    size_t err_len;
} s_parser_t;

//  Record the first syntax (or limit) error; later ones are consequences.
static void
s_perr (s_parser_t *p, int rc, size_t pos, const char *fmt, ...)
    __attribute__((format (printf, 4, 5)));
static void
s_perr (s_parser_t *p, int rc, size_t pos, const char *fmt, ...)
{
    if (p->rc)
        return;
    p->rc = rc;
    char msg [CEL_MAX_ERRMSG];
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (msg, sizeof msg, fmt, ap);
    va_end (ap);
    cel_errf (p->err, p->err_len, "%s at offset %zu", msg, pos);
}

//  Append code point cp as UTF-8 at out; returns bytes written.
static size_t
s_utf8_put (char *out, uint32_t cp)
{
    if (cp < 0x80) { out [0] = (char) cp; return 1; }
    if (cp < 0x800) {
        out [0] = (char) (0xC0 | (cp >> 6));
        out [1] = (char) (0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out [0] = (char) (0xE0 | (cp >> 12));
        out [1] = (char) (0x80 | ((cp >> 6) & 0x3F));
        out [2] = (char) (0x80 | (cp & 0x3F));
        return 3;
    }
    out [0] = (char) (0xF0 | (cp >> 18));
    out [1] = (char) (0x80 | ((cp >> 12) & 0x3F));
    out [2] = (char) (0x80 | ((cp >> 6) & 0x3F));
    out [3] = (char) (0x80 | (cp & 0x3F));
    return 4;
}

static int
s_hexval (int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

//  Lex a quoted literal starting at p->pos (at the quote); raw and bytes
//  say which prefixes preceded it. Decodes CEL escapes: in strings \x and
//  octal escapes are code points, in bytes they are bytes.
static void
s_lex_quoted (s_parser_t *p, bool raw, bool bytes)
{
    const char *s = p->src;
    size_t i = p->pos, start = p->tok.pos;
    char q = s [i];
    bool triple = i + 2 < p->len && s [i + 1] == q && s [i + 2] == q;
    i += triple? 3: 1;
    char *out = cel_alloc (&p->cel->arena, p->len - i + 1);
    if (!out) {
        s_perr (p, AUTHZ_CEL_ELIMIT, start, "out of memory");
        return;
    }
    size_t n = 0;
    for (;;) {
        if (i >= p->len) {
            s_perr (p, AUTHZ_CEL_ESYNTAX, start, "unterminated string literal");
            return;
        }
        char c = s [i];
        if (c == q && (!triple || (i + 2 < p->len && s [i + 1] == q && s [i + 2] == q))) {
            i += triple? 3: 1;
            break;
        }
        if ((c == '\n' || c == '\r') && !triple) {
            s_perr (p, AUTHZ_CEL_ESYNTAX, i, "newline in string literal");
            return;
        }
        if (c != '\\' || raw) {
            out [n++] = c;
            i++;
            continue;
        }
        if (i + 1 >= p->len) {
            s_perr (p, AUTHZ_CEL_ESYNTAX, i, "unterminated escape");
            return;
        }
        char e = s [i + 1];
        i += 2;
        uint32_t cp = 0;
        int digits = 0, base = 16;
        switch (e) {
            case 'a': out [n++] = '\a'; continue;
            case 'b': out [n++] = '\b'; continue;
            case 'f': out [n++] = '\f'; continue;
            case 'n': out [n++] = '\n'; continue;
            case 'r': out [n++] = '\r'; continue;
            case 't': out [n++] = '\t'; continue;
            case 'v': out [n++] = '\v'; continue;
            case '\\': case '\'': case '"': case '`': case '?':
                out [n++] = e; continue;
            case 'x': case 'X': digits = 2; break;
            case 'u': digits = bytes? -1: 4; break;
            case 'U': digits = bytes? -1: 8; break;
            default:
                if (e >= '0' && e <= '3') {
                    digits = 2;
                    base = 8;
                    cp = (uint32_t) (e - '0');
                }
                else
                    digits = -1;
        }
        if (digits < 0) {
            s_perr (p, AUTHZ_CEL_ESYNTAX, i - 2, "invalid escape sequence");
            return;
        }
        for (int d = 0; d < digits; d++, i++) {
            int v = i < p->len? (base == 16? s_hexval (s [i]): (s [i] >= '0' && s [i] <= '7'? s [i] - '0': -1)): -1;
            if (v < 0) {
                s_perr (p, AUTHZ_CEL_ESYNTAX, i, "invalid escape sequence");
                return;
            }
            cp = cp * (uint32_t) base + (uint32_t) v;
        }
        if (bytes && (e == 'x' || e == 'X' || base == 8))
            out [n++] = (char) cp;
        else {
            if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
                s_perr (p, AUTHZ_CEL_ESYNTAX, i, "invalid code point in escape");
                return;
            }
            n += s_utf8_put (out + n, cp);
        }
    }
    p->pos = i;
    p->tok.k = bytes? TK_BYTES: TK_STRING;
    p->tok.s = out;
    p->tok.n = n;
}

//  Lex a number at p->pos: int, uint (u suffix), hex, or double.
static void
s_lex_number (s_parser_t *p)
{
    const char *s = p->src;
    size_t i = p->pos, start = i;
    bool is_double = false, hex = false;
    if (s [i] == '0' && i + 1 < p->len && (s [i + 1] == 'x' || s [i + 1] == 'X')) {
        hex = true;
        i += 2;
        while (i < p->len && isxdigit ((unsigned char) s [i]))
            i++;
        if (i == start + 2) {
            s_perr (p, AUTHZ_CEL_ESYNTAX, start, "malformed hex literal");
            return;
        }
    }
    else {
        while (i < p->len && isdigit ((unsigned char) s [i]))
            i++;
        if (i + 1 < p->len && s [i] == '.' && isdigit ((unsigned char) s [i + 1])) {
            is_double = true;
            i++;
            while (i < p->len && isdigit ((unsigned char) s [i]))
                i++;
        }
        if (i < p->len && (s [i] == 'e' || s [i] == 'E')) {
            size_t j = i + 1;
            if (j < p->len && (s [j] == '+' || s [j] == '-'))
                j++;
            if (j < p->len && isdigit ((unsigned char) s [j])) {
                is_double = true;
                i = j;
                while (i < p->len && isdigit ((unsigned char) s [i]))
                    i++;
            }
        }
    }
    char buf [64];
    if (i - start >= sizeof buf) {
        s_perr (p, AUTHZ_CEL_ESYNTAX, start, "numeric literal too long");
        return;
    }
    memcpy (buf, s + start, i - start);
    buf [i - start] = 0;
    errno = 0;
    if (is_double) {
        p->tok.k = TK_DOUBLE;
        p->tok.d = strtod (buf, NULL);
        if (errno == ERANGE && isinf (p->tok.d)) {
            s_perr (p, AUTHZ_CEL_ESYNTAX, start, "double literal out of range");
            return;
        }
    }
    else {
        p->tok.u = strtoull (hex? buf + 2: buf, NULL, hex? 16: 10);
        if (errno == ERANGE) {
            s_perr (p, AUTHZ_CEL_ESYNTAX, start, "integer literal out of range");
            return;
        }
        p->tok.k = TK_INT;
        if (i < p->len && (s [i] == 'u' || s [i] == 'U')) {
            p->tok.k = TK_UINT;
            i++;
        }
    }
    p->pos = i;
}

static bool
s_is_ident_start (int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

//  Advance to the next token.
static void
s_next (s_parser_t *p)
{
    const char *s = p->src;
    memset (&p->tok, 0, sizeof p->tok);
    for (;;) {
        while (p->pos < p->len && strchr (" \t\n\r\f", s [p->pos]) && s [p->pos])
            p->pos++;
        if (p->pos + 1 < p->len && s [p->pos] == '/' && s [p->pos + 1] == '/') {
            while (p->pos < p->len && s [p->pos] != '\n')
                p->pos++;
            continue;
        }
        break;
    }
    p->tok.pos = p->pos;
    if (p->rc || p->pos >= p->len) {
        p->tok.k = TK_EOF;
        return;
    }
    char c = s [p->pos], c2 = p->pos + 1 < p->len? s [p->pos + 1]: 0;
    if (isdigit ((unsigned char) c) || (c == '.' && isdigit ((unsigned char) c2))) {
        s_lex_number (p);
        return;
    }
    if (s_is_ident_start (c)) {
        size_t i = p->pos;
        while (i < p->len && (s_is_ident_start (s [i]) || isdigit ((unsigned char) s [i])))
            i++;
        size_t n = i - p->pos;
        //  string and bytes prefixes: r R b B and their pairs
        if (i < p->len && (s [i] == '"' || s [i] == '\'') && n <= 2) {
            bool raw = false, bytes = false, ok = true;
            for (size_t j = p->pos; j < i; j++) {
                if (s [j] == 'r' || s [j] == 'R') { ok = ok && !raw; raw = true; }
                else
                if (s [j] == 'b' || s [j] == 'B') { ok = ok && !bytes; bytes = true; }
                else
                    ok = false;
            }
            if (ok) {
                p->pos = i;
                s_lex_quoted (p, raw, bytes);
                return;
            }
        }
        static const char *reserved [] = {
            "as", "break", "const", "continue", "else", "for", "function", "if",
            "import", "let", "loop", "package", "namespace", "return", "var",
            "void", "while", NULL
        };
        for (int r = 0; reserved [r]; r++)
            if (strlen (reserved [r]) == n && !memcmp (reserved [r], s + p->pos, n)) {
                s_perr (p, AUTHZ_CEL_ESYNTAX, p->pos, "reserved identifier '%s'", reserved [r]);
                p->tok.k = TK_EOF;
                return;
            }
        p->tok.k = TK_IDENT;
        if (n == 4 && !memcmp (s + p->pos, "true", 4)) p->tok.k = TK_TRUE;
        if (n == 5 && !memcmp (s + p->pos, "false", 5)) p->tok.k = TK_FALSE;
        if (n == 4 && !memcmp (s + p->pos, "null", 4)) p->tok.k = TK_NULL;
        if (n == 2 && !memcmp (s + p->pos, "in", 2)) p->tok.k = TK_IN;
        p->tok.s = s + p->pos;
        p->tok.n = n;
        p->pos = i;
        return;
    }
    if (c == '"' || c == '\'') {
        s_lex_quoted (p, false, false);
        return;
    }
    static const struct { char a, b; s_tok_kind_t k; } ops [] = {
        {'=', '=', TK_EQ}, {'!', '=', TK_NE}, {'<', '=', TK_LE}, {'>', '=', TK_GE},
        {'&', '&', TK_AND}, {'|', '|', TK_OR}, {'(', 0, TK_LPAREN},
        {')', 0, TK_RPAREN}, {'[', 0, TK_LBRACK}, {']', 0, TK_RBRACK},
        {'{', 0, TK_LBRACE}, {'}', 0, TK_RBRACE}, {'.', 0, TK_DOT},
        {',', 0, TK_COMMA}, {':', 0, TK_COLON}, {'?', 0, TK_QUESTION},
        {'+', 0, TK_PLUS}, {'-', 0, TK_MINUS}, {'*', 0, TK_STAR},
        {'/', 0, TK_SLASH}, {'%', 0, TK_PERCENT}, {'!', 0, TK_NOT},
        {'<', 0, TK_LT}, {'>', 0, TK_GT}
    };
    for (size_t o = 0; o < sizeof ops / sizeof ops [0]; o++)
        if (ops [o].a == c && (!ops [o].b || ops [o].b == c2)) {
            p->tok.k = ops [o].k;
            p->pos += ops [o].b? 2: 1;
            return;
        }
    s_perr (p, AUTHZ_CEL_ESYNTAX, p->pos, "unexpected character '%c'", isprint ((unsigned char) c)? c: '?');
    p->tok.k = TK_EOF;
}

//  ---------------------------------------------------------------------
//  Parser: recursive descent over CEL's grammar.

static cel_node_t *s_parse_expr (s_parser_t *p);

//  A new node of kind at pos with room for nargs children.
static cel_node_t *
s_node (s_parser_t *p, int kind, size_t pos, uint32_t nargs)
{
    if (p->rc)
        return NULL;
    if (++p->nodes > AUTHZ_CEL_MAX_NODES) {
        s_perr (p, AUTHZ_CEL_ELIMIT, pos, "expression has more than %d nodes", AUTHZ_CEL_MAX_NODES);
        return NULL;
    }
    cel_node_t *n = cel_alloc (&p->cel->arena, sizeof *n);
    if (n && nargs)
        n->args = cel_alloc (&p->cel->arena, nargs * sizeof *n->args);
    if (!n || (nargs && !n->args)) {
        s_perr (p, AUTHZ_CEL_ELIMIT, pos, "out of memory");
        return NULL;
    }
    n->kind = (uint8_t) kind;
    n->pos = pos;
    n->nargs = nargs;
    return n;
}

static bool
s_accept (s_parser_t *p, s_tok_kind_t k)
{
    if (p->tok.k != k)
        return false;
    s_next (p);
    return true;
}

static bool
s_expect (s_parser_t *p, s_tok_kind_t k, const char *what)
{
    if (s_accept (p, k))
        return true;
    s_perr (p, AUTHZ_CEL_ESYNTAX, p->tok.pos, "expected %s", what);
    return false;
}

//  A call node for an operator or function with the given children.
static cel_node_t *
s_call (s_parser_t *p, int fn, size_t pos, uint32_t n, cel_node_t *a, cel_node_t *b)
{
    if (!a || (n > 1 && !b))
        return NULL;
    cel_node_t *c = s_node (p, N_CALL, pos, n);
    if (c) {
        c->fn = (uint8_t) fn;
        c->args [0] = a;
        if (n > 1)
            c->args [1] = b;
    }
    return c;
}

//  Append e to the arena array *v of *n nodes (room for *cap), doubling
//  it as it fills. False (the error recorded at pos) when out of memory.
static bool
s_push (s_parser_t *p, cel_node_t ***v, size_t *n, size_t *cap, cel_node_t *e, size_t pos)
{
    if (*n == *cap) {
        size_t ncap = *cap? *cap * 2: 4;
        cel_node_t **nv = cel_alloc (&p->cel->arena, ncap * sizeof *nv);
        if (!nv) {
            s_perr (p, AUTHZ_CEL_ELIMIT, pos, "out of memory");
            return false;
        }
        if (*n)
            memcpy (nv, *v, *n * sizeof *nv);
        *v = nv;
        *cap = ncap;
    }
    (*v) [(*n)++] = e;
    return true;
}

//  Parse a comma-separated list of expressions up to close (the opening
//  token has been consumed); stores up to max in out, sets *count.
//  allow_trailing: a trailing comma before close is accepted.
static bool
s_parse_exprs (s_parser_t *p, s_tok_kind_t close, cel_node_t ***out, uint32_t *count, bool allow_trailing)
{
    size_t cap = 0, n = 0;
    cel_node_t **v = NULL;
    while (p->tok.k != close && !p->rc) {
        cel_node_t *e = s_parse_expr (p);
        if (!e)
            return false;
        if (!s_push (p, &v, &n, &cap, e, p->tok.pos))
            return false;
        if (!s_accept (p, TK_COMMA))
            break;
        if (p->tok.k == close && !allow_trailing) {
            s_perr (p, AUTHZ_CEL_ESYNTAX, p->tok.pos, "unexpected ','");
            return false;
        }
    }
    if (!s_expect (p, close, "closing bracket"))
        return false;
    *out = v;
    *count = (uint32_t) n;
    return true;
}

//  Look a function name up; F_UNKNOWN if it is not one (reported by the
//  checker as an undeclared reference).
static int
s_fn_lookup (const char *name, size_t n)
{
    for (int fn = F_SIZE; fn <= F_MILLIS; fn++) {
        const char *fname = cel_fn_name (fn);
        if (strlen (fname) == n && !memcmp (fname, name, n))
            return fn;
    }
    return F_UNKNOWN;
}

//  Build a call or, for has/all/exists/exists_one/map/filter with the
//  right shape, the macro it stands for. target is NULL for a global call.
static cel_node_t *
s_make_call (s_parser_t *p, size_t pos, const char *name, size_t nlen,
             cel_node_t *target, cel_node_t **args, uint32_t nargs)
{
    #define S_IS(lit) (nlen == sizeof (lit) - 1 && !memcmp (name, lit, nlen))
    if (!target && S_IS ("has") && nargs == 1) {
        if (args [0]->kind != N_SELECT || args [0]->paren) {
            s_perr (p, AUTHZ_CEL_ESYNTAX, pos, "invalid argument to has() macro");
            return NULL;
        }
        args [0]->kind = N_HAS;
        return args [0];
    }
    int macro = -1;
    if (target) {
        if ((S_IS ("all")) && nargs == 2) macro = M_ALL;
        if ((S_IS ("exists")) && nargs == 2) macro = M_EXISTS;
        if ((S_IS ("exists_one") || S_IS ("existsOne")) && nargs == 2) macro = M_EXISTS_ONE;
        if ((S_IS ("map")) && nargs == 2) macro = M_MAP;
        if ((S_IS ("map")) && nargs == 3) macro = M_MAP_FILTER;
        if ((S_IS ("filter")) && nargs == 2) macro = M_FILTER;
    }
    #undef S_IS
    if (macro >= 0) {
        if (args [0]->kind != N_IDENT || args [0]->paren) {
            s_perr (p, AUTHZ_CEL_ESYNTAX, args [0]->pos, "argument must be a simple name");
            return NULL;
        }
        cel_node_t *c = s_node (p, N_COMP, pos, nargs);
        if (!c)
            return NULL;
        c->fn = (uint8_t) macro;
        c->name = args [0]->name;
        c->args [0] = target;
        for (uint32_t i = 1; i < nargs; i++)
            c->args [i] = args [i];
        return c;
    }
    cel_node_t *c = s_node (p, N_CALL, pos, nargs + (target? 1: 0));
    if (!c)
        return NULL;
    c->fn = (uint8_t) s_fn_lookup (name, nlen);
    c->name = cel_strndup (&p->cel->arena, name, nlen);
    c->member = target != NULL;
    if (target)
        c->args [0] = target;
    for (uint32_t i = 0; i < nargs; i++)
        c->args [i + (target? 1: 0)] = args [i];
    return c;
}

//  Primary: literal, identifier, global call, (expr), [list], {map}.
static cel_node_t *
s_parse_primary (s_parser_t *p)
{
    s_tok_t t = p->tok;
    cel_node_t *n = NULL;
    switch (t.k) {
        case TK_INT: case TK_UINT: case TK_DOUBLE: case TK_STRING:
        case TK_BYTES: case TK_TRUE: case TK_FALSE: case TK_NULL:
            s_next (p);
            n = s_node (p, N_LIT, t.pos, 0);
            if (!n)
                return NULL;
            switch (t.k) {
                case TK_INT:
                    n->lit.k = K_INT;
                    if (t.u > (uint64_t) INT64_MAX + 1) {
                        s_perr (p, AUTHZ_CEL_ESYNTAX, t.pos, "integer literal out of range");
                        return NULL;
                    }
                    n->neg_only = t.u == (uint64_t) INT64_MAX + 1;
                    n->lit.i = n->neg_only? INT64_MIN: (int64_t) t.u;
                    break;
                case TK_UINT: n->lit.k = K_UINT; n->lit.u = t.u; break;
                case TK_DOUBLE: n->lit.k = K_DOUBLE; n->lit.d = t.d; break;
                case TK_STRING: case TK_BYTES:
                    n->lit.k = t.k == TK_STRING? K_STRING: K_BYTES;
                    n->lit.s.p = t.s;
                    n->lit.s.n = t.n;
                    break;
                case TK_TRUE: case TK_FALSE: n->lit.k = K_BOOL; n->lit.b = t.k == TK_TRUE; break;
                default: n->lit.k = K_NULL; break;
            }
            return n;
        case TK_IDENT: {
            s_next (p);
            if (s_accept (p, TK_LPAREN)) {
                cel_node_t **args = NULL;
                uint32_t nargs = 0;
                if (!s_parse_exprs (p, TK_RPAREN, &args, &nargs, false))
                    return NULL;
                return s_make_call (p, t.pos, t.s, t.n, NULL, args, nargs);
            }
            n = s_node (p, N_IDENT, t.pos, 0);
            if (n && !(n->name = cel_strndup (&p->cel->arena, t.s, t.n)))
                s_perr (p, AUTHZ_CEL_ELIMIT, t.pos, "out of memory");
            return p->rc? NULL: n;
        }
        case TK_LPAREN:
            s_next (p);
            n = s_parse_expr (p);
            if (!n || !s_expect (p, TK_RPAREN, "')'"))
                return NULL;
            if (n->neg_only) {
                s_perr (p, AUTHZ_CEL_ESYNTAX, n->pos, "integer literal out of range");
                return NULL;
            }
            n->paren = true;
            return n;
        case TK_LBRACK: {
            s_next (p);
            cel_node_t **args = NULL;
            uint32_t nargs = 0;
            if (!s_parse_exprs (p, TK_RBRACK, &args, &nargs, true))
                return NULL;
            n = s_node (p, N_LIST, t.pos, 0);
            if (n) {
                n->args = args;
                n->nargs = nargs;
            }
            return n;
        }
        case TK_LBRACE: {
            s_next (p);
            size_t cap = 0;
            n = s_node (p, N_MAP, t.pos, 0);
            while (n && p->tok.k != TK_RBRACE && !p->rc) {
                cel_node_t *k = s_parse_expr (p);
                if (!k || !s_expect (p, TK_COLON, "':'"))
                    return NULL;
                cel_node_t *v = s_parse_expr (p);
                if (!v)
                    return NULL;
                size_t count = n->nargs;
                if (!s_push (p, &n->args, &count, &cap, k, t.pos)
                ||  !s_push (p, &n->args, &count, &cap, v, t.pos))
                    return NULL;
                n->nargs = (uint32_t) count;
                if (!s_accept (p, TK_COMMA))
                    break;
            }
            if (!n || !s_expect (p, TK_RBRACE, "'}'"))
                return NULL;
            return n;
        }
        case TK_DOT:
            s_perr (p, AUTHZ_CEL_ESYNTAX, t.pos, "qualified root names are not supported");
            return NULL;
        default:
            s_perr (p, AUTHZ_CEL_ESYNTAX, t.pos, t.k == TK_EOF? "unexpected end of expression": "unexpected token");
            return NULL;
    }
}

//  Member: primary followed by .field, .method(args) and [index].
static cel_node_t *
s_parse_member (s_parser_t *p)
{
    cel_node_t *n = s_parse_primary (p);
    while (n && !p->rc) {
        s_tok_t t = p->tok;
        if (t.k != TK_DOT && t.k != TK_LBRACK)
            break;
        if (n->neg_only) {
            s_perr (p, AUTHZ_CEL_ESYNTAX, n->pos, "integer literal out of range");
            return NULL;
        }
        s_next (p);
        if (t.k == TK_LBRACK) {
            cel_node_t *i = s_parse_expr (p);
            if (!i || !s_expect (p, TK_RBRACK, "']'"))
                return NULL;
            n = s_call (p, F_INDEX, t.pos, 2, n, i);
            continue;
        }
        s_tok_t f = p->tok;
        if (f.k != TK_IDENT && f.k != TK_IN && f.k != TK_TRUE && f.k != TK_FALSE && f.k != TK_NULL) {
            s_perr (p, AUTHZ_CEL_ESYNTAX, f.pos, "expected a field name after '.'");
            return NULL;
        }
        const char *fname = p->src + f.pos;
        size_t flen = p->pos - f.pos;
        s_next (p);
        if (s_accept (p, TK_LPAREN)) {
            cel_node_t **args = NULL;
            uint32_t nargs = 0;
            if (!s_parse_exprs (p, TK_RPAREN, &args, &nargs, false))
                return NULL;
            n = s_make_call (p, f.pos, fname, flen, n, args, nargs);
            continue;
        }
        cel_node_t *sel = s_node (p, N_SELECT, f.pos, 1);
        if (!sel)
            return NULL;
        sel->args [0] = n;
        if (!(sel->name = cel_strndup (&p->cel->arena, fname, flen))) {
            s_perr (p, AUTHZ_CEL_ELIMIT, f.pos, "out of memory");
            return NULL;
        }
        n = sel;
    }
    return p->rc? NULL: n;
}

//  Unary: a run of '!' or a run of '-' before a member (CEL's grammar
//  allows no mixing); pairs cancel, as cel-go's parser does. A single
//  '-' before a numeric literal folds into the literal.
static cel_node_t *
s_parse_unary (s_parser_t *p)
{
    s_tok_kind_t op = p->tok.k;
    if (op != TK_NOT && op != TK_MINUS) {
        cel_node_t *n = s_parse_member (p);
        if (n && n->neg_only) {
            s_perr (p, AUTHZ_CEL_ESYNTAX, n->pos, "integer literal out of range");
            return NULL;
        }
        return n;
    }
    size_t pos = p->tok.pos, count = 0;
    while (p->tok.k == op) {
        count++;
        s_next (p);
    }
    cel_node_t *n = s_parse_member (p);
    if (!n)
        return NULL;
    if (count % 2 == 0) {
        if (n->neg_only) {
            s_perr (p, AUTHZ_CEL_ESYNTAX, n->pos, "integer literal out of range");
            return NULL;
        }
        return n;
    }
    if (op == TK_MINUS && n->kind == N_LIT && !n->paren
    && (n->lit.k == K_INT || n->lit.k == K_DOUBLE)) {
        if (n->lit.k == K_DOUBLE)
            n->lit.d = -n->lit.d;
        else
        if (!n->neg_only)
            n->lit.i = -n->lit.i;
        n->neg_only = false;
        return n;
    }
    if (n->neg_only) {
        s_perr (p, AUTHZ_CEL_ESYNTAX, n->pos, "integer literal out of range");
        return NULL;
    }
    return s_call (p, op == TK_MINUS? F_NEG: F_NOT, pos, 1, n, NULL);
}

//  Binary levels, left-associative: multiplication, addition, relations.
static cel_node_t *
s_parse_binary (s_parser_t *p, int level)
{
    cel_node_t *n = level == 0? s_parse_unary (p): s_parse_binary (p, level - 1);
    while (n && !p->rc) {
        s_tok_t t = p->tok;
        int fn = F_UNKNOWN;
        if (level == 0)
            fn = t.k == TK_STAR? F_MUL: t.k == TK_SLASH? F_DIV: t.k == TK_PERCENT? F_MOD: F_UNKNOWN;
        else
        if (level == 1)
            fn = t.k == TK_PLUS? F_ADD: t.k == TK_MINUS? F_SUB: F_UNKNOWN;
        else
            fn = t.k == TK_LT? F_LT: t.k == TK_LE? F_LE: t.k == TK_GT? F_GT:
                 t.k == TK_GE? F_GE: t.k == TK_EQ? F_EQ: t.k == TK_NE? F_NE:
                 t.k == TK_IN? F_IN: F_UNKNOWN;
        if (fn == F_UNKNOWN)
            break;
        s_next (p);
        cel_node_t *r = level == 0? s_parse_unary (p): s_parse_binary (p, level - 1);
        n = s_call (p, fn, t.pos, 2, n, r);
    }
    return p->rc? NULL: n;
}

//  A run of && (or ||) becomes one node with all operands.
static cel_node_t *
s_parse_logic (s_parser_t *p, bool is_or)
{
    cel_node_t *first = is_or? s_parse_logic (p, false): s_parse_binary (p, 2);
    s_tok_kind_t op = is_or? TK_OR: TK_AND;
    if (!first || p->tok.k != op)
        return first;
    cel_node_t *n = s_node (p, is_or? N_OR: N_AND, p->tok.pos, 0);
    size_t cap = 0, count = 0;
    cel_node_t *e = first;
    while (n && e) {
        if (!s_push (p, &n->args, &count, &cap, e, n->pos))
            return NULL;
        n->nargs = (uint32_t) count;
        if (!s_accept (p, op))
            break;
        e = is_or? s_parse_logic (p, false): s_parse_binary (p, 2);
    }
    return p->rc? NULL: n;
}

//  Expression: or [? or : expr]. Nesting is bounded here.
static cel_node_t *
s_parse_expr (s_parser_t *p)
{
    if (++p->depth > AUTHZ_CEL_MAX_DEPTH) {
        s_perr (p, AUTHZ_CEL_ELIMIT, p->tok.pos, "expression nested deeper than %d", AUTHZ_CEL_MAX_DEPTH);
        return NULL;
    }
    cel_node_t *n = s_parse_logic (p, true);
    if (n && p->tok.k == TK_QUESTION) {
        size_t pos = p->tok.pos;
        s_next (p);
        cel_node_t *a = s_parse_logic (p, true);
        if (!a || !s_expect (p, TK_COLON, "':'"))
            return NULL;
        cel_node_t *b = s_parse_expr (p);
        cel_node_t *c = b? s_node (p, N_COND, pos, 3): NULL;
        if (!c)
            return NULL;
        c->args [0] = n;
        c->args [1] = a;
        c->args [2] = b;
        n = c;
    }
    p->depth--;
    return p->rc? NULL: n;
}

//  ---------------------------------------------------------------------
//  Entry point.

/*  Parse self->source; see authz_cel_private.h. */
int
cel_parse (authz_cel_t *self, size_t len, char *err, size_t err_len)
{
    s_parser_t p = {.cel = self, .src = self->source, .len = len, .err = err, .err_len = err_len};
    s_next (&p);
    self->root = s_parse_expr (&p);
    if (!p.rc && p.tok.k != TK_EOF)
        s_perr (&p, AUTHZ_CEL_ESYNTAX, p.tok.pos, "unexpected token");
    return p.rc;
}

