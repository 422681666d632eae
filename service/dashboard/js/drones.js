// Drone routes as 3D corridors (the stored horizontal corridor extruded over the route's
// altitude band) coloured by status, and live drones from the telemetry stream (SSE).
import { apiUrl, getJSON, headers } from "./api.js";
import { LABEL_FONT } from "./fonts.js";
import { t } from "./i18n.js";
import { openEventStream } from "./sse.js";

// route status colours; their names are in the catalogues (route.status.<status>)
export const STATUS = {
  planned: "#42a5f5", approved: "#66bb6a", active: "#00e5ff",
  suspended: "#ffa726", retired: "#9e9e9e",
};
const TRAIL = 40; // positions kept per drone

function ring(coords) {
  return Cesium.Cartesian3.fromDegreesArray(coords.flatMap(([lon, lat]) => [lon, lat]));
}

function hierarchy(geometry) {
  const polygon = geometry.type === "MultiPolygon" ? geometry.coordinates[0] : geometry.coordinates;
  const [outer, ...holes] = polygon;
  return new Cesium.PolygonHierarchy(ring(outer), holes.map((h) => new Cesium.PolygonHierarchy(ring(h))));
}

export class RoutesLayer {
  constructor(viewer) {
    this.source = new Cesium.CustomDataSource("routes");
    viewer.dataSources.add(this.source);
  }

  async load() {
    const body = await getJSON("/drone-routes?limit=1000");
    for (const f of body.features) {
      const p = f.properties;
      const colour = Cesium.Color.fromCssColorString(STATUS[p.status] || "#ffffff");
      const line = f.geometry.coordinates;
      const mid = line[Math.floor(line.length / 2)];
      this.source.entities.add({
        id: `route-${f.id}`,
        name: p.name || t("route.unnamed", { id: f.id }),
        polygon: {
          hierarchy: hierarchy(p.corridor),
          height: p.alt_lower_m, extrudedHeight: p.alt_upper_m,
          perPositionHeight: false,
          material: colour.withAlpha(0.3),
          outline: true, outlineColor: colour,
        },
        properties: { layer: "routes", id: f.id },
      });
      this.source.entities.add({
        id: `route-line-${f.id}`,
        polyline: {
          positions: Cesium.Cartesian3.fromDegreesArrayHeights(line.flat()),
          width: 3, material: colour,
        },
        properties: { layer: "routes", id: f.id },
      });
      this.source.entities.add({
        id: `route-label-${f.id}`,
        position: Cesium.Cartesian3.fromDegrees(mid[0], mid[1], p.alt_upper_m + 5),
        label: { text: this.labelOf(p, f.id),
                 font: LABEL_FONT, fillColor: colour,
                 outlineColor: Cesium.Color.BLACK, outlineWidth: 3,
                 style: Cesium.LabelStyle.FILL_AND_OUTLINE,
                 disableDepthTestDistance: Number.POSITIVE_INFINITY },
        properties: { layer: "routes", id: f.id },
      });
    }
    this.rows = body.features;
    return body.features.length;
  }

  labelOf(p, id) {
    return t("route.label", { name: p.name || t("route.unnamed", { id }),
                              status: t(`route.status.${p.status}`) });
  }

  relabel() {
    for (const f of this.rows || []) {
      const e = this.source.entities.getById(`route-label-${f.id}`);
      if (e) e.label.text = this.labelOf(f.properties, f.id);
    }
  }

  set visible(on) { this.source.show = on; }
}

export class DronesLayer {
  constructor(viewer) {
    this.source = new Cesium.CustomDataSource("drones");
    viewer.dataSources.add(this.source);
    this.trails = new Map(); // drone id -> [Cartesian3]
    this.events = 0; // state events received from the stream
    this.last = new Map(); // drone id -> what its label says
    this.stream = null;
  }

  async load() {
    const body = await getJSON("/drones-live");
    body.features.forEach((f) => this.update(f));
    // the stream sends a snapshot, then every change; it reconnects by itself with
    // Last-Event-ID, so nothing is missed after a dropped connection (sse.js: a fetch-based
    // reader, so a viewer key travels as a header, which EventSource cannot send)
    const onState = (e) => { this.events++; this.update(JSON.parse(e.data)); };
    this.stream = openEventStream(apiUrl("/drones-live/stream"), {
      headers, on: { state: onState, silent: onState } });
    return body.features.length;
  }

  update(f) {
    const [lon, lat, h] = f.geometry.coordinates;
    const p = f.properties;
    const position = Cesium.Cartesian3.fromDegrees(lon, lat, h);
    const trail = this.trails.get(f.id) || [];
    trail.push(position);
    if (trail.length > TRAIL) trail.shift();
    this.trails.set(f.id, trail);
    const silent = p.flags.includes("silent");
    const colour = silent ? Cesium.Color.GRAY : (p.conforming ? Cesium.Color.LIME : Cesium.Color.RED);
    let entity = this.source.entities.getById(`drone-${f.id}`);
    if (!entity) {
      entity = this.source.entities.add({
        id: `drone-${f.id}`,
        name: p.serial,
        point: { pixelSize: 14, outlineColor: Cesium.Color.BLACK, outlineWidth: 2,
                 disableDepthTestDistance: Number.POSITIVE_INFINITY },
        label: { font: LABEL_FONT, fillColor: Cesium.Color.WHITE,
                 outlineColor: Cesium.Color.BLACK, outlineWidth: 3,
                 style: Cesium.LabelStyle.FILL_AND_OUTLINE,
                 pixelOffset: new Cesium.Cartesian2(0, -18),
                 disableDepthTestDistance: Number.POSITIVE_INFINITY },
        polyline: { width: 2, material: Cesium.Color.WHITE.withAlpha(0.7),
                    positions: new Cesium.CallbackProperty(() => this.trails.get(f.id), false) },
        properties: { layer: "drones", id: f.id },
      });
    }
    entity.position = position;
    entity.point.color = colour;
    entity.properties.t = p.t;
    this.last.set(f.id, { serial: p.serial, battery: p.battery_pct ?? "?", silent });
    this.labelOne(f.id);
  }

  labelOne(id) {
    const d = this.last.get(id);
    const e = this.source.entities.getById(`drone-${id}`);
    if (d && e) e.label.text = t(d.silent ? "drone.silent" : "drone.label", d);
  }

  relabel() { for (const id of this.last.keys()) this.labelOne(id); }

  positionOf(id) {
    const e = this.source.entities.getById(`drone-${id}`);
    if (!e) return null;
    const c = Cesium.Cartographic.fromCartesian(e.position.getValue(Cesium.JulianDate.now()));
    return [Cesium.Math.toDegrees(c.longitude), Cesium.Math.toDegrees(c.latitude), c.height];
  }

  set visible(on) { this.source.show = on; }
}
