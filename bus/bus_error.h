/*  bus_error.h — the error codes every Sanctum module returns.

    Functions return int: 0 for success, a negative BUS_E* code for failure.
    Library codes (LMDB, zmq, curl) are mapped to these at the boundary and
    never leak upward. bus_strerror() gives a stable, human-readable text.

    The codes proto/ returns are defined in proto/proto_error.h (the layer
    below, which includes nothing from bus/) and named here too with the
    same values, so this stays one list: a BUS_E* code is never a number
    that a PROTO_E* code already means.
*/
#ifndef BUS_ERROR_H
#define BUS_ERROR_H

#include <stddef.h>

#include "proto_error.h"

#define BUS_OK         PROTO_OK
#define BUS_ENOMEM     PROTO_ENOMEM      /*  -1 allocation failed */
#define BUS_EINVAL     PROTO_EINVAL      /*  -2 bad argument or malformed input */
#define BUS_ENOTFOUND  PROTO_ENOTFOUND   /*  -3 key or record not found */
#define BUS_EEXIST     -4                /* key already exists (no-overwrite put) */
#define BUS_EIO        -5                /* disk or OS I/O failure */
#define BUS_EFULL      -6                /* storage map or queue full */
#define BUS_ETIMEOUT   -7                /* deadline passed */
#define BUS_ECONFIG    -8                /* configuration invalid */
#define BUS_ETOOBIG    PROTO_ETOOBIG     /*  -9 input over a size limit */
#define BUS_EDEPTH     PROTO_EDEPTH      /* -10 nesting limit exceeded */
#define BUS_ESTATE     PROTO_ESTATE      /* -11 object in the wrong state for the call */
#define BUS_EPERM      -12               /* principal not allowed */
#define BUS_EREMOTE    -13               /* the peer answered with an error reply */
#define BUS_ECRYPTO    -14               /* a cryptographic operation failed */
#define BUS_EINTR      -15               /* interrupted (SIGINT/SIGTERM) */
#define BUS_EAUTH      -16               /* the peer refused our CURVE key, or the handshake failed */
#define BUS_EREFUSED   -17               /* peer unreachable: connection refused, no route, name not resolved */
#define BUS_ETLS       -18               /* TLS handshake or certificate verification failed */
#define BUS_EPROTO     -19               /* the peer broke the protocol (not HTTP, cut mid-response) */

/*  Text for an error code (BUS_E* and PROTO_E*); never NULL. */
const char *bus_strerror (int code);

/*  Format a message into err (when err is not NULL and err_len > 0; cut
    to fit, always NUL-terminated) and return code, so that a function
    that explains its failures can `return bus_errf (err, err_len,
    BUS_EINVAL, "field %s: ...", name);`. */
int bus_errf (char *err, size_t err_len, int code, const char *fmt, ...)
    __attribute__((format (printf, 4, 5)));

#endif
