// Road segments (OGC API - Features) coloured by their GB/T 33171-2016 congestion level in
// the hour before the chosen time (/layers/traffic/congestion).
import { allFeatures, getJSON, isoHoursBefore } from "./api.js";
import { coordsOf, groundFor } from "./ground.js";
import { t } from "./i18n.js";

// colours of levels 0..4 (畅通 .. 严重拥堵); their names are in the catalogues (level.N)
export const LEVEL_COLOURS = ["#1a9641", "#a6d96a", "#ffd92f", "#f46d43", "#b2182b"];
const NO_DATA = "#9e9e9e";

export class TrafficLayer {
  constructor(viewer) {
    this.source = new Cesium.CustomDataSource("traffic");
    viewer.dataSources.add(this.source);
    this.entities = new Map(); // segment id -> entity
  }

  async load() {
    const features = await allFeatures("road_segments");
    const ground = await groundFor(coordsOf(features));
    for (const f of features) {
      const flat = f.geometry.coordinates.flatMap(([lon, lat]) => [lon, lat, ground + 1.5]);
      const entity = this.source.entities.add({
        id: `traffic-${f.id}`,
        name: f.properties.name || f.properties.code,
        polyline: {
          positions: Cesium.Cartesian3.fromDegreesArrayHeights(flat),
          width: 7,
          material: Cesium.Color.fromCssColorString(NO_DATA),
          // still seen (fainter) where a building stands in front
          depthFailMaterial: Cesium.Color.fromCssColorString(NO_DATA).withAlpha(0.35),
        },
        properties: { layer: "traffic", id: f.id },
      });
      this.entities.set(f.id, entity);
    }
    return features.length;
  }

  async colour(time) {
    const q = `start=${isoHoursBefore(time, 1)}&end=${time.toISOString()}&limit=10000`;
    const body = await getJSON(`/layers/traffic/congestion?${q}`);
    const level = new Map(body.segments.map((s) => [s.id, s]));
    for (const [id, entity] of this.entities) {
      const s = level.get(id);
      const css = s ? LEVEL_COLOURS[s.level] : NO_DATA;
      entity.polyline.material = Cesium.Color.fromCssColorString(css);
      entity.polyline.depthFailMaterial = Cesium.Color.fromCssColorString(css).withAlpha(0.35);
      entity.properties.level = s ? s.level : null;
    }
    return body.segments.length;
  }

  static levelName(level) { return level === null || level === undefined ? t("level.none") : t(`level.${level}`); }

  set visible(on) { this.source.show = on; }
}
