"""Twinbase service: settings, database, API, jobs, ingest."""

__version__ = "0.1.0"
