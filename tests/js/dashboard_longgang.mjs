// The dashboard on a Longgang district, in headless Chromium, as its staff would use it: the
// first view (the home area), Chinese by default and its font, a survey uploaded while the
// page is open (its jobs' progress arriving over SSE, its point cloud appearing before its
// buildings are modelled), its change report, the living map at the first survey's date, and
// the switch to English, remembered across a reload. One JSON summary on the last line.
//
// usage: node tests/js/dashboard_longgang.mjs SPEC.json
//   SPEC: {"url", "out", "timeout_s", "deadline_s", and three files the caller and this
//          script hand each other: "waiting_file" (written here: the page is ready for the
//          upload), "ingested_file" (the caller: the survey is ingested, not yet modelled,
//          {"dataset", "tileset"}), "seen_file" (here: the page shows that tileset), and
//          "done_file" (the caller: modelled, {"dataset", "jobs": [ids]})}
import { access, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { newSummary, openBrowser, watchedPage } from "./dashboard_page.mjs";

const spec = JSON.parse(await readFile(process.argv[2], "utf8"));
const timeoutMs = (spec.timeout_s || 60) * 1000;
const summary = { ...newSummary(), jobs: { seen: [], surveyShown: null } };
const state = { closing: false, reloading: false };
const t0 = Date.now();
const log = (msg) => process.stderr.write(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function finish() {
  summary.seconds = (Date.now() - t0) / 1000;
  console.log(JSON.stringify(summary));
}
const deadline = setTimeout(() => {
  summary.harnessError = `deadline of ${spec.deadline_s || 300} s passed; last steps: ` +
    summary.steps.map((s) => s.name).join(", ");
  finish();
  process.exit(1);
}, (spec.deadline_s || 300) * 1000);

// the words on the page, where a user reads them
const texts = () => ({
  lang: document.documentElement.lang,
  title: document.title,
  heading: document.querySelector("h1").textContent,
  switch: document.getElementById("lang").textContent,
  controls: document.getElementById("controls").innerText,
  work: document.getElementById("work").innerText,
  legend: document.getElementById("legend").innerText,
});

const browser = await openBrowser();
try {
  const page = await watchedPage(browser, summary, state);
  const idle = () => page.evaluate((ms) => window.twinbase.idle(ms), timeoutMs);
  async function shot(name, extra = {}) {
    const file = path.join(spec.out, `${name}.png`);
    await page.screenshot({ path: file });
    const status = await page.evaluate(() => window.twinbase.status());
    summary.steps.push({ name, screenshot: file, status, ...extra });
    log(`shot ${name}`);
    return file;
  }

  await page.goto(spec.url, { waitUntil: "load", timeout: timeoutMs });
  summary.webgl = await page.evaluate(() => {
    const gl = document.createElement("canvas").getContext("webgl2");
    return gl ? gl.getParameter(gl.RENDERER) : null;
  });
  await page.evaluate(() => window.twinbase.ready);
  await idle();
  summary.firstView = { ...(await page.evaluate(() => window.twinbase.status().firstView)),
    centre: await page.evaluate(() => window.twinbase.centreFill()) };
  summary.chinese = await page.evaluate(texts);
  summary.glyphs = await page.evaluate(() => window.twinbase.glyphs());
  await shot("first-view");

  // ---- a survey uploaded while the page is open
  await writeFile(spec.waiting_file, "ready");
  log("waiting for the caller's upload");
  let done = null;
  let ingested = null;
  let runningShot = false;
  for (;;) {
    const seen = await page.evaluate(() => ({
      jobs: window.twinbase.jobs.jobs.map((j) => ({ id: j.id, kind: j.kind, status: j.status,
        stage: j.stage, fraction: j.progress.fraction, dataset: j.dataset_id })),
      tilesets: [...window.twinbase.city.children.keys()],
      datasets: window.twinbase.datasets.shown().map((d) => d.id),
      rendered: document.getElementById("jobs").innerText,
    }));
    const last = summary.jobs.seen[summary.jobs.seen.length - 1];
    if (!last || JSON.stringify(last.jobs) !== JSON.stringify(seen.jobs)
        || last.tilesets.length !== seen.tilesets.length) {
      summary.jobs.seen.push({ at: (Date.now() - t0) / 1000, ...seen });
    }
    if (!ingested) {
      try { await access(spec.ingested_file); ingested = JSON.parse(await readFile(spec.ingested_file, "utf8")); } catch { /* not yet */ }
    }
    // the point cloud is on the map and the panel lists the modelling still to come (the
    // tileset list and the jobs stream arrive apart: the one may come a poll before the other)
    if (ingested && !summary.jobs.surveyShown && seen.tilesets.includes(ingested.tileset)
        && seen.jobs.some((j) => j.id === ingested.model_job)) {
      // the survey's point cloud is on the map while its buildings are still to be modelled
      summary.jobs.surveyShown = { at: (Date.now() - t0) / 1000, jobs: seen.jobs };
      await page.evaluate((id) => window.twinbase.flyToDataset(id), ingested.dataset);
      await idle();
      await shot("survey-first-view");
      await writeFile(spec.seen_file, "seen");
    }
    if (!runningShot && seen.jobs.some((j) => ["queued", "running"].includes(j.status))) {
      runningShot = true;
      await shot("jobs-running");
    }
    if (!done) {
      try { await access(spec.done_file); done = JSON.parse(await readFile(spec.done_file, "utf8")); } catch { /* not yet */ }
    }
    if (done && done.jobs.every((id) => seen.jobs.some((j) => j.id === id && j.status === "succeeded"))
        && seen.datasets.includes(done.dataset)) break;
    if (Date.now() - t0 > (spec.deadline_s || 300) * 1000 - 30000) throw new Error("the survey's jobs never showed as done");
    await sleep(250);
  }
  await sleep(1500); // the reload of the city the last job event started
  await idle();
  await shot("jobs-done");

  // ---- the survey's change report, over the city model alone (the points would hide it)
  await page.evaluate(() => window.twinbase.setKinds(["mesh"]));
  await page.click(`#datasets li[data-dataset="${done.dataset}"] button.changes`);
  log("changes");
  await page.waitForFunction(() => window.twinbase.changes.counts !== null, null, { timeout: timeoutMs });
  await sleep(300);
  await idle();
  summary.changes = await page.evaluate(() => ({ counts: window.twinbase.changes.counts,
    text: document.getElementById("changes").innerText,
    entities: window.twinbase.changes.source.entities.values.length }));
  summary.changes.centre = await page.evaluate(() => window.twinbase.centreFill());
  await shot("changes");
  await page.click("#changes-clear");

  // ---- the living map at the first survey's date, by the slider
  log("living map");
  await page.evaluate(() => {
    const s = document.getElementById("city-date");
    s.value = "0";
    s.dispatchEvent(new Event("input"));
  });
  await page.waitForFunction(() => window.twinbase.living.at !== null, null, { timeout: timeoutMs });
  await idle();
  summary.living = await page.evaluate(() => ({ at: window.twinbase.living.at.toISOString(),
    hidden: window.twinbase.living.hidden, ghosts: window.twinbase.living.ghosts,
    hiddenIds: [...(window.twinbase.city.hidden || [])],
    label: document.getElementById("city-date-box").innerText,
    moments: document.getElementById("city-date").max }));
  await shot("city-then");
  await page.evaluate(() => {
    const s = document.getElementById("city-date");
    s.value = s.max;
    s.dispatchEvent(new Event("input"));
  });
  await page.waitForFunction(() => window.twinbase.living.at === null, null, { timeout: timeoutMs });

  // ---- English, by the visible switch, and remembered
  await page.evaluate(() => window.twinbase.setKinds(null));
  await page.click("#lang");
  await page.waitForFunction(() => document.documentElement.lang === "en", null, { timeout: timeoutMs });
  await idle();
  summary.english = await page.evaluate(texts);
  await shot("english");
  state.reloading = true;
  log("reload");
  await page.reload({ waitUntil: "load", timeout: timeoutMs });
  await page.evaluate(() => window.twinbase.ready);
  state.reloading = false;
  summary.afterReload = await page.evaluate(texts);
  summary.final = await page.evaluate(() => window.twinbase.status());
} catch (e) {
  summary.harnessError = String(e.stack || e).slice(0, 3000);
} finally {
  state.closing = true;
  await browser.close();
  clearTimeout(deadline);
  finish();
}
