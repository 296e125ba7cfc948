/*  proto_mpack.h — MessagePack <-> JSON values, safe against hostile bytes.

    Sanctum's bodies are maps of JSON-like values, held in memory as jansson
    values. The decoder is written for hostile input (msgpack-c's own
    unpacker is not: a 5-byte frame can make it try to allocate ~128 GiB):

    - every declared length and element count is checked against the bytes
      left before anything is allocated (an element takes at least one byte,
      a map entry two);
    - containers nest at most `max_depth` deep;
    - map keys must be strings and unique; strings must be valid UTF-8;
    - bin values become base64url strings (no padding); ext types, and
      unsigned integers above INT64_MAX, are refused;
    - trailing bytes after the top value are refused.

    The encoder walks a jansson value and writes it with msgpack-c's packer.
*/
#ifndef PROTO_MPACK_H
#define PROTO_MPACK_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto_error.h"

#define PROTO_MPACK_MAX_DEPTH 32

/*  The n-byte (1..8) big-endian unsigned integer at p; bounds are the
    caller's to check. */
static inline uint64_t
proto_mpack_be (const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p [i];
    return v;
}

/*  Decode exactly one value filling buf. Returns 0 and a new reference in
    *out, or PROTO_EINVAL (malformed), PROTO_EDEPTH, PROTO_ENOMEM; err names the
    reason and byte offset. */
int proto_mpack_decode (json_t **out, const uint8_t *buf, size_t len,
                        int max_depth, char *err, size_t err_len)
    __attribute__((warn_unused_result));

/*  A reader over a buffer, for decoders that walk a known outer layout
    themselves (the envelope) and hand inner values to
    proto_mpack_read_value(). */
typedef struct {
    const uint8_t *p;
    const uint8_t *end;
    const uint8_t *start;
    int max_depth;
    char *err;
    size_t err_len;
    bool nul;               /* set when a string value read holds a NUL byte */
} proto_mpack_reader_t;

/*  Decode one value at r->p (nested at depth) with the same checks as
    proto_mpack_decode; advances r->p. */
int proto_mpack_read_value (proto_mpack_reader_t *r, json_t **out, int depth)
    __attribute__((warn_unused_result));

/*  Step over one value at r->p without building it: structure, sizes and
    nesting are checked, nothing is allocated (strings are not checked for
    UTF-8). For readers that want one field of a frame they will not
    decode (the id of an oversized request). */
int proto_mpack_skip (proto_mpack_reader_t *r, int depth)
    __attribute__((warn_unused_result));

/*  Encode value; returns 0 with a malloc'd buffer in *out (caller frees),
    or PROTO_ENOMEM / PROTO_EINVAL (a value jansson cannot hold). */
int proto_mpack_encode (uint8_t **out, size_t *out_len, json_t *value)
    __attribute__((warn_unused_result));

/*  Append value to a msgpack-c packer, as proto_mpack_encode writes it (for
    writers that lay out the outer map themselves: the envelope encoder).
    Returns 0, PROTO_ENOMEM or PROTO_EINVAL. */
struct msgpack_packer;
int proto_mpack_pack (struct msgpack_packer *pk, json_t *value)
    __attribute__((warn_unused_result));

/*  msgpack_sbuffer_init with room for a typical frame already allocated
    (msgpack-c's first write would allocate 8 KiB: a heap allocation too
    large for malloc's per-thread cache, on every message); it grows by
    doubling as usual, and starts empty if the allocation fails. */
#define PROTO_MPACK_INITIAL 512
struct msgpack_sbuffer;
void proto_mpack_sbuffer_init (struct msgpack_sbuffer *sbuf);

#endif
