// Work in progress and what it produced: the datasets (each flies the camera to itself), the
// uploads' jobs with live progress (Server-Sent Events from /dashboard/jobs/stream), and a
// survey's change report drawn on the map.
import { apiUrl, getJSON, headers } from "./api.js";
import { t, tOr } from "./i18n.js";
import { openEventStream } from "./sse.js";

const el = (id) => document.getElementById(id);

export const CHANGE_COLOURS = { new: "#2ecc71", changed: "#ff9800", demolished: "#ff1744" };

// [west, south, east, north] in degrees of a GeoJSON geometry
export function bboxOf(geometry) {
  const pts = [];
  const walk = (c) => (typeof c[0] === "number" ? pts.push(c) : c.forEach(walk));
  walk(geometry.coordinates);
  const xs = pts.map((p) => p[0]);
  const ys = pts.map((p) => p[1]);
  return [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
}

export class DatasetsPanel {
  constructor({ flyToDataset, showChanges }) {
    this.rows = [];
    this.flyToDataset = flyToDataset;
    this.showChanges = showChanges;
  }

  async load() {
    this.rows = await getJSON("/datasets?limit=100");
    this.render();
    return this.rows.length;
  }

  // datasets that can be shown: published, with a place on earth
  shown() { return this.rows.filter((d) => d.status === "ready" && d.footprint); }

  render() {
    const list = el("datasets");
    const rows = this.shown();
    if (!rows.length) {
      const li = document.createElement("li");
      li.className = "note";
      li.textContent = t("datasets.empty");
      list.replaceChildren(li);
      return;
    }
    list.replaceChildren(...rows.map((d) => {
      const li = document.createElement("li");
      li.dataset.dataset = String(d.id);
      const kind = document.createElement("span");
      kind.className = "kind";
      kind.textContent = tOr(`dskind.${d.kind}`, d.kind);
      const go = document.createElement("button");
      go.className = "go";
      go.type = "button";
      go.textContent = d.name;
      go.title = t("datasets.flyTo", { name: d.name });
      go.addEventListener("click", () => this.flyToDataset(d).catch((e) => console.error(e)));
      li.append(kind, go);
      if (d.kind === "lidar") {
        const ch = document.createElement("button");
        ch.type = "button";
        ch.className = "changes";
        ch.textContent = t("datasets.changes");
        ch.title = t("datasets.changesTitle");
        ch.addEventListener("click", () => this.showChanges(d).catch((e) => console.error(e)));
        li.append(ch);
      }
      return li;
    }));
  }

  newest() {
    const rows = this.shown();
    return rows.length ? rows.reduce((a, b) => (a.id > b.id ? a : b)) : null;
  }
}

export class JobsPanel {
  constructor({ datasetName, onChange }) {
    this.jobs = [];
    this.events = 0;
    this.datasetName = datasetName;
    this.onChange = onChange; // called when a job's status or progress moved
    this.stream = null;
    this.connected = false;
  }

  start() {
    this.stream = openEventStream(apiUrl("/dashboard/jobs/stream"), {
      headers,
      on: {
        jobs: (e) => {
          this.events++;
          this.connected = true;
          const before = this.jobs;
          this.jobs = JSON.parse(e.data);
          this.render();
          this.onChange(before, this.jobs);
        },
        error: () => { this.connected = false; this.render(); },
      },
    });
  }

  render() {
    const list = el("jobs");
    if (!this.jobs.length) {
      const li = document.createElement("li");
      li.className = "note";
      li.textContent = this.connected || this.events ? t("jobs.empty") : t("jobs.offline");
      list.replaceChildren(li);
      return;
    }
    list.replaceChildren(...this.jobs.slice(0, 8).map((j) => {
      const li = document.createElement("li");
      li.dataset.job = String(j.id);
      li.dataset.status = j.status;
      li.className = j.status;
      const head = document.createElement("div");
      head.textContent = t("job.line", { id: j.id, kind: tOr(`job.kind.${j.kind}`, j.kind),
                                         dataset: this.datasetName(j.dataset_id) });
      const bar = document.createElement("progress");
      bar.max = 1;
      bar.value = j.progress.fraction;
      const detail = document.createElement("div");
      detail.className = "detail note";
      detail.textContent = t("job.progress", {
        status: tOr(`job.status.${j.status}`, j.status),
        // only a running or failed job's stage says more than its status
        stage: ["running", "failed"].includes(j.status) ? tOr(`job.stage.${j.stage}`, j.stage || "") : "",
        percent: Math.round(j.progress.fraction * 100) });
      if (j.error) detail.title = j.error; // the service's own words, for an operator
      li.append(head, bar, detail);
      return li;
    }));
  }
}

// a survey's new, changed and demolished buildings as coloured footprints on the ground
export class ChangesLayer {
  constructor(viewer, city) {
    this.city = city;
    this.source = new Cesium.CustomDataSource("changes");
    viewer.dataSources.add(this.source);
    this.dataset = null;
    this.counts = null;
  }

  async show(dataset, ground) {
    const body = await getJSON(`/datasets/${dataset.id}/changes`);
    this.source.entities.removeAll();
    const counts = { new: 0, changed: 0, demolished: 0 };
    const tints = new Map(); // buildings still standing are coloured in the city model itself
    for (const f of body.features) {
      const change = f.properties.change;
      if (!(change in CHANGE_COLOURS) || !f.geometry) continue;
      counts[change]++;
      const colour = Cesium.Color.fromCssColorString(CHANGE_COLOURS[change]);
      if (change !== "demolished") tints.set(String(f.id), colour);
      const polys = f.geometry.type === "MultiPolygon" ? f.geometry.coordinates : [f.geometry.coordinates];
      polys.forEach((poly, i) => {
        this.source.entities.add({
          id: `change-${f.id}-${i}`,
          polygon: {
            hierarchy: new Cesium.PolygonHierarchy(Cesium.Cartesian3.fromDegreesArray(
              poly[0].flatMap(([lon, lat]) => [lon, lat]))),
            height: ground + 0.5, extrudedHeight: ground + (change === "demolished" ? 12 : 2),
            material: colour.withAlpha(change === "demolished" ? 0.45 : 0.6),
            outline: true, outlineColor: colour,
          },
          properties: { layer: "changes", id: f.id, change, row: f.properties },
        });
      });
    }
    this.city.tint(tints);
    this.dataset = dataset;
    this.counts = counts;
    this.render();
    return { features: body.features.length, ...counts };
  }

  render() {
    const box = el("changes");
    if (!this.dataset) { box.hidden = true; return; }
    box.hidden = false;
    const c = this.counts;
    el("changes-summary").textContent = c.new + c.changed + c.demolished
      ? t("changes.summary", { name: this.dataset.name, ...c }) : t("changes.none");
  }

  clear() {
    this.source.entities.removeAll();
    this.city.tint(null);
    this.dataset = null;
    this.counts = null;
    this.render();
  }
}
