"""Terrain kept with the surveys: each modelled survey's DTM (migration 0011), ground heights
sampled from them newest survey first, and quantized-mesh terrain tiles for CesiumJS."""
