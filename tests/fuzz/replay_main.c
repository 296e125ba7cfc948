/*  replay_main.c — runs a libFuzzer target over files, without libFuzzer.

    Usage: replay_fuzz_<x> PATH...   (files, or directories read recursively)
    Each file is copied into a buffer of exactly its size (so a sanitizer
    sees any read past it) and given to LLVMFuzzerTestOneInput. A crash
    ends the run (and fails it); a file that cannot be read is a failure.
    Prints "N passed, N failed" last and exits non-zero on any failure or
    when no input was found at all.
*/
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define S_MAX_INPUT (64 * 1024 * 1024)

static int s_passed, s_failed;

/*  Feed one file to the target. */
static void
s_run_file (const char *path, off_t size)
{
    FILE *f = size <= S_MAX_INPUT ? fopen (path, "rb") : NULL;
    uint8_t *buf = f ? malloc (size ? (size_t) size : 1) : NULL;
    if (!buf || fread (buf, 1, (size_t) size, f) != (size_t) size) {
        fprintf (stderr, "replay: cannot read %s\n", path);
        s_failed++;
    }
    else {
        LLVMFuzzerTestOneInput (buf, (size_t) size);
        s_passed++;
    }
    free (buf);
    if (f)
        fclose (f);
}

/*  A file, or every file under a directory. */
static void
s_run_path (const char *path)
{
    struct stat st;
    if (stat (path, &st) != 0) {
        fprintf (stderr, "replay: no such file or directory %s\n", path);
        s_failed++;
        return;
    }
    if (!S_ISDIR (st.st_mode)) {
        s_run_file (path, st.st_size);
        return;
    }
    DIR *dir = opendir (path);
    if (!dir) {
        fprintf (stderr, "replay: cannot open %s\n", path);
        s_failed++;
        return;
    }
    struct dirent *e;
    while ((e = readdir (dir))) {
        if (strcmp (e->d_name, ".") == 0 || strcmp (e->d_name, "..") == 0)
            continue;
        size_t n = strlen (path) + strlen (e->d_name) + 2;
        char *child = malloc (n);
        if (!child) {
            s_failed++;
            break;
        }
        snprintf (child, n, "%s/%s", path, e->d_name);
        s_run_path (child);
        free (child);
    }
    closedir (dir);
}

int
main (int argc, char *argv [])
{
    if (argc < 2) {
        fprintf (stderr, "usage: %s FILE|DIR...\n", argv [0]);
        return 2;
    }
    for (int i = 1; i < argc; i++)
        s_run_path (argv [i]);
    printf ("%d passed, %d failed\n", s_passed, s_failed);
    return s_failed || s_passed == 0 ? 1 : 0;
}
