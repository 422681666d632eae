// The ground the city stands on. Offline by design: no terrain from the internet. Kept in
// one function so a terrain source of the service's own can be chosen here alone.
export async function setUpTerrain(viewer) {
  viewer.terrainProvider = new Cesium.EllipsoidTerrainProvider();
  return "ellipsoid";
}
