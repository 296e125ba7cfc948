/*  test_config.c — unit tests for bus_config.

    Table-driven where it can be: the test reads bus_config_keys.def with
    its own X-macro, so checks over "every key" follow the table as keys
    are added. The few specific keys used (sanctum.data_dir, max_frame,
    rpc_retries, authz.rpc/policy) are the runtime's own.
*/
#include <ctype.h>
#include <limits.h>
#include <sys/stat.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "bus_config.h"
#include "bus_error.h"
#include "../support/test_service.h"

enum { T_STR, T_INT, T_BOOL, T_PATH };

typedef struct {
    const char *section, *key;
    int type;
    const char *def;
    long min, max;
    const char *help;
} key_t_;

static const key_t_ s_keys [] = {
#define BUS_CONFIG_KEY(section, key, type, def, min, max, help) \
    { #section, #key, T_##type, def, min, max, help },
#include "bus_config_keys.def"
#undef BUS_CONFIG_KEY
};
#define NKEYS (sizeof s_keys / sizeof s_keys [0])

static char s_dir [64];
static int s_skipped;           /* tests skipped, for the summary line */
static char s_path [128];


/*  Environment variable name of a key. */
static void
s_env_name (const key_t_ *k, char *name, size_t size)
{
    snprintf (name, size, "SANCTUM_%s_%s", k->section, k->key);
    for (char *p = name; *p; p++)
        *p = *p == '-'? '_': (char) toupper ((unsigned char) *p);
}


/*  Remove every SANCTUM_* variable of the table from the environment. */
static void
s_clear_env (void)
{
    for (size_t i = 0; i < NKEYS; i++) {
        char name [128];
        s_env_name (&s_keys [i], name, sizeof name);
        unsetenv (name);
    }
}


/*  Setup: a temporary directory, s_path a file in it, a clean
    environment. */
static int
s_setup (void **state)
{
    assert_int_equal (test_service_tmpdir (s_dir, sizeof s_dir, "test_config"), 0);
    snprintf (s_path, sizeof s_path, "%s/sanctum.ini", s_dir);
    s_clear_env ();
    return 0;
}


/*  Teardown: remove the directory and what is in it. */
static int
s_teardown (void **state)
{
    s_clear_env ();
    test_service_rmtree (s_dir);
    return 0;
}


/*  Write text to s_path. */
static void
s_write_file (const char *text)
{
    FILE *f = fopen (s_path, "w");
    assert_non_null (f);
    fputs (text, f);
    assert_int_equal (fclose (f), 0);
}


/*  Load s_path expecting BUS_ECONFIG with an error mentioning each of the
    NULL-terminated fragments. */
static void
s_expect_error (const char *text, ...)
{
    s_write_file (text);
    bus_config_t *cfg = (bus_config_t *) 1;
    char err [512] = "";
    assert_int_equal (bus_config_load (&cfg, s_path, err, sizeof err), BUS_ECONFIG);
    assert_null (cfg);
    va_list args;
    va_start (args, text);
    const char *frag;
    while ((frag = va_arg (args, const char *)))
        if (!strstr (err, frag))
            fail_msg ("error '%s' does not mention '%s'", err, frag);
    va_end (args);
}


static void
test_defaults (void **state)
{
    bus_config_t *cfg = NULL;
    char err [256] = "";
    assert_int_equal (bus_config_load (&cfg, NULL, err, sizeof err), 0);
    assert_non_null (cfg);
    for (size_t i = 0; i < NKEYS; i++) {
        const key_t_ *k = &s_keys [i];
        if (k->type == T_INT)
            assert_int_equal (bus_config_int (cfg, k->section, k->key),
                              strtol (k->def, NULL, 10));
        else
        if (k->type == T_STR || k->type == T_PATH)
            assert_string_equal (bus_config_str (cfg, k->section, k->key), k->def);
    }
    char *dir = bus_config_data_dir (cfg, "authz");
    char expect [256];
    snprintf (expect, sizeof expect, "%s/authz",
              bus_config_str (cfg, "sanctum", "data_dir"));
    assert_string_equal (dir, expect);
    free (dir);
    assert_null (bus_config_data_dir (cfg, "../etc"));
    assert_null (bus_config_data_dir (cfg, ""));
    bus_config_destroy (&cfg);
    assert_null (cfg);
    bus_config_destroy (&cfg);      /* NULL is fine */
}


static void
test_file_overrides (void **state)
{
    s_write_file ("# comment\n"
                  "; another comment\n"
                  "[sanctum]\n"
                  "max_frame = 2048   ; inline comment\n"
                  "data_dir=/srv/sanctum/\n"
                  "\n"
                  "[authz]\n"
                  "policy = /etc/sanctum/policy.json\n"
                  "[sanctum]\n"
                  "rpc_retries = 0\n");
    bus_config_t *cfg = NULL;
    char err [256] = "";
    assert_int_equal (bus_config_load (&cfg, s_path, err, sizeof err), 0);
    assert_int_equal (bus_config_int (cfg, "sanctum", "max_frame"), 2048);
    assert_string_equal (bus_config_str (cfg, "sanctum", "max_frame"), "2048");
    assert_int_equal (bus_config_int (cfg, "sanctum", "rpc_retries"), 0);
    assert_string_equal (bus_config_str (cfg, "authz", "policy"),
                         "/etc/sanctum/policy.json");
    char *dir = bus_config_data_dir (cfg, "vault");
    assert_string_equal (dir, "/srv/sanctum/vault");
    free (dir);
    /* Untouched keys keep their defaults */
    assert_string_equal (bus_config_str (cfg, "authz", "rpc"), "tcp://127.0.0.1:7111");
    bus_config_destroy (&cfg);

    /* A missing file at a given path is an error naming it */
    unlink (s_path);
    char err2 [256] = "";
    assert_int_equal (bus_config_load (&cfg, s_path, err2, sizeof err2), BUS_ECONFIG);
    assert_null (cfg);
    assert_non_null (strstr (err2, s_path));
}


static void
test_env_overrides_win (void **state)
{
    s_write_file ("[sanctum]\nmax_frame = 2048\n[authz]\nrpc = tcp://file:1\n");
    setenv ("SANCTUM_SANCTUM_MAX_FRAME", "4096", 1);
    setenv ("SANCTUM_AUTHZ_RPC", "tcp://env:2", 1);
    bus_config_t *cfg = NULL;
    char err [256] = "";
    assert_int_equal (bus_config_load (&cfg, s_path, err, sizeof err), 0);
    assert_int_equal (bus_config_int (cfg, "sanctum", "max_frame"), 4096);
    assert_string_equal (bus_config_str (cfg, "authz", "rpc"), "tcp://env:2");
    bus_config_destroy (&cfg);

    /* Every key of the table can be set from the environment */
    for (size_t i = 0; i < NKEYS; i++) {
        char name [128];
        s_env_name (&s_keys [i], name, sizeof name);
        if (s_keys [i].type == T_STR || s_keys [i].type == T_PATH)
            setenv (name, "from-env", 1);
        else
        if (s_keys [i].type == T_INT) {
            char num [32];
            snprintf (num, sizeof num, "%ld", s_keys [i].max);
            setenv (name, num, 1);
        }
        else
            setenv (name, "yes", 1);
    }
    assert_int_equal (bus_config_load (&cfg, NULL, err, sizeof err), 0);
    for (size_t i = 0; i < NKEYS; i++) {
        const key_t_ *k = &s_keys [i];
        if (k->type == T_STR || k->type == T_PATH)
            assert_string_equal (bus_config_str (cfg, k->section, k->key), "from-env");
        else
        if (k->type == T_INT)
            assert_int_equal (bus_config_int (cfg, k->section, k->key), k->max);
        else
            assert_true (bus_config_bool (cfg, k->section, k->key));
    }
    bus_config_destroy (&cfg);

    /* A bad environment value is an error naming the variable */
    setenv ("SANCTUM_SANCTUM_MAX_FRAME", "12abc", 1);
    assert_int_equal (bus_config_load (&cfg, NULL, err, sizeof err), BUS_ECONFIG);
    assert_null (cfg);
    assert_non_null (strstr (err, "SANCTUM_SANCTUM_MAX_FRAME"));
    s_clear_env ();
}


static void
test_unknown_key_names_line (void **state)
{
    s_expect_error ("[sanctum]\nmax_frame = 2048\nbogus = 1\n",
                    s_path, ":3", "bogus", "[sanctum]", NULL);
    s_expect_error ("# c\n\n\n[nosuch]\nrpc = x\n",
                    s_path, ":5", "[nosuch]", "rpc", NULL);
    s_expect_error ("max_frame = 2048\n", s_path, ":1", "max_frame", NULL);
    s_expect_error ("[sanctum]\nthis line has no equals sign\n",
                    s_path, ":2", "syntax", NULL);
    s_expect_error ("[sanctum]\nmax_frame = 2048\n  continued\n",
                    s_path, ":3", "indented", NULL);
    char line [400];
    snprintf (line, sizeof line, "[authz]\npolicy = %0300d\n", 0);
    s_expect_error (line, s_path, ":2", "longer", NULL);
}


static void
test_out_of_bounds (void **state)
{
    s_expect_error ("[sanctum]\n\nmax_frame = 10\n",
                    s_path, ":3", "max_frame", "out of bounds", "1024", NULL);
    s_expect_error ("[sanctum]\nmax_frame = 67108865\n",
                    s_path, ":2", "out of bounds", NULL);
    s_expect_error ("[sanctum]\nmax_frame = 2k\n", s_path, ":2", "not an integer", NULL);
    s_expect_error ("[sanctum]\nmax_frame =\n", s_path, ":2", "not an integer", NULL);
    s_expect_error ("[sanctum]\nmax_frame = 99999999999999999999999\n",
                    s_path, ":2", "not an integer", NULL);
    s_expect_error ("[sanctum]\nrpc_retries = -1\n", s_path, ":2", "rpc_retries", NULL);

    /* bus_config_set validates the same way and leaves the value alone */
    bus_config_t *cfg = NULL;
    char err [256] = "";
    assert_int_equal (bus_config_load (&cfg, NULL, err, sizeof err), 0);
    long before = bus_config_int (cfg, "sanctum", "max_frame");
    assert_int_equal (bus_config_set (cfg, "sanctum", "max_frame", "1", err,
                                      sizeof err), BUS_ECONFIG);
    assert_non_null (strstr (err, "max_frame"));
    assert_int_equal (bus_config_int (cfg, "sanctum", "max_frame"), before);
    assert_int_equal (bus_config_set (cfg, "sanctum", "nope", "1", err, sizeof err),
                      BUS_ECONFIG);
    assert_int_equal (bus_config_set (cfg, "authz", "policy", "a\nb", err, sizeof err),
                      BUS_ECONFIG);
    assert_int_equal (bus_config_set (cfg, "authz", "policy", "a ; b", err, sizeof err),
                      BUS_ECONFIG);
    assert_int_equal (bus_config_set (cfg, "authz", "policy", ";b", err, sizeof err),
                      BUS_ECONFIG);
    assert_int_equal (bus_config_set (cfg, "authz", "policy", " b", err, sizeof err),
                      BUS_ECONFIG);
    char big [200];
    memset (big, 'p', sizeof big - 1);
    big [sizeof big - 1] = 0;
    assert_int_equal (bus_config_set (cfg, "authz", "policy", big, err, sizeof err),
                      BUS_ECONFIG);
    assert_int_equal (bus_config_set (cfg, "sanctum", "max_frame", "+2048", err,
                                      sizeof err), 0);
    assert_string_equal (bus_config_str (cfg, "sanctum", "max_frame"), "2048");
    bus_config_destroy (&cfg);
}


/*  BOOL values, for every BOOL key of the table (skipped when the table
    has none). */
static void
test_bool_keys (void **state)
{
    const key_t_ *k = NULL;
    for (size_t i = 0; i < NKEYS && !k; i++)
        if (s_keys [i].type == T_BOOL)
            k = &s_keys [i];
    if (!k) {
        s_skipped++;
        skip ();
    }
    bus_config_t *cfg = NULL;
    char err [256] = "";
    assert_int_equal (bus_config_load (&cfg, NULL, err, sizeof err), 0);
    const char *yes [] = { "true", "YES", "on", "1" }, *no [] = { "false", "No", "off", "0" };
    for (int i = 0; i < 4; i++) {
        assert_int_equal (bus_config_set (cfg, k->section, k->key, yes [i], err, sizeof err), 0);
        assert_true (bus_config_bool (cfg, k->section, k->key));
        assert_string_equal (bus_config_str (cfg, k->section, k->key), "true");
        assert_int_equal (bus_config_set (cfg, k->section, k->key, no [i], err, sizeof err), 0);
        assert_false (bus_config_bool (cfg, k->section, k->key));
    }
    assert_int_equal (bus_config_set (cfg, k->section, k->key, "maybe", err, sizeof err),
                      BUS_ECONFIG);
    bus_config_destroy (&cfg);
}


static void
test_write_reload_round_trip (void **state)
{
    bus_config_t *cfg = NULL;
    char err [256] = "";
    assert_int_equal (bus_config_load (&cfg, NULL, err, sizeof err), 0);
    assert_int_equal (bus_config_set (cfg, "sanctum", "max_frame", "65536", err, sizeof err), 0);
    assert_int_equal (bus_config_set (cfg, "authz", "policy", "/p q/policy.json", err, sizeof err), 0);
    assert_int_equal (bus_config_set (cfg, "authz", "rpc", "tcp://10.0.0.1:9", err, sizeof err), 0);
    char longest [161];             /* the longest STR value still reloads */
    memset (longest, 'v', sizeof longest - 1);
    longest [sizeof longest - 1] = 0;
    assert_int_equal (bus_config_set (cfg, "telemetry", "http", longest, err, sizeof err), 0);
    /* paths absolute: a relative one would reload relative to the file
       (test_write_file_paths) */
    for (size_t i = 0; i < NKEYS; i++)
        if (s_keys [i].type == T_PATH && s_keys [i].def [0]) {
            char abs [64];
            snprintf (abs, sizeof abs, "/srv/%s", s_keys [i].key);
            assert_int_equal (bus_config_set (cfg, s_keys [i].section, s_keys [i].key, abs,
                                              err, sizeof err), 0);
        }

    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream (&text, &len);
    assert_non_null (mem);
    assert_int_equal (bus_config_write (cfg, mem), 0);
    fclose (mem);
    for (size_t i = 0; i < NKEYS; i++)
        assert_non_null (strstr (text, s_keys [i].help));
    s_write_file (text);
    free (text);

    bus_config_t *again = NULL;
    assert_int_equal (bus_config_load (&again, s_path, err, sizeof err), 0);
    for (size_t i = 0; i < NKEYS; i++) {
        const key_t_ *k = &s_keys [i];
        assert_string_equal (bus_config_str (again, k->section, k->key),
                             bus_config_str (cfg, k->section, k->key));
    }
    assert_int_equal (bus_config_int (again, "sanctum", "max_frame"), 65536);
    assert_string_equal (bus_config_str (again, "authz", "policy"), "/p q/policy.json");
    bus_config_destroy (&cfg);
    bus_config_destroy (&again);
}


/*  Relative paths in a file are relative to its folder, whatever the
    working directory; absolute ones and the environment's are kept. */
static void
test_paths_relative_to_file (void **state)
{
    char sub [160], conf [200], real [PATH_MAX], expect [PATH_MAX + 64], cwd [PATH_MAX];
    snprintf (sub, sizeof sub, "%s/sub", s_dir);
    assert_int_equal (mkdir (sub, 0700), 0);
    snprintf (conf, sizeof conf, "%s/sanctum.conf", sub);
    FILE *f = fopen (conf, "w");
    assert_non_null (f);
    fputs ("[sanctum]\ndata_dir = .\nkeys_dir = keys\nallow_dir = ././keys/allow\n"
           "[authz]\npolicy = ../policy.json\n", f);
    fclose (f);
    assert_non_null (realpath (sub, real));
    assert_non_null (getcwd (cwd, sizeof cwd));
    /* from elsewhere, by an absolute path, then from s_dir by a relative one */
    const char *from [] = { "/", s_dir };
    const char *path [] = { conf, "sub/sanctum.conf" };
    for (int i = 0; i < 2; i++) {
        assert_int_equal (chdir (from [i]), 0);
        bus_config_t *cfg = NULL;
        char err [256] = "";
        assert_int_equal (bus_config_load (&cfg, path [i], err, sizeof err), 0);
        assert_string_equal (bus_config_str (cfg, "sanctum", "data_dir"), real);
        snprintf (expect, sizeof expect, "%s/keys", real);
        assert_string_equal (bus_config_str (cfg, "sanctum", "keys_dir"), expect);
        snprintf (expect, sizeof expect, "%s/keys/allow", real);
        assert_string_equal (bus_config_str (cfg, "sanctum", "allow_dir"), expect);
        snprintf (expect, sizeof expect, "%s/../policy.json", real);
        assert_string_equal (bus_config_str (cfg, "authz", "policy"), expect);
        char *dir = bus_config_data_dir (cfg, "authz");
        snprintf (expect, sizeof expect, "%s/authz", real);
        assert_string_equal (dir, expect);
        free (dir);
        bus_config_destroy (&cfg);
    }
    /* absolute paths and the environment's are left alone; a default too */
    f = fopen (conf, "w");
    fputs ("[sanctum]\nkeys_dir = /etc/sanctum/keys\n", f);
    fclose (f);
    setenv ("SANCTUM_SANCTUM_ALLOW_DIR", "./from/env", 1);
    bus_config_t *cfg = NULL;
    char err [256] = "";
    assert_int_equal (bus_config_load (&cfg, conf, err, sizeof err), 0);
    assert_string_equal (bus_config_str (cfg, "sanctum", "keys_dir"), "/etc/sanctum/keys");
    assert_string_equal (bus_config_str (cfg, "sanctum", "allow_dir"), "./from/env");
    assert_string_equal (bus_config_str (cfg, "sanctum", "data_dir"), "./var");
    bus_config_destroy (&cfg);
    s_clear_env ();
    assert_int_equal (chdir (cwd), 0);
}


/*  bus_config_write_file writes paths relative to the new file's folder
    when under it: `sanctumctl init` in DIR makes DIR/var/sanctum.conf
    that works from anywhere, and the folder can move. */
static void
test_write_file_paths (void **state)
{
    char cwd [PATH_MAX], var [160], conf [200], real [PATH_MAX], expect [PATH_MAX + 64];
    assert_non_null (getcwd (cwd, sizeof cwd));
    assert_int_equal (chdir (s_dir), 0);
    snprintf (var, sizeof var, "%s/var", s_dir);
    assert_int_equal (mkdir (var, 0700), 0);
    snprintf (conf, sizeof conf, "%s/sanctum.conf", var);
    bus_config_t *cfg = NULL;
    char err [256] = "";
    assert_int_equal (bus_config_load (&cfg, NULL, err, sizeof err), 0);    /* ./var, ./var/keys ... */
    assert_int_equal (bus_config_set (cfg, "authz", "policy", "/etc/policy.json", err, sizeof err), 0);
    assert_int_equal (bus_config_write_file (cfg, "var/sanctum.conf"), 0);
    bus_config_destroy (&cfg);
    char text [16384] = "";
    FILE *f = fopen (conf, "r");
    assert_non_null (f);
    size_t n = fread (text, 1, sizeof text - 1, f);
    text [n] = 0;
    fclose (f);
    assert_non_null (strstr (text, "\ndata_dir = .\n"));
    assert_non_null (strstr (text, "\nkeys_dir = keys\n"));
    assert_non_null (strstr (text, "\nallow_dir = keys/allow\n"));
    assert_non_null (strstr (text, "\npolicy = /etc/policy.json\n"));
    /* read from elsewhere: the same folders */
    assert_int_equal (chdir ("/"), 0);
    assert_int_equal (bus_config_load (&cfg, conf, err, sizeof err), 0);
    assert_non_null (realpath (var, real));
    assert_string_equal (bus_config_str (cfg, "sanctum", "data_dir"), real);
    snprintf (expect, sizeof expect, "%s/keys/allow", real);
    assert_string_equal (bus_config_str (cfg, "sanctum", "allow_dir"), expect);
    /* a path outside the folder is written absolute */
    assert_int_equal (bus_config_set (cfg, "sanctum", "keys_dir", "/srv/keys", err, sizeof err), 0);
    assert_int_equal (bus_config_write_file (cfg, conf), 0);
    bus_config_destroy (&cfg);
    assert_int_equal (bus_config_load (&cfg, conf, err, sizeof err), 0);
    assert_string_equal (bus_config_str (cfg, "sanctum", "keys_dir"), "/srv/keys");
    assert_string_equal (bus_config_str (cfg, "sanctum", "data_dir"), real);
    bus_config_destroy (&cfg);
    assert_int_equal (chdir (cwd), 0);
}


int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test_setup_teardown (test_defaults, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_file_overrides, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_env_overrides_win, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_unknown_key_names_line, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_out_of_bounds, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_bool_keys, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_write_reload_round_trip, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_paths_relative_to_file, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_write_file_paths, s_setup, s_teardown),
    };
    int failed = cmocka_run_group_tests (tests, NULL, NULL);
    int total = (int) (sizeof tests / sizeof tests [0]);
    printf ("%d passed, %d failed, %d skipped\n", total - failed - s_skipped,
            failed, s_skipped);
    return failed? 1: 0;
}
