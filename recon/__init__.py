"""Fly and model: from a LiDAR survey to buildings (pure library, no web or database).

Classification of the points (ground, building, vegetation), terrain (DTM), footprints and
building reconstruction (LoD1.2, LoD2.2) with their quality figures, and a survey simulator
that gives tests and benchmarks a truth to compare with.
"""
