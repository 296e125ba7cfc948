/*  ciba_decision.c — the signed bytes of an approver's decision
    (ciba_decision.h). */
#include "ciba_decision.h"
#include "proto_canon.h"
#include "bus_error.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
ciba_details_sha256 (char hex [65], const json_t *details)
{
    char *canon = NULL;
    size_t len = 0;
    json_t *empty = NULL;
    if (!details || json_is_null (details))
        details = empty = json_array ();
    int rc = json_is_array (details) ? proto_canon (details, &canon, &len, NULL, 0) : BUS_EINVAL;
    if (rc == 0) {
        uint8_t digest [crypto_hash_sha256_BYTES];
        crypto_hash_sha256 (digest, (const uint8_t *) canon, len);
        sodium_bin2hex (hex, 65, digest, sizeof digest);
    }
    free (canon);
    json_decref (empty);
    return rc;
}

char *
ciba_decision_message (const char *auth_req_id, const char *decision, const char *binding_message,
                       const char *details_sha256, size_t *len)
{
    char *text = NULL;
    int n = asprintf (&text, "%s\n%s\n%s\n%s\n%s", CIBA_DECISION_PREFIX, auth_req_id, decision,
                      binding_message, details_sha256);
    if (n < 0)
        return NULL;
    *len = (size_t) n;
    return text;
}

int
ciba_b64_decode (uint8_t *out, size_t want, const char *text)
{
    size_t got = 0;
    const char *end = NULL;
    if (!text || sodium_base642bin (out, want, text, strlen (text), NULL, &got, &end,
                                    sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0
        || got != want || (end && *end))
        return BUS_EINVAL;
    return 0;
}

void
ciba_pk_b64 (char out [CIBA_PK_B64_LEN + 1], const uint8_t pk [CIBA_PK_LEN])
{
    sodium_bin2base64 (out, CIBA_PK_B64_LEN + 1, pk, CIBA_PK_LEN, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

int
ciba_decision_verify (const char *pk_b64, const char *sig_b64, const char *auth_req_id,
                      const char *decision, const char *binding_message, const char *details_sha256)
{
    uint8_t pk [CIBA_PK_LEN], sig [CIBA_SIG_LEN];
    if (ciba_b64_decode (pk, sizeof pk, pk_b64) || ciba_b64_decode (sig, sizeof sig, sig_b64))
        return BUS_EINVAL;
    size_t len = 0;
    char *msg = ciba_decision_message (auth_req_id, decision, binding_message, details_sha256, &len);
    if (!msg)
        return BUS_ENOMEM;
    int rc = crypto_sign_verify_detached (sig, (const uint8_t *) msg, len, pk) == 0 ? 0 : BUS_ECRYPTO;
    free (msg);
    return rc;
}

int
ciba_decision_sign (char sig_b64 [CIBA_SIG_B64_LEN + 1], const uint8_t sk [CIBA_SK_LEN],
                    const char *auth_req_id, const char *decision, const char *binding_message,
                    const char *details_sha256)
{
    size_t len = 0;
    char *msg = ciba_decision_message (auth_req_id, decision, binding_message, details_sha256, &len);
    if (!msg)
        return BUS_ENOMEM;
    uint8_t sig [CIBA_SIG_LEN];
    crypto_sign_detached (sig, NULL, (const uint8_t *) msg, len, sk);
    sodium_bin2base64 (sig_b64, CIBA_SIG_B64_LEN + 1, sig, sizeof sig, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    free (msg);
    return 0;
}
