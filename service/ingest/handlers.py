"""Registers the ingest job of every dataset kind that can be ingested."""
