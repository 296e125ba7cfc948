/*  authz_cel.c — the CEL subset OpenFGA conditions use.

    Reading order: the arena; types and values; the lexer; the parser
    (source to syntax tree, macros expanded into comprehension nodes); the
    type checker (cel-go's rules: no implicit numeric conversion, type
    parameters for == in [] ?:, null only against nullable types, the
    result must be bool); runtime helpers (equality and ordering, RFC 3339
    timestamps, Go durations, IP addresses, number formatting, regular
    expressions); the evaluator (CEL's error- and unknown-absorbing logic
    and comprehensions); context conversion (OpenFGA's parameter
    converters); the public API.

    A compiled condition is read-only; every evaluation allocates from its
    own arena, so one condition may be evaluated by many threads at once.
*/
#include "authz_cel.h"

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

#define S_MAX_PARAM_NAME   128     /* bytes of a parameter name */
#define S_MAX_TYPE_DEPTH   8       /* list<map<...>> nesting in a declaration */
#define S_MAX_CTX_DEPTH    32      /* JSON nesting converted from a context */
#define S_MAX_COMPILE_MEM  (4u << 20)
#define S_MAX_ERRMSG       240
#define S_MAX_REPEAT       1000    /* RE2's repetition bound */
#define S_MAX_RE_NEST      50      /* groups nested in a pattern */
#define S_MAX_RE_LOOP_REPEAT 100   /* repetition of a group holding a * or +:
                                      glibc's compile time grows with the cube */

//  ---------------------------------------------------------------------
//  Arena: bump allocation in chunks, freed at once, with a byte cap.

typedef struct s_chunk {
    struct s_chunk *next;
    size_t cap, used;
    max_align_t data [];
} s_chunk_t;

typedef struct {
    s_chunk_t *head;
    size_t total;               //  bytes of all chunks
    size_t limit;               //  cap on total
} s_arena_t;

//  Allocate n zeroed bytes, 16-aligned; NULL when over the cap or out of
//  memory (the caller reports ELIMIT).
static void *
s_alloc (s_arena_t *a, size_t n)
{
    if (n > a->limit)
        return NULL;
    n = n? (n + 15) & ~(size_t) 15: 16;
    s_chunk_t *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 16384? n: 16384;
        if (a->total + cap > a->limit) {
            cap = n;
            if (a->total + cap > a->limit)
                return NULL;
        }
        c = malloc (sizeof (s_chunk_t) + cap);
        if (!c)
            return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = a->head;
        a->head = c;
        a->total += cap;
    }
    void *p = (char *) c->data + c->used;
    c->used += n;
    memset (p, 0, n);
    return p;
}

//  Free every chunk.
static void
s_arena_free (s_arena_t *a)
{
    while (a->head) {
        s_chunk_t *next = a->head->next;
        free (a->head);
        a->head = next;
    }
    a->total = 0;
}

//  Copy n bytes into the arena with a terminating NUL.
static char *
s_strndup (s_arena_t *a, const char *s, size_t n)
{
    char *p = s_alloc (a, n + 1);
    if (p && n)
        memcpy (p, s, n);
    return p;
}

//  Write a printf-style message into err (NULL or 0 length allowed).
static void
s_errf (char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format (printf, 3, 4)));
static void
s_errf (char *err, size_t err_len, const char *fmt, ...)
{
    if (!err || !err_len)
        return;
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (err, err_len, fmt, ap);
    va_end (ap);
}

//  ---------------------------------------------------------------------
//  Types (checker) and values (runtime).

typedef enum {
    K_DYN, K_NULL, K_BOOL, K_INT, K_UINT, K_DOUBLE, K_STRING, K_BYTES,
    K_DURATION, K_TIMESTAMP, K_IP, K_LIST, K_MAP, K_PARAM
} s_kind_t;

typedef struct s_type {
    uint8_t k;                  //  s_kind_t
    uint8_t idx;                //  K_PARAM: which type parameter
    const struct s_type *p1;    //  K_LIST element; K_MAP key
    const struct s_type *p2;    //  K_MAP value
} s_type_t;

static const s_type_t T_DYN = {K_DYN, 0, NULL, NULL};
static const s_type_t T_NULL = {K_NULL, 0, NULL, NULL};
static const s_type_t T_BOOL = {K_BOOL, 0, NULL, NULL};
static const s_type_t T_INT = {K_INT, 0, NULL, NULL};
static const s_type_t T_UINT = {K_UINT, 0, NULL, NULL};
static const s_type_t T_DOUBLE = {K_DOUBLE, 0, NULL, NULL};
static const s_type_t T_STRING = {K_STRING, 0, NULL, NULL};
static const s_type_t T_BYTES = {K_BYTES, 0, NULL, NULL};
static const s_type_t T_DUR = {K_DURATION, 0, NULL, NULL};
static const s_type_t T_TS = {K_TIMESTAMP, 0, NULL, NULL};
static const s_type_t T_IP = {K_IP, 0, NULL, NULL};
static const s_type_t T_PA = {K_PARAM, 0, NULL, NULL};
static const s_type_t T_PB = {K_PARAM, 1, NULL, NULL};
static const s_type_t T_LISTA = {K_LIST, 0, &T_PA, NULL};
static const s_type_t T_MAPAB = {K_MAP, 0, &T_PA, &T_PB};
static const s_type_t T_LISTDYN = {K_LIST, 0, &T_DYN, NULL};
static const s_type_t T_MAPDYN = {K_MAP, 0, &T_DYN, &T_DYN};

//  Runtime value kinds: the type kinds that have values, plus error and
//  unknown (an absent parameter under partial evaluation).
enum { V_ERR = 100, V_UNKNOWN = 101 };

typedef struct s_val s_val_t;

typedef struct {
    size_t n;
    s_val_t *items;
} s_list_t;

typedef struct {
    size_t n;
    s_val_t *keys, *vals;
} s_map_t;

typedef struct {
    uint8_t family;             //  4 or 6
    uint8_t addr [16];
    const char *zone;           //  IPv6 zone or NULL
} s_ip_t;

struct s_val {
    uint8_t k;                  //  s_kind_t or V_*
    union {
        bool b;
        int64_t i;
        uint64_t u;
        double d;
        struct { const char *p; size_t n; } s;      //  string, bytes, error message
        struct { int64_t sec; int32_t nsec, off; } ts;  //  off: zone offset, seconds
        int64_t dur;            //  nanoseconds, as Go's time.Duration
        const s_ip_t *ip;
        const s_list_t *list;
        const s_map_t *map;
    };
    int code;                   //  V_ERR: AUTHZ_CEL_E*
};

//  ---------------------------------------------------------------------
//  The syntax tree.

typedef enum {
    N_LIT, N_IDENT, N_PARAM, N_IVAR, N_SELECT, N_HAS, N_CALL, N_AND, N_OR,
    N_COND, N_LIST, N_MAP, N_COMP
} s_node_kind_t;

typedef enum {
    F_UNKNOWN, F_ADD, F_SUB, F_MUL, F_DIV, F_MOD, F_NEG, F_NOT, F_EQ, F_NE,
    F_LT, F_LE, F_GT, F_GE, F_IN, F_INDEX, F_SIZE, F_CONTAINS, F_STARTS,
    F_ENDS, F_MATCHES, F_INT, F_UINT, F_DOUBLE, F_STRING, F_BYTES, F_BOOL,
    F_DURATION, F_TIMESTAMP, F_DYN, F_IPADDRESS, F_IN_CIDR,
    F_FULLYEAR, F_MONTH, F_DAYOFYEAR, F_DAYOFMONTH, F_DATE, F_DAYOFWEEK,
    F_HOURS, F_MINUTES, F_SECONDS, F_MILLIS
} s_fn_t;

typedef enum { M_ALL, M_EXISTS, M_EXISTS_ONE, M_MAP, M_MAP_FILTER, M_FILTER } s_macro_t;

typedef struct s_node s_node_t;
struct s_node {
    uint8_t kind;               //  s_node_kind_t
    uint8_t fn;                 //  N_CALL: s_fn_t; N_COMP: s_macro_t
    bool member;                //  N_CALL: receiver style, args [0] is the target
    bool neg_only;              //  int literal 2^63, valid only negated
    bool paren;                 //  parenthesised
    uint32_t nargs;
    int32_t slot;               //  N_PARAM: parameter; N_IVAR, N_COMP: variable slot
    size_t pos;                 //  byte offset in the source
    const char *name;           //  identifier, field or function name
    s_node_t **args;
    s_val_t lit;                //  N_LIT
    const s_type_t *type;       //  set by the checker
    regex_t *re;                //  F_MATCHES with a constant pattern that compiled
};

typedef struct {
    const char *name;
    const s_type_t *type;
} s_param_t;

struct authz_cel_t {
    s_arena_t arena;            //  nodes, types, names, literals
    char *source;
    s_node_t *root;
    s_param_t *params;
    size_t nparams;
    size_t nslots;              //  comprehension variable slots
    regex_t **regexes;          //  compiled constant patterns, to regfree
    size_t nregexes;
};

static const char *
s_fn_name (int fn)
{
    static const char *names [] = {
        "?", "_+_", "_-_", "_*_", "_/_", "_%_", "-_", "!_", "_==_", "_!=_",
        "_<_", "_<=_", "_>_", "_>=_", "@in", "_[_]", "size", "contains",
        "startsWith", "endsWith", "matches", "int", "uint", "double",
        "string", "bytes", "bool", "duration", "timestamp", "dyn",
        "ipaddress", "in_cidr", "getFullYear", "getMonth", "getDayOfYear",
        "getDayOfMonth", "getDate", "getDayOfWeek", "getHours", "getMinutes",
        "getSeconds", "getMilliseconds"
    };
    return fn >= 0 && (size_t) fn < sizeof names / sizeof names [0]? names [fn]: "?";
}

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
    char msg [S_MAX_ERRMSG];
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (msg, sizeof msg, fmt, ap);
    va_end (ap);
    s_errf (p->err, p->err_len, "%s at offset %zu", msg, pos);
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
    char *out = s_alloc (&p->cel->arena, p->len - i + 1);
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

static s_node_t *s_parse_expr (s_parser_t *p);

//  A new node of kind at pos with room for nargs children.
static s_node_t *
s_node (s_parser_t *p, int kind, size_t pos, uint32_t nargs)
{
    if (p->rc)
        return NULL;
    if (++p->nodes > AUTHZ_CEL_MAX_NODES) {
        s_perr (p, AUTHZ_CEL_ELIMIT, pos, "expression has more than %d nodes", AUTHZ_CEL_MAX_NODES);
        return NULL;
    }
    s_node_t *n = s_alloc (&p->cel->arena, sizeof *n);
    if (n && nargs)
        n->args = s_alloc (&p->cel->arena, nargs * sizeof *n->args);
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
static s_node_t *
s_call (s_parser_t *p, int fn, size_t pos, uint32_t n, s_node_t *a, s_node_t *b)
{
    if (!a || (n > 1 && !b))
        return NULL;
    s_node_t *c = s_node (p, N_CALL, pos, n);
    if (c) {
        c->fn = (uint8_t) fn;
        c->args [0] = a;
        if (n > 1)
            c->args [1] = b;
    }
    return c;
}

//  Parse a comma-separated list of expressions up to close (the opening
//  token has been consumed); stores up to max in out, sets *count.
//  allow_trailing: a trailing comma before close is accepted.
static bool
s_parse_exprs (s_parser_t *p, s_tok_kind_t close, s_node_t ***out, uint32_t *count, bool allow_trailing)
{
    size_t cap = 0, n = 0;
    s_node_t **v = NULL;
    while (p->tok.k != close && !p->rc) {
        s_node_t *e = s_parse_expr (p);
        if (!e)
            return false;
        if (n == cap) {
            size_t ncap = cap? cap * 2: 4;
            s_node_t **nv = s_alloc (&p->cel->arena, ncap * sizeof *nv);
            if (!nv) {
                s_perr (p, AUTHZ_CEL_ELIMIT, p->tok.pos, "out of memory");
                return false;
            }
            if (n)
                memcpy (nv, v, n * sizeof *nv);
            v = nv;
            cap = ncap;
        }
        v [n++] = e;
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
        const char *fname = s_fn_name (fn);
        if (strlen (fname) == n && !memcmp (fname, name, n))
            return fn;
    }
    return F_UNKNOWN;
}

//  Build a call or, for has/all/exists/exists_one/map/filter with the
//  right shape, the macro it stands for. target is NULL for a global call.
static s_node_t *
s_make_call (s_parser_t *p, size_t pos, const char *name, size_t nlen,
             s_node_t *target, s_node_t **args, uint32_t nargs)
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
        s_node_t *c = s_node (p, N_COMP, pos, nargs);
        if (!c)
            return NULL;
        c->fn = (uint8_t) macro;
        c->name = args [0]->name;
        c->args [0] = target;
        for (uint32_t i = 1; i < nargs; i++)
            c->args [i] = args [i];
        return c;
    }
    s_node_t *c = s_node (p, N_CALL, pos, nargs + (target? 1: 0));
    if (!c)
        return NULL;
    c->fn = (uint8_t) s_fn_lookup (name, nlen);
    c->name = s_strndup (&p->cel->arena, name, nlen);
    c->member = target != NULL;
    if (target)
        c->args [0] = target;
    for (uint32_t i = 0; i < nargs; i++)
        c->args [i + (target? 1: 0)] = args [i];
    return c;
}

//  Primary: literal, identifier, global call, (expr), [list], {map}.
static s_node_t *
s_parse_primary (s_parser_t *p)
{
    s_tok_t t = p->tok;
    s_node_t *n = NULL;
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
                s_node_t **args = NULL;
                uint32_t nargs = 0;
                if (!s_parse_exprs (p, TK_RPAREN, &args, &nargs, false))
                    return NULL;
                return s_make_call (p, t.pos, t.s, t.n, NULL, args, nargs);
            }
            n = s_node (p, N_IDENT, t.pos, 0);
            if (n && !(n->name = s_strndup (&p->cel->arena, t.s, t.n)))
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
            s_node_t **args = NULL;
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
                s_node_t *k = s_parse_expr (p);
                if (!k || !s_expect (p, TK_COLON, "':'"))
                    return NULL;
                s_node_t *v = s_parse_expr (p);
                if (!v)
                    return NULL;
                if (n->nargs + 2 > cap) {
                    size_t ncap = cap? cap * 2: 8;
                    s_node_t **nv = s_alloc (&p->cel->arena, ncap * sizeof *nv);
                    if (!nv) {
                        s_perr (p, AUTHZ_CEL_ELIMIT, t.pos, "out of memory");
                        return NULL;
                    }
                    if (n->nargs)
                        memcpy (nv, n->args, n->nargs * sizeof *nv);
                    n->args = nv;
                    cap = ncap;
                }
                n->args [n->nargs++] = k;
                n->args [n->nargs++] = v;
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
static s_node_t *
s_parse_member (s_parser_t *p)
{
    s_node_t *n = s_parse_primary (p);
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
            s_node_t *i = s_parse_expr (p);
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
            s_node_t **args = NULL;
            uint32_t nargs = 0;
            if (!s_parse_exprs (p, TK_RPAREN, &args, &nargs, false))
                return NULL;
            n = s_make_call (p, f.pos, fname, flen, n, args, nargs);
            continue;
        }
        s_node_t *sel = s_node (p, N_SELECT, f.pos, 1);
        if (!sel)
            return NULL;
        sel->args [0] = n;
        if (!(sel->name = s_strndup (&p->cel->arena, fname, flen))) {
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
static s_node_t *
s_parse_unary (s_parser_t *p)
{
    s_tok_kind_t op = p->tok.k;
    if (op != TK_NOT && op != TK_MINUS) {
        s_node_t *n = s_parse_member (p);
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
    s_node_t *n = s_parse_member (p);
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
static s_node_t *
s_parse_binary (s_parser_t *p, int level)
{
    s_node_t *n = level == 0? s_parse_unary (p): s_parse_binary (p, level - 1);
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
        s_node_t *r = level == 0? s_parse_unary (p): s_parse_binary (p, level - 1);
        n = s_call (p, fn, t.pos, 2, n, r);
    }
    return p->rc? NULL: n;
}

//  A run of && (or ||) becomes one node with all operands.
static s_node_t *
s_parse_logic (s_parser_t *p, bool is_or)
{
    s_node_t *first = is_or? s_parse_logic (p, false): s_parse_binary (p, 2);
    s_tok_kind_t op = is_or? TK_OR: TK_AND;
    if (!first || p->tok.k != op)
        return first;
    s_node_t *n = s_node (p, is_or? N_OR: N_AND, p->tok.pos, 0);
    size_t cap = 0;
    s_node_t *e = first;
    while (n && e) {
        if (n->nargs == cap) {
            size_t ncap = cap? cap * 2: 4;
            s_node_t **nv = s_alloc (&p->cel->arena, ncap * sizeof *nv);
            if (!nv) {
                s_perr (p, AUTHZ_CEL_ELIMIT, n->pos, "out of memory");
                return NULL;
            }
            if (n->nargs)
                memcpy (nv, n->args, n->nargs * sizeof *nv);
            n->args = nv;
            cap = ncap;
        }
        n->args [n->nargs++] = e;
        if (!s_accept (p, op))
            break;
        e = is_or? s_parse_logic (p, false): s_parse_binary (p, 2);
    }
    return p->rc? NULL: n;
}

//  Expression: or [? or : expr]. Nesting is bounded here.
static s_node_t *
s_parse_expr (s_parser_t *p)
{
    if (++p->depth > AUTHZ_CEL_MAX_DEPTH) {
        s_perr (p, AUTHZ_CEL_ELIMIT, p->tok.pos, "expression nested deeper than %d", AUTHZ_CEL_MAX_DEPTH);
        return NULL;
    }
    s_node_t *n = s_parse_logic (p, true);
    if (n && p->tok.k == TK_QUESTION) {
        size_t pos = p->tok.pos;
        s_next (p);
        s_node_t *a = s_parse_logic (p, true);
        if (!a || !s_expect (p, TK_COLON, "':'"))
            return NULL;
        s_node_t *b = s_parse_expr (p);
        s_node_t *c = b? s_node (p, N_COND, pos, 3): NULL;
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
//  Type checker.

typedef struct {
    uint8_t fn;
    uint8_t member;             //  1: receiver style only; 0: global only
    uint8_t n;
    const s_type_t *a [3];
    const s_type_t *r;
} s_overload_t;

#define G(fn, r, ...) {fn, 0, sizeof ((const s_type_t *[]) {__VA_ARGS__}) / sizeof (const s_type_t *), {__VA_ARGS__}, r}
#define M(fn, r, ...) {fn, 1, sizeof ((const s_type_t *[]) {__VA_ARGS__}) / sizeof (const s_type_t *), {__VA_ARGS__}, r}

//  cel-go's standard declarations for the supported functions (cross-type
//  numeric comparisons disabled, as in OpenFGA), plus OpenFGA's ipaddress.
static const s_overload_t s_overloads [] = {
    G (F_ADD, &T_INT, &T_INT, &T_INT), G (F_ADD, &T_UINT, &T_UINT, &T_UINT),
    G (F_ADD, &T_DOUBLE, &T_DOUBLE, &T_DOUBLE), G (F_ADD, &T_STRING, &T_STRING, &T_STRING),
    G (F_ADD, &T_BYTES, &T_BYTES, &T_BYTES), G (F_ADD, &T_LISTA, &T_LISTA, &T_LISTA),
    G (F_ADD, &T_TS, &T_TS, &T_DUR), G (F_ADD, &T_TS, &T_DUR, &T_TS),
    G (F_ADD, &T_DUR, &T_DUR, &T_DUR),
    G (F_SUB, &T_INT, &T_INT, &T_INT), G (F_SUB, &T_UINT, &T_UINT, &T_UINT),
    G (F_SUB, &T_DOUBLE, &T_DOUBLE, &T_DOUBLE), G (F_SUB, &T_DUR, &T_TS, &T_TS),
    G (F_SUB, &T_TS, &T_TS, &T_DUR), G (F_SUB, &T_DUR, &T_DUR, &T_DUR),
    G (F_MUL, &T_INT, &T_INT, &T_INT), G (F_MUL, &T_UINT, &T_UINT, &T_UINT),
    G (F_MUL, &T_DOUBLE, &T_DOUBLE, &T_DOUBLE),
    G (F_DIV, &T_INT, &T_INT, &T_INT), G (F_DIV, &T_UINT, &T_UINT, &T_UINT),
    G (F_DIV, &T_DOUBLE, &T_DOUBLE, &T_DOUBLE),
    G (F_MOD, &T_INT, &T_INT, &T_INT), G (F_MOD, &T_UINT, &T_UINT, &T_UINT),
    G (F_NEG, &T_INT, &T_INT), G (F_NEG, &T_DOUBLE, &T_DOUBLE),
    G (F_NOT, &T_BOOL, &T_BOOL),
    G (F_EQ, &T_BOOL, &T_PA, &T_PA), G (F_NE, &T_BOOL, &T_PA, &T_PA),
    #define S_ORD(fn) \
    G (fn, &T_BOOL, &T_BOOL, &T_BOOL), G (fn, &T_BOOL, &T_INT, &T_INT), \
    G (fn, &T_BOOL, &T_UINT, &T_UINT), G (fn, &T_BOOL, &T_DOUBLE, &T_DOUBLE), \
    G (fn, &T_BOOL, &T_STRING, &T_STRING), G (fn, &T_BOOL, &T_BYTES, &T_BYTES), \
    G (fn, &T_BOOL, &T_TS, &T_TS), G (fn, &T_BOOL, &T_DUR, &T_DUR)
    S_ORD (F_LT), S_ORD (F_LE), S_ORD (F_GT), S_ORD (F_GE),
    #undef S_ORD
    G (F_IN, &T_BOOL, &T_PA, &T_LISTA), G (F_IN, &T_BOOL, &T_PA, &T_MAPAB),
    G (F_INDEX, &T_PA, &T_LISTA, &T_INT), G (F_INDEX, &T_PB, &T_MAPAB, &T_PA),
    G (F_SIZE, &T_INT, &T_STRING), G (F_SIZE, &T_INT, &T_BYTES),
    G (F_SIZE, &T_INT, &T_LISTA), G (F_SIZE, &T_INT, &T_MAPAB),
    M (F_SIZE, &T_INT, &T_STRING), M (F_SIZE, &T_INT, &T_BYTES),
    M (F_SIZE, &T_INT, &T_LISTA), M (F_SIZE, &T_INT, &T_MAPAB),
    M (F_CONTAINS, &T_BOOL, &T_STRING, &T_STRING),
    M (F_STARTS, &T_BOOL, &T_STRING, &T_STRING),
    M (F_ENDS, &T_BOOL, &T_STRING, &T_STRING),
    G (F_MATCHES, &T_BOOL, &T_STRING, &T_STRING), M (F_MATCHES, &T_BOOL, &T_STRING, &T_STRING),
    G (F_INT, &T_INT, &T_INT), G (F_INT, &T_INT, &T_UINT), G (F_INT, &T_INT, &T_DOUBLE),
    G (F_INT, &T_INT, &T_STRING), G (F_INT, &T_INT, &T_TS),
    G (F_UINT, &T_UINT, &T_INT), G (F_UINT, &T_UINT, &T_UINT),
    G (F_UINT, &T_UINT, &T_DOUBLE), G (F_UINT, &T_UINT, &T_STRING),
    G (F_DOUBLE, &T_DOUBLE, &T_INT), G (F_DOUBLE, &T_DOUBLE, &T_UINT),
    G (F_DOUBLE, &T_DOUBLE, &T_DOUBLE), G (F_DOUBLE, &T_DOUBLE, &T_STRING),
    G (F_STRING, &T_STRING, &T_INT), G (F_STRING, &T_STRING, &T_UINT),
    G (F_STRING, &T_STRING, &T_DOUBLE), G (F_STRING, &T_STRING, &T_BOOL),
    G (F_STRING, &T_STRING, &T_STRING), G (F_STRING, &T_STRING, &T_BYTES),
    G (F_STRING, &T_STRING, &T_TS), G (F_STRING, &T_STRING, &T_DUR),
    G (F_BYTES, &T_BYTES, &T_BYTES), G (F_BYTES, &T_BYTES, &T_STRING),
    G (F_BOOL, &T_BOOL, &T_BOOL), G (F_BOOL, &T_BOOL, &T_STRING),
    G (F_DURATION, &T_DUR, &T_DUR), G (F_DURATION, &T_DUR, &T_STRING),
    G (F_TIMESTAMP, &T_TS, &T_TS), G (F_TIMESTAMP, &T_TS, &T_STRING),
    G (F_TIMESTAMP, &T_TS, &T_INT),
    G (F_DYN, &T_DYN, &T_PA),
    G (F_IPADDRESS, &T_IP, &T_STRING),
    M (F_IN_CIDR, &T_BOOL, &T_IP, &T_STRING),
    #define S_TIME(fn) M (fn, &T_INT, &T_TS), M (fn, &T_INT, &T_TS, &T_STRING)
    S_TIME (F_FULLYEAR), S_TIME (F_MONTH), S_TIME (F_DAYOFYEAR),
    S_TIME (F_DAYOFMONTH), S_TIME (F_DATE), S_TIME (F_DAYOFWEEK),
    S_TIME (F_HOURS), S_TIME (F_MINUTES), S_TIME (F_SECONDS), S_TIME (F_MILLIS),
    #undef S_TIME
    M (F_HOURS, &T_INT, &T_DUR), M (F_MINUTES, &T_INT, &T_DUR),
    M (F_SECONDS, &T_INT, &T_DUR), M (F_MILLIS, &T_INT, &T_DUR),
};
#undef G
#undef M

typedef struct {
    authz_cel_t *cel;
    int rc;
    char *err;
    size_t err_len;
    struct { const char *name; const s_type_t *type; } scope [AUTHZ_CEL_MAX_DEPTH + 1];
    int nscope;
} s_checker_t;

//  Render t as cel-go spells types in messages.
static void
s_type_str (const s_type_t *t, char *buf, size_t len)
{
    static const char *names [] = {
        "dyn", "null_type", "bool", "int", "uint", "double", "string", "bytes",
        "google.protobuf.Duration", "google.protobuf.Timestamp", "IPAddress"
    };
    if (t->k == K_LIST || t->k == K_MAP) {
        char a [96] = "", b [96] = "";
        s_type_str (t->p1, a, sizeof a);
        if (t->k == K_MAP)
            s_type_str (t->p2, b, sizeof b);
        snprintf (buf, len, t->k == K_LIST? "list(%s)": "map(%s, %s)", a, b);
    }
    else
        snprintf (buf, len, "%s", t->k < sizeof names / sizeof names [0]? names [t->k]: "?");
}

//  Record the first type error.
static void
s_cerr (s_checker_t *ck, int rc, const s_node_t *n, const char *fmt, ...)
    __attribute__((format (printf, 4, 5)));
static void
s_cerr (s_checker_t *ck, int rc, const s_node_t *n, const char *fmt, ...)
{
    if (ck->rc)
        return;
    ck->rc = rc;
    char msg [S_MAX_ERRMSG];
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (msg, sizeof msg, fmt, ap);
    va_end (ap);
    s_errf (ck->err, ck->err_len, "%s at offset %zu", msg, n->pos);
}

static bool
s_nullable (const s_type_t *t)
{
    return t->k == K_NULL || t->k == K_DYN || t->k == K_DURATION
        || t->k == K_TIMESTAMP || t->k == K_IP;
}

static bool
s_type_eq (const s_type_t *a, const s_type_t *b)
{
    if (a->k != b->k)
        return false;
    if (a->k == K_LIST)
        return s_type_eq (a->p1, b->p1);
    if (a->k == K_MAP)
        return s_type_eq (a->p1, b->p1) && s_type_eq (a->p2, b->p2);
    return true;
}

//  Is act assignable to pattern pat, binding type parameters in sub?
//  Follows cel-go: dyn is assignable both ways, null only to nullable
//  types, a bound parameter may widen (null to a nullable type, any to dyn).
static bool
s_unify (const s_type_t *pat, const s_type_t *act, const s_type_t **sub)
{
    if (pat->k == K_PARAM) {
        const s_type_t *cur = sub [pat->idx];
        if (!cur || cur->k == K_PARAM) {
            sub [pat->idx] = act;
            return true;
        }
        const s_type_t *tmp [2] = {NULL, NULL};
        if (!s_unify (cur, act, tmp))
            return false;
        if (act->k == K_DYN || (cur->k == K_NULL && act->k != K_NULL))
            sub [pat->idx] = act;
        return true;
    }
    if (pat->k == K_DYN || act->k == K_DYN)
        return true;
    if (pat->k == K_NULL)
        return s_nullable (act);
    if (act->k == K_NULL)
        return s_nullable (pat);
    if (pat->k != act->k)
        return false;
    if (pat->k == K_LIST)
        return s_unify (pat->p1, act->p1, sub);
    if (pat->k == K_MAP)
        return s_unify (pat->p1, act->p1, sub) && s_unify (pat->p2, act->p2, sub);
    return true;
}

//  A new type in the compile arena (NULL on exhaustion).
static const s_type_t *
s_type_new (s_checker_t *ck, int k, const s_type_t *p1, const s_type_t *p2)
{
    s_type_t *t = s_alloc (&ck->cel->arena, sizeof *t);
    if (!t)
        return NULL;
    t->k = (uint8_t) k;
    t->p1 = p1;
    t->p2 = p2;
    return t;
}

//  Substitute bound parameters in pat (unbound ones become dyn).
static const s_type_t *
s_subst (s_checker_t *ck, const s_type_t *pat, const s_type_t **sub)
{
    if (pat->k == K_PARAM)
        return sub [pat->idx] && sub [pat->idx]->k != K_PARAM? sub [pat->idx]: &T_DYN;
    if (pat->k == K_LIST) {
        const s_type_t *e = s_subst (ck, pat->p1, sub);
        return e? s_type_new (ck, K_LIST, e, NULL): NULL;
    }
    if (pat->k == K_MAP) {
        const s_type_t *k = s_subst (ck, pat->p1, sub), *v = s_subst (ck, pat->p2, sub);
        return k && v? s_type_new (ck, K_MAP, k, v): NULL;
    }
    return pat;
}

//  The type of a literal list's elements or map's keys/values: one type
//  if all agree (null joins a nullable type), dyn otherwise.
static const s_type_t *
s_join (const s_type_t *a, const s_type_t *b)
{
    if (!a)
        return b;
    if (s_type_eq (a, b))
        return a;
    if (a->k == K_NULL && s_nullable (b))
        return b;
    if (b->k == K_NULL && s_nullable (a))
        return a;
    return &T_DYN;
}

static const s_type_t *s_check (s_checker_t *ck, s_node_t *n, int depth);

//  Resolve a call against the overload table.
static const s_type_t *
s_check_call (s_checker_t *ck, s_node_t *n, int depth)
{
    if (n->fn == F_UNKNOWN) {
        s_cerr (ck, AUTHZ_CEL_ETYPE, n, "undeclared reference to '%s'", n->name? n->name: "?");
        return NULL;
    }
    const s_type_t *at [3];
    if (n->nargs > 3) {
        s_cerr (ck, AUTHZ_CEL_ETYPE, n, "found no matching overload for '%s'", s_fn_name (n->fn));
        return NULL;
    }
    for (uint32_t i = 0; i < n->nargs; i++)
        if (!(at [i] = s_check (ck, n->args [i], depth + 1)))
            return NULL;
    const s_type_t *result = NULL;
    bool member = n->member;
    for (size_t o = 0; o < sizeof s_overloads / sizeof s_overloads [0]; o++) {
        const s_overload_t *ov = &s_overloads [o];
        if (ov->fn != n->fn || ov->member != member || ov->n != n->nargs)
            continue;
        const s_type_t *sub [2] = {NULL, NULL};
        bool ok = true;
        for (uint32_t i = 0; i < n->nargs && ok; i++)
            ok = s_unify (ov->a [i], at [i], sub);
        if (!ok)
            continue;
        const s_type_t *r = s_subst (ck, ov->r, sub);
        if (!r) {
            s_cerr (ck, AUTHZ_CEL_ELIMIT, n, "out of memory");
            return NULL;
        }
        result = !result || s_type_eq (result, r)? r: &T_DYN;
    }
    if (!result) {
        char args [200] = "";
        size_t used = 0;
        for (uint32_t i = 0; i < n->nargs && used < sizeof args - 1; i++) {
            char t [96];
            s_type_str (at [i], t, sizeof t);
            used += (size_t) snprintf (args + used, sizeof args - used, "%s%s", i? ", ": "", t);
        }
        s_cerr (ck, AUTHZ_CEL_ETYPE, n, "found no matching overload for '%s' applied to '%s(%s)'",
                s_fn_name (n->fn), member? "receiver ": "", args);
    }
    return result;
}

//  Require t to be bool (or dyn) for the operator named op.
static bool
s_want_bool (s_checker_t *ck, const s_node_t *n, const s_type_t *t, const char *op)
{
    if (t->k == K_BOOL || t->k == K_DYN)
        return true;
    char ts [96];
    s_type_str (t, ts, sizeof ts);
    s_cerr (ck, AUTHZ_CEL_ETYPE, n, "found no matching overload for '%s' applied to '(%s)'", op, ts);
    return false;
}

//  Check a comprehension (expanded macro).
static const s_type_t *
s_check_comp (s_checker_t *ck, s_node_t *n, int depth)
{
    const s_type_t *rt = s_check (ck, n->args [0], depth + 1);
    if (!rt)
        return NULL;
    const s_type_t *vt = rt->k == K_LIST || rt->k == K_MAP? rt->p1: rt->k == K_DYN? &T_DYN: NULL;
    if (!vt) {
        char ts [96];
        s_type_str (rt, ts, sizeof ts);
        s_cerr (ck, AUTHZ_CEL_ETYPE, n, "expression of type '%s' cannot be range of a comprehension", ts);
        return NULL;
    }
    //  the iteration variable is visible in the other arguments only
    n->slot = ck->nscope;
    ck->scope [ck->nscope].name = n->name;
    ck->scope [ck->nscope++].type = vt;
    if ((size_t) ck->nscope > ck->cel->nslots)
        ck->cel->nslots = (size_t) ck->nscope;
    const s_type_t *at [3] = {NULL, NULL, NULL};
    bool ok = true;
    for (uint32_t i = 1; i < n->nargs && ok; i++)
        ok = (at [i] = s_check (ck, n->args [i], depth + 1)) != NULL;
    ck->nscope--;
    if (!ok)
        return NULL;
    bool pred = n->fn != M_MAP;
    if (pred && !s_want_bool (ck, n->args [1], at [1], "_&&_"))
        return NULL;
    const s_type_t *res = &T_BOOL;
    if (n->fn == M_MAP)
        res = s_type_new (ck, K_LIST, at [1], NULL);
    if (n->fn == M_MAP_FILTER)
        res = s_type_new (ck, K_LIST, at [2], NULL);
    if (n->fn == M_FILTER)
        res = s_type_new (ck, K_LIST, vt, NULL);
    if (!res)
        s_cerr (ck, AUTHZ_CEL_ELIMIT, n, "out of memory");
    return res;
}

//  Find the variable a comprehension in scope declares with this name:
//  returns the comprehension's slot or -1.
static int
s_scope_find (const s_checker_t *ck, const char *name)
{
    for (int i = ck->nscope - 1; i >= 0; i--)
        if (!strcmp (ck->scope [i].name, name))
            return i;
    return -1;
}

//  Type-check n (and its children), resolving identifiers. Sets n->type.
static const s_type_t *
s_check (s_checker_t *ck, s_node_t *n, int depth)
{
    if (ck->rc)
        return NULL;
    if (depth > AUTHZ_CEL_MAX_DEPTH) {
        s_cerr (ck, AUTHZ_CEL_ELIMIT, n, "expression nested deeper than %d", AUTHZ_CEL_MAX_DEPTH);
        return NULL;
    }
    const s_type_t *t = NULL;
    switch (n->kind) {
        case N_LIT: {
            static const s_type_t *lit [] = {
                [K_NULL] = &T_NULL, [K_BOOL] = &T_BOOL, [K_INT] = &T_INT,
                [K_UINT] = &T_UINT, [K_DOUBLE] = &T_DOUBLE, [K_STRING] = &T_STRING,
                [K_BYTES] = &T_BYTES
            };
            t = lit [n->lit.k];
            break;
        }
        case N_IDENT: {
            int slot = s_scope_find (ck, n->name);
            if (slot >= 0) {
                n->kind = N_IVAR;
                n->slot = slot;
                t = ck->scope [slot].type;
                break;
            }
            for (size_t i = 0; i < ck->cel->nparams; i++)
                if (!strcmp (ck->cel->params [i].name, n->name)) {
                    n->kind = N_PARAM;
                    n->slot = (int32_t) i;
                    t = ck->cel->params [i].type;
                }
            if (!t)
                s_cerr (ck, AUTHZ_CEL_ETYPE, n, "undeclared reference to '%s'", n->name);
            break;
        }
        case N_SELECT: case N_HAS: {
            const s_type_t *ot = s_check (ck, n->args [0], depth + 1);
            if (!ot)
                return NULL;
            if (ot->k == K_MAP)
                t = ot->p2;
            else
            if (ot->k == K_DYN)
                t = &T_DYN;
            else {
                char ts [96];
                s_type_str (ot, ts, sizeof ts);
                s_cerr (ck, AUTHZ_CEL_ETYPE, n, "type '%s' does not support field selection", ts);
                return NULL;
            }
            if (n->kind == N_HAS)
                t = &T_BOOL;
            break;
        }
        case N_CALL:
            t = s_check_call (ck, n, depth);
            break;
        case N_AND: case N_OR:
            for (uint32_t i = 0; i < n->nargs; i++) {
                const s_type_t *at = s_check (ck, n->args [i], depth + 1);
                if (!at || !s_want_bool (ck, n->args [i], at, n->kind == N_AND? "_&&_": "_||_"))
                    return NULL;
            }
            t = &T_BOOL;
            break;
        case N_COND: {
            const s_type_t *c = s_check (ck, n->args [0], depth + 1);
            if (!c || !s_want_bool (ck, n->args [0], c, "_?_:_"))
                return NULL;
            const s_type_t *a = s_check (ck, n->args [1], depth + 1);
            const s_type_t *b = a? s_check (ck, n->args [2], depth + 1): NULL;
            if (!b)
                return NULL;
            const s_type_t *sub [2] = {NULL, NULL};
            if (!s_unify (&T_PA, a, sub) || !s_unify (&T_PA, b, sub)) {
                char as [96], bs [96];
                s_type_str (a, as, sizeof as);
                s_type_str (b, bs, sizeof bs);
                s_cerr (ck, AUTHZ_CEL_ETYPE, n, "found no matching overload for '_?_:_' applied to '(bool, %s, %s)'", as, bs);
                return NULL;
            }
            t = s_subst (ck, &T_PA, sub);
            break;
        }
        case N_LIST: case N_MAP: {
            const s_type_t *et [2] = {NULL, NULL};
            bool is_map = n->kind == N_MAP;
            for (uint32_t i = 0; i < n->nargs; i++) {
                const s_type_t *at = s_check (ck, n->args [i], depth + 1);
                if (!at)
                    return NULL;
                int w = is_map? (int) (i % 2): 0;
                et [w] = s_join (et [w], at);
            }
            t = s_type_new (ck, is_map? K_MAP: K_LIST, et [0]? et [0]: &T_DYN,
                            is_map? (et [1]? et [1]: &T_DYN): NULL);
            if (!t)
                s_cerr (ck, AUTHZ_CEL_ELIMIT, n, "out of memory");
            break;
        }
        case N_COMP:
            t = s_check_comp (ck, n, depth);
            break;
        default:
            s_cerr (ck, AUTHZ_CEL_ETYPE, n, "unsupported expression");
    }
    n->type = t;
    return t;
}

//  ---------------------------------------------------------------------
//  Runtime helpers: time, durations, IP addresses, formatting, regex.

#define S_TS_MIN  (-62135596800LL)      //  0001-01-01T00:00:00Z
#define S_TS_MAX  (253402300799LL)      //  9999-12-31T23:59:59Z
#define S_NS      1000000000LL

//  Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant).
static int64_t
s_days_from_civil (int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0? y: y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2? -3: 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

//  The date of a day number (inverse of s_days_from_civil).
static void
s_civil_from_days (int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0? z: z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int) (doy - (153 * mp + 2) / 5 + 1);
    *m = (int) (mp < 10? mp + 3: mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static bool
s_leap (int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

//  Parse exactly n decimal digits at s into *v.
static bool
s_digits (const char *s, int n, int *v)
{
    *v = 0;
    for (int i = 0; i < n; i++) {
        if (s [i] < '0' || s [i] > '9')
            return false;
        *v = *v * 10 + (s [i] - '0');
    }
    return true;
}

//  Parse an RFC 3339 timestamp as Go's time.Parse(time.RFC3339) does:
//  YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM). Also requires CEL's range.
static bool
s_parse_rfc3339 (const char *s, size_t n, s_val_t *out)
{
    int y, mo, d, h, mi, se, oh = 0, om = 0, off = 0;
    if (n < 20 || !s_digits (s, 4, &y) || s [4] != '-' || !s_digits (s + 5, 2, &mo)
    ||  s [7] != '-' || !s_digits (s + 8, 2, &d) || s [10] != 'T'
    ||  !s_digits (s + 11, 2, &h) || s [13] != ':' || !s_digits (s + 14, 2, &mi)
    ||  s [16] != ':' || !s_digits (s + 17, 2, &se))
        return false;
    static const int mdays [] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (mo < 1 || mo > 12 || d < 1 || d > mdays [mo - 1] + (mo == 2 && s_leap (y))
    ||  h > 23 || mi > 59 || se > 59)
        return false;
    size_t i = 19;
    int64_t nsec = 0;
    if (i < n && (s [i] == '.' || s [i] == ',')) {
        size_t j = ++i;
        while (i < n && s [i] >= '0' && s [i] <= '9') {
            if (i - j < 9)
                nsec = nsec * 10 + (s [i] - '0');
            i++;
        }
        if (i == j)
            return false;
        for (size_t k = i - j; k < 9; k++)
            nsec *= 10;
    }
    if (i < n && s [i] == 'Z')
        i++;
    else
    if (i + 6 == n && (s [i] == '+' || s [i] == '-') && s_digits (s + i + 1, 2, &oh)
    &&  s [i + 3] == ':' && s_digits (s + i + 4, 2, &om) && oh < 24 && om < 60) {
        off = (oh * 3600 + om * 60) * (s [i] == '-'? -1: 1);
        i += 6;
    }
    else
        return false;
    if (i != n)
        return false;
    int64_t sec = s_days_from_civil (y, mo, d) * 86400 + h * 3600 + mi * 60 + se - off;
    if (sec < S_TS_MIN || sec > S_TS_MAX)
        return false;
    out->k = K_TIMESTAMP;
    out->ts.sec = sec;
    out->ts.nsec = (int32_t) nsec;
    out->ts.off = off;
    return true;
}

//  Parse a duration as Go's time.ParseDuration does: [-+]?(number unit)+
//  with units ns us µs μs ms s m h, "0" alone allowed; int64 nanoseconds.
static bool
s_parse_duration (const char *s, size_t n, int64_t *out)
{
    size_t i = 0;
    bool neg = false;
    uint64_t total = 0;
    if (i < n && (s [i] == '-' || s [i] == '+'))
        neg = s [i++] == '-';
    if (n - i == 1 && s [i] == '0') {
        *out = 0;
        return true;
    }
    if (i == n)
        return false;
    while (i < n) {
        if (!(s [i] == '.' || (s [i] >= '0' && s [i] <= '9')))
            return false;
        uint64_t v = 0, f = 0;
        double scale = 1;
        size_t start = i;
        while (i < n && s [i] >= '0' && s [i] <= '9') {
            if (v > (UINT64_C (1) << 63) / 10)
                return false;
            v = v * 10 + (uint64_t) (s [i++] - '0');
            if (v > UINT64_C (1) << 63)
                return false;
        }
        bool pre = i > start, post = false;
        if (i < n && s [i] == '.') {
            i++;
            size_t fs = i;
            bool overflow = false;
            while (i < n && s [i] >= '0' && s [i] <= '9') {
                if (!overflow) {
                    if (f > (UINT64_C (1) << 63) / 10)
                        overflow = true;
                    else {
                        f = f * 10 + (uint64_t) (s [i] - '0');
                        scale *= 10;
                        if (f > UINT64_C (1) << 63)
                            overflow = true;
                    }
                }
                i++;
            }
            post = i > fs;
        }
        if (!pre && !post)
            return false;
        size_t us = i;
        while (i < n && s [i] != '.' && !(s [i] >= '0' && s [i] <= '9'))
            i++;
        size_t ul = i - us;
        const char *u = s + us;
        uint64_t unit = 0;
        if (ul == 2 && !memcmp (u, "ns", 2)) unit = 1;
        else if (ul == 2 && !memcmp (u, "us", 2)) unit = 1000;
        else if (ul == 3 && (!memcmp (u, "\xC2\xB5s", 3) || !memcmp (u, "\xCE\xBCs", 3))) unit = 1000;
        else if (ul == 2 && !memcmp (u, "ms", 2)) unit = 1000000;
        else if (ul == 1 && u [0] == 's') unit = 1000000000ULL;
        else if (ul == 1 && u [0] == 'm') unit = 60000000000ULL;
        else if (ul == 1 && u [0] == 'h') unit = 3600000000000ULL;
        if (!unit)
            return false;
        if (v > (UINT64_C (1) << 63) / unit)
            return false;
        v *= unit;
        if (f > 0) {
            v += (uint64_t) ((double) f * ((double) unit / scale));
            if (v > UINT64_C (1) << 63)
                return false;
        }
        total += v;
        if (total > UINT64_C (1) << 63)
            return false;
    }
    if (neg) {
        *out = total == UINT64_C (1) << 63? INT64_MIN: -(int64_t) total;
        return true;
    }
    if (total > (uint64_t) INT64_MAX)
        return false;
    *out = (int64_t) total;
    return true;
}

//  Parse an IPv4 address strictly (four decimal fields, no leading zeros).
static bool
s_parse_ipv4 (const char *s, size_t n, uint8_t *out)
{
    size_t i = 0;
    for (int f = 0; f < 4; f++) {
        if (f && (i >= n || s [i++] != '.'))
            return false;
        size_t start = i;
        unsigned v = 0;
        while (i < n && s [i] >= '0' && s [i] <= '9' && i - start < 3)
            v = v * 10 + (unsigned) (s [i++] - '0');
        if (i == start || v > 255 || (s [start] == '0' && i - start > 1))
            return false;
        out [f] = (uint8_t) v;
    }
    return i == n;
}

//  Parse an IP address as Go's netip.ParseAddr does (IPv6 may carry a
//  %zone; the zone text is kept in the arena).
static bool
s_parse_ip (const char *s, size_t n, s_ip_t *ip, s_arena_t *a)
{
    char buf [64];
    memset (ip, 0, sizeof *ip);
    if (n == 0 || n >= sizeof buf || memchr (s, 0, n))
        return false;
    if (!memchr (s, ':', n)) {
        ip->family = 4;
        return s_parse_ipv4 (s, n, ip->addr);
    }
    const char *pct = memchr (s, '%', n);
    size_t alen = pct? (size_t) (pct - s): n;
    if (pct) {
        size_t zl = n - alen - 1;
        if (zl == 0 || !(ip->zone = s_strndup (a, pct + 1, zl)))
            return false;
    }
    memcpy (buf, s, alen);
    buf [alen] = 0;
    ip->family = 6;
    return inet_pton (AF_INET6, buf, ip->addr) == 1;
}

//  Is ip inside the CIDR prefix text (Go's netip.ParsePrefix + Contains)?
//  Returns 1, 0, or -1 for a malformed prefix.
static int
s_ip_in_cidr (const s_ip_t *ip, const char *s, size_t n, s_arena_t *a)
{
    const char *slash = n? memrchr (s, '/', n): NULL;
    if (!slash)
        return -1;
    s_ip_t net;
    size_t alen = (size_t) (slash - s), blen = n - alen - 1;
    if (!s_parse_ip (s, alen, &net, a) || net.zone)
        return -1;
    unsigned bits = 0;
    if (blen == 0 || blen > 3 || (slash [1] == '0' && blen > 1))
        return -1;
    for (size_t i = 0; i < blen; i++) {
        if (slash [1 + i] < '0' || slash [1 + i] > '9')
            return -1;
        bits = bits * 10 + (unsigned) (slash [1 + i] - '0');
    }
    if (bits > (net.family == 4? 32u: 128u))
        return -1;
    if (ip->family != net.family || ip->zone)
        return 0;
    for (unsigned b = 0; b < bits; b++) {
        uint8_t mask = (uint8_t) (0x80 >> (b % 8));
        if ((ip->addr [b / 8] & mask) != (net.addr [b / 8] & mask))
            return 0;
    }
    return 1;
}

//  Equal IP addresses: family, bytes and zone.
static bool
s_ip_equal (const s_ip_t *a, const s_ip_t *b)
{
    if (a->family != b->family || memcmp (a->addr, b->addr, a->family == 4? 4: 16))
        return false;
    if (!a->zone || !b->zone)
        return !a->zone && !b->zone;
    return !strcmp (a->zone, b->zone);
}

//  Shortest decimal digits that round-trip |d| (finite, non-zero):
//  digits in dig (NUL-terminated), decimal point position in *dp.
static void
s_shortest (double d, char *dig, int *dp)
{
    char buf [48];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf (buf, sizeof buf, "%.*e", prec - 1, fabs (d));
        if (strtod (buf, NULL) == fabs (d))
            break;
    }
    size_t nd = 0;
    char *e = strchr (buf, 'e');
    for (char *c = buf; c < e; c++)
        if (*c != '.')
            dig [nd++] = *c;
    while (nd > 1 && dig [nd - 1] == '0')
        nd--;
    dig [nd] = 0;
    *dp = atoi (e + 1) + 1;
}

//  Format d as Go's fmt %g (g) or strconv 'f' with shortest precision.
static void
s_fmt_double (double d, bool g, char *out, size_t len)
{
    if (isnan (d)) { snprintf (out, len, "NaN"); return; }
    if (isinf (d)) { snprintf (out, len, "%sInf", d < 0? "-": "+"); return; }
    if (d == 0) { snprintf (out, len, "%s0", signbit (d)? "-": ""); return; }
    char dig [24];
    int dp, nd;
    s_shortest (d, dig, &dp);
    nd = (int) strlen (dig);
    const char *sign = d < 0? "-": "";
    int exp = dp - 1;
    if (g && (exp < -4 || exp >= 6)) {
        snprintf (out, len, "%s%c%s%se%c%02d", sign, dig [0], nd > 1? ".": "",
                  dig + 1, exp < 0? '-': '+', abs (exp));
        return;
    }
    char buf [400];
    size_t b = 0;
    if (dp <= 0) {
        buf [b++] = '0';
        buf [b++] = '.';
        for (int i = 0; i < -dp; i++)
            buf [b++] = '0';
        for (int i = 0; i < nd; i++)
            buf [b++] = dig [i];
    }
    else {
        for (int i = 0; i < dp; i++)
            buf [b++] = i < nd? dig [i]: '0';
        if (nd > dp) {
            buf [b++] = '.';
            for (int i = dp; i < nd; i++)
                buf [b++] = dig [i];
        }
    }
    buf [b] = 0;
    snprintf (out, len, "%s%s", sign, buf);
}

//  Format a timestamp as Go's time.RFC3339Nano in its zone offset.
static void
s_fmt_timestamp (const s_val_t *v, char *out, size_t len)
{
    int64_t local = v->ts.sec + v->ts.off;
    int64_t days = local >= 0? local / 86400: -((-local + 86399) / 86400);
    int64_t rem = local - days * 86400, y;
    int m, d;
    s_civil_from_days (days, &y, &m, &d);
    char frac [16] = "";
    if (v->ts.nsec) {
        snprintf (frac, sizeof frac, ".%09d", (int) v->ts.nsec);
        size_t fl = strlen (frac);
        while (frac [fl - 1] == '0')
            frac [--fl] = 0;
    }
    char zone [16] = "Z";
    if (v->ts.off)
        snprintf (zone, sizeof zone, "%c%02d:%02d", v->ts.off < 0? '-': '+',
                  abs (v->ts.off) / 3600, abs (v->ts.off) % 3600 / 60);
    snprintf (out, len, "%04lld-%02d-%02dT%02d:%02d:%02d%s%s", (long long) y, m, d,
              (int) (rem / 3600), (int) (rem % 3600 / 60), (int) (rem % 60), frac, zone);
}

//  Append s (length n) to the regex output buffer.
static void
s_re_put (char *out, size_t *o, const char *s, size_t n)
{
    memcpy (out + *o, s, n);
    *o += n;
}

//  Add the bytes of a Perl class (d, w, s) to a bracket set.
static void
s_re_class (uint8_t *set, char c)
{
    for (int b = 1; b < 128; b++)
        if ((c == 'd' && isdigit (b)) || (c == 'w' && (isalnum (b) || b == '_'))
        ||  (c == 's' && strchr ("\t\n\f\r ", b)))
            set [b] = 1;
}

//  Translate an RE2 bracket expression at pat [*i] (on '[') into a POSIX
//  one. Returns NULL or an error message.
static const char *
s_re_bracket (const char *pat, size_t n, size_t *i, char *out, size_t *o)
{
    uint8_t set [128] = {0};
    size_t j = *i + 1;
    bool neg = j < n && pat [j] == '^';
    if (neg)
        j++;
    bool first = true;
    while (j < n && (pat [j] != ']' || first)) {
        first = false;
        int lo;
        unsigned char c = (unsigned char) pat [j];
        if (c >= 128 || c == 0)
            return "non-ASCII character in a character class";
        if (c == '[' && j + 1 < n && pat [j + 1] == ':') {
            static const struct { const char *name; int (*fn) (int); } cls [] = {
                {"alnum", isalnum}, {"alpha", isalpha}, {"blank", isblank},
                {"cntrl", iscntrl}, {"digit", isdigit}, {"graph", isgraph},
                {"lower", islower}, {"print", isprint}, {"punct", ispunct},
                {"space", isspace}, {"upper", isupper}, {"xdigit", isxdigit}
            };
            const char *end = j + 2 < n? memchr (pat + j + 2, ']', n - j - 2): NULL;
            if (!end || end [-1] != ':')
                return "malformed character class";
            size_t nl = (size_t) (end - 1 - (pat + j + 2));
            bool found = false;
            for (size_t k = 0; k < sizeof cls / sizeof cls [0]; k++)
                if (strlen (cls [k].name) == nl && !memcmp (cls [k].name, pat + j + 2, nl)) {
                    for (int b = 1; b < 128; b++)
                        if (cls [k].fn (b))
                            set [b] = 1;
                    found = true;
                }
            if (!found)
                return "unknown character class";
            j = (size_t) (end - pat) + 1;
            continue;
        }
        if (c == '\\') {
            if (j + 1 >= n)
                return "trailing backslash";
            char e = pat [j + 1];
            j += 2;
            if (e == 'd' || e == 'w' || e == 's') {
                s_re_class (set, e);
                continue;
            }
            const char *ctl = strchr ("ntrfv", e);
            if (ctl && e)
                lo = "\n\t\r\f\v" [ctl - "ntrfv"];
            else
            if (ispunct ((unsigned char) e))
                lo = e;
            else
                return "unsupported escape in a character class";
        }
        else {
            lo = c;
            j++;
        }
        int hi = lo;
        if (j + 1 < n && pat [j] == '-' && pat [j + 1] != ']') {
            unsigned char h = (unsigned char) pat [j + 1];
            if (h == '\\' || h >= 128 || h == '[')
                return "unsupported range in a character class";
            hi = h;
            j += 2;
            if (hi < lo)
                return "invalid character class range";
        }
        for (int b = lo; b <= hi; b++)
            set [b] = 1;
    }
    if (j >= n)
        return "missing closing ]";
    *i = j + 1;
    //  emit: ']' first, then the rest, then '[', '^', and '-' last
    out [(*o)++] = '[';
    if (neg)
        out [(*o)++] = '^';
    int count = 0;
    for (int b = 1; b < 128; b++)
        count += set [b];
    if (count == 0)
        return "empty character class";
    if (set [']'])
        out [(*o)++] = ']';
    for (int b = 1; b < 128; b++)
        if (set [b] && b != ']' && b != '[' && b != '^' && b != '-')
            out [(*o)++] = (char) b;
    if (set ['['])
        out [(*o)++] = '[';
    if (set ['^']) {
        if (count == 1 && !neg) {
            (*o)--;
            s_re_put (out, o, "\\^", 2);
            return NULL;
        }
        out [(*o)++] = '^';
    }
    if (set ['-'])
        out [(*o)++] = '-';
    out [(*o)++] = ']';
    return NULL;
}

//  Account for a repetition (times copies) of the item just before it in
//  the product of the open group (*inner): group is the repeated group's
//  own product (0 for a single atom), looping whether it holds a * or +.
//  Returns NULL or an error message.
static const char *
s_re_repeat (long *inner, long group, bool looping, long times)
{
    long total = times * (group? group: 1);
    if (total > (looping? S_MAX_RE_LOOP_REPEAT: S_MAX_REPEAT))
        return "bad repetition operator: repetition nested too deeply";
    if (total > *inner)
        *inner = total;
    return NULL;
}

//  Translate an RE2 pattern to POSIX extended syntax (the subset both
//  agree on, plus \d \w \s, (?:...), a leading (?i), and lazy
//  quantifiers, which change no match/no-match answer). out must hold
//  16 * n + 16 bytes. Returns NULL or an error message.
static const char *
s_re_translate (const char *pat, size_t n, char *out, int *cflags)
{
    size_t i = 0, o = 0;
    //  RE2 bounds counted repetition, nested ones multiplied, by 1000;
    //  POSIX engines expand it, so the bound also caps their program size.
    //  glibc also copies a group once for `+` (x+ is x x*), so a `+` on a
    //  group counts as a repetition of 2 here (nested ones would double the
    //  program each). Repeating a group that holds a loop (* + {n,}) costs
    //  glibc far more (its epsilon closures): (()*){1000} takes seconds, so
    //  such groups repeat at most S_MAX_RE_LOOP_REPEAT times.
    //  inner [d]: largest repetition product inside the open group d;
    //  loop [d]: group d holds a loop; closed: the product of the group that
    //  just closed (0: no group), closed_loop: whether it holds a loop;
    //  quantified: the last item was a quantifier (RE2 refuses a second
    //  one, as in x** or x{2}+; glibc would stack them).
    long inner [S_MAX_RE_NEST + 1] = {1};
    bool loop [S_MAX_RE_NEST + 1] = {false};
    long closed = 0;
    bool closed_loop = false, quantified = false;
    int depth = 0;
    *cflags = REG_EXTENDED | REG_NOSUB;
    if (n >= 4 && !memcmp (pat, "(?i)", 4)) {
        *cflags |= REG_ICASE;
        i = 4;
    }
    while (i < n) {
        char c = pat [i];
        long group = closed;    //  a quantifier here applies to that group
        bool looping = closed_loop, stacked = quantified;
        closed = 0;
        quantified = false;
        if (c == 0)
            return "NUL in pattern";
        if (c == '\\') {
            if (i + 1 >= n)
                return "trailing backslash";
            char e = pat [i + 1];
            i += 2;
            const char *ctl = e? strchr ("ntrfv", e): NULL;
            if (e == 'd') s_re_put (out, &o, "[0-9]", 5);
            else if (e == 'D') s_re_put (out, &o, "[^0-9]", 6);
            else if (e == 'w') s_re_put (out, &o, "[0-9A-Za-z_]", 12);
            else if (e == 'W') s_re_put (out, &o, "[^0-9A-Za-z_]", 13);
            else if (e == 's') s_re_put (out, &o, "[\t\n\f\r ]", 7);
            else if (e == 'S') s_re_put (out, &o, "[^\t\n\f\r ]", 8);
            else if (e == 'b' || e == 'B') { out [o++] = '\\'; out [o++] = e; }
            else if (ctl) out [o++] = "\n\t\r\f\v" [ctl - "ntrfv"];
            else if (ispunct ((unsigned char) e)) {
                if (e == '{' || e == '}') {
                    out [o++] = '['; out [o++] = e; out [o++] = ']';
                }
                else { out [o++] = '\\'; out [o++] = e; }
            }
            else
                return "unsupported escape sequence";
            continue;
        }
        if (c == '[') {
            const char *msg = s_re_bracket (pat, n, &i, out, &o);
            if (msg)
                return msg;
            continue;
        }
        if (c == '(') {
            if (depth == S_MAX_RE_NEST)
                return "groups nested too deeply";
            inner [++depth] = 1;
            loop [depth] = false;
            out [o++] = '(';
            i++;
            if (i < n && pat [i] == '?') {
                if (i + 1 < n && pat [i + 1] == ':') {
                    i += 2;
                    continue;
                }
                return "unsupported group flags";
            }
            continue;
        }
        if (c == ')') {
            if (depth == 0)
                return "unexpected )";
            closed = inner [depth];
            closed_loop = loop [depth--];
            loop [depth] |= closed_loop;
            if (closed > inner [depth])
                inner [depth] = closed;
            out [o++] = ')';
            i++;
            continue;
        }
        if (c == '{') {
            //  a repetition {n}, {n,}, {n,m} if well formed; else literal
            size_t j = i + 1;
            long a = -1, b = -1;
            char *end;
            if (j < n && isdigit ((unsigned char) pat [j])) {
                a = strtol (pat + j, &end, 10);
                j = (size_t) (end - pat);
                b = a;
                if (j < n && pat [j] == ',') {
                    j++;
                    b = -2;
                    if (j < n && isdigit ((unsigned char) pat [j])) {
                        b = strtol (pat + j, &end, 10);
                        j = (size_t) (end - pat);
                    }
                }
            }
            if (a >= 0 && j < n && pat [j] == '}') {
                if (stacked)
                    return "invalid nested repetition operator";
                if (a > S_MAX_REPEAT || b > S_MAX_REPEAT || (b >= 0 && b < a))
                    return "invalid repeat count";
                const char *msg = s_re_repeat (&inner [depth], group, looping, b > a? b: a);
                if (msg)
                    return msg;
                loop [depth] |= b == -2;
                s_re_put (out, &o, pat + i, j + 1 - i);
                i = j + 1;
                if (i < n && pat [i] == '?')
                    i++;
                quantified = true;
                continue;
            }
            s_re_put (out, &o, "[{]", 3);
            i++;
            continue;
        }
        if (c == '}') {
            s_re_put (out, &o, "[}]", 3);
            i++;
            continue;
        }
        out [o++] = c;
        i++;
        if (c == '*' || c == '+' || c == '?') {
            if (stacked)
                return "invalid nested repetition operator";
            const char *msg = c == '+' && group? s_re_repeat (&inner [depth], group, looping, 2): NULL;
            if (msg)
                return msg;
            loop [depth] |= c != '?';
            quantified = true;
            if (i < n && pat [i] == '?')
                i++;
        }
    }
    if (depth)
        return "missing )";
    out [o] = 0;
    return NULL;
}

//  Compile an RE2-style pattern into re. Returns NULL or an error message
//  (in msg, of msg_len bytes).
static const char *
s_re_compile (const char *pat, size_t n, regex_t *re, char *msg, size_t msg_len)
{
    if (n > AUTHZ_CEL_MAX_REGEX_LEN) {
        snprintf (msg, msg_len, "regular expression longer than %d bytes", AUTHZ_CEL_MAX_REGEX_LEN);
        return msg;
    }
    char *buf = malloc (16 * n + 16);
    if (!buf) {
        snprintf (msg, msg_len, "out of memory");
        return msg;
    }
    int cflags = 0;
    const char *bad = s_re_translate (pat, n, buf, &cflags);
    if (bad)
        snprintf (msg, msg_len, "error parsing regexp: %s", bad);
    else {
        int rc = regcomp (re, buf, cflags);
        if (rc) {
            char why [128];
            regerror (rc, re, why, sizeof why);
            snprintf (msg, msg_len, "error parsing regexp: %s", why);
            bad = msg;
        }
    }
    free (buf);
    return bad;
}

//  Does re match anywhere in s (length n)?
static bool
s_re_match (const regex_t *re, const char *s, size_t n)
{
#ifdef REG_STARTEND
    regmatch_t m [1];
    m [0].rm_so = 0;
    m [0].rm_eo = (regoff_t) n;
    return regexec (re, s, 1, m, REG_STARTEND) == 0;
#else
    //  strings are NUL-terminated in the arena; an embedded NUL ends the
    //  subject early on platforms without REG_STARTEND
    (void) n;
    return regexec (re, s, 0, NULL, 0) == 0;
#endif
}

//  ---------------------------------------------------------------------
//  Evaluator.

typedef struct {
    const authz_cel_t *cel;
    s_arena_t arena;
    uint64_t cost;
    bool abort;                 //  a limit was hit: the whole evaluation fails
    s_val_t abort_val;
    s_val_t *params;
    s_val_t *vars;
} s_eval_t;

static s_val_t s_vbool (bool b) { s_val_t v = {.k = K_BOOL}; v.b = b; return v; }
static s_val_t s_vint (int64_t i) { s_val_t v = {.k = K_INT}; v.i = i; return v; }
static s_val_t s_vuint (uint64_t u) { s_val_t v = {.k = K_UINT}; v.u = u; return v; }
static s_val_t s_vdouble (double d) { s_val_t v = {.k = K_DOUBLE}; v.d = d; return v; }
static s_val_t s_vdur (int64_t ns) { s_val_t v = {.k = K_DURATION}; v.dur = ns; return v; }

static bool
s_is_err (const s_val_t *v)
{
    return v->k == V_ERR || v->k == V_UNKNOWN;
}

//  An error value with a message in the arena (static text if full).
static s_val_t
s_verr (s_eval_t *ev, int code, const char *fmt, ...)
    __attribute__((format (printf, 3, 4)));
static s_val_t
s_verr (s_eval_t *ev, int code, const char *fmt, ...)
{
    s_val_t v = {.k = V_ERR, .code = code};
    char *msg = s_alloc (&ev->arena, S_MAX_ERRMSG);
    if (msg) {
        va_list ap;
        va_start (ap, fmt);
        vsnprintf (msg, S_MAX_ERRMSG, fmt, ap);
        va_end (ap);
    }
    v.s.p = msg? msg: "evaluation error";
    return v;
}

//  Stop the evaluation for a limit: no operator may absorb this error.
static s_val_t
s_vlimit (s_eval_t *ev, const char *what)
{
    if (!ev->abort) {
        ev->abort = true;
        ev->abort_val.k = V_ERR;
        ev->abort_val.code = AUTHZ_CEL_ELIMIT;
        ev->abort_val.s.p = what;
    }
    return ev->abort_val;
}

//  Add units to the cost; false (and abort) when over the budget.
static bool
s_charge (s_eval_t *ev, uint64_t units)
{
    ev->cost += units;
    if (ev->cost > AUTHZ_CEL_MAX_COST) {
        s_vlimit (ev, "evaluation cost limit exceeded");
        return false;
    }
    return !ev->abort;
}

//  Arena allocation during evaluation; aborts on exhaustion.
static void *
s_ealloc (s_eval_t *ev, size_t n)
{
    void *p = s_alloc (&ev->arena, n);
    if (!p)
        s_vlimit (ev, "evaluation memory limit exceeded");
    return p;
}

static s_val_t
s_nooverload (s_eval_t *ev, int fn)
{
    return s_verr (ev, AUTHZ_CEL_EEVAL, "no such overload for '%s'", s_fn_name (fn));
}

//  A string (or bytes) value of n bytes copied from p.
static s_val_t
s_vstr (s_eval_t *ev, int k, const char *p, size_t n)
{
    s_val_t v = {.k = (uint8_t) k};
    char *c = s_ealloc (ev, n + 1);
    if (!c)
        return ev->abort_val;
    if (n)
        memcpy (c, p, n);
    v.s.p = c;
    v.s.n = n;
    return v;
}

//  Compare two numbers of any numeric kinds as cel-go does. Returns false
//  when the values are unordered (NaN).
static bool
s_numcmp (const s_val_t *a, const s_val_t *b, int *c)
{
    if (a->k == K_DOUBLE && b->k == K_DOUBLE) {
        if (isnan (a->d) || isnan (b->d))
            return false;
        *c = a->d < b->d? -1: a->d > b->d;
        return true;
    }
    if (a->k == K_DOUBLE || b->k == K_DOUBLE) {
        const s_val_t *o = a->k == K_DOUBLE? b: a;
        double d = a->k == K_DOUBLE? a->d: b->d;
        if (isnan (d))
            return false;
        int r;                  //  compare o with d
        if (o->k == K_INT)
            r = d < -9223372036854775808.0? 1: d >= 9223372036854775808.0? -1:
                (double) o->i < d? -1: (double) o->i > d;
        else
            r = d < 0? 1: d >= 18446744073709551616.0? -1:
                (double) o->u < d? -1: (double) o->u > d;
        *c = a->k == K_DOUBLE? -r: r;
        return true;
    }
    if (a->k == K_INT && b->k == K_INT)
        *c = a->i < b->i? -1: a->i > b->i;
    else
    if (a->k == K_UINT && b->k == K_UINT)
        *c = a->u < b->u? -1: a->u > b->u;
    else
    if (a->k == K_INT)
        *c = a->i < 0 || (uint64_t) a->i < b->u? -1: (uint64_t) a->i > b->u;
    else
        *c = b->i < 0 || a->u > (uint64_t) b->i? 1: a->u < (uint64_t) b->i? -1: 0;
    return true;
}

static bool
s_is_num (const s_val_t *v)
{
    return v->k == K_INT || v->k == K_UINT || v->k == K_DOUBLE;
}

static bool s_equal (s_eval_t *ev, const s_val_t *a, const s_val_t *b);

//  Find key in map m (heterogeneous key equality); index or -1.
static ssize_t
s_map_find (s_eval_t *ev, const s_map_t *m, const s_val_t *key)
{
    s_charge (ev, 1 + m->n / 8);
    for (size_t i = 0; i < m->n; i++)
        if (s_equal (ev, &m->keys [i], key))
            return (ssize_t) i;
    return -1;
}

//  CEL equality with heterogeneous semantics: values of different kinds
//  are unequal, except numbers, which compare by value.
static bool
s_equal (s_eval_t *ev, const s_val_t *a, const s_val_t *b)
{
    int c;
    if (s_is_num (a) && s_is_num (b))
        return s_numcmp (a, b, &c) && c == 0;
    if (a->k != b->k)
        return false;
    switch (a->k) {
        case K_NULL: return true;
        case K_BOOL: return a->b == b->b;
        case K_STRING: case K_BYTES:
            s_charge (ev, a->s.n / 16);
            return a->s.n == b->s.n && !memcmp (a->s.p, b->s.p, a->s.n);
        case K_DURATION: return a->dur == b->dur;
        case K_TIMESTAMP: return a->ts.sec == b->ts.sec && a->ts.nsec == b->ts.nsec;
        case K_IP: return s_ip_equal (a->ip, b->ip);
        case K_LIST:
            if (a->list->n != b->list->n)
                return false;
            for (size_t i = 0; i < a->list->n && !ev->abort; i++)
                if (!s_equal (ev, &a->list->items [i], &b->list->items [i]))
                    return false;
            return !ev->abort;
        case K_MAP:
            if (a->map->n != b->map->n)
                return false;
            for (size_t i = 0; i < a->map->n && !ev->abort; i++) {
                ssize_t j = s_map_find (ev, b->map, &a->map->keys [i]);
                if (j < 0 || !s_equal (ev, &a->map->vals [i], &b->map->vals [j]))
                    return false;
            }
            return !ev->abort;
        default:
            return false;
    }
}

//  Order a and b: 0 ok with *c set, 1 no such overload, 2 unordered (NaN).
static int
s_compare (const s_val_t *a, const s_val_t *b, int *c)
{
    if (s_is_num (a) && s_is_num (b))
        return s_numcmp (a, b, c)? 0: 2;
    if (a->k != b->k)
        return 1;
    switch (a->k) {
        case K_BOOL: *c = (int) a->b - (int) b->b; return 0;
        case K_STRING: case K_BYTES: {
            int r = memcmp (a->s.p, b->s.p, a->s.n < b->s.n? a->s.n: b->s.n);
            *c = r? (r < 0? -1: 1): a->s.n < b->s.n? -1: a->s.n > b->s.n;
            return 0;
        }
        case K_DURATION: *c = a->dur < b->dur? -1: a->dur > b->dur; return 0;
        case K_TIMESTAMP:
            *c = a->ts.sec != b->ts.sec? (a->ts.sec < b->ts.sec? -1: 1):
                 a->ts.nsec < b->ts.nsec? -1: a->ts.nsec > b->ts.nsec;
            return 0;
        default:
            return 1;
    }
}

//  A timestamp moved by ns nanoseconds, with CEL's range check.
static s_val_t
s_ts_add (s_eval_t *ev, s_val_t t, int64_t ns)
{
    int64_t sec = t.ts.sec + ns / S_NS;
    int64_t nsec = t.ts.nsec + ns % S_NS;
    if (nsec < 0) { nsec += S_NS; sec--; }
    if (nsec >= S_NS) { nsec -= S_NS; sec++; }
    if (sec < S_TS_MIN || sec > S_TS_MAX)
        return s_verr (ev, AUTHZ_CEL_EEVAL, "timestamp overflow");
    t.ts.sec = sec;
    t.ts.nsec = (int32_t) nsec;
    return t;
}

//  Concatenate two lists.
static s_val_t
s_list_concat (s_eval_t *ev, const s_list_t *a, const s_list_t *b)
{
    s_val_t v = {.k = K_LIST};
    if (!s_charge (ev, a->n + b->n))
        return ev->abort_val;
    s_list_t *l = s_ealloc (ev, sizeof *l);
    s_val_t *items = l? s_ealloc (ev, (a->n + b->n) * sizeof *items + 1): NULL;
    if (!items)
        return ev->abort_val;
    if (a->n)
        memcpy (items, a->items, a->n * sizeof *items);
    if (b->n)
        memcpy (items + a->n, b->items, b->n * sizeof *items);
    l->n = a->n + b->n;
    l->items = items;
    v.list = l;
    return v;
}

//  + - * / % on two values of matching kinds (cel-go's overloads).
static s_val_t
s_arith (s_eval_t *ev, int fn, const s_val_t *a, const s_val_t *b)
{
    if (a->k == K_INT && b->k == K_INT) {
        int64_t r = 0;
        bool over = false;
        switch (fn) {
            case F_ADD: over = __builtin_add_overflow (a->i, b->i, &r); break;
            case F_SUB: over = __builtin_sub_overflow (a->i, b->i, &r); break;
            case F_MUL: over = __builtin_mul_overflow (a->i, b->i, &r); break;
            case F_DIV: case F_MOD:
                if (b->i == 0)
                    return s_verr (ev, AUTHZ_CEL_EEVAL, fn == F_DIV? "division by zero": "modulus by zero");
                over = a->i == INT64_MIN && b->i == -1;
                if (!over)
                    r = fn == F_DIV? a->i / b->i: a->i % b->i;
                break;
        }
        return over? s_verr (ev, AUTHZ_CEL_EEVAL, "integer overflow"): s_vint (r);
    }
    if (a->k == K_UINT && b->k == K_UINT) {
        uint64_t r = 0;
        bool over = false;
        switch (fn) {
            case F_ADD: over = __builtin_add_overflow (a->u, b->u, &r); break;
            case F_SUB: over = __builtin_sub_overflow (a->u, b->u, &r); break;
            case F_MUL: over = __builtin_mul_overflow (a->u, b->u, &r); break;
            case F_DIV: case F_MOD:
                if (b->u == 0)
                    return s_verr (ev, AUTHZ_CEL_EEVAL, fn == F_DIV? "division by zero": "modulus by zero");
                r = fn == F_DIV? a->u / b->u: a->u % b->u;
                break;
        }
        return over? s_verr (ev, AUTHZ_CEL_EEVAL, "unsigned integer overflow"): s_vuint (r);
    }
    if (a->k == K_DOUBLE && b->k == K_DOUBLE && fn != F_MOD)
        return s_vdouble (fn == F_ADD? a->d + b->d: fn == F_SUB? a->d - b->d:
                          fn == F_MUL? a->d * b->d: a->d / b->d);
    if (fn == F_ADD && a->k == b->k && (a->k == K_STRING || a->k == K_BYTES)) {
        if (!s_charge (ev, (a->s.n + b->s.n) / 16))
            return ev->abort_val;
        char *p = s_ealloc (ev, a->s.n + b->s.n + 1);
        if (!p)
            return ev->abort_val;
        memcpy (p, a->s.p, a->s.n);
        memcpy (p + a->s.n, b->s.p, b->s.n);
        s_val_t v = {.k = a->k};
        v.s.p = p;
        v.s.n = a->s.n + b->s.n;
        return v;
    }
    if (fn == F_ADD && a->k == K_LIST && b->k == K_LIST)
        return s_list_concat (ev, a->list, b->list);
    if (a->k == K_DURATION && b->k == K_DURATION && (fn == F_ADD || fn == F_SUB)) {
        int64_t r;
        if (fn == F_ADD? __builtin_add_overflow (a->dur, b->dur, &r): __builtin_sub_overflow (a->dur, b->dur, &r))
            return s_verr (ev, AUTHZ_CEL_EEVAL, "integer overflow");
        return s_vdur (r);
    }
    if (fn == F_ADD && a->k == K_TIMESTAMP && b->k == K_DURATION)
        return s_ts_add (ev, *a, b->dur);
    if (fn == F_ADD && a->k == K_DURATION && b->k == K_TIMESTAMP)
        return s_ts_add (ev, *b, a->dur);
    if (fn == F_SUB && a->k == K_TIMESTAMP && b->k == K_DURATION) {
        if (b->dur == INT64_MIN)
            return s_verr (ev, AUTHZ_CEL_EEVAL, "integer overflow");
        return s_ts_add (ev, *a, -b->dur);
    }
    if (fn == F_SUB && a->k == K_TIMESTAMP && b->k == K_TIMESTAMP) {
        int64_t s, r;
        if (__builtin_sub_overflow (a->ts.sec, b->ts.sec, &s) || __builtin_mul_overflow (s, S_NS, &r)
        ||  __builtin_add_overflow (r, (int64_t) a->ts.nsec - b->ts.nsec, &r))
            return s_verr (ev, AUTHZ_CEL_EEVAL, "integer overflow");
        return s_vdur (r);
    }
    return s_nooverload (ev, fn);
}

//  Is p (n bytes) valid UTF-8?
static bool
s_utf8_valid (const char *p, size_t n)
{
    const unsigned char *s = (const unsigned char *) p;
    for (size_t i = 0; i < n;) {
        unsigned c = s [i];
        size_t len = c < 0x80? 1: (c >> 5) == 6? 2: (c >> 4) == 14? 3: (c >> 3) == 30? 4: 0;
        if (!len || i + len > n || (len == 2 && c < 0xC2))
            return false;
        uint32_t cp = len == 1? c: c & (0x7F >> len);
        for (size_t k = 1; k < len; k++) {
            if ((s [i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s [i + k] & 0x3F);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF)))
        ||  (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
            return false;
        i += len;
    }
    return true;
}

//  Parse a whole string as a decimal integer, as Go's strconv does.
static bool
s_parse_int_text (const char *p, size_t n, bool is_signed, int64_t *i, uint64_t *u)
{
    char buf [32];
    if (n == 0 || n >= sizeof buf || memchr (p, 0, n))
        return false;
    memcpy (buf, p, n);
    buf [n] = 0;
    size_t start = (buf [0] == '-' || buf [0] == '+') && is_signed? 1: 0;
    if (!buf [start])
        return false;
    for (size_t k = start; buf [k]; k++)
        if (buf [k] < '0' || buf [k] > '9')
            return false;
    errno = 0;
    if (is_signed)
        *i = strtoll (buf, NULL, 10);
    else
        *u = strtoull (buf, NULL, 10);
    return errno == 0;
}

//  The zone offset a time accessor uses: the timestamp's own, or the
//  optional zone argument ("UTC" or ±HH:MM). false if unsupported.
static bool
s_zone_offset (const s_val_t *ts, const s_val_t *tz, int *off)
{
    *off = ts->ts.off;
    if (!tz)
        return true;
    const char *z = tz->s.p;
    size_t n = tz->s.n;
    int h, m;
    if ((n == 3 && !memcmp (z, "UTC", 3)) || (n == 1 && z [0] == 'Z')) {
        *off = 0;
        return true;
    }
    size_t sg = n == 6? 1: 0;
    if ((n == 6 || n == 5) && (!sg || z [0] == '+' || z [0] == '-')
    &&  s_digits (z + sg, 2, &h) && z [sg + 2] == ':' && s_digits (z + sg + 3, 2, &m)
    &&  h < 24 && m < 60) {
        *off = (h * 3600 + m * 60) * (sg && z [0] == '-'? -1: 1);
        return true;
    }
    return false;
}

//  getFullYear() and the other accessors on timestamps and durations.
static s_val_t
s_time_accessor (s_eval_t *ev, int fn, const s_val_t *a, const s_val_t *tz)
{
    if (a->k == K_DURATION) {
        int64_t d = a->dur;
        return fn == F_HOURS? s_vint (d / 3600000000000LL): fn == F_MINUTES? s_vint (d / 60000000000LL):
               fn == F_SECONDS? s_vint (d / S_NS): s_vint (d / 1000000);
    }
    int off;
    if (!s_zone_offset (a, tz, &off))
        return s_verr (ev, AUTHZ_CEL_EEVAL, "unsupported time zone");
    int64_t local = a->ts.sec + off;
    int64_t days = local >= 0? local / 86400: -((-local + 86399) / 86400);
    int64_t rem = local - days * 86400, y;
    int m, d;
    s_civil_from_days (days, &y, &m, &d);
    switch (fn) {
        case F_FULLYEAR: return s_vint (y);
        case F_MONTH: return s_vint (m - 1);
        case F_DAYOFYEAR: return s_vint (days - s_days_from_civil (y, 1, 1));
        case F_DAYOFMONTH: return s_vint (d - 1);
        case F_DATE: return s_vint (d);
        case F_DAYOFWEEK: return s_vint (((days % 7) + 11) % 7);
        case F_HOURS: return s_vint (rem / 3600);
        case F_MINUTES: return s_vint (rem % 3600 / 60);
        case F_SECONDS: return s_vint (rem % 60);
        default: return s_vint (a->ts.nsec / 1000000);
    }
}

//  Type conversions: int() uint() double() string() bytes() bool()
//  duration() timestamp() dyn(), with cel-go's range checks.
static s_val_t
s_convert (s_eval_t *ev, int fn, const s_val_t *a)
{
    int64_t i;
    uint64_t u;
    char buf [96];
    switch (fn * 16 + a->k) {
        case F_INT * 16 + K_INT: case F_UINT * 16 + K_UINT: case F_DOUBLE * 16 + K_DOUBLE:
        case F_STRING * 16 + K_STRING: case F_BYTES * 16 + K_BYTES: case F_BOOL * 16 + K_BOOL:
        case F_DURATION * 16 + K_DURATION: case F_TIMESTAMP * 16 + K_TIMESTAMP:
            return *a;
        case F_INT * 16 + K_UINT:
            return a->u > (uint64_t) INT64_MAX? s_verr (ev, AUTHZ_CEL_EEVAL, "range error converting %llu to int", (unsigned long long) a->u): s_vint ((int64_t) a->u);
        case F_INT * 16 + K_DOUBLE:
            if (isnan (a->d) || a->d <= -9223372036854775808.0 || a->d >= 9223372036854775808.0)
                return s_verr (ev, AUTHZ_CEL_EEVAL, "range error converting double to int");
            return s_vint ((int64_t) a->d);
        case F_INT * 16 + K_STRING:
            if (!s_parse_int_text (a->s.p, a->s.n, true, &i, &u))
                return s_verr (ev, AUTHZ_CEL_EEVAL, "cannot convert string to int");
            return s_vint (i);
        case F_INT * 16 + K_TIMESTAMP:
            return s_vint (a->ts.sec);
        case F_UINT * 16 + K_INT:
            return a->i < 0? s_verr (ev, AUTHZ_CEL_EEVAL, "range error converting %lld to uint", (long long) a->i): s_vuint ((uint64_t) a->i);
        case F_UINT * 16 + K_DOUBLE:
            if (isnan (a->d) || a->d < 0 || a->d >= 18446744073709551616.0)
                return s_verr (ev, AUTHZ_CEL_EEVAL, "range error converting double to uint");
            return s_vuint ((uint64_t) a->d);
        case F_UINT * 16 + K_STRING:
            if (!s_parse_int_text (a->s.p, a->s.n, false, &i, &u))
                return s_verr (ev, AUTHZ_CEL_EEVAL, "cannot convert string to uint");
            return s_vuint (u);
        case F_DOUBLE * 16 + K_INT: return s_vdouble ((double) a->i);
        case F_DOUBLE * 16 + K_UINT: return s_vdouble ((double) a->u);
        case F_DOUBLE * 16 + K_STRING: {
            char *end;
            if (a->s.n == 0 || a->s.n > 400 || isspace ((unsigned char) a->s.p [0]) || memchr (a->s.p, 0, a->s.n))
                return s_verr (ev, AUTHZ_CEL_EEVAL, "cannot convert string to double");
            errno = 0;
            double d = strtod (a->s.p, &end);
            if (end != a->s.p + a->s.n || (errno == ERANGE && isinf (d)))
                return s_verr (ev, AUTHZ_CEL_EEVAL, "cannot convert string to double");
            return s_vdouble (d);
        }
        case F_STRING * 16 + K_INT: snprintf (buf, sizeof buf, "%lld", (long long) a->i); break;
        case F_STRING * 16 + K_UINT: snprintf (buf, sizeof buf, "%llu", (unsigned long long) a->u); break;
        case F_STRING * 16 + K_DOUBLE: s_fmt_double (a->d, true, buf, sizeof buf); break;
        case F_STRING * 16 + K_BOOL: snprintf (buf, sizeof buf, "%s", a->b? "true": "false"); break;
        case F_STRING * 16 + K_TIMESTAMP: s_fmt_timestamp (a, buf, sizeof buf); break;
        case F_STRING * 16 + K_DURATION: {
            double secs = (double) (a->dur / S_NS) + (double) (a->dur % S_NS) / 1e9;
            s_fmt_double (secs, false, buf, sizeof buf - 1);
            strcat (buf, "s");
            break;
        }
        case F_STRING * 16 + K_BYTES:
            if (!s_utf8_valid (a->s.p, a->s.n))
                return s_verr (ev, AUTHZ_CEL_EEVAL, "invalid UTF-8 in bytes, cannot convert to string");
            return s_vstr (ev, K_STRING, a->s.p, a->s.n);
        case F_BYTES * 16 + K_STRING:
            return s_vstr (ev, K_BYTES, a->s.p, a->s.n);
        case F_BOOL * 16 + K_STRING: {
            static const char *yes [] = {"1", "t", "T", "TRUE", "true", "True"};
            static const char *no [] = {"0", "f", "F", "FALSE", "false", "False"};
            for (int k = 0; k < 6; k++) {
                if (strlen (yes [k]) == a->s.n && !memcmp (yes [k], a->s.p, a->s.n))
                    return s_vbool (true);
                if (strlen (no [k]) == a->s.n && !memcmp (no [k], a->s.p, a->s.n))
                    return s_vbool (false);
            }
            return s_verr (ev, AUTHZ_CEL_EEVAL, "cannot convert string to bool");
        }
        case F_DURATION * 16 + K_STRING:
            if (!s_parse_duration (a->s.p, a->s.n, &i))
                return s_verr (ev, AUTHZ_CEL_EEVAL, "invalid duration string");
            return s_vdur (i);
        case F_TIMESTAMP * 16 + K_STRING: {
            s_val_t t;
            if (!s_parse_rfc3339 (a->s.p, a->s.n, &t))
                return s_verr (ev, AUTHZ_CEL_EEVAL, "invalid timestamp string");
            return t;
        }
        case F_TIMESTAMP * 16 + K_INT: {
            if (a->i < S_TS_MIN || a->i > S_TS_MAX)
                return s_verr (ev, AUTHZ_CEL_EEVAL, "timestamp out of range");
            s_val_t t = {.k = K_TIMESTAMP};
            t.ts.sec = a->i;
            return t;
        }
        default:
            return s_nooverload (ev, fn);
    }
    return s_vstr (ev, K_STRING, buf, strlen (buf));
}

//  matches(): the node's precompiled pattern, or compile one now.
static s_val_t
s_matches (s_eval_t *ev, const s_node_t *n, const s_val_t *s, const s_val_t *pat)
{
    //  POSIX matchers are not linear-time as RE2 is: bound the subject
    if (s->s.n > AUTHZ_CEL_MAX_REGEX_SUBJECT)
        return s_vlimit (ev, "string too long for matches()");
    if (!s_charge (ev, 1 + (s->s.n + pat->s.n) / 16))
        return ev->abort_val;
    if (n->re)
        return s_vbool (s_re_match (n->re, s->s.p, s->s.n));
    regex_t re;
    char msg [S_MAX_ERRMSG];
    if (s_re_compile (pat->s.p, pat->s.n, &re, msg, sizeof msg))
        return s_verr (ev, AUTHZ_CEL_EEVAL, "%s", msg);
    bool m = s_re_match (&re, s->s.p, s->s.n);
    regfree (&re);
    return s_vbool (m);
}

//  list[index] or map[key].
static s_val_t
s_index (s_eval_t *ev, const s_val_t *c, const s_val_t *k)
{
    if (c->k == K_MAP) {
        ssize_t j = s_map_find (ev, c->map, k);
        if (j < 0)
            return s_verr (ev, AUTHZ_CEL_EEVAL, "no such key");
        return c->map->vals [j];
    }
    if (c->k != K_LIST || !s_is_num (k))
        return s_nooverload (ev, F_INDEX);
    int64_t i;
    if (k->k == K_INT)
        i = k->i;
    else
    if (k->k == K_UINT)
        i = k->u > (uint64_t) INT64_MAX? -1: (int64_t) k->u;
    else {
        if (!(k->d >= -9.2e18 && k->d <= 9.2e18) || k->d != floor (k->d))
            return s_verr (ev, AUTHZ_CEL_EEVAL, "unsupported index value");
        i = (int64_t) k->d;
    }
    if (i < 0 || (uint64_t) i >= c->list->n)
        return s_verr (ev, AUTHZ_CEL_EEVAL, "index out of bounds: %lld", (long long) i);
    return c->list->items [i];
}

//  Apply a function or operator to evaluated arguments (no errors or
//  unknowns among them).
static s_val_t
s_apply (s_eval_t *ev, const s_node_t *n, const s_val_t *a)
{
    int fn = n->fn, c, r;
    switch (fn) {
        case F_ADD: case F_SUB: case F_MUL: case F_DIV: case F_MOD:
            return s_arith (ev, fn, &a [0], &a [1]);
        case F_NEG:
            if (a [0].k == K_INT)
                return a [0].i == INT64_MIN? s_verr (ev, AUTHZ_CEL_EEVAL, "integer overflow"): s_vint (-a [0].i);
            if (a [0].k == K_DOUBLE)
                return s_vdouble (-a [0].d);
            return s_nooverload (ev, fn);
        case F_NOT:
            return a [0].k == K_BOOL? s_vbool (!a [0].b): s_nooverload (ev, fn);
        case F_EQ: case F_NE: {
            bool eq = s_equal (ev, &a [0], &a [1]);
            return ev->abort? ev->abort_val: s_vbool (fn == F_EQ? eq: !eq);
        }
        case F_LT: case F_LE: case F_GT: case F_GE:
            r = s_compare (&a [0], &a [1], &c);
            if (r == 1)
                return s_nooverload (ev, fn);
            if (r == 2)
                return s_vbool (false);
            return s_vbool (fn == F_LT? c < 0: fn == F_LE? c <= 0: fn == F_GT? c > 0: c >= 0);
        case F_IN:
            if (a [1].k == K_MAP) {
                ssize_t j = s_map_find (ev, a [1].map, &a [0]);
                return ev->abort? ev->abort_val: s_vbool (j >= 0);
            }
            if (a [1].k == K_LIST) {
                if (!s_charge (ev, a [1].list->n))
                    return ev->abort_val;
                for (size_t i = 0; i < a [1].list->n && !ev->abort; i++)
                    if (s_equal (ev, &a [0], &a [1].list->items [i]))
                        return s_vbool (true);
                return ev->abort? ev->abort_val: s_vbool (false);
            }
            return s_nooverload (ev, fn);
        case F_INDEX:
            return s_index (ev, &a [0], &a [1]);
        case F_SIZE:
            switch (a [0].k) {
                case K_STRING: {
                    int64_t cps = 0;
                    s_charge (ev, a [0].s.n / 16);
                    for (size_t i = 0; i < a [0].s.n; i++)
                        cps += ((unsigned char) a [0].s.p [i] & 0xC0) != 0x80;
                    return s_vint (cps);
                }
                case K_BYTES: return s_vint ((int64_t) a [0].s.n);
                case K_LIST: return s_vint ((int64_t) a [0].list->n);
                case K_MAP: return s_vint ((int64_t) a [0].map->n);
                default: return s_nooverload (ev, fn);
            }
        case F_CONTAINS: case F_STARTS: case F_ENDS: {
            if (a [0].k != K_STRING || a [1].k != K_STRING)
                return s_nooverload (ev, fn);
            const s_val_t *s = &a [0], *t = &a [1];
            if (!s_charge (ev, (s->s.n + t->s.n) / 16))
                return ev->abort_val;
            if (t->s.n > s->s.n)
                return s_vbool (false);
            if (fn == F_STARTS)
                return s_vbool (!memcmp (s->s.p, t->s.p, t->s.n));
            if (fn == F_ENDS)
                return s_vbool (!memcmp (s->s.p + s->s.n - t->s.n, t->s.p, t->s.n));
            return s_vbool (t->s.n == 0 || memmem (s->s.p, s->s.n, t->s.p, t->s.n) != NULL);
        }
        case F_MATCHES:
            if (a [0].k != K_STRING || a [1].k != K_STRING)
                return s_nooverload (ev, fn);
            return s_matches (ev, n, &a [0], &a [1]);
        case F_INT: case F_UINT: case F_DOUBLE: case F_STRING: case F_BYTES:
        case F_BOOL: case F_DURATION: case F_TIMESTAMP:
            return s_convert (ev, fn, &a [0]);
        case F_DYN:
            return a [0];
        case F_IPADDRESS: {
            if (a [0].k != K_STRING)
                return s_nooverload (ev, fn);
            s_ip_t *ip = s_ealloc (ev, sizeof *ip);
            if (!ip)
                return ev->abort_val;
            if (!s_parse_ip (a [0].s.p, a [0].s.n, ip, &ev->arena))
                return s_verr (ev, AUTHZ_CEL_EEVAL, "ParseAddr: unable to parse IP");
            s_val_t v = {.k = K_IP};
            v.ip = ip;
            return v;
        }
        case F_IN_CIDR:
            if (a [0].k != K_IP || a [1].k != K_STRING)
                return s_nooverload (ev, fn);
            r = s_ip_in_cidr (a [0].ip, a [1].s.p, a [1].s.n, &ev->arena);
            if (r < 0)
                return s_verr (ev, AUTHZ_CEL_EEVAL, "'%.64s' is a malformed CIDR string", a [1].s.p);
            return s_vbool (r == 1);
        default:
            if (fn >= F_FULLYEAR && fn <= F_MILLIS) {
                bool dur_ok = fn >= F_HOURS && n->nargs == 1;
                if (!(a [0].k == K_TIMESTAMP || (a [0].k == K_DURATION && dur_ok))
                ||  (n->nargs == 2 && a [1].k != K_STRING))
                    return s_nooverload (ev, fn);
                return s_time_accessor (ev, fn, &a [0], n->nargs == 2? &a [1]: NULL);
            }
            return s_nooverload (ev, fn);
    }
}

static s_val_t s_eval (s_eval_t *ev, const s_node_t *n);

//  CEL's logical and/or of two values: the deciding value (false for and,
//  true for or) wins over unknowns, unknowns over errors.
static s_val_t
s_logic2 (s_eval_t *ev, bool is_or, s_val_t a, s_val_t b)
{
    if ((a.k == K_BOOL && a.b == is_or) || (b.k == K_BOOL && b.b == is_or))
        return s_vbool (is_or);
    if (a.k == K_BOOL && b.k == K_BOOL)
        return s_vbool (!is_or);
    if (a.k == V_UNKNOWN) return a;
    if (b.k == V_UNKNOWN) return b;
    if (a.k == V_ERR) return a;
    if (b.k == V_ERR) return b;
    return s_nooverload (ev, F_UNKNOWN);
}

//  An n-ary && or ||: stops at the first deciding value.
static s_val_t
s_eval_logic (s_eval_t *ev, const s_node_t *n)
{
    bool is_or = n->kind == N_OR;
    s_val_t acc = s_vbool (!is_or);
    for (uint32_t i = 0; i < n->nargs && !ev->abort; i++) {
        acc = s_logic2 (ev, is_or, acc, s_eval (ev, n->args [i]));
        if (acc.k == K_BOOL && acc.b == is_or)
            break;
    }
    return ev->abort? ev->abort_val: acc;
}

//  Append v to a list being built (doubling storage in the arena).
static bool
s_list_push (s_eval_t *ev, s_list_t *l, size_t *cap, s_val_t v)
{
    if (l->n == *cap) {
        size_t ncap = *cap? *cap * 2: 8;
        s_val_t *items = s_ealloc (ev, ncap * sizeof *items);
        if (!items)
            return false;
        if (l->n)
            memcpy (items, l->items, l->n * sizeof *items);
        l->items = items;
        *cap = ncap;
    }
    l->items [l->n++] = v;
    return s_charge (ev, 1);
}

//  A comprehension: all, exists, exists_one, map, filter, following
//  cel-go's expansions (so errors are absorbed the same way).
static s_val_t
s_eval_comp (s_eval_t *ev, const s_node_t *n)
{
    s_val_t r = s_eval (ev, n->args [0]);
    if (s_is_err (&r))
        return r;
    const s_val_t *items;
    size_t count;
    if (r.k == K_LIST) {
        items = r.list->items;
        count = r.list->n;
    }
    else
    if (r.k == K_MAP) {
        items = r.map->keys;
        count = r.map->n;
    }
    else
        return s_verr (ev, AUTHZ_CEL_EEVAL, "expression does not support iteration");
    s_val_t acc = n->fn == M_ALL? s_vbool (true): n->fn == M_EXISTS? s_vbool (false): s_vint (0);
    s_list_t *out = NULL;
    size_t cap = 0;
    bool builds = n->fn == M_MAP || n->fn == M_MAP_FILTER || n->fn == M_FILTER;
    if (builds) {
        out = s_ealloc (ev, sizeof *out);
        if (!out)
            return ev->abort_val;
    }
    for (size_t i = 0; i < count && !ev->abort; i++) {
        if (!s_charge (ev, 1))
            break;
        ev->vars [n->slot] = items [i];
        if (n->fn == M_ALL || n->fn == M_EXISTS) {
            bool is_or = n->fn == M_EXISTS;
            acc = s_logic2 (ev, is_or, acc, s_eval (ev, n->args [1]));
            if (acc.k == K_BOOL && acc.b == is_or)
                break;
            continue;
        }
        s_val_t p = n->fn == M_MAP? s_vbool (true): s_eval (ev, n->args [1]);
        if (s_is_err (&p) || p.k != K_BOOL) {
            acc = s_is_err (&p)? p: s_nooverload (ev, F_UNKNOWN);
            break;              //  the error or unknown is sticky
        }
        if (n->fn == M_EXISTS_ONE) {
            acc.i += p.b;
            continue;
        }
        if (!p.b)
            continue;
        s_val_t t = n->fn == M_FILTER? items [i]: s_eval (ev, n->args [n->fn == M_MAP? 1: 2]);
        if (s_is_err (&t)) {
            acc = t;
            break;
        }
        if (!s_list_push (ev, out, &cap, t))
            break;
    }
    if (ev->abort)
        return ev->abort_val;
    if (s_is_err (&acc))
        return acc;
    if (n->fn == M_EXISTS_ONE)
        return s_vbool (acc.i == 1);
    if (builds) {
        s_val_t v = {.k = K_LIST};
        v.list = out;
        return v;
    }
    return acc;
}

//  Build a list or map literal.
static s_val_t
s_eval_aggregate (s_eval_t *ev, const s_node_t *n)
{
    if (!s_charge (ev, n->nargs))
        return ev->abort_val;
    s_val_t *vals = s_ealloc (ev, (n->nargs + 1) * sizeof *vals);
    if (!vals)
        return ev->abort_val;
    for (uint32_t i = 0; i < n->nargs; i++) {
        vals [i] = s_eval (ev, n->args [i]);
        if (s_is_err (&vals [i]))
            return vals [i];
    }
    s_val_t v = {.k = (uint8_t) (n->kind == N_LIST? K_LIST: K_MAP)};
    if (n->kind == N_LIST) {
        s_list_t *l = s_ealloc (ev, sizeof *l);
        if (!l)
            return ev->abort_val;
        l->n = n->nargs;
        l->items = vals;
        v.list = l;
        return v;
    }
    s_map_t *m = s_ealloc (ev, sizeof *m);
    if (!m)
        return ev->abort_val;
    m->n = n->nargs / 2;
    m->keys = s_ealloc (ev, (m->n + 1) * sizeof *m->keys);
    m->vals = s_ealloc (ev, (m->n + 1) * sizeof *m->vals);
    if (!m->keys || !m->vals)
        return ev->abort_val;
    for (size_t i = 0; i < m->n; i++) {
        s_val_t *k = &vals [2 * i];
        if (k->k != K_INT && k->k != K_UINT && k->k != K_BOOL && k->k != K_STRING)
            return s_verr (ev, AUTHZ_CEL_EEVAL, "unsupported key type");
        s_map_t seen = {i, m->keys, m->vals};
        if (s_map_find (ev, &seen, k) >= 0)
            return s_verr (ev, AUTHZ_CEL_EEVAL, "Failed with repeated key");
        m->keys [i] = *k;
        m->vals [i] = vals [2 * i + 1];
    }
    v.map = m;
    return ev->abort? ev->abort_val: v;
}

//  Evaluate a node.
static s_val_t
s_eval (s_eval_t *ev, const s_node_t *n)
{
    if (!s_charge (ev, 1))
        return ev->abort_val;
    switch (n->kind) {
        case N_LIT: return n->lit;
        case N_PARAM: return ev->params [n->slot];
        case N_IVAR: return ev->vars [n->slot];
        case N_AND: case N_OR: return s_eval_logic (ev, n);
        case N_COMP: return s_eval_comp (ev, n);
        case N_LIST: case N_MAP: return s_eval_aggregate (ev, n);
        case N_COND: {
            s_val_t c = s_eval (ev, n->args [0]);
            if (s_is_err (&c))
                return c;
            if (c.k != K_BOOL)
                return s_nooverload (ev, F_UNKNOWN);
            return s_eval (ev, n->args [c.b? 1: 2]);
        }
        case N_SELECT: case N_HAS: {
            s_val_t o = s_eval (ev, n->args [0]);
            if (s_is_err (&o))
                return o;
            if (o.k != K_MAP)
                return s_verr (ev, AUTHZ_CEL_EEVAL, "type does not support field selection");
            s_val_t key = {.k = K_STRING};
            key.s.p = n->name;
            key.s.n = strlen (n->name);
            ssize_t j = s_map_find (ev, o.map, &key);
            if (n->kind == N_HAS)
                return s_vbool (j >= 0);
            if (j < 0)
                return s_verr (ev, AUTHZ_CEL_EEVAL, "no such key: %.64s", n->name);
            return o.map->vals [j];
        }
        case N_CALL: {
            s_val_t a [3];
            assert (n->nargs <= 3);
            for (uint32_t i = 0; i < n->nargs; i++) {
                a [i] = s_eval (ev, n->args [i]);
                if (s_is_err (&a [i]))
                    return a [i];
            }
            return s_apply (ev, n, a);
        }
        default:
            return s_verr (ev, AUTHZ_CEL_EEVAL, "unsupported expression");
    }
}

//  ---------------------------------------------------------------------
//  Context conversion (OpenFGA's parameter converters).

typedef struct {
    s_eval_t *ev;
    size_t budget;              //  values left to convert
    char *err;
    size_t err_len;
} s_conv_t;

//  A JSON number or numeric string as int, uint or double, as OpenFGA's
//  numericTypeConverterFunc does: numbers are float64 (as in structpb);
//  strings parse with 64-bit mantissa precision; int and uint must be
//  integral and saturate at the int64 bounds; a double must be finite.
static bool
s_conv_number (int k, json_t *j, s_val_t *out)
{
    long double f;
    if (json_is_number (j))
        f = (long double) (double) json_number_value (j);
    else
    if (json_is_string (j)) {
        const char *s = json_string_value (j);
        size_t n = json_string_length (j), i = 0, digits = 0;
        if (n == 0 || n > 512 || strlen (s) != n)
            return false;
        if (s [i] == '+' || s [i] == '-')
            i++;
        while (i < n && isdigit ((unsigned char) s [i])) { i++; digits++; }
        if (i < n && s [i] == '.')
            for (i++; i < n && isdigit ((unsigned char) s [i]); i++)
                digits++;
        if (!digits)
            return false;
        if (i < n && (s [i] == 'e' || s [i] == 'E')) {
            i++;
            if (i < n && (s [i] == '+' || s [i] == '-'))
                i++;
            size_t e = i;
            while (i < n && isdigit ((unsigned char) s [i]))
                i++;
            if (i == e)
                return false;
        }
        if (i != n)
            return false;
        f = strtold (s, NULL);
    }
    else
        return false;
    if (isnan (f) || isinf (f))
        return false;
    if (k == K_DOUBLE) {
        double d = (double) f;
        if (isinf (d))
            return false;
        *out = s_vdouble (d);
        return true;
    }
    if (f != truncl (f))
        return false;
    int64_t i = f >= 9223372036854775807.0L? INT64_MAX: f <= -9223372036854775808.0L? INT64_MIN: (int64_t) f;
    if (k == K_INT) {
        *out = s_vint (i);
        return true;
    }
    if (i < 0)
        return false;
    *out = s_vuint ((uint64_t) i);
    return true;
}

//  Convert JSON value j to a value of declared type t.
static int
s_from_json (s_conv_t *cv, const s_type_t *t, json_t *j, s_val_t *out, int depth, const char *name)
{
    if (cv->budget == 0 || depth > S_MAX_CTX_DEPTH) {
        s_errf (cv->err, cv->err_len, "context parameter '%s' is over the size or nesting limit", name);
        return AUTHZ_CEL_ELIMIT;
    }
    cv->budget--;
    memset (out, 0, sizeof *out);
    bool ok = false;
    switch (t->k) {
        case K_DYN:
            if (json_is_null (j)) { out->k = K_NULL; ok = true; }
            else if (json_is_boolean (j)) { *out = s_vbool (json_is_true (j)); ok = true; }
            else if (json_is_number (j)) { *out = s_vdouble (json_number_value (j)); ok = true; }
            else if (json_is_string (j)) ok = true;
            else if (json_is_array (j)) return s_from_json (cv, &T_LISTDYN, j, out, depth, name);
            else if (json_is_object (j)) return s_from_json (cv, &T_MAPDYN, j, out, depth, name);
            if (ok && json_is_string (j)) {
                out->k = K_STRING;
                out->s.p = json_string_value (j);
                out->s.n = json_string_length (j);
            }
            break;
        case K_BOOL:
            if ((ok = json_is_boolean (j)))
                *out = s_vbool (json_is_true (j));
            break;
        case K_STRING:
            if ((ok = json_is_string (j))) {
                out->k = K_STRING;
                out->s.p = json_string_value (j);
                out->s.n = json_string_length (j);
            }
            break;
        case K_INT: case K_UINT: case K_DOUBLE:
            ok = s_conv_number (t->k, j, out);
            break;
        case K_DURATION:
            if ((ok = json_is_string (j) && s_parse_duration (json_string_value (j), json_string_length (j), &out->dur)))
                out->k = K_DURATION;
            break;
        case K_TIMESTAMP:
            ok = json_is_string (j) && s_parse_rfc3339 (json_string_value (j), json_string_length (j), out);
            break;
        case K_IP: {
            s_ip_t *ip = s_alloc (&cv->ev->arena, sizeof *ip);
            if ((ok = ip && json_is_string (j) && s_parse_ip (json_string_value (j), json_string_length (j), ip, &cv->ev->arena))) {
                out->k = K_IP;
                out->ip = ip;
            }
            break;
        }
        case K_LIST: case K_MAP: {
            bool is_list = t->k == K_LIST;
            if (is_list? !json_is_array (j): !json_is_object (j))
                break;
            size_t n = is_list? json_array_size (j): json_object_size (j);
            if (n > cv->budget) {
                s_errf (cv->err, cv->err_len, "context parameter '%s' has more than %d values", name, AUTHZ_CEL_MAX_CONTEXT_VALUES);
                return AUTHZ_CEL_ELIMIT;
            }
            s_val_t *vals = s_alloc (&cv->ev->arena, (n + 1) * sizeof *vals);
            s_val_t *keys = is_list? NULL: s_alloc (&cv->ev->arena, (n + 1) * sizeof *keys);
            void *hdr = s_alloc (&cv->ev->arena, is_list? sizeof (s_list_t): sizeof (s_map_t));
            if (!vals || !hdr || (!is_list && !keys)) {
                s_errf (cv->err, cv->err_len, "context too large");
                return AUTHZ_CEL_ELIMIT;
            }
            size_t i = 0;
            if (is_list) {
                json_t *item;
                json_array_foreach (j, i, item) {
                    int rc = s_from_json (cv, t->p1, item, &vals [i], depth + 1, name);
                    if (rc)
                        return rc;
                }
                ((s_list_t *) hdr)->n = n;
                ((s_list_t *) hdr)->items = vals;
                out->k = K_LIST;
                out->list = hdr;
            }
            else {
                const char *key;
                json_t *item;
                json_object_foreach (j, key, item) {
                    keys [i].k = K_STRING;
                    keys [i].s.p = key;
                    keys [i].s.n = strlen (key);
                    int rc = s_from_json (cv, t->p2, item, &vals [i], depth + 1, name);
                    if (rc)
                        return rc;
                    i++;
                }
                ((s_map_t *) hdr)->n = i;
                ((s_map_t *) hdr)->keys = keys;
                ((s_map_t *) hdr)->vals = vals;
                out->k = K_MAP;
                out->map = hdr;
            }
            return 0;
        }
        default:
            break;
    }
    if (ok)
        return 0;
    char ts [96];
    s_type_str (t, ts, sizeof ts);
    s_errf (cv->err, cv->err_len, "failed to convert context parameter '%s': expected a %s value", name, ts);
    return AUTHZ_CEL_ETYPE;
}

//  ---------------------------------------------------------------------
//  Compilation and the public API.

//  Decode a parameter type reference {"type_name": ..., "generic_types": [...]}.
static const s_type_t *
s_decode_type (authz_cel_t *self, json_t *j, int depth, char *err, size_t err_len)
{
    static const struct { const char *name; const s_type_t *type; } names [] = {
        {"TYPE_NAME_ANY", &T_DYN}, {"TYPE_NAME_BOOL", &T_BOOL},
        {"TYPE_NAME_STRING", &T_STRING}, {"TYPE_NAME_INT", &T_INT},
        {"TYPE_NAME_UINT", &T_UINT}, {"TYPE_NAME_DOUBLE", &T_DOUBLE},
        {"TYPE_NAME_DURATION", &T_DUR}, {"TYPE_NAME_TIMESTAMP", &T_TS},
        {"TYPE_NAME_IPADDRESS", &T_IP}, {"TYPE_NAME_LIST", &T_LISTA},
        {"TYPE_NAME_MAP", &T_MAPAB}
    };
    const char *name = json_is_object (j)? json_string_value (json_object_get (j, "type_name")): NULL;
    if (depth > S_MAX_TYPE_DEPTH) {
        s_errf (err, err_len, "parameter type nested deeper than %d", S_MAX_TYPE_DEPTH);
        return NULL;
    }
    for (size_t i = 0; name && i < sizeof names / sizeof names [0]; i++) {
        if (strcmp (names [i].name, name))
            continue;
        const s_type_t *t = names [i].type;
        if (t->k != K_LIST && t->k != K_MAP)
            return t;
        json_t *g = json_object_get (j, "generic_types");
        if (json_array_size (g) != 1) {
            s_errf (err, err_len, "type `%s` requires 1 generic types; found %zu", name, json_array_size (g));
            return NULL;
        }
        const s_type_t *e = s_decode_type (self, json_array_get (g, 0), depth + 1, err, err_len);
        if (!e)
            return NULL;
        s_type_t *nt = s_alloc (&self->arena, sizeof *nt);
        if (!nt) {
            s_errf (err, err_len, "out of memory");
            return NULL;
        }
        nt->k = t->k;
        nt->p1 = t->k == K_LIST? e: &T_STRING;
        nt->p2 = t->k == K_MAP? e: NULL;
        return nt;
    }
    s_errf (err, err_len, "unknown parameter type '%s'", name? name: "(none)");
    return NULL;
}

//  Compile the regular expressions matches() calls give as literals.
static int
s_precompile (authz_cel_t *self, s_node_t *n)
{
    for (uint32_t i = 0; i < n->nargs; i++) {
        int rc = s_precompile (self, n->args [i]);
        if (rc)
            return rc;
    }
    if (n->kind != N_CALL || n->fn != F_MATCHES || n->nargs != 2
    ||  n->args [1]->kind != N_LIT || n->args [1]->lit.k != K_STRING)
        return 0;
    regex_t **list = realloc (self->regexes, (self->nregexes + 1) * sizeof *list);
    if (!list)
        return AUTHZ_CEL_ELIMIT;
    self->regexes = list;
    regex_t *re = malloc (sizeof *re);
    if (!re)
        return AUTHZ_CEL_ELIMIT;
    char msg [S_MAX_ERRMSG];
    if (s_re_compile (n->args [1]->lit.s.p, n->args [1]->lit.s.n, re, msg, sizeof msg)) {
        free (re);              //  cel-go reports a bad pattern when evaluating
        return 0;
    }
    self->regexes [self->nregexes++] = re;
    n->re = re;
    return 0;
}

int
authz_cel_compile (authz_cel_t **out, const char *expr, json_t *params,
                   char *err, size_t err_len)
{
    assert (out);
    *out = NULL;
    int rc = 0;
    authz_cel_t *self = NULL;
    if (err && err_len)
        err [0] = 0;
    if (!expr) {
        s_errf (err, err_len, "no expression");
        rc = AUTHZ_CEL_ESYNTAX;
        goto done;
    }
    size_t len = strnlen (expr, AUTHZ_CEL_MAX_EXPR_LEN + 1);
    if (len > AUTHZ_CEL_MAX_EXPR_LEN) {
        s_errf (err, err_len, "expression longer than %d bytes", AUTHZ_CEL_MAX_EXPR_LEN);
        rc = AUTHZ_CEL_ELIMIT;
        goto done;
    }
    if (params && !json_is_object (params)) {
        s_errf (err, err_len, "parameters must be a JSON object");
        rc = AUTHZ_CEL_ETYPE;
        goto done;
    }
    size_t np = params? json_object_size (params): 0;
    if (np > AUTHZ_CEL_MAX_PARAMS) {
        s_errf (err, err_len, "more than %d parameters", AUTHZ_CEL_MAX_PARAMS);
        rc = AUTHZ_CEL_ELIMIT;
        goto done;
    }
    self = calloc (1, sizeof *self);
    if (!self) {
        rc = AUTHZ_CEL_ELIMIT;
        goto done;
    }
    self->arena.limit = S_MAX_COMPILE_MEM;
    self->source = s_strndup (&self->arena, expr, len);
    self->params = s_alloc (&self->arena, (np + 1) * sizeof *self->params);
    if (!self->source || !self->params) {
        rc = AUTHZ_CEL_ELIMIT;
        goto done;
    }
    const char *pname;
    json_t *ptype;
    json_object_foreach (params, pname, ptype) {
        size_t nl = strlen (pname);
        if (nl == 0 || nl > S_MAX_PARAM_NAME) {
            s_errf (err, err_len, "parameter name empty or longer than %d bytes", S_MAX_PARAM_NAME);
            rc = AUTHZ_CEL_ETYPE;
            goto done;
        }
        s_param_t *p = &self->params [self->nparams++];
        p->name = s_strndup (&self->arena, pname, nl);
        char why [S_MAX_ERRMSG] = "";
        p->type = s_decode_type (self, ptype, 0, why, sizeof why);
        if (!p->name || !p->type) {
            s_errf (err, err_len, "failed to decode parameter type for parameter '%s': %s", pname, why);
            rc = AUTHZ_CEL_ETYPE;
            goto done;
        }
    }
    s_parser_t p = {.cel = self, .src = self->source, .len = len, .err = err, .err_len = err_len};
    s_next (&p);
    self->root = s_parse_expr (&p);
    if (!p.rc && p.tok.k != TK_EOF)
        s_perr (&p, AUTHZ_CEL_ESYNTAX, p.tok.pos, "unexpected token");
    if ((rc = p.rc))
        goto done;
    s_checker_t ck = {.cel = self, .err = err, .err_len = err_len};
    const s_type_t *t = s_check (&ck, self->root, 0);
    if ((rc = ck.rc))
        goto done;
    if (t->k != K_BOOL) {
        char ts [96];
        s_type_str (t, ts, sizeof ts);
        s_errf (err, err_len, "expected a bool condition expression output, but got '%s'", ts);
        rc = AUTHZ_CEL_ENOTBOOL;
        goto done;
    }
    if ((rc = s_precompile (self, self->root)))
        s_errf (err, err_len, "out of memory");
done:
    if (rc == AUTHZ_CEL_ELIMIT && err && err_len && !err [0])
        s_errf (err, err_len, "expression over the compile memory limit");
    if (rc)
        authz_cel_destroy (&self);
    *out = self;
    return rc;
}

//  Evaluate for both entry points; partial selects unknowns for absent
//  parameters over failing at once.
static int
s_run (const authz_cel_t *self, json_t *context, bool partial,
       json_t **missing, char *err, size_t err_len)
{
    assert (self);
    int rc = 0;
    json_t *absent = NULL;
    if (missing)
        *missing = NULL;
    if (err && err_len)
        err [0] = 0;
    s_eval_t ev = {.cel = self};
    ev.arena.limit = AUTHZ_CEL_MAX_EVAL_MEMORY;
    if (context && !json_is_object (context)) {
        s_errf (err, err_len, "context must be a JSON object");
        rc = AUTHZ_CEL_ETYPE;
        goto done;
    }
    if (self->nparams == 0 && json_object_size (context) > 0) {
        s_errf (err, err_len, "no parameters defined for the condition");
        rc = AUTHZ_CEL_ETYPE;
        goto done;
    }
    ev.params = s_alloc (&ev.arena, (self->nparams + 1) * sizeof *ev.params);
    ev.vars = s_alloc (&ev.arena, (self->nslots + 1) * sizeof *ev.vars);
    if (!ev.params || !ev.vars) {
        rc = AUTHZ_CEL_ELIMIT;
        goto done;
    }
    s_conv_t cv = {.ev = &ev, .budget = AUTHZ_CEL_MAX_CONTEXT_VALUES, .err = err, .err_len = err_len};
    for (size_t i = 0; i < self->nparams; i++) {
        json_t *j = context? json_object_get (context, self->params [i].name): NULL;
        if (!j) {
            ev.params [i].k = V_UNKNOWN;
            if (!absent)
                absent = json_array ();
            json_array_append_new (absent, json_string (self->params [i].name));
            continue;
        }
        if ((rc = s_from_json (&cv, self->params [i].type, j, &ev.params [i], 0, self->params [i].name)))
            goto done;
    }
    if (absent && !partial) {
        char names [160] = "";
        size_t used = 0;
        for (size_t i = 0; i < json_array_size (absent) && used < sizeof names - 1; i++)
            used += (size_t) snprintf (names + used, sizeof names - used, "%s%s", i? ", ": "",
                                       json_string_value (json_array_get (absent, i)));
        s_errf (err, err_len, "missing context parameters: %s", names);
        rc = AUTHZ_CEL_EMISSING;
        goto done;
    }
    s_val_t v = s_eval (&ev, self->root);
    if (ev.abort)
        v = ev.abort_val;
    if (v.k == V_UNKNOWN) {
        s_errf (err, err_len, "the result depends on missing context parameters");
        rc = AUTHZ_CEL_EMISSING;
    }
    else
    if (v.k == V_ERR) {
        s_errf (err, err_len, "failed to evaluate condition expression: %s", v.s.p);
        rc = v.code;
    }
    else
    if (v.k != K_BOOL) {
        s_errf (err, err_len, "condition expression did not yield a bool");
        rc = AUTHZ_CEL_ENOTBOOL;
    }
    else
        rc = v.b;
done:
    if (rc == AUTHZ_CEL_ELIMIT && err && err_len && !err [0])
        s_errf (err, err_len, "evaluation over the memory limit");
    if (missing && absent && (rc >= 0 || rc == AUTHZ_CEL_EMISSING)) {
        *missing = absent;
        absent = NULL;
    }
    json_decref (absent);
    s_arena_free (&ev.arena);
    return rc;
}

int
authz_cel_eval (const authz_cel_t *self, json_t *context,
                json_t **missing, char *err, size_t err_len)
{
    return s_run (self, context, false, missing, err, err_len);
}

int
authz_cel_eval_partial (const authz_cel_t *self, json_t *context,
                        json_t **missing, char *err, size_t err_len)
{
    return s_run (self, context, true, missing, err, err_len);
}

const char *
authz_cel_expression (const authz_cel_t *self)
{
    return self && self->source? self->source: "";
}

const char *
authz_cel_strerror (int code)
{
    switch (code) {
        case AUTHZ_CEL_ESYNTAX: return "syntax error";
        case AUTHZ_CEL_ETYPE: return "type error";
        case AUTHZ_CEL_EMISSING: return "missing parameter";
        case AUTHZ_CEL_EEVAL: return "evaluation error";
        case AUTHZ_CEL_ELIMIT: return "limit exceeded";
        case AUTHZ_CEL_ENOTBOOL: return "not a bool";
        default: return code >= 0? "ok": "unknown error";
    }
}

void
authz_cel_destroy (authz_cel_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    authz_cel_t *self = *self_p;
    for (size_t i = 0; i < self->nregexes; i++) {
        regfree (self->regexes [i]);
        free (self->regexes [i]);
    }
    free (self->regexes);
    s_arena_free (&self->arena);
    free (self);
    *self_p = NULL;
}
