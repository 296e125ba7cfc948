/*  fuzz_envelope.c — libFuzzer target for proto_msg_decode and
    proto_msg_validate.

    Any input: decode and validate return without crashing, leaking or
    reading past the buffer, and the fast decoder agrees with the reference
    one (same result, same error text, same fields). An accepted envelope: it encodes, the
    encoding decodes again to the same fields, and replies to it encode.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto_msg.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/*  The fields that must survive a re-encoding. */
static int
s_same (proto_msg_t *a, proto_msg_t *b)
{
    return a->kind == b->kind && a->v == b->v && a->ts == b->ts && a->ok == b->ok
        && a->spec == b->spec && strcmp (a->type, b->type) == 0 && strcmp (a->id, b->id) == 0
        && strcmp (a->corr, b->corr) == 0 && strcmp (a->traceparent, b->traceparent) == 0
        && b->from [0] == 0 && json_equal (a->body, b->body)
        && (a->kind != PROTO_KIND_EVT || (a->seq == b->seq && strcmp (a->pub, b->pub) == 0))
        && (a->error == NULL) == (b->error == NULL)
        && (a->error == NULL || json_equal (a->error, b->error));
}

/*  Encode msg, or abort. */
static uint8_t *
s_encode (proto_msg_t *msg, size_t *len)
{
    uint8_t *out = NULL;
    if (!msg || proto_msg_encode (msg, &out, len))
        abort ();
    return out;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    char err [256];
    char id [PROTO_ID_LEN + 1] = "";
    proto_msg_t *msg = NULL, *again = NULL;
    char peeked [PROTO_ID_LEN + 1];
    if (proto_msg_peek_id (data, size, peeked) == 0 && strlen (peeked) != PROTO_ID_LEN)
        abort ();                       /* the id of a refused frame: never allocates, never overruns */
    int rc = proto_msg_decode (&msg, data, size, 0, id, err, sizeof err);
    char ref_err [256], ref_id [PROTO_ID_LEN + 1] = "";
    proto_msg_t *ref = NULL;
    int ref_rc = proto_msg_decode_reference (&ref, data, size, 0, ref_id, ref_err, sizeof ref_err);
    if (ref_rc != rc || strcmp (ref_id, id) != 0 || (rc && strcmp (ref_err, err) != 0)
        || (rc == 0 && !s_same (msg, ref)))
        abort ();
    proto_msg_destroy (&ref);
    if (rc) {
        if (msg || strlen (id) > PROTO_ID_LEN)
            abort ();
        return 0;
    }
    if (strcmp (id, msg->id) != 0 || msg->from [0])
        abort ();
    proto_msg_validate (msg, err, sizeof err);
    size_t len = 0;
    uint8_t *enc = s_encode (msg, &len);
    if (proto_msg_decode (&again, enc, len, SIZE_MAX, NULL, err, sizeof err) || !s_same (msg, again))
        abort ();
    free (enc);
    proto_msg_t *rep = msg->kind == PROTO_KIND_REQ ? proto_reply_ok (msg, json_object ())
                                                   : proto_reply_error (msg, PROTO_ERR_MALFORMED, err);
    enc = s_encode (rep, &len);
    free (enc);
    json_decref (proto_msg_to_json (msg));
    proto_msg_destroy (&rep);
    proto_msg_destroy (&again);
    proto_msg_destroy (&msg);
    return 0;
}
