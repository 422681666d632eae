# The API / worker image. docker-compose.yml runs it twice (api, worker) beside PostGIS.

# CesiumJS for the dashboard, from the same lock file the tests use (no CDN at run time)
FROM node:20-bookworm-slim AS js
WORKDIR /js
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund

FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends proj-data curl \
 && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir uv

WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
COPY service ./service
COPY readers ./readers
COPY recon ./recon
COPY tiler ./tiler
COPY dispatch ./dispatch
COPY migrations ./migrations
COPY data ./data
COPY --from=js /js/node_modules/cesium/Build/Cesium ./node_modules/cesium/Build/Cesium
RUN uv sync --frozen --no-dev

ENV PATH="/app/.venv/bin:$PATH" \
    TWINBASE_DATA_DIR=/var/lib/twinbase \
    TWINBASE_HOST=0.0.0.0
RUN useradd --system --home /var/lib/twinbase twinbase \
 && mkdir -p /var/lib/twinbase && chown twinbase /var/lib/twinbase
USER twinbase
EXPOSE 8000
CMD ["twinbase", "serve", "--workers", "2"]
