/*  ctl_keys.c — keygen and init: CURVE keypairs, allow-list, local config. */
#include "ctl.h"
#include "bus_keys.h"
#include "bus_service.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

/*  Generate <keys_dir>/<name> if missing and allow it as principal. */
static int
s_keygen (ctl_t *ctl, const char *name, const char *principal, bool quiet)
{
    const char *keys_dir = bus_config_str (ctl->config, "sanctum", "keys_dir");
    const char *allow_dir = bus_config_str (ctl->config, "sanctum", "allow_dir");
    zcert_t *cert = bus_keys_load (keys_dir, name, true);
    if (!cert) {
        fprintf (stderr, "sanctumctl: cannot create the key %s/%s\n", keys_dir, name);
        return CTL_ERROR;
    }
    int rc = bus_allow_add (allow_dir, name, zcert_public_txt (cert), principal);
    if (rc) {
        fprintf (stderr, "sanctumctl: cannot allow %s as %s: %s\n", name, principal,
                 rc == BUS_EEXIST ? "that key is already allowed under another name" : bus_strerror (rc));
        zcert_destroy (&cert);
        return CTL_ERROR;
    }
    if (!quiet) {
        if (ctl->json) {
            json_t *out = json_pack ("{s:s, s:s, s:s, s:s}", "name", name, "principal", principal,
                                     "public_key", zcert_public_txt (cert), "keys_dir", keys_dir);
            ctl_print_json (out, false);
            json_decref (out);
        }
        else
            printf ("%s  %s  %s/%s.key\n", principal, zcert_public_txt (cert), keys_dir, name);
    }
    zcert_destroy (&cert);
    return CTL_OK;
}

int
ctl_cmd_keygen (ctl_t *ctl)
{
    const char *name = NULL, *principal = NULL;
    for (int i = 0; i < ctl->argc; i++) {
        if (streq (ctl->argv [i], "--principal") && i + 1 < ctl->argc)
            principal = ctl->argv [++i];
        else if (!name)
            name = ctl->argv [i];
        else {
            name = NULL;
            break;
        }
    }
    if (!name || !principal) {
        fprintf (stderr, "usage: sanctumctl keygen NAME --principal svc:NAME|ops:NAME|ext:NAME|user:NAME\n");
        return CTL_USAGE;
    }
    if (!bus_principal_valid (principal)) {
        fprintf (stderr, "sanctumctl: '%s' is not a principal (svc:|ops:|ext:|user: then [A-Za-z0-9._@-])\n", principal);
        return CTL_USAGE;
    }
    if (!bus_key_name_valid (name)) {
        fprintf (stderr, "sanctumctl: '%s' is not a key name (1-64 of [A-Za-z0-9._-], not starting with '.')\n", name);
        return CTL_USAGE;
    }
    return s_keygen (ctl, name, principal, false);
}

/*  mkdir -p */
static void
s_mkdirs (const char *path)
{
    char *copy = strdup (path);
    for (char *p = copy + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir (copy, 0700);
            *p = '/';
        }
    mkdir (copy, 0700);
    free (copy);
}

int
ctl_init_local (ctl_t *ctl)
{
    const char *path = ctl->config_path ? ctl->config_path : "./var/sanctum.conf";
    if (access (path, F_OK) != 0) {
        char *dir = strdup (path);
        s_mkdirs (dirname (dir));
        free (dir);
        /* paths relative to the file's folder, as it will be read */
        if (bus_config_write_file (ctl->config, path)) {
            fprintf (stderr, "sanctumctl: cannot write %s: %s\n", path, strerror (errno));
            return CTL_ERROR;
        }
        fprintf (stderr, "sanctumctl: wrote %s\n", path);
    }
    for (const bus_service_id_t *s = bus_services; s->name; s++) {
        char principal [64];
        snprintf (principal, sizeof principal, "svc:%s", s->name);
        if (s_keygen (ctl, s->name, principal, true))
            return CTL_ERROR;
    }
    return s_keygen (ctl, "sanctumctl", "ops:sanctumctl", true);
}

int
ctl_cmd_init (ctl_t *ctl)
{
    int rc = ctl_init_local (ctl);
    if (rc == CTL_OK)
        ctl_print_done (ctl, "config and keys ready");
    return rc;
}
