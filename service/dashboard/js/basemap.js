// The offline base imagery: Natural Earth II, which the Cesium build ships in its Assets and
// the service serves with the rest of Cesium. Coarse (three zoom levels) but never a request
// off the machine; government networks are often closed to the internet.
export function offlineBaseLayer() {
  return Cesium.ImageryLayer.fromProviderAsync(Cesium.TileMapServiceImageryProvider.fromUrl(
    Cesium.buildModuleUrl("Assets/Textures/NaturalEarthII")));
}
