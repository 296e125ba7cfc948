// Sanctum dashboard: the live state of runs from /api/events (server-sent
// events of every bus event) and the read API; no build step, no external
// resources, no inline script (the CSP forbids it).
import { Pipeline } from "./pipeline.js";
import { drawGantt } from "./gantt.js";
import { deviceKey, signDecision } from "./device.js";

const $ = (id) => document.getElementById(id);
const runs = new Map();          // run id -> model
const approvals = new Map();     // approval_id -> approval (pending list and gates)
const log = [];
let selected = null;
let key = null;
let dirty = false;
// Events applied so far: a run's state fetched over HTTP is older than any
// event applied to that run after the request left (run.touched), and must
// not overwrite it (a RUNNING answered before the run paused, arriving after
// run.paused, would leave the list saying RUNNING until the next event).
let applied = 0;

function run(id) {
  if (!runs.has(id)) runs.set(id, { id, state: "", workflow: "", nodes: new Map(), order: [], approvals: new Map(), graph: null });
  return runs.get(id);
}

function node(r, name, kind) {
  if (!r.nodes.has(name)) { r.nodes.set(name, { node: name, kind: kind || "", state: "pending" }); r.order.push(name); }
  const n = r.nodes.get(name);
  if (kind) n.kind = kind;
  return n;
}

function approval(b) {
  const a = approvals.get(b.approval_id) || { approval_id: b.approval_id, history: [], asked: [], state: "pending" };
  a.note = (line) => { if (!a.history.includes(line)) a.history.push(line); };
  for (const k of ["run", "node", "binding_message", "authorization_details_sha256", "expires_at"])
    if (b[k] !== undefined && b[k] !== null) a[k] = b[k];
  approvals.set(b.approval_id, a);
  if (a.run) run(a.run).approvals.set(a.approval_id, a);
  return a;
}

const when = (us) => new Date(us / 1000).toLocaleTimeString([], { hour12: false });

// One bus event into the model.
function apply(e) {
  const b = e.body || {};
  const t = e.type;
  const r = b.run ? run(b.run) : null;
  if (r) r.touched = ++applied;
  if (t === "run.started") { r.state = "RUNNING"; r.workflow = b.workflow || r.workflow; }
  else if (t === "node.started") node(r, b.node, b.kind).state = "running";
  else if (t === "node.finished") node(r, b.node, b.kind).state = b.outcome === "ok" ? "done" : "dead";
  else if (t === "run.paused") { r.state = "PAUSED"; if (b.reason === "approval") { const n = node(r, b.node); n.state = "gate"; n.gate = true; } }
  else if (t === "run.resumed") { r.state = "RUNNING"; node(r, b.node).state = "open"; }
  else if (t === "run.completed") r.state = "COMPLETED";
  else if (t === "run.failed") r.state = "FAILED";
  else if (t === "run.rejected") { r.state = "REJECTED"; if (b.node) node(r, b.node).state = "dead"; }
  else if (t === "run.cancelled") r.state = "CANCELLED";
  else if (t.startsWith("ciba.") || t === "approval.completed") {
    if (!b.approval_id) return;
    const a = approval(b);
    if (t === "ciba.requested") {
      a.state = "pending"; a.approver = b.approver; a.auth_req_id = b.auth_req_id; a.level = b.level;
      a.asked.push(b.approver);
      a.note(`${when(e.ts)} asked ${b.approver} (level ${b.level + 1})`);
    } else if (t === "ciba.escalated") {
      a.note(`${when(e.ts)} escalated from ${b.approver} to ${b.to_approver} (${b.reason})`);
      a.approver = b.to_approver; a.auth_req_id = b.to_auth_req_id; a.level = b.to_level;
      a.asked.push(b.to_approver);
    } else if (t === "ciba.approved") a.note(`${when(e.ts)} ${b.approver} approved (signed)`);
    else if (t === "ciba.denied") a.note(`${when(e.ts)} ${b.approver} denied`);
    else if (t === "ciba.expired") a.note(`${when(e.ts)} expired while ${b.approver} was asked`);
    else if (t === "ciba.cancelled") a.note(`${when(e.ts)} cancelled`);
    else if (t === "approval.completed") {
      a.state = b.outcome; a.note(`${when(e.ts)} chain ${b.outcome}`);
      if (r && b.node) {
        const n = node(r, b.node); n.gate = true;
        n.state = b.outcome === "approved" ? "open" : "dead";
        if (b.outcome === "approved" && r.state === "PAUSED") r.state = "RUNNING";
        if (b.outcome === "approved" && r.id === selected) pipe.surge();
      }
    }
    if (r && b.node && a.state === "pending") { const n = node(r, b.node); n.state = "gate"; n.gate = true; if (!r.state) r.state = "PAUSED"; }
  } else if (t.startsWith("token.") && r && b.node) {
    const n = node(r, b.node);
    if (t === "token.issued" && n.state !== "done") n.state = "running";
  }
}

const logged = new Set();          // pub/seq of the events in log

// An event into the list of live events, newest first; once.
function remember(e) {
  const id = `${e.pub}/${e.seq}`;
  if (logged.has(id)) return false;
  logged.add(id);
  let i = 0;
  while (i < log.length && (log[i].ts || 0) > (e.ts || 0)) i++;
  log.splice(i, 0, e);
  if (log.length > 200) {
    const old = log.pop();
    logged.delete(`${old.pub}/${old.seq}`);
  }
  return true;
}

function onEvent(e) {
  $("last-id").textContent = `${e.pub}/${e.seq}`;
  if (!remember(e)) return;
  apply(e);
  if (e.body && e.body.run && !selected) select(e.body.run);
  if (e.body && e.body.run === selected && /^(token\.|approval\.completed|node\.finished|run\.|receipt\.)/.test(e.type)) refreshRun(false);
  schedule();
}

// DOM updates batched to one per frame.
function schedule() {
  if (dirty) return;
  dirty = true;
  requestAnimationFrame(() => { dirty = false; render(); });
}

function li(text, cls) {
  const e = document.createElement("li");
  e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function amountOf(msg) {
  const m = /(\$|USD|EUR|€)\s?(\d[\d,]*(?:\.\d+)?)/.exec(msg || "");
  if (!m) return "—";
  const n = Number(m[2].replace(/,/g, ""));
  const v = Number.isFinite(n) ? n.toLocaleString("en-US", { maximumFractionDigits: 2 }) : m[2];
  return m[1] === "$" || m[1] === "€" ? `${m[1]}${v}` : `${m[1]} ${v}`;
}

function renderLists() {
  const filter = $("run-filter").value;
  const ul = $("runs");
  ul.replaceChildren();
  for (const r of [...runs.values()].reverse()) {
    if (filter && r.state !== filter) continue;
    const item = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.setAttribute("aria-current", String(r.id === selected));
    b.dataset.run = r.id;
    b.append(Object.assign(document.createElement("span"), { className: "mono", textContent: r.id }));
    b.append(Object.assign(document.createElement("span"), { className: `sub st-${r.state}`, textContent: `${r.workflow || "workflow ?"} · ${r.state || "?"}` }));
    item.append(b);
    ul.append(item);
  }
  const ap = $("approvals");
  ap.replaceChildren();
  const waiting = [...approvals.values()].filter((a) => a.state === "pending").length;
  if (!$("approvals-note").dataset.error) $("approvals-note").textContent = waiting ? "" : "None waiting.";
  for (const a of approvals.values()) {
    if (a.state !== "pending") continue;
    const item = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.run = a.run || "";
    b.append(Object.assign(document.createElement("span"), { textContent: `${a.binding_message || a.approval_id}` }));
    b.append(Object.assign(document.createElement("span"), { className: "sub", textContent: `asks ${a.approver || "?"} · run ${a.run || "—"}` }));
    item.append(b);
    ap.append(item);
  }
}

// The run's steps in the workflow's order (run.get's graph): from the start
// along the edges the run took (else the first), the steps not reached yet
// as pending; steps the run ran off that path after them.
function steps(r) {
  const seen = new Set(), out = [];
  const g = r.graph;
  if (g && g.start) {
    const kind = new Map((g.nodes || []).map((n) => [n.node, n.kind]));
    for (let cur = g.start; cur && !seen.has(cur) && kind.has(cur);) {
      seen.add(cur);
      out.push(r.nodes.get(cur) || { node: cur, kind: kind.get(cur), state: "pending" });
      const next = (g.edges || []).filter((e) => e.from === cur).map((e) => e.to);
      cur = next.find((t) => r.nodes.has(t)) || next[0];
    }
  }
  for (const name of r.order) if (!seen.has(name)) out.push(r.nodes.get(name));
  return out;
}

function currentGate(r) {
  let gate = null;
  for (const a of r.approvals.values()) if (!gate || a.state === "pending") gate = a;
  return gate;
}

function render() {
  renderLists();
  const ev = $("events");
  ev.replaceChildren(...log.slice(0, 60).map((e) => {
    const l = li("");
    l.append(Object.assign(document.createElement("span"), { className: "t", textContent: e.type }));
    l.append(document.createTextNode(` ${e.pub}/${e.seq}${e.body && e.body.node ? " · " + e.body.node : ""}`));
    return l;
  }));
  const r = selected ? runs.get(selected) : null;
  $("run-id").textContent = r ? r.id : "—";
  $("run-state").textContent = r ? r.state || "" : "";
  $("run-state").className = `pill st-${r ? r.state : ""}`;
  $("run-workflow").textContent = r ? (r.workflow ? `workflow ${r.workflow}` : "") : "";
  const nodes = r ? steps(r) : [];
  pipe.set(nodes);
  $("nodes").replaceChildren(...nodes.map((n) => li(`${n.node}: ${n.state === "gate" ? "halted at the approval gate" : n.state}`, `n-${n.state}`)));
  const text = nodes.length ? nodes.map((n) => `${n.node} ${n.state === "gate" ? "halted at a closed valve" : n.state}`).join(", ") : "No run selected";
  $("pipeline").setAttribute("aria-label", `Pipeline: ${text}`);
  $("pipe-text").textContent = text;
  const a = r ? currentGate(r) : null;
  $("gate").hidden = !a;
  if (a) {
    $("gate-node").textContent = a.node || "";
    $("gate-state").textContent = a.state;
    $("gate-state").className = `pill st-${a.state}`;
    $("gate-who").textContent = a.state === "pending" ? `${a.approver || "?"} (level ${(a.level || 0) + 1})`
      : [...new Set(a.asked)].join(", then ") || a.approver || "";
    $("gate-icon").className = `valve-icon st-${a.state}`;
    $("gate-msg").textContent = a.binding_message || "";
    $("gate-amount").textContent = amountOf(a.binding_message);
    $("gate-history").replaceChildren(...a.history.map((h) => li(h)));
    const can = a.state === "pending" && key && a.auth_req_id;
    $("approve").disabled = !can;
    $("deny").disabled = !can;
    tick();
  }
}

function tick() {
  const r = selected ? runs.get(selected) : null;
  const a = r ? currentGate(r) : null;
  if (!a) return;
  if (a.state !== "pending" || !a.expires_at) { $("gate-left").textContent = a.state === "pending" ? "—" : "closed"; return; }
  const left = Math.max(0, Math.round((a.expires_at / 1000 - Date.now()) / 1000));
  $("gate-left").textContent = `${Math.floor(left / 60)}m ${String(left % 60).padStart(2, "0")}s`;
}

async function getJSON(path) {
  const res = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await res.json().catch(() => ({}));
  return { status: res.status, body };
}

function notAvailable(res) {
  const code = res.body && res.body.error && res.body.error.code;
  return code === "not_implemented" ? "not available yet" : (res.body.error && res.body.error.message) || `HTTP ${res.status}`;
}

async function loadLists() {
  const state = $("run-filter").value;
  const since = applied;
  const rl = await getJSON(`/api/runs${state ? "?state=" + state : ""}`);
  if (rl.status === 200) {
    $("runs-note").textContent = "";
    for (const x of rl.body.runs || []) {
      const r = run(x.run);
      if ((r.touched || 0) <= since) r.state = x.state;
      r.workflow = x.workflow;
    }
  } else $("runs-note").textContent = `Run list: ${notAvailable(rl)}`;
  const al = await getJSON("/api/approvals?state=pending");
  if (al.status === 200) {
    delete $("approvals-note").dataset.error;
    for (const x of al.body.approvals || []) loadApproval(x);
  } else {
    $("approvals-note").dataset.error = "1";
    $("approvals-note").textContent = `Approvals: ${notAvailable(al)}`;
  }
  schedule();
}

// An approval object (ciba.list) into the model.
function loadApproval(x) {
  const a = approval(x);
  a.state = x.state;
  const lvl = (x.levels || [])[x.current || 0] || {};
  a.approver = lvl.approver; a.auth_req_id = lvl.auth_req_id; a.level = x.current || 0;
  for (const l of x.levels || []) if (l.asked_at) {
    a.note(`${when(l.asked_at)} asked ${l.approver} (level ${x.levels.indexOf(l) + 1})`);
    a.asked.push(l.approver);
  }
  if (x.run && x.node) {
    const n = node(run(x.run), x.node); n.gate = true;
    if (x.state === "pending") n.state = "gate";
    else if (x.state === "approved" && n.state === "gate") n.state = "open";
    else if (x.state !== "approved") n.state = "dead";
  }
}

async function refreshRun(full) {
  const id = selected;
  if (!id) return;
  if (full) {
    const since = applied;
    const res = await getJSON(`/api/runs/${id}`);
    if (res.status === 200) {
      const r = run(id);
      const g = res.body.run;
      if (g && (r.touched || 0) > since) { r.workflow = g.workflow; r.graph = g.graph || r.graph; }
      else if (g) {
        r.state = g.state; r.workflow = g.workflow; r.graph = g.graph || r.graph;
        for (const n of g.nodes || []) {
          const m = node(r, n.node, n.kind);
          const st = String(n.state || "").toLowerCase();
          if (st === "running") m.state = m.gate && g.state === "PAUSED" ? "gate" : "running";
          else if (st === "finished" || n.outcome) m.state = n.outcome === "ok" ? "done" : "dead";
          if (n.approval) m.gate = true;
        }
        if (g.state === "PAUSED" && g.approval && g.approval.node) { const m = node(r, g.approval.node); m.gate = true; m.state = "gate"; }
      }
      for (const a of res.body.approvals || []) loadApproval(a);
      for (const e of res.body.events || []) if (remember(e)) apply(e);
    }
  }
  const gantt = await getJSON(`/api/runs/${id}/gantt`);
  if (id !== selected) return;
  if (gantt.status === 200) {
    $("gantt-note").textContent = gantt.body.errors ? `Partly: ${Object.keys(gantt.body.errors).join(", ")} not available` : "";
    drawGantt($("gantt"), gantt.body.rows || [], Date.now() * 1000);
  } else $("gantt-note").textContent = notAvailable(gantt);
  const p = $("receipt");
  const ended = ["COMPLETED", "REJECTED", "FAILED", "CANCELLED"].includes(run(id).state);
  receiptFacts(null);
  if (!ended) { p.className = "note"; p.textContent = "Receipt: issued when the run ends"; schedule(); return; }
  const rc = await getJSON(`/api/runs/${id}/receipt`);
  if (id !== selected) return;
  if (rc.status === 200) {
    const v = rc.body.verification || {};
    p.className = v.verified ? "verified" : "unverified";
    p.textContent = v.verified ? `Receipt verified — ${v.detail}` : `Receipt NOT verified — ${v.detail}`;
    if (v.verified) receiptFacts(rc.body.receipt);
  } else { p.className = "note"; p.textContent = `Receipt: ${notAvailable(rc)}`; }
  schedule();
}

// What a verified receipt says (its JWS payload: the auditor's summary of
// the run's proven entries), as facts under the verdict; null: none.
function receiptFacts(receipt) {
  const dl = $("receipt-facts");
  let claims = null;
  try {
    const part = receipt.jws.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    claims = JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(part), (c) => c.charCodeAt(0))));
  } catch { claims = null; }
  dl.hidden = !claims;
  if (!claims) { dl.replaceChildren(); return; }
  const signed = (claims.approvals || []).map((a) => (a.levels || []).filter((l) => l.state === "approved")
    .map((l) => l.approver).join(", ")).filter(Boolean);
  const gaps = (claims.gaps || []).length;
  const facts = [
    ["Run", `${claims.state || "?"}${claims.workflow ? " · workflow " + claims.workflow : ""}`],
    ["Steps", (claims.steps || []).map((x) => x.node).join(" → ") || "none"],
    ["Approvals", signed.length ? signed.map((s) => `signed by ${s}`).join("; ") : "none needed"],
    ["Leases", `${(claims.leases || []).length}`],
    ["Proofs", `${(claims.entries || []).length} audit entries, each proven in the signed log${gaps ? `; ${gaps} gaps` : ""}`],
    ["Issued", receipt.issued_at ? when(receipt.issued_at) : "—"],
  ];
  dl.replaceChildren(...facts.flatMap(([k, v]) => [
    Object.assign(document.createElement("dt"), { textContent: k }),
    Object.assign(document.createElement("dd"), { textContent: v }),
  ]));
}

function select(id) {
  if (!id) return;
  selected = id;
  refreshRun(true);
  schedule();
}

async function decide(decision) {
  const r = runs.get(selected);
  const a = r && currentGate(r);
  const msg = $("decide-msg");
  if (!a || !key) return;
  msg.textContent = "signing…";
  try {
    const signature = await signDecision(key, a.auth_req_id, decision, a.binding_message, a.authorization_details_sha256 || "");
    const res = await fetch("/api/approvals/decide", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ auth_req_id: a.auth_req_id, decision, signature, device: key.publicKey }),
    });
    const body = await res.json().catch(() => ({}));
    msg.textContent = res.ok ? `${decision === "approve" ? "Approved" : "Denied"}: the broker verified this device's signature.`
                             : `Refused: ${(body.error && body.error.message) || res.status}`;
  } catch (err) {
    msg.textContent = `Could not sign: ${err.message}`;
  }
}

// An invite code (sanctumctl device invite USER) enrols this browser's
// public key as USER's device; the code is used once, then refused.
async function redeem(ev) {
  ev.preventDefault();
  const msg = $("invite-msg"), input = $("invite-code");
  const code = input.value.trim();
  if (!code) { msg.textContent = "Paste the code first."; return; }
  if (!key) { msg.textContent = "This browser has no Ed25519 device key."; return; }
  msg.textContent = "enrolling…";
  try {
    const res = await fetch("/api/devices/redeem", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ code, public_key: key.publicKey }),
    });
    const body = await res.json().catch(() => ({}));
    if (res.ok) {
      input.value = "";
      msg.textContent = `Enrolled: this browser is now a device of ${body.user}.`;
    } else {
      msg.textContent = `Refused: ${(body.error && body.error.message) || res.status}`;
    }
  } catch (err) {
    msg.textContent = `Could not enrol: ${err.message}`;
  }
}

let source = null;
function connect() {
  source = new EventSource("/api/events");
  source.onopen = () => { $("conn").textContent = "live"; $("conn").className = "pill pill-live"; };
  source.onerror = () => { $("conn").textContent = "reconnecting…"; $("conn").className = "pill pill-wait"; };
  source.onmessage = (m) => { try { onEvent(JSON.parse(m.data)); } catch (err) { console.warn("bad event", err); } };
  source.addEventListener("resync", () => { loadLists(); refreshRun(true); });
}

const pipe = new Pipeline($("pipeline"));

document.addEventListener("click", (ev) => {
  const b = ev.target.closest("button[data-run]");
  if (b && b.dataset.run) select(b.dataset.run);
});
$("run-filter").addEventListener("change", () => loadLists());
$("approve").addEventListener("click", () => decide("approve"));
$("deny").addEventListener("click", () => decide("deny"));
$("invite-form").addEventListener("submit", redeem);
$("device-new").addEventListener("click", async () => { key = await deviceKey(true); $("device-key").textContent = key.publicKey; schedule(); });
setInterval(tick, 1000);

(async () => {
  try {
    key = await deviceKey();
    $("device-key").textContent = key.publicKey;
  } catch (err) {
    $("device-key").textContent = `no Ed25519 in this browser's WebCrypto (${err.message})`;
  }
  await loadLists().catch((err) => { $("runs-note").textContent = err.message; });
  connect();
  if (!selected && runs.size) select([...runs.keys()].pop());
})();
