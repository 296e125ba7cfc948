/*  proto_error.h — the error codes the proto layer returns.

    proto/ sits below bus/ and includes nothing from it: its functions
    return 0 or one of the negative codes below. They are the first rows of
    Sanctum's one list of error codes: bus/bus_error.h defines BUS_E* as
    these same values (BUS_EINVAL is PROTO_EINVAL) and adds the codes of the
    layers above, so a caller may compare a proto result with either name,
    and bus_strerror() describes every code of both headers. A new code here
    takes a number no BUS_E* code uses (bus_strerror's switch would not
    compile with two equal values).
*/
#ifndef PROTO_ERROR_H
#define PROTO_ERROR_H

#define PROTO_OK          0
#define PROTO_ENOMEM     -1   /* allocation failed */
#define PROTO_EINVAL     -2   /* malformed input (a frame, a body, an argument) */
#define PROTO_ENOTFOUND  -3   /* unknown message type */
#define PROTO_ETOOBIG    -9   /* frame over its size cap */
#define PROTO_EDEPTH    -10   /* nesting limit exceeded */
#define PROTO_ESTATE    -11   /* unsupported protocol version */

#endif
