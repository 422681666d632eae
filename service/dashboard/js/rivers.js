// Rivers, streams and canals (the OGC API collection waterways) drawn on the ground: clamped
// to the terrain when the service has survey terrain, else to the globe's surface, so they
// lie under the buildings and the raised road and station layers, never float over them.
import { allFeatures } from "./api.js";
import { LABEL_FONT } from "./fonts.js";
import { t } from "./i18n.js";

// waterway kinds (waterway.kind.<kind> in the catalogues): line colour and width in pixels
export const WATERWAY_STYLE = {
  river: ["#2e9cff", 7], stream: ["#6ec6ff", 4], canal: ["#4dd0e1", 4],
};

export class RiversLayer {
  constructor(viewer) {
    this.viewer = viewer;
    this.source = new Cesium.CustomDataSource("rivers");
    viewer.dataSources.add(this.source);
    this.rows = [];
  }

  async load() {
    const features = await allFeatures("waterways");
    for (const f of features) {
      const [css, width] = WATERWAY_STYLE[f.properties.kind] || WATERWAY_STYLE.river;
      const line = f.geometry.coordinates;
      const colour = Cesium.Color.fromCssColorString(css);
      this.source.entities.add({
        id: `waterway-${f.id}`,
        name: f.properties.name,
        polyline: {
          positions: Cesium.Cartesian3.fromDegreesArray(line.flatMap(([lon, lat]) => [lon, lat])),
          width, material: colour.withAlpha(0.9), clampToGround: true,
          classificationType: Cesium.ClassificationType.TERRAIN,
        },
        properties: { layer: "rivers", id: f.id },
      });
      const mid = line[Math.floor(line.length / 2)];
      this.source.entities.add({
        id: `waterway-label-${f.id}`,
        position: Cesium.Cartesian3.fromDegrees(mid[0], mid[1]),
        label: { text: "", font: LABEL_FONT, fillColor: colour.brighten(0.4, new Cesium.Color()),
                 outlineColor: Cesium.Color.BLACK, outlineWidth: 3,
                 style: Cesium.LabelStyle.FILL_AND_OUTLINE,
                 heightReference: Cesium.HeightReference.CLAMP_TO_GROUND,
                 disableDepthTestDistance: Number.POSITIVE_INFINITY },
        properties: { layer: "rivers", id: f.id },
      });
    }
    this.rows = features;
    this.relabel();
    return features.length;
  }

  points() {
    return this.rows.flatMap((f) => f.geometry.coordinates.map(([lon, lat]) => Cesium.Cartesian3.fromDegrees(lon, lat)));
  }

  relabel() {
    for (const f of this.rows) {
      const e = this.source.entities.getById(`waterway-label-${f.id}`);
      if (e) e.label.text = t("waterway.label", { name: f.properties.name,
                                                  kind: t(`waterway.kind.${f.properties.kind}`) });
    }
  }

  set visible(on) { this.source.show = on; }
}
