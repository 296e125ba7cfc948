#!/usr/bin/env node
// inject.mjs — another service, in Node, starts a Sanctum run, follows it to
// the end and fetches its receipt. The same client as inject.py, written
// from proto/PROTOCOL.md alone (section numbers below are its own), with the
// npm packages `zeromq` (6, CURVE built in) and `@msgpack/msgpack`:
//
//   1. keys (3.2): our own CURVE keypair, a zcert file pair made by
//      `sanctumctl keygen NAME --principal ext:NAME` (which also puts the
//      public key in the allow-list); the services' public keys beside it;
//   2. subscribe first (6.4): a SUB on the orchestrator's PUB, every topic
//      (seq counts every type, so a filtered stream would look like a gap);
//   3. `health` on the orchestrator: its last_seq is where our events start;
//   4. `run.start` (10.2) on the orchestrator's ROUTER, from a DEALER;
//   5. follow: each event of our run is printed in seq order; an event past
//      the next seq, or a quiet second (events lost at the tail), is filled
//      in with `events.replay` (6.4); the run's terminal event ends it;
//   6. `audit.receipt` (10.6) on the auditor: the receipt's JWS.
//
//   node inject.mjs [--keys DIR] [--name NAME] [--workflow W] [--amount N]
//                   [--vendor V] [--cost-center C] [--late SECONDS] [--timeout SECONDS]
//
// Endpoints, output lines and exit codes: as inject.py's docstring says
// (0 ended and receipt fetched, 1 error, 3 our key was refused).
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import * as zmq from "zeromq";
import { encode, decode } from "@msgpack/msgpack";

const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const TERMINAL = ["run.completed", "run.failed", "run.rejected", "run.cancelled"];

class Refused extends Error {}
class Failed extends Error {
    constructor(code, message) { super(message); this.code = code; }
}

// A request id (5): 48-bit ms time and 80 random bits, Crockford base32.
function ulid() {
    let v = (BigInt(Date.now()) << 80n) | BigInt("0x" + randomBytes(10).toString("hex"));
    let s = "";
    for (let i = 0; i < 26; i++, v >>= 5n) s = CROCKFORD[Number(v & 31n)] + s;
    return s;
}

// A request envelope (5); we never send `from`. Integers stay within 2^53.
function request(type, body) {
    return { v: 1, type, id: ulid(), ts: Date.now() * 1000,
             traceparent: `00-${randomBytes(16).toString("hex")}-${randomBytes(8).toString("hex")}-01`, body };
}

// A zcert file's key (Z85 text, as zeromq takes it).
function zcertKey(path, which) {
    const m = readFileSync(path, "utf8").match(new RegExp(`${which}-key = "(.{40})"`));
    if (!m) throw new Error(`${path}: no ${which}-key`);
    return m[1];
}

// A DEALER to one service's ROUTER (4, 6.1), retried as in 6.2.
class Service {
    constructor(name, endpoint, curve, timeoutMs = 2500, retries = 3) {
        Object.assign(this, { name, endpoint, curve, timeoutMs, retries });
        this.open();
    }

    open() {
        this.close();
        // a short receive timeout: between replies we look at the handshake
        this.sock = new zmq.Dealer({ ...this.curve, linger: 0, receiveTimeout: 50, sendTimeout: 50 });
        this.refused = null;
        // the handshake's outcome: a refused key is told at once (3.2)
        const sock = this.sock;
        (async () => {
            for await (const ev of sock.events)
                if (ev.type === "handshake:error:auth")
                    this.refused = new Refused(`${this.name} refused our key ${this.curve.curvePublicKey}: `
                                               + "it is not in the allow-list");
        })().catch(() => {});
        this.sock.connect(this.endpoint);
    }

    // The reply's body; throws Failed(code, message) on an error reply.
    async call(type, body) {
        const env = request(type, body);
        const frame = encode(env);
        for (let attempt = 0; attempt <= this.retries; attempt++) {
            if (attempt) this.open();               // a new socket, the same frame (6.2)
            const deadline = Date.now() + this.timeoutMs;
            let sent = false;       // a refused key leaves no peer to send to: wait to be writable
            while (Date.now() < deadline) {
                if (!sent) {
                    try {
                        await this.sock.send(frame);
                        sent = true;
                    } catch (e) {
                        if (e.code !== "EAGAIN") throw e;
                        if (this.refused) throw this.refused;
                    }
                    continue;
                }
                let msg;
                try {
                    msg = await this.sock.receive();
                } catch (e) {
                    if (e.code !== "EAGAIN") throw e;
                    if (this.refused) throw this.refused;
                    continue;
                }
                const reply = decode(msg[msg.length - 1]);
                if (reply.corr !== env.id) continue;    // a late answer to an earlier request
                if (!reply.ok) throw new Failed(reply.error.code, reply.error.message);
                return reply.body;
            }
        }
        throw new Failed("timeout", `${this.name}: no reply to ${type} after ${this.retries + 1} attempts`);
    }

    close() {
        if (this.sock) this.sock.close();
        this.sock = null;
    }
}

// The orchestrator's events in seq order, gaps filled by replay (6.4).
class Follower {
    constructor(orch, endpoint, curve, lastSeq) {
        Object.assign(this, { orch, endpoint, curve, last: lastSeq, sub: null, live: 0, replayed: 0 });
    }

    subscribe() {
        this.sub = new zmq.Subscriber({ ...this.curve, linger: 0, receiveTimeout: 1000 });
        this.sub.subscribe();                       // every topic
        this.sub.connect(this.endpoint);
    }

    // Events L+1 … toSeq (all there are when undefined), page by page.
    async replay(toSeq) {
        const out = [];
        let body = { from_seq: this.last + 1 };
        for (;;) {
            if (toSeq !== undefined) body.to_seq = toSeq;
            const page = await this.orch.call("events.replay", body);
            if (page.first_seq > body.from_seq) {
                console.error(`lost events ${body.from_seq}-${page.first_seq - 1}: trimmed from the outbox`);
                this.last = Math.max(this.last, page.first_seq - 1);    // said; go on after them
            }
            out.push(...page.events);
            if (page.next_seq === undefined) return out;
            body = { from_seq: page.next_seq };
        }
    }

    // Yield each event once, in seq order, until the caller stops or the
    // deadline (Date.now()) passes: Failed("timeout").
    async *events(deadline) {
        while (Date.now() < deadline) {
            let got = [];
            let msg = null;
            try {
                msg = await this.sub.receive();
            } catch (e) {
                if (e.code !== "EAGAIN") throw e;   // quiet for a second
            }
            if (msg) {
                const env = decode(msg[msg.length - 1]);
                if (msg.length !== 2 || !env || env.type !== msg[0].toString() || env.pub !== "svc:orchestrator"
                    || !Number.isInteger(env.seq) || env.seq <= this.last)
                    continue;                       // not an orchestrator event (4, 11.4), or seen
                if (env.seq > this.last + 1) {
                    got = await this.replay(env.seq - 1);   // a gap
                    this.replayed += got.length;
                }
                got.push(env);
                this.live++;
            } else {
                got = await this.replay();          // quiet: anything lost at the tail?
                this.replayed += got.length;
            }
            for (const env of got) {
                if (env.seq !== this.last + 1) continue;
                this.last = env.seq;
                yield env;
            }
        }
        throw new Failed("timeout", "the run did not end in time (--timeout)");
    }

    close() {
        if (this.sub) this.sub.close();
    }
}

function stepLine(b) {
    let line = `step ${b.node} ${b.kind} attempt=${b.attempt} outcome=${b.outcome}`;
    if (b.decision && typeof b.decision === "object") line += ` decision=${b.decision.result}`;
    if (b.status !== undefined && b.status !== null) line += ` status=${b.status}`;
    return line;
}

async function main() {
    const { values: a } = parseArgs({ options: {
        keys: { type: "string", default: "./var/keys" }, name: { type: "string", default: "erp-gateway" },
        workflow: { type: "string", default: "procurement" }, amount: { type: "string", default: "5000" },
        vendor: { type: "string", default: "Acme" }, "cost-center": { type: "string", default: "engineering" },
        late: { type: "string", default: "0" }, timeout: { type: "string", default: "60" } } });
    let curve;
    try {
        const mine = join(a.keys, `${a.name}.key_secret`);
        const own = { curvePublicKey: zcertKey(mine, "public"), curveSecretKey: zcertKey(mine, "secret") };
        curve = (service) => ({ ...own, curveServerKey: zcertKey(join(a.keys, `${service}.key`), "public") });
        curve("orchestrator"), curve("auditor");
    } catch (e) {
        console.error(`inject: cannot read the keys: ${e.message} `
                      + `(make them with \`sanctumctl keygen ${a.name} --principal ext:${a.name}\`)`);
        return 1;
    }
    const env = process.env;
    const orch = new Service("orchestrator", env.SANCTUM_ORCHESTRATOR_RPC || "tcp://127.0.0.1:7101",
                             curve("orchestrator"));
    const auditor = new Service("auditor", env.SANCTUM_AUDITOR_RPC || "tcp://127.0.0.1:7141", curve("auditor"));
    let follower = null;
    const deadline = Date.now() + Number(a.timeout) * 1000;
    try {
        follower = new Follower(orch, env.SANCTUM_ORCHESTRATOR_PUB || "tcp://127.0.0.1:7102",
                                curve("orchestrator"), (await orch.call("health", {})).last_seq);
        const late = Number(a.late);
        if (!late) follower.subscribe();
        const started = await orch.call("run.start", { workflow: a.workflow, input: {
            vendor: a.vendor, amount: Number(a.amount), cost_center: a["cost-center"] } });
        const run = started.run;
        console.log(`started ${run} workflow=${started.workflow} hash=${started.workflow_hash}`);
        if (late) {
            await sleep(late * 1000);
            follower.subscribe();
        }
        let state = null;
        for await (const evt of follower.events(deadline)) {
            const b = evt.body || {};
            if (b.run !== run) continue;
            console.log(`event ${evt.seq} ${evt.type}${"node" in b ? " " + b.node : ""}`);
            if (evt.type === "node.finished") console.log(stepLine(b));
            if (TERMINAL.includes(evt.type)) {
                state = evt.type.split(".")[1].toUpperCase();
                break;
            }
        }
        console.log(`end ${run} ${state}`);
        console.log(`followed live=${follower.live} replayed=${follower.replayed}`);
        // the auditor stores the terminal event a moment later: until then
        // the receipt is `conflict` (not ended) or `not_found` (10.6)
        let receipt;
        for (;;) {
            try {
                receipt = await auditor.call("audit.receipt", { run });
                break;
            } catch (e) {
                if (!(e instanceof Failed) || !["conflict", "not_found"].includes(e.code) || Date.now() > deadline)
                    throw e;
                await sleep(200);
            }
        }
        console.log(`receipt ${run} ${receipt.state} entries=${receipt.entries} size=${receipt.size}`);
        console.log(`jws ${receipt.jws}`);
        return 0;
    } catch (e) {
        if (e instanceof Refused) {
            console.error(`inject: ${e.message} (add it: sanctumctl keygen ${a.name} --principal ext:${a.name})`);
            return 3;
        }
        if (e instanceof Failed) {
            console.error(`inject: ${e.code}: ${e.message}`);
            return 1;
        }
        throw e;
    } finally {
        if (follower) follower.close();
        orch.close();
        auditor.close();
    }
}

process.exitCode = await main();
