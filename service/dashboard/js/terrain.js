// The ground the city stands on: the surveys' DTMs the service keeps (/terrain/), once it has
// one; until then the bare ellipsoid. Offline by design: no terrain from the internet. Lit by
// a light that follows the camera, so slopes show at any hour.
import { apiUrl, getJSON, headers } from "./api.js";

export const terrainState = { surveys: 0, on: false };

export async function setUpTerrain(viewer) {
  viewer.terrainProvider = new Cesium.EllipsoidTerrainProvider();
  const layer = await getJSON("/terrain/layer.json");
  terrainState.surveys = layer.surveys || 0;
  if (!terrainState.surveys) return terrainState;
  viewer.terrainProvider = await Cesium.CesiumTerrainProvider.fromUrl(
    new Cesium.Resource({ url: apiUrl("/terrain/"), headers }), { requestVertexNormals: true });
  viewer.scene.globe.enableLighting = true;
  viewer.scene.light = new Cesium.DirectionalLight({ direction: viewer.camera.directionWC });
  viewer.scene.preRender.addEventListener((scene) => {
    scene.light.direction = Cesium.Cartesian3.clone(scene.camera.directionWC, scene.light.direction);
  });
  terrainState.on = true;
  return terrainState;
}
