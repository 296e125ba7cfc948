/*  bus_config.c — configuration from one table, a file and the environment.

    The key table is built from bus_config_keys.def by an X-macro; nothing
    here names a particular key. Every value, whatever its origin (default,
    INI file, environment, bus_config_set), goes through s_assign(), which
    validates it against the key's type and bounds and stores it in
    normalised text form plus, for INT and BOOL, its number.

    The INI file is read through inih's stream interface with our own line
    reader, which counts lines (this libinih is built without line numbers
    in the handler), rejects lines longer than inih's buffer (inih would
    silently split them) and rejects indented continuation lines (inih
    would silently replace the previous value).

    PATH values written in a file that are relative are made absolute
    against the file's folder as they are read, so that a config works
    from any working directory (`sanctumctl --config DIR/var/sanctum.conf`
    run elsewhere); defaults and environment values stay relative to the
    working directory. bus_config_write_file writes them back relative to
    the new file's folder when they lie under it.
*/
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bus_config.h"
#include "bus_error.h"

#define S_VALUE_MAX   160                   /* longest STR value, bytes */
#define S_FILE_MAX    (1024 * 1024)         /* largest config file, bytes */
#define S_ENV_MAX     128                   /* longest env variable name */
#define S_WHERE_MAX   512                   /* origin text in messages */

enum { s_type_STR, s_type_INT, s_type_BOOL, s_type_PATH };

typedef struct {
    const char *section;
    const char *key;
    int type;
    const char *def;
    long min, max;
    const char *help;
} s_key_t;

static const s_key_t s_keys [] = {
#define BUS_CONFIG_KEY(section, key, type, def, min, max, help) \
    { #section, #key, s_type_##type, def, min, max, help },
#include "bus_config_keys.def"
#undef BUS_CONFIG_KEY
};
#define S_NKEYS (sizeof s_keys / sizeof s_keys [0])

struct bus_config_t {
    char *str [S_NKEYS];                /* normalised text of each value */
    long num [S_NKEYS];                 /* INT value, or BOOL as 0/1 */
};

/*  State of one file parse, passed to the inih reader and handler. */
typedef struct {
    bus_config_t *self;
    const char *path;
    FILE *file;
    int line;                           /* number of the line just read */
    char *dir;                          /* the file's folder, absolute */
    int rc;                             /* first error, 0 if none */
    char *err;
    size_t err_len;
} s_parse_t;



/*  Index of a declared key, or -1. */
static int
s_find (const char *section, const char *key)
{
    for (size_t i = 0; section && key && i < S_NKEYS; i++)
        if (strcmp (s_keys [i].section, section) == 0
        &&  strcmp (s_keys [i].key, key) == 0)
            return (int) i;
    return -1;
}


/*  True if any key is declared in section. */
static bool
s_section_known (const char *section)
{
    for (size_t i = 0; i < S_NKEYS; i++)
        if (strcmp (s_keys [i].section, section) == 0)
            return true;
    return false;
}


/*  Parse value for key k into its normalised text (norm, at least
    S_VALUE_MAX + 1 bytes) and number. Returns NULL if valid, else a
    static reason. A STR value must survive a write and reload: no control
    characters, no leading or trailing blank, no inline comment (" ;" or a
    leading ';'). */
static const char *
s_parse_value (const s_key_t *k, const char *value, char *norm, long *num)
{
    static const char *bools [] = { "false", "true", "no", "yes", "off", "on", "0", "1" };
    size_t len = strlen (value);
    *num = 0;
    if (k->type == s_type_INT) {
        char *end;
        errno = 0;
        long v = strtol (value, &end, 10);
        if (len == 0 || !strchr ("+-0123456789", value [0]) || *end || errno)
            return "not an integer";
        if (v < k->min || v > k->max)
            return "out of bounds";
        *num = v;
        snprintf (norm, S_VALUE_MAX + 1, "%ld", v);
        return NULL;
    }
    if (k->type == s_type_BOOL) {
        for (size_t i = 0; i < sizeof bools / sizeof bools [0]; i++)
            if (strcasecmp (value, bools [i]) == 0) {
                *num = (long) (i % 2);
                strcpy (norm, *num? "true": "false");
                return NULL;
            }
        return "not a boolean (true|false|yes|no|on|off|1|0)";
    }
    if (len > S_VALUE_MAX)
        return "too long";
    for (size_t i = 0; i < len; i++)
        if ((unsigned char) value [i] < 0x20 || value [i] == 0x7f)
            return "contains a control character";
    if (len && (strchr (" \t", value [0]) || strchr (" \t", value [len - 1])))
        return "has leading or trailing blanks";
    if (value [0] == ';' || strstr (value, " ;") || strstr (value, "\t;"))
        return "starts with ';' or contains ' ;' (an INI comment)";
    memcpy (norm, value, len + 1);
    return NULL;
}


/*  Validate value for key index idx and store it. where names the origin
    for the error message ("file.ini:3", "environment VAR", "default"). */
static int
s_assign (bus_config_t *self, int idx, const char *value, const char *where,
          char *err, size_t err_len)
{
    const s_key_t *k = &s_keys [idx];
    char norm [S_VALUE_MAX + 1];
    long num;
    const char *why = s_parse_value (k, value, norm, &num);
    if (why) {
        if (k->type == s_type_INT)
            return bus_errf (err, err_len, BUS_ECONFIG, "%s: [%s] %s = '%.*s': %s (%ld..%ld)",
                           where, k->section, k->key, 40, value, why,
                           k->min, k->max);
        return bus_errf (err, err_len, BUS_ECONFIG, "%s: [%s] %s = '%.*s': %s",
                       where, k->section, k->key, 40, value, why);
    }
    char *copy = strdup (norm);
    if (!copy) {
        bus_errf (err, err_len, BUS_ECONFIG, "%s: out of memory", where);
        return BUS_ENOMEM;
    }
    free (self->str [idx]);
    self->str [idx] = copy;
    self->num [idx] = num;
    return 0;
}


/*  A relative PATH value read from a file: made absolute against dir (the
    file's folder), "./" prefixes dropped ("." alone is dir itself). The
    result may be longer than S_VALUE_MAX: it is never read back from a
    file as it is (bus_config_write_file makes it relative again). */
static int
s_resolve (bus_config_t *self, int idx, const char *dir, const char *where, char *err, size_t err_len)
{
    const char *value = self->str [idx];
    if (!value [0] || value [0] == '/' || !dir)
        return 0;
    while (value [0] == '.' && value [1] == '/') {
        value += 2;
        while (*value == '/')
            value++;
    }
    char *path = NULL;
    int rc = value [0] == 0 || strcmp (value, ".") == 0
           ? asprintf (&path, "%s", dir) : asprintf (&path, "%s/%s", strcmp (dir, "/") ? dir : "", value);
    if (rc < 0) {
        bus_errf (err, err_len, BUS_ECONFIG, "%s: out of memory", where);
        return BUS_ENOMEM;
    }
    free (self->str [idx]);
    self->str [idx] = path;
    return 0;
}


/*  inih line reader: fgets plus line counting and two checks (line too
    long for inih's buffer, indented continuation line). On a check
    failure it records the error and returns NULL, which inih takes for the
    end of the file. */
static char *
s_read_line (char *buf, int size, void *arg)
{
    s_parse_t *ctx = arg;
    if (!fgets (buf, size, ctx->file))
        return NULL;
    ctx->line++;
    size_t len = strlen (buf);
    if (len == (size_t) size - 1 && buf [len - 1] != '\n') {
        int next = getc (ctx->file);
        if (next != EOF) {
            ctx->rc = bus_errf (ctx->err, ctx->err_len, BUS_ECONFIG,
                              "%s:%d: line longer than %d bytes",
                              ctx->path, ctx->line, size - 3);
            return NULL;
        }
    }
    size_t indent = strspn (buf, " \t");
    if (indent > 0 && !strchr ("\r\n;#", buf [indent])) {
        ctx->rc = bus_errf (ctx->err, ctx->err_len, BUS_ECONFIG,
                          "%s:%d: indented line (continuation lines are not "
                          "supported)", ctx->path, ctx->line);
        return NULL;
    }
    return buf;
}


/*  inih handler: one "key = value" in a section. Returns 1 to go on, 0 on
    the first error (recorded in the context). */
static int
s_handle (void *arg, const char *section, const char *key, const char *value)
{
    s_parse_t *ctx = arg;
    if (ctx->rc)
        return 0;
    int idx = s_find (section, key);
    if (idx < 0) {
        ctx->rc = s_section_known (section)
            ? bus_errf (ctx->err, ctx->err_len, BUS_ECONFIG, "%s:%d: unknown key '%s' in [%s]",
                      ctx->path, ctx->line, key, section)
            : bus_errf (ctx->err, ctx->err_len, BUS_ECONFIG, "%s:%d: unknown section [%s] "
                      "(key '%s')", ctx->path, ctx->line, section, key);
        return 0;
    }
    char where [S_WHERE_MAX];
    snprintf (where, sizeof where, "%s:%d", ctx->path, ctx->line);
    ctx->rc = s_assign (ctx->self, idx, value, where, ctx->err, ctx->err_len);
    if (ctx->rc == 0 && s_keys [idx].type == s_type_PATH)
        ctx->rc = s_resolve (ctx->self, idx, ctx->dir, where, ctx->err, ctx->err_len);
    return ctx->rc == 0;
}


/*  The folder of the file at path, absolute (symbolic links resolved), or
    NULL with errno set; caller frees. */
static char *
s_folder (const char *path)
{
    char *copy = strdup (path);
    if (!copy)
        return NULL;
    char *slash = strrchr (copy, '/');
    const char *dir = !slash ? "." : slash == copy ? "/" : (*slash = 0, copy);
    char *real = realpath (dir, NULL);
    free (copy);
    return real;
}


/*  Read the INI file at path into self. A missing or unreadable file, one
    over S_FILE_MAX bytes, a syntax error and any bad key or value are
    BUS_ECONFIG with a message naming the file (and line). */
static int
s_load_file (bus_config_t *self, const char *path, char *err, size_t err_len)
{
    s_parse_t ctx = { self, path, NULL, 0, NULL, 0, err, err_len };
    struct stat st;
    int rc = 0;
    ctx.file = fopen (path, "r");
    if (!ctx.file) {
        rc = bus_errf (err, err_len, BUS_ECONFIG, "%s: cannot open: %s", path, strerror (errno));
        goto done;
    }
    ctx.dir = s_folder (path);
    if (!ctx.dir) {
        rc = bus_errf (err, err_len, BUS_ECONFIG, "%s: cannot resolve its folder: %s", path, strerror (errno));
        goto done;
    }
    if (fstat (fileno (ctx.file), &st) != 0 || !S_ISREG (st.st_mode)
    ||  st.st_size > S_FILE_MAX) {
        rc = bus_errf (err, err_len, BUS_ECONFIG, "%s: not a regular file of at most %d bytes",
                     path, S_FILE_MAX);
        goto done;
    }
    int line = ini_parse_stream (s_read_line, &ctx, s_handle, &ctx);
    if (ctx.rc)
        rc = ctx.rc;
    else
    if (line > 0)
        rc = bus_errf (err, err_len, BUS_ECONFIG, "%s:%d: syntax error (expected [section] "
                     "or key = value)", path, line);
    else
    if (line < 0)
        rc = bus_errf (err, err_len, BUS_ECONFIG, "%s: cannot parse (error %d)", path, line);
done:
    if (ctx.file)
        fclose (ctx.file);
    free (ctx.dir);
    return rc;
}


/*  Apply SANCTUM_<SECTION>_<KEY> environment overrides (upper-cased,
    '-' as '_') for every declared key. */
static int
s_load_env (bus_config_t *self, char *err, size_t err_len)
{
    for (size_t i = 0; i < S_NKEYS; i++) {
        char name [S_ENV_MAX];
        int len = snprintf (name, sizeof name, "SANCTUM_%s_%s",
                            s_keys [i].section, s_keys [i].key);
        assert (len > 0 && (size_t) len < sizeof name);
        for (char *p = name; *p; p++)
            *p = *p == '-'? '_': (char) toupper ((unsigned char) *p);
        const char *value = getenv (name);
        if (!value)
            continue;
        char where [S_WHERE_MAX];
        snprintf (where, sizeof where, "environment %s", name);
        int rc = s_assign (self, (int) i, value, where, err, err_len);
        if (rc)
            return rc;
    }
    return 0;
}


/*  Load defaults, then the file at path (if not NULL), then environment
    overrides. On error *out stays NULL and err holds the reason. A default
    that fails validation (a mistake in the key table) is reported the
    same way. */
int
bus_config_load (bus_config_t **out, const char *path, char *err, size_t err_len)
{
    assert (out);
    *out = NULL;
    if (err && err_len)
        err [0] = 0;
    int rc = 0;
    bus_config_t *self = calloc (1, sizeof *self);
    if (!self) {
        bus_errf (err, err_len, BUS_ECONFIG, "out of memory");
        return BUS_ENOMEM;
    }
    for (size_t i = 0; i < S_NKEYS && rc == 0; i++)
        rc = s_assign (self, (int) i, s_keys [i].def, "default", err, err_len);
    if (rc == 0 && path)
        rc = s_load_file (self, path, err, err_len);
    if (rc == 0)
        rc = s_load_env (self, err, err_len);
    if (rc == 0) {
        *out = self;
        self = NULL;
    }
    bus_config_destroy (&self);
    return rc;
}


/*  Free the config; accepts NULL, nulls the caller's pointer. */
void
bus_config_destroy (bus_config_t **self_p)
{
    assert (self_p);
    bus_config_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < S_NKEYS; i++)
        free (self->str [i]);
    free (self);
    *self_p = NULL;
}


/*  Index of a declared key of the given type (-1: any type); asking for an
    undeclared key or the wrong type is a programmer mistake. */
static int
s_key (const char *section, const char *key, int type)
{
    int idx = s_find (section, key);
    assert (idx >= 0 && "config key not declared in bus_config_keys.def");
    assert ((type < 0 || s_keys [idx].type == type) && "config key type");
    return idx;
}


/*  Text of a value (any type, normalised: "true"/"false" for BOOL). */
const char *
bus_config_str (bus_config_t *self, const char *section, const char *key)
{
    assert (self);
    return self->str [s_key (section, key, -1)];
}


/*  Value of an INT key. */
long
bus_config_int (bus_config_t *self, const char *section, const char *key)
{
    assert (self);
    return self->num [s_key (section, key, s_type_INT)];
}


/*  Value of a BOOL key. */
bool
bus_config_bool (bus_config_t *self, const char *section, const char *key)
{
    assert (self);
    return self->num [s_key (section, key, s_type_BOOL)] != 0;
}


/*  Override one value, validated like a file value. An unknown key is
    BUS_ECONFIG here (input from a CLI, not a programmer mistake). */
int
bus_config_set (bus_config_t *self, const char *section, const char *key,
                const char *value, char *err, size_t err_len)
{
    assert (self);
    int idx = s_find (section, key);
    if (idx < 0)
        return bus_errf (err, err_len, BUS_ECONFIG, "unknown key [%s] %s",
                       section? section: "(null)", key? key: "(null)");
    if (!value)
        return bus_errf (err, err_len, BUS_ECONFIG, "[%s] %s: no value", section, key);
    return s_assign (self, idx, value, "set", err, err_len);
}


/*  Write every key, grouped by section in table order, each preceded by
    its help (and bounds or accepted values) as a comment. Returns 0 or
    BUS_EIO. */
static int s_write (bus_config_t *self, FILE *out, const char *dir);

int
bus_config_write (bus_config_t *self, FILE *out)
{
    return s_write (self, out, NULL);
}


/*  An absolute, lexically clean form of path (relative: against the
    working directory; "." and empty components dropped); caller frees. */
static char *
s_absolute (const char *path)
{
    char *cwd = path [0] == '/' ? NULL : getcwd (NULL, 0);
    char *joined = NULL;
    if (path [0] != '/' && !cwd)
        return NULL;
    if (asprintf (&joined, "%s/%s", cwd ? cwd : "", path) < 0)
        joined = NULL;
    free (cwd);
    if (!joined)
        return NULL;
    char *out = joined, *w = joined;
    for (char *r = joined; *r;) {
        while (*r == '/')
            r++;
        char *end = r + strcspn (r, "/");
        size_t len = (size_t) (end - r);
        if (len && !(len == 1 && r [0] == '.')) {
            *w++ = '/';
            memmove (w, r, len);
            w += len;
        }
        r = end;
    }
    if (w == joined)
        *w++ = '/';
    *w = 0;
    return out;
}


/*  Write the config to the file at path (created or replaced, mode 0644
    under the caller's umask), PATH values relative to the file's folder
    when they lie under it (so that the folder can move), else absolute:
    loaded again, from any working directory, it names the same paths.
    The folder must exist. Returns 0, BUS_EIO or BUS_ENOMEM. */
int
bus_config_write_file (bus_config_t *self, const char *path)
{
    assert (self && path);
    char *dir = s_folder (path);
    if (!dir)
        return BUS_EIO;
    FILE *out = fopen (path, "w");
    int rc = out ? s_write (self, out, dir) : BUS_EIO;
    if (out && fclose (out) && rc == 0)
        rc = BUS_EIO;
    free (dir);
    return rc;
}


/*  A PATH value as written into a file in dir: relative to dir when under
    it ("." for dir itself), else absolute; into buf. */
static const char *
s_path_for (const char *value, const char *dir, char *buf, size_t size)
{
    char *abs = value [0] ? s_absolute (value) : NULL;
    if (!abs)
        return value;
    size_t dlen = strlen (dir);
    if (strcmp (abs, dir) == 0)
        snprintf (buf, size, ".");
    else
    if (strncmp (abs, dir, dlen) == 0 && (abs [dlen] == '/' || dlen == 1))
        snprintf (buf, size, "%s", abs + (dlen == 1 ? 1 : dlen + 1));
    else
        snprintf (buf, size, "%s", abs);
    free (abs);
    return buf;
}


static int
s_write (bus_config_t *self, FILE *out, const char *dir)
{
    assert (self && out);
    fprintf (out, "# Sanctum configuration. Each value can be overridden by the "
                  "environment\n# variable SANCTUM_<SECTION>_<KEY> (upper case). A relative "
                  "path is relative\n# to the folder of this file.\n");
    for (size_t i = 0; i < S_NKEYS; i++) {
        bool first = true;          /* first key of its section? */
        for (size_t j = 0; j < i && first; j++)
            first = strcmp (s_keys [j].section, s_keys [i].section) != 0;
        if (!first)
            continue;
        fprintf (out, "\n[%s]\n", s_keys [i].section);
        for (size_t j = i; j < S_NKEYS; j++) {
            const s_key_t *k = &s_keys [j];
            if (strcmp (k->section, s_keys [i].section) != 0)
                continue;
            fprintf (out, "# %s", k->help);
            if (k->type == s_type_INT)
                fprintf (out, " (%ld..%ld)", k->min, k->max);
            else
            if (k->type == s_type_BOOL)
                fprintf (out, " (true | false)");
            char buf [4096];
            const char *value = k->type == s_type_PATH && dir
                              ? s_path_for (self->str [j], dir, buf, sizeof buf) : self->str [j];
            fprintf (out, "\n%s = %s\n", k->key, value);
        }
    }
    return fflush (out) == 0 && !ferror (out)? 0: BUS_EIO;
}


/*  <data_dir>/<service>, malloc'd; NULL when service is empty, "." or
    "..", contains '/' or is over 64 bytes, or on allocation failure. */
char *
bus_config_data_dir (bus_config_t *self, const char *service)
{
    assert (self);
    if (!service || !*service || strlen (service) > 64 || strchr (service, '/')
    ||  strcmp (service, ".") == 0 || strcmp (service, "..") == 0)
        return NULL;
    const char *base = bus_config_str (self, "sanctum", "data_dir");
    size_t len = strlen (base);
    while (len > 1 && base [len - 1] == '/')
        len--;
    char *path = NULL;
    if (asprintf (&path, "%.*s/%s", (int) len, base, service) < 0)
        return NULL;
    return path;
}
