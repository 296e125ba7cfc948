/*  test_yaml.c — bus_yaml: YAML 1.1 scalars, structure, limits, errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus_error.h"
#include "bus_yaml.h"

/*  Parse text, expect success, return the value. */
static json_t *
s_load (const char *text)
{
    json_t *v = NULL;
    char err [256] = "";
    int rc = bus_yaml_load_string (&v, text, strlen (text), err, sizeof err);
    if (rc != 0)
        fprintf (stderr, "unexpected error: %s\n", err);
    assert_int_equal (rc, 0);
    assert_non_null (v);
    return v;
}

/*  Parse text, expect failure with code, check err mentions needle. */
static void
s_fail (const char *text, size_t len, int code, const char *needle)
{
    json_t *v = (json_t *) 1;
    char err [256] = "";
    assert_int_equal (bus_yaml_load_string (&v, text, len, err, sizeof err), code);
    assert_null (v);
    if (needle && !strstr (err, needle))
        fail_msg ("error '%s' lacks '%s'", err, needle);
}

static void
test_scalars (void **state)
{
    json_t *v = s_load ("a: true\nb: False\nc: ~\nd:\ne: null\nf: 42\ng: -0x1F\nh: 3.5\ni: 1e3\n"
                        "j: '42'\nk: \"true\"\nl: hello world\nm: 0o17\nn: 99999999999999999999\n"
                        "o: .inf\np: !!str 12\nq: yes\n");
    assert_true (json_is_true (json_object_get (v, "a")));
    assert_true (json_is_false (json_object_get (v, "b")));
    assert_true (json_is_null (json_object_get (v, "c")));
    assert_true (json_is_null (json_object_get (v, "d")));
    assert_true (json_is_null (json_object_get (v, "e")));
    assert_int_equal (json_integer_value (json_object_get (v, "f")), 42);
    assert_int_equal (json_integer_value (json_object_get (v, "g")), -31);
    assert_true (json_real_value (json_object_get (v, "h")) == 3.5);
    assert_true (json_real_value (json_object_get (v, "i")) == 1000.0);
    assert_string_equal (json_string_value (json_object_get (v, "j")), "42");
    assert_string_equal (json_string_value (json_object_get (v, "k")), "true");
    assert_string_equal (json_string_value (json_object_get (v, "l")), "hello world");
    assert_int_equal (json_integer_value (json_object_get (v, "m")), 15);
    assert_string_equal (json_string_value (json_object_get (v, "n")), "99999999999999999999");
    assert_string_equal (json_string_value (json_object_get (v, "o")), ".inf");
    assert_string_equal (json_string_value (json_object_get (v, "p")), "12");
    assert_string_equal (json_string_value (json_object_get (v, "q")), "yes");
    json_decref (v);
}

static void
test_structure (void **state)
{
    json_t *v = s_load ("---\nlist:\n  - 1\n  - [a, {b: c}]\ndsl: |\n  model\n    schema 1.1\n"
                        "folded: >-\n  one\n  two\n1: numeric key\n---\nsecond: doc\n");
    json_t *list = json_object_get (v, "list");
    assert_int_equal (json_array_size (list), 2);
    assert_string_equal (json_string_value (json_object_get (json_array_get (json_array_get (list, 1), 1), "b")), "c");
    assert_string_equal (json_string_value (json_object_get (v, "dsl")), "model\n  schema 1.1\n");
    assert_string_equal (json_string_value (json_object_get (v, "folded")), "one two");
    assert_string_equal (json_string_value (json_object_get (v, "1")), "numeric key");
    assert_null (json_object_get (v, "second"));
    json_decref (v);
    v = s_load ("");
    assert_true (json_is_null (v));
    json_decref (v);
    v = s_load ("just a scalar");
    assert_string_equal (json_string_value (v), "just a scalar");
    json_decref (v);
}

static void
test_errors (void **state)
{
    s_fail ("a: [1, 2\nb: 3\n", 14, BUS_EINVAL, "line");
    s_fail ("a: &x 1\nb: *x\n", 14, BUS_EINVAL, "alias");
    s_fail ("a: 1\na: 2\n", 10, BUS_EINVAL, "duplicate");
    s_fail ("? [a]\n: b\n", 10, BUS_EINVAL, "key");
    s_fail ("x", BUS_YAML_MAX_SIZE + 1, BUS_ETOOBIG, NULL);
    char deep [400];
    size_t n = 0;
    for (int i = 0; i < 100; i++)
        deep [n++] = '[';
    for (int i = 0; i < 100; i++)
        deep [n++] = ']';
    deep [n] = '\0';
    s_fail (deep, n, BUS_EDEPTH, "nesting");
    json_t *v = NULL;
    char err [128];
    assert_int_equal (bus_yaml_load_file (&v, "/nonexistent/x.yaml", err, sizeof err), BUS_EIO);
    assert_null (v);
    /* every truncation of a document: an error or a value, never a crash */
    const char *doc = "a:\n  - {b: [1, 'x', \"y\"]}\n  - |\n    text\nc: &k 3\n";
    for (size_t cut = 0; cut <= strlen (doc); cut++) {
        v = NULL;
        if (bus_yaml_load_string (&v, doc, cut, NULL, 0) == 0)
            json_decref (v);
    }
}

static void
test_file (void **state)
{
    char path [] = "/tmp/test_yaml_XXXXXX";
    int fd = mkstemp (path);
    assert_true (fd >= 0);
    const char *text = "- name: x\n  dsl: |\n    model\n";
    assert_int_equal (write (fd, text, strlen (text)), (ssize_t) strlen (text));
    close (fd);
    json_t *v = NULL;
    char err [128];
    assert_int_equal (bus_yaml_load_file (&v, path, err, sizeof err), 0);
    assert_string_equal (json_string_value (json_object_get (json_array_get (v, 0), "dsl")), "model\n");
    json_decref (v);
    unlink (path);
}

static int s_passed;

/*  Print the summary line last. */
static int
s_teardown (void **state)
{
    printf ("%d passed, %d failed\n", s_passed, 4 - s_passed);
    return 0;
}

/*  Count a test as passed when it returns. */
#define S_COUNTED(fn) static void fn##_c (void **s) { fn (s); s_passed++; }
S_COUNTED (test_scalars)
S_COUNTED (test_structure)
S_COUNTED (test_errors)
S_COUNTED (test_file)

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_scalars_c),
        cmocka_unit_test (test_structure_c),
        cmocka_unit_test (test_errors_c),
        cmocka_unit_test (test_file_c),
    };
    return cmocka_run_group_tests (tests, NULL, s_teardown);
}
