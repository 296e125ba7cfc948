/*  ctl_seed.c — `sanctumctl seed`: the procurement example, loaded once
    into a running suite so that a fresh checkout can run
        sanctumctl run start procurement --input vendor=Acme \
            --input amount=520000 --input cost_center=engineering
    `sanctumctl up` runs it in the background on first start (the default
    local setup; `up --seed` / `--no-seed` say otherwise).

    What is seeded, each item only when it is missing:
      authz     the example model, its tuples (duplicates ignored) and
                policy (ops/examples/procurement/)
      devices   an approver device for user:carol and user:victor (secrets
                under KEYS_DIR/devices, as `device enroll` makes them)
      vault     local-mode connections sheets and gmail (the sandbox's
                audiences and scopes; no approval flag: gated steps carry
                their approval anyway, and the $5,000 path needs none)
      workflows the *.json of ops/examples/workflows copied into [orchestrator]
                workflows (empty: <data_dir>/workflows), each when missing
    A workflows directory this process may not write (a container whose
    orchestrator mounts its workflows read-only, seeded from another
    container) is skipped, said so (stderr, and "skipped" with --json), and
    the rest is seeded all the same: exit 0. Once everything is in (nothing
    skipped), <data_dir>/seeded.json records it and later runs change
    nothing. Two seeders at once (up's and a script's) take
    turns on <data_dir>/seed.lock.

    The examples are found at $SANCTUM_EXAMPLES, else beside the binary
    (<exe>/../../ops/examples, a build tree), else ./ops/examples, else
    <exe>/../share/sanctum/examples (an install).

    seed [--examples DIR] [--wait-ms N]: N (default 60000) is how long the
    services may take to answer. Exit 0 when seeded (or seeded before),
    1 on errors (the next run tries again).
*/
#include "ctl.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define S_SHEETS_SCOPE "https://www.googleapis.com/auth/spreadsheets"
#define S_GMAIL_SCOPE  "https://www.googleapis.com/auth/gmail.send"

static const char *const s_approvers [] = { "user:carol", "user:victor", NULL };

static const struct {
    const char *name, *kind, *scopes;
} s_connections [] = {
    { "sheets", "google-sheets", S_SHEETS_SCOPE },
    { "gmail", "gmail", S_GMAIL_SCOPE },
    { NULL, NULL, NULL }
};

/*  True when path is a directory holding procurement/model.fga. */
static bool
s_examples_at (const char *path)
{
    char probe [PATH_MAX + 64];
    snprintf (probe, sizeof probe, "%s/procurement/model.fga", path);
    return access (probe, R_OK) == 0;
}

/*  Where the examples are, into out; false when nowhere. */
static bool
s_find_examples (const char *given, char *out, size_t len)
{
    const char *env = getenv ("SANCTUM_EXAMPLES");
    if (given || (env && *env)) {
        snprintf (out, len, "%s", given ? given : env);
        return s_examples_at (out);
    }
    char exe [PATH_MAX];
    ssize_t n = readlink ("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe [n] = 0;
        char *dir = dirname (exe);                  /* <build>/bin or <prefix>/bin */
        snprintf (out, len, "%s/../../ops/examples", dir);
        if (s_examples_at (out))
            return true;
        snprintf (out, len, "%s/../share/sanctum/examples", dir);
        if (s_examples_at (out))
            return true;
    }
    snprintf (out, len, "ops/examples");
    return s_examples_at (out);
}

/*  One request, retried while the service does not answer (it may be
    starting) until deadline_ms (zclock_mono). 0 with *reply set (ok or
    an error reply), or -1 after saying why. */
static int
s_request (ctl_t *ctl, const char *service, const char *type, json_t *body, int64_t deadline_ms,
           proto_msg_t **reply)
{
    *reply = NULL;
    int crc = BUS_EINVAL;
    while (true) {
        bus_client_t *client = ctl_client (ctl, service);
        if (!client)
            break;
        crc = bus_client_call (client, type, json_incref (body), NULL, reply);
        if (crc && zclock_mono () >= deadline_ms)
            ctl_print_call_error (ctl, service, client, crc, NULL, 0);
        bus_client_destroy (&client);
        if (crc == 0 || crc == BUS_EAUTH || zclock_mono () >= deadline_ms)
            break;
        zclock_sleep (200);
    }
    json_decref (body);
    return crc ? -1 : 0;
}

/*  The error code of a reply ("" when ok). */
static const char *
s_code (proto_msg_t *reply)
{
    const char *code = reply && !reply->ok ? json_string_value (json_object_get (reply->error, "code")) : NULL;
    return reply && reply->ok ? "" : code ? code : "error";
}

/*  Run one of sanctumctl's own commands (the code `authz`, `device` and
    `vault` run for people) with args. */
static int
s_command (ctl_t *ctl, int (*fn) (ctl_t *), const char *const *args)
{
    ctl_t sub = *ctl;
    int n = 0;
    while (args [n])
        n++;
    sub.argc = n;
    sub.argv = (char **) args;
    sub.json = false;
    /* their words for people go to stderr: stdout stays this command's */
    fflush (stdout);
    int saved = dup (1);
    if (saved >= 0)
        dup2 (2, 1);
    int rc = fn (&sub);
    fflush (stdout);
    if (saved >= 0) {
        dup2 (saved, 1);
        close (saved);
    }
    return rc;
}

/*  The model, tuples and policy, each when missing. */
static int
s_seed_authz (ctl_t *ctl, const char *examples, int64_t deadline, json_t *done)
{
    char model [PATH_MAX + 64], tuples [PATH_MAX + 64], policy [PATH_MAX + 64];
    snprintf (model, sizeof model, "%s/procurement/model.fga", examples);
    snprintf (tuples, sizeof tuples, "%s/procurement/tuples.json", examples);
    snprintf (policy, sizeof policy, "%s/procurement/policy.json", examples);
    proto_msg_t *reply = NULL;
    if (s_request (ctl, "authz", "authz.model.read", json_object (), deadline, &reply))
        return -1;
    bool has_model = reply->ok;
    const char *code = s_code (reply);
    if (!has_model && strcmp (code, "not_found")) {
        ctl_print_error (ctl, reply);
        proto_msg_destroy (&reply);
        return -1;
    }
    proto_msg_destroy (&reply);
    if (!has_model) {
        if (s_command (ctl, ctl_cmd_authz, (const char *[]) { "model", "write", model, NULL }))
            return -1;
        json_array_append_new (done, json_string ("authz model"));
    }
    if (s_command (ctl, ctl_cmd_authz, (const char *[]) { "write", "--file", tuples, "--ignore-existing", NULL }))
        return -1;
    if (s_request (ctl, "authz", "authz.policy.read", json_object (), deadline, &reply))
        return -1;
    bool has_policy = reply->ok;
    code = s_code (reply);
    if (!has_policy && strcmp (code, "not_found")) {
        ctl_print_error (ctl, reply);
        proto_msg_destroy (&reply);
        return -1;
    }
    proto_msg_destroy (&reply);
    if (!has_policy) {
        if (s_command (ctl, ctl_cmd_authz, (const char *[]) { "policy", "write", policy, NULL }))
            return -1;
        json_array_append_new (done, json_string ("authz policy"));
    }
    return 0;
}

/*  A device for each approver that has no active one (or whose secret is
    not here to sign with). */
static int
s_seed_devices (ctl_t *ctl, int64_t deadline, json_t *done)
{
    const char *keys = bus_config_str (ctl->config, "sanctum", "keys_dir");
    for (size_t i = 0; s_approvers [i]; i++) {
        proto_msg_t *reply = NULL;
        if (s_request (ctl, "ciba-broker", "ciba.device.list", json_pack ("{s:s}", "approver", s_approvers [i]),
                       deadline, &reply))
            return -1;
        if (!reply->ok) {
            ctl_print_error (ctl, reply);
            proto_msg_destroy (&reply);
            return -1;
        }
        bool active = false;
        size_t k;
        json_t *d;
        json_array_foreach (json_object_get (reply->body, "devices"), k, d)
            active |= !strcmp (json_string_value (json_object_get (d, "state")) ?: "", "active");
        proto_msg_destroy (&reply);
        char secret [PATH_MAX + 64], name [128];
        snprintf (name, sizeof name, "%s", s_approvers [i]);
        *strchr (name, ':') = '_';
        snprintf (secret, sizeof secret, "%s/devices/%s.device_secret", keys, name);
        if (active && access (secret, R_OK) == 0)
            continue;
        if (s_command (ctl, ctl_cmd_device, (const char *[]) { "enroll", s_approvers [i], NULL }))
            return -1;
        char what [160];
        snprintf (what, sizeof what, "device %s", s_approvers [i]);
        json_array_append_new (done, json_string (what));
    }
    return 0;
}

/*  The sandbox connections that are missing. */
static int
s_seed_connections (ctl_t *ctl, int64_t deadline, json_t *done)
{
    proto_msg_t *reply = NULL;
    if (s_request (ctl, "vault-broker", "vault.connections", json_object (), deadline, &reply))
        return -1;
    if (!reply->ok) {
        ctl_print_error (ctl, reply);
        proto_msg_destroy (&reply);
        return -1;
    }
    json_t *have = json_incref (json_object_get (reply->body, "connections"));
    proto_msg_destroy (&reply);
    int rc = 0;
    for (size_t i = 0; s_connections [i].name && rc == 0; i++) {
        bool found = false;
        size_t k;
        json_t *c;
        json_array_foreach (have, k, c)
            found |= !strcmp (json_string_value (json_object_get (c, "name")) ?: "", s_connections [i].name);
        if (found)
            continue;
        rc = s_command (ctl, ctl_cmd_vault, (const char *[]) { "connect", s_connections [i].name, "--kind",
                                                                s_connections [i].kind, "--scopes",
                                                                s_connections [i].scopes, NULL }) ? -1 : 0;
        if (rc == 0) {
            char what [160];
            snprintf (what, sizeof what, "connection %s", s_connections [i].name);
            json_array_append_new (done, json_string (what));
        }
    }
    json_decref (have);
    return rc;
}

/*  mkdir -p of path (0755). */
static int
s_mkdirs (const char *path)
{
    char tmp [PATH_MAX];
    snprintf (tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir (tmp, 0755) && errno != EEXIST)
                return -1;
            *p = '/';
        }
    return mkdir (tmp, 0755) && errno != EEXIST ? -1 : 0;
}

/*  Copy src to dst (through a temporary file, renamed); -1 with errno
    set by the step that failed. */
static int
s_copy (const char *src, const char *dst)
{
    int err = 0;
    char tmp [PATH_MAX * 2 + 8];
    snprintf (tmp, sizeof tmp, "%s.new", dst);
    FILE *in = fopen (src, "rb"), *out = in ? fopen (tmp, "wb") : NULL;
    char buf [8192];
    size_t n;
    int rc = in && out ? 0 : -1;
    if (rc)
        err = errno;
    while (rc == 0 && (n = fread (buf, 1, sizeof buf, in)) > 0)
        if (fwrite (buf, 1, n, out) != n) {
            err = errno;
            rc = -1;
        }
    if (in && ferror (in) && rc == 0) {
        err = EIO;
        rc = -1;
    }
    if (in)
        fclose (in);
    if (out && fclose (out) && rc == 0) {
        err = errno;
        rc = -1;
    }
    if (rc == 0 && rename (tmp, dst)) {
        err = errno;
        rc = -1;
    }
    if (rc) {
        unlink (tmp);
        errno = err;
    }
    return rc;
}

/*  The workflows directory: [orchestrator] workflows, else
    <data_dir>/workflows (as the orchestrator reads it). */
static void
s_workflows_dir (ctl_t *ctl, char *out, size_t len)
{
    const char *dir = bus_config_str (ctl->config, "orchestrator", "workflows");
    if (dir && *dir)
        snprintf (out, len, "%s", dir);
    else
        snprintf (out, len, "%s/workflows", bus_config_str (ctl->config, "sanctum", "data_dir"));
}

/*  True when errno says this process may not write there (permissions, a
    read-only mount): a directory that is someone else's to fill. */
static bool
s_not_ours (int err)
{
    return err == EACCES || err == EPERM || err == EROFS;
}

/*  Example workflows the directory does not hold yet. A directory (or a
    file in it) this process may not write is skipped and said so, into
    skipped; any other error fails. */
static int
s_seed_workflows (ctl_t *ctl, const char *examples, json_t *done, json_t *skipped)
{
    char from [PATH_MAX + 64], to [PATH_MAX];
    snprintf (from, sizeof from, "%s/workflows", examples);
    s_workflows_dir (ctl, to, sizeof to);
    DIR *d = opendir (from);
    if (!d)
        return 0;               /* no example workflows in this tree */
    if (s_mkdirs (to)) {
        int err = errno;
        closedir (d);
        if (!s_not_ours (err)) {
            fprintf (stderr, "sanctumctl seed: cannot create %s: %s\n", to, strerror (err));
            return -1;
        }
        fprintf (stderr, "sanctumctl seed: skipping the workflows: cannot create %s (%s); the orchestrator "
                 "reads its own: put %s/*.json there\n", to, strerror (err), from);
        json_array_append_new (skipped, json_sprintf ("workflows (%s: %s)", to, strerror (err)));
        return 0;
    }
    int rc = 0;
    struct dirent *e;
    while ((e = readdir (d)) && rc == 0) {
        size_t n = strlen (e->d_name);
        if (n < 6 || strcmp (e->d_name + n - 5, ".json") || e->d_name [0] == '.')
            continue;
        char src [PATH_MAX * 2], dst [PATH_MAX * 2];
        snprintf (src, sizeof src, "%s/%s", from, e->d_name);
        snprintf (dst, sizeof dst, "%s/%s", to, e->d_name);
        if (access (dst, F_OK) == 0)
            continue;
        if (s_copy (src, dst)) {
            int err = errno;
            if (s_not_ours (err)) {
                fprintf (stderr, "sanctumctl seed: skipping workflow %s: cannot write %s (%s); the orchestrator "
                         "reads its own\n", e->d_name, to, strerror (err));
                json_array_append_new (skipped, json_sprintf ("workflow %s (%s: %s)", e->d_name, to, strerror (err)));
            }
            else {
                fprintf (stderr, "sanctumctl seed: cannot copy %s to %s: %s\n", src, dst, strerror (err));
                rc = -1;
            }
        }
        else {
            char what [PATH_MAX + 16];
            snprintf (what, sizeof what, "workflow %s", e->d_name);
            json_array_append_new (done, json_string (what));
        }
    }
    closedir (d);
    return rc;
}

/*  Ask the orchestrator to read its workflows again (it may have started
    before they were copied). Its absence is no failure: it reads the
    directory when it starts. */
static void
s_reload_workflows (ctl_t *ctl, int64_t deadline)
{
    proto_msg_t *reply = NULL;
    if (s_request (ctl, "orchestrator", "orch.workflow_load", json_object (), deadline, &reply) == 0 && !reply->ok
        && strcmp (s_code (reply), "not_implemented"))
        ctl_print_error (ctl, reply);
    proto_msg_destroy (&reply);
}

int
ctl_seed (ctl_t *ctl, const char *examples_dir, int wait_ms)
{
    char examples [PATH_MAX], marker [PATH_MAX + 32], lock [PATH_MAX + 32];
    const char *data = bus_config_str (ctl->config, "sanctum", "data_dir");
    if (!s_find_examples (examples_dir, examples, sizeof examples)) {
        fprintf (stderr, "sanctumctl seed: no examples at %s (set SANCTUM_EXAMPLES or --examples)\n", examples);
        return CTL_ERROR;
    }
    if (s_mkdirs (data)) {
        fprintf (stderr, "sanctumctl seed: cannot create %s: %s\n", data, strerror (errno));
        return CTL_ERROR;
    }
    snprintf (marker, sizeof marker, "%s/seeded.json", data);
    snprintf (lock, sizeof lock, "%s/seed.lock", data);
    int fd = open (lock, O_RDWR | O_CREAT, 0600);
    if (fd < 0 || flock (fd, LOCK_EX)) {
        fprintf (stderr, "sanctumctl seed: cannot lock %s: %s\n", lock, strerror (errno));
        if (fd >= 0)
            close (fd);
        return CTL_ERROR;
    }
    int rc = CTL_OK;
    json_t *done = json_array (), *skipped = json_array ();
    if (access (marker, F_OK) == 0) {
        fprintf (stderr, "sanctumctl seed: the example was seeded before (%s): nothing to do\n", marker);
        goto done;
    }
    int64_t deadline = zclock_mono () + wait_ms;
    if (s_seed_workflows (ctl, examples, done, skipped) || s_seed_authz (ctl, examples, deadline, done)
        || s_seed_devices (ctl, deadline, done) || s_seed_connections (ctl, deadline, done)) {
        fprintf (stderr, "sanctumctl seed: not finished (the next run tries again)\n");
        rc = CTL_ERROR;
        goto done;
    }
    size_t i;
    json_t *item;
    bool copied = false;
    json_array_foreach (done, i, item)
        copied |= !strncmp (json_string_value (item), "workflow ", 9);
    if (copied)
        s_reload_workflows (ctl, deadline);
    if (json_array_size (skipped)) {
        /* not recorded: the next seed looks again at what it skipped */
        fprintf (stderr, "sanctumctl seed: the procurement example is in (%zu items seeded), but for %zu skipped "
                 "(not recorded: the next seed looks again)\n", json_array_size (done), json_array_size (skipped));
        goto done;
    }
    char when [32];
    time_t now = time (NULL);
    strftime (when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime (&now));
    json_t *record = json_pack ("{s:s, s:s, s:O}", "seeded_at", when, "examples", examples, "seeded", done);
    if (!record || json_dump_file (record, marker, JSON_INDENT (2))) {
        fprintf (stderr, "sanctumctl seed: cannot write %s\n", marker);
        rc = CTL_ERROR;
    }
    json_decref (record);
    if (rc == CTL_OK)
        fprintf (stderr, "sanctumctl seed: the procurement example is in (%zu items seeded)\n", json_array_size (done));
done:
    if (ctl->json) {
        json_t *out = json_pack ("{s:b, s:O, s:O}", "ok", rc == CTL_OK, "seeded", done, "skipped", skipped);
        ctl_print_json (out, true);
        json_decref (out);
    }
    json_decref (done);
    json_decref (skipped);
    flock (fd, LOCK_UN);
    close (fd);
    return rc;
}

int
ctl_cmd_seed (ctl_t *ctl)
{
    const char *examples = NULL;
    long wait_ms = 60000;
    for (int i = 0; i < ctl->argc; i++) {
        if (streq (ctl->argv [i], "--examples") && i + 1 < ctl->argc)
            examples = ctl->argv [++i];
        else if (streq (ctl->argv [i], "--wait-ms") && i + 1 < ctl->argc) {
            char *end;
            wait_ms = strtol (ctl->argv [++i], &end, 10);
            if (*end || wait_ms < 0 || wait_ms > 3600000) {
                fprintf (stderr, "sanctumctl seed: --wait-ms: 0 to 3600000\n");
                return CTL_USAGE;
            }
        }
        else {
            fprintf (stderr, "usage: sanctumctl seed [--examples DIR] [--wait-ms N]\n");
            return CTL_USAGE;
        }
    }
    return ctl_seed (ctl, examples, (int) wait_ms);
}
