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
    { "authz",  ctl_cmd_authz,  false, "authz [--store ID] model write FILE | write|delete USER RELATION OBJECT | write --file F\n"
                                       "        | check USER RELATION OBJECT | policy write FILE | decide PRINCIPAL ACTION RESOURCE\n"
                                       "        [--context JSON] | store create NAME | store list | test FILE" },
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

/*  `sanctumctl COMMAND --help`: the command's usage, then what it does,
    its --json shape and its exit codes. */
static const struct { const char *name, *text; } s_details [] = {
    { "up",
      "Creates ./var (config, CURVE keys, allow-list) on first start, then starts the\n"
      "seven daemons one at a time, each once the one before is ready; prefixes their\n"
      "log lines with their names; restarts one that exits (backoff 1 s to 30 s); seeds\n"
      "the procurement example on first start. Ctrl-C stops them in reverse order.\n"
      "  --seed     seed the example whatever the config   --no-seed  never seed\n"
      "Exit: 0 once stopped; 1 when the config or keys cannot be made." },
    { "init",
      "Writes ./var/sanctum.conf and every service's keys if missing; starts nothing.\n"
      "Exit: 0; 1 when a file cannot be written." },
    { "seed",
      "Loads the procurement example into the running suite, each item only when missing:\n"
      "model, tuples, policy, approver devices (their secrets under KEYS_DIR/devices),\n"
      "sandbox connections, workflows. Waits up to --wait-ms for the services to answer.\n"
      "Exit: 0 when seeded (or already); 1 when a service refused or did not answer." },
    { "keygen",
      "Writes a CURVE keypair NAME.key / NAME.key_secret in keys_dir and adds the public\n"
      "key to the allow-list with principal P (svc:NAME for a service; ext:NAME or\n"
      "ops:NAME for a client). Exit: 0; 1 on a file error; 2 without --principal." },
    { "health",
      "Each service's state, version and uptime (or one SERVICE's).\n"
      "--json: {\"services\": {NAME: {\"state\": \"ok\", ...}}}\n"
      "Exit: 0 when every service asked answered ok; 1 otherwise, saying which and why." },
    { "inject",
      "Sends request TYPE with body JSON to the service that owns TYPE (or --service S)\n"
      "and prints the reply. A TYPE that is no request of the catalogue is refused here,\n"
      "with the near names (every type: proto/PROTOCOL.md section 10).\n"
      "Exit: 0 on an ok reply; 2 invalid (the request as typed, or no such request type);\n"
      "3 forbidden; 1 on any other error reply." },
    { "tap",
      "Prints live events of every service (or --service S), filtered by topic prefix;\n"
      "--replay first prints what the outboxes still keep. Ends after --count N events\n"
      "or --timeout-ms T. --json: one event per line.\n"
      "Exit: 0; 1 when --count N events did not come within --timeout-ms T, or no service\n"
      "could be followed." },
    { "authz",
      "The authz service: models (OpenFGA JSON or DSL), tuples, checks, the policy and\n"
      "its decisions. `authz test FILE` runs an OpenFGA test file on an embedded engine\n"
      "(no service needed) and prints pass/fail counts. write|delete take --ignore-existing\n"
      "(tuples already there, or already gone, are skipped); write --file F takes a JSON\n"
      "list of tuple keys. --store ID works on that store (default: the default store).\n"
      "Exit: 0; 2 bad usage or a request refused as invalid (e.g. a model's syntax error);\n"
      "3 when a check or decision says no, or a test fails; 1 on any other error." },
    { "audit",
      "The audit log's signed tree head, and inclusion or consistency proofs checked here\n"
      "against it (--jwks FILE: the auditor's keys obtained elsewhere).\n"
      "--json: {\"verified\", \"checks\": [{\"check\", \"ok\"}], \"failed\"?, ...}; jwks: the JWKS\n"
      "Exit: 0; 2 bad usage or an index or size the auditor refuses as invalid; 3 when a\n"
      "proof or signature does not hold; 1 on any other error." },
    { "receipt",
      "get RUN: the run's signed receipt (a compact JWS) on stdout. verify FILE: the JWS\n"
      "signature, the HMAC (--hmac-key), every inclusion proof against the signed head and\n"
      "every approval's device signature, checked offline, each check printed.\n"
      "--json verify: {\"run\", \"state\", \"verified\", \"checks\": [{\"check\", \"ok\"}], \"failed\"?}\n"
      "Exit: 0 when all hold; 3 on any failure, saying which; 2 bad usage (an invalid RUN\n"
      "included); 1 on any other error." },
    { "device",
      "Approver devices of the local CIBA backend: enroll makes an Ed25519 key for USER\n"
      "(the secret kept under KEYS_DIR/devices, 0600); invite prints a one-time code that\n"
      "enrols a browser from the dashboard; list; revoke.\n"
      "Exit: 0; 2 bad usage or a USER the broker refuses as invalid; 3 when the broker\n"
      "answers forbidden; 1 on any other error." },
    { "approvals",
      "Pending approval requests (USER's only, with --as).\n"
      "--json: {\"approvals\": [{\"auth_req_id\", \"approval_id\", \"approver\", \"run\", \"node\",\n"
      "         \"binding_message\", \"expires_at\"}]}\n"
      "Exit: 0 (none pending included); 2 bad usage or an invalid USER; 1 on error." },
    { "approve",
      "Approves AUTH_REQ_ID as USER, the decision signed with USER's enrolled device.\n"
      "Exit: 0; 3 when the broker answers forbidden (not USER's request); 2 bad usage or\n"
      "a request refused as invalid; 1 on any other error, e.g. a request already decided\n"
      "or expired." },
    { "deny",
      "Denies AUTH_REQ_ID as USER, the decision signed with USER's enrolled device.\n"
      "Exit: 0; 3 when the broker answers forbidden; 2 bad usage or a request refused as\n"
      "invalid; 1 on any other error." },
    { "vault",
      "Connected accounts (--kind google-sheets|gmail|dropbox|oauth|local; the secret read\n"
      "from --secret-file, never from the command line) and their leases.\n"
      "--json leases: {\"leases\": [{\"lease_id\", \"run\", \"node\", \"connection\", \"scopes\",\n"
      "               \"ttl\", \"state\", \"issued_at\", \"expires_at\"}]}\n"
      "disconnect, revoke and rotate-key say what they did (--json: the vault's reply).\n"
      "Exit: 0; 2 bad usage or a request the vault refuses as invalid (e.g. an unknown\n"
      "--kind); 3 when the vault answers forbidden; 1 on any other error." },
    { "sandbox",
      "The rows the sandbox (the demo's mock ERP) stored for SHEET (the procurement\n"
      "workflow writes its orders to sheet erp), one a line, cells tab-separated; an\n"
      "unknown SHEET has no rows.\n"
      "--json: {\"sheet\", \"rows\": [[...], ...]}\n"
      "Exit: 0; 2 bad usage or an invalid SHEET; 1 on error." },
    { "run",
      "The orchestrator's runs: start (inputs as KEY=VALUE), get, wait (until the run ends\n"
      "or pauses), cancel, list.\n"
      "--json: {\"run\", \"state\", \"reason\", \"workflow\", \"nodes\": [...], \"approval\"?: {...}};\n"
      "        list: {\"runs\": [...]}\n"
      "Exit: 0; 1 on error or a FAILED run; 2 bad usage or a request refused as invalid\n"
      "(e.g. list --state BOGUS); 3 a REJECTED run." },
    { "workflows",
      "The workflows the orchestrator has loaded, with their hashes; --load reads the\n"
      "files again and says, for each refused file, the node and field at fault.\n"
      "--json: {\"workflows\": [{\"workflow\", \"hash\", \"file\", \"nodes\"}], \"errors\"?: [...]}\n"
      "Exit: 0; 1 on error or when a file was refused." },
    { NULL, NULL }
};

static void
s_command_usage (const s_command_t *cmd)
{
    printf ("usage: sanctumctl [--config FILE] [--json] [--key NAME] %s\n", cmd->usage);
    for (size_t i = 0; s_details [i].name; i++)
        if (streq (s_details [i].name, cmd->name))
            printf ("\n%s\n", s_details [i].text);
}

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
            if (cmd)
                s_command_usage (cmd);
            else
                s_usage (stdout);
            free (rest);
            return CTL_OK;
        }
        else if (streq (argv [i], "--config") || streq (argv [i], "--key")) {
            fprintf (stderr, "sanctumctl: %s takes a value: %s\n", argv [i],
                     streq (argv [i], "--config") ? "--config FILE" : "--key NAME");
            free (rest);
            return CTL_USAGE;
        }
        else if (!cmd && argv [i][0] == '-') {
            fprintf (stderr, "sanctumctl: unknown option '%s' (before the command: --config FILE, --json, "
                             "--key NAME, --help)\n", argv [i]);
            free (rest);
            return CTL_USAGE;
        }
        else if (!cmd) {
            for (const s_command_t *c = s_commands; c->name; c++)
                if (streq (c->name, argv [i]))
                    cmd = c;
            if (!cmd) {
                fprintf (stderr, "sanctumctl: unknown command '%s' (`sanctumctl --help` lists them)\n", argv [i]);
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
