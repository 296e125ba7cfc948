// The workflow as a pipeline of frosted-glass pipes, drawn on a canvas.
// Plasma (pre-rendered glowing sprites, additive blending) flows through the
// pipes of running steps, halts and throbs at a closed valve on an approval
// gate, surges on when the approver signs; a denied or expired gate turns
// the pipe dead. One requestAnimationFrame loop touches only the canvas: no
// DOM reads or writes per frame (the size is read by a ResizeObserver). With
// prefers-reduced-motion the picture is drawn once per change, still.

const COLORS = {
  cyan: "82,240,255", violet: "200,107,255", green: "93,255,158", amber: "255,200,87", red: "255,93,115",
};

function sprite(rgb, size) {
  const c = document.createElement("canvas");
  c.width = c.height = size;
  const g = c.getContext("2d");
  const grad = g.createRadialGradient(size / 2, size / 2, 0, size / 2, size / 2, size / 2);
  grad.addColorStop(0, `rgba(255,255,255,0.95)`);
  grad.addColorStop(0.25, `rgba(${rgb},0.85)`);
  grad.addColorStop(1, `rgba(${rgb},0)`);
  g.fillStyle = grad;
  g.fillRect(0, 0, size, size);
  return c;
}

export class Pipeline {
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.nodes = [];
    this.w = 0; this.h = 0; this.dpr = 1;
    this.surgeUntil = 0;
    this.reduced = matchMedia("(prefers-reduced-motion: reduce)");
    this.sprites = { cyan: sprite(COLORS.cyan, 48), violet: sprite(COLORS.violet, 48), amber: sprite(COLORS.amber, 48) };
    new ResizeObserver((entries) => {
      const r = entries[0].contentRect;
      this.dpr = window.devicePixelRatio || 1;
      this.w = r.width; this.h = r.height;
      this.canvas.width = Math.round(r.width * this.dpr);
      this.canvas.height = Math.round(r.height * this.dpr);
      this.draw(performance.now());
    }).observe(canvas);
    this.frame = (t) => {
      this.draw(t);
      this.raf = requestAnimationFrame(this.frame);
    };
    this.reduced.addEventListener("change", () => this.loop());
    document.addEventListener("visibilitychange", () => this.loop());
    this.loop();
  }

  loop() {
    cancelAnimationFrame(this.raf);
    if (!this.reduced.matches && !document.hidden) this.raf = requestAnimationFrame(this.frame);
    else this.draw(performance.now());
  }

  // nodes: [{node, kind, state: pending|running|gate|open|done|dead}]
  set(nodes) {
    this.nodes = nodes.map((n) => ({ ...n }));
    if (this.reduced.matches) this.draw(performance.now());
  }

  surge() {
    this.surgeUntil = performance.now() + 1800;
  }

  // What each pipe into node i does.
  mode(i) {
    const n = this.nodes[i];
    for (let k = 0; k < i; k++) {
      const s = this.nodes[k].state;
      if (s === "dead") return "dead";
      if (s === "gate") return "empty";
      if (s === "pending" || s === "running") return "empty";
    }
    switch (n.state) {
      case "running": case "open": return "flow";
      case "gate": return "halt";
      case "done": return "full";
      case "dead": return "dead";
      default: return "empty";
    }
  }

  draw(t) {
    const { ctx, w, h, dpr } = this;
    if (!w || !h) return;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const n = this.nodes.length;
    if (!n) {
      ctx.fillStyle = "rgba(154,168,199,0.8)";
      ctx.font = "14px system-ui, sans-serif";
      ctx.textAlign = "center";
      ctx.fillText("Select a run, or start one: its pipeline appears here.", w / 2, h / 2);
      return;
    }
    const surging = t < this.surgeUntil;
    const y = h * 0.42, ph = 26, pad = 40;
    const step = (w - 2 * pad) / n;
    const xs = this.nodes.map((_, i) => pad + step * (i + 1) - step * 0.15);
    let x0 = pad * 0.5;
    for (let i = 0; i < n; i++) {
      const mode = this.mode(i);
      const xa = x0, xb = xs[i] - 18;
      this.pipe(xa, y - ph / 2, xb - xa, ph, mode, t, surging);
      x0 = xs[i] + 18;
    }
    for (let i = 0; i < n; i++) this.junction(xs[i], y, this.nodes[i], t);
  }

  pipe(x, y, len, ph, mode, t, surging) {
    const { ctx } = this;
    if (len <= 4) return;
    const r = ph / 2;
    const path = () => {
      ctx.beginPath();
      ctx.roundRect(x, y, len, ph, r);
    };
    // glass body
    path();
    const glass = ctx.createLinearGradient(0, y, 0, y + ph);
    glass.addColorStop(0, "rgba(255,255,255,0.20)");
    glass.addColorStop(0.45, "rgba(255,255,255,0.05)");
    glass.addColorStop(1, "rgba(255,255,255,0.12)");
    ctx.fillStyle = mode === "dead" ? "rgba(255,93,115,0.10)" : glass;
    ctx.fill();
    // plasma
    ctx.save();
    path();
    ctx.clip();
    if (mode === "flow" || mode === "full" || mode === "halt") {
      const base = ctx.createLinearGradient(x, 0, x + len, 0);
      const a = mode === "full" ? 0.25 : 0.45;
      base.addColorStop(0, `rgba(${COLORS.cyan},${a})`);
      base.addColorStop(1, `rgba(${COLORS.violet},${a})`);
      ctx.fillStyle = base;
      ctx.fillRect(x, y + 5, len, ph - 10);
      ctx.globalCompositeOperation = "lighter";
      const count = Math.max(6, Math.round(len / 22));
      const speed = (mode === "full" ? 0.00004 : 0.00018) * (surging ? 5 : 1);
      for (let k = 0; k < count; k++) {
        let p;
        let size = ph * 1.5;
        if (mode === "halt") {
          // piled up against the valve, throbbing
          const q = k / count;
          p = 1 - q * q * 0.85 + Math.sin(t * 0.004 + k * 1.7) * 0.01;
          size *= 0.8 + 0.25 * Math.sin(t * 0.006 + k);
        } else {
          p = (k / count + t * speed) % 1;
        }
        const spr = k % 3 === 0 ? this.sprites.violet : mode === "halt" ? this.sprites.amber : this.sprites.cyan;
        const yy = y + ph / 2 + Math.sin(t * 0.003 + k * 2.1) * 3;
        ctx.drawImage(spr, x + p * len - size / 2, yy - size / 2, size, size);
      }
      ctx.globalCompositeOperation = "source-over";
    }
    ctx.restore();
    // rim and highlight
    path();
    ctx.lineWidth = 1.2;
    ctx.strokeStyle = mode === "dead" ? "rgba(255,93,115,0.55)" : "rgba(255,255,255,0.35)";
    ctx.stroke();
    ctx.beginPath();
    ctx.moveTo(x + r, y + 3.5);
    ctx.lineTo(x + len - r, y + 3.5);
    ctx.strokeStyle = "rgba(255,255,255,0.35)";
    ctx.lineWidth = 1;
    ctx.stroke();
  }

  junction(x, y, node, t) {
    const { ctx } = this;
    const st = node.state;
    const col = st === "gate" ? COLORS.amber : st === "dead" ? COLORS.red : st === "done" ? COLORS.green
              : st === "running" || st === "open" ? COLORS.cyan : "154,168,199";
    ctx.save();
    ctx.shadowColor = `rgba(${col},0.9)`;
    ctx.shadowBlur = st === "pending" ? 0 : 16;
    ctx.beginPath();
    ctx.arc(x, y, 17, 0, Math.PI * 2);
    ctx.fillStyle = "rgba(13,21,38,0.9)";
    ctx.fill();
    ctx.lineWidth = 3;
    ctx.strokeStyle = `rgba(${col},0.95)`;
    ctx.stroke();
    ctx.restore();
    if (st === "gate" || st === "open" || (node.gate && st !== "pending")) {
      // the valve: a gate across the pipe while closed (throbbing), turned
      // along the pipe once the approver signed
      const open = st !== "gate" && st !== "dead";
      ctx.save();
      ctx.translate(x, y);
      ctx.rotate(open ? 0 : Math.PI / 2 + (st === "gate" ? Math.sin(t * 0.003) * 0.06 : 0));
      ctx.strokeStyle = `rgba(${col},1)`;
      ctx.lineCap = "round";
      ctx.lineWidth = 5;
      ctx.beginPath();
      ctx.moveTo(-12, 0); ctx.lineTo(12, 0);
      ctx.stroke();
      ctx.restore();
    }
    ctx.fillStyle = "rgba(232,238,252,0.95)";
    ctx.font = "600 12px system-ui, sans-serif";
    ctx.textAlign = "center";
    ctx.fillText(node.node, x, y + 36);
    ctx.fillStyle = `rgba(${col},0.9)`;
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillText(st === "gate" ? "valve closed" : st, x, y + 51);
  }
}
