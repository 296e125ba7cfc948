/*  sanctumctl — the one tool for operators, approvers and scripts. */
#include "ctl.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;
    int (*fn) (ctl_t *ctl);
    bool no_cert;          /* runs before keys exist */
    const char *usage;
} s_command_t;

static const s_command_t s_commands [] = {
    { "up",     ctl_cmd_up,     true,  "up                         start every process under a supervisor; Ctrl-C stops them all" },
    { "init",   ctl_cmd_init,   true,  "init                       create ./var config and keys if missing" },
    { "seed",   ctl_cmd_seed,   false, "seed [--examples DIR] [--wait-ms N]  load the procurement example once (model, tuples,\n"
                                       "        policy, approver devices, sandbox connections, workflows); `up` does it on first start" },
    { "keygen", ctl_cmd_keygen, true,  "keygen NAME --principal P  a CURVE keypair for a service or client, added to the allow-list" },
    { "health", ctl_cmd_health, false, "health [SERVICE]           each service's state, version, uptime" },
    { "inject", ctl_cmd_inject, false, "inject TYPE JSON [--service S]  send any request on the bus, print the reply" },
    { "tap",    ctl_cmd_tap,    false, "tap [TOPIC]... [--service S] [--replay] [--count N] [--timeout-ms T]  print live events" },
    { "authz",  ctl_cmd_authz,  false, "authz model write FILE | write|delete USER RELATION OBJECT | check USER RELATION OBJECT\n"
                                       "        | policy write FILE | decide PRINCIPAL ACTION RESOURCE [--context JSON] | test FILE" },
    { "audit",  ctl_cmd_audit,  false, "audit head | proof INDEX [--size N] | consistency OLD [NEW] [--jwks FILE]  the signed\n"
                                       "        tree head and proofs, checked here | jwks" },
    { "receipt", ctl_cmd_receipt, false, "receipt get RUN | verify FILE [--jwks FILE] [--hmac-key FILE] | jwks [--out FILE] | gantt RUN\n"
                                       "        a run's signed receipt; verify checks it offline (exit 0, or 3 saying where)" },
    { "device", ctl_cmd_device, false, "device enroll USER | invite USER [--ttl S] | list [USER] | revoke USER  approver devices\n"
                                       "        (Ed25519; enroll keeps the secret under KEYS_DIR/devices, 0600; invite prints a\n"
                                       "        one-time code that enrols a browser from the dashboard)" },
    { "approvals", ctl_cmd_approvals, false, "approvals [--as USER]      pending approval requests" },
    { "approve", ctl_cmd_approve, false, "approve AUTH_REQ_ID --as USER  approve, signing with USER's enrolled device" },
    { "deny",   ctl_cmd_deny,   false, "deny AUTH_REQ_ID --as USER     deny, signing with USER's enrolled device" },
    { "vault",  ctl_cmd_vault,  false, "vault connect NAME --kind K --scopes S,... [--secret-file F] | disconnect NAME | connections\n"
                                       "        | leases [--run RUN] | revoke LEASE | revoke --run RUN | rotate-key [master|signing] | jwks" },
    { "sandbox", ctl_cmd_sandbox, false, "sandbox rows SHEET          the rows the sandbox's Sheets API stored" },
    { "run",    ctl_cmd_run,    false, "run start WORKFLOW [--input KEY=VALUE]... | get RUN | wait RUN [--timeout-ms T] | cancel RUN\n"
                                       "        | list [--state STATE]  the orchestrator's runs (exit 3: REJECTED)" },
    { "workflows", ctl_cmd_workflows, false, "workflows [--load]         the orchestrator's workflows (--load: read the files again)" },
    { "demo",   ctl_cmd_demo,   false, "demo                       the procurement story, unattended, on the running suite; exit 0\n"
                                       "        with a verified receipt (demo --help)" },
    { NULL, NULL, false, NULL }
};

static void
s_usage (FILE *out)
{
    fprintf (out, "usage: sanctumctl [--config FILE] [--json] [--key NAME] COMMAND [ARGS]\n\ncommands:\n");
    for (const s_command_t *c = s_commands; c->name; c++)
        fprintf (out, "  %s\n", c->usage);
}

int
main (int argc, char **argv)
{
    ctl_t ctl = { .key_name = "sanctumctl" };
    int i = 1;
    const s_command_t *cmd = NULL;
    /* options may stand before or after the command */
    char **rest = calloc ((size_t) argc + 1, sizeof *rest);
    int nrest = 0;
    for (; i < argc; i++) {
        if (streq (argv [i], "--config") && i + 1 < argc)
            ctl.config_path = argv [++i];
        else if (streq (argv [i], "--key") && i + 1 < argc)
            ctl.key_name = argv [++i];
        else if (streq (argv [i], "--json"))
            ctl.json = true;
        else if ((streq (argv [i], "--help") || streq (argv [i], "-h")) && cmd && cmd->fn == ctl_cmd_demo)
            rest [nrest++] = argv [i];
        else if (streq (argv [i], "--help") || streq (argv [i], "-h")) {
            s_usage (stdout);
            free (rest);
            return CTL_OK;
        }
        else if (!cmd) {
            for (const s_command_t *c = s_commands; c->name; c++)
                if (streq (c->name, argv [i]))
                    cmd = c;
            if (!cmd) {
                fprintf (stderr, "sanctumctl: unknown command '%s'\n", argv [i]);
                s_usage (stderr);
                free (rest);
                return CTL_USAGE;
            }
        }
        else
            rest [nrest++] = argv [i];
    }
    if (!cmd) {
        s_usage (stderr);
        free (rest);
        return CTL_USAGE;
    }
    ctl.argc = nrest;
    ctl.argv = rest;
    /* `authz test` runs an embedded engine: it needs no key */
    bool no_cert = cmd->no_cert || (cmd->fn == ctl_cmd_authz && nrest > 0 && streq (rest [0], "test"))
                || (cmd->fn == ctl_cmd_receipt && nrest > 0 && streq (rest [0], "verify"))
                || (cmd->fn == ctl_cmd_demo && nrest > 0);
    int rc = ctl_load (&ctl, no_cert);
    if (rc == CTL_OK)
        rc = cmd->fn (&ctl);
    zcert_destroy (&ctl.cert);
    bus_config_destroy (&ctl.config);
    free (rest);
    return rc;
}
