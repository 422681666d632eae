// Water-quality stations coloured by their GB 3838-2002 class: the latest sample at or
// before the chosen time, classed by the service (single-factor rule).
import { allFeatures, getJSON } from "./api.js";
import { coordsOf, groundFor } from "./ground.js";
import { LABEL_FONT } from "./fonts.js";
import { t } from "./i18n.js";

// colours of grades 1..6 = Ⅰ .. Ⅴ, 劣Ⅴ; their names are in the catalogues (water.class.N)
export const CLASS_COLOURS = ["#00c5ff", "#1f6bff", "#00b050", "#ffd700", "#ff8c00", "#e00000"];
const NO_DATA = "#9e9e9e";

export class WaterLayer {
  constructor(viewer) {
    this.source = new Cesium.CustomDataSource("water");
    viewer.dataSources.add(this.source);
    this.entities = new Map(); // station id -> entity
    this.grades = new Map(); // station id -> grade at the chosen time (null: no sample)
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
        label: { text: "", font: LABEL_FONT, fillColor: Cesium.Color.WHITE,
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
      const grade = latest ? latest.grade : null;
      sampled += grade ? 1 : 0;
      this.grades.set(String(id), grade);
      entity.point.color = Cesium.Color.fromCssColorString(grade ? CLASS_COLOURS[grade - 1] : NO_DATA);
    }
    this.relabel();
    return sampled;
  }

  relabel() {
    for (const [id, entity] of this.entities) {
      const grade = this.grades.get(id);
      entity.label.text = grade ? t("water.label", { name: entity.name, cls: t(`water.class.${grade}`) })
        : t("water.noSample", { name: entity.name });
    }
  }

  set visible(on) { this.source.show = on; }
}
