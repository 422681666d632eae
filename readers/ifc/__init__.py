"""Pure IFC reading: open and check a file, georeference it, read element properties and
geometry. No database or web imports here; ``service.bim.ingest`` wires it to the service.

Choices worth knowing:

* IfcOpeningElement and IfcSpace are left out of the tiles and the elements (as IfcConvert
  leaves them out): openings are voids already cut from their walls, and room volumes drawn
  over everything would catch every click. Spaces are meshed only for their footprint and
  height range and stored as rooms (``spaces.py``). Only products with a 3D body become
  elements; an aggregate without a body of
  its own (a window made of members and plates) is found through its parts'
  ``assembly_global_id`` / ``assembly_class``.
* Heights written in the model (OrthogonalHeight, RefElevation, an anchor's height) are taken
  as above sea level and made ellipsoidal with EGM96, the one geoid PROJ has offline; the
  dataset's ``height_note`` says so.
* Property and quantity sets are stored as the file writes them (quantities in project units;
  the dataset's ``stats.project_unit_m`` gives the unit).
* An anchor cannot travel in tus upload metadata (its keys are fixed), so a model without
  georeferencing fails its first job with a message naming ``POST
  /bim/datasets/{id}/ingest``, which queues the ingest again with the anchor.
"""
