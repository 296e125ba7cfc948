/*  authz_mod.c — OpenFGA's modular models: fga.mod and module files
    combined into one model (see the header). */
#include "authz_mod.h"
#include "authz_dsl.h"
#include "bus_error.h"

#include <ctype.h>
#include <stdarg.h>
#include <libgen.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_MOD_MAX_BYTES (64 * 1024)

/*  An error {msg, line, column} (0-based), with file when given. */
static void
s_err (json_t *errors, const char *file, int line, int col_start, int col_end, const char *fmt, ...)
    __attribute__((format (printf, 6, 7)));

static void
s_err (json_t *errors, const char *file, int line, int col_start, int col_end, const char *fmt, ...)
{
    char msg [512];
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (msg, sizeof msg, fmt, ap);
    va_end (ap);
    json_t *e = json_pack ("{s:s, s:{s:i, s:i}, s:{s:i, s:i}}", "msg", msg, "line", "start", line, "end", line,
                           "column", "start", col_start, "end", col_end);
    if (e && file)
        json_object_set_new (e, "file", json_string (file));
    json_array_append_new (errors, e);
}

/* --- fga.mod -------------------------------------------------------------- */

/*  A scalar of the manifest: its text (unquoted), where it is, and
    whether it is a string (quoted, or plain and not a bool or number). */
typedef struct {
    char text [PATH_MAX];
    int col_start, col_end;
    bool string;
} s_scalar_t;

/*  Read the scalar that starts at line [at] (to the end of the line, less
    trailing blanks and a ` #` comment when plain). */
static void
s_scalar (const char *line, int at, s_scalar_t *out)
{
    int end = (int) strlen (line);
    while (end > at && isspace ((unsigned char) line [end - 1]))
        end--;
    out->col_start = at;
    out->string = true;
    if (line [at] == '\'' || line [at] == '"') {
        char q = line [at];
        int close = end - 1;
        while (close > at && line [close] != q)
            close--;
        if (close <= at)
            close = end;
        snprintf (out->text, sizeof out->text, "%.*s", close - at - 1, line + at + 1);
        out->col_end = close < end ? close + 1 : end;
        return;
    }
    const char *hash = strstr (line + at, " #");
    if (hash && hash - line < end)
        end = (int) (hash - line);
    while (end > at && isspace ((unsigned char) line [end - 1]))
        end--;
    snprintf (out->text, sizeof out->text, "%.*s", end - at, line + at);
    out->col_end = end;
    const char *t = out->text;
    char *num_end = NULL;
    bool number = *t && (strtod (t, &num_end), num_end && !*num_end);
    if (!strcmp (t, "true") || !strcmp (t, "false") || !strcmp (t, "True") || !strcmp (t, "False")
    ||  !strcmp (t, "TRUE") || !strcmp (t, "FALSE") || number || !*t || !strcmp (t, "null") || !strcmp (t, "~"))
        out->string = false;
}

/*  Decode %XX escapes into out. */
static void
s_percent_decode (const char *in, char *out, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; in [i] && o + 1 < size; i++) {
        if (in [i] == '%' && isxdigit ((unsigned char) in [i + 1]) && isxdigit ((unsigned char) in [i + 2])) {
            char hex [3] = { in [i + 1], in [i + 2], 0 };
            out [o++] = (char) strtol (hex, NULL, 16);
            i += 2;
        }
        else
            out [o++] = in [i];
    }
    out [o] = 0;
}

/*  A plain relative path: not absolute, no `..` part (after decoding %XX;
    `/` and `\` both separate parts). */
static bool
s_path_ok (const char *item)
{
    char path [PATH_MAX];
    s_percent_decode (item, path, sizeof path);
    if (path [0] == '/' || path [0] == '\\' || strchr (path, ':'))
        return false;
    for (char *p = path; *p; ) {
        size_t n = strcspn (p, "/\\");
        if (n == 2 && p [0] == '.' && p [1] == '.')
            return false;
        p += n;
        if (*p)
            p++;
    }
    return true;
}

/*  A node {value, line {start, end}, column {start, end}}. */
static json_t *
s_node (json_t *value, int line_start, int line_end, int col_start, int col_end)
{
    return json_pack ("{s:o, s:{s:i, s:i}, s:{s:i, s:i}}", "value", value, "line", "start", line_start, "end",
                      line_end, "column", "start", col_start, "end", col_end);
}

int
authz_mod_parse (const char *text, json_t **mod_out, json_t **errors_out)
{
    *mod_out = NULL;
    json_t *errors = json_array (), *items = json_array ();
    json_t *schema = NULL, *contents = NULL;
    int rc = errors && items ? 0 : BUS_ENOMEM;
    size_t len = text ? strlen (text) : 0;
    if (rc == 0 && len > S_MOD_MAX_BYTES) {
        s_err (errors, NULL, 0, 0, 0, "fga.mod is %zu bytes, at most %d", len, S_MOD_MAX_BYTES);
        rc = BUS_EINVAL;
    }
    bool in_contents = false, have_contents = false;
    int first_item = -1, last_item = -1, item_col = 0;
    char line [PATH_MAX + 64];
    int n = 0;
    for (const char *p = text; rc == 0 && p && *p; n++) {
        size_t l = strcspn (p, "\n");
        snprintf (line, sizeof line, "%.*s", (int) (l < sizeof line - 1 ? l : sizeof line - 1), p);
        p += l + (p [l] == '\n');
        line [strcspn (line, "\r")] = 0;
        int indent = (int) strspn (line, " ");
        if (!line [indent] || line [indent] == '#')
            continue;
        s_scalar_t v;
        if (indent == 0) {
            in_contents = false;
            if (!strncmp (line, "schema:", 7)) {
                int at = 7 + (int) strspn (line + 7, " \t");
                s_scalar (line, at, &v);
                json_decref (schema);
                schema = NULL;
                if (!v.string)
                    s_err (errors, NULL, n, v.col_start, v.col_end,
                           "unexpected schema type, expected string got value %s", v.text);
                else
                if (strcmp (v.text, "1.2"))
                    s_err (errors, NULL, n, v.col_start, v.col_end,
                           "unsupported schema version, fga.mod only supported in version `1.2`");
                else
                    schema = s_node (json_string (v.text), n, n, v.col_start, v.col_end);
                if (!schema)
                    schema = json_null ();  /* seen, refused */
            }
            else
            if (!strncmp (line, "contents:", 9)) {
                have_contents = true;
                int at = 9 + (int) strspn (line + 9, " \t");
                if (line [at] && line [at] != '#') {
                    s_scalar (line, at, &v);
                    s_err (errors, NULL, n, v.col_start, v.col_end,
                           "unexpected contents type, expected list of strings got value %s", v.text);
                }
                else
                    in_contents = true;
            }
            else
                s_err (errors, NULL, n, 0, (int) strcspn (line, ":"), "unexpected field %.*s",
                       (int) strcspn (line, ":"), line);
            continue;
        }
        if (!in_contents || line [indent] != '-' || (line [indent + 1] && line [indent + 1] != ' ')) {
            s_err (errors, NULL, n, indent, (int) strlen (line), "unexpected line in fga.mod");
            continue;
        }
        int at = indent + 1 + (int) strspn (line + indent + 1, " \t");
        s_scalar (line, at, &v);
        if (first_item < 0) {
            first_item = n;
            item_col = indent;
        }
        last_item = n;
        if (!v.string)
            s_err (errors, NULL, n, v.col_start, v.col_end, "unexpected contents item type, expected string got value %s",
                   v.text);
        else
        if (strlen (v.text) < 5 || strcmp (v.text + strlen (v.text) - 4, ".fga"))
            s_err (errors, NULL, n, v.col_start, v.col_end, "contents items should use fga file extension, got %s",
                   v.text);
        else
        if (!s_path_ok (v.text))
            s_err (errors, NULL, n, v.col_start, v.col_end, "invalid contents item %s", v.text);
        else
        if (json_array_size (items) >= AUTHZ_MOD_MAX_FILES)
            s_err (errors, NULL, n, v.col_start, v.col_end, "more than %d module files", AUTHZ_MOD_MAX_FILES);
        else
            json_array_append_new (items, s_node (json_string (v.text), n, n, v.col_start, v.col_end));
    }
    if (rc == 0 && !schema)
        s_err (errors, NULL, 0, 0, 0, "missing schema field");
    if (rc == 0 && !have_contents)
        s_err (errors, NULL, 0, 0, 0, "missing contents field");
    if (rc == 0 && json_array_size (errors))
        rc = BUS_EINVAL;
    if (rc == 0) {
        contents = s_node (json_incref (items), first_item < 0 ? 0 : first_item,
                           first_item < 0 ? 0 : last_item + 1, item_col, 0);
        *mod_out = json_pack ("{s:O, s:o}", "schema", schema, "contents", contents);
        if (!*mod_out)
            rc = BUS_ENOMEM;
    }
    json_decref (schema);
    json_decref (items);
    if (errors_out)
        *errors_out = errors;
    else
        json_decref (errors);
    return rc;
}

/* --- combining modules ---------------------------------------------------- */

/*  Where a declaration's name is in text: the first line (after skip
    lines) whose words are words [0..n) then name (followed by a blank,
    '(' or ':'); *line and *col (0-based), or false. */
static bool
s_find (const char *text, const char *const *words, int n_words, const char *name, int skip, int *line, int *col)
{
    int ln = 0;
    size_t name_len = strlen (name);
    for (const char *p = text; *p; ln++) {
        size_t l = strcspn (p, "\n");
        const char *q = p + strspn (p, " \t");
        bool match = ln >= skip;
        for (int w = 0; match && w < n_words; w++) {
            size_t wl = strlen (words [w]);
            match = !strncmp (q, words [w], wl) && (q [wl] == ' ' || q [wl] == '\t');
            q += match ? wl + strspn (q + wl, " \t") : 0;
        }
        if (match && !strncmp (q, name, name_len) && strchr (" \t(:\r\n", q [name_len])
        &&  q + name_len <= p + l) {
            *line = ln;
            *col = (int) (q - p);
            return true;
        }
        p += l + (p [l] == '\n');
    }
    return false;
}

/*  An error at a declaration found by s_find, or at 0:0. */
static void
s_err_at (json_t *errors, const char *file, const char *text, const char *const *words, int n_words,
          const char *name, int skip, const char *msg)
{
    int line = 0, col = 0, len = 0;
    if (s_find (text, words, n_words, name, skip, &line, &col))
        len = (int) strlen (name);
    s_err (errors, file, line, col, col + len, "%s", msg);
}

/*  The metadata of a declaration from module in file. */
static json_t *
s_origin (const char *module, const char *file)
{
    return json_pack ("{s:s, s:{s:s}}", "module", module, "source_info", "file", file);
}

/*  The type named name in types, or NULL. */
static json_t *
s_type_named (json_t *types, const char *name)
{
    size_t i;
    json_t *t;
    json_array_foreach (types, i, t)
        if (!strcmp (json_string_value (json_object_get (t, "type")) ?: "", name))
            return t;
    return NULL;
}

/*  Merge an `extend type` (ext, from module in file) into its type. */
static void
s_extend (json_t *types, json_t *ext, const char *module, const char *file, const char *text, json_t *errors)
{
    const char *name = json_string_value (json_object_get (ext, "type"));
    json_t *target = s_type_named (types, name);
    static const char *const extend_type [] = { "extend", "type" };
    if (!target) {
        char msg [400];
        snprintf (msg, sizeof msg, "extended type %s does not exist", name);
        s_err_at (errors, file, text, extend_type, 2, name, 0, msg);
        return;
    }
    int ext_line = 0, ext_col = 0;
    s_find (text, extend_type, 2, name, 0, &ext_line, &ext_col);
    const char *target_module = json_string_value (json_object_get (json_object_get (target, "metadata"), "module"));
    json_t *relations = json_object_get (target, "relations");
    json_t *meta = json_object_get (target, "metadata");
    json_t *meta_rel = json_object_get (meta, "relations");
    if (!json_is_object (meta_rel)) {
        meta_rel = json_object ();
        json_object_set_new (meta, "relations", meta_rel);
    }
    json_t *ext_meta = json_object_get (json_object_get (ext, "metadata"), "relations");
    const char *rel;
    json_t *rw;
    json_object_foreach (json_object_get (ext, "relations"), rel, rw) {
        if (json_object_get (relations, rel)) {
            char msg [400];
            snprintf (msg, sizeof msg, "relation %s already exists on type %s", rel, name);
            static const char *const define [] = { "define" };
            s_err_at (errors, file, text, define, 1, rel, ext_line, msg);
            continue;
        }
        json_object_set (relations, rel, rw);
        json_t *rm = json_deep_copy (json_object_get (ext_meta, rel));
        if (!rm)
            rm = json_object ();
        if (!target_module || strcmp (target_module, module)) {
            json_object_set_new (rm, "module", json_string (module));
            json_object_set_new (rm, "source_info", json_pack ("{s:s}", "file", file));
        }
        json_object_set_new (meta_rel, rel, rm);
    }
}

int
authz_mod_combine (json_t *files, json_t **model_out, json_t **errors_out)
{
    *model_out = NULL;
    json_t *errors = json_array (), *types = json_array (), *conditions = json_object ();
    json_t *parsed = json_array ();     /* [{file, text, model}] of module files */
    int rc = errors && types && conditions && parsed ? 0 : BUS_ENOMEM;
    size_t i;
    json_t *f;
    json_array_foreach (files, i, f) {
        if (rc)
            break;
        const char *file = json_string_value (json_object_get (f, "file"));
        const char *text = json_string_value (json_object_get (f, "text"));
        if (!file || !text) {
            rc = BUS_EINVAL;
            break;
        }
        json_t *m = NULL, *errs = NULL;
        int prc = authz_dsl_parse (&m, text, &errs);
        size_t k;
        json_t *e;
        json_array_foreach (errs, k, e) {
            json_t *copy = json_deep_copy (e);
            json_object_set_new (copy, "file", json_string (file));
            if (prc)
                json_object_set_new (copy, "type", json_string ("syntax"));
            json_array_append_new (errors, copy);
        }
        json_decref (errs);
        if (prc) {
            json_decref (m);
            continue;
        }
        const char *module = json_string_value (json_object_get (m, "module"));
        if (!module) {
            s_err (errors, file, 0, 0, 0, "file is not a module");
            json_decref (m);
            continue;
        }
        json_array_append_new (parsed, json_pack ("{s:s, s:s, s:o}", "file", file, "text", text, "model", m));
        /* its own types, in order; extensions wait for every type */
        json_t *t;
        json_array_foreach (json_object_get (m, "type_definitions"), k, t) {
            if (json_is_true (json_object_get (t, "extend")))
                continue;
            const char *name = json_string_value (json_object_get (t, "type"));
            if (s_type_named (types, name)) {
                char msg [400];
                snprintf (msg, sizeof msg, "duplicate type %s", name);
                static const char *const type_kw [] = { "type" };
                s_err_at (errors, file, text, type_kw, 1, name, 0, msg);
                continue;
            }
            json_t *copy = json_deep_copy (t);
            json_t *meta = s_origin (module, file);
            json_t *rels = json_object_get (json_object_get (t, "metadata"), "relations");
            if (rels)
                json_object_set (meta, "relations", rels);
            json_object_set_new (copy, "metadata", meta);
            json_array_append_new (types, copy);
        }
        const char *cname;
        json_t *cond;
        json_object_foreach (json_object_get (m, "conditions"), cname, cond) {
            if (json_object_get (conditions, cname)) {
                char msg [400];
                snprintf (msg, sizeof msg, "duplicate condition %s", cname);
                static const char *const cond_kw [] = { "condition" };
                s_err_at (errors, file, text, cond_kw, 1, cname, 0, msg);
                continue;
            }
            json_t *copy = json_deep_copy (cond);
            json_object_set_new (copy, "metadata", s_origin (module, file));
            json_object_set_new (conditions, cname, copy);
        }
    }
    json_t *p;
    json_array_foreach (parsed, i, p) {
        json_t *m = json_object_get (p, "model"), *t;
        size_t k;
        json_array_foreach (json_object_get (m, "type_definitions"), k, t)
            if (json_is_true (json_object_get (t, "extend")))
                s_extend (types, t, json_string_value (json_object_get (m, "module")),
                          json_string_value (json_object_get (p, "file")),
                          json_string_value (json_object_get (p, "text")), errors);
    }
    if (rc == 0 && json_array_size (errors))
        rc = BUS_EINVAL;
    if (rc == 0) {
        *model_out = json_pack ("{s:s, s:O}", "schema_version", "1.2", "type_definitions", types);
        if (*model_out && json_object_size (conditions))
            json_object_set (*model_out, "conditions", conditions);
        if (!*model_out)
            rc = BUS_ENOMEM;
    }
    json_decref (types);
    json_decref (conditions);
    json_decref (parsed);
    if (errors_out)
        *errors_out = errors;
    else
        json_decref (errors);
    return rc;
}

/*  A whole file as a new string, or NULL. */
static char *
s_read (const char *path, size_t max)
{
    FILE *f = fopen (path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc (max + 1);
    size_t n = buf ? fread (buf, 1, max + 1, f) : 0;
    fclose (f);
    if (!buf || n > max) {
        free (buf);
        return NULL;
    }
    buf [n] = 0;
    return buf;
}

int
authz_mod_load (const char *path, json_t **model_out, json_t **errors_out)
{
    *model_out = NULL;
    if (errors_out)
        *errors_out = NULL;
    char *text = s_read (path, S_MOD_MAX_BYTES);
    json_t *mod = NULL, *errors = NULL, *files = json_array ();
    int rc = text ? authz_mod_parse (text, &mod, &errors) : BUS_EIO;
    free (text);
    if (rc == BUS_EIO) {
        errors = json_array ();
        s_err (errors, path, 0, 0, 0, "cannot read %s", path);
    }
    char dir [PATH_MAX];
    snprintf (dir, sizeof dir, "%s", path);
    char *d = dirname (dir);
    size_t i;
    json_t *item;
    json_array_foreach (json_object_get (json_object_get (mod, "contents"), "value"), i, item) {
        const char *name = json_string_value (json_object_get (item, "value"));
        char full [PATH_MAX * 2];
        snprintf (full, sizeof full, "%s/%s", d, name);
        char *body = s_read (full, AUTHZ_DSL_MAX_SIZE);
        if (!body) {
            s_err (errors, name, 0, 0, 0, "cannot read module file %s", full);
            rc = BUS_EIO;
            continue;
        }
        json_array_append_new (files, json_pack ("{s:s, s:s}", "file", name, "text", body));
        free (body);
    }
    if (rc == 0) {
        json_decref (errors);
        errors = NULL;
        rc = authz_mod_combine (files, model_out, &errors);
    }
    json_decref (mod);
    json_decref (files);
    if (errors_out)
        *errors_out = errors ? errors : json_array ();
    else
        json_decref (errors);
    return rc;
}
