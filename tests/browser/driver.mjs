// A browser driver for the dashboard tests: playwright-core (pinned in
// tests/js/package.json) driving Debian's chromium, headless. It reads one
// JSON command per line on stdin and answers one JSON line on stdout, so a
// Python test can drive the bus and the browser in turn.
//
//   {cmd: "open", url}            launch, load the page, watch the console
//   {cmd: "wait", selector, contains, timeout?}   until the text has it
//   {cmd: "wait_for", expression, timeout?}       until the expression (in the page) is true
//   {cmd: "text", selector}       its text
//   {cmd: "count", selector}      how many match
//   {cmd: "click", selector}
//   {cmd: "fill", selector, value}  type into an input
//   {cmd: "attr", selector, name}
//   {cmd: "screenshot", path}
//   {cmd: "errors"}               console errors and page errors so far
//   {cmd: "csp_probe"}            add an inline script: did the CSP block it?
//   {cmd: "eval", expression}     evaluate it in the page (a promise is awaited): its value
//   {cmd: "close"}
import { createRequire } from "node:module";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import readline from "node:readline";

const require = createRequire(new URL("../js/package.json", import.meta.url));
const { chromium } = require("playwright-core");

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
let context = null, page = null, profile = null;
const errors = [];

async function handle(c) {
  switch (c.cmd) {
    case "open": {
      profile = mkdtempSync(join(tmpdir(), "sanctum-browser-"));
      context = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM, headless: true,
        args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        viewport: { width: 1400, height: 1000 },
      });
      page = context.pages()[0] || (await context.newPage());
      page.on("console", (m) => {
        if (m.type() === "error") errors.push({ text: `console: ${m.text()}`, url: (m.location() || {}).url || "" });
      });
      page.on("pageerror", (e) => errors.push({ text: `pageerror: ${e.message}`, url: "" }));
      page.on("requestfailed", (r) => {
        if (!r.url().includes("/api/events")) errors.push({ text: `requestfailed: ${r.url()}`, url: r.url() });
      });
      const res = await page.goto(c.url, { waitUntil: "load" });
      return { status: res.status(), headers: res.headers() };
    }
    case "wait": {
      const seen = ([sel, want]) => {
        const e = document.querySelector(sel);
        const text = e ? (e.getAttribute("aria-label") || "").concat(" ", e.textContent || "") : null;
        return want === null ? text : text !== null && text.includes(want);
      };
      try {
        await page.waitForFunction(seen, [c.selector, c.contains], { timeout: c.timeout || 10000 });
      } catch (err) {     // say what the page showed instead
        const now = await page.evaluate(seen, [c.selector, null]).catch(() => "?");
        throw new Error(`${err.message.split("\n")[0]}; ${c.selector} shows ${JSON.stringify(now)}`);
      }
      return { ok: true };
    }
    case "wait_for":
      await page.waitForFunction(c.expression, null, { timeout: c.timeout || 10000 });
      return { ok: true };
    case "text":
      return { text: await page.locator(c.selector).first().textContent() };
    case "count":
      return { count: await page.locator(c.selector).count() };
    case "attr":
      return { value: await page.locator(c.selector).first().getAttribute(c.name) };
    case "click":
      await page.locator(c.selector).first().click();
      return { ok: true };
    case "fill":
      await page.locator(c.selector).first().fill(c.value);
      return { ok: true };
    case "screenshot":
      await page.screenshot({ path: c.path, fullPage: true });
      return { ok: true };
    case "errors":
      return { errors };
    case "csp_probe":
      return await page.evaluate(() => new Promise((resolve) => {
        let violation = null;
        document.addEventListener("securitypolicyviolation", (e) => { violation = e.violatedDirective; });
        const s = document.createElement("script");
        s.textContent = "window.__inlineRan = true";
        document.body.append(s);
        setTimeout(() => resolve({ ran: window.__inlineRan === true, violation }), 300);
      }));
    case "eval":
      return { value: await page.evaluate(c.expression) };
    case "close":
      if (context) await context.close();
      if (profile) rmSync(profile, { recursive: true, force: true });
      context = null;
      return { ok: true };
    default:
      throw new Error(`unknown command ${c.cmd}`);
  }
}

const rl = readline.createInterface({ input: process.stdin });
for await (const line of rl) {
  if (!line.trim()) continue;
  let out;
  try {
    out = { ok: true, ...(await handle(JSON.parse(line))) };
  } catch (err) {
    out = { ok: false, error: String(err && err.message || err).slice(0, 2000) };
  }
  process.stdout.write(JSON.stringify(out) + "\n");
  if (JSON.parse(line).cmd === "close") break;
}
if (context) await context.close();
process.exit(0);
