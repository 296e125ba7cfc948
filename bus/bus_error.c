/*  bus_error.c — text for the BUS_E* codes. */
#include "bus_error.h"

#include <stdarg.h>
#include <stdio.h>

const char *
bus_strerror (int code)
{
    switch (code) {
        case BUS_OK:        return "ok";
        case BUS_ENOMEM:    return "out of memory";
        case BUS_EINVAL:    return "invalid argument or input";
        case BUS_ENOTFOUND: return "not found";
        case BUS_EEXIST:    return "already exists";
        case BUS_EIO:       return "i/o error";
        case BUS_EFULL:     return "storage full";
        case BUS_ETIMEOUT:  return "timed out";
        case BUS_ECONFIG:   return "invalid configuration";
        case BUS_ETOOBIG:   return "too big";
        case BUS_EDEPTH:    return "nesting too deep";
        case BUS_ESTATE:    return "wrong state";
        case BUS_EPERM:     return "not permitted";
        case BUS_EREMOTE:   return "remote error";
        case BUS_ECRYPTO:   return "cryptographic failure";
        case BUS_EINTR:     return "interrupted";
        case BUS_EAUTH:     return "refused at the CURVE handshake";
        case BUS_EREFUSED:  return "peer unreachable";
        case BUS_ETLS:      return "tls failure";
        case BUS_EPROTO:    return "protocol violation by the peer";
        default:            return "unknown error";
    }
}

int
bus_errf (char *err, size_t err_len, int code, const char *fmt, ...)
{
    if (err && err_len) {
        va_list ap;
        va_start (ap, fmt);
        vsnprintf (err, err_len, fmt, ap);
        va_end (ap);
    }
    return code;
}
