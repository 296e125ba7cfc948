/*  bus_jose.h — the JOSE pieces the auditor and the vault-broker share:
    base64url, Ed25519 JWKs and their RFC 7638 thumbprints, and compact
    JWS (RFC 7515) signed with EdDSA/Ed25519 (RFC 8037) by libsodium.

    Thumbprint of an Ed25519 public key (RFC 7638, 8037 §2):
        base64url (SHA-256 ('{"crv":"Ed25519","kty":"OKP","x":"<x>"}'))
    which is 43 characters. A compact JWS is
        base64url (header) '.' base64url (payload) '.' base64url (signature)
    where the signature is Ed25519 over the first two parts and the dot.

    Parsing is hostile-input safe: a malformed compact JWS (not three
    parts, not base64url, a header that is not a JSON object) is
    BUS_EINVAL; a signature that does not verify, or a header whose alg is
    not EdDSA, is BUS_ECRYPTO. Nothing here keeps state; every function
    is thread-safe. Ownership: strings returned are malloc'd (the caller
    frees), JSON values returned are new references.
*/
#ifndef BUS_JOSE_H
#define BUS_JOSE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define BUS_JOSE_PK_LEN   32          /* Ed25519 public key */
#define BUS_JOSE_SK_LEN   64          /* libsodium's Ed25519 secret key (seed ‖ pk) */
#define BUS_JOSE_SIG_LEN  64
#define BUS_JOSE_KID_LEN  43          /* base64url of 32 bytes, no padding */

/*  base64url without padding of len bytes: malloc'd text, or NULL when
    out of memory. */
char *bus_b64url_encode (const void *data, size_t len);

/*  Decode n characters of base64url (no padding, nothing else allowed):
    malloc'd bytes (one spare NUL after them) and their count, or NULL
    when the text is not base64url (or out of memory). */
uint8_t *bus_b64url_decode (const char *text, size_t n, size_t *out_len);

/*  Decode base64url text that must give exactly len bytes into out: 0 or
    BUS_EINVAL. */
int bus_b64url_decode_fixed (const char *text, uint8_t *out, size_t len);

/*  The RFC 7638 thumbprint of an Ed25519 public key. */
void bus_jose_thumbprint (char kid [BUS_JOSE_KID_LEN + 1], const uint8_t pk [BUS_JOSE_PK_LEN]);

/*  The public JWK {"kty":"OKP","crv":"Ed25519","x","kid","alg":"EdDSA",
    "use":"sig"}, kid its thumbprint; NULL when out of memory. */
json_t *bus_jose_jwk (const uint8_t pk [BUS_JOSE_PK_LEN]);

/*  The Ed25519 public key of a JWK object (kty OKP, crv Ed25519, x of 32
    bytes): 0 or BUS_EINVAL. A JWK carrying a private part ("d") is
    refused too: a public key is all that may travel. */
int bus_jose_jwk_public (const json_t *jwk, uint8_t pk [BUS_JOSE_PK_LEN]);

/*  Sign a compact JWS: header (a JSON object; "alg":"EdDSA" is set in a
    copy, the caller's is left alone) serialised compactly with its keys
    sorted, payload as given (len bytes), with sk (libsodium's 64-byte
    Ed25519 secret key). *jws malloc'd. Returns 0, BUS_EINVAL, BUS_ENOMEM. */
int bus_jws_sign (const json_t *header, const void *payload, size_t len,
                  const uint8_t sk [BUS_JOSE_SK_LEN], char **jws)
    __attribute__((warn_unused_result));

/*  A compact JWS taken apart, not yet verified. */
typedef struct {
    json_t *header;               /* the protected header (an object) */
    uint8_t *payload;             /* decoded, NUL-terminated */
    size_t payload_len;
    uint8_t signature [BUS_JOSE_SIG_LEN];
    size_t signed_len;            /* bytes of the text the signature covers */
} bus_jws_t;

/*  Take jws apart into *out (free with bus_jws_clear). Returns 0 or
    BUS_EINVAL (out is then clear). jws longer than 64 KiB is BUS_ETOOBIG. */
int bus_jws_parse (const char *jws, bus_jws_t *out) __attribute__((warn_unused_result));

/*  Check a parsed JWS (from the same text jws) against pk: the header's
    alg must be EdDSA. 0 or BUS_ECRYPTO. */
int bus_jws_check (const char *jws, const bus_jws_t *parsed, const uint8_t pk [BUS_JOSE_PK_LEN]);

/*  Free what bus_jws_parse filled in; accepts a cleared one. */
void bus_jws_clear (bus_jws_t *jws);

/*  Parse and check in one: when kid is not NULL the header's kid must
    equal it. On success *payload (may be NULL: not read) gets the payload
    as JSON (any value); a signed payload that is not JSON is BUS_EINVAL. */
int bus_jws_verify (const char *jws, const uint8_t pk [BUS_JOSE_PK_LEN], const char *kid,
                    json_t **payload) __attribute__((warn_unused_result));

#endif
