/*  ctl_demo.c — `sanctumctl demo`: the procurement story, unattended, on
    the running suite the config names (ops/demo_story.py, which drives
    this same sanctumctl): $5,000 through, $520,000 approved by carol then
    victor, the receipt verified then refused once tampered, $2,000,000
    rejected. Exit 0 only when every step happened as told (and the
    receipt verified); 1 otherwise, saying which step; 2 on bad usage.

    The story is found at $SANCTUM_DEMO_STORY, else beside the binary
    (<exe>/../../ops/demo_story.py, a build tree), else
    <exe>/../share/sanctum/demo_story.py (an install), else
    ./ops/demo_story.py. It runs under python3 (the standard library
    only), given this binary's path and the --config/--key in force.
*/
#include "ctl.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*  Where the story is, into out; false when nowhere. */
static bool
s_find_story (char *out, size_t len)
{
    const char *env = getenv ("SANCTUM_DEMO_STORY");
    if (env && *env) {
        snprintf (out, len, "%s", env);
        return access (out, R_OK) == 0;
    }
    char exe [PATH_MAX];
    ssize_t n = readlink ("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe [n] = 0;
        char *dir = dirname (exe);                  /* <build>/bin or <prefix>/bin */
        snprintf (out, len, "%s/../../ops/demo_story.py", dir);
        if (access (out, R_OK) == 0)
            return true;
        snprintf (out, len, "%s/../share/sanctum/demo_story.py", dir);
        if (access (out, R_OK) == 0)
            return true;
    }
    snprintf (out, len, "ops/demo_story.py");
    return access (out, R_OK) == 0;
}

/*  demo [--help]: replace this process by python3 telling the story
    (its exit code is ours). */
int
ctl_cmd_demo (ctl_t *ctl)
{
    if (ctl->argc > 0) {
        bool help = streq (ctl->argv [0], "--help") || streq (ctl->argv [0], "-h");
        fputs ("usage: sanctumctl [--config FILE] demo\n"
               "  the procurement story, unattended, on the running suite the config names (seeded by\n"
               "  `sanctumctl up` or `seed`): $5,000 through; $520,000 approved by carol then victor;\n"
               "  the receipt verified, then refused once tampered; $2,000,000 rejected.\n"
               "  Exit 0 only when every step happened as told.\n", help ? stdout : stderr);
        return help ? CTL_OK : CTL_USAGE;
    }
    char story [PATH_MAX + 64], self [PATH_MAX];
    if (!s_find_story (story, sizeof story)) {
        fprintf (stderr, "sanctumctl demo: no demo_story.py (set SANCTUM_DEMO_STORY)\n");
        return CTL_ERROR;
    }
    ssize_t n = readlink ("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        fprintf (stderr, "sanctumctl demo: cannot find this program: %s\n", strerror (errno));
        return CTL_ERROR;
    }
    self [n] = 0;
    char *argv [8];
    int argc = 0;
    argv [argc++] = "python3";
    argv [argc++] = story;
    argv [argc++] = self;
    if (ctl->config_path) {
        argv [argc++] = "--config";
        argv [argc++] = (char *) ctl->config_path;
    }
    if (!streq (ctl->key_name, "sanctumctl")) {
        argv [argc++] = "--key";
        argv [argc++] = (char *) ctl->key_name;
    }
    argv [argc] = NULL;
    fflush (stdout);
    execvp (argv [0], argv);
    fprintf (stderr, "sanctumctl demo: cannot run python3: %s\n", strerror (errno));
    return CTL_ERROR;
}
