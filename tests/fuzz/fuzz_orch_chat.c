/*  fuzz_orch_chat.c — libFuzzer target for what the orchestrator reads
    from the outside world: a chat model's answer
    (orch_agent_chat_response) and an upstream API's response
    (orch_connector_response).

    The first byte picks a status (200, 201, 400, 429, 500) and the
    parser; the rest is the body, given as is (no terminating NUL). Any
    input: no crash, leak or read past the buffer. The chat parser either
    succeeds with an output and a list of calls, each {name, arguments
    (an object), id}, or fails with neither and an error text; the
    connector's classification always gives a result that serialises.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../services/orchestrator/orch_agent.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    static const int statuses [] = { 200, 201, 400, 429, 500 };
    if (size < 1)
        return 0;
    int status = statuses [data [0] % 5];
    const char *body = (const char *) data + 1;
    size_t len = size - 1;
    if (data [0] & 0x80) {
        json_t *result = NULL;
        int64_t ms = -1;
        orch_call_outcome_t got = orch_connector_response ("sheets.append", 0, status, "7", body, len, &result, &ms);
        if (!result || ms < 0 || (got == ORCH_CALL_OK) != (status < 300))
            abort ();
        char *text = json_dumps (result, JSON_COMPACT);
        if (!text)
            abort ();
        free (text);
        json_decref (result);
        return 0;
    }
    json_t *output = NULL, *calls = NULL;
    char err [256] = "";
    int rc = orch_agent_chat_response (status, body, len, &output, &calls, err, sizeof err);
    if (rc == 0) {
        if (!output || !json_is_array (calls))
            abort ();
        size_t i;
        json_t *c;
        json_array_foreach (calls, i, c)
            if (!json_is_string (json_object_get (c, "name")) || !json_is_object (json_object_get (c, "arguments"))
                || !json_is_string (json_object_get (c, "id")))
                abort ();
    }
    else if (rc != -1 || output || calls || !err [0])
        abort ();
    json_decref (output);
    json_decref (calls);
    return 0;
}
