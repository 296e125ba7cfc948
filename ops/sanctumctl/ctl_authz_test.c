/*  ctl_authz_test.c — `sanctumctl authz test FILE [--no-contextual]
    [--verbose] [--only NAME]`.

    Runs an OpenFGA test file (OpenFGA's conformance format or the
    `.fga.yaml` store format of `fga model test`) against an embedded
    engine on temporary stores (authz_testfile.h); no daemon is involved.
    Prints each failure, a table of passed/failed assertions per kind and
    pass, and `N passed, N failed`; with --json one object {check,
    list_objects, list_users, contextual, passed, failed, failures}.
    Exit 0 when every assertion passed, 3 when one failed, 1 when the file
    cannot be read or is not a valid test file, 2 on bad usage.
*/
#include "ctl.h"
#include "authz_testfile.h"

#include <libgen.h>
#include <limits.h>
#include <stdio.h>

#define S_USAGE "usage: sanctumctl authz test FILE [--no-contextual] [--verbose] [--only NAME] [--json]\n"

/*  A JSON value as compact text (for failure lines). */
static void
s_print_value (FILE *out, json_t *value)
{
    char *text = json_dumps (value, JSON_COMPACT | JSON_ENCODE_ANY);
    fputs (text ? text : "?", out);
    free (text);
}

/*  Every failure, one per line. */
static void
s_print_failures (json_t *failures)
{
    size_t i;
    json_t *f;
    json_array_foreach (failures, i, f) {
        printf ("FAIL %s", json_string_value (json_object_get (f, "test")));
        if (json_object_get (f, "stage"))
            printf (" stage %lld", json_integer_value (json_object_get (f, "stage")));
        if (streq (json_string_value (json_object_get (f, "pass")), "contextual"))
            printf (" (contextual tuples)");
        printf (" %s ", json_string_value (json_object_get (f, "kind")));
        s_print_value (stdout, json_object_get (f, "request"));
        printf (": expected ");
        s_print_value (stdout, json_object_get (f, "expected"));
        printf (", got ");
        s_print_value (stdout, json_object_get (f, "got"));
        printf ("\n");
    }
}

/*  The table: a row per kind, a column pair per pass that ran. */
static void
s_print_table (authz_testfile_t *runner)
{
    bool ctx = false;
    for (int k = 0; k < AUTHZ_TESTFILE_KINDS; k++)
        ctx = ctx || authz_testfile_passed (runner, AUTHZ_TESTFILE_CONTEXTUAL, k)
                  || authz_testfile_failed (runner, AUTHZ_TESTFILE_CONTEXTUAL, k);
    int passes = ctx ? AUTHZ_TESTFILE_PASSES : 1;
    printf ("%-14s", "");
    for (int p = 0; p < passes; p++)
        printf ("  %-16s", authz_testfile_pass_name (p));
    printf ("\n%-14s", "kind");
    for (int p = 0; p < passes; p++)
        printf ("  %7s %8s", "passed", "failed");
    printf ("\n");
    for (int k = 0; k < AUTHZ_TESTFILE_KINDS; k++) {
        printf ("%-14s", authz_testfile_kind_name (k));
        for (int p = 0; p < passes; p++)
            printf ("  %7d %8d", authz_testfile_passed (runner, p, k),
                    authz_testfile_failed (runner, p, k));
        printf ("\n");
    }
}

/*  Report a file that could not be run: on stderr, or as JSON. */
static void
s_print_error (ctl_t *ctl, const char *path, const char *message, json_t *errors)
{
    if (ctl->json) {
        json_t *out = json_pack ("{s:b, s:{s:s, s:s, s:O*}}", "ok", 0, "error", "file", path,
                                 "message", message, "errors", errors);
        ctl_print_json (out, true);
        json_decref (out);
        return;
    }
    if (errors)
        fprintf (stderr, "sanctumctl: %s: %s\n", path, message);
    else
        fprintf (stderr, "sanctumctl: %s\n", message);
    size_t i;
    json_t *e;
    json_array_foreach (errors, i, e) {
        const char *where = json_string_value (json_object_get (e, "path"));
        fprintf (stderr, "  %s: %s\n", where && *where ? where : "(top level)",
                 json_string_value (json_object_get (e, "message")));
    }
}

int
ctl_cmd_authz_test (ctl_t *ctl)
{
    authz_testfile_opts_t opts = { .contextual = true };
    const char *path = NULL;
    for (int i = 1; i < ctl->argc; i++) {
        if (streq (ctl->argv [i], "--no-contextual"))
            opts.contextual = false;
        else if (streq (ctl->argv [i], "--verbose"))
            opts.verbose = true;
        else if (streq (ctl->argv [i], "--only") && i + 1 < ctl->argc)
            opts.only = ctl->argv [++i];
        else if (ctl->argv [i][0] == '-' || path) {
            fprintf (stderr, "sanctumctl: authz test: unexpected '%s'\n" S_USAGE, ctl->argv [i]);
            return CTL_USAGE;
        }
        else
            path = ctl->argv [i];
    }
    if (!path) {
        fprintf (stderr, S_USAGE);
        return CTL_USAGE;
    }
    char err [512] = "";
    char dir [PATH_MAX];
    snprintf (dir, sizeof dir, "%s", path);
    json_t *file = NULL;
    authz_testfile_t *runner = NULL;
    int rc = authz_testfile_load (&file, path, err, sizeof err);
    if (rc) {
        s_print_error (ctl, path, err, NULL);
        rc = CTL_ERROR;
        goto done;
    }
    if (authz_testfile_new (&runner, &opts)) {
        fprintf (stderr, "sanctumctl: out of memory\n");
        rc = CTL_ERROR;
        goto done;
    }
    rc = authz_testfile_run (runner, file, dirname (dir));
    if (rc) {
        s_print_error (ctl, path, rc == BUS_EINVAL ? "not a valid test file" : bus_strerror (rc),
                       authz_testfile_errors (runner));
        rc = CTL_ERROR;
        goto done;
    }
    if (ctl->json) {
        json_t *summary = authz_testfile_summary (runner);
        ctl_print_json (summary, true);
        json_decref (summary);
    }
    else {
        s_print_failures (authz_testfile_failures (runner));
        s_print_table (runner);
        printf ("%d passed, %d failed\n", authz_testfile_total_passed (runner),
                authz_testfile_total_failed (runner));
    }
    rc = authz_testfile_total_failed (runner) ? CTL_DENIED : CTL_OK;
done:
    authz_testfile_destroy (&runner);
    json_decref (file);
    return rc;
}
