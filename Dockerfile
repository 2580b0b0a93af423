# The operator image:   make image   (docker build -t ghcr.io/clusterresync/clusterresync-operator:0.1.0 .)
# Two stages: `build` turns the source into a wheel and installs it, with its runtime dependencies
# only, into a virtualenv; the final stage is a clean python:3.11-slim with that virtualenv and
# nothing else: no source, no wheels, no pip cache, no compilers, no package-manager run.
# manifests/base/deployment.yaml runs it as uid/gid 65532 with a read-only root filesystem;
# hack/kind-e2e.sh builds it and loads it into a kind cluster. tests/unit/test_image.py checks
# what can be checked without a Docker engine (none runs where this project is built).
ARG PYTHON_IMAGE=python:3.11-slim

# -- build ------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# pyproject.toml declares two packages, the operator and kubesim (the simulated test cluster),
# so both source trees are needed to build the wheel. Every runtime dependency (kopf, kubernetes,
# pydantic, structlog, pyyaml, prometheus-client for the metrics, rich for the kubectl plugin that
# the same package installs) ships wheels for CPython 3.11 on Linux: no compiler is needed, here
# or later. The dev extra (test tools, kubesim's server dependencies) is not installed.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
COPY tests/kubesim/kubesim/ tests/kubesim/kubesim/
RUN pip wheel --no-deps --wheel-dir /wheels . \
    && python -m venv --without-pip /opt/clusterresync \
    && pip --python /opt/clusterresync/bin/python install /wheels/clusterresync-*.whl

# -- the image --------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="clusterresync-operator" \
      org.opencontainers.image.description="Re-provisions StatefulSet replicas' volumes from CSI snapshots of the primary" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PATH=/opt/clusterresync/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# The virtualenv's python is a link to this image's /usr/local/bin/python3: the same base image as
# the build stage, so the same path.
COPY --from=build /opt/clusterresync /opt/clusterresync

WORKDIR /
USER 65532:65532
ENTRYPOINT ["clusterresync-operator"]
