/*  proto_canon.h — canonical JSON bytes: RFC 8785 (JSON Canonicalization
    Scheme, JCS), for whatever is hashed or signed: audit entries, the
    bytes an approver's device signs.

    An audit entry's leaf hash is taken over these bytes, so the same entry always
    hashes the same, and any verifier that can produce JCS (Python:
    json.dumps (v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for entries without floats or non-BMP keys) recomputes it:
      - no whitespace; members of every object sorted by key, keys compared
        as UTF-16 code units (JCS 3.2.3);
      - strings as UTF-8 with only `"` `\` and the control characters
        escaped: \b \t \n \f \r short, the others as \u00xx (lowercase);
      - numbers within ±(2^53 − 1) (beyond it a JCS number is not exact,
        and its form may not read back: refused): integers in decimal,
        others in ECMAScript's shortest round-trip form (JCS 3.2.2.3, so
        never with an exponent above), -0 as 0;
      - true, false, null.
    Nesting is limited to PROTO_CANON_DEPTH levels.
*/
#ifndef PROTO_CANON_H
#define PROTO_CANON_H

#include <jansson.h>
#include <stddef.h>

#define PROTO_CANON_DEPTH 32
#define PROTO_CANON_INT_MAX 9007199254740991LL      /* 2^53 - 1 */

/*  The canonical form of value into a malloc'd buffer *out (NUL-terminated,
    *len bytes without the NUL; caller frees). Returns 0, PROTO_EINVAL (an
    number out of range, a NaN or infinity; err says which), PROTO_EDEPTH,
    PROTO_ENOMEM. err may be NULL. */
int proto_canon (const json_t *value, char **out, size_t *len, char *err, size_t err_len)
    __attribute__((warn_unused_result));

/*  The same, for value as a member depth levels down in an enclosing
    value (its nesting limit counts from there): the enclosing value's
    canonical bytes can be written around it. */
int proto_canon_nested (const json_t *value, int depth, char **out, size_t *len, char *err, size_t err_len)
    __attribute__((warn_unused_result));

#endif
