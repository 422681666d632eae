// The reference dashboard: the city tileset, traffic, water quality, drone routes and live
// drones over CesiumJS, fully offline (no Ion, no imagery, no terrain from the internet).
import { activity, apiUrl, getJSON, headers } from "./api.js";
import { CityLayer, KIND_LABELS } from "./city.js";
import { DronesLayer, RoutesLayer, STATUS } from "./drones.js";
import { canShow, panel, showPicked } from "./panel.js";
import { LEVELS, TrafficLayer } from "./traffic.js";
import { CLASSES, WaterLayer } from "./water.js";

const errors = [];
window.addEventListener("error", (e) => errors.push(String(e.message || e)));
window.addEventListener("unhandledrejection", (e) => errors.push(String(e.reason?.message || e.reason)));

Cesium.Ion.defaultAccessToken = undefined; // never ask Ion for anything
const viewer = new Cesium.Viewer("viewer", {
  baseLayer: false, // no imagery: government networks are often offline
  terrainProvider: new Cesium.EllipsoidTerrainProvider(),
  geocoder: false, baseLayerPicker: false, timeline: false, animation: false,
  homeButton: false, sceneModePicker: false, navigationHelpButton: false,
  fullscreenButton: false, infoBox: false, selectionIndicator: false,
  skyAtmosphere: false,
  contextOptions: { webgl: { preserveDrawingBuffer: true } }, // screenshots of the canvas
});
viewer.scene.globe.baseColor = Cesium.Color.fromCssColorString("#2f3b33");
viewer.scene.renderError.addEventListener((_, e) => errors.push(`render error: ${e?.message || e}`));

// terrain: the surveys' DTMs the service keeps (/terrain/), once it has one; until then
// the bare ellipsoid. Lit by a light that follows the camera, so slopes show at any hour.
const terrain = { surveys: 0, on: false };
async function loadTerrain() {
  const layer = await getJSON("/terrain/layer.json");
  terrain.surveys = layer.surveys || 0;
  if (!terrain.surveys) return;
  viewer.terrainProvider = await Cesium.CesiumTerrainProvider.fromUrl(
    new Cesium.Resource({ url: apiUrl("/terrain/"), headers }), { requestVertexNormals: true });
  viewer.scene.globe.enableLighting = true;
  viewer.scene.light = new Cesium.DirectionalLight({ direction: viewer.camera.directionWC });
  viewer.scene.preRender.addEventListener((scene) => {
    scene.light.direction = Cesium.Cartesian3.clone(scene.camera.directionWC, scene.light.direction);
  });
  terrain.on = true;
}

const city = new CityLayer(viewer);
const layers = {
  traffic: new TrafficLayer(viewer),
  water: new WaterLayer(viewer),
  routes: new RoutesLayer(viewer),
  drones: new DronesLayer(viewer),
};
const counts = {};

// ---- time slider: observations up to a moment of the last 7 days, in 15-minute steps
const slider = document.getElementById("time");
function sliderTime() {
  const stepsBack = Number(slider.max) - Number(slider.value);
  return new Date(Date.now() - stepsBack * 15 * 60 * 1000);
}
async function applyTime() {
  const t = sliderTime();
  document.getElementById("time-label").textContent =
    Number(slider.value) === Number(slider.max) ? "now" : t.toISOString().slice(0, 16).replace("T", " ") + " UTC";
  counts.trafficObserved = await layers.traffic.colour(t);
  counts.waterSampled = await layers.water.colour(t);
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
    label.append(input, ` ${KIND_LABELS[kind] || kind}`);
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
  const row = ([text, css]) => `<span class="row"><span class="swatch" style="background:${css}"></span>${text}</span>`;
  const group = (title, items) => `<h2>${title}</h2><div class="rows">${items.map(row).join("")}</div>`;
  document.getElementById("legend").innerHTML =
    group("Congestion (GB/T 33171)", LEVELS) + group("Water class (GB 3838)", CLASSES) +
    group("Route status", Object.entries(STATUS));
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
    if (layer) showPicked(layer, picked.id.properties.id.getValue(), picked.id);
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
    tilesets: city.children.size, kinds: city.kinds, ...city.stats, terrain: { ...terrain },
    tilesLoaded: city.tileset ? city.tileset.tilesLoaded : null,
    pending: activity.pending, counts: { ...counts }, droneEvents: layers.drones.events,
    errors: [...errors, ...city.stats.errors], panel: panel.state,
  };
}

function updateStatus() {
  const s = status();
  document.getElementById("status").textContent =
    `${s.tilesets} tilesets · ${s.tileLoads} tiles loaded · ${s.visibleTiles} visible`;
}
viewer.scene.postRender.addEventListener(() => {
  if (viewer.scene.frameState.frameNumber % 30 === 0) updateStatus();
});

async function start() {
  legend();
  await loadTerrain();
  await city.load();
  kindToggles();
  const [traffic, water, routes, drones] = await Promise.all(
    ["traffic", "water", "routes", "drones"].map((n) => layers[n].load()));
  Object.assign(counts, { traffic, water, routes, drones });
  await applyTime();
  await view("city");
}

// what the browser tests (and a curious operator in the console) use
window.twinbase = {
  viewer, city, layers, panel, terrain,
  ready: start(),
  status, idle, view, setKinds, setLayers,
  toWindow(lon, lat, h) {
    const p = Cesium.SceneTransforms.worldToWindowCoordinates(
      viewer.scene, Cesium.Cartesian3.fromDegrees(lon, lat, h));
    return p ? { x: p.x, y: p.y } : null;
  },
  dronePosition: (id) => layers.drones.positionOf(id),
  refreshTime: applyTime,
  getJSON,
};
window.twinbase.ready.catch((e) => {
  errors.push(`start: ${e.message || e}`);
  console.error("dashboard failed to start", e);
});
