/*  ctl_common.c — config, client cert, printing, exit codes. */
#include "ctl.h"
#include "bus_daemon.h"
#include "bus_keys.h"
#include "bus_log.h"

#include <stdio.h>
#include <unistd.h>

int
ctl_load (ctl_t *ctl, bool no_cert)
{
    char err [512] = "";
    if (!ctl->config_path)
        ctl->config_path = bus_default_config_path ();
    bus_log_init ("sanctumctl", "warn");
    if (bus_config_load (&ctl->config, ctl->config_path, err, sizeof err)) {
        fprintf (stderr, "sanctumctl: configuration: %s\n", err);
        return CTL_ERROR;
    }
    if (no_cert)
        return CTL_OK;
    const char *keys = bus_config_str (ctl->config, "sanctum", "keys_dir");
    char secret [4200];
    snprintf (secret, sizeof secret, "%s/%s.key_secret", keys, ctl->key_name);
    /* a missing key is said once, below, rather than logged first */
    if (access (secret, F_OK) == 0)
        ctl->cert = bus_keys_load (keys, ctl->key_name, false);
    if (!ctl->cert) {
        if (ctl->config_path)
            fprintf (stderr, "sanctumctl: no client key %s/%s.key_secret (keys_dir of %s; relative paths "
                             "there are relative to its folder); run `sanctumctl init` (for ./var), or "
                             "`sanctumctl --config %s keygen %s --principal ops:%s`\n",
                     keys, ctl->key_name, ctl->config_path, ctl->config_path, ctl->key_name, ctl->key_name);
        else
            fprintf (stderr, "sanctumctl: no client key %s/%s.key_secret (no config file: no --config, no "
                             "$SANCTUM_CONFIG, no ./var/sanctum.conf here); run `sanctumctl init`, or pass "
                             "--config DIR/var/sanctum.conf\n",
                     bus_config_str (ctl->config, "sanctum", "keys_dir"), ctl->key_name);
        return CTL_ERROR;
    }
    return CTL_OK;
}

bus_client_t *
ctl_client (ctl_t *ctl, const char *service)
{
    bus_client_t *client = bus_client_for (ctl->config, service, ctl->cert);
    if (!client)
        fprintf (stderr, "sanctumctl: unknown service '%s' or no public key for it in %s\n", service,
                 bus_config_str (ctl->config, "sanctum", "keys_dir"));
    return client;
}

void
ctl_print_call_error (ctl_t *ctl, const char *service, bus_client_t *client, int crc, char *into, size_t len)
{
    const char *keys_dir = bus_config_str (ctl->config, "sanctum", "keys_dir");
    const char *config = ctl->config_path ? ctl->config_path : "none (built-in defaults, relative to this folder)";
    const char *text = NULL;
    int why = crc == BUS_EAUTH && client ? bus_client_auth_error (client, &text) : 0;
    char line [1024];
    if (why == BUS_CLIENT_REFUSED) {
        snprintf (line, sizeof line, "%s refused our key %s (from %s/%s.key): it is not in %s's allow-list; "
                  "is this the configuration of the Sanctum you mean? (config: %s)",
                  service, zcert_public_txt (ctl->cert), keys_dir, ctl->key_name, service, config);
        if (into)
            snprintf (into, len, "%s refused our key %s (from %s/%s.key)", service, zcert_public_txt (ctl->cert),
                      keys_dir, ctl->key_name);
    }
    else
    if (why == BUS_CLIENT_MISMATCH) {
        snprintf (line, sizeof line, "%s at %s did not accept the CURVE handshake: the server key we use for it, "
                  "%s (from %s/%s.key), is not the key of the server there; is this the configuration of the "
                  "Sanctum you mean? (config: %s)",
                  service, bus_client_endpoint (client), bus_client_server_key (client), keys_dir, service, config);
        if (into)
            snprintf (into, len, "%s's key %s (from %s/%s.key) is not the server's", service,
                      bus_client_server_key (client), keys_dir, service);
    }
    else {
        snprintf (line, sizeof line, "%s: %s", service, bus_strerror (crc));
        if (into)
            snprintf (into, len, "%s", bus_strerror (crc));
    }
    fprintf (stderr, "sanctumctl: %s\n", line);
}

void
ctl_print_json (json_t *value, bool compact)
{
    char *text = json_dumps (value, (compact ? JSON_COMPACT : JSON_INDENT (2)) | JSON_SORT_KEYS
                                    | JSON_ENCODE_ANY);
    if (text) {
        puts (text);
        free (text);
    }
    fflush (stdout);
}

void
ctl_print_done (ctl_t *ctl, const char *text)
{
    if (ctl->json)
        puts ("{\"ok\": true}");
    else
        puts (text);
    fflush (stdout);
}

int
ctl_error_exit (proto_msg_t *reply)
{
    const char *code = json_string_value (json_object_get (reply->error, "code")) ?: "";
    if (streq (code, PROTO_ERR_FORBIDDEN))
        return CTL_DENIED;
    /* what the user typed (an argument, a file, inject's JSON) is refused */
    if (streq (code, PROTO_ERR_INVALID))
        return CTL_USAGE;
    return CTL_ERROR;
}

void
ctl_print_error (ctl_t *ctl, proto_msg_t *reply)
{
    if (ctl->json) {
        json_t *out = json_pack ("{s:b, s:O}", "ok", 0, "error", reply->error);
        ctl_print_json (out, true);
        json_decref (out);
    }
    else
        fprintf (stderr, "error %s: %s\n", json_string_value (json_object_get (reply->error, "code")) ?: "?",
                 json_string_value (json_object_get (reply->error, "message")) ?: "(no message)");
}

void
ctl_print_hint (ctl_t *ctl, proto_msg_t *reply, const char *code, const char *hint)
{
    const char *got = reply && !reply->ok ? json_string_value (json_object_get (reply->error, "code")) : NULL;
    if (!ctl->json && got && streq (got, code))
        fprintf (stderr, "  %s\n", hint);
}
