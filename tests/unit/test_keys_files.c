/*  test_keys_files.c — unit tests for the key files on disk (bus_keys).

    - what keygen writes: the public cert 0644 and the secret 0600 in a
      keys_dir made 0700; the allow-list directory 0755 with 0644 files
      holding no secret (a container's uid reads them bind-mounted, see
      docker-compose.yml);
    - the key lookup under systemd: the unit sets keys_dir to %d, the
      daemon's credentials directory ($CREDENTIALS_DIRECTORY), where
      LoadCredential= put read-only copies of its secret cert and every
      public cert. The daemon finds its own cert and its peers' public keys
      there through the config's environment override, writes nothing into
      it, and finds no key (a clear NULL) when a credential is missing or
      the directory arrived empty;
    - bus_credential_path: a secret a unit delivers by name (the
      ciba-broker's ciba-oidc-client.secret, the vault's master keyring)
      is $CREDENTIALS_DIRECTORY/NAME; a name with a slash, ".", "..", an
      empty one, or no $CREDENTIALS_DIRECTORY is refused with a message.
*/
#include <dirent.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "bus_config.h"
#include "bus_error.h"
#include "bus_keys.h"

static char s_dir [64];

static int
s_setup (void **state)
{
    snprintf (s_dir, sizeof s_dir, "/tmp/sanctum-keys-XXXXXX");
    assert_non_null (mkdtemp (s_dir));
    return 0;
}

static int
s_teardown (void **state)
{
    char cmd [256];
    snprintf (cmd, sizeof cmd, "chmod -R u+rwx %s; rm -rf %s", s_dir, s_dir);
    assert_int_equal (system (cmd), 0);
    unsetenv ("CREDENTIALS_DIRECTORY");
    unsetenv ("SANCTUM_SANCTUM_KEYS_DIR");
    return 0;
}

/*  The permission bits of path (asserts it exists). */
static int
s_mode (const char *fmt, ...)
{
    char path [256];
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (path, sizeof path, fmt, ap);
    va_end (ap);
    struct stat st;
    assert_int_equal (stat (path, &st), 0);
    return st.st_mode & 07777;
}

/*  Entries in dir, but . and .. */
static int
s_count (const char *dir)
{
    DIR *d = opendir (dir);
    assert_non_null (d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir (d)))
        if (strcmp (e->d_name, ".") && strcmp (e->d_name, ".."))
            n++;
    closedir (d);
    return n;
}

/*  Copy src to dst with mode, as LoadCredential= does. */
static void
s_copy (const char *src, const char *dst, mode_t mode)
{
    FILE *in = fopen (src, "rb");
    assert_non_null (in);
    FILE *out = fopen (dst, "wb");
    assert_non_null (out);
    char buf [4096];
    size_t n;
    while ((n = fread (buf, 1, sizeof buf, in)) > 0)
        assert_int_equal (fwrite (buf, 1, n, out), n);
    fclose (in);
    assert_int_equal (fclose (out), 0);
    assert_int_equal (chmod (dst, mode), 0);
}

/*  What keygen (bus_keys_load with create, then bus_allow_add) leaves on
    disk: public readable, secret private, allow-list public only. */
static void
test_keygen_modes (void **state)
{
    char keys [128], allow [128], path [256];
    snprintf (keys, sizeof keys, "%s/keys", s_dir);
    snprintf (allow, sizeof allow, "%s/keys/allow", s_dir);
    mode_t old = umask (077);       /* the strictest a caller may have */
    zcert_t *cert = bus_keys_load (keys, "authz", true);
    assert_non_null (cert);
    assert_int_equal (bus_allow_add (allow, "authz", zcert_public_txt (cert), "svc:authz"), 0);
    umask (old);
    assert_int_equal (s_mode ("%s", keys), 0700);
    assert_int_equal (s_mode ("%s/authz.key", keys), 0644);
    assert_int_equal (s_mode ("%s/authz.key_secret", keys), 0600);
    assert_int_equal (s_mode ("%s", allow), 0755);
    assert_int_equal (s_mode ("%s/authz.key", allow) & 0444, 0444);

    /* the public and allow-list files hold no secret key */
    const char *pub [] = { "authz.key", "allow/authz.key" };
    for (size_t i = 0; i < 2; i++) {
        snprintf (path, sizeof path, "%s/%s", keys, pub [i]);
        FILE *f = fopen (path, "r");
        assert_non_null (f);
        char text [2048] = "";
        size_t n = fread (text, 1, sizeof text - 1, f);
        text [n] = 0;
        fclose (f);
        assert_null (strstr (text, "secret-key"));
        assert_non_null (strstr (text, zcert_public_txt (cert)));
    }
    /* loads back the same pair */
    zcert_t *again = bus_keys_load (keys, "authz", false);
    assert_non_null (again);
    assert_string_equal (zcert_secret_txt (again), zcert_secret_txt (cert));
    zcert_destroy (&again);
    zcert_destroy (&cert);
}

/*  The daemon's lookup through keys_dir = $CREDENTIALS_DIRECTORY. */
static void
test_credentials_directory (void **state)
{
    char keys [128], creds [128], src [256], dst [256];
    snprintf (keys, sizeof keys, "%s/etc-keys", s_dir);
    snprintf (creds, sizeof creds, "%s/credentials/sanctum-authz.service", s_dir);
    const char *names [] = { "authz", "auditor", "vault-broker" };
    char pub [3][BUS_KEY_Z85_LEN + 1];
    for (int i = 0; i < 3; i++) {
        zcert_t *c = bus_keys_load (keys, names [i], true);
        assert_non_null (c);
        memcpy (pub [i], zcert_public_txt (c), sizeof pub [i]);
        zcert_destroy (&c);
    }
    /* what systemd puts there for sanctum-authz: its own secret and every
       public cert, read-only, in a directory the daemon cannot write */
    snprintf (dst, sizeof dst, "%s/credentials", s_dir);
    assert_int_equal (mkdir (dst, 0700), 0);
    assert_int_equal (mkdir (creds, 0700), 0);
    for (int i = 0; i < 3; i++) {
        snprintf (src, sizeof src, "%s/%s.key", keys, names [i]);
        snprintf (dst, sizeof dst, "%s/%s.key", creds, names [i]);
        s_copy (src, dst, 0400);
    }
    snprintf (src, sizeof src, "%s/authz.key_secret", keys);
    snprintf (dst, sizeof dst, "%s/authz.key_secret", creds);
    s_copy (src, dst, 0400);
    assert_int_equal (chmod (creds, 0500), 0);

    /* Environment=SANCTUM_SANCTUM_KEYS_DIR=%d, as the shipped units say */
    setenv ("CREDENTIALS_DIRECTORY", creds, 1);
    setenv ("SANCTUM_SANCTUM_KEYS_DIR", getenv ("CREDENTIALS_DIRECTORY"), 1);
    bus_config_t *config = NULL;
    char err [256];
    assert_int_equal (bus_config_load (&config, NULL, err, sizeof err), 0);
    const char *keys_dir = bus_config_str (config, "sanctum", "keys_dir");
    assert_string_equal (keys_dir, creds);

    zcert_t *own = bus_keys_load (keys_dir, "authz", false);
    assert_non_null (own);
    assert_string_equal (zcert_public_txt (own), pub [0]);
    zcert_destroy (&own);
    char peer [BUS_KEY_Z85_LEN + 1];
    assert_int_equal (bus_keys_public (keys_dir, "auditor", peer), 0);
    assert_string_equal (peer, pub [1]);
    assert_int_equal (bus_keys_public (keys_dir, "vault-broker", peer), 0);
    assert_string_equal (peer, pub [2]);
    /* a peer whose cert was not loaded: not found, no guess */
    assert_int_equal (bus_keys_public (keys_dir, "telemetry", peer), BUS_ENOTFOUND);
    /* another daemon's secret was not delivered: no cert, and nothing is
       generated into the credentials directory (create is false) */
    assert_null (bus_keys_load (keys_dir, "vault-broker", false));
    assert_int_equal (s_count (creds), 4);
    bus_config_destroy (&config);
}

/*  Credentials that arrive as an empty directory (as in some containers):
    the daemon finds no key, says so, and creates none. */
static void
test_credentials_empty (void **state)
{
    char creds [128];
    snprintf (creds, sizeof creds, "%s/empty", s_dir);
    assert_int_equal (mkdir (creds, 0500), 0);
    setenv ("SANCTUM_SANCTUM_KEYS_DIR", creds, 1);
    bus_config_t *config = NULL;
    char err [256];
    assert_int_equal (bus_config_load (&config, NULL, err, sizeof err), 0);
    const char *keys_dir = bus_config_str (config, "sanctum", "keys_dir");
    assert_null (bus_keys_load (keys_dir, "authz", false));
    char peer [BUS_KEY_Z85_LEN + 1];
    assert_int_equal (bus_keys_public (keys_dir, "authz", peer), BUS_ENOTFOUND);
    assert_int_equal (s_count (creds), 0);
    bus_config_destroy (&config);
}

/*  A credential found by name, and the names and settings refused. */
static void
test_credential_path (void **state)
{
    char path [256], err [256] = "", creds [128];
    snprintf (creds, sizeof creds, "%s/credentials", s_dir);
    assert_int_equal (mkdir (creds, 0700), 0);
    unsetenv ("CREDENTIALS_DIRECTORY");
    assert_int_equal (bus_credential_path (path, sizeof path, "ciba-oidc-client.secret", "client secret", err,
                                           sizeof err), BUS_EINVAL);
    assert_non_null (strstr (err, "CREDENTIALS_DIRECTORY is not set"));
    setenv ("CREDENTIALS_DIRECTORY", creds, 1);
    const char *bad [] = { "", ".", "..", "../etc/shadow", "a/b" };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++) {
        err [0] = 0;
        assert_int_equal (bus_credential_path (path, sizeof path, bad [i], "client secret", err, sizeof err),
                          BUS_EINVAL);
        assert_non_null (strstr (err, "not a file name"));
    }
    assert_int_equal (bus_credential_path (path, sizeof path, NULL, "client secret", err, sizeof err), BUS_EINVAL);
    char tiny [16];
    assert_int_equal (bus_credential_path (tiny, sizeof tiny, "ciba-oidc-client.secret", "client secret", err,
                                           sizeof err), BUS_EINVAL);
    /* the file systemd wrote is where the path says */
    assert_int_equal (bus_credential_path (path, sizeof path, "ciba-oidc-client.secret", "client secret", err,
                                           sizeof err), 0);
    char want [256];
    snprintf (want, sizeof want, "%s/ciba-oidc-client.secret", creds);
    assert_string_equal (path, want);
    FILE *f = fopen (want, "w");
    assert_non_null (f);
    fputs ("s3cret\n", f);
    fclose (f);
    f = fopen (path, "r");
    char line [32] = "";
    assert_non_null (f);
    assert_non_null (fgets (line, sizeof line, f));
    fclose (f);
    assert_string_equal (line, "s3cret\n");
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test_setup_teardown (test_keygen_modes, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_credentials_directory, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_credentials_empty, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_credential_path, s_setup, s_teardown),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
