# syntax=docker/dockerfile:1
#
# The apns-connector image: the connector and its APNs simulator, installed from uv.lock
# into a virtual environment, run as the unprivileged user 10001. No credential is part
# of the image; the Helm chart mounts them from a Secret at run time.
#
#   docker build -t apns-connector:0.1.0 .
#   docker run --rm -v "$PWD/connector.toml:/etc/apns-connector/connector.toml:ro" \
#     apns-connector:0.1.0
#   docker run --rm --entrypoint python apns-connector:0.1.0 -m connector.simulator --help

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: resolve nothing, install exactly what uv.lock pins ---------------------
FROM ${PYTHON_IMAGE} AS build

# The same uv that wrote uv.lock; from PyPI, like every other dependency.
ARG UV_VERSION=0.13.9
RUN python -m pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"

# Bytecode compiled now, since the running image's file system is read-only; files
# copied rather than linked, since the cache does not reach the final image.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/apns-connector

WORKDIR /src

# Dependencies alone first: this layer is rebuilt only when the lock file changes.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project

# Then the connector itself, installed as a wheel rather than a link to /src.
COPY README.md ./
COPY connector ./connector
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable

# --- run ----------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

ARG APP_UID=10001
RUN groupadd --system --gid "${APP_UID}" apns \
    && useradd --system --uid "${APP_UID}" --gid "${APP_UID}" \
        --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin apns

# The virtual environment's interpreter is /usr/local/bin/python3.11 of the same base
# image, so the environment moves between the stages unchanged.
COPY --from=build /opt/apns-connector /opt/apns-connector

ENV PATH=/opt/apns-connector/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# Numeric, so that Kubernetes can check runAsNonRoot without reading /etc/passwd.
USER ${APP_UID}:${APP_UID}

# /livez, /readyz and /metrics (telemetry.http_port).
EXPOSE 8080

# SIGTERM starts the connector's drain; the exec form makes it PID 1 and lets it
# receive the signal itself.
ENTRYPOINT ["apns-connector"]
CMD ["run", "--config", "/etc/apns-connector/connector.toml"]
