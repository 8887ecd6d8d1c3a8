# One image for every role: `docker run IMAGE` serves the API on port 8000,
# `docker run IMAGE worker` delivers, `docker run IMAGE migrate` migrates,
# `docker run IMAGE keys create --name me` makes a key.
#
# The builder and the runtime share one base image: the virtual environment's
# interpreter is a link to the base image's /usr/local/bin/python3.11.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# Keep in step with the uv that writes uv.lock (`uv --version`).
ARG UV_VERSION=0.13.9

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

FROM ${PYTHON_IMAGE} AS builder
COPY --from=uv /uv /usr/local/bin/uv
# Use the image's Python (never a downloaded one, which would not exist at runtime),
# compile bytecode once here, and copy files out of uv's cache mount.
ENV UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy
WORKDIR /app

# Dependencies first: this layer is reused until pyproject.toml or uv.lock changes.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project

# Then Mailroom itself, installed into the environment as a package (not a link to
# src/), so the runtime stage needs the environment alone.
COPY README.md ./
COPY src ./src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 mailroom \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin mailroom
WORKDIR /app
# Owned by root: the process cannot rewrite its own code.
COPY --from=builder /app/.venv /app/.venv
ENV PATH="/app/.venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
EXPOSE 8000
# `mailroom health` checks the worker's heartbeat file when the worker runs here, else
# GET http://127.0.0.1:$PORT/health (PORT defaults to 8000; set it if the API listens
# elsewhere).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["mailroom", "health"]
# Exec form, no shell: SIGTERM goes straight to Python (PID 1), which drains and exits.
STOPSIGNAL SIGTERM
ENTRYPOINT ["mailroom"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]
