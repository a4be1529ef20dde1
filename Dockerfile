# fleetd (and fleet-sim, fleetctl) in one image. Build: docker build -t fleet-telemetry .

# The dashboard's assets (uPlot, Swagger UI) from web/'s npm lock, by the same step as `make
# static` and the wheel's build hook (web/assets.py); only the files reach the image, not Node.
FROM node:20-slim AS assets
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY web/package.json web/package-lock.json web/assets.py ./web/
RUN python3 web/assets.py

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FLEET_LOG_FORMAT=json \
    FLEET_HTTP_ADDR=0.0.0.0:9108

# Only what the wheels need (sql/ ships inside the first as fleetdb/sql, so `fleetd migrate` works).
WORKDIR /src
COPY pyproject.toml README.md hatch_build.py ./
COPY web/package.json web/package-lock.json web/assets.py ./web/
COPY daemon ./daemon
COPY simulator ./simulator
COPY sql ./sql
# Present, so the build hook has nothing to do (this stage has no npm).
COPY --from=assets /src/daemon/fleetctl/api/static/vendor ./daemon/fleetctl/api/static/vendor
# fleet-telemetry (fleetd, fleetctl) and, for compose's simulator service, fleet-sim. A production
# host installs only the first: pip install .
RUN pip install . ./simulator && rm -rf /src

# Never run as root: a fixed uid so volume permissions and Kubernetes runAsUser are predictable.
RUN groupadd --system --gid 10001 fleetd \
    && useradd --system --uid 10001 --gid fleetd --no-create-home --shell /usr/sbin/nologin fleetd
USER fleetd:fleetd
WORKDIR /home/fleetd

EXPOSE 9108
# slim has no curl: ask /healthz with the interpreter we already have.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=2).status != 200)"]

# SIGTERM (docker stop) flushes, acks and disconnects within 8 s; docker's default 10 s is enough.
STOPSIGNAL SIGTERM
CMD ["fleetd", "run"]
