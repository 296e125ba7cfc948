/*  test_vault_crypt.c — the vault-broker's keyring and sealed records: the
    key file is made 0600 with one key and loads back the same; a record
    opens to its plaintext, and is refused (an error, never a wrong
    plaintext) when any byte is changed, when truncated to any length, when
    opened under another record's key (associated data), or when it names a
    key the keyring lacks; rotation appends a key (the file grows by 32
    bytes, a reload keeps both), old records still open under their key and
    new ones seal under the new key; a key file others can read, or of a
    bad size, is refused. A keyring from a systemd credential
    ($CREDENTIALS_DIRECTORY/<name>, mode 0400) loads the same keys, is
    never made nor written (rotation is refused, the file unchanged), and a
    missing credential, a name with a slash or no CREDENTIALS_DIRECTORY is
    an error.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>
#include <sodium.h>

#include "bus_error.h"
#include "vault_crypt.h"
#include "../support/test_service.h"

static char s_dir [64];
static char s_path [128];

static void
test_seal_open_tamper (void **state)
{
    vault_keyring_t *kr = NULL;
    char err [256] = "";
    assert_int_equal (vault_keyring_load (&kr, s_path, err, sizeof err), 0);
    struct stat st;
    assert_int_equal (stat (s_path, &st), 0);
    assert_int_equal (st.st_mode & 0777, 0600);
    assert_int_equal (st.st_size, 32);
    assert_int_equal (vault_keyring_current (kr), 1);
    const char *ad = "connection/sheets", *secret = "canary-5ecret-refresh-token";
    uint8_t *sealed = NULL;
    size_t len = 0;
    assert_int_equal (vault_seal (kr, ad, strlen (ad), secret, strlen (secret), &sealed, &len), 0);
    assert_int_equal (len, VAULT_SEAL_OVERHEAD + strlen (secret));
    assert_null (memmem (sealed, len, "canary", 6));
    uint8_t *plain = NULL;
    size_t plen = 0;
    uint32_t id = 0;
    assert_int_equal (vault_open (kr, ad, strlen (ad), sealed, len, &plain, &plen, &id), 0);
    assert_int_equal (plen, strlen (secret));
    assert_memory_equal (plain, secret, plen);
    assert_int_equal (id, 1);
    vault_plain_free (&plain);
    assert_null (plain);
    /* every byte changed: refused */
    for (size_t i = 0; i < len; i++) {
        sealed [i] ^= 0x01;
        int rc = vault_open (kr, ad, strlen (ad), sealed, len, &plain, &plen, NULL);
        assert_true (rc == BUS_ECRYPTO || rc == BUS_EINVAL || rc == BUS_ENOTFOUND);
        assert_null (plain);
        sealed [i] ^= 0x01;
    }
    /* every truncation: refused */
    for (size_t n = 0; n < len; n++) {
        int rc = vault_open (kr, ad, strlen (ad), sealed, n, &plain, &plen, NULL);
        assert_true (rc == BUS_ECRYPTO || rc == BUS_EINVAL);
        assert_null (plain);
    }
    /* moved under another key */
    assert_int_equal (vault_open (kr, "connection/gmail", 16, sealed, len, &plain, &plen, NULL), BUS_ECRYPTO);
    /* a key id the keyring lacks */
    sealed [4] = 9;
    assert_int_equal (vault_open (kr, ad, strlen (ad), sealed, len, &plain, &plen, NULL), BUS_ENOTFOUND);
    sealed [4] = 1;
    /* rotation: old opens, new seals under key 2, the file holds both */
    assert_int_equal (vault_keyring_rotate (kr, err, sizeof err), 0);
    assert_int_equal (vault_keyring_current (kr), 2);
    assert_int_equal (vault_open (kr, ad, strlen (ad), sealed, len, &plain, &plen, &id), 0);
    assert_int_equal (id, 1);
    vault_plain_free (&plain);
    uint8_t *sealed2 = NULL;
    size_t len2 = 0;
    assert_int_equal (vault_seal (kr, ad, strlen (ad), secret, strlen (secret), &sealed2, &len2), 0);
    assert_int_equal (vault_sealed_key_id (sealed2, len2), 2);
    uint8_t derived [32], derived2 [32];
    vault_keyring_derive (kr, "tokenmac", derived);
    vault_keyring_destroy (&kr);
    assert_int_equal (stat (s_path, &st), 0);
    assert_int_equal (st.st_size, 64);
    assert_int_equal (vault_keyring_load (&kr, s_path, err, sizeof err), 0);
    assert_int_equal (vault_keyring_current (kr), 2);
    vault_keyring_derive (kr, "tokenmac", derived2);
    assert_memory_equal (derived, derived2, 32);       /* stable across rotations */
    assert_int_equal (vault_open (kr, ad, strlen (ad), sealed, len, &plain, &plen, &id), 0);
    vault_plain_free (&plain);
    assert_int_equal (vault_open (kr, ad, strlen (ad), sealed2, len2, &plain, &plen, &id), 0);
    assert_int_equal (id, 2);
    vault_plain_free (&plain);
    vault_keyring_destroy (&kr);
    free (sealed);
    free (sealed2);
}

static void
test_bad_files (void **state)
{
    vault_keyring_t *kr = NULL;
    char err [256] = "";
    chmod (s_path, 0640);
    assert_int_equal (vault_keyring_load (&kr, s_path, err, sizeof err), BUS_EPERM);
    assert_non_null (strstr (err, "readable by others"));
    assert_null (kr);
    chmod (s_path, 0600);
    assert_int_equal (truncate (s_path, 33), 0);
    assert_int_equal (vault_keyring_load (&kr, s_path, err, sizeof err), BUS_EINVAL);
    assert_int_equal (truncate (s_path, 0), 0);
    assert_int_equal (vault_keyring_load (&kr, s_path, err, sizeof err), BUS_EINVAL);
    assert_null (kr);
}

static void
test_credential (void **state)
{
    char dir [128], path [192], err [256] = "";
    snprintf (dir, sizeof dir, "%s/creds", s_dir);
    assert_int_equal (mkdir (dir, 0700), 0);
    snprintf (path, sizeof path, "%s/vault-master.key", dir);
    uint8_t keys [64];
    randombytes_buf (keys, sizeof keys);
    FILE *f = fopen (path, "wb");
    assert_non_null (f);
    assert_int_equal (fwrite (keys, 1, sizeof keys, f), sizeof keys);
    fclose (f);
    chmod (path, 0400);
    vault_keyring_t *kr = NULL;
    unsetenv ("CREDENTIALS_DIRECTORY");
    assert_int_equal (vault_keyring_load_credential (&kr, "vault-master.key", err, sizeof err), BUS_EINVAL);
    assert_non_null (strstr (err, "CREDENTIALS_DIRECTORY"));
    setenv ("CREDENTIALS_DIRECTORY", dir, 1);
    assert_int_equal (vault_keyring_load_credential (&kr, "../master.key", err, sizeof err), BUS_EINVAL);
    assert_int_equal (vault_keyring_load_credential (&kr, "missing.key", err, sizeof err), BUS_EIO);
    assert_null (kr);
    struct stat st;
    snprintf (path, sizeof path, "%s/missing.key", dir);
    assert_int_not_equal (stat (path, &st), 0);              /* not made */
    snprintf (path, sizeof path, "%s/vault-master.key", dir);
    assert_int_equal (vault_keyring_load_credential (&kr, "vault-master.key", err, sizeof err), 0);
    assert_true (vault_keyring_readonly (kr));
    assert_int_equal (vault_keyring_current (kr), 2);
    /* sealed under the credential's second key, opened by a file keyring of the same bytes */
    const char *ad = "connection/x", *secret = "s3cret";
    uint8_t *sealed = NULL, *plain = NULL;
    size_t len = 0, plen = 0;
    assert_int_equal (vault_seal (kr, ad, strlen (ad), secret, strlen (secret), &sealed, &len), 0);
    assert_int_equal (vault_sealed_key_id (sealed, len), 2);
    assert_int_equal (vault_keyring_rotate (kr, err, sizeof err), BUS_EPERM);
    assert_non_null (strstr (err, "credential"));
    assert_int_equal (vault_keyring_current (kr), 2);
    assert_int_equal (stat (path, &st), 0);
    assert_int_equal (st.st_size, 64);                          /* unchanged */
    vault_keyring_destroy (&kr);
    char copy [192];
    snprintf (copy, sizeof copy, "%s/copy.key", s_dir);
    f = fopen (copy, "wb");
    assert_non_null (f);
    assert_int_equal (fwrite (keys, 1, sizeof keys, f), sizeof keys);
    fclose (f);
    chmod (copy, 0600);
    assert_int_equal (vault_keyring_load (&kr, copy, err, sizeof err), 0);
    assert_false (vault_keyring_readonly (kr));
    assert_int_equal (vault_open (kr, ad, strlen (ad), sealed, len, &plain, &plen, NULL), 0);
    assert_memory_equal (plain, secret, plen);
    vault_plain_free (&plain);
    free (sealed);
    vault_keyring_destroy (&kr);
    unsetenv ("CREDENTIALS_DIRECTORY");
}

int
main (void)
{
    if (sodium_init () < 0 || test_service_tmpdir (s_dir, sizeof s_dir, "sanctum-vault-crypt"))
        return 1;
    snprintf (s_path, sizeof s_path, "%s/master.key", s_dir);
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_seal_open_tamper),
        cmocka_unit_test (test_bad_files),
        cmocka_unit_test (test_credential),
    };
    int failed = cmocka_run_group_tests (tests, NULL, NULL);
    test_service_rmtree (s_dir);
    return test_service_summary (sizeof tests / sizeof tests [0], failed);
}
