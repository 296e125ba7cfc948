/*  audit_sign.h — the auditor's keys and what it signs with them: tree
    heads, compact JWS (for receipts), HMAC-SHA256 tags.

    Keys live in a directory of the auditor's own (<data_dir>/auditor/keys,
    mode 0700): `ed25519.seed` (the 32-byte Ed25519 seed) and `hmac.key`
    (32 random bytes), each mode 0600, made on first start (written under a
    dot-name, fsync'd, renamed into place). A key file of the wrong size, or
    readable by group or others, is refused. Secrets are held in
    sodium_malloc'd memory and never logged.

    The key id (kid) is the RFC 7638 JWK thumbprint of the public key:
    base64url (SHA-256 ('{"crv":"Ed25519","kty":"OKP","x":"<x>"}')).

    Signed tree head: Ed25519 over the text (a C2SP checkpoint body with a
    time line)
        <origin>\n<size>\n<base64 of root>\ntime <µs since the epoch>\n
    where origin is "sanctum-auditor/<kid>".

    Compact JWS (RFC 7515, alg EdDSA per RFC 8037): the protected header is
    {"alg":"EdDSA","kid":"<kid>","typ":"JWT"} and the payload the canonical
    JSON (proto_canon.h) of the caller's object.

    Thread safety: an audit_keys_t is read-only after load; signing from
    several threads at once is fine. Errors: BUS_EIO (files), BUS_EPERM (a
    key file others can read), BUS_EINVAL (a key file of the wrong size,
    malformed input), BUS_ECRYPTO (a signature or tag that does not verify),
    BUS_ENOMEM.
*/
#ifndef AUDIT_SIGN_H
#define AUDIT_SIGN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audit_merkle.h"

#define AUDIT_SIG_LEN      64
#define AUDIT_PK_LEN       32
#define AUDIT_KID_LEN      43        /* base64url of 32 bytes, no padding */
#define AUDIT_ORIGIN_MAX   64
#define AUDIT_HEAD_TEXT_MAX 256

typedef struct audit_keys_t audit_keys_t;

/*  Load the keys from dir, making the directory (0700) and the missing
    keys first. err (may be NULL) says what failed. */
int audit_keys_load (audit_keys_t **out, const char *dir, char *err, size_t err_len)
    __attribute__((warn_unused_result));

/*  Keys from a given seed and HMAC key (tests, tools). */
int audit_keys_from_seed (audit_keys_t **out, const uint8_t seed [32], const uint8_t hmac_key [32])
    __attribute__((warn_unused_result));

void audit_keys_destroy (audit_keys_t **self_p);

/*  The public key, the kid and the origin of the log's heads (owned). */
const uint8_t *audit_keys_public (audit_keys_t *self);
const char *audit_keys_kid (audit_keys_t *self);
const char *audit_keys_origin (audit_keys_t *self);

/*  The public key as a JWKS: {"keys":[{"kty":"OKP","crv":"Ed25519","x",
    "kid","alg":"EdDSA","use":"sig"}]}. NULL on allocation failure. */
json_t *audit_keys_jwks (audit_keys_t *self);

/*  The RFC 7638 thumbprint of an Ed25519 public key into kid. */
void audit_kid (char kid [AUDIT_KID_LEN + 1], const uint8_t pk [AUDIT_PK_LEN]);

/*  A tree head: signed by audit_head_sign, checked by audit_head_verify. */
typedef struct {
    char origin [AUDIT_ORIGIN_MAX + 1];
    uint64_t size;
    audit_hash_t root;
    int64_t time;                       /* µs since the epoch */
    uint8_t signature [AUDIT_SIG_LEN];
} audit_head_t;

/*  The signed text of head into out (cap >= AUDIT_HEAD_TEXT_MAX): its
    length, or 0 when it does not fit. */
size_t audit_head_text (const audit_head_t *head, char *out, size_t cap);

/*  Sign head (origin set from the keys, then size, root and time as the
    caller set them). */
int audit_head_sign (audit_keys_t *self, audit_head_t *head);

/*  Check head's signature against pk: 0 or BUS_ECRYPTO. */
int audit_head_verify (const audit_head_t *head, const uint8_t pk [AUDIT_PK_LEN]);

/*  A compact JWS over the canonical form of payload (a JSON object):
    *jws malloc'd (caller frees). */
int audit_jws_sign (audit_keys_t *self, const json_t *payload, char **jws)
    __attribute__((warn_unused_result));

/*  As audit_jws_sign, with the HMAC-SHA256 tag of the payload's bytes
    (hex, into hmac) also in the protected header as "hmac": the receipt's
    form, so a compact JWS alone carries both (the tag is covered by the
    signature too). */
int audit_jws_sign_tagged (audit_keys_t *self, const json_t *payload, char **jws,
                           char hmac [2 * AUDIT_HASH_LEN + 1]) __attribute__((warn_unused_result));

/*  Check a compact JWS against pk: alg must be EdDSA and, when kid is not
    NULL, the header's kid must equal it. On success *payload (may be NULL:
    the payload is then not read) receives the decoded payload (caller
    decrefs); a signed payload that is not JSON is BUS_EINVAL. */
int audit_jws_verify (const char *jws, const uint8_t pk [AUDIT_PK_LEN], const char *kid,
                      json_t **payload) __attribute__((warn_unused_result));

/*  HMAC-SHA256 of data under the keys' HMAC key, as 64 lowercase hex digits. */
void audit_hmac_hex (audit_keys_t *self, char out [2 * AUDIT_HASH_LEN + 1], const void *data, size_t len);

/*  The HMAC-SHA256 tag of payload's canonical form (the bytes a receipt's
    JWS carries), as hex: 0 or an proto_canon error. */
int audit_hmac_payload (audit_keys_t *self, const json_t *payload, char out [2 * AUDIT_HASH_LEN + 1])
    __attribute__((warn_unused_result));

/*  A sensitive value as the log stores it: "hmac-sha256:<hex>" (Vault's
    audit-device habit), into out. */
void audit_hmac_redact (audit_keys_t *self, char out [12 + 2 * AUDIT_HASH_LEN + 1], const char *value);

/*  Whether field of the body of messages of type is sensitive
    (proto_field_sensitive, or a test's own). */
typedef bool (audit_sensitive_fn) (const char *type, const char *field);

/*  Replace, in body (a JSON object; anything else is left alone), every
    top-level member that is_sensitive marks for type by its
    "hmac-sha256:<hex>": the HMAC of a string's bytes, of any other
    value's canonical JSON (proto_canon). Returns the number of members
    replaced, or a negative error (BUS_ENOMEM; an proto_canon error for a
    value without a canonical form, body then partly replaced). */
int audit_redact_fields (audit_keys_t *self, const char *type, json_t *body,
                         audit_sensitive_fn *is_sensitive);

#endif
