/*  audit_receipt.h — a run's receipt: built from the log by the auditor,
    checked offline by anyone (sanctumctl receipt verify, tests).

    A receipt is a compact JWS (RFC 7515; alg EdDSA, RFC 8037) signed with
    the auditor's key, header {"alg":"EdDSA","kid":KID,"typ":"JWT",
    "hmac":HEX}: HEX the HMAC-SHA256, under the auditor's HMAC key, of the
    payload's bytes (so systems sharing that key check it without Ed25519,
    and the tag is signed too). The payload is the canonical JSON
    (proto_canon.h) of

      {"receipt": "sanctum-receipt/1", "iss": ORIGIN, "sub": RUN,
       "iat": seconds, "issued_at": µs,
       ...the run's summary (audit_runs_summary: run, state, reason,
          workflow, workflow_hash, input_digest, principal, started_at,
          finished_at, steps, pauses, approvals, leases, gaps),
       "head": {origin, size, root, time, kid, signature} (a signed tree
          head, audit_sign.h, of the log when the receipt was built),
       "entries": [{index, entry, path}]: every entry of the run and every
          gap entry at or after its first, `entry` the stored bytes as a
          string, `path` its RFC 6962 inclusion proof in the head's tree}

    A verifier trusts nothing but the JWKS: it checks the JWS signature,
    the HMAC (with the key), the head's signature, each entry's inclusion
    (its bytes hashed here), that the summary is what the proven entries
    say (audit_runs_summary recomputed), and each approval level's device
    signature over PROTOCOL.md 10.4's decision bytes (the ciba-broker's own
    verifier, handed in: this library links no other service).

    Threads: any; functions work in the caller's transaction. Errors:
    BUS_ENOTFOUND (a run with no entries), BUS_ETOOBIG (over
    AUDIT_RECEIPT_MAX), BUS_EINVAL, BUS_ECRYPTO (verification failed), store
    errors.
*/
#ifndef AUDIT_RECEIPT_H
#define AUDIT_RECEIPT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "audit_log.h"
#include "audit_runs.h"
#include "audit_sign.h"

#define AUDIT_RECEIPT_MAX   (768 * 1024)      /* bytes of a compact JWS */
#define AUDIT_RECEIPT_TYPE  "sanctum-receipt/1"

/*  Build run's receipt from the log as txn sees it, signed at now_us:
    *stored receives {run, state, jws, hmac, issued_at, size, entries}
    (caller decrefs) — what audit.receipt answers and the store keeps. */
int audit_receipt_build (audit_runs_t *runs, audit_log_t *log, audit_keys_t *keys, bus_txn_t *txn,
                         const char *run, int64_t now_us, json_t **stored)
    __attribute__((warn_unused_result));

/*  Check an approver's decision signature (ciba_decision_verify's shape):
    0 when it verifies. */
typedef int (audit_decision_verify_fn) (const char *device_key, const char *signature,
                                        const char *auth_req_id, const char *decision,
                                        const char *binding_message, const char *details_sha256);

/*  Told each check and its result, in order. */
typedef void (audit_check_fn) (void *arg, bool ok, const char *what);

/*  Verify a receipt (compact JWS text) against jwks (a JWKS object); with
    hmac_key (32 bytes, or NULL: not checked) its tag; with decision (or
    NULL: not checked) every approval signature. Each check is reported to
    check (may be NULL). *payload (may be NULL) receives the payload when
    it could be read. Returns 0 when every check held, BUS_ECRYPTO when
    one failed, BUS_EINVAL when the text is not a receipt at all. */
int audit_receipt_verify (const char *jws, const json_t *jwks, const uint8_t *hmac_key,
                          audit_decision_verify_fn *decision, audit_check_fn *check, void *arg,
                          json_t **payload);

#endif
