"""CIM city objects in PostGIS: the table, loading with history, and the city tileset.

``service.cim`` parses files (no database); this package stores what it parsed and builds the
one city tileset from the stored rows.
"""
