/*  bus_jose.c — base64url, Ed25519 JWKs and compact JWS (bus_jose.h). */
#include "bus_jose.h"
#include "bus_error.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_B64URL sodium_base64_VARIANT_URLSAFE_NO_PADDING
#define S_JWS_MAX (64 * 1024)

char *
bus_b64url_encode (const void *data, size_t len)
{
    size_t cap = sodium_base64_ENCODED_LEN (len, S_B64URL);
    char *out = malloc (cap);
    if (out)
        sodium_bin2base64 (out, cap, data, len, S_B64URL);
    return out;
}

uint8_t *
bus_b64url_decode (const char *text, size_t n, size_t *out_len)
{
    uint8_t *out = malloc (n + 1);
    const char *end = NULL;
    size_t len = 0;
    if (out && sodium_base642bin (out, n + 1, text, n, NULL, &len, &end, S_B64URL) == 0
        && end == text + n) {
        out [len] = 0;
        if (out_len)
            *out_len = len;
        return out;
    }
    free (out);
    return NULL;
}

int
bus_b64url_decode_fixed (const char *text, uint8_t *out, size_t len)
{
    if (!text)
        return BUS_EINVAL;
    size_t n = 0;
    uint8_t *bytes = bus_b64url_decode (text, strlen (text), &n);
    int rc = bytes && n == len ? 0 : BUS_EINVAL;
    if (rc == 0)
        memcpy (out, bytes, len);
    if (bytes)
        sodium_memzero (bytes, n);
    free (bytes);
    return rc;
}

void
bus_jose_thumbprint (char kid [BUS_JOSE_KID_LEN + 1], const uint8_t pk [BUS_JOSE_PK_LEN])
{
    char x [BUS_JOSE_KID_LEN + 1], jwk [128];
    uint8_t digest [crypto_hash_sha256_BYTES];
    sodium_bin2base64 (x, sizeof x, pk, BUS_JOSE_PK_LEN, S_B64URL);
    int n = snprintf (jwk, sizeof jwk, "{\"crv\":\"Ed25519\",\"kty\":\"OKP\",\"x\":\"%s\"}", x);
    crypto_hash_sha256 (digest, (const uint8_t *) jwk, (unsigned long long) n);
    sodium_bin2base64 (kid, BUS_JOSE_KID_LEN + 1, digest, sizeof digest, S_B64URL);
}

json_t *
bus_jose_jwk (const uint8_t pk [BUS_JOSE_PK_LEN])
{
    char x [BUS_JOSE_KID_LEN + 1], kid [BUS_JOSE_KID_LEN + 1];
    sodium_bin2base64 (x, sizeof x, pk, BUS_JOSE_PK_LEN, S_B64URL);
    bus_jose_thumbprint (kid, pk);
    return json_pack ("{s:s, s:s, s:s, s:s, s:s, s:s}", "kty", "OKP", "crv", "Ed25519", "x", x,
                      "kid", kid, "alg", "EdDSA", "use", "sig");
}

int
bus_jose_jwk_public (const json_t *jwk, uint8_t pk [BUS_JOSE_PK_LEN])
{
    const char *kty = json_string_value (json_object_get (jwk, "kty"));
    const char *crv = json_string_value (json_object_get (jwk, "crv"));
    if (!json_is_object (jwk) || !kty || !crv || strcmp (kty, "OKP") || strcmp (crv, "Ed25519")
        || json_object_get (jwk, "d"))
        return BUS_EINVAL;
    return bus_b64url_decode_fixed (json_string_value (json_object_get (jwk, "x")), pk, BUS_JOSE_PK_LEN);
}

int
bus_jws_sign (const json_t *header, const void *payload, size_t len,
              const uint8_t sk [BUS_JOSE_SK_LEN], char **jws)
{
    *jws = NULL;
    if (!json_is_object (header) || (!payload && len))
        return BUS_EINVAL;
    int rc = BUS_ENOMEM;
    char *htext = NULL, *h64 = NULL, *p64 = NULL, *out = NULL;
    json_t *h = json_deep_copy (header);
    if (!h || json_object_set_new (h, "alg", json_string ("EdDSA")))
        goto done;
    htext = json_dumps (h, JSON_COMPACT | JSON_SORT_KEYS);
    h64 = htext ? bus_b64url_encode (htext, strlen (htext)) : NULL;
    p64 = h64 ? bus_b64url_encode (payload ? payload : "", len) : NULL;
    if (!p64)
        goto done;
    size_t in_len = strlen (h64) + 1 + strlen (p64);
    size_t sig_cap = sodium_base64_ENCODED_LEN (BUS_JOSE_SIG_LEN, S_B64URL);
    out = malloc (in_len + 1 + sig_cap);
    if (!out)
        goto done;
    sprintf (out, "%s.%s", h64, p64);
    uint8_t sig [BUS_JOSE_SIG_LEN];
    crypto_sign_detached (sig, NULL, (const uint8_t *) out, in_len, sk);
    out [in_len] = '.';
    sodium_bin2base64 (out + in_len + 1, sig_cap, sig, sizeof sig, S_B64URL);
    *jws = out;
    out = NULL;
    rc = 0;
done:
    json_decref (h);
    free (htext);
    free (h64);
    free (p64);
    free (out);
    return rc;
}

void
bus_jws_clear (bus_jws_t *jws)
{
    if (!jws)
        return;
    json_decref (jws->header);
    free (jws->payload);
    memset (jws, 0, sizeof *jws);
}

int
bus_jws_parse (const char *jws, bus_jws_t *out)
{
    memset (out, 0, sizeof *out);
    if (!jws)
        return BUS_EINVAL;
    if (strnlen (jws, S_JWS_MAX + 1) > S_JWS_MAX)
        return BUS_ETOOBIG;
    const char *dot1 = strchr (jws, '.');
    const char *dot2 = dot1 ? strchr (dot1 + 1, '.') : NULL;
    if (!dot2 || strchr (dot2 + 1, '.'))
        return BUS_EINVAL;
    size_t hlen = 0, slen = 0;
    uint8_t *h = bus_b64url_decode (jws, (size_t) (dot1 - jws), &hlen);
    uint8_t *s = bus_b64url_decode (dot2 + 1, strlen (dot2 + 1), &slen);
    out->payload = bus_b64url_decode (dot1 + 1, (size_t) (dot2 - dot1 - 1), &out->payload_len);
    out->header = h ? json_loadb ((const char *) h, hlen, 0, NULL) : NULL;
    int rc = 0;
    if (!json_is_object (out->header) || !out->payload || !s || slen != BUS_JOSE_SIG_LEN)
        rc = BUS_EINVAL;
    else {
        memcpy (out->signature, s, BUS_JOSE_SIG_LEN);
        out->signed_len = (size_t) (dot2 - jws);
    }
    free (h);
    free (s);
    if (rc)
        bus_jws_clear (out);
    return rc;
}

int
bus_jws_check (const char *jws, const bus_jws_t *parsed, const uint8_t pk [BUS_JOSE_PK_LEN])
{
    const char *alg = json_string_value (json_object_get (parsed->header, "alg"));
    if (!alg || strcmp (alg, "EdDSA"))
        return BUS_ECRYPTO;
    return crypto_sign_verify_detached (parsed->signature, (const uint8_t *) jws,
                                        (unsigned long long) parsed->signed_len, pk) == 0 ? 0 : BUS_ECRYPTO;
}

int
bus_jws_verify (const char *jws, const uint8_t pk [BUS_JOSE_PK_LEN], const char *kid, json_t **payload)
{
    if (payload)
        *payload = NULL;
    bus_jws_t p;
    int rc = bus_jws_parse (jws, &p);
    if (rc)
        return rc;
    const char *hkid = json_string_value (json_object_get (p.header, "kid"));
    if (kid && (!hkid || strcmp (hkid, kid)))
        rc = BUS_ECRYPTO;
    if (rc == 0)
        rc = bus_jws_check (jws, &p, pk);
    if (rc == 0 && payload) {
        *payload = json_loadb ((const char *) p.payload, p.payload_len, JSON_DECODE_ANY, NULL);
        if (!*payload)
            rc = BUS_EINVAL;
    }
    bus_jws_clear (&p);
    return rc;
}
