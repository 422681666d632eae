// Ground height (WGS 84 ellipsoidal metres) for 2D layers. The dashboard has no terrain (it
// must work offline), and city models sit at their real ellipsoidal heights (tens of metres
// above the bare ellipsoid in most places), so roads and stations drawn at height 0 would
// hide under the buildings. The lowest points of the city objects around a layer are its
// ground; with no city objects there, the ellipsoid is.
import { getJSON } from "./api.js";

export async function groundFor(lonLats) {
  if (!lonLats.length) return 0;
  const lons = lonLats.map((p) => p[0]);
  const lats = lonLats.map((p) => p[1]);
  const pad = 0.002;
  const bbox = [Math.min(...lons) - pad, Math.min(...lats) - pad,
                Math.max(...lons) + pad, Math.max(...lats) + pad].join(",");
  const page = await getJSON(`/city/objects?bbox=${bbox}&geometry=none&limit=1000`);
  const lows = page.features.map((f) => f.properties.min_z)
    .filter((z) => typeof z === "number").sort((a, b) => a - b);
  // median: one odd object (a tunnel, a bridge) does not move the ground
  return lows.length ? lows[Math.floor(lows.length / 2)] : 0;
}

export function coordsOf(features) {
  const out = [];
  for (const f of features) {
    const g = f.geometry;
    if (!g) continue;
    if (g.type === "Point") out.push(g.coordinates);
    else if (g.type === "LineString") out.push(...g.coordinates);
  }
  return out;
}
