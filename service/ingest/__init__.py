"""Turning uploaded files into datasets, rows and tilesets, one module per kind."""
