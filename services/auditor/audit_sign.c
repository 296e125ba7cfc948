/*  audit_sign.c — the auditor's keys, tree heads, JWS and HMAC tags (audit_sign.h). */
#include "audit_sign.h"
#include "audit_canon.h"
#include "bus_error.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_B64URL sodium_base64_VARIANT_URLSAFE_NO_PADDING

struct audit_keys_t {
    uint8_t *sk;                        /* sodium_malloc'd: Ed25519 secret key (64 bytes) */
    uint8_t *hmac;                      /* sodium_malloc'd: 32 bytes */
    uint8_t pk [AUDIT_PK_LEN];
    char kid [AUDIT_KID_LEN + 1];
    char origin [AUDIT_ORIGIN_MAX + 1];
};

static void
s_err (char *err, size_t err_len, const char *fmt, ...)
{
    if (!err || !err_len)
        return;
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (err, err_len, fmt, ap);
    va_end (ap);
}

void
audit_kid (char kid [AUDIT_KID_LEN + 1], const uint8_t pk [AUDIT_PK_LEN])
{
    char x [AUDIT_KID_LEN + 1], jwk [128];
    uint8_t digest [32];
    sodium_bin2base64 (x, sizeof x, pk, AUDIT_PK_LEN, S_B64URL);
    int n = snprintf (jwk, sizeof jwk, "{\"crv\":\"Ed25519\",\"kty\":\"OKP\",\"x\":\"%s\"}", x);
    crypto_hash_sha256 (digest, (const uint8_t *) jwk, (unsigned long long) n);
    sodium_bin2base64 (kid, AUDIT_KID_LEN + 1, digest, sizeof digest, S_B64URL);
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
            s_err (err, err_len, "cannot write key %s: %s", path, strerror (errno));
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
        s_err (err, err_len, "cannot open key %s: %s", path, strerror (errno));
        return BUS_EIO;
    }
    struct stat st;
    int rc = 0;
    if (fstat (fd, &st) != 0) {
        s_err (err, err_len, "cannot stat key %s: %s", path, strerror (errno));
        rc = BUS_EIO;
    }
    else if (st.st_mode & 077) {
        s_err (err, err_len, "key %s is readable by others (mode %03o): chmod 600 it", path,
               (unsigned) (st.st_mode & 0777));
        rc = BUS_EPERM;
    }
    else if (st.st_size != 32 || read (fd, key, 32) != 32) {
        s_err (err, err_len, "key %s is not 32 bytes", path);
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
        s_err (err, err_len, "cannot make key directory %s: %s", dir, strerror (errno));
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
    char x [AUDIT_KID_LEN + 1];
    sodium_bin2base64 (x, sizeof x, self->pk, AUDIT_PK_LEN, S_B64URL);
    return json_pack ("{s:[{s:s, s:s, s:s, s:s, s:s, s:s}]}", "keys", "kty", "OKP", "crv", "Ed25519",
                      "x", x, "kid", self->kid, "alg", "EdDSA", "use", "sig");
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

/*  base64url (no padding) of data, malloc'd. */
static char *
s_b64url (const void *data, size_t len)
{
    size_t cap = sodium_base64_ENCODED_LEN (len, S_B64URL);
    char *out = malloc (cap);
    if (out)
        sodium_bin2base64 (out, cap, data, len, S_B64URL);
    return out;
}

int
audit_jws_sign (audit_keys_t *self, const json_t *payload, char **jws)
{
    *jws = NULL;
    if (!json_is_object (payload))
        return BUS_EINVAL;
    char header [128];
    snprintf (header, sizeof header, "{\"alg\":\"EdDSA\",\"kid\":\"%s\",\"typ\":\"JWT\"}", self->kid);
    char *body = NULL, *h64 = NULL, *p64 = NULL, *input = NULL;
    size_t body_len = 0;
    int rc = audit_canon (payload, &body, &body_len, NULL, 0);
    if (rc)
        return rc;
    h64 = s_b64url (header, strlen (header));
    p64 = s_b64url (body, body_len);
    size_t in_len = h64 && p64 ? strlen (h64) + 1 + strlen (p64) : 0;
    input = in_len ? malloc (in_len + 1 + sodium_base64_ENCODED_LEN (AUDIT_SIG_LEN, S_B64URL)) : NULL;
    if (!input) {
        rc = BUS_ENOMEM;
        goto done;
    }
    sprintf (input, "%s.%s", h64, p64);
    uint8_t sig [AUDIT_SIG_LEN];
    crypto_sign_detached (sig, NULL, (const uint8_t *) input, in_len, self->sk);
    input [in_len] = '.';
    sodium_bin2base64 (input + in_len + 1, sodium_base64_ENCODED_LEN (AUDIT_SIG_LEN, S_B64URL),
                       sig, sizeof sig, S_B64URL);
    *jws = input;
    input = NULL;
done:
    free (body);
    free (h64);
    free (p64);
    free (input);
    return rc;
}

/*  base64url (no padding) text of n bytes into a malloc'd buffer; NULL
    when it is not base64url. */
static uint8_t *
s_unb64url (const char *text, size_t n, size_t *out_len)
{
    uint8_t *out = malloc (n + 1);
    const char *end = NULL;
    if (out && sodium_base642bin (out, n + 1, text, n, NULL, out_len, &end, S_B64URL) == 0
        && end == text + n)
        return out;
    free (out);
    return NULL;
}

int
audit_jws_verify (const char *jws, const uint8_t pk [AUDIT_PK_LEN], const char *kid, json_t **payload)
{
    if (payload)
        *payload = NULL;
    const char *dot1 = jws ? strchr (jws, '.') : NULL;
    const char *dot2 = dot1 ? strchr (dot1 + 1, '.') : NULL;
    if (!dot2 || strchr (dot2 + 1, '.'))
        return BUS_EINVAL;
    size_t hlen = 0, plen = 0, slen = 0;
    uint8_t *h = s_unb64url (jws, (size_t) (dot1 - jws), &hlen);
    uint8_t *p = s_unb64url (dot1 + 1, (size_t) (dot2 - dot1 - 1), &plen);
    uint8_t *s = s_unb64url (dot2 + 1, strlen (dot2 + 1), &slen);
    json_t *header = h ? json_loadb ((const char *) h, hlen, 0, NULL) : NULL;
    int rc = BUS_EINVAL;
    if (!header || !p || !s)
        goto done;
    const char *alg = json_string_value (json_object_get (header, "alg"));
    const char *hkid = json_string_value (json_object_get (header, "kid"));
    if (!alg || strcmp (alg, "EdDSA") || (kid && (!hkid || strcmp (hkid, kid))) || slen != AUDIT_SIG_LEN) {
        rc = BUS_ECRYPTO;
        goto done;
    }
    if (crypto_sign_verify_detached (s, (const uint8_t *) jws, (unsigned long long) (dot2 - jws), pk) != 0) {
        rc = BUS_ECRYPTO;
        goto done;
    }
    rc = 0;
    if (payload) {
        *payload = json_loadb ((const char *) p, plen, JSON_DECODE_ANY, NULL);
        if (!*payload)
            rc = BUS_EINVAL;            /* signed, but not JSON */
    }
done:
    json_decref (header);
    free (h);
    free (p);
    free (s);
    return rc;
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
    int rc = audit_canon (payload, &body, &len, NULL, 0);
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
            int rc = audit_canon (value, &text, &len, NULL, 0);
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
