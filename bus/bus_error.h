/*  bus_error.h — the error codes every Sanctum module returns.

    Functions return int: 0 for success, a negative BUS_E* code for failure.
    Library codes (LMDB, zmq, curl) are mapped to these at the boundary and
    never leak upward. bus_strerror() gives a stable, human-readable text.
*/
#ifndef BUS_ERROR_H
#define BUS_ERROR_H

#define BUS_OK          0
#define BUS_ENOMEM     -1   /* allocation failed */
#define BUS_EINVAL     -2   /* bad argument or malformed input */
#define BUS_ENOTFOUND  -3   /* key or record not found */
#define BUS_EEXIST     -4   /* key already exists (no-overwrite put) */
#define BUS_EIO        -5   /* disk or OS I/O failure */
#define BUS_EFULL      -6   /* storage map or queue full */
#define BUS_ETIMEOUT   -7   /* deadline passed */
#define BUS_ECONFIG    -8   /* configuration invalid */
#define BUS_ETOOBIG    -9   /* input over a size limit */
#define BUS_EDEPTH    -10   /* nesting limit exceeded */
#define BUS_ESTATE    -11   /* object in the wrong state for the call */
#define BUS_EPERM     -12   /* principal not allowed */
#define BUS_EREMOTE   -13   /* the peer answered with an error reply */
#define BUS_ECRYPTO   -14   /* a cryptographic operation failed */
#define BUS_EINTR     -15   /* interrupted (SIGINT/SIGTERM) */
#define BUS_EREFUSED  -16   /* peer unreachable: connection refused, no route, name not resolved */
#define BUS_ETLS      -17   /* TLS handshake or certificate verification failed */
#define BUS_EPROTO    -18   /* the peer broke the protocol (not HTTP, cut mid-response) */

/*  Text for an error code; never NULL. */
const char *bus_strerror (int code);

#endif
