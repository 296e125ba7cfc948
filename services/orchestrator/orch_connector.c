/*  orch_connector.c — tool connectors: request shapes, DPoP proofs and
    response classification. See orch_connector.h. */
#include "orch_connector.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus_jose.h"

int
orch_connector_known (const char *connector)
{
    return 0;
}

int
orch_connector_check_args (const char *connector, const json_t *args_template, char *err, size_t errlen)
{
    snprintf (err, errlen, "connectors not built yet");
    return -1;
}

int
orch_connector_request (const orch_call_t *call, orch_http_call_t **out, char *err, size_t errlen)
{
    *out = NULL;
    snprintf (err, errlen, "connectors not built yet");
    return -1;
}

void
orch_http_call_destroy (orch_http_call_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    orch_http_call_t *self = *self_p;
    free (self->method);
    free (self->url);
    if (self->headers)
        for (char **h = self->headers; *h; h++)
            free (*h);
    free (self->headers);
    free (self->content_type);
    free (self->body);
    free (self);
    *self_p = NULL;
}

orch_call_outcome_t
orch_connector_response (const char *connector, int transport_error, int status, const char *retry_after,
                         const char *body, size_t len, json_t **result, int64_t *retry_after_ms)
{
    *result = json_pack ("{s:i, s:s}", "status", status, "error", "connectors not built yet");
    *retry_after_ms = 0;
    return ORCH_CALL_FAIL;
}

char *
orch_dpop_public_jwk_thumbprint (const uint8_t *node_pk)
{
    return bus_b64url_encode (node_pk, BUS_JOSE_PK_LEN);
}
