/*  ctl.h — what sanctumctl's commands share.

    Every command takes --config FILE (default $SANCTUM_CONFIG, else
    ./var/sanctum.conf; relative paths in it are relative to its folder),
    --json, and --key NAME (the client certificate in keys_dir, default
    "sanctumctl"). A key a service refuses at the handshake is reported at
    once (ctl_print_call_error), not retried. Exit codes: 0 success, 1 error, 2 bad
    usage (a service's `invalid` reply included: ctl_error_exit), 3 a denial
    or a failed verification.
*/
#ifndef CTL_H
#define CTL_H

#include <czmq.h>
#include <jansson.h>
#include <stdbool.h>

#include "bus_client.h"
#include "bus_config.h"
#include "bus_error.h"

#define CTL_OK      0
#define CTL_ERROR   1
#define CTL_USAGE   2
#define CTL_DENIED  3

typedef struct {
    const char *config_path;
    const char *key_name;
    bool json;
    bus_config_t *config;
    zcert_t *cert;
    int argc;             /* the command's own arguments, after the options */
    char **argv;
} ctl_t;

/*  Load config (and the client cert unless no_cert). Returns CTL_OK or
    CTL_ERROR with a message on stderr. */
int ctl_load (ctl_t *ctl, bool no_cert);

/*  A client for a service, with the user's cert; prints an error and
    returns NULL when the service's public key is unknown. */
bus_client_t *ctl_client (ctl_t *ctl, const char *service);

/*  Say on stderr why a call to service failed with crc: for BUS_EAUTH,
    which key the service refused (ours, or the server key we use) and the
    file it came from, e.g. "sanctumctl: authz refused our key K (from
    /x/var/keys/sanctumctl.key): ..."; else bus_strerror. into (may be
    NULL, size len) gets a short form for a table or JSON. */
void ctl_print_call_error (ctl_t *ctl, const char *service, bus_client_t *client, int crc,
                           char *into, size_t len);

/*  Print a JSON value (pretty unless compact), followed by a newline. */
void ctl_print_json (json_t *value, bool compact);

/*  Success of a command with nothing else to say: the text for people,
    {"ok": true} with --json. */
void ctl_print_done (ctl_t *ctl, const char *text);

/*  Exit code for an error reply: CTL_DENIED for forbidden, CTL_USAGE for
    invalid (the service refused what the user typed: an argument, a
    file's content, inject's JSON), else CTL_ERROR. */
int ctl_error_exit (proto_msg_t *reply);

/*  Print an error reply for people (or as JSON with --json). */
void ctl_print_error (ctl_t *ctl, proto_msg_t *reply);

/*  After ctl_print_error: what to do next, for people (not with --json),
    when the reply's error code is code, e.g. ctl_print_hint (ctl, reply,
    "not_found", "`sanctumctl run list` shows the runs"). */
void ctl_print_hint (ctl_t *ctl, proto_msg_t *reply, const char *code, const char *hint);

/*  Commands. */
int ctl_cmd_keygen (ctl_t *ctl);
int ctl_cmd_init (ctl_t *ctl);
int ctl_cmd_health (ctl_t *ctl);
int ctl_cmd_inject (ctl_t *ctl);
int ctl_cmd_tap (ctl_t *ctl);
int ctl_cmd_up (ctl_t *ctl);
int ctl_cmd_authz (ctl_t *ctl);
int ctl_cmd_authz_test (ctl_t *ctl);
int ctl_cmd_audit (ctl_t *ctl);
int ctl_cmd_receipt (ctl_t *ctl);
int ctl_cmd_device (ctl_t *ctl);
int ctl_cmd_approvals (ctl_t *ctl);
int ctl_cmd_approve (ctl_t *ctl);
int ctl_cmd_deny (ctl_t *ctl);
int ctl_cmd_vault (ctl_t *ctl);
int ctl_cmd_sandbox (ctl_t *ctl);
int ctl_cmd_run (ctl_t *ctl);
int ctl_cmd_workflows (ctl_t *ctl);
int ctl_cmd_demo (ctl_t *ctl);

/*  Create config and keys under the config's directories when missing:
    the config file at path (if given and absent), a keypair per service
    and for sanctumctl, each in the allow-list. Used by `up` and `init`. */
int ctl_init_local (ctl_t *ctl);

/*  `seed`: load the procurement example into the running suite, each item
    only when missing, once (<data_dir>/seeded.json); waits up to wait_ms
    for the services. examples_dir NULL: found as ctl_seed.c says. Used
    by `up` on first start and by `seed`. Returns CTL_OK or CTL_ERROR. */
int ctl_seed (ctl_t *ctl, const char *examples_dir, int wait_ms);
int ctl_cmd_seed (ctl_t *ctl);

#endif
