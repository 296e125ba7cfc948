/*  vault_crypt.c — the master keyring and sealed records (vault_crypt.h). */
#include "vault_crypt.h"
#include "bus_error.h"
#include "bus_keys.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct vault_keyring_t {
    char *path;
    uint8_t *keys;                /* sodium_malloc'd: count x 32 bytes */
    uint32_t count;
    bool readonly;                /* a systemd credential: never written */
};

/*  Write n keys to path atomically (temporary file, fsync, rename, fsync of
    the folder), mode 0600. */
static int
s_write_keys (const char *path, const uint8_t *keys, size_t n, char *err, size_t err_len)
{
    char tmp [4200];
    snprintf (tmp, sizeof tmp, "%s.tmp", path);
    unlink (tmp);
    int fd = open (tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    size_t len = n * VAULT_KEY_LEN;
    int ok = fd >= 0 && write (fd, keys, len) == (ssize_t) len && fsync (fd) == 0;
    if (fd >= 0)
        close (fd);
    if (!ok || rename (tmp, path) != 0) {
        (void) bus_errf (err, err_len, 0, "cannot write the master key file %s: %s", path, strerror (errno));
        unlink (tmp);
        return BUS_EIO;
    }
    char dir [4200];
    snprintf (dir, sizeof dir, "%s", path);
    char *slash = strrchr (dir, '/');
    if (slash)
        *slash = 0;
    int d = open (slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d >= 0) {
        fsync (d);
        close (d);
    }
    return 0;
}

/*  Load the keyring at path; made when missing and create is true. */
static int
s_load (vault_keyring_t **out, const char *path, bool create, char *err, size_t err_len)
{
    *out = NULL;
    if (sodium_init () < 0)
        return BUS_ECRYPTO;
    vault_keyring_t *self = calloc (1, sizeof *self);
    if (!self || !(self->path = strdup (path))) {
        free (self);
        return BUS_ENOMEM;
    }
    int rc = 0;
    int fd = open (path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ENOENT && create) {
        self->keys = sodium_malloc (VAULT_KEY_LEN);
        if (!self->keys) {
            rc = BUS_ENOMEM;
            goto done;
        }
        randombytes_buf (self->keys, VAULT_KEY_LEN);
        self->count = 1;
        rc = s_write_keys (path, self->keys, 1, err, err_len);
        goto done;
    }
    if (fd < 0) {
        (void) bus_errf (err, err_len, 0, "cannot open the master key file %s: %s", path, strerror (errno));
        rc = BUS_EIO;
        goto done;
    }
    struct stat st;
    if (fstat (fd, &st) != 0) {
        (void) bus_errf (err, err_len, 0, "cannot stat %s: %s", path, strerror (errno));
        rc = BUS_EIO;
    }
    else if (st.st_mode & 077) {
        (void) bus_errf (err, err_len, 0, "master key file %s is readable by others (mode %03o): chmod 600 it",
               path, (unsigned) (st.st_mode & 0777));
        rc = BUS_EPERM;
    }
    else if (st.st_size == 0 || st.st_size % VAULT_KEY_LEN
             || st.st_size / VAULT_KEY_LEN > VAULT_KEYS_MAX) {
        (void) bus_errf (err, err_len, 0, "master key file %s: %lld bytes is not 1..%d keys of 32 bytes",
               path, (long long) st.st_size, VAULT_KEYS_MAX);
        rc = BUS_EINVAL;
    }
    else {
        self->count = (uint32_t) (st.st_size / VAULT_KEY_LEN);
        self->keys = sodium_malloc ((size_t) st.st_size);
        if (!self->keys)
            rc = BUS_ENOMEM;
        else if (read (fd, self->keys, (size_t) st.st_size) != st.st_size) {
            (void) bus_errf (err, err_len, 0, "cannot read %s", path);
            rc = BUS_EIO;
        }
    }
    close (fd);
done:
    if (rc)
        vault_keyring_destroy (&self);
    *out = self;
    return rc;
}

int
vault_keyring_load (vault_keyring_t **out, const char *path, char *err, size_t err_len)
{
    return s_load (out, path, true, err, err_len);
}

int
vault_keyring_load_credential (vault_keyring_t **out, const char *name, char *err, size_t err_len)
{
    *out = NULL;
    char path [4400];
    int rc = bus_credential_path (path, sizeof path, name, "master key credential", err, err_len);
    if (rc)
        return rc;
    rc = s_load (out, path, false, err, err_len);
    if (rc == 0)
        (*out)->readonly = true;
    return rc;
}

bool
vault_keyring_readonly (vault_keyring_t *self)
{
    return self->readonly;
}

void
vault_keyring_destroy (vault_keyring_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    vault_keyring_t *self = *self_p;
    if (self->keys)
        sodium_free (self->keys);       /* wipes */
    free (self->path);
    free (self);
    *self_p = NULL;
}

uint32_t
vault_keyring_current (vault_keyring_t *self)
{
    return self->count;
}

int
vault_keyring_rotate (vault_keyring_t *self, char *err, size_t err_len)
{
    if (self->readonly) {
        (void) bus_errf (err, err_len, 0, "the master keyring is a systemd credential, which this daemon cannot write: "
               "append a key (32 random bytes) to the credential and restart");
        return BUS_EPERM;
    }
    if (self->count >= VAULT_KEYS_MAX) {
        (void) bus_errf (err, err_len, 0, "the keyring holds %d keys already", VAULT_KEYS_MAX);
        return BUS_EFULL;
    }
    size_t len = (size_t) (self->count + 1) * VAULT_KEY_LEN;
    uint8_t *keys = sodium_malloc (len);
    if (!keys)
        return BUS_ENOMEM;
    memcpy (keys, self->keys, len - VAULT_KEY_LEN);
    randombytes_buf (keys + len - VAULT_KEY_LEN, VAULT_KEY_LEN);
    int rc = s_write_keys (self->path, keys, self->count + 1, err, err_len);
    if (rc) {
        sodium_free (keys);
        return rc;
    }
    sodium_free (self->keys);
    self->keys = keys;
    self->count++;
    return 0;
}

int
vault_seal (vault_keyring_t *self, const void *ad, size_t ad_len,
            const void *plain, size_t len, uint8_t **out, size_t *out_len)
{
    *out = NULL;
    uint8_t *rec = malloc (VAULT_SEAL_OVERHEAD + len);
    if (!rec)
        return BUS_ENOMEM;
    uint32_t id = self->count;
    rec [0] = 1;
    rec [1] = (uint8_t) (id >> 24);
    rec [2] = (uint8_t) (id >> 16);
    rec [3] = (uint8_t) (id >> 8);
    rec [4] = (uint8_t) id;
    uint8_t *nonce = rec + 5;
    randombytes_buf (nonce, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
    unsigned long long clen = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt (rec + 29, &clen, plain, len, ad, ad_len, NULL, nonce,
                                                self->keys + (size_t) (id - 1) * VAULT_KEY_LEN);
    *out = rec;
    *out_len = 29 + (size_t) clen;
    return 0;
}

uint32_t
vault_sealed_key_id (const uint8_t *sealed, size_t sealed_len)
{
    if (!sealed || sealed_len < VAULT_SEAL_OVERHEAD || sealed [0] != 1)
        return 0;
    return (uint32_t) sealed [1] << 24 | (uint32_t) sealed [2] << 16 | (uint32_t) sealed [3] << 8 | sealed [4];
}

int
vault_open (vault_keyring_t *self, const void *ad, size_t ad_len,
            const uint8_t *sealed, size_t sealed_len, uint8_t **plain, size_t *len, uint32_t *key_id)
{
    *plain = NULL;
    *len = 0;
    uint32_t id = vault_sealed_key_id (sealed, sealed_len);
    if (id == 0)
        return BUS_EINVAL;
    if (id > self->count)
        return BUS_ENOTFOUND;
    size_t plen = sealed_len - VAULT_SEAL_OVERHEAD;
    uint8_t *out = sodium_malloc (plen + 1);
    if (!out)
        return BUS_ENOMEM;
    unsigned long long got = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt (out, &got, NULL, sealed + 29, sealed_len - 29, ad, ad_len,
                                                    sealed + 5,
                                                    self->keys + (size_t) (id - 1) * VAULT_KEY_LEN) != 0) {
        sodium_free (out);
        return BUS_ECRYPTO;
    }
    out [got] = 0;
    *plain = out;
    *len = (size_t) got;
    if (key_id)
        *key_id = id;
    return 0;
}

void
vault_plain_free (uint8_t **plain_p)
{
    if (plain_p && *plain_p) {
        sodium_free (*plain_p);
        *plain_p = NULL;
    }
}

void
vault_keyring_derive (vault_keyring_t *self, const char *purpose, uint8_t out [VAULT_KEY_LEN])
{
    char ctx [crypto_kdf_CONTEXTBYTES] = { 0 };
    memcpy (ctx, purpose, strnlen (purpose, sizeof ctx));
    crypto_kdf_derive_from_key (out, VAULT_KEY_LEN, 1, ctx, self->keys);
}
