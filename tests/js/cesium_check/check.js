#!/usr/bin/env node
// Headless CesiumJS load check for a 3D Tiles tileset, fully offline.
// From the shared cesium_check tool; here CesiumJS and playwright-core come from the project's
// node_modules (package.json), and the page also picks features and reports their ids.
//
// usage: node check.js <tileset.json path | http://127.0.0.1/... URL> [--out shot.png]
//                      [--timeout 90] [--sse 16] [--port 8765] [--no-globe]
// exit: 0 = loaded >=1 tile with no errors; 1 = load errors / zero tiles / timeout; 2 = harness failure
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const http = require("http");
const { spawn } = require("child_process");
const { chromium } = require("playwright-core");

function parseArgs(argv) {
  const a = { out: "cesium_check.png", timeout: 90, sse: 16, port: 0, globe: true, w: 1280, h: 800 };
  const rest = [];
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    if (k === "--out") a.out = argv[++i];
    else if (k === "--timeout") a.timeout = Number(argv[++i]);
    else if (k === "--sse") a.sse = Number(argv[++i]);
    else if (k === "--port") a.port = Number(argv[++i]);
    else if (k === "--no-globe") a.globe = false;
    else if (k === "--pitch") a.pitch = argv[++i];
    else if (k === "--range") a.range = argv[++i];
    else rest.push(k);
  }
  a.tileset = rest[0];
  return a;
}

function freePort() {
  return new Promise((res, rej) => {
    const s = require("net").createServer();
    s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => res(p)); });
    s.on("error", rej);
  });
}

function waitHttp(url, ms) {
  const end = Date.now() + ms;
  return new Promise((res, rej) => {
    const tryOnce = () => {
      http.get(url, (r) => { r.resume(); res(); }).on("error", () => {
        if (Date.now() > end) rej(new Error("server did not come up: " + url));
        else setTimeout(tryOnce, 100);
      });
    };
    tryOnce();
  });
}

(async () => {
  const args = parseArgs(process.argv.slice(2));
  if (!args.tileset) { console.error("usage: node check.js <tileset.json|url> [--out png]"); process.exit(2); }
  const here = __dirname;
  let cesiumBuild;
  try {
    cesiumBuild = path.join(path.dirname(require.resolve("cesium/package.json")), "Build", "Cesium");
  } catch (_) {
    console.error("missing the cesium npm package (npm ci in the project root)"); process.exit(2);
  }
  if (!fs.existsSync(cesiumBuild)) { console.error("missing " + cesiumBuild + " (npm install cesium)"); process.exit(2); }

  // Serve root: index.html + Cesium build + (optionally) the local tileset dir, all on one origin.
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "cesium_check_"));
  fs.copyFileSync(path.join(here, "index.html"), path.join(root, "index.html"));
  fs.symlinkSync(cesiumBuild, path.join(root, "Cesium"));
  const port = args.port || await freePort();
  const origin = `http://127.0.0.1:${port}`;
  let tilesetUrl = args.tileset;
  if (!/^https?:\/\//.test(tilesetUrl)) {
    const abs = path.resolve(tilesetUrl);
    if (!fs.existsSync(abs)) { console.error("no such tileset: " + abs); process.exit(2); }
    fs.symlinkSync(path.dirname(abs), path.join(root, "ts"));
    tilesetUrl = `${origin}/ts/${encodeURIComponent(path.basename(abs))}`;
  }
  const server = spawn("python3", ["-m", "http.server", String(port), "--bind", "127.0.0.1", "--directory", root],
                       { stdio: ["ignore", "ignore", "pipe"] });
  let serverLog = "";
  server.stderr.on("data", (d) => { serverLog += d.toString(); });
  const cleanup = () => { try { server.kill(); } catch (_) {} try { fs.rmSync(root, { recursive: true, force: true }); } catch (_) {} };
  let exitCode = 2;
  const t0 = Date.now();
  try {
    await waitHttp(origin + "/index.html", 10000);
    const browser = await chromium.launch({
      executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
             "--ignore-gpu-blocklist", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run", "--disable-default-apps", "--disable-extensions"],
    });
    const page = await browser.newPage({ viewport: { width: args.w, height: args.h } });
    const blocked = [], httpErrors = [], consoleErrors = [];
    // Hard offline guarantee: only loopback requests are allowed.
    await page.route("**/*", (route) => {
      const u = route.request().url();
      if (/^https?:\/\/(127\.0\.0\.1|localhost)(:\d+)?\//.test(u) || u.startsWith("data:") || u.startsWith("blob:")) return route.continue();
      blocked.push(u); return route.abort();
    });
    page.on("response", (r) => { if (r.status() >= 400) httpErrors.push(`${r.status()} ${r.url()}`); });
    page.on("pageerror", (e) => consoleErrors.push("pageerror: " + e.message));
    let result = null;
    const got = new Promise((res) => {
      page.on("console", (m) => {
        const t = m.text();
        if (t.startsWith("CESIUM_CHECK_RESULT ")) { result = JSON.parse(t.slice(20)); res(); }
        else if (m.type() === "error") consoleErrors.push("console.error: " + t.slice(0, 400));
      });
    });
    const q = new URLSearchParams({ tileset: tilesetUrl, timeout: String(args.timeout * 1000), sse: String(args.sse), globe: args.globe ? "1" : "0" });
    if (args.pitch !== undefined) q.set("pitch", args.pitch);
    if (args.range !== undefined) q.set("range", args.range);
    await page.goto(`${origin}/index.html?${q}`, { waitUntil: "load", timeout: 60000 });
    const webgl = await page.evaluate(() => {
      const c = document.createElement("canvas"); const gl = c.getContext("webgl2") || c.getContext("webgl");
      if (!gl) return null; const d = gl.getExtension("WEBGL_debug_renderer_info");
      return d ? gl.getParameter(d.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER);
    });
    await Promise.race([got, new Promise((r) => setTimeout(r, (args.timeout + 15) * 1000))]);
    await page.screenshot({ path: args.out });
    await browser.close();
    const summary = { tileset: tilesetUrl, webgl, result, httpErrors, blockedNonLoopback: blocked,
                      consoleErrors: consoleErrors.slice(0, 20), screenshot: path.resolve(args.out),
                      wallSeconds: (Date.now() - t0) / 1000 };
    console.log(JSON.stringify(summary, null, 2));
    if (!result) { console.error("FAIL: no result from page"); exitCode = 1; }
    else if (!result.ok || result.tileLoadEvents === 0) { console.error("FAIL: tileset did not load cleanly"); exitCode = 1; }
    else if (httpErrors.length) { console.error("FAIL: HTTP errors while loading"); exitCode = 1; }
    else { console.error(`OK: ${result.tileLoadEvents} tiles loaded`); exitCode = 0; }
  } catch (e) {
    console.error("HARNESS ERROR: " + (e.stack || e));
    if (serverLog) console.error(serverLog.slice(-2000));
    exitCode = 2;
  } finally {
    cleanup();
    process.exit(exitCode);
  }
})();
