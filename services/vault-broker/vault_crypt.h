/*  vault_crypt.h — the vault-broker's master keys and its sealed records.

    The keyring is one file (the [vault] master_key path; made on first
    start, mode 0600, when missing; or the systemd credential named by
    [vault] master_key_credential, read-only): a sequence of 32-byte keys, key id 1
    first. The newest key seals; every key opens what it sealed, so
    vault_keyring_rotate (a new random key appended: the file is rewritten
    under a temporary name, fsync'd and renamed into place) never rewrites
    a record: old records move to the new key on their next write. A file
    readable by group or others, empty, of a size that is not a multiple of
    32, or of more than VAULT_KEYS_MAX keys is refused.

    A sealed record (XChaCha20-Poly1305 IETF, libsodium):
        0x01 | key id (u32, big-endian) | nonce (24 bytes) | ciphertext ‖ tag (16)
    with associated data the record's own key (e.g. "connection/sheets"), so a
    record copied under another key does not open. A record that is
    truncated, tampered with, moved, or sealed with an unknown key id is an
    error (BUS_EINVAL for a short or unversioned record, BUS_ENOTFOUND for
    an unknown key id, BUS_ECRYPTO when the tag does not verify), never a
    wrong plaintext.

    Secrets: the keys and every opened plaintext live in sodium_malloc'd
    memory (guarded, locked, wiped when freed: vault_plain_free). The
    keyring never logs key material.

    Threads: a keyring is used from one thread (the reactor).
*/
#ifndef VAULT_CRYPT_H
#define VAULT_CRYPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VAULT_KEY_LEN    32
#define VAULT_KEYS_MAX   1024
#define VAULT_SEAL_OVERHEAD (1 + 4 + 24 + 16)

typedef struct vault_keyring_t vault_keyring_t;

/*  Load the keyring at path, making it (one random key, mode 0600) when the
    file does not exist. err (may be NULL) says what failed. Returns 0,
    BUS_EIO, BUS_EPERM (readable by others), BUS_EINVAL (bad size),
    BUS_ENOMEM. */
int vault_keyring_load (vault_keyring_t **out, const char *path, char *err, size_t err_len)
    __attribute__((warn_unused_result));

/*  Load the keyring from the systemd credential name
    ($CREDENTIALS_DIRECTORY/<name>, e.g. from LoadCredentialEncrypted=):
    the same format, never made nor written (vault_keyring_rotate answers
    BUS_EPERM: append a key to the credential and restart instead). A name
    with a slash, or no CREDENTIALS_DIRECTORY, is BUS_EINVAL; else as
    vault_keyring_load (a missing file is BUS_EIO). */
int vault_keyring_load_credential (vault_keyring_t **out, const char *name, char *err, size_t err_len)
    __attribute__((warn_unused_result));

/*  True for a keyring from a credential (read-only). */
bool vault_keyring_readonly (vault_keyring_t *self);

void vault_keyring_destroy (vault_keyring_t **self_p);

/*  The id of the key that seals now (the newest), and how many keys. */
uint32_t vault_keyring_current (vault_keyring_t *self);

/*  Append a new random key and make it current (the file first: on
    failure nothing changes). Returns 0, BUS_EIO, BUS_EFULL (VAULT_KEYS_MAX), BUS_EPERM (a
    credential). */
int vault_keyring_rotate (vault_keyring_t *self, char *err, size_t err_len)
    __attribute__((warn_unused_result));

/*  Seal len bytes of plain under the current key, ad (ad_len bytes) as
    associated data: *out malloc'd (VAULT_SEAL_OVERHEAD + len bytes). */
int vault_seal (vault_keyring_t *self, const void *ad, size_t ad_len,
                const void *plain, size_t len, uint8_t **out, size_t *out_len)
    __attribute__((warn_unused_result));

/*  Open a sealed record: *plain sodium_malloc'd (len + 1 bytes, NUL after
    the plaintext; free with vault_plain_free), *key_id the key that sealed
    it (may be NULL). Errors above. */
int vault_open (vault_keyring_t *self, const void *ad, size_t ad_len,
                const uint8_t *sealed, size_t sealed_len,
                uint8_t **plain, size_t *len, uint32_t *key_id)
    __attribute__((warn_unused_result));

/*  The key id a sealed record names (0 when too short to say). */
uint32_t vault_sealed_key_id (const uint8_t *sealed, size_t sealed_len);

/*  Wipe and free an opened plaintext; accepts NULL, nulls the pointer. */
void vault_plain_free (uint8_t **plain_p);

/*  A key derived from the first master key for purpose (up to 8
    characters, e.g. "tokenmac"): stable across rotations. */
void vault_keyring_derive (vault_keyring_t *self, const char *purpose, uint8_t out [VAULT_KEY_LEN]);

#endif
