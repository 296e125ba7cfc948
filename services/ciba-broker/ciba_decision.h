/*  ciba_decision.h — what an approver's device signs (PROTOCOL.md 10.4,
    "Signed decisions"), shared by the broker (which verifies) and
    sanctumctl (which signs with an enrolled device's key).

    The signed bytes are the UTF-8 text

        sanctum-ciba-decision/1 LF auth_req_id LF decision LF
        binding_message LF authorization_details_sha256

    with no trailing LF: decision is "approve" or "deny", binding_message
    the approval's sanitised message (it holds no control character, so no
    LF), and authorization_details_sha256 the 64 lowercase hex digits of
    SHA-256 over the RFC 8785 (JCS) form of the authorization_details array
    ("[]" when the request had none). The signature is Ed25519 (RFC 8032,
    pure), sent base64url without padding (86 characters); the device is
    named by its public key, base64url without padding (43 characters).

    Threads: any. Errors: negative BUS_E* codes.
*/
#ifndef CIBA_DECISION_H
#define CIBA_DECISION_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define CIBA_DECISION_PREFIX  "sanctum-ciba-decision/1"
#define CIBA_PK_LEN     32
#define CIBA_SK_LEN     64
#define CIBA_SIG_LEN    64
#define CIBA_PK_B64_LEN 43        /* base64url, unpadded, of 32 bytes */
#define CIBA_SIG_B64_LEN 86       /* base64url, unpadded, of 64 bytes */

/*  The hex SHA-256 of the JCS form of details (a JSON array; NULL or
    json null: "[]") into hex (65 bytes with the NUL). Returns 0,
    BUS_EINVAL (not an array, or a value without a canonical form),
    BUS_ENOMEM. */
int ciba_details_sha256 (char hex [65], const json_t *details)
    __attribute__((warn_unused_result));

/*  The bytes to sign into a malloc'd NUL-terminated buffer (*len without
    the NUL; caller frees), or NULL when out of memory. */
char *ciba_decision_message (const char *auth_req_id, const char *decision,
                             const char *binding_message, const char *details_sha256, size_t *len);

/*  Verify sig_b64 (base64url) by the device public key pk_b64 (base64url)
    over the decision's bytes. Returns 0 when it verifies, BUS_EINVAL when
    a key or signature is malformed, BUS_ECRYPTO when it does not verify. */
int ciba_decision_verify (const char *pk_b64, const char *sig_b64, const char *auth_req_id,
                          const char *decision, const char *binding_message, const char *details_sha256);

/*  Sign a decision with a device's secret key (libsodium's 64-byte form)
    into sig_b64 (CIBA_SIG_B64_LEN + 1 bytes). Returns 0 or BUS_ENOMEM. */
int ciba_decision_sign (char sig_b64 [CIBA_SIG_B64_LEN + 1], const uint8_t sk [CIBA_SK_LEN],
                        const char *auth_req_id, const char *decision, const char *binding_message,
                        const char *details_sha256);

/*  base64url (unpadded) of 32 public-key bytes into out (44 bytes). */
void ciba_pk_b64 (char out [CIBA_PK_B64_LEN + 1], const uint8_t pk [CIBA_PK_LEN]);

/*  Decode an unpadded base64url text of exactly want bytes into out.
    Returns 0 or BUS_EINVAL. */
int ciba_b64_decode (uint8_t *out, size_t want, const char *text);

#endif
