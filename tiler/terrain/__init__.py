"""Terrain: survey height grids (packing, coverage, sampling) and quantized-mesh tiles."""
