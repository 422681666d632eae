// The properties panel: whatever was clicked is fetched from the API by its id, so what is
// shown is the row as the service holds it, not what the tile or layer carried.
import { getJSON } from "./api.js";
import { t } from "./i18n.js";
import { TrafficLayer } from "./traffic.js";

const el = (id) => document.getElementById(id);

// nested objects become dotted keys (attributes.roofType), lists and the rest JSON text
function rows(props, prefix = "", out = []) {
  for (const [k, v] of Object.entries(props)) {
    if (v && typeof v === "object" && !Array.isArray(v) && prefix.split(".").length < 3) {
      rows(v, `${prefix}${k}.`, out);
    } else {
      out.push([prefix + k, v === null || v === undefined ? "" :
        typeof v === "object" ? JSON.stringify(v) : String(v)]);
    }
  }
  return out;
}

export const panel = {
  state: "closed",
  shown: null, // {kind, id, title, props}

  open(title, subtitle) {
    this.state = "loading";
    el("panel").hidden = false;
    el("panel").dataset.state = "loading";
    el("panel-title").textContent = t(title);
    el("panel-subtitle").textContent = subtitle || "";
    el("panel-props").replaceChildren();
  },

  fill(kind, id, props) {
    const table = el("panel-props");
    table.replaceChildren(...rows(props).map(([k, v]) => {
      const tr = document.createElement("tr");
      const a = document.createElement("td");
      a.className = "key";
      a.textContent = k;
      const b = document.createElement("td");
      b.textContent = v;
      tr.append(a, b);
      return tr;
    }));
    this.state = "ready";
    this.shown = { kind, id, title: el("panel-title").textContent, props };
    el("panel").dataset.state = "ready";
    el("panel").dataset.kind = kind;
    el("panel").dataset.id = String(id);
  },

  fail(message) {
    this.state = "error";
    el("panel").dataset.state = "error";
    el("panel-subtitle").textContent = t("panel.error", { detail: message });
  },

  close() {
    this.state = "closed";
    el("panel").hidden = true;
  },
};

el("panel-close").addEventListener("click", () => panel.close());

const enc = encodeURIComponent;

// what to fetch for each kind of thing that can be clicked
const SOURCES = {
  mesh: async (id) => ["panel.cityObject", (await getJSON(`/city/objects/${enc(id)}?geometry=none`)).properties],
  bim: async (id, source) => {
    const ds = /^bim-(\d+)$/.exec(source.name);
    const q = ds ? `?dataset=${ds[1]}` : "";
    const f = await getJSON(`/bim/elements/${enc(id)}${q}`);
    const { links, ...props } = f.properties;
    return ["panel.bimElement", props];
  },
  traffic: async (id, entity) => {
    const f = await getJSON(`/collections/road_segments/items/${enc(id)}`);
    const level = entity.properties.level?.getValue();
    return ["panel.road", { congestion: TrafficLayer.levelName(level), ...f.properties }];
  },
  rivers: async (id) => ["panel.waterway",
    (await getJSON(`/collections/waterways/items/${enc(id)}`)).properties],
  water: async (id) => ["panel.station", (await getJSON(`/collections/water_stations/items/${enc(id)}`)).properties],
  routes: async (id) => {
    const f = await getJSON(`/drone-routes/${enc(id)}`);
    const { corridor, validation, ...props } = f.properties;
    return ["panel.route", { ...props, violations: (validation?.violations || []).length }];
  },
  tileset: async (name) => {
    const t = (await getJSON("/tiles")).find((x) => x.name === name) || { name };
    const ds = t.dataset_id ? await getJSON(`/datasets/${t.dataset_id}`) : {};
    return ["panel.tileset", { ...t, dataset: ds.name, crs: ds.crs, acquired_at: ds.acquired_at }];
  },
  network: async (id) => ["panel.corridor",
    (await getJSON(`/collections/route_network/items/${enc(id)}`)).properties],
  vertiports: async (id) => ["panel.vertiport",
    (await getJSON(`/collections/vertiports/items/${enc(id)}`)).properties],
  drones: async (id, entity) => {
    const d = await getJSON(`/drones/${enc(id)}`);
    const { links, ...props } = d;
    return ["panel.drone", { ...props, last_report: entity.properties.t?.getValue() }];
  },
};

export async function showPicked(kind, id, context) {
  panel.open(t("panel.loading"), `${kind} ${id}`);
  try {
    const [title, props] = await SOURCES[kind](id, context);
    el("panel-title").textContent = t(title);
    el("panel-subtitle").textContent = String(id);
    panel.fill(kind, id, props);
  } catch (e) {
    panel.fail(String(e.message || e));
    console.error("could not load properties", kind, id, e);
  }
}

// a panel filled by the caller (a change report row, say): no request
export function showRows(titleKey, subtitle, kind, id, props) {
  panel.open(t(titleKey), subtitle);
  panel.fill(kind, id, props);
}

export function canShow(kind) {
  return kind in SOURCES;
}
