// openfga_stream.mjs — OpenFGA's own JavaScript SDK (@openfga/sdk,
// unmodified) consuming sanctum-authz's StreamedListObjects.
//
// Usage: node openfga_stream.mjs API_URL TOKEN BIG_STORE COND_STORE N
//   BIG_STORE: the hierarchy of tests/integration/test_authz_stream.py,
//   where user:anne views N documents; COND_STORE: anne views doc:a, b, c
//   and, under a condition needing x, doc:z.
// Prints `ok NAME` / `not ok NAME: why` lines, then `N passed, N failed`;
// exits 1 when one failed.
import { OpenFgaClient, CredentialsMethod, FgaApiValidationError, FgaApiNotFoundError,
         FgaError } from "@openfga/sdk";

const [apiUrl, token, bigStore, condStore, nText] = process.argv.slice(2);
const n = parseInt(nText, 10);
const retryParams = { maxRetry: 0 };
const client = (storeId) => new OpenFgaClient({ apiUrl, storeId, retryParams,
    credentials: { method: CredentialsMethod.ApiToken, config: { token } } });
const big = client(bigStore), cond = client(condStore);
const anneDocs = { user: "user:anne", relation: "viewer", type: "doc" };
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

// the objects of a streamed listing, with the time of the first and the last
async function stream(fga, body) {
    const got = [];
    const start = performance.now();
    let first = null;
    for await (const r of fga.streamedListObjects(body)) {
        if (first === null)
            first = performance.now() - start;
        got.push(r.object);
    }
    return { got, first, total: performance.now() - start };
}

await test("streams_every_object_first_one_early", async () => {
    const { got, first, total } = await stream(big, anneDocs);
    console.log(`${got.length} objects, first after ${first.toFixed(0)} ms, last after ${total.toFixed(0)} ms`);
    eq(got.length, n, "objects");
    eq(new Set(got).size, n, "distinct objects");
    if (!(first < total / 5))
        throw new Error(`the first object came after ${first} ms of ${total}`);
});

await test("same_as_list_objects_below_its_cap", async () => {
    const body = { user: "user:anne", relation: "viewer", type: "folder" };
    const { got } = await stream(big, body);
    const out = await big.listObjects(body);
    eq(got.sort(), out.objects.sort(), "objects");
    eq(got.length, 101, "folders");
});

await test("stopping_early_frees_the_server", async () => {
    let seen = 0;
    for await (const r of big.streamedListObjects(anneDocs)) {
        if (!r.object.startsWith("doc:"))
            throw new Error(`not a doc: ${r.object}`);
        if (++seen === 10)
            break;                     // the SDK closes the connection
    }
    const start = performance.now();
    const out = await big.listObjects({ user: "user:anne", relation: "viewer", type: "folder" });
    const took = performance.now() - start;
    eq(out.objects.length, 101, "folders");
    if (took > 2000)
        throw new Error(`the next listing waited ${took} ms for the query thread`);
});

await test("missing_store_is_not_found", async () => {
    try {
        await stream(client("01ARZ3NDEKTSV4RRFFQ69G5FAV"), anneDocs);
    } catch (e) {
        if (!(e instanceof FgaApiNotFoundError))
            throw new Error(`expected FgaApiNotFoundError, got ${e && e.constructor && e.constructor.name}`);
        eq(e.statusCode, 404, "status");
        return;
    }
    throw new Error("the listing succeeded");
});

await test("unknown_type_is_a_validation_error", async () => {
    try {
        await stream(big, { user: "user:anne", relation: "viewer", type: "nope" });
    } catch (e) {
        if (!(e instanceof FgaApiValidationError))
            throw new Error(`expected FgaApiValidationError, got ${e && e.constructor && e.constructor.name}`);
        eq(e.statusCode, 400, "status");
        return;
    }
    throw new Error("the listing succeeded");
});

await test("error_after_some_objects", async () => {
    const got = [];
    try {
        for await (const r of cond.streamedListObjects(anneDocs))
            got.push(r.object);
    } catch (e) {
        if (!(e instanceof FgaError) || !/code: 3\).*context is missing parameters/.test(e.message))
            throw new Error(`unexpected error: ${e && e.message}`);
        eq(got.sort(), ["doc:a", "doc:b", "doc:c"], "objects before the error");
        const { got: all } = await stream(cond, { ...anneDocs, context: { x: 2 } });
        eq(all.sort(), ["doc:a", "doc:b", "doc:c", "doc:z"], "objects with the context");
        return;
    }
    throw new Error("the listing ended without its error");
});

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
