/*  proto_msg.h — the Sanctum envelope: encode, decode, validate.

    Every frame that carries a message is one MessagePack map (PROTOCOL.md):
      v            protocol version (PROTO_VERSION)
      type         message type, a catalogue name ("authz.check")
      id           ULID of this message (a request id for requests)
      ts           µs since the epoch, set by the sender
      from         principal — set by the RECEIVER from ZAP, never trusted
      corr         on replies: the id of the request answered
      traceparent  W3C trace context, carried from request to reply/events
      body         map whose schema `type` names
      ok / error   on replies: ok true with body, or ok false with
                   error {code, message}
      pub / seq    on events: publisher and per-publisher sequence (from 1)

    proto_msg_decode() checks the envelope; proto_msg_validate() checks the
    body against the catalogue. Neither trusts a byte of the input.
*/
#ifndef PROTO_MSG_H
#define PROTO_MSG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto_error.h"

#define PROTO_VERSION        1
#define PROTO_MAX_FRAME      (1024 * 1024)   /* default frame cap, bytes */
#define PROTO_MAX_DEPTH      16              /* nesting limit of an envelope */
#define PROTO_TYPE_MAX       64
#define PROTO_ID_LEN         26              /* ULID, Crockford base32 */
#define PROTO_PRINCIPAL_MAX  128
#define PROTO_TRACEPARENT_LEN 55

/*  Stable error codes of replies (PROTOCOL.md, "Errors"). */
#define PROTO_ERR_MALFORMED       "malformed"
#define PROTO_ERR_TOO_LARGE       "too_large"
#define PROTO_ERR_UNKNOWN_TYPE    "unknown_type"
#define PROTO_ERR_WRONG_SERVICE   "wrong_service"
#define PROTO_ERR_FORBIDDEN       "forbidden"
#define PROTO_ERR_INVALID         "invalid"
#define PROTO_ERR_NOT_IMPLEMENTED "not_implemented"
#define PROTO_ERR_NOT_FOUND       "not_found"
#define PROTO_ERR_CONFLICT        "conflict"
#define PROTO_ERR_UNAVAILABLE     "unavailable"
#define PROTO_ERR_TIMEOUT         "timeout"
#define PROTO_ERR_INTERNAL        "internal"
#define PROTO_ERR_VERSION         "unsupported_version"
#define PROTO_ERR_TOO_COMPLEX     "too_complex"   /* a query past its resolution limit */

/*  Principal classes (bit mask) for the catalogue's `senders`. */
#define PROTO_P_SVC  0x01
#define PROTO_P_OPS  0x02
#define PROTO_P_EXT  0x04
#define PROTO_P_USR  0x08

typedef enum { PROTO_KIND_REQ, PROTO_KIND_EVT, PROTO_KIND_REPLY } proto_kind_t;

/*  One catalogue entry. */
typedef struct {
    const char *type;       /* "authz.check" */
    proto_kind_t kind;      /* REQ or EVT */
    const char *owner;      /* service section name, or "any" */
    unsigned senders;       /* PROTO_P_* mask */
    int first_field;        /* index into the field table */
    int field_count;
    bool safe;              /* a request without effects: a retry runs it again */
} proto_type_t;

/*  A decoded message. Strings are copied out of the frame; body/error are
    owned references (NULL when absent). */
typedef struct {
    int v;
    proto_kind_t kind;
    const proto_type_t *spec;         /* catalogue entry, NULL if unknown */
    char type [PROTO_TYPE_MAX + 1];
    char id [PROTO_ID_LEN + 1];
    char corr [PROTO_ID_LEN + 1];
    char from [PROTO_PRINCIPAL_MAX + 1];
    char pub [PROTO_PRINCIPAL_MAX + 1];
    char traceparent [PROTO_TRACEPARENT_LEN + 1];
    int64_t ts;
    uint64_t seq;
    bool ok;
    json_t *body;
    json_t *error;
    bool body_nul_free;               /* set by proto_msg_decode when no string or key of the
                                         body holds a NUL: proto_msg_validate skips its walk
                                         (clear it after putting strings into a decoded body) */
} proto_msg_t;

/*  Catalogue lookup by type name; NULL if the type is unknown. */
const proto_type_t *proto_type_find (const char *type);

/*  Number of catalogue entries and the i-th one (for docs and tests). */
size_t proto_type_count (void);
const proto_type_t *proto_type_at (size_t index);

/*  Whether the catalogue marks the top-level body field of messages of
    type sensitive (PROTO_SENSITIVE): the auditor stores its value as
    "hmac-sha256:<hex>", never in the clear. False for an unknown type or
    field, and for NULL. Thread-safe (a constant table). */
bool proto_field_sensitive (const char *type, const char *field);

/*  Principal class bit of a principal string ("svc:authz" -> PROTO_P_SVC),
    0 if the form is not recognised. */
unsigned proto_principal_class (const char *principal);

/*  New empty message of a kind; destroy frees body and error. */
proto_msg_t *proto_msg_new (proto_kind_t kind, const char *type);
void proto_msg_destroy (proto_msg_t **self_p);

/*  Decode a frame into a message. Checks: size <= max_frame, MessagePack
    well-formed (proto_mpack), envelope fields present with the right types
    and bounds, version supported. Does NOT check the body schema.
    Returns 0, or PROTO_ETOOBIG / PROTO_EINVAL / PROTO_EDEPTH / PROTO_ESTATE
    (a version other than ours) with err set. id_out (if given) receives
    the request id whenever it can be read, also when decoding failed: from
    the envelope, or, for a frame refused before its envelope was checked
    (a value refused anywhere in it, trailing bytes, over max_frame), as
    proto_msg_peek_id finds it; "" when it cannot be read. So an error
    reply can still be correlated. */
int proto_msg_decode (proto_msg_t **out, const uint8_t *data, size_t len,
                      size_t max_frame, char *id_out, char *err, size_t err_len)
    __attribute__((warn_unused_result));

/*  The request id of a frame without decoding it (nothing allocated): for
    answering a frame refused before decoding (too large). Returns 0 with
    id_out set, or PROTO_EINVAL when no well-formed `id` is found. */
int proto_msg_peek_id (const uint8_t *data, size_t len, char id_out [PROTO_ID_LEN + 1]);

/*  The same decode through the reference reader alone (the whole frame as
    JSON first). proto_msg_decode takes a faster path for well-formed
    frames; the two must agree on every input, which the envelope fuzz
    target checks with this. */
int proto_msg_decode_reference (proto_msg_t **out, const uint8_t *data, size_t len,
                                size_t max_frame, char *id_out, char *err, size_t err_len)
    __attribute__((warn_unused_result));

/*  Validate the body against the catalogue entry: required fields present,
    types and bounds. A declared field set to nil is removed from the body
    (nil means absent). Then the whole body, declared fields or not, ANYV
    ones included: no string and no map key at any depth may hold a NUL
    byte (consumers read them as C strings). Returns 0 or PROTO_EINVAL with
    err naming the field by its path ("field 'writes[0].object' holds a NUL
    byte"). An unknown type is PROTO_ENOTFOUND. */
int proto_msg_validate (proto_msg_t *self, char *err, size_t err_len);

/*  The first body member the catalogue does not declare for this type,
    or NULL (none, no body, or an unknown type). Receivers ignore such
    members (PROTOCOL.md 9); the bus counts and logs them, so that a
    misspelt optional field is seen rather than silently dropped. */
const char *proto_msg_unknown_field (const proto_msg_t *self);

/*  Encode to a malloc'd MessagePack frame (caller frees). */
int proto_msg_encode (proto_msg_t *self, uint8_t **out, size_t *out_len)
    __attribute__((warn_unused_result));

/*  The envelope as JSON (for sanctumctl --json, tap, logs). New reference. */
json_t *proto_msg_to_json (proto_msg_t *self);

/*  Build a reply to req: ok with body (stolen), or an error. */
proto_msg_t *proto_reply_ok (proto_msg_t *req, json_t *body);
proto_msg_t *proto_reply_error (proto_msg_t *req, const char *code, const char *message);
proto_msg_t *proto_reply_error_id (const char *corr, const char *code, const char *message);

/*  Fresh ULID into out (27 bytes with NUL); monotonic within a process. */
void proto_ulid (char out [PROTO_ID_LEN + 1]);

/*  A new W3C traceparent "00-<32 hex trace>-<16 hex span>-01". */
void proto_traceparent_new (char out [PROTO_TRACEPARENT_LEN + 1]);

/*  Child traceparent: same trace id, new span id. */
void proto_traceparent_child (char out [PROTO_TRACEPARENT_LEN + 1], const char *parent);

/*  Microseconds since the epoch. */
int64_t proto_now_us (void);

#endif
