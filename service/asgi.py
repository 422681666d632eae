"""ASGI entry for gunicorn / uvicorn: ``DATABASE_URL`` must be set."""

from service.app import create_app

app = create_app(in_process_worker=False)
