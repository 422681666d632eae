// The dashboard over a modelled survey in headless Debian Chromium: the terrain provider is
// the service's /terrain/ layer, its quantized-mesh tiles are requested and decode (CesiumJS
// samples its most detailed tiles at given points), and buildings stand on it. Prints one
// JSON summary on the last line; the pytest side (tests/dashboard/) asserts on it.
//
// usage: node tests/js/terrain_check.mjs SPEC.json
//   SPEC: {"url": ".../dashboard/", "out": "/tmp/terrain.png", "points": [[lon, lat], ...],
//          "view": {"lon", "lat", "h", "range", "pitch", "heading"}, "timeout_s": 60}
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { chromium } = require("playwright-core");

const FLAGS = ["--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--no-first-run"];
const LOOPBACK = /^https?:\/\/(127\.0\.0\.1|localhost|\[::1\])(:\d+)?\//;

const spec = JSON.parse(await readFile(process.argv[2], "utf8"));
const timeoutMs = (spec.timeout_s || 60) * 1000;
const summary = { terrainRequests: [], consoleErrors: [], pageErrors: [], httpErrors: [],
  blocked: [], harnessError: null };
const deadline = setTimeout(() => {
  summary.harnessError = "deadline passed";
  console.log(JSON.stringify(summary));
  process.exit(1);
}, (spec.deadline_s || 240) * 1000);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true, args: FLAGS,
});
try {
  const page = await browser.newPage({ viewport: { width: 1024, height: 640 } });
  await page.route("**/*", (route) => {
    const u = route.request().url();
    if (LOOPBACK.test(u) || u.startsWith("data:") || u.startsWith("blob:")) return route.continue();
    summary.blocked.push(u);
    return route.abort();
  });
  page.on("console", (m) => { if (m.type() === "error") summary.consoleErrors.push(m.text().slice(0, 500)); });
  page.on("pageerror", (e) => summary.pageErrors.push(String(e.message || e).slice(0, 500)));
  page.on("response", (r) => {
    if (r.status() >= 400) summary.httpErrors.push(`${r.status()} ${r.url()}`);
    if (r.url().includes("/terrain/")) {
      summary.terrainRequests.push({ url: r.url(), status: r.status(),
        type: r.headers()["content-type"] || null, accept: r.request().headers().accept || null });
    }
  });
  await page.goto(spec.url, { waitUntil: "load", timeout: timeoutMs });
  await page.evaluate(() => window.twinbase.ready);
  summary.provider = await page.evaluate(() => ({
    cesiumTerrain: window.twinbase.viewer.terrainProvider instanceof Cesium.CesiumTerrainProvider,
    normals: window.twinbase.viewer.terrainProvider.hasVertexNormals,
    terrain: window.twinbase.terrain,
  }));
  // only the city model: the survey's points would hide the ground
  await page.evaluate(async (v) => {
    await window.twinbase.setKinds(["mesh"]);
    await window.twinbase.view(v);
  }, spec.view);
  summary.status = await page.evaluate((ms) => window.twinbase.idle(ms), timeoutMs);
  // the globe's terrain tiles: loaded, or as far as software WebGL got in the time given
  summary.globe = await page.evaluate((ms) => new Promise((resolve) => {
    const viewer = window.twinbase.viewer;
    const t0 = performance.now();
    let frames = 0;
    const check = () => {
      frames++;
      const loaded = viewer.scene.globe.tilesLoaded;
      if (loaded || performance.now() - t0 > ms) {
        viewer.scene.postRender.removeEventListener(check);
        resolve({ loaded, frames, seconds: (performance.now() - t0) / 1000 });
      }
    };
    viewer.scene.postRender.addEventListener(check);
  }), timeoutMs);
  await page.screenshot({ path: spec.out });
  // heights from the most detailed terrain tiles, decoded by CesiumJS itself
  summary.sampled = await page.evaluate(async (points) => {
    const carto = points.map(([lon, lat]) => Cesium.Cartographic.fromDegrees(lon, lat));
    const got = await Cesium.sampleTerrainMostDetailed(window.twinbase.viewer.terrainProvider, carto);
    return got.map((c) => c.height);
  }, spec.points);
  // where the camera's view meets the ground (the globe's own picking of terrain)
  summary.globeHeight = await page.evaluate(([lon, lat]) => window.twinbase.viewer.scene.globe
    .getHeight(Cesium.Cartographic.fromDegrees(lon, lat)), spec.points[0]);
} catch (e) {
  summary.harnessError = String(e.stack || e).slice(0, 3000);
} finally {
  await browser.close();
  clearTimeout(deadline);
  console.log(JSON.stringify(summary));
}
