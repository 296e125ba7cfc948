/*  authz_cel_lib.c — the CEL function library.

    Runtime helpers first (RFC 3339 timestamps, Go durations, IP
    addresses, number formatting, RE2-style patterns translated to POSIX
    regular expressions), then the functions themselves: equality and
    ordering, arithmetic with cel-go's overflow errors, conversions, time
    accessors, matches(), indexing, and cel_apply, which dispatches a call
    node to them. Every function charges its work to the evaluation's
    cost (cel_charge).
*/
#include "authz_cel_private.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <regex.h>

#define S_MAX_REPEAT       1000    /* RE2's repetition bound */
#define S_MAX_RE_NEST      50      /* groups nested in a pattern */
#define S_MAX_RE_LOOP_REPEAT 100   /* repetition of a group holding a * or +:
                                      glibc's compile time grows with the cube */

//  ---------------------------------------------------------------------
//  Runtime helpers: time, durations, IP addresses, formatting, regex.

#define S_TS_MIN  (-62135596800LL)      //  0001-01-01T00:00:00Z
#define S_TS_MAX  (253402300799LL)      //  9999-12-31T23:59:59Z
#define S_NS      1000000000LL

//  Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant).
static int64_t
s_days_from_civil (int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0? y: y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2? -3: 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

//  The date of a day number (inverse of s_days_from_civil).
static void
s_civil_from_days (int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0? z: z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int) (doy - (153 * mp + 2) / 5 + 1);
    *m = (int) (mp < 10? mp + 3: mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static bool
s_leap (int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

//  Parse exactly n decimal digits at s into *v.
static bool
s_digits (const char *s, int n, int *v)
{
    *v = 0;
    for (int i = 0; i < n; i++) {
        if (s [i] < '0' || s [i] > '9')
            return false;
        *v = *v * 10 + (s [i] - '0');
    }
    return true;
}

//  Parse an RFC 3339 timestamp as Go's time.Parse(time.RFC3339) does:
//  YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM). Also requires CEL's range.
bool
cel_parse_rfc3339 (const char *s, size_t n, cel_val_t *out)
{
    int y, mo, d, h, mi, se, oh = 0, om = 0, off = 0;
    if (n < 20 || !s_digits (s, 4, &y) || s [4] != '-' || !s_digits (s + 5, 2, &mo)
    ||  s [7] != '-' || !s_digits (s + 8, 2, &d) || s [10] != 'T'
    ||  !s_digits (s + 11, 2, &h) || s [13] != ':' || !s_digits (s + 14, 2, &mi)
    ||  s [16] != ':' || !s_digits (s + 17, 2, &se))
        return false;
    static const int mdays [] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (mo < 1 || mo > 12 || d < 1 || d > mdays [mo - 1] + (mo == 2 && s_leap (y))
    ||  h > 23 || mi > 59 || se > 59)
        return false;
    size_t i = 19;
    int64_t nsec = 0;
    if (i < n && (s [i] == '.' || s [i] == ',')) {
        size_t j = ++i;
        while (i < n && s [i] >= '0' && s [i] <= '9') {
            if (i - j < 9)
                nsec = nsec * 10 + (s [i] - '0');
            i++;
        }
        if (i == j)
            return false;
        for (size_t k = i - j; k < 9; k++)
            nsec *= 10;
    }
    if (i < n && s [i] == 'Z')
        i++;
    else
    if (i + 6 == n && (s [i] == '+' || s [i] == '-') && s_digits (s + i + 1, 2, &oh)
    &&  s [i + 3] == ':' && s_digits (s + i + 4, 2, &om) && oh < 24 && om < 60) {
        off = (oh * 3600 + om * 60) * (s [i] == '-'? -1: 1);
        i += 6;
    }
    else
        return false;
    if (i != n)
        return false;
    int64_t sec = s_days_from_civil (y, mo, d) * 86400 + h * 3600 + mi * 60 + se - off;
    if (sec < S_TS_MIN || sec > S_TS_MAX)
        return false;
    out->k = K_TIMESTAMP;
    out->ts.sec = sec;
    out->ts.nsec = (int32_t) nsec;
    out->ts.off = off;
    return true;
}

//  Parse a duration as Go's time.ParseDuration does: [-+]?(number unit)+
//  with units ns us µs μs ms s m h, "0" alone allowed; int64 nanoseconds.
bool
cel_parse_duration (const char *s, size_t n, int64_t *out)
{
    size_t i = 0;
    bool neg = false;
    uint64_t total = 0;
    if (i < n && (s [i] == '-' || s [i] == '+'))
        neg = s [i++] == '-';
    if (n - i == 1 && s [i] == '0') {
        *out = 0;
        return true;
    }
    if (i == n)
        return false;
    while (i < n) {
        if (!(s [i] == '.' || (s [i] >= '0' && s [i] <= '9')))
            return false;
        uint64_t v = 0, f = 0;
        double scale = 1;
        size_t start = i;
        while (i < n && s [i] >= '0' && s [i] <= '9') {
            if (v > (UINT64_C (1) << 63) / 10)
                return false;
            v = v * 10 + (uint64_t) (s [i++] - '0');
            if (v > UINT64_C (1) << 63)
                return false;
        }
        bool pre = i > start, post = false;
        if (i < n && s [i] == '.') {
            i++;
            size_t fs = i;
            bool overflow = false;
            while (i < n && s [i] >= '0' && s [i] <= '9') {
                if (!overflow) {
                    if (f > (UINT64_C (1) << 63) / 10)
                        overflow = true;
                    else {
                        f = f * 10 + (uint64_t) (s [i] - '0');
                        scale *= 10;
                        if (f > UINT64_C (1) << 63)
                            overflow = true;
                    }
                }
                i++;
            }
            post = i > fs;
        }
        if (!pre && !post)
            return false;
        size_t us = i;
        while (i < n && s [i] != '.' && !(s [i] >= '0' && s [i] <= '9'))
            i++;
        size_t ul = i - us;
        const char *u = s + us;
        uint64_t unit = 0;
        if (ul == 2 && !memcmp (u, "ns", 2)) unit = 1;
        else if (ul == 2 && !memcmp (u, "us", 2)) unit = 1000;
        else if (ul == 3 && (!memcmp (u, "\xC2\xB5s", 3) || !memcmp (u, "\xCE\xBCs", 3))) unit = 1000;
        else if (ul == 2 && !memcmp (u, "ms", 2)) unit = 1000000;
        else if (ul == 1 && u [0] == 's') unit = 1000000000ULL;
        else if (ul == 1 && u [0] == 'm') unit = 60000000000ULL;
        else if (ul == 1 && u [0] == 'h') unit = 3600000000000ULL;
        if (!unit)
            return false;
        if (v > (UINT64_C (1) << 63) / unit)
            return false;
        v *= unit;
        if (f > 0) {
            v += (uint64_t) ((double) f * ((double) unit / scale));
            if (v > UINT64_C (1) << 63)
                return false;
        }
        total += v;
        if (total > UINT64_C (1) << 63)
            return false;
    }
    if (neg) {
        *out = total == UINT64_C (1) << 63? INT64_MIN: -(int64_t) total;
        return true;
    }
    if (total > (uint64_t) INT64_MAX)
        return false;
    *out = (int64_t) total;
    return true;
}

//  Parse an IPv4 address strictly (four decimal fields, no leading zeros).
static bool
s_parse_ipv4 (const char *s, size_t n, uint8_t *out)
{
    size_t i = 0;
    for (int f = 0; f < 4; f++) {
        if (f && (i >= n || s [i++] != '.'))
            return false;
        size_t start = i;
        unsigned v = 0;
        while (i < n && s [i] >= '0' && s [i] <= '9' && i - start < 3)
            v = v * 10 + (unsigned) (s [i++] - '0');
        if (i == start || v > 255 || (s [start] == '0' && i - start > 1))
            return false;
        out [f] = (uint8_t) v;
    }
    return i == n;
}

//  Parse an IP address as Go's netip.ParseAddr does (IPv6 may carry a
//  %zone; the zone text is kept in the arena).
bool
cel_parse_ip (const char *s, size_t n, cel_ip_t *ip, cel_arena_t *a)
{
    char buf [64];
    memset (ip, 0, sizeof *ip);
    if (n == 0 || n >= sizeof buf || memchr (s, 0, n))
        return false;
    if (!memchr (s, ':', n)) {
        ip->family = 4;
        return s_parse_ipv4 (s, n, ip->addr);
    }
    const char *pct = memchr (s, '%', n);
    size_t alen = pct? (size_t) (pct - s): n;
    if (pct) {
        size_t zl = n - alen - 1;
        if (zl == 0 || !(ip->zone = cel_strndup (a, pct + 1, zl)))
            return false;
    }
    memcpy (buf, s, alen);
    buf [alen] = 0;
    ip->family = 6;
    return inet_pton (AF_INET6, buf, ip->addr) == 1;
}

//  Is ip inside the CIDR prefix text (Go's netip.ParsePrefix + Contains)?
//  Returns 1, 0, or -1 for a malformed prefix.
static int
s_ip_in_cidr (const cel_ip_t *ip, const char *s, size_t n, cel_arena_t *a)
{
    const char *slash = n? memrchr (s, '/', n): NULL;
    if (!slash)
        return -1;
    cel_ip_t net;
    size_t alen = (size_t) (slash - s), blen = n - alen - 1;
    if (!cel_parse_ip (s, alen, &net, a) || net.zone)
        return -1;
    unsigned bits = 0;
    if (blen == 0 || blen > 3 || (slash [1] == '0' && blen > 1))
        return -1;
    for (size_t i = 0; i < blen; i++) {
        if (slash [1 + i] < '0' || slash [1 + i] > '9')
            return -1;
        bits = bits * 10 + (unsigned) (slash [1 + i] - '0');
    }
    if (bits > (net.family == 4? 32u: 128u))
        return -1;
    if (ip->family != net.family || ip->zone)
        return 0;
    for (unsigned b = 0; b < bits; b++) {
        uint8_t mask = (uint8_t) (0x80 >> (b % 8));
        if ((ip->addr [b / 8] & mask) != (net.addr [b / 8] & mask))
            return 0;
    }
    return 1;
}

//  Equal IP addresses: family, bytes and zone.
static bool
s_ip_equal (const cel_ip_t *a, const cel_ip_t *b)
{
    if (a->family != b->family || memcmp (a->addr, b->addr, a->family == 4? 4: 16))
        return false;
    if (!a->zone || !b->zone)
        return !a->zone && !b->zone;
    return !strcmp (a->zone, b->zone);
}

//  Shortest decimal digits that round-trip |d| (finite, non-zero):
//  digits in dig (NUL-terminated), decimal point position in *dp.
static void
s_shortest (double d, char *dig, int *dp)
{
    char buf [48];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf (buf, sizeof buf, "%.*e", prec - 1, fabs (d));
        if (strtod (buf, NULL) == fabs (d))
            break;
    }
    size_t nd = 0;
    char *e = strchr (buf, 'e');
    for (char *c = buf; c < e; c++)
        if (*c != '.')
            dig [nd++] = *c;
    while (nd > 1 && dig [nd - 1] == '0')
        nd--;
    dig [nd] = 0;
    *dp = atoi (e + 1) + 1;
}

//  Format d as Go's fmt %g (g) or strconv 'f' with shortest precision.
static void
s_fmt_double (double d, bool g, char *out, size_t len)
{
    if (isnan (d)) { snprintf (out, len, "NaN"); return; }
    if (isinf (d)) { snprintf (out, len, "%sInf", d < 0? "-": "+"); return; }
    if (d == 0) { snprintf (out, len, "%s0", signbit (d)? "-": ""); return; }
    char dig [24];
    int dp, nd;
    s_shortest (d, dig, &dp);
    nd = (int) strlen (dig);
    const char *sign = d < 0? "-": "";
    int exp = dp - 1;
    if (g && (exp < -4 || exp >= 6)) {
        snprintf (out, len, "%s%c%s%se%c%02d", sign, dig [0], nd > 1? ".": "",
                  dig + 1, exp < 0? '-': '+', abs (exp));
        return;
    }
    char buf [400];
    size_t b = 0;
    if (dp <= 0) {
        buf [b++] = '0';
        buf [b++] = '.';
        for (int i = 0; i < -dp; i++)
            buf [b++] = '0';
        for (int i = 0; i < nd; i++)
            buf [b++] = dig [i];
    }
    else {
        for (int i = 0; i < dp; i++)
            buf [b++] = i < nd? dig [i]: '0';
        if (nd > dp) {
            buf [b++] = '.';
            for (int i = dp; i < nd; i++)
                buf [b++] = dig [i];
        }
    }
    buf [b] = 0;
    snprintf (out, len, "%s%s", sign, buf);
}

//  Format a timestamp as Go's time.RFC3339Nano in its zone offset.
static void
s_fmt_timestamp (const cel_val_t *v, char *out, size_t len)
{
    int64_t local = v->ts.sec + v->ts.off;
    int64_t days = local >= 0? local / 86400: -((-local + 86399) / 86400);
    int64_t rem = local - days * 86400, y;
    int m, d;
    s_civil_from_days (days, &y, &m, &d);
    char frac [16] = "";
    if (v->ts.nsec) {
        snprintf (frac, sizeof frac, ".%09d", (int) v->ts.nsec);
        size_t fl = strlen (frac);
        while (frac [fl - 1] == '0')
            frac [--fl] = 0;
    }
    char zone [16] = "Z";
    if (v->ts.off)
        snprintf (zone, sizeof zone, "%c%02d:%02d", v->ts.off < 0? '-': '+',
                  abs (v->ts.off) / 3600, abs (v->ts.off) % 3600 / 60);
    snprintf (out, len, "%04lld-%02d-%02dT%02d:%02d:%02d%s%s", (long long) y, m, d,
              (int) (rem / 3600), (int) (rem % 3600 / 60), (int) (rem % 60), frac, zone);
}

//  Append s (length n) to the regex output buffer.
static void
s_re_put (char *out, size_t *o, const char *s, size_t n)
{
    memcpy (out + *o, s, n);
    *o += n;
}

//  Add the bytes of a Perl class (d, w, s) to a bracket set.
static void
s_re_class (uint8_t *set, char c)
{
    for (int b = 1; b < 128; b++)
        if ((c == 'd' && isdigit (b)) || (c == 'w' && (isalnum (b) || b == '_'))
        ||  (c == 's' && strchr ("\t\n\f\r ", b)))
            set [b] = 1;
}

//  Translate an RE2 bracket expression at pat [*i] (on '[') into a POSIX
//  one. Returns NULL or an error message.
static const char *
s_re_bracket (const char *pat, size_t n, size_t *i, char *out, size_t *o)
{
    uint8_t set [128] = {0};
    size_t j = *i + 1;
    bool neg = j < n && pat [j] == '^';
    if (neg)
        j++;
    bool first = true;
    while (j < n && (pat [j] != ']' || first)) {
        first = false;
        int lo;
        unsigned char c = (unsigned char) pat [j];
        if (c >= 128 || c == 0)
            return "non-ASCII character in a character class";
        if (c == '[' && j + 1 < n && pat [j + 1] == ':') {
            static const struct { const char *name; int (*fn) (int); } cls [] = {
                {"alnum", isalnum}, {"alpha", isalpha}, {"blank", isblank},
                {"cntrl", iscntrl}, {"digit", isdigit}, {"graph", isgraph},
                {"lower", islower}, {"print", isprint}, {"punct", ispunct},
                {"space", isspace}, {"upper", isupper}, {"xdigit", isxdigit}
            };
            const char *end = j + 2 < n? memchr (pat + j + 2, ']', n - j - 2): NULL;
            if (!end || end [-1] != ':')
                return "malformed character class";
            size_t nl = (size_t) (end - 1 - (pat + j + 2));
            bool found = false;
            for (size_t k = 0; k < sizeof cls / sizeof cls [0]; k++)
                if (strlen (cls [k].name) == nl && !memcmp (cls [k].name, pat + j + 2, nl)) {
                    for (int b = 1; b < 128; b++)
                        if (cls [k].fn (b))
                            set [b] = 1;
                    found = true;
                }
            if (!found)
                return "unknown character class";
            j = (size_t) (end - pat) + 1;
            continue;
        }
        if (c == '\\') {
            if (j + 1 >= n)
                return "trailing backslash";
            char e = pat [j + 1];
            j += 2;
            if (e == 'd' || e == 'w' || e == 's') {
                s_re_class (set, e);
                continue;
            }
            const char *ctl = strchr ("ntrfv", e);
            if (ctl && e)
                lo = "\n\t\r\f\v" [ctl - "ntrfv"];
            else
            if (ispunct ((unsigned char) e))
                lo = e;
            else
                return "unsupported escape in a character class";
        }
        else {
            lo = c;
            j++;
        }
        int hi = lo;
        if (j + 1 < n && pat [j] == '-' && pat [j + 1] != ']') {
            unsigned char h = (unsigned char) pat [j + 1];
            if (h == '\\' || h >= 128 || h == '[')
                return "unsupported range in a character class";
            hi = h;
            j += 2;
            if (hi < lo)
                return "invalid character class range";
        }
        for (int b = lo; b <= hi; b++)
            set [b] = 1;
    }
    if (j >= n)
        return "missing closing ]";
    *i = j + 1;
    //  emit: ']' first, then the rest, then '[', '^', and '-' last
    out [(*o)++] = '[';
    if (neg)
        out [(*o)++] = '^';
    int count = 0;
    for (int b = 1; b < 128; b++)
        count += set [b];
    if (count == 0)
        return "empty character class";
    if (set [']'])
        out [(*o)++] = ']';
    for (int b = 1; b < 128; b++)
        if (set [b] && b != ']' && b != '[' && b != '^' && b != '-')
            out [(*o)++] = (char) b;
    if (set ['['])
        out [(*o)++] = '[';
    if (set ['^']) {
        if (count == 1 && !neg) {
            (*o)--;
            s_re_put (out, o, "\\^", 2);
            return NULL;
        }
        out [(*o)++] = '^';
    }
    if (set ['-'])
        out [(*o)++] = '-';
    out [(*o)++] = ']';
    return NULL;
}

//  Account for a repetition (times copies) of the item just before it in
//  the product of the open group (*inner): group is the repeated group's
//  own product (0 for a single atom), looping whether it holds a * or +.
//  Returns NULL or an error message.
static const char *
s_re_repeat (long *inner, long group, bool looping, long times)
{
    long total = times * (group? group: 1);
    if (total > (looping? S_MAX_RE_LOOP_REPEAT: S_MAX_REPEAT))
        return "bad repetition operator: repetition nested too deeply";
    if (total > *inner)
        *inner = total;
    return NULL;
}

//  Translate an RE2 pattern to POSIX extended syntax (the subset both
//  agree on, plus \d \w \s, (?:...), a leading (?i), and lazy
//  quantifiers, which change no match/no-match answer). out must hold
//  16 * n + 16 bytes. Returns NULL or an error message.
static const char *
s_re_translate (const char *pat, size_t n, char *out, int *cflags, cel_re_info_t *info)
{
    size_t i = 0, o = 0;
    //  RE2 bounds counted repetition, nested ones multiplied, by 1000;
    //  POSIX engines expand it, so the bound also caps their program size.
    //  glibc also copies a group once for `+` (x+ is x x*), so a `+` on a
    //  group counts as a repetition of 2 here (nested ones would double the
    //  program each). Repeating a group that holds a loop (* + {n,}) costs
    //  glibc far more (its epsilon closures): (()*){1000} takes seconds, so
    //  such groups repeat at most S_MAX_RE_LOOP_REPEAT times.
    //  inner [d]: largest repetition product inside the open group d;
    //  loop [d]: group d holds a loop; closed: the product of the group that
    //  just closed (0: no group), closed_loop: whether it holds a loop;
    //  quantified: the last item was a quantifier (RE2 refuses a second
    //  one, as in x** or x{2}+; glibc would stack them).
    long inner [S_MAX_RE_NEST + 1] = {1};
    bool loop [S_MAX_RE_NEST + 1] = {false};
    long closed = 0;
    bool closed_loop = false, quantified = false;
    int depth = 0;
    //  size [d]: the program size of open group d so far, counted
    //  repetitions expanded as glibc expands them (x{3} is x x x, x+ on a
    //  group is x x*); last: the size of the last item, which a quantifier
    //  multiplies. The total is bounded (compile time and memory follow it).
    long size [S_MAX_RE_NEST + 1] = {0};
    long last = 0;
    *cflags = REG_EXTENDED | REG_NOSUB;
    if (n >= 4 && !memcmp (pat, "(?i)", 4)) {
        *cflags |= REG_ICASE;
        i = 4;
    }
    info->anchored = i < n && pat [i] == '^' && !memchr (pat, '|', n);
    while (i < n) {
        char c = pat [i];
        long group = closed;    //  a quantifier here applies to that group
        bool looping = closed_loop, stacked = quantified;
        closed = 0;
        quantified = false;
        if (c == 0)
            return "NUL in pattern";
        if (c == '\\') {
            if (i + 1 >= n)
                return "trailing backslash";
            char e = pat [i + 1];
            i += 2;
            const char *ctl = e? strchr ("ntrfv", e): NULL;
            if (e == 'd') s_re_put (out, &o, "[0-9]", 5);
            else if (e == 'D') s_re_put (out, &o, "[^0-9]", 6);
            else if (e == 'w') s_re_put (out, &o, "[0-9A-Za-z_]", 12);
            else if (e == 'W') s_re_put (out, &o, "[^0-9A-Za-z_]", 13);
            else if (e == 's') s_re_put (out, &o, "[\t\n\f\r ]", 7);
            else if (e == 'S') s_re_put (out, &o, "[^\t\n\f\r ]", 8);
            else if (e == 'b' || e == 'B') { out [o++] = '\\'; out [o++] = e; }
            else if (ctl) out [o++] = "\n\t\r\f\v" [ctl - "ntrfv"];
            else if (ispunct ((unsigned char) e)) {
                if (e == '{' || e == '}') {
                    out [o++] = '['; out [o++] = e; out [o++] = ']';
                }
                else { out [o++] = '\\'; out [o++] = e; }
            }
            else
                return "unsupported escape sequence";
            size [depth]++;
            last = 1;
            continue;
        }
        if (c == '[') {
            const char *msg = s_re_bracket (pat, n, &i, out, &o);
            if (msg)
                return msg;
            size [depth]++;
            last = 1;
            continue;
        }
        if (c == '(') {
            if (depth == S_MAX_RE_NEST)
                return "groups nested too deeply";
            inner [++depth] = 1;
            loop [depth] = false;
            size [depth] = 0;
            out [o++] = '(';
            i++;
            if (i < n && pat [i] == '?') {
                if (i + 1 < n && pat [i + 1] == ':') {
                    i += 2;
                    continue;
                }
                return "unsupported group flags";
            }
            continue;
        }
        if (c == ')') {
            if (depth == 0)
                return "unexpected )";
            closed = inner [depth];
            closed_loop = loop [depth--];
            loop [depth] |= closed_loop;
            if (closed > inner [depth])
                inner [depth] = closed;
            last = size [depth + 1];
            size [depth] += last;
            out [o++] = ')';
            i++;
            continue;
        }
        if (c == '{') {
            //  a repetition {n}, {n,}, {n,m} if well formed; else literal
            size_t j = i + 1;
            long a = -1, b = -1;
            char *end;
            if (j < n && isdigit ((unsigned char) pat [j])) {
                a = strtol (pat + j, &end, 10);
                j = (size_t) (end - pat);
                b = a;
                if (j < n && pat [j] == ',') {
                    j++;
                    b = -2;
                    if (j < n && isdigit ((unsigned char) pat [j])) {
                        b = strtol (pat + j, &end, 10);
                        j = (size_t) (end - pat);
                    }
                }
            }
            if (a >= 0 && j < n && pat [j] == '}') {
                if (stacked)
                    return "invalid nested repetition operator";
                if (a > S_MAX_REPEAT || b > S_MAX_REPEAT || (b >= 0 && b < a))
                    return "invalid repeat count";
                const char *msg = s_re_repeat (&inner [depth], group, looping, b > a? b: a);
                if (msg)
                    return msg;
                loop [depth] |= b == -2;
                long times = b > a? b: a > 0? a: 1;
                size [depth] += last * (times - 1);
                last *= times;
                if (size [depth] > AUTHZ_CEL_MAX_REGEX_PROGRAM)
                    return "regular expression too complex";
                s_re_put (out, &o, pat + i, j + 1 - i);
                i = j + 1;
                if (i < n && pat [i] == '?')
                    i++;
                quantified = true;
                continue;
            }
            s_re_put (out, &o, "[{]", 3);
            size [depth]++;
            last = 1;
            i++;
            continue;
        }
        if (c == '}') {
            s_re_put (out, &o, "[}]", 3);
            size [depth]++;
            last = 1;
            i++;
            continue;
        }
        out [o++] = c;
        i++;
        if (c == '*' || c == '+' || c == '?') {
            if (stacked)
                return "invalid nested repetition operator";
            const char *msg = c == '+' && group? s_re_repeat (&inner [depth], group, looping, 2): NULL;
            if (msg)
                return msg;
            loop [depth] |= c != '?';
            quantified = true;
            if (c == '+' && group) {
                size [depth] += last;
                last *= 2;
                if (size [depth] > AUTHZ_CEL_MAX_REGEX_PROGRAM)
                    return "regular expression too complex";
            }
            if (i < n && pat [i] == '?')
                i++;
        }
        else {
            size [depth]++;
            last = 1;
        }
    }
    if (depth)
        return "missing )";
    if (size [0] > AUTHZ_CEL_MAX_REGEX_PROGRAM)
        return "regular expression too complex";
    out [o] = 0;
    info->len = o;
    info->program = (size_t) size [0];
    return NULL;
}

//  Charge a match of a subject of n bytes (see authz_cel.h): a search
//  from every start position, or from the first for an anchored pattern.
static bool
s_re_charge (cel_eval_t *ev, const cel_re_info_t *info, size_t n)
{
    uint64_t m = info->len + 1;
    uint64_t steps = info->anchored? (uint64_t) (n + 1) * m: (uint64_t) n * (n + 1) / 2 * m;
    return cel_charge (ev, steps / AUTHZ_CEL_REGEX_STEP_DIV);
}

//  Compile an RE2-style pattern into re. Returns NULL or an error message
//  (in msg, of msg_len bytes).
const char *
cel_re_compile (const char *pat, size_t n, regex_t *re, cel_re_info_t *info,
                cel_eval_t *ev, size_t subject, char *msg, size_t msg_len)
{
    if (n > AUTHZ_CEL_MAX_REGEX_LEN) {
        snprintf (msg, msg_len, "regular expression longer than %d bytes", AUTHZ_CEL_MAX_REGEX_LEN);
        return msg;
    }
    char *buf = malloc (16 * n + 16);
    if (!buf) {
        snprintf (msg, msg_len, "out of memory");
        return msg;
    }
    int cflags = 0;
    const char *bad = s_re_translate (pat, n, buf, &cflags, info);
    if (bad)
        snprintf (msg, msg_len, "error parsing regexp: %s", bad);
    else
    if (ev && (!cel_charge (ev, (uint64_t) info->program * AUTHZ_CEL_REGEX_COMPILE_UNIT)
           ||  !s_re_charge (ev, info, subject))) {
        snprintf (msg, msg_len, "cost limit");
        bad = msg;
    }
    else {
        int rc = regcomp (re, buf, cflags);
        if (rc) {
            char why [128];
            regerror (rc, re, why, sizeof why);
            snprintf (msg, msg_len, "error parsing regexp: %s", why);
            bad = msg;
        }
    }
    free (buf);
    return bad;
}

//  Does re match anywhere in s (length n)?
static bool
s_re_match (const regex_t *re, const char *s, size_t n)
{
#ifdef REG_STARTEND
    regmatch_t m [1];
    m [0].rm_so = 0;
    m [0].rm_eo = (regoff_t) n;
    return regexec (re, s, 1, m, REG_STARTEND) == 0;
#else
    //  strings are NUL-terminated in the arena; an embedded NUL ends the
    //  subject early on platforms without REG_STARTEND
    (void) n;
    return regexec (re, s, 0, NULL, 0) == 0;
#endif
}
//  Compare two numbers of any numeric kinds as cel-go does. Returns false
//  when the values are unordered (NaN).
static bool
s_numcmp (const cel_val_t *a, const cel_val_t *b, int *c)
{
    if (a->k == K_DOUBLE && b->k == K_DOUBLE) {
        if (isnan (a->d) || isnan (b->d))
            return false;
        *c = a->d < b->d? -1: a->d > b->d;
        return true;
    }
    if (a->k == K_DOUBLE || b->k == K_DOUBLE) {
        const cel_val_t *o = a->k == K_DOUBLE? b: a;
        double d = a->k == K_DOUBLE? a->d: b->d;
        if (isnan (d))
            return false;
        int r;                  //  compare o with d
        if (o->k == K_INT)
            r = d < -9223372036854775808.0? 1: d >= 9223372036854775808.0? -1:
                (double) o->i < d? -1: (double) o->i > d;
        else
            r = d < 0? 1: d >= 18446744073709551616.0? -1:
                (double) o->u < d? -1: (double) o->u > d;
        *c = a->k == K_DOUBLE? -r: r;
        return true;
    }
    if (a->k == K_INT && b->k == K_INT)
        *c = a->i < b->i? -1: a->i > b->i;
    else
    if (a->k == K_UINT && b->k == K_UINT)
        *c = a->u < b->u? -1: a->u > b->u;
    else
    if (a->k == K_INT)
        *c = a->i < 0 || (uint64_t) a->i < b->u? -1: (uint64_t) a->i > b->u;
    else
        *c = b->i < 0 || a->u > (uint64_t) b->i? 1: a->u < (uint64_t) b->i? -1: 0;
    return true;
}

static bool
s_is_num (const cel_val_t *v)
{
    return v->k == K_INT || v->k == K_UINT || v->k == K_DOUBLE;
}

static bool s_equal (cel_eval_t *ev, const cel_val_t *a, const cel_val_t *b);

//  Find key in map m (heterogeneous key equality); index or -1.
ssize_t
cel_map_find (cel_eval_t *ev, const cel_map_t *m, const cel_val_t *key)
{
    cel_charge (ev, 1 + m->n / 8);
    for (size_t i = 0; i < m->n; i++)
        if (s_equal (ev, &m->keys [i], key))
            return (ssize_t) i;
    return -1;
}

//  CEL equality with heterogeneous semantics: values of different kinds
//  are unequal, except numbers, which compare by value.
static bool
s_equal (cel_eval_t *ev, const cel_val_t *a, const cel_val_t *b)
{
    int c;
    if (s_is_num (a) && s_is_num (b))
        return s_numcmp (a, b, &c) && c == 0;
    if (a->k != b->k)
        return false;
    switch (a->k) {
        case K_NULL: return true;
        case K_BOOL: return a->b == b->b;
        case K_STRING: case K_BYTES:
            cel_charge (ev, a->s.n / 16);
            return a->s.n == b->s.n && !memcmp (a->s.p, b->s.p, a->s.n);
        case K_DURATION: return a->dur == b->dur;
        case K_TIMESTAMP: return a->ts.sec == b->ts.sec && a->ts.nsec == b->ts.nsec;
        case K_IP: return s_ip_equal (a->ip, b->ip);
        case K_LIST:
            if (a->list->n != b->list->n)
                return false;
            for (size_t i = 0; i < a->list->n && !ev->abort; i++)
                if (!s_equal (ev, &a->list->items [i], &b->list->items [i]))
                    return false;
            return !ev->abort;
        case K_MAP:
            if (a->map->n != b->map->n)
                return false;
            for (size_t i = 0; i < a->map->n && !ev->abort; i++) {
                ssize_t j = cel_map_find (ev, b->map, &a->map->keys [i]);
                if (j < 0 || !s_equal (ev, &a->map->vals [i], &b->map->vals [j]))
                    return false;
            }
            return !ev->abort;
        default:
            return false;
    }
}

//  Order a and b: 0 ok with *c set, 1 no such overload, 2 unordered (NaN).
static int
s_compare (const cel_val_t *a, const cel_val_t *b, int *c)
{
    if (s_is_num (a) && s_is_num (b))
        return s_numcmp (a, b, c)? 0: 2;
    if (a->k != b->k)
        return 1;
    switch (a->k) {
        case K_BOOL: *c = (int) a->b - (int) b->b; return 0;
        case K_STRING: case K_BYTES: {
            int r = memcmp (a->s.p, b->s.p, a->s.n < b->s.n? a->s.n: b->s.n);
            *c = r? (r < 0? -1: 1): a->s.n < b->s.n? -1: a->s.n > b->s.n;
            return 0;
        }
        case K_DURATION: *c = a->dur < b->dur? -1: a->dur > b->dur; return 0;
        case K_TIMESTAMP:
            *c = a->ts.sec != b->ts.sec? (a->ts.sec < b->ts.sec? -1: 1):
                 a->ts.nsec < b->ts.nsec? -1: a->ts.nsec > b->ts.nsec;
            return 0;
        default:
            return 1;
    }
}

//  A timestamp moved by ns nanoseconds, with CEL's range check.
static cel_val_t
s_ts_add (cel_eval_t *ev, cel_val_t t, int64_t ns)
{
    int64_t sec = t.ts.sec + ns / S_NS;
    int64_t nsec = t.ts.nsec + ns % S_NS;
    if (nsec < 0) { nsec += S_NS; sec--; }
    if (nsec >= S_NS) { nsec -= S_NS; sec++; }
    if (sec < S_TS_MIN || sec > S_TS_MAX)
        return cel_verr (ev, AUTHZ_CEL_EEVAL, "timestamp overflow");
    t.ts.sec = sec;
    t.ts.nsec = (int32_t) nsec;
    return t;
}

//  Concatenate two lists.
static cel_val_t
s_list_concat (cel_eval_t *ev, const cel_list_t *a, const cel_list_t *b)
{
    cel_val_t v = {.k = K_LIST};
    if (!cel_charge (ev, a->n + b->n))
        return ev->abort_val;
    cel_list_t *l = cel_ealloc (ev, sizeof *l);
    cel_val_t *items = l? cel_ealloc (ev, (a->n + b->n) * sizeof *items + 1): NULL;
    if (!items)
        return ev->abort_val;
    if (a->n)
        memcpy (items, a->items, a->n * sizeof *items);
    if (b->n)
        memcpy (items + a->n, b->items, b->n * sizeof *items);
    l->n = a->n + b->n;
    l->items = items;
    v.list = l;
    return v;
}

//  + - * / % on two values of matching kinds (cel-go's overloads).
static cel_val_t
s_arith (cel_eval_t *ev, int fn, const cel_val_t *a, const cel_val_t *b)
{
    if (a->k == K_INT && b->k == K_INT) {
        int64_t r = 0;
        bool over = false;
        switch (fn) {
            case F_ADD: over = __builtin_add_overflow (a->i, b->i, &r); break;
            case F_SUB: over = __builtin_sub_overflow (a->i, b->i, &r); break;
            case F_MUL: over = __builtin_mul_overflow (a->i, b->i, &r); break;
            case F_DIV: case F_MOD:
                if (b->i == 0)
                    return cel_verr (ev, AUTHZ_CEL_EEVAL, fn == F_DIV? "division by zero": "modulus by zero");
                over = a->i == INT64_MIN && b->i == -1;
                if (!over)
                    r = fn == F_DIV? a->i / b->i: a->i % b->i;
                break;
        }
        return over? cel_verr (ev, AUTHZ_CEL_EEVAL, "integer overflow"): cel_vint (r);
    }
    if (a->k == K_UINT && b->k == K_UINT) {
        uint64_t r = 0;
        bool over = false;
        switch (fn) {
            case F_ADD: over = __builtin_add_overflow (a->u, b->u, &r); break;
            case F_SUB: over = __builtin_sub_overflow (a->u, b->u, &r); break;
            case F_MUL: over = __builtin_mul_overflow (a->u, b->u, &r); break;
            case F_DIV: case F_MOD:
                if (b->u == 0)
                    return cel_verr (ev, AUTHZ_CEL_EEVAL, fn == F_DIV? "division by zero": "modulus by zero");
                r = fn == F_DIV? a->u / b->u: a->u % b->u;
                break;
        }
        return over? cel_verr (ev, AUTHZ_CEL_EEVAL, "unsigned integer overflow"): cel_vuint (r);
    }
    if (a->k == K_DOUBLE && b->k == K_DOUBLE && fn != F_MOD)
        return cel_vdouble (fn == F_ADD? a->d + b->d: fn == F_SUB? a->d - b->d:
                          fn == F_MUL? a->d * b->d: a->d / b->d);
    if (fn == F_ADD && a->k == b->k && (a->k == K_STRING || a->k == K_BYTES)) {
        if (!cel_charge (ev, (a->s.n + b->s.n) / 16))
            return ev->abort_val;
        char *p = cel_ealloc (ev, a->s.n + b->s.n + 1);
        if (!p)
            return ev->abort_val;
        memcpy (p, a->s.p, a->s.n);
        memcpy (p + a->s.n, b->s.p, b->s.n);
        cel_val_t v = {.k = a->k};
        v.s.p = p;
        v.s.n = a->s.n + b->s.n;
        return v;
    }
    if (fn == F_ADD && a->k == K_LIST && b->k == K_LIST)
        return s_list_concat (ev, a->list, b->list);
    if (a->k == K_DURATION && b->k == K_DURATION && (fn == F_ADD || fn == F_SUB)) {
        int64_t r;
        if (fn == F_ADD? __builtin_add_overflow (a->dur, b->dur, &r): __builtin_sub_overflow (a->dur, b->dur, &r))
            return cel_verr (ev, AUTHZ_CEL_EEVAL, "integer overflow");
        return cel_vdur (r);
    }
    if (fn == F_ADD && a->k == K_TIMESTAMP && b->k == K_DURATION)
        return s_ts_add (ev, *a, b->dur);
    if (fn == F_ADD && a->k == K_DURATION && b->k == K_TIMESTAMP)
        return s_ts_add (ev, *b, a->dur);
    if (fn == F_SUB && a->k == K_TIMESTAMP && b->k == K_DURATION) {
        if (b->dur == INT64_MIN)
            return cel_verr (ev, AUTHZ_CEL_EEVAL, "integer overflow");
        return s_ts_add (ev, *a, -b->dur);
    }
    if (fn == F_SUB && a->k == K_TIMESTAMP && b->k == K_TIMESTAMP) {
        int64_t s, r;
        if (__builtin_sub_overflow (a->ts.sec, b->ts.sec, &s) || __builtin_mul_overflow (s, S_NS, &r)
        ||  __builtin_add_overflow (r, (int64_t) a->ts.nsec - b->ts.nsec, &r))
            return cel_verr (ev, AUTHZ_CEL_EEVAL, "integer overflow");
        return cel_vdur (r);
    }
    return cel_nooverload (ev, fn);
}

//  Is p (n bytes) valid UTF-8?
static bool
s_utf8_valid (const char *p, size_t n)
{
    const unsigned char *s = (const unsigned char *) p;
    for (size_t i = 0; i < n;) {
        unsigned c = s [i];
        size_t len = c < 0x80? 1: (c >> 5) == 6? 2: (c >> 4) == 14? 3: (c >> 3) == 30? 4: 0;
        if (!len || i + len > n || (len == 2 && c < 0xC2))
            return false;
        uint32_t cp = len == 1? c: c & (0x7F >> len);
        for (size_t k = 1; k < len; k++) {
            if ((s [i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s [i + k] & 0x3F);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF)))
        ||  (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
            return false;
        i += len;
    }
    return true;
}

//  Parse a whole string as a decimal integer, as Go's strconv does.
static bool
s_parse_int_text (const char *p, size_t n, bool is_signed, int64_t *i, uint64_t *u)
{
    char buf [32];
    if (n == 0 || n >= sizeof buf || memchr (p, 0, n))
        return false;
    memcpy (buf, p, n);
    buf [n] = 0;
    size_t start = (buf [0] == '-' || buf [0] == '+') && is_signed? 1: 0;
    if (!buf [start])
        return false;
    for (size_t k = start; buf [k]; k++)
        if (buf [k] < '0' || buf [k] > '9')
            return false;
    errno = 0;
    if (is_signed)
        *i = strtoll (buf, NULL, 10);
    else
        *u = strtoull (buf, NULL, 10);
    return errno == 0;
}

//  The zone offset a time accessor uses: the timestamp's own, or the
//  optional zone argument ("UTC" or ±HH:MM). false if unsupported.
static bool
s_zone_offset (const cel_val_t *ts, const cel_val_t *tz, int *off)
{
    *off = ts->ts.off;
    if (!tz)
        return true;
    const char *z = tz->s.p;
    size_t n = tz->s.n;
    int h, m;
    if ((n == 3 && !memcmp (z, "UTC", 3)) || (n == 1 && z [0] == 'Z')) {
        *off = 0;
        return true;
    }
    size_t sg = n == 6? 1: 0;
    if ((n == 6 || n == 5) && (!sg || z [0] == '+' || z [0] == '-')
    &&  s_digits (z + sg, 2, &h) && z [sg + 2] == ':' && s_digits (z + sg + 3, 2, &m)
    &&  h < 24 && m < 60) {
        *off = (h * 3600 + m * 60) * (sg && z [0] == '-'? -1: 1);
        return true;
    }
    return false;
}

//  getFullYear() and the other accessors on timestamps and durations.
static cel_val_t
s_time_accessor (cel_eval_t *ev, int fn, const cel_val_t *a, const cel_val_t *tz)
{
    if (a->k == K_DURATION) {
        int64_t d = a->dur;
        return fn == F_HOURS? cel_vint (d / 3600000000000LL): fn == F_MINUTES? cel_vint (d / 60000000000LL):
               fn == F_SECONDS? cel_vint (d / S_NS): cel_vint (d / 1000000);
    }
    int off;
    if (!s_zone_offset (a, tz, &off))
        return cel_verr (ev, AUTHZ_CEL_EEVAL, "unsupported time zone");
    int64_t local = a->ts.sec + off;
    int64_t days = local >= 0? local / 86400: -((-local + 86399) / 86400);
    int64_t rem = local - days * 86400, y;
    int m, d;
    s_civil_from_days (days, &y, &m, &d);
    switch (fn) {
        case F_FULLYEAR: return cel_vint (y);
        case F_MONTH: return cel_vint (m - 1);
        case F_DAYOFYEAR: return cel_vint (days - s_days_from_civil (y, 1, 1));
        case F_DAYOFMONTH: return cel_vint (d - 1);
        case F_DATE: return cel_vint (d);
        case F_DAYOFWEEK: return cel_vint (((days % 7) + 11) % 7);
        case F_HOURS: return cel_vint (rem / 3600);
        case F_MINUTES: return cel_vint (rem % 3600 / 60);
        case F_SECONDS: return cel_vint (rem % 60);
        default: return cel_vint (a->ts.nsec / 1000000);
    }
}

//  Type conversions: int() uint() double() string() bytes() bool()
//  duration() timestamp() dyn(), with cel-go's range checks.
static cel_val_t
s_convert (cel_eval_t *ev, int fn, const cel_val_t *a)
{
    int64_t i;
    uint64_t u;
    char buf [96];
    switch (fn * 16 + a->k) {
        case F_INT * 16 + K_INT: case F_UINT * 16 + K_UINT: case F_DOUBLE * 16 + K_DOUBLE:
        case F_STRING * 16 + K_STRING: case F_BYTES * 16 + K_BYTES: case F_BOOL * 16 + K_BOOL:
        case F_DURATION * 16 + K_DURATION: case F_TIMESTAMP * 16 + K_TIMESTAMP:
            return *a;
        case F_INT * 16 + K_UINT:
            return a->u > (uint64_t) INT64_MAX? cel_verr (ev, AUTHZ_CEL_EEVAL, "range error converting %llu to int", (unsigned long long) a->u): cel_vint ((int64_t) a->u);
        case F_INT * 16 + K_DOUBLE:
            if (isnan (a->d) || a->d <= -9223372036854775808.0 || a->d >= 9223372036854775808.0)
                return cel_verr (ev, AUTHZ_CEL_EEVAL, "range error converting double to int");
            return cel_vint ((int64_t) a->d);
        case F_INT * 16 + K_STRING:
            if (!s_parse_int_text (a->s.p, a->s.n, true, &i, &u))
                return cel_verr (ev, AUTHZ_CEL_EEVAL, "cannot convert string to int");
            return cel_vint (i);
        case F_INT * 16 + K_TIMESTAMP:
            return cel_vint (a->ts.sec);
        case F_UINT * 16 + K_INT:
            return a->i < 0? cel_verr (ev, AUTHZ_CEL_EEVAL, "range error converting %lld to uint", (long long) a->i): cel_vuint ((uint64_t) a->i);
        case F_UINT * 16 + K_DOUBLE:
            if (isnan (a->d) || a->d < 0 || a->d >= 18446744073709551616.0)
                return cel_verr (ev, AUTHZ_CEL_EEVAL, "range error converting double to uint");
            return cel_vuint ((uint64_t) a->d);
        case F_UINT * 16 + K_STRING:
            if (!s_parse_int_text (a->s.p, a->s.n, false, &i, &u))
                return cel_verr (ev, AUTHZ_CEL_EEVAL, "cannot convert string to uint");
            return cel_vuint (u);
        case F_DOUBLE * 16 + K_INT: return cel_vdouble ((double) a->i);
        case F_DOUBLE * 16 + K_UINT: return cel_vdouble ((double) a->u);
        case F_DOUBLE * 16 + K_STRING: {
            char *end;
            if (a->s.n == 0 || a->s.n > 400 || isspace ((unsigned char) a->s.p [0]) || memchr (a->s.p, 0, a->s.n))
                return cel_verr (ev, AUTHZ_CEL_EEVAL, "cannot convert string to double");
            errno = 0;
            double d = strtod (a->s.p, &end);
            if (end != a->s.p + a->s.n || (errno == ERANGE && isinf (d)))
                return cel_verr (ev, AUTHZ_CEL_EEVAL, "cannot convert string to double");
            return cel_vdouble (d);
        }
        case F_STRING * 16 + K_INT: snprintf (buf, sizeof buf, "%lld", (long long) a->i); break;
        case F_STRING * 16 + K_UINT: snprintf (buf, sizeof buf, "%llu", (unsigned long long) a->u); break;
        case F_STRING * 16 + K_DOUBLE: s_fmt_double (a->d, true, buf, sizeof buf); break;
        case F_STRING * 16 + K_BOOL: snprintf (buf, sizeof buf, "%s", a->b? "true": "false"); break;
        case F_STRING * 16 + K_TIMESTAMP: s_fmt_timestamp (a, buf, sizeof buf); break;
        case F_STRING * 16 + K_DURATION: {
            double secs = (double) (a->dur / S_NS) + (double) (a->dur % S_NS) / 1e9;
            s_fmt_double (secs, false, buf, sizeof buf - 1);
            strcat (buf, "s");
            break;
        }
        case F_STRING * 16 + K_BYTES:
            if (!s_utf8_valid (a->s.p, a->s.n))
                return cel_verr (ev, AUTHZ_CEL_EEVAL, "invalid UTF-8 in bytes, cannot convert to string");
            return cel_vstr (ev, K_STRING, a->s.p, a->s.n);
        case F_BYTES * 16 + K_STRING:
            return cel_vstr (ev, K_BYTES, a->s.p, a->s.n);
        case F_BOOL * 16 + K_STRING: {
            static const char *yes [] = {"1", "t", "T", "TRUE", "true", "True"};
            static const char *no [] = {"0", "f", "F", "FALSE", "false", "False"};
            for (int k = 0; k < 6; k++) {
                if (strlen (yes [k]) == a->s.n && !memcmp (yes [k], a->s.p, a->s.n))
                    return cel_vbool (true);
                if (strlen (no [k]) == a->s.n && !memcmp (no [k], a->s.p, a->s.n))
                    return cel_vbool (false);
            }
            return cel_verr (ev, AUTHZ_CEL_EEVAL, "cannot convert string to bool");
        }
        case F_DURATION * 16 + K_STRING:
            if (!cel_parse_duration (a->s.p, a->s.n, &i))
                return cel_verr (ev, AUTHZ_CEL_EEVAL, "invalid duration string");
            return cel_vdur (i);
        case F_TIMESTAMP * 16 + K_STRING: {
            cel_val_t t;
            if (!cel_parse_rfc3339 (a->s.p, a->s.n, &t))
                return cel_verr (ev, AUTHZ_CEL_EEVAL, "invalid timestamp string");
            return t;
        }
        case F_TIMESTAMP * 16 + K_INT: {
            if (a->i < S_TS_MIN || a->i > S_TS_MAX)
                return cel_verr (ev, AUTHZ_CEL_EEVAL, "timestamp out of range");
            cel_val_t t = {.k = K_TIMESTAMP};
            t.ts.sec = a->i;
            return t;
        }
        default:
            return cel_nooverload (ev, fn);
    }
    return cel_vstr (ev, K_STRING, buf, strlen (buf));
}

//  matches(): the node's precompiled pattern, or compile one now.
static cel_val_t
s_matches (cel_eval_t *ev, const cel_node_t *n, const cel_val_t *s, const cel_val_t *pat)
{
    //  POSIX matchers are not linear-time as RE2 is: bound the subject
    if (s->s.n > AUTHZ_CEL_MAX_REGEX_SUBJECT)
        return cel_vlimit (ev, "string too long for matches()");
    if (!cel_charge (ev, 1 + (s->s.n + pat->s.n) / 16))
        return ev->abort_val;
    if (n->re)
        return s_re_charge (ev, &n->re_info, s->s.n)
             ? cel_vbool (s_re_match (n->re, s->s.p, s->s.n)): ev->abort_val;
    regex_t re;
    cel_re_info_t info;
    char msg [CEL_MAX_ERRMSG];
    if (cel_re_compile (pat->s.p, pat->s.n, &re, &info, ev, s->s.n, msg, sizeof msg))
        return ev->abort? ev->abort_val: cel_verr (ev, AUTHZ_CEL_EEVAL, "%s", msg);
    bool m = s_re_match (&re, s->s.p, s->s.n);
    regfree (&re);
    return cel_vbool (m);
}

//  list[index] or map[key].
static cel_val_t
s_index (cel_eval_t *ev, const cel_val_t *c, const cel_val_t *k)
{
    if (c->k == K_MAP) {
        ssize_t j = cel_map_find (ev, c->map, k);
        if (j < 0)
            return cel_verr (ev, AUTHZ_CEL_EEVAL, "no such key");
        return c->map->vals [j];
    }
    if (c->k != K_LIST || !s_is_num (k))
        return cel_nooverload (ev, F_INDEX);
    int64_t i;
    if (k->k == K_INT)
        i = k->i;
    else
    if (k->k == K_UINT)
        i = k->u > (uint64_t) INT64_MAX? -1: (int64_t) k->u;
    else {
        if (!(k->d >= -9.2e18 && k->d <= 9.2e18) || k->d != floor (k->d))
            return cel_verr (ev, AUTHZ_CEL_EEVAL, "unsupported index value");
        i = (int64_t) k->d;
    }
    if (i < 0 || (uint64_t) i >= c->list->n)
        return cel_verr (ev, AUTHZ_CEL_EEVAL, "index out of bounds: %lld", (long long) i);
    return c->list->items [i];
}

//  Apply a function or operator to evaluated arguments (no errors or
//  unknowns among them).
cel_val_t
cel_apply (cel_eval_t *ev, const cel_node_t *n, const cel_val_t *a)
{
    int fn = n->fn, c, r;
    switch (fn) {
        case F_ADD: case F_SUB: case F_MUL: case F_DIV: case F_MOD:
            return s_arith (ev, fn, &a [0], &a [1]);
        case F_NEG:
            if (a [0].k == K_INT)
                return a [0].i == INT64_MIN? cel_verr (ev, AUTHZ_CEL_EEVAL, "integer overflow"): cel_vint (-a [0].i);
            if (a [0].k == K_DOUBLE)
                return cel_vdouble (-a [0].d);
            return cel_nooverload (ev, fn);
        case F_NOT:
            return a [0].k == K_BOOL? cel_vbool (!a [0].b): cel_nooverload (ev, fn);
        case F_EQ: case F_NE: {
            bool eq = s_equal (ev, &a [0], &a [1]);
            return ev->abort? ev->abort_val: cel_vbool (fn == F_EQ? eq: !eq);
        }
        case F_LT: case F_LE: case F_GT: case F_GE:
            r = s_compare (&a [0], &a [1], &c);
            if (r == 1)
                return cel_nooverload (ev, fn);
            if (r == 2)
                return cel_vbool (false);
            return cel_vbool (fn == F_LT? c < 0: fn == F_LE? c <= 0: fn == F_GT? c > 0: c >= 0);
        case F_IN:
            if (a [1].k == K_MAP) {
                ssize_t j = cel_map_find (ev, a [1].map, &a [0]);
                return ev->abort? ev->abort_val: cel_vbool (j >= 0);
            }
            if (a [1].k == K_LIST) {
                if (!cel_charge (ev, a [1].list->n))
                    return ev->abort_val;
                for (size_t i = 0; i < a [1].list->n && !ev->abort; i++)
                    if (s_equal (ev, &a [0], &a [1].list->items [i]))
                        return cel_vbool (true);
                return ev->abort? ev->abort_val: cel_vbool (false);
            }
            return cel_nooverload (ev, fn);
        case F_INDEX:
            return s_index (ev, &a [0], &a [1]);
        case F_SIZE:
            switch (a [0].k) {
                case K_STRING: {
                    int64_t cps = 0;
                    cel_charge (ev, a [0].s.n / 16);
                    for (size_t i = 0; i < a [0].s.n; i++)
                        cps += ((unsigned char) a [0].s.p [i] & 0xC0) != 0x80;
                    return cel_vint (cps);
                }
                case K_BYTES: return cel_vint ((int64_t) a [0].s.n);
                case K_LIST: return cel_vint ((int64_t) a [0].list->n);
                case K_MAP: return cel_vint ((int64_t) a [0].map->n);
                default: return cel_nooverload (ev, fn);
            }
        case F_CONTAINS: case F_STARTS: case F_ENDS: {
            if (a [0].k != K_STRING || a [1].k != K_STRING)
                return cel_nooverload (ev, fn);
            const cel_val_t *s = &a [0], *t = &a [1];
            if (!cel_charge (ev, (s->s.n + t->s.n) / 16))
                return ev->abort_val;
            if (t->s.n > s->s.n)
                return cel_vbool (false);
            if (fn == F_STARTS)
                return cel_vbool (!memcmp (s->s.p, t->s.p, t->s.n));
            if (fn == F_ENDS)
                return cel_vbool (!memcmp (s->s.p + s->s.n - t->s.n, t->s.p, t->s.n));
            return cel_vbool (t->s.n == 0 || memmem (s->s.p, s->s.n, t->s.p, t->s.n) != NULL);
        }
        case F_MATCHES:
            if (a [0].k != K_STRING || a [1].k != K_STRING)
                return cel_nooverload (ev, fn);
            return s_matches (ev, n, &a [0], &a [1]);
        case F_INT: case F_UINT: case F_DOUBLE: case F_STRING: case F_BYTES:
        case F_BOOL: case F_DURATION: case F_TIMESTAMP:
            return s_convert (ev, fn, &a [0]);
        case F_DYN:
            return a [0];
        case F_IPADDRESS: {
            if (a [0].k != K_STRING)
                return cel_nooverload (ev, fn);
            cel_ip_t *ip = cel_ealloc (ev, sizeof *ip);
            if (!ip)
                return ev->abort_val;
            if (!cel_parse_ip (a [0].s.p, a [0].s.n, ip, &ev->arena))
                return cel_verr (ev, AUTHZ_CEL_EEVAL, "ParseAddr: unable to parse IP");
            cel_val_t v = {.k = K_IP};
            v.ip = ip;
            return v;
        }
        case F_IN_CIDR:
            if (a [0].k != K_IP || a [1].k != K_STRING)
                return cel_nooverload (ev, fn);
            r = s_ip_in_cidr (a [0].ip, a [1].s.p, a [1].s.n, &ev->arena);
            if (r < 0)
                return cel_verr (ev, AUTHZ_CEL_EEVAL, "'%.64s' is a malformed CIDR string", a [1].s.p);
            return cel_vbool (r == 1);
        default:
            if (fn >= F_FULLYEAR && fn <= F_MILLIS) {
                bool dur_ok = fn >= F_HOURS && n->nargs == 1;
                if (!(a [0].k == K_TIMESTAMP || (a [0].k == K_DURATION && dur_ok))
                ||  (n->nargs == 2 && a [1].k != K_STRING))
                    return cel_nooverload (ev, fn);
                return s_time_accessor (ev, fn, &a [0], n->nargs == 2? &a [1]: NULL);
            }
            return cel_nooverload (ev, fn);
    }
}
