/*  authz_validate.c — normalise and validate OpenFGA models. See
    authz_validate.h. The rules, their order and their messages follow
    openfga/language's validator, so that errors match its case files.
*/
#include "authz_validate.h"
#include "authz_dsl.h"
#include "bus_error.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_TYPE_RULE      "^[^:#@\\*\\s]{1,254}$"
#define S_RELATION_RULE  "^[^:#@\\*\\s]{1,50}$"
#define S_MAX_STEPS      2000000     /* entry-point search budget */

/*  Validation state: the error list, the DSL lines (if any), the types by
    name, modules per file, and the search budget. */
typedef struct {
    json_t *errors;
    const char *dsl;
    const char **lines;      /* line starts in dsl */
    size_t *line_len;
    size_t nlines;
    json_t *types;           /* name -> type definition (borrowed) */
    json_t *file_modules;    /* file -> array of module names */
    long steps;
} s_ctx_t;

/*  How an error's column is found in its line (OpenFGA's resolvers). */
typedef enum { S_COL_WORD, S_COL_AFTER_FROM, S_COL_VALUE } s_col_t;

/* ------------------------------------------------------------------ */
/*  Normalisation                                                      */

/*  Rename key from to to in obj if present (an existing to wins). */
static void
s_rename (json_t *obj, const char *from, const char *to)
{
    json_t *v = json_object_get (obj, from);
    if (!v)
        return;
    if (!json_object_get (obj, to))
        json_object_set (obj, to, v);
    json_object_del (obj, from);
}

/*  Normalise a userset and its children. */
static void
s_norm_userset (json_t *us, int depth)
{
    if (!json_is_object (us) || depth > 256)
        return;
    s_rename (us, "computed_userset", "computedUserset");
    s_rename (us, "tuple_to_userset", "tupleToUserset");
    json_t *ttu = json_object_get (us, "tupleToUserset");
    if (json_is_object (ttu))
        s_rename (ttu, "computed_userset", "computedUserset");
    const char *ops [] = { "union", "intersection" };
    for (int i = 0; i < 2; i++) {
        json_t *child = json_object_get (json_object_get (us, ops [i]), "child");
        size_t k;
        json_t *c;
        json_array_foreach (child, k, c)
            s_norm_userset (c, depth + 1);
    }
    json_t *diff = json_object_get (us, "difference");
    s_norm_userset (json_object_get (diff, "base"), depth + 1);
    s_norm_userset (json_object_get (diff, "subtract"), depth + 1);
}

/*  Normalise metadata objects (type, relation or condition metadata). */
static void
s_norm_metadata (json_t *meta)
{
    if (!json_is_object (meta))
        return;
    s_rename (meta, "sourceInfo", "source_info");
    s_rename (meta, "directlyRelatedUserTypes", "directly_related_user_types");
    const char *k;
    json_t *v;
    json_object_foreach (json_object_get (meta, "relations"), k, v)
        s_norm_metadata (v);
}

/*  Normalise a condition parameter type (recursively for generics). */
static void
s_norm_param (json_t *p, int depth)
{
    if (!json_is_object (p) || depth > 8)
        return;
    s_rename (p, "typeName", "type_name");
    s_rename (p, "genericTypes", "generic_types");
    size_t i;
    json_t *g;
    json_array_foreach (json_object_get (p, "generic_types"), i, g)
        s_norm_param (g, depth + 1);
}

int
authz_model_normalize (json_t *model)
{
    if (!json_is_object (model))
        return BUS_EINVAL;
    s_rename (model, "schemaVersion", "schema_version");
    s_rename (model, "typeDefinitions", "type_definitions");
    size_t i;
    json_t *td;
    json_array_foreach (json_object_get (model, "type_definitions"), i, td) {
        const char *k;
        json_t *v;
        json_object_foreach (json_object_get (td, "relations"), k, v)
            s_norm_userset (v, 0);
        s_norm_metadata (json_object_get (td, "metadata"));
    }
    const char *name;
    json_t *cond;
    json_object_foreach (json_object_get (model, "conditions"), name, cond) {
        const char *k;
        json_t *v;
        json_object_foreach (json_object_get (cond, "parameters"), k, v)
            s_norm_param (v, 0);
        s_norm_metadata (json_object_get (cond, "metadata"));
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/*  Locating errors in the DSL text (OpenFGA's line heuristics)        */

/*  The line trimmed, with runs of 2+ spaces collapsed when collapse, into
    buf; true if it starts with prefix + name. */
static bool
s_line_starts (const s_ctx_t *c, size_t i, const char *prefix, const char *name, bool collapse)
{
    const char *s = c->lines [i];
    size_t n = c->line_len [i];
    while (n && isspace ((unsigned char) *s))
        s++, n--;
    char buf [512];
    size_t o = 0;
    for (size_t k = 0; k < n && o + 1 < sizeof buf; k++) {
        if (collapse && s [k] == ' ' && k + 1 < n && s [k + 1] == ' ') {
            while (k + 1 < n && s [k + 1] == ' ')
                k++;
        }
        buf [o++] = s [k];
    }
    buf [o] = '\0';
    size_t pl = strlen (prefix), nl = strlen (name);
    if (o < pl + nl || memcmp (buf, prefix, pl) != 0 || memcmp (buf + pl, name, nl) != 0)
        return false;
    char next = buf [pl + nl];      /* whole name: "define a" is not "define ab" */
    return !(isalnum ((unsigned char) next) || next == '_' || next == '-' || next == '/' || next == '.');
}

/*  First line at or after skip starting with prefix+name; skip-1 if none
    (what OpenFGA's findIndex arithmetic gives). -1 without DSL. */
static long
s_find_line (const s_ctx_t *c, const char *prefix, const char *name, long skip, bool collapse)
{
    if (!c->lines)
        return -1;
    if (skip < 0)
        skip = 0;
    for (size_t i = (size_t) skip; i < c->nlines; i++)
        if (s_line_starts (c, i, prefix, name, collapse))
            return (long) i;
    return skip - 1;
}

/*  Line of relation rel of type type. */
static long
s_rel_line (const s_ctx_t *c, const char *type, const char *rel)
{
    return s_find_line (c, "define ", rel, s_find_line (c, "type ", type, 0, false), true);
}

/*  Word character for \b. */
static bool
s_word_char (char ch)
{
    return isalnum ((unsigned char) ch) || ch == '_';
}

/*  Index of symbol in line (length n) bounded by \b on both sides, as the
    JavaScript regex /\bsymbol\b/ finds it; -1 if absent. */
static long
s_word_search (const char *line, size_t n, const char *symbol)
{
    size_t m = strlen (symbol);
    if (m == 0 || m > n)
        return m == 0 ? 0 : -1;
    for (size_t i = 0; i + m <= n; i++) {
        if (memcmp (line + i, symbol, m) != 0)
            continue;
        bool b1 = (i > 0 && s_word_char (line [i - 1])) != s_word_char (symbol [0]);
        bool b2 = (i + m < n && s_word_char (line [i + m])) != s_word_char (symbol [m - 1]);
        if (b1 && b2)
            return (long) i;
    }
    return -1;
}

/*  Index of needle in line (length n), -1 if absent. */
static long
s_index_of (const char *line, size_t n, const char *needle, size_t from)
{
    size_t m = strlen (needle);
    for (size_t i = from; i + m <= n; i++)
        if (memcmp (line + i, needle, m) == 0)
            return (long) i;
    return -1;
}

/* ------------------------------------------------------------------ */
/*  Errors                                                             */

/*  Append an error. line is a DSL line index (-1: no position). */
static void
s_raise (s_ctx_t *c, long line, s_col_t how, const char *symbol, const char *error_type,
         const char *type_name, const char *relation, const char *fmt, ...)
{
    char msg [1024];
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (msg, sizeof msg, fmt, ap);
    va_end (ap);
    json_t *meta = json_pack ("{s:s, s:s}", "symbol", symbol, "errorType", error_type);
    if (type_name)
        json_object_set_new (meta, "typeName", json_string (type_name));
    if (relation)
        json_object_set_new (meta, "relation", json_string (relation));
    json_t *e = json_pack ("{s:s, s:o}", "msg", msg, "metadata", meta);
    if (c->lines && line >= 0) {
        long col = 1;
        if ((size_t) line < c->nlines) {
            const char *raw = c->lines [line];
            size_t n = c->line_len [line];
            size_t from = 0;
            if (how == S_COL_VALUE) {       /* mark the value, not the key */
                long colon = s_index_of (raw, n, ":", 0);
                from = colon >= 0 ? (size_t) colon + 1 : 0;
            }
            long k = s_word_search (raw + from, n - from, symbol);
            if (k < 0)
                k = s_index_of (raw + from, n - from, symbol, 0);
            if (k < 0 && from) {
                k = s_word_search (raw, n, symbol);
                from = 0;
            }
            col = k >= 0 ? (long) from + k + 1 : 1;
            if (how == S_COL_AFTER_FROM) {
                long f = s_index_of (raw, n, "from", 0);
                long clause = f + 5;
                long k = clause >= 0 && (size_t) clause <= n ? s_index_of (raw, n, symbol, (size_t) clause) : -1;
                col = clause + (k >= 0 ? k - clause : -1) + 1;
            }
        }
        json_object_set_new (e, "line", json_pack ("{s:I, s:I}", "start", (json_int_t) line,
                                                   "end", (json_int_t) line));
        json_object_set_new (e, "column", json_pack ("{s:I, s:I}", "start", (json_int_t) (col - 1),
                                                     "end", (json_int_t) (col - 1 + (long) strlen (symbol))));
    }
    json_array_append_new (c->errors, e);
}

/* ------------------------------------------------------------------ */
/*  Model access helpers                                               */

/*  String member of an object or "". */
static const char *
s_str (json_t *obj, const char *key)
{
    const char *s = json_string_value (json_object_get (obj, key));
    return s ? s : "";
}

/*  The relations object of a type by name, or NULL. */
static json_t *
s_relations (const s_ctx_t *c, const char *type)
{
    return json_object_get (json_object_get (c->types, type), "relations");
}

/*  directly_related_user_types of type#rel (array or NULL). */
static json_t *
s_direct_types (const s_ctx_t *c, const char *type, const char *rel)
{
    json_t *md = json_object_get (json_object_get (c->types, type), "metadata");
    return json_object_get (json_object_get (json_object_get (md, "relations"), rel),
                            "directly_related_user_types");
}

/*  Text of a type restriction: type, type:*, type#rel, then " with cond". */
static void
s_restriction_text (json_t *ref, char *buf, size_t size, bool with_condition)
{
    const char *rel = json_string_value (json_object_get (ref, "relation"));
    const char *cond = json_string_value (json_object_get (ref, "condition"));
    snprintf (buf, size, "%s%s%s%s%s", s_str (ref, "type"),
              json_object_get (ref, "wildcard") ? ":*" : rel ? "#" : "",
              json_object_get (ref, "wildcard") ? "" : rel ? rel : "",
              with_condition && cond ? " with " : "", with_condition && cond ? cond : "");
}

/*  Name of a partial definition for duplicate checks: "rel", "rel from
    ts", or NULL for `this` and operators. */
static void
s_partial_name (json_t *us, char *buf, size_t size)
{
    json_t *cu = json_object_get (us, "computedUserset");
    json_t *ttu = json_object_get (us, "tupleToUserset");
    buf [0] = '\0';
    if (cu)
        snprintf (buf, size, "%s", s_str (cu, "relation"));
    else
    if (ttu)
        snprintf (buf, size, "%s from %s", s_str (json_object_get (ttu, "computedUserset"), "relation"),
                  s_str (json_object_get (ttu, "tupleset"), "relation"));
}

/*  Remember that file holds module (OpenFGA's one-module-per-file rule). */
static void
s_track_module (s_ctx_t *c, json_t *meta)
{
    const char *module = json_string_value (json_object_get (meta, "module"));
    const char *file = json_string_value (json_object_get (json_object_get (meta, "source_info"), "file"));
    if (!module || !file)
        return;
    json_t *list = json_object_get (c->file_modules, file);
    if (!list) {
        list = json_array ();
        json_object_set_new (c->file_modules, file, list);
    }
    size_t i;
    json_t *m;
    json_array_foreach (list, i, m)
        if (strcmp (json_string_value (m), module) == 0)
            return;
    json_array_append_new (list, json_string (module));
}

/* ------------------------------------------------------------------ */
/*  Rules                                                              */

/*  Length in code points of a UTF-8 string, and whether it matches
    ^[^:#@*\s]{1,max}$. */
static bool
s_name_ok (const char *s, size_t max)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
        if (*p == ':' || *p == '#' || *p == '@' || *p == '*' || isspace (*p))
            return false;
        if ((*p & 0xC0) != 0x80)
            n++;
    }
    return n >= 1 && n <= max;
}

/*  Names: reserved words and naming rules for types and relations. */
static void
s_check_names (s_ctx_t *c, json_t *types)
{
    size_t i;
    json_t *td;
    json_array_foreach (types, i, td) {
        const char *type = s_str (td, "type");
        s_track_module (c, json_object_get (td, "metadata"));
        long tl = s_find_line (c, "type ", type, 0, false);
        if (!strcmp (type, "self") || !strcmp (type, "this"))
            s_raise (c, tl, S_COL_WORD, type, "reserved-type-keywords", NULL, NULL,
                     "a type cannot be named 'self' or 'this'.");
        if (!s_name_ok (type, 254))
            s_raise (c, tl, S_COL_WORD, type, "invalid-name", NULL, NULL,
                     "type '%s' does not match naming rule: '" S_TYPE_RULE "'.", type);
        const char *rel;
        json_t *us;
        json_object_foreach (json_object_get (td, "relations"), rel, us) {
            long rl = s_find_line (c, "define ", rel, tl, true);
            if (!strcmp (rel, "self") || !strcmp (rel, "this"))
                s_raise (c, rl, S_COL_WORD, rel, "reserved-relation-keywords", NULL, NULL,
                         "a relation cannot be named 'self' or 'this'.");
            if (!s_name_ok (rel, 50))
                s_raise (c, rl, S_COL_WORD, rel, "invalid-name", NULL, NULL,
                         "relation '%s' of type '%s' does not match naming rule: '" S_RELATION_RULE "'.",
                         rel, type);
        }
    }
}

/*  One leaf of a relation definition (this, computed or tuple-to-userset):
    everything it names must exist. */
static void
s_check_leaf (s_ctx_t *c, json_t *model, const char *type, const char *rel, json_t *leaf)
{
    json_t *relations = s_relations (c, type);
    long line = s_rel_line (c, type, rel);
    json_t *cu = json_object_get (leaf, "computedUserset");
    json_t *ttu = json_object_get (leaf, "tupleToUserset");
    char buf [600];
    if (cu) {
        const char *target = s_str (cu, "relation");
        if (*target && !json_object_get (relations, target))
            s_raise (c, line, S_COL_WORD, target, "missing-definition", type, rel,
                     "the relation `%s` does not exist.", target);
        return;
    }
    if (ttu) {
        const char *target = s_str (json_object_get (ttu, "computedUserset"), "relation");
        const char *from = s_str (json_object_get (ttu, "tupleset"), "relation");
        if (!*target || !*from)
            return;
        snprintf (buf, sizeof buf, "%s from %s", target, from);
        json_t *from_def = json_object_get (relations, from);
        if (from_def && !json_object_get (from_def, "this")) {
            s_raise (c, line, S_COL_AFTER_FROM, from, "tupleuserset-not-direct", type, rel,
                     "`%s` relation used inside from allows only direct relation.", from);
            return;
        }
        if (!from_def) {
            s_raise (c, line, S_COL_WORD, buf, "invalid-relation-type", type, rel,
                     "`%s` is not a valid relation for `%s`.", from, type);
            return;
        }
        json_t *from_types = s_direct_types (c, type, from);
        size_t i, bad = 0, n = json_array_size (from_types);
        json_t *ref;
        json_array_foreach (from_types, i, ref) {
            if (json_object_get (ref, "wildcard") || json_object_get (ref, "relation"))
                s_raise (c, line, S_COL_AFTER_FROM, from, "tupleuserset-not-direct", type, rel,
                         "`%s` relation used inside from allows only direct relation.", from);
            else
            if (!json_object_get (s_relations (c, s_str (ref, "type")), target))
                bad++;
        }
        if (bad == n && n > 0) {
            json_array_foreach (from_types, i, ref) {
                if (json_object_get (ref, "wildcard") || json_object_get (ref, "relation"))
                    continue;
                s_raise (c, line, S_COL_WORD, buf, "invalid-relation-on-tupleset", type, rel,
                         "the `%s` relation definition on type `%s` is not valid: `%s` does not exist on `%s`, which is of type `%s`.",
                         target, type, target, from, s_str (ref, "type"));
            }
        }
        return;
    }
    /* this: the restrictions */
    json_t *refs = s_direct_types (c, type, rel);
    if (json_array_size (refs) == 0) {
        s_raise (c, line, S_COL_VALUE, "", "assignable-relation-must-have-type", type, rel,
                 "assignable relation '%s' must have types", c->lines ? "self" : "");
        return;
    }
    size_t i;
    json_t *ref;
    json_array_foreach (refs, i, ref) {
        const char *rtype = s_str (ref, "type");
        const char *rrel = json_string_value (json_object_get (ref, "relation"));
        const char *cond = json_string_value (json_object_get (ref, "condition"));
        if (!json_object_get (c->types, rtype))
            s_raise (c, line, S_COL_VALUE, rtype, "invalid-type", type, rel,
                     "`%s` is not a valid type.", rtype);
        if (cond && *cond && !json_object_get (json_object_get (model, "conditions"), cond))
            s_raise (c, line, S_COL_VALUE, cond, "condition-not-defined", type, rel,
                     "`%s` is not a defined condition in the model.", cond);
        if (json_object_get (ref, "wildcard") && rrel) {
            s_restriction_text (ref, buf, sizeof buf, true);
            s_raise (c, line, S_COL_WORD, buf, "type-wildcard-relation", type, rel,
                     "type restriction `%s` cannot contain both wildcard and relation", buf);
        }
        else
        if (rrel && !json_object_get (s_relations (c, rtype), rrel)) {
            snprintf (buf, sizeof buf, "%s#%s", rtype, rrel);
            s_raise (c, line, S_COL_VALUE, buf, "invalid-relation-type", rtype, rel,
                     "`%s` is not a valid relation for `%s`.", rrel, rtype);
        }
    }
}

/*  Walk a relation definition breadth first (as OpenFGA does) and check
    each leaf. */
static void
s_check_relation (s_ctx_t *c, json_t *model, const char *type, const char *rel, json_t *def)
{
    json_t *queue = json_array ();
    json_array_append (queue, def);
    for (size_t head = 0; head < json_array_size (queue) && head < 100000; head++) {
        json_t *us = json_array_get (queue, head);
        json_t *kids = json_object_get (json_object_get (us, "union"), "child");
        if (!json_array_size (kids))
            kids = json_object_get (json_object_get (us, "intersection"), "child");
        json_t *diff = json_object_get (us, "difference");
        if (json_array_size (kids))
            json_array_extend (queue, kids);
        else
        if (json_object_get (diff, "base") && json_object_get (diff, "subtract")) {
            json_array_append (queue, json_object_get (diff, "base"));
            json_array_append (queue, json_object_get (diff, "subtract"));
        }
        else
            s_check_leaf (c, model, type, rel, us);
    }
    json_decref (queue);
}

/*  Duplicates inside one relation: repeated type restrictions, repeated
    partial definitions under one operator. */
static void
s_check_duplicates (s_ctx_t *c, const char *type, const char *rel, json_t *def, json_t *meta)
{
    long line = s_rel_line (c, type, rel);
    char buf [600], other [600];
    json_t *seen = json_object ();
    size_t i;
    json_t *ref;
    json_array_foreach (json_object_get (meta, "directly_related_user_types"), i, ref) {
        s_restriction_text (ref, buf, sizeof buf, true);
        if (json_object_get (seen, buf))
            s_raise (c, line, S_COL_VALUE, buf, "duplicated-error", NULL, buf,
                     "the type restriction `%s` is a duplicate in the relation `%s`.", buf, rel);
        json_object_set_new (seen, buf, json_true ());
    }
    const char *ops [] = { "union", "intersection" };
    for (int k = 0; k < 2; k++) {
        json_object_clear (seen);
        json_t *us;
        json_array_foreach (json_object_get (json_object_get (def, ops [k]), "child"), i, us) {
            s_partial_name (us, buf, sizeof buf);
            if (*buf && json_object_get (seen, buf))
                s_raise (c, line, S_COL_WORD, buf, "duplicated-error", NULL, buf,
                         "the partial relation definition `%s` is a duplicate in the relation `%s`.", buf, rel);
            json_object_set_new (seen, buf, json_true ());
        }
    }
    json_t *diff = json_object_get (def, "difference");
    if (diff) {
        s_partial_name (json_object_get (diff, "base"), buf, sizeof buf);
        s_partial_name (json_object_get (diff, "subtract"), other, sizeof other);
        if (*buf && !strcmp (buf, other))
            s_raise (c, line, S_COL_WORD, buf, "duplicated-error", NULL, buf,
                     "the partial relation definition `%s` is a duplicate in the relation `%s`.", buf, rel);
    }
    json_decref (seen);
}

/*  Mark type#rel in a visited set. */
static void
s_visit (json_t *visited, const char *type, const char *rel)
{
    json_t *t = json_object_get (visited, type);
    if (!t) {
        t = json_object ();
        json_object_set_new (visited, type, t);
    }
    json_object_set_new (t, rel, json_true ());
}

/*  True if type#rel is in a visited set. */
static bool
s_visited (json_t *visited, const char *type, const char *rel)
{
    return json_object_get (json_object_get (visited, type), rel) != NULL;
}

/*  Does rewrite (of type#rel) have an entry point (a way for a tuple to
    satisfy it)? Sets *loop when a computed relation leads back on itself.
    OpenFGA's hasEntryPointOrLoop, with a step budget. */
static bool
s_entry (s_ctx_t *c, const char *type, const char *rel, json_t *rewrite, json_t *visited_in, bool *loop)
{
    *loop = false;
    if (++c->steps > S_MAX_STEPS)
        return true;        /* the caller reports the budget */
    json_t *relations = s_relations (c, type);
    if (!rel || !json_object_get (relations, rel))
        return false;
    json_t *visited = json_deep_copy (visited_in);
    s_visit (visited, type, rel);
    bool entry = false, sub_loop = false;
    json_t *cu = json_object_get (rewrite, "computedUserset");
    json_t *ttu = json_object_get (rewrite, "tupleToUserset");
    json_t *kids;
    if (json_object_get (rewrite, "this")) {
        size_t i;
        json_t *ref;
        json_array_foreach (s_direct_types (c, type, rel), i, ref) {
            const char *rt = s_str (ref, "type");
            const char *rr = json_string_value (json_object_get (ref, "relation"));
            if (!rr || json_object_get (ref, "wildcard")) {
                entry = true;
                break;
            }
            json_t *target = json_object_get (s_relations (c, rt), rr);
            if (!target)
                break;
            if (s_visited (visited, rt, rr))
                continue;
            if (s_entry (c, rt, rr, target, visited, &sub_loop)) {
                entry = true;
                break;
            }
        }
    }
    else
    if (cu) {
        const char *target = s_str (cu, "relation");
        json_t *def = json_object_get (relations, target);
        if (def && s_visited (visited, type, target))
            *loop = true;
        else
        if (def)
            entry = s_entry (c, type, target, def, visited, loop);
    }
    else
    if (ttu) {
        const char *ts = s_str (json_object_get (ttu, "tupleset"), "relation");
        const char *target = s_str (json_object_get (ttu, "computedUserset"), "relation");
        size_t i;
        json_t *ref;
        if (*ts && *target && json_object_get (relations, ts))
            json_array_foreach (s_direct_types (c, type, ts), i, ref) {
                const char *rt = s_str (ref, "type");
                json_t *def = json_object_get (s_relations (c, rt), target);
                if (!def || s_visited (visited, rt, target))
                    continue;
                if (s_entry (c, rt, target, def, visited, &sub_loop)) {
                    entry = true;
                    break;
                }
            }
    }
    else
    if ((kids = json_object_get (json_object_get (rewrite, "union"), "child"))) {
        size_t i;
        json_t *k;
        json_array_foreach (kids, i, k) {
            if (s_entry (c, type, rel, k, visited, &sub_loop)) {
                entry = true;
                *loop = false;
                break;
            }
            *loop = *loop || sub_loop;
        }
    }
    else
    if ((kids = json_object_get (json_object_get (rewrite, "intersection"), "child"))) {
        size_t i;
        json_t *k;
        entry = true;
        json_array_foreach (kids, i, k)
            if (!s_entry (c, type, rel, k, visited, loop)) {
                entry = false;
                break;
            }
        if (entry)
            *loop = false;
    }
    else
    if (json_object_get (rewrite, "difference")) {
        json_t *diff = json_object_get (rewrite, "difference");
        entry = s_entry (c, type, rel, json_object_get (diff, "base"), visited_in, loop)
             && s_entry (c, type, rel, json_object_get (diff, "subtract"), visited_in, loop);
        if (entry)
            *loop = false;
    }
    json_decref (visited);
    return entry;
}

/*  Condition parameters: known type names, and generics where needed. */
static void
s_check_conditions (s_ctx_t *c, json_t *model)
{
    static const char *names [] = { "TYPE_NAME_ANY", "TYPE_NAME_BOOL", "TYPE_NAME_STRING",
        "TYPE_NAME_INT", "TYPE_NAME_UINT", "TYPE_NAME_DOUBLE", "TYPE_NAME_DURATION",
        "TYPE_NAME_TIMESTAMP", "TYPE_NAME_MAP", "TYPE_NAME_LIST", "TYPE_NAME_IPADDRESS", NULL };
    const char *cname;
    json_t *cond;
    json_object_foreach (json_object_get (model, "conditions"), cname, cond) {
        const char *pname;
        json_t *param;
        json_object_foreach (json_object_get (cond, "parameters"), pname, param) {
            const char *tn = s_str (param, "type_name");
            bool known = false;
            for (int i = 0; names [i] && !known; i++)
                known = !strcmp (tn, names [i]);
            bool generic = !strcmp (tn, "TYPE_NAME_MAP") || !strcmp (tn, "TYPE_NAME_LIST");
            if (!known || (generic && json_array_size (json_object_get (param, "generic_types")) != 1))
                s_raise (c, s_find_line (c, "condition ", cname, 0, false), S_COL_WORD, pname,
                         "invalid-condition-parameter", NULL, NULL,
                         "parameter `%s` of condition `%s` has an invalid type `%s`.", pname, cname, tn);
        }
    }
}

/*  OpenFGA's modelValidation for schema 1.1/1.2. */
static void
s_check_model (s_ctx_t *c, json_t *model, json_t *types)
{
    if (json_array_size (c->errors))
        return;
    json_t *used = json_object ();
    size_t i;
    json_t *td;
    json_array_foreach (types, i, td) {
        const char *rel;
        json_t *rm;
        json_object_foreach (json_object_get (json_object_get (td, "metadata"), "relations"), rel, rm) {
            size_t k;
            json_t *ref;
            json_array_foreach (json_object_get (rm, "directly_related_user_types"), k, ref)
                if (json_is_string (json_object_get (ref, "condition")))
                    json_object_set_new (used, s_str (ref, "condition"), json_true ());
        }
    }
    bool dup_types = false;
    json_array_foreach (types, i, td)
        dup_types = dup_types || json_object_get (c->types, s_str (td, "type")) != td;
    json_array_foreach (types, i, td) {
        const char *rel;
        json_t *def;
        json_object_foreach (json_object_get (td, "relations"), rel, def)
            if (!dup_types)     /* a duplicated type is reported alone */
                s_check_relation (c, model, s_str (td, "type"), rel, def);
    }
    if (json_array_size (c->errors) == 0) {
        json_t *seen = json_object ();
        json_array_foreach (types, i, td) {
            const char *type = s_str (td, "type");
            if (json_object_get (seen, type))
                s_raise (c, s_find_line (c, "type ", type, 0, false), S_COL_WORD, type,
                         "duplicated-error", NULL, NULL, "the type `%s` is a duplicate.", type);
            json_object_set_new (seen, type, json_true ());
            const char *rel;
            json_t *rm;
            json_object_foreach (json_object_get (json_object_get (td, "metadata"), "relations"), rel, rm)
                s_check_duplicates (c, type, rel, json_object_get (json_object_get (td, "relations"), rel), rm);
        }
        json_decref (seen);
    }
    if (json_array_size (c->errors) == 0) {
        json_array_foreach (types, i, td) {
            const char *type = s_str (td, "type");
            json_t *md = json_object_get (td, "metadata");
            const char *rel;
            json_t *def;
            json_object_foreach (json_object_get (td, "relations"), rel, def) {
                json_t *rm = json_object_get (json_object_get (md, "relations"), rel);
                s_track_module (c, json_object_get (rm, "module") ? rm : md);
                json_t *visited = json_object ();
                bool loop = false;
                bool entry = s_entry (c, type, rel, def, visited, &loop);
                json_decref (visited);
                if (!entry)
                    s_raise (c, s_rel_line (c, type, rel), S_COL_WORD, rel, "relation-no-entry-point",
                             type, rel, "`%s` is an impossible relation for `%s` (%s).", rel, type,
                             loop ? "potential loop" : "no entrypoint");
            }
        }
    }
    const char *cname;
    json_t *cond;
    json_object_foreach (json_object_get (model, "conditions"), cname, cond) {
        s_track_module (c, json_object_get (cond, "metadata"));
        const char *nested = s_str (cond, "name");
        if (strcmp (cname, nested) != 0)
            s_raise (c, -1, S_COL_WORD, nested, "different-nested-condition-name", NULL, NULL,
                     "condition key is `%s` but nested name property is %s", cname, nested);
        if (!json_object_get (used, cname))
            s_raise (c, s_find_line (c, "condition ", cname, 0, false), S_COL_WORD, cname,
                     "condition-not-used", NULL, NULL, "`%s` condition is not used in the model.", cname);
    }
    json_decref (used);
    s_check_conditions (c, model);
}

/*  Split the DSL into lines (pointers into the text). */
static int
s_split_lines (s_ctx_t *c, const char *dsl)
{
    size_t n = 1;
    for (const char *p = dsl; *p; p++)
        n += *p == '\n';
    c->lines = calloc (n, sizeof *c->lines);
    c->line_len = calloc (n, sizeof *c->line_len);
    if (!c->lines || !c->line_len)
        return BUS_ENOMEM;
    const char *start = dsl;
    for (const char *p = dsl;; p++) {
        if (*p == '\n' || *p == '\0') {
            c->lines [c->nlines] = start;
            c->line_len [c->nlines++] = (size_t) (p - start);
            start = p + 1;
            if (!*p)
                break;
        }
    }
    return 0;
}

int
authz_model_validate_dsl (json_t *model, const char *dsl, json_t **errors_out)
{
    if (errors_out)
        *errors_out = NULL;
    s_ctx_t c = { .errors = json_array (), .types = json_object (), .file_modules = json_object () };
    int rc = 0;
    if (!c.errors || !c.types || !c.file_modules) {
        rc = BUS_ENOMEM;
        goto done;
    }
    if (dsl && (rc = s_split_lines (&c, dsl)) != 0)
        goto done;
    if (!json_is_object (model)) {
        s_raise (&c, -1, S_COL_WORD, "", "invalid-model", NULL, NULL, "the model is not a JSON object");
        goto done;
    }
    json_t *types = json_object_get (model, "type_definitions");
    size_t i;
    json_t *td;
    json_array_foreach (types, i, td) {
        if (!json_is_object (td) || !json_is_string (json_object_get (td, "type"))) {
            s_raise (&c, -1, S_COL_WORD, "", "invalid-type", NULL, NULL,
                     "type definition %zu has no type name", i);
            goto done;
        }
        json_object_set (c.types, s_str (td, "type"), td);
    }
    s_check_names (&c, types);
    const char *version = json_string_value (json_object_get (model, "schema_version"));
    if (!version || !*version)
        s_raise (&c, c.lines ? 0 : -1, S_COL_WORD, "", "schema-version-required", NULL, NULL,
                 "schema version required");
    else
    if (!strcmp (version, "1.1") || !strcmp (version, "1.2"))
        s_check_model (&c, model, types);
    else
        s_raise (&c, s_find_line (&c, "schema ", version, 0, true), S_COL_WORD, version,
                 "invalid-schema", NULL, NULL, "invalid schema %s", version);
    const char *file;
    json_t *mods;
    json_object_foreach (c.file_modules, file, mods) {
        if (json_array_size (mods) < 2)
            continue;
        char list [512] = "";
        size_t o = 0;
        json_t *m;
        json_array_foreach (mods, i, m)
            o += (size_t) snprintf (list + o, o < sizeof list ? sizeof list - o : 0, "%s%s",
                                    i ? ", " : "", json_string_value (m));
        s_raise (&c, -1, S_COL_WORD, file, "multiple-modules-in-file", NULL, NULL,
                 "file %s would contain multiple module definitions (%s) when transforming to DSL. "
                 "Only one module can be defined per file.", file, list);
    }
    if (c.steps > S_MAX_STEPS) {
        s_raise (&c, -1, S_COL_WORD, "", "model-too-complex", NULL, NULL,
                 "the model is too complex to validate (over %d search steps)", S_MAX_STEPS);
        rc = BUS_ETOOBIG;
    }
done:
    if (rc == 0 && json_array_size (c.errors))
        rc = BUS_EINVAL;
    if (errors_out)
        *errors_out = c.errors;
    else
        json_decref (c.errors);
    json_decref (c.types);
    json_decref (c.file_modules);
    free (c.lines);
    free (c.line_len);
    return rc;
}

int
authz_model_validate (json_t *model, json_t **errors_out)
{
    return authz_model_validate_dsl (model, NULL, errors_out);
}

int
authz_dsl_load (json_t **model_out, const char *dsl, json_t **errors_out)
{
    if (!model_out)
        return BUS_EINVAL;
    json_t *model = NULL;
    int rc = authz_dsl_parse (&model, dsl, errors_out);
    if (rc == 0) {
        if (errors_out)
            json_decref (*errors_out);
        rc = authz_model_validate_dsl (model, dsl, errors_out);
    }
    if (rc != 0) {
        json_decref (model);
        model = NULL;
    }
    *model_out = model;
    return rc;
}
