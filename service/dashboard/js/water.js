// Water-quality stations coloured by their GB 3838-2002 class: the latest sample at or
// before the chosen time, classed by the service (single-factor rule).
import { allFeatures, getJSON } from "./api.js";
import { coordsOf, groundFor } from "./ground.js";

// grade 1..6 = I, II, III, IV, V, worse than V (劣V)
export const CLASSES = [
  ["I", "#00c5ff"], ["II", "#1f6bff"], ["III", "#00b050"],
  ["IV", "#ffd700"], ["V", "#ff8c00"], ["worse than V", "#e00000"],
];
const NO_DATA = "#9e9e9e";

export class WaterLayer {
  constructor(viewer) {
    this.source = new Cesium.CustomDataSource("water");
    viewer.dataSources.add(this.source);
    this.entities = new Map(); // station id -> entity
  }

  async load() {
    const features = await allFeatures("water_stations");
    const ground = await groundFor(coordsOf(features));
    for (const f of features) {
      const [lon, lat] = f.geometry.coordinates;
      const entity = this.source.entities.add({
        id: `water-${f.id}`,
        name: f.properties.name || f.properties.code,
        position: Cesium.Cartesian3.fromDegrees(lon, lat, ground + 4),
        point: { pixelSize: 16, color: Cesium.Color.fromCssColorString(NO_DATA),
                 outlineColor: Cesium.Color.WHITE, outlineWidth: 2,
                 disableDepthTestDistance: Number.POSITIVE_INFINITY },
        label: { text: "", font: "13px Liberation Sans, sans-serif", fillColor: Cesium.Color.WHITE,
                 outlineColor: Cesium.Color.BLACK, outlineWidth: 3,
                 style: Cesium.LabelStyle.FILL_AND_OUTLINE,
                 pixelOffset: new Cesium.Cartesian2(0, -20),
                 disableDepthTestDistance: Number.POSITIVE_INFINITY },
        properties: { layer: "water", id: f.id },
      });
      this.entities.set(String(f.id), entity);
    }
    return features.length;
  }

  // one request for all stations, however many there are; returns how many have a sample
  async colour(time) {
    const body = await getJSON(`/layers/water/stations/latest?end=${time.toISOString()}`);
    let sampled = 0;
    for (const { station_id: id, latest } of body.stations) {
      const entity = this.entities.get(String(id));
      if (!entity) continue;
      const cls = latest ? CLASSES[latest.grade - 1] : null;
      sampled += cls ? 1 : 0;
      entity.point.color = Cesium.Color.fromCssColorString(cls ? cls[1] : NO_DATA);
      entity.label.text = cls ? `${entity.name}: ${cls[0]}` : `${entity.name}: no sample`;
    }
    return sampled;
  }

  set visible(on) { this.source.show = on; }
}
