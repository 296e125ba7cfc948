/*  tele_static.c — the dashboard's files: plain HTML, CSS and ES modules,
    loaded into memory once at start from the installed folder
    (share/sanctum/dashboard beside the binary's bin/, or [telemetry]
    static_dir), each with the gzip the build made beside it (`make`
    precompresses the text files: FILE.gz), its content type by extension
    and an ETag (the first 128 bits of its SHA-256). Nothing touches the
    disk while serving.

    Caching: index.html `no-cache` (always revalidated, so a new install is
    seen at once), the other files `public, max-age=300`; every answer has
    its ETag, and a matching If-None-Match gets 304 with no body.
*/
#include <dirent.h>
#include <sodium.h>
#include <sys/stat.h>

#include "tele_internal.h"

#define S_FILES_MAX   512
#define S_BYTES_MAX   (32u << 20)

typedef struct {
    char *path;                 /* "/index.html" */
    const char *type;
    char etag [40];
    char *body;
    size_t len;
    char *gz;                   /* NULL when none was built */
    size_t gz_len;
} s_file_t;

struct tele_static_t {
    s_file_t files [S_FILES_MAX];
    size_t count;
    size_t bytes;
};

static const struct {
    const char *ext;
    const char *type;
} s_types [] = {
    { ".html", "text/html; charset=utf-8" },
    { ".css", "text/css; charset=utf-8" },
    { ".js", "text/javascript; charset=utf-8" },
    { ".mjs", "text/javascript; charset=utf-8" },
    { ".json", "application/json" },
    { ".svg", "image/svg+xml" },
    { ".png", "image/png" },
    { ".ico", "image/x-icon" },
    { ".woff2", "font/woff2" },
    { ".txt", "text/plain; charset=utf-8" },
    { ".webmanifest", "application/manifest+json" },
};

const char *
tele_static_type (const char *name)
{
    const char *dot = strrchr (name, '.');
    for (size_t i = 0; dot && i < sizeof s_types / sizeof s_types [0]; i++)
        if (strcasecmp (dot, s_types [i].ext) == 0)
            return s_types [i].type;
    return "application/octet-stream";
}

/*  Read a whole file (at most max bytes). Returns 0 or a BUS_E* error. */
static int
s_read (const char *path, size_t max, char **out, size_t *len)
{
    FILE *f = fopen (path, "rb");
    if (!f)
        return BUS_EIO;
    int rc = 0;
    struct stat st;
    if (fstat (fileno (f), &st) || st.st_size < 0 || (size_t) st.st_size > max) {
        rc = BUS_ETOOBIG;
        goto done;
    }
    *out = malloc ((size_t) st.st_size + 1);
    if (!*out) {
        rc = BUS_ENOMEM;
        goto done;
    }
    *len = fread (*out, 1, (size_t) st.st_size, f);
    (*out) [*len] = 0;
    if (*len != (size_t) st.st_size) {
        free (*out);
        *out = NULL;
        rc = BUS_EIO;
    }
done:
    fclose (f);
    return rc;
}

/*  Load the files of dir (its path under the root: prefix) and below. */
static int
s_load_dir (tele_static_t *self, const char *dir, const char *prefix, int depth, char *err, size_t err_len)
{
    if (depth > 4)
        return 0;
    DIR *d = opendir (dir);
    if (!d) {
        snprintf (err, err_len, "cannot open %s: %s", dir, strerror (errno));
        return BUS_EIO;
    }
    int rc = 0;
    struct dirent *de;
    while ((de = readdir (d)) != NULL) {
        if (de->d_name [0] == '.')
            continue;
        size_t nlen = strlen (de->d_name);
        if (nlen > 3 && streq (de->d_name + nlen - 3, ".gz"))
            continue;               /* loaded with the file it compresses */
        char full [4096], web [1024];
        snprintf (full, sizeof full, "%s/%s", dir, de->d_name);
        snprintf (web, sizeof web, "%s/%s", prefix, de->d_name);
        struct stat st;
        if (stat (full, &st))
            continue;
        if (S_ISDIR (st.st_mode)) {
            rc = s_load_dir (self, full, web, depth + 1, err, err_len);
            if (rc)
                break;
            continue;
        }
        if (!S_ISREG (st.st_mode))
            continue;
        if (self->count == S_FILES_MAX) {
            snprintf (err, err_len, "more than %d files under the dashboard folder", S_FILES_MAX);
            rc = BUS_ETOOBIG;
            break;
        }
        s_file_t *f = &self->files [self->count];
        rc = s_read (full, S_BYTES_MAX - self->bytes, &f->body, &f->len);
        if (rc) {
            snprintf (err, err_len, "%s: %s", full, rc == BUS_ETOOBIG ? "the dashboard's files are over 32 MiB"
                                                                        : bus_strerror (rc));
            break;
        }
        f->path = strdup (web);
        f->type = tele_static_type (de->d_name);
        self->bytes += f->len;
        self->count++;
        if (!f->path) {
            rc = BUS_ENOMEM;
            break;
        }
        uint8_t hash [crypto_hash_sha256_BYTES];
        crypto_hash_sha256 (hash, (const uint8_t *) f->body, f->len);
        f->etag [0] = '"';
        sodium_bin2hex (f->etag + 1, 33, hash, 16);
        strcat (f->etag, "\"");
        char gz [4200];
        snprintf (gz, sizeof gz, "%s.gz", full);
        if (s_read (gz, S_BYTES_MAX - self->bytes, &f->gz, &f->gz_len) == 0)
            self->bytes += f->gz_len;
    }
    closedir (d);
    return rc;
}

tele_static_t *
tele_static_load (const char *dir, char *err, size_t err_len)
{
    tele_static_t *self = calloc (1, sizeof *self);
    if (!self) {
        snprintf (err, err_len, "out of memory");
        return NULL;
    }
    if (s_load_dir (self, dir, "", 0, err, err_len))
        tele_static_destroy (&self);
    return self;
}

void
tele_static_destroy (tele_static_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    tele_static_t *self = *self_p;
    for (size_t i = 0; i < self->count; i++) {
        free (self->files [i].path);
        free (self->files [i].body);
        free (self->files [i].gz);
    }
    free (self);
    *self_p = NULL;
}

size_t
tele_static_count (tele_static_t *self)
{
    return self ? self->count : 0;
}

/*  Whether the Accept-Encoding header allows gzip (not "gzip;q=0"). */
static bool
s_accepts_gzip (const char *accept)
{
    if (!accept)
        return false;
    const char *p = strcasestr (accept, "gzip");
    if (!p)
        return false;
    const char *q = p + 4;
    while (*q == ' ')
        q++;
    if (*q == ';') {
        const char *v = strstr (q, "q=");
        if (v && atof (v + 2) == 0)
            return false;
    }
    return true;
}

void
tele_static_serve (tele_static_t *self, bus_http_exchange_t *ex, const char *path)
{
    if (!self) {
        tele_error (ex, 503, "unavailable", "the dashboard's files are not installed (make install, or [telemetry] static_dir)");
        return;
    }
    if (streq (path, "/"))
        path = "/index.html";
    s_file_t *f = NULL;
    for (size_t i = 0; i < self->count && !f; i++)
        if (streq (self->files [i].path, path))
            f = &self->files [i];
    if (!f) {
        tele_error (ex, 404, "not_found", "no such file");
        return;
    }
    bool html = strncmp (f->type, "text/html", 9) == 0;
    bus_http_header_add (ex, "ETag", f->etag);
    bus_http_header_add (ex, "Cache-Control", html ? "no-cache" : "public, max-age=300");
    bus_http_header_add (ex, "Vary", "Accept-Encoding");
    const char *inm = bus_http_header (ex, "If-None-Match");
    if (inm && (strstr (inm, f->etag) || streq (inm, "*"))) {
        bus_http_respond (ex, 304, NULL, NULL, 0);
        return;
    }
    if (f->gz && s_accepts_gzip (bus_http_header (ex, "Accept-Encoding"))) {
        bus_http_header_add (ex, "Content-Encoding", "gzip");
        bus_http_respond (ex, 200, f->type, f->gz, f->gz_len);
        return;
    }
    bus_http_respond (ex, 200, f->type, f->body, f->len);
}
