// The reference dashboard: the city tileset, traffic, water quality, drone routes and live
// drones over CesiumJS, with the uploads' jobs, the datasets and a survey's changes; fully
// offline (Cesium's bundled imagery, no Ion, nothing from the internet). Every word shown
// comes from the message catalogues (i18n.js), Simplified Chinese unless switched.
import { activity, getJSON } from "./api.js";
import { offlineBaseLayer } from "./basemap.js";
import { CityLayer, kindLabel } from "./city.js";
import { DronesLayer, RoutesLayer, STATUS } from "./drones.js";
import { bulkBox } from "./framing.js";
import { FLIGHT_STATE, FlightsLayer } from "./flights.js";
import { groundFor } from "./ground.js";
import { currentLang, initI18n, onLangChange, otherLang, setLang, t } from "./i18n.js";
import { LivingMap } from "./living.js";
import { LAYER_COLOURS, NetworkLayer } from "./network.js";
import { centreFill, contentBox, glyphs } from "./probe.js";
import { canShow, panel, showPicked, showRows } from "./panel.js";
import { RiversLayer, WATERWAY_STYLE } from "./rivers.js";
import { setUpTerrain, terrainState } from "./terrain.js";
import { LEVEL_COLOURS, TrafficLayer } from "./traffic.js";
import { CLASS_COLOURS, WaterLayer } from "./water.js";
import { bboxOf, CHANGE_COLOURS, ChangesLayer, DatasetsPanel, JobsPanel } from "./work.js";

const errors = [];
window.addEventListener("error", (e) => errors.push(String(e.message || e)));
window.addEventListener("unhandledrejection", (e) => errors.push(String(e.reason?.message || e.reason)));

Cesium.Ion.defaultAccessToken = undefined; // never ask Ion for anything
const viewer = new Cesium.Viewer("viewer", {
  baseLayer: offlineBaseLayer(),
  geocoder: false, baseLayerPicker: false, timeline: false, animation: false,
  homeButton: false, sceneModePicker: false, navigationHelpButton: false,
  fullscreenButton: false, infoBox: false, selectionIndicator: false,
  skyAtmosphere: false,
  contextOptions: { webgl: { preserveDrawingBuffer: true } }, // screenshots of the canvas
});
viewer.scene.globe.baseColor = Cesium.Color.fromCssColorString("#2f3b33");
viewer.scene.renderError.addEventListener((_, e) => errors.push(`render error: ${e?.message || e}`));
const terrain = setUpTerrain(viewer);


const city = new CityLayer(viewer);
const layers = {
  rivers: new RiversLayer(viewer),
  traffic: new TrafficLayer(viewer),
  water: new WaterLayer(viewer),
  routes: new RoutesLayer(viewer),
  network: new NetworkLayer(viewer),
  flights: new FlightsLayer(viewer),
  drones: new DronesLayer(viewer),
};
const counts = {};
const changes = new ChangesLayer(viewer, city);
const living = new LivingMap(viewer, city);
let tileVersions = "";
const datasets = new DatasetsPanel({ flyToDataset, showChanges });
const jobs = new JobsPanel({
  datasetName: (id) => datasets.rows.find((d) => d.id === id)?.name ?? (id ? `#${id}` : ""),
  onChange: (before, after) => jobsMoved(before, after).catch((e) => console.error(e)),
});

// ---- time slider: observations up to a moment of the last 7 days, in 15-minute steps
const slider = document.getElementById("time");
function sliderTime() {
  const stepsBack = Number(slider.max) - Number(slider.value);
  return new Date(Date.now() - stepsBack * 15 * 60 * 1000);
}
async function applyTime() {
  const when = sliderTime();
  document.getElementById("time-label").textContent =
    Number(slider.value) === Number(slider.max) ? t("time.now")
      : t("time.utc", { time: when.toISOString().slice(0, 16).replace("T", " ") });
  counts.trafficObserved = await layers.traffic.colour(when);
  counts.waterSampled = await layers.water.colour(when);
}
let timer = null;
slider.addEventListener("input", () => {
  clearTimeout(timer);
  timer = setTimeout(() => applyTime().catch((e) => console.error(e)), 250);
});

// ---- toggles
function kindToggles() {
  const box = document.getElementById("kinds");
  box.replaceChildren(...city.allKinds().map((kind) => {
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.type = "checkbox";
    input.checked = true;
    input.dataset.kind = kind;
    input.addEventListener("change", () => setKinds(checkedKinds()).catch((e) => console.error(e)));
    const text = document.createElement("span");
    text.textContent = kindLabel(kind);
    label.append(input, " ", text);
    return label;
  }));
}
function checkedKinds() {
  const inputs = [...document.querySelectorAll("#kinds input")];
  const on = inputs.filter((i) => i.checked).map((i) => i.dataset.kind);
  return on.length === inputs.length ? null : on;
}
async function setKinds(kinds) {
  for (const i of document.querySelectorAll("#kinds input")) {
    i.checked = !kinds || kinds.includes(i.dataset.kind);
  }
  await city.show(kinds);
}
function setLayers(on) {
  for (const [name, value] of Object.entries(on)) {
    layers[name].visible = value;
    document.querySelector(`input[data-layer="${name}"]`).checked = value;
  }
}
for (const input of document.querySelectorAll("input[data-layer]")) {
  input.addEventListener("change", () => { layers[input.dataset.layer].visible = input.checked; });
}

function legend() {
  const row = ([text, css]) => {
    const r = document.createElement("span");
    r.className = "row";
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = css;
    r.append(sw, text);
    return r;
  };
  const group = (title, items) => {
    const h = document.createElement("h2");
    h.textContent = t(title);
    const rows = document.createElement("div");
    rows.className = "rows";
    rows.append(...items.map(row));
    return [h, rows];
  };
  document.getElementById("legend").replaceChildren(
    ...group("legend.rivers", Object.entries(WATERWAY_STYLE).map(([k, [c]]) => [t(`waterway.kind.${k}`), c])),
    ...group("legend.congestion", LEVEL_COLOURS.map((c, i) => [t(`level.${i}`), c])),
    ...group("legend.water", CLASS_COLOURS.map((c, i) => [t(`water.class.${i + 1}`), c])),
    ...group("legend.routes", Object.entries(STATUS).map(([k, c]) => [t(`route.status.${k}`), c])),
    ...group("legend.flights", Object.entries(FLIGHT_STATE).map(([k, c]) => [t(`flight.state.${k}`), c])),
    ...group("legend.network", LAYER_COLOURS.map((c, i) => [t(`network.layer.${i}`), c])),
    ...group("legend.changes", Object.entries(CHANGE_COLOURS).map(([k, c]) => [t(`change.${k}`), c])));
}

// ---- picking: a tile feature's id (property table) or a layer entity's id -> API row
let highlighted = null;
new Cesium.ScreenSpaceEventHandler(viewer.scene.canvas).setInputAction((click) => {
  const picked = viewer.scene.pick(click.position);
  if (highlighted) {
    // the feature's tileset is gone when the kinds changed since: nothing to restore then
    const { feature, color } = highlighted;
    if (!feature.tileset.isDestroyed() && !feature.content.isDestroyed()) feature.color = color;
    highlighted = null;
  }
  if (picked instanceof Cesium.Cesium3DTileFeature) {
    const source = city.sourceOf(picked);
    const id = picked.getProperty("id");
    if (source && id !== undefined && canShow(source.kind)) {
      highlighted = { feature: picked, color: Cesium.Color.clone(picked.color) };
      picked.color = Cesium.Color.YELLOW;
      showPicked(source.kind, id, source);
    } else if (source) {
      showPicked("tileset", source.name, source);
    }
  } else if (picked && picked.id instanceof Cesium.Entity && picked.id.properties) {
    const layer = picked.id.properties.layer?.getValue();
    if (layer === "changes") {
      const row = picked.id.properties.row.getValue();
      showRows("panel.change", String(row.object_id), "changes", row.object_id,
               { ...row, change: t(`change.${row.change}`) });
    } else if (layer === "flights") {
      const id = picked.id.properties.id.getValue();
      showRows("panel.flight", t("flight.subtitle", { id }), "flights", id, layers.flights.details(id));
    } else if (layer === "mesh-then") {
      showPicked("mesh", picked.id.properties.id.getValue(), null);
    } else if (layer) {
      showPicked(layer, picked.id.properties.id.getValue(), picked.id);
    }
  }
}, Cesium.ScreenSpaceEventType.LEFT_CLICK);

// ---- camera
function regionSphere(r) {
  const corners = [];
  for (const lon of [r[0], r[2]]) for (const lat of [r[1], r[3]]) for (const h of [r[4], r[5]]) {
    corners.push(Cesium.Cartesian3.fromRadians(lon, lat, h));
  }
  return Cesium.BoundingSphere.fromPoints(corners);
}
function flyToSphere(sphere, pitchDeg, range) {
  return new Promise((resolve) => viewer.camera.flyToBoundingSphere(sphere, {
    duration: 0, complete: resolve, cancel: resolve,
    offset: new Cesium.HeadingPitchRange(0, Cesium.Math.toRadians(pitchDeg), range),
  }));
}
async function view(target, pitchDeg = -40) {
  if (typeof target === "object") { // {lon, lat, h, range, pitch, heading}
    const centre = Cesium.Cartesian3.fromDegrees(target.lon, target.lat, target.h);
    viewer.camera.lookAt(centre, new Cesium.HeadingPitchRange(
      Cesium.Math.toRadians(target.heading || 0), Cesium.Math.toRadians(target.pitch ?? -90),
      target.range || 200));
    viewer.camera.lookAtTransform(Cesium.Matrix4.IDENTITY); // free the camera again
    return true;
  }
  // a layer that knows its points: framed on them (flyTo on a data source waits for every
  // entity's bounds, which ground-clamped and hidden entities may never report)
  const points = layers[target]?.points?.();
  if (points && points.length) {
    const sphere = Cesium.BoundingSphere.fromPoints(points);
    await flyToSphere(sphere, pitchDeg, Math.max(sphere.radius * 2.2, 100));
    return true;
  }
  if (layers[target]) {
    return viewer.flyTo(layers[target].source, {
      duration: 0, offset: new Cesium.HeadingPitchRange(0, Cesium.Math.toRadians(pitchDeg), 0) });
  }
  // "city": the city model when there is one (what a city dashboard opens on), else all;
  // "all": every tileset, wherever on earth
  if (!city.children.size) return false; // nothing published yet: keep the globe view
  if (target === "city") target = city.allKinds().includes("mesh") ? "mesh" : "all";
  const region = target === "all" ? city.doc.root.boundingVolume.region
    : city.regionOf((c) => c.kind === target || c.tileset === target);
  if (!region) return false;
  const sphere = regionSphere(region);
  await flyToSphere(sphere, pitchDeg, Math.max(sphere.radius * 2.2, 50));
  return true;
}

// ---- the first view: the home area (a setting, Longgang by default) when a published
// tileset lies in it, else the newest published dataset, else every tileset
const M_PER_DEG_LAT = 110_574;
function homeRegion(home) {
  const dLat = home.radius_m / M_PER_DEG_LAT;
  const dLon = home.radius_m / (111_320 * Math.cos(Cesium.Math.toRadians(home.lat)));
  return [home.lon - dLon, home.lat - dLat, home.lon + dLon, home.lat + dLat].map(Cesium.Math.toRadians);
}
const overlaps = (a, b) => a[0] <= b[2] && b[0] <= a[2] && a[1] <= b[3] && b[1] <= a[3];

// where the first view goes, and why ("home", "newest" or "all"); no camera move. Datasets'
// own bounds decide, not tileset regions: the city tileset's region spans every city model
// wherever it is, so it would claim the home area holds data when the data is elsewhere.
function firstViewTarget(cfg) {
  const box = homeRegion(cfg.home);
  const inHome = datasets.shown().map(datasetRegion).filter((r) => overlaps(r, box));
  if (inHome.length) {
    // the data in the home area, clipped to it: a dataset reaching far out does not widen the view
    const r = [Math.max(Math.min(...inHome.map((x) => x[0])), box[0]),
               Math.max(Math.min(...inHome.map((x) => x[1])), box[1]),
               Math.min(Math.max(...inHome.map((x) => x[2])), box[2]),
               Math.min(Math.max(...inHome.map((x) => x[3])), box[3]),
               Math.min(...inHome.map((x) => x[4])), Math.max(...inHome.map((x) => x[5]))];
    return { reason: "home", region: r };
  }
  const newest = datasets.newest();
  if (newest) return { reason: "newest", dataset: newest.id, region: datasetRegion(newest) };
  if (city.children.size) return { reason: "all", region: city.doc.root.boundingVolume.region };
  return { reason: "none", region: null };
}

async function firstView() {
  const target = firstViewTarget(config);
  if (target.region) await flyToRegion(target.region, -40);
  return target;
}

async function flyToRegion(region, pitchDeg = -40) {
  const sphere = regionSphere(region);
  await flyToSphere(sphere, pitchDeg, Math.max(sphere.radius * 2.2, 50));
}

// a dataset's region (radians, with heights): the bulk of its footprint (framing.js: a lone
// building far off does not shrink the rest into a corner) with its 3D bounds' heights (WGS 84
// ellipsoidal metres), else its 3D bounds, else its footprint with its tileset's heights
function datasetRegion(d) {
  const b = d.bounds3d;
  const has3d = b && Array.isArray(b.min) && Array.isArray(b.max);
  if (has3d && d.footprint) {
    return [...bulkBox(d.footprint).map(Cesium.Math.toRadians), b.min[2], b.max[2]];
  }
  if (has3d) {
    return [...[b.min[0], b.min[1], b.max[0], b.max[1]].map(Cesium.Math.toRadians), b.min[2], b.max[2]];
  }
  const [w, s, e, n] = bulkBox(d.footprint).map(Cesium.Math.toRadians);
  const names = new Set(tiles.filter((x) => x.dataset_id === d.id).map((x) => x.name));
  const r = city.regionOf((c) => names.has(c.tileset));
  return [w, s, e, n, r ? r[4] : 0, r ? r[5] : 50];
}

async function flyToDataset(d) {
  // the list may hold the row as it was queued (no bounds yet): ask for it as it is now
  if (!d.bounds3d && !d.footprint) d = await getJSON(`/datasets/${d.id}`);
  if (!d.bounds3d && !d.footprint) return null; // nothing published to fly to yet
  await flyToRegion(datasetRegion(d), d.kind === "bim" || d.kind === "ifc" ? -35 : -45);
  return d.id;
}

async function showChanges(d) {
  if (!d.footprint) d = await getJSON(`/datasets/${d.id}`); // a row listed before it was ready
  const [w, s, e, n] = bboxOf(d.footprint);
  const ground = await groundFor([[w, s], [e, n]]);
  const out = await changes.show(d, ground);
  await flyToRegion(datasetRegion(d), -55);
  return out;
}
document.getElementById("changes-clear").addEventListener("click", () => changes.clear());

// ---- jobs: when one moves or ends, the datasets and the city tileset may have changed
// (a survey's first tileset version is published while its modelling still runs)
async function jobsMoved(before, after) {
  const was = new Map(before.map((j) => [j.id, `${j.status}/${j.stage}`]));
  if (after.every((j) => was.get(j.id) === `${j.status}/${j.stage}`)) return;
  await refreshData();
}
async function refreshData() {
  tiles = await getJSON("/tiles");
  const versions = tiles.map((x) => `${x.name}@${x.version}`).sort().join(",");
  await datasets.load();
  if (versions !== tileVersions) {
    tileVersions = versions;
    await city.load();
    kindToggles();
    await livingMoments();
  }
}

// ---- the living map's date: one stop per day the model changed, then "now"
const dateSlider = document.getElementById("city-date");
let moments = [];
async function livingMoments() {
  moments = await living.moments();
  const atNow = Number(dateSlider.value) === Number(dateSlider.max);
  dateSlider.max = String(moments.length);
  if (atNow) dateSlider.value = dateSlider.max;
  dateSlider.disabled = moments.length === 0;
  livingLabel();
}
function livingDate() {
  const i = Number(dateSlider.value);
  // the end of that day (UTC): the map as it stood once that day's data was in
  return i >= moments.length ? null : new Date(`${moments[i]}T23:59:59Z`);
}
function livingLabel() {
  const at = living.at;
  document.getElementById("city-date-label").textContent = at
    ? t("cityDate.at", { date: at.toISOString().slice(0, 10) }) : t("cityDate.now");
  document.getElementById("city-date-counts").textContent = at
    ? `${t("cityDate.counts", { hidden: living.hidden, ghosts: living.ghosts })} ${t("cityDate.note")}` : "";
}
async function showCityAt(at) {
  const out = await living.show(at);
  livingLabel();
  return out;
}
let dateTimer = null;
dateSlider.addEventListener("input", () => {
  clearTimeout(dateTimer);
  dateTimer = setTimeout(() => showCityAt(livingDate()).catch((e) => console.error(e)), 250);
});

// ---- the language switch: everything drawn with words is drawn again
document.getElementById("lang").addEventListener("click", () => setLang(otherLang()).catch((e) => console.error(e)));
onLangChange(() => {
  legend();
  kindToggles();
  datasets.render();
  jobs.render();
  changes.render();
  livingLabel();
  layers.water.relabel();
  layers.routes.relabel();
  layers.network.relabel();
  layers.rivers.relabel();
  layers.flights.relabel();
  layers.drones.relabel();
  applyTime().catch((e) => console.error(e));
  updateStatus();
});

// ---- idle: tiles loaded, entities built, no request of ours in flight, for several
// rendered frames in a row (software WebGL renders a few frames a second, so frames, not
// milliseconds, are what "settled" means)
function idle(timeoutMs = 60000) {
  return new Promise((resolve, reject) => {
    let calm = 0;
    const t0 = performance.now();
    const check = () => {
      const tilesDone = !city.tileset || city.tileset.tilesLoaded;
      const ok = tilesDone && activity.pending === 0 && viewer.dataSourceDisplay.ready;
      calm = ok ? calm + 1 : 0;
      if (calm >= 3 && performance.now() - t0 > 300) {
        viewer.scene.postRender.removeEventListener(check);
        resolve(status());
      } else if (performance.now() - t0 > timeoutMs) {
        viewer.scene.postRender.removeEventListener(check);
        reject(new Error(`not idle after ${timeoutMs} ms: ${JSON.stringify(status())}`));
      }
    };
    viewer.scene.postRender.addEventListener(check);
  });
}

function status() {
  return {
    tilesets: city.children.size, kinds: city.kinds, ...city.stats, terrain: { ...terrainState },
    tilesLoaded: city.tileset ? city.tileset.tilesLoaded : null,
    pending: activity.pending, counts: { ...counts }, droneEvents: layers.drones.events,
    errors: [...errors, ...city.stats.errors], panel: panel.state,
    lang: currentLang(), jobEvents: jobs.events, jobs: jobs.jobs.length,
    datasets: datasets.shown().length, firstView: firstTarget,
  };
}

function updateStatus() {
  const s = status();
  document.getElementById("status").textContent =
    t("status.line", { tilesets: s.tilesets, loads: s.tileLoads, visible: s.visibleTiles });
}
viewer.scene.postRender.addEventListener(() => {
  if (viewer.scene.frameState.frameNumber % 30 === 0) updateStatus();
});

let config = null;
let tiles = [];
let firstTarget = null;

async function start() {
  await initI18n();
  legend();
  jobs.render();
  [config, tiles] = await Promise.all([getJSON("/dashboard/config.json"), getJSON("/tiles")]);
  tileVersions = tiles.map((x) => `${x.name}@${x.version}`).sort().join(",");
  await Promise.all([city.load(), datasets.load(), terrain]);
  kindToggles();
  firstTarget = await firstView();
  jobs.start();
  const names = ["rivers", "traffic", "water", "routes", "flights", "drones", "network"];
  const loaded = await Promise.all(names.map((n) => layers[n].load()));
  Object.assign(counts, Object.fromEntries(names.map((n, i) => [n, loaded[i]])));
  await Promise.all([applyTime(), livingMoments()]);
}

// what the browser tests (and a curious operator in the console) use
window.twinbase = {
  viewer, city, layers, panel, datasets, jobs, changes, living, terrain: terrainState,
  ready: start(),
  status, idle, view, setKinds, setLayers, firstView, firstViewTarget, flyToRegion,
  flyToDataset: (id) => flyToDataset(datasets.rows.find((d) => d.id === id)),
  showChanges: (id) => showChanges(datasets.rows.find((d) => d.id === id)),
  showCityAt: (iso) => showCityAt(iso ? new Date(iso) : null),
  setLang, t, refreshData,
  centreFill: (fraction) => centreFill(viewer, city, fraction),
  contentBox: () => contentBox(viewer, city),
  glyphs,
  toWindow(lon, lat, h) {
    const p = Cesium.SceneTransforms.worldToWindowCoordinates(
      viewer.scene, Cesium.Cartesian3.fromDegrees(lon, lat, h));
    return p ? { x: p.x, y: p.y } : null;
  },
  dronePosition: (id) => layers.drones.positionOf(id),
  showPlan: (id) => layers.flights.showPlan(id),
  // what a layer draws: its entities, and the ones Cesium has turned into primitives
  drawn: (name) => ({ entities: layers[name].source.entities.values.length,
                      show: layers[name].source.show }),
  refreshTime: applyTime,
  getJSON,
};
window.twinbase.ready.catch((e) => {
  errors.push(`start: ${e.message || e}`);
  const box = document.getElementById("error");
  box.textContent = t("error.start", { detail: e.message || e });
  box.hidden = false;
  console.error("dashboard failed to start", e);
});
