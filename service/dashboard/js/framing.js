// Where a dataset's content is, for framing it. Its 3D bounds hold every object, so one
// building far from the rest (the Rotterdam sample has one 500 m north-west of the other 15)
// makes a box mostly empty, and the view framed on it shows the city small in a corner. The
// bulk of a footprint is what the view is framed on instead: the parts (polygons) holding the
// middle of its area along x and along y, the outliers' few per cent left out.
import { bboxOf } from "./work.js";

function ringArea(ring) {
  let a = 0;
  for (let i = 0; i < ring.length - 1; i++) a += ring[i][0] * ring[i + 1][1] - ring[i + 1][0] * ring[i][1];
  return Math.abs(a) / 2;
}

// the parts whose share of the area, in order along one axis, has its middle inside
// [tail, 1 - tail]: one large part always stays, a small far one goes
function middle(parts, key, tail) {
  const total = parts.reduce((s, p) => s + p.area, 0);
  const sorted = [...parts].sort((a, b) => a[key] - b[key]);
  const kept = new Set();
  let before = 0;
  for (const p of sorted) {
    const mid = (before + p.area / 2) / total;
    before += p.area;
    if (mid >= tail && mid <= 1 - tail) kept.add(p);
  }
  return kept;
}

// [west, south, east, north] of the bulk of a Polygon or MultiPolygon (lon/lat degrees)
export function bulkBox(geometry, tail = 0.05) {
  const polygons = geometry.type === "MultiPolygon" ? geometry.coordinates
    : geometry.type === "Polygon" ? [geometry.coordinates] : null;
  if (!polygons || polygons.length < 2) return bboxOf(geometry);
  const parts = polygons.map((rings) => {
    const [w, s, e, n] = bboxOf({ coordinates: rings });
    return { area: Math.max(ringArea(rings[0]), 1e-12), x: (w + e) / 2, y: (s + n) / 2,
             box: [w, s, e, n] };
  });
  const alongX = middle(parts, "x", tail);
  const kept = [...middle(parts, "y", tail)].filter((p) => alongX.has(p));
  if (!kept.length) return bboxOf(geometry);
  return [Math.min(...kept.map((p) => p.box[0])), Math.min(...kept.map((p) => p.box[1])),
          Math.max(...kept.map((p) => p.box[2])), Math.max(...kept.map((p) => p.box[3]))];
}
