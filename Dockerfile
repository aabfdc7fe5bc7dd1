# syntax=docker/dockerfile:1
# Glassbox: the API with the committed models baked in.
#   docker build -t glassbox:0.1.0 .
#   docker run --rm -p 8000:8000 glassbox:0.1.0
#   docker run --rm -p 8000:8000 -v "$PWD/models:/models:ro" glassbox:0.1.0   # other models
# Settings come from GLASSBOX_* variables (docs/configuration.md).

# 3.11: TensorFlow 2.16-2.21 publish wheels for it (x86-64 and arm64).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- build: a virtual environment with the dependencies only ---------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /build
# pyproject.toml and the lock alone: this layer (TensorFlow, ~600 MB) is rebuilt only when the
# dependencies change, not on every code change. The service's own dependencies, at the versions
# the lock pins.
COPY pyproject.toml requirements.lock ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('requirements.txt', 'w').write('\n'.join(deps))" \
    && pip install --no-cache-dir -c requirements.lock -r requirements.txt

# -- runtime: the environment, the code and the models; no build tools, no pip cache ---------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 glassbox \
    && useradd --system --uid 10001 --gid glassbox --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin glassbox
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    KERAS_HOME=/tmp/.keras \
    GLASSBOX_MODEL_DIR=/models \
    GLASSBOX_HOST=0.0.0.0 \
    GLASSBOX_PORT=8000 \
    GLASSBOX_GRPC_PORT=8001 \
    GLASSBOX_WORKERS=1 \
    GLASSBOX_GRACEFUL_SHUTDOWN_S=20
COPY --from=build /opt/venv /opt/venv
WORKDIR /srv/glassbox
# Owned by root and not writable by the service user: the code and models are read-only to it.
COPY app ./app
COPY --chmod=0755 deploy/serve.sh ./deploy/serve.sh
# The committed models; mount a folder over /models (or set GLASSBOX_MODEL_DIR) to serve others.
COPY models /models
USER 10001:10001
# HTTP, and gRPC (KServe v2, TF Serving, health, reflection).
EXPOSE 8000 8001
# Ready, not just live: the container is healthy once every model has loaded.
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/ready' % os.environ.get('GLASSBOX_PORT', '8000'), timeout=2)"]
# Exec form, and serve.sh execs uvicorn: uvicorn is PID 1 and gets SIGTERM itself.
ENTRYPOINT ["sh", "deploy/serve.sh"]
