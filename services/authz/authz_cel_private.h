/*  authz_cel_private.h — the CEL module's insides, shared by its files.

    Not an API: only authz_cel*.c include it. The module is split along
    the stages a condition goes through, each file one stage:

      authz_cel.c        the arena, compilation (parameter declarations,
                         then parse, check, precompile) and the public API
      authz_cel_parse.c  the lexer and the parser (source to syntax tree,
                         macros expanded into comprehension nodes)
      authz_cel_check.c  the type checker (cel-go's rules)
      authz_cel_lib.c    the function library: runtime helpers (equality
                         and ordering, RFC 3339 timestamps, Go durations,
                         IP addresses, number formatting, regular
                         expressions) and every function's overloads
      authz_cel_eval.c   the evaluator (CEL's error- and unknown-absorbing
                         logic and comprehensions), context conversion
                         (OpenFGA's parameter converters) and one run

    Names here are cel_*; helpers private to one file stay s_*. A compiled
    condition (authz_cel_t) is read-only once compiled; an evaluation
    (cel_eval_t) belongs to one thread and allocates from its own arena.
*/
#ifndef AUTHZ_CEL_PRIVATE_H
#define AUTHZ_CEL_PRIVATE_H

#include "authz_cel.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <regex.h>
#include <sys/types.h>

#define CEL_MAX_ERRMSG     240     /* bytes of an error message built here */

//  ---------------------------------------------------------------------
//  Arena: bump allocation in chunks, freed at once, with a byte cap.

typedef struct cel_chunk {
    struct cel_chunk *next;
    size_t cap, used;
    max_align_t data [];
} cel_chunk_t;

typedef struct {
    cel_chunk_t *head;
    size_t total;               //  bytes of all chunks
    size_t limit;               //  cap on total
} cel_arena_t;


//  ---------------------------------------------------------------------
//  Types (checker) and values (runtime).

typedef enum {
    K_DYN, K_NULL, K_BOOL, K_INT, K_UINT, K_DOUBLE, K_STRING, K_BYTES,
    K_DURATION, K_TIMESTAMP, K_IP, K_LIST, K_MAP, K_PARAM
} cel_kind_t;

typedef struct cel_type {
    uint8_t k;                  //  cel_kind_t
    uint8_t idx;                //  K_PARAM: which type parameter
    const struct cel_type *p1;    //  K_LIST element; K_MAP key
    const struct cel_type *p2;    //  K_MAP value
} cel_type_t;


/*  The types every file shares (defined in authz_cel.c; compared by
    address as well as by value). */
extern const cel_type_t T_DYN;
extern const cel_type_t T_NULL;
extern const cel_type_t T_BOOL;
extern const cel_type_t T_INT;
extern const cel_type_t T_UINT;
extern const cel_type_t T_DOUBLE;
extern const cel_type_t T_STRING;
extern const cel_type_t T_BYTES;
extern const cel_type_t T_DUR;
extern const cel_type_t T_TS;
extern const cel_type_t T_IP;
extern const cel_type_t T_PA;
extern const cel_type_t T_PB;
extern const cel_type_t T_LISTA;
extern const cel_type_t T_MAPAB;
extern const cel_type_t T_LISTDYN;
extern const cel_type_t T_MAPDYN;

//  Runtime value kinds: the type kinds that have values, plus error and
//  unknown (an absent parameter under partial evaluation).
enum { V_ERR = 100, V_UNKNOWN = 101 };

typedef struct cel_val cel_val_t;

typedef struct {
    size_t n;
    cel_val_t *items;
} cel_list_t;

typedef struct {
    size_t n;
    cel_val_t *keys, *vals;
} cel_map_t;

typedef struct {
    uint8_t family;             //  4 or 6
    uint8_t addr [16];
    const char *zone;           //  IPv6 zone or NULL
} cel_ip_t;

struct cel_val {
    uint8_t k;                  //  cel_kind_t or V_*
    union {
        bool b;
        int64_t i;
        uint64_t u;
        double d;
        struct { const char *p; size_t n; } s;      //  string, bytes, error message
        struct { int64_t sec; int32_t nsec, off; } ts;  //  off: zone offset, seconds
        int64_t dur;            //  nanoseconds, as Go's time.Duration
        const cel_ip_t *ip;
        const cel_list_t *list;
        const cel_map_t *map;
    };
    int code;                   //  V_ERR: AUTHZ_CEL_E*
};

//  ---------------------------------------------------------------------
//  The syntax tree.

typedef enum {
    N_LIT, N_IDENT, N_PARAM, N_IVAR, N_SELECT, N_HAS, N_CALL, N_AND, N_OR,
    N_COND, N_LIST, N_MAP, N_COMP
} cel_node_kind_t;

typedef enum {
    F_UNKNOWN, F_ADD, F_SUB, F_MUL, F_DIV, F_MOD, F_NEG, F_NOT, F_EQ, F_NE,
    F_LT, F_LE, F_GT, F_GE, F_IN, F_INDEX, F_SIZE, F_CONTAINS, F_STARTS,
    F_ENDS, F_MATCHES, F_INT, F_UINT, F_DOUBLE, F_STRING, F_BYTES, F_BOOL,
    F_DURATION, F_TIMESTAMP, F_DYN, F_IPADDRESS, F_IN_CIDR,
    F_FULLYEAR, F_MONTH, F_DAYOFYEAR, F_DAYOFMONTH, F_DATE, F_DAYOFWEEK,
    F_HOURS, F_MINUTES, F_SECONDS, F_MILLIS
} cel_fn_t;

typedef enum { M_ALL, M_EXISTS, M_EXISTS_ONE, M_MAP, M_MAP_FILTER, M_FILTER } cel_macro_t;

/*  What the cost of a pattern depends on (see authz_cel.h). */
typedef struct {
    size_t len;                 //  bytes of the translated (POSIX) pattern
    size_t program;             //  size with counted repetitions expanded
    bool anchored;              //  starts with ^ and has no alternation
} cel_re_info_t;

typedef struct cel_node cel_node_t;
struct cel_node {
    uint8_t kind;               //  cel_node_kind_t
    uint8_t fn;                 //  N_CALL: cel_fn_t; N_COMP: cel_macro_t
    bool member;                //  N_CALL: receiver style, args [0] is the target
    bool neg_only;              //  int literal 2^63, valid only negated
    bool paren;                 //  parenthesised
    uint32_t nargs;
    int32_t slot;               //  N_PARAM: parameter; N_IVAR, N_COMP: variable slot
    size_t pos;                 //  byte offset in the source
    const char *name;           //  identifier, field or function name
    cel_node_t **args;
    cel_val_t lit;                //  N_LIT
    const cel_type_t *type;       //  set by the checker
    regex_t *re;                //  F_MATCHES with a constant pattern that compiled
    cel_re_info_t re_info;      //  its cost
};

typedef struct {
    const char *name;
    const cel_type_t *type;
} cel_param_t;

struct authz_cel_t {
    cel_arena_t arena;            //  nodes, types, names, literals
    char *source;
    cel_node_t *root;
    cel_param_t *params;
    size_t nparams;
    size_t nslots;              //  comprehension variable slots
    regex_t **regexes;          //  compiled constant patterns, to regfree
    size_t nregexes;
};

//  ---------------------------------------------------------------------
//  Evaluator.

typedef struct {
    const authz_cel_t *cel;
    cel_arena_t arena;
    uint64_t cost;
    uint64_t limit;             //  cost allowed: AUTHZ_CEL_MAX_COST or less
    bool abort;                 //  a limit was hit: the whole evaluation fails
    cel_val_t abort_val;
    cel_val_t *params;
    cel_val_t *vars;
} cel_eval_t;

static inline cel_val_t cel_vbool (bool b) { cel_val_t v = {.k = K_BOOL}; v.b = b; return v; }
static inline cel_val_t cel_vint (int64_t i) { cel_val_t v = {.k = K_INT}; v.i = i; return v; }
static inline cel_val_t cel_vuint (uint64_t u) { cel_val_t v = {.k = K_UINT}; v.u = u; return v; }
static inline cel_val_t cel_vdouble (double d) { cel_val_t v = {.k = K_DOUBLE}; v.d = d; return v; }
static inline cel_val_t cel_vdur (int64_t ns) { cel_val_t v = {.k = K_DURATION}; v.dur = ns; return v; }

static inline bool
cel_is_err (const cel_val_t *v)
{
    return v->k == V_ERR || v->k == V_UNKNOWN;
}

//  ---------------------------------------------------------------------
//  Shared helpers, by the file that defines them.

/*  authz_cel.c: n zeroed bytes, 16-aligned, from the arena; NULL when over
    its cap or out of memory (the caller reports ELIMIT). */
void *cel_alloc (cel_arena_t *a, size_t n);
/*  authz_cel.c: free every chunk of the arena. */
void cel_arena_free (cel_arena_t *a);
/*  authz_cel.c: n bytes of s copied into the arena with a NUL. */
char *cel_strndup (cel_arena_t *a, const char *s, size_t n);
/*  authz_cel.c: a printf-style message into err (NULL or 0 length allowed). */
void cel_errf (char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format (printf, 3, 4)));
/*  authz_cel.c: the function's name as cel-go spells it in messages. */
const char *cel_fn_name (int fn);

/*  authz_cel_parse.c: parse self->source (len bytes) into self->root.
    Returns 0, AUTHZ_CEL_ESYNTAX or AUTHZ_CEL_ELIMIT (message in err). */
int cel_parse (authz_cel_t *self, size_t len, char *err, size_t err_len);

/*  authz_cel_check.c: type-check self->root, setting every node's type;
    the result must be bool. Returns 0, AUTHZ_CEL_ETYPE,
    AUTHZ_CEL_ENOTBOOL or AUTHZ_CEL_ELIMIT (message in err). */
int cel_check (authz_cel_t *self, char *err, size_t err_len);
/*  authz_cel_check.c: render t as cel-go spells types in messages. */
void cel_type_str (const cel_type_t *t, char *buf, size_t len);

/*  authz_cel_lib.c: parse an RFC 3339 timestamp, a Go duration, an IP
    address (the zone copied into arena a); false when malformed. */
bool cel_parse_rfc3339 (const char *s, size_t n, cel_val_t *out);
bool cel_parse_duration (const char *s, size_t n, int64_t *out);
bool cel_parse_ip (const char *s, size_t n, cel_ip_t *ip, cel_arena_t *a);
/*  authz_cel_lib.c: compile an RE2-style pattern into re, its cost into
    info. With ev, the compilation and a match of a subject of that many
    bytes are charged to it first (translation is linear; glibc's
    compilation follows the expanded size). Returns NULL
    or an error message (in msg, of msg_len bytes); with ev aborted, the
    charge failed. */
const char *cel_re_compile (const char *pat, size_t n, regex_t *re, cel_re_info_t *info,
                            cel_eval_t *ev, size_t subject, char *msg, size_t msg_len);
/*  authz_cel_lib.c: index of key in map m (CEL's heterogeneous key
    equality) or -1. */
ssize_t cel_map_find (cel_eval_t *ev, const cel_map_t *m, const cel_val_t *key);
/*  authz_cel_lib.c: apply call node n to its evaluated arguments a. */
cel_val_t cel_apply (cel_eval_t *ev, const cel_node_t *n, const cel_val_t *a);

/*  authz_cel_eval.c: an error value with a message in the arena. */
cel_val_t cel_verr (cel_eval_t *ev, int code, const char *fmt, ...)
    __attribute__((format (printf, 3, 4)));
/*  authz_cel_eval.c: stop the evaluation for a limit (no operator may
    absorb it); returns the abort value. */
cel_val_t cel_vlimit (cel_eval_t *ev, const char *what);
/*  authz_cel_eval.c: add units to the cost; false (and abort) when over
    the budget. */
bool cel_charge (cel_eval_t *ev, uint64_t units);
/*  authz_cel_eval.c: arena allocation during evaluation; aborts on
    exhaustion. */
void *cel_ealloc (cel_eval_t *ev, size_t n);
/*  authz_cel_eval.c: the "no such overload" error for fn. */
cel_val_t cel_nooverload (cel_eval_t *ev, int fn);
/*  authz_cel_eval.c: a string (k K_STRING) or bytes value of n bytes
    copied from p. */
cel_val_t cel_vstr (cel_eval_t *ev, int k, const char *p, size_t n);
/*  authz_cel_eval.c: one evaluation, for authz_cel_run, authz_cel_eval
    and authz_cel_eval_partial; see authz_cel.h. */
int cel_run (const authz_cel_t *self, authz_cel_run_t *run,
             json_t **missing, char *err, size_t err_len);

#endif
