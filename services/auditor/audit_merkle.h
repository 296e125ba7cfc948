/*  audit_merkle.h — RFC 6962 / RFC 9162 Merkle tree hashing and proof
    verification, with no storage: what the auditor computes and what any
    verifier (sanctumctl, a test, a receipt checker) recomputes.

    Leaf hash  = SHA-256 (0x00 || entry bytes)
    Node hash  = SHA-256 (0x01 || left || right)
    The tree over n entries splits at k, the largest power of two below n
    (RFC 6962 section 2.1). The empty tree's root is SHA-256 of nothing.

    Everything here is pure and thread-safe. Errors: BUS_EINVAL for sizes
    or indexes that cannot be (index >= size, old_size > new_size, a path
    longer than AUDIT_PROOF_MAX); BUS_ECRYPTO when a proof does not verify.
*/
#ifndef AUDIT_MERKLE_H
#define AUDIT_MERKLE_H

#include <stddef.h>
#include <stdint.h>

#define AUDIT_HASH_LEN   32
#define AUDIT_PROOF_MAX  64       /* hashes in any proof of a tree below 2^63 entries */

typedef uint8_t audit_hash_t [AUDIT_HASH_LEN];

/*  SHA-256 (0x00 || data). */
void audit_leaf_hash (audit_hash_t out, const void *data, size_t len);

/*  SHA-256 (0x01 || left || right). out may alias left or right. */
void audit_node_hash (audit_hash_t out, const audit_hash_t left, const audit_hash_t right);

/*  The largest power of two strictly below n (n >= 2). */
uint64_t audit_split (uint64_t n);

/*  Check an inclusion proof (RFC 9162 2.1.3.2): leaf at index is in the
    tree of size whose root is root. Returns 0 or BUS_ECRYPTO (BUS_EINVAL
    for index >= size). */
int audit_verify_inclusion (uint64_t index, uint64_t size, const audit_hash_t leaf,
                            const audit_hash_t *path, size_t path_len, const audit_hash_t root);

/*  Check a consistency proof (RFC 9162 2.1.4.2): the tree of old_size with
    old_root is a prefix of the tree of new_size with new_root. For
    old_size == new_size the path must be empty and the roots equal.
    Returns 0, BUS_ECRYPTO, or BUS_EINVAL (old_size 0 or > new_size). */
int audit_verify_consistency (uint64_t old_size, uint64_t new_size,
                              const audit_hash_t old_root, const audit_hash_t new_root,
                              const audit_hash_t *path, size_t path_len);

/*  Lowercase hex of a hash into out (65 bytes with the NUL). */
void audit_hash_hex (char out [2 * AUDIT_HASH_LEN + 1], const audit_hash_t hash);

/*  A hash from 64 hex digits (either case): 0 or BUS_EINVAL. */
int audit_hash_from_hex (audit_hash_t out, const char *hex);

#endif
