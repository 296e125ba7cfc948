// The Gantt chart of a run: steps, approvals and token lifecycles on one
// time axis (µs), drawn as SVG once per update (never per frame).

const NS = "http://www.w3.org/2000/svg";

function el(name, attrs, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function fmtTime(us, tenths) {
  const d = new Date(us / 1000);
  const s = d.toLocaleTimeString([], { hour12: false });
  return tenths ? `${s}.${Math.floor((us / 100000) % 10)}` : s;
}

// rows: [{kind, id, label, start, end, state, marks: [{what, at}]}]
export function drawGantt(host, rows, now) {
  host.replaceChildren();
  const usable = rows.filter((r) => Number.isFinite(r.start));
  if (!usable.length) {
    host.append(Object.assign(document.createElement("p"), { className: "note", textContent: "No steps, approvals or leases yet." }));
    return;
  }
  // an active lease or a pending approval runs up to now (its expiry, in
  // the future, is in its tooltip): the axis ends at what has happened
  const endOf = (r) => (r.state === "active" || r.state === "pending" || !r.end) ? Math.min(now, r.end || now) : r.end;
  let t0 = Infinity, t1 = -Infinity;
  for (const r of usable) {
    t0 = Math.min(t0, r.start);
    t1 = Math.max(t1, endOf(r), r.start);
    for (const m of r.marks || []) if (Number.isFinite(m.at) && m.at <= now) t1 = Math.max(t1, m.at);
  }
  if (t1 <= t0) t1 = t0 + 1e6;
  const W = 900, left = 170, right = 20, rowH = 26, top = 22;
  const H = top + usable.length * rowH + 10;
  const x = (t) => left + ((t - t0) / (t1 - t0)) * (W - left - right);
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `Gantt chart of ${usable.length} rows` });
  for (let i = 0; i <= 4; i++) {
    const t = t0 + ((t1 - t0) * i) / 4;
    svg.append(el("line", { class: "axis", x1: x(t), x2: x(t), y1: top - 6, y2: H - 4 }));
    svg.append(el("text", { class: "tick", x: x(t), y: 12, "text-anchor": i === 4 ? "end" : "middle" },
                  fmtTime(t, t1 - t0 < 8e6)));       // ticks under 2 s apart: tenths, else they repeat
  }
  usable.forEach((r, i) => {
    const y = top + i * rowH;
    const g = el("g", { "data-kind": r.kind, "data-id": r.id || "" });
    const label = `${r.kind}: ${r.label || r.id || ""}`;
    const until = r.end && r.end > now ? ` (until ${fmtTime(r.end)})` : "";
    g.append(el("title", {}, `${label} — ${r.state || r.outcome || ""}${until}`));
    g.append(el("text", { class: "row-label", x: 6, y: y + 15 }, label.length > 26 ? label.slice(0, 25) + "…" : label));
    const x0 = x(r.start), x1 = Math.max(x0 + 5, x(Math.min(endOf(r), t1)));
    g.append(el("rect", { class: `bar-${r.kind}`, x: x0, y: y + 4, width: x1 - x0, height: rowH - 10, rx: 5 }));
    // marks closer than a label's width share one label ("issued → used →
    // revoked"); a label past the right edge ends at its mark; one that
    // would still overlap the label before it keeps its tooltip only
    const groups = [];
    for (const m of r.marks || []) {
      if (!Number.isFinite(m.at) || m.at > t1) continue;
      const mx = x(m.at);
      const c = el("circle", { class: "mark", cx: mx, cy: y + rowH / 2 - 1, r: 3 });
      c.append(el("title", {}, `${m.what}${m.who ? " by " + m.who : ""} at ${fmtTime(m.at)}`));
      g.append(c);
      const last = groups[groups.length - 1];
      if (!last || mx - last.x >= 56) groups.push({ x: mx, what: [m.what] });
      else if (last.what[last.what.length - 1] !== m.what) last.what.push(m.what);
    }
    let placed = -Infinity;
    for (const grp of groups) {
      const text = grp.what.join(" → ");
      const w = text.length * 5.6;
      const end = grp.x + 4 + w > W - 2;
      const from = end ? grp.x - 4 - w : grp.x + 4;
      if (from < placed + 6) continue;
      g.append(el("text", { class: "mark-label", x: end ? grp.x - 4 : grp.x + 4, y: y + 3,
                            "text-anchor": end ? "end" : "start" }, text));
      placed = from + w;
    }
    svg.append(g);
  });
  host.append(svg);
}
