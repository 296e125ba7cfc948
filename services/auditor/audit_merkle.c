/*  audit_merkle.c — RFC 6962 hashing and the RFC 9162 verification
    algorithms, written from the RFC's own steps. */
#include "audit_merkle.h"
#include "bus_error.h"

#include <sodium.h>
#include <string.h>

void
audit_leaf_hash (audit_hash_t out, const void *data, size_t len)
{
    crypto_hash_sha256_state st;
    static const uint8_t prefix = 0x00;
    crypto_hash_sha256_init (&st);
    crypto_hash_sha256_update (&st, &prefix, 1);
    crypto_hash_sha256_update (&st, data, len);
    crypto_hash_sha256_final (&st, out);
}

void
audit_node_hash (audit_hash_t out, const audit_hash_t left, const audit_hash_t right)
{
    uint8_t buf [1 + 2 * AUDIT_HASH_LEN];
    buf [0] = 0x01;
    memcpy (buf + 1, left, AUDIT_HASH_LEN);
    memcpy (buf + 1 + AUDIT_HASH_LEN, right, AUDIT_HASH_LEN);
    crypto_hash_sha256 (out, buf, sizeof buf);
}

uint64_t
audit_split (uint64_t n)
{
    /* the highest bit of n - 1: for n = 8 that is 4, for n = 9 it is 8 */
    return (uint64_t) 1 << (63 - __builtin_clzll (n - 1));
}

int
audit_verify_inclusion (uint64_t index, uint64_t size, const audit_hash_t leaf,
                        const audit_hash_t *path, size_t path_len, const audit_hash_t root)
{
    if (index >= size || path_len > AUDIT_PROOF_MAX)
        return BUS_EINVAL;
    uint64_t fn = index, sn = size - 1;
    audit_hash_t r;
    memcpy (r, leaf, AUDIT_HASH_LEN);
    for (size_t i = 0; i < path_len; i++) {
        if (sn == 0)
            return BUS_ECRYPTO;         /* a path longer than the tree is deep */
        if ((fn & 1) || fn == sn) {
            audit_node_hash (r, path [i], r);
            while (!(fn & 1) && fn != 0) {
                fn >>= 1;
                sn >>= 1;
            }
        }
        else
            audit_node_hash (r, r, path [i]);
        fn >>= 1;
        sn >>= 1;
    }
    return sn == 0 && sodium_memcmp (r, root, AUDIT_HASH_LEN) == 0 ? 0 : BUS_ECRYPTO;
}

int
audit_verify_consistency (uint64_t old_size, uint64_t new_size,
                          const audit_hash_t old_root, const audit_hash_t new_root,
                          const audit_hash_t *path, size_t path_len)
{
    if (old_size == 0 || old_size > new_size || path_len > AUDIT_PROOF_MAX)
        return BUS_EINVAL;
    if (old_size == new_size)
        return path_len == 0 && sodium_memcmp (old_root, new_root, AUDIT_HASH_LEN) == 0 ? 0 : BUS_ECRYPTO;
    if (path_len == 0)
        return BUS_ECRYPTO;
    /* step 2: when old_size is a power of two its root starts the path */
    const audit_hash_t *first = path;
    size_t from = 0;
    if ((old_size & (old_size - 1)) == 0)
        first = (const audit_hash_t *) old_root;
    else
        from = 1;
    uint64_t fn = old_size - 1, sn = new_size - 1;
    while (fn & 1) {
        fn >>= 1;
        sn >>= 1;
    }
    audit_hash_t fr, sr;
    memcpy (fr, *first, AUDIT_HASH_LEN);
    memcpy (sr, *first, AUDIT_HASH_LEN);
    for (size_t i = from; i < path_len; i++) {
        if (sn == 0)
            return BUS_ECRYPTO;
        if ((fn & 1) || fn == sn) {
            audit_node_hash (fr, path [i], fr);
            audit_node_hash (sr, path [i], sr);
            while (!(fn & 1) && fn != 0) {
                fn >>= 1;
                sn >>= 1;
            }
        }
        else
            audit_node_hash (sr, sr, path [i]);
        fn >>= 1;
        sn >>= 1;
    }
    return sn == 0 && sodium_memcmp (fr, old_root, AUDIT_HASH_LEN) == 0
        && sodium_memcmp (sr, new_root, AUDIT_HASH_LEN) == 0 ? 0 : BUS_ECRYPTO;
}

void
audit_hash_hex (char out [2 * AUDIT_HASH_LEN + 1], const audit_hash_t hash)
{
    sodium_bin2hex (out, 2 * AUDIT_HASH_LEN + 1, hash, AUDIT_HASH_LEN);
}

int
audit_hash_from_hex (audit_hash_t out, const char *hex)
{
    size_t n = 0;
    const char *end = NULL;
    if (!hex || strlen (hex) != 2 * AUDIT_HASH_LEN
        || sodium_hex2bin (out, AUDIT_HASH_LEN, hex, 2 * AUDIT_HASH_LEN, NULL, &n, &end) != 0
        || n != AUDIT_HASH_LEN || *end)
        return BUS_EINVAL;
    return 0;
}
