/*  audit_sign.c — the auditor's keys, tree heads, JWS and HMAC tags (audit_sign.h). */
#include "audit_sign.h"
#include "proto_canon.h"
#include "bus_error.h"
#include "bus_jose.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct audit_keys_t {
    uint8_t *sk;                        /* sodium_malloc'd: Ed25519 secret key (64 bytes) */
    uint8_t *hmac;                      /* sodium_malloc'd: 32 bytes */
    uint8_t pk [AUDIT_PK_LEN];
    char kid [AUDIT_KID_LEN + 1];
    char origin [AUDIT_ORIGIN_MAX + 1];
};

void
audit_kid (char kid [AUDIT_KID_LEN + 1], const uint8_t pk [AUDIT_PK_LEN])
{
    bus_jose_thumbprint (kid, pk);
}

int
audit_keys_from_seed (audit_keys_t **out, const uint8_t seed [32], const uint8_t hmac_key [32])
{
    *out = NULL;
    if (sodium_init () < 0)
        return BUS_ECRYPTO;
    audit_keys_t *self = calloc (1, sizeof *self);
    if (!self)
        return BUS_ENOMEM;
    self->sk = sodium_malloc (crypto_sign_SECRETKEYBYTES);
    self->hmac = sodium_malloc (32);
    if (!self->sk || !self->hmac) {
        audit_keys_destroy (&self);
        return BUS_ENOMEM;
    }
    crypto_sign_seed_keypair (self->pk, self->sk, seed);
    memcpy (self->hmac, hmac_key, 32);
    audit_kid (self->kid, self->pk);
    snprintf (self->origin, sizeof self->origin, "sanctum-auditor/%s", self->kid);
    *out = self;
    return 0;
}

void
audit_keys_destroy (audit_keys_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    audit_keys_t *self = *self_p;
    sodium_free (self->sk);             /* wipes */
    sodium_free (self->hmac);
    free (self);
    *self_p = NULL;
}

/*  Read the 32-byte secret in path into key, making it first when absent.
    A file others may read, or of another size, is refused. */
static int
s_secret_file (const char *dir, const char *name, uint8_t key [32], char *err, size_t err_len)
{
    char path [4096], tmp [4096];
    snprintf (path, sizeof path, "%s/%s", dir, name);
    int fd = open (path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ENOENT) {
        randombytes_buf (key, 32);
        snprintf (tmp, sizeof tmp, "%s/.%s.tmp", dir, name);
        unlink (tmp);
        int w = open (tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        int ok = w >= 0 && write (w, key, 32) == 32 && fsync (w) == 0;
        if (w >= 0)
            close (w);
        if (!ok || rename (tmp, path) != 0) {
            unlink (tmp);
            sodium_memzero (key, 32);
            (void) bus_errf (err, err_len, 0, "cannot write key %s: %s", path, strerror (errno));
            return BUS_EIO;
        }
        int d = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (d >= 0) {
            fsync (d);
            close (d);
        }
        return 0;
    }
    if (fd < 0) {
        (void) bus_errf (err, err_len, 0, "cannot open key %s: %s", path, strerror (errno));
        return BUS_EIO;
    }
    struct stat st;
    int rc = 0;
    if (fstat (fd, &st) != 0) {
        (void) bus_errf (err, err_len, 0, "cannot stat key %s: %s", path, strerror (errno));
        rc = BUS_EIO;
    }
    else if (st.st_mode & 077) {
        (void) bus_errf (err, err_len, 0, "key %s is readable by others (mode %03o): chmod 600 it", path,
               (unsigned) (st.st_mode & 0777));
        rc = BUS_EPERM;
    }
    else if (st.st_size != 32 || read (fd, key, 32) != 32) {
        (void) bus_errf (err, err_len, 0, "key %s is not 32 bytes", path);
        rc = BUS_EINVAL;
    }
    close (fd);
    if (rc)
        sodium_memzero (key, 32);
    return rc;
}

int
audit_keys_load (audit_keys_t **out, const char *dir, char *err, size_t err_len)
{
    *out = NULL;
    if (sodium_init () < 0)
        return BUS_ECRYPTO;
    if (mkdir (dir, 0700) != 0 && errno != EEXIST) {
        (void) bus_errf (err, err_len, 0, "cannot make key directory %s: %s", dir, strerror (errno));
        return BUS_EIO;
    }
    uint8_t *secrets = sodium_malloc (64);
    if (!secrets)
        return BUS_ENOMEM;
    int rc = s_secret_file (dir, "ed25519.seed", secrets, err, err_len);
    if (rc == 0)
        rc = s_secret_file (dir, "hmac.key", secrets + 32, err, err_len);
    if (rc == 0)
        rc = audit_keys_from_seed (out, secrets, secrets + 32);
    sodium_free (secrets);
    return rc;
}

const uint8_t *
audit_keys_public (audit_keys_t *self)
{
    return self->pk;
}

const char *
audit_keys_kid (audit_keys_t *self)
{
    return self->kid;
}

const char *
audit_keys_origin (audit_keys_t *self)
{
    return self->origin;
}

json_t *
audit_keys_jwks (audit_keys_t *self)
{
    json_t *jwk = bus_jose_jwk (self->pk);
    return jwk ? json_pack ("{s:[o]}", "keys", jwk) : NULL;
}

size_t
audit_head_text (const audit_head_t *head, char *out, size_t cap)
{
    char root [sodium_base64_ENCODED_LEN (AUDIT_HASH_LEN, sodium_base64_VARIANT_ORIGINAL)];
    sodium_bin2base64 (root, sizeof root, head->root, AUDIT_HASH_LEN, sodium_base64_VARIANT_ORIGINAL);
    int n = snprintf (out, cap, "%s\n%llu\n%s\ntime %lld\n", head->origin,
                      (unsigned long long) head->size, root, (long long) head->time);
    return n < 0 || (size_t) n >= cap ? 0 : (size_t) n;
}

int
audit_head_sign (audit_keys_t *self, audit_head_t *head)
{
    char text [AUDIT_HEAD_TEXT_MAX];
    snprintf (head->origin, sizeof head->origin, "%s", self->origin);
    size_t n = audit_head_text (head, text, sizeof text);
    if (!n)
        return BUS_EINVAL;
    crypto_sign_detached (head->signature, NULL, (const uint8_t *) text, n, self->sk);
    return 0;
}

int
audit_head_verify (const audit_head_t *head, const uint8_t pk [AUDIT_PK_LEN])
{
    char text [AUDIT_HEAD_TEXT_MAX];
    size_t n = audit_head_text (head, text, sizeof text);
    if (!n)
        return BUS_EINVAL;
    return crypto_sign_verify_detached (head->signature, (const uint8_t *) text, n, pk) == 0 ? 0 : BUS_ECRYPTO;
}

/*  The JWS machinery is bus_jose's (shared with the vault-broker); the
    payload here is the canonical JSON of the caller's object. */
int
audit_jws_sign (audit_keys_t *self, const json_t *payload, char **jws)
{
    *jws = NULL;
    if (!json_is_object (payload))
        return BUS_EINVAL;
    char *body = NULL;
    size_t body_len = 0;
    int rc = proto_canon (payload, &body, &body_len, NULL, 0);
    if (rc)
        return rc;
    json_t *header = json_pack ("{s:s, s:s, s:s}", "alg", "EdDSA", "kid", self->kid, "typ", "JWT");
    rc = header ? bus_jws_sign (header, body, body_len, self->sk, jws) : BUS_ENOMEM;
    json_decref (header);
    free (body);
    return rc;
}

int
audit_jws_sign_tagged (audit_keys_t *self, const json_t *payload, char **jws,
                       char hmac [2 * AUDIT_HASH_LEN + 1])
{
    *jws = NULL;
    if (!json_is_object (payload))
        return BUS_EINVAL;
    char *body = NULL;
    size_t body_len = 0;
    int rc = proto_canon (payload, &body, &body_len, NULL, 0);
    if (rc)
        return rc;
    audit_hmac_hex (self, hmac, body, body_len);
    json_t *header = json_pack ("{s:s, s:s, s:s, s:s}", "alg", "EdDSA", "kid", self->kid, "typ", "JWT",
                                "hmac", hmac);
    rc = header ? bus_jws_sign (header, body, body_len, self->sk, jws) : BUS_ENOMEM;
    json_decref (header);
    free (body);
    return rc;
}

int
audit_jws_verify (const char *jws, const uint8_t pk [AUDIT_PK_LEN], const char *kid, json_t **payload)
{
    return bus_jws_verify (jws, pk, kid, payload);
}

void
audit_hmac_hex (audit_keys_t *self, char out [2 * AUDIT_HASH_LEN + 1], const void *data, size_t len)
{
    uint8_t tag [crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init (&st, self->hmac, 32);
    crypto_auth_hmacsha256_update (&st, data, len);
    crypto_auth_hmacsha256_final (&st, tag);
    sodium_bin2hex (out, 2 * AUDIT_HASH_LEN + 1, tag, sizeof tag);
}

int
audit_hmac_payload (audit_keys_t *self, const json_t *payload, char out [2 * AUDIT_HASH_LEN + 1])
{
    char *body = NULL;
    size_t len = 0;
    int rc = proto_canon (payload, &body, &len, NULL, 0);
    if (rc == 0)
        audit_hmac_hex (self, out, body, len);
    free (body);
    return rc;
}

void
audit_hmac_redact (audit_keys_t *self, char out [12 + 2 * AUDIT_HASH_LEN + 1], const char *value)
{
    memcpy (out, "hmac-sha256:", 12);
    audit_hmac_hex (self, out + 12, value, strlen (value));
}

int
audit_redact_fields (audit_keys_t *self, const char *type, json_t *body, audit_sensitive_fn *is_sensitive)
{
    if (!json_is_object (body) || !is_sensitive)
        return 0;
    int n = 0;
    const char *field;
    json_t *value;
    json_object_foreach (body, field, value) {
        if (!is_sensitive (type, field))
            continue;
        char out [12 + 2 * AUDIT_HASH_LEN + 1];
        memcpy (out, "hmac-sha256:", 12);
        if (json_is_string (value))
            audit_hmac_hex (self, out + 12, json_string_value (value), json_string_length (value));
        else {
            char *text = NULL;
            size_t len = 0;
            int rc = proto_canon (value, &text, &len, NULL, 0);
            if (rc)
                return rc;
            audit_hmac_hex (self, out + 12, text, len);
            free (text);
        }
        json_t *tag = json_string (out);
        if (!tag || json_object_set_new (body, field, tag))
            return BUS_ENOMEM;
        n++;
    }
    return n;
}
