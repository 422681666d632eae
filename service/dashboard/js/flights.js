// Flights the airspace holds: approved and active routes whose time window has not ended
// (on-network reservations among them: approved routes whose validation names the network
// version), and a fleet plan's flights, each as its 3D centre line at its heights, coloured by
// state. A plan's flight is drawn where the plan names the route it reserved; a trip with no
// reserved route has no line to draw, and is counted as such.
import { getJSON } from "./api.js";
import { LABEL_FONT } from "./fonts.js";
import { t } from "./i18n.js";

// flight states (flight.state.<state> in the catalogues)
export const FLIGHT_STATE = {
  airborne: "#00e5ff", // in its window now (approved or active)
  reserved: "#ffee58", // approved on the route network, window ahead
  approved: "#66bb6a", // approved off the network, window ahead
  plan: "#ff7043", // a flight of the fleet plan shown
};

const isoMinute = (s) => (s ? new Date(s).toISOString().slice(0, 16).replace("T", " ") : "");

export function flightState(p, now = Date.now()) {
  const start = Date.parse(p.start_time);
  if (p.status === "active" || start <= now) return "airborne";
  return p.validation?.checked?.network ? "reserved" : "approved";
}

export class FlightsLayer {
  constructor(viewer) {
    this.source = new Cesium.CustomDataSource("flights");
    viewer.dataSources.add(this.source);
    this.flights = new Map(); // route id -> {feature, state, serial, plan}
    this.plan = null; // {id, trips, unreserved}
  }

  async load(now = Date.now()) {
    const [routes, drones] = await Promise.all([getJSON("/drone-routes?limit=1000"),
                                                getJSON("/drones?limit=1000")]);
    const serial = new Map(drones.map((d) => [d.id, d.serial]));
    this.source.entities.removeAll();
    this.flights.clear();
    for (const f of routes.features) {
      const p = f.properties;
      if (!["approved", "active"].includes(p.status) || Date.parse(p.end_time) <= now) continue;
      this.flights.set(f.id, { feature: f, state: flightState(p, now),
                               serial: serial.get(p.drone_id) ?? String(p.drone_id), plan: null });
    }
    const planId = new URLSearchParams(location.hash.slice(1)).get("plan");
    if (planId) await this.showPlan(Number(planId), false);
    this.draw();
    return this.flights.size;
  }

  // a stored fleet plan (GET /fleet/plans/{id}): the reserved flights of its trips are drawn
  // in the plan's colour with their tasks; trips with none are counted as not reserved
  async showPlan(id, redraw = true) {
    const plan = await getJSON(`/fleet/plans/${encodeURIComponent(id)}`);
    let trips = 0;
    let unreserved = 0;
    for (const dp of plan.drones || []) {
      for (const trip of dp.trips || []) {
        trips++;
        // a trip is flown as one reserved flight per hop between network nodes
        const drawn = (trip.flights || []).map((f) => this.flights.get(f.route_id)).filter(Boolean);
        if (!drawn.length) { unreserved++; continue; }
        for (const flight of drawn) {
          flight.state = "plan";
          flight.plan = { id: plan.id, drone: dp.drone, tasks: (trip.stops || []).map((s) => s.task),
                          departure: trip.departure, arrival: trip.arrival };
        }
      }
    }
    this.plan = { id: plan.id, trips, unreserved };
    if (redraw) this.draw();
    return this.plan;
  }

  draw() {
    this.source.entities.removeAll();
    for (const [id, fl] of this.flights) {
      const line = fl.feature.geometry.coordinates;
      const colour = Cesium.Color.fromCssColorString(FLIGHT_STATE[fl.state]);
      const onNetwork = Boolean(fl.feature.properties.validation?.checked?.network);
      this.source.entities.add({
        id: `flight-${id}`,
        polyline: {
          positions: Cesium.Cartesian3.fromDegreesArrayHeights(line.flat()),
          width: 4,
          // a network reservation dashed: its corridor is the network's, not its own
          material: onNetwork ? new Cesium.PolylineDashMaterialProperty({ color: colour, dashLength: 24 })
            : colour,
          depthFailMaterial: colour.withAlpha(0.4),
        },
        properties: { layer: "flights", id },
      });
      const mid = line[Math.floor(line.length / 2)];
      this.source.entities.add({
        id: `flight-label-${id}`,
        position: Cesium.Cartesian3.fromDegrees(mid[0], mid[1], mid[2] + 6),
        label: { text: this.labelOf(fl), font: LABEL_FONT, fillColor: colour,
                 outlineColor: Cesium.Color.BLACK, outlineWidth: 3,
                 style: Cesium.LabelStyle.FILL_AND_OUTLINE,
                 disableDepthTestDistance: Number.POSITIVE_INFINITY },
        properties: { layer: "flights", id },
      });
    }
  }

  points() {
    return [...this.flights.values()].flatMap((fl) => fl.feature.geometry.coordinates
      .map(([lon, lat, h]) => Cesium.Cartesian3.fromDegrees(lon, lat, h)));
  }

  labelOf(fl) {
    const p = fl.feature.properties;
    return t("flight.label", { drone: fl.serial, state: t(`flight.state.${fl.state}`),
                               start: isoMinute(p.start_time).slice(11) });
  }

  relabel() {
    for (const [id, fl] of this.flights) {
      const e = this.source.entities.getById(`flight-label-${id}`);
      if (e) e.label.text = this.labelOf(fl);
    }
  }

  // what a click shows: the task, the drone and the times, under the catalogue's words
  details(id) {
    const fl = this.flights.get(Number(id));
    if (!fl) return null;
    const p = fl.feature.properties;
    const net = p.validation?.checked?.network;
    const out = {
      [t("flight.task")]: fl.plan ? fl.plan.tasks.join(", ") : (p.name || t("route.unnamed", { id })),
      [t("flight.drone")]: fl.serial,
      [t("flight.stateKey")]: t(`flight.state.${fl.state}`),
      [t("flight.start")]: `${isoMinute(p.start_time)} UTC`,
      [t("flight.end")]: `${isoMinute(p.end_time)} UTC`,
      [t("flight.heights")]: `${Math.round(p.alt_lower_m)}–${Math.round(p.alt_upper_m)} m`,
      [t("flight.network")]: net ? t("flight.networkVersion", { version: net.version }) : t("flight.offNetwork"),
      [t("flight.route")]: String(id),
    };
    if (fl.plan) out[t("flight.plan")] = String(fl.plan.id);
    return out;
  }

  set visible(on) { this.source.show = on; }
}
