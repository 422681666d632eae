// The service's API, relative to the dashboard's own URL (/dashboard/ -> /), so the page
// works behind any path prefix. A viewer key can be given as #key=... (kept out of logs and
// Referer headers, since fragments are never sent).

const ROOT = new URL("../", document.baseURI);
const KEY = new URLSearchParams(location.hash.slice(1)).get("key");
export const headers = KEY ? { Authorization: `Bearer ${KEY}` } : {};

// requests in flight: the tests wait until the page is idle before a screenshot
export const activity = { pending: 0 };

export function apiUrl(path) {
  return new URL(path.replace(/^\//, ""), ROOT).href;
}

export async function getJSON(path) {
  activity.pending++;
  try {
    const r = await fetch(/^https?:/.test(path) ? path : apiUrl(path), { headers });
    if (!r.ok) {
      throw new Error(`${r.status} ${r.statusText} from ${path}`);
    }
    return await r.json();
  } finally {
    activity.pending--;
  }
}

// every feature of an OGC API - Features collection, following its next links
export async function allFeatures(collection, maxPages = 20) {
  let page = await getJSON(`/collections/${collection}/items?limit=1000`);
  const features = [...page.features];
  for (let i = 1; i < maxPages; i++) {
    const next = (page.links || []).find((l) => l.rel === "next");
    if (!next) break;
    page = await getJSON(new URL(next.href, apiUrl("/")).href);
    features.push(...page.features);
  }
  return features;
}

export function isoHoursBefore(t, hours) {
  return new Date(t.getTime() - hours * 3600 * 1000).toISOString();
}
