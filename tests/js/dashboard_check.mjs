// Drives the dashboard in headless Debian Chromium (SwiftShader WebGL, no network but the
// service on loopback) through a scenario, and prints one JSON summary on the last line:
// per-layer screenshots with tile and entity counts, what clicks put in the properties panel,
// whether a live drone moved, and every console error, page error, failed request, HTTP error
// and blocked non-loopback request. The pytest side (tests/dashboard/) asserts on it.
//
// usage: node tests/js/dashboard_check.mjs SPEC.json
//   SPEC: {"url": "http://127.0.0.1:PORT/dashboard/", "out": "/tmp/shots",
//          "building": {"id", "lon", "lat", "h"}, "station": {"id", "lon", "lat", "h"},
//          "drone": {"id", "key", "path": [[lon, lat, h], ...]}, "timeout_s": 60}
import { readFile } from "node:fs/promises";
import path from "node:path";
import { newSummary, openBrowser, watchedPage } from "./dashboard_page.mjs";

const spec = JSON.parse(await readFile(process.argv[2], "utf8"));
const timeoutMs = (spec.timeout_s || 60) * 1000;
const summary = { ...newSummary(), drone: null };
const t0 = Date.now();
const state = { closing: false, reloading: false };
const log = (msg) => process.stderr.write(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}\n`);

function finish() {
  summary.seconds = (Date.now() - t0) / 1000;
  console.log(JSON.stringify(summary));
}
// a hard deadline, so the caller always gets a summary (with what was reached) to read
const deadline = setTimeout(() => {
  summary.harnessError = `deadline of ${spec.deadline_s || 200} s passed; last steps: ` +
    summary.steps.map((s) => s.name).join(", ");
  finish();
  process.exit(1);
}, (spec.deadline_s || 200) * 1000);

const browser = await openBrowser();
try {
  const page = await watchedPage(browser, summary, state);

  await page.goto(spec.url, { waitUntil: "load", timeout: timeoutMs });
  summary.webgl = await page.evaluate(() => {
    const gl = document.createElement("canvas").getContext("webgl2");
    return gl ? gl.getParameter(gl.RENDERER) : null;
  });
  log(`page loaded (${summary.webgl})`);
  await page.evaluate(() => window.twinbase.ready);
  log("dashboard ready");

  const ALL_OFF = { traffic: false, water: false, routes: false, drones: false };
  // one screenshot per layer: only that layer on (with the city model as context for the
  // 2D layers), the camera on its extent, taken once everything is loaded
  async function shot(name, kinds, layers, target, pitch = -40) {
    const started = Date.now();
    log(`shot ${name}`);
    await page.evaluate(async ([k, l, t, p]) => {
      window.twinbase.setLayers(l);
      await window.twinbase.setKinds(k);
      await window.twinbase.view(t, p);
    }, [kinds, layers, target, pitch]);
    const status = await page.evaluate((ms) => window.twinbase.idle(ms), timeoutMs);
    const file = path.join(spec.out, `${name}.png`);
    await page.screenshot({ path: file });
    summary.steps.push({ name, screenshot: file, status, seconds: (Date.now() - started) / 1000 });
    return status;
  }

  async function click(name, lonLatH, kinds, layers) {
    log(`click ${name}`);
    await page.evaluate(async ([k, l, t]) => {
      window.twinbase.setLayers(l);
      await window.twinbase.setKinds(k);
      await window.twinbase.view(t);
    }, [kinds, layers, { ...lonLatH, range: lonLatH.range || 150, pitch: -90 }]);
    await page.evaluate((ms) => window.twinbase.idle(ms), timeoutMs);
    const xy = await page.evaluate(([lon, lat, h]) => window.twinbase.toWindow(lon, lat, h),
      [lonLatH.lon, lonLatH.lat, lonLatH.h]);
    await page.mouse.click(xy.x, xy.y);
    await page.waitForFunction(() => ["ready", "error"].includes(window.twinbase.panel.state),
      null, { timeout: timeoutMs });
    const panel = await page.evaluate(() => ({
      state: window.twinbase.panel.state, shown: window.twinbase.panel.shown,
      text: document.getElementById("panel").innerText,
    }));
    const file = path.join(spec.out, `click-${name}.png`);
    await page.screenshot({ path: file });
    summary.clicks[name] = { ...panel, at: xy, screenshot: file };
    await page.evaluate(() => window.twinbase.panel.close());
  }

  // the first view as the page opens it, before any step moves the camera
  await page.evaluate((ms) => window.twinbase.idle(ms), timeoutMs);
  const first = path.join(spec.out, "first-view.png");
  await page.screenshot({ path: first });
  summary.firstView = { ...(await page.evaluate(() => window.twinbase.status().firstView)),
    centre: await page.evaluate(() => window.twinbase.centreFill()), screenshot: first,
    lang: await page.evaluate(() => document.documentElement.lang),
    heading: await page.evaluate(() => document.querySelector("h1").textContent) };
  // the measure's control: open sea, where nothing is drawn, must measure empty
  await page.evaluate(() => window.twinbase.view({ lon: -20, lat: -40, h: 0, range: 3000, pitch: -60 }));
  await page.evaluate((ms) => window.twinbase.idle(ms), timeoutMs);
  summary.emptyView = { centre: await page.evaluate(() => window.twinbase.centreFill()) };
  await page.screenshot({ path: path.join(spec.out, "empty-view.png") });

  // the dataset list flies to each survey, city model and BIM model
  summary.datasets = [];
  for (const d of await page.evaluate(() => window.twinbase.datasets.shown().map((x) => ({ id: x.id, kind: x.kind, name: x.name })))) {
    log(`dataset ${d.id} ${d.kind}`);
    await page.click(`#datasets li[data-dataset="${d.id}"] button.go`);
    await page.waitForTimeout(200);
    await page.evaluate((ms) => window.twinbase.idle(ms), timeoutMs);
    const file = path.join(spec.out, `dataset-${d.kind}.png`);
    await page.screenshot({ path: file });
    summary.datasets.push({ ...d, centre: await page.evaluate(() => window.twinbase.centreFill()), screenshot: file });
  }

  await shot("city", null, { traffic: true, water: true, routes: true, drones: true }, "city");
  for (const kind of await page.evaluate(() => window.twinbase.city.allKinds())) {
    await shot(`tiles-${kind}`, [kind], ALL_OFF, kind, kind === "bim" ? -35 : -45);
  }
  await shot("traffic", ["mesh"], { ...ALL_OFF, traffic: true }, "traffic", -50);
  await shot("water", ["mesh"], { ...ALL_OFF, water: true }, "water", -50);
  await shot("routes", ["mesh"], { ...ALL_OFF, routes: true }, "routes", -30);

  if (spec.drone) {
    // fly the drone: telemetry goes to the API as a drone would send it; the dashboard
    // must move it from its Server-Sent Events stream, without a reload
    const before = await page.evaluate((id) => window.twinbase.dronePosition(id), spec.drone.id);
    const eventsBefore = (await page.evaluate(() => window.twinbase.status())).droneEvents;
    for (const [i, [lon, lat, h]] of spec.drone.path.entries()) {
      const r = await fetch(new URL("/telemetry", spec.url), {
        method: "POST",
        headers: { Authorization: `Bearer ${spec.drone.key}`, "Content-Type": "application/json" },
        body: JSON.stringify({ points: [{ drone_id: spec.drone.id, t: new Date().toISOString(),
          lon, lat, h, speed_ms: 8, track_deg: 90, battery_pct: 90 - i }] }),
      });
      if (r.status !== 201) throw new Error(`telemetry: ${r.status} ${await r.text()}`);
      await new Promise((res) => setTimeout(res, 400));
    }
    const last = spec.drone.path[spec.drone.path.length - 1];
    await page.waitForFunction(([id, lon]) => {
      const p = window.twinbase.dronePosition(id);
      return p && Math.abs(p[0] - lon) < 1e-7;
    }, [spec.drone.id, last[0]], { timeout: timeoutMs });
    const after = await page.evaluate((id) => window.twinbase.dronePosition(id), spec.drone.id);
    const eventsAfter = (await page.evaluate(() => window.twinbase.status())).droneEvents;
    summary.drone = { before, after, events: eventsAfter - eventsBefore };
    await shot("drones", ["mesh"], { ...ALL_OFF, routes: true, drones: true }, "drones", -35);
  }

  if (spec.building) await click("building", spec.building, ["mesh"], ALL_OFF);
  if (spec.station) await click("station", spec.station, ["mesh"], { ...ALL_OFF, water: true });
  if (spec.bim) await click("bim", spec.bim, ["bim"], ALL_OFF);
  summary.final = await page.evaluate(() => window.twinbase.status());
  state.closing = true;
} catch (e) {
  summary.harnessError = String(e.stack || e).slice(0, 3000);
} finally {
  state.closing = true;
  await browser.close();
  clearTimeout(deadline);
  finish();
}
