# Odock's container image: one image for the gateway, the control plane and the console
# (ODOCK_COMPONENTS picks what a container serves), configured by ODOCK_* environment variables.
#
#   docker build -t odock .
#   docker run --rm -p 8080:8080 odock                        # embedded mode, data in a volume
#   docker run --rm --env-file odock.env odock migrate upgrade   # any odock command
#
# Reproducible: the base image is pinned, every Python package is installed at the version in
# constraints.txt (the set the test suite passed with), and nothing is cached in the layers.
# See docs/deployment.md.

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# --- build: a virtual environment holding Odock and its runtime dependencies only ----------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# The build backend is pinned too: the package is built without pip's isolated (unpinned) build
# environment.
RUN python -m venv /opt/odock \
    && /opt/odock/bin/pip install --no-cache-dir pip==25.1.1 setuptools==80.9.0
COPY constraints.txt pyproject.toml README.md ./
COPY src ./src
RUN /opt/odock/bin/pip install --no-cache-dir --no-build-isolation -c constraints.txt . \
    && /opt/odock/bin/pip uninstall --yes setuptools

# --- runtime ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ARG ODOCK_UID=10001
RUN groupadd --system --gid "${ODOCK_UID}" odock \
    && useradd --system --uid "${ODOCK_UID}" --gid odock --home-dir /var/lib/odock --shell /usr/sbin/nologin odock \
    && mkdir -p /var/lib/odock \
    && chown odock:odock /var/lib/odock
COPY --from=build /opt/odock /opt/odock
ENV PATH=/opt/odock/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ODOCK_HOST=0.0.0.0 \
    ODOCK_PORT=8080 \
    ODOCK_DATA_DIR=/var/lib/odock \
    ODOCK_LOG_FORMAT=json
# Embedded mode keeps its SQLite database and provider-key pair here; production mode keeps its
# usage journal here (docs/usage-and-billing.md#durability): it must be writable either way.
VOLUME ["/var/lib/odock"]
WORKDIR /var/lib/odock
USER ${ODOCK_UID}:${ODOCK_UID}
EXPOSE 8080
# Liveness only (/v1/health answers while the process serves); readiness, which also checks the
# database and Redis, is /v1/healthz. The slim image has no curl: the check uses Python.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/v1/health' % os.environ.get('ODOCK_PORT', '8080'), timeout=4)"]
ENTRYPOINT ["odock"]
CMD ["serve"]
