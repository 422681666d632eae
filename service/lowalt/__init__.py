"""Low altitude: drones, airspace zones, drone routes checked against the 3D city model and
each other, route planning, telemetry and live status.

Heights are metres above the WGS 84 ellipsoid everywhere in storage; height above ground is
derived where a rule needs it (see ``ground``). Metric work happens in the configured local
metric CRS (``geo``).
"""
