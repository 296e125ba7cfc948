/*  orch_workflow.c — workflow files (orch_workflow.h): validation, edges,
    conditions and templates. */
#include "orch_workflow.h"
#include "orch_connector.h"
#include "proto_canon.h"

#include <ctype.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct orch_workflow_t {
    json_t *root;
    json_t *nodes;              /* id -> node (borrowed from root) */
    char *name;
    char *file;
    const char *start;
    char hash [ORCH_HASH_LEN + 1];
};

/*  Write "FILE: node ID: field F: message" into err. */
static void
s_err (char *err, size_t errlen, const char *file, const char *node, const char *field, const char *fmt, ...)
{
    char msg [400];
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (msg, sizeof msg, fmt, ap);
    va_end (ap);
    char where [300] = "";
    size_t n = 0;
    if (node)
        n += snprintf (where + n, sizeof where - n, "node %s: ", node);
    if (field && n < sizeof where)
        snprintf (where + n, sizeof where - n, "field %s: ", field);
    snprintf (err, errlen, "%s: %s%s", file && *file ? file : "workflow", where, msg);
}

/*  An identifier: 1..max of [A-Za-z0-9_.-]. */
static bool
s_ident (const char *s, size_t max)
{
    if (!s || !*s || strlen (s) > max)
        return false;
    for (; *s; s++)
        if (!isalnum ((unsigned char) *s) && *s != '_' && *s != '-' && *s != '.')
            return false;
    return true;
}

/*  Check a condition's shape (not its values). */
static int
s_check_cond (const json_t *c, int depth, char *why, size_t whylen)
{
    if (depth > 16) {
        snprintf (why, whylen, "nested too deep");
        return -1;
    }
    if (!json_is_object (c)) {
        snprintf (why, whylen, "a condition is an object");
        return -1;
    }
    const json_t *sub;
    if ((sub = json_object_get (c, "all")) || (sub = json_object_get (c, "any"))) {
        if (!json_is_array (sub) || json_array_size (sub) == 0) {
            snprintf (why, whylen, "all/any take a non-empty list");
            return -1;
        }
        size_t i;
        const json_t *v;
        json_array_foreach (sub, i, v)
            if (s_check_cond (v, depth + 1, why, whylen))
                return -1;
        return 0;
    }
    if ((sub = json_object_get (c, "not")))
        return s_check_cond (sub, depth + 1, why, whylen);
    const char *var = json_string_value (json_object_get (c, "var"));
    const char *op = json_string_value (json_object_get (c, "op"));
    static const char *const ops [] = { "<", "<=", ">", ">=", "==", "!=", "exists", NULL };
    if (!var || !*var) {
        snprintf (why, whylen, "var (a state path) is required");
        return -1;
    }
    int k = -1;
    for (int i = 0; op && ops [i]; i++)
        if (!strcmp (op, ops [i]))
            k = i;
    if (k < 0) {
        snprintf (why, whylen, "op must be one of < <= > >= == != exists");
        return -1;
    }
    if (strcmp (op, "exists") && !json_object_get (c, "value")) {
        snprintf (why, whylen, "value is required with op %s", op);
        return -1;
    }
    return 0;
}

/*  A list of non-empty strings of 1..max entries. */
static bool
s_strings (const json_t *v, size_t max)
{
    if (!json_is_array (v) || json_array_size (v) == 0 || json_array_size (v) > max)
        return false;
    size_t i;
    const json_t *s;
    json_array_foreach (v, i, s)
        if (!json_is_string (s) || json_string_length (s) == 0 || json_string_length (s) > 256)
            return false;
    return true;
}

/*  Validate one node (the ids of every node are known: nodes). */
static int
s_check_node (orch_workflow_t *self, const json_t *node, char *err, size_t errlen)
{
    const char *f = self->file;
    const char *id = json_string_value (json_object_get (node, "id"));
    const char *kind = json_string_value (json_object_get (node, "kind"));
    if (!kind || (strcmp (kind, "agent") && strcmp (kind, "tool") && strcmp (kind, "branch") && strcmp (kind, "end"))) {
        s_err (err, errlen, f, id, "kind", "must be agent, tool, branch or end");
        return -1;
    }
    const json_t *out = json_object_get (node, "output");
    if (out && (!json_is_string (out) || !s_ident (json_string_value (out), 64) || !strcmp (json_string_value (out), "input")
                || !strcmp (json_string_value (out), "call") || !strcmp (json_string_value (out), "run"))) {
        s_err (err, errlen, f, id, "output", "a state key of [A-Za-z0-9_.-], not input, run or call");
        return -1;
    }
    if (!strcmp (kind, "agent")) {
        const char *agent = json_string_value (json_object_get (node, "agent"));
        if (!agent || (strcmp (agent, "scripted") && strcmp (agent, "chat"))) {
            s_err (err, errlen, f, id, "agent", "must be scripted or chat");
            return -1;
        }
        if (!strcmp (agent, "scripted") && !out) {
            s_err (err, errlen, f, id, "output", "a scripted agent needs the state key of what it drafts");
            return -1;
        }
        const json_t *prompt = json_object_get (node, "prompt");
        if (prompt && !json_is_string (prompt)) {
            s_err (err, errlen, f, id, "prompt", "a string");
            return -1;
        }
        const json_t *turns = json_object_get (node, "max_turns");
        if (turns && (!json_is_integer (turns) || json_integer_value (turns) < 1
                      || json_integer_value (turns) > ORCH_AGENT_TURNS_MAX)) {
            s_err (err, errlen, f, id, "max_turns", "an integer 1..%d", ORCH_AGENT_TURNS_MAX);
            return -1;
        }
        const json_t *tools = json_object_get (node, "tools");
        if (tools) {
            if (!json_is_array (tools) || json_array_size (tools) > 64) {
                s_err (err, errlen, f, id, "tools", "a list of tool node ids");
                return -1;
            }
            size_t i;
            const json_t *t;
            json_array_foreach (tools, i, t) {
                const json_t *tn = json_object_get (self->nodes, json_string_value (t) ? json_string_value (t) : "");
                if (!tn || strcmp (json_string_value (json_object_get (tn, "kind")), "tool")) {
                    s_err (err, errlen, f, id, "tools", "%s is not a tool node of this workflow",
                           json_string_value (t) ? json_string_value (t) : "(not a string)");
                    return -1;
                }
            }
        }
        return 0;
    }
    if (strcmp (kind, "tool"))
        return 0;
    const char *connector = json_string_value (json_object_get (node, "connector"));
    if (!connector || !orch_connector_known (connector)) {
        s_err (err, errlen, f, id, "connector", "unknown connector \"%s\" (sheets.append, gmail.send, "
               "dropbox.upload, http.request)", connector ? connector : "");
        return -1;
    }
    if (!s_ident (json_string_value (json_object_get (node, "connection")), 128)) {
        s_err (err, errlen, f, id, "connection", "the vault connection's name is required");
        return -1;
    }
    if (!s_strings (json_object_get (node, "scopes"), 32)) {
        s_err (err, errlen, f, id, "scopes", "a list of 1..32 scope strings");
        return -1;
    }
    const json_t *args = json_object_get (node, "args");
    if (!json_is_object (args)) {
        s_err (err, errlen, f, id, "args", "an object");
        return -1;
    }
    char why [300] = "";
    if (orch_connector_check_args (connector, args, why, sizeof why)) {
        s_err (err, errlen, f, id, "args", "%s", why);
        return -1;
    }
    const json_t *policy = json_object_get (node, "policy");
    if (!json_is_object (policy)) {
        s_err (err, errlen, f, id, "policy", "an object {action, resource, principal?, context?}");
        return -1;
    }
    const char *pf [] = { "action", "resource", "principal", NULL };
    for (int i = 0; pf [i]; i++) {
        const json_t *v = json_object_get (policy, pf [i]);
        if ((v || i < 2) && (!json_is_string (v) || json_string_length (v) == 0 || json_string_length (v) > 512)) {
            char field [40];
            snprintf (field, sizeof field, "policy.%s", pf [i]);
            s_err (err, errlen, f, id, field, "a string of 1..512 bytes");
            return -1;
        }
    }
    const json_t *ctx = json_object_get (policy, "context");
    if (ctx && !json_is_object (ctx)) {
        s_err (err, errlen, f, id, "policy.context", "an object");
        return -1;
    }
    const json_t *ttl = json_object_get (node, "ttl");
    if (ttl && (!json_is_integer (ttl) || json_integer_value (ttl) < 1 || json_integer_value (ttl) > 600)) {
        s_err (err, errlen, f, id, "ttl", "lease seconds, 1..600");
        return -1;
    }
    const json_t *bm = json_object_get (node, "binding_message");
    if (bm && !json_is_string (bm)) {
        s_err (err, errlen, f, id, "binding_message", "a string");
        return -1;
    }
    return 0;
}

static size_t s_template_path (const char *s, char *out, size_t outlen);

/* --- declared inputs ------------------------------------------------------ */

static const char *s_input_types [] = { "string", "number", "integer", "boolean", "object", "array", NULL };

/*  The declared type of input name in inputs ("number"; its "?" of an
    optional input dropped into *optional), or NULL when not declared. */
static const char *
s_input_type (const json_t *inputs, const char *name, char *type, size_t typelen, bool *optional)
{
    const char *t = json_string_value (json_object_get (inputs, name));
    if (!t)
        return NULL;
    size_t n = strlen (t);
    *optional = n > 0 && t [n - 1] == '?';
    snprintf (type, typelen, "%.*s", (int) (n - *optional), t);
    return type;
}

/*  The declared inputs as text: "vendor (string), amount (number)". */
static void
s_inputs_text (const json_t *inputs, char *out, size_t outlen)
{
    const char *name;
    json_t *t;
    size_t n = 0;
    out [0] = 0;
    json_object_foreach ((json_t *) inputs, name, t) {
        if (n >= outlen)
            break;
        n += (size_t) snprintf (out + n, outlen - n, "%s%s (%s)", n ? ", " : "", name, json_string_value (t));
    }
    if (!n)
        snprintf (out, outlen, "none");
}

/*  The inputs declaration: {NAME: TYPE}, TYPE one of s_input_types, with
    a trailing "?" when the input may be left out. */
static int
s_check_inputs (orch_workflow_t *self, const json_t *inputs, char *err, size_t errlen)
{
    if (!json_is_object (inputs) || json_object_size (inputs) > ORCH_WORKFLOW_MAX_INPUTS) {
        s_err (err, errlen, self->file, NULL, "inputs", "an object of at most %d NAME: TYPE", ORCH_WORKFLOW_MAX_INPUTS);
        return -1;
    }
    const char *name;
    json_t *t;
    json_object_foreach ((json_t *) inputs, name, t) {
        char field [80], type [16];
        bool optional;
        snprintf (field, sizeof field, "inputs.%.64s", name);
        if (!s_ident (name, 64)) {
            s_err (err, errlen, self->file, NULL, field, "an input's name is 1..64 of [A-Za-z0-9_.-]");
            return -1;
        }
        const char *ty = json_is_string (t) && json_string_length (t) < sizeof type
                       ? s_input_type (inputs, name, type, sizeof type, &optional) : NULL;
        int k = 0;
        while (ty && s_input_types [k] && strcmp (s_input_types [k], ty))
            k++;
        if (!ty || !s_input_types [k]) {
            s_err (err, errlen, self->file, NULL, field,
                   "a type: string, number, integer, boolean, object or array (\"string?\": optional)");
            return -1;
        }
    }
    return 0;
}

/*  The input a run-state path names ("input.amount" -> "amount"; "input"
    alone -> "", the whole input), or NULL when path is not in input. */
static const char *
s_input_of (const char *path, char *name, size_t namelen)
{
    if (strncmp (path, "input", 5) != 0 || (path [5] != 0 && path [5] != '.'))
        return NULL;
    const char *a = path [5] ? path + 6 : path + 5;
    size_t n = strcspn (a, ".");
    snprintf (name, namelen, "%.*s", (int) n, a);
    return name;
}

/*  Every input that v's templates ("{{input.X}}") and conditions
    ("var": "input.X") read is declared in inputs; else the first that is
    not, in bad. */
static bool
s_reads_declared (const json_t *inputs, const json_t *v, char *bad, size_t badlen)
{
    char path [256], name [80];
    if (json_is_string (v)) {
        for (const char *s = json_string_value (v); (s = strstr (s, "{{")); ) {
            size_t used = s_template_path (s + 2, path, sizeof path);
            if (!used) {
                s += 2;
                continue;
            }
            if (s_input_of (path, name, sizeof name) && *name && !json_object_get (inputs, name)) {
                snprintf (bad, badlen, "{{%.200s}}", path);
                return false;
            }
            s += 2 + used;
        }
        return true;
    }
    const char *key;
    json_t *member;
    size_t i;
    if (json_is_object (v))
        json_object_foreach ((json_t *) v, key, member) {
            const char *var = !strcmp (key, "var") ? json_string_value (member) : NULL;
            if (var && s_input_of (var, name, sizeof name) && *name && !json_object_get (inputs, name)) {
                snprintf (bad, badlen, "\"var\": \"%.200s\"", var);
                return false;
            }
            if (!s_reads_declared (inputs, member, bad, badlen))
                return false;
        }
    else if (json_is_array (v))
        json_array_foreach (v, i, member)
            if (!s_reads_declared (inputs, member, bad, badlen))
                return false;
    return true;
}

/*  With inputs declared, each node and edge reads only declared ones. */
static int
s_check_input_reads (orch_workflow_t *self, const json_t *inputs, char *err, size_t errlen)
{
    char bad [256], names [512];
    const char *id, *key;
    json_t *node, *member;
    json_object_foreach (self->nodes, id, node)
        json_object_foreach (node, key, member)
            if (!s_reads_declared (inputs, member, bad, sizeof bad)) {
                s_inputs_text (inputs, names, sizeof names);
                s_err (err, errlen, self->file, id, key, "%s reads an input not declared in \"inputs\" (%s)", bad,
                       names);
                return -1;
            }
    size_t i;
    json_array_foreach (json_object_get (self->root, "edges"), i, member)
        if (!s_reads_declared (inputs, member, bad, sizeof bad)) {
            char field [48];
            snprintf (field, sizeof field, "edges[%zu].when", i);
            s_inputs_text (inputs, names, sizeof names);
            s_err (err, errlen, self->file, json_string_value (json_object_get (member, "from")), field,
                   "%s reads an input not declared in \"inputs\" (%s)", bad, names);
            return -1;
        }
    return 0;
}

int
orch_workflow_check_input (const orch_workflow_t *self, const json_t *input, char *err, size_t errlen)
{
    const json_t *inputs = json_object_get (self->root, "inputs");
    if (!inputs)
        return 0;
    char names [512];
    s_inputs_text (inputs, names, sizeof names);
    if (input && !json_is_object (input)) {
        snprintf (err, errlen, "input: an object of %s's inputs: %s", self->name, names);
        return -1;
    }
    const char *name;
    json_t *value;
    json_object_foreach ((json_t *) input, name, value)
        if (!json_object_get (inputs, name)) {
            snprintf (err, errlen, "input %.64s: %s takes no such input (it takes %s)", name, self->name, names);
            return -1;
        }
    json_t *t;
    json_object_foreach ((json_t *) inputs, name, t) {
        char type [16];
        bool optional;
        s_input_type (inputs, name, type, sizeof type, &optional);
        value = json_object_get (input, name);
        if (!value) {
            if (optional)
                continue;
            snprintf (err, errlen, "input %s: missing (%s takes %s)", name, self->name, names);
            return -1;
        }
        bool fits = !strcmp (type, "string") ? json_is_string (value)
                  : !strcmp (type, "number") ? json_is_number (value)
                  : !strcmp (type, "integer") ? json_is_integer (value)
                  : !strcmp (type, "boolean") ? json_is_boolean (value)
                  : !strcmp (type, "object") ? json_is_object (value)
                  : json_is_array (value);
        if (!fits) {
            char *text = json_dumps (value, JSON_ENCODE_ANY | JSON_COMPACT);
            snprintf (err, errlen, "input %s: %s %s, not %.60s", name, strchr ("aeiou", type [0]) ? "an" : "a", type,
                      text ? text : "that");
            free (text);
            return -1;
        }
    }
    return 0;
}

orch_workflow_t *
orch_workflow_new (const json_t *root, const char *file, char *err, size_t errlen)
{
    orch_workflow_t *self = calloc (1, sizeof *self);
    if (!self) {
        snprintf (err, errlen, "out of memory");
        return NULL;
    }
    const char *base = file ? strrchr (file, '/') : NULL;
    self->file = strdup (base ? base + 1 : file ? file : "");
    self->root = json_deep_copy (root);
    self->nodes = json_object ();
    if (!self->file || !self->nodes || (root && !self->root)) {
        snprintf (err, errlen, "out of memory");
        goto fail;
    }
    const char *f = self->file;
    if (!json_is_object (self->root)) {
        s_err (err, errlen, f, NULL, NULL, "a workflow is a JSON object");
        goto fail;
    }
    const char *name = json_string_value (json_object_get (self->root, "workflow"));
    if (!s_ident (name, 64)) {
        s_err (err, errlen, f, NULL, "workflow", "the workflow's name, 1..64 of [A-Za-z0-9_.-]");
        goto fail;
    }
    self->name = strdup (name);
    json_t *nodes = json_object_get (self->root, "nodes");
    if (!json_is_array (nodes) || json_array_size (nodes) == 0 || json_array_size (nodes) > ORCH_WORKFLOW_MAX_NODES) {
        s_err (err, errlen, f, NULL, "nodes", "a list of 1..%d nodes", ORCH_WORKFLOW_MAX_NODES);
        goto fail;
    }
    size_t i;
    json_t *node;
    json_array_foreach (nodes, i, node) {
        const char *id = json_is_object (node) ? json_string_value (json_object_get (node, "id")) : NULL;
        if (!s_ident (id, 128)) {
            char field [32];
            snprintf (field, sizeof field, "nodes[%zu].id", i);
            s_err (err, errlen, f, NULL, field, "each node needs an id of 1..128 of [A-Za-z0-9_.-]");
            goto fail;
        }
        if (json_object_get (self->nodes, id)) {
            s_err (err, errlen, f, id, "id", "two nodes have this id");
            goto fail;
        }
        json_object_set (self->nodes, id, node);
    }
    json_array_foreach (nodes, i, node)
        if (s_check_node (self, node, err, errlen))
            goto fail;
    const json_t *start = json_object_get (self->root, "start");
    if (start) {
        if (!json_is_string (start) || !json_object_get (self->nodes, json_string_value (start))) {
            s_err (err, errlen, f, NULL, "start", "must name a node");
            goto fail;
        }
        self->start = json_string_value (start);
    }
    else
        self->start = json_string_value (json_object_get (json_array_get (nodes, 0), "id"));
    json_t *edges = json_object_get (self->root, "edges");
    if (edges && !json_is_array (edges)) {
        s_err (err, errlen, f, NULL, "edges", "a list of {from, to, when?}");
        goto fail;
    }
    json_t *edge;
    json_array_foreach (edges, i, edge) {
        const char *from = json_string_value (json_object_get (edge, "from"));
        const char *to = json_string_value (json_object_get (edge, "to"));
        char field [40];
        if (!from || !json_object_get (self->nodes, from)) {
            snprintf (field, sizeof field, "edges[%zu].from", i);
            s_err (err, errlen, f, NULL, field, "must name a node (\"%s\")", from ? from : "");
            goto fail;
        }
        if (!to || !json_object_get (self->nodes, to)) {
            snprintf (field, sizeof field, "edges[%zu].to", i);
            s_err (err, errlen, f, from, field, "must name a node (\"%s\")", to ? to : "");
            goto fail;
        }
        const json_t *when = json_object_get (edge, "when");
        char why [200];
        if (when && s_check_cond (when, 0, why, sizeof why)) {
            snprintf (field, sizeof field, "edges[%zu].when", i);
            s_err (err, errlen, f, from, field, "%s", why);
            goto fail;
        }
    }
    const json_t *inputs = json_object_get (self->root, "inputs");
    if (inputs && (s_check_inputs (self, inputs, err, errlen) || s_check_input_reads (self, inputs, err, errlen)))
        goto fail;
    if (orch_digest (self->root, self->hash)) {
        s_err (err, errlen, f, NULL, NULL, "no canonical JSON form (a number beyond 2^53?)");
        goto fail;
    }
    return self;
fail:
    orch_workflow_destroy (&self);
    return NULL;
}

orch_workflow_t *
orch_workflow_load (const char *path, char *err, size_t errlen)
{
    const char *base = strrchr (path, '/');
    base = base ? base + 1 : path;
    FILE *fp = fopen (path, "rb");
    if (!fp) {
        snprintf (err, errlen, "%s: cannot open: %m", base);
        return NULL;
    }
    char *text = malloc (ORCH_WORKFLOW_MAX_BYTES + 1);
    size_t n = text ? fread (text, 1, ORCH_WORKFLOW_MAX_BYTES + 1, fp) : 0;
    fclose (fp);
    orch_workflow_t *wf = NULL;
    if (!text)
        snprintf (err, errlen, "%s: out of memory", base);
    else if (n > ORCH_WORKFLOW_MAX_BYTES)
        snprintf (err, errlen, "%s: over %d bytes", base, ORCH_WORKFLOW_MAX_BYTES);
    else {
        json_error_t jerr;
        json_t *root = json_loadb (text, n, JSON_REJECT_DUPLICATES, &jerr);
        if (!root)
            snprintf (err, errlen, "%s: line %d: %s", base, jerr.line, jerr.text);
        else
            wf = orch_workflow_new (root, path, err, errlen);
        json_decref (root);
    }
    free (text);
    return wf;
}

void
orch_workflow_destroy (orch_workflow_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    orch_workflow_t *self = *self_p;
    json_decref (self->nodes);
    json_decref (self->root);
    free (self->name);
    free (self->file);
    free (self);
    *self_p = NULL;
}

const char *orch_workflow_name (const orch_workflow_t *self) { return self->name; }
const char *orch_workflow_hash (const orch_workflow_t *self) { return self->hash; }
const char *orch_workflow_file (const orch_workflow_t *self) { return self->file; }
const json_t *orch_workflow_json (const orch_workflow_t *self) { return self->root; }
const char *orch_workflow_start (const orch_workflow_t *self) { return self->start; }

const json_t *
orch_workflow_node (const orch_workflow_t *self, const char *id)
{
    return id ? json_object_get (self->nodes, id) : NULL;
}

int
orch_workflow_next (const orch_workflow_t *self, const char *from, const json_t *state,
                    const char **next, char *err, size_t errlen)
{
    *next = NULL;
    size_t i;
    const json_t *edge;
    json_array_foreach (json_object_get (self->root, "edges"), i, edge) {
        if (strcmp (json_string_value (json_object_get (edge, "from")), from))
            continue;
        const json_t *when = json_object_get (edge, "when");
        int ok = when ? orch_condition (when, state, err, errlen) : 1;
        if (ok < 0)
            return -1;
        if (ok) {
            *next = json_string_value (json_object_get (edge, "to"));
            return 0;
        }
    }
    return 0;
}

bool
orch_workflow_agent_may (const json_t *agent, const char *tool)
{
    size_t i;
    const json_t *t;
    json_array_foreach (json_object_get (agent, "tools"), i, t)
        if (json_is_string (t) && tool && !strcmp (json_string_value (t), tool))
            return true;
    return false;
}

int
orch_workflow_agent_turns (const json_t *agent)
{
    const json_t *turns = json_object_get (agent, "max_turns");
    return json_is_integer (turns) ? (int) json_integer_value (turns) : ORCH_AGENT_TURNS;
}

const json_t *
orch_state_get (const json_t *state, const char *path)
{
    const json_t *v = state;
    char key [129];
    while (v && *path) {
        const char *dot = strchr (path, '.');
        size_t n = dot ? (size_t) (dot - path) : strlen (path);
        if (n == 0 || n >= sizeof key)
            return NULL;
        memcpy (key, path, n);
        key [n] = 0;
        if (json_is_object (v))
            v = json_object_get (v, key);
        else if (json_is_array (v)) {
            char *end;
            long idx = strtol (key, &end, 10);
            v = *end || idx < 0 ? NULL : json_array_get (v, (size_t) idx);
        }
        else
            v = NULL;
        path += n + (dot ? 1 : 0);
    }
    return v;
}

/*  The path inside "{{ path }}" starting at s (after the braces), into
    out; returns the length consumed through the closing braces, or 0. */
static size_t
s_template_path (const char *s, char *out, size_t outlen)
{
    const char *end = strstr (s, "}}");
    if (!end)
        return 0;
    const char *a = s, *b = end;
    while (a < b && isspace ((unsigned char) *a))
        a++;
    while (b > a && isspace ((unsigned char) b [-1]))
        b--;
    if (b == a || (size_t) (b - a) >= outlen)
        return 0;
    memcpy (out, a, (size_t) (b - a));
    out [b - a] = 0;
    return (size_t) (end + 2 - s);
}

/*  A string template. */
static json_t *
s_template_string (const char *s, const json_t *state, char *err, size_t errlen)
{
    char path [256];
    size_t len = strlen (s);
    if (len > 4 && !strncmp (s, "{{", 2)) {
        size_t used = s_template_path (s + 2, path, sizeof path);
        if (used && 2 + used == len) {
            const json_t *v = orch_state_get (state, path);
            if (!v) {
                snprintf (err, errlen, "template {{%s}}: no such value in the run state", path);
                return NULL;
            }
            return json_deep_copy (v);
        }
    }
    if (!strstr (s, "{{"))
        return json_string (s);
    char *buf = NULL;
    size_t blen = 0;
    FILE *mem = open_memstream (&buf, &blen);
    if (!mem)
        return NULL;
    json_t *result = NULL;
    while (*s) {
        const char *open = strstr (s, "{{");
        if (!open) {
            fputs (s, mem);
            break;
        }
        fwrite (s, 1, (size_t) (open - s), mem);
        size_t used = s_template_path (open + 2, path, sizeof path);
        if (!used) {
            fputs (open, mem);
            break;
        }
        const json_t *v = orch_state_get (state, path);
        if (!v) {
            snprintf (err, errlen, "template {{%s}}: no such value in the run state", path);
            fclose (mem);
            free (buf);
            return NULL;
        }
        if (json_is_string (v))
            fputs (json_string_value (v), mem);
        else if (json_is_integer (v))
            fprintf (mem, "%lld", (long long) json_integer_value (v));
        else {
            char *t = json_dumps (v, JSON_COMPACT | JSON_ENCODE_ANY);
            if (t)
                fputs (t, mem);
            free (t);
        }
        s = open + 2 + used;
    }
    fclose (mem);
    result = json_string (buf ? buf : "");
    free (buf);
    return result;
}

json_t *
orch_template (const json_t *tmpl, const json_t *state, char *err, size_t errlen)
{
    if (json_is_string (tmpl))
        return s_template_string (json_string_value (tmpl), state, err, errlen);
    if (json_is_array (tmpl)) {
        json_t *out = json_array ();
        size_t i;
        const json_t *v;
        json_array_foreach (tmpl, i, v) {
            json_t *x = orch_template (v, state, err, errlen);
            if (!x || json_array_append_new (out, x)) {
                json_decref (out);
                return NULL;
            }
        }
        return out;
    }
    if (json_is_object (tmpl)) {
        json_t *out = json_object ();
        const char *k;
        const json_t *v;
        json_object_foreach ((json_t *) tmpl, k, v) {
            json_t *x = orch_template (v, state, err, errlen);
            if (!x || json_object_set_new (out, k, x)) {
                json_decref (out);
                return NULL;
            }
        }
        return out;
    }
    return json_deep_copy (tmpl);
}

/*  Compare a and b for the ordering ops: -2 when they cannot be ordered. */
static int
s_order (const json_t *a, const json_t *b)
{
    if (json_is_number (a) && json_is_number (b)) {
        double x = json_number_value (a), y = json_number_value (b);
        return x < y ? -1 : x > y ? 1 : 0;
    }
    if (json_is_string (a) && json_is_string (b)) {
        int c = strcmp (json_string_value (a), json_string_value (b));
        return c < 0 ? -1 : c > 0 ? 1 : 0;
    }
    return -2;
}

int
orch_condition (const json_t *c, const json_t *state, char *err, size_t errlen)
{
    char why [200];
    if (s_check_cond (c, 0, why, sizeof why)) {
        snprintf (err, errlen, "condition: %s", why);
        return -1;
    }
    const json_t *sub;
    if ((sub = json_object_get (c, "all")) || (sub = json_object_get (c, "any"))) {
        bool all = json_object_get (c, "all") != NULL;
        size_t i;
        const json_t *v;
        json_array_foreach (sub, i, v) {
            int r = orch_condition (v, state, err, errlen);
            if (r < 0)
                return -1;
            if (all && !r)
                return 0;
            if (!all && r)
                return 1;
        }
        return all ? 1 : 0;
    }
    if ((sub = json_object_get (c, "not"))) {
        int r = orch_condition (sub, state, err, errlen);
        return r < 0 ? -1 : !r;
    }
    const json_t *v = orch_state_get (state, json_string_value (json_object_get (c, "var")));
    const char *op = json_string_value (json_object_get (c, "op"));
    const json_t *want = json_object_get (c, "value");
    if (!strcmp (op, "exists"))
        return v != NULL;
    if (!strcmp (op, "=="))
        return v && json_equal ((json_t *) v, (json_t *) want);
    if (!strcmp (op, "!="))
        return !v || !json_equal ((json_t *) v, (json_t *) want);
    int o = v ? s_order (v, want) : -2;
    if (o == -2)
        return 0;               /* a missing or unordered value never satisfies < > */
    if (!strcmp (op, "<"))
        return o < 0;
    if (!strcmp (op, "<="))
        return o <= 0;
    if (!strcmp (op, ">"))
        return o > 0;
    return o >= 0;
}

int
orch_digest (const json_t *value, char out [ORCH_HASH_LEN + 1])
{
    char *canon = NULL;
    size_t len = 0;
    if (proto_canon (value, &canon, &len, NULL, 0))
        return -1;
    uint8_t h [crypto_hash_sha256_BYTES];
    crypto_hash_sha256 (h, (const uint8_t *) canon, len);
    free (canon);
    memcpy (out, "sha256:", 7);
    sodium_bin2hex (out + 7, ORCH_HASH_LEN + 1 - 7, h, sizeof h);
    return 0;
}
