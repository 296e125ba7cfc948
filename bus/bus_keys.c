/*  bus_keys.c — CURVE certificates, allow-list and the principal map. */
#include "bus_keys.h"
#include "bus_error.h"
#include "bus_log.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct bus_allow_t {
    char *dir;
    zhashx_t *principals;      /* Z85 public key -> principal (strdup'd) */
    bool revoked;              /* a key left, or changed principal, since asked */
    int64_t last_scan_ms;
    struct timespec dir_mtime;    /* of the directory at the last scan */
};

static char *
s_path (const char *dir, const char *name, const char *suffix)
{
    char *path = NULL;
    if (asprintf (&path, "%s/%s%s", dir, name, suffix) < 0)
        return NULL;
    return path;
}

/*  Create dir and parents with mode. */
static int
s_mkdirs (const char *dir, mode_t mode)
{
    char *copy = strdup (dir);
    if (!copy)
        return BUS_ENOMEM;
    for (char *p = copy + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir (copy, mode);
            *p = '/';
        }
    int rc = mkdir (copy, mode) == 0 || errno == EEXIST ? 0 : BUS_EIO;
    free (copy);
    return rc;
}

int
bus_credential_path (char *out, size_t out_len, const char *name, const char *what, char *err, size_t err_len)
{
    const char *dir = getenv ("CREDENTIALS_DIRECTORY");
    if (!name || !*name || strchr (name, '/') || !strcmp (name, ".") || !strcmp (name, "..") || strlen (name) > 255)
        return bus_errf (err, err_len, BUS_EINVAL, "%s name '%.64s' is not a file name", what, name ? name : "");
    if (!dir || !*dir)
        return bus_errf (err, err_len, BUS_EINVAL, "%s %s: $CREDENTIALS_DIRECTORY is not set (not started by "
                         "systemd with LoadCredential= or LoadCredentialEncrypted=)", what, name);
    int n = snprintf (out, out_len, "%s/%s", dir, name);
    if (n < 0 || (size_t) n >= out_len)
        return bus_errf (err, err_len, BUS_EINVAL, "%s %s: the path under $CREDENTIALS_DIRECTORY is too long",
                         what, name);
    return 0;
}

bool
bus_key_name_valid (const char *name)
{
    size_t len = name ? strlen (name) : 0;
    if (len == 0 || len > 64 || name [0] == '.')
        return false;
    for (const char *c = name; *c; c++)
        if (!isalnum ((unsigned char) *c) && !strchr ("._-", *c))
            return false;
    return true;
}

zcert_t *
bus_keys_load (const char *keys_dir, const char *name, bool create)
{
    if (!bus_key_name_valid (name)) {
        bus_error ("'%s' is not a key name", name ? name : "");
        return NULL;
    }
    char *path = s_path (keys_dir, name, ".key");
    char *secret = s_path (keys_dir, name, ".key_secret");
    zcert_t *cert = NULL;
    if (!path || !secret)
        goto done;
    if (access (secret, R_OK) == 0)
        cert = zcert_load (path);           /* loads .key_secret when present */
    if (!cert && create && access (secret, F_OK) != 0) {
        if (s_mkdirs (keys_dir, 0700))
            goto done;
        cert = zcert_new ();
        if (!cert)
            goto done;
        zcert_set_meta (cert, "name", "%s", name);
        /* the public cert readable by all (a container's user must read
           every daemon's), the secret by its owner only */
        mode_t old = umask (022);
        int rc = zcert_save_public (cert, path);
        umask (077);
        if (rc == 0)
            rc = zcert_save_secret (cert, secret);
        umask (old);
        if (rc) {
            bus_error ("cannot save certificate %s", path);
            zcert_destroy (&cert);
        }
        else
            bus_info ("generated CURVE keypair %s", path);
    }
    if (!cert)
        bus_error ("no certificate %s (secret %s)", path, secret);
done:
    free (path);
    free (secret);
    return cert;
}

int
bus_keys_public (const char *keys_dir, const char *name, char out [BUS_KEY_Z85_LEN + 1])
{
    char *path = s_path (keys_dir, name, ".key");
    zcert_t *cert = path ? zcert_load (path) : NULL;
    free (path);
    if (!cert)
        return BUS_ENOTFOUND;
    memcpy (out, zcert_public_txt (cert), BUS_KEY_Z85_LEN + 1);
    zcert_destroy (&cert);
    return 0;
}

bool
bus_principal_valid (const char *p)
{
    if (!p)
        return false;
    size_t len = strlen (p);
    const char *colon = strchr (p, ':');
    if (len > 100 || !colon || colon [1] == 0)
        return false;
    size_t cls = (size_t) (colon - p);
    if (!((cls == 3 && (!strncmp (p, "svc", 3) || !strncmp (p, "ops", 3) || !strncmp (p, "ext", 3)))
          || (cls == 4 && !strncmp (p, "user", 4))))
        return false;
    for (const char *c = colon + 1; *c; c++)
        if (!isalnum ((unsigned char) *c) && !strchr ("._@-", *c))
            return false;
    return true;
}

/*  Z85 text of a 32-byte key: 40 chars of the Z85 alphabet. */
static bool
s_z85_valid (const char *z)
{
    static const char alphabet [] =
        "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
    if (!z || strlen (z) != BUS_KEY_Z85_LEN)
        return false;
    uint8_t raw [32];
    for (const char *c = z; *c; c++)
        if (!strchr (alphabet, *c))
            return false;
    return zmq_z85_decode (raw, z) != NULL;
}

/*  Scan allow_dir into a fresh key -> principal map. Files with a bad or
    duplicate key or without a valid principal are skipped with a warning. */
static zhashx_t *
s_scan (const char *dir)
{
    zhashx_t *map = zhashx_new ();
    if (!map)
        return NULL;
    zhashx_set_destructor (map, (zhashx_destructor_fn *) zstr_free);
    DIR *d = opendir (dir);
    if (!d)
        return map;
    struct dirent *e;
    while ((e = readdir (d))) {
        size_t n = strlen (e->d_name);
        if (e->d_name [0] == '.' || n < 5 || strcmp (e->d_name + n - 4, ".key"))
            continue;
        char *path = s_path (dir, e->d_name, "");
        zcert_t *cert = path ? zcert_load (path) : NULL;
        const char *principal = cert ? zcert_meta (cert, "principal") : NULL;
        if (cert && bus_principal_valid (principal) && !zhashx_lookup (map, zcert_public_txt (cert)))
            zhashx_insert (map, zcert_public_txt (cert), strdup (principal));
        else
            bus_warn ("allow-list file %s skipped: no valid principal or duplicate key", path);
        zcert_destroy (&cert);
        free (path);
    }
    closedir (d);
    return map;
}

int
bus_allow_add (const char *allow_dir, const char *name, const char *public_z85,
               const char *principal)
{
    if (!s_z85_valid (public_z85) || !bus_principal_valid (principal) || !bus_key_name_valid (name))
        return BUS_EINVAL;
    /* public certs only: readable, so a container's user can read the
       directory bind-mounted from the host */
    if (s_mkdirs (allow_dir, 0755))
        return BUS_EIO;
    chmod (allow_dir, 0755);
    int rc = 0;
    char *final = s_path (allow_dir, name, ".key");
    char *tmp = NULL;
    zhashx_t *existing = s_scan (allow_dir);
    if (!final || !existing || asprintf (&tmp, "%s/.%s.key.tmp", allow_dir, name) < 0) {
        rc = BUS_ENOMEM;
        goto done;
    }
    /* the same key under another file name would make zauth abort */
    if (zhashx_lookup (existing, public_z85)) {
        zcert_t *old = zcert_load (final);
        bool same_file = old && streq (zcert_public_txt (old), public_z85);
        zcert_destroy (&old);
        if (!same_file) {
            rc = BUS_EEXIST;
            goto done;
        }
    }
    uint8_t raw [32];
    zmq_z85_decode (raw, public_z85);
    zcert_t *cert = zcert_new_from (raw, raw);  /* secret unused: only the public file is saved */
    zcert_set_meta (cert, "principal", "%s", principal);
    zcert_set_meta (cert, "name", "%s", name);
    rc = zcert_save_public (cert, tmp) == 0 && chmod (tmp, 0644) == 0
         && rename (tmp, final) == 0 ? 0 : BUS_EIO;
    zcert_destroy (&cert);
    if (rc)
        unlink (tmp);
done:
    zhashx_destroy (&existing);
    free (final);
    free (tmp);
    return rc;
}

bus_allow_t *
bus_allow_new (const char *allow_dir)
{
    bus_allow_t *self = calloc (1, sizeof *self);
    if (!self || !(self->dir = strdup (allow_dir))) {
        free (self);
        return NULL;
    }
    bus_allow_refresh (self);
    return self;
}

void
bus_allow_destroy (bus_allow_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    bus_allow_t *self = *self_p;
    zhashx_destroy (&self->principals);
    free (self->dir);
    free (self);
    *self_p = NULL;
}

/*  The directory's modification time (zero when it cannot be read). */
static struct timespec
s_dir_mtime (const char *dir)
{
    struct stat st;
    struct timespec zero = { 0, 0 };
    return stat (dir, &st) == 0 ? st.st_mtim : zero;
}

int
bus_allow_refresh (bus_allow_t *self)
{
    self->dir_mtime = s_dir_mtime (self->dir);
    zhashx_t *fresh = s_scan (self->dir);
    if (fresh && self->principals) {
        const char *principal;
        for (principal = zhashx_first (self->principals); principal;
             principal = zhashx_next (self->principals)) {
            const char *now = zhashx_lookup (fresh, zhashx_cursor (self->principals));
            if (!now || strcmp (now, principal))
                self->revoked = true;
        }
    }
    if (fresh) {
        zhashx_destroy (&self->principals);
        self->principals = fresh;
    }
    self->last_scan_ms = zclock_mono ();
    return self->principals ? (int) zhashx_size (self->principals) : 0;
}

bool
bus_allow_revoked (bus_allow_t *self)
{
    bool revoked = self->revoked;
    self->revoked = false;
    return revoked;
}

const char *
bus_allow_principal (bus_allow_t *self, const char *user_id)
{
    if (!user_id || !*user_id)
        return NULL;
    const char *p = self->principals ? zhashx_lookup (self->principals, user_id) : NULL;
    struct timespec mtime = p ? self->dir_mtime : s_dir_mtime (self->dir);
    bool changed = mtime.tv_sec != self->dir_mtime.tv_sec || mtime.tv_nsec != self->dir_mtime.tv_nsec;
    if (!p && (changed || zclock_mono () - self->last_scan_ms >= 1000)) {
        bus_allow_refresh (self);
        p = zhashx_lookup (self->principals, user_id);
    }
    return p;
}

/* --- refused handshakes, from zauth's own lines ---------------------------- */

#define S_REFUSED_LINES     1       /* lines per refused key ... */
#define S_REFUSED_WINDOW_MS 10000   /* ... per window */
#define S_REFUSED_KEYS      1024    /* keys tracked at once */

static bus_log_limit_t *s_refused_limit;
static char s_zap_address [64];     /* of the ZAP request zauth is deciding */

/*  A line of CZMQ's log (see bus_log_capture_zsys): zauth's (VERBOSE) are
    claimed. A refused CURVE key becomes one rate-limited warning naming
    the key and the address of the ZAP request just before it (zauth
    handles one request at a time, on its own thread, which is the thread
    that runs this); every other zauth line is dropped, allowed handshakes
    included, and so is any PLAIN line (it would carry a password). */
static bool
s_zauth_line (const char *text)
{
    if (strncmp (text, "zauth: ", 7) != 0)
        return false;
    const char *addr = strstr (text, "ZAP request mechanism=");
    if (addr && (addr = strstr (addr, " ipaddress="))) {
        addr += strlen (" ipaddress=");
        size_t len = strcspn (addr, " ");
        if (len >= sizeof s_zap_address)
            len = sizeof s_zap_address - 1;
        memcpy (s_zap_address, addr, len);
        s_zap_address [len] = 0;
        return true;
    }
    const char *key = strstr (text, "- denied (CURVE) client_key=");
    if (key) {
        key += strlen ("- denied (CURVE) client_key=");
        char z85 [BUS_KEY_Z85_LEN + 1];
        snprintf (z85, sizeof z85, "%s", key);
        const char *from = s_zap_address [0] ? s_zap_address : "(unknown)";
        bus_log_limited (s_refused_limit, z85, "handshake_refused", BUS_LOG_WARN,
                         json_pack ("{s:s, s:s, s:s}", "peer_key", z85, "peer_address", from,
                                    "reason", "handshake_refused"),
                         "CURVE handshake refused: client key %s from %s is not in the allow-list",
                         z85, from);
        s_zap_address [0] = 0;
    }
    return true;
}

zactor_t *
bus_auth_start (const char *allow_dir, bool verbose)
{
    s_mkdirs (allow_dir, 0755);
    /* zauth names refused keys only in VERBOSE mode, through CZMQ's log:
       its lines are taken here instead of going to stdout */
    if (!s_refused_limit)
        s_refused_limit = bus_log_limit_new (S_REFUSED_LINES, S_REFUSED_WINDOW_MS, S_REFUSED_KEYS);
    bus_log_capture_zsys (verbose ? NULL : s_zauth_line);
    zactor_t *auth = zactor_new (zauth, NULL);
    if (!auth)
        return NULL;
    zstr_sendx (auth, "VERBOSE", NULL);
    zsock_wait (auth);
    zstr_sendx (auth, "CURVE", allow_dir, NULL);
    zsock_wait (auth);
    return auth;
}

void
bus_auth_flush (void)
{
    if (s_refused_limit)
        bus_log_limit_flush (s_refused_limit);
}

void
bus_keys_apply_server (zsock_t *sock, zcert_t *cert)
{
    zsock_set_zap_domain (sock, "sanctum");
    zcert_apply (cert, sock);
    zsock_set_curve_server (sock, 1);
}

void
bus_keys_apply_client (zsock_t *sock, zcert_t *cert, const char *server_public_z85)
{
    zcert_apply (cert, sock);
    zsock_set_curve_serverkey (sock, server_public_z85);
}
