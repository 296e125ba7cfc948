/*  orch_agent.c — scripted and chat agents. See orch_agent.h. */
#include "orch_agent.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct orch_agent_config_t {
    char *kind;
    char *base_url;
    char *model;
    char *key;
};

int
orch_agent_config_load (orch_agent_config_t **out, bus_config_t *config, char *err, size_t errlen)
{
    *out = NULL;
    snprintf (err, errlen, "agents not built yet");
    return -1;
}

void
orch_agent_config_destroy (orch_agent_config_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    orch_agent_config_t *self = *self_p;
    free (self->kind);
    free (self->base_url);
    free (self->model);
    free (self->key);
    free (self);
    *self_p = NULL;
}

int
orch_agent_scripted (const json_t *node, const json_t *state, json_t **output, json_t **calls,
                     char *err, size_t errlen)
{
    *output = NULL;
    *calls = NULL;
    snprintf (err, errlen, "agents not built yet");
    return -1;
}

int
orch_agent_chat_request (const orch_agent_config_t *cfg, const json_t *node, const json_t *tools,
                         const json_t *state, orch_http_call_t **out, char *err, size_t errlen)
{
    *out = NULL;
    snprintf (err, errlen, "agents not built yet");
    return -1;
}

int
orch_agent_chat_response (int status, const char *body, size_t len, json_t **output,
                          json_t **calls, char *err, size_t errlen)
{
    *output = NULL;
    *calls = NULL;
    snprintf (err, errlen, "agents not built yet");
    return -1;
}
