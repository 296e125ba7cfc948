/*  test_store.c — unit tests for bus_store (the LMDB wrapper).

    Each test works in its own mkdtemp directory, removed afterwards.
*/
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "bus_error.h"
#include "bus_log.h"
#include "bus_store.h"
#include "../support/test_service.h"

static const char *const s_dbs [] = { "alpha", "beta", NULL };

typedef struct {
    char dir [64];
    bus_store_t *store;
} fixture_t;


/*  Make a temporary directory and open a store in <tmp>/db. */
static int
s_setup (void **state)
{
    fixture_t *fx = calloc (1, sizeof *fx);
    assert_non_null (fx);
    assert_int_equal (test_service_tmpdir (fx->dir, sizeof fx->dir, "test_store"), 0);
    char path [128];
    snprintf (path, sizeof path, "%s/db", fx->dir);
    assert_int_equal (bus_store_open (&fx->store, path, 0, s_dbs), 0);
    *state = fx;
    return 0;
}


/*  Close the store and remove the temporary directory. */
static int
s_teardown (void **state)
{
    fixture_t *fx = *state;
    bus_store_destroy (&fx->store);
    assert_null (fx->store);
    test_service_rmtree (fx->dir);
    free (fx);
    return 0;
}


/*  Reopen the fixture's store (close, then open the same directory). */
static void
s_reopen (fixture_t *fx, size_t map_size)
{
    char path [128];
    snprintf (path, sizeof path, "%s/db", fx->dir);
    bus_store_destroy (&fx->store);
    assert_int_equal (bus_store_open (&fx->store, path, map_size, s_dbs), 0);
}


/*  Put a string key/value pair in a fresh write transaction and commit. */
static void
s_put_commit (bus_store_t *store, int db, const char *key, const char *val)
{
    bus_txn_t *txn = bus_txn_begin (store, true);
    assert_non_null (txn);
    assert_int_equal (bus_txn_put (txn, db, key, strlen (key), val, strlen (val)), 0);
    assert_int_equal (bus_txn_commit (&txn), 0);
    assert_null (txn);
}


/*  Assert that key has value val (NULL: key absent) in a read txn. */
static void
s_expect (bus_store_t *store, int db, const char *key, const char *val)
{
    bus_txn_t *txn = bus_txn_begin (store, false);
    assert_non_null (txn);
    const void *v;
    size_t len;
    int rc = bus_txn_get (txn, db, key, strlen (key), &v, &len);
    if (val) {
        assert_int_equal (rc, 0);
        assert_int_equal (len, strlen (val));
        assert_memory_equal (v, val, len);
    }
    else
        assert_int_equal (rc, BUS_ENOTFOUND);
    bus_txn_abort (&txn);
    assert_null (txn);
}


static void
test_open_dir_mode (void **state)
{
    fixture_t *fx = *state;
    char path [128];
    snprintf (path, sizeof path, "%s/a/b/c", fx->dir);
    bus_store_t *store = NULL;
    assert_int_equal (bus_store_open (&store, path, 0, s_dbs), 0);
    struct stat st;
    assert_int_equal (stat (path, &st), 0);
    assert_int_equal (st.st_mode & 0777, 0700);
    snprintf (path, sizeof path, "%s/a", fx->dir);
    assert_int_equal (stat (path, &st), 0);
    assert_int_equal (st.st_mode & 0777, 0700);
    bus_store_destroy (&store);
    assert_null (store);
    bus_store_destroy (&store);     /* NULL is fine */

    /* The same directory cannot be open twice in one process */
    snprintf (path, sizeof path, "%s/db", fx->dir);
    assert_int_equal (bus_store_open (&store, path, 0, s_dbs), BUS_ESTATE);
    assert_null (store);
    snprintf (path, sizeof path, "%s/a/b/c", fx->dir);
    assert_int_equal (bus_store_open (&store, path, 0, s_dbs), 0);
    bus_store_destroy (&store);

    /* A file where the directory should be, and a bad db list */
    snprintf (path, sizeof path, "%s/file", fx->dir);
    FILE *f = fopen (path, "w");
    assert_non_null (f);
    fclose (f);
    assert_int_equal (bus_store_open (&store, path, 0, s_dbs), BUS_EINVAL);
    assert_null (store);
    const char *const empty_name [] = { "", NULL };
    snprintf (path, sizeof path, "%s/other", fx->dir);
    assert_int_equal (bus_store_open (&store, path, 0, empty_name), BUS_EINVAL);
    assert_null (store);
}


static void
test_db_index (void **state)
{
    fixture_t *fx = *state;
    assert_int_equal (bus_store_db (fx->store, "alpha"), 0);
    assert_int_equal (bus_store_db (fx->store, "beta"), 1);
    assert_int_equal (bus_store_db (fx->store, "gamma"), BUS_ENOTFOUND);

    /* Databases are separate namespaces */
    s_put_commit (fx->store, 0, "k", "in alpha");
    s_expect (fx->store, 1, "k", NULL);
    s_expect (fx->store, 0, "k", "in alpha");

    /* A bad index is an error, not a crash */
    bus_txn_t *txn = bus_txn_begin (fx->store, false);
    const void *v;
    size_t len;
    assert_int_equal (bus_txn_get (txn, 7, "k", 1, &v, &len), BUS_EINVAL);
    bus_txn_abort (&txn);
}


static void
test_put_get_del (void **state)
{
    fixture_t *fx = *state;
    bus_txn_t *txn = bus_txn_begin (fx->store, true);
    assert_non_null (txn);
    assert_int_equal (bus_txn_put (txn, 0, "key", 3, "one", 3), 0);
    const void *v;
    size_t len;
    assert_int_equal (bus_txn_get (txn, 0, "key", 3, &v, &len), 0);
    assert_int_equal (len, 3);
    assert_memory_equal (v, "one", 3);
    assert_int_equal (bus_txn_put (txn, 0, "key", 3, "two!", 4), 0);
    assert_int_equal (bus_txn_put (txn, 0, "empty", 5, NULL, 0), 0);
    assert_int_equal (bus_txn_commit (&txn), 0);
    assert_null (txn);
    s_expect (fx->store, 0, "key", "two!");
    s_expect (fx->store, 0, "empty", "");

    txn = bus_txn_begin (fx->store, true);
    assert_int_equal (bus_txn_del (txn, 0, "key", 3), 0);
    assert_int_equal (bus_txn_del (txn, 0, "key", 3), BUS_ENOTFOUND);
    assert_int_equal (bus_txn_error (txn), 0);       /* not sticky */
    assert_int_equal (bus_txn_get (txn, 0, "key", 3, &v, &len), BUS_ENOTFOUND);
    assert_int_equal (bus_txn_commit (&txn), 0);
    s_expect (fx->store, 0, "key", NULL);

    /* Aborted writes leave nothing behind */
    txn = bus_txn_begin (fx->store, true);
    assert_int_equal (bus_txn_put (txn, 0, "gone", 4, "x", 1), 0);
    bus_txn_abort (&txn);
    assert_null (txn);
    bus_txn_abort (&txn);           /* NULL is fine */
    s_expect (fx->store, 0, "gone", NULL);

    /* Commit of a NULL transaction is an error, not a crash */
    assert_int_equal (bus_txn_commit (&txn), BUS_EINVAL);
}


static void
test_sticky_error (void **state)
{
    fixture_t *fx = *state;
    bus_txn_t *txn = bus_txn_begin (fx->store, true);
    assert_int_equal (bus_txn_put (txn, 0, "first", 5, "1", 1), 0);
    assert_int_equal (bus_txn_error (txn), 0);

    /* An empty key fails and sticks */
    assert_int_equal (bus_txn_put (txn, 0, "", 0, "x", 1), BUS_EINVAL);
    assert_int_equal (bus_txn_error (txn), BUS_EINVAL);

    /* Later puts, put_new and dels are no-ops returning the sticky error */
    assert_int_equal (bus_txn_put (txn, 0, "second", 6, "2", 1), BUS_EINVAL);
    assert_int_equal (bus_txn_put_new (txn, 0, "third", 5, "3", 1), BUS_EINVAL);
    assert_int_equal (bus_txn_del (txn, 0, "first", 5), BUS_EINVAL);
    assert_int_equal (bus_txn_commit (&txn), BUS_EINVAL);
    assert_null (txn);
    s_expect (fx->store, 0, "first", NULL);
    s_expect (fx->store, 0, "second", NULL);

    /* An oversized key sticks too */
    char big [600];
    memset (big, 'k', sizeof big);
    txn = bus_txn_begin (fx->store, true);
    assert_int_equal (bus_txn_put (txn, 0, big, sizeof big, "x", 1), BUS_EINVAL);
    assert_int_equal (bus_txn_put (txn, 0, "ok", 2, "x", 1), BUS_EINVAL);
    assert_int_equal (bus_txn_commit (&txn), BUS_EINVAL);
    s_expect (fx->store, 0, "ok", NULL);

    /* A put on a read transaction fails and sticks */
    txn = bus_txn_begin (fx->store, false);
    assert_int_equal (bus_txn_put (txn, 0, "ro", 2, "x", 1), BUS_EINVAL);
    assert_int_equal (bus_txn_error (txn), BUS_EINVAL);
    assert_int_equal (bus_txn_commit (&txn), BUS_EINVAL);
    assert_null (txn);
}


/*  A hook's record: "<tag>+" (committed) or "<tag>-" (not), appended to
    the log. */
typedef struct {
    char log [64];
} s_hooklog_t;

static s_hooklog_t s_hooks;

static void
s_hook (void *arg, bool committed)
{
    size_t n = strlen (s_hooks.log);
    snprintf (s_hooks.log + n, sizeof s_hooks.log - n, "%s%c", (const char *) arg, committed ? '+' : '-');
}

/*  bus_txn_on_commit: hooks run in order once the commit returns; an
    abort, a sticky error and a read transaction drop them (false); in a
    group, a nested transaction's hooks wait for the group's commit, and
    a nested abort drops only its own. */
static void
test_on_commit (void **state)
{
    fixture_t *fx = *state;
    *s_hooks.log = 0;
    bus_txn_t *txn = bus_txn_begin (fx->store, true);
    assert_int_equal (bus_txn_on_commit (txn, s_hook, "a"), 0);
    assert_int_equal (bus_txn_on_commit (txn, s_hook, "b"), 0);
    assert_string_equal (s_hooks.log, "");
    assert_int_equal (bus_txn_commit (&txn), 0);
    assert_string_equal (s_hooks.log, "a+b+");

    *s_hooks.log = 0;
    txn = bus_txn_begin (fx->store, true);
    assert_int_equal (bus_txn_on_commit (txn, s_hook, "c"), 0);
    bus_txn_abort (&txn);
    assert_string_equal (s_hooks.log, "c-");

    *s_hooks.log = 0;
    txn = bus_txn_begin (fx->store, true);
    assert_int_equal (bus_txn_on_commit (txn, s_hook, "d"), 0);
    bus_txn_put (txn, 0, "", 0, "x", 1);                 /* sticky */
    assert_int_equal (bus_txn_commit (&txn), BUS_EINVAL);
    assert_string_equal (s_hooks.log, "d-");

    *s_hooks.log = 0;
    txn = bus_txn_begin (fx->store, false);
    assert_int_equal (bus_txn_on_commit (txn, s_hook, "r"), BUS_EINVAL);
    assert_string_equal (s_hooks.log, "r-");
    bus_txn_abort (&txn);

    /* a group: e commits into it, f aborts, g commits; the group commits */
    *s_hooks.log = 0;
    bus_txn_t *group = bus_txn_begin (fx->store, true);
    bus_txn_group (group);
    txn = bus_txn_begin (fx->store, true);
    assert_ptr_equal (bus_txn_parent (txn), group);
    assert_int_equal (bus_txn_on_commit (txn, s_hook, "e"), 0);
    assert_int_equal (bus_txn_commit (&txn), 0);
    txn = bus_txn_begin (fx->store, true);
    assert_int_equal (bus_txn_on_commit (txn, s_hook, "f"), 0);
    bus_txn_abort (&txn);
    txn = bus_txn_begin (fx->store, true);
    assert_int_equal (bus_txn_on_commit (txn, s_hook, "g"), 0);
    assert_int_equal (bus_txn_commit (&txn), 0);
    assert_string_equal (s_hooks.log, "f-");             /* e and g wait for the group */
    bus_txn_group (NULL);
    assert_int_equal (bus_txn_commit (&group), 0);
    assert_string_equal (s_hooks.log, "f-e+g+");

    /* a group aborted drops what its nested transactions handed it */
    *s_hooks.log = 0;
    group = bus_txn_begin (fx->store, true);
    bus_txn_group (group);
    txn = bus_txn_begin (fx->store, true);
    assert_int_equal (bus_txn_on_commit (txn, s_hook, "h"), 0);
    assert_int_equal (bus_txn_commit (&txn), 0);
    bus_txn_group (NULL);
    bus_txn_abort (&group);
    assert_string_equal (s_hooks.log, "h-");
}


static void
test_put_new (void **state)
{
    fixture_t *fx = *state;
    bus_txn_t *txn = bus_txn_begin (fx->store, true);
    assert_int_equal (bus_txn_put_new (txn, 0, "id", 2, "a", 1), 0);
    assert_int_equal (bus_txn_put_new (txn, 0, "id", 2, "b", 1), BUS_EEXIST);
    assert_int_equal (bus_txn_error (txn), 0);       /* not sticky */
    assert_int_equal (bus_txn_put (txn, 0, "other", 5, "c", 1), 0);
    assert_int_equal (bus_txn_commit (&txn), 0);
    s_expect (fx->store, 0, "id", "a");
    s_expect (fx->store, 0, "other", "c");
}


/*  put_append: keys in order are appended; a key that does not sort
    last (before the last, or the last itself) is refused, not sticky,
    nothing written. */
static void
test_put_append (void **state)
{
    fixture_t *fx = *state;
    bus_txn_t *txn = bus_txn_begin (fx->store, true);
    assert_int_equal (bus_txn_put_append (txn, 0, "b", 1, "1", 1), 0);
    assert_int_equal (bus_txn_put_append (txn, 0, "c", 1, "2", 1), 0);
    assert_int_equal (bus_txn_put_append (txn, 0, "a", 1, "x", 1), BUS_EEXIST);
    assert_int_equal (bus_txn_put_append (txn, 0, "c", 1, "y", 1), BUS_EEXIST);
    assert_int_equal (bus_txn_error (txn), 0);       /* not sticky */
    assert_int_equal (bus_txn_put (txn, 0, "a", 1, "3", 1), 0);
    assert_int_equal (bus_txn_commit (&txn), 0);
    s_expect (fx->store, 0, "a", "3");
    s_expect (fx->store, 0, "b", "1");
    s_expect (fx->store, 0, "c", "2");
    /* in a later transaction, after what is stored */
    txn = bus_txn_begin (fx->store, true);
    assert_int_equal (bus_txn_put_append (txn, 0, "b2", 2, "x", 1), BUS_EEXIST);
    assert_int_equal (bus_txn_put_append (txn, 0, "d", 1, "4", 1), 0);
    assert_int_equal (bus_txn_commit (&txn), 0);
    s_expect (fx->store, 0, "b2", NULL);
    s_expect (fx->store, 0, "d", "4");
}


/*  Scan collector: appends "key=val;" to a buffer, stops after max keys
    (returning stop_rc), when max > 0. */
typedef struct {
    char text [512];
    int count;
    int max;
    int stop_rc;
} collect_t;

static int
s_collect (const void *key, size_t key_len, const void *val, size_t val_len,
           void *arg)
{
    collect_t *c = arg;
    size_t used = strlen (c->text);
    snprintf (c->text + used, sizeof c->text - used, "%.*s=%.*s;",
              (int) key_len, (const char *) key, (int) val_len, (const char *) val);
    c->count++;
    return c->max && c->count >= c->max? c->stop_rc: 0;
}


/*  Run a range scan of db 0 and return what it collected. */
static collect_t
s_scan (bus_store_t *store, const char *from, const char *to, int max,
        int stop_rc, int expect_rc)
{
    collect_t c = { .max = max, .stop_rc = stop_rc };
    bus_txn_t *txn = bus_txn_begin (store, false);
    assert_int_equal (bus_txn_scan (txn, 0, from, from? strlen (from): 0,
                                    to, to? strlen (to): 0, s_collect, &c),
                      expect_rc);
    bus_txn_abort (&txn);
    return c;
}


/*  Run a prefix scan of db 0 and return what it collected. */
static collect_t
s_scan_prefix (bus_store_t *store, const char *prefix)
{
    collect_t c = { 0 };
    bus_txn_t *txn = bus_txn_begin (store, false);
    assert_int_equal (bus_txn_scan_prefix (txn, 0, prefix, strlen (prefix),
                                           s_collect, &c), 0);
    bus_txn_abort (&txn);
    return c;
}


static void
test_scans (void **state)
{
    fixture_t *fx = *state;
    assert_string_equal (s_scan (fx->store, NULL, NULL, 0, 0, 0).text, "");
    assert_string_equal (s_scan_prefix (fx->store, "a").text, "");

    const char *keys [] = { "c", "ab", "b", "abc", "a", "ba" };
    bus_txn_t *txn = bus_txn_begin (fx->store, true);
    for (size_t i = 0; i < 6; i++)
        assert_int_equal (bus_txn_put (txn, 0, keys [i], strlen (keys [i]),
                                       "v", 1), 0);
    assert_int_equal (bus_txn_put (txn, 1, "a0", 2, "other db", 8), 0);
    assert_int_equal (bus_txn_commit (&txn), 0);

    assert_string_equal (s_scan (fx->store, NULL, NULL, 0, 0, 0).text,
                         "a=v;ab=v;abc=v;b=v;ba=v;c=v;");
    assert_string_equal (s_scan (fx->store, "ab", "b", 0, 0, 0).text,
                         "ab=v;abc=v;");
    assert_string_equal (s_scan (fx->store, "aa", "bb", 0, 0, 0).text,
                         "ab=v;abc=v;b=v;ba=v;");
    assert_string_equal (s_scan (fx->store, NULL, "ab", 0, 0, 0).text, "a=v;");
    assert_string_equal (s_scan (fx->store, "bz", NULL, 0, 0, 0).text, "c=v;");
    assert_string_equal (s_scan (fx->store, "d", NULL, 0, 0, 0).text, "");
    assert_string_equal (s_scan (fx->store, "b", "b", 0, 0, 0).text, "");

    /* The callback stops the scan with 1 (ok) or a negative error */
    collect_t c = s_scan (fx->store, NULL, NULL, 2, 1, 0);
    assert_int_equal (c.count, 2);
    c = s_scan (fx->store, NULL, NULL, 3, BUS_EPERM, BUS_EPERM);
    assert_int_equal (c.count, 3);

    assert_string_equal (s_scan_prefix (fx->store, "a").text, "a=v;ab=v;abc=v;");
    assert_string_equal (s_scan_prefix (fx->store, "ab").text, "ab=v;abc=v;");
    assert_string_equal (s_scan_prefix (fx->store, "b").text, "b=v;ba=v;");
    assert_string_equal (s_scan_prefix (fx->store, "abcd").text, "");
    assert_string_equal (s_scan_prefix (fx->store, "z").text, "");
    assert_int_equal (s_scan_prefix (fx->store, "").count, 6);

    /* A scan inside a write transaction sees its own puts */
    txn = bus_txn_begin (fx->store, true);
    assert_int_equal (bus_txn_put (txn, 0, "aa", 2, "w", 1), 0);
    collect_t w = { 0 };
    assert_int_equal (bus_txn_scan_prefix (txn, 0, "a", 1, s_collect, &w), 0);
    assert_string_equal (w.text, "a=v;aa=w;ab=v;abc=v;");
    bus_txn_abort (&txn);
}


/*  Scan callback collecting u64 keys into an array of up to 16. */
typedef struct {
    uint64_t keys [16];
    int count;
} u64s_t;

static int
s_collect_u64 (const void *key, size_t key_len, const void *val, size_t val_len,
               void *arg)
{
    u64s_t *c = arg;
    assert_int_equal (key_len, 8);
    assert_true (c->count < 16);
    c->keys [c->count++] = bus_key_to_u64 (key);
    return 0;
}


static void
test_last_and_u64_order (void **state)
{
    fixture_t *fx = *state;
    bus_txn_t *txn = bus_txn_begin (fx->store, true);
    const void *k, *v;
    size_t klen, vlen;
    assert_int_equal (bus_txn_last (txn, 1, &k, &klen, &v, &vlen), BUS_ENOTFOUND);

    const uint64_t values [] = { 256, 0, UINT64_MAX, 1, 65536, 255, (uint64_t) 1 << 40 };
    const uint64_t sorted [] = { 0, 1, 255, 256, 65536, (uint64_t) 1 << 40, UINT64_MAX };
    for (size_t i = 0; i < 7; i++) {
        uint8_t key [8];
        bus_u64_to_key (values [i], key);
        assert_true (bus_key_to_u64 (key) == values [i]);
        assert_int_equal (bus_txn_put (txn, 1, key, 8, "v", 1), 0);
    }
    uint8_t key [8];
    bus_u64_to_key (0x0102030405060708ULL, key);
    const uint8_t be [8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    assert_memory_equal (key, be, 8);
    assert_int_equal (bus_txn_commit (&txn), 0);

    txn = bus_txn_begin (fx->store, false);
    assert_int_equal (bus_txn_last (txn, 1, &k, &klen, &v, &vlen), 0);
    assert_int_equal (klen, 8);
    assert_true (bus_key_to_u64 (k) == UINT64_MAX);
    assert_int_equal (vlen, 1);

    u64s_t c = { { 0 }, 0 };
    assert_int_equal (bus_txn_scan (txn, 1, NULL, 0, NULL, 0, s_collect_u64, &c), 0);
    assert_int_equal (c.count, 7);
    assert_memory_equal (c.keys, sorted, sizeof sorted);

    /* A numeric range [255, 65536) */
    uint8_t from [8], to [8];
    bus_u64_to_key (255, from);
    bus_u64_to_key (65536, to);
    c.count = 0;
    assert_int_equal (bus_txn_scan (txn, 1, from, 8, to, 8, s_collect_u64, &c), 0);
    assert_int_equal (c.count, 2);
    assert_true (c.keys [0] == 255 && c.keys [1] == 256);
    bus_txn_abort (&txn);
}


static void
test_reopen_persists (void **state)
{
    fixture_t *fx = *state;
    s_put_commit (fx->store, 1, "durable", "yes");
    s_reopen (fx, 0);
    assert_int_equal (bus_store_db (fx->store, "beta"), 1);
    s_expect (fx->store, 1, "durable", "yes");
}


/*  The commit path fsyncs: a child process commits and dies at once
    (_exit, no close, no atexit), and the parent then finds the data. */
static void
test_commit_durable_across_exit (void **state)
{
    fixture_t *fx = *state;
    bus_store_destroy (&fx->store);
    pid_t pid = fork ();
    assert_true (pid >= 0);
    if (pid == 0) {
        char path [128];
        snprintf (path, sizeof path, "%s/db", fx->dir);
        bus_store_t *store = NULL;
        if (bus_store_open (&store, path, 0, s_dbs))
            _exit (2);
        bus_txn_t *txn = bus_txn_begin (store, true);
        if (!txn || bus_txn_put (txn, 0, "child", 5, "wrote", 5)
        ||  bus_txn_commit (&txn))
            _exit (3);
        _exit (0);
    }
    int status = 0;
    assert_int_equal (waitpid (pid, &status, 0), pid);
    assert_true (WIFEXITED (status));
    assert_int_equal (WEXITSTATUS (status), 0);
    s_reopen (fx, 0);
    s_expect (fx->store, 0, "child", "wrote");
}


static void
test_map_full (void **state)
{
    fixture_t *fx = *state;
    char path [128];
    snprintf (path, sizeof path, "%s/tiny", fx->dir);
    bus_store_t *store = NULL;
    assert_int_equal (bus_store_open (&store, path, 128 * 1024, s_dbs), 0);
    s_put_commit (store, 0, "keep", "this");

    char val [1000];
    memset (val, 'x', sizeof val);
    bus_txn_t *txn = bus_txn_begin (store, true);
    int rc = 0, i;
    for (i = 0; i < 10000 && rc == 0; i++) {
        uint8_t key [8];
        bus_u64_to_key ((uint64_t) i, key);
        rc = bus_txn_put (txn, 0, key, 8, val, sizeof val);
    }
    assert_int_equal (rc, BUS_EFULL);
    assert_true (i > 1 && i < 10000);
    assert_int_equal (bus_txn_error (txn), BUS_EFULL);
    assert_int_equal (bus_txn_put (txn, 0, "more", 4, "x", 1), BUS_EFULL);
    assert_int_equal (bus_txn_commit (&txn), BUS_EFULL);
    assert_null (txn);

    /* Nothing committed before is lost, nothing of the failed txn stays */
    s_expect (store, 0, "keep", "this");
    uint8_t first [8];
    bus_u64_to_key (0, first);
    txn = bus_txn_begin (store, false);
    const void *v;
    size_t len;
    assert_int_equal (bus_txn_get (txn, 0, first, 8, &v, &len), BUS_ENOTFOUND);
    bus_txn_abort (&txn);

    /* The store still takes small writes, and keeps them across reopen */
    s_put_commit (store, 0, "after", "ok");
    bus_store_destroy (&store);
    assert_int_equal (bus_store_open (&store, path, 128 * 1024, s_dbs), 0);
    s_expect (store, 0, "keep", "this");
    s_expect (store, 0, "after", "ok");
    bus_store_destroy (&store);
}


/*  Thread body: a get on a read transaction begun by another thread. */
static void *
s_reader_thread (void *arg)
{
    bus_txn_t *txn = arg;
    const void *v;
    size_t len;
    intptr_t rc = bus_txn_get (txn, 0, "shared", 6, &v, &len);
    if (rc == 0 && (len != 2 || memcmp (v, "ok", 2)))
        rc = -100;
    return (void *) rc;
}


/*  MDB_NOTLS: a read transaction may be used from another thread, and
    many read transactions may be open at once in one thread. */
static void
test_read_txn_threads (void **state)
{
    fixture_t *fx = *state;
    s_put_commit (fx->store, 0, "shared", "ok");
    bus_txn_t *txns [8];
    for (int i = 0; i < 8; i++) {
        txns [i] = bus_txn_begin (fx->store, false);
        assert_non_null (txns [i]);
    }
    pthread_t thread;
    assert_int_equal (pthread_create (&thread, NULL, s_reader_thread, txns [3]), 0);
    void *result;
    assert_int_equal (pthread_join (thread, &result), 0);
    assert_int_equal ((intptr_t) result, 0);
    for (int i = 0; i < 8; i++) {
        bus_txn_abort (&txns [i]);
        assert_null (txns [i]);
    }
}


int
main (void)
{
    bus_log_init ("test_store", "error");
    const struct CMUnitTest tests [] = {
        cmocka_unit_test_setup_teardown (test_open_dir_mode, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_db_index, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_put_get_del, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_sticky_error, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_on_commit, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_put_new, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_put_append, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_scans, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_last_and_u64_order, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_reopen_persists, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_commit_durable_across_exit, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_map_full, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_read_txn_threads, s_setup, s_teardown),
    };
    return test_service_summary ((int) (sizeof tests / sizeof tests [0]),
                                 cmocka_run_group_tests (tests, NULL, NULL));
}
