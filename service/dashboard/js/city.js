// The city tileset: one Cesium3DTileset for /tiles/city/tileset.json, whose children are the
// current version of every published tileset. Kind toggles reload it with ?kinds=..., which
// the service answers with only those children; the children themselves stay in the
// browser's cache (their versioned URLs are immutable).
import { apiUrl, getJSON, headers } from "./api.js";
import { tOr } from "./i18n.js";

export const kindLabel = (kind) => tOr(`kind.${kind}`, kind);

export class CityLayer {
  constructor(viewer) {
    this.viewer = viewer;
    this.tileset = null;
    this.doc = null; // the city tileset document with every kind
    this.children = new Map(); // tileset name -> extras (kind, version, status)
    this.kinds = null; // null: every kind
    this.hidden = null; // Set of city object ids not drawn
    this.tints = null; // Map of city object id -> Cesium.Color
    this.stats = { tileLoads: 0, tileFailures: 0, visibleTiles: 0, errors: [] };
    this._visible = 0;
    viewer.scene.preRender.addEventListener(() => { this._visible = 0; });
    viewer.scene.postRender.addEventListener(() => { this.stats.visibleTiles = this._visible; });
  }

  async load() {
    this.doc = await getJSON("/tiles/city/tileset.json");
    this.children.clear();
    for (const child of this.doc.root.children) {
      this.children.set(child.extras.tileset, { ...child.extras, region: child.boundingVolume.region });
    }
    await this.show(this.kinds);
  }

  allKinds() {
    return [...new Set([...this.children.values()].map((c) => c.kind))].sort();
  }

  async show(kinds) {
    this.kinds = kinds;
    if (this.tileset) {
      this.viewer.scene.primitives.remove(this.tileset); // destroys it
      this.tileset = null;
    }
    if (kinds && kinds.length === 0) return;
    const query = kinds ? `?kinds=${kinds.join(",")}` : "";
    const resource = new Cesium.Resource({ url: apiUrl(`/tiles/city/tileset.json${query}`), headers });
    const tileset = await Cesium.Cesium3DTileset.fromUrl(resource, {
      maximumScreenSpaceError: 8,
    });
    this.applyStyle(tileset);
    // a picked feature is tinted by mixing, so the highlight shows on any roof colour
    tileset.colorBlendMode = Cesium.Cesium3DTileColorBlendMode.MIX;
    tileset.colorBlendAmount = 0.7;
    tileset.tileLoad.addEventListener(() => { this.stats.tileLoads++; });
    tileset.tileFailed.addEventListener((e) => {
      this.stats.tileFailures++;
      this.stats.errors.push(`tile failed: ${e.url} ${e.message}`);
      console.error("tile failed", e.url, e.message);
    });
    tileset.tileVisible.addEventListener(() => { this._visible++; });
    this.viewer.scene.primitives.add(tileset);
    this.tileset = tileset;
  }

  // points of a few pixels read as a surface (meshes ignore the point size); objects in
  // this.hidden (city objects that did not exist yet at the living map's date) are not drawn
  applyStyle(tileset = this.tileset) {
    if (!tileset) return;
    const style = new Cesium.Cesium3DTileStyle({ pointSize: 3 });
    const hidden = this.hidden;
    if (hidden && hidden.size) {
      style.show = { evaluate: (feature) => !hidden.has(String(feature.getProperty("id"))) };
    }
    const tints = this.tints;
    if (tints && tints.size) {
      // a custom style expression: Cesium asks colours of it by evaluateColor
      const colourOf = (feature, result) => Cesium.Color.clone(
        tints.get(String(feature.getProperty("id"))) || Cesium.Color.WHITE, result);
      style.color = { evaluate: colourOf, evaluateColor: colourOf };
    }
    tileset.style = style;
  }

  // city objects drawn in a colour of their own (a change report's new and changed buildings)
  tint(colours) {
    this.tints = colours && colours.size ? colours : null;
    this.applyStyle();
  }

  hide(ids) {
    this.hidden = ids && ids.size ? ids : null;
    this.applyStyle();
  }

  // which tileset (and so which API) a picked tile feature belongs to
  sourceOf(feature) {
    const url = feature.content && feature.content.url ? feature.content.url : "";
    const m = /\/tiles\/([^/]+)\/v(\d+)\//.exec(url);
    if (!m) return null;
    const child = this.children.get(decodeURIComponent(m[1]));
    return child ? { name: m[1], version: Number(m[2]), kind: child.kind } : null;
  }

  regionOf(filter) {
    const regions = [...this.children.values()].filter(filter).map((c) => c.region);
    if (!regions.length) return null;
    return [Math.min(...regions.map((r) => r[0])), Math.min(...regions.map((r) => r[1])),
            Math.max(...regions.map((r) => r[2])), Math.max(...regions.map((r) => r[3])),
            Math.min(...regions.map((r) => r[4])), Math.max(...regions.map((r) => r[5]))];
  }
}
