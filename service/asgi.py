"""ASGI entry for running the app under another ASGI server (``uvicorn service.asgi:app``);
``DATABASE_URL`` must be set. ``twinbase serve`` does not import this module: it builds the
app itself, once per API process."""

from service.app import create_app

app = create_app(in_process_worker=False)
