/*  fuzz_mpack.c — libFuzzer target for proto_mpack_decode.

    Any input: the decoder returns without crashing, leaking or reading
    past the buffer. An accepted input: encoding the value and decoding
    it again gives an equal value, and encoding that gives the same bytes
    (the round trip is stable).
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto_mpack.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    char err [128];
    json_t *value = NULL, *again = NULL;
    uint8_t *enc = NULL, *enc2 = NULL;
    size_t len = 0, len2 = 0;
    if (proto_mpack_decode (&value, data, size, 0, err, sizeof err))
        return 0;
    if (proto_mpack_encode (&enc, &len, value)
        || proto_mpack_decode (&again, enc, len, 0, err, sizeof err)
        || !json_equal (value, again)
        || proto_mpack_encode (&enc2, &len2, again)
        || len != len2 || memcmp (enc, enc2, len) != 0)
        abort ();
    json_decref (value);
    json_decref (again);
    free (enc);
    free (enc2);
    return 0;
}
