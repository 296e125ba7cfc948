/*  orch_workflow.h — workflow files: parse, validate, hash; templates and
    edge conditions over run state. Pure: knows nothing of the bus.

    A workflow file is one JSON object:

        {"workflow": "procurement",          name, [A-Za-z0-9_.-], 1..64
         "description": "...",               optional
         "inputs": {"amount": "number", ...} optional: what run.start's input
                                             must hold, NAME: TYPE (string,
                                             number, integer, boolean, object,
                                             array; "string?": may be left
                                             out); nothing else is taken, and
                                             the templates may read no other
         "start": "draft",                   optional: the first node listed
         "nodes": [ NODE, ... ],             1..256 nodes, ids unique
         "edges": [ {"from", "to", "when"?}, ... ]}

    NODE is {"id", "kind", ...} with kind
        agent   "agent": "scripted"|"chat", "output": state key (required for
                scripted), "prompt"?, "tools"?: [ids of tool nodes it may call],
                "max_turns"? (chat: the model's turns at most, 1..32,
                default ORCH_AGENT_TURNS: while it answers with tool
                calls, their results go back to it for another turn)
        tool    "connector" (orch_connector_known), "connection", "scopes"
                [1..32 strings], "args" {templated}, "policy" {"action",
                "resource", "principal"?, "context"? {templated}},
                "output"? (state key of the result; default the node's id),
                "ttl"? (lease seconds), "binding_message"? (templated)
        branch  nothing but its edges
        end     the run completes here
    A node no edge leaves ends the run too (COMPLETED).

    Edges leaving a node are tried in file order: the first whose "when"
    holds (or that has none) is taken. A condition is
        {"var": "po.total", "op": "<"|"<="|">"|">="|"=="|"!="|"exists", "value": V}
        {"all": [COND...]} | {"any": [COND...]} | {"not": COND}
    Ordering ops compare numbers, or strings; == and != compare any JSON.

    Templates (orch_template): a string that is exactly "{{path}}" becomes
    the value at path in the run state (its type kept); "{{path}}" inside
    other text is replaced by the value's text. path is dot-separated keys
    ("input.amount", "po.lines"). A missing value is an error.

    Errors name the file, the node and the field:
        "procurement.json: node write_po: field connector: unknown connector \"x\"".

    The hash is "sha256:<hex>" of the file's RFC 8785 canonical JSON
    (proto_canon), so whitespace and key order do not change it.

    Ownership: a workflow owns its JSON; the node objects returned are
    borrowed from it (valid while it lives). Thread: any, one at a time.
*/
#ifndef ORCH_WORKFLOW_H
#define ORCH_WORKFLOW_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define ORCH_WORKFLOW_MAX_BYTES (1024 * 1024)
#define ORCH_WORKFLOW_MAX_NODES 256
#define ORCH_WORKFLOW_MAX_INPUTS 64
#define ORCH_HASH_LEN           71      /* "sha256:" + 64 hex */

typedef struct orch_workflow_t orch_workflow_t;

/*  Parse and validate a workflow from root (borrowed; a deep copy is kept).
    file names it in errors (may be NULL). Returns the workflow, or NULL
    with err set. */
orch_workflow_t *orch_workflow_new (const json_t *root, const char *file, char *err, size_t errlen);

/*  Read, parse and validate the file at path (at most
    ORCH_WORKFLOW_MAX_BYTES). NULL with err naming the file. */
orch_workflow_t *orch_workflow_load (const char *path, char *err, size_t errlen);

void orch_workflow_destroy (orch_workflow_t **self_p);

/*  0 when input (a run.start's input, NULL: none) fits the workflow's
    declared "inputs" (always, when it declares none); else -1 with err
    naming the input: missing, of another type, or not declared. */
int orch_workflow_check_input (const orch_workflow_t *self, const json_t *input, char *err, size_t errlen);

const char *orch_workflow_name (const orch_workflow_t *self);
const char *orch_workflow_hash (const orch_workflow_t *self);
const char *orch_workflow_file (const orch_workflow_t *self);     /* "" when none */
const json_t *orch_workflow_json (const orch_workflow_t *self);
const char *orch_workflow_start (const orch_workflow_t *self);

/*  The node with id, or NULL. */
const json_t *orch_workflow_node (const orch_workflow_t *self, const char *id);

/*  The node after from, given the state: *next is the target of the first
    edge whose condition holds, or NULL when none does (the run ends).
    Returns 0, or -1 with err (a condition that cannot be evaluated). */
int orch_workflow_next (const orch_workflow_t *self, const char *from, const json_t *state,
                        const char **next, char *err, size_t errlen);

/*  Whether agent may call tool (tool among agent's "tools"). */
bool orch_workflow_agent_may (const json_t *agent, const char *tool);

/*  A chat agent's turns at most: its "max_turns", or the default. */
#define ORCH_AGENT_TURNS     4
#define ORCH_AGENT_TURNS_MAX 32
int orch_workflow_agent_turns (const json_t *agent);

/*  The value at path ("a.b.c") in state, or NULL. Borrowed. */
const json_t *orch_state_get (const json_t *state, const char *path);

/*  tmpl with every template filled from state: a new value, or NULL with
    err naming the missing path. */
json_t *orch_template (const json_t *tmpl, const json_t *state, char *err, size_t errlen);

/*  Evaluate a condition: 1 true, 0 false, -1 malformed (err). */
int orch_condition (const json_t *cond, const json_t *state, char *err, size_t errlen);

/*  "sha256:<hex>" of value's canonical JSON into out; 0 or -1 (no
    canonical form). */
int orch_digest (const json_t *value, char out [ORCH_HASH_LEN + 1]);

#endif
