"""Pure IFC reading: open and check a file, georeference it, read element properties and
geometry. No database or web imports here; ``service.ingest.ifc`` wires it to the service."""
