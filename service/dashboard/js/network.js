// The low-altitude route network: corridor edges coloured by their heading layer, drawn at
// their flight heights, and the vertiports, from the OGC API collections route_network and
// vertiports (the current version).
import { getJSON } from "./api.js";
import { LABEL_FONT } from "./fonts.js";
import { t } from "./i18n.js";

// heading layers (network.layer.<n> in the catalogues): north, east, south, west
export const LAYER_COLOURS = ["#26c6da", "#ab47bc", "#ffca28", "#ef5350"];

export class NetworkLayer {
  constructor(viewer) {
    this.source = new Cesium.CustomDataSource("network");
    viewer.dataSources.add(this.source);
  }

  async load() {
    let edges, ports;
    try {
      [edges, ports] = await Promise.all([
        getJSON("/collections/route_network/items?limit=5000"),
        getJSON("/collections/vertiports/items?limit=1000")]);
    } catch (e) { // the network is optional: the rest of the dashboard starts without it
      this.error = String(e?.message || e);
      return 0;
    }
    this.coords = [];
    for (const f of edges.features) {
      const p = f.properties;
      this.coords.push(...f.geometry.coordinates);
      const colour = Cesium.Color.fromCssColorString(LAYER_COLOURS[p.layer] || "#ffffff");
      this.source.entities.add({
        id: `edge-${f.id}`,
        polyline: { positions: Cesium.Cartesian3.fromDegreesArrayHeights(
          f.geometry.coordinates.flat()), width: 2, material: colour.withAlpha(0.85) },
        properties: { layer: "network", id: f.id },
      });
    }
    this.ports = ports.features;
    for (const f of this.ports) {
      const [lon, lat] = f.geometry.coordinates;
      this.source.entities.add({
        id: `vertiport-${f.id}`,
        position: Cesium.Cartesian3.fromDegrees(lon, lat),
        point: { pixelSize: 12, color: Cesium.Color.WHITE, outlineColor: Cesium.Color.BLACK,
                 outlineWidth: 2, heightReference: Cesium.HeightReference.CLAMP_TO_GROUND,
                 disableDepthTestDistance: Number.POSITIVE_INFINITY },
        label: { text: this.labelOf(f), font: LABEL_FONT, pixelOffset: new Cesium.Cartesian2(0, -18),
                 outlineColor: Cesium.Color.BLACK, outlineWidth: 3,
                 style: Cesium.LabelStyle.FILL_AND_OUTLINE,
                 heightReference: Cesium.HeightReference.CLAMP_TO_GROUND,
                 disableDepthTestDistance: Number.POSITIVE_INFINITY },
        properties: { layer: "vertiports", id: f.id },
      });
    }
    return edges.features.length;
  }

  points() {
    return (this.coords || []).map(([lon, lat, h]) => Cesium.Cartesian3.fromDegrees(lon, lat, h || 0));
  }

  labelOf(f) {
    return t("network.vertiport", { name: f.properties.name || f.id });
  }

  relabel() {
    for (const f of this.ports || []) {
      const e = this.source.entities.getById(`vertiport-${f.id}`);
      if (e) e.label.text = this.labelOf(f);
    }
  }

  set visible(on) { this.source.show = on; }
}
