// Opens the dashboard in headless Debian Chromium (SwiftShader WebGL) with every request
// off the machine blocked and recorded, and every console error, page error, failed request
// and HTTP error collected into the summary. Shared by the dashboard scenarios.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { chromium } = require("playwright-core");

// the flags that give WebGL in a headless, offline Chromium (software rendering)
export const FLAGS = ["--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--no-first-run"];
export const LOOPBACK = /^https?:\/\/(127\.0\.0\.1|localhost|\[::1\])(:\d+)?\//;

export function newSummary() {
  return { steps: [], clicks: {}, consoleErrors: [], pageErrors: [], failedRequests: [],
    httpErrors: [], blocked: [], webgl: null, harnessError: null };
}

export async function openBrowser() {
  return chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
                           headless: true, args: FLAGS });
}

// a page whose every request off the loopback interface is refused and recorded
export async function watchedPage(browser, summary, state, viewport = { width: 1024, height: 640 }) {
  const page = await browser.newPage({ viewport });
  await page.route("**/*", (route) => {
    const u = route.request().url();
    if (LOOPBACK.test(u) || u.startsWith("data:") || u.startsWith("blob:")) return route.continue();
    summary.blocked.push(u);
    return route.abort();
  });
  page.on("console", (m) => { if (m.type() === "error") summary.consoleErrors.push(m.text().slice(0, 500)); });
  page.on("pageerror", (e) => summary.pageErrors.push(String(e.message || e).slice(0, 500)));
  page.on("requestfailed", (r) => {
    // streams cut by a reload or the end of the run are not failures of the page
    if (!state.closing && !state.reloading) summary.failedRequests.push(`${r.failure()?.errorText} ${r.url()}`);
  });
  page.on("response", (r) => { if (r.status() >= 400) summary.httpErrors.push(`${r.status()} ${r.url()}`); });
  return page;
}
