// openfga.mjs — OpenFGA's own JavaScript SDK (@openfga/sdk, unmodified) as
// the client of sanctum-authz's OpenFGA HTTP API.
//
// Usage: node openfga.mjs API_URL TOKEN MODEL.json TUPLES.json
//   MODEL.json: the procurement model in OpenFGA's API JSON
//   TUPLES.json: its tuples (a list of tuple keys, conditions included)
// Prints `ok NAME` / `not ok NAME: why` lines, then `N passed, N failed`;
// exits 1 when one failed.
import { readFileSync } from "node:fs";
import { OpenFgaClient, CredentialsMethod, FgaApiValidationError, FgaApiNotFoundError,
         FgaApiAuthenticationError, FgaApiError } from "@openfga/sdk";

const [apiUrl, token, modelPath, tuplesPath] = process.argv.slice(2);
const model = JSON.parse(readFileSync(modelPath, "utf8"));
const tuples = JSON.parse(readFileSync(tuplesPath, "utf8"));
const retryParams = { maxRetry: 0 };
const creds = (t) => ({ method: CredentialsMethod.ApiToken, config: { token: t } });
let passed = 0, failed = 0;

function eq(a, b, what) {
    const sa = JSON.stringify(a), sb = JSON.stringify(b);
    if (sa !== sb)
        throw new Error(`${what}: got ${sa}, expected ${sb}`);
}

async function test(name, fn) {
    try {
        await fn();
        console.log(`ok ${name}`);
        passed++;
    } catch (e) {
        console.log(`not ok ${name}: ${e && e.stack ? e.stack.split("\n").slice(0, 3).join(" | ") : e}`);
        failed++;
    }
}

// an SDK call expected to fail with the error class cls and code
async function fails(fn, cls, status, code) {
    try {
        await fn();
    } catch (e) {
        if (!(e instanceof cls))
            throw new Error(`expected ${cls.name}, got ${e && e.constructor && e.constructor.name}: ${e && e.message}`);
        eq(e.statusCode, status, "status");
        if (code !== undefined)          // parsed by the SDK's subclasses; the body's code otherwise
            eq(e.apiErrorCode ?? (e.responseData && e.responseData.code), code, "error code");
        return e;
    }
    throw new Error(`expected ${cls.name}, the call succeeded`);
}

// the default store: the one authz made at first start, listed
const lister = new OpenFgaClient({ apiUrl, credentials: creds(token), retryParams });
let storeId, modelId, fga;

await test("list_stores", async () => {
    const out = await lister.listStores();
    eq(out.stores.length, 1, "stores");
    storeId = out.stores[0].id;
    eq(/^[0-7][0-9A-HJKMNP-TV-Z]{25}$/.test(storeId), true, "store id is a ULID");
    const one = await new OpenFgaClient({ apiUrl, storeId, credentials: creds(token), retryParams }).getStore();
    eq(one.id, storeId, "getStore id");
    eq(typeof one.name, "string", "getStore name");
});

fga = new OpenFgaClient({ apiUrl, storeId, credentials: creds(token), retryParams });

await test("write_model", async () => {
    const out = await fga.writeAuthorizationModel(model);
    modelId = out.authorization_model_id;
    eq(/^[0-7][0-9A-HJKMNP-TV-Z]{25}$/.test(modelId), true, "model id is a ULID");
    const read = await fga.readAuthorizationModel({ authorizationModelId: modelId });
    eq(read.authorization_model.id, modelId, "read model id");
    eq(read.authorization_model.type_definitions.map((t) => t.type), model.type_definitions.map((t) => t.type),
       "types");
    const latest = await fga.readLatestAuthorizationModel();
    eq(latest.authorization_model.id, modelId, "latest model id");
    const all = await fga.readAuthorizationModels({ pageSize: 1 });
    eq(all.authorization_models.length, 1, "page of 1");
    eq(all.authorization_models[0].id, modelId, "newest first");
});

await test("write_tuples", async () => {
    const out = await fga.writeTuples(tuples, { authorizationModelId: modelId });
    eq(out.writes.length, tuples.length, "writes");
    eq(out.writes.every((w) => w.status === "success"), true, "all written");
    const read = await fga.read({ object: "cost_center:engineering", relation: "approver" });
    eq(read.tuples.map((t) => t.key.user).sort(), ["user:carol", "user:victor"], "read approvers");
    eq(read.tuples.find((t) => t.key.user === "user:carol").key.condition.name, "within_limit", "condition");
});

await test("check", async () => {
    eq((await fga.check({ user: "agent:po-drafter", relation: "writer", object: "cost_center:engineering" })).allowed,
       true, "writer");
    eq((await fga.check({ user: "user:mallory", relation: "writer", object: "cost_center:engineering" })).allowed,
       false, "not a writer");
    // the condition: carol's limit is 50,000
    eq((await fga.check({ user: "user:carol", relation: "approver", object: "cost_center:engineering",
                          context: { amount: 520000 } })).allowed, false, "over carol's limit");
    eq((await fga.check({ user: "user:victor", relation: "approver", object: "cost_center:engineering",
                          context: { amount: 520000 } })).allowed, true, "within victor's limit");
    // contextual tuples
    eq((await fga.check({ user: "user:dan", relation: "member", object: "cost_center:engineering",
                          contextualTuples: [{ user: "user:dan", relation: "member",
                                               object: "cost_center:engineering" }] })).allowed,
       true, "contextual tuple");
});

await test("batch_check", async () => {
    const out = await fga.batchCheck({ checks: [
        { user: "user:erin", relation: "member", object: "cost_center:engineering", correlationId: "a" },
        { user: "user:carol", relation: "approver", object: "cost_center:engineering", context: { amount: 10 },
          correlationId: "b" },
        { user: "user:erin", relation: "writer", object: "cost_center:engineering", correlationId: "c" },
    ] });
    const by = Object.fromEntries(out.result.map((r) => [r.correlationId, r.allowed]));
    eq(by, { a: true, b: true, c: false }, "results");
});

await test("list_objects", async () => {
    const out = await fga.listObjects({ user: "user:erin", relation: "member", type: "cost_center" });
    eq(out.objects, ["cost_center:engineering"], "objects");
});

await test("streamed_list_objects", async () => {
    const got = [];
    for await (const r of fga.streamedListObjects({ user: "agent:po-drafter", relation: "writer", type: "cost_center" }))
        got.push(r.object);
    eq(got, ["cost_center:engineering"], "streamed objects");
});

await test("list_users", async () => {
    const out = await fga.listUsers({ object: { type: "cost_center", id: "engineering" }, relation: "approver",
                                      user_filters: [{ type: "user" }], context: { amount: 100000 } });
    eq(out.users, [{ object: { type: "user", id: "victor" } }], "users");
});

await test("expand", async () => {
    const out = await fga.expand({ relation: "member", object: "cost_center:engineering" });
    eq(out.tree.root.leaf.users.users, ["user:erin"], "tree");
});

await test("read_changes_with_continuation", async () => {
    const seen = [];
    let continuationToken, pages = 0;
    do {
        const page = await fga.readChanges({ type: "cost_center" }, { pageSize: 2, continuationToken });
        for (const c of page.changes) {
            eq(c.operation, "TUPLE_OPERATION_WRITE", "operation");
            seen.push(`${c.tuple_key.user} ${c.tuple_key.relation}`);
        }
        continuationToken = page.changes.length ? page.continuation_token : undefined;
        if (++pages > 10)
            throw new Error("more pages than changes");
    } while (continuationToken);
    eq(seen.sort(), ["agent:po-drafter writer", "user:carol approver", "user:erin member", "user:victor approver"],
       "changes of cost_center");
    eq(pages >= 2, true, "more than one page");
});

await test("assertions", async () => {
    eq((await fga.readAssertions({ authorizationModelId: modelId })).assertions, [], "none yet");
    await fga.writeAssertions([
        { user: "user:erin", relation: "member", object: "cost_center:engineering", expectation: true },
        { user: "user:mallory", relation: "member", object: "cost_center:engineering", expectation: false },
    ], { authorizationModelId: modelId });
    const out = await fga.readAssertions({ authorizationModelId: modelId });
    eq(out.authorization_model_id, modelId, "model id");
    eq(out.assertions.map((a) => [a.tuple_key.user, a.expectation]), [["user:erin", true], ["user:mallory", false]],
       "assertions");
    // a model that does not exist
    await fails(() => fga.readAssertions({ authorizationModelId: "01ARZ3NDEKTSV4RRFFQ69G5FAV" }),
                FgaApiValidationError, 400, "authorization_model_not_found");
    // the SDK's assertion of a tuple key with no object: refused, nothing replaced
    await fails(() => fga.writeAssertions([{ user: "user:erin", relation: "member", object: "", expectation: true }],
                                          { authorizationModelId: modelId }), FgaApiValidationError, 400);
    eq((await fga.readAssertions({ authorizationModelId: modelId })).assertions.length, 2, "kept");
});

await test("error_bad_model", async () => {
    const bad = { schema_version: "1.1", type_definitions: [
        { type: "doc", relations: { viewer: { computedUserset: { relation: "nope" } } } }] };
    const e = await fails(() => fga.writeAuthorizationModel(bad), FgaApiValidationError, 400, "validation_error");
    eq(/nope/.test(e.apiErrorMessage), true, "message names the relation");
});

await test("error_bad_tuple", async () => {
    await fails(() => fga.writeTuples([{ user: "user:x", relation: "nope", object: "cost_center:engineering" }]),
                FgaApiValidationError, 400);
});

await test("error_missing_store", async () => {
    const other = new OpenFgaClient({ apiUrl, storeId: "01ARZ3NDEKTSV4RRFFQ69G5FAV", credentials: creds(token),
                                      retryParams });
    await fails(() => other.check({ user: "user:erin", relation: "member", object: "cost_center:engineering" }),
                FgaApiNotFoundError, 404, "store_id_not_found");
});

await test("error_bad_token", async () => {
    const bad = new OpenFgaClient({ apiUrl, storeId, credentials: creds("not-the-key-0123456789"), retryParams });
    await fails(() => bad.check({ user: "user:erin", relation: "member", object: "cost_center:engineering" }),
                FgaApiAuthenticationError, 401);
    const none = new OpenFgaClient({ apiUrl, storeId, retryParams });
    await fails(() => none.listStores(), FgaApiAuthenticationError, 401);
});

// --- many stores: each its own models, tuples, changelog and assertions -----

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const ulid = /^[0-7][0-9A-HJKMNP-TV-Z]{25}$/;
let storeA, storeB, fa, fb, modelA;

await test("create_stores", async () => {
    storeA = await lister.createStore({ name: "tenant-a" });
    storeB = await lister.createStore({ name: "tenant-b" });
    eq(ulid.test(storeA.id) && ulid.test(storeB.id) && storeA.id !== storeB.id, true, "two new ULIDs");
    eq([storeA.name, storeB.name], ["tenant-a", "tenant-b"], "names");
    eq(typeof storeA.created_at, "string", "created_at");
    fa = new OpenFgaClient({ apiUrl, storeId: storeA.id, credentials: creds(token), retryParams });
    fb = new OpenFgaClient({ apiUrl, storeId: storeB.id, credentials: creds(token), retryParams });
    eq((await fb.getStore()).name, "tenant-b", "getStore");
    // a new store starts empty: no model, no tuple
    eq((await fa.readAuthorizationModels()).authorization_models, [], "no model yet");
    await fails(() => lister.createStore({ name: "" }), FgaApiValidationError, 400);
});

await test("list_stores_paged", async () => {
    const ids = [];
    let continuationToken, pages = 0;
    do {
        const page = await lister.listStores({ pageSize: 1, continuationToken });
        eq(page.stores.length <= 1, true, "a page of 1");
        ids.push(...page.stores.map((s) => s.id));
        continuationToken = page.continuation_token || undefined;
        if (++pages > 10)
            throw new Error("more pages than stores");
    } while (continuationToken);
    eq(ids, [storeId, storeA.id, storeB.id], "every store once, oldest first");
    eq((await lister.listStores({ name: "tenant-b" })).stores.map((s) => s.id), [storeB.id], "by name");
});

await test("stores_isolated", async () => {
    modelA = (await fa.writeAuthorizationModel(model)).authorization_model_id;
    const modelB = (await fb.writeAuthorizationModel(model)).authorization_model_id;
    await fa.writeTuples([{ user: "user:erin", relation: "member", object: "cost_center:engineering" }]);
    await fb.writeTuples([{ user: "user:mallory", relation: "member", object: "cost_center:engineering" }]);
    const member = (c, user) => c.check({ user, relation: "member", object: "cost_center:engineering" });
    eq([(await member(fa, "user:erin")).allowed, (await member(fa, "user:mallory")).allowed], [true, false], "A");
    eq([(await member(fb, "user:erin")).allowed, (await member(fb, "user:mallory")).allowed], [false, true], "B");
    eq((await fb.read({ object: "cost_center:engineering" })).tuples.map((t) => t.key.user), ["user:mallory"],
       "B reads its own");
    eq((await fb.readChanges()).changes.map((c) => c.tuple_key.user), ["user:mallory"], "B's changelog");
    eq((await fb.listObjects({ user: "user:erin", relation: "member", type: "cost_center" })).objects, [],
       "B lists none of A's");
    // a model is its store's: A's id is not B's
    await fails(() => fb.readAuthorizationModel({ authorizationModelId: modelA }), FgaApiValidationError, 400,
                "authorization_model_not_found");
    await fa.writeAssertions([{ user: "user:erin", relation: "member", object: "cost_center:engineering",
                                expectation: true }], { authorizationModelId: modelA });
    eq((await fb.readAssertions({ authorizationModelId: modelB })).assertions, [], "B has no assertions");
    // the first store is untouched
    eq((await fga.read({ object: "cost_center:engineering", relation: "member" })).tuples.map((t) => t.key.user),
       ["user:erin"], "the first store's own");
});

await test("read_changes_start_time", async () => {
    await fa.writeTuples([{ user: "user:dan", relation: "member", object: "cost_center:engineering" }]);
    await sleep(30);
    const startTime = new Date().toISOString();
    await sleep(30);
    await fa.writeTuples([{ user: "user:frank", relation: "member", object: "cost_center:engineering" }]);
    const since = await fa.readChanges({ startTime });
    eq(since.changes.map((c) => c.tuple_key.user), ["user:frank"], "changes since start_time");
    eq((await fa.readChanges()).changes.length, 3, "all changes");
    await fails(() => fa.readChanges({ startTime: "yesterday" }), FgaApiValidationError, 400);
});

await test("delete_store", async () => {
    await fb.deleteStore();
    await fails(() => fb.check({ user: "user:mallory", relation: "member", object: "cost_center:engineering" }),
                FgaApiNotFoundError, 404, "store_id_not_found");
    await fails(() => fb.getStore(), FgaApiNotFoundError, 404, "store_id_not_found");
    await fails(() => fb.deleteStore(), FgaApiNotFoundError, 404, "store_id_not_found");
    eq((await lister.listStores()).stores.map((s) => s.id), [storeId, storeA.id], "B is not listed");
    eq((await fa.check({ user: "user:erin", relation: "member", object: "cost_center:engineering" })).allowed, true,
       "A is untouched");
});

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
