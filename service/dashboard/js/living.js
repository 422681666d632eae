// The living map at a date: city objects carry valid_from / valid_to, and /city/objects?at=
// answers with the objects valid then. The city tileset holds only the current model, so
// the past is shown by difference: current objects that did not exist yet are hidden in the
// tileset, and objects that existed then but no longer do (demolished, or replaced by a
// changed version) are drawn as red footprints extruded to their old heights.
import { apiUrl, getJSON } from "./api.js";

const PAGES = 10; // at most 10,000 objects compared per date: enough for a district

async function objects(query) {
  let page = await getJSON(`/city/objects?${query}&limit=1000`);
  const out = [...page.features];
  for (let i = 1; i < PAGES; i++) {
    const next = (page.links || []).find((l) => l.rel === "next");
    if (!next) break;
    page = await getJSON(new URL(next.href, apiUrl("/")).href);
    out.push(...page.features);
  }
  return out;
}

export class LivingMap {
  constructor(viewer, city) {
    this.city = city;
    this.source = new Cesium.CustomDataSource("living-map");
    viewer.dataSources.add(this.source);
    this.at = null; // null: now
    this.hidden = 0;
    this.ghosts = 0;
  }

  // the moments the model changed, oldest first: the slider's stops
  async moments() {
    const rows = await getJSON("/datasets?limit=1000");
    const days = new Set(rows.filter((d) => d.status === "ready" && ["lidar", "cim", "cityjson", "citygml"].includes(d.kind))
      .map((d) => (d.acquired_at || d.created_at).slice(0, 10)));
    return [...days].sort();
  }

  async show(at) {
    this.source.entities.removeAll();
    if (!at) {
      this.at = null;
      this.city.hide(null);
      this.hidden = this.ghosts = 0;
      return { hidden: 0, ghosts: 0 };
    }
    const iso = at.toISOString();
    const [then, now] = await Promise.all([
      objects(`at=${encodeURIComponent(iso)}&geometry=footprint`),
      objects("geometry=none"),
    ]);
    // an object's version at `at` is still current when its valid_from is the same
    const current = new Map(now.map((f) => [String(f.id), f.properties.valid_from]));
    const thenIds = new Set(then.map((f) => String(f.id)));
    const hidden = new Set();
    for (const [id, from] of current) {
      if (!thenIds.has(id) || new Date(from) > at) hidden.add(id);
    }
    let ghosts = 0;
    for (const f of then) {
      const id = String(f.id);
      if (current.get(id) === f.properties.valid_from || !f.geometry) continue;
      ghosts++;
      const p = f.properties;
      const polys = f.geometry.type === "MultiPolygon" ? f.geometry.coordinates : [f.geometry.coordinates];
      polys.forEach((poly, i) => this.source.entities.add({
        id: `then-${id}-${i}`,
        polygon: {
          hierarchy: new Cesium.PolygonHierarchy(Cesium.Cartesian3.fromDegreesArray(
            poly[0].flatMap(([lon, lat]) => [lon, lat]))),
          height: p.min_z ?? 0, extrudedHeight: p.max_z ?? (p.min_z ?? 0) + 10,
          material: Cesium.Color.RED.withAlpha(0.35), outline: true, outlineColor: Cesium.Color.RED,
        },
        properties: { layer: "mesh-then", id },
      }));
    }
    this.city.hide(hidden);
    this.at = at;
    this.hidden = hidden.size;
    this.ghosts = ghosts;
    return { hidden: hidden.size, ghosts };
  }
}
