/*  orch_agent.h — the orchestrator's agent nodes: the offline `scripted`
    agent and the `chat` agent, an OpenAI-compatible /v1/chat/completions
    client with tool calling (OpenAI, Gemini's OpenAI endpoint, llama.cpp,
    vLLM).

    Pure functions: nothing here does I/O on its own (the engine sends the
    request built here through the service's HTTP client and hands the
    answer back), keeps state or logs, so every function is thread-safe
    except orch_agent_config_load, which reads the key file (at start).

    A model's proposals are only proposals: orch_agent_chat_response
    returns the tool calls it found, well-formed, and the engine decides
    which (if any) run, refusing a name the node was never offered.

    Errors: -1 with err (errlen bytes, NUL-terminated) saying what was
    wrong; the API key never goes into err. Ownership: *output, *calls are
    new references (the caller's), *out is freed with
    orch_http_call_destroy.
*/
#ifndef ORCH_AGENT_H
#define ORCH_AGENT_H

#include <jansson.h>
#include <stddef.h>

#include "bus_config.h"
#include "orch_connector.h"

/*  The chat agent's settings: base_url (llm_base_url, the API base with
    its version, e.g. http://127.0.0.1:8080/v1 or
    https://generativelanguage.googleapis.com/v1beta/openai: requests go
    to <base_url>/chat/completions), model, key (read from key_file),
    kind ("chat" when a base URL is set, else "scripted"). Opaque. */
typedef struct orch_agent_config_t orch_agent_config_t;  /* base_url, model, key (read from key_file), kind */

/*  Read [orchestrator] llm_base_url, llm_model, llm_key_file (the key
    is the file's first line, blanks trimmed; no file or an empty line:
    no Authorization header, as a local llama.cpp or vLLM wants). 0, or
    -1 with err: a base URL that is not http(s), a key file that cannot
    be read. Reads the key file: call at start, not on the reactor. */
int  orch_agent_config_load (orch_agent_config_t **out, bus_config_t *config, char *err, size_t errlen); /* [orchestrator] llm_* keys */

/*  Free the config (its key wiped) and null the pointer; accepts NULL. */
void orch_agent_config_destroy (orch_agent_config_t **self_p);

/*  scripted: draft from the node's spec and run state; *output = the object
    stored at state[node.output] (e.g. po {vendor, total, cost_center,
    number, lines}), *calls = []. Deterministic: the same state drafts the
    same PO (a retried node drafts the same thing). 0, or -1 with err
    naming the missing input. */
int  orch_agent_scripted (const json_t *node, const json_t *state, json_t **output, json_t **calls,
                          char *err, size_t errlen);

/*  A tool result's text in a `tool` message, at most (longer ones are
    cut, "..." at the end). */
#define ORCH_AGENT_RESULT_MAX 16384

/*  chat: a conversation's first messages: [{role: system}, {role: user:
    the node's prompt and the run state as data}]. NULL with err. */
json_t *orch_agent_chat_messages (const json_t *node, const json_t *state, char *err, size_t errlen);

/*  chat: the HTTP request for /v1/chat/completions offering node.tools
    (each a tool node of the workflow: name, description, parameters
    schema), with messages (the conversation so far: the first messages,
    then each turn's assistant message and its tool results), or, when
    messages is NULL, the first messages for state. 0, or -1 with err. */
int  orch_agent_chat_request (const orch_agent_config_t *cfg, const json_t *node, const json_t *tools,
                              const json_t *state, const json_t *messages, orch_http_call_t **out, char *err,
                              size_t errlen);

/*  chat: the assistant message that goes back into the conversation for
    an answer (output and calls as orch_agent_chat_response gave them):
    {role: assistant, content, tool_calls?: [{id, type: function,
    function: {name, arguments (JSON text)}}]}. NULL: out of memory. */
json_t *orch_agent_chat_assistant (const json_t *output, const json_t *calls);

/*  chat: the `tool` message giving back the result of the call call_id:
    {role: tool, tool_call_id, content: the result's compact JSON, cut
    at ORCH_AGENT_RESULT_MAX}. NULL: out of memory. */
json_t *orch_agent_chat_tool_result (const char *call_id, const json_t *result);

/*  Parse the response: *calls = [{name, arguments (object), id}],
    *output = the assistant's content or structured output; -1 with err on
    garbage (not JSON, no choices, arguments that are not a JSON object,
    an oversized body, an HTTP error status, a refusal). */
int  orch_agent_chat_response (int status, const char *body, size_t len, json_t **output,
                               json_t **calls, char *err, size_t errlen);

#endif
