/*  fuzz_audit.c — libFuzzer target for what the auditor reads from
    outside: a compact JWS (audit_jws_verify, as `receipt verify` will
    read receipts) and JSON made canonical (proto_canon).

    The first byte picks the mode:
      'J'  the rest is a JWS, checked against the RFC 8037 test key: no
           crash, leak or over-read; 0 only for a valid signature, and then
           the payload is JSON.
      else the rest is JSON: when jansson reads it, its canonical form
           (when it has one) reads back, and its canonical form is the same
           bytes (canonicalisation is idempotent; values may change type:
           100.0 is written 100 and reads back an integer, as JCS means).
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto_canon.h"
#include "audit_sign.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static const uint8_t s_pk [AUDIT_PK_LEN] = {
    0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07, 0x3a,
    0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a,
};

static void
s_jws (const uint8_t *data, size_t size)
{
    char *text = malloc (size + 1);
    if (!text)
        return;
    memcpy (text, data, size);
    text [size] = 0;
    json_t *payload = NULL;
    int rc = audit_jws_verify (text, s_pk, NULL, &payload);
    if ((rc == 0) != (payload != NULL))
        abort ();
    json_decref (payload);
    free (text);
}

static void
s_canon (const uint8_t *data, size_t size)
{
    json_t *value = json_loadb ((const char *) data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (!value)
        return;
    char *one = NULL, *two = NULL;
    size_t n1 = 0, n2 = 0;
    if (proto_canon (value, &one, &n1, NULL, 0) == 0) {
        json_t *back = json_loadb (one, n1, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        if (!back || proto_canon (back, &two, &n2, NULL, 0) != 0 || n1 != n2 || memcmp (one, two, n1) != 0)
            abort ();
        json_decref (back);
    }
    free (one);
    free (two);
    json_decref (value);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (data [0] == 'J')
        s_jws (data + 1, size - 1);
    else
        s_canon (data + 1, size - 1);
    return 0;
}
