# One task runner for laptops and CI: every workflow step on GitHub calls one of these
# targets, so nothing runs there that cannot run here. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

# Settings for this machine (the docker client; the engine, when provision started one of its
# own: DOCKER_HOST), written by `make provision` to local.env; absent on a machine that needs none. Read when a recipe
# runs, not when make starts, so `make provision test` uses what provision has just written.
machine = $(shell sed -n 's/^$(1)=//p' local.env 2>/dev/null)

# The contract variables, which the workflows and docs rely on; an environment variable of
# the same name wins.
MODEL_DIR     ?= artifacts
PORT          ?= 8501
MODEL_NAME    ?= model
IMAGE         ?= model-service
# A tagged commit (v1.2.3) gives 1.2.3; anything else a development build, 0.0.0-dev.g<commit>:
# the g (as in `git describe`) keeps a commit of digits only with a leading 0 valid semver.
VERSION       ?= $(shell git describe --tags --exact-match --match 'v[0-9]*' 2>/dev/null | sed 's/^v//' || echo "0.0.0-dev$$(git rev-parse --short HEAD 2>/dev/null | sed 's/^/.g/')")
REGISTRY      ?= 127.0.0.1:5000
DEPLOY_TARGET ?= docker
CHAMPION      ?=
DOCKER        ?= $(or $(call machine,DOCKER),docker)
# The Dockerfile's default base (python:3.11-slim), from its `FROM ... AS python-base` line, which
# dependabot updates.
BASE_IMAGE    ?= $(or $(call machine,BASE_IMAGE),$(shell sed -n 's/^FROM \([^ ]*\) AS python-base$$/\1/p' Dockerfile))
export MODEL_DIR PORT MODEL_NAME IMAGE VERSION REGISTRY DEPLOY_TARGET CHAMPION DOCKER BASE_IMAGE
DOCKER_HOST   ?= $(call machine,DOCKER_HOST)
export DOCKER_HOST

VENV := .venv
PY   := $(VENV)/bin/python
say   = @printf '\n==> %s\n' "$(1)"

.PHONY: help provision install lint test test-fast test-kubernetes example train evaluate serve build smoke push candidate champion promote deploy rollback status pipeline bench act

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

provision: ## install and start what the tests need and the venv lacks (Docker engine, registry, tools)
	$(call say,provision: Docker engine, local registry, base image and test tools)
	bash .ci/provision

$(VENV)/.installed: pyproject.toml
	$(call say,install: $(VENV) with .[dev])
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed ## create .venv and install the project with its dev extras

# One extra alone, for what needs no TensorFlow (build, push, deploy and rollback: the last
# two are the emergency path): a fresh runner installs them in seconds, not TensorFlow in
# minutes. Nothing to do where .[dev] (all extras) is in.
# The message goes to stderr, so `$$(make -s status)` holds the status alone.
$(VENV)/.extra-%: pyproject.toml
	@printf '\n==> %s\n' "install: $(VENV) with .[$*]" >&2
	test -x $(PY) || python3 -m venv $(VENV)
	[ -f $(VENV)/.installed ] || $(PY) -m pip install --quiet --disable-pip-version-check -e '.[$*]' >&2
	touch $@

# checkov (the Kubernetes manifests' linter) pins an older `packaging` than pytest needs: it
# lives in a venv of its own.
CHECKOV := $(VENV)/checkov/bin/checkov
$(CHECKOV):
	$(call say,install: checkov in $(VENV)/checkov)
	python3 -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/pip install --quiet --disable-pip-version-check checkov==3.3.30

lint: install $(CHECKOV) ## flake8, hadolint, shellcheck, zizmor and the schemas over .github, the Kubernetes manifests
	$(call say,lint: flake8 then hadolint then shellcheck then zizmor and check-jsonschema over .github)
	$(VENV)/bin/flake8
	$(VENV)/bin/hadolint Dockerfile
	shellcheck .ci/run .ci/provision .ci/cluster
	$(VENV)/bin/zizmor --offline --min-severity medium --no-progress .github
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-actions .github/actions/*/action.yml
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.dependabot .github/dependabot.yml
	$(call say,lint: each Kubernetes overlay as a deploy renders it: strict schema validation and checkov)
	@rendered=$$(mktemp -d); trap 'rm -rf "$$rendered"' EXIT; \
	for overlay in deploy/k8s/overlays/*/; do \
	  environment=$$(basename "$$overlay"); echo "render $$overlay"; \
	  DEPLOY_ENVIRONMENT=$$environment KUBECTL=$(VENV)/bin/kubectl $(PY) -m deploy manifests \
	    "$(REGISTRY)/$(IMAGE)@sha256:$$(printf '%064d' 0)" > "$$rendered/$$environment.yaml"; \
	done; \
	$(VENV)/bin/kubernetes-validate --strict --quiet "$$rendered"/*.yaml; \
	$(CHECKOV) --quiet --compact --skip-download --framework kubernetes --directory "$$rendered"

test: install ## the whole test suite, with coverage (training/ must stay at 85% or more); PYTEST_ARGS adds to pytest's
	$(call say,test: pytest $(PYTEST_ARGS))
	$(PY) -m pytest $(PYTEST_ARGS)
	$(PY) -m coverage report --include='training/*' --fail-under=85 --format=total \
	  | xargs printf 'training/ line coverage: %s%% (minimum 85%%)\n'

test-fast: install ## the unit tests alone: no trained model, container, browser or cluster (about 15 s of CPU)
	$(call say,test-fast: pytest -m "$(FAST_TESTS)")
	$(PY) -m pytest --no-cov -q -m "$(FAST_TESTS)"

FAST_TESTS := not slow and not trains and not docker and not browser and not kubernetes

test-kubernetes: install ## the tests on a Kubernetes cluster alone: deploy, canary, rollback (.ci/cluster starts or finds one)
	$(call say,test-kubernetes: pytest tests/test_kubernetes.py)
	$(PY) -m pytest --no-cov tests/test_kubernetes.py

example: ## make an example the active data set: make example NAME=penguins (see examples/)
	$(call say,example: examples/$(NAME)/ -> data/)
	@test -n "$(NAME)" -a -d "examples/$(NAME)" || { \
	  echo "NAME must name a directory of examples/: $$(ls examples | tr '\n' ' ')" >&2; exit 2; }
	rm -f data/*.csv data/schema.json data/DATA.md data/gate.toml
	cp examples/$(NAME)/* data/

train: install ## validate the data, train, export to LiteRT and write the artifacts to MODEL_DIR
	$(call say,train: data/ -> $(MODEL_DIR)/)
	$(PY) -m training train --model-dir '$(MODEL_DIR)'

evaluate: install ## metrics, plots, report and the gate (against CHAMPION when set)
	$(call say,evaluate: gate the model in $(MODEL_DIR)$(if $(CHAMPION), against $(CHAMPION)))
	$(PY) -m training evaluate --model-dir '$(MODEL_DIR)' $(if $(CHAMPION),--champion '$(CHAMPION)')

serve: install ## serve the model in MODEL_DIR with gunicorn on PORT, as the image does
	$(call say,serve: $(MODEL_DIR)/ as $(MODEL_NAME) on http://127.0.0.1:$(PORT)/)
	$(VENV)/bin/gunicorn -c service/gunicorn_conf.py 'service:create_app()'

bench: install ## wrk against the service, a tutorial baseline and a ceiling; writes bench/RESULTS.md
	$(call say,bench: the model in $(MODEL_DIR)/ (train it first when absent))
	@test -f '$(MODEL_DIR)/model.tflite' || $(MAKE) train
	$(PY) -m bench.run --model-dir '$(MODEL_DIR)' $(BENCH_ARGS)

build: $(VENV)/.extra-deploy ## build the image IMAGE:VERSION (and IMAGE:sha-<commit>) with the model in MODEL_DIR
	$(call say,build: $(IMAGE):$(VERSION) on $(BASE_IMAGE) with the model in $(MODEL_DIR)/)
	$(PY) -m deploy build

smoke: $(VENV)/.extra-serve $(VENV)/.extra-deploy ## run the image (SMOKE_IMAGE, default IMAGE:VERSION) read-only on a free port, check a real prediction, stop it
	$(call say,smoke: run $(or $(SMOKE_IMAGE),$(IMAGE):$(VERSION)) and compare its answer with the model's)
	$(PY) -m deploy smoke $(SMOKE_IMAGE)

push: $(VENV)/.extra-deploy ## push IMAGE:VERSION and its sha- tag to REGISTRY (a release tag never changes)
	$(call say,push: $(IMAGE):$(VERSION) -> $(REGISTRY))
	$(PY) -m deploy push

candidate: $(VENV)/.extra-deploy ## for a release VERSION: find this commit's image published by the default branch; its model to MODEL_DIR
	$(call say,candidate: the image of commit $(shell git rev-parse --short HEAD) in $(REGISTRY)/$(IMAGE), for release $(VERSION))
	$(PY) -m deploy candidate

champion: $(VENV)/.extra-deploy ## the production image the gate must beat, by digest (nothing when none yet)
	$(call say,champion: $(REGISTRY)/$(IMAGE):production)
	$(PY) -m deploy champion

promote: $(VENV)/.extra-deploy ## tag that image VERSION in REGISTRY: build once, promote the digest (idempotent)
	$(call say,promote: $(REGISTRY)/$(IMAGE):sha-<commit> -> $(VERSION))
	$(PY) -m deploy promote

deploy: $(VENV)/.extra-deploy ## deploy REGISTRY/IMAGE:VERSION to DEPLOY_TARGET; the old one serves until it is ready (kubernetes: CANARY=1 runs a canary first)
	$(call say,deploy: $(REGISTRY)/$(IMAGE):$(VERSION) -> $(DEPLOY_TARGET) on port $(PORT))
	$(PY) -m deploy deploy

rollback: $(VENV)/.extra-deploy ## redeploy a release: VERSION=x.y.z, or by default the stable one that served before
	$(call say,rollback: $(DEPLOY_TARGET) back to $(if $(filter command line environment,$(origin VERSION)),$(VERSION),the stable release that served before the deployed one))
	$(PY) -m deploy rollback $(if $(filter command line environment,$(origin VERSION)),--version '$(VERSION)')

status: $(VENV)/.extra-deploy ## what runs on DEPLOY_TARGET, from which image digest, at which URL
	@$(PY) -m deploy status

pipeline: ## lint, test, train, evaluate (against the deployed model), build, smoke, push and deploy locally
	$(call say,pipeline: lint test train evaluate build smoke push deploy)
	$(MAKE) lint
	$(MAKE) test
	$(MAKE) train
	$(MAKE) evaluate CHAMPION="$${CHAMPION:-$$($(PY) -m deploy status --reference)}"
	$(MAKE) build
	$(MAKE) smoke
	$(MAKE) push
	$(MAKE) deploy
	$(call say,pipeline: done)
	$(PY) -m deploy status

act: install ## run ci.yml's jobs locally in containers with nektos/act (needs GitHub for the actions)
	$(call say,act: .github/workflows/ci.yml on a push event $(ACT_ARGS))
	$(VENV)/bin/act push --workflows .github/workflows/ci.yml \
	  --platform ubuntu-latest=catthehacker/ubuntu:act-latest \
	  --artifact-server-path "$${TMPDIR:-/tmp}/act-artifacts" $(ACT_ARGS)
