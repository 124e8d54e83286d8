# The serving image: the Flask service, the LiteRT runtime and one trained model (MODEL_DIR),
# without TensorFlow. `make build` builds it with BuildKit and fills in the labels; by hand:
#   DOCKER_BUILDKIT=1 docker build --build-arg MODEL_DIR=artifacts -t model-service .
# Behind a TLS-intercepting proxy add --secret id=pip_cert,src=/path/to/ca-bundle.crt.
# The default base is named in a FROM line, where dependabot finds and updates it (it does not
# follow an ARG's default); `--build-arg BASE_IMAGE=<image>` replaces it, and BuildKit then
# skips the unused stage without pulling it. The Makefile reads its default from here.
ARG BASE_IMAGE=python-base
FROM python:3.11-slim AS python-base

FROM ${BASE_IMAGE} AS build
# `python3 -m venv` works on python:3.11-slim and on a plain Debian base alike.
RUN python3 -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
# The service and the contract it shares with training; no training or deploy code.
COPY contract/ contract/
COPY service/ service/
# The pip cache lives in a BuildKit cache mount and the CA bundle in a secret: neither lands
# in a layer. pip and setuptools leave afterwards, with the test suites of the dependencies
# and LiteRT's WebGPU accelerator (19 MB, for GPU inference, which this image never does).
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=pip_cert,required=false \
    if [ -f /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi; \
    /opt/venv/bin/pip install --disable-pip-version-check --no-warn-script-location '.[serve]' \
    && /opt/venv/bin/pip uninstall --disable-pip-version-check --yes pip setuptools \
    && find /opt/venv -depth -type d -name tests -path '*/site-packages/*' -exec rm -rf {} + \
    && rm -f /opt/venv/lib/python3*/site-packages/ai_edge_litert/libLiteRtWebGpuAccelerator.so

FROM ${BASE_IMAGE}
ARG BASE_IMAGE
# First in this stage: its entry in the image's history marks where the base's layers end, so
# `make build` can tell what this image adds without the base in the engine's image store
# (BuildKit keeps a pulled base in its own cache, as on a fresh CI runner).
LABEL org.opencontainers.image.base.name="${BASE_IMAGE}"
# A fixed numeric uid, so `--user` and volume permissions are predictable across bases.
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin model
COPY --from=build /opt/venv /opt/venv
ARG MODEL_DIR=artifacts
# Root-owned and read-only for the service user: the model cannot be changed at run time.
COPY ${MODEL_DIR}/ /opt/model/
# XDG_RUNTIME_DIR: where gunicorn puts its control socket (gunicornc); /tmp is the one
# writable place when the container runs --read-only with a tmpfs there.
# PROMETHEUS_MULTIPROC_DIR: set before anything imports prometheus_client (`--config
# python:service.gunicorn_conf` imports the service package first), so the workers' metrics
# meet there and /metrics adds them up.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    XDG_RUNTIME_DIR=/tmp \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus \
    MODEL_DIR=/opt/model \
    MODEL_NAME=model \
    PORT=8501
USER 10001:10001
EXPOSE 8501
# Probes this container's own gunicorn (on its private port when deploy gave it one), so the
# answer is right even when two containers share the host port during a deploy.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python3", "-m", "service.healthcheck"]
CMD ["gunicorn", "--config", "python:service.gunicorn_conf", "service:create_app()"]

# Last, so that a new version or model changes no layer above.
ARG VERSION=0.0.0-dev
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=unknown
ARG MODEL_VERSION=unknown
ARG MODEL_SHA256=unknown
ARG PRIMARY_METRIC=unknown
ARG PRIMARY_METRIC_VALUE=unknown
LABEL org.opencontainers.image.title="model-service" \
      org.opencontainers.image.description="Prediction service (TensorFlow Serving REST API) with its model" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.created="${CREATED}" \
      ml.model.version="${MODEL_VERSION}" \
      ml.model.sha256="${MODEL_SHA256}" \
      ml.model.primary-metric="${PRIMARY_METRIC}" \
      ml.model.primary-metric-value="${PRIMARY_METRIC_VALUE}"
