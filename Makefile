# ClusterResync — make verbs in kubebuilder's spirit. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PY_SOURCES := $(wildcard operator tests bench hack)

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z0-9_-]+:.*##/ {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

.PHONY: venv
venv: $(STAMP) ## Create .venv and install the project with its dev extra.

.PHONY: lint
lint: venv ## Lint and check formatting (ruff).
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)

.PHONY: fmt
fmt: venv ## Format and autofix (ruff).
	$(BIN)/ruff format $(PY_SOURCES)
	$(BIN)/ruff check --fix $(PY_SOURCES)

.PHONY: typecheck
typecheck: venv ## mypy --strict on the operator package.
	$(BIN)/mypy

# Test files run in parallel, one file per worker at a time (each e2e file has its own kubesim and
# operator processes, so files are independent). PYTEST_WORKERS=0 runs them in this process.
PYTEST_WORKERS ?= 3

.PHONY: pytest
pytest: venv ## Run the test suite only (PYTEST_WORKERS=N files at once; PYTEST_ARGS for pytest).
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

.PHONY: test
test: lint typecheck pytest ## Lint, type check and run every test (what CI runs).

.PHONY: manifests
manifests: venv ## Generate the CRDs (crds/, and the Helm chart's copy) and the API reference from the pydantic models.
	$(BIN)/python -m clusterresync.crdgen crds
	cp crds/clusterresync.io_*.yaml charts/clusterresync/crds/
	$(MAKE) --no-print-directory docs

.PHONY: docs
docs: venv ## Generate the API reference (docs/reference/) from the CRDs the models make.
	$(BIN)/python -m clusterresync.docgen docs/reference

.PHONY: run
run: venv ## Run the operator locally against $$KUBECONFIG (after `make deploy`: it needs the CRD and the Lease namespace).
	$(BIN)/clusterresync-operator --all-namespaces

.PHONY: deploy
deploy: venv ## Install the CRD, RBAC and the operator's Deployment into the current cluster.
	$(BIN)/kubectl apply -k manifests/

.PHONY: demo
demo: venv ## PostgreSQL on kubesim: a diverged replica, reported, resynced; exits 0 only if its rows equal the primary's.
	$(BIN)/python hack/demo.py

.PHONY: demo-files
demo-files: venv ## The same story on files (pods without processes; needs no database, nor root).
	$(BIN)/python hack/demo_files.py

.PHONY: bench
bench: venv ## Figures on kubesim: downtime, totals, reaction, API requests, memory, latency (bench/README.md).
	$(BIN)/python bench/resync_bench.py $(BENCH_ARGS)

# The operator image (Dockerfile). Needs a Docker engine, which the project's build machines lack:
# it has not been built there (tests/unit/test_image.py checks the Dockerfile without one).
IMAGE ?= ghcr.io/clusterresync/clusterresync-operator:0.1.0
DOCKER ?= docker

.PHONY: image
image: ## Build the operator image (IMAGE=name:tag; needs a Docker engine).
	@command -v $(DOCKER) >/dev/null 2>&1 || { echo "make image: '$(DOCKER)' not found: building the image needs Docker (or DOCKER=podman)" >&2; exit 1; }
	@$(DOCKER) info >/dev/null 2>&1 || { echo "make image: '$(DOCKER)' is installed but its engine is not reachable ($(DOCKER) info failed)" >&2; exit 1; }
	$(DOCKER) build -t $(IMAGE) .

.PHONY: e2e
e2e: ## Kind-based end-to-end test (needs Docker; not runnable on the project's build machines)
	bash hack/kind-e2e.sh

.PHONY: kubesim
kubesim: venv ## Serve a kubesim cluster in the foreground (kubeconfig in ./kubesim.kubeconfig).
	$(BIN)/kubesim serve --kubeconfig kubesim.kubeconfig
