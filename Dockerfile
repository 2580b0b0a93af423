# The operator image.   docker build -t clusterresync-operator:dev .
# manifests/base/deployment.yaml runs it as uid/gid 65532 with a read-only root filesystem;
# hack/kind-e2e.sh builds it and loads it into a kind cluster.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

LABEL org.opencontainers.image.title="clusterresync-operator" \
      org.opencontainers.image.description="Re-provisions StatefulSet replicas' volumes from CSI snapshots of the primary" \
      org.opencontainers.image.licenses="Apache-2.0"

# pyproject.toml declares two packages, the operator and kubesim (the simulated test cluster),
# so both source trees are needed to build the distribution. Only the runtime dependencies
# (kopf, kubernetes, pydantic, structlog, pyyaml, prometheus-client for the metrics, rich for the
# kubectl plugin that the same package installs) are installed, not the dev extra.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
COPY tests/kubesim/kubesim/ tests/kubesim/kubesim/
RUN pip install . \
    && cd / \
    && rm -rf /src

WORKDIR /
USER 65532:65532
ENTRYPOINT ["clusterresync-operator"]
