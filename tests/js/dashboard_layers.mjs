// The dashboard's map layers in headless Debian Chromium: where the first view and a dataset's
// fly-to put the city (the content's box in the view), a generated route network, rivers on
// the ground, and approved flights with a click on one. Prints one JSON summary on the last
// line; screenshots go to spec.out.
//
// usage: node tests/js/dashboard_layers.mjs SPEC.json
//   SPEC: {"url", "out", "timeout_s", "deadline_s", "dataset": id, "plan": id,
//          "click": {"lon", "lat", "h"}}
import { readFile } from "node:fs/promises";
import path from "node:path";
import { newSummary, openBrowser, watchedPage } from "./dashboard_page.mjs";

const spec = JSON.parse(await readFile(process.argv[2], "utf8"));
const timeoutMs = (spec.timeout_s || 60) * 1000;
const summary = { ...newSummary(), views: {} };
const t0 = Date.now();
const state = { closing: false, reloading: false };
const log = (msg) => process.stderr.write(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}\n`);

function finish() {
  summary.seconds = (Date.now() - t0) / 1000;
  console.log(JSON.stringify(summary));
}
const deadline = setTimeout(() => {
  summary.harnessError = `deadline of ${spec.deadline_s || 300} s passed; last views: ` +
    Object.keys(summary.views).join(", ");
  finish();
  process.exit(1);
}, (spec.deadline_s || 300) * 1000);

const NONE = { rivers: false, traffic: false, water: false, routes: false, network: false,
               flights: false, drones: false };

const browser = await openBrowser();
try {
  const page = await watchedPage(browser, summary, state);
  await page.goto(spec.url, { waitUntil: "load", timeout: timeoutMs });
  await page.evaluate(() => window.twinbase.ready);
  const idle = () => page.evaluate((ms) => window.twinbase.idle(ms), timeoutMs);
  await idle();
  log("ready");

  // one view: what the page shows, measured, with a screenshot
  async function measure(name, extra = {}) {
    await idle();
    const file = path.join(spec.out, `${name}.png`);
    await page.screenshot({ path: file });
    summary.views[name] = {
      screenshot: file, status: await page.evaluate(() => window.twinbase.status()),
      box: await page.evaluate(() => window.twinbase.contentBox()),
      centre: await page.evaluate(() => window.twinbase.centreFill()), ...extra };
    log(`${name}: ${JSON.stringify(summary.views[name].box)}`);
  }

  await measure("first-view", { target: await page.evaluate(() => window.twinbase.status().firstView) });
  await page.evaluate((id) => window.twinbase.flyToDataset(id), spec.dataset);
  await measure("dataset");

  // one layer at a time, the city hidden, the camera on the layer
  for (const [name, pitch] of [["network", -45], ["rivers", -70], ["flights", -35]]) {
    await page.evaluate(async ([n, p, none]) => {
      window.twinbase.setLayers({ ...none, [n]: true });
      await window.twinbase.setKinds([]);
      await window.twinbase.view(n, p);
    }, [name, pitch, NONE]);
    await measure(name, { drawn: await page.evaluate((n) => window.twinbase.drawn(n), name) });
  }

  if (spec.plan) summary.plan = await page.evaluate((id) => window.twinbase.showPlan(id), spec.plan);

  // a click on a flight's line, seen from above
  if (spec.click) {
    const c = spec.click;
    await page.evaluate((v) => window.twinbase.view(v), { ...c, range: 250, pitch: -90 });
    await idle();
    const xy = await page.evaluate(([lon, lat, h]) => window.twinbase.toWindow(lon, lat, h), [c.lon, c.lat, c.h]);
    await page.mouse.click(xy.x, xy.y);
    await page.waitForFunction(() => ["ready", "error"].includes(window.twinbase.panel.state), null, { timeout: timeoutMs });
    const file = path.join(spec.out, "click-flight.png");
    await page.screenshot({ path: file });
    summary.clicks.flight = { state: await page.evaluate(() => window.twinbase.panel.state),
      shown: await page.evaluate(() => window.twinbase.panel.shown),
      text: await page.evaluate(() => document.getElementById("panel").innerText), screenshot: file };
    await page.evaluate(() => window.twinbase.panel.close());
  }

  // every layer on, over the network, in English: the legend and labels switch too
  await page.evaluate(async () => {
    window.twinbase.setLayers({ rivers: true, traffic: true, water: true, routes: true, network: true, flights: true, drones: true });
    await window.twinbase.setLang("en");
    await window.twinbase.view("network", -40);
  });
  await idle();
  const en = path.join(spec.out, "all-layers-en.png");
  await page.screenshot({ path: en });
  summary.english = { screenshot: en, legend: await page.evaluate(() => document.getElementById("legend").innerText) };
  await page.evaluate(() => window.twinbase.setLang("zh-CN"));
  summary.final = await page.evaluate(() => window.twinbase.status());
} catch (e) {
  summary.harnessError = String(e.stack || e).slice(0, 3000);
} finally {
  state.closing = true;
  await browser.close();
  clearTimeout(deadline);
  finish();
}
