"""Thematic layers: traffic (GB/T 33171-2016) and water quality (GB 3838-2002)."""
